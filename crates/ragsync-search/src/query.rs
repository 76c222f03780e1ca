//! Queries: what a caller asks (`POST /v1/collections/{c}/query`), how it is checked, and
//! how index hits become results read from the store.
//!
//! Results are chunks, best first. Each is checked against the store as it is when the query
//! runs: a hit whose document has since been deleted, or whose winner no longer holds the
//! content the chunk was cut from, is left out (the index lags the store by at most one
//! indexer commit; see [`crate::index`]), so a result never shows text the document no longer
//! has. Metadata filters apply to the winner's metadata.
//!
//! `vector` mode ranks chunks by cosine similarity to the caller's vector, or to the query
//! text embedded by the collection's model. `hybrid` takes the best [`HYBRID_DEPTH`] chunks
//! of each (after filters) and fuses them: normalised scores mixed by `alpha` (0 = BM25
//! only, 1 = vector only; a chunk missing from one list scores 0 there), or reciprocal rank
//! fusion (k = 60). A chunk not embedded yet still ranks by BM25.
//!
//! Normalised is each score over the list's best, measured from 0 rather than from the
//! list's worst (min-max from a floor of 0): a chunk matching no term has a BM25 score of 0,
//! so every hit keeps a share above it, and `alpha` 0 ranks exactly as BM25 does. A list
//! holding negative scores (cosines can be) is measured from its worst instead.

use std::collections::HashMap;

use ragsync_core::settings::{Fusion, MAX_TOP_K};
use ragsync_core::{Collection, CollectionName, ContentId, DocId, Version};
use ragsync_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::embed::{EXTERNAL_MODEL, model_key, unit};
use crate::filter::Filter;
use crate::index::{Bm25Hit, IndexError, SearchIndex, is_text};
use crate::vectors::VectorHit;

/// Longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 << 10;
/// Most hits a filtered query examines before it answers with what passed.
const MAX_EXAMINED: usize = 20_000;
/// Chunks each side of a hybrid query contributes to the fusion (at least `top_k`).
pub const HYBRID_DEPTH: usize = 100;
/// The `k` of reciprocal rank fusion.
const RRF_K: f64 = 60.0;

/// A query as a caller sends it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    #[serde(default)]
    pub query: Option<String>,
    /// Read as doubles: one beyond `f32`'s range is then refused as a vector that is not
    /// finite, rather than as malformed JSON.
    #[serde(default)]
    pub vector: Option<Vec<f64>>,
    /// Any JSON number, so that every `top_k` out of range or not whole is refused alike.
    #[serde(default, deserialize_with = "top_k_number")]
    pub top_k: Option<f64>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub alpha: Option<f64>,
    /// `normalized` (alpha over scores normalised from a floor of 0) or `rrf`; the collection's
    /// `search.fusion` when absent.
    #[serde(default)]
    pub fusion: Option<Fusion>,
    #[serde(default)]
    pub filter: Option<Value>,
    /// `"document"`: each document at most once, at the rank of its best chunk, with its
    /// whole text; `top_k` then counts documents.
    #[serde(default)]
    pub group: Option<Group>,
}

/// An optional JSON number, however written (`5`, `5.0`, `-1`, `1e12`).
fn top_k_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(serde::de::Error::custom(bad_top_k(other))),
    }
}

/// The refusal of a `top_k` that is not a whole number from 1 to [`MAX_TOP_K`].
fn bad_top_k(k: impl std::fmt::Display) -> String {
    format!("top_k must be a whole number from 1 to {MAX_TOP_K}, not {k}")
}

/// What results are units of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Chunk,
    Document,
}

/// How results are ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Bm25,
    Vector,
    Hybrid,
}

/// What a vector query compares with.
#[derive(Clone, Debug)]
pub enum Probe {
    /// The caller's vector, made unit length.
    Given(Vec<f32>),
    /// The query text, to embed with the collection's model.
    Text(String),
}

/// A query that passed its checks.
#[derive(Clone, Debug)]
pub struct CheckedQuery {
    pub mode: Mode,
    /// Analysed BM25 terms (empty for a vector query).
    pub terms: Vec<String>,
    pub probe: Option<Probe>,
    pub top_k: usize,
    pub alpha: f64,
    pub fusion: Fusion,
    pub filter: Filter,
    /// One result per document (see [`Group::Document`]).
    pub per_document: bool,
    /// The query ranks by vectors this node computes itself: to read its own writes it
    /// waits for their embedding too ([`SearchIndex::wait_embedded`]).
    pub needs_embeddings: bool,
}

/// Why a query was refused (a 400) or failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Filter(String),
    /// A vector of the wrong size, or not a direction (zero, not finite).
    #[error("{0}")]
    Vector(String),
    /// The collection's model failed to embed the query (a remote model down).
    #[error("{0}")]
    Embed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

impl QueryError {
    /// The stable code of a refusal.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Invalid(_) => "invalid_query",
            QueryError::Filter(_) => "invalid_filter",
            QueryError::Vector(_) => "invalid_vector",
            QueryError::Embed(_) => "embedding_failed",
            QueryError::Store(e) => e.code(),
            QueryError::Index(_) => "internal",
        }
    }
}

/// Checks `req` against collection `c`: the mode is known and possible for its embedding
/// model, the text has words, a vector has the model's dimension, `top_k` and `alpha` are in
/// range, the filter parses. A query text is embedded (later, by [`run`]) only by a node that
/// runs the collection's model.
pub fn check(
    index: &SearchIndex,
    c: &Collection,
    req: &QueryRequest,
) -> Result<CheckedQuery, QueryError> {
    let bad = |m: String| Err(QueryError::Invalid(m));
    let model = model_key(c);
    let text = req.query.as_deref().filter(|t| !t.trim().is_empty());
    let mode = match req.mode.as_deref() {
        // A vector asks for vectors; with a text too, or with a fusion's weight, for both.
        None if req.vector.is_some() && text.is_none() => Mode::Vector,
        None if req.vector.is_some() || req.alpha.is_some() || req.fusion.is_some() => Mode::Hybrid,
        // The collection's default, where the node can embed the text itself: an external
        // collection's text alone has no vector, and searches by BM25.
        None if c.settings.search.hybrid
            && model.is_some()
            && c.settings.embedding.model != EXTERNAL_MODEL =>
        {
            Mode::Hybrid
        }
        None | Some("bm25") => Mode::Bm25,
        Some("vector") => Mode::Vector,
        Some("hybrid") => Mode::Hybrid,
        Some(other) => return bad(format!("unknown mode {other:?}: bm25, vector or hybrid")),
    };
    let mode_name = serde_json::to_value(mode).unwrap_or_default();
    if let Some(a) = req.alpha
        && !(0.0..=1.0).contains(&a)
    {
        return bad(format!("alpha {a} is outside [0, 1]"));
    }
    // Refused rather than ignored: a caller who sends them expects them to count.
    if mode != Mode::Hybrid && (req.alpha.is_some() || req.fusion.is_some()) {
        return bad(format!(
            "alpha and fusion weigh the two sides of mode hybrid; mode {mode_name} has one"
        ));
    }
    if req.fusion == Some(Fusion::Rrf) && req.alpha.is_some() {
        return bad("alpha weighs fusion normalized; rrf fuses by rank, without weights".into());
    }
    let top_k = match req.top_k {
        // Stored settings passed `validate` (a peer's too), which keeps this in range; the
        // clamp keeps a record stored before that check from asking for no results, which
        // `passing` would search for without end.
        None => c.settings.search.top_k.clamp(1, MAX_TOP_K),
        Some(k) if k.fract() == 0.0 && (1.0..=f64::from(MAX_TOP_K)).contains(&k) => k as u32,
        Some(k) => return bad(bad_top_k(k)),
    };
    if let Some(t) = &req.query
        && t.len() > MAX_QUERY_BYTES
    {
        return bad(format!("query is longer than {MAX_QUERY_BYTES} bytes"));
    }
    let probe = if mode == Mode::Bm25 {
        if req.vector.is_some() {
            return bad("mode bm25 takes no vector: send mode vector or hybrid".into());
        }
        None
    } else {
        let Some(model) = &model else {
            return bad(format!(
                "mode {mode_name} needs vectors, and collection {} has no embedding model \
                 (embedding.model is \"none\"); query it with mode bm25",
                c.name
            ));
        };
        let dim = c.settings.embedding.dimension as usize;
        Some(match (&req.vector, text) {
            (Some(v), _) => {
                if v.len() != dim {
                    return Err(QueryError::Vector(format!(
                        "the vector has {} dimensions; collection {}'s model {model} has {dim}",
                        v.len(),
                        c.name
                    )));
                }
                let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                Probe::Given(unit(&v).ok_or_else(|| {
                    QueryError::Vector(
                        "the vector is zero, or holds a number beyond a 32-bit float's range"
                            .into(),
                    )
                })?)
            }
            (None, Some(t)) if index.embedders().computes(model) => Probe::Text(t.to_string()),
            (None, Some(_)) if c.settings.embedding.model == EXTERNAL_MODEL => {
                return bad(format!(
                    "collection {}'s vectors come from its clients (embedding.model \
                     \"external\"): send the query's \"vector\"",
                    c.name
                ));
            }
            (None, Some(_)) => {
                return bad(format!(
                    "this node does not run model {model} (no endpoint configured for it): \
                     send the query's \"vector\""
                ));
            }
            (None, None) => return bad(format!("mode {mode_name} needs a query or a vector")),
        })
    };
    let terms = if mode == Mode::Vector {
        Vec::new()
    } else {
        let Some(t) = text else {
            return bad(if req.query.is_some() {
                "query is empty".into()
            } else {
                format!("mode {mode_name} needs a query text")
            });
        };
        let terms = index.query_terms(&c.name, t);
        if terms.is_empty() {
            return bad("query has no words to search for".into());
        }
        terms
    };
    let filter = match &req.filter {
        None | Some(Value::Null) => Filter::default(),
        Some(f) => Filter::parse(f).map_err(QueryError::Filter)?,
    };
    Ok(CheckedQuery {
        mode,
        terms,
        probe,
        top_k: top_k as usize,
        alpha: req
            .alpha
            .unwrap_or(c.settings.search.hybrid_alpha.clamp(0.0, 1.0)),
        // An `alpha` asks for the fusion it weighs.
        fusion: req.fusion.unwrap_or(if req.alpha.is_some() {
            Fusion::Normalized
        } else {
            c.settings.search.fusion
        }),
        filter,
        per_document: req.group == Some(Group::Document),
        needs_embeddings: mode != Mode::Bm25
            && model
                .as_deref()
                .is_some_and(|m| index.embedders().computes(m)),
    })
}

/// One result.
#[derive(Clone, Debug, Serialize)]
pub struct QueryResult {
    pub doc_id: DocId,
    pub chunk_id: String,
    /// Position of the chunk in the document, and its byte range in the content.
    pub ord: u32,
    pub start: u64,
    pub end: u64,
    pub text: String,
    /// `null` when the document has none.
    pub title: Option<String>,
    pub metadata: Map<String, Value>,
    pub score: f64,
    /// Each component's score: `bm25` (raw BM25) and `vector` (cosine similarity) when the
    /// chunk was found by them, and `fused` in hybrid mode (the same as `score`).
    pub scores: Map<String, Value>,
    /// The document's whole text, in a query grouped by document (text contents only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_text: Option<String>,
}

/// The answer to a query.
#[derive(Clone, Debug, Serialize)]
pub struct QueryResponse {
    pub mode: Mode,
    pub results: Vec<QueryResult>,
}

/// A chunk an index found, before it is checked against the store.
#[derive(Clone, Debug)]
struct Candidate {
    score: f32,
    doc_id: DocId,
    ord: u32,
    start: u64,
    end: u64,
    chunk_id: ContentId,
    content: Option<ContentId>,
}

impl From<Bm25Hit> for Candidate {
    fn from(h: Bm25Hit) -> Self {
        Self {
            score: h.score,
            doc_id: h.doc_id,
            ord: h.ord,
            start: h.start,
            end: h.end,
            chunk_id: h.chunk_id,
            content: h.content,
        }
    }
}

impl From<VectorHit> for Candidate {
    fn from(h: VectorHit) -> Self {
        Self {
            score: h.score,
            doc_id: h.chunk.doc,
            ord: h.chunk.ord,
            start: h.chunk.start,
            end: h.chunk.end,
            chunk_id: h.chunk.chunk,
            content: Some(h.chunk.content),
        }
    }
}

/// The winner of each document seen, when it is live and passes the filter.
type Winners = HashMap<DocId, Option<Version>>;

/// A candidate with its score and each component's score.
type Ranked = (Candidate, f64, Map<String, Value>);

/// Runs a checked query on collection `name` (blocking: reads the store, and may embed the
/// query text).
pub fn run(
    index: &SearchIndex,
    store: &Store,
    name: &CollectionName,
    q: &CheckedQuery,
) -> Result<QueryResponse, QueryError> {
    let mut docs = Winners::new();
    let vector = match &q.probe {
        None => None,
        Some(Probe::Given(v)) => Some(v.clone()),
        Some(Probe::Text(t)) => Some(embed_query(index, name, t)?),
    };
    let bm25 = |limit: usize| -> Result<Vec<Candidate>, QueryError> {
        Ok(index
            .bm25(name, &q.terms, limit)?
            .into_iter()
            .map(Candidate::from)
            .collect())
    };
    let by_vector = |limit: usize| -> Result<Vec<Candidate>, QueryError> {
        let v = vector.as_deref().unwrap_or_default();
        Ok(index
            .vector_search(name, v, limit)
            .into_iter()
            .map(Candidate::from)
            .collect())
    };
    let ranked: Vec<Ranked> = match q.mode {
        Mode::Bm25 | Mode::Vector => {
            let key = if q.mode == Mode::Bm25 {
                "bm25"
            } else {
                "vector"
            };
            let found = if q.mode == Mode::Bm25 {
                passing(store, name, &mut docs, q, bm25, q.top_k, q.per_document)?
            } else {
                passing(
                    store,
                    name,
                    &mut docs,
                    q,
                    by_vector,
                    q.top_k,
                    q.per_document,
                )?
            };
            found
                .into_iter()
                .map(|c| {
                    let mut scores = Map::new();
                    scores.insert(key.into(), Value::from(f64::from(c.score)));
                    let s = f64::from(c.score);
                    (c, s, scores)
                })
                .collect()
        }
        Mode::Hybrid => {
            let depth = HYBRID_DEPTH.max(q.top_k);
            // Fusion is per chunk: each side gives its best chunks, not one per document.
            let mut b = passing(store, name, &mut docs, q, bm25, depth, false)?;
            let mut v = passing(store, name, &mut docs, q, by_vector, depth, false)?;
            // Each side scores the other's candidates too, so fusion weighs every chunk of the
            // union on both scores rather than taking a zero where one list stopped. A chunk
            // with no vector yet, or matching no term, stays out of that side.
            let only_b = missing_from(&b, &v);
            let only_v = missing_from(&v, &b);
            let probe = vector.as_deref().unwrap_or_default();
            let vs = index.vector_scores(name, probe, &keys_of(&only_b));
            let bs = index.bm25_scores(name, &q.terms, &keys_of(&only_v))?;
            add_scored(&mut v, only_b, vs);
            add_scored(&mut b, only_v, bs);
            let mut fused = fuse(b, v, q.fusion, q.alpha);
            if q.per_document {
                let mut seen = std::collections::HashSet::new();
                fused.retain(|(c, ..)| seen.insert(c.doc_id.clone()));
            }
            fused.truncate(q.top_k);
            fused
        }
    };
    // Every result's text in one read of the store: the chunk's bytes, or the whole
    // content when results are documents.
    let ranges: Vec<Option<(ContentId, u64, u64)>> = ranked
        .iter()
        .map(|(c, ..)| {
            if q.per_document {
                whole_text(&docs, c)
            } else {
                c.content
                    .filter(|_| c.end > c.start)
                    .map(|cid| (cid, c.start, c.end - c.start))
            }
        })
        .collect();
    let mut texts = store
        .content_ranges(&ranges.iter().flatten().copied().collect::<Vec<_>>())?
        .into_iter();
    let mut results = Vec::with_capacity(ranked.len());
    for ((c, score, scores), range) in ranked.into_iter().zip(&ranges) {
        let bytes = match range {
            // A content gone since the candidate was read drops the result.
            Some(_) => match texts.next().flatten() {
                Some(bytes) => bytes,
                None => continue,
            },
            None => Vec::new(),
        };
        let (text, document_text) = if q.per_document && range.is_some() {
            let chunk = bytes
                .get(c.start as usize..c.end as usize)
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            (chunk, Some(String::from_utf8_lossy(&bytes).into_owned()))
        } else {
            (String::from_utf8_lossy(&bytes).into_owned(), None)
        };
        if let Some(mut r) = materialise(&docs, c, text, score, scores) {
            r.document_text = document_text;
            results.push(r);
        }
    }
    Ok(QueryResponse {
        mode: q.mode,
        results,
    })
}

/// The query text as a unit vector of the collection's model.
fn embed_query(
    index: &SearchIndex,
    name: &CollectionName,
    text: &str,
) -> Result<Vec<f32>, QueryError> {
    let embedder = index.embedder(name)?.ok_or_else(|| {
        QueryError::Invalid("this node does not run the collection's model".into())
    })?;
    let mut out = embedder
        .embed(&[text])
        .map_err(|e| QueryError::Embed(e.to_string()))?;
    out.pop()
        .ok_or_else(|| QueryError::Embed("the model answered no vector".into()))
}

/// The first `want` candidates from `fetch` (asked for ever more, up to [`MAX_EXAMINED`])
/// whose document still holds them and passes the query's filter, best first; only the best
/// of each document when `per_document`.
fn passing(
    store: &Store,
    name: &CollectionName,
    docs: &mut Winners,
    q: &CheckedQuery,
    fetch: impl Fn(usize) -> Result<Vec<Candidate>, QueryError>,
    want: usize,
    per_document: bool,
) -> Result<Vec<Candidate>, QueryError> {
    let filter = &q.filter;
    let mut limit = if filter.is_empty() && !per_document {
        want
    } else {
        want * 4
    };
    loop {
        let hits = fetch(limit)?;
        let exhausted = hits.len() < limit;
        read_winners(store, name, docs, filter, &hits)?;
        let mut out = Vec::with_capacity(want);
        let mut seen = std::collections::HashSet::new();
        for hit in hits {
            if holds(docs, &hit) && (!per_document || seen.insert(hit.doc_id.clone())) {
                out.push(hit);
                if out.len() == want {
                    break;
                }
            }
        }
        if out.len() == want || exhausted || limit >= MAX_EXAMINED {
            return Ok(out);
        }
        limit = (limit * 4).min(MAX_EXAMINED);
    }
}

/// Reads the winner of each document of `hits` not read yet, in one store transaction, and
/// keeps it when it is live and passes the filter.
fn read_winners(
    store: &Store,
    name: &CollectionName,
    docs: &mut Winners,
    filter: &Filter,
    hits: &[Candidate],
) -> Result<(), QueryError> {
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<DocId> = hits
        .iter()
        .filter(|h| !docs.contains_key(&h.doc_id) && seen.insert(&h.doc_id))
        .map(|h| h.doc_id.clone())
        .collect();
    for (id, d) in ids.iter().zip(store.get_many(name, &ids)?) {
        let winner = d
            .map(|d| d.state.winner().clone())
            .filter(|w| !w.deleted && filter.matches(&w.metadata));
        docs.insert(id.clone(), winner);
    }
    Ok(())
}

/// Whether the store still holds what `hit` was indexed from, in a document the filter takes
/// (its winner read by [`read_winners`]).
fn holds(docs: &Winners, hit: &Candidate) -> bool {
    docs.get(&hit.doc_id)
        .and_then(Option::as_ref)
        .is_some_and(|w| w.content.as_ref().map(|c| c.cid) == hit.content)
}

/// The whole content of the document `hit` is a chunk of, when it is text.
fn whole_text(docs: &Winners, hit: &Candidate) -> Option<(ContentId, u64, u64)> {
    let content = docs.get(&hit.doc_id)?.as_ref()?.content.as_ref()?;
    is_text(&content.content_type).then_some((content.cid, 0, content.len))
}

/// The candidates of `list` that `other` lacks.
fn missing_from(list: &[Candidate], other: &[Candidate]) -> Vec<Candidate> {
    let seen: std::collections::HashSet<(&DocId, u32)> =
        other.iter().map(|c| (&c.doc_id, c.ord)).collect();
    list.iter()
        .filter(|c| !seen.contains(&(&c.doc_id, c.ord)))
        .cloned()
        .collect()
}

fn keys_of(list: &[Candidate]) -> Vec<(DocId, u32)> {
    list.iter().map(|c| (c.doc_id.clone(), c.ord)).collect()
}

/// Adds each of `found` that has a score to `list`, with that score, keeping `list` best first.
fn add_scored(list: &mut Vec<Candidate>, found: Vec<Candidate>, scores: Vec<Option<f32>>) {
    list.extend(
        found
            .into_iter()
            .zip(scores)
            .filter_map(|(c, s)| Some(Candidate { score: s?, ..c })),
    );
    list.sort_by(|a, b| b.score.total_cmp(&a.score));
}

/// BM25 and vector candidates fused into one ranking, best first, with each one's scores.
fn fuse(bm25: Vec<Candidate>, vector: Vec<Candidate>, fusion: Fusion, alpha: f64) -> Vec<Ranked> {
    let mut by_chunk: HashMap<(DocId, u32), Ranked> = HashMap::new();
    for (list, key, weight) in [(bm25, "bm25", 1.0 - alpha), (vector, "vector", alpha)] {
        let (floor, hi) = list.iter().fold((0.0f32, f32::MIN), |(lo, hi), c| {
            (lo.min(c.score), hi.max(c.score))
        });
        for (rank, c) in list.into_iter().enumerate() {
            let part = match fusion {
                Fusion::Rrf => 1.0 / (RRF_K + rank as f64 + 1.0),
                Fusion::Normalized if hi > floor => {
                    weight * f64::from((c.score - floor) / (hi - floor))
                }
                Fusion::Normalized => weight,
            };
            let raw = Value::from(f64::from(c.score));
            let entry = by_chunk
                .entry((c.doc_id.clone(), c.ord))
                .or_insert_with(|| (c, 0.0, Map::new()));
            entry.1 += part;
            entry.2.insert(key.into(), raw);
        }
    }
    let mut out: Vec<Ranked> = by_chunk
        .into_values()
        .map(|(c, fused, mut scores)| {
            scores.insert("fused".into(), Value::from(fused));
            (c, fused, scores)
        })
        .collect();
    out.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| a.0.doc_id.as_str().cmp(b.0.doc_id.as_str()))
            .then(a.0.ord.cmp(&b.0.ord))
    });
    out
}

/// The result for a candidate that [`holds`], with its text (read from the store).
fn materialise(
    docs: &Winners,
    hit: Candidate,
    text: String,
    score: f64,
    scores: Map<String, Value>,
) -> Option<QueryResult> {
    let w = docs.get(&hit.doc_id).and_then(Option::as_ref)?;
    Some(QueryResult {
        chunk_id: hit.chunk_id.to_string(),
        ord: hit.ord,
        start: hit.start,
        end: hit.end,
        text,
        title: w.title.clone(),
        metadata: w.metadata.clone(),
        score,
        scores,
        doc_id: hit.doc_id,
        document_text: None,
    })
}
