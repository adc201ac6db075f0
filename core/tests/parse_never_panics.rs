//! Property tests: hit and query parsing never panic, whatever the input, and every
//! refusal names a field.

use beacon_core::{Hit, Query, QueryError, ValidationContext};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "pageview",
            "goal",
            "purchase",
            "custom",
            "engagement",
            "https://a.com/x",
            "USD",
            "49.00",
            "-1",
            "2026-03-01T12:00:00Z",
            "is",
            "and",
            "not",
            "page",
            "time:day",
            "visitors"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const HIT_FIELDS: [&str; 14] = [
    "site",
    "type",
    "url",
    "referrer",
    "timestamp",
    "ip",
    "screen",
    "goal",
    "name",
    "revenue",
    "props",
    "engagement",
    "visitor_id",
    "pixel_ratio",
];

fn ctx() -> ValidationContext {
    ValidationContext::import(
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0)
            .single()
            .expect("date"),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn hit_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(hit) = Hit::from_json(&bytes) {
            let _ = hit.validate(&ctx(), Some("a.com"));
        }
    }

    #[test]
    fn hit_json_never_panics_and_errors_name_a_field(v in any_json()) {
        match Hit::from_value(&v).and_then(|h| h.validate(&ctx(), None)) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.field.is_empty() && !e.rule.is_empty()),
        }
    }

    #[test]
    fn valid_hit_with_one_field_replaced_never_panics(field in prop::sample::select(HIT_FIELDS.to_vec()), value in any_json()) {
        let mut hit = json!({"site": "a.com", "type": "purchase", "url": "https://a.com/p?x=1", "timestamp": "2026-03-01T12:00:00Z",
            "revenue": {"amount": "49.00", "currency": "USD"}, "props": {"plan": "pro"}, "engagement": {"time_ms": 10}});
        hit[field] = value;
        if let Err(e) = Hit::from_value(&hit).and_then(|h| h.validate(&ctx(), None)) {
            // A changed type may make another field required; otherwise the error names the changed field.
            prop_assert!(field == "type" || e.field.starts_with(field) || e.field == "hit", "error {e} names another field than {field}");
        }
    }

    #[test]
    fn query_json_never_panics_and_errors_name_a_field(v in any_json()) {
        if let Err(QueryError::Invalid { field, rule }) = Query::from_value(&v) {
            prop_assert!(!field.is_empty() && !rule.is_empty());
        }
    }

    #[test]
    fn query_with_one_field_replaced_never_panics(
        field in prop::sample::select(vec!["date_range", "metrics", "dimensions", "filters", "order_by", "limit", "offset", "attribution", "currency"]),
        value in any_json(),
    ) {
        let mut q = json!({"site": "a.com", "metrics": ["visitors"], "dimensions": ["page"], "filters": [["is", "page", ["/"]]]});
        q[field] = value;
        let _ = Query::from_value(&q);
    }
}
