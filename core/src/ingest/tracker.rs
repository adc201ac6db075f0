//! [`Tracker`]: events from app code, validated on the caller's thread, prepared
//! and stored in the background.

use super::{no_visitor, EventId, IngestError, Origin, Pipeline};
use crate::clock::Clock;
use crate::error::ValidationError;
use crate::event::{Event, EventKind};
use crate::hit::{
    check_bounded, check_needs, check_props, check_referrer, check_url, parse_revenue, Hit, Limits,
    RawMoney, ValidatedHit, ValidationContext, MAX_ORDER_ID,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Events a tracker holds before [`Tracker`] calls answer [`IngestError::Busy`].
const QUEUE: usize = 65_536;

/// Most events a tracker prepares and commits at once.
const BATCH: usize = 2048;

/// How long the background task waits for more events once one came: the most a
/// tracked event waits before it is prepared.
const LINGER: Duration = Duration::from_millis(10);

/// How long a stopping tracker keeps retrying a store that refuses its events.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// What a tracker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrackerReport {
    /// Events accepted from app code (calls that returned `Ok`).
    pub tracked: u64,
    /// Events stored.
    pub stored: u64,
    /// Events dropped after they were accepted because their site was removed
    /// meanwhile.
    pub rejected: u64,
    /// Events the store still refused when the tracker stopped (it retries for 30
    /// s after [`Tracker::shutdown`] before it gives up); logged as errors.
    pub unstored: u64,
}

#[derive(Default)]
struct Counts {
    tracked: AtomicU64,
    stored: AtomicU64,
    rejected: AtomicU64,
    unstored: AtomicU64,
}

impl Counts {
    fn report(&self) -> TrackerReport {
        TrackerReport {
            tracked: self.tracked.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            unstored: self.unstored.load(Ordering::Relaxed),
        }
    }
}

/// Who a tracker's events are from, and where; with what the hit rules say of
/// them, worked out once.
#[derive(Debug, Default)]
struct Who {
    visitor_id: Option<String>,
    user_id: Option<String>,
    origin: Option<Origin>,
    page: Option<String>,
    /// The first rule of `visitor_id` and `user_id` they break.
    ids_error: Option<ValidationError>,
    /// The rules of `page` (a URL), when there is one.
    page_ok: Option<Result<(), ValidationError>>,
}

impl Who {
    /// Whether the cookieless visitor id can be worked out (from the request).
    fn has_visitor(&self) -> bool {
        self.visitor_id.as_deref().is_some_and(|v| !v.is_empty())
            || self
                .origin
                .as_ref()
                .is_some_and(|o| o.ip.is_some() || o.user_agent.is_some())
    }
}

/// An event as app code gave it (validated on its thread) and when.
struct Tracked {
    /// The kind of a typed call (the hit's own `type` is left out, to save an
    /// allocation on the app's thread).
    kind: Option<EventKind>,
    hit: Hit,
    who: Option<Arc<Who>>,
    at: chrono::DateTime<chrono::Utc>,
}

#[allow(clippy::large_enum_variant)] // Not boxed: one allocation less per event.
enum Msg {
    Hit(Tracked),
    Flush(oneshot::Sender<()>),
}

/// A tracker's shared half; the pipeline keeps one per tracker to stop it.
pub(crate) struct Core {
    site: String,
    root: String,
    /// The rules of `root`, as a page URL.
    root_ok: Result<(), ValidationError>,
    limits: Limits,
    tx: mpsc::Sender<Msg>,
    clock: Arc<dyn Clock>,
    counts: Arc<Counts>,
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

pub(crate) type Handle = Arc<Core>;

impl Core {
    /// Stops taking events, stores what was taken, and reports.
    pub(crate) async fn stop(&self) -> TrackerReport {
        self.stop.send_replace(true);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
        self.counts.report()
    }
}

/// Events from app code, for one site: a cheap, cloneable handle to keep in an
/// app's state. Each call validates on the caller's thread (the errors HTTP ingest
/// gives), hands the event to a background task and returns at once; the task
/// enriches, identifies, sessionizes and stores events in batches through the
/// pipeline's group commit. [`Tracker::shutdown`] (or [`Pipeline::shutdown`])
/// stores everything accepted before it returns.
///
/// Events need a visitor: [`Tracker::visitor`] (your own id for them) or
/// [`Tracker::with_origin`] (the cookieless id from their address and agent).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use beacon_core::{MemoryStore, Pipeline, Site};
/// use std::sync::Arc;
///
/// let store = Arc::new(MemoryStore::new());
/// store.put_site_sync(Site::new("example.com")).unwrap();
/// let pipeline = Pipeline::builder(Arc::clone(&store)).build().unwrap();
/// let tracker = pipeline.tracker("example.com").await.unwrap();
///
/// let alice = tracker.visitor("alice").identify("user-42");
/// alice.pageview("https://example.com/pricing").unwrap();
/// alice.event("signup", [("plan", "pro")]).unwrap();
/// alice.purchase("order-1", "49.00", "USD").unwrap();
/// let err = tracker.event("signup", [("plan", "pro")]).unwrap_err();
/// assert_eq!(err.to_string(), "visitor_id: is required when the hit has neither ip nor user_agent");
///
/// let report = tracker.shutdown().await;
/// assert_eq!((report.tracked, report.stored), (3, 3));
/// # });
/// ```
#[derive(Clone)]
pub struct Tracker {
    core: Arc<Core>,
    who: Option<Arc<Who>>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("site", &self.core.site)
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    pub(crate) fn start(pipeline: Pipeline, site: String) -> (Tracker, Handle) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let clock = Arc::clone(pipeline.clock());
        let runtime = pipeline.runtime().clone();
        let root = format!("https://{site}/");
        let task = runtime.spawn(run(
            pipeline,
            (site.clone(), root.clone()),
            rx,
            stopped,
            Arc::clone(&counts),
        ));
        let limits = Limits::default();
        let core = Arc::new(Core {
            root_ok: check_url(Some(&root), &limits),
            limits,
            root,
            site,
            tx,
            clock,
            counts,
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        });
        (
            Tracker {
                core: Arc::clone(&core),
                who: None,
            },
            core,
        )
    }

    /// The site its events go to.
    pub fn site(&self) -> &str {
        &self.core.site
    }

    fn with(&self, change: impl FnOnce(&mut Who)) -> Tracker {
        let mut who = match &self.who {
            Some(w) => Who {
                visitor_id: w.visitor_id.clone(),
                user_id: w.user_id.clone(),
                origin: w.origin.clone(),
                page: w.page.clone(),
                ..Who::default()
            },
            None => Who::default(),
        };
        change(&mut who);
        let lim = &self.core.limits;
        who.ids_error = check_bounded("visitor_id", who.visitor_id.as_deref(), lim.max_id_len)
            .and_then(|()| check_bounded("user_id", who.user_id.as_deref(), lim.max_id_len))
            .err();
        who.page_ok = who.page.as_deref().map(|p| check_url(Some(p), lim));
        Tracker {
            core: Arc::clone(&self.core),
            who: Some(Arc::new(who)),
        }
    }

    /// A tracker whose events are from the visitor you call `id` (the hit's
    /// `visitor_id`).
    pub fn visitor(&self, id: impl Into<String>) -> Tracker {
        let id = id.into();
        self.with(|w| w.visitor_id = Some(id))
    }

    /// A tracker whose events are from the client of a request (its address, user
    /// agent and Client Hints): the cookieless visitor id, as for a page's hits.
    pub fn with_origin(&self, origin: Origin) -> Tracker {
        self.with(|w| w.origin = Some(origin))
    }

    /// A tracker whose events carry your user id for the visitor (the hit's
    /// `user_id`); the visitor stays who they were.
    pub fn identify(&self, user_id: impl Into<String>) -> Tracker {
        let id = user_id.into();
        self.with(|w| w.user_id = Some(id))
    }

    /// A tracker whose events (other than page views, which name their own page)
    /// happen on the page at `url`; by default the site's root.
    pub fn on_page(&self, url: impl Into<String>) -> Tracker {
        let url = url.into();
        self.with(|w| w.page = Some(url))
    }

    /// Checks the fields a typed call sets with the hit rules, in the order
    /// [`Hit::validate`] checks them (so the first broken rule is the one HTTP
    /// ingest names), and hands the event over.
    fn typed(&self, kind: EventKind, hit: Hit) -> Result<(), IngestError> {
        let lim = &self.core.limits;
        let who = self.who.as_deref();
        match (&hit.url, who.and_then(|w| w.page_ok.as_ref())) {
            (Some(url), _) => check_url(Some(url), lim)?,
            (None, Some(page)) => page.clone()?,
            (None, None) => self.core.root_ok.clone()?,
        }
        check_referrer(hit.referrer.as_deref(), lim)?;
        if let Some(e) = who.and_then(|w| w.ids_error.clone()) {
            return Err(e.into());
        }
        check_bounded("order_id", hit.order_id.as_deref(), MAX_ORDER_ID)?;
        check_bounded("goal", hit.name.as_deref(), lim.max_name_len)?;
        let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        check_needs(
            kind,
            present(&hit.name),
            hit.revenue.is_some(),
            present(&hit.order_id),
            None,
        )?;
        if let Some(r) = &hit.revenue {
            parse_revenue(r)?;
        }
        check_props(&hit.props, lim)?;
        if !who.is_some_and(Who::has_visitor) {
            return Err(no_visitor().into());
        }
        self.send(Some(kind), hit)
    }

    fn send(&self, kind: Option<EventKind>, hit: Hit) -> Result<(), IngestError> {
        let tracked = Tracked {
            kind,
            hit,
            who: self.who.clone(),
            at: self.core.clock.now(),
        };
        self.core
            .tx
            .try_send(Msg::Hit(tracked))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => IngestError::Busy,
                mpsc::error::TrySendError::Closed(_) => IngestError::ShutDown,
            })?;
        self.core.counts.tracked.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    // The typed calls leave out the hit's kind, and the tracker's site, page and
    // visitor: the background task fills them in.

    /// Records a page view of `url`.
    pub fn pageview(&self, url: &str) -> Result<(), IngestError> {
        let hit = Hit {
            url: Some(url.to_owned()),
            ..Hit::default()
        };
        self.typed(EventKind::Pageview, hit)
    }

    /// Records a page view of `url` reached from `referrer` (the `Referer`
    /// header), as the tower layer does.
    pub fn pageview_from(&self, url: &str, referrer: Option<&str>) -> Result<(), IngestError> {
        let hit = Hit {
            url: Some(url.to_owned()),
            referrer: referrer.map(str::to_owned),
            ..Hit::default()
        };
        self.typed(EventKind::Pageview, hit)
    }

    /// Records a custom event `name` with properties.
    pub fn event<K, V>(
        &self,
        name: &str,
        props: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), IngestError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let hit = Hit {
            name: Some(name.to_owned()),
            props: props
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect::<BTreeMap<_, _>>(),
            ..Hit::default()
        };
        self.typed(EventKind::Custom, hit)
    }

    /// Records the goal `name` (a conversion).
    pub fn goal(&self, name: &str) -> Result<(), IngestError> {
        let hit = Hit {
            name: Some(name.to_owned()),
            ..Hit::default()
        };
        self.typed(EventKind::Goal, hit)
    }

    /// Records a purchase: `order` is its id (a provider's webhook for the same
    /// order is the same purchase), `amount` a decimal string in `currency` (ISO
    /// 4217).
    pub fn purchase(&self, order: &str, amount: &str, currency: &str) -> Result<(), IngestError> {
        let hit = Hit {
            order_id: Some(order.to_owned()),
            revenue: Some(RawMoney {
                amount: amount.to_owned(),
                currency: currency.to_owned(),
            }),
            ..Hit::default()
        };
        self.typed(EventKind::Purchase, hit)
    }

    /// Records any hit: its site, visitor, user and page default to the tracker's.
    /// Live rules apply: the time is now.
    pub fn track(&self, hit: Hit) -> Result<(), IngestError> {
        let mut full = hit.clone();
        fill(
            &mut full,
            self.who.as_deref(),
            &self.core.site,
            &self.core.root,
        );
        let valid = full.validate(&ValidationContext::live(self.core.clock.now()), None)?;
        let from_request = self.who.as_deref().is_some_and(Who::has_visitor);
        if valid.client_visitor_id.is_none()
            && !from_request
            && valid.ip.is_none()
            && valid.user_agent.is_none()
        {
            return Err(no_visitor().into());
        }
        self.send(None, hit)
    }

    /// Waits until every event tracked before this call is stored (or, while the
    /// store refuses them, keeps waiting).
    pub async fn flush(&self) -> Result<(), IngestError> {
        let (done, wait) = oneshot::channel();
        self.core
            .tx
            .send(Msg::Flush(done))
            .await
            .map_err(|_| IngestError::ShutDown)?;
        wait.await.map_err(|_| IngestError::ShutDown)
    }

    /// What the tracker did so far.
    pub fn report(&self) -> TrackerReport {
        self.core.counts.report()
    }

    /// Stops taking events (later calls answer [`IngestError::ShutDown`]) and
    /// stores everything taken; every clone of this tracker stops.
    pub async fn shutdown(&self) -> TrackerReport {
        self.core.stop().await
    }
}

/// The background task: prepares what was tracked and commits it in batches;
/// retries (with the same event ids, so nothing is stored twice) while the store
/// refuses; on stop, takes what is queued and ends.
async fn run(
    pipeline: Pipeline,
    (site, root): (String, String),
    mut rx: mpsc::Receiver<Msg>,
    mut stop: watch::Receiver<bool>,
    counts: Arc<Counts>,
) {
    let mut sites = HashMap::new();
    let mut stopping: Option<Instant> = None;
    let mut batch: Vec<Tracked> = Vec::with_capacity(BATCH);
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let first = if stopping.is_some() {
            rx.recv().await
        } else {
            tokio::select! {
                m = rx.recv() => m,
                _ = stop.wait_for(|s| *s) => {
                    stopping = Some(Instant::now());
                    rx.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        // Events come one by one: wait a moment for more, so that app threads do not
        // wake this task (a system call) for each, and batches fill.
        if matches!(first, Msg::Hit(_)) && rx.len() < BATCH && stopping.is_none() {
            tokio::time::sleep(LINGER).await;
        }
        let mut next = Some(first);
        // Take what is waiting, up to a flush marker (answered once all before it
        // is stored).
        while let Some(m) = next.take() {
            match m {
                Msg::Hit(t) => batch.push(t),
                Msg::Flush(done) => {
                    flushes.push(done);
                    break;
                }
            }
            if batch.len() >= BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        let mut events: Vec<Event> = Vec::with_capacity(batch.len());
        let mut backoff = Duration::from_millis(50);
        let mut unprepared: Vec<(ValidatedHit, Option<Arc<Who>>)> = Vec::with_capacity(batch.len());
        for t in batch.drain(..) {
            let Tracked {
                kind,
                mut hit,
                who,
                at,
            } = t;
            if let Some(kind) = kind {
                hit.kind = Some(kind.as_str().to_owned());
            }
            fill(&mut hit, who.as_deref(), &site, &root);
            match hit.validate(&ValidationContext::live(at), None) {
                Ok(v) => unprepared.push((v, who)),
                Err(e) => {
                    // The caller's checks passed: the rules and the checks disagree.
                    tracing::error!(error = %e, "tracked event failed validation");
                    counts.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Prepare (retrying what the state refuses), then commit.
        while !unprepared.is_empty() {
            let mut retry = Vec::new();
            for (valid, who) in unprepared {
                let origin = who.as_ref().and_then(|w| w.origin.as_ref());
                match pipeline
                    .preparer()
                    .prepare(
                        valid.clone().into(),
                        origin,
                        EventId::Random,
                        &mut sites,
                        &mut events,
                    )
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_client_error() => {
                        tracing::warn!(error = %e, "tracked event dropped");
                        counts.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "preparing a tracked event failed; retrying");
                        retry.push((valid, who));
                    }
                }
            }
            unprepared = retry;
            if !unprepared.is_empty() {
                if given_up(stopping) {
                    counts
                        .unstored
                        .fetch_add(unprepared.len() as u64, Ordering::Relaxed);
                    tracing::error!(
                        events = unprepared.len(),
                        "tracked events not stored: the state kept failing"
                    );
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        let mut backoff = Duration::from_millis(50);
        while !events.is_empty() {
            match pipeline.committer().commit(events.clone()).await {
                // Ids are random: a duplicate was stored by an earlier try whose
                // answer was lost, so every event of the batch is stored once.
                Ok(_) => {
                    counts
                        .stored
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    events.clear();
                }
                Err(e) => {
                    if given_up(stopping) || matches!(e, IngestError::ShutDown) {
                        counts
                            .unstored
                            .fetch_add(events.len() as u64, Ordering::Relaxed);
                        tracing::error!(error = %e, events = events.len(), "tracked events not stored");
                        events.clear();
                        break;
                    }
                    tracing::warn!(error = %e, events = events.len(), "committing tracked events failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Fills what a hit leaves out from the tracker: its site, page, visitor and user.
fn fill(hit: &mut Hit, who: Option<&Who>, site: &str, root: &str) {
    if hit.site.is_none() {
        hit.site = Some(site.to_owned());
    }
    if hit.url.is_none() {
        hit.url = Some(
            who.and_then(|w| w.page.clone())
                .unwrap_or_else(|| root.to_owned()),
        );
    }
    if hit.visitor_id.is_none() {
        hit.visitor_id = who.and_then(|w| w.visitor_id.clone());
    }
    if hit.user_id.is_none() {
        hit.user_id = who.and_then(|w| w.user_id.clone());
    }
}

/// Whether a stopping tracker has retried for long enough.
fn given_up(stopping: Option<Instant>) -> bool {
    stopping.is_some_and(|at| at.elapsed() > STOP_DEADLINE)
}
