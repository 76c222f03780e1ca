//! Tokenisation. A token is a maximal run of letters and digits (Unicode: `char::is_alphanumeric`),
//! so punctuation, spaces and symbols separate tokens and are never part of one. This is the
//! rule the BM25 analyzer applies to the same text, so a chunk of N tokens here is about N
//! terms there (before long tokens, stop words and stemming; see [`crate::analysis`]). Tokens
//! are byte ranges of the text: a chunk is the text between its first token's start and its
//! last token's end.
//!
//! Two exceptions, kept because changing this rule would change chunk ids, which must be the
//! same on every node:
//! - the analyzer first composes text into Unicode NFC, and this does not, so a decomposed
//!   letter (`e` + U+0301) ends a token here but not there. Chunks then count such a word as
//!   two or more tokens, and one may end inside it (that chunk indexes `cafe`; the next holds
//!   the whole word when chunks overlap);
//! - the analyzer cuts a run of Chinese, Japanese or Korean characters into pairs; here it is
//!   one token up to the next punctuation, so chunks of such text hold `max_tokens` clauses,
//!   not words.

use std::ops::Range;

/// The byte ranges of the tokens of `text`, in order.
pub fn token_spans(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..text.len());
    }
    out
}

/// The tokens of `text`, lowercased.
pub fn tokens(text: &str) -> Vec<String> {
    token_spans(text)
        .into_iter()
        .map(|r| text[r].to_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_letters_and_digits_are_tokens() {
        let t = "Naïve café, 3.14 — x2!";
        let spans = token_spans(t);
        let words: Vec<&str> = spans.iter().map(|r| &t[r.clone()]).collect();
        assert_eq!(words, ["Naïve", "café", "3", "14", "x2"]);
        assert_eq!(tokens("Hello WORLD"), ["hello", "world"]);
        assert!(token_spans("  ... !? ").is_empty());
        assert!(token_spans("").is_empty());
    }
}
