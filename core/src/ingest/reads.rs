//! Where requests that read run in a server: off the async workers that take
//! ingest, a bounded number at once, each within a time budget.

use crate::context::{Cancel, Context};
use crate::error::StoreError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Why a read did not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// It needed more than its budget (waiting for a slot included) and was stopped.
    #[error("request stopped: it needed more than its {} s budget", .0.as_secs_f64())]
    OverBudget(Duration),
    /// The pool was stopped ([`ReadPool::stop_all`]).
    #[error("request stopped: the server is shutting down")]
    ShuttingDown,
    /// The store answered with an error.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs reads (queries, funnels, goals, realtime) on Tokio's blocking pool, never
/// on the async workers that serve ingest and health checks; at most `slots` at a
/// time; each within `budget`, waiting for a slot included; stopped through its
/// [`Cancel`] flag when the budget is spent, when the caller's future is dropped
/// (a client that went away), or on [`ReadPool::stop_all`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReadPool {
    slots: Arc<tokio::sync::Semaphore>,
    budget: Duration,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Sets a read's cancel flag when dropped: a caller dropped because its client went
/// away stops its work too.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl ReadPool {
    /// A pool of `slots` reads at once, each within `budget`.
    pub fn new(slots: usize, budget: Duration) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(slots.max(1))),
            budget,
            stop: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Each read's budget.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Stops every read in flight and refuses new ones (on shutdown).
    pub fn stop_all(&self) {
        self.stop.send_replace(true);
    }

    /// Runs `work` with a [`Context`] at `now` whose cancel flag the engines check.
    pub async fn run<T, F, Fut>(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        work: F,
    ) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut stopped = self.stop.subscribe();
        if *stopped.borrow() {
            return Err(ReadError::ShuttingDown);
        }
        let cancel = Cancel::new();
        let _stop_when_dropped = CancelOnDrop(cancel.clone());
        let cx = Context::at(now).with_cancel(cancel.clone());
        let slots = Arc::clone(&self.slots);
        let runtime = tokio::runtime::Handle::current();
        let run = async move {
            let permit = slots
                .acquire_owned()
                .await
                .map_err(|_| ReadError::ShuttingDown)?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                runtime.block_on(work(cx))
            })
            .await
            .map_err(|e| ReadError::Store(StoreError::backend("read", e.to_string())))?
            .map_err(ReadError::from)
        };
        tokio::select! {
            done = tokio::time::timeout(self.budget, run) => match done {
                Ok(result) => result,
                Err(_) => {
                    cancel.cancel();
                    tracing::warn!(budget_ms = self.budget.as_millis() as u64, "read stopped at its budget");
                    Err(ReadError::OverBudget(self.budget))
                }
            },
            _ = stopped.wait_for(|s| *s) => {
                cancel.cancel();
                Err(ReadError::ShuttingDown)
            }
        }
    }
}
