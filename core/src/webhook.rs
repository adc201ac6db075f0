//! Outgoing webhooks: a site's endpoints are told of new visitors, completed goals
//! and purchases.
//!
//! Deliveries are made durable in the same step that stores their events: the
//! pipeline's writer hands each committed batch to [`Webhooks`], which writes the
//! batch's deliveries to the config store (one record per site and commit) before
//! any caller is told the events were taken. A restart loads what is pending and
//! goes on. Delivery is at least once (a retried commit can queue a delivery
//! again): receivers tell repeats by the `Beacon-Delivery` id.
//!
//! Each request is signed like Stripe's: `Beacon-Signature: t=<unix seconds>,
//! v1=<hex HMAC-SHA256 of "<t>.<body>" under the endpoint's secret>` (see
//! [`sign`] and [`verify_signature`]). Failed attempts are retried with
//! exponential backoff and jitter; an endpoint's consecutive failures are counted
//! in [`Webhook::failure_count`] and it is disabled at
//! [`WebhookPolicy::disable_after`]. Targets on loopback, private, link-local and
//! other non-public addresses are refused (checked on the addresses the host
//! resolves to at each attempt, which the transport must connect to) unless
//! [`WebhookPolicy::allow_private`] is set.

use crate::access::{constant_eq, hex_of, random_hex};
use crate::clock::{Clock, RandomSource};
use crate::error::StoreError;
use crate::event::{Event, EventKind};
use crate::requests::GoalDefinition;
use crate::session::session_id;
use crate::store::{ConfigKey, ConfigKind, ConfigStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Beacon-Signature";

/// What an endpoint can be told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HookEvent {
    /// A visitor's first event: the first of the first session the pipeline
    /// started for them.
    #[serde(rename = "visitor.created")]
    VisitorCreated,
    /// An event that completes one of the site's saved goals (one delivery per
    /// goal).
    #[serde(rename = "goal.completed")]
    GoalCompleted,
    /// A purchase (from the tracking script, the API or a payment webhook).
    #[serde(rename = "purchase.created")]
    PurchaseCreated,
}

impl HookEvent {
    /// Every event type.
    pub const ALL: [HookEvent; 3] = [
        HookEvent::VisitorCreated,
        HookEvent::GoalCompleted,
        HookEvent::PurchaseCreated,
    ];

    /// Its name (`purchase.created`).
    pub fn as_str(&self) -> &'static str {
        match self {
            HookEvent::VisitorCreated => "visitor.created",
            HookEvent::GoalCompleted => "goal.completed",
            HookEvent::PurchaseCreated => "purchase.created",
        }
    }

    /// Parses [`HookEvent::as_str`]'s names.
    pub fn parse(s: &str) -> Option<HookEvent> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Parses a list of names; an empty list is every event type. The error names
    /// the first unknown one.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<HookEvent>, WebhookError> {
        if names.is_empty() {
            return Ok(Self::ALL.to_vec());
        }
        names
            .iter()
            .map(|n| {
                let n = n.as_ref();
                HookEvent::parse(n).ok_or_else(|| {
                    invalid(
                        "events",
                        format!(
                            "unknown event {n:?} (visitor.created, goal.completed, purchase.created)"
                        ),
                    )
                })
            })
            .collect()
    }
}

/// Why a webhook could not be made or a target is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A field broke a rule.
    #[error("{field}: {rule}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule.
        rule: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, rule: impl Into<String>) -> WebhookError {
    WebhookError::Invalid {
        field,
        rule: rule.into(),
    }
}

/// An endpoint of a site, as stored (its secret too: deliveries are signed with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Its id (`wh_` and 16 hex digits).
    pub id: String,
    /// The site.
    pub site: String,
    /// Where deliveries go (`https://...`).
    pub url: String,
    /// What it is told of.
    pub events: Vec<HookEvent>,
    /// The signing secret (`whsec_` and 64 hex digits).
    pub secret: String,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Failed attempts since the last delivery that succeeded.
    pub failure_count: u32,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// When a delivery last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// When it was made.
    pub created: DateTime<Utc>,
}

impl Webhook {
    /// A new endpoint of `site` for `events` at `url` (checked by [`check_url`]),
    /// with a fresh secret.
    pub fn new(
        site: &str,
        url: &str,
        events: Vec<HookEvent>,
        allow_private: bool,
        random: &dyn RandomSource,
        now: DateTime<Utc>,
    ) -> Result<Webhook, WebhookError> {
        check_url(url, allow_private)?;
        if events.is_empty() {
            return Err(invalid(
                "events",
                "name at least one of visitor.created, goal.completed, purchase.created",
            ));
        }
        let mut events = events;
        events.sort();
        events.dedup();
        Ok(Webhook {
            id: format!("wh_{}", random_hex(random, 8)),
            site: site.to_owned(),
            url: url.to_owned(),
            events,
            secret: format!("whsec_{}", random_hex(random, 32)),
            enabled: true,
            failure_count: 0,
            last_error: None,
            last_success: None,
            created: now,
        })
    }
}

/// The `Beacon-Signature` value for `body` sent at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed by secret>`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex_of(&mac(secret, timestamp, body)))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Whether `header` (a `Beacon-Signature` value) signs `body` under `secret`, sent
/// at most `tolerance` before or after `now`: what a receiver checks.
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now.timestamp() - t).unsigned_abs() > tolerance.as_secs() {
        return false;
    }
    let want = hex_of(&mac(secret, t, body));
    sigs.iter().any(|s| constant_eq(s, &want))
}

/// Whether `ip` is a public address a webhook may reach: not loopback, private,
/// link-local (cloud metadata included), shared (CGNAT), unspecified, multicast,
/// broadcast, documentation or reserved; IPv4-mapped IPv6 addresses are judged as
/// their IPv4 address.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b))
        }
    }
}

/// A target's host and port, if `url` may be one: `http` or `https`, a host, no
/// credentials; a literal address must be public unless `allow_private`.
pub fn check_url(url: &str, allow_private: bool) -> Result<(String, u16), WebhookError> {
    let u =
        url::Url::parse(url).map_err(|e| invalid("url", format!("{url:?} is not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(invalid("url", "must start with https:// or http://"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(invalid("url", "must not carry a user name or password"));
    }
    let port = u
        .port_or_known_default()
        .ok_or_else(|| invalid("url", "needs a port"))?;
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) => {
            refuse_private(IpAddr::V4(ip), allow_private)?;
            ip.to_string()
        }
        Some(url::Host::Ipv6(ip)) => {
            refuse_private(IpAddr::V6(ip), allow_private)?;
            ip.to_string()
        }
        None => return Err(invalid("url", "needs a host")),
    };
    if !allow_private && (host == "localhost" || host.ends_with(".localhost")) {
        return Err(invalid(
            "url",
            "localhost is refused (set webhooks.allow_private to allow it)",
        ));
    }
    Ok((host, port))
}

fn refuse_private(ip: IpAddr, allow_private: bool) -> Result<(), WebhookError> {
    if allow_private || is_public_address(ip) {
        Ok(())
    } else {
        Err(invalid(
            "url",
            format!(
                "{ip} is not a public address (loopback, private and link-local targets are refused unless webhooks.allow_private is set)"
            ),
        ))
    }
}

/// How deliveries are retried and what they may reach.
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    /// Whether loopback, private and link-local targets are allowed (default no).
    pub allow_private: bool,
    /// Attempts per delivery before it is given up (default 12).
    pub max_attempts: u32,
    /// The delay before the second attempt; it doubles with each failure (default
    /// 10 s), with jitter (each delay is drawn between half and all of it).
    pub base_delay: Duration,
    /// The longest delay between attempts (default 1 hour).
    pub max_delay: Duration,
    /// Consecutive failed attempts after which an endpoint is disabled (default 50).
    pub disable_after: u32,
    /// How long an attempt may take (default 10 s).
    pub timeout: Duration,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        WebhookPolicy {
            allow_private: false,
            max_attempts: 12,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(3600),
            disable_after: 50,
            timeout: Duration::from_secs(10),
        }
    }
}

impl WebhookPolicy {
    /// The delay after the `attempts`-th failed attempt, with `jitter` in [0, 1):
    /// `base * 2^(attempts - 1)`, at most `max_delay`, scaled into its upper half.
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// One request to make: to `url`, connecting only to `addrs` (what the host
/// resolved to, checked), with these headers and body.
#[derive(Debug)]
pub struct OutgoingRequest<'a> {
    /// The target.
    pub url: &'a str,
    /// The addresses the host resolved to and may be reached at: connect to no
    /// other (a second lookup could answer differently).
    pub addrs: &'a [SocketAddr],
    /// Headers to send, the signature among them.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: &'a [u8],
    /// How long it may take.
    pub timeout: Duration,
}

/// How deliveries travel: an HTTP client (the reference server has one on
/// `reqwest`). Must not follow redirects.
#[async_trait]
pub trait WebhookTransport: Send + Sync {
    /// The addresses of `host`. The default asks the system resolver.
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }

    /// POSTs the request; the response's status, or why none came.
    async fn post(&self, request: OutgoingRequest<'_>) -> Result<u16, String>;
}

/// A delivery waiting to be made, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id (the same for the same event, endpoint and goal), sent as
    /// `Beacon-Delivery`.
    pub id: String,
    /// The endpoint's id.
    pub hook: String,
    /// What happened.
    pub event: HookEvent,
    /// The visitor it is about (erasure removes their deliveries).
    pub visitor: String,
    /// The JSON body.
    pub body: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_at: DateTime<Utc>,
}

/// What the endpoints of each site are, with the goals that goal hooks need.
#[derive(Default)]
struct Index {
    hooks: HashMap<String, Vec<Webhook>>,
    goals: HashMap<String, Vec<GoalDefinition>>,
}

/// Pending deliveries by (site, record name).
type Outbox = BTreeMap<(String, String), Vec<Delivery>>;

/// How long the endpoint list is kept before it is read again.
const HOOKS_FRESH_FOR: Duration = Duration::from_secs(5);

/// The most deliveries in flight at once.
const IN_FLIGHT: usize = 8;

/// Outgoing webhooks: the durable outbox the pipeline's writer fills and the
/// dispatcher that empties it. Made by [`crate::PipelineBuilder::webhooks`]; a
/// pipeline's is [`crate::Pipeline::webhooks`].
pub struct Webhooks {
    config: Arc<dyn ConfigStore>,
    transport: Arc<dyn WebhookTransport>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    policy: WebhookPolicy,
    index: tokio::sync::RwLock<Option<(Instant, Arc<Index>)>>,
    /// Pending deliveries by (site, record name), as the outbox holds them.
    queue: Mutex<Option<Outbox>>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    Failed(String),
    /// The endpoint is gone or disabled: the delivery is dropped.
    Gone,
}

impl Webhooks {
    pub(crate) fn new(
        config: Arc<dyn ConfigStore>,
        transport: Arc<dyn WebhookTransport>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn RandomSource>,
        policy: WebhookPolicy,
    ) -> Self {
        Webhooks {
            config,
            transport,
            clock,
            random,
            policy,
            index: tokio::sync::RwLock::new(None),
            queue: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// The policy deliveries follow.
    pub fn policy(&self) -> &WebhookPolicy {
        &self.policy
    }

    /// Reads the endpoints again now (after one was added, changed or removed).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let mut index = Index::default();
        for r in self.config.list(ConfigKind::Hook, None).await? {
            let hook: Webhook = serde_json::from_slice(&r.value)
                .map_err(|e| StoreError::backend("decode webhook", e))?;
            if !hook.enabled {
                continue;
            }
            if hook.events.contains(&HookEvent::GoalCompleted)
                && !index.goals.contains_key(&hook.site)
            {
                let goals = self.config.goals(&hook.site).await?;
                index.goals.insert(hook.site.clone(), goals);
            }
            index.hooks.entry(hook.site.clone()).or_default().push(hook);
        }
        *self.index.write().await = Some((Instant::now(), Arc::new(index)));
        Ok(())
    }

    async fn index(&self) -> Result<Arc<Index>, StoreError> {
        if let Some((at, i)) = &*self.index.read().await {
            if at.elapsed() < HOOKS_FRESH_FOR {
                return Ok(Arc::clone(i));
            }
        }
        self.reload().await?;
        let guard = self.index.read().await;
        Ok(guard
            .as_ref()
            .map(|(_, i)| Arc::clone(i))
            .unwrap_or_default())
    }

    /// Loads the outbox from the config store, once.
    async fn loaded(&self) -> Result<(), StoreError> {
        if self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let mut queue = BTreeMap::new();
        for r in self.config.list(ConfigKind::Outbox, None).await? {
            let list: Vec<Delivery> = serde_json::from_slice(&r.value)
                .map_err(|e| StoreError::backend("decode outbox", e))?;
            queue.insert((r.scope, r.name), list);
        }
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_none() {
            *q = Some(queue);
        }
        Ok(())
    }

    /// Deliveries waiting.
    pub fn pending(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |q| q.values().map(Vec::len).sum())
    }

    /// Makes the deliveries `events` call for durable (one outbox record per site
    /// and commit) and wakes the dispatcher. The pipeline's writer calls it after
    /// each commit, before answering its callers.
    pub(crate) async fn enqueue(&self, events: &[Event]) -> Result<(), StoreError> {
        let index = self.index().await?;
        if index.hooks.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let mut made: BTreeMap<&str, Vec<Delivery>> = BTreeMap::new();
        for e in events {
            let Some(hooks) = index.hooks.get(e.site.as_str()) else {
                continue;
            };
            for (kind, goal) in triggers(e, index.goals.get(e.site.as_str())) {
                for hook in hooks.iter().filter(|h| h.events.contains(&kind)) {
                    made.entry(e.site.as_str())
                        .or_default()
                        .push(delivery(hook, kind, goal, e, now));
                }
            }
        }
        if made.is_empty() {
            return Ok(());
        }
        self.loaded().await?;
        {
            // A delivery already waiting is not queued twice.
            let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(q) = q.as_ref() {
                let waiting: std::collections::HashSet<&str> =
                    q.values().flatten().map(|d| d.id.as_str()).collect();
                for list in made.values_mut() {
                    list.retain(|d| !waiting.contains(d.id.as_str()));
                }
            }
            for list in made.values_mut() {
                let mut seen = std::collections::HashSet::new();
                list.retain(|d| seen.insert(d.id.clone()));
            }
            made.retain(|_, list| !list.is_empty());
        }
        for (site, list) in made {
            let name = list[0].id.clone();
            let value =
                serde_json::to_vec(&list).map_err(|e| StoreError::backend("encode outbox", e))?;
            self.config
                .put(&ConfigKey::new(ConfigKind::Outbox, site, &name), &value)
                .await?;
            if let Some(q) = self
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                q.insert((site.to_owned(), name), list);
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Drops `visitor`'s pending deliveries of `site` (erasure); how many.
    pub async fn forget_visitor(&self, site: &str, visitor: &str) -> Result<u64, StoreError> {
        self.loaded().await?;
        let changed: Vec<((String, String), Vec<Delivery>, u64)> = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let Some(q) = q.as_mut() else { return Ok(0) };
            q.iter_mut()
                .filter(|((s, _), _)| s == site)
                .filter_map(|(k, list)| {
                    let before = list.len();
                    list.retain(|d| d.visitor != visitor);
                    let gone = (before - list.len()) as u64;
                    (gone > 0).then(|| (k.clone(), list.clone(), gone))
                })
                .collect()
        };
        let mut n = 0;
        for (key, list, gone) in changed {
            self.write_record(&key, &list).await?;
            n += gone;
        }
        self.prune();
        Ok(n)
    }

    fn prune(&self) {
        if let Some(q) = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            q.retain(|_, list| !list.is_empty());
        }
    }

    async fn write_record(
        &self,
        (site, name): &(String, String),
        list: &[Delivery],
    ) -> Result<(), StoreError> {
        let key = ConfigKey::new(ConfigKind::Outbox, site, name);
        if list.is_empty() {
            self.config.delete(&key).await?;
        } else {
            let value =
                serde_json::to_vec(list).map_err(|e| StoreError::backend("encode outbox", e))?;
            self.config.put(&key, &value).await?;
        }
        Ok(())
    }

    fn jitter(&self) -> f64 {
        let mut b = [0u8; 8];
        self.random.fill(&mut b);
        (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Makes one attempt of `d` to `hook`.
    async fn attempt(&self, hook: &Webhook, d: &Delivery) -> Outcome {
        if !hook.enabled {
            return Outcome::Gone;
        }
        let allow = self.policy.allow_private;
        let (host, port) = match check_url(&hook.url, allow) {
            Ok(t) => t,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let addrs = match self.transport.resolve(&host, port).await {
            Ok(a) if a.is_empty() => return Outcome::Failed(format!("{host} has no address")),
            Ok(a) => a,
            Err(e) => return Outcome::Failed(format!("resolving {host}: {e}")),
        };
        if let Some(bad) = addrs.iter().find(|a| !allow && !is_public_address(a.ip())) {
            return Outcome::Failed(format!(
                "{host} resolves to {}, which is not a public address",
                bad.ip()
            ));
        }
        let now = self.clock.now();
        let body = d.body.as_bytes();
        let headers = vec![
            ("content-type", "application/json".to_owned()),
            ("user-agent", "Beacon-Webhooks/1".to_owned()),
            ("beacon-event", d.event.as_str().to_owned()),
            ("beacon-delivery", d.id.clone()),
            (
                "beacon-signature",
                sign(&hook.secret, now.timestamp(), body),
            ),
        ];
        let req = OutgoingRequest {
            url: &hook.url,
            addrs: &addrs,
            headers,
            body,
            timeout: self.policy.timeout,
        };
        match tokio::time::timeout(self.policy.timeout, self.transport.post(req)).await {
            Ok(Ok(status)) if (200..300).contains(&status) => Outcome::Delivered,
            Ok(Ok(status)) => Outcome::Failed(format!("answered HTTP {status}")),
            Ok(Err(e)) => Outcome::Failed(e),
            Err(_) => Outcome::Failed(format!(
                "no answer in {} s",
                self.policy.timeout.as_secs_f64()
            )),
        }
    }

    /// Makes the attempts that are due; when the next one is due.
    async fn deliver_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.loaded().await?;
        let index = self.index().await?;
        let now = self.clock.now();
        let due: Vec<((String, String), Delivery)> = {
            let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.iter()
                .flatten()
                .flat_map(|(k, list)| list.iter().map(move |d| (k, d)))
                .filter(|(_, d)| d.next_at <= now)
                .take(IN_FLIGHT * 4)
                .map(|(k, d)| (k.clone(), d.clone()))
                .collect()
        };
        let find = |site: &str, id: &str| {
            index
                .hooks
                .get(site)
                .and_then(|hs| hs.iter().find(|h| h.id == id))
                .cloned()
        };
        let mut outcomes = Vec::with_capacity(due.len());
        for chunk in due.chunks(IN_FLIGHT) {
            let attempts = chunk.iter().map(|(k, d)| async {
                match find(&k.0, &d.hook) {
                    Some(h) => self.attempt(&h, d).await,
                    None => Outcome::Gone,
                }
            });
            outcomes.extend(futures_util::future::join_all(attempts).await);
        }
        // Endpoints' counters: consecutive failures, disabled at the limit.
        let mut hook_results: BTreeMap<(String, String), Vec<Option<String>>> = BTreeMap::new();
        let mut touched: BTreeMap<(String, String), ()> = BTreeMap::new();
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let Some(q) = q.as_mut() else { return Ok(None) };
            for ((key, d), outcome) in due.iter().zip(outcomes) {
                let Some(list) = q.get_mut(key) else { continue };
                let Some(pos) = list.iter().position(|x| x.id == d.id && x.hook == d.hook) else {
                    continue;
                };
                touched.insert(key.clone(), ());
                match outcome {
                    Outcome::Delivered => {
                        list.remove(pos);
                        hook_results
                            .entry((key.0.clone(), d.hook.clone()))
                            .or_default()
                            .push(None);
                    }
                    Outcome::Gone => {
                        list.remove(pos);
                    }
                    Outcome::Failed(why) => {
                        let attempts = d.attempts + 1;
                        tracing::warn!(hook = %d.hook, delivery = %d.id, attempts, error = %why, "webhook attempt failed");
                        if attempts >= self.policy.max_attempts {
                            tracing::error!(hook = %d.hook, delivery = %d.id, attempts, "webhook delivery given up");
                            list.remove(pos);
                        } else {
                            let wait = self.policy.backoff(attempts, self.jitter());
                            let entry = &mut list[pos];
                            entry.attempts = attempts;
                            entry.next_at = now
                                + chrono::Duration::from_std(wait)
                                    .unwrap_or(chrono::Duration::seconds(1));
                        }
                        hook_results
                            .entry((key.0.clone(), d.hook.clone()))
                            .or_default()
                            .push(Some(why));
                    }
                }
            }
        }
        let mut disabled = Vec::new();
        for ((site, id), results) in hook_results {
            let key = ConfigKey::new(ConfigKind::Hook, &site, &id);
            let Some(bytes) = self.config.get(&key).await? else {
                continue;
            };
            let Ok(mut hook) = serde_json::from_slice::<Webhook>(&bytes) else {
                continue;
            };
            for r in results {
                match r {
                    None => {
                        hook.failure_count = 0;
                        hook.last_success = Some(now);
                    }
                    Some(why) => {
                        hook.failure_count += 1;
                        hook.last_error = Some(why);
                    }
                }
            }
            if hook.enabled && hook.failure_count >= self.policy.disable_after {
                tracing::error!(hook = %hook.id, site = %hook.site, failures = hook.failure_count, "webhook disabled after repeated failures");
                hook.enabled = false;
                disabled.push((site.clone(), id.clone()));
            }
            let value =
                serde_json::to_vec(&hook).map_err(|e| StoreError::backend("encode webhook", e))?;
            self.config.put(&key, &value).await?;
        }
        let records: Vec<((String, String), Vec<Delivery>)> = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let Some(q) = q.as_mut() else { return Ok(None) };
            for (site, id) in &disabled {
                for ((s, name), list) in q.iter_mut() {
                    if s == site && list.iter().any(|d| &d.hook == id) {
                        list.retain(|d| &d.hook != id);
                        touched.insert((s.clone(), name.clone()), ());
                    }
                }
            }
            touched
                .keys()
                .map(|k| (k.clone(), q.get(k).cloned().unwrap_or_default()))
                .collect()
        };
        for (key, list) in records {
            self.write_record(&key, &list).await?;
        }
        self.prune();
        if !disabled.is_empty() {
            self.reload().await?;
        }
        let next = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|q| q.values().flatten().map(|d| d.next_at).min());
        Ok(next)
    }

    /// The dispatcher: makes due attempts until `stop` turns true (what is
    /// pending stays in the outbox for the next start).
    pub(crate) async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.deliver_due().await {
                Ok(Some(next)) => (next - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(Duration::from_secs(1)),
                Ok(None) => Duration::from_secs(1),
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatch failed");
                    Duration::from_secs(1)
                }
            };
            if wait.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Drops pending deliveries of `site` about `visitor` (or all of the site's, with
/// `None`) from the config store's outbox, for tools that run beside no pipeline
/// (`beacon erase`); a running pipeline uses [`Webhooks::forget_visitor`], which
/// also drops its loaded copy. How many went.
pub async fn forget_deliveries(
    config: &dyn ConfigStore,
    site: &str,
    visitor: Option<&str>,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for r in config.list(ConfigKind::Outbox, Some(site)).await? {
        let mut list: Vec<Delivery> = serde_json::from_slice(&r.value)
            .map_err(|e| StoreError::backend("decode outbox", e))?;
        let before = list.len();
        list.retain(|d| visitor.is_some_and(|v| d.visitor != v));
        if list.len() == before {
            continue;
        }
        n += (before - list.len()) as u64;
        let key = ConfigKey::new(ConfigKind::Outbox, site, &r.name);
        if list.is_empty() {
            config.delete(&key).await?;
        } else {
            let value =
                serde_json::to_vec(&list).map_err(|e| StoreError::backend("encode outbox", e))?;
            config.put(&key, &value).await?;
        }
    }
    Ok(n)
}

/// What `e` tells endpoints of: its kind, and the goal it completes.
fn triggers<'a>(
    e: &Event,
    goals: Option<&'a Vec<GoalDefinition>>,
) -> Vec<(HookEvent, Option<&'a str>)> {
    let mut out = Vec::new();
    let first_of_visitor = e.kind.is_activity()
        && e.identity.session_number == Some(1)
        && e.identity.session_id
            == Some(session_id(
                &e.site,
                &e.identity.visitor_id,
                e.timestamp.timestamp_millis(),
            ));
    if first_of_visitor {
        out.push((HookEvent::VisitorCreated, None));
    }
    if e.kind == EventKind::Purchase {
        out.push((HookEvent::PurchaseCreated, None));
    }
    let text = match e.kind {
        EventKind::Pageview => Some(e.page.path.as_str()),
        EventKind::Goal | EventKind::Custom => e.name.as_deref(),
        _ => None,
    };
    if let (Some(text), Some(goals)) = (text, goals) {
        for g in goals.iter().filter(|g| g.matcher.matches(e.kind, text)) {
            out.push((HookEvent::GoalCompleted, Some(g.name.as_str())));
        }
    }
    out
}

/// The delivery of `kind` for `e` to `hook`, its id a hash of what it is about.
fn delivery(
    hook: &Webhook,
    kind: HookEvent,
    goal: Option<&str>,
    e: &Event,
    now: DateTime<Utc>,
) -> Delivery {
    let mut h = Sha256::new();
    h.update(hook.id.as_bytes());
    h.update([0xff]);
    match kind {
        // One per visitor and first session, whichever of its first events (two
        // in one millisecond) called for it.
        HookEvent::VisitorCreated => {
            h.update(e.identity.visitor_id.as_bytes());
            h.update([0xff]);
            h.update(e.identity.session_id.unwrap_or(0).to_le_bytes());
        }
        _ => h.update(e.id.as_bytes()),
    }
    h.update(kind.as_str().as_bytes());
    h.update([0xff]);
    h.update(goal.unwrap_or("").as_bytes());
    let id = format!("dl_{}", hex_of(&h.finalize()[..12]));
    let mut data = serde_json::json!({ "event": e });
    if let Some(g) = goal {
        data["goal"] = serde_json::Value::from(g);
    }
    let body = serde_json::json!({
        "id": id,
        "type": kind.as_str(),
        "created": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "site": e.site,
        "data": data,
    });
    Delivery {
        id,
        hook: hook.id.clone(),
        event: kind,
        visitor: e.identity.visitor_id.clone(),
        body: body.to_string(),
        attempts: 0,
        next_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_a_known_answer() {
        // Computed outside Beacon: python3 -c 'import hmac,hashlib;
        // print(hmac.new(b"whsec_test", b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())'
        let sig = sign("whsec_test", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(sig, format!("t=1700000000,v1={}", KNOWN));
        let now = DateTime::from_timestamp(1_700_000_100, 0).unwrap();
        let five_min = Duration::from_secs(300);
        assert!(verify_signature(
            "whsec_test",
            &sig,
            br#"{"a":1}"#,
            now,
            five_min
        ));
        assert!(!verify_signature(
            "whsec_other",
            &sig,
            br#"{"a":1}"#,
            now,
            five_min
        ));
        assert!(!verify_signature(
            "whsec_test",
            &sig,
            br#"{"a":2}"#,
            now,
            five_min
        ));
        let late = DateTime::from_timestamp(1_700_000_400, 0).unwrap();
        assert!(!verify_signature(
            "whsec_test",
            &sig,
            br#"{"a":1}"#,
            late,
            five_min
        ));
    }

    const KNOWN: &str = "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789";

    #[test]
    fn only_public_addresses_are_targets() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(!is_public_address(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "1.1.1.1"] {
            assert!(is_public_address(ip.parse().unwrap()), "{ip}");
        }
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        for bad in [
            "http://127.0.0.1:9000/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:8080/",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "not a url",
        ] {
            let e = check_url(bad, false).unwrap_err().to_string();
            assert!(e.starts_with("url: "), "{bad}: {e}");
        }
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let p = WebhookPolicy::default();
        assert_eq!(p.backoff(1, 0.9), Duration::from_millis(9500));
        assert_eq!(p.backoff(1, 0.0), Duration::from_secs(5));
        assert_eq!(p.backoff(2, 0.0), Duration::from_secs(10));
        assert_eq!(p.backoff(4, 0.0), Duration::from_secs(40));
        assert_eq!(p.backoff(20, 0.0), Duration::from_secs(1800));
        assert_eq!(p.backoff(60, 0.999_999).as_secs(), 3599);
    }
}
