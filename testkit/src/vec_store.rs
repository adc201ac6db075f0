//! A backend that implements only the required trait methods, over a `Vec`: it runs
//! the suite through the defaulted `query`, as a new backend would before it pushes
//! work into its database.

use async_trait::async_trait;
use beacon_core::{EraseScope, Event, EventStore, Site, SiteStore, StoreError};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Events in a `Vec`, sites in a map; only the required methods.
#[derive(Debug, Default)]
pub struct VecStore {
    events: Mutex<Vec<Event>>,
    sites: Mutex<BTreeMap<String, Site>>,
}

impl VecStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl EventStore for VecStore {
    async fn append(&self, events: &[Event]) -> Result<(), StoreError> {
        let sites = self.sites.lock().expect("sites lock");
        if let Some(e) = events.iter().find(|e| !sites.contains_key(&e.site)) {
            return Err(StoreError::UnknownSite(e.site.clone()));
        }
        self.events
            .lock()
            .expect("events lock")
            .extend_from_slice(events);
        Ok(())
    }

    async fn scan(
        &self,
        site: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .events
            .lock()
            .expect("events lock")
            .iter()
            .filter(|e| {
                e.site == site
                    && from.is_none_or(|f| e.timestamp >= f)
                    && to.is_none_or(|t| e.timestamp < t)
            })
            .cloned()
            .collect())
    }

    async fn erase(&self, site: &str, scope: EraseScope) -> Result<u64, StoreError> {
        let mut events = self.events.lock().expect("events lock");
        let before = events.len();
        events.retain(|e| {
            e.site != site
                || match &scope {
                    EraseScope::All => false,
                    EraseScope::Visitor(v) => e.identity.visitor_id != *v,
                }
        });
        Ok((before - events.len()) as u64)
    }
}

#[async_trait]
impl SiteStore for VecStore {
    async fn put_site(&self, site: Site) -> Result<(), StoreError> {
        site.validate()?;
        self.sites
            .lock()
            .expect("sites lock")
            .insert(site.domain.clone(), site);
        Ok(())
    }
    async fn site(&self, domain: &str) -> Result<Option<Site>, StoreError> {
        Ok(self.sites.lock().expect("sites lock").get(domain).cloned())
    }
    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        Ok(self
            .sites
            .lock()
            .expect("sites lock")
            .values()
            .cloned()
            .collect())
    }
    async fn remove_site(&self, domain: &str) -> Result<bool, StoreError> {
        self.events
            .lock()
            .expect("events lock")
            .retain(|e| e.site != domain);
        Ok(self
            .sites
            .lock()
            .expect("sites lock")
            .remove(domain)
            .is_some())
    }
}
