//! Visitor identity: the client's id, or a cookieless keyed hash that rotates daily.

use crate::clock::RandomSource;
use chrono::{DateTime, Days, NaiveDate, Utc};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Daily secret salts. Salts older than yesterday must be forgotten, so that a
/// cookieless visitor id cannot be linked across days.
pub trait SaltStore: Send + Sync {
    /// The salt for `day` (UTC), created on first use.
    fn salt_for(&self, day: NaiveDate) -> [u8; 32];
}

/// Salts in memory, drawn from an injected [`RandomSource`]; keeps today's and yesterday's only.
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
}

impl std::fmt::Debug for MemorySaltStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySaltStore").finish_non_exhaustive()
    }
}

impl SaltStore for MemorySaltStore {
    fn salt_for(&self, day: NaiveDate) -> [u8; 32] {
        let mut salts = self.salts.lock().unwrap_or_else(|e| e.into_inner());
        let salt = *salts.entry(day).or_insert_with(|| {
            let mut s = [0u8; 32];
            self.rng.fill(&mut s);
            s
        });
        // Forget every salt older than the day before the newest one.
        if let Some(newest) = salts.keys().next_back().copied() {
            let keep_from = newest.checked_sub_days(Days::new(1)).unwrap_or(newest);
            salts.retain(|d, _| *d >= keep_from);
        }
        salt
    }
}

/// The two ids a cookieless visitor may have right now: under today's salt and under
/// yesterday's. An ingest path keeps `yesterday` when that visitor has a session still
/// open (so a session crossing midnight continues), and uses `today` otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorCandidates {
    /// The id under today's salt.
    pub today: String,
    /// The id under yesterday's salt.
    pub yesterday: String,
}

impl VisitorCandidates {
    /// The visitor id: yesterday's hash if `has_open_session` says that visitor is
    /// still active, else today's. (Hashing can run before taking a session lock;
    /// only this choice needs it.)
    pub fn choose(self, has_open_session: impl Fn(&str) -> bool) -> String {
        if has_open_session(&self.yesterday) {
            self.yesterday
        } else {
            self.today
        }
    }
}

/// Computes visitor ids.
pub struct VisitorIdentifier {
    salts: Arc<dyn SaltStore>,
}

impl std::fmt::Debug for VisitorIdentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VisitorIdentifier").finish_non_exhaustive()
    }
}

impl VisitorIdentifier {
    /// An identifier using `salts`.
    pub fn new(salts: Arc<dyn SaltStore>) -> Self {
        Self { salts }
    }

    /// The cookieless candidates for a request at `at`.
    pub fn candidates(
        &self,
        at: DateTime<Utc>,
        site: &str,
        ip: &str,
        user_agent: &str,
    ) -> VisitorCandidates {
        let day = at.date_naive();
        let yesterday = day.checked_sub_days(Days::new(1)).unwrap_or(day);
        VisitorCandidates {
            today: keyed_hash(&self.salts.salt_for(day), site, ip, user_agent),
            yesterday: keyed_hash(&self.salts.salt_for(yesterday), site, ip, user_agent),
        }
    }

    /// The visitor id: the client's own id when it sent one; otherwise yesterday's
    /// hash if `has_open_session` says that visitor is still active, else today's.
    pub fn identify(
        &self,
        at: DateTime<Utc>,
        site: &str,
        client_id: Option<&str>,
        ip: &str,
        user_agent: &str,
        has_open_session: impl Fn(&str) -> bool,
    ) -> String {
        if let Some(id) = client_id {
            return id.to_owned();
        }
        self.candidates(at, site, ip, user_agent)
            .choose(has_open_session)
    }
}

/// SHA-256 over the salt and the length-prefixed parts, first 8 bytes as 16 hex digits.
fn keyed_hash(salt: &[u8; 32], site: &str, ip: &str, user_agent: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    for part in [site, ip, user_agent] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SeededRandom;
    use chrono::TimeZone;

    fn ident() -> VisitorIdentifier {
        VisitorIdentifier::new(Arc::new(MemorySaltStore::new(Arc::new(SeededRandom::new(
            7,
        )))))
    }

    #[test]
    fn same_request_same_day_same_id_and_days_differ() {
        let id = ident();
        let t1 = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 3, 1, 23, 0, 0).unwrap();
        let t3 = Utc.with_ymd_and_hms(2026, 3, 2, 0, 10, 0).unwrap();
        let a = id.candidates(t1, "a.com", "1.2.3.4", "UA");
        let b = id.candidates(t2, "a.com", "1.2.3.4", "UA");
        let c = id.candidates(t3, "a.com", "1.2.3.4", "UA");
        assert_eq!(a.today, b.today);
        assert_ne!(a.today, c.today);
        assert_eq!(
            c.yesterday, a.today,
            "yesterday's salt is still recognised after midnight"
        );
        assert_ne!(a.today, id.candidates(t1, "b.com", "1.2.3.4", "UA").today);
        assert_ne!(a.today, id.candidates(t1, "a.com", "1.2.3.5", "UA").today);
        assert_eq!(a.today.len(), 16);
    }

    #[test]
    fn open_session_keeps_yesterdays_id_across_midnight() {
        let id = ident();
        let before = Utc.with_ymd_and_hms(2026, 3, 1, 23, 55, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 3, 2, 0, 5, 0).unwrap();
        let v1 = id.identify(before, "a.com", None, "1.2.3.4", "UA", |_| false);
        let v2 = id.identify(after, "a.com", None, "1.2.3.4", "UA", |v| v == v1);
        assert_eq!(v1, v2);
        let v3 = id.identify(after, "a.com", None, "1.2.3.4", "UA", |_| false);
        assert_ne!(v1, v3);
        assert_eq!(
            id.identify(after, "a.com", Some("client"), "", "", |_| true),
            "client"
        );
    }

    #[test]
    fn old_salts_are_forgotten() {
        let store = MemorySaltStore::new(Arc::new(SeededRandom::new(1)));
        let d1 = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let s1 = store.salt_for(d1);
        store.salt_for(NaiveDate::from_ymd_opt(2026, 3, 3).unwrap());
        assert_eq!(store.salts.lock().unwrap().len(), 1);
        assert_ne!(
            store.salt_for(d1),
            s1,
            "a forgotten salt is never recreated the same"
        );
    }
}
