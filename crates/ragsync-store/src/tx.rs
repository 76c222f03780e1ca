//! The store's transaction seam: the one place that opens write transactions, gives out feed
//! `seq`s and encodes document states. Everything above it (documents, collections, the
//! replication apply path) speaks to the store through this narrow contract, which a future
//! backend (PostgreSQL for states, feed and cursors; object storage for contents) must keep:
//!
//! - **one writer at a time**: a write transaction sees every earlier commit and commits
//!   whole or not at all (states, contents, feed `seq`s, cursors, parked rows, clock marks);
//! - **states**: [`load`] and [`store_state`] read and write one document's whole state; every
//!   stored change takes the next `seq` ([`WriteTx::next_seq`]);
//! - **`seq`s become visible in commit order**: `seq`s only grow, are never given out twice
//!   (the high-water mark is kept apart from the rows), and a reader that sees a `seq` sees
//!   every smaller one, because `seq`s are allocated under the single writer and committed in
//!   that order (a backend with concurrent writers must allocate them at commit);
//! - **the clock**: a transaction ticks and observes a copy of the node's clock, kept only if
//!   it commits; the durable mark covers every stamp stored;
//! - **nothing changed, nothing written**: a transaction that stored no change commits no page.

use ragsync_core::{CollectionName, DocId, DocState, Hlc, HlcClock, NodeId, Stamp};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::counts::Deltas;
use crate::{Store, StoreError, Writer, meta_set};

/// An open write transaction with the node's clock and the next feed `seq`.
pub(crate) struct WriteTx<'a> {
    pub(crate) tx: Transaction<'a>,
    clock: &'a mut HlcClock,
    next_seq: u64,
    /// The last `seq` given to each collection's changes, in order of first change since
    /// the collection last changed (a batch to one collection is one entry).
    touched: Vec<(CollectionName, u64)>,
    /// What the transaction's changes do to the stored counts, not written yet.
    pub(crate) counts: Deltas,
    node: NodeId,
    now_ms: u64,
}

impl WriteTx<'_> {
    /// A fresh stamp, greater than every stamp this node issued or accepted.
    pub(crate) fn stamp(&mut self) -> Stamp {
        Stamp::new(self.clock.tick(self.now_ms), self.node)
    }

    /// Refuses, before anything moves, clock values from another node more than the drift
    /// bound ahead of local time.
    pub(crate) fn check_drift(
        &self,
        values: impl IntoIterator<Item = Hlc>,
    ) -> Result<(), StoreError> {
        for hlc in values {
            self.clock.check_drift(hlc, self.now_ms)?;
        }
        Ok(())
    }

    /// Takes in a clock value from another node: refused when it is more than the drift bound
    /// ahead of local time (the clock does not move), else the clock moves past it.
    pub(crate) fn observe_remote(&mut self, hlc: Hlc) -> Result<(), StoreError> {
        self.clock.check_drift(hlc, self.now_ms)?;
        self.clock.observe(hlc, self.now_ms)?;
        Ok(())
    }

    /// Runs `f` under a savepoint: when it fails, everything it did (rows, `seq`s, the
    /// clock) is undone and the rest of the transaction goes on. The outer error is a failure
    /// of the savepoint itself, which leaves the transaction unusable.
    pub(crate) fn under_savepoint<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<Result<T, StoreError>, StoreError> {
        self.tx.execute_batch("SAVEPOINT part")?;
        // What the transaction keeps beside its rows, each small (an entry per run of changes
        // to one collection): put back as it was when the part fails.
        let saved = (
            self.next_seq,
            self.clock.clone(),
            self.touched.clone(),
            self.counts.clone(),
        );
        let out = f(self);
        if out.is_ok() {
            self.tx.execute_batch("RELEASE part")?;
        } else {
            self.tx.execute_batch("ROLLBACK TO part; RELEASE part")?;
            let (next_seq, clock, touched, counts) = saved;
            self.next_seq = next_seq;
            *self.clock = clock;
            self.touched = touched;
            self.counts = counts;
        }
        Ok(out)
    }

    /// The `seq` for the next change, a change to `collection` (its record or a document).
    pub(crate) fn next_seq(&mut self, collection: &CollectionName) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        match self.touched.last_mut() {
            Some((c, last)) if c == collection => *last = s,
            _ => self.touched.push((collection.clone(), s)),
        }
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
        self.run_tx(&mut self.writer(), f)
    }

    /// [`Store::write_tx`] for a page pulled from a peer: when the node allows it, its commit
    /// does not wait for its sync, unless no commit has synced for [`crate::MAX_UNSYNCED`].
    /// Nothing is acknowledged by it: the peer keeps the rows, and this node's cursor of
    /// them is in the same commit, so a machine crash takes both back together (and a new
    /// epoch at the next start covers the `seq`s it may have served; see `Store::open`).
    pub(crate) fn write_tx_pulled<T>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut w = self.writer();
        if !self.unsynced_pulls || w.synced_at.elapsed() >= crate::MAX_UNSYNCED {
            return self.run_tx(&mut w, f);
        }
        w.conn.pragma_update(None, "synchronous", "NORMAL")?;
        w.unsynced = true;
        let out = self.run_tx_as_set(&mut w, f);
        if let Err(e) = self.sync_again(&mut w) {
            // The next commit tries again before it runs; this one stands.
            tracing::error!(error = %e, "cannot set the writer back to synced commits");
        }
        out
    }

    /// Puts the writer back to syncing every commit after an unsynced one.
    pub(crate) fn sync_again(&self, w: &mut Writer) -> Result<(), StoreError> {
        if w.unsynced {
            w.conn
                .pragma_update(None, "synchronous", self.durability.pragma())?;
            w.unsynced = false;
        }
        Ok(())
    }

    /// [`Store::write_tx`] with the writer already held.
    pub(crate) fn run_tx<T>(
        &self,
        w: &mut Writer,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Whatever failed to restore it before, this commit syncs as it should.
        self.sync_again(w)?;
        self.run_tx_as_set(w, f)
    }

    /// [`Store::run_tx`] with the writer's sync setting as it is.
    fn run_tx_as_set<T>(
        &self,
        w: &mut Writer,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let now_ms = self.now_ms();
        // The transaction ticks and observes a copy of the clock, kept only if it commits:
        // a refused request leaves even the clock as it was.
        let mut clock = w.clock.clone();
        let (out, next_seq, touched) = {
            let mut tx = WriteTx {
                tx: w.conn.transaction()?,
                clock: &mut clock,
                next_seq: w.next_seq,
                touched: Vec::new(),
                counts: Deltas::default(),
                node: self.node_id,
                now_ms,
            };
            let out = f(&mut tx)?;
            tx.counts.write(&tx.tx)?;
            // Every stored change takes a seq. With none, nothing was written: the commit
            // writes no page and syncs nothing (a mesh echoes every change back; merging
            // what is known must cost nothing). Stamps ticked without being stored were
            // never given to anyone, so the durable clock mark need not cover them.
            // After an unsynced pulled page, a synced commit must sync even when it stores
            // nothing new: what it acknowledges (a write found unchanged, a pushed row
            // already known) may rest on that page. Writing the clock mark makes it sync.
            let must_sync = w.behind_sync && !w.unsynced;
            if tx.next_seq != w.next_seq || must_sync {
                let hlc = tx.clock.last();
                meta_set(&tx.tx, "hlc", hlc.0.to_string().as_bytes())?;
                // Kept apart from the tables so that a seq is never given out twice, even
                // after the rows holding the highest ones are purged.
                meta_set(&tx.tx, "seq", (tx.next_seq - 1).to_string().as_bytes())?;
            }
            let next_seq = tx.next_seq;
            tx.tx.commit()?;
            (out, next_seq, tx.touched)
        };
        let wrote = next_seq != w.next_seq;
        if wrote {
            let mut heads = self
                .collection_heads
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            heads.extend(touched);
            drop(heads);
            self.head.send_replace(next_seq - 1);
        }
        if w.unsynced {
            w.behind_sync |= wrote;
        } else if wrote || w.behind_sync {
            // This commit synced the WAL, and with it every commit before it.
            w.behind_sync = false;
            w.synced_at = std::time::Instant::now();
        }
        w.next_seq = next_seq;
        w.clock = clock;
        Ok(out)
    }
}

/// Writes a document's new state with the next feed `seq`, and counts it: `was_deleted` says
/// whether the stored state the caller loaded was deleted (`None`: there was none).
pub(crate) fn store_state(
    tx: &mut WriteTx<'_>,
    collection: &CollectionName,
    id: &DocId,
    state: &DocState,
    was_deleted: Option<bool>,
) -> Result<(), StoreError> {
    let seq = tx.next_seq(collection);
    tx.counts
        .state_stored(collection, was_deleted, state.is_deleted());
    let bytes = serde_json::to_vec(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.tx
        .prepare_cached(
            "INSERT OR REPLACE INTO docs (collection, doc_id, seq, deleted, state, conflicts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            collection.as_str(),
            id.as_str(),
            seq as i64,
            state.is_deleted(),
            bytes,
            state.conflicts().len() as i64
        ])?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    #[test]
    fn a_collection_s_head_is_its_last_committed_change_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (a, b) = (
            CollectionName::new("a").unwrap(),
            CollectionName::new("b").unwrap(),
        );
        assert_eq!(
            (store.collection_head(&a), store.collection_head(&b)),
            (0, 0)
        );
        // seqs 1 and 2 to `a`, 3 to `b`; then a part that fails takes 4 and 5 back.
        store
            .write_tx(|tx| {
                tx.next_seq(&a);
                tx.next_seq(&a);
                tx.next_seq(&b);
                let failed = tx.under_savepoint(|tx| {
                    tx.next_seq(&b);
                    tx.next_seq(&a);
                    Err::<(), _>(StoreError::Corrupt("refused".into()))
                })?;
                assert!(failed.is_err());
                Ok(())
            })
            .unwrap();
        assert_eq!(
            (store.collection_head(&a), store.collection_head(&b)),
            (2, 3)
        );
        // A transaction that fails leaves every head as it was.
        let failed = store.write_tx(|tx| {
            tx.next_seq(&a);
            Err::<(), _>(StoreError::Corrupt("refused".into()))
        });
        assert!(failed.is_err());
        assert_eq!(store.collection_head(&a), 2);
        store.write_tx(|tx| Ok(tx.next_seq(&b))).unwrap();
        assert_eq!(
            (store.collection_head(&a), store.collection_head(&b)),
            (2, 4)
        );
        // Reopened, every collection's head is the feed's head until it changes again.
        drop(store);
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(
            (store.collection_head(&a), store.collection_head(&b)),
            (4, 4)
        );
    }
}
