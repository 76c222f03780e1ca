//! Validated names. A [`CollectionName`] is `[a-z0-9][a-z0-9_-]{0,63}`. A [`DocId`] is any
//! non-empty UTF-8 string up to [`MAX_DOC_ID_BYTES`] bytes with no control characters, no
//! backslash, no leading `/` and no empty, `.` or `..` segment between slashes: ids may look
//! like relative paths (`guides/intro.md`), but none can ever name a place outside where it is
//! put, so no layer has to trust the others to keep ids away from the file system.
//!
//! Ids are also made unambiguous to the eye and across systems:
//! - they are normalised to Unicode NFC, so `café` typed with a combining accent (as macOS
//!   file names store it, NFD) and with `é` name one document, on every node;
//! - invisible format characters (Unicode category Cf: zero-width space U+200B, byte-order
//!   mark U+FEFF, bidirectional controls such as U+202E that make an id read backwards) and
//!   line or paragraph separators are refused. The zero-width joiner and non-joiner
//!   (U+200D, U+200C) and the emoji tag characters (U+E0020 to U+E007F) stay allowed: emoji
//!   sequences and several scripts need them.

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::CoreError;

/// Longest collection name, in bytes.
pub const MAX_COLLECTION_NAME_BYTES: usize = 64;
/// Longest document id, in bytes.
pub const MAX_DOC_ID_BYTES: usize = 512;

fn invalid(what: &'static str, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidName {
        what,
        reason: reason.into(),
    }
}

/// A validated collection name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CollectionName(String);

impl CollectionName {
    pub fn new(name: impl Into<String>) -> Result<Self, CoreError> {
        let name = name.into();
        const WHAT: &str = "collection name";
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > MAX_COLLECTION_NAME_BYTES {
            return Err(invalid(WHAT, "must be 1 to 64 characters"));
        }
        if !(bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit()) {
            return Err(invalid(WHAT, "must start with a-z or 0-9"));
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
        {
            return Err(invalid(WHAT, "only a-z, 0-9, '_' and '-' are allowed"));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated document id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DocId(String);

/// True for characters an id may not hold because they do not show: control and format
/// characters (but the joiners) and line or paragraph separators.
fn is_invisible(c: char) -> bool {
    // The joiners, and the tag characters of emoji tag sequences (subdivision flags).
    if matches!(c, '\u{200C}' | '\u{200D}' | '\u{E0020}'..='\u{E007F}') {
        return false;
    }
    c.is_control()
        || matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
}

impl DocId {
    /// Validates `id` and normalises it to NFC (see the module docs).
    pub fn new(id: impl Into<String>) -> Result<Self, CoreError> {
        let id = id.into();
        let id = if unicode_normalization::is_nfc_quick(id.chars())
            == unicode_normalization::IsNormalized::Yes
        {
            id
        } else {
            id.nfc().collect()
        };
        const WHAT: &str = "document id";
        if id.is_empty() || id.len() > MAX_DOC_ID_BYTES {
            return Err(invalid(WHAT, "must be 1 to 512 bytes"));
        }
        if let Some(c) = id.chars().find(|c| is_invisible(*c)) {
            return Err(invalid(
                WHAT,
                format!("invisible character U+{:04X} is not allowed", c as u32),
            ));
        }
        if id.contains('\\') {
            return Err(invalid(WHAT, "'\\' is not allowed"));
        }
        if id.starts_with('/') {
            return Err(invalid(WHAT, "must not start with '/'"));
        }
        if id
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(invalid(
                WHAT,
                "segments between '/' must not be empty, '.' or '..'",
            ));
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id read back from this node's own store, taken as it was stored: it was checked
    /// when it was written, perhaps under the rules of an earlier build (which allowed
    /// invisible characters), and must stay readable, listable and deletable. Never use it on
    /// input from a client or a peer.
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    /// True when `id` is in Unicode NFC, as every id made by [`DocId::new`] is.
    pub fn is_nfc(id: &str) -> bool {
        unicode_normalization::is_nfc(id)
    }
}

macro_rules! string_newtype_impls {
    ($name:ident) => {
        impl TryFrom<String> for $name {
            type Error = CoreError;
            fn try_from(s: String) -> Result<Self, CoreError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
string_newtype_impls!(CollectionName);
string_newtype_impls!(DocId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names() {
        for ok in ["a", "0", "docs", "my_docs-2", &"a".repeat(64)] {
            assert!(CollectionName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "_a",
            "-a",
            "A",
            "a b",
            "a/b",
            "..",
            "é",
            &"a".repeat(65),
        ] {
            assert!(CollectionName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn doc_ids() {
        for ok in ["a", "guides/intro.md", "x..y", ".hidden", "日本語", "a b"] {
            assert!(DocId::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "a/../b",
            "a/./b",
            "a//b",
            "/abs",
            "a/",
            "..",
            ".",
            "nul\0byte",
            "tab\there",
            "back\\slash",
            &"a".repeat(513),
            "zero\u{200B}width",
            "\u{FEFF}bom",
            "evil\u{202E}txt.exe",
            "line\u{2028}sep",
            "soft\u{AD}hyphen",
        ] {
            assert!(DocId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn doc_ids_are_nfc() {
        let nfd = "cafe\u{301}/n\u{303}o";
        let id = DocId::new(nfd).unwrap();
        assert_eq!(id.as_str(), "caf\u{e9}/\u{f1}o");
        assert_eq!(id, DocId::new("caf\u{e9}/\u{f1}o").unwrap());
        // Emoji sequences keep their joiners.
        assert!(DocId::new("family \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}").is_ok());
        // Scotland's flag: a black flag and tag characters.
        let scotland = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}";
        assert!(DocId::new(scotland).is_ok());
    }
}
