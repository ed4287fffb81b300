//! `POST /v1/queries`: researchers only; the answer's encoding is chosen by `Accept`.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use niji_catalog::Mode;
use niji_query::{QueryAnswer, QueryRequest, encode};
use serde_json::json;

use super::body;
use crate::auth::Researcher;
use crate::error::ARROW_STREAM;
use crate::{ApiError, AppState};

/// Header carrying the query id.
pub const QUERY_ID_HEADER: &str = "x-niji-query-id";
/// Header carrying the privacy accounting as JSON (for CSV and Arrow answers, and JSON ones).
pub const PRIVACY_HEADER: &str = "x-niji-privacy";
/// Header carrying `{dataset: version_id}` as JSON.
pub const VERSIONS_HEADER: &str = "x-niji-dataset-versions";

/// An encoding of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`
    Json,
    /// `text/csv`
    Csv,
    /// `application/vnd.apache.arrow.stream`
    Arrow,
}

/// Pick the encoding from `Accept`: the supported media range with the highest `q`, the first
/// listed on ties; no header → JSON; nothing supported → None (406).
pub fn negotiate(accept: Option<&HeaderValue>) -> Option<Format> {
    let Some(value) = accept else { return Some(Format::Json) };
    let Ok(text) = value.to_str() else { return None };
    if text.trim().is_empty() {
        return Some(Format::Json);
    }
    let mut best: Option<(f32, Format)> = None;
    for item in text.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let mut q = 1.0_f32;
        for p in parts {
            if let Some((k, v)) = p.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        let format = match media.as_str() {
            "application/json" | "application/*" | "*/*" => Format::Json,
            "text/csv" | "text/*" => Format::Csv,
            m if m == ARROW_STREAM => Format::Arrow,
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, format));
        }
    }
    best.map(|(_, f)| f)
}

fn mode_label(mode: Option<Mode>) -> &'static str {
    mode.map_or("default", Mode::as_str)
}

/// JSON with every non-ASCII character escaped, so it fits in a header value.
fn ascii_json(v: &impl serde::Serialize) -> Result<HeaderValue, ApiError> {
    let text = serde_json::to_string(v).map_err(|e| ApiError::Internal(format!("encoding a header: {e}")))?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    HeaderValue::from_str(&out).map_err(|e| ApiError::Internal(format!("encoding a header: {e}")))
}

fn headers(a: &QueryAnswer, content_type: &'static str) -> Result<HeaderMap, ApiError> {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    let id = HeaderValue::from_str(&a.query_id).map_err(|e| ApiError::Internal(format!("query id header: {e}")))?;
    h.insert(HeaderName::from_static(QUERY_ID_HEADER), id);
    h.insert(HeaderName::from_static(PRIVACY_HEADER), ascii_json(&a.privacy)?);
    h.insert(HeaderName::from_static(VERSIONS_HEADER), ascii_json(&a.dataset_versions)?);
    Ok(h)
}

fn respond(format: Format, a: &QueryAnswer) -> Result<Response, ApiError> {
    Ok(match format {
        Format::Json => {
            let body = json!({
                "columns": encode::columns(&a.schema),
                "rows": encode::json_rows(&a.schema, &a.batches)?,
                "privacy": a.privacy,
                "dataset_versions": a.dataset_versions,
                "query_id": a.query_id,
            });
            (headers(a, "application/json")?, Json(body)).into_response()
        }
        Format::Csv => (headers(a, "text/csv; charset=utf-8; header=present")?, encode::csv(&a.schema, &a.batches)?)
            .into_response(),
        Format::Arrow => (headers(a, ARROW_STREAM)?, encode::arrow_ipc(&a.schema, &a.batches)?).into_response(),
    })
}

/// `POST /v1/queries` `{project, sql, mode?, epsilon?, delta?, dry_run?}`
pub async fn run(
    State(state): State<AppState>,
    Researcher(who): Researcher,
    request_headers: HeaderMap,
    payload: Result<Json<QueryRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let metrics = &state.metrics;
    // Refuse what cannot be encoded before anything runs or is charged.
    let Some(format) = negotiate(request_headers.get(ACCEPT)) else {
        metrics.query("default", "not_acceptable", None);
        return Err(ApiError::NotAcceptable);
    };
    let req = match body(payload) {
        Ok(r) => r,
        Err(e) => {
            metrics.query("default", e.parts().1, None);
            return Err(e);
        }
    };
    let started = Instant::now();
    let result = state.query.run(&who, &req).await;
    let took = started.elapsed();
    match result {
        Ok(answer) => {
            metrics.query(answer.privacy.mode.as_str(), "answered", Some(took));
            respond(format, &answer)
        }
        Err(e) => {
            metrics.query(mode_label(req.mode), e.code(), Some(took));
            Err(e.into())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pick(accept: &str) -> Option<Format> {
        negotiate(Some(&HeaderValue::from_str(accept).unwrap_or(HeaderValue::from_static("x/x"))))
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate(None), Some(Format::Json));
        assert_eq!(pick(""), Some(Format::Json));
        assert_eq!(pick("*/*"), Some(Format::Json));
        assert_eq!(pick("application/json"), Some(Format::Json));
        assert_eq!(pick("text/csv"), Some(Format::Csv));
        assert_eq!(pick("Application/Vnd.Apache.Arrow.Stream"), Some(Format::Arrow));
        assert_eq!(pick("text/html, text/csv;q=0.5, application/json;q=0.4"), Some(Format::Csv));
        assert_eq!(pick("application/json;q=0.1, application/vnd.apache.arrow.stream"), Some(Format::Arrow));
        assert_eq!(pick("text/csv, application/json"), Some(Format::Csv));
        assert_eq!(pick("text/csv;q=0, application/xml"), None);
        assert_eq!(pick("image/png"), None);
    }

    #[test]
    fn header_json_is_ascii_and_still_json() {
        let v = serde_json::json!({"column": "人数 😀", "x": 1});
        let h = ascii_json(&v).unwrap();
        let back: serde_json::Value = serde_json::from_slice(h.as_bytes()).unwrap();
        assert_eq!(back, v);
    }
}
