//! Black-box replication between real nodes (the built binary, each on a `127.0.0.1:0` port):
//! peers added over the API pull from each other; convergence checks wait, bounded, for the
//! nodes to agree.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use ragsync::client::Client;
use ragsync::node_proc::NodeProcess;
use serde_json::{Value, json};

const EXE: &str = env!("CARGO_BIN_EXE_ragsync");
const TOKEN: &str = "replication-test-token-0123456789";
/// How long a convergence check waits before it fails.
const CONVERGE: Duration = Duration::from_secs(30);

fn node(dir: &Path, name: &str) -> NodeProcess {
    NodeProcess::spawn(Path::new(EXE), &dir.join(name), TOKEN, &[]).unwrap()
}

async fn add_peer(on: &NodeProcess, from: &NodeProcess) -> Value {
    on.client()
        .post(&["peers"], &json!({"url": from.url, "token": TOKEN}))
        .await
        .unwrap()
}

/// Every live document of `c` on a node: id -> (text, version).
async fn docs(c: &Client, coll: &str) -> Vec<(String, Value, Value)> {
    let list = match c.list_docs(coll).await {
        Ok(l) => l,
        Err(_) => return Vec::new(),
    };
    list.into_iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_string(),
                d["content_cid"].clone(),
                d["version"].clone(),
            )
        })
        .collect()
}

/// Waits until every node lists the same documents in `coll`, at least `min` of them.
async fn converge(nodes: &[&NodeProcess], coll: &str, min: usize) -> Vec<(String, Value, Value)> {
    let started = Instant::now();
    loop {
        let mut all = Vec::new();
        for n in nodes {
            all.push(docs(&n.client(), coll).await);
        }
        if all[0].len() >= min && all.iter().all(|d| *d == all[0]) {
            return all.swap_remove(0);
        }
        assert!(
            started.elapsed() < CONVERGE,
            "no convergence in {CONVERGE:?}: {:?}",
            all.iter().map(Vec::len).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_three_converges_both_ways_and_a_batch_larger_than_a_page_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        node(dir.path(), "a"),
        node(dir.path(), "b"),
        node(dir.path(), "c"),
    );
    // A <-> B <-> C: A and C reach each other only through B.
    add_peer(&b, &a).await;
    add_peer(&a, &b).await;
    add_peer(&c, &b).await;
    add_peer(&b, &c).await;
    a.client()
        .put(&["collections", "kb"], &json!({}))
        .await
        .unwrap();
    let batch: Vec<Value> = (0..1200)
        .map(|i| json!({"id": format!("doc-{i:05}"), "text": format!("document {i}")}))
        .collect();
    a.client()
        .post(
            &["collections", "kb", "docs:batch"],
            &json!({"docs": batch}),
        )
        .await
        .unwrap();
    let all = converge(&[&a, &b, &c], "kb", 1200).await;
    assert_eq!(all.len(), 1200);

    // Back the other way: a write on C reaches A through B.
    c.client()
        .put(
            &["collections", "kb", "docs", "from-c"],
            &json!({"text": "hello from C"}),
        )
        .await
        .unwrap();
    converge(&[&a, &b, &c], "kb", 1201).await;
    let doc = a
        .client()
        .get(&["collections", "kb", "docs", "from-c"], &[])
        .await
        .unwrap();
    assert_eq!(doc["text"], "hello from C");

    // A delete travels too.
    a.client()
        .delete(&["collections", "kb", "docs", "doc-00000"])
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let gone = c
            .client()
            .get(&["collections", "kb", "docs", "doc-00000"], &[])
            .await;
        if gone.is_err_and(|e| e.code() == Some("document_deleted")) {
            break;
        }
        assert!(started.elapsed() < CONVERGE, "the delete did not reach C");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Status shows each peer live, caught up, with its node id.
    let status = b.client().get(&["status"], &[]).await.unwrap();
    let peers = status["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2);
    for p in peers {
        assert!(
            p["node_id"].is_string() && p["pull"]["cursor"].as_u64().unwrap() > 0,
            "{p}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_known_by_node_id_and_refusals_show_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path(), "a"), node(dir.path(), "b"));
    let added = add_peer(&b, &a).await;
    let info = a.client().get(&["sync", "info"], &[]).await.unwrap();
    assert_eq!(added["node_id"], info["node_id"]);
    // The same node again, under the same URL: refused.
    let again = b
        .client()
        .post(&["peers"], &json!({"url": a.url, "token": TOKEN}))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("peer_exists"));
    let itself = b
        .client()
        .post(&["peers"], &json!({"url": b.url, "token": TOKEN}))
        .await
        .unwrap_err();
    assert_eq!(itself.code(), Some("invalid_peer"));
    // A wrong token, known at add time as a refusal.
    let c = node(dir.path(), "c");
    let wrong = b
        .client()
        .post(
            &["peers"],
            &json!({"url": c.url, "token": "not-the-right-token-at-all"}),
        )
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some("peer_refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_resumes_from_its_cursor_and_a_revoked_token_shows_as_401() {
    let dir = tempfile::tempdir().unwrap();
    // A on a port of its own choosing, so that it can come back on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let a = NodeProcess::spawn(
        Path::new(EXE),
        &dir.path().join("a"),
        TOKEN,
        &["--listen", &listen],
    )
    .unwrap();
    let mut b = node(dir.path(), "b");
    a.client()
        .put(&["collections", "kb"], &json!({}))
        .await
        .unwrap();
    for i in 0..50 {
        a.client()
            .put(
                &["collections", "kb", "docs", &format!("d{i}")],
                &json!({"text": format!("v{i}")}),
            )
            .await
            .unwrap();
    }
    add_peer(&b, &a).await;
    converge(&[&a, &b], "kb", 50).await;

    // kill -9 B, write more on A meanwhile, restart B: it resumes and misses nothing.
    b.kill9().unwrap();
    for i in 50..80 {
        a.client()
            .put(
                &["collections", "kb", "docs", &format!("d{i}")],
                &json!({"text": format!("v{i}")}),
            )
            .await
            .unwrap();
    }
    let b = NodeProcess::spawn(Path::new(EXE), &dir.path().join("b"), TOKEN, &[]).unwrap();
    let all = converge(&[&a, &b], "kb", 80).await;
    assert_eq!(all.len(), 80);

    // A comes back on the same address with other tokens: B's token is refused, and B's
    // status says so (a 401 is never silent).
    let a_data = a.data_dir.clone();
    drop(a);
    let _a = NodeProcess::spawn(
        Path::new(EXE),
        &a_data,
        "a-completely-different-token-42",
        &["--listen", &listen],
    )
    .unwrap();
    let started = Instant::now();
    loop {
        let status = b.client().get(&["status"], &[]).await.unwrap();
        let pull = &status["peers"][0]["pull"];
        if pull["state"] == "refused" && pull["last_status"] == 401 {
            break;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "B's status hides the refusal: {pull}"
        );
        let peer = status["peers"][0]["node_id"].as_str().unwrap().to_string();
        // Ask B to try now rather than at the end of its backoff.
        let _ = b.client().post(&["peers", &peer, "sync"], &json!({})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `ragsync peers add URL --token T`, `peers list`, `peers sync`, `peers retry`, `peers remove`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_cli_adds_lists_drives_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path(), "a"), node(dir.path(), "b"));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(EXE)
            .args(["peers"])
            .args(args)
            .env("RAGSYNC_URL", &b.url)
            .env("RAGSYNC_TOKEN", TOKEN)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let added = cli(&["add", &a.url, "--token", TOKEN]);
    let id = added["node_id"].as_str().unwrap().to_string();
    let listed = cli(&["list"]);
    assert_eq!(listed[0]["node_id"], json!(id));
    assert!(
        listed[0].get("token").is_none(),
        "a peer's token is never shown"
    );
    assert_eq!(cli(&["sync", &id])["syncing"], json!(id));
    assert_eq!(cli(&["retry", &id])["still_parked"], json!(0));
    assert_eq!(cli(&["remove", &id])["removed"], json!(id));
    assert_eq!(cli(&["list"]), json!([]));
}

/// Concurrent writes to one document end with the same winner and the same conflicts on every
/// node; `ragsync conflicts list` shows them and `conflicts resolve --keep` (a write that has
/// seen them all) ends them everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_conflict_identically_everywhere_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path(), "a"), node(dir.path(), "b"));
    for (n, text) in [(&a, "written on A"), (&b, "written on B")] {
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
    add_peer(&a, &b).await;
    add_peer(&b, &a).await;
    let read = |n: &NodeProcess| {
        let c = n.client();
        async move {
            c.get(&["collections", "kb", "docs", "shared"], &[])
                .await
                .unwrap()
        }
    };
    let started = Instant::now();
    let (on_a, on_b) = loop {
        let (x, y) = (read(&a).await, read(&b).await);
        if x["conflicts"].as_array().unwrap().len() == 1 && x["version"] == y["version"] {
            break (x, y);
        }
        assert!(
            started.elapsed() < CONVERGE,
            "no common conflict: {x} / {y}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (&on_a["stamp"], &on_a["text"], &on_a["conflicts"]),
        (&on_b["stamp"], &on_b["text"], &on_b["conflicts"])
    );

    let cli = |args: &[&str]| {
        let out = std::process::Command::new(EXE)
            .args(["conflicts"])
            .args(args)
            .env("RAGSYNC_URL", &a.url)
            .env("RAGSYNC_TOKEN", TOKEN)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let listed = cli(&["list", "-c", "kb"]);
    assert_eq!(listed[0]["id"], "shared");
    // Keep the version that lost.
    let loser = listed[0]["conflicts"][0]["stamp"]
        .as_str()
        .unwrap()
        .to_string();
    let lost_text = if on_a["text"] == "written on A" {
        "written on B"
    } else {
        "written on A"
    };
    cli(&["resolve", "-c", "kb", "shared", "--keep", &loser]);
    let started = Instant::now();
    loop {
        let (x, y) = (read(&a).await, read(&b).await);
        if x["text"] == lost_text && y["text"] == lost_text && y["conflicts"] == json!([]) {
            break;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "the resolution did not spread: {x} / {y}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cli(&["list", "-c", "kb"]), json!([]));
}

/// A node paused (SIGSTOP) during a write burst receives the whole backlog after SIGCONT,
/// not only the writes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_receives_the_whole_backlog_after_it_resumes() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path(), "a"), node(dir.path(), "b"));
    a.client()
        .put(&["collections", "kb"], &json!({}))
        .await
        .unwrap();
    add_peer(&b, &a).await;
    converge(&[&a, &b], "kb", 0).await;
    let pid = Pid::from_raw(b.pid() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    for batch in 0..10 {
        let docs: Vec<Value> = (0..50)
            .map(|i| json!({"id": format!("burst-{batch}-{i}"), "text": format!("{batch} {i}")}))
            .collect();
        a.client()
            .post(&["collections", "kb", "docs:batch"], &json!({"docs": docs}))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill(pid, Signal::SIGCONT).unwrap();
    let all = converge(&[&a, &b], "kb", 500).await;
    assert_eq!(all.len(), 500);
    // Caught up again: status says so (lag 0 rows, 0 ms).
    let started = Instant::now();
    loop {
        let status = b.client().get(&["status"], &[]).await.unwrap();
        let p = &status["peers"][0];
        if p["lag_ms"] == 0 && p["pull"]["lag_rows"] == 0 {
            break;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "B never reports caught up: {p}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP proxy in front of a node, whose links can be cut (every connection it carries is
/// closed and new ones are refused) and healed: a network partition between real processes.
struct Proxy {
    url: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    closed: std::sync::Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn to(target: &NodeProcess) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = target.url.trim_start_matches("http://").to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(tokio::sync::Notify::new());
        let (c, n) = (cut.clone(), closed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let (target, n) = (target.clone(), n.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = n.notified() => {}
                    }
                });
            }
        });
        Proxy {
            url,
            cut,
            closed,
            task,
        }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        if cut {
            self.closed.notify_waiters();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A partition made by the proxy: both sides write while cut off (one of them deletes a
/// document the other still has, and the other writes a document the first deleted before
/// the cut); after healing they converge, and a delete is not undone by an older write
/// arriving late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_into_one_state_and_a_late_older_write_does_not_undo_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path(), "a"), node(dir.path(), "b"));
    let (to_a, to_b) = (Proxy::to(&a).await, Proxy::to(&b).await);
    a.client()
        .put(&["collections", "kb"], &json!({}))
        .await
        .unwrap();
    for i in 0..20 {
        a.client()
            .put(
                &["collections", "kb", "docs", &format!("d{i}")],
                &json!({"text": "v1"}),
            )
            .await
            .unwrap();
    }
    b.client()
        .post(&["peers"], &json!({"url": to_a.url, "token": TOKEN}))
        .await
        .unwrap();
    a.client()
        .post(&["peers"], &json!({"url": to_b.url, "token": TOKEN}))
        .await
        .unwrap();
    converge(&[&a, &b], "kb", 20).await;

    to_a.set_cut(true);
    to_b.set_cut(true);
    // While cut off: A deletes d0 (it has seen v1, which B also holds); B writes new docs
    // and edits d1; A edits d2.
    a.client()
        .delete(&["collections", "kb", "docs", "d0"])
        .await
        .unwrap();
    for i in 0..30 {
        b.client()
            .put(
                &["collections", "kb", "docs", &format!("b{i}")],
                &json!({"text": "from B"}),
            )
            .await
            .unwrap();
    }
    b.client()
        .put(
            &["collections", "kb", "docs", "d1"],
            &json!({"text": "edited on B"}),
        )
        .await
        .unwrap();
    a.client()
        .put(
            &["collections", "kb", "docs", "d2"],
            &json!({"text": "edited on A"}),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        b.client()
            .get(&["collections", "kb", "docs", "d0"], &[])
            .await
            .is_ok(),
        "the cut let the delete through"
    );

    to_a.set_cut(false);
    to_b.set_cut(false);
    for n in [&a, &b] {
        let status = n.client().get(&["status"], &[]).await.unwrap();
        let id = status["peers"][0]["node_id"].as_str().unwrap().to_string();
        n.client()
            .post(&["peers", &id, "sync"], &json!({}))
            .await
            .unwrap();
    }
    // 20 + 30 - 1 deleted = 49 live documents, the same everywhere.
    let all = converge(&[&a, &b], "kb", 49).await;
    assert_eq!(all.len(), 49);
    for n in [&a, &b] {
        // B's copy of d0's old version arrived at A after the delete: still deleted.
        let gone = n
            .client()
            .get(&["collections", "kb", "docs", "d0"], &[])
            .await;
        assert!(gone.is_err_and(|e| e.code() == Some("document_deleted")));
        let d1 = n
            .client()
            .get(&["collections", "kb", "docs", "d1"], &[])
            .await
            .unwrap();
        assert_eq!(d1["text"], "edited on B");
        let d2 = n
            .client()
            .get(&["collections", "kb", "docs", "d2"], &[])
            .await
            .unwrap();
        assert_eq!(d2["text"], "edited on A");
    }
}

/// Peers are untrusted input: a peer whose pages are zstd bombs (a few KiB that inflate to
/// 300 MiB) is refused with a visible error, and the node does not inflate them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_a_decompression_bomb_is_refused_visibly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let b = node(dir.path(), "b");
    let bomb = zstd::stream::encode_all(std::io::repeat(b' ').take(300 << 20), 19).unwrap();
    assert!(bomb.len() < 1 << 20);
    let info = json!({
        "node_id": "0123456789abcdef0123456789abcdef",
        "epoch": "fedcba9876543210fedcba9876543210",
        "head": 5,
        "protocol": 1
    })
    .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (info, bomb) = (info.clone(), bomb.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let Ok(n) = s.read(&mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let (encoding, body) = if head.starts_with("GET /v1/sync/info") {
                    ("", info.into_bytes())
                } else {
                    ("content-encoding: zstd\r\n", bomb)
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{encoding}\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    b.client()
        .post(&["peers"], &json!({"url": url, "token": TOKEN}))
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let status = b.client().get(&["status"], &[]).await.unwrap();
        let pull = &status["peers"][0]["pull"];
        if pull["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("once decompressed"))
        {
            assert_eq!(pull["state"], "backing_off");
            break;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "the bomb went unnoticed: {pull}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_mib = b.peak_rss_kib().unwrap() / 1024;
    assert!(
        rss_mib < 200,
        "the node inflated the bomb: peak RSS {rss_mib} MiB"
    );
    server.abort();
}

/// Peers can be given in the config file: the node adds them at start and pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_in_the_config_file_are_pulled_from() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), "a");
    a.client()
        .put(&["collections", "kb"], &json!({}))
        .await
        .unwrap();
    a.client()
        .put(
            &["collections", "kb", "docs", "x"],
            &json!({"text": "configured"}),
        )
        .await
        .unwrap();
    let config = dir.path().join("b.toml");
    std::fs::write(
        &config,
        format!(
            "[[peers]]\nurl = \"{}\"\ntoken = \"{TOKEN}\"\ncollections = [\"kb\"]\n",
            a.url
        ),
    )
    .unwrap();
    let b = NodeProcess::spawn(
        Path::new(EXE),
        &dir.path().join("b"),
        TOKEN,
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    converge(&[&a, &b], "kb", 1).await;
    let peers = b.client().get(&["peers"], &[]).await.unwrap();
    assert_eq!(peers[0]["collections"], json!(["kb"]));
}

/// Contents too large to travel inside feed pages are fetched by content id from the peer,
/// checked against their id, and read whole once they are here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_contents_are_fetched_by_id_after_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let a = NodeProcess::spawn(
        Path::new(EXE),
        &dir.path().join("a"),
        TOKEN,
        &["--max-inline-bytes", "1000"],
    )
    .unwrap();
    let b = node(dir.path(), "b");
    a.client()
        .put(&["collections", "kb"], &json!({}))
        .await
        .unwrap();
    let big = "a large document, fetched by its content id\n".repeat(5000);
    a.client()
        .put(&["collections", "kb", "docs", "big"], &json!({"text": big}))
        .await
        .unwrap();
    add_peer(&b, &a).await;
    let started = Instant::now();
    loop {
        let doc = b
            .client()
            .get(&["collections", "kb", "docs", "big"], &[])
            .await;
        if let Ok(doc) = &doc
            && doc["text"].as_str() == Some(big.as_str())
        {
            assert!(doc.get("content_pending").is_none());
            break;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "the content never arrived: {doc:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = b.client().get(&["status"], &[]).await.unwrap();
    assert_eq!(status["counts"]["wanted"], 0);
}

/// A peer that answers `sync/info` with `info` and every `sync/changes` with `page`.
async fn fake_peer(info: Value, page: Value) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (info, page) = (info.to_string(), page.to_string());
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (info, page) = (info.clone(), page.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let Ok(n) = s.read(&mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let body = if head.starts_with("GET /v1/sync/info") {
                    info
                } else {
                    page
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, server)
}

/// One document row of a fake peer's page, written by `node` at `ms`.
fn fake_row(seq: u64, id: &str, node: ragsync_core::NodeId, ms: u64) -> (Value, (String, String)) {
    use ragsync_core::doc::Body;
    use ragsync_core::{ContentId, ContentRef, DocState, Hlc, Stamp};
    let text = format!("{id} from the fake peer");
    let body = Body {
        content: Some(ContentRef {
            cid: ContentId::of(text.as_bytes()),
            len: text.len() as u64,
            content_type: "text/plain; charset=utf-8".into(),
        }),
        ..Body::default()
    };
    let state = DocState::create(Stamp::new(Hlc::new(ms, 0), node), body);
    let row = json!({"kind": "doc", "seq": seq, "collection": "kb", "id": id, "versions": state.versions()});
    (row, (ContentId::of(text.as_bytes()).to_string(), text))
}

/// A failure mid-page (a row stamped an hour ahead: transient, time cures it) stops the cursor
/// at the row before it, and the rows after it wait; a page claiming a far-future
/// `next_since` moves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_mid_page_stops_the_cursor_before_it_and_a_far_future_next_since_moves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = node(dir.path(), "b");
    b.client()
        .put(&["collections", "kb"], &json!({}))
        .await
        .unwrap();
    let peer = ragsync_core::NodeId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let info = json!({"node_id": peer, "epoch": "fedcba9876543210fedcba9876543210", "head": 3, "protocol": 1});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let rows = [
        fake_row(1, "first", peer, now),
        fake_row(2, "from-the-future", peer, now + 3_600_000),
        fake_row(3, "third", peer, now + 1),
    ];
    let page = |next_since: u64| {
        json!({
            "node_id": peer, "epoch": "fedcba9876543210fedcba9876543210",
            "since": 0, "next_since": next_since, "has_more": false, "head": 3,
            "changes": rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "texts": rows.iter().map(|r| r.1.clone()).collect::<std::collections::BTreeMap<_, _>>(),
        })
    };
    let (url, server) = fake_peer(info.clone(), page(3)).await;
    b.client()
        .post(&["peers"], &json!({"url": url, "token": TOKEN}))
        .await
        .unwrap();
    let started = Instant::now();
    let pull = loop {
        let status = b.client().get(&["status"], &[]).await.unwrap();
        let pull = status["peers"][0]["pull"].clone();
        if pull["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("clock drift"))
        {
            break pull;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "the failure never showed: {pull}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        pull["cursor"], 1,
        "the cursor stops at the row before the failure: {pull}"
    );
    let get = |id: &'static str| {
        let c = b.client();
        async move { c.get(&["collections", "kb", "docs", id], &[]).await }
    };
    assert!(get("first").await.is_ok());
    assert!(
        get("third").await.is_err(),
        "a row after the failure was applied"
    );
    b.client()
        .delete(&["peers", &peer.to_string()])
        .await
        .unwrap();
    server.abort();

    // A page whose next_since is far past its own head: refused, the cursor stays at 0.
    let (url, server) = fake_peer(info, page(1 << 60)).await;
    b.client()
        .post(&["peers"], &json!({"url": url, "token": TOKEN}))
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let status = b.client().get(&["status"], &[]).await.unwrap();
        let pull = status["peers"][0]["pull"].clone();
        if pull["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("past its head"))
        {
            assert_eq!(pull["cursor"], 0, "{pull}");
            break;
        }
        assert!(
            started.elapsed() < CONVERGE,
            "the bad page went unnoticed: {pull}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.abort();
}
