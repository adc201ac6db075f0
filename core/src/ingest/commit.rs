//! Group commit: callers hand their events to one writer task through a bounded
//! queue; the writer appends everything waiting in one call and answers each caller
//! once its events are durable. A full queue is answered at once
//! ([`IngestError::Busy`]), never buffered without bound.

use super::IngestError;
use crate::error::StoreError;
use crate::event::Event;
use crate::store::{AppendReport, EventStore};
use crate::webhook::Webhooks;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<Arc<AppendReport>, Failure>>;

/// A failed group commit, as every caller in the group sees it.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    retry_after: Option<Duration>,
}

/// Most events appended in one call.
const MAX_GROUP: usize = 10_000;

/// Since when commits have been failing, and why.
type Failing = Arc<Mutex<Option<(String, Instant)>>>;

/// The sending side, cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<(Vec<Event>, Reply)>,
    failing: Failing,
}

impl Committer {
    /// Starts the writer over `events` with a queue of `capacity` callers, on
    /// `runtime`; the writer ends once every sender is gone or `stop` turns true, after
    /// committing what was queued.
    pub(crate) fn start(
        events: Arc<dyn EventStore>,
        webhooks: Option<Arc<Webhooks>>,
        capacity: usize,
        runtime: &tokio::runtime::Handle,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<(Vec<Event>, Reply)>(capacity.max(1));
        let failing: Failing = Arc::new(Mutex::new(None));
        let writer = runtime.spawn(write(events, webhooks, rx, Arc::clone(&failing), stop));
        (Self { tx, failing }, writer)
    }

    /// Why commits are failing and for how long, while they are (until one succeeds).
    pub(crate) fn failing(&self) -> Option<(String, Duration)> {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(why, since)| (why.clone(), since.elapsed()))
    }

    /// Commits `events`; returns, once they are durable, how many were stored (the
    /// others were stored before: their ids are known).
    pub(crate) async fn commit(&self, events: Vec<Event>) -> Result<usize, IngestError> {
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        let (reply, wait) = oneshot::channel();
        self.tx.try_send((events, reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => IngestError::Busy,
            mpsc::error::TrySendError::Closed(_) => IngestError::ShutDown,
        })?;
        let report = wait
            .await
            .map_err(|_| IngestError::ShutDown)?
            .map_err(|f| match f.retry_after {
                Some(retry_after) => IngestError::Unavailable {
                    message: f.message,
                    retry_after,
                },
                None => IngestError::Store(StoreError::backend("group commit", f.message)),
            })?;
        if report.duplicates.is_empty() {
            return Ok(ids.len());
        }
        let dups: HashSet<&uuid::Uuid> = report.duplicates.iter().collect();
        Ok(ids.iter().filter(|id| !dups.contains(id)).count())
    }
}

/// The writer: takes what is waiting, appends it in one call, answers every caller.
async fn write(
    events: Arc<dyn EventStore>,
    webhooks: Option<Arc<Webhooks>>,
    mut rx: mpsc::Receiver<(Vec<Event>, Reply)>,
    failing: Failing,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut batch: Vec<Event> = Vec::new();
    let mut replies: Vec<Reply> = Vec::new();
    let mut stopping = false;
    loop {
        let next = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                next = rx.recv() => next,
                _ = stop.wait_for(|s| *s) => {
                    // No new callers; what is queued is still committed.
                    stopping = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some((events_in, reply)) = next else {
            break;
        };
        batch.extend(events_in);
        replies.push(reply);
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok((more, reply)) => {
                    batch.extend(more);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        let mut result = events.append(&batch).await.map(Arc::new);
        // The webhook deliveries these events call for are durable before any
        // caller hears the events were taken (a failure here fails the commit: the
        // callers retry, the events are not stored twice, the deliveries are made).
        if let (Ok(_), Some(w)) = (&result, &webhooks) {
            if let Err(e) = w.enqueue(&batch).await {
                result = Err(e);
            }
        }
        let result = result.map_err(|e: StoreError| Failure {
            retry_after: e.retry_after(),
            message: e.to_string(),
        });
        {
            let mut failing = failing.lock().unwrap_or_else(|e| e.into_inner());
            match &result {
                Err(e) => {
                    tracing::error!(error = %e.message, events = batch.len(), "group commit failed");
                    if failing.is_none() {
                        *failing = Some((e.message.clone(), Instant::now()));
                    }
                }
                Ok(_) => {
                    if let Some((_, since)) = failing.take() {
                        tracing::info!(
                            failing_s = since.elapsed().as_secs(),
                            "commits succeed again"
                        );
                    }
                }
            }
        }
        for r in replies.drain(..) {
            let _ = r.send(result.clone());
        }
        batch.clear();
    }
}
