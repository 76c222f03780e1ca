//! Metadata filters on search results: a JSON object whose keys are metadata fields of the
//! document (its winning version) and whose values are conditions, all of which must hold:
//!
//! - a plain value: the field equals it (`{"lang": "en"}`, `{"year": 2024}`; numbers compare
//!   by value, exactly: `2024` matches `2024.0`, and 64-bit integers past 2^53 are not
//!   rounded to a double first);
//! - `{"$in": [v, ...]}`: the field equals one of them;
//! - `{"$gt": n}`, `{"$gte": n}`, `{"$lt": n}`, `{"$lte": n}`: the field is a number in that
//!   range (several combine: `{"$gte": 2000, "$lt": 2010}`);
//! - `{"$eq": v}`, `{"$ne": v}`: equal, not equal (a missing field is not equal).
//!
//! A field the document lacks fails every condition but `$ne`.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// A parsed filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    conditions: Vec<(String, Condition)>,
}

#[derive(Clone, Debug, PartialEq)]
enum Condition {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Range { op: RangeOp, bound: Number },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum RangeOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Filter {
    /// Parses a filter; the error says what is wrong, for a 400.
    pub fn parse(v: &Value) -> Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or("filter must be an object of metadata fields")?;
        let mut conditions = Vec::new();
        for (field, cond) in obj {
            if field.starts_with('$') {
                return Err(format!("unknown filter operator {field} at the top level"));
            }
            match cond {
                Value::Object(ops) if ops.is_empty() => {
                    return Err(format!("filter on {field} has no condition"));
                }
                Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                    for (op, arg) in ops {
                        conditions.push((field.clone(), condition(field, op, arg)?));
                    }
                }
                Value::Object(_) | Value::Array(_) => {
                    return Err(format!(
                        "filter on {field}: compare with a plain value or an operator object \
                         ($eq, $ne, $in, $gt, $gte, $lt, $lte)"
                    ));
                }
                plain => conditions.push((field.clone(), Condition::Eq(plain.clone()))),
            }
        }
        Ok(Self { conditions })
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether a document with this metadata passes.
    pub fn matches(&self, metadata: &Map<String, Value>) -> bool {
        self.conditions.iter().all(|(field, cond)| {
            let v = metadata.get(field);
            match cond {
                Condition::Eq(want) => v.is_some_and(|v| same(v, want)),
                Condition::Ne(want) => !v.is_some_and(|v| same(v, want)),
                Condition::In(any) => v.is_some_and(|v| any.iter().any(|w| same(v, w))),
                Condition::Range { op, bound } => v
                    .and_then(Value::as_number)
                    .and_then(|x| compare(x, bound))
                    .is_some_and(|o| match op {
                        RangeOp::Gt => o.is_gt(),
                        RangeOp::Gte => o.is_ge(),
                        RangeOp::Lt => o.is_lt(),
                        RangeOp::Lte => o.is_le(),
                    }),
            }
        })
    }
}

fn condition(field: &str, op: &str, arg: &Value) -> Result<Condition, String> {
    let number = || {
        arg.as_number()
            .cloned()
            .ok_or_else(|| format!("filter {op} on {field} needs a number"))
    };
    Ok(match op {
        "$eq" => Condition::Eq(arg.clone()),
        "$ne" => Condition::Ne(arg.clone()),
        "$in" => Condition::In(
            arg.as_array()
                .ok_or_else(|| format!("filter $in on {field} needs an array"))?
                .clone(),
        ),
        "$gt" => Condition::Range {
            op: RangeOp::Gt,
            bound: number()?,
        },
        "$gte" => Condition::Range {
            op: RangeOp::Gte,
            bound: number()?,
        },
        "$lt" => Condition::Range {
            op: RangeOp::Lt,
            bound: number()?,
        },
        "$lte" => Condition::Range {
            op: RangeOp::Lte,
            bound: number()?,
        },
        other => return Err(format!("unknown filter operator {other} on {field}")),
    })
}

/// JSON equality with numbers compared by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare(x, y).is_some_and(Ordering::is_eq),
        _ => a == b,
    }
}

/// Two JSON numbers by value, exactly: integers as integers (an `i64` and a `u64` as well),
/// an integer and a double without rounding the integer to a double. `None` only for a NaN,
/// which JSON cannot hold.
fn compare(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        (Some(x), None) => int_to_double(x, b.as_f64()?),
        (None, Some(y)) => int_to_double(y, a.as_f64()?).map(Ordering::reverse),
        (None, None) => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// Integer `i` (within `i64` and `u64`) against double `d`, exactly.
fn int_to_double(i: i128, d: f64) -> Option<Ordering> {
    const TWO_64: f64 = 18_446_744_073_709_551_616.0;
    if d.is_nan() {
        return None;
    }
    if d >= TWO_64 {
        return Some(Ordering::Less);
    }
    if d < -TWO_64 {
        return Some(Ordering::Greater);
    }
    // |d| < 2^64: its whole part is an integer an i128 holds exactly.
    let whole = d.trunc();
    Some(i.cmp(&(whole as i128)).then(0.0f64.total_cmp(&(d - whole))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn equality_sets_and_ranges() {
        let doc = meta(json!({"lang": "en", "year": 2004, "score": 0.5, "tags": ["a"]}));
        let ok = |f: Value| Filter::parse(&f).unwrap().matches(&doc);
        assert!(ok(json!({})));
        assert!(ok(json!({"lang": "en", "year": 2004.0})));
        assert!(!ok(json!({"lang": "fr"})));
        assert!(ok(json!({"lang": {"$in": ["fr", "en"]}})));
        assert!(!ok(json!({"lang": {"$in": []}})));
        assert!(ok(json!({"year": {"$gte": 2000, "$lt": 2010}})));
        assert!(!ok(json!({"year": {"$gt": 2004}})));
        assert!(ok(json!({"score": {"$lte": 0.5}})));
        assert!(ok(json!({"lang": {"$ne": "fr"}, "missing": {"$ne": 1}})));
        assert!(!ok(json!({"missing": 1})));
        assert!(!ok(json!({"lang": {"$gt": 1}})));
    }

    #[test]
    fn integers_compare_exactly_even_past_two_to_the_53() {
        let doc = meta(json!({
            "odd": 9_007_199_254_740_993u64,
            "max": u64::MAX,
            "min": i64::MIN,
            "half": 2.5,
        }));
        let ok = |f: Value| Filter::parse(&f).unwrap().matches(&doc);
        assert!(ok(json!({"odd": 9_007_199_254_740_993u64})));
        assert!(!ok(json!({"odd": 9_007_199_254_740_992u64})));
        assert!(ok(json!({"odd": {"$gt": 9_007_199_254_740_992u64}})));
        assert!(ok(json!({"odd": {"$ne": 9_007_199_254_740_992u64}})));
        // A double is compared with the integer as it is, not as the integer rounded.
        assert!(ok(json!({"odd": {"$lt": 9_007_199_254_740_994.0}})));
        assert!(!ok(json!({"odd": 9_007_199_254_740_992.0})));
        assert!(ok(json!({"max": u64::MAX, "min": i64::MIN})));
        assert!(!ok(json!({"max": {"$gte": 18_446_744_073_709_551_616.0}})));
        assert!(ok(
            json!({"max": {"$gt": u64::MAX - 1}, "min": {"$lt": i64::MIN + 1}})
        ));
        assert!(ok(json!({"min": {"$gt": -1e300}, "max": {"$lt": 1e300}})));
        assert!(ok(
            json!({"half": {"$gt": 2, "$lt": 3}, "odd": {"$in": ["x", 9_007_199_254_740_993u64]}})
        ));
        assert!(ok(json!({"half": 2.5, "max": {"$gt": 1.5}})));
        assert!(!ok(json!({"half": {"$gte": 3}})));
        let neg = meta(json!({"n": -3}));
        assert!(
            Filter::parse(&json!({"n": {"$gt": -3.5, "$lt": -2.5}}))
                .unwrap()
                .matches(&neg)
        );
        assert!(
            !Filter::parse(&json!({"n": {"$lt": -3.0}}))
                .unwrap()
                .matches(&neg)
        );
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            json!([1]),
            json!({"$and": []}),
            json!({"year": {"$gt": "x"}}),
            json!({"year": {"$between": [1, 2]}}),
            json!({"lang": {"$in": "en"}}),
            json!({"tags": ["a"]}),
            json!({"nested": {"a": 1}}),
            json!({"empty": {}}),
        ] {
            assert!(Filter::parse(&bad).is_err(), "{bad}");
        }
    }
}
