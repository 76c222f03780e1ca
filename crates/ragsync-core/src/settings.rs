//! Collection settings. A collection's settings replicate as one last-writer-wins record by
//! stamp; they are never merged field by field (averaging `hybrid_alpha` across three nodes
//! would depend on merge order).

use serde::{Deserialize, Serialize};

use crate::{CollectionName, CoreError, Stamp};

/// A collection record: its settings, the stamp of the write that set them, and whether it was
/// deleted. Replicas keep the record with the greatest stamp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    pub name: CollectionName,
    #[serde(deserialize_with = "crate::object::object")]
    pub settings: CollectionSettings,
    pub stamp: Stamp,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectionSettings {
    #[serde(deserialize_with = "crate::object::object")]
    pub chunking: Chunking,
    #[serde(deserialize_with = "crate::object::object")]
    pub search: Search,
    #[serde(deserialize_with = "crate::object::object")]
    pub embedding: Embedding,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Chunking {
    pub max_tokens: u32,
    pub min_tokens: u32,
    pub overlap_tokens: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Search {
    pub top_k: u32,
    pub hybrid: bool,
    /// 0 = BM25 only, 1 = vector only.
    pub hybrid_alpha: f64,
    pub fusion: Fusion,
    /// How text is analysed for BM25: stop words and stemming of one of
    /// [`SEARCH_LANGUAGES`], or `none` (lowercased tokens only).
    pub language: String,
}

/// The languages BM25 can stem (Snowball) and drop stop words for, besides `none`.
pub const SEARCH_LANGUAGES: &[&str] = &[
    "arabic",
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "greek",
    "hungarian",
    "italian",
    "norwegian",
    "portuguese",
    "romanian",
    "russian",
    "spanish",
    "swedish",
    "tamil",
    "turkish",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    /// Scores normalised from a floor of 0 (each over its list's best) mixed with `hybrid_alpha`.
    Normalized,
    /// Reciprocal rank fusion with k = 60.
    Rrf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Embedding {
    /// Model id; `none` means BM25 only.
    pub model: String,
    pub dimension: u32,
}

impl Default for Chunking {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            min_tokens: 32,
            overlap_tokens: 32,
        }
    }
}

impl Default for Search {
    fn default() -> Self {
        Self {
            top_k: 10,
            hybrid: false,
            // Both by measurement on msmarco-5k with the built-in model (BENCHMARKS.md):
            // reciprocal rank fusion ranked best, and 0.6 is the best weight for the
            // normalised fusion a caller picks by giving `alpha`.
            hybrid_alpha: 0.6,
            fusion: Fusion::Rrf,
            language: "english".into(),
        }
    }
}

impl Default for Embedding {
    fn default() -> Self {
        Self {
            model: "none".into(),
            dimension: 0,
        }
    }
}

/// Upper bound of `chunking.max_tokens`.
pub const MAX_CHUNK_TOKENS: u32 = 8192;
/// Upper bound of `search.top_k`.
pub const MAX_TOP_K: u32 = 1000;
/// Upper bound of `embedding.dimension`.
pub const MAX_EMBEDDING_DIMENSION: u32 = 8192;

impl CollectionSettings {
    /// Checks the rules the settings must keep.
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |m: &str| Err(CoreError::InvalidSettings(m.into()));
        let c = &self.chunking;
        if c.max_tokens == 0 || c.max_tokens > MAX_CHUNK_TOKENS {
            return bad("chunking.max_tokens must be 1 to 8192");
        }
        if c.overlap_tokens >= c.max_tokens {
            return bad("chunking.overlap_tokens must be below max_tokens");
        }
        if c.min_tokens > c.max_tokens {
            return Err(CoreError::InvalidSettings(format!(
                "chunking.min_tokens ({} unless given) must not exceed max_tokens",
                Chunking::default().min_tokens
            )));
        }
        let s = &self.search;
        if s.top_k == 0 || s.top_k > MAX_TOP_K {
            return bad("search.top_k must be 1 to 1000");
        }
        if !(0.0..=1.0).contains(&s.hybrid_alpha) {
            return bad("search.hybrid_alpha must be within 0 and 1");
        }
        if s.language != "none" && !SEARCH_LANGUAGES.contains(&s.language.as_str()) {
            return bad(
                "search.language must be none or a language BM25 stems (english, french, ...)",
            );
        }
        let e = &self.embedding;
        if e.model.is_empty() || e.model.len() > 200 {
            return bad("embedding.model must be 1 to 200 bytes");
        }
        if (e.model == "none") != (e.dimension == 0) || e.dimension > MAX_EMBEDDING_DIMENSION {
            return bad("embedding.dimension must be 0 for model none, else 1 to 8192");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_refused() {
        assert!(CollectionSettings::default().validate().is_ok());
        let mut s = CollectionSettings::default();
        s.search.hybrid_alpha = 1.5;
        assert!(s.validate().is_err());
        let mut s = CollectionSettings::default();
        s.chunking.overlap_tokens = s.chunking.max_tokens;
        assert!(s.validate().is_err());
        let mut s = CollectionSettings::default();
        s.search.language = "klingon".into();
        assert!(s.validate().is_err());
        s.search.language = "none".into();
        assert!(s.validate().is_ok());
        let s: Result<CollectionSettings, _> =
            serde_json::from_str(r#"{"chunking": {"max_tokens": 100, "bogus": 1}}"#);
        assert!(s.is_err());
    }
}
