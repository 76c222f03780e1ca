//! The counts `/v1/status` shows are kept by every write rather than counted at each read:
//! after any mix of writes, and after a reopen, they equal a count of the rows themselves.

mod common;

use std::collections::BTreeMap;

use common::{INLINE, NOW_MS, coll, del, put, remote_state, setup};
use ragsync_core::{CollectionName, CollectionSettings, ContentId, DocId, Hlc};
use ragsync_store::Store;

/// (documents, tombstones, contents, content bytes) as the store reports them.
fn reported(s: &Store) -> (u64, u64, u64, u64) {
    let st = s.stats().unwrap();
    (st.documents, st.tombstones, st.contents, st.content_bytes)
}

/// The live documents of each collection that holds any, as the store reports them and as
/// counted from the rows.
/// Live documents by collection name.
type PerCollection = Vec<(String, u64)>;

fn per_collection(s: &Store, dir: &std::path::Path) -> (PerCollection, PerCollection) {
    let db = rusqlite::Connection::open(dir.join("ragsync.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT collection, count(*) FROM docs WHERE deleted = 0 GROUP BY collection")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .unwrap();
    let mut counted: Vec<_> = rows.map(Result::unwrap).collect();
    counted.sort();
    (s.document_counts().unwrap().into_iter().collect(), counted)
}

/// The same four, counted from the rows (documents only in live collections).
fn counted(dir: &std::path::Path) -> (u64, u64, u64, u64) {
    let db = rusqlite::Connection::open(dir.join("ragsync.db")).unwrap();
    let n = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64;
    (
        n("SELECT count(*) FROM docs d JOIN collections c \
           ON c.name = d.collection AND c.deleted = 0 WHERE d.deleted = 0"),
        n("SELECT count(*) FROM docs WHERE deleted = 1"),
        n("SELECT count(*) FROM contents"),
        n("SELECT coalesce(sum(len), 0) FROM contents"),
    )
}

#[test]
fn every_kind_of_write_keeps_the_counts_equal_to_the_rows() {
    let (dir, s) = setup();
    let check = |s: &Store, what: &str| {
        assert_eq!(reported(s), counted(dir.path()), "after {what}");
        let (kept, rows) = per_collection(s, dir.path());
        assert_eq!(kept, rows, "per collection, after {what}");
    };
    check(&s, "nothing");
    s.write(
        &coll(),
        vec![put("a", "one"), put("b", "two"), put("c", "one")],
    )
    .unwrap();
    check(&s, "three puts sharing a content");
    assert_eq!(reported(&s), (3, 0, 2, 6));
    s.write(&coll(), vec![put("a", "one"), put("b", "two again")])
        .unwrap();
    check(&s, "an unchanged write and an update");
    s.write(&coll(), vec![del("a")]).unwrap();
    check(&s, "a delete");
    s.write(&coll(), vec![put("a", "back")]).unwrap();
    check(&s, "a write over a tombstone");
    // A batch that fails part-way stores nothing, counts included.
    let failed = s.write(&coll(), vec![put("d", "new text"), del("nobody")]);
    assert!(failed.is_err());
    check(&s, "a batch refused");
    assert_eq!(reported(&s).0, 3);
    // Replicated states: a new document whose content is wanted, one that replaces a local
    // state, and one that deletes.
    let hlc = |n: u16| Hlc::new(NOW_MS + 60_000, n);
    let new = remote_state(7, hlc(1), "from a peer");
    s.merge_remote(&coll(), &DocId::new("r").unwrap(), &new, &BTreeMap::new())
        .unwrap();
    check(&s, "a replicated document without its content");
    assert!(s.put_wanted(b"from a peer").unwrap());
    check(&s, "its content fetched");
    let mut gone = remote_state(7, hlc(2), "x");
    gone.delete(ragsync_core::Stamp::new(hlc(3), ragsync_core::NodeId(7)));
    s.merge_remote(&coll(), &DocId::new("b").unwrap(), &gone, &BTreeMap::new())
        .unwrap();
    check(&s, "a replicated delete");
    let text = "inline from a peer";
    let inline = BTreeMap::from([(ContentId::of(text.as_bytes()), text.as_bytes().to_vec())]);
    let with_bytes = remote_state(8, hlc(4), text);
    s.merge_remote(&coll(), &DocId::new("c").unwrap(), &with_bytes, &inline)
        .unwrap();
    check(
        &s,
        "a replicated state with its bytes, in conflict with a local one",
    );
    // Pages from a peer apply row by row under savepoints; a bad row is parked.
    let page = s.changes(0, 100, INLINE).unwrap();
    let (dir2, s2) = setup();
    let inline: BTreeMap<_, _> = page.contents.iter().cloned().collect();
    s2.apply_page(&ragsync_store::Page {
        peer: s.node_id(),
        epoch: s.epoch(),
        since: 0,
        rows: &page.entries,
        inline: &inline,
        embeddings: &page.embeddings,
        next_since: page.next_since,
        head: page.head,
    })
    .unwrap();
    assert_eq!(reported(&s2), counted(dir2.path()), "after a page applied");
    assert_eq!(reported(&s2).0, reported(&s).0);
    // A second collection, then the first deleted: its documents become tombstones.
    let other = CollectionName::new("other").unwrap();
    s.put_collection(&other, CollectionSettings::default())
        .unwrap();
    s.write(&other, vec![put("o", "elsewhere")]).unwrap();
    check(&s, "a second collection");
    s.delete_collection(&coll()).unwrap();
    check(&s, "a collection deleted");
    assert_eq!(reported(&s).0, 1);
    drop(s);
    let s = common::open(dir.path());
    check(&s, "a reopen");
}

#[test]
fn a_store_written_before_the_counts_gets_them_from_its_rows() {
    let (dir, s) = setup();
    s.write(
        &coll(),
        vec![put("a", "one"), put("b", "two"), put("c", "one")],
    )
    .unwrap();
    s.write(&coll(), vec![del("b")]).unwrap();
    let other = CollectionName::new("other").unwrap();
    s.put_collection(&other, CollectionSettings::default())
        .unwrap();
    s.write(&other, vec![put("o", "elsewhere")]).unwrap();
    let want = reported(&s);
    assert_eq!(want, (3, 1, 3, 15));
    drop(s);
    // Runs `sql` on the closed store, then opens it again (migrating it).
    let reopened_after = |sql: &str| {
        let db = rusqlite::Connection::open(dir.path().join("ragsync.db")).unwrap();
        db.execute_batch(sql).unwrap();
        drop(db);
        common::open(dir.path())
    };
    // As the build before the counts left it: schema 11, no counts tables.
    let s = reopened_after(
        "DROP TABLE doc_counts; DROP TABLE content_counts; PRAGMA user_version = 11;",
    );
    assert_eq!(reported(&s), want);
    drop(s);
    // Counts gone wrong are counted again by the same migration.
    let s = reopened_after("UPDATE doc_counts SET live = 99; PRAGMA user_version = 11;");
    assert_eq!(reported(&s), want);
    s.write(&coll(), vec![put("b", "two")]).unwrap();
    assert_eq!(reported(&s), counted(dir.path()));
    assert_eq!(reported(&s).0, 4);
}
