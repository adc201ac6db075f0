//! URL facts: host, path, UTM parameters and advertising click ids.

use beacon_core::backend::UrlParts;
use beacon_core::{ClickIds, Text, Utm};

/// What a page URL says about the visit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlFacts {
    /// Host, lower case.
    pub host: String,
    /// Path without query string or fragment.
    pub path: String,
    /// `utm_*` parameters (empty values are left out).
    pub utm: Utm,
    /// Click ids (`gclid`, `fbclid`, `ttclid`, `msclkid`; `gbraid`/`wbraid` count as `gclid`).
    pub click_ids: ClickIds,
    /// Any other paid-click id present (`dclid`, `li_fat_id`, `twclid`, `yclid`, ...), by name.
    pub other_click_id: Option<&'static str>,
}

const OTHER_CLICK_IDS: [&str; 8] = [
    "dclid",
    "li_fat_id",
    "twclid",
    "yclid",
    "epik",
    "rdt_cid",
    "sccid",
    "irclickid",
];

/// Parses an absolute URL; `None` when it is not one.
pub fn url_facts(raw: &str) -> Option<UrlFacts> {
    let parts = UrlParts::parse(raw).ok()?;
    let host = parts.host.as_deref()?.to_owned();
    let mut f = query_facts(&parts);
    f.host = host;
    f.path = parts.path.into_owned();
    Some(f)
}

/// The campaign facts of a URL's query (host and path left empty).
pub(crate) fn query_facts(parts: &UrlParts<'_>) -> UrlFacts {
    let mut f = UrlFacts::default();
    for (k, v) in parts.query_pairs() {
        if v.is_empty() {
            continue;
        }
        let utm = match k.as_ref() {
            "utm_source" => &mut f.utm.source,
            "utm_medium" => &mut f.utm.medium,
            "utm_campaign" => &mut f.utm.campaign,
            "utm_content" => &mut f.utm.content,
            "utm_term" => &mut f.utm.term,
            other => {
                let click = match other {
                    "gclid" | "gbraid" | "wbraid" if f.click_ids.gclid.is_some() => continue,
                    "gclid" | "gbraid" | "wbraid" => &mut f.click_ids.gclid,
                    "fbclid" => &mut f.click_ids.fbclid,
                    "ttclid" => &mut f.click_ids.ttclid,
                    "msclkid" => &mut f.click_ids.msclkid,
                    other => {
                        if let Some(name) = OTHER_CLICK_IDS.iter().find(|n| **n == other) {
                            f.other_click_id = Some(name);
                        }
                        continue;
                    }
                };
                *click = Some(v.into_owned());
                continue;
            }
        };
        *utm = Some(Text::from(v.as_ref()));
    }
    f
}

impl UrlFacts {
    /// Whether a paid click id is present.
    pub fn has_paid_click(&self) -> bool {
        let c = &self.click_ids;
        c.gclid.is_some()
            || c.fbclid.is_some()
            || c.ttclid.is_some()
            || c.msclkid.is_some()
            || self.other_click_id.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_utm_and_click_ids() {
        let f = url_facts("https://Example.com/pricing/?utm_source=news&utm_medium=email&utm_campaign=spring+sale&gclid=abc&x=1#top").unwrap();
        assert_eq!(
            (f.host.as_str(), f.path.as_str()),
            ("example.com", "/pricing/")
        );
        assert_eq!(f.utm.source.as_deref(), Some("news"));
        assert_eq!(f.utm.campaign.as_deref(), Some("spring sale"));
        assert_eq!(f.click_ids.gclid.as_deref(), Some("abc"));
        assert!(f.has_paid_click());
        let g = url_facts("https://a.com/?fbclid=1&ttclid=2&msclkid=3&utm_term=").unwrap();
        assert_eq!(
            (
                g.click_ids.fbclid.as_deref(),
                g.click_ids.ttclid.as_deref(),
                g.click_ids.msclkid.as_deref()
            ),
            (Some("1"), Some("2"), Some("3"))
        );
        assert_eq!(g.utm.term, None);
        assert!(url_facts("https://a.com/?li_fat_id=9")
            .unwrap()
            .has_paid_click());
        assert!(url_facts("/relative").is_none());
    }
}
