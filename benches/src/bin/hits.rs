//! Writes the generator's traffic as NDJSON hits for `beacon import`:
//! `hits N [SEED] > hits.ndjson` (N events of `bench.example` over March 2026, with
//! client visitor ids, so no user agents or addresses are needed).

// A command-line tool: standard output is its product.
#![allow(clippy::print_stdout)]

use beacon_benches::{hit_json, Traffic};
use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for e in Traffic::new("bench.example", n, seed) {
        let hit = hit_json(&e);
        if writeln!(out, "{hit}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}
