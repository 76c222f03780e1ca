//! JSON shapes of document writes and reads, and their validation.
//!
//! A write is `{"text": "...", "title"?, "metadata"?: {...}}` or
//! `{"content_base64": "...", "content_type"?, "title"?, "metadata"?}`; a batch item adds
//! `"id"`, and `"if_match"` or `"delete": true` as needed. For a collection whose embedding
//! model is `external`, a write may carry its vectors: `"vectors": [[...], ...]`, one per
//! chunk in order, or `"vector": [...]` for a document that is one chunk.

use axum::http::HeaderMap;
use axum::http::header::IF_MATCH;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ragsync_core::{CollectionName, ContentId, DocId, DocState, Limits, Version};
use ragsync_search::chunk;
use ragsync_search::embed::{EXTERNAL_MODEL, model_key, unit};
use ragsync_search::index::is_text;
use ragsync_store::{ContentEmbeddings, DocOp, OpKind, Store, StoreError, StoredDoc};
use std::cell::Cell;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::extract::parse_json_seed;

const TEXT_TYPE: &str = "text/plain; charset=utf-8";
const BYTES_TYPE: &str = "application/octet-stream";
const MAX_CONTENT_TYPE_BYTES: usize = 255;

/// The body of `PUT /v1/collections/{c}/docs/{id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocBody {
    text: Option<String>,
    content_base64: Option<String>,
    content_type: Option<String>,
    title: Option<String>,
    /// Kept as its literal text until checked: see [`ragsync_core::metadata`].
    metadata: Option<Box<RawValue>>,
    vector: Option<Vec<f32>>,
    vectors: Option<Vec<Vec<f32>>>,
}

/// One item of `POST /v1/collections/{c}/docs:batch`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchItem {
    id: String,
    if_match: Option<String>,
    #[serde(default)]
    delete: bool,
    text: Option<String>,
    content_base64: Option<String>,
    content_type: Option<String>,
    title: Option<String>,
    /// Kept as its literal text until checked: see [`ragsync_core::metadata`].
    metadata: Option<Box<RawValue>>,
    vector: Option<Vec<f32>>,
    vectors: Option<Vec<Vec<f32>>>,
}

/// Parses `{"docs": [...]}`, refusing the body as soon as it holds more than `max_docs`
/// items, so that a body of many tiny items cannot make the node allocate for all of them.
pub(crate) fn parse_batch(bytes: &[u8], max_docs: usize) -> Result<Vec<BatchItem>, ApiError> {
    let too_many = Cell::new(false);
    let docs = DocsSeed {
        max_docs,
        too_many: &too_many,
    };
    parse_json_seed(bytes, BatchSeed(docs)).map_err(|e| {
        if too_many.get() {
            ApiError::too_large(
                "batch_too_large",
                format!("more documents than max_batch_docs ({max_docs})"),
            )
        } else {
            e
        }
    })
}

/// The whole body: an object whose one field, `docs`, is read by [`DocsSeed`].
struct BatchSeed<'a>(DocsSeed<'a>);

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<BatchItem>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<BatchItem>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"an object {"docs": [...]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut docs = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "docs" {
                return Err(de::Error::unknown_field(&key, &["docs"]));
            }
            if docs.is_some() {
                return Err(de::Error::duplicate_field("docs"));
            }
            docs = Some(map.next_value_seed(self.0)?);
        }
        docs.ok_or_else(|| de::Error::missing_field("docs"))
    }
}

/// The `docs` array, cut off past `max_docs` items (and `too_many` set).
#[derive(Clone, Copy)]
struct DocsSeed<'a> {
    max_docs: usize,
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for DocsSeed<'_> {
    type Value = Vec<BatchItem>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DocsSeed<'_> {
    type Value = Vec<BatchItem>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of documents")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut docs = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max_docs));
        while let Some(item) = seq.next_element::<BatchItem>()? {
            if docs.len() == self.max_docs {
                self.too_many.set(true);
                return Err(de::Error::custom("too many documents"));
            }
            docs.push(item);
        }
        Ok(docs)
    }
}

impl BatchItem {
    pub(crate) fn into_op(self, limits: &Limits) -> Result<(DocOp, Option<SentVectors>), ApiError> {
        let id = DocId::new(self.id)?;
        let if_match = self
            .if_match
            .as_deref()
            .map(parse_version_tag)
            .transpose()?;
        let body = DocBody {
            text: self.text,
            content_base64: self.content_base64,
            content_type: self.content_type,
            title: self.title,
            metadata: self.metadata,
            vector: self.vector,
            vectors: self.vectors,
        };
        let (kind, sent) = if self.delete {
            if !body.is_empty() {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "a delete carries no text, content, title, metadata or vectors",
                ));
            }
            (OpKind::Delete, None)
        } else {
            body.into_op(limits)?
        };
        Ok((DocOp { id, if_match, kind }, sent))
    }
}

impl DocBody {
    fn is_empty(&self) -> bool {
        self.text.is_none()
            && self.content_base64.is_none()
            && self.content_type.is_none()
            && self.title.is_none()
            && self.metadata.is_none()
            && self.vector.is_none()
            && self.vectors.is_none()
    }

    /// The write this body asks for, every field checked against `limits`, and the vectors
    /// it carries (checked against the collection by [`attach_vectors`]).
    pub(crate) fn into_op(
        self,
        limits: &Limits,
    ) -> Result<(OpKind, Option<SentVectors>), ApiError> {
        let DocBody {
            text,
            content_base64,
            content_type,
            title,
            metadata,
            vector,
            vectors,
        } = self;
        let sent = match (vector, vectors) {
            (None, None) => None,
            (Some(v), None) => Some(SentVectors {
                vectors: vec![v],
                one: true,
            }),
            (None, Some(vs)) => Some(SentVectors {
                vectors: vs,
                one: false,
            }),
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "give either vector or vectors, not both",
                ));
            }
        };
        let (content, default_type) = match (text, content_base64) {
            (Some(t), None) => (t.into_bytes(), TEXT_TYPE),
            (None, Some(b)) => {
                let bytes = BASE64.decode(b.as_bytes()).map_err(|e| {
                    ApiError::bad_request("invalid_base64", format!("content_base64: {e}"))
                })?;
                (bytes, BYTES_TYPE)
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    "give either text or content_base64, not both",
                ));
            }
            (None, None) => {
                return Err(ApiError::bad_request(
                    "missing_content",
                    "a document needs text or content_base64",
                ));
            }
        };
        if content.len() > limits.max_content_bytes {
            return Err(ApiError::too_large(
                "content_too_large",
                format!(
                    "content of {} bytes exceeds max_content_bytes ({})",
                    content.len(),
                    limits.max_content_bytes
                ),
            ));
        }
        let content_type = content_type.unwrap_or_else(|| default_type.to_string());
        if content_type.is_empty()
            || content_type.len() > MAX_CONTENT_TYPE_BYTES
            || !content_type.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            return Err(ApiError::bad_request(
                "invalid_content_type",
                "content_type must be 1 to 255 printable ASCII characters",
            ));
        }
        if let Some(t) = &title
            && t.len() > limits.max_title_bytes
        {
            return Err(ApiError::too_large(
                "title_too_large",
                format!(
                    "title of {} bytes exceeds max_title_bytes ({})",
                    t.len(),
                    limits.max_title_bytes
                ),
            ));
        }
        let metadata = match metadata {
            None => Map::new(),
            Some(raw) => ragsync_core::metadata::parse(raw.get(), limits.max_metadata_depth)?,
        };
        let metadata_len = json_len(&metadata);
        if metadata_len > limits.max_metadata_bytes {
            return Err(ApiError::too_large(
                "metadata_too_large",
                format!(
                    "metadata of {metadata_len} bytes exceeds max_metadata_bytes ({})",
                    limits.max_metadata_bytes
                ),
            ));
        }
        Ok((
            OpKind::Put {
                title,
                metadata,
                content,
                content_type,
                embeddings: None,
            },
            sent,
        ))
    }
}

/// Vectors a client sent with a document.
pub(crate) struct SentVectors {
    vectors: Vec<Vec<f32>>,
    /// Sent as `vector`: the document must be one chunk.
    one: bool,
}

/// Checks the vectors sent with `ops` (by position) against collection `c` and gives each
/// write its embeddings: the collection's model must be `external`, each vector of its
/// dimension and a direction (not zero, finite), one per chunk of the document's text as the
/// collection cuts it. Run before the write, on the blocking pool.
pub(crate) fn attach_vectors(
    store: &Store,
    c: &CollectionName,
    ops: &mut [DocOp],
    sent: Vec<(usize, SentVectors)>,
) -> Result<(), StoreError> {
    if sent.is_empty() {
        return Ok(());
    }
    let coll = store
        .collection(c)?
        .ok_or_else(|| StoreError::CollectionNotFound(c.clone()))?;
    let e = &coll.settings.embedding;
    let many = ops.len() > 1;
    let bad = |i: usize, m: String| {
        let at = if many {
            format!("docs[{i}]: ")
        } else {
            String::new()
        };
        StoreError::InvalidEmbeddings(format!("{at}{m}"))
    };
    let model = match model_key(&coll) {
        Some(m) if e.model == EXTERNAL_MODEL => m,
        _ => {
            return Err(bad(
                sent[0].0,
                format!(
                    "collection {c} has embedding model {:?}: vectors are sent only to a \
                     collection whose model is \"external\"",
                    e.model
                ),
            ));
        }
    };
    let dim = e.dimension as usize;
    for (i, s) in sent {
        let OpKind::Put {
            content,
            content_type,
            embeddings,
            ..
        } = &mut ops[i].kind
        else {
            continue;
        };
        let text = std::str::from_utf8(content)
            .ok()
            .filter(|_| is_text(content_type))
            .ok_or_else(|| bad(i, "vectors go with text content only".into()))?;
        let chunks = chunk(text, &coll.settings.chunking);
        if s.one && chunks.len() != 1 {
            return Err(bad(
                i,
                format!(
                    "one vector for a document of {} chunks: send \"vectors\", one per chunk, \
                     or raise chunking.max_tokens",
                    chunks.len()
                ),
            ));
        }
        if s.vectors.len() != chunks.len() {
            return Err(bad(
                i,
                format!("{} vectors for {} chunks", s.vectors.len(), chunks.len()),
            ));
        }
        let mut vectors = Vec::with_capacity(s.vectors.len());
        for v in s.vectors {
            if v.len() != dim {
                return Err(bad(
                    i,
                    format!(
                        "a vector of {} dimensions; the collection's are {dim}",
                        v.len()
                    ),
                ));
            }
            vectors.push(unit(v).ok_or_else(|| bad(i, "a vector is zero or not finite".into()))?);
        }
        *embeddings = Some(ContentEmbeddings {
            model: model.clone(),
            content: ContentId::of(content),
            chunks: chunks.iter().map(|ch| ch.id).collect(),
            vectors,
        });
    }
    Ok(())
}

/// Parses a version as given in `If-Match` or `if_match`: the stamp, quoted or not.
/// `*` (the document must exist) passes as is; tags are compared in lower case. A weak tag
/// (`W/"..."`) or a list of tags is refused: If-Match compares strongly, one tag at a time.
pub(crate) fn parse_version_tag(s: &str) -> Result<String, ApiError> {
    let s = s.trim();
    if s == "*" {
        return Ok(s.to_string());
    }
    let s = s
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s);
    if DocState::is_tag(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(ApiError::bad_request(
            "invalid_if_match",
            "If-Match must be \"*\" or one document version as reads and writes return it",
        ))
    }
}

/// The `If-Match` header of a request, when present.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(IF_MATCH)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("invalid_if_match", "If-Match is not ASCII"))
                .and_then(parse_version_tag)
        })
        .transpose()
}

/// A version without its content: what conflicts and lists show.
pub(crate) fn version_view(v: &Version) -> Value {
    let mut out = json!({"stamp": v.stamp, "deleted": v.deleted});
    let o = out.as_object_mut().expect("object");
    if let Some(t) = &v.title {
        o.insert("title".into(), json!(t));
    }
    o.insert("metadata".into(), Value::Object(v.metadata.clone()));
    if let Some(c) = &v.content {
        o.insert("content_cid".into(), json!(c.cid));
        o.insert("content_len".into(), json!(c.len));
        o.insert("content_type".into(), json!(c.content_type));
    }
    out
}

/// A document read: the winner (with its content when given), the conflicts, the seq, and
/// `version`, the tag of the whole state that `If-Match` takes.
pub(crate) fn doc_view(doc: &StoredDoc, content: Option<Vec<u8>>) -> Value {
    let winner = doc.state.winner();
    let mut out = version_view(winner);
    let o = out.as_object_mut().expect("object");
    o.insert("collection".into(), json!(doc.collection));
    o.insert("id".into(), json!(doc.id));
    o.insert("seq".into(), json!(doc.seq));
    o.insert("version".into(), json!(doc.state.tag()));
    if let (Some(bytes), Some(c)) = (content, &winner.content) {
        let textual = c.content_type.starts_with("text/");
        match String::from_utf8(bytes) {
            Ok(text) if textual => o.insert("text".into(), json!(text)),
            Ok(text) => o.insert("content_base64".into(), json!(BASE64.encode(text))),
            Err(e) => o.insert("content_base64".into(), json!(BASE64.encode(e.as_bytes()))),
        };
    }
    let conflicts: Vec<Value> = doc.state.conflicts().iter().map(version_view).collect();
    o.insert("conflicts".into(), Value::Array(conflicts));
    out
}

/// The length of a value's compact JSON, without building it.
fn json_len(v: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, v) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}
