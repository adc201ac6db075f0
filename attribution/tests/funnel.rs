//! Funnels with hand-computed answers, through a store, and their invariants.

use beacon_attribution::{run_funnel, Funnel};
use beacon_core::{Analytics, BotInfo, Event, EventKind, EventStore, MemoryStore, Site};
use chrono::{DateTime, NaiveDateTime, Utc};
use proptest::prelude::*;

fn at(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .expect("time")
        .and_utc()
}

fn ev(n: u128, visitor: &str, time: &str, kind: EventKind, what: &str) -> Event {
    let mut e = Event {
        id: uuid::Uuid::from_u128(n),
        site: "f.test".into(),
        kind,
        timestamp: at(time),
        ..Event::default()
    };
    e.identity.visitor_id = visitor.into();
    match kind {
        EventKind::Pageview => e.page.path = what.into(),
        _ => {
            e.page.path = "/".into();
            e.name = Some(what.into());
        }
    }
    e
}

fn fixture() -> Vec<Event> {
    use EventKind::*;
    vec![
        // v1 reaches all three steps.
        ev(1, "v1", "2026-03-01T10:00:00", Pageview, "/"),
        ev(2, "v1", "2026-03-01T10:05:00", Pageview, "/pricing"),
        ev(3, "v1", "2026-03-01T10:10:00", Goal, "signup"),
        // v2 stops at /pricing.
        ev(4, "v2", "2026-03-01T10:00:00", Pageview, "/"),
        ev(5, "v2", "2026-03-01T10:01:00", Pageview, "/pricing"),
        // v3 sees /pricing before /: only step 1.
        ev(6, "v3", "2026-03-01T10:00:00", Pageview, "/pricing"),
        ev(7, "v3", "2026-03-01T10:05:00", Pageview, "/"),
        // v4: /pricing 25 h after /: outside a 24 h window.
        ev(8, "v4", "2026-03-01T10:00:00", Pageview, "/"),
        ev(9, "v4", "2026-03-02T11:00:00", Pageview, "/pricing"),
        // v5: a goal without the pages.
        ev(10, "v5", "2026-03-01T10:00:00", Goal, "signup"),
        // v6: same second is not "strictly later".
        ev(11, "v6", "2026-03-01T10:00:00", Pageview, "/"),
        ev(12, "v6", "2026-03-01T10:00:00", Pageview, "/pricing"),
        // A bot that would reach every step.
        {
            let mut b = ev(13, "bot", "2026-03-01T10:00:00", Pageview, "/");
            b.bot = Some(BotInfo {
                reason: "test".into(),
            });
            b
        },
    ]
}

const RANGE: &str = r#""date_range": ["2026-03-01", "2026-03-02"]"#;

fn figures(r: &beacon_attribution::FunnelResult) -> Vec<(u64, f64, f64)> {
    r.steps
        .iter()
        .map(|s| (s.visitors, s.conversion_rate.as_f64(), s.drop_off.as_f64()))
        .collect()
}

/// Step 1: v1 v2 v3 v4 v6 = 5; step 2: v1 v2 = 2; step 3: v1 = 1.
/// Conversion 100 / 40.0 / 20.0; drop-off 0 / 60.0 / 50.0.
#[tokio::test]
async fn hand_checked_funnel_through_a_store() {
    let store = MemoryStore::new();
    store.put_site_sync(Site::new("f.test")).expect("site");
    store.append(&fixture()).await.expect("append");
    let f = Funnel::from_json(&format!(r#"{{"site": "f.test", {RANGE}, "window": "24h", "steps": [{{"page": "/"}}, {{"page": "/pricing"}}, {{"goal": "signup"}}]}}"#)).expect("funnel");
    let r = Analytics::new(&store, &store)
        .funnel(&f, at("2026-03-10T00:00:00"))
        .await
        .expect("runs");
    assert_eq!(
        figures(&r),
        vec![(5, 100.0, 0.0), (2, 40.0, 60.0), (1, 20.0, 50.0)]
    );
    assert_eq!(r.to_json()["steps"][2]["label"], "signup");
    // A longer window lets v4 through.
    let mut wide = f.clone();
    wide.window_ms = 48 * 3_600_000;
    assert_eq!(
        run_funnel(
            &fixture(),
            &wide,
            &Site::new("f.test"),
            at("2026-03-10T00:00:00")
        )
        .expect("funnel")
        .steps[1]
            .visitors,
        3
    );
    // Bots count when asked for.
    let mut bots = f;
    bots.include_bots = true;
    assert_eq!(
        run_funnel(
            &fixture(),
            &bots,
            &Site::new("f.test"),
            at("2026-03-10T00:00:00")
        )
        .expect("funnel")
        .steps[0]
            .visitors,
        6
    );
}

#[test]
fn wildcard_pages_and_custom_events() {
    use EventKind::*;
    let events = vec![
        ev(1, "a", "2026-03-01T10:00:00", Pageview, "/blog/rust"),
        ev(2, "a", "2026-03-01T10:01:00", Custom, "video"),
    ];
    let f = Funnel::from_json(&format!(
        r#"{{"site": "f.test", {RANGE}, "steps": [{{"page": "/blog/*"}}, {{"event": "video"}}]}}"#
    ))
    .expect("funnel");
    assert_eq!(
        figures(
            &run_funnel(&events, &f, &Site::new("f.test"), at("2026-03-10T00:00:00"))
                .expect("funnel")
        ),
        vec![(1, 100.0, 0.0), (1, 100.0, 0.0)]
    );
}

proptest! {
    #[test]
    fn steps_never_grow_and_order_does_not_matter(
        raw in prop::collection::vec((0u8..4, 0i64..600, 0u8..4), 0..60),
        seed in any::<u64>(),
    ) {
        let paths = ["/", "/a", "/b", "/c"];
        let events: Vec<Event> = raw.iter().enumerate().map(|(i, (v, min, p))| {
            let mut e = ev(i as u128 + 1, &format!("v{v}"), "2026-03-01T10:00:00", EventKind::Pageview, paths[*p as usize]);
            e.timestamp += chrono::Duration::minutes(*min);
            e
        }).collect();
        let f = Funnel::from_json(&format!(r#"{{"site": "f.test", {RANGE}, "window": "2h", "steps": [{{"page": "/"}}, {{"page": "/a"}}, {{"page": "/b"}}]}}"#)).expect("funnel");
        let site = Site::new("f.test");
        let now = at("2026-03-10T00:00:00");
        let r = run_funnel(&events, &f, &site, now).expect("funnel");
        prop_assert!(r.steps.windows(2).all(|w| w[0].visitors >= w[1].visitors));
        let mut shuffled = events.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(run_funnel(&shuffled, &f, &site, now).expect("funnel"), r);
    }
}

/// The definition, without the engine's greedy shortcut: for each first step, the
/// set of every time a path can have reached each step.
fn reference_reached(events: &[&Event], f: &Funnel) -> usize {
    let step = |k: usize, e: &Event| match &f.steps[k] {
        beacon_attribution::StepMatch::Page(p) => {
            e.kind == EventKind::Pageview && beacon_attribution::glob(p, &e.page.path)
        }
        beacon_attribution::StepMatch::Goal(g) => {
            e.kind == EventKind::Goal && e.name.as_deref() == Some(g.as_str())
        }
        beacon_attribution::StepMatch::Event(n) => {
            e.kind == EventKind::Custom && e.name.as_deref() == Some(n.as_str())
        }
        other => panic!("a step this test does not know: {other:?}"),
    };
    let mut best = 0;
    for e1 in events.iter().filter(|e| step(0, e)) {
        let t0 = e1.timestamp.timestamp_millis();
        let mut times = vec![t0];
        let mut k = 1;
        while k < f.steps.len() {
            let next: Vec<i64> = events
                .iter()
                .filter(|e| step(k, e))
                .map(|e| e.timestamp.timestamp_millis())
                .filter(|&t| t - t0 <= f.window_ms && times.iter().any(|&p| t > p))
                .collect();
            if next.is_empty() {
                break;
            }
            times = next;
            k += 1;
        }
        best = best.max(k);
    }
    best
}

proptest! {
    /// The store's columnar path, the event path and the definition agree.
    #[test]
    fn engine_matches_the_definition_through_every_path(
        raw in prop::collection::vec((0u8..5, 0i64..300, 0u8..5), 0..80),
    ) {
        use EventKind::*;
        let what = [(Pageview, "/"), (Pageview, "/a/x"), (Goal, "g"), (Custom, "c"), (Pageview, "/b")];
        let events: Vec<Event> = raw.iter().enumerate().map(|(i, (v, min, w))| {
            let (kind, name) = what[*w as usize];
            let mut e = ev(i as u128 + 1, &format!("v{v}"), "2026-03-01T10:00:00", kind, name);
            e.timestamp += chrono::Duration::minutes(*min);
            e
        }).collect();
        let f = Funnel::from_json(&format!(r#"{{"site": "f.test", {RANGE}, "window": "90m",
            "steps": [{{"page": "/"}}, {{"page": "/a/*"}}, {{"goal": "g"}}, {{"event": "c"}}, {{"page": "/*"}}]}}"#)).expect("funnel");
        let site = Site::new("f.test");
        let now = at("2026-03-10T00:00:00");
        let mut want = vec![0u64; 5];
        let mut sorted: Vec<&Event> = events.iter().collect();
        sorted.sort_by(|a, b| (&a.identity.visitor_id, a.timestamp, a.id).cmp(&(&b.identity.visitor_id, b.timestamp, b.id)));
        for v in sorted.chunk_by(|a, b| a.identity.visitor_id == b.identity.visitor_id) {
            for c in want.iter_mut().take(reference_reached(v, &f)) {
                *c += 1;
            }
        }
        let by_events = run_funnel(&events, &f, &site, now).expect("funnel");
        prop_assert_eq!(by_events.steps.iter().map(|s| s.visitors).collect::<Vec<_>>(), want);
        let store = MemoryStore::new();
        store.put_site_sync(site.clone()).expect("site");
        store.append_sync(&events).expect("append");
        let through_store = tokio::runtime::Builder::new_current_thread().build().expect("rt")
            .block_on(Analytics::new(&store, &store).funnel(&f, now)).expect("funnel");
        prop_assert_eq!(through_store, by_events);
    }
}

/// Breakdown by source, frozen at each session's first event, even before the range:
/// v1 (Google session, starting Feb 28 at 23:50) reaches 3 steps; v2 (Newsletter) 2;
/// v3 (Newsletter) 1; v4 (direct) 1. Overall 4 / 2 / 1.
#[test]
fn breakdown_by_a_session_dimension() {
    use EventKind::*;
    let src = |mut e: Event, s: &str| {
        e.acquisition.source = Some(s.into());
        e
    };
    let events = vec![
        src(
            ev(1, "v1", "2026-02-28T23:50:00", Pageview, "/landing"),
            "Google",
        ),
        ev(2, "v1", "2026-03-01T00:05:00", Pageview, "/"),
        ev(3, "v1", "2026-03-01T00:06:00", Pageview, "/pricing"),
        ev(4, "v1", "2026-03-01T00:07:00", Goal, "signup"),
        src(
            ev(5, "v2", "2026-03-01T10:00:00", Pageview, "/"),
            "Newsletter",
        ),
        ev(6, "v2", "2026-03-01T10:01:00", Pageview, "/pricing"),
        src(
            ev(7, "v3", "2026-03-01T10:00:00", Pageview, "/"),
            "Newsletter",
        ),
        ev(8, "v4", "2026-03-01T10:00:00", Pageview, "/"),
    ];
    let f = Funnel::from_json(&format!(
        r#"{{"site": "f.test", {RANGE}, "breakdown": "source",
        "steps": [{{"page": "/"}}, {{"page": "/pricing"}}, {{"goal": "signup"}}]}}"#
    ))
    .expect("funnel");
    let r =
        run_funnel(&events, &f, &Site::new("f.test"), at("2026-03-10T00:00:00")).expect("funnel");
    assert_eq!(
        figures(&r),
        vec![(4, 100.0, 0.0), (2, 50.0, 50.0), (1, 25.0, 50.0)]
    );
    let groups: Vec<(Option<&str>, Vec<u64>)> = r
        .breakdown
        .as_ref()
        .expect("breakdown")
        .iter()
        .map(|(v, s)| (v.as_deref(), s.iter().map(|s| s.visitors).collect()))
        .collect();
    assert_eq!(
        groups,
        vec![
            (Some("Newsletter"), vec![2, 1, 0]),
            (None, vec![1, 0, 0]),
            (Some("Google"), vec![1, 1, 1]),
        ]
    );
    let json = r.to_json();
    assert_eq!(json["breakdown"][2]["value"], "Google");
    assert_eq!(json["breakdown"][0]["steps"][1]["drop_off"], 50.0);
    let err =
        Funnel::from_json(r#"{"site": "f.test", "breakdown": "page", "steps": [{"page": "/"}]}"#)
            .unwrap_err()
            .to_string();
    assert!(err.starts_with("breakdown:"), "{err}");
}
