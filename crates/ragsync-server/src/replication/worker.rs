//! One peer's pull worker: drives the engine's [`Puller`] with real time, HTTP and the store,
//! and publishes its status. It stops when told to, dropping what is in flight: the store
//! keeps the cursor of every page it applied.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ragsync_core::{ContentId, NodeId};
use ragsync_store::Store;
use ragsync_sync::apply::apply_page;
use ragsync_sync::pull::{
    Action, ApplyOutcome, Backoff, Failure, Fetch, PullConfig, PullStatus, Puller,
};
use ragsync_sync::wire::ChangesResponse;
use tokio::sync::{Notify, mpsc, watch};

use ragsync_sync::transport::Transport;

/// How pulls are paced on a live node.
pub(crate) const PULL_CONFIG: PullConfig = PullConfig {
    page_rows: 1000,
    wait_ms: 25_000,
    request_timeout_ms: 15_000,
    backoff: Backoff {
        base_ms: 250,
        max_ms: 30_000,
    },
    pages_ahead: 4,
};

/// What came back from work the worker started.
enum Done {
    Fetched(u64, Result<ChangesResponse, Failure>, u64),
    Applied(u64, ApplyOutcome),
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) struct Worker<T> {
    pub(crate) peer: NodeId,
    pub(crate) store: Arc<Store>,
    pub(crate) link: T,
    pub(crate) status: Arc<Mutex<PullStatus>>,
    pub(crate) nudge: Arc<Notify>,
    pub(crate) stop: watch::Receiver<bool>,
}

/// The status a peer's pull worker starts with (from its stored cursor).
pub(crate) fn new_pull_status(store: &Store, peer: NodeId) -> PullStatus {
    let cursor = store
        .cursor(peer)
        .ok()
        .flatten()
        .map(|c| (c.epoch, c.since));
    Puller::new(PULL_CONFIG, peer, cursor, 0).status().clone()
}

impl<T: Transport> Worker<T> {
    pub(crate) async fn run(mut self) {
        let cursor = match self.store.cursor(self.peer) {
            Ok(c) => c.map(|c| (c.epoch, c.since)),
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "cannot read the peer's cursor");
                return;
            }
        };
        let mut puller = Puller::new(PULL_CONFIG, self.peer, cursor, rand::random());
        let (done_tx, mut done) = mpsc::channel::<Done>(4);
        let wanted = Arc::new(Notify::new());
        let fetcher = tokio::spawn(fetch_wanted(
            self.store.clone(),
            self.link.clone(),
            wanted.clone(),
        ));
        wanted.notify_one();
        // The page being applied: the worker does not end before it is written.
        let mut applying: Option<tokio::task::JoinHandle<()>> = None;
        tracing::info!(peer = %self.peer, url = %self.link.describe(), "pulling from peer");
        loop {
            let now = now_ms();
            while let Some(action) = puller.poll(now) {
                match action {
                    Action::Fetch(f) => self.fetch(f, done_tx.clone()),
                    Action::Apply { id, page } => {
                        applying = Some(self.apply(id, page, done_tx.clone()));
                    }
                }
            }
            *self.status.lock().unwrap_or_else(|e| e.into_inner()) = puller.status().clone();
            let sleep = puller.wake_at_ms().map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(now))
            });
            tokio::select! {
                Some(d) = done.recv() => match d {
                    Done::Fetched(id, answer, bytes) => {
                        puller.note_bytes(bytes);
                        puller.on_fetched(now_ms(), id, answer);
                    }
                    Done::Applied(id, outcome) => {
                        if outcome.changed > 0 {
                            wanted.notify_one();
                        }
                        puller.on_applied(now_ms(), id, outcome);
                    }
                },
                _ = tokio::time::sleep(sleep) => {}
                _ = self.nudge.notified() => puller.nudge(),
                _ = self.stop.wait_for(|s| *s) => break,
            }
        }
        fetcher.abort();
        if let Some(a) = applying {
            drop(done);
            let _ = a.await;
        }
        tracing::info!(peer = %self.peer, "stopped pulling from peer");
    }

    fn fetch(&self, f: Fetch, done: mpsc::Sender<Done>) {
        let link = self.link.clone();
        let timeout = Duration::from_millis(f.wait_ms + PULL_CONFIG.request_timeout_ms);
        tokio::spawn(async move {
            let (answer, bytes) = link.fetch(&f, timeout).await;
            let _ = done.send(Done::Fetched(f.id, answer, bytes)).await;
        });
    }

    fn apply(
        &self,
        id: u64,
        page: ChangesResponse,
        done: mpsc::Sender<Done>,
    ) -> tokio::task::JoinHandle<()> {
        let (store, peer) = (self.store.clone(), self.peer);
        tokio::spawn(async move {
            let outcome = tokio::task::spawn_blocking(move || apply_page(&store, peer, page))
                .await
                .unwrap_or_else(|e| ApplyOutcome {
                    cursor: 0,
                    changed: 0,
                    parked: 0,
                    stopped: Some(format!("apply task: {e}")),
                });
            let _ = done.send(Done::Applied(id, outcome)).await;
        })
    }
}

/// How often wanted contents are looked for without being told.
const WANTED_EVERY: Duration = Duration::from_secs(30);
/// The first wait before contents the peer did not have are asked for again; it doubles up
/// to [`WANTED_EVERY`]. A peer that relays a large content (it is fetching it too) usually
/// has it within seconds.
const WANTED_RETRY: Duration = Duration::from_secs(1);
/// Wanted contents asked for at a time.
const WANTED_BATCH: usize = 32;

/// Fetches, from this worker's peer, the contents that replicated states reference and this
/// node does not hold yet; the store keeps only bytes that hash to their id and are wanted.
async fn fetch_wanted<T: Transport>(store: Arc<Store>, link: T, wake: Arc<Notify>) {
    // `backoff`: the wait after a sweep of the wanted contents that stored nothing; `after`:
    // where the next pass starts, so contents this peer lacks do not hide the others.
    let (mut backoff, mut after): (Option<Duration>, Option<ContentId>) = (None, None);
    let mut wait = WANTED_EVERY;
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        let s = store.clone();
        let from = after;
        let Ok(Ok(wanted)) =
            tokio::task::spawn_blocking(move || s.wanted(from, WANTED_BATCH)).await
        else {
            wait = wait.max(WANTED_RETRY);
            continue;
        };
        let full = wanted.len() == WANTED_BATCH;
        after = if full {
            wanted.last().map(|(c, _)| *c)
        } else {
            None
        };
        let left = !wanted.is_empty() || from.is_some();
        let (mut stored_any, mut failed) = (false, false);
        for (cid, _) in wanted {
            match link.blob(&cid).await {
                Ok(Some(bytes)) => {
                    let s = store.clone();
                    let stored = tokio::task::spawn_blocking(move || s.put_wanted(&bytes)).await;
                    match stored {
                        Ok(Ok(true)) => stored_any = true,
                        Ok(Ok(false)) => tracing::warn!(
                            target: "ragsync::audit",
                            %cid,
                            url = %link.describe(),
                            "a peer sent bytes that are not the content asked for; not stored"
                        ),
                        other => tracing::warn!(%cid, ?other, "storing a fetched content failed"),
                    }
                }
                // Not there (yet): another peer, or a later pass, will bring it.
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(%cid, error = ?e, "fetching a wanted content failed");
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            // This page again, after the backoff.
            after = from;
        }
        // The rest of a sweep, or another after one that brought something, comes at once;
        // while contents stay wanted (or the peer fails), sweeps come 1, 2, 4 ... s apart, up
        // to WANTED_EVERY.
        (wait, backoff) = if (full || stored_any) && !failed {
            (Duration::ZERO, None)
        } else if left || failed {
            let b = backoff.map_or(WANTED_RETRY, |b| (b * 2).min(WANTED_EVERY));
            (b, Some(b))
        } else {
            (WANTED_EVERY, None)
        };
    }
}
