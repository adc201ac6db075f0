//! What funnel and goals requests share: their error, their common JSON fields, and
//! the UTC bounds of a date range.

use beacon_core::{day_start, local_date, DateRange, QueryError, Site, StoreError};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde_json::{Map, Value};

/// Why a funnel or goals request cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A field of the request JSON broke a rule.
    #[error("{field}: {rule}")]
    Invalid {
        /// The field (`steps[1]`, `goals[0].value.amount`).
        field: String,
        /// What is wrong.
        rule: String,
    },
    /// The store failed or does not know the site.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn invalid(field: impl Into<String>, rule: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field: field.into(),
        rule: rule.into(),
    }
}

/// The fields every request has: `site`, `date_range` (default `30d`), `include_bots`.
pub(crate) struct Common {
    pub(crate) site: String,
    pub(crate) date_range: DateRange,
    pub(crate) include_bots: bool,
}

/// Parses `text` as a JSON object named `what`, refusing keys outside `common` and `own`.
pub(crate) fn parse_object(
    text: &str,
    what: &str,
    own: &[&str],
) -> Result<(Map<String, Value>, Common), RequestError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| invalid(what, format!("must be a JSON object ({e})")))?;
    object(&v, what, own)
}

/// [`parse_object`] for an already parsed value.
pub(crate) fn object(
    v: &Value,
    what: &str,
    own: &[&str],
) -> Result<(Map<String, Value>, Common), RequestError> {
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
        Some(d) => DateRange::from_value(d).map_err(|e| match e {
            QueryError::Invalid { field, rule } => invalid(field, rule),
            other => invalid("date_range", other.to_string()),
        })?,
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

/// A date range resolved for `site` at `now`: its local dates and the UTC instants
/// `[start of from, start of the day after to)`.
pub(crate) fn bounds(
    range: &DateRange,
    site: &Site,
    now: DateTime<Utc>,
) -> (NaiveDate, NaiveDate, DateTime<Utc>, DateTime<Utc>) {
    let tz = site.timezone;
    let (from, to) = range.resolve(local_date(tz, now), None);
    let after = to.checked_add_days(Days::new(1)).unwrap_or(to);
    (from, to, day_start(tz, from), day_start(tz, after))
}
