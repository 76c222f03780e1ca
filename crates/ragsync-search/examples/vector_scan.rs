//! Times [`VectorSet::search`] in process, without HTTP: `n` pseudo-random unit vectors of
//! 384 coordinates (the shape of `ragsync bench query`'s vector phase), 300 queries after 20
//! untimed, exact and approximate, and the approximate scan's recall@10 against the exact one.
//!
//! `cargo run --release -p ragsync-search --example vector_scan -- [n [SHARED] | FILE]`
//!
//! With SHARED (e.g. 0.5), every vector also leans along one common direction, by SHARED
//! times the length of its random part before normalising (mean cosine between two vectors
//! about SHARED² / (1 + SHARED²)), as real embeddings do.
//!
//! Given a FILE of little-endian f32 unit vectors of 384 coordinates (real embeddings, e.g.
//! the `vec` column of a node's `embeddings` table), its last 300 are the queries and the
//! rest the set, searched approximately however small it is.

use std::time::Instant;

use ragsync_core::{ContentId, DocId};
use ragsync_search::vectors::{ChunkRef, VectorSet};

const DIM: usize = 384;

/// xorshift64*: enough randomness for test vectors, no dependency.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A random unit vector, leaning along `shared` (added before normalising).
    fn unit(&mut self, shared: &[f32]) -> Vec<f32> {
        let v: Vec<f32> = shared
            .iter()
            .map(|s| self.next_f32() + self.next_f32() + self.next_f32() - 1.5 + s)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }
}

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "100000".into());
    let lean: f32 = std::env::args()
        .nth(2)
        .map_or(0.0, |s| s.parse().expect("SHARED is a number"));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // The random part's length: each coordinate has variance 1/4.
    let shared: Vec<f32> = rng
        .unit(&[0.0; DIM])
        .into_iter()
        .map(|x| x * lean * (DIM as f32 / 4.0).sqrt())
        .collect();
    let (vectors, queries): (Vec<Vec<f32>>, Vec<Vec<f32>>) = match arg.parse::<usize>() {
        Ok(n) => (
            (0..n).map(|_| rng.unit(&shared)).collect(),
            (0..320).map(|_| rng.unit(&shared)).collect(),
        ),
        Err(_) => {
            let bytes = std::fs::read(&arg).expect("a file of f32 vectors");
            let mut all: Vec<Vec<f32>> = bytes
                .chunks_exact(DIM * 4)
                .map(|v| {
                    v.chunks_exact(4)
                        .map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]]))
                        .collect()
                })
                .collect();
            assert!(all.len() > 320, "the file holds too few vectors");
            let queries = all.split_off(all.len() - 300);
            // The first 20 queries are not timed: repeat some.
            (all, queries[..20].iter().chain(&queries).cloned().collect())
        }
    };
    let n = vectors.len();
    let mut set = VectorSet::new(DIM);
    let cid = ContentId::of(b"");
    for (i, v) in vectors.into_iter().enumerate() {
        let doc = DocId::new(format!("d{i}")).expect("doc id");
        let r = ChunkRef {
            doc: doc.clone(),
            ord: 0,
            start: 0,
            end: 0,
            chunk: cid,
            content: cid,
        };
        set.set_doc(&doc, cid, vec![(r, v)], 0);
    }
    for approximate in [false, true] {
        // Timed alone, one query after the other, as a node answers them.
        let mut lat = Vec::new();
        let mut hits = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let t = Instant::now();
            let found = set.search_with(q, 10, approximate);
            let took = t.elapsed().as_secs_f64() * 1e3;
            if i >= 20 {
                lat.push(took);
                hits.push(found);
            }
        }
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
        let name = if approximate { "approximate" } else { "exact" };
        print!(
            "{name} n={n} p50 {:.3} ms p99 {:.3} ms",
            pct(0.5),
            pct(0.99)
        );
        if approximate {
            let mut found = 0;
            for (q, approx) in queries[20..].iter().zip(&hits) {
                let exact = set.search_with(q, 10, false);
                found += approx
                    .iter()
                    .filter(|h| exact.iter().any(|e| e.chunk.doc == h.chunk.doc))
                    .count();
            }
            print!(" recall@10 {:.4}", found as f64 / (hits.len() * 10) as f64);
        }
        println!();
    }
}
