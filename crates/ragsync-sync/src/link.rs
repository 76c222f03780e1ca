//! What pulling and pushing share: the state of a link to a peer, why an exchange with it
//! failed, and how long to wait before the next try (exponential backoff with jitter, a
//! peer's `Retry-After` honoured up to the longest backoff).

use rand::{Rng, RngExt};
use serde::Serialize;

/// Retry delays: exponential from `base_ms` up to `max_ms`, each drawn from its upper half
/// (jitter, so that peers cut off together do not come back together).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    /// The delay before try `attempt` (1 for the first retry).
    pub fn delay_ms(&self, attempt: u32, rng: &mut impl Rng) -> u64 {
        let cap = self
            .base_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
            .min(self.max_ms)
            .max(1);
        rng.random_range(cap.div_ceil(2)..=cap)
    }
}

/// Why an exchange with a peer brought nothing usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The peer answered with an error status.
    Refused {
        status: u16,
        code: String,
        retry_after_ms: Option<u64>,
    },
    /// The peer says our cursor is past its feed (it was restored or wiped): start over.
    CursorReset(String),
    /// No usable answer: refused connection, timeout, a body that does not parse, an answer
    /// that contradicts the request.
    Unreachable(String),
    /// A message larger than the other side takes: the next ones carry fewer rows.
    TooLarge(String),
}

/// Where a link to a peer stands, in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Pages with more behind them are moving.
    CatchingUp,
    /// Caught up; waiting for what comes next.
    Live,
    /// A failure; trying again later.
    BackingOff,
    /// The peer refused our token (401, 403); trying again, slowly.
    Refused,
}

/// What a failure does to a link: its new state, the HTTP status if there was one, what to
/// show, and how long to wait before trying again.
pub(crate) struct Setback {
    pub state: LinkState,
    pub status: Option<u16>,
    pub why: String,
    pub wait_ms: u64,
}

/// The setback of `failure` on try `attempt` (1 for the first failure in a row). `TooLarge`
/// is shown as it is: shrinking what is sent is the caller's part.
pub(crate) fn setback(
    failure: Failure,
    attempt: u32,
    backoff: &Backoff,
    rng: &mut impl Rng,
) -> Setback {
    let delay = backoff.delay_ms(attempt, rng);
    match failure {
        Failure::Refused {
            status,
            code,
            retry_after_ms,
        } => {
            let state = if matches!(status, 401 | 403) {
                LinkState::Refused
            } else {
                LinkState::BackingOff
            };
            // A peer's Retry-After is honoured up to the longest backoff, never longer.
            let wait_ms = retry_after_ms
                .map_or(delay, |r| r.max(delay / 2))
                .min(backoff.max_ms);
            Setback {
                state,
                status: Some(status),
                why: format!("{status} {code}"),
                wait_ms,
            }
        }
        Failure::TooLarge(why) | Failure::Unreachable(why) | Failure::CursorReset(why) => Setback {
            state: LinkState::BackingOff,
            status: None,
            why,
            wait_ms: delay,
        },
    }
}
