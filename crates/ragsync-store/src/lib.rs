//! The durable store of a node, on SQLite in WAL mode.
//!
//! Invariants at this boundary:
//! - every mutation is one SQLite transaction: a document's state, its content bytes, its feed
//!   `seq` and the clock's high-water mark commit together or not at all;
//! - a transaction that returned `Ok` is on disk to the degree [`Durability`] promises (the
//!   default fsyncs the WAL before returning);
//! - `seq` values are unique and only grow; each document or collection row holds the `seq` of
//!   its latest change, so the change feed is compacted by construction;
//! - the clock never issues a stamp at or below one issued before, across restarts.
//!
//! One writer connection (behind a mutex) serialises mutations; reads use a small pool of
//! read connections and see a consistent snapshot each.

mod checkpoint;
mod collections;
mod contents;
mod counts;
mod docs;
mod embeddings;
mod error;
mod feed;
mod group;
mod peers;
mod replica;
mod schema;
mod stats;
mod tx;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use ragsync_core::{CollectionName, Epoch, Hlc, HlcClock, NodeId, PhysicalClock};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub use checkpoint::WalStats;
pub use collections::Collection;
pub use docs::{DocOp, OpKind, StoredDoc, WriteEffect, WriteResult};
pub use embeddings::{ContentEmbeddings, decode_vector, encode_vector};
pub use error::StoreError;
pub use feed::{ChangesPage, CollectionChanges, FeedEntry, FeedItem, InlinePolicy};
pub use peers::PeerRecord;
pub use replica::{Applied, Cursor, Page, Parked, Pushed};
pub use schema::SCHEMA_VERSION;
pub use stats::Stats;

/// How hard a commit waits for the disk before it is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// SQLite `synchronous=NORMAL`: a commit survives a crash of the process (`kill -9`), but
    /// the last commits before a power loss or kernel crash may be lost.
    Relaxed,
    /// SQLite `synchronous=FULL` (the default): the WAL is fsynced before every commit is
    /// acknowledged, so an acknowledged write survives power loss too.
    #[default]
    Full,
    /// SQLite's strictest: `synchronous=EXTRA` with `fullfsync` and `checkpoint_fullfsync`.
    /// Where the OS has a stronger sync than fsync (macOS `F_FULLFSYNC`, which also flushes the
    /// drive's own cache) every sync uses it; on Linux, whose fsync already flushes the drive
    /// cache, it syncs exactly as `full` does.
    Extra,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Relaxed => "NORMAL",
            Durability::Full => "FULL",
            Durability::Extra => "EXTRA",
        }
    }
}

/// Physical time from the operating system.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl PhysicalClock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// Options of [`Store::open`].
#[derive(Clone)]
pub struct StoreOptions {
    pub durability: Durability,
    pub hlc_max_drift_ms: u64,
    pub clock: Arc<dyn PhysicalClock>,
    /// Create a new node in a directory that holds other files (by default a new node is
    /// made only in an empty or missing directory).
    pub init_in_nonempty_dir: bool,
    /// What names this boot of the machine (Linux: `/proc/sys/kernel/random/boot_id`);
    /// `None` when unknown. With it, pages pulled from peers commit without waiting for their
    /// sync, and a node that finds the machine rebooted since such a commit takes a new
    /// epoch (see [`Store::open`]).
    pub boot_id: Option<String>,
    /// Whether a database found in another file than the one it was last opened in (a
    /// restored backup, a copy) takes a new epoch (see [`Store::open`]). On by default; off
    /// only for tests that make crash images by copying the files of an open store.
    pub new_epoch_for_copies: bool,
}

/// This boot of the machine, on Linux.
pub fn current_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            hlc_max_drift_ms: ragsync_core::Limits::default().hlc_max_drift_ms,
            clock: Arc::new(SystemClock),
            init_in_nonempty_dir: false,
            boot_id: current_boot_id(),
            new_epoch_for_copies: true,
        }
    }
}

/// The single writer: its connection, the node's clock and the next feed `seq`.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) clock: HlcClock,
    pub(crate) next_seq: u64,
    /// When a commit that stored a change last waited for its sync (which also made every
    /// earlier unsynced commit durable).
    pub(crate) synced_at: std::time::Instant,
    /// The connection is set not to sync commits (only while a pulled page commits).
    pub(crate) unsynced: bool,
    /// An unsynced commit wrote, and no synced one has since: the next synced commit must
    /// sync even if it stores nothing.
    pub(crate) behind_sync: bool,
}

/// Page size of a new database. Larger pages mean fewer page splits and fewer WAL frames
/// per batch (16 KiB pages ingest about 25% faster than 4 KiB ones, see BENCHMARKS.md).
const PAGE_SIZE_BYTES: i64 = 16384;
/// Page cache of the writer connection, in KiB. Its working set is mostly the content-id
/// index (random keys, ~45 bytes a content: 32 MiB holds it for about 700,000 contents);
/// 64 MiB ingested no faster at 100,000 or 300,000 documents and cost 34 MiB more RSS
/// (BENCHMARKS.md).
const WRITER_CACHE_KIB: i64 = 32 << 10;
/// The meta key naming the boot under which commits may have skipped their sync.
const UNSYNCED_BOOT: &str = "unsynced_boot";
/// Meta key: the file the database was last opened in ([`file_identity`]).
const LAST_FILE: &str = "db_file_id";

/// Which file `path` is: its inode and, where the file system keeps it, its birth time. Both
/// stay across renames, restarts and reboots (a device number may not: disks enumerated in
/// another order, network file systems), and differ for a copy, even one that reuses a
/// freed inode. `None` where the platform has no inodes.
fn file_identity(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        let born = m
            .created()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or_else(|| "-".to_string(), |d| d.as_nanos().to_string());
        Some(format!("{}:{born}", m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}
/// Recorded for a relaxed node whose boot cannot be known; no boot id reads as it.
const UNKNOWN_BOOT: &str = "unknown";
/// Longest a pulled page's commit goes without a synced one after it: past this, the next
/// pulled page waits for its sync (bounding what a machine crash can take back).
const MAX_UNSYNCED: std::time::Duration = std::time::Duration::from_secs(1);
/// Most idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
const DB_FILE: &str = "ragsync.db";
const LOCK_FILE: &str = "LOCK";
/// Where a new node's database is made before it is renamed to [`DB_FILE`], and that
/// database's rollback journal: leftovers of a start that crashed, removed by the next one.
const INIT_FILES: [&str; 2] = ["ragsync.db.init", "ragsync.db.init-journal"];

pub struct Store {
    path: PathBuf,
    node_id: NodeId,
    epoch: Epoch,
    durability: Durability,
    /// Pages pulled from peers commit without waiting for their sync (see
    /// [`Store::check_reboot`]): the boot is known and durability is not already relaxed.
    unsynced_pulls: bool,
    physical: Arc<dyn PhysicalClock>,
    /// Copies the WAL back into the database off the write path; declared before the writer
    /// so that it stops before the writer's connection closes.
    checkpointer: checkpoint::Checkpointer,
    writer: Mutex<Writer>,
    /// Client writes waiting to be committed together (see `group.rs`).
    write_queue: Mutex<Vec<group::Queued>>,
    group_stats: group::GroupStats,
    /// The feed's head, announced after every commit that moved it (long-polls wait on it).
    head: tokio::sync::watch::Sender<u64>,
    /// The feed's head when the store opened, and the last `seq` of each collection's changes
    /// committed since (see [`Store::collection_head`]).
    opened_head: u64,
    collection_heads: Mutex<HashMap<CollectionName, u64>>,
    readers: Mutex<Vec<Connection>>,
    /// Held for the life of the store: one process per data directory.
    _lock: File,
}

impl Store {
    /// Opens the store in `dir`, applying schema migrations. A new node (a new id) is made
    /// only where there is no database yet, in a missing or empty directory (or any directory
    /// with [`StoreOptions::init_in_nonempty_dir`]); a database file that is empty or not a
    /// ragsync database is refused, never replaced.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let bad_dir = |reason: &str| StoreError::DataDir(format!("{}: {reason}", dir.display()));
        if dir.exists() && !dir.is_dir() {
            return Err(bad_dir("exists and is not a directory"));
        }
        std::fs::create_dir_all(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_existed = lock_path.exists();
        // A directory refused below is left as it was found.
        let refuse = |e: StoreError| {
            if !lock_existed {
                let _ = std::fs::remove_file(&lock_path);
            }
            e
        };
        let lock = File::create(&lock_path)?;
        lock.try_lock()
            .map_err(|_| StoreError::Locked(dir.display().to_string()))?;
        let path = dir.join(DB_FILE);
        let existed = path.exists();
        if !existed && !opts.init_in_nonempty_dir {
            let other = std::fs::read_dir(dir)?.filter_map(Result::ok).find(|e| {
                e.file_name() != LOCK_FILE && !INIT_FILES.iter().any(|f| e.file_name() == *f)
            });
            if let Some(e) = other {
                return Err(refuse(bad_dir(&format!(
                    "holds {:?} but no {DB_FILE}: a new node is made only in an empty \
                     directory (pass --init to make one here)",
                    e.file_name()
                ))));
            }
        }
        if !existed {
            create_node_db(dir, &path)?;
        }
        let mut conn = Connection::open(&path)?;
        check_recognised(&conn).map_err(|reason| {
            refuse(StoreError::DataDir(format!("{}: {reason}", path.display())))
        })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", opts.durability.pragma())?;
        if opts.durability == Durability::Extra {
            conn.pragma_update(None, "fullfsync", true)?;
            conn.pragma_update(None, "checkpoint_fullfsync", true)?;
        }
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // A batch touches index pages all over the content-id index; with SQLite's default
        // 2 MiB cache they spill to the WAL mid-transaction and are read back. Measured in
        // BENCHMARKS.md.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        // A savepoint (one per replicated row, one per grouped client write) copies each page
        // it first changes to a statement journal; in a temporary file that was a 16 KiB
        // `pwrite` per page, the largest cost of applying a pulled page (BENCHMARKS.md). In
        // memory it lives only until the savepoint is released.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        schema::migrate(&mut conn)?;
        let page_size = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))?;
        let checkpointer =
            checkpoint::Checkpointer::start(&path, &mut conn, opts.durability, page_size as u64)?;

        let (node_id, epoch, hlc) = Self::load_identity(&mut conn)?;
        let file = (opts.new_epoch_for_copies)
            .then(|| file_identity(&path))
            .flatten();
        let epoch = Self::check_continuity(
            &mut conn,
            epoch,
            opts.boot_id.as_deref(),
            file.as_deref(),
            opts.durability,
        )?;
        // The database, WAL and lock files may have just been created: make their directory
        // entries durable too, not only their contents.
        File::open(dir)?.sync_all()?;
        let mut clock = HlcClock::new(opts.hlc_max_drift_ms);
        clock.restore(hlc);
        let next_seq = feed::head_seq(&conn)? + 1;
        tracing::info!(%node_id, %epoch, path = %path.display(), durability = ?opts.durability, "store open");
        Ok(Self {
            path,
            node_id,
            epoch,
            durability: opts.durability,
            physical: opts.clock,
            checkpointer,
            writer: Mutex::new(Writer {
                conn,
                clock,
                next_seq,
                synced_at: std::time::Instant::now(),
                unsynced: false,
                behind_sync: false,
            }),
            unsynced_pulls: opts.boot_id.is_some() && opts.durability == Durability::Full,
            write_queue: Mutex::new(Vec::new()),
            group_stats: group::GroupStats::default(),
            head: tokio::sync::watch::Sender::new(next_seq - 1),
            opened_head: next_seq - 1,
            collection_heads: Mutex::default(),
            readers: Mutex::new(Vec::new()),
            _lock: lock,
        })
    }

    /// Commits that did not wait for their sync (pulled pages; every commit under relaxed
    /// durability) survive a crash of the process, but not of the machine. Their `seq`s may
    /// have been served to peers: after such a loss this node would give the same `seq`s to
    /// other changes, and a peer whose cursor is past them would never see those. So the
    /// boot such commits were made under is kept, and a node that finds the machine has
    /// rebooted since, without a clean stop in between, takes a new epoch: its peers drop
    /// their cursors of its feed and read it again from the start.
    ///
    /// A restored backup (or any copy of the database) loses the same way every change made
    /// after the copy, and would give their `seq`s to new changes. Such a database is found
    /// in another file than the one it was last opened in (`file`: inode and birth time), and
    /// takes a new epoch too. A data directory moved to another disk counts as a copy: its
    /// peers read its feed again, which merges idempotently. A backup copied over the
    /// existing file, in place, keeps that file's identity and is not recognised. Returns the
    /// epoch.
    fn check_continuity(
        conn: &mut Connection,
        epoch: Epoch,
        boot: Option<&str>,
        file: Option<&str>,
        durability: Durability,
    ) -> Result<Epoch, StoreError> {
        // This commit waits for its sync whatever the durability.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let tx = conn.transaction()?;
        let unsynced = meta_get(&tx, UNSYNCED_BOOT)?;
        let rebooted = unsynced.is_some_and(|b| Some(b.as_slice()) != boot.map(str::as_bytes));
        let last_file = meta_get(&tx, LAST_FILE)?;
        let copied = matches!((&last_file, file), (Some(was), Some(is)) if was != is.as_bytes());
        let epoch = if rebooted || copied {
            let new = Epoch::random();
            let why = if copied {
                "the database is a copy (a restored backup, a moved directory): changes made \
                 after the copy may be lost"
            } else {
                "the machine restarted since commits that were not synced"
            };
            tracing::warn!(
                old = %epoch,
                new = %new,
                "{why}: a new epoch, so peers read this node's feed again from the start"
            );
            meta_set(&tx, "epoch", new.to_string().as_bytes())?;
            new
        } else {
            epoch
        };
        if let Some(f) = file {
            meta_set(&tx, LAST_FILE, f.as_bytes())?;
        }
        match boot {
            Some(b) => meta_set(&tx, UNSYNCED_BOOT, b.as_bytes())?,
            // Relaxed commits skip their sync whether or not the boot is known: without it,
            // any stop that is not clean counts as a possible loss.
            None if durability == Durability::Relaxed => {
                meta_set(&tx, UNSYNCED_BOOT, UNKNOWN_BOOT.as_bytes())?;
            }
            None => meta_delete(&tx, UNSYNCED_BOOT)?,
        }
        tx.commit()?;
        conn.pragma_update(None, "synchronous", durability.pragma())?;
        Ok(epoch)
    }

    fn load_identity(conn: &mut Connection) -> Result<(NodeId, Epoch, Hlc), StoreError> {
        let tx = conn.transaction()?;
        let node_id = parse_meta(&meta_get(&tx, "node_id")?.unwrap_or_default(), "node_id")?;
        let epoch: Epoch = parse_meta(&meta_get(&tx, "epoch")?.unwrap_or_default(), "epoch")?;
        let hlc: u64 = parse_meta(&meta_get(&tx, "hlc")?.unwrap_or_default(), "hlc")?;
        tx.commit()?;
        Ok((node_id, epoch, Hlc(hlc)))
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// How the WAL stands: its size and the checkpoints run off the write path.
    pub fn wal_stats(&self) -> WalStats {
        self.checkpointer.stats()
    }

    /// The `seq` of the last change to collection `name` (its record or one of its
    /// documents) committed since the store opened, or the feed's head at open for a
    /// collection not changed since: never below the `seq` of any change to it committed
    /// before the call. What a reader of the collection waits for an index to cover, however
    /// busy other collections are.
    pub fn collection_head(&self, name: &CollectionName) -> u64 {
        let heads = self
            .collection_heads
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        heads.get(name).copied().unwrap_or(self.opened_head)
    }

    /// The feed's head, as a watch that changes after every commit that moves it.
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The data directory the database lives in (derived data, such as the search index,
    /// lives beside it).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn now_ms(&self) -> u64 {
        self.physical.now_ms()
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the writer leaves no half-done transaction behind (SQLite
        // rolled it back when the Transaction was dropped), so the guard is safe to reuse.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on a read connection from the pool, inside one read transaction.
    fn read<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(std::time::Duration::from_secs(10))?;
                c
            }
        };
        let out = {
            let tx = conn.transaction()?;
            let out = f(&tx);
            tx.finish()?;
            out
        };
        let mut pool = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        out
    }

    /// Reads a node-level setting kept in the store (for example the admin token's hash).
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|tx| meta_get(tx, key))
    }

    /// Writes a node-level setting, durably.
    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut w = self.writer();
        self.sync_again(&mut w)?;
        let tx = w.conn.transaction()?;
        meta_set(&tx, key, value)?;
        tx.commit()?;
        w.behind_sync = false;
        Ok(())
    }
}

impl Drop for Store {
    /// A clean stop: one synced commit makes every earlier one durable, so a reboot after it
    /// takes nothing back and keeps the epoch.
    fn drop(&mut self) {
        let w = self.writer.get_mut().unwrap_or_else(|e| e.into_inner());
        let cleared = w
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(StoreError::from)
            .and_then(|()| meta_delete(&w.conn, UNSYNCED_BOOT));
        if let Err(e) = cleared {
            tracing::warn!(error = %e, "the store did not close cleanly");
        }
    }
}

/// Makes the database of a new node, with its identity, under a temporary name, and renames
/// it into place: a crash leaves either no database (the next start begins again) or a whole
/// one, never an empty file that would have to be refused.
fn create_node_db(dir: &Path, path: &Path) -> Result<(), StoreError> {
    for leftover in INIT_FILES {
        match std::fs::remove_file(dir.join(leftover)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    let tmp = dir.join(INIT_FILES[0]);
    {
        let mut conn = Connection::open(&tmp)?;
        // Takes effect only before the first table exists.
        conn.pragma_update(None, "page_size", PAGE_SIZE_BYTES)?;
        schema::migrate(&mut conn)?;
        let tx = conn.transaction()?;
        meta_set(&tx, "node_id", NodeId::random().to_string().as_bytes())?;
        meta_set(&tx, "epoch", Epoch::random().to_string().as_bytes())?;
        meta_set(&tx, "hlc", b"0")?;
        tx.commit()?;
    }
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Checks, before anything is written to it, that an existing database file is a ragsync
/// database: SQLite would take an empty file for a new database, and a new node id with it.
fn check_recognised(conn: &Connection) -> Result<(), String> {
    let has_identity = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(|e| format!("is not a SQLite database ({e})"))?
        == 1
        && conn
            .query_row("SELECT count(*) FROM meta WHERE key = 'node_id'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| format!("cannot be read ({e})"))?
            == 1;
    if has_identity {
        Ok(())
    } else {
        Err(
            "exists but holds no ragsync node (an empty or foreign database); refusing to \
             make a new node over it: move it away, or point --data elsewhere"
                .into(),
        )
    }
}

fn meta_get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

fn meta_delete(conn: &Connection, key: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM meta WHERE key = ?1")?
        .execute([key])?;
    Ok(())
}

fn meta_set(conn: &Connection, key: &str, value: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

fn parse_meta<T: std::str::FromStr>(v: &[u8], key: &str) -> Result<T, StoreError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("meta {key} is not readable")))
}
