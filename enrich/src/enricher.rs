//! The enrichment pipeline: composable steps, configured once, shared across threads.

use crate::bots::{BotDetector, BotListError, BotReason};
use crate::cache::BoundedCache;
use crate::geo::GeoDatabases;
use crate::network::{NetworkClassifier, NetworkVerdict};
use crate::referrer::{ReferrerClassifier, ReferrerListError};
use crate::ua::{ClientInfo, UserAgentParser};
use crate::url::{query_facts, UrlFacts};
use beacon_core::backend::UrlParts;
use beacon_core::{BotInfo, DeviceType, Event, Location, Site, Text, ValidatedHit};
use beacon_core::{ClientHints, RequestFacts};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::Arc;

/// One step of the pipeline; they run in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// UTM parameters and click ids from the page URL.
    Url,
    /// Source, medium and channel from the referrer and the URL.
    Referrer,
    /// Browser, OS, device type, brand and model from the user agent and Client Hints.
    UserAgent,
    /// Bot classification from the user agent.
    Bots,
    /// Location, ASN, ISP and anonymiser flags from the GeoIP databases.
    Geo,
    /// Visitor type, VPN / proxy / hosting and company from everything above.
    Network,
}

impl Step {
    /// Every step, in the default order.
    pub const ALL: [Step; 6] = [
        Step::Url,
        Step::Referrer,
        Step::UserAgent,
        Step::Bots,
        Step::Geo,
        Step::Network,
    ];
}

/// Why an enricher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// The embedded bot lists did not load.
    #[error(transparent)]
    Bots(#[from] BotListError),
    /// The embedded referrer lists did not load.
    #[error(transparent)]
    Referrers(#[from] ReferrerListError),
}

/// The request facts enrichment reads besides the event (core's [`RequestFacts`]).
pub type Request<'a> = RequestFacts<'a>;

/// What the user agent alone says, cached per (agent, hints), in the event's own
/// field types (cloning a [`Text`] only counts a reference).
#[derive(Debug)]
struct AgentFacts {
    browser: Option<Text>,
    browser_version: Option<Text>,
    os: Option<Text>,
    os_version: Option<Text>,
    device_type: Option<DeviceType>,
    brand: Option<Text>,
    model: Option<Text>,
    model_code: Option<Text>,
    /// The type is inferred: a screen size decides instead.
    type_guessed: bool,
    bot: Option<(BotReason, Text)>,
}

impl AgentFacts {
    fn new(client: ClientInfo, bot: Option<BotReason>) -> Self {
        let text = |s: Option<String>| s.map(Text::from);
        Self {
            browser: text(client.browser),
            browser_version: text(client.browser_version),
            os: text(client.os),
            os_version: text(client.os_version),
            // Bots are the bot detector's call (the Bots step types them); the
            // parser types the hardware an agent claims.
            device_type: client.device_type,
            brand: text(client.brand),
            model: text(client.model),
            model_code: text(client.model_code),
            type_guessed: client.device_type_guessed,
            bot: bot.map(|r| {
                let reason = Text::from(r.to_string());
                (r, reason)
            }),
        }
    }
}

/// What the databases and network lists say about one address, cached per address
/// (a visitor's hits come from one address; decoding the database records and
/// searching the range lists was most of the work).
#[derive(Debug, Default)]
struct AddressFacts {
    /// The [`GeoDatabases::generation`] the answer was read under.
    generation: u64,
    location: Location,
    asn: Option<u32>,
    isp: Option<Text>,
    organization: Option<Text>,
    /// The network step's verdict for a visitor who is not a bot.
    verdict: NetworkVerdict,
}

/// Addresses whose facts are kept.
const ADDRESS_CACHE: usize = 65_536;

/// Configures an [`Enricher`].
#[derive(Debug)]
pub struct EnricherBuilder {
    steps: Vec<Step>,
    geo: GeoDatabases,
    cache_capacity: usize,
    datacenter_is_bot: bool,
}

impl Default for EnricherBuilder {
    fn default() -> Self {
        Self {
            steps: Step::ALL.to_vec(),
            geo: GeoDatabases::new(),
            cache_capacity: 100_000,
            datacenter_is_bot: true,
        }
    }
}

impl EnricherBuilder {
    /// Runs only these steps, in this order.
    pub fn steps(mut self, steps: &[Step]) -> Self {
        self.steps = steps.to_vec();
        self
    }
    /// Uses these GeoIP databases.
    pub fn geo(mut self, geo: GeoDatabases) -> Self {
        self.geo = geo;
        self
    }
    /// Caches at most about `n` distinct user agents (default 100 000).
    pub fn user_agent_cache(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }
    /// Whether traffic from data-centre networks counts as bots (default: yes; it is
    /// kept either way, with `visitor_type = hosting`).
    pub fn datacenter_is_bot(mut self, yes: bool) -> Self {
        self.datacenter_is_bot = yes;
        self
    }
    /// Builds the enricher (loads the embedded lists).
    pub fn build(self) -> Result<Enricher, EnrichError> {
        let network = NetworkClassifier::embedded();
        let bots = BotDetector::embedded()?;
        Ok(Enricher {
            steps: self.steps,
            ua: UserAgentParser::new(),
            no_agent: Arc::new(AgentFacts::new(ClientInfo::default(), bots.classify(None))),
            bots,
            referrers: ReferrerClassifier::embedded()?,
            no_address: network.classify(None, &Default::default(), false),
            network,
            geo: Arc::new(self.geo),
            cache: BoundedCache::new(self.cache_capacity),
            addresses: BoundedCache::new(ADDRESS_CACHE),
            datacenter_reason: Text::from(BotReason::DatacenterNetwork.to_string()),
            datacenter_is_bot: self.datacenter_is_bot,
        })
    }
}

/// The enrichment pipeline. Synchronous and CPU-only; share it (`Arc`) across threads.
#[derive(Debug)]
pub struct Enricher {
    steps: Vec<Step>,
    ua: UserAgentParser,
    bots: BotDetector,
    referrers: ReferrerClassifier,
    network: NetworkClassifier,
    geo: Arc<GeoDatabases>,
    cache: BoundedCache<String, AgentFacts>,
    addresses: BoundedCache<IpAddr, AddressFacts>,
    /// The network verdict for a request without an address.
    no_address: NetworkVerdict,
    /// The facts of a request without a user agent (built once, not per hit).
    no_agent: Arc<AgentFacts>,
    datacenter_reason: Text,
    datacenter_is_bot: bool,
}

impl Enricher {
    /// Every step, the embedded lists, no GeoIP database.
    pub fn new() -> Result<Self, EnrichError> {
        Self::builder().build()
    }

    /// Configures an enricher.
    pub fn builder() -> EnricherBuilder {
        EnricherBuilder::default()
    }

    /// The GeoIP databases (to reload them after the files were replaced).
    pub fn geo(&self) -> &GeoDatabases {
        &self.geo
    }

    /// User-agent cache (hits, misses) so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// Address cache (hits, misses) so far.
    pub fn address_cache_stats(&self) -> (u64, u64) {
        self.addresses.stats()
    }

    /// Enriches a validated hit into the event for `site`; the IP stays on the event
    /// only when the site opted in to storing it.
    pub fn enrich_hit(&self, hit: ValidatedHit, site: &Site) -> Event {
        let mut event = hit.event;
        let req = Request {
            ip: hit.ip,
            user_agent: hit.user_agent.as_deref(),
            client_hints: None,
            server_side: hit.client_visitor_id.is_some() && hit.user_agent.is_none(),
        };
        self.enrich(&mut event, &req, site);
        event
    }

    /// Runs the configured steps on `event`.
    ///
    /// The network step reads the GeoIP answer when the geo step is configured
    /// (wherever it sits in the order).
    pub fn enrich(&self, event: &mut Event, req: &Request<'_>, site: &Site) {
        let mut address: Option<Arc<AddressFacts>> = None;
        let mut agent: Option<Arc<AgentFacts>> = None;
        let mut url: Option<UrlFacts> = None;
        let mut url_step = false;
        for step in &self.steps {
            match step {
                Step::Url => {
                    url.get_or_insert_with(|| Self::url(&mut event.page));
                    url_step = true;
                }
                Step::Referrer => {
                    let url = url.get_or_insert_with(|| Self::url(&mut event.page));
                    let referrer_host = event.page.referrer_domain.as_deref();
                    let page_host = event.page.host.as_str();
                    let a = if site.extra_hosts.is_empty() {
                        let own = [site.domain.as_str(), page_host];
                        self.referrers.attribute(url, referrer_host, &own)
                    } else {
                        let mut own: Vec<&str> = vec![site.domain.as_str(), page_host];
                        own.extend(site.extra_hosts.iter().map(String::as_str));
                        self.referrers.attribute(url, referrer_host, &own)
                    };
                    event.acquisition.source = a.source;
                    event.acquisition.medium = a.medium;
                    event.acquisition.channel = Some(a.channel);
                }
                Step::UserAgent | Step::Bots => {
                    let facts =
                        agent.get_or_insert_with(|| self.agent(req.user_agent, req.client_hints));
                    if *step == Step::UserAgent {
                        let d = &mut event.device;
                        d.browser.clone_from(&facts.browser);
                        d.browser_version.clone_from(&facts.browser_version);
                        d.os.clone_from(&facts.os);
                        d.os_version.clone_from(&facts.os_version);
                        d.device_type = match (facts.device_type, d.screen) {
                            // Android's own line between phones and tablets: a
                            // smallest width of 600 pixels.
                            (Some(DeviceType::Mobile | DeviceType::Tablet), Some((w, h)))
                                if facts.type_guessed && w.min(h) > 0 =>
                            {
                                Some(if w.min(h) < 600 {
                                    DeviceType::Mobile
                                } else {
                                    DeviceType::Tablet
                                })
                            }
                            (t, _) => t,
                        };
                        d.brand.clone_from(&facts.brand);
                        d.model.clone_from(&facts.model);
                        d.model_code.clone_from(&facts.model_code);
                    } else if let Some((_, reason)) = facts
                        .bot
                        .as_ref()
                        .filter(|(r, _)| !(req.server_side && *r == BotReason::MissingUserAgent))
                    {
                        event.bot = Some(BotInfo {
                            reason: reason.clone(),
                        });
                        event.device.device_type = Some(DeviceType::Bot);
                    }
                }
                Step::Geo => {
                    if let Some(ip) = req.ip.filter(|_| !self.geo.is_empty()) {
                        let a = address.get_or_insert_with(|| self.address(ip));
                        event.location.clone_from(&a.location);
                        event.network.asn = a.asn;
                        event.network.isp.clone_from(&a.isp);
                        event.network.organization.clone_from(&a.organization);
                    }
                }
                Step::Network => {
                    let is_bot = event.bot.is_some();
                    let v = match req.ip {
                        Some(ip) => &address.get_or_insert_with(|| self.address(ip)).verdict,
                        None => &self.no_address,
                    };
                    let n = &mut event.network;
                    n.is_vpn = v.is_vpn;
                    n.is_proxy = v.is_proxy;
                    n.is_hosting = v.is_hosting;
                    if is_bot {
                        n.visitor_type = Some(beacon_core::VisitorType::Bot);
                        n.company.name = None;
                        n.company.domain = None;
                    } else {
                        n.visitor_type = v.visitor_type;
                        n.company.name.clone_from(&v.company);
                        n.company.domain.clone_from(&v.company_domain);
                    }
                    // People on VPNs and anonymisers are people (visitor type
                    // privacy), though most such exits sit in data centres; other
                    // data-centre traffic is not, by default.
                    let anonymiser = v.visitor_type == Some(beacon_core::VisitorType::Privacy);
                    if v.is_hosting && self.datacenter_is_bot && !is_bot && !anonymiser {
                        event.bot = Some(BotInfo {
                            reason: self.datacenter_reason.clone(),
                        });
                    }
                }
            }
        }
        event.network.ip = req.ip.filter(|_| site.store_ip);
        if let Some(u) = url.filter(|_| url_step) {
            event.acquisition.utm = u.utm;
            event.acquisition.click_ids = u.click_ids;
        }
    }

    /// The campaign facts of the page URL; fills in the page's host and path when
    /// the event came without them.
    fn url(page: &mut beacon_core::Page) -> UrlFacts {
        let Ok(parts) = UrlParts::parse(&page.url) else {
            return UrlFacts::default();
        };
        if page.host.is_empty() {
            if let Some(host) = parts.host.as_deref() {
                page.host = host.to_owned();
                page.path = parts.path.to_string();
            }
        }
        query_facts(&parts)
    }

    /// The cached facts about `ip`, read again when a database was replaced since.
    fn address(&self, ip: IpAddr) -> Arc<AddressFacts> {
        let generation = self.geo.generation();
        let cached = self
            .addresses
            .get_or_insert_with(&ip, || self.address_uncached(ip, generation));
        if cached.generation == generation {
            return cached;
        }
        self.addresses
            .insert(ip, self.address_uncached(ip, generation))
    }

    fn address_uncached(&self, ip: IpAddr, generation: u64) -> AddressFacts {
        let geo = if self.steps.contains(&Step::Geo) && !self.geo.is_empty() {
            self.geo.lookup(ip)
        } else {
            Default::default()
        };
        let verdict = self.network.classify(Some(ip), &geo, false);
        AddressFacts {
            generation,
            isp: geo.isp.clone().or_else(|| geo.asn_organization.clone()),
            organization: geo
                .organization
                .clone()
                .or_else(|| geo.asn_organization.clone()),
            asn: geo.asn,
            location: geo.location,
            verdict,
        }
    }

    fn agent(&self, ua: Option<&str>, hints: Option<&ClientHints>) -> Arc<AgentFacts> {
        let no_hints = ClientHints::default();
        let hints = hints.unwrap_or(&no_hints);
        let make = || {
            AgentFacts::new(
                ua.map(|u| self.ua.parse(u, hints)).unwrap_or_default(),
                self.bots.classify(ua),
            )
        };
        match ua {
            Some(u) if hints.is_empty() => self.cache.get_or_insert_with(u, make),
            Some(u) => {
                let key = format!("{u}\u{1}{:?}", hints);
                self.cache.get_or_insert_with(key.as_str(), make)
            }
            // Without an agent, hints name no browser: the answer is always this one.
            None => Arc::clone(&self.no_agent),
        }
    }
}

/// The flat JSON object `beacon enrich` writes per hit (contract section 1).
pub fn flat_json(e: &Event) -> Value {
    let d = &e.device;
    let l = &e.location;
    let n = &e.network;
    let a = &e.acquisition;
    json!({
        "browser": d.browser, "browser_version": d.browser_version, "os": d.os, "os_version": d.os_version,
        "device_type": d.device_type.map(|t| t.as_str()), "device_brand": d.brand, "device_model": d.model, "device_model_code": d.model_code,
        "is_bot": e.bot.is_some(), "bot_reason": e.bot.as_ref().map(|b| b.reason.as_str()),
        "country": l.country, "region": l.region, "city": l.city, "timezone": l.timezone,
        "asn": n.asn, "isp": n.isp, "organization": n.organization, "company": n.company.name,
        "visitor_type": n.visitor_type.map(|v| v.as_str()), "is_vpn": n.is_vpn, "is_proxy": n.is_proxy, "is_hosting": n.is_hosting,
        "host": e.page.host, "page": e.page.path, "source": a.source, "medium": a.medium, "channel": a.channel,
        "utm_source": a.utm.source, "utm_medium": a.utm.medium, "utm_campaign": a.utm.campaign,
        "utm_content": a.utm.content, "utm_term": a.utm.term,
        "gclid": a.click_ids.gclid, "fbclid": a.click_ids.fbclid, "ttclid": a.click_ids.ttclid, "msclkid": a.click_ids.msclkid,
    })
}

impl beacon_core::Enrich for Enricher {
    fn enrich(&self, event: &mut Event, request: &RequestFacts<'_>, site: &Site) {
        Enricher::enrich(self, event, request, site);
    }
}
