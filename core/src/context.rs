//! [`Context`]: how a request runs: the instant relative date ranges resolve
//! against, and a [`Cancel`] flag that stops the engines at their next check.

use crate::error::QueryError;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag that stops a request: whoever runs it (a server whose time budget ran out,
/// or whose client went away) sets it, and the engines stop at their next check with
/// [`QueryError::Stopped`]. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the requests that hold this flag.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a request runs.
#[derive(Debug, Clone)]
pub struct Context {
    /// "Now": relative date ranges (`"7d"`, `"month"`) resolve against it.
    pub now: DateTime<Utc>,
    cancel: Cancel,
}

impl Context {
    /// A request as of `now`, never cancelled.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now,
            cancel: Cancel::new(),
        }
    }

    /// The same request, stopped when `cancel` is set.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Its cancel flag.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// [`QueryError::Stopped`] once the request is cancelled: engines call it now and
    /// then in their loops.
    pub fn check(&self) -> Result<(), QueryError> {
        if self.cancel.is_cancelled() {
            Err(QueryError::Stopped)
        } else {
            Ok(())
        }
    }
}

impl From<DateTime<Utc>> for Context {
    fn from(now: DateTime<Utc>) -> Self {
        Self::at(now)
    }
}
