//! Every limit of a node, named with its unit, with its default. The `Config` tree of the
//! binary embeds [`Limits`] as its `[limits]` table.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, checked before the body is read.
    pub max_body_bytes: usize,
    /// Most documents in one batch write.
    pub max_batch_docs: usize,
    /// Largest content of one document.
    pub max_content_bytes: usize,
    /// Largest metadata object of one document, as compact JSON.
    pub max_metadata_bytes: usize,
    /// Deepest nesting of one document's metadata (the object itself is level 1); at most
    /// [`crate::metadata::MAX_METADATA_DEPTH_CEILING`].
    pub max_metadata_depth: usize,
    /// Largest title of one document.
    pub max_title_bytes: usize,
    /// Contents up to this size travel inside feed pages and document reads.
    pub max_inline_bytes: usize,
    /// Most rows in one page of the change feed or of a document list.
    pub max_page_rows: usize,
    /// Most bytes of contents inlined in one page of the change feed.
    pub max_page_inline_bytes: usize,
    /// How far ahead of local time a remote clock value may be.
    pub hlc_max_drift_ms: u64,
    /// Most client connections open at once; past it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Longest wait for a request's headers, also the longest a kept-alive connection may
    /// sit idle between requests.
    pub header_read_timeout_ms: u64,
    /// Longest pause while a request body is being received.
    pub body_read_timeout_ms: u64,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish before their
    /// connections are closed.
    pub shutdown_grace_ms: u64,
}

/// Upper bound of the row-count limits: pages and batches are held in memory whole.
pub const MAX_ROWS: usize = 1_000_000;

impl Limits {
    /// Refuses a limit of zero: it would refuse everything it bounds.
    pub fn validate(&self) -> Result<(), String> {
        let all = [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_batch_docs", self.max_batch_docs as u64),
            ("max_content_bytes", self.max_content_bytes as u64),
            ("max_metadata_bytes", self.max_metadata_bytes as u64),
            ("max_metadata_depth", self.max_metadata_depth as u64),
            ("max_title_bytes", self.max_title_bytes as u64),
            ("max_inline_bytes", self.max_inline_bytes as u64),
            ("max_page_rows", self.max_page_rows as u64),
            ("max_page_inline_bytes", self.max_page_inline_bytes as u64),
            ("hlc_max_drift_ms", self.hlc_max_drift_ms),
            ("max_connections", self.max_connections as u64),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("shutdown_grace_ms", self.shutdown_grace_ms),
        ];
        if let Some((name, _)) = all.iter().find(|(_, v)| *v == 0) {
            return Err(format!("limits.{name} must be at least 1"));
        }
        for (name, value) in [
            ("max_page_rows", self.max_page_rows),
            ("max_batch_docs", self.max_batch_docs),
        ] {
            if value > MAX_ROWS {
                return Err(format!("limits.{name} must be at most {MAX_ROWS}"));
            }
        }
        let ceiling = crate::metadata::MAX_METADATA_DEPTH_CEILING;
        if self.max_metadata_depth > ceiling {
            return Err(format!(
                "limits.max_metadata_depth must be at most {ceiling}"
            ));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 << 20,
            max_batch_docs: 10_000,
            max_content_bytes: 32 << 20,
            max_metadata_bytes: 16 << 10,
            max_metadata_depth: 32,
            max_title_bytes: 1024,
            max_inline_bytes: 64 << 10,
            max_page_rows: 10_000,
            max_page_inline_bytes: 16 << 20,
            hlc_max_drift_ms: 60_000,
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
        }
    }
}
