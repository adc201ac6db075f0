//! The whole flow of a payment provider's webhook for a site: the site's secret,
//! the signature, replay by delivery id, the purchases stored through the pipeline.

use super::{parse_payments, Headers, Provider, WebhookError, WebhookVerifier};
use beacon_core::{IngestError, Pipeline, StoreError};

/// How long a provider's delivery id is remembered: Stripe retries for three days.
/// (The pipeline's housekeeping forgets ids older than [`beacon_core::backend::DELIVERY_RETENTION`].)
const RETENTION: chrono::Duration = beacon_core::backend::DELIVERY_RETENTION;

/// What a webhook delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookReceipt {
    /// Purchase and refund events newly stored.
    pub stored: usize,
    /// The delivery was taken before: nothing was done.
    pub duplicate: bool,
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The site is not known (HTTP 404).
    #[error("site: unknown site {0:?}")]
    UnknownSite(String),
    /// No secret is set for the provider on the site (HTTP 404).
    #[error("no {provider} webhook secret is set for {site}")]
    NoSecret {
        /// The provider.
        provider: Provider,
        /// The site.
        site: String,
    },
    /// The signature did not verify, or its time is too old (HTTP 401).
    #[error(transparent)]
    Unauthorized(WebhookError),
    /// The body or its headers are not what the provider sends (HTTP 400).
    #[error(transparent)]
    Malformed(WebhookError),
    /// Storing failed (busy: 503 with `Retry-After`); the provider's retry is
    /// taken.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl From<StoreError> for ReceiveError {
    fn from(e: StoreError) -> Self {
        ReceiveError::Ingest(e.into())
    }
}

/// Receives a provider's webhook for `site`: verified with the site's secret for
/// that provider (set with `ConfigStore::put_webhook_secret`), refused on replay
/// (per site and provider, remembered once what it carried is stored, so a
/// delivery that failed is taken again on the provider's retry), stored as
/// purchase and refund events through the pipeline's group commit (idempotent: one
/// order is one purchase whatever the provider resends).
pub async fn receive_webhook(
    pipeline: &Pipeline,
    provider: Provider,
    site: &str,
    headers: &Headers,
    body: &[u8],
) -> Result<WebhookReceipt, ReceiveError> {
    let site = site.to_ascii_lowercase();
    let config = pipeline.config();
    if config.site(&site).await?.is_none() {
        return Err(ReceiveError::UnknownSite(site));
    }
    let secret = config
        .webhook_secret(&site, provider.as_str())
        .await?
        .ok_or_else(|| ReceiveError::NoSecret {
            provider,
            site: site.clone(),
        })?;
    let now = pipeline.now();
    let refused = |e: WebhookError| match e {
        WebhookError::BadSignature(_) | WebhookError::StaleTimestamp { .. } => {
            ReceiveError::Unauthorized(e)
        }
        other => ReceiveError::Malformed(other),
    };
    WebhookVerifier::new(provider, secret)
        .verify(headers, body, now)
        .map_err(refused)?;
    let payments = parse_payments(provider, headers, body).map_err(refused)?;
    let Some(first) = payments.first() else {
        return Ok(WebhookReceipt {
            stored: 0,
            duplicate: false,
        });
    };
    let delivery = first.event_id.clone();
    if let Some(at) = config.delivery(&site, provider.as_str(), &delivery).await? {
        if now - at <= RETENTION {
            tracing::info!(provider = %provider, site = %site, delivery = %delivery, "webhook replay ignored");
            return Ok(WebhookReceipt {
                stored: 0,
                duplicate: true,
            });
        }
    }
    let events: Vec<_> = payments.iter().map(|p| p.to_event(&site, now)).collect();
    let stored = pipeline.store_events(events).await?;
    config
        .remember_delivery(&site, provider.as_str(), &delivery, now)
        .await?;
    tracing::info!(provider = %provider, site = %site, events = stored, "webhook stored");
    Ok(WebhookReceipt {
        stored,
        duplicate: false,
    })
}
