//! Embeddings: vectors derived from chunk texts (by a node's embedder, or sent by a client
//! for an `external` model), stored by model id and chunk content id.
//!
//! They are derived data, not document state: they take no feed `seq` and are never merged.
//! A vector is a function of its model and its chunk's text, so a chunk is embedded once per
//! model, whatever documents hold it, and a peer that sent it saves this node the work. Each
//! content whose chunks were all embedded has a row naming those chunks, so a feed page can
//! send a version's embeddings along with it (see [`ContentEmbeddings`]).
//!
//! Vectors from peers are checked for shape (one per chunk, one dimension, finite numbers),
//! not for truth: a peer with a token is trusted to run the model it names.

use std::collections::HashSet;

use ragsync_core::ContentId;
use ragsync_core::settings::MAX_EMBEDDING_DIMENSION;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::{Store, StoreError};

/// Longest model id.
const MAX_MODEL_BYTES: usize = 200;

/// The embeddings of one content's chunks under one model.
#[derive(Clone, Debug, PartialEq)]
pub struct ContentEmbeddings {
    pub model: String,
    pub content: ContentId,
    /// The content's chunks, in order, and one vector for each.
    pub chunks: Vec<ContentId>,
    pub vectors: Vec<Vec<f32>>,
}

impl ContentEmbeddings {
    /// Refuses a set that is not one finite vector per chunk, all of one dimension.
    pub fn check(&self) -> Result<(), StoreError> {
        let bad = |m: String| Err(StoreError::InvalidEmbeddings(m));
        if self.model.is_empty() || self.model.len() > MAX_MODEL_BYTES {
            return bad(format!("model id must be 1 to {MAX_MODEL_BYTES} bytes"));
        }
        if self.chunks.len() != self.vectors.len() {
            return bad(format!(
                "{} chunks and {} vectors",
                self.chunks.len(),
                self.vectors.len()
            ));
        }
        let dim = self.vectors.first().map_or(1, Vec::len);
        if dim == 0 || dim > MAX_EMBEDDING_DIMENSION as usize {
            return bad(format!(
                "dimension {dim} is not 1 to {MAX_EMBEDDING_DIMENSION}"
            ));
        }
        if self.vectors.iter().any(|v| v.len() != dim) {
            return bad("vectors of different dimensions".into());
        }
        if self.vectors.iter().flatten().any(|x| !x.is_finite()) {
            return bad("a vector holds a number that is not finite".into());
        }
        Ok(())
    }
}

/// A vector as stored: its coordinates as little-endian `f32`s.
pub fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The coordinates of a stored vector (`None` when its length is not a multiple of 4).
pub fn decode_vector(b: &[u8]) -> Option<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// A stored vector by model and chunk. Both tables are indexed by the first 8 bytes of their
/// random id (schema migration 10): each query names that prefix, then the whole id.
const VECTOR_OF: &str =
    "SELECT vec FROM embeddings WHERE substr(chunk, 1, 8) = ?1 AND chunk = ?2 AND model = ?3";

/// The index key of a chunk or content id: its first 8 bytes.
fn key(id: &ContentId) -> &[u8] {
    &id.as_bytes()[..8]
}

/// The vector stored for `chunk` under `model`, if any.
fn vector_of(
    stmt: &mut rusqlite::CachedStatement<'_>,
    model: &str,
    chunk: &ContentId,
) -> Result<Option<Vec<f32>>, StoreError> {
    let v = stmt
        .query_row(params![key(chunk), &chunk.as_bytes()[..], model], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .optional()?;
    Ok(v.and_then(|b| decode_vector(&b)))
}

fn decode_cids(b: &[u8]) -> Option<Vec<ContentId>> {
    if !b.len().is_multiple_of(32) {
        return None;
    }
    Some(
        b.chunks_exact(32)
            .map(|c| ContentId(c.try_into().expect("32 bytes")))
            .collect(),
    )
}

impl Store {
    /// The stored vectors of `chunks` under `model`, in order (`None` where there is none).
    pub fn embeddings(
        &self,
        model: &str,
        chunks: &[ContentId],
    ) -> Result<Vec<Option<Vec<f32>>>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(VECTOR_OF)?;
            chunks
                .iter()
                .map(|c| vector_of(&mut stmt, model, c))
                .collect()
        })
    }

    /// Stores embeddings computed here, each set checked first; a later vector for the same
    /// model and chunk replaces the earlier one. Takes no feed `seq`.
    pub fn put_embeddings(&self, sets: &[ContentEmbeddings]) -> Result<(), StoreError> {
        for s in sets {
            s.check()?;
        }
        self.write_tx(|tx| {
            for s in sets {
                put(&tx.tx, s, true)?;
            }
            Ok(())
        })
    }
}

/// Stores one set (checked by the caller). `replace`: a vector already stored for a chunk is
/// overwritten (a local write, or the version that won here), else kept (a peer's copy of what
/// may be here already). True when a vector or the content's list of chunks changed.
pub(crate) fn put(
    tx: &Transaction<'_>,
    s: &ContentEmbeddings,
    replace: bool,
) -> Result<bool, StoreError> {
    let mut find = tx.prepare_cached(
        "SELECT rowid, vec FROM embeddings \
         WHERE substr(chunk, 1, 8) = ?1 AND chunk = ?2 AND model = ?3",
    )?;
    let mut insert =
        tx.prepare_cached("INSERT INTO embeddings (model, chunk, vec) VALUES (?1, ?2, ?3)")?;
    let mut update = tx.prepare_cached("UPDATE embeddings SET vec = ?2 WHERE rowid = ?1")?;
    let mut changed = false;
    for (c, v) in s.chunks.iter().zip(&s.vectors) {
        let id = &c.as_bytes()[..];
        let there: Option<(i64, Vec<u8>)> = find
            .query_row(params![key(c), id, s.model], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let vec = encode_vector(v);
        changed |= match there {
            None => insert.execute(params![s.model, id, vec])? > 0,
            Some((row, old)) if replace && old != vec => update.execute(params![row, vec])? > 0,
            Some(_) => false,
        };
    }
    let chunks: Vec<u8> = s
        .chunks
        .iter()
        .flat_map(|c| c.as_bytes())
        .copied()
        .collect();
    let content = &s.content.as_bytes()[..];
    let there: Option<(i64, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT rowid, chunks FROM embedded_contents \
             WHERE substr(content, 1, 8) = ?1 AND content = ?2 AND model = ?3",
        )?
        .query_row(params![key(&s.content), content, s.model], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    changed |= match there {
        None => {
            tx.prepare_cached(
                "INSERT INTO embedded_contents (model, content, chunks) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![s.model, content, chunks])?
                > 0
        }
        Some((row, old)) if replace && old != chunks => {
            tx.prepare_cached("UPDATE embedded_contents SET chunks = ?2 WHERE rowid = ?1")?
                .execute(params![row, chunks])?
                > 0
        }
        Some(_) => false,
    };
    Ok(changed)
}

/// The stored embeddings of `contents`, under every model that has all of their chunks: what
/// a feed page sends with its versions.
pub(crate) fn for_contents(
    tx: &Transaction<'_>,
    contents: &[ContentId],
) -> Result<Vec<ContentEmbeddings>, StoreError> {
    // Most nodes keep no vectors: one lookup answers for the whole page.
    let any: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM embedded_contents)")?
        .query_row([], |r| r.get(0))?;
    if !any || contents.is_empty() {
        return Ok(Vec::new());
    }
    let mut sets_of = tx.prepare_cached(
        "SELECT model, chunks FROM embedded_contents \
         WHERE substr(content, 1, 8) = ?1 AND content = ?2",
    )?;
    let mut vec_of = tx.prepare_cached(VECTOR_OF)?;
    let mut out = Vec::new();
    for content in contents {
        let sets: Vec<(String, Vec<u8>)> = sets_of
            .query_map(params![key(content), &content.as_bytes()[..]], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        'sets: for (model, chunks) in sets {
            let Some(chunks) = decode_cids(&chunks) else {
                continue;
            };
            let mut vectors = Vec::with_capacity(chunks.len());
            for c in &chunks {
                match vector_of(&mut vec_of, &model, c)? {
                    Some(v) => vectors.push(v),
                    None => continue 'sets,
                }
            }
            out.push(ContentEmbeddings {
                model,
                content: *content,
                chunks,
                vectors,
            });
        }
    }
    Ok(out)
}

/// Stores the embeddings a peer sent with a page: those of `won` contents (of versions that
/// came to win here with this page) over what is stored, the others keeping it. Sets that
/// fail their check are left out (derived data: this node embeds those chunks itself when it
/// can).
pub(crate) fn receive(
    tx: &Transaction<'_>,
    sets: &[ContentEmbeddings],
    won: &HashSet<ContentId>,
) -> Result<(), StoreError> {
    for s in sets {
        match s.check() {
            Ok(()) => {
                put(tx, s, won.contains(&s.content))?;
            }
            Err(e) => {
                tracing::warn!(model = %s.model, content = %s.content, error = %e, "embeddings from a peer refused");
            }
        }
    }
    Ok(())
}
