//! Ingest benchmark: 1M events through the streaming `Sessionizer` and into `MemoryStore`.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use beacon_benches::generate;
use beacon_core::backend::Sessionizer;
use beacon_core::{MemoryStore, Site};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

const SITE: &str = "bench.example";

fn ingest(c: &mut Criterion) {
    let events = generate(SITE, 1_000_000, 7);
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("sessionize_and_append_1M", |b| {
        b.iter_batched(
            || {
                let store = MemoryStore::new();
                store.put_site_sync(Site::new(SITE)).expect("site");
                (store, Sessionizer::new(), events.clone())
            },
            |(store, mut sessionizer, mut evs)| {
                for e in evs.iter_mut() {
                    let o = sessionizer.observe(
                        &e.site,
                        &e.identity.visitor_id,
                        e.timestamp.timestamp_millis(),
                        1_800_000,
                    );
                    e.identity.session_id = Some(o.session_id);
                    e.identity.session_number = Some(o.session_number);
                }
                for chunk in evs.chunks(1000) {
                    store.append_sync(chunk).expect("append");
                }
                // Returned, so the input events are dropped outside the timed region.
                black_box((store, evs))
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("sessionize_only_1M", |b| {
        b.iter_batched(
            Sessionizer::new,
            |mut sessionizer| {
                for e in &events {
                    black_box(sessionizer.observe(
                        &e.site,
                        &e.identity.visitor_id,
                        e.timestamp.timestamp_millis(),
                        1_800_000,
                    ));
                }
                sessionizer
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("append_only_1M", |b| {
        b.iter_batched(
            || {
                let store = MemoryStore::new();
                store.put_site_sync(Site::new(SITE)).expect("site");
                store
            },
            |store| {
                for chunk in events.chunks(1000) {
                    store.append_sync(chunk).expect("append");
                }
                store
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
