//! The dashboard: its page and assets (embedded, no build step, no CDN), and the
//! few API calls it needs beyond the query API (who is asking and which sites
//! they reach, saved funnels, the agency's users and tokens for settings).

use super::{ApiError, App, AppState, Credential};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use beacon_core::{ApiToken, Reach, Role, SavedFunnel, Scope};
use serde_json::json;

/// The page's HTML: the app fills `<main>`; a share's page says which share.
const INDEX: &str = include_str!("../assets/dashboard.html");
const APP_JS: &str = include_str!("../assets/dashboard.js");
const APP_CSS: &str = include_str!("../assets/dashboard.css");

/// The dashboard's page, in `mode` (`app` or `share`), with `extra` markup (a
/// share's server-rendered top row) and `attrs` on `<body>`.
pub(super) fn page(status: StatusCode, attrs: &str, extra: &str) -> Response {
    let html = INDEX
        .replace("{{BODY_ATTRS}}", attrs)
        .replace("{{INITIAL}}", extra);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

/// `GET /`: the dashboard (it asks `/api/v1/me` and shows the login form when
/// nobody is logged in).
#[utoipa::path(
    get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The dashboard's page", content_type = "text/html"))
)]
pub(super) async fn index() -> Response {
    page(StatusCode::OK, "data-mode=\"app\"", "")
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The dashboard's script.
#[utoipa::path(
    get, path = "/assets/dashboard.js", tag = "dashboard",
    responses((status = 200, description = "The dashboard's script", content_type = "application/javascript"))
)]
pub(super) async fn app_js() -> Response {
    asset("application/javascript; charset=utf-8", APP_JS)
}

/// The dashboard's style sheet.
#[utoipa::path(
    get, path = "/assets/dashboard.css", tag = "dashboard",
    responses((status = 200, description = "The dashboard's style sheet", content_type = "text/css"))
)]
pub(super) async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The login session behind a credential (`None` for an API token).
async fn session_of(
    app: &App,
    token: &ApiToken,
) -> Result<Option<beacon_core::LoginSession>, ApiError> {
    if !token.hash.is_empty() {
        return Ok(None);
    }
    Ok(app.pipeline.config().session(&token.prefix).await?)
}

/// Who is asking: their agency, role (for a login), scope, and the sites they
/// reach with each site's time zone and currency.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "access",
    responses((status = 200, description = "The credential's agency, role, scope and sites"), (status = 401, description = "No working credential")),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn me(
    axum::extract::State(app): AppState,
    Credential(token): Credential,
) -> Result<Response, ApiError> {
    let session = session_of(&app, &token).await?;
    let role = session.as_ref().map(|s| s.role);
    let email = session.map(|s| s.email);
    let sites: Vec<serde_json::Value> = app
        .pipeline
        .config()
        .sites()
        .await?
        .into_iter()
        .filter(|s| token.reaches(s))
        .map(|s| json!({"domain": s.domain, "timezone": s.timezone.name(), "currency": s.currency.code()}))
        .collect();
    Ok(Json(json!({
        "agency": token.agency,
        "email": email,
        "role": role,
        "scope": token.scope,
        "sites": sites,
    }))
    .into_response())
}

#[derive(serde::Deserialize)]
pub(super) struct SiteParam {
    site: String,
}

/// A site's saved funnels.
#[utoipa::path(
    get, path = "/api/v1/funnels", tag = "stats",
    params(("site" = String, Query, description = "The site")),
    responses((status = 200, description = "The site's saved funnels (name, steps, window)"), (status = 401, description = "No working credential"), (status = 404, description = "Unknown site, or one the credential may not reach")),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn list_funnels(
    axum::extract::State(app): AppState,
    Credential(token): Credential,
    axum::extract::Query(p): axum::extract::Query<SiteParam>,
) -> Result<Response, ApiError> {
    let site = p.site.to_ascii_lowercase();
    app.may_read(&token, &site).await?;
    let funnels = app.pipeline.config().funnels(&site).await?;
    let funnels: Vec<serde_json::Value> = funnels.iter().map(SavedFunnel::to_json).collect();
    Ok(Json(json!({ "funnels": funnels })).into_response())
}

#[derive(serde::Deserialize)]
pub(super) struct FunnelBody {
    site: String,
    #[serde(flatten)]
    funnel: serde_json::Value,
}

/// Saves a funnel under its name (a write credential): `{"site", "name", "steps",
/// "window"}`.
#[utoipa::path(
    post, path = "/api/v1/funnels", tag = "stats",
    request_body(content = Object, example = json!({"site": "example.com", "name": "Signup", "steps": [{"page": "/"}, {"goal": "Signup"}], "window": "24h"})),
    responses((status = 201, description = "The saved funnel"), (status = 400, description = "A bad field, named"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach")),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn save_funnel(
    axum::extract::State(app): AppState,
    Credential(token): Credential,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: FunnelBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let site = app.may_write(&token, &b.site.to_ascii_lowercase()).await?;
    let funnel = SavedFunnel::from_value(&b.funnel)?;
    app.pipeline
        .config()
        .put_funnel(&site.domain, &funnel)
        .await?;
    Ok((StatusCode::CREATED, Json(funnel.to_json())).into_response())
}

/// Whether the credential may see its agency's users and tokens: an admin's
/// login, or a write token over the whole agency.
async fn may_administer(app: &App, token: &ApiToken) -> Result<(), ApiError> {
    let allowed = match session_of(app, token).await? {
        Some(session) => session.role == Role::Admin,
        None => token.reach == Reach::Agency && token.scope == Scope::Write,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "role: users and tokens are an admin's (or an agency write token's)".into(),
        ))
    }
}

/// The agency's users (admins only).
#[utoipa::path(
    get, path = "/api/v1/users", tag = "access",
    responses((status = 200, description = "The agency's users: address, role, created"), (status = 401, description = "No working credential"), (status = 403, description = "Not an admin")),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn list_users(
    axum::extract::State(app): AppState,
    Credential(token): Credential,
) -> Result<Response, ApiError> {
    may_administer(&app, &token).await?;
    let users: Vec<serde_json::Value> = app
        .pipeline
        .config()
        .users()
        .await?
        .into_iter()
        .filter(|u| u.agency == token.agency)
        .map(|u| json!({"email": u.email, "role": u.role, "created": u.created}))
        .collect();
    Ok(Json(json!({ "users": users })).into_response())
}

/// The agency's tokens, never their secrets (admins only).
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "access",
    responses((status = 200, description = "The agency's tokens: prefix, reach, scope, expiry, last use, requests"), (status = 401, description = "No working credential"), (status = 403, description = "Not an admin")),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn list_tokens(
    axum::extract::State(app): AppState,
    Credential(token): Credential,
) -> Result<Response, ApiError> {
    may_administer(&app, &token).await?;
    let tokens: Vec<serde_json::Value> = app
        .pipeline
        .config()
        .tokens()
        .await?
        .into_iter()
        .filter(|t| t.agency == token.agency)
        .map(|t| {
            json!({"prefix": t.prefix, "reach": t.reach, "scope": t.scope, "created": t.created,
                   "expires": t.expires, "revoked": t.revoked, "last_used": t.last_used,
                   "requests": t.requests})
        })
        .collect();
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

#[derive(serde::Deserialize)]
pub(super) struct GoalBody {
    site: String,
    #[serde(flatten)]
    goal: serde_json::Value,
}

/// Saves a goal (a write credential): `{"site", "name", "page"|"event"|"attribute",
/// "value"}`; `POST /api/v1/goals` without goals counts the saved ones.
#[utoipa::path(
    post, path = "/api/v1/saved-goals", tag = "stats",
    request_body(content = Object, example = json!({"site": "example.com", "name": "Signup", "page": "/welcome"})),
    responses((status = 201, description = "The saved goal"), (status = 400, description = "A bad field, named"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach")),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn save_goal(
    axum::extract::State(app): AppState,
    Credential(token): Credential,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: GoalBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let site = app.may_write(&token, &b.site.to_ascii_lowercase()).await?;
    let goal = beacon_core::GoalDefinition::from_value(&b.goal, "")?;
    app.pipeline.config().put_goal(&site.domain, &goal).await?;
    Ok((StatusCode::CREATED, Json(goal.to_json())).into_response())
}

/// A site's saved goals.
#[utoipa::path(
    get, path = "/api/v1/saved-goals", tag = "stats",
    params(("site" = String, Query, description = "The site")),
    responses((status = 200, description = "The site's saved goals"), (status = 401, description = "No working credential"), (status = 404, description = "Unknown site, or one the credential may not reach")),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn list_goals(
    axum::extract::State(app): AppState,
    Credential(token): Credential,
    axum::extract::Query(p): axum::extract::Query<SiteParam>,
) -> Result<Response, ApiError> {
    let site = p.site.to_ascii_lowercase();
    app.may_read(&token, &site).await?;
    let goals = app.pipeline.config().goals(&site).await?;
    let goals: Vec<serde_json::Value> = goals
        .iter()
        .map(beacon_core::GoalDefinition::to_json)
        .collect();
    Ok(Json(json!({ "goals": goals })).into_response())
}

/// A site's payment integrations: the providers whose webhooks it takes (names
/// only, never the secrets), and where each provider should send them.
#[utoipa::path(
    get, path = "/api/v1/integrations", tag = "payments",
    params(("site" = String, Query, description = "The site")),
    responses((status = 200, description = "The providers with a signing secret, and their webhook paths"), (status = 401, description = "No working credential"), (status = 403, description = "The credential may only read"), (status = 404, description = "Unknown site, or one the credential may not reach")),
    security(("bearer" = []), ("session" = []))
)]
pub(super) async fn list_integrations(
    axum::extract::State(app): AppState,
    Credential(token): Credential,
    axum::extract::Query(p): axum::extract::Query<SiteParam>,
) -> Result<Response, ApiError> {
    let site = app.may_write(&token, &p.site.to_ascii_lowercase()).await?;
    let providers: Vec<serde_json::Value> = app
        .pipeline
        .config()
        .webhook_providers()
        .await?
        .into_iter()
        .filter(|(s, _)| *s == site.domain)
        .map(|(s, provider)| json!({"provider": provider, "path": format!("/api/v1/webhooks/{provider}/{s}")}))
        .collect();
    Ok(Json(json!({ "integrations": providers })).into_response())
}
