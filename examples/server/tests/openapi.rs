//! The OpenAPI document against the running router: every documented operation
//! is served (no path or method of the document falls through to "no such
//! endpoint" or 405), `beacon openapi` prints the same document, and the
//! credential rules it states are the ones the server applies.

mod common;

use common::{free_port, run, serve, text};
use serde_json::Value;

/// The fallback's message for a path no route serves.
const NO_ROUTE: &str = "no such endpoint";

#[test]
fn every_documented_operation_is_served_and_the_document_is_3_1() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    let port = free_port();
    let mut server = serve(dir, port);
    let (status, body) = common::http(port, "GET", "/api/openapi.json", &[], "").expect("request");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).expect("json");
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let printed = run(&["openapi"], None);
    assert!(printed.status.success());
    let printed: Value = serde_json::from_str(&text(&printed.stdout)).expect("json");
    assert_eq!(
        printed, doc,
        "`beacon openapi` prints what the server serves"
    );

    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 18, "{}", paths.len());
    let mut checked = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let url = path
                .replace("{provider}", "stripe")
                .replace("{site}", "nosuch.test")
                .replace("{slug}", "0123456789abcdef0123456789abcdef")
                .replace("{id}", "nothing");
            let url = if method == "get" || method == "delete" {
                format!("{url}?site=nosuch.test")
            } else {
                url
            };
            let m = method.to_ascii_uppercase();
            // No credential: the rules are checked below, here only that a
            // handler answers.
            let (status, body) =
                common::http(port, &m, &url, &[("Authorization", "")], "{}").expect("request");
            assert_ne!(status, 405, "{m} {url}: the method is not routed");
            assert!(!body.contains(NO_ROUTE), "{m} {url}: not routed: {body}");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{m} {path} lists its responses"
            );
            // Operations that need a credential say so, and answer 401 without.
            let secured = op.get("security").is_some();
            let needs = path.starts_with("/api/v1/")
                && !path.starts_with("/api/v1/webhooks/")
                && !path.starts_with("/api/v1/log");
            assert_eq!(secured, needs, "{m} {path}: security");
            if needs {
                assert_eq!(status, 401, "{m} {url}: {body}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 23, "{checked} operations");
    // And a path the document lacks is the fallback.
    let (status, body) =
        common::http(port, "GET", "/api/v1/nothing-here", &[], "").expect("request");
    assert_eq!(status, 404);
    assert!(body.contains(NO_ROUTE), "{body}");
    common::stop(&mut server);
}
