//! Fixture events and the harness that checks a backend against the reference.

use beacon_core::backend::{AppendReport, ScanRequest};
use beacon_core::{
    BotInfo, Context, Currency, DeviceType, EraseScope, Event, EventKind, EventStore, Funnel,
    FunnelResult, GoalsRequest, GoalsResult, MemoryStore, Money, Query, QueryResult,
    RealtimeRequest, RealtimeResult, Site, VisitorType,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::TryStreamExt;
use serde_json::Value;
use std::sync::OnceLock;

/// A UTC instant from `"2026-03-01T10:00:00"`.
pub fn at(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|e| panic!("fixture time {s:?}: {e}"))
        .and_utc()
}

/// A tag unique to this process: sites are named with it, so that the suite can run
/// again and again against one persistent database.
pub fn run_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let mut b = [0u8; 4];
        beacon_core::RandomSource::fill(&beacon_core::OsRandom, &mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    })
}

/// A site named after a case, unique to this run: `<name>-<run tag>.conformance.test`.
pub fn site(name: &str) -> Site {
    Site::new(format!("{name}-{}.conformance.test", run_tag()))
}

/// A fixture event under construction.
#[derive(Debug, Clone)]
pub struct Ev(pub Event);

impl Ev {
    fn new(kind: EventKind, visitor: &str, time: &str, path: &str) -> Self {
        let mut e = Event {
            kind,
            timestamp: at(time),
            ..Event::default()
        };
        e.identity.visitor_id = visitor.to_owned();
        e.page.path = path.to_owned();
        Ev(e)
    }
    /// A pageview.
    pub fn pageview(visitor: &str, time: &str, path: &str) -> Self {
        Self::new(EventKind::Pageview, visitor, time, path)
    }
    /// A goal named `name` on `path`.
    pub fn goal(visitor: &str, time: &str, path: &str, name: &str) -> Self {
        let mut e = Self::new(EventKind::Goal, visitor, time, path);
        e.0.name = Some(name.to_owned());
        e
    }
    /// A custom event named `name`.
    pub fn custom(visitor: &str, time: &str, path: &str, name: &str) -> Self {
        let mut e = Self::new(EventKind::Custom, visitor, time, path);
        e.0.name = Some(name.to_owned());
        e
    }
    /// A purchase of `amount` (decimal string) in `currency`.
    pub fn purchase(visitor: &str, time: &str, path: &str, amount: &str, currency: &str) -> Self {
        let mut e = Self::new(EventKind::Purchase, visitor, time, path);
        e.0.name = Some("purchase".into());
        let c = Currency::parse(currency).expect("fixture currency");
        e.0.commerce.revenue = Some(Money::parse(amount, c).expect("fixture amount"));
        e
    }
    /// A refund of order `order` (of `amount` when given: a partial refund).
    pub fn refund(visitor: &str, time: &str, order: &str, amount: Option<(&str, &str)>) -> Self {
        let mut e = Self::new(EventKind::Refund, visitor, time, "/");
        e.0.commerce.order_id = Some(order.to_owned());
        e.0.commerce.revenue = amount.map(|(a, c)| {
            Money::parse(a, Currency::parse(c).expect("fixture currency")).expect("fixture amount")
        });
        e
    }
    /// Sets the order id.
    pub fn order(mut self, id: &str) -> Self {
        self.0.commerce.order_id = Some(id.into());
        self
    }
    /// Sets a goal's value.
    pub fn value(mut self, amount: &str, currency: &str) -> Self {
        let c = Currency::parse(currency).expect("fixture currency");
        self.0.commerce.goal_value = Some(Money::parse(amount, c).expect("fixture amount"));
        self
    }
    /// An engagement report for `path`.
    pub fn engagement(
        visitor: &str,
        time: &str,
        path: &str,
        time_ms: Option<u64>,
        scroll: Option<u8>,
    ) -> Self {
        let mut e = Self::new(EventKind::Engagement, visitor, time, path);
        e.0.engagement.time_ms = time_ms;
        e.0.engagement.scroll_depth = scroll;
        e
    }
    /// Sets the source.
    pub fn source(mut self, s: &str) -> Self {
        self.0.acquisition.source = Some(s.into());
        self
    }
    /// Sets the channel.
    pub fn channel(mut self, s: &str) -> Self {
        self.0.acquisition.channel = Some(s.into());
        self
    }
    /// Sets utm_campaign.
    pub fn campaign(mut self, s: &str) -> Self {
        self.0.acquisition.utm.campaign = Some(s.into());
        self
    }
    /// Sets the country.
    pub fn country(mut self, s: &str) -> Self {
        self.0.location.country = Some(s.into());
        self
    }
    /// Sets device type, browser and OS.
    pub fn device(mut self, d: DeviceType, browser: &str, os: &str) -> Self {
        self.0.device.device_type = Some(d);
        self.0.device.browser = Some(browser.into());
        self.0.device.os = Some(os.into());
        self
    }
    /// Sets the visitor type.
    pub fn visitor_type(mut self, v: VisitorType) -> Self {
        self.0.network.visitor_type = Some(v);
        self
    }
    /// Adds a custom property.
    pub fn prop(mut self, k: &str, v: &str) -> Self {
        self.0.props.insert(k.into(), v.into());
        self
    }
    /// Marks as a bot.
    pub fn bot(mut self, reason: &str) -> Self {
        self.0.bot = Some(BotInfo {
            reason: reason.into(),
        });
        self
    }
}

/// One case's site, loaded into the backend under test and into the reference.
pub struct Fixture<'a> {
    store: &'a dyn EventStore,
    reference: MemoryStore,
    /// The site (unique per case and run, so cases may share a database).
    pub site: Site,
    /// "Now" for relative date ranges.
    pub now: DateTime<Utc>,
}

/// "Now" of every case unless a case says otherwise.
pub const NOW: &str = "2026-03-10T12:00:00";

impl<'a> Fixture<'a> {
    /// Appends `events` of `site` to both stores (ids numbered in fixture order).
    pub async fn new(store: &'a dyn EventStore, site: Site, events: Vec<Ev>) -> Fixture<'a> {
        let f = Fixture {
            store,
            reference: MemoryStore::new(),
            site,
            now: at(NOW),
        };
        f.append(events, 0).await;
        f
    }

    /// The events of `events` as stored: `first_id + 1`, `first_id + 2`, ... as ids,
    /// this site's domain, host and URL.
    pub fn events(&self, events: Vec<Ev>, first_id: u128) -> Vec<Event> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, Ev(mut e))| {
                e.id = uuid::Uuid::from_u128(first_id + i as u128 + 1);
                e.site = self.site.domain.clone();
                e.page.host = self.site.domain.clone();
                e.page.url = format!("https://{}{}", e.site, e.page.path);
                e
            })
            .collect()
    }

    /// Appends more events (ids from `first_id + 1`); returns the backend's report,
    /// asserted equal to the reference's.
    pub async fn append(&self, events: Vec<Ev>, first_id: u128) -> AppendReport {
        let events = self.events(events, first_id);
        self.append_events(&events).await
    }

    /// Appends events as they are to both stores; asserts the reports agree.
    pub async fn append_events(&self, events: &[Event]) -> AppendReport {
        let got = self.store.append(events).await.expect("backend appends");
        let want = self
            .reference
            .append_sync(events)
            .expect("reference appends");
        assert_eq!(got, want, "append reports of backend and reference differ");
        got
    }

    /// The backend under test.
    pub fn store(&self) -> &dyn EventStore {
        self.store
    }

    /// The reference store with the same events.
    pub fn reference(&self) -> &MemoryStore {
        &self.reference
    }

    /// The case's request context: its "now", not cancelled.
    pub fn cx(&self) -> Context {
        Context::at(self.now)
    }

    fn with_site(&self, mut v: Value) -> Value {
        v["site"] = Value::String(self.site.domain.clone());
        v
    }

    /// Runs `query` (its `site` is filled in) on both stores; asserts they agree.
    pub async fn query(&self, query: Value) -> QueryResult {
        let query = self.with_site(query);
        let q = Query::from_value(&query).unwrap_or_else(|e| panic!("fixture query {query}: {e}"));
        let got = self
            .store
            .query(&self.site, &q, &self.cx())
            .await
            .unwrap_or_else(|e| panic!("backend query {query}: {e}"));
        let want = self
            .reference
            .query_sync(&self.site, &q, &self.cx())
            .expect("reference query");
        assert_eq!(got, want, "backend and reference differ for {query}");
        got
    }

    /// Runs `query` and asserts its rows: (dimension values, metric values) in order.
    pub async fn expect(&self, query: Value, rows: &[(&[Option<&str>], &[f64])]) -> QueryResult {
        let r = self.query(query.clone()).await;
        let got: Vec<(Vec<Option<String>>, Vec<f64>)> = r
            .rows
            .iter()
            .map(|row| {
                (
                    row.dimensions.clone(),
                    row.metrics.iter().map(|m| m.as_f64()).collect(),
                )
            })
            .collect();
        let want: Vec<(Vec<Option<String>>, Vec<f64>)> = rows
            .iter()
            .map(|(d, m)| (d.iter().map(|x| x.map(str::to_owned)).collect(), m.to_vec()))
            .collect();
        assert_eq!(got, want, "rows of {query}");
        r
    }

    /// Runs a funnel (its `site` filled in) on both stores; asserts they agree.
    pub async fn funnel(&self, funnel: Value) -> FunnelResult {
        let funnel = self.with_site(funnel);
        let f =
            Funnel::from_value(&funnel).unwrap_or_else(|e| panic!("fixture funnel {funnel}: {e}"));
        let got = self
            .store
            .funnel(&self.site, &f, &self.cx())
            .await
            .unwrap_or_else(|e| panic!("backend funnel {funnel}: {e}"));
        let want = self
            .reference
            .funnel_sync(&self.site, &f, &self.cx())
            .expect("reference funnel");
        assert_eq!(got, want, "backend and reference differ for {funnel}");
        got
    }

    /// Runs a funnel and asserts the visitors at each step.
    pub async fn expect_funnel(&self, funnel: Value, visitors: &[u64]) -> FunnelResult {
        let r = self.funnel(funnel.clone()).await;
        let got: Vec<u64> = r.steps.iter().map(|s| s.visitors).collect();
        assert_eq!(got, visitors, "visitors per step of {funnel}");
        r
    }

    /// Runs a goals request (its `site` filled in) on both stores; asserts they agree.
    pub async fn goals(&self, goals: Value) -> GoalsResult {
        let goals = self.with_site(goals);
        let g = GoalsRequest::from_value(&goals)
            .unwrap_or_else(|e| panic!("fixture goals {goals}: {e}"));
        let got = self
            .store
            .goals(&self.site, &g, &self.cx())
            .await
            .unwrap_or_else(|e| panic!("backend goals {goals}: {e}"));
        let want = self
            .reference
            .goals_sync(&self.site, &g, &self.cx())
            .expect("reference goals");
        assert_eq!(got, want, "backend and reference differ for {goals}");
        got
    }

    /// Realtime for the last `minutes` as of `now` on both stores; asserts they agree.
    pub async fn realtime(&self, minutes: u32, now: DateTime<Utc>) -> RealtimeResult {
        let mut r = RealtimeRequest::new(self.site.domain.clone());
        r.minutes = minutes;
        let got = self
            .store
            .realtime(&self.site, &r, &Context::at(now))
            .await
            .unwrap_or_else(|e| panic!("backend realtime: {e}"));
        let want = self
            .reference
            .realtime_sync(&self.site, &r, &Context::at(now))
            .expect("reference realtime");
        assert_eq!(got, want, "backend and reference differ for realtime");
        got
    }

    /// The backend's scan of `req`, batch by batch.
    pub async fn scan(&self, req: &ScanRequest) -> Vec<Vec<Event>> {
        let mut batches = self.store.scan(req).await.expect("backend scans");
        let mut out = Vec::new();
        while let Some(b) = batches.try_next().await.expect("backend scan batch") {
            out.push(b);
        }
        out
    }

    /// The ids of every event `req` gives, sorted.
    pub async fn scan_ids(&self, req: &ScanRequest) -> Vec<u128> {
        let mut ids: Vec<u128> = self
            .scan(req)
            .await
            .into_iter()
            .flatten()
            .map(|e| e.id.as_u128())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Erases on both stores; asserts they removed as many; returns that.
    pub async fn erase(&self, scope: EraseScope) -> u64 {
        let got = self
            .store
            .erase(&self.site.domain, scope.clone())
            .await
            .expect("backend erases");
        let want = self
            .reference
            .erase(&self.site.domain, scope)
            .await
            .expect("reference erases");
        assert_eq!(got, want, "erased counts differ");
        got
    }
}
