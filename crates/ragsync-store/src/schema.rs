//! The on-disk schema, as numbered migrations. Migration `i` (1-based) moves a database from
//! `user_version = i - 1` to `i`, inside the transaction that opens the store. Never edit a
//! migration that has shipped: add the next one.

use rusqlite::Connection;

use crate::StoreError;

const MIGRATIONS: &[&str] = &[
    // 1: node identity, collections, document states with the change feed, contents.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;

    -- One row per collection, live or deleted; `seq` places its latest change in the feed.
    CREATE TABLE collections (
        name     TEXT PRIMARY KEY,
        settings TEXT NOT NULL,
        stamp    TEXT NOT NULL,
        deleted  INTEGER NOT NULL,
        seq      INTEGER NOT NULL UNIQUE
    ) WITHOUT ROWID;

    -- One row per document: its state (JSON, see ragsync_core::DocState) and the seq of its
    -- latest change. The feed is "rows by seq", compacted by construction.
    CREATE TABLE docs (
        collection TEXT NOT NULL,
        doc_id     TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        deleted    INTEGER NOT NULL,
        state      BLOB NOT NULL,
        PRIMARY KEY (collection, doc_id)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX docs_by_seq ON docs (seq);

    -- Content bytes, once per BLAKE3 id. A rowid table so ranges can be read in place.
    CREATE TABLE contents (
        cid  BLOB NOT NULL UNIQUE,
        len  INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Applies every migration the database has not seen. Refuses a database written by a newer
/// build rather than guessing at its layout.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let current = tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this build's {SCHEMA_VERSION}"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    tx.commit()?;
    Ok(())
}
