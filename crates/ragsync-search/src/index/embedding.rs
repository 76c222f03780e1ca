//! The vector side of the index: each collection with an embedding model keeps its chunks'
//! vectors in memory ([`VectorSet`]), taken from the store's `embeddings` table by chunk id.
//!
//! Embedding is slow, so it never runs in the indexer's pass or in a write transaction. A
//! document whose chunks lack vectors is queued by its collection's model; a batch at a time
//! per model, the models side by side (one whose endpoint is down or slow holds up only its
//! own queue), its chunks are embedded, the vectors stored (model id, chunk id) and only then
//! given to the index.
//! Progress is durable by construction: a chunk is embedded exactly when its row exists, so
//! at start the index reloads every stored vector and queues again the documents still
//! missing some (the backlog resumes). Chunks of a model this node does not run (`external`,
//! or an endpoint it is not configured for) wait for vectors from clients or peers.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ragsync_core::{CollectionName, ContentId, DocId};
use ragsync_store::{ContentEmbeddings, StoreError};
use serde::Serialize;
use tantivy::TantivyDocument;

use super::state::{State, await_content};
use super::{CollIndex, DocChunks, IndexError, SearchIndex, doc_chunks, hit_of};
use crate::embed::Embedder;
use crate::vectors::{ChunkRef, VectorHit};

/// Texts embedded per call of the model.
const EMBED_BATCH: usize = 64;
/// Pause after a failed batch (a remote model down), before its documents are tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A document waiting for vectors.
type Job = (CollectionName, DocId);

/// Documents waiting for vectors: a queue per model, each document once, each with a ticket
/// (numbered across the queues as documents are queued). Each model is embedded by a task of
/// its own, so a model whose endpoint is slow or down holds up only its own queue; within a
/// model the collections take turns ([`ModelQueue`]), so one collection's bulk load does not
/// hold up another's next write; a collection's readers wait for its own outstanding tickets
/// only.
#[derive(Default)]
pub(super) struct Jobs {
    queues: HashMap<String, ModelQueue>,
    queued: HashSet<Job>,
    /// Tickets handed out.
    issued: u64,
    /// Each collection's tickets queued or being embedded.
    outstanding: HashMap<CollectionName, BTreeSet<u64>>,
    /// Models with a batch being embedded.
    busy: HashSet<String>,
    /// Models whose last batch failed, and when they are tried again.
    retry_at: HashMap<String, tokio::time::Instant>,
}

/// One model's documents waiting for vectors: each collection's in the order they were
/// queued, and the collections taking one document each in turn.
#[derive(Default)]
struct ModelQueue {
    by_collection: HashMap<CollectionName, VecDeque<(DocId, u64)>>,
    /// The collections with queued documents, each once, the next to take first.
    turns: VecDeque<CollectionName>,
}

impl ModelQueue {
    fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Queues a document behind its collection's others; a collection new to the queue takes
    /// its turn after those already waiting.
    fn push_back(&mut self, (collection, id): Job, ticket: u64) {
        let q = self.by_collection.entry(collection.clone()).or_default();
        if q.is_empty() {
            self.turns.push_back(collection);
        }
        q.push_back((id, ticket));
    }

    /// Puts a document back at the head of its collection's queue, that collection next.
    fn push_front(&mut self, (collection, id): Job, ticket: u64) {
        let q = self.by_collection.entry(collection.clone()).or_default();
        if !q.is_empty() {
            self.turns.retain(|c| *c != collection);
        }
        q.push_front((id, ticket));
        self.turns.push_front(collection);
    }

    /// The next document of the collection whose turn it is; that collection goes to the back.
    fn pop(&mut self) -> Option<(Job, u64)> {
        let collection = self.turns.pop_front()?;
        let q = self.by_collection.get_mut(&collection)?;
        let (id, ticket) = q.pop_front()?;
        if q.is_empty() {
            self.by_collection.remove(&collection);
        } else {
            self.turns.push_back(collection.clone());
        }
        Some(((collection, id), ticket))
    }
}

impl Jobs {
    /// Whether collection `name` has no ticket up to `ticket` outstanding.
    fn done_through(&self, name: &CollectionName, ticket: u64) -> bool {
        self.outstanding
            .get(name)
            .and_then(BTreeSet::first)
            .is_none_or(|first| *first > ticket)
    }

    /// The ticket of a job that is done (or dropped) no longer outstanding.
    fn finish(&mut self, (collection, _): &Job, ticket: u64) {
        if let Some(t) = self.outstanding.get_mut(collection) {
            t.remove(&ticket);
            if t.is_empty() {
                self.outstanding.remove(collection);
            }
        }
    }

    /// Models with queued documents, no batch running and no retry pending at `now`, marked
    /// busy.
    fn start_ready(&mut self, now: tokio::time::Instant) -> Vec<String> {
        self.retry_at.retain(|_, at| *at > now);
        let ready: Vec<String> = self
            .queues
            .iter()
            .filter(|(m, q)| {
                !q.is_empty() && !self.busy.contains(*m) && !self.retry_at.contains_key(*m)
            })
            .map(|(m, _)| m.clone())
            .collect();
        for m in &ready {
            self.busy.insert(m.clone());
        }
        ready
    }
}

/// A collection's vectors, as `/v1/status` shows them.
#[derive(Clone, Debug, Serialize)]
pub struct VectorStatus {
    pub model: String,
    pub dimension: usize,
    /// Chunks with a vector.
    pub vectors: usize,
    /// Chunks indexed for BM25 still without a vector: the embedding backlog.
    pub backlog: usize,
}

/// A document's chunks to embed.
struct Work {
    ci: Arc<CollIndex>,
    id: DocId,
    content: ContentId,
    chunks: Vec<ChunkRef>,
    vectors: Vec<Option<Vec<f32>>>,
    text: String,
}

impl SearchIndex {
    /// After a document was indexed for BM25: waits for its content when it is not here, and
    /// gives its vector set the stored vectors of its chunks. True when some are missing and
    /// this node computes them: the caller queues the document.
    pub(super) fn index_vectors(
        &self,
        ci: &CollIndex,
        collection: &CollectionName,
        id: &DocId,
        d: DocChunks,
        state: &mut State,
    ) -> Result<bool, IndexError> {
        if let Some(cid) = d.waiting {
            await_content(state, cid, collection, id);
        }
        self.set_vectors(ci, id, d.content, d.chunks)
    }

    /// Replaces document `id`'s vectors by the stored ones of `chunks` (cut from `content`).
    fn set_vectors(
        &self,
        ci: &CollIndex,
        id: &DocId,
        content: Option<ContentId>,
        chunks: Vec<ChunkRef>,
    ) -> Result<bool, IndexError> {
        let (Some(cfg), Some(set)) = (&ci.config.embedding, &ci.vectors) else {
            return Ok(false);
        };
        let Some(content) = content.filter(|_| !chunks.is_empty()) else {
            set.write()
                .unwrap_or_else(|e| e.into_inner())
                .remove_doc(id);
            return Ok(false);
        };
        let keys: Vec<ContentId> = chunks.iter().map(|c| c.chunk).collect();
        let stored = self.store.embeddings(&cfg.model, &keys)?;
        let missing = stored.iter().filter(|v| v.is_none()).count();
        let found = chunks
            .into_iter()
            .zip(stored)
            .filter_map(|(c, v)| v.map(|v| (c, v)))
            .collect();
        set.write()
            .unwrap_or_else(|e| e.into_inner())
            .set_doc(id, content, found, missing);
        Ok(missing > 0 && self.embedders.computes(&cfg.model))
    }

    /// Fills collection `name`'s vector set from its committed index and the stored vectors,
    /// and queues the documents still missing some.
    pub(super) fn load_vectors(
        &self,
        name: &CollectionName,
        ci: &CollIndex,
    ) -> Result<(), IndexError> {
        if ci.vectors.is_none() {
            return Ok(());
        }
        let searcher = ci.reader.searcher();
        let mut docs: HashMap<DocId, Vec<ChunkRef>> = HashMap::new();
        for seg in searcher.segment_readers() {
            let store = seg.get_store_reader(16)?;
            for d in store.iter::<TantivyDocument>(seg.alive_bitset()) {
                let hit = hit_of(&d?, &ci.fields, 0.0)?;
                // A document indexed by its title alone has no chunk to embed.
                let Some(content) = hit.content.filter(|_| hit.end > hit.start) else {
                    continue;
                };
                docs.entry(hit.doc_id.clone()).or_default().push(ChunkRef {
                    doc: hit.doc_id,
                    ord: hit.ord,
                    start: hit.start,
                    end: hit.end,
                    chunk: hit.chunk_id,
                    content,
                });
            }
        }
        let mut queue = Vec::new();
        for (id, mut chunks) in docs {
            chunks.sort_by_key(|c| c.ord);
            let content = chunks.first().map(|c| c.content);
            if self.set_vectors(ci, &id, content, chunks)? {
                queue.push(id);
            }
        }
        if !queue.is_empty() {
            tracing::info!(collection = %name, documents = queue.len(), "resuming the embedding backlog");
        }
        for id in &queue {
            self.enqueue(name, id);
        }
        Ok(())
    }

    pub(super) fn enqueue(&self, collection: &CollectionName, id: &DocId) {
        let model = self
            .vector_model(collection)
            .map(|(m, _)| m)
            .unwrap_or_default();
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let key = (collection.clone(), id.clone());
        if jobs.queued.insert(key.clone()) {
            jobs.issued += 1;
            let ticket = jobs.issued;
            jobs.outstanding
                .entry(collection.clone())
                .or_default()
                .insert(ticket);
            jobs.queues.entry(model).or_default().push_back(key, ticket);
        }
        drop(jobs);
        self.job_queued.notify_one();
    }

    /// Each collection's vectors, and the chunks this node embedded since it started.
    pub fn vector_status(
        &self,
    ) -> (
        std::collections::BTreeMap<CollectionName, VectorStatus>,
        u64,
    ) {
        let colls = self.read_colls();
        let per = colls
            .iter()
            .filter_map(|(name, ci)| {
                let (cfg, set) = (ci.config.embedding.as_ref()?, ci.vectors.as_ref()?);
                let set = set.read().unwrap_or_else(|e| e.into_inner());
                Some((
                    name.clone(),
                    VectorStatus {
                        model: cfg.model.clone(),
                        dimension: cfg.dimension,
                        vectors: set.len(),
                        backlog: set.missing(),
                    },
                ))
            })
            .collect();
        (per, self.embedded_here.load(Ordering::Relaxed))
    }

    /// The model id and dimension of collection `name`'s vectors, when it keeps any here.
    pub fn vector_model(&self, name: &CollectionName) -> Option<(String, usize)> {
        let ci = self.coll(name)?;
        ci.config
            .embedding
            .as_ref()
            .map(|c| (c.model.clone(), c.dimension))
    }

    /// The embedder of collection `name`'s model, when this node runs it.
    pub fn embedder(&self, name: &CollectionName) -> Result<Option<Arc<dyn Embedder>>, IndexError> {
        let Some((model, dim)) = self.vector_model(name) else {
            return Ok(None);
        };
        self.embedders
            .get(&model, dim)
            .map_err(|e| IndexError::Embed(e.to_string()))
    }

    /// The `limit` chunks of collection `name` most similar to unit vector `q`, best first.
    pub fn vector_search(&self, name: &CollectionName, q: &[f32], limit: usize) -> Vec<VectorHit> {
        let Some(ci) = self.coll(name) else {
            return Vec::new();
        };
        let Some(set) = &ci.vectors else {
            return Vec::new();
        };
        set.read()
            .unwrap_or_else(|e| e.into_inner())
            .search(q, limit)
    }

    /// The similarity to unit vector `q` of each of `chunks` (document, ord) of collection
    /// `name` that has a vector.
    pub fn vector_scores(
        &self,
        name: &CollectionName,
        q: &[f32],
        chunks: &[(DocId, u32)],
    ) -> Vec<Option<f32>> {
        let ci = self.coll(name);
        let Some(set) = ci.as_ref().and_then(|ci| ci.vectors.as_ref()) else {
            return vec![None; chunks.len()];
        };
        let set = set.read().unwrap_or_else(|e| e.into_inner());
        chunks
            .iter()
            .map(|(doc, ord)| set.score_of(doc, *ord, q))
            .collect()
    }

    /// The newest ticket of collection `name` still queued or being embedded (0 when none):
    /// once it is [`Self::embedded`], every chunk of the collection indexed before now that
    /// this node embeds has its vector (or failed to be embedded because its document changed
    /// or went). Other collections' documents are not waited for.
    pub fn embedding_ticket(&self, name: &CollectionName) -> u64 {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.outstanding
            .get(name)
            .and_then(BTreeSet::last)
            .copied()
            .unwrap_or(0)
    }

    /// Whether every embedding job of collection `name` up to `ticket` is done.
    pub fn embedded(&self, name: &CollectionName, ticket: u64) -> bool {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.done_through(name, ticket)
    }

    /// Waits until every embedding job of collection `name` up to `ticket` is done, at most
    /// `timeout`. True when they are.
    pub async fn wait_embedded(
        &self,
        name: &CollectionName,
        ticket: u64,
        timeout: Duration,
    ) -> bool {
        // Woken after every batch; the jobs are checked with no borrow of the watch held (a
        // batch releases the jobs' lock before it sends).
        let mut rx = self.embedded.subscribe();
        let wait = async {
            loop {
                if self.embedded(name, ticket) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Embeds queued chunks until `stop` is set, a batch at a time per model, the models in
    /// parallel: see [`Jobs`]. A model whose batch failed is tried again after
    /// [`RETRY_AFTER`]; at stop, the batches running are waited for.
    pub async fn run_embedder(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut running = tokio::task::JoinSet::new();
        while !*stop.borrow() {
            let now = tokio::time::Instant::now();
            let (ready, next_retry) = {
                let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
                let ready = jobs.start_ready(now);
                (ready, jobs.retry_at.values().min().copied())
            };
            for model in ready {
                let me = self.clone();
                running.spawn_blocking(move || {
                    let done = me.embed_some(&model);
                    (model, done)
                });
            }
            tokio::select! {
                _ = self.job_queued.notified() => {}
                Some(done) = running.join_next() => self.batch_done(done),
                _ = tokio::time::sleep_until(next_retry.unwrap_or(now)), if next_retry.is_some() => {}
                r = stop.changed() => if r.is_err() { break },
            }
        }
        while running.join_next().await.is_some() {}
    }

    /// Frees a model whose batch ended, and holds it back for [`RETRY_AFTER`] when it failed.
    fn batch_done(
        &self,
        done: Result<(String, Result<usize, IndexError>), tokio::task::JoinError>,
    ) {
        let (model, failure) = match done {
            Ok((model, Ok(_))) => (model, None),
            Ok((model, Err(e))) => (model, Some(e.to_string())),
            Err(e) => {
                // Not a panic (`embed_some` turns those into errors): the task was
                // cancelled, which only a runtime shutting down does.
                tracing::debug!(error = %e, "an embedding batch was cancelled");
                return;
            }
        };
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.busy.remove(&model);
        if let Some(e) = failure {
            tracing::error!(model = %model, error = %e, "embedding failed; trying again in 5 s");
            jobs.retry_at
                .insert(model, tokio::time::Instant::now() + RETRY_AFTER);
        }
    }

    /// Embeds the chunks of the next documents queued for `model`, about [`EMBED_BATCH`]
    /// texts. Returns how many documents it took; on failure they go back to the head of
    /// the queue.
    fn embed_some(&self, model: &str) -> Result<usize, IndexError> {
        let mut taken = Vec::new();
        let mut work = Vec::new();
        let mut texts = 0;
        // A panic fails the batch like an error, so that its documents go back to the queue
        // and their tickets do not stay outstanding.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while texts < EMBED_BATCH {
                let next = {
                    let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
                    let next = jobs.queues.get_mut(model).and_then(ModelQueue::pop);
                    if let Some((k, _)) = &next {
                        jobs.queued.remove(k);
                    }
                    next
                };
                let Some(((coll, id), ticket)) = next else {
                    break;
                };
                taken.push(((coll.clone(), id.clone()), ticket));
                if let Some(w) = self.work_for(&coll, &id)? {
                    texts += w.vectors.iter().filter(|v| v.is_none()).count();
                    work.push(w);
                }
            }
            self.embed_work(std::mem::take(&mut work))
        }))
        .unwrap_or_else(|_| Err(IndexError::Embed("an embedding batch panicked".into())));
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let n = taken.len();
        let out = match result {
            Err(e) => {
                // Back to the head of the queue with their tickets; a document queued again
                // meanwhile keeps its later place (its ticket is later too).
                for (key, ticket) in taken.into_iter().rev() {
                    if jobs.queued.insert(key.clone()) {
                        let queue = jobs.queues.entry(model.to_string()).or_default();
                        queue.push_front(key, ticket);
                    } else {
                        jobs.finish(&key, ticket);
                    }
                }
                Err(e)
            }
            Ok(()) => {
                for (key, ticket) in &taken {
                    jobs.finish(key, *ticket);
                }
                Ok(n)
            }
        };
        drop(jobs);
        self.embedded.send_modify(|batches| *batches += 1);
        out
    }

    /// What document `id` of `coll` still needs embedded, as the store holds it now.
    fn work_for(&self, coll: &CollectionName, id: &DocId) -> Result<Option<Work>, IndexError> {
        let Some(ci) = self.coll(coll) else {
            return Ok(None);
        };
        let Some(cfg) = &ci.config.embedding else {
            return Ok(None);
        };
        let doc = match self.store.get(coll, id) {
            Ok(Some(doc)) => doc,
            Ok(None) | Err(StoreError::CollectionNotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (d, body) = doc_chunks(&ci.config.chunking, id, &doc.state, |c| {
            self.store.content(c)
        })?;
        let (Some(content), Some(text)) = (d.content, body) else {
            return Ok(None);
        };
        if d.chunks.is_empty() {
            return Ok(None);
        }
        let keys: Vec<ContentId> = d.chunks.iter().map(|c| c.chunk).collect();
        let vectors = self.store.embeddings(&cfg.model, &keys)?;
        Ok(Some(Work {
            id: id.clone(),
            content,
            chunks: d.chunks,
            vectors,
            text,
            ci,
        }))
    }

    /// Embeds every missing chunk of `work` (each distinct chunk once per model), stores the
    /// vectors, then gives each document its vectors if the index still holds that content.
    fn embed_work(&self, mut work: Vec<Work>) -> Result<(), IndexError> {
        let mut by_model: HashMap<(String, usize), Vec<(usize, usize)>> = HashMap::new();
        for (wi, w) in work.iter().enumerate() {
            let cfg = w.ci.config.embedding.as_ref().expect("work has a model");
            for (ci, v) in w.vectors.iter().enumerate() {
                if v.is_none() {
                    by_model
                        .entry((cfg.model.clone(), cfg.dimension))
                        .or_default()
                        .push((wi, ci));
                }
            }
        }
        let mut computed = 0u64;
        for ((model, dim), places) in by_model {
            let Some(embedder) = self
                .embedders
                .get(&model, dim)
                .map_err(|e| IndexError::Embed(e.to_string()))?
            else {
                continue;
            };
            let mut index_of: HashMap<ContentId, usize> = HashMap::new();
            let mut inputs: Vec<&str> = Vec::new();
            for &(wi, ci) in &places {
                let c = &work[wi].chunks[ci];
                index_of.entry(c.chunk).or_insert_with(|| {
                    inputs.push(&work[wi].text[c.start as usize..c.end as usize]);
                    inputs.len() - 1
                });
            }
            let out = embedder
                .embed(&inputs)
                .map_err(|e| IndexError::Embed(e.to_string()))?;
            if out.len() != inputs.len() || out.iter().any(|v| v.len() != dim) {
                return Err(IndexError::Embed(format!(
                    "model {model} answered vectors of another count or size than asked"
                )));
            }
            computed += inputs.len() as u64;
            for (wi, ci) in places {
                let chunk = work[wi].chunks[ci].chunk;
                work[wi].vectors[ci] = Some(out[index_of[&chunk]].clone());
            }
        }
        let sets: Vec<ContentEmbeddings> = work
            .iter()
            .filter(|w| w.vectors.iter().all(Option::is_some))
            .map(|w| ContentEmbeddings {
                model: w.ci.config.embedding.as_ref().expect("model").model.clone(),
                content: w.content,
                chunks: w.chunks.iter().map(|c| c.chunk).collect(),
                vectors: w.vectors.iter().flatten().cloned().collect(),
            })
            .collect();
        self.store.put_embeddings(&sets)?;
        self.embedded_here.fetch_add(computed, Ordering::Relaxed);
        for w in work {
            let Some(set) = &w.ci.vectors else { continue };
            let mut set = set.write().unwrap_or_else(|e| e.into_inner());
            if set.content_of(&w.id) != Some(w.content) {
                continue;
            }
            let missing = w.vectors.iter().filter(|v| v.is_none()).count();
            let found = w
                .chunks
                .into_iter()
                .zip(w.vectors)
                .filter_map(|(c, v)| v.map(|v| (c, v)))
                .collect();
            set.set_doc(&w.id, w.content, found, missing);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(c: &str, d: &str) -> Job {
        (CollectionName::new(c).unwrap(), DocId::new(d).unwrap())
    }

    fn drain(q: &mut ModelQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|((c, d), t)| format!("{c}/{d}#{t}"))
            .collect()
    }

    /// A collection queued behind another's backlog takes the next turn, not the backlog's
    /// end; documents put back after a failed batch come first again, in their order.
    #[test]
    fn collections_take_turns_and_put_back_documents_come_first() {
        let mut q = ModelQueue::default();
        for (t, d) in ["a1", "a2", "a3"].into_iter().enumerate() {
            q.push_back(job("big", d), t as u64 + 1);
        }
        q.push_back(job("small", "b1"), 4);
        assert_eq!(q.pop(), Some((job("big", "a1"), 1)));
        assert_eq!(q.pop(), Some((job("small", "b1"), 4)));
        // A failed batch of a2 and a new document of small's: a2 back first, then the turns.
        let (a2, t2) = q.pop().unwrap();
        q.push_back(job("small", "b2"), 5);
        q.push_front(a2, t2);
        assert_eq!(drain(&mut q), ["big/a2#2", "small/b2#5", "big/a3#3"]);
        assert!(q.is_empty() && q.by_collection.is_empty());
        // Several put back in reverse, as `embed_some` does, keep their order across
        // collections.
        for (c, d, t) in [
            ("x", "x1", 1),
            ("y", "y1", 2),
            ("x", "x2", 3),
            ("y", "y2", 4),
        ] {
            q.push_back(job(c, d), t);
        }
        q.push_back(job("x", "x3"), 5);
        let taken: Vec<_> = (0..4).map(|_| q.pop().unwrap()).collect();
        for (j, t) in taken.into_iter().rev() {
            q.push_front(j, t);
        }
        assert_eq!(
            drain(&mut q),
            ["x/x1#1", "y/y1#2", "x/x2#3", "y/y2#4", "x/x3#5"]
        );
    }
}
