//! Versions over the API: conditional writes, conflicts from concurrent writes, state versions.

mod common;

use common::{TestNode, expect_error, json};
use ragsync_core::doc::Body;
use ragsync_core::{CollectionName, ContentId, ContentRef, DocId, DocState, Hlc, NodeId, Stamp};
use reqwest::Method;
use reqwest::header::{ETAG, IF_MATCH};
use serde_json::json;

#[tokio::test]
async fn conditional_writes_refuse_a_moved_document() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let url = "/v1/collections/c/docs/a";
    let (_, v1) = json(
        n.req(Method::PUT, url)
            .json(&json!({"text": "1"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let v1 = v1["version"].as_str().unwrap().to_string();
    let ok = n
        .req(Method::PUT, url)
        .header(IF_MATCH, format!("\"{v1}\""))
        .json(&json!({"text": "2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let stale = n
        .req(Method::PUT, url)
        .header(IF_MATCH, format!("\"{v1}\""))
        .json(&json!({"text": "3"}))
        .send()
        .await
        .unwrap();
    expect_error(stale, 409, "version_conflict").await;
    let (_, d) = json(n.req(Method::GET, url).send().await.unwrap()).await;
    assert_eq!(d["text"], json!("2"), "the refused write changed nothing");
    let del = n
        .req(Method::DELETE, url)
        .header(IF_MATCH, v1.as_str())
        .send()
        .await
        .unwrap();
    expect_error(del, 409, "version_conflict").await;
    let missing = n
        .req(Method::PUT, "/v1/collections/c/docs/new")
        .header(IF_MATCH, format!("\"{v1}\""))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(missing, 409, "version_conflict").await;
    let garbage = n
        .req(Method::PUT, url)
        .header(IF_MATCH, "\"nope\"")
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(garbage, 400, "invalid_if_match").await;
}

#[tokio::test]
async fn reads_show_conflicts_from_concurrent_writes() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let (_, local) = json(
        n.req(Method::PUT, "/v1/collections/c/docs/a")
            .json(&json!({"text": "local"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // A concurrent write from another node, merged as replication will merge it.
    let remote = DocState::create(
        Stamp::new(Hlc::new(1, 0), NodeId(7)),
        Body {
            title: Some("remote".into()),
            metadata: Default::default(),
            content: Some(ContentRef {
                cid: ContentId::of(b"remote"),
                len: 6,
                content_type: "text/plain".into(),
            }),
        },
    );
    let (c, id) = (CollectionName::new("c").unwrap(), DocId::new("a").unwrap());
    assert!(
        n.store
            .merge_remote(&c, &id, &remote, &Default::default())
            .unwrap()
    );
    let (_, d) = json(
        n.req(Method::GET, "/v1/collections/c/docs/a")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(d["stamp"], local["stamp"], "the greater stamp wins");
    assert_eq!(d["conflicts"].as_array().unwrap().len(), 1);
    assert_eq!(d["conflicts"][0]["title"], json!("remote"));
    // A write that has seen both resolves the conflict.
    n.req(Method::PUT, "/v1/collections/c/docs/a")
        .json(&json!({"text": "merged"}))
        .send()
        .await
        .unwrap();
    let (_, d) = json(
        n.req(Method::GET, "/v1/collections/c/docs/a")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(d["conflicts"], json!([]));
}

#[tokio::test]
async fn if_match_takes_the_version_of_the_whole_state() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let url = "/v1/collections/c/docs/a";
    n.req(Method::PUT, url)
        .json(&json!({"text": "local"}))
        .send()
        .await
        .unwrap();
    let (_, before) = json(n.req(Method::GET, url).send().await.unwrap()).await;
    assert_eq!(
        before["version"], before["stamp"],
        "one version: the state's version is its stamp"
    );
    // A concurrent version with a smaller stamp arrives: the winner stays, the state moved on.
    let remote = DocState::create(
        Stamp::new(Hlc::new(1, 0), NodeId(7)),
        Body {
            title: None,
            metadata: Default::default(),
            content: None,
        },
    );
    let (c, id) = (CollectionName::new("c").unwrap(), DocId::new("a").unwrap());
    n.store
        .merge_remote(&c, &id, &remote, &Default::default())
        .unwrap();
    let stale = before["version"].as_str().unwrap();
    let r = n
        .req(Method::PUT, url)
        .header(IF_MATCH, format!("\"{stale}\""))
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 409, "version_conflict").await;
    let r = n.req(Method::GET, url).send().await.unwrap();
    let etag = r.headers()[ETAG].to_str().unwrap().to_string();
    let (_, after) = json(r).await;
    assert_eq!(after["stamp"], before["stamp"], "the winner did not change");
    assert_ne!(after["version"], after["stamp"], "but the state did");
    assert_eq!(etag, format!("\"{}\"", after["version"].as_str().unwrap()));
    let r = n
        .req(Method::PUT, url)
        .header(IF_MATCH, etag)
        .json(&json!({"text": "resolved"}))
        .send()
        .await
        .unwrap();
    let (s, w) = json(r).await;
    assert_eq!((s, &w["version"]), (200, &w["stamp"]));
    let (_, d) = json(n.req(Method::GET, url).send().await.unwrap()).await;
    assert_eq!(d["conflicts"], json!([]));
}

/// Concurrent read-modify-write loops with If-Match lose no update: every write that was
/// acknowledged is counted in the final document.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conditional_writes_lose_no_update() {
    let n = std::sync::Arc::new(TestNode::start().await);
    n.create_collection("c").await;
    let url = "/v1/collections/c/docs/counter";
    n.req(Method::PUT, url)
        .json(&json!({"text": "0"}))
        .send()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let n = n.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = 0;
            for _ in 0..15 {
                loop {
                    let (_, d) = json(n.req(Method::GET, url).send().await.unwrap()).await;
                    let value: u64 = d["text"].as_str().unwrap().parse().unwrap();
                    let etag = d["version"].as_str().unwrap().to_string();
                    let r = n
                        .req(Method::PUT, url)
                        .header(IF_MATCH, format!("\"{etag}\""))
                        .json(&json!({"text": (value + 1).to_string()}))
                        .send()
                        .await
                        .unwrap();
                    match r.status().as_u16() {
                        200 => break,
                        409 => continue,
                        s => panic!("unexpected status {s}"),
                    }
                }
                acknowledged += 1;
            }
            acknowledged
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let (_, d) = json(n.req(Method::GET, url).send().await.unwrap()).await;
    assert_eq!(d["text"], json!(total.to_string()));
    assert_eq!(total, 90);
}

/// One rule everywhere: a live version beats a concurrent tombstone, even a newer one. The
/// document reads, lists and matches `If-Match: *` as live, with the tombstone listed among
/// its conflicts; a write that has seen both resolves them.
#[tokio::test]
async fn a_live_version_beats_a_newer_concurrent_delete() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let put = |text: &'static str| {
        n.req(Method::PUT, "/v1/collections/c/docs/a")
            .json(&json!({"text": text}))
            .send()
    };
    put("first").await.unwrap();
    let (c, id) = (CollectionName::new("c").unwrap(), DocId::new("a").unwrap());
    let first = n.store.get(&c, &id).unwrap().unwrap().state;
    put("updated").await.unwrap();
    // Another node deleted the first version, later, without seeing the update.
    let mut deleted = first.clone();
    let later = first.winner().stamp.hlc.physical_ms() + 1000;
    deleted.delete(Stamp::new(Hlc::new(later, 0), NodeId(99)));
    assert!(
        n.store
            .merge_remote(&c, &id, &deleted, &Default::default())
            .unwrap()
    );

    let (status, doc) = json(
        n.req(Method::GET, "/v1/collections/c/docs/a")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&doc["text"], &doc["deleted"]),
        (&json!("updated"), &json!(false))
    );
    assert_eq!(doc["conflicts"][0]["deleted"], json!(true), "{doc}");
    let (_, list) = json(
        n.req(Method::GET, "/v1/collections/c/docs")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["docs"][0]["conflicts"], json!(1));
    let r = n
        .req(Method::PUT, "/v1/collections/c/docs/a")
        .header("if-match", "*")
        .json(&json!({"text": "resolved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let state = n.store.get(&c, &id).unwrap().unwrap().state;
    assert_eq!(state.versions().len(), 1);
}
