//! Fuzz targets (issue 14): hit parsing and enrichment, query / funnel / goals
//! parsing and answers, CSV import lines, payment webhooks (parse and signatures),
//! and MaxMind database files. Each mutates a seed corpus (`fuzz/corpus/`, and real
//! inputs from `../shared/data`) and must not panic or hang. `BEACON_FUZZ_CASES`
//! sets the cases per target; CI runs a few thousand, `scripts/fuzz` a million.

use beacon_attribution::{parse_payments, Headers, Provider, WebhookVerifier};
use beacon_core::{
    Context, Event, EventKind, Funnel, GoalsRequest, Hit, MemoryStore, Query, Site,
    ValidationContext,
};
use beacon_enrich::{flat_json, Enricher, GeoDatabases, GeoKind};
use beacon_testkit::fuzz;
use chrono::{TimeZone, Utc};
use std::cell::Cell;
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    fuzz::seeds_in(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target),
    )
}

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel)
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0)
        .single()
        .expect("time")
}

const CI_CASES: u64 = 3000;

/// A fuzzer whose inputs all die in the first parser tests nothing deeper: at least
/// `percent` of the cases must get to the last step.
fn reached(target: &str, step: &str, deep: u64, cases: u64, percent: u64) {
    eprintln!("fuzz {target}: {deep} of {cases} cases {step}");
    assert!(
        deep * 100 >= cases * percent,
        "only {deep} of {cases} {target} cases were {step}"
    );
}

#[test]
fn hits_parse_validate_and_enrich_without_panics() {
    let enricher = Enricher::builder().build().expect("enricher");
    let site = Site::new("example.com");
    let ctx = ValidationContext::import(now());
    let deep = Cell::new(0u64);
    let r = fuzz::run("hit", &corpus("hit"), fuzz::cases(CI_CASES), |input| {
        if let Ok(hit) = Hit::from_json(input) {
            if let Ok(valid) = hit.validate(&ctx, Some("example.com")) {
                let _ = flat_json(&enricher.enrich_hit(valid, &site));
                deep.set(deep.get() + 1);
            }
        }
    });
    assert_eq!(r.panics, 0, "{r:?}");
    reached("hit", "enriched", deep.get(), r.cases, 5);
}

/// A small site to answer the requests that parse.
fn store() -> MemoryStore {
    let store = MemoryStore::new();
    let events: Vec<Event> = (0..300u32)
        .map(|i| {
            let mut e = Event {
                id: uuid::Uuid::from_u128(u128::from(i) + 1),
                site: "example.com".into(),
                kind: [
                    EventKind::Pageview,
                    EventKind::Goal,
                    EventKind::Purchase,
                    EventKind::Custom,
                    EventKind::Engagement,
                    EventKind::Refund,
                ][i as usize % 6],
                timestamp: now() - chrono::Duration::minutes(i64::from(i) * 37),
                name: Some(["signup", "video", "subscribe"][i as usize % 3].into()),
                ..Event::default()
            };
            e.identity.visitor_id = format!("v{}", i % 23);
            e.page.path = format!("/p/{}/buy", i % 17);
            e.acquisition.source = (i % 3 == 0).then(|| "Google".into());
            e.location.country = Some(["DE", "FR", "US"][i as usize % 3].into());
            e.commerce.revenue =
                Some(beacon_core::Money::parse("9.99", beacon_core::Currency::USD).expect("money"));
            e.commerce.order_id = Some(format!("o{}", i % 11));
            e.props.insert("plan".into(), "pro".into());
            e
        })
        .collect();
    store.append_sync(&events).expect("append");
    store
}

#[test]
fn requests_parse_and_run_without_panics() {
    let store = store();
    let site = Site::new("example.com");
    let cx = Context::at(now());
    let deep = Cell::new(0u64);
    let r = fuzz::run(
        "request",
        &corpus("request"),
        fuzz::cases(CI_CASES),
        |input| {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            // Every request kind's parser sees every input; what parses is run.
            if let Ok(q) = Query::from_json(text) {
                let mut q = q;
                q.site = "example.com".into();
                let _ = store.query_sync(&site, &q, &cx);
                deep.set(deep.get() + 1);
            }
            if let Ok(mut f) = Funnel::from_json(text) {
                f.site = "example.com".into();
                let _ = store.funnel_sync(&site, &f, &cx);
                deep.set(deep.get() + 1);
            }
            if let Ok(mut g) = GoalsRequest::from_json(text) {
                g.site = "example.com".into();
                let _ = store.goals_sync(&site, &g, &cx);
                deep.set(deep.get() + 1);
            }
        },
    );
    assert_eq!(r.panics, 0, "{r:?}");
    reached("request", "answered", deep.get(), r.cases, 3);
}

#[test]
fn csv_import_lines_parse_without_panics() {
    let ctx = ValidationContext::import(now());
    let r = fuzz::run("csv", &corpus("csv"), fuzz::cases(CI_CASES), |input| {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let Ok(headers) = reader.headers().cloned() else {
            return;
        };
        for rec in reader.byte_records().take(50) {
            let Ok(rec) = rec else { continue };
            let Ok(rec) = csv::StringRecord::from_byte_record(rec) else {
                continue;
            };
            if let Ok(hit) = Hit::from_fields(headers.iter().zip(rec.iter())) {
                let _ = hit.validate(&ctx, Some("example.com"));
            }
        }
    });
    assert_eq!(r.panics, 0, "{r:?}");
}

#[test]
fn webhook_payloads_and_signatures_without_panics() {
    let mut seeds = corpus("webhook");
    for dir in [
        "webhooks/lemonsqueezy/pay-rails",
        "webhooks/stripe/pay-rails",
        "webhooks/shopify",
        "webhooks/polar",
    ] {
        for seed in fuzz::seeds_in(shared(dir)) {
            if seed.len() < 64 * 1024 && seed.first() == Some(&b'{') {
                seeds.push(seed);
            }
        }
    }
    let r = fuzz::run("webhook", &seeds, fuzz::cases(CI_CASES), |input| {
        // Headers before a blank line, when there is one; the body after.
        let (head, body) = match input.windows(2).position(|w| w == b"\n\n") {
            Some(at) => (&input[..at], &input[at + 2..]),
            None => (&b""[..], input),
        };
        let headers = Headers::from_pairs(String::from_utf8_lossy(head).lines().filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        }));
        for provider in Provider::ALL {
            let _ = parse_payments(provider, &headers, body);
            let _ = WebhookVerifier::new(provider, "whsec_fuzz").verify(&headers, body, now());
        }
    });
    assert_eq!(r.panics, 0, "{r:?}");
}

#[test]
fn maxmind_database_files_without_panics_or_hangs() {
    let seeds: Vec<Vec<u8>> = [
        "GeoIP2-City-Test.mmdb",
        "GeoIP2-Country-Test.mmdb",
        "GeoLite2-ASN-Test.mmdb",
    ]
    .iter()
    .map(|f| std::fs::read(shared("maxmind-test-dbs/test-data").join(f)).expect("test database"))
    .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fuzz.mmdb");
    let ips: Vec<std::net::IpAddr> = [
        "81.2.69.142",
        "2.125.160.216",
        "1.128.0.0",
        "2001:480::1",
        "::1",
        "216.160.83.56",
    ]
    .iter()
    .map(|ip| ip.parse().expect("ip"))
    .collect();
    let r = fuzz::run("mmdb", &seeds, fuzz::cases(CI_CASES / 3), |input| {
        if std::fs::write(&path, input).is_err() {
            return;
        }
        for kind in [GeoKind::Location, GeoKind::Asn] {
            if let Ok(db) = GeoDatabases::new().with(kind, &path) {
                for ip in &ips {
                    let _ = db.lookup(*ip);
                }
            }
        }
    });
    assert_eq!(r.panics, 0, "{r:?}");
}
