//! `ragsync bench query` and `ragsync bench embed`: search latency over HTTP and the
//! built-in embedding model's throughput.

use std::time::Instant;

use anyhow::{Context, ensure};
use serde_json::json;

use super::{BenchNodes, EmbedBench, QueryBench, figure, load, percentile};
use crate::node_proc::NodeProcess;
use crate::textgen::{Mulberry32, text};

/// Waits until the node's search index covers every write made before the call: a query
/// waits for that itself (bounded), and says `stale` when it gave up.
pub(super) async fn wait_indexed(client: &crate::client::Client) -> anyhow::Result<()> {
    loop {
        let v = client
            .post(
                &["collections", "bench", "query"],
                &json!({"query": "ba", "mode": "bm25", "top_k": 1}),
            )
            .await?;
        if v["stale"] == json!(false) {
            return Ok(());
        }
    }
}

/// Waits until the node has gone quiet (under 5 % of a core over a quarter of a second, at
/// most 60 s): queries are timed against the index, not against the merges and commits a
/// bulk load leaves running behind it. Says how long it waited.
async fn wait_quiet(node: &NodeProcess) {
    let start = Instant::now();
    let tick = std::time::Duration::from_millis(250);
    let mut last = node.cpu_seconds();
    while start.elapsed() < std::time::Duration::from_secs(60) {
        tokio::time::sleep(tick).await;
        let now = node.cpu_seconds();
        match (last, now) {
            (Some(a), Some(b)) if b - a < 0.05 * tick.as_secs_f64() => break,
            (_, None) => break,
            _ => last = now,
        }
    }
    eprintln!(
        "ragsync bench query: node quiet after {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

pub(super) async fn query(a: QueryBench) -> anyhow::Result<()> {
    ensure!(
        a.docs > 0 && a.queries > 0 && a.words > 0,
        "--docs, --queries and --words must be positive"
    );
    let nodes = BenchNodes::new("full")?;
    let node = nodes.start("node", true).await?;
    let client = node.client();
    let (docs, doc_bytes, seed) = (a.docs, a.doc_bytes, a.seed);
    let bar = load(&client, docs, doc_bytes, seed, "ingesting").await?;
    bar.set_message("indexing");
    wait_indexed(&client).await?;
    bar.finish_and_clear();
    let status = client.get(&["status"], &[]).await?;
    let chunks = status["search"]["chunks"]["bench"].as_u64().unwrap_or(0);
    wait_quiet(&node).await;
    eprintln!(
        "ragsync bench query: {chunks} chunks indexed, node pid {}",
        node.pid()
    );

    // Queries: a few words in a row from documents spread over the collection.
    let (queries, words) = (a.queries, a.words);
    let texts = tokio::task::spawn_blocking(move || {
        let mut rng = Mulberry32::new(seed);
        let every = (docs / (queries + 50)).max(1);
        let mut pick = Mulberry32::new(seed ^ 0x5eed);
        let mut out = Vec::new();
        for n in 0..docs {
            let t = text(&mut rng, doc_bytes);
            if n % every == 0 && out.len() < queries + 50 {
                let w: Vec<&str> = t.split_whitespace().collect();
                let at = (pick.next_f64() * w.len().saturating_sub(words) as f64) as usize;
                out.push(w[at..(at + words).min(w.len())].join(" "));
            }
        }
        out
    })
    .await?;
    let mut lat = Vec::with_capacity(a.queries);
    let mut results = 0usize;
    for (i, q) in texts.iter().enumerate() {
        let t = Instant::now();
        let v = client
            .post(
                &["collections", "bench", "query"],
                &json!({"query": q, "mode": "bm25", "top_k": 10}),
            )
            .await?;
        if i >= 50 {
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            results += v["results"].as_array().map_or(0, Vec::len);
        }
    }
    lat.sort_by(f64::total_cmp);
    figure("query_chunks", chunks as f64, "chunks");
    figure("query_bm25_p50", percentile(&lat, 50.0), "ms");
    figure("query_bm25_p99", percentile(&lat, 99.0), "ms");
    figure(
        "query_bm25_mean_results",
        results as f64 / lat.len().max(1) as f64,
        "results",
    );
    if a.vector_docs > 0 {
        vector_phase(&node, a.vector_docs, a.doc_bytes, a.queries, seed).await?;
    }
    if a.hybrid_docs > 0 {
        hybrid_phase(&client, a.hybrid_docs, a.doc_bytes, &texts).await?;
    }
    node.shutdown().await?;
    Ok(())
}

/// Dimension of the caller-supplied vectors (that of the built-in model, and of Chroma's
/// benchmark).
const DIM: usize = 384;

/// `n` pseudo-random unit vectors of [`DIM`] coordinates, one after the other.
fn unit_vectors(rng: &mut Mulberry32, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * DIM);
    for _ in 0..n {
        let v: Vec<f32> = (0..DIM)
            .map(|_| (rng.next_f64() + rng.next_f64() + rng.next_f64() - 1.5) as f32)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        out.extend(v.iter().map(|x| x / norm));
    }
    out
}

/// Ingests `docs` documents with caller-supplied vectors into an `external` collection
/// (batches of 1,000, as Chroma's benchmark sends them), then times queries by vector and
/// measures their recall@10 against an exact scan done here.
async fn vector_phase(
    node: &NodeProcess,
    docs: usize,
    doc_bytes: usize,
    queries: usize,
    seed: u32,
) -> anyhow::Result<()> {
    let client = &node.client();
    client
        .put(
            &["collections", "vec"],
            &json!({"embedding": {"model": "external", "dimension": DIM}}),
        )
        .await?;
    let (vectors, bodies) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut rng = Mulberry32::new(seed ^ 0x7ec);
        let vectors = unit_vectors(&mut rng, docs);
        let mut bodies = Vec::new();
        for start in (0..docs).step_by(1000) {
            let items: Vec<_> = (start..(start + 1000).min(docs))
                .map(|n| {
                    json!({
                        "id": format!("v-{n:09}"),
                        "text": text(&mut rng, doc_bytes),
                        "vector": &vectors[n * DIM..(n + 1) * DIM],
                    })
                })
                .collect();
            bodies.push((items.len(), serde_json::to_vec(&json!({ "docs": items }))?));
        }
        Ok((vectors, bodies))
    })
    .await??;
    let t = Instant::now();
    for (_, body) in bodies {
        client
            .post_raw(&["collections", "vec", "docs:batch"], body)
            .await?;
    }
    let secs = t.elapsed().as_secs_f64();
    figure(
        "ingest_with_vectors_docs_per_s",
        docs as f64 / secs,
        "docs/s",
    );
    loop {
        let s = client.get(&["status"], &[]).await?;
        if s["search"]["vectors"]["vec"]["vectors"].as_u64() == Some(docs as u64) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (probes, exact) = {
        let vectors = std::sync::Arc::new(vectors);
        tokio::task::spawn_blocking(move || {
            let mut rng = Mulberry32::new(seed ^ 0x9e);
            let probes = unit_vectors(&mut rng, queries + 50);
            let exact: Vec<Vec<usize>> = probes
                .chunks(DIM)
                .map(|q| {
                    let mut s: Vec<(f32, usize)> = vectors
                        .chunks(DIM)
                        .enumerate()
                        .map(|(i, v)| (ragsync_search::vectors::dot_f32(q, v), i))
                        .collect();
                    s.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
                    s[..10].iter().map(|x| x.1).collect()
                })
                .collect();
            (probes, exact)
        })
        .await?
    };
    wait_quiet(node).await;
    let (mut lat, mut found) = (Vec::with_capacity(queries), 0usize);
    for (i, q) in probes.chunks(DIM).enumerate() {
        let t = Instant::now();
        let v = client
            .post(
                &["collections", "vec", "query"],
                &json!({"vector": q, "top_k": 10}),
            )
            .await?;
        if i < 50 {
            continue;
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        let want: Vec<String> = exact[i].iter().map(|n| format!("v-{n:09}")).collect();
        found += v["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["doc_id"]
                    .as_str()
                    .is_some_and(|d| want.iter().any(|w| w == d))
            })
            .count();
    }
    lat.sort_by(f64::total_cmp);
    figure("query_vector_docs", docs as f64, "vectors");
    figure("query_vector_p50", percentile(&lat, 50.0), "ms");
    figure("query_vector_p99", percentile(&lat, 99.0), "ms");
    figure(
        "query_vector_recall_at_10",
        found as f64 / (10 * lat.len().max(1)) as f64,
        "",
    );
    Ok(())
}

/// Ingests `docs` documents into a collection of the built-in model, waits until every chunk
/// is embedded, then times hybrid queries by text (the query embedded by the node).
async fn hybrid_phase(
    client: &crate::client::Client,
    docs: usize,
    doc_bytes: usize,
    texts: &[String],
) -> anyhow::Result<()> {
    client
        .put(
            &["collections", "hyb"],
            &json!({"embedding": {"model": "builtin"}}),
        )
        .await?;
    let bodies = tokio::task::spawn_blocking(move || {
        super::batch_bodies(
            docs,
            1000,
            doc_bytes,
            7,
            "h",
            crate::textgen::Vocabulary::Uniform,
        )
    })
    .await??;
    for (_, body) in bodies {
        client
            .post_raw(&["collections", "hyb", "docs:batch"], body)
            .await?;
    }
    let t = Instant::now();
    crate::search_cmd::wait_indexed(client, "hyb", true).await?;
    figure(
        "hybrid_embed_chunks_per_s",
        docs as f64 / t.elapsed().as_secs_f64(),
        "chunks/s",
    );
    let mut lat = Vec::with_capacity(texts.len());
    for (i, q) in texts.iter().enumerate() {
        let t = Instant::now();
        client
            .post(
                &["collections", "hyb", "query"],
                &json!({"query": q, "mode": "hybrid", "top_k": 10}),
            )
            .await?;
        if i >= 50 {
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    lat.sort_by(f64::total_cmp);
    figure("query_hybrid_docs", docs as f64, "chunks");
    figure("query_hybrid_p50", percentile(&lat, 50.0), "ms");
    figure("query_hybrid_p99", percentile(&lat, 99.0), "ms");
    Ok(())
}

/// Embeds `--chunks` texts with the built-in model on one thread, then on one per core.
pub(super) fn embed(a: EmbedBench) -> anyhow::Result<()> {
    use ragsync_search::embed::{BuiltIn, Embedder};
    ensure!(a.chunks > 0, "--chunks must be positive");
    let texts: Vec<String> = match &a.corpus {
        None => {
            let mut rng = Mulberry32::new(a.seed);
            (0..a.chunks)
                .map(|_| text(&mut rng, a.chunk_bytes))
                .collect()
        }
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(a.chunks)
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)?;
                let title = v["title"].as_str().unwrap_or("");
                let body = v["text"].as_str().unwrap_or("");
                Ok(format!("{title} {body}").trim().to_string())
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut phases = vec![1];
    if cores > 1 {
        phases.push(cores);
    }
    let mut rates = Vec::new();
    for threads in phases {
        let model = BuiltIn::with_threads(threads)?;
        model.embed(&refs[..refs.len().min(8)])?; // weights loaded, caches warm
        let t = Instant::now();
        let v = model.embed(&refs)?;
        let secs = t.elapsed().as_secs_f64();
        ensure!(
            v.len() == refs.len(),
            "{} vectors for {} chunks",
            v.len(),
            refs.len()
        );
        let rate = refs.len() as f64 / secs;
        figure(
            &format!("embed_chunks_per_s_{threads}_threads"),
            rate,
            "chunks/s",
        );
        rates.push(rate);
    }
    if let [one, all] = rates[..] {
        figure("embed_speedup", all / one, "x");
    }
    Ok(())
}
