//! [`UrlParts`]: the parts of a URL Beacon reads (host, path, query), as the WHATWG
//! URL parser (the `url` crate) gives them, without running that parser on the
//! plain URLs that are nearly all traffic.

use std::borrow::Cow;

/// Scheme, host, path and query of an absolute URL.
///
/// [`UrlParts::parse`] agrees with the WHATWG parser on every URL (a property test
/// holds it to that): plain `http(s)` URLs of printable ASCII with an ordinary host
/// name are split directly; anything else (escapes, dot segments, IP or
/// internationalised hosts, user info, odd ports, spaces, non-ASCII) goes through
/// the `url` crate.
///
/// ```
/// use beacon_core::backend::UrlParts;
/// let u = UrlParts::parse("https://Example.com/pricing?utm_source=news#top").unwrap();
/// assert_eq!((u.scheme.as_ref(), u.host.as_deref(), u.path.as_ref()), ("https", Some("example.com"), "/pricing"));
/// let pairs: Vec<_> = u.query_pairs().collect();
/// assert_eq!(pairs, [("utm_source".into(), "news".into())]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// Scheme, lower case (`https`).
    pub scheme: Cow<'a, str>,
    /// Host, lower case; `None` for URLs without one (`mailto:`).
    pub host: Option<Cow<'a, str>>,
    /// Path (`/` when the URL has none), without query or fragment.
    pub path: Cow<'a, str>,
    /// Query string without the `?`. Percent-escapes may differ from the WHATWG
    /// serialisation; [`UrlParts::query_pairs`] decodes to the same pairs either way.
    pub query: Option<Cow<'a, str>>,
}

impl<'a> UrlParts<'a> {
    /// Splits `raw`, or says why it is not an absolute URL (the `url` crate's error).
    pub fn parse(raw: &'a str) -> Result<Self, url::ParseError> {
        if let Some(parts) = plain(raw) {
            return Ok(parts);
        }
        let u = url::Url::parse(raw)?;
        Ok(UrlParts {
            scheme: Cow::Owned(u.scheme().to_owned()),
            host: u.host_str().map(|h| Cow::Owned(h.to_ascii_lowercase())),
            path: Cow::Owned(u.path().to_owned()),
            query: u.query().map(|q| Cow::Owned(q.to_owned())),
        })
    }

    /// The decoded `application/x-www-form-urlencoded` pairs of the query, as the
    /// `form_urlencoded` decoder gives them; a pair with no `%` and no `+` (nearly
    /// all of them) is borrowed without running the decoder.
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        form_pairs(self.query.as_deref().unwrap_or(""))
    }
}

fn form_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            if pair.bytes().any(|b| b == b'%' || b == b'+') {
                // The decoder yields exactly one item for a non-empty input without `&`.
                url::form_urlencoded::parse(pair.as_bytes())
                    .next()
                    .unwrap_or_default()
            } else {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (Cow::Borrowed(k), Cow::Borrowed(v))
            }
        })
}

/// Bytes a plain path may hold: those the WHATWG parser leaves as they are.
fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

/// The direct split of a plain `http(s)` URL, or `None` to leave it to the full parser.
///
/// One pass over each part's bytes (a hit's URL is read twice an event, by
/// validation and by enrichment; searching it char by char for each separator was
/// 1.7% of an import): the authority up to the first `/`, `?` or `#`, checked as
/// it is split; the path checked up to the first `?` or `#`; the rest printable.
fn plain(raw: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = if let Some(r) = raw.strip_prefix("https://") {
        ("https", r)
    } else {
        ("http", raw.strip_prefix("http://")?)
    };
    let bytes = rest.as_bytes();
    let end = bytes
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(bytes.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = match authority.bytes().position(|b| b == b':') {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    };
    if let Some(p) = port {
        let valid = (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65_535);
        if !valid {
            return None;
        }
    }
    // An ordinary host name: non-empty labels of letters, digits and hyphens, not
    // punycode, and whose last label does not start with a digit (`127.1`, `0x7f.1`
    // would be read as IPv4 addresses). Its other bytes are printable ASCII then.
    let h = host.as_bytes();
    let (mut label, mut last, mut upper) = (0, 0, false);
    for i in 0..=h.len() {
        match h.get(i) {
            None | Some(b'.') => {
                let l = &h[label..i];
                if l.is_empty() || l.starts_with(b"xn--") {
                    return None;
                }
                last = label;
                label = i + 1;
            }
            Some(&b) if b.is_ascii_alphanumeric() || b == b'-' => {
                upper |= b.is_ascii_uppercase();
            }
            Some(_) => return None,
        }
    }
    if h[last].is_ascii_digit() {
        return None;
    }
    let host = if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    // The path: bytes the parser leaves as they are, and no dot segment.
    let t = tail.as_bytes();
    let mut i = 0;
    while let Some(&b) = t.get(i) {
        if b == b'?' || b == b'#' {
            break;
        }
        if !path_byte(b) || (b == b'.' && i > 0 && t[i - 1] == b'/') {
            return None;
        }
        i += 1;
    }
    // The query and the fragment: printable ASCII (the parser strips tabs and
    // newlines, trims spaces and escapes everything else).
    if !t[i..].iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    let path = &tail[..i];
    let query = match t.get(i) {
        Some(b'?') => {
            let q = &tail[i + 1..];
            Some(q.find('#').map_or(q, |j| &q[..j]))
        }
        _ => None,
    };
    Some(UrlParts {
        scheme: Cow::Borrowed(scheme),
        host: Some(host),
        path: Cow::Borrowed(if path.is_empty() { "/" } else { path }),
        query: query.map(Cow::Borrowed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pairs_that_need_decoding_are_decoded() {
        let got: Vec<_> = form_pairs("a=1&&b+c=%41+x&=&d&e=%zz&f=%C3%A9").collect();
        let want: Vec<(Cow<'_, str>, Cow<'_, str>)> = vec![
            ("a".into(), "1".into()),
            ("b c".into(), "A x".into()),
            ("".into(), "".into()),
            ("d".into(), "".into()),
            ("e".into(), "%zz".into()),
            ("f".into(), "é".into()),
        ];
        assert_eq!(got, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// The direct split agrees with the form-urlencoded decoder on every query.
        #[test]
        fn pairs_agree_with_the_form_urlencoded_decoder(
            query in "([a-z_&=+%]|%[0-9A-Fa-f]{2}|utm_source|gclid|é){0,24}"
        ) {
            let fast: Vec<_> = form_pairs(&query).collect();
            let reference: Vec<_> = url::form_urlencoded::parse(query.as_bytes()).collect();
            prop_assert_eq!(fast, reference);
        }
    }

    /// Scheme, host, path and decoded query pairs.
    type Split = (String, Option<String>, String, Vec<(String, String)>);

    /// What the WHATWG parser says, in the same shape.
    fn whatwg(raw: &str) -> Option<Split> {
        let u = url::Url::parse(raw).ok()?;
        Some((
            u.scheme().to_owned(),
            u.host_str().map(str::to_ascii_lowercase),
            u.path().to_owned(),
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    fn ours(raw: &str) -> Option<Split> {
        let u = UrlParts::parse(raw).ok()?;
        Some((
            u.scheme.to_string(),
            u.host.as_deref().map(str::to_owned),
            u.path.to_string(),
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    #[test]
    fn plain_urls_split_directly_and_agree() {
        for raw in [
            "https://example.com",
            "https://Example.COM/Pricing/?utm_source=news&utm_campaign=spring+sale&x#top",
            "http://a.com:8080/x?y=%20z",
            "https://a.com?q=1",
            "https://a.com#frag",
            "https://a-b.example.co.uk/a/b;c=d/e@f:g",
        ] {
            assert!(plain(raw).is_some(), "{raw} takes the direct path");
            assert_eq!(ours(raw), whatwg(raw), "{raw}");
        }
    }

    #[test]
    fn unusual_urls_go_to_the_full_parser_and_agree() {
        for raw in [
            "https://127.1/",
            "https://0x7f.0.0.1/",
            "https://a.com/./b/../c",
            "https://a.com/%7Euser",
            "https://xn--mnchen-3ya.de/",
            "https://münchen.de/straße?q=ä",
            "https://user:pw@a.com/",
            "https://[::1]/",
            "https://a.com:99999/",
            "https://a..com/",
            " https://a.com/ x",
            "https://a.com/a\tb",
            "HTTPS://A.COM/",
            "https://a.com\\b\\c",
            "mailto:x@y.z",
            "android-app://com.example/path",
            "/relative",
            "",
        ] {
            assert_eq!(ours(raw), whatwg(raw), "{raw:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn agrees_with_the_whatwg_parser(
            scheme in "(https?|HTTP|ftp|ws)://",
            host in "[a-zA-Z0-9.\\-_:@%\\[\\]x]{0,14}",
            rest in "[/?#a-zA-Z0-9.%+=&_~\\-\"'<>`{}|^ \\\\\t;:@,!$()*é]{0,30}",
        ) {
            let raw = format!("{scheme}{host}{rest}");
            prop_assert_eq!(ours(&raw), whatwg(&raw), "{:?}", raw);
        }

        #[test]
        fn never_panics(raw in "\\PC{0,60}") {
            let _ = UrlParts::parse(&raw);
        }
    }
}
