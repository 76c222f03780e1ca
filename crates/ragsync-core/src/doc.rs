//! Versions and the document state, a multi-value register.
//!
//! A [`Version`] is one write of a document (or a delete: a tombstone). Its `stamp` names it and
//! its `clock` says which writes it has seen; a version always includes its own stamp.
//! A [`DocState`] is the set of known versions that no other known version has seen: usually
//! one, several after concurrent writes. The *winner* is the live version with the greatest
//! stamp, or, when every version is a tombstone, the tombstone with the greatest stamp: as in
//! CouchDB, a delete concurrent with an update never hides the update. The others are
//! *conflicts*, shown on reads and resolved by a write that has seen them. This one rule
//! serves reads, lists, counts, `If-Match: *`, the feed and search alike.
//!
//! # Merge laws
//!
//! For any states `a`, `b`, `c` reachable by writes and merges (versions causally consistent:
//! when a version's clock includes a stamp, it was written after that version was seen; and a
//! stamp names one version only):
//!
//! 1. commutative: `merge(a, b) == merge(b, a)`;
//! 2. associative: `merge(merge(a, b), c) == merge(a, merge(b, c))`;
//! 3. idempotent: `merge(a, a) == a`;
//! 4. dominance: if every version of `a` is seen by some version of `b`, `merge(a, b) == b`;
//! 5. no loss: a version leaves the merged state only when a version that has seen it is in
//!    the merged state.
//!
//! These are checked by property tests in `tests/merge_laws.rs` on histories of random writes,
//! deletes and merges across several nodes. States from elsewhere must pass
//! [`DocState::check_invariants`] and must not reuse a known stamp for different content (the
//! store refuses both, see `Store::merge_remote`): a forged state could otherwise break the laws.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ContentId, Stamp, VersionVector};

/// Where a version's content is: its id, length and media type. The bytes live in the store,
/// once per id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRef {
    pub cid: ContentId,
    pub len: u64,
    /// Media type; `text/plain; charset=utf-8` for text written as text.
    #[serde(rename = "type")]
    pub content_type: String,
}

/// One write of a document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub stamp: Stamp,
    /// Every write this version has seen, its own stamp included.
    pub clock: VersionVector,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::object::optional_object"
    )]
    pub content: Option<ContentRef>,
}

/// What a local write puts into a document.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Body {
    pub title: Option<String>,
    pub metadata: Map<String, Value>,
    pub content: Option<ContentRef>,
}

/// The order of versions in a state, greatest first: a live version outranks any tombstone,
/// and among equals the greater stamp wins. Stamps are unique, so no two versions tie.
fn rank(v: &Version) -> (bool, Stamp) {
    (!v.deleted, v.stamp)
}

impl Version {
    /// True when this version has seen `other` (and is not `other` itself).
    pub fn has_seen(&self, other: &Version) -> bool {
        self.stamp != other.stamp && self.clock.contains(&other.stamp)
    }

    /// A hash of the whole version, used only to break the tie between two different versions
    /// that claim the same stamp (a broken or hostile peer), so that every node keeps the same one.
    fn tie_break_hash(&self) -> blake3::Hash {
        blake3::hash(&serde_json::to_vec(self).unwrap_or_default())
    }

    fn has_body(&self, body: &Body) -> bool {
        !self.deleted
            && self.title == body.title
            && self.metadata == body.metadata
            && self.content == body.content
    }
}

/// The set of versions of one document that no other known version has seen, winner first:
/// sorted by [`rank`] (live versions before tombstones, then by stamp), greatest first.
/// Never empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "StateOnTheWire")]
pub struct DocState {
    versions: Vec<Version>,
}

/// A state as read: its versions are put in [`rank`] order (states stored by earlier builds
/// are ordered by stamp alone), everything else is left to [`DocState::check_invariants`].
#[derive(Deserialize)]
struct StateOnTheWire {
    #[serde(deserialize_with = "crate::object::objects")]
    versions: Vec<Version>,
}

impl DocState {
    /// A state as another node sent it: its versions put in order, nothing else checked
    /// (that is [`DocState::check_invariants`]'s job, which the store runs before merging).
    pub fn from_wire(versions: Vec<Version>) -> Self {
        StateOnTheWire { versions }.into()
    }
}

impl From<StateOnTheWire> for DocState {
    fn from(s: StateOnTheWire) -> Self {
        let mut versions = s.versions;
        versions.sort_by_key(|v| std::cmp::Reverse(rank(v)));
        Self { versions }
    }
}

/// What [`DocState::write`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteEffect {
    /// A new version was added.
    Written,
    /// The document already held exactly this body as its only version: nothing changed.
    Unchanged,
}

impl DocState {
    /// The state of a document whose first known version is `v`.
    pub fn new(v: Version) -> Self {
        Self { versions: vec![v] }
    }

    /// Builds a state from versions in any order, dropping duplicates and seen versions.
    /// `None` when `versions` is empty.
    pub fn from_versions(versions: Vec<Version>) -> Option<Self> {
        let mut it = versions.into_iter();
        let mut state = Self::new(it.next()?);
        for v in it {
            state.insert(v);
        }
        Some(state)
    }

    /// The version reads and search show.
    pub fn winner(&self) -> &Version {
        &self.versions[0]
    }

    /// Concurrent versions that lost to the winner.
    pub fn conflicts(&self) -> &[Version] {
        &self.versions[1..]
    }

    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// A tag of the whole state, for conditional writes: the winner's stamp when the state holds
    /// one version, else the winner's stamp and a hash of the other stamps. It changes whenever
    /// the set of versions changes, so a write conditioned on it cannot supersede a concurrent
    /// version its writer never read.
    pub fn tag(&self) -> String {
        let winner = self.winner().stamp;
        if self.versions.len() == 1 {
            return winner.to_string();
        }
        let mut h = blake3::Hasher::new();
        for v in self.conflicts() {
            h.update(v.stamp.to_string().as_bytes());
        }
        format!("{winner}+{}", &h.finalize().to_hex()[..16])
    }

    /// True when `s` has the shape [`DocState::tag`] gives: a stamp, optionally followed by `+`
    /// and 16 hex digits.
    pub fn is_tag(s: &str) -> bool {
        let (stamp, rest) = match s.split_once('+') {
            Some((stamp, hash)) => (stamp, Some(hash)),
            None => (s, None),
        };
        stamp.parse::<Stamp>().is_ok()
            && rest.is_none_or(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// True when every version is a tombstone (the winner is one only then).
    pub fn is_deleted(&self) -> bool {
        self.versions.iter().all(|v| v.deleted)
    }

    /// The union of all versions' clocks: what a write that resolves every conflict has seen.
    pub fn clock(&self) -> VersionVector {
        let mut c = VersionVector::new();
        for v in &self.versions {
            c.merge(&v.clock);
        }
        c
    }

    /// Merges `other` into `self`; see the merge laws in the module docs. Returns true when
    /// `self` changed.
    pub fn merge(&mut self, other: &DocState) -> bool {
        let before = self.versions.clone();
        for v in &other.versions {
            self.insert(v.clone());
        }
        self.versions != before
    }

    /// The first version of `other` whose stamp names a different version here: a stamp
    /// names one write, so this is a broken or hostile writer. The store refuses such a state
    /// before merging it; [`DocState::merge`] keeps the same one of the two everywhere (see
    /// `insert`) so that its laws hold even for states that were not checked.
    pub fn reused_stamp(&self, other: &DocState) -> Option<Stamp> {
        other.versions.iter().find_map(|v| {
            self.versions
                .iter()
                .any(|mine| mine.stamp == v.stamp && mine != v)
                .then_some(v.stamp)
        })
    }

    /// Adds one version, keeping only versions that no other has seen.
    fn insert(&mut self, v: Version) {
        if let Some(same) = self.versions.iter_mut().find(|x| x.stamp == v.stamp) {
            // A reused stamp (what `reused_stamp` finds): both sides keep the version with
            // the greater hash, whichever arrived first.
            if *same != v && v.tie_break_hash().as_bytes() > same.tie_break_hash().as_bytes() {
                *same = v;
            }
            return;
        }
        if self.versions.iter().any(|x| x.has_seen(&v)) {
            return;
        }
        self.versions.retain(|x| !v.has_seen(x));
        let at = self.versions.partition_point(|x| rank(x) > rank(&v));
        self.versions.insert(at, v);
        self.debug_check_invariants();
    }

    /// A local write with a fresh `stamp` (greater than every stamp this node knows): the new
    /// version has seen every version of the state, so it resolves all conflicts. Writing the
    /// body the document already holds, with no conflicts, changes nothing.
    pub fn write(&mut self, stamp: Stamp, body: Body) -> WriteEffect {
        if self.versions.len() == 1 && self.versions[0].has_body(&body) {
            return WriteEffect::Unchanged;
        }
        self.rewrite(stamp, body);
        WriteEffect::Written
    }

    /// A local write that makes a new version even of the body the document holds: for what
    /// the version carries besides its body (new vectors for its chunks).
    pub fn rewrite(&mut self, stamp: Stamp, body: Body) {
        let v = Self::local_version(Some(self), stamp, false, body);
        self.versions = vec![v];
    }

    /// A local delete: a tombstone that has seen every version. Deleting a document that is
    /// already deleted changes nothing.
    pub fn delete(&mut self, stamp: Stamp) -> WriteEffect {
        if self.versions.len() == 1 && self.versions[0].deleted {
            return WriteEffect::Unchanged;
        }
        self.versions = vec![Self::local_version(
            Some(self),
            stamp,
            true,
            Body::default(),
        )];
        WriteEffect::Written
    }

    /// The first version of a new document.
    pub fn create(stamp: Stamp, body: Body) -> Self {
        Self::new(Self::local_version(None, stamp, false, body))
    }

    fn local_version(prev: Option<&DocState>, stamp: Stamp, deleted: bool, body: Body) -> Version {
        let mut clock = prev.map(DocState::clock).unwrap_or_default();
        debug_assert!(!clock.contains(&stamp), "a local stamp must be fresh");
        clock.add(stamp);
        Version {
            stamp,
            clock,
            deleted,
            title: body.title,
            metadata: body.metadata,
            content: body.content,
        }
    }

    /// Checks the state's invariants: non-empty, sorted by [`rank`] descending with no duplicate,
    /// every version's clock holds its own stamp as its writer's entry and only older values
    /// for other nodes (a writer's stamp is greater than everything it has seen, so an entry at
    /// or ahead of the stamp is forged and would hide that node's later writes), and no version
    /// has seen another.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.versions.is_empty() {
            return Err("empty state".into());
        }
        for w in self.versions.windows(2) {
            if rank(&w[0]) <= rank(&w[1]) {
                return Err(format!(
                    "not sorted: {:?} before {:?}",
                    w[0].stamp, w[1].stamp
                ));
            }
        }
        for v in &self.versions {
            if !v.clock.contains(&v.stamp) {
                return Err(format!("{:?} does not include its own stamp", v.stamp));
            }
            let forged = v.clock.iter().any(|(node, h)| {
                if *node == v.stamp.node {
                    *h != v.stamp.hlc
                } else {
                    *h >= v.stamp.hlc
                }
            });
            if forged {
                return Err(format!(
                    "{:?} has a clock entry at or ahead of its stamp",
                    v.stamp
                ));
            }
            if let Some(x) = self.versions.iter().find(|x| x.has_seen(v)) {
                return Err(format!("{:?} was seen by {:?}", v.stamp, x.stamp));
            }
        }
        Ok(())
    }

    fn debug_check_invariants(&self) {
        debug_assert_eq!(self.check_invariants(), Ok(()));
    }
}
