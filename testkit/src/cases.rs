//! The conformance cases. Each is a function over a fresh store; expected numbers
//! are worked out by hand in the comments.

use crate::fixture::{Ev, Fixture};
use beacon_core::{
    run_query, DeviceType, EraseScope, Event, EventKind, EventStore, Query, QueryError, Site,
    Store, StoreError, Tz,
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

fn site(name: &str) -> Site {
    Site::new(format!("{name}.conformance.test"))
}

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
pub async fn main_stats(store: &dyn Store) {
    let f = Fixture::new(store, site("main-stats"), main_fixture()).await;
    f.expect(
        json!({"date_range": MAR1, "metrics": MAIN}),
        &[(&[], &[3.0, 4.0, 5.0, 7.0, 75.0, 315.0, 1.25])],
    )
    .await;
}

/// 10:00 and 10:30:00 are one visit of 1800 s.
pub async fn gap_of_exactly_the_timeout_continues(store: &dyn Store) {
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
pub async fn gap_of_one_second_more_splits(store: &dyn Store) {
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
pub async fn session_crossing_range_start_is_not_a_visit(store: &dyn Store) {
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
pub async fn session_crossing_range_end_counts_whole(store: &dyn Store) {
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
pub async fn unsorted_input_gives_the_same_answer(store: &dyn Store) {
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
pub async fn late_event_merges_two_sessions(store: &dyn Store) {
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
pub async fn bounce_rules(store: &dyn Store) {
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
pub async fn session_level_dimension_is_frozen_at_first_event(store: &dyn Store) {
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
pub async fn event_level_dimension_page(store: &dyn Store) {
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
pub async fn entry_and_exit_pages(store: &dyn Store) {
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
pub async fn filter_operators(store: &dyn Store) {
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
pub async fn event_filter_matches_whole_visit(store: &dyn Store) {
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
pub async fn timezone_day_and_hour_buckets_across_dst(store: &dyn Store) {
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
pub async fn week_and_month_buckets(store: &dyn Store) {
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
pub async fn conversions_and_conversion_rate(store: &dyn Store) {
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
pub async fn revenue_in_one_currency(store: &dyn Store) {
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
pub async fn time_on_page_and_scroll_depth(store: &dyn Store) {
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
pub async fn custom_property_dimension_and_filter(store: &dyn Store) {
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
pub async fn bots_are_excluded_unless_asked(store: &dyn Store) {
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
pub async fn order_limit_offset_and_total_rows(store: &dyn Store) {
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
pub async fn erase_visitor_and_all(store: &dyn Store) {
    let events = vec![
        Ev::pageview("v1", "2026-03-01T10:00:00", "/"),
        Ev::pageview("v1", "2026-03-01T10:01:00", "/a"),
        Ev::pageview("v2", "2026-03-01T10:00:00", "/"),
    ];
    let f = Fixture::new(store, site("erase"), events).await;
    let domain = f.site.domain.clone();
    assert_eq!(
        f.store()
            .erase(&domain, EraseScope::Visitor("v1".into()))
            .await
            .expect("erase visitor"),
        2
    );
    assert_eq!(
        f.reference()
            .erase(&domain, EraseScope::Visitor("v1".into()))
            .await
            .expect("reference erase"),
        2
    );
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "pageviews"]}),
        &[(&[], &[1.0, 1.0])],
    )
    .await;
    assert!(f
        .store()
        .scan(&domain, None, None)
        .await
        .expect("scan")
        .iter()
        .all(|e| e.identity.visitor_id != "v1"));
    assert_eq!(
        f.store()
            .erase(&domain, EraseScope::All)
            .await
            .expect("erase all"),
        1
    );
    assert_eq!(
        f.reference()
            .erase(&domain, EraseScope::All)
            .await
            .expect("reference erase"),
        1
    );
    f.expect(
        json!({"date_range": MAR1, "metrics": ["visitors", "pageviews"]}),
        &[(&[], &[0.0, 0.0])],
    )
    .await;
}

/// A refund is a ledger entry: a purchase at 10:00 and its refund at 10:20 and a day
/// later leave 1 visit, 2 events and 49.00 revenue; scan returns all 4 and erase removes them.
pub async fn refunds_are_not_activity(store: &dyn Store) {
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
    let domain = f.site.domain.clone();
    let scanned = f.store().scan(&domain, None, None).await.expect("scan");
    let refunds: Vec<&Event> = scanned
        .iter()
        .filter(|e| e.kind == EventKind::Refund)
        .collect();
    assert_eq!(scanned.len(), 4);
    assert_eq!(refunds.len(), 2);
    assert!(refunds
        .iter()
        .all(|e| e.commerce.order_id.as_deref() == Some("o1") && e.identity.session_id.is_none()));
    assert_eq!(
        f.store()
            .erase(&domain, EraseScope::Visitor("v1".into()))
            .await
            .expect("erase visitor"),
        4
    );
    assert!(f
        .store()
        .scan(&domain, None, None)
        .await
        .expect("scan")
        .is_empty());
}

/// With a 10-minute timeout: 10:00, 10:10 (exactly) continue; 10:20:01 starts anew.
pub async fn session_timeout_per_site(store: &dyn Store) {
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
pub async fn several_dimensions(store: &dyn Store) {
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
pub async fn empty_range_gives_zeros(store: &dyn Store) {
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
pub async fn relative_date_ranges(store: &dyn Store) {
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
pub async fn device_browser_os_and_channel(store: &dyn Store) {
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

/// A query for a site the store does not know is an error naming the site.
pub async fn unknown_site_is_an_error(store: &dyn Store) {
    let q = Query::new("never-created.conformance.test");
    match run_query(store, &q, crate::fixture::at("2026-03-10T00:00:00")).await {
        Err(StoreError::Query(QueryError::UnknownSite(s))) => {
            assert_eq!(s, "never-created.conformance.test")
        }
        other => panic!("expected an unknown-site error, got {other:?}"),
    }
}
