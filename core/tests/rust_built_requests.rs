//! Property test: requests built in Rust, with any values of the public types, are
//! answered or refused with an error naming a field — never a panic — by the
//! reference engine ([`MemoryStore`]) and by the traits' default methods (a
//! scan-only store), which give the same answers.

use async_trait::async_trait;
use beacon_core::backend::{AppendReport, EventBatches, ScanRequest};
use beacon_core::{
    Attribution, AttributionModel, Currency, DateRange, Dimension, Direction, EraseScope, Event,
    EventKind, EventStore, Filter, Funnel, GoalDefinition, GoalMatch, GoalsRequest, MemoryStore,
    Metric, Money, OrderKey, Pattern, Query, QueryError, RealtimeRequest, Site, StepMatch,
    StoreError, TimeBucket,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;

/// Only the required methods, over a [`MemoryStore`]: every request runs through
/// the traits' defaults.
struct ScanOnly(MemoryStore);

#[async_trait]
impl EventStore for ScanOnly {
    async fn append(&self, events: &[Event]) -> Result<AppendReport, StoreError> {
        self.0.append(events).await
    }
    async fn scan(&self, req: &ScanRequest) -> Result<EventBatches<'_>, StoreError> {
        self.0.scan(req).await
    }
    async fn erase(&self, site: &str, scope: EraseScope) -> Result<u64, StoreError> {
        self.0.erase(site, scope).await
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0)
        .single()
        .expect("time")
}

fn stores() -> (MemoryStore, ScanOnly) {
    let (a, b) = (MemoryStore::new(), ScanOnly(MemoryStore::new()));
    let mut events = Vec::new();
    for i in 0..40u32 {
        let mut e = Event {
            id: uuid::Uuid::from_u128(u128::from(i) + 1),
            site: "a.com".into(),
            kind: [
                EventKind::Pageview,
                EventKind::Goal,
                EventKind::Purchase,
                EventKind::Custom,
                EventKind::Engagement,
                EventKind::Refund,
            ][i as usize % 6],
            timestamp: now() - chrono::Duration::minutes(i64::from(i) * 97),
            name: Some(["signup", "buy", "video"][i as usize % 3].into()),
            ..Event::default()
        };
        e.identity.visitor_id = format!("v{}", i % 7);
        e.page.path = ["/", "/a", "/b/c"][i as usize % 3].into();
        e.acquisition.source = (i % 2 == 0).then(|| "Google".into());
        e.commerce.revenue = Some(Money::parse("9.99", Currency::USD).expect("money"));
        e.commerce.order_id = Some(format!("o{}", i % 5));
        e.props.insert("plan".into(), "pro".into());
        events.push(e);
    }
    a.append_sync(&events).expect("append");
    b.0.append_sync(&events).expect("append");
    (a, b)
}

fn dimension() -> impl Strategy<Value = Dimension> {
    prop_oneof![
        prop::sample::select(vec![
            "page",
            "entry_page",
            "exit_page",
            "source",
            "referrer",
            "channel",
            "utm_source",
            "country",
            "device",
            "browser",
            "goal",
            "company",
            "visitor_type",
            "prop:plan",
            "time:hour",
            "time:day",
            "time:week",
            "time:month",
        ])
        .prop_map(|n| Dimension::parse(n).expect("known")),
        Just(Dimension::Prop(String::new())),
        Just(Dimension::Time(TimeBucket::Day)),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        (
            dimension(),
            prop::collection::vec(prop::option::of("[a-z/]{0,4}"), 0..3)
        )
            .prop_map(|(d, v)| Filter::Is(d, v)),
        (
            dimension(),
            prop::collection::vec(prop::option::of("[a-z/]{0,4}"), 0..3)
        )
            .prop_map(|(d, v)| Filter::IsNot(d, v)),
        (dimension(), prop::collection::vec("[a-z/]{0,4}", 0..3))
            .prop_map(|(d, v)| Filter::Contains(d, v)),
        (
            dimension(),
            prop::sample::select(vec!["^/", "a|b", ".*", "x+$"])
        )
            .prop_map(|(d, p)| Filter::Matches(d, vec![Pattern::new(p).expect("pattern")])),
    ];
    leaf.prop_recursive(20, 40, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn date_range() -> impl Strategy<Value = DateRange> {
    let day =
        |n: u32| NaiveDate::from_ymd_opt(2020, 1, 1).expect("date") + chrono::Days::new(n.into());
    prop_oneof![
        3 => prop::sample::select(vec![
            DateRange::Day,
            DateRange::Last7Days,
            DateRange::Last30Days,
            DateRange::Month,
            DateRange::All,
        ]),
        1 => (0u32..5000, 0u32..5000).prop_map(move |(a, b)| DateRange::Custom(day(a), day(b))),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    (
        (
            prop_oneof![
                3 => prop::sample::subsequence(Metric::ALL.to_vec(), 1..4),
                1 => prop::collection::vec(prop::sample::select(Metric::ALL.to_vec()), 0..5),
            ],
            prop_oneof![
                3 => prop::sample::subsequence(
                    ["page", "source", "country", "prop:plan", "time:day", "entry_page"]
                        .map(|n| Dimension::parse(n).expect("known"))
                        .to_vec(),
                    0..3,
                ),
                1 => prop::collection::vec(dimension(), 0..6),
            ],
            prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(filter(), 0..3)],
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(Metric::ALL.to_vec()).prop_map(OrderKey::Metric),
                        (0usize..8).prop_map(OrderKey::Dimension),
                    ],
                    prop::bool::ANY,
                ),
                0..2,
            ),
        ),
        (
            prop_oneof![4 => 1usize..100, 1 => 0usize..200_000],
            prop_oneof![4 => 0usize..5, 1 => Just(usize::MAX), 1 => 0usize..20_000_000],
            date_range(),
            prop::bool::ANY,
            prop_oneof![2 => Just(None), 1 => prop::option::of((
                prop::sample::select(vec![
                    AttributionModel::FirstTouch,
                    AttributionModel::LastTouch,
                    AttributionModel::LastNonDirect,
                    AttributionModel::Linear,
                    AttributionModel::TimeDecay,
                    AttributionModel::PositionBased,
                ]),
                prop_oneof![3 => 1u32..60, 1 => 0u32..400],
                prop_oneof![3 => 0.5f64..30.0, 1 => Just(f64::NAN), 1 => Just(0.0), 1 => 0.01f64..400.0],
                prop_oneof![3 => 0.5f64..2.0, 1 => Just(f64::NAN), 1 => Just(-2.0)],
            ))],
        ),
    )
        .prop_map(
            |((metrics, dimensions, filters, order), (limit, offset, range, bots, attr))| {
                let mut q = Query::new("a.com");
                q.metrics = metrics;
                q.dimensions = dimensions;
                q.filters = filters;
                q.order_by = order
                    .into_iter()
                    .map(|(k, asc)| (k, if asc { Direction::Asc } else { Direction::Desc }))
                    .collect();
                q.limit = limit;
                q.offset = offset;
                q.date_range = range;
                q.include_bots = bots;
                if attr.is_some() && q.dimensions.iter().any(|d| !d.is_session_level()) {
                    // Mostly attribution-shaped: revenue and conversions by session-level dimensions.
                    q.metrics = vec![Metric::Revenue, Metric::Conversions];
                    q.dimensions.retain(Dimension::is_session_level);
                    q.order_by.clear();
                }
                q.attribution = attr.map(|(model, window_days, half_life_days, rate)| {
                    let mut a = Attribution::new(model);
                    a.window_days = window_days;
                    a.half_life_days = half_life_days;
                    a.rates = vec![(Currency::EUR, rate)];
                    a
                });
                q
            },
        )
}

fn named_field(e: &StoreError) -> bool {
    matches!(e, StoreError::Query(QueryError::Invalid { field, .. }) if !field.is_empty())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_rust_built_query_is_answered_or_refused_by_name(q in query()) {
        let (memory, scan_only) = stores();
        let site = Site::new("a.com");
        let direct = memory.query_sync(&site, &q, &now().into());
        let default = block_on(scan_only.query(&site, &q, &now().into()));
        match (&direct, &default) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => {
                prop_assert!(named_field(a), "{a}");
                prop_assert_eq!(a.to_string(), b.to_string());
            }
            _ => prop_assert!(false, "the engine and the defaults disagree: {direct:?} / {default:?}"),
        }
        prop_assert_eq!(direct.is_ok(), q.validate().is_ok());
    }

    #[test]
    fn any_rust_built_funnel_goals_or_realtime_request_is_answered_or_refused(
        steps in prop::collection::vec(("[a-z/*]{0,6}", 0u8..3), 0..24),
        window_ms in prop_oneof![Just(0i64), Just(i64::MAX), -5i64..100_000_000_000],
        range in date_range(),
        breakdown in prop::option::of(dimension()),
        minutes in 0u32..100,
        limit in 0usize..200,
    ) {
        let (memory, scan_only) = stores();
        let site = Site::new("a.com");
        let mut f = Funnel::new("a.com", steps.iter().map(|(s, k)| match k {
            0 => StepMatch::Page(s.clone()),
            1 => StepMatch::Goal(s.clone()),
            _ => StepMatch::Event(s.clone()),
        }).collect());
        f.window_ms = window_ms;
        f.date_range = range;
        f.breakdown = breakdown;
        let a = memory.funnel_sync(&site, &f, &now().into());
        let b = block_on(scan_only.funnel(&site, &f, &now().into()));
        match (&a, &b) {
            (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
            (Err(x), Err(_)) => prop_assert!(named_field(x), "{x}"),
            _ => prop_assert!(false, "funnel: {a:?} / {b:?}"),
        }
        let mut g = GoalsRequest::new("a.com", steps.iter().map(|(s, k)| GoalDefinition::new(
            s.clone(),
            match k { 0 => GoalMatch::Page(s.clone()), 1 => GoalMatch::Event(s.clone()), _ => GoalMatch::Attribute(s.clone()) },
        )).collect());
        g.date_range = range;
        let a = memory.goals_sync(&site, &g, &now().into());
        let b = block_on(scan_only.goals(&site, &g, &now().into()));
        match (&a, &b) {
            (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
            (Err(x), Err(_)) => prop_assert!(named_field(x), "{x}"),
            _ => prop_assert!(false, "goals: {a:?} / {b:?}"),
        }
        let mut r = RealtimeRequest::new("a.com");
        r.minutes = minutes;
        r.limit = limit;
        let a = memory.realtime_sync(&site, &r, &now().into());
        let b = block_on(scan_only.realtime(&site, &r, &now().into()));
        match (&a, &b) {
            (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
            (Err(x), Err(_)) => prop_assert!(named_field(x), "{x}"),
            _ => prop_assert!(false, "realtime: {a:?} / {b:?}"),
        }
    }
}
