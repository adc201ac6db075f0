//! Webhook signatures against the known-answer vectors in `shared/data/webhooks/kat`,
//! and the shared fixtures parsed to their amounts and ids.

use beacon_attribution::{
    parse_payments, Headers, PaymentKind, Provider, ReplayGuard, WebhookError, WebhookVerifier,
};
use beacon_core::{Currency, EventKind, Money};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use std::path::PathBuf;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/webhooks")
}

fn kat() -> Value {
    let text = std::fs::read_to_string(data().join("kat/known-answer-vectors.json"))
        .expect("known-answer vectors in ../shared/data");
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn raw(rel: &str) -> Vec<u8> {
    std::fs::read(data().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn unix(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).unwrap()
}

fn usd(minor: i64) -> Option<Money> {
    Some(Money {
        minor,
        currency: Currency::USD,
    })
}

/// Flipping one bit of the body at its start, middle and end must fail verification.
fn one_byte_changes_fail(v: &WebhookVerifier, h: &Headers, body: &[u8], now: DateTime<Utc>) {
    for pos in [0, body.len() / 2, body.len() - 1] {
        let mut b = body.to_vec();
        b[pos] ^= 0x01;
        assert_eq!(
            v.verify(h, &b, now),
            Err(WebhookError::BadSignature(v.provider())),
            "byte {pos} changed"
        );
    }
    let mut b = body.to_vec();
    b.push(b' ');
    assert!(v.verify(h, &b, now).is_err(), "a space appended");
}

#[test]
fn stripe_vector_verifies_and_every_tampering_fails() {
    let k = &kat()["stripe"];
    let body = raw(k["body_file"].as_str().unwrap());
    assert_eq!(body.len() as u64, k["body_len"].as_u64().unwrap());
    let ts = k["timestamp"].as_i64().unwrap();
    let v = WebhookVerifier::new(Provider::Stripe, k["secret"].as_str().unwrap());
    let h = Headers::from_pairs([("stripe-signature", k["header_value"].as_str().unwrap())]);
    assert_eq!(v.verify(&h, &body, unix(ts + 10)), Ok(()));
    one_byte_changes_fail(&v, &h, &body, unix(ts));
    // The tolerance: 300 s old passes, 301 s fails (and only after the MAC matched).
    assert_eq!(v.verify(&h, &body, unix(ts + 300)), Ok(()));
    assert_eq!(
        v.verify(&h, &body, unix(ts + 301)),
        Err(WebhookError::StaleTimestamp {
            timestamp: ts,
            tolerance_secs: 300
        })
    );
    // Wrong secret; the secret must not be base64-decoded or stripped of whsec_.
    let wrong = WebhookVerifier::new(Provider::Stripe, "test_secret");
    assert!(matches!(
        wrong.verify(&h, &body, unix(ts)),
        Err(WebhookError::BadSignature(_))
    ));
    // A rolled secret: any of several v1 values may match; v0 is ignored.
    let sig = k["header_value"]
        .as_str()
        .unwrap()
        .split("v1=")
        .nth(1)
        .unwrap();
    let rolled = format!("t={ts},v0={sig},v1={},v1={sig}", "ab".repeat(32));
    let h2 = Headers::from_pairs([("Stripe-Signature", rolled.as_str())]);
    assert_eq!(v.verify(&h2, &body, unix(ts)), Ok(()));
    let only_v0 = format!("t={ts},v0={sig}");
    let h3 = Headers::from_pairs([("Stripe-Signature", only_v0.as_str())]);
    assert!(matches!(
        v.verify(&h3, &body, unix(ts)),
        Err(WebhookError::MalformedHeader { .. })
    ));
    // A different timestamp in the header breaks the MAC.
    let moved = k["header_value"]
        .as_str()
        .unwrap()
        .replace(&ts.to_string(), &(ts + 1).to_string());
    let h4 = Headers::from_pairs([("Stripe-Signature", moved.as_str())]);
    assert!(matches!(
        v.verify(&h4, &body, unix(ts)),
        Err(WebhookError::BadSignature(_))
    ));
    assert_eq!(
        v.verify(&Headers::default(), &body, unix(ts)),
        Err(WebhookError::MissingHeader("Stripe-Signature"))
    );
}

#[test]
fn standard_webhooks_upstream_vector_verifies_with_the_polar_verifier() {
    let k = &kat()["standard_webhooks_upstream_vector"];
    let ts: i64 = k["webhook-timestamp"].as_str().unwrap().parse().unwrap();
    let h = Headers::from_pairs([
        ("webhook-id", k["webhook-id"].as_str().unwrap()),
        (
            "webhook-timestamp",
            k["webhook-timestamp"].as_str().unwrap(),
        ),
        (
            "webhook-signature",
            k["expected_webhook-signature"].as_str().unwrap(),
        ),
    ]);
    let body = k["body"].as_str().unwrap().as_bytes();
    let v = WebhookVerifier::new(Provider::Polar, k["secret"].as_str().unwrap());
    assert_eq!(v.verify(&h, body, unix(ts)), Ok(()));
    one_byte_changes_fail(&v, &h, body, unix(ts));
    // Both directions of the tolerance.
    assert!(matches!(
        v.verify(&h, body, unix(ts + 301)),
        Err(WebhookError::StaleTimestamp { .. })
    ));
    assert!(matches!(
        v.verify(&h, body, unix(ts - 301)),
        Err(WebhookError::StaleTimestamp { .. })
    ));
}

#[test]
fn polar_vectors_verify_for_legacy_and_whsec_secrets() {
    let k = &kat()["polar"];
    let ts: i64 = k["webhook-timestamp"].as_str().unwrap().parse().unwrap();
    let body = k["body"].as_str().unwrap().as_bytes();
    for case in ["case_legacy_polar_secret", "case_whsec_secret"] {
        let c = &k[case];
        let sig = c["webhook-signature"].as_str().unwrap();
        // Several signatures, space-separated, with another version among them.
        let list = format!("v1a,AAAA v1,{} {sig}", "A".repeat(43) + "=");
        for header in [sig, list.as_str()] {
            let h = Headers::from_pairs([
                ("webhook-id", k["webhook-id"].as_str().unwrap()),
                (
                    "webhook-timestamp",
                    k["webhook-timestamp"].as_str().unwrap(),
                ),
                ("webhook-signature", header),
            ]);
            let v = WebhookVerifier::new(Provider::Polar, c["secret"].as_str().unwrap());
            assert_eq!(v.verify(&h, body, unix(ts)), Ok(()), "{case} {header}");
            one_byte_changes_fail(&v, &h, body, unix(ts));
            // The id is signed too.
            let h2 = Headers::from_pairs([
                ("webhook-id", "msg_other"),
                (
                    "webhook-timestamp",
                    k["webhook-timestamp"].as_str().unwrap(),
                ),
                ("webhook-signature", header),
            ]);
            assert!(v.verify(&h2, body, unix(ts)).is_err(), "{case}: id changed");
        }
    }
}

#[test]
fn lemonsqueezy_and_shopify_vectors_verify() {
    let k = kat();
    for (name, provider, header) in [
        ("lemonsqueezy", Provider::LemonSqueezy, "X-Signature"),
        ("shopify", Provider::Shopify, "X-Shopify-Hmac-Sha256"),
    ] {
        let c = &k[name];
        let body = raw(c["body_file"].as_str().unwrap());
        assert_eq!(body.len() as u64, c["body_len"].as_u64().unwrap());
        let v = WebhookVerifier::new(provider, c["secret"].as_str().unwrap());
        let h = Headers::from_pairs([(header, c["header_value"].as_str().unwrap())]);
        let now = unix(1_700_000_000);
        assert_eq!(v.verify(&h, &body, now), Ok(()), "{name}");
        one_byte_changes_fail(&v, &h, &body, now);
        let wrong = WebhookVerifier::new(provider, "another secret");
        assert!(
            wrong.verify(&h, &body, now).is_err(),
            "{name}: wrong secret"
        );
    }
    // Shopify's newer header name is checked first.
    let c = &k["shopify"];
    let body = raw(c["body_file"].as_str().unwrap());
    let v = WebhookVerifier::new(Provider::Shopify, c["secret"].as_str().unwrap());
    let h = Headers::from_pairs([("shopify-hmac-sha256", c["header_value"].as_str().unwrap())]);
    assert_eq!(v.verify(&h, &body, unix(0)), Ok(()));
    let bad = Headers::from_pairs([("X-Shopify-Hmac-Sha256", "not base64!")]);
    assert!(matches!(
        v.verify(&bad, &body, unix(0)),
        Err(WebhookError::MalformedHeader { .. })
    ));
}

#[test]
fn replay_guard_refuses_a_second_delivery_within_retention() {
    let g = ReplayGuard::new(3600, 3);
    let t = unix(1_700_000_000);
    assert_eq!(g.check(Provider::Stripe, "evt_1", t), Ok(()));
    assert!(matches!(
        g.check(Provider::Stripe, "evt_1", t),
        Err(WebhookError::Replayed { .. })
    ));
    // Another provider's id space.
    assert_eq!(g.check(Provider::Polar, "evt_1", t), Ok(()));
    // Past retention the id is forgotten; the guard stays bounded.
    assert_eq!(g.check(Provider::Stripe, "evt_2", t), Ok(()));
    assert_eq!(
        g.check(
            Provider::Stripe,
            "evt_1",
            t + chrono::Duration::seconds(3601)
        ),
        Ok(())
    );
    for i in 0..100 {
        g.check(Provider::Shopify, &i.to_string(), t).unwrap();
    }
}

fn stripe_event(kind: &str, file: &str) -> Vec<u8> {
    let data: Value = serde_json::from_slice(&raw(file)).unwrap();
    let data = if data.get("object").is_some_and(Value::is_object) {
        data
    } else {
        json!({ "object": data })
    };
    serde_json::to_vec(
        &json!({"id": format!("evt_{kind}"), "object": "event", "type": kind,
        "created": 1_700_000_000, "data": data}),
    )
    .unwrap()
}

#[test]
fn stripe_fixtures_parse_to_purchases_and_refunds() {
    let none = Headers::default();
    let body = stripe_event(
        "checkout.session.completed",
        "stripe/pay-rails/checkout.session.completed.json",
    );
    let p = parse_payments(Provider::Stripe, &none, &body).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].kind, p[0].amount, p[0].event_id.as_str()),
        (
            PaymentKind::Purchase,
            usd(1900),
            "evt_checkout.session.completed"
        )
    );
    assert_eq!(p[0].customer_id.as_deref(), Some("cus_M5wW9RPFk9xNZ5"));
    assert_eq!(p[0].timestamp, Some(unix(1_700_000_000)));

    let p = parse_payments(
        Provider::Stripe,
        &none,
        &stripe_event("charge.refunded", "stripe/pay-rails/charge.refunded.json"),
    )
    .unwrap();
    assert_eq!(
        (
            p[0].kind,
            p[0].order_id.as_str(),
            p[0].amount,
            p[0].refunded_total
        ),
        (PaymentKind::Refund, "pm_1234", usd(500), usd(500))
    );
    assert_eq!(
        p[0].refund_id.as_deref(),
        Some("re_3LQOJoKXBGcbgpbZ10i9Mg75")
    );

    let p = parse_payments(
        Provider::Stripe,
        &none,
        &stripe_event("invoice.paid", "stripe/pay-rails/invoice.json"),
    )
    .unwrap();
    assert_eq!(
        (p[0].order_id.as_str(), p[0].amount),
        ("in_1RFFohKXBGcbgpbZk9MxzDMc", usd(24512))
    );
    // Types without money for us: nothing, not an error.
    let p = parse_payments(
        Provider::Stripe,
        &none,
        &raw("stripe/pay-rails/account.updated.json"),
    )
    .unwrap();
    assert!(p.is_empty());
}

#[test]
fn stripe_links_the_visitor_and_one_order_is_one_purchase() {
    let none = Headers::default();
    let checkout = json!({"id": "evt_1", "type": "checkout.session.completed", "created": 1_700_000_000,
        "data": {"object": {"id": "cs_1", "payment_status": "paid", "amount_total": 4900, "currency": "eur",
        "payment_intent": "pi_1", "client_reference_id": "visitor-a",
        "metadata": {"beacon_session_id": "123"}}}});
    let intent = json!({"id": "evt_2", "type": "payment_intent.succeeded", "created": 1_700_000_001,
        "data": {"object": {"id": "pi_1", "amount": 4900, "amount_received": 4900, "currency": "eur",
        "metadata": {"beacon_visitor_id": "visitor-a"}}}});
    let a = parse_payments(Provider::Stripe, &none, checkout.to_string().as_bytes()).unwrap();
    let b = parse_payments(Provider::Stripe, &none, intent.to_string().as_bytes()).unwrap();
    assert_eq!(a[0].visitor_id.as_deref(), Some("visitor-a"));
    assert_eq!(a[0].session_id.as_deref(), Some("123"));
    assert_eq!(
        a[0].amount,
        Some(Money {
            minor: 4900,
            currency: Currency::EUR
        })
    );
    let (ea, eb) = (
        a[0].to_event("shop.com", unix(0)),
        b[0].to_event("shop.com", unix(0)),
    );
    assert_eq!(ea.id, eb.id, "the same order gives the same event id");
    assert_eq!(ea.kind, EventKind::Purchase);
    assert_eq!(ea.commerce.order_id.as_deref(), Some("pi_1"));
    assert_eq!(ea.identity.visitor_id, "visitor-a");
    assert_eq!(
        ea.props.get("payment_provider").map(String::as_str),
        Some("stripe")
    );
    // An unpaid (asynchronous) checkout is not a purchase yet.
    let mut unpaid = checkout.clone();
    unpaid["data"]["object"]["payment_status"] = json!("unpaid");
    assert!(
        parse_payments(Provider::Stripe, &none, unpaid.to_string().as_bytes())
            .unwrap()
            .is_empty()
    );
    // Bad fields are named.
    let mut bad = checkout;
    bad["data"]["object"]["amount_total"] = json!("49.00");
    assert_eq!(
        parse_payments(Provider::Stripe, &none, bad.to_string().as_bytes()),
        Err(WebhookError::BadField {
            field: "amount_total".into(),
            reason: "must be an integer amount in minor units".into()
        })
    );
    bad["data"]["object"]["amount_total"] = json!(4900);
    bad["data"]["object"]["currency"] = json!("zzz");
    assert!(matches!(
        parse_payments(Provider::Stripe, &none, bad.to_string().as_bytes()),
        Err(WebhookError::BadField { field, .. }) if field == "currency"
    ));
    assert!(matches!(
        parse_payments(Provider::Stripe, &none, b"{not json"),
        Err(WebhookError::BadJson(_))
    ));
}

#[test]
fn lemonsqueezy_fixtures_parse() {
    let none = Headers::default();
    let p = parse_payments(
        Provider::LemonSqueezy,
        &none,
        &raw("lemonsqueezy/pay-rails/order_created.json"),
    )
    .unwrap();
    assert_eq!(
        (
            p[0].kind,
            p[0].order_id.as_str(),
            p[0].amount,
            p[0].product.as_deref()
        ),
        (PaymentKind::Purchase, "1", usd(5899), Some("Product One"))
    );
    assert_eq!(
        p[0].timestamp,
        Some(Utc.with_ymd_and_hms(2023, 1, 17, 12, 26, 23).unwrap())
    );
    // The initial subscription payment is the order above, not a second purchase.
    let p = parse_payments(
        Provider::LemonSqueezy,
        &none,
        &raw("lemonsqueezy/pay-rails/subscription_payment_success.json"),
    )
    .unwrap();
    assert!(p.is_empty());
    let p = parse_payments(
        Provider::LemonSqueezy,
        &none,
        &raw("lemonsqueezy/pay-rails/subscription_payment_refunded.json"),
    )
    .unwrap();
    assert_eq!(
        (p[0].kind, p[0].order_id.as_str(), p[0].refunded_total),
        (PaymentKind::Refund, "subscription-invoice:1", usd(999))
    );
    // custom_data links the visitor.
    let mut body: Value =
        serde_json::from_slice(&raw("lemonsqueezy/pay-rails/order_created.json")).unwrap();
    body["meta"]["custom_data"] = json!({"beacon_visitor_id": "v-ls"});
    let p = parse_payments(Provider::LemonSqueezy, &none, body.to_string().as_bytes()).unwrap();
    assert_eq!(p[0].visitor_id.as_deref(), Some("v-ls"));
}

#[test]
fn shopify_fixture_parses_and_refunds_sum_their_transactions() {
    let h = Headers::from_pairs([
        ("X-Shopify-Topic", "orders/paid"),
        ("X-Shopify-Webhook-Id", "wh-1"),
    ]);
    let p = parse_payments(
        Provider::Shopify,
        &h,
        &raw("shopify/shopify_api-2021-pre-rewrite.order.json"),
    )
    .unwrap();
    assert_eq!(
        (
            p[0].kind,
            p[0].order_id.as_str(),
            p[0].amount,
            p[0].event_id.as_str()
        ),
        (PaymentKind::Purchase, "450789469", usd(40994), "wh-1")
    );
    let refund = json!({"id": 9, "order_id": 450789469, "created_at": "2026-03-02T10:00:00-05:00",
        "transactions": [{"kind": "refund", "status": "success", "amount": "10.00", "currency": "USD"},
                         {"kind": "refund", "status": "success", "amount": "0.50", "currency": "USD"},
                         {"kind": "refund", "status": "failure", "amount": "99.00", "currency": "USD"},
                         {"kind": "sale", "amount": "1.00", "currency": "USD"}]});
    let h = Headers::from_pairs([
        ("shopify-topic", "refunds/create"),
        ("shopify-event-id", "e-2"),
    ]);
    let p = parse_payments(Provider::Shopify, &h, refund.to_string().as_bytes()).unwrap();
    assert_eq!(
        (p[0].kind, p[0].order_id.as_str(), p[0].amount),
        (PaymentKind::Refund, "450789469", usd(1050))
    );
    assert_eq!(
        p[0].timestamp,
        Some(Utc.with_ymd_and_hms(2026, 3, 2, 15, 0, 0).unwrap())
    );
    // A restock-only refund moves no money.
    let restock = json!({"id": 10, "order_id": 1, "transactions": []});
    assert!(
        parse_payments(Provider::Shopify, &h, restock.to_string().as_bytes())
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        parse_payments(Provider::Shopify, &Headers::default(), b"{}"),
        Err(WebhookError::MissingHeader("X-Shopify-Topic"))
    );
}

#[test]
fn polar_order_paid_and_refunded_follow_the_schema() {
    // No real Polar payload exists in shared data: the body is built with every field
    // the schema requires of an Order, and checked against that list.
    let schema: Value = serde_json::from_slice(&raw("polar/webhook-schemas-subset.json")).unwrap();
    let required: Vec<&str> = schema["components"]["schemas"]["Order"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut order = serde_json::Map::new();
    for f in &required {
        order.insert((*f).to_owned(), Value::Null);
    }
    for (k, v) in [
        ("id", json!("ord_1")),
        ("status", json!("paid")),
        ("paid", json!(true)),
        ("total_amount", json!(2999)),
        ("net_amount", json!(2500)),
        ("refunded_amount", json!(0)),
        ("currency", json!("usd")),
        ("customer_id", json!("cust_1")),
        ("metadata", json!({"beacon_visitor_id": "v-polar"})),
        ("product", json!({"name": "Pro plan"})),
    ] {
        order.insert(k.to_owned(), v);
    }
    assert!(required.iter().all(|f| order.contains_key(*f)));
    let body = json!({"type": "order.paid", "timestamp": "2026-03-01T12:00:00Z", "data": order});
    let h = Headers::from_pairs([("webhook-id", "msg_1")]);
    let p = parse_payments(Provider::Polar, &h, body.to_string().as_bytes()).unwrap();
    assert_eq!(
        (
            p[0].kind,
            p[0].order_id.as_str(),
            p[0].amount,
            p[0].visitor_id.as_deref(),
            p[0].product.as_deref()
        ),
        (
            PaymentKind::Purchase,
            "ord_1",
            usd(2999),
            Some("v-polar"),
            Some("Pro plan")
        )
    );
    let mut refunded = body.clone();
    refunded["type"] = json!("order.refunded");
    refunded["data"]["refunded_amount"] = json!(1000);
    let p = parse_payments(Provider::Polar, &h, refunded.to_string().as_bytes()).unwrap();
    assert_eq!(
        (p[0].kind, p[0].refunded_total),
        (PaymentKind::Refund, usd(1000))
    );
    let e = p[0].to_event("a.com", unix(0));
    assert_eq!(e.kind, EventKind::Refund);
    assert_eq!(
        e.timestamp,
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    );
}
