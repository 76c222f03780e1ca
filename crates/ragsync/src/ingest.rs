//! `ragsync ingest PATH… --collection C`: files, folders and BEIR-style `corpus.jsonl` files,
//! sent in batches through the batch endpoint, with a progress bar.
//!
//! Resumable: before sending, the command lists what the collection already holds and skips
//! every document whose content, title and metadata are already stored; the server also
//! refuses to add a version that changes nothing. Ctrl-C stops after the batch in flight
//! (each batch is one transaction, so it is stored whole or not at all); re-running the same
//! command continues where it stopped.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ragsync_core::{CollectionName, ContentId, DocId};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::client::{Client, ClientArgs};

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Files, folders (walked recursively; ids are paths relative to the folder) and
    /// `*.jsonl` BEIR corpora (`{"_id", "title", "text", "metadata"}` per line).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Target collection; created with default settings if missing.
    #[arg(long, short)]
    pub collection: String,
    /// Most documents per batch request.
    #[arg(long, default_value_t = 1000)]
    pub batch_docs: usize,
    /// Most bytes of JSON per batch request.
    #[arg(long, default_value_t = 8 << 20)]
    pub batch_bytes: usize,
    /// No progress bar (for logs and scripts).
    #[arg(long)]
    pub quiet: bool,
}

/// What an ingest did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    pub sent: u64,
    pub created: u64,
    pub updated: u64,
    /// Already stored, not sent again.
    pub skipped: u64,
    /// Files whose name cannot be a document id.
    pub invalid: u64,
    /// Documents larger than the node accepts (`max_content_bytes`, `max_body_bytes`), not sent.
    pub too_large: u64,
    pub interrupted: bool,
}

/// One document to write.
struct Item {
    id: String,
    title: Option<String>,
    metadata: Map<String, Value>,
    content: Content,
    /// Bytes of input this item was read from, for the progress bar.
    input_bytes: u64,
}

/// What to do with one item.
enum Verdict {
    Send,
    AlreadyStored,
    InvalidId,
    TooLarge,
}

enum Content {
    Text(String),
    Bytes(Vec<u8>),
}

/// A file whose path is not UTF-8, so it cannot name a document.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InvalidName(String);

impl Item {
    fn len(&self) -> usize {
        match &self.content {
            Content::Text(t) => t.len(),
            Content::Bytes(b) => b.len(),
        }
    }

    fn cid(&self) -> ContentId {
        match &self.content {
            Content::Text(t) => ContentId::of(t.as_bytes()),
            Content::Bytes(b) => ContentId::of(b),
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({"id": self.id});
        match &self.content {
            Content::Text(t) => v["text"] = json!(t),
            Content::Bytes(b) => v["content_base64"] = json!(BASE64.encode(b)),
        }
        if let Some(t) = &self.title {
            v["title"] = json!(t);
        }
        if !self.metadata.is_empty() {
            v["metadata"] = Value::Object(self.metadata.clone());
        }
        v
    }
}

/// What the collection holds for one id: enough to tell whether an item is already stored.
#[derive(PartialEq)]
struct Stored {
    cid: String,
    title: Option<String>,
    metadata: Map<String, Value>,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<IngestReport> {
    let client = Client::new(&args.client)?;
    let collection = CollectionName::new(args.collection.clone())?;
    ensure_collection(&client, &collection).await?;
    let stored = list_stored(&client, &collection).await?;
    let limits = NodeLimits::of(&client).await?;
    let max_content_bytes = limits.max_content_bytes;

    let stop = Arc::new(AtomicBool::new(false));
    let stop_on_signal = stop.clone();
    // The first Ctrl-C stops after the batch in flight; a second one exits at once (what was
    // acknowledged is stored either way).
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop_on_signal.store(true, Ordering::SeqCst);
            eprintln!("stopping after the batch in flight; Ctrl-C again to exit now");
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });

    let sources = collect_sources(&args.paths)?;
    let total_bytes: u64 = sources.iter().map(|s| s.bytes).sum();
    let bar = progress_bar(total_bytes, args.quiet);
    let mut batcher = Batcher::new(&client, &collection, &args, &limits, bar.clone());
    let mut report = IngestReport::default();
    'outer: for source in &sources {
        if matches!(source.kind, SourceKind::File { .. }) && source.bytes > max_content_bytes as u64
        {
            tracing::warn!(path = %source.path.display(), bytes = source.bytes, max_content_bytes, "skipping: larger than the node accepts");
            report.too_large += 1;
            bar.inc(source.bytes);
            continue;
        }
        for item in source.items()? {
            let item = match item {
                Err(e) if e.is::<InvalidName>() => {
                    tracing::warn!(path = %e, "skipping: the file name is not UTF-8");
                    report.invalid += 1;
                    bar.inc(source.bytes);
                    continue;
                }
                other => other?,
            };
            bar.inc(item.input_bytes);
            match verdict(&item, &stored, max_content_bytes) {
                Verdict::AlreadyStored => report.skipped += 1,
                Verdict::InvalidId => {
                    tracing::warn!(id = %item.id, "skipping: not a valid document id");
                    report.invalid += 1;
                }
                Verdict::TooLarge => {
                    tracing::warn!(id = %item.id, bytes = item.len(), max_content_bytes, "skipping: larger than the node accepts");
                    report.too_large += 1;
                }
                Verdict::Send => {
                    if !batcher.push(&item, &mut report).await? {
                        tracing::warn!(id = %item.id, "skipping: its request would exceed the node's max_body_bytes");
                        report.too_large += 1;
                    }
                }
            }
            if stop.load(Ordering::SeqCst) {
                report.interrupted = true;
                break 'outer;
            }
        }
        bar.set_message(format!(
            "sent {}, already stored {}",
            report.sent + batcher.pending() as u64,
            report.skipped
        ));
    }
    // Interrupted, the documents queued but not sent are left for the re-run.
    if !report.interrupted {
        batcher.flush(&mut report).await?;
    }
    watcher.abort();
    bar.finish_and_clear();
    Ok(report)
}

fn verdict(item: &Item, stored: &HashMap<String, Stored>, max_content_bytes: usize) -> Verdict {
    if DocId::new(item.id.clone()).is_err() {
        return Verdict::InvalidId;
    }
    if item.len() > max_content_bytes {
        return Verdict::TooLarge;
    }
    let same = stored.get(&item.id).is_some_and(|s| {
        s.cid == item.cid().to_string() && s.title == item.title && s.metadata == item.metadata
    });
    if same {
        Verdict::AlreadyStored
    } else {
        Verdict::Send
    }
}

fn progress_bar(total: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )
        .expect("valid template"),
    );
    bar
}

async fn ensure_collection(client: &Client, c: &CollectionName) -> anyhow::Result<()> {
    match client.get(&["collections", c.as_str()], &[]).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("collection_not_found") => {
            client.put(&["collections", c.as_str()], &json!({})).await?;
            tracing::info!(collection = %c, "created collection");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// What the collection holds, by id.
async fn list_stored(
    client: &Client,
    c: &CollectionName,
) -> anyhow::Result<HashMap<String, Stored>> {
    let docs = client.list_docs(c.as_str()).await?;
    Ok(docs
        .into_iter()
        .map(|d| {
            let stored = Stored {
                cid: d["content_cid"].as_str().unwrap_or_default().to_string(),
                title: d["title"].as_str().map(str::to_string),
                metadata: d["metadata"].as_object().cloned().unwrap_or_default(),
            };
            (d["id"].as_str().unwrap_or_default().to_string(), stored)
        })
        .collect())
}

/// Bytes of a batch request around its documents (`{"docs":[...]}`), with room to spare.
const BATCH_OVERHEAD_BYTES: usize = 64;

/// The limits of the node that shape what ingest sends, from its status.
struct NodeLimits {
    max_content_bytes: usize,
    max_batch_docs: usize,
    max_body_bytes: usize,
}

impl NodeLimits {
    async fn of(client: &Client) -> anyhow::Result<Self> {
        let status = client.get(&["status"], &[]).await?;
        let limit = |name: &str| {
            status["limits"][name]
                .as_u64()
                .map_or(usize::MAX, |n| n as usize)
        };
        Ok(Self {
            max_content_bytes: limit("max_content_bytes"),
            max_batch_docs: limit("max_batch_docs"),
            max_body_bytes: limit("max_body_bytes"),
        })
    }
}

/// Collects items into batch requests and sends them, one at a time.
struct Batcher<'a> {
    client: &'a Client,
    collection: &'a CollectionName,
    max_docs: usize,
    max_bytes: usize,
    docs: Vec<Value>,
    bytes: usize,
    bar: ProgressBar,
}

impl<'a> Batcher<'a> {
    fn new(
        client: &'a Client,
        collection: &'a CollectionName,
        args: &IngestArgs,
        limits: &NodeLimits,
        bar: ProgressBar,
    ) -> Self {
        Self {
            client,
            collection,
            max_docs: args.batch_docs.clamp(1, limits.max_batch_docs.max(1)),
            max_bytes: args
                .batch_bytes
                .min(limits.max_body_bytes.saturating_sub(BATCH_OVERHEAD_BYTES)),
            docs: Vec::new(),
            bytes: 0,
            bar,
        }
    }

    fn pending(&self) -> usize {
        self.docs.len()
    }

    /// Queues an item, sending the queued batch first when the item would overflow it.
    /// Returns false, queueing nothing, for an item too large for any request.
    async fn push(&mut self, item: &Item, report: &mut IngestReport) -> anyhow::Result<bool> {
        let v = item.to_json();
        // The item and the comma that separates it from the next.
        let len = serde_json::to_vec(&v).map_or(usize::MAX, |b| b.len() + 1);
        if len > self.max_bytes {
            return Ok(false);
        }
        if !self.docs.is_empty()
            && (self.docs.len() >= self.max_docs || self.bytes + len > self.max_bytes)
        {
            self.flush(report).await?;
        }
        self.bytes += len;
        self.docs.push(v);
        Ok(true)
    }

    async fn flush(&mut self, report: &mut IngestReport) -> anyhow::Result<()> {
        if self.docs.is_empty() {
            return Ok(());
        }
        let docs = std::mem::take(&mut self.docs);
        let n = docs.len() as u64;
        self.bytes = 0;
        let resp = self
            .client
            .post(
                &["collections", self.collection.as_str(), "docs:batch"],
                &json!({"docs": docs}),
            )
            .await
            .context("batch write failed; documents sent before it are stored, re-run to resume")?;
        report.sent += n;
        report.created += resp["created"].as_u64().unwrap_or(0);
        report.updated += resp["updated"].as_u64().unwrap_or(0);
        self.bar.set_message(format!(
            "sent {}, already stored {}",
            report.sent, report.skipped
        ));
        Ok(())
    }
}

/// One input: a file (with its document id) or a BEIR corpus.
struct Source {
    path: PathBuf,
    kind: SourceKind,
    bytes: u64,
}

enum SourceKind {
    /// A file; `id` is `None` when its path is not UTF-8.
    File {
        id: Option<String>,
    },
    Corpus,
}

fn collect_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut out = Vec::new();
    for root in paths {
        let meta =
            std::fs::metadata(root).with_context(|| format!("reading {}", root.display()))?;
        if meta.is_file() {
            let name = root
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string);
            out.push(source(root, name, meta.len()));
            continue;
        }
        let walker = walkdir::WalkDir::new(root)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walker {
            let entry = entry?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            // A name that is not UTF-8 has no id (a lossy one could collide with another's).
            let id = rel
                .components()
                .map(|c| c.as_os_str().to_str())
                .collect::<Option<Vec<_>>>()
                .map(|parts| parts.join("/"));
            out.push(source(entry.path(), id, entry.metadata()?.len()));
        }
    }
    Ok(out)
}

fn source(path: &Path, id: Option<String>, bytes: u64) -> Source {
    let kind = if path.extension().is_some_and(|e| e == "jsonl") {
        SourceKind::Corpus
    } else {
        SourceKind::File { id }
    };
    Source {
        path: path.to_path_buf(),
        kind,
        bytes,
    }
}

/// One line of a BEIR corpus.
#[derive(Deserialize)]
struct CorpusLine {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: Option<String>,
    text: String,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

impl Source {
    fn items(&self) -> anyhow::Result<Box<dyn Iterator<Item = anyhow::Result<Item>> + '_>> {
        match &self.kind {
            SourceKind::File { id: None } => Ok(Box::new(std::iter::once(Err(anyhow::anyhow!(
                InvalidName(self.path.display().to_string())
            ))))),
            SourceKind::File { id: Some(id) } => {
                let bytes = std::fs::read(&self.path)
                    .with_context(|| format!("reading {}", self.path.display()))?;
                let content = match String::from_utf8(bytes) {
                    Ok(t) => Content::Text(t),
                    Err(e) => Content::Bytes(e.into_bytes()),
                };
                let item = Item {
                    input_bytes: self.bytes,
                    id: id.clone(),
                    title: None,
                    metadata: Map::new(),
                    content,
                };
                Ok(Box::new(std::iter::once(Ok(item))))
            }
            SourceKind::Corpus => {
                let file = std::fs::File::open(&self.path)
                    .with_context(|| format!("opening {}", self.path.display()))?;
                let path = self.path.display().to_string();
                let lines = std::io::BufReader::new(file).lines().enumerate();
                Ok(Box::new(lines.filter_map(move |(i, line)| {
                    let parsed = line
                        .map_err(anyhow::Error::from)
                        .and_then(|l| {
                            if l.trim().is_empty() {
                                return Ok(None);
                            }
                            let line: CorpusLine = serde_json::from_str(&l)?;
                            Ok(Some((line, l.len() as u64 + 1)))
                        })
                        .with_context(|| format!("{path}:{}", i + 1));
                    match parsed {
                        Ok(None) => None,
                        Ok(Some((c, input_bytes))) => Some(Ok(Item {
                            input_bytes,
                            id: c.id,
                            title: c.title.filter(|t| !t.is_empty()),
                            metadata: c.metadata.unwrap_or_default(),
                            content: Content::Text(c.text),
                        })),
                        Err(e) => Some(Err(e)),
                    }
                })))
            }
        }
    }
}

/// Prints a report the way the CLI shows it.
pub fn print_report(r: &IngestReport) {
    println!(
        "sent {} documents ({} created, {} updated); {} already stored, skipped",
        r.sent, r.created, r.updated, r.skipped
    );
    if r.invalid > 0 {
        println!(
            "{} files skipped: their names cannot be document ids",
            r.invalid
        );
    }
    if r.too_large > 0 {
        println!(
            "{} documents skipped: larger than the node accepts",
            r.too_large
        );
    }
    if r.interrupted {
        println!("interrupted: every batch sent is stored; re-run the same command to resume");
    }
}
