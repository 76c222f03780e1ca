//! The read side of replication: `GET /v1/sync/info` and `GET /v1/sync/changes`. The message
//! shapes and the paging rules are documented in `ragsync_sync::wire`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, State};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ragsync_store::FeedItem;
use ragsync_sync::wire::{Change, ChangesResponse, PROTOCOL_VERSION, SyncInfo};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::error::ApiResult;
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
    let max_inline = node.limits.max_inline_bytes as u64;
    let (page, inline) = node
        .blocking(move |s| {
            let page = s.changes(since, limit)?;
            let cids: Vec<_> = page
                .entries
                .iter()
                .filter_map(|e| match &e.item {
                    FeedItem::Doc { state, .. } => Some(state.versions()),
                    FeedItem::Collection(_) => None,
                })
                .flatten()
                .filter_map(|v| {
                    v.content
                        .as_ref()
                        .filter(|c| c.len <= max_inline)
                        .map(|c| c.cid)
                })
                .collect();
            let inline = s.small_contents(&cids, max_inline)?;
            Ok((page, inline))
        })
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
    let contents: BTreeMap<_, _> = inline
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
