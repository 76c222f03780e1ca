//! Routes of API v1, one module per resource.

mod batch_wire;
mod blobs;
mod collections;
mod content_stream;
mod docs;
mod docs_wire;
mod peers;
mod query;
mod status;
mod sync;

use axum::Router;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post};

use crate::AppState;
use crate::error::ApiError;

/// Routes that need no token.
pub(crate) fn public() -> Router<AppState> {
    Router::new().route("/v1/health", get(status::health))
}

/// Routes behind the token check.
pub(crate) fn authed() -> Router<AppState> {
    Router::new()
        .route("/v1/status", get(status::status))
        .route("/v1/collections", get(collections::list))
        .route(
            "/v1/collections/{c}",
            get(collections::get)
                .put(collections::put)
                .delete(collections::delete),
        )
        .route("/v1/collections/{c}/docs", get(docs::list))
        .route("/v1/collections/{c}/docs:batch", post(docs::batch))
        .route("/v1/collections/{c}/query", post(query::query))
        .route(
            "/v1/collections/{c}/docs/{id}",
            get(docs::get).put(docs::put).delete(docs::delete),
        )
        .route("/v1/blobs/{cid}", get(blobs::get).put(blobs::put))
        .route("/v1/sync/info", get(sync::info))
        .route(
            "/v1/sync/changes",
            get(sync::changes)
                .layer(sync::compression())
                .post(sync::push),
        )
        .route("/v1/peers", get(peers::list).post(peers::add))
        .route("/v1/peers/{node_id}", axum::routing::delete(peers::remove))
        .route("/v1/peers/{node_id}/sync", post(peers::sync))
        .route("/v1/peers/{node_id}/retry", post(peers::retry))
}

/// The page size a request asked for (or `default`), cut to `max`; 0 is refused.
pub(crate) fn page_limit(
    asked: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match asked.unwrap_or(default) {
        0 => Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be at least 1",
        )),
        n => Ok(n.min(max)),
    }
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found("route_not_found", format!("no route for {}", uri.path()))
}

pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
