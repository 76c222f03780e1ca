//! `GET /v1/blobs/{cid}`: content by BLAKE3 id, streamed from the store, with byte ranges
//! (RFC 9110 §14; see [`resolve_range`]). `PUT /v1/blobs/{cid}`: a peer pushing to this node
//! uploads a content its pushed states reference; only wanted bytes that hash to `cid` are
//! kept.

use axum::body::Body;
use axum::extract::{Extension, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ragsync_core::ContentId;

use crate::AppState;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiBytes, ApiPath};
use crate::routes::content_stream::{ContentBody, Encoding};

pub(crate) async fn put(
    State(node): State<AppState>,
    Extension(who): Extension<Principal>,
    ApiPath(cid): ApiPath<String>,
    req: Request,
) -> ApiResult<Response> {
    who.require(Permission::Sync, None)?;
    let ApiBytes(body) = ApiBytes::from_request(req, &()).await?;
    let cid: ContentId = cid.parse()?;
    if ContentId::of(&body) != cid {
        return Err(ApiError::bad_request(
            "content_mismatch",
            format!("the bytes sent are not content {cid} (their BLAKE3 hash differs)"),
        ));
    }
    if !node.writing(move |s| s.put_wanted(&body)).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "content_not_wanted",
            format!("no state here references content {cid} without its bytes"),
        ));
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"stored": cid})),
    )
        .into_response())
}

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

    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match resolve_range(range, len) {
        RangeAnswer::Whole => (StatusCode::OK, 0, len),
        RangeAnswer::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeAnswer::Unsatisfiable => {
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
    };
    let body = ContentBody::new(
        &node,
        cid,
        (start, end),
        Encoding::Raw,
        (Vec::new(), Vec::new()),
        Some(end - start),
    );
    let mut resp = (status, Body::new(body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
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

/// What a `Range` header asks of a content.
#[derive(Debug, PartialEq)]
enum RangeAnswer {
    /// 200 with everything.
    Whole,
    /// 206 with bytes `start..end`.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Resolves a `Range` header against a content `len` bytes long, as RFC 9110 §14 asks:
/// - no header, a header that does not parse (or a range whose last byte precedes its
///   first), or an empty content: the whole content;
/// - one range: its bytes, its end cut at the content's end; a suffix longer than the
///   content (`bytes=-11` of 10 bytes) is the whole content, as a 206;
/// - several ranges, overlapping or not: the whole content with 200 (a server may ignore
///   `Range`; multipart answers are not served);
/// - nothing satisfiable (every range starts past the end, or `bytes=-0`): 416.
fn resolve_range(header: Option<&str>, len: u64) -> RangeAnswer {
    use http_range_header::{EndPosition, RangeUnsatisfiableError, StartPosition};
    let Some(header) = header.filter(|_| len > 0) else {
        return RangeAnswer::Whole;
    };
    let ranges = match http_range_header::parse_range_header(header) {
        Ok(parsed) => parsed.ranges,
        // `-0` asks for nothing; beside other ranges it is one unsatisfiable range of several.
        Err(RangeUnsatisfiableError::ZeroSuffix) if !header.contains(',') => {
            return RangeAnswer::Unsatisfiable;
        }
        Err(_) => return RangeAnswer::Whole,
    };
    let mut satisfiable = Vec::new();
    for r in &ranges {
        let (start, last) = match (r.start, r.end) {
            (StartPosition::FromLast(n), _) => (len.saturating_sub(n), len - 1),
            (StartPosition::Index(s), EndPosition::LastByte) => (s, len - 1),
            (StartPosition::Index(s), EndPosition::Index(e)) if e < s => {
                return RangeAnswer::Whole;
            }
            (StartPosition::Index(s), EndPosition::Index(e)) => (s, e.min(len - 1)),
        };
        if start < len {
            satisfiable.push((start, last + 1));
        }
    }
    match satisfiable[..] {
        [] => RangeAnswer::Unsatisfiable,
        [(start, end)] if ranges.len() == 1 => RangeAnswer::Part(start, end),
        _ => RangeAnswer::Whole,
    }
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).expect("digits and ASCII only")
}

#[cfg(test)]
mod tests {
    use super::RangeAnswer::*;
    use super::resolve_range;

    #[test]
    fn ranges_follow_rfc_9110() {
        let cases = [
            (None, Whole),
            (Some("bytes=0-3"), Part(0, 4)),
            (Some("bytes=5-"), Part(5, 10)),
            (Some("bytes=8-100"), Part(8, 10)),
            (Some("bytes=-3"), Part(7, 10)),
            (Some("bytes=-10"), Part(0, 10)),
            (Some("bytes=-11"), Part(0, 10)),
            (Some("bytes=10-"), Unsatisfiable),
            (Some("bytes=-0"), Unsatisfiable),
            (Some("bytes=0-5,-0"), Whole),
            (Some("bytes=20-30, 40-50"), Unsatisfiable),
            (Some("bytes=0-1, 4-5"), Whole),
            (Some("bytes=0-5, 3-8"), Whole),
            (Some("bytes=0-1, 40-50"), Whole),
            (Some("bytes=5-3"), Whole),
            (Some("items=0-3"), Whole),
            (Some("bytes=abc"), Whole),
        ];
        for (header, want) in cases {
            assert_eq!(resolve_range(header, 10), want, "{header:?}");
        }
        assert_eq!(resolve_range(Some("bytes=0-3"), 0), Whole);
    }
}
