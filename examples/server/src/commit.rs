//! Group commit: request handlers hand their events to one writer task through a
//! bounded queue; the writer commits everything waiting in one transaction and answers
//! each request once its events are durable. A full queue is answered at once
//! (HTTP 503), never buffered without bound.

use crate::pipeline::Pipeline;
use beacon_core::Event;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<(), String>>;

/// Why events were not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The queue is full: the server is at capacity.
    #[error("ingest queue is full")]
    Busy,
    /// The writer failed (the message is logged, not shown to clients).
    #[error("commit failed: {0}")]
    Failed(String),
}

/// The sending side, cheap to clone.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<(Vec<Event>, Reply)>,
}

impl Committer {
    /// Starts the writer with a queue of `capacity` requests.
    pub fn start(pipeline: Arc<Pipeline>, capacity: usize) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Vec<Event>, Reply)>(capacity);
        tokio::spawn(async move {
            let mut batch: Vec<Event> = Vec::new();
            let mut replies: Vec<Reply> = Vec::new();
            while let Some((events, reply)) = rx.recv().await {
                batch.extend(events);
                replies.push(reply);
                // Take whatever else is already waiting: one transaction for all of it.
                while batch.len() < 10_000 {
                    match rx.try_recv() {
                        Ok((events, reply)) => {
                            batch.extend(events);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                let result = pipeline.commit(&batch).await.map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, events = batch.len(), "group commit failed");
                }
                for r in replies.drain(..) {
                    let _ = r.send(result.clone());
                }
                batch.clear();
            }
        });
        Self { tx }
    }

    /// Commits `events`; returns once they are durable.
    pub async fn commit(&self, events: Vec<Event>) -> Result<(), CommitError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .try_send((events, reply))
            .map_err(|_| CommitError::Busy)?;
        wait.await
            .map_err(|_| CommitError::Failed("writer stopped".into()))?
            .map_err(CommitError::Failed)
    }
}
