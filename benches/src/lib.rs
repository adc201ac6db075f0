//! Synthetic workloads for Beacon's benchmarks: deterministic, realistic-shaped traffic.

use beacon_core::{Currency, DeviceType, Event, EventKind, Money, Text};
use chrono::{DateTime, TimeZone, Utc};

/// A small, fast, deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Skewed towards 0 (roughly Zipf-like) in `0..n`.
    pub fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b).min(self.below(n))
    }
}

/// The start of the generated month.
pub fn month_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// The traffic sources the generators draw from (`None` is direct), most common first.
pub const SOURCES: [Option<&str>; 8] = [
    None,
    Some("Google"),
    Some("Bing"),
    Some("Hacker News"),
    Some("Reddit"),
    Some("X"),
    Some("DuckDuckGo"),
    Some("Newsletter"),
];
const COUNTRIES: [&str; 10] = ["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "NL", "ES"];
const BROWSERS: [(&str, &str, DeviceType); 4] = [
    ("Chrome", "Windows", DeviceType::Desktop),
    ("Safari", "iOS", DeviceType::Mobile),
    ("Firefox", "Linux", DeviceType::Desktop),
    ("Chrome", "Android", DeviceType::Mobile),
];

/// Mean session length of the generator: 1 + E[min of three uniform 0..8] = 1 + 784/512.
const MEAN_SESSION_LEN: f64 = 1.0 + 784.0 / 512.0;

/// A stream of `n` events of one site over 30 days: sessions of 1 to 8 events
/// (pageviews, engagement, goals, purchases) starting evenly through the month,
/// 2000 pages, about 12 events per visitor so visitors return across days. Events
/// carry session-level attributes as enrichment would. Nearly, not strictly, in time order.
#[derive(Debug, Clone)]
pub struct Traffic {
    site: String,
    rng: Rng,
    remaining: usize,
    visitors: u64,
    spacing_ms: f64,
    session: u64,
    pending: Vec<Event>,
    next_id: u128,
}

impl Traffic {
    /// `n` events of `site` from `seed`.
    pub fn new(site: &str, n: usize, seed: u64) -> Self {
        let sessions = (n as f64 / MEAN_SESSION_LEN).max(1.0);
        Self {
            site: site.to_owned(),
            rng: Rng::new(seed),
            remaining: n,
            visitors: (n / 12).max(1) as u64,
            spacing_ms: 30.0 * 86_400_000.0 / sessions,
            session: 0,
            pending: Vec::new(),
            next_id: 1,
        }
    }

    fn fill_session(&mut self) {
        let rng = &mut self.rng;
        let start =
            month_start().timestamp_millis() + (self.session as f64 * self.spacing_ms) as i64;
        self.session += 1;
        let visitor = format!(
            "{:016x}",
            rng.below(self.visitors).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        let source = SOURCES[rng.skewed(SOURCES.len() as u64) as usize];
        let country = COUNTRIES[rng.skewed(COUNTRIES.len() as u64) as usize];
        let (browser, os, device) = BROWSERS[rng.below(BROWSERS.len() as u64) as usize];
        let len = 1 + rng.skewed(8) as usize;
        let mut t = start;
        for i in 0..len {
            let roll = rng.below(100);
            let kind = if i == 0 || roll < 70 {
                EventKind::Pageview
            } else if roll < 90 {
                EventKind::Engagement
            } else if roll < 97 {
                EventKind::Goal
            } else {
                EventKind::Purchase
            };
            let mut e = Event {
                id: uuid::Uuid::from_u128(self.next_id),
                site: self.site.clone(),
                kind,
                timestamp: DateTime::from_timestamp_millis(t).unwrap_or_default(),
                ..Event::default()
            };
            self.next_id += 1;
            e.identity.visitor_id = visitor.clone();
            e.page.host = self.site.clone();
            e.page.path = format!("/p/{}", rng.skewed(2000));
            e.acquisition.source = source.map(Text::from);
            e.location.country = Some(country.into());
            e.device.browser = Some(browser.into());
            e.device.os = Some(os.into());
            e.device.device_type = Some(device);
            match kind {
                EventKind::Engagement => {
                    e.engagement.time_ms = Some(rng.below(120_000));
                    e.engagement.scroll_depth = Some(rng.below(101) as u8);
                }
                EventKind::Goal => {
                    e.name =
                        Some(["signup", "download", "contact"][rng.below(3) as usize].to_owned())
                }
                EventKind::Purchase => {
                    e.name = Some("purchase".into());
                    e.commerce.revenue = Some(Money {
                        minor: 500 + rng.below(20_000) as i64,
                        currency: Currency::USD,
                    });
                }
                _ => {}
            }
            self.pending.push(e);
            t += 5_000 + rng.below(400_000) as i64;
        }
        self.pending.reverse();
    }
}

impl Iterator for Traffic {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        if self.remaining == 0 {
            return None;
        }
        if self.pending.is_empty() {
            self.fill_session();
        }
        self.remaining -= 1;
        self.pending.pop()
    }
}

/// The first `n` events of [`Traffic`] as a vector.
pub fn generate(site: &str, n: usize, seed: u64) -> Vec<Event> {
    Traffic::new(site, n, seed).collect()
}

/// A consumer address that the ip-location-db country database in `../shared/data`
/// places in each of the generator's countries.
pub const COUNTRY_ADDRESSES: [(&str, &str); 10] = [
    ("US", "73.0.0.1"),
    ("DE", "91.64.0.1"),
    ("FR", "90.0.0.1"),
    ("GB", "86.0.0.1"),
    ("IN", "49.36.0.1"),
    ("BR", "177.0.0.1"),
    ("JP", "126.0.0.1"),
    ("CA", "24.114.0.1"),
    ("NL", "77.160.0.1"),
    ("ES", "83.32.0.1"),
];

/// A real user agent for each of the generator's (browser, os) pairs.
pub const BROWSER_AGENTS: [(&str, &str, &str); 4] = [
    ("Chrome", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"),
    ("Safari", "iOS", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"),
    ("Firefox", "Linux", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
    ("Chrome", "Android", "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"),
];

/// [`hit_json`] with the client a browser would send: a user agent for the event's
/// browser and an address in its country, so that `beacon import` (given the country
/// database) derives the device and the country itself.
pub fn realistic_hit_json(e: &Event) -> serde_json::Value {
    let mut hit = hit_json(e);
    let country = e.location.country.as_ref().map(|c| c.as_str());
    if let Some((_, ip)) = COUNTRY_ADDRESSES.iter().find(|(c, _)| Some(*c) == country) {
        hit["ip"] = (*ip).into();
    }
    let browser = e.device.browser.as_ref().map(|t| t.as_str());
    let os = e.device.os.as_ref().map(|t| t.as_str());
    if let Some((_, _, ua)) = BROWSER_AGENTS
        .iter()
        .find(|(b, o, _)| Some(*b) == browser && Some(*o) == os)
    {
        hit["user_agent"] = (*ua).into();
    }
    hit
}

/// An event of the generator as the hit `beacon import` takes for it (client
/// visitor ids, so no user agents or addresses are needed).
pub fn hit_json(e: &Event) -> serde_json::Value {
    use serde_json::json;
    let mut url = format!("https://{}{}", e.site, e.page.path);
    if let Some(s) = &e.acquisition.source {
        url.push_str(&format!("?utm_source={}", s.as_str().replace(' ', "+")));
    }
    let mut hit = json!({
        "site": e.site, "type": e.kind.as_str(), "url": url,
        "timestamp": e.timestamp, "visitor_id": e.identity.visitor_id,
    });
    match e.kind {
        EventKind::Goal => hit["goal"] = json!(e.name),
        EventKind::Purchase => {
            if let Some(m) = e.commerce.revenue {
                hit["revenue"] =
                    json!({"amount": m.to_decimal_string(), "currency": m.currency.code()});
            }
        }
        EventKind::Engagement => {
            hit["engagement"] = json!({
                "time_ms": e.engagement.time_ms, "scroll_depth": e.engagement.scroll_depth,
            })
        }
        _ => {}
    }
    hit
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The median of `v` (the upper one of an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Starts `bin serve` on the store under `data_dir`, listening on loopback `port`;
/// its standard error is piped, for the caller to read.
pub fn spawn_server(bin: &str, data_dir: &str, port: u16) -> std::process::Child {
    use std::process::{Command, Stdio};
    Command::new(bin)
        .args([
            "serve",
            "--data-dir",
            data_dir,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts")
}
