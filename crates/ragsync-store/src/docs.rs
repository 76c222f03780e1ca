//! Document writes and reads. Every write surface (HTTP, CLI ingest, later replication and
//! MCP) goes through [`Store::write`], so every write gets a stamp, a feed `seq` and, later,
//! search rows in the same transaction.

use ragsync_core::doc::{Body, WriteEffect as StateEffect};
use std::collections::BTreeMap;

use ragsync_core::{
    CollectionName, ContentId, ContentRef, DocId, DocState, HlcClock, NodeId, Stamp,
};
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::{Map, Value};

use crate::{Store, StoreError, collections, contents, meta_set};

/// One document operation of a write.
#[derive(Clone, Debug)]
pub struct DocOp {
    pub id: DocId,
    /// When set, the write applies only if this is the document's current state tag
    /// ([`DocState::tag`], what reads return as `version`), or, for `*`, if the document exists
    /// and is not deleted: the If-Match of HTTP.
    pub if_match: Option<String>,
    pub kind: OpKind,
}

#[derive(Clone, Debug)]
pub enum OpKind {
    Put {
        title: Option<String>,
        metadata: Map<String, Value>,
        content: Vec<u8>,
        content_type: String,
    },
    Delete,
}

/// What a write did to one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteEffect {
    Created,
    Updated,
    /// The document already held exactly this; no new version.
    Unchanged,
    Deleted,
}

#[derive(Clone, Debug)]
pub struct WriteResult {
    pub id: DocId,
    pub effect: WriteEffect,
    /// The document's winner after the write.
    pub version: Stamp,
    /// The document's state tag after the write (`If-Match` takes it).
    pub tag: String,
}

/// A document's state as stored, with the `seq` of its latest change.
#[derive(Clone, Debug)]
pub struct StoredDoc {
    pub collection: CollectionName,
    pub id: DocId,
    pub seq: u64,
    pub state: DocState,
}

/// An open write transaction with the node's clock and the next feed `seq`.
pub(crate) struct WriteTx<'a> {
    pub(crate) tx: Transaction<'a>,
    clock: &'a mut HlcClock,
    next_seq: u64,
    node: NodeId,
    now_ms: u64,
}

impl WriteTx<'_> {
    /// A fresh stamp, greater than every stamp this node issued or accepted.
    pub(crate) fn stamp(&mut self) -> Stamp {
        Stamp::new(self.clock.tick(self.now_ms), self.node)
    }

    /// Takes in a clock value from another node: refused when it is more than the drift bound
    /// ahead of local time (the clock does not move), else the clock moves past it.
    pub(crate) fn observe_remote(&mut self, hlc: ragsync_core::Hlc) -> Result<(), StoreError> {
        self.clock.check_drift(hlc, self.now_ms)?;
        self.clock.observe(hlc, self.now_ms)?;
        Ok(())
    }

    /// What a savepoint must restore besides the rows: the next `seq` and the clock.
    pub(crate) fn checkpoint(&self) -> (u64, HlcClock) {
        (self.next_seq, self.clock.clone())
    }

    /// Goes back to a [`WriteTx::checkpoint`] after its savepoint was rolled back.
    pub(crate) fn restore(&mut self, next_seq: u64, clock: HlcClock) {
        self.next_seq = next_seq;
        *self.clock = clock;
    }

    /// The `seq` for the next change.
    pub(crate) fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }
}

impl Store {
    /// Runs `f` in one write transaction and commits it, with the clock's new high-water mark.
    /// Nothing `f` did is kept when it fails.
    pub(crate) fn write_tx<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let now_ms = self.now_ms();
        let mut guard = self.writer();
        let w = &mut *guard;
        // The transaction ticks and observes a copy of the clock, kept only if it commits:
        // a refused request leaves even the clock as it was.
        let mut clock = w.clock.clone();
        let (out, next_seq) = {
            let mut tx = WriteTx {
                tx: w.conn.transaction()?,
                clock: &mut clock,
                next_seq: w.next_seq,
                node: self.node_id,
                now_ms,
            };
            let out = f(&mut tx)?;
            // Every stored change takes a seq. With none, nothing was written: the commit
            // writes no page and syncs nothing (a mesh echoes every change back; merging
            // what is known must cost nothing). Stamps ticked without being stored were
            // never given to anyone, so the durable clock mark need not cover them.
            if tx.next_seq != w.next_seq {
                let hlc = tx.clock.last();
                meta_set(&tx.tx, "hlc", hlc.0.to_string().as_bytes())?;
                // Kept apart from the tables so that a seq is never given out twice, even
                // after the rows holding the highest ones are purged.
                meta_set(&tx.tx, "seq", (tx.next_seq - 1).to_string().as_bytes())?;
            }
            let next_seq = tx.next_seq;
            tx.tx.commit()?;
            (out, next_seq)
        };
        w.next_seq = next_seq;
        w.clock = clock;
        Ok(out)
    }

    /// Applies `ops` to documents of `collection` in one transaction: all of them, or none
    /// when one fails (a missing collection, a failed If-Match, a delete of a missing document).
    pub fn write(
        &self,
        collection: &CollectionName,
        ops: Vec<DocOp>,
    ) -> Result<Vec<WriteResult>, StoreError> {
        self.write_tx(|tx| {
            collections::require_live(&tx.tx, collection)?;
            ops.into_iter()
                .map(|op| apply(tx, collection, op))
                .collect()
        })
    }

    /// Merges a document state received from another node into the stored one, in one
    /// transaction: the replication apply path, the same store function local writes use, so
    /// the feed (and later search) sees both. Refuses the whole state, moving nothing, when a
    /// version's clock is more than `hlc_max_drift_ms` ahead of local time. Returns true when
    /// the stored state changed (it then gets a new `seq`); merging a known state changes nothing.
    ///
    /// The state is merged whether or not its collection is known here or live: documents and
    /// their collection's record may arrive in any order, and every node ends with the same
    /// states and the same record. A document shows (reads, lists, counts) only while its
    /// collection's record is live.
    ///
    /// The contents the merged state references are stored in the same transaction, from
    /// `inline` (the contents that travelled with the page, each checked against its BLAKE3
    /// id), or, when not there, recorded as wanted ([`Store::wanted`]) until they are fetched.
    pub fn merge_remote(
        &self,
        collection: &CollectionName,
        id: &DocId,
        incoming: &DocState,
        inline: &BTreeMap<ContentId, Vec<u8>>,
    ) -> Result<bool, StoreError> {
        self.write_tx(|tx| merge_doc(tx, collection, id, incoming, inline))
    }

    /// The stored state of one document (deleted ones included).
    pub fn get(
        &self,
        collection: &CollectionName,
        id: &DocId,
    ) -> Result<Option<StoredDoc>, StoreError> {
        self.read(|tx| {
            collections::require_live(tx, collection)?;
            Ok(load(tx, collection, id)?.map(|(seq, state)| StoredDoc {
                collection: collection.clone(),
                id: id.clone(),
                seq,
                state,
            }))
        })
    }

    /// Documents of `collection` that are not deleted, by id, starting after `after` (any
    /// string: ids are compared as stored, byte for byte).
    pub fn list(
        &self,
        collection: &CollectionName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        self.read(|tx| {
            collections::require_live(tx, collection)?;
            let mut stmt = tx.prepare_cached(
                "SELECT doc_id, seq, state FROM docs \
                 WHERE collection = ?1 AND doc_id > ?2 AND deleted = 0 ORDER BY doc_id LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![collection.as_str(), after.unwrap_or(""), limit as i64],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )?;
            rows.map(|r| {
                let (id, seq, state) = r?;
                Ok(StoredDoc {
                    collection: collection.clone(),
                    id: DocId::from_stored(id),
                    seq: seq as u64,
                    state: decode_state(&state)?,
                })
            })
            .collect()
        })
    }
}

/// [`Store::merge_remote`] inside an open transaction (also used a row at a time by
/// [`Store::apply_page`]).
pub(crate) fn merge_doc(
    tx: &mut WriteTx<'_>,
    collection: &CollectionName,
    id: &DocId,
    incoming: &DocState,
    inline: &BTreeMap<ContentId, Vec<u8>>,
) -> Result<bool, StoreError> {
    incoming
        .check_invariants()
        .map_err(StoreError::InvalidState)?;
    for v in incoming.versions() {
        // Deeper metadata would not read back from the stored and wire forms.
        ragsync_core::metadata::check_depth(
            &v.metadata,
            ragsync_core::metadata::MAX_METADATA_DEPTH_CEILING,
        )
        .map_err(|e| StoreError::InvalidState(format!("{}: {e}", v.stamp)))?;
    }
    // A version's clock entries are at most its stamp (checked above), so bounding the
    // stamps bounds everything the state claims to have seen.
    for v in incoming.versions() {
        tx.clock.check_drift(v.stamp.hlc, tx.now_ms)?;
    }
    let existing = load(&tx.tx, collection, id)?.map(|(_, s)| s);
    if let Some(state) = &existing {
        refuse_reused_stamps(state, incoming)?;
    }
    for v in incoming.versions() {
        tx.clock.observe(v.stamp.hlc, tx.now_ms)?;
    }
    let merged = match existing {
        Some(mut state) => state.merge(incoming).then_some(state),
        None => Some(incoming.clone()),
    };
    let Some(state) = merged else {
        return Ok(false);
    };
    state.check_invariants().map_err(StoreError::InvalidState)?;
    for c in state.versions().iter().filter_map(|v| v.content.as_ref()) {
        contents::receive(&tx.tx, c, inline)?;
    }
    store_state(tx, collection, id, &state)?;
    Ok(true)
}

/// Refuses an incoming state with a version that carries the stamp of a stored version but
/// differs from it ([`DocState::reused_stamp`]): a stamp names one write.
fn refuse_reused_stamps(stored: &DocState, incoming: &DocState) -> Result<(), StoreError> {
    match stored.reused_stamp(incoming) {
        Some(stamp) => Err(StoreError::InvalidState(format!(
            "version {stamp} differs from the stored version with the same stamp"
        ))),
        None => Ok(()),
    }
}

fn apply(
    tx: &mut WriteTx<'_>,
    collection: &CollectionName,
    op: DocOp,
) -> Result<WriteResult, StoreError> {
    let existing = load(&tx.tx, collection, &op.id)?.map(|(_, s)| s);
    if let Some(expected) = op.if_match {
        let actual = existing.as_ref().map(DocState::tag);
        let matches = if expected == "*" {
            existing.as_ref().is_some_and(|s| !s.is_deleted())
        } else {
            actual.as_ref() == Some(&expected)
        };
        if !matches {
            return Err(StoreError::VersionMismatch {
                id: op.id,
                expected,
                actual: actual.unwrap_or_else(|| "none".to_string()),
            });
        }
    }
    let was_live = existing.as_ref().is_some_and(|s| !s.is_deleted());
    let stamp = tx.stamp();
    let (state, effect) = match (op.kind, existing) {
        (
            OpKind::Put {
                title,
                metadata,
                content,
                content_type,
            },
            existing,
        ) => {
            let cid = contents::put(&tx.tx, &content)?;
            let body = Body {
                title,
                metadata,
                content: Some(ContentRef {
                    cid,
                    len: content.len() as u64,
                    content_type,
                }),
            };
            match existing {
                None => (DocState::create(stamp, body), WriteEffect::Created),
                Some(mut s) => match s.write(stamp, body) {
                    StateEffect::Unchanged => (s, WriteEffect::Unchanged),
                    StateEffect::Written if was_live => (s, WriteEffect::Updated),
                    StateEffect::Written => (s, WriteEffect::Created),
                },
            }
        }
        (OpKind::Delete, None) => return Err(StoreError::DocumentNotFound(op.id)),
        (OpKind::Delete, Some(mut s)) => match s.delete(stamp) {
            StateEffect::Unchanged => (s, WriteEffect::Unchanged),
            StateEffect::Written => (s, WriteEffect::Deleted),
        },
    };
    if effect != WriteEffect::Unchanged {
        store_state(tx, collection, &op.id, &state)?;
    }
    Ok(WriteResult {
        id: op.id,
        effect,
        version: state.winner().stamp,
        tag: state.tag(),
    })
}

/// Writes a document's new state with the next feed `seq`.
pub(crate) fn store_state(
    tx: &mut WriteTx<'_>,
    collection: &CollectionName,
    id: &DocId,
    state: &DocState,
) -> Result<(), StoreError> {
    let seq = tx.next_seq();
    let bytes = serde_json::to_vec(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.tx
        .prepare_cached(
            "INSERT OR REPLACE INTO docs (collection, doc_id, seq, deleted, state) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            collection.as_str(),
            id.as_str(),
            seq as i64,
            state.is_deleted(),
            bytes
        ])?;
    Ok(())
}

/// Puts a tombstone on every live document of `collection`. Returns how many.
pub(crate) fn tombstone_all(
    tx: &mut WriteTx<'_>,
    collection: &CollectionName,
) -> Result<u64, StoreError> {
    let live: Vec<(String, Vec<u8>)> = {
        let mut stmt = tx.tx.prepare_cached(
            "SELECT doc_id, state FROM docs WHERE collection = ?1 AND deleted = 0",
        )?;
        let rows = stmt.query_map([collection.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let n = live.len() as u64;
    for (id, state) in live {
        let id = DocId::from_stored(id);
        let mut state = decode_state(&state)?;
        let stamp = tx.stamp();
        state.delete(stamp);
        store_state(tx, collection, &id, &state)?;
    }
    Ok(n)
}

pub(crate) fn load(
    tx: &Transaction<'_>,
    collection: &CollectionName,
    id: &DocId,
) -> Result<Option<(u64, DocState)>, StoreError> {
    let row: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT seq, state FROM docs WHERE collection = ?1 AND doc_id = ?2")?
        .query_row(params![collection.as_str(), id.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(seq, s)| Ok((seq as u64, decode_state(&s)?)))
        .transpose()
}

pub(crate) fn decode_state(bytes: &[u8]) -> Result<DocState, StoreError> {
    let state: DocState = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("document state: {e}")))?;
    state.check_invariants().map_err(StoreError::Corrupt)?;
    Ok(state)
}
