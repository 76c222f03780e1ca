//! Bad input of every kind gets a JSON error with a stable code and the right status, and
//! changes nothing that is stored.

mod common;

use bytes::Bytes;
use common::{BATCH, DOC, TestNode, assert_untouched, expect_error, node_with_a_document, refused};
use ragsync_core::Limits;
use reqwest::{Body, Method};
use serde_json::json;

#[tokio::test]
async fn malformed_json_wrong_types_and_wrong_shapes() {
    let n = node_with_a_document().await;
    let head = n.store.head_seq().unwrap();
    let cases: &[(Method, &str, &str, u16, &str)] = &[
        (Method::PUT, DOC, "{\"text\": ", 400, "invalid_json"),
        (Method::PUT, DOC, "not json", 400, "invalid_json"),
        (Method::PUT, DOC, "", 400, "invalid_json"),
        (Method::PUT, DOC, "{\"text\": 5}", 400, "invalid_body"),
        (Method::PUT, DOC, "[1, 2]", 400, "invalid_body"),
        (
            Method::PUT,
            DOC,
            "{\"text\": \"a\", \"colour\": 1}",
            400,
            "invalid_body",
        ),
        (
            Method::PUT,
            DOC,
            "{\"title\": \"no content\"}",
            400,
            "missing_content",
        ),
        (
            Method::PUT,
            DOC,
            "{\"text\": \"a\", \"content_base64\": \"YQ==\"}",
            400,
            "invalid_body",
        ),
        (
            Method::PUT,
            DOC,
            "{\"content_base64\": \"***\"}",
            400,
            "invalid_base64",
        ),
        (
            Method::PUT,
            DOC,
            "{\"text\": \"a\", \"metadata\": [1]}",
            400,
            "invalid_metadata",
        ),
        (
            Method::PUT,
            DOC,
            "{\"text\": \"a\", \"content_type\": \"bad\\ntype\"}",
            400,
            "invalid_content_type",
        ),
        (Method::POST, BATCH, "{\"docs\": {}}", 400, "invalid_body"),
        // Arrays where objects belong: serde would read them field by field, in order.
        (Method::PUT, DOC, "[\"text\"]", 400, "invalid_body"),
        (Method::PUT, "/v1/collections/d", "[]", 400, "invalid_body"),
        (
            Method::PUT,
            "/v1/collections/d",
            "{\"chunking\": [256, 32, 32]}",
            400,
            "invalid_body",
        ),
        (
            Method::POST,
            BATCH,
            "{\"docs\": [[\"y\", null, false, \"text\"]]}",
            400,
            "invalid_body",
        ),
        (
            Method::POST,
            "/v1/collections/c/query",
            "[\"kept\"]",
            400,
            "invalid_body",
        ),
        (
            Method::POST,
            BATCH,
            "{\"docs\": [{\"text\": \"no id\"}]}",
            400,
            "invalid_body",
        ),
        (
            Method::PUT,
            "/v1/collections/c",
            "{\"chunking\": 3}",
            400,
            "invalid_body",
        ),
        (
            Method::GET,
            "/v1/collections/c/docs?limit=abc",
            "",
            400,
            "invalid_query",
        ),
        (
            Method::GET,
            "/v1/collections/c/docs?bogus=1",
            "",
            400,
            "invalid_query",
        ),
        (
            Method::GET,
            "/v1/sync/changes?since=-1",
            "",
            400,
            "invalid_query",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let req = n
            .req(method.clone(), path)
            .header("content-type", "application/json")
            .body(*body);
        refused(req, *status, code).await;
    }
    let mixed = "{\"docs\": [{\"id\": \"ok\", \"text\": \"a\"}, {\"id\": \"d\", \"delete\": true, \"text\": \"a\"}]}";
    let msg = refused(n.req(Method::POST, BATCH).body(mixed), 400, "invalid_body").await;
    assert!(msg.starts_with("docs[1]"), "{msg}");
    assert_untouched(&n, head).await;
}

/// A peer's pushed page is untrusted input too: every object in it must be an object. serde
/// alone would read `["doc", 1, "c", "x", [...]]` as a change, field by field.
#[tokio::test]
async fn a_pushed_page_with_arrays_for_objects_is_refused() {
    let n = node_with_a_document().await;
    let (s, mut page) = common::json(
        n.req(Method::GET, "/v1/sync/changes?since=0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    // The node's own page, pushed in another node's name: every row is already known here.
    page["node_id"] = json!("0123456789abcdef0123456789abcdef");
    let cid = page["changes"][1]["versions"][0]["content"]["cid"].clone();
    // One chunk's vector, `[1.0]` as little-endian f32.
    page["embeddings"] =
        json!([{"model": "m", "content": cid, "chunks": [cid], "vectors": "AACAPw=="}]);
    let (s, answer) = common::json(
        n.req(Method::POST, "/v1/sync/changes")
            .json(&page)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, answer["changed"].as_u64()), (200, Some(0)), "{answer}");
    let head = n.store.head_seq().unwrap();
    // Each object as the array serde would read field by field: its fields in declaration
    // order. A collection row is flattened, which only a map can fill, so it is here for
    // completeness.
    let cases: [(&str, &[&str]); 6] = [
        ("/changes/0", &["kind", "seq", "name", "settings", "stamp"]),
        ("/changes/0/settings", &["chunking", "search", "embedding"]),
        (
            "/changes/1",
            &["kind", "seq", "collection", "id", "versions"],
        ),
        // The fields after `clock` have defaults, so the array may end there.
        ("/changes/1/versions/0", &["stamp", "clock"]),
        ("/changes/1/versions/0/content", &["cid", "len", "type"]),
        ("/embeddings/0", &["model", "content", "chunks", "vectors"]),
    ];
    for (pointer, fields) in cases {
        let mut bad = page.clone();
        let target = (bad.pointer_mut(pointer)).unwrap_or_else(|| panic!("{pointer} in {page}"));
        let values: Vec<_> = fields.iter().map(|f| target[*f].clone()).collect();
        *target = json!(values);
        let msg = refused(
            n.req(Method::POST, "/v1/sync/changes").json(&bad),
            400,
            "invalid_body",
        )
        .await;
        assert!(msg.contains("expected a JSON object"), "{pointer}: {msg}");
    }
    assert_untouched(&n, head).await;
}

/// The poison document of issue 11: metadata nested so deep that the stored state could no
/// longer be read. Refused now, at the named limit, like integers that would lose digits.
#[tokio::test]
async fn metadata_too_deep_or_too_wide_is_refused() {
    let n = node_with_a_document().await;
    let head = n.store.head_seq().unwrap();
    let nested = |levels: usize| {
        format!(
            "{{\"text\":\"x\",\"metadata\":{{\"a\":{}{}}}}}",
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    let batch_of = |item: &str| format!("{{\"docs\":[{{\"id\":\"p\",{}]}}", &item[1..]);
    let depth = Limits::default().max_metadata_depth;
    for body in [
        nested(124),
        nested(depth),
        r#"{"text":"x","metadata":{"n":18446744073709551616}}"#.to_string(),
        r#"{"text":"x","metadata":{"s":"[[","n":[-9223372036854775809]}}"#.to_string(),
    ] {
        let put = n
            .req(Method::PUT, "/v1/collections/c/docs/poison")
            .header("content-type", "application/json")
            .body(body.clone());
        refused(put, 400, "invalid_metadata").await;
        let batch = n
            .req(Method::POST, BATCH)
            .header("content-type", "application/json")
            .body(batch_of(&body));
        refused(batch, 400, "invalid_metadata").await;
    }
    assert_untouched(&n, head).await;

    // At the limit, and integers at the edges of 64 bits, are kept exactly.
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let edges = format!(
        r#"{{"text":"x","metadata":{{"u":{},"i":{},"f":1e300,"a":{}{}}}}}"#,
        u64::MAX,
        i64::MIN,
        "[".repeat(depth - 1),
        "]".repeat(depth - 1)
    );
    let r = n
        .req(Method::PUT, "/v1/collections/c/docs/edges")
        .header("content-type", "application/json")
        .body(edges.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (_, doc) = common::json(
        n.req(Method::GET, "/v1/collections/c/docs/edges")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let sent: serde_json::Value = serde_json::from_str(&edges).unwrap();
    assert_eq!(doc["metadata"], sent["metadata"]);
    assert_eq!(doc["metadata"]["u"].as_u64(), Some(u64::MAX));
    assert_eq!(doc["metadata"]["i"].as_i64(), Some(i64::MIN));
}

#[tokio::test]
async fn oversized_bodies_contents_metadata_titles_and_batches() {
    let n = node_with_a_document().await;
    let head = n.store.head_seq().unwrap();
    let big = "a".repeat(100 << 10);
    refused(
        n.req(Method::PUT, DOC).json(&json!({"text": big})),
        413,
        "body_too_large",
    )
    .await;
    // Without a Content-Length the body is cut while it is read.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..100)
        .map(|_| Ok(Bytes::from(vec![b' '; 1024])))
        .collect();
    let streamed = n
        .req(Method::PUT, DOC)
        .header("content-type", "application/json")
        .body(Body::wrap_stream(futures_stream(chunks)));
    refused(streamed, 413, "body_too_large").await;
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..100)
        .map(|_| Ok(Bytes::from(vec![b' '; 1024])))
        .collect();
    let streamed = n
        .req(Method::PUT, "/v1/collections/c")
        .body(Body::wrap_stream(futures_stream(chunks)));
    refused(streamed, 413, "body_too_large").await;
    // A batch without a length is cut at the same limit.
    let mut chunks: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from_static(b"{\"docs\": ["))];
    chunks.extend((0..100).map(|i| {
        let doc = json!({"id": format!("big{i}"), "text": "b".repeat(1000)});
        Ok(Bytes::from(format!("{doc},")))
    }));
    let streamed = n
        .req(Method::POST, "/v1/collections/c/docs:batch")
        .header("content-type", "application/json")
        .body(Body::wrap_stream(futures_stream(chunks)));
    refused(streamed, 413, "body_too_large").await;
    let content = "a".repeat(5 << 10);
    refused(
        n.req(Method::PUT, DOC).json(&json!({"text": content})),
        413,
        "content_too_large",
    )
    .await;
    let meta = json!({"text": "a", "metadata": {"blob": "m".repeat(300)}});
    refused(
        n.req(Method::PUT, DOC).json(&meta),
        413,
        "metadata_too_large",
    )
    .await;
    let title = json!({"text": "a", "title": "t".repeat(33)});
    refused(n.req(Method::PUT, DOC).json(&title), 413, "title_too_large").await;
    let docs: Vec<_> = (0..6)
        .map(|i| json!({"id": format!("b{i}"), "text": "x"}))
        .collect();
    refused(
        n.req(Method::POST, BATCH).json(&json!({"docs": docs})),
        413,
        "batch_too_large",
    )
    .await;
    assert_untouched(&n, head).await;
}

fn futures_stream(
    chunks: Vec<Result<Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn invalid_collection_names_and_document_ids() {
    let n = node_with_a_document().await;
    let head = n.store.head_seq().unwrap();
    for name in ["Bad", "_x", "-x", "a%20b", "a.b", "%C3%A9", &"a".repeat(65)] {
        refused(
            n.req(Method::PUT, &format!("/v1/collections/{name}")),
            400,
            "invalid_collection_name",
        )
        .await;
        refused(
            n.req(Method::GET, &format!("/v1/collections/{name}/docs/x")),
            400,
            "invalid_collection_name",
        )
        .await;
    }
    for id in [
        "..%2Fetc%2Fpasswd",
        "a%2F..%2F..%2Fb",
        "%2Fabs",
        "a%00b",
        "%00",
        "tab%09",
        "back%5Cslash",
        "a%2F%2Fb",
        "a%2F",
        // Invisible: zero-width space, byte-order mark, right-to-left override.
        "zero%E2%80%8Bwidth",
        "%EF%BB%BFbom",
        "evil%E2%80%AEtxt.exe",
    ] {
        let url = format!("/v1/collections/c/docs/{id}");
        refused(
            n.req(Method::PUT, &url).json(&json!({"text": "x"})),
            400,
            "invalid_document_id",
        )
        .await;
        refused(n.req(Method::GET, &url), 400, "invalid_document_id").await;
        refused(n.req(Method::DELETE, &url), 400, "invalid_document_id").await;
    }
    // HTTP clients normalise `..` segments away, so these go over a raw socket.
    for path in [
        "/v1/collections/c/docs/..",
        "/v1/collections/c/docs/%2e%2e",
        "/v1/collections/c/docs/.",
    ] {
        let (status, body) = raw_get(&n, path).await;
        assert!(
            status == 400 && body.contains("invalid_document_id"),
            "{path}: {status} {body}"
        );
    }
    let long = "a".repeat(513);
    refused(
        n.req(Method::PUT, &format!("/v1/collections/c/docs/{long}"))
            .json(&json!({"text": "x"})),
        400,
        "invalid_document_id",
    )
    .await;
    for id in ["../x", "a\u{0}b", "/etc/passwd", "a/../../b"] {
        let body = json!({"docs": [{"id": "fine", "text": "x"}, {"id": id, "text": "x"}]});
        let msg = refused(
            n.req(Method::POST, BATCH).json(&body),
            400,
            "invalid_document_id",
        )
        .await;
        assert!(msg.starts_with("docs[1]"), "{msg}");
    }
    // `after` is a position in the listing, not a name: any string continues it.
    let (status, page) = common::json(
        n.req(Method::GET, "/v1/collections/c/docs?after=..")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &page["docs"][0]["id"]), (200, &json!("keep")));
    refused(
        n.req(Method::GET, "/v1/collections/c/docs/%FF"),
        400,
        "invalid_path",
    )
    .await;
    assert_untouched(&n, head).await;
}

/// A GET written by hand on a TCP socket, so the path reaches the server exactly as given.
async fn raw_get(n: &TestNode, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = n.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        common::ADMIN
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[tokio::test]
async fn text_must_be_utf8() {
    let n = node_with_a_document().await;
    let head = n.store.head_seq().unwrap();
    let invalid: &[u8] = b"{\"text\": \"caf\xe9\"}";
    let r = n
        .req(Method::PUT, DOC)
        .header("content-type", "application/json")
        .body(invalid.to_vec())
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_utf8").await;
    let lone_surrogate = "{\"text\": \"\\ud800\"}";
    let r = n
        .req(Method::PUT, DOC)
        .header("content-type", "application/json")
        .body(lone_surrogate)
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_json").await;
    let batch: &[u8] = b"{\"docs\": [{\"id\": \"a\", \"text\": \"\xff\xfe\"}]}";
    let r = n
        .req(Method::POST, BATCH)
        .header("content-type", "application/json")
        .body(batch.to_vec())
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_utf8").await;
    assert_untouched(&n, head).await;
}

/// Ids are normalised to NFC: the same name typed in NFD and NFC is one document.
#[tokio::test]
async fn document_ids_in_nfd_and_nfc_name_one_document() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    // "café" with a combining accent (NFD), then with "é" (NFC).
    let r = n
        .req(Method::PUT, "/v1/collections/c/docs/cafe%CC%81")
        .json(&json!({"text": "nfd"}))
        .send()
        .await
        .unwrap();
    let (status, v) = common::json(r).await;
    assert_eq!((status, &v["id"]), (201, &json!("caf\u{e9}")));
    let r = n
        .req(Method::PUT, "/v1/collections/c/docs/caf%C3%A9")
        .json(&json!({"text": "nfc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the NFC write updates the same document");
    let (_, list) = common::json(
        n.req(Method::GET, "/v1/collections/c/docs")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["docs"].as_array().unwrap().len(), 1);
    let (_, doc) = common::json(
        n.req(Method::GET, "/v1/collections/c/docs/cafe%CC%81")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(doc["text"], "nfc");
}
