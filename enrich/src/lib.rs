//! # beacon-enrich (work in progress)
mod bots;
mod cache;
mod geo;
mod network;
mod referrer;
mod ua;
mod uap;
mod url;

pub use bots::{BotDetector, BotListError, BotReason};
pub use cache::BoundedCache;
pub use geo::{GeoDatabases, GeoError, GeoFacts, GeoKind};
pub use network::{NetworkClassifier, NetworkVerdict};
pub use referrer::{Attribution, ReferrerClassifier, ReferrerKind, ReferrerListError};
pub use ua::{ClientHints, ClientInfo, UserAgentParser, WootheeAnswer};
pub use uap::{fold_family, UapFamily, UapParser};
pub use url::{url_facts, UrlFacts};
