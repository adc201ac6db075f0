//! User agents: browser, OS, device type, brand and model (woothee plus device rules),
//! with User-Agent Client Hints preferred when the browser sent them.

use beacon_core::{ClientHints, DeviceType};
use regex::{Regex, RegexSet};

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
    /// Device type of the hardware the agent claims; never `Bot` (whether an agent
    /// is a bot is [`BotDetector`](crate::BotDetector)'s call).
    pub device_type: Option<DeviceType>,
    /// Device maker.
    pub brand: Option<String>,
    /// Device model: the marketing name where a table knows the code
    /// (`Galaxy A7(2016)`, `iPhone 13 Pro`), the code otherwise.
    pub model: Option<String>,
    /// The model code the agent or its hints carry (`SM-A710F`, `iPhone14,2`);
    /// `None` where the agent names only a family (`iPhone`, `Mac`).
    pub model_code: Option<String>,
    /// The device type is inferred, not stated: an Android agent that says neither
    /// `Mobile` nor `Tablet`, or an app's networking stack. A screen size, where the
    /// hit has one, decides instead ([`Enricher`](crate::Enricher) does).
    pub device_type_guessed: bool,
}

/// The model token of an Android agent: `SM-G991B` in `(Linux; Android 12;
/// SM-G991B Build/…)`, `CUBOT KINGKONG 5 Pro` in `(Linux; Android 11;CUBOT
/// KINGKONG 5 Pro)`. The one home of where a model sits in the string: the parser
/// names it, the bot detector never reads it.
pub(crate) fn android_model_token(ua: &str) -> Option<regex::Match<'_>> {
    static TOKEN: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(
            r"Android[ /][^;)]*;(?: [a-z]{2}[-_][A-Za-z]{2};)? ?([^;)]+?)(?: Build/| MIUI/|\))",
        )
        .expect("built-in rule compiles")
    });
    if !ua.contains("Android") {
        return None;
    }
    let m = TOKEN.captures(ua)?.get(1)?;
    let t = m.as_str().trim();
    (!t.is_empty()
        && t != "K"
        && !t.starts_with("wv")
        && !t.starts_with("Android")
        && t != "Mobile"
        && t != "Tablet")
        .then_some(m)
}

/// `ua` with its model `token` replaced by `device` (borrowed when there is none).
pub(crate) fn without_device_model<'a>(
    ua: &'a str,
    token: Option<regex::Match<'_>>,
) -> std::borrow::Cow<'a, str> {
    match token {
        Some(m) => format!("{}device{}", &ua[..m.start()], &ua[m.end()..]).into(),
        None => ua.into(),
    }
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
    devices: Vec<DeviceRule>,
    /// All device rules at once: one pass over the string says which rule applies.
    device_set: RegexSet,
    /// Marketing names of model codes.
    names: crate::devices::DeviceNames,
    /// A messaging app's own agent: `WhatsApp/2.17.395 Android/6.0 Device/samsung-SM-J700F`.
    app_device: Regex,
    /// A Dalvik agent, a reverse-DNS app id or an in-app marker: an app, not a browser.
    app: Regex,
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
        use ModelFrom::{Capture, Fixed, Unknown};
        const APPLE: Option<&str> = Some("Apple");
        const SAMSUNG: Option<&str> = Some("Samsung");
        const GOOGLE: Option<&str> = Some("Google");
        // Tried in order; the first rule that matches names the device. Within a rule
        // the leftmost match wins, so "(iPad; U; CPU iPhone OS 3_2 …)" is an iPad.
        let rules: [(&str, Option<&'static str>, ModelFrom); 34] = [
            // Facebook's in-app browser names the hardware: "FBDV/iPhone5,3".
            (r"\bFBDV/((?:iPhone|iPad|iPod)\d+,\d+)", APPLE, Capture),
            // iPhone, iPad, iPod, alone or as a hardware identifier ("iPhone5,2").
            // UC Browser's "dv(iPh13,4)", Google's apps' "hw/iPhone14_2".
            (r"\bdv\((iP[hado]+\d+,\d+)\)", APPLE, Capture),
            (r"\bhw/((?:iPhone|iPad|iPod)\d+_\d+)", APPLE, Capture),
            (r"\b((?:iPhone|iPad|iPod)(?:\d+,\d+)?)", APPLE, Capture),
            (r"\b(Apple ?TV|Apple Watch|HomePod)\b", APPLE, Capture),
            (r"\b(Watch\d+,\d+)\b", APPLE, Capture),
            (r"\bwatchOS/", APPLE, Fixed("Apple Watch")),
            // Puffin names the platform in a suffix: IP iPhone, IT iPad.
            (r"\bPuffin/[\d.]+IP\b", APPLE, Fixed("iPhone")),
            (r"\bPuffin/[\d.]+IT\b", APPLE, Fixed("iPad")),
            // Apple's networking stack: a Mac names its model or its architecture.
            (
                r"\b((?:MacBook(?:Pro|Air)?|iMac(?:Pro)?|Macmini|MacPro)\d+(?:,|%2C)\d+)",
                APPLE,
                Capture,
            ),
            (r"\bDarwin/[\d.]+ \((?:x86_64|arm64)\)", APPLE, Fixed("Mac")),
            (r"\bCFNetwork/[\d.]+ Darwin/", APPLE, Unknown),
            (
                r"\b(Pixel(?: [0-9A-Za-z]+){0,3}?)(?: Build|\)|;)",
                GOOGLE,
                Capture,
            ),
            (
                r"\b(Pixelbook(?: Go)?|Pixel Slate|Chromecast)\b",
                GOOGLE,
                Capture,
            ),
            // Cast receivers: Chromecast, Nest Hub and speakers, Google TV.
            (r"\bCrKey/", GOOGLE, Fixed("Chromecast")),
            (r"\b(Glass \d+) Build", GOOGLE, Capture),
            (
                r"\b((?:SM|GT|SCH|SGH|SPH|SHV|SHW)-[A-Za-z0-9]+)",
                SAMSUNG,
                Capture,
            ),
            (r"(?i)\bSAMSUNG[ _/-]([A-Za-z0-9-]+)", SAMSUNG, Capture),
            // "…; SAMSUNG; OMNIA7)" names the model; "SAMSUNG; NetFront/3.1" only the maker.
            (r"(?i)\bSAMSUNG; ?([A-Za-z0-9-]+)[;)]", SAMSUNG, Capture),
            (r"(?i)\bSAMSUNG ?;", SAMSUNG, Unknown),
            (
                r"\bSamsung((?:SGH|GT|SCH)?-?[A-Za-z]?\d{3,4}[A-Za-z]*)",
                SAMSUNG,
                Capture,
            ),
            // Samsung's own names and docomo's SC- models.
            (r"\b(Galaxy[^;)]*?) ?(?: Build|;|\))", SAMSUNG, Capture),
            (r"(?i)\b(Nexus S(?: 4G)?)\b", SAMSUNG, Capture),
            (r"\b(SC-\d\d[A-Z])\b", SAMSUNG, Capture),
            (r"\bSMART-TV; (?:Linux; )?Tizen", SAMSUNG, Fixed("Smart TV")),
            (
                r"\b((?:Redmi|POCO|Mi|MI) [^;)]+?)(?: Build|\)|;)",
                Some("Xiaomi"),
                Capture,
            ),
            (r"\b(M2\d{3}[A-Z0-9]{3,5})\b", Some("Xiaomi"), Capture),
            (
                r"(?i)\bHUAWEI[ _-]?([A-Za-z0-9-]+)",
                Some("Huawei"),
                Capture,
            ),
            (r"(?i)\bONEPLUS ?([A-Za-z0-9]+)", Some("OnePlus"), Capture),
            (
                r"\b(moto [a-z0-9 ()+]+?)(?: Build|\)|;)",
                Some("Motorola"),
                Capture,
            ),
            (r"\bLG-?([A-Z0-9]{4,})", Some("LG"), Capture),
            // Apps that name only their platform: "Outlook-iOS/… .iphone", "(U;iOS 5.1.1;".
            (r"(?i)\.(iphone|ipad)\b", APPLE, Capture),
            (r"(?:^|[ (;/])iOS[ /]\d", APPLE, Unknown),
            (r"\bMacintosh\b", APPLE, Fixed("Mac")),
        ];
        Self {
            device_set: RegexSet::new(rules.iter().map(|r| r.0))
                .expect("built-in device rules compile"),
            woothee: woothee::parser::Parser::new(),
            uap: crate::uap::UapParser::embedded().expect("the embedded uap-core rules load"),
            devices: rules
                .into_iter()
                .map(|(p, brand, model)| DeviceRule {
                    re: Regex::new(p).expect("built-in device rule compiles"),
                    brand,
                    model,
                })
                .collect(),
            names: crate::devices::DeviceNames::embedded(),
            app_device: Regex::new(r"\bDevice/([A-Za-z0-9]+)-([^\s;)]+)")
                .expect("built-in rule compiles"),
            app: Regex::new(
                r"^Dalvik/|^[a-z]{2,4}\.[A-Za-z0-9_]+\.[A-Za-z0-9_.]+/|^WhatsApp/|\[FBAN/|^dv\(|\bokhttp/",
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
    ///
    /// Whether the agent is a bot is [`BotDetector`](crate::BotDetector)'s call:
    /// the device type here is the hardware's (a crawler that names a phone is
    /// typed as the phone it claims to be; the enricher types bots).
    pub fn parse(&self, ua: &str, hints: &ClientHints) -> ClientInfo {
        let w = self.woothee(ua);
        let known = |s: &str| (s != UNKNOWN && !s.is_empty()).then(|| s.to_owned());
        let (os, os_version) = normalise_os(&w.os, &w.os_version);
        // The browser family from uap-core (folded to Beacon's names), woothee's
        // otherwise; a device's model name is not a browser ("XBot Junior").
        let token = android_model_token(ua);
        let uap = self.uap.family(&without_device_model(ua, token));
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
            ..ClientInfo::default()
        };
        let (mut code_like, hand) = match self.hand_device(ua, token) {
            Some((b, m, c)) => (c, Some((b, m))),
            None => (false, None),
        };
        // The hand rules for Apple, Samsung and Google stand (they read the string's
        // own maker where uap-core names a carrier: "SAMSUNG; ... Sprint M350");
        // uap-core's device rules name every other maker.
        let trusted = hand
            .as_ref()
            .is_some_and(|(b, _)| matches!(b, Some("Apple" | "Samsung" | "Google")));
        // Desktops and crawlers name no maker uap-core would find: its 600-odd
        // device rules run for the rest only (cold parses stay cheap).
        let desktop = w.category == "crawler"
            || (w.category == "pc"
                && ![
                    "Android",
                    "Mobile",
                    "Phone",
                    "Tablet",
                    "Kindle",
                    "Silk",
                    "MIDP",
                    "BlackBerry",
                    "Symbian",
                    "Linux",
                ]
                .iter()
                .any(|m| ua.contains(m)));
        let uap = if trusted || desktop {
            None
        } else {
            self.uap_device(ua)
        };
        match (hand, uap) {
            // uap-core knows the maker: its brand; the hand rules' model where they
            // name the same maker (their spellings are the readable ones).
            (hand, Some(d)) => {
                let same = hand.filter(|(b, _)| {
                    b.is_some_and(|b| {
                        d.brand
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case(b))
                    })
                });
                info.model = match same {
                    Some((_, model)) => model,
                    None => {
                        code_like = true;
                        d.model
                    }
                };
                info.brand = d.brand;
            }
            (Some((brand, model)), None) => {
                info.brand = brand.map(str::to_owned);
                info.model = model;
            }
            (None, None) => {}
        }
        // A messaging app names the maker and model itself: "Device/samsung-SM-J700F",
        // "Device/Apple-iPhone_11".
        if let Some(c) = self.app_device.captures(ua) {
            let maker = &c[1];
            info.brand = Some(match self.names.android(&c[2], Some(maker)) {
                Some(n) => n.brand.to_owned(),
                None => self
                    .names
                    .brand_prefix(maker)
                    .map_or_else(|| capitalised(maker), str::to_owned),
            });
            info.model = Some(c[2].replace('_', " "));
            code_like = true;
        }
        if let Some(m) = structured_value(&hints.model) {
            info.model = Some(m.to_owned());
            code_like = true;
        }
        if let Some(brand) = self.hinted_brand(hints) {
            info.brand = Some(brand.to_owned());
        }
        self.name_model(&mut info, token, code_like);
        if info.brand.as_deref() == Some("Apple") {
            // An app's agent on an iPhone can read "like Mac OS X" only.
            let os = apple_os(info.model_code.as_deref().or(info.model.as_deref()));
            if info.os.is_none() || (os == Some("iOS") && info.os.as_deref() == Some("macOS")) {
                info.os = os.map(str::to_owned);
            }
        }
        let (kind, guessed) = self.device_type(&w, ua, &info);
        info.device_type = Some(kind);
        info.device_type_guessed = guessed;
        apply_hints(&mut info, hints);
        info
    }

    /// Marketing names for the model: an Apple hardware identifier by the Apple
    /// table, an Android code (the agent's own model token first) by the Android
    /// table under the maker already named, or the only maker the table knows for
    /// it. The code goes to `model_code`; a model no table knows stays the code.
    fn name_model(&self, info: &mut ClientInfo, token: Option<regex::Match<'_>>, code_like: bool) {
        let Some(model) = info.model.clone() else {
            return;
        };
        if is_apple_identifier(&model) {
            if let Some(name) = self.names.apple(&model) {
                info.model = Some(name.to_owned());
            }
            info.model_code = Some(model);
            return;
        }
        if !code_like || info.brand.as_deref() == Some("Apple") {
            return;
        }
        let token = token.map(|m| m.as_str().trim());
        let candidates = token.into_iter().chain([model.as_str()]);
        for code in candidates {
            if let Some(n) = self.names.android(code, info.brand.as_deref()) {
                // A table name that says less than the string ("Pixelbook" for
                // "Google Pixelbook Go") leaves the string's.
                if model.len() > n.name.len() && model.starts_with(n.name) {
                    info.model_code = Some(code.to_owned());
                    return;
                }
                info.model = Some(n.name.to_owned());
                info.model_code = Some(code.to_owned());
                if info.brand.is_none() {
                    info.brand = Some(n.brand.to_owned());
                }
                return;
            }
        }
        if info.brand.is_none() {
            info.brand = self.names.brand_prefix(&model).map(str::to_owned);
        }
        info.model_code = Some(model);
    }

    /// The device type from what the agent and its model say; `true` where it is
    /// inferred (see [`ClientInfo::device_type_guessed`]).
    fn device_type(&self, w: &WootheeAnswer, ua: &str, info: &ClientInfo) -> (DeviceType, bool) {
        let has = |needles: &[&str]| needles.iter().any(|n| ua.contains(n));
        let model = info.model.as_deref().unwrap_or("");
        let code = info.model_code.as_deref().unwrap_or("");
        if has(&["PlayStation", "Nintendo", "Xbox"]) {
            return (DeviceType::Console, false);
        }
        if has(&[
            "SmartTV",
            "SMART-TV",
            "Smart-TV",
            "Smart TV",
            "BRAVIA",
            "AppleTV",
            "Apple TV",
            "GoogleTV",
            "Google TV",
            "Android TV",
            "AndroidTV",
            "Roku",
            "Web0S",
            "WebOS TV",
            "webOS.TV",
            "Tizen TV",
            "HbbTV",
            "CrKey",
            "NetCast",
            "Viera",
            "tvOS",
            "TV Safari",
            "WebTV",
        ]) || fire_tv(ua)
            || model.ends_with(" TV")
            || model.starts_with("Apple TV")
        {
            return (DeviceType::Tv, false);
        }
        // "Tablet PC 2.0" is a Windows component, not a tablet.
        let tablet_word = ua.contains("Tablet") && !ua.contains("Tablet PC");
        if tablet_word
            || has(&["iPad", "Kindle", "Silk/"])
            || tablet_name(model)
            || tablet_name(code)
            || samsung_class(code) == Some(DeviceType::Tablet)
        {
            return (DeviceType::Tablet, false);
        }
        let apple = info.brand.as_deref() == Some("Apple");
        if apple && (model.starts_with("iPhone") || model.starts_with("iPod")) {
            return (DeviceType::Mobile, false);
        }
        if apple && model.contains("Watch") {
            return (DeviceType::Mobile, false);
        }
        let android = info.os.as_deref() == Some("Android") || has(&["Android", "Dalvik/", "Adr "]);
        if android {
            if has(&["Mobile", "Phone"]) || samsung_class(code) == Some(DeviceType::Mobile) {
                return (DeviceType::Mobile, false);
            }
            // Browsers leave "Mobile" out on tablets; apps and Dalvik leave it out
            // everywhere, and most of their users hold phones.
            let browser = !self.app.is_match(ua) && has(&["Safari/", "Firefox/", "Gecko/"]);
            return if browser {
                (DeviceType::Tablet, true)
            } else {
                (DeviceType::Mobile, true)
            };
        }
        if apple && info.os.as_deref() == Some("iOS") {
            // An iOS app's networking stack that names no model.
            return (DeviceType::Mobile, true);
        }
        // Feature phones: their browsers and platforms, or a maker named with no
        // desktop around it.
        let phone_platform = has(&[
            "MIDP",
            "UP.Browser",
            "Obigo",
            "KaiOS",
            "KAIOS",
            "Symbian",
            "Series60",
            "Series40",
            "BlackBerry",
            "Opera Mini",
            "NetFront",
            "Windows Phone",
            "Windows CE",
            "(Mobile;",
        ]);
        let desktop_platform = has(&["Windows NT", "X11;", "Macintosh", "CrOS"]);
        match w.category.as_str() {
            "pc" if info.brand.is_some() && !apple && !desktop_platform => {
                (DeviceType::Mobile, true)
            }
            "pc" => (DeviceType::Desktop, false),
            "smartphone" | "mobilephone" => (DeviceType::Mobile, false),
            "appliance" => (DeviceType::Console, false),
            "crawler" if has(&["Mobile"]) => (DeviceType::Mobile, false),
            "crawler" => (DeviceType::Desktop, true),
            _ if phone_platform => (DeviceType::Mobile, false),
            _ if info.brand.is_some() && !desktop_platform => (DeviceType::Mobile, true),
            _ => (DeviceType::Unknown, false),
        }
    }

    /// uap-core's device, where its rules name a real maker (not a crawler's
    /// "Spider" or a "Generic" class).
    fn uap_device(&self, ua: &str) -> Option<crate::uap::UapDevice> {
        self.uap.device(ua).filter(|d| {
            d.brand
                .as_deref()
                .is_some_and(|b| b != "Spider" && !b.starts_with("Generic"))
        })
    }

    /// The maker of the model in `Sec-CH-UA-Model`, by the same device rules as the
    /// string (the model read as an Android agent would carry it), or the Android
    /// table where the code has one maker.
    fn hinted_brand(&self, hints: &ClientHints) -> Option<&'static str> {
        let model = structured_value(&hints.model)?;
        self.brand_model(&format!("(Linux; Android; {model})"))
            .and_then(|d| d.0)
            .or_else(|| self.names.android(model, None).map(|n| n.brand))
    }

    /// Brand and model from the string, where it carries them. `Some((brand, None))`
    /// when the string names the maker but not the model (an iOS app's networking
    /// stack), `Some((None, model))` for an Android model of no known brand.
    pub fn brand_model(&self, ua: &str) -> Option<(Option<&'static str>, Option<String>)> {
        self.hand_device(ua, android_model_token(ua))
            .map(|(b, m, _)| (b, m))
    }

    /// [`Self::brand_model`], and whether the model is a code read from the string
    /// (not a family name a rule fixes).
    fn hand_device(
        &self,
        ua: &str,
        token: Option<regex::Match<'_>>,
    ) -> Option<(Option<&'static str>, Option<String>, bool)> {
        if let Some(i) = self.device_set.matches(ua).iter().next() {
            let rule = &self.devices[i];
            let c = rule.re.captures(ua)?;
            let (model, code) = match rule.model {
                ModelFrom::Fixed(m) => (Some(m.to_owned()), false),
                ModelFrom::Unknown => (None, false),
                ModelFrom::Capture => (
                    c.get(1)
                        .or_else(|| c.get(0))
                        .map(|m| normalise_model(m.as_str().trim())),
                    true,
                ),
            };
            return Some((rule.brand, model, code));
        }
        let model = token?.as_str().trim();
        Some((None, Some(model.to_owned()), true))
    }
}

/// `iPhone14,2`, `iPad8,1`, `Watch3,4`, `AppleTV5,3`, `iPod9,1`.
fn is_apple_identifier(m: &str) -> bool {
    let Some((head, minor)) = m.split_once(',') else {
        return false;
    };
    let digits = head.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let family = &head[..head.len() - digits.len()];
    matches!(
        family,
        "iPhone" | "iPad" | "iPod" | "Watch" | "AppleTV" | "AudioAccessory" | "iProd" | "AirPods"
    ) && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !minor.is_empty()
        && minor.bytes().all(|b| b.is_ascii_digit())
}

/// A model name or code of a tablet: "Galaxy Tab A", "Lenovo TAB4 10", "MediaPad
/// T5", "Nexus 7", Lenovo's "TB-X505F", Amazon's "KFTRWI".
fn tablet_name(m: &str) -> bool {
    static TABLET: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(
            r"(?i)\btab|pad\b|pad[ _-]?\d|\b(?:kindle|fire hd|xoom|iconia|transformer|nexus (?:7|9|10)|tb-[a-z0-9]|kf[a-z]{2,6}$)",
        )
        .expect("built-in rule compiles")
    });
    !m.is_empty() && TABLET.is_match(m)
}

/// Samsung's model codes say the class: SM-T, SM-X, SM-P, GT-P and GT-N8 are
/// tablets; SM-G, SM-A, SM-N, SM-S, SM-J, SM-M, SM-E, SM-F, GT-I and GT-S phones.
fn samsung_class(code: &str) -> Option<DeviceType> {
    let c = code
        .trim_start_matches("SAMSUNG-")
        .trim_start_matches("SAMSUNG ");
    let tablet = ["SM-T", "SM-X", "SM-P", "GT-P", "GT-N8", "GT-N5"];
    let phone = [
        "SM-G", "SM-A", "SM-N", "SM-S", "SM-J", "SM-M", "SM-E", "SM-F", "GT-I", "GT-S",
    ];
    if tablet.iter().any(|p| c.starts_with(p)) {
        Some(DeviceType::Tablet)
    } else if phone.iter().any(|p| c.starts_with(p)) {
        Some(DeviceType::Mobile)
    } else {
        None
    }
}

/// Amazon's Fire TV models: "AFTMM", "AFTT" (an `AFT` code, not a word).
fn fire_tv(ua: &str) -> bool {
    ua.match_indices("AFT").any(|(i, _)| {
        let before = ua[..i].bytes().next_back();
        let after = ua.as_bytes().get(i + 3);
        before.is_none_or(|b| !b.is_ascii_alphanumeric())
            && after.is_some_and(|b| b.is_ascii_uppercase())
    })
}

/// "samsung" as "Samsung".
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The OS an Apple device runs when the string does not say; an unnamed model is an
/// iOS app's networking stack (a Mac names itself).
fn apple_os(model: Option<&str>) -> Option<&'static str> {
    match model {
        None => Some("iOS"),
        Some(m) if m.starts_with("iP") => Some("iOS"),
        Some(m) if m.contains("Watch") => Some("watchOS"),
        Some(m) if m.starts_with("AppleTV") || m.starts_with("Apple TV") => Some("tvOS"),
        _ => None,
    }
}

/// How a device rule names the model.
#[derive(Clone, Copy)]
enum ModelFrom {
    /// The rule's first group (or whole match).
    Capture,
    /// Always this model.
    Fixed(&'static str),
    /// The string names the maker only.
    Unknown,
}

struct DeviceRule {
    re: Regex,
    brand: Option<&'static str>,
    model: ModelFrom,
}

/// Apple's spellings made readable: "iPod" is an "iPod touch", lower-case app
/// suffixes ("….iphone") take Apple's capitals, "MacBookPro11%2C1" is decoded.
fn normalise_model(m: &str) -> String {
    if m.eq_ignore_ascii_case("ipod") {
        "iPod touch".to_owned()
    } else if m.eq_ignore_ascii_case("iphone") {
        "iPhone".to_owned()
    } else if m.eq_ignore_ascii_case("ipad") {
        "iPad".to_owned()
    } else if m.contains("%2C") {
        m.replace("%2C", ",")
    } else if let Some(rest) = m.strip_prefix("iPh").filter(|r| !r.starts_with("one")) {
        // UC Browser's short "iPh13,4".
        format!("iPhone{rest}")
    } else if m.starts_with("iP") && m.contains('_') && !m.contains(',') {
        // Google's apps write "iPhone14_2".
        m.replacen('_', ",", 1)
    } else {
        m.to_owned()
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

/// A hint header's string value without its quotes; `None` when absent or empty.
fn structured_value(header: &Option<String>) -> Option<&str> {
    Some(header.as_deref()?.trim_matches('"')).filter(|v| !v.is_empty())
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
    if let Some(p) = structured_value(&h.platform) {
        info.os = Some(match p {
            "macOS" | "Mac OS X" => "macOS".into(),
            other => other.to_owned(),
        });
        if let Some(v) = structured_value(&h.platform_version) {
            info.os_version = Some(v.to_owned());
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
            (Some("Samsung"), Some("Galaxy S23"))
        );
        assert_eq!(s.model_code.as_deref(), Some("SM-S911B"));
        let tab = p.parse("Mozilla/5.0 (Linux; Android 12; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/112.0.0.0 Safari/537.36", &none);
        assert_eq!(tab.device_type, Some(DeviceType::Tablet));
        let pixel = p.parse("Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", &none);
        assert_eq!(
            (pixel.brand.as_deref(), pixel.model.as_deref()),
            (Some("Google"), Some("Pixel 8 Pro"))
        );
    }

    #[test]
    fn devices_named_outside_the_browser_string() {
        let p = UserAgentParser::new();
        let none = ClientHints::default();
        // (agent, brand, model, os)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: [Case; 13] = [
            ("Mozilla/5.0 (iPad; CPU OS 5_1_1 like Mac OS X) AppleWebKit/534.46 (KHTML, like Gecko) Mobile/9B206 [FBAN/FBIOS;FBAV/5.4.2;FBBV/114387;FBDV/iPad3,2;FBMD/iPad;FBSN/iPhone OS;FBSV/5.1.1]", Some("Apple"), Some("iPad (3rd generation)"), Some("iOS")),
            ("atc/1.0 watchOS/5.1.3 model/Watch3,4 hwp/t8004 build/16S535 (6; dt:156)", Some("Apple"), Some("Apple Watch Series 3"), Some("watchOS")),
            ("AppleCoreMedia/1.0.0.16A303 (HomePod; U; CPU OS 12_0 like Mac OS X; en_us)", Some("Apple"), Some("HomePod"), None),
            ("AppleTV/1.1", Some("Apple"), Some("AppleTV"), Some("tvOS")),
            ("Mozilla/5.0 (iPad4,5; iOS 7.0.4) FreeWheelAdManager/5.3.0-r9485;com.cnn.iphone CNN/4622", Some("Apple"), Some("iPad mini 2"), Some("iOS")),
            ("Mozilla/5.0 (iPad; U; CPU iPhone OS 3_2 like Mac OS X; en-us) AppleWebKit/531.21.10 (KHTML, like Gecko) Version/4.0.4 Mobile/7B314 Safari/531.21.10", Some("Apple"), Some("iPad"), Some("iOS")),
            ("netbarrierd/572 CFNetwork/673.5 Darwin/13.4.0 (x86_64) (MacBookPro11%2C1)", Some("Apple"), Some("MacBookPro11,1"), None),
            ("MobileSafari/602.1 CFNetwork/808.1.4 Darwin/16.1.0", Some("Apple"), None, Some("iOS")),
            ("Mozilla/5.0 (X11; U; Linux x86_64; ar-SA) AppleWebKit/534.35 (KHTML, like Gecko)  Chrome/11.0.696.65 Safari/534.35 Puffin/3.11546IP", Some("Apple"), Some("iPhone"), None),
            ("Mozilla/5.0 (Fuchsia) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 CrKey/1.56.500000", Some("Google"), Some("Chromecast"), None),
            ("com.abc.mobile/5.7.14/Mozilla/5.0 (Linux; Android 9; Google Pixelbook Go Build/R99-14469.59.0; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/99.0.4844.73 Safari/537.36", Some("Google"), Some("Pixelbook Go"), None),
            ("NetFront/3.5.1(BREW 3.1.5; U; en-us; SAMSUNG; NetFront/3.1.5/WAP) Sprint M350 MMP/2.0", Some("Samsung"), None, None),
            ("Mozilla/5.0 (compatible; MSIE 9.0; Windows Phone OS 7.5; Trident/5.0; IEMobile/9.0; SAMSUNG; OMNIA7)", Some("Samsung"), Some("OMNIA7"), None),
        ];
        for (ua, brand, model, os) in cases {
            let got = p.parse(ua, &none);
            assert_eq!(
                (got.brand.as_deref(), got.model.as_deref()),
                (brand, model),
                "{ua}"
            );
            if os.is_some() {
                assert_eq!(got.os.as_deref(), os, "{ua}");
            }
        }
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
        // The hinted model's maker comes from the same rules as the string's.
        // Its marketing name comes from the tables; the hinted code is kept.
        for (model, brand, name) in [
            ("SM-S918B", Some("Samsung"), "Galaxy S23 Ultra"),
            ("Redmi Note 12", Some("Xiaomi"), "Redmi Note 12"),
            ("ONEPLUS A6003", Some("OnePlus"), "OnePlus 6"),
            ("moto g(7)", Some("Motorola"), "moto g(7)"),
            ("Pixelbook Go", Some("Google"), "Pixelbook Go"),
            ("ZZ-Unknown 3", None, "ZZ-Unknown 3"),
        ] {
            let hinted = ClientHints {
                model: Some(format!("\"{model}\"")),
                ..ClientHints::default()
            };
            let i = p.parse(reduced, &hinted);
            assert_eq!(
                (
                    i.brand.as_deref(),
                    i.model.as_deref(),
                    i.model_code.as_deref()
                ),
                (brand, Some(name), Some(model)),
                "{model}"
            );
        }
    }
}
