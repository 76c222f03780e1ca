//! Search on real nodes (the built binary): what replicates is searchable where it arrives,
//! only a conflicted document's winner is indexed, on every node, and a node killed in the
//! middle of an ingest restarts with an index that matches its store.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{EXE, TOKEN, add_peer, conflicting_writes, eventually, node, node_fetched_by_id};
use ragsync::client::Client;
use ragsync::node_proc::NodeProcess;
use serde_json::{Value, json};

/// The document ids a BM25 query finds.
async fn try_found(c: &Client, coll: &str, text: &str) -> Result<Vec<String>, String> {
    let v = c
        .post(
            &["collections", coll, "query"],
            &json!({"query": text, "mode": "bm25"}),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["doc_id"].as_str().unwrap().to_string())
        .collect())
}

async fn found(c: &Client, coll: &str, text: &str) -> Vec<String> {
    try_found(c, coll, text).await.unwrap()
}

/// Waits until `text` finds exactly `want` on node `n` (a collection not there yet is a
/// reason to wait too).
async fn finds(n: &NodeProcess, text: &str, want: &[&str]) {
    let c = n.client();
    eventually(&format!("{text:?} on {}", n.url), || async {
        let got = try_found(&c, "kb", text).await?;
        if got == want {
            Ok(())
        } else {
            Err(format!("found {got:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_writes_updates_deletes_and_conflicts_are_searched_alike_on_both_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path(), "a"), node(dir.path(), "b"));
    // Concurrent writes before the nodes know each other: a conflict once they do.
    let (doc, _) =
        conflicting_writes(&a, &b, ["written on A aardvark", "written on B bison"]).await;
    let winner = doc["text"].as_str().unwrap();
    let (won, lost) = if winner.contains("aardvark") {
        ("aardvark", "bison")
    } else {
        ("bison", "aardvark")
    };
    for n in [&a, &b] {
        finds(n, won, &["shared"]).await;
        finds(n, lost, &[]).await;
    }

    // Written on A, found on B without anyone re-ingesting it.
    a.client()
        .put(
            &["collections", "kb", "docs", "fox"],
            &json!({"text": "The quick brown fox jumps.", "metadata": {"n": 1}}),
        )
        .await
        .unwrap();
    finds(&b, "foxes jumping", &["fox"]).await;
    // Updated on A: the old text no longer matches on B.
    a.client()
        .put(
            &["collections", "kb", "docs", "fox"],
            &json!({"text": "A lazy dog sleeps."}),
        )
        .await
        .unwrap();
    finds(&b, "dog", &["fox"]).await;
    finds(&b, "quick", &[]).await;
    // Deleted on B: gone from A's results.
    b.client()
        .delete(&["collections", "kb", "docs", "fox"])
        .await
        .unwrap();
    finds(&a, "dog", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_an_ingest_restarts_with_an_index_that_matches_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let mut n = NodeProcess::spawn(Path::new(EXE), &data, TOKEN, &[]).unwrap();
    let c = n.client();
    c.put(&["collections", "kb"], &json!({})).await.unwrap();
    // 20 batches of 500: each document one chunk, with a word of its own.
    for b in 0..20 {
        let docs: Vec<Value> = (0..500)
            .map(|i| {
                json!({"id": format!("d{b}-{i}"),
                       "text": format!("document uniq{b}x{i} of batch {b}, with common words")})
            })
            .collect();
        c.post(&["collections", "kb", "docs:batch"], &json!({"docs": docs}))
            .await
            .unwrap();
    }
    // Some deletes among them, then a kill right after the last acknowledgement (the indexer
    // commits at most every two seconds, so it is usually still behind).
    for i in 0..10 {
        c.delete(&["collections", "kb", "docs", &format!("d3-{i}")])
            .await
            .unwrap();
    }
    n.kill9().unwrap();
    drop(n);

    let n = NodeProcess::spawn(Path::new(EXE), &data, TOKEN, &[]).unwrap();
    let c = n.client();
    let status = eventually("the index did not catch up", || async {
        let s = c.get(&["status"], &[]).await.unwrap();
        let caught_up = s["search"]["indexed_through"] == s["counts"]["head_seq"];
        if caught_up { Ok(s) } else { Err(s.to_string()) }
    })
    .await;
    // No missing and no orphan chunks: one per live document.
    assert_eq!(status["counts"]["documents"], 9990, "{status}");
    assert_eq!(status["search"]["chunks"]["kb"], 9990, "{status}");
    for (word, want) in [
        ("uniq0x0", vec!["d0-0"]),
        ("uniq19x499", vec!["d19-499"]),
        ("uniq3x5", vec![]),
    ] {
        assert_eq!(found(&c, "kb", word).await, want, "{word}");
    }
    // And it goes on indexing new writes.
    c.put(
        &["collections", "kb", "docs", "late"],
        &json!({"text": "arrived after the restart"}),
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        assert_eq!(found(&c, "kb", "restart").await, ["late"]);
    })
    .await
    .unwrap();
}

/// A document whose content is fetched by id after its state, in a collection whose
/// settings changed after the document was written (so a peer meets the document before
/// the collection record, and builds the index when the record comes): searchable once the
/// content is there, at any chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_fetched_after_its_state_is_indexed_when_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let a = node_fetched_by_id(dir.path(), "a").await;
    let b = node(dir.path(), "b");
    let big = format!(
        "{}the last words are zyzzyva",
        "a large document, fetched by id\n".repeat(5000)
    );
    a.client()
        .put(&["collections", "kb", "docs", "big"], &json!({"text": big}))
        .await
        .unwrap();
    a.client()
        .put(
            &["collections", "kb"],
            &json!({"chunking": {"max_tokens": 100, "min_tokens": 10, "overlap_tokens": 10}}),
        )
        .await
        .unwrap();
    add_peer(&b, &a).await;
    finds(&b, "zyzzyva", &["big"]).await;
    let status = b.client().get(&["status"], &[]).await.unwrap();
    assert_eq!(status["search"]["awaiting_content"], 0, "{status}");
}

/// Node `n`'s status once collection `coll` holds `want` vectors with no embedding backlog.
async fn vectors_settle(n: &NodeProcess, coll: &str, want: u64) -> Value {
    let c = n.client();
    eventually(
        &format!("{want} vectors of {coll} on {}", n.url),
        || async {
            let s = c.get(&["status"], &[]).await.map_err(|e| e.to_string())?;
            let v = &s["search"]["vectors"][coll];
            if v["vectors"] == json!(want) && v["backlog"] == json!(0) {
                Ok(s)
            } else {
                Err(format!("vectors {v}"))
            }
        },
    )
    .await
}

/// Issue 13: embeddings computed on one node travel with the feed; the other node, with the
/// same model, stores and searches them without computing any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_computed_on_one_node_are_reused_not_recomputed_on_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path(), "a"), node(dir.path(), "b"));
    let ca = a.client();
    ca.put(
        &["collections", "sem"],
        &json!({"embedding": {"model": "builtin"}}),
    )
    .await
    .unwrap();
    let docs = [
        ("mail", "How to send a file to a colleague by email"),
        ("cat", "The cat sleeps on the warm windowsill all afternoon"),
        ("tax", "Filing your income tax return before the deadline"),
    ];
    for (id, text) in docs {
        ca.put(&["collections", "sem", "docs", id], &json!({"text": text}))
            .await
            .unwrap();
    }
    let sa = vectors_settle(&a, "sem", 3).await;
    assert_eq!(sa["search"]["embedded_here"], 3);
    add_peer(&b, &a).await;
    let sb = vectors_settle(&b, "sem", 3).await;
    assert_eq!(
        sb["search"]["embedded_here"], 0,
        "B computed vectors A had sent"
    );
    let v = b
        .client()
        .post(
            &["collections", "sem", "query"],
            &json!({"query": "a kitten napping", "mode": "vector", "top_k": 1}),
        )
        .await
        .unwrap();
    assert_eq!(v["results"][0]["doc_id"], "cat", "{v}");
}

/// A client's new vectors for a document whose text did not change are a new version: the
/// peer takes them over the vectors it holds for those chunks, and searches by them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_vectors_for_unchanged_text_replace_the_old_ones_on_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (node(dir.path(), "a"), node(dir.path(), "b"));
    let ca = a.client();
    ca.put(
        &["collections", "ext"],
        &json!({"embedding": {"model": "external", "dimension": 2}}),
    )
    .await
    .unwrap();
    let put = |id: &'static str, text: &'static str, v: [f32; 2]| {
        let ca = ca.clone();
        async move {
            ca.put(
                &["collections", "ext", "docs", id],
                &json!({"text": text, "vector": v}),
            )
            .await
            .unwrap()
        }
    };
    put("d", "the text of d", [1.0, 0.0]).await;
    put("e", "the text of e", [0.0, 1.0]).await;
    add_peer(&b, &a).await;
    vectors_settle(&b, "ext", 2).await;
    let nearest = |n: &NodeProcess| {
        let c = n.client();
        async move {
            let v = c
                .post(
                    &["collections", "ext", "query"],
                    &json!({"vector": [-1.0, 0.0], "top_k": 1}),
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(v["results"][0]["doc_id"].as_str().unwrap_or("").to_string())
        }
    };
    assert_eq!(nearest(&b).await.unwrap(), "e");
    let w = put("d", "the text of d", [-1.0, 0.1]).await;
    assert_eq!(w["status"], "updated", "{w}");
    for n in [&a, &b] {
        eventually(&format!("d nearest on {}", n.url), || async {
            match nearest(n).await? {
                d if d == "d" => Ok(()),
                other => Err(format!("nearest is {other:?}")),
            }
        })
        .await;
    }
}

/// Issue 13: a node killed with chunks still to embed embeds only those after its restart:
/// what it had embedded is stored and reloaded, the rest of the backlog resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedding_backlog_resumes_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("n");
    let mut n = NodeProcess::spawn(Path::new(EXE), &data, TOKEN, &[]).unwrap();
    let c = n.client();
    c.put(
        &["collections", "sem"],
        &json!({"embedding": {"model": "builtin"}}),
    )
    .await
    .unwrap();
    let total = 400u64;
    let docs: Vec<Value> = (0..total)
        .map(|i| json!({"id": format!("d{i}"), "text": format!("note number {i} about topic {}", i % 17)}))
        .collect();
    c.post(
        &["collections", "sem", "docs:batch"],
        &json!({ "docs": docs }),
    )
    .await
    .unwrap();
    // Kill once some, not all, chunks have vectors.
    let before = eventually("some vectors, not all", || async {
        let s = c.get(&["status"], &[]).await.map_err(|e| e.to_string())?;
        let v = &s["search"]["vectors"]["sem"];
        match (v["vectors"].as_u64(), v["backlog"].as_u64()) {
            (Some(done), Some(left)) if done > 0 && left > 0 => Ok(done),
            _ => Err(format!("vectors {v}")),
        }
    })
    .await;
    n.kill9().unwrap();
    let n = NodeProcess::spawn(Path::new(EXE), &data, TOKEN, &[]).unwrap();
    let s = vectors_settle(&n, "sem", total).await;
    let after = s["search"]["embedded_here"].as_u64().unwrap();
    assert!(
        after <= total - before,
        "{after} chunks embedded after the restart, {before} were embedded before it"
    );
}

/// The scheduling of each thread of process `pid`, by thread name: (nice value, policy).
#[cfg(target_os = "linux")]
fn thread_priorities(pid: u32) -> Vec<(String, (i32, i32))> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(t.join("comm")),
            std::fs::read_to_string(t.join("stat")),
        ) else {
            continue; // a thread that ended meanwhile
        };
        // After the name in parentheses: state is field 3, nice field 19, policy field 41.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        let field = |n: usize| fields[n - 3].parse().unwrap();
        out.push((comm.trim().to_string(), (field(19), field(41))));
    }
    out
}

/// The BM25 index's tantivy threads (indexing, merging, committing) run at the configured
/// lower priority, also after commits start new indexing threads; the threads that answer
/// requests keep the node's. By default that is 10 nice levels lower; `--index-priority
/// idle` puts them under `SCHED_IDLE` instead, and `--index-priority 0` leaves them all
/// alike.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_threads_yield_to_the_request_threads() {
    const SCHED_OTHER: i32 = 0;
    const SCHED_IDLE: i32 = 5;
    let dir = tempfile::tempdir().unwrap();
    let ours = thread_priorities(std::process::id())[0].1;
    assert_eq!(ours.1, SCHED_OTHER);
    let niced = ((ours.0 + 10).min(19), SCHED_OTHER);
    for (name, args, expected) in [
        ("default", &[][..], Some(niced)),
        ("idle", &["--index-priority", "idle"][..], None),
        ("same", &["--index-priority", "0"][..], Some(ours)),
    ] {
        let n = NodeProcess::spawn(Path::new(EXE), &dir.path().join(name), TOKEN, args).unwrap();
        let c = n.client();
        c.put(&["collections", "kb"], &json!({})).await.unwrap();
        for i in 0..3 {
            c.put(
                &["collections", "kb", "docs", &format!("d{i}")],
                &json!({"text": format!("written {i} quokka")}),
            )
            .await
            .unwrap();
            // Each write is committed alone: indexing threads restart each time.
            finds(&n, &format!("{i}"), &[&format!("d{i}")]).await;
        }
        let threads = thread_priorities(n.pid());
        let of = |pick: &dyn Fn(&str) -> bool| -> Vec<(i32, i32)> {
            threads
                .iter()
                .filter(|(t, _)| pick(t))
                .map(|(_, p)| *p)
                .collect()
        };
        let index = of(&|t| t.starts_with("thrd-tantivy") || t.starts_with("merge_thread"));
        let requests = of(&|t| t == "tokio-rt-worker");
        assert!(!index.is_empty() && !requests.is_empty(), "{threads:?}");
        let lowered = |p: &(i32, i32)| match expected {
            Some(e) => *p == e,
            None => p.1 == SCHED_IDLE,
        };
        assert!(index.iter().all(lowered), "{name}: {threads:?}");
        assert!(requests.iter().all(|p| *p == ours), "{name}: {threads:?}");
    }
}
