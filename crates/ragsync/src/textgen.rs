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

/// `len` bytes of pseudo-text.
pub fn text(rng: &mut Mulberry32, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        if !out.is_empty() {
            out.push(' ');
        }
        for _ in 0..1 + rng.below(3) {
            out.push_str(SYLLABLES[rng.below(SYLLABLES.len())]);
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
}
