//! Attribution and funnel benchmarks, each beside a straightforward peer computing
//! the same answer in the same run (the answers are asserted equal before timing).
//!
//! - attribution: 1M purchases over 10M sessions (2M visitors, 60 days), every model,
//!   on the engine's compact input ([`Touchpoints`]); the peer keeps a hash map of
//!   visitors to sessions and string-keyed credits.
//! - funnel: a 5-step funnel over 10M events in a [`MemoryStore`] through the store
//!   trait (the engine runs on the store's own table); the peer groups rows by visitor
//!   string and matches each event's strings against each step.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use beacon_attribution::{shares, Funnel, Touch, Touchpoints};
use beacon_benches::{Rng, Traffic, SOURCES};
use beacon_core::{AttributionModel, Event, EventKind, EventStore, MemoryStore, Site};
use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::collections::HashMap;
use std::hint::black_box;

const DAY: i64 = 86_400_000;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Workload {
    /// (visitor, start ms, source index)
    sessions: Vec<(u32, i64, usize)>,
    /// (visitor, time ms, amount in cents)
    purchases: Vec<(u32, i64, i64)>,
}

fn workload(sessions: usize, purchases: usize) -> Workload {
    let visitors = (sessions / 5).max(1) as u64;
    let mut rng = Rng::new(7);
    let span = 60 * DAY;
    let sessions = (0..sessions)
        .map(|i| {
            (
                rng.below(visitors) as u32,
                i as i64 * span / sessions as i64,
                rng.skewed(SOURCES.len() as u64) as usize,
            )
        })
        .collect();
    let purchases = (0..purchases)
        .map(|_| {
            (
                rng.below(visitors) as u32,
                30 * DAY + rng.below(30 * DAY as u64) as i64,
                500 + rng.below(20_000) as i64,
            )
        })
        .collect();
    Workload {
        sessions,
        purchases,
    }
}

fn touchpoints(w: &Workload) -> Touchpoints {
    let mut tp = Touchpoints::new();
    let keys: Vec<u32> = SOURCES
        .iter()
        .map(|s| tp.key(vec![s.map(str::to_owned)]))
        .collect();
    for &(v, start, s) in &w.sessions {
        tp.push_session(v, start, keys[s], SOURCES[s].is_some());
    }
    for &(v, t, amount) in &w.purchases {
        tp.push_conversion(v, t, amount as f64, 1.0);
    }
    tp
}

/// The peer: visitor → sessions in a hash map, touches with string values, credits in
/// a string-keyed map.
fn peer_attribution(w: &Workload, model: AttributionModel) -> HashMap<Option<String>, (f64, f64)> {
    let mut by_visitor: HashMap<u32, Vec<(i64, Option<String>)>> = HashMap::new();
    for &(v, start, s) in &w.sessions {
        by_visitor
            .entry(v)
            .or_default()
            .push((start, SOURCES[s].map(str::to_owned)));
    }
    for list in by_visitor.values_mut() {
        list.sort();
    }
    let mut purchases = w.purchases.clone();
    purchases.sort_by_key(|p| (p.0, p.1));
    let mut credit: HashMap<Option<String>, (f64, f64)> = HashMap::new();
    for &(v, t, amount) in &purchases {
        let touches: Vec<Touch> = by_visitor
            .get(&v)
            .map(|l| {
                l.iter()
                    .filter(|(start, _)| *start <= t && *start >= t - 30 * DAY)
                    .map(|(start, value)| Touch {
                        start_ms: *start,
                        value: value.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (touch, share) in touches.iter().zip(shares(model, &touches, t, 7.0)) {
            let c = credit.entry(touch.value.clone()).or_default();
            c.0 += share * amount as f64;
            c.1 += share;
        }
    }
    credit
}

const MODELS: [AttributionModel; 6] = [
    AttributionModel::FirstTouch,
    AttributionModel::LastTouch,
    AttributionModel::LastNonDirect,
    AttributionModel::Linear,
    AttributionModel::TimeDecay,
    AttributionModel::PositionBased,
];

fn attribution(c: &mut Criterion) {
    let (ns, np) = (
        env_or("BEACON_BENCH_SESSIONS", 10_000_000),
        env_or("BEACON_BENCH_PURCHASES", 1_000_000),
    );
    let w = workload(ns, np);
    let tp = touchpoints(&w);
    // Engine and peer agree (to the cent, and to 1e-6 of a conversion).
    for model in MODELS {
        let got = tp.clone().credit(model, 30, 7.0);
        let want = peer_attribution(&w, model);
        for (k, key) in tp.keys().iter().enumerate() {
            let p = want.get(&key[0]).copied().unwrap_or_default();
            assert!(
                (got[k].revenue.round() - p.0.round()).abs() <= 1.0
                    && (got[k].conversions - p.1).abs() < 1e-6,
                "{model:?} {key:?}: engine {:?}, peer {p:?}",
                got[k]
            );
        }
    }
    eprintln!(
        "attribution: {ns} sessions, {np} purchases; engine and peer agree under every model"
    );
    let mut g = c.benchmark_group(format!(
        "attribution_{}M_purchases_{}M_sessions",
        np / 1_000_000,
        ns / 1_000_000
    ));
    g.sample_size(10);
    for model in MODELS {
        g.bench_function(model.as_str(), |b| {
            b.iter_batched(
                || tp.clone(),
                |mut tp| black_box(tp.credit(model, 30, 7.0)),
                BatchSize::LargeInput,
            )
        });
    }
    g.bench_function("peer_hashmap_linear", |b| {
        b.iter(|| black_box(peer_attribution(&w, AttributionModel::Linear)))
    });
    g.finish();
}

/// The peer's rows: visitor, time, kind, path, name.
type Row = (String, i64, EventKind, String, Option<String>);

fn glob(p: &str, t: &str) -> bool {
    beacon_attribution::glob(p, t)
}

/// The peer: rows grouped by visitor string, each event's strings tested per step.
fn peer_funnel(
    rows: &[Row],
    steps: &[(EventKind, &str)],
    window: i64,
    from: i64,
    to: i64,
) -> Vec<u64> {
    let mut by_visitor: HashMap<&str, Vec<&Row>> = HashMap::new();
    for r in rows.iter().filter(|r| r.1 >= from && r.1 < to) {
        by_visitor.entry(&r.0).or_default().push(r);
    }
    let matches = |k: usize, r: &Row| {
        let (kind, what) = steps[k];
        r.2 == kind
            && match kind {
                EventKind::Pageview => glob(what, &r.3),
                _ => r.4.as_deref() == Some(what),
            }
    };
    let mut counts = vec![0u64; steps.len()];
    for list in by_visitor.values_mut() {
        list.sort_by_key(|r| r.1);
        let mut best = 0;
        for i in 0..list.len() {
            if !matches(0, list[i]) {
                continue;
            }
            let t0 = list[i].1;
            let (mut k, mut prev) = (1, t0);
            for r in &list[i + 1..] {
                if k == steps.len() || r.1 - t0 > window {
                    break;
                }
                if r.1 > prev && matches(k, r) {
                    k += 1;
                    prev = r.1;
                }
            }
            best = best.max(k);
        }
        for c in counts.iter_mut().take(best) {
            *c += 1;
        }
    }
    counts
}

fn funnels(c: &mut Criterion) {
    let n = env_or("BEACON_BENCH_EVENTS", 10_000_000);
    const SITE: &str = "bench.example";
    let store = MemoryStore::new();
    store.put_site_sync(Site::new(SITE)).expect("site");
    let mut traffic = Traffic::new(SITE, n, 11);
    let mut rows: Vec<Row> = Vec::with_capacity(n);
    loop {
        let chunk: Vec<Event> = traffic.by_ref().take(100_000).collect();
        if chunk.is_empty() {
            break;
        }
        store.append_sync(&chunk).expect("append");
        rows.extend(chunk.into_iter().map(|e| {
            (
                e.identity.visitor_id,
                e.timestamp.timestamp_millis(),
                e.kind,
                e.page.path,
                e.name,
            )
        }));
    }
    store.build();
    let f = Funnel::from_json(
        r#"{"site": "bench.example", "date_range": ["2026-03-01", "2026-03-30"], "window": "7d",
            "steps": [{"page": "/p/0"}, {"page": "/p/1*"}, {"goal": "signup"}, {"page": "/p/2*"}, {"goal": "download"}]}"#,
    )
    .expect("funnel");
    let steps = [
        (EventKind::Pageview, "/p/0"),
        (EventKind::Pageview, "/p/1*"),
        (EventKind::Goal, "signup"),
        (EventKind::Pageview, "/p/2*"),
        (EventKind::Goal, "download"),
    ];
    let now = Utc
        .with_ymd_and_hms(2026, 4, 1, 0, 0, 0)
        .single()
        .expect("date");
    let (from, to) = (
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
            .single()
            .expect("date")
            .timestamp_millis(),
        Utc.with_ymd_and_hms(2026, 3, 31, 0, 0, 0)
            .single()
            .expect("date")
            .timestamp_millis(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Through the storage trait, as the server and CLI call it.
    let events: &dyn EventStore = &store;
    let site = Site::new(SITE);
    let run = || {
        rt.block_on(events.funnel(&site, &f, &now.into()))
            .expect("funnel")
    };
    let got: Vec<u64> = run().steps.iter().map(|s| s.visitors).collect();
    let want = peer_funnel(&rows, &steps, 7 * DAY, from, to);
    assert_eq!(got, want, "engine and peer agree");
    eprintln!("funnel over {n} events: {got:?} visitors per step (engine and peer agree)");
    let mut g = c.benchmark_group(format!("funnel_{}M_events", n / 1_000_000));
    g.sample_size(10);
    g.bench_function("five_steps_memory_store", |b| b.iter(|| black_box(run())));
    g.bench_function("peer_rows_by_visitor_string", |b| {
        b.iter(|| black_box(peer_funnel(&rows, &steps, 7 * DAY, from, to)))
    });
    g.finish();
}

criterion_group!(benches, attribution, funnels);
criterion_main!(benches);
