//! HTTP ingest load generator: keep-alive connections on loopback posting pageviews,
//! bounded in count and time. Reports throughput per second (median, min), latency
//! percentiles, status counts, and every 5 s the server's resident memory beside what
//! its event store holds (`/healthz`): memory outside the stored events should stay
//! flat after warm-up.
//!
//! `loadgen --addr 127.0.0.1:8000 --site load.test --connections 32 --seconds 60 --pid <server pid>`
//!
//! `--unique-visitors` makes every hit a new visitor (the server's session state
//! then grows with every hit until its cap); by default 40 visitors per connection
//! come back again and again.
//!
//! A soak: `--rate 3000` bounds the hits per second (over all connections),
//! `--queries 4` adds connections that ask queries, funnels, goals and realtime in
//! a loop; at the end the events the server stores for the site are compared with
//! the hits it acknowledged. `--read-site bench.example --read-range all
//! --read-pause-ms 0` makes the reads heavy: back to back, over a whole imported
//! site, an attribution query among them. Reads need a token: `--token bk_...` (or
//! `BEACON_TOKEN`; `beacon tokens create --agency owner --scope read`).
//!
//! `loadgen --peer 127.0.0.1:8001` serves the peer instead: an axum server that
//! answers every hit 202 and does nothing else. Loading it the same way, in the same
//! run, measures what the machine and the load generator allow.

// A command-line tool: standard output is its product.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    addr: String,
    site: String,
    connections: usize,
    seconds: u64,
    pid: Option<u32>,
    peer: Option<String>,
    unique_visitors: bool,
    rate: Option<f64>,
    queries: usize,
    /// The site and range the reads ask about (default: the loaded site, "day").
    read_site: Option<String>,
    read_range: String,
    /// The pause between one reader's requests.
    read_pause: Duration,
}

/// The `Authorization` header line reads send (from `--token` or `BEACON_TOKEN`).
static AUTHORIZATION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8000".into(),
        site: "load.test".into(),
        connections: 32,
        seconds: 60,
        pid: None,
        peer: None,
        unique_visitors: false,
        rate: None,
        queries: 0,
        read_site: None,
        read_range: "day".into(),
        read_pause: Duration::from_millis(100),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--unique-visitors" {
            a.unique_visitors = true;
            continue;
        }
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--addr" => a.addr = v,
            "--site" => a.site = v,
            "--connections" => a.connections = v.parse().unwrap_or(32),
            "--seconds" => a.seconds = v.parse().unwrap_or(60).min(600),
            "--pid" => a.pid = v.parse().ok(),
            "--peer" => a.peer = Some(v),
            "--rate" => a.rate = v.parse().ok().filter(|r: &f64| *r > 0.0),
            "--queries" => a.queries = v.parse().unwrap_or(0),
            "--read-site" => a.read_site = Some(v),
            "--read-range" => a.read_range = v,
            "--read-pause-ms" => a.read_pause = Duration::from_millis(v.parse().unwrap_or(100)),
            "--token" => {
                let _ = AUTHORIZATION.set(format!("Authorization: Bearer {v}\r\n"));
            }
            _ => {}
        }
    }
    if let Ok(t) = std::env::var("BEACON_TOKEN") {
        let _ = AUTHORIZATION.set(format!("Authorization: Bearer {t}\r\n"));
    }
    a
}

/// Events, event heap bytes and session-state visitors the server reports on `/healthz`.
async fn store_usage(addr: &str) -> Option<(u64, u64, u64)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some((
        v["events"].as_u64()?,
        v["event_heap_bytes"].as_u64()?,
        v["session_visitors"].as_u64().unwrap_or(0),
    ))
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One connection's run: (latencies in µs with their completion second, status counts).
async fn client(
    addr: String,
    site: String,
    id: usize,
    start: Instant,
    until: Instant,
    unique: bool,
    interval: Option<Duration>,
) -> std::io::Result<(Vec<(u32, u32)>, BTreeMap<u16, u64>, u64)> {
    let stream = TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut lat = Vec::new();
    let mut statuses = BTreeMap::new();
    let mut i = 0u64;
    let mut accepted = 0u64;
    let mut line = String::new();
    while Instant::now() < until {
        if let Some(every) = interval {
            let due = start + every * (i as u32);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        i += 1;
        let visitor = if unique { i } else { i % 40 };
        let body = format!(
            r#"{{"site":"{site}","type":"pageview","url":"https://{site}/p/{}","referrer":"https://www.google.com/","visitor_id":"v{}-{}"}}"#,
            i % 500,
            id,
            visitor
        );
        let req = format!(
            "POST /api/event HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let t = Instant::now();
        w.write_all(req.as_bytes()).await?;
        line.clear();
        r.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            r.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).await?;
        if status == 202 {
            accepted += serde_json::from_slice::<serde_json::Value>(&buf)
                .ok()
                .and_then(|v| v["accepted"].as_u64())
                .unwrap_or(0);
        }
        let done = Instant::now();
        lat.push((
            (done - t).as_micros() as u32,
            (done - start).as_secs() as u32,
        ));
        *statuses.entry(status).or_default() += 1;
    }
    Ok((lat, statuses, accepted))
}

/// One request on a fresh connection: the status and the body.
async fn request(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let auth = AUTHORIZATION.get().map_or("", String::as_str);
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_owned()))
}

/// Reads in a loop (a query, a funnel, goals, realtime in turn) until `until`:
/// latencies in µs and status counts.
async fn reader(
    addr: String,
    site: String,
    range: String,
    pause: Duration,
    until: Instant,
) -> (Vec<u32>, BTreeMap<u16, u64>) {
    let range = serde_json::to_string(&range).unwrap_or_else(|_| "\"day\"".into());
    let reads = [
        (
            "POST",
            "/api/v1/query".to_owned(),
            format!(
                r#"{{"site":"{site}","date_range":{range},"metrics":["visitors","visits","pageviews","bounce_rate","visit_duration"]}}"#
            ),
        ),
        (
            "POST",
            "/api/v1/query".to_owned(),
            format!(
                r#"{{"site":"{site}","date_range":{range},"metrics":["visitors","pageviews"],"dimensions":["page"],"limit":10}}"#
            ),
        ),
        (
            "POST",
            "/api/v1/funnel".to_owned(),
            format!(
                r#"{{"site":"{site}","date_range":{range},"steps":[{{"page":"/p/1"}},{{"page":"/p/2*"}}]}}"#
            ),
        ),
        (
            "POST",
            "/api/v1/goals".to_owned(),
            format!(r#"{{"site":"{site}","date_range":{range},"goals":[{{"page":"/p/3*"}}]}}"#),
        ),
        (
            "POST",
            "/api/v1/query".to_owned(),
            format!(
                r#"{{"site":"{site}","date_range":{range},"metrics":["revenue","conversions"],"dimensions":["source"],"attribution":{{"model":"first_touch"}}}}"#
            ),
        ),
        (
            "GET",
            format!("/api/v1/realtime?site={site}"),
            String::new(),
        ),
    ];
    let (mut lat, mut statuses) = (Vec::new(), BTreeMap::new());
    let mut i = 0;
    while Instant::now() < until {
        let (method, path, body) = &reads[i % reads.len()];
        i += 1;
        let t = Instant::now();
        let status = request(&addr, method, path, body).await.map_or(0, |r| r.0);
        lat.push(t.elapsed().as_micros() as u32);
        *statuses.entry(status).or_default() += 1;
        tokio::time::sleep(pause).await;
    }
    (lat, statuses)
}

fn main() {
    let a = args();
    let runtime = if a.peer.is_some() {
        // The peer runs like the server: a worker thread per core.
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => rt.block_on(run(a)),
        Err(e) => eprintln!("loadgen: cannot start the runtime: {e}"),
    }
}

async fn run(a: Args) {
    if let Some(listen) = a.peer {
        let app = axum::Router::new().route(
            "/api/event",
            axum::routing::post(|_body: axum::body::Bytes| async {
                axum::http::StatusCode::ACCEPTED
            }),
        );
        match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => {
                if let Err(e) = axum::serve(l, app).await {
                    eprintln!("peer: {e}");
                }
            }
            Err(e) => eprintln!("peer: cannot listen on {listen}: {e}"),
        }
        return;
    }
    let start = Instant::now();
    let until = start + Duration::from_secs(a.seconds);
    let interval = a
        .rate
        .map(|r| Duration::from_secs_f64(a.connections as f64 / r));
    let readers: Vec<_> = (0..a.queries)
        .map(|_| {
            tokio::spawn(reader(
                a.addr.clone(),
                a.read_site.clone().unwrap_or_else(|| a.site.clone()),
                a.read_range.clone(),
                a.read_pause,
                until,
            ))
        })
        .collect();
    let mut tasks = Vec::new();
    for id in 0..a.connections {
        tasks.push(tokio::spawn(client(
            a.addr.clone(),
            a.site.clone(),
            id,
            start,
            until,
            a.unique_visitors,
            interval,
        )));
    }
    let mut rss = Vec::new();
    if let Some(pid) = a.pid {
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if let Some(k) = rss_kib(pid) {
                let (events, heap, visitors) = store_usage(&a.addr).await.unwrap_or((0, 0, 0));
                rss.push((start.elapsed().as_secs(), k, events, heap / 1024, visitors));
            }
        }
    }
    let mut lat: Vec<(u32, u32)> = Vec::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut accepted = 0u64;
    for t in tasks {
        match t.await {
            Ok(Ok((l, s, n))) => {
                lat.extend(l);
                accepted += n;
                for (k, v) in s {
                    *statuses.entry(k).or_default() += v;
                }
            }
            Ok(Err(e)) => println!("connection error: {e}"),
            Err(e) => println!("task error: {e}"),
        }
    }
    let mut per_second: BTreeMap<u32, u64> = BTreeMap::new();
    for (_, s) in &lat {
        *per_second.entry(*s).or_default() += 1;
    }
    // Whole seconds only (the last one is partial).
    let mut rates: Vec<u64> = per_second
        .iter()
        .filter(|(s, _)| u64::from(**s) < a.seconds)
        .map(|(_, n)| *n)
        .collect();
    rates.sort_unstable();
    let mut us: Vec<u32> = lat.iter().map(|l| l.0).collect();
    us.sort_unstable();
    let pct = |p: f64| {
        us.get(((us.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "requests: {} over {} s with {} connections; statuses {:?}",
        lat.len(),
        a.seconds,
        a.connections,
        statuses
    );
    if !rates.is_empty() {
        println!(
            "throughput per second: median {}, min {}, max {}",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );
    }
    println!(
        "latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    let (mut read_lat, mut read_statuses) = (Vec::new(), BTreeMap::<u16, u64>::new());
    for r in readers {
        if let Ok((l, s)) = r.await {
            read_lat.extend(l);
            for (k, v) in s {
                *read_statuses.entry(k).or_default() += v;
            }
        }
    }
    if !read_lat.is_empty() {
        read_lat.sort_unstable();
        let p = |q: f64| read_lat[((read_lat.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
        println!(
            "reads: {} with {} connections; statuses {:?}; latency ms p50 {:.1}, p99 {:.1}, max {:.1}",
            read_lat.len(),
            a.queries,
            read_statuses,
            p(0.5),
            p(0.99),
            p(1.0)
        );
    }
    // Every acknowledged hit must be stored: ask for the site's events.
    let count = format!(
        r#"{{"site":"{}","date_range":"all","metrics":["events"],"include_bots":true}}"#,
        a.site
    );
    let stored = request(&a.addr, "POST", "/api/v1/query", &count)
        .await
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["results"][0]["metrics"][0].as_u64());
    println!(
        "acknowledged {accepted} hits; the site stores {} events",
        stored.map_or("?".to_owned(), |n| n.to_string())
    );
    if !rss.is_empty() {
        println!("server memory every 5 s: second, RSS KiB, events stored, event heap KiB, RSS minus event heap KiB, session visitors");
        for (s, k, events, heap, visitors) in &rss {
            println!(
                "  {s:>4} {k:>9} {events:>10} {heap:>9} {:>9} {visitors:>9}",
                k.saturating_sub(*heap)
            );
        }
    }
}
