//! Documents: put one, batch write, get, list, delete.

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ragsync_core::{CollectionName, ContentId, DocId, Stamp};
use ragsync_store::{DocOp, OpKind, WriteEffect, WriteResult};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::batch_wire::parse_batch;
use super::content_stream::{CHUNK_BYTES, ContentBody, Encoding, is_utf8};
use super::docs_wire::{DocBody, SentVectors, attach_vectors, doc_view, if_match, version_view};
use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiBytes, ApiJson, ApiPath, ApiQuery};

/// Default page size of `GET /v1/collections/{c}/docs`.
const DEFAULT_LIST_LIMIT: usize = 100;

fn etag(tag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{tag}\"")).expect("a state tag is ASCII")
}

/// What a write did to one document, as answered.
#[derive(Serialize)]
struct ResultView<'a> {
    id: &'a DocId,
    status: WriteEffect,
    /// The state's tag, for the next `If-Match`.
    version: &'a str,
    /// The winner's stamp.
    stamp: Stamp,
}

fn result_view(r: &WriteResult) -> ResultView<'_> {
    ResultView {
        id: &r.id,
        status: r.effect,
        version: &r.tag,
        stamp: r.version,
    }
}

/// The answer to a batch write.
#[derive(Serialize)]
struct BatchView<'a> {
    created: usize,
    updated: usize,
    unchanged: usize,
    deleted: usize,
    results: Vec<ResultView<'a>>,
}

fn single_write_response(r: WriteResult) -> Response {
    let status = if r.effect == WriteEffect::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        [(header::ETAG, etag(&r.tag))],
        Json(result_view(&r)),
    )
        .into_response()
}

fn names(c: String, id: String) -> Result<(CollectionName, DocId), ApiError> {
    Ok((CollectionName::new(c)?, DocId::new(id)?))
}

async fn write_one(
    node: &AppState,
    c: CollectionName,
    op: DocOp,
    sent: Option<SentVectors>,
) -> ApiResult<WriteResult> {
    let mut results = node
        .writing(move |s| {
            let mut ops = vec![op];
            let sent = sent.map(|v| (0, v)).into_iter().collect();
            if let Err(refusal) = attach_vectors(s, &c, &mut ops, sent)? {
                return Ok(Err(refusal));
            }
            s.write(&c, ops).map(Ok)
        })
        .await??;
    results
        .pop()
        .ok_or_else(|| ApiError::internal("write returned no result"))
}

pub(crate) async fn put(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath((c, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<Response> {
    let (c, id) = names(c, id)?;
    who.require(Permission::WriteDocs, Some(&c))?;
    let ApiJson(body) = ApiJson::<DocBody>::from_request(req, &()).await?;
    let (kind, sent) = body.into_op(&node.limits)?;
    let op = DocOp {
        id,
        if_match: if_match(&headers)?,
        kind,
    };
    Ok(single_write_response(write_one(&node, c, op, sent).await?))
}

pub(crate) async fn delete(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath((c, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (c, id) = names(c, id)?;
    who.require(Permission::WriteDocs, Some(&c))?;
    let op = DocOp {
        id,
        if_match: if_match(&headers)?,
        kind: OpKind::Delete,
    };
    Ok(single_write_response(write_one(&node, c, op, None).await?))
}

/// Writes every document of the batch in one transaction, or none of them.
pub(crate) async fn batch(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(c): ApiPath<String>,
    req: Request,
) -> ApiResult<Response> {
    let c = CollectionName::new(c)?;
    who.require(Permission::WriteDocs, Some(&c))?;
    let ApiBytes(body) = ApiBytes::from_request(req, &()).await?;
    let items = parse_batch(&body, &node.limits)?;
    let mut ops = Vec::with_capacity(items.len());
    let mut sent = Vec::new();
    for (i, (op, vectors)) in items.into_iter().enumerate() {
        ops.push(op);
        sent.extend(vectors.map(|v| (i, v)));
    }
    let results = node
        .writing(move |s| {
            if let Err(refusal) = attach_vectors(s, &c, &mut ops, sent)? {
                return Ok(Err(refusal));
            }
            s.write(&c, ops).map(Ok)
        })
        .await??;
    let count = |e: WriteEffect| results.iter().filter(|r| r.effect == e).count();
    let view = BatchView {
        created: count(WriteEffect::Created),
        updated: count(WriteEffect::Updated),
        unchanged: count(WriteEffect::Unchanged),
        deleted: count(WriteEffect::Deleted),
        results: results.iter().map(result_view).collect(),
    };
    Ok(Json(view).into_response())
}

/// How a read answers with the winner's content.
enum Content {
    /// Small: inside the JSON value.
    Inline(Option<Vec<u8>>),
    /// Replicated by reference and not fetched yet: the read says so.
    Pending,
    /// Larger than one chunk: streamed into the JSON from the store, as text or base64.
    Streamed {
        cid: ContentId,
        len: u64,
        text: bool,
    },
}

pub(crate) async fn get(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath((c, id)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let (c, id) = names(c, id)?;
    who.require(Permission::ReadDocs, Some(&c))?;
    let max_content = node.limits.max_content_bytes as u64;
    let (doc_id, coll) = (id.clone(), c.clone());
    let found = node
        .blocking(move |s| {
            let Some(doc) = s.get(&coll, &doc_id)? else {
                return Ok(None);
            };
            let winner = doc.state.winner();
            // The length of the bytes stored here, not the one the version claims (a content
            // replicated by reference may not be here yet).
            let wanted = match &winner.content {
                Some(r) if !winner.deleted && r.len <= max_content => Some(r),
                _ => None,
            };
            let here = match wanted {
                Some(r) => Some((r, s.content_len(&r.cid)?)),
                None => None,
            };
            let content = match here {
                None => Content::Inline(None),
                Some((_, None)) => Content::Pending,
                Some((r, Some(len))) if len > CHUNK_BYTES => Content::Streamed {
                    cid: r.cid,
                    len,
                    text: r.content_type.starts_with("text/") && is_utf8(s, &r.cid, len)?,
                },
                Some((r, Some(_))) => Content::Inline(s.content(&r.cid)?),
            };
            Ok(Some((doc, content)))
        })
        .await?;
    let Some((doc, content)) = found else {
        return Err(ApiError::not_found(
            "document_not_found",
            format!("document {id} does not exist in {c}"),
        ));
    };
    if doc.state.is_deleted() {
        return Err(ApiError::not_found(
            "document_deleted",
            format!("document {id} was deleted"),
        ));
    }
    let tag = [(header::ETAG, etag(&doc.state.tag()))];
    let (cid, len, text) = match content {
        Content::Inline(bytes) => return Ok((tag, Json(doc_view(&doc, bytes))).into_response()),
        Content::Pending => {
            let mut view = doc_view(&doc, None);
            view["content_pending"] = json!(true);
            return Ok((tag, Json(view)).into_response());
        }
        Content::Streamed { cid, len, text } => (cid, len, text),
    };
    // The view without the content, its closing brace replaced by the content's field.
    let mut prefix = serde_json::to_vec(&doc_view(&doc, None))
        .map_err(|e| ApiError::internal(format!("encoding a document: {e}")))?;
    prefix.pop();
    let (field, encoding) = if text {
        (",\"text\":\"", Encoding::JsonText { carry: Vec::new() })
    } else {
        (
            ",\"content_base64\":\"",
            Encoding::Base64 { carry: Vec::new() },
        )
    };
    prefix.extend_from_slice(field.as_bytes());
    let body = ContentBody::new(
        &node,
        cid,
        (0, len),
        encoding,
        (prefix, b"\"}".to_vec()),
        None,
    );
    Ok((
        tag,
        [(header::CONTENT_TYPE, "application/json")],
        Body::new(body),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
    /// Only documents that hold conflicts.
    #[serde(default)]
    conflicts: bool,
}

/// Live documents by id, a page at a time: pass the last id seen as `after`.
pub(crate) async fn list(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(c): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let c = CollectionName::new(c)?;
    who.require(Permission::ReadDocs, Some(&c))?;
    // A position, not a name to address: any id a page ended on (also one stored by an
    // earlier build under rules since tightened) must continue the listing.
    let after = q.after;
    let limit = super::page_limit(q.limit, DEFAULT_LIST_LIMIT, node.limits.max_page_rows)?;
    let mut docs = node
        .blocking(move |s| s.list(&c, after.as_deref(), limit + 1, q.conflicts))
        .await?;
    let has_more = docs.len() > limit;
    docs.truncate(limit);
    let next_after = docs.last().filter(|_| has_more).map(|d| d.id.clone());
    let views: Vec<Value> = docs
        .iter()
        .map(|d| {
            let mut v = version_view(d.state.winner());
            v["id"] = json!(d.id);
            v["version"] = json!(d.state.tag());
            v["seq"] = json!(d.seq);
            v["conflicts"] = json!(d.state.conflicts().len());
            v
        })
        .collect();
    Ok(Json(
        json!({"docs": views, "has_more": has_more, "next_after": next_after}),
    ))
}
