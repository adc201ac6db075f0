//! Visitor identity: the client's id, or a cookieless keyed hash that rotates daily.

use crate::error::StoreError;
use crate::state::{SaltStore, VisitorRef};
use chrono::{DateTime, Days, Utc};
use sha2::{Digest, Sha256};
use std::sync::Arc;

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
    /// The candidates as [`crate::SessionState`] takes them (it makes the choice).
    pub fn visitor_ref(&self) -> VisitorRef<'_> {
        VisitorRef::Cookieless {
            today: &self.today,
            yesterday: &self.yesterday,
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
    pub async fn candidates(
        &self,
        at: DateTime<Utc>,
        site: &str,
        ip: &str,
        user_agent: &str,
    ) -> Result<VisitorCandidates, StoreError> {
        let day = at.date_naive();
        let yesterday = day.checked_sub_days(Days::new(1)).unwrap_or(day);
        let (today_salt, yesterday_salt) = (
            self.salts.salt_for(day).await?,
            self.salts.salt_for(yesterday).await?,
        );
        Ok(VisitorCandidates {
            today: keyed_hash(&today_salt, site, ip, user_agent),
            yesterday: keyed_hash(&yesterday_salt, site, ip, user_agent),
        })
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
    use crate::state::MemorySaltStore;
    use chrono::TimeZone;

    fn ident() -> VisitorIdentifier {
        VisitorIdentifier::new(Arc::new(MemorySaltStore::new(Arc::new(SeededRandom::new(
            7,
        )))))
    }

    #[test]
    fn same_request_same_day_same_id_and_days_differ() {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(async {
                let id = ident();
                let t1 = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
                let t2 = Utc.with_ymd_and_hms(2026, 3, 1, 23, 0, 0).unwrap();
                let t3 = Utc.with_ymd_and_hms(2026, 3, 2, 0, 10, 0).unwrap();
                let c = |t, site: &'static str, ip: &'static str| {
                    let id = &id;
                    async move { id.candidates(t, site, ip, "UA").await.expect("salts") }
                };
                let (a, b, cc) = (
                    c(t1, "a.com", "1.2.3.4").await,
                    c(t2, "a.com", "1.2.3.4").await,
                    c(t3, "a.com", "1.2.3.4").await,
                );
                assert_eq!(a.today, b.today);
                assert_ne!(a.today, cc.today);
                assert_eq!(
                    cc.yesterday, a.today,
                    "yesterday's salt is still recognised after midnight"
                );
                assert_ne!(a.today, c(t1, "b.com", "1.2.3.4").await.today);
                assert_ne!(a.today, c(t1, "a.com", "1.2.3.5").await.today);
                assert_eq!(a.today.len(), 16);
            });
    }
}
