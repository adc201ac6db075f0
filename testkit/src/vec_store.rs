//! A backend that implements only the required trait methods, over a `Vec`: it runs
//! the suite through the traits' defaults, as a new backend would before it pushes
//! work into its database.

use async_trait::async_trait;
use beacon_core::backend::{AppendReport, EventBatches, ScanRequest};
use beacon_core::{EraseScope, Event, EventStore, StoreError};
use std::collections::HashSet;
use std::sync::Mutex;

/// Events in a `Vec`; only the required methods.
#[derive(Debug, Default)]
pub struct VecStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<Event>,
    ids: HashSet<(String, uuid::Uuid)>,
}

impl VecStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl crate::Backend for VecStore {
    fn events(&self) -> Option<&dyn EventStore> {
        Some(self)
    }
}

#[async_trait]
impl EventStore for VecStore {
    async fn append(&self, events: &[Event]) -> Result<AppendReport, StoreError> {
        let mut inner = self.lock();
        let mut report = AppendReport::default();
        for e in events {
            if !e.id.is_nil() && !inner.ids.insert((e.site.clone(), e.id)) {
                report.duplicates.push(e.id);
                continue;
            }
            inner.events.push(e.clone());
            report.stored += 1;
        }
        Ok(report)
    }

    async fn scan(&self, req: &ScanRequest) -> Result<EventBatches<'_>, StoreError> {
        // Batch by batch under the lock, from a position in the Vec.
        let req = req.clone();
        Ok(Box::pin(futures_util::stream::try_unfold(
            0usize,
            move |mut at| {
                let req = req.clone();
                async move {
                    let inner = self.lock();
                    let mut batch = Vec::new();
                    while at < inner.events.len() && batch.len() < req.batch_limit() {
                        if req.matches(&inner.events[at]) {
                            batch.push(inner.events[at].clone());
                        }
                        at += 1;
                    }
                    Ok::<_, StoreError>((!batch.is_empty()).then_some((batch, at)))
                }
            },
        )))
    }

    async fn erase(&self, site: &str, scope: EraseScope) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let Inner { events, ids } = &mut *inner;
        let before = events.len();
        events.retain(|e| {
            let erase = e.site == site
                && match &scope {
                    EraseScope::Visitor(v) => e.identity.visitor_id == *v,
                    EraseScope::Before(t) => e.timestamp < *t,
                    _ => true,
                };
            if erase {
                ids.remove(&(e.site.clone(), e.id));
            }
            !erase
        });
        Ok((before - events.len()) as u64)
    }
}
