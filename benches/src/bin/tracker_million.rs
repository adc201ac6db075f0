//! A million tracked events, stored exactly once: app threads call
//! [`Tracker::event`] as fast as they can (a "busy" answer is waited out and tried
//! again), the tracker stores them in a SQLite store through the pipeline; after
//! shutdown the store is opened again and every event is counted.
//!
//! `tracker-million [N] [THREADS]` (default 1,000,000 events from 2 threads) prints
//! one JSON line and exits 1 if any event is missing or stored twice.

// A command-line tool: standard output is its product.
#![allow(clippy::print_stdout)]

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use beacon_core::backend::ScanRequest;
use beacon_core::{ConfigStore, EventStore, IngestError, Pipeline, Site, Tracker};
use beacon_storage_sqlite::SqliteStore;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SITE: &str = "bench.example";

/// One app thread's calls: how long the calls took (waits for a busy queue left
/// out), and how many answered busy.
fn calls(tracker: &Tracker, from: u64, to: u64) -> (Duration, u64) {
    let visitors: Vec<Tracker> = (0..1000)
        .map(|i| tracker.visitor(format!("v{i}")))
        .collect();
    let mut busy = 0;
    let mut spent = Duration::ZERO;
    for i in from..to {
        let who = &visitors[(i % 1000) as usize];
        let n = i.to_string();
        loop {
            let start = Instant::now();
            let r = who.event("click", [("n", n.as_str())]);
            spent += start.elapsed();
            match r {
                Ok(()) => break,
                Err(IngestError::Busy) => {
                    busy += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => panic!("event {i}: {e}"),
            }
        }
    }
    (spent, busy)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let threads: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2).max(1);
    let dir = std::env::temp_dir().join(format!("beacon-tracker-million-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Runtime::new()?;

    let store = Arc::new(rt.block_on(SqliteStore::open(&dir))?);
    rt.block_on(store.put_site(Site::new(SITE)))?;
    let pipeline = rt.block_on(async { Pipeline::builder(Arc::clone(&store)).build() })?;
    let tracker = rt.block_on(pipeline.tracker(SITE))?;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let tracker = tracker.clone();
            let (from, to) = (n * t / threads, n * (t + 1) / threads);
            std::thread::spawn(move || calls(&tracker, from, to))
        })
        .collect();
    let mut spent = Duration::ZERO;
    let mut busy = 0;
    for h in handles {
        let (s, b) = h.join().map_err(|_| "an app thread panicked")?;
        spent += s;
        busy += b;
    }
    let tracked_in = start.elapsed();
    let report = rt.block_on(tracker.shutdown());
    rt.block_on(pipeline.shutdown());
    let stored_in = start.elapsed();
    rt.block_on(store.close());
    drop(store);

    // Opened again: what is on disk.
    let store = rt.block_on(SqliteStore::open(&dir))?;
    let mut seen = vec![0u8; n as usize];
    let mut ids = std::collections::HashSet::with_capacity(n as usize);
    let (mut events, mut twice, mut strange) = (0u64, 0u64, 0u64);
    rt.block_on(async {
        let mut batches = store.scan(&ScanRequest::new(SITE)).await?;
        while let Some(batch) = batches.next().await {
            for e in batch? {
                events += 1;
                ids.insert(e.id);
                match e.props.get("n").and_then(|v| v.parse::<usize>().ok()) {
                    Some(i) if i < seen.len() => {
                        if seen[i] > 0 {
                            twice += 1;
                        }
                        seen[i] += 1;
                    }
                    _ => strange += 1,
                }
            }
        }
        Ok::<_, beacon_core::StoreError>(())
    })?;
    rt.block_on(store.close());
    let _ = std::fs::remove_dir_all(&dir);
    let missing = seen.iter().filter(|c| **c == 0).count();
    let exact = events == n && missing == 0 && twice == 0 && strange == 0 && ids.len() as u64 == n;
    println!(
        "{}",
        serde_json::json!({
            "events": n, "threads": threads,
            "tracked": report.tracked, "stored_by_report": report.stored, "rejected": report.rejected, "unstored": report.unstored,
            "stored_on_disk": events, "distinct_ids": ids.len(), "missing": missing,
            "stored_twice": twice, "unexpected": strange, "exactly_once": exact,
            "busy_answers": busy,
            "caller_ns_per_call": spent.as_nanos() as f64 / n as f64,
            "tracked_in_s": tracked_in.as_secs_f64(),
            "stored_in_s": stored_in.as_secs_f64(),
            "events_per_s_sustained": n as f64 / stored_in.as_secs_f64(),
        })
    );
    if !exact {
        std::process::exit(1);
    }
    Ok(())
}
