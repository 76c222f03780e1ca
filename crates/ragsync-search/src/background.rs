//! Derived work yields to requests. The BM25 index's tantivy threads (indexing and merging)
//! run at a lower scheduling priority than the threads that answer requests, so that on a
//! busy machine a write is acknowledged, and a query answered, before the index catches up
//! with it; when requests leave the cores idle, indexing gets them all, as before.
//!
//! By default they run 10 nice levels lower. Linux's `SCHED_IDLE` policy is the other
//! choice (`--index-priority idle`): a request thread that wakes takes its core at once,
//! where a niced-down thread may finish its slice first, and a bulk load of vectors was
//! acknowledged 1.14-1.27x faster in paired runs (BENCHMARKS.md). It is not the default
//! because a query waits for the index to cover the writes before it: with queries beside
//! that load, they waited about 1.5x as long under `SCHED_IDLE` and a third of them ran out
//! of their 5 s and answered stale, none at nice 10, while the load itself went no faster.
//! Either way the index still gets a share of a saturated node (weight 110 at nice 10, 3
//! under `SCHED_IDLE`, to a request's 1,024), so it indexes slowly rather than never.
//!
//! The built-in model's encoding is not lowered: its matrix products run on rayon's one
//! global pool, which a query's embedding uses too, and a pool started from a lowered thread
//! would slow those queries.
//!
//! Linux only: there a thread's policy and niceness are its own and the threads it starts
//! inherit them. Elsewhere (where `setpriority` would lower the whole process) this does
//! nothing.

use std::sync::atomic::{AtomicI32, Ordering};

/// How derived work's threads are scheduled beside the request threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// `SCHED_IDLE`: only on a core no request thread wants.
    Idle,
    /// This many nice increments lower (0 to 19; 0: the same as requests).
    Nice(i32),
}

/// Nice increments derived work runs at above the node's own, unless set otherwise.
pub const DEFAULT_NICE: i32 = 10;

impl Default for Priority {
    fn default() -> Self {
        Priority::Nice(DEFAULT_NICE)
    }
}

impl std::str::FromStr for Priority {
    type Err = String;

    /// `idle`, or a nice increment from 0 to 19.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "idle" {
            return Ok(Priority::Idle);
        }
        match s.parse::<i32>() {
            Ok(n) if (0..=19).contains(&n) => Ok(Priority::Nice(n)),
            _ => Err(format!(
                "{s:?} is neither `idle` nor a nice increment from 0 to 19"
            )),
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Priority::Idle => f.write_str("idle"),
            Priority::Nice(n) => write!(f, "{n}"),
        }
    }
}

/// [`Priority::Idle`] as stored in [`PRIORITY`]; a nice increment is stored as itself.
const IDLE: i32 = -1;

static PRIORITY: AtomicI32 = AtomicI32::new(DEFAULT_NICE);

/// Sets how derived work is scheduled. Takes effect for threads started from then on: call
/// it at start.
pub fn set_priority(p: Priority) {
    let v = match p {
        Priority::Idle => IDLE,
        Priority::Nice(n) => n.clamp(0, 19),
    };
    PRIORITY.store(v, Ordering::Relaxed);
}

/// Lowers the calling thread's priority as configured. Best effort: a thread whose priority
/// cannot be changed keeps it, and one that cannot take `SCHED_IDLE` is niced down to 19.
pub fn lower_this_thread() {
    match PRIORITY.load(Ordering::Relaxed) {
        IDLE => {
            if !idle() {
                lower(19);
            }
        }
        0 => {}
        increment => lower(increment),
    }
}

#[cfg(target_os = "linux")]
fn lower(increment: i32) {
    // SAFETY: `gettid`, `getpriority` and `setpriority` take plain integers and touch no
    // memory of ours; on Linux `PRIO_PROCESS` with a thread id names that one thread.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        let target = (now + increment).min(19);
        if target > now && libc::setpriority(libc::PRIO_PROCESS, tid, target) != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower a background thread's priority"
            );
        }
    }
}

/// Puts the calling thread under `SCHED_IDLE`; false when the kernel refuses.
#[cfg(target_os = "linux")]
fn idle() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` lives across the call, which only reads it; on Linux a thread id names
    // that one thread.
    let done = unsafe { libc::sched_setscheduler(libc::gettid(), libc::SCHED_IDLE, &param) } == 0;
    if !done {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not put a background thread under SCHED_IDLE; lowering its nice value"
        );
    }
    done
}

#[cfg(not(target_os = "linux"))]
fn lower(_increment: i32) {}

#[cfg(not(target_os = "linux"))]
fn idle() -> bool {
    true
}

/// Runs `f` on a new thread of lowered priority and gives back its result: threads `f`
/// starts (tantivy's indexing and merge threads, when `f` makes an index writer) inherit
/// that priority, and the caller's own thread keeps its.
pub fn on_lowered_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("ragsync-lowered".into())
            .spawn_scoped(s, || {
                lower_this_thread();
                f()
            })
            .expect("a thread can be started")
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        // SAFETY: as in `lower`.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    fn policy_of_this_thread() -> i32 {
        // SAFETY: a plain integer in, a plain integer out.
        unsafe { libc::sched_getscheduler(libc::gettid()) }
    }

    /// One test, since the setting is process-wide: the default first, then idle, then none.
    #[test]
    fn threads_started_from_a_lowered_thread_are_lowered_and_the_caller_is_not() {
        let (mine, my_policy) = (nice_of_this_thread(), policy_of_this_thread());
        let observe = || {
            let child = std::thread::spawn(|| (nice_of_this_thread(), policy_of_this_thread()));
            let child = child.join().unwrap();
            ((nice_of_this_thread(), policy_of_this_thread()), child)
        };

        assert_eq!(Priority::default(), Priority::Nice(DEFAULT_NICE));
        let (lowered, child) = on_lowered_thread(observe);
        assert_eq!(lowered, ((mine + DEFAULT_NICE).min(19), my_policy));
        assert_eq!(child, lowered, "a thread inherits its starter's priority");

        set_priority(Priority::Idle);
        let (lowered, child) = on_lowered_thread(observe);
        assert_eq!(lowered.1, libc::SCHED_IDLE);
        assert_eq!(child, lowered, "a thread inherits its starter's policy");

        set_priority(Priority::Nice(0));
        assert_eq!(on_lowered_thread(observe).0, (mine, my_policy));
        set_priority(Priority::default());
        assert_eq!(
            (nice_of_this_thread(), policy_of_this_thread()),
            (mine, my_policy)
        );
    }

    #[test]
    fn priorities_read_as_written() {
        for p in [Priority::Idle, Priority::Nice(0), Priority::Nice(19)] {
            assert_eq!(p.to_string().parse::<Priority>(), Ok(p));
        }
        for bad in ["20", "-1", "", "IDLE", "low"] {
            assert!(bad.parse::<Priority>().is_err(), "{bad}");
        }
    }
}
