//! Bot classification with a reason, from named rules and the embedded crawler lists.

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Deserialize;

/// Why a request looks automated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotReason {
    /// No user agent at all.
    MissingUserAgent,
    /// A headless or automated browser (`HeadlessChrome`, `PhantomJS`).
    HeadlessBrowser(&'static str),
    /// An HTTP library or command-line client (`curl`, `python-requests`).
    LibraryClient(&'static str),
    /// A crawler pattern from the crawler-user-agents or isbot lists.
    CrawlerPattern(String),
    /// The address is in a data-centre or hosting network (set by the network step).
    DatacenterNetwork,
}

impl std::fmt::Display for BotReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BotReason::MissingUserAgent => f.write_str("missing user agent"),
            BotReason::HeadlessBrowser(n) => write!(f, "headless browser {n:?}"),
            BotReason::LibraryClient(n) => write!(f, "library or CLI client {n:?}"),
            BotReason::CrawlerPattern(p) => write!(f, "crawler pattern {p:?}"),
            BotReason::DatacenterNetwork => f.write_str("datacenter network"),
        }
    }
}

const HEADLESS: [&str; 8] = [
    "HeadlessChrome",
    "PhantomJS",
    "SlimerJS",
    "Puppeteer",
    "Playwright",
    "Selenium",
    "HtmlUnit",
    "Headless",
];
const LIBRARIES: [&str; 24] = [
    "curl/",
    "Wget/",
    "python-requests",
    "python-urllib",
    "Python-urllib",
    "aiohttp",
    "httpx",
    "Go-http-client",
    "okhttp",
    "Java/",
    "Apache-HttpClient",
    "libwww-perl",
    "node-fetch",
    "axios/",
    "undici",
    "PostmanRuntime",
    "HTTPie",
    "Scrapy",
    "Ruby",
    "GuzzleHttp",
    "Dart/",
    "reqwest",
    "hyper/",
    "fasthttp",
];

/// Agents of people that the crawler lists' broad words would take for bots: apps'
/// own networking agents (messaging apps, Google's and Facebook's apps, UC Browser's
/// `dv(...)` form, a bare hardware identifier), browsers whose name holds a crawler's
/// word (Sogou's mobile browser, Google Earth) and TV runtimes. Each is a shape no
/// crawler in the crawler-user-agents or isbot lists has (the accuracy tests hold
/// it). The link-preview fetchers stay bots: WhatsApp's is `WhatsApp/2.19.92 i`,
/// with no `Android/… Device/…`.
const HUMAN_FORMS: [&str; 8] = [
    r"^WhatsApp/[\d.]+ (?:Android|iOS)/[\d.]+ Device/",
    r"\[FBAN/|\[FB_IAB/|\bFBAN/FB|;FBAV/",
    r"^dv\([^)]*\);pr\(",
    r"^(?:iPhone|iPad|iPod|Watch)\d+(?:,\d+)?$",
    r"^[a-z]{2,4}\.[A-Za-z0-9_]+\.[A-Za-z0-9_.]+/[\d.]+\S* (?:\((?:Linux; U; Android|iPhone|iPad|iOS)|iPhone/|iPad/)",
    r"SogouMobileBrowser/|SogouMSE",
    r"^GoogleEarth/|Google Earth",
    r"Web0S.*WebAppManager",
];

#[derive(Deserialize)]
struct Crawler {
    pattern: String,
}

/// One of isbot's look-around fragments, which the regex crate cannot express:
/// `needle` occurs (in the lower-cased agent) not right after any of `not_after`,
/// not right before any of `not_before`, and, with `word_end`, followed by an
/// optional `s` and then a non-word character, `_` or the end.
#[derive(Debug, Clone, Copy)]
struct Lookaround {
    source: &'static str,
    needle: &'static str,
    not_after: &'static [&'static str],
    not_before: &'static [&'static str],
    word_end: bool,
}

const LOOKAROUND: [Lookaround; 6] = [
    Lookaround {
        source: "(?:^|[^g])news(?!sapphire)",
        needle: "news",
        not_after: &["g"],
        not_before: &["sapphire"],
        word_end: false,
    },
    Lookaround {
        source: "(?<! channel/|google/)google(?!(?:wv|app|/google| pixel))",
        needle: "google",
        not_after: &[" channel/", "google/"],
        not_before: &["wv", "app", "/google", " pixel"],
        word_end: false,
    },
    Lookaround {
        source: "(?<! cu)bots?(?:\\b|_)",
        needle: "bot",
        not_after: &[" cu"],
        not_before: &[],
        word_end: true,
    },
    Lookaround {
        source: "(?<!cam)scan",
        needle: "scan",
        not_after: &["cam"],
        not_before: &[],
        word_end: false,
    },
    Lookaround {
        source: "(?<!lib)http",
        needle: "http",
        not_after: &["lib"],
        not_before: &[],
        word_end: false,
    },
    Lookaround {
        source: "java(?!;)",
        needle: "java",
        not_after: &[],
        not_before: &[";"],
        word_end: false,
    },
];

impl Lookaround {
    fn is_match(&self, lower: &str) -> bool {
        lower.match_indices(self.needle).any(|(i, _)| {
            let before = &lower[..i];
            let after = &lower[i + self.needle.len()..];
            if self.not_after.iter().any(|p| before.ends_with(p))
                || self.not_before.iter().any(|p| after.starts_with(p))
            {
                return false;
            }
            if !self.word_end {
                return true;
            }
            // `bots?(?:\b|_)`: "bot" or "bots", then the end, a non-word character or "_".
            let ends_word = |r: &str| r.chars().next().is_none_or(|c| !c.is_alphanumeric());
            ends_word(after) || after.strip_prefix('s').is_some_and(ends_word)
        })
    }
}

/// Classifies user agents as bots; built once, shared across threads.
#[derive(Debug, Clone)]
pub struct BotDetector {
    /// [`HUMAN_FORMS`], one pass.
    human: RegexSet,
    crawler_set: RegexSet,
    crawler_patterns: Vec<String>,
    isbot_parts: Vec<Regex>,
    /// All of `isbot_parts` in one alternation: one pass over a browser's agent says
    /// that none matches (testing the parts one by one took ~0.15 ms per agent).
    isbot_any: Regex,
}

/// Why the embedded lists could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BotListError {
    /// The JSON was malformed.
    #[error("bot list {list}: {source}")]
    Json {
        /// Which list.
        list: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The combined pattern set did not compile.
    #[error("bot patterns: {0}")]
    Regex(#[from] regex::Error),
}

impl BotDetector {
    /// The detector over the embedded crawler-user-agents (MIT) and isbot (Unlicense) lists.
    pub fn embedded() -> Result<Self, BotListError> {
        Self::from_lists(
            include_str!("../data/crawler-user-agents.json"),
            include_str!("../data/isbot-patterns.json"),
        )
    }

    /// A detector over lists in the crawler-user-agents and isbot JSON formats.
    pub fn from_lists(crawlers_json: &str, isbot_json: &str) -> Result<Self, BotListError> {
        let crawlers: Vec<Crawler> =
            serde_json::from_str(crawlers_json).map_err(|source| BotListError::Json {
                list: "crawler-user-agents",
                source,
            })?;
        // User agents are ASCII in practice: ASCII classes keep the automata small.
        let ascii = |p: &str| RegexBuilder::new(p).unicode(false).build();
        let crawler_patterns: Vec<String> = crawlers
            .into_iter()
            .map(|c| c.pattern)
            .filter(|p| ascii(p).is_ok())
            .collect();
        let crawler_set = RegexSetBuilder::new(&crawler_patterns)
            .unicode(false)
            .size_limit(64 << 20)
            .dfa_size_limit(8 << 20)
            .build()?;
        let fragments: Vec<String> =
            serde_json::from_str(isbot_json).map_err(|source| BotListError::Json {
                list: "isbot",
                source,
            })?;
        // isbot's fragments are JavaScript syntax, matched case-insensitively. Six use
        // look-around, which the regex crate does not have: `LOOKAROUND` implements
        // those by hand. One needs "-" moved to the end of a class to be a literal.
        let isbot_parts: Vec<Regex> = fragments
            .iter()
            .filter(|f| !LOOKAROUND.iter().any(|l| l.source == f.as_str()))
            .map(|f| f.replace(r"[\w\d-.]", r"[\w\d.-]"))
            .map(|f| ascii(&format!("(?i){f}")))
            .collect::<Result<_, _>>()?;
        let alternation: Vec<String> = isbot_parts
            .iter()
            .map(|r| format!("(?:{})", &r.as_str()[4..]))
            .collect();
        let isbot_any = RegexBuilder::new(&format!("(?i){}", alternation.join("|")))
            .unicode(false)
            .size_limit(64 << 20)
            .build()?;
        Ok(Self {
            human: RegexSet::new(HUMAN_FORMS)?,
            crawler_set,
            crawler_patterns,
            isbot_parts,
            isbot_any,
        })
    }

    /// The reason `user_agent` is a bot, or `None` for a browser.
    pub fn classify(&self, user_agent: Option<&str>) -> Option<BotReason> {
        let ua = match user_agent.map(str::trim) {
            None | Some("") => return Some(BotReason::MissingUserAgent),
            Some(ua) => ua,
        };
        if let Some(h) = HEADLESS.iter().find(|h| ua.contains(**h)) {
            return Some(BotReason::HeadlessBrowser(h));
        }
        if self.human.is_match(ua.as_bytes()) {
            return None;
        }
        // A device's model name is the maker's word, not the agent's ("XBot Junior",
        // "CUBOT", "Discovery", "Radar 4G", "Forward Ruby"): isbot's broad words
        // and the library names never read it; only a crawler the crawler list
        // names ("...; en-us; Catchpoint)") is found there.
        let token = crate::ua::android_model_token(ua);
        if let Some(t) = token {
            if let Some(i) = self
                .crawler_set
                .matches(t.as_str().as_bytes())
                .iter()
                .next()
            {
                return Some(BotReason::CrawlerPattern(self.crawler_patterns[i].clone()));
            }
        }
        let masked = crate::ua::without_device_model(ua, token);
        let ua: &str = &masked;
        let starts_word = |l: &str| {
            ua.match_indices(l)
                .any(|(i, _)| i == 0 || ua.as_bytes()[i - 1] == b' ')
        };
        if let Some(l) = LIBRARIES.iter().find(|l| starts_word(l)) {
            return Some(BotReason::LibraryClient(l.trim_end_matches('/')));
        }
        // isbot's patterns decide (upstream tunes them against both crawler lists and
        // real browsers); crawler-user-agents' more specific patterns name the reason.
        let lower = ua.to_ascii_lowercase();
        let lookaround = LOOKAROUND.iter().find(|l| l.is_match(&lower));
        if lookaround.is_none() && !self.isbot_any.is_match(ua.as_bytes()) {
            return None;
        }
        if let Some(i) = self.crawler_set.matches(ua.as_bytes()).iter().next() {
            return Some(BotReason::CrawlerPattern(self.crawler_patterns[i].clone()));
        }
        let part = match lookaround {
            Some(l) => l.source,
            None => self
                .isbot_parts
                .iter()
                .find(|r| r.is_match(ua.as_bytes()))
                .map_or("isbot", |r| &r.as_str()[4..]),
        };
        Some(BotReason::CrawlerPattern(part.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass alternation says "some part matches" exactly when a part does, on
    /// every agent of isbot's fixtures and uap-core's tests.
    #[test]
    fn the_alternation_agrees_with_the_parts() {
        let d = BotDetector::embedded().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
        let mut agents = Vec::new();
        for rel in [
            "isbot/fixtures/browsers.yml",
            "isbot/fixtures/crawlers.yml",
            "uap-core/tests/test_ua.yaml",
        ] {
            let text = std::fs::read_to_string(root.join(rel))
                .expect("../shared/data beside the repository");
            agents.extend(text.lines().filter_map(|l| {
                let l = l.trim();
                l.strip_prefix("- user_agent_string: ")
                    .or_else(|| l.strip_prefix("- "))
                    .map(|s| s.trim_matches(|c| c == '\'' || c == '"').to_owned())
            }));
        }
        assert!(agents.len() > 2_500, "{}", agents.len());
        let mut matched = 0;
        for ua in &agents {
            let any = d.isbot_parts.iter().any(|r| r.is_match(ua.as_bytes()));
            assert_eq!(d.isbot_any.is_match(ua.as_bytes()), any, "{ua}");
            matched += usize::from(any);
        }
        assert!(matched > 1_000 && matched < agents.len(), "{matched}");
    }

    #[test]
    fn reasons() {
        let d = BotDetector::embedded().unwrap();
        assert_eq!(d.classify(None), Some(BotReason::MissingUserAgent));
        assert_eq!(d.classify(Some("  ")), Some(BotReason::MissingUserAgent));
        assert_eq!(
            d.classify(Some("curl/8.5.0")),
            Some(BotReason::LibraryClient("curl"))
        );
        assert_eq!(
            d.classify(Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36")),
            Some(BotReason::HeadlessBrowser("HeadlessChrome"))
        );
        let g = d
            .classify(Some(
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            ))
            .unwrap();
        assert!(matches!(g, BotReason::CrawlerPattern(_)), "{g}");
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(d.classify(Some(chrome)), None);
        assert_eq!(
            BotReason::MissingUserAgent.to_string(),
            "missing user agent"
        );
    }
}
