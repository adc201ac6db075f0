//! Sessions, exactly as the contract defines them: a visitor's run of events of any
//! type with no gap over the timeout (a gap of exactly the timeout continues it).
//!
//! Two paths that agree: [`sessionize`] (batch, any input order) and the streaming
//! [`Sessionizer`] (one [`VisitorSessions`] per visitor), which also takes hits out
//! of order and reports the sessions it had to rename when a late hit moved a start
//! or bridged two.

use crate::event::{Event, EventKind};
use crate::hash::FastBuild;
use smallvec::SmallVec;
use std::collections::HashMap;

/// The stable id of a session: FNV-1a 64 over (site, visitor, start in ms).
pub fn session_id(site: &str, visitor: &str, start_ms: i64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(site.as_bytes());
    feed(&[0xff]);
    feed(visitor.as_bytes());
    feed(&[0xff]);
    feed(&start_ms.to_le_bytes());
    h
}

/// One session as the definition gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// Site.
    pub site: String,
    /// Visitor.
    pub visitor: String,
    /// [`session_id`] of (site, visitor, start).
    pub session_id: u64,
    /// 1 for the visitor's first session.
    pub number: u32,
    /// First event's time, ms since the epoch.
    pub start_ms: i64,
    /// Last event's time, ms since the epoch.
    pub end_ms: i64,
    /// Events of any type.
    pub events: u32,
    /// Pageview events.
    pub pageviews: u32,
    /// Exactly one pageview and no goal, purchase or custom event.
    pub is_bounce: bool,
    /// Path of the first event.
    pub entry_page: String,
    /// Path of the last pageview (`None` without pageviews).
    pub exit_page: Option<String>,
}

impl SessionSummary {
    /// Last event − first event, in seconds (not rounded).
    pub fn duration_secs(&self) -> f64 {
        (self.end_ms - self.start_ms) as f64 / 1000.0
    }
}

/// The canonical order of events: by visitor, then time, then event id.
fn canonical_order(events: &[Event]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&events[a], &events[b]);
        (
            x.site.as_str(),
            x.identity.visitor_id.as_str(),
            x.timestamp,
            x.id,
        )
            .cmp(&(
                y.site.as_str(),
                y.identity.visitor_id.as_str(),
                y.timestamp,
                y.id,
            ))
    });
    order
}

/// Batch sessionization of events in any order: sets every event's
/// `identity.session_id` and `identity.session_number`, and returns the sessions
/// ordered by (site, visitor, start). `timeout_ms` is the site's session timeout.
/// Refunds belong to no session and are left untouched.
pub fn sessionize(events: &mut [Event], timeout_ms: i64) -> Vec<SessionSummary> {
    let mut order = canonical_order(events);
    order.retain(|&i| events[i].kind.is_activity());
    let mut out: Vec<SessionSummary> = Vec::new();
    let mut interaction: Vec<bool> = Vec::new();
    let mut seg: Vec<usize> = Vec::with_capacity(order.len());
    let mut prev: Option<&Event> = None;
    for &i in &order {
        let e = &events[i];
        let ts = e.timestamp.timestamp_millis();
        let same_visitor = prev
            .is_some_and(|p| p.site == e.site && p.identity.visitor_id == e.identity.visitor_id);
        let continues =
            same_visitor && prev.is_some_and(|p| ts - p.timestamp.timestamp_millis() <= timeout_ms);
        if !continues {
            let number = if same_visitor {
                out.last().map_or(1, |s| s.number + 1)
            } else {
                1
            };
            out.push(SessionSummary {
                site: e.site.clone(),
                visitor: e.identity.visitor_id.clone(),
                session_id: session_id(&e.site, &e.identity.visitor_id, ts),
                number,
                start_ms: ts,
                end_ms: ts,
                events: 0,
                pageviews: 0,
                is_bounce: false,
                entry_page: e.page.path.clone(),
                exit_page: None,
            });
            interaction.push(false);
        }
        let si = out.len() - 1;
        let s = &mut out[si];
        s.end_ms = ts;
        s.events += 1;
        if e.kind == EventKind::Pageview {
            s.pageviews += 1;
            s.exit_page = Some(e.page.path.clone());
        }
        interaction[si] |= e.kind.is_interaction();
        seg.push(si);
        prev = Some(e);
    }
    for (&i, &si) in order.iter().zip(&seg) {
        events[i].identity.session_id = Some(out[si].session_id);
        events[i].identity.session_number = Some(out[si].number);
    }
    for (s, inter) in out.iter_mut().zip(interaction) {
        s.is_bounce = s.pageviews == 1 && !inter;
    }
    out
}

/// One session span that the streaming path tracks for a visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionSpan {
    /// First event, ms.
    pub start_ms: i64,
    /// Last event, ms.
    pub end_ms: i64,
    /// Events seen.
    pub events: u32,
}

/// What the streaming path keeps per (site, visitor): the state a shared backend
/// (Redis) stores per visitor, and updates with [`VisitorSessions::place`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VisitorSessions {
    /// Open spans, ordered by start, with gaps over the timeout between them. The
    /// first is held inline: most visitors have one open session, and placing an
    /// event then reads no memory but the visitor's entry (a separate allocation
    /// was a cache miss an event, and its first allocation 1.5% of an import).
    pub spans: SmallVec<[SessionSpan; 1]>,
    /// Sessions of this visitor already closed and dropped from `spans`.
    pub closed: u32,
    /// When no event can join the last span any more (its end plus the timeout),
    /// ms: the state may be forgotten after it.
    #[serde(default)]
    pub expires_ms: i64,
}

/// Where [`VisitorSessions::place`] put an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Start of the event's session, ms.
    pub start_ms: i64,
    /// Its number for the visitor (final once no earlier events can arrive).
    pub number: u32,
    /// Session starts that moved, as (old start, new start): a late event moved a
    /// start earlier or bridged two sessions.
    pub moved: Vec<(i64, i64)>,
}

impl VisitorSessions {
    /// Whether some span is still open at `now_ms` (its end within `timeout_ms`).
    pub fn is_open_at(&self, now_ms: i64, timeout_ms: i64) -> bool {
        self.spans
            .last()
            .is_some_and(|s| now_ms - s.end_ms <= timeout_ms && now_ms >= s.start_ms - timeout_ms)
    }

    /// Places an event at `ts_ms` in its session (in any arrival order), merging
    /// sessions it bridges.
    pub fn place(&mut self, ts_ms: i64, timeout_ms: i64) -> Placement {
        let (start_ms, number, moved) = place(self, ts_ms, timeout_ms);
        if let Some(last) = self.spans.last() {
            self.expires_ms = self.expires_ms.max(last.end_ms.saturating_add(timeout_ms));
        }
        Placement {
            start_ms,
            number,
            moved,
        }
    }

    /// Closes spans that ended before `closed_before_ms`; returns them with numbers.
    fn close_before(&mut self, closed_before_ms: i64) -> Vec<(SessionSpan, u32)> {
        let n = self
            .spans
            .iter()
            .take_while(|s| s.end_ms < closed_before_ms)
            .count();
        let first = self.closed + 1;
        self.closed += n as u32;
        self.spans
            .drain(..n)
            .enumerate()
            .map(|(i, s)| (s, first + i as u32))
            .collect()
    }
}

/// A session id that a late event changed: every event stored under `from` now
/// belongs to `to` (its start moved earlier, or it merged into an earlier session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRename {
    /// Site.
    pub site: String,
    /// Visitor.
    pub visitor: String,
    /// The old id.
    pub from: u64,
    /// The new id.
    pub to: u64,
}

/// What the streaming path says about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The visitor (the chosen one, for cookieless candidates).
    pub visitor_id: String,
    /// The event's session.
    pub session_id: u64,
    /// Its start, ms.
    pub session_start_ms: i64,
    /// Its number for the visitor (final once no earlier events can arrive).
    pub session_number: u32,
    /// Sessions this event renamed (empty for in-order events).
    pub renames: Vec<SessionRename>,
}

impl Observation {
    /// The observation of `placement` for (site, visitor).
    pub fn new(site: &str, visitor: String, placement: Placement) -> Self {
        let renames = placement
            .moved
            .into_iter()
            .map(|(from, to)| SessionRename {
                site: site.to_owned(),
                visitor: visitor.clone(),
                from: session_id(site, &visitor, from),
                to: session_id(site, &visitor, to),
            })
            .collect();
        Self {
            session_id: session_id(site, &visitor, placement.start_ms),
            session_start_ms: placement.start_ms,
            session_number: placement.number,
            renames,
            visitor_id: visitor,
        }
    }
}

/// The streaming sessionizer: every visitor's [`VisitorSessions`] in a map. The
/// engine of [`crate::MemorySessionState`]; usable on its own for a single-threaded
/// import.
#[derive(Debug, Default, Clone)]
pub struct Sessionizer {
    sites: HashMap<String, HashMap<VisitorKey, VisitorSessions, FastBuild>, FastBuild>,
    expected_visitors: usize,
}

/// A visitor id as a key of the state: its bytes, held in the entry when they fit
/// (a cookieless id is 16 hex digits): comparing a key then reads no other memory,
/// where a `String` key's bytes were a cache miss an event. Looked up by
/// `visitor.as_bytes()` (`[u8]` hashes and compares as the key does).
type VisitorKey = SmallVec<[u8; 24]>;

/// A key's visitor id (keys are made from `&str`, so the bytes are UTF-8).
fn visitor_of(key: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(key)
}

impl Sessionizer {
    /// An empty sessionizer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty sessionizer whose map for each site starts with room for `n`
    /// visitors: a bulk import that knows roughly how many lines it has is spared
    /// growing (and rehashing) a map of hundreds of thousands of visitors step by step.
    pub fn with_expected_visitors(n: usize) -> Self {
        Self {
            expected_visitors: n,
            ..Self::default()
        }
    }

    /// The visitor's state, if tracked.
    pub fn get(&self, site: &str, visitor: &str) -> Option<&VisitorSessions> {
        self.sites.get(site)?.get(visitor.as_bytes())
    }

    /// Whether `visitor` has a session open at `now_ms` (for ids crossing midnight).
    pub fn has_open_session(
        &self,
        site: &str,
        visitor: &str,
        now_ms: i64,
        timeout_ms: i64,
    ) -> bool {
        self.get(site, visitor)
            .is_some_and(|s| s.is_open_at(now_ms, timeout_ms))
    }

    /// Places one event at `ts_ms` for (site, visitor) in its session.
    pub fn observe(
        &mut self,
        site: &str,
        visitor: &str,
        ts_ms: i64,
        timeout_ms: i64,
    ) -> Observation {
        self.observe_unless_stale(site, visitor, ts_ms, timeout_ms, i64::MAX)
    }

    /// [`Sessionizer::observe`], forgetting the visitor's state first when it
    /// expired more than `grace_ms` before `ts_ms` (one lookup for both).
    pub(crate) fn observe_unless_stale(
        &mut self,
        site: &str,
        visitor: &str,
        ts_ms: i64,
        timeout_ms: i64,
        grace_ms: i64,
    ) -> Observation {
        let expected = self.expected_visitors;
        let visitors = match self.sites.get_mut(site) {
            Some(v) => v,
            None => self.sites.entry(site.to_owned()).or_insert_with(|| {
                HashMap::with_capacity_and_hasher(expected, FastBuild::default())
            }),
        };
        let state = match visitors.get_mut(visitor.as_bytes()) {
            Some(state) => {
                if state.expires_ms.saturating_add(grace_ms) < ts_ms {
                    *state = VisitorSessions::default();
                }
                state
            }
            None => visitors
                .entry(VisitorKey::from_slice(visitor.as_bytes()))
                .or_default(),
        };
        Observation::new(site, visitor.to_owned(), state.place(ts_ms, timeout_ms))
    }

    /// Closes spans that ended before `closed_before_ms` (no event can join them any
    /// more) and forgets visitors with nothing open. Returns the closed sessions.
    pub fn evict_idle(&mut self, closed_before_ms: i64) -> Vec<SessionSummaryLite> {
        let mut out = Vec::new();
        for (site, visitors) in &mut self.sites {
            visitors.retain(|visitor, state| {
                for (s, number) in state.close_before(closed_before_ms) {
                    out.push(lite(site, &visitor_of(visitor), &s, number));
                }
                !state.spans.is_empty()
            });
        }
        self.sites.retain(|_, v| !v.is_empty());
        out
    }

    /// Forgets one visitor's state.
    pub fn forget(&mut self, site: &str, visitor: &str) {
        if let Some(v) = self.sites.get_mut(site) {
            v.remove(visitor.as_bytes());
            if v.is_empty() {
                self.sites.remove(site);
            }
        }
    }

    /// Forgets visitors whose state expired before `now_ms`; returns how many.
    pub fn evict_expired(&mut self, now_ms: i64) -> usize {
        let before = self.len();
        for visitors in self.sites.values_mut() {
            visitors.retain(|_, state| state.expires_ms >= now_ms);
        }
        self.sites.retain(|_, v| !v.is_empty());
        before - self.len()
    }

    /// The expiry of every visitor tracked (for eviction by capacity).
    pub fn expiries(&self) -> impl Iterator<Item = i64> + '_ {
        self.sites
            .values()
            .flat_map(|v| v.values().map(|s| s.expires_ms))
    }

    /// Every session still tracked, with its final number, ordered by (site, visitor, start).
    pub fn flush(&mut self) -> Vec<SessionSummaryLite> {
        let mut out = Vec::new();
        for (site, visitors) in self.sites.drain() {
            for (visitor, state) in visitors {
                for (i, s) in state.spans.iter().enumerate() {
                    out.push(lite(
                        &site,
                        &visitor_of(&visitor),
                        s,
                        state.closed + 1 + i as u32,
                    ));
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.site, &a.visitor, a.start_ms).cmp(&(&b.site, &b.visitor, b.start_ms))
        });
        out
    }

    /// Number of visitors tracked.
    pub fn len(&self) -> usize {
        self.sites.values().map(HashMap::len).sum()
    }

    /// Whether no visitor is tracked.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }
}

/// A session as the streaming path knows it (no page facts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummaryLite {
    /// Site.
    pub site: String,
    /// Visitor.
    pub visitor: String,
    /// Its id.
    pub session_id: u64,
    /// Its number for the visitor.
    pub number: u32,
    /// First event, ms.
    pub start_ms: i64,
    /// Last event, ms.
    pub end_ms: i64,
    /// Events.
    pub events: u32,
}

fn lite(site: &str, visitor: &str, s: &SessionSpan, number: u32) -> SessionSummaryLite {
    SessionSummaryLite {
        site: site.to_owned(),
        visitor: visitor.to_owned(),
        session_id: session_id(site, visitor, s.start_ms),
        number,
        start_ms: s.start_ms,
        end_ms: s.end_ms,
        events: s.events,
    }
}

/// Inserts `ts` into the visitor's spans; returns (start of its span, its number,
/// renamed starts as (old start, new start)).
fn place(state: &mut VisitorSessions, ts: i64, timeout: i64) -> (i64, u32, Vec<(i64, i64)>) {
    let spans = &mut state.spans;
    // Fast path: at or after the last span's end.
    if let Some(last) = spans.last_mut() {
        if ts >= last.end_ms {
            let number = state.closed + spans.len() as u32;
            let last = spans.last_mut().expect("checked above");
            if ts - last.end_ms <= timeout {
                last.end_ms = ts;
                last.events += 1;
                return (last.start_ms, number, Vec::new());
            }
            spans.push(SessionSpan {
                start_ms: ts,
                end_ms: ts,
                events: 1,
            });
            return (ts, number + 1, Vec::new());
        }
    }
    let i = spans.partition_point(|s| s.start_ms <= ts);
    let joins_prev = i > 0 && ts - spans[i - 1].end_ms <= timeout;
    let joins_next = i < spans.len() && spans[i].start_ms - ts <= timeout;
    let mut renames = Vec::new();
    let idx = match (joins_prev, joins_next) {
        (true, true) => {
            let next = spans.remove(i);
            let prev = &mut spans[i - 1];
            prev.end_ms = prev.end_ms.max(next.end_ms);
            prev.events += next.events + 1;
            renames.push((next.start_ms, prev.start_ms));
            i - 1
        }
        (true, false) => {
            let prev = &mut spans[i - 1];
            prev.end_ms = prev.end_ms.max(ts);
            prev.events += 1;
            i - 1
        }
        (false, true) => {
            let next = &mut spans[i];
            renames.push((next.start_ms, ts));
            next.start_ms = ts;
            next.events += 1;
            i
        }
        (false, false) => {
            spans.insert(
                i,
                SessionSpan {
                    start_ms: ts,
                    end_ms: ts,
                    events: 1,
                },
            );
            i
        }
    };
    (spans[idx].start_ms, state.closed + idx as u32 + 1, renames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A visitor's state is written as it was when its spans were a `Vec` (a
    /// shared state backend stores this form), whether its spans are inline or not.
    #[test]
    fn visitor_state_keeps_its_stored_form() {
        for n in 0..4u32 {
            let spans: Vec<SessionSpan> = (0..n)
                .map(|i| SessionSpan {
                    start_ms: i64::from(i) * 10_000_000,
                    end_ms: i64::from(i) * 10_000_000 + 5,
                    events: i + 1,
                })
                .collect();
            let state = VisitorSessions {
                spans: spans.iter().copied().collect(),
                closed: 2,
                expires_ms: 7,
            };
            let json = serde_json::to_value(&state).unwrap();
            let want = serde_json::json!({
                "spans": serde_json::to_value(&spans).unwrap(),
                "closed": 2,
                "expires_ms": 7,
            });
            assert_eq!(json, want);
            let back: VisitorSessions = serde_json::from_value(json).unwrap();
            assert_eq!(back, state);
        }
    }

    #[test]
    fn expected_visitors_size_each_sites_map_up_front() {
        let mut c = Sessionizer::with_expected_visitors(10_000);
        c.observe("a.com", "v", 0, T);
        c.observe("b.com", "v", 0, T);
        assert!(c.sites.values().all(|m| m.capacity() >= 10_000));
        assert_eq!(c.get("a.com", "v").map(|s| s.spans.len()), Some(1));
        assert_eq!(c.len(), 2);
        assert!(Sessionizer::new().sites.is_empty());
    }

    #[test]
    fn expired_visitors_are_forgotten() {
        let mut sz = Sessionizer::new();
        sz.observe("s", "old", 0, T);
        sz.observe("s", "new", 2 * T, T);
        assert_eq!(sz.get("s", "old").map(|s| s.expires_ms), Some(T));
        assert_eq!(sz.evict_expired(T), 0, "expiry is inclusive");
        assert_eq!(sz.evict_expired(T + 1), 1);
        assert!(sz.get("s", "old").is_none());
        assert_eq!(sz.len(), 1);
    }

    const T: i64 = 30 * 60 * 1000;

    fn ev(visitor: &str, ts_ms: i64, kind: EventKind, path: &str, n: u128) -> Event {
        let mut e = Event {
            id: uuid::Uuid::from_u128(n),
            site: "a.com".into(),
            kind,
            timestamp: Utc.timestamp_millis_opt(ts_ms).unwrap(),
            ..Event::default()
        };
        e.identity.visitor_id = visitor.into();
        e.page.path = path.into();
        e
    }

    #[test]
    fn gap_of_exactly_the_timeout_continues_and_one_more_second_splits() {
        let base = 1_700_000_000_000;
        let mut evs = vec![
            ev("v", base, EventKind::Pageview, "/a", 1),
            ev("v", base + T, EventKind::Pageview, "/b", 2),
            ev("v", base + 2 * T + 1000, EventKind::Pageview, "/c", 3),
        ];
        let s = sessionize(&mut evs, T);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].events, s[0].pageviews, s[0].number), (2, 2, 1));
        assert_eq!(s[0].exit_page.as_deref(), Some("/b"));
        assert_eq!(s[0].duration_secs(), 1800.0);
        assert_eq!((s[1].number, s[1].is_bounce), (2, true));
        assert_eq!(evs[2].identity.session_number, Some(2));
    }

    #[test]
    fn bounce_ignores_engagement_but_not_goals() {
        let b = 1_700_000_000_000;
        let mut evs = vec![
            ev("e", b, EventKind::Pageview, "/", 1),
            ev("e", b + 5000, EventKind::Engagement, "/", 2),
            ev("g", b, EventKind::Pageview, "/", 3),
            ev("g", b + 5000, EventKind::Goal, "/", 4),
            ev("z", b, EventKind::Goal, "/", 5),
        ];
        let s = sessionize(&mut evs, T);
        let by: BTreeMap<_, _> = s
            .iter()
            .map(|s| (s.visitor.as_str(), s.is_bounce))
            .collect();
        assert!(by["e"]);
        assert!(!by["g"]);
        assert!(!by["z"], "no pageview is not a bounce");
    }

    #[test]
    fn late_event_bridges_two_sessions_and_reports_the_rename() {
        let mut sz = Sessionizer::new();
        let a = sz.observe("s", "v", 0, T);
        let b = sz.observe("s", "v", 2 * T, T);
        assert_ne!(a.session_id, b.session_id);
        assert_eq!(b.session_number, 2);
        let c = sz.observe("s", "v", T, T);
        assert_eq!(c.session_id, a.session_id);
        assert_eq!(c.renames.len(), 1);
        assert_eq!(
            (c.renames[0].from, c.renames[0].to),
            (b.session_id, a.session_id)
        );
        let early = sz.observe("s", "v", -T, T);
        assert_eq!(early.renames[0].from, a.session_id);
        let flushed = sz.flush();
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].events, 4);
        assert!(sz.is_empty());
    }

    /// Visitor ids held in the key and ids too long for it are found, forgotten and
    /// named alike.
    #[test]
    fn short_and_long_visitor_ids_are_kept_alike() {
        let short = "0d30aba325d3e04e";
        let long = "3f2c8a1e-9b7d-4c55-a0e1-7d2b9c4f6e80-and-more";
        let mut sz = Sessionizer::new();
        for v in [short, long, "é"] {
            sz.observe("s", v, 0, T);
            assert_eq!(sz.observe("s", v, 1, T).session_number, 1);
            assert_eq!(sz.get("s", v).map(|st| st.spans[0].events), Some(2));
        }
        sz.forget("s", long);
        assert!(sz.get("s", long).is_none());
        let closed = sz.evict_idle(T + 2);
        let mut named: Vec<_> = closed.iter().map(|c| c.visitor.as_str()).collect();
        named.sort_unstable();
        assert_eq!(named, [short, "é"]);
        assert!(sz.is_empty());
    }

    #[test]
    fn eviction_keeps_numbering() {
        let mut sz = Sessionizer::new();
        sz.observe("s", "v", 0, T);
        sz.observe("s", "v", 3 * T, T);
        let closed = sz.evict_idle(2 * T);
        assert_eq!(closed.len(), 1);
        assert_eq!(sz.observe("s", "v", 3 * T + 1, T).session_number, 2);
        assert_eq!(sz.observe("s", "v", 10 * T, T).session_number, 3);
    }

    /// Applies renames to a map of event → session id, as a store does.
    fn streaming_assignment(
        order: &[(String, i64, usize)],
    ) -> (BTreeMap<usize, u64>, Vec<SessionSummaryLite>) {
        let mut sz = Sessionizer::new();
        let mut assigned: BTreeMap<usize, u64> = BTreeMap::new();
        for (visitor, ts, idx) in order {
            let obs = sz.observe("s", visitor, *ts, T);
            for r in &obs.renames {
                for v in assigned.values_mut() {
                    if *v == r.from {
                        *v = r.to;
                    }
                }
            }
            assigned.insert(*idx, obs.session_id);
        }
        (assigned, sz.flush())
    }

    /// The definition, written independently: sort each visitor's times, cut at gaps > T.
    fn definition(events: &[(String, i64)]) -> BTreeMap<usize, (String, i64)> {
        let mut by_visitor: BTreeMap<&str, Vec<(i64, usize)>> = BTreeMap::new();
        for (i, (v, t)) in events.iter().enumerate() {
            by_visitor.entry(v).or_default().push((*t, i));
        }
        let mut out = BTreeMap::new();
        for (v, mut ts) in by_visitor {
            ts.sort();
            let mut start = ts[0].0;
            let mut prev = ts[0].0;
            for (t, i) in ts {
                if t - prev > T {
                    start = t;
                }
                prev = t;
                out.insert(i, (v.to_owned(), start));
            }
        }
        out
    }

    proptest! {
        #[test]
        fn streaming_after_flush_equals_batch_equals_definition(
            raw in prop::collection::vec((0u8..4, 0i64..(6 * T)), 1..60),
            shuffle_seed in any::<u64>(),
        ) {
            // Snap some times to exact multiples of the timeout to hit the 30:00 edge.
            let events: Vec<(String, i64)> = raw.iter().map(|(v, t)| {
                let t = if t % 7 == 0 { (t / T) * T } else { *t };
                (format!("v{v}"), t)
            }).collect();
            let def = definition(&events);

            // Batch, in given order.
            let mut evs: Vec<Event> = events.iter().enumerate().map(|(i, (v, t))| {
                let mut e = ev(v, *t, EventKind::Pageview, "/", i as u128);
                e.site = "s".into();
                e
            }).collect();
            let batch = sessionize(&mut evs, T);
            for (i, e) in evs.iter().enumerate() {
                let (v, start) = &def[&i];
                prop_assert_eq!(e.identity.session_id, Some(session_id("s", v, *start)));
            }

            // Streaming, in a shuffled arrival order.
            let mut order: Vec<(String, i64, usize)> = events.iter().enumerate().map(|(i, (v, t))| (v.clone(), *t, i)).collect();
            let mut x = shuffle_seed | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let (assigned, flushed) = streaming_assignment(&order);
            for (i, sid) in &assigned {
                let (v, start) = &def[i];
                prop_assert_eq!(*sid, session_id("s", v, *start));
            }
            prop_assert_eq!(flushed.len(), batch.len());
            for (f, b) in flushed.iter().zip(&batch) {
                prop_assert_eq!((&f.visitor, f.session_id, f.number, f.start_ms, f.end_ms, f.events),
                                (&b.visitor, b.session_id, b.number, b.start_ms, b.end_ms, b.events));
            }
        }
    }
}
