//! Signature verification, exactly as `shared/data/webhooks/SCHEMES.txt` describes each
//! provider's scheme. Every MAC is HMAC-SHA256 over the raw body bytes and is compared
//! in constant time (`Mac::verify_slice`).

use super::{Headers, Provider, WebhookError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Verifies one provider's webhook signatures with an endpoint secret.
#[derive(Clone)]
pub struct WebhookVerifier {
    provider: Provider,
    secret: String,
    tolerance_secs: i64,
}

impl std::fmt::Debug for WebhookVerifier {
    // The secret never appears in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("provider", &self.provider)
            .field("tolerance_secs", &self.tolerance_secs)
            .finish_non_exhaustive()
    }
}

/// True when `expected` is the HMAC-SHA256 under `key` of the concatenated `parts`
/// (constant-time comparison).
fn mac_matches(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(expected).is_ok()
}

impl WebhookVerifier {
    /// The SDKs' default timestamp tolerance, seconds (Stripe and Standard Webhooks).
    pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

    /// A verifier for `provider` with the endpoint's signing secret, as the provider
    /// shows it (Stripe's whole `whsec_...` string, Polar's secret as configured).
    pub fn new(provider: Provider, secret: impl Into<String>) -> Self {
        Self {
            provider,
            secret: secret.into(),
            tolerance_secs: Self::DEFAULT_TOLERANCE_SECS,
        }
    }

    /// Sets the timestamp tolerance (Stripe and Polar sign a timestamp).
    pub fn with_tolerance_secs(mut self, secs: i64) -> Self {
        self.tolerance_secs = secs;
        self
    }

    /// The provider.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Checks the signature of a delivery: `body` must be the raw bytes as received.
    pub fn verify(
        &self,
        headers: &Headers,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), WebhookError> {
        match self.provider {
            Provider::Stripe => self.verify_stripe(headers, body, now),
            Provider::LemonSqueezy => {
                let sig = headers.require("X-Signature")?;
                let sig = hex::decode(sig.trim()).map_err(|_| {
                    WebhookError::malformed_header("X-Signature", "must be a hex digest")
                })?;
                self.check(mac_matches(self.secret.as_bytes(), &[body], &sig))
            }
            Provider::Polar => self.verify_standard(headers, body, now),
            Provider::Shopify => {
                let (name, sig) = headers
                    .get("shopify-hmac-sha256")
                    .map(|v| ("shopify-hmac-sha256", v))
                    .or_else(|| {
                        headers
                            .get("X-Shopify-Hmac-Sha256")
                            .map(|v| ("X-Shopify-Hmac-Sha256", v))
                    })
                    .ok_or(WebhookError::MissingHeader("X-Shopify-Hmac-Sha256"))?;
                let sig = BASE64
                    .decode(sig.trim())
                    .map_err(|_| WebhookError::malformed_header(name, "must be base64"))?;
                self.check(mac_matches(self.secret.as_bytes(), &[body], &sig))
            }
        }
    }

    fn check(&self, ok: bool) -> Result<(), WebhookError> {
        if ok {
            Ok(())
        } else {
            Err(WebhookError::BadSignature(self.provider))
        }
    }

    fn stale(&self, ts: i64, now: DateTime<Utc>, both_ways: bool) -> Result<(), WebhookError> {
        let age = now.timestamp() - ts;
        if age > self.tolerance_secs || (both_ways && -age > self.tolerance_secs) {
            return Err(WebhookError::StaleTimestamp {
                timestamp: ts,
                tolerance_secs: self.tolerance_secs,
            });
        }
        Ok(())
    }

    /// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`; key = the whole secret string.
    fn verify_stripe(
        &self,
        headers: &Headers,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), WebhookError> {
        const H: &str = "Stripe-Signature";
        let header = headers.require(H)?;
        let mut t: Option<i64> = None;
        let mut v1: Vec<Vec<u8>> = Vec::new();
        for item in header.split(',') {
            let Some((k, v)) = item.trim().split_once('=') else {
                continue;
            };
            match k {
                "t" => {
                    t =
                        Some(v.parse().map_err(|_| {
                            WebhookError::malformed_header(H, "t must be unix seconds")
                        })?)
                }
                "v1" => {
                    if let Ok(sig) = hex::decode(v) {
                        v1.push(sig);
                    }
                }
                _ => {}
            }
        }
        let t = t.ok_or_else(|| WebhookError::malformed_header(H, "has no t= timestamp"))?;
        if v1.is_empty() {
            return Err(WebhookError::malformed_header(H, "has no v1= signature"));
        }
        let prefix = format!("{t}.");
        let ok = v1
            .iter()
            .any(|sig| mac_matches(self.secret.as_bytes(), &[prefix.as_bytes(), body], sig));
        self.check(ok)?;
        self.stale(t, now, false)
    }

    /// Standard Webhooks as Polar signs them: `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature: v1,<base64> ...`; tries the secret's raw bytes and, for a
    /// `whsec_` secret, its base64-decoded key.
    fn verify_standard(
        &self,
        headers: &Headers,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), WebhookError> {
        let id = headers.require("webhook-id")?;
        let ts_text = headers.require("webhook-timestamp")?.trim();
        let ts: i64 = ts_text.parse().map_err(|_| {
            WebhookError::malformed_header("webhook-timestamp", "must be unix seconds")
        })?;
        let sigs: Vec<Vec<u8>> = headers
            .require("webhook-signature")?
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| BASE64.decode(s).ok())
            .collect();
        if sigs.is_empty() {
            return Err(WebhookError::malformed_header(
                "webhook-signature",
                "has no v1,<base64> signature",
            ));
        }
        let mut keys: Vec<Vec<u8>> = vec![self.secret.as_bytes().to_vec()];
        if let Some(k) = self
            .secret
            .strip_prefix("whsec_")
            .and_then(|b| BASE64.decode(b).ok())
        {
            keys.push(k);
        }
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", body];
        let ok = keys
            .iter()
            .any(|k| sigs.iter().any(|sig| mac_matches(k, &parts, sig)));
        self.check(ok)?;
        self.stale(ts, now, true)
    }
}
