//! The HTTP shell over the pipeline (axum).

use crate::pipeline::{Origin, Pipeline, Rejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use beacon_core::{run_query, Hit, Query, SiteStore, StoreError, ValidationContext};
use beacon_enrich::ClientHints;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The server's one error type: maps to a status and a JSON body, hides internals.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request broke a rule; the message names the field.
    BadRequest(String),
    /// 401: a signature did not verify.
    Unauthorized(String),
    /// 404: unknown site.
    NotFound(String),
    /// 503: at capacity; the client should retry.
    Busy,
    /// 500: something failed inside; logged, not shown.
    Internal(String),
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Invalid(e) => ApiError::BadRequest(e.to_string()),
            Rejection::UnknownSite(s) => ApiError::NotFound(format!("site: unknown site {s:?}")),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Query(beacon_core::QueryError::UnknownSite(s))
            | StoreError::UnknownSite(s) => ApiError::NotFound(format!("site: unknown site {s:?}")),
            StoreError::Query(q) => ApiError::BadRequest(q.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: retry later".to_owned(),
            ),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

struct App {
    pipeline: Arc<Pipeline>,
    committer: crate::commit::Committer,
    trusted_proxies: Vec<IpAddr>,
    replays: beacon_attribution::ReplayGuard,
}

impl From<crate::commit::CommitError> for ApiError {
    fn from(e: crate::commit::CommitError) -> Self {
        match e {
            crate::commit::CommitError::Busy => ApiError::Busy,
            crate::commit::CommitError::Failed(m) => ApiError::Internal(m),
        }
    }
}

fn origin(app: &App, peer: SocketAddr, headers: &HeaderMap) -> Origin {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let forwarded = (app.trusted_proxies.contains(&peer.ip()))
        .then(|| header("x-forwarded-for"))
        .flatten()
        .and_then(|v| v.split(',').next().and_then(|ip| ip.trim().parse().ok()));
    Origin {
        ip: Some(forwarded.unwrap_or(peer.ip())),
        user_agent: header("user-agent"),
        hints: ClientHints {
            ua: header("sec-ch-ua"),
            mobile: header("sec-ch-ua-mobile").map(|m| m.trim() == "?1"),
            platform: header("sec-ch-ua-platform"),
            platform_version: header("sec-ch-ua-platform-version"),
            model: header("sec-ch-ua-model"),
        },
    }
}

fn hits_of(body: &[u8], many: bool) -> Result<Vec<Hit>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body: must be JSON ({e})")))?;
    let values = match (many, value) {
        (false, v) => vec![v],
        (true, Value::Array(a)) if a.len() <= 1000 => a,
        (true, Value::Array(_)) => {
            return Err(ApiError::BadRequest(
                "body: at most 1000 hits per batch".into(),
            ))
        }
        (true, _) => {
            return Err(ApiError::BadRequest(
                "body: must be a JSON array of hits".into(),
            ))
        }
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Hit::from_value(v).map_err(|e| {
                ApiError::BadRequest(if many {
                    format!("[{i}].{e}")
                } else {
                    e.to_string()
                })
            })
        })
        .collect()
}

async fn ingest(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
    many: bool,
) -> Result<Response, ApiError> {
    let hits = hits_of(body, many)?;
    // Sites created by another process since start are looked up once, then known.
    let mut checked: Vec<&str> = Vec::new();
    for site in hits.iter().filter_map(|h| h.site.as_deref()) {
        if !checked.contains(&site) {
            app.pipeline.store.site(&site.to_ascii_lowercase()).await?;
            checked.push(site);
        }
    }
    let o = origin(app, peer, headers);
    let ctx = ValidationContext::live(app.pipeline.now());
    let mut sites = std::collections::HashMap::new();
    let events = hits
        .into_iter()
        .map(|h| app.pipeline.prepare(h, &ctx, None, Some(&o), &mut sites))
        .collect::<Result<Vec<_>, _>>()?;
    let n = events.len();
    app.committer.commit(events).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": n }))).into_response())
}

async fn event(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    ingest(&app, peer, &headers, &body, false).await
}

async fn events(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    ingest(&app, peer, &headers, &body, true).await
}

async fn query(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("body: must be UTF-8 JSON".into()))?;
    let q = Query::from_json(text).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let started = std::time::Instant::now();
    let store = app.pipeline.store.as_ref();
    let r = if q.attribution.is_some() {
        beacon_attribution::attribute(store, &q, app.pipeline.now()).await?
    } else {
        run_query(store, &q, app.pipeline.now()).await?
    };
    Ok(Json(r.to_json(started.elapsed().as_millis() as u64)).into_response())
}

async fn funnel(
    State(app): State<Arc<App>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("body: must be UTF-8 JSON".into()))?;
    let f = beacon_attribution::Funnel::from_json(text)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    match beacon_attribution::funnel(app.pipeline.store.as_ref(), &f, app.pipeline.now()).await {
        Ok(r) => Ok(Json(r.to_json()).into_response()),
        Err(beacon_attribution::RequestError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiError::BadRequest(e.to_string())),
    }
}

async fn goals(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("body: must be UTF-8 JSON".into()))?;
    let req = beacon_attribution::GoalsRequest::from_json(text)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    match beacon_attribution::goals(app.pipeline.store.as_ref(), &req, app.pipeline.now()).await {
        Ok(r) => Ok(Json(r.to_json()).into_response()),
        Err(beacon_attribution::RequestError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiError::BadRequest(e.to_string())),
    }
}

/// A payment provider's webhook for a site: verified with the site's secret for that
/// provider, refused on replay, stored as purchase and refund events (idempotent:
/// one order is one purchase whatever the provider resends).
async fn webhook(
    State(app): State<Arc<App>>,
    axum::extract::Path((provider, site)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    use beacon_attribution::{parse_payments, Headers, Provider, WebhookError, WebhookVerifier};
    let provider = Provider::parse(&provider).ok_or_else(|| {
        ApiError::NotFound(format!(
            "provider: {provider:?} is not stripe, lemonsqueezy, polar or shopify"
        ))
    })?;
    let site = site.to_ascii_lowercase();
    let store = &app.pipeline.store;
    if store.site(&site).await?.is_none() {
        return Err(ApiError::NotFound(format!("site: unknown site {site:?}")));
    }
    let secret = store
        .webhook_secret(&site, provider.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("no {provider} webhook secret is set for {site}"))
        })?;
    let h = Headers::from_pairs(
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))),
    );
    let now = app.pipeline.now();
    let refused = |e: WebhookError| match e {
        WebhookError::BadSignature(_) | WebhookError::StaleTimestamp { .. } => {
            ApiError::Unauthorized(e.to_string())
        }
        other => ApiError::BadRequest(other.to_string()),
    };
    WebhookVerifier::new(provider, secret)
        .verify(&h, &body, now)
        .map_err(refused)?;
    let payments = parse_payments(provider, &h, &body).map_err(refused)?;
    let Some(first) = payments.first() else {
        return Ok(Json(json!({ "stored": 0 })).into_response());
    };
    if let Err(e) = app.replays.check(provider, &first.event_id, now) {
        tracing::info!(provider = %provider, site = %site, error = %e, "webhook replay ignored");
        return Ok(Json(json!({ "stored": 0, "duplicate": true })).into_response());
    }
    let events: Vec<_> = payments.iter().map(|p| p.to_event(&site, now)).collect();
    let n = events.len();
    app.committer.commit(events).await?;
    tracing::info!(provider = %provider, site = %site, events = n, "webhook stored");
    Ok(Json(json!({ "stored": n })).into_response())
}

async fn health(State(app): State<Arc<App>>) -> Json<Value> {
    let usage = app.pipeline.store.memory().memory_usage();
    Json(json!({
        "status": "ok",
        "events": usage.events,
        "event_heap_bytes": usage.heap_bytes,
    }))
}

/// The tracking script (minified; see assets/README.md).
async fn script() -> Response {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../assets/script.js"),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct RealtimeParams {
    site: String,
}

/// Visitors in the last five minutes, with the pages they are on and where they came from.
async fn realtime(
    State(app): State<Arc<App>>,
    axum::extract::Query(p): axum::extract::Query<RealtimeParams>,
) -> Result<Response, ApiError> {
    use beacon_core::EventStore;
    let store = &app.pipeline.store;
    if store.site(&p.site).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "site: unknown site {:?}",
            p.site
        )));
    }
    let now = app.pipeline.now();
    let events = store
        .scan(&p.site, Some(now - chrono::Duration::minutes(5)), None)
        .await?;
    let mut visitors = std::collections::BTreeSet::new();
    let mut pages: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        Default::default();
    let mut sources: std::collections::BTreeMap<Option<&str>, std::collections::BTreeSet<&str>> =
        Default::default();
    for e in events.iter().filter(|e| !e.is_bot()) {
        let v = e.identity.visitor_id.as_str();
        visitors.insert(v);
        if e.kind == beacon_core::EventKind::Pageview {
            pages.entry(e.page.path.as_str()).or_default().insert(v);
        }
        sources
            .entry(e.acquisition.source.as_deref())
            .or_default()
            .insert(v);
    }
    let top = |m: Vec<(Value, usize)>| {
        let mut m = m;
        m.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
        });
        m.truncate(10);
        m
    };
    let pages = top(pages
        .into_iter()
        .map(|(k, v)| (json!(k), v.len()))
        .collect());
    let sources = top(sources
        .into_iter()
        .map(|(k, v)| (json!(k), v.len()))
        .collect());
    Ok(Json(json!({
        "site": p.site,
        "visitors": visitors.len(),
        "pages": pages.into_iter().map(|(p, n)| json!({"page": p, "visitors": n})).collect::<Vec<_>>(),
        "sources": sources.into_iter().map(|(s, n)| json!({"source": s, "visitors": n})).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// CORS for the sites' own pages: the Origin is echoed when its host is a known
/// site or a subdomain of one; preflights are answered here.
async fn cors(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let origin = req
        .headers()
        .get(axum::http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let allowed = match &origin {
        Some(o) => {
            let host = o
                .split("://")
                .nth(1)
                .unwrap_or("")
                .split([':', '/'])
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            let sites = app.pipeline.store.memory().sites_sync();
            sites.iter().any(|s| {
                host == s.domain
                    || host.ends_with(&format!(".{}", s.domain))
                    || s.extra_hosts.contains(&host)
            })
        }
        None => false,
    };
    let preflight = req.method() == axum::http::Method::OPTIONS;
    let mut resp = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    if let (true, Some(o)) = (allowed, origin) {
        let h = resp.headers_mut();
        if let Ok(v) = o.parse() {
            h.insert(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(
            axum::http::header::VARY,
            axum::http::HeaderValue::from_static("Origin"),
        );
        if preflight {
            h.insert(
                axum::http::header::ACCESS_CONTROL_ALLOW_METHODS,
                axum::http::HeaderValue::from_static("POST, OPTIONS"),
            );
            h.insert(
                axum::http::header::ACCESS_CONTROL_ALLOW_HEADERS,
                axum::http::HeaderValue::from_static("Content-Type"),
            );
            h.insert(
                axum::http::header::ACCESS_CONTROL_MAX_AGE,
                axum::http::HeaderValue::from_static("86400"),
            );
        }
    }
    resp
}

/// Serves until Ctrl-C or SIGTERM; whatever was acknowledged is already committed.
pub async fn serve(
    pipeline: Arc<Pipeline>,
    addr: SocketAddr,
    trusted_proxies: Vec<IpAddr>,
    queue: usize,
) -> std::io::Result<()> {
    let committer = crate::commit::Committer::start(Arc::clone(&pipeline), queue);
    let app = Arc::new(App {
        pipeline,
        committer,
        trusted_proxies,
        replays: beacon_attribution::ReplayGuard::default(),
    });
    let router = Router::new()
        .route(
            "/api/event",
            post(event).options(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/api/events",
            post(events).options(|| async { StatusCode::NO_CONTENT }),
        )
        .route("/api/v1/query", post(query))
        .route("/api/v1/funnel", post(funnel))
        .route("/api/v1/goals", post(goals))
        .route("/api/v1/webhooks/{provider}/{site}", post(webhook))
        .route("/api/v1/realtime", get(realtime))
        .route("/script.js", get(script))
        .route("/healthz", get(health))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), cors))
        .layer(DefaultBodyLimit::max(256 * 1024))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        tracing::info!("shutting down");
    })
    .await
}
