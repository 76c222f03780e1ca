//! `ragsync bench query` and `ragsync bench embed`: search latency over HTTP and the
//! built-in embedding model's throughput.

use std::time::Instant;

use anyhow::{Context, ensure};
use serde_json::json;

use super::{BenchNodes, EmbedBench, QueryBench, figure, load, percentile};
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
    node.shutdown().await?;
    figure("query_chunks", chunks as f64, "chunks");
    figure("query_bm25_p50", percentile(&lat, 50.0), "ms");
    figure("query_bm25_p99", percentile(&lat, 99.0), "ms");
    figure(
        "query_bm25_mean_results",
        results as f64 / lat.len().max(1) as f64,
        "results",
    );
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
