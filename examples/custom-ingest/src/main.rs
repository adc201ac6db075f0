//! A minimal ingest server on Beacon's crates: `POST /event` takes the contract's
//! hits (one, or an array), `POST /query` answers the contract's queries, on a
//! durable SQLite store with user-agent enrichment and cookieless visitors.
//!
//! ```text
//! cargo run -p custom-ingest -- [site] [listen address] [data directory]
//! ```
#![allow(clippy::print_stdout)] // An example says where it listens.

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{routing::post, Json, Router};
use beacon_core::{ConfigStore, Origin, Pipeline, Query, Shape, Site, TrustedProxies};
use beacon_storage_sqlite::SqliteStore;
use serde_json::json;
use std::{net::SocketAddr, sync::Arc, time::Duration};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let site = args.next().unwrap_or_else(|| "example.com".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3001".into());
    let dir = args.next().unwrap_or_else(|| "custom-ingest-data".into());
    let store = Arc::new(SqliteStore::open(dir.as_ref()).await?);
    if store.site(&site).await?.is_none() {
        store.put_site(Site::new(site.as_str())).await?;
    }
    let pipeline = Pipeline::builder(Arc::clone(&store))
        .enricher(beacon_enrich::Enricher::new()?)
        .build()?;
    let app = Router::new()
        .route("/event", post(event))
        .route("/query", post(query))
        .with_state(pipeline.clone());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async { drop(tokio::signal::ctrl_c().await) })
        .await?;
    pipeline.shutdown().await; // everything acknowledged is stored
    store.close().await;
    Ok(())
}

/// A failure as the contract answers it: 400 naming the field and the rule, or
/// 503 (internals hidden) with `Retry-After` when trying again later helps.
fn failure(client: bool, message: String, retry: Option<Duration>) -> Response {
    if client {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response();
    }
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "try again later" })),
    );
    let secs = retry.map_or(1, |d| d.as_secs().max(1));
    r.1 .0["retry_after"] = secs.into();
    ([("retry-after", secs.to_string())], r).into_response()
}

async fn event(
    State(pipeline): State<Pipeline>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let batch = body.trim_ascii_start().starts_with(b"[");
    let shape = if batch { Shape::Batch } else { Shape::One };
    let origin = Origin::from_http(peer.ip(), &headers, &TrustedProxies::default());
    match pipeline.ingest_json(&body, shape, Some(&origin)).await {
        Ok(r) => (
            StatusCode::ACCEPTED,
            Json(json!({ "accepted": r.accepted })),
        )
            .into_response(),
        Err(e) => failure(e.is_client_error(), e.to_string(), e.retry_after()),
    }
}

async fn query(State(pipeline): State<Pipeline>, body: Bytes) -> Response {
    let q = match Query::from_json(&String::from_utf8_lossy(&body)) {
        Ok(q) => q,
        Err(e) => return failure(true, e.to_string(), None),
    };
    match pipeline.analytics().query(&q, pipeline.now()).await {
        Ok(result) => Json(result.to_json(0)).into_response(),
        Err(e) => failure(e.is_client_error(), e.to_string(), e.retry_after()),
    }
}
