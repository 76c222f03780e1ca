//! Pulling from one peer, sans-IO: the [`Puller`] says what to do next ([`Action`]: fetch a
//! page of the peer's feed, apply a page to the store) and is told what came of it; time and
//! randomness come in as arguments, so a simulation drives it exactly as the server does.
//!
//! Rules (the failure modes of similar systems, each kept here):
//! - the cursor is what the store applied: it moves only when an apply reports it, to the
//!   store's word, never to a page's claim alone;
//! - the next page is fetched while the current one applies (one fetch and one page ahead at
//!   most); a transient apply failure throws the page ahead away and fetches again from the
//!   applied cursor;
//! - a page that contradicts itself or the request (rows out of order, a `next_since` past
//!   its head or before its rows, a different `since`) is refused and retried with backoff;
//! - a changed peer epoch, or a peer that says our cursor is past its feed, starts again from
//!   0 (merges are idempotent, so nothing is lost, and anti-entropy will make it cheap);
//! - refusals are never silent: 401/403 put the puller in `Refused`, 429/503 honour
//!   `Retry-After`, other failures back off with jitter; every one is in [`PullStatus`];
//! - when caught up, the fetch long-polls (`wait_ms`), so a write reaches us as it happens.

use std::collections::VecDeque;

use ragsync_core::{Epoch, NodeId};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::link::setback;
pub use crate::link::{Backoff, Failure, LinkState};
use crate::wire::{Change, ChangesResponse, WINDOWS_SINCE_PROTOCOL};

/// Limits of one puller.
#[derive(Clone, Copy, Debug)]
pub struct PullConfig {
    /// Rows asked for per page.
    pub page_rows: usize,
    /// How long a caught-up fetch waits on the peer for something new.
    pub wait_ms: u64,
    /// How long an answer may take beyond `wait_ms` before the fetch counts as failed.
    pub request_timeout_ms: u64,
    pub backoff: Backoff,
    /// Pages fetched or waiting beyond the one applying (at least 1). While catching up, the
    /// puller asks for that many windows of the peer's feed at once, so a long link costs
    /// one round trip, not one per page.
    pub pages_ahead: usize,
}

/// The least time between two long-polls of a peer that answers them at once, empty.
const EMPTY_POLL_FLOOR_MS: u64 = 1_000;

/// A fetch of one page: `GET /v1/sync/changes?since=&until=&limit=&wait_ms=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// Names this fetch in [`Puller::on_fetched`]; answers to other ids are ignored.
    pub id: u64,
    pub since: u64,
    /// The end of the window asked for; `None` asks for what comes after `since`.
    pub until: Option<u64>,
    pub limit: usize,
    pub wait_ms: u64,
}

/// What the store did with a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The cursor after the page, as the store committed it.
    pub cursor: u64,
    pub changed: usize,
    pub parked: usize,
    /// A transient failure that stopped the page before the row after `cursor`.
    pub stopped: Option<String>,
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Fetch a page; report with [`Puller::on_fetched`].
    Fetch(Fetch),
    /// Apply a page to the store (rows and cursor in one transaction); report with
    /// [`Puller::on_applied`].
    Apply { id: u64, page: ChangesResponse },
}

/// What a puller shows in status.
#[derive(Clone, Debug, Serialize)]
pub struct PullStatus {
    pub state: LinkState,
    pub peer_node: Option<NodeId>,
    pub epoch: Option<Epoch>,
    pub cursor: u64,
    /// The peer's feed head, as its last page said.
    pub peer_head: u64,
    /// Rows of the peer's feed not applied here yet.
    pub lag_rows: u64,
    /// When the last page arrived, and when this node was last caught up (ms since epoch).
    pub last_page_ms: Option<u64>,
    pub caught_up_ms: Option<u64>,
    pub pages_applied: u64,
    /// Bytes of pages received (bodies, as the driver counted them).
    pub bytes_received: u64,
    pub rows_changed: u64,
    pub rows_parked: u64,
    pub resets: u64,
    /// The last failure: its HTTP status when there was one, and what happened.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
}

/// A stretch of the peer's feed, `since < seq <= until`, and where its page is.
#[derive(Debug)]
struct Window {
    since: u64,
    /// `None`: open-ended (the peer's head was not known to be past `since`).
    until: Option<u64>,
    slot: Slot,
}

#[derive(Debug)]
enum Slot {
    /// To be fetched.
    Wanted,
    /// Fetch `id` is on its way and counts as failed at `deadline`.
    InFlight {
        id: u64,
        deadline: u64,
    },
    Ready(ChangesResponse),
}

/// The pull state machine of one peer; see the module docs.
pub struct Puller {
    cfg: PullConfig,
    rng: StdRng,
    status: PullStatus,
    /// The page being applied: its id and `next_since`.
    applying: Option<(u64, u64)>,
    /// An apply started before a reset: its outcome is ignored, and no fetch follows it.
    stale_apply: Option<u64>,
    /// The node this puller pulls from: pages from any other node are refused.
    expected_node: NodeId,
    /// Rows asked for per page (halved after an answer too large, down to 1).
    page_rows: usize,
    /// Resets since the last page that applied: past the first, they back off.
    resets_in_a_row: u32,
    /// The windows after the page applying (or the cursor), contiguous, in feed order.
    windows: VecDeque<Window>,
    /// No fetch before this time (backing off).
    wake_at_ms: u64,
    attempt: u32,
    /// The last page was empty and had nothing after it: long-poll.
    caught_up: bool,
    /// The long-poll out (its fetch id) and when it was sent.
    long_poll: Option<(u64, u64)>,
    /// The peer's last page said it answers windows (protocol 2 and later): until then,
    /// one open-ended fetch at a time, as a version 1 node expects.
    peer_windows: bool,
    next_id: u64,
    out: VecDeque<Action>,
}

impl Puller {
    /// A puller of node `peer`, starting from the cursor the store kept for it (`None`: 0).
    pub fn new(cfg: PullConfig, peer: NodeId, cursor: Option<(Epoch, u64)>, seed: u64) -> Self {
        Self {
            expected_node: peer,
            page_rows: cfg.page_rows.max(1),
            stale_apply: None,
            resets_in_a_row: 0,
            cfg,
            rng: StdRng::seed_from_u64(seed),
            status: PullStatus {
                state: LinkState::CatchingUp,
                peer_node: Some(peer),
                epoch: cursor.map(|c| c.0),
                cursor: cursor.map_or(0, |c| c.1),
                peer_head: 0,
                lag_rows: 0,
                last_page_ms: None,
                caught_up_ms: None,
                pages_applied: 0,
                bytes_received: 0,
                rows_changed: 0,
                rows_parked: 0,
                resets: 0,
                last_status: None,
                last_error: None,
                last_error_ms: None,
            },
            applying: None,
            windows: VecDeque::new(),
            wake_at_ms: 0,
            attempt: 0,
            caught_up: false,
            long_poll: None,
            peer_windows: false,
            next_id: 1,
            out: VecDeque::new(),
        }
    }

    pub fn status(&self) -> &PullStatus {
        &self.status
    }

    /// True when nothing is in flight, nothing waits to be applied, and the last page was
    /// caught up: the state a convergence check waits for.
    pub fn is_quiet(&self) -> bool {
        // A long-poll may be out: it waits for what is new.
        let long_poll = |w: &Window| w.until.is_none() && matches!(w.slot, Slot::InFlight { .. });
        self.applying.is_none()
            && self.windows.iter().all(long_poll)
            && self.out.is_empty()
            && self.caught_up
    }

    /// The time the puller next wants to act without being told anything, if it waits: the
    /// first deadline of the fetches in flight, or the end of a backoff.
    pub fn wake_at_ms(&self) -> Option<u64> {
        let deadline = self
            .windows
            .iter()
            .filter_map(|w| match w.slot {
                Slot::InFlight { deadline, .. } => Some(deadline),
                _ => None,
            })
            .min();
        match deadline {
            Some(d) => Some(d),
            // Waiting for an apply, not for time.
            None if !self.windows.is_empty() || self.waiting_for_apply() => None,
            None => (self.wake_at_ms > 0).then_some(self.wake_at_ms),
        }
    }

    /// Caught up while a page still applies: the next fetch (a long-poll) waits for it.
    fn waiting_for_apply(&self) -> bool {
        self.caught_up && self.applying.is_some()
    }

    /// Counts bytes the driver received for this peer (shown in status).
    pub fn note_bytes(&mut self, n: u64) {
        self.status.bytes_received += n;
    }

    /// Ends a backoff now (the operator asked to sync, or the link came back).
    pub fn nudge(&mut self) {
        self.wake_at_ms = 0;
    }

    /// The next thing to do, if any.
    pub fn poll(&mut self, now_ms: u64) -> Option<Action> {
        if let Some(a) = self.out.pop_front() {
            return Some(a);
        }
        let timed_out = self
            .windows
            .iter()
            .any(|w| matches!(w.slot, Slot::InFlight { deadline, .. } if now_ms >= deadline));
        if timed_out {
            // Lost on the way, or the peer never answered: try again, after a backoff.
            self.fail(now_ms, Failure::Unreachable("no answer in time".into()));
        }
        if self.applying.is_none()
            && matches!(
                self.windows.front(),
                Some(Window {
                    slot: Slot::Ready(_),
                    ..
                })
            )
        {
            if let Some(Window {
                slot: Slot::Ready(page),
                ..
            }) = self.windows.pop_front()
            {
                self.start_apply(page);
            }
            return self.out.pop_front();
        }
        if now_ms < self.wake_at_ms || self.waiting_for_apply() {
            return None;
        }
        let f = self.next_fetch(now_ms)?;
        self.wake_at_ms = 0;
        Some(Action::Fetch(f))
    }

    /// The fetch to start now, if any: a window still wanted, else the next window while
    /// fewer than `pages_ahead` are out and the peer's head is known to be past it, else
    /// one open-ended fetch (a long-poll when caught up).
    fn next_fetch(&mut self, now_ms: u64) -> Option<Fetch> {
        let idx = match self
            .windows
            .iter()
            .position(|w| matches!(w.slot, Slot::Wanted))
        {
            Some(i) => i,
            None => {
                if self.windows.len() >= self.cfg.pages_ahead.max(1) {
                    return None;
                }
                let since = match self.windows.back() {
                    Some(w) => w.until?,
                    None => self.applying.map_or(self.status.cursor, |(_, next)| next),
                };
                let head = self.status.peer_head;
                let until = (head > since && !self.caught_up && self.peer_windows)
                    .then(|| since.saturating_add(self.page_rows as u64).min(head));
                if until.is_none() && !self.windows.is_empty() {
                    // Nothing known past the windows out: their answers will say.
                    return None;
                }
                self.windows.push_back(Window {
                    since,
                    until,
                    slot: Slot::Wanted,
                });
                self.windows.len() - 1
            }
        };
        let idle = self.caught_up && self.applying.is_none() && self.windows.len() == 1;
        let w = &self.windows[idx];
        let wait_ms = if idle && w.until.is_none() {
            self.cfg.wait_ms
        } else {
            0
        };
        let f = Fetch {
            id: self.next_id,
            since: w.since,
            until: w.until,
            limit: self.page_rows,
            wait_ms,
        };
        self.next_id += 1;
        self.long_poll = (wait_ms > 0).then_some((f.id, now_ms));
        let deadline = now_ms + wait_ms + self.cfg.request_timeout_ms;
        self.windows[idx].slot = Slot::InFlight { id: f.id, deadline };
        Some(f)
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The answer to fetch `id` (answers to fetches no longer awaited are ignored).
    pub fn on_fetched(&mut self, now_ms: u64, id: u64, answer: Result<ChangesResponse, Failure>) {
        let Some(idx) = self
            .windows
            .iter()
            .position(|w| matches!(w.slot, Slot::InFlight { id: i, .. } if i == id))
        else {
            return;
        };
        let (since, until) = (self.windows[idx].since, self.windows[idx].until);
        let page = match answer {
            Ok(page) => page,
            Err(Failure::CursorReset(why)) => return self.reset(now_ms, &why),
            Err(failure) => {
                if until.is_some() {
                    // Perhaps the peer no longer answers windows (an older build put back):
                    // its next page says again whether it does.
                    self.peer_windows = false;
                }
                return self.fail(now_ms, failure);
            }
        };
        if page.node_id != self.expected_node {
            // Another node answers at this peer's address (or a peer lies about who it is):
            // its rows are never applied under this peer's cursor.
            let why = format!(
                "the peer answers as node {}, not {}: remove and add it again if it changed",
                page.node_id, self.expected_node
            );
            return self.fail(now_ms, Failure::Unreachable(why));
        }
        if self.status.epoch.is_some_and(|e| e != page.epoch) {
            self.status.epoch = Some(page.epoch);
            return self.reset(now_ms, "the peer's database changed (new epoch)");
        }
        self.status.epoch = Some(page.epoch);
        if let Err(why) = check_page(&page, since, until) {
            return self.fail(now_ms, Failure::Unreachable(why));
        }
        self.attempt = 0;
        self.peer_windows = page.protocol >= WINDOWS_SINCE_PROTOCOL;
        self.status.peer_head = self.status.peer_head.max(page.head);
        self.status.last_page_ms = Some(now_ms);
        let end = page.next_since;
        let nothing_new = page.changes.is_empty() && end == since;
        if until.is_none() {
            self.caught_up = !page.has_more && nothing_new;
        }
        if self.caught_up && self.applying.is_none() && self.windows.len() == 1 {
            self.status.caught_up_ms = Some(now_ms);
        }
        if nothing_new {
            if until.is_some() {
                // A window that should hold rows came back empty: the peer's feed is not
                // what its head said. Start again from what is applied, up to its head now.
                self.status.peer_head = page.head;
                let why = format!("an empty page for the window after {since}");
                return self.fail(now_ms, Failure::Unreachable(why));
            }
            self.windows.remove(idx);
            self.update_lag();
            if let Some((_, sent)) = self.long_poll.filter(|(i, _)| *i == id) {
                // A peer that answers a long-poll at once with nothing (it ignores `wait_ms`:
                // an older build, a proxy) is asked again no sooner than a long-poll's floor,
                // not as fast as it answers.
                self.wake_at_ms = self
                    .wake_at_ms
                    .max(sent + self.cfg.wait_ms.min(EMPTY_POLL_FLOOR_MS));
            }
            return self.refresh_state(page.has_more);
        }
        let has_more = page.has_more;
        self.windows[idx] = Window {
            since,
            until: Some(end),
            slot: Slot::Ready(page),
        };
        if let Some(u) = until.filter(|u| end < *u) {
            // Cut short (a page's inline budget): the rest of the window comes next.
            self.windows.insert(
                idx + 1,
                Window {
                    since: end,
                    until: Some(u),
                    slot: Slot::Wanted,
                },
            );
        }
        self.refresh_state(has_more);
    }

    /// `live` once every row the peer's head names is applied here or is in the one page on
    /// its way to the store (a trickle of single pages stays `live`); `catching_up` while
    /// more is known: a page said so (`has_more`), the peer's head is past every page in
    /// hand, or more than one page waits to be applied.
    fn refresh_state(&mut self, has_more: bool) {
        let ready = |w: &Window| match &w.slot {
            Slot::Ready(p) => Some(p.next_since),
            _ => None,
        };
        let waiting =
            self.windows.iter().filter_map(ready).count() + usize::from(self.applying.is_some());
        // What follows on from the cursor without a gap: the page applying, then the ready
        // pages up to the first one not here yet (a later one does not count).
        let from = self.applying.map_or(self.status.cursor, |(_, end)| end);
        let in_hand = self.windows.iter().map_while(ready).fold(from, u64::max);
        let more_known = has_more || self.status.peer_head > in_hand || waiting > 1;
        self.status.state = if more_known {
            LinkState::CatchingUp
        } else {
            LinkState::Live
        };
    }

    fn start_apply(&mut self, page: ChangesResponse) {
        let id = self.take_id();
        self.applying = Some((id, page.next_since));
        self.out.push_back(Action::Apply { id, page });
    }

    /// What the store did with page `id`.
    pub fn on_applied(&mut self, now_ms: u64, id: u64, outcome: ApplyOutcome) {
        if self.applying.is_none_or(|(a, _)| a != id) {
            return;
        }
        self.applying = None;
        if self.stale_apply.take() == Some(id) {
            // Started before a reset: its cursor is not where the peer's feed now begins.
            return;
        }
        self.status.cursor = outcome.cursor;
        self.status.pages_applied += 1;
        self.resets_in_a_row = 0;
        self.status.rows_changed += outcome.changed as u64;
        self.status.rows_parked += outcome.parked as u64;
        self.update_lag();
        if let Some(why) = outcome.stopped {
            // Pages fetched past the failed row are no longer what comes next.
            self.windows.clear();
            self.caught_up = false;
            return self.fail(now_ms, Failure::Unreachable(format!("apply: {why}")));
        }
        if self.caught_up && self.windows.is_empty() {
            self.status.caught_up_ms = Some(now_ms);
        }
        // A failure's state stands until a fetch succeeds.
        if matches!(self.status.state, LinkState::CatchingUp | LinkState::Live) {
            self.refresh_state(false);
        }
    }

    fn update_lag(&mut self) {
        self.status.lag_rows = self.status.peer_head.saturating_sub(self.status.cursor);
    }

    fn reset(&mut self, now_ms: u64, why: &str) {
        self.resets_in_a_row += 1;
        // Starting over at once, unless resets repeat (a peer that keeps changing).
        self.wake_at_ms = if self.resets_in_a_row > 1 {
            let delay = self
                .cfg
                .backoff
                .delay_ms(self.resets_in_a_row, &mut self.rng);
            now_ms.saturating_add(delay)
        } else {
            0
        };
        if let Some((id, _)) = self.applying {
            self.stale_apply = Some(id);
            // Fetch from 0, not from the stale page's end.
            self.applying = Some((id, 0));
        }
        self.status.cursor = 0;
        self.status.peer_head = 0;
        self.status.resets += 1;
        self.windows.clear();
        self.caught_up = false;
        self.note_error(now_ms, None, format!("starting over from 0: {why}"));
    }

    fn fail(&mut self, now_ms: u64, failure: Failure) {
        self.attempt += 1;
        self.caught_up = false;
        // Pages already here still apply; everything from the first one missing is asked
        // for again after the backoff.
        let keep = self
            .windows
            .iter()
            .take_while(|w| matches!(w.slot, Slot::Ready(_)))
            .count();
        self.windows.truncate(keep);
        let failure = match failure {
            Failure::TooLarge(why) => {
                self.page_rows = (self.page_rows / 2).max(1);
                Failure::TooLarge(format!("{why}; asking for {} rows a page", self.page_rows))
            }
            other => other,
        };
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

/// Checks what a page claims against itself and the fetch it answers.
fn check_page(page: &ChangesResponse, since: u64, until: Option<u64>) -> Result<(), String> {
    if page.since != since {
        return Err(format!(
            "asked since {since}, answered since {}",
            page.since
        ));
    }
    let mut last = since;
    for c in &page.changes {
        let seq = c.seq();
        if seq <= last {
            return Err(format!("row {seq} is not after {last}"));
        }
        if let Change::Doc { versions, .. } = c
            && versions.is_empty()
        {
            return Err(format!("row {seq} has no version"));
        }
        last = seq;
    }
    if page.next_since < last || page.next_since > page.head {
        return Err(format!(
            "next_since {} is before its rows ({last}) or past its head ({})",
            page.next_since, page.head
        ));
    }
    if let Some(until) = until.filter(|u| page.next_since > *u) {
        return Err(format!(
            "next_since {} is past the window asked for (until {until})",
            page.next_since
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
