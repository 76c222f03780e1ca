//! Counts for the status endpoint.

use serde::Serialize;

use crate::{Store, StoreError, feed};

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
                collections: count("SELECT count(*) FROM collections WHERE deleted = 0")?,
                // Documents show only while their collection is live (see `merge_remote`).
                documents: count(
                    "SELECT count(*) FROM docs d JOIN collections c \
                     ON c.name = d.collection AND c.deleted = 0 WHERE d.deleted = 0",
                )?,
                tombstones: count("SELECT count(*) FROM docs WHERE deleted = 1")?,
                contents: count("SELECT count(*) FROM contents")?,
                content_bytes: count("SELECT coalesce(sum(len), 0) FROM contents")?,
                head_seq: feed::head_seq(tx)?,
                parked: count("SELECT count(*) FROM parked")?,
                wanted: count("SELECT count(*) FROM wanted")?,
            })
        })
    }
}
