//! Why a hit, a batch or an import was not taken.

use crate::error::{StoreError, ValidationError};
use std::time::Duration;

/// Why hits were not accepted. A caller that gets an error may retry; nothing of a
/// failed call was stored unless it says so ([`IngestError::Failed`] leaves that
/// open: the store's own message tells).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// A hit broke a rule of the hit format; in a batch, `index` names it (the
    /// message reads `[1].url: ...`).
    #[error("{}{error}", at(*.index))]
    Invalid {
        /// The hit's position in its batch.
        index: Option<usize>,
        /// The rule it broke.
        error: ValidationError,
    },
    /// A hit names a site the configuration does not know.
    #[error("{}site: unknown site {site:?}", at(*.index))]
    UnknownSite {
        /// The hit's position in its batch.
        index: Option<usize>,
        /// The site it named.
        site: String,
    },
    /// The queue in front of the store is full: at capacity, retry shortly.
    #[error("ingest queue is full")]
    Busy,
    /// The pipeline (or tracker) was shut down.
    #[error("the ingest pipeline is shut down")]
    ShutDown,
    /// The store, configuration or state cannot take it now (busy, full, down).
    #[error("store unavailable: {message}")]
    Unavailable {
        /// The store's message.
        message: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The site's agency took every event its plan allows this month.
    #[error(
        "quota: agency {agency:?} took the {limit} events its plan {plan:?} allows in {month}"
    )]
    QuotaExceeded {
        /// The agency.
        agency: String,
        /// Its plan's name.
        plan: String,
        /// Events a month on that plan.
        limit: u64,
        /// The month (`2026-12`, UTC).
        month: String,
        /// Until the next month starts.
        retry_after: Duration,
    },
    /// No Tokio runtime to run the pipeline's writer on.
    #[error("the ingest pipeline needs a Tokio runtime: build it inside one")]
    NoRuntime,
}

fn at(index: Option<usize>) -> String {
    index.map(|i| format!("[{i}].")).unwrap_or_default()
}

impl IngestError {
    /// When to retry, for errors that pass.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::Busy => Some(Duration::from_secs(1)),
            IngestError::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the caller sent something wrong (an HTTP 4xx), rather than the
    /// pipeline failing.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            IngestError::Invalid { .. } | IngestError::UnknownSite { .. }
        )
    }

    /// The same error for the hit at `index` of a batch.
    pub(crate) fn at_index(self, i: usize) -> Self {
        match self {
            IngestError::Invalid { error, .. } => IngestError::Invalid {
                index: Some(i),
                error,
            },
            IngestError::UnknownSite { site, .. } => IngestError::UnknownSite {
                index: Some(i),
                site,
            },
            other => other,
        }
    }
}

impl From<ValidationError> for IngestError {
    fn from(error: ValidationError) -> Self {
        IngestError::Invalid { index: None, error }
    }
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        match e.retry_after() {
            Some(retry_after) => IngestError::Unavailable {
                message: e.to_string(),
                retry_after,
            },
            None => match e {
                StoreError::UnknownSite(site) => IngestError::UnknownSite { index: None, site },
                e => IngestError::Store(e),
            },
        }
    }
}
