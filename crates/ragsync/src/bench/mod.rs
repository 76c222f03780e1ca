//! `ragsync bench ingest`: a node in its own process on a temporary directory, written to
//! through the batch endpoint over real HTTP, one request at a time, with every request body
//! built before the clock starts, on a node without and one with a search index. `ragsync bench
//! query`: BM25 queries over HTTP on a collection of 100,000 chunks. `ragsync bench writes`: single-document writes from one
//! client, then from `--clients` at once, on the same node in the same run. `ragsync bench
//! sync`: a full sync to an empty peer over HTTP, the same through a proxy that delays each
//! direction, then single writes timed until the peer serves them. `ragsync bench partition`:
//! a chain of nodes cut in the middle, written on both sides, timed from heal to convergence.
//! `ragsync bench embed`: the built-in embedding model's chunks/s on one thread and on all.
//! Prints figures as `ragsync <name>: <value> <unit>`, the same
//! shape as the peer benchmarks in `../shared/peers`.

use std::time::Instant;

use anyhow::{Context, bail, ensure};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

mod search;

use search::{embed, query, wait_indexed};

use crate::node_proc::NodeProcess;
use crate::textgen::{Mulberry32, Vocabulary, text, text_of};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Batch-write throughput of one node over HTTP, without and with its search index.
    Ingest(IngestBench),
    /// Query latency over HTTP on a collection of `--docs` chunks.
    Query(QueryBench),
    /// Throughput of the built-in embedding model, on one thread and on every core.
    Embed(EmbedBench),
    /// Single-document writes from one client, then from many at once (group commit).
    Writes(WritesBench),
    /// Full sync to an empty peer over HTTP (also through a delaying proxy), then live
    /// propagation of single writes.
    Sync(SyncBench),
    /// A chain of nodes cut in the middle, written on both sides: time from heal to
    /// convergence.
    Partition(PartitionBench),
}

#[derive(Debug, Args)]
pub struct PartitionBench {
    /// Nodes in the chain (each pulls from its neighbours).
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Documents written on each side of the cut while it lasts.
    #[arg(long, default_value_t = 10_000)]
    pub writes: usize,
    /// Bytes of text per document.
    #[arg(long, default_value_t = 1024)]
    pub doc_bytes: usize,
    /// Durability of every node: relaxed, full (default) or extra.
    #[arg(long, default_value = "full")]
    pub durability: String,
}

#[derive(Debug, Args)]
pub struct SyncBench {
    /// Documents the source holds before the peer starts pulling.
    #[arg(long, default_value_t = 100_000)]
    pub docs: usize,
    /// Bytes of text per document.
    #[arg(long, default_value_t = 1024)]
    pub doc_bytes: usize,
    /// Single-document writes timed until the peer serves each (0 skips the live phase).
    #[arg(long, default_value_t = 200)]
    pub live_docs: usize,
    /// Then the same full sync to another empty peer through a proxy adding this much to
    /// each direction (0 skips it).
    #[arg(long, default_value_t = 50)]
    pub delay_ms: u64,
    /// Durability of both nodes: relaxed, full (default) or extra.
    #[arg(long, default_value = "full")]
    pub durability: String,
    /// on (default): nodes keep their search index; each index has caught up before a phase
    /// is timed, and the receiver's time to a caught-up index is a figure of its own.
    /// off: nodes without one (`serve --no-search`).
    #[arg(long, default_value = "on")]
    pub search: String,
}

#[derive(Debug, Args)]
pub struct WritesBench {
    /// Documents each phase writes, one per request.
    #[arg(long, default_value_t = 2000)]
    pub docs: usize,
    /// Bytes of text per document.
    #[arg(long, default_value_t = 1024)]
    pub doc_bytes: usize,
    /// Concurrent clients of the second phase.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Durability of the node under test: relaxed, full (default) or extra.
    #[arg(long, default_value = "full")]
    pub durability: String,
}

#[derive(Debug, Args)]
pub struct IngestBench {
    /// Documents to write.
    #[arg(long, default_value_t = 100_000)]
    pub docs: usize,
    /// Bytes of text per document.
    #[arg(long, default_value_t = 1024)]
    pub doc_bytes: usize,
    /// Documents per batch request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Durability of the node under test: relaxed, full (default) or extra.
    #[arg(long, default_value = "full")]
    pub durability: String,
    /// Seed of the text generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// off: a node without a search index; on: with one, timed until every document is
    /// indexed; both (default): off, then on, in the same run.
    #[arg(long, default_value = "both")]
    pub search: String,
    /// The words of the text: uniform (every word equally likely; the PouchDB bench's text)
    /// or zipf (word frequencies as in natural language).
    #[arg(long, value_enum, default_value = "uniform")]
    pub vocabulary: Vocabulary,
}

#[derive(Debug, Args)]
pub struct EmbedBench {
    /// Chunks to embed in each phase.
    #[arg(long, default_value_t = 1024)]
    pub chunks: usize,
    /// Bytes of text per chunk (the model reads its first 128 tokens).
    #[arg(long, default_value_t = 1024)]
    pub chunk_bytes: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Embed the first `--chunks` passages (title and text) of this BEIR `corpus.jsonl`
    /// instead of bench text.
    #[arg(long)]
    pub corpus: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct QueryBench {
    /// Documents of the collection (each one chunk under the default chunking).
    #[arg(long, default_value_t = 100_000)]
    pub docs: usize,
    /// Bytes of text per document.
    #[arg(long, default_value_t = 1024)]
    pub doc_bytes: usize,
    /// Queries timed (after 50 not timed).
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Words per query, taken in a row from a stored document.
    #[arg(long, default_value_t = 3)]
    pub words: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Documents sent with caller-supplied 384-dim unit vectors (an `external` collection),
    /// then queried by vector (0: skip).
    #[arg(long, default_value_t = 100_000)]
    pub vector_docs: usize,
    /// Documents embedded by the built-in model, then queried in hybrid mode by text (0: skip).
    #[arg(long, default_value_t = 2_000)]
    pub hybrid_docs: usize,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchWhat::Ingest(a) => ingest(a).await,
        BenchWhat::Query(a) => query(a).await,
        BenchWhat::Embed(a) => tokio::task::spawn_blocking(move || embed(a)).await?,
        BenchWhat::Writes(a) => writes(a).await,
        BenchWhat::Sync(a) => sync(a).await,
        BenchWhat::Partition(a) => partition(a).await,
    }
}

/// The request bodies of the benchmark: `(documents, JSON)` per batch.
fn batch_bodies(
    docs: usize,
    batch: usize,
    doc_bytes: usize,
    seed: u32,
    prefix: &str,
    words: Vocabulary,
) -> anyhow::Result<Vec<(usize, Vec<u8>)>> {
    let mut rng = Mulberry32::new(seed);
    (0..docs)
        .step_by(batch)
        .map(|start| {
            let items: Vec<_> = (start..(start + batch).min(docs))
                .map(|n| json!({"id": format!("{prefix}-{n:09}"), "text": text_of(words, &mut rng, doc_bytes), "metadata": {"n": n}}))
                .collect();
            Ok((items.len(), serde_json::to_vec(&json!({ "docs": items }))?))
        })
        .collect()
}

/// The nodes of one benchmark run: the running binary, started on a temporary directory
/// with one random token and the durability asked for.
struct BenchNodes {
    dir: tempfile::TempDir,
    exe: std::path::PathBuf,
    token: String,
    durability: String,
    /// More `serve` flags for every node.
    extra: Vec<String>,
}

impl BenchNodes {
    fn new(durability: &str) -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
            exe: std::env::current_exe()?,
            token: format!("bench-{:032x}", rand::random::<u128>()),
            durability: durability.to_string(),
            extra: Vec::new(),
        })
    }

    /// Starts node `name`; with `collection`, makes the collection `bench` on it.
    async fn start(&self, name: &str, collection: bool) -> anyhow::Result<NodeProcess> {
        let mut args = vec!["--durability", self.durability.as_str()];
        args.extend(self.extra.iter().map(String::as_str));
        let node =
            NodeProcess::start(&self.exe, &self.dir.path().join(name), &self.token, &args).await?;
        if collection {
            node.client()
                .put(&["collections", "bench"], &json!({}))
                .await?;
        }
        Ok(node)
    }
}

/// Writes `docs` documents of bench text into collection `bench` through `client`, in
/// batches of 1,000, showing progress on a bar it returns (left running for the caller).
async fn load(
    client: &crate::client::Client,
    docs: usize,
    doc_bytes: usize,
    seed: u32,
    what: &str,
) -> anyhow::Result<ProgressBar> {
    let bodies = tokio::task::spawn_blocking(move || {
        batch_bodies(docs, 1000, doc_bytes, seed, "doc", Vocabulary::Uniform)
    })
    .await??;
    let bar = ProgressBar::new(docs as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} docs {per_sec}")
            .expect("valid template"),
    );
    bar.set_message(what.to_string());
    for (n, body) in bodies {
        client
            .post_raw(&["collections", "bench", "docs:batch"], body)
            .await?;
        bar.inc(n as u64);
    }
    Ok(bar)
}

fn figure(name: &str, value: f64, unit: &str) {
    println!("ragsync {name}: {value:.2} {unit}");
}

async fn ingest(a: IngestBench) -> anyhow::Result<()> {
    ensure!(
        a.docs > 0 && a.batch > 0,
        "--docs and --batch must be positive"
    );
    let phases: &[bool] = match a.search.as_str() {
        "off" => &[false],
        "on" => &[true],
        "both" => &[false, true],
        other => bail!("--search {other:?}: off, on or both"),
    };
    let (docs, batch, doc_bytes, seed, words) =
        (a.docs, a.batch, a.doc_bytes, a.seed, a.vocabulary);
    let bodies = tokio::task::spawn_blocking(move || {
        batch_bodies(docs, batch, doc_bytes, seed, "doc", words)
    })
    .await??;
    let mut rates = Vec::new();
    for &search in phases {
        rates.push(ingest_phase(&a, bodies.clone(), search).await?);
    }
    if let [off, on] = rates[..] {
        figure("ingest_indexed_vs_unindexed", on / off * 100.0, "%");
    }
    Ok(())
}

/// One node, written with `bodies`; with `search`, timed until the index covers every
/// document. Returns documents per second.
async fn ingest_phase(
    a: &IngestBench,
    bodies: Vec<(usize, Vec<u8>)>,
    search: bool,
) -> anyhow::Result<f64> {
    let mut nodes = BenchNodes::new(&a.durability)?;
    if !search {
        nodes.extra.push("--no-search".into());
    }
    let node = nodes.start("node", true).await?;
    let client = node.client();
    let payload_bytes: usize = bodies.iter().map(|(_, b)| b.len()).sum();
    let label = if search { "indexed" } else { "unindexed" };
    eprintln!(
        "ragsync bench ingest ({label}): {} docs of {} bytes in {} batches ({:.1} MB of JSON), durability {}, node pid {}",
        a.docs,
        a.doc_bytes,
        bodies.len(),
        payload_bytes as f64 / 1e6,
        a.durability,
        node.pid()
    );

    let bar = ProgressBar::new(a.docs as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} docs {per_sec}")
            .expect("valid template"),
    );
    let cpu0 = node.cpu_seconds().unwrap_or(0.0);
    let t0 = Instant::now();
    for (i, (n, body)) in bodies.into_iter().enumerate() {
        let resp = client
            .post_raw(&["collections", "bench", "docs:batch"], body)
            .await
            .with_context(|| format!("batch {i}"))?;
        if resp["created"].as_u64() != Some(n as u64) {
            bail!("batch {i}: expected {n} created, got {}", resp["created"]);
        }
        bar.inc(n as u64);
    }
    let stored_secs = t0.elapsed().as_secs_f64();
    if search {
        bar.set_message("indexing");
        wait_indexed(&client).await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = node.cpu_seconds().unwrap_or(0.0) - cpu0;
    bar.finish_and_clear();

    let status = client.get(&["status"], &[]).await?;
    let stored = status["counts"]["documents"].as_u64().unwrap_or(0);
    ensure!(
        stored == a.docs as u64,
        "node holds {stored} documents, expected {}",
        a.docs
    );
    let rss_mib = node.peak_rss_kib().map_or(f64::NAN, |k| k as f64 / 1024.0);
    node.shutdown().await?;

    let p = if search { "ingest_indexed" } else { "ingest" };
    let rate = a.docs as f64 / secs;
    figure(&format!("{p}_docs_per_s"), rate, "docs/s");
    figure(
        &format!("{p}_mb_per_s"),
        payload_bytes as f64 / 1e6 / secs,
        "MB/s",
    );
    figure(&format!("{p}_seconds"), secs, "s");
    if search {
        figure("ingest_indexed_stored_seconds", stored_secs, "s");
    }
    figure(&format!("{p}_server_cpu"), cpu, "cpu-s");
    figure(&format!("{p}_server_peak_rss"), rss_mib, "MiB");
    Ok(rate)
}

/// One phase of `bench writes`: `docs` single-document PUTs spread over `clients` concurrent
/// clients. Returns the elapsed seconds.
async fn write_phase(
    node: &NodeProcess,
    phase: &str,
    docs: usize,
    clients: usize,
    text: &str,
) -> anyhow::Result<f64> {
    let body = serde_json::to_vec(&json!({ "text": text }))?;
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, body) = (http.clone(), body.clone());
            let (url, token) = (node.url.clone(), node.token.clone());
            let phase = phase.to_string();
            tokio::spawn(async move {
                for n in (c..docs).step_by(clients) {
                    let resp = http
                        .put(format!("{url}/v1/collections/bench/docs/{phase}-{n:07}"))
                        .bearer_auth(&token)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .send()
                        .await?;
                    ensure!(resp.status() == 201, "write {n}: {}", resp.status());
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(t0.elapsed().as_secs_f64())
}

async fn writes(a: WritesBench) -> anyhow::Result<()> {
    ensure!(
        a.docs > 0 && a.clients > 0,
        "--docs and --clients must be positive"
    );
    let nodes = BenchNodes::new(&a.durability)?;
    let node = nodes.start("node", true).await?;
    let client = node.client();
    let text = text(&mut Mulberry32::new(42), a.doc_bytes);
    eprintln!(
        "ragsync bench writes: {} single-document writes of {} bytes per phase, durability {}",
        a.docs, a.doc_bytes, a.durability
    );
    let one = write_phase(&node, "one", a.docs, 1, &text).await?;
    let status = client.get(&["status"], &[]).await?;
    let commits_one = status["group_commit"]["commits"].as_u64().unwrap_or(0);
    let many = write_phase(&node, "many", a.docs, a.clients, &text).await?;
    let status = client.get(&["status"], &[]).await?;
    let commits_many = status["group_commit"]["commits"].as_u64().unwrap_or(0) - commits_one;
    node.shutdown().await?;

    figure("writes_1_client_docs_per_s", a.docs as f64 / one, "docs/s");
    figure(
        &format!("writes_{}_clients_docs_per_s", a.clients),
        a.docs as f64 / many,
        "docs/s",
    );
    figure("writes_speedup", one / many, "x");
    figure(
        &format!("writes_{}_clients_per_commit", a.clients),
        a.docs as f64 / commits_many.max(1) as f64,
        "writes",
    );
    Ok(())
}

/// The p-th percentile of sorted `values`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn sync(a: SyncBench) -> anyhow::Result<()> {
    ensure!(a.docs > 0, "--docs must be positive");
    let mut nodes = BenchNodes::new(&a.durability)?;
    let search = match a.search.as_str() {
        "on" => true,
        "off" => false,
        other => bail!("--search {other:?}: on or off"),
    };
    if !search {
        nodes.extra.push("--no-search".into());
    }
    let src = nodes.start("source", true).await?;
    let source = src.client();
    let bar = load(&source, a.docs, a.doc_bytes, 42, "loading the source").await?;
    let head = source.get(&["sync", "info"], &[]).await?["head"]
        .as_u64()
        .unwrap_or(0);
    if search {
        bar.set_message("indexing the source");
        wait_indexed(&source).await?;
    }

    // Full sync: an empty node is given the source as its peer and pulls everything.
    let dst = nodes.start("peer", false).await?;
    let peer = dst.client();
    bar.reset();
    bar.set_message("full sync");
    let t0 = Instant::now();
    let (secs, pull) = full_sync(&peer, &src.url, &nodes.token, head, a.docs, &bar).await?;
    let indexed_secs = if search {
        bar.set_message("indexing on the peer");
        wait_indexed(&peer).await?;
        Some(t0.elapsed().as_secs_f64())
    } else {
        None
    };
    let rss_mib = dst.peak_rss_kib().map_or(f64::NAN, |k| k as f64 / 1024.0);
    let bytes = pull["bytes_received"].as_u64().unwrap_or(0);

    // The same through a long link: pipelining, not a round trip per page, keeps it close.
    let delayed_secs = if a.delay_ms > 0 {
        let far = nodes.start("far-peer", false).await?;
        let proxy =
            crate::proxy::Proxy::start(&src.url, std::time::Duration::from_millis(a.delay_ms))
                .await?;
        bar.reset();
        bar.set_message(format!("full sync, {} ms each way", a.delay_ms));
        let (secs, _) =
            full_sync(&far.client(), &proxy.url, &nodes.token, head, a.docs, &bar).await?;
        far.shutdown().await?;
        Some(secs)
    } else {
        None
    };
    bar.finish_and_clear();

    // Live: each write on the source, timed until the peer's own feed has it.
    let mut lat_ms = Vec::with_capacity(a.live_docs);
    let mut since = peer.get(&["sync", "info"], &[]).await?["head"]
        .as_u64()
        .unwrap_or(0);
    for i in 0..a.live_docs {
        let id = format!("live-{i:05}");
        let t = Instant::now();
        source
            .put(
                &["collections", "bench", "docs", &id],
                &json!({"text": format!("live write {i}")}),
            )
            .await?;
        'seen: loop {
            let page = peer
                .get(
                    &["sync", "changes"],
                    &[("since", since.to_string()), ("wait_ms", "5000".into())],
                )
                .await?;
            since = page["next_since"].as_u64().unwrap_or(since);
            for c in page["changes"].as_array().into_iter().flatten() {
                if c["id"] == id.as_str() {
                    break 'seen;
                }
            }
            ensure!(t.elapsed().as_secs() < 30, "live write {i} did not arrive");
        }
        lat_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    lat_ms.sort_by(f64::total_cmp);
    dst.shutdown().await?;
    src.shutdown().await?;

    figure("sync_docs_per_s", a.docs as f64 / secs, "docs/s");
    figure("sync_seconds", secs, "s");
    if let Some(s) = indexed_secs {
        figure("sync_until_indexed_seconds", s, "s");
    }
    figure("sync_receiver_peak_rss", rss_mib, "MiB");
    figure("sync_bytes_per_doc", bytes as f64 / a.docs as f64, "bytes");
    if let Some(d) = delayed_secs {
        figure(&format!("sync_seconds_{}ms_each_way", a.delay_ms), d, "s");
        figure("sync_delayed_bound", 2.0 * secs + 1.0, "s");
    }
    if !lat_ms.is_empty() {
        figure("live_p50", percentile(&lat_ms, 50.0), "ms");
        figure("live_p99", percentile(&lat_ms, 99.0), "ms");
    }
    Ok(())
}

/// Gives `peer` the node at `url` as its peer and waits until it holds `docs` documents and
/// its cursor reached `head`; the seconds that took and the final pull status.
async fn full_sync(
    peer: &crate::client::Client,
    url: &str,
    token: &str,
    head: u64,
    docs: usize,
    bar: &ProgressBar,
) -> anyhow::Result<(f64, serde_json::Value)> {
    let t0 = Instant::now();
    peer.post(&["peers"], &json!({"url": url, "token": token}))
        .await?;
    loop {
        let status = peer.get(&["status"], &[]).await?;
        let pull = status["peers"][0]["pull"].clone();
        let cursor = pull["cursor"].as_u64().unwrap_or(0);
        let held = status["counts"]["documents"].as_u64().unwrap_or(0);
        bar.set_position(held);
        if cursor >= head && held == docs as u64 {
            return Ok((t0.elapsed().as_secs_f64(), pull));
        }
        ensure!(
            t0.elapsed().as_secs() < 3600,
            "no full sync within an hour: {pull}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn partition(a: PartitionBench) -> anyhow::Result<()> {
    use crate::proxy::Proxy;
    use std::time::Duration;
    ensure!(a.nodes >= 2, "--nodes must be at least 2");
    let nodes = BenchNodes::new(&a.durability)?;
    let mut chain = Vec::new();
    for i in 0..a.nodes {
        chain.push(nodes.start(&format!("n{i}"), i == 0).await?);
    }
    // Every pull goes through a proxy of its own, so one link can be cut alone.
    let mut links = Vec::new();
    for i in 0..a.nodes - 1 {
        for (to, from) in [(i, i + 1), (i + 1, i)] {
            let proxy = Proxy::start(&chain[from].url, Duration::ZERO).await?;
            chain[to]
                .client()
                .post(&["peers"], &json!({"url": proxy.url, "token": nodes.token}))
                .await?;
            links.push(((to, from), proxy));
        }
    }
    let counts = || async {
        let mut out = Vec::new();
        for n in &chain {
            let s = n.client().get(&["status"], &[]).await?;
            out.push(s["counts"]["documents"].as_u64().unwrap_or(0));
        }
        anyhow::Ok(out)
    };
    let wait_for = |want: Vec<u64>, what: &'static str| {
        let counts = &counts;
        async move {
            let t0 = Instant::now();
            loop {
                let got = counts().await?;
                if got == want {
                    return anyhow::Ok(t0.elapsed().as_secs_f64());
                }
                ensure!(t0.elapsed().as_secs() < 600, "{what}: {got:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // The collection reaches every node before the cut.
    let t0 = Instant::now();
    for n in &chain {
        while n
            .client()
            .get(&["collections", "bench"], &[])
            .await
            .is_err()
        {
            ensure!(t0.elapsed().as_secs() < 60, "the collection did not spread");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mid = a.nodes / 2;
    for ((to, from), p) in &links {
        if (*to).min(*from) == mid - 1 && (*to).max(*from) == mid {
            p.set_cut(true);
        }
    }
    // Each end of the chain writes while cut off; the writes cross the nodes on its side.
    let (left, right) = (&chain[0], &chain[a.nodes - 1]);
    let left_bodies = batch_bodies(a.writes, 1000, a.doc_bytes, 1, "left", Vocabulary::Uniform)?;
    let right_bodies = batch_bodies(a.writes, 1000, a.doc_bytes, 2, "right", Vocabulary::Uniform)?;
    for (side, bodies) in [(left, left_bodies), (right, right_bodies)] {
        for (_, body) in bodies {
            side.client()
                .post_raw(&["collections", "bench", "docs:batch"], body)
                .await?;
        }
    }
    let w = a.writes as u64;
    wait_for(vec![w; a.nodes], "a side did not converge while cut").await?;
    // Heal, and tell both ends of the healed link to try now rather than after their backoff.
    let t0 = Instant::now();
    for (_, p) in &links {
        p.set_cut(false);
    }
    for i in [mid - 1, mid] {
        let c = chain[i].client();
        for peer in c
            .get(&["peers"], &[])
            .await?
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = peer["node_id"].as_str().unwrap_or_default();
            c.post(&["peers", id, "sync"], &json!({})).await?;
        }
    }
    wait_for(vec![2 * w; a.nodes], "no convergence after healing").await?;
    let secs = t0.elapsed().as_secs_f64();
    for n in chain {
        n.shutdown().await?;
    }
    figure("partition_heal_to_convergence", secs, "s");
    figure(
        "partition_docs_moved_per_s",
        (w * a.nodes as u64) as f64 / secs,
        "docs/s",
    );
    Ok(())
}
