//! `ragsync query` (one query, a readable table or JSON) and `ragsync eval` (nDCG@10 and
//! recall@10 of a judged BEIR folder).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ragsync_core::DocId;
use ragsync_search::embed::EXTERNAL_MODEL;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs};
use crate::display::terminal_safe;
use crate::ingest::{self, IngestArgs};

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to search for.
    pub text: String,
    #[arg(long, short)]
    pub collection: String,
    /// bm25, vector or hybrid (default: the collection's setting).
    #[arg(long)]
    pub mode: Option<String>,
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Hybrid weight: 0 = BM25 only, 1 = vector only.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Metadata filter, as JSON (`{"year": {"$gte": 2020}}`).
    #[arg(long)]
    pub filter: Option<String>,
    /// Print the node's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The body of `POST /v1/collections/{c}/query`.
fn query_body(text: &str, mode: Option<&str>, top_k: Option<u32>, alpha: Option<f64>) -> Value {
    let mut body = json!({"query": text});
    if let Some(m) = mode {
        body["mode"] = json!(m);
    }
    if let Some(k) = top_k {
        body["top_k"] = json!(k);
    }
    if let Some(a) = alpha {
        body["alpha"] = json!(a);
    }
    body
}

pub async fn query(a: QueryArgs) -> anyhow::Result<()> {
    let client = Client::new(&a.client)?;
    let mut body = query_body(&a.text, a.mode.as_deref(), a.top_k, a.alpha);
    if let Some(f) = &a.filter {
        body["filter"] =
            serde_json::from_str(f).map_err(|e| anyhow::anyhow!("--filter is not JSON: {e}"))?;
    }
    let answer = client
        .post(&["collections", &a.collection, "query"], &body)
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    print!("{}", table(&answer));
    Ok(())
}

/// The results as a table: rank, score, document (and chunk), a one-line snippet.
fn table(answer: &Value) -> String {
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    if results.is_empty() {
        return "no results\n".into();
    }
    let mut out = format!(
        "{:>3}  {:>9}  {:<28}  {}\n",
        "#", "score", "document", "snippet"
    );
    for (i, r) in results.iter().enumerate() {
        let mut doc = r["doc_id"].as_str().unwrap_or("").to_string();
        if r["ord"].as_u64().unwrap_or(0) > 0 {
            doc = format!("{doc} #{}", r["ord"]);
        }
        let text: String = r["text"]
            .as_str()
            .or(r["title"].as_str())
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        out += &format!(
            "{:>3}  {:>9.4}  {:<28}  {}\n",
            i + 1,
            r["score"].as_f64().unwrap_or(0.0),
            cut(&terminal_safe(&doc), 28),
            cut(&terminal_safe(&text), 90)
        );
    }
    if answer["stale"] == json!(true) {
        out += "(the index was still catching up with the store)\n";
    }
    out
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n - 1).collect();
    t.push('…');
    t
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// A BEIR folder: `corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`.
    pub dir: PathBuf,
    #[arg(long, short)]
    pub collection: String,
    /// Only these modes (comma-separated); default: every mode the collection can answer.
    #[arg(long, value_delimiter = ',')]
    pub modes: Vec<String>,
    /// The embedding model of the collection when eval creates it: builtin, none, or
    /// openai-compatible/<name> with --dimension.
    #[arg(long, default_value = "builtin")]
    pub model: String,
    #[arg(long)]
    pub dimension: Option<u32>,
    /// Hybrid weight for the hybrid line (default: the collection's `hybrid_alpha`).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Hybrid fusion for the hybrid line: normalized or rrf (default: the collection's).
    #[arg(long)]
    pub fusion: Option<String>,
}

/// nDCG@10 (linear gain, as trec_eval) and recall@10 of one ranking against graded judgments.
pub fn ndcg_recall_at_10(ranked: &[String], judged: &HashMap<String, u32>) -> (f64, f64) {
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, d)| f64::from(*judged.get(d).unwrap_or(&0)) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<u32> = judged.values().copied().filter(|g| *g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, g)| f64::from(*g) / (i as f64 + 2.0).log2())
        .sum();
    let relevant = judged.values().filter(|g| **g > 0).count();
    let found = ranked
        .iter()
        .take(10)
        .filter(|d| judged.get(*d).is_some_and(|g| *g > 0))
        .count();
    let ndcg = if idcg > 0.0 { dcg / idcg } else { 0.0 };
    let recall = if relevant > 0 {
        found as f64 / relevant as f64
    } else {
        0.0
    };
    (ndcg, recall)
}

pub async fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let client = Client::new(&a.client)?;
    // Every input is read, or found, before anything is written to the node.
    let corpus = a.dir.join("corpus.jsonl");
    if !corpus.is_file() {
        anyhow::bail!("{} is not a file", corpus.display());
    }
    let queries = read_queries(&a.dir.join("queries.jsonl"))?;
    let qrels = read_qrels(&a.dir.join("qrels/test.tsv"))?;
    if !queries.iter().any(|(id, _)| qrels.contains_key(id)) {
        anyhow::bail!(
            "{} judges none of the {} queries of {}: nothing to score",
            a.dir.join("qrels/test.tsv").display(),
            queries.len(),
            a.dir.join("queries.jsonl").display()
        );
    }
    if a.model == EXTERNAL_MODEL {
        anyhow::bail!(
            "--model external: eval sends texts, and an external collection's vectors come \
             from its clients; use builtin, none or openai-compatible/<name>"
        );
    }
    if client
        .get_opt(&["collections", &a.collection], &[])
        .await?
        .is_none()
    {
        let mut embedding = json!({"model": a.model});
        if let Some(d) = a.dimension {
            embedding["dimension"] = json!(d);
        }
        client
            .put(
                &["collections", &a.collection],
                &json!({"embedding": embedding}),
            )
            .await?;
    }
    let report = ingest::run(IngestArgs {
        client: a.client.clone(),
        paths: vec![corpus],
        collection: a.collection.clone(),
        batch_docs: 1000,
        batch_bytes: 8 << 20,
        quiet: true,
    })
    .await?;
    if report.interrupted {
        anyhow::bail!("interrupted while ingesting the corpus");
    }
    if report.sent > 0 {
        eprintln!("ingested {} documents", report.sent);
    }
    if !report.refused.is_empty() {
        // Scores below count a judged document that is not stored as not found.
        eprintln!("warning: not every corpus record is stored; the scores miss them");
        ingest::write_refusals(&mut std::io::stderr().lock(), &report)?;
    }
    let coll = client.get(&["collections", &a.collection], &[]).await?;
    let model = coll["settings"]["embedding"]["model"]
        .as_str()
        .unwrap_or("none");
    // An external collection's vectors come from clients: eval's texts get none, and its
    // queries by text cannot be embedded by the node.
    let embedded = model != "none" && model != EXTERNAL_MODEL;
    wait_indexed(&client, &a.collection, embedded).await?;
    let modes: Vec<String> = if a.modes.is_empty() {
        ["bm25", "vector", "hybrid"].map(String::from).to_vec()
    } else {
        a.modes.clone()
    };
    let judged: Vec<(&String, &HashMap<String, u32>)> = queries
        .iter()
        .filter_map(|(id, _)| qrels.get(id).map(|j| (id, j)))
        .collect();
    let text_of: HashMap<&String, &String> = queries.iter().map(|(i, t)| (i, t)).collect();
    for mode in modes {
        if mode != "bm25" && !embedded {
            println!(
                "{mode} not available: collection {} has {}",
                a.collection,
                match model {
                    EXTERNAL_MODEL => "vectors from its clients, and eval queries by text",
                    _ => "no embedding model",
                }
            );
            continue;
        }
        let (mut ndcg, mut recall) = (0.0, 0.0);
        // The fusion's settings weigh the hybrid line only; the node refuses them elsewhere.
        let hybrid = mode == "hybrid";
        for (qid, j) in &judged {
            let alpha = a.alpha.filter(|_| hybrid);
            let mut body = query_body(text_of[qid], Some(&mode), Some(100), alpha);
            if let Some(f) = a.fusion.as_ref().filter(|_| hybrid) {
                body["fusion"] = json!(f);
            }
            let answer = client
                .post(&["collections", &a.collection, "query"], &body)
                .await
                .map_err(|e| anyhow::anyhow!("query {qid} ({mode}): {e}"))?;
            let ranked = distinct_docs(&answer);
            let (n, r) = ndcg_recall_at_10(&ranked, j);
            ndcg += n;
            recall += r;
        }
        let q = judged.len().max(1) as f64;
        println!(
            "{mode} ndcg@10 {:.4} recall@10 {:.4} ({} judged queries)",
            ndcg / q,
            recall / q,
            judged.len()
        );
    }
    Ok(())
}

/// The documents of a query's results in rank order, each once (results are chunks).
fn distinct_docs(answer: &Value) -> Vec<String> {
    let mut seen = HashSet::new();
    answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["doc_id"].as_str())
        .filter(|d| seen.insert(d.to_string()))
        .map(String::from)
        .collect()
}

/// How long the index may show no progress at all before [`wait_indexed`] gives up.
const INDEX_STALL: Duration = Duration::from_secs(120);

/// Waits, with a spinner, until the node's search index covers its whole feed and, with
/// `vectors`, every chunk of `collection` has its vector. Gives up, saying what is left, when
/// nothing moves for [`INDEX_STALL`] (a model endpoint the node cannot reach, for one).
pub async fn wait_indexed(client: &Client, collection: &str, vectors: bool) -> anyhow::Result<()> {
    let bar = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} indexing: {msg}")?);
    let (mut last, mut moved) = (None, std::time::Instant::now());
    loop {
        let s = client.get(&["status"], &[]).await?;
        let head = s["counts"]["head_seq"].as_u64().unwrap_or(0);
        let through = s["search"]["indexed_through"].as_u64().unwrap_or(0);
        let awaiting = s["search"]["awaiting_content"].as_u64().unwrap_or(0);
        let v = &s["search"]["vectors"][collection];
        let backlog = match vectors {
            true => v["backlog"].as_u64().unwrap_or(0),
            false => 0,
        };
        if through >= head && awaiting == 0 && backlog == 0 {
            bar.finish_and_clear();
            return Ok(());
        }
        let now = (through, awaiting, backlog, v["vectors"].as_u64());
        if last != Some(now) {
            (last, moved) = (Some(now), std::time::Instant::now());
        } else if moved.elapsed() > INDEX_STALL {
            bar.finish_and_clear();
            anyhow::bail!(
                "the index made no progress for {} s: {through}/{head} feed rows, {awaiting} \
                 contents awaited, {backlog} chunks of {collection} without vectors (is the \
                 collection's model one this node runs?)",
                INDEX_STALL.as_secs()
            );
        }
        bar.set_message(format!(
            "{through}/{head} feed rows, {awaiting} contents awaited, {backlog} chunks to embed \
             ({} embedded)",
            v["vectors"].as_u64().unwrap_or(0)
        ));
        bar.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn read_queries(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let at = |e: String| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1);
            let mut v: Value = serde_json::from_str(l).map_err(|e| at(e.to_string()))?;
            let Some(query) = v.as_object_mut() else {
                return Err(at("a query is a JSON object".into()));
            };
            let id = ingest::beir_id_text(query.remove("_id").unwrap_or_default()).map_err(at)?;
            Ok((id, v["text"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// `query-id<TAB>corpus-id<TAB>grade` lines (a header line, if any, is skipped).
fn read_qrels(path: &std::path::Path) -> anyhow::Result<HashMap<String, HashMap<String, u32>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut out: HashMap<String, HashMap<String, u32>> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 3 {
            continue;
        }
        let Ok(grade) = f[2].trim().parse::<u32>() else {
            continue; // the header
        };
        // The node keeps ids in Unicode NFC; a judged id is compared in the same form.
        let doc = DocId::new(f[1]).map_or_else(|_| f[1].to_string(), |d| d.as_str().to_string());
        out.entry(f[0].to_string()).or_default().insert(doc, grade);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_lines_are_objects_with_string_or_integer_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queries.jsonl");
        std::fs::write(
            &path,
            "{\"_id\": \"q1\", \"text\": \"a\"}\n\n{\"_id\": 7}\n",
        )
        .unwrap();
        let got = read_queries(&path).unwrap();
        assert_eq!(
            got,
            [("q1".into(), "a".into()), ("7".into(), String::new())]
        );
        for (line, says) in [
            ("[\"q1\", \"a\"]", ":1: a query is a JSON object"),
            ("\"q1\"", ":1: a query is a JSON object"),
            (
                "{\"text\": \"a\"}",
                ":1: _id must be a string or an integer, not null",
            ),
            (
                "{\"_id\": 1.5}",
                ":1: _id must be a string or an integer, not 1.5",
            ),
        ] {
            std::fs::write(&path, line).unwrap();
            let e = read_queries(&path).unwrap_err().to_string();
            assert!(e.ends_with(says), "{line}: {e}");
        }
    }

    #[test]
    fn the_table_shows_stored_text_on_one_line_without_terminal_controls() {
        let answer = json!({"results": [
            {"doc_id": "a\u{1b}]0;title\u{7}", "ord": 2, "score": 1.5,
             "text": "line one\r\n\tline two \u{1b}[31mred\u{1b}[0m \u{202e}txt.exe"},
            {"doc_id": "b", "ord": 0, "score": 0.25, "text": null, "title": "only a title"},
        ], "stale": true});
        let t = table(&answer);
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert!(!t.contains('\u{202e}'), "{t:?}");
        assert!(
            t.contains("line one line two \\u{1b}[31mred\\u{1b}[0m \\u{202e}txt.exe"),
            "{t}"
        );
        assert!(t.contains("a\\u{1b}]0;title\\u{7} #2"), "{t}");
        assert!(t.contains("0.2500") && t.contains("only a title"), "{t}");
        assert!(
            t.ends_with("(the index was still catching up with the store)\n"),
            "{t}"
        );
    }

    #[test]
    fn ndcg_uses_linear_gain_and_recall_counts_relevant_found() {
        let judged: HashMap<String, u32> = [("a", 2), ("b", 1), ("c", 0)]
            .map(|(d, g)| (d.to_string(), g))
            .into();
        let ranked = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (n, r) = ndcg_recall_at_10(&ranked(&["a", "b"]), &judged);
        assert!((n - 1.0).abs() < 1e-12 && (r - 1.0).abs() < 1e-12);
        let (n, r) = ndcg_recall_at_10(&ranked(&["x", "b"]), &judged);
        let want = (1.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!((n - want).abs() < 1e-12, "{n}");
        assert!((r - 0.5).abs() < 1e-12);
        assert_eq!(ndcg_recall_at_10(&[], &judged), (0.0, 0.0));
    }
}
