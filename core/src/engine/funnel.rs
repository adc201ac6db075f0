//! Funnels (contract section 5) on a site's table.

use super::exec::{by_visitor_parts, Ctx, Src, CHECK_EVERY};
use super::table::{Interner, SiteTable};
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
        Rows {
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

/// The step masks of rows without a branch on the kind: most rows match no step,
/// and a mispredicted branch per row cost more than reading both columns.
struct Rows<'a> {
    page: &'a [u32],
    /// Per name: goal steps in the low half, event steps in the high half.
    names: Vec<u64>,
    /// Per kind: the page mask's gate, the name mask's gate and its shift.
    by_kind: [(u32, u32, u32); EventKind::ALL.len()],
}

impl Rows<'_> {
    #[inline(always)]
    fn of(&self, t: &SiteTable, r: usize) -> u32 {
        let (page_gate, name_gate, shift) = self.by_kind[t.kind[r] as usize];
        (self.page[t.path[r] as usize] & page_gate)
            | ((self.names[t.name[r] as usize] >> shift) as u32 & name_gate)
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
        let mut flush = |ts: &mut Vec<i64>, mask: &mut Vec<u32>, groups: &mut Vec<u32>| {
            if mask.iter().any(|m| m & 1 == 1) {
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
        for r in rows {
            if r % (CHECK_EVERY * 8) == 0 {
                c.check()?;
            }
            let m = steps.of(t, r);
            if m == 0 {
                continue;
            }
            let time = t.ts[r];
            if time < c.start || time >= c.end || (!f.include_bots && t.is_bot(r)) {
                continue;
            }
            while t.sessions[si].rows().end <= r {
                si += 1;
            }
            let s = &t.sessions[si];
            let v = t.visitor[r];
            if visitor != Some(v) {
                flush(&mut ts, &mut mask, &mut groups);
                visitor = Some(v);
            }
            ts.push(time);
            mask.push(m);
            groups.push(group.map_or(0, |src| c.row_value(src, s.first as usize, s)));
        }
        flush(&mut ts, &mut mask, &mut groups);
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
