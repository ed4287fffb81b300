//! Pipeline specs (`pipelines/*.toml`): what a run reads, how it maps, protects and checks it,
//! where it writes and when it runs. Unknown keys are refused, and every error names the file
//! and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::{PipelineError, Result};

/// Source format, which picks the niji-ingest reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// FHIR R4 NDJSON, Bundles or arrays (SQL-on-FHIR ViewDefinitions in `pipelines/views`).
    Fhir,
    /// レセプト電算 `.UKE` files.
    Receipt,
    /// Long-term care CSV (layouts in `pipelines/layouts`).
    Care,
}

impl SourceFormat {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceFormat::Fhir => "fhir",
            SourceFormat::Receipt => "receipt",
            SourceFormat::Care => "care",
        }
    }
}

/// One source: a folder, `file://` or `s3://bucket/prefix` URL in the landing zone and a glob
/// of file names under it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Name used in reports.
    pub name: String,
    /// Reader.
    pub format: SourceFormat,
    /// Folder, `file://` or `s3://bucket/prefix` URL; relative paths are relative to the data
    /// directory.
    pub url: String,
    /// Glob of file names under `url` (`*.UKE`, `**/*.ndjson`).
    #[serde(default = "default_glob")]
    pub glob: String,
    /// Folder of corrected care layouts (care only); the built-in ones otherwise.
    #[serde(default)]
    pub layout_dir: Option<String>,
    /// object_store options of an `s3://` source (endpoint, region, allow_http…), completed
    /// from the `AWS_*` environment variables.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
}

fn default_glob() -> String {
    "*".into()
}

/// The consent registry and how the dataset reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentSpec {
    /// `consent.csv` path (relative to the data directory).
    pub registry: String,
    /// Purpose of use: research, public-health or commercial-research.
    #[serde(default = "default_purpose")]
    pub purpose: String,
    /// `opt-out` (include unless objected) or `opt-in` (include only with consent).
    #[serde(default = "default_policy")]
    pub policy: String,
}

fn default_purpose() -> String {
    "research".into()
}
fn default_policy() -> String {
    "opt-out".into()
}

/// Where tables are written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Lake root: a folder (default `<data-dir>/lake`), `file://` or `s3://bucket/prefix`.
    #[serde(default)]
    pub url: Option<String>,
    /// object_store options (S3 endpoint, region, allow_http…); credentials come from the
    /// environment (`AWS_ACCESS_KEY_ID`, …), never from the spec.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
}

/// Pseudonymization profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PseudonymSpec {
    /// Profile name recorded in the report (the key itself comes from the operator).
    #[serde(default)]
    pub profile: Option<String>,
    /// When set, the run refuses a key with another id (a wrong key would break linkage).
    #[serde(default)]
    pub key_id: Option<String>,
}

/// Generalization applied to mapped rows before they are written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralizeSpec {
    /// `table.column` set to NULL (columns must be nullable).
    #[serde(default)]
    pub suppress: Vec<String>,
    /// `table.column` dates truncated to the first day of their month.
    #[serde(default)]
    pub month: Vec<String>,
}

/// What a failing quality rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Counted in the run report.
    #[default]
    Warn,
    /// The run fails (nothing is published) when the failing share exceeds `max_share`.
    Fail,
}

/// A data-quality rule: a SQL predicate every row of a table should satisfy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityRule {
    /// Rule name (stable, used in reports).
    pub name: String,
    /// CDM table.
    pub table: String,
    /// DataFusion SQL predicate; a row fails when it is false (NULL passes).
    pub check: String,
    /// Warn or fail.
    #[serde(default)]
    pub action: RuleAction,
    /// Largest share of failing rows that still passes (0 by default).
    #[serde(default)]
    pub max_share: f64,
}

/// Re-identification report settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReidSpec {
    /// Quasi-identifier columns of the `person` table.
    #[serde(default = "default_qi")]
    pub quasi_identifiers: Vec<String>,
    /// k of the k-anonymity report.
    #[serde(default = "default_k")]
    pub k: u64,
}

fn default_qi() -> Vec<String> {
    vec!["sex".into(), "year_of_birth".into(), "prefecture_code".into()]
}
fn default_k() -> u64 {
    10
}

impl Default for ReidSpec {
    fn default() -> Self {
        Self { quasi_identifiers: default_qi(), k: default_k() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    dataset: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    sources: Vec<SourceSpec>,
    #[serde(default)]
    consent: Option<ConsentSpec>,
    #[serde(default)]
    target: TargetSpec,
    #[serde(default)]
    pseudonymization: PseudonymSpec,
    #[serde(default)]
    generalization: GeneralizeSpec,
    #[serde(default)]
    quality: Vec<QualityRule>,
    #[serde(default)]
    reidentification: ReidSpec,
}

/// A validated pipeline spec.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// Pipeline name (`[a-z0-9_-]+`).
    pub name: String,
    /// Target dataset (a `catalog/*.toml` dataset).
    pub dataset: String,
    /// Free text.
    pub description: Option<String>,
    /// Cron expression (UTC), if scheduled.
    pub schedule: Option<croner::Cron>,
    /// The schedule as written.
    pub schedule_text: Option<String>,
    /// Sources.
    pub sources: Vec<SourceSpec>,
    /// Consent registry.
    pub consent: Option<ConsentSpec>,
    /// Target lake.
    pub target: TargetSpec,
    /// Pseudonymization profile.
    pub pseudonymization: PseudonymSpec,
    /// Generalization rules.
    pub generalization: GeneralizeSpec,
    /// Data-quality rules.
    pub quality: Vec<QualityRule>,
    /// Re-identification report settings.
    pub reidentification: ReidSpec,
    /// The file it was read from.
    pub path: PathBuf,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parse a cron expression: 5 fields (minute hour day month weekday) or 6 with seconds.
pub fn parse_cron(expr: &str) -> std::result::Result<croner::Cron, String> {
    croner::Cron::new(expr).with_seconds_optional().parse().map_err(|e| e.to_string())
}

impl PipelineSpec {
    /// Parse spec text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<PipelineSpec> {
        let raw: RawSpec = toml::from_str(text)
            .map_err(|e| PipelineError::SpecSyntax { path: path.to_owned(), message: e.to_string() })?;
        let invalid = |line: usize, reason: String| PipelineError::SpecInvalid { path: path.to_owned(), line, reason };
        let find = |needle: &str| text.lines().position(|l| l.trim_start().starts_with(needle)).map_or(0, |i| i + 1);
        let name_ok = |s: &str| {
            !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        };
        if !name_ok(&raw.name) {
            return Err(invalid(find("name"), "`name` must be lowercase letters, digits, `_` or `-`".into()));
        }
        if !name_ok(&raw.dataset) {
            return Err(invalid(find("dataset"), "`dataset` must be lowercase letters, digits, `_` or `-`".into()));
        }
        let (schedule, schedule_text) = match &raw.schedule {
            Some(s) => {
                let cron = parse_cron(s.get_ref()).map_err(|e| {
                    invalid(line_of(text, s.span().start), format!("`schedule` is not a valid cron expression: {e}"))
                })?;
                (Some(cron), Some(s.get_ref().clone()))
            }
            None => (None, None),
        };
        if raw.sources.is_empty() {
            return Err(invalid(0, "at least one [[sources]] entry is required".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &raw.sources {
            if !seen.insert(s.name.as_str()) {
                return Err(invalid(find("name"), format!("source name `{}` is used twice", s.name)));
            }
            glob::Pattern::new(&s.glob)
                .map_err(|e| invalid(find("glob"), format!("source `{}`: bad glob: {e}", s.name)))?;
            if let Some((scheme, _)) = s.url.split_once("://")
                && scheme != "file"
                && scheme != "s3"
            {
                let line = text
                    .lines()
                    .position(|l| l.trim_start().starts_with("url") && l.contains(s.url.as_str()))
                    .map_or(0, |i| i + 1);
                return Err(invalid(
                    line,
                    format!("source `{}`: URL scheme `{scheme}` (expected a folder, file:// or s3://)", s.name),
                ));
            }
        }
        if let Some(c) = &raw.consent {
            if !["research", "public-health", "commercial-research"].contains(&c.purpose.as_str()) {
                return Err(invalid(
                    find("purpose"),
                    "`consent.purpose` must be research, public-health or commercial-research".into(),
                ));
            }
            if !["opt-in", "opt-out"].contains(&c.policy.as_str()) {
                return Err(invalid(find("policy"), "`consent.policy` must be opt-in or opt-out".into()));
            }
        }
        for (what, cols) in [("suppress", &raw.generalization.suppress), ("month", &raw.generalization.month)] {
            for tc in cols {
                check_column(tc, what == "month")
                    .map_err(|r| invalid(find(what), format!("generalization.{what}: {r}")))?;
            }
        }
        for r in &raw.quality {
            if niji_cdm::table(&r.table).is_err() {
                return Err(invalid(
                    find("table"),
                    format!("quality rule `{}`: unknown CDM table `{}`", r.name, r.table),
                ));
            }
            if !(0.0..=1.0).contains(&r.max_share) {
                return Err(invalid(
                    find("max_share"),
                    format!("quality rule `{}`: max_share must be in 0..=1", r.name),
                ));
            }
        }
        if raw.reidentification.k == 0 {
            return Err(invalid(find("k"), "reidentification.k must be at least 1".into()));
        }
        for q in &raw.reidentification.quasi_identifiers {
            check_column(&format!("person.{q}"), false)
                .map_err(|r| invalid(find("quasi_identifiers"), format!("reidentification: {r}")))?;
        }
        Ok(PipelineSpec {
            name: raw.name,
            dataset: raw.dataset,
            description: raw.description,
            schedule,
            schedule_text,
            sources: raw.sources,
            consent: raw.consent,
            target: raw.target,
            pseudonymization: raw.pseudonymization,
            generalization: raw.generalization,
            quality: raw.quality,
            reidentification: raw.reidentification,
            path: path.to_owned(),
        })
    }

    /// Read and parse a spec file.
    pub fn load(path: &Path) -> Result<PipelineSpec> {
        let text =
            std::fs::read_to_string(path).map_err(|source| PipelineError::Io { path: path.to_owned(), source })?;
        PipelineSpec::parse(&text, path)
    }

    /// All `*.toml` specs of a folder (not its subfolders), sorted by name; names must be unique.
    pub fn load_dir(dir: &Path) -> Result<Vec<PipelineSpec>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| PipelineError::Io { path: dir.to_owned(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut out: Vec<PipelineSpec> = Vec::new();
        for p in paths {
            let s = PipelineSpec::load(&p)?;
            if let Some(other) = out.iter().find(|o| o.name == s.name) {
                return Err(PipelineError::SpecInvalid {
                    path: p.clone(),
                    line: 1,
                    reason: format!("pipeline `{}` is also defined in {}", s.name, other.path.display()),
                });
            }
            out.push(s);
        }
        Ok(out)
    }

    /// The next time this pipeline is due after `after`, if scheduled.
    pub fn next_due(&self, after: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        self.schedule.as_ref().and_then(|c| c.find_next_occurrence(&after, false).ok())
    }
}

/// Check a `table.column` reference against the CDM.
fn check_column(tc: &str, must_be_date: bool) -> std::result::Result<(), String> {
    let (t, c) = tc.split_once('.').ok_or_else(|| format!("`{tc}` is not table.column"))?;
    let table = niji_cdm::table(t).map_err(|_| format!("unknown CDM table `{t}`"))?;
    let col = table.columns.iter().find(|x| x.name == c).ok_or_else(|| format!("table `{t}` has no column `{c}`"))?;
    if must_be_date && col.ty != niji_cdm::ColumnType::Date32 {
        return Err(format!("`{tc}` is not a date column"));
    }
    if !must_be_date && !col.nullable && !tc.starts_with("person.") {
        return Err(format!("`{tc}` is not nullable and cannot be suppressed"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "claims"
dataset = "claims"
schedule = "0 3 * * *"

[[sources]]
name = "receipts"
format = "receipt"
url = "landing/receipts"
glob = "*.UKE"

[generalization]
suppress = ["person.secondary_medical_area_code"]

[[quality]]
name = "points non-negative"
table = "claim"
check = "total_points >= 0"
action = "fail"
"#;

    #[test]
    fn a_good_spec_parses_and_has_a_next_run() {
        let s = PipelineSpec::parse(GOOD, Path::new("claims.toml")).unwrap();
        assert_eq!(s.sources[0].format, SourceFormat::Receipt);
        assert_eq!(s.quality[0].action, RuleAction::Fail);
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T04:00:00Z").unwrap().to_utc();
        assert_eq!(s.next_due(t).unwrap().to_rfc3339(), "2026-01-02T03:00:00+00:00");
    }

    #[test]
    fn unknown_fields_are_refused_with_their_line() {
        let text = GOOD.replace("glob = \"*.UKE\"", "glob = \"*.UKE\"\ncolour = \"red\"");
        let e = PipelineSpec::parse(&text, Path::new("claims.toml")).unwrap_err().to_string();
        assert!(e.contains("claims.toml") && e.contains("line 11") && e.contains("colour"), "{e}");
    }

    #[test]
    fn bad_cron_is_refused_with_its_line() {
        let text = GOOD.replace("0 3 * * *", "0 25 * * *");
        let e = PipelineSpec::parse(&text, Path::new("claims.toml")).unwrap_err();
        assert!(matches!(e, PipelineError::SpecInvalid { line: 4, .. }), "{e}");
        assert!(e.to_string().contains("cron"), "{e}");
    }

    #[test]
    fn source_urls_other_than_folders_file_and_s3_are_refused_with_their_line() {
        let s3 =
            GOOD.replace("\"landing/receipts\"", "\"s3://landing/receipts\"\nstorage_options = { aws_region = \"x\" }");
        let s = PipelineSpec::parse(&s3, Path::new("claims.toml")).unwrap();
        assert_eq!(s.sources[0].storage_options["aws_region"], "x");
        let text = GOOD.replace("\"landing/receipts\"", "\"gs://landing/receipts\"");
        let e = PipelineSpec::parse(&text, Path::new("claims.toml")).unwrap_err();
        assert!(matches!(e, PipelineError::SpecInvalid { line: 9, .. }), "{e}");
        assert!(e.to_string().contains("gs"), "{e}");
    }

    #[test]
    fn unknown_columns_in_rules_are_refused() {
        let text = GOOD.replace("person.secondary_medical_area_code", "person.nope");
        assert!(PipelineSpec::parse(&text, Path::new("x.toml")).is_err());
        let text = GOOD.replace("table = \"claim\"", "table = \"claims\"");
        assert!(PipelineSpec::parse(&text, Path::new("x.toml")).is_err());
    }
}
