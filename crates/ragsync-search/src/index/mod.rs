//! The BM25 index of a node: one tantivy index per live collection, derived from the store's
//! change feed with a persisted watermark.
//!
//! # Invariants
//!
//! - **Derived, never primary.** Every indexed chunk comes from the winning version of a
//!   document as the store holds it; the index can be deleted at any time and is rebuilt from
//!   the feed. Nothing is written to the store.
//! - **Watermark after commit.** `state.json` records the feed `seq` indexed through, written
//!   (atomically) only after every index holding those rows has committed. A crash replays
//!   rows past the watermark, and replaying is harmless: a document's chunks are replaced as
//!   a whole (delete by document id, then add), so the index converges on the feed.
//! - **One writer.** Only the indexer task writes; queries read committed segments.
//! - **Ahead of the feed, for a waiting query.** A collection whose query waits while the
//!   watermark lags (another collection's backlog) has its few rows past the watermark
//!   indexed and committed between feed pages; the coverage this gives is kept in memory
//!   only, and the feed's replay of those rows is harmless like any other.
//! - **What is indexed.** A document whose winner is live and has text content (`text/*`,
//!   JSON, XML) is chunked by its collection's settings; its title is indexed with every chunk.
//!   A deleted winner leaves no chunk; conflicts are never indexed. A document whose content
//!   has not arrived yet waits in `awaiting` (persisted) and is indexed when it arrives.
//! - **Collections.** A live collection record (re)builds its index from the store when its
//!   index is missing or was built with other chunking or language settings; a deleted one
//!   drops it. Documents of a collection with no live record are not indexed (queries refuse
//!   such a collection anyway).
//! - **Another database, another index.** The store's epoch is recorded; a different one
//!   (a restored or rebooted-unclean store, whose `seq`s may be reused) rebuilds everything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ragsync_core::settings::Chunking;
use ragsync_core::{Collection, CollectionName, ContentId};
use ragsync_store::{FeedEntry, FeedItem, InlinePolicy, Store, StoreError};
use serde::{Deserialize, Serialize};
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::analysis::{ANALYSIS_VERSION, ANALYZER, index_analyzer};
use crate::background;
use crate::embed::{Embedders, model_key};
use crate::vectors::VectorSet;

mod ahead;
mod bm25;
mod docs;
mod embedding;
mod state;
mod writer;
use writer::Writer;

pub use bm25::Bm25Hit;
use bm25::hit_of;

pub use docs::is_text;
use docs::{DocChunks, doc_chunks, index_doc};

pub use embedding::VectorStatus;

use state::{
    State, awaiting_count, clear_dir, new_coll_dir, read_state, remove_unrecorded, unawait,
    unawait_collection, write_state,
};

/// Feed rows read per page.
const PAGE_ROWS: usize = 2048;
/// Rows applied before a commit while a backlog lasts. Every commit ends a segment per
/// indexing thread, and a segment costs in proportion to its distinct terms (sorting them,
/// the term dictionary, a BM25 block bound per term) and again at each merge, so during a
/// backlog commits go by time ([`COMMIT_EVERY`]) and the writer's memory: at 4,096 rows,
/// 100,000 documents of the bench text cost 29-33 CPU-seconds, at this bound 25-26.
const COMMIT_ROWS: usize = 65_536;
/// Bytes of contents applied before a commit while a backlog lasts: what is handed to
/// tantivy's threads waits in memory until they index it, and under `SCHED_IDLE` on a busy
/// node they may not keep up (tantivy's own bound counts batches, not documents). The bench
/// text's 1 KiB documents reach [`COMMIT_ROWS`] first.
const COMMIT_BYTES: usize = 96 << 20;
/// Longest a backlog goes without a commit, so queries see progress.
const COMMIT_EVERY: Duration = Duration::from_secs(2);
/// Indexing memory of one collection's writer (shared by its indexing threads).
const WRITER_BYTES: usize = 64 << 20;
/// How long the indexer lets new commits gather before it indexes them, when no query waits:
/// an index commit per replicated write would compete with replication for the CPU.
const SETTLE: Duration = Duration::from_millis(50);

/// Why the index cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index: {0}")]
    Io(#[from] std::io::Error),
    #[error("search index state: {0}")]
    State(String),
    #[error("embedding: {0}")]
    Embed(String),
}

/// How far the index has come.
#[derive(Clone, Debug, Serialize)]
pub struct IndexStatus {
    /// Feed `seq` indexed through.
    pub indexed_through: u64,
    /// Documents whose content has not arrived yet.
    pub awaiting_content: usize,
    /// Chunks indexed, by collection (committed ones).
    pub chunks: BTreeMap<CollectionName, u64>,
    /// Vectors and embedding backlog, by collection with an embedding model.
    pub vectors: BTreeMap<CollectionName, VectorStatus>,
    /// Chunks this node embedded itself since it started (not those from peers or clients).
    pub embedded_here: u64,
}

#[derive(Clone, Copy)]
struct Fields {
    doc: Field,
    ord: Field,
    start: Field,
    end: Field,
    chunk: Field,
    content: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        doc: b.add_text_field("doc", STRING | STORED),
        ord: b.add_u64_field("ord", STORED),
        start: b.add_u64_field("start", STORED),
        end: b.add_u64_field("end", STORED),
        chunk: b.add_bytes_field("chunk", STORED),
        content: b.add_bytes_field("content", STORED | INDEXED),
        text: b.add_text_field("text", text),
    };
    (b.build(), fields)
}

/// What a collection's index was built with; a change rebuilds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct IndexConfig {
    chunking: Chunking,
    language: String,
    /// [`ANALYSIS_VERSION`] of the build (0 for indexes built before it was recorded).
    #[serde(default)]
    analysis: u32,
    /// The vectors kept, when the collection has an embedding model.
    #[serde(default)]
    embedding: Option<VectorConfig>,
}

/// A collection's vectors: the model id they are stored under, and their size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct VectorConfig {
    model: String,
    dimension: usize,
}

impl IndexConfig {
    fn of(c: &Collection) -> Self {
        Self {
            chunking: c.settings.chunking.clone(),
            language: c.settings.search.language.clone(),
            analysis: ANALYSIS_VERSION,
            embedding: model_key(c).map(|model| VectorConfig {
                model,
                dimension: c.settings.embedding.dimension as usize,
            }),
        }
    }
}

/// A collection's index: the settings it was built with and its directory (a new one per
/// build, so the old index answers queries until the new one is committed and recorded).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Indexed {
    config: IndexConfig,
    dir: String,
}

struct CollIndex {
    config: IndexConfig,
    dir: PathBuf,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<Writer>,
    /// The chunks' vectors, when the collection has an embedding model.
    vectors: Option<RwLock<VectorSet>>,
    /// The feed `seq` this index was built from the store at (0 when opened from disk): the
    /// build read every document as it was after that `seq`, so feed rows at or before it
    /// hold nothing the index lacks, and applying them again would index those documents
    /// twice (a collection created in the same backlog as its documents).
    built_through: u64,
}

/// A node's BM25 index; see the module docs.
pub struct SearchIndex {
    store: Arc<Store>,
    dir: PathBuf,
    state: Mutex<State>,
    colls: RwLock<HashMap<CollectionName, Arc<CollIndex>>>,
    indexed: tokio::sync::watch::Sender<u64>,
    /// Documents waiting for their content, as of the last commit.
    awaiting: AtomicUsize,
    /// A query waits for the index: index now, without settling.
    urgent: tokio::sync::Notify,
    /// Collections whose queries wait while the watermark is behind their last change: the
    /// indexer indexes their rows ahead of the feed ([`SearchIndex::index_ahead`]).
    wanted: Mutex<HashSet<CollectionName>>,
    /// The feed `seq` through which each collection indexed ahead is committed (at or above
    /// the watermark while it lags; not persisted: a restart replays from the watermark).
    ahead: Mutex<HashMap<CollectionName, u64>>,
    /// The models this node runs.
    embedders: Arc<Embedders>,
    /// Documents with chunks to embed, in order, once each.
    jobs: Mutex<embedding::Jobs>,
    /// A job was queued.
    job_queued: tokio::sync::Notify,
    /// Batches of embedding jobs ended: a count that wakes readers waiting for a
    /// collection's jobs (see [`embedding::Jobs`]).
    embedded: tokio::sync::watch::Sender<u64>,
    /// Chunks this node embedded since it started (not those that came from peers or clients).
    embedded_here: AtomicU64,
}

impl SearchIndex {
    /// Opens (or starts) the index of `store` under `dir`. An index written for another
    /// database, or unreadable, is dropped and rebuilt by the indexer from the feed.
    pub fn open(
        store: Arc<Store>,
        dir: &Path,
        embedders: Arc<Embedders>,
    ) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir)?;
        let mut state = read_state(dir).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "search index state unreadable; rebuilding the index");
            State::default()
        });
        if state.epoch != Some(store.epoch()) {
            if state.epoch.is_some() {
                tracing::info!("the store is another database now; rebuilding the search index");
            }
            clear_dir(dir)?;
            state = State {
                epoch: Some(store.epoch()),
                ..State::default()
            };
        }
        state.applied = state.through;
        let mut colls = HashMap::new();
        let mut broken = Vec::new();
        for (name, ix) in &state.collections {
            match open_coll(&dir.join(&ix.dir), ix.config.clone(), false) {
                Ok(ci) => {
                    if ix.config.analysis != ANALYSIS_VERSION {
                        tracing::info!(collection = %name, "search index built by another analysis; the indexer rebuilds it");
                    }
                    colls.insert(name.clone(), Arc::new(ci));
                }
                Err(e) => {
                    tracing::warn!(collection = %name, error = %e, "search index unreadable; rebuilding it");
                    broken.push(name.clone());
                }
            }
        }
        remove_unrecorded(dir, &state)?;
        let me = Self {
            store,
            dir: dir.to_path_buf(),
            indexed: tokio::sync::watch::Sender::new(state.through),
            awaiting: AtomicUsize::new(awaiting_count(&state)),
            urgent: tokio::sync::Notify::new(),
            wanted: Mutex::default(),
            ahead: Mutex::default(),
            state: Mutex::new(state),
            colls: RwLock::new(colls),
            embedders,
            jobs: Mutex::new(embedding::Jobs::default()),
            job_queued: tokio::sync::Notify::new(),
            embedded: tokio::sync::watch::Sender::new(0),
            embedded_here: AtomicU64::new(0),
        };
        let loaded: Vec<(CollectionName, Arc<CollIndex>)> = me
            .read_colls()
            .iter()
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        for (name, ci) in loaded {
            me.load_vectors(&name, &ci)?;
        }
        for name in broken {
            let mut state = me.state.lock().unwrap_or_else(|e| e.into_inner());
            match me.store.collection(&name)? {
                Some(c) => me.rebuild(&mut state, &c)?,
                None => {
                    state.collections.remove(&name);
                }
            }
        }
        Ok(me)
    }

    /// The embedding models this node runs.
    pub fn embedders(&self) -> &Embedders {
        &self.embedders
    }

    /// The feed `seq` indexed through, announced after each commit.
    pub fn watch_indexed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.indexed.subscribe()
    }

    pub fn status(&self) -> IndexStatus {
        let (vectors, embedded_here) = self.vector_status();
        IndexStatus {
            vectors,
            embedded_here,
            indexed_through: *self.indexed.borrow(),
            awaiting_content: self.awaiting.load(Ordering::Relaxed),
            chunks: self
                .read_colls()
                .iter()
                .map(|(name, ci)| (name.clone(), ci.reader.searcher().num_docs()))
                .collect(),
        }
    }

    /// Indexes what the feed holds past the watermark, until `stop` is set. Runs on the
    /// blocking pool; an error is logged and retried after a pause (the watermark has not
    /// moved, so nothing is skipped). Commits when a query waits, when the feed has been quiet
    /// for [`SETTLE`], and during a backlog every [`COMMIT_ROWS`] rows or [`COMMIT_EVERY`].
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut head = self.store.watch_head();
        let mut commit_now = false;
        loop {
            let stopping = *stop.borrow();
            let me = self.clone();
            let stop_now = stop.clone();
            let worked =
                tokio::task::spawn_blocking(move || me.catch_up(&stop_now, commit_now || stopping))
                    .await;
            commit_now = false;
            let failure = match worked {
                Ok(Ok(pending)) => Ok(pending),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("panicked: {e}")),
            };
            let (pending, pause) = match failure {
                Ok(pending) => (pending, None),
                Err(e) => {
                    tracing::error!(error = %e, "search indexing failed; going back to the last commit and retrying");
                    let me = self.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || me.recover()).await {
                        tracing::error!(error = %e, "search index recovery failed");
                    }
                    (false, Some(Duration::from_secs(1)))
                }
            };
            if stopping {
                return;
            }
            let awaiting = self.awaiting.load(Ordering::Relaxed) > 0;
            let wait = pause.or(awaiting.then_some(Duration::from_secs(1)));
            tokio::select! {
                _ = head.changed(), if pause.is_none() => {
                    // Let a burst of small commits (and their replication) gather into one
                    // index commit, unless a query waits for it.
                    tokio::select! {
                        _ = tokio::time::sleep(SETTLE) => {}
                        _ = self.urgent.notified() => commit_now = true,
                        r = stop.changed() => if r.is_err() { return },
                    }
                }
                _ = tokio::time::sleep(SETTLE), if pending && pause.is_none() => commit_now = true,
                _ = self.urgent.notified(), if pending => commit_now = true,
                _ = async { tokio::time::sleep(wait.unwrap_or_default()).await }, if wait.is_some() => {}
                // A dropped sender (the node is gone) stops the task too.
                r = stop.changed() => if r.is_err() { return },
            }
        }
    }

    /// After a failure: drops what every writer holds uncommitted and goes back to the last
    /// commit (its watermark and its `awaiting`, as `state.json` has them), so the rows are
    /// applied again rather than taken as indexed.
    fn recover(&self) -> Result<(), IndexError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for ci in self.read_colls().values() {
            let mut w = ci.writer.lock().unwrap_or_else(|e| e.into_inner());
            w.rollback()?;
        }
        let disk = read_state(&self.dir)?;
        state.awaiting = disk.awaiting;
        state.applied = state.through;
        state.uncommitted = 0;
        state.uncommitted_bytes = 0;
        Ok(())
    }

    /// Applies every row of the feed past what was applied, and every awaited content that
    /// has arrived; commits when `commit_now`, or every [`COMMIT_ROWS`] rows,
    /// [`COMMIT_BYTES`] or [`COMMIT_EVERY`]. Returns whether applied rows are left uncommitted.
    pub fn catch_up(
        &self,
        stop: &tokio::sync::watch::Receiver<bool>,
        commit_now: bool,
    ) -> Result<bool, IndexError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.fill_awaited(&mut state)?;
        self.rebuild_outdated(&mut state, stop)?;
        loop {
            let started = Instant::now();
            let mut more = true;
            while more
                && state.uncommitted < COMMIT_ROWS
                && state.uncommitted_bytes < COMMIT_BYTES
                && started.elapsed() < COMMIT_EVERY
            {
                let page = self.store.changes(
                    state.applied,
                    PAGE_ROWS,
                    InlinePolicy {
                        max_content_bytes: 1 << 20,
                        max_page_bytes: 16 << 20,
                        embeddings: false,
                    },
                )?;
                let contents: HashMap<ContentId, Vec<u8>> = page.contents.into_iter().collect();
                for e in &page.entries {
                    self.apply(&mut state, e, &contents)?;
                }
                state.uncommitted += page.entries.len();
                state.uncommitted_bytes += contents.values().map(Vec::len).sum::<usize>();
                more = page.has_more && !page.entries.is_empty();
                state.applied = page.next_since;
                // With nothing more to read, the commit after this pass covers everything.
                if more {
                    self.index_ahead(&mut state)?;
                }
                if *stop.borrow() {
                    break;
                }
            }
            let due = commit_now
                || *stop.borrow()
                || state.uncommitted >= COMMIT_ROWS
                || state.uncommitted_bytes >= COMMIT_BYTES
                || state
                    .last_commit
                    .is_none_or(|t| t.elapsed() >= COMMIT_EVERY);
            if state.applied > state.through && due {
                self.commit(&mut state)?;
            }
            if !more || *stop.borrow() {
                return Ok(state.applied > state.through);
            }
        }
    }

    /// Rebuilds, one at a time, the collections whose recorded index was built by another
    /// [`ANALYSIS_VERSION`]; each answers from its old index until its new one is swapped in.
    /// One left when `stop` comes, or when a rebuild fails, is still recorded with its old
    /// version, so a later pass (or the next start) rebuilds it.
    fn rebuild_outdated(
        &self,
        state: &mut State,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), IndexError> {
        let outdated: Vec<CollectionName> = state
            .collections
            .iter()
            .filter(|(_, ix)| ix.config.analysis != ANALYSIS_VERSION)
            .map(|(name, _)| name.clone())
            .collect();
        for name in outdated {
            if *stop.borrow() {
                break;
            }
            // A collection deleted since: its feed row drops the index.
            if let Some(c) = self.store.collection(&name)? {
                self.rebuild(state, &c)?;
            }
        }
        Ok(())
    }

    /// Commits every collection's writer, then moves the watermark to what was applied.
    fn commit(&self, state: &mut State) -> Result<(), IndexError> {
        let through = state.applied;
        let colls: Vec<Arc<CollIndex>> = self.read_colls().values().cloned().collect();
        for ci in colls {
            let mut w = ci.writer.lock().unwrap_or_else(|e| e.into_inner());
            w.commit(&ci.reader)?;
        }
        let before = state.through;
        state.through = through;
        if let Err(e) = write_state(&self.dir, state) {
            state.through = before;
            return Err(e);
        }
        state.uncommitted = 0;
        state.uncommitted_bytes = 0;
        state.last_commit = Some(Instant::now());
        self.awaiting
            .store(awaiting_count(state), Ordering::Relaxed);
        self.indexed.send_replace(through);
        Ok(())
    }

    fn read_colls(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<CollectionName, Arc<CollIndex>>> {
        self.colls.read().unwrap_or_else(|e| e.into_inner())
    }

    fn coll(&self, name: &CollectionName) -> Option<Arc<CollIndex>> {
        self.read_colls().get(name).cloned()
    }

    fn apply(
        &self,
        state: &mut State,
        entry: &FeedEntry,
        contents: &HashMap<ContentId, Vec<u8>>,
    ) -> Result<(), IndexError> {
        match &entry.item {
            FeedItem::Collection(c) => {
                // The collection as it shows now: a later record in this page may differ, and
                // a deleted one still shows while documents written concurrently with its
                // delete are live (the store's `collections.rs`).
                match self.store.collection(&c.name)? {
                    None => self.drop_coll(state, &c.name)?,
                    Some(now) => {
                        let config = IndexConfig::of(&now);
                        if self.coll(&c.name).is_none_or(|ci| ci.config != config) {
                            self.rebuild(state, &now)?;
                        }
                    }
                }
            }
            FeedItem::Doc {
                collection,
                id,
                state: doc,
            } => {
                let ci = self.coll(collection);
                if ci.is_none() && !doc.winner().deleted {
                    // A live document of a collection without an index: one whose record came
                    // later in the feed, or one dropped for a delete that this document was
                    // written concurrently with. Built now if it shows, this document included.
                    if let Some(now) = self.store.collection(collection)? {
                        self.rebuild(state, &now)?;
                    }
                    return Ok(());
                }
                if let Some(ci) = ci.filter(|ci| entry.seq > ci.built_through) {
                    unawait(state, collection, id);
                    let content = |cid: &ContentId| match contents.get(cid) {
                        Some(b) => Ok(Some(b.clone())),
                        None => self.store.content(cid),
                    };
                    let d = index_doc(&ci, id, doc, content)?;
                    if self.index_vectors(&ci, collection, id, d, state)? {
                        self.enqueue(collection, id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Indexes the documents whose awaited content has arrived. A failure leaves `awaiting`
    /// to [`SearchIndex::recover`], which reads it back from the last commit.
    fn fill_awaited(&self, state: &mut State) -> Result<(), IndexError> {
        let mut arrived = Vec::new();
        for cid in state.awaiting.keys() {
            if self.store.content_len(cid)?.is_some() {
                arrived.push(*cid);
            }
        }
        if arrived.is_empty() {
            return Ok(());
        }
        for cid in arrived {
            for (collection, id) in state.awaiting.remove(&cid).unwrap_or_default() {
                let Some(ci) = self.coll(&collection) else {
                    continue;
                };
                let doc = match self.store.get(&collection, &id) {
                    Ok(Some(doc)) => doc,
                    Ok(None) | Err(StoreError::CollectionNotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                let d = index_doc(&ci, &id, &doc.state, |c| self.store.content(c))?;
                if self.index_vectors(&ci, &collection, &id, d, state)? {
                    self.enqueue(&collection, &id);
                }
            }
        }
        self.commit(state)
    }

    /// Builds collection `c`'s index afresh from the documents the store holds now, in a new
    /// directory: the old index answers queries until the new one is committed, recorded in
    /// `state.json` and swapped in. A crash before that leaves the old one recorded (and the
    /// feed row that asked for the rebuild past the watermark, so it asks again).
    fn rebuild(&self, state: &mut State, c: &Collection) -> Result<(), IndexError> {
        let config = IndexConfig::of(c);
        let name = new_coll_dir(&c.name);
        let mut ci = open_coll(&self.dir.join(&name), config.clone(), true)?;
        // Read before the listing: every change after it comes again from the feed.
        ci.built_through = self.store.head_seq()?;
        // The build finds again every document of the collection that waits for content.
        unawait_collection(state, &c.name);
        let mut after: Option<String> = None;
        let mut n = 0usize;
        let mut to_embed = Vec::new();
        loop {
            let page = self.store.list(&c.name, after.as_deref(), 1024, false)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.as_str().to_owned());
            // A document changed since the build began comes again from the feed: indexing
            // it here too would index it twice.
            for d in page.iter().filter(|d| d.seq <= ci.built_through) {
                unawait(state, &c.name, &d.id);
                let chunks = index_doc(&ci, &d.id, &d.state, |cid| self.store.content(cid))?;
                if self.index_vectors(&ci, &c.name, &d.id, chunks, state)? {
                    to_embed.push(d.id.clone());
                }
            }
            n += page.len();
        }
        ci.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .commit(&ci.reader)?;
        let previous = state
            .collections
            .insert(c.name.clone(), Indexed { config, dir: name });
        if let Err(e) = write_state(&self.dir, state) {
            match previous {
                Some(p) => state.collections.insert(c.name.clone(), p),
                None => state.collections.remove(&c.name),
            };
            let _ = std::fs::remove_dir_all(&ci.dir);
            return Err(e);
        }
        let old = {
            let mut colls = self.colls.write().unwrap_or_else(|e| e.into_inner());
            colls.insert(c.name.clone(), Arc::new(ci))
        };
        // Queued only now: a job run before the swap would have filled the old index.
        for id in &to_embed {
            self.enqueue(&c.name, id);
        }
        if let Some(old) = old {
            remove_index_dir(old)?;
        }
        tracing::info!(collection = %c.name, documents = n, "search index built");
        Ok(())
    }

    fn drop_coll(&self, state: &mut State, name: &CollectionName) -> Result<(), IndexError> {
        let removed = {
            let mut colls = self.colls.write().unwrap_or_else(|e| e.into_inner());
            colls.remove(name)
        };
        state.collections.remove(name);
        unawait_collection(state, name);
        self.ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(ci) = removed {
            remove_index_dir(ci)?;
        }
        Ok(())
    }
}

/// Removes an index's directory once its writer is gone. Queries still holding its reader
/// keep their open files until they finish.
fn remove_index_dir(ci: Arc<CollIndex>) -> Result<(), IndexError> {
    let dir = ci.dir.clone();
    drop(ci);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes a new, empty index in `dir` (`fresh`) or opens the one there (which must exist).
fn open_coll(dir: &Path, config: IndexConfig, fresh: bool) -> Result<CollIndex, IndexError> {
    let (schema, fields) = schema();
    let index = if fresh {
        std::fs::create_dir_all(dir)?;
        Index::create_in_dir(dir, schema)?
    } else {
        Index::open_in_dir(dir)?
    };
    index
        .tokenizers()
        .register(ANALYZER, index_analyzer(&config.language));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    // Made on a lowered thread, so its indexing and merge threads yield to requests (and
    // so are commits and rollbacks, which start indexing threads again).
    let writer =
        background::on_lowered_thread(|| index.writer_with_num_threads(threads, WRITER_BYTES))?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    Ok(CollIndex {
        dir: dir.to_path_buf(),
        fields,
        reader,
        writer: Mutex::new(Writer::new(writer)),
        vectors: config
            .embedding
            .as_ref()
            .map(|e| RwLock::new(VectorSet::new(e.dimension))),
        built_through: 0,
        config,
    })
}
