//! Metadata filters on search results: a JSON object whose keys are metadata fields of the
//! document (its winning version) and whose values are conditions, all of which must hold:
//!
//! - a plain value: the field equals it (`{"lang": "en"}`, `{"year": 2024}`; numbers compare
//!   as numbers, so `2024` matches `2024.0`);
//! - `{"$in": [v, ...]}`: the field equals one of them;
//! - `{"$gt": n}`, `{"$gte": n}`, `{"$lt": n}`, `{"$lte": n}`: the field is a number in that
//!   range (several combine: `{"$gte": 2000, "$lt": 2010}`);
//! - `{"$eq": v}`, `{"$ne": v}`: equal, not equal (a missing field is not equal).
//!
//! A field the document lacks fails every condition but `$ne`.

use serde_json::{Map, Value};

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
    Range { op: RangeOp, bound: f64 },
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
                Condition::Range { op, bound } => {
                    v.and_then(Value::as_f64).is_some_and(|x| match op {
                        RangeOp::Gt => x > *bound,
                        RangeOp::Gte => x >= *bound,
                        RangeOp::Lt => x < *bound,
                        RangeOp::Lte => x <= *bound,
                    })
                }
            }
        })
    }
}

fn condition(field: &str, op: &str, arg: &Value) -> Result<Condition, String> {
    let number = || {
        arg.as_f64()
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
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
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
