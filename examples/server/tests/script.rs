//! The tracking script, as served: size, and every payload it posts in a mocked
//! browser (run in Node) is a hit the server accepts.

use beacon_core::{Hit, ValidationContext};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn asset(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

#[test]
fn script_is_under_2_kb() {
    let bytes = std::fs::read(asset("assets/script.js")).expect("script");
    assert!(bytes.len() <= 2048, "{} bytes", bytes.len());
}

#[test]
fn script_payloads_in_a_mocked_browser() {
    let out = Command::new("node")
        .arg(asset("tests/script_harness.js"))
        .arg(asset("assets/script.js"))
        .output()
        .expect("node runs (the machine image ships Node.js)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let posts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let of = |s: &str| {
        posts
            .iter()
            .filter(|p| p["scenario"] == s)
            .collect::<Vec<_>>()
    };
    let kinds = |s: &str| {
        of(s)
            .iter()
            .map(|p| {
                let b = &p["body"];
                let name = b["goal"].as_str().or(b["name"].as_str()).unwrap_or("");
                format!(
                    "{} {} {}",
                    b["type"].as_str().unwrap_or("?"),
                    name,
                    b["url"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds("basic"),
        vec![
            "pageview  https://example.com/",
            "engagement  https://example.com/",
            "pageview  https://example.com/pricing",
            "custom Outbound Link: Click https://example.com/pricing",
            "custom File Download https://example.com/pricing",
            "goal signup https://example.com/pricing",
            "goal purchase-intent https://example.com/pricing",
            "custom video https://example.com/pricing",
            "engagement  https://example.com/pricing",
        ]
    );
    let basic = of("basic");
    assert!(
        basic
            .iter()
            .all(|p| p["url"] == "https://stats.example.net/api/event"),
        "posts to the script's origin"
    );
    assert_eq!(basic[0]["body"]["referrer"], "https://www.google.com/");
    assert_eq!(basic[0]["body"]["screen"], serde_json::json!([1920, 1080]));
    assert_eq!(
        basic[1]["body"]["engagement"]["scroll_depth"], 100,
        "max scroll depth of the first page"
    );
    assert_eq!(basic[1]["via"], "beacon", "engagement goes with sendBeacon");
    assert_eq!(basic[3]["body"]["props"]["url"], "https://other.org/x");
    assert_eq!(basic[6]["body"]["props"]["plan"], "pro");
    assert_eq!(
        kinds("queued"),
        vec![
            "goal early https://example.com/a",
            "pageview  https://example.com/a"
        ],
        "calls made before load are replayed"
    );
    assert!(
        of("localhost").is_empty(),
        "localhost is ignored by default"
    );
    assert!(of("dnt").is_empty(), "Do Not Track is respected by default");
    assert_eq!(of("dnt-ignored").len(), 1);
    assert_eq!(
        of("dnt-ignored")[0]["body"]["site"],
        "shop.example",
        "data-domain names the site"
    );
    assert!(posts
        .iter()
        .all(|p| !p["body"].to_string().contains("cookie")));

    // Every payload is a hit the server accepts (live ingest: the server's clock and headers).
    let ctx = ValidationContext::live(chrono::Utc::now());
    for p in &posts {
        let hit = Hit::from_value(&p["body"]).unwrap_or_else(|e| panic!("{e}: {}", p["body"]));
        hit.validate(&ctx, None)
            .unwrap_or_else(|e| panic!("{e}: {}", p["body"]));
    }
}
