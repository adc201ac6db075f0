//! Who may read and write what: agencies own sites, API tokens grant a scope over
//! an agency's sites or one site.
//!
//! A token's secret is 256 random bits, shown once (`bk_` and 64 hex digits); the
//! store keeps its SHA-256 and its first 8 hex digits, the prefix it is looked up
//! by. (A slow password hash such as argon2 is for what people choose; a 256-bit
//! random secret cannot be guessed, so a fast hash loses nothing and keeps every
//! request cheap.)

use crate::clock::RandomSource;
use crate::error::{QueryError, StoreError};
use crate::site::Site;
use crate::store::ConfigStore;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The agency a single-user install's sites belong to.
pub const OWNER_AGENCY: &str = "owner";

/// What a token's secret starts with.
const TOKEN_MARK: &str = "bk_";

/// How many hex digits of the secret name the token.
const PREFIX_LEN: usize = 8;

/// An account that owns sites (an agency and its clients' sites, or a single
/// owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agency {
    /// Its name: 1 to 64 letters, digits, `-`, `_` or `.`.
    pub name: String,
    /// When it was created.
    pub created: DateTime<Utc>,
}

impl Agency {
    /// An agency named `name`, created at `now`.
    pub fn new(name: impl Into<String>, now: DateTime<Utc>) -> Self {
        Self {
            name: name.into(),
            created: now,
        }
    }

    /// Checks the name.
    pub fn validate(&self) -> Result<(), StoreError> {
        let n = &self.name;
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if ok {
            Ok(())
        } else {
            Err(StoreError::Invalid {
                field: "agency".into(),
                rule: format!("{n:?} must be 1 to 64 letters, digits, '-', '_' or '.'"),
            })
        }
    }
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Queries, funnels, goals, realtime.
    Read,
    /// Reading, and writing: server-side ingest and configuration.
    Write,
}

impl Scope {
    /// Parses `read` or `write`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }

    /// `read` or `write`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    /// Whether a token of this scope may do what `needed` asks.
    pub fn covers(&self, needed: Scope) -> bool {
        *self >= needed
    }
}

/// Which sites a token reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// Every site of the token's agency.
    Agency,
    /// One site.
    Site(String),
}

/// An API token as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// The first 8 hex digits of its secret: how it is named and looked up.
    pub prefix: String,
    /// SHA-256 of the whole secret, hex.
    pub hash: String,
    /// The agency it belongs to.
    pub agency: String,
    /// Which of the agency's sites it reaches.
    pub reach: Reach,
    /// What it may do.
    pub scope: Scope,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires: Option<DateTime<Utc>>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A new token, with the secret to show once.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The secret (`bk_` and 64 hex digits): shown once, never stored.
    pub secret: String,
    /// What is stored.
    pub token: ApiToken,
}

fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl ApiToken {
    /// Makes a token of `agency` with 256 bits from `random`.
    pub fn issue(
        random: &dyn RandomSource,
        now: DateTime<Utc>,
        agency: impl Into<String>,
        reach: Reach,
        scope: Scope,
        expires: Option<DateTime<Utc>>,
    ) -> IssuedToken {
        let mut bytes = [0u8; 32];
        random.fill(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let secret = format!("{TOKEN_MARK}{hex}");
        let token = ApiToken {
            prefix: hex[..PREFIX_LEN].to_owned(),
            hash: sha256_hex(&secret),
            agency: agency.into(),
            reach,
            scope,
            created: now,
            expires,
            revoked: false,
        };
        IssuedToken { secret, token }
    }

    /// The prefix a secret is looked up by, if it has a token's form.
    pub fn prefix_of(secret: &str) -> Option<&str> {
        let hex = secret.strip_prefix(TOKEN_MARK)?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| &hex[..PREFIX_LEN])
    }

    /// Whether `secret` is this token's (compared in constant time).
    pub fn matches(&self, secret: &str) -> bool {
        let given = sha256_hex(secret);
        given.len() == self.hash.len()
            && given
                .bytes()
                .zip(self.hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// Whether the token works at `now`: not revoked, not expired.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        !self.revoked && self.expires.is_none_or(|e| now < e)
    }

    /// Whether the token reaches `site` at all (may read it).
    pub fn reaches(&self, site: &Site) -> bool {
        match &self.reach {
            Reach::Agency => site.agency == self.agency,
            Reach::Site(s) => *s == site.domain && site.agency == self.agency,
        }
    }

    /// Whether the token may do `scope` on `site`.
    pub fn allows(&self, site: &Site, scope: Scope) -> bool {
        self.reaches(site) && self.scope.covers(scope)
    }
}

/// Why a request may not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// No credential, or one that does not work (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The site is unknown, or the credential may not reach it: the same answer
    /// either way (404), so that site names cannot be probed.
    #[error(transparent)]
    NotFound(QueryError),
    /// The token reaches the site but may not do this (403): a read token asked to
    /// write.
    #[error("authorization: the token may only read")]
    Forbidden,
    /// A page on another host sent hits for a site (403): only the site's own
    /// hosts may, or a server-side call with a write token.
    #[error("{}site: {site:?} takes hits from its own hosts only, not {host:?} (a server-side call may send a write token)", index.map(|i| format!("[{i}].")).unwrap_or_default())]
    WrongOrigin {
        /// The hit, in a batch.
        index: Option<usize>,
        /// Its site.
        site: String,
        /// The host the request came from (its `Origin`, else its `Referer`).
        host: String,
    },
    /// The configuration store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who may send the hits of a request: with a token, it must be able to write to
/// every hit's site; without one, a request from a page (`from_host`: the host of
/// its `Origin`, else its `Referer`) may send hits only for sites that own that host,
/// and a server-side request (no such header) may send any. Sites that do not exist
/// are left to the pipeline, which names them.
pub async fn check_ingest(
    config: &dyn ConfigStore,
    sites: &[Option<&str>],
    token: Option<&ApiToken>,
    from_host: Option<&str>,
) -> Result<(), AccessError> {
    let batch = sites.len() > 1;
    for (i, name) in sites.iter().enumerate() {
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            continue;
        };
        let Some(site) = config.site(&name).await? else {
            continue;
        };
        match (token, from_host) {
            (Some(t), _) => {
                if !t.reaches(&site) {
                    return Err(AccessError::NotFound(QueryError::UnknownSite(name)));
                }
                if !t.scope.covers(Scope::Write) {
                    return Err(AccessError::Forbidden);
                }
            }
            (None, Some(host)) if !site.owns_host(host) => {
                return Err(AccessError::WrongOrigin {
                    index: batch.then_some(i),
                    site: name,
                    host: host.to_owned(),
                });
            }
            (None, _) => {}
        }
    }
    Ok(())
}

/// The token behind `bearer` (an `Authorization: Bearer` value), if it works at
/// `now`.
pub async fn authenticate(
    config: &dyn ConfigStore,
    bearer: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ApiToken, AccessError> {
    let secret = bearer.ok_or(AccessError::Unauthorized(
        "authorization: a Bearer token is required (beacon tokens create)",
    ))?;
    let invalid = AccessError::Unauthorized("authorization: the token is not valid");
    let prefix = ApiToken::prefix_of(secret).ok_or(invalid)?;
    let token = config
        .token(prefix)
        .await?
        .filter(|t| t.matches(secret))
        .ok_or(AccessError::Unauthorized(
            "authorization: the token is not valid",
        ))?;
    if !token.is_live(now) {
        return Err(AccessError::Unauthorized(
            "authorization: the token has expired or was revoked",
        ));
    }
    Ok(token)
}

/// The site `domain`, if `token` may do `scope` on it; an unknown site and a site
/// out of reach are the same [`AccessError::NotFound`]; a site in reach that the
/// token may only read is [`AccessError::Forbidden`] for a write.
pub async fn authorize(
    config: &dyn ConfigStore,
    token: &ApiToken,
    domain: &str,
    scope: Scope,
) -> Result<Site, AccessError> {
    let not_found = || AccessError::NotFound(QueryError::UnknownSite(domain.to_owned()));
    let site = config.site(domain).await?.ok_or_else(not_found)?;
    if !token.reaches(&site) {
        Err(not_found())
    } else if !token.scope.covers(scope) {
        Err(AccessError::Forbidden)
    } else {
        Ok(site)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SeededRandom;

    fn now() -> DateTime<Utc> {
        "2026-03-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_token_is_256_random_bits_stored_as_a_hash() {
        let r = SeededRandom::new(1);
        let a = ApiToken::issue(&r, now(), "acme", Reach::Agency, Scope::Read, None);
        let b = ApiToken::issue(&r, now(), "acme", Reach::Agency, Scope::Read, None);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), 3 + 64);
        assert_eq!(
            ApiToken::prefix_of(&a.secret),
            Some(a.token.prefix.as_str())
        );
        assert!(!a.token.hash.contains(&a.secret[3..]));
        assert!(a.token.matches(&a.secret));
        assert!(!a.token.matches(&b.secret));
        assert_eq!(ApiToken::prefix_of("bk_123"), None);
        assert_eq!(ApiToken::prefix_of(&a.secret[1..]), None);
    }

    #[test]
    fn scope_and_reach_decide() {
        let r = SeededRandom::new(2);
        let mut mine = Site::new("a.example");
        mine.agency = "acme".into();
        let mut other = Site::new("b.example");
        other.agency = "other".into();
        let mut sibling = Site::new("c.example");
        sibling.agency = "acme".into();
        let read = ApiToken::issue(&r, now(), "acme", Reach::Agency, Scope::Read, None).token;
        assert!(read.allows(&mine, Scope::Read));
        assert!(read.allows(&sibling, Scope::Read));
        assert!(!read.allows(&mine, Scope::Write));
        assert!(!read.allows(&other, Scope::Read));
        let one = ApiToken::issue(
            &r,
            now(),
            "acme",
            Reach::Site("a.example".into()),
            Scope::Write,
            None,
        )
        .token;
        assert!(one.allows(&mine, Scope::Read) && one.allows(&mine, Scope::Write));
        assert!(!one.allows(&sibling, Scope::Read));
        let mut expiring = one.clone();
        expiring.expires = Some(now());
        assert!(!expiring.is_live(now()));
        assert!(expiring.is_live(now() - chrono::Duration::seconds(1)));
        let mut revoked = one;
        revoked.revoked = true;
        assert!(!revoked.is_live(now()));
    }
}
