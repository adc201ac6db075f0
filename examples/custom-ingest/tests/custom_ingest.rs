//! The example runs as a user runs it (`cargo run -p custom-ingest`): hits in over
//! HTTP, errors that name the field, numbers out, and nothing acknowledged lost
//! across a restart.

use beacon_testkit::http::Server;
use std::process::Command;

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn start(dir: &std::path::Path) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custom-ingest"));
    cmd.args(["example.com", "127.0.0.1:0"]).arg(dir);
    Server::start(cmd)
}

const TOTALS: &str = r#"{"site":"example.com","date_range":"all","metrics":["visitors","visits","pageviews","events"]}"#;

#[test]
fn hits_in_numbers_out_and_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let page = |path: &str| {
        format!(r#"{{"site":"example.com","type":"pageview","url":"https://example.com{path}"}}"#)
    };
    let ua = [("User-Agent", UA), ("Content-Type", "application/json")];
    for path in ["/", "/pricing", "/docs"] {
        let a = server.send("POST", "/event", &ua, &page(path));
        assert_eq!(a.status, 202, "{}", a.body);
    }
    let batch = format!(
        r#"[{}, {{"site":"example.com","type":"custom","name":"signup","url":"https://example.com/","visitor_id":"u1"}}]"#,
        page("/a")
    );
    let a = server.send("POST", "/event", &ua, &batch);
    assert_eq!(
        (a.status, a.json()["accepted"].as_u64()),
        (202, Some(2)),
        "{}",
        a.body
    );

    // Errors name the hit, the field and the rule; nothing of a bad batch is kept.
    let bad = format!(
        r#"[{}, {{"site":"example.com","type":"pageview","url":"ftp://x"}}]"#,
        page("/b")
    );
    let a = server.send("POST", "/event", &ua, &bad);
    assert_eq!(a.status, 400);
    let error = a.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.starts_with("[1].url: must be an absolute http(s) URL"),
        "{error}"
    );
    let a = server.send(
        "POST",
        "/event",
        &ua,
        r#"{"site":"other.example","type":"pageview","url":"https://other.example/"}"#,
    );
    assert_eq!(a.status, 400);
    assert!(a.body.contains("other.example"), "{}", a.body);
    let a = server.send(
        "POST",
        "/query",
        &[],
        r#"{"site":"example.com","metrics":["nope"]}"#,
    );
    assert_eq!(a.status, 400);
    assert!(a.body.contains("metrics"), "{}", a.body);

    // One cookieless visitor (same address and agent) with four page views, and
    // one visitor by id with a custom event.
    let expect = serde_json::json!([2, 2, 4, 5]);
    let a = server.send("POST", "/query", &[], TOTALS);
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["results"][0]["metrics"], expect, "{}", a.body);
    assert!(server.stop(), "a clean exit");

    let server = start(dir.path());
    let a = server.send("POST", "/query", &[], TOTALS);
    assert_eq!(
        a.json()["results"][0]["metrics"],
        expect,
        "after a restart: {}",
        a.body
    );
    assert!(server.stop());
}
