//! Writes the generator's traffic as NDJSON hits for `beacon import`:
//! `hits N [SEED] > hits.ndjson` (N events of `bench.example` over March 2026, with
//! client visitor ids, so no user agents or addresses are needed).

// A command-line tool: standard output is its product.
#![allow(clippy::print_stdout)]

use beacon_benches::Traffic;
use beacon_core::EventKind;
use serde_json::json;
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
        let mut url = format!("https://{}{}", e.site, e.page.path);
        if let Some(s) = &e.acquisition.source {
            url.push_str(&format!("?utm_source={}", s.as_str().replace(' ', "+")));
        }
        let mut hit = json!({
            "site": e.site, "type": e.kind.as_str(), "url": url,
            "timestamp": e.timestamp, "visitor_id": e.identity.visitor_id,
        });
        match e.kind {
            EventKind::Goal => hit["goal"] = json!(e.name),
            EventKind::Purchase => {
                if let Some(m) = e.commerce.revenue {
                    hit["revenue"] =
                        json!({"amount": m.to_decimal_string(), "currency": m.currency.code()});
                }
            }
            EventKind::Engagement => {
                hit["engagement"] = json!({
                    "time_ms": e.engagement.time_ms, "scroll_depth": e.engagement.scroll_depth,
                })
            }
            _ => {}
        }
        if writeln!(out, "{hit}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}
