//! Text analysis for BM25: how a chunk's text becomes index terms and a query becomes the
//! terms it looks for. Both go through one analyzer per collection language: the text in
//! Unicode NFC (a decomposed `é`, as macOS writes file names and some editors write text,
//! would otherwise end its word at the accent), tokens as in [`crate::tokens`] (runs of
//! letters and digits) except in Chinese, Japanese and Korean script, tokens longer than
//! [`MAX_TERM_BYTES`] dropped, lowercased, stop words dropped, Snowball-stemmed. `none` only
//! lowercases.
//!
//! Chinese and Japanese put no spaces between words, so a run of letters there is a clause or
//! a sentence: one term that no query matches. Such runs (Han, kana, Hangul) are cut into
//! overlapping pairs of characters instead, as Lucene's CJK analyzer does: `東京都` is `東京`
//! and `京都`, and a query for `東京` finds it. The index also keeps each character alone
//! (`東`, `京`, `都`), so that a query of one character, a run of one, finds a word of one
//! character inside a sentence (`猫` in `我有一只猫`); queries of two or more characters ask
//! for their pairs only.
//!
//! English drops the NLTK stop words (below; the reference BM25 of `../shared/data` drops a
//! list of this size); the other languages drop Snowball's lists where tantivy has one.

use std::iter::Peekable;
use std::str::CharIndices;

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, StopWordFilter, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// The tokenizer name a collection's index registers its analyzer under.
pub const ANALYZER: &str = "ragsync";

/// Which analysis an index was built with, recorded beside it: an index built by another is
/// rebuilt. 1: text in NFC before it is cut into tokens (0, before it, cut it as it came).
/// 2: runs of Chinese, Japanese and Korean characters cut into pairs. 3: those characters
/// indexed alone too; terms up to [`MAX_TERM_BYTES`] (40 before).
pub const ANALYSIS_VERSION: u32 = 3;

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

/// Whether `c` is written without spaces between words: Han ideographs, kana and Hangul (the
/// scripts Lucene's CJK bigrams cover).
fn is_cjk(c: char) -> bool {
    let c = c as u32;
    c >= 0x1100
        && matches!(c,
            0x1100..=0x11FF // Hangul Jamo
            | 0x3005..=0x3007 // 々 〆 〇
            | 0x3040..=0x30FF // Hiragana, Katakana
            | 0x3130..=0x318F // Hangul compatibility Jamo
            | 0x31F0..=0x31FF // Katakana phonetic extensions
            | 0x3400..=0x4DBF // CJK extension A
            | 0x4E00..=0x9FFF // CJK unified ideographs
            | 0xA960..=0xA97F // Hangul Jamo extended A
            | 0xAC00..=0xD7FF // Hangul syllables, Jamo extended B
            | 0xF900..=0xFAFF // CJK compatibility ideographs
            | 0xFF66..=0xFF9F // halfwidth Katakana
            | 0x20000..=0x3134F // CJK extensions B to H, compatibility supplement
        )
}

/// Tokens of text in NFC (see the module docs): runs of letters and digits, each run of CJK
/// characters cut into overlapping pairs; with `unigrams` (the index's side), each of those
/// characters alone too, so a query of one character finds it inside a run.
#[derive(Clone, Default)]
struct WordTokenizer {
    token: Token,
    unigrams: bool,
}

struct WordTokenStream<'a> {
    text: &'a str,
    /// ASCII text is cut byte by byte, from here (most text is, and it holds no CJK).
    ascii: Option<usize>,
    chars: Peekable<CharIndices<'a>>,
    /// Inside a run of CJK characters: where the last pair's second character starts, the
    /// first of the next pair.
    pair_from: Option<usize>,
    unigrams: bool,
    /// With `unigrams`: the character, taken, whose own token comes next.
    unigram_due: Option<usize>,
    token: &'a mut Token,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordTokenStream<'a> {
        self.token.reset();
        WordTokenStream {
            text,
            ascii: text.is_ascii().then_some(0),
            chars: text.char_indices().peekable(),
            pair_from: None,
            unigrams: self.unigrams,
            unigram_due: None,
            token: &mut self.token,
        }
    }
}

impl WordTokenStream<'_> {
    fn emit(&mut self, from: usize, to: usize) -> bool {
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.text.push_str(&self.text[from..to]);
        true
    }

    /// The next character when it is CJK, taken.
    fn next_cjk(&mut self) -> Option<(usize, char)> {
        self.chars.next_if(|(_, c)| is_cjk(*c))
    }
}

impl TokenStream for WordTokenStream<'_> {
    fn advance(&mut self) -> bool {
        self.token.text.clear();
        self.token.position = self.token.position.wrapping_add(1);
        if let Some(pos) = self.ascii {
            let bytes = self.text.as_bytes();
            let Some(from) = (pos..bytes.len()).find(|&i| bytes[i].is_ascii_alphanumeric()) else {
                self.ascii = Some(bytes.len());
                return false;
            };
            let to = (from..bytes.len())
                .find(|&i| !bytes[i].is_ascii_alphanumeric())
                .unwrap_or(bytes.len());
            self.ascii = Some(to);
            return self.emit(from, to);
        }
        if let Some(at) = self.unigram_due.take() {
            let len = self.text[at..].chars().next().map_or(0, char::len_utf8);
            self.pair_from = Some(at);
            return self.emit(at, at + len);
        }
        if let Some(from) = self.pair_from.take()
            && let Some((at, c)) = self.next_cjk()
        {
            match self.unigrams {
                true => self.unigram_due = Some(at),
                false => self.pair_from = Some(at),
            }
            return self.emit(from, at + c.len_utf8());
        }
        while let Some((from, c)) = self.chars.next() {
            if !c.is_alphanumeric() {
                continue;
            }
            if is_cjk(c) && self.unigrams {
                self.pair_from = Some(from);
                return self.emit(from, from + c.len_utf8());
            }
            if is_cjk(c) {
                return match self.next_cjk() {
                    Some((at, next)) => {
                        self.pair_from = Some(at);
                        self.emit(from, at + next.len_utf8())
                    }
                    None => self.emit(from, from + c.len_utf8()),
                };
            }
            let mut to = self.text.len();
            while let Some(&(at, next)) = self.chars.peek() {
                if !next.is_alphanumeric() || is_cjk(next) {
                    to = at;
                    break;
                }
                self.chars.next();
            }
            return self.emit(from, to);
        }
        false
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// [`WordTokenizer`] over the text in NFC: text already in NFC (all ASCII text is) is cut
/// as it is, other text is composed into a buffer first.
#[derive(Clone, Default)]
struct NfcTokenizer {
    inner: WordTokenizer,
    composed: String,
}

impl Tokenizer for NfcTokenizer {
    type TokenStream<'a> = WordTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordTokenStream<'a> {
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

/// Longest term kept, in bytes: a SHA-256 in hex (64) or a long German compound is a term;
/// longer runs (encoded binary, run-together text) are dropped.
pub const MAX_TERM_BYTES: usize = 128;

/// The analyzer that indexes text for `language` (a `search.language` setting): the query
/// analyzer's terms, and each CJK character of a run alone too (see [`WordTokenizer`]).
pub fn index_analyzer(language_name: &str) -> TextAnalyzer {
    build(language_name, true, true)
}

/// The analyzer for `language` (a `search.language` setting), with or without its stop words.
pub fn analyzer(language_name: &str, with_stop_words: bool) -> TextAnalyzer {
    build(language_name, with_stop_words, false)
}

fn build(language_name: &str, with_stop_words: bool, unigrams: bool) -> TextAnalyzer {
    let tokenizer = NfcTokenizer {
        inner: WordTokenizer {
            unigrams,
            ..WordTokenizer::default()
        },
        composed: String::new(),
    };
    let base = TextAnalyzer::builder(tokenizer)
        .filter(RemoveLongFilter::limit(MAX_TERM_BYTES + 1))
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

    /// Every token of `text`: its text, position and byte offsets.
    fn tokens_of(a: &mut TextAnalyzer, text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut stream = a.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            let t = stream.token();
            out.push((t.text.clone(), t.position, t.offset_from, t.offset_to));
        }
        out
    }

    #[test]
    fn chinese_japanese_and_korean_runs_are_cut_into_pairs() {
        assert_eq!(query_terms("none", "東京都"), ["東京", "京都"]);
        assert_eq!(query_terms("english", "猫"), ["猫"]);
        // Punctuation ends a run; a Latin word beside a run is a word of its own.
        assert_eq!(
            query_terms("english", "iPhone手机，很好。Apps"),
            ["iphon", "手机", "很好", "app"]
        );
        assert_eq!(
            query_terms("none", "コンピュータ"),
            ["コン", "ンピ", "ピュ", "ュー", "ータ"]
        );
        assert_eq!(query_terms("none", "한국어 검색"), ["한국", "국어", "검색"]);
        // Positions and offsets of the pairs: one position each, byte ranges of the text.
        assert_eq!(
            tokens_of(&mut analyzer("none", true), "a 東京都"),
            [
                ("a".to_string(), 0, 0, 1),
                ("東京".to_string(), 1, 2, 8),
                ("京都".to_string(), 2, 5, 11)
            ]
        );
        // The index keeps each character of a run alone too; a query of one finds it.
        let terms: Vec<String> = tokens_of(&mut index_analyzer("none"), "我有猫。東京")
            .into_iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(
            terms,
            ["我", "我有", "有", "有猫", "猫", "東", "東京", "京"]
        );
        assert_eq!(query_terms("none", "猫"), ["猫"]);
        // ASCII text is cut byte by byte, with the same tokens, positions and offsets.
        assert_eq!(
            tokens_of(&mut analyzer("none", true), "--ab, c9 "),
            [("ab".to_string(), 0, 2, 4), ("c9".to_string(), 1, 6, 8)]
        );
        // Other scripts are cut as before.
        assert_eq!(
            query_terms("none", "Naïve café, 3.14 x2!"),
            ["naïve", "café", "3", "14", "x2"]
        );
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
