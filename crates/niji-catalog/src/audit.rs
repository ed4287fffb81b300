//! The audit chain.
//!
//! Every approval, rejection, grant, revocation, budget change, query, pipeline run and
//! authentication failure appends an entry. Entry `n` stores `digest_n = SHA-256(digest_{n-1}
//! || canonical_n)`, where `digest_{n-1}` is the previous digest as 64 lowercase hex characters
//! (64 zeros before the first entry) and `canonical_n` is the entry as JSON with sorted keys:
//! `{"action":…,"actor":…,"details":…,"seq":…,"subject":…,"time":…}` (`details` is itself
//! canonical JSON, stored as written). Entries never hold values, tokens or identifiers: the
//! details of a query are its SQL digest, mode, privacy spent and result shape.
//!
//! Appends are serialized through the one-row `audit_head` table: the append first does
//! `UPDATE audit_head SET seq = seq + 1 … RETURNING seq, digest`, which takes the row lock on
//! PostgreSQL and the write lock on SQLite, so two appends can never read the same head.
//! The head also lets [`Catalog::verify_audit`] notice entries deleted from the end.

use serde::Serialize;
use serde_json::Value;

use crate::{BeginWrite, Catalog, Result, with_pool};

/// The digest before the first entry.
pub const GENESIS_DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Page size when reading the chain back.
const VERIFY_PAGE: i64 = 5000;

/// One stored audit entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// RFC 3339 UTC time with microseconds.
    pub time: String,
    /// Who acted: `principal:<name>`, `cli:<user>`, `pipeline:<name>`, `anonymous`.
    pub actor: String,
    /// What happened (`version.approve`, `project.grant`, `query`, `auth.failure`, …).
    pub action: String,
    /// What it happened to (`dataset_version:3`, `project:7`, …).
    pub subject: String,
    /// Canonical JSON with the particulars (never values or secrets).
    pub details: String,
    /// The previous entry's digest.
    pub prev_digest: String,
    /// This entry's digest.
    pub digest: String,
}

/// What [`Catalog::verify_audit`] found wrong first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum AuditProblem {
    /// The entry's content no longer matches its digest.
    Edited {
        /// The entry.
        seq: i64,
    },
    /// An entry is missing from the chain (the next present entry follows a gap).
    Deleted {
        /// The missing entry.
        seq: i64,
    },
    /// The entry does not link to the entry before it: moved, swapped or replaced.
    Reordered {
        /// The entry found out of place.
        seq: i64,
    },
    /// Entries after the last stored one are missing: the head records more.
    Truncated {
        /// The first missing entry.
        seq: i64,
    },
    /// An entry with a seq below 1, which no append writes: inserted behind the catalog's back.
    Inserted {
        /// Its seq.
        seq: i64,
    },
    /// The chain head does not match the last entry's digest.
    HeadMismatch {
        /// The last entry.
        seq: i64,
    },
}

impl AuditProblem {
    /// The entry the problem is at.
    pub fn seq(&self) -> i64 {
        match self {
            AuditProblem::Edited { seq }
            | AuditProblem::Deleted { seq }
            | AuditProblem::Reordered { seq }
            | AuditProblem::Truncated { seq }
            | AuditProblem::Inserted { seq }
            | AuditProblem::HeadMismatch { seq } => *seq,
        }
    }
}

impl std::fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditProblem::Edited { seq } => write!(f, "audit entry {seq} was edited (its digest does not match)"),
            AuditProblem::Deleted { seq } => write!(f, "audit entry {seq} was deleted (gap in the chain)"),
            AuditProblem::Reordered { seq } => {
                write!(f, "audit entry {seq} does not link to the entry before it (reordered or replaced)")
            }
            AuditProblem::Truncated { seq } => {
                write!(f, "audit entries from {seq} on were deleted (the chain head records more)")
            }
            AuditProblem::Inserted { seq } => {
                write!(f, "audit entry {seq} lies outside the chain (inserted, seq below 1)")
            }
            AuditProblem::HeadMismatch { seq } => {
                write!(f, "the audit chain head does not match entry {seq} (head or entry replaced)")
            }
        }
    }
}

/// The outcome of verifying the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Entries read.
    pub entries: i64,
    /// The last good digest (publish it elsewhere to anchor the chain).
    pub head_digest: String,
    /// The first problem, if any.
    pub problem: Option<AuditProblem>,
}

impl AuditReport {
    /// Whether the chain verified.
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// Canonical JSON: objects with keys sorted by byte order, no whitespace. Written here rather
/// than relying on serde_json's map order, which a feature flag elsewhere in the build could change.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The canonical form of an entry, as hashed.
pub fn canonical_entry(seq: i64, time: &str, actor: &str, action: &str, subject: &str, details: &str) -> String {
    let s = |v: &str| Value::String(v.to_owned()).to_string();
    format!(
        "{{\"action\":{},\"actor\":{},\"details\":{details},\"seq\":{seq},\"subject\":{},\"time\":{}}}",
        s(action),
        s(actor),
        s(subject),
        s(time)
    )
}

/// `SHA-256(prev_digest_hex || canonical)`, hex.
pub fn chain_digest(prev_digest: &str, canonical: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(prev_digest.as_bytes());
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// An entry to append.
#[derive(Debug, Clone)]
pub(crate) struct NewEntry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub subject: String,
    pub details: Value,
}

/// Append an entry inside the open transaction `$tx` (a `sqlx::Transaction`); evaluates to
/// the new seq. Must be the last statement group of the transaction that takes locks, so
/// every transaction takes the chain head last and none can deadlock on it.
macro_rules! append_in_tx {
    ($tx:expr, $entry:expr) => {{
        let entry: &$crate::audit::NewEntry<'_> = $entry;
        let (seq, prev): (i64, String) =
            sqlx::query_as("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, digest")
                .fetch_one(&mut *$tx)
                .await?;
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let details = $crate::audit::canonical_json(&entry.details);
        let canonical = $crate::audit::canonical_entry(seq, &time, entry.actor, entry.action, &entry.subject, &details);
        let digest = $crate::audit::chain_digest(&prev, &canonical);
        sqlx::query(
            "INSERT INTO audit_log (seq, time, actor, action, subject, details, prev_digest, digest) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seq)
        .bind(&time)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(&entry.subject)
        .bind(&details)
        .bind(&prev)
        .bind(&digest)
        .execute(&mut *$tx)
        .await?;
        sqlx::query("UPDATE audit_head SET digest = $1 WHERE id = 1").bind(&digest).execute(&mut *$tx).await?;
        seq
    }};
}
pub(crate) use append_in_tx;

#[derive(sqlx::FromRow)]
struct EntryRow {
    seq: i64,
    time: String,
    actor: String,
    action: String,
    subject: String,
    details: String,
    prev_digest: String,
    digest: String,
}

impl From<EntryRow> for AuditEntry {
    fn from(r: EntryRow) -> Self {
        AuditEntry {
            seq: r.seq,
            time: r.time,
            actor: r.actor,
            action: r.action,
            subject: r.subject,
            details: r.details,
            prev_digest: r.prev_digest,
            digest: r.digest,
        }
    }
}

const SELECT_ENTRIES: &str = "SELECT seq, time, actor, action, subject, details, prev_digest, digest FROM audit_log";

impl Catalog {
    /// Append an entry on its own (pipeline runs, queries, events of other components).
    /// Returns its seq.
    #[tracing::instrument(skip(self, details), fields(action))]
    pub async fn append_audit(&self, actor: &str, action: &str, subject: &str, details: Value) -> Result<i64> {
        let entry = NewEntry { actor, action, subject: subject.to_owned(), details };
        with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let seq = append_in_tx!(tx, &entry);
            tx.commit().await?;
            Ok(seq)
        })
    }

    /// Entries with `seq > after`, oldest first, at most `limit`.
    pub async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>> {
        let sql = format!("{SELECT_ENTRIES} WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows: Vec<EntryRow> =
            with_pool!(self, |p| sqlx::query_as(&sql).bind(after).bind(limit).fetch_all(p).await?);
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    /// The last `limit` entries, oldest first.
    pub async fn audit_tail(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let sql = format!("{SELECT_ENTRIES} ORDER BY seq DESC LIMIT $1");
        let mut rows: Vec<EntryRow> = with_pool!(self, |p| sqlx::query_as(&sql).bind(limit).fetch_all(p).await?);
        rows.reverse();
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    /// Walk the whole chain and report the first entry that was edited, deleted or moved.
    #[tracing::instrument(skip(self))]
    pub async fn verify_audit(&self) -> Result<AuditReport> {
        let mut prev = GENESIS_DIGEST.to_owned();
        let mut expected: i64 = 1;
        let mut entries: i64 = 0;
        let (below,): (Option<i64>,) = with_pool!(self, |p| {
            sqlx::query_as("SELECT MIN(seq) FROM audit_log WHERE seq < 1").fetch_one(p).await?
        });
        if let Some(seq) = below {
            return Ok(AuditReport { entries, head_digest: prev, problem: Some(AuditProblem::Inserted { seq }) });
        }
        loop {
            let page = self.audit_entries(expected - 1, VERIFY_PAGE).await?;
            if page.is_empty() {
                break;
            }
            for e in page {
                let problem = if e.seq > expected {
                    Some(AuditProblem::Deleted { seq: expected })
                } else if e.prev_digest != prev {
                    Some(AuditProblem::Reordered { seq: e.seq })
                } else {
                    let canonical = canonical_entry(e.seq, &e.time, &e.actor, &e.action, &e.subject, &e.details);
                    (chain_digest(&prev, &canonical) != e.digest).then_some(AuditProblem::Edited { seq: e.seq })
                };
                if problem.is_some() {
                    return Ok(AuditReport { entries, head_digest: prev, problem });
                }
                entries += 1;
                prev = e.digest;
                expected = e.seq + 1;
            }
        }
        let (head_seq, head_digest): (i64, String) = with_pool!(self, |p| {
            sqlx::query_as("SELECT seq, digest FROM audit_head WHERE id = 1").fetch_one(p).await?
        });
        let problem = if head_seq > expected - 1 {
            Some(AuditProblem::Truncated { seq: expected })
        } else if head_seq != expected - 1 || head_digest != prev {
            Some(AuditProblem::HeadMismatch { seq: expected - 1 })
        } else {
            None
        };
        Ok(AuditReport { entries, head_digest: prev, problem })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":{"z":[{"y":2,"x":"é\""}],"c":null}}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":{"c":null,"z":[{"x":"é\"","y":2}]},"b":1}"#);
    }

    #[test]
    fn digest_depends_on_previous_digest_and_every_field() {
        let base = canonical_entry(1, "t", "a", "act", "s", "{}");
        let d = chain_digest(GENESIS_DIGEST, &base);
        assert_eq!(d.len(), 64);
        assert_ne!(d, chain_digest(&"1".repeat(64), &base));
        for other in [
            canonical_entry(2, "t", "a", "act", "s", "{}"),
            canonical_entry(1, "u", "a", "act", "s", "{}"),
            canonical_entry(1, "t", "b", "act", "s", "{}"),
            canonical_entry(1, "t", "a", "acu", "s", "{}"),
            canonical_entry(1, "t", "a", "act", "r", "{}"),
            canonical_entry(1, "t", "a", "act", "s", "{\"k\":1}"),
        ] {
            assert_ne!(d, chain_digest(GENESIS_DIGEST, &other));
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        // Moving characters between adjacent fields must change the canonical form.
        assert_ne!(canonical_entry(1, "t", "ab", "c", "s", "{}"), canonical_entry(1, "t", "a", "bc", "s", "{}"));
        assert_ne!(
            canonical_entry(1, "t", "a\",\"x", "c", "s", "{}"),
            canonical_entry(1, "t", "a", "x\",\"c", "s", "{}")
        );
    }
}
