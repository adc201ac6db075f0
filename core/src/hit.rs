//! The hit (contract section 2) and its validation into an event.

use crate::error::ValidationError;
use crate::event::{Commerce, Device, Engagement, Event, EventKind, Page};
use crate::money::{Currency, Money, MoneyError};
use crate::url::UrlParts;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Size bounds applied to hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest `url` and `referrer`, bytes.
    pub max_url_len: usize,
    /// Most custom properties per hit.
    pub max_props: usize,
    /// Longest property name, bytes.
    pub max_prop_key_len: usize,
    /// Longest property value, bytes.
    pub max_prop_value_len: usize,
    /// Longest goal or event name, bytes.
    pub max_name_len: usize,
    /// Longest title, bytes.
    pub max_title_len: usize,
    /// Longest user agent, bytes.
    pub max_user_agent_len: usize,
    /// Longest visitor or user id, bytes.
    pub max_id_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_url_len: 2048,
            max_props: 30,
            max_prop_key_len: 300,
            max_prop_value_len: 2000,
            max_name_len: 120,
            max_title_len: 1000,
            max_user_agent_len: 2048,
            max_id_len: 128,
        }
    }
}

/// Where a hit comes from, which decides where its time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    /// Live ingest: the event's time is the server clock; a client timestamp,
    /// when sent, must lie within `max_skew` of it.
    Live {
        /// Largest allowed difference between client and server clocks.
        max_skew: Duration,
    },
    /// Import: the hit's own `timestamp` is required and used; it may be in the past,
    /// never more than `max_future` ahead of the server clock.
    Import {
        /// How far in the future a timestamp may be.
        max_future: Duration,
    },
}

/// What validation needs besides the hit: the server clock, the mode and the limits.
#[derive(Debug, Clone)]
pub struct ValidationContext {
    /// The server's clock reading (from the injected [`crate::Clock`]).
    pub now: DateTime<Utc>,
    /// Live ingest or import.
    pub mode: IngestMode,
    /// Size bounds.
    pub limits: Limits,
}

impl ValidationContext {
    /// Live ingest at `now` with a 5-minute skew allowance.
    pub fn live(now: DateTime<Utc>) -> Self {
        Self {
            now,
            mode: IngestMode::Live {
                max_skew: Duration::minutes(5),
            },
            limits: Limits::default(),
        }
    }
    /// Import at `now`; timestamps may be up to one day ahead.
    pub fn import(now: DateTime<Utc>) -> Self {
        Self {
            now,
            mode: IngestMode::Import {
                max_future: Duration::days(1),
            },
            limits: Limits::default(),
        }
    }
}

/// An amount as sent: a decimal string and a currency code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMoney {
    /// Decimal string (`"49.00"`).
    pub amount: String,
    /// ISO 4217 code (`"USD"`).
    pub currency: String,
}

/// A hit as sent by the tracking script, the HTTP API or an import line.
/// Build one in Rust directly, or parse JSON with [`Hit::from_json`]; then [`Hit::validate`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hit {
    /// Site domain. Required.
    pub site: Option<String>,
    /// `type`: pageview, goal, purchase, custom or engagement. Required.
    pub kind: Option<String>,
    /// Page URL. Required.
    pub url: Option<String>,
    /// Referrer URL.
    pub referrer: Option<String>,
    /// Page title.
    pub title: Option<String>,
    /// RFC 3339 timestamp (required on import).
    pub timestamp: Option<String>,
    /// Client IP address (from the connection on live ingest).
    pub ip: Option<String>,
    /// User agent (from the request header on live ingest).
    pub user_agent: Option<String>,
    /// The client's own visitor id.
    pub visitor_id: Option<String>,
    /// The site's user id.
    pub user_id: Option<String>,
    /// Screen width and height.
    pub screen: Option<(u32, u32)>,
    /// Viewport width and height.
    pub viewport: Option<(u32, u32)>,
    /// Device pixel ratio.
    pub pixel_ratio: Option<f32>,
    /// Language tag.
    pub language: Option<String>,
    /// Goal name (`goal`), or custom event name (`name`).
    pub name: Option<String>,
    /// Revenue of a purchase.
    pub revenue: Option<RawMoney>,
    /// Order id of a purchase.
    pub order_id: Option<String>,
    /// Custom properties, values as strings.
    pub props: BTreeMap<String, String>,
    /// Engagement figures.
    pub engagement: Option<Engagement>,
}

/// A hit that passed validation: the event so far, plus the request facts that
/// enrichment and identification still need.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedHit {
    /// The event, with page, kind, time, commerce, props and engagement filled in.
    pub event: Event,
    /// The client IP, for enrichment and the visitor hash (dropped from the event
    /// unless the site opted in).
    pub ip: Option<IpAddr>,
    /// The user agent, for enrichment and the visitor hash.
    pub user_agent: Option<String>,
    /// The client's own visitor id, when it sent one.
    pub client_visitor_id: Option<String>,
}

/// [`ValidatedHit`] with the text validation only read (the agent, the visitor id)
/// still borrowed from the line the hit was parsed from, where it could be.
pub(crate) struct Validated<'a> {
    pub(crate) event: Event,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) user_agent: Option<Cow<'a, str>>,
    pub(crate) client_visitor_id: Option<Cow<'a, str>>,
}

impl From<Validated<'_>> for ValidatedHit {
    fn from(v: Validated<'_>) -> Self {
        ValidatedHit {
            event: v.event,
            ip: v.ip,
            user_agent: v.user_agent.map(Cow::into_owned),
            client_visitor_id: v.client_visitor_id.map(Cow::into_owned),
        }
    }
}

impl From<ValidatedHit> for Validated<'static> {
    fn from(v: ValidatedHit) -> Self {
        Validated {
            event: v.event,
            ip: v.ip,
            user_agent: v.user_agent.map(Cow::Owned),
            client_visitor_id: v.client_visitor_id.map(Cow::Owned),
        }
    }
}

/// A hit as [`HitParts::validate`] reads it: the fields the event keeps owned (in
/// `kept`, whose other text fields are empty), the text only read borrowed from the
/// line where it could be. An import line's type, time, address, agent and visitor
/// id then cost no allocation each.
pub(crate) struct HitParts<'a> {
    kept: Hit,
    kind: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    ip: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
    visitor_id: Option<Cow<'a, str>>,
}

impl From<Hit> for HitParts<'static> {
    fn from(mut hit: Hit) -> Self {
        HitParts {
            kind: hit.kind.take().map(Cow::Owned),
            timestamp: hit.timestamp.take().map(Cow::Owned),
            ip: hit.ip.take().map(Cow::Owned),
            user_agent: hit.user_agent.take().map(Cow::Owned),
            visitor_id: hit.visitor_id.take().map(Cow::Owned),
            kept: hit,
        }
    }
}

type VResult<T> = Result<T, ValidationError>;

fn err<T>(field: &str, rule: impl Into<String>) -> VResult<T> {
    Err(ValidationError::new(field, rule))
}

/// The common shape of a hit, parsed straight into its fields: only string fields
/// (or nulls), unknown fields ignored. Anything else (other fields, a wrong type, a
/// duplicate key, bad JSON) is left to the general path, which names what is wrong;
/// both give the same `Hit` wherever this one answers (a property test holds them
/// to that).
///
/// The text validation only reads is borrowed from the input; a string with an
/// escape in it cannot be, and leaves the hit to the general path too.
#[derive(serde::Deserialize)]
struct PlainHit<'a> {
    site: Option<String>,
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    url: Option<String>,
    referrer: Option<String>,
    title: Option<String>,
    timestamp: Option<&'a str>,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    visitor_id: Option<&'a str>,
    user_id: Option<String>,
    language: Option<String>,
    goal: Option<String>,
    name: Option<String>,
    order_id: Option<String>,
    screen: Option<serde::de::IgnoredAny>,
    viewport: Option<serde::de::IgnoredAny>,
    pixel_ratio: Option<serde::de::IgnoredAny>,
    revenue: Option<PlainMoney>,
    props: Option<serde::de::IgnoredAny>,
    engagement: Option<PlainEngagement>,
}

/// `revenue` as [`PlainHit`] reads it: both fields strings.
#[derive(serde::Deserialize)]
struct PlainMoney {
    amount: String,
    currency: String,
}

/// `engagement` as [`PlainHit`] reads it: whole numbers (their bounds are checked
/// by [`PlainEngagement::within_bounds`]; outside them the general path answers).
#[derive(serde::Deserialize)]
struct PlainEngagement {
    time_ms: Option<u64>,
    scroll_depth: Option<u64>,
    clicks: Option<u64>,
    form_submits: Option<u64>,
    video_plays: Option<u64>,
    downloads: Option<u64>,
}

impl PlainEngagement {
    /// The figures, when each is within the bound [`Hit::from_value`] holds it to.
    fn within_bounds(self) -> Option<Engagement> {
        let bounded = |v: Option<u64>, max: u64| match v {
            Some(v) if v > max => Err(()),
            v => Ok(v),
        };
        let count = |v: Option<u64>| bounded(v, 1_000_000).map(|v| v.map(|v| v as u32));
        Some(Engagement {
            time_ms: bounded(self.time_ms, 86_400_000).ok()?,
            scroll_depth: bounded(self.scroll_depth, 100).ok()?.map(|v| v as u8),
            clicks: count(self.clicks).ok()?,
            form_submits: count(self.form_submits).ok()?,
            video_plays: count(self.video_plays).ok()?,
            downloads: count(self.downloads).ok()?,
        })
    }
}

impl<'a> PlainHit<'a> {
    fn parse(bytes: &'a [u8]) -> Option<HitParts<'a>> {
        // A struct also accepts a JSON array; a hit must be an object.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        Self::into_parts(serde_json::from_slice(bytes).ok()?)
    }

    fn parse_str(text: &'a str) -> Option<HitParts<'a>> {
        if text.trim_ascii_start().as_bytes().first() != Some(&b'{') {
            return None;
        }
        Self::into_parts(serde_json::from_str(text).ok()?)
    }

    fn into_parts(p: PlainHit<'a>) -> Option<HitParts<'a>> {
        let nested = p.screen.is_some()
            || p.viewport.is_some()
            || p.pixel_ratio.is_some()
            || p.props.is_some();
        if nested {
            return None;
        }
        let engagement = match p.engagement {
            Some(e) => Some(e.within_bounds()?),
            None => None,
        };
        let kept = Hit {
            site: p.site,
            url: p.url,
            referrer: p.referrer,
            title: p.title,
            user_id: p.user_id,
            language: p.language,
            name: p.goal.or(p.name),
            order_id: p.order_id,
            revenue: p.revenue.map(|m| RawMoney {
                amount: m.amount,
                currency: m.currency,
            }),
            engagement,
            ..Hit::default()
        };
        Some(HitParts {
            kept,
            kind: p.kind.map(Cow::Borrowed),
            timestamp: p.timestamp.map(Cow::Borrowed),
            ip: p.ip.map(Cow::Borrowed),
            user_agent: p.user_agent.map(Cow::Borrowed),
            visitor_id: p.visitor_id.map(Cow::Borrowed),
        })
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str) -> VResult<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => err(key, "must be a string"),
    }
}

fn opt_u64(obj: &Map<String, Value>, key: &str, field: &str, max: u64) -> VResult<Option<u64>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= max => Ok(Some(v)),
            _ => err(field, format!("must be a whole number from 0 to {max}")),
        },
        Some(_) => err(field, format!("must be a whole number from 0 to {max}")),
    }
}

fn opt_pair(obj: &Map<String, Value>, key: &str) -> VResult<Option<(u32, u32)>> {
    const MAX: u64 = 100_000;
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) if a.len() == 2 => {
            let w = a[0].as_u64().filter(|v| *v <= MAX);
            let h = a[1].as_u64().filter(|v| *v <= MAX);
            match (w, h) {
                // Both are at most MAX, so they fit in u32.
                (Some(w), Some(h)) => Ok(Some((w as u32, h as u32))),
                _ => err(
                    key,
                    format!("must be [width, height] of whole numbers up to {MAX}"),
                ),
            }
        }
        Some(_) => err(
            key,
            format!("must be [width, height] of whole numbers up to {MAX}"),
        ),
    }
}

impl Hit {
    /// Parses a hit from JSON bytes. Type errors name the field; rules are checked by
    /// [`Hit::validate`]. Unknown fields are ignored. Never panics.
    pub fn from_json(bytes: &[u8]) -> Result<Hit, ValidationError> {
        if let Some(parts) = PlainHit::parse(bytes) {
            return Ok(parts.into_hit());
        }
        Self::from_json_general(bytes)
    }

    /// [`Hit::from_json`] of text known to be UTF-8 (an import checks each line
    /// first), without checking each string again, and with the text validation
    /// only reads borrowed from `text`.
    pub(crate) fn parts_from_json_str(text: &str) -> Result<HitParts<'_>, ValidationError> {
        if let Some(parts) = PlainHit::parse_str(text) {
            return Ok(parts);
        }
        Self::from_json_general(text.as_bytes()).map(HitParts::from)
    }

    /// The general path: any JSON object, with errors naming the field.
    fn from_json_general(bytes: &[u8]) -> Result<Hit, ValidationError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ValidationError::new("hit", format!("must be a JSON object ({e})")))?;
        Self::from_value(&value)
    }

    /// Parses a hit from named text fields, as a CSV import's columns give them:
    /// names are hit fields, a dot nests (`revenue.amount`, `props.plan`,
    /// `engagement.time_ms`), `screen` and `viewport` are `1920x1080`, empty values
    /// are absent.
    pub fn from_fields<'a>(
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Hit, ValidationError> {
        let mut obj = Map::new();
        for (name, text) in fields {
            if text.is_empty() {
                continue;
            }
            let value = match name {
                "screen" | "viewport" => match text.split_once('x') {
                    Some((w, h)) => serde_json::json!([
                        w.parse::<u64>().unwrap_or(u64::MAX),
                        h.parse::<u64>().unwrap_or(u64::MAX)
                    ]),
                    None => Value::from(text),
                },
                "engagement.time_ms" | "engagement.scroll_depth" | "pixel_ratio" => {
                    text.parse::<f64>().map_or(Value::from(text), Value::from)
                }
                _ => Value::from(text),
            };
            match name.split_once('.') {
                Some((outer, inner)) => {
                    let o = obj
                        .entry(outer.to_owned())
                        .or_insert_with(|| Value::Object(Default::default()));
                    if let Some(m) = o.as_object_mut() {
                        m.insert(inner.to_owned(), value);
                    }
                }
                None => {
                    obj.insert(name.to_owned(), value);
                }
            }
        }
        // Integral engagement figures, as the hit format wants.
        if let Some(e) = obj.get_mut("engagement").and_then(Value::as_object_mut) {
            for v in e.values_mut() {
                if let Some(f) = v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0) {
                    *v = Value::from(f as u64);
                }
            }
        }
        Hit::from_value(&Value::Object(obj))
    }

    /// Parses a hit from a JSON value (see [`Hit::from_json`]).
    pub fn from_value(value: &Value) -> Result<Hit, ValidationError> {
        let Value::Object(obj) = value else {
            return err("hit", "must be a JSON object");
        };
        let goal = opt_str(obj, "goal")?;
        let name = opt_str(obj, "name")?;
        let revenue = match obj.get("revenue") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                let amount = match m.get("amount") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(_)) => {
                        return err(
                            "revenue.amount",
                            "must be a decimal string such as \"49.00\", not a number",
                        )
                    }
                    _ => return err("revenue.amount", "is required and must be a decimal string"),
                };
                let currency = match m.get("currency") {
                    Some(Value::String(s)) => s.clone(),
                    _ => {
                        return err(
                            "revenue.currency",
                            "is required and must be an ISO 4217 code",
                        )
                    }
                };
                Some(RawMoney { amount, currency })
            }
            Some(_) => {
                return err(
                    "revenue",
                    "must be an object {\"amount\": \"49.00\", \"currency\": \"USD\"}",
                )
            }
        };
        let mut props = BTreeMap::new();
        match obj.get("props") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => continue,
                        _ => {
                            return err(
                                &format!("props.{k}"),
                                "must be a string, number or boolean",
                            )
                        }
                    };
                    props.insert(k.clone(), s);
                }
            }
            Some(_) => return err("props", "must be an object of names to values"),
        }
        let engagement = match obj.get("engagement") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(Engagement {
                time_ms: opt_u64(m, "time_ms", "engagement.time_ms", 86_400_000)?,
                scroll_depth: opt_u64(m, "scroll_depth", "engagement.scroll_depth", 100)?
                    .map(|v| v as u8),
                clicks: opt_u64(m, "clicks", "engagement.clicks", 1_000_000)?.map(|v| v as u32),
                form_submits: opt_u64(m, "form_submits", "engagement.form_submits", 1_000_000)?
                    .map(|v| v as u32),
                video_plays: opt_u64(m, "video_plays", "engagement.video_plays", 1_000_000)?
                    .map(|v| v as u32),
                downloads: opt_u64(m, "downloads", "engagement.downloads", 1_000_000)?
                    .map(|v| v as u32),
            }),
            Some(_) => return err("engagement", "must be an object"),
        };
        let pixel_ratio = match obj.get("pixel_ratio") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) if v > 0.0 && v <= 16.0 => Some(v as f32),
                _ => return err("pixel_ratio", "must be a number above 0 and at most 16"),
            },
            Some(_) => return err("pixel_ratio", "must be a number"),
        };
        Ok(Hit {
            site: opt_str(obj, "site")?,
            kind: opt_str(obj, "type")?,
            url: opt_str(obj, "url")?,
            referrer: opt_str(obj, "referrer")?,
            title: opt_str(obj, "title")?,
            timestamp: opt_str(obj, "timestamp")?,
            ip: opt_str(obj, "ip")?,
            user_agent: opt_str(obj, "user_agent")?,
            visitor_id: opt_str(obj, "visitor_id")?,
            user_id: opt_str(obj, "user_id")?,
            screen: opt_pair(obj, "screen")?,
            viewport: opt_pair(obj, "viewport")?,
            pixel_ratio,
            language: opt_str(obj, "language")?,
            name: goal.or(name),
            revenue,
            order_id: opt_str(obj, "order_id")?,
            props,
            engagement,
        })
    }

    /// Checks every rule of the contract and builds the event. `default_site` is used
    /// when the hit names none (for `import --site`). Never panics.
    pub fn validate(
        self,
        ctx: &ValidationContext,
        default_site: Option<&str>,
    ) -> Result<ValidatedHit, ValidationError> {
        HitParts::from(self)
            .validate(ctx, default_site)
            .map(ValidatedHit::from)
    }
}

impl<'a> HitParts<'a> {
    /// The hit these parts are of.
    fn into_hit(self) -> Hit {
        Hit {
            kind: self.kind.map(Cow::into_owned),
            timestamp: self.timestamp.map(Cow::into_owned),
            ip: self.ip.map(Cow::into_owned),
            user_agent: self.user_agent.map(Cow::into_owned),
            visitor_id: self.visitor_id.map(Cow::into_owned),
            ..self.kept
        }
    }

    /// [`Hit::validate`], keeping borrowed what was borrowed.
    pub(crate) fn validate(
        self,
        ctx: &ValidationContext,
        default_site: Option<&str>,
    ) -> Result<Validated<'a>, ValidationError> {
        let HitParts {
            kept: hit,
            kind,
            timestamp,
            ip,
            user_agent,
            visitor_id,
        } = self;
        let lim = &ctx.limits;
        let site = match (hit.site.filter(|s| !s.is_empty()), default_site) {
            (Some(own), _) => own,
            (None, Some(default)) => default.to_owned(),
            (None, None) => return err("site", "is required"),
        };
        if site.len() > 253 {
            return err("site", "must be at most 253 characters");
        }
        // The hit's own string when it is lowercase already (nearly always).
        let site = if site.bytes().any(|b| b.is_ascii_uppercase()) {
            site.to_ascii_lowercase()
        } else {
            site
        };
        let kind = match kind.as_deref() {
            None => return err("type", "is required"),
            Some(k) => match EventKind::parse(k) {
                Some(k) => k,
                None => {
                    return err(
                        "type",
                        format!(
                        "must be one of pageview, goal, purchase, custom, engagement, refund (got {k:?})"
                    ),
                    )
                }
            },
        };
        let page = validate_url(hit.url, lim)?;
        let (referrer, referrer_domain) = validate_referrer(hit.referrer.as_deref(), lim)?;

        let client_ts = match timestamp.as_deref() {
            None => None,
            Some(s) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|_| {
                        ValidationError::new(
                            "timestamp",
                            "must be an RFC 3339 time such as 2026-03-01T12:00:00Z",
                        )
                    })?
                    .with_timezone(&Utc),
            ),
        };
        let timestamp = match ctx.mode {
            IngestMode::Live { max_skew } => {
                if let Some(ts) = client_ts {
                    if (ts - ctx.now).abs() > max_skew {
                        return err(
                            "timestamp",
                            format!(
                                "must be within {} s of the server clock",
                                max_skew.num_seconds()
                            ),
                        );
                    }
                }
                ctx.now
            }
            IngestMode::Import { max_future } => {
                let Some(ts) = client_ts else {
                    return err("timestamp", "is required on import");
                };
                if ts - ctx.now > max_future {
                    return err(
                        "timestamp",
                        format!(
                            "must not be more than {} s in the future",
                            max_future.num_seconds()
                        ),
                    );
                }
                if ts.timestamp() < 0 {
                    return err("timestamp", "must not be before 1970");
                }
                ts
            }
        };

        let ip = match ip.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                s.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| ValidationError::new("ip", "must be an IPv4 or IPv6 address"))?,
            ),
        };
        let user_agent = bounded("user_agent", user_agent, lim.max_user_agent_len)?;
        let client_visitor_id = bounded("visitor_id", visitor_id, lim.max_id_len)?;
        let user_id = bounded("user_id", hit.user_id, lim.max_id_len)?;
        let title = bounded("title", hit.title, lim.max_title_len)?;
        let language = bounded("language", hit.language, 35)?;
        let order_id = bounded("order_id", hit.order_id, MAX_ORDER_ID)?;
        let name = bounded("goal", hit.name, lim.max_name_len)?;
        check_needs(
            kind,
            name.is_some(),
            hit.revenue.is_some(),
            order_id.is_some(),
            hit.engagement.as_ref(),
        )?;
        let revenue = hit.revenue.as_ref().map(parse_revenue).transpose()?;
        check_props(&hit.props, lim)?;

        let event = Event {
            site,
            kind,
            name: if kind == EventKind::Purchase {
                name.or_else(|| Some("purchase".into()))
            } else {
                name
            },
            timestamp,
            client_timestamp: client_ts,
            page: Page {
                title,
                referrer,
                referrer_domain,
                ..page
            },
            device: Device {
                screen: hit.screen,
                viewport: hit.viewport,
                pixel_ratio: hit.pixel_ratio,
                language,
                ..Device::default()
            },
            engagement: hit.engagement.unwrap_or_default(),
            commerce: Commerce {
                revenue,
                order_id,
                goal_value: None,
                refunded_total: None,
            },
            props: hit.props,
            identity: crate::event::Identity {
                user_id,
                ..Default::default()
            },
            ..Event::default()
        };
        Ok(Validated {
            event,
            ip,
            user_agent,
            client_visitor_id,
        })
    }
}

/// Longest order id, bytes.
pub(crate) const MAX_ORDER_ID: usize = 200;

fn bounded<S: std::ops::Deref<Target = str>>(
    field: &str,
    v: Option<S>,
    max: usize,
) -> VResult<Option<S>> {
    check_bounded(field, v.as_deref(), max)?;
    Ok(v.filter(|s| !s.is_empty()))
}

/// The length rule of an optional text field (empty counts as absent).
pub(crate) fn check_bounded(field: &str, v: Option<&str>, max: usize) -> VResult<()> {
    match v {
        Some(s) if s.len() > max => err(field, format!("must be at most {max} bytes")),
        _ => Ok(()),
    }
}

/// What each kind of event needs besides its page.
pub(crate) fn check_needs(
    kind: EventKind,
    has_name: bool,
    has_revenue: bool,
    has_order_id: bool,
    engagement: Option<&Engagement>,
) -> VResult<()> {
    match kind {
        EventKind::Goal if !has_name => err("goal", "is required for a goal event"),
        EventKind::Custom if !has_name => err("name", "is required for a custom event"),
        EventKind::Purchase if !has_revenue => err("revenue", "is required for a purchase event"),
        EventKind::Refund if !has_order_id => err("order_id", "is required for a refund event"),
        EventKind::Engagement
            if engagement.is_none_or(|e| e.time_ms.is_none() && e.scroll_depth.is_none()) =>
        {
            err(
                "engagement",
                "needs time_ms or scroll_depth for an engagement event",
            )
        }
        _ => Ok(()),
    }
}

/// A hit's revenue: a known currency and a non-negative amount in it.
pub(crate) fn parse_revenue(raw: &RawMoney) -> VResult<Money> {
    let currency = Currency::parse(&raw.currency).ok_or_else(|| {
        ValidationError::new(
            "revenue.currency",
            format!("{:?} is not a known ISO 4217 currency", raw.currency),
        )
    })?;
    let money = Money::parse(&raw.amount, currency)
        .map_err(|e| ValidationError::new("revenue.amount", e.to_string()))?;
    if money.minor < 0 {
        return err("revenue.amount", MoneyError::Negative.to_string());
    }
    Ok(money)
}

/// The rules of custom properties: how many, how long their names and values.
pub(crate) fn check_props(props: &BTreeMap<String, String>, lim: &Limits) -> VResult<()> {
    if props.len() > lim.max_props {
        return err(
            "props",
            format!("must have at most {} properties", lim.max_props),
        );
    }
    for (k, v) in props {
        if k.is_empty() || k.len() > lim.max_prop_key_len {
            return err(
                "props",
                format!("names must be 1 to {} bytes", lim.max_prop_key_len),
            );
        }
        if v.len() > lim.max_prop_value_len {
            return err(
                &format!("props.{k}"),
                format!("must be at most {} bytes", lim.max_prop_value_len),
            );
        }
    }
    Ok(())
}

/// The rules of a page URL, without keeping anything.
pub(crate) fn check_url(url: Option<&str>, lim: &Limits) -> VResult<()> {
    url_parts(url, lim).map(drop)
}

fn url_parts<'u>(url: Option<&'u str>, lim: &Limits) -> VResult<(&'u str, UrlParts<'u>)> {
    let Some(raw) = url.filter(|u| !u.is_empty()) else {
        return err("url", "is required");
    };
    if raw.len() > lim.max_url_len {
        return err("url", format!("must be at most {} bytes", lim.max_url_len));
    }
    let parsed = UrlParts::parse(raw).map_err(|e| {
        ValidationError::new("url", format!("must be an absolute http(s) URL ({e})"))
    })?;
    if !matches!(parsed.scheme.as_ref(), "http" | "https") {
        return err("url", "must be an absolute http(s) URL");
    }
    if parsed.host.is_none() {
        return err("url", "must have a host");
    }
    Ok((raw, parsed))
}

fn validate_url(url: Option<String>, lim: &Limits) -> VResult<Page> {
    let (host, path) = {
        let (_, parsed) = url_parts(url.as_deref(), lim)?;
        (
            parsed.host.map(|h| h.into_owned()).unwrap_or_default(),
            parsed.path.into_owned(),
        )
    };
    Ok(Page {
        // The hit's own string: `url_parts` checked it is there.
        url: url.unwrap_or_default(),
        host,
        path,
        ..Page::default()
    })
}

/// The rules of a referrer URL, without keeping anything.
pub(crate) fn check_referrer(referrer: Option<&str>, lim: &Limits) -> VResult<()> {
    validate_referrer(referrer, lim).map(drop)
}

fn validate_referrer(
    referrer: Option<&str>,
    lim: &Limits,
) -> VResult<(Option<String>, Option<String>)> {
    let Some(raw) = referrer.filter(|r| !r.is_empty()) else {
        return Ok((None, None));
    };
    if raw.len() > lim.max_url_len {
        return err(
            "referrer",
            format!("must be at most {} bytes", lim.max_url_len),
        );
    }
    let parsed = UrlParts::parse(raw)
        .map_err(|e| ValidationError::new("referrer", format!("must be an absolute URL ({e})")))?;
    let Some(host) = parsed.host.filter(|h| !h.is_empty()) else {
        return err("referrer", "must have a host");
    };
    let domain = host.strip_prefix("www.").unwrap_or(&host).to_owned();
    let clean = format!("{}://{}{}", parsed.scheme, host, parsed.path);
    Ok((Some(clean), Some(domain)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn check(json: &str) -> Result<ValidatedHit, ValidationError> {
        Hit::from_json(json.as_bytes())?.validate(&ValidationContext::import(now()), None)
    }

    #[test]
    fn contract_example_validates() {
        let v = check(
            r#"{"site": "example.com", "type": "purchase",
            "url": "https://example.com/pricing?utm_source=news&gclid=abc#top",
            "referrer": "https://www.google.com/search?q=x", "title": "Pricing",
            "timestamp": "2026-03-01T12:00:00Z", "ip": "81.2.69.142", "user_agent": "Mozilla/5.0",
            "visitor_id": "v1", "screen": [1920, 1080], "language": "en-US", "goal": "signup",
            "revenue": {"amount": "49.00", "currency": "USD"}, "props": {"plan": "pro", "seats": 3},
            "engagement": {"time_ms": 5300, "scroll_depth": 80}}"#,
        )
        .unwrap();
        let e = &v.event;
        assert_eq!(e.page.path, "/pricing");
        assert_eq!(e.page.host, "example.com");
        assert_eq!(
            e.page.referrer.as_deref(),
            Some("https://www.google.com/search")
        );
        assert_eq!(e.page.referrer_domain.as_deref(), Some("google.com"));
        assert_eq!(e.commerce.revenue.unwrap().minor, 4900);
        assert_eq!(e.props.get("seats").map(String::as_str), Some("3"));
        assert_eq!(e.device.screen, Some((1920, 1080)));
        assert_eq!(v.client_visitor_id.as_deref(), Some("v1"));
        assert_eq!(v.ip, Some("81.2.69.142".parse().unwrap()));
    }

    fn field_of(json: &str) -> String {
        check(json).unwrap_err().field
    }

    #[test]
    fn errors_name_the_field() {
        let base = r#""site":"a.com","timestamp":"2026-03-01T11:00:00Z""#;
        assert_eq!(field_of(&format!(r#"{{{base},"type":"pageview"}}"#)), "url");
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"view","url":"https://a.com/"}}"#
            )),
            "type"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"pageview","url":"ftp://a.com/"}}"#
            )),
            "url"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"pageview","url":"/relative"}}"#
            )),
            "url"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"goal","url":"https://a.com/"}}"#
            )),
            "goal"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"custom","url":"https://a.com/"}}"#
            )),
            "name"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"purchase","url":"https://a.com/"}}"#
            )),
            "revenue"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"engagement","url":"https://a.com/"}}"#
            )),
            "engagement"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"purchase","url":"https://a.com/","revenue":{{"amount":49.0,"currency":"USD"}}}}"#
            )),
            "revenue.amount"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"purchase","url":"https://a.com/","revenue":{{"amount":"-1","currency":"USD"}}}}"#
            )),
            "revenue.amount"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"purchase","url":"https://a.com/","revenue":{{"amount":"1","currency":"ABC"}}}}"#
            )),
            "revenue.currency"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"pageview","url":"https://a.com/","ip":"1.2.3"}}"#
            )),
            "ip"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"pageview","url":"https://a.com/","props":{{"a":[1]}}}}"#
            )),
            "props.a"
        );
        assert_eq!(
            field_of(&format!(
                r#"{{{base},"type":"engagement","url":"https://a.com/","engagement":{{"scroll_depth":101}}}}"#
            )),
            "engagement.scroll_depth"
        );
        assert_eq!(
            field_of(
                r#"{"type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:00:00Z"}"#
            ),
            "site"
        );
        assert_eq!(
            field_of(r#"{"site":"a.com","type":"pageview","url":"https://a.com/"}"#),
            "timestamp"
        );
        assert_eq!(
            field_of(
                r#"{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-09T11:00:00Z"}"#
            ),
            "timestamp"
        );
        assert_eq!(field_of("[1,2]"), "hit");
        assert_eq!(field_of("{"), "hit");
    }

    #[test]
    fn too_many_props_is_rejected() {
        let props: Vec<String> = (0..31).map(|i| format!("\"p{i}\":\"v\"")).collect();
        let json = format!(
            r#"{{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:00:00Z","props":{{{}}}}}"#,
            props.join(",")
        );
        assert_eq!(check(&json).unwrap_err().field, "props");
    }

    #[test]
    fn live_ingest_uses_the_server_clock_and_bounds_skew() {
        let ctx = ValidationContext::live(now());
        let ok = Hit::from_json(br#"{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:58:00Z"}"#)
            .unwrap()
            .validate(&ctx, None)
            .unwrap();
        assert_eq!(ok.event.timestamp, now());
        assert!(ok.event.client_timestamp.is_some());
        let skewed = Hit::from_json(br#"{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:50:00Z"}"#)
            .unwrap()
            .validate(&ctx, None)
            .unwrap_err();
        assert_eq!(skewed.field, "timestamp");
        let no_ts = Hit::from_json(br#"{"type":"pageview","url":"https://a.com/"}"#)
            .unwrap()
            .validate(&ctx, Some("a.com"))
            .unwrap();
        assert_eq!(no_ts.event.site, "a.com");
    }

    /// The typed fast path and the general path parse every object to the same hit
    /// (or the fast path declines): keys of every kind, values of every JSON type,
    /// escapes, duplicates and unknown keys.
    mod plain_path {
        use super::*;
        use proptest::prelude::*;

        fn key() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                "site",
                "type",
                "url",
                "referrer",
                "title",
                "timestamp",
                "ip",
                "user_agent",
                "visitor_id",
                "user_id",
                "language",
                "goal",
                "name",
                "order_id",
                "screen",
                "viewport",
                "pixel_ratio",
                "revenue",
                "props",
                "engagement",
                "other",
            ])
            .prop_map(str::to_owned)
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z0-9 ]{0,6}".prop_map(|s| format!("{s:?}")),
                Just(r#""a\"b\u00e9""#.to_owned()),
                Just("null".to_owned()),
                Just("7".to_owned()),
                Just("true".to_owned()),
                Just("[1, 2]".to_owned()),
                Just(r#"{"amount": "1.00", "currency": "USD"}"#.to_owned()),
                Just(r#"{"amount": 1, "currency": "USD"}"#.to_owned()),
                Just(r#"{"amount": "1.00"}"#.to_owned()),
                Just(r#"{"time_ms": 5, "scroll_depth": 50, "other": [1]}"#.to_owned()),
                Just(r#"{"time_ms": 86400001}"#.to_owned()),
                Just(r#"{"scroll_depth": 101, "clicks": null}"#.to_owned()),
                Just(
                    r#"{"clicks": 1000000, "form_submits": 2, "video_plays": 3, "downloads": 4}"#
                        .to_owned()
                ),
                Just(r#"{"downloads": 1000001}"#.to_owned()),
                Just(r#"{"time_ms": 1.5}"#.to_owned()),
                Just(r#"{"time_ms": -1}"#.to_owned()),
                Just(r#"{"time_ms": -0}"#.to_owned()),
                Just(r#"{"time_ms": 5, "time_ms": 6}"#.to_owned()),
                Just("{}".to_owned()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]
            #[test]
            fn agrees_with_the_general_path(fields in prop::collection::vec((key(), value()), 0..8)) {
                let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
                let json = format!("{{{}}}", body.join(", "));
                let general = serde_json::from_str::<Value>(&json)
                    .map_err(|e| e.to_string())
                    .and_then(|v| Hit::from_value(&v).map_err(|e| e.to_string()));
                if let Some(fast) = PlainHit::parse(json.as_bytes()) {
                    prop_assert_eq!(Ok(fast.into_hit()), general.clone(), "{}", json);
                }
                let public = Hit::from_json(json.as_bytes()).map_err(|e| e.to_string());
                prop_assert_eq!(public, general.clone());
                // The import's path, which borrows what it can from the line.
                let parts = Hit::parts_from_json_str(&json)
                    .map(HitParts::into_hit)
                    .map_err(|e| e.to_string());
                prop_assert_eq!(parts, general);
            }
        }

        #[test]
        fn declines_what_it_does_not_read() {
            assert!(PlainHit::parse(br#"{"site": "a.com", "url": "https://a.com/"}"#).is_some());
            assert!(PlainHit::parse(br#"["a.com"]"#).is_none());
            assert!(PlainHit::parse(br#"{"site": 5}"#).is_none());
            assert!(PlainHit::parse(br#"{"props": {"a": "1"}}"#).is_none());
            assert!(PlainHit::parse(br#"{"site": "a", "site": "b"}"#).is_none());
            assert!(PlainHit::parse(br#"{"engagement": {"scroll_depth": 101}}"#).is_none());
            assert!(PlainHit::parse(br#"{"revenue": {"amount": 1, "currency": "USD"}}"#).is_none());
            let read = PlainHit::parse(br#"{"engagement": {"time_ms": 5}, "revenue": {"amount": "1.00", "currency": "EUR"}}"#)
                .expect("typed")
                .into_hit();
            assert_eq!(read.engagement.and_then(|e| e.time_ms), Some(5));
            assert_eq!(read.revenue.map(|m| m.currency).as_deref(), Some("EUR"));
        }

        /// Type, time, address, agent and visitor id are borrowed from the line; one
        /// with an escape cannot be, and the general path reads it the same.
        #[test]
        fn borrows_the_text_it_only_reads_and_unescapes_the_rest() {
            let line = r#"{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T00:00:00Z","ip":"1.2.3.4","user_agent":"UA","visitor_id":"v1"}"#;
            let parts = PlainHit::parse_str(line).expect("plain");
            for f in [
                &parts.kind,
                &parts.timestamp,
                &parts.ip,
                &parts.user_agent,
                &parts.visitor_id,
            ] {
                assert!(matches!(f, Some(Cow::Borrowed(_))), "{f:?} borrowed");
            }
            let escaped = r#"{"site":"a.com","type":"page\u0076iew","url":"https://a.com/","timestamp":"2026-03-01T00:00:00Z","user_agent":"say \"hi\"","visitor_id":"v\\1"}"#;
            assert!(
                PlainHit::parse_str(escaped).is_none(),
                "left to the general path"
            );
            let hit = Hit::parts_from_json_str(escaped)
                .expect("general path")
                .into_hit();
            assert_eq!(
                (
                    hit.kind.as_deref(),
                    hit.user_agent.as_deref(),
                    hit.visitor_id.as_deref()
                ),
                (Some("pageview"), Some("say \"hi\""), Some("v\\1"))
            );
            let v = Hit::parts_from_json_str(escaped)
                .expect("parsed")
                .validate(
                    &ValidationContext::import("2026-04-01T00:00:00Z".parse().expect("time")),
                    None,
                )
                .expect("valid");
            assert_eq!(v.user_agent.as_deref(), Some("say \"hi\""));
            assert_eq!(v.event.kind, EventKind::Pageview);
        }
    }
}
