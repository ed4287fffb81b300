//! The audit trail: steward only.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use niji_catalog::{AuditEntry, AuditReport};
use serde::Deserialize;
use serde_json::{Value, json};

use super::query;
use crate::auth::Steward;
use crate::{ApiError, AppState};

/// Largest page.
const MAX_LIMIT: i64 = 1000;

/// Paging of the audit list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Entries after this seq (default: the last `limit` entries).
    after: Option<i64>,
    /// Page size (default 100, at most 1000).
    limit: Option<i64>,
}

/// `GET /v1/audit?after=&limit=`
pub async fn list(
    State(state): State<AppState>,
    _s: Steward,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let entries: Vec<AuditEntry> = match q.after {
        Some(after) => state.catalog.audit_entries(after, limit).await?,
        None => state.catalog.audit_tail(limit).await?,
    };
    Ok(Json(json!({ "entries": entries })))
}

/// `GET /v1/audit/verify`: 200 with the report whether or not the chain is intact; `valid`
/// says which, and `problem` names the first bad entry.
pub async fn verify(State(state): State<AppState>, _s: Steward) -> Result<Json<Value>, ApiError> {
    let r: AuditReport = state.catalog.verify_audit().await?;
    Ok(Json(json!({
        "valid": r.is_valid(),
        "entries": r.entries,
        "head_digest": r.head_digest,
        "problem": r.problem.as_ref().map(|p| json!({ "seq": p.seq(), "kind": p, "message": p.to_string() })),
    })))
}
