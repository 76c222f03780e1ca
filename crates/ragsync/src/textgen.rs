//! Deterministic pseudo-text for benchmarks: words of one to three syllables with some
//! punctuation, from a seeded mulberry32 generator. It is the same recipe the PouchDB peer
//! benchmark uses for its documents (`../shared/peers/pouchdb`), so both sides store text of
//! the same size and compressibility (about half its size gzipped).

const SYLLABLES: &[&str] = &[
    "ba", "be", "bi", "bo", "bu", "ca", "ce", "ci", "co", "cu", "da", "de", "di", "do", "du", "fa",
    "fe", "fi", "fo", "ga", "ge", "gi", "go", "ha", "he", "hi", "ho", "ja", "je", "jo", "ka", "ke",
    "ki", "ko", "la", "le", "li", "lo", "lu", "ma", "me", "mi", "mo", "mu", "na", "ne", "ni", "no",
    "nu", "pa", "pe", "pi", "po", "pu", "ra", "re", "ri", "ro", "ru", "sa", "se", "si", "so", "su",
    "ta", "te", "ti", "to", "tu", "va", "ve", "vi", "vo", "wa", "we", "wi", "za", "ze", "zo", "an",
    "en", "in", "on", "un", "ar", "er", "ir", "or", "ur", "al", "el", "il", "ol", "ul", "as", "es",
    "is", "os", "us", "at", "et", "it", "ot", "ut", "th", "sh", "ch", "st", "tr", "pl", "gr", "br",
];

/// The mulberry32 generator: 32 bits of state, floats in `[0, 1)`.
pub struct Mulberry32(u32);

impl Mulberry32 {
    pub fn new(seed: u32) -> Self {
        Self(seed)
    }

    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x6D2B_79F5);
        let mut t = self.0;
        t = (t ^ (t >> 15)).wrapping_mul(t | 1);
        t ^= t.wrapping_add((t ^ (t >> 7)).wrapping_mul(t | 61));
        f64::from(t ^ (t >> 14)) / 4_294_967_296.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize
    }
}

/// Which words pseudo-text is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Vocabulary {
    /// Every word of one to three syllables equally likely (the PouchDB bench's recipe): about
    /// 1.4 million distinct words, most seen a few times in 100 MB, a worst case for an
    /// inverted index.
    Uniform,
    /// Words drawn by Zipf's law (exponent 1.07, as measured for English) from a million
    /// words of the same syllables: a few words very common, most rare, as in real text.
    Zipf,
}

/// `len` bytes of pseudo-text of uniformly drawn words.
pub fn text(rng: &mut Mulberry32, len: usize) -> String {
    text_of(Vocabulary::Uniform, rng, len)
}

/// `len` bytes of pseudo-text of `vocabulary`.
pub fn text_of(vocabulary: Vocabulary, rng: &mut Mulberry32, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        if !out.is_empty() {
            out.push(' ');
        }
        match vocabulary {
            Vocabulary::Uniform => push_word(rng, &mut out),
            Vocabulary::Zipf => {
                let z = zipf();
                let u = rng.next_f64();
                let rank = z.cdf.partition_point(|&c| c < u).min(z.words.len() - 1);
                out.push_str(&z.words[rank]);
            }
        }
        let p = rng.next_f64();
        if p < 0.06 {
            out.push('.');
        } else if p < 0.1 {
            out.push(',');
        }
    }
    out.truncate(len);
    out
}

/// A word of one to three syllables.
fn push_word(rng: &mut Mulberry32, out: &mut String) {
    for _ in 0..1 + rng.below(3) {
        out.push_str(SYLLABLES[rng.below(SYLLABLES.len())]);
    }
}

/// The Zipf vocabulary: a million distinct words, by rank, and the cumulative probability of
/// each rank.
struct Zipf {
    words: Vec<String>,
    cdf: Vec<f64>,
}

fn zipf() -> &'static Zipf {
    static ZIPF: std::sync::OnceLock<Zipf> = std::sync::OnceLock::new();
    ZIPF.get_or_init(|| {
        const WORDS: usize = 1_000_000;
        let mut rng = Mulberry32::new(7);
        let mut seen = std::collections::HashSet::with_capacity(WORDS);
        let mut words = Vec::with_capacity(WORDS);
        while words.len() < WORDS {
            let mut w = String::new();
            push_word(&mut rng, &mut w);
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=WORDS)
            .map(|rank| {
                acc += (rank as f64).powf(-1.07);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { words, cdf }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_the_asked_length_and_is_deterministic() {
        let a = text(&mut Mulberry32::new(42), 1024);
        let b = text(&mut Mulberry32::new(42), 1024);
        assert_eq!(a.len(), 1024);
        assert_eq!(a, b);
        assert!(a.split(' ').count() > 100);
    }

    #[test]
    fn zipf_text_repeats_its_common_words_far_more_than_uniform_text() {
        /// Distinct words, and how often the commonest one occurs.
        fn counts(text: &str) -> (usize, usize) {
            let mut n = std::collections::HashMap::new();
            for w in text.split(|c: char| !c.is_alphanumeric()) {
                if !w.is_empty() {
                    *n.entry(w).or_insert(0usize) += 1;
                }
            }
            (n.len(), n.values().copied().max().unwrap_or(0))
        }
        let z = text_of(Vocabulary::Zipf, &mut Mulberry32::new(42), 64 * 1024);
        assert_eq!(z.len(), 64 * 1024);
        let u = text(&mut Mulberry32::new(42), 64 * 1024);
        let ((z_distinct, z_top), (u_distinct, u_top)) = (counts(&z), counts(&u));
        let seen =
            format!("zipf {z_distinct} words, top {z_top}; uniform {u_distinct}, top {u_top}");
        assert!(z_distinct < u_distinct * 2 / 3, "{seen}");
        assert!(z_top > u_top * 10, "{seen}");
    }
}
