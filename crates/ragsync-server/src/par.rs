//! CPU work of one request spread over the machine's cores: a large batch is parsed and
//! checked on several threads, since the write after it runs on one.

/// At most this many threads share one request's work.
const MAX_THREADS: usize = 4;

/// `f(i, &items[i])` for every item, in order, computed on up to [`MAX_THREADS`] threads
/// (the calling one among them), each taking a contiguous share.
pub(crate) fn map<T: Sync, U: Send>(items: &[T], f: impl Fn(usize, &T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    let per = items.len().div_ceil(threads).max(1);
    let share = |first: usize, part: &[T]| {
        part.iter()
            .enumerate()
            .map(|(k, x)| f(first + k, x))
            .collect::<Vec<U>>()
    };
    std::thread::scope(|s| {
        let mut parts = items.chunks(per).enumerate();
        let mine = parts.next().map(|(_, part)| part).unwrap_or_default();
        let others: Vec<_> = parts
            .map(|(n, part)| s.spawn(move || share(n * per, part)))
            .collect();
        let mut out = share(0, mine);
        for h in others {
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
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
}
