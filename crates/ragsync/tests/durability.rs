//! Black-box durability: the real binary, written to in batches, killed with SIGKILL right
//! after an acknowledgement (and once more with a batch in flight), restarted, 20 times over.
//! Every acknowledged document must be there, byte-exact; deletes must stay deleted; the
//! batch in flight must be there whole or not at all.

use std::collections::BTreeMap;
use std::path::Path;

use ragsync::client::Client;
use ragsync::node_proc::NodeProcess;
use ragsync_core::ContentId;
use serde_json::{Value, json};

const CYCLES: usize = 20;
const TOKEN: &str = "durability-test-token-0123456789";

/// id -> content id of what the collection must hold.
type Expected = BTreeMap<String, String>;

async fn stored(client: &Client) -> Expected {
    let docs = client.list_docs("c").await.expect("list");
    docs.iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_string(),
                d["content_cid"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn batch(cycle: usize, b: usize, n: usize, expected: &mut Expected) -> Value {
    let docs: Vec<Value> = (0..n)
        .map(|i| {
            // Every third document overwrites one from an earlier cycle.
            let id = if i % 3 == 0 && cycle > 0 {
                format!("c{}-b0-{i}", cycle - 1)
            } else {
                format!("c{cycle}-b{b}-{i}")
            };
            let text = format!("cycle {cycle} batch {b} doc {i} {}", "x".repeat(i * 7));
            expected.insert(id.clone(), ContentId::of(text.as_bytes()).to_string());
            json!({"id": id, "text": text})
        })
        .collect();
    json!({ "docs": docs })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let exe = Path::new(env!("CARGO_BIN_EXE_ragsync"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let mut acked = Expected::new();
    let mut in_flight: Option<Expected> = None;
    for cycle in 0..CYCLES {
        let mut node = NodeProcess::spawn(exe, &data, TOKEN, &[]).unwrap();
        let client = node.client();
        if cycle == 0 {
            client.put(&["collections", "c"], &json!({})).await.unwrap();
        }
        let now = stored(&client).await;
        if let Some(flight) = in_flight.take() {
            // The batch killed in flight is there whole, or not at all.
            let landed = flight
                .iter()
                .filter(|(id, cid)| now.get(*id) == Some(*cid))
                .count();
            assert!(
                landed == 0 || landed == flight.len(),
                "cycle {cycle}: {landed} of {} in-flight docs landed",
                flight.len()
            );
            if landed > 0 {
                acked.extend(flight);
            }
        }
        assert_eq!(
            now, acked,
            "cycle {cycle}: stored documents differ from acknowledged ones"
        );

        for b in 0..3 {
            let mut next = acked.clone();
            let body = batch(cycle, b, 40, &mut next);
            let r = client
                .post(&["collections", "c", "docs:batch"], &body)
                .await
                .unwrap();
            assert_eq!(r["results"].as_array().unwrap().len(), 40);
            acked = next;
        }
        let victim = acked.keys().nth(cycle * 7 % acked.len()).unwrap().clone();
        client
            .delete(&["collections", "c", "docs", &victim])
            .await
            .unwrap();
        acked.remove(&victim);

        if cycle % 2 == 1 {
            // Kill with one more batch in flight.
            let mut flight = Expected::new();
            let body = batch(cycle, 9, 60, &mut flight);
            let c = client.clone();
            let req =
                tokio::spawn(
                    async move { c.post(&["collections", "c", "docs:batch"], &body).await },
                );
            tokio::time::sleep(std::time::Duration::from_millis(cycle as u64)).await;
            node.kill9().unwrap();
            let _ = req.await;
            in_flight = Some(flight);
        } else {
            // Kill right after the last acknowledgement.
            node.kill9().unwrap();
        }
    }
    let node = NodeProcess::spawn(exe, &data, TOKEN, &[]).unwrap();
    let now = stored(&node.client()).await;
    if let Some(flight) = in_flight
        && flight.iter().all(|(id, cid)| now.get(id) == Some(cid))
    {
        acked.extend(flight);
    }
    assert_eq!(now, acked);
    // Byte-exact: one document's text, read back whole.
    let (id, cid) = acked.iter().next().unwrap();
    let d = node
        .client()
        .get(&["collections", "c", "docs", id], &[])
        .await
        .unwrap();
    assert_eq!(
        ContentId::of(d["text"].as_str().unwrap().as_bytes()).to_string(),
        *cid
    );
}
