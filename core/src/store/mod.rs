//! The storage traits every backend implements, in ripgrep's style: a few required
//! methods, and defaulted ones that run the reference engines over the required
//! ones, which a backend overrides to push the work into its database.
//!
//! - [`EventStore`]: events. Required: [`EventStore::append`] (idempotent by event
//!   id), [`EventStore::scan`] (bounded batches), [`EventStore::erase`]. Defaulted:
//!   `extent`, `query` (attribution included), `funnel`, `goals`, `realtime`,
//!   `stats`, the `reserve` hint, and the `prepare` / `append_prepared` pair for
//!   encoding off the commit path.
//! - [`ConfigStore`]: configuration (sites, saved goals and funnels, secrets,
//!   webhook delivery ids, salts): five required record methods, typed defaults.
//! - [`crate::SessionState`] and [`crate::SaltStore`] (in `state`): shared ingest state.
//!
//! The conformance suite (`beacon-testkit`) is the contract: every backend runs it
//! against [`crate::MemoryStore`] on the same fixtures.

mod analytics;
mod config;
pub(crate) mod reference;

pub use analytics::Analytics;
pub use config::{ConfigKey, ConfigKind, ConfigRecord, ConfigStore};

use crate::context::Context;
use crate::error::StoreError;
use crate::event::{Event, EventKind};
use crate::query::Query;
use crate::requests::{
    Funnel, FunnelResult, GoalsRequest, GoalsResult, RealtimeRequest, RealtimeResult,
};
use crate::result::QueryResult;
use crate::site::Site;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::any::Any;
use std::pin::Pin;

/// What to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EraseScope {
    /// Every event of one visitor (a GDPR request).
    Visitor(String),
    /// Every event of the site.
    All,
    /// Every event before this instant (retention).
    Before(DateTime<Utc>),
}

/// Erases each site's events older than its retention (whole days before `now`,
/// in UTC); returns, per site with something erased, how many events went.
pub async fn apply_retention(
    events: &dyn EventStore,
    config: &dyn ConfigStore,
    now: DateTime<Utc>,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut erased = Vec::new();
    let caps: std::collections::HashMap<String, u32> = config
        .agencies()
        .await?
        .into_iter()
        .filter_map(|a| Some((a.name, a.retention_days?)))
        .collect();
    for site in config.sites().await? {
        let days = caps
            .get(&site.agency)
            .map_or(site.retention_days, |&cap| cap.min(site.retention_days));
        let cutoff = (now - chrono::Duration::days(i64::from(days)))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc());
        let Some(cutoff) = cutoff else { continue };
        let n = events
            .erase(&site.domain, EraseScope::Before(cutoff))
            .await?;
        if n > 0 {
            erased.push((site.domain, n));
        }
    }
    Ok(erased)
}

/// What [`remove_agency`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgencyRemoval {
    /// Its sites, with how many events each had.
    pub sites: Vec<(String, u64)>,
    /// Its users (their login sessions ended).
    pub users: u64,
    /// Its tokens.
    pub tokens: u64,
}

/// Removes an agency and all it has: its sites (their events erased first, then
/// their configuration, see [`ConfigStore::remove_site`]), its users and their
/// sessions, its tokens. `Ok(None)` if there is no such agency.
pub async fn remove_agency(
    events: &dyn EventStore,
    config: &dyn ConfigStore,
    name: &str,
) -> Result<Option<AgencyRemoval>, StoreError> {
    if config.agency(name).await?.is_none() {
        return Ok(None);
    }
    let mut removed = AgencyRemoval::default();
    for site in config
        .sites()
        .await?
        .into_iter()
        .filter(|s| s.agency == name)
    {
        let n = events.erase(&site.domain, EraseScope::All).await?;
        config.remove_site(&site.domain).await?;
        removed.sites.push((site.domain, n));
    }
    for user in config
        .users()
        .await?
        .into_iter()
        .filter(|u| u.agency == name)
    {
        removed.users += u64::from(config.remove_user(&user.email).await?);
    }
    for token in config
        .tokens()
        .await?
        .into_iter()
        .filter(|t| t.agency == name)
    {
        let key = ConfigKey::new(ConfigKind::Token, "", &token.prefix);
        removed.tokens += u64::from(config.delete(&key).await?);
    }
    config
        .delete(&ConfigKey::new(ConfigKind::Agency, "", name))
        .await?;
    Ok(Some(removed))
}

/// The bit of [`EventKind::Refund`]: its position in [`EventKind::ALL`].
const REFUND_BIT: u8 = 1 << 5;

/// A set of [`EventKind`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindSet(u8);

impl KindSet {
    /// Every kind.
    pub const ALL: KindSet = KindSet(u8::MAX);
    /// Visitor activity: every kind but refunds.
    pub const ACTIVITY: KindSet = KindSet(!REFUND_BIT);
    /// Refunds only (the ledger).
    pub const REFUNDS: KindSet = KindSet(REFUND_BIT);

    fn bit(k: EventKind) -> u8 {
        1 << EventKind::ALL.iter().position(|x| *x == k).unwrap_or(7)
    }

    /// The set of `kinds`.
    ///
    /// ```
    /// use beacon_core::backend::KindSet;
    /// use beacon_core::EventKind;
    /// assert!(KindSet::ACTIVITY.contains(EventKind::Pageview));
    /// assert!(!KindSet::ACTIVITY.contains(EventKind::Refund));
    /// assert_eq!(KindSet::of(&[EventKind::Refund]), KindSet::REFUNDS);
    /// ```
    pub fn of(kinds: &[EventKind]) -> Self {
        KindSet(kinds.iter().fold(0, |m, k| m | Self::bit(*k)))
    }

    /// Whether `kind` is in the set.
    pub fn contains(&self, kind: EventKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    /// The kinds in the set, in [`EventKind::ALL`]'s order.
    pub fn kinds(&self) -> impl Iterator<Item = EventKind> + '_ {
        EventKind::ALL.into_iter().filter(|k| self.contains(*k))
    }
}

/// What [`EventStore::scan`] reads: one site's events with `from <= timestamp < to`
/// (unbounded where `None`), of some kinds, with or without bots, in batches of at
/// most `batch_size` events.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanRequest {
    /// The site's domain.
    pub site: String,
    /// First instant (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// End (exclusive).
    pub to: Option<DateTime<Utc>>,
    /// Whether events classified as bots are included (default: yes, a scan reads
    /// what is stored).
    pub include_bots: bool,
    /// Which kinds (default: all).
    pub kinds: KindSet,
    /// The most events in one batch (default [`ScanRequest::DEFAULT_BATCH`]).
    pub batch_size: usize,
}

impl ScanRequest {
    /// The default batch size.
    pub const DEFAULT_BATCH: usize = 8192;

    /// Every event of `site`.
    pub fn new(site: impl Into<String>) -> Self {
        Self {
            site: site.into(),
            from: None,
            to: None,
            include_bots: true,
            kinds: KindSet::ALL,
            batch_size: Self::DEFAULT_BATCH,
        }
    }

    /// Only events with `from <= timestamp < to`.
    pub fn between(mut self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Self {
        self.from = from;
        self.to = to;
        self
    }

    /// Leaves out events classified as bots.
    pub fn without_bots(mut self) -> Self {
        self.include_bots = false;
        self
    }

    /// Only events of these kinds.
    pub fn kinds(mut self, kinds: KindSet) -> Self {
        self.kinds = kinds;
        self
    }

    /// Batches of at most `n` events (at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The batch size to use (never 0).
    pub fn batch_limit(&self) -> usize {
        self.batch_size.max(1)
    }

    /// Whether `e` is one of the events asked for (backends that filter in Rust use it).
    pub fn matches(&self, e: &Event) -> bool {
        e.site == self.site
            && self.from.is_none_or(|f| e.timestamp >= f)
            && self.to.is_none_or(|t| e.timestamp < t)
            && (self.include_bots || !e.is_bot())
            && self.kinds.contains(e.kind)
    }
}

/// The events of a scan, in batches of at most the request's `batch_size`, in any
/// order. Events appended while a scan runs may or may not be seen.
pub type EventBatches<'a> =
    Pin<Box<dyn futures_core::Stream<Item = Result<Vec<Event>, StoreError>> + Send + 'a>>;

/// What [`EventStore::append`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppendReport {
    /// Events stored.
    pub stored: usize,
    /// Ids of events not stored because an event with that id was stored before
    /// (or earlier in the same batch).
    pub duplicates: Vec<uuid::Uuid>,
}

impl AppendReport {
    /// A report of `stored` events and the ids refused as duplicates.
    pub fn new(stored: usize, duplicates: Vec<uuid::Uuid>) -> Self {
        Self { stored, duplicates }
    }
}

/// Events made ready for [`EventStore::append_prepared`] by [`EventStore::prepare`]:
/// the events and whatever the backend encoded from them ahead of the commit.
pub struct PreparedEvents {
    events: Vec<Event>,
    payload: Option<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for PreparedEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedEvents")
            .field("events", &self.events.len())
            .field("payload", &self.payload.is_some())
            .finish()
    }
}

/// Encodes a chunk of events piece by piece, on the thread that makes them (see
/// [`EventStore::chunk_encoder`]).
pub trait ChunkEncoder: Send {
    /// Encodes the chunk's next events, in order.
    fn add(&mut self, events: &[Event]) -> Result<(), StoreError>;

    /// The prepared chunk. `events` are the events added, in the order added; a
    /// different number of them is an error.
    fn finish(self: Box<Self>, events: Vec<Event>) -> Result<PreparedEvents, StoreError>;
}

impl PreparedEvents {
    /// Events with nothing encoded.
    pub fn plain(events: Vec<Event>) -> Self {
        Self {
            events,
            payload: None,
        }
    }

    /// Events with the backend's own encoding of them.
    pub fn with_payload(events: Vec<Event>, payload: Box<dyn Any + Send + Sync>) -> Self {
        Self {
            events,
            payload: Some(payload),
        }
    }

    /// The events.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The backend's payload, if it encoded one.
    pub fn payload(&self) -> Option<&(dyn Any + Send + Sync)> {
        self.payload.as_deref()
    }

    /// The events and the payload.
    pub fn into_parts(self) -> (Vec<Event>, Option<Box<dyn Any + Send + Sync>>) {
        (self.events, self.payload)
    }
}

/// What a store holds, for health checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Events stored (`None` when the backend does not count cheaply).
    pub events: Option<u64>,
    /// Heap bytes the store's in-memory part holds, if it has one.
    pub heap_bytes: Option<u64>,
}

impl StoreStats {
    /// Stats of `events` events in `heap_bytes` of memory.
    pub fn new(events: Option<u64>, heap_bytes: Option<u64>) -> Self {
        Self { events, heap_bytes }
    }
}

/// Writing, reading and erasing events, and answering every request kind.
///
/// Site settings (time zone, session timeout, currency) come with each request as
/// a [`Site`]: an event store does not own configuration (see [`ConfigStore`]).
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events, all or none of them. Idempotent by event id: an event whose
    /// id is stored already (or came earlier in `events`) is not stored again and
    /// is reported in [`AppendReport::duplicates`]. Events with the nil id are
    /// always stored.
    async fn append(&self, events: &[Event]) -> Result<AppendReport, StoreError>;

    /// The events `req` asks for, in batches of at most `req.batch_size`, in any order.
    async fn scan(&self, req: &ScanRequest) -> Result<EventBatches<'_>, StoreError>;

    /// Erases events of `site`; returns how many were removed.
    async fn erase(&self, site: &str, scope: EraseScope) -> Result<u64, StoreError>;

    /// A hint that about `additional` more events of `site` are coming (an import
    /// that knows its input's size): a store that holds events in memory makes room
    /// for them at once rather than regrowing its columns step by step. The default
    /// does nothing.
    fn reserve(&self, site: &str, additional: usize) {
        let _ = (site, additional);
    }

    /// Encodes `events` for [`EventStore::append_prepared`] on the calling thread
    /// (CPU only: importers call it on every core, so that commits only write). The
    /// default encodes nothing.
    fn prepare(&self, events: Vec<Event>) -> Result<PreparedEvents, StoreError> {
        Ok(PreparedEvents::plain(events))
    }

    /// An encoder for a chunk whose events come in pieces as they are made, for
    /// [`EventStore::append_prepared`]: an importer's worker hands each piece over
    /// while it is still in the cache, instead of the whole chunk at the end. `None`
    /// (the default) leaves the chunk to [`EventStore::prepare`].
    fn chunk_encoder(&self) -> Option<Box<dyn ChunkEncoder>> {
        None
    }

    /// Appends prepared events, exactly as [`EventStore::append`] would. The caller
    /// keeps them: an importer empties and refills the same buffers chunk after
    /// chunk rather than faulting in fresh ones of tens of megabytes.
    async fn append_prepared(&self, events: &PreparedEvents) -> Result<AppendReport, StoreError> {
        self.append(events.events()).await
    }

    /// The first and last instants of `site`'s stored events (refunds included),
    /// `None` without events. `"date_range": "all"` resolves with it. The default
    /// scans every event.
    async fn extent(
        &self,
        site: &str,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        reference::extent(self, site).await
    }

    /// How many events `req` asks for (its batch size aside): plan quotas count a
    /// month with it. The default scans them.
    async fn count(&self, req: &ScanRequest) -> Result<u64, StoreError> {
        let mut n = 0u64;
        let mut batches = self.scan(req).await?;
        while let Some(batch) = futures_util::TryStreamExt::try_next(&mut batches).await? {
            n += batch.len() as u64;
        }
        Ok(n)
    }

    /// Answers a query (attribution included) for `site` as of `cx.now`, stopping
    /// with [`crate::QueryError::Stopped`] once `cx` is cancelled. The default
    /// scans the query's range, widened until every session it touches is whole
    /// (and, for attribution, back by the window), into the reference engine.
    async fn query(
        &self,
        site: &Site,
        query: &Query,
        cx: &Context,
    ) -> Result<QueryResult, StoreError> {
        reference::query(self, site, query, cx).await
    }

    /// Answers a funnel. The default scans the range (widened for a breakdown).
    async fn funnel(
        &self,
        site: &Site,
        funnel: &Funnel,
        cx: &Context,
    ) -> Result<FunnelResult, StoreError> {
        reference::funnel(self, site, funnel, cx).await
    }

    /// Counts goal conversions. The default scans the range.
    async fn goals(
        &self,
        site: &Site,
        goals: &GoalsRequest,
        cx: &Context,
    ) -> Result<GoalsResult, StoreError> {
        reference::goals(self, site, goals, cx).await
    }

    /// Visitors in the last minutes. The default scans back to the start of the
    /// visits active then.
    async fn realtime(
        &self,
        site: &Site,
        req: &RealtimeRequest,
        cx: &Context,
    ) -> Result<RealtimeResult, StoreError> {
        reference::realtime(self, site, req, cx).await
    }

    /// What the store holds, for health checks. The default knows nothing.
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(StoreStats::default())
    }
}
