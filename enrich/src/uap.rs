//! ua-parser (uap-core) browser families: the reference rule set, embedded.
//! A `RegexSet` finds the first matching rule in one pass; only that rule then runs
//! for its captures.

use regex::bytes::{Captures, Regex, RegexBuilder};
use serde::Deserialize;

#[derive(Deserialize)]
struct Rules {
    user_agent_parsers: Vec<UaRule>,
    #[serde(default)]
    device_parsers: Vec<DeviceRuleSpec>,
}

#[derive(Deserialize)]
struct DeviceRuleSpec {
    regex: String,
    regex_flag: Option<String>,
    device_replacement: Option<String>,
    brand_replacement: Option<String>,
    model_replacement: Option<String>,
}

/// A device as uap-core's `device_parsers` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UapDevice {
    /// The device family (`Samsung SM-G991B`, `iPhone`, `Spider`).
    pub family: String,
    /// The maker, where the rule names one (`Samsung`, `HTC`).
    pub brand: Option<String>,
    /// The model (`SM-G991B`).
    pub model: Option<String>,
}

struct CompiledDeviceRule {
    regex: Regex,
    device: Option<String>,
    brand: Option<String>,
    model: Option<String>,
}

#[derive(Deserialize)]
struct UaRule {
    regex: String,
    family_replacement: Option<String>,
    v1_replacement: Option<String>,
    v2_replacement: Option<String>,
}

/// A browser family and version as uap-core names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UapFamily {
    /// Family (`Chrome Mobile`, `Mobile Safari`, `Firefox`); `Other` when unknown.
    pub family: String,
    /// Major.minor version, where the rule captures one.
    pub version: Option<String>,
}

/// The uap-core user-agent rules.
pub struct UapParser {
    /// The rules, tried in order (first match wins, as uap-core specifies): a cheap
    /// `is_match` on each, captures only on the one that matches. Trying the
    /// single regexes in turn measured 5x faster than shortlisting with regex sets,
    /// whose automata grow too large for the lazy DFA.
    rules: Vec<CompiledRule>,
    /// The device rules, in order, first match wins.
    devices: Vec<CompiledDeviceRule>,
    /// The device rules in runs of [`DEVICE_CHUNK`], each as one set: a run with
    /// no match costs one pass, and only a run that matches is searched rule by
    /// rule (one set of all 600-odd rules grows too large for the lazy DFA).
    device_sets: Vec<regex::bytes::RegexSet>,
}

/// How many device rules one set holds.
const DEVICE_CHUNK: usize = 128;

/// Each set's lazy-DFA cache: large enough that the bounded repetitions of
/// uap-core's rules (`.{0,300}`) do not thrash it back to the slow engines.
const DEVICE_DFA_BYTES: usize = 32 << 20;

/// A rule's regex and its family, major and minor replacements.
struct CompiledRule {
    regex: Regex,
    family: Option<String>,
    v1: Option<String>,
    v2: Option<String>,
}

impl std::fmt::Debug for UapParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UapParser")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

/// Why the rules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum UapError {
    /// Malformed YAML.
    #[error("uap-core regexes: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// A rule did not compile.
    #[error("uap-core regexes: {0}")]
    Regex(#[from] regex::Error),
}

/// Replaces `$1`..`$9` in `template` with the captures (missing ones become empty).
fn expand(template: &str, caps: &Captures<'_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            if let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                chars.next();
                out.push_str(
                    &caps
                        .get(d as usize)
                        .map_or(std::borrow::Cow::Borrowed(""), |m| {
                            String::from_utf8_lossy(m.as_bytes())
                        }),
                );
                continue;
            }
        }
        out.push(c);
    }
    out.trim().to_owned()
}

impl UapParser {
    /// The embedded uap-core rules (Apache-2.0).
    pub fn embedded() -> Result<Self, UapError> {
        Self::from_yaml(include_str!("../data/uap-regexes.yaml"))
    }

    /// Rules in the uap-core `regexes.yaml` format.
    pub fn from_yaml(yaml: &str) -> Result<Self, UapError> {
        let rules: Rules = serde_yaml_ng::from_str(yaml)?;
        let mut compiled = Vec::with_capacity(rules.user_agent_parsers.len());
        for r in &rules.user_agent_parsers {
            compiled.push(CompiledRule {
                regex: RegexBuilder::new(&r.regex).unicode(false).build()?,
                family: r.family_replacement.clone(),
                v1: r.v1_replacement.clone(),
                v2: r.v2_replacement.clone(),
            });
        }
        let mut devices = Vec::with_capacity(rules.device_parsers.len());
        for r in &rules.device_parsers {
            devices.push(CompiledDeviceRule {
                regex: RegexBuilder::new(&r.regex)
                    .unicode(false)
                    .case_insensitive(r.regex_flag.as_deref() == Some("i"))
                    .build()?,
                device: r.device_replacement.clone(),
                brand: r.brand_replacement.clone(),
                model: r.model_replacement.clone(),
            });
        }
        // User agents are ASCII in practice: ASCII classes keep every automaton small
        // enough for the fast engines.
        let mut device_sets = Vec::new();
        for chunk in rules.device_parsers.chunks(DEVICE_CHUNK) {
            let patterns = chunk.iter().map(|r| {
                if r.regex_flag.as_deref() == Some("i") {
                    format!("(?i:{})", r.regex)
                } else {
                    r.regex.clone()
                }
            });
            device_sets.push(
                regex::bytes::RegexSetBuilder::new(patterns)
                    .unicode(false)
                    .dfa_size_limit(DEVICE_DFA_BYTES)
                    .build()?,
            );
        }
        Ok(Self {
            rules: compiled,
            devices,
            device_sets,
        })
    }

    /// The device of `ua` by uap-core's `device_parsers` (first matching rule wins);
    /// `None` when no rule matches.
    pub fn device(&self, ua: &str) -> Option<UapDevice> {
        let bytes = ua.as_bytes();
        let (chunk, set) = self
            .device_sets
            .iter()
            .enumerate()
            .find(|(_, set)| set.is_match(bytes))?;
        let first = set.matches(bytes).iter().next()?;
        let rule = &self.devices[chunk * DEVICE_CHUNK + first];
        let caps = rule.regex.captures(bytes)?;
        let group = |n: usize| {
            caps.get(n)
                .map(|m| String::from_utf8_lossy(m.as_bytes()).trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let fill = |t: &Option<String>, default: Option<String>| match t {
            Some(t) if t.contains('$') => Some(expand(t, &caps)).filter(|s| !s.is_empty()),
            Some(t) => Some(t.clone()).filter(|s| !s.is_empty()),
            None => default,
        };
        let family = fill(&rule.device, group(1)).unwrap_or_else(|| "Other".into());
        Some(UapDevice {
            family,
            brand: fill(&rule.brand, None),
            model: fill(&rule.model, group(1)),
        })
    }

    /// The family of `ua` (first matching rule wins, as uap-core specifies).
    pub fn family(&self, ua: &str) -> UapFamily {
        let found = self
            .rules
            .iter()
            .find(|rule| rule.regex.is_match(ua.as_bytes()))
            .and_then(|rule| rule.regex.captures(ua.as_bytes()).map(|c| (rule, c)));
        let Some((
            CompiledRule {
                family: family_rep,
                v1: v1_rep,
                v2: v2_rep,
                ..
            },
            caps,
        )) = found
        else {
            return UapFamily {
                family: "Other".into(),
                version: None,
            };
        };
        let group = |n: usize| {
            caps.get(n)
                .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                .filter(|s| !s.is_empty())
        };
        let family = match family_rep {
            Some(t) if t.contains('$') => expand(t, &caps),
            Some(t) => t.clone(),
            None => group(1).unwrap_or_else(|| "Other".into()),
        };
        let major = match v1_rep {
            Some(t) => Some(expand(t, &caps)).filter(|s| !s.is_empty()),
            None => group(2),
        };
        let minor = match v2_rep {
            Some(t) => Some(expand(t, &caps)).filter(|s| !s.is_empty()),
            None => group(3),
        };
        let version = major.map(|m| match minor {
            Some(n) => format!("{m}.{n}"),
            None => m,
        });
        UapFamily { family, version }
    }
}

/// Folds uap-core family names into the browser names Beacon reports: mobile and
/// webview variants are the same browser (the device dimension says "mobile"),
/// "IE" is "Internet Explorer", Opera's mobile variants are "Opera".
pub fn fold_family(family: &str) -> String {
    let f = family.trim();
    let f = f
        .trim_end_matches(" Mobile iOS")
        .trim_end_matches(" iOS")
        .trim_end_matches(" Mobile WebView")
        .trim_end_matches(" WebView")
        .trim_end_matches(" Mobile")
        .trim_start_matches("Mobile ");
    match f {
        "IE" => "Internet Explorer".to_owned(),
        "Opera Mini" | "Opera Coast" | "Opera Touch" => "Opera".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_replacements() {
        let p = UapParser::embedded().unwrap();
        let f = p.family("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1");
        assert_eq!(
            (f.family.as_str(), f.version.as_deref()),
            ("Mobile Safari", Some("17.1"))
        );
        assert_eq!(fold_family(&f.family), "Safari");
        assert_eq!(
            p.family("Luminary/1.0.3 build 71/iOS 12.2").family,
            "Luminary"
        );
        assert_eq!(p.family("nothing recognisable").family, "Other");
        assert_eq!(fold_family("Chrome Mobile WebView"), "Chrome");
        assert_eq!(fold_family("IE"), "Internet Explorer");
    }
}
