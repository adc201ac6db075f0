//! Outgoing webhooks through the real server: made over the API and the CLI,
//! delivered over a socket to a receiver here, signed (checked with an HMAC of
//! our own), retried, kept across a kill -9, refused for private targets; the
//! GDPR erase API; token use; plan limits over HTTP.

mod common;

use common::{free_port, make_token, run, serve_with, text};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request the receiver took: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
struct Got {
    headers: Vec<(String, String)>,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// An HTTP receiver on loopback that answers `status` and records what it took.
struct Receiver {
    port: u16,
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Got>>>,
    attempts: Arc<Mutex<usize>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let status = Arc::new(AtomicU16::new(status));
        let got = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(0));
        let (s, g, a) = (Arc::clone(&status), Arc::clone(&got), Arc::clone(&attempts));
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut headers = Vec::new();
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.trim_end().split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let len = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                *a.lock().unwrap() += 1;
                let code = s.load(Ordering::SeqCst);
                if code < 300 {
                    g.lock().unwrap().push(Got {
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                }
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver {
            port,
            status,
            got,
            attempts,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn wait_for(&self, n: usize) -> Vec<Got> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the receiver got {} of {n} deliveries",
            self.got.lock().unwrap().len()
        );
    }
}

fn api(port: u16, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, body) = common::http(
        port,
        method,
        path,
        &[("Authorization", auth.as_str())],
        &body.to_string(),
    )
    .expect("request");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn hit(port: u16, body: &Value) -> u16 {
    common::http(port, "POST", "/api/event", &[], &body.to_string())
        .expect("request")
        .0
}

/// Our own check of a `Beacon-Signature` (`t=..,v1=HMAC-SHA256(secret, "t.body")`).
fn signed_by(secret: &str, header: &str, body: &str) -> bool {
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_owned()),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap_or(0);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    age.abs() < 300 && hex::encode(mac.finalize().into_bytes()) == v1
}

fn setup(dir: &str) {
    let out = run(&["sites", "add", "shop.test", "--data-dir", dir], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

const FAST: [&str; 3] = ["--webhooks-allow-private", "--webhook-retry-base", "0.05"];

#[test]
fn deliveries_are_signed_retried_and_survive_a_kill_9() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    setup(dir);
    let write = make_token(dir, &["--site", "shop.test"], "write");
    let receiver = Receiver::start(500);
    let port = free_port();
    let mut server = serve_with(dir, port, &FAST);

    let (status, made) = api(
        port,
        "POST",
        "/api/v1/hooks",
        &write,
        &json!({"site": "shop.test", "url": receiver.url(), "events": ["purchase.created", "visitor.created"]}),
    );
    assert_eq!(status, 201, "{made}");
    let secret = made["secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let id = made["id"].as_str().expect("id").to_owned();
    let (status, listed) = api(
        port,
        "GET",
        "/api/v1/hooks?site=shop.test",
        &write,
        &json!({}),
    );
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["hooks"][0]["id"], id.as_str());
    assert!(listed["hooks"][0].get("secret").is_none(), "{listed}");

    // The receiver is down: the hits are acknowledged, the deliveries fail.
    let purchase = json!({"site": "shop.test", "type": "purchase", "url": "https://shop.test/buy",
        "visitor_id": "buyer-1", "revenue": {"amount": "25.00", "currency": "EUR"}, "order_id": "o-77"});
    assert_eq!(hit(port, &purchase), 202);
    let start = Instant::now();
    while *receiver.attempts.lock().unwrap() < 3 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(*receiver.attempts.lock().unwrap() >= 3, "retried");
    server.kill().expect("SIGKILL");
    let _ = server.wait();

    // It comes back, and so does the receiver: both deliveries arrive, signed.
    receiver.status.store(204, Ordering::SeqCst);
    let mut server = serve_with(dir, port, &FAST);
    let got = receiver.wait_for(2);
    let mut types: Vec<&str> = got.iter().map(|g| g.header("beacon-event")).collect();
    types.sort_unstable();
    assert_eq!(types, ["purchase.created", "visitor.created"]);
    for g in &got {
        assert!(
            signed_by(&secret, g.header("beacon-signature"), &g.body),
            "{g:?}"
        );
        assert!(!signed_by(
            "whsec_wrong",
            g.header("beacon-signature"),
            &g.body
        ));
        let body: Value = serde_json::from_str(&g.body).expect("json body");
        assert_eq!(body["id"], g.header("beacon-delivery"));
        assert_eq!(body["site"], "shop.test");
        assert_eq!(body["data"]["event"]["identity"]["visitor_id"], "buyer-1");
    }
    let purchase = got
        .iter()
        .find(|g| g.header("beacon-event") == "purchase.created")
        .unwrap();
    let body: Value = serde_json::from_str(&purchase.body).unwrap();
    assert_eq!(
        body["data"]["event"]["commerce"]["order_id"], "o-77",
        "{body}"
    );

    // failure_count went up while it failed and back to 0 on success.
    let start = Instant::now();
    let hook = loop {
        let (_, listed) = api(
            port,
            "GET",
            "/api/v1/hooks?site=shop.test",
            &write,
            &json!({}),
        );
        let h = listed["hooks"][0].clone();
        if h["failure_count"] == 0 && !h["last_success"].is_null() {
            break h;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{h}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(hook["last_error"], "answered HTTP 500", "{hook}");

    // Removing it stops deliveries.
    let (status, _) = api(
        port,
        "DELETE",
        &format!("/api/v1/hooks/{id}"),
        &write,
        &json!({}),
    );
    assert_eq!(status, 204);
    let (_, listed) = api(
        port,
        "GET",
        "/api/v1/hooks?site=shop.test",
        &write,
        &json!({}),
    );
    assert_eq!(listed["hooks"], json!([]));
    common::stop(&mut server);
}

#[test]
fn private_targets_are_refused_unless_allowed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    setup(dir);
    let write = make_token(dir, &["--site", "shop.test"], "write");
    let read = make_token(dir, &["--site", "shop.test"], "read");
    let port = free_port();
    let mut server = serve_with(dir, port, &[]);
    for url in [
        "http://127.0.0.1:9/x",
        "http://10.0.0.5/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://localhost:8080/",
    ] {
        let (status, body) = api(
            port,
            "POST",
            "/api/v1/hooks",
            &write,
            &json!({"site": "shop.test", "url": url}),
        );
        assert_eq!(status, 400, "{url}: {body}");
        assert!(
            body["error"].as_str().unwrap().starts_with("url: "),
            "{body}"
        );
    }
    let (status, body) = api(
        port,
        "POST",
        "/api/v1/hooks",
        &write,
        &json!({"site": "shop.test", "url": "https://hooks.example.com/x", "events": ["page.viewed"]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("events: "),
        "{body}"
    );
    // A read token may not make one; another site's is a 404.
    let (status, _) = api(
        port,
        "POST",
        "/api/v1/hooks",
        &read,
        &json!({"site": "shop.test", "url": "https://hooks.example.com/x"}),
    );
    assert_eq!(status, 403);
    let (status, _) = api(
        port,
        "POST",
        "/api/v1/hooks",
        &write,
        &json!({"site": "other.test", "url": "https://hooks.example.com/x"}),
    );
    assert_eq!(status, 404);
    common::stop(&mut server);

    // The CLI says the same, and lets an operator allow a private target.
    let out = run(
        &[
            "hooks",
            "add",
            "shop.test",
            "http://127.0.0.1:9/x",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("not a public address"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &[
            "hooks",
            "add",
            "shop.test",
            "http://127.0.0.1:9/x",
            "--allow-private",
            "--events",
            "goal.completed",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let made: Value = serde_json::from_str(text(&out.stdout).trim()).expect("json");
    assert_eq!(made["events"], json!(["goal.completed"]));
    let out = run(&["hooks", "list", "--data-dir", dir], None);
    assert!(text(&out.stdout).contains(made["id"].as_str().unwrap()));
    assert!(
        !text(&out.stdout).contains("whsec_"),
        "no secret in listings"
    );
}

#[test]
fn the_erase_api_removes_a_visitor_and_token_use_is_recorded() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    setup(dir);
    let write = make_token(dir, &["--site", "shop.test"], "write");
    let read = make_token(dir, &["--site", "shop.test"], "read");
    let port = free_port();
    let mut server = serve_with(dir, port, &[]);
    for v in ["keep", "gone", "gone"] {
        let body = json!({"site": "shop.test", "type": "pageview", "url": "https://shop.test/", "visitor_id": v});
        assert_eq!(hit(port, &body), 202);
    }
    let visitors = |token: &str| {
        let (s, v) = api(
            port,
            "POST",
            "/api/v1/query",
            token,
            &json!({"site": "shop.test", "date_range": "day", "metrics": ["visitors", "pageviews"]}),
        );
        assert_eq!(s, 200, "{v}");
        v["results"][0]["metrics"].clone()
    };
    assert_eq!(visitors(&read), json!([2, 3]));
    let erase = json!({"site": "shop.test", "visitor": "gone"});
    let (status, _) = api(port, "POST", "/api/v1/erase", &read, &erase);
    assert_eq!(status, 403, "a read token may not erase");
    let (status, body) = api(port, "POST", "/api/v1/erase", &write, &erase);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["erased"]["events"], 2);
    assert_eq!(body["erased"]["session_state"], true);
    assert_eq!(visitors(&read), json!([1, 1]));
    let (status, body) = api(
        port,
        "POST",
        "/api/v1/erase",
        &write,
        &json!({"site": "shop.test"}),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("visitor"),
        "{body}"
    );
    // SIGINT: the server writes token use on the way out.
    common::stop(&mut server);
    let out = run(&["tokens", "list", "--data-dir", dir], None);
    let prefix = &read[3..11];
    let line: Value = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|t| t["prefix"] == prefix)
        .expect("the read token is listed");
    assert_eq!(line["requests"], 3, "{line}");
    assert!(line["last_used"].is_string(), "{line}");
}

#[test]
fn plans_limit_sites_and_monthly_events() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    let ok = |args: &[&str]| {
        let out = run(args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&[
        "agencies",
        "add",
        "acme",
        "--plan",
        "starter",
        "--max-sites",
        "1",
        "--monthly-events",
        "2",
        "--data-dir",
        dir,
    ]);
    ok(&[
        "sites",
        "add",
        "a.test",
        "--agency",
        "acme",
        "--data-dir",
        dir,
    ]);
    let out = run(
        &[
            "sites",
            "add",
            "b.test",
            "--agency",
            "acme",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("the most its plan \"starter\" allows"),
        "{}",
        text(&out.stderr)
    );
    let port = free_port();
    let mut server = serve_with(dir, port, &[]);
    let body =
        json!({"site": "a.test", "type": "pageview", "url": "https://a.test/", "visitor_id": "v"});
    assert_eq!(hit(port, &body), 202);
    assert_eq!(hit(port, &body), 202);
    let (status, answer) =
        common::http(port, "POST", "/api/event", &[], &body.to_string()).expect("request");
    assert_eq!(status, 429, "{answer}");
    assert!(answer.contains("quota: agency \\\"acme\\\""), "{answer}");
    server.kill().ok();
    let _ = server.wait();
    // A bigger plan lifts it, and removing the agency takes everything with it.
    ok(&[
        "agencies",
        "set",
        "acme",
        "--monthly-events",
        "10",
        "--data-dir",
        dir,
    ]);
    let mut server = serve_with(dir, port, &[]);
    let start = Instant::now();
    while hit(port, &body) != 202 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new plan applies"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill().ok();
    let _ = server.wait();
    let out = run(&["agencies", "remove", "acme", "--data-dir", dir], None);
    assert_eq!(out.status.code(), Some(2), "needs --yes");
    let removed: Value = serde_json::from_str(
        ok(&["agencies", "remove", "acme", "--yes", "--data-dir", dir]).trim(),
    )
    .expect("json");
    assert_eq!(removed["sites"], json!([{"site": "a.test", "erased": 3}]));
    let sites = ok(&["sites", "list", "--data-dir", dir]);
    assert!(!sites.contains("a.test"), "{sites}");
}
