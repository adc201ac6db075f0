//! The storage traits' default methods: load the window of a backend's events a
//! request needs into the reference engine's structures, and run the engine. One
//! home for the lookback rule (how far a request must read beyond its range) and for
//! date-range resolution.

use super::{EventStore, KindSet, ScanRequest};
use crate::context::Context;
use crate::engine::{self, SiteData};
use crate::error::{QueryError, StoreError};
use crate::query::{DateRange, Query, ResolvedRange};
use crate::requests::{
    Funnel, FunnelResult, GoalsRequest, GoalsResult, RealtimeRequest, RealtimeResult,
};
use crate::result::QueryResult;
use crate::site::Site;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;

fn instant(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Streams the events of `req` into `data`, stopping when `cx` is cancelled.
async fn collect<S: EventStore + ?Sized>(
    store: &S,
    req: &ScanRequest,
    data: &mut SiteData,
    cx: &Context,
) -> Result<(), StoreError> {
    let mut batches = store.scan(req).await?;
    while let Some(batch) = batches.try_next().await? {
        cx.check()?;
        for e in &batch {
            data.push(e);
        }
    }
    Ok(())
}

/// The default [`EventStore::extent`]: a scan of every event's time.
pub(crate) async fn extent<S: EventStore + ?Sized>(
    store: &S,
    site: &str,
) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
    let mut batches = store.scan(&ScanRequest::new(site)).await?;
    let mut bounds: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    while let Some(batch) = batches.try_next().await? {
        for e in &batch {
            let t = e.timestamp;
            bounds = Some(match bounds {
                None => (t, t),
                Some((lo, hi)) => (lo.min(t), hi.max(t)),
            });
        }
    }
    Ok(bounds)
}

/// Resolves `range` for `site` at `now`, asking the store for its extent only when
/// the range needs it (`all`): the one resolver of every request kind and backend.
pub async fn resolve_range<S: EventStore + ?Sized>(
    store: &S,
    site: &Site,
    range: &DateRange,
    now: DateTime<Utc>,
) -> Result<ResolvedRange, StoreError> {
    let extent = if range.needs_extent() {
        store.extent(&site.domain).await?
    } else {
        None
    };
    Ok(range.resolve(site.timezone, now, extent))
}

/// Refuses a request whose site is not the one given.
pub(crate) fn same_site(request_site: &str, site: &Site) -> Result<(), QueryError> {
    if request_site != site.domain {
        return Err(QueryError::invalid(
            "site",
            format!(
                "{request_site:?} is not the site the request was run for ({:?})",
                site.domain
            ),
        ));
    }
    Ok(())
}

/// How much of a site's events a request reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Events from here (ms, inclusive)...
    pub(crate) lo: i64,
    /// ...to here (exclusive; `i64::MAX`: no end).
    pub(crate) hi: i64,
    /// Whether every session with events in `[lo, hi)` must be whole: then the
    /// window is widened until no session it touches can reach beyond it.
    pub(crate) whole_sessions: bool,
}

/// Loads the window's events of `site` into engine data, prepared (sessions derived
/// with the site's timeout).
///
/// With `whole_sessions`, a session of the window is whole when nothing unread can
/// join it: its first event is at least a timeout after the window's start (or the
/// window starts at the site's first event) and its last event more than a timeout
/// before the window's end (or the window ends after the last event). Sides that
/// fail are widened by a doubling margin and only the new slices are read, so the
/// read stays within the range plus the lookback its sessions need.
pub(crate) async fn load<S: EventStore + ?Sized>(
    store: &S,
    site: &Site,
    w: Window,
    cx: &Context,
) -> Result<SiteData, StoreError> {
    let timeout = site.session_timeout_ms();
    let mut data = SiteData::new(timeout);
    let scan = |lo: i64, hi: i64| {
        let to = (hi != i64::MAX).then(|| instant(hi));
        ScanRequest::new(site.domain.clone())
            .between(Some(instant(lo)), to)
            .kinds(KindSet::ACTIVITY)
    };
    if !w.whole_sessions {
        collect(store, &scan(w.lo, w.hi), &mut data, cx).await?;
        data.prepare(timeout);
        return Ok(data);
    }
    let Some((first, last)) = store.extent(&site.domain).await? else {
        return Ok(data);
    };
    let (first, last) = (first.timestamp_millis(), last.timestamp_millis());
    // [a, b) is read; a == first or b > last means that side holds everything.
    let mut a = w.lo.saturating_sub(timeout).max(first);
    let mut b = if w.hi == i64::MAX {
        i64::MAX
    } else {
        w.hi.saturating_add(timeout).min(last.saturating_add(1))
    };
    if a < b {
        collect(store, &scan(a, b), &mut data, cx).await?;
    }
    let mut margin = timeout.max(3_600_000);
    loop {
        data.prepare(timeout);
        let (mut left, mut right) = (false, false);
        for s in &data.table.sessions {
            let (f, l) = data.table.span(s);
            if l < w.lo || f >= w.hi {
                continue;
            }
            left |= a > first && f - a < timeout;
            right |= b <= last && b - l <= timeout;
            if left && right {
                break;
            }
        }
        if !left && !right {
            return Ok(data);
        }
        if left {
            let a2 = a.saturating_sub(margin).max(first);
            collect(store, &scan(a2, a), &mut data, cx).await?;
            a = a2;
        }
        if right {
            let b2 = b.saturating_add(margin).min(last.saturating_add(1));
            collect(store, &scan(b, b2), &mut data, cx).await?;
            b = b2;
        }
        margin = margin.saturating_mul(2);
    }
}

/// The default [`EventStore::query`].
pub(crate) async fn query<S: EventStore + ?Sized>(
    store: &S,
    site: &Site,
    q: &Query,
    cx: &Context,
) -> Result<QueryResult, StoreError> {
    q.validate()?;
    same_site(&q.site, site)?;
    let range = resolve_range(store, site, &q.date_range, cx.now).await?;
    let lookback = engine::lookback_ms(q);
    let mut data = load(
        store,
        site,
        Window {
            lo: range.start_ms().saturating_sub(lookback),
            hi: range.end_ms(),
            whole_sessions: true,
        },
        cx,
    )
    .await?;
    if q.attribution.is_some() {
        // Refunds reverse their order's credit whenever they were made.
        let refunds = ScanRequest::new(site.domain.clone()).kinds(KindSet::REFUNDS);
        collect(store, &refunds, &mut data, cx).await?;
    }
    Ok(engine::execute(&data, site, q, &range, cx)?)
}

/// The default [`EventStore::funnel`].
pub(crate) async fn funnel<S: EventStore + ?Sized>(
    store: &S,
    site: &Site,
    f: &Funnel,
    cx: &Context,
) -> Result<FunnelResult, StoreError> {
    f.validate()?;
    same_site(&f.site, site)?;
    let range = resolve_range(store, site, &f.date_range, cx.now).await?;
    let data = load(
        store,
        site,
        Window {
            lo: range.start_ms(),
            hi: range.end_ms(),
            whole_sessions: f.breakdown.is_some(),
        },
        cx,
    )
    .await?;
    Ok(engine::funnel(&data.table, f, &range, cx)?)
}

/// The default [`EventStore::goals`].
pub(crate) async fn goals<S: EventStore + ?Sized>(
    store: &S,
    site: &Site,
    req: &GoalsRequest,
    cx: &Context,
) -> Result<GoalsResult, StoreError> {
    req.validate()?;
    same_site(&req.site, site)?;
    let range = resolve_range(store, site, &req.date_range, cx.now).await?;
    let data = load(
        store,
        site,
        Window {
            lo: range.start_ms(),
            hi: range.end_ms(),
            whole_sessions: false,
        },
        cx,
    )
    .await?;
    Ok(engine::goals(&data.table, req, &range, cx)?)
}

/// The start of a realtime request's window, ms.
pub(crate) fn realtime_since(req: &RealtimeRequest, now: DateTime<Utc>) -> i64 {
    now.timestamp_millis() - i64::from(req.minutes) * 60_000
}

/// The default [`EventStore::realtime`].
pub(crate) async fn realtime<S: EventStore + ?Sized>(
    store: &S,
    site: &Site,
    req: &RealtimeRequest,
    cx: &Context,
) -> Result<RealtimeResult, StoreError> {
    req.validate()?;
    same_site(&req.site, site)?;
    let since = realtime_since(req, cx.now);
    let data = load(
        store,
        site,
        Window {
            lo: since,
            hi: i64::MAX,
            whole_sessions: true,
        },
        cx,
    )
    .await?;
    Ok(engine::realtime(&data.table, req, since, cx)?)
}
