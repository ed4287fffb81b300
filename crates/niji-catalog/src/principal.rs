//! Principals and their bearer tokens.
//!
//! A token is 32 bytes from the operating system's RNG, shown once as `niji_<64 hex>`; the
//! catalog stores only its SHA-256 digest. [`Catalog::authenticate`] refuses unknown,
//! expired and revoked tokens (and tokens of revoked principals) and audits each failure
//! without the token.

use std::fmt;
use std::str::FromStr;

use rand::TryRngCore;
use serde::{Deserialize, Serialize};

use crate::audit::{NewEntry, append_in_tx};
use crate::{BeginWrite, Catalog, CatalogError, Result, now, sha256_hex, with_pool};

/// Prefix of every token.
pub const TOKEN_PREFIX: &str = "niji_";

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Queries projects they are a member of.
    Researcher,
    /// Reviews versions, manages projects, reads the audit trail.
    Steward,
    /// Registers dataset versions (the ETL job).
    Pipeline,
    /// Everything a steward can, plus principals and tokens.
    Admin,
}

impl Role {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Researcher => "researcher",
            Role::Steward => "steward",
            Role::Pipeline => "pipeline",
            Role::Admin => "admin",
        }
    }

    /// Whether the role may act as a data steward.
    pub fn is_steward(self) -> bool {
        matches!(self, Role::Steward | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Role> {
        match s {
            "researcher" => Ok(Role::Researcher),
            "steward" => Ok(Role::Steward),
            "pipeline" => Ok(Role::Pipeline),
            "admin" => Ok(Role::Admin),
            other => Err(CatalogError::UnknownRole(other.to_owned())),
        }
    }
}

/// A user or service known to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Creation time (unix seconds).
    pub created_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
}

impl Principal {
    /// How the principal appears as an audit actor.
    pub fn actor(&self) -> String {
        format!("principal:{}", self.name)
    }
}

/// A freshly issued token: the only time the secret exists outside its holder.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// Token id (not secret).
    pub id: i64,
    /// The secret, `niji_<64 hex>`.
    pub token: String,
    /// Expiry (unix seconds), if any.
    pub expires_at: Option<i64>,
}

/// A token's metadata (never the token or its digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    /// Token id.
    pub id: i64,
    /// Owner.
    pub principal_id: i64,
    /// Issue time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: Option<i64>,
    /// Revocation time.
    pub revoked_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct PrincipalRow {
    id: i64,
    name: String,
    role: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl TryFrom<PrincipalRow> for Principal {
    type Error = CatalogError;
    fn try_from(r: PrincipalRow) -> Result<Principal> {
        Ok(Principal {
            id: r.id,
            name: r.name,
            role: r.role.parse().map_err(|_| CatalogError::CorruptRow { table: "principal", column: "role" })?,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuthRow {
    token_id: i64,
    expires_at: Option<i64>,
    token_revoked_at: Option<i64>,
    id: i64,
    name: String,
    role: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

/// The digest stored for a token.
pub fn token_digest(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

fn well_formed(token: &str) -> bool {
    token
        .strip_prefix(TOKEN_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

const SELECT_PRINCIPAL: &str = "SELECT id, name, role, created_at, revoked_at FROM principal";

impl Catalog {
    /// Create a principal.
    #[tracing::instrument(skip(self))]
    pub async fn create_principal(&self, actor: &str, name: &str, role: Role) -> Result<Principal> {
        let id = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let exists: Option<(i64,)> =
                sqlx::query_as("SELECT id FROM principal WHERE name = $1").bind(name).fetch_optional(&mut *tx).await?;
            if exists.is_some() {
                return Err(CatalogError::DuplicatePrincipal(name.to_owned()));
            }
            let (id,): (i64,) =
                sqlx::query_as("INSERT INTO principal (name, role, created_at) VALUES ($1, $2, $3) RETURNING id")
                    .bind(name)
                    .bind(role.as_str())
                    .bind(now())
                    .fetch_one(&mut *tx)
                    .await?;
            let entry = NewEntry {
                actor,
                action: "principal.create",
                subject: format!("principal:{id}"),
                details: serde_json::json!({ "name": name, "role": role }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            id
        });
        self.principal(id).await
    }

    /// A principal by id.
    pub async fn principal(&self, id: i64) -> Result<Principal> {
        let sql = format!("{SELECT_PRINCIPAL} WHERE id = $1");
        let row: Option<PrincipalRow> = with_pool!(self, |p| sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        row.ok_or_else(|| CatalogError::UnknownPrincipal(id.to_string()))?.try_into()
    }

    /// A principal by name.
    pub async fn principal_by_name(&self, name: &str) -> Result<Principal> {
        let sql = format!("{SELECT_PRINCIPAL} WHERE name = $1");
        let row: Option<PrincipalRow> = with_pool!(self, |p| sqlx::query_as(&sql).bind(name).fetch_optional(p).await?);
        row.ok_or_else(|| CatalogError::UnknownPrincipal(name.to_owned()))?.try_into()
    }

    /// A principal by id (all digits) or name.
    pub async fn find_principal(&self, id_or_name: &str) -> Result<Principal> {
        match id_or_name.parse::<i64>() {
            Ok(id) => self.principal(id).await,
            Err(_) => self.principal_by_name(id_or_name).await,
        }
    }

    /// All principals.
    pub async fn principals(&self) -> Result<Vec<Principal>> {
        let sql = format!("{SELECT_PRINCIPAL} ORDER BY id");
        let rows: Vec<PrincipalRow> = with_pool!(self, |p| sqlx::query_as(&sql).fetch_all(p).await?);
        rows.into_iter().map(Principal::try_from).collect()
    }

    /// Issue a token for a principal. The returned secret is not stored anywhere.
    #[tracing::instrument(skip(self))]
    pub async fn issue_token(&self, actor: &str, principal: i64, expires_at: Option<i64>) -> Result<IssuedToken> {
        let p = self.principal(principal).await?;
        if p.revoked_at.is_some() {
            return Err(CatalogError::UnknownPrincipal(principal.to_string()));
        }
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut secret).map_err(|_| CatalogError::Rng)?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        let digest = token_digest(&token);
        let id = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO token (principal_id, digest, created_at, expires_at) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(principal)
            .bind(&digest)
            .bind(now())
            .bind(expires_at)
            .fetch_one(&mut *tx)
            .await?;
            let entry = NewEntry {
                actor,
                action: "token.issue",
                subject: format!("principal:{principal}"),
                details: serde_json::json!({ "token_id": id, "expires_at": expires_at }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            id
        });
        Ok(IssuedToken { id, token, expires_at })
    }

    /// Revoke one token.
    #[tracing::instrument(skip(self))]
    pub async fn revoke_token(&self, actor: &str, token_id: i64) -> Result<()> {
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let done = sqlx::query("UPDATE token SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now())
                .bind(token_id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(CatalogError::UnknownTokenId(token_id));
            }
            let entry = NewEntry {
                actor,
                action: "token.revoke",
                subject: format!("token:{token_id}"),
                details: serde_json::json!({}),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Revoke a principal and every token they hold.
    #[tracing::instrument(skip(self))]
    pub async fn revoke_principal(&self, actor: &str, principal: i64) -> Result<()> {
        let t = now();
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let done = sqlx::query("UPDATE principal SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(t)
                .bind(principal)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(CatalogError::UnknownPrincipal(principal.to_string()));
            }
            let tokens = sqlx::query("UPDATE token SET revoked_at = $1 WHERE principal_id = $2 AND revoked_at IS NULL")
                .bind(t)
                .bind(principal)
                .execute(&mut *tx)
                .await?;
            let entry = NewEntry {
                actor,
                action: "principal.revoke",
                subject: format!("principal:{principal}"),
                details: serde_json::json!({ "tokens_revoked": tokens.rows_affected() }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Tokens of a principal (metadata only).
    pub async fn tokens(&self, principal: i64) -> Result<Vec<TokenInfo>> {
        Ok(with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, principal_id, created_at, expires_at, revoked_at FROM token WHERE principal_id = $1 ORDER BY id",
            )
            .bind(principal)
            .fetch_all(p)
            .await?
        }))
    }

    /// Who holds this token. Unknown, malformed, expired and revoked tokens are refused and the
    /// failure is audited (with the token id when known, never the token).
    #[tracing::instrument(skip(self, token))]
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let t = now();
        let (failure, subject) = if !well_formed(token) {
            (CatalogError::MalformedToken, "token:malformed".to_owned())
        } else {
            let digest = token_digest(token);
            let row: Option<AuthRow> = with_pool!(self, |p| {
                sqlx::query_as(
                    "SELECT t.id AS token_id, t.expires_at, t.revoked_at AS token_revoked_at, \
                     p.id, p.name, p.role, p.created_at, p.revoked_at \
                     FROM token t JOIN principal p ON p.id = t.principal_id WHERE t.digest = $1",
                )
                .bind(&digest)
                .fetch_optional(p)
                .await?
            });
            match row {
                None => (CatalogError::UnknownToken, "token:unknown".to_owned()),
                Some(r) if r.token_revoked_at.is_some() || r.revoked_at.is_some() => {
                    (CatalogError::TokenRevoked { token_id: r.token_id }, format!("token:{}", r.token_id))
                }
                Some(r) if r.expires_at.is_some_and(|e| e <= t) => {
                    (CatalogError::TokenExpired { token_id: r.token_id }, format!("token:{}", r.token_id))
                }
                Some(r) => {
                    return PrincipalRow {
                        id: r.id,
                        name: r.name,
                        role: r.role,
                        created_at: r.created_at,
                        revoked_at: r.revoked_at,
                    }
                    .try_into();
                }
            }
        };
        tracing::info!(reason = %failure, "authentication failed");
        self.append_audit("anonymous", "auth.failure", &subject, serde_json::json!({ "reason": failure.to_string() }))
            .await?;
        Err(failure)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn token_shape_is_checked() {
        assert!(well_formed(&format!("niji_{}", "ab".repeat(32))));
        assert!(!well_formed(&format!("niji_{}", "AB".repeat(32))));
        assert!(!well_formed(&format!("nij_{}", "ab".repeat(32))));
        assert!(!well_formed("niji_abc"));
        assert!(!well_formed(""));
    }

    #[test]
    fn roles_round_trip_and_steward_rights() {
        for r in [Role::Researcher, Role::Steward, Role::Pipeline, Role::Admin] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!(Role::Admin.is_steward() && Role::Steward.is_steward());
        assert!(!Role::Researcher.is_steward() && !Role::Pipeline.is_steward());
    }
}
