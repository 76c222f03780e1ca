//! The read side of replication: `GET /v1/sync/info` and `GET /v1/sync/changes`. The message
//! shapes and the paging rules are documented in `ragsync_sync::wire`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ragsync_store::{FeedItem, InlinePolicy};
use ragsync_sync::wire::{Change, ChangesResponse, PROTOCOL_VERSION, SyncInfo};
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
    let changes = page
        .entries
        .into_iter()
        .map(|e| match e.item {
            FeedItem::Doc {
                collection,
                id,
                state,
            } => Change::Doc {
                seq: e.seq,
                collection,
                id,
                versions: state.versions().to_vec(),
            },
            FeedItem::Collection(collection) => Change::Collection {
                seq: e.seq,
                collection,
            },
        })
        .collect();
    let contents: BTreeMap<_, _> = page
        .contents
        .into_iter()
        .map(|(cid, b)| (cid, BASE64.encode(b)))
        .collect();
    Ok(Json(ChangesResponse {
        node_id: node.store.node_id(),
        epoch: node.store.epoch(),
        since,
        next_since: page.next_since,
        has_more: page.has_more,
        head: page.head,
        changes,
        contents,
    }))
}
