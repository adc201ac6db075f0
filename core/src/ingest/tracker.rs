//! [`Tracker`]: events from app code, validated on the caller's thread, prepared
//! and stored in the background.

use super::{no_visitor, EventId, IngestError, Origin, Pipeline};
use crate::clock::Clock;
use crate::event::Event;
use crate::hit::{Hit, RawMoney, ValidatedHit, ValidationContext};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Events a tracker holds before [`Tracker`] calls answer [`IngestError::Busy`].
const QUEUE: usize = 65_536;

/// Most events a tracker prepares and commits at once.
const BATCH: usize = 2048;

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

/// Who a tracker's events are from, and where.
#[derive(Debug, Default)]
struct Who {
    visitor_id: Option<String>,
    user_id: Option<String>,
    origin: Option<Origin>,
    page: Option<String>,
}

struct Tracked {
    valid: ValidatedHit,
    who: Option<Arc<Who>>,
}

enum Msg {
    Hit(Box<Tracked>),
    Flush(oneshot::Sender<()>),
}

/// A tracker's shared half; the pipeline keeps one per tracker to stop it.
pub(crate) struct Core {
    site: String,
    root: String,
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
        let task = runtime.spawn(run(pipeline, rx, stopped, Arc::clone(&counts)));
        let core = Arc::new(Core {
            root: format!("https://{site}/"),
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
            },
            None => Who::default(),
        };
        change(&mut who);
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

    fn hit(&self, kind: &str, url: Option<&str>) -> Hit {
        let who = self.who.as_deref();
        let url = url
            .or_else(|| who.and_then(|w| w.page.as_deref()))
            .unwrap_or(&self.core.root);
        Hit {
            site: Some(self.core.site.clone()),
            kind: Some(kind.to_owned()),
            url: Some(url.to_owned()),
            visitor_id: who.and_then(|w| w.visitor_id.clone()),
            user_id: who.and_then(|w| w.user_id.clone()),
            ..Hit::default()
        }
    }

    /// Records a page view of `url`.
    pub fn pageview(&self, url: &str) -> Result<(), IngestError> {
        self.track(self.hit("pageview", Some(url)))
    }

    /// Records a page view of `url` reached from `referrer` (the `Referer`
    /// header), as the tower layer does.
    pub fn pageview_from(&self, url: &str, referrer: Option<&str>) -> Result<(), IngestError> {
        let mut hit = self.hit("pageview", Some(url));
        hit.referrer = referrer.map(str::to_owned);
        self.track(hit)
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
        let mut hit = self.hit("custom", None);
        hit.name = Some(name.to_owned());
        hit.props = props
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect::<BTreeMap<_, _>>();
        self.track(hit)
    }

    /// Records the goal `name` (a conversion).
    pub fn goal(&self, name: &str) -> Result<(), IngestError> {
        let mut hit = self.hit("goal", None);
        hit.name = Some(name.to_owned());
        self.track(hit)
    }

    /// Records a purchase: `order` is its id (a provider's webhook for the same
    /// order is the same purchase), `amount` a decimal string in `currency` (ISO
    /// 4217).
    pub fn purchase(&self, order: &str, amount: &str, currency: &str) -> Result<(), IngestError> {
        let mut hit = self.hit("purchase", None);
        hit.order_id = Some(order.to_owned());
        hit.revenue = Some(RawMoney {
            amount: amount.to_owned(),
            currency: currency.to_owned(),
        });
        self.track(hit)
    }

    /// Records any hit (its site defaults to the tracker's; its visitor, user and
    /// page to the tracker's). Live rules apply: the time is now.
    pub fn track(&self, mut hit: Hit) -> Result<(), IngestError> {
        let who = self.who.as_deref();
        if hit.site.is_none() {
            hit.site = Some(self.core.site.clone());
        }
        if hit.visitor_id.is_none() {
            hit.visitor_id = who.and_then(|w| w.visitor_id.clone());
        }
        if hit.user_id.is_none() {
            hit.user_id = who.and_then(|w| w.user_id.clone());
        }
        let from_request = who
            .and_then(|w| w.origin.as_ref())
            .is_some_and(|o| o.ip.is_some() || o.user_agent.is_some());
        let valid = hit.validate(&ValidationContext::live(self.core.clock.now()), None)?;
        if valid.client_visitor_id.is_none()
            && !from_request
            && valid.ip.is_none()
            && valid.user_agent.is_none()
        {
            return Err(no_visitor().into());
        }
        let tracked = Box::new(Tracked {
            valid,
            who: self.who.clone(),
        });
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
    mut rx: mpsc::Receiver<Msg>,
    mut stop: watch::Receiver<bool>,
    counts: Arc<Counts>,
) {
    let mut sites = HashMap::new();
    let mut stopping: Option<Instant> = None;
    let mut batch: Vec<Box<Tracked>> = Vec::with_capacity(BATCH);
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
        let mut unprepared = std::mem::take(&mut batch);
        // Prepare (retrying what the state refuses), then commit.
        while !unprepared.is_empty() {
            let mut retry = Vec::new();
            for t in unprepared {
                let origin = t.who.as_ref().and_then(|w| w.origin.as_ref());
                match pipeline
                    .preparer()
                    .prepare(t.valid.clone(), origin, EventId::Random, &mut sites)
                    .await
                {
                    Ok(e) => events.push(e),
                    Err(e) if e.is_client_error() => {
                        tracing::warn!(error = %e, "tracked event dropped");
                        counts.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "preparing a tracked event failed; retrying");
                        retry.push(t);
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

/// Whether a stopping tracker has retried for long enough.
fn given_up(stopping: Option<Instant>) -> bool {
    stopping.is_some_and(|at| at.elapsed() > STOP_DEADLINE)
}
