//! [`EventColumns`]: a site's activity events as plain columns in canonical order,
//! the compact input of engines that walk each visitor's events in time order.

use crate::event::{Event, EventKind};
use std::collections::HashMap;

/// A site's activity events (refunds left out) as columns, ordered by (visitor, time,
/// id). Strings are dictionary-encoded: id 0 of `paths` and `names` is "missing".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventColumns {
    /// Visitor number; equal numbers are one visitor, and rows of a visitor are contiguous.
    pub visitor: Vec<u32>,
    /// Time, ms since the epoch.
    pub ts: Vec<i64>,
    /// Kind.
    pub kind: Vec<EventKind>,
    /// Path id into `paths`.
    pub path: Vec<u32>,
    /// Goal or custom event name id into `names`.
    pub name: Vec<u32>,
    /// Path dictionary (`paths[0]` is the missing value).
    pub paths: Vec<String>,
    /// Name dictionary (`names[0]` is the missing value).
    pub names: Vec<String>,
}

fn intern<'a>(map: &mut HashMap<&'a str, u32>, dict: &mut Vec<String>, s: Option<&'a str>) -> u32 {
    let Some(s) = s else { return 0 };
    *map.entry(s).or_insert_with(|| {
        dict.push(s.to_owned());
        (dict.len() - 1) as u32
    })
}

impl EventColumns {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Columns of `events` (any order), bots left out unless `include_bots`.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a Event>,
        include_bots: bool,
    ) -> Self {
        let mut rows: Vec<&Event> = events
            .into_iter()
            .filter(|e| e.kind.is_activity() && (include_bots || !e.is_bot()))
            .collect();
        rows.sort_by(|a, b| {
            (&a.identity.visitor_id, a.timestamp, a.id).cmp(&(
                &b.identity.visitor_id,
                b.timestamp,
                b.id,
            ))
        });
        let mut c = EventColumns {
            paths: vec![String::new()],
            names: vec![String::new()],
            ..Self::default()
        };
        let (mut path_ids, mut name_ids) = (HashMap::new(), HashMap::new());
        let mut visitor = 0u32;
        for (i, e) in rows.iter().enumerate() {
            if i > 0 && rows[i - 1].identity.visitor_id != e.identity.visitor_id {
                visitor += 1;
            }
            c.visitor.push(visitor);
            c.ts.push(e.timestamp.timestamp_millis());
            c.kind.push(e.kind);
            c.path.push(intern(
                &mut path_ids,
                &mut c.paths,
                Some(e.page.path.as_str()),
            ));
            c.name
                .push(intern(&mut name_ids, &mut c.names, e.name.as_deref()));
        }
        c
    }

    /// Row ranges of each visitor, in order.
    pub fn visitor_runs(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let mut start = 0;
        std::iter::from_fn(move || {
            if start >= self.visitor.len() {
                return None;
            }
            let v = self.visitor[start];
            let len = self.visitor[start..].partition_point(|&x| x == v);
            let r = start..start + len;
            start += len;
            Some(r)
        })
    }
}
