//! The OpenAPI document's frame: title, version, tags and the two ways to
//! authenticate. The paths come from the handlers' `#[utoipa::path]`s.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

/// The document without paths.
pub fn base() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Beacon")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Beacon's HTTP API: ingest (open to browsers, for a site's own pages), \
                     stats, notes, outgoing webhooks and erasure (a Bearer token from \
                     `beacon tokens create`, or a login session whose writes echo \
                     X-CSRF-Token), payment webhooks (signed by the provider) and public \
                     dashboards. A site a credential may not read answers 404, as an \
                     unknown site does.",
                ))
                .build(),
        )
        .build();
    let tags = [
        ("ingest", "Hits from pages, apps and servers"),
        ("stats", "Queries, funnels, goals, realtime"),
        ("notes", "Timeline notes"),
        ("webhooks", "Outgoing webhooks, signed"),
        ("privacy", "Erasure (GDPR)"),
        ("access", "Logins"),
        ("dashboard", "Public dashboards"),
        ("payments", "Payment-provider webhooks"),
        ("operations", "Health"),
    ];
    doc.tags = Some(
        tags.iter()
            .map(|(n, d)| TagBuilder::new().name(*n).description(Some(*d)).build())
            .collect(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("bk_ and 64 hex digits")
                .build(),
        ),
    );
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("beacon_session"))),
    );
    doc
}
