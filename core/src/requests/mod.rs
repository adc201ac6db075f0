//! The request types besides [`crate::Query`]: funnels (contract section 5), goal
//! conversions and realtime visitors, with their results. Each parses the contract's
//! JSON with errors that name the field, and has a `validate` that every engine runs,
//! so that a request built in Rust is held to the same rules.

mod funnel;
mod goals;
mod realtime;

pub use funnel::{glob, Funnel, FunnelResult, SavedFunnel, StepMatch, StepResult};
pub use goals::{GoalDefinition, GoalMatch, GoalResult, GoalsRequest, GoalsResult};
pub use realtime::{RealtimeRequest, RealtimeResult};

use crate::error::QueryError;
use crate::query::{validate_date_range, DateRange};
use serde_json::{Map, Value};

pub(crate) fn invalid(field: impl Into<String>, rule: impl Into<String>) -> QueryError {
    QueryError::invalid(field, rule)
}

/// The fields every request has: `site`, `date_range` (default `30d`), `include_bots`.
pub(crate) struct Common {
    pub(crate) site: String,
    pub(crate) date_range: DateRange,
    pub(crate) include_bots: bool,
}

/// Parses `text` as a JSON object named `what`, refusing keys outside the common
/// ones and `own`.
pub(crate) fn parse_object(
    text: &str,
    what: &str,
    own: &[&str],
) -> Result<(Map<String, Value>, Common), QueryError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| invalid(what, format!("must be a JSON object ({e})")))?;
    object(&v, what, own)
}

/// [`parse_object`] for an already parsed value.
pub(crate) fn object(
    v: &Value,
    what: &str,
    own: &[&str],
) -> Result<(Map<String, Value>, Common), QueryError> {
    let obj = v
        .as_object()
        .ok_or_else(|| invalid(what, "must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| {
        !["site", "date_range", "include_bots"].contains(&k.as_str()) && !own.contains(&k.as_str())
    }) {
        return Err(invalid(k.as_str(), format!("is not a {what} field")));
    }
    let site = obj
        .get("site")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("site", "is required and must be a site domain"))?;
    let date_range = match obj.get("date_range") {
        None => DateRange::Last30Days,
        Some(d) => DateRange::from_value(d)?,
    };
    let include_bots = match obj.get("include_bots") {
        None => false,
        Some(b) => b
            .as_bool()
            .ok_or_else(|| invalid("include_bots", "must be true or false"))?,
    };
    Ok((
        obj.clone(),
        Common {
            site: site.to_ascii_lowercase(),
            date_range,
            include_bots,
        },
    ))
}

/// The rules every request shares: a site, and a date range in order.
pub(crate) fn validate_common(site: &str, range: &DateRange) -> Result<(), QueryError> {
    if site.is_empty() {
        return Err(invalid("site", "is required and must be a site domain"));
    }
    validate_date_range(range)
}

/// The longest text of a step, goal name or pattern.
pub(crate) const MAX_TEXT: usize = 500;

/// Checks a step's or goal's text: 1 to [`MAX_TEXT`] bytes.
pub(crate) fn check_text(field: impl FnOnce() -> String, s: &str) -> Result<(), QueryError> {
    if s.is_empty() || s.len() > MAX_TEXT {
        return Err(invalid(field(), "must be a string of 1 to 500 bytes"));
    }
    Ok(())
}
