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

    fn of(&self, t: &SiteTable, r: usize) -> u32 {
        match t.kind[r] {
            EventKind::Pageview => self.page[t.path[r] as usize],
            EventKind::Goal => self.goal[t.name[r] as usize],
            EventKind::Custom => self.event[t.name[r] as usize],
            _ => 0,
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
        let mut visitor = None;
        for si in sessions {
            let s = &t.sessions[si];
            if si % CHECK_EVERY == 0 {
                c.check()?;
            }
            let (first_ts, last_ts) = t.span(s);
            if last_ts < c.start || first_ts >= c.end {
                continue;
            }
            let v = t.visitor[s.first as usize];
            if visitor != Some(v) {
                flush(&mut ts, &mut mask, &mut groups);
                visitor = Some(v);
            }
            let g = group.map_or(0, |src| c.row_value(src, s.first as usize, s));
            for r in s.rows() {
                // A row that matches no step never advances a path, and the window
                // ends at the first matching row past it: such rows are left out.
                let m = masks.of(t, r);
                if m == 0 {
                    continue;
                }
                let time = t.ts[r];
                if time < c.start || time >= c.end || (!f.include_bots && t.is_bot(r)) {
                    continue;
                }
                ts.push(time);
                mask.push(m);
                groups.push(g);
            }
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
