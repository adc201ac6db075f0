//! Revenue attribution with hand-computed answers, and its invariants.

use beacon_attribution::{attribute, attribute_events};
use beacon_core::{Currency, Event, EventKind, EventStore, MemoryStore, Money, Query, Site};
use chrono::{DateTime, NaiveDateTime, Utc};
use proptest::prelude::*;

fn at(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .expect("time")
        .and_utc()
}

fn ev(
    n: u128,
    visitor: &str,
    time: &str,
    source: Option<&str>,
    revenue: Option<(&str, &str)>,
) -> Event {
    let mut e = Event {
        id: uuid::Uuid::from_u128(n),
        site: "shop.test".into(),
        timestamp: at(time),
        ..Event::default()
    };
    e.identity.visitor_id = visitor.into();
    e.page.path = "/".into();
    e.acquisition.source = source.map(str::to_owned);
    if let Some((amount, currency)) = revenue {
        e.kind = EventKind::Purchase;
        e.name = Some("purchase".into());
        e.commerce.revenue = Some(
            Money::parse(amount, Currency::parse(currency).expect("currency")).expect("amount"),
        );
    }
    e
}

/// v1: Google on Mar 1, direct on Mar 5 and buys 100.00 in that session.
/// v2: Newsletter on Mar 10 and buys 50.00 in that session; also 20 EUR, never summed
/// into USD revenue, though it is a conversion (2 for Newsletter).
fn fixture() -> Vec<Event> {
    vec![
        ev(1, "v1", "2026-03-01T10:00:00", Some("Google"), None),
        ev(2, "v1", "2026-03-05T10:00:00", None, None),
        ev(
            3,
            "v1",
            "2026-03-05T10:10:00",
            None,
            Some(("100.00", "USD")),
        ),
        ev(4, "v2", "2026-03-10T09:00:00", Some("Newsletter"), None),
        ev(
            5,
            "v2",
            "2026-03-10T09:05:00",
            Some("Newsletter"),
            Some(("50.00", "USD")),
        ),
        ev(
            6,
            "v2",
            "2026-03-10T09:06:00",
            Some("Newsletter"),
            Some(("20.00", "EUR")),
        ),
    ]
}

fn run(model: &str, extra: &str) -> Vec<(Option<String>, f64, f64)> {
    let q = Query::from_json(&format!(
        r#"{{"site":"shop.test","date_range":["2026-03-01","2026-03-31"],"metrics":["revenue","conversions"],"dimensions":["source"],
            "attribution":{{"model":"{model}"{extra}}}}}"#
    ))
    .expect("query");
    let r = attribute_events(
        &fixture(),
        &Site::new("shop.test"),
        &q,
        at("2026-04-01T00:00:00"),
    )
    .expect("attribution");
    let mut rows: Vec<(Option<String>, f64, f64)> = r
        .rows
        .iter()
        .map(|row| {
            (
                row.dimensions[0].clone(),
                row.metrics[0].as_f64(),
                row.metrics[1].as_f64(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn g(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[test]
fn every_model_by_hand() {
    // Sorted by source: None (direct) first, then Google, Newsletter.
    assert_eq!(
        run("first_touch", ""),
        vec![(g("Google"), 100.0, 1.0), (g("Newsletter"), 50.0, 2.0)]
    );
    assert_eq!(
        run("last_touch", ""),
        vec![(None, 100.0, 1.0), (g("Newsletter"), 50.0, 2.0)]
    );
    assert_eq!(
        run("last_non_direct", ""),
        vec![(g("Google"), 100.0, 1.0), (g("Newsletter"), 50.0, 2.0)]
    );
    assert_eq!(
        run("linear", ""),
        vec![
            (None, 50.0, 0.5),
            (g("Google"), 50.0, 0.5),
            (g("Newsletter"), 50.0, 2.0)
        ]
    );
    assert_eq!(
        run("position_based", ""),
        vec![
            (None, 50.0, 0.5),
            (g("Google"), 50.0, 0.5),
            (g("Newsletter"), 50.0, 2.0)
        ]
    );
    // Time decay, half-life 4 days: ages 4 d and 0 d -> weights 1/2 and 1 -> 1/3 and 2/3.
    assert_eq!(
        run("time_decay", r#","half_life_days":4"#),
        vec![
            (None, 66.67, 0.67),
            (g("Google"), 33.33, 0.33),
            (g("Newsletter"), 50.0, 2.0)
        ]
    );
    // A 2-day window leaves Mar 1 out: v1's purchase is all direct.
    assert_eq!(
        run("first_touch", r#","window_days":2"#),
        vec![(None, 100.0, 1.0), (g("Newsletter"), 50.0, 2.0)]
    );
}

#[tokio::test]
async fn through_a_store_and_errors() {
    let store = MemoryStore::new();
    store.put_site_sync(Site::new("shop.test")).expect("site");
    store.append(&fixture()).await.expect("append");
    let q = Query::from_json(r#"{"site":"shop.test","date_range":["2026-03-01","2026-03-31"],"metrics":["revenue"],"dimensions":["source"],"attribution":{"model":"first_touch"},"currency":"EUR"}"#).expect("query");
    let r = attribute(&store, &q, at("2026-04-01T00:00:00"))
        .await
        .expect("runs");
    assert_eq!(r.rows.len(), 1);
    assert_eq!(
        (
            r.rows[0].dimensions[0].as_deref(),
            r.rows[0].metrics[0].as_f64()
        ),
        (Some("Newsletter"), 20.0),
        "EUR only when asked"
    );
    let bad = Query::from_json(r#"{"site":"shop.test","metrics":["revenue"],"filters":[["is","country",["DE"]]],"attribution":{"model":"linear"}}"#).expect("query");
    let err = attribute(&store, &bad, at("2026-04-01T00:00:00"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("filters[0]:"), "{err}");
}

proptest! {
    #[test]
    fn credits_add_up_to_the_purchases_whatever_the_order(
        raw in prop::collection::vec((0u8..3, 0i64..(20 * 24 * 60), 0u8..3, prop::option::of(1u32..10_000)), 1..40),
        model in prop::sample::select(vec!["first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based"]),
        seed in any::<u64>(),
    ) {
        let sources = [None, Some("A"), Some("B")];
        let events: Vec<Event> = raw.iter().enumerate().map(|(i, (v, min, s, cents))| {
            let amount = cents.map(|c| format!("{}.{:02}", c / 100, c % 100));
            let mut e = ev(i as u128 + 1, &format!("v{v}"), "2026-03-01T00:00:00", sources[*s as usize], amount.as_deref().map(|a| (a, "USD")));
            e.timestamp += chrono::Duration::minutes(*min);
            e
        }).collect();
        let total: i64 = events.iter().filter_map(|e| e.commerce.revenue.map(|m| m.minor)).sum();
        let purchases = events.iter().filter(|e| e.kind == EventKind::Purchase).count() as i64;
        let q = Query::from_json(&format!(r#"{{"site":"shop.test","date_range":["2026-03-01","2026-03-31"],"metrics":["revenue","conversions"],"dimensions":["source"],"attribution":{{"model":"{model}"}}}}"#)).expect("query");
        let site = Site::new("shop.test");
        let now = at("2026-04-01T00:00:00");
        let r = attribute_events(&events, &site, &q, now).expect("attribution");
        let credited: i64 = r.rows.iter().map(|row| row.metrics[0].units).sum();
        let converted: i64 = r.rows.iter().map(|row| row.metrics[1].units).sum();
        // Each row rounds once: the sum is within half a unit per row of the total.
        prop_assert!((credited - total).abs() <= r.rows.len() as i64, "{credited} vs {total}");
        prop_assert!((converted - purchases * 100).abs() <= r.rows.len() as i64, "{converted} vs {}", purchases * 100);
        let mut shuffled = events.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(attribute_events(&shuffled, &site, &q, now).expect("attribution"), r);
    }
}
