//! GeoIP against MaxMind's test databases and their JSON sources, the corrupt files,
//! the flat ip-location-db schema, and replacing a database without a restart.

use beacon_core::{Event, Site};
use beacon_enrich::{Enricher, GeoDatabases, GeoFacts, GeoKind, Request};
use serde_json::Value;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel)
}

fn source(name: &str) -> Vec<(IpAddr, Value)> {
    let text = std::fs::read_to_string(data(&format!("maxmind-test-dbs/source-data/{name}.json")))
        .expect("source json");
    let list: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&text).expect("json");
    list.into_iter()
        .flat_map(|m| m.into_iter())
        .map(|(net, rec)| {
            (
                net.split('/')
                    .next()
                    .expect("network")
                    .parse::<IpAddr>()
                    .expect("address"),
                rec,
            )
        })
        .collect()
}

fn db(kind: GeoKind, name: &str) -> GeoDatabases {
    GeoDatabases::new()
        .with(
            kind,
            data(&format!("maxmind-test-dbs/test-data/{name}.mmdb")),
        )
        .expect("database opens")
}

fn s(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = match p.parse::<usize>() {
            Ok(i) => cur.get(i)?,
            Err(_) => cur.get(*p)?,
        };
    }
    cur.as_str()
        .map(str::to_owned)
        .or_else(|| cur.as_u64().map(|n| n.to_string()))
}

/// Country, region, city, postal code, latitude, longitude, time zone.
type LocationFields = (Opt, Opt, Opt, Opt, Option<f64>, Option<f64>, Opt);
type Opt = Option<String>;

/// What the JSON record says our fields should be.
fn expected_location(rec: &Value) -> LocationFields {
    let country = s(rec, &["country", "iso_code"]);
    let region = s(rec, &["subdivisions", "0", "iso_code"]).map(|r| match &country {
        Some(c) => format!("{c}-{r}"),
        None => r,
    });
    (
        country,
        region,
        s(rec, &["city", "names", "en"]),
        s(rec, &["postal", "code"]),
        rec.pointer("/location/latitude").and_then(Value::as_f64),
        rec.pointer("/location/longitude").and_then(Value::as_f64),
        s(rec, &["location", "time_zone"]),
    )
}

fn got_location(f: &GeoFacts) -> LocationFields {
    let l = &f.location;
    (
        l.country.as_deref().map(str::to_owned),
        l.region.as_deref().map(str::to_owned),
        l.city.as_deref().map(str::to_owned),
        l.postal_code.as_deref().map(str::to_owned),
        l.latitude,
        l.longitude,
        l.timezone.as_deref().map(str::to_owned),
    )
}

#[test]
fn location_databases_match_their_sources() {
    let mut total = 0;
    for name in [
        "GeoIP2-City-Test",
        "GeoIP2-Country-Test",
        "GeoLite2-City-Test",
        "GeoLite2-Country-Test",
        "GeoIP2-Enterprise-Test",
    ] {
        let kind = if name.contains("Enterprise") {
            GeoKind::Enterprise
        } else {
            GeoKind::Location
        };
        let d = db(kind, name);
        for (ip, rec) in source(name) {
            assert_eq!(
                got_location(&d.lookup(ip)),
                expected_location(&rec),
                "{name} {ip}"
            );
            total += 1;
        }
    }
    eprintln!("location records matched: {total}");
    assert!(total > 1000);
}

#[test]
fn enterprise_traits_match_their_source() {
    let d = db(GeoKind::Enterprise, "GeoIP2-Enterprise-Test");
    for (ip, rec) in source("GeoIP2-Enterprise-Test") {
        let f = d.lookup(ip);
        assert_eq!(
            f.user_type.as_deref().map(str::to_owned),
            s(&rec, &["traits", "user_type"]),
            "{ip}"
        );
        assert_eq!(
            f.organization.as_deref().map(str::to_owned),
            s(&rec, &["traits", "organization"]),
            "{ip}"
        );
        assert_eq!(
            f.domain.as_deref().map(str::to_owned),
            s(&rec, &["traits", "domain"]),
            "{ip}"
        );
        assert_eq!(
            f.connection_type.as_deref().map(str::to_owned),
            s(&rec, &["traits", "connection_type"]),
            "{ip}"
        );
        assert_eq!(
            f.asn.map(|a| a.to_string()),
            s(&rec, &["traits", "autonomous_system_number"]),
            "{ip}"
        );
    }
}

#[test]
fn asn_and_isp_databases_match_their_sources() {
    let mut total = 0;
    for (name, kind) in [
        ("GeoLite2-ASN-Test", GeoKind::Asn),
        ("GeoIP2-ISP-Test", GeoKind::Isp),
    ] {
        let d = db(kind, name);
        for (ip, rec) in source(name) {
            let f = d.lookup(ip);
            assert_eq!(
                f.asn.map(|a| a.to_string()),
                s(&rec, &["autonomous_system_number"]),
                "{name} {ip}"
            );
            assert_eq!(
                f.asn_organization.as_deref().map(str::to_owned),
                s(&rec, &["autonomous_system_organization"]),
                "{name} {ip}"
            );
            assert_eq!(
                f.isp.as_deref().map(str::to_owned),
                s(&rec, &["isp"]),
                "{name} {ip}"
            );
            assert_eq!(
                f.organization.as_deref().map(str::to_owned),
                s(&rec, &["organization"]),
                "{name} {ip}"
            );
            total += 1;
        }
    }
    eprintln!("asn/isp records matched: {total}");
    assert!(total > 2000);
}

#[test]
fn anonymous_ip_database_matches_its_source() {
    let d = db(GeoKind::Anonymous, "GeoIP2-Anonymous-IP-Test");
    let flag = |rec: &Value, k: &str| rec.get(k).and_then(Value::as_bool).unwrap_or(false);
    for (ip, rec) in source("GeoIP2-Anonymous-IP-Test") {
        let f = d.lookup(ip);
        assert_eq!(f.is_anonymous, flag(&rec, "is_anonymous"), "{ip}");
        assert_eq!(f.is_vpn, flag(&rec, "is_anonymous_vpn"), "{ip}");
        assert_eq!(f.is_hosting, flag(&rec, "is_hosting_provider"), "{ip}");
        assert_eq!(
            f.is_proxy,
            flag(&rec, "is_public_proxy") || flag(&rec, "is_residential_proxy"),
            "{ip}"
        );
        assert_eq!(f.is_tor, flag(&rec, "is_tor_exit_node"), "{ip}");
    }
}

#[test]
fn corrupt_files_give_errors_never_panics_or_hangs() {
    let mut files = Vec::new();
    let mut dirs = vec![data("maxmind-test-dbs/bad-data")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).expect("bad-data") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "mmdb") {
                files.push(p);
            }
        }
    }
    assert_eq!(files.len(), 21);
    for file in files {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = file.clone();
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(|| {
                match GeoDatabases::new().with(GeoKind::Location, &path) {
                    Err(_) => "open error",
                    Ok(d) => {
                        for ip in ["1.1.1.1", "81.2.69.142", "::1", "2001:db8::1"] {
                            let _ = d.lookup(ip.parse().expect("ip"));
                        }
                        "opened; lookups returned"
                    }
                }
            });
            let _ = tx.send(outcome.map_err(|_| ()));
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(_)) => {}
            Ok(Err(())) => panic!("{} panicked", file.display()),
            Err(_) => panic!("{} hung", file.display()),
        }
    }
}

#[test]
fn flat_schema_country_database() {
    let d = GeoDatabases::new()
        .with(
            GeoKind::Location,
            data("ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country-ipv4.mmdb"),
        )
        .expect("opens");
    assert_eq!(
        d.lookup("8.8.8.8".parse().expect("ip"))
            .location
            .country
            .as_deref(),
        Some("US")
    );
    // An IPv4-only tree cannot hold IPv6: empty, not an error or a panic.
    assert_eq!(
        d.lookup("2001:4860:4860::8888".parse().expect("ip"))
            .location
            .country,
        None
    );
}

#[test]
fn a_replaced_file_is_picked_up_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("beacon-geo-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let live = dir.join("city.mmdb");
    std::fs::copy(
        data("maxmind-test-dbs/test-data/GeoIP2-Country-Test.mmdb"),
        &live,
    )
    .expect("copy");
    let d = GeoDatabases::new()
        .with(GeoKind::Location, &live)
        .expect("opens");
    let ip: IpAddr = "81.2.69.142".parse().expect("ip");
    // The enricher caches answers per address: a replaced file must still show.
    let enricher = Enricher::builder()
        .geo(
            GeoDatabases::new()
                .with(GeoKind::Location, &live)
                .expect("opens"),
        )
        .build()
        .expect("enricher");
    let site = Site::new("example.com");
    let city_via_enricher = || {
        let mut e = Event::default();
        let req = Request {
            ip: Some(ip),
            ..Request::default()
        };
        enricher.enrich(&mut e, &req, &site);
        e.location.city.as_deref().map(str::to_owned)
    };
    assert_eq!(
        d.lookup(ip).location.city,
        None,
        "a country database has no cities"
    );
    assert_eq!(city_via_enricher(), None);
    assert_eq!(city_via_enricher(), None, "and from the cache");
    std::thread::sleep(Duration::from_millis(20));
    let staged = dir.join("city.mmdb.new");
    std::fs::copy(
        data("maxmind-test-dbs/test-data/GeoIP2-City-Test.mmdb"),
        &staged,
    )
    .expect("copy");
    std::fs::rename(&staged, &live).expect("atomic replace");
    assert_eq!(d.reload_changed().expect("reload"), 1);
    assert_eq!(d.lookup(ip).location.city.as_deref(), Some("London"));
    assert_eq!(enricher.geo().reload_changed().expect("reload"), 1);
    assert_eq!(city_via_enricher().as_deref(), Some("London"));
    assert_eq!(
        d.reload_changed().expect("reload"),
        0,
        "unchanged files are not re-read"
    );
    std::fs::remove_dir_all(&dir).ok();
}
