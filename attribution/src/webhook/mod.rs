//! Payment-provider webhooks: signature verification, replay protection and parsing
//! into purchase and refund events.

mod parse;
mod receive;
mod verify;

pub use parse::{parse_payments, Payment, PaymentKind};
pub use receive::{receive_webhook, ReceiveError, WebhookReceipt};
pub use verify::WebhookVerifier;

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

/// A payment provider whose webhooks Beacon reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Stripe (`Stripe-Signature`).
    Stripe,
    /// Lemon Squeezy (`X-Signature`).
    LemonSqueezy,
    /// Polar (Standard Webhooks headers).
    Polar,
    /// Shopify (`X-Shopify-Hmac-Sha256`).
    Shopify,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 4] = [
        Provider::Stripe,
        Provider::LemonSqueezy,
        Provider::Polar,
        Provider::Shopify,
    ];
    /// The name used in URLs and settings (`"stripe"`, `"lemonsqueezy"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::LemonSqueezy => "lemonsqueezy",
            Provider::Polar => "polar",
            Provider::Shopify => "shopify",
        }
    }
    /// Parses [`Provider::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Provider> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a webhook delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A required header is absent.
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    /// A header does not have the provider's format.
    #[error("header {header} is malformed: {reason}")]
    MalformedHeader {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No signature matched the body under the secret.
    #[error("{0} signature does not match the body")]
    BadSignature(Provider),
    /// The signed timestamp is outside the tolerance.
    #[error("signed timestamp {timestamp} is outside the {tolerance_secs} s tolerance")]
    StaleTimestamp {
        /// The signed unix time.
        timestamp: i64,
        /// The tolerance, seconds.
        tolerance_secs: i64,
    },
    /// This provider event id was already received.
    #[error("{provider} event {id} was already received")]
    Replayed {
        /// The provider.
        provider: Provider,
        /// Its event id.
        id: String,
    },
    /// The body is not the JSON the provider sends.
    #[error("body is not valid JSON: {0}")]
    BadJson(String),
    /// A field the event needs is missing or has the wrong form.
    #[error("field {field}: {reason}")]
    BadField {
        /// JSON path of the field (`data.object.amount_total`).
        field: String,
        /// The rule it broke.
        reason: String,
    },
}

impl WebhookError {
    fn malformed_header(header: &'static str, reason: &str) -> Self {
        WebhookError::MalformedHeader {
            header,
            reason: reason.to_owned(),
        }
    }
    pub(crate) fn field(field: &str, reason: impl Into<String>) -> Self {
        WebhookError::BadField {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Request headers, looked up case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    pairs: Vec<(String, String)>,
}

impl Headers {
    /// Headers from (name, value) pairs.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
    /// The first value of `name`, any case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn require(&self, name: &'static str) -> Result<&str, WebhookError> {
        self.get(name).ok_or(WebhookError::MissingHeader(name))
    }
}

/// Remembers provider event ids for a retention period and refuses a second delivery
/// of the same id (replay protection and idempotency). Bounded: the oldest ids are
/// dropped past `capacity`.
#[derive(Debug)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<(Provider, String), i64>>,
    retention_secs: i64,
    capacity: usize,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        // Stripe retries for up to three days; keep a week.
        Self::new(7 * 86_400, 1_000_000)
    }
}

impl ReplayGuard {
    /// A guard keeping ids for `retention_secs`, at most `capacity` of them.
    pub fn new(retention_secs: i64, capacity: usize) -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            retention_secs,
            capacity: capacity.max(1),
        }
    }

    /// Records `id`; an error if it was already recorded within the retention.
    pub fn check(
        &self,
        provider: Provider,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), WebhookError> {
        let now_s = now.timestamp();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = (provider, id.to_owned());
        if let Some(&at) = seen.get(&key) {
            if now_s - at <= self.retention_secs {
                return Err(WebhookError::Replayed {
                    provider,
                    id: id.to_owned(),
                });
            }
        }
        if seen.len() >= self.capacity {
            let cutoff = now_s - self.retention_secs;
            seen.retain(|_, at| *at >= cutoff);
            if seen.len() >= self.capacity {
                // Still full of fresh ids: drop the oldest half.
                let mut times: Vec<i64> = seen.values().copied().collect();
                times.sort_unstable();
                let median = times[times.len() / 2];
                seen.retain(|_, at| *at > median);
            }
        }
        seen.insert(key, now_s);
        Ok(())
    }
}
