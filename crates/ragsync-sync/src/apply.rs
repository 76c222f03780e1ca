//! The one place a driver of the engine touches the store: applying a page the engine asked
//! to apply (a blocking call: run it where blocking is allowed). The server's workers and the
//! simulation both use it, so they apply pages the same way.

use ragsync_core::NodeId;
use ragsync_store::{Page, Store};

use crate::pull::ApplyOutcome;
use crate::wire::ChangesResponse;

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
    let (rows, inline) = match page.into_entries() {
        Ok(x) => x,
        Err(e) => return failed(e.to_string()),
    };
    let page = Page {
        peer,
        epoch,
        since,
        rows: &rows,
        inline: &inline,
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
