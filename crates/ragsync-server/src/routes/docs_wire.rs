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

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

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
    vector: Option<Vector>,
    vectors: Option<Vec<Vector>>,
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
    vector: Option<Vector>,
    vectors: Option<Vec<Vector>>,
}

/// A vector as sent: an array of numbers, each read as JSON numbers usually are (to the
/// nearest `f64`) and then rounded to `f32`. serde_json reads an `f32` exactly, which for
/// the 8 and 9 significant digits `f32`s are printed with takes its slow path on most
/// numbers, and that was the largest cost of a body of vectors; the two roundings differ
/// from one only when the `f64` falls on a midpoint between two `f32`s, by one unit in the
/// last place of a vector the node normalises anyway. A number beyond `f32`'s range becomes
/// infinite here, and the vector's check refuses it as `invalid_vector`, as a query's vector
/// is (serde_json's own `f32` check said `invalid_json`; the JSON is valid, the vector is not).
pub(crate) struct Vector(pub(crate) Vec<f32>);

impl<'de> Deserialize<'de> for Vector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(VectorVisitor)
    }
}

struct VectorVisitor;

impl<'de> Visitor<'de> for VectorVisitor {
    type Value = Vector;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vector, A::Error> {
        // A bounded guess: the size hint is the sender's to make up.
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(Coordinate(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Vector(v))
    }
}

/// One number of a [`Vector`].
struct Coordinate(f32);

impl<'de> Deserialize<'de> for Coordinate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_f64(CoordinateVisitor)
    }
}

struct CoordinateVisitor;

impl CoordinateVisitor {
    /// Past `f32`'s range, infinite: see [`Vector`].
    fn narrow(x: f64) -> Coordinate {
        Coordinate(x as f32)
    }
}

impl Visitor<'_> for CoordinateVisitor {
    type Value = Coordinate;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Coordinate, E> {
        Ok(Self::narrow(x))
    }

    fn visit_i64<E: de::Error>(self, x: i64) -> Result<Coordinate, E> {
        Ok(Self::narrow(x as f64))
    }

    fn visit_u64<E: de::Error>(self, x: u64) -> Result<Coordinate, E> {
        Ok(Self::narrow(x as f64))
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
                vectors: vec![v.0],
                one: true,
            }),
            (None, Some(vs)) => Some(SentVectors {
                vectors: vs.into_iter().map(|v| v.0).collect(),
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
#[derive(Debug)]
pub(crate) struct SentVectors {
    vectors: Vec<Vec<f32>>,
    /// Sent as `vector`: the document must be one chunk.
    one: bool,
}

/// Checks the vectors sent with `ops` (by position) against collection `c` and gives each
/// write its embeddings: the collection's model must be `external`, each vector of its
/// dimension and a direction (not zero, finite), one per chunk of the document's text as the
/// collection cuts it. Run before the write, on the blocking pool. A refusal (`Ok(Err)`)
/// names the batch item, as the batch's other item refusals do.
pub(crate) fn attach_vectors(
    store: &Store,
    c: &CollectionName,
    ops: &mut [DocOp],
    sent: Vec<(usize, SentVectors)>,
) -> Result<Result<(), ApiError>, StoreError> {
    if sent.is_empty() {
        return Ok(Ok(()));
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
        let mut refusal = ApiError::from(StoreError::InvalidEmbeddings(format!("{at}{m}")));
        refusal.index = many.then_some(i);
        refusal
    };
    let model = match model_key(&coll) {
        Some(m) if e.model == EXTERNAL_MODEL => m,
        _ => {
            return Ok(Err(bad(
                sent[0].0,
                format!(
                    "collection {c} has embedding model {:?}: vectors are sent only to a \
                     collection whose model is \"external\"",
                    e.model
                ),
            )));
        }
    };
    let dim = e.dimension as usize;
    let chunking = &coll.settings.chunking;
    // Cutting each text into chunks is most of this: spread over the cores, as the writer
    // waits for it.
    let made = crate::par::map(&sent, |_, (i, s)| {
        let i = *i;
        let OpKind::Put {
            content,
            content_type,
            ..
        } = &ops[i].kind
        else {
            return Ok(None);
        };
        let text = std::str::from_utf8(content)
            .ok()
            .filter(|_| is_text(content_type))
            .ok_or_else(|| bad(i, "vectors go with text content only".into()))?;
        let chunks = chunk(text, chunking);
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
        for v in &s.vectors {
            if v.len() != dim {
                return Err(bad(
                    i,
                    format!(
                        "a vector of {} dimensions; the collection's are {dim}",
                        v.len()
                    ),
                ));
            }
            vectors.push(unit(v).ok_or_else(|| {
                bad(
                    i,
                    "a vector is zero, or holds a number beyond a 32-bit float's range".into(),
                )
            })?);
        }
        Ok(Some(ContentEmbeddings {
            model: model.clone(),
            content: ContentId::of(content),
            chunks: chunks.iter().map(|ch| ch.id).collect(),
            vectors,
        }))
    });
    // The first refusal in the order of the batch, as one pass would meet it.
    for ((i, _), m) in sent.iter().zip(made) {
        let m = match m {
            Ok(m) => m,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if let (Some(m), OpKind::Put { embeddings, .. }) = (m, &mut ops[*i].kind) {
            *embeddings = Some(m);
        }
    }
    Ok(Ok(()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_numbers_read_as_the_f32s_they_print() {
        let mut x: u32 = 0x9e37_79b9;
        let mut sent = Vec::new();
        while sent.len() < 100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let f = f32::from_bits(x);
            if f.is_finite() {
                sent.push(f);
            }
        }
        sent.extend([0.0, -0.0, 1.0, f32::MAX, f32::MIN, f32::MIN_POSITIVE, 1e-45]);
        let text = serde_json::to_string(&sent).unwrap();
        let Vector(got) = serde_json::from_str(&text).unwrap();
        assert_eq!(got.len(), sent.len());
        for (a, b) in got.iter().zip(&sent) {
            assert_eq!(a.to_bits(), b.to_bits(), "{b:e}");
        }
        // Integers and other spellings of numbers.
        let Vector(v) = serde_json::from_str("[1, -2, 0.1, 1e-3, 3.4028235e38]").unwrap();
        assert_eq!(v, [1.0, -2.0, 0.1, 1e-3, f32::MAX]);
        for bad in ["[\"1\"]", "[null]", "1"] {
            assert!(serde_json::from_str::<Vector>(bad).is_err(), "{bad}");
        }
        // Past f32's range: infinite, for the vector's check to refuse as invalid_vector.
        let Vector(v) = serde_json::from_str("[1e39, -1e39]").unwrap();
        assert_eq!(v, [f32::INFINITY, f32::NEG_INFINITY]);
    }
}
