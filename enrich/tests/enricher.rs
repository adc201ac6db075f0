//! The whole pipeline with real GeoIP test databases, the contract's flat output,
//! IP privacy, bots and data-centre traffic, and a never-panics property test.

use beacon_core::{Event, Hit, Site, ValidationContext, VisitorType};
use beacon_enrich::{flat_json, ClientHints, Enricher, GeoDatabases, GeoKind, Request, Step};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use std::path::PathBuf;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel)
}

fn enricher() -> Enricher {
    let geo = GeoDatabases::new()
        .with(
            GeoKind::Location,
            data("maxmind-test-dbs/test-data/GeoIP2-City-Test.mmdb"),
        )
        .and_then(|g| {
            g.with(
                GeoKind::Asn,
                data("maxmind-test-dbs/test-data/GeoLite2-ASN-Test.mmdb"),
            )
        })
        .expect("test databases open");
    Enricher::builder().geo(geo).build().expect("enricher")
}

fn event(json: &str, site: &Site, e: &Enricher) -> Event {
    let now = Utc
        .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("date");
    let hit = Hit::from_json(json.as_bytes())
        .expect("hit")
        .validate(&ValidationContext::import(now), None)
        .expect("valid");
    e.enrich_hit(hit, site)
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

#[test]
fn geo_network_and_the_flat_contract_keys() {
    let e = enricher();
    let site = Site::new("example.com");
    let ev = event(
        &format!(
            r#"{{"site":"example.com","type":"pageview","url":"https://example.com/a?utm_source=x","timestamp":"2026-03-01T11:00:00Z","ip":"81.2.69.142","user_agent":"{FIREFOX}"}}"#
        ),
        &site,
        &e,
    );
    assert_eq!(ev.location.country.as_deref(), Some("GB"));
    assert_eq!(ev.location.city.as_deref(), Some("London"));
    assert_eq!(ev.location.timezone.as_deref(), Some("Europe/London"));
    let flat = flat_json(&ev);
    let keys = [
        "browser",
        "browser_version",
        "os",
        "os_version",
        "device_type",
        "device_brand",
        "device_model",
        "is_bot",
        "bot_reason",
        "country",
        "region",
        "city",
        "timezone",
        "asn",
        "isp",
        "organization",
        "company",
        "visitor_type",
        "is_vpn",
        "is_proxy",
        "is_hosting",
        "host",
        "page",
        "source",
        "medium",
        "channel",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "utm_term",
        "gclid",
        "fbclid",
        "ttclid",
        "msclkid",
    ];
    for k in keys {
        assert!(flat.get(k).is_some(), "flat output lacks {k}");
    }
    assert_eq!(flat["browser"], "Firefox");
    assert_eq!(flat["os"], "Linux");
    assert_eq!(flat["device_type"], "desktop");
    assert_eq!(flat["is_bot"], false);
    assert_eq!(flat["page"], "/a");
    assert_eq!(flat["source"], "x");
}

#[test]
fn asn_and_visitor_type_from_the_asn_database() {
    let e = enricher();
    // 1.128.0.0 is in GeoLite2-ASN-Test as AS1221 "Telstra Pty Ltd".
    let ev = event(
        &format!(
            r#"{{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:00:00Z","ip":"1.128.0.1","user_agent":"{FIREFOX}"}}"#
        ),
        &Site::new("a.com"),
        &e,
    );
    assert_eq!(ev.network.asn, Some(1221));
    assert_eq!(ev.network.organization.as_deref(), Some("Telstra Pty Ltd"));
    assert_eq!(
        ev.network.visitor_type,
        Some(VisitorType::Business),
        "an organisation without ISP words counts as a company"
    );
    assert_eq!(ev.network.company.name.as_deref(), Some("Telstra Pty Ltd"));
}

#[test]
fn ip_is_kept_only_for_sites_that_opt_in() {
    let e = enricher();
    let json = format!(
        r#"{{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:00:00Z","ip":"81.2.69.142","user_agent":"{FIREFOX}"}}"#
    );
    assert_eq!(event(&json, &Site::new("a.com"), &e).network.ip, None);
    let mut opted = Site::new("a.com");
    opted.store_ip = true;
    assert_eq!(
        event(&json, &opted, &e).network.ip,
        Some("81.2.69.142".parse().expect("ip"))
    );
}

#[test]
fn bots_and_datacenter_traffic_are_kept_with_a_reason() {
    let e = enricher();
    let site = Site::new("a.com");
    let bot = event(
        r#"{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:00:00Z","user_agent":"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"}"#,
        &site,
        &e,
    );
    assert!(bot.bot.is_some());
    assert_eq!(bot.network.visitor_type, Some(VisitorType::Bot));
    let dc = event(
        &format!(
            r#"{{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:00:00Z","ip":"3.0.0.1","user_agent":"{FIREFOX}"}}"#
        ),
        &site,
        &e,
    );
    assert_eq!(
        dc.bot.as_ref().map(|b| b.reason.as_str()),
        Some("datacenter network")
    );
    assert_eq!(
        (dc.network.visitor_type, dc.network.is_hosting),
        (Some(VisitorType::Hosting), true)
    );
    let lenient = Enricher::builder()
        .datacenter_is_bot(false)
        .build()
        .expect("enricher");
    let kept = event(
        &format!(
            r#"{{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:00:00Z","ip":"3.0.0.1","user_agent":"{FIREFOX}"}}"#
        ),
        &site,
        &lenient,
    );
    assert!(kept.bot.is_none() && kept.network.is_hosting);
}

/// 2.26.157.0/24 is a VPN exit in a data centre (X4BNet lists both): its visitors
/// are people on a privacy network, not data-centre bots; a crawler there is a bot.
#[test]
fn vpn_visitors_are_people_even_in_a_data_centre() {
    let e = enricher();
    let site = Site::new("a.com");
    let hit = |ua: &str| {
        format!(
            r#"{{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:00:00Z","ip":"2.26.157.7","user_agent":"{ua}"}}"#
        )
    };
    let person = event(&hit(FIREFOX), &site, &e);
    assert!(person.bot.is_none(), "{:?}", person.bot);
    let n = &person.network;
    assert_eq!(
        (n.visitor_type, n.is_vpn, n.is_hosting),
        (Some(VisitorType::Privacy), true, true)
    );
    assert_eq!(flat_json(&person)["visitor_type"], "privacy");
    let crawler = event(
        &hit("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
        &site,
        &e,
    );
    assert!(crawler.bot.is_some());
    assert_eq!(crawler.network.visitor_type, Some(VisitorType::Bot));
    // A data-centre address on no VPN list stays non-human by default.
    let dc = event(
        &format!(
            r#"{{"site":"a.com","type":"pageview","url":"https://a.com/","timestamp":"2026-03-01T11:00:00Z","ip":"1.12.0.1","user_agent":"{FIREFOX}"}}"#
        ),
        &site,
        &e,
    );
    assert_eq!(
        dc.bot.as_ref().map(|b| b.reason.as_str()),
        Some("datacenter network")
    );
}

#[test]
fn steps_compose_and_hints_win() {
    let only_url = Enricher::builder()
        .steps(&[Step::Url])
        .build()
        .expect("enricher");
    let ev = event(
        &format!(
            r#"{{"site":"a.com","type":"pageview","url":"https://a.com/?gclid=1","referrer":"https://www.google.com/","timestamp":"2026-03-01T11:00:00Z","user_agent":"{FIREFOX}"}}"#
        ),
        &Site::new("a.com"),
        &only_url,
    );
    assert_eq!(ev.acquisition.click_ids.gclid.as_deref(), Some("1"));
    assert_eq!(
        (
            ev.acquisition.source.as_deref(),
            ev.device.browser.as_deref()
        ),
        (None, None),
        "steps not asked for do not run"
    );

    let e = Enricher::new().expect("enricher");
    let mut ev = Event::default();
    let hints = ClientHints {
        ua: Some(r#""Microsoft Edge";v="120", "Chromium";v="120""#.into()),
        platform: Some("\"Windows\"".into()),
        ..ClientHints::default()
    };
    let req = Request { ip: None, user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"), client_hints: Some(&hints), server_side: false };
    e.enrich(&mut ev, &req, &Site::new("a.com"));
    assert_eq!(ev.device.browser.as_deref(), Some("Edge"));
}

#[test]
fn server_side_hits_without_a_user_agent_are_not_bots() {
    let e = Enricher::new().expect("enricher");
    let json = r#"{"site":"a.com","type":"purchase","url":"https://a.com/buy","timestamp":"2026-03-01T11:00:00Z","revenue":{"amount":"9.00","currency":"USD"}VISITOR}"#;
    let server = event(
        &json.replace("VISITOR", r#","visitor_id":"v1""#),
        &Site::new("a.com"),
        &e,
    );
    assert!(server.bot.is_none(), "the site's server names its visitor");
    let anonymous = event(&json.replace("VISITOR", ""), &Site::new("a.com"), &e);
    assert_eq!(
        anonymous.bot.map(|b| b.reason).as_deref(),
        Some("missing user agent")
    );
}

/// The facts of a hit without an agent are built once and shared: hints do not
/// change them, and every such hit gets the same answer.
#[test]
fn hits_without_a_user_agent_share_one_answer_whatever_their_hints() {
    let e = Enricher::new().expect("enricher");
    let hints = ClientHints {
        ua: Some(r#""Microsoft Edge";v="120", "Chromium";v="120""#.into()),
        platform: Some("\"Windows\"".into()),
        ..ClientHints::default()
    };
    for hints in [None, Some(&hints)] {
        for _ in 0..2 {
            let mut ev = Event::default();
            let req = Request {
                ip: None,
                user_agent: None,
                client_hints: hints,
                server_side: false,
            };
            e.enrich(&mut ev, &req, &Site::new("a.com"));
            assert_eq!(
                (
                    ev.bot.map(|b| b.reason).as_deref(),
                    ev.device.browser.as_deref()
                ),
                (Some("missing user agent"), None)
            );
            assert_eq!(ev.device.device_type, Some(beacon_core::DeviceType::Bot));
        }
    }
}

#[test]
fn the_enricher_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Enricher>();
    let e = std::sync::Arc::new(enricher());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let e = std::sync::Arc::clone(&e);
            std::thread::spawn(move || {
                let mut ev = Event::default();
                let ua = format!("{FIREFOX} thread{i}");
                e.enrich(
                    &mut ev,
                    &Request {
                        ip: Some("81.2.69.142".parse().expect("ip")),
                        user_agent: Some(&ua),
                        client_hints: None,
                        server_side: false,
                    },
                    &Site::new("a.com"),
                );
                ev.location.country
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread").as_deref(), Some("GB"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn enrichment_never_panics(ua in ".{0,300}", ip in any::<[u8; 16]>(), v4 in any::<bool>(), url in "https?://[a-z.]{1,20}/[ -~]{0,60}", referrer in "[ -~]{0,60}") {
        static SHARED: std::sync::OnceLock<Enricher> = std::sync::OnceLock::new();
        let e = SHARED.get_or_init(|| Enricher::new().expect("enricher"));
        let ip: std::net::IpAddr = if v4 { std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).into() } else { std::net::Ipv6Addr::from(ip).into() };
        let mut ev = Event::default();
        ev.page.url = url;
        ev.page.referrer_domain = Some(referrer);
        e.enrich(&mut ev, &Request { ip: Some(ip), user_agent: Some(&ua), client_hints: None, server_side: false }, &Site::new("a.com"));
        let _ = flat_json(&ev);
    }
}
