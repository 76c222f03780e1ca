//! Collections: one last-writer-wins record each (by stamp), live or deleted.
//!
//! A deleted record hides only what its delete saw. The delete puts a tombstone on every
//! document it found; a document written concurrently on a node that had not seen the delete
//! stays live (a live version beats a concurrent tombstone), and so does its collection: a
//! collection *shows* (reads, writes, lists, counts, search) while its record is live or while
//! it holds a live document. Every node computes this from the same states, so it converges
//! without a write of its own; deleting the collection again (or writing it) settles it.

pub use ragsync_core::Collection;
use std::collections::BTreeMap;

use ragsync_core::{CollectionName, CollectionSettings};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use crate::tx::{WriteTx, decode_state, store_state};
use crate::{Store, StoreError};

const COLUMNS: &str = "name, settings, stamp, deleted";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<Collection, StoreError>> {
    let name: String = r.get(0)?;
    let settings: String = r.get(1)?;
    let stamp: String = r.get(2)?;
    let deleted: bool = r.get(3)?;
    Ok((|| {
        Ok(Collection {
            name: CollectionName::new(name).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            settings: serde_json::from_str(&settings)
                .map_err(|e| StoreError::Corrupt(format!("collection settings: {e}")))?,
            stamp: stamp
                .parse()
                .map_err(|e: ragsync_core::CoreError| StoreError::Corrupt(e.to_string()))?,
            deleted,
        })
    })())
}

pub(crate) fn get(
    tx: &Transaction<'_>,
    name: &CollectionName,
) -> Result<Option<Collection>, StoreError> {
    tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM collections WHERE name = ?1"
    ))?
    .query_row([name.as_str()], from_row)
    .optional()?
    .transpose()
}

/// Collection `name`'s record, as stored, when the collection shows (see the module docs): a
/// live record, or a deleted one whose collection holds live documents (written concurrently
/// with the delete); `None` when it does not show.
fn shown_record(
    tx: &Transaction<'_>,
    name: &CollectionName,
) -> Result<Option<Collection>, StoreError> {
    let Some(c) = get(tx, name)? else {
        return Ok(None);
    };
    if !c.deleted {
        return Ok(Some(c));
    }
    let live: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM doc_counts WHERE collection = ?1 AND live > 0)",
        )?
        .query_row([name.as_str()], |r| r.get(0))?;
    Ok(live.then_some(c))
}

/// Collection `name` as it shows: its record read as live, or `None` (see [`shown_record`]).
pub(crate) fn showing(
    tx: &Transaction<'_>,
    name: &CollectionName,
) -> Result<Option<Collection>, StoreError> {
    Ok(shown_record(tx, name)?.map(|c| Collection {
        deleted: false,
        ..c
    }))
}

/// SQL: the `collections` rows that show (see [`showing`]).
pub(crate) const SHOWS: &str =
    "(deleted = 0 OR name IN (SELECT collection FROM doc_counts WHERE live > 0))";

/// Collection `name` as it shows, or `CollectionNotFound`.
pub(crate) fn require_live(
    tx: &Transaction<'_>,
    name: &CollectionName,
) -> Result<Collection, StoreError> {
    showing(tx, name)?.ok_or_else(|| StoreError::CollectionNotFound(name.clone()))
}

/// Collection `name` for a local write, as [`require_live`]. A record deleted but showing
/// (documents written concurrently with the delete) is written live again first: a client
/// that writes to the collection it sees keeps it, whatever becomes of those documents.
pub(crate) fn require_live_for_write(
    tx: &mut WriteTx<'_>,
    name: &CollectionName,
) -> Result<Collection, StoreError> {
    let record =
        shown_record(&tx.tx, name)?.ok_or_else(|| StoreError::CollectionNotFound(name.clone()))?;
    if !record.deleted {
        return Ok(record);
    }
    let revived = Collection {
        stamp: tx.stamp(),
        deleted: false,
        ..record
    };
    put(tx, &revived)?;
    Ok(revived)
}

fn put(tx: &mut WriteTx<'_>, c: &Collection) -> Result<(), StoreError> {
    let seq = tx.next_seq(&c.name);
    let settings =
        serde_json::to_string(&c.settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.tx
        .prepare_cached(
            "INSERT OR REPLACE INTO collections (name, settings, stamp, deleted, seq) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            c.name.as_str(),
            settings,
            c.stamp.to_string(),
            c.deleted,
            seq as i64
        ])?;
    Ok(())
}

pub(crate) fn select_feed(
    tx: &Transaction<'_>,
    since: u64,
    until: u64,
    limit: usize,
) -> Result<Vec<(u64, Collection)>, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {COLUMNS}, seq FROM collections WHERE seq > ?1 AND seq <= ?3 ORDER BY seq LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![since as i64, limit as i64, until as i64], |r| {
        Ok((r.get::<_, i64>(4)? as u64, from_row(r)?))
    })?;
    rows.map(|r| {
        let (seq, c) = r?;
        Ok((seq, c?))
    })
    .collect()
}

/// [`Store::merge_remote_collection`] inside an open transaction.
pub(crate) fn merge_collection(
    tx: &mut WriteTx<'_>,
    incoming: &Collection,
) -> Result<bool, StoreError> {
    let existing = get(&tx.tx, &incoming.name)?;
    if let Some(c) = &existing {
        if c.stamp == incoming.stamp && c != incoming {
            return Err(StoreError::InvalidState(format!(
                "collection {} record {} differs from the stored one with the same stamp",
                incoming.name, incoming.stamp
            )));
        }
        if c.stamp >= incoming.stamp {
            return Ok(false);
        }
    }
    // A peer is held to the rules a local write is: a live record no local write could make
    // (a `top_k` of 0, an overlap past the chunk size) is refused, parked, and never stored.
    // A deleted record's settings are never used, and a record that loses changes nothing.
    if !incoming.deleted {
        incoming.settings.validate().map_err(|e| {
            StoreError::InvalidState(format!("collection {} record: {e}", incoming.name))
        })?;
    }
    tx.observe_remote(incoming.stamp.hlc)?;
    put(tx, incoming)?;
    Ok(true)
}

impl Store {
    /// Creates collection `name` or changes its settings. Returns the record and whether it was
    /// created (it did not show: no record, or one deleted with nothing live left). Writing
    /// the same settings to a live record changes nothing; to a deleted record that still
    /// shows, it writes the record live again.
    pub fn put_collection(
        &self,
        name: &CollectionName,
        settings: CollectionSettings,
    ) -> Result<(Collection, bool), StoreError> {
        self.write_tx(|tx| {
            let existing = shown_record(&tx.tx, name)?;
            let created = existing.is_none();
            // A record deleted but showing is written live again, even with its settings.
            if let Some(c) = existing.filter(|c| !c.deleted && c.settings == settings) {
                return Ok((c, false));
            }
            let c = Collection {
                name: name.clone(),
                settings,
                stamp: tx.stamp(),
                deleted: false,
            };
            put(tx, &c)?;
            Ok((c, created))
        })
    }

    /// Merges a collection record received from another node: the record with the greater
    /// stamp wins (settings are never merged field by field), whatever order records and
    /// documents arrive in. A deletion that wins hides the collection's documents; it
    /// tombstones nothing here (the deleting node's tombstones replicate on their own, and a
    /// write it never saw stays in the document's state, hidden, identically on every node).
    /// Returns true when the stored record changed.
    pub fn merge_remote_collection(&self, incoming: &Collection) -> Result<bool, StoreError> {
        self.write_tx(|tx| merge_collection(tx, incoming))
    }

    /// Collection `name` as it shows (live, or deleted with live documents written
    /// concurrently with the delete; see the module docs).
    pub fn collection(&self, name: &CollectionName) -> Result<Option<Collection>, StoreError> {
        self.read(|tx| showing(tx, name))
    }

    /// Every collection that shows, by name, each read as live.
    pub fn collections(&self) -> Result<Vec<Collection>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM collections WHERE {SHOWS} ORDER BY name"
            ))?;
            let rows = stmt.query_map([], from_row)?;
            rows.map(|r| {
                r?.map(|c| Collection {
                    deleted: false,
                    ..c
                })
            })
            .collect()
        })
    }

    /// The live documents of each collection that holds any, by name.
    pub fn document_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.read(|tx| {
            // Kept by every write (see `counts.rs`): no scan of the documents.
            let mut stmt =
                tx.prepare_cached("SELECT collection, live FROM doc_counts WHERE live > 0")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            rows.map(|r| {
                let (name, n) = r?;
                Ok((name, n as u64))
            })
            .collect()
        })
    }

    /// Deletes collection `name`: every live document in it gets a tombstone and the collection
    /// record is marked deleted, in one transaction. Returns how many documents were deleted.
    pub fn delete_collection(&self, name: &CollectionName) -> Result<u64, StoreError> {
        self.write_tx(|tx| {
            let mut c = require_live(&tx.tx, name)?;
            let deleted = tombstone_all(tx, name)?;
            c.deleted = true;
            c.stamp = tx.stamp();
            put(tx, &c)?;
            Ok(deleted)
        })
    }
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
        let id = ragsync_core::DocId::from_stored(id);
        let mut state = decode_state(&state)?;
        let stamp = tx.stamp();
        state.delete(stamp);
        // Every state read above is live.
        store_state(tx, collection, &id, &state, Some(false))?;
    }
    Ok(n)
}
