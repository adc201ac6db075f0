//! Enrichment accuracy measured the way a user meets it: every agent of the real
//! corpora in ../shared/data through `beacon enrich` (the released command), per
//! brand and per corpus. Run with --nocapture for the figures.

mod common;

use common::{run, text};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn shared(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (../shared must sit beside the repository)",
            path.display()
        )
    })
}

/// `beacon enrich` over these agents, one flat object per agent.
fn enrich(agents: &[String]) -> Vec<Value> {
    let input: String = agents
        .iter()
        .map(|ua| {
            json!({"type": "pageview", "url": "https://example.com/", "user_agent": ua}).to_string()
                + "\n"
        })
        .collect();
    let out = run(&["enrich"], Some(&input));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), agents.len());
    lines
}

fn pct(n: usize, of: usize) -> f64 {
    n as f64 * 100.0 / of.max(1) as f64
}

#[derive(Deserialize)]
struct Cases {
    test_cases: Vec<DeviceCase>,
}

#[derive(Deserialize)]
struct DeviceCase {
    user_agent_string: String,
    brand: Option<String>,
}

#[test]
fn every_makers_brand_through_beacon_enrich() {
    let cases: Cases =
        serde_yaml_ng::from_str(&shared("uap-core/tests/test_device.yaml")).expect("yaml");
    let branded: Vec<&DeviceCase> = cases
        .test_cases
        .iter()
        .filter(|c| c.brand.is_some())
        .collect();
    let agents: Vec<String> = branded
        .iter()
        .map(|c| c.user_agent_string.clone())
        .collect();
    let out = enrich(&agents);
    let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let (mut named, mut coded) = (0, 0);
    for (c, f) in branded.iter().zip(&out) {
        let want = c.brand.as_deref().unwrap_or_default();
        let e = per.entry(want).or_default();
        e.1 += 1;
        if f["device_brand"]
            .as_str()
            .is_some_and(|g| g.eq_ignore_ascii_case(want))
        {
            e.0 += 1;
        }
        if let Some(code) = f["device_model_code"].as_str() {
            coded += 1;
            if f["device_model"].as_str() != Some(code) {
                named += 1;
            }
        }
    }
    let (ok, total) = per.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    eprintln!(
        "beacon enrich, test_device.yaml: brand matches {ok}/{total} = {:.2}%",
        pct(ok, total)
    );
    eprintln!(
        "  model codes given a marketing name: {named}/{coded} = {:.2}%",
        pct(named, coded)
    );
    let mut largest: Vec<(&&str, &(usize, usize))> = per.iter().collect();
    largest.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
    let mut low = Vec::new();
    for (b, (o, t)) in largest.iter().take(20) {
        eprintln!("  {b}: {o}/{t} = {:.2}%", pct(*o, *t));
        if pct(*o, *t) < 90.0 {
            low.push(format!("{b} {o}/{t}"));
        }
    }
    assert!(pct(ok, total) >= 97.0, "{:.2}%", pct(ok, total));
    assert!(low.is_empty(), "brands under 90%: {low:?}");
}

#[test]
fn crawlers_flagged_and_browsers_not_through_beacon_enrich() {
    #[derive(Deserialize)]
    struct Crawler {
        instances: Vec<String>,
    }
    let list: Vec<Crawler> =
        serde_json::from_str(&shared("crawler-user-agents/crawler-user-agents.json"))
            .expect("json");
    let crawler_list: Vec<String> = list.into_iter().flat_map(|c| c.instances).collect();
    let fixture = |rel: &str| -> Vec<String> {
        let groups: BTreeMap<String, Option<Vec<String>>> =
            serde_yaml_ng::from_str(&shared(rel)).expect("yaml");
        groups.into_values().flatten().flatten().collect()
    };
    let flagged = |agents: &[String]| {
        enrich(agents)
            .iter()
            .filter(|f| f["is_bot"] == true)
            .count()
    };
    let isbot_crawlers = fixture("isbot/fixtures/crawlers.yml");
    let isbot_browsers = fixture("isbot/fixtures/browsers.yml");
    let (a, b, c) = (
        flagged(&crawler_list),
        flagged(&isbot_crawlers),
        flagged(&isbot_browsers),
    );
    eprintln!(
        "beacon enrich: crawler-user-agents flagged {a}/{} = {:.2}%",
        crawler_list.len(),
        pct(a, crawler_list.len())
    );
    eprintln!(
        "beacon enrich: isbot crawlers flagged {b}/{} = {:.2}%",
        isbot_crawlers.len(),
        pct(b, isbot_crawlers.len())
    );
    eprintln!(
        "beacon enrich: isbot browsers flagged {c}/{}",
        isbot_browsers.len()
    );
    assert!(pct(a, crawler_list.len()) >= 99.0);
    assert!(pct(b, isbot_crawlers.len()) >= 99.0);
    assert_eq!(c, 0, "isbot's browsers are people");
}
