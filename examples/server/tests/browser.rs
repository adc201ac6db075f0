//! The dashboard in a real browser: Debian's chromium driven over WebDriver
//! (chromedriver), against the real server on a seeded site. Logs in, reads the
//! top row and checks it against the query API, filters by a source, switches the
//! attribution model, opens the public view as an anonymous visitor, and checks a
//! viewer cannot reach settings. Screenshots of each view are saved under
//! `target/screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (`.ci/run` installs them); without them the
//! test fails, saying so.

mod common;

use beacon_testkit::webdriver::Browser;
use common::{free_port, make_token, run, serve_with, text};
use serde_json::{json, Value};

fn shot(b: &Browser, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
    b.screenshot(&dir.join(format!("{name}.png")));
}

/// The query API's answer for the top row (`filters`), in metric order.
fn api_top_row(port: u16, token: &str, filters: Value) -> Vec<(String, f64)> {
    let metrics = [
        "visitors",
        "visits",
        "pageviews",
        "views_per_visit",
        "bounce_rate",
        "visit_duration",
        "conversions",
        "revenue",
    ];
    let q =
        json!({"site": "shop.test", "date_range": "30d", "metrics": metrics, "filters": filters});
    let auth = format!("Bearer {token}");
    let (status, body) = common::http(
        port,
        "POST",
        "/api/v1/query",
        &[("Authorization", auth.as_str())],
        &q.to_string(),
    )
    .expect("query");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let values = v["results"][0]["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    metrics
        .iter()
        .zip(values)
        .map(|(m, x)| ((*m).to_owned(), x.as_f64().unwrap()))
        .collect()
}

/// Hits of the last 25 days on shop.test: sources, pages, devices, purchases.
fn seed_lines() -> String {
    let now = chrono::Utc::now();
    let refs = [
        "https://www.google.com/",
        "https://news.ycombinator.com/",
        "",
        "https://duckduckgo.com/",
    ];
    let pages = ["/", "/pricing", "/blog/launch", "/welcome"];
    let agents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    ];
    let mut out = String::new();
    for v in 0..240u64 {
        let t = now - chrono::Duration::minutes(((v * 7919) % (25 * 1440)) as i64 + 30);
        let referrer = refs[(v % 4) as usize];
        let agent = agents[(v % 2) as usize];
        for k in 0..(1 + v % 3) {
            let page = pages[((v + k) % 4) as usize];
            let line = json!({"site": "shop.test", "type": "pageview", "url": format!("https://shop.test{page}"),
                "referrer": if k == 0 { referrer } else { "" },
                "timestamp": (t + chrono::Duration::minutes(2 * k as i64)).to_rfc3339(),
                "visitor_id": format!("v{v}"), "user_agent": agent});
            out.push_str(&line.to_string());
            out.push('\n');
        }
        if v % 5 == 0 {
            // A visit from another source two days before: the models differ.
            let earlier = json!({"site": "shop.test", "type": "pageview", "url": "https://shop.test/",
                "referrer": refs[((v / 5 + 1) % 4) as usize], "timestamp": (t - chrono::Duration::days(2)).to_rfc3339(),
                "visitor_id": format!("v{v}"), "user_agent": agent});
            out.push_str(&earlier.to_string());
            out.push('\n');
            let line = json!({"site": "shop.test", "type": "purchase", "url": "https://shop.test/checkout",
                "timestamp": (t + chrono::Duration::minutes(9)).to_rfc3339(), "visitor_id": format!("v{v}"),
                "user_agent": agent, "revenue": {"amount": format!("{}.50", 10 + v % 40), "currency": "USD"},
                "order_id": format!("o{v}")});
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_dashboard_shows_the_apis_numbers_filters_and_keeps_viewers_out_of_settings() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path").to_owned();
    let ok = |args: &[&str], stdin: Option<&str>| {
        let out = run(args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&["sites", "add", "shop.test", "--data-dir", &dir], None);
    ok(
        &[
            "webhooks",
            "add",
            "shop.test",
            "stripe",
            "--secret",
            "whsec_browser_test",
            "--data-dir",
            &dir,
        ],
        None,
    );
    ok(&["import", "--data-dir", &dir, "-"], Some(&seed_lines()));
    for (email, role) in [("admin@shop.test", "admin"), ("viewer@shop.test", "viewer")] {
        let args = [
            "users",
            "add",
            email,
            "--agency",
            "owner",
            "--role",
            role,
            "--password",
            "a long password",
            "--data-dir",
            &dir,
        ];
        ok(&args, None);
    }
    let note_day = (chrono::Utc::now() - chrono::Duration::days(4))
        .format("%Y-%m-%d")
        .to_string();
    ok(
        &[
            "notes",
            "add",
            "shop.test",
            "--date",
            &note_day,
            "--text",
            "Launch",
            "--data-dir",
            &dir,
        ],
        None,
    );
    let share = ok(&["share", "shop.test", "--data-dir", &dir], None);
    let share = share.trim().to_owned();
    let write = make_token(&dir, &["--agency", "owner"], "write");
    let port = free_port();
    let mut server = serve_with(&dir, port, &[]);
    let auth = format!("Bearer {write}");
    for (path, body) in [
        (
            "/api/v1/funnels",
            json!({"site": "shop.test", "name": "Pricing to welcome", "steps": [{"page": "/pricing"}, {"page": "/welcome"}], "window": "24h"}),
        ),
        (
            "/api/v1/saved-goals",
            json!({"site": "shop.test", "name": "Welcome", "page": "/welcome"}),
        ),
    ] {
        let (status, answer) = common::http(
            port,
            "POST",
            path,
            &[("Authorization", auth.as_str())],
            &body.to_string(),
        )
        .expect("request");
        assert_eq!(status, 201, "{path}: {answer}");
    }

    let root = format!("http://127.0.0.1:{port}");
    let b = Browser::start(free_port(), 1280, 1400);
    // Log in as the admin: the top row is the query API's answer.
    b.log_in(&root, "admin@shop.test", "a long password");
    b.dashboard_settled();
    let shown = b.top_row();
    let want = api_top_row(port, &write, json!([]));
    assert_eq!(shown, want, "the top row is the API's answer");
    assert!(want[0].1 > 100.0, "a seeded site: {want:?}");
    let markers = b.js("return document.querySelectorAll('.note-marker').length");
    assert_eq!(markers, json!(1), "the note is on the chart");
    shot(&b, "dashboard");

    // Click Google among the sources: the URL says so, the numbers follow.
    b.click("[data-panel=sources] button.row[data-value=Google]");
    b.until(
        "the filter in the URL",
        "location.search.includes('f=source%3AGoogle')",
    );
    b.dashboard_settled();
    assert!(b.url().contains("f=source%3AGoogle"));
    let filtered = b.top_row();
    let want_filtered = api_top_row(port, &write, json!([["is", "source", ["Google"]]]));
    assert_eq!(filtered, want_filtered);
    assert!(
        filtered[0].1 < shown[0].1,
        "fewer visitors from Google alone"
    );
    let chip = b.js("return document.querySelector('#filters .chip').textContent");
    assert!(chip.as_str().unwrap().contains("Google"), "{chip}");
    shot(&b, "filtered");
    // Reloading the URL gives the same view.
    let url = b.url();
    b.go(&url);
    b.dashboard_settled();
    assert_eq!(b.top_row(), want_filtered);
    // Removing the chip goes back.
    b.click("#filters .chip");
    b.until("no filter", "!location.search.includes('f=')");
    b.dashboard_settled();
    assert_eq!(b.top_row(), want);

    // Switch the attribution model: the revenue table is the API's for it.
    let mut tables = Vec::new();
    for model in ["first_touch", "last_touch"] {
        b.js(&format!(
            "const s = document.querySelector('#model'); s.value = '{model}'; s.dispatchEvent(new Event('change')); return true"
        ))
        ;
        b.until(
            "the model's table",
            &format!("document.querySelector('#revenue-table[data-model={model}]')"),
        );
        let shown = b
            .js("return [...document.querySelectorAll('#revenue-table tr[data-source]')].map(r => [r.dataset.source, Number(r.children[1].dataset.value)])")
            ;
        let shown: Vec<Value> = shown
            .as_array()
            .unwrap()
            .iter()
            .map(|p| json!([p[0], p[1].as_f64()]))
            .collect();
        tables.push(shown.clone());
        let q = json!({"site": "shop.test", "date_range": "30d", "metrics": ["revenue", "conversions"],
            "dimensions": ["source"], "filters": [], "attribution": {"model": model, "window_days": 30}, "limit": 10});
        let (_, answer) = common::http(
            port,
            "POST",
            "/api/v1/query",
            &[("Authorization", auth.as_str())],
            &q.to_string(),
        )
        .expect("query");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        let want: Vec<Value> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                json!([
                    r["dimensions"][0].as_str().unwrap_or(""),
                    r["metrics"][0].as_f64()
                ])
            })
            .collect();
        assert!(!want.is_empty());
        assert_eq!(shown, want, "{model}");
        assert!(b.url().contains(&format!("model={model}")));
    }
    assert_ne!(tables[0], tables[1], "the models credit different sources");
    b.dashboard_settled();
    let goals = b.js("return document.querySelector('[data-panel=goals]').innerText");
    let goals = goals.as_str().unwrap();
    assert!(
        goals.contains("Welcome") && goals.contains("Pricing to welcome"),
        "{goals}"
    );
    b.js("document.querySelector('[data-panel=revenue]').scrollIntoView(); return true");
    shot(&b, "attribution");

    // An admin reaches settings.
    b.click("#to-settings");
    b.until(
        "the settings",
        "document.querySelector('[data-panel=tokens] table')",
    );
    let integrations = b.until(
        "the integrations",
        "document.querySelector('[data-panel=integrations] table') && document.querySelector('[data-panel=integrations]').innerText",
    );
    assert!(
        integrations
            .as_str()
            .unwrap()
            .contains("/api/v1/webhooks/stripe/shop.test"),
        "{integrations}"
    );
    shot(&b, "settings");

    // The public view, anonymous (no cookie): the top row is the API's.
    b.clear_cookies();
    b.go(&format!("http://127.0.0.1:{port}{share}"));
    b.dashboard_settled();
    assert_eq!(b.top_row(), want, "the public view shows the same numbers");
    let settings_link = b.js("return document.querySelector('#to-settings')");
    assert!(settings_link.is_null(), "no settings on a public view");
    shot(&b, "public");

    // A viewer sees the dashboard but not settings; the API says 403 too.
    b.log_in(&root, "viewer@shop.test", "a long password");
    b.dashboard_settled();
    assert_eq!(b.top_row(), want);
    let link = b.js("return document.querySelector('#to-settings')");
    assert!(link.is_null(), "a viewer has no settings link");
    b.go(&format!(
        "http://127.0.0.1:{port}/?site=shop.test&view=settings"
    ));
    b.until("the refusal", "document.querySelector('#settings-denied')");
    let status =
        b.js("return fetch('/api/v1/users', {credentials: 'same-origin'}).then(r => r.status)");
    assert_eq!(status, json!(403));
    shot(&b, "viewer-settings");
    // On a phone, in dark mode: the public view reads the same.
    let phone = Browser::start_with(free_port(), 390, 844, &["--force-dark-mode"]);
    phone.go(&format!("http://127.0.0.1:{port}{share}"));
    phone.dashboard_settled();
    assert_eq!(phone.top_row(), want);
    let dark = phone.js("return matchMedia('(prefers-color-scheme: dark)').matches");
    let width = phone.js("return document.documentElement.scrollWidth <= window.innerWidth");
    assert_eq!(width, json!(true), "nothing wider than the phone's screen");
    shot(
        &phone,
        if dark == json!(true) {
            "phone-dark"
        } else {
            "phone"
        },
    );
    drop(phone);
    drop(b);
    common::stop(&mut server);
}
