//! The HTTP API v1 of a ragsync node (axum). Handlers translate between JSON and store calls;
//! they hold no business logic.
//!
//! Invariants at this boundary:
//! - every route but `GET /v1/health` needs a bearer token ([`auth`]);
//! - a request body larger than `max_body_bytes` is refused with 413 before it is read;
//! - every refusal is `{"error": {"code", "message"}}` with a stable code ([`error`]);
//! - input is validated completely before the store is called, and the store applies a
//!   request in one transaction, so a refused request changes nothing.

pub mod auth;
mod conns;
mod early_refusals;
pub mod error;
pub mod extract;
mod listen;
mod par;
pub mod replication;
mod routes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use ragsync_core::Limits;
use ragsync_search::embed::Embedders;
use ragsync_search::{IndexError, SearchIndex};
use ragsync_store::{Store, StoreError};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

pub use auth::{Auth, Role, TokenSpec};
pub use error::ApiError;
pub use listen::{ACCEPT_BACKOFF, serve, serve_app};

/// Most writes handed to the blocking pool at once. A write waits there for the store's
/// writer (and is committed with others waiting, see the store's group commit); more would
/// only take threads that reads and feed pages need. Further writes wait here, holding none.
pub const MAX_WRITES_IN_BLOCKING_POOL: usize = 64;
/// The search index's directory inside the data directory.
pub const SEARCH_DIR: &str = "search";

/// What every handler can reach.
pub struct Node {
    pub store: Arc<Store>,
    pub auth: Auth,
    pub limits: Limits,
    pub started: Instant,
    writes: tokio::sync::Semaphore,
    /// Set when the node starts to shut down: long-polls answer at once.
    pub(crate) closing: tokio::sync::watch::Sender<bool>,
    /// The peers this node pulls from, and their workers.
    pub replication: replication::Replication,
    /// The BM25 index, kept up from the store's feed by a task `Node::new` starts; `None` on
    /// a node that keeps none.
    pub search: Option<Arc<SearchIndex>>,
}

pub type AppState = Arc<Node>;

impl Node {
    /// The node of `store`: opens its search index (in `<data>/search`) and starts the task
    /// that keeps it up, which stops when the node closes. Call within a Tokio runtime.
    pub fn new(store: Arc<Store>, auth: Auth, limits: Limits) -> Result<AppState, IndexError> {
        Self::with_embedders(store, auth, limits, Embedders::default())
    }

    /// [`Node::new`] with the embedding models this node runs (the built-in one always; an
    /// OpenAI-compatible endpoint when configured). A task embeds the chunks that lack
    /// vectors, apart from the indexer.
    pub fn with_embedders(
        store: Arc<Store>,
        auth: Auth,
        limits: Limits,
        embedders: Embedders,
    ) -> Result<AppState, IndexError> {
        let search = Arc::new(SearchIndex::open(
            store.clone(),
            &store.dir().join(SEARCH_DIR),
            Arc::new(embedders),
        )?);
        Ok(Self::build(store, auth, limits, Some(search)))
    }

    /// A node that keeps no search index (a relay that only stores and replicates): queries
    /// are refused with `search_disabled`.
    pub fn without_search(store: Arc<Store>, auth: Auth, limits: Limits) -> AppState {
        Self::build(store, auth, limits, None)
    }

    fn build(
        store: Arc<Store>,
        auth: Auth,
        limits: Limits,
        search: Option<Arc<SearchIndex>>,
    ) -> AppState {
        let closing = tokio::sync::watch::Sender::new(false);
        if let Some(s) = &search {
            tokio::spawn(s.clone().run(closing.subscribe()));
            tokio::spawn(s.clone().run_embedder(closing.subscribe()));
        }
        Arc::new(Self {
            replication: replication::Replication::new(store.clone()),
            store,
            auth,
            limits,
            started: Instant::now(),
            writes: tokio::sync::Semaphore::new(MAX_WRITES_IN_BLOCKING_POOL),
            closing,
            search,
        })
    }

    pub(crate) async fn writing<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _turn = self
            .writes
            .acquire()
            .await
            .map_err(|_| ApiError::internal("the write queue is closed"))?;
        self.blocking(f).await
    }

    /// Runs a blocking store call off the async workers.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.blocking_with(f).await?.map_err(ApiError::from)
    }

    /// Runs `f` on the blocking pool; the outer error is the task's failure.
    pub(crate) async fn blocking_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ApiError::internal(format!("store task failed: {e}")))
    }
}

/// The router of API v1.
pub fn router(state: AppState) -> Router {
    router_with(state, None)
}

/// The router of API v1, with `mcp` (the MCP service) at `/mcp` behind the same token check,
/// body limits and tracing as every other authenticated route.
pub fn router_with(state: AppState, mcp: Option<Router>) -> Router {
    let max_body = state.limits.max_body_bytes;
    let mut authed = routes::authed();
    if let Some(mcp) = mcp {
        authed = authed.nest_service("/mcp", mcp);
    }
    let authed = authed.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    Router::new()
        .merge(routes::public())
        .merge(authed)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(RequestBodyTimeoutLayer::new(Duration::from_millis(
            state.limits.body_read_timeout_ms,
        )))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_large_bodies,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Refuses a request whose declared length is over `max_body_bytes` before reading any of it.
/// Bodies without a length are cut at the same limit while they are read (`DefaultBodyLimit`).
async fn refuse_large_bodies(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.limits.max_body_bytes as u64) {
        return Err(ApiError::too_large(
            "body_too_large",
            format!(
                "request body of {} bytes exceeds max_body_bytes ({})",
                declared.unwrap_or_default(),
                state.limits.max_body_bytes
            ),
        ));
    }
    Ok(next.run(req).await)
}
