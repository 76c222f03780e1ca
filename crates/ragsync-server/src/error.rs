//! The one error type of the HTTP layer: a status, a stable machine-readable `code` and a
//! human message, always answered as `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ragsync_core::CoreError;
use ragsync_store::StoreError;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The position of the refused item in a batch, when one item caused the refusal.
    pub index: Option<usize>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            index: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Internal failures are logged whole; the caller gets the code and no internals
        // (paths, SQL). A 502 or 503 is not internal: its message (the peer that did not
        // answer, the model endpoint that failed) is what the caller needs.
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = self.code, message = %self.message, "request failed");
            "internal error; the node's log has the details".to_string()
        } else {
            self.message
        };
        let mut body = error_body(self.code, &message);
        if let Some(i) = self.index {
            body["error"]["index"] = json!(i);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The one JSON shape of every refusal (a batch item's refusal adds `index`).
pub(crate) fn error_body(code: &str, message: &str) -> serde_json::Value {
    json!({"error": {"code": code, "message": message}})
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        Self::bad_request(e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::CollectionNotFound(_) | StoreError::DocumentNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            StoreError::VersionMismatch { .. } => StatusCode::CONFLICT,
            StoreError::InvalidState(_)
            | StoreError::InvalidPage(_)
            | StoreError::InvalidEmbeddings(_)
            | StoreError::Core(_) => StatusCode::BAD_REQUEST,
            StoreError::Locked(_)
            | StoreError::DataDir(_)
            | StoreError::Corrupt(_)
            | StoreError::Sqlite(_)
            | StoreError::GroupCommit(_)
            | StoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
