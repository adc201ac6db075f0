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

/// Runs reads (queries, funnels, goals, realtime) on threads of its own, never on
/// the async workers that serve ingest and health checks: `slots` threads, each one
/// read at a time, later reads queued in arrival order. The threads run at a lower
/// scheduling priority (`SCHED_IDLE` on Linux), so that a core busy with reads still
/// serves ingest first. Each read runs within `budget`, waiting in the queue
/// included, and is stopped through its [`Cancel`] flag when the budget is spent,
/// when the caller's future is dropped (a client that went away), or on
/// [`ReadPool::stop_all`]; a read stopped while it waits is never started. Cheap to
/// clone; the threads end when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct ReadPool {
    jobs: std::sync::mpsc::Sender<Job>,
    budget: Duration,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

/// One read, packed for a pool thread.
type Job = Box<dyn FnOnce() + Send>;

/// Sets a read's cancel flag when dropped: a caller dropped because its client went
/// away stops its work too.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The pool threads' priority: below every normal thread, so that ingest comes
/// first. On Linux the threads run under `SCHED_IDLE` (a waking ingest thread
/// preempts them at once; nice 19 still let 4 busy readers push ingest p99 to
/// 8.3-9.5 ms on 2 cores); elsewhere, or when that is refused, at the lowest nice.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadPriority, ThreadSchedulePolicy,
        };
        match set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        ) {
            Ok(()) => return,
            Err(e) => tracing::debug!(error = ?e, "read thread not idle-scheduled"),
        }
    }
    // 0 of 0..=99 maps to nice 19, the lowest (the crate's scale runs from nice 19 to -20).
    let low = thread_priority::ThreadPriorityValue::try_from(0u8)
        .map(thread_priority::ThreadPriority::Crossplatform);
    match low.map(thread_priority::set_current_thread_priority) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = ?e, "read thread keeps its priority"),
        Err(e) => tracing::debug!(error = %e, "read thread keeps its priority"),
    }
}

fn worker(jobs: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<Job>>>) {
    lower_this_threads_priority();
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(job) = job else {
            return; // every pool handle is gone
        };
        job();
    }
}

impl ReadPool {
    /// A pool of `slots` threads (reads at once), each read within `budget`.
    pub fn new(slots: usize, budget: Duration) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..slots.max(1) {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("beacon-read-{i}"))
                .spawn(move || worker(rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "read thread not started");
            }
        }
        Self {
            jobs: tx,
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
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if cx.cancel().is_cancelled() {
                return; // stopped while it waited
            }
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runtime.block_on(work(cx))
            }));
            // A read that panicked drops `tx`: its caller is told it failed, and the
            // thread goes on.
            if let Ok(result) = done {
                let _ = tx.send(result);
            }
        });
        self.jobs.send(job).map_err(|_| ReadError::ShuttingDown)?;
        let run = async move {
            rx.await
                .map_err(|_| ReadError::Store(StoreError::backend("read", "the read failed")))?
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_772_400_000, 0).expect("now")
    }

    /// Field `n` (from 1) of the calling thread's /proc stat (Linux).
    fn stat_field(n: usize) -> Option<i64> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // Fields after the command's closing parenthesis start at field 3.
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_whitespace().nth(n - 3)?.parse().ok()
    }

    /// The calling thread's nice value.
    fn nice_here() -> Option<i64> {
        stat_field(19)
    }

    /// The calling thread's scheduling policy (`SCHED_IDLE` is 5).
    fn policy_here() -> Option<i64> {
        stat_field(41)
    }

    #[tokio::test]
    async fn reads_run_on_the_pools_own_threads_below_the_callers_priority() {
        let pool = ReadPool::new(2, Duration::from_secs(5));
        let (name, nice, policy) = pool
            .run(now(), |_| async {
                Ok((
                    std::thread::current().name().map(str::to_owned),
                    nice_here(),
                    policy_here(),
                ))
            })
            .await
            .expect("read");
        assert!(name.is_some_and(|n| n.starts_with("beacon-read-")));
        if cfg!(target_os = "linux") {
            assert_eq!(policy, Some(5), "read threads run under SCHED_IDLE");
            assert_eq!(policy_here(), Some(0), "the caller keeps SCHED_OTHER");
        } else if let (Some(theirs), Some(mine)) = (nice, nice_here()) {
            assert!(theirs > mine, "read thread nice {theirs}, caller {mine}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_slots_reads_run_at_once() {
        let pool = ReadPool::new(2, Duration::from_secs(10));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let reads: Vec<_> = (0..6)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(now(), move |_| async move {
                        let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        for r in reads {
            r.await.expect("task").expect("read");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_over_budget_is_stopped_and_one_waiting_never_starts() {
        let pool = ReadPool::new(1, Duration::from_millis(50));
        let started = Arc::new(AtomicUsize::new(0));
        let saw_cancel = Arc::new(AtomicUsize::new(0));
        let busy = {
            let (pool, saw) = (pool.clone(), saw_cancel.clone());
            tokio::spawn(async move {
                pool.run(now(), |cx| async move {
                    // Slow to notice: the read queued behind it runs out of budget.
                    std::thread::sleep(Duration::from_millis(150));
                    if cx.cancel().is_cancelled() {
                        saw.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let s = started.clone();
        let waiting = pool
            .run(now(), move |_| async move {
                s.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(matches!(waiting, Err(ReadError::OverBudget(_))));
        assert!(matches!(
            busy.await.expect("task"),
            Err(ReadError::OverBudget(_))
        ));
        // The pool goes on once the slow read ends; the read stopped while it waited
        // was skipped.
        tokio::time::sleep(Duration::from_millis(150)).await;
        pool.run(now(), |_| async { Ok(()) }).await.expect("read");
        assert_eq!(started.load(Ordering::SeqCst), 0);
        assert_eq!(saw_cancel.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_read_that_panics_fails_alone() {
        let pool = ReadPool::new(1, Duration::from_secs(5));
        let failed = pool
            .run(now(), |_| async {
                if nice_here() != Some(-100) {
                    panic!("a bug in a read");
                }
                Ok(())
            })
            .await;
        assert!(matches!(failed, Err(ReadError::Store(_))), "{failed:?}");
        let after = pool.run(now(), |_| async { Ok(7) }).await.expect("read");
        assert_eq!(after, 7);
    }
}
