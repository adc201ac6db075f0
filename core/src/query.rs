//! The query model: contract section 4 parsed into a typed [`Query`], with defaults
//! filled in and errors that name the offending field.

use crate::error::QueryError;
use crate::money::Currency;
use crate::time::{day_start, local_date, TimeBucket};
use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

/// A metric of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Metric {
    /// Distinct visitors among matching events.
    Visitors,
    /// Sessions starting in range that match.
    Visits,
    /// Pageview events.
    Pageviews,
    /// All events.
    Events,
    /// Percent of visits that bounced.
    BounceRate,
    /// Mean visit duration, seconds.
    VisitDuration,
    /// Pageviews of visits per visit.
    ViewsPerVisit,
    /// Distinct visitors with a goal or purchase.
    Conversions,
    /// Conversions per visitor (without goal filters), percent.
    ConversionRate,
    /// Sum of purchase amounts in one currency.
    Revenue,
    /// Mean engaged time per pageview, seconds.
    TimeOnPage,
    /// Mean largest scroll depth per (session, page), percent.
    ScrollDepth,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 12] = [
        Metric::Visitors,
        Metric::Visits,
        Metric::Pageviews,
        Metric::Events,
        Metric::BounceRate,
        Metric::VisitDuration,
        Metric::ViewsPerVisit,
        Metric::Conversions,
        Metric::ConversionRate,
        Metric::Revenue,
        Metric::TimeOnPage,
        Metric::ScrollDepth,
    ];
    /// The contract name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Metric::Visitors => "visitors",
            Metric::Visits => "visits",
            Metric::Pageviews => "pageviews",
            Metric::Events => "events",
            Metric::BounceRate => "bounce_rate",
            Metric::VisitDuration => "visit_duration",
            Metric::ViewsPerVisit => "views_per_visit",
            Metric::Conversions => "conversions",
            Metric::ConversionRate => "conversion_rate",
            Metric::Revenue => "revenue",
            Metric::TimeOnPage => "time_on_page",
            Metric::ScrollDepth => "scroll_depth",
        }
    }
    /// Parses a contract name.
    pub fn parse(s: &str) -> Option<Metric> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A dimension of the contract.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dimension {
    /// URL path of the event (event-level).
    Page,
    /// Path of the session's first event.
    EntryPage,
    /// Path of the session's last pageview.
    ExitPage,
    /// Traffic source.
    Source,
    /// Referrer URL.
    Referrer,
    /// Channel.
    Channel,
    /// utm_source.
    UtmSource,
    /// utm_medium.
    UtmMedium,
    /// utm_campaign.
    UtmCampaign,
    /// utm_content.
    UtmContent,
    /// utm_term.
    UtmTerm,
    /// Country code.
    Country,
    /// Region.
    Region,
    /// City.
    City,
    /// Device type.
    Device,
    /// Browser name.
    Browser,
    /// Operating system name.
    Os,
    /// Goal name of goal and purchase events (event-level).
    Goal,
    /// Company name.
    Company,
    /// Visitor type.
    VisitorType,
    /// A custom property (event-level).
    Prop(String),
    /// A time bucket.
    Time(TimeBucket),
}

impl Dimension {
    /// Parses a contract name (`"source"`, `"prop:plan"`, `"time:day"`).
    pub fn parse(s: &str) -> Option<Dimension> {
        use Dimension::*;
        Some(match s {
            "page" => Page,
            "entry_page" => EntryPage,
            "exit_page" => ExitPage,
            "source" => Source,
            "referrer" => Referrer,
            "channel" => Channel,
            "utm_source" => UtmSource,
            "utm_medium" => UtmMedium,
            "utm_campaign" => UtmCampaign,
            "utm_content" => UtmContent,
            "utm_term" => UtmTerm,
            "country" => Country,
            "region" => Region,
            "city" => City,
            "device" => Device,
            "browser" => Browser,
            "os" => Os,
            "goal" => Goal,
            "company" => Company,
            "visitor_type" => VisitorType,
            "time:hour" => Time(TimeBucket::Hour),
            "time:day" => Time(TimeBucket::Day),
            "time:week" => Time(TimeBucket::Week),
            "time:month" => Time(TimeBucket::Month),
            other => match other.strip_prefix("prop:") {
                Some(name) if !name.is_empty() => Prop(name.to_owned()),
                _ => return None,
            },
        })
    }
    /// The contract name.
    pub fn name(&self) -> String {
        use Dimension::*;
        match self {
            Page => "page".into(),
            EntryPage => "entry_page".into(),
            ExitPage => "exit_page".into(),
            Source => "source".into(),
            Referrer => "referrer".into(),
            Channel => "channel".into(),
            UtmSource => "utm_source".into(),
            UtmMedium => "utm_medium".into(),
            UtmCampaign => "utm_campaign".into(),
            UtmContent => "utm_content".into(),
            UtmTerm => "utm_term".into(),
            Country => "country".into(),
            Region => "region".into(),
            City => "city".into(),
            Device => "device".into(),
            Browser => "browser".into(),
            Os => "os".into(),
            Goal => "goal".into(),
            Company => "company".into(),
            VisitorType => "visitor_type".into(),
            Prop(p) => format!("prop:{p}"),
            Time(b) => format!("time:{}", b.as_str()),
        }
    }
    /// Whether the value is frozen per session (as opposed to per event or per time).
    pub fn is_session_level(&self) -> bool {
        !matches!(
            self,
            Dimension::Page | Dimension::Goal | Dimension::Prop(_) | Dimension::Time(_)
        )
    }
}

/// A compiled regular expression that compares by its source.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source` (size-limited, so a query cannot exhaust memory).
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        // 1 MB compiled and 1 MB of lazy-DFA cache each: with at most
        // `Query::MAX_FILTERS` conditions, a query's patterns hold ~100 MB at most.
        let regex = regex::RegexBuilder::new(source)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }
    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.source
    }
    /// Whether `s` contains a match.
    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A filter tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// The value is one of these (`None` matches a missing value).
    Is(Dimension, Vec<Option<String>>),
    /// The value is none of these.
    IsNot(Dimension, Vec<Option<String>>),
    /// The value contains one of these substrings.
    Contains(Dimension, Vec<String>),
    /// The value matches one of these regular expressions (unanchored).
    Matches(Dimension, Vec<Pattern>),
    /// All of these.
    And(Vec<Filter>),
    /// Any of these.
    Or(Vec<Filter>),
    /// Not this.
    Not(Box<Filter>),
}

impl Filter {
    /// Whether this filter mentions `dim` anywhere.
    pub fn mentions(&self, dim: &Dimension) -> bool {
        match self {
            Filter::Is(d, _)
            | Filter::IsNot(d, _)
            | Filter::Contains(d, _)
            | Filter::Matches(d, _) => d == dim,
            Filter::And(fs) | Filter::Or(fs) => fs.iter().any(|f| f.mentions(dim)),
            Filter::Not(f) => f.mentions(dim),
        }
    }

    /// Whether a value (`None` = missing) passes a leaf's test; for composite filters, false.
    pub fn leaf_accepts(&self, v: Option<&str>) -> bool {
        match self {
            Filter::Is(_, vals) => vals.iter().any(|x| x.as_deref() == v),
            Filter::IsNot(_, vals) => !vals.iter().any(|x| x.as_deref() == v),
            Filter::Contains(_, subs) => {
                v.is_some_and(|v| subs.iter().any(|s| v.contains(s.as_str())))
            }
            Filter::Matches(_, pats) => v.is_some_and(|v| pats.iter().any(|p| p.is_match(v))),
            _ => false,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Filter::Is(d, v) => json!(["is", d.name(), v]),
            Filter::IsNot(d, v) => json!(["is_not", d.name(), v]),
            Filter::Contains(d, v) => json!(["contains", d.name(), v]),
            Filter::Matches(d, v) => json!([
                "matches",
                d.name(),
                v.iter().map(Pattern::as_str).collect::<Vec<_>>()
            ]),
            Filter::And(fs) => json!(["and", fs.iter().map(Filter::to_json).collect::<Vec<_>>()]),
            Filter::Or(fs) => json!(["or", fs.iter().map(Filter::to_json).collect::<Vec<_>>()]),
            Filter::Not(f) => json!(["not", f.to_json()]),
        }
    }
}

/// The date range of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DateRange {
    /// Today, in the site's time zone.
    Day,
    /// The 7 days ending today.
    Last7Days,
    /// The 30 days ending today.
    Last30Days,
    /// The current calendar month up to today.
    Month,
    /// From the first stored event's day to today (or the last event's day, if later).
    All,
    /// Two local dates, both inclusive.
    Custom(NaiveDate, NaiveDate),
}

impl DateRange {
    /// Parses the contract's `date_range` value (a preset name or two dates); errors
    /// name `date_range`.
    pub fn from_value(v: &Value) -> Result<Self, QueryError> {
        parse_date_range(v)
    }

    /// Resolves the range for a site in time zone `tz` at `now`: its local dates and
    /// UTC bounds. `extent` is the instants of the site's first and last stored
    /// events, which only [`DateRange::All`] needs (pass `None` when there are none).
    /// This is the one resolver every request kind uses.
    pub fn resolve(
        &self,
        tz: Tz,
        now: DateTime<Utc>,
        extent: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> ResolvedRange {
        let today = local_date(tz, now);
        let back = |n: u64| today.checked_sub_days(Days::new(n)).unwrap_or(today);
        let (from, to) = match *self {
            DateRange::Day => (today, today),
            DateRange::Last7Days => (back(6), today),
            DateRange::Last30Days => (back(29), today),
            DateRange::Month => (today.with_day(1).unwrap_or(today), today),
            DateRange::All => match extent {
                Some((first, last)) => (
                    local_date(tz, first).min(today),
                    local_date(tz, last).max(today),
                ),
                None => (today, today),
            },
            DateRange::Custom(a, b) => (a, b),
        };
        let after = to.checked_add_days(Days::new(1)).unwrap_or(to);
        ResolvedRange {
            from,
            to,
            start: day_start(tz, from),
            end: day_start(tz, after),
        }
    }

    /// Whether resolving needs the site's first and last events (`All`).
    pub fn needs_extent(&self) -> bool {
        matches!(self, DateRange::All)
    }
}

/// A [`DateRange`] resolved for a site: local dates, both inclusive, and the UTC
/// instants `[start, end)` they cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedRange {
    /// First local date.
    pub from: NaiveDate,
    /// Last local date (inclusive).
    pub to: NaiveDate,
    /// The instant `from` begins.
    pub start: DateTime<Utc>,
    /// The instant the day after `to` begins (exclusive).
    pub end: DateTime<Utc>,
}

impl ResolvedRange {
    /// `start` in ms since the epoch.
    pub fn start_ms(&self) -> i64 {
        self.start.timestamp_millis()
    }
    /// `end` in ms since the epoch.
    pub fn end_ms(&self) -> i64 {
        self.end.timestamp_millis()
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// What a result is ordered by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKey {
    /// A requested metric.
    Metric(Metric),
    /// A requested dimension, by its position in `dimensions`.
    Dimension(usize),
}

/// Revenue attribution models (contract section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttributionModel {
    /// All credit to the earliest touch.
    FirstTouch,
    /// All credit to the latest touch.
    LastTouch,
    /// The latest touch with a non-empty value of the dimension.
    LastNonDirect,
    /// Equal shares.
    Linear,
    /// Weight 2^(-age/half_life).
    TimeDecay,
    /// 40 / 20 / 40.
    PositionBased,
}

impl AttributionModel {
    /// The contract name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttributionModel::FirstTouch => "first_touch",
            AttributionModel::LastTouch => "last_touch",
            AttributionModel::LastNonDirect => "last_non_direct",
            AttributionModel::Linear => "linear",
            AttributionModel::TimeDecay => "time_decay",
            AttributionModel::PositionBased => "position_based",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [
            Self::FirstTouch,
            Self::LastTouch,
            Self::LastNonDirect,
            Self::Linear,
            Self::TimeDecay,
            Self::PositionBased,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// The attribution option of a query.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Attribution {
    /// The model.
    pub model: AttributionModel,
    /// Lookback window, days (default 30).
    pub window_days: u32,
    /// Half-life for time decay, days (default 7).
    pub half_life_days: f64,
    /// Exchange rates into the query's currency (`"rates": {"EUR": "1.08"}`: one euro
    /// is 1.08 of it). Purchases in a currency without a rate add no revenue.
    pub rates: Vec<(Currency, f64)>,
}

impl Attribution {
    /// Attribution under `model` with the defaults: a 30-day window, a 7-day
    /// half-life, no rates.
    pub fn new(model: AttributionModel) -> Self {
        Self {
            model,
            window_days: 30,
            half_life_days: 7.0,
            rates: Vec::new(),
        }
    }
}

/// A query, typed, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Query {
    /// Site domain.
    pub site: String,
    /// Date range (default `30d`).
    pub date_range: DateRange,
    /// Metrics, in the order of the result's metric arrays (default `["visitors"]`).
    pub metrics: Vec<Metric>,
    /// Dimensions (at most [`Query::MAX_DIMENSIONS`]).
    pub dimensions: Vec<Dimension>,
    /// Filters, all of which must hold.
    pub filters: Vec<Filter>,
    /// Order; empty means the default (time ascending, else first metric descending),
    /// with dimension values ascending as the last tie-break.
    pub order_by: Vec<(OrderKey, Direction)>,
    /// Rows to return at most (default 10 000).
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
    /// Count events classified as bots.
    pub include_bots: bool,
    /// Revenue currency; default the site's.
    pub currency: Option<Currency>,
    /// Attribution of revenue and conversions.
    pub attribution: Option<Attribution>,
}

impl Query {
    /// Most dimensions in one query.
    pub const MAX_DIMENSIONS: usize = 4;
    /// Most filter conditions (`is`, `is_not`, `contains`, `matches`) in one query,
    /// nested ones included.
    pub const MAX_FILTERS: usize = 50;
    /// Most values in one condition.
    pub const MAX_FILTER_VALUES: usize = 100;
    /// Longest value of a condition, and longest regular expression, bytes.
    pub const MAX_PATTERN_BYTES: usize = 500;
    /// Default `limit`.
    pub const DEFAULT_LIMIT: usize = 10_000;

    /// A query for `site` with every default: 30 days, visitors, no dimensions.
    pub fn new(site: impl Into<String>) -> Self {
        Self {
            site: site.into(),
            date_range: DateRange::Last30Days,
            metrics: vec![Metric::Visitors],
            dimensions: Vec::new(),
            filters: Vec::new(),
            order_by: Vec::new(),
            limit: Self::DEFAULT_LIMIT,
            offset: 0,
            include_bots: false,
            currency: None,
            attribution: None,
        }
    }

    /// Parses the contract's query JSON text.
    pub fn from_json(text: &str) -> Result<Query, QueryError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| QueryError::invalid("query", format!("must be a JSON object ({e})")))?;
        Self::from_value(&v)
    }

    /// Parses the contract's query JSON.
    pub fn from_value(v: &Value) -> Result<Query, QueryError> {
        let Value::Object(obj) = v else {
            return Err(QueryError::invalid("query", "must be a JSON object"));
        };
        const KNOWN: [&str; 11] = [
            "site",
            "date_range",
            "metrics",
            "dimensions",
            "filters",
            "order_by",
            "limit",
            "offset",
            "include_bots",
            "currency",
            "attribution",
        ];
        if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(QueryError::invalid(k.as_str(), "is not a query field"));
        }
        let site = match obj.get("site") {
            Some(Value::String(s)) if !s.is_empty() => s.to_ascii_lowercase(),
            _ => {
                return Err(QueryError::invalid(
                    "site",
                    "is required and must be a site domain",
                ))
            }
        };
        let mut q = Query::new(site);
        if let Some(dr) = obj.get("date_range") {
            q.date_range = parse_date_range(dr)?;
        }
        if let Some(m) = obj.get("metrics") {
            let arr = m.as_array().ok_or_else(|| {
                QueryError::invalid("metrics", "must be an array of metric names")
            })?;
            q.metrics.clear();
            for (i, x) in arr.iter().enumerate() {
                let m = x.as_str().and_then(Metric::parse).ok_or_else(|| {
                    QueryError::invalid(
                        format!("metrics[{i}]"),
                        format!(
                            "unknown metric {x}; known: {}",
                            names(Metric::ALL.iter().map(Metric::as_str))
                        ),
                    )
                })?;
                q.metrics.push(m);
            }
        }
        if let Some(d) = obj.get("dimensions") {
            let arr = d.as_array().ok_or_else(|| {
                QueryError::invalid("dimensions", "must be an array of dimension names")
            })?;
            // Refused before parsing each name: a long list costs nothing.
            if arr.len() > Self::MAX_DIMENSIONS {
                return Err(too_many_dimensions());
            }
            for (i, x) in arr.iter().enumerate() {
                let dim = x.as_str().and_then(Dimension::parse).ok_or_else(|| {
                    QueryError::invalid(
                        format!("dimensions[{i}]"),
                        format!("unknown dimension {x}"),
                    )
                })?;
                q.dimensions.push(dim);
            }
        }
        if let Some(f) = obj.get("filters") {
            let arr = f
                .as_array()
                .ok_or_else(|| QueryError::invalid("filters", "must be an array of filters"))?;
            let mut leaves = 0;
            for (i, x) in arr.iter().enumerate() {
                q.filters
                    .push(parse_filter(x, &format!("filters[{i}]"), 0, &mut leaves)?);
            }
        }
        if let Some(o) = obj.get("order_by") {
            let arr = o.as_array().ok_or_else(|| {
                QueryError::invalid("order_by", "must be an array of [name, \"asc\"|\"desc\"]")
            })?;
            for (i, x) in arr.iter().enumerate() {
                let field = format!("order_by[{i}]");
                let pair = x.as_array().filter(|p| p.len() == 2).ok_or_else(|| {
                    QueryError::invalid(field.clone(), "must be [name, \"asc\"|\"desc\"]")
                })?;
                let name = pair[0].as_str().unwrap_or_default();
                let key = if let Some(m) = Metric::parse(name) {
                    OrderKey::Metric(m)
                } else if let Some(pos) =
                    Dimension::parse(name).and_then(|d| q.dimensions.iter().position(|x| *x == d))
                {
                    OrderKey::Dimension(pos)
                } else {
                    return Err(not_in_query(&field, &pair[0]));
                };
                let dir = match pair[1].as_str() {
                    Some("asc") => Direction::Asc,
                    Some("desc") => Direction::Desc,
                    _ => {
                        return Err(QueryError::invalid(
                            format!("{field}[1]"),
                            "must be \"asc\" or \"desc\"",
                        ))
                    }
                };
                q.order_by.push((key, dir));
            }
        }
        if let Some(l) = obj.get("limit") {
            q.limit = l
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(limit_rule)?;
        }
        if let Some(o) = obj.get("offset") {
            q.offset = o
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(offset_rule)?;
        }
        if let Some(b) = obj.get("include_bots") {
            q.include_bots = b
                .as_bool()
                .ok_or_else(|| QueryError::invalid("include_bots", "must be true or false"))?;
        }
        if let Some(c) = obj.get("currency") {
            q.currency = Some(c.as_str().and_then(Currency::parse).ok_or_else(|| {
                QueryError::invalid("currency", "must be an ISO 4217 code such as \"USD\"")
            })?);
        }
        if let Some(a) = obj.get("attribution") {
            q.attribution = Some(parse_attribution(a)?);
        }
        q.validate()?;
        Ok(q)
    }

    /// Checks every rule of a query, whichever way it was built (JSON or Rust): at
    /// least one metric and none twice, at most [`Query::MAX_DIMENSIONS`] dimensions
    /// and none twice, one time dimension at most, `order_by` naming only the query's
    /// metrics and dimensions, `limit` from 1 to 100 000, `offset` up to 10 000 000,
    /// a custom range in order and at most 10 years long, filters at most 16 deep and
    /// never on time, and the attribution rules. Every engine runs it first, so no
    /// value of these public types makes one panic. Errors name the field as the
    /// JSON form would.
    pub fn validate(&self) -> Result<(), QueryError> {
        if self.site.is_empty() {
            return Err(QueryError::invalid(
                "site",
                "is required and must be a site domain",
            ));
        }
        validate_date_range(&self.date_range)?;
        if self.metrics.is_empty() {
            return Err(QueryError::invalid(
                "metrics",
                "must name at least one metric",
            ));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            if self.metrics[..i].contains(m) {
                return Err(QueryError::invalid(
                    format!("metrics[{i}]"),
                    format!("{} is named twice", m.as_str()),
                ));
            }
        }
        if self.dimensions.len() > Self::MAX_DIMENSIONS {
            return Err(too_many_dimensions());
        }
        for (i, d) in self.dimensions.iter().enumerate() {
            let field = || format!("dimensions[{i}]");
            if self.dimensions[..i].contains(d) {
                return Err(QueryError::invalid(field(), "is named twice"));
            }
            if matches!(d, Dimension::Prop(p) if p.is_empty()) {
                return Err(QueryError::invalid(
                    field(),
                    "a property dimension needs a name (prop:<name>)",
                ));
            }
            if matches!(d, Dimension::Time(_))
                && self.dimensions[..i]
                    .iter()
                    .any(|x| matches!(x, Dimension::Time(_)))
            {
                return Err(QueryError::invalid(
                    field(),
                    "only one time dimension per query",
                ));
            }
        }
        let mut leaves = 0;
        for (i, f) in self.filters.iter().enumerate() {
            validate_filter(f, &format!("filters[{i}]"), 0, &mut leaves)?;
        }
        for (i, (key, _)) in self.order_by.iter().enumerate() {
            let field = format!("order_by[{i}]");
            let known = match key {
                OrderKey::Metric(m) => self.metrics.contains(m),
                OrderKey::Dimension(p) => *p < self.dimensions.len(),
            };
            if !known {
                let name = match key {
                    OrderKey::Metric(m) => json!(m.as_str()),
                    OrderKey::Dimension(p) => json!(format!("dimension {p}")),
                };
                return Err(not_in_query(&field, &name));
            }
        }
        if !(1..=100_000).contains(&self.limit) {
            return Err(limit_rule());
        }
        if self.offset > 10_000_000 {
            return Err(offset_rule());
        }
        if let Some(a) = &self.attribution {
            validate_attribution(a)?;
            if let Some((i, d)) = self
                .dimensions
                .iter()
                .enumerate()
                .find(|(_, d)| !d.is_session_level())
            {
                return Err(QueryError::invalid(
                    format!("dimensions[{i}]"),
                    format!(
                        "{} is not session-level; attribution credits session-level dimensions",
                        d.name()
                    ),
                ));
            }
            if let Some((i, m)) = self
                .metrics
                .iter()
                .enumerate()
                .find(|(_, m)| !matches!(m, Metric::Revenue | Metric::Conversions))
            {
                return Err(QueryError::invalid(
                    format!("metrics[{i}]"),
                    format!(
                        "{} cannot be attributed; use revenue and conversions",
                        m.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The query as understood, in contract JSON, with the resolved local dates.
    pub fn to_json(&self, resolved: Option<(NaiveDate, NaiveDate)>) -> Value {
        let date_range = match (resolved, self.date_range) {
            (Some((a, b)), _) | (None, DateRange::Custom(a, b)) => {
                json!([a.to_string(), b.to_string()])
            }
            (None, DateRange::Day) => json!("day"),
            (None, DateRange::Last7Days) => json!("7d"),
            (None, DateRange::Last30Days) => json!("30d"),
            (None, DateRange::Month) => json!("month"),
            (None, DateRange::All) => json!("all"),
        };
        let order_by: Vec<Value> = self
            .order_by
            .iter()
            .map(|(k, d)| {
                let name = match k {
                    OrderKey::Metric(m) => m.as_str().to_owned(),
                    OrderKey::Dimension(i) => self.dimensions[*i].name(),
                };
                json!([name, if *d == Direction::Asc { "asc" } else { "desc" }])
            })
            .collect();
        let mut v = json!({
            "site": self.site,
            "date_range": date_range,
            "metrics": self.metrics.iter().map(Metric::as_str).collect::<Vec<_>>(),
            "dimensions": self.dimensions.iter().map(Dimension::name).collect::<Vec<_>>(),
            "filters": self.filters.iter().map(Filter::to_json).collect::<Vec<_>>(),
            "order_by": order_by,
            "limit": self.limit,
            "offset": self.offset,
            "include_bots": self.include_bots,
        });
        if let Some(c) = self.currency {
            v["currency"] = json!(c.code());
        }
        if let Some(a) = &self.attribution {
            v["attribution"] = json!({"model": a.model.as_str(), "window_days": a.window_days, "half_life_days": a.half_life_days});
            if !a.rates.is_empty() {
                v["attribution"]["rates"] = a
                    .rates
                    .iter()
                    .map(|(c, r)| (c.code().to_owned(), json!(r)))
                    .collect::<serde_json::Map<String, Value>>()
                    .into();
            }
        }
        v
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

fn too_many_dimensions() -> QueryError {
    QueryError::invalid(
        "dimensions",
        format!("at most {} dimensions", Query::MAX_DIMENSIONS),
    )
}

fn not_in_query(field: &str, name: &Value) -> QueryError {
    QueryError::invalid(
        format!("{field}[0]"),
        format!("{name} is not a metric or dimension of this query"),
    )
}

fn limit_rule() -> QueryError {
    QueryError::invalid("limit", "must be a whole number from 1 to 100000")
}

fn offset_rule() -> QueryError {
    QueryError::invalid("offset", "must be a whole number from 0 to 10000000")
}

/// The rules of a date range built in Rust (the JSON parser checks the same).
pub(crate) fn validate_date_range(r: &DateRange) -> Result<(), QueryError> {
    if let DateRange::Custom(from, to) = *r {
        if to < from {
            return Err(QueryError::invalid(
                "date_range[1]",
                "must not be before date_range[0]",
            ));
        }
        if (to - from).num_days() > 3660 {
            return Err(QueryError::invalid(
                "date_range",
                "must span at most 10 years",
            ));
        }
    }
    Ok(())
}

/// Most nesting of `and`, `or` and `not`.
const MAX_FILTER_DEPTH: usize = 16;

fn too_many_filters(field: &str) -> QueryError {
    QueryError::invalid(
        field,
        format!(
            "a query has at most {} filter conditions",
            Query::MAX_FILTERS
        ),
    )
}

fn too_many_values(field: &str) -> QueryError {
    QueryError::invalid(
        field,
        format!(
            "a condition has at most {} values",
            Query::MAX_FILTER_VALUES
        ),
    )
}

fn pattern_too_long(field: &str) -> QueryError {
    QueryError::invalid(
        field,
        format!(
            "a value or pattern is at most {} bytes",
            Query::MAX_PATTERN_BYTES
        ),
    )
}

fn validate_filter(
    f: &Filter,
    field: &str,
    depth: usize,
    leaves: &mut usize,
) -> Result<(), QueryError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(QueryError::invalid(field, "filters nest at most 16 deep"));
    }
    if matches!(
        f,
        Filter::Is(..) | Filter::IsNot(..) | Filter::Contains(..) | Filter::Matches(..)
    ) {
        *leaves += 1;
        if *leaves > Query::MAX_FILTERS {
            return Err(too_many_filters(field));
        }
        let (count, longest) = match f {
            Filter::Is(_, v) | Filter::IsNot(_, v) => (
                v.len(),
                v.iter().flatten().map(String::len).max().unwrap_or(0),
            ),
            Filter::Contains(_, v) => (v.len(), v.iter().map(String::len).max().unwrap_or(0)),
            Filter::Matches(_, v) => (
                v.len(),
                v.iter().map(|p| p.as_str().len()).max().unwrap_or(0),
            ),
            _ => (0, 0),
        };
        if count > Query::MAX_FILTER_VALUES {
            return Err(too_many_values(&format!("{field}[2]")));
        }
        if longest > Query::MAX_PATTERN_BYTES {
            return Err(pattern_too_long(&format!("{field}[2]")));
        }
    }
    match f {
        Filter::And(fs) | Filter::Or(fs) => {
            for (i, g) in fs.iter().enumerate() {
                validate_filter(g, &format!("{field}[1][{i}]"), depth + 1, leaves)?;
            }
            Ok(())
        }
        Filter::Not(g) => validate_filter(g, &format!("{field}[1]"), depth + 1, leaves),
        Filter::Is(d, _) | Filter::IsNot(d, _) | Filter::Contains(d, _) | Filter::Matches(d, _) => {
            match d {
                Dimension::Time(_) => Err(QueryError::invalid(
                    format!("{field}[1]"),
                    "time dimensions cannot be filtered; use date_range",
                )),
                Dimension::Prop(p) if p.is_empty() => Err(QueryError::invalid(
                    format!("{field}[1]"),
                    "a property dimension needs a name (prop:<name>)",
                )),
                _ => Ok(()),
            }
        }
    }
}

fn window_rule() -> QueryError {
    QueryError::invalid(
        "attribution.window_days",
        "must be a whole number from 1 to 365",
    )
}

fn half_life_rule() -> QueryError {
    QueryError::invalid(
        "attribution.half_life_days",
        "must be a number above 0 and at most 365",
    )
}

fn rate_rule(c: Currency) -> QueryError {
    QueryError::invalid(
        format!("attribution.rates.{}", c.code()),
        "must be a positive number",
    )
}

fn validate_attribution(a: &Attribution) -> Result<(), QueryError> {
    if !(1..=365).contains(&a.window_days) {
        return Err(window_rule());
    }
    if !(a.half_life_days.is_finite() && a.half_life_days > 0.0 && a.half_life_days <= 365.0) {
        return Err(half_life_rule());
    }
    if let Some((c, _)) = a.rates.iter().find(|(_, r)| !(r.is_finite() && *r > 0.0)) {
        return Err(rate_rule(*c));
    }
    Ok(())
}

fn parse_date(v: &Value, field: &str) -> Result<NaiveDate, QueryError> {
    v.as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or_else(|| QueryError::invalid(field, format!("{v} must be a date YYYY-MM-DD")))
}

fn parse_date_range(v: &Value) -> Result<DateRange, QueryError> {
    match v {
        Value::String(s) => match s.as_str() {
            "day" => Ok(DateRange::Day),
            "7d" => Ok(DateRange::Last7Days),
            "30d" => Ok(DateRange::Last30Days),
            "month" => Ok(DateRange::Month),
            "all" => Ok(DateRange::All),
            other => Err(QueryError::invalid(
                "date_range",
                format!(
                    "{other:?} must be \"day\", \"7d\", \"30d\", \"month\", \"all\" or two dates"
                ),
            )),
        },
        Value::Array(a) if a.len() == 2 => {
            let from = parse_date(&a[0], "date_range[0]")?;
            let to = parse_date(&a[1], "date_range[1]")?;
            let range = DateRange::Custom(from, to);
            validate_date_range(&range)?;
            Ok(range)
        }
        _ => Err(QueryError::invalid(
            "date_range",
            "must be a preset name or two dates [\"YYYY-MM-DD\", \"YYYY-MM-DD\"]",
        )),
    }
}

fn parse_filter(
    v: &Value,
    field: &str,
    depth: usize,
    leaves: &mut usize,
) -> Result<Filter, QueryError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(QueryError::invalid(field, "filters nest at most 16 deep"));
    }
    let arr = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
        QueryError::invalid(
            field,
            "must be [operator, dimension, values] or [\"and\"|\"or\", [...]] or [\"not\", filter]",
        )
    })?;
    let op = arr[0].as_str().unwrap_or_default();
    match op {
        "and" | "or" => {
            let list = arr
                .get(1)
                .and_then(Value::as_array)
                .filter(|_| arr.len() == 2)
                .ok_or_else(|| {
                    QueryError::invalid(
                        format!("{field}[1]"),
                        format!("{op} takes one array of filters"),
                    )
                })?;
            let fs = list
                .iter()
                .enumerate()
                .map(|(i, f)| parse_filter(f, &format!("{field}[1][{i}]"), depth + 1, leaves))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "and" {
                Filter::And(fs)
            } else {
                Filter::Or(fs)
            })
        }
        "not" => {
            let inner = arr.get(1).filter(|_| arr.len() == 2).ok_or_else(|| {
                QueryError::invalid(format!("{field}[1]"), "not takes one filter")
            })?;
            Ok(Filter::Not(Box::new(parse_filter(
                inner,
                &format!("{field}[1]"),
                depth + 1,
                leaves,
            )?)))
        }
        "is" | "is_not" | "contains" | "matches" => {
            // Counted before anything is compiled: a flood of filters costs nothing.
            *leaves += 1;
            if *leaves > Query::MAX_FILTERS {
                return Err(too_many_filters(field));
            }
            if arr.len() != 3 {
                return Err(QueryError::invalid(
                    field,
                    format!("{op} takes a dimension and a list of values"),
                ));
            }
            let dim = arr[1].as_str().and_then(Dimension::parse).ok_or_else(|| {
                QueryError::invalid(
                    format!("{field}[1]"),
                    format!("unknown dimension {}", arr[1]),
                )
            })?;
            if matches!(dim, Dimension::Time(_)) {
                return Err(QueryError::invalid(
                    format!("{field}[1]"),
                    "time dimensions cannot be filtered; use date_range",
                ));
            }
            let vals = arr[2].as_array().ok_or_else(|| {
                QueryError::invalid(format!("{field}[2]"), "must be an array of values")
            })?;
            if vals.len() > Query::MAX_FILTER_VALUES {
                return Err(too_many_values(&format!("{field}[2]")));
            }
            let vfield = |i: usize| format!("{field}[2][{i}]");
            match op {
                "is" | "is_not" => {
                    let list = vals
                        .iter()
                        .enumerate()
                        .map(|(i, x)| match x {
                            Value::Null => Ok(None),
                            Value::String(s) => Ok(Some(s.clone())),
                            _ => Err(QueryError::invalid(vfield(i), "must be a string or null")),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(if op == "is" {
                        Filter::Is(dim, list)
                    } else {
                        Filter::IsNot(dim, list)
                    })
                }
                "contains" => {
                    let list = vals
                        .iter()
                        .enumerate()
                        .map(|(i, x)| {
                            x.as_str()
                                .map(str::to_owned)
                                .ok_or_else(|| QueryError::invalid(vfield(i), "must be a string"))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Filter::Contains(dim, list))
                }
                _ => {
                    let list = vals
                        .iter()
                        .enumerate()
                        .map(|(i, x)| {
                            let s = x.as_str().ok_or_else(|| {
                                QueryError::invalid(vfield(i), "must be a string")
                            })?;
                            if s.len() > Query::MAX_PATTERN_BYTES {
                                return Err(pattern_too_long(&vfield(i)));
                            }
                            Pattern::new(s).map_err(|e| {
                                QueryError::invalid(
                                    vfield(i),
                                    format!("is not a valid regular expression ({e})"),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(Filter::Matches(dim, list))
                }
            }
        }
        _ => Err(QueryError::invalid(
            format!("{field}[0]"),
            format!(
                "unknown operator {}; use is, is_not, contains, matches, and, or, not",
                arr[0]
            ),
        )),
    }
}

fn parse_attribution(v: &Value) -> Result<Attribution, QueryError> {
    let obj = v
        .as_object()
        .ok_or_else(|| QueryError::invalid("attribution", "must be an object {\"model\": ...}"))?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .and_then(AttributionModel::parse)
        .ok_or_else(|| QueryError::invalid("attribution.model", "must be first_touch, last_touch, last_non_direct, linear, time_decay or position_based"))?;
    let window_days = match obj.get("window_days") {
        None => 30,
        Some(w) => w
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(window_rule)?,
    };
    let half_life_days = match obj.get("half_life_days") {
        None => 7.0,
        Some(h) => h.as_f64().ok_or_else(half_life_rule)?,
    };
    let mut rates = Vec::new();
    if let Some(r) = obj.get("rates") {
        let r = r.as_object().ok_or_else(|| {
            QueryError::invalid(
                "attribution.rates",
                "must be an object of currency codes to rates, such as {\"EUR\": \"1.08\"}",
            )
        })?;
        for (code, rate) in r {
            let c = Currency::parse(code).ok_or_else(|| {
                QueryError::invalid(
                    format!("attribution.rates.{code}"),
                    "is not an ISO 4217 currency code",
                )
            })?;
            let value = match rate {
                Value::String(s) => s.trim().parse::<f64>().ok(),
                other => other.as_f64(),
            }
            .ok_or_else(|| rate_rule(c))?;
            rates.push((c, value));
        }
    }
    Ok(Attribution {
        model,
        window_days,
        half_life_days,
        rates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(text: &str) -> String {
        match Query::from_json(text).unwrap_err() {
            QueryError::Invalid { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn contract_example_parses_with_defaults() {
        let q = Query::from_json(
            r#"{"site": "example.com", "date_range": ["2026-03-01", "2026-03-31"],
             "metrics": ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"],
             "dimensions": ["source"],
             "filters": [["is", "country", ["DE", "FR"]], ["contains", "page", ["/blog"]]],
             "order_by": [["visitors", "desc"]], "limit": 10, "offset": 0}"#,
        )
        .unwrap();
        assert_eq!(q.metrics.len(), 5);
        assert_eq!(q.dimensions, vec![Dimension::Source]);
        assert_eq!(q.filters.len(), 2);
        assert_eq!(
            q.order_by,
            vec![(OrderKey::Metric(Metric::Visitors), Direction::Desc)]
        );
        let echo = q.to_json(None);
        assert_eq!(echo["date_range"], json!(["2026-03-01", "2026-03-31"]));
        assert_eq!(
            Query::from_value(&echo).unwrap(),
            q,
            "the echo parses back to the same query"
        );
        let d = Query::from_json(r#"{"site":"a.com"}"#).unwrap();
        assert_eq!(
            (d.date_range, d.metrics.clone(), d.limit),
            (DateRange::Last30Days, vec![Metric::Visitors], 10_000)
        );
    }

    #[test]
    fn errors_name_the_offending_field() {
        assert_eq!(field(r#"{}"#), "site");
        assert_eq!(
            field(r#"{"site":"a","metrics":["visitors","nope"]}"#),
            "metrics[1]"
        );
        assert_eq!(field(r#"{"site":"a","dimensions":["x"]}"#), "dimensions[0]");
        assert_eq!(field(r#"{"site":"a","date_range":"year"}"#), "date_range");
        assert_eq!(
            field(r#"{"site":"a","date_range":["2026-03-01","2026-02-01"]}"#),
            "date_range[1]"
        );
        assert_eq!(
            field(r#"{"site":"a","date_range":["2026-13-01","2026-02-01"]}"#),
            "date_range[0]"
        );
        assert_eq!(
            field(r#"{"site":"a","filters":[["is","country","DE"]]}"#),
            "filters[0][2]"
        );
        assert_eq!(
            field(r#"{"site":"a","filters":[["like","country",["DE"]]]}"#),
            "filters[0][0]"
        );
        assert_eq!(
            field(r#"{"site":"a","filters":[["or",[["is","nope",["x"]]]]]}"#),
            "filters[0][1][0][1]"
        );
        assert_eq!(
            field(r#"{"site":"a","filters":[["matches","page",["("]]]}"#),
            "filters[0][2][0]"
        );
        assert_eq!(
            field(r#"{"site":"a","order_by":[["visits","desc"]]}"#),
            "order_by[0][0]"
        );
        assert_eq!(field(r#"{"site":"a","limit":0}"#), "limit");
        assert_eq!(field(r#"{"site":"a","bogus":1}"#), "bogus");
        assert_eq!(
            field(r#"{"site":"a","attribution":{"model":"magic"}}"#),
            "attribution.model"
        );
        assert_eq!(
            field(
                r#"{"site":"a","metrics":["revenue"],"dimensions":["page"],"attribution":{"model":"linear"}}"#
            ),
            "dimensions[0]"
        );
    }

    #[test]
    fn floods_of_filters_values_and_patterns_are_refused_before_compiling() {
        let leaves = |n: usize| {
            let f: Vec<Value> = (0..n)
                .map(|_| json!(["matches", "page", ["\\w{20}N"]]))
                .collect();
            json!({"site": "a", "filters": f})
        };
        if let Err(e) = Query::from_value(&leaves(50)) {
            panic!("{e}");
        }
        let e = Query::from_value(&leaves(800)).unwrap_err().to_string();
        assert!(
            e.starts_with("filters[50]: a query has at most 50 filter conditions"),
            "{e}"
        );
        let nested = json!({"site": "a", "filters": [["or", (0..60).map(|_| json!(["is", "page", ["/"]])).collect::<Vec<_>>()]]});
        assert!(Query::from_value(&nested)
            .unwrap_err()
            .to_string()
            .contains("at most 50"));
        let values: Vec<String> = (0..101).map(|i| format!("/{i}")).collect();
        assert_eq!(
            field(&json!({"site": "a", "filters": [["is", "page", values]]}).to_string()),
            "filters[0][2]"
        );
        let long = "a".repeat(501);
        assert_eq!(
            field(&json!({"site": "a", "filters": [["matches", "page", [long]]]}).to_string()),
            "filters[0][2][0]"
        );
        // The same rules hold for a query built in Rust.
        let mut q = Query::new("a");
        q.filters = (0..51)
            .map(|_| Filter::Contains(Dimension::Page, vec!["x".into()]))
            .collect();
        assert!(q.validate().is_err());
        q.filters = vec![Filter::Contains(Dimension::Page, vec!["x".repeat(501)])];
        assert!(q.validate().is_err());
    }

    #[test]
    fn nested_filters_and_presets() {
        let q = Query::from_json(r#"{"site":"a","date_range":"7d","filters":[["not",["or",[["is","source",[null]],["matches","page",["^/b"]]]]]]}"#).unwrap();
        assert!(q.filters[0].mentions(&Dimension::Page));
        assert!(!q.filters[0].mentions(&Dimension::Goal));
        let now = NaiveDate::from_ymd_opt(2026, 3, 10)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc();
        assert_eq!(
            q.date_range.resolve(Tz::UTC, now, None).from,
            NaiveDate::from_ymd_opt(2026, 3, 4).unwrap()
        );
        assert_eq!(
            DateRange::Month.resolve(Tz::UTC, now, None).from,
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        let first = NaiveDate::from_ymd_opt(2025, 12, 1)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap()
            .and_utc();
        let all = DateRange::All.resolve(Tz::UTC, now, Some((first, first)));
        assert_eq!(
            (all.from, all.to),
            (first.date_naive(), now.date_naive()),
            "all runs from the first event to today"
        );
    }
}
