//! Document writes and reads. Every write surface (HTTP, CLI ingest, later replication and
//! MCP) goes through [`Store::write`], so every write gets a stamp, a feed `seq` and, later,
//! search rows in the same transaction.

use ragsync_core::doc::{Body, WriteEffect as StateEffect};
use std::collections::BTreeMap;

use ragsync_core::{CollectionName, ContentId, ContentRef, DocId, DocState, Stamp};
use rusqlite::params;
use serde_json::{Map, Value};

use crate::embeddings::{self, ContentEmbeddings};
use crate::tx::{WriteTx, decode_state, load, store_state};
use crate::{Store, StoreError, collections, contents};

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
        /// Vectors the client sent for the content's chunks (an `external` model), stored
        /// in the same transaction.
        embeddings: Option<ContentEmbeddings>,
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

impl Store {
    /// Merges a document state received from another node into the stored one, in one
    /// transaction: the replication apply path, the same store function local writes use, so
    /// the feed (and later search) sees both. Refuses the whole state, moving nothing, when a
    /// version's clock is more than `hlc_max_drift_ms` ahead of local time. Returns true when
    /// the stored state changed (it then gets a new `seq`); merging a known state changes nothing.
    ///
    /// The state is merged whether or not its collection is known here or live: documents and
    /// their collection's record may arrive in any order, and every node ends with the same
    /// states and the same record. A document shows (reads, lists, counts) only while its
    /// collection does: its record is live, or deleted with live documents that were written
    /// concurrently with the delete (`collections.rs`).
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
        let carried = Carried {
            contents: inline,
            won: None,
        };
        self.write_tx(|tx| merge_doc(tx, collection, id, incoming, carried))
    }

    /// The stored state of one document (deleted ones included).
    pub fn get(
        &self,
        collection: &CollectionName,
        id: &DocId,
    ) -> Result<Option<StoredDoc>, StoreError> {
        Ok(self
            .get_many(collection, std::slice::from_ref(id))?
            .pop()
            .flatten())
    }

    /// Documents `ids` of `collection` in one read transaction, in the order asked (`None`
    /// for one not stored): what a query reads back for its candidates.
    pub fn get_many(
        &self,
        collection: &CollectionName,
        ids: &[DocId],
    ) -> Result<Vec<Option<StoredDoc>>, StoreError> {
        self.read(|tx| {
            collections::require_live(tx, collection)?;
            ids.iter()
                .map(|id| {
                    Ok(load(tx, collection, id)?.map(|(seq, state)| StoredDoc {
                        collection: collection.clone(),
                        id: id.clone(),
                        seq,
                        state,
                    }))
                })
                .collect()
        })
    }

    /// Documents of `collection` that are not deleted, by id, starting after `after` (any
    /// string: ids are compared as stored, byte for byte).
    ///
    /// With `conflicted`, only documents that hold conflicts.
    pub fn list(
        &self,
        collection: &CollectionName,
        after: Option<&str>,
        limit: usize,
        conflicted: bool,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        self.read(|tx| {
            collections::require_live(tx, collection)?;
            let mut stmt = tx.prepare_cached(
                "SELECT doc_id, seq, state FROM docs \
                 WHERE collection = ?1 AND doc_id > ?2 AND deleted = 0 AND conflicts >= ?4 \
                 ORDER BY doc_id LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![
                    collection.as_str(),
                    after.unwrap_or(""),
                    limit as i64,
                    i64::from(conflicted)
                ],
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

/// [`Store::write`] inside an open transaction: every op, or an error.
pub(crate) fn write_ops(
    tx: &mut WriteTx<'_>,
    collection: &CollectionName,
    ops: Vec<DocOp>,
) -> Result<Vec<WriteResult>, StoreError> {
    collections::require_live_for_write(tx, collection)?;
    ops.into_iter()
        .map(|op| apply(tx, collection, op))
        .collect()
}

/// [`Store::merge_remote`] inside an open transaction (also used a row at a time by
/// [`Store::apply_page`]).
pub(crate) fn merge_doc(
    tx: &mut WriteTx<'_>,
    collection: &CollectionName,
    id: &DocId,
    incoming: &DocState,
    carried: Carried<'_>,
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
    tx.check_drift(incoming.versions().iter().map(|v| v.stamp.hlc))?;
    let existing = load(&tx.tx, collection, id)?.map(|(_, s)| s);
    if let Some(state) = &existing {
        refuse_reused_stamps(state, incoming)?;
    }
    let winner_before = existing.as_ref().map(|s| s.winner().stamp);
    for v in incoming.versions() {
        tx.observe_remote(v.stamp.hlc)?;
    }
    let was_deleted = existing.as_ref().map(DocState::is_deleted);
    let merged = match existing {
        Some(mut state) => state.merge(incoming).then_some(state),
        None => Some(incoming.clone()),
    };
    let Some(state) = merged else {
        // Known already: it may still bring bytes one of its versions waits for.
        for c in incoming
            .versions()
            .iter()
            .filter_map(|v| v.content.as_ref())
        {
            contents::fill_if_wanted(tx, c, carried.contents)?;
        }
        return Ok(false);
    };
    state.check_invariants().map_err(StoreError::InvalidState)?;
    for c in state.versions().iter().filter_map(|v| v.content.as_ref()) {
        contents::receive(tx, c, carried.contents)?;
    }
    store_state(tx, collection, id, &state, was_deleted)?;
    // A version of the peer's that now wins here, where another won before, brings its
    // vectors over those stored for its chunks (`embeddings::receive`): a client may have
    // sent new ones with unchanged text (an `external` model). Every other set keeps what is
    // here. Nothing can fail after this point, so a row rolled back never left a mark.
    let winner = state.winner();
    let won = Some(winner.stamp) != winner_before
        && incoming.versions().iter().any(|v| v.stamp == winner.stamp);
    if let (Some(set), Some(c), true) = (carried.won, &winner.content, won) {
        set.borrow_mut().insert(c.cid);
    }
    Ok(true)
}

/// What travels with replicated rows: the contents inlined in their page, by id, and where
/// to note the contents of versions that came to win here (their embeddings replace stored
/// ones).
#[derive(Clone, Copy)]
pub(crate) struct Carried<'a> {
    pub contents: &'a BTreeMap<ContentId, Vec<u8>>,
    pub won: Option<&'a std::cell::RefCell<std::collections::HashSet<ContentId>>>,
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
    let was_deleted = existing.as_ref().map(DocState::is_deleted);
    let was_live = was_deleted == Some(false);
    let stamp = tx.stamp();
    let (state, effect) = match (op.kind, existing) {
        (
            OpKind::Put {
                title,
                metadata,
                content,
                content_type,
                embeddings,
            },
            existing,
        ) => {
            let cid = contents::put(tx, &content)?;
            let mut new_vectors = false;
            if let Some(e) = embeddings {
                if e.content != cid {
                    return Err(StoreError::InvalidEmbeddings(
                        "embeddings of another content".into(),
                    ));
                }
                e.check()?;
                new_vectors = embeddings::put(&tx.tx, &e, true)?;
            }
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
                // New vectors for the same text are a new version: the feed carries them to
                // the index and to peers, which otherwise would keep the old ones.
                Some(mut s) if new_vectors => {
                    s.rewrite(stamp, body);
                    let effect = match was_live {
                        true => WriteEffect::Updated,
                        false => WriteEffect::Created,
                    };
                    (s, effect)
                }
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
        store_state(tx, collection, &op.id, &state, was_deleted)?;
    }
    Ok(WriteResult {
        id: op.id,
        effect,
        version: state.winner().stamp,
        tag: state.tag(),
    })
}
