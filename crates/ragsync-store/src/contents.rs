//! Content bytes, stored once per BLAKE3 id.

use std::collections::BTreeMap;

use ragsync_core::{ContentId, ContentRef};
use rusqlite::{MAIN_DB, OptionalExtension, Transaction, params};

use crate::tx::WriteTx;
use crate::{Store, StoreError};

/// Stores `bytes` under their id unless they are already there, and no longer wants them.
/// Returns the id.
pub(crate) fn put(tx: &mut WriteTx<'_>, bytes: &[u8]) -> Result<ContentId, StoreError> {
    let cid = ContentId::of(bytes);
    let key = &cid.as_bytes()[..];
    let stored = tx
        .tx
        .prepare_cached("INSERT OR IGNORE INTO contents (cid, len, data) VALUES (?1, ?2, ?3)")?
        .execute(params![key, bytes.len() as i64, bytes])?;
    if stored > 0 {
        tx.counts.content_stored(bytes.len());
    }
    tx.tx
        .prepare_cached("DELETE FROM wanted WHERE cid = ?1")?
        .execute([key])?;
    Ok(cid)
}

/// Makes sure a replicated version's content will be here: already stored, stored now from
/// `inline` (when its bytes hash to its id), or recorded as wanted. Bytes that do not hash to
/// the id they came under are refused: nothing unverified is stored.
pub(crate) fn receive(
    tx: &mut WriteTx<'_>,
    content: &ContentRef,
    inline: &BTreeMap<ContentId, Vec<u8>>,
) -> Result<(), StoreError> {
    if locate(&tx.tx, &content.cid)?.is_some() {
        return Ok(());
    }
    match inline.get(&content.cid) {
        Some(bytes) => {
            if ContentId::of(bytes) != content.cid {
                return Err(StoreError::InvalidState(format!(
                    "inline content {} does not hash to its id",
                    content.cid
                )));
            }
            put(tx, bytes)?;
        }
        None => {
            tx.tx
                .prepare_cached("INSERT OR IGNORE INTO wanted (cid, len) VALUES (?1, ?2)")?
                .execute(params![&content.cid.as_bytes()[..], content.len as i64])?;
        }
    }
    Ok(())
}

fn locate(tx: &Transaction<'_>, cid: &ContentId) -> Result<Option<(i64, u64)>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT rowid, len FROM contents WHERE cid = ?1")?
        .query_row([&cid.as_bytes()[..]], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

/// Stores `inline` bytes for `content` when they are still wanted here and hash to its id (a
/// state already known may come again with the bytes it was waiting for). Adds no want.
pub(crate) fn fill_if_wanted(
    tx: &mut WriteTx<'_>,
    content: &ContentRef,
    inline: &BTreeMap<ContentId, Vec<u8>>,
) -> Result<(), StoreError> {
    let Some(bytes) = inline.get(&content.cid) else {
        return Ok(());
    };
    let wanted = tx
        .tx
        .prepare_cached("SELECT 1 FROM wanted WHERE cid = ?1")?
        .query_row([&content.cid.as_bytes()[..]], |_| Ok(()))
        .optional()?
        .is_some();
    if wanted && ContentId::of(bytes) == content.cid {
        put(tx, bytes)?;
    }
    Ok(())
}

impl Store {
    /// Contents that replicated states reference and that are not stored here, with the
    /// length their versions claim: at most `limit`, by id, from the first after `after`.
    pub fn wanted(
        &self,
        after: Option<ContentId>,
        limit: usize,
    ) -> Result<Vec<(ContentId, u64)>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT cid, len FROM wanted WHERE cid > ?2 ORDER BY cid LIMIT ?1",
            )?;
            let after = after.map_or(Vec::new(), |c| c.as_bytes().to_vec());
            let rows = stmt.query_map(rusqlite::params![limit as i64, after], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })?;
            rows.map(|r| {
                let (cid, len) = r?;
                let cid: [u8; 32] = cid.try_into().map_err(|_| {
                    StoreError::Corrupt("a wanted content id is not 32 bytes".into())
                })?;
                Ok((ContentId(cid), len as u64))
            })
            .collect()
        })
    }

    /// Which of `cids` are wanted here (referenced by a stored state, bytes not yet here).
    pub fn wanted_among(&self, cids: &[ContentId]) -> Result<Vec<ContentId>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached("SELECT 1 FROM wanted WHERE cid = ?1")?;
            let mut out = Vec::new();
            for cid in cids {
                let wanted = stmt
                    .query_row([&cid.as_bytes()[..]], |_| Ok(()))
                    .optional()?;
                if wanted.is_some() && !out.contains(cid) {
                    out.push(*cid);
                }
            }
            Ok(out)
        })
    }

    /// Stores fetched bytes if they are a wanted content (their BLAKE3 id is the check), and
    /// no longer wants them, in one transaction. False, storing nothing, when no stored
    /// version references them: a peer cannot fill the store with bytes nobody asked for.
    pub fn put_wanted(&self, bytes: &[u8]) -> Result<bool, StoreError> {
        let cid = ContentId::of(bytes);
        self.write_tx(|tx| {
            let wanted = tx
                .tx
                .prepare_cached("SELECT 1 FROM wanted WHERE cid = ?1")?
                .query_row([&cid.as_bytes()[..]], |_| Ok(()))
                .optional()?
                .is_some();
            if wanted {
                put(tx, bytes)?;
            }
            Ok(wanted)
        })
    }

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
        self.read(|tx| range_in(tx, cid, offset, len))
    }

    /// [`Store::content_range`] for each of `ranges` (content, offset, length), in one read
    /// transaction, in the order asked.
    pub fn content_ranges(
        &self,
        ranges: &[(ContentId, u64, u64)],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read(|tx| {
            ranges
                .iter()
                .map(|(cid, offset, len)| range_in(tx, cid, *offset, *len))
                .collect()
        })
    }
}

fn range_in(
    tx: &Transaction<'_>,
    cid: &ContentId,
    offset: u64,
    len: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some((rowid, total)) = locate(tx, cid)? else {
        return Ok(None);
    };
    let start = offset.min(total);
    let end = offset.saturating_add(len).min(total);
    let mut buf = vec![0u8; (end - start) as usize];
    let blob = tx.blob_open(MAIN_DB, c"contents", c"data", rowid, true)?;
    blob.read_at_exact(&mut buf, start as usize)?;
    Ok(Some(buf))
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
