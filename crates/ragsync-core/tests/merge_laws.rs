//! Property tests of the document-state merge laws (see `ragsync_core::doc`).
//!
//! States come from simulated histories: several nodes write, delete and exchange states in a
//! random order, with physical clocks that may collide, so the states hold concurrent versions,
//! tombstones and equal clock values, as real replicas would.

use proptest::prelude::*;
use ragsync_core::doc::Body;
use ragsync_core::{ContentId, ContentRef, DocState, HlcClock, NodeId, Stamp};

#[derive(Clone, Debug)]
enum Op {
    Write { node: usize, payload: u8 },
    Delete { node: usize },
    Sync { from: usize, to: usize },
    Tick { ms: u64 },
}

const NODES: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..NODES, any::<u8>()).prop_map(|(node, payload)| Op::Write { node, payload }),
        1 => (0..NODES).prop_map(|node| Op::Delete { node }),
        3 => (0..NODES, 0..NODES).prop_map(|(from, to)| Op::Sync { from, to }),
        1 => (0u64..3).prop_map(|ms| Op::Tick { ms }),
    ]
}

fn body(payload: u8) -> Body {
    let bytes = [payload];
    Body {
        title: Some(format!("t{payload}")),
        metadata: Default::default(),
        content: Some(ContentRef {
            cid: ContentId::of(&bytes),
            len: 1,
            content_type: "application/octet-stream".into(),
        }),
    }
}

/// Runs a history and returns every state any node held along the way.
fn run(ops: &[Op]) -> Vec<DocState> {
    let ids: Vec<NodeId> = (0..NODES).map(|i| NodeId(i as u128 + 1)).collect();
    let mut clocks: Vec<HlcClock> = (0..NODES).map(|_| HlcClock::new(60_000)).collect();
    let mut states: Vec<Option<DocState>> = vec![None; NODES];
    let mut now = 1_000u64;
    let mut seen = Vec::new();
    for op in ops {
        match *op {
            Op::Tick { ms } => now += ms,
            Op::Write { node, payload } => {
                let stamp = Stamp::new(clocks[node].tick(now), ids[node]);
                match &mut states[node] {
                    Some(s) => {
                        s.write(stamp, body(payload));
                    }
                    None => states[node] = Some(DocState::create(stamp, body(payload))),
                }
            }
            Op::Delete { node } => {
                let stamp = Stamp::new(clocks[node].tick(now), ids[node]);
                if let Some(s) = &mut states[node] {
                    s.delete(stamp);
                }
            }
            Op::Sync { from, to } => {
                if let Some(src) = states[from].clone() {
                    for v in src.versions() {
                        clocks[to].observe(v.stamp.hlc, now).unwrap();
                    }
                    match &mut states[to] {
                        Some(dst) => {
                            dst.merge(&src);
                        }
                        None => states[to] = Some(src),
                    }
                }
            }
        }
        seen.extend(states.iter().flatten().cloned());
    }
    seen
}

fn merged(a: &DocState, b: &DocState) -> DocState {
    let mut m = a.clone();
    m.merge(b);
    m
}

/// Every version of `input` is in `out`, or `out` holds a version that has seen it.
fn nothing_lost(input: &DocState, out: &DocState) -> bool {
    input.versions().iter().all(|v| {
        out.versions()
            .iter()
            .any(|w| w.stamp == v.stamp || w.has_seen(v))
    })
}

fn history() -> impl Strategy<Value = (Vec<DocState>, [prop::sample::Index; 3])> {
    (
        prop::collection::vec(op(), 1..40),
        [
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
        ],
    )
        .prop_map(|(ops, idx)| (run(&ops), idx))
        .prop_filter("a history with at least one write", |(s, _)| !s.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn merge_is_commutative_associative_idempotent((states, idx) in history()) {
        let [a, b, c] = idx.map(|i| i.get(&states).clone());
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(merged(&a, &a), a.clone());
        let ab = merged(&a, &b);
        prop_assert_eq!(ab.check_invariants(), Ok(()));
        prop_assert!(nothing_lost(&a, &ab) && nothing_lost(&b, &ab));
    }

    #[test]
    fn a_dominating_state_absorbs_the_other((states, idx) in history(), payload in any::<u8>()) {
        // b is a after one more local write or delete: it has seen every version of a.
        let a = idx[0].get(&states).clone();
        let mut clock = HlcClock::new(60_000);
        clock.restore(a.clock().max_hlc());
        let stamp = Stamp::new(clock.tick(0), NodeId(9));
        let mut b = a.clone();
        if payload % 4 == 0 { b.delete(stamp); } else { b.write(stamp, body(payload)); }
        prop_assert_eq!(merged(&a, &b), b.clone());
        prop_assert_eq!(merged(&b, &a), b);
    }

    #[test]
    fn winner_is_the_greatest_live_stamp_everywhere((states, idx) in history()) {
        let [a, b, _] = idx.map(|i| i.get(&states).clone());
        let ab = merged(&a, &b);
        let live = ab.versions().iter().filter(|v| !v.deleted).map(|v| v.stamp).max();
        let any = ab.versions().iter().map(|v| v.stamp).max().unwrap();
        // A live version wins over any tombstone; a tombstone wins only when all are.
        prop_assert_eq!(ab.winner().stamp, live.unwrap_or(any));
        prop_assert_eq!(ab.winner().deleted, ab.is_deleted());
        let ba = merged(&b, &a);
        prop_assert_eq!(ba.winner(), ab.winner());
    }
}

#[test]
fn concurrent_writes_keep_both_and_a_later_write_resolves_them() {
    let (n1, n2) = (NodeId(1), NodeId(2));
    let mut a = DocState::create(Stamp::new(HlcClock::new(0).tick(10), n1), body(1));
    let b = DocState::create(Stamp::new(HlcClock::new(0).tick(10), n2), body(2));
    a.merge(&b);
    assert_eq!(a.versions().len(), 2);
    assert_eq!(a.winner().stamp.node, n2, "equal clocks resolve by node id");
    let mut clock = HlcClock::new(0);
    clock.restore(a.clock().max_hlc());
    a.write(Stamp::new(clock.tick(10), n1), body(3));
    assert_eq!(a.versions().len(), 1);
    assert!(a.conflicts().is_empty());
}

#[test]
fn an_old_write_arriving_late_does_not_undo_a_delete() {
    let n1 = NodeId(1);
    let mut clock = HlcClock::new(0);
    let old = DocState::create(Stamp::new(clock.tick(10), n1), body(1));
    let mut deleted = old.clone();
    deleted.delete(Stamp::new(clock.tick(11), n1));
    let mut late = deleted.clone();
    late.merge(&old);
    assert!(late.is_deleted());
    assert_eq!(late, deleted);
}

#[test]
fn a_live_version_beats_a_newer_concurrent_delete() {
    let (n1, n2) = (NodeId(1), NodeId(2));
    let base = DocState::create(Stamp::new(HlcClock::new(0).tick(10), n1), body(1));
    let (mut updated, mut deleted) = (base.clone(), base.clone());
    updated.write(Stamp::new(HlcClock::new(0).tick(20), n1), body(2));
    // The delete is later, and concurrent with the update.
    deleted.delete(Stamp::new(HlcClock::new(0).tick(30), n2));
    for state in [merged(&updated, &deleted), merged(&deleted, &updated)] {
        assert!(!state.is_deleted());
        assert!(!state.winner().deleted, "the tombstone won");
        assert_eq!(state.winner().stamp.node, n1);
        assert!(
            state.conflicts()[0].deleted,
            "the tombstone is listed as a conflict"
        );
    }
}

#[test]
fn a_state_stored_in_stamp_order_reads_in_rank_order() {
    let (n1, n2) = (NodeId(1), NodeId(2));
    let base = DocState::create(Stamp::new(HlcClock::new(0).tick(10), n1), body(1));
    let (mut updated, mut deleted) = (base.clone(), base);
    updated.write(Stamp::new(HlcClock::new(0).tick(20), n1), body(2));
    deleted.delete(Stamp::new(HlcClock::new(0).tick(30), n2));
    let state = merged(&updated, &deleted);
    // As an earlier build stored it: the greater stamp (the tombstone) first.
    let mut json = serde_json::to_value(&state).unwrap();
    json["versions"].as_array_mut().unwrap().reverse();
    let read: DocState = serde_json::from_value(json).unwrap();
    assert_eq!(read.check_invariants(), Ok(()));
    assert_eq!(read, state);
}
