//! Revenue attribution with hand-computed answers, and its invariants.

use beacon_attribution::attribute_events;
use beacon_core::{
    Analytics, Currency, Event, EventKind, EventStore, MemoryStore, Money, Query, Site,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use proptest::prelude::*;

fn at(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .expect("time")
        .and_utc()
}

fn ev(
    n: u128,
    visitor: &str,
    time: &str,
    source: Option<&str>,
    revenue: Option<(&str, &str)>,
) -> Event {
    let mut e = Event {
        id: uuid::Uuid::from_u128(n),
        site: "shop.test".into(),
        timestamp: at(time),
        ..Event::default()
    };
    e.identity.visitor_id = visitor.into();
    e.page.path = "/".into();
    e.acquisition.source = source.map(Into::into);
    if let Some((amount, currency)) = revenue {
        e.kind = EventKind::Purchase;
        e.name = Some("purchase".into());
        e.commerce.revenue = Some(
            Money::parse(amount, Currency::parse(currency).expect("currency")).expect("amount"),
        );
    }
    e
}

/// v1: Google on Mar 1, direct on Mar 5 and buys 100.00 in that session.
/// v2: Newsletter on Mar 10 and buys 50.00 in that session; also 20 EUR, never summed
/// into USD revenue, though it is a conversion (2 for Newsletter).
fn fixture() -> Vec<Event> {
    vec![
        ev(1, "v1", "2026-03-01T10:00:00", Some("Google"), None),
        ev(2, "v1", "2026-03-05T10:00:00", None, None),
        ev(
            3,
            "v1",
            "2026-03-05T10:10:00",
            None,
            Some(("100.00", "USD")),
        ),
        ev(4, "v2", "2026-03-10T09:00:00", Some("Newsletter"), None),
        ev(
            5,
            "v2",
            "2026-03-10T09:05:00",
            Some("Newsletter"),
            Some(("50.00", "USD")),
        ),
        ev(
            6,
            "v2",
            "2026-03-10T09:06:00",
            Some("Newsletter"),
            Some(("20.00", "EUR")),
        ),
    ]
}

fn run(model: &str, extra: &str) -> Vec<(Option<String>, f64, f64)> {
    let q = Query::from_json(&format!(
        r#"{{"site":"shop.test","date_range":["2026-03-01","2026-03-31"],"metrics":["revenue","conversions"],"dimensions":["source"],
            "attribution":{{"model":"{model}"{extra}}}}}"#
    ))
    .expect("query");
    let r = attribute_events(
        &fixture(),
        &Site::new("shop.test"),
        &q,
        at("2026-04-01T00:00:00"),
    )
    .expect("attribution");
    let mut rows: Vec<(Option<String>, f64, f64)> = r
        .rows
        .iter()
        .map(|row| {
            (
                row.dimensions[0].clone(),
                row.metrics[0].as_f64(),
                row.metrics[1].as_f64(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn g(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[test]
fn every_model_by_hand() {
    // Sorted by source: None (direct) first, then Google, Newsletter.
    assert_eq!(
        run("first_touch", ""),
        vec![(g("Google"), 100.0, 1.0), (g("Newsletter"), 50.0, 2.0)]
    );
    assert_eq!(
        run("last_touch", ""),
        vec![(None, 100.0, 1.0), (g("Newsletter"), 50.0, 2.0)]
    );
    assert_eq!(
        run("last_non_direct", ""),
        vec![(g("Google"), 100.0, 1.0), (g("Newsletter"), 50.0, 2.0)]
    );
    assert_eq!(
        run("linear", ""),
        vec![
            (None, 50.0, 0.5),
            (g("Google"), 50.0, 0.5),
            (g("Newsletter"), 50.0, 2.0)
        ]
    );
    assert_eq!(
        run("position_based", ""),
        vec![
            (None, 50.0, 0.5),
            (g("Google"), 50.0, 0.5),
            (g("Newsletter"), 50.0, 2.0)
        ]
    );
    // Time decay, half-life 4 days: ages 4 d and 0 d -> weights 1/2 and 1 -> 1/3 and 2/3.
    assert_eq!(
        run("time_decay", r#","half_life_days":4"#),
        vec![
            (None, 66.67, 0.67),
            (g("Google"), 33.33, 0.33),
            (g("Newsletter"), 50.0, 2.0)
        ]
    );
    // A 2-day window leaves Mar 1 out: v1's purchase is all direct.
    assert_eq!(
        run("first_touch", r#","window_days":2"#),
        vec![(None, 100.0, 1.0), (g("Newsletter"), 50.0, 2.0)]
    );
}

#[tokio::test]
async fn through_a_store_and_errors() {
    let store = MemoryStore::new();
    store.put_site_sync(Site::new("shop.test")).expect("site");
    store.append(&fixture()).await.expect("append");
    let q = Query::from_json(r#"{"site":"shop.test","date_range":["2026-03-01","2026-03-31"],"metrics":["revenue"],"dimensions":["source"],"attribution":{"model":"first_touch"},"currency":"EUR"}"#).expect("query");
    let r = Analytics::new(&store, &store)
        .query(&q, at("2026-04-01T00:00:00"))
        .await
        .expect("runs");
    assert_eq!(r.rows.len(), 1);
    assert_eq!(
        (
            r.rows[0].dimensions[0].as_deref(),
            r.rows[0].metrics[0].as_f64()
        ),
        (Some("Newsletter"), 20.0),
        "EUR only when asked"
    );
    // A filter on a session-level dimension keeps the conversions whose session matches.
    let q = Query::from_json(r#"{"site":"shop.test","date_range":["2026-03-01","2026-03-31"],"metrics":["revenue","conversions"],"dimensions":["source"],"filters":[["is","source",["Newsletter"]]],"attribution":{"model":"linear"}}"#).expect("query");
    let r = Analytics::new(&store, &store)
        .query(&q, at("2026-04-01T00:00:00"))
        .await
        .expect("runs");
    assert_eq!(r.rows.len(), 1);
    assert_eq!(
        (r.rows[0].metrics[0].as_f64(), r.rows[0].metrics[1].as_f64()),
        (50.0, 2.0)
    );
}

fn refund(
    n: u128,
    visitor: &str,
    time: &str,
    order: &str,
    amount: Option<&str>,
    total: Option<&str>,
) -> Event {
    let mut e = ev(n, visitor, time, None, None);
    e.kind = EventKind::Refund;
    e.commerce.order_id = Some(order.into());
    let usd = |a: &str| Money::parse(a, Currency::USD).expect("amount");
    e.commerce.revenue = amount.map(usd);
    e.commerce.refunded_total = total.map(usd);
    e
}

fn rows(events: &[Event], query: &str) -> Vec<(Option<String>, Vec<f64>)> {
    let q = Query::from_json(query).expect("query");
    let mut out: Vec<(Option<String>, Vec<f64>)> = attribute_events(
        events,
        &Site::new("shop.test"),
        &q,
        at("2026-04-01T00:00:00"),
    )
    .expect("attribution")
    .rows
    .iter()
    .map(|r| {
        (
            r.dimensions.first().cloned().flatten(),
            r.metrics.iter().map(|m| m.as_f64()).collect(),
        )
    })
    .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A visitor with only direct sessions: last-non-direct falls back to the latest
/// touch, so every model credits direct in full.
#[test]
fn direct_only_visitor() {
    let events = vec![
        ev(1, "d", "2026-03-02T10:00:00", None, None),
        ev(2, "d", "2026-03-03T10:00:00", None, Some(("10.00", "USD"))),
    ];
    for model in [
        "first_touch",
        "last_touch",
        "last_non_direct",
        "linear",
        "time_decay",
        "position_based",
    ] {
        let q = LINEAR.replace("linear", model);
        assert_eq!(rows(&events, &q), vec![(None, vec![10.0, 1.0])], "{model}");
    }
}

const LINEAR: &str = r#"{"site":"shop.test","date_range":["2026-03-01","2026-03-31"],"metrics":["revenue","conversions"],"dimensions":["source"],"attribution":{"model":"linear"}}"#;

/// v1's 100.00 order o1 (Google then direct, linear 50/50) is refunded 30.00 in two
/// partial refunds (10 + 20), one after the date range: 70.00 is credited, 35/35, and it
/// still counts as a conversion. v2's 50.00 order o2 is refunded in full (a refund with
/// no amount): no revenue and no conversion. A refund for an unknown order changes nothing.
#[test]
fn refunds_reverse_the_credit_of_their_order() {
    let mut events = fixture();
    events[2].commerce.order_id = Some("o1".into());
    events[4].commerce.order_id = Some("o2".into());
    events.push(refund(
        10,
        "v1",
        "2026-03-06T10:00:00",
        "o1",
        Some("10.00"),
        None,
    ));
    events.push(refund(
        11,
        "v1",
        "2026-04-20T10:00:00",
        "o1",
        Some("20.00"),
        None,
    ));
    events.push(refund(12, "v2", "2026-03-11T10:00:00", "o2", None, None));
    events.push(refund(
        13,
        "v9",
        "2026-03-11T10:00:00",
        "o-unknown",
        Some("5.00"),
        None,
    ));
    assert_eq!(
        rows(&events, LINEAR),
        vec![
            (None, vec![35.0, 0.5]),
            (g("Google"), vec![35.0, 0.5]),
            // The EUR order is still a conversion.
            (g("Newsletter"), vec![0.0, 1.0]),
        ]
    );
    // Running totals reported by a provider (Stripe's amount_refunded): a redelivered
    // or repeated total is not counted twice; the largest total wins, capped at the order.
    let mut events = fixture();
    events[2].commerce.order_id = Some("o1".into());
    events.push(refund(
        10,
        "v1",
        "2026-03-06T10:00:00",
        "o1",
        Some("40.00"),
        Some("40.00"),
    ));
    events.push(refund(
        11,
        "v1",
        "2026-03-07T10:00:00",
        "o1",
        Some("20.00"),
        Some("60.00"),
    ));
    events.push(refund(
        12,
        "v1",
        "2026-03-07T10:00:00",
        "o1",
        Some("20.00"),
        Some("60.00"),
    ));
    assert_eq!(
        rows(&events, LINEAR)[..2],
        [(None, vec![20.0, 0.5]), (g("Google"), vec![20.0, 0.5])]
    );
    events.push(refund(
        13,
        "v1",
        "2026-03-08T10:00:00",
        "o1",
        Some("900.00"),
        Some("900.00"),
    ));
    assert_eq!(
        rows(&events, LINEAR)[0].0,
        g("Newsletter"),
        "fully refunded: no row left for v1"
    );
}

/// With a rate table the EUR order joins USD revenue: 20.00 EUR at 1.10 = 22.00 USD;
/// JPY (no minor unit) at 0.0067: 1500 JPY = 10.05 USD. Without a rate JPY adds nothing.
#[test]
fn currencies_are_converted_with_a_rate_table_never_summed_blindly() {
    let mut events = fixture();
    events.push(ev(
        20,
        "v2",
        "2026-03-10T09:07:00",
        Some("Newsletter"),
        Some(("1500", "JPY")),
    ));
    let with_rates = LINEAR.replace(
        r#""model":"linear""#,
        r#""model":"linear","rates":{"EUR":"1.10","JPY":0.0067}"#,
    );
    assert_eq!(
        rows(&events, &with_rates),
        vec![
            (None, vec![50.0, 0.5]),
            (g("Google"), vec![50.0, 0.5]),
            (g("Newsletter"), vec![82.05, 3.0]),
        ]
    );
    assert_eq!(rows(&events, LINEAR)[2], (g("Newsletter"), vec![50.0, 3.0]));
    let bad = LINEAR.replace(
        r#""model":"linear""#,
        r#""model":"linear","rates":{"EUR":"-1"}"#,
    );
    assert_eq!(
        Query::from_json(&bad).unwrap_err().to_string(),
        "attribution.rates.EUR: must be a positive number"
    );
}

/// Event-level filters test the conversion itself: only purchases named "pro" count;
/// a goal filter makes goals the conversions (with their value when they carry one).
#[test]
fn filters_choose_the_conversions() {
    let mut events = fixture();
    events[2].name = Some("pro".into());
    let q = LINEAR.replace(
        r#""attribution""#,
        r#""filters":[["is","goal",["pro"]]],"attribution""#,
    );
    assert_eq!(
        rows(&events, &q),
        vec![(None, vec![50.0, 0.5]), (g("Google"), vec![50.0, 0.5])]
    );
    let mut signup = ev(30, "v2", "2026-03-10T09:01:00", Some("Newsletter"), None);
    signup.kind = EventKind::Goal;
    signup.name = Some("signup".into());
    signup.commerce.goal_value = Some(Money::parse("5", Currency::USD).expect("value"));
    events.push(signup);
    let q = LINEAR.replace(
        r#""attribution""#,
        r#""filters":[["is","goal",["signup"]]],"attribution""#,
    );
    assert_eq!(rows(&events, &q), vec![(g("Newsletter"), vec![5.0, 1.0])]);
    let q = LINEAR.replace(
        r#""attribution""#,
        r#""filters":[["not",["is","source",["Newsletter"]]]],"attribution""#,
    );
    assert_eq!(
        rows(&events, &q),
        vec![(None, vec![50.0, 0.5]), (g("Google"), vec![50.0, 0.5])]
    );
}

proptest! {
    #[test]
    fn credits_add_up_to_the_purchases_whatever_the_order(
        raw in prop::collection::vec((0u8..3, 0i64..(20 * 24 * 60), 0u8..3, prop::option::of(1u32..10_000)), 1..40),
        model in prop::sample::select(vec!["first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based"]),
        seed in any::<u64>(),
    ) {
        let sources = [None, Some("A"), Some("B")];
        let events: Vec<Event> = raw.iter().enumerate().map(|(i, (v, min, s, cents))| {
            let amount = cents.map(|c| format!("{}.{:02}", c / 100, c % 100));
            let mut e = ev(i as u128 + 1, &format!("v{v}"), "2026-03-01T00:00:00", sources[*s as usize], amount.as_deref().map(|a| (a, "USD")));
            e.timestamp += chrono::Duration::minutes(*min);
            e
        }).collect();
        let total: i64 = events.iter().filter_map(|e| e.commerce.revenue.map(|m| m.minor)).sum();
        let purchases = events.iter().filter(|e| e.kind == EventKind::Purchase).count() as i64;
        let q = Query::from_json(&format!(r#"{{"site":"shop.test","date_range":["2026-03-01","2026-03-31"],"metrics":["revenue","conversions"],"dimensions":["source"],"attribution":{{"model":"{model}"}}}}"#)).expect("query");
        let site = Site::new("shop.test");
        let now = at("2026-04-01T00:00:00");
        let r = attribute_events(&events, &site, &q, now).expect("attribution");
        let credited: i64 = r.rows.iter().map(|row| row.metrics[0].units).sum();
        let converted: i64 = r.rows.iter().map(|row| row.metrics[1].units).sum();
        // Each row rounds once: the sum is within half a unit per row of the total.
        prop_assert!((credited - total).abs() <= r.rows.len() as i64, "{credited} vs {total}");
        prop_assert!((converted - purchases * 100).abs() <= r.rows.len() as i64, "{converted} vs {}", purchases * 100);
        let mut shuffled = events.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(attribute_events(&shuffled, &site, &q, now).expect("attribution"), r);
    }
}
