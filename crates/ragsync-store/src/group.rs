//! Group commit of client writes.
//!
//! Every write waits for its commit's fsync (`durability = full`). With one transaction per
//! write, concurrent writers queue behind one another's fsyncs. Here a write is queued, then
//! waits for the writer: whoever takes the writer runs every write queued by then in one
//! transaction, each under its own savepoint (a write that fails is rolled back alone and
//! answered with its own error), commits once, and answers each of them before it lets the
//! writer go. A write that finds its answer ready when it gets the writer was committed by
//! another's group.
//!
//! Invariants: a write is answered `Ok` only after the commit that holds it succeeded; if that
//! commit fails, every write in the group is answered with the failure; writes of a group
//! apply in the order they were queued.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ragsync_core::CollectionName;

use crate::docs::{DocOp, WriteResult, write_ops};
use crate::{Store, StoreError, Writer};

type Answer = Result<Vec<WriteResult>, StoreError>;

/// Where a queued write's answer is left.
#[derive(Default)]
struct Slot(Mutex<Option<Answer>>);

impl Slot {
    fn take(&self) -> Option<Answer> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put(&self, a: Answer) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(a);
    }
}

/// A client write waiting for its group.
pub(crate) struct Queued {
    collection: CollectionName,
    ops: Vec<DocOp>,
    slot: Arc<Slot>,
}

/// How many transactions committed client writes, and how many writes they held.
#[derive(Default)]
pub(crate) struct GroupStats {
    commits: AtomicU64,
    writes: AtomicU64,
}

impl Store {
    /// Applies `ops` to documents of `collection` in one transaction: all of them, or none
    /// when one fails (a missing collection, a failed If-Match, a delete of a missing
    /// document). Concurrent calls share transactions and fsyncs (see the module docs).
    pub fn write(
        &self,
        collection: &CollectionName,
        ops: Vec<DocOp>,
    ) -> Result<Vec<WriteResult>, StoreError> {
        let slot = Arc::new(Slot::default());
        self.write_queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Queued {
                collection: collection.clone(),
                ops,
                slot: slot.clone(),
            });
        let mut writer = self.writer();
        if let Some(answer) = slot.take() {
            return answer;
        }
        let group =
            std::mem::take(&mut *self.write_queue.lock().unwrap_or_else(|e| e.into_inner()));
        self.commit_group(&mut writer, group);
        drop(writer);
        slot.take().unwrap_or_else(|| {
            Err(StoreError::Corrupt(
                "a write left its group unanswered".into(),
            ))
        })
    }

    /// (transactions that committed client writes, client writes they held), since start.
    pub fn group_commit_stats(&self) -> (u64, u64) {
        let g = &self.group_stats;
        (
            g.commits.load(Ordering::Relaxed),
            g.writes.load(Ordering::Relaxed),
        )
    }

    /// Runs `group` in one transaction and answers every write in it.
    fn commit_group(&self, w: &mut Writer, group: Vec<Queued>) {
        let n = group.len() as u64;
        let slots: Vec<Arc<Slot>> = group.iter().map(|q| q.slot.clone()).collect();
        let mut answered: Vec<(Arc<Slot>, Answer)> = Vec::with_capacity(group.len());
        let committed = self.run_tx(w, |tx| {
            for q in group {
                let answer = tx.under_savepoint(|tx| write_ops(tx, &q.collection, q.ops))?;
                answered.push((q.slot, answer));
            }
            Ok(())
        });
        match committed {
            Ok(()) => {
                self.group_stats.commits.fetch_add(1, Ordering::Relaxed);
                self.group_stats.writes.fetch_add(n, Ordering::Relaxed);
                for (slot, answer) in answered {
                    slot.put(answer);
                }
            }
            Err(e) => {
                let why = e.to_string();
                tracing::error!(error = %why, writes = n, "a group of writes failed to commit");
                let reached = answered.len();
                for (slot, answer) in answered {
                    slot.put(answer.and(Err(StoreError::GroupCommit(why.clone()))));
                }
                for slot in &slots[reached..] {
                    slot.put(Err(StoreError::GroupCommit(why.clone())));
                }
            }
        }
    }
}
