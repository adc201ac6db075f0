//! Error kinds of the core crate; backends map their own errors into [`StoreError`].

use std::time::Duration;

/// A rejected hit: names the offending field and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ValidationError {
    /// The field, as a path into the hit (`revenue.amount`, `props.plan`).
    pub field: String,
    /// The rule that the value broke, in words.
    pub rule: String,
}

impl ValidationError {
    /// Builds an error for `field` breaking `rule`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// A request (query, funnel, goals, realtime) that cannot be run: names the
/// offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A field of the request broke a rule.
    #[error("{field}: {rule}")]
    Invalid {
        /// Path of the field (`metrics[1]`, `filters[0][1]`, `steps[2].page`).
        field: String,
        /// What is wrong with it.
        rule: String,
    },
    /// No such site.
    #[error("site: unknown site {0:?}")]
    UnknownSite(String),
    /// The store cannot answer this kind of request (yet).
    #[error("{0}: not supported by this store")]
    Unsupported(String),
    /// The request was stopped before it finished: cancelled, or out of its time
    /// budget (see [`crate::Cancel`]).
    #[error("request stopped before it finished (cancelled, or out of its time budget)")]
    Stopped,
}

impl QueryError {
    /// Builds an [`QueryError::Invalid`].
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// Errors of the storage, configuration and state traits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The request was invalid (it names the field).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The site is not known.
    #[error("site: unknown site {0:?}")]
    UnknownSite(String),
    /// A site definition was rejected.
    #[error("site {field}: {rule}")]
    InvalidSite {
        /// The offending site field.
        field: String,
        /// What is wrong with it.
        rule: String,
    },
    /// A configuration record (an agency, a note) was rejected.
    #[error("{field}: {rule}")]
    Invalid {
        /// The offending field.
        field: String,
        /// What is wrong with it.
        rule: String,
    },
    /// The backend cannot be reached or is overloaded right now; nothing was
    /// changed, and the same call may succeed after `retry_after`. Servers answer
    /// it with 503 and `Retry-After`.
    #[error("{operation}: store unavailable, retry in {}s: {source}", retry_after.as_secs().max(1))]
    Unavailable {
        /// What the store was doing.
        operation: &'static str,
        /// How long to wait before retrying.
        retry_after: Duration,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Stored data could not be read back (corrupt, or written by an unknown version).
    #[error("{what} is unreadable: {detail}")]
    Corrupt {
        /// What was being read (`batch 17`, `config record site/example.com`).
        what: String,
        /// Why it could not be read.
        detail: String,
    },
    /// The backend failed (connection, I/O, SQL); the message says which operation.
    #[error("{operation} failed: {source}")]
    Backend {
        /// What the store was doing.
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// A failure of `operation` in the backend.
    pub fn backend(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Backend {
            operation,
            source: source.into(),
        }
    }

    /// The backend is unavailable for `operation`; retry after `retry_after`.
    pub fn unavailable(
        operation: &'static str,
        retry_after: Duration,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unavailable {
            operation,
            retry_after,
            source: source.into(),
        }
    }

    /// How long to wait before retrying, when the error is transient.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the caller is at fault (an invalid request or an unknown site), as
    /// opposed to the store.
    pub fn is_client_error(&self) -> bool {
        match self {
            Self::Query(QueryError::Stopped) => false,
            Self::Query(_)
            | Self::UnknownSite(_)
            | Self::InvalidSite { .. }
            | Self::Invalid { .. } => true,
            _ => false,
        }
    }
}
