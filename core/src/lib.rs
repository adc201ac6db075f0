//! # beacon-core
//!
//! Beacon's foundation: the event model and hit validation, the ingest
//! [`Pipeline`] (validate → enrich → identify → sessionize → store, with group
//! commit and a bounded queue), the [`Tracker`] handle for app code and, with the
//! `tower` feature, the [`TrackLayer`](crate#server-side-tracking) for axum and
//! tower apps; the request types of the contract and [`Analytics`], the storage,
//! configuration and state traits, the reference engines, and [`MemoryStore`], the
//! in-memory store every other backend is compared against.
//!
//! A hit goes in, is stored, and is counted:
//!
//! ```
//! use beacon_core::{Hit, MemoryStore, Origin, Pipeline, Query, Shape, Site};
//! use std::sync::Arc;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = Arc::new(MemoryStore::new()); // or beacon_storage_sqlite::SqliteStore
//! store.put_site_sync(Site::new("example.com")).unwrap();
//! // Salts and event ids from the OS's random source, the system clock, sessions in
//! // memory; `.enricher(beacon_enrich::Enricher::new()?)` adds devices, GeoIP, channels.
//! let pipeline = Pipeline::builder(Arc::clone(&store)).build().unwrap();
//!
//! // A hit as an HTTP endpoint receives it, from the request's client.
//! let client = Origin {
//!     ip: Some("203.0.113.7".parse().unwrap()),
//!     user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0".into()),
//!     ..Origin::default()
//! };
//! let body = br#"{"site":"example.com","type":"pageview","url":"https://example.com/pricing?utm_source=news"}"#;
//! let report = pipeline.ingest_json(body, Shape::One, Some(&client)).await.unwrap();
//! assert_eq!(report.stored, 1); // committed before the call returns
//!
//! // Errors name the field and the rule.
//! let bad = Hit { site: Some("example.com".into()), kind: Some("pageview".into()), ..Hit::default() };
//! let err = pipeline.ingest(bad, Some(&client)).await.unwrap_err();
//! assert_eq!(err.to_string(), "url: is required");
//!
//! // Events from app code: non-blocking, batched in the background.
//! let alice = pipeline.tracker("example.com").await.unwrap().visitor("alice");
//! alice.pageview("https://example.com/").unwrap();
//! alice.purchase("order-1", "49.00", "USD").unwrap();
//! alice.flush().await.unwrap();
//!
//! let q = Query::from_json(r#"{"site":"example.com","date_range":"day",
//!     "metrics":["visitors","pageviews","revenue"],"dimensions":["page"]}"#).unwrap();
//! let result = pipeline.analytics().query(&q, pipeline.now()).await.unwrap();
//! let rows: Vec<(Option<String>, Vec<f64>)> = result.rows.iter()
//!     .map(|r| (r.dimensions[0].clone(), r.metrics.iter().map(|m| m.as_f64()).collect()))
//!     .collect();
//! assert_eq!(rows, [(Some("/".into()), vec![1.0, 1.0, 49.0]), (Some("/pricing".into()), vec![1.0, 1.0, 0.0])]);
//! pipeline.shutdown().await; // everything accepted is stored
//! # });
//! ```
//!
//! The data flow is `Hit` → [`Hit::validate`] → enrichment ([`Enrich`];
//! `beacon-enrich` has the full one) → the visitor id (daily salts from a
//! [`SaltStore`]) → [`SessionState`] → [`EventStore::append`]; requests go
//! [`Query`] / [`Funnel`] / [`GoalsRequest`] / [`RealtimeRequest`] → [`Analytics`]
//! (the site from a [`ConfigStore`]) → the [`EventStore`] method → a result. What a
//! backend implements beyond that, and the helpers it shares, are in [`backend`].
//! The metric definitions are in `docs/metrics.md`; how to write a backend is in
//! `docs/backends.md`.
//!
//! # Server-side tracking
//!
//! With the `tower` feature, `TrackLayer` records a page view for each request an
//! axum or tower app answers with an HTML page (see `examples/embedded-axum`); the
//! feature pulls in `http` and `tower`'s traits only, and core has no other HTTP
//! dependency.

mod access;
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
mod note;
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
mod webhook;

pub use access::{
    authenticate, authorize, check_ingest, login, AccessError, Agency, ApiToken, IssuedSession,
    IssuedToken, LoginSession, Plan, Reach, Role, Scope, Share, TokenUsage, User, MIN_PASSWORD,
    OWNER_AGENCY, SESSION_DAYS,
};
pub use clock::{Clock, ManualClock, OsRandom, RandomSource, SeededRandom, SystemClock};
pub use context::{Cancel, Context};
pub use error::{QueryError, StoreError, ValidationError};
pub use event::{
    Acquisition, BotInfo, ClickIds, Commerce, Company, Device, DeviceType, Engagement, Event,
    EventKind, Identity, Location, Network, Page, Utm, VisitorType,
};
pub use hit::{Hit, IngestMode, Limits, RawMoney, ValidatedHit, ValidationContext};
pub use ingest::{
    hits_from_json, url_host, ClientHints, Enrich, Erasure, ImportError, ImportFormat,
    ImportReport, Importer, IngestError, IngestReport, NoEnrichment, Origin, Pipeline,
    PipelineBuilder, ReadError, ReadPool, RejectedLine, RequestFacts, Shape, Tracker,
    TrackerReport, TrustedProxies, MAX_BATCH, MAX_SESSION_VISITORS,
};
#[cfg(feature = "tower")]
pub use ingest::{TrackLayer, TrackService};
pub use memory::{MemoryConfig, MemoryStore};
pub use money::{Currency, Money, MoneyError};
pub use note::Note;
pub use query::{
    Attribution, AttributionModel, DateRange, Dimension, Direction, Filter, Metric, OrderKey,
    Pattern, Query, ResolvedRange,
};
pub use requests::{
    Funnel, FunnelResult, GoalDefinition, GoalMatch, GoalResult, GoalsRequest, GoalsResult,
    RealtimeRequest, RealtimeResult, SavedFunnel, StepMatch, StepResult,
};
pub use result::{MetricValue, QueryResult, ResultRow};
pub use site::Site;
pub use state::{SaltStore, SessionState};
pub use store::{
    apply_retention, remove_agency, AgencyRemoval, Analytics, ConfigStore, EraseScope, EventStore,
};
pub use text::Text;
pub use time::TimeBucket;
pub use webhook::{
    check_url, forget_deliveries, is_public_address, sign, verify_signature, Delivery, HookEvent,
    OutgoingRequest, Webhook, WebhookError, WebhookPolicy, WebhookTransport, Webhooks,
    SIGNATURE_HEADER,
};

/// For backend authors: the types the storage and state traits' methods take and
/// give beyond the user-facing ones, the reference engines and session machinery
/// the traits' defaults run, and the helpers backends share so that every rule has
/// one home (see `docs/backends.md`). An app that only ingests and queries needs
/// none of it.
pub mod backend {
    pub use crate::clock::new_event_id;
    pub use crate::engine::{shares, Credit, Touch, Touchpoints};
    pub use crate::identity::{VisitorCandidates, VisitorIdentifier};
    pub use crate::ingest::DELIVERY_RETENTION;
    pub use crate::memory::MemoryUsage;
    pub use crate::money::format_minor;
    pub use crate::requests::glob;
    pub use crate::result::{mean_seconds, percent, ratio};
    pub use crate::session::{
        session_id, sessionize, Observation, Placement, SessionRename, SessionSpan, SessionSummary,
        SessionSummaryLite, Sessionizer, VisitorSessions,
    };
    pub use crate::state::{
        CachedSalts, ConfigSalts, MemorySaltStore, MemorySessionState, VisitorRef,
    };
    pub use crate::store::reference::resolve_range;
    pub use crate::store::{
        AppendReport, ChunkEncoder, ConfigKey, ConfigKind, ConfigRecord, EventBatches, KindSet,
        PreparedEvents, ScanRequest, StoreStats,
    };
    pub use crate::time::{day_start, local_date, Buckets};
    pub use crate::url::UrlParts;
    /// The inline vector [`VisitorSessions::spans`] is (the `smallvec` crate's).
    pub use smallvec::SmallVec;
}

pub use chrono_tz::Tz;

/// The README's Rust examples compile (`cargo test --doc -p beacon-core`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
