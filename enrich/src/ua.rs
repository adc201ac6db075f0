//! User agents: browser, OS, device type, brand and model (woothee plus device rules),
//! with User-Agent Client Hints preferred when the browser sent them.

use beacon_core::DeviceType;
use regex::Regex;

/// User-Agent Client Hints, as sent in `Sec-CH-UA*` request headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientHints {
    /// `Sec-CH-UA`: `"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`.
    pub ua: Option<String>,
    /// `Sec-CH-UA-Mobile`: `?1` is true.
    pub mobile: Option<bool>,
    /// `Sec-CH-UA-Platform`: `"Windows"`.
    pub platform: Option<String>,
    /// `Sec-CH-UA-Platform-Version`: `"15.0.0"`.
    pub platform_version: Option<String>,
    /// `Sec-CH-UA-Model`: `"Pixel 7"`.
    pub model: Option<String>,
}

impl ClientHints {
    /// Whether no hint was sent.
    pub fn is_empty(&self) -> bool {
        *self == ClientHints::default()
    }
}

/// What a user agent says about the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// Browser name (`Chrome`, `Safari`, `Firefox`, `Edge`).
    pub browser: Option<String>,
    /// Browser version.
    pub browser_version: Option<String>,
    /// OS name (`Windows`, `macOS`, `iOS`, `Android`, `Linux`).
    pub os: Option<String>,
    /// OS version.
    pub os_version: Option<String>,
    /// Device type.
    pub device_type: Option<DeviceType>,
    /// Device maker.
    pub brand: Option<String>,
    /// Device model.
    pub model: Option<String>,
}

/// woothee's own answer, unchanged (for accuracy checks against its test sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WootheeAnswer {
    /// Browser or crawler name.
    pub name: String,
    /// pc, smartphone, mobilephone, crawler, appliance, misc or UNKNOWN.
    pub category: String,
    /// OS name.
    pub os: String,
    /// OS version.
    pub os_version: String,
    /// Browser version.
    pub version: String,
}

/// Parses user agents; built once, shared across threads.
pub struct UserAgentParser {
    woothee: woothee::parser::Parser,
    uap: crate::uap::UapParser,
    devices: Vec<(Regex, Option<&'static str>)>,
    android_model: Regex,
}

const UNKNOWN: &str = "UNKNOWN";

impl std::fmt::Debug for UserAgentParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgentParser")
            .field("device_rules", &self.devices.len())
            .finish_non_exhaustive()
    }
}

impl Default for UserAgentParser {
    fn default() -> Self {
        Self::new()
    }
}

impl UserAgentParser {
    /// A parser with the embedded uap-core browser rules and the built-in device rules.
    pub fn new() -> Self {
        // (pattern whose first group, or whole match, is the model; brand)
        let rules: [(&str, Option<&'static str>); 14] = [
            (r"\b(iPhone)\b", Some("Apple")),
            (r"\b(iPad)\b", Some("Apple")),
            (r"\b(iPod)\b", Some("Apple")),
            (r"\b(Apple ?TV)\b", Some("Apple")),
            (
                r"\b((?:SM|GT|SCH|SGH|SPH|SHV|SHW)-[A-Za-z0-9]+)",
                Some("Samsung"),
            ),
            (r"(?i)\bSAMSUNG[ _-]([A-Za-z0-9-]+)", Some("Samsung")),
            (
                r"\b(Pixel(?: [0-9A-Za-z]+){0,3}?)(?: Build|\)|;)",
                Some("Google"),
            ),
            (r"\b(Chromecast)\b", Some("Google")),
            (
                r"\b((?:Redmi|POCO|Mi|MI) [^;)]+?)(?: Build|\)|;)",
                Some("Xiaomi"),
            ),
            (r"\b(M2\d{3}[A-Z0-9]{3,5})\b", Some("Xiaomi")),
            (r"(?i)\bHUAWEI[ _-]?([A-Za-z0-9-]+)", Some("Huawei")),
            (r"(?i)\bONEPLUS ?([A-Za-z0-9]+)", Some("OnePlus")),
            (r"\b(moto [a-z0-9 ()+]+?)(?: Build|\)|;)", Some("Motorola")),
            (r"\bLG-?([A-Z0-9]{4,})", Some("LG")),
        ];
        Self {
            woothee: woothee::parser::Parser::new(),
            uap: crate::uap::UapParser::embedded().expect("the embedded uap-core rules load"),
            devices: rules
                .iter()
                .map(|(p, b)| (Regex::new(p).expect("built-in device rule compiles"), *b))
                .collect(),
            android_model: Regex::new(
                r"Android [^;)]*;(?: [a-z]{2}[-_][A-Za-z]{2};)? ([^;)]+?)(?: Build/|\))",
            )
            .expect("built-in rule compiles"),
        }
    }

    /// woothee's raw answer.
    pub fn woothee(&self, ua: &str) -> WootheeAnswer {
        let r = self.woothee.parse(ua);
        match r {
            Some(r) => WootheeAnswer {
                name: r.name.to_owned(),
                category: r.category.to_owned(),
                os: r.os.to_owned(),
                os_version: r.os_version.into_owned(),
                version: r.version.to_owned(),
            },
            None => WootheeAnswer {
                name: UNKNOWN.into(),
                category: UNKNOWN.into(),
                os: UNKNOWN.into(),
                os_version: UNKNOWN.into(),
                version: UNKNOWN.into(),
            },
        }
    }

    /// Browser, OS and device of `ua`, with Client Hints taking precedence.
    pub fn parse(&self, ua: &str, hints: &ClientHints) -> ClientInfo {
        let w = self.woothee(ua);
        let known = |s: &str| (s != UNKNOWN && !s.is_empty()).then(|| s.to_owned());
        let (os, os_version) = normalise_os(&w.os, &w.os_version);
        // The browser family from uap-core (folded to Beacon's names), woothee's otherwise.
        let uap = self.uap.family(ua);
        let (browser, browser_version) = if uap.family != "Other" {
            (Some(crate::uap::fold_family(&uap.family)), uap.version)
        } else {
            (
                known(&w.name).filter(|_| w.category != "crawler"),
                known(&w.version).filter(|_| w.category != "crawler"),
            )
        };
        let mut info = ClientInfo {
            browser,
            browser_version,
            os,
            os_version,
            device_type: Some(device_type(&w, ua)),
            brand: None,
            model: None,
        };
        if let Some((brand, model)) = self.brand_model(ua) {
            info.brand = brand.map(str::to_owned);
            info.model = Some(model);
        }
        if info.brand.as_deref() == Some("Apple")
            && info.os.is_none()
            && info.model.as_deref() != Some("Mac")
        {
            info.os = Some("iOS".into());
        }
        apply_hints(&mut info, hints);
        info
    }

    /// Brand and model from the string, where it carries them.
    pub fn brand_model(&self, ua: &str) -> Option<(Option<&'static str>, String)> {
        for (re, brand) in &self.devices {
            if let Some(c) = re.captures(ua) {
                let model = c
                    .get(1)
                    .or_else(|| c.get(0))
                    .map(|m| m.as_str().trim().to_owned())?;
                let model = if model.eq_ignore_ascii_case("ipod") {
                    "iPod touch".to_owned()
                } else {
                    model
                };
                return Some((*brand, model));
            }
        }
        if ua.contains("Macintosh") {
            return Some((Some("Apple"), "Mac".to_owned()));
        }
        let c = self.android_model.captures(ua)?;
        let model = c.get(1)?.as_str().trim();
        (!model.is_empty() && model != "K" && !model.starts_with("wv"))
            .then(|| (None, model.to_owned()))
    }
}

fn normalise_os(os: &str, version: &str) -> (Option<String>, Option<String>) {
    let v = (version != UNKNOWN && !version.is_empty()).then(|| version.to_owned());
    match os {
        UNKNOWN | "" => (None, None),
        "Mac OSX" => (Some("macOS".into()), v),
        "iPhone" | "iPad" | "iPod" | "iOS" => (Some("iOS".into()), v.map(|v| v.replace('_', "."))),
        w if w.starts_with("Windows ") => {
            let rest = w.trim_start_matches("Windows ").to_owned();
            (Some("Windows".into()), Some(rest))
        }
        other => (Some(other.to_owned()), v),
    }
}

fn device_type(w: &WootheeAnswer, ua: &str) -> DeviceType {
    let has = |needles: &[&str]| needles.iter().any(|n| ua.contains(n));
    if has(&["PlayStation", "Nintendo", "Xbox"]) {
        return DeviceType::Console;
    }
    if has(&[
        "SmartTV",
        "SMART-TV",
        "Smart-TV",
        "BRAVIA",
        "AppleTV",
        "Apple TV",
        "GoogleTV",
        "Android TV",
        "AFT",
        "Roku",
        "Web0S",
        "WebOS TV",
        "Tizen TV",
        "HbbTV",
        "CrKey",
    ]) {
        return DeviceType::Tv;
    }
    match w.category.as_str() {
        "crawler" => DeviceType::Bot,
        "pc" => DeviceType::Desktop,
        "smartphone" => {
            if w.os == "iPad"
                || ua.contains("iPad")
                || ua.contains("Tablet")
                || (w.os == "Android" && !ua.contains("Mobile"))
            {
                DeviceType::Tablet
            } else {
                DeviceType::Mobile
            }
        }
        "mobilephone" => DeviceType::Mobile,
        "appliance" => DeviceType::Console,
        _ => DeviceType::Unknown,
    }
}

/// Client Hints win over the string: brands, platform, model, mobile.
fn apply_hints(info: &mut ClientInfo, h: &ClientHints) {
    if let Some((name, version)) = h.ua.as_deref().and_then(pick_brand) {
        info.browser = Some(name);
        if let Some(v) = version {
            if info
                .browser_version
                .as_deref()
                .is_none_or(|b| !b.starts_with(&v))
            {
                info.browser_version = Some(v);
            }
        }
    }
    if let Some(p) = h
        .platform
        .as_deref()
        .map(|p| p.trim_matches('"'))
        .filter(|p| !p.is_empty())
    {
        info.os = Some(match p {
            "macOS" | "Mac OS X" => "macOS".into(),
            other => other.to_owned(),
        });
        if let Some(v) = h
            .platform_version
            .as_deref()
            .map(|v| v.trim_matches('"'))
            .filter(|v| !v.is_empty())
        {
            info.os_version = Some(v.to_owned());
        }
    }
    if let Some(m) = h
        .model
        .as_deref()
        .map(|m| m.trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        info.model = Some(m.to_owned());
        if m.starts_with("Pixel") {
            info.brand = Some("Google".into());
        } else if m.starts_with("SM-") {
            info.brand = Some("Samsung".into());
        }
    }
    match h.mobile {
        Some(true) if info.device_type != Some(DeviceType::Tablet) => {
            info.device_type = Some(DeviceType::Mobile)
        }
        Some(false) if info.device_type == Some(DeviceType::Mobile) => {
            info.device_type = Some(DeviceType::Desktop)
        }
        _ => {}
    }
}

/// The meaningful brand of a `Sec-CH-UA` list: not the GREASE entry, and a specific
/// brand over "Chromium".
fn pick_brand(list: &str) -> Option<(String, Option<String>)> {
    let mut best: Option<(String, Option<String>)> = None;
    for entry in list.split(',') {
        let mut parts = entry.split(";v=");
        let name = parts.next()?.trim().trim_matches('"').to_owned();
        let version = parts.next().map(|v| v.trim().trim_matches('"').to_owned());
        if name.is_empty() || name.contains("Brand") || name.contains("brand") {
            continue;
        }
        let name = match name.as_str() {
            "Google Chrome" => "Chrome".to_owned(),
            "Microsoft Edge" => "Edge".to_owned(),
            "Opera" | "Opera GX" => "Opera".to_owned(),
            _ => name,
        };
        if best.as_ref().is_none_or(|(b, _)| b == "Chromium") {
            best = Some((name, version));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktop_mobile_tablet_and_brands() {
        let p = UserAgentParser::new();
        let none = ClientHints::default();
        let chrome = p.parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", &none);
        assert_eq!(
            (
                chrome.browser.as_deref(),
                chrome.os.as_deref(),
                chrome.device_type
            ),
            (Some("Chrome"), Some("Windows"), Some(DeviceType::Desktop))
        );
        let iphone = p.parse("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", &none);
        assert_eq!(
            (
                iphone.brand.as_deref(),
                iphone.model.as_deref(),
                iphone.os.as_deref()
            ),
            (Some("Apple"), Some("iPhone"), Some("iOS"))
        );
        assert_eq!(iphone.device_type, Some(DeviceType::Mobile));
        let s = p.parse("Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0.0.0 Mobile Safari/537.36", &none);
        assert_eq!(
            (s.brand.as_deref(), s.model.as_deref()),
            (Some("Samsung"), Some("SM-S911B"))
        );
        let tab = p.parse("Mozilla/5.0 (Linux; Android 12; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0.0.0 Safari/537.36", &none);
        assert_eq!(tab.device_type, Some(DeviceType::Tablet));
        let pixel = p.parse("Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", &none);
        assert_eq!(
            (pixel.brand.as_deref(), pixel.model.as_deref()),
            (Some("Google"), Some("Pixel 8 Pro"))
        );
    }

    #[test]
    fn client_hints_win() {
        let p = UserAgentParser::new();
        let hints = ClientHints {
            ua: Some(r#""Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99""#.into()),
            mobile: Some(true),
            platform: Some("\"Android\"".into()),
            platform_version: Some("\"14.0.0\"".into()),
            model: Some("\"Pixel 7\"".into()),
        };
        let reduced = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
        let i = p.parse(reduced, &hints);
        assert_eq!(
            (
                i.browser.as_deref(),
                i.os.as_deref(),
                i.os_version.as_deref()
            ),
            (Some("Chrome"), Some("Android"), Some("14.0.0"))
        );
        assert_eq!(
            (i.brand.as_deref(), i.model.as_deref(), i.device_type),
            (Some("Google"), Some("Pixel 7"), Some(DeviceType::Mobile))
        );
    }
}
