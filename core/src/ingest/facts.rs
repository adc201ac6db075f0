//! What a request says about its client: the address (behind trusted proxies), the
//! user agent and its Client Hints. One home for reading them, for the reference
//! server, the tower layer and any ingest server built on the crates.

use std::net::IpAddr;

/// User-Agent Client Hints, as sent in `Sec-CH-UA*` request headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientHints {
    /// `Sec-CH-UA`: `"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"`.
    pub ua: Option<String>,
    /// `Sec-CH-UA-Mobile`: `?1` is true.
    pub mobile: Option<bool>,
    /// `Sec-CH-UA-Platform`: `"Windows"`.
    pub platform: Option<String>,
    /// `Sec-CH-UA-Platform-Version`: `"15.0.0"`.
    pub platform_version: Option<String>,
    /// `Sec-CH-UA-Model`: `"Pixel 7"`.
    pub model: Option<String>,
}

impl ClientHints {
    /// Whether no hint was sent.
    pub fn is_empty(&self) -> bool {
        *self == ClientHints::default()
    }

    /// The hints among a request's headers, looked up by lowercase name.
    pub fn from_headers<'h>(header: impl Fn(&str) -> Option<&'h str>) -> Self {
        let text = |name: &str| header(name).map(str::to_owned);
        ClientHints {
            ua: text("sec-ch-ua"),
            mobile: header("sec-ch-ua-mobile").map(|m| m.trim() == "?1"),
            platform: text("sec-ch-ua-platform"),
            platform_version: text("sec-ch-ua-platform-version"),
            model: text("sec-ch-ua-model"),
        }
    }
}

/// The request facts enrichment reads besides the event.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// Client address.
    pub ip: Option<IpAddr>,
    /// `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// `Sec-CH-UA*` headers.
    pub client_hints: Option<&'a ClientHints>,
    /// The hit came from the site's own server (it names the site's visitor id): a
    /// missing user agent is expected there, not a sign of a bot.
    pub server_side: bool,
}

/// The client of a live request, as its connection and headers say: these override
/// a hit's own `ip` and `user_agent` (contract section 2).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Client address.
    pub ip: Option<IpAddr>,
    /// `User-Agent` header.
    pub user_agent: Option<String>,
    /// `Sec-CH-UA*` headers.
    pub hints: ClientHints,
}

impl Origin {
    /// The client of a request from `peer` whose headers `header` looks up by
    /// lowercase name; `forwarded_for` are its `X-Forwarded-For` values in order,
    /// believed only as [`TrustedProxies::client_address`] says.
    pub fn from_headers<'h>(
        peer: IpAddr,
        header: impl Fn(&str) -> Option<&'h str>,
        forwarded_for: impl DoubleEndedIterator<Item = &'h str>,
        proxies: &TrustedProxies,
    ) -> Self {
        Origin {
            ip: Some(proxies.client_address(peer, forwarded_for)),
            user_agent: header("user-agent").map(str::to_owned),
            hints: ClientHints::from_headers(header),
        }
    }

    /// The client of an HTTP request from `peer` (feature `tower`).
    #[cfg(feature = "tower")]
    pub fn from_http(peer: IpAddr, headers: &http::HeaderMap, proxies: &TrustedProxies) -> Self {
        let forwarded_for: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Self::from_headers(
            peer,
            |name| headers.get(name).and_then(|v| v.to_str().ok()),
            forwarded_for.into_iter(),
            proxies,
        )
    }

    /// The facts enrichment reads.
    pub fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            ip: self.ip,
            user_agent: self.user_agent.as_deref(),
            client_hints: Some(&self.hints),
            server_side: false,
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed (none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpAddr>);

impl TrustedProxies {
    /// Believes the forwarded addresses that these proxies send.
    pub fn new(proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        Self(proxies.into_iter().collect())
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(ip)
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then
    /// the rightmost `X-Forwarded-For` address that is not a trusted proxy (what a
    /// client writes into the header itself is to the left of what its proxies
    /// append). If every address is trusted, the leftmost; an entry that is not an
    /// address ends the walk at the hop before it.
    pub fn client_address<'h>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'h str>,
    ) -> IpAddr {
        if !self.contains(&peer) {
            return peer;
        }
        let mut client = peer;
        let entries: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
        for entry in entries.iter().rev() {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) if self.contains(&ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => break,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let trusted = TrustedProxies::new([ip("10.0.0.1"), ip("10.0.0.2")]);
        let from = |peer: &str, xff: &[&'static str]| {
            trusted.client_address(ip(peer), xff.iter().copied())
        };
        // An untrusted peer's header is ignored.
        assert_eq!(from("203.0.113.9", &["1.2.3.4"]), ip("203.0.113.9"));
        // A client that writes its own entry cannot choose its address.
        assert_eq!(
            from("10.0.0.1", &["6.6.6.6, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        // Through two trusted proxies, across two headers.
        assert_eq!(
            from("10.0.0.1", &["6.6.6.6, 198.51.100.7", "10.0.0.2"]),
            ip("198.51.100.7")
        );
        // Only trusted hops: the leftmost; garbage ends the walk at the hop before it.
        assert_eq!(from("10.0.0.1", &["10.0.0.2"]), ip("10.0.0.2"));
        assert_eq!(
            from("10.0.0.1", &["1.2.3.4, junk, 10.0.0.2"]),
            ip("10.0.0.2")
        );
        assert_eq!(from("10.0.0.1", &[]), ip("10.0.0.1"));
    }

    #[test]
    fn hints_and_agent_come_from_the_headers() {
        let headers = [
            ("user-agent", "Mozilla/5.0"),
            ("sec-ch-ua-mobile", "?1"),
            ("sec-ch-ua-model", "\"Pixel 7\""),
        ];
        let o = Origin::from_headers(
            ip("203.0.113.9"),
            |n| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| *v),
            std::iter::empty(),
            &TrustedProxies::default(),
        );
        assert_eq!(o.ip, Some(ip("203.0.113.9")));
        assert_eq!(o.user_agent.as_deref(), Some("Mozilla/5.0"));
        assert_eq!(o.hints.mobile, Some(true));
        assert_eq!(o.hints.model.as_deref(), Some("\"Pixel 7\""));
        assert!(o.hints.platform.is_none());
    }
}
