//! Chunking by a collection's settings (`chunking.max_tokens`, `min_tokens`,
//! `overlap_tokens`; the settings refuse an overlap that is not below the maximum).
//!
//! Chunks are windows of `max_tokens` tokens (see [`crate::tokens`]), each starting
//! `max_tokens - overlap_tokens` tokens after the one before, so consecutive chunks share
//! `overlap_tokens` tokens. The last window stops at the end of the text. A tail that would
//! bring fewer than `min_tokens` new tokens joins the chunk before it instead of standing
//! alone, so that chunk may hold up to `max_tokens + min_tokens - 1` tokens. A text with no
//! token has no chunk. Each chunk is named by the BLAKE3 hash of its text (a content id): the
//! same text has the same id on every node.

use ragsync_core::ContentId;
use ragsync_core::settings::Chunking;

use crate::tokens::token_spans;

/// One chunk of a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Position among the text's chunks, from 0.
    pub ord: u32,
    /// Byte offsets of the chunk in the text.
    pub start: usize,
    pub end: usize,
    /// Tokens it holds.
    pub tokens: u32,
    /// BLAKE3 of the chunk's text.
    pub id: ContentId,
}

/// The chunks of `text` under `settings`.
pub fn chunk(text: &str, settings: &Chunking) -> Vec<Chunk> {
    let spans = token_spans(text);
    let n = spans.len();
    let max = settings.max_tokens.max(1) as usize;
    let stride = max.saturating_sub(settings.overlap_tokens as usize).max(1);
    let min = settings.min_tokens as usize;
    let mut out = Vec::new();
    let mut first = 0;
    while first < n {
        let mut last = (first + max).min(n);
        if last < n && n - last < min {
            // The tail is too short to stand alone.
            last = n;
        }
        let (start, end) = (spans[first].start, spans[last - 1].end);
        out.push(Chunk {
            ord: out.len() as u32,
            start,
            end,
            tokens: (last - first) as u32,
            id: ContentId::of(&text.as_bytes()[start..end]),
        });
        if last == n {
            break;
        }
        first += stride;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: u32, min: u32, overlap: u32) -> Chunking {
        Chunking {
            max_tokens: max,
            min_tokens: min,
            overlap_tokens: overlap,
        }
    }

    fn words(n: usize) -> String {
        (0..n)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// (first token, token count) of each chunk, read back from its text.
    fn shape(text: &str, chunks: &[Chunk]) -> Vec<(String, u32)> {
        chunks
            .iter()
            .map(|c| {
                let t = &text[c.start..c.end];
                assert_eq!(c.id, ContentId::of(t.as_bytes()));
                assert_eq!(token_spans(t).len() as u32, c.tokens);
                (t.split(' ').next().unwrap().to_string(), c.tokens)
            })
            .collect()
    }

    #[test]
    fn empty_text_and_text_without_tokens_have_no_chunk() {
        assert!(chunk("", &settings(4, 1, 1)).is_empty());
        assert!(chunk(" .,; !", &settings(4, 1, 1)).is_empty());
    }

    #[test]
    fn one_token_is_one_chunk_without_the_punctuation_around_it() {
        let c = chunk("  (hello)  ", &settings(4, 2, 1));
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].start, c[0].end, c[0].tokens), (3, 8, 1));
    }

    #[test]
    fn exact_multiples_make_full_chunks_only() {
        let t = words(12);
        let c = chunk(&t, &settings(4, 0, 0));
        assert_eq!(
            shape(&t, &c),
            [("w0".into(), 4), ("w4".into(), 4), ("w8".into(), 4)]
        );
        // With an overlap of 1 the stride is 3: 0-3, 3-6, 6-9, 9-11 ends at the text's end.
        let t = words(10);
        let c = chunk(&t, &settings(4, 0, 1));
        let got = shape(&t, &c);
        assert_eq!(got, [("w0".into(), 4), ("w3".into(), 4), ("w6".into(), 4)]);
        assert_eq!(c.iter().map(|c| c.ord).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn consecutive_chunks_share_the_overlap() {
        let t = words(20);
        let c = chunk(&t, &settings(8, 0, 3));
        for pair in c.windows(2) {
            let (a, b) = (
                &t[pair[0].start..pair[0].end],
                &t[pair[1].start..pair[1].end],
            );
            let tail: Vec<&str> = a.split(' ').rev().take(3).collect();
            let head: Vec<&str> = b.split(' ').take(3).collect();
            assert_eq!(tail.into_iter().rev().collect::<Vec<_>>(), head);
        }
        assert_eq!(c.last().unwrap().end, t.len());
    }

    #[test]
    fn a_tail_shorter_than_min_tokens_joins_the_chunk_before() {
        let t = words(9);
        let c = chunk(&t, &settings(4, 2, 0));
        assert_eq!(shape(&t, &c), [("w0".into(), 4), ("w4".into(), 5)]);
        let c = chunk(&t, &settings(4, 1, 0));
        assert_eq!(
            shape(&t, &c),
            [("w0".into(), 4), ("w4".into(), 4), ("w8".into(), 1)]
        );
    }
}
