//! One pipeline for live ingest and import: validate → enrich → identify → sessionize
//! → store, over the storage and state traits. The server and the CLI are thin
//! shells over it.

use beacon_core::{
    new_event_id, CachedSalts, Clock, ConfigSalts, ConfigStore, Event, EventStore, Hit,
    MemorySaltStore, MemorySessionState, OsRandom, SaltStore, SessionState, Site, StoreError,
    ValidationContext, ValidationError, VisitorIdentifier, VisitorRef,
};
use beacon_enrich::{ClientHints, Enricher, Request};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Why a hit was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// It broke a rule of the hit format.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// It names a site the configuration does not know.
    #[error("site: unknown site {0:?}")]
    UnknownSite(String),
    /// The configuration, salts or session state could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// Where a hit's event id comes from.
#[derive(Debug, Clone, Copy)]
pub enum EventId<'a> {
    /// The OS random source (live hits).
    Random,
    /// The line it came from: a line's number and bytes give the same id on every
    /// run, so importing a file again stores none of it twice.
    Line(u64, &'a [u8]),
}

impl EventId<'_> {
    /// The id of an event at `at`: a UUIDv7 whose time part is `at` and whose other
    /// bits are random, or a hash of the line.
    fn make(&self, at: chrono::DateTime<chrono::Utc>) -> uuid::Uuid {
        match self {
            EventId::Random => new_event_id(at, &OsRandom),
            EventId::Line(n, bytes) => {
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                h.update(b"beacon import line");
                h.update(n.to_le_bytes());
                h.update(bytes);
                let digest = h.finalize();
                let mut rand = [0u8; 10];
                rand.copy_from_slice(&digest[..10]);
                let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
                uuid::Builder::from_unix_timestamp_millis(ms, &rand).into_uuid()
            }
        }
    }
}

/// What the pipeline reads and writes.
#[derive(Clone)]
pub struct Stores {
    /// Where events go.
    pub events: Arc<dyn EventStore>,
    /// Sites, secrets, delivery ids, salts.
    pub config: Arc<dyn ConfigStore>,
}

/// The ingest pipeline.
pub struct Pipeline {
    /// Where events go.
    pub events: Arc<dyn EventStore>,
    /// Sites and the rest of the configuration.
    pub config: Arc<dyn ConfigStore>,
    /// Each visitor's open sessions.
    pub sessions: Arc<dyn SessionState>,
    /// The daily salts.
    pub salts: Arc<dyn SaltStore>,
    enricher: Arc<Enricher>,
    identifier: VisitorIdentifier,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

/// Most visitors whose session state the live server keeps by default (the soonest
/// to expire are forgotten past it): about 150 MB.
pub const MAX_SESSION_VISITORS: usize = 1_000_000;

impl Pipeline {
    /// A pipeline for live ingest: salts in the config store (made once per day
    /// whichever process asks first; cached), session state in memory, bounded to
    /// `max_visitors`.
    pub fn live(
        stores: Stores,
        enricher: Arc<Enricher>,
        clock: Arc<dyn Clock>,
        max_visitors: usize,
    ) -> Self {
        let salts = Arc::new(CachedSalts::new(Arc::new(ConfigSalts::new(
            Arc::clone(&stores.config),
            Arc::new(OsRandom),
        ))));
        let sessions = MemorySessionState::new().with_max_visitors(max_visitors);
        Self::new(stores, Arc::new(sessions), salts, enricher, clock)
    }

    /// A pipeline for one import run: every day's salt is kept for the run (the same
    /// visitor on the same day hashes alike however the lines are ordered) and
    /// forgotten when it ends.
    pub fn import(
        stores: Stores,
        enricher: Arc<Enricher>,
        clock: Arc<dyn Clock>,
        expected_visitors: usize,
    ) -> Self {
        let salts = Arc::new(MemorySaltStore::new(Arc::new(OsRandom)));
        let sessions = MemorySessionState::with_expected_visitors(expected_visitors);
        Self::new(stores, Arc::new(sessions), salts, enricher, clock)
    }

    /// A pipeline over given parts.
    pub fn new(
        stores: Stores,
        sessions: Arc<dyn SessionState>,
        salts: Arc<dyn SaltStore>,
        enricher: Arc<Enricher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            events: stores.events,
            config: stores.config,
            sessions,
            identifier: VisitorIdentifier::new(Arc::clone(&salts)),
            salts,
            enricher,
            clock,
        }
    }

    /// The clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// The site `domain`, looked up in `sites` first: a caller preparing many hits
    /// keeps one map for them.
    pub async fn site<'a>(
        &self,
        domain: &str,
        sites: &'a mut HashMap<String, Site>,
    ) -> Result<&'a Site, Rejection> {
        if !sites.contains_key(domain) {
            let site = self
                .config
                .site(domain)
                .await?
                .ok_or_else(|| Rejection::UnknownSite(domain.to_owned()))?;
            sites.insert(domain.to_owned(), site);
        }
        sites
            .get(domain)
            .ok_or_else(|| Rejection::UnknownSite(domain.to_owned()))
    }

    /// Validates, enriches, identifies and sessionizes one hit into an event (not yet
    /// stored).
    pub async fn prepare(
        &self,
        hit: Hit,
        ctx: &ValidationContext,
        default_site: Option<&str>,
        origin: Option<&Origin>,
        id: EventId<'_>,
        sites: &mut HashMap<String, Site>,
    ) -> Result<Event, Rejection> {
        let mut v = hit.validate(ctx, default_site)?;
        if let Some(o) = origin {
            v.ip = o.ip.or(v.ip);
            v.user_agent = o.user_agent.clone().or(v.user_agent);
        }
        let site = self.site(&v.event.site.clone(), sites).await?;
        let mut event = v.event;
        event.id = id.make(event.timestamp);
        let req = Request {
            ip: v.ip,
            user_agent: v.user_agent.as_deref(),
            client_hints: origin.map(|o| &o.hints),
            server_side: v.client_visitor_id.is_some() && v.user_agent.is_none(),
        };
        self.enricher.enrich(&mut event, &req, site);
        let ts = event.timestamp.timestamp_millis();
        let timeout = site.session_timeout_ms();
        let candidates = match &v.client_visitor_id {
            Some(_) => None,
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
                Some(
                    self.identifier
                        .candidates(event.timestamp, &site.domain, &ip, ua)
                        .await?,
                )
            }
        };
        let visitor = match (&v.client_visitor_id, &candidates) {
            (Some(id), _) => VisitorRef::Id(id),
            (None, Some(c)) => c.visitor_ref(),
            (None, None) => VisitorRef::Id(""),
        };
        if event.kind.is_activity() {
            let obs = self
                .sessions
                .observe(&site.domain, visitor, ts, timeout)
                .await?;
            event.identity.session_id = Some(obs.session_id);
            event.identity.session_number = Some(obs.session_number);
            event.identity.visitor_id = obs.visitor_id;
        } else {
            event.identity.visitor_id = self
                .sessions
                .choose(&site.domain, visitor, ts, timeout)
                .await?;
        }
        Ok(event)
    }
}
