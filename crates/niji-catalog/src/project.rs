//! Projects, members and the privacy budget ledger.
//!
//! Budgets are exact integers so that no rounding can let a ledger pass its total: ε in
//! micro-ε (10⁻⁶), δ in pico-δ (10⁻¹²). A charge is ONE conditional statement,
//!
//! ```sql
//! UPDATE project SET epsilon_spent = epsilon_spent + $1, delta_spent = delta_spent + $2
//!  WHERE id = $3 AND epsilon_spent + $1 <= epsilon_total AND delta_spent + $2 <= delta_total …
//!  RETURNING …
//! ```
//!
//! plus a ledger row in the same transaction: the database applies it atomically under any
//! concurrency (row lock on PostgreSQL, the write lock on SQLite), and CHECK constraints in
//! the schema refuse `spent > total` whatever the code does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::audit::{NewEntry, append_in_tx};
use crate::{BeginWrite, Catalog, CatalogError, Result, now, with_pool};

/// Micro-ε per ε.
pub const EPSILON_UNIT: f64 = 1e6;
/// Pico-δ per δ.
pub const DELTA_UNIT: f64 = 1e12;
/// Largest ε accepted (a budget, not a meaningful privacy guarantee, at that point).
pub const MAX_EPSILON: f64 = 1e6;

/// How a project may release results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Differential privacy through OpenDP, charged to the budget.
    Dp,
    /// Statistical disclosure control: k-threshold suppression and rounding.
    Sdc,
    /// Row-level extract with project-keyed pseudonyms.
    Extract,
}

impl Mode {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Dp => "dp",
            Mode::Sdc => "sdc",
            Mode::Extract => "extract",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "dp" => Ok(Mode::Dp),
            "sdc" => Ok(Mode::Sdc),
            "extract" => Ok(Mode::Extract),
            other => Err(CatalogError::UnknownMode(other.to_owned())),
        }
    }
}

/// An (ε, δ) amount in exact ledger units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Budget {
    /// ε in micro-ε.
    pub epsilon_micro: i64,
    /// δ in pico-δ.
    pub delta_pico: i64,
}

impl Budget {
    /// Exact amounts in ledger units.
    pub fn new(epsilon_micro: i64, delta_pico: i64) -> Result<Budget> {
        if epsilon_micro < 0 || epsilon_micro as f64 > MAX_EPSILON * EPSILON_UNIT {
            return Err(CatalogError::InvalidBudget { what: "epsilon", max: MAX_EPSILON });
        }
        if !(0..=DELTA_UNIT as i64).contains(&delta_pico) {
            return Err(CatalogError::InvalidBudget { what: "delta", max: 1.0 });
        }
        Ok(Budget { epsilon_micro, delta_pico })
    }

    /// From floating ε and δ, rounded to the nearest ledger unit.
    pub fn from_f64(epsilon: f64, delta: f64) -> Result<Budget> {
        if !(epsilon.is_finite() && (0.0..=MAX_EPSILON).contains(&epsilon)) {
            return Err(CatalogError::InvalidBudget { what: "epsilon", max: MAX_EPSILON });
        }
        if !(delta.is_finite() && (0.0..=1.0).contains(&delta)) {
            return Err(CatalogError::InvalidBudget { what: "delta", max: 1.0 });
        }
        #[allow(clippy::cast_possible_truncation)] // range checked above
        Budget::new((epsilon * EPSILON_UNIT).round() as i64, (delta * DELTA_UNIT).round() as i64)
    }

    /// ε as a float.
    pub fn epsilon(&self) -> f64 {
        self.epsilon_micro as f64 / EPSILON_UNIT
    }

    /// δ as a float.
    pub fn delta(&self) -> f64 {
        self.delta_pico as f64 / DELTA_UNIT
    }

    /// `self - other`, floored at zero.
    pub fn saturating_sub(&self, other: &Budget) -> Budget {
        Budget {
            epsilon_micro: (self.epsilon_micro - other.epsilon_micro).max(0),
            delta_pico: (self.delta_pico - other.delta_pico).max(0),
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ε={} δ={:e}", self.epsilon(), self.delta())
    }
}

/// A project member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Principal id.
    pub principal_id: i64,
    /// Principal name.
    pub name: String,
    /// When granted (unix seconds).
    pub granted_at: i64,
    /// Who granted.
    pub granted_by: String,
    /// When revoked, if revoked.
    pub revoked_at: Option<i64>,
}

/// A project: the "safe project" of the Five Safes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Declared purpose of use.
    pub purpose: String,
    /// Allowed release modes.
    pub modes: Vec<Mode>,
    /// Datasets the project may read.
    pub datasets: Vec<String>,
    /// Budget total.
    pub budget: Budget,
    /// Budget spent so far.
    pub spent: Budget,
    /// Creation time (unix seconds).
    pub created_at: i64,
    /// Expiry (unix seconds), if any.
    pub expires_at: Option<i64>,
    /// Members, current and revoked.
    pub members: Vec<Member>,
}

impl Project {
    /// Budget left.
    pub fn remaining(&self) -> Budget {
        self.budget.saturating_sub(&self.spent)
    }

    /// Whether the project has expired at `now` (unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// Whether a principal is a current member.
    pub fn is_member(&self, principal_id: i64) -> bool {
        self.members.iter().any(|m| m.principal_id == principal_id && m.revoked_at.is_none())
    }
}

/// What to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewProject {
    /// Unique name.
    pub name: String,
    /// Declared purpose.
    pub purpose: String,
    /// Datasets (must be in the catalog).
    pub datasets: Vec<String>,
    /// Allowed modes (at least one).
    pub modes: Vec<Mode>,
    /// Budget total.
    pub budget: Budget,
    /// Expiry (unix seconds).
    pub expires_at: Option<i64>,
}

/// A successful charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Charge {
    /// Ledger row id.
    pub ledger_id: i64,
    /// Spent after this charge.
    pub spent: Budget,
    /// Left after this charge.
    pub remaining: Budget,
}

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: i64,
    name: String,
    purpose: String,
    modes: String,
    epsilon_total: i64,
    delta_total: i64,
    epsilon_spent: i64,
    delta_spent: i64,
    created_at: i64,
    expires_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    principal_id: i64,
    name: String,
    granted_at: i64,
    granted_by: String,
    revoked_at: Option<i64>,
}

fn modes_to_text(modes: &[Mode]) -> String {
    modes.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
}

fn modes_from_text(text: &str) -> Result<Vec<Mode>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| CatalogError::CorruptRow { table: "project", column: "modes" }))
        .collect()
}

const SELECT_PROJECT: &str = "SELECT id, name, purpose, modes, epsilon_total, delta_total, epsilon_spent, delta_spent, \
     created_at, expires_at FROM project";

impl Catalog {
    /// Create a project. Returns its id.
    #[tracing::instrument(skip(self, p), fields(name = %p.name))]
    pub async fn create_project(&self, actor: &str, p: &NewProject) -> Result<i64> {
        if p.datasets.is_empty() {
            return Err(CatalogError::InvalidProject("a project needs at least one dataset"));
        }
        if p.modes.is_empty() {
            return Err(CatalogError::InvalidProject("a project needs at least one mode"));
        }
        for d in &p.datasets {
            self.dataset(d).await?;
        }
        let mut modes = p.modes.clone();
        modes.sort();
        modes.dedup();
        let mut datasets = p.datasets.clone();
        datasets.sort();
        datasets.dedup();
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let exists: Option<(i64,)> =
                sqlx::query_as("SELECT id FROM project WHERE name = $1").bind(&p.name).fetch_optional(&mut *tx).await?;
            if exists.is_some() {
                return Err(CatalogError::DuplicateProject(p.name.clone()));
            }
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO project (name, purpose, modes, epsilon_total, delta_total, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(&p.name)
            .bind(&p.purpose)
            .bind(modes_to_text(&modes))
            .bind(p.budget.epsilon_micro)
            .bind(p.budget.delta_pico)
            .bind(now())
            .bind(p.expires_at)
            .fetch_one(&mut *tx)
            .await?;
            for d in &datasets {
                sqlx::query("INSERT INTO project_dataset (project_id, dataset) VALUES ($1, $2)")
                    .bind(id)
                    .bind(d)
                    .execute(&mut *tx)
                    .await?;
            }
            let entry = NewEntry {
                actor,
                action: "project.create",
                subject: format!("project:{id}"),
                details: serde_json::json!({
                    "name": p.name,
                    "purpose_sha256": crate::sha256_hex(p.purpose.as_bytes()),
                    "datasets": datasets,
                    "modes": modes,
                    "epsilon_micro": p.budget.epsilon_micro,
                    "delta_pico": p.budget.delta_pico,
                    "expires_at": p.expires_at,
                }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(id)
        })
    }

    /// A project by id, with datasets and members.
    pub async fn project(&self, id: i64) -> Result<Project> {
        let sql = format!("{SELECT_PROJECT} WHERE id = $1");
        let row: Option<ProjectRow> = with_pool!(self, |p| sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        let row = row.ok_or_else(|| CatalogError::UnknownProject(id.to_string()))?;
        self.complete_project(row).await
    }

    /// A project by name.
    pub async fn project_by_name(&self, name: &str) -> Result<Project> {
        let sql = format!("{SELECT_PROJECT} WHERE name = $1");
        let row: Option<ProjectRow> = with_pool!(self, |p| sqlx::query_as(&sql).bind(name).fetch_optional(p).await?);
        let row = row.ok_or_else(|| CatalogError::UnknownProject(name.to_owned()))?;
        self.complete_project(row).await
    }

    /// A project by id (all digits) or name.
    pub async fn find_project(&self, id_or_name: &str) -> Result<Project> {
        match id_or_name.parse::<i64>() {
            Ok(id) => self.project(id).await,
            Err(_) => self.project_by_name(id_or_name).await,
        }
    }

    /// All projects.
    pub async fn projects(&self) -> Result<Vec<Project>> {
        let sql = format!("{SELECT_PROJECT} ORDER BY id");
        let rows: Vec<ProjectRow> = with_pool!(self, |p| sqlx::query_as(&sql).fetch_all(p).await?);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.complete_project(row).await?);
        }
        Ok(out)
    }

    async fn complete_project(&self, row: ProjectRow) -> Result<Project> {
        let datasets: Vec<(String,)> = with_pool!(self, |p| {
            sqlx::query_as("SELECT dataset FROM project_dataset WHERE project_id = $1 ORDER BY dataset")
                .bind(row.id)
                .fetch_all(p)
                .await?
        });
        let members: Vec<MemberRow> = with_pool!(self, |p| {
            sqlx::query_as(
                "SELECT m.principal_id, p.name, m.granted_at, m.granted_by, m.revoked_at \
                 FROM project_member m JOIN principal p ON p.id = m.principal_id \
                 WHERE m.project_id = $1 ORDER BY m.principal_id",
            )
            .bind(row.id)
            .fetch_all(p)
            .await?
        });
        Ok(Project {
            id: row.id,
            name: row.name,
            purpose: row.purpose,
            modes: modes_from_text(&row.modes)?,
            datasets: datasets.into_iter().map(|(d,)| d).collect(),
            budget: Budget { epsilon_micro: row.epsilon_total, delta_pico: row.delta_total },
            spent: Budget { epsilon_micro: row.epsilon_spent, delta_pico: row.delta_spent },
            created_at: row.created_at,
            expires_at: row.expires_at,
            members: members
                .into_iter()
                .map(|m| Member {
                    principal_id: m.principal_id,
                    name: m.name,
                    granted_at: m.granted_at,
                    granted_by: m.granted_by,
                    revoked_at: m.revoked_at,
                })
                .collect(),
        })
    }

    /// Make a principal a member of a project (again, if they were revoked).
    #[tracing::instrument(skip(self))]
    pub async fn grant(&self, actor: &str, project: i64, principal: i64) -> Result<()> {
        self.project(project).await?;
        self.principal(principal).await?;
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            sqlx::query(
                "INSERT INTO project_member (project_id, principal_id, granted_at, granted_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (project_id, principal_id) DO UPDATE \
                 SET granted_at = excluded.granted_at, granted_by = excluded.granted_by, revoked_at = NULL",
            )
            .bind(project)
            .bind(principal)
            .bind(now())
            .bind(actor)
            .execute(&mut *tx)
            .await?;
            let entry = NewEntry {
                actor,
                action: "project.grant",
                subject: format!("project:{project}"),
                details: serde_json::json!({ "principal_id": principal }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Remove a principal from a project.
    #[tracing::instrument(skip(self))]
    pub async fn revoke(&self, actor: &str, project: i64, principal: i64) -> Result<()> {
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let done = sqlx::query(
                "UPDATE project_member SET revoked_at = $1 \
                 WHERE project_id = $2 AND principal_id = $3 AND revoked_at IS NULL",
            )
            .bind(now())
            .bind(project)
            .bind(principal)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(CatalogError::NotAMember { project, principal });
            }
            let entry = NewEntry {
                actor,
                action: "project.revoke",
                subject: format!("project:{project}"),
                details: serde_json::json!({ "principal_id": principal }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Set a project's budget total; refused if below what is already spent.
    #[tracing::instrument(skip(self))]
    pub async fn set_budget(&self, actor: &str, project: i64, total: Budget) -> Result<()> {
        self.project(project).await?;
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let done = sqlx::query(
                "UPDATE project SET epsilon_total = $1, delta_total = $2 \
                 WHERE id = $3 AND epsilon_spent <= $1 AND delta_spent <= $2",
            )
            .bind(total.epsilon_micro)
            .bind(total.delta_pico)
            .bind(project)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(CatalogError::BudgetBelowSpent { project });
            }
            let entry = NewEntry {
                actor,
                action: "project.budget",
                subject: format!("project:{project}"),
                details: serde_json::json!({ "epsilon_micro": total.epsilon_micro, "delta_pico": total.delta_pico }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Set or clear a project's expiry (unix seconds).
    #[tracing::instrument(skip(self))]
    pub async fn set_expiry(&self, actor: &str, project: i64, expires_at: Option<i64>) -> Result<()> {
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let done = sqlx::query("UPDATE project SET expires_at = $1 WHERE id = $2")
                .bind(expires_at)
                .bind(project)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(CatalogError::UnknownProject(project.to_string()));
            }
            let entry = NewEntry {
                actor,
                action: "project.expiry",
                subject: format!("project:{project}"),
                details: serde_json::json!({ "expires_at": expires_at }),
            };
            append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Charge `cost` to a project's budget, atomically: either the whole charge fits and is
    /// recorded in the ledger, or nothing changes and [`CatalogError::BudgetExceeded`] (or
    /// `ProjectExpired`, `UnknownProject`) is returned.
    #[tracing::instrument(skip(self, principal, query_id))]
    pub async fn charge(&self, project: i64, principal: &str, query_id: Option<&str>, cost: Budget) -> Result<Charge> {
        let cost = Budget::new(cost.epsilon_micro, cost.delta_pico)?;
        let t = now();
        let outcome: Option<(i64, Budget, Budget)> = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
                "UPDATE project SET epsilon_spent = epsilon_spent + $1, delta_spent = delta_spent + $2 \
                 WHERE id = $3 AND epsilon_spent + $1 <= epsilon_total AND delta_spent + $2 <= delta_total \
                 AND (expires_at IS NULL OR expires_at > $4) \
                 RETURNING epsilon_spent, delta_spent, epsilon_total, delta_total",
            )
            .bind(cost.epsilon_micro)
            .bind(cost.delta_pico)
            .bind(project)
            .bind(t)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => {
                    tx.rollback().await?;
                    None
                }
                Some((es, ds, et, dt)) => {
                    let (ledger_id,): (i64,) = sqlx::query_as(
                        "INSERT INTO budget_ledger \
                         (project_id, query_id, principal, epsilon, delta, epsilon_after, delta_after, charged_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    )
                    .bind(project)
                    .bind(query_id)
                    .bind(principal)
                    .bind(cost.epsilon_micro)
                    .bind(cost.delta_pico)
                    .bind(es)
                    .bind(ds)
                    .bind(t)
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Some((
                        ledger_id,
                        Budget { epsilon_micro: es, delta_pico: ds },
                        Budget { epsilon_micro: et, delta_pico: dt },
                    ))
                }
            }
        });
        match outcome {
            Some((ledger_id, spent, total)) => Ok(Charge { ledger_id, spent, remaining: total.saturating_sub(&spent) }),
            None => {
                let p = self.project(project).await?;
                if p.is_expired(t) {
                    Err(CatalogError::ProjectExpired { project })
                } else {
                    Err(CatalogError::BudgetExceeded { project })
                }
            }
        }
    }

    /// The ledger of a project: (ledger id, query id, ε micro, δ pico), oldest first.
    pub async fn ledger(&self, project: i64) -> Result<Vec<(i64, Option<String>, Budget)>> {
        let rows: Vec<(i64, Option<String>, i64, i64)> = with_pool!(self, |p| {
            sqlx::query_as("SELECT id, query_id, epsilon, delta FROM budget_ledger WHERE project_id = $1 ORDER BY id")
                .bind(project)
                .fetch_all(p)
                .await?
        });
        Ok(rows.into_iter().map(|(id, q, e, d)| (id, q, Budget { epsilon_micro: e, delta_pico: d })).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn budget_units_are_exact() {
        let b = Budget::from_f64(1.0, 1e-6).unwrap();
        assert_eq!(b, Budget { epsilon_micro: 1_000_000, delta_pico: 1_000_000 });
        assert_eq!(Budget::from_f64(0.1, 0.0).unwrap().epsilon_micro, 100_000);
        assert!(Budget::from_f64(-0.1, 0.0).is_err());
        assert!(Budget::from_f64(f64::NAN, 0.0).is_err());
        assert!(Budget::from_f64(1.0, 1.5).is_err());
        assert!(Budget::new(-1, 0).is_err());
    }

    #[test]
    fn modes_round_trip() {
        let modes = [Mode::Dp, Mode::Sdc, Mode::Extract];
        assert_eq!(modes_from_text(&modes_to_text(&modes)).unwrap(), modes);
        assert!("DP".parse::<Mode>().is_err());
    }
}
