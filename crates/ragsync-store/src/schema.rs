//! The on-disk schema, as numbered migrations. Migration `i` (1-based) moves a database from
//! `user_version = i - 1` to `i`, inside the transaction that opens the store. Never edit a
//! migration that has shipped: add the next one.

use ragsync_core::{CollectionName, DocId};
use rusqlite::{Connection, Transaction, params};

use crate::StoreError;

/// One step of the schema: SQL, or code for what SQL cannot do.
enum Migration {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> Result<(), StoreError>),
}

const MIGRATIONS: &[Migration] = &[
    // 1: node identity, collections, document states with the change feed, contents.
    Migration::Sql(
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
    ),
    // 2: document ids in NFC (earlier builds kept them byte for byte).
    Migration::Code(nfc_document_ids),
    // 3: contents that replicated states reference and that are not stored here yet.
    Migration::Sql(
        r#"
    -- Recorded in the transaction that stores the state referencing it, so a crash cannot
    -- forget a content still to fetch; removed in the transaction that stores its bytes.
    CREATE TABLE wanted (
        cid BLOB PRIMARY KEY,
        len INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    ),
    // 4: replication from peers: a cursor per peer, and the rows that could not be applied.
    Migration::Sql(
        r#"
    -- The last seq of a peer's feed applied here, for that peer's database incarnation.
    CREATE TABLE peer_cursors (
        peer  TEXT PRIMARY KEY,
        epoch TEXT NOT NULL,
        since INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- Rows of a peer's feed refused for what they are, kept until applied by a retry.
    CREATE TABLE parked (
        peer         TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        item         BLOB NOT NULL,
        code         TEXT NOT NULL,
        reason       TEXT NOT NULL,
        parked_at_ms INTEGER NOT NULL,
        PRIMARY KEY (peer, seq)
    ) WITHOUT ROWID;
    "#,
    ),
    // 5: the peers this node replicates from, known by the node id they report.
    Migration::Sql(
        r#"
    CREATE TABLE peers (
        node_id     TEXT PRIMARY KEY,
        url         TEXT NOT NULL,
        token       TEXT NOT NULL,
        collections TEXT,
        push        INTEGER NOT NULL,
        added_ms    INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    ),
    // 6: how many conflicts each document holds, so conflicted documents list fast.
    Migration::Code(conflict_counts),
    // 7: pushing to peers: the last seq of this node's feed each peer acknowledged, for that
    // peer's database incarnation.
    Migration::Sql(
        r#"
    CREATE TABLE push_cursors (
        peer  TEXT PRIMARY KEY,
        epoch TEXT NOT NULL,
        since INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    ),
    // 8: embeddings, derived from chunk texts (or sent by clients) and kept by model and chunk
    // content id, so a chunk is embedded once per model whatever holds it; and which chunks a
    // content was cut into when its embeddings were stored, so the feed can send them along.
    Migration::Sql(
        r#"
    CREATE TABLE embeddings (
        model TEXT NOT NULL,
        chunk BLOB NOT NULL,
        vec   BLOB NOT NULL,
        PRIMARY KEY (model, chunk)
    ) WITHOUT ROWID;

    CREATE TABLE embedded_contents (
        model   TEXT NOT NULL,
        content BLOB NOT NULL,
        chunks  BLOB NOT NULL,
        PRIMARY KEY (content, model)
    ) WITHOUT ROWID;
    "#,
    ),
    // 9: vectors in a rowid table, as contents are. A vector of 384 dimensions is 1.5 KiB, a
    // tenth of a page: keyed by its random chunk id in a WITHOUT ROWID table, each insert
    // landed in the middle of full leaves and split them, which made storing a batch of
    // vectors cost more than parsing it (BENCHMARKS.md). Rows now go at the end; the index
    // on (model, chunk) holds only the keys.
    Migration::Sql(
        r#"
    CREATE TABLE vectors (
        model TEXT NOT NULL,
        chunk BLOB NOT NULL,
        vec   BLOB NOT NULL,
        UNIQUE (model, chunk)
    );
    INSERT INTO vectors (model, chunk, vec) SELECT model, chunk, vec FROM embeddings;
    DROP TABLE embeddings;
    ALTER TABLE vectors RENAME TO embeddings;
    "#,
    ),
    // 10: both embedding tables keyed by the first 8 bytes of their random id. Their unique
    // indexes held the model id and the whole 32-byte id, about 50 bytes a row, and a batch's
    // random ids dirtied nearly every leaf of both on every commit: at 100,000 vectors about
    // 900 16-KiB pages a batch went to the WAL for them, more than the vectors themselves
    // (BENCHMARKS.md). An 8-byte prefix makes each index a third of the size; rows go at the
    // end; a prefix shared by two ids is told apart by the row (`embeddings.rs` keeps one
    // row per key, as the unique indexes did).
    Migration::Sql(
        r#"
    CREATE TABLE vectors (
        model TEXT NOT NULL,
        chunk BLOB NOT NULL,
        vec   BLOB NOT NULL
    );
    INSERT INTO vectors (model, chunk, vec) SELECT model, chunk, vec FROM embeddings;
    DROP TABLE embeddings;
    ALTER TABLE vectors RENAME TO embeddings;
    CREATE INDEX embeddings_by_chunk ON embeddings (substr(chunk, 1, 8));

    CREATE TABLE chunk_lists (
        model   TEXT NOT NULL,
        content BLOB NOT NULL,
        chunks  BLOB NOT NULL
    );
    INSERT INTO chunk_lists (model, content, chunks)
        SELECT model, content, chunks FROM embedded_contents;
    DROP TABLE embedded_contents;
    ALTER TABLE chunk_lists RENAME TO embedded_contents;
    CREATE INDEX embedded_contents_by_content ON embedded_contents (substr(content, 1, 8));
    "#,
    ),
    // 11: document states in a rowid table with a unique index on (collection, doc_id). Keyed
    // by their id in a WITHOUT ROWID table, states (about 300 bytes each) of random ids, such
    // as the UUIDs clients and LangChain make, landed all over the table: a batch rewrote
    // most of its leaves. Rows now go at the end; only the index (about 50 bytes a document)
    // takes random inserts (BENCHMARKS.md).
    Migration::Sql(
        r#"
    CREATE TABLE doc_rows (
        collection TEXT NOT NULL,
        doc_id     TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        deleted    INTEGER NOT NULL,
        state      BLOB NOT NULL,
        conflicts  INTEGER NOT NULL DEFAULT 0,
        UNIQUE (collection, doc_id)
    );
    INSERT INTO doc_rows (collection, doc_id, seq, deleted, state, conflicts)
        SELECT collection, doc_id, seq, deleted, state, conflicts FROM docs ORDER BY seq;
    DROP TABLE docs;
    ALTER TABLE doc_rows RENAME TO docs;
    CREATE UNIQUE INDEX docs_by_seq ON docs (seq);
    CREATE INDEX docs_conflicted ON docs (collection, doc_id) WHERE conflicts > 0;
    "#,
    ),
    // 12: documents and contents counted as they are written, for `/v1/status`.
    Migration::Sql(crate::counts::MIGRATION),
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
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current) {
        match step {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Code(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    tx.commit()?;
    Ok(())
}

/// Moves every document stored under an id that is not in NFC to its NFC id, merging it with
/// a document already there (the two were one name spelt two ways), with a new feed `seq` so
/// peers learn of it. Ids that hold characters no longer allowed keep their row as it is:
/// they stay readable in lists and the feed, and deletable with their collection.
fn nfc_document_ids(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let rows: Vec<(String, String, Vec<u8>)> = {
        let mut stmt = tx.prepare("SELECT collection, doc_id, state FROM docs")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|(_, id, _)| !DocId::is_nfc(id))
            .collect()
    };
    if rows.is_empty() {
        return Ok(());
    }
    let mut seq = crate::feed::head_seq(tx)?;
    for (collection, old_id, state) in rows {
        let Ok(id) = DocId::new(old_id.clone()) else {
            continue;
        };
        let coll = CollectionName::new(collection.clone())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut merged = crate::tx::decode_state(&state)?;
        if let Some((_, there)) = crate::tx::load(tx, &coll, &id)? {
            merged.merge(&there);
        }
        seq += 1;
        tx.execute(
            "DELETE FROM docs WHERE collection = ?1 AND doc_id = ?2",
            params![collection, old_id],
        )?;
        let bytes = serde_json::to_vec(&merged).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT OR REPLACE INTO docs (collection, doc_id, seq, deleted, state) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                collection,
                id.as_str(),
                seq as i64,
                merged.is_deleted(),
                bytes
            ],
        )?;
        tracing::info!(%collection, from = %old_id, to = %id, "document id normalised to NFC");
    }
    crate::meta_set(tx, "seq", seq.to_string().as_bytes())?;
    Ok(())
}

/// Adds `docs.conflicts` (the versions beside the winner) and fills it from the stored states.
fn conflict_counts(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch(
        "ALTER TABLE docs ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0;
         CREATE INDEX docs_conflicted ON docs (collection, doc_id) WHERE conflicts > 0;",
    )?;
    let rows: Vec<(String, String, Vec<u8>)> = {
        let mut stmt = tx.prepare("SELECT collection, doc_id, state FROM docs")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (collection, id, state) in rows {
        let n = crate::tx::decode_state(&state)?.conflicts().len();
        if n > 0 {
            tx.execute(
                "UPDATE docs SET conflicts = ?3 WHERE collection = ?1 AND doc_id = ?2",
                params![collection, id, n as i64],
            )?;
        }
    }
    Ok(())
}
