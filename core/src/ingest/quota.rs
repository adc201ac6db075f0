//! Monthly event quotas of agencies' plans, on live ingest.

use super::IngestError;
use crate::access::Agency;
use crate::site::Site;
use crate::store::{ConfigStore, EventStore, ScanRequest};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an agency's plan is kept before it is read again.
const PLAN_FRESH_FOR: Duration = Duration::from_secs(5);

/// Each agency's events this month (UTC), counted from the store once and then on
/// each commit; checked before hits are taken.
#[derive(Default)]
pub(crate) struct Quotas {
    used: Mutex<HashMap<String, (u32, u64)>>,
    plans: Mutex<HashMap<String, (Instant, Option<Agency>)>>,
}

/// `2026-12` as a number (`202612`).
fn month_key(at: DateTime<Utc>) -> u32 {
    at.year() as u32 * 100 + at.month()
}

/// The first instant of `at`'s month and of the next.
fn month_bounds(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = Utc
        .with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(at);
    let (y, m) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    let end = Utc
        .with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or(at);
    (start, end)
}

impl Quotas {
    async fn agency(
        &self,
        config: &dyn ConfigStore,
        name: &str,
    ) -> Result<Option<Agency>, IngestError> {
        if let Some((at, a)) = self
            .plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            if at.elapsed() < PLAN_FRESH_FOR {
                return Ok(a.clone());
            }
        }
        let a = config.agency(name).await?;
        self.plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), (Instant::now(), a.clone()));
        Ok(a)
    }

    /// The events `agency` took this month: counted once from the store.
    async fn used(
        &self,
        events: &dyn EventStore,
        config: &dyn ConfigStore,
        agency: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, IngestError> {
        let key = month_key(now);
        if let Some(&(m, n)) = self
            .used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(agency)
        {
            if m == key {
                return Ok(n);
            }
        }
        let (from, to) = month_bounds(now);
        let mut n = 0;
        for site in config.sites().await?.iter().filter(|s| s.agency == agency) {
            let mut req = ScanRequest::new(&site.domain);
            req.from = Some(from);
            req.to = Some(to);
            n += events.count(&req).await?;
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        // A commit counted meanwhile is in the store's count already.
        used.insert(agency.to_owned(), (key, n));
        Ok(n)
    }

    /// Refuses the hits if an agency would go past its plan's monthly events.
    pub(crate) async fn check(
        &self,
        events: &dyn EventStore,
        config: &dyn ConfigStore,
        per_agency: &HashMap<String, u64>,
        now: DateTime<Utc>,
    ) -> Result<(), IngestError> {
        for (name, &n) in per_agency {
            let Some(agency) = self.agency(config, name).await? else {
                continue;
            };
            let Some(limit) = agency.plan.monthly_events else {
                continue;
            };
            let used = self.used(events, config, name, now).await?;
            if used.saturating_add(n) > limit {
                let (_, next) = month_bounds(now);
                return Err(IngestError::QuotaExceeded {
                    agency: agency.name,
                    plan: agency.plan.name,
                    limit,
                    month: format!("{:04}-{:02}", now.year(), now.month()),
                    retry_after: (next - now).to_std().unwrap_or(Duration::from_secs(1)),
                });
            }
        }
        Ok(())
    }

    /// Counts `n` events stored for `agency` at `now`.
    pub(crate) fn add(&self, agency: &str, n: u64, now: DateTime<Utc>) {
        let key = month_key(now);
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((m, count)) = used.get_mut(agency) {
            if *m == key {
                *count += n;
            }
        }
    }
}

/// How many of `sites`' events go to each agency.
pub(crate) fn per_agency<'a>(sites: impl Iterator<Item = &'a Site>) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for s in sites {
        *out.entry(s.agency.clone()).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        let at: DateTime<Utc> = "2026-12-31T23:59:59Z".parse().unwrap();
        assert_eq!(month_key(at), 202612);
        let (a, b) = month_bounds(at);
        assert_eq!(a.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2027-01-01T00:00:00+00:00");
    }
}
