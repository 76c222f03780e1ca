//! The HTTP side of pulling: one peer's `/v1/sync/*` over reqwest (keep-alive, one client per
//! node), answers turned into what the engine understands.

use std::time::Duration;

use ragsync_sync::pull::{Fetch, FetchFailure};
use ragsync_sync::wire::{ChangesResponse, SyncInfo};
use reqwest::{StatusCode, Url};

/// A peer as this node reaches it.
#[derive(Clone)]
pub(crate) struct PeerLink {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) token: String,
    /// Collections asked for, comma-separated; all when `None`.
    pub(crate) collections: Option<String>,
}

/// How long an answer to a `sync/info` may take.
const INFO_TIMEOUT: Duration = Duration::from_secs(10);

impl PeerLink {
    fn url(&self, path: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push("v1").extend(path);
        }
        url
    }

    /// The peer's identity and feed head.
    pub(crate) async fn info(&self) -> Result<SyncInfo, FetchFailure> {
        let req = self
            .http
            .get(self.url(&["sync", "info"]))
            .bearer_auth(&self.token)
            .timeout(INFO_TIMEOUT);
        let resp = req.send().await.map_err(unreachable)?;
        decode(resp).await
    }

    /// One page of the peer's feed, as the engine asked for it, with its size in bytes.
    pub(crate) async fn fetch(
        &self,
        f: &Fetch,
        timeout: Duration,
    ) -> (Result<ChangesResponse, FetchFailure>, u64) {
        let mut query = vec![
            ("since", f.since.to_string()),
            ("limit", f.limit.to_string()),
            ("wait_ms", f.wait_ms.to_string()),
        ];
        if let Some(c) = &self.collections {
            query.push(("collections", c.clone()));
        }
        // Pages come compressed (zstd); decompressed here, so the bytes that crossed the
        // network can be counted.
        let req = self
            .http
            .get(self.url(&["sync", "changes"]))
            .query(&query)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT_ENCODING, "zstd")
            .timeout(timeout);
        match req.send().await {
            Ok(resp) => decode_counted(resp).await,
            Err(e) => (Err(unreachable(e)), 0),
        }
    }
}

fn unreachable(e: reqwest::Error) -> FetchFailure {
    FetchFailure::Unreachable(e.to_string())
}

/// [`decode`], for an answer that may be zstd-compressed, with the bytes of its body as they
/// arrived.
async fn decode_counted<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> (Result<T, FetchFailure>, u64) {
    let zstd = resp
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"zstd"));
    if !zstd {
        let len = resp.content_length().unwrap_or(0);
        return (decode(resp).await, len);
    }
    let status = resp.status();
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return (Err(unreachable(e)), 0),
    };
    let wire = body.len() as u64;
    let answer = zstd::stream::decode_all(&body[..])
        .map_err(|e| FetchFailure::Unreachable(format!("a page that does not decompress: {e}")))
        .and_then(|plain| decode_body(status, None, &plain));
    (answer, wire)
}

async fn decode<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, FetchFailure> {
    let status = resp.status();
    let retry_after_ms = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000));
    let bytes = resp.bytes().await.map_err(unreachable)?;
    decode_body(status, retry_after_ms, &bytes)
}

fn decode_body<T: serde::de::DeserializeOwned>(
    status: StatusCode,
    retry_after_ms: Option<u64>,
    bytes: &[u8],
) -> Result<T, FetchFailure> {
    if status.is_success() {
        return serde_json::from_slice(bytes)
            .map_err(|e| FetchFailure::Unreachable(format!("an answer that does not parse: {e}")));
    }
    let code = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    if status == StatusCode::CONFLICT && code == "cursor_reset" {
        return Err(FetchFailure::CursorReset(format!("{status} {code}")));
    }
    Err(FetchFailure::Refused {
        status: status.as_u16(),
        code,
        retry_after_ms,
    })
}
