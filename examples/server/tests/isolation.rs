//! Tenant isolation over real HTTP: random tokens and logged-in users ask random
//! requests of random sites (queries with every kind of dimension, funnels, goals,
//! realtime, notes, outgoing webhooks, erasure), and no answer ever holds another
//! tenant's data (pages, referrers, sources, properties, notes, webhook URLs); a
//! site out of a credential's reach answers exactly as a site that does not exist,
//! and a write a credential may not make is 403 only on a site it reaches.

mod common;

use common::{free_port, http, make_token, run, serve, text};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

const AGENCIES: usize = 3;
const SITES: usize = 2;

/// Site `s` of agency `a`: its name is also the marker in its pages.
fn site(a: usize, s: usize) -> String {
    format!("a{a}s{s}.test")
}

fn marker(a: usize, s: usize) -> String {
    format!("a{a}s{s}")
}

/// Who asks: an agency's read or write token, or one site's read token.
#[derive(Debug, Clone, Copy)]
enum Who {
    Agency(usize),
    Writer(usize),
    Site(usize, usize),
    /// A viewer of the agency, logged in (cookie and CSRF token).
    User(usize),
}

impl Who {
    fn reaches(&self, a: usize, s: usize) -> bool {
        match *self {
            Who::Agency(x) | Who::Writer(x) | Who::User(x) => x == a,
            Who::Site(x, y) => (x, y) == (a, s),
        }
    }
}

/// Logs `email` in; the cookie pair and the CSRF token.
fn log_in(port: u16, email: &str) -> (String, String) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let body = json!({"email": email, "password": "isolation password"}).to_string();
    let a = beacon_testkit::http::request(
        addr,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &body,
    )
    .expect("login");
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = a
        .header("set-cookie")
        .expect("cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (cookie, a.json()["csrf"].as_str().expect("csrf").to_owned())
}

fn request(kind: usize, site: &str, dimension: &str) -> (&'static str, String, String) {
    match kind {
        0 => (
            "POST",
            "/api/v1/query".into(),
            json!({"site": site, "date_range": "all", "metrics": ["visitors", "pageviews", "events"],
                   "dimensions": if dimension.is_empty() { json!([]) } else { json!([dimension]) }})
            .to_string(),
        ),
        1 => (
            "POST",
            "/api/v1/funnel".into(),
            json!({"site": site, "date_range": "all", "steps": [{"page": "/*"}, {"page": "/*/p1"}],
                   "breakdown": if dimension.is_empty() { Value::Null } else { json!("source") }})
            .to_string(),
        ),
        2 => (
            "POST",
            "/api/v1/goals".into(),
            json!({"site": site, "date_range": "all", "goals": [{"page": "/*"}, {"event": "signup"}]})
                .to_string(),
        ),
        3 => ("GET", format!("/api/v1/realtime?site={site}"), String::new()),
        4 => ("GET", format!("/api/v1/notes?site={site}"), String::new()),
        5 => ("GET", format!("/api/v1/hooks?site={site}"), String::new()),
        _ => (
            "POST",
            "/api/v1/erase".into(),
            json!({"site": site, "visitor": "nobody"}).to_string(),
        ),
    }
}

#[test]
fn no_answer_holds_another_tenants_data() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    for a in 0..AGENCIES {
        let agency = format!("agency{a}");
        assert!(run(&["agencies", "add", &agency, "--data-dir", dir], None)
            .status
            .success());
        for s in 0..SITES {
            let out = run(
                &[
                    "sites",
                    "add",
                    &site(a, s),
                    "--agency",
                    &agency,
                    "--data-dir",
                    dir,
                ],
                None,
            );
            assert!(out.status.success(), "{}", text(&out.stderr));
            // A note that names the site.
            let note = format!("launch of {}", marker(a, s));
            let args = [
                "notes",
                "add",
                &site(a, s),
                "--date",
                "2026-12-01",
                "--text",
                &note,
                "--data-dir",
                dir,
            ];
            let out = run(&args, None);
            assert!(out.status.success(), "{}", text(&out.stderr));
            // An outgoing webhook whose URL names the site.
            let url = format!("https://{}.hooks.example/in", marker(a, s));
            let out = run(
                &["hooks", "add", &site(a, s), &url, "--data-dir", dir],
                None,
            );
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        // A viewer of the agency.
        let email = format!("viewer@agency{a}.test");
        let args = [
            "users",
            "add",
            &email,
            "--agency",
            &agency,
            "--role",
            "viewer",
            "--password",
            "isolation password",
            "--data-dir",
            dir,
        ];
        let out = run(&args, None);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let agency_tokens: Vec<String> = (0..AGENCIES)
        .map(|a| make_token(dir, &["--agency", &format!("agency{a}")], "read"))
        .collect();
    let write_tokens: Vec<String> = (0..AGENCIES)
        .map(|a| make_token(dir, &["--agency", &format!("agency{a}")], "write"))
        .collect();
    let site_tokens: Vec<Vec<String>> = (0..AGENCIES)
        .map(|a| {
            (0..SITES)
                .map(|s| make_token(dir, &["--site", &site(a, s)], "read"))
                .collect()
        })
        .collect();
    let port = free_port();
    let mut server = serve(dir, port);
    // Each site's traffic names it: pages, referrers, props and a custom event.
    for a in 0..AGENCIES {
        for s in 0..SITES {
            let (name, m) = (site(a, s), marker(a, s));
            let hits: Vec<Value> = (0..4)
                .map(|p| {
                    json!({"site": name, "type": if p == 3 { "custom" } else { "pageview" },
                           "name": if p == 3 { json!("signup") } else { Value::Null },
                           "url": format!("https://{name}/{m}/p{p}?utm_source={m}-news"),
                           "referrer": format!("https://{m}-ref.example/"),
                           "visitor_id": format!("{m}-v{}", p % 2), "props": {"tenant": m}})
                })
                .collect();
            let (status, body) =
                http(port, "POST", "/api/events", &[], &json!(hits).to_string()).expect("ingest");
            assert_eq!(status, 202, "{body}");
        }
    }

    let sessions: Vec<(String, String)> = (0..AGENCIES)
        .map(|a| log_in(port, &format!("viewer@agency{a}.test")))
        .collect();
    let who = prop_oneof![
        (0..AGENCIES).prop_map(Who::Agency),
        (0..AGENCIES).prop_map(Who::Writer),
        (0..AGENCIES, 0..SITES).prop_map(|(a, s)| Who::Site(a, s)),
        (0..AGENCIES).prop_map(Who::User),
    ];
    let dims = prop_oneof![
        Just(""),
        Just("page"),
        Just("entry_page"),
        Just("exit_page"),
        Just("referrer"),
        Just("source"),
        Just("utm_source"),
        Just("prop:tenant"),
        Just("goal"),
    ];
    // Sites asked for: every real one, and one that does not exist.
    let target = (0..=AGENCIES, 0..SITES);
    let mut runner = TestRunner::new(Config::with_cases(200));
    let result = runner.run(
        &(who, 0usize..7, target, dims),
        |(who, kind, (ta, ts), dim)| {
            let exists = ta < AGENCIES;
            let name = if exists {
                site(ta, ts)
            } else {
                format!("nowhere{ts}.test")
            };
            let (method, path, body) = request(kind, &name, dim);
            let bearer = |t: &str| format!("Bearer {t}");
            let credential: Vec<(&str, String)> = match who {
                Who::Agency(a) => vec![("Authorization", bearer(&agency_tokens[a]))],
                Who::Writer(a) => vec![("Authorization", bearer(&write_tokens[a]))],
                Who::Site(a, s) => vec![("Authorization", bearer(&site_tokens[a][s]))],
                Who::User(a) => vec![
                    ("Authorization", String::new()),
                    ("Cookie", sessions[a].0.clone()),
                    ("X-CSRF-Token", sessions[a].1.clone()),
                ],
            };
            let headers: Vec<(&str, &str)> =
                credential.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, answer) = http(port, method, &path, &headers, &body).expect("request");
            let writes = kind >= 5;
            if exists && who.reaches(ta, ts) && writes && !matches!(who, Who::Writer(_)) {
                prop_assert_eq!(status, 403, "{:?} {} {}: {}", who, path, body, answer);
            } else if exists && who.reaches(ta, ts) {
                prop_assert_eq!(status, 200, "{:?} {} {}: {}", who, path, body, answer);
                if (kind == 0 && !dim.is_empty() && dim != "goal") || kind == 4 || kind == 5 {
                    // The site's own data is there: the check below is not vacuous.
                    let own = marker(ta, ts);
                    prop_assert!(answer.contains(&own), "{} {}: {}", path, body, answer);
                }
            } else {
                prop_assert_eq!(status, 404, "{:?} {} {}: {}", who, path, body, answer);
                let expected = json!({"error": format!("site: unknown site {name:?}")}).to_string();
                prop_assert_eq!(&answer, &expected, "the same answer as an unknown site");
            }
            // Nothing of a site the token does not reach, whatever the status (but
            // the name the request itself gave, which a 404 repeats).
            for a in 0..AGENCIES {
                for s in 0..SITES {
                    if !who.reaches(a, s) && (a, s) != (ta, ts) {
                        let m = marker(a, s);
                        prop_assert!(
                            !answer.contains(&m),
                            "{:?} {} {} leaked {}: {}",
                            who,
                            path,
                            body,
                            m,
                            answer
                        );
                    }
                }
            }
            Ok(())
        },
    );
    server.kill().ok();
    server.wait().ok();
    if let Err(e) = result {
        panic!("{e}");
    }
}
