//! Revenue and conversion attribution for queries with an `attribution` option.

use crate::models::shares_into;
use crate::request::bounds;
use beacon_core::{
    sessionize, site_or_unknown, AttributionModel, Currency, Dimension, Event, EventKind, Filter,
    Metric, MetricValue, Money, Query, QueryError, QueryResult, ResultRow, SessionSummary, Site,
    Store, StoreError, TimeBucket,
};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// A session-level dimension's value for a session (its first event and summary).
pub(crate) fn session_value(dim: &Dimension, first: &Event, s: &SessionSummary) -> Option<String> {
    use Dimension as D;
    let a = &first.acquisition;
    match dim {
        D::Source => a.source.as_deref().map(str::to_owned),
        D::Referrer => first.page.referrer.clone(),
        D::Channel => a.channel.as_deref().map(str::to_owned),
        D::UtmSource => a.utm.source.as_deref().map(str::to_owned),
        D::UtmMedium => a.utm.medium.as_deref().map(str::to_owned),
        D::UtmCampaign => a.utm.campaign.as_deref().map(str::to_owned),
        D::UtmContent => a.utm.content.as_deref().map(str::to_owned),
        D::UtmTerm => a.utm.term.as_deref().map(str::to_owned),
        D::Country => first.location.country.as_deref().map(str::to_owned),
        D::Region => first.location.region.as_deref().map(str::to_owned),
        D::City => first.location.city.as_deref().map(str::to_owned),
        D::Device => first.device.device_type.map(|d| d.as_str().to_owned()),
        D::Browser => first.device.browser.as_deref().map(str::to_owned),
        D::Os => first.device.os.as_deref().map(str::to_owned),
        D::Company => first.network.company.name.as_deref().map(str::to_owned),
        D::VisitorType => first.network.visitor_type.map(|v| v.as_str().to_owned()),
        D::EntryPage => Some(first.page.path.clone()),
        D::ExitPage => s.exit_page.clone(),
        D::Page | D::Goal | D::Prop(_) | D::Time(_) => None,
    }
}

/// A dimension's value for a conversion event: session-level dimensions from its
/// session, event-level ones (page, goal, props) from the event itself.
fn conversion_value(
    dim: &Dimension,
    e: &Event,
    first: &Event,
    s: &SessionSummary,
) -> Option<String> {
    match dim {
        Dimension::Page => Some(e.page.path.clone()),
        Dimension::Goal => e.name.clone(),
        Dimension::Prop(k) => e.props.get(k).cloned(),
        Dimension::Time(_) => None,
        d => session_value(d, first, s),
    }
}

fn filter_holds(f: &Filter, value: &dyn Fn(&Dimension) -> Option<String>) -> bool {
    match f {
        Filter::And(fs) => fs.iter().all(|f| filter_holds(f, value)),
        Filter::Or(fs) => fs.iter().any(|f| filter_holds(f, value)),
        Filter::Not(f) => !filter_holds(f, value),
        Filter::Is(d, _) | Filter::IsNot(d, _) | Filter::Contains(d, _) | Filter::Matches(d, _) => {
            f.leaf_accepts(value(d).as_deref())
        }
    }
}

/// What was refunded of one order (in the currency of its refunds).
#[derive(Debug, Default)]
struct Refunded {
    /// Largest running total a provider reported.
    max_total: i64,
    /// Sum of refunds that report only their own amount.
    sum: i64,
    /// A refund without an amount: the whole order.
    full: bool,
    currency: Option<Currency>,
}

impl Refunded {
    fn add(&mut self, e: &Event) {
        let c = &e.commerce;
        match (c.refunded_total, c.revenue) {
            (Some(t), _) if self.currency.is_none_or(|x| x == t.currency) => {
                self.currency = Some(t.currency);
                self.max_total = self.max_total.max(t.minor);
            }
            (None, Some(m)) if self.currency.is_none_or(|x| x == m.currency) => {
                self.currency = Some(m.currency);
                self.sum += m.minor;
            }
            (None, None) => self.full = true,
            _ => {}
        }
    }
    /// The part of `amount` refunded.
    fn of(&self, amount: Money) -> i64 {
        if self.full {
            return amount.minor;
        }
        if self.currency.is_some_and(|c| c != amount.currency) {
            return 0;
        }
        self.max_total.max(self.sum).min(amount.minor)
    }
}

/// Converts to minor units of `target` with the query's rate table; `None` when the
/// currency differs and has no rate (never summed blindly).
fn to_target(m: Money, target: Currency, rates: &[(Currency, f64)]) -> Option<f64> {
    if m.currency == target {
        return Some(m.minor as f64);
    }
    let rate = rates.iter().find(|(c, _)| *c == m.currency)?.1;
    let scale = 10f64.powi(i32::from(target.exponent()) - i32::from(m.currency.exponent()));
    Some(m.minor as f64 * rate * scale)
}

/// Answers an attribution query over `events` of `site` (any order).
///
/// Conversions are purchases (or, when the filters mention `goal`, goal and purchase
/// events passing them) in the date range; other filters are tested on the
/// conversion with its session's frozen dimensions. A purchase's amount is net of
/// the refunds that name its order (a fully refunded order is no conversion), and
/// other currencies are converted with `attribution.rates` or left out.
pub fn attribute_events(
    events: &[Event],
    site: &Site,
    q: &Query,
    now: DateTime<Utc>,
) -> Result<QueryResult, QueryError> {
    let a = q.attribution.as_ref().ok_or_else(|| {
        QueryError::invalid("attribution", "is required for an attribution query")
    })?;
    if let Some(i) = q.filters.iter().position(|f| {
        TIME_BUCKETS
            .iter()
            .any(|b| f.mentions(&Dimension::Time(*b)))
    }) {
        return Err(QueryError::invalid(
            format!("filters[{i}]"),
            "time dimensions cannot be filtered on",
        ));
    }
    let goal_mode = q.filters.iter().any(|f| f.mentions(&Dimension::Goal));
    let (from, to, start, end) = bounds(&q.date_range, site, now);
    let currency = q.currency.unwrap_or(site.currency);

    let mut refunded: HashMap<&str, Refunded> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.site == site.domain && e.kind == EventKind::Refund)
    {
        if let Some(order) = e.commerce.order_id.as_deref() {
            refunded.entry(order).or_default().add(e);
        }
    }
    let mut evs: Vec<Event> = events
        .iter()
        .filter(|e| e.site == site.domain && e.kind.is_activity())
        .filter(|e| q.include_bots || !e.is_bot())
        .cloned()
        .collect();
    let summaries = sessionize(&mut evs, site.session_timeout_ms());
    // Canonical order: visitor, time, id (sessionize's order).
    let mut order: Vec<usize> = (0..evs.len()).collect();
    order.sort_by(|&x, &y| {
        (&evs[x].identity.visitor_id, evs[x].timestamp, evs[x].id).cmp(&(
            &evs[y].identity.visitor_id,
            evs[y].timestamp,
            evs[y].id,
        ))
    });
    let mut first_of: HashMap<u64, usize> = HashMap::new();
    for &i in &order {
        if let Some(sid) = evs[i].identity.session_id {
            first_of.entry(sid).or_insert(i);
        }
    }
    let summary_of: HashMap<u64, &SessionSummary> =
        summaries.iter().map(|s| (s.session_id, s)).collect();

    let mut tp = Touchpoints::new();
    let mut visitor_index: HashMap<&str, u32> = HashMap::new();
    for &i in &order {
        let n = visitor_index.len() as u32;
        visitor_index
            .entry(evs[i].identity.visitor_id.as_str())
            .or_insert(n);
    }
    for s in &summaries {
        let Some(&fi) = first_of.get(&s.session_id) else {
            continue;
        };
        let first = &evs[fi];
        let values: Vec<Option<String>> = q
            .dimensions
            .iter()
            .map(|d| session_value(d, first, s))
            .collect();
        let has_value = values
            .first()
            .is_some_and(|v| v.as_deref().is_some_and(|v| !v.is_empty()));
        let key = tp.key(values);
        tp.push_session(
            visitor_index[s.visitor.as_str()],
            s.start_ms,
            key,
            has_value,
        );
    }
    for &i in &order {
        let e = &evs[i];
        if e.timestamp < start || e.timestamp >= end {
            continue;
        }
        let is_candidate = match e.kind {
            EventKind::Purchase => true,
            EventKind::Goal => goal_mode,
            _ => false,
        };
        if !is_candidate {
            continue;
        }
        let Some(sid) = e.identity.session_id else {
            continue;
        };
        let (first, summary) = (&evs[first_of[&sid]], summary_of[&sid]);
        let value = |d: &Dimension| conversion_value(d, e, first, summary);
        if !q.filters.iter().all(|f| filter_holds(f, &value)) {
            continue;
        }
        let (amount, count) = match e.kind {
            EventKind::Purchase => match e.commerce.revenue {
                Some(m) => {
                    let back = e
                        .commerce
                        .order_id
                        .as_deref()
                        .and_then(|o| refunded.get(o))
                        .map_or(0, |r| r.of(m));
                    let net = Money {
                        minor: m.minor - back,
                        currency: m.currency,
                    };
                    let count = if back >= m.minor && m.minor > 0 {
                        0.0
                    } else {
                        1.0
                    };
                    (to_target(net, currency, &a.rates).unwrap_or(0.0), count)
                }
                None => (0.0, 1.0),
            },
            _ => (
                e.commerce
                    .goal_value
                    .and_then(|m| to_target(m, currency, &a.rates))
                    .unwrap_or(0.0),
                1.0,
            ),
        };
        tp.push_conversion(
            visitor_index[e.identity.visitor_id.as_str()],
            e.timestamp.timestamp_millis(),
            amount,
            count,
        );
    }
    let credits = tp.credit(a.model, a.window_days, a.half_life_days);

    let exp = currency.exponent();
    let mut rows: Vec<ResultRow> = tp
        .keys
        .into_iter()
        .zip(credits)
        .map(|(dims, c)| ResultRow {
            dimensions: dims,
            metrics: q
                .metrics
                .iter()
                .map(|m| match m {
                    Metric::Revenue => MetricValue {
                        units: c.revenue.round() as i64,
                        scale: exp,
                    },
                    _ => MetricValue {
                        units: (c.conversions * 100.0).round() as i64,
                        scale: 2,
                    },
                })
                .collect(),
        })
        // As in the main engine, rows whose metrics are all zero are left out.
        .filter(|r: &ResultRow| r.metrics.iter().any(|m| m.units != 0))
        .collect();
    rows.sort_by(|x, y| {
        y.metrics[0]
            .units
            .cmp(&x.metrics[0].units)
            .then_with(|| x.dimensions.cmp(&y.dimensions))
    });
    let total_rows = rows.len();
    Ok(QueryResult {
        rows: rows.into_iter().skip(q.offset).take(q.limit).collect(),
        metrics: q.metrics.clone(),
        total_rows,
        currency,
        query: q.to_json(Some((from, to))),
    })
}

const TIME_BUCKETS: [TimeBucket; 4] = [
    TimeBucket::Hour,
    TimeBucket::Day,
    TimeBucket::Week,
    TimeBucket::Month,
];

/// Orders `items` by visitor number, then by `within`: a stable LSD radix sort on the
/// visitor number (digits of at most 11 bits, so each pass scatters into a few
/// thousand buckets and stays cache-friendly), then each visitor's few items sorted
/// in place.
fn group_by_visitor<T: Copy>(
    items: &mut Vec<T>,
    visitor: impl Fn(&T) -> u32,
    within: impl Fn(&T, &T) -> std::cmp::Ordering,
) {
    let Some(max) = items.iter().map(&visitor).max() else {
        return;
    };
    let bits = 32 - max.leading_zeros();
    if bits > 0 {
        let passes = bits.div_ceil(11);
        let digit = bits.div_ceil(passes);
        let mask = (1u32 << digit) - 1;
        let mut src = std::mem::take(items);
        let mut dst = src.clone();
        for p in 0..passes {
            let shift = p * digit;
            let mut next = vec![0usize; mask as usize + 1];
            for it in &src {
                next[((visitor(it) >> shift) & mask) as usize] += 1;
            }
            let mut sum = 0;
            for c in next.iter_mut() {
                let count = *c;
                *c = sum;
                sum += count;
            }
            for it in &src {
                let slot = &mut next[((visitor(it) >> shift) & mask) as usize];
                dst[*slot] = *it;
                *slot += 1;
            }
            std::mem::swap(&mut src, &mut dst);
        }
        *items = src;
    }
    let mut start = 0;
    while start < items.len() {
        let v = visitor(&items[start]);
        let len = items[start..]
            .iter()
            .take_while(|it| visitor(it) == v)
            .count();
        if len > 1 {
            items[start..start + len].sort_unstable_by(&within);
        }
        start += len;
    }
}

/// One key's credit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Credit {
    /// Credited revenue, minor units of the query currency (not yet rounded).
    pub revenue: f64,
    /// Credited conversions (fractions under multi-touch models).
    pub conversions: f64,
}

#[derive(Debug, Clone, Copy)]
struct SessionTouch {
    visitor: u32,
    start_ms: i64,
    key: u32,
    has_value: bool,
}

#[derive(Debug, Clone, Copy)]
struct ConversionTouch {
    visitor: u32,
    at_ms: i64,
    seq: u32,
    amount: f64,
    count: f64,
}

/// The attribution engine's compact input: sessions (touches) and conversions by
/// visitor number, with each session's credited dimension values interned as a key.
/// [`attribute_events`] builds it from events; a backend may build it from its own
/// columns or SQL and call [`Touchpoints::credit`].
#[derive(Debug, Clone, Default)]
pub struct Touchpoints {
    keys: Vec<Vec<Option<String>>>,
    key_index: HashMap<Vec<Option<String>>, u32>,
    sessions: Vec<SessionTouch>,
    conversions: Vec<ConversionTouch>,
}

impl Touchpoints {
    /// Empty input.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key number of a tuple of dimension values (interned).
    pub fn key(&mut self, values: Vec<Option<String>>) -> u32 {
        if let Some(&k) = self.key_index.get(&values) {
            return k;
        }
        let k = self.keys.len() as u32;
        self.keys.push(values.clone());
        self.key_index.insert(values, k);
        k
    }

    /// The interned keys, by number.
    pub fn keys(&self) -> &[Vec<Option<String>>] {
        &self.keys
    }

    /// Adds a session of `visitor` starting at `start_ms`, credited to `key`;
    /// `has_value` says whether its first credited dimension is non-empty (what
    /// last-non-direct looks for).
    pub fn push_session(&mut self, visitor: u32, start_ms: i64, key: u32, has_value: bool) {
        self.sessions.push(SessionTouch {
            visitor,
            start_ms,
            key,
            has_value,
        });
    }

    /// Adds a conversion of `visitor` at `at_ms` worth `amount` (minor units of the
    /// query currency) counting `count` (1, or 0 for a fully refunded order).
    /// Conversions with equal visitor and time are credited in the order pushed.
    pub fn push_conversion(&mut self, visitor: u32, at_ms: i64, amount: f64, count: f64) {
        let seq = self.conversions.len() as u32;
        self.conversions.push(ConversionTouch {
            visitor,
            at_ms,
            seq,
            amount,
            count,
        });
    }

    /// Sessions and conversions held.
    pub fn len(&self) -> (usize, usize) {
        (self.sessions.len(), self.conversions.len())
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.conversions.is_empty()
    }

    /// Credits every conversion to the keys of its touches under `model`: the
    /// sessions of the same visitor that started at most `window_days` before it,
    /// up to it. One [`Credit`] per key number. Sums run in (visitor, time, push)
    /// order, so the result does not depend on the order sessions were pushed in.
    pub fn credit(
        &mut self,
        model: AttributionModel,
        window_days: u32,
        half_life_days: f64,
    ) -> Vec<Credit> {
        group_by_visitor(
            &mut self.conversions,
            |c| c.visitor,
            |a, b| (a.at_ms, a.seq).cmp(&(b.at_ms, b.seq)),
        );
        // Only the sessions of visitors who converted can be touches.
        let mut converted: Vec<u64> = Vec::new();
        for c in &self.conversions {
            let (w, b) = (c.visitor as usize / 64, c.visitor % 64);
            if w >= converted.len() {
                converted.resize(w + 1, 0);
            }
            converted[w] |= 1 << b;
        }
        let touched = |v: u32| {
            converted
                .get(v as usize / 64)
                .is_some_and(|w| (w >> (v % 64)) & 1 == 1)
        };
        let mut sessions: Vec<SessionTouch> = self
            .sessions
            .iter()
            .filter(|s| touched(s.visitor))
            .copied()
            .collect();
        group_by_visitor(
            &mut sessions,
            |s| s.visitor,
            |a, b| (a.start_ms, a.key, a.has_value).cmp(&(b.start_ms, b.key, b.has_value)),
        );
        let window_ms = i64::from(window_days) * 86_400_000;
        let mut out = vec![Credit::default(); self.keys.len()];
        let (mut touches, mut shares) = (Vec::new(), Vec::new());
        let sessions = &sessions;
        let (mut run_start, mut run_end) = (0usize, 0usize);
        let mut run_visitor = None;
        for c in &self.conversions {
            if run_visitor != Some(c.visitor) {
                run_start = run_end.max(run_start);
                run_start += sessions[run_start..].partition_point(|s| s.visitor < c.visitor);
                run_end =
                    run_start + sessions[run_start..].partition_point(|s| s.visitor == c.visitor);
                run_visitor = Some(c.visitor);
            }
            let run = &sessions[run_start..run_end];
            let lo = run.partition_point(|s| s.start_ms < c.at_ms - window_ms);
            let hi = run.partition_point(|s| s.start_ms <= c.at_ms);
            let run = &run[lo..hi.max(lo)];
            touches.clear();
            touches.extend(run.iter().map(|s| (s.start_ms, s.has_value)));
            shares_into(model, &touches, c.at_ms, half_life_days, &mut shares);
            for (s, &share) in run.iter().zip(&shares) {
                if share == 0.0 {
                    continue;
                }
                let credit = &mut out[s.key as usize];
                credit.revenue += share * c.amount;
                credit.conversions += share * c.count;
            }
        }
        out
    }
}

/// Answers an attribution query on any store (scans the site's events).
pub async fn attribute(
    store: &dyn Store,
    q: &Query,
    now: DateTime<Utc>,
) -> Result<QueryResult, StoreError> {
    let site = site_or_unknown(store, &q.site).await?;
    let events = store.scan(&q.site, None, None).await?;
    Ok(attribute_events(&events, &site, q, now)?)
}
