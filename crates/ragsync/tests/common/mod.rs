//! What the black-box replication tests share: real nodes, peers, and bounded waits.

#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use ragsync::client::Client;
use ragsync::node_proc::NodeProcess;
use serde_json::{Value, json};

pub const EXE: &str = env!("CARGO_BIN_EXE_ragsync");
pub const TOKEN: &str = "replication-test-token-0123456789";
/// How long a convergence check waits before it fails.
pub const CONVERGE: Duration = Duration::from_secs(30);

pub fn node(dir: &Path, name: &str) -> NodeProcess {
    NodeProcess::spawn(Path::new(EXE), &dir.join(name), TOKEN, &[]).unwrap()
}

/// A node that inlines no content over 1,000 bytes in its feed (peers fetch those by id),
/// with collection `kb`.
pub async fn node_fetched_by_id(dir: &Path, name: &str) -> NodeProcess {
    let n = NodeProcess::spawn(
        Path::new(EXE),
        &dir.join(name),
        TOKEN,
        &["--max-inline-bytes", "1000"],
    )
    .unwrap();
    n.client()
        .put(&["collections", "kb"], &json!({}))
        .await
        .unwrap();
    n
}

/// Makes `on` pull from the node at `url`.
pub async fn add_peer_url(on: &NodeProcess, url: &str) -> Value {
    on.client()
        .post(&["peers"], &json!({"url": url, "token": TOKEN}))
        .await
        .unwrap()
}

pub async fn add_peer(on: &NodeProcess, from: &NodeProcess) -> Value {
    add_peer_url(on, &from.url).await
}

/// Polls `check` until it answers `Ok`; past [`CONVERGE`] the test fails with `what` and the
/// last thing `check` said.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(t) => return t,
            Err(last) => assert!(started.elapsed() < CONVERGE, "{what}: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status of a node's first peer (its view: node id, URL, lag, `pull`).
pub async fn first_peer(n: &NodeProcess) -> Value {
    let status = n.client().get(&["status"], &[]).await.unwrap();
    status["peers"][0].clone()
}

/// Waits until the first peer's pull status satisfies `done`; returns it.
pub async fn first_pull_until(n: &NodeProcess, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(what, || async {
        let pull = first_peer(n).await["pull"].clone();
        if done(&pull) {
            Ok(pull)
        } else {
            Err(pull.to_string())
        }
    })
    .await
}

/// True when `pull` last failed with an error that says `what`.
pub fn last_error_says(pull: &Value, what: &str) -> bool {
    pull["last_error"]
        .as_str()
        .is_some_and(|e| e.contains(what))
}

/// Every live document of `coll` on a node: (id, content id, version).
pub async fn docs(c: &Client, coll: &str) -> Vec<(String, Value, Value)> {
    let Ok(list) = c.list_docs(coll).await else {
        return Vec::new();
    };
    list.into_iter()
        .map(|d| {
            let id = d["id"].as_str().unwrap().to_string();
            (id, d["content_cid"].clone(), d["version"].clone())
        })
        .collect()
}

/// Waits until every node lists the same documents in `coll`, at least `min` of them.
pub async fn converge(
    nodes: &[&NodeProcess],
    coll: &str,
    min: usize,
) -> Vec<(String, Value, Value)> {
    eventually("no convergence", || async {
        let mut all = Vec::new();
        for n in nodes {
            all.push(docs(&n.client(), coll).await);
        }
        if all[0].len() >= min && all.iter().all(|d| *d == all[0]) {
            Ok(all.swap_remove(0))
        } else {
            Err(format!(
                "{:?}",
                all.iter().map(Vec::len).collect::<Vec<_>>()
            ))
        }
    })
    .await
}

/// Writes document `kb/shared` on `a` and on `b` (with `texts[0]` and `texts[1]`) before they
/// know each other, then makes each pull from the other, and waits until both hold the same
/// conflict. Returns the document as each reads it.
pub async fn conflicting_writes(
    a: &NodeProcess,
    b: &NodeProcess,
    texts: [&str; 2],
) -> (Value, Value) {
    for (n, text) in [(a, texts[0]), (b, texts[1])] {
        n.client()
            .put(&["collections", "kb"], &json!({}))
            .await
            .unwrap();
        n.client()
            .put(
                &["collections", "kb", "docs", "shared"],
                &json!({"text": text}),
            )
            .await
            .unwrap();
    }
    add_peer(a, b).await;
    add_peer(b, a).await;
    let read = |n: &NodeProcess| {
        let c = n.client();
        async move {
            c.get(&["collections", "kb", "docs", "shared"], &[])
                .await
                .unwrap()
        }
    };
    eventually("no common conflict", || async {
        let (x, y) = (read(a).await, read(b).await);
        if x["conflicts"].as_array().unwrap().len() == 1 && x["version"] == y["version"] {
            Ok((x, y))
        } else {
            Err(format!("{x} / {y}"))
        }
    })
    .await
}
