//! A site with more distinct paths than two bytes number: its path column widens,
//! and pages, funnels and a snapshot round trip still see every path.

use beacon_core::{Event, Funnel, MemoryStore, Query, Site};
use chrono::{TimeZone, Utc};

const PATHS: usize = 70_000;

fn events() -> Vec<Event> {
    let at = Utc
        .with_ymd_and_hms(2026, 3, 1, 10, 0, 0)
        .single()
        .expect("date");
    let mut out = Vec::with_capacity(PATHS + 2);
    for i in 0..PATHS {
        let mut e = Event {
            id: uuid::Uuid::from_u128(i as u128 + 1),
            site: "wide.test".into(),
            timestamp: at,
            ..Event::default()
        };
        e.identity.visitor_id = format!("v{i}");
        e.page.path = format!("/p{i}");
        out.push(e);
    }
    // The last path (an id past 65,535) is viewed twice more, then followed.
    for (k, path) in [(0, "/p69999"), (1, "/p69999"), (2, "/after")] {
        let mut e = out[PATHS - 1].clone();
        e.id = uuid::Uuid::from_u128((PATHS + k) as u128 + 1);
        e.timestamp = at + chrono::Duration::minutes(k as i64 + 1);
        e.page.path = path.into();
        out.push(e);
    }
    out
}

fn check(store: &MemoryStore, site: &Site) {
    let now = Utc
        .with_ymd_and_hms(2026, 3, 10, 0, 0, 0)
        .single()
        .expect("date");
    let q = Query::from_json(
        r#"{"site":"wide.test","date_range":["2026-03-01","2026-03-01"],"metrics":["pageviews"],"dimensions":["page"],"limit":2}"#,
    )
    .expect("query");
    let r = store.query_sync(site, &q, &now.into()).expect("pages");
    assert_eq!(r.total_rows, PATHS + 1);
    assert_eq!(r.rows[0].dimensions[0].as_deref(), Some("/p69999"));
    assert_eq!(r.rows[0].metrics[0].as_f64(), 3.0);
    let f = Funnel::from_json(
        r#"{"site":"wide.test","date_range":["2026-03-01","2026-03-01"],"steps":[{"page":"/p69999"},{"page":"/after"}]}"#,
    )
    .expect("funnel");
    let r = store.funnel_sync(site, &f, &now.into()).expect("funnel");
    let visitors: Vec<u64> = r.steps.iter().map(|s| s.visitors).collect();
    assert_eq!(visitors, [1, 1]);
}

#[test]
fn paths_past_two_bytes_are_all_kept_and_read_back() {
    let site = Site::new("wide.test");
    let store = MemoryStore::new();
    store.put_site_sync(site.clone()).expect("site");
    store.append_sync(&events()).expect("append");
    check(&store, &site);
    let mut bytes = Vec::new();
    store.write_snapshot(&mut bytes).expect("write");
    let back = MemoryStore::new();
    back.read_snapshot(&mut bytes.as_slice()).expect("read");
    check(&back, &site);
}
