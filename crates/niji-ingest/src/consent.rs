//! The consent registry (`consent.csv`, docs/FORMATS.md §5) and its semantics per dataset.
//!
//! Rows carry the person's identifiers; they are linked with [`niji_pseudo::linkage::link`],
//! the same linkage every source uses, and kept under each linkage key the row yields (ID1,
//! ID2, source id), so a consent given with the insurance card applies to a receipt and one
//! given with the kana name applies to a care statement of the same person.
//!
//! Semantics, per dataset ([`ConsentPolicy`]):
//! - the registry holds, per person and purpose, dated statuses (`opt-in`, `opt-out`,
//!   `withdrawn`); the **latest record effective on or before `as_of`** is in force (a record
//!   dated after `as_of` is not yet in force; on equal dates the later line wins);
//! - `opt-in` in force → include; `opt-out` or `withdrawn` in force → exclude;
//! - no record in force → include under [`ConsentPolicy::OptOut`] (the 次世代医療基盤法 model:
//!   use unless the person objected), exclude under [`ConsentPolicy::OptIn`] (a research
//!   cohort: use only with consent).
//!
//! A malformed row refuses the whole registry ([`IngestError::ConsentRow`]): skipping it could
//! silently ignore someone's opt-out.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use niji_cdm::Sex;
use niji_pseudo::linkage::{Identifiers, PersonLink, link};
use niji_pseudo::{PseudoError, PseudonymKey};

use crate::receipt::fields;
use crate::{IngestError, Result};

/// How a dataset treats people without a consent record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsentPolicy {
    /// Include unless the person opted out (default).
    #[default]
    OptOut,
    /// Include only people who opted in.
    OptIn,
}

impl std::str::FromStr for ConsentPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "opt-out" => Ok(ConsentPolicy::OptOut),
            "opt-in" => Ok(ConsentPolicy::OptIn),
            _ => Err("expected opt-out or opt-in".into()),
        }
    }
}

/// A consent status as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    /// Consent given.
    OptIn,
    /// Objection.
    OptOut,
    /// An earlier consent withdrawn.
    Withdrawn,
}

/// Why a record is excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExcludeReason {
    /// An opt-out is in force.
    OptedOut,
    /// A withdrawal is in force.
    Withdrawn,
    /// Opt-in dataset and no opt-in in force.
    NoOptIn,
}

impl ExcludeReason {
    /// Stable code.
    pub fn code(self) -> &'static str {
        match self {
            ExcludeReason::OptedOut => "opted_out",
            ExcludeReason::Withdrawn => "withdrawn",
            ExcludeReason::NoOptIn => "no_opt_in",
        }
    }
}

/// The decision for one person, purpose and date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentDecision {
    /// The person's records may be used.
    Include,
    /// The person's records must not be used.
    Exclude(ExcludeReason),
}

#[derive(Debug, Clone)]
struct Entry {
    purpose: String,
    status: ConsentStatus,
    effective: NaiveDate,
    line: u64,
}

/// The loaded registry. Holds pseudonyms only, never identifiers.
#[derive(Debug, Clone, Default)]
pub struct ConsentRegistry {
    policy: ConsentPolicy,
    by_key: HashMap<String, Vec<Entry>>,
    rows: u64,
}

const COLUMNS: [&str; 10] = [
    "insurer_number",
    "kigo",
    "bango",
    "branch",
    "kana_name",
    "birth_date",
    "sex",
    "purpose",
    "status",
    "effective_date",
];
const PURPOSES: [&str; 3] = ["research", "public-health", "commercial-research"];

impl ConsentRegistry {
    /// Read `consent.csv` (UTF-8, header line) and link every row with `key`.
    pub fn load(path: &Path, key: &PseudonymKey) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| IngestError::Read { path: path.to_owned(), source })?;
        let text = String::from_utf8(bytes).map_err(|_| IngestError::ConsentRow {
            path: path.to_owned(),
            line: 1,
            field: "file",
            reason: "not UTF-8".into(),
        })?;
        Self::parse(path, &text, key)
    }

    /// Parse registry text (see [`ConsentRegistry::load`]).
    pub fn parse(path: &Path, text: &str, key: &PseudonymKey) -> Result<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = fields::records(text);
        let Some((_, header)) = lines.next() else {
            return Err(IngestError::Header { path: path.to_owned(), reason: "empty file".into() });
        };
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let mut idx = [0usize; 10];
        for (i, col) in COLUMNS.iter().enumerate() {
            idx[i] = names.iter().position(|n| n == col).ok_or_else(|| IngestError::Header {
                path: path.to_owned(),
                reason: format!("missing column `{col}`"),
            })?;
        }
        let mut reg = ConsentRegistry::default();
        for (line, raw) in lines {
            let cells: Vec<&str> = raw.split(',').map(|c| c.trim().trim_matches('"')).collect();
            let cell = |i: usize| cells.get(idx[i]).copied().unwrap_or("");
            let bad = |field: &'static str, reason: &str| IngestError::ConsentRow {
                path: path.to_owned(),
                line,
                field,
                reason: reason.to_owned(),
            };
            let opt = |i: usize| -> Option<&str> { Some(cell(i)).filter(|v| !v.is_empty()) };
            let birth = fields::date(cell(5))
                .map_err(|e| bad("birth_date", e.detail()))?
                .ok_or_else(|| bad("birth_date", "required"))?;
            let sex = Sex::parse(cell(6)).map_err(|_| bad("sex", "expected 1, 2, M, F, male or female"))?;
            let purpose = cell(7);
            if !PURPOSES.contains(&purpose) {
                return Err(bad("purpose", "expected research, public-health or commercial-research"));
            }
            let status = match cell(8) {
                "opt-in" => ConsentStatus::OptIn,
                "opt-out" => ConsentStatus::OptOut,
                "withdrawn" => ConsentStatus::Withdrawn,
                _ => return Err(bad("status", "expected opt-in, opt-out or withdrawn")),
            };
            let effective = fields::date(cell(9))
                .map_err(|e| bad("effective_date", e.detail()))?
                .ok_or_else(|| bad("effective_date", "required"))?;
            let ids = Identifiers {
                insurer_number: opt(0),
                kigo: opt(1),
                bango: opt(2),
                branch: opt(3),
                kana_name: opt(4),
                birth_date: Some(birth),
                sex: Some(sex),
                source_id: None,
            };
            let linked = link(key, &ids).map_err(|e| match e {
                PseudoError::MalformedIdentifier { field, reason } => bad(field, reason),
                _ => bad("insurer_number", "neither insurer number + 記号 + 番号 nor kana name is present"),
            })?;
            let entry = Entry { purpose: purpose.to_owned(), status, effective, line };
            for k in keys_of(&linked) {
                reg.by_key.entry(k).or_default().push(entry.clone());
            }
            reg.rows += 1;
        }
        Ok(reg)
    }

    /// Set the dataset's policy.
    pub fn with_policy(mut self, policy: ConsentPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The dataset's policy.
    pub fn policy(&self) -> ConsentPolicy {
        self.policy
    }

    /// Data rows read.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Decision for a `person_id` (or any linkage key: ID1, ID2).
    pub fn decision(&self, person_id: &str, purpose: &str, as_of: NaiveDate) -> ConsentDecision {
        self.decide(std::iter::once(person_id), purpose, as_of)
    }

    /// Decision for a linked record: every key of the link is looked up, and the latest record
    /// in force over all of them wins.
    pub fn decision_for(&self, linked: &PersonLink, purpose: &str, as_of: NaiveDate) -> ConsentDecision {
        let keys = keys_of(linked);
        self.decide(keys.iter().map(String::as_str), purpose, as_of)
    }

    fn decide<'a>(&self, keys: impl Iterator<Item = &'a str>, purpose: &str, as_of: NaiveDate) -> ConsentDecision {
        let mut best: Option<&Entry> = None;
        for k in keys {
            for e in self.by_key.get(k).into_iter().flatten() {
                if e.purpose != purpose || e.effective > as_of {
                    continue;
                }
                if best.is_none_or(|b| (e.effective, e.line) > (b.effective, b.line)) {
                    best = Some(e);
                }
            }
        }
        match (best.map(|e| e.status), self.policy) {
            (Some(ConsentStatus::OptIn), _) => ConsentDecision::Include,
            (Some(ConsentStatus::OptOut), _) => ConsentDecision::Exclude(ExcludeReason::OptedOut),
            (Some(ConsentStatus::Withdrawn), _) => ConsentDecision::Exclude(ExcludeReason::Withdrawn),
            (None, ConsentPolicy::OptOut) => ConsentDecision::Include,
            (None, ConsentPolicy::OptIn) => ConsentDecision::Exclude(ExcludeReason::NoOptIn),
        }
    }
}

fn keys_of(l: &PersonLink) -> Vec<String> {
    let mut v = vec![l.person_id.clone()];
    for k in [&l.id1, &l.id2].into_iter().flatten() {
        if !v.contains(k) {
            v.push(k.clone());
        }
    }
    v
}

/// A registry bound to a purpose and date, as an ingest run applies it.
#[derive(Debug, Clone)]
pub struct ConsentGate {
    /// The registry.
    pub registry: ConsentRegistry,
    /// Purpose of the use (`research`, …).
    pub purpose: String,
    /// Date the decision is taken for (the run date by default).
    pub as_of: NaiveDate,
}

impl ConsentGate {
    /// Decide for a linked record.
    pub fn decide(&self, linked: &PersonLink) -> ConsentDecision {
        self.registry.decision_for(linked, &self.purpose, self.as_of)
    }
}

impl ConsentGate {
    /// A gate deciding as of today (UTC), the date of the run.
    pub fn today(registry: ConsentRegistry, purpose: &str) -> Self {
        Self { registry, purpose: purpose.to_owned(), as_of: chrono::Utc::now().date_naive() }
    }
}
