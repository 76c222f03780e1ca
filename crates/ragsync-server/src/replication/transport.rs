//! The HTTP side of replication: one peer's `/v1/sync/*` and `/v1/blobs/*` over reqwest
//! (keep-alive, one client per node), answers turned into what the engine understands.

use std::time::Duration;

use ragsync_core::ContentId;
use ragsync_sync::pull::{Failure, Fetch};
use ragsync_sync::transport::Transport;
use ragsync_sync::wire::{ChangesResponse, PushAnswer, SyncInfo};
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
}

impl Transport for PeerLink {
    fn describe(&self) -> String {
        self.base.to_string()
    }

    /// The peer's identity and feed head.
    async fn info(&self) -> Result<SyncInfo, Failure> {
        let req = self
            .http
            .get(self.url(&["sync", "info"]))
            .bearer_auth(&self.token)
            .timeout(INFO_TIMEOUT);
        let resp = req.send().await.map_err(unreachable)?;
        decode(resp).await
    }

    /// One page of the peer's feed, as the engine asked for it, with its size in bytes.
    async fn fetch(&self, f: &Fetch, timeout: Duration) -> (Result<ChangesResponse, Failure>, u64) {
        let mut query = vec![
            ("since", f.since.to_string()),
            ("limit", f.limit.to_string()),
            ("wait_ms", f.wait_ms.to_string()),
        ];
        if let Some(until) = f.until {
            query.push(("until", until.to_string()));
        }
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

    /// Sends a page of this node's feed (`POST /v1/sync/changes`); the peer's answer, and the
    /// bytes sent.
    async fn push(
        &self,
        page: &ChangesResponse,
        timeout: Duration,
    ) -> (Result<PushAnswer, Failure>, u64) {
        let body = match serde_json::to_vec(page) {
            Ok(b) => b,
            Err(e) => {
                return (
                    Err(Failure::Unreachable(format!("encoding a page: {e}"))),
                    0,
                );
            }
        };
        let sent = body.len() as u64;
        let req = self
            .http
            .post(self.url(&["sync", "changes"]))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout);
        match req.send().await {
            Ok(resp) => (decode(resp).await, sent),
            Err(e) => (Err(unreachable(e)), 0),
        }
    }

    /// Uploads a content the peer wants (`PUT /v1/blobs/{cid}`). A peer that no longer wants
    /// it (another sender was first) is not a failure.
    async fn upload(&self, cid: &ContentId, bytes: Vec<u8>) -> Result<(), Failure> {
        let req = self
            .http
            .put(self.url(&["blobs", &cid.to_string()]))
            .bearer_auth(&self.token)
            .body(bytes)
            .timeout(BLOB_TIMEOUT);
        let resp = req.send().await.map_err(unreachable)?;
        match decode::<serde_json::Value>(resp).await {
            Ok(_) => Ok(()),
            Err(Failure::Refused {
                status: 409, code, ..
            }) if code == "content_not_wanted" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The bytes of content `cid` from the peer (`None` when it does not have them), read up
    /// to [`MAX_ANSWER_BYTES`]. Not checked here: the store checks them against their id.
    async fn blob(&self, cid: &ContentId) -> Result<Option<Vec<u8>>, Failure> {
        let req = self
            .http
            .get(self.url(&["blobs", &cid.to_string()]))
            .bearer_auth(&self.token)
            .timeout(BLOB_TIMEOUT);
        let resp = req.send().await.map_err(unreachable)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Failure::Refused {
                status: resp.status().as_u16(),
                code: String::new(),
                retry_after_ms: retry_after_ms(&resp),
            });
        }
        read_limited(resp).await.map(Some)
    }
}

/// How long one content may take to download or upload.
pub(crate) const BLOB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

fn unreachable(e: reqwest::Error) -> Failure {
    Failure::Unreachable(e.to_string())
}

/// Largest answer a peer may send, before and after decompression. The pull worker asks for
/// 1,000 rows a page; a row's state stays under about 20 KiB (metadata is capped at 16 KiB),
/// and a page inlines at most 16 MiB of contents, so a real page stays under 40 MiB. A peer is
/// untrusted input: past this the answer is refused, not read.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The body of `resp`, read up to [`MAX_ANSWER_BYTES`].
async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let too_large =
        || Failure::Unreachable(format!("an answer larger than {MAX_ANSWER_BYTES} bytes"));
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`decode`], for an answer that may be zstd-compressed, with the bytes of its body as they
/// arrived. Decompression stops at [`MAX_ANSWER_BYTES`] (a small page can expand to anything).
async fn decode_counted<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> (Result<T, Failure>, u64) {
    use std::io::Read;
    let zstd = resp
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"zstd"));
    let status = resp.status();
    let retry = retry_after_ms(&resp);
    let body = match read_limited(resp).await {
        Ok(b) => b,
        Err(e) => return (Err(e), 0),
    };
    let wire = body.len() as u64;
    if !zstd {
        return (decode_body(status, retry, &body), wire);
    }
    let mut plain = Vec::new();
    let inflated = zstd::stream::read::Decoder::new(&body[..])
        .and_then(|d| d.take(MAX_ANSWER_BYTES as u64 + 1).read_to_end(&mut plain));
    let answer = match inflated {
        Err(e) => Err(Failure::Unreachable(format!(
            "a page that does not decompress: {e}"
        ))),
        Ok(n) if n > MAX_ANSWER_BYTES => Err(Failure::TooLarge(format!(
            "a page larger than {MAX_ANSWER_BYTES} bytes once decompressed"
        ))),
        Ok(_) => decode_body(status, retry, &plain),
    };
    (answer, wire)
}

async fn decode<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, Failure> {
    let status = resp.status();
    let retry_after_ms = retry_after_ms(&resp);
    let bytes = read_limited(resp).await?;
    decode_body(status, retry_after_ms, &bytes)
}

/// `Retry-After` in seconds, as milliseconds.
fn retry_after_ms(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000))
}

fn decode_body<T: serde::de::DeserializeOwned>(
    status: StatusCode,
    retry_after_ms: Option<u64>,
    bytes: &[u8],
) -> Result<T, Failure> {
    if status.is_success() {
        return serde_json::from_slice(bytes)
            .map_err(|e| Failure::Unreachable(format!("an answer that does not parse: {e}")));
    }
    let code = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    if status == StatusCode::CONFLICT && code == "cursor_reset" {
        return Err(Failure::CursorReset(format!("{status} {code}")));
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Err(Failure::TooLarge(format!("{status} {code}")));
    }
    Err(Failure::Refused {
        status: status.as_u16(),
        code,
        retry_after_ms,
    })
}
