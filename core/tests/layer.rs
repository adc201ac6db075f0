//! The tower layer (feature `tower`): which requests become page views, who the
//! visitor is, and the tracker a handler finds in the request.
#![cfg(feature = "tower")]

use beacon_core::backend::{KindSet, ScanRequest};
use beacon_core::{EventStore, MemoryStore, Pipeline, Site, TrackLayer, Tracker, TrustedProxies};
use futures_util::StreamExt;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tower::{Layer, Service, ServiceExt};

const SITE: &str = "example.com";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

type Req = http::Request<String>;
type Resp = http::Response<String>;

/// An app: `/missing` is a 404, `*.json` answers JSON, `/signup` records an event
/// through the request's tracker, everything else is an HTML page.
async fn app(req: Req) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/signup" {
        let tracker = req.extensions().get::<Tracker>().expect("a tracker");
        tracker.event("signup", [("plan", "pro")]).unwrap();
    }
    let (status, ctype) = match path.as_str() {
        "/missing" => (404, "text/html"),
        p if p.ends_with("data") => (200, "application/json"),
        _ => (200, "text/html; charset=utf-8"),
    };
    Ok(http::Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(String::new())
        .unwrap())
}

struct Setup {
    store: Arc<MemoryStore>,
    pipeline: Pipeline,
    tracker: Tracker,
}

async fn setup() -> Setup {
    let store = Arc::new(MemoryStore::new());
    store.put_site_sync(Site::new(SITE)).unwrap();
    let pipeline = Pipeline::builder(Arc::clone(&store)).build().unwrap();
    let tracker = pipeline.tracker(SITE).await.unwrap();
    Setup {
        store,
        pipeline,
        tracker,
    }
}

fn request(method: &str, path: &str, peer: &str) -> Req {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", SITE)
        .header("user-agent", UA)
        .body(String::new())
        .unwrap();
    let peer: SocketAddr = format!("{peer}:50000").parse().unwrap();
    req.extensions_mut().insert(peer);
    req
}

/// Every stored event as (kind, url path, visitor id, name).
async fn events(s: &Setup) -> Vec<(String, String, String, String)> {
    s.tracker.flush().await.unwrap();
    let req = ScanRequest::new(SITE).kinds(KindSet::ALL);
    let mut out = Vec::new();
    let mut batches = s.store.scan(&req).await.unwrap();
    while let Some(batch) = batches.next().await {
        for e in batch.unwrap() {
            out.push((
                e.kind.as_str().to_owned(),
                e.page.path.clone(),
                e.identity.visitor_id.clone(),
                e.name.as_deref().unwrap_or("").to_owned(),
            ));
        }
    }
    out.sort();
    out
}

async fn send(
    svc: &mut (impl Service<Req, Response = Resp, Error = Infallible> + Clone),
    req: Req,
) -> u16 {
    svc.ready()
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn pages_are_tracked_assets_health_checks_posts_and_errors_are_not() {
    let s = setup().await;
    let mut svc = TrackLayer::new(s.tracker.clone())
        .skip("/admin")
        .layer(tower::service_fn(app));
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/pricing?plan=pro"),
        ("GET", "/app.js"),
        ("GET", "/logo.PNG"),
        ("GET", "/healthz"),
        ("GET", "/favicon.ico"),
        ("GET", "/admin/users"),
        ("GET", "/missing"),
        ("GET", "/data"),
        ("POST", "/"),
        ("HEAD", "/"),
    ] {
        send(&mut svc, request(method, path, "203.0.113.7")).await;
    }
    let mut prefetch = request("GET", "/next", "203.0.113.7");
    prefetch
        .headers_mut()
        .insert("sec-purpose", "prefetch".parse().unwrap());
    send(&mut svc, prefetch).await;

    let seen = events(&s).await;
    let paths: Vec<&str> = seen.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(paths, ["/", "/pricing"], "{seen:?}");
    assert!(seen.iter().all(|e| e.0 == "pageview"));
    assert_eq!(seen[0].2, seen[1].2, "one visitor");
    s.pipeline.shutdown().await;
}

#[tokio::test]
async fn only_any_content_type_and_assets_widen_or_narrow_what_is_tracked() {
    let s = setup().await;
    let mut svc = TrackLayer::new(s.tracker.clone())
        .only("/docs")
        .any_content_type()
        .track_assets(true)
        .layer(tower::service_fn(app));
    for path in ["/", "/docs/a", "/docs/data", "/docs/x.css", "/blog"] {
        send(&mut svc, request("GET", path, "203.0.113.7")).await;
    }
    let seen = events(&s).await;
    let paths: Vec<&str> = seen.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(paths, ["/docs/a", "/docs/data", "/docs/x.css"], "{seen:?}");
    s.pipeline.shutdown().await;
}

#[tokio::test]
async fn the_visitor_is_the_client_behind_trusted_proxies_and_handlers_share_it() {
    let s = setup().await;
    let proxy: IpAddr = "10.0.0.1".parse().unwrap();
    let mut svc = TrackLayer::new(s.tracker.clone())
        .trusted_proxies(TrustedProxies::new([proxy]))
        .layer(tower::service_fn(app));
    // Two clients behind the proxy, and one that lies about its address.
    let via = |client: &str, path: &str| {
        let mut r = request("GET", path, "10.0.0.1");
        r.headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        r
    };
    send(&mut svc, via("198.51.100.1", "/a")).await;
    send(&mut svc, via("198.51.100.1", "/signup")).await;
    send(&mut svc, via("198.51.100.2", "/b")).await;
    let mut liar = request("GET", "/c", "198.51.100.1");
    liar.headers_mut()
        .insert("x-forwarded-for", "198.51.100.2".parse().unwrap());
    send(&mut svc, liar).await;

    let seen = events(&s).await;
    let visitor = |path: &str, kind: &str| {
        seen.iter()
            .find(|e| e.1 == path && e.0 == kind)
            .unwrap_or_else(|| panic!("{path} {kind} in {seen:?}"))
            .2
            .clone()
    };
    let first = visitor("/a", "pageview");
    assert_eq!(visitor("/signup", "pageview"), first);
    assert_eq!(visitor("/signup", "custom"), first, "the handler's event");
    assert_eq!(
        visitor("/c", "pageview"),
        first,
        "the untrusted header is ignored"
    );
    assert_ne!(visitor("/b", "pageview"), first);
    assert_eq!(seen.len(), 5, "{seen:?}");
    s.pipeline.shutdown().await;
}
