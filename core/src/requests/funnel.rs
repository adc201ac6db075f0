//! Funnels (contract section 5): the request, a saved definition and the result.

use super::{check_text, invalid, object, parse_object, validate_common, Common};
use crate::error::QueryError;
use crate::query::{DateRange, Dimension};
use crate::result::MetricValue;
use serde_json::{json, Map, Value};

/// What a step matches.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepMatch {
    /// A pageview whose path matches the pattern (`*` is any run of characters).
    Page(String),
    /// A goal event of this name.
    Goal(String),
    /// A custom event of this name.
    Event(String),
}

impl StepMatch {
    /// The step's page pattern, goal or event name.
    pub fn label(&self) -> &str {
        match self {
            StepMatch::Page(s) | StepMatch::Goal(s) | StepMatch::Event(s) => s,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            StepMatch::Page(s) => json!({ "page": s }),
            StepMatch::Goal(s) => json!({ "goal": s }),
            StepMatch::Event(s) => json!({ "event": s }),
        }
    }
}

/// `*` matches any run of characters (including none); everything else is literal.
///
/// Linear in the text: the pattern's literal pieces between stars are found left to
/// right, each at its earliest place after the previous one (earliest is always
/// right for stars alone), the first anchored at the start and the last at the end.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let middle: Vec<&str> = pieces.collect();
    let Some((last, between)) = middle.split_last() else {
        // No star: the whole text is the literal.
        return rest.is_empty();
    };
    for piece in between.iter().filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A funnel, typed, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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
    n.checked_mul(ms)
}

fn window_rule() -> QueryError {
    invalid(
        "window",
        "must be a duration such as \"30m\", \"24h\" or \"7d\" (1 s to 90 d)",
    )
}

fn window_text(ms: i64) -> String {
    match ms {
        ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms => format!("{}s", ms / 1000),
    }
}

const OWN_FIELDS: &[&str] = &["window", "steps", "breakdown"];

fn parse_steps(list: Option<&Value>) -> Result<Vec<StepMatch>, QueryError> {
    let list = list.and_then(Value::as_array).ok_or_else(|| {
        invalid(
            "steps",
            "is required: an array of {\"page\"|\"goal\"|\"event\": ...}",
        )
    })?;
    if list.is_empty() || list.len() > Funnel::MAX_STEPS {
        return Err(steps_rule());
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
    Ok(steps)
}

fn steps_rule() -> QueryError {
    invalid(
        "steps",
        format!("must have 1 to {} steps", Funnel::MAX_STEPS),
    )
}

fn validate_steps(steps: &[StepMatch], window_ms: i64) -> Result<(), QueryError> {
    if !(1_000..=90 * 86_400_000).contains(&window_ms) {
        return Err(window_rule());
    }
    if steps.is_empty() || steps.len() > Funnel::MAX_STEPS {
        return Err(steps_rule());
    }
    for (i, s) in steps.iter().enumerate() {
        let kind = match s {
            StepMatch::Page(_) => "page",
            StepMatch::Goal(_) => "goal",
            StepMatch::Event(_) => "event",
        };
        check_text(|| format!("steps[{i}].{kind}"), s.label())?;
    }
    Ok(())
}

impl Funnel {
    /// Most steps in one funnel.
    pub const MAX_STEPS: usize = 20;
    /// The default window: 24 hours.
    pub const DEFAULT_WINDOW_MS: i64 = 86_400_000;

    /// A funnel over `steps` for `site` with every default (30 days, 24 h window).
    pub fn new(site: impl Into<String>, steps: Vec<StepMatch>) -> Self {
        Self {
            site: site.into(),
            date_range: DateRange::Last30Days,
            window_ms: Self::DEFAULT_WINDOW_MS,
            steps,
            include_bots: false,
            breakdown: None,
        }
    }

    /// Parses the contract's funnel JSON text.
    pub fn from_json(text: &str) -> Result<Self, QueryError> {
        Self::from_parts(parse_object(text, "funnel", OWN_FIELDS)?)
    }

    /// Parses the contract's funnel JSON.
    pub fn from_value(v: &Value) -> Result<Self, QueryError> {
        Self::from_parts(object(v, "funnel", OWN_FIELDS)?)
    }

    fn from_parts((obj, common): (Map<String, Value>, Common)) -> Result<Self, QueryError> {
        let window_ms = match obj.get("window") {
            None => Self::DEFAULT_WINDOW_MS,
            Some(w) => w.as_str().and_then(parse_window).ok_or_else(window_rule)?,
        };
        let steps = parse_steps(obj.get("steps"))?;
        let breakdown = match obj.get("breakdown") {
            None | Some(Value::Null) => None,
            Some(b) => Some(
                b.as_str()
                    .and_then(Dimension::parse)
                    .ok_or_else(breakdown_rule)?,
            ),
        };
        let f = Self {
            site: common.site,
            date_range: common.date_range,
            window_ms,
            steps,
            include_bots: common.include_bots,
            breakdown,
        };
        f.validate()?;
        Ok(f)
    }

    /// Checks every rule, whichever way the funnel was built: a site, a range in
    /// order, a window of 1 s to 90 d, 1 to [`Funnel::MAX_STEPS`] steps of 1 to 500
    /// bytes each, a session-level breakdown. Every engine runs it first.
    pub fn validate(&self) -> Result<(), QueryError> {
        validate_common(&self.site, &self.date_range)?;
        validate_steps(&self.steps, self.window_ms)?;
        if self
            .breakdown
            .as_ref()
            .is_some_and(|d| !d.is_session_level())
        {
            return Err(breakdown_rule());
        }
        Ok(())
    }
}

fn breakdown_rule() -> QueryError {
    invalid(
        "breakdown",
        "must be a session-level dimension such as \"source\" or \"country\"",
    )
}

/// A funnel saved under a name for a site (its steps and window; the range and
/// breakdown are chosen when it is run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFunnel {
    /// Its name, unique per site.
    pub name: String,
    /// The steps, in order.
    pub steps: Vec<StepMatch>,
    /// Longest time from the first step to the last, ms.
    pub window_ms: i64,
}

impl SavedFunnel {
    /// A saved funnel named `name` with the default 24 h window.
    pub fn new(name: impl Into<String>, steps: Vec<StepMatch>) -> Self {
        Self {
            name: name.into(),
            steps,
            window_ms: Funnel::DEFAULT_WINDOW_MS,
        }
    }

    /// Parses `{"name", "steps", "window"}`.
    pub fn from_value(v: &Value) -> Result<Self, QueryError> {
        let o = v
            .as_object()
            .ok_or_else(|| invalid("funnel", "must be a JSON object"))?;
        if let Some(k) = o
            .keys()
            .find(|k| !["name", "steps", "window"].contains(&k.as_str()))
        {
            return Err(invalid(k.as_str(), "is not a saved funnel field"));
        }
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("name", "is required: the funnel's name"))?
            .to_owned();
        let window_ms = match o.get("window") {
            None => Funnel::DEFAULT_WINDOW_MS,
            Some(w) => w.as_str().and_then(parse_window).ok_or_else(window_rule)?,
        };
        let f = Self {
            name,
            steps: parse_steps(o.get("steps"))?,
            window_ms,
        };
        f.validate()?;
        Ok(f)
    }

    /// The JSON form [`SavedFunnel::from_value`] reads.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "steps": self.steps.iter().map(StepMatch::to_json).collect::<Vec<_>>(),
            "window": window_text(self.window_ms),
        })
    }

    /// Checks the name (1 to 500 bytes), steps and window.
    pub fn validate(&self) -> Result<(), QueryError> {
        check_text(|| "name".into(), &self.name)?;
        validate_steps(&self.steps, self.window_ms)
    }

    /// The funnel to run for `site` over `date_range`.
    pub fn to_funnel(&self, site: impl Into<String>, date_range: DateRange) -> Funnel {
        Funnel {
            date_range,
            window_ms: self.window_ms,
            ..Funnel::new(site, self.steps.clone())
        }
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
        assert!(glob("a*b*c", "abc") && glob("a*b*c", "aXbYbZc") && !glob("a*b*c", "acb"));
        assert!(glob("**", "x") && glob("a**", "a") && !glob("ab", "abc"));
        assert!(glob("*aa", "aaa") && !glob("a*a", "a") && glob("a*a", "aa"));
    }

    /// The linear matcher agrees with a plain backtracking reading of `*`.
    fn backtracking(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| backtracking(rest, &t[i..])),
            Some((c, rest)) => t.first() == Some(c) && backtracking(rest, &t[1..]),
        }
    }

    proptest::proptest! {
        #[test]
        fn glob_equals_the_definition(p in "[ab*/]{0,8}", t in "[ab/]{0,12}") {
            let (pc, tc): (Vec<char>, Vec<char>) = (p.chars().collect(), t.chars().collect());
            proptest::prop_assert_eq!(glob(&p, &t), backtracking(&pc, &tc));
        }
    }

    #[test]
    fn errors_name_the_field() {
        let field = |t: &str| match Funnel::from_json(t).unwrap_err() {
            QueryError::Invalid { field, .. } => field,
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
            field(r#"{"site":"a","steps":[{"page":""}]}"#),
            "steps[0].page"
        );
        assert_eq!(
            field(r#"{"site":"a","window":"1 week","steps":[{"page":"/"}]}"#),
            "window"
        );
        assert_eq!(
            field(r#"{"site":"a","window":"91d","steps":[{"page":"/"}]}"#),
            "window"
        );
        assert_eq!(
            field(r#"{"site":"a","date_range":"year","steps":[{"page":"/"}]}"#),
            "date_range"
        );
        assert_eq!(
            field(r#"{"site":"a","breakdown":"page","steps":[{"page":"/"}]}"#),
            "breakdown"
        );
        let f = Funnel::from_json(r#"{"site": "example.com", "date_range": "30d", "window": "24h", "steps": [{"page": "/"}, {"page": "/pricing"}, {"goal": "signup"}]}"#).unwrap();
        assert_eq!((f.window_ms, f.steps.len()), (86_400_000, 3));
    }

    #[test]
    fn rust_built_funnels_are_held_to_the_same_rules() {
        let mut f = Funnel::new("a.com", vec![]);
        assert!(f.validate().is_err());
        f.steps = vec![StepMatch::Page("/".into()); 21];
        assert!(f.validate().is_err());
        f.steps.truncate(2);
        f.window_ms = 0;
        assert!(f.validate().is_err());
        f.window_ms = 1000;
        assert!(f.validate().is_ok());
        f.breakdown = Some(Dimension::Page);
        assert!(f.validate().is_err());
    }

    #[test]
    fn saved_funnels_round_trip() {
        let f = SavedFunnel {
            window_ms: 30 * 60_000,
            ..SavedFunnel::new(
                "checkout",
                vec![
                    StepMatch::Page("/cart".into()),
                    StepMatch::Goal("paid".into()),
                ],
            )
        };
        assert_eq!(SavedFunnel::from_value(&f.to_json()).unwrap(), f);
        assert_eq!(f.to_json()["window"], "30m");
    }
}
