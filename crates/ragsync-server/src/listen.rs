//! Accepting and serving connections, within named limits.
//!
//! Invariants:
//! - at most `max_connections` connections are open; when one more arrives at that cap, or
//!   file descriptors run out, the connection that has waited longest for a request (or
//!   whose client has taken nothing for `header_read_timeout_ms`) is closed to make room
//!   (never one busy with a request, see [`crate::conns`]); when none qualifies, new
//!   connections wait;
//! - a connection that has not sent a complete request head within `header_read_timeout_ms`
//!   (including a kept-alive one idle between requests) is closed, and a request body that
//!   pauses for `body_read_timeout_ms` is refused with 408 (see [`crate::router`]);
//! - an accept error never stops the loop and never makes it spin: running out of file
//!   descriptors closes a waiting connection, or else backs off for [`ACCEPT_BACKOFF`];
//! - after the shutdown signal no connection is accepted, requests in flight get
//!   `shutdown_grace_ms` to finish, and whatever is still open then is closed. A request's
//!   store transaction either committed before its answer was sent or rolls back, so closing
//!   a connection never undoes an acknowledged write.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::AppState;
use crate::conns::{Conn, ReadToEnd, Registry, TrackedBody, TrackedIo};
use crate::early_refusals::JsonRefusals;

/// Pause after an accept error other than a refused connection (file descriptors or memory
/// exhausted), so the loop waits for resources instead of spinning on the error.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the API on `listener` until `shutdown` resolves; then stops accepting, lets
/// requests in flight finish for up to `shutdown_grace_ms`, and closes what remains.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = crate::router(state.clone());
    serve_app(listener, state, app, shutdown).await
}

/// [`serve`] with `app`, the node's router (from [`crate::router_with`]).
pub async fn serve_app(
    listener: TcpListener,
    state: AppState,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = state.limits.clone();
    let node = state;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let (close_all, closed) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms));
    let registry = Registry::new(Duration::from_millis(limits.header_read_timeout_ms));
    let mut errors = AcceptErrors::default();
    tokio::pin!(shutdown);
    'accepting: loop {
        let stream = tokio::select! {
            biased;
            _ = &mut shutdown => break 'accepting,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    errors.failed(e, &registry).await;
                    continue;
                }
            },
        };
        // A connection is here: find it a slot, making room at the cap (or look again
        // shortly: a connection may start waiting).
        let mut warned = false;
        let slot = loop {
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                break slot;
            }
            let made_room = registry.close_longest_waiting();
            if !made_room && !warned {
                warned = true;
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached and every connection is busy; new ones wait"
                );
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => break 'accepting,
                slot = slots.clone().acquire_owned() => break slot.expect("never closed"),
                _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
            }
        };
        let _ = stream.set_nodelay(true);
        let (conn, registered) = registry.open();
        let io = TrackedIo::new(stream, conn.clone());
        let io = TokioIo::new(JsonRefusals::new(io, conn.clone()));
        let svc = service(app.clone(), conn.clone());
        let serving = graceful.watch(http.serve_connection(io, svc));
        let mut closed = closed.clone();
        tokio::spawn(async move {
            tokio::pin!(serving);
            loop {
                tokio::select! {
                    biased;
                    _ = closed.wait_for(|c| *c) => break,
                    _ = conn.close.notified() => {
                        // Between two polls of the connection nothing in it moves: if it is
                        // still waiting or stalled now, closing it interrupts no request.
                        if conn.closable_since_ms().is_some() {
                            tracing::debug!("closed a waiting connection to make room");
                            break;
                        }
                    }
                    r = &mut serving => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                }
            }
            drop((registered, slot));
        });
    }
    drop(listener);
    // Long-polls answer now rather than hold the shutdown for their wait.
    node.closing.send_replace(true);
    let open = limits.max_connections - slots.available_permits();
    tracing::info!(open, "stopped accepting connections");
    let grace = Duration::from_millis(limits.shutdown_grace_ms);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        let open = limits.max_connections - slots.available_permits();
        tracing::warn!(open, "shutdown grace period over; closing open connections");
        let _ = close_all.send(true);
    }
    Ok(())
}

/// The router as a hyper service for one connection. It keeps the connection busy from the
/// moment a request reaches the router until its response is taken whole (see
/// [`crate::conns`]; [`JsonRefusals`] relies on it too).
fn service(
    app: Router,
    conn: Arc<Conn>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::http::Response<TrackedBody>,
    Error = std::convert::Infallible,
    Future = impl Future + Send,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        conn.request_started();
        let (app, conn) = (app.clone(), conn.clone());
        async move {
            let (parts, body) = req.into_parts();
            let (body, read_to_end) = ReadToEnd::new(body);
            let req = Request::from_parts(parts, axum::body::Body::new(body));
            let mut resp = app.oneshot(req).await?;
            if !read_to_end.load(Ordering::Relaxed) {
                // Answered without reading the whole body: hyper will close the connection
                // rather than read the rest, so say so, and the client will not reuse it.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(resp.map(|body| TrackedBody::new(body, conn)))
        }
    })
}

/// How often a run of accept errors is logged.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Accept errors, logged at most every [`ACCEPT_ERROR_LOG_EVERY`] with a count.
#[derive(Default)]
struct AcceptErrors {
    logged_at: Option<tokio::time::Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    async fn failed(&mut self, e: io::Error, registry: &Registry) {
        // A connection that was reset before it was accepted concerns that client only.
        if matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
        ) {
            return;
        }
        self.unlogged += 1;
        if self
            .logged_at
            .is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_EVERY)
        {
            tracing::warn!(
                error = %e,
                failures = self.unlogged,
                "accept failed; closing connections that wait for nothing, or backing off"
            );
            self.logged_at = Some(tokio::time::Instant::now());
            self.unlogged = 0;
        }
        // Out of descriptors (or memory): free one held by a connection that waits for
        // nothing, or wait for one to close.
        let pause = if registry.close_longest_waiting() {
            crate::conns::MIN_QUIET
        } else {
            ACCEPT_BACKOFF
        };
        tokio::time::sleep(pause).await;
    }
}
