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
    /// 404: unknown site.
    NotFound(String),
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
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
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
    trusted_proxies: Vec<IpAddr>,
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
    let events = hits
        .into_iter()
        .map(|h| app.pipeline.prepare(h, &ctx, None, Some(&o)))
        .collect::<Result<Vec<_>, _>>()?;
    app.pipeline.commit(&events).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": events.len() })),
    )
        .into_response())
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
    let r = run_query(app.pipeline.store.as_ref(), &q, app.pipeline.now()).await?;
    Ok(Json(r.to_json(started.elapsed().as_millis() as u64)).into_response())
}

async fn health() -> &'static str {
    "ok"
}

/// Serves until Ctrl-C or SIGTERM; whatever was acknowledged is already committed.
pub async fn serve(
    pipeline: Arc<Pipeline>,
    addr: SocketAddr,
    trusted_proxies: Vec<IpAddr>,
) -> std::io::Result<()> {
    let app = Arc::new(App {
        pipeline,
        trusted_proxies,
    });
    let router = Router::new()
        .route("/api/event", post(event))
        .route("/api/events", post(events))
        .route("/api/v1/query", post(query))
        .route("/healthz", get(health))
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
