//! What earlier builds stored, read by this one: each schema migration keeps every document,
//! content and vector reachable, and the layouts the migrations made keep their invariants.

mod common;

use common::*;
use ragsync_core::{CollectionSettings, ContentId, DocId};
use ragsync_store::InlinePolicy;

/// A database written by an earlier build (schema 1) may hold ids in NFD and ids with
/// characters now refused: the NFD ones move to their NFC id (merged with what is there),
/// the others stay readable, listable, in the feed and deletable with their collection.
#[test]
fn ids_stored_by_earlier_builds_stay_reachable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.put_collection(&coll(), CollectionSettings::default())
            .unwrap();
        s.write(&coll(), vec![put("caf\u{e9}", "nfc"), put("other", "nfd")])
            .unwrap();
    }
    {
        let db = rusqlite::Connection::open(dir.path().join("ragsync.db")).unwrap();
        let state: Vec<u8> = db
            .query_row("SELECT state FROM docs WHERE doc_id = 'other'", [], |r| {
                r.get(0)
            })
            .unwrap();
        for (seq, id) in [(100, "cafe\u{301}"), (101, "zero\u{200B}width")] {
            db.execute(
                "INSERT INTO docs (collection, doc_id, seq, deleted, state) VALUES ('c', ?1, ?2, 0, ?3)",
                rusqlite::params![id, seq, state],
            )
            .unwrap();
        }
        db.execute("DELETE FROM docs WHERE doc_id = 'other'", [])
            .unwrap();
        // As schema 1 was: without what later migrations add.
        db.execute_batch(
            "DROP TABLE wanted; DROP TABLE peer_cursors; DROP TABLE parked; DROP TABLE peers;
             DROP TABLE push_cursors; DROP TABLE embeddings; DROP TABLE embedded_contents;
             DROP INDEX docs_conflicted; ALTER TABLE docs DROP COLUMN conflicts;",
        )
        .unwrap();
        db.pragma_update(None, "user_version", 1).unwrap();
    }
    let s = open(dir.path());
    let cafe = s
        .get(&coll(), &DocId::new("caf\u{e9}").unwrap())
        .unwrap()
        .unwrap();
    // Both spellings' states merged: the NFD row's version was written later by the same
    // node, so it has seen the other and wins alone.
    assert_eq!(cafe.state.versions().len(), 1);
    let content = cafe.state.winner().content.as_ref().unwrap();
    assert_eq!(content.cid, ragsync_core::ContentId::of(b"nfd"));
    assert!(cafe.seq > 101, "the merged state gets a new seq");
    let ids = listed_ids(&s);
    assert_eq!(ids, ["caf\u{e9}", "zero\u{200B}width"]);
    assert_eq!(s.changes(0, 100, INLINE).unwrap().entries.len(), 3);
    assert_eq!(s.delete_collection(&coll()).unwrap(), 2);
}

/// Document states stored by a build of schema 10 (a WITHOUT ROWID table keyed by collection
/// and id) are all there after migration 11 moved them to a rowid table: read by id, listed in
/// id order, in the feed in seq order; a rewrite still leaves one row per document.
#[test]
fn document_states_stored_by_earlier_builds_survive_their_new_table() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ["f3", "a1", "c2"];
    {
        let s = open(dir.path());
        s.put_collection(&coll(), CollectionSettings::default())
            .unwrap();
        for id in ids {
            s.write(&coll(), vec![put(id, &format!("text of {id}"))])
                .unwrap();
        }
        s.write(&coll(), vec![del("c2")]).unwrap();
        drop(s);
        let db = rusqlite::Connection::open(dir.path().join("ragsync.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE old_docs (
                 collection TEXT NOT NULL, doc_id TEXT NOT NULL, seq INTEGER NOT NULL,
                 deleted INTEGER NOT NULL, state BLOB NOT NULL,
                 conflicts INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (collection, doc_id)
             ) WITHOUT ROWID;
             INSERT INTO old_docs SELECT collection, doc_id, seq, deleted, state, conflicts FROM docs;
             DROP TABLE docs;
             ALTER TABLE old_docs RENAME TO docs;
             CREATE UNIQUE INDEX docs_by_seq ON docs (seq);
             CREATE INDEX docs_conflicted ON docs (collection, doc_id) WHERE conflicts > 0;",
        )
        .unwrap();
        db.pragma_update(None, "user_version", 10).unwrap();
    }
    let s = open(dir.path());
    let a1 = s.get(&coll(), &DocId::new("a1").unwrap()).unwrap().unwrap();
    assert_eq!(
        a1.state.winner().content.as_ref().unwrap().cid,
        ContentId::of(b"text of a1")
    );
    let listed = listed_ids(&s);
    assert_eq!(
        listed,
        ["a1", "f3"],
        "in id order, the deleted one left out"
    );
    let fed: Vec<u64> = s
        .changes(0, 100, INLINE)
        .unwrap()
        .entries
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(fed.len(), 4, "the collection row and three documents");
    assert!(fed.is_sorted(), "{fed:?}");
    s.write(&coll(), vec![put("a1", "rewritten")]).unwrap();
    drop(s);
    let db = rusqlite::Connection::open(dir.path().join("ragsync.db")).unwrap();
    assert_eq!(rows(&db, "docs"), 3, "the rewrite replaced its row");
    let sql: String = db
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'docs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
}

/// Vectors and chunk lists stored by a build of schema 8 (WITHOUT ROWID tables keyed by model
/// and id) are all there after migrations 9 and 10 moved them to rowid tables indexed by an
/// 8-byte prefix: read by chunk, sent with a feed page, and a later vector still replaces one.
#[test]
fn vectors_stored_by_earlier_builds_survive_their_new_tables() {
    use ragsync_store::ContentEmbeddings;
    let dir = tempfile::tempdir().unwrap();
    let chunks: Vec<ContentId> = (0..3u8).map(|i| ContentId::of(&[i])).collect();
    let vectors: Vec<Vec<f32>> = (0..3).map(|i| vec![i as f32, 0.5, -1.0]).collect();
    let content = ContentId::of(b"three chunks");
    {
        let s = open(dir.path());
        s.put_collection(&coll(), CollectionSettings::default())
            .unwrap();
        s.write(&coll(), vec![put("d", "three chunks")]).unwrap();
        drop(s);
        let db = rusqlite::Connection::open(dir.path().join("ragsync.db")).unwrap();
        db.execute_batch(
            "DROP TABLE embeddings;
             CREATE TABLE embeddings (
                 model TEXT NOT NULL, chunk BLOB NOT NULL, vec BLOB NOT NULL,
                 PRIMARY KEY (model, chunk)
             ) WITHOUT ROWID;
             DROP TABLE embedded_contents;
             CREATE TABLE embedded_contents (
                 model TEXT NOT NULL, content BLOB NOT NULL, chunks BLOB NOT NULL,
                 PRIMARY KEY (content, model)
             ) WITHOUT ROWID;",
        )
        .unwrap();
        for (c, v) in chunks.iter().zip(&vectors) {
            db.execute(
                "INSERT INTO embeddings (model, chunk, vec) VALUES ('m', ?1, ?2)",
                rusqlite::params![&c.as_bytes()[..], ragsync_store::encode_vector(v)],
            )
            .unwrap();
        }
        let list: Vec<u8> = chunks.iter().flat_map(|c| c.0).collect();
        db.execute(
            "INSERT INTO embedded_contents (model, content, chunks) VALUES ('m', ?1, ?2)",
            rusqlite::params![&content.as_bytes()[..], list],
        )
        .unwrap();
        db.pragma_update(None, "user_version", 8).unwrap();
    }
    let s = open(dir.path());
    let got: Vec<Vec<f32>> = s
        .embeddings("m", &chunks)
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(got, vectors);
    let with_embeddings = InlinePolicy {
        embeddings: true,
        ..INLINE
    };
    let sent = s.changes(0, 100, with_embeddings).unwrap().embeddings;
    let want = ContentEmbeddings {
        model: "m".into(),
        content,
        chunks: chunks.clone(),
        vectors: vectors.clone(),
    };
    assert_eq!(sent, [want]);
    let replaced = ContentEmbeddings {
        model: "m".into(),
        content: ContentId::of(b"content"),
        chunks: vec![chunks[1]],
        vectors: vec![vec![9.0, 9.0, 9.0]],
    };
    s.put_embeddings(&[replaced]).unwrap();
    let got = s.embeddings("m", &chunks[..2]).unwrap();
    assert_eq!(got[0].as_deref(), Some(&vectors[0][..]));
    assert_eq!(got[1].as_deref(), Some(&[9.0f32, 9.0, 9.0][..]));
    drop(s);
    let db = rusqlite::Connection::open(dir.path().join("ragsync.db")).unwrap();
    assert_eq!(
        rows(&db, "embeddings"),
        3,
        "the replaced vector's old row is gone"
    );
    let mut stmt = db
        .prepare(
            "SELECT name, sql FROM sqlite_schema \
             WHERE tbl_name IN ('embeddings', 'embedded_contents') ORDER BY name",
        )
        .unwrap();
    let schema: Vec<(String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let names: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "embedded_contents",
            "embedded_contents_by_content",
            "embeddings",
            "embeddings_by_chunk"
        ],
        "no index on the whole ids is left"
    );
    assert!(
        schema
            .iter()
            .all(|(_, sql)| !sql.as_deref().unwrap_or("").contains("WITHOUT ROWID")),
        "{schema:?}"
    );
}

/// The embedding tables are indexed by 8 bytes of a 32-byte id: ids that share those 8 bytes
/// (a collision a peer could craft) are still kept, read and replaced apart.
#[test]
fn ids_sharing_their_index_prefix_are_kept_apart() {
    use ragsync_store::ContentEmbeddings;
    let (_d, s) = setup();
    let twin = |last: u8| {
        let mut id = [7u8; 32];
        id[31] = last;
        ContentId(id)
    };
    let (a, b) = (twin(1), twin(2));
    s.write(&coll(), vec![put("d", "text")]).unwrap();
    let content = ContentId::of(b"text");
    let set = |chunk: ContentId, x: f32| ContentEmbeddings {
        model: "m".into(),
        content,
        chunks: vec![chunk],
        vectors: vec![vec![x, x]],
    };
    s.put_embeddings(&[set(a, 1.0)]).unwrap();
    s.put_embeddings(&[set(b, 2.0)]).unwrap();
    let got = s.embeddings("m", &[a, b, twin(3)]).unwrap();
    assert_eq!(got, [Some(vec![1.0, 1.0]), Some(vec![2.0, 2.0]), None]);
    assert_eq!(s.embeddings("other", &[a]).unwrap(), [None]);
    // The content's chunk list was replaced by the second set, not doubled.
    let with_embeddings = InlinePolicy {
        embeddings: true,
        ..INLINE
    };
    assert_eq!(
        s.changes(0, 100, with_embeddings).unwrap().embeddings,
        [set(b, 2.0)]
    );
    s.put_embeddings(&[set(a, 3.0)]).unwrap();
    let got = s.embeddings("m", &[a, b]).unwrap();
    assert_eq!(got, [Some(vec![3.0, 3.0]), Some(vec![2.0, 2.0])]);
}

/// Rows of `table` in the database `db`.
fn rows(db: &rusqlite::Connection, table: &str) -> i64 {
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}
