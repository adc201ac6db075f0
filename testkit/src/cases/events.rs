//! The event-store cases. Each is a function over a fresh handle on the store;
//! expected numbers are worked out by hand in the comments. Every request also runs
//! on the reference and must agree with it.

use crate::fixture::{at, site, Ev, Fixture};
use beacon_core::backend::{KindSet, ScanRequest};
use beacon_core::{
    DeviceType, EraseScope, Event, EventKind, EventStore, Funnel, GoalDefinition, GoalMatch,
    GoalsRequest, Metric, Query, QueryError, RealtimeRequest, StepMatch, StoreError, Tz,
};
use serde_json::json;

const MAIN: [&str; 7] = [
    "visitors",
    "visits",
    "pageviews",
    "events",
    "bounce_rate",
    "visit_duration",
    "views_per_visit",
];
const MAR1: [&str; 2] = ["2026-03-01", "2026-03-01"];
const N: Option<&str> = None;

fn main_fixture() -> Vec<Ev> {
    vec![
        // v1, session 1: 3 events, 2 pageviews, 10:00 -> 10:20 = 1200 s, not a bounce.
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v1", "2026-03-01T10:10:00", "/pricing"),
        Ev::goal("v1", "2026-03-01T10:20:00", "/pricing", "signup"),
        // v2: one pageview, a bounce, 0 s.
        Ev::pageview("v2", "2026-03-01T11:00:00", "/"),
        // v3: pageview + engagement: still a bounce, 60 s.
        Ev::pageview("v3", "2026-03-01T12:00:00", "/blog"),
        Ev::engagement("v3", "2026-03-01T12:01:00", "/blog", Some(30_000), None),
        // v1, session 2 (gap over 30 min): a bounce, 0 s.
        Ev::pageview("v1", "2026-03-01T15:00:00", "/"),
    ]
}

/// visitors 3, visits 4, pageviews 5, events 7, bounce 3/4 = 75.0 %,
/// duration (1200 + 0 + 60 + 0) / 4 = 315 s, views per visit 5 / 4 = 1.25.
pub(super) async fn main_stats(store: &dyn EventStore) {
    let f = Fixture::new(store, site("main-stats"), main_fixture()).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": MAIN}),
        &[(&[], &[3.0, 4.0, 5.0, 7.0, 75.0, 315.0, 1.25])],
    )
    .await;
}

/// 10:00 and 10:30:00 are one visit of 1800 s.
pub(super) async fn gap_of_exactly_the_timeout_continues(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v", "2026-03-01T10:30:00", "/b"),
    ];
    let f = Fixture::new(store, site("gap-3000"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visits", "visit_duration", "bounce_rate"]}),
        &[(&[], &[1.0, 1800.0, 0.0])],
    )
    .await;
}

/// 10:00 and 10:30:01 are two bouncing visits of 0 s.
pub(super) async fn gap_of_one_second_more_splits(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v", "2026-03-01T10:30:01", "/b"),
    ];
    let f = Fixture::new(store, site("gap-3001"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visits", "visit_duration", "bounce_rate"]}),
        &[(&[], &[2.0, 0.0, 100.0])],
    )
    .await;
}

/// v1's session starts on Feb 28, so on Mar 1 it gives a visitor and a pageview but
/// no visit; v2's bounce is the only visit.
pub(super) async fn session_crossing_range_start_is_not_a_visit(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-02-28T23:50:00", "/"),
        Ev::pageview("v1", "2026-03-01T00:10:00", "/a"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/"),
    ];
    let f = Fixture::new(store, site("cross-start"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"]}),
        &[(&[], &[2.0, 1.0, 2.0, 100.0, 0.0])],
    )
    .await;
}

/// A visit starting at 23:50 runs to 00:15 next day: one visit of 1500 s with
/// 3 pageviews per visit, while only one pageview falls in the range.
pub(super) async fn session_crossing_range_end_counts_whole(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T23:50:00", "/"),
        Ev::pageview("v1", "2026-03-02T00:10:00", "/a"),
        Ev::pageview("v1", "2026-03-02T00:15:00", "/b"),
    ];
    let f = Fixture::new(store, site("cross-end"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visits", "pageviews", "visit_duration", "views_per_visit", "bounce_rate"]}),
        &[(&[], &[1.0, 1.0, 1500.0, 3.0, 0.0])],
    )
    .await;
}

/// The main fixture appended one event at a time in reverse order gives main_stats' answer.
pub(super) async fn unsorted_input_gives_the_same_answer(store: &dyn EventStore) {
    let f = Fixture::new(store, site("unsorted"), vec![]).await;
    for (i, e) in main_fixture().into_iter().enumerate().rev() {
        f.append(vec![e], i as u128).await;
    }
    f.expect(
        json!({"date_range": MAR1, "metrics": MAIN}),
        &[(&[], &[3.0, 4.0, 5.0, 7.0, 75.0, 315.0, 1.25])],
    )
    .await;
}

/// 10:00 and 10:50 are two visits until 10:25 arrives late and joins them: one visit of 3000 s.
pub(super) async fn late_event_merges_two_sessions(store: &dyn EventStore) {
    let f = Fixture::new(
        store,
        site("late"),
        vec![
            Ev::pageview("v", "2026-03-01T10:00:00", "/"),
            Ev::pageview("v", "2026-03-01T10:50:00", "/c"),
        ],
    )
    .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visits"]}),
        &[(&[], &[2.0])],
    )
    .await;
    f.append(vec![Ev::pageview("v", "2026-03-01T10:25:00", "/b")], 10)
        .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visits", "visit_duration", "bounce_rate"]}),
        &[(&[], &[1.0, 3000.0, 0.0])],
    )
    .await;
}

/// pv + engagement bounces; pv + custom does not; a goal alone (no pageview) does
/// not; two pageviews do not: 1 of 4 = 25.0 %.
pub(super) async fn bounce_rules(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("a", "2026-03-01T10:00:00", "/"),
        Ev::engagement("a", "2026-03-01T10:00:30", "/", Some(5000), Some(40)),
        Ev::pageview("b", "2026-03-01T10:00:00", "/"),
        Ev::custom("b", "2026-03-01T10:00:30", "/", "video"),
        Ev::goal("c", "2026-03-01T10:00:00", "/", "signup"),
        Ev::pageview("d", "2026-03-01T10:00:00", "/"),
        Ev::pageview("d", "2026-03-01T10:00:10", "/x"),
    ];
    let f = Fixture::new(store, site("bounce"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visits", "bounce_rate"]}),
        &[(&[], &[4.0, 25.0])],
    )
    .await;
}

/// Source is the first event's: v1's second pageview (no source) stays Google.
/// Google: visitors {v1, v3} 2, visits 2, pageviews 2 + 1 = 3; Hacker News 1/1/1; none 1/1/1.
pub(super) async fn session_level_dimension_is_frozen_at_first_event(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/").source("Google"),
        Ev::pageview("v1", "2026-03-01T10:05:00", "/b"),
        Ev::pageview("v2", "2026-03-01T11:00:00", "/"),
        Ev::pageview("v3", "2026-03-01T12:00:00", "/").source("Hacker News"),
        Ev::pageview("v3", "2026-03-01T13:00:00", "/").source("Google"),
    ];
    let f = Fixture::new(store, site("source"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "visits", "pageviews"], "dimensions": ["source"]}),
        &[(&[Some("Google")], &[2.0, 2.0, 3.0]), (&[Some("Hacker News")], &[1.0, 1.0, 1.0]), (&[N], &[1.0, 1.0, 1.0])],
    )
    .await;
}

/// Page is per event; a visit counts for every page it has.
/// "/a": visitors 2, visits 2, pageviews 2, bounce 1/2 = 50.0; "/": 1, 1, 2, 0.0.
pub(super) async fn event_level_dimension_page(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v1", "2026-03-01T10:01:00", "/a"),
        Ev::pageview("v1", "2026-03-01T10:02:00", "/"),
        Ev::pageview("v2", "2026-03-01T11:00:00", "/a"),
    ];
    let f = Fixture::new(store, site("page"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "visits", "pageviews", "bounce_rate"], "dimensions": ["page"]}),
        &[(&[Some("/a")], &[2.0, 2.0, 2.0, 50.0]), (&[Some("/")], &[1.0, 1.0, 2.0, 0.0])],
    )
    .await;
}

/// Entry is the first event's path; exit the last pageview's (none for a goal-only visit).
pub(super) async fn entry_and_exit_pages(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/a"),
        Ev::pageview("v1", "2026-03-01T10:01:00", "/b"),
        Ev::goal("v1", "2026-03-01T10:02:00", "/c", "signup"),
        Ev::goal("v2", "2026-03-01T11:00:00", "/g", "signup"),
    ];
    let f = Fixture::new(store, site("entry-exit"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visits"], "dimensions": ["entry_page"]}),
        &[(&[Some("/a")], &[1.0]), (&[Some("/g")], &[1.0])],
    )
    .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visits"], "dimensions": ["exit_page"]}),
        &[(&[Some("/b")], &[1.0]), (&[N], &[1.0])],
    )
    .await;
}

/// Every operator, null matching, and nesting, on four visitors.
pub(super) async fn filter_operators(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("de", "2026-03-01T10:00:00", "/blog/x").country("DE"),
        Ev::pageview("fr", "2026-03-01T10:00:00", "/pricing").country("FR"),
        Ev::pageview("us", "2026-03-01T10:00:00", "/blog/y").country("US"),
        Ev::pageview("none", "2026-03-01T10:00:00", "/"),
    ];
    let f = Fixture::new(store, site("filters"), events).await;
    let cases = [
        (json!([["is", "country", ["DE", "FR"]]]), 2.0),
        (json!([["is_not", "country", ["DE"]]]), 3.0),
        (json!([["is", "country", [null]]]), 1.0),
        (json!([["is_not", "country", [null]]]), 3.0),
        (json!([["contains", "page", ["/blog"]]]), 2.0),
        (json!([["contains", "country", ["E"]]]), 1.0),
        (json!([["matches", "page", ["^/b.*y$"]]]), 1.0),
        (
            json!([["is", "country", ["DE"]], ["contains", "page", ["/blog"]]]),
            1.0,
        ),
        (
            json!([[
                "and",
                [["is", "country", ["DE", "US"]], ["matches", "page", ["y$"]]]
            ]]),
            1.0,
        ),
        (
            json!([[
                "or",
                [["is", "country", ["US"]], ["is", "page", ["/pricing"]]]
            ]]),
            2.0,
        ),
        (json!([["not", ["contains", "page", ["/blog"]]]]), 2.0),
        (
            json!([[
                "not",
                ["or", [["is", "country", ["DE"]], ["is", "page", ["/"]]]]
            ]]),
            2.0,
        ),
    ];
    for (filters, visitors) in cases {
        f.expect(
            json!({"date_range": MAR1, "metrics": ["visitors"], "filters": filters}),
            &[(&[], &[visitors])],
        )
        .await;
    }
}

/// Filtering on /pricing keeps v1's whole visit (2 pageviews per visit, no bounce)
/// but only the matching pageview.
pub(super) async fn event_filter_matches_whole_visit(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v1", "2026-03-01T10:01:00", "/pricing"),
        Ev::pageview("v2", "2026-03-01T11:00:00", "/"),
    ];
    let f = Fixture::new(store, site("visit-filter"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"],
               "filters": [["is", "page", ["/pricing"]]]}),
        &[(&[], &[1.0, 1.0, 1.0, 2.0, 0.0, 60.0])],
    )
    .await;
}

/// Berlin switches to summer time on 2026-03-29 (a 23-hour day).
/// 22:30Z on 28th = 23:30 local on 28th; 23:30Z = 00:30 on 29th (+01:00);
/// 21:59Z on 29th = 23:59 on 29th (+02:00); 22:30Z on 29th = 00:30 on 30th.
pub(super) async fn timezone_day_and_hour_buckets_across_dst(store: &dyn EventStore) {
    let berlin: Tz = "Europe/Berlin".parse().expect("known zone");
    let events = vec![
        Ev::pageview("a", "2026-03-28T22:30:00", "/"),
        Ev::pageview("b", "2026-03-28T23:30:00", "/"),
        Ev::pageview("c", "2026-03-29T21:59:00", "/"),
        Ev::pageview("d", "2026-03-29T22:30:00", "/"),
    ];
    let f = Fixture::new(store, site("tz").with_timezone(berlin), events).await;
    f.expect(
        json!({"date_range": ["2026-03-28", "2026-03-30"], "metrics": ["visitors"], "dimensions": ["time:day"]}),
        &[(&[Some("2026-03-28")], &[1.0]), (&[Some("2026-03-29")], &[2.0]), (&[Some("2026-03-30")], &[1.0])],
    )
    .await;
    let hours = f.query(json!({"date_range": ["2026-03-29", "2026-03-29"], "metrics": ["visitors"], "dimensions": ["time:hour"]})).await;
    assert_eq!(hours.rows.len(), 23, "a spring-forward day has 23 hours");
    let label = |i: usize| hours.rows[i].dimensions[0].clone().expect("hour label");
    assert_eq!(label(0), "2026-03-29T00:00:00+01:00");
    assert_eq!(label(2), "2026-03-29T03:00:00+02:00");
    assert_eq!(label(22), "2026-03-29T23:00:00+02:00");
    let visitors: Vec<f64> = hours.rows.iter().map(|r| r.metrics[0].as_f64()).collect();
    assert_eq!(visitors.iter().sum::<f64>(), 2.0);
    assert_eq!((visitors[0], visitors[22]), (1.0, 1.0));
}

/// Weeks start Monday (the week of Sunday Mar 1 is labelled Feb 23); every bucket is listed.
pub(super) async fn week_and_month_buckets(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("a", "2026-03-02T10:00:00", "/"),
        Ev::pageview("b", "2026-03-08T10:00:00", "/"),
        Ev::pageview("c", "2026-03-09T10:00:00", "/"),
        Ev::pageview("d", "2026-04-01T10:00:00", "/"),
    ];
    let f = Fixture::new(store, site("weeks"), events).await;
    let range = ["2026-03-01", "2026-04-05"];
    f.expect(
        json!({"date_range": range, "metrics": ["pageviews"], "dimensions": ["time:week"]}),
        &[
            (&[Some("2026-02-23")], &[0.0]),
            (&[Some("2026-03-02")], &[2.0]),
            (&[Some("2026-03-09")], &[1.0]),
            (&[Some("2026-03-16")], &[0.0]),
            (&[Some("2026-03-23")], &[0.0]),
            (&[Some("2026-03-30")], &[1.0]),
        ],
    )
    .await;
    f.expect(
        json!({"date_range": range, "metrics": ["pageviews"], "dimensions": ["time:month"]}),
        &[
            (&[Some("2026-03-01")], &[3.0]),
            (&[Some("2026-04-01")], &[1.0]),
        ],
    )
    .await;
}

/// 4 visitors; v1 and v2 reach signup (v2 twice), v3 purchases: 3 conversions, 75.0 %.
/// Filtered on signup: 2 conversions over 4 visitors = 50.0 %. By goal: signup 2 (50.0), purchase 1 (25.0).
pub(super) async fn conversions_and_conversion_rate(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::goal("v1", "2026-03-01T10:01:00", "/", "signup"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/"),
        Ev::goal("v2", "2026-03-01T10:01:00", "/", "signup"),
        Ev::goal("v2", "2026-03-01T10:02:00", "/", "signup"),
        Ev::pageview("v3", "2026-03-01T10:00:00", "/"),
        Ev::purchase("v3", "2026-03-01T10:01:00", "/", "10.00", "USD"),
        Ev::pageview("v4", "2026-03-01T10:00:00", "/"),
    ];
    let f = Fixture::new(store, site("conversions"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "conversions", "conversion_rate"]}),
        &[(&[], &[4.0, 3.0, 75.0])],
    )
    .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "conversions", "conversion_rate"], "filters": [["is", "goal", ["signup"]]]}),
        &[(&[], &[2.0, 2.0, 50.0])],
    )
    .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["conversions", "conversion_rate"], "dimensions": ["goal"]}),
        &[(&[Some("signup")], &[2.0, 50.0]), (&[Some("purchase")], &[1.0, 25.0])],
    )
    .await;
}

/// USD purchases 49.00 + 10.50 = 59.50 (the site's currency); EUR 20.00 on request; never mixed.
pub(super) async fn revenue_in_one_currency(store: &dyn EventStore) {
    let events = vec![
        Ev::purchase("v1", "2026-03-01T10:00:00", "/", "49.00", "USD").source("Google"),
        Ev::purchase("v2", "2026-03-01T11:00:00", "/", "10.50", "USD"),
        Ev::purchase("v3", "2026-03-01T12:00:00", "/", "20", "EUR").source("Google"),
    ];
    let f = Fixture::new(store, site("revenue"), events).await;
    let r = f
        .expect(
            json!({"date_range": MAR1, "metrics": ["revenue"]}),
            &[(&[], &[59.5])],
        )
        .await;
    assert_eq!(
        (r.rows[0].metrics[0].units, r.rows[0].metrics[0].scale),
        (5950, 2),
        "exact minor units"
    );
    f.expect(
        json!({"date_range": MAR1, "metrics": ["revenue"], "currency": "EUR"}),
        &[(&[], &[20.0])],
    )
    .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["revenue", "conversions"], "dimensions": ["source"]}),
        &[(&[Some("Google")], &[49.0, 2.0]), (&[N], &[10.5, 1.0])],
    )
    .await;
}

/// time_on_page: pageviews v1 /a (30 + 10 s), v1 /b (0), v2 /a (20 s): 60 / 3 = 20 s.
/// scroll_depth: (v1, /a) max 80; (v2, /a) reported no scroll, left out: 80.0.
/// By page: /a (40 + 20) / 2 = 30 s, 80.0; /b 0 s, no pairs.
pub(super) async fn time_on_page_and_scroll_depth(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/a"),
        Ev::engagement("v1", "2026-03-01T10:01:00", "/a", Some(30_000), Some(50)),
        Ev::engagement("v1", "2026-03-01T10:02:00", "/a", Some(10_000), Some(80)),
        Ev::pageview("v1", "2026-03-01T10:03:00", "/b"),
        Ev::pageview("v2", "2026-03-01T11:00:00", "/a"),
        Ev::engagement("v2", "2026-03-01T11:01:00", "/a", Some(20_000), None),
    ];
    let f = Fixture::new(store, site("engagement"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["time_on_page", "scroll_depth"]}),
        &[(&[], &[20.0, 80.0])],
    )
    .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["pageviews", "time_on_page", "scroll_depth"], "dimensions": ["page"]}),
        &[(&[Some("/a")], &[2.0, 30.0, 80.0]), (&[Some("/b")], &[1.0, 0.0, 0.0])],
    )
    .await;
}

/// prop:plan breaks down and filters per event.
pub(super) async fn custom_property_dimension_and_filter(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/").prop("plan", "pro"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/").prop("plan", "free"),
        Ev::pageview("v3", "2026-03-01T10:00:00", "/").prop("other", "x"),
        Ev::pageview("v4", "2026-03-01T10:00:00", "/b").prop("plan", "pro"),
    ];
    let f = Fixture::new(store, site("props"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors"], "dimensions": ["prop:plan"]}),
        &[
            (&[Some("pro")], &[2.0]),
            (&[Some("free")], &[1.0]),
            (&[N], &[1.0]),
        ],
    )
    .await;
    f.expect(json!({"date_range": MAR1, "metrics": ["visitors"], "filters": [["is", "prop:plan", ["pro"]]]}), &[(&[], &[2.0])]).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors"], "dimensions": ["prop:missing"]}),
        &[(&[N], &[4.0])],
    )
    .await;
}

/// Bots are stored and left out unless include_bots.
pub(super) async fn bots_are_excluded_unless_asked(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("human", "2026-03-01T10:00:00", "/"),
        Ev::pageview("crawler", "2026-03-01T10:00:00", "/").bot("crawler pattern \"Googlebot\""),
        Ev::pageview("crawler", "2026-03-01T10:00:05", "/a").bot("crawler pattern \"Googlebot\""),
    ];
    let f = Fixture::new(store, site("bots"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "visits", "pageviews"]}),
        &[(&[], &[1.0, 1.0, 1.0])],
    )
    .await;
    f.expect(json!({"date_range": MAR1, "metrics": ["visitors", "visits", "pageviews"], "include_bots": true}), &[(&[], &[2.0, 2.0, 3.0])])
        .await;
}

/// /a 3 visitors, /b 2, /c 1, /d 1: default order, explicit order, offset and limit.
pub(super) async fn order_limit_offset_and_total_rows(store: &dyn EventStore) {
    let mut events = Vec::new();
    for (page, n) in [("/a", 3), ("/b", 2), ("/c", 1), ("/d", 1)] {
        for i in 0..n {
            events.push(Ev::pageview(
                &format!("{page}-{i}"),
                "2026-03-01T10:00:00",
                page,
            ));
        }
    }
    let f = Fixture::new(store, site("order"), events).await;
    let r = f
        .expect(
            json!({"date_range": MAR1, "metrics": ["visitors"], "dimensions": ["page"], "limit": 2, "offset": 1}),
            &[(&[Some("/b")], &[2.0]), (&[Some("/c")], &[1.0])],
        )
        .await;
    assert_eq!(r.total_rows, 4);
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors"], "dimensions": ["page"], "order_by": [["page", "desc"]]}),
        &[(&[Some("/d")], &[1.0]), (&[Some("/c")], &[1.0]), (&[Some("/b")], &[2.0]), (&[Some("/a")], &[3.0])],
    )
    .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors"], "dimensions": ["page"], "order_by": [["visitors", "asc"]], "limit": 3}),
        &[(&[Some("/c")], &[1.0]), (&[Some("/d")], &[1.0]), (&[Some("/b")], &[2.0])],
    )
    .await;
}

/// Erasing v1 removes its 2 events everywhere; erasing all leaves nothing.
pub(super) async fn erase_visitor_and_all(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v1", "2026-03-01T10:01:00", "/a"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/"),
    ];
    let f = Fixture::new(store, site("erase"), events).await;
    assert_eq!(f.erase(EraseScope::Visitor("v1".into())).await, 2);
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "pageviews"]}),
        &[(&[], &[1.0, 1.0])],
    )
    .await;
    let left = f.scan(&ScanRequest::new(f.site.domain.clone())).await;
    assert!(left.iter().flatten().all(|e| e.identity.visitor_id != "v1"));
    assert_eq!(f.erase(EraseScope::All).await, 1);
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "pageviews"]}),
        &[(&[], &[0.0, 0.0])],
    )
    .await;
}

/// A refund is a ledger entry: a purchase at 10:00 and its refund at 10:20 and a day
/// later leave 1 visit, 2 events and 49.00 revenue; scan returns all 4 and erase removes them.
pub(super) async fn refunds_are_not_activity(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::purchase("v1", "2026-03-01T10:01:00", "/", "49.00", "USD").order("o1"),
        Ev::refund("v1", "2026-03-01T10:20:00", "o1", Some(("9.00", "USD"))),
        Ev::refund("v1", "2026-03-01T22:00:00", "o1", None),
    ];
    let f = Fixture::new(store, site("refunds"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "visits", "events", "bounce_rate", "revenue", "conversions"]}),
        &[(&[], &[1.0, 1.0, 2.0, 0.0, 49.0, 1.0])],
    )
    .await;
    let scanned: Vec<Event> = f
        .scan(&ScanRequest::new(f.site.domain.clone()))
        .await
        .into_iter()
        .flatten()
        .collect();
    let refunds: Vec<&Event> = scanned
        .iter()
        .filter(|e| e.kind == EventKind::Refund)
        .collect();
    assert_eq!(scanned.len(), 4);
    assert_eq!(refunds.len(), 2);
    assert!(refunds
        .iter()
        .all(|e| e.commerce.order_id.as_deref() == Some("o1") && e.identity.session_id.is_none()));
    assert_eq!(f.erase(EraseScope::Visitor("v1".into())).await, 4);
    assert!(f
        .scan(&ScanRequest::new(f.site.domain.clone()))
        .await
        .iter()
        .all(Vec::is_empty));
}

/// With a 10-minute timeout: 10:00, 10:10 (exactly) continue; 10:20:01 starts anew.
pub(super) async fn session_timeout_per_site(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v", "2026-03-01T10:10:00", "/"),
        Ev::pageview("v", "2026-03-01T10:20:01", "/"),
    ];
    let f = Fixture::new(
        store,
        site("timeout").with_session_timeout_secs(600),
        events,
    )
    .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visits", "visit_duration"]}),
        &[(&[], &[2.0, 300.0])],
    )
    .await;
}

/// Country × page.
pub(super) async fn several_dimensions(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/a").country("DE"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/b").country("DE"),
        Ev::pageview("v3", "2026-03-01T10:00:00", "/a").country("FR"),
        Ev::pageview("v4", "2026-03-01T10:00:00", "/a").country("DE"),
    ];
    let f = Fixture::new(store, site("multi"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors"], "dimensions": ["country", "page"]}),
        &[
            (&[Some("DE"), Some("/a")], &[2.0]),
            (&[Some("DE"), Some("/b")], &[1.0]),
            (&[Some("FR"), Some("/a")], &[1.0]),
        ],
    )
    .await;
}

/// A range without events gives one row of zeros.
pub(super) async fn empty_range_gives_zeros(store: &dyn EventStore) {
    let f = Fixture::new(store, site("empty"), main_fixture()).await;
    f.expect(
        json!({"date_range": ["2025-01-01", "2025-01-31"], "metrics": MAIN}),
        &[(&[], &[0.0; 7])],
    )
    .await;
    f.expect(json!({"date_range": ["2025-01-01", "2025-01-31"], "metrics": ["visitors"], "dimensions": ["page"]}), &[]).await;
}

/// With now = 2026-03-10 12:00 UTC: "day" is Mar 10, "7d" Mar 4..10, "30d" Feb 9..Mar 10,
/// "month" Mar 1..10, "all" from the first event.
pub(super) async fn relative_date_ranges(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("today", "2026-03-10T09:00:00", "/"),
        Ev::pageview("d6", "2026-03-04T09:00:00", "/"),
        Ev::pageview("d7", "2026-03-03T09:00:00", "/"),
        Ev::pageview("feb", "2026-02-09T09:00:00", "/"),
        Ev::pageview("old", "2025-12-01T09:00:00", "/"),
    ];
    let f = Fixture::new(store, site("relative"), events).await;
    for (range, visitors) in [
        ("day", 1.0),
        ("7d", 2.0),
        ("month", 3.0),
        ("30d", 4.0),
        ("all", 5.0),
    ] {
        f.expect(
            json!({"date_range": range, "metrics": ["visitors"]}),
            &[(&[], &[visitors])],
        )
        .await;
    }
    let r = f
        .query(json!({"date_range": "7d", "metrics": ["visitors"]}))
        .await;
    assert_eq!(
        r.query["date_range"],
        json!(["2026-03-04", "2026-03-10"]),
        "the echo shows the resolved dates"
    );
}

/// Device, browser, OS and channel are frozen per session like source.
pub(super) async fn device_browser_os_and_channel(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/")
            .device(DeviceType::Mobile, "Safari", "iOS")
            .channel("Organic Search")
            .campaign("spring"),
        Ev::pageview("v1", "2026-03-01T10:01:00", "/b")
            .device(DeviceType::Mobile, "Safari", "iOS")
            .channel("Direct"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/")
            .device(DeviceType::Desktop, "Firefox", "Linux")
            .channel("Direct"),
    ];
    let f = Fixture::new(store, site("device"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["pageviews"], "dimensions": ["device", "browser", "os"]}),
        &[(&[Some("mobile"), Some("Safari"), Some("iOS")], &[2.0]), (&[Some("desktop"), Some("Firefox"), Some("Linux")], &[1.0])],
    )
    .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["pageviews"], "dimensions": ["channel"]}),
        &[
            (&[Some("Organic Search")], &[2.0]),
            (&[Some("Direct")], &[1.0]),
        ],
    )
    .await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visits"], "dimensions": ["utm_campaign"]}),
        &[(&[Some("spring")], &[1.0]), (&[N], &[1.0])],
    )
    .await;
}

fn field_of(e: &StoreError) -> &str {
    match e {
        StoreError::Query(QueryError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid-request error, got {other:?}"),
    }
}

/// The same two events appended again are both refused as duplicates; a batch of a
/// new id and a known id (with other content) stores the new one only.
/// Afterwards: visitors 2, pageviews 2, revenue 49.00.
pub(super) async fn append_is_idempotent_by_event_id(store: &dyn EventStore) {
    let events = || {
        vec![
            Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
            Ev::purchase("v1", "2026-03-01T10:05:00", "/", "49.00", "USD"),
        ]
    };
    let f = Fixture::new(store, site("idempotent"), events()).await;
    let again = f.append(events(), 0).await;
    assert_eq!(again.stored, 0);
    let ids: Vec<u128> = again.duplicates.iter().map(|u| u.as_u128()).collect();
    assert_eq!(ids, [1, 2], "both copies are reported");
    let mut other = f.events(vec![Ev::pageview("v9", "2026-03-01T11:00:00", "/x")], 0);
    other.extend(f.events(vec![Ev::pageview("v2", "2026-03-01T10:10:00", "/")], 2));
    let mixed = f.append_events(&other).await;
    assert_eq!((mixed.stored, mixed.duplicates.len()), (1, 1));
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "pageviews", "revenue"]}),
        &[(&[], &[2.0, 2.0, 49.0])],
    )
    .await;
}

/// Two events with one id in one batch: the first is kept ("/first"), the second reported.
pub(super) async fn duplicates_within_one_batch_are_reported(store: &dyn EventStore) {
    let f = Fixture::new(store, site("batch-dups"), vec![]).await;
    let mut batch = f.events(vec![Ev::pageview("v1", "2026-03-01T10:00:00", "/first")], 4);
    batch.extend(f.events(
        vec![Ev::pageview("v1", "2026-03-01T10:00:00", "/second")],
        4,
    ));
    batch.extend(f.events(
        vec![Ev::goal("v1", "2026-03-01T10:01:00", "/", "signup")],
        5,
    ));
    let r = f.append_events(&batch).await;
    assert_eq!(r.stored, 2);
    assert_eq!(r.duplicates, [uuid::Uuid::from_u128(5)]);
    f.expect(
        json!({"date_range": MAR1, "metrics": ["pageviews"], "dimensions": ["page"]}),
        &[(&[Some("/first")], &[1.0])],
    )
    .await;
}

/// Events with the nil id have no identity to be idempotent by: both are stored.
pub(super) async fn events_without_an_id_are_always_stored(store: &dyn EventStore) {
    let f = Fixture::new(store, site("nil-ids"), vec![]).await;
    let mut events = f.events(
        vec![
            Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
            Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        ],
        0,
    );
    for e in &mut events {
        e.id = uuid::Uuid::nil();
    }
    assert_eq!(f.append_events(&events).await.stored, 2);
    assert_eq!(f.append_events(&events).await.stored, 2);
    f.expect(
        json!({"date_range": MAR1, "metrics": ["pageviews"]}),
        &[(&[], &[4.0])],
    )
    .await;
}

/// `from` is inclusive and `to` exclusive, on every kind (refunds included).
pub(super) async fn scan_bounds_are_half_open(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v1", "2026-03-01T11:00:00", "/"),
        Ev::pageview("v2", "2026-03-01T12:00:00", "/"),
        Ev::refund("v1", "2026-03-01T11:30:00", "o1", None),
    ];
    let f = Fixture::new(store, site("scan-bounds"), events).await;
    let d = f.site.domain.clone();
    let scan = |from: Option<&str>, to: Option<&str>| {
        ScanRequest::new(d.clone()).between(from.map(at), to.map(at))
    };
    let t = |s: &str| format!("2026-03-01T{s}");
    assert_eq!(
        f.scan_ids(&scan(Some(&t("10:00:00")), Some(&t("12:00:00"))))
            .await,
        [1, 2, 4]
    );
    assert_eq!(f.scan_ids(&scan(None, Some(&t("11:00:00")))).await, [1]);
    assert_eq!(
        f.scan_ids(&scan(Some(&t("11:00:00")), None)).await,
        [2, 3, 4]
    );
    assert_eq!(f.scan_ids(&scan(None, None)).await, [1, 2, 3, 4]);
    assert!(f
        .scan_ids(&scan(Some(&t("11:00:00")), Some(&t("11:00:00"))))
        .await
        .is_empty());
    assert!(f
        .scan_ids(&ScanRequest::new(site("scan-nothing").domain))
        .await
        .is_empty());
}

/// 25 events come in batches of at most 7 (or 1), every event once.
pub(super) async fn scan_batches_are_bounded(store: &dyn EventStore) {
    let events: Vec<Ev> = (0..25)
        .map(|i| {
            Ev::pageview(
                &format!("v{}", i % 4),
                &format!("2026-03-01T10:{i:02}:00"),
                "/",
            )
        })
        .collect();
    let f = Fixture::new(store, site("scan-batches"), events).await;
    for size in [7, 1, 1000] {
        let batches = f
            .scan(&ScanRequest::new(f.site.domain.clone()).batch_size(size))
            .await;
        assert!(
            batches.iter().all(|b| b.len() <= size),
            "batches of at most {size}"
        );
        let mut ids: Vec<u128> = batches.iter().flatten().map(|e| e.id.as_u128()).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=25).collect::<Vec<u128>>(), "batch size {size}");
    }
}

/// Kinds and bots narrow a scan: a human pageview (1), a bot's (2), a goal (3), a refund (4).
pub(super) async fn scan_filters_kinds_and_bots(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("human", "2026-03-01T10:00:00", "/"),
        Ev::pageview("crawler", "2026-03-01T10:00:00", "/").bot("crawler pattern \"bot\""),
        Ev::goal("human", "2026-03-01T10:01:00", "/", "signup"),
        Ev::refund("human", "2026-03-01T10:02:00", "o1", None),
    ];
    let f = Fixture::new(store, site("scan-kinds"), events).await;
    let all = ScanRequest::new(f.site.domain.clone());
    assert_eq!(
        f.scan_ids(&all.clone().kinds(KindSet::ACTIVITY)).await,
        [1, 2, 3]
    );
    assert_eq!(f.scan_ids(&all.clone().without_bots()).await, [1, 3, 4]);
    assert_eq!(f.scan_ids(&all.clone().kinds(KindSet::REFUNDS)).await, [4]);
    assert_eq!(
        f.scan_ids(&all.kinds(KindSet::of(&[EventKind::Goal])).without_bots())
            .await,
        [3]
    );
}

/// The extent runs from the first event to the last, refunds included; none without events.
pub(super) async fn extent_spans_first_to_last_event(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-05T09:00:00", "/"),
        Ev::pageview("v2", "2026-02-01T08:00:00", "/"),
        Ev::refund("v1", "2026-03-07T10:00:00", "o1", None),
    ];
    let f = Fixture::new(store, site("extent"), events).await;
    let got = f.store().extent(&f.site.domain).await.expect("extent");
    assert_eq!(
        got,
        Some((at("2026-02-01T08:00:00"), at("2026-03-07T10:00:00")))
    );
    let want = f.reference().extent(&f.site.domain).await.expect("extent");
    assert_eq!(got, want);
    let empty = f.store().extent(&site("extent-empty").domain).await;
    assert_eq!(empty.expect("extent"), None);
}

/// `count` counts what `scan` gives, bounds half-open, kinds and bots as asked.
pub(super) async fn count_is_the_scans_length(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-02-28T23:59:59", "/"),
        Ev::pageview("v1", "2026-03-01T00:00:00", "/"),
        Ev::pageview("v2", "2026-03-15T12:00:00", "/").bot("crawler"),
        Ev::refund("v1", "2026-03-20T10:00:00", "o1", None),
        Ev::pageview("v3", "2026-04-01T00:00:00", "/"),
    ];
    let f = Fixture::new(store, site("count"), events).await;
    let month = |bots: bool| {
        let mut req = ScanRequest::new(&f.site.domain);
        req.from = Some(at("2026-03-01T00:00:00"));
        req.to = Some(at("2026-04-01T00:00:00"));
        req.include_bots = bots;
        req
    };
    for (req, want) in [
        (ScanRequest::new(&f.site.domain), 5),
        (month(true), 3),
        (month(false), 2),
    ] {
        let got = f.store().count(&req).await.expect("count");
        assert_eq!(got, want, "{req:?}");
        assert_eq!(f.reference().count(&req).await.expect("count"), got);
    }
    let none = ScanRequest::new(site("count-empty").domain);
    assert_eq!(f.store().count(&none).await.expect("count"), 0);
}

/// v1 comes from Google on Feb 28 at 00:00 and views a page every 25 minutes until
/// 01:50 on Mar 1 (63 pageviews, one visit). On Mar 1 that is 5 pageviews (00:10 ..
/// 01:50) under Google and no visit; v2's one visit from Bing is the only one. A
/// funnel broken down by source credits v1 to Google too.
pub(super) async fn long_session_before_the_range_is_read_whole(store: &dyn EventStore) {
    let start = at("2026-02-28T00:00:00");
    let mut events: Vec<Ev> = (0..63)
        .map(|k| {
            let t = (start + chrono::Duration::minutes(25 * k)).format("%Y-%m-%dT%H:%M:%S");
            Ev::pageview("v1", &t.to_string(), "/")
        })
        .collect();
    events[0] = events[0].clone().source("Google");
    events.push(Ev::pageview("v2", "2026-03-01T10:00:00", "/").source("Bing"));
    let f = Fixture::new(store, site("long-session"), events).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "visits", "pageviews"], "dimensions": ["source"]}),
        &[(&[Some("Bing")], &[1.0, 1.0, 1.0]), (&[Some("Google")], &[1.0, 0.0, 5.0])],
    )
    .await;
    let r = f
        .funnel(json!({"date_range": MAR1, "steps": [{"page": "/*"}], "breakdown": "source"}))
        .await;
    let groups: Vec<(Option<String>, u64)> = r
        .breakdown
        .expect("a breakdown")
        .into_iter()
        .map(|(v, steps)| (v, steps[0].visitors))
        .collect();
    assert_eq!(
        groups,
        [(Some("Bing".into()), 1), (Some("Google".into()), 1)]
    );
}

/// Window 1 h, steps / → /pricing → goal signup. v1 does all three; v2 stops at
/// /pricing; v3 reaches /pricing after the hour; v4 sees /pricing before /; v5 only
/// signs up: 4, 2, 1 visitors; conversion 100, 50, 25 %; drop-off 0, 50, 50 %.
pub(super) async fn funnel_steps_in_order_within_window(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v1", "2026-03-01T10:10:00", "/pricing"),
        Ev::goal("v1", "2026-03-01T10:20:00", "/pricing", "signup"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v2", "2026-03-01T10:10:00", "/pricing"),
        Ev::pageview("v3", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v3", "2026-03-01T11:30:00", "/pricing"),
        Ev::goal("v3", "2026-03-01T11:40:00", "/", "signup"),
        Ev::pageview("v4", "2026-03-01T10:00:00", "/pricing"),
        Ev::pageview("v4", "2026-03-01T10:05:00", "/"),
        Ev::goal("v4", "2026-03-01T10:10:00", "/", "signup"),
        Ev::goal("v5", "2026-03-01T10:00:00", "/", "signup"),
    ];
    let f = Fixture::new(store, site("funnel"), events).await;
    let r = f
        .expect_funnel(
            json!({"date_range": MAR1, "window": "1h", "steps": [{"page": "/"}, {"page": "/pricing"}, {"goal": "signup"}]}),
            &[4, 2, 1],
        )
        .await;
    let rates: Vec<(f64, f64)> = r
        .steps
        .iter()
        .map(|s| (s.conversion_rate.as_f64(), s.drop_off.as_f64()))
        .collect();
    assert_eq!(rates, [(100.0, 0.0), (50.0, 50.0), (25.0, 50.0)]);
    assert_eq!(r.steps[2].label, "signup");
}

/// Two steps at the same instant are not in order: v1 (both at 10:00:00) reaches
/// step 1 only; v2 (a second apart) reaches both: 2, 1.
pub(super) async fn funnel_steps_must_be_strictly_later(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v1", "2026-03-01T10:00:00", "/pricing"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v2", "2026-03-01T10:00:01", "/pricing"),
    ];
    let f = Fixture::new(store, site("funnel-strict"), events).await;
    f.expect_funnel(
        json!({"date_range": MAR1, "steps": [{"page": "/"}, {"page": "/pricing"}]}),
        &[2, 1],
    )
    .await;
}

/// `/blog/*` matches /blog/a and /blog/x/y but not /blog; an event step matches a
/// custom event, not a goal of that name: 2, 1.
pub(super) async fn funnel_page_globs_and_event_steps(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/blog/a"),
        Ev::custom("v1", "2026-03-01T10:01:00", "/blog/a", "video"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/blog"),
        Ev::custom("v2", "2026-03-01T10:01:00", "/blog", "video"),
        Ev::pageview("v3", "2026-03-01T10:00:00", "/blog/x/y"),
        Ev::goal("v3", "2026-03-01T10:01:00", "/blog/x/y", "video"),
    ];
    let f = Fixture::new(store, site("funnel-globs"), events).await;
    f.expect_funnel(
        json!({"date_range": MAR1, "steps": [{"page": "/blog/*"}, {"event": "video"}]}),
        &[2, 1],
    )
    .await;
}

/// A glob step that matches many pages (more than engines special-case): v1..v6
/// each view a different /docs page, and v2, v4 and v6 then sign up; v7 signs up
/// after /pricing only, and v8 views /docs itself (not under the glob). 6, 3.
pub(super) async fn funnel_step_matching_many_pages(store: &dyn EventStore) {
    let mut events = Vec::new();
    for i in 1..=6 {
        let v = format!("v{i}");
        events.push(Ev::pageview(
            &v,
            "2026-03-01T10:00:00",
            &format!("/docs/p{i}"),
        ));
        if i % 2 == 0 {
            events.push(Ev::goal(&v, "2026-03-01T10:05:00", "/signup", "signup"));
        }
    }
    events.push(Ev::pageview("v7", "2026-03-01T10:00:00", "/pricing"));
    events.push(Ev::goal("v7", "2026-03-01T10:05:00", "/signup", "signup"));
    events.push(Ev::pageview("v8", "2026-03-01T10:00:00", "/docs"));
    let f = Fixture::new(store, site("funnel-many-pages"), events).await;
    f.expect_funnel(
        json!({"date_range": MAR1, "steps": [{"page": "/docs/*"}, {"goal": "signup"}]}),
        &[6, 3],
    )
    .await;
}

/// Breakdown by source: v1 (Google) does both steps; v2 starts from Bing at 10:00
/// and again from Google at 12:00 but never reaches /pricing (its best path begins
/// in the Bing visit); v3 (direct) does both. Groups by visitors at step 1, then by
/// value (missing first): none [1, 1], Bing [1, 0], Google [1, 1]; total [3, 2].
pub(super) async fn funnel_breakdown_by_session_source(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/").source("Google"),
        Ev::pageview("v1", "2026-03-01T10:05:00", "/pricing"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/").source("Bing"),
        Ev::pageview("v2", "2026-03-01T12:00:00", "/").source("Google"),
        Ev::pageview("v3", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v3", "2026-03-01T10:01:00", "/pricing"),
    ];
    let f = Fixture::new(store, site("funnel-breakdown"), events).await;
    let r = f
        .expect_funnel(
            json!({"date_range": MAR1, "breakdown": "source", "steps": [{"page": "/"}, {"page": "/pricing"}]}),
            &[3, 2],
        )
        .await;
    let groups: Vec<(Option<String>, Vec<u64>)> = r
        .breakdown
        .expect("a breakdown")
        .into_iter()
        .map(|(v, steps)| (v, steps.iter().map(|s| s.visitors).collect()))
        .collect();
    assert_eq!(
        groups,
        [
            (None, vec![1, 1]),
            (Some("Bing".into()), vec![1, 0]),
            (Some("Google".into()), vec![1, 1])
        ]
    );
}

/// A crawler doing the steps counts only with include_bots: 1, 1 then 2, 2.
pub(super) async fn funnel_leaves_bots_out_unless_asked(store: &dyn EventStore) {
    let bot = "crawler pattern \"bot\"";
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v1", "2026-03-01T10:01:00", "/b"),
        Ev::pageview("crawler", "2026-03-01T10:00:00", "/").bot(bot),
        Ev::pageview("crawler", "2026-03-01T10:00:01", "/b").bot(bot),
    ];
    let f = Fixture::new(store, site("funnel-bots"), events).await;
    let steps = json!([{"page": "/"}, {"page": "/b"}]);
    f.expect_funnel(json!({"date_range": MAR1, "steps": steps}), &[1, 1])
        .await;
    f.expect_funnel(
        json!({"date_range": MAR1, "steps": steps, "include_bots": true}),
        &[2, 2],
    )
    .await;
}

/// Pricing (`/pricing*`): v1 twice → 1 conversion, 2 completions. Signup (event):
/// v1's goal and v2's custom event → 2, 2. CTA (attribute, goal events only): v2 → 1, 1.
/// 3 visitors: rates 33.3, 66.7, 33.3 %.
pub(super) async fn goals_by_page_event_and_attribute(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/pricing"),
        Ev::pageview("v1", "2026-03-01T10:01:00", "/pricing/team"),
        Ev::goal("v1", "2026-03-01T10:02:00", "/", "signup"),
        Ev::custom("v2", "2026-03-01T10:00:00", "/", "signup"),
        Ev::goal("v2", "2026-03-01T10:01:00", "/", "cta"),
        Ev::custom("v2", "2026-03-01T10:02:00", "/", "cta"),
        Ev::pageview("v3", "2026-03-01T10:00:00", "/"),
    ];
    let f = Fixture::new(store, site("goals"), events).await;
    let r = f
        .goals(json!({"date_range": MAR1, "goals": [
            {"name": "Pricing", "page": "/pricing*"},
            {"name": "Signup", "event": "signup"},
            {"name": "CTA", "attribute": "cta"}]}))
        .await;
    assert_eq!(r.visitors, 3);
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
        [
            ("Pricing", 1, 2, 33.3),
            ("Signup", 2, 2, 66.7),
            ("CTA", 1, 1, 33.3)
        ]
    );
}

/// Signup worth 5.00: v1 twice, v2 once, v3 never, a bot once. Without bots: 3
/// visitors, 2 conversions, 3 completions, 15.00, 66.7 %; with bots 4, 3, 4, 20.00, 75.0 %.
pub(super) async fn goals_values_and_rates(store: &dyn EventStore) {
    let events = vec![
        Ev::goal("v1", "2026-03-01T10:00:00", "/", "signup"),
        Ev::goal("v1", "2026-03-01T11:00:00", "/", "signup"),
        Ev::goal("v2", "2026-03-01T10:00:00", "/", "signup"),
        Ev::pageview("v3", "2026-03-01T10:00:00", "/"),
        Ev::goal("crawler", "2026-03-01T10:00:00", "/", "signup").bot("crawler pattern \"bot\""),
    ];
    let f = Fixture::new(store, site("goal-values"), events).await;
    let goals = json!([{"name": "Signup", "event": "signup", "value": {"amount": "5.00", "currency": "USD"}}]);
    for (bots, want) in [
        (false, (3, 2, 3, "15.00", 66.7)),
        (true, (4, 3, 4, "20.00", 75.0)),
    ] {
        let r = f
            .goals(json!({"date_range": MAR1, "goals": goals, "include_bots": bots}))
            .await;
        let g = &r.goals[0];
        let value = g.value.map(|m| m.to_decimal_string());
        assert_eq!(
            (
                r.visitors,
                g.conversions,
                g.completions,
                value.as_deref(),
                g.conversion_rate.as_f64()
            ),
            (want.0, want.1, want.2, Some(want.3), want.4),
            "include_bots {bots}"
        );
    }
}

/// v1: Google on Mar 1 10:00, direct on Mar 5 10:00, buying 100.00 in that visit
/// (order o1). v2: Newsletter on Mar 10 09:00, buying 50.00 (order o2).
fn attribution_fixture() -> Vec<Ev> {
    vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/").source("Google"),
        Ev::pageview("v1", "2026-03-05T10:00:00", "/"),
        Ev::purchase("v1", "2026-03-05T10:00:00", "/", "100.00", "USD").order("o1"),
        Ev::pageview("v2", "2026-03-10T09:00:00", "/").source("Newsletter"),
        Ev::purchase("v2", "2026-03-10T09:05:00", "/", "50.00", "USD").order("o2"),
    ]
}

fn attribution(model: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut a = json!({"model": model});
    if let (Some(a), Some(x)) = (a.as_object_mut(), extra.as_object()) {
        a.extend(x.clone());
    }
    json!({"date_range": ["2026-03-01", "2026-03-31"], "metrics": ["revenue", "conversions"],
           "dimensions": ["source"], "attribution": a})
}

/// First touch: Google 100.00 / 1, Newsletter 50.00 / 1. Last touch: direct
/// 100.00, Newsletter 50.00. Last non-direct: as first touch here.
pub(super) async fn attribution_first_last_and_last_non_direct_touch(store: &dyn EventStore) {
    let f = Fixture::new(store, site("attr-touch"), attribution_fixture()).await;
    let g = Some("Google");
    let n = Some("Newsletter");
    f.expect(
        attribution("first_touch", json!({})),
        &[(&[g], &[100.0, 1.0]), (&[n], &[50.0, 1.0])],
    )
    .await;
    f.expect(
        attribution("last_touch", json!({})),
        &[(&[N], &[100.0, 1.0]), (&[n], &[50.0, 1.0])],
    )
    .await;
    f.expect(
        attribution("last_non_direct", json!({})),
        &[(&[g], &[100.0, 1.0]), (&[n], &[50.0, 1.0])],
    )
    .await;
}

/// Linear and position-based (two touches: 50/50) split v1's 100.00 between Google
/// and direct: three rows of 50.00, ordered by value then name (missing last).
pub(super) async fn attribution_linear_and_position_based(store: &dyn EventStore) {
    let f = Fixture::new(store, site("attr-linear"), attribution_fixture()).await;
    for model in ["linear", "position_based"] {
        f.expect(
            attribution(model, json!({})),
            &[
                (&[Some("Google")], &[50.0, 0.5]),
                (&[Some("Newsletter")], &[50.0, 1.0]),
                (&[N], &[50.0, 0.5]),
            ],
        )
        .await;
    }
}

/// Half-life 4 days: the touches are 4 days and 0 days old, weights 1/2 and 1, so
/// direct gets 2/3 (66.67) and Google 1/3 (33.33).
pub(super) async fn attribution_time_decay(store: &dyn EventStore) {
    let f = Fixture::new(store, site("attr-decay"), attribution_fixture()).await;
    f.expect(
        attribution("time_decay", json!({"half_life_days": 4})),
        &[
            (&[N], &[66.67, 0.67]),
            (&[Some("Newsletter")], &[50.0, 1.0]),
            (&[Some("Google")], &[33.33, 0.33]),
        ],
    )
    .await;
}

/// A 2-day window leaves the Google visit (4 days before) out: all direct.
pub(super) async fn attribution_window_leaves_old_touches_out(store: &dyn EventStore) {
    let f = Fixture::new(store, site("attr-window"), attribution_fixture()).await;
    f.expect(
        attribution("first_touch", json!({"window_days": 2})),
        &[(&[N], &[100.0, 1.0]), (&[Some("Newsletter")], &[50.0, 1.0])],
    )
    .await;
}

/// o1 is refunded 10.00 and 20.00 (70.00 credited, 35/35, still a conversion); o2 is
/// refunded in full (no revenue, no conversion: its row leaves).
pub(super) async fn attribution_refunds_reverse_the_credit(store: &dyn EventStore) {
    let mut events = attribution_fixture();
    events.push(Ev::refund(
        "v1",
        "2026-03-06T10:00:00",
        "o1",
        Some(("10.00", "USD")),
    ));
    events.push(Ev::refund(
        "v1",
        "2026-03-08T10:00:00",
        "o1",
        Some(("20.00", "USD")),
    ));
    events.push(Ev::refund("v2", "2026-03-10T10:00:00", "o2", None));
    let f = Fixture::new(store, site("attr-refunds"), events).await;
    f.expect(
        attribution("linear", json!({})),
        &[(&[Some("Google")], &[35.0, 0.5]), (&[N], &[35.0, 0.5])],
    )
    .await;
}

/// A 20.00 EUR purchase by v2 is a conversion but adds no USD revenue; at 1.10 it adds 22.00.
pub(super) async fn attribution_rates_convert_currencies(store: &dyn EventStore) {
    let mut events = attribution_fixture();
    events.push(Ev::purchase(
        "v2",
        "2026-03-10T09:06:00",
        "/",
        "20.00",
        "EUR",
    ));
    let f = Fixture::new(store, site("attr-rates"), events).await;
    f.expect(
        attribution("linear", json!({})),
        &[
            (&[Some("Google")], &[50.0, 0.5]),
            (&[Some("Newsletter")], &[50.0, 2.0]),
            (&[N], &[50.0, 0.5]),
        ],
    )
    .await;
    f.expect(
        attribution("linear", json!({"rates": {"EUR": "1.10"}})),
        &[
            (&[Some("Newsletter")], &[72.0, 2.0]),
            (&[Some("Google")], &[50.0, 0.5]),
            (&[N], &[50.0, 0.5]),
        ],
    )
    .await;
}

/// `order_by`, `offset`, `limit` and `total_rows` as for any query: by conversions
/// descending (Newsletter 1.0, Google 0.5, direct 0.5), skip 1, take 1: Google; 3 rows.
/// By source descending, the missing value (largest, as in every query) comes first.
pub(super) async fn attribution_order_limit_offset_and_total_rows(store: &dyn EventStore) {
    let f = Fixture::new(store, site("attr-order"), attribution_fixture()).await;
    let mut q = attribution("linear", json!({}));
    q["order_by"] = json!([["conversions", "desc"]]);
    q["limit"] = json!(1);
    q["offset"] = json!(1);
    let r = f.expect(q, &[(&[Some("Google")], &[50.0, 0.5])]).await;
    assert_eq!(r.total_rows, 3);
    let mut q = attribution("linear", json!({}));
    q["order_by"] = json!([["source", "desc"]]);
    f.expect(
        q,
        &[
            (&[N], &[50.0, 0.5]),
            (&[Some("Newsletter")], &[50.0, 1.0]),
            (&[Some("Google")], &[50.0, 0.5]),
        ],
    )
    .await;
}

/// A goal filter makes goals the conversions: v2's signup worth 5.00 is credited to
/// Newsletter; purchases are not signups.
pub(super) async fn attribution_goal_filter_makes_goals_conversions(store: &dyn EventStore) {
    let mut events = attribution_fixture();
    events.push(Ev::goal("v2", "2026-03-10T09:01:00", "/", "signup").value("5.00", "USD"));
    let f = Fixture::new(store, site("attr-goals"), events).await;
    let mut q = attribution("linear", json!({}));
    q["filters"] = json!([["is", "goal", ["signup"]]]);
    f.expect(q, &[(&[Some("Newsletter")], &[5.0, 1.0])]).await;
}

/// With now = 2026-03-10 12:00 UTC, one visitor per day shown (each a pageview of /
/// and a signup a minute later; today's also buys 10.00): day {Mar 10} 1, 7d {Mar 10,
/// 4} 2, month {.., 3, 1} 4, 30d {.., Feb 9} 5, all {.., Dec 1} 6, Mar 1 to 5 {4, 3,
/// 1} 3. Query, funnel, goals and attribution agree on every form.
pub(super) async fn every_date_range_form_on_every_request_kind(store: &dyn EventStore) {
    let mut events = Vec::new();
    for (visitor, day) in [
        ("today", "2026-03-10"),
        ("d6", "2026-03-04"),
        ("d7", "2026-03-03"),
        ("mar1", "2026-03-01"),
        ("feb", "2026-02-09"),
        ("old", "2025-12-01"),
    ] {
        events.push(Ev::pageview(visitor, &format!("{day}T09:00:00"), "/").source("Google"));
        events.push(Ev::goal(visitor, &format!("{day}T09:01:00"), "/", "signup"));
    }
    events.push(Ev::purchase(
        "today",
        "2026-03-10T09:02:00",
        "/",
        "10.00",
        "USD",
    ));
    let f = Fixture::new(store, site("ranges"), events).await;
    for (range, visitors, revenue) in [
        (json!("day"), 1u32, 10.0),
        (json!("7d"), 2, 10.0),
        (json!("month"), 4, 10.0),
        (json!("30d"), 5, 10.0),
        (json!("all"), 6, 10.0),
        (json!(["2026-03-01", "2026-03-05"]), 3, 0.0),
    ] {
        f.expect(
            json!({"date_range": range, "metrics": ["visitors"]}),
            &[(&[], &[f64::from(visitors)])],
        )
        .await;
        f.expect_funnel(
            json!({"date_range": range, "steps": [{"page": "/"}, {"goal": "signup"}]}),
            &[u64::from(visitors), u64::from(visitors)],
        )
        .await;
        let g = f
            .goals(json!({"date_range": range, "goals": [{"event": "signup"}]}))
            .await;
        assert_eq!(
            (g.visitors, g.goals[0].conversions),
            (u64::from(visitors), u64::from(visitors)),
            "{range}"
        );
        f.expect(
            json!({"date_range": range, "metrics": ["revenue"], "attribution": {"model": "first_touch"}}),
            &[(&[], &[revenue])],
        )
        .await;
    }
}

/// Last 5 minutes at 12:00: v1 (pageviews / and /pricing), v2 (a goal, its pageview
/// at 11:50 is older), v4 (/pricing); a bot left out: 3 visitors; /pricing 2, / 1.
/// The last minute: v4 only.
pub(super) async fn realtime_counts_the_last_minutes(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-10T11:56:00", "/"),
        Ev::pageview("v1", "2026-03-10T11:58:00", "/pricing"),
        Ev::pageview("v2", "2026-03-10T11:50:00", "/"),
        Ev::goal("v2", "2026-03-10T11:57:00", "/x", "signup"),
        Ev::pageview("crawler", "2026-03-10T11:59:00", "/").bot("crawler pattern \"bot\""),
        Ev::pageview("v4", "2026-03-10T11:59:30", "/pricing"),
    ];
    let f = Fixture::new(store, site("realtime"), events).await;
    let r = f.realtime(5, f.now).await;
    assert_eq!(r.visitors, 3);
    assert_eq!(r.pages, [("/pricing".to_owned(), 2), ("/".to_owned(), 1)]);
    assert_eq!(r.sources, [(None, 3)]);
    assert_eq!(f.realtime(1, f.now).await.visitors, 1);
}

/// v1's visit began at 11:00 from Bing and goes on every 25 minutes to 11:58: it
/// counts under Bing. v2 from Google, v3 direct: one each (missing last).
pub(super) async fn realtime_sources_are_frozen_at_visit_start(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-10T11:00:00", "/").source("Bing"),
        Ev::pageview("v1", "2026-03-10T11:25:00", "/a"),
        Ev::pageview("v1", "2026-03-10T11:50:00", "/b"),
        Ev::pageview("v1", "2026-03-10T11:58:00", "/c"),
        Ev::pageview("v2", "2026-03-10T11:57:00", "/").source("Google"),
        Ev::pageview("v3", "2026-03-10T11:57:00", "/"),
    ];
    let f = Fixture::new(store, site("realtime-sources"), events).await;
    let r = f.realtime(5, f.now).await;
    assert_eq!(r.visitors, 3);
    assert_eq!(
        r.sources,
        [
            (Some("Bing".into()), 1),
            (Some("Google".into()), 1),
            (None, 1)
        ]
    );
    assert_eq!(r.pages, [("/".to_owned(), 2), ("/c".to_owned(), 1)]);
}

/// Erasing v1 (3 events) removes them from queries, funnels, goals and attribution.
pub(super) async fn erase_reaches_every_request_kind(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/").source("Google"),
        Ev::goal("v1", "2026-03-01T10:01:00", "/", "signup"),
        Ev::purchase("v1", "2026-03-01T10:02:00", "/", "20.00", "USD"),
        Ev::pageview("v2", "2026-03-01T11:00:00", "/"),
        Ev::goal("v2", "2026-03-01T11:01:00", "/", "signup"),
    ];
    let f = Fixture::new(store, site("erase-all-kinds"), events).await;
    let attributed = json!({"date_range": MAR1, "metrics": ["revenue"], "dimensions": ["source"], "attribution": {"model": "first_touch"}});
    let funnel = json!({"date_range": MAR1, "steps": [{"page": "/"}, {"goal": "signup"}]});
    let goals = json!({"date_range": MAR1, "goals": [{"event": "signup"}]});
    f.expect(attributed.clone(), &[(&[Some("Google")], &[20.0])])
        .await;
    f.expect_funnel(funnel.clone(), &[2, 2]).await;
    assert_eq!(f.goals(goals.clone()).await.goals[0].conversions, 2);
    assert_eq!(f.erase(EraseScope::Visitor("v1".into())).await, 3);
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors"]}),
        &[(&[], &[1.0])],
    )
    .await;
    f.expect(attributed, &[]).await;
    f.expect_funnel(funnel, &[1, 1]).await;
    assert_eq!(f.goals(goals).await.goals[0].conversions, 1);
}

/// Requests built in Rust are held to the JSON rules: each refusal names the field.
pub(super) async fn invalid_requests_built_in_rust_are_refused(store: &dyn EventStore) {
    let f = Fixture::new(store, site("rust-built"), main_fixture()).await;
    let (s, d, cx) = (&f.site, f.site.domain.clone(), f.cx());
    let query = |edit: &dyn Fn(&mut Query)| {
        let mut q = Query::new(d.clone());
        edit(&mut q);
        q
    };
    let cases: Vec<(Query, &str)> = vec![
        (query(&|q| q.metrics.clear()), "metrics"),
        (
            query(&|q| q.metrics = vec![Metric::Visits, Metric::Visits]),
            "metrics[1]",
        ),
        (
            query(&|q| {
                q.dimensions = ["page", "source", "country", "city", "os"]
                    .map(|n| beacon_core::Dimension::parse(n).expect("known"))
                    .to_vec()
            }),
            "dimensions",
        ),
        (
            query(&|q| {
                q.order_by = vec![(
                    beacon_core::OrderKey::Dimension(3),
                    beacon_core::Direction::Asc,
                )]
            }),
            "order_by[0][0]",
        ),
        (query(&|q| q.limit = 0), "limit"),
    ];
    for (q, field) in cases {
        let e = store.query(s, &q, &cx).await.expect_err("refused");
        assert_eq!(field_of(&e), field, "{q:?}");
    }
    let mut funnel = Funnel::new(d.clone(), vec![]);
    let e = store.funnel(s, &funnel, &cx).await.expect_err("refused");
    assert_eq!(field_of(&e), "steps");
    funnel.steps = vec![StepMatch::Page("/".into())];
    funnel.window_ms = 0;
    let e = store.funnel(s, &funnel, &cx).await.expect_err("refused");
    assert_eq!(field_of(&e), "window");
    let goals = GoalsRequest::new(d.clone(), vec![]);
    let e = store.goals(s, &goals, &cx).await.expect_err("refused");
    assert_eq!(field_of(&e), "goals");
    let goals = GoalsRequest::new(
        d.clone(),
        vec![GoalDefinition::new("", GoalMatch::Page("/".into()))],
    );
    let e = store.goals(s, &goals, &cx).await.expect_err("refused");
    assert_eq!(field_of(&e), "goals[0].name");
    let mut rt = RealtimeRequest::new(d.clone());
    rt.minutes = 0;
    let e = store.realtime(s, &rt, &cx).await.expect_err("refused");
    assert_eq!(field_of(&e), "minutes");
}

/// A request naming one site run with another site's settings is refused (`site`).
pub(super) async fn a_request_for_another_site_is_refused(store: &dyn EventStore) {
    let f = Fixture::new(store, site("other-site"), main_fixture()).await;
    let q = Query::new("elsewhere.conformance.test");
    let e = store
        .query(&f.site, &q, &f.cx())
        .await
        .expect_err("refused");
    assert_eq!(field_of(&e), "site");
}

/// Retention: erasing before an instant removes the older events (from batches
/// that straddle it too) and keeps an event at the instant itself.
pub(super) async fn erase_before_keeps_newer_events(store: &dyn EventStore) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v2", "2026-03-02T10:00:00", "/a"),
        Ev::pageview("v3", "2026-03-03T10:00:00", "/b"),
    ];
    let f = Fixture::new(store, site("retention"), events).await;
    assert_eq!(
        f.erase(EraseScope::Before(at("2026-03-02T00:00:00"))).await,
        1
    );
    let all = json!({"date_range": "all", "metrics": ["visitors", "pageviews"]});
    f.expect(all.clone(), &[(&[], &[2.0, 2.0])]).await;
    assert_eq!(
        f.erase(EraseScope::Before(at("2026-03-03T10:00:00"))).await,
        1
    );
    f.expect(all, &[(&[], &[1.0, 1.0])]).await;
    let left = f.scan(&ScanRequest::new(f.site.domain.clone())).await;
    let paths: Vec<String> = left.iter().flatten().map(|e| e.page.path.clone()).collect();
    assert_eq!(paths, ["/b"]);
}
