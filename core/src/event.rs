//! The event: one immutable, fully enriched record of something a visitor did.

use crate::money::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use uuid::Uuid;

/// What kind of thing happened.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A page was viewed.
    #[default]
    Pageview,
    /// A named goal was reached.
    Goal,
    /// Something was bought; carries revenue.
    Purchase,
    /// A custom, named event.
    Custom,
    /// Engagement report for a page (time on page, scroll depth); never ends a bounce.
    Engagement,
}

impl EventKind {
    /// Every kind, in their numeric order.
    pub const ALL: [EventKind; 5] = [
        EventKind::Pageview,
        EventKind::Goal,
        EventKind::Purchase,
        EventKind::Custom,
        EventKind::Engagement,
    ];
    /// The name used in hits and JSON (`"pageview"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Pageview => "pageview",
            EventKind::Goal => "goal",
            EventKind::Purchase => "purchase",
            EventKind::Custom => "custom",
            EventKind::Engagement => "engagement",
        }
    }
    /// Parses the JSON name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// Whether this kind, in a session, means the session is not a bounce
    /// (goal, purchase and custom events do; engagement reports do not).
    pub fn is_interaction(&self) -> bool {
        matches!(
            self,
            EventKind::Goal | EventKind::Purchase | EventKind::Custom
        )
    }
    /// Whether this kind counts as a conversion (goal or purchase).
    pub fn is_conversion(&self) -> bool {
        matches!(self, EventKind::Goal | EventKind::Purchase)
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Identity {
    /// The visitor: the client's id, or the cookieless daily hash.
    pub visitor_id: String,
    /// The session as assigned by the [`crate::Sessionizer`] at ingest (stores may re-derive it).
    pub session_id: Option<u64>,
    /// 1 for the visitor's first session, as assigned at ingest.
    pub session_number: Option<u32>,
    /// The site's own user id, when the site sends one.
    pub user_id: Option<String>,
    /// SHA-256 (hex) of the normalised e-mail address.
    pub email_sha256: Option<String>,
    /// SHA-256 (hex) of the normalised phone number.
    pub phone_sha256: Option<String>,
}

/// The page it happened on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Page {
    /// The full URL as sent.
    pub url: String,
    /// Host of the URL, lower case.
    pub host: String,
    /// Path of the URL without query string or fragment (the `page` dimension).
    pub path: String,
    /// Document title.
    pub title: Option<String>,
    /// Referrer URL without query string or fragment.
    pub referrer: Option<String>,
    /// Host of the referrer, lower case, without a leading `www.`.
    pub referrer_domain: Option<String>,
}

/// UTM parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Utm {
    /// utm_source.
    pub source: Option<String>,
    /// utm_medium.
    pub medium: Option<String>,
    /// utm_campaign.
    pub campaign: Option<String>,
    /// utm_content.
    pub content: Option<String>,
    /// utm_term.
    pub term: Option<String>,
}

/// Advertising click ids.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClickIds {
    /// Google Ads.
    pub gclid: Option<String>,
    /// Meta.
    pub fbclid: Option<String>,
    /// TikTok.
    pub ttclid: Option<String>,
    /// Microsoft Ads.
    pub msclkid: Option<String>,
}

/// Where the visit came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Acquisition {
    /// Source name (`Google`, `Hacker News`, a referrer domain).
    pub source: Option<String>,
    /// Medium (`organic`, `cpc`, `referral`, `email`).
    pub medium: Option<String>,
    /// Channel (`Organic Search`, `Paid Social`, `Direct`).
    pub channel: Option<String>,
    /// UTM parameters of the landing URL.
    pub utm: Utm,
    /// Click ids of the landing URL.
    pub click_ids: ClickIds,
}

/// Kind of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    /// Desktop or laptop.
    Desktop,
    /// Phone.
    Mobile,
    /// Tablet.
    Tablet,
    /// Smart TV.
    Tv,
    /// Game console.
    Console,
    /// A bot or crawler.
    Bot,
    /// Not known.
    #[default]
    Unknown,
}

impl DeviceType {
    /// The JSON name (`"desktop"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceType::Desktop => "desktop",
            DeviceType::Mobile => "mobile",
            DeviceType::Tablet => "tablet",
            DeviceType::Tv => "tv",
            DeviceType::Console => "console",
            DeviceType::Bot => "bot",
            DeviceType::Unknown => "unknown",
        }
    }
}

/// The visitor's device and client.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Device {
    /// Kind of device; `None` before enrichment.
    pub device_type: Option<DeviceType>,
    /// Maker (`Apple`, `Samsung`).
    pub brand: Option<String>,
    /// Model (`iPhone`, `SM-G991B`).
    pub model: Option<String>,
    /// Browser name.
    pub browser: Option<String>,
    /// Browser version.
    pub browser_version: Option<String>,
    /// Operating system name.
    pub os: Option<String>,
    /// Operating system version.
    pub os_version: Option<String>,
    /// Screen size in CSS pixels (width, height).
    pub screen: Option<(u32, u32)>,
    /// Viewport size in CSS pixels (width, height).
    pub viewport: Option<(u32, u32)>,
    /// Device pixel ratio.
    pub pixel_ratio: Option<f32>,
    /// Preferred language (BCP 47).
    pub language: Option<String>,
}

/// Where the visitor was.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country.
    pub country: Option<String>,
    /// Region (ISO 3166-2 subdivision code or name).
    pub region: Option<String>,
    /// City name.
    pub city: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// Latitude.
    pub latitude: Option<f64>,
    /// Longitude.
    pub longitude: Option<f64>,
    /// IANA time zone of the location.
    pub timezone: Option<String>,
}

/// What kind of network or visitor a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitorType {
    /// A company network.
    Business,
    /// A consumer ISP.
    Consumer,
    /// A hosting or data-centre network.
    Hosting,
    /// A bot.
    Bot,
    /// A VPN, proxy or privacy relay.
    Privacy,
}

impl VisitorType {
    /// The JSON name (`"business"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            VisitorType::Business => "business",
            VisitorType::Consumer => "consumer",
            VisitorType::Hosting => "hosting",
            VisitorType::Bot => "bot",
            VisitorType::Privacy => "privacy",
        }
    }
}

/// The company behind a business network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Company {
    /// Name.
    pub name: Option<String>,
    /// Web domain.
    pub domain: Option<String>,
    /// Industry.
    pub industry: Option<String>,
    /// Size band (`51-200`).
    pub size: Option<String>,
}

/// Network facts about the request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Network {
    /// The IP address; kept only for sites that opted in to storing it.
    pub ip: Option<IpAddr>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Internet service provider.
    pub isp: Option<String>,
    /// Organisation that holds the address.
    pub organization: Option<String>,
    /// Company, for business networks only.
    pub company: Company,
    /// Business, consumer, hosting, bot or privacy.
    pub visitor_type: Option<VisitorType>,
    /// The address is a VPN exit.
    pub is_vpn: bool,
    /// The address is a proxy.
    pub is_proxy: bool,
    /// The address is in a hosting network.
    pub is_hosting: bool,
}

/// Engagement figures reported by the page.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Engagement {
    /// Engaged time on the page, milliseconds.
    pub time_ms: Option<u64>,
    /// Largest scroll depth, percent (0..=100).
    pub scroll_depth: Option<u8>,
    /// Clicks.
    pub clicks: Option<u32>,
    /// Form submissions.
    pub form_submits: Option<u32>,
    /// Video plays.
    pub video_plays: Option<u32>,
    /// File downloads.
    pub downloads: Option<u32>,
}

/// Money attached to the event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Commerce {
    /// Revenue of a purchase, exact.
    pub revenue: Option<Money>,
    /// The shop's order id (refunds name it).
    pub order_id: Option<String>,
    /// Value of a goal.
    pub goal_value: Option<Money>,
}

/// Why an event was classified as a bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotInfo {
    /// The rule that matched (`crawler pattern "Googlebot"`, `missing user agent`).
    pub reason: String,
}

/// One event, fully enriched. Immutable once stored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Event {
    /// Unique id (UUIDv7).
    pub id: Uuid,
    /// The site (its domain).
    pub site: String,
    /// Kind of event.
    pub kind: EventKind,
    /// Goal or custom event name; for purchases an optional product or plan name.
    pub name: Option<String>,
    /// When it happened: the server clock on live ingest, the line's time on import.
    pub timestamp: DateTime<Utc>,
    /// The time the client reported, when it sent one.
    pub client_timestamp: Option<DateTime<Utc>>,
    /// Who.
    pub identity: Identity,
    /// Where on the site.
    pub page: Page,
    /// How the visitor came.
    pub acquisition: Acquisition,
    /// With what device.
    pub device: Device,
    /// From where.
    pub location: Location,
    /// Over which network.
    pub network: Network,
    /// Engagement figures.
    pub engagement: Engagement,
    /// Money.
    pub commerce: Commerce,
    /// Custom properties (bounded: see [`crate::Limits`]).
    pub props: BTreeMap<String, String>,
    /// Bot classification; `Some` means the event is left out of metrics unless asked for.
    pub bot: Option<BotInfo>,
}

impl Event {
    /// Whether the event was classified as a bot.
    pub fn is_bot(&self) -> bool {
        self.bot.is_some()
    }
}
