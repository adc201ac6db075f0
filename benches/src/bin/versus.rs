//! Beacon beside DuckDB on the same events, as a user meets each: N events of the
//! generator's traffic (one site, March 2026) written as realistic hits (a browser's
//! user agent, an address in the visitor's country), imported with `beacon import`
//! (enrichment on: devices from the agents, countries from `../shared/data`'s
//! ip-location-db), then the release server restarted and the dashboard's queries
//! sent to its HTTP API; the same events, with the generator's own devices and
//! countries, loaded into DuckDB in-process (Python's `duckdb`, when installed)
//! with sessions derived once at load, and the same questions asked in SQL. The
//! answers are checked equal, query by query, and a markdown table of medians and
//! ratios goes to standard output, with the import rate, restart time, memory and
//! size on disk. Each import runs `--import-runs` times (median, after `sync`, into
//! a fresh store); the same events are also imported without agents and addresses
//! (the `hits` bin's form), into a store of their own, for that rate too.
//!
//! `cargo build --release -p beacon-server && cargo run --release -p beacon-benches
//! --bin versus -- [--beacon target/release/beacon] [--events 10000000] [--runs 7]
//! [--python python3] [--threads 2] [--keep DIR] [--import-runs 3]`
//!
//! `--keep DIR` works in DIR and leaves the hits, the CSV and Beacon's data
//! directory there (for profiling a restart on the same store).
//!
//! Without `duckdb` (`pip install duckdb`) the DuckDB column is left out.

// A command-line tool: standard output is its product.
#![allow(clippy::print_stdout)]

use beacon_benches::{
    free_port, hit_json, median, realistic_hit_json, spawn_server, Traffic, COUNTRY_ADDRESSES,
};
use beacon_core::Event;
use beacon_testkit::http::request;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SITE: &str = "bench.example";
const RANGE: [&str; 2] = ["2026-03-01", "2026-03-31"];
/// `RANGE` as milliseconds, end exclusive (UTC, the site's timezone).
const RANGE_MS: [i64; 2] = [1_772_323_200_000, 1_775_001_600_000];
const PEER: &str = include_str!("../../versus/duckdb_peer.py");
const COUNTRY_DB: &str =
    "../shared/data/ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb";

struct Args {
    beacon: String,
    events: usize,
    runs: usize,
    python: String,
    threads: usize,
    country_db: String,
    keep: Option<String>,
    import_runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        beacon: "target/release/beacon".into(),
        events: 10_000_000,
        runs: 7,
        python: "python3".into(),
        threads: 2,
        country_db: COUNTRY_DB.into(),
        keep: None,
        import_runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--beacon" => a.beacon = v,
            "--events" => a.events = v.parse().expect("--events N"),
            "--runs" => a.runs = v.parse().expect("--runs N"),
            "--python" => a.python = v,
            "--threads" => a.threads = v.parse().expect("--threads N"),
            "--country-db" => a.country_db = v,
            "--keep" => a.keep = Some(v),
            "--import-runs" => a.import_runs = v.parse().expect("--import-runs N"),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

fn beacon(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("beacon runs");
    assert!(
        out.status.success(),
        "beacon {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Imports `hits` into a fresh store at `data` `runs` times (the input's pages
/// written back to disk first, so that no run pays for the generator's writes);
/// the median and the slowest and fastest seconds. The last run's store stays.
fn import_runs(a: &Args, hits: &Path, data: &Path, runs: usize) -> (f64, f64, f64) {
    let d = data.to_str().expect("path");
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let _ = std::fs::remove_dir_all(data);
        beacon(&a.beacon, &["sites", "add", SITE, "--data-dir", d]);
        let _ = Command::new("sync").status();
        let started = Instant::now();
        let summary = beacon(
            &a.beacon,
            &[
                "import",
                "--data-dir",
                d,
                "--geoip-city",
                &a.country_db,
                hits.to_str().expect("path"),
            ],
        );
        let s = started.elapsed().as_secs_f64();
        assert!(
            summary.ends_with(&format!("imported {}, rejected 0", a.events)),
            "{summary}"
        );
        eprintln!("{summary} from {} in {s:.1} s", hits.display());
        times.push(s);
    }
    times.sort_by(f64::total_cmp);
    (median(&times), times[0], times[times.len() - 1])
}

fn bytes_under(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |dir| {
        dir.filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => bytes_under(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// Resident set of process `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// One CSV line of the DuckDB side: the event as the generator made it.
fn csv_line(e: &Event) -> String {
    let text = |t: Option<&str>| t.unwrap_or("").to_owned();
    format!(
        "{},{},{},{},{},{},{},{},{},{}",
        e.id.as_u128(),
        e.identity.visitor_id,
        e.timestamp.timestamp_millis(),
        e.kind.as_str(),
        e.page.path,
        text(e.acquisition.source.as_ref().map(|t| t.as_str())),
        text(e.location.country.as_ref().map(|t| t.as_str())),
        text(e.device.device_type.map(|d| d.as_str())),
        text(
            e.name
                .as_deref()
                .filter(|_| e.kind == beacon_core::EventKind::Goal)
        ),
        e.commerce
            .revenue
            .map_or(String::new(), |m| m.minor.to_string()),
    )
}

/// Checks that `beacon enrich` reads the generator's addresses and agents as the
/// generator's countries and devices (else the answers could not agree).
fn check_enrichment(bin: &str, country_db: &str) {
    let mut child = Command::new(bin)
        .args(["enrich", "--geoip-city", country_db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("beacon enrich runs");
    let sample: Vec<Event> = Traffic::new(SITE, 20_000, 11).collect();
    let mut picked: Vec<&Event> = Vec::new();
    for e in &sample {
        let key = (&e.location.country, &e.device.browser, &e.device.os);
        if !picked
            .iter()
            .any(|p| (&p.location.country, &p.device.browser, &p.device.os) == key)
        {
            picked.push(e);
        }
    }
    let input: String = picked
        .iter()
        .map(|e| format!("{}\n", realistic_hit_json(e)))
        .collect();
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("beacon enrich output");
    writer.join().expect("writer").expect("write");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), picked.len());
    for (e, got) in picked.iter().zip(&lines) {
        let want_country = e.location.country.as_ref().map(|t| t.as_str());
        let want_device = e.device.device_type.map(|d| d.as_str());
        assert_eq!(got["country"].as_str(), want_country, "country of {}", got);
        assert_eq!(got["device_type"].as_str(), want_device, "device of {got}");
        assert_eq!(got["is_bot"], json!(false), "{got}");
    }
    assert!(picked.len() >= COUNTRY_ADDRESSES.len());
}

/// The dashboard's questions: a name, the path, the request.
fn questions() -> Vec<(&'static str, &'static str, Value)> {
    let q = |metrics: &[&str], dims: &[&str], limit: usize| json!({"site": SITE, "date_range": RANGE, "metrics": metrics, "dimensions": dims, "limit": limit});
    let mut attribution = q(&["revenue", "conversions"], &["source"], 10);
    attribution["attribution"] = json!({"model": "first_touch", "window_days": 30});
    vec![
        (
            "main stats",
            "/api/v1/query",
            q(
                &[
                    "visitors",
                    "visits",
                    "pageviews",
                    "bounce_rate",
                    "visit_duration",
                ],
                &[],
                10,
            ),
        ),
        (
            "daily timeseries",
            "/api/v1/query",
            q(&["visitors", "pageviews"], &["time:day"], 1000),
        ),
        (
            "top 10 pages",
            "/api/v1/query",
            q(&["visitors", "pageviews"], &["page"], 10),
        ),
        (
            "top 10 sources",
            "/api/v1/query",
            q(&["visitors"], &["source"], 10),
        ),
        (
            "top 10 countries",
            "/api/v1/query",
            q(&["visitors"], &["country"], 10),
        ),
        (
            "devices",
            "/api/v1/query",
            q(&["visitors"], &["device"], 10),
        ),
        (
            "3-step funnel (24h)",
            "/api/v1/funnel",
            json!({"site": SITE, "date_range": RANGE, "window": "24h",
                   "steps": [{"page": "/p/0"}, {"page": "/p/1"}, {"goal": "signup"}]}),
        ),
        (
            "revenue by first-touch source (30d window)",
            "/api/v1/query",
            attribution,
        ),
    ]
}

/// An answer as rows of cells (dimensions, then metrics; a funnel's steps as rows
/// of their visitors), the form the DuckDB side prints.
fn rows(answer: &Value) -> Vec<Vec<Value>> {
    if let Some(steps) = answer["steps"].as_array() {
        return steps.iter().map(|s| vec![s["visitors"].clone()]).collect();
    }
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            let mut cells = r["dimensions"].as_array().cloned().unwrap_or_default();
            cells.extend(r["metrics"].as_array().cloned().unwrap_or_default());
            cells
        })
        .collect()
}

fn same(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    let cell = |x: &Value, y: &Value| match (x.as_f64(), y.as_f64()) {
        (Some(p), Some(q)) => (p - q).abs() <= 1e-9 * p.abs().max(1.0),
        _ => x == y,
    };
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(r, s)| r.len() == s.len() && r.iter().zip(s).all(|(x, y)| cell(x, y)))
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn post(addr: SocketAddr, auth: &str, path: &str, body: &Value) -> (f64, Value) {
    let t = Instant::now();
    let a = request(
        addr,
        "POST",
        path,
        &[
            ("Authorization", auth),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    )
    .expect("request");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(a.status, 200, "{path} {body}: {}", a.body);
    (ms, a.json())
}

fn main() {
    let a = args();
    let dir = a.keep.as_ref().map_or_else(
        || std::env::temp_dir().join(format!("beacon-versus-{}", std::process::id())),
        std::path::PathBuf::from,
    );
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).expect("temp dir");
    check_enrichment(&a.beacon, &a.country_db);

    let hits = dir.join("hits.ndjson");
    let plain = dir.join("plain.ndjson");
    let csv = dir.join("events.csv");
    {
        let mut h = std::io::BufWriter::new(std::fs::File::create(&hits).expect("hits file"));
        let mut p = std::io::BufWriter::new(std::fs::File::create(&plain).expect("hits file"));
        let mut c = std::io::BufWriter::new(std::fs::File::create(&csv).expect("csv file"));
        for e in Traffic::new(SITE, a.events, 7) {
            writeln!(h, "{}", realistic_hit_json(&e)).expect("write");
            writeln!(p, "{}", hit_json(&e)).expect("write");
            writeln!(c, "{}", csv_line(&e)).expect("write");
        }
    }
    let d = data.to_str().expect("path");
    // The same events without agents and addresses first (the `hits` bin's form,
    // with the client's visitor ids), into a store of their own, dropped after.
    let plain_data = dir.join("plain-data");
    let (plain_s, plain_min, plain_max) = import_runs(&a, &plain, &plain_data, a.import_runs);
    let _ = std::fs::remove_dir_all(&plain_data);
    let _ = std::fs::remove_file(&plain);
    let (import_s, import_min, import_max) = import_runs(&a, &hits, &data, a.import_runs);
    let disk = bytes_under(&data);
    let token = beacon(
        &a.beacon,
        &[
            "tokens",
            "create",
            "--site",
            SITE,
            "--scope",
            "read",
            "--data-dir",
            d,
        ],
    );
    // Restart: from spawning the server on the imported store until it answers
    // with every event.
    let port = free_port();
    let started = Instant::now();
    let child = spawn_server(&a.beacon, d, port);
    let mut server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    if let Some(stderr) = server.child.stderr.take() {
        std::thread::spawn(move || {
            for _ in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {}
        });
    }
    let auth = format!("Bearer {token}");
    let count = json!({"site": SITE, "date_range": "all", "metrics": ["events"]});
    loop {
        let ready = request(
            server.addr,
            "POST",
            "/api/v1/query",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            &count.to_string(),
        )
        .ok()
        .filter(|r| r.status == 200)
        .is_some_and(|r| r.json()["results"][0]["metrics"][0] == json!(a.events));
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the server did not answer"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let restart_s = started.elapsed().as_secs_f64();
    let rss_before = rss(server.child.id());

    let mut beacon_ms = Vec::new();
    let mut beacon_rows = Vec::new();
    for (name, path, body) in questions() {
        let mut times = Vec::new();
        let mut last = Value::Null;
        for run in 0..=a.runs {
            let (ms, answer) = post(server.addr, &auth, path, &body);
            if run > 0 {
                times.push(ms);
            }
            last = answer;
        }
        eprintln!("beacon {name}: median {:.1} ms", median(&times));
        beacon_ms.push(median(&times));
        beacon_rows.push(rows(&last));
    }
    let rss_after = rss(server.child.id());
    let health = request(server.addr, "GET", "/healthz", &[], "")
        .expect("healthz")
        .json();
    drop(server);

    let duck = duckdb(&a, &dir, &csv);
    if a.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let n = a.events as f64;
    println!(
        "| {} events, one site, 30 days; median of {} warm runs | Beacon (HTTP) | DuckDB {} ({} threads) | ratio | answers |",
        a.events,
        a.runs,
        duck.as_ref().map_or("—".into(), |d| d["version"].as_str().unwrap_or("").to_owned()),
        a.threads
    );
    println!("|---|---:|---:|---:|---|");
    let mut mismatched = Vec::new();
    for (i, (name, _, _)) in questions().iter().enumerate() {
        let b = beacon_ms[i];
        match duck.as_ref().map(|d| &d["queries"][*name]) {
            Some(q) => {
                let times: Vec<f64> = q["ms"]
                    .as_array()
                    .expect("times")
                    .iter()
                    .filter_map(Value::as_f64)
                    .collect();
                let peer: Vec<Vec<Value>> =
                    serde_json::from_value(q["rows"].clone()).expect("rows");
                let equal = same(&beacon_rows[i], &peer);
                if !equal {
                    mismatched.push(format!(
                        "{name}:\n  beacon {:?}\n  duckdb {:?}",
                        beacon_rows[i], peer
                    ));
                }
                let dm = median(&times);
                println!(
                    "| {name} | {b:.1} ms | {dm:.1} ms | {:.3} | {} |",
                    b / dm,
                    if equal { "equal" } else { "DIFFER" }
                );
            }
            None => println!("| {name} | {b:.1} ms | — | — | — |"),
        }
    }
    let import_rate = n / import_s;
    let runs = a.import_runs.max(1);
    match duck.as_ref() {
        Some(d) => {
            let load_s = d["load_ms"].as_f64().unwrap_or(0.0) / 1e3;
            let read_s = d["read_ms"].as_f64().unwrap_or(0.0) / 1e3;
            println!(
                "| import (`beacon import`, realistic hits, enrichment on; median of {runs}, {import_min:.1}-{import_max:.1} s) vs load (CSV read {read_s:.1} s, then sessions) | {import_s:.1} s ({:.0}k/s) | {load_s:.1} s ({:.0}k/s) | {:.2} | |",
                import_rate / 1e3,
                n / load_s / 1e3,
                import_s / load_s
            );
            let dd = d["db_bytes"].as_f64().unwrap_or(0.0);
            println!(
                "| on disk | {:.1} B/event | {:.1} B/event | {:.2} | |",
                disk as f64 / n,
                dd / n,
                disk as f64 / dd
            );
        }
        None => {
            println!(
                "| import (`beacon import`, realistic hits, enrichment on; median of {runs}, {import_min:.1}-{import_max:.1} s) | {import_s:.1} s ({:.0}k/s) | — | — | |",
                import_rate / 1e3
            );
            println!("| on disk | {:.1} B/event | — | — | |", disk as f64 / n);
        }
    }
    println!(
        "| import, the same events without agents and addresses (enrichment on; median of {runs}, {plain_min:.1}-{plain_max:.1} s) | {plain_s:.1} s ({:.0}k/s) | — | — | |",
        n / plain_s / 1e3
    );
    println!("| restart until queries answer | {restart_s:.1} s | — | — | |");
    let heap = health["event_heap_bytes"].as_f64().unwrap_or(0.0);
    println!(
        "| memory: event heap / server RSS | {:.1} B/event / {:.1} B/event | — | — | |",
        heap / n,
        rss_after as f64 / n
    );
    println!(
        "| RSS after the queries vs before | {:+.1}% ({} → {} MiB) | — | — | |",
        (rss_after as f64 / rss_before as f64 - 1.0) * 100.0,
        rss_before >> 20,
        rss_after >> 20
    );
    if !mismatched.is_empty() {
        eprintln!("answers differ:\n{}", mismatched.join("\n"));
        std::process::exit(1);
    }
}

/// Runs the DuckDB side; `None` when Python's `duckdb` is not installed.
fn duckdb(a: &Args, dir: &Path, csv: &Path) -> Option<Value> {
    let has = Command::new(&a.python)
        .args(["-c", "import duckdb"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        eprintln!("python's duckdb is not installed (pip install duckdb): Beacon alone");
        return None;
    }
    let script = dir.join("duckdb_peer.py");
    std::fs::write(&script, PEER).expect("script");
    let db = dir.join("peer.duckdb");
    let out = Command::new(&a.python)
        .arg(&script)
        .arg(csv)
        .arg(a.runs.to_string())
        .arg(a.threads.to_string())
        .arg(RANGE_MS[0].to_string())
        .arg(RANGE_MS[1].to_string())
        .arg(&db)
        .stderr(Stdio::inherit())
        .output()
        .expect("python runs");
    assert!(out.status.success(), "the DuckDB side failed");
    Some(serde_json::from_slice(&out.stdout).expect("the DuckDB side's JSON"))
}
