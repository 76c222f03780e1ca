//! The change feed (`/v1/sync/*`) and blobs by content id over the API.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{PEER, TestNode, expect_error, json, refused};
use ragsync_core::ContentId;
use reqwest::Method;
use reqwest::header::RANGE;
use serde_json::json;

#[tokio::test]
async fn blobs_serve_whole_contents_and_byte_ranges() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let bytes: Vec<u8> = (0..=255u8).collect();
    n.req(Method::PUT, "/v1/collections/c/docs/bin")
        .json(&json!({"content_base64": BASE64.encode(&bytes)}))
        .send()
        .await
        .unwrap();
    let url = format!("/v1/blobs/{}", ContentId::of(&bytes));
    let r = n.req(Method::GET, &url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);

    // (Range, status, Content-Range, body)
    let cases: [(&str, u16, Option<&str>, &[u8]); 8] = [
        ("bytes=10-19", 206, Some("bytes 10-19/256"), &bytes[10..20]),
        ("bytes=-6", 206, Some("bytes 250-255/256"), &bytes[250..]),
        ("bytes=250-", 206, Some("bytes 250-255/256"), &bytes[250..]),
        // A suffix longer than the content is all of it (RFC 9110 §14.1.2).
        ("bytes=-300", 206, Some("bytes 0-255/256"), &bytes),
        (
            "bytes=250-999",
            206,
            Some("bytes 250-255/256"),
            &bytes[250..],
        ),
        // Several ranges, disjoint or overlapping, are answered with the whole content.
        ("bytes=0-1,5-6", 200, None, &bytes),
        ("bytes=0-10,5-20", 200, None, &bytes),
        ("bytes=0-1,999-1000", 200, None, &bytes),
    ];
    for (range, status, content_range, body) in cases {
        let r = n
            .req(Method::GET, &url)
            .header(RANGE, range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{range}");
        let got = r
            .headers()
            .get("content-range")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(got.as_deref(), content_range, "{range}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), body, "{range}");
    }
    for unsatisfiable in ["bytes=300-400", "bytes=-0", "bytes=256-,300-"] {
        let r = n
            .req(Method::GET, &url)
            .header(RANGE, unsatisfiable)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-range"], "bytes */256");
        expect_error(r, 416, "range_not_satisfiable").await;
    }

    let missing = format!("/v1/blobs/{}", ContentId::of(b"not stored"));
    refused(n.req(Method::GET, &missing), 404, "blob_not_found").await;
    refused(n.req(Method::GET, "/v1/blobs/xyz"), 400, "invalid_id").await;
}

#[tokio::test]
async fn sync_info_and_changes_serve_the_feed() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    n.req(Method::PUT, "/v1/collections/c/docs/a")
        .json(&json!({"text": "alpha"}))
        .send()
        .await
        .unwrap();
    n.req(Method::PUT, "/v1/collections/c/docs/b")
        .json(&json!({"text": "beta"}))
        .send()
        .await
        .unwrap();
    n.req(Method::DELETE, "/v1/collections/c/docs/a")
        .send()
        .await
        .unwrap();

    let (s, info) = json(
        n.as_token(PEER, Method::GET, "/v1/sync/info")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!((&info["head"], &info["protocol"]), (&json!(4), &json!(3)));
    assert_eq!(info["epoch"], json!(n.store.epoch()));

    let (s, page) = json(
        n.as_token(PEER, Method::GET, "/v1/sync/changes?since=0&limit=2")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let kinds: Vec<_> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["kind"].clone(), c["seq"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![(json!("collection"), json!(1)), (json!("doc"), json!(3))]
    );
    assert_eq!(
        (&page["next_since"], &page["has_more"], &page["head"]),
        (&json!(3), &json!(true), &json!(4))
    );
    let beta_cid = ContentId::of(b"beta").to_string();
    // UTF-8 contents travel as text; others as base64.
    assert_eq!(page["texts"][&beta_cid], json!("beta"));

    let (_, rest) = json(
        n.as_token(PEER, Method::GET, "/v1/sync/changes?since=3")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let row = &rest["changes"][0];
    assert_eq!(
        (&row["id"], &row["versions"][0]["deleted"]),
        (&json!("a"), &json!(true))
    );
    // Clock values pass 2^53: they travel as strings, as stamps do (JavaScript would round them).
    let clock = row["versions"][0]["clock"].as_object().unwrap();
    assert!(
        !clock.is_empty() && clock.values().all(|h| h.is_string()),
        "{clock:?}"
    );
    assert_eq!(
        (&rest["next_since"], &rest["has_more"]),
        (&json!(4), &json!(false))
    );
    let (_, empty) = json(
        n.as_token(PEER, Method::GET, "/v1/sync/changes?since=4")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (&empty["changes"], &empty["next_since"]),
        (&json!([]), &json!(4))
    );
    refused(
        n.as_token(PEER, Method::GET, "/v1/sync/changes?limit=0"),
        400,
        "invalid_limit",
    )
    .await;
}

#[tokio::test]
async fn page_sizes_are_cut_to_the_limit_and_cursors_checked() {
    let n = TestNode::with_limits(ragsync_core::Limits {
        max_page_rows: 3,
        ..Default::default()
    })
    .await;
    n.create_collection("c").await;
    let docs: Vec<_> = (0..5)
        .map(|i| json!({"id": format!("d{i}"), "text": "x"}))
        .collect();
    n.write_batch("c", docs).await;
    let (s, list) = json(
        n.req(Method::GET, "/v1/collections/c/docs")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, list["docs"].as_array().unwrap().len(), &list["has_more"]),
        (200, 3, &json!(true))
    );
    let (s, page) = json(
        n.as_token(PEER, Method::GET, "/v1/sync/changes?limit=100000")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (
            s,
            page["changes"].as_array().unwrap().len(),
            &page["next_since"]
        ),
        (200, 3, &json!(3))
    );
    // A since past the feed (the node was restored or replaced): a reset, never an empty page
    // that would leave the puller waiting past rows it will never see.
    let head = n.store.head_seq().unwrap();
    for since in [head + 1, u64::MAX] {
        let past = format!("/v1/sync/changes?since={since}");
        refused(n.as_token(PEER, Method::GET, &past), 409, "cursor_reset").await;
    }
}

#[tokio::test]
async fn an_empty_blob_is_served_whole_whatever_the_range() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    n.req(Method::PUT, "/v1/collections/c/docs/empty")
        .json(&json!({"text": ""}))
        .send()
        .await
        .unwrap();
    let url = format!("/v1/blobs/{}", ContentId::of(b""));
    let r = n
        .req(Method::GET, &url)
        .header(RANGE, "bytes=0-0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
}

/// Contents larger than a chunk are streamed from the store into the answer: text with
/// multi-byte characters cut by chunk boundaries reads back exactly, bytes under a text type
/// that are not UTF-8 come as base64, and blob ranges deep inside are exact.
#[tokio::test]
async fn large_contents_stream_back_exactly() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    // 3 MiB and more, of 1- to 4-byte characters and characters JSON escapes.
    let text = "aé\"\u{1F600}\\\n€".repeat(300_000);
    let r = n
        .req(Method::PUT, "/v1/collections/c/docs/big")
        .json(&json!({"text": text, "title": "big", "metadata": {"k": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (status, doc) = common::json(
        n.req(Method::GET, "/v1/collections/c/docs/big")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(doc["text"].as_str() == Some(text.as_str()), "text differs");
    assert_eq!(
        (&doc["title"], &doc["metadata"]),
        (&json!("big"), &json!({"k": 1}))
    );

    let mut bytes = text.clone().into_bytes();
    bytes[2_000_000] = 0xff;
    n.req(Method::PUT, "/v1/collections/c/docs/bad-utf8")
        .json(&json!({"content_base64": BASE64.encode(&bytes), "content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    let (_, doc) = common::json(
        n.req(Method::GET, "/v1/collections/c/docs/bad-utf8")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(doc.get("text").is_none());
    let decoded = BASE64
        .decode(doc["content_base64"].as_str().unwrap())
        .unwrap();
    assert!(decoded == bytes, "bytes differ");

    let url = format!("/v1/blobs/{}", ContentId::of(&bytes));
    let r = n
        .req(Method::GET, &url)
        .header(RANGE, "bytes=1048570-2000005")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-length"], "951436");
    assert!(r.bytes().await.unwrap().as_ref() == &bytes[1_048_570..2_000_006]);
}

/// A replicated version may reference a large content that is not stored here yet: its read
/// is a whole JSON answer that says the content is pending, never a 200 cut off mid-body;
/// once the bytes are fetched, it reads whole.
#[tokio::test]
async fn a_large_content_not_stored_here_reads_without_it() {
    use ragsync_core::doc::Body;
    use ragsync_core::{CollectionName, ContentRef, DocId, DocState, Hlc, NodeId, Stamp};
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let body = Body {
        title: Some("far".into()),
        content: Some(ContentRef {
            cid: ContentId::of(b"bytes that live on another node"),
            len: 2 << 20,
            content_type: "text/plain; charset=utf-8".into(),
        }),
        ..Body::default()
    };
    let state = DocState::create(Stamp::new(Hlc::new(now, 0), NodeId(99)), body);
    let (c, id) = (
        CollectionName::new("c").unwrap(),
        DocId::new("far").unwrap(),
    );
    assert!(
        n.store
            .merge_remote(&c, &id, &state, &Default::default())
            .unwrap()
    );
    let (status, doc) = json(
        n.req(Method::GET, "/v1/collections/c/docs/far")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &doc["title"]), (200, &json!("far")));
    assert!(doc.get("text").is_none() && doc.get("content_base64").is_none());
    assert_eq!(doc["content_pending"], json!(true));
}

/// `collections=` sends only those collections' rows and contents; `next_since` still passes
/// the rows left out, so a filtered page never stalls a cursor.
#[tokio::test]
async fn the_feed_filtered_by_collection_still_advances() {
    let n = TestNode::start().await;
    n.create_collection("a").await;
    n.create_collection("b").await;
    for (c, text) in [("a", "in a"), ("b", "in b"), ("b", "also in b")] {
        n.req(
            Method::PUT,
            &format!("/v1/collections/{c}/docs/{}", text.replace(' ', "-")),
        )
        .json(&json!({"text": text}))
        .send()
        .await
        .unwrap();
    }
    let head = n.store.head_seq().unwrap();
    let (s, page) = json(
        n.as_token(PEER, Method::GET, "/v1/sync/changes?since=0&collections=a")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let rows = page["changes"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["collection"] == "a" || r["name"] == "a"),
        "{page}"
    );
    assert_eq!(rows.len(), 2, "the record of a and its one document");
    assert_eq!(
        page["next_since"],
        json!(head),
        "filtered rows are passed too"
    );
    assert_eq!(
        page["texts"].as_object().unwrap().len(),
        1,
        "only a's contents travel"
    );
    // Filtered to nothing: an empty page that still moves the cursor to the head.
    let (_, none) = json(
        n.as_token(
            PEER,
            Method::GET,
            "/v1/sync/changes?since=0&collections=zzz",
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (
            none["changes"].as_array().unwrap().len(),
            &none["next_since"]
        ),
        (0, &json!(head))
    );
    refused(
        n.as_token(PEER, Method::GET, "/v1/sync/changes?collections=Bad!"),
        400,
        "invalid_collection_name",
    )
    .await;
}

/// `POST /v1/sync/changes`: a page of another node's feed merges like a pulled one, and the
/// answer accounts for every row (applied, or parked with why); contents the receiver lacks
/// are named and uploaded by id, checked against it.
#[tokio::test]
async fn pushed_pages_merge_and_every_row_is_accounted_for() {
    let (sender, n) = (TestNode::start().await, TestNode::start().await);
    sender.create_collection("c").await;
    for (id, text) in [("a", "alpha".to_string()), ("b", "b".repeat(70_000))] {
        sender
            .req(Method::PUT, &format!("/v1/collections/c/docs/{id}"))
            .json(&json!({"text": text}))
            .send()
            .await
            .unwrap();
    }
    let (_, page) = json(
        sender
            .req(Method::GET, "/v1/sync/changes?since=0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let seqs: Vec<u64> = page["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 3, "a collection and two documents");
    let push = |body: serde_json::Value| {
        n.as_token(PEER, Method::POST, "/v1/sync/changes")
            .json(&body)
    };
    let (status, answer) = json(push(page.clone()).send().await.unwrap()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["applied"], json!(seqs));
    assert_eq!(answer["changed"], 3);
    assert_eq!(answer["node_id"], n.store.node_id().to_string());
    // The 70 KB text did not travel inline: the receiver asks for it, and a read says so.
    let big = ContentId::of("b".repeat(70_000).as_bytes()).to_string();
    assert_eq!(answer["wanted"], json!([big]));
    let (_, doc) = json(
        n.req(Method::GET, "/v1/collections/c/docs/b")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(doc["content_pending"], true);
    let upload = |cid: String, body: Vec<u8>| {
        n.as_token(PEER, Method::PUT, &format!("/v1/blobs/{cid}"))
            .body(body)
    };
    refused(
        upload(big.clone(), b"not it".to_vec()),
        400,
        "content_mismatch",
    )
    .await;
    let (status, _) = json(
        upload(big.clone(), "b".repeat(70_000).into_bytes())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let (_, doc) = json(
        n.req(Method::GET, "/v1/collections/c/docs/b")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(doc["text"].as_str().map(str::len), Some(70_000));
    let alpha = ContentId::of(b"alpha").to_string();
    refused(upload(alpha, b"alpha".to_vec()), 409, "content_not_wanted").await;

    // Again: every row applied, nothing changed. A row whose version reuses a stamp for
    // other content is parked, and said so.
    let (_, again) = json(push(page.clone()).send().await.unwrap()).await;
    assert_eq!(
        (again["applied"].clone(), again["changed"].clone()),
        (json!(seqs), json!(0))
    );
    let mut forged = page.clone();
    forged["changes"][1]["versions"][0]["title"] = json!("not what was written");
    let (_, answer) = json(push(forged).send().await.unwrap()).await;
    assert_eq!(answer["parked"][0]["seq"], seqs[1]);
    assert_eq!(answer["parked"][0]["code"], "invalid_state");
    assert_eq!(answer["applied"], json!([seqs[0], seqs[2]]));

    // Refused whole: a page in the receiver's own name, rows not after `since`, a token
    // without the sync role.
    let mut own = page.clone();
    own["node_id"] = json!(n.store.node_id().to_string());
    refused(push(own), 400, "invalid_page").await;
    let mut behind = page.clone();
    behind["since"] = json!(seqs[2]);
    refused(push(behind), 400, "invalid_page").await;
    refused(
        n.as_token(common::READER, Method::POST, "/v1/sync/changes")
            .json(&page),
        403,
        "forbidden",
    )
    .await;
}

/// Pushes `page` to `n` with the peer token: the answer's status and body.
async fn push(n: &TestNode, page: &serde_json::Value) -> (u16, serde_json::Value) {
    json(
        n.as_token(PEER, Method::POST, "/v1/sync/changes")
            .json(page)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A pushed collection record is held to the rules of a local one: settings no local write
/// could make are parked as `invalid_state`, never stored (a `top_k` of 0 once made every
/// query of the collection spin).
#[tokio::test]
async fn pushed_collection_settings_are_checked_like_local_ones() {
    let (sender, n) = (TestNode::start().await, TestNode::start().await);
    sender.create_collection("c").await;
    let (_, page) = json(
        sender
            .req(Method::GET, "/v1/sync/changes?since=0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let bad = [
        ("/search/top_k", json!(0)),
        ("/search/hybrid_alpha", json!(7.5)),
        ("/search/language", json!("klingon")),
        ("/chunking/max_tokens", json!(0)),
        ("/chunking/min_tokens", json!(100_000)),
        ("/chunking/overlap_tokens", json!(256)),
        ("/embedding/dimension", json!(99_999)),
    ];
    for (field, value) in bad {
        let mut forged = page.clone();
        *forged
            .pointer_mut(&format!("/changes/0/settings{field}"))
            .unwrap_or_else(|| panic!("{field}")) = value;
        let (status, answer) = push(&n, &forged).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["parked"][0]["code"], "invalid_state",
            "{field}: {answer}"
        );
        assert_eq!(answer["changed"], 0, "{field}: {answer}");
    }
    refused(
        n.req(Method::GET, "/v1/collections/c"),
        404,
        "collection_not_found",
    )
    .await;
    // A deleted record's settings are never used: such a record is not held to them.
    let mut deleted = page.clone();
    deleted["changes"][0]["deleted"] = json!(true);
    deleted["changes"][0]["settings"]["search"]["top_k"] = json!(0);
    let (_, answer) = push(&n, &deleted).await;
    assert_eq!(answer["changed"], 1, "{answer}");
    // The live record, with a greater stamp, replaces it.
    let mut later = page.clone();
    let stamp = later["changes"][0]["stamp"].as_str().unwrap().to_string();
    let (hlc, node) = stamp.split_once('-').unwrap();
    let next = u64::from_str_radix(hlc, 16).unwrap() + 1;
    later["changes"][0]["stamp"] = json!(format!("{next:016x}-{node}"));
    let (_, answer) = push(&n, &later).await;
    assert_eq!(answer["changed"], 1, "{answer}");
}
