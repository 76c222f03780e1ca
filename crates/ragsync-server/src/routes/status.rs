//! Liveness and node status.

use axum::Json;
use axum::extract::{Extension, State};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::error::ApiResult;

pub(crate) async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(crate) async fn status(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    who.require(Permission::Status, None)?;
    let stats = node.blocking(|s| s.stats()).await?;
    let (commits, writes) = node.store.group_commit_stats();
    Ok(Json(json!({
        "node_id": node.store.node_id(),
        "epoch": node.store.epoch(),
        "version": env!("CARGO_PKG_VERSION"),
        "durability": node.store.durability(),
        "uptime_s": node.started.elapsed().as_secs(),
        "counts": stats,
        "group_commit": {"commits": commits, "writes": writes},
        "wal": node.store.wal_stats(),
        "limits": node.limits,
        "peers": node.replication.list(),
        "search": node.search.as_ref().map(|s| s.status()),
    })))
}
