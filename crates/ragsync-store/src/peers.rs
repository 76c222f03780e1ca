//! The peers this node replicates from: known by the node id their `/v1/sync/info` reports,
//! never by their place in a list. The token a peer accepts is kept here so that replication
//! resumes after a restart; the data directory must be kept as private as the tokens are.

use ragsync_core::{CollectionName, NodeId};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::replica::{read_cursor_in, write_cursor_in};
use crate::{Cursor, Store, StoreError};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub node_id: NodeId,
    pub url: String,
    /// The bearer token the peer accepts (never shown in answers or logs).
    #[serde(skip_serializing)]
    pub token: String,
    /// Only these collections are replicated from this peer; all when `None`.
    pub collections: Option<Vec<CollectionName>>,
    /// Also push this node's changes to the peer.
    pub push: bool,
    pub added_ms: u64,
}

impl std::fmt::Debug for PeerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerRecord")
            .field("node_id", &self.node_id)
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("collections", &self.collections)
            .field("push", &self.push)
            .finish()
    }
}

impl Store {
    /// Adds a peer. False, changing nothing, when a peer with this node id is already known.
    pub fn add_peer(&self, p: &PeerRecord) -> Result<bool, StoreError> {
        let collections = p
            .collections
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.write_tx(|tx| {
            let n = tx
                .tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO peers (node_id, url, token, collections, push, added_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    p.node_id.to_string(),
                    p.url,
                    p.token,
                    collections,
                    p.push,
                    p.added_ms as i64
                ])?;
            Ok(n == 1)
        })
    }

    /// How far `peer` has acknowledged this node's feed, pushed to it.
    pub fn push_cursor(&self, peer: NodeId) -> Result<Option<Cursor>, StoreError> {
        self.read(|tx| read_cursor_in(tx, "push_cursors", peer))
    }

    /// Records what `peer` acknowledged of this node's feed (an acknowledgement it may lose:
    /// pushing again from an older cursor costs time, never data, as merges are idempotent).
    pub fn set_push_cursor(&self, peer: NodeId, cursor: Cursor) -> Result<(), StoreError> {
        self.write_tx(|tx| write_cursor_in(tx, "push_cursors", peer, cursor))
    }

    /// Forgets a peer and its cursors (added again, perhaps with other collections, it pulls
    /// from 0: merges are idempotent, so that costs time, never data). Its parked rows stay
    /// until retried. False when it was not known.
    pub fn remove_peer(&self, node_id: NodeId) -> Result<bool, StoreError> {
        self.write_tx(|tx| {
            let n = tx
                .tx
                .prepare_cached("DELETE FROM peers WHERE node_id = ?1")?
                .execute([node_id.to_string()])?;
            for table in ["peer_cursors", "push_cursors"] {
                tx.tx
                    .prepare_cached(&format!("DELETE FROM {table} WHERE peer = ?1"))?
                    .execute([node_id.to_string()])?;
            }
            Ok(n == 1)
        })
    }

    /// Every peer, by node id.
    pub fn peers(&self) -> Result<Vec<PeerRecord>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT node_id, url, token, collections, push, added_ms FROM peers ORDER BY node_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            rows.map(|r| {
                let (node_id, url, token, collections, push, added_ms) = r?;
                let corrupt = |what: &str| StoreError::Corrupt(format!("a peer's {what}"));
                Ok(PeerRecord {
                    node_id: node_id.parse().map_err(|_| corrupt("node id"))?,
                    url,
                    token,
                    collections: collections
                        .map(|c| serde_json::from_str(&c))
                        .transpose()
                        .map_err(|_| corrupt("collections"))?,
                    push,
                    added_ms: added_ms as u64,
                })
            })
            .collect()
        })
    }
}
