//! Goal definitions with hand-computed answers, through the store's columns and a scan.

use beacon_attribution::GoalsRequest;
use beacon_core::{BotInfo, Event, EventKind, EventStore, MemoryStore, Site};
use beacon_testkit::{at, VecStore};

fn ev(n: u128, visitor: &str, time: &str, kind: EventKind, what: &str) -> Event {
    let mut e = Event {
        id: uuid::Uuid::from_u128(n),
        site: "g.test".into(),
        kind,
        timestamp: at(time),
        ..Event::default()
    };
    e.identity.visitor_id = visitor.into();
    e.page.path = "/".into();
    match kind {
        EventKind::Pageview => e.page.path = what.into(),
        _ => e.name = Some(what.into()),
    }
    e
}

/// Visitors: v1..v4 in range (the bot and v5, outside the range, do not count).
/// - "Thanks" (/thanks*): v1 twice, v2 once -> 2 conversions, 3 completions, 50.0 %;
///   value 2.50 each -> 7.50.
/// - "Newsletter" (event "subscribe"): v3's custom event and v4's goal -> 2, 50.0 %.
/// - "CTA" (attribute "cta"): v1's goal event "cta"; v2's custom "cta" is not an
///   attribute click -> 1, 25.0 %.
/// - "Unused": 0, 0.0 %.
fn fixture() -> Vec<Event> {
    use EventKind::*;
    let mut bot = ev(9, "bot", "2026-03-01T10:00:00", Pageview, "/thanks");
    bot.bot = Some(BotInfo {
        reason: "test".into(),
    });
    vec![
        ev(1, "v1", "2026-03-01T10:00:00", Pageview, "/thanks/a"),
        ev(2, "v1", "2026-03-01T10:01:00", Pageview, "/thanks"),
        ev(3, "v1", "2026-03-01T10:02:00", Goal, "cta"),
        ev(4, "v2", "2026-03-01T10:00:00", Pageview, "/thanks"),
        ev(5, "v2", "2026-03-01T10:01:00", Custom, "cta"),
        ev(6, "v3", "2026-03-01T10:00:00", Custom, "subscribe"),
        ev(7, "v4", "2026-03-01T10:00:00", Goal, "subscribe"),
        ev(8, "v5", "2026-02-01T10:00:00", Pageview, "/thanks"),
        bot,
    ]
}

const REQUEST: &str = r#"{"site": "g.test", "date_range": ["2026-03-01", "2026-03-31"], "goals": [
    {"name": "Thanks", "page": "/thanks*", "value": {"amount": "2.50", "currency": "USD"}},
    {"name": "Newsletter", "event": "subscribe"},
    {"name": "CTA", "attribute": "cta"},
    {"name": "Unused", "page": "/never"}]}"#;

async fn check(store: &dyn EventStore) {
    let req = GoalsRequest::from_json(REQUEST).expect("request");
    let r = store
        .goals(
            &Site::new("g.test"),
            &req,
            &at("2026-04-01T00:00:00").into(),
        )
        .await
        .expect("goals");
    assert_eq!(r.visitors, 4);
    let got: Vec<(&str, u64, u64, f64)> = r
        .goals
        .iter()
        .map(|g| {
            (
                g.name.as_str(),
                g.conversions,
                g.completions,
                g.conversion_rate.as_f64(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("Thanks", 2, 3, 50.0),
            ("Newsletter", 2, 2, 50.0),
            ("CTA", 1, 1, 25.0),
            ("Unused", 0, 0, 0.0)
        ]
    );
    let json = r.to_json();
    assert_eq!(json["goals"][0]["value"]["amount"], "7.50");
    assert_eq!(json["goals"][1]["value"], serde_json::Value::Null);
}

#[tokio::test]
async fn goal_definitions_by_hand_on_both_paths() {
    let memory = MemoryStore::new();
    memory.put_site_sync(Site::new("g.test")).expect("site");
    memory.append(&fixture()).await.expect("append");
    check(&memory).await;
    // A backend without a columnar override answers through scan.
    let scan_only = VecStore::default();
    scan_only.append(&fixture()).await.expect("append");
    check(&scan_only).await;
}

#[test]
fn errors_name_the_field() {
    let field = |t: &str| GoalsRequest::from_json(t).unwrap_err().to_string();
    assert!(field(r#"{"goals": [{"page": "/"}]}"#).starts_with("site:"));
    assert!(field(r#"{"site": "a", "goals": []}"#).starts_with("goals:"));
    assert!(
        field(r#"{"site": "a", "goals": [{"page": "/", "event": "x"}]}"#).starts_with("goals[0]:")
    );
    assert!(field(r#"{"site": "a", "goals": [{"name": "x"}]}"#).starts_with("goals[0]:"));
    assert!(
        field(r#"{"site": "a", "goals": [{"page": "/", "url": "x"}]}"#)
            .starts_with("goals[0].url:")
    );
    assert!(field(
        r#"{"site": "a", "goals": [{"page": "/", "value": {"amount": "1.001", "currency": "USD"}}]}"#
    )
    .starts_with("goals[0].value.amount:"));
    assert!(field(
        r#"{"site": "a", "goals": [{"page": "/", "value": {"amount": "1", "currency": "XYZ"}}]}"#
    )
    .starts_with("goals[0].value.currency:"));
    let r = GoalsRequest::from_json(r#"{"site": "A.com", "goals": [{"page": "/x"}]}"#).unwrap();
    assert_eq!(
        (r.site.as_str(), r.goals[0].name.as_str()),
        ("a.com", "Visit /x")
    );
}
