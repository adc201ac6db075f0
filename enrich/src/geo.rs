//! GeoIP and network databases in MaxMind DB format: City / Country (MaxMind's schema
//! or the flat schema of the ip-location-db files), ASN, ISP, Anonymous-IP and
//! Enterprise. Every database is optional and can be replaced on disk and reloaded
//! without a restart.

use beacon_core::{Location, Text};
use maxminddb::Reader;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// A database that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("geo database {path}: {source}")]
pub struct GeoError {
    /// The file.
    pub path: PathBuf,
    /// What the reader said.
    #[source]
    pub source: maxminddb::MaxMindDbError,
}

/// Which kind of database a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GeoKind {
    /// City or Country (location fields).
    Location,
    /// ASN.
    Asn,
    /// ISP (ISP, organisation, ASN).
    Isp,
    /// Anonymous-IP (VPN, proxy, hosting, Tor).
    Anonymous,
    /// Enterprise (location plus traits: user type, organisation, domain).
    Enterprise,
}

struct Loaded {
    reader: Reader<Vec<u8>>,
    modified: Option<SystemTime>,
    flat_schema: bool,
}

struct Slot {
    kind: GeoKind,
    path: PathBuf,
    loaded: RwLock<Arc<Loaded>>,
}

/// Everything the databases say about one address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoFacts {
    /// Country, region, city, postal code, coordinates, time zone.
    pub location: Location,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Autonomous system organisation (from the ASN database).
    pub asn_organization: Option<Text>,
    /// ISP name.
    pub isp: Option<Text>,
    /// Organisation holding the address (ISP or Enterprise database).
    pub organization: Option<Text>,
    /// The organisation's web domain (Enterprise database).
    pub domain: Option<Text>,
    /// MaxMind user type (`business`, `residential`, `hosting`, `cellular`, ...).
    pub user_type: Option<Text>,
    /// Connection type (`Corporate`, `Cable/DSL`, `Cellular`).
    pub connection_type: Option<Text>,
    /// Any anonymiser.
    pub is_anonymous: bool,
    /// A VPN exit.
    pub is_vpn: bool,
    /// A public or residential proxy.
    pub is_proxy: bool,
    /// A hosting provider's address.
    pub is_hosting: bool,
    /// A Tor exit node.
    pub is_tor: bool,
}

#[derive(Deserialize, Default)]
struct Names<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Iso<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Named<'a> {
    #[serde(borrow, default)]
    names: Names<'a>,
}

#[derive(Deserialize, Default)]
struct Postal<'a> {
    #[serde(borrow)]
    code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Loc<'a> {
    latitude: Option<f64>,
    longitude: Option<f64>,
    #[serde(borrow)]
    time_zone: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Traits<'a> {
    #[serde(borrow)]
    user_type: Option<&'a str>,
    #[serde(borrow)]
    organization: Option<&'a str>,
    #[serde(borrow)]
    isp: Option<&'a str>,
    #[serde(borrow)]
    domain: Option<&'a str>,
    #[serde(borrow)]
    connection_type: Option<&'a str>,
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
}

/// MaxMind's City / Country / Enterprise schema.
#[derive(Deserialize, Default)]
struct MaxMindCity<'a> {
    #[serde(borrow, default)]
    country: Iso<'a>,
    #[serde(borrow, default)]
    subdivisions: Vec<Iso<'a>>,
    #[serde(borrow, default)]
    city: Named<'a>,
    #[serde(borrow, default)]
    postal: Postal<'a>,
    #[serde(borrow, default)]
    location: Loc<'a>,
    #[serde(borrow, default)]
    traits: Traits<'a>,
}

/// ip-location-db's flat schema.
#[derive(Deserialize, Default)]
struct FlatCity<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(borrow)]
    state1: Option<&'a str>,
    #[serde(borrow)]
    city: Option<&'a str>,
    #[serde(borrow)]
    postcode: Option<&'a str>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    #[serde(borrow)]
    timezone: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct AsnRecord<'a> {
    autonomous_system_number: Option<u32>,
    #[serde(borrow)]
    autonomous_system_organization: Option<&'a str>,
    #[serde(borrow)]
    isp: Option<&'a str>,
    #[serde(borrow)]
    organization: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct AnonymousRecord {
    #[serde(default)]
    is_anonymous: bool,
    #[serde(default)]
    is_anonymous_vpn: bool,
    #[serde(default)]
    is_hosting_provider: bool,
    #[serde(default)]
    is_public_proxy: bool,
    #[serde(default)]
    is_residential_proxy: bool,
    #[serde(default)]
    is_tor_exit_node: bool,
}

fn own(s: Option<&str>) -> Option<Text> {
    s.filter(|s| !s.is_empty()).map(Text::from)
}

fn load(path: &Path) -> Result<Loaded, GeoError> {
    let err = |source| GeoError {
        path: path.to_owned(),
        source,
    };
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let reader = Reader::open_readfile(path).map_err(err)?;
    let t = reader.metadata().database_type.to_ascii_lowercase();
    // MaxMind's own databases are named GeoIP2-*, GeoLite2-*, GeoIP-*; ip-location-db's "city" / "country".
    let flat_schema =
        !(t.starts_with("geoip") || t.starts_with("geolite") || t.contains("enterprise"));
    Ok(Loaded {
        reader,
        modified,
        flat_schema,
    })
}

/// The configured databases; cheap to share (`Arc`) across threads.
///
/// Every replacement of a file starts a new [`generation`](Self::generation), so that
/// callers who cache answers per address (the [`crate::Enricher`] does) can tell
/// when their answers went stale.
#[derive(Default)]
pub struct GeoDatabases {
    slots: Vec<Slot>,
    generation: AtomicU64,
}

impl std::fmt::Debug for GeoDatabases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.slots.iter().map(|s| (s.kind, &s.path)))
            .finish()
    }
}

impl GeoDatabases {
    /// No databases: every lookup is empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the database at `path` as `kind`, reading it now.
    pub fn with(mut self, kind: GeoKind, path: impl Into<PathBuf>) -> Result<Self, GeoError> {
        let path = path.into();
        let loaded = load(&path)?;
        self.slots.push(Slot {
            kind,
            path,
            loaded: RwLock::new(Arc::new(loaded)),
        });
        Ok(self)
    }

    /// Re-reads every database whose file changed since it was loaded; returns how many
    /// were replaced. On error the old copy stays in use.
    pub fn reload_changed(&self) -> Result<usize, GeoError> {
        let mut replaced = 0;
        for slot in &self.slots {
            let now = std::fs::metadata(&slot.path)
                .and_then(|m| m.modified())
                .ok();
            let current = slot
                .loaded
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .modified;
            if now.is_some() && now != current {
                let fresh = load(&slot.path)?;
                *slot.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
                self.generation.fetch_add(1, Ordering::AcqRel);
                replaced += 1;
            }
        }
        Ok(replaced)
    }

    /// Whether any database is configured.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// How many times a file was replaced since start: answers cached under an older
    /// generation are stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Looks `ip` up in every database. Addresses a database lacks (or that it cannot
    /// hold, such as IPv6 in an IPv4-only file) leave their fields empty.
    pub fn lookup(&self, ip: IpAddr) -> GeoFacts {
        let mut f = GeoFacts::default();
        for slot in &self.slots {
            let loaded = Arc::clone(&slot.loaded.read().unwrap_or_else(|e| e.into_inner()));
            let Ok(result) = loaded.reader.lookup(ip) else {
                continue;
            };
            match slot.kind {
                GeoKind::Location | GeoKind::Enterprise if loaded.flat_schema => {
                    if let Ok(Some(r)) = result.decode::<FlatCity<'_>>() {
                        let l = &mut f.location;
                        l.country = own(r.country_code).or(l.country.take());
                        l.region = own(r.state1).or(l.region.take());
                        l.city = own(r.city).or(l.city.take());
                        l.postal_code = own(r.postcode).or(l.postal_code.take());
                        l.latitude = r.latitude.or(l.latitude);
                        l.longitude = r.longitude.or(l.longitude);
                        l.timezone = own(r.timezone).or(l.timezone.take());
                    }
                }
                GeoKind::Location | GeoKind::Enterprise => {
                    if let Ok(Some(r)) = result.decode::<MaxMindCity<'_>>() {
                        let l = &mut f.location;
                        let country = own(r.country.iso_code);
                        l.region = r
                            .subdivisions
                            .first()
                            .and_then(|s| s.iso_code)
                            .map(|s| match &country {
                                Some(c) => Text::from(format!("{c}-{s}")),
                                None => Text::from(s),
                            })
                            .or(l.region.take());
                        l.country = country.or(l.country.take());
                        l.city = own(r.city.names.en).or(l.city.take());
                        l.postal_code = own(r.postal.code).or(l.postal_code.take());
                        l.latitude = r.location.latitude.or(l.latitude);
                        l.longitude = r.location.longitude.or(l.longitude);
                        l.timezone = own(r.location.time_zone).or(l.timezone.take());
                        let t = &r.traits;
                        f.user_type = own(t.user_type).or(f.user_type.take());
                        f.organization = own(t.organization).or(f.organization.take());
                        f.isp = own(t.isp).or(f.isp.take());
                        f.domain = own(t.domain).or(f.domain.take());
                        f.connection_type = own(t.connection_type).or(f.connection_type.take());
                        f.asn = t.autonomous_system_number.or(f.asn);
                        f.asn_organization =
                            own(t.autonomous_system_organization).or(f.asn_organization.take());
                    }
                }
                GeoKind::Asn | GeoKind::Isp => {
                    if let Ok(Some(r)) = result.decode::<AsnRecord<'_>>() {
                        f.asn = r.autonomous_system_number.or(f.asn);
                        f.asn_organization =
                            own(r.autonomous_system_organization).or(f.asn_organization.take());
                        f.isp = own(r.isp).or(f.isp.take());
                        f.organization = own(r.organization).or(f.organization.take());
                    }
                }
                GeoKind::Anonymous => {
                    if let Ok(Some(r)) = result.decode::<AnonymousRecord>() {
                        f.is_anonymous |= r.is_anonymous;
                        f.is_vpn |= r.is_anonymous_vpn;
                        f.is_proxy |= r.is_public_proxy || r.is_residential_proxy;
                        f.is_hosting |= r.is_hosting_provider;
                        f.is_tor |= r.is_tor_exit_node;
                    }
                }
            }
        }
        f
    }
}
