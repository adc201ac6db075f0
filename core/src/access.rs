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
    /// What it may use: sites and events a month.
    #[serde(default)]
    pub plan: Plan,
    /// The most days any of its sites keeps events, if the agency caps them: a
    /// site keeps the shorter of its own retention and this.
    #[serde(default)]
    pub retention_days: Option<u32>,
}

/// What an agency may use. No limit where a field is `None` (the default plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Its name, as errors and listings show it.
    pub name: String,
    /// The most sites the agency may have.
    #[serde(default)]
    pub max_sites: Option<u32>,
    /// The most events its sites may take in one calendar month (UTC) over live
    /// ingest; hits past it are refused with [`crate::IngestError::QuotaExceeded`].
    #[serde(default)]
    pub monthly_events: Option<u64>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            name: "unlimited".into(),
            max_sites: None,
            monthly_events: None,
        }
    }
}

impl Agency {
    /// An agency named `name`, created at `now`, on the default (unlimited) plan.
    pub fn new(name: impl Into<String>, now: DateTime<Utc>) -> Self {
        Self {
            name: name.into(),
            created: now,
            plan: Plan::default(),
            retention_days: None,
        }
    }

    /// The agency on `plan`.
    pub fn with_plan(mut self, plan: Plan) -> Self {
        self.plan = plan;
        self
    }

    /// The agency capping its sites' retention at `days`.
    pub fn with_retention_days(mut self, days: u32) -> Self {
        self.retention_days = Some(days);
        self
    }

    /// Checks the name.
    pub fn validate(&self) -> Result<(), StoreError> {
        let n = &self.name;
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return Err(StoreError::Invalid {
                field: "agency".into(),
                rule: format!("{n:?} must be 1 to 64 letters, digits, '-', '_' or '.'"),
            });
        }
        if let Some(days) = self.retention_days {
            crate::site::check_retention_days(days)?;
        }
        Ok(())
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
    /// When it last authenticated a request (recorded by [`TokenUsage`]).
    #[serde(default)]
    pub last_used: Option<DateTime<Utc>>,
    /// How many requests it authenticated (recorded by [`TokenUsage`]).
    #[serde(default)]
    pub requests: u64,
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
    hex_of(&Sha256::digest(s.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
            last_used: None,
            requests: 0,
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
        constant_eq(&sha256_hex(secret), &self.hash)
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

/// Token use, counted in memory and written to the config store by
/// [`TokenUsage::flush`] (the server does every few seconds and when it stops), so
/// that authenticating a request costs no write.
#[derive(Debug, Default)]
pub struct TokenUsage {
    pending: std::sync::Mutex<std::collections::HashMap<String, (u64, DateTime<Utc>)>>,
}

impl TokenUsage {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request authenticated by `token` at `now` (a login session's
    /// grant is no token and is not counted).
    pub fn record(&self, token: &ApiToken, now: DateTime<Utc>) {
        if token.hash.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pending.entry(token.prefix.clone()).or_insert((0, now));
        entry.0 += 1;
        entry.1 = entry.1.max(now);
    }

    /// Adds what was counted to the stored tokens; how many tokens changed. What
    /// could not be written is kept for the next flush.
    pub async fn flush(&self, config: &dyn ConfigStore) -> Result<usize, StoreError> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut written = 0;
        let mut entries = taken.into_iter();
        while let Some((prefix, (n, at))) = entries.next() {
            let step = async {
                if let Some(mut t) = config.token(&prefix).await? {
                    t.requests += n;
                    t.last_used = Some(t.last_used.map_or(at, |l| l.max(at)));
                    config.put_token(&t).await?;
                    return Ok(true);
                }
                Ok::<bool, StoreError>(false)
            };
            match step.await {
                Ok(changed) => written += usize::from(changed),
                Err(e) => {
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    for (p, (n, at)) in std::iter::once((prefix, (n, at))).chain(entries) {
                        let entry = pending.entry(p).or_insert((0, at));
                        entry.0 += n;
                        entry.1 = entry.1.max(at);
                    }
                    return Err(e);
                }
            }
        }
        Ok(written)
    }
}

/// What a dashboard user may do in their agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: users, sites, tokens, integrations.
    Admin,
    /// Sites, goals, funnels, notes.
    User,
    /// Reading only.
    Viewer,
}

impl Role {
    /// Parses `admin`, `user` or `viewer`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// What the role may do with the agency's sites.
    pub fn scope(&self) -> Scope {
        match self {
            Role::Admin | Role::User => Scope::Write,
            Role::Viewer => Scope::Read,
        }
    }
}

/// A dashboard user: an e-mail address and a password (kept as an argon2id hash),
/// in one agency, with a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The e-mail address they log in with, lower case.
    pub email: String,
    /// Their agency.
    pub agency: String,
    /// What they may do.
    pub role: Role,
    /// The argon2id hash of the password (PHC string).
    pub password_hash: String,
    /// When the user was made.
    pub created: DateTime<Utc>,
}

/// The shortest password a user may have.
pub const MIN_PASSWORD: usize = 10;

/// An argon2id hash (the crate's defaults: 19 MiB, 2 passes) with a salt from
/// `random`.
fn hash_password(password: &str, random: &dyn RandomSource) -> Result<String, StoreError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    random.fill(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| StoreError::backend("salt", e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::backend("hash password", e.to_string()))
}

/// A hash that no password matches, verified when an address is unknown so that
/// a wrong address takes as long as a wrong password.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$YmVhY29uLWRlY295LXNhbHQ$0rR8wVS2rZ0tPRsA9yW1v0l3ZlC2n3X0k9Jc1h2Qb6c";

fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

impl User {
    /// A user with `password` hashed; the address and password are checked first.
    pub fn new(
        email: &str,
        agency: impl Into<String>,
        role: Role,
        password: &str,
        random: &dyn RandomSource,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let email = email.trim().to_ascii_lowercase();
        let bad = |field: &str, rule: &str| {
            Err(StoreError::Invalid {
                field: field.into(),
                rule: rule.into(),
            })
        };
        let (local, domain) = email.split_once('@').unwrap_or(("", ""));
        if local.is_empty() || !domain.contains('.') || email.len() > 254 || email.contains(' ') {
            return bad("email", "must be an e-mail address");
        }
        if password.chars().count() < MIN_PASSWORD {
            return bad("password", "must be at least 10 characters");
        }
        Ok(User {
            email,
            agency: agency.into(),
            role,
            password_hash: hash_password(password, random)?,
            created: now,
        })
    }

    /// Whether `password` is theirs.
    pub fn check_password(&self, password: &str) -> bool {
        verify_password(password, &self.password_hash)
    }
}

/// The user behind `email` and `password`, or `None` (a wrong address and a wrong
/// password look alike, and take as long).
pub async fn login(
    config: &dyn ConfigStore,
    email: &str,
    password: &str,
) -> Result<Option<User>, StoreError> {
    let user = config.user(&email.trim().to_ascii_lowercase()).await?;
    match user {
        Some(u) if u.check_password(password) => Ok(Some(u)),
        Some(_) => Ok(None),
        None => {
            let _ = verify_password(password, DECOY_HASH);
            Ok(None)
        }
    }
}

/// How long a login lasts.
pub const SESSION_DAYS: i64 = 30;

/// What a session's cookie value starts with.
const SESSION_MARK: &str = "bs_";

/// A login session as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginSession {
    /// The first 8 hex digits of its secret.
    pub prefix: String,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// Whose.
    pub email: String,
    /// Their agency and role when they logged in.
    pub agency: String,
    /// Their role.
    pub role: Role,
    /// The token a cookie-authenticated write must echo (`X-CSRF-Token`).
    pub csrf: String,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When it ends (30 days on).
    pub expires: DateTime<Utc>,
}

/// A new session, with the cookie value to set once.
#[derive(Debug, Clone)]
pub struct IssuedSession {
    /// The cookie's value (`bs_` and 64 hex digits).
    pub secret: String,
    /// What is stored.
    pub session: LoginSession,
}

/// `bytes` random bytes from `random`, in hex.
pub(crate) fn random_hex(random: &dyn RandomSource, bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    random.fill(&mut b);
    hex_of(&b)
}

impl LoginSession {
    /// A session for `user`, from `now` for [`SESSION_DAYS`].
    pub fn issue(user: &User, random: &dyn RandomSource, now: DateTime<Utc>) -> IssuedSession {
        let hex = random_hex(random, 32);
        let secret = format!("{SESSION_MARK}{hex}");
        let session = LoginSession {
            prefix: hex[..PREFIX_LEN].to_owned(),
            hash: sha256_hex(&secret),
            email: user.email.clone(),
            agency: user.agency.clone(),
            role: user.role,
            csrf: random_hex(random, 32),
            created: now,
            expires: now + chrono::Duration::days(SESSION_DAYS),
        };
        IssuedSession { secret, session }
    }

    /// The prefix a cookie value is looked up by, if it has a session's form.
    pub fn prefix_of(secret: &str) -> Option<&str> {
        let hex = secret.strip_prefix(SESSION_MARK)?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| &hex[..PREFIX_LEN])
    }

    /// Whether `secret` is this session's and it has not ended at `now`.
    pub fn accepts(&self, secret: &str, now: DateTime<Utc>) -> bool {
        constant_eq(&sha256_hex(secret), &self.hash) && now < self.expires
    }

    /// Whether `given` is the session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        constant_eq(given, &self.csrf)
    }

    /// What the session may do, as a token would: the user's agency, their role's
    /// scope.
    pub fn grant(&self) -> ApiToken {
        ApiToken {
            prefix: self.prefix.clone(),
            hash: String::new(),
            agency: self.agency.clone(),
            reach: Reach::Agency,
            scope: self.role.scope(),
            created: self.created,
            expires: Some(self.expires),
            revoked: false,
            last_used: None,
            requests: 0,
        }
    }
}

/// A site shared read-only at an unguessable address (`/share/<slug>`), optionally
/// behind a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// 128 random bits, hex: the address.
    pub slug: String,
    /// The site shown.
    pub site: String,
    /// The argon2id hash of its password, if it has one.
    pub password_hash: Option<String>,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// Whether it was revoked (the address then answers 404).
    pub revoked: bool,
}

impl Share {
    /// A new share of `site`, with `password` hashed when given (at least
    /// [`MIN_PASSWORD`] characters).
    pub fn new(
        site: impl Into<String>,
        password: Option<&str>,
        random: &dyn RandomSource,
        now: DateTime<Utc>,
    ) -> Result<Share, StoreError> {
        let password_hash = match password {
            Some(p) if p.chars().count() < MIN_PASSWORD => {
                return Err(StoreError::Invalid {
                    field: "password".into(),
                    rule: "must be at least 10 characters".into(),
                })
            }
            Some(p) => Some(hash_password(p, random)?),
            None => None,
        };
        Ok(Share {
            slug: random_hex(random, 16),
            site: site.into(),
            password_hash,
            created: now,
            revoked: false,
        })
    }

    /// Whether `password` opens it (always, when it has none).
    pub fn opens_with(&self, password: Option<&str>) -> bool {
        match (&self.password_hash, password) {
            (None, _) => true,
            (Some(h), Some(p)) => verify_password(p, h),
            (Some(_), None) => false,
        }
    }
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
pub(crate) fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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
    if token.is_none() && from_host.is_none() {
        // A server-side call without a token: nothing to check, nothing to look up.
        return Ok(());
    }
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

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn token_use_is_counted_and_written_on_flush() {
        let config = crate::MemoryConfig::new();
        let r = SeededRandom::new(3);
        let issued = ApiToken::issue(&r, now(), "acme", Reach::Agency, Scope::Read, None);
        block_on(config.put_token(&issued.token)).unwrap();
        let usage = TokenUsage::new();
        let later = now() + chrono::Duration::minutes(5);
        usage.record(&issued.token, now());
        usage.record(&issued.token, later);
        usage.record(&issued.token, now());
        assert_eq!(block_on(usage.flush(&config)).unwrap(), 1);
        let stored = block_on(config.token(&issued.token.prefix))
            .unwrap()
            .unwrap();
        assert_eq!((stored.requests, stored.last_used), (3, Some(later)));
        usage.record(&issued.token, now());
        block_on(usage.flush(&config)).unwrap();
        let stored = block_on(config.token(&issued.token.prefix))
            .unwrap()
            .unwrap();
        assert_eq!((stored.requests, stored.last_used), (4, Some(later)));
        assert_eq!(block_on(usage.flush(&config)).unwrap(), 0, "nothing new");
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
    fn passwords_are_argon2id_and_the_decoy_is_a_real_hash() {
        let r = SeededRandom::new(3);
        let u = User::new(
            " Ann@Example.com ",
            "acme",
            Role::Viewer,
            "correct horse",
            &r,
            now(),
        )
        .unwrap();
        assert_eq!(u.email, "ann@example.com");
        assert!(u.password_hash.starts_with("$argon2id$"));
        assert!(u.check_password("correct horse"));
        assert!(!u.check_password("correct horsE"));
        assert!(argon2::password_hash::PasswordHash::new(DECOY_HASH).is_ok());
        assert!(!verify_password("anything", DECOY_HASH));
        let short = User::new("a@b.co", "acme", Role::User, "short", &r, now()).unwrap_err();
        assert_eq!(
            short.to_string(),
            "password: must be at least 10 characters"
        );
        let bad = User::new("nope", "acme", Role::User, "long enough!", &r, now()).unwrap_err();
        assert_eq!(bad.to_string(), "email: must be an e-mail address");
        let s = LoginSession::issue(&u, &r, now());
        assert_eq!(
            LoginSession::prefix_of(&s.secret),
            Some(s.session.prefix.as_str())
        );
        assert!(s.session.accepts(&s.secret, now()));
        assert!(!s
            .session
            .accepts(&s.secret, now() + chrono::Duration::days(SESSION_DAYS)));
        assert!(s.session.csrf_matches(&s.session.csrf.clone()));
        assert!(!s.session.csrf_matches("x"));
        assert_eq!(s.session.grant().scope, Scope::Read);
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
