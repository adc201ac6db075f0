//! Shared ingest state, async and fallible so that several ingest processes can
//! share it through a backend such as Redis: [`SessionState`] (each visitor's open
//! sessions) and [`SaltStore`] (the daily salts of cookieless visitor ids), with
//! in-memory implementations.

use crate::clock::RandomSource;
use crate::error::StoreError;
use crate::session::{Observation, Sessionizer};
use crate::store::{ConfigKey, ConfigKind, ConfigStore};
use async_trait::async_trait;
use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};

/// Who an event is from, as the state is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitorRef<'a> {
    /// A known id (the client's own).
    Id(&'a str),
    /// A cookieless visitor: the ids under today's and yesterday's salts.
    /// Yesterday's is kept while that visitor has a session open (so a visit
    /// crossing midnight continues); today's otherwise.
    Cookieless {
        /// The id under today's salt.
        today: &'a str,
        /// The id under yesterday's salt.
        yesterday: &'a str,
    },
}

/// Each visitor's open sessions, for live ingest.
///
/// Implementations make each call atomic per visitor (a Redis backend in one round
/// trip, a script or a transaction), so that two ingest processes agree on sessions
/// and visitor ids. A visitor's state is kept at least until no event can join
/// their last session (its end plus the timeout: a visit crossing midnight keeps
/// yesterday's id) and may be kept longer, so that ingest-time session numbers go
/// on counting; past that it may be forgotten, and a visitor's numbers start again
/// at 1. (Stores derive exact sessions, numbers included, when they answer.)
/// [`SessionState::evict_idle`] forgets expired state where the backend has no
/// expiry of its own.
#[async_trait]
pub trait SessionState: Send + Sync {
    /// Chooses the visitor and places an activity event at `ts_ms` in its session.
    async fn observe(
        &self,
        site: &str,
        visitor: VisitorRef<'_>,
        ts_ms: i64,
        timeout_ms: i64,
    ) -> Result<Observation, StoreError>;

    /// [`SessionState::observe`] answered at once, by a state that needs no waiting
    /// (it lives in this process); `None` sends the caller to `observe`. The
    /// default is `None`; the in-memory state overrides it, which spares each hit
    /// a boxed future.
    fn observe_now(
        &self,
        _site: &str,
        _visitor: VisitorRef<'_>,
        _ts_ms: i64,
        _timeout_ms: i64,
    ) -> Option<Result<Observation, StoreError>> {
        None
    }

    /// Chooses the visitor for an event that is not activity (a refund) without
    /// placing it in a session.
    async fn choose(
        &self,
        site: &str,
        visitor: VisitorRef<'_>,
        ts_ms: i64,
        timeout_ms: i64,
    ) -> Result<String, StoreError>;

    /// Forgets visitors whose state expired before `now_ms`; how many.
    async fn evict_idle(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Forgets one visitor of `site` (erasure, GDPR); whether there was state.
    async fn forget(&self, site: &str, visitor: &str) -> Result<bool, StoreError>;

    /// Visitors tracked.
    async fn visitors(&self) -> Result<u64, StoreError>;
}

/// [`SessionState`] in memory: [`Sessionizer`]s in shards by visitor, each behind
/// its own lock; bounded by expiry and, if given, a most-visitors cap (the visitors
/// closest to expiry are forgotten first when it is exceeded).
pub struct MemorySessionState {
    shards: Vec<Mutex<Sessionizer>>,
    hasher: crate::hash::FastBuild,
    max_visitors: usize,
    grace_ms: i64,
}

impl std::fmt::Debug for MemorySessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySessionState")
            .field("shards", &self.shards.len())
            .field("max_visitors", &self.max_visitors)
            .finish()
    }
}

impl Default for MemorySessionState {
    fn default() -> Self {
        Self::new()
    }
}

const SHARDS: usize = 16;

impl MemorySessionState {
    /// Empty state without a cap.
    pub fn new() -> Self {
        Self::with_expected_visitors(0)
    }

    /// Empty state whose shards start with room for `n` visitors in all (an import
    /// that knows roughly how many lines it has).
    pub fn with_expected_visitors(n: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Sessionizer::with_expected_visitors(n / SHARDS)))
                .collect(),
            hasher: crate::hash::FastBuild::default(),
            max_visitors: usize::MAX,
            grace_ms: Self::DEFAULT_GRACE_MS,
        }
    }

    /// How long past its expiry a visitor's state is kept by default: 6 hours.
    pub const DEFAULT_GRACE_MS: i64 = 6 * 3_600_000;

    /// Keeps state `ms` past the point where no event can join the visitor's last
    /// session (0: forget it as soon as that passes).
    pub fn with_idle_grace_ms(mut self, ms: i64) -> Self {
        self.grace_ms = ms.max(0);
        self
    }

    /// Caps the visitors kept: past it, [`SessionState::evict_idle`] forgets the
    /// visitors whose state expires soonest, down to nine tenths of the cap.
    pub fn with_max_visitors(mut self, n: usize) -> Self {
        self.max_visitors = n.max(1);
        self
    }

    fn shard(&self, visitor: &str) -> std::sync::MutexGuard<'_, Sessionizer> {
        let mut h = self.hasher.build_hasher();
        h.write(visitor.as_bytes());
        // The top bits of a second mix: the shard's own map hashes the same key with
        // the same hasher, and taking its low bits here would leave most of that
        // map's buckets unused.
        let i = (h.finish().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn chosen<'v>(
        &self,
        site: &str,
        visitor: VisitorRef<'v>,
        ts_ms: i64,
        timeout_ms: i64,
    ) -> &'v str {
        match visitor {
            VisitorRef::Id(id) => id,
            VisitorRef::Cookieless { today, yesterday } => {
                if today != yesterday
                    && self
                        .shard(yesterday)
                        .has_open_session(site, yesterday, ts_ms, timeout_ms)
                {
                    yesterday
                } else {
                    today
                }
            }
        }
    }

    /// Places an event (synchronous form of [`SessionState::observe`]).
    pub fn observe_sync(
        &self,
        site: &str,
        visitor: VisitorRef<'_>,
        ts_ms: i64,
        timeout_ms: i64,
    ) -> Observation {
        let id = self.chosen(site, visitor, ts_ms, timeout_ms);
        // State past its grace is gone, evicted yet or not.
        self.shard(id)
            .observe_unless_stale(site, id, ts_ms, timeout_ms, self.grace_ms)
    }

    /// Visitors tracked.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no visitor is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets expired visitors, then enforces the cap (synchronous form of
    /// [`SessionState::evict_idle`]).
    pub fn evict_idle_sync(&self, now_ms: i64) -> u64 {
        let mut evicted = 0;
        for s in &self.shards {
            evicted += s
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .evict_expired(now_ms.saturating_sub(self.grace_ms)) as u64;
        }
        let n = self.len();
        if n > self.max_visitors {
            // Forget the soonest to expire, down to nine tenths of the cap.
            let keep = self.max_visitors / 10 * 9;
            let mut expiries: Vec<i64> = Vec::with_capacity(n);
            for s in &self.shards {
                expiries.extend(s.lock().unwrap_or_else(|e| e.into_inner()).expiries());
            }
            let cut = n - keep;
            let (_, threshold, _) = expiries.select_nth_unstable(cut - 1);
            let threshold = *threshold;
            for s in &self.shards {
                evicted += s
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .evict_expired(threshold + 1) as u64;
            }
        }
        evicted
    }
}

#[async_trait]
impl SessionState for MemorySessionState {
    async fn observe(
        &self,
        site: &str,
        visitor: VisitorRef<'_>,
        ts_ms: i64,
        timeout_ms: i64,
    ) -> Result<Observation, StoreError> {
        Ok(self.observe_sync(site, visitor, ts_ms, timeout_ms))
    }

    fn observe_now(
        &self,
        site: &str,
        visitor: VisitorRef<'_>,
        ts_ms: i64,
        timeout_ms: i64,
    ) -> Option<Result<Observation, StoreError>> {
        Some(Ok(self.observe_sync(site, visitor, ts_ms, timeout_ms)))
    }

    async fn choose(
        &self,
        site: &str,
        visitor: VisitorRef<'_>,
        ts_ms: i64,
        timeout_ms: i64,
    ) -> Result<String, StoreError> {
        Ok(self.chosen(site, visitor, ts_ms, timeout_ms).to_owned())
    }

    async fn evict_idle(&self, now_ms: i64) -> Result<u64, StoreError> {
        Ok(self.evict_idle_sync(now_ms))
    }

    async fn visitors(&self) -> Result<u64, StoreError> {
        Ok(self.len() as u64)
    }

    async fn forget(&self, site: &str, visitor: &str) -> Result<bool, StoreError> {
        let mut shard = self.shard(visitor);
        let had = shard.get(site, visitor).is_some();
        shard.forget(site, visitor);
        Ok(had)
    }
}

/// Daily secret salts of cookieless visitor ids. A salt, once made, never changes;
/// salts older than yesterday must be forgotten ([`SaltStore::forget_before`]), so
/// that a visitor cannot be linked across days.
#[async_trait]
pub trait SaltStore: Send + Sync {
    /// The salt for `day` (UTC), created on first use, atomically: two processes
    /// never make two salts for one day.
    async fn salt_for(&self, day: NaiveDate) -> Result<[u8; 32], StoreError>;

    /// Forgets the salts of days before `day`; how many.
    async fn forget_before(&self, day: NaiveDate) -> Result<u64, StoreError>;
}

fn new_salt(rng: &dyn RandomSource) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill(&mut s);
    s
}

/// Salts in memory, drawn from an injected [`RandomSource`] (use
/// [`crate::OsRandom`] outside tests).
pub struct MemorySaltStore {
    rng: Arc<dyn RandomSource>,
    salts: Mutex<BTreeMap<NaiveDate, [u8; 32]>>,
}

impl MemorySaltStore {
    /// A store drawing new salts from `rng`.
    pub fn new(rng: Arc<dyn RandomSource>) -> Self {
        Self {
            rng,
            salts: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NaiveDate, [u8; 32]>> {
        self.salts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for MemorySaltStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySaltStore").finish_non_exhaustive()
    }
}

#[async_trait]
impl SaltStore for MemorySaltStore {
    async fn salt_for(&self, day: NaiveDate) -> Result<[u8; 32], StoreError> {
        Ok(*self
            .lock()
            .entry(day)
            .or_insert_with(|| new_salt(self.rng.as_ref())))
    }

    async fn forget_before(&self, day: NaiveDate) -> Result<u64, StoreError> {
        let mut salts = self.lock();
        let before = salts.len();
        salts.retain(|d, _| *d >= day);
        Ok((before - salts.len()) as u64)
    }
}

/// Salts kept in a [`ConfigStore`] (records of kind [`ConfigKind::Salt`]), created
/// with its atomic `put_if_absent`: every process sharing the config store agrees.
pub struct ConfigSalts {
    config: Arc<dyn ConfigStore>,
    rng: Arc<dyn RandomSource>,
}

impl ConfigSalts {
    /// Salts in `config`, new ones drawn from `rng`.
    pub fn new(config: Arc<dyn ConfigStore>, rng: Arc<dyn RandomSource>) -> Self {
        Self { config, rng }
    }
}

impl std::fmt::Debug for ConfigSalts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSalts").finish_non_exhaustive()
    }
}

#[async_trait]
impl SaltStore for ConfigSalts {
    async fn salt_for(&self, day: NaiveDate) -> Result<[u8; 32], StoreError> {
        let key = ConfigKey::new(ConfigKind::Salt, "", day.to_string());
        let fresh = new_salt(self.rng.as_ref());
        match self.config.put_if_absent(&key, &fresh).await? {
            None => Ok(fresh),
            Some(stored) => stored.try_into().map_err(|_| StoreError::Corrupt {
                what: format!("salt of {day}"),
                detail: "is not 32 bytes".into(),
            }),
        }
    }

    async fn forget_before(&self, day: NaiveDate) -> Result<u64, StoreError> {
        let cutoff = day.to_string();
        let mut n = 0;
        for r in self.config.list(ConfigKind::Salt, Some("")).await? {
            // Days are stored as YYYY-MM-DD: their text orders as the dates do.
            if r.name < cutoff {
                let key = ConfigKey::new(ConfigKind::Salt, "", r.name);
                n += u64::from(self.config.delete(&key).await?);
            }
        }
        Ok(n)
    }
}

/// Keeps the salts another [`SaltStore`] gave out (a salt never changes), so that
/// identifying a visitor asks the backend once per day, not once per hit.
pub struct CachedSalts {
    inner: Arc<dyn SaltStore>,
    cache: Mutex<BTreeMap<NaiveDate, [u8; 32]>>,
}

impl CachedSalts {
    /// A cache in front of `inner`.
    pub fn new(inner: Arc<dyn SaltStore>) -> Self {
        Self {
            inner,
            cache: Mutex::new(BTreeMap::new()),
        }
    }
}

impl std::fmt::Debug for CachedSalts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedSalts").finish_non_exhaustive()
    }
}

#[async_trait]
impl SaltStore for CachedSalts {
    async fn salt_for(&self, day: NaiveDate) -> Result<[u8; 32], StoreError> {
        if let Some(s) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&day)
        {
            return Ok(*s);
        }
        let salt = self.inner.salt_for(day).await?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(day, salt);
        Ok(salt)
    }

    async fn forget_before(&self, day: NaiveDate) -> Result<u64, StoreError> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d, _| *d >= day);
        self.inner.forget_before(day).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SeededRandom;
    use crate::memory::MemoryConfig;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn cookieless_visitors_keep_yesterdays_id_while_their_session_is_open() {
        let state = MemorySessionState::new().with_idle_grace_ms(0);
        const T: i64 = 1_800_000;
        let first = state.observe_sync("s", VisitorRef::Id("y"), 0, T);
        assert_eq!(first.session_number, 1);
        let both = VisitorRef::Cookieless {
            today: "t",
            yesterday: "y",
        };
        assert_eq!(state.observe_sync("s", both, T, T).visitor_id, "y");
        assert_eq!(state.observe_sync("s", both, 3 * T, T).visitor_id, "t");
        assert_eq!(state.len(), 2);
        assert_eq!(state.evict_idle_sync(3 * T), 1, "y expired at 2T");
        assert_eq!(state.len(), 1);
    }

    /// The answer without waiting is the answer `observe` gives, and both move the
    /// same state; a state that cannot answer at once says so.
    #[test]
    fn observing_now_is_observing() {
        const T: i64 = 1_800_000;
        let (now, later) = (MemorySessionState::new(), MemorySessionState::new());
        let steps = [
            ("a", 0),
            ("b", 10),
            ("a", 20),
            ("a", 2 * T),
            ("b", 5),
            ("a", T),
        ];
        for (visitor, ts) in steps {
            let v = VisitorRef::Id(visitor);
            let answered = now
                .observe_now("s", v, ts, T)
                .expect("in memory")
                .expect("ok");
            let awaited = block_on(later.observe("s", v, ts, T)).expect("ok");
            assert_eq!(answered, awaited, "{visitor} at {ts}");
        }
        struct Remote;
        #[async_trait]
        impl SessionState for Remote {
            async fn observe(
                &self,
                _: &str,
                _: VisitorRef<'_>,
                _: i64,
                _: i64,
            ) -> Result<Observation, StoreError> {
                unreachable!()
            }
            async fn choose(
                &self,
                _: &str,
                _: VisitorRef<'_>,
                _: i64,
                _: i64,
            ) -> Result<String, StoreError> {
                unreachable!()
            }
            async fn evict_idle(&self, _: i64) -> Result<u64, StoreError> {
                Ok(0)
            }
            async fn forget(&self, _: &str, _: &str) -> Result<bool, StoreError> {
                Ok(false)
            }
            async fn visitors(&self) -> Result<u64, StoreError> {
                Ok(0)
            }
        }
        assert!(Remote.observe_now("s", VisitorRef::Id("a"), 0, T).is_none());
    }

    #[test]
    fn the_cap_forgets_the_soonest_to_expire() {
        let state = MemorySessionState::new().with_max_visitors(100);
        for i in 0..200 {
            state.observe_sync("s", VisitorRef::Id(&format!("v{i}")), i, 1000);
        }
        assert_eq!(state.evict_idle_sync(0), 110);
        assert_eq!(state.len(), 90);
        assert_eq!(
            state
                .observe_sync("s", VisitorRef::Id("v199"), 300, 1000)
                .session_number,
            1,
            "the latest visitors are kept"
        );
        assert_eq!(state.len(), 90);
    }

    #[test]
    fn config_salts_are_made_once_and_forgotten_on_request() {
        block_on(async {
            let config: Arc<dyn ConfigStore> = Arc::new(MemoryConfig::new());
            let a = ConfigSalts::new(Arc::clone(&config), Arc::new(SeededRandom::new(1)));
            let b = ConfigSalts::new(Arc::clone(&config), Arc::new(SeededRandom::new(2)));
            let d1 = NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
            let d2 = NaiveDate::from_ymd_opt(2026, 3, 2).expect("date");
            let s1 = a.salt_for(d1).await.expect("salt");
            assert_eq!(b.salt_for(d1).await.expect("salt"), s1, "one salt per day");
            assert_ne!(a.salt_for(d2).await.expect("salt"), s1);
            let cached = CachedSalts::new(Arc::new(b));
            assert_eq!(cached.salt_for(d1).await.expect("salt"), s1);
            assert_eq!(cached.forget_before(d2).await.expect("forget"), 1);
            assert_ne!(
                a.salt_for(d1).await.expect("salt"),
                s1,
                "a forgotten salt is never made again the same"
            );
        });
    }
}
