//! Content bytes, stored once per BLAKE3 id.

use ragsync_core::ContentId;
use rusqlite::{MAIN_DB, OptionalExtension, Transaction, params};

use crate::{Store, StoreError};

/// Stores `bytes` under their id unless they are already there. Returns the id.
pub(crate) fn put(tx: &Transaction<'_>, bytes: &[u8]) -> Result<ContentId, StoreError> {
    let cid = ContentId::of(bytes);
    tx.prepare_cached("INSERT OR IGNORE INTO contents (cid, len, data) VALUES (?1, ?2, ?3)")?
        .execute(params![&cid.as_bytes()[..], bytes.len() as i64, bytes])?;
    Ok(cid)
}

fn locate(tx: &Transaction<'_>, cid: &ContentId) -> Result<Option<(i64, u64)>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT rowid, len FROM contents WHERE cid = ?1")?
        .query_row([&cid.as_bytes()[..]], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

impl Store {
    /// The length of a stored content, or `None` when it is not stored here.
    pub fn content_len(&self, cid: &ContentId) -> Result<Option<u64>, StoreError> {
        self.read(|tx| Ok(locate(tx, cid)?.map(|(_, len)| len)))
    }

    /// The whole content, or `None` when it is not stored here.
    pub fn content(&self, cid: &ContentId) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|tx| {
            Ok(tx
                .prepare_cached("SELECT data FROM contents WHERE cid = ?1")?
                .query_row([&cid.as_bytes()[..]], |r| r.get(0))
                .optional()?)
        })
    }

    /// Bytes `offset..offset + len` of a content (cut at its end), read in place without
    /// loading the rest. `None` when the content is not stored here.
    pub fn content_range(
        &self,
        cid: &ContentId,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|tx| {
            let Some((rowid, total)) = locate(tx, cid)? else {
                return Ok(None);
            };
            let start = offset.min(total);
            let end = offset.saturating_add(len).min(total);
            let mut buf = vec![0u8; (end - start) as usize];
            let blob = tx.blob_open(MAIN_DB, c"contents", c"data", rowid, true)?;
            blob.read_at_exact(&mut buf, start as usize)?;
            Ok(Some(buf))
        })
    }
}

/// The stored contents among `cids` that are at most `max_len` bytes long. Missing or
/// larger contents are left out.
pub(crate) fn read_small(
    tx: &Transaction<'_>,
    cids: &[ContentId],
    max_len: u64,
) -> Result<Vec<(ContentId, Vec<u8>)>, StoreError> {
    let mut stmt = tx.prepare_cached("SELECT data FROM contents WHERE cid = ?1 AND len <= ?2")?;
    let mut out = Vec::new();
    for cid in cids {
        let data: Option<Vec<u8>> = stmt
            .query_row(params![&cid.as_bytes()[..], max_len as i64], |r| r.get(0))
            .optional()?;
        if let Some(data) = data {
            out.push((*cid, data));
        }
    }
    Ok(out)
}
