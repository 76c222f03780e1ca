//! Peers are untrusted input. Fake peers (a few lines of HTTP on `127.0.0.1:0`) answer a real
//! node with what no honest node sends: compression bombs, a row stamped an hour ahead in the
//! middle of a page, a `next_since` far past the page's own head, a 2xx to a push that leaves
//! rows out.

mod common;

use std::io::Read;

use common::{TOKEN, add_peer_url, first_pull_until, last_error_says, node};
use serde_json::{Value, json};

const PEER_EPOCH: &str = "fedcba9876543210fedcba9876543210";

/// A peer that answers `sync/info` with `info` and every `sync/changes` with `changes` (sent
/// with `content-encoding: encoding` when given).
async fn fake_peer(
    info: &Value,
    changes: Vec<u8>,
    encoding: Option<&'static str>,
) -> (String, tokio::task::JoinHandle<()>) {
    fake_pushed_peer(info, changes, encoding, b"{}".to_vec()).await
}

/// [`fake_peer`], answering every push (`POST /v1/sync/changes`) with `pushed`.
async fn fake_pushed_peer(
    info: &Value,
    changes: Vec<u8>,
    encoding: Option<&'static str>,
    pushed: Vec<u8>,
) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let info = info.to_string().into_bytes();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (info, changes, pushed) = (info.clone(), changes.clone(), pushed.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let Ok(n) = s.read(&mut buf).await else {
                    return;
                };
                let (body, encoding) = if buf[..n].starts_with(b"GET /v1/sync/info") {
                    (info, None)
                } else if buf[..n].starts_with(b"POST /v1/sync/changes") {
                    (pushed, None)
                } else {
                    (changes, encoding)
                };
                let encoding =
                    encoding.map_or(String::new(), |e| format!("content-encoding: {e}\r\n"));
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{encoding}\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    (url, server)
}

fn info(node_id: &str, head: u64) -> Value {
    json!({"node_id": node_id, "epoch": PEER_EPOCH, "head": head, "protocol": 1})
}

/// A peer whose pages are zstd bombs (a few KiB that inflate to 300 MiB) is refused with a
/// visible error, and the node does not inflate them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_a_decompression_bomb_is_refused_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let b = node(dir.path(), "b");
    let bomb = zstd::stream::encode_all(std::io::repeat(b' ').take(300 << 20), 19).unwrap();
    assert!(bomb.len() < 1 << 20);
    let peer = info("0123456789abcdef0123456789abcdef", 5);
    let (url, server) = fake_peer(&peer, bomb, Some("zstd")).await;
    add_peer_url(&b, &url).await;
    let pull = first_pull_until(&b, "the bomb went unnoticed", |p| {
        last_error_says(p, "once decompressed")
    })
    .await;
    assert_eq!(pull["state"], "backing_off");
    let rss_mib = b.peak_rss_kib().unwrap() / 1024;
    assert!(
        rss_mib < 200,
        "the node inflated the bomb: peak RSS {rss_mib} MiB"
    );
    server.abort();
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
    let info = info(&peer.to_string(), 3);
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
            "node_id": peer, "epoch": PEER_EPOCH,
            "since": 0, "next_since": next_since, "has_more": false, "head": 3,
            "changes": rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            "texts": rows.iter().map(|r| r.1.clone()).collect::<std::collections::BTreeMap<_, _>>(),
        })
    };
    let (url, server) = fake_peer(&info, page(3).to_string().into_bytes(), None).await;
    add_peer_url(&b, &url).await;
    let pull = first_pull_until(&b, "the failure never showed", |p| {
        last_error_says(p, "clock drift")
    })
    .await;
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
    let (url, server) = fake_peer(&info, page(1 << 60).to_string().into_bytes(), None).await;
    add_peer_url(&b, &url).await;
    let pull = first_pull_until(&b, "the bad page went unnoticed", |p| {
        last_error_says(p, "past its head")
    })
    .await;
    assert_eq!(pull["cursor"], 0, "{pull}");
    server.abort();
}

/// A receiver that answers a push with a 2xx listing none of the rows sent has acknowledged
/// nothing: the push cursor stays where it was, and the status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_to_a_push_that_leaves_rows_out_moves_no_push_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), "a");
    a.client()
        .put(&["collections", "kb"], &json!({}))
        .await
        .unwrap();
    for i in 0..3 {
        a.client()
            .put(
                &["collections", "kb", "docs", &format!("d{i}")],
                &json!({"text": "x"}),
            )
            .await
            .unwrap();
    }
    let peer = "0123456789abcdef0123456789abcdef";
    let empty = json!({"node_id": peer, "epoch": PEER_EPOCH, "since": 0, "next_since": 0,
                       "has_more": false, "head": 0, "changes": []});
    let skipped = json!({"node_id": peer, "epoch": PEER_EPOCH, "applied": [], "changed": 0});
    let (url, server) = fake_pushed_peer(
        &info(peer, 0),
        empty.to_string().into_bytes(),
        None,
        skipped.to_string().into_bytes(),
    )
    .await;
    a.client()
        .post(
            &["peers"],
            &json!({"url": url, "token": TOKEN, "push": true}),
        )
        .await
        .unwrap();
    let pushing = common::eventually("the skipped rows went unnoticed", || async {
        let p = common::first_peer(&a).await["pushing"].clone();
        if last_error_says(&p, "did not acknowledge row") {
            Ok(p)
        } else {
            Err(p.to_string())
        }
    })
    .await;
    assert_eq!(pushing["cursor"], 0, "{pushing}");
    assert_eq!(pushing["state"], "backing_off");
    assert_eq!(
        pushing["lag_rows"], 4,
        "a collection and three documents: {pushing}"
    );
    server.abort();
}
