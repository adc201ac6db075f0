//! Realtime visitors on a site's table.

use super::exec::{Ctx, Src, CHECK_EVERY};
use super::table::{SiteTable, NULL};
use crate::context::Context;
use crate::error::QueryError;
use crate::event::EventKind;
use crate::query::Dimension;
use crate::requests::{RealtimeRequest, RealtimeResult};
use std::collections::HashMap;

/// Distinct visitors per value id, counted once per visitor (rows come grouped by visitor).
#[derive(Default)]
struct PerValue(HashMap<u32, (u64, u32)>);

impl PerValue {
    fn add(&mut self, value: u32, visitor: u32) {
        let e = self.0.entry(value).or_insert((0, u32::MAX));
        if e.1 != visitor {
            e.1 = visitor;
            e.0 += 1;
        }
    }

    /// The top `limit` values by visitors, then by value (missing last).
    fn top(
        self,
        limit: usize,
        render: impl Fn(u32) -> Option<String>,
    ) -> Vec<(Option<String>, u64)> {
        let mut rows: Vec<(Option<String>, u64)> = self
            .0
            .into_iter()
            .map(|(v, (n, _))| (render(v), n))
            .collect();
        rows.sort_by(|a, b| {
            b.1.cmp(&a.1).then_with(|| match (&a.0, &b.0) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
        });
        rows.truncate(limit);
        rows
    }
}

/// Visitors with an event at or after `since_ms`, the pages they viewed since, and
/// the sources of their visits (sessions must be exact back to the visits' starts).
pub(crate) fn run(
    t: &SiteTable,
    req: &RealtimeRequest,
    since_ms: i64,
    cx: &Context,
) -> Result<RealtimeResult, QueryError> {
    let c = Ctx::new(t, since_ms, i64::MAX, req.include_bots, cx);
    let source = Src::of(&Dimension::Source, t);
    let (mut visitors, mut last) = (0u64, None);
    let (mut pages, mut sources) = (PerValue::default(), PerValue::default());
    for (si, s) in t.sessions.iter().enumerate() {
        if si % CHECK_EVERY == 0 {
            c.check()?;
        }
        if t.span(s).1 < since_ms {
            continue;
        }
        for r in s.rows() {
            if t.ts[r] < since_ms || (!req.include_bots && t.is_bot(r)) {
                continue;
            }
            let v = t.visitor[r];
            if last != Some(v) {
                last = Some(v);
                visitors += 1;
            }
            if t.kind[r] == EventKind::Pageview {
                pages.add(t.path.get(r), v);
            }
            sources.add(c.row_value(source, r, s), v);
        }
    }
    Ok(RealtimeResult {
        visitors,
        pages: pages
            .top(req.limit, |id| t.paths.get(id).map(str::to_owned))
            .into_iter()
            .map(|(p, n)| (p.unwrap_or_default(), n))
            .collect(),
        sources: sources.top(req.limit, |id| {
            (id != NULL).then(|| c.render(source, id)).flatten()
        }),
    })
}
