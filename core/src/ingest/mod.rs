//! The ingest pipeline: validate → enrich → identify → sessionize → store, over the
//! storage and state traits, with group commit and a bounded queue. Live hits,
//! batches, tracked events ([`Tracker`]) and imports ([`Importer`]) all go through
//! [`Pipeline::prepare`](Preparer::prepare)'s one path.

mod commit;
mod error;
mod facts;
mod import;
mod input;
#[cfg(feature = "tower")]
mod layer;
mod quota;
mod reads;
mod tracker;

pub use error::IngestError;
pub use facts::{ClientHints, Origin, RequestFacts, TrustedProxies};
pub use import::{ImportError, ImportFormat, ImportReport, Importer, RejectedLine};
#[cfg(feature = "tower")]
pub use layer::{TrackLayer, TrackService};
pub use reads::{ReadError, ReadPool};
pub use tracker::{Tracker, TrackerReport};

use crate::clock::{new_event_id, Clock, OsRandom, RandomSource, SystemClock};
use crate::error::ValidationError;
use crate::event::Event;
use crate::hit::{Hit, Validated, ValidationContext};
use crate::identity::VisitorIdentifier;
use crate::site::Site;
use crate::state::{
    CachedSalts, ConfigSalts, MemorySaltStore, MemorySessionState, SaltStore, SessionState,
    VisitorRef,
};
use crate::store::{Analytics, ConfigStore, EraseScope, EventStore};
use crate::webhook::{WebhookPolicy, WebhookTransport, Webhooks};
use commit::Committer;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Fills an event's device, location, network, referrer and campaign fields from
/// the request (`beacon_enrich::Enricher` is the full implementation).
pub trait Enrich: Send + Sync {
    /// Enriches `event` from what `request` says, under `site`'s settings.
    fn enrich(&self, event: &mut Event, request: &RequestFacts<'_>, site: &Site);
}

/// Enrichment that adds nothing: events keep what the hit itself says.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEnrichment;

impl Enrich for NoEnrichment {
    fn enrich(&self, _: &mut Event, _: &RequestFacts<'_>, _: &Site) {}
}

/// What [`Pipeline::erase_visitor`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erasure {
    /// Stored events.
    pub events: u64,
    /// Whether the session state held the visitor.
    pub session_state: bool,
    /// Pending webhook deliveries about them.
    pub deliveries: u64,
}

/// Where an event's id comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EventId<'a> {
    /// The random source (live hits, tracked events).
    Random,
    /// The line it came from: a line's number and bytes give the same id on every
    /// run, so importing a file again stores none of it twice.
    Line(u64, &'a [u8]),
}

/// How a request body carries hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One hit (`POST /api/event`).
    One,
    /// A JSON array of at most [`MAX_BATCH`] hits (`POST /api/events`).
    Batch,
}

/// Most hits in one batch.
pub const MAX_BATCH: usize = 1000;

/// Most visitors whose session state a pipeline keeps in memory by default (the
/// soonest to expire are forgotten past it): about 150 MB.
pub const MAX_SESSION_VISITORS: usize = 1_000_000;

/// How long a payment provider's delivery id is remembered (replays within it are
/// ignored; the housekeeping forgets older ids): Stripe retries for three days.
pub const DELIVERY_RETENTION: chrono::Duration = chrono::Duration::days(7);

/// What a call stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestReport {
    /// Hits accepted (all of them, or the call failed).
    pub accepted: usize,
    /// Events newly stored (fewer when some were stored before).
    pub stored: usize,
}

/// The half of the pipeline before the store: validated hits become events.
pub(crate) struct Preparer {
    events: Arc<dyn EventStore>,
    config: Arc<dyn ConfigStore>,
    sessions: Arc<dyn SessionState>,
    salts: Arc<dyn SaltStore>,
    identifier: VisitorIdentifier,
    enricher: Arc<dyn Enrich>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
}

impl Preparer {
    fn new(
        events: Arc<dyn EventStore>,
        config: Arc<dyn ConfigStore>,
        sessions: Arc<dyn SessionState>,
        salts: Arc<dyn SaltStore>,
        enricher: Arc<dyn Enrich>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn RandomSource>,
    ) -> Self {
        Self {
            events,
            config,
            sessions,
            identifier: VisitorIdentifier::new(Arc::clone(&salts)),
            salts,
            enricher,
            clock,
            random,
        }
    }

    /// The site `domain`, looked up in `sites` first: a caller preparing many hits
    /// keeps one map for them.
    async fn site<'a>(
        &self,
        domain: &str,
        sites: &'a mut HashMap<String, Site>,
    ) -> Result<&'a Site, IngestError> {
        let unknown = || IngestError::UnknownSite {
            index: None,
            site: domain.to_owned(),
        };
        if !sites.contains_key(domain) {
            let site = self.config.site(domain).await?.ok_or_else(unknown)?;
            sites.insert(domain.to_owned(), site);
        }
        sites.get(domain).ok_or_else(unknown)
    }

    /// The event id for an event at `at`: a UUIDv7 whose time part is `at` and
    /// whose other bits are random, or a hash of the line.
    fn event_id(&self, id: EventId<'_>, at: chrono::DateTime<chrono::Utc>) -> uuid::Uuid {
        match id {
            EventId::Random => new_event_id(at, self.random.as_ref()),
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

    /// Enriches, identifies and sessionizes one validated hit into an event (not
    /// yet stored) at the end of `out`; `origin` overrides the hit's own address
    /// and agent. On an error `out` is as it was.
    ///
    /// Not an `async fn`: the event (over a kilobyte) moves to `out` before the
    /// future is made, so that neither the future nor a return value carries a
    /// copy of it.
    fn prepare<'a>(
        &'a self,
        v: Validated<'a>,
        origin: Option<&'a Origin>,
        id: EventId<'a>,
        sites: &'a mut HashMap<String, Site>,
        out: &'a mut Vec<Event>,
    ) -> impl std::future::Future<Output = Result<(), IngestError>> + Send + 'a {
        let Validated {
            event,
            ip,
            user_agent,
            client_visitor_id,
        } = v;
        let at = out.len();
        out.push(event);
        async move {
            let (ip, user_agent) = match origin {
                Some(o) => (
                    o.ip.or(ip),
                    o.user_agent.as_deref().map(Cow::Borrowed).or(user_agent),
                ),
                None => (ip, user_agent),
            };
            let facts = Facts {
                ip,
                user_agent: user_agent.as_deref(),
                client_visitor_id: client_visitor_id.as_deref(),
                origin,
            };
            let done = match self.site(&out[at].site, sites).await {
                Ok(site) => self.fill(&facts, &mut out[at], site, id).await,
                Err(e) => Err(e),
            };
            if done.is_err() {
                out.truncate(at);
            }
            done
        }
    }

    /// [`Preparer::prepare`] without a future, for an import: when the hit's site
    /// is in `sites`, it names its own visitor, it is activity and the session state
    /// answers at once ([`SessionState::observe_now`]), nothing needs waiting for.
    /// Otherwise the hit comes back untouched (nothing observed), for `prepare`.
    // The hit comes back in the caller's slot, moved once; boxing it would allocate
    // for every hit `prepare` answers instead (every cookieless one).
    #[allow(clippy::result_large_err)]
    pub(crate) fn prepare_now<'a>(
        &self,
        v: Validated<'a>,
        id: EventId<'_>,
        sites: &HashMap<String, Site>,
        out: &mut Vec<Event>,
    ) -> Result<Result<(), IngestError>, Validated<'a>> {
        let (Some(visitor), Some(site)) =
            (v.client_visitor_id.as_deref(), sites.get(&v.event.site))
        else {
            return Err(v);
        };
        if !v.event.kind.is_activity() {
            return Err(v);
        }
        let (ts, timeout) = (
            v.event.timestamp.timestamp_millis(),
            site.session_timeout_ms(),
        );
        let obs =
            match self
                .sessions
                .observe_now(&site.domain, VisitorRef::Id(visitor), ts, timeout)
            {
                None => return Err(v),
                Some(Err(e)) => return Ok(Err(e.into())),
                Some(Ok(obs)) => obs,
            };
        let Validated {
            event,
            ip,
            user_agent,
            client_visitor_id,
        } = v;
        out.push(event);
        let Some(event) = out.last_mut() else {
            return Ok(Ok(()));
        };
        let facts = Facts {
            ip,
            user_agent: user_agent.as_deref(),
            client_visitor_id: client_visitor_id.as_deref(),
            origin: None,
        };
        self.identify_and_enrich(&facts, event, site, id);
        placed(event, obs);
        Ok(Ok(()))
    }

    /// The event's id, and its enrichment.
    fn identify_and_enrich(&self, v: &Facts<'_>, event: &mut Event, site: &Site, id: EventId<'_>) {
        event.id = self.event_id(id, event.timestamp);
        let req = RequestFacts {
            ip: v.ip,
            user_agent: v.user_agent,
            client_hints: v.origin.map(|o| &o.hints),
            server_side: v.client_visitor_id.is_some() && v.user_agent.is_none(),
        };
        self.enricher.enrich(event, &req, site);
    }

    /// [`Preparer::prepare`]'s work on the event in place.
    async fn fill(
        &self,
        v: &Facts<'_>,
        event: &mut Event,
        site: &Site,
        id: EventId<'_>,
    ) -> Result<(), IngestError> {
        self.identify_and_enrich(v, event, site, id);
        let ts = event.timestamp.timestamp_millis();
        let timeout = site.session_timeout_ms();
        let candidates = match v.client_visitor_id {
            Some(_) => None,
            None => {
                if v.ip.is_none() && v.user_agent.is_none() {
                    return Err(no_visitor().into());
                }
                let ip = v.ip.map(|i| i.to_string()).unwrap_or_default();
                let ua = v.user_agent.unwrap_or_default();
                Some(
                    self.identifier
                        .candidates(event.timestamp, &site.domain, &ip, ua)
                        .await?,
                )
            }
        };
        let visitor = match (v.client_visitor_id, &candidates) {
            (Some(id), _) => VisitorRef::Id(id),
            (None, Some(c)) => c.visitor_ref(),
            (None, None) => VisitorRef::Id(""),
        };
        if event.kind.is_activity() {
            let obs = match self
                .sessions
                .observe_now(&site.domain, visitor, ts, timeout)
            {
                Some(now) => now?,
                None => {
                    self.sessions
                        .observe(&site.domain, visitor, ts, timeout)
                        .await?
                }
            };
            placed(event, obs);
        } else {
            event.identity.visitor_id = self
                .sessions
                .choose(&site.domain, visitor, ts, timeout)
                .await?;
        }
        Ok(())
    }
}

/// An activity event's visitor and session, as the session state placed it.
fn placed(event: &mut Event, obs: crate::backend::Observation) {
    event.identity.session_id = Some(obs.session_id);
    event.identity.session_number = Some(obs.session_number);
    event.identity.visitor_id = obs.visitor_id;
}

/// What [`Preparer::fill`] reads of a validated hit besides its event.
struct Facts<'a> {
    ip: Option<std::net::IpAddr>,
    user_agent: Option<&'a str>,
    client_visitor_id: Option<&'a str>,
    origin: Option<&'a Origin>,
}

/// The rule a hit with no way to tell its visitor breaks.
pub(crate) fn no_visitor() -> ValidationError {
    ValidationError::new(
        "visitor_id",
        "is required when the hit has neither ip nor user_agent",
    )
}

/// Builds a [`Pipeline`]; from [`Pipeline::builder`].
pub struct PipelineBuilder {
    events: Arc<dyn EventStore>,
    config: Arc<dyn ConfigStore>,
    enricher: Arc<dyn Enrich>,
    sessions: Option<Arc<dyn SessionState>>,
    salts: Option<Arc<dyn SaltStore>>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    queue: usize,
    session_visitors: usize,
    upkeep: bool,
    webhooks: Option<(Arc<dyn WebhookTransport>, WebhookPolicy)>,
}

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("queue", &self.queue)
            .field("session_visitors", &self.session_visitors)
            .finish_non_exhaustive()
    }
}

impl PipelineBuilder {
    /// Configuration (sites, salts, secrets) from `config` instead of the store.
    pub fn config_store(mut self, config: Arc<dyn ConfigStore>) -> Self {
        self.config = config;
        self
    }

    /// Enriches events with `enricher` (default: [`NoEnrichment`]).
    pub fn enricher(mut self, enricher: impl Enrich + 'static) -> Self {
        self.enricher = Arc::new(enricher);
        self
    }

    /// Enriches events with a shared enricher.
    pub fn shared_enricher(mut self, enricher: Arc<dyn Enrich>) -> Self {
        self.enricher = enricher;
        self
    }

    /// Keeps visitors' open sessions in `sessions` (default: in memory, at most
    /// [`PipelineBuilder::session_visitors`] visitors).
    pub fn sessions(mut self, sessions: Arc<dyn SessionState>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// Most visitors the default in-memory session state keeps (default
    /// [`MAX_SESSION_VISITORS`]); past it, those soonest to expire are forgotten.
    pub fn session_visitors(mut self, n: usize) -> Self {
        self.session_visitors = n;
        self
    }

    /// Takes the daily salts from `salts` (default: made from the random source,
    /// kept in the configuration store, so every process that shares it agrees).
    pub fn salts(mut self, salts: Arc<dyn SaltStore>) -> Self {
        self.salts = Some(salts);
        self
    }

    /// Tells time by `clock` (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Draws salts and event ids from `random` (default: the operating system's
    /// source; a seeded one only in tests).
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    /// Callers waiting for the store before new ones are told
    /// [`IngestError::Busy`] (default 4096).
    pub fn queue(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// Whether the pipeline does its own housekeeping (default yes): idle session
    /// state forgotten every 10 s; every 10 minutes today's and tomorrow's salts
    /// made ahead, salts before yesterday forgotten (a visitor cannot be linked
    /// across days), payment-webhook delivery ids older than a week forgotten; every
    /// hour, events older than each site's retention erased
    /// ([`crate::apply_retention`]).
    pub fn upkeep(mut self, on: bool) -> Self {
        self.upkeep = on;
        self
    }

    /// Sends outgoing webhooks (see [`Webhooks`]) through `transport` under
    /// `policy`: each commit's deliveries are made durable with it, and a
    /// dispatcher makes them. Without this no webhook is sent.
    pub fn webhooks(mut self, transport: Arc<dyn WebhookTransport>, policy: WebhookPolicy) -> Self {
        self.webhooks = Some((transport, policy));
        self
    }

    /// Starts the pipeline's writer (and housekeeping) on the current Tokio
    /// runtime.
    pub fn build(self) -> Result<Pipeline, IngestError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| IngestError::NoRuntime)?;
        let salts = self.salts.unwrap_or_else(|| {
            Arc::new(CachedSalts::new(Arc::new(ConfigSalts::new(
                Arc::clone(&self.config),
                Arc::clone(&self.random),
            ))))
        });
        let sessions = self.sessions.unwrap_or_else(|| {
            Arc::new(MemorySessionState::new().with_max_visitors(self.session_visitors))
        });
        let webhooks = self.webhooks.map(|(transport, policy)| {
            Arc::new(Webhooks::new(
                Arc::clone(&self.config),
                transport,
                Arc::clone(&self.clock),
                Arc::clone(&self.random),
                policy,
            ))
        });
        let prep = Arc::new(Preparer::new(
            Arc::clone(&self.events),
            self.config,
            sessions,
            salts,
            self.enricher,
            self.clock,
            self.random,
        ));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (committer, writer) = Committer::start(
            self.events,
            webhooks.clone(),
            self.queue,
            &runtime,
            stopped.clone(),
        );
        let mut tasks = vec![writer];
        if let Some(w) = &webhooks {
            tasks.push(runtime.spawn(Arc::clone(w).run(stopped.clone())));
        }
        if self.upkeep {
            tasks.push(runtime.spawn(upkeep(Arc::clone(&prep), stopped)));
        }
        Ok(Pipeline {
            shared: Arc::new(Shared {
                prep,
                committer,
                stop,
                tasks: Mutex::new(tasks),
                trackers: Mutex::new(Vec::new()),
                runtime,
                sites: RwLock::new((Instant::now() - SITES_FRESH_FOR, Arc::new(Vec::new()))),
                quotas: quota::Quotas::default(),
                webhooks,
            }),
        })
    }
}

/// How long the site list behind [`Pipeline::origin_allowed`] is kept.
const SITES_FRESH_FOR: Duration = Duration::from_secs(5);

/// The ingest pipeline: a cheap, cloneable handle (clones share one writer).
///
/// Build one with [`Pipeline::builder`] inside a Tokio runtime; call
/// [`Pipeline::shutdown`] before the runtime ends so that everything accepted is
/// stored.
#[derive(Clone)]
pub struct Pipeline {
    shared: Arc<Shared>,
}

struct Shared {
    prep: Arc<Preparer>,
    committer: Committer,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    trackers: Mutex<Vec<tracker::Handle>>,
    runtime: tokio::runtime::Handle,
    /// Every site, re-read at most every few seconds (CORS checks each request).
    sites: RwLock<(Instant, Arc<Vec<Site>>)>,
    /// The plans' monthly event quotas, counted.
    quotas: quota::Quotas,
    /// Outgoing webhooks, when the builder was given a transport.
    webhooks: Option<Arc<Webhooks>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A builder over `store`, which holds both the events and the configuration
    /// (as [`crate::MemoryStore`] and `beacon_storage_sqlite::SqliteStore` do).
    pub fn builder<S>(store: Arc<S>) -> PipelineBuilder
    where
        S: EventStore + ConfigStore + 'static,
    {
        Self::builder_with(
            Arc::clone(&store) as Arc<dyn EventStore>,
            store as Arc<dyn ConfigStore>,
        )
    }

    /// A builder over separate event and configuration stores.
    pub fn builder_with(
        events: Arc<dyn EventStore>,
        config: Arc<dyn ConfigStore>,
    ) -> PipelineBuilder {
        PipelineBuilder {
            events,
            config,
            enricher: Arc::new(NoEnrichment),
            sessions: None,
            salts: None,
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
            queue: 4096,
            session_visitors: MAX_SESSION_VISITORS,
            upkeep: true,
            webhooks: None,
        }
    }

    fn prep(&self) -> &Preparer {
        &self.shared.prep
    }

    /// The pipeline's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.prep().clock.now()
    }

    /// The pipeline's clock, to share.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.prep().clock
    }

    /// Where events go.
    pub fn events(&self) -> &Arc<dyn EventStore> {
        &self.prep().events
    }

    /// Sites and the rest of the configuration.
    pub fn config(&self) -> &Arc<dyn ConfigStore> {
        &self.prep().config
    }

    /// Each visitor's open sessions.
    pub fn sessions(&self) -> &Arc<dyn SessionState> {
        &self.prep().sessions
    }

    /// Outgoing webhooks, if the pipeline sends them.
    pub fn webhooks(&self) -> Option<&Webhooks> {
        self.shared.webhooks.as_deref()
    }

    /// Erases one visitor of `site` (a GDPR request) from everything the pipeline
    /// holds: their stored events, their open sessions in the session state, and
    /// their pending webhook deliveries.
    pub async fn erase_visitor(&self, site: &str, visitor: &str) -> Result<Erasure, IngestError> {
        let events = self
            .events()
            .erase(site, EraseScope::Visitor(visitor.to_owned()))
            .await?;
        let session_state = self.sessions().forget(site, visitor).await?;
        let deliveries = match self.webhooks() {
            Some(w) => w.forget_visitor(site, visitor).await?,
            None => 0,
        };
        Ok(Erasure {
            events,
            session_state,
            deliveries,
        })
    }

    /// Queries, funnels, goals and realtime over what the pipeline stored.
    pub fn analytics(&self) -> Analytics<'_> {
        Analytics::new(self.events().as_ref(), self.config().as_ref())
    }

    /// Takes one live hit: validated against the clock, its address and agent from
    /// `origin` (the request) when given, enriched, identified, sessionized, and
    /// stored (group commit) before this returns.
    pub async fn ingest(
        &self,
        hit: Hit,
        origin: Option<&Origin>,
    ) -> Result<IngestReport, IngestError> {
        self.take(vec![hit], origin, false).await
    }

    /// Takes a batch of live hits as one: all are stored, or none is and the error
    /// names the first bad hit (`[3].url: ...`).
    pub async fn ingest_batch(
        &self,
        hits: Vec<Hit>,
        origin: Option<&Origin>,
    ) -> Result<IngestReport, IngestError> {
        if hits.len() > MAX_BATCH {
            return Err(ValidationError::new(
                "body",
                format!("at most {MAX_BATCH} hits per batch"),
            )
            .into());
        }
        self.take(hits, origin, true).await
    }

    /// Takes a request body of JSON hits, as the HTTP API receives it.
    pub async fn ingest_json(
        &self,
        body: &[u8],
        shape: Shape,
        origin: Option<&Origin>,
    ) -> Result<IngestReport, IngestError> {
        let hits = hits_from_json(body, shape)?;
        self.take(hits, origin, shape == Shape::Batch).await
    }

    async fn take(
        &self,
        hits: Vec<Hit>,
        origin: Option<&Origin>,
        batch: bool,
    ) -> Result<IngestReport, IngestError> {
        let now = self.now();
        let ctx = ValidationContext::live(now);
        let mut sites = HashMap::new();
        let named = |i: usize, e: IngestError| if batch { e.at_index(i) } else { e };
        let mut valid = Vec::with_capacity(hits.len());
        for (i, h) in hits.into_iter().enumerate() {
            let v = h.validate(&ctx, None).map_err(|e| named(i, e.into()))?;
            self.prep()
                .site(&v.event.site, &mut sites)
                .await
                .map_err(|e| named(i, e))?;
            valid.push(v);
        }
        // The plans' monthly quotas, before anything is sessionized.
        let per_agency = quota::per_agency(valid.iter().filter_map(|v| sites.get(&v.event.site)));
        let quotas = &self.shared.quotas;
        quotas
            .check(
                self.events().as_ref(),
                self.config().as_ref(),
                &per_agency,
                now,
            )
            .await?;
        let mut events = Vec::with_capacity(valid.len());
        for (i, v) in valid.into_iter().enumerate() {
            self.prep()
                .prepare(v.into(), origin, EventId::Random, &mut sites, &mut events)
                .await
                .map_err(|e| named(i, e))?;
        }
        let accepted = events.len();
        let stored = self.store_events(events).await?;
        for (agency, n) in per_agency {
            quotas.add(&agency, n, now);
        }
        Ok(IngestReport { accepted, stored })
    }

    /// Stores events made elsewhere (a payment webhook's purchases) through the
    /// group commit; how many were new.
    pub async fn store_events(&self, events: Vec<Event>) -> Result<usize, IngestError> {
        self.shared.committer.commit(events).await
    }

    /// Why commits are failing and for how long, while they are (cleared by the
    /// next commit that succeeds).
    pub fn commits_failing(&self) -> Option<(String, Duration)> {
        self.shared.committer.failing()
    }

    /// Whether a browser page at `origin` (an `Origin` header) may send hits: its
    /// host is a known site, a subdomain of one, or one of a site's extra hosts.
    pub async fn origin_allowed(&self, origin: &str) -> bool {
        let Some(host) = url_host(origin) else {
            return false;
        };
        let sites = self.sites().await;
        sites.iter().any(|s| s.owns_host(&host))
    }

    async fn sites(&self) -> Arc<Vec<Site>> {
        {
            let (at, sites) = &*self.shared.sites.read().unwrap_or_else(|e| e.into_inner());
            if at.elapsed() < SITES_FRESH_FOR {
                return Arc::clone(sites);
            }
        }
        match self.config().sites().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.shared.sites.write().unwrap_or_else(|e| e.into_inner()) =
                    (Instant::now(), Arc::clone(&fresh));
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing sites failed");
                Arc::clone(
                    &self
                        .shared
                        .sites
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .1,
                )
            }
        }
    }

    /// A [`Tracker`] for `site`, which must exist: events from app code, batched in
    /// the background.
    pub async fn tracker(&self, site: &str) -> Result<Tracker, IngestError> {
        let site = site.to_ascii_lowercase();
        if self.config().site(&site).await?.is_none() {
            return Err(IngestError::UnknownSite { index: None, site });
        }
        let (tracker, handle) = Tracker::start(self.clone(), site);
        self.shared
            .trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
        Ok(tracker)
    }

    /// An importer over the same stores and enricher, with its own salts and
    /// session state for the run (see [`Importer`]).
    pub fn importer(&self) -> Importer {
        Importer::new(self)
    }

    /// Stops taking hits, flushes every tracker, commits what is queued, and stops
    /// the housekeeping; whatever was acknowledged is stored when this returns
    /// (unless the store refused it: the trackers' reports say so, and the callers
    /// of refused commits were told).
    pub async fn shutdown(&self) {
        let trackers: Vec<tracker::Handle> = std::mem::take(
            &mut *self
                .shared
                .trackers
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for t in trackers {
            t.stop().await;
        }
        let _ = self.shared.stop.send(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    pub(crate) fn committer(&self) -> &Committer {
        &self.shared.committer
    }

    pub(crate) fn preparer(&self) -> &Arc<Preparer> {
        &self.shared.prep
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.shared.runtime
    }
}

/// The host of an `Origin` or `Referer` value (`https://www.example.com:8443/x` →
/// `www.example.com`), lower case; `None` when there is none.
pub fn url_host(url: &str) -> Option<String> {
    let host = url
        .split("://")
        .nth(1)?
        .split([':', '/', '?', '#'])
        .next()?
        .to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Hits from a request body: one JSON hit, or an array of at most [`MAX_BATCH`];
/// errors name the hit in a batch (`[1].url: ...`).
pub fn hits_from_json(body: &[u8], shape: Shape) -> Result<Vec<Hit>, IngestError> {
    let bad = |rule: String| IngestError::from(ValidationError::new("body", rule));
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("must be JSON ({e})")))?;
    let values = match (shape, value) {
        (Shape::One, v) => vec![v],
        (Shape::Batch, serde_json::Value::Array(a)) if a.len() <= MAX_BATCH => a,
        (Shape::Batch, serde_json::Value::Array(_)) => {
            return Err(bad(format!("at most {MAX_BATCH} hits per batch")))
        }
        (Shape::Batch, _) => return Err(bad("must be a JSON array of hits".into())),
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Hit::from_value(v).map_err(|e| match shape {
                Shape::Batch => IngestError::from(e).at_index(i),
                Shape::One => e.into(),
            })
        })
        .collect()
}

/// The pipeline's housekeeping (see [`PipelineBuilder::upkeep`]), until `stop`.
async fn upkeep(prep: Arc<Preparer>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = prep.clock.now();
        if let Err(e) = prep.sessions.evict_idle(now.timestamp_millis()).await {
            tracing::warn!(error = %e, "evicting idle sessions failed");
        }
        if ticks % 60 == 0 {
            let today = now.date_naive();
            let yesterday = today.pred_opt().unwrap_or(today);
            for day in [today, today.succ_opt().unwrap_or(today)] {
                if let Err(e) = prep.salts.salt_for(day).await {
                    tracing::warn!(error = %e, %day, "making a salt failed");
                }
            }
            if let Err(e) = prep.salts.forget_before(yesterday).await {
                tracing::warn!(error = %e, "forgetting old salts failed");
            }
            let week_ago = now - DELIVERY_RETENTION;
            if let Err(e) = prep.config.forget_deliveries_before(week_ago).await {
                tracing::warn!(error = %e, "forgetting old delivery ids failed");
            }
        }
        // Retention, every hour (first 10 minutes after start).
        if ticks % 360 == 60 {
            match crate::store::apply_retention(prep.events.as_ref(), prep.config.as_ref(), now)
                .await
            {
                Ok(erased) => {
                    for (site, events) in erased {
                        tracing::info!(%site, events, "retention erased old events");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "retention failed"),
            }
        }
        ticks += 1;
    }
}

/// A preparer for one import run: every day's salt is kept for the run (the same
/// visitor on the same day hashes alike however the lines are ordered) and
/// forgotten when it ends; session state sized for `expected_visitors`.
pub(crate) fn import_preparer(pipeline: &Pipeline, expected_visitors: usize) -> Preparer {
    let p = pipeline.prep();
    Preparer::new(
        Arc::clone(&p.events),
        Arc::clone(&p.config),
        Arc::new(MemorySessionState::with_expected_visitors(
            expected_visitors,
        )),
        Arc::new(MemorySaltStore::new(Arc::clone(&p.random))),
        Arc::clone(&p.enricher),
        Arc::clone(&p.clock),
        Arc::clone(&p.random),
    )
}
