//! The read side of replication: `GET /v1/sync/info` and `GET /v1/sync/changes`. The message
//! shapes and the paging rules are documented in `ragsync_sync::wire`.

use axum::Json;
use axum::extract::{Extension, State};
use ragsync_store::InlinePolicy;
use ragsync_sync::wire::{ChangesResponse, PROTOCOL_VERSION, SyncInfo};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;

/// Page size when the request gives none.
const DEFAULT_PAGE_ROWS: usize = 1000;

pub(crate) async fn info(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<SyncInfo>> {
    who.require(Permission::Sync, None)?;
    let head = node.blocking(|s| s.head_seq()).await?;
    Ok(Json(SyncInfo {
        node_id: node.store.node_id(),
        epoch: node.store.epoch(),
        head,
        protocol: PROTOCOL_VERSION,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangesQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

pub(crate) async fn changes(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> ApiResult<Json<ChangesResponse>> {
    who.require(Permission::Sync, None)?;
    let limit = super::page_limit(q.limit, DEFAULT_PAGE_ROWS, node.limits.max_page_rows)?;
    let since = q.since;
    if since > i64::MAX as u64 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "since is beyond any seq",
        ));
    }
    let inline = InlinePolicy {
        max_content_bytes: node.limits.max_inline_bytes as u64,
        max_page_bytes: node.limits.max_page_inline_bytes as u64,
    };
    let page = node
        .blocking(move |s| s.changes(since, limit, inline))
        .await?;
    Ok(Json(ChangesResponse::from_page(
        node.store.node_id(),
        node.store.epoch(),
        since,
        page,
    )))
}
