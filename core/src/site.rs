//! Sites: the tracked websites and their settings.

use crate::error::StoreError;
use crate::money::Currency;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A tracked website and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// The site's id: its domain (`example.com`).
    pub domain: String,
    /// Time zone that dates, days and hours of queries are in.
    pub timezone: Tz,
    /// Inactivity after which a visitor's next event starts a new session, seconds (default 1800).
    pub session_timeout_secs: u32,
    /// Whether the visitor's IP address is stored (default: no).
    pub store_ip: bool,
    /// Currency that revenue is reported in when a query names none.
    pub currency: Currency,
    /// More hosts that belong to the site (their referrers are internal, not a source).
    pub extra_hosts: Vec<String>,
    /// The agency that owns the site (default [`crate::OWNER_AGENCY`]).
    #[serde(default = "owner_agency")]
    pub agency: String,
    /// How many days of events are kept (default 730, two years; 30 to 1830):
    /// older ones are erased by [`crate::apply_retention`].
    #[serde(default = "default_retention")]
    pub retention_days: u32,
}

fn default_retention() -> u32 {
    Site::DEFAULT_RETENTION_DAYS
}

fn owner_agency() -> String {
    crate::access::OWNER_AGENCY.to_owned()
}

impl Site {
    /// The default retention: two years.
    pub const DEFAULT_RETENTION_DAYS: u32 = 730;

    /// The default session timeout: 30 minutes.
    pub const DEFAULT_SESSION_TIMEOUT_SECS: u32 = 1800;

    /// A site with default settings (UTC, 30-minute sessions, no IP storage, USD).
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            timezone: Tz::UTC,
            session_timeout_secs: Self::DEFAULT_SESSION_TIMEOUT_SECS,
            store_ip: false,
            currency: Currency::USD,
            extra_hosts: Vec::new(),
            agency: owner_agency(),
            retention_days: Self::DEFAULT_RETENTION_DAYS,
        }
    }

    /// Sets the owning agency.
    pub fn with_agency(mut self, agency: impl Into<String>) -> Self {
        self.agency = agency.into();
        self
    }

    /// Sets the time zone.
    pub fn with_timezone(mut self, tz: Tz) -> Self {
        self.timezone = tz;
        self
    }

    /// Sets the session timeout in seconds.
    pub fn with_session_timeout_secs(mut self, secs: u32) -> Self {
        self.session_timeout_secs = secs;
        self
    }

    /// Sets the default revenue currency.
    pub fn with_currency(mut self, currency: Currency) -> Self {
        self.currency = currency;
        self
    }

    /// Whether `host` (lower case) is the site's: its domain, a subdomain of it, or
    /// one of its extra hosts. Pages on these hosts may send the site's hits.
    pub fn owns_host(&self, host: &str) -> bool {
        host == self.domain
            || host
                .strip_suffix(self.domain.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
            || self.extra_hosts.iter().any(|h| h == host)
    }

    /// The session timeout in milliseconds.
    pub fn session_timeout_ms(&self) -> i64 {
        i64::from(self.session_timeout_secs) * 1000
    }

    /// Checks the settings: a plausible domain, a timeout from 1 minute to 24 hours.
    pub fn validate(&self) -> Result<(), StoreError> {
        let d = &self.domain;
        let ok = !d.is_empty()
            && d.len() <= 253
            && d.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        if !ok {
            return Err(StoreError::InvalidSite {
                field: "domain".into(),
                rule: format!(
                    "{d:?} must be 1 to 253 characters of letters, digits, '-', '.', '_' or ':'"
                ),
            });
        }
        if !(60..=86_400).contains(&self.session_timeout_secs) {
            return Err(StoreError::InvalidSite {
                field: "session_timeout_secs".into(),
                rule: "must be between 60 and 86400".into(),
            });
        }
        check_retention_days(self.retention_days)
    }
}

/// The one rule for a retention (a site's or an agency's): 30 days to 5 years.
pub(crate) fn check_retention_days(days: u32) -> Result<(), StoreError> {
    if (30..=1830).contains(&days) {
        Ok(())
    } else {
        Err(StoreError::InvalidSite {
            field: "retention_days".into(),
            rule: "must be between 30 and 1830 (5 years)".into(),
        })
    }
}
