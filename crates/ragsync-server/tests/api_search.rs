//! Search over the API of one real node: what is written is found, what changes or goes
//! stops matching, filters select by metadata, settings rebuild the index, and every bad
//! query is refused with its code.

mod common;

use common::{READER, TestNode, json, refused, result_ids};
use reqwest::Method;
use serde_json::{Value, json};

async fn put(n: &TestNode, coll: &str, id: &str, body: Value) {
    let r = n
        .req(Method::PUT, &format!("/v1/collections/{coll}/docs/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "put {id}: {}", r.status());
}

async fn query(n: &TestNode, coll: &str, body: Value) -> Value {
    let (status, v) = json(
        n.req(Method::POST, &format!("/v1/collections/{coll}/query"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stale"], false, "{v}");
    v
}

/// The document ids of a query's results, in order.
async fn found(n: &TestNode, coll: &str, text: &str) -> Vec<String> {
    result_ids(&query(n, coll, json!({"query": text})).await)
}

#[tokio::test]
async fn written_text_is_found_and_updates_deletes_and_collection_deletes_follow() {
    let n = TestNode::start().await;
    n.create_collection("kb").await;
    put(
        &n,
        "kb",
        "wal",
        json!({"text": "SQLite's write-ahead log lets readers run beside the writer.",
               "title": "WAL mode", "metadata": {"topic": "storage"}}),
    )
    .await;
    put(
        &n,
        "kb",
        "raft",
        json!({"text": "Raft elects a leader by randomised timeouts."}),
    )
    .await;

    // Read your writes: the query waits for the index. Stemming: "readers" matches "reader".
    let v = query(&n, "kb", json!({"query": "Which READER runs?", "top_k": 5})).await;
    let r = &v["results"][0];
    assert_eq!(r["doc_id"], "wal");
    assert_eq!(r["title"], "WAL mode");
    assert_eq!(r["metadata"], json!({"topic": "storage"}));
    assert_eq!(
        r["text"],
        "SQLite's write-ahead log lets readers run beside the writer"
    );
    assert_eq!((r["ord"].as_u64(), r["start"].as_u64()), (Some(0), Some(0)));
    assert!(r["scores"]["bm25"].as_f64().unwrap() > 0.0);
    assert_eq!(r["score"], r["scores"]["bm25"]);
    assert_eq!(r["chunk_id"].as_str().unwrap().len(), 64);
    assert_eq!(v["mode"], "bm25");
    assert_eq!(v["results"].as_array().unwrap().len(), 1, "{v}");
    // The title is searchable too.
    assert_eq!(found(&n, "kb", "mode").await, ["wal"]);

    // An update: the old text no longer matches, the new one does.
    put(
        &n,
        "kb",
        "raft",
        json!({"text": "Paxos agrees on one value."}),
    )
    .await;
    assert!(found(&n, "kb", "leader").await.is_empty());
    assert_eq!(found(&n, "kb", "paxos").await, ["raft"]);

    // A delete: gone.
    let r = n
        .req(Method::DELETE, "/v1/collections/kb/docs/raft")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(found(&n, "kb", "paxos").await.is_empty());

    // A batch is indexed like single writes.
    let docs: Vec<Value> = (0..50)
        .map(|i| json!({"id": format!("b{i}"), "text": format!("batch item number{i} zebra")}))
        .collect();
    n.write_batch("kb", docs).await;
    assert_eq!(found(&n, "kb", "number37").await, ["b37"]);
    let v = query(&n, "kb", json!({"query": "zebra", "top_k": 100})).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 50);

    // A deleted collection is not searchable; a new one of the same name starts empty.
    let r = n
        .req(Method::DELETE, "/v1/collections/kb")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    refused(
        n.req(Method::POST, "/v1/collections/kb/query")
            .json(&json!({"query": "zebra"})),
        404,
        "collection_not_found",
    )
    .await;
    n.create_collection("kb").await;
    assert!(found(&n, "kb", "zebra").await.is_empty());
    let status = json(n.req(Method::GET, "/v1/status").send().await.unwrap())
        .await
        .1;
    assert_eq!(status["search"]["chunks"]["kb"], 0, "{status}");
}

#[tokio::test]
async fn filters_select_by_metadata() {
    let n = TestNode::start().await;
    n.create_collection("papers").await;
    for (id, year, venue) in [
        ("p1", 1999, "sigmod"),
        ("p2", 2008, "vldb"),
        ("p3", 2015, "sigmod"),
    ] {
        put(
            &n,
            "papers",
            id,
            json!({"text": "replication of databases", "metadata": {"year": year, "venue": venue}}),
        )
        .await;
    }
    let ids = |v: &Value| {
        let mut ids = result_ids(v);
        ids.sort();
        ids
    };
    let q = |filter: Value| json!({"query": "replication", "filter": filter});
    assert_eq!(
        ids(&query(&n, "papers", q(json!({"venue": "sigmod"}))).await),
        ["p1", "p3"]
    );
    assert_eq!(
        ids(&query(
            &n,
            "papers",
            q(json!({"year": {"$gte": 2000, "$lt": 2010}}))
        )
        .await),
        ["p2"]
    );
    assert_eq!(
        ids(&query(
            &n,
            "papers",
            q(json!({"venue": {"$in": ["vldb", "icde"]}, "year": 2008}))
        )
        .await),
        ["p2"]
    );
    assert!(ids(&query(&n, "papers", q(json!({"year": {"$gt": 2020}}))).await).is_empty());
    // top_k counts results that pass the filter.
    let v = query(
        &n,
        "papers",
        json!({"query": "replication", "top_k": 1, "filter": {"venue": "sigmod"}}),
    )
    .await;
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn chunking_and_language_settings_rebuild_the_index() {
    let n = TestNode::start().await;
    let text: String = (0..40).map(|i| format!("w{i} ")).collect();
    n.create_collection("c").await;
    put(&n, "c", "d", json!({"text": text})).await;
    let v = query(&n, "c", json!({"query": "w35"})).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(v["results"][0]["ord"], 0);

    // Ten-token chunks overlapping by two: w35 is in the chunk that starts at w32.
    let r = n
        .req(Method::PUT, "/v1/collections/c")
        .json(
            &json!({"chunking": {"max_tokens": 10, "min_tokens": 1, "overlap_tokens": 2},
                      "search": {"language": "french"}}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let v = query(&n, "c", json!({"query": "w35"})).await;
    let r = &v["results"][0];
    assert_eq!(
        (r["ord"].as_u64(), r["text"].as_str()),
        (Some(4), Some("w32 w33 w34 w35 w36 w37 w38 w39"))
    );
    let status = json(n.req(Method::GET, "/v1/status").send().await.unwrap())
        .await
        .1;
    assert_eq!(status["search"]["chunks"]["c"], 5, "{status}");

    // French stemming now: "chevaux" finds "cheval".
    put(&n, "c", "fr", json!({"text": "un cheval blanc"})).await;
    assert_eq!(found(&n, "c", "chevaux").await, ["fr"]);
}

/// Chinese and Japanese write no spaces between words: a word inside a sentence is found
/// (the run is indexed as pairs of characters), and a long sentence is not dropped as one
/// over-long term.
#[tokio::test]
async fn words_inside_chinese_and_japanese_sentences_are_found() {
    let n = TestNode::start().await;
    n.create_collection("kb").await;
    put(
        &n,
        "kb",
        "zh",
        json!({"text": "我们在东京都的一家小咖啡馆里讨论了分布式数据库的复制协议。"}),
    )
    .await;
    put(
        &n,
        "kb",
        "ja",
        json!({"text": "京都の古いお寺で、データベースの同期について話しました。"}),
    )
    .await;
    put(
        &n,
        "kb",
        "en",
        json!({"text": "Replication of a database in Tokyo."}),
    )
    .await;
    assert_eq!(found(&n, "kb", "复制协议").await, ["zh"]);
    assert_eq!(
        found(&n, "kb", "東京").await,
        Vec::<String>::new(),
        "traditional 東 is not 东"
    );
    assert_eq!(found(&n, "kb", "东京").await, ["zh"]);
    assert_eq!(found(&n, "kb", "データベース").await, ["ja"]);
    // 京都 is in both texts (东京都 holds it too).
    let both = found(&n, "kb", "京都").await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(found(&n, "kb", "database").await, ["en"]);
    // A word of one character inside a sentence.
    put(&n, "kb", "cat", json!({"text": "我有一只猫。"})).await;
    assert_eq!(found(&n, "kb", "猫").await, ["cat"]);
}

/// Long terms up to 128 bytes are indexed and asked for: a git commit id (40 hex digits), a
/// SHA-256 (64), a long German compound.
#[tokio::test]
async fn long_terms_such_as_hashes_are_found() {
    let n = TestNode::start().await;
    n.create_collection("kb").await;
    let sha1 = "2f1514181aadccd913abd94cfa592701a5686ab2";
    let sha256 = "2f1514181aadccd913abd94cfa592701a5686ab23f8df1dff1b74710febc6d4a";
    let word = "Rindfleischetikettierungsüberwachungsaufgabenübertragungsgesetz";
    put(
        &n,
        "kb",
        "c1",
        json!({"text": format!("commit {sha1} fixed it")}),
    )
    .await;
    put(&n, "kb", "c2", json!({"text": format!("blob {sha256}")})).await;
    put(
        &n,
        "kb",
        "law",
        json!({"text": format!("Das {word} gilt.")}),
    )
    .await;
    assert_eq!(found(&n, "kb", sha1).await, ["c1"]);
    assert_eq!(found(&n, "kb", sha256).await, ["c2"]);
    assert_eq!(found(&n, "kb", word).await, ["law"]);
}

#[tokio::test]
async fn grouped_by_document_each_document_comes_once_with_its_whole_text() {
    let n = TestNode::start().await;
    let r = n
        .req(Method::PUT, "/v1/collections/g")
        .json(&json!({"chunking": {"max_tokens": 4, "min_tokens": 1, "overlap_tokens": 0}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // "long" has two chunks with "apple" twice, "short" one with it once: by chunk the first
    // two results are both "long"'s, by document each comes once and top_k counts documents.
    let long = "apple apple pie. apple apple tart. apple cake!";
    put(&n, "g", "long", json!({"text": long, "metadata": {"n": 1}})).await;
    put(&n, "g", "short", json!({"text": "an apple, fresh."})).await;
    put(&n, "g", "other", json!({"text": "no fruit here"})).await;
    let by_chunk = query(&n, "g", json!({"query": "apple", "top_k": 2})).await;
    assert_eq!(result_ids(&by_chunk), ["long", "long"], "{by_chunk}");
    assert!(by_chunk["results"][0].get("document_text").is_none());

    let by_doc = query(
        &n,
        "g",
        json!({"query": "apple", "top_k": 2, "group": "document"}),
    )
    .await;
    let mut got = result_ids(&by_doc);
    got.sort();
    assert_eq!(got, ["long", "short"], "{by_doc}");
    for r in by_doc["results"].as_array().unwrap() {
        let whole = if r["doc_id"] == "long" {
            long
        } else {
            "an apple, fresh."
        };
        // The whole text, punctuation included; `text` stays the best chunk.
        assert_eq!(r["document_text"], whole, "{r}");
        assert!(whole.contains(r["text"].as_str().unwrap()), "{r}");
    }
    let long_hit = by_doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["doc_id"] == "long")
        .unwrap();
    assert_eq!(long_hit["metadata"], json!({"n": 1}));

    // An unknown grouping is refused, not ignored.
    let (status, v) = json(
        n.req(Method::POST, "/v1/collections/g/query")
            .json(&json!({"query": "apple", "group": "paragraph"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn bad_queries_are_refused_with_their_codes() {
    let n = TestNode::start().await;
    n.create_collection("kb").await;
    put(&n, "kb", "a", json!({"text": "alpha beta"})).await;
    let q = |body: Value| n.req(Method::POST, "/v1/collections/kb/query").json(&body);
    for (body, code) in [
        (json!({}), "invalid_query"),
        (json!({"query": "   "}), "invalid_query"),
        (json!({"query": "?! ..."}), "invalid_query"),
        (
            json!({"query": "alpha", "mode": "semantic"}),
            "invalid_query",
        ),
        (json!({"query": "alpha", "alpha": 1.5}), "invalid_query"),
        // A fusion's settings where there is nothing to fuse.
        (
            json!({"query": "alpha", "mode": "bm25", "alpha": 0.5}),
            "invalid_query",
        ),
        (
            json!({"query": "alpha", "mode": "bm25", "fusion": "rrf"}),
            "invalid_query",
        ),
        (json!({"query": "alpha", "alpha": -0.1}), "invalid_query"),
        (json!({"query": "alpha", "top_k": 0}), "invalid_query"),
        (json!({"query": "alpha", "top_k": 5000}), "invalid_query"),
        // Every number out of range or not whole, alike.
        (json!({"query": "alpha", "top_k": -1}), "invalid_query"),
        (json!({"query": "alpha", "top_k": 1.5}), "invalid_query"),
        (json!({"query": "alpha", "top_k": 1e12}), "invalid_query"),
        (json!({"query": "alpha", "top_k": "3"}), "invalid_body"),
        (json!({"query": "alpha", "mode": "vector"}), "invalid_query"),
        (json!({"query": "alpha", "mode": "hybrid"}), "invalid_query"),
        (json!({"vector": [0.1, 0.2]}), "invalid_query"),
        (
            json!({"query": "alpha", "filter": {"year": {"$between": 1}}}),
            "invalid_filter",
        ),
        (json!({"query": "alpha", "filter": [1]}), "invalid_filter"),
        (json!({"query": "x".repeat(20_000)}), "invalid_query"),
    ] {
        let msg = refused(q(body.clone()), 400, code).await;
        assert!(!msg.is_empty(), "{body}");
    }
    for (body, says) in [
        (
            json!({"query": "alpha", "mode": "vector"}),
            "no embedding model",
        ),
        // A text and a vector without a mode ask for both: hybrid, which this collection
        // lacks; so does an alpha without a mode: it weighs a hybrid query.
        (
            json!({"query": "alpha", "vector": [0.1, 0.2]}),
            "mode \"hybrid\" needs vectors",
        ),
        (
            json!({"query": "alpha", "alpha": 0.5}),
            "mode \"hybrid\" needs vectors",
        ),
    ] {
        let msg = refused(q(body.clone()), 400, "invalid_query").await;
        assert!(msg.contains(says), "{body}: {msg}");
    }
    let msg = refused(
        q(json!({"query": "alpha", "top_k": 2.5})),
        400,
        "invalid_query",
    )
    .await;
    assert_eq!(msg, "top_k must be a whole number from 1 to 1000, not 2.5");
    // A whole number written as a double is a number of results all the same; a result
    // whose document has no title says so with null.
    for id in ["b", "c"] {
        put(&n, "kb", id, json!({"text": "alpha gamma"})).await;
    }
    let v = query(&n, "kb", json!({"query": "alpha", "top_k": 2.0})).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["results"][0]["title"], Value::Null);
    assert!(
        v["results"][0].as_object().unwrap().contains_key("title"),
        "{v}"
    );
    refused(
        q(json!({"query": "alpha", "bogus": 1})),
        400,
        "invalid_body",
    )
    .await;
    refused(
        n.req(Method::POST, "/v1/collections/nope/query")
            .json(&json!({"query": "alpha"})),
        404,
        "collection_not_found",
    )
    .await;
    refused(
        n.req(Method::POST, "/v1/collections/Bad%20Name/query")
            .json(&json!({"query": "alpha"})),
        400,
        "invalid_collection_name",
    )
    .await;
    // Reading is enough to search; no token is not.
    let r = n
        .as_token(READER, Method::POST, "/v1/collections/kb/query")
        .json(&json!({"query": "alpha"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = n
        .http
        .post(format!("{}/v1/collections/kb/query", n.base))
        .json(&json!({"query": "alpha"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Indexing ahead, over HTTP: a query on a collection written just after another's bulk load
/// is answered fresh while the index's watermark is still behind that load. Whether the load
/// outlasts the query depends on the machine, so the load doubles until it does (three tries
/// at most), and a run where it never does fails rather than passing untested. Without the
/// indexing ahead the query waits for the watermark, so it either answers stale or answers
/// with the watermark past its write: the test fails either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_is_answered_fresh_while_another_collection_s_load_is_indexed() {
    let n = TestNode::start().await;
    n.create_collection("big").await;
    n.create_collection("small").await;
    let mut batches = 8;
    for attempt in 0..3 {
        for b in 0..batches {
            let docs: Vec<Value> = (0..1000)
                .map(|i| json!({"id": format!("{attempt}-{b}-{i}"), "text": format!("bulk words {i} of batch {b}")}))
                .collect();
            n.write_batch("big", docs).await;
        }
        let id = format!("needle{attempt}");
        put(
            &n,
            "small",
            &id,
            json!({"text": format!("the {id} is here")}),
        )
        .await;
        let written = n.store.head_seq().unwrap();
        let v = query(&n, "small", json!({"query": id})).await;
        assert_eq!(result_ids(&v), [id.as_str()], "{v}");
        if v["indexed_through"].as_u64().unwrap() < written {
            return;
        }
        batches *= 2;
    }
    panic!(
        "each query was answered only once the watermark passed its write: no indexing ahead, \
         or no load outlasted its query"
    );
}
