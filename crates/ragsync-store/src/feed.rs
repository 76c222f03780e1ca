//! The change feed: every document and collection row by the `seq` of its latest change.
//!
//! A page holds the rows with `seq > since`, in `seq` order, at most `limit` of them, and the
//! small contents they reference, read in one snapshot. A page is also cut before the row that
//! would take its inline contents past [`InlinePolicy::max_page_bytes`] (it always keeps its
//! first row). `next_since` is the `seq` of the last row in the page (the last row
//! *examined*), never the feed's head, so a cut page cannot skip the rows after it; when the
//! page is empty it is `since` itself.
//!
//! A *window* page ([`Store::changes_window`]) holds only rows with `since < seq <= until`.
//! When it holds every such row (not cut, nothing more in the window), its `next_since` is
//! `until` (or the head, when `until` is past it): the page read in one snapshot shows every
//! commit up to the head, as `seq`s become visible in commit order. Windows with known ends
//! let a reader ask for several pages at once (pipelining over a long link).

use std::collections::HashSet;

use ragsync_core::{CollectionName, ContentId, DocId, DocState};
use rusqlite::{Connection, OptionalExtension, params};

use crate::collections::{self, Collection};
use crate::embeddings::{self, ContentEmbeddings};
use crate::tx::decode_state;
use crate::{Store, StoreError, contents, meta_get, parse_meta};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedItem {
    Doc {
        collection: CollectionName,
        id: DocId,
        state: DocState,
    },
    Collection(Collection),
}

impl FeedItem {
    /// The contents the row's versions reference (none for a collection record).
    pub fn content_ids(&self) -> impl Iterator<Item = ContentId> + '_ {
        let versions = match self {
            FeedItem::Doc { state, .. } => state.versions(),
            FeedItem::Collection(_) => &[],
        };
        versions
            .iter()
            .filter_map(|v| v.content.as_ref().map(|c| c.cid))
    }
}

#[derive(Clone, Debug)]
pub struct FeedEntry {
    pub seq: u64,
    pub item: FeedItem,
}

/// Which contents travel inside a feed page.
#[derive(Clone, Copy, Debug)]
pub struct InlinePolicy {
    /// Contents up to this size are inlined.
    pub max_content_bytes: u64,
    /// The inlined contents of one page add up to at most this (but for its first row).
    pub max_page_bytes: u64,
    /// Whether the page carries the stored embeddings of its contents (for peers; the
    /// node's own indexer reads them by chunk instead).
    pub embeddings: bool,
}

#[derive(Clone, Debug)]
pub struct ChangesPage {
    pub entries: Vec<FeedEntry>,
    /// The inlined contents, by id, each once.
    pub contents: Vec<(ContentId, Vec<u8>)>,
    /// The stored embeddings of the contents the rows reference (all of them, inlined or
    /// not), so a peer with the same model does not compute them again.
    pub embeddings: Vec<ContentEmbeddings>,
    pub next_since: u64,
    pub has_more: bool,
    /// The feed's head when the page was read.
    pub head: u64,
}

/// One collection's documents changed past a `seq`, read in one snapshot: see
/// [`Store::collection_changes`].
#[derive(Clone, Debug)]
pub struct CollectionChanges {
    /// The feed's head in that snapshot: every change of the collection up to it is here.
    pub head: u64,
    /// The `seq` of the collection's own record (`None` when it has none).
    pub record_seq: Option<u64>,
    /// The documents' rows, by `seq`, at most `limit` of them.
    pub docs: Vec<(u64, DocId, DocState)>,
    /// More rows than `limit` changed.
    pub has_more: bool,
}

impl ChangesPage {
    /// Keeps only the rows of `only` (and the contents they reference); `next_since` is kept,
    /// so a reader still moves past the rows left out.
    pub fn retain_collections(&mut self, only: &[CollectionName]) {
        self.entries.retain(|e| match &e.item {
            FeedItem::Doc { collection, .. } => only.contains(collection),
            FeedItem::Collection(c) => only.contains(&c.name),
        });
        let kept: HashSet<ContentId> = self
            .entries
            .iter()
            .flat_map(|e| e.item.content_ids())
            .collect();
        self.contents.retain(|(cid, _)| kept.contains(cid));
        self.embeddings.retain(|e| kept.contains(&e.content));
    }
}

/// The greatest `seq` given out, 0 when none: the durable high-water mark, or the rows' own
/// (for a database written before the mark existed).
pub(crate) fn head_seq(conn: &Connection) -> Result<u64, StoreError> {
    let rows: i64 = conn.query_row(
        "SELECT max(coalesce((SELECT max(seq) FROM docs), 0), \
                    coalesce((SELECT max(seq) FROM collections), 0))",
        [],
        |r| r.get(0),
    )?;
    let mark: u64 = match meta_get(conn, "seq")? {
        Some(v) => parse_meta(&v, "seq")?,
        None => 0,
    };
    Ok((rows as u64).max(mark))
}

impl Store {
    /// The greatest `seq` given out.
    pub fn head_seq(&self) -> Result<u64, StoreError> {
        self.read(|tx| head_seq(tx))
    }

    /// One page of the change feed; see the module docs.
    pub fn changes(
        &self,
        since: u64,
        limit: usize,
        inline: InlinePolicy,
    ) -> Result<ChangesPage, StoreError> {
        self.feed_page(since, None, limit, inline)
    }

    /// The rows of collection `name`'s documents with `seq > since`, in `seq` order, at most
    /// `limit`, with the head and the collection record's `seq` of the same snapshot. Reads
    /// the collection's rows or the feed past `since`, whichever is fewer (by the kept counts),
    /// so a small collection is cheap beside a long backlog and a large one beside a short one.
    pub fn collection_changes(
        &self,
        name: &CollectionName,
        since: u64,
        limit: usize,
    ) -> Result<CollectionChanges, StoreError> {
        let since = since.min(i64::MAX as u64);
        self.read(|tx| {
            let record_seq: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM collections WHERE name = ?1",
                    [name.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let head = head_seq(tx)?;
            let size: Option<i64> = tx
                .query_row(
                    "SELECT live + tombstones FROM doc_counts WHERE collection = ?1",
                    [name.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            let by_collection = size.unwrap_or(0) as u64 <= head.saturating_sub(since);
            let mut stmt = tx.prepare_cached(if by_collection {
                "SELECT seq, doc_id, state FROM docs \
                 WHERE collection = ?2 AND seq > ?1 ORDER BY seq LIMIT ?3"
            } else {
                "SELECT seq, doc_id, state FROM docs INDEXED BY docs_by_seq \
                 WHERE seq > ?1 AND collection = ?2 ORDER BY seq LIMIT ?3"
            })?;
            let rows = stmt.query_map(
                params![since as i64, name.as_str(), (limit + 1) as i64],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )?;
            let mut docs = Vec::new();
            for row in rows {
                let (seq, id, state) = row?;
                docs.push((seq as u64, DocId::from_stored(id), decode_state(&state)?));
            }
            let has_more = docs.len() > limit;
            docs.truncate(limit);
            Ok(CollectionChanges {
                head,
                record_seq: record_seq.map(|s| s as u64),
                docs,
                has_more,
            })
        })
    }

    /// One page of the window `since < seq <= until` of the change feed; see the module docs.
    pub fn changes_window(
        &self,
        since: u64,
        until: u64,
        limit: usize,
        inline: InlinePolicy,
    ) -> Result<ChangesPage, StoreError> {
        self.feed_page(since, Some(until.max(since)), limit, inline)
    }

    fn feed_page(
        &self,
        since: u64,
        until: Option<u64>,
        limit: usize,
        inline: InlinePolicy,
    ) -> Result<ChangesPage, StoreError> {
        let limit = limit.max(1);
        let since = since.min(i64::MAX as u64);
        let last = until.unwrap_or(u64::MAX).min(i64::MAX as u64);
        self.read(|tx| {
            let mut entries: Vec<FeedEntry> = collections::select_feed(tx, since, last, limit + 1)?
                .into_iter()
                .map(|(seq, c)| FeedEntry { seq, item: FeedItem::Collection(c) })
                .collect();
            let mut stmt = tx.prepare_cached(
                "SELECT seq, collection, doc_id, state FROM docs WHERE seq > ?1 AND seq <= ?3 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![since as i64, (limit + 1) as i64, last as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Vec<u8>>(3)?))
            })?;
            for row in rows {
                let (seq, collection, id, state) = row?;
                let corrupt = |e: ragsync_core::CoreError| StoreError::Corrupt(e.to_string());
                entries.push(FeedEntry {
                    seq: seq as u64,
                    item: FeedItem::Doc {
                        collection: CollectionName::new(collection).map_err(corrupt)?,
                        id: DocId::from_stored(id),
                        state: decode_state(&state)?,
                    },
                });
            }
            entries.sort_by_key(|e| e.seq);
            let mut has_more = entries.len() > limit;
            entries.truncate(limit);
            let (kept, cids) = inline_cut(&entries, inline);
            if kept < entries.len() {
                entries.truncate(kept);
                has_more = true;
            }
            let contents = contents::read_small(tx, &cids, inline.max_content_bytes)?;
            let embeddings = if inline.embeddings {
                let mut referenced: Vec<ContentId> = entries.iter().flat_map(|e| e.item.content_ids()).collect();
                referenced.sort_unstable();
                referenced.dedup();
                embeddings::for_contents(tx, &referenced)?
            } else {
                Vec::new()
            };
            let head = head_seq(tx)?;
            let next_since = match until {
                // The whole window is here: it ends at `until`, or at the head before it.
                Some(until) if !has_more => until.min(head).max(since),
                _ => entries.last().map_or(since, |e| e.seq),
            };
            Ok(ChangesPage { entries, contents, embeddings, next_since, has_more, head })
        })
    }
}

/// How many leading entries fit the page's inline budget, and the contents they inline.
fn inline_cut(entries: &[FeedEntry], inline: InlinePolicy) -> (usize, Vec<ContentId>) {
    let mut seen = HashSet::new();
    let mut cids = Vec::new();
    let mut bytes = 0u64;
    for (i, e) in entries.iter().enumerate() {
        let FeedItem::Doc { state, .. } = &e.item else {
            continue;
        };
        let small = state
            .versions()
            .iter()
            .filter_map(|v| v.content.as_ref())
            .filter(|c| c.len <= inline.max_content_bytes && !seen.contains(&c.cid));
        let mut row_cids: Vec<ContentId> = Vec::new();
        let mut row_bytes = 0u64;
        for c in small {
            if !row_cids.contains(&c.cid) {
                row_cids.push(c.cid);
                row_bytes += c.len;
            }
        }
        if i > 0 && bytes + row_bytes > inline.max_page_bytes {
            return (i, cids);
        }
        bytes += row_bytes;
        seen.extend(row_cids.iter().copied());
        cids.extend(row_cids);
    }
    (entries.len(), cids)
}
