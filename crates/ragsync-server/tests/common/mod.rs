//! A real node for API tests: a store in a temporary directory and the router served on
//! `127.0.0.1:0` in this process; requests go over real HTTP with reqwest.

#![allow(dead_code)]

use std::sync::Arc;

use ragsync_core::Limits;
use ragsync_search::embed::Embedders;
use ragsync_server::{AppState, Auth, Node, Role, TokenSpec};
use ragsync_store::{Store, StoreOptions};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tokio::sync::oneshot;

pub const ADMIN: &str = "admin-secret-0123456789";
pub const WRITER: &str = "writer-secret-0123456789";
pub const READER: &str = "reader-secret-0123456789";
pub const PEER: &str = "peer-secret-0123456789";

pub struct TestNode {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<Store>,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl TestNode {
    pub async fn start() -> Self {
        Self::with_limits(Limits::default()).await
    }

    pub async fn with_limits(limits: Limits) -> Self {
        Self::with_options(limits, StoreOptions::default()).await
    }

    pub async fn with_options(limits: Limits, opts: StoreOptions) -> Self {
        Self::serving(opts, |store, auth| {
            Node::new(store, auth, limits).expect("search index")
        })
        .await
    }

    /// A node that runs the embedding models of `embedders`.
    pub async fn with_embedders(embedders: Embedders) -> Self {
        Self::serving(StoreOptions::default(), |store, auth| {
            Node::with_embedders(store, auth, Limits::default(), embedders).expect("search index")
        })
        .await
    }

    /// Serves the node `make` builds on a store in a new temporary directory, with the four
    /// test tokens.
    async fn serving(opts: StoreOptions, make: impl FnOnce(Arc<Store>, Auth) -> AppState) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), opts).unwrap());
        let mut auth = Auth::new();
        for (name, role, secret) in [
            ("admin", Role::Admin, ADMIN),
            ("writer", Role::Write, WRITER),
            ("reader", Role::Read, READER),
            ("peer", Role::Peer, PEER),
        ] {
            auth.add(&TokenSpec {
                name: name.into(),
                role,
                secret: secret.into(),
            });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let node = make(store.clone(), auth);
        tokio::spawn(ragsync_server::serve(listener, node, async {
            let _ = stopped.await;
        }));
        Self {
            base,
            http: reqwest::Client::new(),
            store,
            _dir: dir,
            _stop: stop,
        }
    }

    /// A request with the admin token.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.as_token(ADMIN, method, path)
    }

    pub fn as_token(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    /// Writes `docs` to collection `coll` in one batch, which must be accepted; its answer.
    pub async fn write_batch(&self, coll: &str, docs: Vec<Value>) -> Value {
        let (status, v) = json(
            self.req(Method::POST, &format!("/v1/collections/{coll}/docs:batch"))
                .json(&serde_json::json!({ "docs": docs }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "batch to {coll}: {v}");
        v
    }

    pub async fn create_collection(&self, name: &str) {
        let r = self
            .req(Method::PUT, &format!("/v1/collections/{name}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create collection: {}", r.status());
    }
}

/// The document ids of a query answer's results, in order.
pub fn result_ids(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["doc_id"].as_str().unwrap().to_string())
        .collect()
}

/// Status and JSON body of a response.
pub async fn json(resp: Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "response {status} is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, v)
}

/// Asserts a JSON error with this status and code; returns the message.
pub async fn expect_error(resp: Response, status: u16, code: &str) -> String {
    let (s, v) = json(resp).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (status, Some(code)),
        "body: {v}"
    );
    v["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

/// Sends `req` and asserts it is refused with this status and code; returns the message.
pub async fn refused(req: RequestBuilder, status: u16, code: &str) -> String {
    expect_error(req.send().await.unwrap(), status, code).await
}

// Bad input and refusals (`bad_input.rs`, `http_refusals.rs`): a node whose stored state a
// refused request must leave exactly as it was.

/// Limits small enough for tests to pass each of them.
pub fn small_limits() -> Limits {
    Limits {
        max_body_bytes: 64 << 10,
        max_batch_docs: 5,
        max_content_bytes: 4 << 10,
        max_metadata_bytes: 256,
        max_title_bytes: 32,
        ..Limits::default()
    }
}

/// A node with one stored document, and a check that it is still exactly as stored.
pub async fn node_with_a_document() -> TestNode {
    let n = TestNode::with_limits(small_limits()).await;
    n.create_collection("c").await;
    let r = n
        .req(Method::PUT, "/v1/collections/c/docs/keep")
        .json(&serde_json::json!({"text": "kept", "metadata": {"k": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    n
}

pub async fn assert_untouched(n: &TestNode, head: u64) {
    assert_eq!(
        n.store.head_seq().unwrap(),
        head,
        "a refused request changed the feed"
    );
    let stats = n.store.stats().unwrap();
    assert_eq!(
        (
            stats.collections,
            stats.documents,
            stats.tombstones,
            stats.contents
        ),
        (1, 1, 0, 1)
    );
    let (s, d) = json(
        n.req(Method::GET, "/v1/collections/c/docs/keep")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, &d["text"], &d["metadata"]),
        (
            200,
            &serde_json::json!("kept"),
            &serde_json::json!({"k": 1})
        )
    );
}

/// A document and the batch route of [`node_with_a_document`]'s collection.
pub const DOC: &str = "/v1/collections/c/docs/x";
pub const BATCH: &str = "/v1/collections/c/docs:batch";
