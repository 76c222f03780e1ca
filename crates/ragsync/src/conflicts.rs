//! `ragsync conflicts list -c C` and `ragsync conflicts resolve -c C ID --keep VERSION`.
//!
//! Resolving is an ordinary conditional write through the API (the one write path, so it
//! replicates like any other): the kept version's content, title and metadata are written
//! back with `If-Match` on the version the document had when it was read, so the new version
//! has seen every conflict and replaces them all; keeping a tombstone deletes the document.
//! A document that moved meanwhile is refused (409) and nothing is written.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::client::Client;

/// The documents of `collection` that hold conflicts, each read whole: id, version, winner
/// and conflicts (stamps, deletion, content ids, titles).
pub async fn list(client: &Client, collection: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut q = vec![("conflicts", "true".to_string()), ("limit", "1000".into())];
        if let Some(a) = after.take() {
            q.push(("after", a));
        }
        let page = client.get(&["collections", collection, "docs"], &q).await?;
        for d in page["docs"].as_array().into_iter().flatten() {
            let id = d["id"].as_str().unwrap_or_default();
            let doc = client
                .get(&["collections", collection, "docs", id], &[])
                .await?;
            out.push(json!({
                "id": id,
                "version": doc["version"],
                "winner": summary(&doc),
                "conflicts": doc["conflicts"].as_array().into_iter().flatten().map(summary).collect::<Vec<_>>(),
            }));
        }
        match page["next_after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return Ok(out),
        }
    }
}

fn summary(v: &Value) -> Value {
    json!({
        "stamp": v["stamp"],
        "deleted": v["deleted"],
        "title": v["title"],
        "content_cid": v["content_cid"],
        "content_len": v["content_len"],
    })
}

/// Keeps version `keep` (a stamp, as `list` shows it) of document `id`, resolving every
/// conflict of the document.
pub async fn resolve(
    client: &Client,
    collection: &str,
    id: &str,
    keep: &str,
) -> anyhow::Result<Value> {
    let path = ["collections", collection, "docs", id];
    let doc = client.get(&path, &[]).await?;
    let tag = doc["version"]
        .as_str()
        .context("the document has no version")?;
    let mut versions = vec![doc.clone()];
    versions.extend(doc["conflicts"].as_array().into_iter().flatten().cloned());
    let Some(kept) = versions.iter().find(|v| v["stamp"] == keep) else {
        let stamps: Vec<&str> = versions
            .iter()
            .filter_map(|v| v["stamp"].as_str())
            .collect();
        bail!(
            "{id} has no version {keep}; its versions are {}",
            stamps.join(", ")
        );
    };
    if versions.len() == 1 {
        bail!("{id} holds no conflict");
    }
    if kept["deleted"] == true {
        return Ok(client.write_if_match(&path, None, tag).await?);
    }
    let content_type = kept["content_type"]
        .as_str()
        .unwrap_or("application/octet-stream");
    let mut body = json!({
        "content_type": content_type,
        "metadata": kept["metadata"],
    });
    if let Some(t) = kept["title"].as_str() {
        body["title"] = json!(t);
    }
    let cid = kept["content_cid"]
        .as_str()
        .context("the kept version has no content")?;
    let bytes = client.blob(cid).await?;
    match String::from_utf8(bytes) {
        Ok(text) if content_type.starts_with("text/") => body["text"] = json!(text),
        Ok(text) => body["content_base64"] = json!(BASE64.encode(text)),
        Err(e) => body["content_base64"] = json!(BASE64.encode(e.as_bytes())),
    }
    Ok(client.write_if_match(&path, Some(&body), tag).await?)
}
