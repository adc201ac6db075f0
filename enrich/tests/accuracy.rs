//! Accuracy over the real test data in ../shared/data. Each test prints its figure
//! (run with --nocapture) and asserts the target.

use beacon_enrich::{
    fold_family, BotDetector, ClientHints, ReferrerClassifier, ReferrerKind, UserAgentParser,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(data(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e} (../shared/data must sit beside the repository)"))
}

fn ratio(hit: usize, total: usize) -> f64 {
    hit as f64 * 100.0 / total.max(1) as f64
}

#[derive(Deserialize)]
struct WootheeCase {
    target: String,
    name: String,
    category: String,
    os: Option<String>,
}

#[test]
fn woothee_testsets_name_category_os() {
    let p = UserAgentParser::new();
    let (mut total, mut ok) = (0, 0);
    for entry in std::fs::read_dir(data("woothee/testsets")).expect("woothee testsets") {
        let path = entry.expect("entry").path();
        let cases: Vec<WootheeCase> =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml");
        for c in cases {
            total += 1;
            let w = p.woothee(&c.target);
            let os_ok = c.os.as_deref().is_none_or(|o| o == w.os);
            if w.name == c.name && w.category == c.category && os_ok {
                ok += 1;
            }
        }
    }
    let pct = ratio(ok, total);
    eprintln!("woothee testsets: {ok}/{total} = {pct:.2}% match name, category and os");
    assert!(total > 200 && pct >= 99.0, "{pct:.2}%");
}

#[derive(Deserialize)]
struct Crawler {
    instances: Vec<String>,
}

#[test]
fn crawler_user_agents_examples_are_bots() {
    let d = BotDetector::embedded().expect("lists");
    let list: Vec<Crawler> =
        serde_json::from_str(&read("crawler-user-agents/crawler-user-agents.json")).expect("json");
    let uas: Vec<&String> = list.iter().flat_map(|c| &c.instances).collect();
    let missed: Vec<&&String> = uas
        .iter()
        .filter(|ua| d.classify(Some(ua)).is_none())
        .collect();
    for ua in missed.iter().take(10) {
        eprintln!("  missed crawler: {ua}");
    }
    let flagged = uas.len() - missed.len();
    let pct = ratio(flagged, uas.len());
    eprintln!(
        "crawler-user-agents examples flagged: {flagged}/{} = {pct:.2}%",
        uas.len()
    );
    assert!(pct >= 99.0);
}

fn isbot_fixture(rel: &str) -> Vec<String> {
    let groups: BTreeMap<String, Option<Vec<String>>> =
        serde_yaml_ng::from_str(&read(rel)).expect("yaml");
    groups.into_values().flatten().flatten().collect()
}

#[test]
fn isbot_crawlers_are_bots_and_browsers_are_not() {
    let d = BotDetector::embedded().expect("lists");
    let crawlers = isbot_fixture("isbot/fixtures/crawlers.yml");
    let missed: Vec<&String> = crawlers
        .iter()
        .filter(|ua| d.classify(Some(ua)).is_none())
        .collect();
    let flagged = crawlers.len() - missed.len();
    for ua in missed.iter().take(10) {
        eprintln!("  missed crawler: {ua}");
    }
    let browsers = isbot_fixture("isbot/fixtures/browsers.yml");
    let false_pos: Vec<(&String, String)> = browsers
        .iter()
        .filter_map(|ua| d.classify(Some(ua)).map(|r| (ua, r.to_string())))
        .collect();
    let (c_pct, b_pct) = (
        ratio(flagged, crawlers.len()),
        ratio(false_pos.len(), browsers.len()),
    );
    eprintln!(
        "isbot crawlers flagged: {flagged}/{} = {c_pct:.2}%",
        crawlers.len()
    );
    eprintln!(
        "isbot browsers flagged: {}/{} = {b_pct:.2}%",
        false_pos.len(),
        browsers.len()
    );
    for (ua, why) in false_pos.iter().take(10) {
        eprintln!("  false positive ({why}): {ua}");
    }
    assert!(c_pct >= 99.0, "crawlers {c_pct:.2}%");
    assert!(b_pct <= 0.5, "browsers {b_pct:.2}%");
}

#[test]
fn every_listed_referrer_host_classifies_to_its_own_name_and_kind() {
    let c = ReferrerClassifier::embedded().expect("lists");
    #[derive(Deserialize)]
    struct Engine {
        urls: Vec<String>,
    }
    let engines: BTreeMap<String, Vec<Engine>> =
        serde_yaml_ng::from_str(&read("matomo-searchengine-social/SearchEngines.yml"))
            .expect("yaml");
    let socials: BTreeMap<String, Vec<String>> =
        serde_yaml_ng::from_str(&read("matomo-searchengine-social/Socials.yml")).expect("yaml");
    let ais: BTreeMap<String, Vec<String>> =
        serde_yaml_ng::from_str(&read("matomo-searchengine-social/AIAssistants.yml"))
            .expect("yaml");
    // Hosts listed under two names (later lists win, as the classifier documents).
    let mut expected: BTreeMap<String, (String, ReferrerKind)> = BTreeMap::new();
    for (n, defs) in &engines {
        for h in defs.iter().flat_map(|d| &d.urls) {
            expected.insert(
                h.to_ascii_lowercase().trim_start_matches("www.").to_owned(),
                (n.clone(), ReferrerKind::Search),
            );
        }
    }
    for (n, hs) in &socials {
        for h in hs {
            expected.insert(
                h.to_ascii_lowercase().trim_start_matches("www.").to_owned(),
                (n.clone(), ReferrerKind::Social),
            );
        }
    }
    for (n, hs) in &ais {
        for h in hs {
            expected.insert(
                h.to_ascii_lowercase().trim_start_matches("www.").to_owned(),
                (n.clone(), ReferrerKind::AiAssistant),
            );
        }
    }
    let mut wrong = Vec::new();
    for (host, (name, kind)) in &expected {
        let probe = host.replace("{}", "com");
        match c.lookup(&probe) {
            Some((n, k)) if n == name && k == *kind => {}
            other => wrong.push(format!("{host} -> {other:?}, want {name} {kind:?}")),
        }
    }
    eprintln!(
        "referrer hosts classified to their own name and kind: {}/{}",
        expected.len() - wrong.len(),
        expected.len()
    );
    assert!(wrong.is_empty(), "{:#?}", &wrong[..wrong.len().min(20)]);
}

#[derive(Deserialize)]
struct UapCases<T> {
    test_cases: Vec<T>,
}

#[derive(Deserialize)]
struct UaCase {
    user_agent_string: String,
    family: String,
}

#[test]
fn uap_core_browser_family() {
    let p = UserAgentParser::new();
    let cases: UapCases<UaCase> =
        serde_yaml_ng::from_str(&read("uap-core/tests/test_ua.yaml")).expect("yaml");
    let none = ClientHints::default();
    let ok = cases
        .test_cases
        .iter()
        .filter(|c| {
            let got = p
                .parse(&c.user_agent_string, &none)
                .browser
                .unwrap_or_else(|| "Other".to_owned());
            let ok = fold_family(&got) == fold_family(&c.family);
            if !ok {
                eprintln!(
                    "  family {got:?}, uap-core {:?}: {}",
                    c.family, c.user_agent_string
                );
            }
            ok
        })
        .count();
    let pct = ratio(ok, cases.test_cases.len());
    eprintln!(
        "uap-core test_ua browser family: {ok}/{} = {pct:.2}%",
        cases.test_cases.len()
    );
    assert!(pct >= MEASURED_UAP_FAMILY_FLOOR, "{pct:.2}%");
}

#[derive(Deserialize)]
struct DeviceCase {
    user_agent_string: String,
    brand: Option<String>,
}

#[test]
fn uap_core_device_brand_for_apple_samsung_google() {
    let p = UserAgentParser::new();
    let cases: UapCases<DeviceCase> =
        serde_yaml_ng::from_str(&read("uap-core/tests/test_device.yaml")).expect("yaml");
    let none = ClientHints::default();
    let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    // Precision: of the agents given one of the three brands, how many carry it.
    let (mut claimed, mut wrong) = (0usize, 0usize);
    for c in &cases.test_cases {
        let got = p.parse(&c.user_agent_string, &none).brand;
        if let Some(g) = got
            .as_deref()
            .filter(|b| matches!(*b, "Apple" | "Samsung" | "Google"))
        {
            claimed += 1;
            // uap-core spells a few brands in lower case ("samsung").
            if !c
                .brand
                .as_deref()
                .is_some_and(|b| b.eq_ignore_ascii_case(g))
            {
                wrong += 1;
            }
        }
        let Some(want) = c
            .brand
            .as_deref()
            .filter(|b| matches!(*b, "Apple" | "Samsung" | "Google"))
        else {
            continue;
        };
        let e = per.entry(want).or_default();
        e.1 += 1;
        if got.as_deref() == Some(want) {
            e.0 += 1;
        } else {
            eprintln!("  brand {got:?}, uap-core {want}: {}", c.user_agent_string);
        }
    }
    let (ok, total) = per.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    for (b, (o, t)) in &per {
        eprintln!(
            "uap-core test_device brand {b}: {o}/{t} = {:.2}%",
            ratio(*o, *t)
        );
    }
    let pct = ratio(ok, total);
    eprintln!("uap-core test_device brand, Apple+Samsung+Google: {ok}/{total} = {pct:.2}%");
    let precision = ratio(claimed - wrong, claimed);
    eprintln!(
        "uap-core test_device: Apple/Samsung/Google given and right: {}/{claimed} = {precision:.2}%",
        claimed - wrong
    );
    // The target holds for each brand, not only for the three together.
    for (b, (o, t)) in &per {
        assert!(ratio(*o, *t) >= 90.0, "{b}: {o}/{t}");
    }
    assert!(
        precision >= MEASURED_DEVICE_PRECISION_FLOOR,
        "{precision:.2}%"
    );
}

/// Brand of every maker in uap-core's test_device.yaml: over all cases with a
/// brand, and for each of the 20 largest brands.
#[test]
fn uap_core_device_brand_for_every_maker() {
    let p = UserAgentParser::new();
    let cases: UapCases<DeviceCase> =
        serde_yaml_ng::from_str(&read("uap-core/tests/test_device.yaml")).expect("yaml");
    let none = ClientHints::default();
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for c in &cases.test_cases {
        let Some(want) = c.brand.as_deref() else {
            continue;
        };
        let got = p.parse(&c.user_agent_string, &none).brand;
        let e = per.entry(want.to_owned()).or_default();
        e.1 += 1;
        if got.as_deref().is_some_and(|g| g.eq_ignore_ascii_case(want)) {
            e.0 += 1;
        }
    }
    let (ok, total) = per.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let pct = ratio(ok, total);
    eprintln!("uap-core test_device brand, every maker: {ok}/{total} = {pct:.2}%");
    let mut largest: Vec<(&String, &(usize, usize))> = per.iter().collect();
    largest.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
    let mut low = Vec::new();
    for (b, (o, t)) in largest.iter().take(20) {
        eprintln!("  {b}: {o}/{t} = {:.2}%", ratio(*o, *t));
        if ratio(*o, *t) < 90.0 {
            low.push(format!("{b} {o}/{t}"));
        }
    }
    assert!(pct >= 97.0, "{pct:.2}%");
    assert!(low.is_empty(), "brands under 90%: {low:?}");
}

/// Measured 98.30% when the per-brand rules landed (98.66% before them, with
/// recall far lower). Most of the disagreements are uap-core naming the carrier
/// ("Sprint") or a clone's maker for a string that says Samsung or iOS; a rule that
/// starts naming the wrong maker drops the figure below the floor.
const MEASURED_DEVICE_PRECISION_FLOOR: f64 = 98.0;

/// The target for browser families (after the documented folding).
const MEASURED_UAP_FAMILY_FLOOR: f64 = 95.0;
