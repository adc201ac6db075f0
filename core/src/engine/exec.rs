//! The reference query engine: every metric of the contract, computed in one pass
//! over a built [`SiteTable`] (sessions outer, their rows inner).

use super::table::{acq, client, Sess, SiteTable, NULL};
use super::SiteData;
use crate::context::Context;
use crate::error::QueryError;
use crate::event::EventKind;
use crate::money::Currency;
use crate::query::{Dimension, Direction, Filter, Metric, OrderKey, Query, ResolvedRange};
use crate::result::{mean_seconds, percent, ratio, MetricValue, QueryResult, ResultRow};
use crate::site::Site;
use crate::time::Buckets;
use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Where a dimension's or filter's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Src {
    Path,
    Entry,
    Exit,
    Goal,
    Client(usize),
    Acq(usize),
    /// A property by its name id (NULL when no event has that name).
    Prop(u32),
    Time,
}

/// Which dictionary a source's ids belong to.
enum Space {
    Paths,
    Names,
    Strings,
    Buckets,
}

impl Src {
    pub(super) fn of(dim: &Dimension, t: &SiteTable) -> Src {
        use Dimension as D;
        match dim {
            D::Page => Src::Path,
            D::EntryPage => Src::Entry,
            D::ExitPage => Src::Exit,
            D::Goal => Src::Goal,
            D::Source => Src::Acq(acq::SOURCE),
            D::Referrer => Src::Acq(acq::REFERRER),
            D::Channel => Src::Acq(acq::CHANNEL),
            D::UtmSource => Src::Acq(acq::UTM_SOURCE),
            D::UtmMedium => Src::Acq(acq::UTM_MEDIUM),
            D::UtmCampaign => Src::Acq(acq::UTM_CAMPAIGN),
            D::UtmContent => Src::Acq(acq::UTM_CONTENT),
            D::UtmTerm => Src::Acq(acq::UTM_TERM),
            D::Country => Src::Client(client::COUNTRY),
            D::Region => Src::Client(client::REGION),
            D::City => Src::Client(client::CITY),
            D::Device => Src::Client(client::DEVICE),
            D::Browser => Src::Client(client::BROWSER),
            D::Os => Src::Client(client::OS),
            D::Company => Src::Client(client::COMPANY),
            D::VisitorType => Src::Client(client::VISITOR_TYPE),
            D::Prop(name) => Src::Prop(t.strings.lookup(name).unwrap_or(NULL)),
            D::Time(_) => Src::Time,
        }
    }

    fn space(&self) -> Space {
        match self {
            Src::Path | Src::Entry | Src::Exit => Space::Paths,
            Src::Goal => Space::Names,
            Src::Client(_) | Src::Acq(_) | Src::Prop(_) => Space::Strings,
            Src::Time => Space::Buckets,
        }
    }
}

/// What a pass needs besides the table.
#[derive(Clone)]
pub(super) struct Ctx<'a> {
    pub(super) t: &'a SiteTable,
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) include_bots: bool,
    buckets: Option<Buckets>,
    /// The last bucket found: [lo, hi) in ms and its value id. Rows of a session, and
    /// sessions of a visitor, come in time order, so most lookups hit it.
    last_bucket: Cell<(i64, i64, u32)>,
    pub(super) currency: Currency,
    cx: &'a Context,
}

/// How many items (sessions, rows, dictionary entries) an engine goes through
/// between checks of its request's cancel flag.
pub(super) const CHECK_EVERY: usize = 4096;

impl<'a> Ctx<'a> {
    /// A context over `t` for events in `[start, end)` ms, for the request `cx`.
    pub(super) fn new(
        t: &'a SiteTable,
        start: i64,
        end: i64,
        include_bots: bool,
        cx: &'a Context,
    ) -> Self {
        Self {
            t,
            start,
            end,
            include_bots,
            buckets: None,
            last_bucket: Cell::new((i64::MAX, i64::MIN, NULL)),
            currency: Currency::USD,
            cx,
        }
    }

    /// [`QueryError::Stopped`] once the request is cancelled.
    pub(super) fn check(&self) -> Result<(), QueryError> {
        self.cx.check()
    }

    /// Whether value `id` of `src` is a non-empty string.
    pub(super) fn is_nonempty(&self, src: Src, id: u32) -> bool {
        let t = self.t;
        let s = match src.space() {
            Space::Paths => t.paths.get(id),
            Space::Names => t.names.get(id),
            Space::Strings => t.strings.get(id),
            Space::Buckets => return id != NULL,
        };
        s.is_some_and(|s| !s.is_empty())
    }

    pub(super) fn space_size(&self, src: Src) -> usize {
        match src.space() {
            Space::Paths => self.t.paths.space(),
            Space::Names => self.t.names.space(),
            Space::Strings => self.t.strings.space(),
            Space::Buckets => self.buckets.as_ref().map_or(0, Buckets::len) + 1,
        }
    }

    pub(super) fn render(&self, src: Src, id: u32) -> Option<String> {
        match src.space() {
            Space::Paths => self.t.paths.get(id).map(str::to_owned),
            Space::Names => self.t.names.get(id).map(str::to_owned),
            Space::Strings => self.t.strings.get(id).map(str::to_owned),
            Space::Buckets => (id != NULL)
                .then(|| {
                    self.buckets
                        .as_ref()
                        .map(|b| b.label(id as usize - 1).to_owned())
                })
                .flatten(),
        }
    }

    #[inline(always)]
    fn bucket(&self, ts: i64) -> u32 {
        let (lo, hi, id) = self.last_bucket.get();
        if ts >= lo && ts < hi {
            return id;
        }
        let Some(b) = &self.buckets else { return NULL };
        match b.index(ts) {
            Some(i) => {
                let (lo, hi) = b.bounds(i);
                self.last_bucket.set((lo, hi, i as u32 + 1));
                i as u32 + 1
            }
            None => NULL,
        }
    }

    /// The value of `src` for row `r` of session `s`, as events see it.
    #[inline(always)]
    pub(super) fn row_value(&self, src: Src, r: usize, s: &Sess) -> u32 {
        let t = self.t;
        match src {
            Src::Path => t.path.get(r),
            Src::Entry => t.path.get(s.first as usize),
            Src::Exit => s.exit_path,
            Src::Goal => {
                if t.kind[r].is_conversion() {
                    t.name.get(r)
                } else {
                    NULL
                }
            }
            Src::Client(f) => t.client_field(s.first as usize, f),
            Src::Acq(f) => t.acq_field(s.first as usize, f),
            Src::Prop(key) => {
                if key == NULL {
                    return NULL;
                }
                t.extra(r)
                    .and_then(|x| x.props.iter().find(|(k, _)| *k == key))
                    .map_or(NULL, |(_, v)| *v)
            }
            Src::Time => self.bucket(t.ts[r]),
        }
    }

    /// The value of `src` for a visit, seen through its row `r`: time is the session's start.
    #[inline(always)]
    fn visit_value(&self, src: Src, r: usize, s: &Sess) -> u32 {
        match src {
            Src::Time => self.bucket(self.t.ts[s.first as usize]),
            _ => self.row_value(src, r, s),
        }
    }
}

/// A filter compiled to lookups of accepted value ids.
pub(super) enum Compiled {
    Leaf { src: Src, accept: Vec<bool> },
    And(Vec<Compiled>),
    Or(Vec<Compiled>),
    Not(Box<Compiled>),
}

impl Compiled {
    /// All of `filters`, compiled (`None` when there are none).
    pub(super) fn all(filters: &[&Filter], c: &Ctx<'_>) -> Result<Option<Compiled>, QueryError> {
        Ok(match filters {
            [] => None,
            [one] => Some(Compiled::new(one, c)?),
            many => Some(Compiled::And(
                many.iter()
                    .map(|f| Compiled::new(f, c))
                    .collect::<Result<_, _>>()?,
            )),
        })
    }

    fn new(f: &Filter, c: &Ctx<'_>) -> Result<Compiled, QueryError> {
        let many = |fs: &[Filter]| {
            fs.iter()
                .map(|f| Compiled::new(f, c))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match f {
            Filter::And(fs) => Compiled::And(many(fs)?),
            Filter::Or(fs) => Compiled::Or(many(fs)?),
            Filter::Not(f) => Compiled::Not(Box::new(Compiled::new(f, c)?)),
            Filter::Is(d, _)
            | Filter::IsNot(d, _)
            | Filter::Contains(d, _)
            | Filter::Matches(d, _) => {
                let src = Src::of(d, c.t);
                let mut accept = Vec::with_capacity(c.space_size(src));
                for id in 0..c.space_size(src) as u32 {
                    if id as usize % CHECK_EVERY == 0 {
                        c.check()?;
                    }
                    accept.push(f.leaf_accepts(c.render(src, id).as_deref()));
                }
                Compiled::Leaf { src, accept }
            }
        })
    }

    #[inline(always)]
    pub(super) fn eval(&self, c: &Ctx<'_>, r: usize, s: &Sess) -> bool {
        match self {
            Compiled::Leaf { src, accept } => accept[c.row_value(*src, r, s) as usize],
            Compiled::And(fs) => fs.iter().all(|f| f.eval(c, r, s)),
            Compiled::Or(fs) => fs.iter().any(|f| f.eval(c, r, s)),
            Compiled::Not(f) => !f.eval(c, r, s),
        }
    }
}

/// The per-group accumulators every event touches, kept small so that thousands of
/// groups stay in the L1 cache. The stamp holds the last visitor counted.
#[derive(Debug, Clone)]
struct Hot {
    visitors: u64,
    events: u64,
    pageviews: u64,
    visitor_stamp: u32,
}

impl Default for Hot {
    fn default() -> Self {
        Self {
            visitors: 0,
            events: 0,
            pageviews: 0,
            visitor_stamp: u32::MAX,
        }
    }
}

/// The other per-group accumulators. Stamps hold the last session / converter counted.
#[derive(Debug, Clone)]
struct Acc {
    visits: u64,
    session_stamp: u32,
    bounces: u64,
    duration_ms: u64,
    visit_pageviews: u64,
    conversions: u64,
    conversion_stamp: u32,
    revenue: i64,
    engaged_ms: u64,
    engaged_pageviews: u64,
    scroll_sum: u64,
    scroll_pairs: u64,
}

impl Default for Acc {
    fn default() -> Self {
        Self {
            visits: 0,
            session_stamp: u32::MAX,
            bounces: 0,
            duration_ms: 0,
            visit_pageviews: 0,
            conversions: 0,
            conversion_stamp: u32::MAX,
            revenue: 0,
            engaged_ms: 0,
            engaged_pageviews: 0,
            scroll_sum: 0,
            scroll_pairs: 0,
        }
    }
}

pub(super) type Key = [u32; Query::MAX_DIMENSIONS];

/// Numbers dimension value tuples in order of first use: a dense table for none
/// or one dimension (its dictionary's size), a hash map for several.
pub(super) struct KeyIndex {
    dense: Option<Vec<u32>>,
    map: HashMap<Key, u32>,
    /// The tuples, by number.
    pub(super) keys: Vec<Key>,
}

impl KeyIndex {
    pub(super) fn new(dims: &[Src], c: &Ctx<'_>) -> Self {
        Self {
            dense: match dims {
                [] => Some(vec![u32::MAX; 1]),
                [one] => Some(vec![u32::MAX; c.space_size(*one)]),
                _ => None,
            },
            map: HashMap::new(),
            keys: Vec::new(),
        }
    }

    /// The number of `key`, if it has one.
    #[inline(always)]
    fn find(&self, key: &Key) -> Option<u32> {
        match &self.dense {
            Some(d) => d.get(key[0] as usize).copied().filter(|&g| g != u32::MAX),
            None => self.map.get(key).copied(),
        }
    }

    /// The number of `key`, a new one on its first use, and whether it is new.
    #[inline(always)]
    pub(super) fn number(&mut self, key: Key) -> (u32, bool) {
        let next = self.keys.len() as u32;
        let slot = match &mut self.dense {
            Some(d) => &mut d[key[0] as usize],
            None => self.map.entry(key).or_insert(u32::MAX),
        };
        if *slot != u32::MAX {
            return (*slot, false);
        }
        *slot = next;
        self.keys.push(key);
        (next, true)
    }
}

/// Maps dimension value tuples to accumulators.
struct Groups {
    dims: Vec<Src>,
    index: KeyIndex,
    hot: Vec<Hot>,
    accs: Vec<Acc>,
}

impl Groups {
    fn new(dims: Vec<Src>, c: &Ctx<'_>) -> Self {
        Self {
            index: KeyIndex::new(&dims, c),
            dims,
            hot: Vec::new(),
            accs: Vec::new(),
        }
    }

    #[inline(always)]
    fn slot(&mut self, key: Key) -> usize {
        let (g, new) = self.index.number(key);
        if new {
            self.accs.push(Acc::default());
            self.hot.push(Hot::default());
        }
        g as usize
    }

    #[inline(always)]
    fn row_key(&self, c: &Ctx<'_>, r: usize, s: &Sess) -> Key {
        let mut k = [NULL; Query::MAX_DIMENSIONS];
        for (i, d) in self.dims.iter().enumerate() {
            k[i] = c.row_value(*d, r, s);
        }
        k
    }

    #[inline(always)]
    fn visit_key(&self, c: &Ctx<'_>, r: usize, s: &Sess) -> Key {
        let mut k = [NULL; Query::MAX_DIMENSIONS];
        for (i, d) in self.dims.iter().enumerate() {
            k[i] = c.visit_value(*d, r, s);
        }
        k
    }
}

/// Which families of metrics a pass computes.
#[derive(Debug, Clone, Copy, Default)]
struct Needs {
    visits: bool,
    engaged_time: bool,
    scroll: bool,
    /// conversions or revenue: per-row kinds matter.
    conversions: bool,
    /// Any of the above three: rows need more than counting.
    per_row_extras: bool,
}

impl Needs {
    fn of(metrics: &[Metric]) -> Self {
        Self::new(Self {
            visits: metrics.iter().any(|m| {
                matches!(
                    m,
                    Metric::Visits
                        | Metric::BounceRate
                        | Metric::VisitDuration
                        | Metric::ViewsPerVisit
                )
            }),
            engaged_time: metrics.contains(&Metric::TimeOnPage),
            scroll: metrics.contains(&Metric::ScrollDepth),
            conversions: metrics.iter().any(|m| {
                matches!(
                    m,
                    Metric::Conversions | Metric::ConversionRate | Metric::Revenue
                )
            }),
            per_row_extras: false,
        })
    }

    fn new(n: Needs) -> Self {
        Self {
            per_row_extras: n.engaged_time || n.scroll || n.conversions,
            ..n
        }
    }
}

/// Sessions below which a pass runs on one thread: splitting costs a thread start
/// and a merge of the groups.
const SPLIT_MIN_SESSIONS: usize = 65_536;

/// Threads a pass may use: the cores, at most 8.
fn pass_threads() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
}

/// `parts` ranges covering `0..n` sessions, cut only between visitors (a visitor's
/// sessions are adjacent): each part then counts its visitors alone, and the parts'
/// distinct counts add up.
fn visitor_parts(t: &SiteTable, parts: usize) -> Vec<std::ops::Range<usize>> {
    let n = t.sessions.len();
    let visitor = |si: usize| t.visitor[t.sessions[si].rows().start];
    let mut cuts = vec![0];
    for i in 1..parts {
        let mut b = (n * i / parts).max(*cuts.last().unwrap_or(&0));
        while b > 0 && b < n && visitor(b) == visitor(b - 1) {
            b += 1;
        }
        cuts.push(b);
    }
    cuts.push(n);
    cuts.windows(2)
        .map(|w| w[0]..w[1])
        .filter(|r| !r.is_empty())
        .collect()
}

impl Groups {
    /// Adds `other`'s accumulators into this one's (groups of disjoint visitors).
    fn absorb(&mut self, other: Groups) {
        for (k, (h, a)) in other
            .index
            .keys
            .iter()
            .zip(other.hot.iter().zip(&other.accs))
        {
            let g = self.slot(*k);
            let hot = &mut self.hot[g];
            hot.visitors += h.visitors;
            hot.events += h.events;
            hot.pageviews += h.pageviews;
            let acc = &mut self.accs[g];
            acc.visits += a.visits;
            acc.bounces += a.bounces;
            acc.duration_ms += a.duration_ms;
            acc.visit_pageviews += a.visit_pageviews;
            acc.conversions += a.conversions;
            acc.revenue += a.revenue;
            acc.engaged_ms += a.engaged_ms;
            acc.engaged_pageviews += a.engaged_pageviews;
            acc.scroll_sum += a.scroll_sum;
            acc.scroll_pairs += a.scroll_pairs;
        }
    }
}

/// Runs `work` over the table's sessions, split across the cores by visitor when
/// the table is large (see [`visitor_parts`]): one result per part, in order.
pub(super) fn by_visitor_parts<T: Send>(
    c: &Ctx<'_>,
    work: impl Fn(&Ctx<'_>, std::ops::Range<usize>) -> Result<T, QueryError> + Sync,
) -> Result<Vec<T>, QueryError> {
    let n = c.t.sessions.len();
    let (threads, n_min) = (pass_threads(), SPLIT_MIN_SESSIONS);
    #[cfg(test)]
    let (threads, n_min) = tests::SPLIT.with(|s| s.get()).unwrap_or((threads, n_min));
    if threads < 2 || n < n_min {
        return Ok(vec![work(c, 0..n)?]);
    }
    let mut parts = visitor_parts(c.t, threads).into_iter();
    let first = parts.next().unwrap_or(0..0);
    let work = &work;
    let (mine, others) = std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .map(|range| {
                let c = c.clone();
                scope.spawn(move || work(&c, range))
            })
            .collect();
        let mine = work(c, first);
        let others: Vec<Result<T, QueryError>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        (mine, others)
    });
    let mut out = vec![mine?];
    for r in others {
        out.push(r?);
    }
    Ok(out)
}

/// A pass over the whole table into `groups`, split across the cores by visitor
/// when the table is large (each part into groups of its own, merged after).
fn pass_all(
    c: &Ctx<'_>,
    filter: Option<&Compiled>,
    groups: &mut Groups,
    needs: Needs,
) -> Result<(), QueryError> {
    let dims = groups.dims.clone();
    let parts = by_visitor_parts(c, |c, range| {
        let mut g = Groups::new(dims.clone(), c);
        pass(c, filter, &mut g, needs, range).map(|()| g)
    })?;
    for g in parts {
        groups.absorb(g);
    }
    Ok(())
}

/// One pass over the table's sessions `sessions`, filling `groups`.
fn pass(
    c: &Ctx<'_>,
    filter: Option<&Compiled>,
    groups: &mut Groups,
    needs: Needs,
    sessions: std::ops::Range<usize>,
) -> Result<(), QueryError> {
    let t = c.t;
    let visit_dims_vary = groups
        .dims
        .iter()
        .any(|d| matches!(d, Src::Path | Src::Goal | Src::Prop(_)));
    let has_time_dim = groups.dims.contains(&Src::Time);
    // Without a filter, with session-level dimensions only and per-row metrics not
    // asked for, a session wholly in range (and in one time bucket) adds up in O(1).
    let session_fast_path = filter.is_none()
        && !visit_dims_vary
        && !needs.engaged_time
        && !needs.scroll
        && !needs.conversions;
    // Without dimensions (main stats), runs of whole sessions add up in registers.
    let totals = session_fast_path && groups.dims.is_empty();
    let mut engaged: Vec<(u32, u64)> = Vec::new();
    let mut scroll: Vec<(u32, u32, u8)> = Vec::new();
    // The visitor's ordinal in this pass, from the sessions' own flags (sessions are
    // ordered by visitor): the groups' distinct-visitor stamps without reading the
    // visitor column.
    let mut visitor = 0u32;
    let mut next = sessions.start;
    while next < sessions.end {
        if totals {
            next = totals_run(c, groups, needs.visits, next..sessions.end, &mut visitor)?;
            if next == sessions.end {
                break;
            }
        }
        let si = next;
        next += 1;
        let s = &t.sessions[si];
        visitor = visitor.wrapping_add(u32::from(s.starts_visitor()));
        if si % CHECK_EVERY == 0 {
            c.check()?;
        }
        let rows = s.rows();
        let start_ts = t.ts[rows.start];
        let end_ts = t.ts[rows.end - 1];
        let counts_visit = needs.visits
            && start_ts >= c.start
            && start_ts < c.end
            && (c.include_bots || !s.first_is_bot());
        let events_in_range = end_ts >= c.start && start_ts < c.end;
        if !counts_visit && !events_in_range {
            continue;
        }
        if session_fast_path
            && start_ts >= c.start
            && end_ts < c.end
            && !s.has_bot_rows()
            && (!has_time_dim || c.bucket(start_ts) == c.bucket(end_ts))
        {
            let g = groups.slot(groups.visit_key(c, rows.start, s));
            let hot = &mut groups.hot[g];
            hot.events += u64::from(s.len);
            hot.pageviews += u64::from(s.pageviews());
            if hot.visitor_stamp != visitor {
                hot.visitor_stamp = visitor;
                hot.visitors += 1;
            }
            if counts_visit {
                let acc = &mut groups.accs[g];
                acc.visits += 1;
                acc.bounces += u64::from(s.is_bounce());
                acc.duration_ms += (end_ts - start_ts) as u64;
                acc.visit_pageviews += u64::from(s.pageviews());
            }
            continue;
        }
        let mut visit_done = !counts_visit;
        let check_bots = !c.include_bots && s.has_bot_rows();
        engaged.clear();
        scroll.clear();
        let mut engaged_ready = false;
        for r in rows {
            let ts = t.ts[r];
            let counts_event = ts >= c.start && ts < c.end && !(check_bots && t.is_bot(r));
            if !counts_event && visit_done {
                continue;
            }
            if let Some(f) = filter {
                if !f.eval(c, r, s) {
                    continue;
                }
            }
            if !visit_done {
                let g = groups.slot(groups.visit_key(c, r, s));
                let acc = &mut groups.accs[g];
                if acc.session_stamp != si as u32 {
                    acc.session_stamp = si as u32;
                    acc.visits += 1;
                    acc.bounces += u64::from(s.is_bounce());
                    acc.duration_ms += (end_ts - start_ts) as u64;
                    acc.visit_pageviews += u64::from(s.pageviews());
                }
                visit_done = !visit_dims_vary;
            }
            if !counts_event {
                continue;
            }
            let g = groups.slot(groups.row_key(c, r, s));
            let kind = t.kind[r];
            let hot = &mut groups.hot[g];
            hot.events += 1;
            hot.pageviews += u64::from(kind == EventKind::Pageview);
            if hot.visitor_stamp != visitor {
                hot.visitor_stamp = visitor;
                hot.visitors += 1;
            }
            if !needs.per_row_extras {
                continue;
            }
            let acc = &mut groups.accs[g];
            match kind {
                EventKind::Pageview if needs.engaged_time => {
                    if !engaged_ready {
                        collect_engaged(t, s, &mut engaged);
                        engaged_ready = true;
                    }
                    acc.engaged_pageviews += 1;
                    acc.engaged_ms += engaged
                        .iter()
                        .find(|(p, _)| *p == t.path.get(r))
                        .map_or(0, |(_, ms)| *ms);
                }
                EventKind::Goal | EventKind::Purchase => {
                    if acc.conversion_stamp != visitor {
                        acc.conversion_stamp = visitor;
                        acc.conversions += 1;
                    }
                    if kind == EventKind::Purchase {
                        if let Some(m) = t
                            .extra(r)
                            .and_then(|x| x.revenue)
                            .filter(|m| m.currency == c.currency)
                        {
                            acc.revenue += m.minor;
                        }
                    }
                }
                EventKind::Engagement if needs.scroll => {
                    if let Some(depth) = t.extra(r).and_then(|x| x.scroll) {
                        match scroll
                            .iter_mut()
                            .find(|(gg, p, _)| *gg == g as u32 && *p == t.path.get(r))
                        {
                            Some(pair) => pair.2 = pair.2.max(depth),
                            None => scroll.push((g as u32, t.path.get(r), depth)),
                        }
                    }
                }
                _ => {}
            }
        }
        for (g, _, depth) in &scroll {
            let acc = &mut groups.accs[*g as usize];
            acc.scroll_sum += u64::from(*depth);
            acc.scroll_pairs += 1;
        }
    }
    Ok(())
}

/// Sums of a run of sessions, held in registers.
#[derive(Debug, Default)]
struct Totals {
    events: u64,
    pageviews: u64,
    visitors: u64,
    visits: u64,
    bounces: u64,
    duration_ms: u64,
    visit_pageviews: u64,
}

/// [`pass`]'s session fast path for a pass without dimensions or filters: adds the
/// sessions of `sessions` while each is wholly in range without bot rows (or wholly
/// out of it) into the one group, and returns the first session that is neither
/// (for [`pass`] to take row by row), or the end. `visitor` is the pass's visitor
/// ordinal, advanced past the sessions taken.
fn totals_run(
    c: &Ctx<'_>,
    groups: &mut Groups,
    visits: bool,
    sessions: std::ops::Range<usize>,
    visitor: &mut u32,
) -> Result<usize, QueryError> {
    let key = [NULL; Query::MAX_DIMENSIONS];
    let mut stamp = groups
        .index
        .find(&key)
        .map_or(Hot::default().visitor_stamp, |g| {
            groups.hot[g as usize].visitor_stamp
        });
    let (t, start, end) = (c.t, c.start, c.end);
    let (ts, all) = (&t.ts[..], &t.sessions[..]);
    let mut sum = Totals::default();
    let mut v = *visitor;
    let mut si = sessions.start;
    while si < sessions.end {
        let s = &all[si];
        if si % CHECK_EVERY == 0 {
            c.check()?;
        }
        let first = s.first as usize;
        let (a, b) = (ts[first], ts[first + s.len as usize - 1]);
        let nv = v.wrapping_add(u32::from(s.starts_visitor()));
        if b >= start && a < end {
            if a < start || b >= end || s.has_bot_rows() {
                break;
            }
            let pageviews = u64::from(s.pageviews());
            sum.events += u64::from(s.len);
            sum.pageviews += pageviews;
            sum.visitors += u64::from(stamp != nv);
            stamp = nv;
            if visits {
                sum.visits += 1;
                sum.bounces += u64::from(s.is_bounce());
                sum.duration_ms += (b - a) as u64;
                sum.visit_pageviews += pageviews;
            }
        }
        v = nv;
        si += 1;
    }
    *visitor = v;
    if sum.events > 0 {
        let g = groups.slot(key);
        let hot = &mut groups.hot[g];
        hot.events += sum.events;
        hot.pageviews += sum.pageviews;
        hot.visitors += sum.visitors;
        hot.visitor_stamp = stamp;
        let acc = &mut groups.accs[g];
        acc.visits += sum.visits;
        acc.bounces += sum.bounces;
        acc.duration_ms += sum.duration_ms;
        acc.visit_pageviews += sum.visit_pageviews;
    }
    Ok(si)
}

/// Engaged milliseconds per path within one session.
fn collect_engaged(t: &SiteTable, s: &Sess, out: &mut Vec<(u32, u64)>) {
    for r in s.rows() {
        if t.kind[r] != EventKind::Engagement {
            continue;
        }
        let Some(ms) = t.extra(r).and_then(|x| x.time_ms) else {
            continue;
        };
        match out.iter_mut().find(|(p, _)| *p == t.path.get(r)) {
            Some(e) => e.1 += ms,
            None => out.push((t.path.get(r), ms)),
        }
    }
}

fn metric_value(
    m: Metric,
    h: &Hot,
    a: &Acc,
    conversion_denominator: u64,
    currency: Currency,
) -> MetricValue {
    match m {
        Metric::Visitors => MetricValue::count(h.visitors),
        Metric::Visits => MetricValue::count(a.visits),
        Metric::Pageviews => MetricValue::count(h.pageviews),
        Metric::Events => MetricValue::count(h.events),
        Metric::BounceRate => percent(a.bounces, a.visits),
        Metric::VisitDuration => mean_seconds(a.duration_ms, a.visits),
        Metric::ViewsPerVisit => ratio(u128::from(a.visit_pageviews), u128::from(a.visits), 2),
        Metric::Conversions => MetricValue::count(a.conversions),
        Metric::ConversionRate => percent(a.conversions, conversion_denominator),
        Metric::Revenue => MetricValue {
            units: a.revenue,
            scale: currency.exponent(),
        },
        Metric::TimeOnPage => mean_seconds(a.engaged_ms, a.engaged_pageviews),
        Metric::ScrollDepth => ratio(u128::from(a.scroll_sum), u128::from(a.scroll_pairs), 1),
    }
}

/// Runs `q` (attribution included) on the prepared data of `site` over `range`
/// (resolved by the caller, the one resolver).
pub(crate) fn execute(
    d: &SiteData,
    site: &Site,
    q: &Query,
    range: &ResolvedRange,
    cx: &Context,
) -> Result<QueryResult, QueryError> {
    q.validate()?;
    if q.attribution.is_some() {
        return super::attribute::run(d, site, q, range, cx);
    }
    let t = &d.table;
    let tz = site.timezone;
    let (from, to) = (range.from, range.to);
    let time_bucket = q.dimensions.iter().find_map(|d| match d {
        Dimension::Time(b) => Some(*b),
        _ => None,
    });
    let c = Ctx {
        t,
        start: range.start_ms(),
        end: range.end_ms(),
        include_bots: q.include_bots,
        buckets: time_bucket.map(|b| Buckets::new(tz, b, from, to)),
        last_bucket: Cell::new((i64::MAX, i64::MIN, NULL)),
        currency: q.currency.unwrap_or(site.currency),
        cx,
    };
    let compile = |filters: &[&Filter]| Compiled::all(filters, &c);
    let all_filters: Vec<&Filter> = q.filters.iter().collect();
    let srcs: Vec<Src> = q.dimensions.iter().map(|d| Src::of(d, t)).collect();
    let mut groups = Groups::new(srcs.clone(), &c);
    if srcs.is_empty() {
        groups.slot([NULL; Query::MAX_DIMENSIONS]);
    }
    pass_all(
        &c,
        compile(&all_filters)?.as_ref(),
        &mut groups,
        Needs::of(&q.metrics),
    )?;

    // A single time dimension lists every bucket, with zeros where nothing happened.
    if let (Some(b), [Src::Time]) = (&c.buckets, srcs.as_slice()) {
        for i in 0..b.len() {
            let mut k = [NULL; Query::MAX_DIMENSIONS];
            k[0] = i as u32 + 1;
            groups.slot(k);
        }
    }

    // conversion_rate divides by visitors of the same query without goal filters
    // (and, for a goal breakdown, across all goals).
    let goal_pos = q.dimensions.iter().position(|d| *d == Dimension::Goal);
    let goal_filtered = q.filters.iter().any(|f| f.mentions(&Dimension::Goal));
    let denominators: Option<(Groups, Option<usize>)> =
        if q.metrics.contains(&Metric::ConversionRate) && (goal_filtered || goal_pos.is_some()) {
            let kept: Vec<&Filter> = q
                .filters
                .iter()
                .filter(|f| !f.mentions(&Dimension::Goal))
                .collect();
            let dims: Vec<Src> = srcs
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != goal_pos)
                .map(|(_, s)| *s)
                .collect();
            let mut g = Groups::new(dims, &c);
            pass_all(&c, compile(&kept)?.as_ref(), &mut g, Needs::default())?;
            Some((g, goal_pos))
        } else {
            None
        };
    let denominator = |key: &Key, hot: &Hot| -> u64 {
        match &denominators {
            None => hot.visitors,
            Some((g, goal_pos)) => {
                let mut k = [NULL; Query::MAX_DIMENSIONS];
                let mut j = 0;
                for (i, v) in key.iter().take(srcs.len()).enumerate() {
                    if Some(i) != *goal_pos {
                        k[j] = *v;
                        j += 1;
                    }
                }
                g.index
                    .find(&k)
                    .map_or(0, |found| g.hot[found as usize].visitors)
            }
        }
    };

    let rows: Vec<(Key, ResultRow)> = groups
        .index
        .keys
        .iter()
        .zip(groups.hot.iter().zip(&groups.accs))
        .filter(|(k, _)| !(srcs.first() == Some(&Src::Time) && srcs.len() == 1 && k[0] == NULL))
        .map(|(k, (h, a))| {
            let dimensions = srcs
                .iter()
                .enumerate()
                .map(|(i, s)| c.render(*s, k[i]))
                .collect();
            let metrics = q
                .metrics
                .iter()
                .map(|m| metric_value(*m, h, a, denominator(k, h), c.currency))
                .collect();
            (
                *k,
                ResultRow {
                    dimensions,
                    metrics,
                },
            )
        })
        .filter(|(_, r)| {
            srcs.is_empty() || srcs == [Src::Time] || r.metrics.iter().any(|m| m.units != 0)
        })
        .collect();

    Ok(finish(&c, q, &srcs, rows, range))
}

/// Orders result rows (by `order_by`, else time ascending, else the first metric
/// descending; dimension values ascending, missing last, as the final tie-break),
/// then applies offset and limit. Every query path (attribution included) ends here.
pub(super) fn finish(
    c: &Ctx<'_>,
    q: &Query,
    srcs: &[Src],
    mut rows: Vec<(Key, ResultRow)>,
    range: &ResolvedRange,
) -> QueryResult {
    let time_pos = srcs.iter().position(|s| *s == Src::Time);
    let order: Vec<(OrderKey, Direction)> = if !q.order_by.is_empty() {
        q.order_by.clone()
    } else if let Some(p) = time_pos {
        vec![(OrderKey::Dimension(p), Direction::Asc)]
    } else {
        vec![(OrderKey::Metric(q.metrics[0]), Direction::Desc)]
    };
    let cmp_dim = |i: usize, a: &(Key, ResultRow), b: &(Key, ResultRow)| -> Ordering {
        if Some(i) == time_pos {
            return a.0[i].cmp(&b.0[i]);
        }
        match (&a.1.dimensions[i], &b.1.dimensions[i]) {
            (Some(x), Some(y)) => x.cmp(y),
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (None, None) => Ordering::Equal,
        }
    };
    rows.sort_by(|a, b| {
        for (key, dir) in &order {
            let o = match key {
                OrderKey::Metric(m) => {
                    let i = q.metrics.iter().position(|x| x == m).unwrap_or(0);
                    a.1.metrics[i].units.cmp(&b.1.metrics[i].units)
                }
                OrderKey::Dimension(i) => cmp_dim(*i, a, b),
            };
            let o = if *dir == Direction::Desc {
                o.reverse()
            } else {
                o
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        (0..srcs.len())
            .map(|i| cmp_dim(i, a, b))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    let total_rows = rows.len();
    let rows = rows
        .into_iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|(_, r)| r)
        .collect();
    QueryResult {
        rows,
        metrics: q.metrics.clone(),
        total_rows,
        currency: c.currency,
        query: q.to_json(Some((range.from, range.to))),
    }
}

#[cfg(test)]
mod tests {
    use crate::context::Context;
    use crate::event::{Event, EventKind};
    use crate::money::{Currency, Money};
    use crate::query::Query;
    use crate::site::Site;
    use crate::MemoryStore;
    use chrono::DateTime;
    use std::cell::Cell;

    thread_local! {
        /// Threads a pass on this thread uses, and the sessions from which it splits,
        /// instead of the cores and `SPLIT_MIN_SESSIONS`.
        pub(super) static SPLIT: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
    }

    /// `f` with passes on this thread split into `threads` parts (or not split, at 1).
    fn split_into<T>(threads: usize, f: impl FnOnce() -> T) -> T {
        SPLIT.with(|s| s.set(Some((threads, 1))));
        let out = f();
        SPLIT.with(|s| s.set(None));
        out
    }

    /// Visitors with several sessions each, of every kind of event, over 10 days.
    fn traffic() -> Vec<Event> {
        let mut out = Vec::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let t0 = 1_772_323_200_000i64;
        let mut id = 1u128;
        for v in 0..400u32 {
            let mut t = t0 + next(86_400_000) as i64;
            for _ in 0..1 + next(6) {
                let source = ["Google", "Bing", ""][next(3) as usize];
                let country = ["DE", "US", "FR", "JP"][next(4) as usize];
                for i in 0..1 + next(5) {
                    let kind = match (i, next(10)) {
                        (0, _) | (_, 0..=4) => EventKind::Pageview,
                        (_, 5..=6) => EventKind::Engagement,
                        (_, 7..=8) => EventKind::Goal,
                        _ => EventKind::Purchase,
                    };
                    let mut e = Event {
                        id: uuid::Uuid::from_u128(id),
                        site: "a.com".into(),
                        kind,
                        timestamp: DateTime::from_timestamp_millis(t).expect("time"),
                        ..Event::default()
                    };
                    id += 1;
                    e.identity.visitor_id = format!("v{v}");
                    e.page.path = format!("/p/{}", next(12));
                    if !source.is_empty() {
                        e.acquisition.source = Some(source.into());
                    }
                    e.location.country = Some(country.into());
                    match kind {
                        EventKind::Goal => {
                            e.name = Some(["signup", "trial"][next(2) as usize].into())
                        }
                        EventKind::Purchase => {
                            e.commerce.revenue = Some(Money {
                                minor: 100 + next(5000) as i64,
                                currency: Currency::USD,
                            })
                        }
                        EventKind::Engagement => {
                            e.engagement.time_ms = Some(next(60_000));
                            e.engagement.scroll_depth = Some(next(101) as u8);
                        }
                        _ => {}
                    }
                    out.push(e);
                    t += 1_000 + next(400_000) as i64;
                }
                t += 1_800_001 + next(200_000_000) as i64;
            }
        }
        out
    }

    /// A pass split across threads by visitor gives the single pass's answer, for
    /// every family of metric, dimensions of both levels, filters and goal rates.
    #[test]
    fn a_pass_split_by_visitor_answers_as_one_pass() {
        let store = MemoryStore::new();
        store.append_sync(&traffic()).expect("append");
        let site = Site::new("a.com");
        let now = Context::at(DateTime::from_timestamp_millis(1_773_532_800_000).expect("now"));
        let all = r#""metrics":["visitors","visits","pageviews","events","bounce_rate","visit_duration","views_per_visit","conversions","conversion_rate","revenue","time_on_page","scroll_depth"]"#;
        let queries = [
            format!(r#"{{"site":"a.com","date_range":"all",{all}}}"#),
            format!(r#"{{"site":"a.com","date_range":["2026-03-02","2026-03-06"],{all},"dimensions":["page"],"limit":100}}"#),
            format!(r#"{{"site":"a.com","date_range":"all",{all},"dimensions":["source","country"],"limit":100}}"#),
            format!(r#"{{"site":"a.com","date_range":"all",{all},"dimensions":["time:day"],"filters":[["is","country",["DE","JP"]]]}}"#),
            format!(r#"{{"site":"a.com","date_range":"all",{all},"dimensions":["goal"],"filters":[["contains","page",["/p/1"]]]}}"#),
            r#"{"site":"a.com","date_range":"all","metrics":["visitors","conversion_rate"],"filters":[["is","goal",["signup"]]],"dimensions":["entry_page"],"limit":100}"#.to_owned(),
        ];
        for text in &queries {
            let q = Query::from_json(text).expect("query");
            let one = split_into(1, || store.query_sync(&site, &q, &now)).expect("one pass");
            for threads in [2, 3, 7] {
                let split =
                    split_into(threads, || store.query_sync(&site, &q, &now)).expect("split");
                assert_eq!(split.rows, one.rows, "{threads} threads: {text}");
                assert_eq!(split.total_rows, one.total_rows);
            }
            assert!(!one.rows.is_empty(), "{text}");
        }
    }

    /// Attribution split across threads by visitor credits exactly as one pass:
    /// every model, with and without dimensions, with a filter and goals.
    #[test]
    fn an_attribution_split_by_visitor_credits_as_one_pass() {
        let store = MemoryStore::new();
        store.append_sync(&traffic()).expect("append");
        let site = Site::new("a.com");
        let now = Context::at(DateTime::from_timestamp_millis(1_773_532_800_000).expect("now"));
        for model in [
            "first_touch",
            "last_touch",
            "last_non_direct",
            "linear",
            "time_decay",
            "position_based",
        ] {
            for (dims, filters) in [
                (r#"["source"]"#, "[]"),
                ("[]", "[]"),
                (r#"["source","country"]"#, "[]"),
                (r#"["source"]"#, r#"[["is","goal",["trial"]]]"#),
                (r#"["country"]"#, r#"[["is_not","country",["JP"]]]"#),
            ] {
                let text = format!(
                    r#"{{"site":"a.com","date_range":["2026-03-03","2026-03-09"],"metrics":["revenue","conversions"],"dimensions":{dims},"filters":{filters},"attribution":{{"model":"{model}","window_days":3}}}}"#
                );
                let q = Query::from_json(&text).expect("query");
                let one = split_into(1, || store.query_sync(&site, &q, &now)).expect("one pass");
                assert!(!one.rows.is_empty(), "{text}");
                for threads in [2, 3, 7] {
                    let split =
                        split_into(threads, || store.query_sync(&site, &q, &now)).expect("split");
                    assert_eq!(split, one, "{threads} threads: {text}");
                }
            }
        }
    }

    /// A funnel split across threads by visitor counts as one pass, breakdown too.
    #[test]
    fn a_funnel_split_by_visitor_counts_as_one_pass() {
        let store = MemoryStore::new();
        store.append_sync(&traffic()).expect("append");
        let site = Site::new("a.com");
        let now = Context::at(DateTime::from_timestamp_millis(1_773_532_800_000).expect("now"));
        for text in [
            r#"{"site":"a.com","date_range":"all","window":"2h","steps":[{"page":"/p/1"},{"page":"/p/*"},{"goal":"signup"}]}"#,
            r#"{"site":"a.com","date_range":["2026-03-02","2026-03-08"],"window":"3d","steps":[{"page":"/p/2"},{"goal":"trial"}],"breakdown":"source"}"#,
        ] {
            let f = crate::Funnel::from_json(text).expect("funnel");
            let one = split_into(1, || store.funnel_sync(&site, &f, &now)).expect("one pass");
            assert!(one.steps[0].visitors > 0, "{text}");
            for threads in [2, 5] {
                let split =
                    split_into(threads, || store.funnel_sync(&site, &f, &now)).expect("split");
                assert_eq!(split, one, "{threads} threads: {text}");
            }
        }
    }
}
