//! Version vectors. Entry `n -> h` says: every write node `n` issued with clock value `<= h`
//! is known. Because a node's clock values only grow, one value per node is enough to name
//! everything it wrote that is included (its writes are the "dots" `(n, h)`).
//!
//! Laws (tested): [`VersionVector::merge`] is the least upper bound, so it is commutative,
//! associative and idempotent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Hlc, NodeId, Stamp};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionVector(BTreeMap<NodeId, Hlc>);

impl VersionVector {
    pub fn new() -> Self {
        Self::default()
    }

    /// The vector of one write with nothing before it.
    pub fn of(stamp: Stamp) -> Self {
        let mut v = Self::new();
        v.add(stamp);
        v
    }

    /// True when the write `stamp` is included.
    pub fn contains(&self, stamp: &Stamp) -> bool {
        self.0.get(&stamp.node).is_some_and(|h| *h >= stamp.hlc)
    }

    /// Includes the write `stamp`.
    pub fn add(&mut self, stamp: Stamp) {
        let e = self.0.entry(stamp.node).or_default();
        *e = (*e).max(stamp.hlc);
    }

    /// Least upper bound of the two vectors, in place.
    pub fn merge(&mut self, other: &VersionVector) {
        for (node, h) in &other.0 {
            let e = self.0.entry(*node).or_default();
            *e = (*e).max(*h);
        }
    }

    /// True when every write included in `other` is included in `self`.
    pub fn covers(&self, other: &VersionVector) -> bool {
        other
            .0
            .iter()
            .all(|(n, h)| self.contains(&Stamp::new(*h, *n)))
    }

    /// The greatest clock value of any entry.
    pub fn max_hlc(&self) -> Hlc {
        self.0.values().copied().max().unwrap_or_default()
    }

    pub fn get(&self, node: &NodeId) -> Option<Hlc> {
        self.0.get(node).copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Hlc)> {
        self.0.iter()
    }
}
