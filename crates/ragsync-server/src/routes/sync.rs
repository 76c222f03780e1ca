//! The read side of replication: `GET /v1/sync/info` and `GET /v1/sync/changes`. The message
//! shapes and the paging rules are documented in `ragsync_sync::wire`.

use axum::Json;
use axum::extract::{Extension, State};
use std::time::Duration;

use axum::http::StatusCode;
use ragsync_core::CollectionName;
use ragsync_store::{FeedItem, InlinePolicy};
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
    /// Wait this long for something past `since` when there is nothing yet (long-poll).
    #[serde(default)]
    wait_ms: u64,
    /// Comma-separated collection names: only their rows are sent (`next_since` still
    /// passes the rows left out).
    collections: Option<String>,
}

/// Feed pages are compressed (zstd at its fastest level) for pullers that accept it: pages
/// are large and repetitive (states, clocks, contents in base64), and the level keeps the
/// compression cheaper than the bytes it saves on a real network.
pub(crate) fn compression() -> tower_http::compression::CompressionLayer {
    tower_http::compression::CompressionLayer::new()
        .no_br()
        .no_deflate()
        .no_gzip()
        .quality(tower_http::CompressionLevel::Fastest)
}

/// Longest long-poll a request may ask for.
pub const MAX_POLL_WAIT_MS: u64 = 60_000;

pub(crate) async fn changes(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> ApiResult<Json<ChangesResponse>> {
    who.require(Permission::Sync, None)?;
    let limit = super::page_limit(q.limit, DEFAULT_PAGE_ROWS, node.limits.max_page_rows)?;
    let since = q.since;
    let only = q
        .collections
        .as_deref()
        .map(|list| {
            list.split(',')
                .map(|c| CollectionName::new(c.trim()))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    // Subscribed before the head is read, so that no commit slips between the two.
    let mut head = node.store.watch_head();
    let now = *head.borrow_and_update();
    if since > now {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cursor_reset",
            format!(
                "since {since} is past this node's feed ({now}): it was restored or replaced; \
                 start again from 0"
            ),
        ));
    }
    if since == now && q.wait_ms > 0 {
        let wait = Duration::from_millis(q.wait_ms.min(MAX_POLL_WAIT_MS));
        let mut closing = node.closing.subscribe();
        tokio::select! {
            _ = head.wait_for(|h| *h > since) => {}
            _ = tokio::time::sleep(wait) => {}
            _ = closing.wait_for(|c| *c) => {}
        }
    }
    let inline = InlinePolicy {
        max_content_bytes: node.limits.max_inline_bytes as u64,
        max_page_bytes: node.limits.max_page_inline_bytes as u64,
    };
    let mut page = node
        .blocking(move |s| s.changes(since, limit, inline))
        .await?;
    if let Some(only) = only {
        page.entries.retain(|e| match &e.item {
            FeedItem::Doc { collection, .. } => only.contains(collection),
            FeedItem::Collection(c) => only.contains(&c.name),
        });
        // Only the contents of the rows kept travel.
        let kept: std::collections::HashSet<_> = page
            .entries
            .iter()
            .filter_map(|e| match &e.item {
                FeedItem::Doc { state, .. } => Some(state),
                FeedItem::Collection(_) => None,
            })
            .flat_map(|s| {
                s.versions()
                    .iter()
                    .filter_map(|v| v.content.as_ref().map(|c| c.cid))
            })
            .collect();
        page.contents.retain(|(cid, _)| kept.contains(cid));
    }
    Ok(Json(ChangesResponse::from_page(
        node.store.node_id(),
        node.store.epoch(),
        since,
        page,
    )))
}
