//! The HTTP client of the CLI commands: builds `/v1/...` URLs with proper percent-encoding of
//! each path segment, sends the bearer token, and turns JSON errors into [`ClientError::Api`].

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
    http: reqwest::Client,
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
            http: reqwest::Client::new(),
        })
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
        let mut req = self
            .http
            .request(method, self.url(segments))
            .bearer_auth(&self.token)
            .header(reqwest::header::IF_MATCH, format!("\"{tag}\""));
        if let Some(b) = body {
            req = req.json(b);
        }
        decode(req.send().await?).await
    }

    /// The bytes of a content, by id.
    pub async fn blob(&self, cid: &str) -> Result<Vec<u8>, ClientError> {
        let resp = self
            .http
            .get(self.url(&["blobs", cid]))
            .bearer_auth(&self.token)
            .send()
            .await?;
        if !resp.status().is_success() {
            return decode(resp).await.map(|_| Vec::new());
        }
        Ok(resp.bytes().await?.to_vec())
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
        let req = self
            .http
            .post(self.url(segments))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        decode(req.send().await?).await
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<Value, ClientError> {
        let mut req = self
            .http
            .request(method, self.url(segments))
            .bearer_auth(&self.token);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        decode(req.send().await?).await
    }
}

async fn decode(resp: reqwest::Response) -> Result<Value, ClientError> {
    let status = resp.status();
    let bytes = resp.bytes().await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Decode(format!("{status}: {e}")))?;
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
