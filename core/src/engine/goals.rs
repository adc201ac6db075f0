//! Goal conversions on a site's table.

use super::table::{Interner, SiteTable};
use crate::context::Context;
use crate::error::QueryError;
use crate::event::EventKind;
use crate::money::Money;
use crate::query::ResolvedRange;
use crate::requests::{GoalMatch, GoalResult, GoalsRequest, GoalsResult};
use crate::result::percent;

/// Counts each goal over the events of a built table in `range`: distinct visitors
/// who completed it, completions, the rate over the range's visitors, and the value.
pub(crate) fn run(
    t: &SiteTable,
    req: &GoalsRequest,
    range: &ResolvedRange,
    cx: &Context,
) -> Result<GoalsResult, QueryError> {
    const CHECK_EVERY: usize = 1 << 16;
    let n = req.goals.len();
    // One bit per goal and dictionary entry (goals beyond 64 use further words).
    let words = n.div_ceil(64).max(1);
    let dict = |dict: &Interner,
                want: &dyn Fn(&GoalMatch, &str) -> bool|
     -> Result<Vec<Vec<u64>>, QueryError> {
        let mut out = Vec::with_capacity(dict.space());
        for id in 0..dict.space() as u32 {
            if id as usize % 4096 == 0 {
                cx.check()?;
            }
            let mut m = vec![0u64; words];
            if let Some(s) = dict.get(id) {
                for (g, def) in req.goals.iter().enumerate() {
                    if want(&def.matcher, s) {
                        m[g / 64] |= 1 << (g % 64);
                    }
                }
            }
            out.push(m);
        }
        Ok(out)
    };
    let page = dict(&t.paths, &|m, p| m.matches(EventKind::Pageview, p))?;
    let goal = dict(&t.names, &|m, s| m.matches(EventKind::Goal, s))?;
    let custom = dict(&t.names, &|m, s| m.matches(EventKind::Custom, s))?;
    let empty = vec![0u64; words];
    let (start, end) = (range.start_ms(), range.end_ms());
    let (mut conversions, mut completions) = (vec![0u64; n], vec![0u64; n]);
    let mut visitors = 0u64;
    let mut seen = vec![0u64; words];
    let mut current: Option<u32> = None;
    let count_seen = |seen: &mut Vec<u64>, conversions: &mut Vec<u64>| {
        for (w, bits) in seen.iter_mut().enumerate() {
            let mut b = *bits;
            while b != 0 {
                conversions[w * 64 + b.trailing_zeros() as usize] += 1;
                b &= b - 1;
            }
            *bits = 0;
        }
    };
    for r in 0..t.len() {
        if r % CHECK_EVERY == 0 {
            cx.check()?;
        }
        let ts = t.ts[r];
        if ts < start || ts >= end || (!req.include_bots && t.is_bot(r)) {
            continue;
        }
        let v = t.visitor[r];
        if current != Some(v) {
            count_seen(&mut seen, &mut conversions);
            current = Some(v);
            visitors += 1;
        }
        let m = match t.kind[r] {
            EventKind::Pageview => &page[t.path.get(r) as usize],
            EventKind::Goal => &goal[t.name.get(r) as usize],
            EventKind::Custom => &custom[t.name.get(r) as usize],
            _ => &empty,
        };
        for (w, &bits) in m.iter().enumerate() {
            let mut b = bits;
            while b != 0 {
                completions[w * 64 + b.trailing_zeros() as usize] += 1;
                b &= b - 1;
            }
            seen[w] |= bits;
        }
    }
    count_seen(&mut seen, &mut conversions);
    Ok(GoalsResult {
        visitors,
        goals: req
            .goals
            .iter()
            .enumerate()
            .map(|(g, def)| GoalResult {
                name: def.name.clone(),
                conversions: conversions[g],
                completions: completions[g],
                conversion_rate: percent(conversions[g], visitors),
                value: def.value.map(|v| Money {
                    minor: v.minor.saturating_mul(completions[g] as i64),
                    currency: v.currency,
                }),
            })
            .collect(),
    })
}
