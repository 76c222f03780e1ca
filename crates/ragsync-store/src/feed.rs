//! The change feed: every document and collection row by the `seq` of its latest change.
//!
//! A page holds the rows with `seq > since`, in `seq` order, at most `limit` of them, read in
//! one snapshot. `next_since` is the `seq` of the last row in the page (the last row
//! *examined*), never the feed's head, so a cut page cannot skip the rows after it; when the
//! page is empty it is `since` itself.

use ragsync_core::{CollectionName, DocId, DocState};
use rusqlite::{Connection, params};

use crate::collections::{self, Collection};
use crate::docs::decode_state;
use crate::{Store, StoreError};

#[derive(Clone, Debug)]
pub enum FeedItem {
    Doc {
        collection: CollectionName,
        id: DocId,
        state: DocState,
    },
    Collection(Collection),
}

#[derive(Clone, Debug)]
pub struct FeedEntry {
    pub seq: u64,
    pub item: FeedItem,
}

#[derive(Clone, Debug)]
pub struct ChangesPage {
    pub entries: Vec<FeedEntry>,
    pub next_since: u64,
    pub has_more: bool,
    /// The feed's head when the page was read.
    pub head: u64,
}

/// The greatest `seq` given out, 0 when none.
pub(crate) fn head_seq(conn: &Connection) -> Result<u64, StoreError> {
    let head: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(seq) FROM docs), 0), \
                    coalesce((SELECT max(seq) FROM collections), 0))",
        [],
        |r| r.get(0),
    )?;
    Ok(head as u64)
}

impl Store {
    /// The greatest `seq` given out.
    pub fn head_seq(&self) -> Result<u64, StoreError> {
        self.read(|tx| head_seq(tx))
    }

    /// One page of the change feed; see the module docs.
    pub fn changes(&self, since: u64, limit: usize) -> Result<ChangesPage, StoreError> {
        let limit = limit.max(1);
        self.read(|tx| {
            let mut entries: Vec<FeedEntry> = collections::select_feed(tx, since, limit + 1)?
                .into_iter()
                .map(|(seq, c)| FeedEntry { seq, item: FeedItem::Collection(c) })
                .collect();
            let mut stmt = tx.prepare_cached(
                "SELECT seq, collection, doc_id, state FROM docs WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![since as i64, (limit + 1) as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Vec<u8>>(3)?))
            })?;
            for row in rows {
                let (seq, collection, id, state) = row?;
                let corrupt = |e: ragsync_core::CoreError| StoreError::Corrupt(e.to_string());
                entries.push(FeedEntry {
                    seq: seq as u64,
                    item: FeedItem::Doc {
                        collection: CollectionName::new(collection).map_err(corrupt)?,
                        id: DocId::new(id).map_err(corrupt)?,
                        state: decode_state(&state)?,
                    },
                });
            }
            entries.sort_by_key(|e| e.seq);
            let has_more = entries.len() > limit;
            entries.truncate(limit);
            let next_since = entries.last().map_or(since, |e| e.seq);
            Ok(ChangesPage { entries, next_since, has_more, head: head_seq(tx)? })
        })
    }
}
