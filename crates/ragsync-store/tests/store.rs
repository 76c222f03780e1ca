//! Store tests: writes, atomicity, restart, locking, the data directory, group commit, and the
//! change feed's paging property. States from other nodes are in `replica.rs`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use ragsync_core::{CollectionSettings, ContentId, DocId, Hlc, NodeId, Stamp};
use ragsync_store::{FeedItem, InlinePolicy, Store, StoreError, StoreOptions, WriteEffect};

#[test]
fn write_read_update_unchanged_delete() {
    let (_d, s) = setup();
    let r = s.write(&coll(), vec![put("a", "one")]).unwrap();
    assert_eq!(r[0].effect, WriteEffect::Created);
    let r2 = s.write(&coll(), vec![put("a", "one")]).unwrap();
    assert_eq!(r2[0].effect, WriteEffect::Unchanged);
    assert_eq!(r2[0].version, r[0].version);
    let r3 = s.write(&coll(), vec![put("a", "two")]).unwrap();
    assert_eq!(r3[0].effect, WriteEffect::Updated);
    assert!(r3[0].version > r[0].version);
    let doc = s.get(&coll(), &DocId::new("a").unwrap()).unwrap().unwrap();
    let cid = doc.state.winner().content.as_ref().unwrap().cid;
    assert_eq!(s.content(&cid).unwrap().unwrap(), b"two");
    let r4 = s.write(&coll(), vec![del("a")]).unwrap();
    assert_eq!(r4[0].effect, WriteEffect::Deleted);
    assert!(
        s.get(&coll(), &DocId::new("a").unwrap())
            .unwrap()
            .unwrap()
            .state
            .is_deleted()
    );
    assert_eq!(
        s.write(&coll(), vec![del("a")]).unwrap()[0].effect,
        WriteEffect::Unchanged
    );
    assert!(matches!(
        s.write(&coll(), vec![del("nope")]),
        Err(StoreError::DocumentNotFound(_))
    ));
}

#[test]
fn a_batch_is_all_or_nothing() {
    let (_d, s) = setup();
    let head = s.head_seq().unwrap();
    let mut bad = put("b", "x");
    bad.if_match = Some(Stamp::new(Hlc(1), NodeId(1)).to_string());
    let err = s
        .write(&coll(), vec![put("a", "x"), bad, put("c", "y")])
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionMismatch { .. }));
    assert_eq!(s.head_seq().unwrap(), head);
    assert!(s.get(&coll(), &DocId::new("a").unwrap()).unwrap().is_none());
    assert_eq!(s.stats().unwrap().contents, 0);
}

#[test]
fn content_is_stored_once_and_ranges_read_in_place() {
    let (_d, s) = setup();
    s.write(
        &coll(),
        vec![put("a", "same bytes"), put("b", "same bytes")],
    )
    .unwrap();
    assert_eq!(s.stats().unwrap().contents, 1);
    let cid = ContentId::of(b"same bytes");
    assert_eq!(s.content_range(&cid, 5, 3).unwrap().unwrap(), b"byt");
    assert_eq!(s.content_range(&cid, 8, 100).unwrap().unwrap(), b"es");
    assert_eq!(s.content_len(&cid).unwrap(), Some(10));
}

#[test]
fn restart_keeps_identity_data_and_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (node, epoch, last) = {
        let s = open(dir.path());
        s.put_collection(&coll(), CollectionSettings::default())
            .unwrap();
        let r = s.write(&coll(), vec![put("a", "x")]).unwrap();
        (s.node_id(), s.epoch(), r[0].version)
    };
    let s = open(dir.path());
    assert_eq!((s.node_id(), s.epoch()), (node, epoch));
    // The physical clock is frozen at the same millisecond: only the restored high-water
    // mark keeps the new stamp above the old one.
    let r = s.write(&coll(), vec![put("a", "y")]).unwrap();
    assert!(r[0].version > last);
}

/// Pulled pages commit without waiting for their sync: a crash of the process keeps them (the
/// same boot), a crash of the machine may not. A node that finds the machine rebooted since
/// it last ran, without a clean stop, takes a new epoch; a clean stop, or a crash of the
/// process alone, keeps it.
#[test]
fn a_reboot_after_an_unclean_stop_gives_a_new_epoch() {
    let root = tempfile::tempdir().unwrap();
    let open_on = |dir: &std::path::Path, boot: Option<&str>| {
        Store::open(
            dir,
            StoreOptions {
                boot_id: boot.map(str::to_string),
                // The crash images below are copies; a real crash leaves the same file.
                new_epoch_for_copies: false,
                ..StoreOptions::default()
            },
        )
        .unwrap()
    };
    // What a crash leaves on disk: the files as they are while the store is open.
    let crash_image = |from: &std::path::Path, name: &str| {
        let to = root.path().join(name);
        std::fs::create_dir(&to).unwrap();
        for f in ["ragsync.db", "ragsync.db-wal"] {
            if from.join(f).exists() {
                std::fs::copy(from.join(f), to.join(f)).unwrap();
            }
        }
        to
    };
    let dir = root.path().join("node");
    let s = open_on(&dir, Some("boot-1"));
    s.put_collection(&coll(), CollectionSettings::default())
        .unwrap();
    let epoch = s.epoch();
    let crashed = crash_image(&dir, "crashed");
    drop(s);

    let s = open_on(&dir, Some("boot-2"));
    assert_eq!(
        s.epoch(),
        epoch,
        "a clean stop keeps the epoch across a reboot"
    );
    drop(s);
    let s = open_on(&crashed, Some("boot-1"));
    assert_eq!(s.epoch(), epoch, "a crash of the process alone keeps it");
    let crashed_again = crash_image(&crashed, "crashed-again");
    drop(s);
    let s = open_on(&crashed_again, Some("boot-2"));
    assert_ne!(s.epoch(), epoch, "a reboot after a crash gives a new epoch");
    assert!(
        s.collection(&coll()).unwrap().is_some(),
        "and keeps the data"
    );
    let renewed = s.epoch();
    drop(s);
    let s = open_on(&crashed_again, Some("boot-2"));
    assert_eq!(s.epoch(), renewed, "the new epoch is durable");
    drop(s);
    // Where the boot cannot be known, nothing is left unsynced and nothing changes.
    let s = open_on(&crashed_again, None);
    assert_eq!(s.epoch(), renewed);
    let unknown = crash_image(&crashed_again, "unknown-boot");
    drop(s);
    assert_eq!(open_on(&unknown, Some("boot-3")).epoch(), renewed);
}

#[test]
fn one_process_per_data_directory() {
    let (dir, _s) = setup();
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Locked(_)));
}

#[test]
fn feed_pages_are_cut_at_the_inline_byte_budget() {
    let (_d, s) = setup();
    let big = "y".repeat(3000);
    let ops = (0..10)
        .map(|i| put(&format!("d{i}"), &format!("{i}{big}")))
        .collect();
    s.write(&coll(), ops).unwrap();
    let small = InlinePolicy {
        max_content_bytes: 65_536,
        max_page_bytes: 10_000,
        embeddings: false,
    };
    let mut cursor = 0;
    let mut seen = 0;
    loop {
        let page = s.changes(cursor, 100, small).unwrap();
        let inline: usize = page.contents.iter().map(|(_, b)| b.len()).sum();
        assert!(inline <= 10_000, "{inline} bytes inline");
        seen += page.entries.len();
        cursor = page.next_since;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(
        seen, 11,
        "the collection row and every document, none skipped"
    );
    // Contents above the inline size stay out of pages.
    let none = InlinePolicy {
        max_content_bytes: 100,
        max_page_bytes: 1 << 20,
        embeddings: false,
    };
    let page = s.changes(0, 100, none).unwrap();
    assert!(page.contents.is_empty());
    assert_eq!(page.entries.len(), 11);
    // A row whose contents alone pass the budget still travels, alone: no row is stuck.
    let tiny = InlinePolicy {
        max_content_bytes: 65_536,
        max_page_bytes: 10,
        embeddings: false,
    };
    let (mut cursor, mut seen) = (0, 0);
    loop {
        let page = s.changes(cursor, 100, tiny).unwrap();
        let docs = page
            .entries
            .iter()
            .filter(|e| matches!(e.item, FeedItem::Doc { .. }))
            .count();
        assert!(docs <= 1, "{docs} documents in one page");
        seen += page.entries.len();
        cursor = page.next_since;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen, 11);
}

#[test]
fn paging_while_writing_misses_nothing() {
    let (_d, s) = setup();
    s.write(
        &coll(),
        (0..50).map(|i| put(&format!("d{i}"), "v0")).collect(),
    )
    .unwrap();
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    let mut cursor = 0;
    let mut round = 0;
    loop {
        let page = s.changes(cursor, 7, INLINE).unwrap();
        for e in &page.entries {
            if let FeedItem::Doc { id, .. } = &e.item {
                latest.insert(id.to_string(), e.seq);
            }
        }
        cursor = page.next_since;
        round += 1;
        if round < 6 {
            // Between pages: update documents already read and ones not read yet, add new ones.
            let ops = vec![
                put("d1", &format!("r{round}")),
                put("d40", &format!("r{round}")),
                put(&format!("n{round}"), "new"),
            ];
            s.write(&coll(), ops).unwrap();
        }
        if !page.has_more {
            break;
        }
    }
    // Every document was read at its final state.
    let truth = s.changes(0, 1_000_000, INLINE).unwrap();
    for e in truth.entries {
        if let FeedItem::Doc { id, .. } = &e.item {
            assert_eq!(
                latest.get(id.as_str()),
                Some(&e.seq),
                "{id} not read at its latest seq"
            );
        }
    }
}

/// One collection's changes past a `seq`, whichever way they are read (its own rows when it
/// is the smaller, the feed's past `since` when that is): the same rows, in `seq` order, with
/// the head and the record's `seq` of one snapshot.
#[test]
fn one_collection_s_changes_are_read_past_a_seq() {
    let (_d, s) = setup();
    let small = ragsync_core::CollectionName::new("small").unwrap();
    s.put_collection(&small, CollectionSettings::default())
        .unwrap();
    s.write(
        &coll(),
        (0..100).map(|i| put(&format!("d{i}"), "v0")).collect(),
    )
    .unwrap();
    let since = s.head_seq().unwrap();
    s.write(&small, vec![put("x", "1"), put("y", "1")]).unwrap();
    s.write(&coll(), vec![put("d7", "v1"), put("new", "v1")])
        .unwrap();
    s.write(&small, vec![put("x", "2")]).unwrap();
    let head = s.head_seq().unwrap();
    let seqs = |rows: &ragsync_store::CollectionChanges| -> Vec<(u64, String)> {
        rows.docs
            .iter()
            .map(|(seq, id, _)| (*seq, id.to_string()))
            .collect()
    };
    // 100 documents against 5 rows past `since`: read by `seq`.
    let big = s.collection_changes(&coll(), since, 10).unwrap();
    assert_eq!(
        seqs(&big),
        [(since + 3, "d7".into()), (since + 4, "new".into())]
    );
    assert_eq!((big.head, big.has_more), (head, false));
    assert!(big.record_seq.is_some_and(|r| r < since));
    // 2 documents against 5 rows: read by collection; y's row is older than x's latest.
    let rows = s.collection_changes(&small, since, 10).unwrap();
    assert_eq!(
        seqs(&rows),
        [(since + 2, "y".into()), (since + 5, "x".into())]
    );
    let one = s.collection_changes(&small, since, 1).unwrap();
    assert_eq!((seqs(&one).len(), one.has_more), (1, true));
    // The whole feed: the collection is the smaller; nothing past the head.
    assert_eq!(
        s.collection_changes(&coll(), 0, 1000).unwrap().docs.len(),
        101
    );
    assert!(
        s.collection_changes(&small, head, 10)
            .unwrap()
            .docs
            .is_empty()
    );
    let none = ragsync_core::CollectionName::new("none").unwrap();
    let missing = s.collection_changes(&none, 0, 10).unwrap();
    assert!(missing.docs.is_empty() && missing.record_seq.is_none());
}

#[test]
fn a_seq_is_never_given_out_twice_even_when_the_newest_rows_go() {
    let dir = tempfile::tempdir().unwrap();
    let top = {
        let s = open(dir.path());
        s.put_collection(&coll(), CollectionSettings::default())
            .unwrap();
        s.write(&coll(), vec![put("a", "x"), put("b", "y")])
            .unwrap();
        s.head_seq().unwrap()
    };
    // What a tombstone purge will do: remove the rows holding the highest seqs.
    let raw = rusqlite::Connection::open(dir.path().join("ragsync.db")).unwrap();
    raw.execute("DELETE FROM docs WHERE seq >= ?1", [top as i64 - 1])
        .unwrap();
    drop(raw);
    let s = open(dir.path());
    assert_eq!(s.head_seq().unwrap(), top);
    s.write(&coll(), vec![put("c", "z")]).unwrap();
    assert_eq!(s.head_seq().unwrap(), top + 1);
}

#[test]
fn deleting_a_collection_tombstones_its_documents() {
    let (_d, s) = setup();
    s.write(&coll(), vec![put("a", "x"), put("b", "y")])
        .unwrap();
    assert_eq!(s.delete_collection(&coll()).unwrap(), 2);
    assert!(s.collection(&coll()).unwrap().is_none());
    assert!(matches!(
        s.write(&coll(), vec![put("a", "x")]),
        Err(StoreError::CollectionNotFound(_))
    ));
    let st = s.stats().unwrap();
    assert_eq!((st.documents, st.tombstones, st.collections), (0, 2, 0));
}

#[derive(Clone, Debug)]
enum Step {
    /// A batch of puts of these ids (ids may repeat: overwrites).
    Batch(Vec<u8>),
    Delete(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop::collection::vec(0u8..60, 1..80).prop_map(Step::Batch),
        1 => (0u8..60).prop_map(Step::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Paging the feed with any limit from any `since` returns every current row with
    /// `seq > since` exactly once, in `seq` order; `next_since` never skips a row.
    #[test]
    fn feed_pages_return_every_current_state_once(
        steps in prop::collection::vec(step(), 1..12),
        limit in prop::sample::select(vec![1usize, 2, 7, 500, 10_000]),
        since_pick in any::<prop::sample::Index>(),
    ) {
        let (_d, s) = setup();
        let mut n = 0u32;
        for st in &steps {
            match st {
                Step::Batch(ids) => {
                    let ops = ids.iter().map(|i| { n += 1; put(&format!("d{i}"), &format!("v{n}")) }).collect();
                    s.write(&coll(), ops).unwrap();
                }
                Step::Delete(i) => { let _ = s.write(&coll(), vec![del(&format!("d{i}"))]); }
            }
        }
        // The truth: every row's current seq, read through the feed in one big page.
        let all = s.changes(0, 1_000_000, INLINE).unwrap();
        prop_assert!(!all.has_more);
        let truth: BTreeMap<u64, String> = all.entries.iter().map(|e| (e.seq, match &e.item {
            FeedItem::Doc { id, .. } => id.to_string(),
            FeedItem::Collection(c) => format!("collection {}", c.name),
        })).collect();
        prop_assert_eq!(truth.len(), all.entries.len(), "a seq appeared twice");
        let head = s.head_seq().unwrap();
        prop_assert_eq!(truth.keys().last().copied(), Some(head));

        let seqs: Vec<u64> = std::iter::once(0).chain(truth.keys().copied()).collect();
        let since = *since_pick.get(&seqs);
        let mut got = Vec::new();
        let mut cursor = since;
        loop {
            let page = s.changes(cursor, limit, INLINE).unwrap();
            prop_assert!(page.entries.len() <= limit);
            for e in &page.entries {
                prop_assert!(e.seq > cursor);
                got.push(e.seq);
            }
            prop_assert!(page.next_since >= cursor);
            cursor = page.next_since;
            if !page.has_more { break; }
        }
        let expected: Vec<u64> = truth.keys().copied().filter(|q| *q > since).collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(cursor, head.max(since));
    }
}

/// A new node (a new id) is made only where no database is: an empty or foreign database
/// file, a data path that is a file, or a directory of other files is refused, untouched.
#[test]
fn a_node_is_made_only_in_an_empty_directory() {
    let open = |dir: &std::path::Path, init: bool| {
        Store::open(
            dir,
            StoreOptions {
                init_in_nonempty_dir: init,
                ..StoreOptions::default()
            },
        )
    };
    let root = tempfile::tempdir().unwrap();
    for (name, contents) in [("empty", &b""[..]), ("foreign", b"not a database at all")] {
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("ragsync.db"), contents).unwrap();
        let err = open(&dir, true).err().expect("refused");
        assert_eq!(err.code(), "invalid_data_dir", "{err}");
        assert!(err.to_string().contains("ragsync.db"), "{err}");
        assert_eq!(std::fs::read(dir.join("ragsync.db")).unwrap(), contents);
        assert!(
            !dir.join("LOCK").exists(),
            "a refused directory was changed"
        );
    }

    let file = root.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = open(&file, false).err().expect("refused");
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert!(err.to_string().contains("a-file"), "{err}");

    let busy = root.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), b"mine").unwrap();
    let err = open(&busy, false).err().expect("refused");
    assert!(err.to_string().contains("--init"), "{err}");
    assert_eq!(
        std::fs::read_dir(&busy).unwrap().count(),
        1,
        "left as found"
    );
    let id = open(&busy, true).unwrap().node_id();
    // Made once; later opens keep the same node.
    assert_eq!(open(&busy, false).unwrap().node_id(), id);

    // A start that crashed while making the database left only its temporary file.
    let crashed = root.path().join("crashed");
    std::fs::create_dir(&crashed).unwrap();
    std::fs::write(crashed.join("ragsync.db.init"), b"half").unwrap();
    let s = open(&crashed, false).unwrap();
    assert!(!crashed.join("ragsync.db.init").exists());
    drop(s);
}

/// Merging a state the node already has, or writing what a document already holds, changes
/// nothing on disk: no page is written to the WAL (so nothing is synced).
#[test]
fn writes_that_change_nothing_write_nothing() {
    let (d, s) = setup();
    let id = DocId::new("a").unwrap();
    let state = remote_state(7, Hlc::new(NOW_MS, 1), "known");
    assert!(
        s.merge_remote(&coll(), &id, &state, &Default::default())
            .unwrap()
    );
    s.write(&coll(), vec![put("b", "same")]).unwrap();
    let wal = d.path().join("ragsync.db-wal");
    let size = || std::fs::metadata(&wal).unwrap().len();
    let (before, head) = (size(), s.head_seq().unwrap());
    for _ in 0..20 {
        assert!(
            !s.merge_remote(&coll(), &id, &state, &Default::default())
                .unwrap()
        );
        let r = s.write(&coll(), vec![put("b", "same")]).unwrap();
        assert_eq!(r[0].effect, ragsync_store::WriteEffect::Unchanged);
    }
    assert_eq!(
        (size(), s.head_seq().unwrap()),
        (before, head),
        "no-op writes wrote to the WAL"
    );
    // A real change still lands, with a clock past everything before it.
    let r = s.write(&coll(), vec![put("b", "new")]).unwrap();
    assert!(size() > before && r[0].version > state.winner().stamp);
}

/// Issue 12, item 7: concurrent single-document writes are committed in groups; each write
/// gets its own answer (a failing conditional write fails alone, the others in its group
/// commit) and nothing of a failed write is kept.
#[test]
fn concurrent_writes_commit_in_groups_each_with_its_own_answer() {
    let (_d, s) = setup();
    let s = Arc::new(s);
    const THREADS: usize = 16;
    const WRITES: usize = 30;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut failed = 0;
                for i in 0..WRITES {
                    let mut op = put(&format!("t{t}-{i}"), &format!("text {t} {i}"));
                    if i % 4 == 3 {
                        // A conditional write on a version that never existed: refused.
                        op.if_match = Some(format!("{}", Stamp::new(Hlc::new(1, 1), NodeId(1))));
                    }
                    match s.write(&coll(), vec![op]) {
                        Ok(r) => assert_eq!(r[0].effect, WriteEffect::Created),
                        Err(e) => {
                            assert_eq!(e.code(), "version_conflict");
                            failed += 1;
                        }
                    }
                }
                failed
            })
        })
        .collect();
    let failed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(failed, THREADS * (0..WRITES).filter(|i| i % 4 == 3).count());
    let stored = s.list(&coll(), None, 10_000, false).unwrap();
    assert_eq!(stored.len(), THREADS * WRITES - failed);
    assert!(stored.iter().all(|d| {
        let i: usize = d.id.as_str().rsplit('-').next().unwrap().parse().unwrap();
        i % 4 != 3
    }));
    let (commits, writes) = s.group_commit_stats();
    assert_eq!(writes as usize, THREADS * WRITES);
    assert!(commits <= writes);
    eprintln!("{writes} writes from {THREADS} threads in {commits} commits");
}

/// A restored backup has lost the changes made after it, and would give their `seq`s to new
/// ones: a peer whose cursor is past them would never see those. A copy of the database (a
/// backup put back, a directory copied elsewhere) takes a new epoch, so peers read its feed
/// again; the original, or the same file renamed, keeps its epoch.
#[test]
fn a_restored_copy_of_the_database_gets_a_new_epoch() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("node");
    let s = open(&dir);
    s.put_collection(&coll(), CollectionSettings::default())
        .unwrap();
    let epoch = s.epoch();
    drop(s);
    let backup = root.path().join("backup");
    std::fs::create_dir(&backup).unwrap();
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), backup.join(f.file_name())).unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.epoch(), epoch, "the same file keeps its epoch");
    s.write(&coll(), vec![put("after", "written after the backup")])
        .unwrap();
    drop(s);

    // The backup put back where the node lives.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&backup, &dir).unwrap();
    let s = open(&dir);
    assert_ne!(s.epoch(), epoch, "a restored backup starts a new epoch");
    assert!(
        s.collection(&coll()).unwrap().is_some(),
        "and keeps its data"
    );
    let restored = s.epoch();
    drop(s);
    let moved = root.path().join("moved");
    std::fs::rename(&dir, &moved).unwrap();
    assert_eq!(
        open(&moved).epoch(),
        restored,
        "a renamed directory is the same file: the epoch stays"
    );
}
