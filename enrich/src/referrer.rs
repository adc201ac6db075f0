//! Referrer source, medium and channel, from the CC0 search / social / AI lists.

use crate::url::UrlFacts;
use beacon_core::Text;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// What kind of referrer a known host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferrerKind {
    /// A search engine.
    Search,
    /// A social network.
    Social,
    /// An AI assistant.
    AiAssistant,
}

/// Source, medium and channel of a visit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    /// Source name (`Google`, `Hacker News`) or the referrer's domain.
    pub source: Option<Text>,
    /// Medium (`organic`, `cpc`, `social`, `referral`, `email`, `ai`, or utm_medium).
    pub medium: Option<Text>,
    /// Channel (`Direct`, `Organic Search`, `Paid Search`, `Organic Social`, `Paid Social`,
    /// `Email`, `Referral`, `AI Assistants`, `Affiliates`, `Display`, `Paid Other`, `Internal`).
    pub channel: Text,
}

#[derive(Deserialize)]
struct Engine {
    urls: Vec<String>,
}

/// Known referrer hosts; built once, shared across threads.
#[derive(Debug, Clone)]
pub struct ReferrerClassifier {
    /// Exact hosts.
    hosts: HostMap,
    /// `google.{}`: by the part before the country suffix (`google`).
    any_tld: HostMap,
    /// `{}.images.yahoo.com`: by the part after the country prefix.
    any_prefix: HostMap,
    /// Lowercase source name → kind (for `utm_source=facebook`).
    names: HashMap<String, ReferrerKind>,
    /// The fixed words of an attribution, made once and shared by every event: each
    /// [`Channel`]'s name at its index, then [`MEDIUMS`] and [`PAID_SOURCES`].
    channels: Vec<Text>,
    mediums: Vec<Text>,
    paid_sources: Vec<Text>,
}

/// A channel, as [`channel`] decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Email,
    Affiliates,
    Display,
    PaidSocial,
    PaidSearch,
    PaidOther,
    AiAssistants,
    OrganicSearch,
    OrganicSocial,
    Internal,
    Referral,
    Direct,
}

impl Channel {
    /// Every channel, in declaration (index) order.
    const ALL: [Channel; 12] = [
        Channel::Email,
        Channel::Affiliates,
        Channel::Display,
        Channel::PaidSocial,
        Channel::PaidSearch,
        Channel::PaidOther,
        Channel::AiAssistants,
        Channel::OrganicSearch,
        Channel::OrganicSocial,
        Channel::Internal,
        Channel::Referral,
        Channel::Direct,
    ];

    fn name(self) -> &'static str {
        match self {
            Channel::Email => "Email",
            Channel::Affiliates => "Affiliates",
            Channel::Display => "Display",
            Channel::PaidSocial => "Paid Social",
            Channel::PaidSearch => "Paid Search",
            Channel::PaidOther => "Paid Other",
            Channel::AiAssistants => "AI Assistants",
            Channel::OrganicSearch => "Organic Search",
            Channel::OrganicSocial => "Organic Social",
            Channel::Internal => "Internal",
            Channel::Referral => "Referral",
            Channel::Direct => "Direct",
        }
    }
}

/// Mediums the classifier names itself (utm_medium is taken as sent).
const MEDIUMS: [&str; 5] = ["cpc", "organic", "social", "ai", "referral"];

/// Sources implied by a click id: gclid, fbclid, ttclid, msclkid.
const PAID_SOURCES: [&str; 4] = ["Google", "Facebook", "TikTok", "Bing"];

/// Hosts of well-known sites that the CC0 lists leave out or name differently.
const EXTRA: [(&str, &str, ReferrerKind); 6] = [
    ("news.ycombinator.com", "Hacker News", ReferrerKind::Social),
    ("t.co", "X", ReferrerKind::Social),
    ("x.com", "X", ReferrerKind::Social),
    ("chatgpt.com", "ChatGPT", ReferrerKind::AiAssistant),
    ("lobste.rs", "Lobsters", ReferrerKind::Social),
    ("old.reddit.com", "Reddit", ReferrerKind::Social),
];

/// Why the lists could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("referrer list {list}: {source}")]
pub struct ReferrerListError {
    list: &'static str,
    #[source]
    source: serde_yaml_ng::Error,
}

impl ReferrerClassifier {
    /// The classifier over the embedded lists (matomo-org/searchengine-and-social-list, CC0).
    pub fn embedded() -> Result<Self, ReferrerListError> {
        Self::from_lists(
            include_str!("../data/SearchEngines.yml"),
            include_str!("../data/Socials.yml"),
            include_str!("../data/AIAssistants.yml"),
        )
    }

    /// A classifier over lists in the matomo YAML format.
    pub fn from_lists(search: &str, social: &str, ai: &str) -> Result<Self, ReferrerListError> {
        let engines: BTreeMap<String, Vec<Engine>> =
            serde_yaml_ng::from_str(search).map_err(|source| ReferrerListError {
                list: "search engines",
                source,
            })?;
        let socials: BTreeMap<String, Vec<String>> =
            serde_yaml_ng::from_str(social).map_err(|source| ReferrerListError {
                list: "socials",
                source,
            })?;
        let ais: BTreeMap<String, Vec<String>> =
            serde_yaml_ng::from_str(ai).map_err(|source| ReferrerListError {
                list: "AI assistants",
                source,
            })?;
        let mut hosts = HashMap::new();
        let mut names = HashMap::new();
        // Later lists win: AI assistants over socials over search engines for a shared host.
        for (name, defs) in engines {
            names.insert(name.to_ascii_lowercase(), ReferrerKind::Search);
            for host in defs.iter().flat_map(|d| &d.urls) {
                hosts.insert(
                    normalise(host).into_owned(),
                    (Text::from(&name), ReferrerKind::Search),
                );
            }
        }
        for (name, list) in socials {
            names.insert(name.to_ascii_lowercase(), ReferrerKind::Social);
            for host in list {
                hosts.insert(
                    normalise(&host).into_owned(),
                    (Text::from(&name), ReferrerKind::Social),
                );
            }
        }
        for (name, list) in ais {
            names.insert(name.to_ascii_lowercase(), ReferrerKind::AiAssistant);
            for host in list {
                hosts.insert(
                    normalise(&host).into_owned(),
                    (Text::from(&name), ReferrerKind::AiAssistant),
                );
            }
        }
        for (host, name, kind) in EXTRA {
            names.entry(name.to_ascii_lowercase()).or_insert(kind);
            hosts
                .entry(host.to_owned())
                .or_insert((Text::from(name), kind));
        }
        let mut any_tld = HashMap::new();
        let mut any_prefix = HashMap::new();
        for (h, v) in &hosts {
            if let Some(base) = h.strip_suffix(".{}") {
                any_tld.insert(base.to_owned(), v.clone());
            } else if let Some(rest) = h.strip_prefix("{}.") {
                any_prefix.insert(rest.to_owned(), v.clone());
            }
        }
        Ok(Self {
            hosts,
            any_tld,
            any_prefix,
            names,
            channels: Channel::ALL.map(|c| Text::from(c.name())).to_vec(),
            mediums: MEDIUMS.map(Text::from).to_vec(),
            paid_sources: PAID_SOURCES.map(Text::from).to_vec(),
        })
    }

    /// The known site behind `host` (its name and kind), trying parent domains and
    /// the lists' `{}` wildcard for a country code (`google.{}`).
    pub fn lookup(&self, host: &str) -> Option<(&str, ReferrerKind)> {
        self.entry(host).map(|(n, k)| (n.as_str(), *k))
    }

    fn entry(&self, host: &str) -> Option<&(Text, ReferrerKind)> {
        let host = normalise(host);
        let mut h: &str = &host;
        loop {
            if let Some(f) = found(&self.hosts, h) {
                return Some(f);
            }
            // google.co.uk / google.de -> google.{}
            let mut cut = h;
            for _ in 0..2 {
                match cut.rsplit_once('.') {
                    Some((base, _)) => {
                        cut = base;
                        if let Some(f) = found(&self.any_tld, cut) {
                            return Some(f);
                        }
                    }
                    None => break,
                }
            }
            let (_, rest) = h.split_once('.')?;
            // de.images.yahoo.com -> {}.images.yahoo.com
            if let Some(f) = found(&self.any_prefix, rest) {
                return Some(f);
            }
            if !rest.contains('.') {
                return None;
            }
            h = rest;
        }
    }

    /// Every host in the lists with its name and kind (for tests and docs).
    pub fn hosts(&self) -> impl Iterator<Item = (&str, &str, ReferrerKind)> {
        self.hosts
            .iter()
            .map(|(h, (n, k))| (h.as_str(), n.as_str(), *k))
    }

    /// Source, medium and channel of a landing page (`url`) reached from `referrer_host`.
    /// UTM parameters override the referrer; click ids mark paid traffic; hosts of the
    /// site itself (`own_hosts`) are internal navigation, not a source.
    pub fn attribute(
        &self,
        url: &UrlFacts,
        referrer_host: Option<&str>,
        own_hosts: &[&str],
    ) -> Attribution {
        let referrer_host = referrer_host.map(normalise).filter(|h| !h.is_empty());
        let internal = referrer_host
            .as_deref()
            .is_some_and(|r| own_hosts.iter().any(|o| same_site(r, o)));
        let known = referrer_host
            .as_deref()
            .filter(|_| !internal)
            .and_then(|h| self.entry(h));
        let paid = url.has_paid_click();
        let utm_source = url.utm.source.as_deref();

        let source = url
            .utm
            .source
            .clone()
            .or_else(|| known.map(|(n, _)| n.clone()))
            .or_else(|| {
                if internal {
                    None
                } else {
                    referrer_host.as_deref().map(Text::from)
                }
            })
            .or_else(|| paid_source(url).map(|p| word(&self.paid_sources, p)));
        let medium = match &url.utm.medium {
            Some(m) if m.bytes().any(|b| b.is_ascii_uppercase()) => {
                Some(Text::from(m.to_ascii_lowercase()))
            }
            Some(m) => Some(m.clone()),
            None => {
                let own = match (known.map(|(_, k)| *k), paid) {
                    (_, true) => Some("cpc"),
                    (Some(ReferrerKind::Search), false) => Some("organic"),
                    (Some(ReferrerKind::Social), false) => Some("social"),
                    (Some(ReferrerKind::AiAssistant), false) => Some("ai"),
                    (None, false) if referrer_host.is_some() && !internal => Some("referral"),
                    _ => None,
                };
                own.map(|m| word(&self.mediums, m))
            }
        };
        let kind = known
            .map(|(_, k)| *k)
            .or_else(|| utm_source.and_then(|s| self.lookup_name(s)));
        let channel = channel(medium.as_deref(), kind, paid, source.is_some(), internal);
        Attribution {
            source,
            medium,
            channel: self.channels[channel as usize].clone(),
        }
    }

    /// The kind of a source given by name (`utm_source=google`, `facebook`).
    fn lookup_name(&self, name: &str) -> Option<ReferrerKind> {
        // Lower-cased on the stack: names are short.
        let mut buf = [0u8; 64];
        let owned;
        let n = match buf.get_mut(..name.len()) {
            Some(b) => {
                b.copy_from_slice(name.as_bytes());
                b.make_ascii_lowercase();
                // ASCII case changes keep UTF-8 valid.
                std::str::from_utf8(b).unwrap_or(name)
            }
            None => {
                owned = name.to_ascii_lowercase();
                owned.as_str()
            }
        };
        if let Some(&k) = self.names.get(n) {
            return Some(k);
        }
        self.lookup(n).map(|(_, k)| k)
    }
}

/// The source a click id implies.
fn paid_source(url: &UrlFacts) -> Option<&'static str> {
    let c = &url.click_ids;
    [&c.gclid, &c.fbclid, &c.ttclid, &c.msclkid]
        .iter()
        .zip(PAID_SOURCES)
        .find_map(|(id, source)| id.as_ref().map(|_| source))
}

/// The shared copy of a fixed word (one of a handful: a short scan).
fn word(words: &[Text], w: &str) -> Text {
    words
        .iter()
        .find(|t| t.as_str() == w)
        .cloned()
        .unwrap_or_else(|| Text::from(w))
}

/// The channel from medium, the source's kind and whether a click id is present.
fn channel(
    medium: Option<&str>,
    kind: Option<ReferrerKind>,
    paid: bool,
    has_source: bool,
    internal: bool,
) -> Channel {
    let m = medium.unwrap_or("");
    let paid_medium = matches!(
        m,
        "cpc"
            | "ppc"
            | "paid"
            | "paidsearch"
            | "paid_search"
            | "paid-search"
            | "paidsocial"
            | "paid_social"
            | "paid-social"
            | "cpm"
            | "cpv"
            | "cpa"
    );
    match () {
        _ if matches!(m, "email" | "e-mail" | "e_mail" | "newsletter") => Channel::Email,
        _ if matches!(m, "affiliate" | "affiliates" | "partner") => Channel::Affiliates,
        _ if matches!(m, "display" | "banner" | "cpm") => Channel::Display,
        _ if (paid || paid_medium)
            && (kind == Some(ReferrerKind::Social) || m.contains("social")) =>
        {
            Channel::PaidSocial
        }
        _ if paid || paid_medium => {
            if kind == Some(ReferrerKind::Search) || m.contains("search") || paid {
                Channel::PaidSearch
            } else {
                Channel::PaidOther
            }
        }
        _ if kind == Some(ReferrerKind::AiAssistant) || m == "ai" => Channel::AiAssistants,
        _ if kind == Some(ReferrerKind::Search) || m == "organic" => Channel::OrganicSearch,
        _ if kind == Some(ReferrerKind::Social)
            || matches!(m, "social" | "social-network" | "social_network" | "sm") =>
        {
            Channel::OrganicSocial
        }
        _ if internal && !has_source => Channel::Internal,
        _ if has_source => Channel::Referral,
        _ => Channel::Direct,
    }
}

type HostMap = HashMap<String, (Text, ReferrerKind)>;

fn found<'a>(m: &'a HostMap, k: &str) -> Option<&'a (Text, ReferrerKind)> {
    m.get(k)
}

/// Lower case, without a trailing dot or a leading `www.`; borrows when already so.
fn normalise(host: &str) -> std::borrow::Cow<'_, str> {
    let h = host.trim();
    let h = h.strip_suffix('.').map_or(h, |h| h.trim_end_matches('.'));
    if !h.bytes().any(|b| b.is_ascii_uppercase()) {
        return std::borrow::Cow::Borrowed(h.strip_prefix("www.").unwrap_or(h));
    }
    let lower = h.to_ascii_lowercase();
    match lower.strip_prefix("www.") {
        Some(rest) => std::borrow::Cow::Owned(rest.to_owned()),
        None => std::borrow::Cow::Owned(lower),
    }
}

/// Whether `a` and `b` are the same host or one is a subdomain of the other.
fn same_site(a: &str, b: &str) -> bool {
    let (a, b) = (normalise(a), normalise(b));
    let sub = |x: &str, y: &str| {
        x.len() > y.len() && x.ends_with(y) && x.as_bytes()[x.len() - y.len() - 1] == b'.'
    };
    a == b || sub(&a, &b) || sub(&b, &a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::url_facts;

    fn attr(url: &str, referrer: Option<&str>) -> Attribution {
        let c = ReferrerClassifier::embedded().unwrap();
        c.attribute(&url_facts(url).unwrap(), referrer, &["example.com"])
    }

    #[test]
    fn every_channel_names_its_own_shared_word() {
        let c = ReferrerClassifier::embedded().unwrap();
        for (i, ch) in Channel::ALL.into_iter().enumerate() {
            assert_eq!(ch as usize, i, "{ch:?} sits at its index");
            assert_eq!(c.channels[ch as usize], ch.name());
        }
    }

    #[test]
    fn channels() {
        let a = attr("https://example.com/", Some("www.google.com"));
        assert_eq!(
            (a.source.as_deref(), a.medium.as_deref(), a.channel.as_str()),
            (Some("Google"), Some("organic"), "Organic Search")
        );
        assert_eq!(
            attr("https://example.com/", Some("www.google.co.uk"))
                .source
                .as_deref(),
            Some("Google")
        );
        assert_eq!(
            attr("https://example.com/?gclid=x", Some("www.google.com")).channel,
            "Paid Search"
        );
        assert_eq!(
            attr("https://example.com/?fbclid=x", Some("m.facebook.com")).channel,
            "Paid Social"
        );
        assert_eq!(
            attr("https://example.com/", Some("news.ycombinator.com")).channel,
            "Organic Social"
        );
        assert_eq!(
            attr("https://example.com/", Some("chatgpt.com")).channel,
            "AI Assistants"
        );
        assert_eq!(attr("https://example.com/", None).channel, "Direct");
        let own = attr("https://example.com/b", Some("example.com"));
        assert_eq!((own.source, own.channel.as_str()), (None, "Internal"));
        let r = attr("https://example.com/", Some("blog.rust-lang.org"));
        assert_eq!(
            (r.source.as_deref(), r.medium.as_deref(), r.channel.as_str()),
            (Some("blog.rust-lang.org"), Some("referral"), "Referral")
        );
        let e = attr(
            "https://example.com/?utm_source=newsletter&utm_medium=email",
            Some("mail.google.com"),
        );
        assert_eq!(
            (e.source.as_deref(), e.channel.as_str()),
            (Some("newsletter"), "Email")
        );
        assert_eq!(
            attr(
                "https://example.com/?utm_source=google&utm_medium=cpc",
                None
            )
            .channel,
            "Paid Search"
        );
        assert_eq!(
            attr(
                "https://example.com/?utm_source=facebook&utm_medium=paid_social",
                None
            )
            .channel,
            "Paid Social"
        );
    }
}
