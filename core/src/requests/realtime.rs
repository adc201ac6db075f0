//! Realtime: who is on the site in the last few minutes.

use super::invalid;
use crate::error::QueryError;
use serde_json::{json, Value};

/// A realtime request: visitors with an event in the last `minutes` (default 5).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RealtimeRequest {
    /// Site.
    pub site: String,
    /// How far back, minutes (1 to 60).
    pub minutes: u32,
    /// Count events classified as bots.
    pub include_bots: bool,
    /// Rows of `pages` and `sources` at most (1 to 100).
    pub limit: usize,
}

impl RealtimeRequest {
    /// The last 5 minutes of `site`, top 10 pages and sources.
    pub fn new(site: impl Into<String>) -> Self {
        Self {
            site: site.into(),
            minutes: 5,
            include_bots: false,
            limit: 10,
        }
    }

    /// Checks the site, `minutes` (1 to 60) and `limit` (1 to 100).
    pub fn validate(&self) -> Result<(), QueryError> {
        if self.site.is_empty() {
            return Err(invalid("site", "is required and must be a site domain"));
        }
        if !(1..=60).contains(&self.minutes) {
            return Err(invalid("minutes", "must be a whole number from 1 to 60"));
        }
        if !(1..=100).contains(&self.limit) {
            return Err(invalid("limit", "must be a whole number from 1 to 100"));
        }
        Ok(())
    }
}

/// Visitors right now, the pages they are on and where their visits came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealtimeResult {
    /// Distinct visitors with an event in the window.
    pub visitors: u64,
    /// Pages viewed in the window, by distinct visitors, most first (then by path).
    pub pages: Vec<(String, u64)>,
    /// Sources of the visits active in the window (frozen at each visit's first
    /// event), by distinct visitors, most first.
    pub sources: Vec<(Option<String>, u64)>,
}

impl RealtimeResult {
    /// The response JSON: `{"site", "visitors", "pages": [{"page", "visitors"}], "sources": [{"source", "visitors"}]}`.
    pub fn to_json(&self, site: &str) -> Value {
        json!({
            "site": site,
            "visitors": self.visitors,
            "pages": self.pages.iter().map(|(p, n)| json!({"page": p, "visitors": n})).collect::<Vec<_>>(),
            "sources": self.sources.iter().map(|(s, n)| json!({"source": s, "visitors": n})).collect::<Vec<_>>(),
        })
    }
}
