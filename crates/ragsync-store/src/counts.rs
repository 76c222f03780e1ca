//! Document and content counts kept beside the rows they count, so that `/v1/status` reads a
//! few rows instead of scanning every document and content (SQLite keeps no row counts).
//!
//! A write transaction gathers what its changes do to the counts ([`Deltas`]) and writes them
//! before it commits, with one statement per collection touched, in the same transaction as
//! the rows; a savepoint that rolls back puts the gathered deltas back as they were when it
//! opened. *Invariant:* every change to `docs` goes through `store_state` and every
//! content stored through `contents::put`, the two places that gather.

use ragsync_core::CollectionName;
use rusqlite::{Transaction, params};

use crate::StoreError;

/// Changes to the counts not written yet.
#[derive(Clone, Debug, Default)]
pub(crate) struct Deltas {
    /// (collection, live documents, tombstones), one entry per run of changes to one
    /// collection.
    docs: Vec<(CollectionName, i64, i64)>,
    contents: i64,
    content_bytes: i64,
}

impl Deltas {
    /// A document of `collection` stored as live or deleted, over a stored state that was
    /// live, deleted, or none (`was_deleted`).
    pub(crate) fn state_stored(
        &mut self,
        collection: &CollectionName,
        was_deleted: Option<bool>,
        deleted: bool,
    ) {
        let (mut live, mut tombstones) = (0, 0);
        match was_deleted {
            Some(true) => tombstones -= 1,
            Some(false) => live -= 1,
            None => {}
        }
        if deleted {
            tombstones += 1;
        } else {
            live += 1;
        }
        match self.docs.last_mut() {
            Some((c, l, t)) if c == collection => {
                *l += live;
                *t += tombstones;
            }
            _ => self.docs.push((collection.clone(), live, tombstones)),
        }
    }

    /// A content of `len` bytes stored.
    pub(crate) fn content_stored(&mut self, len: usize) {
        self.contents += 1;
        self.content_bytes += len as i64;
    }

    /// Writes the changes gathered into the counts, in `tx`, and forgets them.
    pub(crate) fn write(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        for (c, live, tombstones) in self.docs.drain(..) {
            if (live, tombstones) != (0, 0) {
                tx.prepare_cached(
                    "INSERT INTO doc_counts (collection, live, tombstones) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (collection) DO UPDATE SET live = live + excluded.live, \
                     tombstones = tombstones + excluded.tombstones",
                )?
                .execute(params![c.as_str(), live, tombstones])?;
            }
        }
        if self.contents != 0 {
            tx.prepare_cached(
                "UPDATE content_counts SET contents = contents + ?1, bytes = bytes + ?2",
            )?
            .execute(params![self.contents, self.content_bytes])?;
        }
        *self = Deltas::default();
        Ok(())
    }
}

/// The counts' tables, filled by counting the rows already there (schema migration 12).
/// Applied again over tables it made, it counts again. A later migration that changes
/// documents or contents with its own SQL, outside `store_state` and `contents::put`, must
/// count again in its own step (this text is shipped and stays as it is).
pub(crate) const MIGRATION: &str = r#"
    CREATE TABLE IF NOT EXISTS doc_counts (
        collection TEXT PRIMARY KEY,
        live       INTEGER NOT NULL,
        tombstones INTEGER NOT NULL
    ) WITHOUT ROWID;
    DELETE FROM doc_counts;
    INSERT INTO doc_counts (collection, live, tombstones)
        SELECT collection, sum(deleted = 0), sum(deleted != 0) FROM docs GROUP BY collection;
    CREATE TABLE IF NOT EXISTS content_counts (
        contents INTEGER NOT NULL,
        bytes    INTEGER NOT NULL
    );
    DELETE FROM content_counts;
    INSERT INTO content_counts (contents, bytes)
        SELECT count(*), coalesce(sum(len), 0) FROM contents;
"#;
