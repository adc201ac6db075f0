//! What a [`Tracker`] call costs the app's thread: validation and a hand-off to the
//! background task, per call kind. Each sample times bursts of calls (as an app
//! makes them while serving requests) and then, untimed, waits for the background
//! to store them, so that no call meets a full queue and answers "busy". The
//! background's cost and a sustained rate are measured by the `tracker-million`
//! binary.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use beacon_core::{MemoryStore, Pipeline, Site, Tracker};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// With `--features mimalloc`, the allocator the `beacon` binary ships with.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SITE: &str = "bench.example";

/// Calls per burst: well under the tracker's queue; made within the background's
/// linger, so the burst meets an idle background (the sustained case is the
/// `tracker-million` binary's).
const RUN: u64 = 1_000;

fn timed(
    rt: &tokio::runtime::Runtime,
    tracker: &Tracker,
    iters: u64,
    call: &dyn Fn(u64),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = RUN.min(iters - done);
        let start = Instant::now();
        for i in done..done + n {
            call(i);
        }
        total += start.elapsed();
        done += n;
        rt.block_on(tracker.flush()).expect("flush");
    }
    total
}

fn tracker(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(MemoryStore::new());
    store.put_site_sync(Site::new(SITE)).expect("site");
    let (pipeline, tracker) = rt.block_on(async {
        let pipeline = Pipeline::builder(Arc::clone(&store))
            .build()
            .expect("pipeline");
        let tracker = pipeline.tracker(SITE).await.expect("tracker");
        (pipeline, tracker)
    });
    let visitors: Vec<Tracker> = (0..1000)
        .map(|i| tracker.visitor(format!("v{i}")))
        .collect();
    let who = |i: u64| &visitors[(i % 1000) as usize];

    let mut g = c.benchmark_group("tracker");
    g.throughput(Throughput::Elements(1));
    g.bench_function("event", |b| {
        b.iter_custom(|iters| {
            timed(&rt, &tracker, iters, &|i| {
                who(i).event("signup", [("plan", "pro")]).expect("tracked");
            })
        })
    });
    g.bench_function("pageview", |b| {
        b.iter_custom(|iters| {
            timed(&rt, &tracker, iters, &|i| {
                who(i)
                    .pageview("https://bench.example/pricing?utm_source=news")
                    .expect("tracked");
            })
        })
    });
    g.bench_function("purchase", |b| {
        b.iter_custom(|iters| {
            timed(&rt, &tracker, iters, &|i| {
                who(i).purchase("order", "49.00", "EUR").expect("tracked");
            })
        })
    });
    g.bench_function("visitor_then_event", |b| {
        b.iter_custom(|iters| {
            timed(&rt, &tracker, iters, &|i| {
                tracker
                    .visitor(format!("u{i}"))
                    .event("signup", [("plan", "pro")])
                    .expect("tracked");
            })
        })
    });
    // The peer, in the same run: what HTTP ingest spends validating the same event
    // (`Hit::validate`, the event built and dropped).
    g.bench_function("peer_hit_validate", |b| {
        let now = chrono::Utc::now();
        b.iter(|| {
            let hit = beacon_core::Hit {
                site: Some(SITE.into()),
                kind: Some("custom".into()),
                url: Some("https://bench.example/".into()),
                visitor_id: Some("v1".into()),
                name: Some("signup".into()),
                props: [("plan".to_string(), "pro".to_string())]
                    .into_iter()
                    .collect(),
                ..beacon_core::Hit::default()
            };
            std::hint::black_box(
                hit.validate(&beacon_core::ValidationContext::live(now), None)
                    .expect("valid"),
            );
        })
    });
    g.finish();
    let report = rt.block_on(async {
        let report = tracker.shutdown().await;
        pipeline.shutdown().await;
        report
    });
    assert_eq!(report.tracked, report.stored, "{report:?}");
}

criterion_group!(benches, tracker);
criterion_main!(benches);
