//! Network classification: data-centre and VPN ranges and ASNs from the embedded
//! lists, and the visitor type (business, consumer, hosting, bot, privacy).

use crate::geo::GeoFacts;
use beacon_core::{Text, VisitorType};
use std::collections::HashSet;
use std::net::IpAddr;

/// Sorted, merged inclusive ranges of addresses (IPv4 mapped into IPv6 space).
#[derive(Debug, Clone, Default)]
struct RangeSet(Vec<(u128, u128)>);

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl RangeSet {
    fn from_ranges(mut v: Vec<(u128, u128)>) -> Self {
        v.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Self(out)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let k = key(ip);
        let i = self.0.partition_point(|r| r.0 <= k);
        i > 0 && self.0[i - 1].1 >= k
    }
}

/// Parses `a.b.c.d/n` or `x::/n` into an inclusive range.
fn cidr(line: &str) -> Option<(u128, u128)> {
    let (addr, len) = line.trim().split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    let (start, bits) = match ip {
        IpAddr::V4(_) => (key(ip), len.checked_add(96)?),
        IpAddr::V6(_) => (key(ip), len),
    };
    if bits > 128 {
        return None;
    }
    let host_bits = 128 - bits;
    let mask = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    Some((start & !mask, (start & !mask) | mask))
}

fn asns(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.lines().filter_map(|l| {
        let first = l.split(['#', ',']).next()?.trim();
        first.trim_start_matches("AS").trim().parse().ok()
    })
}

/// What the network step concludes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkVerdict {
    /// Visitor type.
    pub visitor_type: Option<VisitorType>,
    /// VPN exit.
    pub is_vpn: bool,
    /// Proxy (or Tor).
    pub is_proxy: bool,
    /// Hosting / data-centre network.
    pub is_hosting: bool,
    /// The company, for business networks only.
    pub company: Option<Text>,
    /// The company's domain, for business networks only.
    pub company_domain: Option<Text>,
}

/// Words in an organisation's name that mark a consumer access provider, not a company.
const ISP_WORDS: [&str; 22] = [
    "telecom",
    "telekom",
    "communications",
    "broadband",
    "cable",
    "mobile",
    "wireless",
    "internet",
    "telefonica",
    "vodafone",
    "comcast",
    "verizon",
    "at&t",
    "orange",
    "isp",
    "networks",
    "fiber",
    "fibre",
    "dsl",
    "cellular",
    "telco",
    "net ",
];

/// Data-centre and VPN knowledge; built once, shared across threads.
#[derive(Debug, Clone)]
pub struct NetworkClassifier {
    datacenter: RangeSet,
    vpn: RangeSet,
    hosting_asns: HashSet<u32>,
    vpn_asns: HashSet<u32>,
}

impl NetworkClassifier {
    /// The classifier over the embedded lists (X4BNet lists_vpn, ipcat, bad-asn-list; MIT).
    pub fn embedded() -> Self {
        let mut dc: Vec<(u128, u128)> = [
            include_str!("../data/x4bnet-datacenter-ipv4.txt"),
            include_str!("../data/x4bnet-datacenter-ipv6.txt"),
        ]
        .iter()
        .flat_map(|t| t.lines().filter_map(cidr))
        .collect();
        for line in include_str!("../data/ipcat-datacenters.csv").lines() {
            let mut cols = line.split(',');
            if let (Some(Ok(a)), Some(Ok(b))) = (
                cols.next().map(str::parse::<IpAddr>),
                cols.next().map(str::parse::<IpAddr>),
            ) {
                dc.push((key(a), key(b)));
            }
        }
        let vpn: Vec<(u128, u128)> = [
            include_str!("../data/x4bnet-vpn-ipv4.txt"),
            include_str!("../data/x4bnet-vpn-ipv6.txt"),
        ]
        .iter()
        .flat_map(|t| t.lines().filter_map(cidr))
        .collect();
        let hosting_asns = asns(include_str!("../data/bad-asn-list.csv"))
            .chain(asns(include_str!("../data/x4bnet-datacenter-asn.txt")))
            .collect();
        let vpn_asns = asns(include_str!("../data/x4bnet-vpn-asn.txt")).collect();
        Self {
            datacenter: RangeSet::from_ranges(dc),
            vpn: RangeSet::from_ranges(vpn),
            hosting_asns,
            vpn_asns,
        }
    }

    /// Whether `ip` is in a listed data-centre range.
    pub fn is_datacenter(&self, ip: IpAddr) -> bool {
        self.datacenter.contains(ip)
    }

    /// Classifies the request's network. `is_bot` comes from the user agent.
    pub fn classify(&self, ip: Option<IpAddr>, geo: &GeoFacts, is_bot: bool) -> NetworkVerdict {
        let asn = geo.asn;
        let is_vpn = geo.is_vpn
            || ip.is_some_and(|ip| self.vpn.contains(ip))
            || asn.is_some_and(|a| self.vpn_asns.contains(&a));
        let is_proxy = geo.is_proxy || geo.is_tor;
        let is_hosting = geo.is_hosting
            || geo.user_type.as_deref() == Some("hosting")
            || ip.is_some_and(|ip| self.datacenter.contains(ip))
            || asn.is_some_and(|a| self.hosting_asns.contains(&a));
        let mut v = NetworkVerdict {
            is_vpn,
            is_proxy,
            is_hosting,
            ..NetworkVerdict::default()
        };
        v.visitor_type = if is_bot {
            Some(VisitorType::Bot)
        } else if is_vpn || is_proxy || geo.is_anonymous {
            Some(VisitorType::Privacy)
        } else if is_hosting {
            Some(VisitorType::Hosting)
        } else if let Some(t) = geo.user_type.as_deref() {
            // MaxMind's user types (Enterprise / Insights).
            match t {
                "business" | "government" | "military" | "college" | "school" | "library" => {
                    Some(VisitorType::Business)
                }
                _ => Some(VisitorType::Consumer),
            }
        } else if geo.connection_type.as_deref() == Some("Corporate") {
            Some(VisitorType::Business)
        } else {
            // Only an ASN or ISP name: access providers are consumers; other organisations
            // that announce their own address space are companies.
            let org = geo
                .organization
                .as_deref()
                .or(geo.asn_organization.as_deref())
                .or(geo.isp.as_deref());
            org.map(|o| {
                let mut lower = o.to_ascii_lowercase();
                lower.push(' ');
                let isp_named = geo.isp.is_some()
                    && geo
                        .organization
                        .as_deref()
                        .is_none_or(|org| Some(org) == geo.isp.as_deref());
                if isp_named || ISP_WORDS.iter().any(|w| lower.contains(w)) {
                    VisitorType::Consumer
                } else {
                    VisitorType::Business
                }
            })
        };
        if v.visitor_type == Some(VisitorType::Business) {
            v.company = geo
                .organization
                .clone()
                .or_else(|| geo.asn_organization.clone());
            v.company_domain = geo.domain.clone();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_types() {
        let n = NetworkClassifier::embedded();
        // 3.0.0.1 is Amazon AWS in ipcat.
        assert!(n.is_datacenter("3.0.0.1".parse().unwrap()));
        assert!(!n.is_datacenter("192.168.1.1".parse().unwrap()));
        let hosting = n.classify(
            Some("3.0.0.1".parse().unwrap()),
            &GeoFacts::default(),
            false,
        );
        assert_eq!(
            (hosting.visitor_type, hosting.is_hosting, hosting.company),
            (Some(VisitorType::Hosting), true, None)
        );
        let isp = GeoFacts {
            asn: Some(64_500),
            asn_organization: Some("Example Broadband Ltd".into()),
            ..GeoFacts::default()
        };
        assert_eq!(
            n.classify(None, &isp, false).visitor_type,
            Some(VisitorType::Consumer)
        );
        let corp = GeoFacts {
            asn: Some(64_501),
            asn_organization: Some("Acme Corporation".into()),
            ..GeoFacts::default()
        };
        let v = n.classify(None, &corp, false);
        assert_eq!(
            (v.visitor_type, v.company.as_deref()),
            (Some(VisitorType::Business), Some("Acme Corporation"))
        );
        let vpn = GeoFacts {
            is_vpn: true,
            ..GeoFacts::default()
        };
        assert_eq!(
            n.classify(None, &vpn, false).visitor_type,
            Some(VisitorType::Privacy)
        );
        assert_eq!(
            n.classify(None, &corp, true).visitor_type,
            Some(VisitorType::Bot)
        );
        assert_eq!(cidr("10.0.0.0/8").map(|(a, b)| b - a), Some((1 << 24) - 1));
    }
}
