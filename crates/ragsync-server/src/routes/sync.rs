//! Replication's endpoints: `GET /v1/sync/info`, `GET /v1/sync/changes` (pull) and
//! `POST /v1/sync/changes` (push). The message shapes and the paging rules are documented in
//! `ragsync_sync::wire`.

use axum::Json;
use axum::extract::{Extension, FromRequest, Request, State};
use std::time::Duration;

use axum::http::StatusCode;
use ragsync_core::CollectionName;
use ragsync_store::InlinePolicy;
use ragsync_sync::apply::{PushRefused, apply_pushed};
use ragsync_sync::wire::{ChangesResponse, PROTOCOL_VERSION, PushAnswer, SyncInfo};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};

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
    /// Only rows with `seq <= until` (a window; see `ragsync_store::feed`).
    until: Option<u64>,
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

/// Rows past a woken long-poll's `since` that are read on the request's own thread.
const INLINE_LIVE_ROWS: u64 = 16;

/// Longest long-poll a request may ask for.
pub const MAX_POLL_WAIT_MS: u64 = 60_000;

pub(crate) async fn changes(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> ApiResult<Json<ChangesResponse>> {
    who.require(Permission::Sync, None)?;
    let limit = super::page_limit(q.limit, DEFAULT_PAGE_ROWS, node.limits.max_page_rows)?;
    let (since, until) = (q.since, q.until);
    if until.is_some_and(|u| u <= since) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("until must be past since ({since})"),
        ));
    }
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
    let mut woken_at = None;
    if since == now && q.wait_ms > 0 {
        let wait = Duration::from_millis(q.wait_ms.min(MAX_POLL_WAIT_MS));
        let mut closing = node.closing.subscribe();
        tokio::select! {
            h = head.wait_for(|h| *h > since) => woken_at = h.ok().map(|h| *h),
            _ = tokio::time::sleep(wait) => {}
            _ = closing.wait_for(|c| *c) => {}
        }
    }
    let inline = InlinePolicy {
        max_content_bytes: node.limits.max_inline_bytes as u64,
        max_page_bytes: node.limits.max_page_inline_bytes as u64,
        embeddings: true,
    };
    let read = move |s: &ragsync_store::Store, limit: usize| match until {
        Some(until) => s.changes_window(since, until, limit, inline),
        None => s.changes(since, limit, inline),
    };
    let mut page = match woken_at {
        // A live peer woken by a commit or two: reading its few rows takes less time than
        // handing the read to a blocking thread and back, two thread wake-ups that are most
        // of a live write's propagation time on an idle machine (BENCHMARKS.md). Reads never
        // wait for the writer. At most that many rows, whatever committed since the wake-up:
        // `has_more` sends the peer back for the rest.
        Some(h) if h - since <= INLINE_LIVE_ROWS => {
            read(&node.store, limit.min(INLINE_LIVE_ROWS as usize))?
        }
        _ => node.blocking(move |s| read(s, limit)).await?,
    };
    if let Some(only) = only {
        page.retain_collections(&only);
    }
    Ok(Json(ChangesResponse::from_page(
        node.store.node_id(),
        node.store.epoch(),
        since,
        page,
    )))
}

/// `POST /v1/sync/changes`: a page of a peer's feed, pushed by a peer this node cannot dial.
/// Its rows go through the same merge as pulled ones; the answer says what became of each.
pub(crate) async fn push(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    req: Request,
) -> ApiResult<Json<PushAnswer>> {
    who.require(Permission::Sync, None)?;
    let ApiJson(page) = ApiJson::<ChangesResponse>::from_request(req, &()).await?;
    if page.node_id == node.store.node_id() {
        return Err(ApiError::bad_request(
            "invalid_page",
            "a page pushed in this node's own name",
        ));
    }
    let (from, rows) = (page.node_id, page.changes.len());
    let answer = node
        .writing(move |s| match apply_pushed(s, page) {
            Ok(a) => Ok(Ok(a)),
            Err(PushRefused::Wire(e)) => Ok(Err(e)),
            Err(PushRefused::Store(e)) => Err(e),
        })
        .await?
        .map_err(|e| ApiError::bad_request("invalid_page", e.to_string()))?;
    tracing::debug!(
        %from,
        token = %who.name,
        rows,
        changed = answer.changed,
        parked = answer.parked.len(),
        "applied a pushed page"
    );
    Ok(Json(answer))
}
