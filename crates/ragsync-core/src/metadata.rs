//! Rules every document's metadata keeps, whichever surface wrote it.
//!
//! Metadata is a JSON object. Two things about it are bounded here:
//! - **Nesting.** A version is stored and sent wrapped in a few more JSON levels (the state,
//!   its versions, a feed page), and every JSON reader on the way (serde_json, and the
//!   clients) stops at a recursion limit (serde_json's is 128). Metadata nested close to that
//!   limit would be accepted and then never read again, so the API refuses metadata nested
//!   deeper than the node's `max_metadata_depth`, which can be set no higher than
//!   [`MAX_METADATA_DEPTH_CEILING`]; states from peers are held to the ceiling.
//! - **Integers.** serde_json reads an integer literal that fits neither `i64` nor `u64` as a
//!   double, silently dropping digits. Such literals are refused instead
//!   ([`wide_integer_literal`]); integers that fit are kept exactly, doubles bit for bit.

use serde_json::{Map, Value};

use crate::CoreError;

/// The deepest metadata any node accepts or stores, counting the metadata object itself as
/// level 1. The stored and wire forms add fewer than ten levels above it, well below the
/// 128 levels JSON readers allow.
pub const MAX_METADATA_DEPTH_CEILING: usize = 64;

/// How deeply `metadata` nests: 1 for an object of scalars, 2 when it holds an object or array
/// of scalars, and so on.
pub fn depth(metadata: &Map<String, Value>) -> usize {
    // Iterative, so that measuring a deep value cannot itself exhaust the stack.
    let mut deepest = 1;
    let mut todo: Vec<(&Value, usize)> = metadata.values().map(|v| (v, 2)).collect();
    while let Some((v, level)) = todo.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(level);
                todo.extend(items.iter().map(|x| (x, level + 1)));
            }
            Value::Object(fields) => {
                deepest = deepest.max(level);
                todo.extend(fields.values().map(|x| (x, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Refuses metadata nested deeper than `max_depth` levels.
pub fn check_depth(metadata: &Map<String, Value>, max_depth: usize) -> Result<(), CoreError> {
    let d = depth(metadata);
    if d > max_depth {
        return Err(CoreError::InvalidMetadata(format!(
            "metadata nests {d} levels deep, more than the {max_depth} allowed"
        )));
    }
    Ok(())
}

/// The first integer literal in `json` that fits neither `i64` nor `u64`, if any.
///
/// `json` must be well-formed JSON text (the caller has parsed it already): this only finds
/// number tokens outside strings. serde_json offers no way to see a number's literal once it
/// is read, and its `arbitrary_precision` feature would change every `Value` in the process,
/// so the literal is checked in the raw text before it is parsed.
pub fn wide_integer_literal(json: &str) -> Option<&str> {
    let b = json.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let lit = &json[start..i];
                let integer = !lit.contains(['.', 'e', 'E']);
                if integer && lit.parse::<i64>().is_err() && lit.parse::<u64>().is_err() {
                    return Some(lit);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses the raw JSON text of a metadata field as a request gives it: `null` or an object,
/// nested at most `max_depth` levels, with no integer wider than 64 bits.
pub fn parse(json: &str, max_depth: usize) -> Result<Map<String, Value>, CoreError> {
    if let Some(lit) = wide_integer_literal(json) {
        return Err(CoreError::InvalidMetadata(format!(
            "integer {lit} does not fit in 64 bits; send it as a string or a double"
        )));
    }
    let map = match serde_json::from_str::<Value>(json) {
        Ok(Value::Null) => Map::new(),
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(CoreError::InvalidMetadata(
                "metadata must be a JSON object".into(),
            ));
        }
        Err(e) => return Err(CoreError::InvalidMetadata(e.to_string())),
    };
    check_depth(&map, max_depth)?;
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn depth_counts_levels() {
        assert_eq!(depth(&Map::new()), 1);
        assert_eq!(depth(&obj(json!({"a": 1, "b": "x"}))), 1);
        assert_eq!(depth(&obj(json!({"a": []}))), 2);
        assert_eq!(depth(&obj(json!({"a": [[{"b": [1]}]], "c": {}}))), 5);
    }

    #[test]
    fn wide_integers_are_found_outside_strings_only() {
        let max = u64::MAX.to_string();
        let min = i64::MIN.to_string();
        for ok in [
            "{}".to_string(),
            format!(r#"{{"a": {max}, "b": {min}, "c": 1.5e300, "d": -0.0}}"#),
            r#"{"a": "123456789012345678901234567890", "b\"": "-99999999999999999999"}"#.into(),
            r#"{"a": 123456789012345678901234567890.0, "b": 1e25}"#.into(),
        ] {
            assert_eq!(wide_integer_literal(&ok), None, "{ok}");
        }
        for (bad, lit) in [
            (r#"{"a": 18446744073709551616}"#, "18446744073709551616"),
            (
                r#"{"a": [1, -9223372036854775809]}"#,
                "-9223372036854775809",
            ),
            (
                r#"{"s": "\\", "a": 1180591620717411303424}"#,
                "1180591620717411303424",
            ),
        ] {
            assert_eq!(wide_integer_literal(bad), Some(lit), "{bad}");
        }
    }

    #[test]
    fn parse_refuses_what_cannot_be_kept() {
        assert!(parse("null", 4).unwrap().is_empty());
        assert!(parse("[1]", 4).is_err());
        assert!(parse(r#"{"a": 99999999999999999999}"#, 4).is_err());
        let deep = format!(r#"{{"a": {}{}}}"#, "[".repeat(4), "]".repeat(4));
        assert!(parse(&deep, 5).is_ok());
        assert!(parse(&deep, 4).is_err());
    }
}
