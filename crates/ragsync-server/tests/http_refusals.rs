//! Refusals made before a handler reads its input: missing and wrong tokens, roles checked
//! before the body, and what the HTTP layer refuses itself (malformed requests, bodies that
//! stop arriving or are left unread); each with the JSON error shape, changing nothing.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{BATCH, DOC, TestNode, assert_untouched, expect_error, node_with_a_document};
use ragsync_core::Limits;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn missing_and_wrong_tokens() {
    let n = node_with_a_document().await;
    let head = n.store.head_seq().unwrap();
    for (method, path) in [
        (Method::GET, "/v1/status"),
        (Method::GET, "/v1/collections"),
        (Method::PUT, DOC),
        (Method::DELETE, "/v1/collections/c/docs/keep"),
        (Method::POST, BATCH),
        (Method::GET, "/v1/sync/changes"),
        (Method::GET, "/v1/sync/info"),
        (Method::DELETE, "/v1/collections/c"),
    ] {
        let url = format!("{}{path}", n.base);
        let r = n.http.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        expect_error(r, 401, "missing_token").await;
        let r = n
            .http
            .request(method.clone(), &url)
            .bearer_auth("wrong-token-0123456789")
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "invalid_token").await;
        let r = n
            .http
            .request(method.clone(), &url)
            .header("authorization", "Basic YWRtaW46YWRtaW4=")
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "invalid_token").await;
        let r = n
            .http
            .request(method.clone(), &url)
            .header("authorization", "Bearer ")
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "invalid_token").await;
        // An empty header names no token at all.
        let r = n
            .http
            .request(method, &url)
            .header("authorization", "")
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "missing_token").await;
    }
    assert_untouched(&n, head).await;
}

/// A token that may not do what a request asks is refused before the body is read: a request
/// that announces a body and never sends it gets its 403 at once, not a 408 after the body
/// timeout (nor a 403 after up to 64 MiB).
#[tokio::test]
async fn permissions_are_checked_before_any_body_is_read() {
    let n = node_with_a_document().await;
    let head = n.store.head_seq().unwrap();
    let blob = format!("/v1/blobs/{}", ragsync_core::ContentId::of(b"x"));
    let cases = [
        ("PUT", "/v1/collections/c", common::READER),
        ("PUT", DOC, common::READER),
        ("POST", BATCH, common::READER),
        ("POST", "/v1/collections/c/query", common::PEER),
        ("POST", "/v1/sync/changes", common::READER),
        ("PUT", blob.as_str(), common::READER),
        ("POST", "/v1/peers", common::WRITER),
    ];
    for (method, path, token) in cases {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        );
        let (status, body) = raw(&n, request.as_bytes(), std::time::Duration::from_secs(10)).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(body.contains("\"forbidden\""), "{method} {path}: {body}");
    }
    assert_untouched(&n, head).await;
}

/// Sends raw bytes on a new connection and reads until the node closes it or `wait` passes:
/// the status and the body of the first answer.
async fn raw(n: &TestNode, request: &[u8], wait: std::time::Duration) -> (u16, String) {
    let text = raw_text(n, request, wait).await;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

/// Sends raw bytes on a new connection; everything the node answers until it closes the
/// connection or `wait` passes.
async fn raw_text(n: &TestNode, request: &[u8], wait: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = n.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

/// Refusals hyper makes before the router sees a request carry the JSON error shape too.
#[tokio::test]
async fn refusals_of_the_http_layer_are_json() {
    let n = TestNode::start().await;
    let long_path = format!(
        "GET /v1/collections/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(100_000)
    );
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (long_path.into_bytes(), 414, "uri_too_long"),
        (
            b"PUT /v1/collections/c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
                .to_vec(),
            400,
            "invalid_request",
        ),
        (
            b"PUT /v1/collections/c HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}".to_vec(),
            400,
            "invalid_request",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400, "invalid_request"),
    ];
    for (request, status, code) in cases.clone() {
        let (got, body) = raw(&n, &request, std::time::Duration::from_secs(5)).await;
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{got} body is not JSON ({e}): {body:?}"));
        assert_eq!((got, v["error"]["code"].as_str()), (status, Some(code)));
    }

    // The same after good requests on a kept-alive connection: the refusal follows them.
    for (request, status, code) in cases {
        let mut pipelined = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2);
        pipelined.extend_from_slice(&request);
        let (first, rest) = raw(&n, &pipelined, std::time::Duration::from_secs(5)).await;
        assert_eq!(first, 200);
        let last = rest.rsplit("\r\n\r\n").next().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("after good requests, not JSON ({e}): {rest:?}"));
        assert_eq!(
            v["error"]["code"].as_str(),
            Some(code),
            "{status}: {rest:?}"
        );
        assert!(rest.contains(&format!("HTTP/1.1 {status} ")), "{rest:?}");
    }

    // A content that looks like such a refusal is served as it is, also on a reused
    // connection: only hyper's own answers are rewritten, never a body.
    n.create_collection("c").await;
    let fake = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_vec();
    n.req(Method::PUT, "/v1/collections/c/docs/fake")
        .json(&json!({"content_base64": STANDARD.encode(&fake)}))
        .send()
        .await
        .unwrap();
    let url = format!("/v1/blobs/{}", ragsync_core::ContentId::of(&fake));
    for _ in 0..3 {
        let r = n.req(Method::GET, &url).send().await.unwrap();
        assert_eq!(r.bytes().await.unwrap().to_vec(), fake);
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_refused_with_408() {
    let n = TestNode::with_limits(Limits {
        body_read_timeout_ms: 200,
        ..Limits::default()
    })
    .await;
    n.create_collection("c").await;
    let head = format!(
        "PUT /v1/collections/c/docs/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"text\": ",
        common::ADMIN
    );
    let (status, body) = raw(&n, head.as_bytes(), std::time::Duration::from_secs(2)).await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("\"body_timeout\""), "{body}");
    let batch = format!(
        "POST /v1/collections/c/docs:batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"docs\": [",
        common::ADMIN
    );
    let (status, body) = raw(&n, batch.as_bytes(), std::time::Duration::from_secs(2)).await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("\"body_timeout\""), "{body}");
    let r = n
        .req(Method::GET, "/v1/collections/c/docs/slow")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// An answer sent before the request's body was read says `Connection: close`: hyper will
/// not read the rest and closes the connection, and a client that sent its next request on
/// it, trusting a kept-alive answer, would see it closed without an answer.
#[tokio::test]
async fn an_answer_that_leaves_the_body_unread_closes_the_connection_and_says_so() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    let wait = std::time::Duration::from_secs(5);
    for (line, token, status) in [
        ("POST /v1/nothing", common::ADMIN, 404),
        ("POST /v1/collections/c/query", "not-the-token", 401),
        ("PUT /v1/health", common::ADMIN, 405),
    ] {
        // The head and the start of a body that never comes whole.
        let request = format!(
            "{line} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"query\": "
        );
        let text = raw_text(&n, request.as_bytes(), wait).await;
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{text:?}");
        assert!(
            head.to_ascii_lowercase().contains("\r\nconnection: close"),
            "{line}: {head:?}"
        );
    }

    // A request whose body was read keeps its connection: the next request on it is answered.
    let body = r#"{"query": "anything"}"#;
    let mut pipelined = format!(
        "POST /v1/collections/c/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        common::ADMIN,
        body.len()
    );
    pipelined.push_str("GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let text = raw_text(&n, pipelined.as_bytes(), wait).await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text:?}");
    assert_eq!(text.matches("HTTP/1.1 200 ").count(), 2, "{text:?}");
    let first_head = text.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        !first_head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{first_head:?}"
    );
}
