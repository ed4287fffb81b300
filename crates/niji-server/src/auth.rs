//! Bearer-token authentication against the catalog, and role checks.
//!
//! Extractors, one per access rule of the route table ([`crate::routes::Access`]):
//! [`Caller`] (any valid token), [`Steward`] (steward or admin), [`Researcher`] (researcher)
//! and [`Operator`] (pipeline, steward or admin). A valid token with the wrong role is refused
//! with 403 `forbidden` and audited as `auth.forbidden`; token failures are audited by the
//! catalog. Neither audit entry ever holds the token.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use niji_catalog::{Principal, Role};

use crate::{ApiError, AppState};

/// Any principal with a valid token.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

/// A principal with the steward or admin role.
#[derive(Debug, Clone)]
pub struct Steward(pub Principal);

/// A principal with the researcher role (the only role that holds project memberships and
/// submits queries).
#[derive(Debug, Clone)]
pub struct Researcher(pub Principal);

/// A principal that may start pipeline runs and read them: pipeline, steward or admin.
#[derive(Debug, Clone)]
pub struct Operator(pub Principal);

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or(ApiError::MissingToken)?;
    // A header that is not `Bearer <token>` goes to the catalog as-is: it is refused as
    // malformed and the failure is audited like any other.
    let value = header.to_str().unwrap_or_default();
    let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
    Ok(state.catalog.authenticate(token).await?)
}

/// Authenticate, then require one of `roles`; `needed` names them in the refusal.
async fn with_role(
    parts: &Parts,
    state: &AppState,
    allowed: impl Fn(Role) -> bool,
    needed: &'static str,
) -> Result<Principal, ApiError> {
    let p = authenticate(parts, state).await?;
    if !allowed(p.role) {
        // The path may hold ids, never secrets; the query string is left out.
        let subject = format!("route:{} {}", parts.method, parts.uri.path());
        state
            .catalog
            .append_audit(&p.actor(), "auth.forbidden", &subject, serde_json::json!({ "role": p.role }))
            .await?;
        return Err(ApiError::Forbidden(needed));
    }
    Ok(p)
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
        Ok(Steward(with_role(parts, state, Role::is_steward, "steward").await?))
    }
}

impl FromRequestParts<AppState> for Researcher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Researcher(with_role(parts, state, |r| r == Role::Researcher, "researcher").await?))
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let allowed = |r: Role| r == Role::Pipeline || r.is_steward();
        Ok(Operator(with_role(parts, state, allowed, "pipeline, steward or admin").await?))
    }
}
