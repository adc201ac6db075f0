//! One pipeline for live ingest and import: validate → enrich → identify → sessionize
//! → store. The server and the CLI are thin shells over it.

use crate::store::{EmbeddedStore, EncodedEvents};
use beacon_core::{
    new_event_id, Clock, Event, EventStore, Hit, MemorySessionCache, RandomSource, SaltStore,
    Sessionizer, Site, StoreError, ValidationContext, ValidationError, VisitorIdentifier,
};
use beacon_enrich::{ClientHints, Enricher, Request};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Randomness from the operating system (`/dev/urandom`), read 4 KiB at a time per
/// thread (one read serves ~400 event ids instead of one open and read each).
#[derive(Debug, Default)]
pub struct OsRandom;

thread_local! {
    static POOL: std::cell::RefCell<(Vec<u8>, usize)> = const { std::cell::RefCell::new((Vec::new(), 0)) };
}

fn urandom(buf: &mut [u8]) {
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
    if ok.is_err() {
        // No OS source: mix the clock and an address. Never reached on Linux.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (buf.as_ptr() as u64);
        beacon_core::SeededRandom::new(seed).fill(buf);
    }
}

impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        if buf.len() > 256 {
            return urandom(buf);
        }
        POOL.with(|p| {
            let (pool, used) = &mut *p.borrow_mut();
            if pool.len() < 4096 || *used + buf.len() > pool.len() {
                pool.resize(4096, 0);
                urandom(pool);
                *used = 0;
            }
            buf.copy_from_slice(&pool[*used..*used + buf.len()]);
            // Bytes handed out are wiped from the pool.
            pool[*used..*used + buf.len()].fill(0);
            *used += buf.len();
        });
    }
}

/// Salts for an import run: every day's salt is kept for the run, so the same visitor
/// on the same day hashes alike however the lines are ordered; dropped when the run ends.
#[derive(Debug, Default)]
pub struct RunSalts(Mutex<HashMap<NaiveDate, [u8; 32]>>);

impl SaltStore for RunSalts {
    fn salt_for(&self, day: NaiveDate) -> [u8; 32] {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(day)
            .or_insert_with(|| {
                let mut s = [0u8; 32];
                OsRandom.fill(&mut s);
                s
            })
    }
}

/// The live server's daily salts, kept in the store so that a restart does not
/// re-salt cookieless visitor ids: today's and tomorrow's are made ahead and saved
/// before they are used, and salts older than yesterday are deleted.
#[derive(Debug)]
pub struct StoredSalts {
    salts: Mutex<BTreeMap<NaiveDate, [u8; 32]>>,
    store: Arc<EmbeddedStore>,
    unsaved: tokio::sync::mpsc::UnboundedSender<(NaiveDate, [u8; 32])>,
}

impl StoredSalts {
    /// Loads or creates the salts of yesterday, today and tomorrow, and keeps them
    /// fresh in the background.
    pub async fn start(
        store: Arc<EmbeddedStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let me = Arc::new(Self {
            salts: Mutex::new(BTreeMap::new()),
            store,
            unsaved: tx,
        });
        me.refresh(clock.now().date_naive()).await?;
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    unsaved = rx.recv() => {
                        let Some((day, salt)) = unsaved else { break };
                        if let Some(me) = weak.upgrade() {
                            if let Err(e) = me.store.save_salt(day, salt).await {
                                tracing::error!(error = %e, "saving a salt failed");
                            }
                        }
                        continue;
                    }
                }
                let Some(me) = weak.upgrade() else { break };
                if let Err(e) = me.refresh(clock.now().date_naive()).await {
                    tracing::error!(error = %e, "refreshing salts failed");
                }
            }
        });
        Ok(me)
    }

    async fn refresh(&self, today: NaiveDate) -> Result<(), StoreError> {
        let yesterday = today.pred_opt().unwrap_or(today);
        for day in [yesterday, today, today.succ_opt().unwrap_or(today)] {
            let mut fresh = [0u8; 32];
            OsRandom.fill(&mut fresh);
            let salt = self.store.save_salt(day, fresh).await?;
            self.salts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(day, salt);
        }
        self.store.drop_salts_before(yesterday).await?;
        self.salts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d, _| *d >= yesterday);
        Ok(())
    }
}

impl SaltStore for StoredSalts {
    fn salt_for(&self, day: NaiveDate) -> [u8; 32] {
        let mut salts = self.salts.lock().unwrap_or_else(|e| e.into_inner());
        *salts.entry(day).or_insert_with(|| {
            // Only when the clock moved past the days made ahead: saved right after.
            let mut s = [0u8; 32];
            OsRandom.fill(&mut s);
            let _ = self.unsaved.send((day, s));
            s
        })
    }
}

/// Why a hit was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// It broke a rule of the hit format.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// It names a site the store does not know.
    #[error("site: unknown site {0:?}")]
    UnknownSite(String),
}

/// Request facts of a live hit (they override the hit's own `ip` / `user_agent`).
#[derive(Debug, Default, Clone)]
pub struct Origin {
    /// Client address.
    pub ip: Option<IpAddr>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// `Sec-CH-UA*` headers.
    pub hints: ClientHints,
}

/// The ingest pipeline.
pub struct Pipeline {
    /// The store.
    pub store: Arc<EmbeddedStore>,
    enricher: Arc<Enricher>,
    identifier: VisitorIdentifier,
    sessions: Mutex<Sessionizer<MemorySessionCache>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline for live ingest with salts that rotate daily, kept in the store
    /// for today and yesterday only.
    pub async fn live(
        store: Arc<EmbeddedStore>,
        enricher: Arc<Enricher>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let salts = StoredSalts::start(Arc::clone(&store), Arc::clone(&clock)).await?;
        Ok(Self::with_salts(
            store,
            enricher,
            clock,
            salts,
            MemorySessionCache::new(),
        ))
    }

    /// A pipeline for one import run.
    pub fn import(
        store: Arc<EmbeddedStore>,
        enricher: Arc<Enricher>,
        clock: Arc<dyn Clock>,
        expected_visitors: usize,
    ) -> Self {
        Self::with_salts(
            store,
            enricher,
            clock,
            Arc::new(RunSalts::default()),
            MemorySessionCache::with_expected_visitors(expected_visitors),
        )
    }

    fn with_salts(
        store: Arc<EmbeddedStore>,
        enricher: Arc<Enricher>,
        clock: Arc<dyn Clock>,
        salts: Arc<dyn SaltStore>,
        sessions: MemorySessionCache,
    ) -> Self {
        Self {
            store,
            enricher,
            identifier: VisitorIdentifier::new(salts),
            sessions: Mutex::new(Sessionizer::new(sessions)),
            clock,
        }
    }

    /// The clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Validates, enriches, identifies and sessionizes one hit into an event (not yet
    /// stored). Sites are looked up in `sites` first: a caller preparing many hits
    /// keeps one map for them (the store's lookup waits while a commit adds to memory).
    pub fn prepare(
        &self,
        hit: Hit,
        ctx: &ValidationContext,
        default_site: Option<&str>,
        origin: Option<&Origin>,
        sites: &mut HashMap<String, Site>,
    ) -> Result<Event, Rejection> {
        let mut v = hit.validate(ctx, default_site)?;
        if let Some(o) = origin {
            v.ip = o.ip.or(v.ip);
            v.user_agent = o.user_agent.clone().or(v.user_agent);
        }
        let site: &Site = match sites.entry(v.event.site.clone()) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) => new.insert(
                self.store
                    .memory()
                    .site_sync(&v.event.site)
                    .ok_or_else(|| Rejection::UnknownSite(v.event.site.clone()))?,
            ),
        };
        let mut event = v.event;
        event.id = new_event_id(event.timestamp, &OsRandom);
        let hints = origin.map(|o| &o.hints);
        let req = Request {
            ip: v.ip,
            user_agent: v.user_agent.as_deref(),
            client_hints: hints,
            server_side: v.client_visitor_id.is_some() && v.user_agent.is_none(),
        };
        self.enricher.enrich(&mut event, &req, site);
        let ts = event.timestamp.timestamp_millis();
        let timeout = site.session_timeout_ms();
        // The salted hashes are computed before taking the session lock; only the
        // choice between them and the session step hold it.
        let visitor = match v.client_visitor_id {
            Some(id) => Ok(id),
            None => {
                if v.ip.is_none() && v.user_agent.is_none() {
                    return Err(ValidationError::new(
                        "visitor_id",
                        "is required when the hit has neither ip nor user_agent",
                    )
                    .into());
                }
                let ip = v.ip.map(|i| i.to_string()).unwrap_or_default();
                let ua = v.user_agent.as_deref().unwrap_or_default();
                Err(self
                    .identifier
                    .candidates(event.timestamp, &site.domain, &ip, ua))
            }
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // `Ok`: the client's own id; `Err`: the cookieless candidates to choose from.
        event.identity.visitor_id = visitor.unwrap_or_else(|c| {
            c.choose(|candidate| sessions.has_open_session(&site.domain, candidate, ts, timeout))
        });
        if event.kind.is_activity() {
            let obs = sessions.observe(&site.domain, &event.identity.visitor_id, ts, timeout);
            event.identity.session_id = Some(obs.session_id);
            event.identity.session_number = Some(obs.session_number);
        }
        Ok(event)
    }

    /// Commits events durably (one transaction).
    pub async fn commit(&self, events: &[Event]) -> Result<(), StoreError> {
        self.store.append(events).await
    }

    /// Commits events encoded ahead (one transaction); returns how many were stored.
    pub async fn commit_encoded(&self, events: EncodedEvents) -> Result<usize, StoreError> {
        self.store.append_encoded(events).await
    }
}
