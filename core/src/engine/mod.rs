//! The reference engines: every request kind of the contract computed over one
//! site's columnar [`SiteTable`] (events ordered by visitor and time, sessions
//! derived as their own columns) and its refund ledger. [`crate::MemoryStore`] keeps
//! its data in these; the storage traits' default methods load a window of a
//! backend's events into them. Pure computation: no I/O, no clock.

mod attribute;
mod exec;
mod funnel;
mod goals;
mod ids;
mod models;
mod narrow;
mod realtime;
mod snapshot;
mod table;

pub use attribute::{Credit, Touchpoints};
pub use models::{shares, Touch};

pub(crate) use attribute::lookback_ms;
pub(crate) use exec::execute;
pub(crate) use funnel::run as funnel;
pub(crate) use goals::run as goals;
pub(crate) use realtime::run as realtime;
pub(crate) use snapshot::{corrupt as snapshot_error, Dec, Enc};
pub(crate) use table::SiteTable;

use crate::event::Event;
use std::collections::HashSet;

/// Refunds of one site, in arrival order: ledger entries, not activity.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ledger {
    pub(crate) events: Vec<Event>,
    ids: HashSet<u128>,
}

/// One site's events as the engines read them.
#[derive(Debug, Default, Clone)]
pub(crate) struct SiteData {
    pub(crate) table: SiteTable,
    pub(crate) ledger: Ledger,
}

impl SiteData {
    pub(crate) fn new(timeout_ms: i64) -> Self {
        Self {
            table: SiteTable::new(timeout_ms),
            ledger: Ledger::default(),
        }
    }

    /// Whether an event with this id is held (the nil id never is).
    pub(crate) fn holds(&self, id: u128) -> bool {
        id != 0 && (self.ledger.ids.contains(&id) || self.table.holds(id))
    }

    /// Adds an event: activity to the table, refunds to the ledger. `false` when its
    /// id is held already (nothing is added).
    pub(crate) fn push(&mut self, e: &Event) -> bool {
        if e.kind.is_activity() {
            if self.ledger.ids.contains(&e.id.as_u128()) {
                return false;
            }
            return self.table.push(e);
        }
        let id = e.id.as_u128();
        if id != 0 && (self.table.holds(id) || !self.ledger.ids.insert(id)) {
            return false;
        }
        self.ledger.events.push(e.clone());
        true
    }

    /// Writes the site's table and ledger.
    pub(crate) fn write_snapshot(&self, e: &mut Enc<'_>) -> Result<(), crate::StoreError> {
        self.table.write_to(e)?;
        e.json(&self.ledger.events)
    }

    /// Reads what `write_snapshot` wrote: data ready for the engines.
    pub(crate) fn read_snapshot(d: &mut Dec<'_>) -> Result<Self, crate::StoreError> {
        let table = SiteTable::read_from(d)?;
        let events: Vec<Event> = d.json()?;
        let mut ids = HashSet::with_capacity(events.len());
        for e in &events {
            let id = e.id.as_u128();
            snapshot::check(
                id == 0 || (!table.holds(id) && ids.insert(id)),
                "an event id is held twice",
            )?;
        }
        Ok(Self {
            table,
            ledger: Ledger { events, ids },
        })
    }

    /// Sessions derived with `timeout_ms`, rows ordered: ready for the engines.
    pub(crate) fn prepare(&mut self, timeout_ms: i64) {
        self.table.set_timeout(timeout_ms);
        self.table.build();
    }

    /// First and last instants held (refunds included), ms.
    pub(crate) fn extent(&self) -> Option<(i64, i64)> {
        let ledger = self
            .ledger
            .events
            .iter()
            .map(|e| e.timestamp.timestamp_millis());
        let (lo, hi) = ledger.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        let (lo, hi) = match self.table.extent() {
            Some((a, b)) => (lo.min(a), hi.max(b)),
            None => (lo, hi),
        };
        (lo <= hi).then_some((lo, hi))
    }

    /// Events held.
    pub(crate) fn len(&self) -> usize {
        self.table.len() + self.ledger.events.len()
    }

    /// Removes the events of `visitor` (every event when `None`); returns how many.
    /// Removes the events before `ms` (Unix milliseconds); how many.
    pub(crate) fn erase_before(&mut self, ms: i64) -> u64 {
        let ledger = &mut self.ledger;
        let before = ledger.events.len();
        let ids = &mut ledger.ids;
        ledger.events.retain(|e| {
            let keep = e.timestamp.timestamp_millis() >= ms;
            if !keep {
                ids.remove(&e.id.as_u128());
            }
            keep
        });
        let from_ledger = (before - self.ledger.events.len()) as u64;
        from_ledger + self.table.retain_rows(|t, r| t.ts[r] >= ms)
    }

    pub(crate) fn erase(&mut self, visitor: Option<&str>) -> u64 {
        let ledger = &mut self.ledger;
        let before = ledger.events.len();
        match visitor {
            None => {
                ledger.events.clear();
                ledger.ids.clear();
            }
            Some(v) => {
                let ids = &mut ledger.ids;
                ledger.events.retain(|e| {
                    let keep = e.identity.visitor_id != v;
                    if !keep {
                        ids.remove(&e.id.as_u128());
                    }
                    keep
                });
            }
        }
        let from_ledger = (before - self.ledger.events.len()) as u64;
        let t = &mut self.table;
        let from_table = match visitor {
            None => t.retain_rows(|_, _| false),
            Some(v) => match t.visitors.lookup(v) {
                Some(id) => t.retain_rows(|t, r| t.visitor[r] != id),
                None => 0,
            },
        };
        from_ledger + from_table
    }
}
