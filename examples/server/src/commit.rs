//! Group commit: request handlers hand their events to one writer task through a
//! bounded queue; the writer appends everything waiting in one call and answers each
//! request once its events are durable. A full queue is answered at once (HTTP
//! 503), never buffered without bound.

use beacon_core::{AppendReport, Event, EventStore, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<Arc<AppendReport>, Failure>>;

/// A failed group commit, as every request in the group sees it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The store's message (logged, not shown to clients).
    pub message: String,
    /// When the store said to retry, if it did.
    pub retry_after: Option<Duration>,
}

/// Why events were not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The queue is full: the server is at capacity.
    #[error("ingest queue is full")]
    Busy,
    /// The store could not commit now (busy, full); retry after the duration.
    #[error("store unavailable: {0}")]
    Unavailable(String, Duration),
    /// The writer failed (the message is logged, not shown to clients).
    #[error("commit failed: {0}")]
    Failed(String),
}

/// The sending side, cheap to clone.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<(Vec<Event>, Reply)>,
    failing: Arc<std::sync::Mutex<Option<(String, std::time::Instant)>>>,
}

impl Committer {
    /// Starts the writer over `events` with a queue of `capacity` requests.
    pub fn start(events: Arc<dyn EventStore>, capacity: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Vec<Event>, Reply)>(capacity);
        let failing = Arc::new(std::sync::Mutex::new(None));
        let health = Arc::clone(&failing);
        tokio::spawn(async move {
            let mut batch: Vec<Event> = Vec::new();
            let mut replies: Vec<Reply> = Vec::new();
            while let Some((events_in, reply)) = rx.recv().await {
                batch.extend(events_in);
                replies.push(reply);
                // Take whatever else is already waiting: one append for all of it.
                while batch.len() < 10_000 {
                    match rx.try_recv() {
                        Ok((more, reply)) => {
                            batch.extend(more);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                let result = events
                    .append(&batch)
                    .await
                    .map(Arc::new)
                    .map_err(|e: StoreError| Failure {
                        retry_after: e.retry_after(),
                        message: e.to_string(),
                    });
                {
                    let mut failing = health.lock().unwrap_or_else(|e| e.into_inner());
                    match &result {
                        Err(e) => {
                            tracing::error!(error = %e.message, events = batch.len(), "group commit failed");
                            if failing.is_none() {
                                *failing = Some((e.message.clone(), std::time::Instant::now()));
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
        });
        Self { tx, failing }
    }

    /// Why commits are failing and since when, while they are (until one succeeds).
    pub fn failing(&self) -> Option<(String, Duration)> {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(why, since)| (why.clone(), since.elapsed()))
    }

    /// Commits `events`; returns, once they are durable, how many were stored (the
    /// others were stored before: their ids are known).
    pub async fn commit(&self, events: Vec<Event>) -> Result<usize, CommitError> {
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        let (reply, wait) = oneshot::channel();
        self.tx
            .try_send((events, reply))
            .map_err(|_| CommitError::Busy)?;
        let report = wait
            .await
            .map_err(|_| CommitError::Failed("writer stopped".into()))?
            .map_err(|f| match f.retry_after {
                Some(after) => CommitError::Unavailable(f.message, after),
                None => CommitError::Failed(f.message),
            })?;
        if report.duplicates.is_empty() {
            return Ok(ids.len());
        }
        let dups: HashSet<&uuid::Uuid> = report.duplicates.iter().collect();
        Ok(ids.iter().filter(|id| !dups.contains(id)).count())
    }
}
