//! `POST /v1/collections/{c}/query`: search a collection (see `ragsync_search::query`).
//!
//! A query first waits (at most [`FRESHNESS_WAIT`]) until the index covers every change to
//! its collection committed before it arrived, and a query ranking by vectors this node
//! computes until those changes are embedded, so a client reads its own writes; past the wait
//! it answers from the index as it is and says so with `"stale": true`. Only the queried
//! collection's changes are waited for: while another collection's bulk load holds the
//! index's watermark back, this collection's few recent changes are indexed ahead of the feed
//! (`SearchIndex::wait_indexed`); the embedding wait is the collection's own (see
//! `ragsync_search::index::embedding`).

use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, FromRequest, Request, State};
use axum::http::StatusCode;
use ragsync_core::CollectionName;
use ragsync_search::query::{self, CheckedQuery, QueryError, QueryRequest, QueryResponse};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};

/// Longest a query waits for the index to catch up with the store.
pub(crate) const FRESHNESS_WAIT: Duration = Duration::from_secs(5);

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Store(e) => e.into(),
            QueryError::Index(e) => ApiError::internal(e.to_string()),
            e @ QueryError::Embed(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string())
            }
            e @ (QueryError::Invalid(_) | QueryError::Filter(_) | QueryError::Vector(_)) => {
                ApiError::bad_request(e.code(), e.to_string())
            }
        }
    }
}

/// How far the first trip to the blocking pool got.
enum Step {
    Answered(QueryResponse),
    Checked(CheckedQuery),
}

pub(crate) async fn query(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(c): ApiPath<String>,
    req: Request,
) -> ApiResult<Json<Value>> {
    let c = CollectionName::new(c)?;
    who.require(Permission::ReadDocs, Some(&c))?;
    let ApiJson(req) = ApiJson::<QueryRequest>::from_request(req, &()).await?;
    let Some(search) = node.search.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "search_disabled",
            "this node keeps no search index (started with --no-search)",
        ));
    };
    // Refusals first: a bad query or a missing collection is answered without waiting.
    // When the index already covers every commit (the usual case), the query runs in the
    // same trip to the blocking pool: each trip is a thread wake-up or two.
    let head = node.store.collection_head(&c);
    let (checker, name) = (search.clone(), c.clone());
    let first = node
        .blocking_with(move |store| -> ApiResult<Step> {
            let coll = store
                .collection(&name)?
                .ok_or_else(|| ragsync_store::StoreError::CollectionNotFound(name.clone()))?;
            let checked = query::check(&checker, &coll, &req)?;
            if checker.covers(&name, head)
                && (!checked.needs_embeddings
                    || checker.embedded(&name, checker.embedding_ticket(&name)))
            {
                return Ok(Step::Answered(query::run(
                    &checker, store, &name, &checked,
                )?));
            }
            Ok(Step::Checked(checked))
        })
        .await??;
    let (answer, fresh) = match first {
        Step::Answered(answer) => (answer, true),
        Step::Checked(checked) => {
            let deadline = tokio::time::Instant::now() + FRESHNESS_WAIT;
            let mut fresh = search.wait_indexed(&c, head, FRESHNESS_WAIT).await;
            if fresh && checked.needs_embeddings {
                // Indexed through `head`, so every document before it is queued by now.
                let ticket = search.embedding_ticket(&c);
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                fresh = search.wait_embedded(&c, ticket, left).await;
            }
            let indexed = search.clone();
            let answer = node
                .blocking_with(move |store| query::run(&indexed, store, &c, &checked))
                .await??;
            (answer, fresh)
        }
    };
    let mut body = serde_json::to_value(answer).map_err(|e| ApiError::internal(e.to_string()))?;
    body["indexed_through"] = json!(search.status().indexed_through);
    body["stale"] = json!(!fresh);
    Ok(Json(body))
}
