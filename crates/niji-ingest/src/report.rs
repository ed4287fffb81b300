//! Run reports and quarantine entries.
//!
//! A quarantine entry says *where* (file, line or bundle entry, record type, field) and
//! *why*, never *what*: the offending value may be an identifier, and the raw record stays
//! in the landing zone where the operator can read it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{IngestError, Result};

/// One quarantined source record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The input file (as given on the command line or the object path).
    pub file: String,
    /// 1-based line number, where the format is line-based.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 0-based entry index inside a Bundle or JSON array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<u64>,
    /// Record type (`RE`, `SY`, `Patient`, …) where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_type: Option<String>,
    /// Field at fault, where one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A stable reason code (`invalid_json`, `bad_date`, `unresolved_subject`, …).
    pub reason: String,
    /// A human explanation. Must not contain source values.
    pub detail: String,
}

/// What happened to one input file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputReport {
    /// The input file.
    pub file: String,
    /// Source records read (lines, resources, receipts: the unit each reader documents).
    pub records: u64,
    /// Records that produced CDM rows.
    pub loaded: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Records excluded by consent.
    pub consent_excluded: u64,
    /// Set when the whole file could not be read; its records are then unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The report of one ingest run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReport {
    /// Source kind: fhir, receipt, care.
    pub source: String,
    /// Key id of the pseudonymization key used (never the key).
    pub key_id: String,
    /// Per input file.
    pub inputs: Vec<InputReport>,
    /// Records read, over all inputs.
    pub records: u64,
    /// Records loaded.
    pub loaded: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Records excluded by consent.
    pub consent_excluded: u64,
    /// Quarantined records by reason code.
    pub quarantined_by_reason: BTreeMap<String, u64>,
    /// Rows written per CDM table.
    pub rows_per_table: BTreeMap<String, u64>,
    /// Data-quality warnings by code (records loaded, but with something to look at).
    pub warnings: BTreeMap<String, u64>,
}

impl IngestReport {
    /// A new report for a source kind and key.
    pub fn new(source: &str, key_id: &str) -> Self {
        Self { source: source.to_owned(), key_id: key_id.to_owned(), ..Self::default() }
    }

    /// Add one input's counts to the totals.
    pub fn add_input(&mut self, input: InputReport) {
        self.records += input.records;
        self.loaded += input.loaded;
        self.quarantined += input.quarantined;
        self.consent_excluded += input.consent_excluded;
        self.inputs.push(input);
    }

    /// Count a quarantine reason.
    pub fn count_reason(&mut self, reason: &str) {
        *self.quarantined_by_reason.entry(reason.to_owned()).or_default() += 1;
    }

    /// Count a data-quality warning.
    pub fn warn(&mut self, code: &str) {
        *self.warnings.entry(code.to_owned()).or_default() += 1;
    }

    /// Check that every record is accounted for, per input and in total.
    pub fn check_balanced(&self) -> Result<()> {
        let unbalanced =
            |records, loaded, quarantined, excluded| IngestError::Unbalanced { records, loaded, quarantined, excluded };
        for i in &self.inputs {
            if i.records != i.loaded + i.quarantined + i.consent_excluded {
                return Err(unbalanced(i.records, i.loaded, i.quarantined, i.consent_excluded));
            }
        }
        let by_reason: u64 = self.quarantined_by_reason.values().sum();
        if self.records != self.loaded + self.quarantined + self.consent_excluded || by_reason != self.quarantined {
            return Err(unbalanced(self.records, self.loaded, self.quarantined, self.consent_excluded));
        }
        Ok(())
    }

    /// Write the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|source| IngestError::Json { what: "report", source })?;
        std::fs::write(path, text).map_err(|source| IngestError::Write { path: path.to_owned(), source })
    }
}

/// Appends quarantine entries as NDJSON.
#[derive(Debug)]
pub struct QuarantineWriter {
    path: std::path::PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    count: u64,
}

impl QuarantineWriter {
    /// Create (truncate) the quarantine file.
    pub fn create(path: &Path) -> Result<Self> {
        let f = std::fs::File::create(path).map_err(|source| IngestError::Write { path: path.to_owned(), source })?;
        Ok(Self { path: path.to_owned(), out: std::io::BufWriter::new(f), count: 0 })
    }

    /// Append one entry.
    pub fn push(&mut self, q: &Quarantined) -> Result<()> {
        let line = serde_json::to_string(q).map_err(|source| IngestError::Json { what: "quarantine entry", source })?;
        writeln!(self.out, "{line}").map_err(|source| IngestError::Write { path: self.path.clone(), source })?;
        self.count += 1;
        Ok(())
    }

    /// Entries written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Flush to disk.
    pub fn finish(mut self) -> Result<u64> {
        self.out.flush().map_err(|source| IngestError::Write { path: self.path.clone(), source })?;
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbalanced_reports_are_caught() {
        let mut r = IngestReport::new("receipt", "k");
        r.add_input(InputReport { file: "a".into(), records: 3, loaded: 2, quarantined: 1, ..Default::default() });
        r.count_reason("bad_date");
        assert!(r.check_balanced().is_ok());
        r.add_input(InputReport { file: "b".into(), records: 2, loaded: 1, ..Default::default() });
        assert!(matches!(r.check_balanced(), Err(IngestError::Unbalanced { records: 2, .. })));
    }

    #[test]
    fn reasons_must_match_quarantine_total() {
        let mut r = IngestReport::new("fhir", "k");
        r.add_input(InputReport { file: "a".into(), records: 1, quarantined: 1, ..Default::default() });
        assert!(r.check_balanced().is_err());
        r.count_reason("invalid_json");
        assert!(r.check_balanced().is_ok());
    }
}
