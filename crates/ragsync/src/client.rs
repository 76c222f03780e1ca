//! The HTTP client of the CLI commands: builds `/v1/...` URLs with proper percent-encoding of
//! each path segment, sends the bearer token, and turns JSON errors into [`ClientError::Api`].
//!
//! A node's own `/mcp` uses it too, with its requests dispatched into the node's router in
//! process ([`Client::in_process`]): the same routes, token check and limits, without a
//! second HTTP round trip over loopback.

use bytes::Bytes;
use clap::Args;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

/// `--url` and `--token` of the client commands.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the node.
    #[arg(long, env = "RAGSYNC_URL", default_value = "http://127.0.0.1:7070")]
    pub url: String,
    /// Bearer token.
    #[arg(long, env = "RAGSYNC_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Debug, Error)]
pub enum ClientError {
    /// The node refused the request.
    #[error("{status} {code}: {message}")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        /// Which item of a batch was refused, when one was.
        index: Option<usize>,
    },
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("bad response: {0}")]
    Decode(String),
}

impl ClientError {
    /// The API error code, when the node answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Page size of [`Client::list_docs`].
const LIST_PAGE_ROWS: usize = 10_000;

#[derive(Clone)]
pub struct Client {
    base: Url,
    token: String,
    transport: Transport,
}

/// Where requests go.
#[derive(Clone)]
enum Transport {
    Http(reqwest::Client),
    /// A node's own router, called in process.
    Router(axum::Router),
}

/// One request, as both transports send it.
struct Exchange<'a> {
    method: Method,
    url: Url,
    if_match: Option<&'a str>,
    json: Option<Vec<u8>>,
}

impl Client {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Self> {
        let base = Url::parse(&args.url)
            .map_err(|e| anyhow::anyhow!("invalid --url {:?}: {e}", args.url))?;
        if base.cannot_be_a_base() {
            anyhow::bail!("invalid --url {:?}: not a base URL", args.url);
        }
        Ok(Self {
            base,
            token: args.token.clone(),
            transport: Transport::Http(reqwest::Client::new()),
        })
    }

    /// A client whose requests `router` (a node's API) answers in process, with no token of
    /// its own (see [`Client::with_token`]).
    pub fn in_process(router: axum::Router) -> Self {
        Self {
            base: Url::parse("http://in-process/").expect("a valid URL"),
            token: String::new(),
            transport: Transport::Router(router),
        }
    }

    /// The same node and connection pool, with another bearer token.
    pub fn with_token(&self, token: String) -> Self {
        Self {
            token,
            ..self.clone()
        }
    }

    /// `base/v1/<segments...>`, each segment percent-encoded (a `/` inside becomes `%2F`).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("checked in new");
            path.pop_if_empty().push("v1");
            path.extend(segments);
        }
        url
    }

    pub async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        self.send(Method::GET, segments, query, None::<&()>).await
    }

    /// [`Client::get`], with `None` for a 404.
    pub async fn get_opt(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Option<Value>, ClientError> {
        match self.get(segments, query).await {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Api { status, .. }) if status == StatusCode::NOT_FOUND => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn put<B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<Value, ClientError> {
        self.send(Method::PUT, segments, &[], Some(body)).await
    }

    pub async fn post<B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<Value, ClientError> {
        self.send(Method::POST, segments, &[], Some(body)).await
    }

    pub async fn delete(&self, segments: &[&str]) -> Result<Value, ClientError> {
        self.send(Method::DELETE, segments, &[], None::<&()>).await
    }

    /// A write (`PUT` with `body`, or `DELETE` when `body` is `None`) that applies only if the
    /// document is still at version `tag` (`If-Match`).
    pub async fn write_if_match(
        &self,
        segments: &[&str],
        body: Option<&Value>,
        tag: &str,
    ) -> Result<Value, ClientError> {
        let method = if body.is_some() {
            Method::PUT
        } else {
            Method::DELETE
        };
        let (status, bytes) = self
            .exchange(Exchange {
                method,
                url: self.url(segments),
                if_match: Some(tag),
                json: body.map(to_json).transpose()?,
            })
            .await?;
        decode(status, &bytes)
    }

    /// The bytes of a content, by id.
    pub async fn blob(&self, cid: &str) -> Result<Vec<u8>, ClientError> {
        let (status, bytes) = self
            .exchange(Exchange {
                method: Method::GET,
                url: self.url(&["blobs", cid]),
                if_match: None,
                json: None,
            })
            .await?;
        if !status.is_success() {
            return decode(status, &bytes).map(|_| Vec::new());
        }
        Ok(bytes.to_vec())
    }

    /// Every live document of `collection` as the list endpoint shows it (no content), read a
    /// page at a time.
    pub async fn list_docs(&self, collection: &str) -> Result<Vec<Value>, ClientError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut q = vec![("limit", LIST_PAGE_ROWS.to_string())];
            if let Some(a) = after.take() {
                q.push(("after", a));
            }
            let page = self.get(&["collections", collection, "docs"], &q).await?;
            if let Some(docs) = page["docs"].as_array() {
                out.extend(docs.iter().cloned());
            }
            match page["next_after"].as_str() {
                Some(a) if page["has_more"] == Value::Bool(true) => after = Some(a.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Posts a body that is already JSON bytes (the benchmark builds them before timing).
    pub async fn post_raw(&self, segments: &[&str], body: Vec<u8>) -> Result<Value, ClientError> {
        let (status, bytes) = self
            .exchange(Exchange {
                method: Method::POST,
                url: self.url(segments),
                if_match: None,
                json: Some(body),
            })
            .await?;
        decode(status, &bytes)
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<Value, ClientError> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let json = body.map(to_json).transpose()?;
        let (status, bytes) = self
            .exchange(Exchange {
                method,
                url,
                if_match: None,
                json,
            })
            .await?;
        decode(status, &bytes)
    }

    /// Sends one request with the bearer token; the answer's status and whole body.
    async fn exchange(&self, x: Exchange<'_>) -> Result<(StatusCode, Bytes), ClientError> {
        use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
        let bearer = format!("Bearer {}", self.token);
        let if_match = x.if_match.map(|tag| format!("\"{tag}\""));
        match &self.transport {
            Transport::Http(http) => {
                let mut req = http.request(x.method, x.url).header(AUTHORIZATION, bearer);
                if let Some(tag) = if_match {
                    req = req.header(IF_MATCH, tag);
                }
                if let Some(body) = x.json {
                    req = req.header(CONTENT_TYPE, "application/json").body(body);
                }
                let resp = req.send().await?;
                let status = resp.status();
                Ok((status, resp.bytes().await?))
            }
            Transport::Router(router) => {
                use tower::ServiceExt;
                let target = match x.url.query() {
                    Some(q) => format!("{}?{q}", x.url.path()),
                    None => x.url.path().to_string(),
                };
                let mut req = axum::http::Request::builder()
                    .method(x.method)
                    .uri(target)
                    .header(AUTHORIZATION, bearer);
                if let Some(tag) = if_match {
                    req = req.header(IF_MATCH, tag);
                }
                let body = match x.json {
                    Some(b) => {
                        req = req.header(CONTENT_TYPE, "application/json");
                        axum::body::Body::from(b)
                    }
                    None => axum::body::Body::empty(),
                };
                let req = req
                    .body(body)
                    .map_err(|e| ClientError::Decode(format!("building a request: {e}")))?;
                let resp = router
                    .clone()
                    .oneshot(req)
                    .await
                    .unwrap_or_else(|never| match never {});
                let status = resp.status();
                let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .map_err(|e| ClientError::Decode(format!("{status}: {e}")))?;
                Ok((status, bytes))
            }
        }
    }
}

fn to_json<B: Serialize + ?Sized>(body: &B) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body).map_err(|e| ClientError::Decode(format!("encoding a body: {e}")))
}

fn decode(status: StatusCode, bytes: &[u8]) -> Result<Value, ClientError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode(format!("{status}: {e}")))?;
    if status.is_success() {
        return Ok(value);
    }
    let field = |k: &str| value["error"][k].as_str().unwrap_or_default().to_string();
    Err(ClientError::Api {
        status,
        code: field("code"),
        message: field("message"),
        index: value["error"]["index"].as_u64().map(|i| i as usize),
    })
}
