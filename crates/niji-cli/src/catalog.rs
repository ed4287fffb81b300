//! `niji catalog|project|principal|audit`: the data steward's commands.
//!
//! The CLI acts as a local administrator of the catalog (`NIJI_CATALOG_URL`, else
//! `<data-dir>/catalog.db`); audit entries record the actor as `cli:<user>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{NaiveDate, TimeZone, Utc};
use niji_catalog::project::NewProject;
use niji_catalog::{Budget, Catalog, Mode, Role, VersionStatus};

use crate::output;

/// `niji catalog …`
#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {
    /// Load (or update) the dataset definitions from a folder of *.toml files.
    Load {
        /// Folder of dataset definitions.
        #[arg(long, default_value = "catalog")]
        dir: PathBuf,
    },
    /// List datasets with their tables and approved version.
    Datasets,
    /// List dataset versions, newest first.
    Versions {
        /// Only versions with this status: pending, approved, rejected, retired.
        #[arg(long)]
        status: Option<String>,
        /// Only versions of this dataset.
        #[arg(long)]
        dataset: Option<String>,
    },
    /// Register a new pending version (what a pipeline run does).
    Register {
        /// Dataset name.
        dataset: String,
        /// Delta version of a table, as TABLE=VERSION (repeatable).
        #[arg(long = "table", value_parser = parse_table_version, required = true)]
        tables: Vec<(String, i64)>,
        /// Run report (JSON file).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Show what a steward reviews: run report, table and schema changes, re-identification summary.
    Review {
        /// Version id.
        id: i64,
    },
    /// Approve a pending version; the dataset's previously approved version is retired.
    Approve {
        /// Version id.
        id: i64,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Reject a pending version.
    Reject {
        /// Version id.
        id: i64,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Retire an approved version: researchers no longer see it.
    Retire {
        /// Version id.
        id: i64,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
    },
}

/// `niji project …`
#[derive(Debug, clap::Subcommand)]
pub enum ProjectCommand {
    /// Create a project.
    Create {
        /// Unique project name.
        name: String,
        /// Declared purpose of use.
        #[arg(long)]
        purpose: String,
        /// Dataset the project may read (repeatable).
        #[arg(long = "dataset", required = true)]
        datasets: Vec<String>,
        /// Allowed release mode: dp, sdc, extract (repeatable).
        #[arg(long = "mode", required = true)]
        modes: Vec<String>,
        /// Privacy budget ε.
        #[arg(long)]
        epsilon: f64,
        /// Privacy budget δ.
        #[arg(long, default_value_t = 0.0)]
        delta: f64,
        /// Expiry date (YYYY-MM-DD, end of day UTC).
        #[arg(long)]
        expires: Option<NaiveDate>,
    },
    /// List projects.
    List,
    /// Show a project: datasets, modes, members, budget spent and remaining.
    Show {
        /// Project id or name.
        project: String,
    },
    /// Grant a principal membership.
    Grant {
        /// Project id or name.
        project: String,
        /// Principal id or name.
        principal: String,
    },
    /// Revoke a principal's membership.
    Revoke {
        /// Project id or name.
        project: String,
        /// Principal id or name.
        principal: String,
    },
    /// Set the budget total (not below what is spent).
    Budget {
        /// Project id or name.
        project: String,
        /// ε total.
        #[arg(long)]
        epsilon: f64,
        /// δ total.
        #[arg(long, default_value_t = 0.0)]
        delta: f64,
    },
    /// Set or clear the expiry.
    Expiry {
        /// Project id or name.
        project: String,
        /// Expiry date (YYYY-MM-DD, end of day UTC).
        #[arg(long, conflicts_with = "never", required_unless_present = "never")]
        expires: Option<NaiveDate>,
        /// Remove the expiry.
        #[arg(long)]
        never: bool,
    },
}

/// `niji principal …`
#[derive(Debug, clap::Subcommand)]
pub enum PrincipalCommand {
    /// Create a principal and issue its first token (printed once, never stored).
    Create {
        /// Unique name.
        name: String,
        /// researcher, steward, pipeline or admin.
        #[arg(long)]
        role: String,
        /// Token lifetime in days (no expiry if absent).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Issue another token for a principal (printed once).
    Token {
        /// Principal id or name.
        principal: String,
        /// Token lifetime in days (no expiry if absent).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a principal and all its tokens, or one token with --token-id.
    Revoke {
        /// Principal id or name.
        principal: String,
        /// Revoke only this token.
        #[arg(long)]
        token_id: Option<i64>,
    },
    /// List principals and their tokens (ids and dates only).
    List,
}

/// `niji audit …`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain; fails naming the first edited, deleted or reordered entry.
    Verify,
    /// Show the most recent entries.
    List {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

fn parse_table_version(s: &str) -> Result<(String, i64), String> {
    let (t, v) = s.split_once('=').ok_or_else(|| "expected TABLE=VERSION".to_owned())?;
    let v = v.parse::<i64>().map_err(|_| "the version must be an integer".to_owned())?;
    Ok((t.to_owned(), v))
}

/// The audit actor of this CLI invocation.
fn actor() -> String {
    let user = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("cli:{user}")
}

fn end_of_day(d: NaiveDate) -> i64 {
    d.and_hms_opt(23, 59, 59).map_or(0, |t| Utc.from_utc_datetime(&t).timestamp())
}

fn time(ts: i64) -> String {
    Utc.timestamp_opt(ts, 0).single().map_or_else(|| ts.to_string(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
}

fn opt_time(ts: Option<i64>) -> String {
    ts.map_or_else(|| "-".to_owned(), time)
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")
}

pub(crate) async fn open(data_dir: &Path) -> anyhow::Result<Catalog> {
    Catalog::open(data_dir).await.context("opening the catalog")
}

/// Run `niji catalog …`.
pub fn run_catalog(cmd: CatalogCommand, data_dir: &Path) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let c = open(data_dir).await?;
        let me = actor();
        match cmd {
            CatalogCommand::Load { dir } => {
                let defs = niji_catalog::DatasetDef::load_dir(&dir)?;
                let changed = c.load_datasets(&me, &defs).await?;
                output::line(format!(
                    "{} dataset(s) read from {}, {} new or changed",
                    defs.len(),
                    dir.display(),
                    changed.len()
                ));
                for name in changed {
                    output::line(format!("  {name}"));
                }
            }
            CatalogCommand::Datasets => {
                for d in c.datasets().await? {
                    let approved =
                        c.approved_version(&d.name).await?.map_or_else(|| "none".to_owned(), |v| v.id.to_string());
                    output::line(format!(
                        "{}\t{}\ttables: {}\tpolicy: {} k={} rounding={}\tapproved version: {approved}",
                        d.name,
                        d.title,
                        d.tables.join(","),
                        d.policy.mode,
                        d.policy.k,
                        d.policy.rounding
                    ));
                }
            }
            CatalogCommand::Versions { status, dataset } => {
                let status = status.map(|s| s.parse::<VersionStatus>()).transpose().context("--status")?;
                output::line("id\tdataset\tstatus\tcreated\tby\ttables\treviewer\treason");
                for v in c.versions(status, dataset.as_deref()).await? {
                    let tables: Vec<String> = v.delta_versions.iter().map(|(t, n)| format!("{t}@{n}")).collect();
                    output::line(format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        v.id,
                        v.dataset,
                        v.status,
                        time(v.created_at),
                        v.created_by,
                        tables.join(","),
                        v.reviewer.as_deref().unwrap_or("-"),
                        v.reason.as_deref().unwrap_or("-")
                    ));
                }
            }
            CatalogCommand::Register { dataset, tables, report } => {
                let report = match report {
                    Some(path) => {
                        let text =
                            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?
                    }
                    None => serde_json::json!({}),
                };
                let tables: BTreeMap<String, i64> = tables.into_iter().collect();
                let id = c.register_version(&me, &dataset, &tables, &report).await?;
                output::line(format!("registered version {id} of {dataset} (pending review)"));
            }
            CatalogCommand::Review { id } => {
                let review = c.review(id).await?;
                output::line(serde_json::to_string_pretty(&review)?);
            }
            CatalogCommand::Approve { id, reason } => {
                c.approve(id, &me, &reason).await?;
                output::line(format!("version {id} approved"));
            }
            CatalogCommand::Reject { id, reason } => {
                c.reject(id, &me, &reason).await?;
                output::line(format!("version {id} rejected"));
            }
            CatalogCommand::Retire { id, reason } => {
                c.retire(id, &me, &reason).await?;
                output::line(format!("version {id} retired"));
            }
        }
        c.close().await;
        Ok(())
    })
}

fn show_project(p: &niji_catalog::Project) {
    output::line(format!("project {} ({})", p.id, p.name));
    output::line(format!("  purpose:   {}", p.purpose));
    output::line(format!("  datasets:  {}", p.datasets.join(", ")));
    let modes: Vec<&str> = p.modes.iter().map(|m| m.as_str()).collect();
    output::line(format!("  modes:     {}", modes.join(", ")));
    output::line(format!("  budget:    {}", p.budget));
    output::line(format!("  spent:     {}", p.spent));
    output::line(format!("  remaining: {}", p.remaining()));
    output::line(format!("  created:   {}", time(p.created_at)));
    output::line(format!("  expires:   {}", opt_time(p.expires_at)));
    for m in &p.members {
        let state = m.revoked_at.map_or_else(|| "member".to_owned(), |t| format!("revoked {}", time(t)));
        output::line(format!(
            "  member {} ({}): granted {} by {}, {state}",
            m.name,
            m.principal_id,
            time(m.granted_at),
            m.granted_by
        ));
    }
}

/// Run `niji project …`.
pub fn run_project(cmd: ProjectCommand, data_dir: &Path) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let c = open(data_dir).await?;
        let me = actor();
        match cmd {
            ProjectCommand::Create { name, purpose, datasets, modes, epsilon, delta, expires } => {
                let modes = modes.iter().map(|m| m.parse::<Mode>()).collect::<Result<Vec<_>, _>>()?;
                let p = NewProject {
                    name,
                    purpose,
                    datasets,
                    modes,
                    budget: Budget::from_f64(epsilon, delta)?,
                    expires_at: expires.map(end_of_day),
                };
                let id = c.create_project(&me, &p).await?;
                output::line(format!("created project {id} ({})", p.name));
            }
            ProjectCommand::List => {
                for p in c.projects().await? {
                    let members = p.members.iter().filter(|m| m.revoked_at.is_none()).count();
                    output::line(format!(
                        "{}\t{}\tdatasets: {}\tmembers: {members}\tremaining: {}\texpires: {}",
                        p.id,
                        p.name,
                        p.datasets.join(","),
                        p.remaining(),
                        opt_time(p.expires_at)
                    ));
                }
            }
            ProjectCommand::Show { project } => show_project(&c.find_project(&project).await?),
            ProjectCommand::Grant { project, principal } => {
                let (p, who) = (c.find_project(&project).await?, c.find_principal(&principal).await?);
                c.grant(&me, p.id, who.id).await?;
                output::line(format!("{} is a member of {}", who.name, p.name));
            }
            ProjectCommand::Revoke { project, principal } => {
                let (p, who) = (c.find_project(&project).await?, c.find_principal(&principal).await?);
                c.revoke(&me, p.id, who.id).await?;
                output::line(format!("{} is no longer a member of {}", who.name, p.name));
            }
            ProjectCommand::Budget { project, epsilon, delta } => {
                let p = c.find_project(&project).await?;
                let b = Budget::from_f64(epsilon, delta)?;
                c.set_budget(&me, p.id, b).await?;
                output::line(format!("budget of {} set to {b}", p.name));
            }
            ProjectCommand::Expiry { project, expires, never } => {
                let p = c.find_project(&project).await?;
                let at = if never { None } else { expires.map(end_of_day) };
                c.set_expiry(&me, p.id, at).await?;
                output::line(format!("{} expires: {}", p.name, opt_time(at)));
            }
        }
        c.close().await;
        Ok(())
    })
}

fn expiry_in_days(days: Option<u32>) -> Option<i64> {
    days.map(|d| Utc::now().timestamp() + i64::from(d) * 86_400)
}

/// Run `niji principal …`.
pub fn run_principal(cmd: PrincipalCommand, data_dir: &Path) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let c = open(data_dir).await?;
        let me = actor();
        match cmd {
            PrincipalCommand::Create { name, role, expires_in_days } => {
                let role: Role = role.parse()?;
                let p = c.create_principal(&me, &name, role).await?;
                let t = c.issue_token(&me, p.id, expiry_in_days(expires_in_days)).await?;
                output::line(format!("created principal {} ({}, {role})", p.id, p.name));
                output::line(format!("token {} (expires {}); shown once, store it now:", t.id, opt_time(t.expires_at)));
                output::line(&t.token);
            }
            PrincipalCommand::Token { principal, expires_in_days } => {
                let p = c.find_principal(&principal).await?;
                let t = c.issue_token(&me, p.id, expiry_in_days(expires_in_days)).await?;
                output::line(format!(
                    "token {} for {} (expires {}); shown once, store it now:",
                    t.id,
                    p.name,
                    opt_time(t.expires_at)
                ));
                output::line(&t.token);
            }
            PrincipalCommand::Revoke { principal, token_id } => {
                let p = c.find_principal(&principal).await?;
                match token_id {
                    Some(id) => {
                        if !c.tokens(p.id).await?.iter().any(|t| t.id == id) {
                            anyhow::bail!("token {id} does not belong to {}", p.name);
                        }
                        c.revoke_token(&me, id).await?;
                        output::line(format!("token {id} of {} revoked", p.name));
                    }
                    None => {
                        c.revoke_principal(&me, p.id).await?;
                        output::line(format!("{} and all its tokens revoked", p.name));
                    }
                }
            }
            PrincipalCommand::List => {
                for p in c.principals().await? {
                    let state = p.revoked_at.map_or_else(|| "active".to_owned(), |t| format!("revoked {}", time(t)));
                    output::line(format!("{}\t{}\t{}\t{state}", p.id, p.name, p.role));
                    for t in c.tokens(p.id).await? {
                        let tstate =
                            t.revoked_at.map_or_else(|| "active".to_owned(), |x| format!("revoked {}", time(x)));
                        output::line(format!(
                            "\ttoken {}\tissued {}\texpires {}\t{tstate}",
                            t.id,
                            time(t.created_at),
                            opt_time(t.expires_at)
                        ));
                    }
                }
            }
        }
        c.close().await;
        Ok(())
    })
}

/// Run `niji audit …`.
pub fn run_audit(cmd: AuditCommand, data_dir: &Path) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let c = open(data_dir).await?;
        let outcome = match cmd {
            AuditCommand::Verify => {
                let r = c.verify_audit().await?;
                match r.problem {
                    None => {
                        output::line(format!("audit chain OK: {} entries, head {}", r.entries, r.head_digest));
                        Ok(())
                    }
                    Some(problem) => Err(anyhow::anyhow!(
                        "audit chain BROKEN at entry {}: {problem} ({} entries verified before it)",
                        problem.seq(),
                        r.entries
                    )),
                }
            }
            AuditCommand::List { limit } => {
                for e in c.audit_tail(limit).await? {
                    output::line(format!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        e.seq, e.time, e.actor, e.action, e.subject, e.details
                    ));
                }
                Ok(())
            }
        };
        c.close().await;
        outcome
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn catalog_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog")
    }

    #[test]
    fn steward_workflow_then_tampering_fails_audit_verify() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        run_catalog(CatalogCommand::Load { dir: catalog_dir() }, d).unwrap();
        run_principal(
            PrincipalCommand::Create { name: "alice".into(), role: "researcher".into(), expires_in_days: Some(30) },
            d,
        )
        .unwrap();
        let bad_role = PrincipalCommand::Create { name: "bob".into(), role: "boss".into(), expires_in_days: None };
        assert!(run_principal(bad_role, d).unwrap_err().to_string().contains("boss"));
        run_project(
            ProjectCommand::Create {
                name: "diabetes".into(),
                purpose: "incidence".into(),
                datasets: vec!["claims".into()],
                modes: vec!["dp".into(), "sdc".into()],
                epsilon: 2.0,
                delta: 1e-7,
                expires: NaiveDate::from_ymd_opt(2030, 3, 31),
            },
            d,
        )
        .unwrap();
        run_project(ProjectCommand::Grant { project: "diabetes".into(), principal: "alice".into() }, d).unwrap();
        run_project(ProjectCommand::Budget { project: "diabetes".into(), epsilon: 3.0, delta: 1e-7 }, d).unwrap();
        run_project(ProjectCommand::Show { project: "diabetes".into() }, d).unwrap();
        run_catalog(
            CatalogCommand::Register { dataset: "claims".into(), tables: vec![("claim".into(), 0)], report: None },
            d,
        )
        .unwrap();
        run_catalog(CatalogCommand::Approve { id: 1, reason: "ok".into() }, d).unwrap();
        let again = run_catalog(CatalogCommand::Approve { id: 1, reason: "ok".into() }, d).unwrap_err();
        assert!(again.to_string().contains("approved"), "{again}");
        run_audit(AuditCommand::Verify, d).unwrap();

        // Edit entry 4 behind the catalog's back: verify fails and names it.
        let rt = runtime().unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let url = format!("sqlite://{}", d.join("catalog.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("UPDATE audit_log SET subject = 'project:999' WHERE seq = 4").execute(&mut c).await.unwrap();
        });
        let e = run_audit(AuditCommand::Verify, d).unwrap_err().to_string();
        assert!(e.contains("entry 4") && e.contains("edited"), "{e}");
    }
}
