//! Pushing this node's feed to one peer, sans-IO, for a peer that cannot pull from us (it
//! cannot dial this node): the [`Pusher`] says what to do next ([`PushAction`]: read a page
//! of this node's feed, send it, store the push cursor) and is told what came of it; time and
//! randomness come in as arguments, as for the puller.
//!
//! Rules:
//! - the push cursor is what the peer acknowledged: it moves past a row only when the peer's
//!   answer lists that row as applied or parked, and past the whole page only when every row
//!   sent is listed; a 2xx that leaves rows out acknowledges nothing past the first one left
//!   out, and the page is sent again after a backoff;
//! - the next page is read while the current one is on its way (one read and one page ahead
//!   at most); a failed send throws the page ahead away and reads again from the cursor;
//! - the peer is known by its node id; an answer from another node is refused; a changed peer
//!   epoch (its database was replaced) starts again from 0;
//! - refusals are never silent: 401/403 put the pusher in `Refused`, 429/503 honour
//!   `Retry-After`, an answer too large for the peer halves the page; every one is in
//!   [`PushStatus`];
//! - when everything up to this node's head is acknowledged, the pusher waits for the head to
//!   move ([`Pusher::on_local_head`]).

use std::collections::{HashSet, VecDeque};

use ragsync_core::{Epoch, NodeId};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::link::{Backoff, Failure, LinkState, setback};
use crate::wire::{ChangesResponse, PushAnswer};

/// Limits of one pusher.
#[derive(Clone, Copy, Debug)]
pub struct PushConfig {
    /// Rows sent per page.
    pub page_rows: usize,
    /// How long the peer may take to answer a push.
    pub request_timeout_ms: u64,
    pub backoff: Backoff,
}

/// A read of this node's feed: rows with `seq > since`, at most `limit` (only the
/// collections the peer takes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    /// Names this read in [`Pusher::on_read`]; answers to other ids are ignored.
    pub id: u64,
    pub since: u64,
    pub limit: usize,
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq)]
pub enum PushAction {
    /// Read a page of this node's feed; report with [`Pusher::on_read`].
    Read(Read),
    /// Send a page to the peer, and upload the contents its answer asks for; report with
    /// [`Pusher::on_sent`].
    Send { id: u64, page: ChangesResponse },
    /// Store the push cursor (the peer's epoch and the last `seq` it acknowledged). Saves
    /// need no report; a later one supersedes an earlier one.
    Save { epoch: Epoch, since: u64 },
}

/// What a pusher shows in status.
#[derive(Clone, Debug, Serialize)]
pub struct PushStatus {
    pub state: LinkState,
    /// The peer's database incarnation, once it has answered.
    pub epoch: Option<Epoch>,
    /// The last `seq` of this node's feed the peer acknowledged.
    pub cursor: u64,
    /// This node's feed head, as last told.
    pub local_head: u64,
    /// Rows of this node's feed not acknowledged yet.
    pub lag_rows: u64,
    /// When the peer last acknowledged a page, and when it last had everything (ms).
    pub last_ack_ms: Option<u64>,
    pub caught_up_ms: Option<u64>,
    pub pages_sent: u64,
    pub bytes_sent: u64,
    /// Rows that changed something on the peer.
    pub rows_changed: u64,
    /// Rows the peer refused for what they are and parked (see its status and
    /// `ragsync peers retry` there).
    pub rows_parked_there: u64,
    pub resets: u64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
}

/// A page on its way.
struct Sending {
    id: u64,
    since: u64,
    /// The rows sent, in order.
    seqs: Vec<u64>,
    /// Where the cursor goes when every row is acknowledged.
    end: u64,
    deadline: u64,
}

/// The push state machine of one peer; see the module docs.
pub struct Pusher {
    cfg: PushConfig,
    rng: StdRng,
    status: PushStatus,
    expected_node: NodeId,
    page_rows: usize,
    reading: Option<u64>,
    /// A page read while another is on its way, with where it ends.
    ready: Option<(ChangesResponse, u64)>,
    sending: Option<Sending>,
    wake_at_ms: u64,
    attempt: u32,
    next_id: u64,
    out: VecDeque<PushAction>,
}

impl Pusher {
    /// A pusher to node `peer`, from the push cursor the store kept for it (`None`: 0).
    pub fn new(cfg: PushConfig, peer: NodeId, cursor: Option<(Epoch, u64)>, seed: u64) -> Self {
        Self {
            cfg,
            rng: StdRng::seed_from_u64(seed),
            status: PushStatus {
                state: LinkState::CatchingUp,
                epoch: cursor.map(|c| c.0),
                cursor: cursor.map_or(0, |c| c.1),
                local_head: 0,
                lag_rows: 0,
                last_ack_ms: None,
                caught_up_ms: None,
                pages_sent: 0,
                bytes_sent: 0,
                rows_changed: 0,
                rows_parked_there: 0,
                resets: 0,
                last_status: None,
                last_error: None,
                last_error_ms: None,
            },
            expected_node: peer,
            page_rows: cfg.page_rows.max(1),
            reading: None,
            ready: None,
            sending: None,
            wake_at_ms: 0,
            attempt: 0,
            next_id: 1,
            out: VecDeque::new(),
        }
    }

    pub fn status(&self) -> &PushStatus {
        &self.status
    }

    /// True when nothing is in flight and the peer has acknowledged this node's head.
    pub fn is_quiet(&self) -> bool {
        self.reading.is_none()
            && self.ready.is_none()
            && self.sending.is_none()
            && self.out.is_empty()
            && self.status.cursor >= self.status.local_head
    }

    /// This node's feed head moved (or is first told).
    pub fn on_local_head(&mut self, now_ms: u64, head: u64) {
        self.status.local_head = self.status.local_head.max(head);
        self.update_lag(now_ms);
    }

    /// Counts bytes the driver sent for this peer (shown in status).
    pub fn note_bytes(&mut self, n: u64) {
        self.status.bytes_sent += n;
    }

    /// Ends a backoff now.
    pub fn nudge(&mut self) {
        self.wake_at_ms = 0;
    }

    /// The time the pusher next wants to act without being told anything: the deadline of
    /// the send in flight, or the end of a backoff.
    pub fn wake_at_ms(&self) -> Option<u64> {
        match &self.sending {
            Some(s) => Some(s.deadline),
            None => (self.wake_at_ms > 0).then_some(self.wake_at_ms),
        }
    }

    /// Where the next read starts: after the page on its way, or after the cursor.
    fn position(&self) -> u64 {
        self.sending.as_ref().map_or(self.status.cursor, |s| s.end)
    }

    /// The next thing to do, if any.
    pub fn poll(&mut self, now_ms: u64) -> Option<PushAction> {
        loop {
            if let Some(a) = self.out.pop_front() {
                return Some(a);
            }
            if self.sending.as_ref().is_some_and(|s| now_ms >= s.deadline) {
                self.sending = None;
                self.fail(now_ms, Failure::Unreachable("no answer in time".into()));
            }
            if self.reading.is_some() {
                return None;
            }
            if self
                .ready
                .as_ref()
                .is_some_and(|(page, _)| page.since != self.position())
            {
                // Read before the cursor moved back: not what comes next.
                self.ready = None;
            }
            if self.sending.is_none()
                && now_ms >= self.wake_at_ms
                && let Some((page, end)) = self.ready.take()
            {
                if page.changes.is_empty() {
                    // Nothing the peer takes in this stretch of the feed: nothing to
                    // acknowledge either.
                    self.advance(now_ms, end);
                    continue;
                }
                return Some(self.send(now_ms, page, end));
            }
            if self.ready.is_some()
                || now_ms < self.wake_at_ms
                || self.position() >= self.status.local_head
            {
                return None;
            }
            self.wake_at_ms = 0;
            let read = Read {
                id: self.take_id(),
                since: self.position(),
                limit: self.page_rows,
            };
            self.reading = Some(read.id);
            return Some(PushAction::Read(read));
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn send(&mut self, now_ms: u64, page: ChangesResponse, end: u64) -> PushAction {
        let id = self.take_id();
        self.sending = Some(Sending {
            id,
            since: page.since,
            seqs: page.changes.iter().map(|c| c.seq()).collect(),
            end,
            deadline: now_ms + self.cfg.request_timeout_ms,
        });
        PushAction::Send { id, page }
    }

    /// Send `id` is still making progress (its answer came and the contents it asked for are
    /// being uploaded, each with its own time limit): it is not given up before `for_ms`
    /// from now. A send no longer awaited is not revived.
    pub fn still_sending(&mut self, now_ms: u64, id: u64, for_ms: u64) {
        if let Some(s) = self.sending.as_mut().filter(|s| s.id == id) {
            s.deadline = s.deadline.max(now_ms + for_ms);
        }
    }

    /// The page read for read `id`, or why it could not be read.
    pub fn on_read(&mut self, now_ms: u64, id: u64, page: Result<ChangesResponse, String>) {
        if self.reading != Some(id) {
            return;
        }
        self.reading = None;
        let page = match page {
            Ok(p) => p,
            Err(why) => return self.fail(now_ms, Failure::Unreachable(format!("read: {why}"))),
        };
        self.on_local_head(now_ms, page.head);
        // A page with nothing after it holds every row up to the head it was read at (the
        // feed shows commits in seq order): acknowledged, it covers that head.
        let end = if page.has_more {
            page.next_since
        } else {
            page.next_since.max(page.head)
        };
        if end > page.since {
            self.ready = Some((page, end));
        }
    }

    /// The peer's answer to send `id`.
    pub fn on_sent(&mut self, now_ms: u64, id: u64, answer: Result<PushAnswer, Failure>) {
        if self.sending.as_ref().is_none_or(|s| s.id != id) {
            return;
        }
        let Some(sent) = self.sending.take() else {
            return;
        };
        let answer = match answer {
            Ok(a) => a,
            Err(Failure::TooLarge(why)) => {
                self.page_rows = (self.page_rows / 2).max(1);
                let why = format!("{why}; sending {} rows a page", self.page_rows);
                return self.fail(now_ms, Failure::TooLarge(why));
            }
            Err(f) => return self.fail(now_ms, f),
        };
        if answer.node_id != self.expected_node {
            let why = format!(
                "the peer answers as node {}, not {}: remove and add it again if it changed",
                answer.node_id, self.expected_node
            );
            return self.fail(now_ms, Failure::Unreachable(why));
        }
        if self.status.epoch.is_some_and(|e| e != answer.epoch) {
            self.status.epoch = Some(answer.epoch);
            self.status.cursor = 0;
            self.status.resets += 1;
            // A read under way started past the old cursor: its page is not what comes next.
            self.ready = None;
            self.reading = None;
            self.out.push_back(PushAction::Save {
                epoch: answer.epoch,
                since: 0,
            });
            self.note_error(
                now_ms,
                None,
                "starting over from 0: the peer's database changed (new epoch)".into(),
            );
            return;
        }
        self.status.epoch = Some(answer.epoch);
        self.status.pages_sent += 1;
        self.status.rows_changed += answer.changed as u64;
        self.status.rows_parked_there += answer.parked.len() as u64;
        let acked: HashSet<u64> = answer
            .applied
            .iter()
            .copied()
            .chain(answer.parked.iter().map(|p| p.seq))
            .collect();
        let missing = sent.seqs.iter().find(|s| !acked.contains(s)).copied();
        let through = match missing {
            None => sent.end,
            Some(first) => sent
                .seqs
                .iter()
                .take_while(|s| **s < first)
                .last()
                .copied()
                .unwrap_or(sent.since),
        };
        self.advance(now_ms, through);
        if let Some(first) = missing {
            let why = answer.refused.iter().find(|r| r.seq == first).map_or_else(
                || format!("the peer did not acknowledge row {first}"),
                |r| format!("the peer refused row {first}: {} {}", r.code, r.reason),
            );
            return self.fail(now_ms, Failure::Unreachable(why));
        }
        self.attempt = 0;
        self.status.last_ack_ms = Some(now_ms);
    }

    /// The peer acknowledged everything up to `through`.
    fn advance(&mut self, now_ms: u64, through: u64) {
        if through > self.status.cursor {
            self.status.cursor = through;
            if let Some(epoch) = self.status.epoch {
                self.out.push_back(PushAction::Save {
                    epoch,
                    since: through,
                });
            }
        }
        self.update_lag(now_ms);
    }

    fn update_lag(&mut self, now_ms: u64) {
        self.status.lag_rows = self.status.local_head.saturating_sub(self.status.cursor);
        if matches!(
            self.status.state,
            LinkState::BackingOff | LinkState::Refused
        ) && self.wake_at_ms > 0
        {
            return;
        }
        if self.status.lag_rows == 0 {
            if self.status.state != LinkState::Live || self.status.caught_up_ms.is_none() {
                self.status.caught_up_ms = Some(now_ms);
            }
            self.status.state = LinkState::Live;
        } else {
            self.status.state = LinkState::CatchingUp;
        }
    }

    fn fail(&mut self, now_ms: u64, failure: Failure) {
        self.attempt += 1;
        // Pages read past the cursor are no longer what comes next.
        self.ready = None;
        self.reading = None;
        let s = setback(failure, self.attempt, &self.cfg.backoff, &mut self.rng);
        self.status.state = s.state;
        self.wake_at_ms = now_ms.saturating_add(s.wait_ms);
        self.note_error(now_ms, s.status, s.why);
    }

    fn note_error(&mut self, now_ms: u64, status: Option<u16>, why: String) {
        self.status.last_status = status;
        self.status.last_error = Some(why);
        self.status.last_error_ms = Some(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::RowRefusal;

    const CFG: PushConfig = PushConfig {
        page_rows: 2,
        request_timeout_ms: 500,
        backoff: Backoff {
            base_ms: 100,
            max_ms: 10_000,
        },
    };
    const ME: NodeId = NodeId(1);
    const PEER: NodeId = NodeId(9);

    fn page(since: u64, rows: &[u64], head: u64) -> ChangesResponse {
        let next_since = rows.last().copied().unwrap_or(since);
        crate::wire::test_page(ME, since, next_since, head, rows)
    }

    fn answer(applied: &[u64], parked: &[u64]) -> PushAnswer {
        PushAnswer {
            node_id: PEER,
            epoch: Epoch(7),
            applied: applied.to_vec(),
            changed: applied.len(),
            parked: parked
                .iter()
                .map(|seq| RowRefusal {
                    seq: *seq,
                    code: "invalid_state".into(),
                    reason: "forged".into(),
                })
                .collect(),
            refused: Vec::new(),
            wanted: Vec::new(),
        }
    }

    fn read(p: &mut Pusher, now: u64) -> Read {
        match p.poll(now) {
            Some(PushAction::Read(r)) => r,
            other => panic!("expected a read, got {other:?}"),
        }
    }

    fn sent(p: &mut Pusher, now: u64) -> (u64, ChangesResponse) {
        match p.poll(now) {
            Some(PushAction::Send { id, page }) => (id, page),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    fn saved(p: &mut Pusher, now: u64) -> u64 {
        match p.poll(now) {
            Some(PushAction::Save { since, .. }) => since,
            other => panic!("expected a save, got {other:?}"),
        }
    }

    #[test]
    fn pages_go_out_in_order_and_the_next_is_read_meanwhile() {
        let mut p = Pusher::new(CFG, PEER, None, 1);
        assert_eq!(p.poll(0), None, "nothing to push before the head is known");
        p.on_local_head(0, 4);
        let r = read(&mut p, 0);
        assert_eq!((r.since, r.limit), (0, 2));
        p.on_read(1, r.id, Ok(page(0, &[1, 2], 4)));
        let (s, _) = sent(&mut p, 1);
        // While page 1 is on its way, page 2 is read from where it ends.
        let r2 = read(&mut p, 1);
        assert_eq!(r2.since, 2);
        p.on_read(2, r2.id, Ok(page(2, &[3, 4], 4)));
        assert_eq!(p.poll(2), None, "one page on its way at a time");
        p.on_sent(3, s, Ok(answer(&[1, 2], &[])));
        assert_eq!(saved(&mut p, 3), 2);
        let (s2, _) = sent(&mut p, 3);
        p.on_sent(4, s2, Ok(answer(&[3], &[4])));
        assert_eq!(saved(&mut p, 4), 4, "a parked row is acknowledged");
        assert!(p.is_quiet());
        assert_eq!(p.status().state, LinkState::Live);
        assert_eq!(p.status().rows_parked_there, 1);
        p.on_local_head(5, 5);
        assert_eq!(read(&mut p, 5).since, 4, "a new write is pushed");
    }

    #[test]
    fn a_2xx_that_leaves_rows_out_acknowledges_nothing_past_them() {
        let mut p = Pusher::new(CFG, PEER, Some((Epoch(7), 10)), 1);
        p.on_local_head(0, 12);
        let r = read(&mut p, 0);
        p.on_read(0, r.id, Ok(page(10, &[11, 12], 12)));
        let (s, _) = sent(&mut p, 0);
        p.on_sent(1, s, Ok(answer(&[12], &[])));
        assert_eq!(p.status().cursor, 10, "row 11 was not acknowledged");
        assert_eq!(p.status().state, LinkState::BackingOff);
        assert!(p.status().last_error.as_deref().unwrap().contains("row 11"));
        assert_eq!(p.poll(2), None, "backing off");
        let r = read(&mut p, 1 + CFG.backoff.max_ms);
        assert_eq!(r.since, 10, "the page is sent again");
        p.on_read(0, r.id, Ok(page(10, &[11, 12], 12)));
        let (s, _) = sent(&mut p, 1 + CFG.backoff.max_ms);
        let mut stopped = answer(&[11], &[]);
        stopped.refused.push(RowRefusal {
            seq: 12,
            code: "store_error".into(),
            reason: "database is locked".into(),
        });
        p.on_sent(2 + CFG.backoff.max_ms, s, Ok(stopped));
        assert_eq!(p.status().cursor, 11, "acknowledged up to the refused row");
        assert!(p.status().last_error.as_deref().unwrap().contains("locked"));
    }

    #[test]
    fn another_node_or_a_new_epoch_moves_nothing_forward() {
        let mut p = Pusher::new(CFG, PEER, Some((Epoch(7), 3)), 1);
        p.on_local_head(0, 4);
        let r = read(&mut p, 0);
        p.on_read(0, r.id, Ok(page(3, &[4], 4)));
        let (s, _) = sent(&mut p, 0);
        let mut impostor = answer(&[4], &[]);
        impostor.node_id = NodeId(8);
        p.on_sent(1, s, Ok(impostor));
        assert_eq!(p.status().cursor, 3);
        assert!(
            p.status()
                .last_error
                .as_deref()
                .unwrap()
                .contains("answers as node")
        );
        let t = 1 + CFG.backoff.max_ms;
        let r = read(&mut p, t);
        p.on_read(t, r.id, Ok(page(3, &[4], 4)));
        let (s, _) = sent(&mut p, t);
        let mut replaced = answer(&[4], &[]);
        replaced.epoch = Epoch(8);
        p.on_sent(t, s, Ok(replaced));
        assert_eq!((p.status().cursor, p.status().resets), (0, 1));
        assert_eq!(saved(&mut p, t), 0);
        assert_eq!(
            read(&mut p, t).since,
            0,
            "everything again, to the new database"
        );
    }

    #[test]
    fn refusals_show_and_too_large_pages_shrink() {
        let mut p = Pusher::new(CFG, PEER, None, 1);
        p.on_local_head(0, 4);
        let r = read(&mut p, 0);
        p.on_read(0, r.id, Ok(page(0, &[1, 2], 4)));
        let (s, _) = sent(&mut p, 0);
        let refused = Failure::Refused {
            status: 401,
            code: "invalid_token".into(),
            retry_after_ms: None,
        };
        p.on_sent(1, s, Err(refused));
        assert_eq!(
            (p.status().state, p.status().last_status),
            (LinkState::Refused, Some(401))
        );
        let t = 1 + CFG.backoff.max_ms;
        let r = read(&mut p, t);
        p.on_read(t, r.id, Ok(page(0, &[1, 2], 4)));
        let (s, _) = sent(&mut p, t);
        p.on_sent(t, s, Err(Failure::TooLarge("413".into())));
        assert_eq!(read(&mut p, 3 * t).limit, 1);
    }

    #[test]
    fn a_lost_answer_times_out_and_an_empty_stretch_needs_no_send() {
        let mut p = Pusher::new(CFG, PEER, None, 1);
        p.on_local_head(0, 6);
        let r = read(&mut p, 0);
        p.on_read(0, r.id, Ok(page(0, &[1], 6)));
        let (_, _) = sent(&mut p, 0);
        let r2 = read(&mut p, 0);
        assert_eq!(r2.since, 1);
        assert_eq!(p.wake_at_ms(), Some(CFG.request_timeout_ms));
        assert_eq!(p.poll(CFG.request_timeout_ms), None, "backing off");
        assert_eq!(p.status().last_error.as_deref(), Some("no answer in time"));
        // The read answered after the failure is not used.
        p.on_read(CFG.request_timeout_ms, r2.id, Ok(page(1, &[2], 6)));
        let t = CFG.request_timeout_ms + CFG.backoff.max_ms;
        let r = read(&mut p, t);
        assert_eq!(r.since, 0);
        // Rows of collections the peer does not take were left out: the stretch is empty,
        // and the cursor passes it without a send.
        let mut filtered = page(0, &[], 6);
        filtered.next_since = 6;
        filtered.has_more = false;
        p.on_read(t, r.id, Ok(filtered));
        assert_eq!(p.poll(t), None, "no epoch known yet: nothing to save");
        assert_eq!(p.status().cursor, 6);
        assert!(p.is_quiet());
    }

    #[test]
    fn a_send_still_uploading_is_not_given_up_at_its_first_deadline() {
        let mut p = Pusher::new(CFG, PEER, None, 1);
        p.on_local_head(0, 1);
        let r = read(&mut p, 0);
        p.on_read(0, r.id, Ok(page(0, &[1], 1)));
        let (s, _) = sent(&mut p, 0);
        let t = CFG.request_timeout_ms - 1;
        p.still_sending(t, s, 10 * CFG.request_timeout_ms);
        p.still_sending(t, s + 100, 0);
        assert_eq!(p.wake_at_ms(), Some(t + 10 * CFG.request_timeout_ms));
        assert_eq!(p.poll(CFG.request_timeout_ms), None);
        assert_eq!(p.status().last_error, None, "still sending, not failed");
        p.on_sent(2 * CFG.request_timeout_ms, s, Ok(answer(&[1], &[])));
        assert_eq!(saved(&mut p, 2 * CFG.request_timeout_ms), 1);
        // A send given up on is not revived by a late word of progress.
        p.still_sending(3 * CFG.request_timeout_ms, s, 10 * CFG.request_timeout_ms);
        assert_eq!(p.wake_at_ms(), None);
    }

    #[test]
    fn a_read_ahead_under_way_at_a_new_epoch_is_not_sent() {
        let mut p = Pusher::new(CFG, PEER, Some((Epoch(7), 0)), 1);
        p.on_local_head(0, 4);
        let r = read(&mut p, 0);
        p.on_read(0, r.id, Ok(page(0, &[1, 2], 4)));
        let (s, _) = sent(&mut p, 0);
        let ahead = read(&mut p, 0);
        assert_eq!(ahead.since, 2);
        let mut replaced = answer(&[1, 2], &[]);
        replaced.epoch = Epoch(8);
        p.on_sent(1, s, Ok(replaced));
        assert_eq!(saved(&mut p, 1), 0);
        // The read started before the reset answers now: it is not used.
        p.on_read(1, ahead.id, Ok(page(2, &[3, 4], 4)));
        assert_eq!(
            read(&mut p, 1).since,
            0,
            "rows 1 and 2 go to the new database too"
        );
    }
}
