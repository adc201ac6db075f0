//! Funnels (contract section 5).

use crate::attribute::session_value;
use crate::request::{bounds, invalid, object, parse_object, Common, RequestError};
use beacon_core::{
    percent, sessionize, site_or_unknown, DateRange, Dimension, Event, EventColumns, EventKind,
    MetricValue, Site, Store,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

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
    /// Break the figures down by this session-level dimension: each visitor counts
    /// under the value of the session in which their best path began.
    pub breakdown: Option<Dimension>,
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

const OWN_FIELDS: &[&str] = &["window", "steps", "breakdown"];

impl Funnel {
    /// Most steps in one funnel.
    pub const MAX_STEPS: usize = 20;

    /// Parses the contract's funnel JSON text.
    pub fn from_json(text: &str) -> Result<Self, RequestError> {
        Self::from_parts(parse_object(text, "funnel", OWN_FIELDS)?)
    }

    /// Parses the contract's funnel JSON.
    pub fn from_value(v: &Value) -> Result<Self, RequestError> {
        Self::from_parts(object(v, "funnel", OWN_FIELDS)?)
    }

    fn from_parts((obj, common): (Map<String, Value>, Common)) -> Result<Self, RequestError> {
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
        let breakdown = match obj.get("breakdown") {
            None | Some(Value::Null) => None,
            Some(b) => Some(
                b.as_str()
                    .and_then(Dimension::parse)
                    .filter(|d| d.is_session_level())
                    .ok_or_else(|| {
                        invalid(
                            "breakdown",
                            "must be a session-level dimension such as \"source\" or \"country\"",
                        )
                    })?,
            ),
        };
        Ok(Self {
            site: common.site,
            date_range: common.date_range,
            window_ms,
            steps,
            include_bots: common.include_bots,
            breakdown,
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
    /// With a breakdown: the steps per value of the dimension, most visitors at step 1
    /// first (then by value).
    pub breakdown: Option<Vec<(Option<String>, Vec<StepResult>)>>,
}

fn steps_json(steps: &[StepResult]) -> Value {
    steps
        .iter()
        .map(|s| {
            json!({
                "step": s.step, "label": s.label, "visitors": s.visitors,
                "conversion_rate": s.conversion_rate.to_json(), "drop_off": s.drop_off.to_json(),
            })
        })
        .collect()
}

impl FunnelResult {
    /// The contract's response JSON (with `"breakdown": [{"value", "steps"}]` when asked).
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "steps": steps_json(&self.steps) });
        if let Some(groups) = &self.breakdown {
            v["breakdown"] = groups
                .iter()
                .map(|(value, steps)| json!({"value": value, "steps": steps_json(steps)}))
                .collect();
        }
        v
    }
}

/// Over one visitor's rows in time order, with each row's bit set of matching steps:
/// the steps reached, and the row where the best path begins (the earliest of equals).
/// Taking the earliest later match for each next step is optimal, for both the order
/// and the window.
fn reach(ts: &[i64], mask: &[u32], steps: usize, window_ms: i64) -> (usize, usize) {
    let mut best = (0, 0);
    for i in 0..ts.len() {
        if mask[i] & 1 == 0 {
            continue;
        }
        let t0 = ts[i];
        let (mut k, mut prev) = (1, t0);
        for j in i + 1..ts.len() {
            let t = ts[j];
            if k == steps || t - t0 > window_ms {
                break;
            }
            if t > prev && (mask[j] >> k) & 1 == 1 {
                k += 1;
                prev = t;
            }
        }
        if k > best.0 {
            best = (k, i);
            if k == steps {
                break;
            }
        }
    }
    best
}

/// Each row's bit set of the steps it matches, from one match per dictionary entry.
struct RowMasks {
    page: Vec<u32>,
    goal: Vec<u32>,
    event: Vec<u32>,
}

impl RowMasks {
    fn new(f: &Funnel, c: &EventColumns) -> Self {
        let dict_mask = |dict: &[String], want: &dyn Fn(&StepMatch, &str) -> bool| -> Vec<u32> {
            dict.iter()
                .enumerate()
                .map(|(id, s)| {
                    if id == 0 {
                        return 0;
                    }
                    f.steps
                        .iter()
                        .enumerate()
                        .filter(|(_, st)| want(st, s))
                        .fold(0u32, |m, (i, _)| m | 1 << i)
                })
                .collect()
        };
        Self {
            page: dict_mask(
                &c.paths,
                &|st, p| matches!(st, StepMatch::Page(g) if glob(g, p)),
            ),
            goal: dict_mask(
                &c.names,
                &|st, n| matches!(st, StepMatch::Goal(g) if g == n),
            ),
            event: dict_mask(
                &c.names,
                &|st, n| matches!(st, StepMatch::Event(g) if g == n),
            ),
        }
    }

    fn of(&self, c: &EventColumns, r: usize) -> u32 {
        match c.kind[r] {
            EventKind::Pageview => self.page[c.path[r] as usize],
            EventKind::Goal => self.goal[c.name[r] as usize],
            EventKind::Custom => self.event[c.name[r] as usize],
            _ => 0,
        }
    }
}

fn step_results(f: &Funnel, counts: &[u64]) -> Vec<StepResult> {
    counts
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
        .collect()
}

/// Runs `f` over columns already limited to the date range; `group` (per row), when
/// given, breaks the counts down by the group of the row where each path begins.
fn run_columns(
    f: &Funnel,
    c: &EventColumns,
    group: Option<&[u32]>,
    groups: usize,
) -> (Vec<u64>, Vec<Vec<u64>>) {
    let masks = RowMasks::new(f, c);
    let n = f.steps.len();
    let mut counts = vec![0u64; n];
    let mut by_group = vec![vec![0u64; n]; if group.is_some() { groups } else { 0 }];
    let mut mask: Vec<u32> = Vec::new();
    for run in c.visitor_runs() {
        mask.clear();
        mask.extend(run.clone().map(|r| masks.of(c, r)));
        if mask.iter().all(|m| m & 1 == 0) {
            continue; // never at step 1
        }
        let (k, first) = reach(&c.ts[run.clone()], &mask, n, f.window_ms);
        for x in counts.iter_mut().take(k) {
            *x += 1;
        }
        if let (Some(g), true) = (group, k > 0) {
            for x in by_group[g[run.start + first] as usize].iter_mut().take(k) {
                *x += 1;
            }
        }
    }
    (counts, by_group)
}

/// Runs `f` over `events` (any order) of `site`, with `now` for relative ranges.
pub fn run_funnel(events: &[Event], f: &Funnel, site: &Site, now: DateTime<Utc>) -> FunnelResult {
    let (_, _, start, end) = bounds(&f.date_range, site, now);
    let Some(dim) = &f.breakdown else {
        let in_range = events
            .iter()
            .filter(|e| e.site == f.site && e.timestamp >= start && e.timestamp < end);
        let c = EventColumns::from_events(in_range, f.include_bots);
        let (counts, _) = run_columns(f, &c, None, 0);
        return FunnelResult {
            steps: step_results(f, &counts),
            breakdown: None,
        };
    };
    // Sessions over the whole history, so that session-level values are those of
    // each session's first event even when it is before the range.
    let mut all: Vec<Event> = events
        .iter()
        .filter(|e| e.site == f.site && e.kind.is_activity() && (f.include_bots || !e.is_bot()))
        .cloned()
        .collect();
    let summaries = sessionize(&mut all, site.session_timeout_ms());
    all.sort_by(|a, b| {
        (&a.identity.visitor_id, a.timestamp, a.id).cmp(&(
            &b.identity.visitor_id,
            b.timestamp,
            b.id,
        ))
    });
    let mut first_of: HashMap<u64, usize> = HashMap::new();
    for (i, e) in all.iter().enumerate() {
        if let Some(sid) = e.identity.session_id {
            first_of.entry(sid).or_insert(i);
        }
    }
    let mut values: Vec<Option<String>> = Vec::new();
    let mut value_ids: HashMap<Option<String>, u32> = HashMap::new();
    let mut session_group: HashMap<u64, u32> = HashMap::new();
    for s in &summaries {
        let v = first_of
            .get(&s.session_id)
            .and_then(|&i| session_value(dim, &all[i], s));
        let id = *value_ids.entry(v.clone()).or_insert_with(|| {
            values.push(v);
            (values.len() - 1) as u32
        });
        session_group.insert(s.session_id, id);
    }
    // `all` is in canonical order, so its in-range part gives rows in the same order
    // as the columns built from it.
    let in_range: Vec<Event> = all
        .into_iter()
        .filter(|e| e.timestamp >= start && e.timestamp < end)
        .collect();
    let group: Vec<u32> = in_range
        .iter()
        .map(|e| {
            e.identity
                .session_id
                .and_then(|s| session_group.get(&s).copied())
                .unwrap_or(0)
        })
        .collect();
    let c = EventColumns::from_events(&in_range, true);
    let (counts, by_group) = run_columns(f, &c, Some(&group), values.len());
    let mut groups: Vec<(Option<String>, Vec<StepResult>)> = values
        .into_iter()
        .zip(by_group)
        .filter(|(_, g)| g[0] > 0)
        .map(|(v, g)| (v, step_results(f, &g)))
        .collect();
    groups.sort_by(|a, b| {
        b.1[0]
            .visitors
            .cmp(&a.1[0].visitors)
            .then_with(|| a.0.cmp(&b.0))
    });
    FunnelResult {
        steps: step_results(f, &counts),
        breakdown: Some(groups),
    }
}

/// Runs `f` on any store through the core traits: the date range's events as
/// columns (a columnar store hands them over without building events), or, for a
/// breakdown, a scan of the site's history.
pub async fn funnel(
    store: &dyn Store,
    f: &Funnel,
    now: DateTime<Utc>,
) -> Result<FunnelResult, RequestError> {
    let site = site_or_unknown(store, &f.site).await?;
    if f.breakdown.is_some() {
        let events = store.scan(&f.site, None, None).await?;
        return Ok(run_funnel(&events, f, &site, now));
    }
    let (_, _, start, end) = bounds(&f.date_range, &site, now);
    let c = store
        .columns(&f.site, Some(start), Some(end), f.include_bots)
        .await?;
    let (counts, _) = run_columns(f, &c, None, 0);
    Ok(FunnelResult {
        steps: step_results(f, &counts),
        breakdown: None,
    })
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
            RequestError::Invalid { field, .. } => field,
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
