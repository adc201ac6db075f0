//! An axum app that tracks itself with Beacon: a [`TrackLayer`] records a page view
//! for every HTML page it serves (no script in the page), a handler records a
//! custom event for the same visitor, and `/stats` reads the numbers back from the
//! same store.
//!
//! ```text
//! cargo run -p embedded-axum -- [listen address] [data directory]
//! ```
//!
//! The defaults are `127.0.0.1:3000` and `./embedded-axum-data`. Stop it with
//! Ctrl-C: the pipeline stores everything it tracked before the process ends.
#![allow(clippy::print_stdout)] // An example says where it listens.

use axum::extract::{ConnectInfo, Form, State};
use axum::response::Html;
use axum::routing::get;
use axum::{Extension, Json, Router};
use beacon_core::{
    ConfigStore, DateRange, Dimension, Metric, Pipeline, Query, Site, TrackLayer, Tracker,
};
use beacon_enrich::Enricher;
use beacon_storage_sqlite::SqliteStore;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

const SITE: &str = "shop.example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let data_dir = args.next().unwrap_or_else(|| "embedded-axum-data".into());

    // The store, the site, the pipeline (user agents parsed; no GeoIP files here).
    let store = Arc::new(SqliteStore::open(data_dir.as_ref()).await?);
    if store.site(SITE).await?.is_none() {
        store.put_site(Site::new(SITE)).await?;
    }
    let pipeline = Pipeline::builder(Arc::clone(&store))
        .enricher(Enricher::new()?)
        .build()?;
    let tracker = pipeline.tracker(SITE).await?;

    let layer = TrackLayer::new(tracker)
        .skip("/stats")
        .peer_address(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
    let app = Router::new()
        .route("/", get(page))
        .route("/pricing", get(page))
        .route("/signup", get(page).post(signup))
        .route("/stats", get(stats))
        .layer(layer)
        .with_state(pipeline.clone());

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopped())
    .await?;
    pipeline.shutdown().await;
    store.close().await;
    Ok(())
}

/// Any page of the app: HTML, so the layer records a view of it.
async fn page(uri: axum::http::Uri) -> Html<String> {
    Html(format!(
        "<!doctype html><title>Shop</title><h1>{}</h1>\
         <form method=post action=/signup><input name=plan value=pro><button>Sign up</button></form>",
        uri.path()
    ))
}

/// A sign-up: a custom event for the visitor whose request this is (the layer put
/// their tracker in the request).
async fn signup(
    Extension(visitor): Extension<Tracker>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Html<&'static str>, (axum::http::StatusCode, String)> {
    let plan = form.get("plan").map_or("free", String::as_str);
    visitor
        .event("signup", [("plan", plan)])
        .map_err(|e| (axum::http::StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(Html("<!doctype html><p>Welcome aboard."))
}

/// The app's numbers, read through the pipeline from the same store.
async fn stats(
    State(pipeline): State<Pipeline>,
    Extension(tracker): Extension<Tracker>,
) -> Result<Json<serde_json::Value>, (axum::http::StatusCode, String)> {
    let fail =
        |e: &dyn std::fmt::Display| (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    // What was tracked a moment ago is stored before we read.
    tracker.flush().await.map_err(|e| fail(&e))?;
    let mut totals = Query::new(SITE);
    totals.date_range = DateRange::All;
    totals.metrics = vec![Metric::Visitors, Metric::Pageviews, Metric::Events];
    let mut pages = totals.clone();
    pages.metrics = vec![Metric::Pageviews];
    pages.dimensions = vec![Dimension::Page];
    let analytics = pipeline.analytics();
    let now = pipeline.now();
    let totals = analytics.query(&totals, now).await.map_err(|e| fail(&e))?;
    let pages = analytics.query(&pages, now).await.map_err(|e| fail(&e))?;
    let total = |i: usize| totals.rows.first().map_or(0.0, |r| r.metrics[i].as_f64());
    Ok(Json(serde_json::json!({
        "visitors": total(0),
        "pageviews": total(1),
        "events": total(2),
        "pages": pages.rows.iter().map(|r| (r.dimensions[0].clone(), r.metrics[0].as_f64())).collect::<Vec<_>>(),
    })))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
