//! [`Analytics`]: the front door for reads, over an event store and a config store.

use super::{ConfigStore, EventStore};
use crate::context::Context;
use crate::error::{QueryError, StoreError};
use crate::query::Query;
use crate::requests::{
    Funnel, FunnelResult, GoalsRequest, GoalsResult, RealtimeRequest, RealtimeResult,
};
use crate::result::QueryResult;
use crate::site::Site;

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

    /// Answers a query (attribution included); `cx` is a [`Context`] or just "now".
    pub async fn query(
        &self,
        q: &Query,
        cx: impl Into<Context>,
    ) -> Result<QueryResult, StoreError> {
        let cx: Context = cx.into();
        q.validate()?;
        let site = self.site(&q.site).await?;
        self.events.query(&site, q, &cx).await
    }

    /// Answers a funnel.
    pub async fn funnel(
        &self,
        f: &Funnel,
        cx: impl Into<Context>,
    ) -> Result<FunnelResult, StoreError> {
        let cx: Context = cx.into();
        f.validate()?;
        let site = self.site(&f.site).await?;
        self.events.funnel(&site, f, &cx).await
    }

    /// Counts goal conversions.
    pub async fn goals(
        &self,
        req: &GoalsRequest,
        cx: impl Into<Context>,
    ) -> Result<GoalsResult, StoreError> {
        let cx: Context = cx.into();
        req.validate()?;
        let site = self.site(&req.site).await?;
        self.events.goals(&site, req, &cx).await
    }

    /// Visitors in the last minutes.
    pub async fn realtime(
        &self,
        req: &RealtimeRequest,
        cx: impl Into<Context>,
    ) -> Result<RealtimeResult, StoreError> {
        let cx: Context = cx.into();
        req.validate()?;
        let site = self.site(&req.site).await?;
        self.events.realtime(&site, req, &cx).await
    }
}
