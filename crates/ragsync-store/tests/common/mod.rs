//! What the store tests share: a store on a clock that stands still, and ready-made writes and
//! remote states.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ragsync_core::doc::Body;
use ragsync_core::{
    CollectionName, CollectionSettings, ContentId, ContentRef, DocId, DocState, Hlc, NodeId,
    PhysicalClock, Stamp,
};
use ragsync_store::{DocOp, InlinePolicy, OpKind, Store, StoreOptions};

pub const INLINE: InlinePolicy = InlinePolicy {
    max_content_bytes: 65_536,
    max_page_bytes: 1 << 20,
    embeddings: false,
};

/// A physical clock that stands still unless moved: every write shares one millisecond.
pub struct ManualClock(pub AtomicU64);

impl PhysicalClock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub const NOW_MS: u64 = 1_800_000_000_000;

pub fn open(dir: &std::path::Path) -> Store {
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

pub fn coll() -> CollectionName {
    CollectionName::new("c").unwrap()
}

pub fn put(id: &str, text: &str) -> DocOp {
    DocOp {
        id: DocId::new(id).unwrap(),
        if_match: None,
        kind: OpKind::Put {
            title: None,
            metadata: Default::default(),
            content: text.as_bytes().to_vec(),
            content_type: "text/plain".into(),
            embeddings: None,
        },
    }
}

pub fn del(id: &str) -> DocOp {
    DocOp {
        id: DocId::new(id).unwrap(),
        if_match: None,
        kind: OpKind::Delete,
    }
}

pub fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .put_collection(&coll(), CollectionSettings::default())
        .unwrap();
    (dir, store)
}

/// A state written by node `node` at `hlc`, holding `text`.
pub fn remote_state(node: u128, hlc: Hlc, text: &str) -> DocState {
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

/// The ids of the live documents of [`coll`], as listed (in id order).
pub fn listed_ids(s: &Store) -> Vec<String> {
    s.list(&coll(), None, 100, false)
        .unwrap()
        .iter()
        .map(|d| d.id.to_string())
        .collect()
}
