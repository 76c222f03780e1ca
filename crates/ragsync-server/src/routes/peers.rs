//! Peers: `POST /v1/peers` (add, by URL and token: the node id comes from the peer itself),
//! `GET /v1/peers`, `DELETE /v1/peers/{node_id}`, `POST /v1/peers/{node_id}/sync` (pull now),
//! `POST /v1/peers/{node_id}/retry` (apply the peer's parked rows again).

use axum::Json;
use axum::extract::{Extension, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ragsync_core::{CollectionName, NodeId};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::replication::{NewPeer, PeerView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddPeer {
    url: String,
    token: String,
    #[serde(default)]
    collections: Option<Vec<String>>,
    #[serde(default)]
    push: bool,
}

pub(crate) async fn add(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    req: Request,
) -> ApiResult<Response> {
    who.require(Permission::ManagePeers, None)?;
    let ApiJson(body) = ApiJson::<AddPeer>::from_request(req, &()).await?;
    let collections = body
        .collections
        .map(|c| {
            c.into_iter()
                .map(CollectionName::new)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    if body.token.trim().is_empty() {
        return Err(ApiError::bad_request("invalid_body", "token is empty"));
    }
    let view = node
        .replication
        .add(NewPeer {
            url: body.url,
            token: body.token.trim().to_string(),
            collections,
            push: body.push,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub(crate) async fn list(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Vec<PeerView>>> {
    who.require(Permission::Status, None)?;
    Ok(Json(node.replication.list()))
}

/// The peer named in the path, once the token is known to manage peers.
fn managed_peer(who: &Principal, id: &str) -> Result<NodeId, ApiError> {
    who.require(Permission::ManagePeers, None)?;
    id.parse().map_err(ApiError::from)
}

fn unknown(id: NodeId) -> ApiError {
    ApiError::not_found("peer_not_found", format!("node {id} is not a peer"))
}

pub(crate) async fn remove(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = managed_peer(&who, &id)?;
    if !node.replication.remove(id).await? {
        return Err(unknown(id));
    }
    Ok(Json(json!({"removed": id})))
}

pub(crate) async fn sync(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id = managed_peer(&who, &id)?;
    if !node.replication.sync_now(id) {
        return Err(unknown(id));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"syncing": id}))).into_response())
}

pub(crate) async fn retry(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = managed_peer(&who, &id)?;
    let applied = node.writing(move |s| s.retry_parked(Some(id))).await?;
    let left = node
        .blocking(move |s| Ok(s.parked(Some(id))?.len()))
        .await?;
    Ok(Json(json!({"applied": applied, "still_parked": left})))
}
