//! # beacon-attribution
//!
//! What ties traffic to outcomes: payment-provider webhooks (Stripe, Lemon Squeezy,
//! Polar, Shopify) with signature checks, replay protection and parsing into
//! purchase and refund events; and, re-exported from `beacon-core` where their
//! engines live (the storage traits' defaults run them), goals, funnels and the six
//! attribution models. [`run_funnel`] and [`attribute_events`] answer over a slice
//! of events, for tests and one-off analyses.
//!
//! ```
//! use beacon_attribution::{run_funnel, Funnel};
//! use beacon_core::{Event, EventKind, Site};
//! use chrono::{TimeZone, Utc};
//!
//! let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap();
//! let view = |visitor: &str, t, path: &str| {
//!     let mut e = Event { site: "example.com".into(), kind: EventKind::Pageview, timestamp: t, ..Event::default() };
//!     e.identity.visitor_id = visitor.into();
//!     e.page.path = path.into();
//!     e
//! };
//! let events = vec![view("a", at(10, 0), "/"), view("a", at(10, 5), "/pricing"), view("b", at(11, 0), "/")];
//! let f = Funnel::from_json(r#"{"site":"example.com","date_range":["2026-03-01","2026-03-01"],
//!     "window":"1h","steps":[{"page":"/"},{"page":"/pricing"}]}"#).unwrap();
//! let r = run_funnel(&events, &f, &Site::new("example.com"), at(12, 0)).unwrap();
//! assert_eq!(r.steps.iter().map(|s| s.visitors).collect::<Vec<_>>(), [2, 1]);
//! assert_eq!(r.steps[1].drop_off.as_f64(), 50.0);
//! ```

mod webhook;

pub use beacon_core::backend::{glob, shares, Credit, Touch, Touchpoints};
pub use beacon_core::{
    Funnel, FunnelResult, GoalDefinition, GoalMatch, GoalResult, GoalsRequest, GoalsResult,
    StepMatch, StepResult,
};
pub use webhook::{
    parse_payments, receive_webhook, Headers, Payment, PaymentKind, Provider, ReceiveError,
    ReplayGuard, WebhookError, WebhookReceipt, WebhookVerifier,
};

use beacon_core::{MemoryStore, Query, QueryResult, Site, StoreError};
use chrono::{DateTime, Utc};

fn loaded(events: &[beacon_core::Event], site: &Site) -> Result<MemoryStore, StoreError> {
    let store = MemoryStore::new();
    let own: Vec<beacon_core::Event> = events
        .iter()
        .filter(|e| e.site == site.domain)
        .cloned()
        .collect();
    store.append_sync(&own)?;
    Ok(store)
}

/// Answers an attribution query (a [`Query`] with `attribution`) over `events` of
/// `site`, in any order, as of `now`.
pub fn attribute_events(
    events: &[beacon_core::Event],
    site: &Site,
    query: &Query,
    now: DateTime<Utc>,
) -> Result<QueryResult, StoreError> {
    loaded(events, site)?.query_sync(site, query, &now.into())
}

/// Runs a funnel over `events` of `site`, in any order, as of `now`.
pub fn run_funnel(
    events: &[beacon_core::Event],
    funnel: &Funnel,
    site: &Site,
    now: DateTime<Utc>,
) -> Result<FunnelResult, StoreError> {
    loaded(events, site)?.funnel_sync(site, funnel, &now.into())
}

/// Counts goals over `events` of `site`, in any order, as of `now`.
pub fn run_goals(
    events: &[beacon_core::Event],
    goals: &GoalsRequest,
    site: &Site,
    now: DateTime<Utc>,
) -> Result<GoalsResult, StoreError> {
    loaded(events, site)?.goals_sync(site, goals, &now.into())
}
