//! Vectors over the API of one real node: clients' vectors for an `external` collection,
//! queries by vector and hybrid queries, the built-in model embedding after commit, and every
//! refusal with its code.

mod common;

use std::time::Duration;

use common::{TestNode, json, refused, result_ids};
use reqwest::Method;
use serde_json::{Value, json};

async fn put_ok(n: &TestNode, path: &str, body: Value) -> Value {
    let (status, v) = json(n.req(Method::PUT, path).json(&body).send().await.unwrap()).await;
    assert!((200..300).contains(&status), "{path}: {status} {v}");
    v
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
    v
}

/// The collection's vectors as `/v1/status` shows them, once they number `want` with no
/// backlog (the built-in model embeds after commit).
async fn vectors_settle(n: &TestNode, coll: &str, want: u64) -> Value {
    for _ in 0..600 {
        let (_, s) = json(n.req(Method::GET, "/v1/status").send().await.unwrap()).await;
        let v = &s["search"]["vectors"][coll];
        if v["vectors"] == json!(want) && v["backlog"] == json!(0) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("collection {coll} never held {want} vectors");
}

#[tokio::test]
async fn client_vectors_are_searched_by_vector_and_fused_with_bm25() {
    let n = TestNode::start().await;
    put_ok(
        &n,
        "/v1/collections/ext",
        json!({"embedding": {"model": "external", "dimension": 3}}),
    )
    .await;
    let docs = [
        ("x", "apples grow on trees", [1.0, 0.0, 0.0]),
        ("y", "pears grow on trees too", [0.0, 1.0, 0.0]),
        ("z", "the sea is deep", [0.0, 0.0, 1.0]),
        // Matches no query below; its id sorts before the others, so a tie shows.
        ("a", "the sky is wide", [0.0, -1.0, 0.0]),
    ];
    for (id, text, v) in docs {
        put_ok(
            &n,
            &format!("/v1/collections/ext/docs/{id}"),
            json!({"text": text, "vector": v}),
        )
        .await;
    }
    let status = vectors_settle(&n, "ext", 4).await;
    assert_eq!(
        status["search"]["embedded_here"], 0,
        "clients' vectors are not computed"
    );

    // By vector: nearest first, unnormalised input accepted, cosine scores.
    let v = query(&n, "ext", json!({"vector": [0.2, 2.0, 0.1], "top_k": 2})).await;
    assert_eq!(v["mode"], "vector");
    assert_eq!(result_ids(&v), ["y", "x"]);
    let s = v["results"][0]["scores"]["vector"].as_f64().unwrap();
    assert!(s > 0.99 && s <= 1.0 + 1e-6, "{s}");

    // Hybrid: BM25 finds "trees" in x and y, the vector prefers x; every component shows.
    let v = query(
        &n,
        "ext",
        json!({"query": "trees", "vector": [1.0, 0.1, 0.0], "mode": "hybrid", "top_k": 3}),
    )
    .await;
    assert_eq!(result_ids(&v)[0], "x");
    let top = &v["results"][0]["scores"];
    assert!(top["bm25"].is_number() && top["vector"].is_number() && top["fused"].is_number());
    // Normalised fusion at alpha 0 is BM25's order, every hit above the chunks matching no
    // term (the weakest hit, x, is not scaled down to their 0); at 1, the vector's.
    let bm25_only = query(
        &n,
        "ext",
        json!({"query": "pears trees", "vector": [1.0, 0.0, 0.0], "mode": "hybrid", "alpha": 0.0, "top_k": 4}),
    )
    .await;
    assert_eq!(result_ids(&bm25_only)[..2], ["y", "x"]);
    let weakest = bm25_only["results"][1]["scores"]["fused"].as_f64().unwrap();
    assert!(weakest > 0.0, "{bm25_only}");
    let vector_only = query(
        &n,
        "ext",
        json!({"query": "pears trees", "vector": [1.0, 0.0, 0.0], "mode": "hybrid", "alpha": 1.0}),
    )
    .await;
    assert_eq!(result_ids(&vector_only)[0], "x");
    // A weight where nothing is weighed is refused, not ignored.
    for body in [
        json!({"query": "trees", "vector": [1.0, 0.0, 0.0], "fusion": "rrf", "alpha": 0.5}),
        json!({"vector": [1.0, 0.0, 0.0], "alpha": 0.5}),
    ] {
        let r = n
            .req(Method::POST, "/v1/collections/ext/query")
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, v) = json(r).await;
        assert_eq!(
            (status, &v["error"]["code"]),
            (400, &json!("invalid_query")),
            "{body}: {v}"
        );
    }

    // An update replaces the document's vector; a delete removes it; a batch carries vectors.
    put_ok(
        &n,
        "/v1/collections/ext/docs/z",
        json!({"text": "the sea is deep and wide", "vector": [0.0, 1.0, 0.0]}),
    )
    .await;
    n.req(Method::DELETE, "/v1/collections/ext/docs/y")
        .send()
        .await
        .unwrap();
    n.write_batch(
        "ext",
        vec![json!({"id": "w", "text": "wind", "vectors": [[0.0, 0.5, 0.5]]})],
    )
    .await;
    vectors_settle(&n, "ext", 4).await;
    let v = query(&n, "ext", json!({"vector": [0.0, 1.0, 0.0], "top_k": 3})).await;
    assert_eq!(result_ids(&v), ["z", "w", "x"]);
}

/// Only clients can send an `external` collection's vectors again, so a settings change that
/// leaves its documents' vectors out of queries says so, and status counts what is left out.
#[tokio::test]
async fn changing_an_external_dimension_warns_and_keeps_the_stored_vectors() {
    let n = TestNode::start().await;
    let three = json!({"embedding": {"model": "external", "dimension": 3}});
    let c = put_ok(&n, "/v1/collections/ext", three.clone()).await;
    assert!(c.get("warnings").is_none(), "{c}");
    for (id, v) in [("x", [1.0, 0.0, 0.0]), ("y", [0.0, 1.0, 0.0])] {
        put_ok(
            &n,
            &format!("/v1/collections/ext/docs/{id}"),
            json!({"text": format!("text of {id}"), "vector": v}),
        )
        .await;
    }
    vectors_settle(&n, "ext", 2).await;
    // The same settings again change nothing and warn of nothing.
    let c = put_ok(&n, "/v1/collections/ext", three.clone()).await;
    assert!(c.get("warnings").is_none(), "{c}");

    let c = put_ok(
        &n,
        "/v1/collections/ext",
        json!({"embedding": {"model": "external", "dimension": 2}}),
    )
    .await;
    let warning = c["warnings"][0].as_str().unwrap_or_else(|| panic!("{c}"));
    assert!(
        warning.contains("2 documents") && warning.contains("2 dimensions"),
        "{warning}"
    );
    // Another chunking cuts other chunks, whose vectors only clients can send: a warning too.
    let c = put_ok(
        &n,
        "/v1/collections/ext",
        json!({"embedding": {"model": "external", "dimension": 2}, "chunking": {"max_tokens": 100}}),
    )
    .await;
    assert!(c["warnings"][0].is_string(), "{c}");
    let c = put_ok(
        &n,
        "/v1/collections/ext",
        json!({"embedding": {"model": "external", "dimension": 2}}),
    )
    .await;
    assert!(c["warnings"][0].is_string(), "{c}");
    let v = vectors_backlog(&n, "ext", 2, 2).await;
    assert_eq!(v["vectors"], 0, "{v}");
    // The same text with a new vector is a new version (else neither the index nor a peer
    // would learn of the vector).
    let v = put_ok(
        &n,
        "/v1/collections/ext/docs/x",
        json!({"text": "text of x", "vector": [0.0, 1.0]}),
    )
    .await;
    assert_eq!(v["status"], "updated", "{v}");
    vectors_backlog(&n, "ext", 2, 1).await;
    let found = query(&n, "ext", json!({"vector": [0.0, 1.0], "top_k": 5})).await;
    assert_eq!(result_ids(&found), ["x"]);

    // Back to three: y's stored vector counts again, x's new one does not.
    let c = put_ok(&n, "/v1/collections/ext", three).await;
    assert!(c["warnings"][0].is_string(), "{c}");
    vectors_backlog(&n, "ext", 3, 1).await;
    let found = query(&n, "ext", json!({"vector": [0.0, 1.0, 0.0], "top_k": 5})).await;
    assert_eq!(result_ids(&found), ["y"]);
}

/// The collection's vectors as `/v1/status` shows them, once they have `dimension` and
/// `backlog` chunks lack vectors.
async fn vectors_backlog(n: &TestNode, coll: &str, dimension: u64, backlog: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let (_, s) = json(n.req(Method::GET, "/v1/status").send().await.unwrap()).await;
        last = s["search"]["vectors"][coll].clone();
        if last["backlog"] == json!(backlog) && last["dimension"] == json!(dimension) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("collection {coll} never had {dimension} dimensions and a backlog of {backlog}: {last}");
}

#[tokio::test]
async fn wrong_vectors_and_models_are_refused_with_their_codes() {
    let n = TestNode::start().await;
    put_ok(
        &n,
        "/v1/collections/ext",
        json!({"embedding": {"model": "external", "dimension": 3}}),
    )
    .await;
    n.create_collection("plain").await;
    let put = |coll: &str, body: Value| {
        n.req(Method::PUT, &format!("/v1/collections/{coll}/docs/d"))
            .json(&body)
    };
    for (coll, body, code) in [
        (
            "ext",
            json!({"text": "a b", "vector": [1.0, 0.0]}),
            "invalid_vector",
        ),
        (
            "ext",
            json!({"text": "a b", "vector": [0.0, 0.0, 0.0]}),
            "invalid_vector",
        ),
        (
            "ext",
            json!({"text": "a b", "vector": [1e39, 0.0, 0.0]}),
            "invalid_vector",
        ),
        (
            "ext",
            json!({"text": "a b", "vectors": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]}),
            "invalid_vector",
        ),
        (
            "ext",
            json!({"content_base64": "AAEC", "vector": [1.0, 0.0, 0.0]}),
            "invalid_vector",
        ),
        (
            "plain",
            json!({"text": "a b", "vector": [1.0, 0.0, 0.0]}),
            "invalid_vector",
        ),
        (
            "ext",
            json!({"text": "a b", "vector": [1.0, 0.0, 0.0], "vectors": [[1.0, 0.0, 0.0]]}),
            "invalid_body",
        ),
    ] {
        let msg = refused(put(coll, body.clone()), 400, code).await;
        assert!(!msg.is_empty(), "{body}");
    }
    // Nothing of the refused writes was stored.
    let (status, _) = json(
        n.req(Method::GET, "/v1/collections/ext/docs/d")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);

    let q = |coll: &str, body: Value| {
        n.req(Method::POST, &format!("/v1/collections/{coll}/query"))
            .json(&body)
    };
    let msg = refused(
        q("ext", json!({"vector": [1.0, 0.0]})),
        400,
        "invalid_vector",
    )
    .await;
    assert!(msg.contains("3"), "{msg}");
    refused(
        q("ext", json!({"vector": [0.0, 0.0, 0.0]})),
        400,
        "invalid_vector",
    )
    .await;
    // Valid JSON, but past what a 32-bit float holds: the vector is wrong, not the JSON.
    let msg = refused(
        q("ext", json!({"vector": [1e39, 0.0, 0.0]})),
        400,
        "invalid_vector",
    )
    .await;
    assert!(msg.contains("32-bit"), "{msg}");
    let msg = refused(
        q("ext", json!({"query": "a", "mode": "vector"})),
        400,
        "invalid_query",
    )
    .await;
    assert!(msg.contains("external"), "{msg}");
    refused(
        q("ext", json!({"mode": "hybrid", "vector": [1.0, 0.0, 0.0]})),
        400,
        "invalid_query",
    )
    .await;
    refused(
        q("ext", json!({"query": "a", "fusion": "max"})),
        400,
        "invalid_body",
    )
    .await;

    // An external collection whose default mode is hybrid searches text alone by BM25: the
    // node has no vector for the text.
    put_ok(
        &n,
        "/v1/collections/exthy",
        json!({"embedding": {"model": "external", "dimension": 3}, "search": {"hybrid": true}}),
    )
    .await;
    put_ok(
        &n,
        "/v1/collections/exthy/docs/a",
        json!({"text": "apples", "vector": [1.0, 0.0, 0.0]}),
    )
    .await;
    let v = query(&n, "exthy", json!({"query": "apples"})).await;
    assert_eq!(
        (v["mode"].as_str(), result_ids(&v)),
        (Some("bm25"), vec!["a".to_string()])
    );
    let v = query(
        &n,
        "exthy",
        json!({"query": "apples", "vector": [1.0, 0.0, 0.0]}),
    )
    .await;
    assert_eq!(v["mode"], "hybrid");

    // In a batch, a refused vector names its item, as other item refusals do.
    for (docs, index) in [
        (
            json!([{"id": "ok", "text": "a"}, {"id": "z", "text": "b", "vector": [1.0, 0.0]}]),
            1,
        ),
        (
            json!([{"id": "z", "text": "b", "vectors": []}, {"id": "ok", "text": "a"}]),
            0,
        ),
    ] {
        let (status, v) = json(
            n.req(Method::POST, "/v1/collections/ext/docs:batch")
                .json(&json!({ "docs": docs }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(
            (&v["error"]["code"], &v["error"]["index"]),
            (&json!("invalid_vector"), &json!(index)),
            "{v}"
        );
    }

    for settings in [
        json!({"embedding": {"model": "word2vec", "dimension": 3}}),
        json!({"embedding": {"model": "builtin", "dimension": 100}}),
        json!({"embedding": {"model": "external"}}),
        json!({"embedding": {"model": "openai-compatible/", "dimension": 8}}),
    ] {
        let msg = refused(
            n.req(Method::PUT, "/v1/collections/bad").json(&settings),
            400,
            "invalid_settings",
        )
        .await;
        assert!(!msg.is_empty(), "{settings}");
    }
}

#[tokio::test]
async fn the_built_in_model_embeds_after_commit_and_answers_text_queries() {
    let n = TestNode::start().await;
    let c = put_ok(
        &n,
        "/v1/collections/kb",
        json!({"embedding": {"model": "builtin"}}),
    )
    .await;
    assert_eq!(
        c["settings"]["embedding"]["model"],
        ragsync_search::embed::BUILT_IN_MODEL
    );
    assert_eq!(c["settings"]["embedding"]["dimension"], 384);
    let docs = [
        ("mail", "How to send a file to a colleague by email"),
        ("cat", "The cat sleeps on the warm windowsill all afternoon"),
        ("tax", "Filing your income tax return before the deadline"),
    ];
    for (id, text) in docs {
        put_ok(
            &n,
            &format!("/v1/collections/kb/docs/{id}"),
            json!({"text": text}),
        )
        .await;
    }
    // No word in common with the document it means. Asked right after the writes: a query
    // by vectors waits for their embedding, so it reads its own writes.
    let v = query(
        &n,
        "kb",
        json!({"query": "a kitten napping", "mode": "vector", "top_k": 1}),
    )
    .await;
    assert_eq!(
        (result_ids(&v), &v["stale"]),
        (vec!["cat".to_string()], &json!(false))
    );
    let s = vectors_settle(&n, "kb", 3).await;
    assert_eq!(s["search"]["embedded_here"], 3);
    let v = query(
        &n,
        "kb",
        json!({"query": "sharing a document with a coworker", "mode": "hybrid"}),
    )
    .await;
    assert_eq!(result_ids(&v)[0], "mail");
    // Writing the same text again embeds nothing new.
    put_ok(
        &n,
        "/v1/collections/kb/docs/cat2",
        json!({"text": docs[1].1}),
    )
    .await;
    let s = vectors_settle(&n, "kb", 4).await;
    assert_eq!(s["search"]["embedded_here"], 3);
    // An update is searchable by its new meaning as soon as it is acknowledged.
    put_ok(
        &n,
        "/v1/collections/kb/docs/tax",
        json!({"text": "A puppy chewing on a bone in the garden"}),
    )
    .await;
    let v = query(
        &n,
        "kb",
        json!({"query": "a young dog", "mode": "vector", "top_k": 1}),
    )
    .await;
    assert_eq!(
        (result_ids(&v), &v["stale"]),
        (vec!["tax".to_string()], &json!(false))
    );
}

/// An OpenAI-compatible stand-in on `127.0.0.1:0` serving three 4-dimensional models: `quick`
/// answers at once; `stuck` holds every request until `release` has permits; `gated` takes
/// one of them for each request it answers. Returns its URL.
fn embeddings_stand_in(release: std::sync::Arc<tokio::sync::Semaphore>) -> String {
    use axum::routing::post;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            let app = axum::Router::new().route(
                "/v1/embeddings",
                post(move |axum::Json(body): axum::Json<Value>| async move {
                    if body["model"] == "stuck" {
                        let _ = release.acquire().await;
                    }
                    if body["model"] == "gated" {
                        release.acquire().await.unwrap().forget();
                    }
                    let data: Vec<Value> = body["input"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let n = t.as_str().unwrap().len() as f32;
                            json!({"index": i, "embedding": [n, 1.0, 2.0, 3.0]})
                        })
                        .collect();
                    axum::Json(json!({"data": data}))
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

struct Released(std::sync::Arc<tokio::sync::Semaphore>);

impl Drop for Released {
    fn drop(&mut self) {
        self.0.add_permits(1 << 20);
    }
}

/// A node whose endpoint is [`embeddings_stand_in`], with `collections` (name, stand-in model),
/// and the stand-in's permits, released however the test ends (the node's runtime waits for
/// the request in flight).
async fn stand_in_node(
    collections: &[(&str, &str)],
) -> (TestNode, std::sync::Arc<tokio::sync::Semaphore>, Released) {
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let url = embeddings_stand_in(release.clone());
    let released = Released(release.clone());
    let n = TestNode::with_embedders(ragsync_search::embed::Embedders::new(Some(
        ragsync_search::embed::OpenAiEndpoint {
            base_url: url,
            api_key: None,
        },
    )))
    .await;
    for (name, model) in collections {
        put_ok(
            &n,
            &format!("/v1/collections/{name}"),
            json!({"embedding": {"model": format!("openai-compatible/{model}"), "dimension": 4}}),
        )
        .await;
    }
    (n, release, released)
}

#[tokio::test]
async fn a_query_waits_for_its_own_collection_not_for_another_s_backlog() {
    let (n, release, _released) = stand_in_node(&[("quick", "quick"), ("stuck", "stuck")]).await;
    put_ok(
        &n,
        "/v1/collections/quick/docs/q",
        json!({"text": "quick one"}),
    )
    .await;
    let by_vector = json!({"query": "quick one", "mode": "vector"});
    let v = query(&n, "quick", by_vector.clone()).await;
    assert_eq!(
        (result_ids(&v), &v["stale"]),
        (vec!["q".into()], &json!(false))
    );
    // A document of the other collection whose embedding never finishes (until released):
    // the embedder is held on it, and the index is behind on that collection only.
    put_ok(
        &n,
        "/v1/collections/stuck/docs/s",
        json!({"text": "stuck one"}),
    )
    .await;
    // Indexed, and queued (or held) for embedding, before the next query.
    let mut queued = false;
    for _ in 0..600 {
        let (_, s) = json(n.req(Method::GET, "/v1/status").send().await.unwrap()).await;
        let (through, head) = (&s["search"]["indexed_through"], &s["counts"]["head_seq"]);
        queued = s["search"]["vectors"]["stuck"]["backlog"] == json!(1)
            && head.as_u64().is_some_and(|h| through.as_u64() >= Some(h));
        if queued {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(queued, "the stuck document was never indexed");
    let v = query(&n, "quick", by_vector.clone()).await;
    assert_eq!(
        (result_ids(&v), &v["stale"]),
        (vec!["q".into()], &json!(false))
    );
    let bm25 = query(&n, "quick", json!({"query": "quick", "mode": "bm25"})).await;
    assert_eq!(bm25["stale"], json!(false));
    // Written while the other model is held: embedded by its own model's task, not queued
    // behind the held one.
    put_ok(
        &n,
        "/v1/collections/quick/docs/q2",
        json!({"text": "quick two!"}),
    )
    .await;
    let v = query(
        &n,
        "quick",
        json!({"query": "quick two!", "mode": "vector", "top_k": 2}),
    )
    .await;
    assert_eq!(v["stale"], json!(false), "{v}");
    assert!(result_ids(&v).contains(&"q2".to_string()), "{v}");
    // The collection that waits for its vectors still says so, after the freshness wait (by
    // a given vector: its model would hold the query's own text too).
    let by_given = json!({"vector": [9.0, 1.0, 2.0, 3.0], "mode": "vector"});
    let v = query(&n, "stuck", by_given.clone()).await;
    assert_eq!(v["stale"], json!(true), "{v}");
    release.add_permits(1 << 20);
    vectors_settle(&n, "stuck", 1).await;
    let v = query(&n, "stuck", by_given).await;
    assert_eq!(
        (result_ids(&v), &v["stale"]),
        (vec!["s".into()], &json!(false))
    );
}

/// Collections sharing one model take turns in its queue: a document written to one while
/// another's bulk load waits for the same model is embedded in the next batch, not after the
/// load.
#[tokio::test]
async fn collections_sharing_a_model_take_turns_in_its_queue() {
    let (n, gate, _released) = stand_in_node(&[("bulk", "gated"), ("live", "gated")]).await;
    // 300 one-chunk documents: five batches of the model's 64 texts.
    let docs: Vec<Value> = (0..300)
        .map(|i| json!({"id": format!("d{i}"), "text": format!("bulk document {i}")}))
        .collect();
    n.write_batch("bulk", docs).await;
    put_ok(&n, "/v1/collections/live/docs/l", json!({"text": "live"})).await;
    let backlogs = || async {
        let (_, s) = json(n.req(Method::GET, "/v1/status").send().await.unwrap()).await;
        let v = &s["search"]["vectors"];
        (v["bulk"]["backlog"].as_u64(), v["live"]["backlog"].as_u64())
    };
    let mut queued = false;
    for _ in 0..500 {
        queued = backlogs().await == (Some(300), Some(1));
        if queued {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        queued,
        "the documents were never indexed: {:?}",
        backlogs().await
    );
    // Two batches: the one held since the load began, then the next, where `live` has a turn.
    gate.add_permits(2);
    let mut seen = (None, None);
    for _ in 0..500 {
        seen = backlogs().await;
        if seen.1 == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bulk_left = seen.0.unwrap_or(0);
    assert!(
        seen.1 == Some(0) && bulk_left >= 300 - 2 * 64,
        "live waited behind the bulk load: backlogs {seen:?}"
    );
    let v = query(
        &n,
        "live",
        json!({"vector": [4.0, 1.0, 2.0, 3.0], "mode": "vector"}),
    )
    .await;
    assert_eq!(
        (result_ids(&v), &v["stale"]),
        (vec!["l".into()], &json!(false))
    );
}
