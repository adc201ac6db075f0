//! Storage traits. A backend implements the few required methods; `query` has a
//! default that runs the reference engine over a scan, which a backend overrides to
//! push the work into its database (the conformance suite judges the result).

use crate::columns::EventColumns;
use crate::error::{QueryError, StoreError};
use crate::event::Event;
use crate::query::Query;
use crate::result::QueryResult;
use crate::site::Site;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// What to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseScope {
    /// Every event of one visitor (a GDPR request).
    Visitor(String),
    /// Every event of the site.
    All,
}

/// Writing, reading and erasing events.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends a batch; all of it is stored or none of it.
    async fn append(&self, events: &[Event]) -> Result<(), StoreError>;

    /// The site's events with `from <= timestamp < to` (unbounded where `None`), in any order.
    async fn scan(
        &self,
        site: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Event>, StoreError>;

    /// Erases events; returns how many were removed.
    async fn erase(&self, site: &str, scope: EraseScope) -> Result<u64, StoreError>;

    /// The site's activity events with `from <= timestamp < to` as columns in
    /// canonical order (bots left out unless `include_bots`).
    ///
    /// The default builds them from [`EventStore::scan`]; a backend whose data is
    /// already columnar overrides it.
    async fn columns(
        &self,
        site: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        include_bots: bool,
    ) -> Result<EventColumns, StoreError> {
        let events = self.scan(site, from, to).await?;
        Ok(EventColumns::from_events(&events, include_bots))
    }

    /// Answers a query for `site` as of `now` (relative date ranges resolve against it).
    ///
    /// The default scans the site's whole history (sessions may start before the
    /// range) into the reference engine. Override it to push work into the database.
    async fn query(
        &self,
        site: &Site,
        query: &Query,
        now: DateTime<Utc>,
    ) -> Result<QueryResult, StoreError> {
        let events = self.scan(&site.domain, None, None).await?;
        let store = crate::memory::MemoryStore::new();
        store.put_site_sync(site.clone())?;
        store.append_sync(&events)?;
        store.query_sync(site, query, now)
    }
}

/// Sites and their settings.
#[async_trait]
pub trait SiteStore: Send + Sync {
    /// Creates or replaces a site.
    async fn put_site(&self, site: Site) -> Result<(), StoreError>;
    /// One site.
    async fn site(&self, domain: &str) -> Result<Option<Site>, StoreError>;
    /// Every site, ordered by domain.
    async fn sites(&self) -> Result<Vec<Site>, StoreError>;
    /// Removes a site and its events; whether it existed.
    async fn remove_site(&self, domain: &str) -> Result<bool, StoreError>;
}

/// A complete backend: events and sites.
pub trait Store: EventStore + SiteStore {}
impl<T: EventStore + SiteStore + ?Sized> Store for T {}

/// The site `domain`, or the unknown-site error every query path reports.
pub async fn site_or_unknown(store: &dyn Store, domain: &str) -> Result<Site, StoreError> {
    store
        .site(domain)
        .await?
        .ok_or_else(|| QueryError::UnknownSite(domain.to_owned()).into())
}

/// Looks up the query's site and runs the query on `store` as of `now`.
pub async fn run_query(
    store: &dyn Store,
    query: &Query,
    now: DateTime<Utc>,
) -> Result<QueryResult, StoreError> {
    let site = site_or_unknown(store, &query.site).await?;
    store.query(&site, query, now).await
}
