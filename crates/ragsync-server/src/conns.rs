//! Open connections and which of them may be closed to make room.
//!
//! A connection is *waiting* when no request of it is in the router, no response of it is
//! being produced or written, and it has been quiet for [`MIN_QUIET`]: it is idle between
//! requests or still sending a request head. It is *stalled* when its client has taken no
//! byte of a response for the stall limit (`header_read_timeout_ms`): a client that sends
//! requests and never reads the answers. When the node is at `max_connections`, or out of
//! file descriptors, the accept loop asks the connection that has waited (or stalled)
//! longest to close, so that connections which never finish cannot lock out one that would.
//! The connection's own task checks again, between two polls of the connection, that it is
//! still waiting or stalled before it closes: a connection that started a request in the
//! meantime is never closed this way.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a connection must have been quiet before it can be closed to make room: longer
/// than the gap between hyper taking a response's last frame and writing it.
pub(crate) const MIN_QUIET: Duration = Duration::from_millis(10);

/// What the accept loop knows of one connection.
pub(crate) struct Conn {
    /// Requests in the router plus responses not yet fully taken by hyper.
    active: AtomicU64,
    /// A write is waiting for the socket (a slow reader of a response).
    write_blocked: AtomicBool,
    /// When it last made progress, in ms since `epoch`.
    quiet_since_ms: AtomicU64,
    epoch: Instant,
    /// How long a blocked write may make no progress before the connection counts as stalled.
    stall_ms: u64,
    /// Notified to close the connection.
    pub(crate) close: Notify,
}

impl Conn {
    fn new(epoch: Instant, stall_ms: u64) -> Self {
        let c = Self {
            active: AtomicU64::new(0),
            write_blocked: AtomicBool::new(false),
            quiet_since_ms: AtomicU64::new(0),
            epoch,
            stall_ms,
            close: Notify::new(),
        };
        c.touch();
        c
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.quiet_since_ms.store(now, Ordering::Release);
    }

    /// True when no request of this connection is in the router and no response body of it
    /// is being produced.
    pub(crate) fn is_idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    /// A request reached the router; pair with the drop of [`TrackedBody`].
    pub(crate) fn request_started(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.touch();
    }

    fn response_done(&self) {
        self.touch();
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    /// Since when it has been waiting or stalled (see the module docs), or `None` when it is
    /// busy and may not be closed.
    pub(crate) fn closable_since_ms(&self) -> Option<u64> {
        // The flags first: a progress mark read before them could be older than a request
        // that just ended, and pass for a long wait.
        let active = self.active.load(Ordering::Acquire);
        let blocked = self.write_blocked.load(Ordering::Acquire);
        let since = self.quiet_since_ms.load(Ordering::Acquire);
        let quiet = (self.epoch.elapsed().as_millis() as u64).saturating_sub(since);
        let waiting = active == 0 && !blocked && quiet >= MIN_QUIET.as_millis() as u64;
        let stalled = blocked && quiet >= self.stall_ms;
        (waiting || stalled).then_some(since)
    }
}

/// Every open connection, by a number of its own.
#[derive(Clone)]
pub(crate) struct Registry {
    conns: Arc<Mutex<HashMap<u64, Arc<Conn>>>>,
    next: Arc<AtomicU64>,
    epoch: Instant,
    stall_ms: u64,
}

impl Registry {
    /// A registry whose connections count as stalled after `stall` without write progress.
    pub(crate) fn new(stall: Duration) -> Self {
        Self {
            conns: Arc::default(),
            next: Arc::default(),
            epoch: Instant::now(),
            stall_ms: stall.as_millis() as u64,
        }
    }

    /// Registers a new connection; it leaves the registry when the guard is dropped.
    pub(crate) fn open(&self) -> (Arc<Conn>, Registered) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(self.epoch, self.stall_ms));
        self.lock().insert(id, conn.clone());
        (
            conn,
            Registered {
                registry: self.clone(),
                id,
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the connection that has waited (or stalled) longest to close. False when none
    /// may be closed.
    pub(crate) fn close_longest_waiting(&self) -> bool {
        let victim = self
            .lock()
            .values()
            .filter_map(|c| c.closable_since_ms().map(|since| (since, c.clone())))
            .min_by_key(|(since, _)| *since);
        match victim {
            Some((_, c)) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from the registry when dropped.
pub(crate) struct Registered {
    registry: Registry,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

/// A response body that marks its connection busy until hyper has taken all of it.
pub(crate) struct TrackedBody {
    inner: Body,
    conn: Arc<Conn>,
}

impl TrackedBody {
    pub(crate) fn new(inner: Body, conn: Arc<Conn>) -> Self {
        Self { inner, conn }
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.conn.response_done();
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        this.conn.touch();
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that records whether it was read to its end.
///
/// A handler may answer without reading the body (a refusal before it, an unknown route).
/// hyper then drains what is already buffered and, if more is still to come, closes the
/// connection after the response, which it has already announced as kept alive: a client that
/// sends its next request on that connection sees it closed without an answer. The service
/// marks such a response `Connection: close` instead (see [`crate::listen`]).
pub(crate) struct ReadToEnd<B> {
    inner: B,
    done: Arc<AtomicBool>,
}

impl<B: http_body::Body> ReadToEnd<B> {
    /// The body, and the flag that turns true once it has been read to its end.
    pub(crate) fn new(inner: B) -> (Self, Arc<AtomicBool>) {
        let done = Arc::new(AtomicBool::new(inner.is_end_stream()));
        (
            Self {
                inner,
                done: done.clone(),
            },
            done,
        )
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for ReadToEnd<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.done.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's IO that records progress and blocked writes on its [`Conn`].
pub(crate) struct TrackedIo<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> TrackedIo<S> {
    pub(crate) fn new(inner: S, conn: Arc<Conn>) -> Self {
        Self { inner, conn }
    }

    fn note<T>(&self, p: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let blocked = p.is_pending();
        self.conn.write_blocked.store(blocked, Ordering::Release);
        if !blocked {
            self.conn.touch();
        }
        p
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Reading a request head is not progress: a client sending half a head byte by byte
        // stays a waiting connection.
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note(p)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note(p)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_flush(cx);
        this.note(p)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
