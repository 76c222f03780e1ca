//! `GET|PUT|DELETE /v1/collections/{c}` and `GET /v1/collections`.

use axum::Json;
use axum::extract::{Extension, FromRequest, Request, State};
use axum::http::StatusCode;
use ragsync_core::{Collection, CollectionName, CollectionSettings};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiBytes, ApiPath, parse_json};

fn view(c: &Collection) -> Value {
    json!({"name": c.name, "settings": c.settings, "version": c.stamp})
}

pub(crate) async fn list(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    who.require(Permission::ReadDocs, None)?;
    let (all, counts) = node
        .blocking(|s| Ok((s.collections()?, s.document_counts()?)))
        .await?;
    let listed: Vec<Value> = all
        .iter()
        .map(|c| {
            let mut v = view(c);
            v["documents"] = json!(counts.get(c.name.as_str()).copied().unwrap_or(0));
            v
        })
        .collect();
    Ok(Json(json!({ "collections": listed })))
}

pub(crate) async fn get(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let name = CollectionName::new(name)?;
    who.require(Permission::ReadDocs, Some(&name))?;
    let n = name.clone();
    match node.blocking(move |s| s.collection(&n)).await? {
        Some(c) => Ok(Json(view(&c))),
        None => Err(ApiError::not_found(
            "collection_not_found",
            format!("collection {name} does not exist"),
        )),
    }
}

/// Creates a collection or changes its settings. The body is the settings object (missing
/// fields take their defaults); an empty body means all defaults.
pub(crate) async fn put(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
    req: Request,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = CollectionName::new(name)?;
    who.require(Permission::ManageCollections, Some(&name))?;
    let ApiBytes(body) = ApiBytes::from_request(req, &()).await?;
    let mut settings: CollectionSettings = if body.iter().all(u8::is_ascii_whitespace) {
        CollectionSettings::default()
    } else {
        parse_json(&body)?
    };
    ragsync_search::embed::settle_model(&mut settings.embedding)?;
    settings.validate()?;
    let (c, created, left_behind) = node
        .writing(move |s| {
            let before = s.collection(&name)?;
            let (c, created) = s.put_collection(&name, settings)?;
            let left_behind = match before {
                Some(b) if clients_must_resend(&b, &c) => {
                    s.document_counts()?.get(name.as_str()).copied()
                }
                _ => None,
            };
            Ok((c, created, left_behind))
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut answer = view(&c);
    if let Some(docs) = left_behind {
        let e = &c.settings.embedding;
        answer["warnings"] = json!([format!(
            "collection {} holds {docs} documents: vector queries now leave out those whose \
             stored vectors do not fit these settings ({} dimensions, one vector per chunk as \
             this chunking cuts the text), until they are written again with such vectors; \
             /v1/status counts their chunks in search.vectors' backlog",
            c.name, e.dimension
        )]);
    }
    Ok((status, Json(answer)))
}

/// Whether a settings change leaves the documents without vectors that only clients can
/// send again: another model or dimension, or another chunking (vectors are kept by chunk).
/// The node computes the vectors of every other model itself.
fn clients_must_resend(before: &Collection, after: &Collection) -> bool {
    let (b, a) = (&before.settings, &after.settings);
    a.embedding.model == "external" && (b.embedding != a.embedding || b.chunking != a.chunking)
}

/// Deletes a collection: every document in it gets a tombstone.
pub(crate) async fn delete(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Value>> {
    let name = CollectionName::new(name)?;
    who.require(Permission::ManageCollections, Some(&name))?;
    let n = name.clone();
    let deleted = node.writing(move |s| s.delete_collection(&n)).await?;
    Ok(Json(
        json!({"name": name, "deleted": true, "documents_deleted": deleted}),
    ))
}
