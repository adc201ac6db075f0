//! # beacon-core
//!
//! Beacon's foundation: the event model, hit validation, visitor identity, sessions,
//! the request types of the contract, the storage, configuration and state traits,
//! the reference engines, and [`MemoryStore`], the in-memory store every other
//! backend is compared against.
//!
//! ```
//! use beacon_core::{Analytics, EventStore, Hit, MemoryStore, Query, Site, ValidationContext};
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
//!     event.id = uuid::Uuid::from_u128(events.len() as u128 + 1);
//!     event.identity.visitor_id = valid.client_visitor_id.unwrap();
//!     events.push(event);
//! }
//! let report = store.append(&events).await.unwrap();
//! assert_eq!(report.stored, 3);
//!
//! let query = Query::from_json(r#"{"site":"example.com","date_range":["2026-03-01","2026-03-01"],
//!     "metrics":["visitors","visits","pageviews","bounce_rate"]}"#).unwrap();
//! // The store is also the configuration here; `Analytics` looks the site up in it.
//! let result = Analytics::new(&store, &store).query(&query, now).await.unwrap();
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
//! [`VisitorIdentifier`] (over a [`SaltStore`]) → [`SessionState`] →
//! [`EventStore::append`]; requests go [`Query`] / [`Funnel`] / [`GoalsRequest`] /
//! [`RealtimeRequest`] → [`Analytics`] (the site from a [`ConfigStore`]) → the
//! [`EventStore`] method → a result. The metric definitions are in `docs/metrics.md`;
//! how to write a backend is in `docs/backends.md`.

mod clock;
mod context;
mod engine;
mod error;
mod event;
mod hash;
mod hit;
mod identity;
mod ingest;
mod memory;
mod money;
mod query;
mod requests;
mod result;
mod session;
mod site;
mod state;
mod store;
mod text;
mod time;
mod url;

pub use clock::{
    new_event_id, Clock, ManualClock, OsRandom, RandomSource, SeededRandom, SystemClock,
};
pub use context::{Cancel, Context};
pub use engine::{shares, Credit, Touch, Touchpoints};
pub use error::{QueryError, StoreError, ValidationError};
pub use event::{
    Acquisition, BotInfo, ClickIds, Commerce, Company, Device, DeviceType, Engagement, Event,
    EventKind, Identity, Location, Network, Page, Utm, VisitorType,
};
pub use hit::{Hit, IngestMode, Limits, RawMoney, ValidatedHit, ValidationContext};
pub use identity::{VisitorCandidates, VisitorIdentifier};
pub use ingest::{
    hits_from_json, ClientHints, Enrich, ImportError, ImportFormat, ImportReport, Importer,
    IngestError, IngestReport, NoEnrichment, Origin, Pipeline, PipelineBuilder, ReadError,
    ReadPool, RejectedLine, RequestFacts, Shape, Tracker, TrackerReport, TrustedProxies,
    DELIVERY_RETENTION, MAX_BATCH, MAX_SESSION_VISITORS,
};
#[cfg(feature = "tower")]
pub use ingest::{TrackLayer, TrackService};
pub use memory::{MemoryConfig, MemoryStore, MemoryUsage};
pub use money::{format_minor, Currency, Money, MoneyError};
pub use query::{
    Attribution, AttributionModel, DateRange, Dimension, Direction, Filter, Metric, OrderKey,
    Pattern, Query, ResolvedRange,
};
pub use requests::{
    glob, Funnel, FunnelResult, GoalDefinition, GoalMatch, GoalResult, GoalsRequest, GoalsResult,
    RealtimeRequest, RealtimeResult, SavedFunnel, StepMatch, StepResult,
};
pub use result::{mean_seconds, percent, ratio, MetricValue, QueryResult, ResultRow};
pub use session::{
    session_id, sessionize, Observation, Placement, SessionRename, SessionSpan, SessionSummary,
    SessionSummaryLite, Sessionizer, VisitorSessions,
};
pub use site::Site;
pub use state::{
    CachedSalts, ConfigSalts, MemorySaltStore, MemorySessionState, SaltStore, SessionState,
    VisitorRef,
};
pub use store::reference::resolve_range;
pub use store::{
    Analytics, AppendReport, ConfigKey, ConfigKind, ConfigRecord, ConfigStore, EraseScope,
    EventBatches, EventStore, KindSet, PreparedEvents, ScanRequest, StoreStats,
};
pub use text::Text;
pub use time::{day_start, local_date, Buckets, TimeBucket};
pub use url::UrlParts;

/// Chrono's time zone type, re-exported for [`Site::timezone`].
pub use chrono_tz::Tz;
