//! CPU work of one request spread over the machine's cores: a large batch is parsed and
//! checked on several threads, since the write after it runs on one.

use std::sync::OnceLock;

/// At most this many threads share one request's work.
const MAX_THREADS: usize = 4;

/// Threads one request's work is shared by: the cores, up to [`MAX_THREADS`].
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    })
}

/// `f(i, &items[i])` for every item, in order, computed on up to [`threads`] threads (the
/// calling one among them), each taking a contiguous share. A share whose thread cannot be
/// started is computed on the calling thread; a panic in `f` reaches the caller.
pub(crate) fn map<T: Sync, U: Send>(items: &[T], f: impl Fn(usize, &T) -> U + Sync) -> Vec<U> {
    let share = |first: usize, part: &[T]| {
        part.iter()
            .enumerate()
            .map(|(k, x)| f(first + k, x))
            .collect::<Vec<U>>()
    };
    let threads = threads();
    if threads == 1 || items.len() < 2 {
        return share(0, items);
    }
    let per = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let mut parts = items.chunks(per).enumerate();
        let mine = parts.next().map(|(_, part)| part).unwrap_or_default();
        let others: Vec<_> = parts
            .map(|(n, part)| {
                let started = std::thread::Builder::new()
                    .name("ragsync-parse".into())
                    .spawn_scoped(s, move || share(n * per, part));
                (n, part, started)
            })
            .collect();
        let mut out = share(0, mine);
        for (n, part, started) in others {
            match started {
                Ok(h) => out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
                Err(_) => out.extend(share(n * per, part)),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_mapped_once_in_order_with_its_index() {
        for n in [0, 1, 2, 3, 7, 1000] {
            let items: Vec<u64> = (0..n).map(|x| x * 3).collect();
            let out = map(&items, |i, x| (i, *x + 1));
            let want: Vec<(usize, u64)> = (0..n).map(|i| (i as usize, i * 3 + 1)).collect();
            assert_eq!(out, want);
        }
    }

    #[test]
    fn a_panic_in_any_share_reaches_the_caller() {
        let items: Vec<usize> = (0..1000).collect();
        let caught = std::panic::catch_unwind(|| {
            map(&items, |i, _| {
                assert!(i != 999, "the last item");
                i
            })
        });
        assert!(caught.is_err());
    }
}
