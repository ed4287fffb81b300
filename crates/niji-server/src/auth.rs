//! Bearer-token authentication against the catalog, and role checks.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use niji_catalog::Principal;

use crate::{ApiError, AppState};

/// Any principal with a valid token.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

/// A principal with the steward or admin role.
#[derive(Debug, Clone)]
pub struct Steward(pub Principal);

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or(ApiError::MissingToken)?;
    // A header that is not `Bearer <token>` goes to the catalog as-is: it is refused as
    // malformed and the failure is audited like any other.
    let value = header.to_str().unwrap_or_default();
    let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
    Ok(state.catalog.authenticate(token).await?)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Caller(authenticate(parts, state).await?))
    }
}

impl FromRequestParts<AppState> for Steward {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let p = authenticate(parts, state).await?;
        if !p.role.is_steward() {
            let subject = format!("route:{} {}", parts.method, parts.uri.path());
            state
                .catalog
                .append_audit(&p.actor(), "auth.forbidden", &subject, serde_json::json!({ "role": p.role }))
                .await?;
            return Err(ApiError::Forbidden("steward"));
        }
        Ok(Steward(p))
    }
}
