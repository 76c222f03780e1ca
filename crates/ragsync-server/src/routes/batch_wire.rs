//! How a batch body `{"docs": [...]}` is read: its items parsed and checked, a large body's
//! on every core, each refusal the same whichever way the body was read.

use std::cell::Cell;

use ragsync_core::Limits;
use ragsync_store::DocOp;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::docs_wire::{BatchItem, SentVectors};
use crate::error::ApiError;
use crate::extract::{Object, parse_json_seed};

/// A batch body at least this large is parsed on several threads.
const PARALLEL_BODY_BYTES: usize = 256 << 10;

/// The writes of a batch body `{"docs": [...]}`, each item parsed and checked
/// ([`BatchItem::into_op`]). Refuses the body as soon as it holds more than `max_docs` items,
/// so that a body of many tiny items cannot make the node allocate for all of them; an
/// item's refusal names its index.
///
/// A large body is first cut into its items ([`split_items`]), which are then parsed and
/// checked on up to [`std::thread::available_parallelism`] threads (at most 4): parsing
/// numbers is most of the cost of a body of vectors, and the write after it runs on one
/// thread anyway. A body that does not split, or whose items do not all parse, is parsed
/// again in one pass, so every refusal reads the same either way.
pub(crate) fn parse_batch(bytes: &[u8], limits: &Limits) -> Result<Vec<ItemOp>, ApiError> {
    if bytes.len() >= PARALLEL_BODY_BYTES
        && let Some(done) = parse_in_parallel(bytes, limits)
    {
        return done;
    }
    parse_in_one_pass(bytes, limits)
}

/// A batch item's write and the vectors it carries.
pub(crate) type ItemOp = (DocOp, Option<SentVectors>);

/// [`parse_batch`] on the calling thread alone.
fn parse_in_one_pass(bytes: &[u8], limits: &Limits) -> Result<Vec<ItemOp>, ApiError> {
    parse_items(bytes, limits.max_batch_docs)?
        .into_iter()
        .enumerate()
        .map(|(i, item)| item_op(i, item, limits))
        .collect()
}

/// [`BatchItem::into_op`], a refusal naming item `i`.
fn item_op(i: usize, item: BatchItem, limits: &Limits) -> Result<ItemOp, ApiError> {
    item.into_op(limits).map_err(|mut e| {
        e.message = format!("docs[{i}]: {}", e.message);
        e.index = Some(i);
        e
    })
}

/// The parallel route of [`parse_batch`]: `None` when the body is not plainly
/// `{"docs": [...]}` or some item does not parse (the one pass, which parses every item
/// before it checks any, is left to say why), else the ops or the refusal of the first item
/// refused.
fn parse_in_parallel(bytes: &[u8], limits: &Limits) -> Option<Result<Vec<ItemOp>, ApiError>> {
    std::str::from_utf8(bytes).ok()?;
    let items = split_items(bytes, limits.max_batch_docs)?;
    crate::par::map(&items, |i, raw| {
        let Object(item) = serde_json::from_slice::<Object<BatchItem>>(raw).ok()?;
        Some(item_op(i, item, limits))
    })
    .into_iter()
    .collect::<Option<Vec<_>>>()
    .map(|ops| ops.into_iter().collect())
}

/// The text of each item of a body `{"docs": [item, ...]}` (no other key, no escapes in
/// `"docs"`), found by following only strings and brackets: far cheaper than a JSON parser's
/// pass, which checks every number on the way. Each item is parsed (so checked) after.
/// `None` for a body of any other shape, one cut short, or one of more than `max_docs`
/// items; a body this accepts is JSON exactly when each of its items is.
fn split_items(bytes: &[u8], max_docs: usize) -> Option<Vec<&[u8]>> {
    let skip_space = |at: &mut usize| {
        while bytes
            .get(*at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            *at += 1;
        }
    };
    let expect = |at: &mut usize, token: &[u8]| {
        skip_space(at);
        let end = *at + token.len();
        (bytes.get(*at..end) == Some(token)).then(|| *at = end)
    };
    let mut at = 0;
    expect(&mut at, b"{")?;
    expect(&mut at, b"\"docs\"")?;
    expect(&mut at, b":")?;
    expect(&mut at, b"[")?;
    let mut items = Vec::new();
    skip_space(&mut at);
    if bytes.get(at) == Some(&b']') {
        at += 1;
    } else {
        let (mut start, mut depth) = (at, 0usize);
        loop {
            // Most of a body of vectors is numbers and their commas: skip to the next byte
            // that matters (inside an item, commas do not).
            let stops = if depth == 0 { &BETWEEN_ITEMS } else { &IN_ITEM };
            at += bytes
                .get(at..)?
                .iter()
                .position(|b| stops[usize::from(*b)])?;
            match bytes[at] {
                b'"' => {
                    // To the closing quote, stepping over escaped characters.
                    at += 1;
                    loop {
                        at += memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
                        if bytes[at] == b'"' {
                            break;
                        }
                        at += 2;
                    }
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' if depth > 0 => depth -= 1,
                b',' if depth == 0 => {
                    items.push(&bytes[start..at]);
                    start = at + 1;
                }
                b']' if depth == 0 => {
                    items.push(&bytes[start..at]);
                    at += 1;
                    break;
                }
                b'}' => return None,
                _ => {}
            }
            if items.len() > max_docs {
                return None;
            }
            at += 1;
        }
    }
    expect(&mut at, b"}")?;
    skip_space(&mut at);
    (at == bytes.len() && items.len() <= max_docs).then_some(items)
}

/// The bytes [`split_items`] stops at between items, and inside one.
static BETWEEN_ITEMS: [bool; 256] = byte_set(b"\"[]{},");
static IN_ITEM: [bool; 256] = byte_set(b"\"[]{}");

const fn byte_set(bytes: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        set[bytes[i] as usize] = true;
        i += 1;
    }
    set
}

/// The items of `{"docs": [...]}`, refused past `max_docs` of them.
fn parse_items(bytes: &[u8], max_docs: usize) -> Result<Vec<BatchItem>, ApiError> {
    let too_many = Cell::new(false);
    let docs = DocsSeed {
        max_docs,
        too_many: &too_many,
    };
    parse_json_seed(bytes, BatchSeed(docs)).map_err(|e| {
        if too_many.get() {
            ApiError::too_large(
                "batch_too_large",
                format!("more documents than max_batch_docs ({max_docs})"),
            )
        } else {
            e
        }
    })
}

/// The whole body: an object whose one field, `docs`, is read by [`DocsSeed`].
struct BatchSeed<'a>(DocsSeed<'a>);

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<BatchItem>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<BatchItem>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"an object {"docs": [...]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut docs = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "docs" {
                return Err(de::Error::unknown_field(&key, &["docs"]));
            }
            if docs.is_some() {
                return Err(de::Error::duplicate_field("docs"));
            }
            docs = Some(map.next_value_seed(self.0)?);
        }
        docs.ok_or_else(|| de::Error::missing_field("docs"))
    }
}

/// The `docs` array, cut off past `max_docs` items (and `too_many` set).
#[derive(Clone, Copy)]
struct DocsSeed<'a> {
    max_docs: usize,
    too_many: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for DocsSeed<'_> {
    type Value = Vec<BatchItem>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DocsSeed<'_> {
    type Value = Vec<BatchItem>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of documents")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut docs = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max_docs));
        while let Some(Object(item)) = seq.next_element::<Object<BatchItem>>()? {
            if docs.len() == self.max_docs {
                self.too_many.set(true);
                return Err(de::Error::custom("too many documents"));
            }
            docs.push(item);
        }
        Ok(docs)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A batch body of `n` documents, each with a 16-number vector and text long enough
    /// that 600 of them exceed [`PARALLEL_BODY_BYTES`]; `edit` may change any item.
    fn body(n: usize, edit: impl Fn(usize, &mut Value)) -> Vec<u8> {
        let docs: Vec<Value> = (0..n)
            .map(|i| {
                let mut d = json!({
                    "id": format!("d{i}"),
                    "text": format!("document {i} ").repeat(40),
                    "vector": (0..16).map(|k| (i * 16 + k) as f32 / 7.0 - 3.0).collect::<Vec<_>>(),
                });
                edit(i, &mut d);
                d
            })
            .collect();
        serde_json::to_vec(&json!({ "docs": docs })).unwrap()
    }

    /// What a parse gave, comparable.
    fn shown(r: Result<Vec<ItemOp>, ApiError>) -> String {
        match r {
            Ok(ops) => format!("{ops:?}"),
            Err(e) => format!("{} {} {:?} {}", e.status, e.code, e.index, e.message),
        }
    }

    #[test]
    fn a_large_batch_parses_and_is_refused_as_in_one_pass() {
        let limits = Limits::default();
        // Each body, and whether the parallel route takes it (`None`: left to the one pass).
        let cases: Vec<(&str, Vec<u8>, Option<bool>)> = vec![
            ("valid", body(600, |_, _| {}), Some(true)),
            (
                "an item without text",
                body(600, |i, d| {
                    if i == 450 {
                        d.as_object_mut().unwrap().remove("text");
                    }
                }),
                Some(false),
            ),
            (
                "an item without text before one that does not parse",
                body(600, |i, d| {
                    if i == 100 {
                        d.as_object_mut().unwrap().remove("text");
                    }
                    if i == 500 {
                        d["colour"] = json!("red");
                    }
                }),
                None,
            ),
            (
                "an item written as an array, field by field",
                body(600, |i, d| {
                    if i == 300 {
                        *d = json!([format!("d{i}"), null, false, "text"]);
                    }
                }),
                None,
            ),
            (
                // Parsed as infinite; the write's vector check refuses it (`invalid_vector`).
                "a vector number beyond f32",
                body(600, |i, d| {
                    if i == 599 {
                        d["vector"][3] = json!(1e39);
                    }
                }),
                Some(true),
            ),
            (
                "pretty-printed",
                {
                    let v: Value = serde_json::from_slice(&body(600, |_, _| {})).unwrap();
                    serde_json::to_vec_pretty(&v).unwrap()
                },
                Some(true),
            ),
            (
                "a key besides docs",
                {
                    let mut b = body(600, |_, _| {});
                    b.pop();
                    b.extend_from_slice(br#","more": 1}"#);
                    b
                },
                None,
            ),
            (
                "truncated",
                {
                    let mut b = body(600, |_, _| {});
                    b.truncate(b.len() - 40);
                    b
                },
                None,
            ),
        ];
        for (name, bytes, parallel_ok) in cases {
            assert!(bytes.len() >= PARALLEL_BODY_BYTES, "{name}");
            let one = shown(parse_in_one_pass(&bytes, &limits));
            let parallel = parse_in_parallel(&bytes, &limits);
            assert_eq!(parallel.as_ref().map(|p| p.is_ok()), parallel_ok, "{name}");
            if let Some(p) = parallel {
                assert_eq!(shown(p), one, "{name}");
            }
            assert_eq!(shown(parse_batch(&bytes, &limits)), one, "{name}");
            if parallel_ok == Some(true) {
                assert_eq!(parse_batch(&bytes, &limits).unwrap().len(), 600);
            } else {
                assert!(parse_batch(&bytes, &limits).is_err(), "{name}");
            }
        }
        let few = Limits {
            max_batch_docs: 500,
            ..Limits::default()
        };
        let e = parse_batch(&body(600, |_, _| {}), &few).unwrap_err();
        assert_eq!(e.code, "batch_too_large");
    }

    #[test]
    fn a_body_splits_into_the_items_a_json_parser_reads() {
        let tricky = json!({"docs": [
            {"id": "a", "text": "brackets ] } [ { and , commas"},
            {"id": "b\"]", "text": "a quote \" a backslash \\ and one before a quote \\\""},
            {"id": "c", "text": "été", "metadata": {"n": [1, {"m": []}], "s": "}"}},
            [], {}, 1, "s", null
        ]});
        let compact = serde_json::to_string(&tricky).unwrap();
        let pretty = serde_json::to_string_pretty(&tricky).unwrap();
        for text in [compact, pretty] {
            let items = split_items(text.as_bytes(), 100).unwrap();
            let got: Vec<Value> = items
                .iter()
                .map(|i| serde_json::from_slice(i).unwrap())
                .collect();
            assert_eq!(Value::Array(got), tricky["docs"], "{text}");
        }
        assert_eq!(split_items(br#" {"docs" : [ ] } "#, 100), Some(vec![]));
        // Other shapes, and bodies cut short or too long, are left to the one pass.
        for other in [
            r#"{"docs": [], "x": 1}"#,
            r#"{"x": 1, "docs": []}"#,
            r#"{"\u0064ocs": []}"#,
            r#"{"docs": [1, 2"#,
            r#"{"docs": ["a]}"#,
            r#"{"docs": ["a\"]}"#,
            r#"{"docs": ["\"#,
            r#"{"docs": ["\\"#,
            r#"{"docs": [1]} x"#,
            r#"[1]"#,
            r#"{"docs": [1}]}"#,
        ] {
            assert!(split_items(other.as_bytes(), 100).is_none(), "{other}");
        }
        assert!(split_items(br#"{"docs": [1, 2, 3]}"#, 2).is_none());
        assert_eq!(split_items(br#"{"docs": [1, 2, 3]}"#, 3).unwrap().len(), 3);
    }
}
