//! Query benchmarks: the main queries over 30 days of 10M events, beside a naive
//! row-store peer that computes the same numbers, measured in the same run.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use beacon_benches::Traffic;
use beacon_core::{Event, EventKind, EventStore, MemoryStore, Query, Site};
use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;

const SITE: &str = "bench.example";

fn events_count() -> usize {
    std::env::var("BEACON_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

/// The peer: what a straightforward implementation does — rows of events, string
/// hash sets for distinct visitors, a hash map from visitor to its time-sorted rows.
/// The peer's rows: visitor id, time in ms, kind.
type Row = (String, i64, EventKind);

fn naive_main_stats(events: &[Row], from: i64, to: i64) -> (usize, u64, u64, u64, i64) {
    let mut visitors: HashSet<&str> = HashSet::new();
    let mut pageviews = 0u64;
    let mut by_visitor: HashMap<&str, Vec<(i64, EventKind)>> = HashMap::new();
    for (visitor, t, kind) in events {
        by_visitor.entry(visitor).or_default().push((*t, *kind));
        if *t >= from && *t < to {
            visitors.insert(visitor);
            pageviews += u64::from(*kind == EventKind::Pageview);
        }
    }
    let (mut visits, mut bounces, mut duration) = (0u64, 0u64, 0i64);
    for rows in by_visitor.values_mut() {
        rows.sort_unstable_by_key(|r| r.0);
        let mut i = 0;
        while i < rows.len() {
            let mut j = i + 1;
            while j < rows.len() && rows[j].0 - rows[j - 1].0 <= 1_800_000 {
                j += 1;
            }
            if rows[i].0 >= from && rows[i].0 < to {
                visits += 1;
                let pvs = rows[i..j]
                    .iter()
                    .filter(|r| r.1 == EventKind::Pageview)
                    .count();
                let inter = rows[i..j].iter().any(|r| r.1.is_interaction());
                bounces += u64::from(pvs == 1 && !inter);
                duration += rows[j - 1].0 - rows[i].0;
            }
            i = j;
        }
    }
    (visitors.len(), visits, pageviews, bounces, duration)
}

fn queries(c: &mut Criterion) {
    let n = events_count();
    let store = MemoryStore::new();
    let site = Site::new(SITE);
    store.put_site_sync(site.clone()).expect("site");
    let mut traffic = Traffic::new(SITE, n, 11);
    loop {
        let chunk: Vec<Event> = traffic.by_ref().take(100_000).collect();
        if chunk.is_empty() {
            break;
        }
        store.append_sync(&chunk).expect("append");
    }
    store.build();
    let events: Vec<Row> = Traffic::new(SITE, n, 11)
        .map(|e| {
            (
                e.identity.visitor_id,
                e.timestamp.timestamp_millis(),
                e.kind,
            )
        })
        .collect();
    let usage = store.memory_usage();
    eprintln!(
        "memory: {} events, {} heap bytes, {:.1} bytes/event (columns, dictionaries, sessions)",
        usage.events,
        usage.heap_bytes,
        usage.heap_bytes as f64 / usage.events as f64
    );
    let now = Utc
        .with_ymd_and_hms(2026, 4, 1, 0, 0, 0)
        .single()
        .expect("date");
    let q = |json: &str| Query::from_json(json).expect("bench query");
    let main = q(
        r#"{"site":"bench.example","date_range":["2026-03-01","2026-03-30"],"metrics":["visitors","visits","pageviews","bounce_rate","visit_duration"]}"#,
    );
    let pages = q(
        r#"{"site":"bench.example","date_range":["2026-03-01","2026-03-30"],"metrics":["visitors","pageviews"],"dimensions":["page"],"limit":10}"#,
    );
    let daily = q(
        r#"{"site":"bench.example","date_range":["2026-03-01","2026-03-30"],"metrics":["visitors","visits","pageviews"],"dimensions":["time:day"]}"#,
    );
    let sources = q(
        r#"{"site":"bench.example","date_range":["2026-03-01","2026-03-30"],"metrics":["visitors","visits","bounce_rate"],"dimensions":["source"],"filters":[["is","country",["US","DE"]]]}"#,
    );

    let from = Utc
        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("date")
        .timestamp_millis();
    let to = Utc
        .with_ymd_and_hms(2026, 3, 31, 0, 0, 0)
        .single()
        .expect("date")
        .timestamp_millis();
    // The peer must compute the same answer, or the comparison means nothing.
    let (v, visits, pv, bounces, dur) = naive_main_stats(&events, from, to);
    let got = store.query_sync(&site, &main, &now.into()).expect("query");
    let m: Vec<i64> = got.rows[0].metrics.iter().map(|x| x.units).collect();
    assert_eq!(
        (m[0], m[1], m[2]),
        (v as i64, visits as i64, pv as i64),
        "engine and peer agree"
    );
    assert_eq!(m[3], beacon_core::backend::percent(bounces, visits).units);
    assert_eq!(
        m[4],
        beacon_core::backend::mean_seconds(dur as u64, visits).units
    );
    eprintln!("main stats: visitors {v}, visits {visits}, pageviews {pv} (engine and peer agree)");

    // Every query goes through the storage trait, as the server and CLI call it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let events_store: &dyn EventStore = &store;
    let run = |q: &Query| {
        rt.block_on(events_store.query(&site, q, &now.into()))
            .expect("query")
    };
    let mut g = c.benchmark_group(format!("query_{}M", n / 1_000_000));
    g.sample_size(20);
    g.bench_function("main_stats", |b| b.iter(|| black_box(run(&main))));
    g.bench_function("top10_pages", |b| b.iter(|| black_box(run(&pages))));
    g.bench_function("daily_timeseries", |b| b.iter(|| black_box(run(&daily))));
    g.bench_function("sources_filtered", |b| b.iter(|| black_box(run(&sources))));
    g.sample_size(10);
    g.bench_function("peer_naive_rowstore_main_stats", |b| {
        b.iter(|| black_box(naive_main_stats(&events, from, to)))
    });
    g.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
