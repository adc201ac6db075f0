//! # beacon-core
//!
//! Beacon's foundation: the event model, hit validation, visitor identity, sessions,
//! the query model of the contract, the storage traits, and [`MemoryStore`], the
//! in-memory reference engine every other backend is compared against.
//!
//! ```
//! use beacon_core::{Hit, MemoryStore, Query, Site, ValidationContext, sessionize, run_query};
//! use chrono::{TimeZone, Utc};
//!
//! # tokio_test_shim::block_on(async {
//! let store = MemoryStore::new();
//! store.put_site_sync(Site::new("example.com")).unwrap();
//!
//! let now = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
//! let mut events = Vec::new();
//! for (visitor, time, path) in [("v1", "10:00:00", "/"), ("v1", "10:05:00", "/pricing"), ("v2", "11:00:00", "/")] {
//!     let hit = Hit::from_json(format!(
//!         r#"{{"site":"example.com","type":"pageview","url":"https://example.com{path}",
//!             "timestamp":"2026-03-01T{time}Z","visitor_id":"{visitor}"}}"#
//!     ).as_bytes()).unwrap();
//!     let valid = hit.validate(&ValidationContext::import(now), None).unwrap();
//!     let mut event = valid.event;
//!     event.identity.visitor_id = valid.client_visitor_id.unwrap();
//!     events.push(event);
//! }
//! sessionize(&mut events, 30 * 60 * 1000);
//! store.append_sync(&events).unwrap();
//!
//! let query = Query::from_json(r#"{"site":"example.com","date_range":["2026-03-01","2026-03-01"],
//!     "metrics":["visitors","visits","pageviews","bounce_rate"]}"#).unwrap();
//! let result = run_query(&store, &query, now).await.unwrap();
//! let m: Vec<f64> = result.rows[0].metrics.iter().map(|v| v.as_f64()).collect();
//! assert_eq!(m, [2.0, 2.0, 3.0, 50.0]);
//! # });
//! # mod tokio_test_shim {
//! #     pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #         tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! #     }
//! # }
//! ```
//!
//! The data flow is `Hit` → [`Hit::validate`] → enrichment (`beacon-enrich`) →
//! [`VisitorIdentifier`] → [`Sessionizer`] → [`EventStore::append`]; queries go
//! [`Query`] → [`EventStore::query`] → [`QueryResult`]. The metric definitions are in
//! `docs/metrics.md`.

mod clock;
mod columns;
mod error;
mod event;
mod hash;
mod hit;
mod identity;
mod memory;
mod money;
mod query;
mod result;
mod session;
mod site;
mod store;
mod text;
mod time;
mod url;

pub use clock::{new_event_id, Clock, ManualClock, RandomSource, SeededRandom, SystemClock};
pub use columns::EventColumns;
pub use error::{QueryError, StoreError, ValidationError};
pub use event::{
    Acquisition, BotInfo, ClickIds, Commerce, Company, Device, DeviceType, Engagement, Event,
    EventKind, Identity, Location, Network, Page, Utm, VisitorType,
};
pub use hit::{Hit, IngestMode, Limits, RawMoney, ValidatedHit, ValidationContext};
pub use identity::{MemorySaltStore, SaltStore, VisitorCandidates, VisitorIdentifier};
pub use memory::{MemoryStore, MemoryUsage};
pub use money::{format_minor, Currency, Money, MoneyError};
pub use query::{
    Attribution, AttributionModel, DateRange, Dimension, Direction, Filter, Metric, OrderKey,
    Pattern, Query,
};
pub use result::{mean_seconds, percent, ratio, MetricValue, QueryResult, ResultRow};
pub use session::{
    session_id, sessionize, MemorySessionCache, Observation, SessionCache, SessionRename,
    SessionSpan, SessionSummary, SessionSummaryLite, Sessionizer, VisitorSessions,
};
pub use site::Site;
pub use store::{run_query, site_or_unknown, EraseScope, EventStore, SiteStore, Store};
pub use text::Text;
pub use time::{day_start, local_date, Buckets, TimeBucket};
pub use url::UrlParts;

/// Chrono's time zone type, re-exported for [`Site::timezone`].
pub use chrono_tz::Tz;
