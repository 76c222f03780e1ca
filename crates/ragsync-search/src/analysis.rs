//! Text analysis for BM25: how a chunk's text becomes index terms and a query becomes the
//! terms it looks for. Both go through one analyzer per collection language: the text in
//! Unicode NFC (a decomposed `é`, as macOS writes file names and some editors write text,
//! would otherwise end its word at the accent), tokens as in [`crate::tokens`] (runs of
//! letters and digits), tokens longer than 40 bytes dropped, lowercased, stop words
//! dropped, Snowball-stemmed. `none` only lowercases.
//!
//! English drops the NLTK stop words (below; the reference BM25 of `../shared/data` drops a
//! list of this size); the other languages drop Snowball's lists where tantivy has one.

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenStream, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, TokenStream, Tokenizer,
};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// The tokenizer name a collection's index registers its analyzer under.
pub const ANALYZER: &str = "ragsync";

/// Which analysis an index was built with, recorded beside it: an index built by another is
/// rebuilt. 1: text in NFC before it is cut into tokens (0, before it, cut it as it came).
pub const ANALYSIS_VERSION: u32 = 1;

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
/// The tantivy language of a `search.language` setting; `None` for `none` (and for a name no
/// build knows, which the settings refuse).
fn language(name: &str) -> Option<Language> {
    Some(match name {
        "arabic" => Language::Arabic,
        "danish" => Language::Danish,
        "dutch" => Language::Dutch,
        "english" => Language::English,
        "finnish" => Language::Finnish,
        "french" => Language::French,
        "german" => Language::German,
        "greek" => Language::Greek,
        "hungarian" => Language::Hungarian,
        "italian" => Language::Italian,
        "norwegian" => Language::Norwegian,
        "portuguese" => Language::Portuguese,
        "romanian" => Language::Romanian,
        "russian" => Language::Russian,
        "spanish" => Language::Spanish,
        "swedish" => Language::Swedish,
        "tamil" => Language::Tamil,
        "turkish" => Language::Turkish,
        _ => return None,
    })
}

fn stop_words(lang: Language) -> Option<StopWordFilter> {
    match lang {
        Language::English => Some(StopWordFilter::remove(
            ENGLISH_STOP_WORDS.iter().map(|w| w.to_string()),
        )),
        other => StopWordFilter::new(other),
    }
}

/// [`SimpleTokenizer`] over the text in NFC: text already in NFC (all ASCII text is) is cut
/// as it is, other text is composed into a buffer first.
#[derive(Clone, Default)]
struct NfcTokenizer {
    inner: SimpleTokenizer,
    composed: String,
}

impl Tokenizer for NfcTokenizer {
    type TokenStream<'a> = SimpleTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> SimpleTokenStream<'a> {
        if text.is_ascii() || is_nfc_quick(text.chars()) == IsNormalized::Yes {
            return self.inner.token_stream(text);
        }
        let Self { inner, composed } = self;
        composed.clear();
        composed.extend(text.nfc());
        let composed: &'a String = composed;
        inner.token_stream(composed)
    }
}

/// The analyzer for `language` (a `search.language` setting), with or without its stop words.
pub fn analyzer(language_name: &str, with_stop_words: bool) -> TextAnalyzer {
    let base = TextAnalyzer::builder(NfcTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser);
    let Some(lang) = language(language_name) else {
        return base.build();
    };
    match stop_words(lang).filter(|_| with_stop_words) {
        Some(stop) => base.filter(stop).filter(Stemmer::new(lang)).build(),
        None => base.filter(Stemmer::new(lang)).build(),
    }
}

/// The distinct terms `text` looks for, in first-seen order. A query of nothing but stop words
/// keeps them (stemmed): "the who" still asks for something. Empty when it has no token.
pub fn query_terms(language_name: &str, text: &str) -> Vec<String> {
    let mut terms = terms_of(&mut analyzer(language_name, true), text);
    if terms.is_empty() {
        terms = terms_of(&mut analyzer(language_name, false), text);
    }
    terms
}

fn terms_of(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        let t = &stream.token().text;
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_word_list_is_sorted_and_known() {
        assert!(ENGLISH_STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        for name in ragsync_core::settings::SEARCH_LANGUAGES {
            assert!(language(name).is_some(), "{name}");
        }
    }

    #[test]
    fn queries_are_stemmed_without_stop_words() {
        assert_eq!(
            query_terms("english", "What are the running Dogs of SQLite? dog"),
            ["run", "dog", "sqlite"]
        );
        // Nothing but stop words: they are kept.
        assert_eq!(query_terms("english", "The Who"), ["the", "who"]);
        assert!(query_terms("english", " ?! ").is_empty());
        // Query syntax is only text.
        assert_eq!(query_terms("english", "a AND (b OR \"c\")"), ["b", "c"]);
        assert_eq!(query_terms("none", "The Running"), ["the", "running"]);
        assert_eq!(query_terms("french", "les chevaux"), ["cheval"]);
    }

    #[test]
    fn decomposed_and_composed_text_give_the_same_terms() {
        let composed = "Le café, santé Ångström";
        let decomposed = "Le cafe\u{301}, sante\u{301} A\u{30a}ngstro\u{308}m";
        assert_ne!(composed, decomposed);
        for language in ["french", "none"] {
            let terms = query_terms(language, decomposed);
            assert_eq!(terms, query_terms(language, composed), "{language}");
            assert_eq!(
                terms.len(),
                if language == "none" { 4 } else { 3 },
                "{terms:?}"
            );
        }
    }
}
