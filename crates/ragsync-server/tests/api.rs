//! Every endpoint of API v1 against a real server on 127.0.0.1:0: status, collections,
//! documents, batches, lists, roles. Versions are in `api_versions.rs`, the feed and blobs in
//! `api_feed_blobs.rs`.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{ADMIN, PEER, READER, TestNode, WRITER, expect_error, json, refused};
use ragsync_core::ContentId;
use reqwest::Method;
use reqwest::header::ETAG;
use serde_json::json;

#[tokio::test]
async fn health_needs_no_token_and_status_reports_counts() {
    let n = TestNode::start().await;
    let (s, v) = json(
        n.http
            .get(format!("{}/v1/health", n.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    n.create_collection("c").await;
    for token in [ADMIN, WRITER, READER, PEER] {
        let (s, v) = json(
            n.as_token(token, Method::GET, "/v1/status")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(v["node_id"], json!(n.store.node_id()));
        assert_eq!(v["counts"]["collections"], json!(1));
        assert_eq!(v["durability"], json!("full"));
    }
}

#[tokio::test]
async fn collections_create_change_list_get_delete() {
    let n = TestNode::start().await;
    let r = n
        .req(Method::PUT, "/v1/collections/notes")
        .send()
        .await
        .unwrap();
    let (s, created) = json(r).await;
    assert_eq!(s, 201);
    assert_eq!(created["settings"]["chunking"]["max_tokens"], json!(256));
    let (s, same) = json(
        n.req(Method::PUT, "/v1/collections/notes")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, &same["version"]),
        (200, &created["version"]),
        "same settings: no new version"
    );
    let body = json!({"search": {"hybrid": true, "hybrid_alpha": 0.3}});
    let (s, changed) = json(
        n.req(Method::PUT, "/v1/collections/notes")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_ne!(changed["version"], created["version"]);
    assert_eq!(changed["settings"]["search"]["hybrid_alpha"], json!(0.3));
    let bad = json!({"search": {"hybrid_alpha": 2.0}});
    refused(
        n.req(Method::PUT, "/v1/collections/notes").json(&bad),
        400,
        "invalid_settings",
    )
    .await;

    let (_, one) = json(
        n.req(Method::GET, "/v1/collections/notes")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(one["name"], json!("notes"));
    n.create_collection("other").await;
    let (_, all) = json(n.req(Method::GET, "/v1/collections").send().await.unwrap()).await;
    let names: Vec<_> = all["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("notes"), json!("other")]);

    let put = n
        .req(Method::PUT, "/v1/collections/notes/docs/a")
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let (s, del) = json(
        n.req(Method::DELETE, "/v1/collections/notes")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, &del["documents_deleted"]), (200, &json!(1)));
    refused(
        n.req(Method::GET, "/v1/collections/notes"),
        404,
        "collection_not_found",
    )
    .await;
    refused(
        n.req(Method::GET, "/v1/collections/notes/docs/a"),
        404,
        "collection_not_found",
    )
    .await;
    refused(
        n.req(Method::DELETE, "/v1/collections/notes"),
        404,
        "collection_not_found",
    )
    .await;
    // Re-created, it is empty: the old documents stay deleted.
    n.create_collection("notes").await;
    let (_, list) = json(
        n.req(Method::GET, "/v1/collections/notes/docs")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["docs"], json!([]));
}

#[tokio::test]
async fn documents_put_get_update_delete_with_versions() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let url = "/v1/collections/c/docs/guides%2Fintro.md";
    let body = json!({"text": "hello wörld", "title": "Intro", "metadata": {"lang": "en", "n": 1}});
    let r = n.req(Method::PUT, url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let etag = r.headers()[ETAG].to_str().unwrap().to_string();
    let (_, w) = json(r).await;
    assert_eq!(
        (w["status"].as_str(), w["id"].as_str()),
        (Some("created"), Some("guides/intro.md"))
    );
    assert_eq!(etag, format!("\"{}\"", w["version"].as_str().unwrap()));

    let (s, d) = json(n.req(Method::GET, url).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(d["text"], json!("hello wörld"));
    assert_eq!(d["title"], json!("Intro"));
    assert_eq!(d["metadata"], json!({"lang": "en", "n": 1}));
    assert_eq!(d["version"], w["version"]);
    assert_eq!(
        d["content_cid"],
        json!(ContentId::of("hello wörld".as_bytes()))
    );
    assert_eq!(d["conflicts"], json!([]));

    let (s, same) = json(n.req(Method::PUT, url).json(&body).send().await.unwrap()).await;
    assert_eq!(
        (s, same["status"].as_str(), &same["version"]),
        (200, Some("unchanged"), &w["version"])
    );
    let (s, upd) = json(
        n.req(Method::PUT, url)
            .json(&json!({"text": "v2"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, upd["status"].as_str()), (200, Some("updated")));
    assert!(upd["version"].as_str().unwrap() > w["version"].as_str().unwrap());

    let (s, del) = json(n.req(Method::DELETE, url).send().await.unwrap()).await;
    assert_eq!((s, del["status"].as_str()), (200, Some("deleted")));
    refused(n.req(Method::GET, url), 404, "document_deleted").await;
    let (s, again) = json(n.req(Method::DELETE, url).send().await.unwrap()).await;
    assert_eq!((s, again["status"].as_str()), (200, Some("unchanged")));
    refused(
        n.req(Method::DELETE, "/v1/collections/c/docs/none"),
        404,
        "document_not_found",
    )
    .await;
    refused(
        n.req(Method::GET, "/v1/collections/c/docs/none"),
        404,
        "document_not_found",
    )
    .await;
    refused(
        n.req(Method::GET, "/v1/collections/zz/docs/none"),
        404,
        "collection_not_found",
    )
    .await;
    // Written again after the delete, the document is back with a new version.
    let (s, back) = json(
        n.req(Method::PUT, url)
            .json(&json!({"text": "v3"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, back["status"].as_str()), (201, Some("created")));
}

#[tokio::test]
async fn batches_apply_in_one_transaction() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let url = "/v1/collections/c/docs:batch";
    let body = json!({"docs": [
        {"id": "a", "text": "A"},
        {"id": "b", "content_base64": BASE64.encode([0u8, 159, 146, 150, 255]), "content_type": "application/x-test"},
        {"id": "c", "text": "C", "title": "Cee"},
    ]});
    let (s, r) = json(n.req(Method::POST, url).json(&body).send().await.unwrap()).await;
    assert_eq!((s, &r["created"]), (200, &json!(3)));
    let va = r["results"][0]["version"].as_str().unwrap().to_string();

    let head = n.store.head_seq().unwrap();
    let bad = json!({"docs": [
        {"id": "d", "text": "D"},
        {"id": "a", "text": "A2", "if_match": "0000000000000001-00000000000000000000000000000001"},
    ]});
    refused(n.req(Method::POST, url).json(&bad), 409, "version_conflict").await;
    assert_eq!(
        n.store.head_seq().unwrap(),
        head,
        "a refused batch stored nothing"
    );
    refused(
        n.req(Method::GET, "/v1/collections/c/docs/d"),
        404,
        "document_not_found",
    )
    .await;

    let mixed = json!({"docs": [
        {"id": "a", "text": "A2", "if_match": va},
        {"id": "c", "delete": true},
        {"id": "b", "content_base64": BASE64.encode([0u8, 159, 146, 150, 255]), "content_type": "application/x-test"},
    ]});
    let (s, r) = json(n.req(Method::POST, url).json(&mixed).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(
        (&r["updated"], &r["deleted"], &r["unchanged"]),
        (&json!(1), &json!(1), &json!(1))
    );

    // Bytes come back byte-exact, as base64 since they are not text.
    let (_, b) = json(
        n.req(Method::GET, "/v1/collections/c/docs/b")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        BASE64
            .decode(b["content_base64"].as_str().unwrap())
            .unwrap(),
        vec![0u8, 159, 146, 150, 255]
    );
    assert_eq!(b["content_type"], json!("application/x-test"));
    assert!(b.get("text").is_none());
}

#[tokio::test]
async fn listing_pages_by_id_and_hides_deleted_documents() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let docs: Vec<_> = (0..25)
        .map(|i| json!({"id": format!("d{i:02}"), "text": format!("t{i}")}))
        .collect();
    n.write_batch("c", docs).await;
    n.req(Method::DELETE, "/v1/collections/c/docs/d03")
        .send()
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = vec![("limit", "10".to_string())];
        if let Some(a) = &after {
            q.push(("after", a.clone()));
        }
        let (s, page) = json(
            n.req(Method::GET, "/v1/collections/c/docs")
                .query(&q)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
        for d in page["docs"].as_array().unwrap() {
            seen.push(d["id"].as_str().unwrap().to_string());
        }
        if page["has_more"] != json!(true) {
            break;
        }
        after = Some(page["next_after"].as_str().unwrap().to_string());
    }
    let expected: Vec<_> = (0..25)
        .filter(|i| *i != 3)
        .map(|i| format!("d{i:02}"))
        .collect();
    assert_eq!(seen, expected);
    refused(
        n.req(Method::GET, "/v1/collections/c/docs?limit=0"),
        400,
        "invalid_limit",
    )
    .await;
}

#[tokio::test]
async fn roles_limit_what_a_token_may_do() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let doc = "/v1/collections/c/docs/a";
    let w = n
        .as_token(WRITER, Method::PUT, doc)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(w.status(), 201);
    let forbidden = [
        (READER, Method::PUT, doc),
        (READER, Method::DELETE, doc),
        (WRITER, Method::PUT, "/v1/collections/d"),
        (WRITER, Method::DELETE, "/v1/collections/c"),
        (READER, Method::GET, "/v1/sync/changes"),
        (WRITER, Method::GET, "/v1/sync/info"),
        (PEER, Method::GET, doc),
        (PEER, Method::PUT, doc),
    ];
    for (token, method, path) in forbidden {
        let mut req = n.as_token(token, method.clone(), path);
        if method == Method::PUT {
            req = req.json(&json!({"text": "y"}));
        }
        refused(req, 403, "forbidden").await;
    }
    let r = n.as_token(READER, Method::GET, doc).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, d) = json(n.req(Method::GET, doc).send().await.unwrap()).await;
    assert_eq!(d["text"], json!("x"), "refused writes changed nothing");
    let _ = ADMIN;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let n = TestNode::start().await;
    refused(n.req(Method::GET, "/v1/nope"), 404, "route_not_found").await;
    refused(n.req(Method::POST, "/v1/status"), 405, "method_not_allowed").await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_and_checked_before_the_body() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let r = n
        .http
        .get(format!("{}/v1/status", n.base))
        .header("authorization", format!("bearer {ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A token that may not write is refused before its body is read or parsed.
    let r = n
        .as_token(READER, Method::PUT, "/v1/collections/c/docs/a")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "forbidden").await;
    let r = n
        .as_token(READER, Method::POST, "/v1/collections/c/docs:batch")
        .body("{not json")
        .send()
        .await
        .unwrap();
    expect_error(r, 403, "forbidden").await;
}

#[tokio::test]
async fn internal_failures_answer_500_without_internals() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    n.req(Method::PUT, "/v1/collections/c/docs/a")
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    // Damage the stored state behind the node's back.
    let raw = rusqlite::Connection::open(n.store.path()).unwrap();
    raw.execute("UPDATE docs SET state = x'00' WHERE doc_id = 'a'", [])
        .unwrap();
    let r = n
        .req(Method::GET, "/v1/collections/c/docs/a")
        .send()
        .await
        .unwrap();
    let message = expect_error(r, 500, "store_corrupt").await;
    assert!(
        !message.contains("state") && !message.contains(".db"),
        "{message}"
    );
}
