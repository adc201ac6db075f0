//! [`ConfigStore`]: everything that is configuration, as keyed records with typed
//! methods on top.

use crate::access::{Agency, ApiToken, LoginSession, Share, User};
use crate::error::{QueryError, StoreError};
use crate::note::Note;
use crate::requests::{GoalDefinition, SavedFunnel};
use crate::site::Site;
use crate::webhook::Webhook;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// What a configuration record is. New kinds (agencies, users, tokens, notes,
/// outgoing webhooks) are added as the product grows; backends store every kind
/// alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ConfigKind {
    /// A site's settings (scope empty, name the domain).
    Site,
    /// A saved goal (scope the site, name the goal's name).
    Goal,
    /// A saved funnel (scope the site, name the funnel's name).
    Funnel,
    /// A secret (scope the site, name what it is for: `webhook:stripe`).
    Secret,
    /// A payment-webhook delivery already received (scope the site, name
    /// `provider:event id`, value the time it was received).
    Delivery,
    /// A daily salt of cookieless visitor ids (scope empty, name the day).
    Salt,
    /// An agency (scope empty, name the agency's).
    Agency,
    /// An API token (scope empty, name its prefix; never its secret).
    Token,
    /// A timeline note (scope the site, name the note's id).
    Note,
    /// A dashboard user (scope empty, name the e-mail address).
    User,
    /// A login session (scope empty, name its prefix; never its secret).
    Session,
    /// A public dashboard (scope empty, name its slug).
    Share,
    /// An outgoing webhook (scope the site, name its id).
    Hook,
    /// Outgoing webhook deliveries not yet made (scope the site, name the id of
    /// the commit that made them, value the list).
    Outbox,
}

impl ConfigKind {
    /// Every kind.
    pub const ALL: [ConfigKind; 14] = [
        ConfigKind::Site,
        ConfigKind::Goal,
        ConfigKind::Funnel,
        ConfigKind::Secret,
        ConfigKind::Delivery,
        ConfigKind::Salt,
        ConfigKind::Agency,
        ConfigKind::Token,
        ConfigKind::Note,
        ConfigKind::User,
        ConfigKind::Session,
        ConfigKind::Share,
        ConfigKind::Hook,
        ConfigKind::Outbox,
    ];

    /// The kind's name as backends store it (`"site"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ConfigKind::Site => "site",
            ConfigKind::Goal => "goal",
            ConfigKind::Funnel => "funnel",
            ConfigKind::Secret => "secret",
            ConfigKind::Delivery => "delivery",
            ConfigKind::Salt => "salt",
            ConfigKind::Agency => "agency",
            ConfigKind::Token => "token",
            ConfigKind::Note => "note",
            ConfigKind::User => "user",
            ConfigKind::Session => "session",
            ConfigKind::Share => "share",
            ConfigKind::Hook => "hook",
            ConfigKind::Outbox => "outbox",
        }
    }

    /// Parses [`ConfigKind::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The key of a configuration record: its kind, its scope (a site's domain, or
/// empty for records of the whole installation) and its name within the scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigKey {
    /// The kind.
    pub kind: ConfigKind,
    /// The scope (`example.com`, or empty).
    pub scope: String,
    /// The name within the kind and scope.
    pub name: String,
}

impl ConfigKey {
    /// A key of `kind` named `name` in `scope`.
    pub fn new(kind: ConfigKind, scope: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            scope: scope.into(),
            name: name.into(),
        }
    }
}

/// One record, as [`ConfigStore::list`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRecord {
    /// Its scope.
    pub scope: String,
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: Vec<u8>,
}

fn json_value<T>(
    what: &ConfigKey,
    bytes: &[u8],
    parse: impl FnOnce(&serde_json::Value) -> Result<T, String>,
) -> Result<T, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        what: format!(
            "config record {}/{}/{}",
            what.kind.as_str(),
            what.scope,
            what.name
        ),
        detail,
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    parse(&v).map_err(corrupt)
}

fn json_record<T: serde::de::DeserializeOwned>(
    key: &ConfigKey,
    bytes: &[u8],
) -> Result<T, StoreError> {
    json_value(key, bytes, |v| {
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())
    })
}

/// Stores `value` as JSON under `key`.
async fn put_json<C, T>(c: &C, key: ConfigKey, value: &T) -> Result<(), StoreError>
where
    C: ConfigStore + ?Sized,
    T: serde::Serialize + Sync,
{
    let bytes =
        serde_json::to_vec(value).map_err(|e| StoreError::backend("encode config record", e))?;
    c.put(&key, &bytes).await
}

/// The JSON record at `key`.
async fn get_json<C, T>(c: &C, key: ConfigKey) -> Result<Option<T>, StoreError>
where
    C: ConfigStore + ?Sized,
    T: serde::de::DeserializeOwned,
{
    match c.get(&key).await? {
        None => Ok(None),
        Some(bytes) => json_record(&key, &bytes).map(Some),
    }
}

/// Every JSON record of `kind` in `scope`, by name.
async fn list_json<C, T>(c: &C, kind: ConfigKind, scope: &str) -> Result<Vec<T>, StoreError>
where
    C: ConfigStore + ?Sized,
    T: serde::de::DeserializeOwned,
{
    c.list(kind, Some(scope))
        .await?
        .into_iter()
        .map(|r| json_record(&ConfigKey::new(kind, scope, &r.name), &r.value))
        .collect()
}

fn delivery_name(provider: &str, id: &str) -> String {
    format!("{provider}:{id}")
}

/// The prefix of payment-webhook secrets' names (`webhook:stripe`).
const WEBHOOK: &str = "webhook:";

/// Configuration: sites, saved goals and funnels, secrets, delivery ids and salts.
///
/// A backend implements five record methods over one keyed table; every typed
/// method has a default on top of them that a backend may override (a relational
/// backend with tables of its own, say). Secrets are never listed back: the typed
/// API lists their names only.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    /// The record's value.
    async fn get(&self, key: &ConfigKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// Creates or replaces a record.
    async fn put(&self, key: &ConfigKey, value: &[u8]) -> Result<(), StoreError>;

    /// Creates the record unless it exists, atomically (two processes never both
    /// create it): `None` when `value` was stored, else the value already there.
    async fn put_if_absent(
        &self,
        key: &ConfigKey,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes a record; whether it existed.
    async fn delete(&self, key: &ConfigKey) -> Result<bool, StoreError>;

    /// The records of `kind` in `scope` (every scope when `None`), ordered by
    /// scope, then name.
    async fn list(
        &self,
        kind: ConfigKind,
        scope: Option<&str>,
    ) -> Result<Vec<ConfigRecord>, StoreError>;

    /// Removes every record of `kind` in `scope`; how many.
    async fn delete_scope(&self, kind: ConfigKind, scope: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        for r in self.list(kind, Some(scope)).await? {
            n += u64::from(self.delete(&ConfigKey::new(kind, r.scope, r.name)).await?);
        }
        Ok(n)
    }

    /// Creates or replaces an agency (its name validated first).
    async fn put_agency(&self, agency: Agency) -> Result<(), StoreError> {
        agency.validate()?;
        put_json(
            self,
            ConfigKey::new(ConfigKind::Agency, "", &agency.name),
            &agency,
        )
        .await
    }

    /// One agency.
    async fn agency(&self, name: &str) -> Result<Option<Agency>, StoreError> {
        get_json(self, ConfigKey::new(ConfigKind::Agency, "", name)).await
    }

    /// Every agency, ordered by name.
    async fn agencies(&self) -> Result<Vec<Agency>, StoreError> {
        list_json(self, ConfigKind::Agency, "").await
    }

    /// Stores a token (never its secret: see [`ApiToken::issue`]).
    async fn put_token(&self, token: &ApiToken) -> Result<(), StoreError> {
        put_json(
            self,
            ConfigKey::new(ConfigKind::Token, "", &token.prefix),
            token,
        )
        .await
    }

    /// The token with `prefix`.
    async fn token(&self, prefix: &str) -> Result<Option<ApiToken>, StoreError> {
        get_json(self, ConfigKey::new(ConfigKind::Token, "", prefix)).await
    }

    /// Every token (revoked ones too), ordered by prefix.
    async fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        list_json(self, ConfigKind::Token, "").await
    }

    /// Revokes the token with `prefix`; whether there was one.
    async fn revoke_token(&self, prefix: &str) -> Result<bool, StoreError> {
        let Some(mut token) = self.token(prefix).await? else {
            return Ok(false);
        };
        token.revoked = true;
        self.put_token(&token).await?;
        Ok(true)
    }

    /// Creates or replaces a user.
    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        put_json(
            self,
            ConfigKey::new(ConfigKind::User, "", &user.email),
            user,
        )
        .await
    }

    /// The user with `email` (lower case).
    async fn user(&self, email: &str) -> Result<Option<User>, StoreError> {
        get_json(self, ConfigKey::new(ConfigKind::User, "", email)).await
    }

    /// Every user, by address.
    async fn users(&self) -> Result<Vec<User>, StoreError> {
        list_json(self, ConfigKind::User, "").await
    }

    /// Removes a user and ends their sessions; whether there was one.
    async fn remove_user(&self, email: &str) -> Result<bool, StoreError> {
        let sessions: Vec<LoginSession> = list_json(self, ConfigKind::Session, "").await?;
        for s in sessions.iter().filter(|s| s.email == email) {
            self.end_session(&s.prefix).await?;
        }
        self.delete(&ConfigKey::new(ConfigKind::User, "", email))
            .await
    }

    /// Stores a login session (never its secret).
    async fn put_session(&self, session: &LoginSession) -> Result<(), StoreError> {
        put_json(
            self,
            ConfigKey::new(ConfigKind::Session, "", &session.prefix),
            session,
        )
        .await
    }

    /// The session with `prefix`.
    async fn session(&self, prefix: &str) -> Result<Option<LoginSession>, StoreError> {
        get_json(self, ConfigKey::new(ConfigKind::Session, "", prefix)).await
    }

    /// Ends the session with `prefix`; whether there was one.
    async fn end_session(&self, prefix: &str) -> Result<bool, StoreError> {
        self.delete(&ConfigKey::new(ConfigKind::Session, "", prefix))
            .await
    }

    /// Creates or replaces a public dashboard.
    async fn put_share(&self, share: &Share) -> Result<(), StoreError> {
        put_json(
            self,
            ConfigKey::new(ConfigKind::Share, "", &share.slug),
            share,
        )
        .await
    }

    /// The public dashboard at `slug`.
    async fn share(&self, slug: &str) -> Result<Option<Share>, StoreError> {
        get_json(self, ConfigKey::new(ConfigKind::Share, "", slug)).await
    }

    /// Every public dashboard (revoked ones too), by slug.
    async fn shares(&self) -> Result<Vec<Share>, StoreError> {
        list_json(self, ConfigKind::Share, "").await
    }

    /// Creates or replaces a note (validated first).
    async fn put_note(&self, note: &Note) -> Result<(), StoreError> {
        note.validate()?;
        put_json(
            self,
            ConfigKey::new(ConfigKind::Note, &note.site, &note.id),
            note,
        )
        .await
    }

    /// One note of `site`.
    async fn note(&self, site: &str, id: &str) -> Result<Option<Note>, StoreError> {
        get_json(self, ConfigKey::new(ConfigKind::Note, site, id)).await
    }

    /// The notes of `site` from `from` to `to` (inclusive; `None` is open), by
    /// date, then creation.
    async fn notes(
        &self,
        site: &str,
        from: Option<chrono::NaiveDate>,
        to: Option<chrono::NaiveDate>,
    ) -> Result<Vec<Note>, StoreError> {
        let mut out: Vec<Note> = list_json(self, ConfigKind::Note, site).await?;
        out.retain(|n| from.is_none_or(|f| n.date >= f) && to.is_none_or(|t| n.date <= t));
        out.sort_by(|a, b| (a.date, a.created, &a.id).cmp(&(b.date, b.created, &b.id)));
        Ok(out)
    }

    /// Removes a note of `site`; whether there was one.
    async fn remove_note(&self, site: &str, id: &str) -> Result<bool, StoreError> {
        self.delete(&ConfigKey::new(ConfigKind::Note, site, id))
            .await
    }

    /// Creates or replaces an outgoing webhook.
    async fn put_webhook(&self, hook: &Webhook) -> Result<(), StoreError> {
        put_json(
            self,
            ConfigKey::new(ConfigKind::Hook, &hook.site, &hook.id),
            hook,
        )
        .await
    }

    /// The outgoing webhooks of `site`, or of every site, by site and id.
    async fn webhooks(&self, site: Option<&str>) -> Result<Vec<Webhook>, StoreError> {
        self.list(ConfigKind::Hook, site)
            .await?
            .into_iter()
            .map(|r| {
                json_record(
                    &ConfigKey::new(ConfigKind::Hook, &r.scope, &r.name),
                    &r.value,
                )
            })
            .collect()
    }

    /// The outgoing webhook with `id`, of any site.
    async fn webhook(&self, id: &str) -> Result<Option<Webhook>, StoreError> {
        Ok(self.webhooks(None).await?.into_iter().find(|h| h.id == id))
    }

    /// Removes an outgoing webhook (its pending deliveries are dropped when due);
    /// whether there was one.
    async fn remove_webhook(&self, site: &str, id: &str) -> Result<bool, StoreError> {
        self.delete(&ConfigKey::new(ConfigKind::Hook, site, id))
            .await
    }

    /// Creates or replaces a site (its settings validated first). A site new to
    /// its agency must fit the agency's plan ([`crate::Plan::max_sites`]).
    async fn put_site(&self, site: Site) -> Result<(), StoreError> {
        site.validate()?;
        let moved = self
            .site(&site.domain)
            .await?
            .is_none_or(|old| old.agency != site.agency);
        if moved {
            if let Some(agency) = self.agency(&site.agency).await? {
                if let Some(max) = agency.plan.max_sites {
                    let sites = self.sites().await?;
                    let have = sites.iter().filter(|s| s.agency == site.agency).count();
                    if have >= max as usize {
                        return Err(StoreError::Invalid {
                            field: "plan".into(),
                            rule: format!(
                                "agency {:?} has {have} sites, the most its plan {:?} allows",
                                agency.name, agency.plan.name
                            ),
                        });
                    }
                }
            }
        }
        let value = serde_json::to_vec(&site).map_err(|e| StoreError::backend("encode site", e))?;
        self.put(&ConfigKey::new(ConfigKind::Site, "", &site.domain), &value)
            .await
    }

    /// One site.
    async fn site(&self, domain: &str) -> Result<Option<Site>, StoreError> {
        get_json(self, ConfigKey::new(ConfigKind::Site, "", domain)).await
    }

    /// Every site, ordered by domain.
    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        list_json(self, ConfigKind::Site, "").await
    }

    /// Removes a site with its goals, funnels, secrets, delivery ids, notes, public
    /// dashboards, outgoing webhooks and their pending deliveries, and the tokens
    /// that reach only it (not its events: erase those from the event store);
    /// whether it existed.
    async fn remove_site(&self, domain: &str) -> Result<bool, StoreError> {
        let existed = self
            .delete(&ConfigKey::new(ConfigKind::Site, "", domain))
            .await?;
        for kind in [
            ConfigKind::Goal,
            ConfigKind::Funnel,
            ConfigKind::Secret,
            ConfigKind::Delivery,
            ConfigKind::Note,
            ConfigKind::Hook,
            ConfigKind::Outbox,
        ] {
            self.delete_scope(kind, domain).await?;
        }
        for share in self.shares().await?.iter().filter(|s| s.site == domain) {
            self.delete(&ConfigKey::new(ConfigKind::Share, "", &share.slug))
                .await?;
        }
        let only_here =
            |t: &ApiToken| matches!(&t.reach, crate::access::Reach::Site(s) if s == domain);
        for token in self.tokens().await?.iter().filter(|t| only_here(t)) {
            self.delete(&ConfigKey::new(ConfigKind::Token, "", &token.prefix))
                .await?;
        }
        Ok(existed)
    }

    /// Saves a goal of `site` under its name (replacing one of that name).
    async fn put_goal(&self, site: &str, goal: &GoalDefinition) -> Result<(), StoreError> {
        goal.validate()?;
        let value = serde_json::to_vec(&goal.to_json())
            .map_err(|e| StoreError::backend("encode goal", e))?;
        self.put(&ConfigKey::new(ConfigKind::Goal, site, &goal.name), &value)
            .await
    }

    /// The saved goals of `site`, ordered by name.
    async fn goals(&self, site: &str) -> Result<Vec<GoalDefinition>, StoreError> {
        let mut out = Vec::new();
        for r in self.list(ConfigKind::Goal, Some(site)).await? {
            let key = ConfigKey::new(ConfigKind::Goal, site, &r.name);
            out.push(json_value(&key, &r.value, |v| {
                GoalDefinition::from_value(v, "").map_err(|e| e.to_string())
            })?);
        }
        Ok(out)
    }

    /// Removes a saved goal; whether it existed.
    async fn remove_goal(&self, site: &str, name: &str) -> Result<bool, StoreError> {
        self.delete(&ConfigKey::new(ConfigKind::Goal, site, name))
            .await
    }

    /// Saves a funnel of `site` under its name (replacing one of that name).
    async fn put_funnel(&self, site: &str, funnel: &SavedFunnel) -> Result<(), StoreError> {
        funnel.validate()?;
        let value = serde_json::to_vec(&funnel.to_json())
            .map_err(|e| StoreError::backend("encode funnel", e))?;
        self.put(
            &ConfigKey::new(ConfigKind::Funnel, site, &funnel.name),
            &value,
        )
        .await
    }

    /// The saved funnels of `site`, ordered by name.
    async fn funnels(&self, site: &str) -> Result<Vec<SavedFunnel>, StoreError> {
        let mut out = Vec::new();
        for r in self.list(ConfigKind::Funnel, Some(site)).await? {
            let key = ConfigKey::new(ConfigKind::Funnel, site, &r.name);
            out.push(json_value(&key, &r.value, |v| {
                SavedFunnel::from_value(v).map_err(|e| e.to_string())
            })?);
        }
        Ok(out)
    }

    /// One saved funnel.
    async fn funnel(&self, site: &str, name: &str) -> Result<Option<SavedFunnel>, StoreError> {
        let key = ConfigKey::new(ConfigKind::Funnel, site, name);
        match self.get(&key).await? {
            None => Ok(None),
            Some(bytes) => json_value(&key, &bytes, |v| {
                SavedFunnel::from_value(v).map_err(|e| e.to_string())
            })
            .map(Some),
        }
    }

    /// Removes a saved funnel; whether it existed.
    async fn remove_funnel(&self, site: &str, name: &str) -> Result<bool, StoreError> {
        self.delete(&ConfigKey::new(ConfigKind::Funnel, site, name))
            .await
    }

    /// Sets a secret of `site` (`name` says what it is for).
    async fn put_secret(&self, site: &str, name: &str, secret: &str) -> Result<(), StoreError> {
        if secret.is_empty() {
            return Err(QueryError::invalid("secret", "must not be empty").into());
        }
        self.put(
            &ConfigKey::new(ConfigKind::Secret, site, name),
            secret.as_bytes(),
        )
        .await
    }

    /// A secret of `site`.
    async fn secret(&self, site: &str, name: &str) -> Result<Option<String>, StoreError> {
        let key = ConfigKey::new(ConfigKind::Secret, site, name);
        match self.get(&key).await? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    what: format!("secret {name} of {site}"),
                    detail: e.to_string(),
                }),
        }
    }

    /// (site, name) of every secret, of one site or all: never the secrets.
    async fn secret_names(&self, site: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .list(ConfigKind::Secret, site)
            .await?
            .into_iter()
            .map(|r| (r.scope, r.name))
            .collect())
    }

    /// Removes a secret; whether it existed.
    async fn remove_secret(&self, site: &str, name: &str) -> Result<bool, StoreError> {
        self.delete(&ConfigKey::new(ConfigKind::Secret, site, name))
            .await
    }

    /// The signing secret of a payment provider's webhooks for `site`.
    async fn webhook_secret(
        &self,
        site: &str,
        provider: &str,
    ) -> Result<Option<String>, StoreError> {
        self.secret(site, &format!("{WEBHOOK}{provider}")).await
    }

    /// Sets the signing secret of a payment provider's webhooks for `site`.
    async fn put_webhook_secret(
        &self,
        site: &str,
        provider: &str,
        secret: &str,
    ) -> Result<(), StoreError> {
        self.put_secret(site, &format!("{WEBHOOK}{provider}"), secret)
            .await
    }

    /// (site, provider) pairs with a webhook secret; never the secrets.
    async fn webhook_providers(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .secret_names(None)
            .await?
            .into_iter()
            .filter_map(|(site, name)| Some((site, name.strip_prefix(WEBHOOK)?.to_owned())))
            .collect())
    }

    /// Removes a provider's webhook secret from a site; whether there was one.
    async fn remove_webhook_secret(&self, site: &str, provider: &str) -> Result<bool, StoreError> {
        self.remove_secret(site, &format!("{WEBHOOK}{provider}"))
            .await
    }

    /// When a provider's delivery `id` was recorded for `site`, if it was.
    async fn delivery(
        &self,
        site: &str,
        provider: &str,
        id: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let key = ConfigKey::new(ConfigKind::Delivery, site, delivery_name(provider, id));
        Ok(self.get(&key).await?.and_then(|v| {
            let ms = i64::from_le_bytes(v.get(..8)?.try_into().ok()?);
            DateTime::from_timestamp_millis(ms)
        }))
    }

    /// Records a provider's delivery `id` for `site` as received at `at` (after
    /// what it carried was stored, so that a failed delivery is taken again).
    async fn remember_delivery(
        &self,
        site: &str,
        provider: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = ConfigKey::new(ConfigKind::Delivery, site, delivery_name(provider, id));
        self.put(&key, &at.timestamp_millis().to_le_bytes()).await
    }

    /// Forgets delivery ids recorded before `before`; how many.
    async fn forget_deliveries_before(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = before.timestamp_millis();
        let mut n = 0;
        for r in self.list(ConfigKind::Delivery, None).await? {
            let at = r
                .value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(i64::MIN, i64::from_le_bytes);
            if at < cutoff {
                let key = ConfigKey::new(ConfigKind::Delivery, r.scope, r.name);
                n += u64::from(self.delete(&key).await?);
            }
        }
        Ok(n)
    }
}
