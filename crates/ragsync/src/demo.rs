//! `ragsync demo`: a guided run of one real node in its own process, on a temporary
//! directory: ingest (and a resumed re-run that sends nothing), read, a conditional write
//! refused and accepted, a delete, the change feed, and a `kill -9` with everything intact
//! after restart. (The multi-node demo arrives with replication.)

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use clap::Args;
use reqwest::StatusCode;
use reqwest::header::IF_MATCH;
use serde_json::json;

use crate::client::ClientArgs;
use crate::ingest::{self, IngestArgs};
use crate::node_proc::NodeProcess;

/// The sample documents shipped in the repository.
const SAMPLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples");
/// The evaluation corpus, when the shared folder sits beside the repository.
const SHARED_CORPUS: &str = "../shared/data/msmarco-5k/corpus.jsonl";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder of documents to ingest.
    #[arg(long, default_value = SAMPLES_DIR)]
    pub samples: PathBuf,
    /// A BEIR corpus.jsonl to ingest too (default: the shared MS MARCO subset when present).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
}

fn step(title: &str) {
    println!("\n== {title}");
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let token = format!("demo-{:032x}", rand::random::<u128>());
    let data = dir.path().join("node-a");

    step("start a node");
    let mut node = NodeProcess::start(&exe, &data, &token, &[]).await?;
    println!(
        "node listening on {} (data in {})",
        node.url,
        data.display()
    );

    let corpus = args.corpus.clone().or_else(|| {
        Path::new(SHARED_CORPUS)
            .exists()
            .then(|| PathBuf::from(SHARED_CORPUS))
    });
    let mut paths = vec![args.samples.clone()];
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

    step("delete deletes.md: reads now say it was deleted");
    client
        .delete(&["collections", "notes", "docs", "deletes.md"])
        .await?;
    let gone = client
        .get(&["collections", "notes", "docs", "deletes.md"], &[])
        .await;
    println!(
        "read after delete: {}",
        gone.err().map(|e| e.to_string()).unwrap_or_default()
    );

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

    step("kill -9 the node and start it again on the same data");
    let before = client.get(&["status"], &[]).await?["counts"].clone();
    node.kill9()?;
    drop(node);
    let node = NodeProcess::start(&exe, &data, &token, &[]).await?;
    let after = node.client().get(&["status"], &[]).await?["counts"].clone();
    println!("before: {before}\nafter:  {after}");
    ensure!(before == after, "the restarted node lost something");
    node.shutdown().await?;
    println!("\ndemo finished: every acknowledged write survived kill -9");
    Ok(())
}
