//! The replication apply path: pages of a peer's feed applied together with that peer's
//! cursor, rows a peer pushes applied the same way (without a cursor: the pusher keeps it),
//! and the rows that cannot be applied, parked.
//!
//! Invariants:
//! - a page's rows and the cursor after them commit in one transaction: a crash leaves both or
//!   neither, so no row is skipped and none is lost;
//! - each row applies through the same merge as [`Store::merge_remote`], under a savepoint;
//! - a row refused for what it is ([`StoreError::is_invalid_row`]) is parked, with its reason,
//!   in the same transaction that moves the cursor past it: it never wedges the link and is
//!   never silently dropped; [`Store::retry_parked`] applies it again;
//! - a transient failure stops the cursor at the row before it: the rows before it commit,
//!   and the failed row is the first of the next try;
//! - the cursor moves to the page's `next_since` only when every row was examined, and never
//!   past the head the peer reported for the page;
//! - a page whose rows are all known here writes nothing (its cursor is kept by the caller)
//!   until the durable cursor lags by [`CURSOR_LAG_ROWS`].

use std::cell::RefCell;
use std::collections::BTreeMap;

use ragsync_core::{ContentId, Epoch, NodeId};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::docs::{Carried, merge_doc};
use crate::embeddings::{self, ContentEmbeddings};
use crate::feed::{FeedEntry, FeedItem};
use crate::tx::WriteTx;
use crate::{Store, StoreError, collections};

/// How far the durable cursor may lag the applied one over pages that changed nothing.
const CURSOR_LAG_ROWS: u64 = 1024;

/// Where replication from one peer stands: the peer's database incarnation and the last
/// `seq` of its feed applied here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: Epoch,
    pub since: u64,
}

/// One page of a peer's feed, as received.
#[derive(Clone, Debug)]
pub struct Page<'a> {
    pub peer: NodeId,
    pub epoch: Epoch,
    /// The `since` the page was asked for: the cursor this page starts from.
    pub since: u64,
    pub rows: &'a [FeedEntry],
    /// Contents that travelled with the page, by id (checked against their ids when used).
    pub inline: &'a BTreeMap<ContentId, Vec<u8>>,
    /// Embeddings that travelled with the page (stored unless this node has them).
    pub embeddings: &'a [ContentEmbeddings],
    /// The last `seq` the peer examined for this page.
    pub next_since: u64,
    /// The peer's feed head when it read the page.
    pub head: u64,
}

/// What applying a page did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Rows that changed something here.
    pub changed: usize,
    /// Rows already known here.
    pub unchanged: usize,
    /// Rows parked, by `seq`, with the error code and reason.
    pub parked: Vec<(u64, &'static str, String)>,
    /// The cursor after the page.
    pub cursor: u64,
    /// The transient failure that stopped the page before the row after `cursor`.
    pub stopped: Option<StoreError>,
}

/// What applying pushed rows did.
#[derive(Debug, Default)]
pub struct Pushed {
    /// Rows merged here (changed or already known), by `seq`.
    pub applied: Vec<u64>,
    /// How many of them changed something.
    pub changed: usize,
    /// Rows refused for what they are and parked here, with the error code and reason.
    pub parked: Vec<(u64, &'static str, String)>,
    /// The row a transient failure stopped at (not applied, nor any after it).
    pub stopped: Option<(u64, &'static str, String)>,
}

/// A row parked because it could not be applied.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Parked {
    pub peer: NodeId,
    pub seq: u64,
    pub item: FeedItem,
    pub code: String,
    pub reason: String,
    pub parked_at_ms: u64,
}

impl Store {
    /// The cursor of `peer`, when replication from it has applied anything.
    pub fn cursor(&self, peer: NodeId) -> Result<Option<Cursor>, StoreError> {
        self.read(|tx| read_cursor(tx, peer))
    }

    /// Applies one page of `page.peer`'s feed and stores the cursor after it, in one
    /// transaction; see the module docs. A `next_since` past the page's head, or before its
    /// own rows, is refused whole (`invalid_page`), moving nothing.
    pub fn apply_page(&self, page: &Page<'_>) -> Result<Applied, StoreError> {
        let last_row = page.rows.last().map(|r| r.seq);
        let first_row = page.rows.first().map(|r| r.seq);
        if page.next_since > page.head
            || page.next_since < page.since
            || last_row.is_some_and(|s| s > page.next_since)
            || first_row.is_some_and(|s| s <= page.since)
        {
            return Err(StoreError::InvalidPage(format!(
                "next_since {} with rows up to {last_row:?} and head {}",
                page.next_since, page.head
            )));
        }
        if page.rows.windows(2).any(|w| w[0].seq >= w[1].seq) {
            return Err(StoreError::InvalidPage("rows not in seq order".into()));
        }
        let now_ms = self.now_ms();
        self.write_tx_pulled(|tx| {
            let start = read_cursor(&tx.tx, page.peer)?
                .filter(|c| c.epoch == page.epoch)
                .map_or(0, |c| c.since);
            let won = RefCell::default();
            let carried = Carried {
                contents: page.inline,
                won: Some(&won),
            };
            let rows = apply_rows(tx, page.peer, page.rows, carried, now_ms)?;
            embeddings::receive(&tx.tx, page.embeddings, &won.borrow())?;
            let mut out = Applied {
                cursor: rows.last_examined.unwrap_or(page.since),
                ..Applied::default()
            };
            for (seq, result) in rows.results {
                match result {
                    RowResult::Changed => out.changed += 1,
                    RowResult::Unchanged => out.unchanged += 1,
                    RowResult::Parked(code, reason) => out.parked.push((seq, code, reason)),
                }
            }
            out.stopped = rows.stopped.map(|(_, e)| e);
            if out.stopped.is_none() {
                out.cursor = page.next_since;
            }
            // A page of rows all known here (a mesh echoes every change back) writes nothing
            // until the durable cursor lags by CURSOR_LAG_ROWS: the caller keeps the cursor,
            // and after a crash those rows are read again and change nothing.
            let lagging = out.cursor.saturating_sub(start) >= CURSOR_LAG_ROWS;
            // A cursor that moved back (the peer was reset) is written at once: a crash must
            // not resume from the old, higher one.
            let moved_back = out.cursor < start;
            if out.changed > 0 || !out.parked.is_empty() || lagging || moved_back || start == 0 {
                write_cursor(tx, page.peer, page.epoch, out.cursor)?;
            }
            Ok(out)
        })
    }

    /// Applies rows pushed by node `from` (`POST /v1/sync/changes`), through the same merge
    /// and parking as a pulled page, in one transaction. No cursor is kept on this side: the
    /// pusher keeps its own, from the answer. Rows must come in `seq` order.
    pub fn apply_pushed(
        &self,
        from: NodeId,
        rows: &[FeedEntry],
        inline: &BTreeMap<ContentId, Vec<u8>>,
        embeddings: &[ContentEmbeddings],
    ) -> Result<Pushed, StoreError> {
        if rows.windows(2).any(|w| w[0].seq >= w[1].seq) {
            return Err(StoreError::InvalidPage("rows not in seq order".into()));
        }
        let now_ms = self.now_ms();
        self.write_tx(|tx| {
            let won = RefCell::default();
            let carried = Carried {
                contents: inline,
                won: Some(&won),
            };
            let rows = apply_rows(tx, from, rows, carried, now_ms)?;
            embeddings::receive(&tx.tx, embeddings, &won.borrow())?;
            let applied = rows
                .results
                .iter()
                .filter(|(_, r)| !matches!(r, RowResult::Parked(..)));
            let mut out = Pushed {
                applied: applied.map(|(seq, _)| *seq).collect(),
                changed: rows
                    .results
                    .iter()
                    .filter(|(_, r)| matches!(r, RowResult::Changed))
                    .count(),
                parked: Vec::new(),
                stopped: rows.stopped.map(|(seq, e)| (seq, e.code(), e.to_string())),
            };
            for (seq, r) in rows.results {
                if let RowResult::Parked(code, reason) = r {
                    out.parked.push((seq, code, reason));
                }
            }
            Ok(out)
        })
    }

    /// Rows parked from `peer` (or from every peer), oldest first.
    pub fn parked(&self, peer: Option<NodeId>) -> Result<Vec<Parked>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT peer, seq, item, code, reason, parked_at_ms FROM parked \
                 WHERE ?1 IS NULL OR peer = ?1 ORDER BY parked_at_ms, peer, seq",
            )?;
            let rows = stmt.query_map([peer.map(|p| p.to_string())], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            rows.map(|r| {
                let (peer, seq, item, code, reason, at) = r?;
                let corrupt = |what: &str| StoreError::Corrupt(format!("a parked row's {what}"));
                Ok(Parked {
                    peer: peer.parse().map_err(|_| corrupt("peer"))?,
                    seq: seq as u64,
                    item: serde_json::from_slice(&item).map_err(|_| corrupt("item"))?,
                    code,
                    reason,
                    parked_at_ms: at as u64,
                })
            })
            .collect()
        })
    }

    /// Applies the parked rows of `peer` (or of every peer) again: a row that applies now
    /// leaves the parking, one still refused stays with its new reason. Stops at a transient
    /// failure. Returns how many rows applied.
    pub fn retry_parked(&self, peer: Option<NodeId>) -> Result<usize, StoreError> {
        let parked = self.parked(peer)?;
        let now_ms = self.now_ms();
        let none = Carried {
            contents: &BTreeMap::new(),
            won: None,
        };
        self.write_tx(|tx| {
            let mut applied = 0;
            for p in &parked {
                match apply_row(tx, &p.item, none) {
                    Ok(_) => {
                        tx.tx
                            .prepare_cached("DELETE FROM parked WHERE peer = ?1 AND seq = ?2")?
                            .execute(params![p.peer.to_string(), p.seq as i64])?;
                        applied += 1;
                    }
                    Err(e) if e.is_invalid_row() => {
                        let row = FeedEntry {
                            seq: p.seq,
                            item: p.item.clone(),
                        };
                        park(tx, p.peer, &row, &e, now_ms)?;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retry of parked rows stopped");
                        break;
                    }
                }
            }
            Ok(applied)
        })
    }
}

/// What became of one row.
enum RowResult {
    Changed,
    Unchanged,
    /// Refused for what it is; parked with its error code and reason.
    Parked(&'static str, String),
}

/// The outcome of a run of rows: each row examined, and the transient failure (with the row's
/// `seq`) that stopped the run before the rest.
struct RowsApplied {
    results: Vec<(u64, RowResult)>,
    last_examined: Option<u64>,
    stopped: Option<(u64, StoreError)>,
}

/// The one loop both a pulled page and a pushed one go through: each row merged under its own
/// savepoint, a row refused for what it is parked (in this transaction), a transient failure
/// stopping the run before its row.
///
/// A savepoint copies every page it first changes to the statement journal, so one per row
/// cost a copy of several 16 KiB pages per row. Rows are first applied all together under
/// one savepoint; only when one of them fails is that undone and the page applied again row
/// by row, with the same outcome the row-by-row loop alone would have had.
fn apply_rows(
    tx: &mut WriteTx<'_>,
    peer: NodeId,
    rows: &[FeedEntry],
    carried: Carried<'_>,
    now_ms: u64,
) -> Result<RowsApplied, StoreError> {
    if let Some(all) = apply_all_or_none(tx, rows, carried)? {
        return Ok(all);
    }
    // Undone with the rows: what they noted is noted again, row by row.
    if let Some(won) = carried.won {
        won.borrow_mut().clear();
    }
    let mut out = RowsApplied {
        results: Vec::with_capacity(rows.len()),
        last_examined: None,
        stopped: None,
    };
    for row in rows {
        let result = match apply_row(tx, &row.item, carried) {
            Ok(true) => RowResult::Changed,
            Ok(false) => RowResult::Unchanged,
            Err(e) if e.is_invalid_row() => {
                park(tx, peer, row, &e, now_ms)?;
                RowResult::Parked(e.code(), e.to_string())
            }
            Err(e) => {
                out.stopped = Some((row.seq, e));
                break;
            }
        };
        out.results.push((row.seq, result));
        out.last_examined = Some(row.seq);
    }
    Ok(out)
}

/// Every row of `rows` merged under one savepoint; `None`, with nothing left behind, when
/// any row fails.
fn apply_all_or_none(
    tx: &mut WriteTx<'_>,
    rows: &[FeedEntry],
    carried: Carried<'_>,
) -> Result<Option<RowsApplied>, StoreError> {
    let all = tx.under_savepoint(|tx| {
        rows.iter()
            .map(|row| {
                let r = match merge_item(tx, &row.item, carried)? {
                    true => RowResult::Changed,
                    false => RowResult::Unchanged,
                };
                Ok((row.seq, r))
            })
            .collect::<Result<Vec<_>, StoreError>>()
    })?;
    Ok(all.ok().map(|results| RowsApplied {
        results,
        last_examined: rows.last().map(|r| r.seq),
        stopped: None,
    }))
}

fn merge_item(
    tx: &mut WriteTx<'_>,
    item: &FeedItem,
    carried: Carried<'_>,
) -> Result<bool, StoreError> {
    match item {
        FeedItem::Doc {
            collection,
            id,
            state,
        } => merge_doc(tx, collection, id, state, carried),
        FeedItem::Collection(c) => collections::merge_collection(tx, c),
    }
}

/// One row, under a savepoint: a refused row leaves nothing behind.
fn apply_row(
    tx: &mut WriteTx<'_>,
    item: &FeedItem,
    carried: Carried<'_>,
) -> Result<bool, StoreError> {
    tx.under_savepoint(|tx| merge_item(tx, item, carried))?
}

fn park(
    tx: &WriteTx<'_>,
    peer: NodeId,
    row: &FeedEntry,
    e: &StoreError,
    now_ms: u64,
) -> Result<(), StoreError> {
    let item = serde_json::to_vec(&row.item).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tracing::warn!(
        target: "ragsync::audit",
        %peer,
        seq = row.seq,
        code = e.code(),
        reason = %e,
        "refused a replicated row; parked"
    );
    tx.tx
        .prepare_cached(
            "INSERT OR REPLACE INTO parked (peer, seq, item, code, reason, parked_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            peer.to_string(),
            row.seq as i64,
            item,
            e.code(),
            e.to_string(),
            now_ms as i64
        ])?;
    Ok(())
}

fn read_cursor(tx: &Transaction<'_>, peer: NodeId) -> Result<Option<Cursor>, StoreError> {
    read_cursor_in(tx, "peer_cursors", peer)
}

/// The cursor of `peer` in `table` (`peer_cursors`, pulled; `push_cursors`, pushed).
pub(crate) fn read_cursor_in(
    tx: &Transaction<'_>,
    table: &str,
    peer: NodeId,
) -> Result<Option<Cursor>, StoreError> {
    let row: Option<(String, i64)> = tx
        .prepare_cached(&format!("SELECT epoch, since FROM {table} WHERE peer = ?1"))?
        .query_row([peer.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(epoch, since)| {
        Ok(Cursor {
            epoch: epoch
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("an epoch in {table}")))?,
            since: since as u64,
        })
    })
    .transpose()
}

fn write_cursor(
    tx: &WriteTx<'_>,
    peer: NodeId,
    epoch: Epoch,
    since: u64,
) -> Result<(), StoreError> {
    write_cursor_in(tx, "peer_cursors", peer, Cursor { epoch, since })
}

pub(crate) fn write_cursor_in(
    tx: &WriteTx<'_>,
    table: &str,
    peer: NodeId,
    c: Cursor,
) -> Result<(), StoreError> {
    tx.tx
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO {table} (peer, epoch, since) VALUES (?1, ?2, ?3)"
        ))?
        .execute(params![
            peer.to_string(),
            c.epoch.to_string(),
            c.since as i64
        ])?;
    Ok(())
}
