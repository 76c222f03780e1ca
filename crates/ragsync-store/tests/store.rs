//! Store tests: writes, atomicity, restart, locking, merges from other nodes, and the change
//! feed's paging property.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use ragsync_core::doc::Body;
use ragsync_core::{
    CollectionName, CollectionSettings, ContentId, ContentRef, DocId, DocState, Hlc, NodeId,
    PhysicalClock, Stamp,
};
use ragsync_store::{
    DocOp, FeedItem, InlinePolicy, OpKind, Store, StoreError, StoreOptions, WriteEffect,
};

const INLINE: InlinePolicy = InlinePolicy {
    max_content_bytes: 65_536,
    max_page_bytes: 1 << 20,
};

/// A physical clock that stands still unless moved: every write shares one millisecond.
struct ManualClock(AtomicU64);

impl PhysicalClock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const NOW_MS: u64 = 1_800_000_000_000;

fn open(dir: &std::path::Path) -> Store {
    let clock = Arc::new(ManualClock(AtomicU64::new(NOW_MS)));
    Store::open(
        dir,
        StoreOptions {
            clock,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn coll() -> CollectionName {
    CollectionName::new("c").unwrap()
}

fn put(id: &str, text: &str) -> DocOp {
    DocOp {
        id: DocId::new(id).unwrap(),
        if_match: None,
        kind: OpKind::Put {
            title: None,
            metadata: Default::default(),
            content: text.as_bytes().to_vec(),
            content_type: "text/plain".into(),
        },
    }
}

fn del(id: &str) -> DocOp {
    DocOp {
        id: DocId::new(id).unwrap(),
        if_match: None,
        kind: OpKind::Delete,
    }
}

fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put_collection(&coll(), CollectionSettings::default())
        .unwrap();
    (dir, store)
}

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

#[test]
fn one_process_per_data_directory() {
    let (dir, _s) = setup();
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Locked(_)));
}

fn remote_state(node: u128, hlc: Hlc, text: &str) -> DocState {
    let body = Body {
        title: None,
        metadata: Default::default(),
        content: Some(ContentRef {
            cid: ContentId::of(text.as_bytes()),
            len: text.len() as u64,
            content_type: "text/plain".into(),
        }),
    };
    DocState::create(Stamp::new(hlc, NodeId(node)), body)
}

#[test]
fn merging_a_concurrent_remote_write_keeps_both_versions() {
    let (_d, s) = setup();
    s.write(&coll(), vec![put("a", "local")]).unwrap();
    let id = DocId::new("a").unwrap();
    let remote = remote_state(7, Hlc::new(NOW_MS, 9), "remote");
    assert!(
        s.merge_remote(&coll(), &id, &remote, &Default::default())
            .unwrap()
    );
    let head = s.head_seq().unwrap();
    assert!(
        !s.merge_remote(&coll(), &id, &remote, &Default::default())
            .unwrap(),
        "a known state changes nothing"
    );
    assert_eq!(s.head_seq().unwrap(), head);
    let state = s.get(&coll(), &id).unwrap().unwrap().state;
    assert_eq!(state.versions().len(), 2);
    // A later local write has seen both and resolves the conflict.
    s.write(&coll(), vec![put("a", "resolved")]).unwrap();
    let state = s.get(&coll(), &id).unwrap().unwrap().state;
    assert_eq!(state.versions().len(), 1);
    assert!(state.winner().stamp.hlc > Hlc::new(NOW_MS, 9));
}

#[test]
fn a_far_future_remote_state_is_refused_without_moving_the_clock() {
    let (_d, s) = setup();
    let id = DocId::new("a").unwrap();
    let future = remote_state(7, Hlc::new(NOW_MS + 3_600_000, 0), "future");
    let err = s
        .merge_remote(&coll(), &id, &future, &Default::default())
        .unwrap_err();
    assert_eq!(err.code(), "clock_drift");
    assert!(s.get(&coll(), &id).unwrap().is_none());
    let r = s.write(&coll(), vec![put("b", "x")]).unwrap();
    assert!(
        r[0].version.hlc.physical_ms() < NOW_MS + 1000,
        "clock was poisoned: {:?}",
        r[0].version
    );
}

#[test]
fn forged_states_from_elsewhere_are_refused() {
    let (_d, s) = setup();
    let id = DocId::new("a").unwrap();
    let head = s.head_seq().unwrap();
    // A clock entry ahead of the version's own stamp would hide that node's later writes.
    let mut ahead = remote_state(7, Hlc::new(NOW_MS, 1), "x");
    let v = ahead.versions()[0].clone();
    let mut forged = v.clone();
    forged
        .clock
        .add(Stamp::new(Hlc::new(NOW_MS, 500), NodeId(1)));
    ahead = DocState::new(forged);
    assert_eq!(
        s.merge_remote(&coll(), &id, &ahead, &Default::default())
            .unwrap_err()
            .code(),
        "invalid_state"
    );
    // The same stamp for different content: stamp reuse.
    assert!(
        s.merge_remote(&coll(), &id, &DocState::new(v.clone()), &Default::default())
            .unwrap()
    );
    let reused = remote_state(7, Hlc::new(NOW_MS, 1), "different");
    assert_eq!(
        s.merge_remote(&coll(), &id, &reused, &Default::default())
            .unwrap_err()
            .code(),
        "invalid_state"
    );
    let state = s.get(&coll(), &id).unwrap().unwrap().state;
    assert_eq!(state.versions(), std::slice::from_ref(&v));
    assert_eq!(s.head_seq().unwrap(), head + 1);
}

#[test]
fn remote_metadata_deeper_than_the_ceiling_is_refused() {
    let (_d, s) = setup();
    let id = DocId::new("deep").unwrap();
    let head = s.head_seq().unwrap();
    let mut v = remote_state(7, Hlc::new(NOW_MS, 1), "x").versions()[0].clone();
    let mut deep = serde_json::json!(1);
    for _ in 0..ragsync_core::metadata::MAX_METADATA_DEPTH_CEILING {
        deep = serde_json::json!([deep]);
    }
    v.metadata.insert("a".into(), deep);
    let err = s
        .merge_remote(&coll(), &id, &DocState::new(v), &Default::default())
        .unwrap_err();
    assert_eq!(err.code(), "invalid_state");
    assert_eq!(s.head_seq().unwrap(), head);
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
    };
    let page = s.changes(0, 100, none).unwrap();
    assert!(page.contents.is_empty());
    assert_eq!(page.entries.len(), 11);
    // A row whose contents alone pass the budget still travels, alone: no row is stuck.
    let tiny = InlinePolicy {
        max_content_bytes: 65_536,
        max_page_bytes: 10,
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
fn a_version_read_back_from_disk_merges_as_itself() {
    // Metadata doubles must survive the disk byte for byte, or the same version arriving again
    // would look like a stamp reused for other content.
    let dir = tempfile::tempdir().unwrap();
    let id = DocId::new("a").unwrap();
    let mut state = remote_state(7, Hlc::new(NOW_MS, 1), "x");
    let mut v = state.versions()[0].clone();
    let mut bits = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..2000 {
        // Doubles from random bit patterns: every exponent, subnormals included.
        bits ^= bits << 13;
        bits ^= bits >> 7;
        bits ^= bits << 17;
        let f = f64::from_bits(bits);
        if f.is_finite() {
            v.metadata.insert(format!("f{i}"), serde_json::json!(f));
        }
    }
    state = DocState::new(v);
    {
        let s = open(dir.path());
        s.put_collection(&coll(), CollectionSettings::default())
            .unwrap();
        assert!(
            s.merge_remote(&coll(), &id, &state, &Default::default())
                .unwrap()
        );
    }
    let s = open(dir.path());
    assert!(
        !s.merge_remote(&coll(), &id, &state, &Default::default())
            .unwrap(),
        "the same version changes nothing"
    );
    assert_eq!(s.get(&coll(), &id).unwrap().unwrap().state, state);
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

/// Applies every row of `from`'s feed to `to`, in feed order or reversed.
fn replicate(from: &Store, to: &Store, reversed: bool) {
    let mut rows = from.changes(0, 100_000, INLINE).unwrap().entries;
    if reversed {
        rows.reverse();
    }
    for row in rows {
        match row.item {
            FeedItem::Doc {
                collection,
                id,
                state,
            } => {
                to.merge_remote(&collection, &id, &state, &Default::default())
                    .unwrap();
            }
            FeedItem::Collection(c) => {
                to.merge_remote_collection(&c).unwrap();
            }
        }
    }
}

/// Every row a store holds: collection records and document states, as JSON.
fn everything(s: &Store) -> BTreeMap<String, serde_json::Value> {
    s.changes(0, 100_000, INLINE)
        .unwrap()
        .entries
        .into_iter()
        .map(|e| match e.item {
            FeedItem::Doc {
                collection,
                id,
                state,
            } => (
                format!("doc {collection}/{id}"),
                serde_json::to_value(state).unwrap(),
            ),
            FeedItem::Collection(c) => (
                format!("collection {}", c.name),
                serde_json::to_value(c).unwrap(),
            ),
        })
        .collect()
}

/// Issue 12, item 1: a settings change puts the collection row after its documents in the
/// feed; documents must apply before their collection arrives.
#[test]
fn documents_apply_before_their_collection_arrives() {
    for reversed in [false, true] {
        let (_a_dir, a) = setup();
        a.write(&coll(), vec![put("x", "one"), put("y", "two")])
            .unwrap();
        let mut settings = CollectionSettings::default();
        settings.chunking.max_tokens += 1;
        a.put_collection(&coll(), settings).unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let b = open(b_dir.path());
        replicate(&a, &b, reversed);
        assert_eq!(everything(&b), everything(&a), "reversed: {reversed}");
        let x = b.get(&coll(), &DocId::new("x").unwrap()).unwrap().unwrap();
        assert!(!x.state.is_deleted());
        assert_eq!(b.stats().unwrap().documents, 2);
    }
}

/// Issue 12, item 1: a collection deleted on one node while a document is written on another
/// ends the same on both, whatever order the rows arrive in.
#[test]
fn a_collection_deleted_while_written_elsewhere_ends_the_same_everywhere() {
    for reversed in [false, true] {
        let (_a_dir, a) = setup();
        a.write(&coll(), vec![put("x", "one")]).unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let b = open(b_dir.path());
        replicate(&a, &b, false);
        // Concurrently: A deletes the collection, B writes into it.
        a.delete_collection(&coll()).unwrap();
        b.write(&coll(), vec![put("x", "edited"), put("y", "new")])
            .unwrap();
        replicate(&a, &b, reversed);
        replicate(&b, &a, reversed);
        assert_eq!(everything(&a), everything(&b), "reversed: {reversed}");
        for s in [&a, &b] {
            assert!(s.collection(&coll()).unwrap().is_none());
            assert_eq!(s.stats().unwrap().documents, 0);
        }
    }
}

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
    let ids: Vec<String> = s
        .list(&coll(), None, 100, false)
        .unwrap()
        .iter()
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(ids, ["caf\u{e9}", "zero\u{200B}width"]);
    assert_eq!(s.changes(0, 100, INLINE).unwrap().entries.len(), 3);
    assert_eq!(s.delete_collection(&coll()).unwrap(), 2);
}

/// Issue 12, item 3: a replicated state's contents are stored with it (inline, checked
/// against their id) or recorded as wanted in the same transaction, and fetched bytes are
/// taken only when wanted and when they hash to their id.
#[test]
fn replicated_contents_are_stored_or_wanted_never_unverified() {
    let (_d, s) = setup();
    let small = remote_state(7, Hlc::new(NOW_MS, 1), "small");
    let small_cid = small.winner().content.as_ref().unwrap().cid;
    let inline = BTreeMap::from([(small_cid, b"small".to_vec())]);
    assert!(
        s.merge_remote(&coll(), &DocId::new("a").unwrap(), &small, &inline)
            .unwrap()
    );
    assert_eq!(s.content(&small_cid).unwrap().unwrap(), b"small");

    // Bytes that do not hash to the id they came under: the whole state is refused.
    let forged = remote_state(7, Hlc::new(NOW_MS, 2), "real");
    let forged_cid = forged.winner().content.as_ref().unwrap().cid;
    let lie = BTreeMap::from([(forged_cid, b"not the real bytes".to_vec())]);
    let head = s.head_seq().unwrap();
    let err = s
        .merge_remote(&coll(), &DocId::new("b").unwrap(), &forged, &lie)
        .unwrap_err();
    assert_eq!(err.code(), "invalid_state");
    assert_eq!(s.head_seq().unwrap(), head);
    assert!(s.get(&coll(), &DocId::new("b").unwrap()).unwrap().is_none());

    // Not inline: stored by reference, wanted until fetched.
    let far = remote_state(8, Hlc::new(NOW_MS, 3), "far away");
    let far_cid = far.winner().content.as_ref().unwrap().cid;
    assert!(
        s.merge_remote(&coll(), &DocId::new("c").unwrap(), &far, &BTreeMap::new())
            .unwrap()
    );
    assert_eq!(s.wanted(10).unwrap(), vec![(far_cid, 8)]);
    assert!(!s.put_wanted(b"nobody asked for these").unwrap());
    assert!(
        s.content(&ragsync_core::ContentId::of(b"nobody asked for these"))
            .unwrap()
            .is_none()
    );
    assert!(s.put_wanted(b"far away").unwrap());
    assert!(s.wanted(10).unwrap().is_empty());
    assert_eq!(s.content(&far_cid).unwrap().unwrap(), b"far away");

    // A local write of wanted bytes also fills the want.
    let later = remote_state(9, Hlc::new(NOW_MS, 4), "local too");
    s.merge_remote(&coll(), &DocId::new("d").unwrap(), &later, &BTreeMap::new())
        .unwrap();
    s.write(&coll(), vec![put("e", "local too")]).unwrap();
    assert!(s.wanted(10).unwrap().is_empty());
}

fn doc_row(seq: u64, id: &str, state: DocState) -> ragsync_store::FeedEntry {
    ragsync_store::FeedEntry {
        seq,
        item: FeedItem::Doc {
            collection: coll(),
            id: DocId::new(id).unwrap(),
            state,
        },
    }
}

fn page<'a>(
    rows: &'a [ragsync_store::FeedEntry],
    inline: &'a BTreeMap<ContentId, Vec<u8>>,
    next_since: u64,
    head: u64,
) -> ragsync_store::Page<'a> {
    ragsync_store::Page {
        peer: NodeId(7),
        epoch: ragsync_core::Epoch(1),
        since: rows.first().map_or(next_since, |r| r.seq - 1),
        rows,
        inline,
        next_since,
        head,
    }
}

/// Issue 12, item 2: an invalid row is parked in the transaction that moves the cursor past
/// it, and the rows after it apply; a transient failure (a clock too far ahead) stops the
/// cursor at the row before it; a far-future `next_since` moves nothing.
#[test]
fn a_page_applies_with_its_cursor_parking_invalid_rows_and_stopping_at_transient_ones() {
    let (_d, s) = setup();
    let none = BTreeMap::new();
    let good = |n: u64, id: &str| doc_row(n, id, remote_state(7, Hlc::new(NOW_MS, n as u16), id));
    // A state whose clock claims more than its own stamp: invalid whatever the time.
    let mut forged = remote_state(7, Hlc::new(NOW_MS, 50), "forged").versions()[0].clone();
    forged
        .clock
        .add(Stamp::new(Hlc::new(NOW_MS, 900), NodeId(1)));
    let rows = vec![
        good(1, "a"),
        doc_row(2, "bad", DocState::new(forged)),
        good(3, "b"),
    ];
    let applied = s.apply_page(&page(&rows, &none, 5, 9)).unwrap();
    assert_eq!((applied.changed, applied.cursor), (2, 5));
    assert_eq!(applied.parked.len(), 1);
    assert_eq!(applied.parked[0].0, 2);
    assert_eq!(s.cursor(NodeId(7)).unwrap().unwrap().since, 5);
    let parked = s.parked(None).unwrap();
    assert_eq!(
        (parked.len(), parked[0].code.as_str()),
        (1, "invalid_state")
    );
    assert_eq!(s.stats().unwrap().parked, 1);
    // Still invalid on retry: stays parked.
    assert_eq!(s.retry_parked(Some(NodeId(7))).unwrap(), 0);
    assert_eq!(s.parked(None).unwrap().len(), 1);

    // A clock an hour ahead: transient. Rows before it commit, the cursor stops before it.
    let future = remote_state(7, Hlc::new(NOW_MS + 3_600_000, 0), "future");
    let rows = vec![good(6, "c"), doc_row(7, "future", future), good(8, "d")];
    let applied = s.apply_page(&page(&rows, &none, 8, 9)).unwrap();
    assert_eq!(applied.stopped.map(|e| e.code()), Some("clock_drift"));
    assert_eq!((applied.changed, applied.cursor), (1, 6));
    assert_eq!(s.cursor(NodeId(7)).unwrap().unwrap().since, 6);
    assert!(s.get(&coll(), &DocId::new("d").unwrap()).unwrap().is_none());

    // A next_since past the head the peer reported: refused whole, the cursor stays.
    let rows = vec![good(7, "e")];
    let err = s.apply_page(&page(&rows, &none, 1 << 60, 9)).unwrap_err();
    assert_eq!(err.code(), "invalid_page");
    assert_eq!(s.cursor(NodeId(7)).unwrap().unwrap().since, 6);
    assert!(s.get(&coll(), &DocId::new("e").unwrap()).unwrap().is_none());

    // A page of rows already here (an echo) changes and writes nothing.
    let rows = vec![good(1, "a"), good(3, "b")];
    let head = s.head_seq().unwrap();
    let applied = s.apply_page(&page(&rows, &none, 6, 9)).unwrap();
    assert_eq!((applied.changed, applied.unchanged), (0, 2));
    assert_eq!(s.head_seq().unwrap(), head);
}

/// A row parked for a stamp reused with other content applies on retry once a later write
/// has seen the stamp (the forged version is then dominated, and merges away).
#[test]
fn a_parked_row_applies_on_retry_once_it_can() {
    let (_d, s) = setup();
    let none = BTreeMap::new();
    let honest = remote_state(7, Hlc::new(NOW_MS, 1), "honest");
    s.merge_remote(&coll(), &DocId::new("a").unwrap(), &honest, &none)
        .unwrap();
    let reused = remote_state(7, Hlc::new(NOW_MS, 1), "same stamp, other text");
    let rows = vec![doc_row(1, "a", reused)];
    let applied = s.apply_page(&page(&rows, &none, 1, 1)).unwrap();
    assert_eq!(applied.parked.len(), 1);
    s.write(&coll(), vec![put("a", "resolved locally")])
        .unwrap();
    assert_eq!(s.retry_parked(None).unwrap(), 1);
    assert!(s.parked(None).unwrap().is_empty());
    let state = s
        .get(&coll(), &DocId::new("a").unwrap())
        .unwrap()
        .unwrap()
        .state;
    assert_eq!(state.versions().len(), 1);
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
