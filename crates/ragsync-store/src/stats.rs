//! Counts for the status endpoint.

use serde::Serialize;

use crate::{Store, StoreError, collections, feed};

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub collections: u64,
    pub documents: u64,
    pub tombstones: u64,
    pub contents: u64,
    pub content_bytes: u64,
    pub head_seq: u64,
    /// Rows from peers parked because they could not be applied.
    pub parked: u64,
    /// Contents referenced by replicated states and not fetched yet.
    pub wanted: u64,
}

impl Store {
    /// Counts of what this node stores, read in one snapshot.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        self.read(|tx| {
            let count = |sql: &str| -> Result<u64, StoreError> {
                Ok(tx.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
            };
            Ok(Stats {
                collections: count(&format!(
                    "SELECT count(*) FROM collections WHERE {}",
                    collections::SHOWS
                ))?,
                // Documents show only while their collection has a record (see
                // `merge_remote`); a deleted one with live documents shows them (see
                // `collections.rs`). Kept by every write (see `counts.rs`): no scan of the
                // documents or contents.
                documents: count(
                    "SELECT coalesce(sum(n.live), 0) FROM doc_counts n JOIN collections c \
                     ON c.name = n.collection",
                )?,
                tombstones: count("SELECT coalesce(sum(tombstones), 0) FROM doc_counts")?,
                contents: count("SELECT contents FROM content_counts")?,
                content_bytes: count("SELECT bytes FROM content_counts")?,
                head_seq: feed::head_seq(tx)?,
                parked: count("SELECT count(*) FROM parked")?,
                wanted: count("SELECT count(*) FROM wanted")?,
            })
        })
    }
}
