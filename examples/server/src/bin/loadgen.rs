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
}

fn args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8000".into(),
        site: "load.test".into(),
        connections: 32,
        seconds: 60,
        pid: None,
        peer: None,
        unique_visitors: false,
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
            _ => {}
        }
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
) -> std::io::Result<(Vec<(u32, u32)>, BTreeMap<u16, u64>)> {
    let stream = TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut lat = Vec::new();
    let mut statuses = BTreeMap::new();
    let mut i = 0u64;
    let mut line = String::new();
    while Instant::now() < until {
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
        let done = Instant::now();
        lat.push((
            (done - t).as_micros() as u32,
            (done - start).as_secs() as u32,
        ));
        *statuses.entry(status).or_default() += 1;
    }
    Ok((lat, statuses))
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
    let mut tasks = Vec::new();
    for id in 0..a.connections {
        tasks.push(tokio::spawn(client(
            a.addr.clone(),
            a.site.clone(),
            id,
            start,
            until,
            a.unique_visitors,
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
    for t in tasks {
        match t.await {
            Ok(Ok((l, s))) => {
                lat.extend(l);
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
