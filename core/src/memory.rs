//! [`MemoryStore`]: the in-memory columnar reference engine, and [`MemoryConfig`]:
//! configuration in memory.

use crate::context::Context;
use crate::engine::{self, Dec, Enc, SiteData};
use crate::error::StoreError;
use crate::event::Event;
use crate::query::{DateRange, Query, ResolvedRange};
use crate::requests::{
    Funnel, FunnelResult, GoalsRequest, GoalsResult, RealtimeRequest, RealtimeResult,
};
use crate::result::QueryResult;
use crate::site::Site;
use crate::store::reference::{realtime_since, same_site};
use crate::store::{
    AppendReport, ConfigKey, ConfigKind, ConfigRecord, ConfigStore, EraseScope, EventBatches,
    EventStore, ScanRequest, StoreStats,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The in-memory reference engine: answers every request kind of the contract.
///
/// Per site, events are held in dictionary-encoded columns; after new appends the
/// next request orders them by (visitor, time, id) and derives sessions as their own
/// columns (with the session timeout of the [`Site`] it is asked for), so that
/// metrics are one sequential pass. Appends are idempotent by event id (an id
/// index per site). Safe to share across threads.
///
/// It keeps the fields its engines use: id, site, kind, name, time, visitor, path
/// and host, source, referrer, channel, UTM tags, device type, browser, OS, country,
/// region, city, company, visitor type, bot reason, revenue, goal value, order id,
/// properties, engaged time and scroll depth. [`EventStore::scan`] gives events
/// back with those fields. It also holds configuration ([`ConfigStore`]) in a
/// [`MemoryConfig`], so that one value serves an app that embeds Beacon.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Held only to find or add a site's slot: never across a request.
    sites: RwLock<HashMap<String, Arc<SiteSlot>>>,
    config: MemoryConfig,
}

/// The first bytes of a memory snapshot (its format's version is the last two; 04
/// put the time, visitor, name, path, client and acquisition columns in byte planes;
/// an 03 snapshot is not read: the store loads its log instead).
const SNAPSHOT_MAGIC: &[u8; 8] = b"BCNMEM04";

/// One site: its data, read by requests, and the intake where appends wait while
/// requests hold the data.
#[derive(Debug)]
struct SiteSlot {
    data: RwLock<SiteData>,
    intake: Mutex<Intake>,
}

/// Events appended while requests held a site's data, in arrival order, and their
/// ids; merged into the data before the next request reads it.
#[derive(Debug, Default)]
struct Intake {
    events: Vec<Event>,
    ids: HashSet<u128>,
}

/// Memory held by a [`MemoryStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Events stored.
    pub events: usize,
    /// Heap bytes of columns, dictionaries, sessions and the id index.
    pub heap_bytes: usize,
}

impl SiteSlot {
    fn new() -> Self {
        Self {
            data: RwLock::new(SiteData::new(
                i64::from(Site::DEFAULT_SESSION_TIMEOUT_SECS) * 1000,
            )),
            intake: Mutex::new(Intake::default()),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, SiteData> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    fn intake(&self) -> MutexGuard<'_, Intake> {
        self.intake.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The data under its write lock, with the intake merged in.
    fn write(&self) -> RwLockWriteGuard<'_, SiteData> {
        let mut data = self.data.write().unwrap_or_else(|e| e.into_inner());
        Self::merge(&mut data, &mut self.intake());
        data
    }

    /// The data under its read lock, with everything appended before the call in it.
    fn settled(&self) -> RwLockReadGuard<'_, SiteData> {
        if !self.intake().events.is_empty() {
            drop(self.write());
        }
        self.read()
    }

    /// Moves the intake's events into the data (an id held already was counted
    /// stored when it waited: it is dropped here).
    fn merge(data: &mut SiteData, intake: &mut Intake) {
        if intake.events.is_empty() {
            return;
        }
        for e in intake.events.drain(..) {
            data.push(&e);
        }
        intake.ids = HashSet::new();
    }

    /// Pushes a run into the data, counting what was stored and what was held.
    fn push_run(data: &mut SiteData, run: &[Event], report: &mut AppendReport) {
        for group in run.chunks(WARM) {
            let warmed = group.iter().fold(0, |acc, e| acc ^ data.table.warm(e));
            std::hint::black_box(warmed);
            for e in group {
                if data.push(e) {
                    report.stored += 1;
                } else {
                    report.duplicates.push(e.id);
                }
            }
        }
    }

    /// Appends one site's run of events. Never waits for requests: when they hold
    /// the data, the run waits in the intake instead.
    fn append(&self, run: &[Event], report: &mut AppendReport) {
        if let Ok(mut data) = self.data.try_write() {
            Self::merge(&mut data, &mut self.intake());
            Self::push_run(&mut data, run, report);
            return;
        }
        let mut intake = self.intake();
        // Readers only (no request waiting to write): the id check is exact. Otherwise
        // an id held by the data is found out when the intake is merged.
        let data = self.data.try_read().ok();
        for e in run {
            let id = e.id.as_u128();
            let held =
                id != 0 && (intake.ids.contains(&id) || data.as_ref().is_some_and(|d| d.holds(id)));
            if held {
                report.duplicates.push(e.id);
                continue;
            }
            if id != 0 {
                intake.ids.insert(id);
            }
            intake.events.push(e.clone());
            report.stored += 1;
        }
    }

    /// Whether an event with each of these ids is held or waiting, pushed to `out`;
    /// `false` when the data is held by a request waiting to rebuild it (that cannot
    /// be told without waiting). One lock of each kind for the run.
    fn holds_each_now(&self, ids: impl Iterator<Item = u128>, out: &mut Vec<bool>) {
        let intake = self.intake();
        let data = self.data.try_read().ok();
        out.extend(ids.map(|id| {
            id != 0 && (intake.ids.contains(&id) || data.as_ref().is_some_and(|d| d.holds(id)))
        }));
    }
}

/// Events whose first reads are made together before they are pushed.
const WARM: usize = 16;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self, site: &str) -> Option<Arc<SiteSlot>> {
        let sites = self.sites.read().unwrap_or_else(|e| e.into_inner());
        sites.get(site).cloned()
    }

    fn slot_or_new(&self, site: &str) -> Arc<SiteSlot> {
        if let Some(slot) = self.slot(site) {
            return slot;
        }
        let mut sites = self.sites.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            sites
                .entry(site.to_owned())
                .or_insert_with(|| Arc::new(SiteSlot::new())),
        )
    }

    fn slots(&self) -> Vec<Arc<SiteSlot>> {
        let sites = self.sites.read().unwrap_or_else(|e| e.into_inner());
        sites.values().cloned().collect()
    }

    /// The configuration it holds.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    /// Creates or replaces a site in its configuration (synchronous form of
    /// [`ConfigStore::put_site`]).
    pub fn put_site_sync(&self, site: Site) -> Result<(), StoreError> {
        self.config.put_site_sync(site)
    }

    /// One site's settings from its configuration.
    pub fn site_sync(&self, domain: &str) -> Option<Site> {
        self.config.site_sync(domain)
    }

    /// Every site's settings, ordered by domain.
    pub fn sites_sync(&self) -> Vec<Site> {
        self.config.sites_sync()
    }

    /// Makes room for `additional` more events of `site` (a loader that knows how many
    /// it will append saves the columns' regrowth).
    pub fn reserve_sync(&self, site: &str, additional: usize) {
        self.slot_or_new(site).write().table.reserve(additional);
    }

    /// Whether an event with id `id` of `site` is held.
    pub fn holds_sync(&self, site: &str, id: uuid::Uuid) -> bool {
        self.slot(site)
            .is_some_and(|s| s.settled().holds(id.as_u128()))
    }

    /// For each event, whether the store holds an event of its site with its id.
    /// It never waits for requests in flight: an event whose site a request is
    /// waiting to rebuild counts as not held, and [`MemoryStore::append_sync`] drops
    /// it if it is.
    pub fn holds_each(&self, events: &[&Event]) -> Vec<bool> {
        let mut held = Vec::with_capacity(events.len());
        let mut rest = events;
        // By runs of one site: its slot and locks are taken once a run.
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|e| e.site == first.site).count();
            let (run, tail) = rest.split_at(n);
            rest = tail;
            match self.slot(&first.site) {
                Some(slot) => slot.holds_each_now(run.iter().map(|e| e.id.as_u128()), &mut held),
                None => held.resize(held.len() + run.len(), false),
            }
        }
        held
    }

    /// Appends events (synchronous form of [`EventStore::append`]). It never waits
    /// for requests reading the site: while they run, events wait in the site's
    /// intake, and the next request merges them in first, so that what was appended
    /// before a request began is in its answer. The id check is exact unless a
    /// request is waiting to rebuild the site; then an id held already is counted
    /// stored, and dropped when merged (the data holds it once either way).
    pub fn append_sync(&self, events: &[Event]) -> Result<AppendReport, StoreError> {
        let mut report = AppendReport::default();
        self.site_runs(events, |slot, run| slot.append(run, &mut report));
        Ok(report)
    }

    /// Calls `f` with each run of one site's events and that site's slot (events
    /// come in such runs: each run's slot is looked up once).
    fn site_runs(&self, events: &[Event], mut f: impl FnMut(&SiteSlot, &[Event])) {
        let mut rest = events;
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|e| e.site == first.site).count();
            let (run, tail) = rest.split_at(n);
            rest = tail;
            f(&self.slot_or_new(&first.site), run);
        }
    }

    /// Appends events waiting for each site's lock where requests hold it: for bulk
    /// loaders (a store loading its log), which want the exact id check and no
    /// copies through the intake, and serve no requests yet.
    pub fn load_sync(&self, events: &[Event]) -> Result<AppendReport, StoreError> {
        let mut report = AppendReport::default();
        self.site_runs(events, |slot, run| {
            SiteSlot::push_run(&mut slot.write(), run, &mut report)
        });
        Ok(report)
    }

    /// Writes every site's events as the engine holds them (dictionaries and
    /// columns, in its own binary form) to `out`, so that [`MemoryStore::read_snapshot`]
    /// loads them without decoding events or interning strings again. Each site is
    /// written under its read lock (appends meanwhile wait in its intake); a store
    /// that appends concurrently gets each site as it was when its turn came. Returns
    /// how many events were written. The bytes carry no checksum: a durable store
    /// keeps them in a container that has one.
    ///
    /// ```
    /// use beacon_core::{Event, MemoryStore};
    /// let store = MemoryStore::new();
    /// let mut e = Event::default();
    /// e.site = "example.com".into();
    /// e.identity.visitor_id = "v1".into();
    /// e.page.path = "/".into();
    /// store.append_sync(&[e]).unwrap();
    /// let mut bytes = Vec::new();
    /// assert_eq!(store.write_snapshot(&mut bytes).unwrap(), 1);
    /// let copy = MemoryStore::new();
    /// assert_eq!(copy.read_snapshot(&mut &bytes[..]).unwrap(), 1);
    /// assert_eq!(copy.memory_usage().events, 1);
    /// ```
    pub fn write_snapshot(&self, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        let mut slots: Vec<(String, Arc<SiteSlot>)> = {
            let sites = self.sites.read().unwrap_or_else(|e| e.into_inner());
            sites
                .iter()
                .map(|(k, v)| (k.clone(), Arc::clone(v)))
                .collect()
        };
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        let mut e = Enc::new(out);
        for &b in SNAPSHOT_MAGIC {
            e.put(b)?;
        }
        e.len(slots.len())?;
        let mut events = 0;
        for (site, slot) in &slots {
            e.bytes(site.as_bytes())?;
            let data = slot.settled();
            data.write_snapshot(&mut e)?;
            events += data.len() as u64;
        }
        e.finish()?;
        Ok(events)
    }

    /// Loads what [`MemoryStore::write_snapshot`] wrote into this store, whose sites
    /// in the snapshot must hold no events yet. All or nothing: input that cannot be
    /// read ([`StoreError::Corrupt`], naming what is wrong) leaves the store as it
    /// was. Returns how many events were loaded.
    pub fn read_snapshot(&self, input: &mut dyn std::io::Read) -> Result<u64, StoreError> {
        let mut d = Dec::new(input);
        let mut magic = [0u8; 8];
        for b in &mut magic {
            *b = d.get()?;
        }
        if &magic != SNAPSHOT_MAGIC {
            return Err(engine::snapshot_error(
                "it is not a memory snapshot of this version",
            ));
        }
        let sites = d.len()?;
        let mut decoded = Vec::new();
        for _ in 0..sites {
            let site = String::from_utf8(d.bytes()?)
                .map_err(|_| engine::snapshot_error("a site name is not UTF-8"))?;
            decoded.push((site, SiteData::read_snapshot(&mut d)?));
        }
        d.end()?;
        if let Some((site, _)) = decoded
            .iter()
            .find(|(site, _)| self.slot(site).is_some_and(|s| s.settled().len() > 0))
        {
            return Err(StoreError::Invalid {
                field: "snapshot".into(),
                rule: format!(
                    "is read into a store that holds no events of its sites; {site:?} has some"
                ),
            });
        }
        let mut events = 0;
        for (site, data) in decoded {
            events += data.len() as u64;
            *self.slot_or_new(&site).write() = data;
        }
        Ok(events)
    }

    /// Orders newly appended events and derives sessions now, rather than on the next
    /// request (with each site's last timeout).
    pub fn build(&self) {
        for slot in self.slots() {
            slot.write().table.build();
        }
    }

    /// Runs `f` on the site's data prepared for `site`'s timeout, under a read lock
    /// (preparing under a write lock first when needed). A site without events is
    /// answered from empty data.
    fn with_prepared<T>(&self, site: &Site, f: impl Fn(&SiteData) -> T) -> T {
        let timeout = site.session_timeout_ms();
        let Some(slot) = self.slot(&site.domain) else {
            return f(&SiteData::new(timeout));
        };
        for _ in 0..4 {
            {
                let data = slot.settled();
                if data.table.is_ready(timeout) {
                    return f(&data);
                }
            }
            slot.write().prepare(timeout);
        }
        // Requests with other timeouts keep rebuilding it: answer under the write lock.
        let mut data = slot.write();
        data.prepare(timeout);
        f(&data)
    }

    fn resolve(&self, site: &Site, range: &DateRange, now: DateTime<Utc>) -> ResolvedRange {
        let extent = if range.needs_extent() {
            self.extent_sync(&site.domain)
        } else {
            None
        };
        range.resolve(site.timezone, now, extent)
    }

    fn extent_sync(&self, site: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let (lo, hi) = self.slot(site)?.settled().extent()?;
        Some((
            DateTime::from_timestamp_millis(lo)?,
            DateTime::from_timestamp_millis(hi)?,
        ))
    }

    /// Answers a query (synchronous form of [`EventStore::query`]).
    pub fn query_sync(
        &self,
        site: &Site,
        query: &Query,
        cx: &Context,
    ) -> Result<QueryResult, StoreError> {
        query.validate()?;
        same_site(&query.site, site)?;
        let range = self.resolve(site, &query.date_range, cx.now);
        Ok(self.with_prepared(site, |d| engine::execute(d, site, query, &range, cx))?)
    }

    /// Answers a funnel (synchronous form of [`EventStore::funnel`]).
    pub fn funnel_sync(
        &self,
        site: &Site,
        funnel: &Funnel,
        cx: &Context,
    ) -> Result<FunnelResult, StoreError> {
        funnel.validate()?;
        same_site(&funnel.site, site)?;
        let range = self.resolve(site, &funnel.date_range, cx.now);
        Ok(self.with_prepared(site, |d| engine::funnel(&d.table, funnel, &range, cx))?)
    }

    /// Counts goals (synchronous form of [`EventStore::goals`]).
    pub fn goals_sync(
        &self,
        site: &Site,
        req: &GoalsRequest,
        cx: &Context,
    ) -> Result<GoalsResult, StoreError> {
        req.validate()?;
        same_site(&req.site, site)?;
        let range = self.resolve(site, &req.date_range, cx.now);
        Ok(self.with_prepared(site, |d| engine::goals(&d.table, req, &range, cx))?)
    }

    /// Realtime visitors (synchronous form of [`EventStore::realtime`]).
    pub fn realtime_sync(
        &self,
        site: &Site,
        req: &RealtimeRequest,
        cx: &Context,
    ) -> Result<RealtimeResult, StoreError> {
        req.validate()?;
        same_site(&req.site, site)?;
        let since = realtime_since(req, cx.now);
        Ok(self.with_prepared(site, |d| engine::realtime(&d.table, req, since, cx))?)
    }

    /// Events and heap bytes held (events waiting in an intake counted, their bytes
    /// not). It waits for no request: health checks call it.
    pub fn memory_usage(&self) -> MemoryUsage {
        let mut usage = MemoryUsage {
            events: 0,
            heap_bytes: 0,
        };
        for slot in self.slots() {
            let data = slot.read();
            usage.events += data.len() + slot.intake().events.len();
            usage.heap_bytes += data.table.heap_bytes();
        }
        usage
    }

    /// The next batch of a scan after `cursor` (a table key, then a ledger index).
    fn scan_batch(&self, req: &ScanRequest, cursor: &mut ScanCursor) -> Vec<Event> {
        let limit = req.batch_limit();
        let mut out = Vec::new();
        let Some(slot) = self.slot(&req.site) else {
            cursor.done = true;
            return out;
        };
        let mut data = slot.write();
        let d = &mut *data;
        if !cursor.table_done {
            let t = &mut d.table;
            t.build();
            // Rows of one key (events without ids may share one) are counted off.
            let mut r = match cursor.after {
                None => 0,
                Some((key, seen)) => t.lower_bound(key) + seen,
            };
            while r < t.len() && out.len() < limit {
                let e = t.event(&req.site, r);
                let key = t.key(r);
                cursor.after = Some(match cursor.after {
                    Some((k, seen)) if k == key => (k, seen + 1),
                    _ => (key, 1),
                });
                if req.matches(&e) {
                    out.push(e);
                }
                r += 1;
            }
            if r >= t.len() {
                cursor.table_done = true;
            }
        }
        while cursor.table_done && cursor.ledger < d.ledger.events.len() && out.len() < limit {
            let e = &d.ledger.events[cursor.ledger];
            cursor.ledger += 1;
            if req.matches(e) {
                out.push(e.clone());
            }
        }
        if cursor.table_done && cursor.ledger >= d.ledger.events.len() {
            cursor.done = true;
        }
        out
    }
}

/// Where a scan of a [`MemoryStore`] stands.
#[derive(Debug, Default)]
struct ScanCursor {
    /// The key of the last row read, and how many rows of that key were read.
    after: Option<((u32, i64, u128), usize)>,
    table_done: bool,
    ledger: usize,
    done: bool,
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, events: &[Event]) -> Result<AppendReport, StoreError> {
        self.append_sync(events)
    }

    fn reserve(&self, site: &str, additional: usize) {
        self.reserve_sync(site, additional);
    }

    async fn scan(&self, req: &ScanRequest) -> Result<EventBatches<'_>, StoreError> {
        let req = req.clone();
        let state = (ScanCursor::default(), req);
        Ok(Box::pin(futures_util::stream::try_unfold(
            state,
            move |(mut cursor, req)| async move {
                while !cursor.done {
                    let batch = self.scan_batch(&req, &mut cursor);
                    if !batch.is_empty() {
                        return Ok(Some((batch, (cursor, req))));
                    }
                }
                Ok(None)
            },
        )))
    }

    async fn erase(&self, site: &str, scope: EraseScope) -> Result<u64, StoreError> {
        let Some(slot) = self.slot(site) else {
            return Ok(0);
        };
        let mut d = slot.write();
        Ok(match scope {
            EraseScope::All => d.erase(None),
            EraseScope::Visitor(v) => d.erase(Some(&v)),
            EraseScope::Before(t) => d.erase_before(t.timestamp_millis()),
        })
    }

    async fn extent(
        &self,
        site: &str,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        Ok(self.extent_sync(site))
    }

    async fn query(
        &self,
        site: &Site,
        query: &Query,
        cx: &Context,
    ) -> Result<QueryResult, StoreError> {
        self.query_sync(site, query, cx)
    }

    async fn funnel(
        &self,
        site: &Site,
        funnel: &Funnel,
        cx: &Context,
    ) -> Result<FunnelResult, StoreError> {
        self.funnel_sync(site, funnel, cx)
    }

    async fn goals(
        &self,
        site: &Site,
        goals: &GoalsRequest,
        cx: &Context,
    ) -> Result<GoalsResult, StoreError> {
        self.goals_sync(site, goals, cx)
    }

    async fn realtime(
        &self,
        site: &Site,
        req: &RealtimeRequest,
        cx: &Context,
    ) -> Result<RealtimeResult, StoreError> {
        self.realtime_sync(site, req, cx)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let u = self.memory_usage();
        Ok(StoreStats::new(
            Some(u.events as u64),
            Some(u.heap_bytes as u64),
        ))
    }
}

/// Configuration records in memory: a [`ConfigStore`] for tests, examples and apps
/// whose configuration lives in code.
#[derive(Debug, Default)]
pub struct MemoryConfig {
    records: Mutex<BTreeMap<ConfigKey, Vec<u8>>>,
}

impl MemoryConfig {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<ConfigKey, Vec<u8>>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates or replaces a site (synchronous form of [`ConfigStore::put_site`]).
    pub fn put_site_sync(&self, site: Site) -> Result<(), StoreError> {
        site.validate()?;
        let value = serde_json::to_vec(&site).map_err(|e| StoreError::backend("encode site", e))?;
        self.lock()
            .insert(ConfigKey::new(ConfigKind::Site, "", &site.domain), value);
        Ok(())
    }

    /// One site.
    pub fn site_sync(&self, domain: &str) -> Option<Site> {
        let records = self.lock();
        let v = records.get(&ConfigKey::new(ConfigKind::Site, "", domain))?;
        serde_json::from_slice(v).ok()
    }

    /// Every site, ordered by domain.
    pub fn sites_sync(&self) -> Vec<Site> {
        self.lock()
            .iter()
            .filter(|(k, _)| k.kind == ConfigKind::Site)
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect()
    }
}

#[async_trait]
impl ConfigStore for MemoryConfig {
    async fn get(&self, key: &ConfigKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    async fn put(&self, key: &ConfigKey, value: &[u8]) -> Result<(), StoreError> {
        self.lock().insert(key.clone(), value.to_vec());
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &ConfigKey,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut records = self.lock();
        match records.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None => {
                records.insert(key.clone(), value.to_vec());
                Ok(None)
            }
        }
    }

    async fn delete(&self, key: &ConfigKey) -> Result<bool, StoreError> {
        Ok(self.lock().remove(key).is_some())
    }

    async fn list(
        &self,
        kind: ConfigKind,
        scope: Option<&str>,
    ) -> Result<Vec<ConfigRecord>, StoreError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(k, _)| k.kind == kind && scope.is_none_or(|s| k.scope == s))
            .map(|(k, v)| ConfigRecord {
                scope: k.scope.clone(),
                name: k.name.clone(),
                value: v.clone(),
            })
            .collect())
    }
}

/// The [`MemoryConfig`] inside serves as the store's configuration.
#[async_trait]
impl ConfigStore for MemoryStore {
    async fn get(&self, key: &ConfigKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.config.get(key).await
    }
    async fn put(&self, key: &ConfigKey, value: &[u8]) -> Result<(), StoreError> {
        self.config.put(key, value).await
    }
    async fn put_if_absent(
        &self,
        key: &ConfigKey,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.config.put_if_absent(key, value).await
    }
    async fn delete(&self, key: &ConfigKey) -> Result<bool, StoreError> {
        self.config.delete(key).await
    }
    async fn list(
        &self,
        kind: ConfigKind,
        scope: Option<&str>,
    ) -> Result<Vec<ConfigRecord>, StoreError> {
        self.config.list(kind, scope).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Cancel;

    fn events(n: u32) -> Vec<Event> {
        (0..n)
            .map(|i| {
                let mut e = Event {
                    id: uuid::Uuid::from_u128(u128::from(i) + 1),
                    site: "a.com".into(),
                    timestamp: DateTime::from_timestamp_millis(
                        1_772_352_000_000 + i64::from(i) * 1000,
                    )
                    .expect("time"),
                    ..Event::default()
                };
                e.identity.visitor_id = format!("v{}", i % 97);
                e.page.path = format!("/p/{}", i % 301);
                e
            })
            .collect()
    }

    fn pageviews(store: &MemoryStore) -> f64 {
        let q = Query::from_json(r#"{"site":"a.com","date_range":"all","metrics":["pageviews"]}"#)
            .expect("query");
        let now = DateTime::from_timestamp_millis(1_772_400_000_000).expect("now");
        let result = store
            .query_sync(&Site::new("a.com"), &q, &Context::at(now))
            .expect("query");
        result
            .get(&[], crate::Metric::Pageviews)
            .map_or(0.0, |v| v.as_f64())
    }

    /// An append never waits for a request holding the site: it waits in the
    /// intake, its ids are checked there, and the next request reads it.
    #[test]
    fn appends_while_a_request_reads_wait_in_the_intake_not_for_the_request() {
        let store = MemoryStore::new();
        let all = events(300);
        store.append_sync(&all[..100]).expect("append");
        assert_eq!(pageviews(&store), 100.0);
        let slot = store.slot("a.com").expect("slot");
        let reading = slot.read();
        // With the old single lock this append waited for `reading` (here: forever).
        let report = store.append_sync(&all[50..200]).expect("append");
        assert_eq!(
            report.stored, 100,
            "ids held by the data are known while it is read"
        );
        assert_eq!(report.duplicates.len(), 50);
        let again = store.append_sync(&all[150..300]).expect("append");
        assert_eq!(again.stored, 100, "ids waiting in the intake are known too");
        assert_eq!(again.duplicates.len(), 50);
        assert_eq!(slot.intake().events.len(), 200);
        assert_eq!(
            store.memory_usage().events,
            300,
            "counted without waiting for the request"
        );
        let held: Vec<&Event> = all.iter().collect();
        assert!(store.holds_each(&held).iter().all(|&h| h));
        drop(reading);
        assert_eq!(
            pageviews(&store),
            300.0,
            "the next request merges the intake first"
        );
        assert!(slot.intake().events.is_empty());
        assert_eq!(store.memory_usage().events, 300);
        // With nothing reading, appends go straight to the data.
        let report = store.append_sync(&all).expect("append");
        assert_eq!((report.stored, report.duplicates.len()), (0, 300));
        assert!(slot.intake().events.is_empty());
    }

    /// A cancelled request stops with `Stopped`, whichever engine runs it.
    #[test]
    fn a_cancelled_request_stops() {
        let store = MemoryStore::new();
        store.append_sync(&events(10_000)).expect("append");
        let site = Site::new("a.com");
        let now = DateTime::from_timestamp_millis(1_772_400_000_000).expect("now");
        let cancel = Cancel::new();
        let cx = Context::at(now).with_cancel(cancel.clone());
        let q = Query::from_json(r#"{"site":"a.com","date_range":"all","dimensions":["page"]}"#)
            .expect("query");
        assert!(store.query_sync(&site, &q, &cx).is_ok());
        cancel.cancel();
        let stopped = |r: Result<(), StoreError>| {
            assert!(
                matches!(r, Err(StoreError::Query(crate::QueryError::Stopped))),
                "{r:?}"
            )
        };
        stopped(store.query_sync(&site, &q, &cx).map(|_| ()));
        let f =
            Funnel::from_json(r#"{"site":"a.com","date_range":"all","steps":[{"page":"/p/*"}]}"#)
                .expect("funnel");
        stopped(store.funnel_sync(&site, &f, &cx).map(|_| ()));
        let g = GoalsRequest::from_json(
            r#"{"site":"a.com","date_range":"all","goals":[{"page":"/p/1"}]}"#,
        )
        .expect("goals");
        stopped(store.goals_sync(&site, &g, &cx).map(|_| ()));
        stopped(
            store
                .realtime_sync(&site, &RealtimeRequest::new("a.com"), &cx)
                .map(|_| ()),
        );
    }
}
