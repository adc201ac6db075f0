//! The event: one immutable, fully enriched record of something a visitor did.

use crate::money::Money;
use crate::text::Text;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use uuid::Uuid;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// What kind of thing happened.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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
    /// A refund of an earlier purchase, naming its order id (usually from a payment
    /// webhook). A ledger entry, not visitor activity: it belongs to no session and
    /// counts in no traffic metric; attribution uses it to reverse the order's credit.
    Refund,
}

impl EventKind {
    /// Every kind, in their numeric order.
    pub const ALL: [EventKind; 6] = [
        EventKind::Pageview,
        EventKind::Goal,
        EventKind::Purchase,
        EventKind::Custom,
        EventKind::Engagement,
        EventKind::Refund,
    ];
    /// The name used in hits and JSON (`"pageview"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Pageview => "pageview",
            EventKind::Goal => "goal",
            EventKind::Purchase => "purchase",
            EventKind::Custom => "custom",
            EventKind::Engagement => "engagement",
            EventKind::Refund => "refund",
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
    /// Whether events of this kind are visitor activity, part of sessions and
    /// metrics (every kind but [`EventKind::Refund`]).
    pub fn is_activity(&self) -> bool {
        *self != EventKind::Refund
    }
    /// Whether this kind counts as a conversion (goal or purchase).
    pub fn is_conversion(&self) -> bool {
        matches!(self, EventKind::Goal | EventKind::Purchase)
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    /// The visitor: the client's id, or the cookieless daily hash.
    pub visitor_id: String,
    /// The session as assigned by the [`crate::Sessionizer`] at ingest (stores may re-derive it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<u64>,
    /// 1 for the visitor's first session, as assigned at ingest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_number: Option<u32>,
    /// The site's own user id, when the site sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// SHA-256 (hex) of the normalised e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_sha256: Option<String>,
    /// SHA-256 (hex) of the normalised phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_sha256: Option<String>,
}

/// The page it happened on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Page {
    /// The full URL as sent.
    pub url: String,
    /// Host of the URL, lower case.
    pub host: String,
    /// Path of the URL without query string or fragment (the `page` dimension).
    pub path: String,
    /// Document title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Referrer URL without query string or fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// Host of the referrer, lower case, without a leading `www.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_domain: Option<String>,
}

/// UTM parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Utm {
    /// utm_source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Text>,
    /// utm_medium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<Text>,
    /// utm_campaign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<Text>,
    /// utm_content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Text>,
    /// utm_term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<Text>,
}

/// Advertising click ids.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClickIds {
    /// Google Ads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    /// Meta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbclid: Option<String>,
    /// TikTok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttclid: Option<String>,
    /// Microsoft Ads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msclkid: Option<String>,
}

/// Where the visit came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Acquisition {
    /// Source name (`Google`, `Hacker News`, a referrer domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Text>,
    /// Medium (`organic`, `cpc`, `referral`, `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<Text>,
    /// Channel (`Organic Search`, `Paid Social`, `Direct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Text>,
    /// UTM parameters of the landing URL.
    #[serde(default, skip_serializing_if = "is_default")]
    pub utm: Utm,
    /// Click ids of the landing URL.
    #[serde(default, skip_serializing_if = "is_default")]
    pub click_ids: ClickIds,
}

/// Kind of device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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
    /// Every kind of device.
    pub const ALL: [DeviceType; 7] = [
        DeviceType::Desktop,
        DeviceType::Mobile,
        DeviceType::Tablet,
        DeviceType::Tv,
        DeviceType::Console,
        DeviceType::Bot,
        DeviceType::Unknown,
    ];
    /// Parses the JSON name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
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
#[serde(default)]
pub struct Device {
    /// Kind of device; `None` before enrichment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<DeviceType>,
    /// Maker (`Apple`, `Samsung`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<Text>,
    /// Model: the marketing name where it is known (`Galaxy S21 5G`, `iPhone 13
    /// Pro`), the code otherwise (`SM-X9999`), or the family (`iPhone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Text>,
    /// The model code the agent carried (`SM-G991B`, `iPhone14,2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_code: Option<Text>,
    /// Browser name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<Text>,
    /// Browser version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_version: Option<Text>,
    /// Operating system name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Text>,
    /// Operating system version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<Text>,
    /// Screen size in CSS pixels (width, height).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<(u32, u32)>,
    /// Viewport size in CSS pixels (width, height).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewport: Option<(u32, u32)>,
    /// Device pixel ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_ratio: Option<f32>,
    /// Preferred language (BCP 47).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Where the visitor was.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Text>,
    /// Region (ISO 3166-2 subdivision code or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Text>,
    /// City name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<Text>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<Text>,
    /// Latitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Longitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// IANA time zone of the location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Text>,
}

/// What kind of network or visitor a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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
    /// Every visitor type.
    pub const ALL: [VisitorType; 5] = [
        VisitorType::Business,
        VisitorType::Consumer,
        VisitorType::Hosting,
        VisitorType::Bot,
        VisitorType::Privacy,
    ];
    /// Parses the JSON name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
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
#[serde(default)]
pub struct Company {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
    /// Web domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Text>,
    /// Industry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<Text>,
    /// Size band (`51-200`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Text>,
}

/// Network facts about the request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    /// The IP address; kept only for sites that opted in to storing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Autonomous system number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// Internet service provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isp: Option<Text>,
    /// Organisation that holds the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Text>,
    /// Company, for business networks only.
    #[serde(default, skip_serializing_if = "is_default")]
    pub company: Company,
    /// Business, consumer, hosting, bot or privacy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_type: Option<VisitorType>,
    /// The address is a VPN exit.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_vpn: bool,
    /// The address is a proxy.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_proxy: bool,
    /// The address is in a hosting network.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_hosting: bool,
}

/// Engagement figures reported by the page.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Engagement {
    /// Engaged time on the page, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
    /// Largest scroll depth, percent (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scroll_depth: Option<u8>,
    /// Clicks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clicks: Option<u32>,
    /// Form submissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_submits: Option<u32>,
    /// Video plays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_plays: Option<u32>,
    /// File downloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloads: Option<u32>,
}

/// Money attached to the event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Commerce {
    /// Revenue of a purchase, exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue: Option<Money>,
    /// The shop's order id (refunds name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Value of a goal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_value: Option<Money>,
    /// For a refund: the order's total refunded so far, when the payment provider
    /// reports it (redelivered and repeated partial refunds then stay exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_total: Option<Money>,
}

/// Why an event was classified as a bot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotInfo {
    /// The rule that matched (`crawler pattern "Googlebot"`, `missing user agent`).
    pub reason: Text,
}

/// One event, fully enriched. Immutable once stored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// Unique id (UUIDv7).
    pub id: Uuid,
    /// The site (its domain).
    pub site: String,
    /// Kind of event.
    pub kind: EventKind,
    /// Goal or custom event name; for purchases an optional product or plan name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it happened: the server clock on live ingest, the line's time on import.
    #[serde(
        serialize_with = "crate::time::rfc3339::serialize_instant",
        deserialize_with = "crate::time::rfc3339::instant"
    )]
    pub timestamp: DateTime<Utc>,
    /// The time the client reported, when it sent one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::time::rfc3339::serialize_optional_instant",
        deserialize_with = "crate::time::rfc3339::optional_instant"
    )]
    pub client_timestamp: Option<DateTime<Utc>>,
    /// Who.
    #[serde(default, skip_serializing_if = "is_default")]
    pub identity: Identity,
    /// Where on the site.
    #[serde(default, skip_serializing_if = "is_default")]
    pub page: Page,
    /// How the visitor came.
    #[serde(default, skip_serializing_if = "is_default")]
    pub acquisition: Acquisition,
    /// With what device.
    #[serde(default, skip_serializing_if = "is_default")]
    pub device: Device,
    /// From where.
    #[serde(default, skip_serializing_if = "is_default")]
    pub location: Location,
    /// Over which network.
    #[serde(default, skip_serializing_if = "is_default")]
    pub network: Network,
    /// Engagement figures.
    #[serde(default, skip_serializing_if = "is_default")]
    pub engagement: Engagement,
    /// Money.
    #[serde(default, skip_serializing_if = "is_default")]
    pub commerce: Commerce,
    /// Custom properties (bounded: see [`crate::Limits`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub props: BTreeMap<String, String>,
    /// Bot classification; `Some` means the event is left out of metrics unless asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<BotInfo>,
}

impl Event {
    /// Whether the event was classified as a bot.
    pub fn is_bot(&self) -> bool {
        self.bot.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};

    #[test]
    fn the_lists_of_kinds_hold_every_variant_and_parse_back() {
        // Exhaustive matches: a new variant fails to compile here until listed.
        let listed = |d: DeviceType| match d {
            DeviceType::Desktop
            | DeviceType::Mobile
            | DeviceType::Tablet
            | DeviceType::Tv
            | DeviceType::Console
            | DeviceType::Bot
            | DeviceType::Unknown => DeviceType::ALL.contains(&d),
        };
        assert!(DeviceType::ALL.into_iter().all(listed));
        let listed = |v: VisitorType| match v {
            VisitorType::Business
            | VisitorType::Consumer
            | VisitorType::Hosting
            | VisitorType::Bot
            | VisitorType::Privacy => VisitorType::ALL.contains(&v),
        };
        assert!(VisitorType::ALL.into_iter().all(listed));
        let listed = |k: EventKind| match k {
            EventKind::Pageview
            | EventKind::Goal
            | EventKind::Purchase
            | EventKind::Custom
            | EventKind::Engagement
            | EventKind::Refund => EventKind::ALL.contains(&k),
        };
        assert!(EventKind::ALL.into_iter().all(listed));
        for d in DeviceType::ALL {
            assert_eq!(DeviceType::parse(d.as_str()), Some(d));
        }
        for v in VisitorType::ALL {
            assert_eq!(VisitorType::parse(v.as_str()), Some(v));
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(DeviceType::parse("fridge"), None);
        assert_eq!(VisitorType::parse(""), None);
    }

    #[test]
    fn json_round_trip_and_compact_form() {
        let mut full = Event {
            id: Uuid::from_u128(7),
            site: "a.com".into(),
            kind: EventKind::Purchase,
            name: Some("purchase".into()),
            ..Event::default()
        };
        full.identity.visitor_id = "v".into();
        full.page.url = "https://a.com/x".into();
        full.page.path = "/x".into();
        full.network.is_vpn = true;
        full.network.company.name = Some("Acme".into());
        full.commerce.revenue = Some(Money {
            minor: 4900,
            currency: Currency::USD,
        });
        full.props.insert("plan".into(), "pro".into());
        full.bot = Some(BotInfo { reason: "x".into() });
        for e in [full.clone(), Event::default()] {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e, "{json}");
        }
        let mut pageview = Event {
            site: "a.com".into(),
            ..Event::default()
        };
        pageview.identity.visitor_id = "0123456789abcdef".into();
        pageview.page.url = "https://a.com/pricing".into();
        pageview.page.host = "a.com".into();
        pageview.page.path = "/pricing".into();
        pageview.device.browser = Some("Firefox".into());
        let json = serde_json::to_string(&pageview).unwrap();
        assert!(
            !json.contains("null") && json.len() < 300,
            "{} bytes: {json}",
            json.len()
        );
    }
}
