//! The puller's tests: one page ahead (`CFG`), and windows, several ahead (`windows`).
use super::*;

pub(super) const CFG: PullConfig = PullConfig {
    page_rows: 10,
    wait_ms: 1000,
    request_timeout_ms: 500,
    backoff: Backoff {
        base_ms: 100,
        max_ms: 10_000,
    },
    pages_ahead: 1,
};

pub(crate) fn page(since: u64, next_since: u64, head: u64, rows: &[u64]) -> ChangesResponse {
    crate::wire::test_page(NodeId(9), since, next_since, head, rows)
}

pub(crate) fn fetch(p: &mut Puller, now: u64) -> Fetch {
    match p.poll(now) {
        Some(Action::Fetch(f)) => f,
        other => panic!("expected a fetch, got {other:?}"),
    }
}

fn apply(p: &mut Puller, now: u64) -> (u64, ChangesResponse) {
    match p.poll(now) {
        Some(Action::Apply { id, page }) => (id, page),
        other => panic!("expected an apply, got {other:?}"),
    }
}

#[test]
fn pages_apply_in_order_and_the_next_is_fetched_meanwhile() {
    let mut p = Puller::new(CFG, NodeId(9), None, 1);
    let f = fetch(&mut p, 0);
    assert_eq!((f.since, f.wait_ms), (0, 0));
    p.on_fetched(1, f.id, Ok(page(0, 2, 4, &[1, 2])));
    let (a, _) = apply(&mut p, 1);
    // While page 1 applies, page 2 is fetched from its next_since.
    let f2 = fetch(&mut p, 1);
    assert_eq!(f2.since, 2);
    p.on_fetched(2, f2.id, Ok(page(2, 4, 4, &[3, 4])));
    assert_eq!(p.poll(2), None, "one page applies at a time");
    let done = ApplyOutcome {
        cursor: 2,
        changed: 2,
        parked: 0,
        stopped: None,
    };
    p.on_applied(3, a, done);
    let (b, _) = apply(&mut p, 3);
    p.on_applied(
        4,
        b,
        ApplyOutcome {
            cursor: 4,
            changed: 2,
            parked: 0,
            stopped: None,
        },
    );
    let f3 = fetch(&mut p, 4);
    assert_eq!(f3.since, 4);
    p.on_fetched(5, f3.id, Ok(page(4, 4, 4, &[])));
    assert!(p.is_quiet());
    assert_eq!(p.status().state, LinkState::Live);
    // Caught up: the next fetch long-polls.
    let poll = fetch(&mut p, 5);
    assert_eq!(poll.wait_ms, CFG.wait_ms);
    // A peer that answers it at once with nothing is not asked again before the floor.
    p.on_fetched(6, poll.id, Ok(page(4, 4, 4, &[])));
    assert_eq!(p.poll(7), None, "asked again at once");
    assert_eq!(
        p.wake_at_ms(),
        Some(5 + CFG.wait_ms.min(EMPTY_POLL_FLOOR_MS))
    );
    let again = fetch(&mut p, 5 + CFG.wait_ms);
    assert_eq!(again.wait_ms, CFG.wait_ms);
    // One that waits as asked is asked again at once.
    p.on_fetched(5 + 2 * CFG.wait_ms, again.id, Ok(page(4, 4, 4, &[])));
    assert_eq!(fetch(&mut p, 5 + 2 * CFG.wait_ms).wait_ms, CFG.wait_ms);
}

#[test]
fn a_transient_apply_failure_refetches_from_the_applied_cursor() {
    let mut p = Puller::new(CFG, NodeId(9), None, 1);
    let f = fetch(&mut p, 0);
    p.on_fetched(1, f.id, Ok(page(0, 3, 6, &[1, 2, 3])));
    let (a, _) = apply(&mut p, 1);
    let f2 = fetch(&mut p, 1);
    p.on_fetched(2, f2.id, Ok(page(3, 6, 6, &[4, 5, 6])));
    let stopped = Some("database is locked".to_string());
    p.on_applied(
        3,
        a,
        ApplyOutcome {
            cursor: 1,
            changed: 1,
            parked: 0,
            stopped,
        },
    );
    assert_eq!(p.status().state, LinkState::BackingOff);
    assert_eq!(p.poll(3), None, "backing off");
    let f3 = fetch(&mut p, 3 + CFG.backoff.max_ms);
    assert_eq!(f3.since, 1, "the page fetched ahead was thrown away");
}

#[test]
fn refusals_are_visible_and_retry_after_is_honoured() {
    let mut p = Puller::new(CFG, NodeId(9), None, 1);
    let f = fetch(&mut p, 0);
    let refused = Failure::Refused {
        status: 401,
        code: "invalid_token".into(),
        retry_after_ms: None,
    };
    p.on_fetched(1, f.id, Err(refused));
    assert_eq!(
        (p.status().state, p.status().last_status),
        (LinkState::Refused, Some(401))
    );
    let f = fetch(&mut p, 1 + CFG.backoff.max_ms);
    let busy = Failure::Refused {
        status: 429,
        code: "rate_limited".into(),
        retry_after_ms: Some(5_000),
    };
    let now = 20_000;
    p.on_fetched(now, f.id, Err(busy));
    assert_eq!(p.status().state, LinkState::BackingOff);
    assert_eq!(p.poll(now + 4_000), None, "Retry-After is honoured");
    assert!(p.poll(now + 5_000).is_some());
}

#[test]
fn a_page_that_contradicts_itself_is_refused_and_a_new_epoch_starts_over() {
    let mut p = Puller::new(CFG, NodeId(9), Some((Epoch(1), 5)), 1);
    let f = fetch(&mut p, 0);
    assert_eq!(f.since, 5);
    // A next_since far past the head the page itself reports.
    p.on_fetched(1, f.id, Ok(page(5, 1 << 60, 9, &[6])));
    assert_eq!(p.status().cursor, 5);
    assert_eq!(p.status().state, LinkState::BackingOff);
    let t = 1 + CFG.backoff.max_ms;
    let f = fetch(&mut p, t);
    // An answer to a fetch no longer awaited changes nothing.
    p.on_fetched(t + 1, f.id + 100, Ok(page(5, 9, 9, &[6])));
    assert_eq!(p.status().pages_applied, 0);
    let mut restored = page(5, 9, 9, &[6]);
    restored.epoch = Epoch(2);
    p.on_fetched(t + 2, f.id, Ok(restored));
    assert_eq!((p.status().cursor, p.status().resets), (0, 1));
    assert_eq!(fetch(&mut p, t + 2).since, 0);
}

#[test]
fn a_lost_fetch_times_out_and_is_retried() {
    let mut p = Puller::new(CFG, NodeId(9), None, 1);
    let f = fetch(&mut p, 0);
    assert_eq!(p.poll(CFG.request_timeout_ms - 1), None);
    assert_eq!(
        p.poll(CFG.request_timeout_ms),
        None,
        "backing off after the timeout"
    );
    assert_eq!(p.status().last_error.as_deref(), Some("no answer in time"));
    let again = fetch(&mut p, CFG.request_timeout_ms + CFG.backoff.max_ms);
    assert_eq!(again.since, f.since);
    assert_ne!(again.id, f.id);
}

#[test]
fn a_page_from_another_node_is_never_applied() {
    let mut p = Puller::new(CFG, NodeId(8), None, 1);
    let f = fetch(&mut p, 0);
    p.on_fetched(1, f.id, Ok(page(0, 2, 2, &[1, 2])));
    assert_eq!(p.poll(1), None, "nothing to apply");
    assert_eq!(p.status().state, LinkState::BackingOff);
    assert!(
        p.status()
            .last_error
            .as_deref()
            .unwrap()
            .contains("answers as node")
    );
}

#[test]
fn no_wake_up_while_waiting_for_an_apply() {
    let mut p = Puller::new(CFG, NodeId(9), None, 1);
    // An earlier failure left a backoff time behind.
    let f = fetch(&mut p, 0);
    p.on_fetched(1, f.id, Err(Failure::Unreachable("down".into())));
    let t = 1 + CFG.backoff.max_ms;
    let f = fetch(&mut p, t);
    p.on_fetched(t, f.id, Ok(page(0, 2, 4, &[1, 2])));
    let _ = apply(&mut p, t);
    let f2 = fetch(&mut p, t);
    p.on_fetched(t, f2.id, Ok(page(2, 4, 4, &[3, 4])));
    // A page ready, one applying: the driver waits for the apply, not for a time.
    assert_eq!(p.wake_at_ms(), None);
    assert_eq!(p.poll(t + 5), None);
}

#[test]
fn a_reset_during_an_apply_ignores_it_and_starts_from_0() {
    let mut p = Puller::new(CFG, NodeId(9), Some((Epoch(1), 10)), 1);
    let f = fetch(&mut p, 0);
    p.on_fetched(1, f.id, Ok(page(10, 12, 14, &[11, 12])));
    let (a, _) = apply(&mut p, 1);
    let f2 = fetch(&mut p, 1);
    assert_eq!(f2.since, 12);
    p.on_fetched(2, f2.id, Err(Failure::CursorReset("409".into())));
    p.on_applied(
        3,
        a,
        ApplyOutcome {
            cursor: 12,
            changed: 2,
            parked: 0,
            stopped: None,
        },
    );
    assert_eq!(
        p.status().cursor,
        0,
        "the stale apply did not move the cursor"
    );
    assert_eq!(fetch(&mut p, 3).since, 0);
}

#[test]
fn retry_after_is_bounded_and_too_large_answers_shrink_pages() {
    let mut p = Puller::new(CFG, NodeId(9), None, 1);
    let f = fetch(&mut p, 0);
    let forever = Failure::Refused {
        status: 503,
        code: String::new(),
        retry_after_ms: Some(u64::MAX),
    };
    p.on_fetched(1, f.id, Err(forever));
    assert_eq!(p.wake_at_ms(), Some(1 + CFG.backoff.max_ms));
    let f = fetch(&mut p, 1 + CFG.backoff.max_ms);
    assert_eq!(f.limit, 10);
    p.on_fetched(
        2 + CFG.backoff.max_ms,
        f.id,
        Err(Failure::TooLarge("big".into())),
    );
    assert_eq!(fetch(&mut p, 10 * CFG.backoff.max_ms).limit, 5);
}

/// Several windows ahead.
mod windows {
    use super::*;

    const CFG: PullConfig = PullConfig {
        pages_ahead: 3,
        ..super::CFG
    };

    fn page(since: u64, next_since: u64, head: u64, rows: &[u64]) -> ChangesResponse {
        let mut p = super::page(since, next_since, head, rows);
        p.has_more = false;
        p
    }

    fn done(cursor: u64) -> ApplyOutcome {
        ApplyOutcome {
            cursor,
            changed: 1,
            parked: 0,
            stopped: None,
        }
    }

    #[test]
    fn windows_of_a_known_head_are_fetched_at_once_and_applied_in_order() {
        let mut p = Puller::new(CFG, NodeId(9), None, 1);
        let first = fetch(&mut p, 0);
        assert_eq!(
            (first.since, first.until),
            (0, None),
            "the head is not known yet"
        );
        assert_eq!(p.poll(0), None, "nothing past an open-ended fetch");
        let mut head_page = page(0, 10, 35, &[1, 10]);
        head_page.has_more = true;
        p.on_fetched(1, first.id, Ok(head_page));
        let Some(Action::Apply { id: a1, .. }) = p.poll(1) else {
            panic!("the first page applies")
        };
        // The head is 35: three windows are asked for at once, the last cut at the head.
        let w: Vec<Fetch> = (0..3).map(|_| fetch(&mut p, 1)).collect();
        let spans: Vec<_> = w.iter().map(|f| (f.since, f.until)).collect();
        assert_eq!(spans, [(10, Some(20)), (20, Some(30)), (30, Some(35))]);
        assert_eq!(p.poll(1), None, "no more than pages_ahead out");
        // Answers arrive out of order; the second is cut short by its inline budget.
        p.on_fetched(2, w[2].id, Ok(page(30, 35, 35, &[31, 35])));
        assert_eq!(
            p.status().state,
            LinkState::CatchingUp,
            "the last window came first: the windows before it are not applied"
        );
        let mut cut = page(20, 25, 35, &[21, 25]);
        cut.has_more = true;
        p.on_fetched(2, w[1].id, Ok(cut));
        let rest = fetch(&mut p, 2);
        assert_eq!(
            (rest.since, rest.until),
            (25, Some(30)),
            "the rest of the cut window"
        );
        p.on_fetched(3, w[0].id, Ok(page(10, 20, 35, &[11, 20])));
        p.on_applied(4, a1, done(10));
        let mut applied = Vec::new();
        let mut now = 5;
        loop {
            match p.poll(now) {
                Some(Action::Apply { id, page }) => {
                    applied.push((page.since, page.next_since));
                    p.on_applied(now, id, done(page.next_since));
                }
                Some(Action::Fetch(f)) if f.since == 35 && f.wait_ms == 0 => {
                    assert_eq!(f.until, None);
                    p.on_fetched(now, f.id, Ok(page(35, 35, 35, &[])));
                }
                // Caught up: a long-poll.
                Some(Action::Fetch(f)) if f.since == 35 => {
                    assert_eq!((f.until, f.wait_ms), (None, CFG.wait_ms));
                    break;
                }
                None if rest.id > 0 && applied.len() == 2 => {
                    p.on_fetched(now, rest.id, Ok(page(25, 30, 35, &[26, 30])));
                }
                None => break,
                other => panic!("unexpected {other:?}"),
            }
            now += 1;
        }
        assert_eq!(applied, [(10, 20), (20, 25), (25, 30), (30, 35)]);
        assert_eq!(p.status().cursor, 35);
        assert_eq!(p.status().state, LinkState::Live);
    }

    #[test]
    fn a_link_is_live_only_with_every_page_up_to_the_head_in_hand() {
        let mut p = Puller::new(CFG, NodeId(9), None, 1);
        let first = fetch(&mut p, 0);
        let mut head_page = page(0, 10, 35, &[1, 10]);
        head_page.has_more = true;
        p.on_fetched(1, first.id, Ok(head_page));
        let Some(Action::Apply { id: a1, .. }) = p.poll(1) else {
            panic!("the first page applies")
        };
        let w: Vec<Fetch> = (0..3).map(|_| fetch(&mut p, 1)).collect();
        // The last window comes first, and the first page is applied: one page waits, the
        // head's, but the two before it are not here.
        p.on_fetched(2, w[2].id, Ok(page(30, 35, 35, &[31, 35])));
        p.on_applied(3, a1, done(10));
        assert_eq!(p.status().state, LinkState::CatchingUp);
        p.on_fetched(4, w[0].id, Ok(page(10, 20, 35, &[11, 20])));
        p.on_fetched(4, w[1].id, Ok(page(20, 30, 35, &[21, 30])));
        let mut now = 5;
        while let Some(Action::Apply { id, page }) = p.poll(now) {
            p.on_applied(now, id, done(page.next_since));
            now += 1;
        }
        assert_eq!(p.status().cursor, 35);
        assert_eq!(p.status().state, LinkState::Live);
    }

    #[test]
    fn a_lost_window_is_asked_again_and_pages_before_it_still_apply() {
        let mut p = Puller::new(CFG, NodeId(9), Some((Epoch(1), 0)), 1);
        let f = fetch(&mut p, 0);
        let mut first = page(0, 5, 25, &[5]);
        first.has_more = true;
        p.on_fetched(0, f.id, Ok(first));
        let Some(Action::Apply { id: a, .. }) = p.poll(0) else {
            panic!("apply")
        };
        let w: Vec<Fetch> = (0..2).map(|_| fetch(&mut p, 0)).collect();
        assert_eq!(p.poll(0), None, "nothing is known past the head");
        p.on_fetched(1, w[0].id, Ok(page(5, 15, 25, &[15])));
        // The second window's answer does not come in time: at its deadline it is dropped;
        // the first, already here, still applies, and a late answer is not used.
        assert_eq!(p.poll(CFG.request_timeout_ms), None);
        assert_eq!(p.status().state, LinkState::BackingOff);
        p.on_fetched(CFG.request_timeout_ms, w[1].id, Ok(page(15, 25, 25, &[25])));
        p.on_applied(CFG.request_timeout_ms, a, done(5));
        let Some(Action::Apply { page, .. }) = p.poll(CFG.request_timeout_ms) else {
            panic!("the page already here applies during the backoff")
        };
        assert_eq!(page.since, 5);
        let again = fetch(&mut p, CFG.request_timeout_ms + CFG.backoff.max_ms);
        assert_eq!((again.since, again.until), (15, Some(25)));
    }

    #[test]
    fn a_version_1_peer_is_never_asked_for_a_window() {
        let mut p = Puller::new(CFG, NodeId(9), None, 1);
        let first = fetch(&mut p, 0);
        // A version 1 node sends no `protocol` field: it reads as 0.
        let mut old = page(0, 10, 35, &[1, 10]);
        (old.has_more, old.protocol) = (true, 0);
        p.on_fetched(1, first.id, Ok(old));
        let Some(Action::Apply { id, .. }) = p.poll(1) else {
            panic!("the first page applies")
        };
        let next = fetch(&mut p, 1);
        assert_eq!(
            (next.since, next.until),
            (10, None),
            "one open-ended fetch, as version 1 reads"
        );
        assert_eq!(p.poll(1), None, "and no other while it is out");
        p.on_applied(2, id, done(10));
        let mut newer = page(10, 20, 35, &[20]);
        newer.has_more = true;
        p.on_fetched(3, next.id, Ok(newer));
        let _apply = p.poll(3);
        let w = fetch(&mut p, 3);
        assert_eq!(
            (w.since, w.until),
            (20, Some(30)),
            "a peer that now says version 2 gets windows"
        );
    }
}
