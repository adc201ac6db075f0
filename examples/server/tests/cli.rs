//! The `beacon` command and server as a user drives them: real processes, real
//! sockets, a real SQLite file.

mod common;

use common::{beacon, free_port, http, make_token, run, serve, serve_with, text};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

fn hits() -> String {
    [
        json!({"site":"example.com","type":"pageview","url":"https://example.com/","referrer":"https://www.google.com/","timestamp":"2026-03-01T10:00:00Z","ip":"81.2.69.142","user_agent":FIREFOX}).to_string(),
        json!({"site":"example.com","type":"pageview","url":"https://example.com/pricing","referrer":"https://example.com/","timestamp":"2026-03-01T10:05:00Z","ip":"81.2.69.142","user_agent":FIREFOX}).to_string(),
        "not json".to_owned(),
        json!({"site":"example.com","type":"purchase","url":"https://example.com/buy","timestamp":"2026-03-01T10:06:00Z","visitor_id":"v2","revenue":{"amount":"49.00","currency":"USD"}}).to_string(),
        json!({"site":"example.com","type":"pageview","url":"https://example.com/","timestamp":"2026-03-01T11:00:00Z","visitor_id":"v2"}).to_string(),
        json!({"site":"example.com","type":"pageview","url":"ftp://x","timestamp":"2026-03-01T11:00:00Z","visitor_id":"v3"}).to_string(),
    ]
    .join("\n")
}

fn query(dir: &str, q: Value) -> Value {
    let out = run(&["query", "--data-dir", dir, &q.to_string()], None);
    assert!(out.status.success(), "query failed: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("query prints JSON")
}

fn rows(v: &Value) -> Vec<(Value, Value)> {
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["dimensions"].clone(), r["metrics"].clone()))
        .collect()
}

#[test]
fn import_query_restart_and_erase() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let dir = dir.to_str().expect("utf-8 path");
    let add = run(
        &[
            "sites",
            "add",
            "example.com",
            "--timezone",
            "Europe/Berlin",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert!(add.status.success(), "{}", text(&add.stderr));

    let file = tmp.path().join("hits.ndjson");
    std::fs::write(&file, hits()).expect("write hits");
    let imp = run(
        &["import", "--data-dir", dir, file.to_str().expect("path")],
        None,
    );
    assert!(imp.status.success(), "{}", text(&imp.stderr));
    assert_eq!(text(&imp.stdout).trim(), "imported 4, rejected 2");
    let err = text(&imp.stderr);
    assert!(err.contains("line 3: hit: must be a JSON object"), "{err}");
    assert!(
        err.contains("line 6: url: must be an absolute http(s) URL"),
        "{err}"
    );

    let q = json!({"site":"example.com","date_range":["2026-03-01","2026-03-01"],
        "metrics":["visitors","visits","pageviews","bounce_rate","visit_duration","revenue"],"dimensions":["source"]});
    // Google: v1's one visit of 2 pageviews over 300 s. None: v2's two visits (10:06, 11:00), one pageview, 49.00.
    let want = vec![
        (json!(["Google"]), json!([1, 1, 2, 0.0, 300, 0.0])),
        (json!([null]), json!([1, 2, 1, 50.0, 0, 49.0])),
    ];
    assert_eq!(rows(&query(dir, q.clone())), want);
    // A new process reads the same answer back from disk.
    assert_eq!(
        rows(&query(dir, q.clone())),
        want,
        "durable across processes"
    );
    // "all" is the whole history for every request kind, as an explicit range is.
    for range in [json!("all"), json!(["2026-03-01", "2026-03-01"])] {
        let f = json!({"site":"example.com","date_range":range,"steps":[{"page":"/"},{"page":"/pricing"}]});
        let out = run(&["funnel", "--data-dir", dir, &f.to_string()], None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("funnel JSON");
        let visitors: Vec<Value> = v["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| s["visitors"].clone())
            .collect();
        assert_eq!(visitors, [json!(2), json!(1)], "funnel over {range}");
        let g = json!({"site":"example.com","date_range":range,"goals":[{"page":"/pricing"}]});
        let out = run(&["goals", "--data-dir", dir, &g.to_string()], None);
        let v: Value = serde_json::from_slice(&out.stdout).expect("goals JSON");
        assert_eq!(v["goals"][0]["conversions"], json!(1), "goals over {range}");
        let mut a = q.clone();
        a["date_range"] = range.clone();
        a["metrics"] = json!(["revenue"]);
        a["attribution"] = json!({"model": "first_touch"});
        assert_eq!(
            rows(&query(dir, a)),
            [(json!([null]), json!([49.0]))],
            "attribution over {range}"
        );
    }

    let erase = run(
        &[
            "erase",
            "--data-dir",
            dir,
            "--site",
            "example.com",
            "--visitor",
            "v2",
        ],
        None,
    );
    assert_eq!(text(&erase.stdout).trim(), "erased 2 events");
    assert_eq!(
        rows(&query(dir, q)),
        vec![(json!(["Google"]), json!([1, 1, 2, 0.0, 300, 0.0]))]
    );
}

#[test]
fn csv_import_and_implicit_site() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let dir = dir.to_str().expect("utf-8 path");
    let csv = "type,url,timestamp,visitor_id,user_agent,props.plan\n\
               pageview,https://shop.test/,2026-03-01T10:00:00Z,a,\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\",pro\n\
               pageview,https://shop.test/b,2026-03-01T10:01:00Z,b,\"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\",free\n\
               view,https://shop.test/,2026-03-01T10:00:00Z,c,,\n";
    let imp = run(
        &[
            "import",
            "--data-dir",
            dir,
            "--format",
            "csv",
            "--site",
            "shop.test",
            "-",
        ],
        Some(csv),
    );
    assert_eq!(
        text(&imp.stdout).trim(),
        "imported 2, rejected 1",
        "{}",
        text(&imp.stderr)
    );
    assert!(
        text(&imp.stderr).contains("line 4: type:"),
        "{}",
        text(&imp.stderr)
    );
    let r = query(
        dir,
        json!({"site":"shop.test","date_range":["2026-03-01","2026-03-01"],"metrics":["visitors"],"dimensions":["prop:plan"],"order_by":[["prop:plan","asc"]]}),
    );
    assert_eq!(
        rows(&r),
        vec![(json!(["free"]), json!([1])), (json!(["pro"]), json!([1]))]
    );
    let list = run(&["sites", "list", "--data-dir", dir], None);
    let site: Value = serde_json::from_slice(&list.stdout).expect("site json");
    assert_eq!(
        (site["domain"].as_str(), site["timezone"].as_str()),
        (Some("shop.test"), Some("UTC"))
    );
}

#[test]
fn invalid_queries_and_arguments_exit_2() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    let out = run(
        &[
            "query",
            "--data-dir",
            dir,
            r#"{"site":"a.com","metrics":["visitors","nope"]}"#,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).expect("only the error JSON on stdout");
    assert!(
        v["error"]
            .as_str()
            .expect("error")
            .starts_with("metrics[1]:"),
        "{v}"
    );
    let unknown = run(
        &["query", "--data-dir", dir, r#"{"site":"nowhere.test"}"#],
        None,
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(
        run(&["import", "--data-dir", dir, "/nonexistent/file"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(
            &[
                "sites",
                "add",
                "a.com",
                "--timezone",
                "Mars/Olympus",
                "--data-dir",
                dir
            ],
            None
        )
        .status
        .code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"], None).status.code(), Some(2));
}

#[test]
fn enrich_writes_one_flat_object_per_line() {
    let input = format!(
        "{}\nnot a hit\n",
        json!({"type":"pageview","url":"https://a.com/x?utm_campaign=c&gclid=g","referrer":"https://www.google.com/","user_agent":FIREFOX})
    );
    let out = run(&["enrich"], Some(&input));
    assert!(out.status.success());
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (
            lines[0]["browser"].as_str(),
            lines[0]["page"].as_str(),
            lines[0]["channel"].as_str()
        ),
        (Some("Firefox"), Some("/x"), Some("Paid Search"))
    );
    assert_eq!(
        (
            lines[0]["utm_campaign"].as_str(),
            lines[0]["gclid"].as_str(),
            lines[0]["is_bot"].as_bool()
        ),
        (Some("c"), Some("g"), Some(false))
    );
    assert!(lines[1]["error"]
        .as_str()
        .expect("error")
        .starts_with("hit:"));
}

#[test]
fn http_api_end_to_end() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    assert!(run(&["sites", "add", "live.test", "--data-dir", dir], None)
        .status
        .success());
    let port = free_port();
    let mut server = serve(dir, port);
    let hit = json!({"site":"live.test","type":"pageview","url":"https://live.test/docs","referrer":"https://news.ycombinator.com/"}).to_string();
    let (status, body) =
        http(port, "POST", "/api/event", &[("User-Agent", FIREFOX)], &hit).expect("post");
    assert_eq!(status, 202, "{body}");
    let batch = json!([{"site":"live.test","type":"pageview","url":"https://live.test/a"},{"site":"live.test","type":"goal","goal":"signup","url":"https://live.test/a"}]).to_string();
    assert_eq!(
        http(
            port,
            "POST",
            "/api/events",
            &[("User-Agent", FIREFOX)],
            &batch
        )
        .expect("post")
        .0,
        202
    );
    let (status, body) = http(
        port,
        "POST",
        "/api/event",
        &[("User-Agent", FIREFOX)],
        r#"{"site":"nowhere.test","type":"pageview","url":"https://x.test/"}"#,
    )
    .expect("post");
    assert_eq!(
        (status, body.contains("unknown site")),
        (404, true),
        "{body}"
    );
    let (status, body) = http(
        port,
        "POST",
        "/api/event",
        &[("User-Agent", FIREFOX)],
        r#"{"site":"live.test","type":"pageview"}"#,
    )
    .expect("post");
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["error"],
        "url: is required"
    );
    let (status, body) = http(port, "POST", "/api/v1/query", &[], r#"{"site":"live.test","date_range":"day","metrics":["visitors","pageviews","events","conversions"],"dimensions":["source"]}"#).expect("query");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        rows(&v),
        vec![(json!(["Hacker News"]), json!([1, 2, 3, 1]))],
        "one visitor: the batch continues the first hit's session"
    );
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/query",
        &[],
        r#"{"site":"live.test","metrics":["bogus"]}"#,
    )
    .expect("query");
    assert_eq!(status, 400);
    // Health reports what the event store holds (the load generator samples it).
    let (status, body) = http(port, "GET", "/healthz", &[], "").expect("health");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (status, &v["status"], &v["events"]),
        (200, &json!("ok"), &json!(3)),
        "{body}"
    );
    assert!(
        v["event_heap_bytes"].as_u64().is_some_and(|b| b > 0),
        "{body}"
    );
    server.kill().ok();
    server.wait().ok();
}

#[test]
fn acknowledged_hits_survive_kill_9() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    assert!(
        run(&["sites", "add", "crash.test", "--data-dir", dir], None)
            .status
            .success()
    );
    let port = free_port();
    let mut server = serve(dir, port);
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    let sender = std::thread::spawn(move || {
        let mut acked = 0u32;
        let started = Instant::now();
        for i in 0..100_000u32 {
            let hit = json!({"site":"crash.test","type":"pageview","url":format!("https://crash.test/{i}"),"visitor_id":format!("v{}", i % 50)}).to_string();
            match http(port, "POST", "/api/event", &[("User-Agent", FIREFOX)], &hit) {
                Ok((202, _)) => {
                    acked += 1;
                    let _ = tx.send(acked);
                }
                _ => break,
            }
            if started.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        acked
    });
    // Kill the server without warning while hits are in flight.
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(n) if n >= 300 => break,
            Ok(_) => continue,
            Err(_) => panic!("the server stopped acknowledging hits"),
        }
    }
    server.kill().expect("SIGKILL");
    server.wait().ok();
    let acked = sender.join().expect("sender");
    assert!(acked >= 300);
    let r = query(
        dir,
        json!({"site":"crash.test","date_range":"day","metrics":["pageviews"]}),
    );
    let stored = r["results"][0]["metrics"][0].as_u64().expect("pageviews");
    assert!(
        stored >= u64::from(acked),
        "acknowledged {acked}, found {stored}"
    );
    assert!(
        stored <= u64::from(acked) + 1,
        "at most the one in flight beyond the acknowledged ({stored} > {acked} + 1)"
    );
}

#[test]
fn concurrent_clients_share_commits_and_busy_answers_are_not_stored() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    assert!(run(&["sites", "add", "busy.test", "--data-dir", dir], None)
        .status
        .success());
    let port = free_port();
    // A tiny queue: with 8 clients at once, some requests are likely answered 503.
    let mut server = serve_with(dir, port, &["--queue", "2"]);
    let clients: Vec<_> = (0..8)
        .map(|c| {
            std::thread::spawn(move || {
                let (mut ok, mut busy) = (0u64, 0u64);
                for i in 0..150 {
                    let hit = json!({"site":"busy.test","type":"pageview","url":format!("https://busy.test/{c}/{i}"),"visitor_id":format!("c{c}")}).to_string();
                    match http(port, "POST", "/api/event", &[("User-Agent", FIREFOX)], &hit).expect("post").0 {
                        202 => ok += 1,
                        503 => busy += 1,
                        other => panic!("unexpected status {other}"),
                    }
                }
                (ok, busy)
            })
        })
        .collect();
    let (ok, busy) = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    server.kill().ok();
    server.wait().ok();
    assert_eq!(ok + busy, 1200);
    let r = query(
        dir,
        json!({"site":"busy.test","date_range":"day","metrics":["pageviews","visitors"]}),
    );
    assert_eq!(
        r["results"][0]["metrics"],
        json!([ok, 8u64.min(ok)]),
        "every acknowledged hit is stored, and only those ({busy} answered 503)"
    );
}

/// Cookieless ids survive a restart: the day's salt is stored, so the same IP and
/// user agent after a restart (even a kill -9) is the same visitor.
#[test]
fn cookieless_visitor_is_the_same_after_a_restart() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    assert!(run(&["sites", "add", "salt.test", "--data-dir", dir], None)
        .status
        .success());
    let port = free_port();
    let hit =
        json!({"site": "salt.test", "type": "pageview", "url": "https://salt.test/"}).to_string();
    let send = |port| {
        let (status, body) =
            http(port, "POST", "/api/event", &[("User-Agent", FIREFOX)], &hit).expect("post");
        assert_eq!(status, 202, "{body}");
    };
    let mut server = serve(dir, port);
    send(port);
    server.kill().ok(); // SIGKILL: nothing is flushed on the way out
    server.wait().ok();
    let mut server = serve(dir, port);
    send(port);
    let (status, body) = http(
        port,
        "POST",
        "/api/v1/query",
        &[],
        r#"{"site":"salt.test","date_range":"day","metrics":["visitors","pageviews"]}"#,
    )
    .expect("query");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["results"][0]["metrics"], json!([1, 2]), "{v}");
    server.kill().ok();
    server.wait().ok();
}

#[test]
fn a_closed_standard_output_ends_the_command_without_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    assert!(run(&["sites", "add", "example.com", "--data-dir", d], None)
        .status
        .success());
    let q = json!({"site":"example.com","date_range":["2026-03-01","2026-03-31"],"metrics":["visitors"]});
    for args in [
        vec!["query", "--data-dir", d, &q.to_string()],
        vec!["sites", "list", "--data-dir", d],
    ] {
        let mut child = beacon()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        // The reader goes away before the answer is written.
        drop(child.stdout.take());
        let done = child.wait_with_output().expect("wait");
        assert!(
            !text(&done.stderr).contains("panicked"),
            "{args:?}: {}",
            text(&done.stderr)
        );
        assert!(
            done.status.code().is_some_and(|c| c == 0),
            "{args:?}: {:?}",
            done.status
        );
    }
}

/// Starts `beacon serve` with `args` and `env`, and says where it listens (its
/// log names the address), or what it printed when it did not start.
fn listens_at(args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let mut cmd = beacon();
    cmd.arg("serve")
        .args(args)
        .stdout(std::process::Stdio::null());
    cmd.stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("beacon starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening") {
                let _ = tx.send(Ok(line));
                return;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = tx.send(Err(seen));
    });
    let got = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server listens or exits");
    let _ = child.kill();
    let status = child.wait().expect("exits");
    got.map_err(|out| format!("{status}: {out}"))
}

#[test]
fn serve_takes_a_flag_over_the_environment_over_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("beacon.toml");
    let (a, b, c) = (free_port(), free_port(), free_port());
    std::fs::write(
        &file,
        format!("listen = \"127.0.0.1:{a}\"\ndata_dir = \"data\"\nread_slots = 1\n"),
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let at = |port: u16| format!("127.0.0.1:{port}");

    // The file alone: its address, and its data dir (relative to the file).
    let line = listens_at(&["--config", config], &[]).unwrap();
    assert!(line.contains(&at(a)), "{line}");
    assert!(
        data.join("beacon.sqlite").exists(),
        "the file's data dir is used"
    );
    // The environment over the file.
    let line = listens_at(&["--config", config], &[("BEACON_LISTEN", &at(b))]).unwrap();
    assert!(line.contains(&at(b)), "{line}");
    // A flag over both.
    let line = listens_at(
        &["--config", config, "--listen", &at(c)],
        &[("BEACON_LISTEN", &at(b))],
    )
    .unwrap();
    assert!(line.contains(&at(c)), "{line}");

    // A key the file may not set is named, with its line; exit 2.
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\nlisten_port = 8000\n").unwrap();
    let out = run(&["serve", "--config", config], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("listen_port") && err.contains("line 2"),
        "{err}"
    );
    // A bad value from the environment is named too.
    let out = beacon()
        .args(["serve", "--config", config])
        .env("BEACON_READ_SLOTS", "many")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("many"), "{}", text(&out.stderr));
}

#[test]
fn reads_need_a_token_and_a_site_out_of_reach_is_unknown() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    for args in [
        &["agencies", "add", "acme"][..],
        &["sites", "add", "mine.test"],
        &["sites", "add", "client.test", "--agency", "acme"],
        &["sites", "add", "other-client.test", "--agency", "acme"],
    ] {
        let out = run(&[args, &["--data-dir", dir]].concat(), None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let out = run(
        &[
            "sites",
            "add",
            "x.test",
            "--agency",
            "nobody",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nobody"),
        "{}",
        text(&out.stderr)
    );

    let acme = make_token(dir, &["--agency", "acme"], "read");
    let one = make_token(dir, &["--site", "client.test"], "read");
    let revoked = make_token(dir, &["--agency", "acme"], "read");
    let prefix = &revoked[3..11];
    assert!(run(&["tokens", "revoke", prefix, "--data-dir", dir], None)
        .status
        .success());
    let listed = text(&run(&["tokens", "list", "--data-dir", dir], None).stdout);
    assert!(!listed.contains(&acme[3..]), "a secret is never listed");
    assert!(listed.contains(&acme[3..11]), "{listed}");

    let port = free_port();
    let mut server = serve(dir, port);
    let query = |site: &str| {
        json!({"site": site, "date_range": "all", "metrics": ["visitors"]}).to_string()
    };
    let ask = |token: Option<&str>, path: &str, body: &str| {
        let auth = token.map(|t| format!("Bearer {t}"));
        // An empty value: no header at all.
        let headers = [("Authorization", auth.as_deref().unwrap_or(""))];
        let method = if body.is_empty() { "GET" } else { "POST" };
        http(port, method, path, &headers, body).expect("request")
    };
    // No credential, a malformed one, a wrong one, a revoked one: 401, as JSON.
    let wrong = format!("bk_{}", "0".repeat(64));
    for t in [
        None,
        Some("nope"),
        Some(wrong.as_str()),
        Some(revoked.as_str()),
    ] {
        let (status, body) = ask(t, "/api/v1/query", &query("client.test"));
        assert_eq!(status, 401, "{t:?}: {body}");
        let v: Value = serde_json::from_str(&body).expect("json");
        assert!(
            v["error"].as_str().unwrap().starts_with("authorization:"),
            "{body}"
        );
    }
    // The agency's token reads its sites; a site of another agency answers exactly
    // as a site that does not exist.
    assert_eq!(
        ask(Some(&acme), "/api/v1/query", &query("client.test")).0,
        200
    );
    assert_eq!(
        ask(Some(&acme), "/api/v1/query", &query("other-client.test")).0,
        200
    );
    let forbidden = ask(Some(&acme), "/api/v1/query", &query("mine.test"));
    let unknown = ask(Some(&acme), "/api/v1/query", &query("nowhere.test"));
    assert_eq!(forbidden.0, 404);
    assert_eq!(
        forbidden.1.replace("mine.test", "X"),
        unknown.1.replace("nowhere.test", "X"),
        "the same answer"
    );
    // A site token reaches its site only, on every read endpoint.
    assert_eq!(
        ask(Some(&one), "/api/v1/query", &query("client.test")).0,
        200
    );
    assert_eq!(
        ask(Some(&one), "/api/v1/query", &query("other-client.test")).0,
        404
    );
    let funnel =
        |site: &str| json!({"site": site, "steps": [{"page": "/"}, {"page": "/b"}]}).to_string();
    assert_eq!(
        ask(Some(&one), "/api/v1/funnel", &funnel("client.test")).0,
        200
    );
    assert_eq!(
        ask(Some(&one), "/api/v1/funnel", &funnel("other-client.test")).0,
        404
    );
    let goals = |site: &str| json!({"site": site, "goals": [{"page": "/b"}]}).to_string();
    assert_eq!(
        ask(Some(&one), "/api/v1/goals", &goals("client.test")).0,
        200
    );
    assert_eq!(
        ask(Some(&one), "/api/v1/goals", &goals("other-client.test")).0,
        404
    );
    assert_eq!(
        ask(Some(&one), "/api/v1/realtime?site=client.test", "").0,
        200
    );
    assert_eq!(
        ask(Some(&one), "/api/v1/realtime?site=mine.test", "").0,
        404
    );
    assert_eq!(ask(None, "/api/v1/realtime?site=client.test", "").0, 401);
    // Ingest stays open (browsers send it).
    let hit = json!({"site":"client.test","type":"pageview","url":"https://client.test/","visitor_id":"v"}).to_string();
    assert_eq!(
        http(port, "POST", "/api/event", &[], &hit).expect("post").0,
        202
    );
    server.kill().ok();
    server.wait().ok();
}

#[test]
fn notes_need_a_write_token_and_come_with_query_results() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    for args in [
        &["agencies", "add", "acme"][..],
        &["sites", "add", "notes.test"],
        &["sites", "add", "acme.test", "--agency", "acme"],
    ] {
        assert!(run(&[args, &["--data-dir", dir]].concat(), None)
            .status
            .success());
    }
    let write = make_token(dir, &["--site", "notes.test"], "write");
    let read = make_token(dir, &["--agency", "owner"], "read");
    let acme = make_token(dir, &["--agency", "acme"], "write");
    let port = free_port();
    let mut server = serve(dir, port);
    let call = |token: &str, method: &str, path: &str, body: &str| {
        let auth = format!("Bearer {token}");
        let (status, body) =
            http(port, method, path, &[("Authorization", &auth)], body).expect("request");
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    let new = |day: &str, text: &str| {
        json!({"site": "notes.test", "date": day, "text": text, "tags": ["launch"]}).to_string()
    };
    // Scopes: a write token writes; a read token reads but may not write (403); a
    // token of another agency does not see the site (404).
    let (status, created) = call(
        &write,
        "POST",
        "/api/v1/notes",
        &new("2026-03-02", "new pricing"),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, v) = call(&read, "POST", "/api/v1/notes", &new("2026-03-03", "x"));
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("authorization: the token may only read"))
    );
    let (status, v) = call(&acme, "POST", "/api/v1/notes", &new("2026-03-03", "x"));
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"], "site: unknown site \"notes.test\"");
    // Rules name the field.
    let (status, v) = call(&write, "POST", "/api/v1/notes", &new("2026-03-03", ""));
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().starts_with("text:"), "{v}");
    let (status, v) = call(
        &write,
        "POST",
        "/api/v1/notes",
        r#"{"site":"notes.test","text":"no date"}"#,
    );
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().starts_with("date:"), "{v}");
    assert_eq!(
        call(&write, "POST", "/api/v1/notes", &new("2026-04-01", "later")).0,
        201
    );

    // Listed for a range, and with a query's results for its range.
    let (status, v) = call(
        &read,
        "GET",
        "/api/v1/notes?site=notes.test&to=2026-03-31",
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(v["notes"].as_array().map(Vec::len), Some(1), "{v}");
    let q = json!({"site": "notes.test", "date_range": ["2026-03-01", "2026-03-31"], "metrics": ["visitors"]});
    let (status, v) = call(&read, "POST", "/api/v1/query", &q.to_string());
    assert_eq!(status, 200);
    let texts: Vec<&str> = v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["new pricing"]);

    // Edited and removed by a write token only.
    let edit = json!({"site": "notes.test", "text": "new pricing page"}).to_string();
    assert_eq!(
        call(&read, "PUT", &format!("/api/v1/notes/{id}"), &edit).0,
        403
    );
    let (status, v) = call(&write, "PUT", &format!("/api/v1/notes/{id}"), &edit);
    assert_eq!(
        (status, v["text"].as_str()),
        (200, Some("new pricing page"))
    );
    assert_eq!(v["date"], "2026-03-02");
    let path = format!("/api/v1/notes/{id}?site=notes.test");
    assert_eq!(call(&read, "DELETE", &path, "").0, 403);
    assert_eq!(call(&write, "DELETE", &path, "").0, 204);
    assert_eq!(call(&write, "DELETE", &path, "").0, 404);
    server.kill().ok();
    server.wait().ok();

    // The CLI sees the same notes.
    let listed = text(&run(&["notes", "list", "notes.test", "--data-dir", dir], None).stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("later"));
}

#[test]
fn ingest_takes_a_sites_own_pages_server_side_calls_and_write_tokens() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    for args in [
        &["agencies", "add", "acme"][..],
        &["sites", "add", "shop.test"],
        &["sites", "add", "other.test"],
        &["sites", "add", "acme.test", "--agency", "acme"],
    ] {
        assert!(run(&[args, &["--data-dir", dir]].concat(), None)
            .status
            .success());
    }
    let write = make_token(dir, &["--site", "shop.test"], "write");
    let read = make_token(dir, &["--site", "shop.test"], "read");
    let acme = make_token(dir, &["--agency", "acme"], "write");
    let port = free_port();
    let mut server = serve(dir, port);
    let hit = |site: &str| {
        json!({"site": site, "type": "pageview", "url": format!("https://{site}/"), "visitor_id": "v"})
            .to_string()
    };
    let send = |headers: &[(&str, &str)], body: &str| {
        let (status, body) = http(port, "POST", "/api/events", headers, body).expect("post");
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    let one = format!("[{}]", hit("shop.test"));
    let bearer = |t: &str| format!("Bearer {t}");
    let (w, r, a) = (bearer(&write), bearer(&read), bearer(&acme));
    // The site's own pages, and server-side calls (no Origin or Referer).
    for headers in [
        &[("Origin", "https://shop.test")][..],
        &[("Origin", "https://www.shop.test:8443")],
        &[("Referer", "https://shop.test/pricing?x=1")],
        &[],
    ] {
        assert_eq!(send(headers, &one).0, 202, "{headers:?}");
    }
    // Another site's page may not send this site's hits.
    let (status, v) = send(&[("Origin", "https://evil.test")], &one);
    assert_eq!(status, 403, "{v}");
    assert_eq!(
        v["error"],
        "site: \"shop.test\" takes hits from its own hosts only, not \"evil.test\" (a server-side call may send a write token)"
    );
    assert_eq!(send(&[("Referer", "https://evil.test/a")], &one).0, 403);
    let mixed = format!("[{},{}]", hit("shop.test"), hit("other.test"));
    let (status, v) = send(&[("Origin", "https://shop.test")], &mixed);
    assert_eq!(status, 403);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("[1].site: \"other.test\""),
        "{v}"
    );
    // A write token for the site is taken from anywhere; a read token is not, nor a
    // token out of reach, nor a bad one.
    assert_eq!(
        send(
            &[("Origin", "https://evil.test"), ("Authorization", &w)],
            &one
        )
        .0,
        202
    );
    assert_eq!(send(&[("Authorization", &r)], &one).0, 403);
    assert_eq!(send(&[("Authorization", &a)], &one).0, 404);
    assert_eq!(send(&[("Authorization", "Bearer bk_nope")], &one).0, 401);
    server.kill().ok();
    server.wait().ok();
    // Accepted: four, and the token's one; nothing refused was stored.
    let stored = query(
        dir,
        json!({"site": "shop.test", "date_range": "all", "metrics": ["pageviews"]}),
    );
    assert_eq!(stored["results"][0]["metrics"][0], 5, "{stored}");
    assert_eq!(
        query(
            dir,
            json!({"site": "other.test", "date_range": "all", "metrics": ["pageviews"]})
        )["results"][0]["metrics"][0],
        0
    );

    // --any-origin: pages on any host.
    let port = free_port();
    let mut server = serve_with(dir, port, &["--any-origin"]);
    let (status, body) = http(
        port,
        "POST",
        "/api/events",
        &[("Origin", "https://evil.test")],
        &one,
    )
    .expect("post");
    assert_eq!(status, 202, "{body}");
    server.kill().ok();
    server.wait().ok();
}

/// One request (`beacon_testkit::http`, as JSON; an empty header value sends no
/// header): the status, the `Set-Cookie` values and the body.
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<String>, Value) {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend(headers.iter().filter(|(_, v)| !v.is_empty()));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let a = beacon_testkit::http::request(addr, method, path, &all, body).expect("request");
    let cookies = a
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect();
    (
        a.status,
        cookies,
        serde_json::from_str(&a.body).unwrap_or(Value::Null),
    )
}

#[test]
fn users_log_in_and_cookie_writes_need_the_csrf_token() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    for args in [
        &["sites", "add", "team.test"][..],
        &[
            "users",
            "add",
            "Admin@Team.test",
            "--password",
            "correct horse battery",
        ],
        &[
            "users",
            "add",
            "viewer@team.test",
            "--role",
            "viewer",
            "--password",
            "viewer password",
        ],
    ] {
        let out = run(&[args, &["--data-dir", dir]].concat(), None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let out = run(
        &[
            "users",
            "add",
            "x@team.test",
            "--password",
            "short",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("password: must be at least 10 characters"));
    let listed = text(&run(&["users", "list", "--data-dir", dir], None).stdout);
    assert!(
        listed.contains("admin@team.test") && !listed.contains("argon2"),
        "{listed}"
    );

    let port = free_port();
    let mut server = serve(dir, port);
    let log_in = |email: &str, password: &str| {
        exchange(
            port,
            "POST",
            "/api/v1/login",
            &[("Authorization", "")],
            &json!({"email": email, "password": password}).to_string(),
        )
    };
    // A wrong password and an unknown address look alike.
    let (s1, c1, v1) = log_in("admin@team.test", "wrong password!");
    let (s2, _, v2) = log_in("nobody@team.test", "wrong password!");
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(v1, v2);
    assert!(c1.is_empty());

    let (status, cookies, v) = log_in("ADMIN@team.test", "correct horse battery");
    assert_eq!(status, 200, "{v}");
    let set = cookies
        .iter()
        .find(|c| c.starts_with("beacon_session="))
        .expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=2592000"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let session = set.split(';').next().unwrap().to_owned();
    let csrf = v["csrf"].as_str().expect("csrf").to_owned();
    assert_eq!(v["role"], "admin");

    // Reads with the cookie; a write with the cookie needs the CSRF token.
    let q = json!({"site": "team.test", "date_range": "all", "metrics": ["visitors"]}).to_string();
    let cookie = [("Cookie", session.as_str()), ("Authorization", "")];
    assert_eq!(
        exchange(port, "POST", "/api/v1/query", &cookie, &q).0,
        403,
        "a POST is a write to the CSRF rule"
    );
    let with_csrf = [
        ("Cookie", session.as_str()),
        ("X-CSRF-Token", csrf.as_str()),
        ("Authorization", ""),
    ];
    assert_eq!(
        exchange(port, "POST", "/api/v1/query", &with_csrf, &q).0,
        200
    );
    assert_eq!(
        exchange(port, "GET", "/api/v1/notes?site=team.test", &cookie, "").0,
        200
    );
    let note = json!({"site": "team.test", "date": "2026-03-01", "text": "from the dashboard"})
        .to_string();
    let (status, _, v) = exchange(port, "POST", "/api/v1/notes", &cookie, &note);
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("csrf:"), "{v}");
    let wrong = [
        ("Cookie", session.as_str()),
        ("X-CSRF-Token", "0000"),
        ("Authorization", ""),
    ];
    assert_eq!(
        exchange(port, "POST", "/api/v1/notes", &wrong, &note).0,
        403
    );
    assert_eq!(
        exchange(port, "POST", "/api/v1/notes", &with_csrf, &note).0,
        201
    );

    // A viewer reads but may not write.
    let (_, cookies, v) = log_in("viewer@team.test", "viewer password");
    let viewer = cookies[0].split(';').next().unwrap().to_owned();
    let vcsrf = v["csrf"].as_str().unwrap().to_owned();
    let as_viewer = [
        ("Cookie", viewer.as_str()),
        ("X-CSRF-Token", vcsrf.as_str()),
        ("Authorization", ""),
    ];
    assert_eq!(
        exchange(port, "POST", "/api/v1/query", &as_viewer, &q).0,
        200
    );
    let (status, _, v) = exchange(port, "POST", "/api/v1/notes", &as_viewer, &note);
    assert_eq!(
        (status, v["error"].as_str()),
        (403, Some("authorization: the token may only read"))
    );

    // Logging out ends the session; a made-up cookie is no session.
    assert_eq!(exchange(port, "POST", "/api/v1/logout", &cookie, "").0, 204);
    assert_eq!(
        exchange(port, "POST", "/api/v1/query", &with_csrf, &q).0,
        401
    );
    let fake = format!("beacon_session=bs_{}", "1".repeat(64));
    assert_eq!(
        exchange(
            port,
            "GET",
            "/api/v1/notes?site=team.test",
            &[("Cookie", &fake), ("Authorization", "")],
            ""
        )
        .0,
        401
    );
    // Removing a user ends their sessions.
    server.kill().ok();
    server.wait().ok();
    assert!(run(
        &["users", "remove", "viewer@team.test", "--data-dir", dir],
        None
    )
    .status
    .success());
    let port2 = free_port();
    let mut server = serve(dir, port2);
    let as_viewer = [("Cookie", viewer.as_str()), ("Authorization", "")];
    assert_eq!(
        exchange(port2, "GET", "/api/v1/notes?site=team.test", &as_viewer, "").0,
        401
    );
    server.kill().ok();
    server.wait().ok();
}

#[test]
fn a_shared_dashboard_shows_the_top_row_and_can_be_locked_and_revoked() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    assert!(
        run(&["sites", "add", "shared.test", "--data-dir", dir], None)
            .status
            .success()
    );
    let path = text(&run(&["share", "shared.test", "--data-dir", dir], None).stdout)
        .trim()
        .to_owned();
    assert!(
        path.starts_with("/share/") && path.len() == 7 + 32,
        "{path}"
    );
    let out = run(
        &[
            "share",
            "shared.test",
            "--password",
            "locked dashboard",
            "--data-dir",
            dir,
        ],
        None,
    );
    let locked = text(&out.stdout).trim().to_owned();
    assert_ne!(locked, path);
    let out = run(&["share", "nowhere.test", "--data-dir", dir], None);
    assert_eq!(out.status.code(), Some(2));

    let port = free_port();
    let mut server = serve(dir, port);
    for (visitor, page) in [("a", "/"), ("a", "/x"), ("b", "/")] {
        let hit = json!({"site": "shared.test", "type": "pageview", "url": format!("https://shared.test{page}"), "visitor_id": visitor});
        assert_eq!(
            http(port, "POST", "/api/event", &[], &hit.to_string())
                .expect("hit")
                .0,
            202
        );
    }
    // The top row: each number's data-value is the query API's value.
    let (status, page) = http(port, "GET", &path, &[], "").expect("page");
    assert_eq!(status, 200, "{page}");
    let q = json!({"site": "shared.test", "date_range": "30d", "metrics": ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"]});
    let (_, api) = http(port, "POST", "/api/v1/query", &[], &q.to_string()).expect("query");
    let api: Value = serde_json::from_str(&api).expect("json");
    for (i, m) in [
        "visitors",
        "visits",
        "pageviews",
        "views_per_visit",
        "bounce_rate",
        "visit_duration",
    ]
    .iter()
    .enumerate()
    {
        let want = format!(
            "data-metric=\"{m}\" data-value=\"{}\"",
            api["results"][0]["metrics"][i]
        );
        assert!(page.contains(&want), "{want} in {page}");
    }
    assert!(page.contains("data-value=\"2\""), "2 visitors: {page}");
    // The share's query: its own site, whatever the body says; no attribution.
    let (status, body) = http(
        port,
        "POST",
        &format!("{path}/query"),
        &[("Authorization", "")],
        r#"{"site":"other.test","date_range":"30d","metrics":["pageviews"]}"#,
    )
    .expect("q");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"site\":\"shared.test\"") && body.contains("[3]"),
        "{body}"
    );
    let (status, _) = http(
        port,
        "POST",
        &format!("{path}/query"),
        &[],
        r#"{"metrics":["revenue"],"attribution":{"model":"first_touch"}}"#,
    )
    .expect("q");
    assert_eq!(status, 400);

    // A locked share asks for its password.
    let (status, form) = http(port, "GET", &locked, &[], "").expect("locked");
    assert_eq!(status, 401);
    assert!(
        form.contains("type=password") && !form.contains("data-metric"),
        "{form}"
    );
    let post = |password: &str| {
        let body = format!("password={}", password.replace(' ', "+"));
        http(
            port,
            "POST",
            &locked,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &body,
        )
        .expect("post")
    };
    assert_eq!(post("wrong password").0, 401);
    let (status, opened) = post("locked dashboard");
    assert_eq!(status, 200);
    assert!(opened.contains("data-metric=\"visitors\""), "{opened}");
    let (status, _) = http(
        port,
        "POST",
        &format!("{locked}/query"),
        &[("X-Share-Password", "locked dashboard")],
        r#"{"metrics":["visitors"]}"#,
    )
    .expect("q");
    assert_eq!(status, 200);
    assert_eq!(
        http(
            port,
            "POST",
            &format!("{locked}/query"),
            &[],
            r#"{"metrics":["visitors"]}"#
        )
        .expect("q")
        .0,
        401
    );

    // Revoked, and unknown: the same 404.
    server.kill().ok();
    server.wait().ok();
    assert!(run(&["share", "--revoke", &path, "--data-dir", dir], None)
        .status
        .success());
    let listed = text(&run(&["share", "--list", "--data-dir", dir], None).stdout);
    assert!(listed.contains("\"revoked\":true"), "{listed}");
    let port = free_port();
    let mut server = serve(dir, port);
    let gone = http(port, "GET", &path, &[], "").expect("revoked");
    let never = http(port, "GET", &format!("/share/{}", "0".repeat(32)), &[], "").expect("unknown");
    assert_eq!((gone.0, never.0), (404, 404));
    assert_eq!(gone.1, never.1);
    server.kill().ok();
    server.wait().ok();
}

#[test]
fn retention_erases_what_is_older_than_each_sites_days() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    let out = run(
        &[
            "sites",
            "add",
            "short.test",
            "--retention-days",
            "30",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(run(&["sites", "add", "long.test", "--data-dir", dir], None)
        .status
        .success());
    let out = run(
        &[
            "sites",
            "add",
            "bad.test",
            "--retention-days",
            "7",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("retention_days"),
        "{}",
        text(&out.stderr)
    );
    // Events 400, 60 and 1 day(s) old on both sites.
    let now = chrono::Utc::now();
    let mut lines = String::new();
    for site in ["short.test", "long.test"] {
        for days in [400, 60, 1] {
            let ts = (now - chrono::Duration::days(days)).format("%Y-%m-%dT%H:%M:%SZ");
            lines.push_str(&json!({"site": site, "type": "pageview", "url": format!("https://{site}/{days}"), "visitor_id": format!("v{days}"), "timestamp": ts.to_string()}).to_string());
            lines.push('\n');
        }
    }
    let out = run(&["import", "--data-dir", dir, "-"], Some(&lines));
    assert!(
        text(&out.stdout).contains("imported 6"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = run(&["retention", "--data-dir", dir], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(
        lines,
        [json!({"site": "short.test", "erased": 2})],
        "long.test keeps 730 days"
    );
    assert!(text(&out.stderr).contains("erased 2 events"));
    let pageviews = |site: &str| {
        query(
            dir,
            json!({"site": site, "date_range": "all", "metrics": ["pageviews"]}),
        )["results"][0]["metrics"][0]
            .clone()
    };
    assert_eq!(
        (pageviews("short.test"), pageviews("long.test")),
        (json!(1), json!(3))
    );
    // Run again: nothing more to erase.
    let out = run(&["retention", "--data-dir", dir], None);
    assert_eq!(text(&out.stdout), "");
}
