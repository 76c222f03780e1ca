//! BM25 queries. The index (SQLite FTS5, `porter unicode61` for English) stems terms as it
//! stores them; a query is tokenised the same way, its English stop words dropped (a query of
//! nothing but stop words keeps them), and its remaining terms joined with `OR`, each quoted,
//! so no query text is ever read as FTS5 syntax.

use crate::tokens::tokens;

/// English stop words: function words that carry no topic (the NLTK list, without the
/// contractions' fragments).
pub const ENGLISH_STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// Whether `word` (lowercase) is an English stop word.
pub fn is_stop_word(word: &str) -> bool {
    ENGLISH_STOP_WORDS.binary_search(&word).is_ok()
}

/// The FTS5 match expression for `query`, `None` when it has no token. With `stop_words`,
/// English stop words are dropped unless nothing else is left.
pub fn match_expression(query: &str, stop_words: bool) -> Option<String> {
    let all = tokens(query);
    let mut kept: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|t| !(stop_words && is_stop_word(t)))
        .collect();
    if kept.is_empty() {
        kept = all.iter().map(String::as_str).collect();
    }
    kept.sort_unstable();
    kept.dedup();
    if kept.is_empty() {
        return None;
    }
    let quoted: Vec<String> = kept.iter().map(|t| format!("\"{t}\"")).collect();
    Some(quoted.join(" OR "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_word_list_is_sorted_for_lookup() {
        assert!(ENGLISH_STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_stop_word("the") && !is_stop_word("sqlite"));
    }

    #[test]
    fn queries_become_quoted_terms_without_stop_words() {
        assert_eq!(
            match_expression("What is the WAL of SQLite? wal", true).as_deref(),
            Some("\"sqlite\" OR \"wal\"")
        );
        assert_eq!(
            match_expression("the who", true).as_deref(),
            Some("\"the\" OR \"who\"")
        );
        assert_eq!(
            match_expression("the who", false).as_deref(),
            Some("\"the\" OR \"who\"")
        );
        assert_eq!(match_expression(" ?! ", true), None);
        // FTS5 syntax in a query is only text.
        assert_eq!(
            match_expression("a NEAR(b) \"c\" d*", true).as_deref(),
            Some("\"b\" OR \"c\" OR \"d\" OR \"near\"")
        );
    }
}
