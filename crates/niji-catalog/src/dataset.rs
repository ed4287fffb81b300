//! Dataset definitions: `catalog/*.toml`.
//!
//! A dataset names the CDM tables it has, its privacy unit (`person_id`), the DP bounds of its
//! numeric measure columns, the public key domains that are released complete (sex, age band,
//! prefecture, ICD-10 chapter, …) and its default release policy. Definitions are validated
//! against niji-cdm: an unknown table, column or class mismatch is an error naming the file
//! and the key. Column classes are not repeated in the files: they come from niji-cdm.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use niji_cdm::{ColumnClass, PERSON_ID};
use serde::{Deserialize, Serialize};

use crate::audit::{NewEntry, append_in_tx};
use crate::{BeginWrite, Catalog, CatalogError, Mode, Result, now, parse_json, with_pool};

/// One dataset, as written in `catalog/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetDef {
    /// Dataset name (lowercase, as used in projects and SQL).
    pub name: String,
    /// Short human title.
    pub title: String,
    /// What the dataset holds and where it comes from.
    #[serde(default)]
    pub description: String,
    /// The privacy unit column: always `person_id`.
    pub privacy_unit: String,
    /// CDM tables in the dataset.
    pub tables: Vec<String>,
    /// Default release policy.
    pub policy: DefaultPolicy,
    /// DP clamping bounds: table → measure column → bounds.
    #[serde(default)]
    pub bounds: BTreeMap<String, BTreeMap<String, Bounds>>,
    /// Public key domains, by name: released complete (zero-filled) without spending budget
    /// on key selection.
    #[serde(default)]
    pub public_keys: BTreeMap<String, PublicKeyDomain>,
}

/// The policy a project gets for this dataset unless it says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultPolicy {
    /// Default release mode.
    pub mode: Mode,
    /// Minimum distinct persons per released cell under `sdc`.
    pub k: u32,
    /// Counts are rounded to a multiple of this under `sdc`.
    pub rounding: u32,
}

/// Clamping bounds of a numeric column for DP sums and means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Lower clamp.
    pub lower: f64,
    /// Upper clamp.
    pub upper: f64,
}

/// A public key domain: the complete list of values a grouping key can take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyDomain {
    /// What the domain is.
    #[serde(default)]
    pub description: String,
    /// CDM columns (`table.column`) whose values lie in the domain. Empty for derived keys
    /// (age band from year of birth, ICD-10 chapter from the code), computed by the query layer.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Every value of the domain, in display order.
    pub values: Vec<String>,
}

/// A column of a dataset, with its class from niji-cdm and its bounds if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnInfo {
    /// Table.
    pub table: &'static str,
    /// Column.
    pub column: &'static str,
    /// Privacy class.
    #[serde(serialize_with = "class_name")]
    pub class: ColumnClass,
    /// DP bounds, for measures that have them.
    pub bounds: Option<Bounds>,
}

fn class_name<S: serde::Serializer>(class: &ColumnClass, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(class.as_str())
}

impl DatasetDef {
    /// Parse and validate a definition.
    pub fn parse(text: &str, path: &Path) -> Result<DatasetDef> {
        let def: DatasetDef = toml::from_str(text)
            .map_err(|e| CatalogError::DatasetSyntax { path: path.to_owned(), message: e.to_string() })?;
        def.validate(path)?;
        Ok(def)
    }

    /// Read, parse and validate a definition file.
    pub fn from_file(path: &Path) -> Result<DatasetDef> {
        let text =
            std::fs::read_to_string(path).map_err(|source| CatalogError::Io { path: path.to_owned(), source })?;
        DatasetDef::parse(&text, path)
    }

    /// Every `*.toml` in a directory, sorted by file name; a dataset defined twice is an error.
    pub fn load_dir(dir: &Path) -> Result<Vec<DatasetDef>> {
        let io = |source| CatalogError::Io { path: dir.to_owned(), source };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(io)?;
        files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
        files.sort();
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut defs = Vec::new();
        for file in files {
            let def = DatasetDef::from_file(&file)?;
            if let Some(first) = seen.insert(def.name.clone(), file.clone()) {
                return Err(CatalogError::DuplicateDataset { name: def.name, first, second: file });
            }
            defs.push(def);
        }
        Ok(defs)
    }

    /// Check the definition against niji-cdm.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |key: String, reason: String| CatalogError::DatasetInvalid { path: path.to_owned(), key, reason };
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad("name".into(), "must be non-empty lowercase ASCII letters, digits or _".into()));
        }
        if self.privacy_unit != PERSON_ID {
            return Err(bad("privacy_unit".into(), format!("must be `{PERSON_ID}`, the pseudonym of the person")));
        }
        if self.tables.is_empty() {
            return Err(bad("tables".into(), "a dataset needs at least one table".into()));
        }
        let mut tables = BTreeSet::new();
        for (i, t) in self.tables.iter().enumerate() {
            niji_cdm::table(t).map_err(|_| bad(format!("tables[{i}]"), format!("unknown CDM table `{t}`")))?;
            if !tables.insert(t.as_str()) {
                return Err(bad(format!("tables[{i}]"), format!("table `{t}` is listed twice")));
            }
        }
        if self.policy.k < 2 {
            return Err(bad("policy.k".into(), "k must be at least 2".into()));
        }
        if self.policy.rounding < 1 {
            return Err(bad("policy.rounding".into(), "rounding must be at least 1".into()));
        }
        for (table, columns) in &self.bounds {
            if !tables.contains(table.as_str()) {
                return Err(bad(format!("bounds.{table}"), format!("table `{table}` is not in this dataset's tables")));
            }
            let def = niji_cdm::table(table).map_err(|_| bad(format!("bounds.{table}"), "unknown CDM table".into()))?;
            for (column, b) in columns {
                let key = format!("bounds.{table}.{column}");
                let col = def
                    .column(column)
                    .ok_or_else(|| bad(key.clone(), format!("table `{table}` has no such column")))?;
                if col.class != ColumnClass::Measure {
                    return Err(bad(key, format!("bounds apply to measure columns; this one is {}", col.class)));
                }
                if !(b.lower.is_finite() && b.upper.is_finite() && b.lower < b.upper) {
                    return Err(bad(key, "bounds must be finite with lower < upper".into()));
                }
            }
        }
        for (name, domain) in &self.public_keys {
            let key = format!("public_keys.{name}");
            if domain.values.is_empty() {
                return Err(bad(format!("{key}.values"), "a public key domain needs values".into()));
            }
            let mut seen = BTreeSet::new();
            for (i, v) in domain.values.iter().enumerate() {
                if !seen.insert(v) {
                    return Err(bad(format!("{key}.values[{i}]"), "value listed twice".into()));
                }
            }
            for (i, qualified) in domain.columns.iter().enumerate() {
                let ckey = format!("{key}.columns[{i}]");
                let (table, column) =
                    qualified.split_once('.').ok_or_else(|| bad(ckey.clone(), "expected `table.column`".into()))?;
                if !tables.contains(table) {
                    return Err(bad(ckey, format!("table `{table}` is not in this dataset's tables")));
                }
                let def = niji_cdm::table(table).map_err(|_| bad(ckey.clone(), "unknown CDM table".into()))?;
                let col = def
                    .column(column)
                    .ok_or_else(|| bad(ckey.clone(), format!("table `{table}` has no such column")))?;
                if matches!(col.class, ColumnClass::PersonId | ColumnClass::Pseudonym | ColumnClass::Measure) {
                    return Err(bad(ckey, format!("a {} column cannot have a public key domain", col.class)));
                }
            }
        }
        Ok(())
    }

    /// Every column of every table, with class and bounds.
    pub fn columns(&self) -> Vec<ColumnInfo> {
        let mut out = Vec::new();
        for t in &self.tables {
            let Ok(def) = niji_cdm::table(t) else { continue };
            for c in def.columns {
                let bounds = self.bounds.get(t).and_then(|b| b.get(c.name)).copied();
                out.push(ColumnInfo { table: def.name, column: c.name, class: c.class, bounds });
            }
        }
        out
    }

    /// Whether the dataset has a table.
    pub fn has_table(&self, table: &str) -> bool {
        self.tables.iter().any(|t| t == table)
    }
}

impl Catalog {
    /// Store dataset definitions (insert or replace). A changed definition is audited.
    /// Returns the names whose definition was new or changed.
    #[tracing::instrument(skip(self, defs), fields(n = defs.len()))]
    pub async fn load_datasets(&self, actor: &str, defs: &[DatasetDef]) -> Result<Vec<String>> {
        let mut changed = Vec::new();
        for def in defs {
            let json = serde_json::to_string(def).map_err(|source| CatalogError::CorruptJson {
                table: "dataset",
                column: "definition",
                source,
            })?;
            let did_change = with_pool!(self, |p| {
                let mut tx = p.begin_write().await?;
                let old: Option<(String,)> = sqlx::query_as("SELECT definition FROM dataset WHERE name = $1")
                    .bind(&def.name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if old.as_ref().is_some_and(|(o,)| *o == json) {
                    false
                } else {
                    sqlx::query(
                        "INSERT INTO dataset (name, definition, updated_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
                    )
                    .bind(&def.name)
                    .bind(&json)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                    let entry = NewEntry {
                        actor,
                        action: "dataset.define",
                        subject: format!("dataset:{}", def.name),
                        details: serde_json::json!({
                            "definition_sha256": crate::sha256_hex(json.as_bytes()),
                            "replaced": old.is_some(),
                        }),
                    };
                    append_in_tx!(tx, &entry);
                    tx.commit().await?;
                    true
                }
            });
            if did_change {
                changed.push(def.name.clone());
            }
        }
        Ok(changed)
    }

    /// All datasets, by name.
    pub async fn datasets(&self) -> Result<Vec<DatasetDef>> {
        let rows: Vec<(String,)> = with_pool!(self, |p| {
            sqlx::query_as("SELECT definition FROM dataset ORDER BY name").fetch_all(p).await?
        });
        rows.iter().map(|(d,)| parse_json(d, "dataset", "definition")).collect()
    }

    /// One dataset.
    pub async fn dataset(&self, name: &str) -> Result<DatasetDef> {
        let row: Option<(String,)> = with_pool!(self, |p| {
            sqlx::query_as("SELECT definition FROM dataset WHERE name = $1").bind(name).fetch_optional(p).await?
        });
        let (d,) = row.ok_or_else(|| CatalogError::UnknownDataset(name.to_owned()))?;
        parse_json(&d, "dataset", "definition")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "claims"
title = "Claims"
privacy_unit = "person_id"
tables = ["person", "claim"]
[policy]
mode = "sdc"
k = 10
rounding = 5
[bounds.claim]
total_points = { lower = 0, upper = 100000 }
[public_keys.sex]
columns = ["person.sex"]
values = ["M", "F", "U"]
"#;

    fn err(text: &str) -> String {
        DatasetDef::parse(text, Path::new("catalog/x.toml")).unwrap_err().to_string()
    }

    #[test]
    fn good_definition_parses_with_classes_from_the_cdm() {
        let def = DatasetDef::parse(GOOD, Path::new("x.toml")).unwrap();
        let cols = def.columns();
        let tp = cols.iter().find(|c| c.table == "claim" && c.column == "total_points").unwrap();
        assert_eq!(tp.class, ColumnClass::Measure);
        assert_eq!(tp.bounds, Some(Bounds { lower: 0.0, upper: 100000.0 }));
        assert!(cols.iter().any(|c| c.column == "person_id" && c.class == ColumnClass::PersonId));
    }

    #[test]
    fn unknown_table_names_file_and_key() {
        let e = err(&GOOD.replace(r#"["person", "claim"]"#, r#"["person", "claims"]"#));
        assert!(e.contains("catalog/x.toml") && e.contains("tables[1]") && e.contains("claims"), "{e}");
    }

    #[test]
    fn unknown_column_in_bounds_names_key() {
        let e = err(&GOOD.replace("total_points =", "total_pointz ="));
        assert!(e.contains("bounds.claim.total_pointz") && e.contains("no such column"), "{e}");
    }

    #[test]
    fn bounds_on_a_non_measure_are_refused() {
        let e = err(&GOOD.replace("total_points =", "claim_type ="));
        assert!(e.contains("bounds.claim.claim_type") && e.contains("measure"), "{e}");
    }

    #[test]
    fn inverted_bounds_are_refused() {
        let e = err(&GOOD.replace("lower = 0, upper = 100000", "lower = 5, upper = 1"));
        assert!(e.contains("lower < upper"), "{e}");
    }

    #[test]
    fn unknown_key_is_refused_by_the_parser() {
        let e = err(&GOOD.replace("k = 10", "k = 10\nkk = 3"));
        assert!(e.contains("catalog/x.toml") && e.contains("kk"), "{e}");
    }

    #[test]
    fn public_key_on_a_pseudonym_is_refused() {
        let e = err(&GOOD.replace(r#"columns = ["person.sex"]"#, r#"columns = ["person.person_id"]"#));
        assert!(e.contains("public_keys.sex.columns[0]"), "{e}");
    }

    #[test]
    fn privacy_unit_must_be_person_id() {
        let e = err(&GOOD.replace(r#"privacy_unit = "person_id""#, r#"privacy_unit = "visit_occurrence_id""#));
        assert!(e.contains("privacy_unit"), "{e}");
    }

    #[test]
    fn the_shipped_catalog_files_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog");
        let defs = DatasetDef::load_dir(&dir).unwrap();
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["care", "claims", "ehr"]);
        let claims = &defs[1];
        assert_eq!(claims.bounds["claim"]["total_points"], Bounds { lower: 0.0, upper: 100000.0 });
        assert_eq!(claims.public_keys["prefecture"].values.len(), 47);
        assert_eq!(claims.public_keys["age_band"].values.len(), 19);
        assert_eq!(claims.public_keys["icd10_chapter"].values.len(), 22);
    }
}
