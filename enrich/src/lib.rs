//! # beacon-enrich
//!
//! Turns a hit's raw request data into the event's device, location, network,
//! referrer and campaign fields: user agents (woothee and the uap-core rules, with
//! Client Hints), bots (crawler-user-agents and isbot lists, with a reason), GeoIP and
//! network (MaxMind DB files, data-centre and VPN lists), referrer, medium and channel
//! (the CC0 search / social / AI lists), and UTM parameters and click ids.
//!
//! ```
//! use beacon_core::{Hit, Site, ValidationContext};
//! use beacon_enrich::{flat_json, Enricher};
//! use chrono::{TimeZone, Utc};
//!
//! let enricher = Enricher::new().unwrap(); // build once, share across threads
//! let hit = Hit::from_json(br#"{"site": "example.com", "type": "pageview",
//!     "url": "https://example.com/pricing?utm_campaign=spring&gclid=abc",
//!     "referrer": "https://www.google.com/", "timestamp": "2026-03-01T12:00:00Z",
//!     "ip": "81.2.69.142",
//!     "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"}"#).unwrap();
//! let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
//! let valid = hit.validate(&ValidationContext::import(now), None).unwrap();
//! let event = enricher.enrich_hit(valid, &Site::new("example.com"));
//!
//! let flat = flat_json(&event);
//! assert_eq!(flat["browser"], "Safari");
//! assert_eq!(flat["device_type"], "mobile");
//! assert_eq!(flat["device_brand"], "Apple");
//! assert_eq!(flat["source"], "Google");
//! assert_eq!(flat["channel"], "Paid Search");
//! assert_eq!(flat["utm_campaign"], "spring");
//! assert!(event.network.ip.is_none(), "the IP is kept only for sites that opt in");
//! ```

mod bots;
mod cache;
mod devices;
mod enricher;
mod geo;
mod network;
mod privacy;
mod referrer;
mod ua;
mod uap;
mod url;

pub use beacon_core::ClientHints;
pub use bots::{BotDetector, BotListError, BotReason};
pub use devices::{DeviceName, DeviceNames};
pub use enricher::{flat_json, EnrichError, Enricher, EnricherBuilder, Request, Step};
pub use geo::{GeoDatabases, GeoError, GeoFacts, GeoKind};
pub use network::{NetworkClassifier, NetworkVerdict};
pub use privacy::{hash_email, hash_phone};
pub use referrer::{Attribution, ReferrerClassifier, ReferrerKind, ReferrerListError};
pub use ua::{ClientInfo, UserAgentParser};
pub use uap::{fold_family, UapParser};
pub use url::{url_facts, UrlFacts};
