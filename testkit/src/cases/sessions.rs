//! The session-state cases. Times are near the wall clock (a shared backend may
//! expire state in real time); sites are named with the run's tag.

use crate::fixture::site;
use beacon_core::backend::{session_id, VisitorRef};
use beacon_core::SessionState;

const T: i64 = 30 * 60 * 1000;

fn base() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// 0 and T are one session (number 1); 2T + 1 ms starts a new one there.
pub(super) async fn in_order_events_share_a_session(s: &dyn SessionState) {
    let (d, b) = (site("state-order").domain, base());
    let v = VisitorRef::Id("v");
    let a = s.observe(&d, v, b, T).await.expect("observe");
    let c = s.observe(&d, v, b + T, T).await.expect("observe");
    let e = s.observe(&d, v, b + 2 * T + 1, T).await.expect("observe");
    assert_eq!(
        (a.session_id, a.session_number),
        (session_id(&d, "v", b), 1)
    );
    assert_eq!((c.session_id, c.session_number), (a.session_id, 1));
    assert_ne!(e.session_id, a.session_id);
    assert_eq!(e.session_start_ms, b + 2 * T + 1);
    assert!(a.renames.is_empty() && c.renames.is_empty() && e.renames.is_empty());
    assert_eq!(a.visitor_id, "v");
}

/// Events at 0 and 2T are two sessions until one at T bridges them: the later
/// session is renamed to the earlier.
pub(super) async fn a_late_event_renames_sessions(s: &dyn SessionState) {
    let (d, b) = (site("state-late").domain, base());
    let v = VisitorRef::Id("v");
    let first = s.observe(&d, v, b, T).await.expect("observe");
    let second = s.observe(&d, v, b + 2 * T, T).await.expect("observe");
    assert_ne!(first.session_id, second.session_id);
    let bridge = s.observe(&d, v, b + T, T).await.expect("observe");
    assert_eq!(bridge.session_id, first.session_id);
    let renames: Vec<(u64, u64)> = bridge.renames.iter().map(|r| (r.from, r.to)).collect();
    assert_eq!(renames, [(second.session_id, first.session_id)]);
}

/// A cookieless visitor keeps yesterday's id while that session is open, and takes
/// today's once it is not.
pub(super) async fn a_cookieless_visitor_keeps_yesterdays_id_while_open(s: &dyn SessionState) {
    let (d, b) = (site("state-midnight").domain, base());
    s.observe(&d, VisitorRef::Id("yesterday"), b, T)
        .await
        .expect("observe");
    let both = VisitorRef::Cookieless {
        today: "today",
        yesterday: "yesterday",
    };
    let open = s.observe(&d, both, b + T / 2, T).await.expect("observe");
    assert_eq!(
        (open.visitor_id.as_str(), open.session_number),
        ("yesterday", 1)
    );
    let later = s.observe(&d, both, b + 3 * T, T).await.expect("observe");
    assert_eq!(later.visitor_id, "today");
}

/// State a visitor no longer needs may be evicted: after eviction two days on, an
/// event starts a new session there, with nothing renamed.
pub(super) async fn idle_visitors_are_evicted(s: &dyn SessionState) {
    let (d, b) = (site("state-idle").domain, base());
    let v = VisitorRef::Id("v");
    s.observe(&d, v, b, T).await.expect("observe");
    let later = b + 2 * 86_400_000;
    s.evict_idle(later).await.expect("evict");
    let again = s.observe(&d, v, later, T).await.expect("observe");
    assert_eq!(again.session_start_ms, later);
    assert!(again.renames.is_empty());
    s.visitors().await.expect("visitors");
}

/// Choosing a visitor places no event: it answers as observe would.
pub(super) async fn choosing_records_nothing(s: &dyn SessionState) {
    let (d, b) = (site("state-choose").domain, base());
    let both = VisitorRef::Cookieless {
        today: "t",
        yesterday: "y",
    };
    assert_eq!(s.choose(&d, both, b, T).await.expect("choose"), "t");
    s.observe(&d, VisitorRef::Id("y"), b, T)
        .await
        .expect("observe");
    assert_eq!(s.choose(&d, both, b + T, T).await.expect("choose"), "y");
    assert_eq!(s.choose(&d, both, b + 3 * T, T).await.expect("choose"), "t");
    let first = s
        .observe(&d, VisitorRef::Id("t"), b + 3 * T, T)
        .await
        .expect("observe");
    assert_eq!(
        first.session_number, 1,
        "choosing t created no session for it"
    );
    assert!(first.renames.is_empty());
}
