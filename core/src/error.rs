//! Error kinds of the core crate; backends map their own errors into [`StoreError`].

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

/// A query that cannot be run: names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A field of the query JSON broke a rule.
    #[error("{field}: {rule}")]
    Invalid {
        /// Path of the field (`metrics[1]`, `filters[0][1]`).
        field: String,
        /// What is wrong with it.
        rule: String,
    },
    /// The store has no such site.
    #[error("site: unknown site {0:?}")]
    UnknownSite(String),
    /// The store cannot answer this kind of query (yet).
    #[error("{0}: not supported by this store")]
    Unsupported(String),
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

/// Errors of the storage traits.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The query was invalid for this store.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The site is not known to the store.
    #[error("unknown site {0:?}")]
    UnknownSite(String),
    /// A site definition was rejected.
    #[error("site {field}: {rule}")]
    InvalidSite {
        /// The offending site field.
        field: String,
        /// What is wrong with it.
        rule: String,
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
