//! Enrichment benchmarks: a full enrichment with a warm user-agent cache and City +
//! ASN databases; a cold user-agent parse; and the cache's hit rate on a realistic mix.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use beacon_benches::Rng;
use beacon_core::{Event, Site};
use beacon_enrich::{
    BotDetector, ClientHints, Enricher, GeoDatabases, GeoKind, Request, UapParser, UserAgentParser,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;

/// With `--features mimalloc`, the allocator the `beacon` binary ships with.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel)
}

/// Real user agents: uap-core's test agents (1,601) and isbot's browsers.
fn agents() -> Vec<String> {
    let text = std::fs::read_to_string(data("uap-core/tests/test_ua.yaml"))
        .expect("../shared/data beside the repository");
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- user_agent_string: "))
        .map(|s| s.trim_matches(|c| c == '\'' || c == '"').to_owned())
        .collect();
    let browsers =
        std::fs::read_to_string(data("isbot/fixtures/browsers.yml")).expect("isbot fixtures");
    out.extend(
        browsers
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- "))
            .map(str::to_owned),
    );
    out
}

/// A traffic-like mix: a few agents are most of the hits (skewed towards the front).
fn mix(pool: &[String], n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let bound = rng.skewed(pool.len() as u64) + 1;
            rng.skewed(bound) as usize
        })
        .collect()
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
        .expect("test databases");
    Enricher::builder().geo(geo).build().expect("enricher")
}

fn event(i: usize) -> Event {
    let mut e = Event::default();
    e.page.url = format!(
        "https://example.com/p/{}?utm_source=news&utm_campaign=c{}",
        i % 50,
        i % 7
    );
    e.page.host = "example.com".into();
    e.page.path = format!("/p/{}", i % 50);
    e.page.referrer_domain =
        Some(["google.com", "news.ycombinator.com", "example.com", "t.co"][i % 4].into());
    e
}

/// Addresses in the test databases' networks (City: 81.2.69.142/31, 2.125.160.216/29,
/// 89.160.20.112/28; ASN: 1.128.0.0/11), and elsewhere.
fn address(rng: &mut Rng) -> IpAddr {
    let r = rng.next_u64();
    let octets = match r % 4 {
        0 => [81, 2, 69, 142 + (r >> 8) as u8 % 2],
        1 => [2, 125, 160, 216 + (r >> 8) as u8 % 8],
        2 => [
            1,
            128 + (r >> 8) as u8 % 32,
            (r >> 16) as u8,
            (r >> 24) as u8,
        ],
        _ => [
            89 + (r >> 8) as u8 % 100,
            (r >> 16) as u8,
            (r >> 24) as u8,
            (r >> 32) as u8,
        ],
    };
    IpAddr::from(octets)
}

fn enrich(c: &mut Criterion) {
    let pool = agents();
    let site = Site::new("example.com");
    let e = enricher();
    let picks = mix(&pool, 100_000, 3);
    // Visitors: 30,000 addresses, some sending many hits (the same skew as agents).
    let mut rng = Rng::new(11);
    let visitors: Vec<IpAddr> = (0..30_000).map(|_| address(&mut rng)).collect();
    let by_hit: Vec<IpAddr> = (0..picks.len())
        .map(|_| {
            let bound = rng.skewed(visitors.len() as u64) + 1;
            visitors[rng.skewed(bound) as usize]
        })
        .collect();
    // Warm the cache with every agent of the mix.
    for &p in &picks {
        e.enrich(
            &mut Event::default(),
            &Request {
                ip: None,
                user_agent: Some(&pool[p]),
                client_hints: None,
                server_side: false,
            },
            &site,
        );
    }
    // Hit i: the mix's agent i from address `ips[i]`.
    let enrich_all = |mut events: Vec<Event>, ips: &[IpAddr]| {
        for (i, ev) in events.iter_mut().enumerate() {
            let req = Request {
                ip: Some(ips[i]),
                user_agent: Some(&pool[picks[i]]),
                client_hints: None,
                server_side: false,
            };
            e.enrich(ev, &req, &site);
        }
        events
    };
    let mut g = c.benchmark_group("enrich");
    g.throughput(Throughput::Elements(picks.len() as u64));
    g.sample_size(10);
    g.bench_function("full_warm_ua_cache_city_asn_100k", |b| {
        b.iter_batched(
            || (0..picks.len()).map(event).collect::<Vec<Event>>(),
            |events| enrich_all(events, &by_hit),
            BatchSize::PerIteration,
        )
    });
    // The worst case for the address cache: every hit from an address never seen.
    let mut fresh_addresses = Rng::new(13);
    g.bench_function("full_warm_ua_cache_unique_addresses_100k", |b| {
        b.iter_batched(
            || {
                let events = (0..picks.len()).map(event).collect::<Vec<Event>>();
                let ips: Vec<IpAddr> = (0..picks.len())
                    .map(|_| address(&mut fresh_addresses))
                    .collect();
                (events, ips)
            },
            |(events, ips)| enrich_all(events, &ips),
            BatchSize::PerIteration,
        )
    });
    let (hits, misses) = e.address_cache_stats();
    eprintln!(
        "address cache over both benchmarks: {hits} hits, {misses} misses, hit rate {:.2}%",
        hits as f64 * 100.0 / (hits + misses).max(1) as f64
    );
    let parser = UserAgentParser::new();
    let hints = ClientHints::default();
    g.throughput(Throughput::Elements(pool.len() as u64));
    g.bench_function("cold_user_agent_parse_all_agents", |b| {
        b.iter(|| {
            for ua in &pool {
                black_box(parser.parse(ua, &hints));
            }
        })
    });
    let uap = UapParser::embedded().expect("uap rules");
    g.bench_function("cold_part_uap_family", |b| {
        b.iter(|| pool.iter().for_each(|ua| drop(black_box(uap.family(ua)))))
    });
    g.bench_function("cold_part_woothee", |b| {
        b.iter(|| {
            pool.iter()
                .for_each(|ua| drop(black_box(parser.woothee(ua))))
        })
    });
    g.bench_function("cold_part_device_rules", |b| {
        b.iter(|| {
            pool.iter()
                .for_each(|ua| drop(black_box(parser.brand_model(ua))))
        })
    });
    let bots = BotDetector::embedded().expect("bot lists");
    g.bench_function("cold_part_bot_classify", |b| {
        b.iter(|| {
            pool.iter()
                .for_each(|ua| drop(black_box(bots.classify(Some(ua)))))
        })
    });
    g.finish();

    // Hit rate of a cold cache on 1M hits of the mix.
    let fresh = enricher();
    let picks = mix(&pool, 1_000_000, 5);
    for &p in &picks {
        fresh.enrich(
            &mut Event::default(),
            &Request {
                ip: None,
                user_agent: Some(&pool[p]),
                client_hints: None,
                server_side: false,
            },
            &site,
        );
    }
    let (hits, misses) = fresh.cache_stats();
    eprintln!(
        "user-agent cache on 1M hits over {} distinct agents: {hits} hits, {misses} misses, hit rate {:.2}%",
        pool.len(),
        hits as f64 * 100.0 / (hits + misses) as f64
    );
}

criterion_group!(benches, enrich);
criterion_main!(benches);
