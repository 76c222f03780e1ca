//! Store errors, sorted by what the caller should do: refuse the request (not found,
//! mismatch), or report an internal failure (the database or the disk).

use ragsync_core::{CollectionName, DocId};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("collection {0} does not exist")]
    CollectionNotFound(CollectionName),
    #[error("document {0} does not exist")]
    DocumentNotFound(DocId),
    /// A conditional write whose expected version is not the current winner.
    #[error("document {id} is at version {actual}, not {expected}")]
    VersionMismatch {
        id: DocId,
        expected: String,
        actual: String,
    },
    /// A document state from elsewhere that breaks the state invariants.
    #[error("invalid document state: {0}")]
    InvalidState(String),
    /// A page of a peer's feed that contradicts itself (a `next_since` past its head or before
    /// its rows, rows out of order): refused whole, moving nothing.
    #[error("invalid page: {0}")]
    InvalidPage(String),
    /// Vectors that are not one finite vector per chunk of one dimension.
    #[error("invalid embeddings: {0}")]
    InvalidEmbeddings(String),
    /// A refusal of the core layer (for example a clock too far ahead).
    #[error(transparent)]
    Core(#[from] ragsync_core::CoreError),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another process")]
    Locked(String),
    /// The data directory cannot hold a node: not a directory, or an unrecognised database.
    #[error("data directory {0}")]
    DataDir(String),
    /// The database holds something this build cannot read.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The transaction a write was grouped into failed (see `group.rs`); nothing of it is kept.
    #[error("the group of writes failed to commit: {0}")]
    GroupCommit(String),
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// True when a row from a peer failed because of the row itself: broken state invariants,
    /// a stamp reused for other content, bytes that do not hash to their id, an invalid name.
    /// It would fail the same way on every try, so the replication apply path parks it (and
    /// moves on). Every other failure is transient (the database busy or failing, the disk,
    /// a remote clock ahead by more than the drift bound, which time cures): the cursor stops
    /// before the row and the page is retried.
    pub fn is_invalid_row(&self) -> bool {
        match self {
            StoreError::InvalidState(_) => true,
            StoreError::Core(ragsync_core::CoreError::ClockDrift { .. }) => false,
            StoreError::Core(_) => true,
            _ => false,
        }
    }

    /// The stable machine-readable code of this error, as the HTTP API returns it.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::CollectionNotFound(_) => "collection_not_found",
            StoreError::DocumentNotFound(_) => "document_not_found",
            StoreError::VersionMismatch { .. } => "version_conflict",
            StoreError::InvalidState(_) => "invalid_state",
            StoreError::InvalidPage(_) => "invalid_page",
            StoreError::InvalidEmbeddings(_) => "invalid_vector",
            StoreError::Core(e) => e.code(),
            StoreError::Locked(_) => "data_dir_locked",
            StoreError::DataDir(_) => "invalid_data_dir",
            StoreError::Corrupt(_) => "store_corrupt",
            StoreError::Sqlite(_) | StoreError::Io(_) | StoreError::GroupCommit(_) => "store_error",
        }
    }
}
