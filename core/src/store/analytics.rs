//! [`Analytics`]: the front door for reads, over an event store and a config store.

use super::{ConfigStore, EventStore};
use crate::error::{QueryError, StoreError};
use crate::query::Query;
use crate::requests::{
    Funnel, FunnelResult, GoalsRequest, GoalsResult, RealtimeRequest, RealtimeResult,
};
use crate::result::QueryResult;
use crate::site::Site;
use chrono::{DateTime, Utc};

/// Answers requests that name their site: validates the request, looks the site up
/// in the config store (an unknown site is [`QueryError::UnknownSite`]) and runs the
/// request through the event store's trait method, so that a backend's override is
/// used wherever a request is answered. Cheap to make per request.
#[derive(Clone, Copy)]
pub struct Analytics<'a> {
    events: &'a dyn EventStore,
    config: &'a dyn ConfigStore,
}

impl std::fmt::Debug for Analytics<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics").finish_non_exhaustive()
    }
}

impl<'a> Analytics<'a> {
    /// Reads over `events`, with sites from `config`.
    pub fn new(events: &'a dyn EventStore, config: &'a dyn ConfigStore) -> Self {
        Self { events, config }
    }

    /// The site `domain`, or the unknown-site error every request reports.
    pub async fn site(&self, domain: &str) -> Result<Site, StoreError> {
        self.config
            .site(domain)
            .await?
            .ok_or_else(|| QueryError::UnknownSite(domain.to_owned()).into())
    }

    /// Answers a query (attribution included) as of `now`.
    pub async fn query(&self, q: &Query, now: DateTime<Utc>) -> Result<QueryResult, StoreError> {
        q.validate()?;
        let site = self.site(&q.site).await?;
        self.events.query(&site, q, now).await
    }

    /// Answers a funnel as of `now`.
    pub async fn funnel(&self, f: &Funnel, now: DateTime<Utc>) -> Result<FunnelResult, StoreError> {
        f.validate()?;
        let site = self.site(&f.site).await?;
        self.events.funnel(&site, f, now).await
    }

    /// Counts goal conversions as of `now`.
    pub async fn goals(
        &self,
        req: &GoalsRequest,
        now: DateTime<Utc>,
    ) -> Result<GoalsResult, StoreError> {
        req.validate()?;
        let site = self.site(&req.site).await?;
        self.events.goals(&site, req, now).await
    }

    /// Visitors in the last minutes as of `now`.
    pub async fn realtime(
        &self,
        req: &RealtimeRequest,
        now: DateTime<Utc>,
    ) -> Result<RealtimeResult, StoreError> {
        req.validate()?;
        let site = self.site(&req.site).await?;
        self.events.realtime(&site, req, now).await
    }
}
