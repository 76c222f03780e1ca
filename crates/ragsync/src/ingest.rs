//! `ragsync ingest PATH… --collection C`: files, folders and BEIR-style `corpus.jsonl` files,
//! sent in batches through the batch endpoint, with a progress bar.
//!
//! Resumable: before sending, the command lists what the collection already holds and skips
//! every document whose content, title and metadata are already stored; the server also
//! refuses to add a version that changes nothing. Ctrl-C stops after the batch in flight
//! (each batch is one transaction, so it is stored whole or not at all); re-running the same
//! command continues where it stopped.
//!
//! One bad record never blocks a corpus: records the node would refuse are checked against its
//! limits (from its status) before they are queued, and reported with `file:line` and the
//! reason; an item the node refuses anyway (its refusal names the batch `index`) is reported
//! and the rest of its batch sent again.

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
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::client::{Client, ClientArgs, ClientError};
use crate::display::terminal_safe;

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
    /// Records not sent (or refused by the node), each with where it came from and why.
    pub refused: Vec<Refused>,
    pub interrupted: bool,
}

/// A record ingest did not store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `path` for a file, `path:line` for a corpus record.
    pub origin: String,
    pub reason: String,
}

/// One document to write.
struct Item {
    /// `path` or `path:line`, for reports.
    origin: String,
    /// Why it cannot be sent, found while it was read (a name or a line that cannot be one).
    unreadable: Option<String>,
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
    Refuse(String),
}

enum Content {
    Text(String),
    Bytes(Vec<u8>),
}

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

    let mut report = IngestReport::default();
    let sources = collect_sources(&args.paths, &mut report)?;
    let total_bytes: u64 = sources.iter().map(|s| s.bytes).sum();
    let bar = progress_bar(total_bytes, args.quiet);
    let mut batcher = Batcher::new(&client, &collection, &args, &limits, bar.clone());
    'outer: for source in &sources {
        if matches!(source.kind, SourceKind::File { .. }) && source.bytes > max_content_bytes as u64
        {
            report.refuse(
                source.path.display().to_string(),
                format!(
                    "{} bytes, larger than the node's max_content_bytes ({max_content_bytes})",
                    source.bytes
                ),
            );
            bar.inc(source.bytes);
            continue;
        }
        for item in source.items()? {
            let item = item?;
            bar.inc(item.input_bytes);
            match verdict(&item, &stored, &limits) {
                Verdict::AlreadyStored => report.skipped += 1,
                Verdict::Refuse(reason) => report.refuse(item.origin.clone(), reason),
                Verdict::Send => batcher.push(item, &mut report).await?,
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

impl IngestReport {
    fn refuse(&mut self, origin: String, reason: String) {
        tracing::warn!(%origin, %reason, "skipping");
        self.refused.push(Refused { origin, reason });
    }
}

/// Whether to send `item`: not when it is stored already, nor when the node would refuse it
/// (checked here against its limits, so one bad record never fails a whole batch).
fn verdict(item: &Item, stored: &HashMap<String, Stored>, limits: &NodeLimits) -> Verdict {
    if let Some(reason) = &item.unreadable {
        return Verdict::Refuse(reason.clone());
    }
    // The id as the node keeps it (NFC), to find what is stored under it.
    let id = match DocId::new(item.id.clone()) {
        Ok(id) => id,
        Err(e) => return Verdict::Refuse(e.to_string()),
    };
    let too_large = |what: &str, len: usize, limit: usize, name: &str| {
        Verdict::Refuse(format!(
            "{what} of {len} bytes is larger than the node's {name} ({limit})"
        ))
    };
    if item.len() > limits.max_content_bytes {
        return too_large(
            "content",
            item.len(),
            limits.max_content_bytes,
            "max_content_bytes",
        );
    }
    if let Some(t) = item
        .title
        .as_ref()
        .filter(|t| t.len() > limits.max_title_bytes)
    {
        return too_large("title", t.len(), limits.max_title_bytes, "max_title_bytes");
    }
    let metadata_len = serde_json::to_vec(&item.metadata).map_or(usize::MAX, |b| b.len());
    if metadata_len > limits.max_metadata_bytes {
        return too_large(
            "metadata",
            metadata_len,
            limits.max_metadata_bytes,
            "max_metadata_bytes",
        );
    }
    if let Err(e) = ragsync_core::metadata::check_depth(&item.metadata, limits.max_metadata_depth) {
        return Verdict::Refuse(e.to_string());
    }
    let same = stored.get(id.as_str()).is_some_and(|s| {
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
    max_title_bytes: usize,
    max_metadata_bytes: usize,
    max_metadata_depth: usize,
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
            max_title_bytes: limit("max_title_bytes"),
            max_metadata_bytes: limit("max_metadata_bytes"),
            max_metadata_depth: limit("max_metadata_depth"),
        })
    }
}

/// Collects items into batch requests and sends them, one at a time.
struct Batcher<'a> {
    client: &'a Client,
    collection: &'a CollectionName,
    max_docs: usize,
    /// Bytes a batch grows to before it is sent (`--batch-bytes`, at most what the node takes).
    max_bytes: usize,
    /// The largest request the node takes: an item larger than `max_bytes` goes alone.
    max_body: usize,
    /// Queued documents as JSON, with where each came from.
    docs: Vec<(Value, String)>,
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
        let max_body = limits.max_body_bytes.saturating_sub(BATCH_OVERHEAD_BYTES);
        Self {
            client,
            collection,
            max_docs: args.batch_docs.clamp(1, limits.max_batch_docs.max(1)),
            max_bytes: args.batch_bytes.min(max_body),
            max_body,
            docs: Vec::new(),
            bytes: 0,
            bar,
        }
    }

    fn pending(&self) -> usize {
        self.docs.len()
    }

    /// Queues an item, sending the queued batch first when the item would overflow it. An
    /// item larger than a batch is sent alone; one larger than any request is refused.
    async fn push(&mut self, item: Item, report: &mut IngestReport) -> anyhow::Result<()> {
        let v = item.to_json();
        // The item and the comma that separates it from the next.
        let len = serde_json::to_vec(&v).map_or(usize::MAX, |b| b.len() + 1);
        if len > self.max_body {
            report.refuse(
                item.origin,
                format!(
                    "its request of {len} bytes would be larger than the node's max_body_bytes"
                ),
            );
            return Ok(());
        }
        if !self.docs.is_empty()
            && (self.docs.len() >= self.max_docs || self.bytes + len > self.max_bytes)
        {
            self.flush(report).await?;
        }
        self.bytes += len;
        self.docs.push((v, item.origin));
        Ok(())
    }

    /// Sends the queued batch. When the node refuses one item of it (a limit ingest could not
    /// check), that item is reported and the rest is sent again.
    async fn flush(&mut self, report: &mut IngestReport) -> anyhow::Result<()> {
        let mut queued = std::mem::take(&mut self.docs);
        self.bytes = 0;
        while !queued.is_empty() {
            let docs: Vec<&Value> = queued.iter().map(|(v, _)| v).collect();
            let sent = self
                .client
                .post(
                    &["collections", self.collection.as_str(), "docs:batch"],
                    &json!({"docs": docs}),
                )
                .await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(ClientError::Api {
                    status,
                    message,
                    index: Some(i),
                    ..
                }) if status.is_client_error() && i < queued.len() => {
                    let (_, origin) = queued.remove(i);
                    report.refuse(origin, format!("refused by the node ({status}): {message}"));
                    continue;
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e).context(
                        "batch write failed; documents sent before it are stored, re-run to resume",
                    ));
                }
            };
            report.sent += queued.len() as u64;
            report.created += resp["created"].as_u64().unwrap_or(0);
            report.updated += resp["updated"].as_u64().unwrap_or(0);
            self.bar.set_message(format!(
                "sent {}, already stored {}",
                report.sent, report.skipped
            ));
            break;
        }
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

/// The files to read: each path given, and every file under each folder given (hidden entries
/// skipped). A symbolic link is followed when it leads to a file inside the folder; other
/// links are reported in `report` and skipped.
fn collect_sources(paths: &[PathBuf], report: &mut IngestReport) -> anyhow::Result<Vec<Source>> {
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
        let real_root = root
            .canonicalize()
            .with_context(|| format!("reading {}", root.display()))?;
        let walker = walkdir::WalkDir::new(root)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let at = e.path().unwrap_or(root).display().to_string();
                    report.refuse(at, format!("cannot be read: {e}"));
                    continue;
                }
            };
            // The folder given may itself be a link; links inside it are checked.
            let len = if entry.depth() > 0 && entry.path_is_symlink() {
                match link_to_file_within(entry.path(), &real_root) {
                    Ok(len) => len,
                    Err(reason) => {
                        report.refuse(entry.path().display().to_string(), reason.into());
                        continue;
                    }
                }
            } else if entry.file_type().is_file() {
                entry.metadata()?.len()
            } else {
                continue;
            };
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            // A name that is not UTF-8 has no id (a lossy one could collide with another's).
            let id = rel
                .components()
                .map(|c| c.as_os_str().to_str())
                .collect::<Option<Vec<_>>>()
                .map(|parts| parts.join("/"));
            out.push(source(entry.path(), id, len));
        }
    }
    Ok(out)
}

/// The length of the file `link` leads to, when that file is inside `real_root`.
fn link_to_file_within(link: &Path, real_root: &Path) -> Result<u64, &'static str> {
    let target = link
        .canonicalize()
        .map_err(|_| "a symbolic link that leads nowhere")?;
    if !target.starts_with(real_root) {
        return Err("a symbolic link that leads outside the folder given");
    }
    match std::fs::metadata(&target) {
        Ok(m) if m.is_file() => Ok(m.len()),
        Ok(_) => Err("a symbolic link to a folder (its files are read where they are)"),
        Err(_) => Err("a symbolic link that leads nowhere"),
    }
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
    #[serde(rename = "_id", deserialize_with = "beir_id")]
    id: String,
    #[serde(default)]
    title: Option<String>,
    text: String,
    /// Kept as its literal text, so integers too wide to keep are refused, not rounded.
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
}

/// A BEIR `_id` as text: a string, or an integer (as some exporters write ids), by its digits.
pub fn beir_id_text(v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s),
        Value::Number(n) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        other => Err(format!("_id must be a string or an integer, not {other}")),
    }
}

fn beir_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    beir_id_text(Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

impl Item {
    /// An item that cannot be sent, for the report.
    fn unreadable(origin: String, input_bytes: u64, reason: String) -> Self {
        Item {
            origin,
            unreadable: Some(reason),
            id: String::new(),
            title: None,
            metadata: Map::new(),
            content: Content::Bytes(Vec::new()),
            input_bytes,
        }
    }
}

impl Source {
    fn items(&self) -> anyhow::Result<Box<dyn Iterator<Item = anyhow::Result<Item>> + '_>> {
        let origin = self.path.display().to_string();
        match &self.kind {
            SourceKind::File { id: None } => Ok(Box::new(std::iter::once(Ok(Item::unreadable(
                origin,
                self.bytes,
                "the file name is not UTF-8, so it cannot be a document id".into(),
            ))))),
            SourceKind::File { id: Some(id) } => {
                let bytes = match std::fs::read(&self.path) {
                    Ok(b) => b,
                    Err(e) => {
                        let reason = format!("cannot be read: {e}");
                        let item = Item::unreadable(origin, self.bytes, reason);
                        return Ok(Box::new(std::iter::once(Ok(item))));
                    }
                };
                let content = match String::from_utf8(bytes) {
                    Ok(t) => Content::Text(t),
                    Err(e) => Content::Bytes(e.into_bytes()),
                };
                let item = Item {
                    origin,
                    unreadable: None,
                    input_bytes: self.bytes,
                    id: id.clone(),
                    title: None,
                    metadata: Map::new(),
                    content,
                };
                Ok(Box::new(std::iter::once(Ok(item))))
            }
            SourceKind::Corpus => {
                let file = match std::fs::File::open(&self.path) {
                    Ok(f) => f,
                    Err(e) => {
                        let reason = format!("cannot be read: {e}");
                        let item = Item::unreadable(origin, self.bytes, reason);
                        return Ok(Box::new(std::iter::once(Ok(item))));
                    }
                };
                // Lines as bytes: one that is not UTF-8 is a record to report, not the end.
                let lines = std::io::BufReader::new(file).split(b'\n').enumerate();
                Ok(Box::new(lines.filter_map(move |(i, line)| {
                    let at = format!("{origin}:{}", i + 1);
                    let line = match line {
                        Ok(l) => l,
                        Err(e) => return Some(Err(anyhow::Error::from(e).context(at))),
                    };
                    let len = line.len() as u64 + 1;
                    let line = match String::from_utf8(line) {
                        Ok(l) => l,
                        Err(e) => {
                            let reason = format!("the line is not UTF-8: {}", e.utf8_error());
                            return Some(Ok(Item::unreadable(at, len, reason)));
                        }
                    };
                    let line = line.strip_suffix('\r').unwrap_or(&line);
                    if line.trim().is_empty() {
                        return None;
                    }
                    Some(Ok(corpus_item(line, at)))
                })))
            }
        }
    }
}

/// The item of one corpus line, or an unreadable one saying why the line is not a record.
fn corpus_item(line: &str, origin: String) -> Item {
    let input_bytes = line.len() as u64 + 1;
    let record = serde_json::from_str::<CorpusLine>(line)
        .map_err(|e| format!("not a corpus record: {e}"))
        .and_then(|c| {
            let metadata = match &c.metadata {
                Some(raw) => ragsync_core::metadata::parse(
                    raw.get(),
                    ragsync_core::metadata::MAX_METADATA_DEPTH_CEILING,
                )
                .map_err(|e| e.to_string())?,
                None => Map::new(),
            };
            Ok((c, metadata))
        });
    match record {
        Ok((c, metadata)) => Item {
            origin,
            unreadable: None,
            input_bytes,
            id: c.id,
            title: c.title.filter(|t| !t.is_empty()),
            metadata,
            content: Content::Text(c.text),
        },
        Err(reason) => Item::unreadable(origin, input_bytes, reason),
    }
}

/// Most refused records listed one by one in the printed report.
const REFUSALS_SHOWN: usize = 20;

/// Prints a report the way the CLI shows it.
pub fn print_report(r: &IngestReport) {
    println!(
        "sent {} documents ({} created, {} updated); {} already stored, skipped",
        r.sent, r.created, r.updated, r.skipped
    );
    // Standard output going away (a closed pipe) leaves nothing to tell.
    let _ = write_refusals(&mut std::io::stdout().lock(), r);
    if r.interrupted {
        println!("interrupted: every batch sent is stored; re-run the same command to resume");
    }
}

/// Writes the records `r` did not store, if any, one line each (the first
/// [`REFUSALS_SHOWN`]).
pub fn write_refusals(out: &mut impl std::io::Write, r: &IngestReport) -> std::io::Result<()> {
    if r.refused.is_empty() {
        return Ok(());
    }
    writeln!(out, "{} records not stored:", r.refused.len())?;
    for f in r.refused.iter().take(REFUSALS_SHOWN) {
        // A file name or a node's message could hold terminal controls.
        let (origin, reason) = (terminal_safe(&f.origin), terminal_safe(&f.reason));
        writeln!(out, "  {origin}: {reason}")?;
    }
    if r.refused.len() > REFUSALS_SHOWN {
        writeln!(
            out,
            "  ... and {} more (the log lists each)",
            r.refused.len() - REFUSALS_SHOWN
        )?;
    }
    Ok(())
}
