//! What one document gives the index: the chunks of its winner, and its BM25 entries (a
//! document's chunks are replaced as a whole).

use ragsync_core::settings::Chunking;
use ragsync_core::{ContentId, DocId, DocState};
use ragsync_store::StoreError;
use tantivy::indexer::UserOperation;
use tantivy::{TantivyDocument, Term};

use super::{CollIndex, IndexError, Writer};
use crate::chunk::chunk;
use crate::vectors::ChunkRef;

/// Whether a media type is text the index reads.
pub fn is_text(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    t.starts_with("text/")
        || t == "application/json"
        || t == "application/xml"
        || t.ends_with("+json")
        || t.ends_with("+xml")
}

/// What a document's winner gives the index: its content (when it has one), the content it
/// still waits for, and its chunks.
pub(super) struct DocChunks {
    pub(super) content: Option<ContentId>,
    pub(super) waiting: Option<ContentId>,
    pub(super) chunks: Vec<ChunkRef>,
}

/// The chunks of a document's winner (none when it is deleted, or its text is not here or
/// not UTF-8), cut by `chunking`, with the text of each as the index reads it.
pub(super) fn doc_chunks(
    chunking: &Chunking,
    id: &DocId,
    state: &DocState,
    content: impl Fn(&ContentId) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<(DocChunks, Option<String>), IndexError> {
    let winner = state.winner();
    let mut out = DocChunks {
        content: None,
        waiting: None,
        chunks: Vec::new(),
    };
    if winner.deleted {
        return Ok((out, None));
    }
    out.content = winner.content.as_ref().map(|c| c.cid);
    let mut body = None;
    if let Some(c) = winner.content.as_ref().filter(|c| is_text(&c.content_type)) {
        match content(&c.cid)? {
            // Offsets are into the content's bytes: text that is not UTF-8 is indexed by its
            // title alone rather than by a lossy copy whose offsets would drift.
            Some(bytes) => body = String::from_utf8(bytes).ok(),
            None => out.waiting = Some(c.cid),
        }
    }
    if let (Some(text), Some(cid)) = (&body, out.content) {
        out.chunks = chunk(text, chunking)
            .into_iter()
            .map(|ch| ChunkRef {
                doc: id.clone(),
                ord: ch.ord,
                start: ch.start as u64,
                end: ch.end as u64,
                chunk: ch.id,
                content: cid,
            })
            .collect();
    }
    Ok((out, body))
}

/// Replaces document `id`'s BM25 chunks by those of its winner (its title goes with every
/// chunk; a document without chunks but with a title is indexed by its title alone).
/// Returns what the winner gave.
pub(super) fn index_doc(
    ci: &CollIndex,
    id: &DocId,
    state: &DocState,
    content: impl Fn(&ContentId) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<DocChunks, IndexError> {
    let f = ci.fields;
    let mut guard = ci.writer.lock().unwrap_or_else(|e| e.into_inner());
    let writer = &mut *guard;
    let term = Term::from_field_text(f.doc, id.as_str());
    if writer.added.contains(id) || ci.reader.searcher().doc_freq(&term)? > 0 {
        writer.queue(UserOperation::Delete(term))?;
    }
    let (doc, body) = doc_chunks(&ci.config.chunking, id, state, content)?;
    let winner = state.winner();
    if winner.deleted {
        return Ok(doc);
    }
    let title = winner.title.as_deref().unwrap_or("");
    let add = |writer: &mut Writer, c: &ChunkRef, content: Option<ContentId>, text: &str| {
        let mut d = TantivyDocument::default();
        d.add_text(f.doc, id.as_str());
        d.add_u64(f.ord, u64::from(c.ord));
        d.add_u64(f.start, c.start);
        d.add_u64(f.end, c.end);
        d.add_bytes(f.chunk, c.chunk.as_bytes());
        if let Some(cid) = content {
            d.add_bytes(f.content, cid.as_bytes());
        }
        d.add_text(f.text, text);
        writer.queue(UserOperation::Add(d))
    };
    if doc.chunks.is_empty() {
        if !title.trim().is_empty() {
            let only = ChunkRef {
                doc: id.clone(),
                ord: 0,
                start: 0,
                end: 0,
                chunk: ContentId::of(b""),
                content: doc.content.unwrap_or(ContentId::of(b"")),
            };
            add(writer, &only, doc.content, title)?;
            writer.added.insert(id.clone());
        }
        return Ok(doc);
    }
    writer.added.insert(id.clone());
    let text = body.as_deref().unwrap_or("");
    for c in &doc.chunks {
        let piece = &text[c.start as usize..c.end as usize];
        if title.is_empty() {
            add(writer, c, Some(c.content), piece)?;
        } else {
            add(writer, c, Some(c.content), &format!("{title}\n{piece}"))?;
        }
    }
    Ok(doc)
}
