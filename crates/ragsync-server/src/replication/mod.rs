//! Replication of this node with its peers: one pull worker per peer ([`worker`]), and one
//! push worker per peer added with `push: true` ([`push_worker`]), over HTTP ([`transport`]),
//! driving the engine of `ragsync_sync`. Peers are kept in the store, known by the node id
//! their `/v1/sync/info` reports; adding one starts replicating with it at once, and a node
//! restarted resumes every peer from its stored cursors.

mod push_worker;
mod transport;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ragsync_core::{CollectionName, NodeId};
use ragsync_store::{PeerRecord, Store};
use ragsync_sync::pull::{Failure, PullStatus};
use ragsync_sync::push::PushStatus;
use reqwest::Url;
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::error::ApiError;
use push_worker::PushWorker;
use ragsync_sync::transport::Transport;
use transport::PeerLink;
use worker::Worker;

/// A peer as answers show it (never its token).
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    pub node_id: NodeId,
    pub url: String,
    pub collections: Option<Vec<CollectionName>>,
    pub push: bool,
    /// How long this node has not been caught up with the peer (0 while it is).
    pub lag_ms: u64,
    pub pull: PullStatus,
    /// Pushing to the peer, for a peer added with `push: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushing: Option<PushStatus>,
}

struct PushRunning {
    status: Arc<Mutex<PushStatus>>,
    nudge: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

struct Running {
    record: PeerRecord,
    /// When its worker started (lag counts from here until it first catches up).
    started_ms: u64,
    status: Arc<Mutex<PullStatus>>,
    nudge: Arc<Notify>,
    /// The push worker, for a peer added with `push: true`.
    push: Option<PushRunning>,
    stop: watch::Sender<bool>,
    /// The pull worker: it ends after the page it is applying, if any, is written.
    task: tokio::task::JoinHandle<()>,
}

/// The peers of a node and their workers.
pub struct Replication {
    store: Arc<Store>,
    http: reqwest::Client,
    running: Mutex<HashMap<NodeId, Running>>,
}

/// What a request to add a peer gives.
pub struct NewPeer {
    pub url: String,
    pub token: String,
    pub collections: Option<Vec<CollectionName>>,
    pub push: bool,
}

impl Replication {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            http: reqwest::Client::new(),
            running: Mutex::new(HashMap::new()),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a worker for every stored peer (at start).
    pub fn start_all(&self) -> Result<(), ragsync_store::StoreError> {
        for p in self.store.peers()? {
            self.start(p);
        }
        Ok(())
    }

    fn link(&self, record: &PeerRecord) -> Result<PeerLink, ApiError> {
        Ok(PeerLink {
            http: self.http.clone(),
            base: parse_url(&record.url)?,
            token: record.token.clone(),
            collections: record
                .collections
                .as_ref()
                .map(|c| c.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(",")),
        })
    }

    fn start(&self, record: PeerRecord) {
        let link = match self.link(&record) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(peer = %record.node_id, error = %e.message, "cannot reach peer");
                return;
            }
        };
        let status = Arc::new(Mutex::new(worker::new_pull_status(
            &self.store,
            record.node_id,
        )));
        let nudge = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let push = record.push.then(|| {
            let status = Arc::new(Mutex::new(push_worker::new_push_status(
                &self.store,
                record.node_id,
            )));
            let nudge = Arc::new(Notify::new());
            let worker = PushWorker {
                peer: record.node_id,
                store: self.store.clone(),
                link: link.clone(),
                collections: record.collections.clone(),
                status: status.clone(),
                nudge: nudge.clone(),
                stop: stopped.clone(),
            };
            let task = tokio::spawn(worker.run());
            PushRunning {
                status,
                nudge,
                task,
            }
        });
        let worker = Worker {
            peer: record.node_id,
            store: self.store.clone(),
            link,
            status: status.clone(),
            nudge: nudge.clone(),
            stop: stopped,
        };
        let task = tokio::spawn(worker.run());
        let node_id = record.node_id;
        let old = self.running().insert(
            node_id,
            Running {
                record,
                started_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                status,
                nudge,
                push,
                stop,
                task,
            },
        );
        if let Some(old) = old {
            old.stop.send_replace(true);
        }
    }

    /// Adds a peer: asks it who it is, refuses this node itself and a node already known,
    /// stores it and starts pulling from it (and pushing to it, with `push`).
    pub async fn add(&self, new: NewPeer) -> Result<PeerView, ApiError> {
        let mut record = PeerRecord {
            node_id: NodeId(0),
            url: parse_url(&new.url)?.to_string(),
            token: new.token,
            collections: new.collections,
            push: new.push,
            added_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let link = self.link(&record)?;
        let info = link.info().await.map_err(|f| match f {
            Failure::Refused { status, code, .. } => ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "peer_refused",
                format!("the peer refused to say who it is: {status} {code}"),
            ),
            Failure::Unreachable(why) | Failure::CursorReset(why) | Failure::TooLarge(why) => {
                ApiError::new(
                    axum::http::StatusCode::BAD_GATEWAY,
                    "peer_unreachable",
                    format!("the peer did not answer: {why}"),
                )
            }
        })?;
        if info.node_id == self.store.node_id() {
            return Err(ApiError::bad_request(
                "invalid_peer",
                "that URL is this node itself",
            ));
        }
        record.node_id = info.node_id;
        let store = self.store.clone();
        let to_store = record.clone();
        let added = tokio::task::spawn_blocking(move || store.add_peer(&to_store))
            .await
            .map_err(|e| ApiError::internal(format!("adding a peer: {e}")))??;
        if !added {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "peer_exists",
                format!("node {} is already a peer", record.node_id),
            ));
        }
        self.start(record.clone());
        self.view(record.node_id)
            .ok_or_else(|| ApiError::internal("the peer's worker did not start"))
    }

    /// Forgets a peer and stops its worker. False when it was not known.
    pub async fn remove(&self, node_id: NodeId) -> Result<bool, ApiError> {
        // Stopped first, and waited for: both workers write cursors (the pull worker with
        // the page it is applying), and a cursor written after the peer's removal would
        // outlive it.
        let running = self.running().remove(&node_id);
        if let Some(r) = running {
            r.stop.send_replace(true);
            let push = async {
                if let Some(p) = r.push {
                    let _ = p.task.await;
                }
            };
            let both = async { tokio::join!(r.task, push) };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), both).await;
        }
        let store = self.store.clone();
        let removed = tokio::task::spawn_blocking(move || store.remove_peer(node_id))
            .await
            .map_err(|e| ApiError::internal(format!("removing a peer: {e}")))??;
        Ok(removed)
    }

    /// Ends a peer's backoffs: it pulls (and pushes) now. False when it is not known.
    pub fn sync_now(&self, node_id: NodeId) -> bool {
        match self.running().get(&node_id) {
            Some(r) => {
                r.nudge.notify_one();
                if let Some(p) = &r.push {
                    p.nudge.notify_one();
                }
                true
            }
            None => false,
        }
    }

    pub fn view(&self, node_id: NodeId) -> Option<PeerView> {
        self.running().get(&node_id).map(view)
    }

    /// Every peer with its pull status, by node id.
    pub fn list(&self) -> Vec<PeerView> {
        let mut out: Vec<PeerView> = self.running().values().map(view).collect();
        out.sort_by_key(|p| p.node_id);
        out
    }

    /// Stops every worker (on shutdown).
    pub fn stop_all(&self) {
        for r in self.running().values() {
            r.stop.send_replace(true);
        }
    }
}

fn view(r: &Running) -> PeerView {
    let pull = r.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let caught_up = pull.state == ragsync_sync::pull::LinkState::Live && pull.lag_rows == 0;
    let since = pull.caught_up_ms.unwrap_or(r.started_ms);
    PeerView {
        node_id: r.record.node_id,
        url: r.record.url.clone(),
        collections: r.record.collections.clone(),
        push: r.record.push,
        lag_ms: if caught_up {
            0
        } else {
            now.saturating_sub(since)
        },
        pull,
        pushing: r
            .push
            .as_ref()
            .map(|p| p.status.lock().unwrap_or_else(|e| e.into_inner()).clone()),
    }
}

fn parse_url(url: &str) -> Result<Url, ApiError> {
    let parsed = Url::parse(url)
        .map_err(|e| ApiError::bad_request("invalid_url", format!("peer URL {url:?}: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::bad_request(
            "invalid_url",
            "a peer URL carries no credentials (give the token as token)",
        ));
    }
    // TLS to peers comes with the hardening work; until then a peer is reached over http.
    if parsed.scheme() != "http" || parsed.cannot_be_a_base() {
        return Err(ApiError::bad_request(
            "invalid_url",
            format!("peer URL {url:?} must be http:// (TLS to peers is not in this build)"),
        ));
    }
    Ok(parsed)
}
