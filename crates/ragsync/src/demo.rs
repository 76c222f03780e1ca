//! `ragsync demo`: a guided run of three real nodes, each in its own process on a temporary
//! directory, replicating A <-> B <-> C (C reaches A only through B): ingest into A (and a
//! resumed re-run that sends nothing), B and C catching up with progress bars, a conditional
//! write accepted then refused, the A-B link cut, the same document written on both sides, the
//! link healed and the conflict shown identically on all three, a delete gone everywhere,
//! `kill -9` of B with everything intact after its restart, and a summary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use reqwest::StatusCode;
use reqwest::header::IF_MATCH;
use serde_json::json;

use crate::client::{Client, ClientArgs};
use crate::ingest::{self, IngestArgs};
use crate::node_proc::NodeProcess;

/// The repository's sample documents, built into the binary so that the demo runs from any
/// directory and from an installed binary: (path inside the samples folder, text).
const SAMPLES: &[(&str, &str)] = &[
    (
        "what-is-ragsync.md",
        include_str!("../../../samples/what-is-ragsync.md"),
    ),
    (
        "change-feed.md",
        include_str!("../../../samples/change-feed.md"),
    ),
    ("deletes.md", include_str!("../../../samples/deletes.md")),
    (
        "versions-and-conflicts.md",
        include_str!("../../../samples/versions-and-conflicts.md"),
    ),
    (
        "guides/durability.md",
        include_str!("../../../samples/guides/durability.md"),
    ),
];
/// The evaluation corpus, when the shared folder sits beside the repository.
const SHARED_CORPUS: &str = "../shared/data/msmarco-5k/corpus.jsonl";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder of documents to ingest (default: the samples built into the binary, which include
    /// `guides/durability.md`, the document the demo edits).
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// A BEIR corpus.jsonl to ingest too (default: the shared MS MARCO subset when present).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
}

/// Writes the built-in samples under `root` and returns it.
fn write_samples(root: &Path) -> anyhow::Result<PathBuf> {
    for (name, text) in SAMPLES {
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(root.to_path_buf())
}

fn step(title: &str) {
    println!("\n== {title}");
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let token = format!("demo-{:032x}", rand::random::<u128>());

    step("start three nodes: A <-> B <-> C (C reaches A only through B)");
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let data = dir.path().join(format!("node-{name}"));
        let n = NodeProcess::start(&exe, &data, &token, &[]).await?;
        println!("node {} listening on {}", name.to_uppercase(), n.url);
        nodes.push(n);
    }
    let [node, b, c] =
        <[NodeProcess; 3]>::try_from(nodes).map_err(|_| anyhow::anyhow!("three nodes"))?;

    let corpus = args.corpus.clone().or_else(|| {
        Path::new(SHARED_CORPUS)
            .exists()
            .then(|| PathBuf::from(SHARED_CORPUS))
    });
    let samples = match &args.samples {
        Some(path) => path.clone(),
        None => write_samples(&dir.path().join("samples"))?,
    };
    let mut paths = vec![samples];
    paths.extend(corpus.iter().cloned());
    let ingest_args = || IngestArgs {
        client: ClientArgs {
            url: node.url.clone(),
            token: token.clone(),
        },
        paths: paths.clone(),
        collection: "notes".into(),
        batch_docs: 1000,
        batch_bytes: 8 << 20,
        quiet: false,
    };

    step(&format!(
        "ingest {}",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    ));
    let first = ingest::run(ingest_args()).await?;
    ingest::print_report(&first);
    ensure!(first.sent > 0, "nothing was ingested");

    step("ingest again: everything is already stored, nothing is sent");
    let again = ingest::run(ingest_args()).await?;
    ingest::print_report(&again);
    ensure!(
        again.sent == 0 && again.skipped == first.sent,
        "the re-run should skip everything"
    );

    let client = node.client();
    let total = client.get(&["status"], &[]).await?["counts"]["documents"]
        .as_u64()
        .unwrap_or(0);
    step("B pulls from A and C from B (and back): B and C catch up");
    link(&b, &node, &token).await?;
    link(&node, &b, &token).await?;
    link(&c, &b, &token).await?;
    link(&b, &c, &token).await?;
    catch_up(&[("B", &b), ("C", &c)], total).await?;

    let doc_path = ["collections", "notes", "docs", "guides/durability.md"];
    step("read guides/durability.md");
    let doc = client.get(&doc_path, &[]).await?;
    let version = doc["version"].as_str().context("version")?.to_string();
    println!(
        "version {version}, {} bytes, cid {}",
        doc["content_len"], doc["content_cid"]
    );
    println!(
        "{}",
        doc["text"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
    );

    step(
        "a conditional write with the version read succeeds; a second one with the same, now stale, version is refused",
    );
    let http = reqwest::Client::new();
    let url = client.url(&doc_path);
    for (attempt, expected) in [(1, StatusCode::OK), (2, StatusCode::CONFLICT)] {
        let resp = http
            .put(url.clone())
            .bearer_auth(&token)
            .header(IF_MATCH, format!("\"{version}\""))
            .json(&json!({"text": "# Durability\n\nEdited by the demo.", "title": "Durability"}))
            .send()
            .await?;
        let status = resp.status();
        println!(
            "write {attempt} with If-Match {version}: {status} {}",
            resp.text().await?
        );
        ensure!(
            status == expected,
            "write {attempt}: expected {expected}, got {status}"
        );
    }

    step("the change feed, three rows at a time");
    let page = client
        .get(
            &["sync", "changes"],
            &[("since", "0".into()), ("limit", "3".into())],
        )
        .await?;
    for c in page["changes"].as_array().into_iter().flatten() {
        println!(
            "seq {} {} {}",
            c["seq"],
            c["kind"],
            c["id"]
                .as_str()
                .unwrap_or(c["name"].as_str().unwrap_or_default())
        );
    }
    println!(
        "next_since {}, has_more {}, head {}",
        page["next_since"], page["has_more"], page["head"]
    );

    step("cut the link A <-> B, and write the same document on both sides");
    let (a_id, b_id) = (node_id(&node).await?, node_id(&b).await?);
    node.client().delete(&["peers", &b_id]).await?;
    b.client().delete(&["peers", &a_id]).await?;
    let shared = ["collections", "notes", "docs", "shared-note.md"];
    node.client()
        .put(&shared, &json!({"text": "written on A while cut off"}))
        .await?;
    b.client()
        .put(&shared, &json!({"text": "written on B while cut off"}))
        .await?;
    println!("A and B each acknowledged their own write of shared-note.md");

    step("heal the link: every node shows the same winner and the same conflict");
    link(&b, &node, &token).await?;
    link(&node, &b, &token).await?;
    let views = wait_all(&[&node, &b, &c], |n| {
        let c = n.client();
        async move {
            let d = c.get(&shared, &[]).await.ok()?;
            (d["conflicts"].as_array()?.len() == 1).then_some(d)
        }
    })
    .await?;
    for (name, d) in ["A", "B", "C"].iter().zip(&views) {
        println!(
            "{name}: winner {:?}; conflict {}",
            d["text"].as_str().unwrap_or_default(),
            d["conflicts"][0]["stamp"]
        );
    }
    ensure!(
        views.iter().all(|d| d["version"] == views[0]["version"]),
        "the nodes disagree on the conflict"
    );

    step("delete deletes.md on C: it is gone on every node");
    c.client()
        .delete(&["collections", "notes", "docs", "deletes.md"])
        .await?;
    wait_all(&[&node, &b, &c], |n| {
        let c = n.client();
        async move {
            let r = c
                .get(&["collections", "notes", "docs", "deletes.md"], &[])
                .await;
            r.err()
                .filter(|e| e.code() == Some("document_deleted"))
                .map(|_| ())
        }
    })
    .await?;
    println!("A, B and C: deletes.md answers 404 document_deleted");

    step("kill -9 node B and start it again on the same data: it resumes where it was");
    let b_data = b.data_dir.clone();
    // On the same address: A and C know B by it.
    let b_addr = b
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let before = b.client().get(&["status"], &[]).await?["counts"].clone();
    let mut b = b;
    b.kill9()?;
    drop(b);
    let b = NodeProcess::start(&exe, &b_data, &token, &["--listen", &b_addr]).await?;
    let after = b.client().get(&["status"], &[]).await?["counts"].clone();
    println!("before: {before}\nafter:  {after}");
    ensure!(
        before["documents"] == after["documents"],
        "the restarted node lost something"
    );

    step("summary");
    // A write on C after B's restart still reaches A through B.
    c.client()
        .put(
            &["collections", "notes", "docs", "after-restart.md"],
            &json!({"text": "written on C after B came back"}),
        )
        .await?;
    wait_all(&[&node], |n| {
        let c = n.client();
        async move {
            c.get(&["collections", "notes", "docs", "after-restart.md"], &[])
                .await
                .ok()
        }
    })
    .await?;
    println!("a write on C after B's restart reached A through B");
    for (name, n) in [("A", &node), ("B", &b), ("C", &c)] {
        let status = n.client().get(&["status"], &[]).await?;
        for p in status["peers"].as_array().into_iter().flatten() {
            println!(
                "{name} <- {}: {}, cursor {}, lag {} rows",
                p["url"], p["pull"]["state"], p["pull"]["cursor"], p["pull"]["lag_rows"]
            );
        }
    }
    for (name, n) in [("A", &node), ("B", &b), ("C", &c)] {
        let counts = n.client().get(&["status"], &[]).await?["counts"].clone();
        println!(
            "{name}: {} documents, {} deleted",
            counts["documents"], counts["tombstones"]
        );
    }
    for n in [node, b, c] {
        n.shutdown().await?;
    }
    println!(
        "\ndemo finished: three nodes converged, the conflict shows the same everywhere, and \
         every acknowledged write survived kill -9"
    );
    Ok(())
}

/// Makes `on` pull from `from`.
async fn link(on: &NodeProcess, from: &NodeProcess, token: &str) -> anyhow::Result<()> {
    on.client()
        .post(&["peers"], &json!({"url": from.url, "token": token}))
        .await?;
    Ok(())
}

async fn node_id(n: &NodeProcess) -> anyhow::Result<String> {
    let info = n.client().get(&["sync", "info"], &[]).await?;
    Ok(info["node_id"].as_str().context("node id")?.to_string())
}

/// How long the demo waits for the nodes to agree before it gives up.
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

/// Shows a progress bar per node until each holds `total` documents.
async fn catch_up(nodes: &[(&str, &NodeProcess)], total: u64) -> anyhow::Result<()> {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix} {wide_bar} {pos}/{len} documents")
        .expect("valid template");
    let tracked: Vec<(ProgressBar, Client)> = nodes
        .iter()
        .map(|(name, n)| {
            let bar = bars.add(ProgressBar::new(total));
            bar.set_style(style.clone());
            bar.set_prefix(format!("node {name}"));
            (bar, n.client())
        })
        .collect();
    let started = Instant::now();
    loop {
        let mut done = true;
        for (bar, client) in &tracked {
            let n = client.get(&["status"], &[]).await?["counts"]["documents"]
                .as_u64()
                .unwrap_or(0);
            bar.set_position(n);
            done &= n >= total;
        }
        if done {
            for (bar, _) in &tracked {
                bar.finish();
            }
            return Ok(());
        }
        ensure!(
            started.elapsed() < CONVERGE_WITHIN,
            "the nodes did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `check` answers for every node; returns the answers.
async fn wait_all<T, F, Fut>(nodes: &[&NodeProcess], check: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(&NodeProcess) -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        let mut answers = Vec::new();
        for n in nodes {
            match check(n).await {
                Some(a) => answers.push(a),
                None => break,
            }
        }
        if answers.len() == nodes.len() {
            return Ok(answers);
        }
        ensure!(
            started.elapsed() < CONVERGE_WITHIN,
            "the nodes did not agree in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
