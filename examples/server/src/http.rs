//! Routing: the HTTP API over the library's pipeline, reads and webhook flow, and
//! the one error type that maps to responses.

use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use beacon_attribution::{receive_webhook, Headers, Provider, ReceiveError};
use beacon_core::{
    authenticate, authorize, check_ingest, hits_from_json, login, url_host, AccessError, ApiToken,
    Funnel, GoalsRequest, HookEvent, IngestError, LoginSession, Note, Origin, Pipeline, Query,
    QueryError, ReadError, ReadPool, RealtimeRequest, Scope, Shape, Site, StoreError, TokenUsage,
    TrustedProxies, Webhook, WebhookError,
};
use serde_json::json;
use std::net::SocketAddr;

#[path = "dashboard.rs"]
mod dashboard;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server's one error type: maps to a status and a JSON body, hides internals.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request broke a rule; the message names the field.
    BadRequest(String),
    /// 401: no working credential, or a signature did not verify.
    Unauthorized(String),
    /// 403: the credential may not do this (a read token asked to write).
    Forbidden(String),
    /// 404: unknown site.
    NotFound(String),
    /// 429: the plan's monthly events are used up; retry when the month ends.
    QuotaExceeded(String, Duration),
    /// 503: at capacity, or the store cannot take it now; retry after the duration.
    Unavailable(Duration),
    /// 503: stopped after its time budget (no retry will make it cheaper).
    Stopped(String),
    /// 500: something failed inside; logged, not shown.
    Internal(String),
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

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Invalid { .. } => ApiError::BadRequest(e.to_string()),
            IngestError::UnknownSite { .. } => ApiError::NotFound(e.to_string()),
            IngestError::QuotaExceeded { retry_after, .. } => {
                ApiError::QuotaExceeded(e.to_string(), retry_after)
            }
            IngestError::Store(e) => e.into(),
            e => match e.retry_after() {
                Some(after) => {
                    tracing::warn!(error = %e, "ingest deferred");
                    ApiError::Unavailable(after)
                }
                None if matches!(e, IngestError::ShutDown) => {
                    ApiError::Unavailable(Duration::from_secs(1))
                }
                None => ApiError::Internal(e.to_string()),
            },
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Store(e) => e.into(),
            e => ApiError::Stopped(e.to_string()),
        }
    }
}

impl From<ReceiveError> for ApiError {
    fn from(e: ReceiveError) -> Self {
        match e {
            ReceiveError::UnknownSite(_) | ReceiveError::NoSecret { .. } => {
                ApiError::NotFound(e.to_string())
            }
            ReceiveError::Unauthorized(_) => ApiError::Unauthorized(e.to_string()),
            ReceiveError::Malformed(_) => ApiError::BadRequest(e.to_string()),
            ReceiveError::Ingest(e) => e.into(),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
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
            ApiError::QuotaExceeded(m, after) => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(
                        axum::http::header::RETRY_AFTER,
                        after.as_secs().max(1).to_string(),
                    )],
                    Json(json!({ "error": m })),
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
    pipeline: Pipeline,
    reads: ReadPool,
    proxies: TrustedProxies,
    /// Whether pages on any host may send any site's hits (`--any-origin`).
    any_origin: bool,
    /// Requests per token, written to the config store every few seconds.
    usage: Arc<TokenUsage>,
}

type AppState = State<Arc<App>>;

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Unauthorized(m) => ApiError::Unauthorized(m.to_owned()),
            AccessError::Forbidden | AccessError::WrongOrigin { .. } => {
                ApiError::Forbidden(e.to_string())
            }
            AccessError::NotFound(q) => q.into(),
            AccessError::Store(s) => s.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The secret of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(name)?.strip_prefix('='))
}

/// The session cookie's name.
const SESSION_COOKIE: &str = "beacon_session";

/// What a request may do: an API token (`Authorization: Bearer ...`), or a login
/// session's cookie, whose writes must echo its CSRF token (`X-CSRF-Token`). 401
/// without a working one, 403 for a cookie write without the CSRF token.
struct Credential(ApiToken);

impl axum::extract::FromRequestParts<Arc<App>> for Credential {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let config = app.pipeline.config().as_ref();
        let now = app.pipeline.now();
        if let (None, Some(secret)) = (
            bearer(&parts.headers),
            cookie(&parts.headers, SESSION_COOKIE),
        ) {
            let expired =
                || ApiError::Unauthorized("login: the session has ended; log in again".into());
            let prefix = LoginSession::prefix_of(secret).ok_or_else(expired)?;
            let session = config
                .session(prefix)
                .await?
                .filter(|s| s.accepts(secret, now))
                .ok_or_else(expired)?;
            let safe = matches!(
                parts.method,
                axum::http::Method::GET | axum::http::Method::HEAD
            );
            if !safe {
                let given = parts
                    .headers
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !session.csrf_matches(given) {
                    return Err(ApiError::Forbidden(
                        "csrf: a write with a login session needs its X-CSRF-Token header".into(),
                    ));
                }
            }
            return Ok(Credential(session.grant()));
        }
        let token = authenticate(config, bearer(&parts.headers), now).await?;
        app.usage.record(&token, now);
        Ok(Credential(token))
    }
}

#[derive(serde::Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

/// Logs a user in: the session cookie (HttpOnly, SameSite=Strict, Secure behind
/// TLS, 30 days) and, in the body, the CSRF token its writes must send.
#[utoipa::path(
    post, path = "/api/v1/login", tag = "access",
    request_body(content = Object, description = "`{\"email\", \"password\"}`", example = json!({"email": "owner@example.com", "password": "correct horse battery"})),
    responses((status = 200, description = "Logged in: the `beacon_session` cookie is set; the body holds the CSRF token cookie writes must echo in `X-CSRF-Token`"), (status = 401, description = "Wrong e-mail address or password"))
)]
async fn login_handler(
    State(app): AppState,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: LoginBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let config = app.pipeline.config().as_ref();
    let user = login(config, &b.email, &b.password)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("login: wrong e-mail address or password".into()))?;
    let issued = LoginSession::issue(&user, &beacon_core::OsRandom, app.pipeline.now());
    config.put_session(&issued.session).await?;
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        issued.secret,
        beacon_core::SESSION_DAYS * 86_400,
        if tls { "; Secure" } else { "" }
    );
    let body = json!({
        "email": user.email, "agency": user.agency, "role": user.role,
        "csrf": issued.session.csrf, "expires": issued.session.expires,
    });
    Ok(([(axum::http::header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Ends the login session of the request's cookie.
#[utoipa::path(
    post, path = "/api/v1/logout", tag = "access",
    responses((status = 204, description = "The session ended and its cookie is cleared"))
)]
async fn logout_handler(State(app): AppState, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(prefix) = cookie(&headers, SESSION_COOKIE).and_then(LoginSession::prefix_of) {
        app.pipeline.config().end_session(prefix).await?;
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok((
        [(axum::http::header::SET_COOKIE, clear)],
        StatusCode::NO_CONTENT,
    )
        .into_response())
}

impl App {
    /// Whether `token` may read `site`: a site out of its reach answers as an
    /// unknown site does (404).
    async fn may_read(&self, token: &ApiToken, site: &str) -> Result<(), ApiError> {
        authorize(self.pipeline.config().as_ref(), token, site, Scope::Read).await?;
        Ok(())
    }

    /// Whether `token` may change `site`'s configuration (404 out of reach, 403 for
    /// a read token).
    async fn may_write(&self, token: &ApiToken, site: &str) -> Result<Site, ApiError> {
        Ok(authorize(self.pipeline.config().as_ref(), token, site, Scope::Write).await?)
    }
}

async fn ingest(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
    shape: Shape,
) -> Result<Response, ApiError> {
    let hits = hits_from_json(body, shape)?;
    // Who may send these hits: a write token, a page on the sites' own hosts, or a
    // server-side call.
    let token = match bearer(headers) {
        Some(b) => {
            Some(authenticate(app.pipeline.config().as_ref(), Some(b), app.pipeline.now()).await?)
        }
        None => None,
    };
    let from_host = if app.any_origin {
        None
    } else {
        [axum::http::header::ORIGIN, axum::http::header::REFERER]
            .iter()
            .find_map(|h| {
                headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .and_then(url_host)
            })
    };
    let sites: Vec<Option<&str>> = hits.iter().map(|h| h.site.as_deref()).collect();
    check_ingest(
        app.pipeline.config().as_ref(),
        &sites,
        token.as_ref(),
        from_host.as_deref(),
    )
    .await?;
    let origin = Origin::from_http(peer.ip(), headers, &app.proxies);
    let report = match shape {
        Shape::Batch => app.pipeline.ingest_batch(hits, Some(&origin)).await?,
        _ => match hits.into_iter().next() {
            Some(hit) => app.pipeline.ingest(hit, Some(&origin)).await?,
            None => return Err(ApiError::BadRequest("body: a hit is required".into())),
        },
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": report.accepted })),
    )
        .into_response())
}

#[utoipa::path(
    post, path = "/api/event", tag = "ingest",
    request_body(content = Object, description = "One hit (contract section 2)", example = json!({"site": "example.com", "type": "pageview", "url": "https://example.com/pricing"})),
    responses((status = 202, description = "Stored: `{\"accepted\": 1}`"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 403, description = "The page's Origin is not one of the site's hosts"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)"), (status = 429, description = "The agency's plan took its monthly events; see Retry-After"), (status = 503, description = "Busy or stopped after its time budget; see Retry-After"))
)]
async fn event(
    State(app): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    ingest(&app, peer, &headers, &body, Shape::One).await
}

#[utoipa::path(
    post, path = "/api/events", tag = "ingest",
    request_body(content = Object, description = "A JSON array of at most 1000 hits, all stored or none", example = json!([{"site": "example.com", "type": "pageview", "url": "https://example.com/"}])),
    responses((status = 202, description = "Stored: `{\"accepted\": n}`"), (status = 400, description = "A hit broke a rule: `[i].field: rule`"), (status = 403, description = "The page's Origin is not one of the sites' hosts"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)"), (status = 429, description = "The agency's plan took its monthly events"), (status = 503, description = "Busy or stopped after its time budget; see Retry-After"))
)]
async fn events(
    State(app): AppState,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    ingest(&app, peer, &headers, &body, Shape::Batch).await
}

fn utf8(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("body: must be UTF-8 JSON".into()))
}

#[utoipa::path(
    post, path = "/api/v1/query", tag = "stats",
    request_body(content = Object, description = "A query (contract section 4)", example = json!({"site": "example.com", "date_range": "30d", "metrics": ["visitors", "pageviews"], "dimensions": ["source"]})),
    responses((status = 200, description = "The results, the resolved query and the range's timeline notes"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 401, description = "No working credential"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)"), (status = 503, description = "Busy or stopped after its time budget; see Retry-After")), security(("bearer" = []), ("session" = []))
)]
async fn query(
    State(app): AppState,
    Credential(token): Credential,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let q = Query::from_json(utf8(&body)?)?;
    app.may_read(&token, &q.site).await?;
    let site = q.site.clone();
    let started = Instant::now();
    let p = app.pipeline.clone();
    let r = app
        .reads
        .run(p.now(), move |cx| async move {
            p.analytics().query(&q, cx).await
        })
        .await?;
    let mut body = r.to_json(started.elapsed().as_millis() as u64);
    // The timeline notes of the range the query resolved to.
    let day = |i: usize| {
        body["query"]["date_range"][i]
            .as_str()
            .and_then(|d| d.parse::<chrono::NaiveDate>().ok())
    };
    let (from, to) = (day(0), day(1));
    let notes = app.pipeline.config().notes(&site, from, to).await?;
    body["notes"] = serde_json::to_value(notes).unwrap_or_default();
    Ok(Json(body).into_response())
}

#[utoipa::path(
    post, path = "/api/v1/funnel", tag = "stats",
    request_body(content = Object, description = "A funnel (contract section 5)", example = json!({"site": "example.com", "date_range": "7d", "steps": [{"page": "/"}, {"goal": "Signup"}]})),
    responses((status = 200, description = "Visitors at each step and the drop-off"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 401, description = "No working credential"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)"), (status = 503, description = "Busy or stopped after its time budget; see Retry-After")), security(("bearer" = []), ("session" = []))
)]
async fn funnel(
    State(app): AppState,
    Credential(token): Credential,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let f = Funnel::from_json(utf8(&body)?)?;
    app.may_read(&token, &f.site).await?;
    let p = app.pipeline.clone();
    let r = app
        .reads
        .run(p.now(), move |cx| async move {
            p.analytics().funnel(&f, cx).await
        })
        .await?;
    Ok(Json(r.to_json()).into_response())
}

#[utoipa::path(
    post, path = "/api/v1/goals", tag = "stats",
    request_body(content = Object, description = "Goals to count (GET /api/v1/saved-goals lists the saved ones)", example = json!({"site": "example.com", "date_range": "30d", "goals": [{"name": "Signup", "page": "/welcome"}]})),
    responses((status = 200, description = "Conversions, completions, rate and value per goal"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 401, description = "No working credential"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)"), (status = 503, description = "Busy or stopped after its time budget; see Retry-After")), security(("bearer" = []), ("session" = []))
)]
async fn goals(
    State(app): AppState,
    Credential(token): Credential,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req = GoalsRequest::from_json(utf8(&body)?)?;
    app.may_read(&token, &req.site).await?;
    let p = app.pipeline.clone();
    let r = app
        .reads
        .run(p.now(), move |cx| async move {
            p.analytics().goals(&req, cx).await
        })
        .await?;
    Ok(Json(r.to_json()).into_response())
}

#[derive(serde::Deserialize)]
struct RealtimeParams {
    site: String,
    minutes: Option<u32>,
}

/// Visitors in the last minutes (default 5), with the pages they are on and where
/// their visits came from.
#[utoipa::path(
    get, path = "/api/v1/realtime", tag = "stats",
    params(("site" = String, Query, description = "The site"), ("minutes" = Option<u32>, Query, description = "The window [default 5]")),
    responses((status = 200, description = "Visitors in the last minutes"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 401, description = "No working credential"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)")), security(("bearer" = []), ("session" = []))
)]
async fn realtime(
    State(app): AppState,
    Credential(token): Credential,
    axum::extract::Query(params): axum::extract::Query<RealtimeParams>,
) -> Result<Response, ApiError> {
    let mut req = RealtimeRequest::new(params.site.to_ascii_lowercase());
    app.may_read(&token, &req.site).await?;
    if let Some(m) = params.minutes {
        req.minutes = m;
    }
    let site = req.site.clone();
    let p = app.pipeline.clone();
    let r = app
        .reads
        .run(p.now(), move |cx| async move {
            p.analytics().realtime(&req, cx).await
        })
        .await?;
    Ok(Json(r.to_json(&site)).into_response())
}

#[derive(serde::Deserialize)]
struct NotesParams {
    site: String,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
}

/// The notes of a site, by date (`from` and `to` bound the days, inclusive).
#[utoipa::path(
    get, path = "/api/v1/notes", tag = "notes",
    params(("site" = String, Query, description = "The site"), ("from" = Option<String>, Query, description = "First day (YYYY-MM-DD)"), ("to" = Option<String>, Query, description = "Last day")),
    responses((status = 200, description = "The site's notes in the range, by date"), (status = 401, description = "No working credential"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)")), security(("bearer" = []), ("session" = []))
)]
async fn list_notes(
    State(app): AppState,
    Credential(token): Credential,
    axum::extract::Query(p): axum::extract::Query<NotesParams>,
) -> Result<Response, ApiError> {
    let site = p.site.to_ascii_lowercase();
    app.may_read(&token, &site).await?;
    let notes = app.pipeline.config().notes(&site, p.from, p.to).await?;
    Ok(Json(json!({ "notes": notes })).into_response())
}

/// A note's fields as a request gives them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    site: String,
    date: Option<chrono::NaiveDate>,
    text: Option<String>,
    tags: Option<Vec<String>>,
}

fn note_body(body: &[u8]) -> Result<NoteBody, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

/// A site's outgoing webhooks (a write token: they are integrations), without
/// their secrets.
#[utoipa::path(
    get, path = "/api/v1/hooks", tag = "webhooks",
    params(("site" = String, Query, description = "The site")),
    responses((status = 200, description = "The site's outgoing webhooks (never their secrets)"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)")), security(("bearer" = []), ("session" = []))
)]
async fn list_hooks(
    State(app): AppState,
    Credential(token): Credential,
    axum::extract::Query(p): axum::extract::Query<SiteParam>,
) -> Result<Response, ApiError> {
    let site = app.may_write(&token, &p.site.to_ascii_lowercase()).await?;
    let hooks = app.pipeline.config().webhooks(Some(&site.domain)).await?;
    let hooks: Vec<serde_json::Value> = hooks.iter().map(hook_json).collect();
    Ok(Json(json!({ "hooks": hooks })).into_response())
}

/// An outgoing webhook as listings show it: never its secret.
pub(crate) fn hook_json(h: &Webhook) -> serde_json::Value {
    json!({
        "id": h.id, "site": h.site, "url": h.url, "events": h.events,
        "enabled": h.enabled, "failure_count": h.failure_count,
        "last_error": h.last_error, "last_success": h.last_success, "created": h.created,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HookBody {
    site: String,
    url: Option<String>,
    events: Option<Vec<String>>,
    enabled: Option<bool>,
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Store(s) => s.into(),
            e => ApiError::BadRequest(e.to_string()),
        }
    }
}

/// Creates an outgoing webhook (a write token): `{"site", "url", "events"}`;
/// answers it with its signing secret, shown this once.
#[utoipa::path(
    post, path = "/api/v1/hooks", tag = "webhooks",
    request_body(content = Object, description = "`events` from visitor.created, goal.completed, purchase.created [default: all]", example = json!({"site": "example.com", "url": "https://hooks.example.net/beacon", "events": ["purchase.created"]})),
    responses((status = 201, description = "The webhook with its signing secret, shown this once"), (status = 400, description = "A bad field: a URL that is not http(s) or not public, an unknown event"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)")), security(("bearer" = []), ("session" = []))
)]
async fn create_hook(
    State(app): AppState,
    Credential(token): Credential,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: HookBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let site = app.may_write(&token, &b.site.to_ascii_lowercase()).await?;
    let url = b
        .url
        .ok_or_else(|| ApiError::BadRequest("url: is required".into()))?;
    let events = HookEvent::parse_list(b.events.as_deref().unwrap_or_default())?;
    let hooks = app.pipeline.webhooks();
    let allow_private = hooks.is_some_and(|w| w.policy().allow_private);
    let hook = Webhook::new(
        &site.domain,
        &url,
        events,
        allow_private,
        &beacon_core::OsRandom,
        app.pipeline.now(),
    )?;
    app.pipeline.config().put_webhook(&hook).await?;
    if let Some(w) = hooks {
        w.reload().await?;
    }
    let mut body = hook_json(&hook);
    body["secret"] = hook.secret.clone().into();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The webhook `id` if `token` may change it (404 as for an unknown one if not).
async fn writable_hook(app: &App, token: &ApiToken, id: &str) -> Result<Webhook, ApiError> {
    let missing = || ApiError::NotFound(format!("hook: no webhook {id:?}"));
    let hook = app
        .pipeline
        .config()
        .webhook(id)
        .await?
        .ok_or_else(missing)?;
    match app.may_write(token, &hook.site).await {
        Err(ApiError::NotFound(_)) => Err(missing()),
        Err(e) => Err(e),
        Ok(_) => Ok(hook),
    }
}

/// Changes a webhook's url, events, or re-enables it (which clears its failure
/// count): `{"site", "url"?, "events"?, "enabled"?}`.
#[utoipa::path(
    put, path = "/api/v1/hooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    request_body(content = Object, description = "`enabled: true` re-enables it and clears its failure count", example = json!({"site": "example.com", "enabled": true})),
    responses((status = 200, description = "The webhook as changed"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)")), security(("bearer" = []), ("session" = []))
)]
async fn update_hook(
    State(app): AppState,
    Credential(token): Credential,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: HookBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let mut hook = writable_hook(&app, &token, &id).await?;
    if hook.site != b.site.to_ascii_lowercase() {
        return Err(ApiError::NotFound(format!("hook: no webhook {id:?}")));
    }
    let hooks = app.pipeline.webhooks();
    let allow_private = hooks.is_some_and(|w| w.policy().allow_private);
    if let Some(url) = b.url {
        beacon_core::check_url(&url, allow_private)?;
        hook.url = url;
    }
    if let Some(e) = &b.events {
        if e.is_empty() {
            return Err(ApiError::BadRequest("events: name at least one".into()));
        }
        hook.events = HookEvent::parse_list(e)?;
    }
    if let Some(on) = b.enabled {
        if on && !hook.enabled {
            hook.failure_count = 0;
        }
        hook.enabled = on;
    }
    app.pipeline.config().put_webhook(&hook).await?;
    if let Some(w) = hooks {
        w.reload().await?;
    }
    Ok(Json(hook_json(&hook)).into_response())
}

/// Removes a webhook (its pending deliveries are dropped).
#[utoipa::path(
    delete, path = "/api/v1/hooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id")),
    responses((status = 204, description = "Removed; its pending deliveries are dropped"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)")), security(("bearer" = []), ("session" = []))
)]
async fn delete_hook(
    State(app): AppState,
    Credential(token): Credential,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let hook = writable_hook(&app, &token, &id).await?;
    app.pipeline
        .config()
        .remove_webhook(&hook.site, &hook.id)
        .await?;
    if let Some(w) = app.pipeline.webhooks() {
        w.reload().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    site: String,
    visitor: String,
}

/// Erases one visitor (GDPR; a write token): `{"site", "visitor"}`; answers what
/// went from each place that held them.
#[utoipa::path(
    post, path = "/api/v1/erase", tag = "privacy",
    request_body(content = Object, description = "One visitor of a site (GDPR)", example = json!({"site": "example.com", "visitor": "visitor-id"})),
    responses((status = 200, description = "What went: stored events, session state, pending webhook deliveries"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)")), security(("bearer" = []), ("session" = []))
)]
async fn erase(
    State(app): AppState,
    Credential(token): Credential,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: EraseBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    if b.visitor.is_empty() {
        return Err(ApiError::BadRequest("visitor: must not be empty".into()));
    }
    let site = app.may_write(&token, &b.site.to_ascii_lowercase()).await?;
    let erased = app.pipeline.erase_visitor(&site.domain, &b.visitor).await?;
    tracing::info!(site = %site.domain, events = erased.events, "visitor erased");
    Ok(Json(json!({
        "site": site.domain,
        "erased": {
            "events": erased.events,
            "session_state": erased.session_state,
            "webhook_deliveries": erased.deliveries,
        }
    }))
    .into_response())
}

/// Creates a note (a write token): `{"site", "date", "text", "tags"}`.
#[utoipa::path(
    post, path = "/api/v1/notes", tag = "notes",
    request_body(content = Object, example = json!({"site": "example.com", "date": "2026-03-01", "text": "Launch", "tags": ["release"]})),
    responses((status = 201, description = "The note"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)")), security(("bearer" = []), ("session" = []))
)]
async fn create_note(
    State(app): AppState,
    Credential(token): Credential,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b = note_body(&body)?;
    let site = app.may_write(&token, &b.site.to_ascii_lowercase()).await?;
    let now = app.pipeline.now();
    let note = Note {
        id: beacon_core::backend::new_event_id(now, &beacon_core::OsRandom).to_string(),
        site: site.domain,
        date: b
            .date
            .ok_or_else(|| ApiError::BadRequest("date: is required (YYYY-MM-DD)".into()))?,
        text: b.text.unwrap_or_default(),
        tags: b.tags.unwrap_or_default(),
        created: now,
        updated: now,
    };
    app.pipeline.config().put_note(&note).await?;
    Ok((StatusCode::CREATED, Json(note)).into_response())
}

/// Changes a note's date, text or tags (a write token).
#[utoipa::path(
    put, path = "/api/v1/notes/{id}", tag = "notes",
    params(("id" = String, Path, description = "The note's id")),
    request_body(content = Object, example = json!({"site": "example.com", "text": "Launch day"})),
    responses((status = 200, description = "The note as changed"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)")), security(("bearer" = []), ("session" = []))
)]
async fn update_note(
    State(app): AppState,
    Credential(token): Credential,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b = note_body(&body)?;
    let site = app.may_write(&token, &b.site.to_ascii_lowercase()).await?;
    let config = app.pipeline.config();
    let mut note = config
        .note(&site.domain, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("note: no note {id:?}")))?;
    if let Some(d) = b.date {
        note.date = d;
    }
    if let Some(t) = b.text {
        note.text = t;
    }
    if let Some(t) = b.tags {
        note.tags = t;
    }
    note.updated = app.pipeline.now();
    config.put_note(&note).await?;
    Ok(Json(note).into_response())
}

#[derive(serde::Deserialize)]
struct SiteParam {
    site: String,
}

/// Removes a note (a write token).
#[utoipa::path(
    delete, path = "/api/v1/notes/{id}", tag = "notes",
    params(("id" = String, Path, description = "The note's id"), ("site" = String, Query, description = "Its site")),
    responses((status = 204, description = "Removed"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach (the same answer)")), security(("bearer" = []), ("session" = []))
)]
async fn delete_note(
    State(app): AppState,
    Credential(token): Credential,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(p): axum::extract::Query<SiteParam>,
) -> Result<Response, ApiError> {
    let site = app.may_write(&token, &p.site.to_ascii_lowercase()).await?;
    if !app.pipeline.config().remove_note(&site.domain, &id).await? {
        return Err(ApiError::NotFound(format!("note: no note {id:?}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The share at `slug`, if it is live and `password` opens it: an unknown, revoked
/// or closed share is the same 404.
async fn open_share(
    app: &App,
    slug: &str,
    password: Option<&str>,
) -> Result<Result<beacon_core::Share, ApiError>, ApiError> {
    let none = || ApiError::NotFound("share: no such dashboard".into());
    let Some(share) = app
        .pipeline
        .config()
        .share(slug)
        .await?
        .filter(|s| !s.revoked)
    else {
        return Ok(Err(none()));
    };
    if share.opens_with(password) {
        Ok(Ok(share))
    } else if password.is_some() {
        Ok(Err(ApiError::Unauthorized("share: wrong password".into())))
    } else {
        Ok(Err(ApiError::Unauthorized(
            "share: a password is required".into(),
        )))
    }
}

/// The metrics of the dashboard's top row, in order (the script's `TOP` list).
const TOP_ROW: [&str; 8] = [
    "visitors",
    "visits",
    "pageviews",
    "views_per_visit",
    "bounce_rate",
    "visit_duration",
    "conversions",
    "revenue",
];

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A share's page: the site's top row for the last 30 days, each number with
/// `data-metric` and `data-value` (the query API's raw value); behind a password, a
/// form that posts it; the dashboard's script draws the rest.
async fn share_page(app: &App, slug: &str, password: Option<&str>) -> Result<Response, ApiError> {
    let share = match open_share(app, slug, password).await? {
        Ok(s) => s,
        Err(ApiError::Unauthorized(why)) => {
            let form = format!(
                "<form method=post class=card><p>{}</p><label>Password <input type=password name=password autofocus></label> <button>Open</button></form>",
                html_escape(&why)
            );
            return Ok(dashboard::page(
                StatusCode::UNAUTHORIZED,
                "data-mode=\"locked\"",
                &form,
            ));
        }
        Err(e) => return Err(e),
    };
    let q =
        Query::from_value(&json!({"site": share.site, "date_range": "30d", "metrics": TOP_ROW}))?;
    let p = app.pipeline.clone();
    let r = app
        .reads
        .run(p.now(), move |cx| async move {
            p.analytics().query(&q, cx).await
        })
        .await?;
    let body = r.to_json(0);
    let values = &body["results"][0]["metrics"];
    // The top row is in the page itself (readable without the script); the
    // script draws the rest and keeps the row's attributes current.
    let mut row = String::new();
    for (i, m) in TOP_ROW.iter().enumerate() {
        let v = values
            .get(i)
            .map_or_else(|| "0".to_owned(), |v| v.to_string());
        row.push_str(&format!(
            "<div class=metric data-metric=\"{m}\" data-value=\"{}\"><span>{}</span> <b>{}</b></div>",
            html_escape(&v),
            m.replace('_', " "),
            html_escape(&v)
        ));
    }
    let attrs = format!(
        "data-mode=\"share\" data-slug=\"{}\" data-site=\"{}\" data-password=\"{}\"",
        html_escape(slug),
        html_escape(&share.site),
        html_escape(password.unwrap_or(""))
    );
    Ok(dashboard::page(
        StatusCode::OK,
        &attrs,
        &format!(
            "<h1>{} <small>last 30 days</small></h1><section class=toprow id=initial-row>{row}</section>",
            html_escape(&share.site)
        ),
    ))
}

#[utoipa::path(
    get, path = "/share/{slug}", tag = "dashboard",
    params(("slug" = String, Path, description = "The public dashboard's slug")),
    responses((status = 200, description = "The site's public read-only page (HTML; a password form when it has one)", content_type = "text/html"), (status = 404, description = "No such dashboard, or revoked"))
)]
async fn share_get(
    State(app): AppState,
    axum::extract::Path(slug): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    share_page(&app, &slug, None).await
}

#[derive(serde::Deserialize)]
struct ShareForm {
    password: String,
}

#[utoipa::path(
    post, path = "/share/{slug}", tag = "dashboard",
    params(("slug" = String, Path, description = "The public dashboard's slug")),
    request_body(content = String, description = "`password=...` (a form)", content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The page, once the password is right", content_type = "text/html"), (status = 401, description = "Wrong password"), (status = 404, description = "No such dashboard"))
)]
async fn share_post(
    State(app): AppState,
    axum::extract::Path(slug): axum::extract::Path<String>,
    axum::extract::Form(form): axum::extract::Form<ShareForm>,
) -> Result<Response, ApiError> {
    share_page(&app, &slug, Some(&form.password)).await
}

/// A query of a share's site (the dashboard's shapes: no attribution); the site is
/// the share's whatever the body says; a password in `X-Share-Password`.
#[utoipa::path(
    post, path = "/share/{slug}/query", tag = "dashboard",
    params(("slug" = String, Path, description = "The public dashboard's slug")),
    request_body(content = Object, description = "A query of the shared site (no attribution); `X-Share-Password` when it has one", example = json!({"date_range": "30d", "metrics": ["visitors"]})),
    responses((status = 200, description = "The results"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 401, description = "Wrong or missing password"), (status = 404, description = "No such dashboard"))
)]
async fn share_query(
    State(app): AppState,
    axum::extract::Path(slug): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let password = headers
        .get("x-share-password")
        .and_then(|v| v.to_str().ok());
    let share = open_share(&app, &slug, password).await??;
    let mut v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("query: must be a JSON object ({e})")))?;
    if v.get("attribution").is_some() {
        return Err(ApiError::BadRequest(
            "attribution: not available on a shared dashboard".into(),
        ));
    }
    if let Some(obj) = v.as_object_mut() {
        obj.insert("site".into(), json!(share.site));
    }
    let q = Query::from_value(&v)?;
    let p = app.pipeline.clone();
    let r = app
        .reads
        .run(p.now(), move |cx| async move {
            p.analytics().query(&q, cx).await
        })
        .await?;
    Ok(Json(r.to_json(0)).into_response())
}

/// A payment provider's webhook for a site (`beacon_attribution::receive_webhook`).
#[utoipa::path(
    post, path = "/api/v1/webhooks/{provider}/{site}", tag = "payments",
    params(("provider" = String, Path, description = "stripe, lemonsqueezy, polar or shopify"), ("site" = String, Path, description = "The site the payments belong to")),
    request_body(content = Object, description = "The provider's event, signed with the secret `beacon webhooks add` set"),
    responses((status = 200, description = "Taken: purchases and refunds stored (a repeated delivery is taken once)"), (status = 400, description = "The request broke a rule; the message names the field"), (status = 401, description = "The signature does not verify"), (status = 404, description = "Unknown site, or no secret for the provider"), (status = 503, description = "Busy or stopped after its time budget; see Retry-After"))
)]
async fn webhook(
    State(app): AppState,
    axum::extract::Path((provider, site)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let provider = Provider::parse(&provider).ok_or_else(|| {
        ApiError::NotFound(format!(
            "provider: {provider:?} is not stripe, lemonsqueezy, polar or shopify"
        ))
    })?;
    let headers = Headers::from_pairs(
        headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))),
    );
    let receipt = receive_webhook(&app.pipeline, provider, &site, &headers, &body).await?;
    let body = if receipt.duplicate {
        json!({ "stored": 0, "duplicate": true })
    } else {
        json!({ "stored": receipt.stored })
    };
    Ok(Json(body).into_response())
}

/// `{"status": "ok", ...}`, or while commits fail, 503 with `"status": "degraded"`
/// and the reason (cleared by the next commit that succeeds).
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up: what the store holds"), (status = 503, description = "Commits are failing"))
)]
async fn health(State(app): AppState) -> Result<Response, ApiError> {
    let stats = app.pipeline.events().stats().await?;
    let visitors = app.pipeline.sessions().visitors().await?;
    let mut body = json!({
        "status": "ok",
        "events": stats.events,
        "event_heap_bytes": stats.heap_bytes,
        "session_visitors": visitors,
    });
    if let Some((why, since)) = app.pipeline.commits_failing() {
        body["status"] = json!("degraded");
        body["reason"] = json!(format!("commits are failing: {why}"));
        body["failing_for_s"] = json!(since.as_secs());
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    Ok(Json(body).into_response())
}

/// The tracking script (minified; see assets/README.md).
#[utoipa::path(
    get, path = "/script.js", tag = "ingest",
    responses((status = 200, description = "The tracking script", content_type = "application/javascript"))
)]
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

/// Every error is the JSON error: responses made outside the handlers (a body over
/// the limit, an unknown route or method) come as text, and are rewritten here.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // JSON, and the pages (a share's password form), are answers of their own.
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

/// CORS for the sites' own pages: the Origin is echoed when the pipeline allows it
/// (a known site, a subdomain of one, or an extra host); preflights are answered
/// here.
async fn cors(
    State(app): AppState,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let origin = req
        .headers()
        .get(axum::http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let allowed = match &origin {
        Some(o) => app.pipeline.origin_allowed(o).await,
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
    pub trusted_proxies: TrustedProxies,
    /// How long a read (query, funnel, goals, realtime) may take.
    pub read_budget: Duration,
    /// Reads running at once.
    pub read_slots: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Whether pages on any host may send any site's hits (no Origin / Referer
    /// check).
    pub any_origin: bool,
}

/// Serves until Ctrl-C or SIGTERM; then drains, and shuts the pipeline down:
/// whatever was acknowledged is committed.
pub async fn serve(pipeline: Pipeline, options: Options) -> std::io::Result<()> {
    let reads = ReadPool::new(options.read_slots, options.read_budget);
    let app = Arc::new(App {
        pipeline: pipeline.clone(),
        reads: reads.clone(),
        proxies: options.trusted_proxies.clone(),
        any_origin: options.any_origin,
        usage: Arc::new(TokenUsage::new()),
    });
    // Token use reaches the config store every few seconds, and at the end.
    let usage_task = {
        let (usage, config) = (Arc::clone(&app.usage), Arc::clone(pipeline.config()));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(USAGE_EVERY).await;
                if let Err(e) = usage.flush(config.as_ref()).await {
                    tracing::warn!(error = %e, "recording token use failed");
                }
            }
        })
    };
    let router = routes()
        .route(
            "/api/event",
            axum::routing::options(|| async { StatusCode::NO_CONTENT }),
        )
        .route(
            "/api/events",
            axum::routing::options(|| async { StatusCode::NO_CONTENT }),
        )
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(256 * 1024))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), cors))
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(Arc::clone(&app));
    let app_usage = Arc::clone(&app.usage);
    drop(app);
    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    serve_connections(listener, router, &options, || reads.stop_all()).await;
    pipeline.shutdown().await;
    usage_task.abort();
    if let Err(e) = app_usage.flush(pipeline.config().as_ref()).await {
        tracing::warn!(error = %e, "recording token use failed");
    }
    Ok(())
}

/// Every route with its OpenAPI description: the router and the document come
/// from the same `routes!` calls, so neither can have a path the other lacks.
fn api() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(event))
        .routes(routes!(events))
        .routes(routes!(query))
        .routes(routes!(funnel))
        .routes(routes!(goals))
        .routes(routes!(realtime))
        .routes(routes!(webhook))
        .routes(routes!(login_handler))
        .routes(routes!(logout_handler))
        .routes(routes!(list_notes, create_note))
        .routes(routes!(update_note, delete_note))
        .routes(routes!(list_hooks, create_hook))
        .routes(routes!(update_hook, delete_hook))
        .routes(routes!(erase))
        .routes(routes!(share_get, share_post))
        .routes(routes!(share_query))
        .routes(routes!(script))
        .routes(routes!(health))
        .routes(routes!(dashboard::index))
        .routes(routes!(dashboard::app_js))
        .routes(routes!(dashboard::app_css))
        .routes(routes!(dashboard::me))
        .routes(routes!(dashboard::list_funnels, dashboard::save_funnel))
        .routes(routes!(dashboard::list_goals, dashboard::save_goal))
        .routes(routes!(dashboard::list_integrations))
        .routes(routes!(dashboard::list_users))
        .routes(routes!(dashboard::list_tokens))
}

/// The OpenAPI 3.1 document of the HTTP API (served at `/api/openapi.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The router of every documented route, and `/api/openapi.json`.
fn routes() -> Router<Arc<App>> {
    let (router, doc) = api().split_for_parts();
    let doc = Arc::new(doc);
    router.route(
        "/api/openapi.json",
        get(move || {
            let doc = Arc::clone(&doc);
            async move { Json(doc.as_ref().clone()) }
        }),
    )
}

/// What a path no route serves answers.
async fn no_route() -> ApiError {
    ApiError::NotFound("path: no such endpoint (the API is described at /api/openapi.json)".into())
}

/// How often token use is written.
const USAGE_EVERY: Duration = Duration::from_secs(5);

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
/// flight are stopped (`stop_reads`), requests in flight (ingest waiting on its commit)
/// get [`DRAIN_FOR`] to finish, then the rest are dropped.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: Router,
    options: &Options,
    stop_reads: impl FnOnce(),
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
    stop_reads();
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_FOR) => {
            tracing::warn!(drain_s = DRAIN_FOR.as_secs(), "connections still open after the drain; closing them");
        }
    }
}
