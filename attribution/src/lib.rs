//! # beacon-attribution
//!
//! The engines that tie traffic to outcomes, over any store through the core traits.
//! Goals (definitions by page pattern, event name or `data-beacon-goal` attribute,
//! with values), funnels (contract section 5, with breakdowns), revenue attribution
//! (the six models of contract section 4, refunds, rate tables) and payment-provider
//! webhooks (Stripe, Lemon Squeezy, Polar, Shopify).
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
//! let r = run_funnel(&events, &f, &Site::new("example.com"), at(12, 0));
//! assert_eq!(r.steps.iter().map(|s| s.visitors).collect::<Vec<_>>(), [2, 1]);
//! assert_eq!(r.steps[1].drop_off.as_f64(), 50.0);
//! ```

mod attribute;
mod funnel;
mod goals;
mod models;
mod request;
mod webhook;

pub use attribute::{attribute, attribute_events, Credit, Touchpoints};
pub use funnel::{funnel, glob, run_funnel, Funnel, FunnelResult, StepMatch, StepResult};
pub use goals::{
    goals, run_goals_columns, GoalDefinition, GoalMatch, GoalResult, GoalsRequest, GoalsResult,
};
pub use models::{shares, Touch};
pub use request::RequestError;
pub use webhook::{
    parse_payments, Headers, Payment, PaymentKind, Provider, ReplayGuard, WebhookError,
    WebhookVerifier,
};
