//! The dashboard's first render, measured in a real browser: N events of the
//! generator's traffic (one site, March 2026) imported with `beacon import`, the
//! release server started, headless chromium logged in, then the 30-day dashboard
//! opened again and again. Each run's figure is the page's own `data-rendered-ms`
//! (from navigation start until the top row and every panel are drawn). The peer,
//! in the same run: the dashboard's queries sent one after another straight to the
//! query API, no browser.
//!
//! `cargo build --release -p beacon-server && cargo run --release -p beacon-benches
//! --bin dashboard -- [--beacon target/release/beacon] [--events 1000000] [--runs 7]`
//!
//! Needs chromium and chromedriver (Debian's `chromium`, `chromium-driver`).

// A command-line tool: standard output is its product.
#![allow(clippy::print_stdout)]

use beacon_benches::{free_port, hit_json, median, spawn_server, Traffic};
use beacon_testkit::http::request;
use beacon_testkit::webdriver::Browser;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::process::Command;
use std::time::{Duration, Instant};

const SITE: &str = "bench.example";
const RANGE: [&str; 2] = ["2026-03-01", "2026-03-30"];

fn beacon(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .env("PASSWORD", "bench password 1")
        .output()
        .expect("beacon runs");
    assert!(
        out.status.success(),
        "beacon {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The queries the dashboard sends for its first render (top row and previous
/// period, chart and previous period, six breakdowns, traffic quality, revenue).
fn dashboard_queries() -> Vec<Value> {
    let top = [
        "visitors",
        "visits",
        "pageviews",
        "views_per_visit",
        "bounce_rate",
        "visit_duration",
        "conversions",
        "revenue",
    ];
    let prev = ["2026-01-30", "2026-02-28"];
    let mut q = vec![
        json!({"date_range": RANGE, "metrics": top}),
        json!({"date_range": prev, "metrics": top}),
        json!({"date_range": RANGE, "metrics": ["visitors"]}),
        json!({"date_range": RANGE, "metrics": ["visitors"], "dimensions": ["time:day"], "limit": 1000}),
        json!({"date_range": prev, "metrics": ["visitors"], "dimensions": ["time:day"], "limit": 1000}),
    ];
    for d in [
        "source",
        "utm_source",
        "page",
        "country",
        "device",
        "company",
    ] {
        q.push(
            json!({"date_range": RANGE, "metrics": ["visitors"], "dimensions": [d], "limit": 10}),
        );
    }
    q.push(json!({"date_range": RANGE, "metrics": ["visitors"], "dimensions": ["visitor_type"], "include_bots": true, "limit": 10}));
    q.push(
        json!({"date_range": RANGE, "metrics": ["revenue", "conversions"], "dimensions": ["source"],
                  "attribution": {"model": "first_touch", "window_days": 30}, "limit": 10}),
    );
    for x in &mut q {
        x["site"] = json!(SITE);
    }
    q
}

fn main() {
    let mut bin = "target/release/beacon".to_owned();
    let (mut events, mut runs) = (1_000_000usize, 7usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--beacon" => bin = v,
            "--events" => events = v.parse().expect("--events N"),
            "--runs" => runs = v.parse().expect("--runs N"),
            _ => panic!("unknown argument {a}"),
        }
    }
    let dir = std::env::temp_dir().join(format!("beacon-dashboard-bench-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hits = dir.join("hits.ndjson");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&hits).expect("hits file"));
        for e in Traffic::new(SITE, events, 7) {
            let hit = hit_json(&e);
            writeln!(out, "{hit}").expect("write");
        }
    }
    let d = data.to_str().expect("path");
    beacon(&bin, &["sites", "add", SITE, "--data-dir", d]);
    let started = Instant::now();
    let imported = beacon(
        &bin,
        &["import", "--data-dir", d, hits.to_str().expect("path")],
    );
    eprintln!("{imported} in {:.1} s", started.elapsed().as_secs_f64());
    beacon(
        &bin,
        &[
            "users",
            "add",
            "bench@beacon.local",
            "--role",
            "admin",
            "--password",
            "env:PASSWORD",
            "--data-dir",
            d,
        ],
    );
    let token = beacon(
        &bin,
        &[
            "tokens",
            "create",
            "--agency",
            "owner",
            "--scope",
            "read",
            "--data-dir",
            d,
        ],
    );
    let port = free_port();
    let mut server = spawn_server(&bin, d, port);
    let stderr = server.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(300))
        .expect("the server listens");
    let root = format!("http://127.0.0.1:{port}");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));

    let b = Browser::start(free_port(), 1280, 1400);
    b.log_in(&root, "bench@beacon.local", "bench password 1");
    b.dashboard_settled();
    let url = format!("{root}/?site={SITE}&range={},{}", RANGE[0], RANGE[1]);
    let mut browser = Vec::new();
    let mut peer = Vec::new();
    let auth = format!("Bearer {token}");
    let queries = dashboard_queries();
    for run in 0..=runs {
        b.go(&url);
        b.until("the first render", "document.body.dataset.renderedMs");
        b.dashboard_settled();
        let ms: f64 = b
            .js("return Number(document.body.dataset.renderedMs)")
            .as_f64()
            .expect("ms");
        let t = Instant::now();
        for q in &queries {
            let a = request(
                addr,
                "POST",
                "/api/v1/query",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                &q.to_string(),
            )
            .expect("query");
            assert_eq!(a.status, 200, "{}", a.body);
        }
        let api_ms = t.elapsed().as_secs_f64() * 1e3;
        if run > 0 {
            // The first is a warm-up.
            browser.push(ms);
            peer.push(api_ms);
        }
        eprintln!("run {run}: first render {ms:.0} ms, the same queries straight to the API {api_ms:.0} ms");
    }
    let top = b.top_row();
    drop(b);
    let _ = Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (bm, pm) = (median(&browser), median(&peer));
    println!("| {events} events, 30 days, {runs} runs | median ms |");
    println!("|---|---:|");
    println!("| dashboard first render (chromium, navigation to every panel drawn) | {bm:.0} |");
    println!(
        "| peer: its {} queries in sequence over HTTP | {pm:.0} |",
        queries.len()
    );
    println!("| ratio render / peer | {:.2} |", bm / pm);
    println!();
    println!("top row: {top:?}");
}
