//! Property tests: a memory snapshot read back is the store it was written from
//! (every field a scan gives, every query's answer), whatever was appended, erased
//! or left unbuilt; and input cut short or changed anywhere is an error, never a
//! panic or a partly loaded store.

use beacon_core::backend::ScanRequest;
use beacon_core::{
    BotInfo, Currency, DeviceType, Event, EventKind, EventStore, MemoryStore, Money, Query, Site,
};
use chrono::{DateTime, TimeZone, Utc};
use futures_util::TryStreamExt;
use proptest::prelude::*;

const SITES: [&str; 2] = ["a.test", "b.test"];

#[derive(Debug, Clone)]
struct Raw {
    site: u8,
    visitor: u8,
    minute: i64,
    kind: u8,
    path: u8,
    source: u8,
    rich: u8,
    bot: bool,
}

fn raw() -> impl Strategy<Value = Raw> {
    (
        (0u8..2, 0u8..6, 0i64..(2 * 24 * 60)),
        (0u8..6, 0u8..4, 0u8..4, 0u8..4, prop::bool::weighted(0.1)),
    )
        .prop_map(
            |((site, visitor, minute), (kind, path, source, rich, bot))| Raw {
                site,
                visitor,
                minute,
                kind,
                path,
                source,
                rich,
                bot,
            },
        )
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("date")
}

fn to_event(i: usize, r: &Raw) -> Event {
    let kind = EventKind::ALL[r.kind as usize];
    let mut e = Event {
        // Every seventh event has the nil id (never indexed, never deduplicated).
        id: if i % 7 == 6 {
            uuid::Uuid::nil()
        } else {
            uuid::Uuid::from_u128(i as u128 + 1)
        },
        site: SITES[r.site as usize].into(),
        kind,
        timestamp: start() + chrono::Duration::milliseconds(r.minute * 60_000 + i as i64),
        ..Event::default()
    };
    e.identity.visitor_id = format!("visitor-{}", r.visitor);
    e.page.host = SITES[r.site as usize].into();
    e.page.path = format!("/p/{}", r.path);
    e.page.url = format!("https://{}{}", e.page.host, e.page.path);
    e.name = (kind != EventKind::Pageview).then(|| format!("n{}", r.path % 2));
    e.acquisition.source =
        [None, Some("Google".into()), Some("Ünïcode".into()), None][r.source as usize].clone();
    e.acquisition.utm.campaign = (r.source == 3).then(|| "spring".into());
    e.page.referrer = (r.source == 1).then(|| "https://google.com/".into());
    e.location.country = (r.visitor % 2 == 0).then(|| "DE".into());
    e.device.device_type = Some(if r.visitor % 3 == 0 {
        DeviceType::Mobile
    } else {
        DeviceType::Desktop
    });
    e.device.browser = Some("Firefox".into());
    match r.rich {
        1 => {
            e.commerce.revenue = Some(Money::parse("12.34", Currency::EUR).expect("money"));
            e.commerce.order_id = Some(format!("o{i}"));
        }
        2 => {
            e.props.insert("plan".into(), format!("p{}", r.path));
            e.engagement.time_ms = Some(1500);
        }
        3 => e.engagement.scroll_depth = Some(80),
        _ => {}
    }
    e.bot = r.bot.then(|| BotInfo {
        reason: "test".into(),
    });
    e
}

/// Every event of every site as a scan gives them, ordered.
fn scan_all(store: &MemoryStore) -> Vec<Event> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut all = Vec::new();
    for site in SITES {
        let batches = rt.block_on(async {
            let stream = store.scan(&ScanRequest::new(site)).await.expect("scan");
            stream.try_collect::<Vec<_>>().await.expect("batches")
        });
        all.extend(batches.into_iter().flatten());
    }
    all.sort_by_key(|e| {
        (
            e.site.clone(),
            e.identity.visitor_id.clone(),
            e.timestamp,
            e.id,
            e.kind,
        )
    });
    all
}

/// Answers to a few queries of each site: totals, per source, per page, per country.
fn answers(store: &MemoryStore) -> Vec<String> {
    let now = start() + chrono::Duration::days(5);
    let mut out = Vec::new();
    for site in SITES {
        for dims in [
            "[]",
            r#"["source"]"#,
            r#"["page"]"#,
            r#"["country","device"]"#,
        ] {
            let q = Query::from_json(&format!(
                r#"{{"site":"{site}","date_range":"all","dimensions":{dims},"metrics":["visitors","visits","pageviews","events","bounce_rate","visit_duration","conversions"]}}"#
            ))
            .expect("query");
            let r = store
                .query_sync(&Site::new(site), &q, &now.into())
                .expect("query");
            out.push(format!("{:?}", r.rows));
        }
    }
    out
}

fn snapshot(store: &MemoryStore) -> Vec<u8> {
    let mut bytes = Vec::new();
    store.write_snapshot(&mut bytes).expect("snapshot");
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_snapshot_read_back_is_the_store_it_was_written_from(
        raws in prop::collection::vec(raw(), 0..150),
        built_after in 0usize..150,
        erase in prop::option::of(0u8..6),
    ) {
        let events: Vec<Event> = raws.iter().enumerate().map(|(i, r)| to_event(i, r)).collect();
        let store = MemoryStore::new();
        let (first, rest) = events.split_at(built_after.min(events.len()));
        store.append_sync(first).expect("append");
        // A query builds what came first; the rest stays unordered in the table.
        let _ = answers(&store);
        store.append_sync(rest).expect("append");
        if let Some(v) = erase {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            rt.block_on(store.erase(SITES[0], beacon_core::EraseScope::Visitor(format!("visitor-{v}"))))
                .expect("erase");
        }
        let bytes = snapshot(&store);
        let copy = MemoryStore::new();
        let loaded = copy.read_snapshot(&mut &bytes[..]).expect("read back");
        prop_assert_eq!(loaded as usize, store.memory_usage().events);
        prop_assert_eq!(scan_all(&copy), scan_all(&store));
        prop_assert_eq!(answers(&copy), answers(&store));
        // A copy read back writes the bytes it was read from (a copy is built).
        let again = snapshot(&copy);
        let fresh = MemoryStore::new();
        fresh.read_snapshot(&mut &again[..]).expect("read back");
        prop_assert!(snapshot(&fresh) == again, "a built copy writes what it read");
        // Ids are held as before: appending everything again stores the same events
        // (nil ids, erased ones) in both.
        let again = copy.append_sync(&events).expect("append");
        prop_assert_eq!(again.stored, store.append_sync(&events).expect("append").stored);
        prop_assert_eq!(answers(&copy), answers(&store));
    }

    #[test]
    fn a_snapshot_cut_short_or_changed_is_an_error_not_a_panic(
        raws in prop::collection::vec(raw(), 1..40),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let events: Vec<Event> = raws.iter().enumerate().map(|(i, r)| to_event(i, r)).collect();
        let store = MemoryStore::new();
        store.append_sync(&events).expect("append");
        let bytes = snapshot(&store);
        let short = &bytes[..cut.index(bytes.len())];
        let copy = MemoryStore::new();
        prop_assert!(copy.read_snapshot(&mut &short[..]).is_err());
        prop_assert_eq!(copy.memory_usage().events, 0, "nothing is loaded from a bad snapshot");
        let mut changed = bytes.clone();
        changed[flip.index(bytes.len())] ^= 1 << bit;
        // A changed byte may still read (a different time, say): it must not panic,
        // and what it loads must answer queries.
        let copy = MemoryStore::new();
        if copy.read_snapshot(&mut &changed[..]).is_ok() {
            let _ = answers(&copy);
            let _ = scan_all(&copy);
        } else {
            prop_assert_eq!(copy.memory_usage().events, 0);
        }
    }
}

#[test]
fn a_snapshot_is_read_only_into_a_store_without_events_of_its_sites() {
    let store = MemoryStore::new();
    let events: Vec<Event> = (0..10)
        .map(|i| {
            to_event(
                i,
                &Raw {
                    site: 0,
                    visitor: 1,
                    minute: i as i64,
                    kind: 0,
                    path: 0,
                    source: 0,
                    rich: 0,
                    bot: false,
                },
            )
        })
        .collect();
    store.append_sync(&events).expect("append");
    let bytes = snapshot(&store);
    let err = store
        .read_snapshot(&mut &bytes[..])
        .expect_err("the store holds events");
    assert!(err.to_string().contains("a.test"), "{err}");
    assert_eq!(store.memory_usage().events, 10, "the store is unchanged");
    let err = MemoryStore::new()
        .read_snapshot(&mut &b"not a snapshot at all"[..])
        .expect_err("not a snapshot");
    assert!(err.to_string().contains("memory snapshot"), "{err}");
}
