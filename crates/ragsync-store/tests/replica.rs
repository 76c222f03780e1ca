//! States from other nodes: merges and their refusals, documents and collections in any order,
//! replicated contents, and pages applied with their peer's cursor (parking, transient stops,
//! retries).

mod common;

use std::collections::BTreeMap;

use common::*;
use ragsync_core::{CollectionSettings, ContentId, DocId, DocState, Hlc, NodeId, Stamp};
use ragsync_store::{FeedItem, Store};

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
/// ends the same on both, whatever order the rows arrive in. The delete hides what it saw,
/// not the writes it did not see: the collection shows with them, as a document's live
/// version beats a concurrent tombstone; deleted again, it is gone on both.
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
            let shown = s.collection(&coll()).unwrap();
            assert!(shown.is_some_and(|c| !c.deleted), "reversed: {reversed}");
            assert_eq!(s.collections().unwrap().len(), 1);
            assert_eq!(s.stats().unwrap().documents, 2);
            assert_eq!(s.stats().unwrap().collections, 1);
        }
        b.delete_collection(&coll()).unwrap();
        replicate(&b, &a, reversed);
        assert_eq!(everything(&a), everything(&b), "reversed: {reversed}");
        for s in [&a, &b] {
            assert!(s.collection(&coll()).unwrap().is_none());
            assert_eq!(s.stats().unwrap().documents, 0);
        }
    }
}

/// A collection that shows only through documents written concurrently with its delete is
/// kept by the first local write to it: that write makes its record live again, so deleting
/// those documents one by one afterwards leaves it, empty, on every node.
#[test]
fn a_local_write_to_a_collection_shown_past_its_delete_keeps_it() {
    let (_a_dir, a) = setup();
    a.write(&coll(), vec![put("x", "one")]).unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let b = open(b_dir.path());
    replicate(&a, &b, false);
    a.delete_collection(&coll()).unwrap();
    b.write(&coll(), vec![put("y", "new")]).unwrap();
    replicate(&a, &b, false);
    replicate(&b, &a, false);
    let record_of = |s: &Store| {
        s.changes(0, 100, INLINE)
            .unwrap()
            .entries
            .into_iter()
            .find_map(|e| match e.item {
                FeedItem::Collection(c) => Some(c),
                _ => None,
            })
            .unwrap()
    };
    assert!(
        record_of(&a).deleted,
        "shown through y, the record still deleted"
    );
    a.write(&coll(), vec![del("y")]).unwrap();
    assert!(!record_of(&a).deleted, "the write made it live again");
    replicate(&a, &b, false);
    assert_eq!(everything(&a), everything(&b));
    for s in [&a, &b] {
        assert!(s.collection(&coll()).unwrap().is_some());
        assert_eq!(s.stats().unwrap().documents, 0);
    }
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
    assert_eq!(s.wanted(None, 10).unwrap(), vec![(far_cid, 8)]);
    assert!(!s.put_wanted(b"nobody asked for these").unwrap());
    assert!(
        s.content(&ragsync_core::ContentId::of(b"nobody asked for these"))
            .unwrap()
            .is_none()
    );
    assert!(s.put_wanted(b"far away").unwrap());
    assert!(s.wanted(None, 10).unwrap().is_empty());
    assert_eq!(s.content(&far_cid).unwrap().unwrap(), b"far away");

    // A local write of wanted bytes also fills the want.
    let later = remote_state(9, Hlc::new(NOW_MS, 4), "local too");
    s.merge_remote(&coll(), &DocId::new("d").unwrap(), &later, &BTreeMap::new())
        .unwrap();
    s.write(&coll(), vec![put("e", "local too")]).unwrap();
    assert!(s.wanted(None, 10).unwrap().is_empty());
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
        embeddings: &[],
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

/// One page of everything `from` holds, with the embeddings of its contents, applied by `to`.
fn pull_all(from: &Store, to: &Store) {
    let policy = ragsync_store::InlinePolicy {
        max_content_bytes: 1 << 20,
        max_page_bytes: 1 << 20,
        embeddings: true,
    };
    let p = from.changes(0, 10_000, policy).unwrap();
    let inline: BTreeMap<ContentId, Vec<u8>> = p.contents.into_iter().collect();
    let applied = to
        .apply_page(&ragsync_store::Page {
            peer: from.node_id(),
            epoch: from.epoch(),
            since: 0,
            rows: &p.entries,
            inline: &inline,
            embeddings: &p.embeddings,
            next_since: p.next_since,
            head: p.head,
        })
        .unwrap();
    assert!(applied.stopped.is_none() && applied.parked.is_empty());
}

/// A client's vectors for unchanged text travel with the version that carries them. Two
/// nodes writing one document concurrently, with the same text and different vectors, end
/// with the winner's vectors on both, whichever pulls first; a later write's vectors replace
/// them everywhere, and an echo of the older version brings nothing back.
#[test]
fn concurrent_client_vectors_for_one_text_converge_on_the_winners() {
    let chunk = ContentId::of(b"the one chunk");
    let with_vector = |v: f32| {
        let mut op = put("d", "same text");
        if let ragsync_store::OpKind::Put { embeddings, .. } = &mut op.kind {
            *embeddings = Some(ragsync_store::ContentEmbeddings {
                model: "external/c".into(),
                content: ContentId::of(b"same text"),
                chunks: vec![chunk],
                vectors: vec![vec![v, 1.0]],
            });
        }
        op
    };
    let vector_of = |s: &Store| s.embeddings("external/c", &[chunk]).unwrap()[0].clone();
    for a_first in [true, false] {
        let (_da, a) = setup();
        let (_db, b) = setup();
        a.write(&coll(), vec![with_vector(1.0)]).unwrap();
        b.write(&coll(), vec![with_vector(2.0)]).unwrap();
        let (first, second) = if a_first { (&a, &b) } else { (&b, &a) };
        pull_all(first, second);
        pull_all(second, first);
        let state = a
            .get(&coll(), &DocId::new("d").unwrap())
            .unwrap()
            .unwrap()
            .state;
        assert_eq!(state.versions().len(), 2, "a conflict");
        let winner_vector = if state.winner().stamp.node == a.node_id() {
            1.0
        } else {
            2.0
        };
        for s in [&a, &b] {
            assert_eq!(
                vector_of(s),
                Some(vec![winner_vector, 1.0]),
                "a first: {a_first}"
            );
        }
        // A later write on the loser's side resolves the conflict; its vectors win everywhere,
        // and pulling the other side again (an echo) changes nothing.
        let loser = if winner_vector == 1.0 { &b } else { &a };
        let other = if winner_vector == 1.0 { &a } else { &b };
        loser.write(&coll(), vec![with_vector(3.0)]).unwrap();
        pull_all(loser, other);
        pull_all(other, loser);
        for s in [&a, &b] {
            assert_eq!(vector_of(s), Some(vec![3.0, 1.0]), "a first: {a_first}");
        }
    }
}
