//! Payment webhooks through the real server: secrets set with the CLI, signed
//! deliveries over a socket, revenue and attribution read back, refunds applied.

mod common;

use common::{free_port, run, serve};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// A POST with extra headers; the status and the JSON body.
fn http(port: u16, path: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = common::http(port, "POST", path, &headers, body).expect("request");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

const SECRET: &str = "whsec_e2e_secret";

/// `Stripe-Signature` for `body` signed now.
fn stripe_signature(body: &str) -> String {
    let t = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn stripe(port: u16, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    http(
        port,
        "/api/v1/webhooks/stripe/shop.test",
        &[("Stripe-Signature", stripe_signature(&body))],
        &body,
    )
}

fn attribution(port: u16) -> Vec<(Value, Value)> {
    let (status, v) = http(
        port,
        "/api/v1/query",
        &[],
        &json!({"site": "shop.test", "date_range": "day",
        "metrics": ["revenue", "conversions"], "dimensions": ["source"],
        "attribution": {"model": "first_touch"}})
        .to_string(),
    );
    assert_eq!(status, 200, "{v}");
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| (r["dimensions"].clone(), r["metrics"].clone()))
        .collect()
}

#[test]
fn signed_payments_become_revenue_credited_to_their_source() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_str().expect("path");
    assert!(run(&["sites", "add", "shop.test", "--data-dir", dir], None)
        .status
        .success());
    let out = run(
        &[
            "webhooks",
            "add",
            "shop.test",
            "stripe",
            "--secret",
            SECRET,
            "--data-dir",
            dir,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = run(
        &[
            "webhooks",
            "add",
            "shop.test",
            "paypal",
            "--secret",
            "x",
            "--data-dir",
            dir,
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    let list = run(&["webhooks", "list", "--data-dir", dir], None);
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        listed.contains("\"provider\":\"stripe\"") && !listed.contains(SECRET),
        "{listed}"
    );

    let port = free_port();
    let mut server = serve(dir, port);
    // The visitor arrives from Google, then pays through Stripe Checkout.
    let hit = json!({"site": "shop.test", "type": "pageview", "url": "https://shop.test/pricing",
        "referrer": "https://www.google.com/", "visitor_id": "visitor-1"});
    let (status, v) = http(
        port,
        "/api/event",
        &[("User-Agent", "Mozilla/5.0 Firefox/121.0".into())],
        &hit.to_string(),
    );
    assert_eq!(status, 202, "{v}");
    // Provider times have whole seconds: the payment is a second after the visit.
    let paid_at = chrono::Utc::now().timestamp() + 1;
    let checkout = json!({"id": "evt_checkout", "type": "checkout.session.completed", "created": paid_at,
        "data": {"object": {"id": "cs_1", "payment_status": "paid", "amount_total": 4900, "currency": "usd",
        "payment_intent": "pi_1", "client_reference_id": "visitor-1"}}});
    assert_eq!(stripe(port, &checkout), (200, json!({"stored": 1})));
    // A redelivery is acknowledged and not stored again.
    assert_eq!(
        stripe(port, &checkout),
        (200, json!({"stored": 0, "duplicate": true}))
    );
    // The payment intent of the same order: a new event id, but the same order.
    let intent = json!({"id": "evt_intent", "type": "payment_intent.succeeded", "created": paid_at,
        "data": {"object": {"id": "pi_1", "amount": 4900, "amount_received": 4900, "currency": "usd",
        "metadata": {"beacon_visitor_id": "visitor-1"}}}});
    // Stored once: the second notification reports nothing stored (issue 14, defect 7).
    assert_eq!(stripe(port, &intent), (200, json!({"stored": 0})));
    assert_eq!(
        attribution(port),
        vec![(json!(["Google"]), json!([49.0, 1.0]))]
    );

    // Tampered, unsigned, stale and misrouted deliveries are refused; nothing is stored.
    let body = checkout.to_string();
    let sig = stripe_signature(&body);
    let tampered = body.replace("4900", "4901");
    let (status, v) = http(
        port,
        "/api/v1/webhooks/stripe/shop.test",
        &[("Stripe-Signature", sig.clone())],
        &tampered,
    );
    assert_eq!(status, 401, "{v}");
    assert!(
        v["error"].as_str().expect("error").contains("signature"),
        "{v}"
    );
    let (status, v) = http(port, "/api/v1/webhooks/stripe/shop.test", &[], &body);
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("header Stripe-Signature is missing"))
    );
    let old = format!("t=1000000000,v1={}", sig.split("v1=").nth(1).expect("v1"));
    assert_eq!(
        http(
            port,
            "/api/v1/webhooks/stripe/shop.test",
            &[("Stripe-Signature", old)],
            &body
        )
        .0,
        401
    );
    assert_eq!(
        http(port, "/api/v1/webhooks/paypal/shop.test", &[], &body).0,
        404
    );
    assert_eq!(
        http(port, "/api/v1/webhooks/polar/shop.test", &[], &body).0,
        404,
        "no polar secret set"
    );
    assert_eq!(
        http(port, "/api/v1/webhooks/stripe/other.test", &[], &body).0,
        404
    );

    // A partial refund of 10.00 reverses that much of the credit.
    let refund = json!({"id": "evt_refund", "type": "charge.refunded", "created": paid_at + 60,
        "data": {"object": {"id": "ch_1", "payment_intent": "pi_1", "amount": 4900, "amount_refunded": 1000,
        "currency": "usd", "refunds": {"data": [{"id": "re_1", "amount": 1000}]}}}});
    assert_eq!(stripe(port, &refund), (200, json!({"stored": 1})));
    assert_eq!(
        attribution(port),
        vec![(json!(["Google"]), json!([39.0, 1.0]))]
    );
    // The plain revenue metric counts purchases (contract section 3).
    let (_, v) = http(
        port,
        "/api/v1/query",
        &[],
        r#"{"site": "shop.test", "date_range": "day", "metrics": ["revenue", "visits"]}"#,
    );
    assert_eq!(v["results"][0]["metrics"], json!([49.0, 1]), "{v}");

    // Goals over the same data.
    let (status, v) = http(
        port,
        "/api/v1/goals",
        &[],
        r#"{"site": "shop.test", "date_range": "day",
        "goals": [{"name": "Pricing", "page": "/pri*", "value": {"amount": "1.50", "currency": "USD"}}]}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["goals"][0]["conversions"], 1);
    assert_eq!(v["goals"][0]["conversion_rate"], 100.0);
    assert_eq!(v["goals"][0]["value"]["amount"], "1.50");
    let (status, v) = http(
        port,
        "/api/v1/goals",
        &[],
        r#"{"site": "shop.test", "goals": [{"page": "/", "event": "x"}]}"#,
    );
    assert_eq!(
        (
            status,
            v["error"].as_str().map(|e| e.starts_with("goals[0]:"))
        ),
        (400, Some(true))
    );

    // After a restart the stored purchase and refund are still there.
    server.kill().ok();
    server.wait().ok();
    let mut server = serve(dir, port);
    assert_eq!(
        attribution(port),
        vec![(json!(["Google"]), json!([39.0, 1.0]))]
    );
    server.kill().ok();
    server.wait().ok();
}
