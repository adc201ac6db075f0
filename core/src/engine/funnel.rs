//! Funnels (contract section 5) on a site's table.

use super::exec::{by_visitor_parts, Ctx, Src, CHECK_EVERY};
use super::narrow::Run;
use super::table::{Interner, SiteTable, NULL};
use crate::context::Context;
use crate::error::QueryError;
use crate::event::EventKind;
use crate::query::ResolvedRange;
use crate::requests::{glob, Funnel, FunnelResult, StepMatch, StepResult};
use crate::result::percent;
use std::collections::HashMap;

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

/// Each dictionary entry's bit set of the steps it matches.
struct Masks {
    page: Vec<u32>,
    goal: Vec<u32>,
    event: Vec<u32>,
}

impl Masks {
    fn new(f: &Funnel, t: &SiteTable, c: &Ctx<'_>) -> Result<Self, QueryError> {
        let dict = |dict: &Interner,
                    want: &dyn Fn(&StepMatch, &str) -> bool|
         -> Result<Vec<u32>, QueryError> {
            let mut out = Vec::with_capacity(dict.space());
            for id in 0..dict.space() as u32 {
                if id as usize % CHECK_EVERY == 0 {
                    c.check()?;
                }
                out.push(match dict.get(id) {
                    None => 0,
                    Some(s) => f
                        .steps
                        .iter()
                        .enumerate()
                        .filter(|(_, st)| want(st, s))
                        .fold(0u32, |m, (i, _)| m | 1 << i),
                });
            }
            Ok(out)
        };
        Ok(Self {
            page: dict(
                &t.paths,
                &|st, p| matches!(st, StepMatch::Page(g) if glob(g, p)),
            )?,
            goal: dict(
                &t.names,
                &|st, n| matches!(st, StepMatch::Goal(g) if g == n),
            )?,
            event: dict(
                &t.names,
                &|st, n| matches!(st, StepMatch::Event(g) if g == n),
            )?,
        })
    }

    /// The tables as [`Rows::of`] reads them.
    fn rows(&self) -> Rows<'_> {
        let mut by_kind = [(0u32, 0u32, 0u32); EventKind::ALL.len()];
        for kind in EventKind::ALL {
            by_kind[kind as usize] = match kind {
                EventKind::Pageview => (u32::MAX, 0, 0),
                EventKind::Goal => (0, u32::MAX, 0),
                EventKind::Custom => (0, u32::MAX, 32),
                _ => (0, 0, 0),
            };
        }
        // The entries that match some step, when they are few.
        let few = || -> Option<Few> {
            let mut few = Few {
                pages: [(NULL, 0); Few::N],
                names: [(NULL, 0, 0); Few::N],
            };
            let pages = self.page.iter().enumerate().filter(|(_, &m)| m != 0);
            if pages.clone().count() > Few::N {
                return None;
            }
            for (slot, (id, &m)) in few.pages.iter_mut().zip(pages) {
                *slot = (id as u32, m);
            }
            let goals = self
                .goal
                .iter()
                .enumerate()
                .map(|(id, &m)| (id, EventKind::Goal, m));
            let events = self
                .event
                .iter()
                .enumerate()
                .map(|(id, &m)| (id, EventKind::Custom, m));
            let names = goals.chain(events).filter(|(_, _, m)| *m != 0);
            if names.clone().count() > Few::N {
                return None;
            }
            for (slot, (id, kind, m)) in few.names.iter_mut().zip(names) {
                *slot = (id as u32, kind as u8, m);
            }
            Some(few)
        };
        Rows {
            few: few(),
            page: &self.page,
            names: self
                .goal
                .iter()
                .zip(&self.event)
                .map(|(&g, &e)| u64::from(g) | u64::from(e) << 32)
                .collect(),
            by_kind,
        }
    }
}

/// At most [`Few::N`] paths and names that match steps, with their masks (the
/// rest of the slots hold mask 0).
#[derive(Debug, Clone, Copy)]
struct Few {
    /// (path id, mask), for pageviews.
    pages: [(u32, u32); Few::N],
    /// (name id, kind, mask).
    names: [(u32, u8, u32); Few::N],
}

impl Few {
    const N: usize = 4;
}

/// The step masks of rows without a branch on the kind: most rows match no step,
/// and a mispredicted branch per row cost more than reading both columns.
struct Rows<'a> {
    /// The matching entries when few: rows are then tested by comparing ids, a
    /// loop without lookups that the compiler turns into vector compares.
    few: Option<Few>,
    page: &'a [u32],
    /// Per name: goal steps in the low half, event steps in the high half.
    names: Vec<u64>,
    /// Per kind: the page mask's gate, the name mask's gate and its shift.
    by_kind: [(u32, u32, u32); EventKind::ALL.len()],
}

impl Rows<'_> {
    /// The step mask of a row of `kind`, `path` and `name`.
    #[inline(always)]
    fn of(&self, kind: EventKind, path: u32, name: u32) -> u32 {
        let (page_gate, name_gate, shift) = self.by_kind[kind as usize];
        (self.page[path as usize] & page_gate)
            | ((self.names[name as usize] >> shift) as u32 & name_gate)
    }

    /// The masks of rows `rows` (at most 64) into `out`, and the bit set of those
    /// that match some step: the columns are read in one branch-free sweep (times
    /// are not: they are read for the matching rows alone).
    #[inline(always)]
    fn block(&self, t: &SiteTable, rows: std::ops::Range<usize>, out: &mut [u32; 64]) -> u64 {
        let len = rows.len();
        let kinds = &t.kind[rows.clone()];
        match (t.path.run(rows.clone()), t.name.run(rows)) {
            (Run::U16(p), Run::U16(n)) => self.masks(kinds, p, n, out),
            (Run::U16(p), Run::U32(n)) => self.masks(kinds, p, n, out),
            (Run::U32(p), Run::U16(n)) => self.masks(kinds, p, n, out),
            (Run::U32(p), Run::U32(n)) => self.masks(kinds, p, n, out),
        }
        out[..len]
            .iter()
            .enumerate()
            .fold(0u64, |bits, (i, &m)| bits | u64::from(m != 0) << i)
    }
}

impl Rows<'_> {
    /// The masks of rows of `kinds`, `paths` and `names` into `out`, in the
    /// columns' own widths.
    #[inline(always)]
    fn masks<P: Copy + Into<u32>, N: Copy + Into<u32>>(
        &self,
        kinds: &[EventKind],
        paths: &[P],
        names: &[N],
        out: &mut [u32; 64],
    ) {
        let rows = kinds.iter().zip(paths).zip(names);
        match &self.few {
            Some(few) => {
                let pageview = EventKind::Pageview as u8;
                for (o, ((&k, &p), &n)) in out.iter_mut().zip(rows) {
                    let (k, p, n) = (k as u8, p.into(), n.into());
                    let mut page = 0;
                    for &(id, m) in &few.pages {
                        page |= if p == id { m } else { 0 };
                    }
                    let mut m = if k == pageview { page } else { 0 };
                    for &(id, kind, mm) in &few.names {
                        m |= if n == id && k == kind { mm } else { 0 };
                    }
                    *o = m;
                }
            }
            None => {
                for (o, ((&k, &p), &n)) in out.iter_mut().zip(rows) {
                    *o = self.of(k, p.into(), n.into());
                }
            }
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

/// Runs `f` over the events of a built table in `range`; with a breakdown, each
/// visitor counts under the value of the session where their best path begins
/// (sessions must be exact for the range).
pub(crate) fn run(
    t: &SiteTable,
    f: &Funnel,
    range: &ResolvedRange,
    cx: &Context,
) -> Result<FunnelResult, QueryError> {
    let c = Ctx::new(t, range.start_ms(), range.end_ms(), f.include_bots, cx);
    let masks = Masks::new(f, t, &c)?;
    let steps = masks.rows();
    let group = f.breakdown.as_ref().map(|d| Src::of(d, t));
    let n = f.steps.len();
    // Each part of the visitors counts alone; the parts' counts add up.
    let parts = by_visitor_parts(&c, |c, sessions| {
        let mut counts = vec![0u64; n];
        let mut by_group: HashMap<u32, Vec<u64>> = HashMap::new();
        let (mut ts, mut mask, mut groups) = (Vec::new(), Vec::new(), Vec::new());
        let mut at: Vec<u32> = Vec::new();
        // With the range holding every row, a row's time is read only when its
        // visitor reached the first step (`at` holds the rows, `ts` their times).
        let whole = t
            .bounds()
            .is_some_and(|(lo, hi)| c.start <= lo && hi < c.end);
        let mut flush =
            |ts: &mut Vec<i64>, at: &mut Vec<u32>, mask: &mut Vec<u32>, groups: &mut Vec<u32>| {
                if mask.iter().any(|m| m & 1 == 1) {
                    if whole {
                        ts.clear();
                        ts.extend(at.iter().map(|&r| t.ts[r as usize]));
                    }
                    let (k, first) = reach(ts, mask, n, f.window_ms);
                    for x in counts.iter_mut().take(k) {
                        *x += 1;
                    }
                    if group.is_some() && k > 0 {
                        let g = by_group.entry(groups[first]).or_insert_with(|| vec![0; n]);
                        for x in g.iter_mut().take(k) {
                            *x += 1;
                        }
                    }
                }
                ts.clear();
                at.clear();
                mask.clear();
                groups.clear();
            };
        // The part's rows in one scan (sessions are runs of rows in order): a row
        // that matches no step never advances a path, and the window ends at the
        // first matching row past it, so such rows are left out; the session of a
        // matching row is found by walking forward.
        let mut visitor = None;
        let rows = match (sessions.clone().next(), sessions.clone().next_back()) {
            (Some(a), Some(b)) => t.sessions[a].first as usize..t.sessions[b].rows().end,
            _ => 0..0,
        };
        let mut si = sessions.start;
        let mut ordinal = 0u32;
        let mut masks = [0u32; 64];
        let mut times = [0i64; 64];
        let mut from = rows.start;
        while from < rows.end {
            if (from - rows.start) % (CHECK_EVERY * 8) < 64 {
                c.check()?;
            }
            let to = (from + 64).min(rows.end);
            // Rows that match are rare and scattered: their masks come from one sweep
            // of the block, then only they are visited.
            let found = steps.block(t, from..to, &mut masks);
            // The matching rows' times first, in a loop of independent reads: their
            // cache misses overlap instead of each waiting behind the last.
            let mut bits = if whole { 0 } else { found };
            while bits != 0 {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                times[i] = t.ts[from + i];
            }
            let mut bits = found;
            while bits != 0 {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let r = from + i;
                let time = times[i];
                if !whole && (time < c.start || time >= c.end) {
                    continue;
                }
                while t.sessions[si].rows().end <= r {
                    si += 1;
                    ordinal = ordinal.wrapping_add(u32::from(t.sessions[si].starts_visitor()));
                }
                let s = &t.sessions[si];
                if !f.include_bots && s.has_bot_rows() && t.is_bot(r) {
                    continue;
                }
                // The visitor by the sessions' own flags (a part starts with a
                // visitor's first session), not by the visitor column.
                let v = ordinal;
                if visitor != Some(v) {
                    flush(&mut ts, &mut at, &mut mask, &mut groups);
                    visitor = Some(v);
                }
                if whole {
                    at.push(r as u32);
                } else {
                    ts.push(time);
                }
                mask.push(masks[i]);
                groups.push(group.map_or(0, |src| c.row_value(src, s.first as usize, s)));
            }
            from = to;
        }
        flush(&mut ts, &mut at, &mut mask, &mut groups);
        Ok((counts, by_group))
    })?;
    let mut counts = vec![0u64; n];
    let mut by_group: HashMap<u32, Vec<u64>> = HashMap::new();
    for (part, groups) in parts {
        for (x, y) in counts.iter_mut().zip(part) {
            *x += y;
        }
        for (id, g) in groups {
            let into = by_group.entry(id).or_insert_with(|| vec![0; n]);
            for (x, y) in into.iter_mut().zip(g) {
                *x += y;
            }
        }
    }
    let breakdown = group.map(|src| {
        let mut rows: Vec<(Option<String>, Vec<StepResult>)> = by_group
            .into_iter()
            .filter(|(_, g)| g[0] > 0)
            .map(|(id, g)| (c.render(src, id), step_results(f, &g)))
            .collect();
        rows.sort_by(|a, b| {
            b.1[0]
                .visitors
                .cmp(&a.1[0].visitors)
                .then_with(|| a.0.cmp(&b.0))
        });
        rows
    });
    Ok(FunnelResult {
        steps: step_results(f, &counts),
        breakdown,
    })
}
