//! JSON bodies for the refusals hyper makes by itself.
//!
//! hyper answers a request it cannot parse (a bad or conflicting `Content-Length`, a request
//! target over 64 KiB, oversized headers) before any service sees it, with an empty body,
//! then closes the connection; it offers no hook to shape that answer. [`JsonRefusals`] wraps
//! a connection's IO and replaces such an answer with the API's error shape
//! (`{"error": {"code", "message"}}`), keeping its status and `Date`.
//!
//! Only a write that starts while the connection is *clean* is ever replaced: no request of it
//! is in the router or has a response being produced ([`Conn::is_idle`]), and every byte of
//! its earlier responses was written and flushed (hyper flushes a response whole before it
//! reads the next request, and answers a malformed one only then). The bytes of such a write
//! can only be hyper's own, never part of a response body (a stored blob may contain anything,
//! HTTP heads included). The connection's IO, its service and its bodies all run in the
//! connection's one task, so these states cannot interleave.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conns::Conn;
use crate::error::error_body;

/// A connection's IO that rewrites hyper's own refusal as a JSON error.
pub(crate) struct JsonRefusals<S> {
    inner: S,
    conn: Arc<Conn>,
    /// Nothing was written since the last flush that completed while the connection was idle
    /// (or since it opened): a write now starts a new answer that no request asked for.
    clean: bool,
    /// The rewritten answer and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> JsonRefusals<S> {
    pub(crate) fn new(inner: S, conn: Arc<Conn>) -> Self {
        Self {
            inner,
            conn,
            clean: true,
            pending: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> JsonRefusals<S> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
            if *done == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as a rewritten refusal when it is one; see the module docs.
    fn take_refusal(&mut self, buf: &[u8]) -> bool {
        if !self.clean || !self.conn.is_idle() {
            return false;
        }
        self.clean = false;
        match rewrite(buf) {
            Some(json) => {
                self.pending = Some((json, 0));
                true
            }
            None => false,
        }
    }
}

/// hyper's refusal `head` (a status line and headers with `content-length: 0`, nothing else)
/// as a JSON error, or `None` when `head` is anything else.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return None,
    }
    let status = StatusCode::from_u16(parsed.code?).ok()?;
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if !(status.is_client_error() || status.is_server_error())
        || header("content-length") != Some(b"0")
    {
        return None;
    }
    let (code, message) = match status {
        StatusCode::URI_TOO_LONG => (
            "uri_too_long",
            "the request target is longer than the 65,534 bytes a node reads",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            "the request headers are larger than a node reads",
        ),
        _ => (
            "invalid_request",
            "the request is not valid HTTP/1.1: its request line, a header, or its framing \
             (Content-Length, Transfer-Encoding) could not be read",
        ),
    };
    let body = serde_json::to_vec(&error_body(code, message)).ok()?;
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    )
    .into_bytes();
    if let Some(date) = header("date") {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonRefusals<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if this.take_refusal(buf) {
            // Taken whole; the rewrite goes out now or on the flush hyper does next.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        this.clean = false;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next()) {
            return self.poll_write(cx, only);
        }
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        this.clean = false;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let flushed = ready!(Pin::new(&mut this.inner).poll_flush(cx));
        if flushed.is_ok() && this.conn.is_idle() {
            this.clean = true;
        }
        Poll::Ready(flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_error_head_is_rewritten() {
        let hyper_refusal = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Mon, 23 Nov 2026 10:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(hyper_refusal).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
        assert!(out.contains("date: Mon, 23 Nov 2026 10:00:00 GMT\r\n"));
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "uri_too_long");
        for other in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\ntrailing",
            b"HTTP/1.1 400 Bad Req",
            b"{\"json\": 1}",
        ] {
            assert_eq!(rewrite(other), None, "{:?}", String::from_utf8_lossy(other));
        }
    }
}
