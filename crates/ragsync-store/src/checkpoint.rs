//! Checkpoints off the write path. SQLite's automatic checkpoint runs inside the commit that
//! finds the WAL past its limit: that commit copies the whole WAL (64 MiB) into the database
//! and syncs it before it returns, 100–200 ms during a bulk load, every few batches, with the
//! writer held the whole time (BENCHMARKS.md). Here the writer's commits only append to the
//! WAL; a thread with its own connection copies it back (`PRAGMA wal_checkpoint(PASSIVE)`,
//! which waits for no reader or writer) once the writer reports the WAL past
//! [`CHECKPOINT_BYTES`], and the writer's next transaction starts the WAL over when the copy
//! caught up with it. A writer outrunning that thread checkpoints in its commit, as before,
//! once the WAL reaches [`INLINE_CHECKPOINT_BYTES`], so the WAL stays bounded.
//!
//! Invariant: a checkpoint only moves committed pages from the WAL into the database file
//! (SQLite's own protocol, safe beside any reader or writer); it never decides what is
//! committed. The thread syncs at least as `synchronous=NORMAL` does (the WAL before a
//! checkpoint, the database after it), whatever the node's durability.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;

use crate::{Durability, StoreError};

/// WAL size past which the checkpointer copies the WAL back into the database. Larger means
/// fewer, longer checkpoints and fewer rewrites of hot pages.
const CHECKPOINT_BYTES: u64 = 64 << 20;
/// WAL size past which the writer's commit checkpoints itself (the checkpointer has fallen
/// behind).
const INLINE_CHECKPOINT_BYTES: u64 = 4 * CHECKPOINT_BYTES;

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Pages in the WAL after the writer's last commit.
    wal_pages: AtomicU64,
    /// Checkpoints the thread ran, and how many of them copied the whole WAL.
    runs: AtomicU64,
    complete: AtomicU64,
    /// Pages of the WAL in the database after the last checkpoint.
    copied: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The writer reported the WAL past [`CHECKPOINT_BYTES`] since the last checkpoint began.
    due: bool,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How the WAL stands: what `/v1/status` shows as `wal`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WalStats {
    /// Pages in the WAL after the last commit (the WAL starts over after a checkpoint that
    /// copied all of it).
    pub pages: u64,
    /// Checkpoints run off the write path since the store opened.
    pub checkpoints: u64,
    /// Those that copied the whole WAL (a reader of an older snapshot can hold back the rest).
    pub complete: u64,
    /// Pages of the WAL that the last of them found in the database.
    pub last_copied: u64,
}

/// The checkpoint thread of one store; stops (after the checkpoint under way) when dropped.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to the database at `path`, and hands the
    /// writer connection `writer` a WAL hook that wakes it (replacing SQLite's automatic
    /// checkpoint).
    pub(crate) fn start(
        path: &Path,
        writer: &mut Connection,
        durability: Durability,
        page_size: u64,
    ) -> Result<Self, StoreError> {
        Self::start_with(
            path,
            writer,
            durability,
            CHECKPOINT_BYTES / page_size,
            INLINE_CHECKPOINT_BYTES / page_size,
        )
    }

    /// [`Checkpointer::start`] with its limits in pages: the thread's, and the writer's own.
    fn start_with(
        path: &Path,
        writer: &mut Connection,
        durability: Durability,
        due_pages: u64,
        inline_pages: u64,
    ) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let sync = match durability {
            Durability::Relaxed | Durability::Full => "NORMAL",
            Durability::Extra => "EXTRA",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        if durability == Durability::Extra {
            conn.pragma_update(None, "checkpoint_fullfsync", true)?;
        }
        let shared = Arc::new(Shared::default());
        let hook_shared = shared.clone();
        writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
            let pages = u64::try_from(pages).unwrap_or(0);
            hook_shared.wal_pages.store(pages, Ordering::Relaxed);
            if pages >= inline_pages {
                // An error here would fail the statement whose commit already happened:
                // a checkpoint that could not run is only logged.
                if let Err(e) = wal.checkpoint() {
                    tracing::warn!(error = %e, pages, "the writer's own checkpoint failed");
                }
            } else if pages >= due_pages {
                let mut s = hook_shared.lock();
                if !s.due {
                    s.due = true;
                    hook_shared.wake.notify_one();
                }
            }
            Ok(())
        }))?;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ragsync-checkpoint".into())
            .spawn(move || run(&conn, &thread_shared))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }
}

impl Checkpointer {
    pub(crate) fn stats(&self) -> WalStats {
        let s = &self.shared;
        WalStats {
            pages: s.wal_pages.load(Ordering::Relaxed),
            checkpoints: s.runs.load(Ordering::Relaxed),
            complete: s.complete.load(Ordering::Relaxed),
            last_copied: s.copied.load(Ordering::Relaxed),
        }
    }
}

fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let mut s = shared.lock();
            while !s.due && !s.stop {
                s = shared.wake.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.stop {
                return;
            }
            s.due = false;
        }
        let started = std::time::Instant::now();
        // (busy, frames in the WAL, frames copied into the database)
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match done {
            Ok((_, frames, copied)) => {
                shared
                    .copied
                    .store(u64::try_from(copied).unwrap_or(0), Ordering::Relaxed);
                shared.runs.fetch_add(1, Ordering::Relaxed);
                if copied == frames {
                    shared.complete.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(
                    frames,
                    copied,
                    ms = started.elapsed().as_millis() as u64,
                    "checkpoint"
                );
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint failed; the next commit retries"),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer connection in WAL mode with 4 KiB pages and a table of blobs, and its
    /// checkpointer with these limits in pages.
    fn started(dir: &Path, due_pages: u64, inline_pages: u64) -> (Connection, Checkpointer) {
        let mut c = Connection::open(dir.join("db")).unwrap();
        c.pragma_update(None, "page_size", 4096).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, b BLOB NOT NULL)")
            .unwrap();
        let path = dir.join("db");
        let cp = Checkpointer::start_with(&path, &mut c, Durability::Full, due_pages, inline_pages)
            .unwrap();
        (c, cp)
    }

    /// Commits `n` rows of 8 KiB, one a transaction, numbered from `from`.
    fn commit_rows(c: &Connection, from: i64, n: i64) {
        for i in from..from + n {
            c.execute("INSERT INTO t (n, b) VALUES (?1, zeroblob(8192))", [i])
                .unwrap();
        }
    }

    fn wal_bytes(dir: &Path) -> u64 {
        std::fs::metadata(dir.join("db-wal")).map_or(0, |m| m.len())
    }

    #[test]
    fn the_thread_copies_the_wal_back_and_the_writer_starts_it_over() {
        let dir = tempfile::tempdir().unwrap();
        // The writer never checkpoints itself here: only the thread can keep the WAL short.
        let (c, cp) = started(dir.path(), 32, u64::MAX);
        commit_rows(&c, 0, 20);
        assert!(cp.stats().pages >= 32, "{:?}", cp.stats());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Until a checkpoint has copied every page the writer's last commit left, and the
        // thread has gone idle (a wake from a late commit may still be pending).
        loop {
            assert!(std::time::Instant::now() < deadline, "{:?}", cp.stats());
            let before = cp.stats();
            std::thread::sleep(std::time::Duration::from_millis(50));
            if before.last_copied == before.pages && cp.stats() == before {
                break;
            }
        }
        // The WAL was copied whole: the next transaction writes from its start again.
        commit_rows(&c, 20, 1);
        assert!(cp.stats().pages < 32, "{:?}", cp.stats());
        // Four hundred more commits (4 to 5 pages each, about 7 MiB through the WAL) leave a
        // WAL file a fraction of that: without checkpoints it would hold every one of them.
        for k in 0..400 {
            commit_rows(&c, 21 + k, 1);
            if k % 50 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        assert!(
            wal_bytes(dir.path()) < 4 << 20,
            "WAL {} bytes",
            wal_bytes(dir.path())
        );
        assert!(cp.stats().checkpoints >= 2, "{:?}", cp.stats());
        drop(cp);
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 421);
    }

    #[test]
    fn a_writer_outrunning_the_thread_checkpoints_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (c, cp) = started(dir.path(), u64::MAX, 64);
        commit_rows(&c, 0, 300);
        // The thread was never woken; the writer's own checkpoints kept the WAL near 64
        // pages (256 KiB) instead of 300 commits' 1,300 or so.
        assert_eq!(cp.stats().checkpoints, 0);
        assert!(
            wal_bytes(dir.path()) < 1 << 20,
            "WAL {} bytes",
            wal_bytes(dir.path())
        );
        drop(cp);
        drop(c);
        let c = Connection::open(dir.path().join("db")).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 300);
    }
}
