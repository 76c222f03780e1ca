//! The vectors of one collection, held in memory and searched by cosine similarity.
//!
//! Every vector is unit length, so cosine similarity is a dot product. Up to
//! [`EXACT_MAX`] vectors a query scores every one exactly. Past it, a query narrows in three
//! passes, each reading more of fewer vectors: the signs of every vector (one bit a
//! coordinate, [`signs`]: a 32nd of the memory) choose a share of candidates
//! ([`CANDIDATE_SHARE`], at least [`MIN_CANDIDATES`]); their 4-bit copies (one scale per
//! vector) choose [`RESCORE_EXTRA`] more than asked; the full vectors rank those. Recall@10
//! against the exact scan is measured by `ragsync bench query` and by the `vector_scan`
//! example (see BENCHMARKS.md). A scan rather than a
//! graph (HNSW) because updates and deletes are a slot swap here, and because the graphs
//! measured on this machine built at about 1,000 vectors/s per core: see ARCHITECTURE.md.
//!
//! A document's vectors are replaced as a whole ([`VectorSet::set_doc`]), like its BM25
//! chunks, and only while the content they were derived from is still the one indexed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;

use ragsync_core::{ContentId, DocId};

mod signs;

use signs::Signs;

/// Largest set searched exactly; past it, the quantised passes.
pub const EXACT_MAX: usize = 10_000;
/// The sign pass keeps one vector in this many for the 4-bit pass, and at least
/// [`MIN_CANDIDATES`] (a smaller set's best stand out less from the rest).
const CANDIDATE_SHARE: usize = 32;
const MIN_CANDIDATES: usize = 1_024;
/// Candidates of the 4-bit pass rescored exactly, beyond the ones asked for.
const RESCORE_EXTRA: usize = 100;
/// Coordinates of one 4-bit block: 32 bytes, the low nibbles holding the first 32
/// coordinates and the high ones the next 32 (the layout the AVX2 kernel reads).
const BLOCK: usize = 64;
/// Slots a scanning thread scores at a time.
const BATCH: usize = 1024;
/// Vectors per scanning thread, at least.
const MIN_PER_THREAD: usize = 16_384;
/// Vectors held when the sign codes are first centred.
const RECENTRE_FROM: usize = 1_024;
/// Sign estimates sampled to set the candidates' threshold.
const SAMPLE: usize = 4_096;

/// Where a vector's chunk is: the same coordinates a BM25 hit has.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkRef {
    pub doc: DocId,
    pub ord: u32,
    pub start: u64,
    pub end: u64,
    pub chunk: ContentId,
    /// The content the chunk was cut from.
    pub content: ContentId,
}

/// A chunk found by its vector.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorHit {
    pub score: f32,
    pub chunk: ChunkRef,
}

/// One collection's vectors; see the module docs.
pub struct VectorSet {
    dim: usize,
    refs: Vec<ChunkRef>,
    /// `refs.len() * dim` coordinates.
    data: Vec<f32>,
    /// 4-bit codes, [`VectorSet::code_bytes`] per vector (see [`quantise4`]).
    codes: Vec<u8>,
    scales: Vec<f32>,
    signs: Signs,
    /// The slots of each document's vectors.
    slots: HashMap<DocId, Vec<u32>>,
    /// The content each document's vectors (or pending ones) come from.
    contents: HashMap<DocId, ContentId>,
    /// Chunks waiting for their vectors, by document.
    missing: HashMap<DocId, usize>,
}

impl VectorSet {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            refs: Vec::new(),
            data: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
            signs: Signs::new(dim),
            slots: HashMap::new(),
            contents: HashMap::new(),
            missing: HashMap::new(),
        }
    }

    pub fn dimension(&self) -> usize {
        self.dim
    }

    /// Bytes of one vector's 4-bit codes: its coordinates padded to whole blocks, two a byte.
    fn code_bytes(&self) -> usize {
        self.dim.div_ceil(BLOCK) * BLOCK / 2
    }

    /// Vectors held.
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Chunks indexed without a vector yet.
    pub fn missing(&self) -> usize {
        self.missing.values().sum()
    }

    /// The content document `doc`'s vectors are derived from, when it has any (or awaits some).
    pub fn content_of(&self, doc: &DocId) -> Option<ContentId> {
        self.contents.get(doc).copied()
    }

    /// Replaces document `doc`'s vectors by `chunks` (unit vectors of this set's dimension),
    /// derived from `content`, with `missing` more chunks still to embed. A vector of another
    /// dimension is left out (and counted missing).
    pub fn set_doc(
        &mut self,
        doc: &DocId,
        content: ContentId,
        chunks: Vec<(ChunkRef, Vec<f32>)>,
        missing: usize,
    ) {
        self.remove_doc(doc);
        let mut slots = Vec::with_capacity(chunks.len());
        let mut skipped = 0;
        for (r, v) in chunks {
            // Stored vectors are unit length; one from a peer is made so (or left out).
            let v = if (dot_f32(&v, &v) - 1.0).abs() < 1e-3 {
                Some(v)
            } else {
                crate::embed::unit(&v)
            };
            let Some(v) = v.filter(|v| v.len() == self.dim) else {
                skipped += 1;
                continue;
            };
            slots.push(self.refs.len() as u32);
            let (codes, scale) = quantise4(&v);
            self.refs.push(r);
            self.data.extend_from_slice(&v);
            self.codes.extend_from_slice(&codes);
            self.scales.push(scale);
            self.signs.push(&v);
        }
        // The centre of the sign codes follows the set as it doubles (each vector coded again
        // at 1,024, 2,048, ... vectors: a constant cost per vector added).
        if self.len() >= (2 * self.signs.centred_at()).max(RECENTRE_FROM) {
            self.signs.recentre(&self.data);
        }
        if !slots.is_empty() {
            self.slots.insert(doc.clone(), slots);
        }
        self.contents.insert(doc.clone(), content);
        if missing + skipped > 0 {
            self.missing.insert(doc.clone(), missing + skipped);
        }
    }

    /// Drops document `doc`'s vectors.
    pub fn remove_doc(&mut self, doc: &DocId) {
        self.contents.remove(doc);
        self.missing.remove(doc);
        let Some(mut slots) = self.slots.remove(doc) else {
            return;
        };
        // Highest first: a swap never moves a slot still to remove.
        slots.sort_unstable_by(|a, b| b.cmp(a));
        for s in slots {
            self.swap_remove(s as usize);
        }
    }

    /// Removes slot `s`, moving the last vector into it.
    fn swap_remove(&mut self, s: usize) {
        let last = self.refs.len() - 1;
        let (d, cb) = (self.dim, self.code_bytes());
        if s != last {
            let moved = self.refs[last].doc.clone();
            if let Some(slots) = self.slots.get_mut(&moved) {
                for x in slots.iter_mut().filter(|x| **x as usize == last) {
                    *x = s as u32;
                }
            }
            self.data.copy_within(last * d..(last + 1) * d, s * d);
            self.codes.copy_within(last * cb..(last + 1) * cb, s * cb);
            self.scales[s] = self.scales[last];
        }
        self.signs.swap_remove(s);
        self.refs.swap_remove(s);
        self.data.truncate(last * d);
        self.codes.truncate(last * cb);
        self.scales.truncate(last);
    }

    /// The `limit` chunks most similar to unit vector `q`, best first: exact up to
    /// [`EXACT_MAX`] vectors, else by the quantised scan (see the module docs).
    pub fn search(&self, q: &[f32], limit: usize) -> Vec<VectorHit> {
        self.search_with(q, limit, self.len() > EXACT_MAX)
    }

    /// [`VectorSet::search`] forced exact (`approximate` false) or approximate, for measuring
    /// recall.
    pub fn search_with(&self, q: &[f32], limit: usize, approximate: bool) -> Vec<VectorHit> {
        if q.len() != self.dim || limit == 0 || self.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<(f32, u32)> = if approximate {
            let keep = limit + RESCORE_EXTRA;
            let candidates = self.sign_candidates(
                q,
                (self.len() / CANDIDATE_SHARE).max(MIN_CANDIDATES).max(keep),
            );
            let mut cands = self.rescore_4bit(q, candidates);
            best_first(&mut cands, keep);
            for c in &mut cands {
                c.0 = self.exact(q, c.1 as usize);
            }
            cands
        } else {
            self.scan(
                |slots, out| out.extend(slots.map(|s| self.exact(q, s))),
                limit,
            )
        };
        best_first(&mut scored, limit);
        scored
            .into_iter()
            .map(|(score, slot)| VectorHit {
                score,
                chunk: self.refs[slot as usize].clone(),
            })
            .collect()
    }

    /// The similarity to `q` of chunk `ord` of document `doc`, when it has a vector.
    pub fn score_of(&self, doc: &DocId, ord: u32, q: &[f32]) -> Option<f32> {
        if q.len() != self.dim {
            return None;
        }
        let slot = *self
            .slots
            .get(doc)?
            .iter()
            .find(|s| self.refs[**s as usize].ord == ord)?;
        Some(self.exact(q, slot as usize))
    }

    /// At least `want` slots (or all) whose signs estimate them closest to `q`, unordered.
    ///
    /// Taking the best of 100,000 estimates through a heap costs more than the estimates
    /// (each of thousands of entries goes in and out), so a threshold is read off a sample of
    /// whole blocks spread over the set, set below the share wanted, and every slot at or
    /// above it is kept; only when that leaves too few are all of them ranked.
    fn sign_candidates(&self, q: &[f32], want: usize) -> Vec<(f32, u32)> {
        let n = self.len();
        let query = self.signs.query(q);
        let estimate =
            |slots: Range<usize>, out: &mut Vec<f32>| self.signs.estimate(&query, slots, out);
        if want < n {
            let blocks = n.div_ceil(signs::LANES);
            let step = (blocks * signs::LANES / SAMPLE).max(1);
            let mut sample = Vec::with_capacity(SAMPLE + signs::LANES);
            for b in (0..blocks).step_by(step) {
                estimate(
                    b * signs::LANES..((b + 1) * signs::LANES).min(n),
                    &mut sample,
                );
            }
            // A quarter more than the share wanted, so the sample's error rarely leaves too
            // few.
            let at = (want * sample.len()).div_ceil(n) * 5 / 4;
            if at < sample.len() {
                let (_, threshold, _) = sample.select_nth_unstable_by(at, |a, b| b.total_cmp(a));
                let threshold = *threshold;
                let mut picked = Vec::with_capacity(want * 2);
                let mut batch = Vec::with_capacity(BATCH);
                for start in (0..n).step_by(BATCH) {
                    batch.clear();
                    estimate(start..(start + BATCH).min(n), &mut batch);
                    for (i, e) in batch.iter().enumerate() {
                        if *e >= threshold {
                            picked.push((*e, (start + i) as u32));
                        }
                    }
                }
                if picked.len() >= want {
                    return picked;
                }
            }
        }
        let mut all = Vec::with_capacity(n);
        estimate(0..n, &mut all);
        let mut all: Vec<(f32, u32)> = all.into_iter().zip(0..).collect();
        best_first(&mut all, want);
        all
    }

    /// `candidates` scored anew by their 4-bit codes.
    fn rescore_4bit(&self, q: &[f32], mut candidates: Vec<(f32, u32)>) -> Vec<(f32, u32)> {
        let cb = self.code_bytes();
        let (padded, qs, offset) = quantise_query(q);
        let mut raw = Vec::with_capacity(candidates.len());
        let code = |i: usize| {
            let slot = candidates[i].1 as usize;
            &self.codes[slot * cb..][..cb]
        };
        // The candidates are scattered: ask for the codes a few candidates ahead.
        let prefetched = (0..candidates.len()).map(|i| {
            if i + PREFETCH_AHEAD < candidates.len() {
                prefetch(code(i + PREFETCH_AHEAD));
            }
            code(i)
        });
        dot_u4_many(prefetched, &padded, &mut raw);
        for ((score, slot), r) in candidates.iter_mut().zip(raw) {
            *score = (r - offset) as f32 * qs * self.scales[*slot as usize];
        }
        candidates
    }

    fn exact(&self, q: &[f32], slot: usize) -> f32 {
        dot_f32(q, &self.data[slot * self.dim..(slot + 1) * self.dim])
    }

    /// The `keep` best slots by the scores `score` appends for a range of slots, unordered,
    /// scanning on every core for large sets (the calling thread takes the last part).
    fn scan<F>(&self, score: F, keep: usize) -> Vec<(f32, u32)>
    where
        F: FnMut(Range<usize>, &mut Vec<f32>) + Clone + Send,
    {
        let n = self.len();
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let threads = (n / MIN_PER_THREAD).clamp(1, cores);
        let part = |lo: usize, hi: usize, mut score: F| {
            let mut best = Best::new(keep);
            let mut buf = Vec::with_capacity(BATCH);
            for start in (lo..hi).step_by(BATCH) {
                buf.clear();
                score(start..(start + BATCH).min(hi), &mut buf);
                for (i, s) in buf.iter().enumerate() {
                    best.offer(*s, (start + i) as u32);
                }
            }
            best.into_vec()
        };
        if threads == 1 {
            return part(0, n, score);
        }
        let per = n.div_ceil(threads);
        std::thread::scope(|sc| {
            let others: Vec<_> = (0..threads - 1)
                .map(|t| {
                    let (part, score) = (&part, score.clone());
                    sc.spawn(move || part(t * per, ((t + 1) * per).min(n), score))
                })
                .collect();
            let mut all = part((threads - 1) * per, n, score);
            for h in others {
                all.extend(h.join().unwrap_or_default());
            }
            all
        })
    }
}

/// The best `keep` scores offered so far: a min-heap whose worst is kept at hand, so a score
/// below it costs one comparison. Lower slots win ties, as in [`best_first`].
struct Best {
    keep: usize,
    heap: BinaryHeap<Reverse<Scored>>,
    floor: f32,
}

#[derive(PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

impl Best {
    fn new(keep: usize) -> Self {
        Self {
            keep,
            heap: BinaryHeap::with_capacity(keep + 1),
            floor: f32::NEG_INFINITY,
        }
    }

    /// Offers slots in rising order: a later slot must beat the worst kept, not tie it.
    fn offer(&mut self, score: f32, slot: u32) {
        if self.heap.len() == self.keep {
            if score <= self.floor {
                return;
            }
            self.heap.pop();
        }
        self.heap.push(Reverse(Scored(score, slot)));
        if self.heap.len() == self.keep {
            self.floor = self.heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.0);
        }
    }

    fn into_vec(self) -> Vec<(f32, u32)> {
        self.heap
            .into_iter()
            .map(|Reverse(Scored(s, i))| (s, i))
            .collect()
    }
}

/// Candidates ahead of the one scored whose codes are asked for.
const PREFETCH_AHEAD: usize = 8;

/// Asks for `bytes` to be brought into the cache.
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint and never faults; the address is in bounds anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Keeps the `keep` highest scores of `s`, best first.
fn best_first(s: &mut Vec<(f32, u32)>, keep: usize) {
    let by_score = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if s.len() > keep {
        s.select_nth_unstable_by(keep, by_score);
        s.truncate(keep);
    }
    s.sort_unstable_by(by_score);
}

/// 8-bit coordinates of `v` and the scale that multiplies them back.
fn quantise(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return (vec![0; v.len()], 0.0);
    }
    let scale = max / 127.0;
    let codes = v.iter().map(|x| (x / scale).round() as i8).collect();
    (codes, scale)
}

/// Dot product, in lanes the compiler turns into SIMD.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Query `q` for the 4-bit scan: its 8-bit coordinates padded to whole blocks, their scale,
/// and the offset to take off each raw [`dot_u4_many`] sum (codes hold coordinate + 8, so 8
/// times the query's sum).
fn quantise_query(q: &[f32]) -> (Vec<i8>, f32, i32) {
    let (qc, qs) = quantise(q);
    let mut padded = vec![0i8; q.len().div_ceil(BLOCK) * BLOCK];
    padded[..qc.len()].copy_from_slice(&qc);
    let offset = 8 * qc.iter().map(|&x| i32::from(x)).sum::<i32>();
    (padded, qs, offset)
}

/// 4-bit codes of `v` in blocks of [`BLOCK`] coordinates (the last block padded with
/// zeros), each coordinate rounded to -7..=7 times the scale and stored plus 8, and the scale.
fn quantise4(v: &[f32]) -> (Vec<u8>, f32) {
    let blocks = v.len().div_ceil(BLOCK);
    let mut codes = vec![0x88u8; blocks * BLOCK / 2];
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return (codes, 0.0);
    }
    let scale = max / 7.0;
    for (i, x) in v.iter().enumerate() {
        let nibble = ((x / scale).round().clamp(-7.0, 7.0) as i8 + 8) as u8;
        let (block, at) = (i / BLOCK, i % BLOCK);
        let byte = &mut codes[block * BLOCK / 2 + at % (BLOCK / 2)];
        *byte = if at < BLOCK / 2 {
            (*byte & 0xF0) | nibble
        } else {
            (*byte & 0x0F) | (nibble << 4)
        };
    }
    (codes, scale)
}

/// For each vector's codes (4-bit, padded to whole blocks as `q` is), the sum over
/// coordinates of `q[i]` times the stored nibble (0..=15) of coordinate `i`, into `out`
/// (cleared first): with AVX2 when the CPU has it (checked once), else one byte at a time.
fn dot_u4_many<'a>(codes: impl Iterator<Item = &'a [u8]>, q: &[i8], out: &mut Vec<i32>) {
    out.clear();
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX2.get_or_init(|| std::arch::is_x86_feature_detected!("avx2")) {
            // SAFETY: the CPU was just found to support AVX2, the one feature the function
            // is compiled for.
            return unsafe { dot_u4_many_avx2(codes, q, out) };
        }
    }
    out.extend(codes.map(|c| dot_u4_scalar(c, q)));
}

fn dot_u4_scalar(codes: &[u8], q: &[i8]) -> i32 {
    let half = BLOCK / 2;
    codes
        .chunks_exact(half)
        .zip(q.chunks_exact(BLOCK))
        .map(|(c, q)| {
            c.iter()
                .zip(&q[..half])
                .zip(&q[half..])
                .map(|((b, lo), hi)| {
                    i32::from(b & 0x0F) * i32::from(*lo) + i32::from(b >> 4) * i32::from(*hi)
                })
                .sum::<i32>()
        })
        .sum()
}

/// [`dot_u4_scalar`] for every vector of `codes`, with AVX2: per block, the two nibble
/// halves times the query's two halves by `maddubs` (unsigned nibble times signed byte,
/// pairs summed to 16 bits: at most 2 * 15 * 128 each, no saturation), widened to 32 bits
/// and summed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_u4_many_avx2<'a>(codes: impl Iterator<Item = &'a [u8]>, q: &[i8], out: &mut Vec<i32>) {
    use std::arch::x86_64::*;
    let half = BLOCK / 2;
    // SAFETY (every load below): `q` holds whole blocks of 64 bytes and each `c` whole
    // blocks of 32, as the chunking guarantees; the loads are unaligned.
    let qs: Vec<(__m256i, __m256i)> = q
        .chunks_exact(BLOCK)
        .map(|b| unsafe {
            (
                _mm256_loadu_si256(b.as_ptr().cast()),
                _mm256_loadu_si256(b.as_ptr().add(half).cast()),
            )
        })
        .collect();
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for v in codes {
        debug_assert_eq!(v.len(), qs.len() * half);
        let mut acc = _mm256_setzero_si256();
        for (c, (qlo, qhi)) in v.chunks_exact(half).zip(&qs) {
            let c = unsafe { _mm256_loadu_si256(c.as_ptr().cast()) };
            let lo = _mm256_and_si256(c, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), low);
            let pairs = _mm256_add_epi16(
                _mm256_maddubs_epi16(lo, *qlo),
                _mm256_maddubs_epi16(hi, *qhi),
            );
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, ones));
        }
        let sum = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256(acc, 1),
        );
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b01_00_11_10));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b10_11_00_01));
        out.push(_mm_cvtsi128_si32(sum));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        (0..n)
            .map(|_| {
                let v: Vec<f32> = (0..dim).map(|_| next() + next() + next()).collect();
                crate::embed::unit(&v).unwrap()
            })
            .collect()
    }

    fn chunk_ref(doc: &str, ord: u32) -> ChunkRef {
        ChunkRef {
            doc: DocId::new(doc.to_string()).unwrap(),
            ord,
            start: 0,
            end: 1,
            chunk: ContentId::of(format!("{doc}/{ord}").as_bytes()),
            content: ContentId::of(doc.as_bytes()),
        }
    }

    #[test]
    fn updates_and_deletes_move_slots_without_losing_vectors() {
        let vs = unit_vectors(6, 8, 7);
        let mut set = VectorSet::new(8);
        for (i, pair) in vs.chunks(2).enumerate() {
            let doc = format!("d{i}");
            let chunks = pair
                .iter()
                .enumerate()
                .map(|(o, v)| (chunk_ref(&doc, o as u32), v.clone()))
                .collect();
            set.set_doc(
                &DocId::new(doc.clone()).unwrap(),
                ContentId::of(doc.as_bytes()),
                chunks,
                0,
            );
        }
        assert_eq!(set.len(), 6);
        let d0 = DocId::new("d0".to_string()).unwrap();
        set.remove_doc(&d0);
        assert_eq!(set.len(), 4);
        // Every remaining vector still finds itself first, at similarity 1.
        for (i, v) in vs.iter().enumerate().skip(2) {
            let hit = &set.search(v, 1)[0];
            assert_eq!(hit.chunk, chunk_ref(&format!("d{}", i / 2), (i % 2) as u32));
            assert!((hit.score - 1.0).abs() < 1e-5);
        }
        // An update replaces the document's vectors; one of another size is not taken.
        let d2 = DocId::new("d2".to_string()).unwrap();
        set.set_doc(
            &d2,
            ContentId::of(b"new"),
            vec![
                (chunk_ref("d2", 0), vs[0].clone()),
                (chunk_ref("d2", 1), vec![1.0]),
            ],
            0,
        );
        assert_eq!(set.len(), 3);
        assert_eq!(set.missing(), 1);
        assert_eq!(set.search(&vs[0], 1)[0].chunk, chunk_ref("d2", 0));
        assert!(
            set.search(&vs[4], 3)
                .iter()
                .all(|h| h.chunk.doc != d2 || h.chunk.ord == 0)
        );
    }

    #[test]
    fn the_4_bit_dot_product_is_the_same_in_every_kernel_and_near_the_exact_one() {
        // 100 coordinates: one whole block and one padded.
        let dim = 100;
        let vs = unit_vectors(40, dim, 5);
        let (q, qs, offset) = quantise_query(&vs[0]);
        assert_eq!(q.len(), 2 * BLOCK);
        let mut codes = Vec::new();
        let mut scales = Vec::new();
        for v in &vs {
            let (c, s) = quantise4(v);
            assert_eq!(c.len(), BLOCK);
            codes.extend(c);
            scales.push(s);
        }
        let mut raw = Vec::new();
        dot_u4_many(codes.chunks_exact(BLOCK), &q, &mut raw);
        let scalar: Vec<i32> = codes
            .chunks_exact(BLOCK)
            .map(|c| dot_u4_scalar(c, &q))
            .collect();
        assert_eq!(raw, scalar);
        for ((r, s), v) in raw.iter().zip(&scales).zip(&vs) {
            let approx = (r - offset) as f32 * qs * s;
            let exact = dot_f32(&vs[0], v);
            assert!((approx - exact).abs() < 0.05, "{approx} against {exact}");
        }
    }

    #[test]
    fn the_quantised_scan_finds_what_the_exact_one_does() {
        // Large enough that the sign pass keeps a share of the set, not a minimum count; once
        // as random vectors, once all leaning one way as real embeddings do (mean cosine 0.5).
        let dim = 64;
        let axis = &unit_vectors(1, dim, 5)[0];
        for lean in [0.0, 1.0] {
            let leaning = |v: Vec<f32>| {
                let v: Vec<f32> = v.iter().zip(axis).map(|(x, a)| x + lean * a).collect();
                crate::embed::unit(&v).unwrap()
            };
            let mut set = VectorSet::new(dim);
            for (i, v) in unit_vectors(40_000, dim, 11).into_iter().enumerate() {
                let doc = format!("d{i}");
                set.set_doc(
                    &DocId::new(doc.clone()).unwrap(),
                    ContentId::of(doc.as_bytes()),
                    vec![(chunk_ref(&doc, 0), leaning(v))],
                    0,
                );
            }
            let mut found = 0;
            for q in unit_vectors(20, dim, 99).into_iter().map(leaning) {
                let exact = set.search_with(&q, 10, false);
                let approx = set.search_with(&q, 10, true);
                assert!(exact.windows(2).all(|w| w[0].score >= w[1].score));
                found += approx.iter().filter(|h| exact.contains(h)).count();
            }
            let recall = found as f64 / 200.0;
            assert!(recall >= 0.95, "leaning {lean}: recall@10 {recall}");
        }
    }
}
