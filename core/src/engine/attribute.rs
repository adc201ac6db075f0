//! Revenue and conversion attribution (contract section 4) on a site's table: the
//! table's derived sessions are the touches, its purchase (or goal) rows in the range
//! the conversions, and the refund ledger reverses the credit of refunded orders.

use super::exec::{by_visitor_parts, finish, Compiled, Ctx, Key, KeyIndex, Src, CHECK_EVERY};
use super::models::shares_into;
use super::table::NULL;
use super::SiteData;
use crate::context::Context;
use crate::error::QueryError;
use crate::event::{Event, EventKind};
use crate::money::{Currency, Money};
use crate::query::{AttributionModel, Dimension, Filter, Metric, Query, ResolvedRange};
use crate::result::{MetricValue, QueryResult, ResultRow};
use crate::site::Site;
use std::collections::HashMap;

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

/// The window before `range.start` whose sessions can be touches, ms.
pub(crate) fn lookback_ms(q: &Query) -> i64 {
    q.attribution
        .as_ref()
        .map_or(0, |a| i64::from(a.window_days) * 86_400_000)
}

/// Answers an attribution query on prepared data whose sessions are exact from
/// `range.start - window` to `range.end`.
///
/// Conversions are purchases (or, when the filters mention `goal`, goal and purchase
/// events passing them) in the range; other filters are tested on the conversion
/// with its session's frozen dimensions. A purchase's amount is net of the refunds
/// that name its order (a fully refunded order is no conversion), and other
/// currencies are converted with `attribution.rates` or left out. Sessions whose
/// first event is a bot's are no touches, and bots' purchases no conversions, unless
/// the query includes bots.
pub(crate) fn run(
    d: &SiteData,
    site: &Site,
    q: &Query,
    range: &ResolvedRange,
    cx: &Context,
) -> Result<QueryResult, QueryError> {
    let a = q.attribution.as_ref().ok_or_else(|| {
        QueryError::invalid("attribution", "is required for an attribution query")
    })?;
    let t = &d.table;
    let goal_mode = q.filters.iter().any(|f| f.mentions(&Dimension::Goal));
    let mut c = Ctx::new(t, range.start_ms(), range.end_ms(), q.include_bots, cx);
    c.currency = q.currency.unwrap_or(site.currency);
    let filters: Vec<&Filter> = q.filters.iter().collect();
    let filter = Compiled::all(&filters, &c)?;
    let srcs: Vec<Src> = q.dimensions.iter().map(|d| Src::of(d, t)).collect();

    let mut refunded: HashMap<&str, Refunded> = HashMap::new();
    for e in d
        .ledger
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Refund)
    {
        if let Some(order) = e.commerce.order_id.as_deref() {
            refunded.entry(order).or_default().add(e);
        }
    }

    let scan = Scan {
        q,
        a,
        srcs: &srcs,
        filter: filter.as_ref(),
        refunded: &refunded,
        goal_mode,
    };
    // Split by visitor across the cores: a visitor's touches and conversions are in
    // one part, and the parts' fixed-point sums add up exactly.
    let parts = by_visitor_parts(&c, |c, range| scan.part(c, range))?;
    let mut keys = KeyIndex::new(&srcs, &c);
    if srcs.is_empty() {
        // No dimensions: one row, as for any query.
        keys.number([NULL; Query::MAX_DIMENSIONS]);
    }
    let mut sums: Vec<Fixed> = Vec::new();
    for (part_keys, part_sums) in parts {
        for (key, (revenue, conversions)) in part_keys.into_iter().zip(part_sums) {
            let (k, _) = keys.number(key);
            let k = k as usize;
            if k >= sums.len() {
                sums.resize(k + 1, (0, 0));
            }
            sums[k].0 += revenue;
            sums[k].1 += conversions;
        }
    }
    let keys = keys.keys;
    sums.resize(keys.len(), (0, 0));
    let credits: Vec<Credit> = sums.into_iter().map(Credit::from_fixed).collect();
    let exp = c.currency.exponent();
    let rows: Vec<(Key, ResultRow)> = keys
        .into_iter()
        .zip(credits)
        .map(|(key, credit)| {
            let row = ResultRow {
                dimensions: srcs
                    .iter()
                    .enumerate()
                    .map(|(i, s)| c.render(*s, key[i]))
                    .collect(),
                metrics: q
                    .metrics
                    .iter()
                    .map(|m| match m {
                        Metric::Revenue => MetricValue {
                            units: credit.revenue.round() as i64,
                            scale: exp,
                        },
                        _ => MetricValue {
                            units: (credit.conversions * 100.0).round() as i64,
                            scale: 2,
                        },
                    })
                    .collect(),
            };
            (key, row)
        })
        // As in the main engine, rows whose metrics are all zero are left out.
        .filter(|(_, r)| srcs.is_empty() || r.metrics.iter().any(|m| m.units != 0))
        .collect();
    Ok(finish(&c, q, &srcs, rows, range))
}

/// A key's credited (revenue, conversions) in fixed point (see [`FIXED`]).
type Fixed = (i128, i128);

/// What every part of an attribution scan shares.
struct Scan<'a> {
    q: &'a Query,
    a: &'a crate::query::Attribution,
    srcs: &'a [Src],
    filter: Option<&'a Compiled>,
    refunded: &'a HashMap<&'a str, Refunded>,
    goal_mode: bool,
}

impl Scan<'_> {
    /// Touches and conversions of the sessions `range` (whole visitors), credited:
    /// the keys met, by number, and each key's fixed-point sums.
    fn part(
        &self,
        c: &Ctx<'_>,
        range: std::ops::Range<usize>,
    ) -> Result<(Vec<Key>, Vec<Fixed>), QueryError> {
        let (q, a, srcs, filter) = (self.q, self.a, self.srcs, self.filter);
        let goal_mode = self.goal_mode;
        let t = c.t;
        let window_ms = lookback_ms(q);
        let (start, end) = (c.start, c.end);
        let mut keys = KeyIndex::new(srcs, c);
        if srcs.is_empty() {
            keys.number([NULL; Query::MAX_DIMENSIONS]);
        }
        let mut pending = Pending::new(Credited {
            model: a.model,
            window_ms: i64::from(a.window_days) * 86_400_000,
            half_life_days: a.half_life_days,
        });
        // A visitor's sessions come together (the table is ordered by visitor, and
        // flags a visitor's first session): when the visitor converted, their touches
        // are read back from their run of sessions. Nothing grows with the table: a
        // batch of converted visitors at most.
        let touch_from = start.saturating_sub(window_ms);
        let mut nonempty: Vec<Option<bool>> = Vec::new();
        let mut hand_over = |visitor: std::ops::Range<usize>, pending: &mut Pending| {
            if pending.rows.len() == pending.rows_handed {
                return;
            }
            for si in visitor {
                let s = &t.sessions[si];
                let first_ts = t.ts[s.first as usize];
                if first_ts < touch_from || first_ts >= end || (!q.include_bots && s.first_is_bot())
                {
                    continue;
                }
                // Keys only for the touches of visitors who converted.
                let mut key = [NULL; Query::MAX_DIMENSIONS];
                for (i, src) in srcs.iter().enumerate() {
                    key[i] = c.row_value(*src, s.first as usize, s);
                }
                let (k, _) = keys.number(key);
                // Whether the key's first value is non-empty, once per key.
                if nonempty.len() <= k as usize {
                    nonempty.resize(k as usize + 1, None);
                }
                let has_value = *nonempty[k as usize].get_or_insert_with(|| {
                    srcs.first().is_some_and(|src| c.is_nonempty(*src, key[0]))
                });
                pending.touches.push(SessionTouch {
                    visitor: 0,
                    start_ms: first_ts,
                    key: k,
                    has_value,
                });
            }
            pending.rows_handed = pending.rows.len();
            pending
                .visitors
                .push((pending.touches.len(), pending.rows.len()));
            if pending.rows.len() >= Pending::BATCH {
                pending.credit_all(self, c, keys.keys.len());
            }
        };
        let mut visitor_first = range.start;
        for si in range.clone() {
            let s = &t.sessions[si];
            if si % CHECK_EVERY == 0 {
                c.check()?;
            }
            if s.starts_visitor() {
                hand_over(visitor_first..si, &mut pending);
                visitor_first = si;
            }
            // Only goals, purchases and custom events set the flag: a session without
            // it holds no conversion.
            if !s.has_interaction() {
                continue;
            }
            let (first_ts, last_ts) = t.span(s);
            if last_ts < start || first_ts >= end {
                continue;
            }
            let check_bots = !q.include_bots && s.has_bot_rows();
            for r in s.rows() {
                let ts = t.ts[r];
                if ts < start || ts >= end || (check_bots && t.is_bot(r)) {
                    continue;
                }
                let candidate = match t.kind[r] {
                    EventKind::Purchase => true,
                    EventKind::Goal => goal_mode,
                    _ => false,
                };
                if !candidate || filter.is_some_and(|f| !f.eval(c, r, s)) {
                    continue;
                }
                pending.rows.push(r as u32);
            }
        }
        hand_over(visitor_first..range.end, &mut pending);
        pending.credit_all(self, c, keys.keys.len());
        let keys = keys.keys;
        let mut sums = pending.sums;
        sums.resize(keys.len(), (0, 0));
        Ok((keys, sums))
    }

    /// What conversion row `r` (a purchase or goal) is worth and counts: a purchase
    /// net of its order's refunds (a fully refunded order counts 0), in the query
    /// currency (0 without a rate).
    fn value(&self, c: &Ctx<'_>, r: usize) -> (f64, f64) {
        let extra = c.t.extra(r);
        let rates = &self.a.rates;
        match c.t.kind[r] {
            EventKind::Purchase => match extra.and_then(|x| x.revenue) {
                Some(m) => {
                    let back = extra
                        .and_then(|x| x.order_id)
                        .and_then(|o| self.refunded.get(o))
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
                    (to_target(net, c.currency, rates).unwrap_or(0.0), count)
                }
                None => (0.0, 1.0),
            },
            _ => (
                extra
                    .and_then(|x| x.goal_value)
                    .and_then(|m| to_target(m, c.currency, rates))
                    .unwrap_or(0.0),
                1.0,
            ),
        }
    }
}

/// Converted visitors of a scan waiting to be credited, in a batch: their rows'
/// values are looked up together, so the reads of rarely touched columns overlap
/// instead of stalling the scan one by one.
#[derive(Debug)]
struct Pending {
    credit: Credited,
    /// The visitors' touches, ordered by start within each visitor.
    touches: Vec<SessionTouch>,
    /// Conversion rows, in row order within each visitor.
    rows: Vec<u32>,
    /// Rows of `rows` already handed over with their visitor's touches.
    rows_handed: usize,
    /// Per visitor: where their touches and rows end.
    visitors: Vec<(usize, usize)>,
    conversions: Vec<ConversionTouch>,
    scratch: Scratch,
    sums: Vec<Fixed>,
}

impl Pending {
    /// Conversions held before the batch is credited.
    const BATCH: usize = 512;

    fn new(credit: Credited) -> Self {
        Self {
            credit,
            touches: Vec::new(),
            rows: Vec::new(),
            rows_handed: 0,
            visitors: Vec::new(),
            conversions: Vec::new(),
            scratch: Scratch::default(),
            sums: Vec::new(),
        }
    }

    /// Credits every visitor held, into `sums` (one per key number, `keys` of them).
    fn credit_all(&mut self, scan: &Scan<'_>, c: &Ctx<'_>, keys: usize) {
        self.conversions.clear();
        let t = c.t;
        self.conversions.extend(self.rows.iter().map(|&r| {
            let (amount, count) = scan.value(c, r as usize);
            ConversionTouch {
                visitor: 0,
                at_ms: t.ts[r as usize],
                seq: 0,
                amount,
                count,
            }
        }));
        self.sums.resize(self.sums.len().max(keys), (0, 0));
        let (mut touches_from, mut rows_from) = (0, 0);
        for &(touches_end, rows_end) in &self.visitors {
            let run = &self.touches[touches_from..touches_end];
            for conversion in &self.conversions[rows_from..rows_end] {
                self.credit
                    .one(run, conversion, &mut self.scratch, &mut self.sums);
            }
            (touches_from, rows_from) = (touches_end, rows_end);
        }
        self.touches.clear();
        self.rows.clear();
        self.rows_handed = 0;
        self.visitors.clear();
    }
}

/// Orders `items` by visitor number, then by `within`: a stable LSD radix sort on the
/// visitor number (digits of at most 11 bits, so each pass scatters into a few
/// thousand buckets and stays cache-friendly), then each visitor's few items sorted
/// in place.
fn group_by_visitor<T: Copy>(
    items: &mut Vec<T>,
    visitor: impl Fn(&T) -> u32,
    within: impl Fn(&T, &T) -> std::cmp::Ordering,
) {
    // A store's own table hands them over in this order already: one check, no sort.
    let ordered = items
        .windows(2)
        .all(|w| match visitor(&w[0]).cmp(&visitor(&w[1])) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => within(&w[0], &w[1]) != std::cmp::Ordering::Greater,
            std::cmp::Ordering::Greater => false,
        });
    if ordered {
        return;
    }
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

/// Credits are summed in units of 2^-40 (about 10^-12): scaling by a power of two
/// is exact in floating point, so only the rounding to the unit is lost, at most
/// half a unit per credit.
const FIXED: f64 = (1u64 << 40) as f64;

/// One key's credit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Credit {
    /// Credited revenue, minor units of the query currency (not yet rounded).
    pub revenue: f64,
    /// Credited conversions (fractions under multi-touch models).
    pub conversions: f64,
}

impl Credit {
    fn from_fixed((revenue, conversions): Fixed) -> Self {
        Self {
            revenue: revenue as f64 / FIXED,
            conversions: conversions as f64 / FIXED,
        }
    }
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
/// The store engines build it from a table's sessions; a backend may build it from
/// its own columns or SQL and call [`Touchpoints::credit`].
#[derive(Debug, Clone, Default)]
pub struct Touchpoints {
    keys: Vec<Vec<Option<String>>>,
    key_index: HashMap<Vec<Option<String>>, u32>,
    /// Key numbers in use (those of [`Touchpoints::key`] and of callers numbering their own).
    key_count: usize,
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
        self.key_count = self.key_count.max(self.keys.len());
        k
    }

    /// Makes key numbers below `n` valid, for a caller that numbers its own keys
    /// (credits come back for `0..n`).
    pub fn reserve_keys(&mut self, n: usize) {
        self.key_count = self.key_count.max(n);
    }

    /// The keys interned by [`Touchpoints::key`], by number.
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
    /// up to it. One [`Credit`] per key number. Credits are summed exactly (in fixed
    /// point), so the result does not depend on the order anything was pushed in.
    pub fn credit(
        &mut self,
        model: AttributionModel,
        window_days: u32,
        half_life_days: f64,
    ) -> Vec<Credit> {
        self.credit_fixed(model, window_days, half_life_days)
            .into_iter()
            .map(Credit::from_fixed)
            .collect()
    }

    /// [`Touchpoints::credit`]'s sums in fixed point (revenue, conversions), which
    /// the parts of a split scan add up exactly.
    pub(crate) fn credit_fixed(
        &mut self,
        model: AttributionModel,
        window_days: u32,
        half_life_days: f64,
    ) -> Vec<Fixed> {
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
        // The store engines hand over only converting visitors' sessions: those are
        // ordered in place (the order pushed never matters), not copied.
        let mut filtered: Vec<SessionTouch>;
        let sessions: &mut Vec<SessionTouch> = if self.sessions.iter().all(|s| touched(s.visitor)) {
            &mut self.sessions
        } else {
            filtered = self
                .sessions
                .iter()
                .filter(|s| touched(s.visitor))
                .copied()
                .collect();
            &mut filtered
        };
        group_by_visitor(
            sessions,
            |s| s.visitor,
            |a, b| (a.start_ms, a.key, a.has_value).cmp(&(b.start_ms, b.key, b.has_value)),
        );
        let window_ms = i64::from(window_days) * 86_400_000;
        let mut sums = vec![(0i128, 0i128); self.key_count];
        let mut scratch = Scratch::default();
        let credit = Credited {
            model,
            window_ms,
            half_life_days,
        };
        let sessions = &*sessions;
        let (mut run_start, mut run_end) = (0usize, 0usize);
        let mut run_visitor = None;
        for c in &self.conversions {
            if run_visitor != Some(c.visitor) {
                // Both are ordered by visitor: walk forward (a binary search per
                // visitor missed the cache at every step).
                run_start = run_end.max(run_start);
                while run_start < sessions.len() && sessions[run_start].visitor < c.visitor {
                    run_start += 1;
                }
                run_end = run_start;
                while run_end < sessions.len() && sessions[run_end].visitor == c.visitor {
                    run_end += 1;
                }
                run_visitor = Some(c.visitor);
            }
            credit.one(&sessions[run_start..run_end], c, &mut scratch, &mut sums);
        }
        sums
    }
}

/// Buffers one conversion's credit reuses.
#[derive(Debug, Default)]
struct Scratch {
    touches: Vec<(i64, bool)>,
    shares: Vec<f64>,
}

/// How conversions are credited: the one rule both the store engines' scan and
/// [`Touchpoints::credit`] apply.
#[derive(Debug, Clone, Copy)]
struct Credited {
    model: AttributionModel,
    window_ms: i64,
    half_life_days: f64,
}

impl Credited {
    /// Credits conversion `c` to the keys of its touches among `run` (its visitor's
    /// sessions ordered by start): those that started at most the window before it,
    /// up to it. Each credit is added in fixed point (2^-40 units), summed exactly:
    /// the totals do not depend on the order conversions are met in, so every
    /// backend and arrival order agrees.
    fn one(
        &self,
        run: &[SessionTouch],
        c: &ConversionTouch,
        scratch: &mut Scratch,
        sums: &mut [Fixed],
    ) {
        let fixed = |x: f64| {
            let v = (x * FIXED).round();
            // The same integer; through i64 when it fits (a float to i128 cast is a
            // library call).
            if v.abs() < 9.0e18 {
                v as i64 as i128
            } else {
                v as i128
            }
        };
        let lo = run.partition_point(|s| s.start_ms < c.at_ms - self.window_ms);
        let hi = run.partition_point(|s| s.start_ms <= c.at_ms);
        let run = &run[lo..hi.max(lo)];
        scratch.touches.clear();
        scratch
            .touches
            .extend(run.iter().map(|s| (s.start_ms, s.has_value)));
        shares_into(
            self.model,
            &scratch.touches,
            c.at_ms,
            self.half_life_days,
            &mut scratch.shares,
        );
        for (s, &share) in run.iter().zip(&scratch.shares) {
            if share == 0.0 {
                continue;
            }
            let sum = &mut sums[s.key as usize];
            sum.0 += fixed(share * c.amount);
            sum.1 += fixed(share * c.count);
        }
    }
}
