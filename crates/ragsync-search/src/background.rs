//! Derived work yields to requests. The BM25 index's tantivy threads (indexing and merging)
//! run at a lower scheduling priority than the threads that answer requests, so that on a
//! busy machine a write is acknowledged, and a query answered, before the index catches up
//! with it; when requests leave the cores idle, indexing gets them all, as before. On two
//! cores, a bulk load of vectors was acknowledged 1.5x faster this way, and the index was
//! caught up no later (BENCHMARKS.md).
//!
//! The built-in model's encoding is not lowered: its matrix products run on rayon's one
//! global pool, which a query's embedding uses too, and a pool started from a lowered thread
//! would slow those queries.
//!
//! Linux only: there a thread's niceness is its own and the threads it starts inherit it.
//! Elsewhere (where `setpriority` would lower the whole process) this does nothing.

use std::sync::atomic::{AtomicI32, Ordering};

/// Nice increments derived work runs at above the node's own, unless set otherwise.
pub const DEFAULT_NICE: i32 = 10;

static NICE: AtomicI32 = AtomicI32::new(DEFAULT_NICE);

/// Sets how much lower derived work's priority is, in nice increments (0 to 19; 0: the
/// same as requests). Takes effect for threads started from then on: call it at start.
pub fn set_nice(increment: i32) {
    NICE.store(increment.clamp(0, 19), Ordering::Relaxed);
}

/// Lowers the calling thread's priority by the configured increment (at most to nice 19).
/// Best effort: a thread whose priority cannot be changed keeps it.
pub fn lower_this_thread() {
    let increment = NICE.load(Ordering::Relaxed);
    if increment > 0 {
        lower(increment);
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

#[cfg(not(target_os = "linux"))]
fn lower(_increment: i32) {}

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

    #[test]
    fn threads_started_from_a_lowered_thread_are_lowered_and_the_caller_is_not() {
        let mine = nice_of_this_thread();
        let (lowered, child) = on_lowered_thread(|| {
            let child = std::thread::spawn(nice_of_this_thread).join().unwrap();
            (nice_of_this_thread(), child)
        });
        assert_eq!(lowered, (mine + DEFAULT_NICE).min(19));
        assert_eq!(child, lowered, "a thread inherits its starter's priority");
        assert_eq!(nice_of_this_thread(), mine);
    }
}
