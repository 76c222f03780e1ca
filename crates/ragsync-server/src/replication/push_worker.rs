//! One peer's push worker: drives the engine's [`Pusher`] with real time, HTTP and the store,
//! for a peer added with `push: true` (one that cannot dial this node). It reads pages of this
//! node's feed, sends them, uploads the contents the peer asks for, and stores the push cursor
//! the peer's answers allow. It stops when told to, dropping what is in flight: pushing again
//! from the stored cursor costs time, never data.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ragsync_core::{CollectionName, NodeId};
use ragsync_store::{Cursor, InlinePolicy, Store};
use ragsync_sync::link::{Backoff, Failure};
use ragsync_sync::push::{PushAction, PushConfig, PushStatus, Pusher, Read};
use ragsync_sync::wire::{ChangesResponse, PushAnswer};
use tokio::sync::{Notify, mpsc, watch};

use ragsync_sync::transport::Transport;

use super::transport::BLOB_TIMEOUT;
use super::worker::now_ms;

/// How pushes are paced on a live node.
pub(crate) const PUSH_CONFIG: PushConfig = PushConfig {
    page_rows: 1000,
    request_timeout_ms: 60_000,
    backoff: Backoff {
        base_ms: 250,
        max_ms: 30_000,
    },
};

/// Contents sent inside a pushed page: as a node serves its own pages by default, but at
/// most 8 MiB a page, so a page stays far below a receiver's body limit (64 MiB by default).
const PUSH_INLINE: InlinePolicy = InlinePolicy {
    max_content_bytes: 64 << 10,
    max_page_bytes: 8 << 20,
    embeddings: true,
};

enum Done {
    Read(u64, Result<ChangesResponse, String>),
    /// Send `id` is about to upload a content: it may take up to [`BLOB_TIMEOUT`] more.
    Uploading(u64),
    Sent(u64, Result<PushAnswer, Failure>, u64),
}

pub(crate) struct PushWorker<T> {
    pub(crate) peer: NodeId,
    pub(crate) store: Arc<Store>,
    pub(crate) link: T,
    pub(crate) collections: Option<Vec<CollectionName>>,
    pub(crate) status: Arc<Mutex<PushStatus>>,
    pub(crate) nudge: Arc<Notify>,
    pub(crate) stop: watch::Receiver<bool>,
}

/// The status a peer's push worker starts with (from its stored push cursor).
pub(crate) fn new_push_status(store: &Store, peer: NodeId) -> PushStatus {
    let cursor = store.push_cursor(peer).ok().flatten();
    let mut p = Pusher::new(PUSH_CONFIG, peer, cursor.map(|c| (c.epoch, c.since)), 0);
    p.on_local_head(now_ms(), store.head_seq().unwrap_or(0));
    p.status().clone()
}

impl<T: Transport> PushWorker<T> {
    pub(crate) async fn run(mut self) {
        let cursor = match self.store.push_cursor(self.peer) {
            Ok(c) => c.map(|c| (c.epoch, c.since)),
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "cannot read the push cursor");
                return;
            }
        };
        let mut pusher = Pusher::new(PUSH_CONFIG, self.peer, cursor, rand::random());
        let mut head = self.store.watch_head();
        pusher.on_local_head(now_ms(), *head.borrow_and_update());
        let (done_tx, mut done) = mpsc::channel::<Done>(4);
        let (save, saved) = watch::channel(None);
        let saver = tokio::spawn(save_cursors(self.store.clone(), self.peer, saved));
        // The send under way: one at a time, and one the pusher gave up on is stopped rather
        // than left uploading beside its retry.
        let mut sending: Option<tokio::task::JoinHandle<()>> = None;
        tracing::info!(peer = %self.peer, url = %self.link.describe(), "pushing to peer");
        loop {
            let now = now_ms();
            while let Some(action) = pusher.poll(now) {
                match action {
                    PushAction::Save { epoch, since } => {
                        save.send_replace(Some(Cursor { epoch, since }));
                    }
                    PushAction::Send { id, page } => {
                        if let Some(stale) = sending.take() {
                            stale.abort();
                        }
                        sending = Some(self.send(id, page, done_tx.clone()));
                    }
                    PushAction::Read(r) => self.read(r, done_tx.clone()),
                }
            }
            *self.status.lock().unwrap_or_else(|e| e.into_inner()) = pusher.status().clone();
            let sleep = pusher.wake_at_ms().map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(now))
            });
            tokio::select! {
                Some(d) = done.recv() => match d {
                    Done::Read(id, page) => pusher.on_read(now_ms(), id, page),
                    Done::Uploading(id) => {
                        pusher.still_sending(now_ms(), id, BLOB_TIMEOUT.as_millis() as u64);
                    }
                    Done::Sent(id, answer, bytes) => {
                        pusher.note_bytes(bytes);
                        pusher.on_sent(now_ms(), id, answer);
                    }
                },
                Ok(()) = head.changed() => {
                    let h = *head.borrow_and_update();
                    pusher.on_local_head(now_ms(), h);
                }
                _ = tokio::time::sleep(sleep) => {}
                _ = self.nudge.notified() => pusher.nudge(),
                _ = self.stop.wait_for(|s| *s) => break,
            }
        }
        if let Some(s) = sending {
            s.abort();
        }
        // The last acknowledged cursor is written before the worker goes.
        drop(save);
        let _ = saver.await;
        tracing::info!(peer = %self.peer, "stopped pushing to peer");
    }

    fn read(&self, r: Read, done: mpsc::Sender<Done>) {
        let store = self.store.clone();
        let only = self.collections.clone();
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || {
                let mut page = store.changes(r.since, r.limit, PUSH_INLINE)?;
                if let Some(only) = &only {
                    page.retain_collections(only);
                }
                Ok::<_, ragsync_store::StoreError>(ChangesResponse::from_page(
                    store.node_id(),
                    store.epoch(),
                    r.since,
                    page,
                ))
            })
            .await;
            let page = match read {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("read task: {e}")),
            };
            let _ = done.send(Done::Read(r.id, page)).await;
        });
    }

    fn send(
        &self,
        id: u64,
        page: ChangesResponse,
        done: mpsc::Sender<Done>,
    ) -> tokio::task::JoinHandle<()> {
        let (store, link) = (self.store.clone(), self.link.clone());
        let timeout = Duration::from_millis(PUSH_CONFIG.request_timeout_ms);
        tokio::spawn(async move {
            let (answer, mut bytes) = link.push(&page, timeout).await;
            let answer = match answer {
                Ok(a) => upload_wanted(&store, &link, &a, &mut bytes, (id, &done))
                    .await
                    .map(|()| a),
                Err(e) => Err(e),
            };
            let _ = done.send(Done::Sent(id, answer, bytes)).await;
        })
    }
}

/// Uploads the contents a push answer asks for; a page counts as delivered only once they are
/// there (the peer may have no other way to get them).
async fn upload_wanted<T: Transport>(
    store: &Arc<Store>,
    link: &T,
    answer: &PushAnswer,
    bytes: &mut u64,
    (send_id, progress): (u64, &mpsc::Sender<Done>),
) -> Result<(), Failure> {
    for cid in &answer.wanted {
        let (s, c) = (store.clone(), *cid);
        let content = tokio::task::spawn_blocking(move || s.content(&c))
            .await
            .map_err(|e| Failure::Unreachable(format!("read task: {e}")))?
            .map_err(|e| Failure::Unreachable(format!("reading content {cid}: {e}")))?;
        // Not held here either (a state that came from elsewhere): another node sends it.
        let Some(content) = content else { continue };
        *bytes += content.len() as u64;
        let _ = progress.send(Done::Uploading(send_id)).await;
        link.upload(cid, content).await.map_err(|e| match e {
            Failure::Refused { status, code, .. } => {
                Failure::Unreachable(format!("uploading content {cid}: {status} {code}"))
            }
            other => other,
        })?;
    }
    Ok(())
}

/// Writes the latest push cursor the pusher gave, one write at a time (a later cursor
/// supersedes an earlier one that has not been written yet).
async fn save_cursors(
    store: Arc<Store>,
    peer: NodeId,
    mut cursors: watch::Receiver<Option<Cursor>>,
) {
    loop {
        let changed = cursors.changed().await;
        let latest = *cursors.borrow_and_update();
        if let Some(c) = latest {
            let s = store.clone();
            let written = tokio::task::spawn_blocking(move || s.set_push_cursor(peer, c)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(%peer, ?written, "storing the push cursor failed");
            }
        }
        if changed.is_err() {
            return;
        }
    }
}
