//! Helpers the server's integration tests share: the `beacon` binary, a minimal HTTP
//! client and a server process.
#![allow(dead_code)] // each test crate uses its own subset

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn beacon() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_beacon"));
    c.env("RUST_LOG", "info");
    c
}

pub fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = beacon()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("beacon runs");
    // Written from a thread while the output is read: a large input would fill
    // the pipes both ways and neither side would move.
    let writer = child.stdin.take().map(|mut pipe| {
        let input = stdin.unwrap_or_default().to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        })
    });
    let out = child.wait_with_output().expect("beacon exits");
    if let Some(w) = writer {
        w.join().expect("stdin writer");
    }
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The read token `serve_with` made for the server on each port.
static TOKENS: std::sync::Mutex<Vec<(u16, String)>> = std::sync::Mutex::new(Vec::new());

/// A new token (`beacon tokens create`) over the data dir's `--agency` or `--site`.
pub fn make_token(dir: &str, reach: &[&str], scope: &str) -> String {
    let mut args = vec!["tokens", "create", "--data-dir", dir, "--scope", scope];
    args.extend_from_slice(reach);
    let out = run(&args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// One request per connection on 127.0.0.1:`port`, as JSON (see
/// `beacon_testkit::http`): the status and the body. A request under `/api/v1`
/// (not a payment webhook) without an `Authorization` header gets the owner's read
/// token that `serve_with` made for the port; the access rules themselves are
/// tested with explicit headers (an empty `Authorization` sends none).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let typed = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    let mut all = if typed {
        Vec::new()
    } else {
        vec![("Content-Type", "application/json")]
    };
    all.extend(
        headers
            .iter()
            .filter(|(k, v)| !(k.eq_ignore_ascii_case("authorization") && v.is_empty())),
    );
    let bearer;
    let needs = path.starts_with("/api/v1/") && !path.starts_with("/api/v1/webhooks/");
    if needs
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        let token = TOKENS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .find(|(p, _)| *p == port)
            .map(|(_, t)| t.clone());
        if let Some(t) = token {
            bearer = format!("Bearer {t}");
            all.push(("Authorization", bearer.as_str()));
        }
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    beacon_testkit::http::request(addr, method, path, &all, body).map(|a| (a.status, a.body))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn serve(dir: &str, port: u16) -> Child {
    serve_with(dir, port, &[])
}

pub fn serve_with(dir: &str, port: u16, extra: &[&str]) -> Child {
    let token = make_token(dir, &["--agency", "owner"], "read");
    TOKENS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((port, token));
    let mut child = beacon()
        .args([
            "serve",
            "--data-dir",
            dir,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("server says it is listening");
    child
}

/// Sends SIGINT (Ctrl-C) and waits for the server to finish shutting down.
pub fn stop(child: &mut Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let _ = child.wait();
}
