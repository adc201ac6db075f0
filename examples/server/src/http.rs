//! The HTTP shell over the pipeline (axum).

use crate::pipeline::{Origin, Pipeline, Rejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use beacon_core::{
    Analytics, Cancel, Context, Funnel, GoalsRequest, Hit, Query, QueryError, RealtimeRequest,
    Site, StoreError, ValidationContext,
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
    /// 503: stopped after its time budget (no retry will make it cheaper).
    Stopped(String),
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
            StoreError::Query(QueryError::Stopped) => ApiError::Stopped(e.to_string()),
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
            ApiError::Stopped(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
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
    compute: Compute,
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

/// The client's address: the peer's, unless the peer is a trusted proxy; then the
/// rightmost `X-Forwarded-For` address that is not a trusted proxy (what a client
/// writes into the header itself is to the left of what its proxies append). If
/// every address is trusted, the leftmost; an entry that is not an address ends
/// the walk at the hop before it.
fn client_address<'h>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'h str>,
    trusted: &[IpAddr],
) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut client = peer;
    let entries: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
    for entry in entries.iter().rev() {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => break,
        }
    }
    client
}

fn origin(app: &App, peer: SocketAddr, headers: &HeaderMap) -> Origin {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let forwarded_for = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    Origin {
        ip: Some(client_address(
            peer.ip(),
            forwarded_for,
            &app.trusted_proxies,
        )),
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
    for (i, h) in hits.into_iter().enumerate() {
        let id = crate::pipeline::EventId::Random;
        match app
            .pipeline
            .prepare(h, &ctx, None, Some(&o), id, &mut sites)
            .await
        {
            Ok(e) => events.push(e),
            // In a batch, the error names the hit: `[1].url: ...`.
            Err(Rejection::Invalid(e)) if many => {
                return Err(ApiError::BadRequest(format!("[{i}].{e}")))
            }
            Err(Rejection::UnknownSite(s)) if many => {
                return Err(ApiError::NotFound(format!(
                    "[{i}].site: unknown site {s:?}"
                )))
            }
            Err(e) => return Err(e.into()),
        }
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

/// Where requests that read (queries, funnels, goals, realtime) run: on the
/// blocking pool, never on the async workers that serve ingest and health checks;
/// at most `slots` at a time; each within `budget`, waiting for a slot included;
/// stopped (through its [`Cancel`] flag) when the budget is spent, the client goes
/// away, or the server shuts down.
struct Compute {
    slots: Arc<tokio::sync::Semaphore>,
    budget: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Sets a request's cancel flag when dropped: a handler dropped because its client
/// went away stops its work too.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl App {
    /// Runs a read on the compute pool (see [`Compute`]).
    async fn read<T, F, Fut>(self: &Arc<Self>, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<App>, Context) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let cancel = Cancel::new();
        let _stop_when_dropped = CancelOnDrop(cancel.clone());
        let cx = Context::at(self.pipeline.now()).with_cancel(cancel.clone());
        let budget = self.compute.budget;
        let slots = Arc::clone(&self.compute.slots);
        let app = Arc::clone(self);
        let runtime = tokio::runtime::Handle::current();
        let run = async move {
            let permit = slots
                .acquire_owned()
                .await
                .map_err(|_| ApiError::Unavailable(Duration::from_secs(1)))?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                runtime.block_on(work(app, cx))
            })
            .await
            .map_err(|e| ApiError::Internal(format!("a read failed: {e}")))?
            .map_err(ApiError::from)
        };
        let mut shutdown = self.compute.shutdown.clone();
        tokio::select! {
            done = tokio::time::timeout(budget, run) => match done {
                Ok(result) => result,
                Err(_) => {
                    cancel.cancel();
                    tracing::warn!(budget_ms = budget.as_millis() as u64, "read stopped at its budget");
                    Err(ApiError::Stopped(format!(
                        "request stopped: it needed more than its {} s budget",
                        budget.as_secs_f64()
                    )))
                }
            },
            _ = shutdown.wait_for(|down| *down) => {
                cancel.cancel();
                Err(ApiError::Stopped("request stopped: the server is shutting down".into()))
            }
        }
    }
}

async fn query(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let q = Query::from_json(utf8(&body)?)?;
    let started = Instant::now();
    let r = app
        .read(move |app, cx| async move { app.analytics().query(&q, cx).await })
        .await?;
    Ok(Json(r.to_json(started.elapsed().as_millis() as u64)).into_response())
}

async fn funnel(
    State(app): State<Arc<App>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let f = Funnel::from_json(utf8(&body)?)?;
    let r = app
        .read(move |app, cx| async move { app.analytics().funnel(&f, cx).await })
        .await?;
    Ok(Json(r.to_json()).into_response())
}

async fn goals(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req = GoalsRequest::from_json(utf8(&body)?)?;
    let r = app
        .read(move |app, cx| async move { app.analytics().goals(&req, cx).await })
        .await?;
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

/// `{"status": "ok", ...}`, or while commits fail, 503 with `"status": "degraded"`
/// and the reason (cleared by the next commit that succeeds).
async fn health(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let stats = app.pipeline.events.stats().await?;
    let visitors = app.pipeline.sessions.visitors().await?;
    let mut body = json!({
        "status": "ok",
        "events": stats.events,
        "event_heap_bytes": stats.heap_bytes,
        "session_visitors": visitors,
    });
    if let Some((why, since)) = app.committer.failing() {
        body["status"] = json!("degraded");
        body["reason"] = json!(format!("commits are failing: {why}"));
        body["failing_for_s"] = json!(since.as_secs());
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    Ok(Json(body).into_response())
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
    let site = req.site.clone();
    let r = app
        .read(move |app, cx| async move { app.analytics().realtime(&req, cx).await })
        .await?;
    Ok(Json(r.to_json(&site)).into_response())
}

/// Every error is the JSON error: responses made outside the handlers (a body over
/// the limit, an unknown route or method) come as text, and are rewritten here.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let mut out = (status, Json(json!({ "error": text }))).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
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

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Requests waiting to be committed before new ones are answered 503.
    pub queue: usize,
    /// How long a read (query, funnel, goals, realtime) may take.
    pub read_budget: Duration,
    /// Reads running at once.
    pub read_slots: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
}

/// Serves until Ctrl-C or SIGTERM; whatever was acknowledged is already committed.
pub async fn serve(pipeline: Arc<Pipeline>, options: Options) -> std::io::Result<()> {
    let committer = crate::commit::Committer::start(Arc::clone(&pipeline.events), options.queue);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let app = Arc::new(App {
        pipeline,
        committer,
        trusted_proxies: options.trusted_proxies.clone(),
        compute: Compute {
            slots: Arc::new(tokio::sync::Semaphore::new(options.read_slots.max(1))),
            budget: options.read_budget,
            shutdown,
        },
        sites: RwLock::new((Instant::now() - SITES_FRESH_FOR, Arc::new(Vec::new()))),
    });
    let addr = options.addr;
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
        .layer(DefaultBodyLimit::max(256 * 1024))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), cors))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    serve_connections(listener, router, &options, stop).await;
    upkeep.abort();
    Ok(())
}

/// How long open connections are given to finish after a shutdown signal.
const DRAIN_FOR: Duration = Duration::from_secs(5);

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Accepts connections until a shutdown signal: each served by hyper with a
/// header-read timeout, at most `max_connections` at once (past that a new
/// connection is closed at once). On the signal: no new connections, reads in
/// flight are stopped (`stop`), requests in flight (ingest waiting on its commit)
/// get [`DRAIN_FOR`] to finish, then the rest are dropped.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: Router,
    options: &Options,
    stop: tokio::sync::watch::Sender<bool>,
) {
    let max_connections = options.max_connections;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(options.header_read_timeout));
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a little, never spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut signal => break,
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(peer = %peer, max_connections, "connection refused: at the connection limit");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let conn = builder
            .serve_connection(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down");
    // Reads in flight stop now; ingest in flight finishes its commit.
    let _ = stop.send(true);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_FOR) => {
            tracing::warn!(drain_s = DRAIN_FOR.as_secs(), "connections still open after the drain; closing them");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client_address;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let from = |peer: &str, xff: &[&'static str]| {
            client_address(ip(peer), xff.iter().copied(), &trusted)
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
}
