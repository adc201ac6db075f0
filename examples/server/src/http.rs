//! The HTTP shell over the pipeline (axum).

use crate::pipeline::{Origin, Pipeline, Rejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use beacon_core::{
    Analytics, Funnel, GoalsRequest, Hit, Query, QueryError, RealtimeRequest, Site, StoreError,
    ValidationContext,
};
use beacon_enrich::ClientHints;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The server's one error type: maps to a status and a JSON body, hides internals.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request broke a rule; the message names the field.
    BadRequest(String),
    /// 401: a signature did not verify.
    Unauthorized(String),
    /// 404: unknown site.
    NotFound(String),
    /// 503: at capacity, or the store cannot take it now; retry after the duration.
    Unavailable(Duration),
    /// 500: something failed inside; logged, not shown.
    Internal(String),
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Invalid(e) => ApiError::BadRequest(e.to_string()),
            Rejection::UnknownSite(s) => ApiError::NotFound(format!("site: unknown site {s:?}")),
            Rejection::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if let Some(after) = e.retry_after() {
            tracing::warn!(error = %e, "store unavailable");
            return ApiError::Unavailable(after);
        }
        match e {
            StoreError::Query(QueryError::UnknownSite(s)) | StoreError::UnknownSite(s) => {
                ApiError::NotFound(format!("site: unknown site {s:?}"))
            }
            e if e.is_client_error() => ApiError::BadRequest(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        StoreError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Unavailable(after) => {
                let secs = after.as_secs().max(1);
                let body = json!({ "error": format!("unavailable: retry in {secs} s") });
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, secs.to_string())],
                    Json(body),
                )
                    .into_response();
            }
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
    /// Every site, re-read at most every few seconds (CORS checks each request).
    sites: RwLock<(Instant, Arc<Vec<Site>>)>,
}

/// How long a provider's delivery id is remembered: Stripe retries for three days.
const DELIVERY_RETENTION: chrono::Duration = chrono::Duration::days(7);

/// How long the site list behind CORS is kept.
const SITES_FRESH_FOR: Duration = Duration::from_secs(5);

impl App {
    fn analytics(&self) -> Analytics<'_> {
        Analytics::new(self.pipeline.events.as_ref(), self.pipeline.config.as_ref())
    }

    async fn sites(&self) -> Arc<Vec<Site>> {
        {
            let (at, sites) = &*self.sites.read().unwrap_or_else(|e| e.into_inner());
            if at.elapsed() < SITES_FRESH_FOR {
                return Arc::clone(sites);
            }
        }
        match self.pipeline.config.sites().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.sites.write().unwrap_or_else(|e| e.into_inner()) =
                    (Instant::now(), Arc::clone(&fresh));
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing sites failed");
                Arc::clone(&self.sites.read().unwrap_or_else(|e| e.into_inner()).1)
            }
        }
    }
}

impl From<crate::commit::CommitError> for ApiError {
    fn from(e: crate::commit::CommitError) -> Self {
        match e {
            crate::commit::CommitError::Busy => ApiError::Unavailable(Duration::from_secs(1)),
            crate::commit::CommitError::Unavailable(m, after) => {
                tracing::warn!(error = %m, "commit deferred");
                ApiError::Unavailable(after)
            }
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
    let o = origin(app, peer, headers);
    let ctx = ValidationContext::live(app.pipeline.now());
    let mut sites = std::collections::HashMap::new();
    let mut events = Vec::with_capacity(hits.len());
    for h in hits {
        events.push(
            app.pipeline
                .prepare(h, &ctx, None, Some(&o), &mut sites)
                .await?,
        );
    }
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

fn utf8(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("body: must be UTF-8 JSON".into()))
}

async fn query(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let q = Query::from_json(utf8(&body)?)?;
    let started = Instant::now();
    let r = app.analytics().query(&q, app.pipeline.now()).await?;
    Ok(Json(r.to_json(started.elapsed().as_millis() as u64)).into_response())
}

async fn funnel(
    State(app): State<Arc<App>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let f = Funnel::from_json(utf8(&body)?)?;
    let r = app.analytics().funnel(&f, app.pipeline.now()).await?;
    Ok(Json(r.to_json()).into_response())
}

async fn goals(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req = GoalsRequest::from_json(utf8(&body)?)?;
    let r = app.analytics().goals(&req, app.pipeline.now()).await?;
    Ok(Json(r.to_json()).into_response())
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
    let config = &app.pipeline.config;
    if config.site(&site).await?.is_none() {
        return Err(ApiError::NotFound(format!("site: unknown site {site:?}")));
    }
    let secret = config
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
    // A delivery is remembered per site once what it carried is stored: one that
    // failed is taken again when the provider retries.
    let delivery = first.event_id.clone();
    if let Some(at) = config.delivery(&site, provider.as_str(), &delivery).await? {
        if now - at <= DELIVERY_RETENTION {
            tracing::info!(provider = %provider, site = %site, delivery = %delivery, "webhook replay ignored");
            return Ok(Json(json!({ "stored": 0, "duplicate": true })).into_response());
        }
    }
    let events: Vec<_> = payments.iter().map(|p| p.to_event(&site, now)).collect();
    let stored = app.committer.commit(events).await?;
    config
        .remember_delivery(&site, provider.as_str(), &delivery, now)
        .await?;
    tracing::info!(provider = %provider, site = %site, events = stored, "webhook stored");
    Ok(Json(json!({ "stored": stored })).into_response())
}

async fn health(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    let stats = app.pipeline.events.stats().await?;
    let visitors = app.pipeline.sessions.visitors().await?;
    Ok(Json(json!({
        "status": "ok",
        "events": stats.events,
        "event_heap_bytes": stats.heap_bytes,
        "session_visitors": visitors,
    })))
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
    minutes: Option<u32>,
}

/// Visitors in the last minutes (default 5), with the pages they are on and where
/// their visits came from.
async fn realtime(
    State(app): State<Arc<App>>,
    axum::extract::Query(p): axum::extract::Query<RealtimeParams>,
) -> Result<Response, ApiError> {
    let mut req = RealtimeRequest::new(p.site.to_ascii_lowercase());
    if let Some(m) = p.minutes {
        req.minutes = m;
    }
    let r = app.analytics().realtime(&req, app.pipeline.now()).await?;
    Ok(Json(r.to_json(&req.site)).into_response())
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
            let sites = app.sites().await;
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
    let committer = crate::commit::Committer::start(Arc::clone(&pipeline.events), queue);
    let app = Arc::new(App {
        pipeline,
        committer,
        trusted_proxies,
        sites: RwLock::new((Instant::now() - SITES_FRESH_FOR, Arc::new(Vec::new()))),
    });
    let upkeep = tokio::spawn(crate::upkeep(Arc::clone(&app.pipeline)));
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
    .await?;
    upkeep.abort();
    Ok(())
}
