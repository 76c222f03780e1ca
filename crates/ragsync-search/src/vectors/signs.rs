//! One bit a coordinate (its sign), scanned by table lookups: the first pass of an
//! approximate vector search.
//!
//! A vector `x` is taken from the set's centre `c`, along the centre's direction `u` and
//! across it: `x = c + a u + p`, with `a = (x − c) · u` kept exactly and `p` kept as its
//! signs and one factor, `|p|² / Σ|pᵢ|`. A query splits the same way, `q = (q · u) u + r`, so
//! `q · x = q · c + (q · u) a + r · p`, and `r · p` is estimated as
//! `(2 Σ_{pᵢ>0} rᵢ − Σ rᵢ) |p|² / Σ|pᵢ|`: the dot product with the sign vector, corrected by
//! how far `p` is from it (RaBitQ's estimator). Real embeddings share a direction: without
//! the centre most signs would say the same about every vector, and the part of the query
//! along it would add noise to every estimate and nothing to the ranking.
//!
//! The sum over positive coordinates is taken four coordinates at a time: for each group of
//! four the query gives a table of 16 sums (one per sign pattern), quantised to bytes, and a
//! vector's four sign bits pick one entry. Vectors are stored in blocks of [`LANES`],
//! interleaved so that one byte shuffle looks up a group for 16 vectors at once (the layout of
//! FAISS's "fast scan").
//!
//! The estimate is coarse (it correlates with the true product at about 0.8 on random
//! vectors), so it only chooses candidates; [`super::VectorSet`] rescores them.

use std::ops::Range;

use super::dot_f32;

/// Vectors per block.
pub(super) const LANES: usize = 32;
/// Bytes of one group of four coordinates in a block: 32 nibbles.
const GROUP_BYTES: usize = LANES / 2;

/// The sign codes of a set of vectors, slot by slot.
pub(super) struct Signs {
    /// Groups of four coordinates per vector, rounded up to even (the AVX2 kernel reads two
    /// groups at a time).
    groups: usize,
    /// Blocks of [`LANES`] vectors, `groups * GROUP_BYTES` bytes each: byte `k` of group `g`
    /// holds group `g` of vector `k` in its low nibble and of vector `k + 16` in its high one.
    blocks: Vec<u8>,
    /// `|p|² / Σ|pᵢ|` per vector (0 when `p` is zero).
    factors: Vec<f32>,
    /// `a` per vector.
    along: Vec<f32>,
    /// The centre `c` the codes are taken from (see [`Signs::recentre`]).
    centre: Vec<f32>,
    /// Its direction `u` (zero when the centre is).
    axis: Vec<f32>,
    /// Vectors held when the centre was last set.
    centred_at: usize,
}

/// A query prepared for [`Signs::estimate`].
pub(super) struct SignQuery {
    /// `groups * 16` bytes: entry `t` of group `g` is the quantised sum of coordinates
    /// `4g + b` of `r` (the query across the axis) for the bits `b` set in `t`, less the
    /// group's least sum.
    tables: Vec<u8>,
    /// What one unit of a table entry is worth.
    step: f32,
    /// The groups' least sums, added up: what every vector's lookups start from.
    base: f32,
    /// `Σ rᵢ`.
    sum: f32,
    /// `q · c`.
    centre: f32,
    /// `q · u`.
    along: f32,
}

impl Signs {
    pub(super) fn new(dim: usize) -> Self {
        Self {
            groups: dim.div_ceil(4).next_multiple_of(2),
            blocks: Vec::new(),
            factors: Vec::new(),
            along: Vec::new(),
            centre: vec![0.0; dim],
            axis: vec![0.0; dim],
            centred_at: 0,
        }
    }

    /// Vectors held when the centre was last set.
    pub(super) fn centred_at(&self) -> usize {
        self.centred_at
    }

    /// Sets the centre to the mean of `vectors` (every vector held, in slot order, as
    /// `dim`-long runs) and codes them all again from it.
    pub(super) fn recentre(&mut self, vectors: &[f32]) {
        let dim = self.centre.len();
        let n = vectors.len() / dim;
        let mut centre = vec![0f64; dim];
        for v in vectors.chunks_exact(dim) {
            centre
                .iter_mut()
                .zip(v)
                .for_each(|(c, x)| *c += f64::from(*x));
        }
        self.centre = centre
            .iter()
            .map(|c| (c / n.max(1) as f64) as f32)
            .collect();
        let norm = self.centre.iter().map(|x| x * x).sum::<f32>().sqrt();
        self.axis = if norm > 0.0 {
            self.centre.iter().map(|x| x / norm).collect()
        } else {
            vec![0.0; dim]
        };
        self.centred_at = n;
        self.blocks.clear();
        self.factors.clear();
        self.along.clear();
        for v in vectors.chunks_exact(dim) {
            self.push(v);
        }
    }

    fn block_bytes(&self) -> usize {
        self.groups * GROUP_BYTES
    }

    /// Appends unit vector `v` as the next slot.
    pub(super) fn push(&mut self, v: &[f32]) {
        let slot = self.factors.len();
        if slot.is_multiple_of(LANES) {
            self.blocks
                .resize(self.blocks.len() + self.block_bytes(), 0);
        }
        let d: Vec<f32> = v.iter().zip(&self.centre).map(|(x, c)| x - c).collect();
        let (a, p) = split(&d, &self.axis);
        let abs: f32 = p.iter().map(|x| x.abs()).sum();
        let squared: f32 = p.iter().map(|x| x * x).sum();
        self.factors
            .push(if abs > 0.0 { squared / abs } else { 0.0 });
        self.along.push(a);
        for g in 0..self.groups {
            let nibble = (0..4).fold(0u8, |n, b| {
                let positive = p.get(4 * g + b).is_some_and(|x| *x > 0.0);
                n | (u8::from(positive) << b)
            });
            self.set_nibble(slot, g, nibble);
        }
    }

    fn nibble_at(&self, slot: usize, g: usize) -> (usize, bool) {
        let (block, lane) = (slot / LANES, slot % LANES);
        let at = block * self.block_bytes() + g * GROUP_BYTES + lane % GROUP_BYTES;
        (at, lane >= GROUP_BYTES)
    }

    fn set_nibble(&mut self, slot: usize, g: usize, nibble: u8) {
        let (at, high) = self.nibble_at(slot, g);
        let b = &mut self.blocks[at];
        *b = if high {
            (*b & 0x0F) | (nibble << 4)
        } else {
            (*b & 0xF0) | nibble
        };
    }

    fn nibble(&self, slot: usize, g: usize) -> u8 {
        let (at, high) = self.nibble_at(slot, g);
        if high {
            self.blocks[at] >> 4
        } else {
            self.blocks[at] & 0x0F
        }
    }

    /// Moves the last slot into slot `s` and drops the last (a swap remove; `s` may be last).
    pub(super) fn swap_remove(&mut self, s: usize) {
        let last = self.factors.len() - 1;
        if s != last {
            for g in 0..self.groups {
                let n = self.nibble(last, g);
                self.set_nibble(s, g, n);
            }
        }
        self.factors.swap_remove(s);
        self.along.swap_remove(s);
        self.blocks
            .truncate(self.factors.len().div_ceil(LANES) * self.block_bytes());
        // A block's unused lanes hold whatever was there; they are never read as vectors.
    }

    /// `q` (of the set's dimension) prepared for [`Signs::estimate`].
    pub(super) fn query(&self, q: &[f32]) -> SignQuery {
        let (along, q) = split(q, &self.axis);
        let mut sums = vec![0f32; self.groups * 16];
        let mut base = 0f32;
        let mut widest = 0f32;
        for (g, table) in sums.chunks_exact_mut(16).enumerate() {
            let coord = |b: usize| q.get(4 * g + b).copied().unwrap_or(0.0);
            for (t, e) in table.iter_mut().enumerate() {
                *e = (0..4).filter(|b| t >> b & 1 == 1).map(coord).sum();
            }
            let least = table.iter().copied().fold(f32::INFINITY, f32::min);
            table.iter_mut().for_each(|e| *e -= least);
            base += least;
            widest = table.iter().copied().fold(widest, f32::max);
        }
        // Entries up to `top` keep a vector's total within 16 bits: groups * top <= 65,535.
        let top = (usize::from(u16::MAX) / self.groups.max(1)).min(255) as f32;
        let step = if widest > 0.0 { widest / top } else { 1.0 };
        let tables = sums
            .iter()
            .map(|e| (e / step).round().min(top) as u8)
            .collect();
        SignQuery {
            tables,
            step,
            base,
            sum: q.iter().sum(),
            // r is across the axis, so q · c = (q · u)(u · c).
            centre: along * dot_f32(&self.axis, &self.centre),
            along,
        }
    }

    /// The estimated `q · x` of every vector in `slots`, appended to `out`; `slots` starts at a
    /// multiple of [`LANES`].
    pub(super) fn estimate(&self, q: &SignQuery, slots: Range<usize>, out: &mut Vec<f32>) {
        debug_assert!(slots.start.is_multiple_of(LANES));
        let bb = self.block_bytes();
        let mut sums = [0u16; LANES];
        for start in slots.clone().step_by(LANES) {
            let block = &self.blocks[start / LANES * bb..][..bb];
            lookup_block(block, &q.tables, &mut sums);
            let n = (slots.end - start).min(LANES);
            out.extend(
                sums[..n]
                    .iter()
                    .zip(&self.factors[start..start + n])
                    .zip(&self.along[start..start + n])
                    .map(|((s, f), a)| {
                        let positive = q.base + f32::from(*s) * q.step;
                        q.centre + q.along * a + (2.0 * positive - q.sum) * f
                    }),
            );
        }
    }
}

/// `v` split along unit (or zero) vector `axis` and across it: `(v · axis, v − (v · axis) axis)`.
fn split(v: &[f32], axis: &[f32]) -> (f32, Vec<f32>) {
    let along = dot_f32(v, axis);
    (
        along,
        v.iter().zip(axis).map(|(x, u)| x - along * u).collect(),
    )
}

/// The 16-bit table sums of the 32 vectors of `block`: with AVX2 when the CPU has it (checked
/// once), else a nibble at a time.
fn lookup_block(block: &[u8], tables: &[u8], sums: &mut [u16; LANES]) {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX2.get_or_init(|| std::arch::is_x86_feature_detected!("avx2")) {
            // SAFETY: the CPU was just found to support AVX2, the one feature the function
            // is compiled for.
            return unsafe { lookup_block_avx2(block, tables, sums) };
        }
    }
    lookup_block_scalar(block, tables, sums);
}

fn lookup_block_scalar(block: &[u8], tables: &[u8], sums: &mut [u16; LANES]) {
    sums.fill(0);
    for (group, table) in block.chunks_exact(GROUP_BYTES).zip(tables.chunks_exact(16)) {
        for (k, b) in group.iter().enumerate() {
            sums[k] += u16::from(table[usize::from(b & 0x0F)]);
            sums[k + GROUP_BYTES] += u16::from(table[usize::from(b >> 4)]);
        }
    }
}

/// [`lookup_block_scalar`] with AVX2: two groups per 256-bit register (one per 128-bit lane,
/// as `shuffle_epi8` looks up within lanes), each nibble half looked up in its group's table,
/// widened to 16 bits and added; the two lanes are summed at the end.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lookup_block_avx2(block: &[u8], tables: &[u8], sums: &mut [u16; LANES]) {
    use std::arch::x86_64::*;
    let low = _mm256_set1_epi8(0x0F);
    let zero = _mm256_setzero_si256();
    let mut acc = [_mm256_setzero_si256(); 4];
    // SAFETY (every load): `block` and `tables` hold an even number of groups, 16 bytes each,
    // so each pair is 32 bytes in bounds; the loads are unaligned.
    for (pair, table) in block.chunks_exact(32).zip(tables.chunks_exact(32)) {
        let c = unsafe { _mm256_loadu_si256(pair.as_ptr().cast()) };
        let t = unsafe { _mm256_loadu_si256(table.as_ptr().cast()) };
        let lo = _mm256_shuffle_epi8(t, _mm256_and_si256(c, low));
        let hi = _mm256_shuffle_epi8(t, _mm256_and_si256(_mm256_srli_epi16(c, 4), low));
        acc[0] = _mm256_add_epi16(acc[0], _mm256_unpacklo_epi8(lo, zero));
        acc[1] = _mm256_add_epi16(acc[1], _mm256_unpackhi_epi8(lo, zero));
        acc[2] = _mm256_add_epi16(acc[2], _mm256_unpacklo_epi8(hi, zero));
        acc[3] = _mm256_add_epi16(acc[3], _mm256_unpackhi_epi8(hi, zero));
    }
    // acc[i] holds vectors 8i..8i+8 in both lanes (one group each).
    for (i, a) in acc.iter().enumerate() {
        let both = _mm_add_epi16(_mm256_castsi256_si128(*a), _mm256_extracti128_si256(*a, 1));
        let mut out = [0u16; 8];
        // SAFETY: `out` is 16 bytes; the store is unaligned.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), both) };
        sums[8 * i..8 * i + 8].copy_from_slice(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lookup_is_the_same_in_every_kernel_and_the_estimate_tracks_the_product() {
        // 70 coordinates: 18 groups, the last one padded.
        let dim = 70;
        let vs = super::super::tests::unit_vectors(100, dim, 3);
        let mut signs = Signs::new(dim);
        for v in &vs {
            signs.push(v);
        }
        let q = signs.query(&vs[7]);
        for block in 0..vs.len().div_ceil(LANES) {
            let bytes = &signs.blocks[block * signs.block_bytes()..][..signs.block_bytes()];
            let (mut a, mut b) = ([0u16; LANES], [0u16; LANES]);
            lookup_block(bytes, &q.tables, &mut a);
            lookup_block_scalar(bytes, &q.tables, &mut b);
            assert_eq!(a, b);
        }
        let mut est = Vec::new();
        signs.estimate(&q, 0..vs.len(), &mut est);
        assert_eq!(est.len(), vs.len());
        // The vector itself is estimated near 1 and above every other.
        assert!((est[7] - 1.0).abs() < 0.1, "{}", est[7]);
        assert!(est.iter().enumerate().all(|(i, e)| i == 7 || *e < est[7]));
        // Centred on the set's mean, the estimates still track the product.
        let mut flat = Vec::new();
        vs.iter().for_each(|v| flat.extend_from_slice(v));
        let mut centred = Signs::new(dim);
        centred.recentre(&flat);
        assert_eq!(centred.centred_at(), vs.len());
        let mut est_centred = Vec::new();
        centred.estimate(&centred.query(&vs[7]), 0..vs.len(), &mut est_centred);
        assert!((est_centred[7] - 1.0).abs() < 0.1, "{}", est_centred[7]);
        assert!(
            est_centred
                .iter()
                .enumerate()
                .all(|(i, e)| i == 7 || *e < est_centred[7])
        );
        // A swap remove moves the last vector's codes into the hole.
        let last_before = est[99];
        signs.swap_remove(7);
        est.clear();
        signs.estimate(&q, 0..99, &mut est);
        assert_eq!(est.len(), 99);
        assert_eq!(est[7], last_before);
    }
}
