//! Large contents leave the store a chunk at a time, as the client takes them, so that many
//! concurrent reads of a large document hold [`CHUNK_BYTES`] each in memory rather than
//! the whole content (and its JSON copy) each.
//!
//! A task reads `CHUNK_BYTES` at a time in place (SQLite incremental blob IO, each read on the
//! blocking pool) and hands them through a channel of [`CHUNKS_IN_FLIGHT`]; a slow client
//! holds no thread, and when it goes away the channel closes and the task stops. A content is immutable under its id, so reading it in
//! several transactions reads the same bytes.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Bytes;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ragsync_core::ContentId;
use tokio::sync::mpsc;

use crate::AppState;

/// Bytes read from the store at a time.
pub(crate) const CHUNK_BYTES: u64 = 1 << 20;
/// Chunks read ahead of the client.
const CHUNKS_IN_FLIGHT: usize = 2;

/// How a chunk of content is written out.
pub(crate) enum Encoding {
    /// As is.
    Raw,
    /// As the inside of a JSON string (the content is valid UTF-8; a character cut by a
    /// chunk boundary waits for the next chunk).
    JsonText { carry: Vec<u8> },
    /// As base64 (bytes past a multiple of three wait for the next chunk).
    Base64 { carry: Vec<u8> },
}

impl Encoding {
    fn encode(&mut self, chunk: Vec<u8>, last: bool) -> Result<Vec<u8>, String> {
        match self {
            Encoding::Raw => Ok(chunk),
            Encoding::JsonText { carry } => {
                carry.extend_from_slice(&chunk);
                let valid = match std::str::from_utf8(carry) {
                    Ok(_) => carry.len(),
                    Err(e) if e.error_len().is_none() && !last => e.valid_up_to(),
                    Err(e) => return Err(format!("content is not UTF-8: {e}")),
                };
                let rest = carry.split_off(valid);
                let text = std::str::from_utf8(carry).expect("checked above");
                let quoted = serde_json::to_vec(text).map_err(|e| e.to_string())?;
                *carry = rest;
                Ok(quoted[1..quoted.len() - 1].to_vec())
            }
            Encoding::Base64 { carry } => {
                carry.extend_from_slice(&chunk);
                let whole = if last {
                    carry.len()
                } else {
                    carry.len() / 3 * 3
                };
                let rest = carry.split_off(whole);
                let out = BASE64.encode(&carry[..]).into_bytes();
                *carry = rest;
                Ok(out)
            }
        }
    }
}

/// True when the stored content `cid` of `len` bytes is UTF-8, read a chunk at a time.
pub(crate) fn is_utf8(
    store: &ragsync_store::Store,
    cid: &ContentId,
    len: u64,
) -> Result<bool, ragsync_store::StoreError> {
    let mut carry = Vec::new();
    let mut at = 0;
    while at < len {
        let n = CHUNK_BYTES.min(len - at);
        let Some(chunk) = store.content_range(cid, at, n)? else {
            return Ok(false);
        };
        at += n;
        carry.extend_from_slice(&chunk);
        match std::str::from_utf8(&carry) {
            Ok(_) => carry.clear(),
            Err(e) if e.error_len().is_none() && at < len => {
                carry.drain(..e.valid_up_to());
            }
            Err(_) => return Ok(false),
        }
    }
    Ok(true)
}

/// A response body fed by a blocking reader of one content.
pub(crate) struct ContentBody {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    exact_len: Option<u64>,
}

impl ContentBody {
    /// Bytes `start..end` of `cid`, encoded, between `prefix` and `suffix`. `exact_len` is
    /// the whole body's length when the encoding keeps it known in advance.
    pub(crate) fn new(
        node: &AppState,
        cid: ContentId,
        (start, end): (u64, u64),
        mut encoding: Encoding,
        (prefix, suffix): (Vec<u8>, Vec<u8>),
        exact_len: Option<u64>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let store = node.store.clone();
        // An async task, so that a client that reads slowly holds no thread: only each
        // chunk's read runs on the blocking pool.
        tokio::spawn(async move {
            if !prefix.is_empty() && tx.send(Ok(Bytes::from(prefix))).await.is_err() {
                return;
            }
            let mut at = start;
            while at < end {
                let n = CHUNK_BYTES.min(end - at);
                let store = store.clone();
                let read =
                    tokio::task::spawn_blocking(move || store.content_range(&cid, at, n)).await;
                let chunk = match read {
                    Ok(Ok(Some(c))) if c.len() as u64 == n => Ok(c),
                    Ok(Ok(_)) => Err(format!("content {cid} ended early")),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("content read task: {e}")),
                }
                .and_then(|c| {
                    at += n;
                    encoding.encode(c, at == end)
                });
                let failed = chunk.is_err();
                if tx.send(chunk.map(Bytes::from)).await.is_err() || failed {
                    return;
                }
            }
            let _ = tx.send(Ok(Bytes::from(suffix))).await;
        });
        Self { rx, exact_len }
    }
}

impl http_body::Body for ContentBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        match self.get_mut().rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(http_body::Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => {
                // The head is sent: cutting the body is the only way left to say so.
                tracing::error!(error = %e, "content read failed mid-response");
                Poll::Ready(Some(Err(std::io::Error::other(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.exact_len {
            Some(n) => http_body::SizeHint::with_exact(n),
            None => http_body::SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut e: Encoding, input: &[u8], chunk: usize) -> Vec<u8> {
        let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            out.extend(e.encode(c.to_vec(), i + 1 == chunks.len()).unwrap());
        }
        out
    }

    #[test]
    fn chunked_encodings_equal_whole_ones() {
        let text = "héllo \"wörld\"\n\u{1F600}\\ end".repeat(7);
        for chunk in [1, 2, 3, 5, 64] {
            let json = run(Encoding::JsonText { carry: vec![] }, text.as_bytes(), chunk);
            let whole = serde_json::to_string(&text).unwrap();
            assert_eq!(json, &whole.as_bytes()[1..whole.len() - 1], "chunk {chunk}");
            let b64 = run(Encoding::Base64 { carry: vec![] }, text.as_bytes(), chunk);
            assert_eq!(b64, BASE64.encode(text.as_bytes()).into_bytes());
        }
        let mut e = Encoding::JsonText { carry: vec![] };
        assert!(e.encode(vec![0xff, b'a'], true).is_err());
    }
}
