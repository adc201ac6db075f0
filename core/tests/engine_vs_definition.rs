//! Property test: the engine equals a direct, naive reading of the contract's
//! definitions, for random events appended in random order and batches.

use beacon_core::{BotInfo, Event, EventKind, MemoryStore, Query, Site};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const T: i64 = 30 * 60 * 1000;
const METRICS: [&str; 8] = [
    "visitors",
    "visits",
    "pageviews",
    "events",
    "bounce_rate",
    "visit_duration",
    "views_per_visit",
    "conversions",
];

#[derive(Debug, Clone)]
struct Raw {
    visitor: u8,
    minute: i64,
    kind: u8,
    path: u8,
    source: u8,
    bot: bool,
}

fn raw() -> impl Strategy<Value = Raw> {
    (
        0u8..5,
        0i64..(3 * 24 * 60),
        0u8..5,
        0u8..3,
        0u8..3,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(visitor, minute, kind, path, source, bot)| Raw {
            visitor,
            minute,
            kind,
            path,
            source,
            bot,
        })
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("date")
}

fn to_event(i: usize, r: &Raw) -> Event {
    let kind = [
        EventKind::Pageview,
        EventKind::Goal,
        EventKind::Purchase,
        EventKind::Custom,
        EventKind::Engagement,
    ][r.kind as usize];
    let mut e = Event {
        id: uuid::Uuid::from_u128(i as u128 + 1),
        site: "p.test".into(),
        kind,
        // Minutes, with every fifth event on an exact 10-minute step to hit the 30:00 edge.
        timestamp: start()
            + chrono::Duration::milliseconds(if i % 5 == 0 {
                (r.minute / 10) * 600_000
            } else {
                r.minute * 60_000 + 17_000
            }),
        ..Event::default()
    };
    e.identity.visitor_id = format!("v{}", r.visitor);
    e.page.path = format!("/{}", r.path);
    e.name = matches!(
        kind,
        EventKind::Goal | EventKind::Custom | EventKind::Purchase
    )
    .then(|| "n".to_owned());
    e.acquisition.source = [None, Some("A".into()), Some("B".into())][r.source as usize].clone();
    e.bot = r.bot.then(|| BotInfo {
        reason: "test".into(),
    });
    e
}

/// Each visitor's sessions, straight from the definition: events in time order,
/// a new session after more than 30 minutes without one.
fn naive_sessions(events: &[Event]) -> BTreeMap<&str, Vec<Vec<&Event>>> {
    let mut by_visitor: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_visitor
            .entry(&e.identity.visitor_id)
            .or_default()
            .push(e);
    }
    by_visitor
        .into_iter()
        .map(|(visitor, mut evs)| {
            evs.sort_by_key(|e| (e.timestamp, e.id));
            let mut sessions: Vec<Vec<&Event>> = Vec::new();
            for e in evs {
                match sessions.last_mut() {
                    Some(s)
                        if (e.timestamp - s.last().expect("non-empty").timestamp)
                            .num_milliseconds()
                            <= T =>
                    {
                        s.push(e)
                    }
                    _ => sessions.push(vec![e]),
                }
            }
            (visitor, sessions)
        })
        .collect()
}

/// Metrics per group, straight from the definitions.
fn naive(
    events: &[Event],
    from: i64,
    to: i64,
    dim: Option<&str>,
) -> BTreeMap<Option<String>, Vec<f64>> {
    #[derive(Default)]
    struct G {
        visitors: BTreeSet<String>,
        visits: u64,
        pageviews: u64,
        events: u64,
        bounces: u64,
        duration: i64,
        visit_pvs: u64,
        converters: BTreeSet<String>,
    }
    let mut groups: BTreeMap<Option<String>, G> = BTreeMap::new();
    for (visitor, sessions) in naive_sessions(events) {
        for s in sessions {
            let first = s[0];
            let in_range = |e: &Event| (from..to).contains(&e.timestamp.timestamp_millis());
            let key = |e: &Event| -> Option<String> {
                match dim {
                    None => None,
                    Some("source") => first.acquisition.source.as_deref().map(str::to_owned),
                    Some(_) => Some(e.page.path.clone()),
                }
            };
            for e in s.iter().filter(|e| in_range(e) && !e.is_bot()) {
                let g = groups.entry(key(e)).or_default();
                g.visitors.insert(visitor.to_owned());
                g.events += 1;
                g.pageviews += u64::from(e.kind == EventKind::Pageview);
                if e.kind.is_conversion() {
                    g.converters.insert(visitor.to_owned());
                }
            }
            if in_range(first) && !first.is_bot() {
                let pvs = s.iter().filter(|e| e.kind == EventKind::Pageview).count() as u64;
                let bounce = pvs == 1 && !s.iter().any(|e| e.kind.is_interaction());
                let keys: BTreeSet<Option<String>> = s.iter().map(|e| key(e)).collect();
                for k in keys {
                    let g = groups.entry(k).or_default();
                    g.visits += 1;
                    g.bounces += u64::from(bounce);
                    g.duration += (s.last().expect("non-empty").timestamp - first.timestamp)
                        .num_milliseconds();
                    g.visit_pvs += pvs;
                }
            }
        }
    }
    // Half-up rounding of num/den to `places` decimals, in integers.
    let round = |num: u64, den: u64, places: u32| -> f64 {
        if den == 0 {
            return 0.0;
        }
        let m = 10u64.pow(places);
        ((num * m * 2 + den) / (den * 2)) as f64 / m as f64
    };
    let mut out: BTreeMap<Option<String>, Vec<f64>> = groups
        .into_iter()
        .map(|(k, g)| {
            let metrics = vec![
                g.visitors.len() as f64,
                g.visits as f64,
                g.pageviews as f64,
                g.events as f64,
                round(g.bounces * 100, g.visits, 1),
                round(g.duration as u64, g.visits * 1000, 0),
                round(g.visit_pvs, g.visits, 2),
                g.converters.len() as f64,
            ];
            (k, metrics)
        })
        .filter(|(_, m)| dim.is_none() || m.iter().any(|x| *x != 0.0))
        .collect();
    if dim.is_none() {
        out.entry(None).or_insert_with(|| vec![0.0; METRICS.len()]);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn engine_equals_the_definitions(
        raws in prop::collection::vec(raw(), 0..120),
        order_seed in any::<u64>(),
        batch in 1usize..10,
        day in 0u32..3,
        dim in prop::option::of(prop::sample::select(vec!["source", "page"])),
    ) {
        let events: Vec<Event> = raws.iter().enumerate().map(|(i, r)| to_event(i, r)).collect();
        let store = MemoryStore::new();
        let site = Site::new("p.test");
        store.put_site_sync(site.clone()).expect("site");
        let mut shuffled = events.clone();
        let mut x = order_seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for chunk in shuffled.chunks(batch) {
            store.append_sync(chunk).expect("append");
        }
        let date = (start() + chrono::Duration::days(i64::from(day))).date_naive();
        let from = beacon_core::backend::day_start(site.timezone, date).timestamp_millis();
        let want = naive(&events, from, from + 86_400_000, dim);
        let now = start() + chrono::Duration::days(10);
        // With conversions (per-row path) and without (sessions may add up in O(1)).
        for n in [METRICS.len(), METRICS.len() - 1] {
            let mut q = Query::from_json(&format!(
                r#"{{"site":"p.test","date_range":["{date}","{date}"],"metrics":{}}}"#,
                serde_json::to_string(&METRICS[..n]).expect("json")
            )).expect("query");
            if let Some(d) = dim {
                q.dimensions = vec![beacon_core::Dimension::parse(d).expect("dimension")];
            }
            let got = store.query_sync(&site, &q, &now.into()).expect("query");
            let got: BTreeMap<Option<String>, Vec<f64>> = got.rows.iter()
                .map(|r| (r.dimensions.first().cloned().flatten(), r.metrics.iter().map(|m| m.as_f64()).collect()))
                .collect();
            let want: BTreeMap<Option<String>, Vec<f64>> = want.iter()
                .map(|(k, m)| (k.clone(), m[..n].to_vec()))
                .filter(|(_, m)| dim.is_none() || m.iter().any(|x| *x != 0.0))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}

/// First- or last-touch conversions by source, straight from the definitions: each
/// purchase in `from..to` that no bot made credits the source of the first (or
/// last) session of its visitor that started at most `window_ms` before it, up to
/// it, among sessions whose first event is no bot's.
fn naive_attribution(
    events: &[Event],
    (from, to): (i64, i64),
    window_ms: i64,
    first_touch: bool,
) -> BTreeMap<Option<String>, f64> {
    let mut out: BTreeMap<Option<String>, f64> = BTreeMap::new();
    for sessions in naive_sessions(events).into_values() {
        let ms = |e: &Event| e.timestamp.timestamp_millis();
        let touches: Vec<&Event> = sessions
            .iter()
            .map(|s| s[0])
            .filter(|first| !first.is_bot())
            .collect();
        for e in sessions.iter().flatten() {
            if e.kind != EventKind::Purchase || e.is_bot() || !(from..to).contains(&ms(e)) {
                continue;
            }
            let mut within = touches
                .iter()
                .filter(|t| ms(t) >= ms(e) - window_ms && ms(t) <= ms(e));
            let touch = if first_touch {
                within.next()
            } else {
                within.next_back()
            };
            if let Some(t) = touch {
                *out.entry(t.acquisition.source.as_deref().map(str::to_owned))
                    .or_default() += 1.0;
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn attribution_equals_the_definitions(
        raws in prop::collection::vec(raw(), 0..120),
        batch in 1usize..10,
        day in 0u32..3,
        window_days in 1u32..3,
        first_touch in any::<bool>(),
    ) {
        let events: Vec<Event> = raws.iter().enumerate().map(|(i, r)| to_event(i, r)).collect();
        let store = MemoryStore::new();
        let site = Site::new("p.test");
        store.put_site_sync(site.clone()).expect("site");
        for chunk in events.chunks(batch) {
            store.append_sync(chunk).expect("append");
        }
        let date = (start() + chrono::Duration::days(i64::from(day))).date_naive();
        let from = beacon_core::backend::day_start(site.timezone, date).timestamp_millis();
        let model = if first_touch { "first_touch" } else { "last_touch" };
        let want = naive_attribution(
            &events,
            (from, from + 86_400_000),
            i64::from(window_days) * 86_400_000,
            first_touch,
        );
        let q = Query::from_json(&format!(
            r#"{{"site":"p.test","date_range":["{date}","{date}"],"metrics":["conversions"],
                "dimensions":["source"],"attribution":{{"model":"{model}","window_days":{window_days}}}}}"#
        )).expect("query");
        let now = start() + chrono::Duration::days(10);
        let got = store.query_sync(&site, &q, &now.into()).expect("query");
        let got: BTreeMap<Option<String>, f64> = got.rows.iter()
            .map(|r| (r.dimensions.first().cloned().flatten(), r.metrics[0].as_f64()))
            .collect();
        prop_assert_eq!(got, want);
    }
}
