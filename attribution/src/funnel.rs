//! Funnels (contract section 5).

use beacon_core::{
    day_start, local_date, percent, site_or_unknown, DateRange, Event, EventKind, MetricValue,
    QueryError, Site, Store, StoreError,
};
use chrono::{DateTime, Days, Utc};
use serde_json::{json, Value};

/// Why a funnel cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum FunnelError {
    /// A field of the funnel JSON broke a rule.
    #[error("{field}: {rule}")]
    Invalid {
        /// The field (`steps[1]`, `window`).
        field: String,
        /// What is wrong.
        rule: String,
    },
    /// The store failed or does not know the site.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: impl Into<String>, rule: impl Into<String>) -> FunnelError {
    FunnelError::Invalid {
        field: field.into(),
        rule: rule.into(),
    }
}

/// What a step matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepMatch {
    /// A pageview whose path matches the pattern (`*` is any run of characters).
    Page(String),
    /// A goal event of this name.
    Goal(String),
    /// A custom event of this name.
    Event(String),
}

impl StepMatch {
    fn matches(&self, e: &Event) -> bool {
        match self {
            StepMatch::Page(p) => e.kind == EventKind::Pageview && glob(p, &e.page.path),
            StepMatch::Goal(g) => {
                e.kind == EventKind::Goal && e.name.as_deref() == Some(g.as_str())
            }
            StepMatch::Event(n) => {
                e.kind == EventKind::Custom && e.name.as_deref() == Some(n.as_str())
            }
        }
    }
    fn label(&self) -> &str {
        match self {
            StepMatch::Page(s) | StepMatch::Goal(s) | StepMatch::Event(s) => s,
        }
    }
}

/// `*` matches any run of characters (including none); everything else is literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A funnel, typed, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Funnel {
    /// Site.
    pub site: String,
    /// Date range (default `30d`).
    pub date_range: DateRange,
    /// Longest time from the first step to the last, ms (default 24 h).
    pub window_ms: i64,
    /// The steps, in order.
    pub steps: Vec<StepMatch>,
    /// Count events classified as bots.
    pub include_bots: bool,
}

fn parse_window(s: &str) -> Option<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(n * ms).filter(|w| (1_000..=90 * 86_400_000).contains(w))
}

impl Funnel {
    /// Most steps in one funnel.
    pub const MAX_STEPS: usize = 20;

    /// Parses the contract's funnel JSON text.
    pub fn from_json(text: &str) -> Result<Self, FunnelError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| invalid("funnel", format!("must be a JSON object ({e})")))?;
        Self::from_value(&v)
    }

    /// Parses the contract's funnel JSON.
    pub fn from_value(v: &Value) -> Result<Self, FunnelError> {
        let obj = v
            .as_object()
            .ok_or_else(|| invalid("funnel", "must be a JSON object"))?;
        if let Some(k) = obj.keys().find(|k| {
            !["site", "date_range", "window", "steps", "include_bots"].contains(&k.as_str())
        }) {
            return Err(invalid(k.as_str(), "is not a funnel field"));
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
        let window_ms = match obj.get("window") {
            None => 86_400_000,
            Some(w) => w.as_str().and_then(parse_window).ok_or_else(|| {
                invalid(
                    "window",
                    "must be a duration such as \"30m\", \"24h\" or \"7d\" (1 s to 90 d)",
                )
            })?,
        };
        let list = obj.get("steps").and_then(Value::as_array).ok_or_else(|| {
            invalid(
                "steps",
                "is required: an array of {\"page\"|\"goal\"|\"event\": ...}",
            )
        })?;
        if list.is_empty() || list.len() > Self::MAX_STEPS {
            return Err(invalid(
                "steps",
                format!("must have 1 to {} steps", Self::MAX_STEPS),
            ));
        }
        let mut steps = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let o = s.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
                invalid(
                    format!("steps[{i}]"),
                    "must be one of {\"page\": ...}, {\"goal\": ...}, {\"event\": ...}",
                )
            })?;
            let (k, val) = o
                .iter()
                .next()
                .ok_or_else(|| invalid(format!("steps[{i}]"), "is empty"))?;
            let val = val
                .as_str()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid(format!("steps[{i}].{k}"), "must be a non-empty string"))?
                .to_owned();
            steps.push(match k.as_str() {
                "page" => StepMatch::Page(val),
                "goal" => StepMatch::Goal(val),
                "event" => StepMatch::Event(val),
                other => {
                    return Err(invalid(
                        format!("steps[{i}].{other}"),
                        "must be page, goal or event",
                    ))
                }
            });
        }
        let include_bots = match obj.get("include_bots") {
            None => false,
            Some(b) => b
                .as_bool()
                .ok_or_else(|| invalid("include_bots", "must be true or false"))?,
        };
        Ok(Self {
            site: site.to_ascii_lowercase(),
            date_range,
            window_ms,
            steps,
            include_bots,
        })
    }
}

/// One step's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// 1-based position.
    pub step: usize,
    /// The step's page pattern, goal or event name.
    pub label: String,
    /// Visitors reaching this step in order within the window.
    pub visitors: u64,
    /// Visitors here / visitors at step 1, percent.
    pub conversion_rate: MetricValue,
    /// Visitors lost since the previous step / visitors there, percent.
    pub drop_off: MetricValue,
}

/// A funnel's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelResult {
    /// Per step.
    pub steps: Vec<StepResult>,
}

impl FunnelResult {
    /// The contract's response JSON.
    pub fn to_json(&self) -> Value {
        json!({"steps": self.steps.iter().map(|s| json!({
            "step": s.step, "label": s.label, "visitors": s.visitors,
            "conversion_rate": s.conversion_rate.to_json(), "drop_off": s.drop_off.to_json(),
        })).collect::<Vec<_>>()})
    }
}

/// How many steps one visitor's events (sorted by time, then id) reach.
fn reached(events: &[&Event], f: &Funnel) -> usize {
    let mut best = 0;
    for (i, first) in events.iter().enumerate() {
        if !f.steps[0].matches(first) {
            continue;
        }
        let t0 = first.timestamp.timestamp_millis();
        let (mut k, mut prev) = (1, t0);
        for e in &events[i + 1..] {
            let t = e.timestamp.timestamp_millis();
            if t - t0 > f.window_ms || k == f.steps.len() {
                break;
            }
            if t > prev && f.steps[k].matches(e) {
                k += 1;
                prev = t;
            }
        }
        best = best.max(k);
        if best == f.steps.len() {
            break;
        }
    }
    best
}

/// Runs `f` over `events` (any order) of `site`, with `now` for relative ranges.
pub fn run_funnel(events: &[Event], f: &Funnel, site: &Site, now: DateTime<Utc>) -> FunnelResult {
    let tz = site.timezone;
    let (from, to) = f.date_range.resolve(local_date(tz, now), None);
    let start = day_start(tz, from);
    let end = day_start(tz, to.checked_add_days(Days::new(1)).unwrap_or(to));
    let mut in_range: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.site == f.site
                && e.timestamp >= start
                && e.timestamp < end
                && (f.include_bots || !e.is_bot())
        })
        .collect();
    in_range.sort_by(|a, b| {
        (&a.identity.visitor_id, a.timestamp, a.id).cmp(&(
            &b.identity.visitor_id,
            b.timestamp,
            b.id,
        ))
    });
    let mut counts = vec![0u64; f.steps.len()];
    for visitor in in_range.chunk_by(|a, b| a.identity.visitor_id == b.identity.visitor_id) {
        for c in counts.iter_mut().take(reached(visitor, f)) {
            *c += 1;
        }
    }
    let steps = counts
        .iter()
        .enumerate()
        .map(|(i, &v)| StepResult {
            step: i + 1,
            label: f.steps[i].label().to_owned(),
            visitors: v,
            conversion_rate: percent(v, counts[0]),
            drop_off: if i == 0 {
                percent(0, 1)
            } else {
                percent(counts[i - 1] - v, counts[i - 1])
            },
        })
        .collect();
    FunnelResult { steps }
}

/// Runs `f` on any store: scans the site's events in range through the core traits.
pub async fn funnel(
    store: &dyn Store,
    f: &Funnel,
    now: DateTime<Utc>,
) -> Result<FunnelResult, FunnelError> {
    let site = site_or_unknown(store, &f.site).await?;
    let events = store.scan(&f.site, None, None).await?;
    Ok(run_funnel(&events, f, &site, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("/blog/*", "/blog/a/b"));
        assert!(glob("/", "/"));
        assert!(!glob("/", "/a"));
        assert!(glob("*", ""));
        assert!(glob("/p/*/buy", "/p/42/buy"));
        assert!(!glob("/p/*/buy", "/p/42/sell"));
        assert!(glob("*.pdf", "/files/x.pdf"));
    }

    #[test]
    fn errors_name_the_field() {
        let field = |t: &str| match Funnel::from_json(t).unwrap_err() {
            FunnelError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(field(r#"{"steps":[{"page":"/"}]}"#), "site");
        assert_eq!(field(r#"{"site":"a","steps":[]}"#), "steps");
        assert_eq!(
            field(r#"{"site":"a","steps":[{"page":"/"},{"url":"/x"}]}"#),
            "steps[1].url"
        );
        assert_eq!(
            field(r#"{"site":"a","steps":[{"page":"/","goal":"x"}]}"#),
            "steps[0]"
        );
        assert_eq!(
            field(r#"{"site":"a","window":"1 week","steps":[{"page":"/"}]}"#),
            "window"
        );
        assert_eq!(
            field(r#"{"site":"a","date_range":"year","steps":[{"page":"/"}]}"#),
            "date_range"
        );
        let f = Funnel::from_json(r#"{"site": "example.com", "date_range": "30d", "window": "24h", "steps": [{"page": "/"}, {"page": "/pricing"}, {"goal": "signup"}]}"#).unwrap();
        assert_eq!((f.window_ms, f.steps.len()), (86_400_000, 3));
    }
}
