//! The example runs as a user runs it (`cargo run -p embedded-axum`): pages the
//! app serves are tracked by the layer (assets, health checks and JSON are not),
//! the sign-up handler's event is the same visitor's, `/stats` reads it all back,
//! and a restart loses nothing.

use beacon_testkit::http::Server;
use std::process::Command;

const UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

fn start(dir: &std::path::Path) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_embedded-axum"));
    cmd.arg("127.0.0.1:0").arg(dir);
    Server::start(cmd)
}

#[test]
fn the_app_tracks_its_pages_and_events_and_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let ua = [("User-Agent", UA)];
    for path in ["/", "/pricing", "/pricing?ref=mail", "/signup"] {
        let a = server.send("GET", path, &ua, "");
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        assert!(a.body.contains("<h1>"), "{}", a.body);
    }
    // Not pages: a missing route, an asset, a health check, the stats themselves.
    for path in ["/missing", "/app.css", "/healthz"] {
        assert_eq!(server.send("GET", path, &ua, "").status, 404, "{path}");
    }
    let form = [
        ("User-Agent", UA),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let a = server.send("POST", "/signup", &form, "plan=team");
    assert_eq!(a.status, 200, "{}", a.body);

    let stats = server.send("GET", "/stats", &ua, "").json();
    let expect = serde_json::json!({
        "visitors": 1.0,
        "pageviews": 4.0,
        "events": 5.0,
        "pages": [["/pricing", 2.0], ["/", 1.0], ["/signup", 1.0]],
    });
    assert_eq!(stats, expect);
    // Another client is another visitor.
    let other = [(
        "User-Agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    )];
    server.send("GET", "/", &other, "");
    let stats = server.send("GET", "/stats", &ua, "").json();
    assert_eq!(
        (stats["visitors"].as_f64(), stats["pageviews"].as_f64()),
        (Some(2.0), Some(5.0))
    );
    assert!(server.stop(), "a clean exit");

    let server = start(dir.path());
    let again = server.send("GET", "/stats", &ua, "").json();
    assert_eq!(again, stats, "after a restart");
    assert!(server.stop());
}
