//! Measures the memory a `MemoryStore` holds per event, three ways: live heap bytes
//! counted by a wrapping global allocator (exact, what the store holds after the load),
//! the store's own capacity accounting, and resident set growth from /proc (an upper
//! bound: it also counts memory the C allocator keeps after transient buffers are freed).
//!
//! `cargo run --release -p beacon-benches --bin memory -- 10000000`

use beacon_benches::Traffic;
use beacon_core::{Event, MemoryStore, Site};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter has no effect on
// the memory handed out.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let store = MemoryStore::new();
    store
        .put_site_sync(Site::new("bench.example"))
        .expect("site");
    let before = rss_kib();
    let live_before = LIVE.load(Ordering::Relaxed);
    let mut traffic = Traffic::new("bench.example", n, 11);
    loop {
        let batch: Vec<Event> = traffic.by_ref().take(10_000).collect();
        if batch.is_empty() {
            break;
        }
        store.append_sync(&batch).expect("append");
    }
    store.build();
    let after = rss_kib();
    let live = LIVE.load(Ordering::Relaxed) - live_before;
    let usage = store.memory_usage();
    let per = |bytes: f64| bytes / usage.events as f64;
    eprintln!("events: {}", usage.events);
    eprintln!(
        "live heap (counted allocator): {:.1} bytes/event",
        per(live as f64)
    );
    eprintln!(
        "heap accounting: {:.1} bytes/event",
        per(usage.heap_bytes as f64)
    );
    eprintln!(
        "resident growth: {:.1} bytes/event (upper bound)",
        per((after.saturating_sub(before) * 1024) as f64)
    );
}
