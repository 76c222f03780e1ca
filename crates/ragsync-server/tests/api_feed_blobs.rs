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
    let cases: [(&str, u16, Option<&str>, &[u8]); 4] = [
        ("bytes=10-19", 206, Some("bytes 10-19/256"), &bytes[10..20]),
        ("bytes=-6", 206, Some("bytes 250-255/256"), &bytes[250..]),
        ("bytes=250-", 206, Some("bytes 250-255/256"), &bytes[250..]),
        // Several ranges are answered with the whole content.
        ("bytes=0-1,5-6", 200, None, &bytes),
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
    let r = n
        .req(Method::GET, &url)
        .header(RANGE, "bytes=300-400")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-range"], "bytes */256");
    expect_error(r, 416, "range_not_satisfiable").await;

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
    assert_eq!((&info["head"], &info["protocol"]), (&json!(4), &json!(1)));
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
    assert_eq!(page["contents"][&beta_cid], json!(BASE64.encode("beta")));

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
    n.req(Method::POST, "/v1/collections/c/docs:batch")
        .json(&json!({"docs": docs}))
        .send()
        .await
        .unwrap();
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
    let past = format!("/v1/sync/changes?since={}", u64::MAX);
    refused(n.as_token(PEER, Method::GET, &past), 400, "invalid_query").await;
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
