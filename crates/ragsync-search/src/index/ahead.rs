//! Whether the index covers a collection's changes, and the waits of queries for it. The
//! watermark covers the feed in order; while another collection's backlog holds it back, a
//! waiting query's collection has its few rows past it indexed ahead of the feed.

use std::time::Duration;

use ragsync_core::CollectionName;

use super::state::{State, unawait};
use super::{IndexError, SearchIndex, index_doc};

/// Most rows of one collection past the watermark that a waiting query has indexed ahead of
/// the feed ([`SearchIndex::wait_indexed`]); a collection with more is itself the backlog, and
/// waits for the feed's order.
const AHEAD_ROWS: usize = 4096;

impl SearchIndex {
    /// Whether collection `name`'s committed index covers feed `seq`: the watermark is past
    /// it, or the collection's own rows up to it were indexed ahead of the feed.
    pub fn covers(&self, name: &CollectionName, seq: u64) -> bool {
        *self.indexed.borrow() >= seq || self.ahead_through(name) >= seq
    }

    fn ahead_through(&self, name: &CollectionName) -> u64 {
        let ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        ahead.get(name).copied().unwrap_or(0)
    }

    /// Waits until collection `name`'s index covers the feed up to `seq`, at most `timeout`.
    /// True when it does. While the watermark is behind (another collection's backlog), the
    /// indexer indexes this collection's rows ahead of the feed when they are few.
    pub async fn wait_indexed(&self, name: &CollectionName, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.indexed.subscribe();
        if !self.covers(name, seq) {
            self.wanted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone());
            self.urgent.notify_one();
        }
        // Woken by every commit and every index ahead; the watch's value is not borrowed again.
        let wait = rx.wait_for(|s| *s >= seq || self.ahead_through(name) >= seq);
        tokio::time::timeout(timeout, wait)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Between two pages of a backlog: indexes ahead of the feed the rows of the collections
    /// whose queries wait, when they are few ([`AHEAD_ROWS`]), and commits their indexes (not
    /// the watermark), so one
    /// collection's bulk load does not hold up another's queries. Replaying those rows from
    /// the feed later is harmless, as any replay is: a document's chunks are replaced whole,
    /// and the feed holds each document's latest change. A collection whose record changed
    /// past what was applied (a rebuild or drop to come) waits for the feed's order.
    pub(super) fn index_ahead(&self, state: &mut State) -> Result<(), IndexError> {
        let wanted = std::mem::take(&mut *self.wanted.lock().unwrap_or_else(|e| e.into_inner()));
        let mut any = false;
        for name in wanted {
            let Some(ci) = self.coll(&name) else { continue };
            let rows = self
                .store
                .collection_changes(&name, state.applied, AHEAD_ROWS)?;
            if rows.has_more || rows.record_seq.is_none_or(|s| s > state.applied) {
                continue;
            }
            for (_, id, doc) in rows.docs.iter().filter(|(seq, ..)| *seq > ci.built_through) {
                unawait(state, &name, id);
                let d = index_doc(&ci, id, doc, |c| self.store.content(c))?;
                if self.index_vectors(&ci, &name, id, d, state)? {
                    self.enqueue(&name, id);
                }
            }
            // Also commits the rows of this collection applied from the feed so far.
            ci.writer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .commit(&ci.reader)?;
            let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
            let through = ahead.entry(name).or_default();
            *through = (*through).max(rows.head);
            any = true;
        }
        if any {
            self.indexed.send_modify(|_| {});
        }
        Ok(())
    }
}
