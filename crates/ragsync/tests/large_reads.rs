//! Black-box: concurrent reads of a large document stream it from the store instead of each
//! holding the whole content (and its JSON) in memory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ragsync::node_proc::NodeProcess;

const EXE: &str = env!("CARGO_BIN_EXE_ragsync");
const TOKEN: &str = "large-reads-test-token-0123456789";
const DOC_BYTES: usize = 32 << 20;
const READERS: usize = 16;
/// Most the node's resident memory may grow while the reads run. Holding each content whole
/// grew it by about 770 MiB.
const MAX_GROWTH_MIB: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_reads_of_a_32_mib_document_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(Path::new(EXE), &dir.path().join("node"), TOKEN, &[])
        .await
        .unwrap();
    let client = node.client();
    client
        .put(&["collections", "c"], &serde_json::json!({}))
        .await
        .unwrap();
    let line = "Large documents stream from the store, a chunk at a time: \u{e9}\u{1F600}\n";
    let text: String = line.repeat(DOC_BYTES / line.len());
    client
        .put(
            &["collections", "c", "docs", "big"],
            &serde_json::json!({"text": text}),
        )
        .await
        .unwrap();
    // The node indexes the document for search as it arrives; this test measures reads, so
    // it starts once the index has it (a query waits for that).
    let q = client
        .post(
            &["collections", "c", "query"],
            &serde_json::json!({"query": "documents stream"}),
        )
        .await
        .unwrap();
    assert_eq!(q["stale"], false, "{q}");
    let before = node.rss_kib().unwrap();

    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let pid = node.pid();
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
                let rss = status.ok().and_then(|s| {
                    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
                    l.split_whitespace().nth(1)?.parse::<u64>().ok()
                });
                peak.fetch_max(rss.unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let url = format!("{}/v1/collections/c/docs/big", node.url);
    let http = reqwest::Client::new();
    let reads: Vec<_> = (0..READERS)
        .map(|_| {
            let req = http.get(&url).bearer_auth(TOKEN);
            tokio::spawn(async move { req.send().await.unwrap().bytes().await.unwrap() })
        })
        .collect();
    for r in reads {
        let body = r.await.unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(doc["text"].as_str() == Some(text.as_str()), "text differs");
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let growth_mib = peak.load(Ordering::Relaxed).saturating_sub(before) / 1024;
    eprintln!("{READERS} reads of {DOC_BYTES} bytes: node RSS grew by {growth_mib} MiB");
    assert!(
        growth_mib <= MAX_GROWTH_MIB,
        "node RSS grew by {growth_mib} MiB during {READERS} concurrent reads"
    );
}
