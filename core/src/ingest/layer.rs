//! Server-side tracking for tower and axum apps (feature `tower`): a page view for
//! each matching request, no script needed.

use super::{Origin, Tracker, TrustedProxies};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

type PeerFn = dyn Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync;

/// Paths never tracked: health checks and files robots and browsers fetch by
/// themselves.
const UNTRACKED_PATHS: &[&str] = &[
    "/healthz",
    "/health",
    "/livez",
    "/readyz",
    "/ready",
    "/metrics",
    "/favicon.ico",
    "/robots.txt",
    "/sitemap.xml",
    "/.well-known/",
];

/// File extensions of assets (not pages).
const ASSET_EXTENSIONS: &[&str] = &[
    "css",
    "js",
    "mjs",
    "map",
    "json",
    "xml",
    "txt",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "svg",
    "webp",
    "avif",
    "ico",
    "bmp",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "eot",
    "mp4",
    "webm",
    "mp3",
    "ogg",
    "wav",
    "wasm",
    "pdf",
    "zip",
    "gz",
    "br",
    "webmanifest",
];

/// A tower [`Layer`](tower_layer::Layer) that records a page view for each request
/// that matches: a `GET` answered with a 2xx HTML page, whose path passes the
/// filters, that is not an asset, a health check or a prefetch. The visitor is the
/// request's client (the connection's address, or the rightmost untrusted
/// `X-Forwarded-For` address behind [trusted proxies](TrackLayer::trusted_proxies),
/// the user agent and Client Hints), identified cookieless as a page's hits are.
///
/// Every request (tracked or not) carries a [`Tracker`] for its client in its
/// extensions, so a handler records custom events for the same visitor
/// (`Extension<Tracker>` in axum).
///
/// ```
/// # #[cfg(feature = "tower")]
/// # fn layer(tracker: beacon_core::Tracker) -> beacon_core::TrackLayer {
/// use beacon_core::TrackLayer;
/// use std::net::SocketAddr;
///
/// // axum: the peer from `ConnectInfo` (`into_make_service_with_connect_info`).
/// TrackLayer::new(tracker)
///     .skip("/admin")
///     .peer_address(|ext| ext.get::<SocketAddr>().map(|a| a.ip()))
/// # }
/// ```
#[derive(Clone)]
pub struct TrackLayer {
    tracker: Tracker,
    rules: Arc<Rules>,
}

#[derive(Clone)]
struct Rules {
    only: Vec<String>,
    skip: Vec<String>,
    assets: bool,
    html_only: bool,
    proxies: TrustedProxies,
    peer: Option<Arc<PeerFn>>,
}

impl std::fmt::Debug for TrackLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackLayer")
            .field("site", &self.tracker.site())
            .field("only", &self.rules.only)
            .field("skip", &self.rules.skip)
            .finish_non_exhaustive()
    }
}

impl TrackLayer {
    /// Records page views with `tracker` (from [`crate::Pipeline::tracker`]).
    pub fn new(tracker: Tracker) -> Self {
        Self {
            tracker,
            rules: Arc::new(Rules {
                only: Vec::new(),
                skip: Vec::new(),
                assets: false,
                html_only: true,
                proxies: TrustedProxies::default(),
                peer: None,
            }),
        }
    }

    fn rules(&mut self) -> &mut Rules {
        Arc::make_mut(&mut self.rules)
    }

    /// Tracks only paths under `prefix` (may be given several times).
    pub fn only(mut self, prefix: impl Into<String>) -> Self {
        self.rules().only.push(prefix.into());
        self
    }

    /// Never tracks paths under `prefix` (may be given several times).
    pub fn skip(mut self, prefix: impl Into<String>) -> Self {
        self.rules().skip.push(prefix.into());
        self
    }

    /// Tracks requests for assets (`.css`, `.png`, ...) too.
    pub fn track_assets(mut self, on: bool) -> Self {
        self.rules().assets = on;
        self
    }

    /// Tracks successful answers of any content type, not only HTML pages.
    pub fn any_content_type(mut self) -> Self {
        self.rules().html_only = false;
        self
    }

    /// Believes the `X-Forwarded-For` these proxies send.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.rules().proxies = proxies;
        self
    }

    /// How to find the connection's peer address among a request's extensions
    /// (default: a [`SocketAddr`] or [`IpAddr`] there, as a server may insert).
    pub fn peer_address(
        mut self,
        f: impl Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    ) -> Self {
        self.rules().peer = Some(Arc::new(f));
        self
    }
}

impl<S> tower_layer::Layer<S> for TrackLayer {
    type Service = TrackService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`TrackLayer`] wraps around an app.
#[derive(Clone, Debug)]
pub struct TrackService<S> {
    inner: S,
    layer: TrackLayer,
}

impl Rules {
    fn peer(&self, ext: &http::Extensions) -> Option<IpAddr> {
        match &self.peer {
            Some(f) => f(ext),
            None => ext
                .get::<SocketAddr>()
                .map(SocketAddr::ip)
                .or_else(|| ext.get::<IpAddr>().copied()),
        }
    }

    /// Whether a request for `path` may be a page view.
    fn tracks<B>(&self, req: &http::Request<B>) -> bool {
        if req.method() != http::Method::GET {
            return false;
        }
        let path = req.uri().path();
        let h = req.headers();
        let prefetch = ["sec-purpose", "purpose", "x-moz"].iter().any(|n| {
            h.get(*n)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("prefetch") || v.contains("prerender"))
        });
        if prefetch {
            return false;
        }
        if UNTRACKED_PATHS.iter().any(|p| path.starts_with(p)) {
            return false;
        }
        if !self.only.is_empty() && !self.only.iter().any(|p| path.starts_with(p.as_str())) {
            return false;
        }
        if self.skip.iter().any(|p| path.starts_with(p.as_str())) {
            return false;
        }
        if !self.assets {
            let last = path.rsplit('/').next().unwrap_or("");
            if let Some((_, ext)) = last.rsplit_once('.') {
                if ASSET_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
                    return false;
                }
            }
        }
        true
    }
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for TrackService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let rules = &self.layer.rules;
        let track = rules.tracks(&req);
        let peer = rules.peer(req.extensions());
        let headers = req.headers();
        let origin = match peer {
            Some(peer) => Origin::from_http(peer, headers, &rules.proxies),
            // No address: the agent alone (and a trusted proxy's header, unknown here).
            None => Origin {
                ip: None,
                user_agent: headers
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                hints: super::ClientHints::from_headers(|n| {
                    headers.get(n).and_then(|v| v.to_str().ok())
                }),
            },
        };
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or(self.layer.tracker.site())
            .to_owned();
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let url = format!("https://{host}{path}");
        let referrer = headers
            .get(http::header::REFERER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let visitor = self.layer.tracker.with_origin(origin).on_page(url.clone());
        req.extensions_mut().insert(visitor.clone());
        let html_only = rules.html_only;
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            let html = resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/html"));
            if track && resp.status().is_success() && (html || !html_only) {
                if let Err(e) = visitor.pageview_from(&url, referrer.as_deref()) {
                    tracing::debug!(error = %e, url = %url, "page view not tracked");
                }
            }
            Ok(resp)
        })
    }
}
