//! Queries: what a caller asks (`POST /v1/collections/{c}/query`), how it is checked, and
//! how index hits become results read from the store.
//!
//! Results are chunks, best first. Each is checked against the store as it is when the query
//! runs: a hit whose document has since been deleted, or whose winner no longer holds the
//! content the chunk was cut from, is left out (the index lags the store by at most one
//! indexer commit; see [`crate::index`]), so a result never shows text the document no longer
//! has. Metadata filters apply to the winner's metadata.

use std::collections::HashMap;

use ragsync_core::settings::MAX_TOP_K;
use ragsync_core::{Collection, CollectionName, DocId, Version};
use ragsync_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::filter::Filter;
use crate::index::{Bm25Hit, IndexError, SearchIndex};

/// Longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 << 10;
/// Most hits a filtered query examines before it answers with what passed.
const MAX_EXAMINED: usize = 20_000;

/// A query as a caller sends it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub alpha: Option<f64>,
    #[serde(default)]
    pub filter: Option<Value>,
}

/// How results are ranked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Bm25,
    Vector,
    Hybrid,
}

/// A query that passed its checks.
#[derive(Clone, Debug)]
pub struct CheckedQuery {
    pub mode: Mode,
    pub terms: Vec<String>,
    pub top_k: usize,
    pub filter: Filter,
}

/// Why a query was refused (a 400) or failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Filter(String),
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
            QueryError::Store(e) => e.code(),
            QueryError::Index(_) => "internal",
        }
    }
}

/// Checks `req` against collection `c`: the mode is known and possible for its embedding
/// model, the text has words, `top_k` and `alpha` are in range, the filter parses.
pub fn check(
    index: &SearchIndex,
    c: &Collection,
    req: &QueryRequest,
) -> Result<CheckedQuery, QueryError> {
    let bad = |m: String| Err(QueryError::Invalid(m));
    let mode = match req.mode.as_deref() {
        None if req.query.is_none() && req.vector.is_some() => Mode::Vector,
        None | Some("bm25") => Mode::Bm25,
        Some("vector") => Mode::Vector,
        Some("hybrid") => Mode::Hybrid,
        Some(other) => return bad(format!("unknown mode {other:?}: bm25, vector or hybrid")),
    };
    if let Some(a) = req.alpha
        && !(0.0..=1.0).contains(&a)
    {
        return bad(format!("alpha {a} is outside [0, 1]"));
    }
    let top_k = req.top_k.unwrap_or(c.settings.search.top_k);
    if top_k == 0 || top_k > MAX_TOP_K {
        return bad(format!("top_k must be 1 to {MAX_TOP_K}"));
    }
    if mode != Mode::Bm25 {
        let mode = serde_json::to_value(mode).unwrap_or_default();
        return bad(match c.settings.embedding.model.as_str() {
            "none" => format!(
                "mode {mode} needs vectors, and collection {} has no embedding model \
                 (embedding.model is \"none\"); query it with mode bm25",
                c.name
            ),
            model => format!(
                "mode {mode} needs vectors, and this build does not compute or store them yet \
                 (collection {} declares embedding model {model:?}); query it with mode bm25",
                c.name
            ),
        });
    }
    if req.vector.is_some() {
        return bad("a vector needs mode vector or hybrid".into());
    }
    let text = req.query.as_deref().unwrap_or("");
    if text.trim().is_empty() {
        return bad("query is empty".into());
    }
    if text.len() > MAX_QUERY_BYTES {
        return bad(format!("query is longer than {MAX_QUERY_BYTES} bytes"));
    }
    let terms = index.query_terms(&c.name, text);
    if terms.is_empty() {
        return bad("query has no words to search for".into());
    }
    let filter = match &req.filter {
        None | Some(Value::Null) => Filter::default(),
        Some(f) => Filter::parse(f).map_err(QueryError::Filter)?,
    };
    Ok(CheckedQuery {
        mode,
        terms,
        top_k: top_k as usize,
        filter,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub metadata: Map<String, Value>,
    pub score: f64,
    /// Each component's score: `bm25` (raw), and with vectors `vector` and their fusion.
    pub scores: Map<String, Value>,
}

/// The answer to a query.
#[derive(Clone, Debug, Serialize)]
pub struct QueryResponse {
    pub mode: Mode,
    pub results: Vec<QueryResult>,
}

/// Runs a checked query on collection `name` (blocking: reads the store).
pub fn run(
    index: &SearchIndex,
    store: &Store,
    name: &CollectionName,
    q: &CheckedQuery,
) -> Result<QueryResponse, QueryError> {
    // The winner of each document seen, when it is live and passes the filter.
    let mut docs: HashMap<DocId, Option<Version>> = HashMap::new();
    let mut limit = if q.filter.is_empty() {
        q.top_k
    } else {
        q.top_k * 4
    };
    loop {
        let hits = index.bm25(name, &q.terms, limit)?;
        let exhausted = hits.len() < limit;
        let mut results = Vec::with_capacity(q.top_k);
        for hit in hits {
            if let Some(r) = resolve(store, name, &mut docs, &q.filter, hit)? {
                results.push(r);
                if results.len() == q.top_k {
                    break;
                }
            }
        }
        if results.len() == q.top_k || exhausted || limit >= MAX_EXAMINED {
            return Ok(QueryResponse {
                mode: q.mode,
                results,
            });
        }
        limit = (limit * 4).min(MAX_EXAMINED);
    }
}

/// The result for `hit`, read from the store; `None` when the store no longer has what was
/// indexed or the filter refuses it.
fn resolve(
    store: &Store,
    name: &CollectionName,
    docs: &mut HashMap<DocId, Option<Version>>,
    filter: &Filter,
    hit: Bm25Hit,
) -> Result<Option<QueryResult>, QueryError> {
    if !docs.contains_key(&hit.doc_id) {
        let winner = store
            .get(name, &hit.doc_id)?
            .map(|d| d.state.winner().clone())
            .filter(|w| !w.deleted && filter.matches(&w.metadata));
        docs.insert(hit.doc_id.clone(), winner);
    }
    let Some(w) = docs.get(&hit.doc_id).and_then(Option::as_ref) else {
        return Ok(None);
    };
    if w.content.as_ref().map(|c| c.cid) != hit.content {
        return Ok(None);
    }
    let text = match hit.content.filter(|_| hit.end > hit.start) {
        Some(cid) => match store.content_range(&cid, hit.start, hit.end - hit.start)? {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => return Ok(None),
        },
        None => String::new(),
    };
    let mut scores = Map::new();
    scores.insert("bm25".into(), Value::from(f64::from(hit.score)));
    Ok(Some(QueryResult {
        chunk_id: hit.chunk_id.to_string(),
        ord: hit.ord,
        start: hit.start,
        end: hit.end,
        text,
        title: w.title.clone(),
        metadata: w.metadata.clone(),
        score: f64::from(hit.score),
        scores,
        doc_id: hit.doc_id,
    }))
}
