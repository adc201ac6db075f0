//! Fixture events and the harness that checks a backend against the reference.

use beacon_core::{
    run_query, BotInfo, Currency, DeviceType, Event, EventKind, MemoryStore, Money, Query,
    QueryResult, Site, Store, VisitorType,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

/// A UTC instant from `"2026-03-01T10:00:00"`.
pub fn at(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|e| panic!("fixture time {s:?}: {e}"))
        .and_utc()
}

/// A fixture event under construction.
#[derive(Debug, Clone)]
pub struct Ev(Event);

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
    store: &'a dyn Store,
    reference: MemoryStore,
    /// The site (its domain is unique per case, so cases may share a database).
    pub site: Site,
    /// "Now" for relative date ranges.
    pub now: DateTime<Utc>,
}

/// "Now" of every case unless a case says otherwise.
const NOW: &str = "2026-03-10T12:00:00";

impl<'a> Fixture<'a> {
    /// Creates `site` in both stores and appends `events` (ids numbered in fixture order).
    pub async fn new(store: &'a dyn Store, site: Site, events: Vec<Ev>) -> Fixture<'a> {
        let f = Fixture {
            store,
            reference: MemoryStore::new(),
            site,
            now: at(NOW),
        };
        store
            .put_site(f.site.clone())
            .await
            .expect("backend accepts the site");
        f.reference
            .put_site_sync(f.site.clone())
            .expect("reference accepts the site");
        f.append(events, 0).await;
        f
    }

    /// Appends more events; `first_id` numbers them.
    pub async fn append(&self, events: Vec<Ev>, first_id: u128) {
        let events: Vec<Event> = events
            .into_iter()
            .enumerate()
            .map(|(i, Ev(mut e))| {
                e.id = uuid::Uuid::from_u128(first_id + i as u128 + 1);
                e.site = self.site.domain.clone();
                e.page.host = self.site.domain.clone();
                e.page.url = format!("https://{}{}", e.site, e.page.path);
                e
            })
            .collect();
        self.store.append(&events).await.expect("backend appends");
        self.reference
            .append_sync(&events)
            .expect("reference appends");
    }

    /// The backend under test.
    pub fn store(&self) -> &dyn Store {
        self.store
    }

    /// The reference store with the same events.
    pub fn reference(&self) -> &MemoryStore {
        &self.reference
    }

    /// Runs `query` (its `site` is filled in) on both stores; asserts they agree.
    pub async fn query(&self, mut query: Value) -> QueryResult {
        query["site"] = Value::String(self.site.domain.clone());
        let q = Query::from_value(&query).unwrap_or_else(|e| panic!("fixture query {query}: {e}"));
        let got = run_query(self.store, &q, self.now)
            .await
            .unwrap_or_else(|e| panic!("backend query {query}: {e}"));
        let want = run_query(&self.reference, &q, self.now)
            .await
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
}
