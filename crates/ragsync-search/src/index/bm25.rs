//! The BM25 read side of the index: a collection's best chunks for analysed terms, and the
//! scores of named chunks under the same statistics.

use std::collections::HashMap;

use ragsync_core::{CollectionName, ContentId, DocId};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{TantivyDocument, Term};

use super::{Fields, IndexError, SearchIndex};
use crate::analysis::query_terms;

/// Most chunks [`SearchIndex::bm25_scores`] reads for one call (the chunks of the documents
/// it is asked about that match the terms).
const MAX_SCORED: usize = 10_000;
/// One chunk found by BM25.
#[derive(Clone, Debug, PartialEq)]
pub struct Bm25Hit {
    pub score: f32,
    pub doc_id: DocId,
    pub ord: u32,
    /// Byte range of the chunk in the content.
    pub start: u64,
    pub end: u64,
    pub chunk_id: ContentId,
    /// The winner's content when indexed (the chunk's source, unless `start == end`: a
    /// document indexed by its title alone), `None` when it had none.
    pub content: Option<ContentId>,
}

impl SearchIndex {
    /// The language collection `name` is indexed with, `None` when it has no index here.
    pub fn language(&self, name: &CollectionName) -> Option<String> {
        self.coll(name).map(|ci| ci.config.language.clone())
    }

    /// The `limit` best chunks of collection `name` for `terms` (already analysed, see
    /// [`query_terms`]), by BM25, best first. Empty when the collection has no index here.
    pub fn bm25(
        &self,
        name: &CollectionName,
        terms: &[String],
        limit: usize,
    ) -> Result<Vec<Bm25Hit>, IndexError> {
        let Some(ci) = self.coll(name) else {
            return Ok(Vec::new());
        };
        let query = terms_query(&ci.fields, terms);
        let searcher = ci.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit.max(1)).order_by_score())?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            out.push(hit_of(&d, &ci.fields, score)?);
        }
        Ok(out)
    }

    /// The BM25 score for `terms` of each of `chunks` (document, ord) of collection `name`
    /// that matches one of them, scored as [`SearchIndex::bm25`] scores it (the collection's
    /// statistics), however far down its ranking the chunk is.
    pub fn bm25_scores(
        &self,
        name: &CollectionName,
        terms: &[String],
        chunks: &[(DocId, u32)],
    ) -> Result<Vec<Option<f32>>, IndexError> {
        let Some(ci) = self.coll(name).filter(|_| !chunks.is_empty()) else {
            return Ok(vec![None; chunks.len()]);
        };
        let f = ci.fields;
        let docs = TermSetQuery::new(
            chunks
                .iter()
                .map(|(doc, _)| Term::from_field_text(f.doc, doc.as_str())),
        );
        // The document filter adds nothing to the score: it only narrows what is scored.
        let query = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(terms_query(&f, terms)) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(docs), 0.0)),
            ),
        ]);
        let searcher = ci.reader.searcher();
        let found = searcher.search(&query, &TopDocs::with_limit(MAX_SCORED).order_by_score())?;
        let mut scores: HashMap<(DocId, u32), f32> = HashMap::with_capacity(found.len());
        for (score, addr) in found {
            let d: TantivyDocument = searcher.doc(addr)?;
            let hit = hit_of(&d, &f, score)?;
            scores.insert((hit.doc_id, hit.ord), score);
        }
        Ok(chunks.iter().map(|k| scores.get(k).copied()).collect())
    }

    /// Analyses `text` as collection `name`'s index does (English when it has none).
    pub fn query_terms(&self, name: &CollectionName, text: &str) -> Vec<String> {
        let lang = self.language(name).unwrap_or_else(|| "english".into());
        query_terms(&lang, text)
    }
}

/// Chunks matching any of `terms` (already analysed), scored by BM25.
fn terms_query(f: &Fields, terms: &[String]) -> BooleanQuery {
    BooleanQuery::new(
        terms
            .iter()
            .map(|t| {
                let q = TermQuery::new(
                    Term::from_field_text(f.text, t),
                    IndexRecordOption::WithFreqs,
                );
                (Occur::Should, Box::new(q) as Box<dyn Query>)
            })
            .collect(),
    )
}

pub(super) fn hit_of(d: &TantivyDocument, f: &Fields, score: f32) -> Result<Bm25Hit, IndexError> {
    let bad = || IndexError::State("an indexed chunk lacks a stored field".into());
    let u64_of = |field| d.get_first(field).and_then(|v| v.as_u64()).ok_or_else(bad);
    let cid_of = |field| -> Option<ContentId> {
        let b = d.get_first(field)?.as_bytes()?;
        Some(ContentId(b.try_into().ok()?))
    };
    Ok(Bm25Hit {
        score,
        doc_id: DocId::from_stored(
            d.get_first(f.doc)
                .and_then(|v| v.as_str())
                .ok_or_else(bad)?
                .to_owned(),
        ),
        ord: u64_of(f.ord)? as u32,
        start: u64_of(f.start)?,
        end: u64_of(f.end)?,
        chunk_id: cid_of(f.chunk).ok_or_else(bad)?,
        content: cid_of(f.content),
    })
}
