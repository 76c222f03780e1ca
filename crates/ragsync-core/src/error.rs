//! Errors of the core layer. Every variant is a refusal of input: the caller should reject the
//! request (or the peer's row) and keep its state unchanged.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A collection name, document id, node id or content id that is not well formed.
    #[error("invalid {what}: {reason}")]
    InvalidName { what: &'static str, reason: String },
    /// A remote stamp too far ahead of local physical time; the local clock did not move.
    #[error(
        "clock drift: remote physical time {remote_ms} ms is {ahead_ms} ms ahead of local time, more than the {max_drift_ms} ms allowed"
    )]
    ClockDrift {
        remote_ms: u64,
        ahead_ms: u64,
        max_drift_ms: u64,
    },
    /// Metadata that no node could keep readable or exact (too deep, an integer too wide).
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    /// Settings that break their own rules (for example overlap not below max tokens).
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
}

impl CoreError {
    /// The stable machine-readable code of this error, as the HTTP API returns it.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidName { what, .. } => match *what {
                "collection name" => "invalid_collection_name",
                "document id" => "invalid_document_id",
                _ => "invalid_id",
            },
            CoreError::ClockDrift { .. } => "clock_drift",
            CoreError::InvalidSettings(_) => "invalid_settings",
            CoreError::InvalidMetadata(_) => "invalid_metadata",
        }
    }
}
