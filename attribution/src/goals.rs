//! Goal definitions and their conversions (contract section 3's `conversions` and
//! `conversion_rate`, per defined goal).

use crate::funnel::glob;
use crate::request::{bounds, invalid, object, parse_object, Common, RequestError};
use beacon_core::{
    percent, site_or_unknown, Currency, DateRange, EventColumns, EventKind, MetricValue, Money,
    Store,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// What completes a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoalMatch {
    /// A pageview whose path matches the pattern (`*` is any run of characters).
    Page(String),
    /// A custom event or a goal event of this name (`beacon('goal', name)`).
    Event(String),
    /// A click on an element with `data-beacon-goal="<name>"` (the script sends it as
    /// a goal event of that name).
    Attribute(String),
}

/// A goal: a name, what completes it, and an optional value per completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalDefinition {
    /// Display name.
    pub name: String,
    /// What completes it.
    pub matcher: GoalMatch,
    /// Value of one completion.
    pub value: Option<Money>,
}

/// A goals request: `{"site", "date_range", "goals": [{"name", "page"|"event"|"attribute", "value"}]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalsRequest {
    /// Site.
    pub site: String,
    /// Date range (default `30d`).
    pub date_range: DateRange,
    /// The goals, reported in this order.
    pub goals: Vec<GoalDefinition>,
    /// Count events classified as bots.
    pub include_bots: bool,
}

impl GoalsRequest {
    /// Most goals in one request.
    pub const MAX_GOALS: usize = 100;

    /// Parses the request JSON text.
    pub fn from_json(text: &str) -> Result<Self, RequestError> {
        Self::from_parts(parse_object(text, "goals request", &["goals"])?)
    }

    /// Parses the request JSON.
    pub fn from_value(v: &Value) -> Result<Self, RequestError> {
        Self::from_parts(object(v, "goals request", &["goals"])?)
    }

    fn from_parts((obj, common): (Map<String, Value>, Common)) -> Result<Self, RequestError> {
        let list = obj.get("goals").and_then(Value::as_array).ok_or_else(|| {
            invalid(
                "goals",
                "is required: an array of {\"name\", \"page\"|\"event\"|\"attribute\"}",
            )
        })?;
        if list.is_empty() || list.len() > Self::MAX_GOALS {
            return Err(invalid(
                "goals",
                format!("must have 1 to {} goals", Self::MAX_GOALS),
            ));
        }
        let mut goals = Vec::with_capacity(list.len());
        for (i, g) in list.iter().enumerate() {
            let at = |k: &str| format!("goals[{i}].{k}");
            let o = g
                .as_object()
                .ok_or_else(|| invalid(format!("goals[{i}]"), "must be an object"))?;
            if let Some(k) = o
                .keys()
                .find(|k| !["name", "page", "event", "attribute", "value"].contains(&k.as_str()))
            {
                return Err(invalid(at(k), "is not a goal field"));
            }
            let text = |k: &str| -> Result<Option<String>, RequestError> {
                match o.get(k) {
                    None => Ok(None),
                    Some(v) => v
                        .as_str()
                        .filter(|s| !s.is_empty() && s.len() <= 500)
                        .map(|s| Some(s.to_owned()))
                        .ok_or_else(|| invalid(at(k), "must be a string of 1 to 500 bytes")),
                }
            };
            let matchers: Vec<GoalMatch> = [
                text("page")?.map(GoalMatch::Page),
                text("event")?.map(GoalMatch::Event),
                text("attribute")?.map(GoalMatch::Attribute),
            ]
            .into_iter()
            .flatten()
            .collect();
            let [matcher] = <[GoalMatch; 1]>::try_from(matchers).map_err(|_| {
                invalid(
                    format!("goals[{i}]"),
                    "needs exactly one of page, event or attribute",
                )
            })?;
            let name = match text("name")? {
                Some(n) => n,
                None => match &matcher {
                    GoalMatch::Page(s) => format!("Visit {s}"),
                    GoalMatch::Event(s) | GoalMatch::Attribute(s) => s.clone(),
                },
            };
            let value = match o.get("value") {
                None => None,
                Some(v) => {
                    let amount = v.get("amount").and_then(Value::as_str).ok_or_else(|| {
                        invalid(
                            at("value.amount"),
                            "must be a decimal string such as \"9.99\"",
                        )
                    })?;
                    let currency = v
                        .get("currency")
                        .and_then(Value::as_str)
                        .and_then(Currency::parse)
                        .ok_or_else(|| {
                            invalid(
                                at("value.currency"),
                                "must be an ISO 4217 code such as \"USD\"",
                            )
                        })?;
                    let m = Money::parse(amount, currency)
                        .map_err(|e| invalid(at("value.amount"), e.to_string()))?;
                    if m.minor < 0 {
                        return Err(invalid(at("value.amount"), "must not be negative"));
                    }
                    Some(m)
                }
            };
            goals.push(GoalDefinition {
                name,
                matcher,
                value,
            });
        }
        Ok(Self {
            site: common.site,
            date_range: common.date_range,
            goals,
            include_bots: common.include_bots,
        })
    }
}

/// One goal's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalResult {
    /// The goal's name.
    pub name: String,
    /// Distinct visitors who completed it (the contract's `conversions`).
    pub conversions: u64,
    /// Completions (events), a visitor may complete it several times.
    pub completions: u64,
    /// Conversions / visitors of the range, percent.
    pub conversion_rate: MetricValue,
    /// Completions × the goal's value, when it has one.
    pub value: Option<Money>,
}

/// The answer to a goals request.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalsResult {
    /// Distinct visitors in the range (the rates' denominator).
    pub visitors: u64,
    /// Per goal, in request order.
    pub goals: Vec<GoalResult>,
}

impl GoalsResult {
    /// The response JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "visitors": self.visitors,
            "goals": self.goals.iter().map(|g| json!({
                "name": g.name,
                "conversions": g.conversions,
                "completions": g.completions,
                "conversion_rate": g.conversion_rate.to_json(),
                "value": g.value.map(|m| json!({"amount": m.to_decimal_string(), "currency": m.currency.code()})),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Counts each goal over columns limited to the range.
pub fn run_goals_columns(req: &GoalsRequest, c: &EventColumns) -> GoalsResult {
    let n = req.goals.len();
    // One bit per goal and dictionary entry (goals beyond 64 use further words).
    let words = n.div_ceil(64).max(1);
    let dict = |dict: &[String], want: &dyn Fn(&GoalMatch, &str) -> bool| -> Vec<Vec<u64>> {
        dict.iter()
            .enumerate()
            .map(|(id, s)| {
                let mut m = vec![0u64; words];
                if id > 0 {
                    for (g, def) in req.goals.iter().enumerate() {
                        if want(&def.matcher, s) {
                            m[g / 64] |= 1 << (g % 64);
                        }
                    }
                }
                m
            })
            .collect()
    };
    let page = dict(
        &c.paths,
        &|m, p| matches!(m, GoalMatch::Page(g) if glob(g, p)),
    );
    let goal = dict(
        &c.names,
        &|m, s| matches!(m, GoalMatch::Event(g) | GoalMatch::Attribute(g) if g == s),
    );
    let custom = dict(&c.names, &|m, s| matches!(m, GoalMatch::Event(g) if g == s));
    let empty = vec![0u64; words];
    let (mut conversions, mut completions) = (vec![0u64; n], vec![0u64; n]);
    let mut visitors = 0u64;
    let mut seen = vec![0u64; words];
    for run in c.visitor_runs() {
        visitors += 1;
        seen.iter_mut().for_each(|w| *w = 0);
        for r in run {
            let m = match c.kind[r] {
                EventKind::Pageview => &page[c.path[r] as usize],
                EventKind::Goal => &goal[c.name[r] as usize],
                EventKind::Custom => &custom[c.name[r] as usize],
                _ => &empty,
            };
            for (w, &bits) in m.iter().enumerate() {
                let mut b = bits;
                while b != 0 {
                    let g = w * 64 + b.trailing_zeros() as usize;
                    completions[g] += 1;
                    b &= b - 1;
                }
                seen[w] |= bits;
            }
        }
        for (w, &bits) in seen.iter().enumerate() {
            let mut b = bits;
            while b != 0 {
                conversions[w * 64 + b.trailing_zeros() as usize] += 1;
                b &= b - 1;
            }
        }
    }
    GoalsResult {
        visitors,
        goals: req
            .goals
            .iter()
            .enumerate()
            .map(|(g, def)| GoalResult {
                name: def.name.clone(),
                conversions: conversions[g],
                completions: completions[g],
                conversion_rate: percent(conversions[g], visitors),
                value: def.value.map(|v| Money {
                    minor: v.minor.saturating_mul(completions[g] as i64),
                    currency: v.currency,
                }),
            })
            .collect(),
    }
}

/// Runs a goals request on any store, over the range's events as columns.
pub async fn goals(
    store: &dyn Store,
    req: &GoalsRequest,
    now: DateTime<Utc>,
) -> Result<GoalsResult, RequestError> {
    let site = site_or_unknown(store, &req.site).await?;
    let (_, _, start, end) = bounds(&req.date_range, &site, now);
    let c = store
        .columns(&req.site, Some(start), Some(end), req.include_bots)
        .await?;
    Ok(run_goals_columns(req, &c))
}
