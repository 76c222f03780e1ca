//! `GET /v1/blobs/{cid}`: content by BLAKE3 id, with single byte ranges (RFC 9110 §14).

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ragsync_core::ContentId;

use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;

pub(crate) async fn get(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(cid): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    who.require(Permission::ReadBlobs, None)?;
    let cid: ContentId = cid.parse()?;
    let not_found = || ApiError::not_found("blob_not_found", format!("no content {cid} here"));
    let len = node
        .blocking(move |s| s.content_len(&cid))
        .await?
        .ok_or_else(not_found)?;

    // A Range header that does not parse is ignored, as RFC 9110 asks; several ranges, or any
    // range of an empty content, are answered with the whole content, which it also allows.
    let range = headers
        .get(header::RANGE)
        .filter(|_| len > 0)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| http_range_header::parse_range_header(v).ok());
    let (status, start, end) = match range.map(|r| r.validate(len)) {
        None => (StatusCode::OK, 0, len),
        Some(Err(_)) => {
            let mut resp = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the content is {len} bytes long"),
            )
            .into_response();
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(format!("bytes */{len}")),
            );
            return Ok(resp);
        }
        Some(Ok(ranges)) if ranges.len() == 1 => (
            StatusCode::PARTIAL_CONTENT,
            *ranges[0].start(),
            *ranges[0].end() + 1,
        ),
        Some(Ok(_)) => (StatusCode::OK, 0, len),
    };
    let bytes = node
        .blocking(move |s| s.content_range(&cid, start, end - start))
        .await?
        .ok_or_else(not_found)?;
    let mut resp = (status, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, header_value(format!("\"{cid}\"")));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            header_value(format!("bytes {start}-{}/{len}", end - 1)),
        );
    }
    Ok(resp)
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).expect("digits and ASCII only")
}
