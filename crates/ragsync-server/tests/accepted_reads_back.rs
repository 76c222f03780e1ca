//! Property: whatever the API accepts stays readable. Bodies are generated as JSON text (so
//! they can hold integers wider than 64 bits and nesting past every limit); each is written
//! with `PUT` and, under another id, in a batch. A write that is refused must be a 4xx JSON
//! error; a write that is accepted must read back equal, appear in the collection's listing,
//! and page through the change feed, with nothing answering 500 afterwards.

mod common;

use common::{PEER, TestNode, json};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

/// A JSON value as literal text: numbers are written as generated, wide or not.
#[derive(Clone, Debug)]
enum Lit {
    Int(i128),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Arr(Vec<Lit>),
    Obj(Vec<(String, Lit)>),
}

impl Lit {
    /// The value a JSON reader makes of the literal: a repeated key keeps its last value, as
    /// in serde_json, Python and JavaScript. Built directly rather than by parsing the text,
    /// whose nesting inside a request body may pass serde_json's recursion limit although the
    /// metadata alone does not.
    fn value(&self) -> Value {
        match self {
            Lit::Int(i) => i64::try_from(*i)
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(u64::try_from(*i).expect("a 64-bit integer"))),
            Lit::Float(f) => Value::from(*f),
            Lit::Str(s) => Value::from(s.as_str()),
            Lit::Bool(b) => Value::Bool(*b),
            Lit::Null => Value::Null,
            Lit::Arr(items) => Value::Array(items.iter().map(Lit::value).collect()),
            Lit::Obj(fields) => {
                Value::Object(fields.iter().map(|(k, x)| (k.clone(), x.value())).collect())
            }
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Lit::Int(i) => out.push_str(&i.to_string()),
            Lit::Float(f) => out.push_str(&serde_json::to_string(f).unwrap()),
            Lit::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            Lit::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Lit::Null => out.push_str("null"),
            Lit::Arr(items) => {
                out.push('[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    x.write(out);
                }
                out.push(']');
            }
            Lit::Obj(fields) => {
                out.push('{');
                for (i, (k, x)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    x.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
        Just("\u{202E}\u{200B}\u{FEFF}\\\"".to_string()),
    ]
}

fn leaf() -> impl Strategy<Value = Lit> {
    prop_oneof![
        any::<i64>().prop_map(|i| Lit::Int(i.into())),
        any::<u64>().prop_map(|i| Lit::Int(i.into())),
        // Past 64 bits on either side: must be refused, never rounded.
        (any::<u64>(), any::<bool>()).prop_map(|(i, neg)| {
            let wide = i128::from(u64::MAX) + 1 + i128::from(i);
            Lit::Int(if neg { -wide } else { wide })
        }),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Lit::Float),
        text().prop_map(Lit::Str),
        any::<bool>().prop_map(Lit::Bool),
        Just(Lit::Null),
    ]
}

fn tree() -> impl Strategy<Value = Lit> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Lit::Arr),
            prop::collection::vec((text(), inner), 0..4).prop_map(Lit::Obj),
        ]
    })
}

/// A value nested `levels` deep: the shape of the poison document, at any depth.
fn chain() -> impl Strategy<Value = Lit> {
    (0usize..140, any::<bool>()).prop_map(|(levels, objects)| {
        let mut v = Lit::Int(1);
        for _ in 0..levels {
            v = if objects {
                Lit::Obj(vec![("k".into(), v)])
            } else {
                Lit::Arr(vec![v])
            };
        }
        v
    })
}

fn metadata() -> impl Strategy<Value = Option<Lit>> {
    prop_oneof![
        1 => Just(None),
        3 => prop::collection::vec((text(), prop_oneof![tree(), chain()]), 0..4)
            .prop_map(|f| Some(Lit::Obj(f))),
        1 => leaf().prop_map(Some),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    text: String,
    title: Option<String>,
    metadata: Option<Lit>,
}

fn case() -> impl Strategy<Value = Case> {
    (any::<String>(), prop::option::of(text()), metadata()).prop_map(|(text, title, metadata)| {
        Case {
            text,
            title,
            metadata,
        }
    })
}

impl Case {
    /// The body fields as JSON text, `{"text":..., ...}` with `extra` fields first.
    fn body(&self, extra: &str) -> String {
        let mut out = format!(
            "{{{extra}\"text\":{}",
            serde_json::to_string(&self.text).unwrap()
        );
        if let Some(t) = &self.title {
            out.push_str(&format!(",\"title\":{}", serde_json::to_string(t).unwrap()));
        }
        if let Some(m) = &self.metadata {
            out.push_str(",\"metadata\":");
            m.write(&mut out);
        }
        out.push('}');
        out
    }
}

async fn check_refusal(r: reqwest::Response) -> Result<(), TestCaseError> {
    let (status, v) = json(r).await;
    prop_assert!((400..500).contains(&status), "refused with {status}: {v}");
    prop_assert!(v["error"]["code"].is_string(), "not a JSON error: {v}");
    Ok(())
}

async fn feed_ids(n: &TestNode) -> Result<Vec<String>, TestCaseError> {
    let mut ids = Vec::new();
    let mut since = 0;
    loop {
        let r = n
            .as_token(
                PEER,
                Method::GET,
                &format!("/v1/sync/changes?since={since}&limit=50"),
            )
            .send()
            .await
            .unwrap();
        let (status, page) = json(r).await;
        prop_assert_eq!(status, 200, "feed page after {}: {}", since, page);
        for c in page["changes"].as_array().unwrap() {
            if let Some(id) = c["id"].as_str() {
                ids.push(id.to_string());
            }
        }
        since = page["next_since"].as_u64().unwrap();
        if page["has_more"] != json!(true) {
            return Ok(ids);
        }
    }
}

async fn run(n: &TestNode, i: usize, case: Case) -> Result<(), TestCaseError> {
    let put_id = format!("p{i}");
    let batch_id = format!("b{i}");
    let put = n
        .req(Method::PUT, &format!("/v1/collections/c/docs/{put_id}"))
        .header("content-type", "application/json")
        .body(case.body(""))
        .send()
        .await
        .unwrap();
    let batch = n
        .req(Method::POST, "/v1/collections/c/docs:batch")
        .header("content-type", "application/json")
        .body(format!(
            "{{\"docs\":[{}]}}",
            case.body(&format!("\"id\":\"{batch_id}\","))
        ))
        .send()
        .await
        .unwrap();
    let accepted = put.status().is_success();
    prop_assert_eq!(
        accepted,
        batch.status().is_success(),
        "PUT and batch disagree: {} vs {}",
        put.status(),
        batch.status()
    );
    if !accepted {
        check_refusal(put).await?;
        check_refusal(batch).await?;
        let r = n
            .req(Method::GET, &format!("/v1/collections/c/docs/{put_id}"))
            .send()
            .await
            .unwrap();
        prop_assert_eq!(r.status(), 404);
        return Ok(());
    }
    let want_meta = match case.metadata.as_ref().map(Lit::value) {
        None | Some(Value::Null) => json!({}),
        Some(m) => m,
    };
    for id in [&put_id, &batch_id] {
        let r = n
            .req(Method::GET, &format!("/v1/collections/c/docs/{id}"))
            .send()
            .await
            .unwrap();
        let (status, doc) = json(r).await;
        prop_assert_eq!(status, 200, "read of {}: {}", id, doc);
        prop_assert_eq!(doc["text"].as_str(), Some(case.text.as_str()));
        prop_assert_eq!(
            &doc["title"],
            &case.title.as_deref().map_or(Value::Null, Value::from)
        );
        prop_assert_eq!(&doc["metadata"], &want_meta);
    }
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/collections/c/docs?limit=50".to_string();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let r = n.req(Method::GET, &path).send().await.unwrap();
        let (status, page) = json(r).await;
        prop_assert_eq!(status, 200, "listing: {}", page);
        for d in page["docs"].as_array().unwrap() {
            listed.push(d["id"].as_str().unwrap().to_string());
        }
        match page["next_after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
    }
    prop_assert!(listed.contains(&put_id) && listed.contains(&batch_id));
    let fed = feed_ids(n).await?;
    prop_assert!(fed.contains(&put_id) && fed.contains(&batch_id));
    // Still writable: an overwrite of an accepted document succeeds.
    let r = n
        .req(Method::PUT, &format!("/v1/collections/c/docs/{put_id}"))
        .json(&json!({"text": "overwritten"}))
        .send()
        .await
        .unwrap();
    prop_assert_eq!(r.status(), 200);
    Ok(())
}

#[test]
fn every_accepted_write_reads_back_lists_and_pages() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = rt.block_on(async {
        let n = TestNode::start().await;
        n.create_collection("c").await;
        n
    });
    let mut runner = TestRunner::new(Config {
        // Failures print the shrunk case; there is no source file to persist them beside.
        failure_persistence: None,
        ..Config::with_cases(96)
    });
    let counter = std::cell::Cell::new(0usize);
    runner
        .run(&case(), |c| {
            counter.set(counter.get() + 1);
            rt.block_on(run(&n, counter.get(), c))
        })
        .unwrap();
}

/// Found by the property above: a key repeated in the metadata keeps its last value, so the
/// first may nest past serde_json's limit inside the body (129 levels) while the metadata the
/// node keeps is one level deep. The node accepts it and must read back the last value.
#[test]
fn repeated_key_keeps_its_last_value_whatever_the_first_held() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let n = TestNode::start().await;
        n.create_collection("c").await;
        let mut deep = Lit::Int(1);
        for _ in 0..127 {
            deep = Lit::Arr(vec![deep]);
        }
        let case = Case {
            text: String::new(),
            title: None,
            metadata: Some(Lit::Obj(vec![
                ("k".into(), deep),
                ("k".into(), Lit::Int(1)),
            ])),
        };
        assert!(serde_json::from_str::<Value>(&case.body("")).is_err());
        run(&n, 0, case).await.unwrap();
    });
}
