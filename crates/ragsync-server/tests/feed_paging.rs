//! Property test of the change feed over HTTP: after batches of any size (with a frozen
//! physical clock, so every document of a batch shares one physical time), overwrites and
//! deletes, paging `GET /v1/sync/changes` with limit 1, 7, 500 or 10,000 from any `since`
//! returns every current document state exactly once, in `seq` order, and `next_since` never
//! skips a row.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{PEER, TestNode, json, refused};
use proptest::prelude::*;
use ragsync_core::{Limits, PhysicalClock};
use ragsync_store::StoreOptions;
use reqwest::Method;
use serde_json::{Value, json};

struct FrozenClock;

impl PhysicalClock for FrozenClock {
    fn now_ms(&self) -> u64 {
        1_800_000_000_000
    }
}

#[derive(Clone, Debug)]
enum Step {
    Batch(Vec<u16>),
    Delete(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => prop::collection::vec(0u16..400, 1..300).prop_map(Step::Batch),
        1 => (0u16..400).prop_map(Step::Delete),
    ]
}

async fn run_case(
    steps: Vec<Step>,
    limit: usize,
    since_pick: prop::sample::Index,
) -> Result<(), TestCaseError> {
    let opts = StoreOptions {
        clock: Arc::new(FrozenClock),
        ..StoreOptions::default()
    };
    let n = TestNode::with_options(Limits::default(), opts).await;
    n.create_collection("c").await;
    let mut version = 0u32;
    // What each document should be now: its last text, or None once deleted.
    let mut truth: BTreeMap<String, Option<String>> = BTreeMap::new();
    for st in steps {
        match st {
            Step::Batch(ids) => {
                let docs: Vec<Value> = ids
                    .iter()
                    .map(|i| {
                        version += 1;
                        let (id, text) = (format!("d{i}"), format!("v{version}"));
                        truth.insert(id.clone(), Some(text.clone()));
                        json!({"id": id, "text": text})
                    })
                    .collect();
                let r = n
                    .req(Method::POST, "/v1/collections/c/docs:batch")
                    .json(&json!({"docs": docs}))
                    .send()
                    .await
                    .unwrap();
                prop_assert_eq!(r.status(), 200);
            }
            Step::Delete(i) => {
                let id = format!("d{i}");
                let r = n
                    .req(Method::DELETE, &format!("/v1/collections/c/docs/{id}"))
                    .send()
                    .await
                    .unwrap();
                if let Some(current) = truth.get_mut(&id) {
                    prop_assert_eq!(r.status(), 200);
                    *current = None;
                }
            }
        }
    }
    let head = n.store.head_seq().unwrap();
    let page = |since: u64| {
        let req = n.as_token(
            PEER,
            Method::GET,
            &format!("/v1/sync/changes?since={since}&limit={limit}"),
        );
        async move { json(req.send().await.unwrap()).await.1 }
    };

    // Page through the whole feed from 0: every document once, at its current state.
    let mut rows: Vec<(u64, Value)> = Vec::new();
    let mut cursor = 0;
    loop {
        let p = page(cursor).await;
        let changes = p["changes"].as_array().unwrap();
        prop_assert!(changes.len() <= limit);
        for c in changes {
            rows.push((c["seq"].as_u64().unwrap(), c.clone()));
        }
        let next = p["next_since"].as_u64().unwrap();
        prop_assert_eq!(
            next,
            rows.last().map_or(cursor, |r| r.0),
            "next_since is the last row given"
        );
        cursor = next;
        if p["has_more"] != json!(true) {
            break;
        }
    }
    prop_assert_eq!(cursor, head);
    let seqs: Vec<u64> = rows.iter().map(|r| r.0).collect();
    prop_assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "rows not in strictly increasing seq order"
    );
    let mut docs_seen = BTreeMap::new();
    for (_, c) in &rows {
        if c["kind"] == json!("doc") {
            let id = c["id"].as_str().unwrap().to_string();
            prop_assert!(
                docs_seen.insert(id, c["versions"].clone()).is_none(),
                "a document appeared twice"
            );
        }
    }
    prop_assert_eq!(docs_seen.len(), truth.len(), "every document exactly once");
    for (id, want) in &truth {
        let versions = &docs_seen[id];
        prop_assert_eq!(versions.as_array().unwrap().len(), 1);
        let v = &versions[0];
        match want {
            None => prop_assert_eq!(&v["deleted"], &json!(true)),
            Some(text) => {
                let cid = ragsync_core::ContentId::of(text.as_bytes()).to_string();
                prop_assert_eq!(&v["content"]["cid"], &json!(cid));
            }
        }
    }

    // From any since: exactly the rows after it.
    let since = *since_pick.get(
        &std::iter::once(0)
            .chain(seqs.iter().copied())
            .collect::<Vec<_>>(),
    );
    let mut got = Vec::new();
    let mut cursor = since;
    loop {
        let p = page(cursor).await;
        got.extend(
            p["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["seq"].as_u64().unwrap()),
        );
        cursor = p["next_since"].as_u64().unwrap();
        if p["has_more"] != json!(true) {
            break;
        }
    }
    let expected: Vec<u64> = seqs.into_iter().filter(|s| *s > since).collect();
    prop_assert_eq!(got, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn feed_paging_over_http(
        steps in prop::collection::vec(step(), 1..10),
        limit in prop::sample::select(vec![1usize, 7, 500, 10_000]),
        since_pick in any::<prop::sample::Index>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_case(steps, limit, since_pick))?;
    }
}

/// `until` asks for a window of the feed: only rows up to it, and a page holding the whole
/// window ends at it (or at the head before it), so a puller can ask for the next window
/// before this one arrives.
#[tokio::test]
async fn a_window_of_the_feed_ends_where_it_was_asked_to() {
    let n = TestNode::start().await;
    n.create_collection("c").await;
    for i in 0..10 {
        n.req(Method::PUT, &format!("/v1/collections/c/docs/d{i}"))
            .json(&json!({"text": format!("v{i}")}))
            .send()
            .await
            .unwrap();
    }
    let n = &n;
    let page = |q: &str| {
        let url = format!("/v1/sync/changes?{q}");
        async move { json(n.req(Method::GET, &url).send().await.unwrap()).await }
    };
    let (_, head) = page("since=0&limit=1000").await;
    let head = head["head"].as_u64().unwrap();
    assert_eq!(head, 11, "a collection and ten documents");
    let (status, w) = page("since=3&until=7").await;
    assert_eq!(status, 200);
    let seqs: Vec<u64> = w["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 5, 6, 7]);
    assert_eq!(
        (w["next_since"].clone(), w["has_more"].clone()),
        (json!(7), json!(false))
    );
    // A window cut by its row limit says so and ends at its last row.
    let (_, cut) = page("since=3&until=7&limit=2").await;
    assert_eq!(
        (cut["next_since"].clone(), cut["has_more"].clone()),
        (json!(5), json!(true))
    );
    // A window past the head ends at the head.
    let (_, tail) = page("since=9&until=500").await;
    assert_eq!(tail["next_since"], head);
    refused(
        n.req(Method::GET, "/v1/sync/changes?since=5&until=5"),
        400,
        "invalid_query",
    )
    .await;
}
