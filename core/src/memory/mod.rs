//! [`MemoryStore`]: the in-memory columnar reference engine.

mod exec;
mod table;

use crate::columns::EventColumns;
use crate::error::{QueryError, StoreError};
use crate::event::Event;
use crate::query::Query;
use crate::result::QueryResult;
use crate::site::Site;
use crate::store::{EraseScope, EventStore, SiteStore};
use crate::time::local_date;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;
use table::SiteTable;

#[derive(Debug, Default)]
struct Inner {
    sites: BTreeMap<String, Site>,
    tables: HashMap<String, SiteTable>,
    /// Refunds per site, in arrival order (ledger entries, not activity).
    ledger: HashMap<String, Vec<Event>>,
}

/// The in-memory reference engine: answers every query of the contract.
///
/// Per site, events are held in dictionary-encoded columns; after new appends the
/// next query orders them by (visitor, time) and derives sessions as their own
/// columns, so that metrics are one sequential pass. Events of unknown sites are
/// refused. Safe to share across threads.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

/// Memory held by a [`MemoryStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Events stored.
    pub events: usize,
    /// Heap bytes of columns, dictionaries and sessions.
    pub heap_bytes: usize,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates or replaces a site (synchronous form of [`SiteStore::put_site`]).
    pub fn put_site_sync(&self, site: Site) -> Result<(), StoreError> {
        site.validate()?;
        let mut inner = self.write();
        let timeout = site.session_timeout_ms();
        inner
            .tables
            .entry(site.domain.clone())
            .or_insert_with(|| SiteTable::new(timeout))
            .set_timeout(timeout);
        inner.sites.insert(site.domain.clone(), site);
        Ok(())
    }

    /// Makes room for `additional` more events of `site` (a loader that knows how many
    /// it will append saves the columns' regrowth). Unknown sites are ignored.
    pub fn reserve_sync(&self, site: &str, additional: usize) {
        if let Some(t) = self.write().tables.get_mut(site) {
            t.reserve(additional);
        }
    }

    /// Appends events (synchronous form of [`EventStore::append`]). The whole batch is
    /// refused when one event names an unknown site.
    pub fn append_sync(&self, events: &[Event]) -> Result<(), StoreError> {
        let mut inner = self.write();
        // Events come in runs of one site: look each run's table up once.
        let runs = || {
            let mut rest = events;
            std::iter::from_fn(move || {
                let first = rest.first()?;
                let n = rest.iter().take_while(|e| e.site == first.site).count();
                let (run, tail) = rest.split_at(n);
                rest = tail;
                Some(run)
            })
        };
        if let Some(run) = runs().find(|run| !inner.sites.contains_key(&run[0].site)) {
            return Err(StoreError::UnknownSite(run[0].site.clone()));
        }
        for run in runs() {
            let site = run[0].site.as_str();
            if let Some(t) = inner.tables.get_mut(site) {
                for e in run.iter().filter(|e| e.kind.is_activity()) {
                    t.push(e);
                }
            }
            // Refunds are ledger entries, kept apart from the sessionized table.
            let refunds: Vec<Event> = run
                .iter()
                .filter(|e| !e.kind.is_activity())
                .cloned()
                .collect();
            if !refunds.is_empty() {
                inner
                    .ledger
                    .entry(site.to_owned())
                    .or_default()
                    .extend(refunds);
            }
        }
        Ok(())
    }

    /// Orders newly appended events and derives sessions now, rather than on the next query.
    pub fn build(&self) {
        let mut inner = self.write();
        for t in inner.tables.values_mut() {
            t.build();
        }
    }

    /// Answers a query (synchronous form of [`EventStore::query`]).
    pub fn query_sync(
        &self,
        site: &Site,
        query: &Query,
        now: DateTime<Utc>,
    ) -> Result<QueryResult, StoreError> {
        {
            let mut inner = self.write();
            match inner.tables.get_mut(&site.domain) {
                Some(t) => t.build(),
                None => return Err(QueryError::UnknownSite(site.domain.clone()).into()),
            }
        }
        let inner = self.read();
        let table = inner
            .tables
            .get(&site.domain)
            .ok_or_else(|| QueryError::UnknownSite(site.domain.clone()))?;
        Ok(exec::execute(
            table,
            site,
            query,
            local_date(site.timezone, now),
        )?)
    }

    /// One site's settings (synchronous form of [`SiteStore::site`]).
    pub fn site_sync(&self, domain: &str) -> Option<Site> {
        self.read().sites.get(domain).cloned()
    }

    /// Every site's settings, ordered by domain.
    pub fn sites_sync(&self) -> Vec<Site> {
        self.read().sites.values().cloned().collect()
    }

    /// Events and heap bytes held.
    pub fn memory_usage(&self) -> MemoryUsage {
        let inner = self.read();
        MemoryUsage {
            events: inner.tables.values().map(SiteTable::len).sum::<usize>()
                + inner.ledger.values().map(Vec::len).sum::<usize>(),
            heap_bytes: inner.tables.values().map(SiteTable::heap_bytes).sum(),
        }
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, events: &[Event]) -> Result<(), StoreError> {
        self.append_sync(events)
    }

    async fn scan(
        &self,
        site: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Event>, StoreError> {
        let inner = self.read();
        let t = inner
            .tables
            .get(site)
            .ok_or_else(|| StoreError::UnknownSite(site.to_owned()))?;
        let (lo, hi) = (
            from.map_or(i64::MIN, |f| f.timestamp_millis()),
            to.map_or(i64::MAX, |t| t.timestamp_millis()),
        );
        let mut out: Vec<Event> = (0..t.len())
            .filter(|&r| t.ts[r] >= lo && t.ts[r] < hi)
            .map(|r| t.event(site, r))
            .collect();
        out.extend(
            inner
                .ledger
                .get(site)
                .into_iter()
                .flatten()
                .filter(|e| {
                    let ms = e.timestamp.timestamp_millis();
                    ms >= lo && ms < hi
                })
                .cloned(),
        );
        Ok(out)
    }

    async fn columns(
        &self,
        site: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        include_bots: bool,
    ) -> Result<EventColumns, StoreError> {
        {
            let mut inner = self.write();
            inner
                .tables
                .get_mut(site)
                .ok_or_else(|| StoreError::UnknownSite(site.to_owned()))?
                .build();
        }
        let inner = self.read();
        let t = inner
            .tables
            .get(site)
            .ok_or_else(|| StoreError::UnknownSite(site.to_owned()))?;
        Ok(t.columns(
            from.map_or(i64::MIN, |f| f.timestamp_millis()),
            to.map_or(i64::MAX, |t| t.timestamp_millis()),
            include_bots,
        ))
    }

    async fn erase(&self, site: &str, scope: EraseScope) -> Result<u64, StoreError> {
        let mut guard = self.write();
        let inner = &mut *guard;
        let t = inner
            .tables
            .get_mut(site)
            .ok_or_else(|| StoreError::UnknownSite(site.to_owned()))?;
        let ledger = inner.ledger.entry(site.to_owned()).or_default();
        let before = ledger.len();
        let erased = match scope {
            EraseScope::All => {
                ledger.clear();
                t.retain_rows(|_, _| false)
            }
            EraseScope::Visitor(v) => {
                ledger.retain(|e| e.identity.visitor_id != v);
                match t.visitors.lookup(&v) {
                    Some(id) => t.retain_rows(|t, r| t.visitor[r] != id),
                    None => 0,
                }
            }
        };
        Ok(erased + (before - ledger.len()) as u64)
    }

    async fn query(
        &self,
        site: &Site,
        query: &Query,
        now: DateTime<Utc>,
    ) -> Result<QueryResult, StoreError> {
        self.query_sync(site, query, now)
    }
}

#[async_trait]
impl SiteStore for MemoryStore {
    async fn put_site(&self, site: Site) -> Result<(), StoreError> {
        self.put_site_sync(site)
    }
    async fn site(&self, domain: &str) -> Result<Option<Site>, StoreError> {
        Ok(self.read().sites.get(domain).cloned())
    }
    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        Ok(self.read().sites.values().cloned().collect())
    }
    async fn remove_site(&self, domain: &str) -> Result<bool, StoreError> {
        let mut inner = self.write();
        inner.tables.remove(domain);
        inner.ledger.remove(domain);
        Ok(inner.sites.remove(domain).is_some())
    }
}
