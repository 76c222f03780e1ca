//! A collection's tantivy writer: operations handed over in batches, and the documents added
//! since the last commit.

use std::collections::HashSet;

use ragsync_core::DocId;
use tantivy::indexer::UserOperation;
use tantivy::{IndexReader, IndexWriter};

use super::IndexError;
use crate::background;

/// A collection's writer, with the documents it added since its last commit: a document
/// neither there nor in the committed index needs no delete (deletes cost a term lookup in
/// every segment at commit, which a bulk load of new documents would pay for nothing).
pub(super) struct Writer {
    pub(super) w: IndexWriter,
    pub(super) added: HashSet<DocId>,
    /// Operations not yet handed to tantivy's indexing threads. They go over in batches of
    /// [`QUEUED_OPS`], one message each: sent one document at a time, a writer whose indexing
    /// threads run lowered (`background.rs`) was woken for every document its full channel
    /// took, and paid a thread switch each time.
    queued: Vec<UserOperation>,
}

/// Operations handed to tantivy together.
const QUEUED_OPS: usize = 256;

impl Writer {
    pub(super) fn new(w: IndexWriter) -> Self {
        Self {
            w,
            added: HashSet::new(),
            queued: Vec::with_capacity(QUEUED_OPS),
        }
    }

    /// Queues `op`, handing the queue over when it is full.
    pub(super) fn queue(&mut self, op: UserOperation) -> Result<(), IndexError> {
        self.queued.push(op);
        if self.queued.len() >= QUEUED_OPS {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the queued operations to tantivy, in order.
    pub(super) fn flush(&mut self) -> Result<(), IndexError> {
        if !self.queued.is_empty() {
            let ops = std::mem::replace(&mut self.queued, Vec::with_capacity(QUEUED_OPS));
            self.w.run(ops)?;
        }
        Ok(())
    }

    pub(super) fn commit(&mut self, reader: &IndexReader) -> Result<(), IndexError> {
        self.flush()?;
        // A commit starts the writer's indexing threads anew, from the committing thread.
        background::on_lowered_thread(|| self.w.commit())?;
        reader.reload()?;
        self.added.clear();
        Ok(())
    }

    /// Drops everything since the last commit, queued or handed over.
    pub(super) fn rollback(&mut self) -> Result<(), IndexError> {
        self.queued.clear();
        let w = &mut self.w;
        background::on_lowered_thread(|| w.rollback())?;
        self.added.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::{STRING, Schema};
    use tantivy::{Index, ReloadPolicy};

    /// Operations still queued when a writer rolls back are dropped with it, and ones queued
    /// past a batch reach the index at the commit, in order.
    #[test]
    fn a_rollback_drops_queued_operations_and_a_commit_hands_them_over() {
        let mut b = Schema::builder();
        let id = b.add_text_field("id", STRING);
        let index = Index::create_in_ram(b.build());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .unwrap();
        let mut w = Writer::new(index.writer_with_num_threads(1, 15 << 20).unwrap());
        let doc = |s: &str| {
            let mut d = tantivy::TantivyDocument::default();
            d.add_text(id, s);
            UserOperation::Add(d)
        };
        for i in 0..3 {
            w.queue(doc(&format!("gone{i}"))).unwrap();
        }
        w.rollback().unwrap();
        // More than one batch, then a delete of one of them behind it.
        let n = QUEUED_OPS + 10;
        for i in 0..n {
            w.queue(doc(&format!("kept{i}"))).unwrap();
        }
        w.queue(UserOperation::Delete(tantivy::Term::from_field_text(
            id, "kept0",
        )))
        .unwrap();
        w.commit(&reader).unwrap();
        let searcher = reader.searcher();
        assert_eq!(searcher.num_docs(), (n - 1) as u64);
        let count = |s: &str| {
            searcher
                .doc_freq(&tantivy::Term::from_field_text(id, s))
                .unwrap()
        };
        assert_eq!(count("gone0"), 0);
        assert_eq!(count(&format!("kept{}", n - 1)), 1);
    }
}
