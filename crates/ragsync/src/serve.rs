//! `ragsync serve`: open the store, build the token table, listen, and stop cleanly on
//! SIGINT or SIGTERM (in-flight requests get `shutdown_grace_ms` to finish; their
//! transactions commit or roll back).

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use ragsync_search::embed::Embedders;
use ragsync_server::auth::token_hash;
use ragsync_server::{Auth, Node, Role};
use ragsync_store::{Store, StoreOptions};
use tokio::net::TcpListener;

use crate::config::ServeConfig;

/// Store meta key of the hash of the admin token generated on first start.
const GENERATED_ADMIN_KEY: &str = "generated_admin_token_hash";
/// The line printed once the node listens; tools that start nodes wait for it.
pub const LISTENING_PREFIX: &str = "ragsync listening on ";

pub async fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    let opts = StoreOptions {
        durability: cfg.durability,
        hlc_max_drift_ms: cfg.limits.hlc_max_drift_ms,
        init_in_nonempty_dir: cfg.init,
        ..StoreOptions::default()
    };
    let mut limits = cfg.limits.clone();
    limits.max_connections = connections_that_fit(limits.max_connections);
    let data = cfg.data.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data, opts))
        .await?
        .with_context(|| format!("opening the store in {}", cfg.data.display()))?;
    let store = Arc::new(store);
    let auth = build_auth(&cfg, &store)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, node_id = %store.node_id(), "serving API v1");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{LISTENING_PREFIX}http://{addr}")?;
        out.flush()?;
    }
    ragsync_search::background::set_priority(cfg.index_priority);
    let node = if cfg.search {
        let embedders = Embedders::new(cfg.embeddings.clone());
        Node::with_embedders(store, auth, limits, embedders).context("opening the search index")?
    } else {
        Node::without_search(store, auth, limits)
    };
    node.replication
        .start_all()
        .context("starting replication from the stored peers")?;
    for peer in cfg.peers.clone() {
        tokio::spawn(adopt_peer(node.clone(), peer));
    }
    // `/mcp`'s tools call the API's routes in process (the router without `/mcp` itself).
    let mcp = crate::mcp::http_service(
        ragsync_server::router(node.clone()),
        &cfg.mcp_allowed_hosts,
        cfg.mcp_collection.clone(),
        node.limits.max_body_bytes,
    )?;
    let app = ragsync_server::router_with(node.clone(), Some(mcp));
    ragsync_server::serve_app(listener, node.clone(), app, shutdown_signal()).await?;
    node.replication.stop_all();
    tracing::info!("stopped");
    Ok(())
}

/// Configured tokens; with none, the admin token generated on first start (its secret is
/// printed once and only its hash is kept).
fn build_auth(cfg: &ServeConfig, store: &Store) -> anyhow::Result<Auth> {
    let mut auth = Auth::new();
    for t in &cfg.tokens {
        auth.add(t);
    }
    if !auth.is_empty() {
        return Ok(auth);
    }
    let hash = match store.meta(GENERATED_ADMIN_KEY)? {
        Some(h) => h
            .try_into()
            .map_err(|_| anyhow::anyhow!("stored admin token hash is not 32 bytes"))?,
        None => {
            let secret = format!("rs_{:032x}", rand::random::<u128>());
            let hash = token_hash(&secret);
            store.set_meta(GENERATED_ADMIN_KEY, &hash)?;
            println!(
                "No token configured: generated an admin token. It is shown only now; \
                 keep it (only its hash is stored):\n  RAGSYNC_TOKEN={secret}"
            );
            hash
        }
    };
    auth.add_hashed(hash, "generated-admin".into(), Role::Admin);
    Ok(auth)
}

/// How often a configured peer that could not be reached is tried again.
const CONFIGURED_PEER_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Adds a peer of the config file, trying again until it answers. A peer already known (this
/// start or an earlier one) is left as it is.
async fn adopt_peer(node: ragsync_server::AppState, peer: crate::config::PeerConfig) {
    use ragsync_server::replication::NewPeer;
    loop {
        let collections = match peer
            .collections
            .clone()
            .map(|c| {
                c.into_iter()
                    .map(ragsync_core::CollectionName::new)
                    .collect()
            })
            .transpose()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(url = %peer.url, error = %e, "configured peer has an invalid collection");
                return;
            }
        };
        let new = NewPeer {
            url: peer.url.clone(),
            token: peer.token.clone(),
            collections,
            push: peer.push,
        };
        match node.replication.add(new).await {
            Ok(v) => {
                tracing::info!(url = %peer.url, node_id = %v.node_id, "added configured peer");
                return;
            }
            Err(e) if e.code == "peer_exists" => return,
            Err(e) if e.status.is_client_error() => {
                tracing::error!(url = %peer.url, code = e.code, error = %e.message, "configured peer refused");
                return;
            }
            Err(e) => {
                tracing::warn!(url = %peer.url, error = %e.message, "configured peer not reachable; trying again");
                tokio::time::sleep(CONFIGURED_PEER_RETRY).await;
            }
        }
    }
}

/// File descriptors a node needs whatever its connections: the store's writer, the
/// listener, stdio, and slack.
const RESERVED_FDS: u64 = 64;
/// Descriptors one connection may hold: its socket, and a store read connection (SQLite's
/// database, WAL and shared-memory files) for the request it serves.
const FDS_PER_CONNECTION: u64 = 4;

/// Raises the soft limit on open files to the hard limit (many systems start processes at
/// 1,024) and returns `max_connections`, lowered (with a warning) to what that limit can
/// hold: connections must never take the descriptors the store needs to answer them.
fn connections_that_fit(max_connections: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return max_connections;
    };
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let fit = (soft.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION).max(1);
    if max_connections as u64 > fit {
        tracing::warn!(
            max_connections,
            open_files_limit = soft,
            lowered_to = fit,
            "max_connections does not fit in the open-files limit; lowered"
        );
        return fit as usize;
    }
    max_connections
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
