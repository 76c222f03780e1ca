//! Wire messages of the replication protocol, version [`PROTOCOL_VERSION`].
//!
//! `GET /v1/sync/info` answers [`SyncInfo`]. `GET /v1/sync/changes?since=S&limit=L` answers
//! [`ChangesResponse`]: the rows of the serving node's feed with `seq > S`, in `seq` order, at
//! most `L`. Rules a puller relies on:
//!
//! - `next_since` is the `seq` of the last row the server examined for this page (`S` when
//!   none), never the head of the feed: resuming from it never skips a row;
//! - `has_more` is true when rows past `next_since` existed when the page was read;
//! - with `&until=U` (a window), only rows with `seq <= U` are sent, `has_more` speaks of
//!   the window only, and a page that holds the whole window has `next_since` = `U` (or the
//!   head, when `U` is past it): a puller that knows where windows end asks for several at
//!   once;
//! - every row is a whole document state (all its concurrent versions), so applying a row is a
//!   merge, and applying it twice changes nothing;
//! - `epoch` names the serving database's incarnation: a puller whose stored epoch differs must
//!   drop its cursor for that peer;
//! - contents of at most `max_inline_bytes` travel inline, by content id: UTF-8 ones as text in
//!   `texts`, others base64 in `contents`; larger ones are fetched from `GET /v1/blobs/{cid}`;
//! - the stored embeddings of the contents the rows reference travel in `embeddings`, by
//!   model id and content (its chunk ids, and their vectors as little-endian `f32`s in
//!   base64): a receiver with the same model stores them and never computes them again;
//! - a puller that sends `Accept-Encoding: zstd` gets pages compressed.
//!
//! `POST /v1/sync/changes` (push) takes a page of the sender's feed in the same shape and
//! answers [`PushAnswer`]: every row it was sent, by `seq`, is either `applied` (merged, or
//! already known), `parked` (refused for what it is, kept on the receiver until retried
//! there) or, with the rows after it, not taken (`refused` names the first, with why). The
//! sender moves its push cursor past a row only when the answer lists it as applied or parked:
//! a 2xx that leaves rows out acknowledges nothing past them. `wanted` names the contents of
//! those rows the receiver still lacks; the sender uploads them (`PUT /v1/blobs/{cid}`)
//! before it counts the page as delivered.
//!
//! New fields get `#[serde(default)]` so older peers' messages still parse.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ragsync_core::{
    Collection, CollectionName, ContentId, DocId, DocState, Epoch, NodeId, Version,
};
use ragsync_store::{
    ChangesPage, ContentEmbeddings, FeedEntry, FeedItem, decode_vector, encode_vector,
};
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. Version 2 added windows (`until`) and the
/// `protocol` field of pages; a page without that field comes from a version 1 node, which
/// refuses `until`. Version 3 added `embeddings` (older nodes ignore the field).
pub const PROTOCOL_VERSION: u32 = 3;

/// The first protocol version whose feed answers windows (`until`).
pub const WINDOWS_SINCE_PROTOCOL: u32 = 2;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncInfo {
    pub node_id: NodeId,
    pub epoch: Epoch,
    /// The greatest `seq` of the node's feed.
    pub head: u64,
    pub protocol: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangesResponse {
    pub node_id: NodeId,
    pub epoch: Epoch,
    pub since: u64,
    pub next_since: u64,
    pub has_more: bool,
    /// The feed's head when the page was read (for lag; never a cursor).
    pub head: u64,
    #[serde(deserialize_with = "ragsync_core::object::objects")]
    pub changes: Vec<Change>,
    /// Small contents referenced by `changes` that are not UTF-8, base64 (standard alphabet),
    /// by content id.
    #[serde(default)]
    pub contents: BTreeMap<ContentId, String>,
    /// Small contents referenced by `changes` that are UTF-8, as text, by content id: a third
    /// smaller than base64, and compressible.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub texts: BTreeMap<ContentId, String>,
    /// Embeddings of the contents referenced by `changes` (version 3).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "ragsync_core::object::objects"
    )]
    pub embeddings: Vec<WireEmbeddings>,
    /// The protocol version of the serving node (absent, so 0, from version 1 nodes).
    #[serde(default)]
    pub protocol: u32,
}

/// The embeddings of one content's chunks under one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireEmbeddings {
    pub model: String,
    pub content: ContentId,
    pub chunks: Vec<ContentId>,
    /// Every chunk's vector, one after the other, as little-endian `f32`s, base64.
    pub vectors: String,
}

impl WireEmbeddings {
    fn of(e: ContentEmbeddings) -> Self {
        let bytes: Vec<u8> = e.vectors.iter().flat_map(|v| encode_vector(v)).collect();
        Self {
            model: e.model,
            content: e.content,
            chunks: e.chunks,
            vectors: BASE64.encode(bytes),
        }
    }

    /// The vectors split into one per chunk; a set whose bytes do not split evenly is refused.
    fn decode(self) -> Result<ContentEmbeddings, WireError> {
        let bad = |m: &str| WireError(format!("embeddings of {}: {m}", self.content));
        let bytes = BASE64
            .decode(self.vectors.as_bytes())
            .map_err(|e| bad(&e.to_string()))?;
        let n = self.chunks.len();
        if n == 0 || !bytes.len().is_multiple_of(4 * n) {
            return Err(bad("vectors do not split into one per chunk"));
        }
        let vectors = bytes
            .chunks_exact(bytes.len() / n)
            .map(|b| decode_vector(b).ok_or_else(|| bad("not f32s")))
            .collect::<Result<_, _>>()?;
        Ok(ContentEmbeddings {
            model: self.model,
            content: self.content,
            chunks: self.chunks,
            vectors,
        })
    }
}

/// The answer to a push: see the module docs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushAnswer {
    pub node_id: NodeId,
    pub epoch: Epoch,
    /// Rows merged (changed something, or were already known).
    pub applied: Vec<u64>,
    /// How many of the applied rows changed something.
    #[serde(default)]
    pub changed: usize,
    /// Rows refused for what they are and parked on the receiver.
    #[serde(default)]
    pub parked: Vec<RowRefusal>,
    /// The row a transient failure stopped at (no row after it was taken either).
    #[serde(default)]
    pub refused: Vec<RowRefusal>,
    /// Contents of the page's rows the receiver still lacks.
    #[serde(default)]
    pub wanted: Vec<ContentId>,
}

/// A row a receiver did not apply, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowRefusal {
    pub seq: u64,
    pub code: String,
    pub reason: String,
}

/// One row of the feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A document's whole state: the versions no other known version has seen.
    Doc {
        seq: u64,
        collection: CollectionName,
        id: DocId,
        #[serde(deserialize_with = "ragsync_core::object::objects")]
        versions: Vec<Version>,
    },
    /// A collection record (last writer wins by stamp).
    Collection {
        seq: u64,
        #[serde(flatten)]
        collection: Collection,
    },
}

impl Change {
    pub fn seq(&self) -> u64 {
        match self {
            Change::Doc { seq, .. } | Change::Collection { seq, .. } => *seq,
        }
    }
}

/// A page as the store applies it: its rows, its inline contents by id, and the embeddings
/// that came with it.
pub struct PageRows {
    pub rows: Vec<FeedEntry>,
    pub inline: BTreeMap<ContentId, Vec<u8>>,
    pub embeddings: Vec<ContentEmbeddings>,
}

/// A page that cannot be read: a content that is not base64.
#[derive(Debug, thiserror::Error)]
#[error("invalid page: {0}")]
pub struct WireError(pub String);

impl ChangesResponse {
    /// The answer of a node to `GET /v1/sync/changes?since=` for a page of its feed.
    pub fn from_page(node_id: NodeId, epoch: Epoch, since: u64, page: ChangesPage) -> Self {
        let changes = page
            .entries
            .into_iter()
            .map(|e| match e.item {
                FeedItem::Doc {
                    collection,
                    id,
                    state,
                } => Change::Doc {
                    seq: e.seq,
                    collection,
                    id,
                    versions: state.versions().to_vec(),
                },
                FeedItem::Collection(collection) => Change::Collection {
                    seq: e.seq,
                    collection,
                },
            })
            .collect();
        let (mut contents, mut texts) = (BTreeMap::new(), BTreeMap::new());
        for (cid, bytes) in page.contents {
            match String::from_utf8(bytes) {
                Ok(text) => texts.insert(cid, text),
                Err(e) => contents.insert(cid, BASE64.encode(e.as_bytes())),
            };
        }
        Self {
            node_id,
            epoch,
            since,
            next_since: page.next_since,
            has_more: page.has_more,
            head: page.head,
            protocol: PROTOCOL_VERSION,
            changes,
            contents,
            texts,
            embeddings: page
                .embeddings
                .into_iter()
                .map(WireEmbeddings::of)
                .collect(),
        }
    }

    /// The page's rows as the store applies them, and its inline contents decoded. The
    /// states are taken as sent; the store checks them when it applies them.
    pub fn into_entries(self) -> Result<PageRows, WireError> {
        let mut contents = self
            .contents
            .into_iter()
            .map(|(cid, b64)| {
                BASE64
                    .decode(b64.as_bytes())
                    .map(|b| (cid, b))
                    .map_err(|e| WireError(format!("content {cid}: {e}")))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        contents.extend(self.texts.into_iter().map(|(cid, t)| (cid, t.into_bytes())));
        let entries = self
            .changes
            .into_iter()
            .map(|c| match c {
                Change::Doc {
                    seq,
                    collection,
                    id,
                    versions,
                } => FeedEntry {
                    seq,
                    item: FeedItem::Doc {
                        collection,
                        id,
                        state: DocState::from_wire(versions),
                    },
                },
                Change::Collection { seq, collection } => FeedEntry {
                    seq,
                    item: FeedItem::Collection(collection),
                },
            })
            .collect();
        let embeddings = self
            .embeddings
            .into_iter()
            .map(WireEmbeddings::decode)
            .collect::<Result<_, _>>()?;
        Ok(PageRows {
            rows: entries,
            inline: contents,
            embeddings,
        })
    }
}

/// A page from `node` of collection records at `rows`, for the engine's unit tests.
#[cfg(test)]
pub(crate) fn test_page(
    node: NodeId,
    since: u64,
    next_since: u64,
    head: u64,
    rows: &[u64],
) -> ChangesResponse {
    let name = CollectionName::new("c").unwrap();
    let stamp = ragsync_core::Stamp::new(ragsync_core::Hlc::new(1, 0), node);
    ChangesResponse {
        node_id: node,
        epoch: Epoch(1),
        since,
        next_since,
        has_more: next_since < head,
        head,
        protocol: PROTOCOL_VERSION,
        changes: rows
            .iter()
            .map(|seq| Change::Collection {
                seq: *seq,
                collection: Collection {
                    name: name.clone(),
                    settings: Default::default(),
                    stamp,
                    deleted: false,
                },
            })
            .collect(),
        contents: Default::default(),
        texts: Default::default(),
        embeddings: Vec::new(),
    }
}
