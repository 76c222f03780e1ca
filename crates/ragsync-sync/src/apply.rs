//! The one place a driver of the engine touches the store: applying a page the engine asked
//! to apply, or one a peer pushed (blocking calls: run them where blocking is allowed). The
//! server and the simulation both use them, so they apply pages the same way.

use ragsync_core::ContentId;
use ragsync_core::NodeId;
use ragsync_store::{Page, Store, StoreError};

use crate::pull::ApplyOutcome;
use crate::wire::{ChangesResponse, PageRows, PushAnswer, RowRefusal, WireError};

/// Applies a page with its cursor; a failure to apply it at all leaves the cursor as stored.
///
/// `peer` is the node the puller pulls from (never what the page claims to be: the puller has
/// checked that the two agree).
pub fn apply_page(store: &Store, peer: NodeId, page: ChangesResponse) -> ApplyOutcome {
    let (epoch, since, next_since, head) = (page.epoch, page.since, page.next_since, page.head);
    let stored = || {
        store
            .cursor(peer)
            .ok()
            .flatten()
            .filter(|c| c.epoch == epoch)
            .map_or(0, |c| c.since)
    };
    let failed = |why: String| ApplyOutcome {
        cursor: stored(),
        changed: 0,
        parked: 0,
        stopped: Some(why),
    };
    let PageRows {
        rows,
        inline,
        embeddings,
    } = match page.into_entries() {
        Ok(x) => x,
        Err(e) => return failed(e.to_string()),
    };
    let page = Page {
        peer,
        epoch,
        since,
        rows: &rows,
        inline: &inline,
        embeddings: &embeddings,
        next_since,
        head,
    };
    match store.apply_page(&page) {
        Ok(a) => ApplyOutcome {
            cursor: a.cursor,
            changed: a.changed,
            parked: a.parked.len(),
            stopped: a.stopped.map(|e| e.to_string()),
        },
        Err(e) => failed(e.to_string()),
    }
}

/// Why a pushed page was refused whole.
#[derive(Debug, thiserror::Error)]
pub enum PushRefused {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies a page node `page.node_id` pushed here (`POST /v1/sync/changes`) and says what
/// became of each row (see [`crate::wire`]). The rows must come after the page's `since`, in
/// order; the page's other claims (`next_since`, `head`) are the sender's business.
pub fn apply_pushed(store: &Store, page: ChangesResponse) -> Result<PushAnswer, PushRefused> {
    let from = page.node_id;
    let since = page.since;
    let PageRows {
        rows,
        inline,
        embeddings,
    } = page.into_entries()?;
    if rows.first().is_some_and(|r| r.seq <= since) {
        return Err(WireError(format!("rows must come after since {since}")).into());
    }
    let pushed = store.apply_pushed(from, &rows, &inline, &embeddings)?;
    // The contents of rows that are now held here and whose bytes are not.
    let cids: Vec<ContentId> = rows
        .iter()
        .filter(|r| pushed.applied.binary_search(&r.seq).is_ok())
        .flat_map(|r| r.item.content_ids())
        .collect();
    let wanted = store.wanted_among(&cids)?;
    let refusal = |(seq, code, reason): (u64, &str, String)| RowRefusal {
        seq,
        code: code.to_string(),
        reason,
    };
    Ok(PushAnswer {
        node_id: store.node_id(),
        epoch: store.epoch(),
        applied: pushed.applied,
        changed: pushed.changed,
        parked: pushed.parked.into_iter().map(refusal).collect(),
        refused: pushed.stopped.into_iter().map(refusal).collect(),
        wanted,
    })
}
