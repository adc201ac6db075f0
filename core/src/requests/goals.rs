//! Goal definitions and the goals request (contract section 3's `conversions` and
//! `conversion_rate`, per defined goal).

use super::{check_text, invalid, object, parse_object, validate_common, Common};
use crate::error::QueryError;
use crate::money::{Currency, Money};
use crate::query::DateRange;
use crate::result::MetricValue;
use serde_json::{json, Map, Value};

/// What completes a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GoalMatch {
    /// A pageview whose path matches the pattern (`*` is any run of characters).
    Page(String),
    /// A custom event or a goal event of this name (`beacon('goal', name)`).
    Event(String),
    /// A click on an element with `data-beacon-goal="<name>"` (the script sends it as
    /// a goal event of that name).
    Attribute(String),
}

impl GoalMatch {
    /// Whether an event of `kind` completes it: a pageview by its path (`text`), a
    /// goal event by its name (page and attribute goals), a custom event by its
    /// name (event goals). The one rule: queries and outgoing webhooks use it.
    pub fn matches(&self, kind: crate::EventKind, text: &str) -> bool {
        use crate::EventKind as K;
        match (kind, self) {
            (K::Pageview, GoalMatch::Page(g)) => super::glob(g, text),
            (K::Goal, GoalMatch::Event(g) | GoalMatch::Attribute(g)) => g == text,
            (K::Custom, GoalMatch::Event(g)) => g == text,
            _ => false,
        }
    }

    fn parts(&self) -> (&'static str, &str) {
        match self {
            GoalMatch::Page(s) => ("page", s),
            GoalMatch::Event(s) => ("event", s),
            GoalMatch::Attribute(s) => ("attribute", s),
        }
    }
}

/// A goal: a name, what completes it, and an optional value per completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalDefinition {
    /// Display name (unique per site when saved).
    pub name: String,
    /// What completes it.
    pub matcher: GoalMatch,
    /// Value of one completion.
    pub value: Option<Money>,
}

impl GoalDefinition {
    /// A goal without a value.
    pub fn new(name: impl Into<String>, matcher: GoalMatch) -> Self {
        Self {
            name: name.into(),
            matcher,
            value: None,
        }
    }

    /// Parses `{"name", "page"|"event"|"attribute", "value"}`; errors name fields
    /// under `at` (`goals[2]`).
    pub fn from_value(g: &Value, at: &str) -> Result<Self, QueryError> {
        let field = |k: &str| {
            if at.is_empty() {
                k.to_owned()
            } else {
                format!("{at}.{k}")
            }
        };
        let whole = || {
            if at.is_empty() {
                "goal".to_owned()
            } else {
                at.to_owned()
            }
        };
        let o = g
            .as_object()
            .ok_or_else(|| invalid(whole(), "must be an object"))?;
        if let Some(k) = o
            .keys()
            .find(|k| !["name", "page", "event", "attribute", "value"].contains(&k.as_str()))
        {
            return Err(invalid(field(k), "is not a goal field"));
        }
        let text = |k: &str| -> Result<Option<String>, QueryError> {
            match o.get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_str()
                    .map(|s| Some(s.to_owned()))
                    .ok_or_else(|| invalid(field(k), "must be a string of 1 to 500 bytes")),
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
        let [matcher] = <[GoalMatch; 1]>::try_from(matchers)
            .map_err(|_| invalid(whole(), "needs exactly one of page, event or attribute"))?;
        let name = match text("name")? {
            Some(n) => n,
            None => match &matcher {
                GoalMatch::Page(s) => format!("Visit {s}"),
                GoalMatch::Event(s) | GoalMatch::Attribute(s) => s.clone(),
            },
        };
        let value = match o.get("value") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let amount = v.get("amount").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        field("value.amount"),
                        "must be a decimal string such as \"9.99\"",
                    )
                })?;
                let currency = v
                    .get("currency")
                    .and_then(Value::as_str)
                    .and_then(Currency::parse)
                    .ok_or_else(|| {
                        invalid(
                            field("value.currency"),
                            "must be an ISO 4217 code such as \"USD\"",
                        )
                    })?;
                Some(
                    Money::parse(amount, currency)
                        .map_err(|e| invalid(field("value.amount"), e.to_string()))?,
                )
            }
        };
        let g = Self {
            name,
            matcher,
            value,
        };
        g.validate_at(at)?;
        Ok(g)
    }

    /// The JSON form [`GoalDefinition::from_value`] reads.
    pub fn to_json(&self) -> Value {
        let (kind, text) = self.matcher.parts();
        let mut v = json!({ "name": self.name, kind: text });
        if let Some(m) = self.value {
            v["value"] = json!({"amount": m.to_decimal_string(), "currency": m.currency.code()});
        }
        v
    }

    /// Checks the name and pattern (1 to 500 bytes) and that the value is not negative.
    pub fn validate(&self) -> Result<(), QueryError> {
        self.validate_at("")
    }

    fn validate_at(&self, at: &str) -> Result<(), QueryError> {
        let field = |k: &str| {
            if at.is_empty() {
                k.to_owned()
            } else {
                format!("{at}.{k}")
            }
        };
        check_text(|| field("name"), &self.name)?;
        let (kind, text) = self.matcher.parts();
        check_text(|| field(kind), text)?;
        if self.value.is_some_and(|m| m.minor < 0) {
            return Err(invalid(field("value.amount"), "must not be negative"));
        }
        Ok(())
    }
}

/// A goals request: `{"site", "date_range", "goals": [{"name", "page"|"event"|"attribute", "value"}]}`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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

    /// A request for `goals` of `site` over the last 30 days.
    pub fn new(site: impl Into<String>, goals: Vec<GoalDefinition>) -> Self {
        Self {
            site: site.into(),
            date_range: DateRange::Last30Days,
            goals,
            include_bots: false,
        }
    }

    /// Parses the request JSON text.
    pub fn from_json(text: &str) -> Result<Self, QueryError> {
        Self::from_parts(parse_object(text, "goals request", &["goals"])?)
    }

    /// Parses the request JSON.
    pub fn from_value(v: &Value) -> Result<Self, QueryError> {
        Self::from_parts(object(v, "goals request", &["goals"])?)
    }

    fn from_parts((obj, common): (Map<String, Value>, Common)) -> Result<Self, QueryError> {
        let list = obj.get("goals").and_then(Value::as_array).ok_or_else(|| {
            invalid(
                "goals",
                "is required: an array of {\"name\", \"page\"|\"event\"|\"attribute\"}",
            )
        })?;
        if list.is_empty() || list.len() > Self::MAX_GOALS {
            return Err(goals_rule());
        }
        let goals = list
            .iter()
            .enumerate()
            .map(|(i, g)| GoalDefinition::from_value(g, &format!("goals[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let r = Self {
            site: common.site,
            date_range: common.date_range,
            goals,
            include_bots: common.include_bots,
        };
        r.validate()?;
        Ok(r)
    }

    /// Checks every rule, whichever way the request was built: a site, a range in
    /// order, 1 to [`GoalsRequest::MAX_GOALS`] valid goals. Every engine runs it first.
    pub fn validate(&self) -> Result<(), QueryError> {
        validate_common(&self.site, &self.date_range)?;
        if self.goals.is_empty() || self.goals.len() > Self::MAX_GOALS {
            return Err(goals_rule());
        }
        for (i, g) in self.goals.iter().enumerate() {
            g.validate_at(&format!("goals[{i}]"))?;
        }
        Ok(())
    }
}

fn goals_rule() -> QueryError {
    invalid(
        "goals",
        format!("must have 1 to {} goals", GoalsRequest::MAX_GOALS),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_parse_validate_and_round_trip() {
        let r = GoalsRequest::from_json(r#"{"site":"a.com","goals":[{"page":"/welcome*","value":{"amount":"5.00","currency":"USD"}},{"name":"News","event":"subscribe"}]}"#).unwrap();
        assert_eq!(r.goals[0].name, "Visit /welcome*");
        for g in &r.goals {
            assert_eq!(&GoalDefinition::from_value(&g.to_json(), "").unwrap(), g);
        }
        let field = |t: &str| match GoalsRequest::from_json(t).unwrap_err() {
            QueryError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(field(r#"{"site":"a","goals":[]}"#), "goals");
        assert_eq!(
            field(r#"{"site":"a","goals":[{"page":"/","event":"x"}]}"#),
            "goals[0]"
        );
        assert_eq!(
            field(r#"{"site":"a","goals":[{"page":""}]}"#),
            "goals[0].page"
        );
        assert_eq!(
            field(
                r#"{"site":"a","goals":[{"page":"/","value":{"amount":"-1","currency":"USD"}}]}"#
            ),
            "goals[0].value.amount"
        );
        let mut built = GoalsRequest::new("a.com", vec![]);
        assert!(built.validate().is_err());
        built
            .goals
            .push(GoalDefinition::new("", GoalMatch::Page("/".into())));
        assert!(built.validate().is_err());
    }
}
