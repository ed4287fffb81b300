//! The policy model: `policies/<project>-<dataset>.toml`, one file per dataset × project.
//!
//! ```toml
//! project = "demo"
//! dataset = "ehr"
//! modes = ["sdc", "dp", "extract"]   # allowed release modes; the first is the default
//! k = 10                             # sdc: minimum distinct persons per released cell
//! rounding = 5                       # sdc: counts are rounded to a multiple of this
//! extract_row_cap = 10000            # extract: most rows one answer may carry
//!
//! [tables.person]                    # no [tables] at all: every table of the dataset, every column
//! columns = ["person_id", "sex", "year_of_birth", "prefecture_code"]
//! row_filter = "year_of_birth <= 2008"
//!
//! [tables.condition_occurrence]
//! columns = "*"
//! ```
//!
//! A dataset × project pair without a file gets the dataset's default policy from the catalog
//! (its default mode, k and rounding, every table and column, no row filter, no extracts).
//! `person_id` is always visible: it is the privacy unit that `sdc` and `dp` count and bound.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use niji_catalog::{DatasetDef, Mode};
use niji_cdm::PERSON_ID;
use serde::Deserialize;

use crate::{PolicyError, Result};

/// The default minimum cell size: the NDB publication rule.
pub const DEFAULT_K: u32 = 10;

/// Columns a table exposes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ColumnSet {
    /// `"*"`: every column.
    All(String),
    /// An explicit list.
    List(Vec<String>),
}

/// What one table exposes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablePolicy {
    /// Allowed columns.
    pub columns: ColumnSet,
    /// A SQL predicate over the table's columns applied beneath every researcher plan.
    #[serde(default)]
    pub row_filter: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    project: String,
    dataset: String,
    modes: Vec<Mode>,
    #[serde(default)]
    k: Option<u32>,
    #[serde(default)]
    rounding: Option<u32>,
    #[serde(default)]
    extract_row_cap: Option<u64>,
    #[serde(default)]
    tables: Option<BTreeMap<String, TablePolicy>>,
}

/// One table as a researcher sees it: its allowed columns in storage order and its row filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableView {
    /// Table name.
    pub table: String,
    /// Allowed columns, in the CDM's storage order; always includes `person_id`.
    pub columns: Vec<String>,
    /// Row filter (SQL predicate), if any.
    pub row_filter: Option<String>,
}

/// The resolved policy of one dataset for one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Project name.
    pub project: String,
    /// Dataset name.
    pub dataset: String,
    /// Allowed modes; the first is the default.
    pub modes: Vec<Mode>,
    /// Minimum distinct persons per released cell under `sdc`.
    pub k: u32,
    /// Rounding base for counts under `sdc` (1: no rounding).
    pub rounding: u32,
    /// Most rows an extract may return (0: extracts not allowed).
    pub extract_row_cap: u64,
    /// Visible tables, by name.
    pub tables: BTreeMap<String, TableView>,
    /// Where the policy came from (a file, or the dataset default).
    pub source: String,
}

impl Policy {
    /// The dataset's default policy: default mode, k and rounding, everything visible, no extracts.
    pub fn default_for(project: &str, def: &DatasetDef) -> Policy {
        let tables = def
            .tables
            .iter()
            .filter_map(|t| niji_cdm::table(t).ok())
            .map(|t| {
                let columns = t.columns.iter().map(|c| c.name.to_owned()).collect();
                (t.name.to_owned(), TableView { table: t.name.to_owned(), columns, row_filter: None })
            })
            .collect();
        Policy {
            project: project.to_owned(),
            dataset: def.name.clone(),
            modes: vec![def.policy.mode],
            k: def.policy.k.max(1),
            rounding: def.policy.rounding.max(1),
            extract_row_cap: 0,
            tables,
            source: format!("catalog/{}.toml default policy", def.name),
        }
    }

    /// Whether a mode is allowed.
    pub fn allows(&self, mode: Mode) -> bool {
        self.modes.contains(&mode) && (mode != Mode::Extract || self.extract_row_cap > 0)
    }

    /// The default mode.
    pub fn default_mode(&self) -> Mode {
        self.modes.first().copied().unwrap_or(Mode::Sdc)
    }
}

/// Every policy file of a folder, checked against the catalog's dataset definitions.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    by_key: BTreeMap<(String, String), Policy>,
}

impl PolicySet {
    /// An empty set: every dataset × project gets its default policy.
    pub fn empty() -> PolicySet {
        PolicySet::default()
    }

    /// Read every `*.toml` of `dir` (a missing folder is an empty set) and validate each
    /// against `datasets`. Errors name the file and the key.
    pub fn load_dir(dir: &Path, datasets: &[DatasetDef]) -> Result<PolicySet> {
        let mut set = PolicySet::empty();
        if !dir.exists() {
            return Ok(set);
        }
        let io = |source| PolicyError::Io { path: dir.to_owned(), source };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(io)?;
        files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
        files.sort();
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|source| PolicyError::Io { path: file.clone(), source })?;
            set.insert(Self::parse(&text, &file, datasets)?, &file)?;
        }
        Ok(set)
    }

    fn insert(&mut self, policy: Policy, file: &Path) -> Result<()> {
        let key = (policy.project.clone(), policy.dataset.clone());
        if let Some(first) = self.by_key.get(&key) {
            return Err(PolicyError::DuplicatePolicy {
                project: key.0,
                dataset: key.1,
                first: first.source.clone(),
                second: file.display().to_string(),
            });
        }
        self.by_key.insert(key, policy);
        Ok(())
    }

    /// Parse and validate one policy file's text.
    pub fn parse(text: &str, path: &Path, datasets: &[DatasetDef]) -> Result<Policy> {
        let bad = |key: String, reason: String| PolicyError::Invalid { path: path.to_owned(), key, reason };
        let f: PolicyFile = toml::from_str(text)
            .map_err(|e| PolicyError::PolicySyntax { path: path.to_owned(), message: e.to_string() })?;
        let def = datasets
            .iter()
            .find(|d| d.name == f.dataset)
            .ok_or_else(|| bad("dataset".into(), format!("no dataset `{}` in the catalog", f.dataset)))?;
        if f.modes.is_empty() {
            return Err(bad("modes".into(), "at least one mode is needed".into()));
        }
        let k = f.k.unwrap_or(def.policy.k);
        if k == 0 {
            return Err(bad("k".into(), "k must be at least 1".into()));
        }
        let rounding = f.rounding.unwrap_or(def.policy.rounding);
        if rounding == 0 {
            return Err(bad("rounding".into(), "the rounding base must be at least 1".into()));
        }
        let extract_row_cap = f.extract_row_cap.unwrap_or(0);
        if f.modes.contains(&Mode::Extract) && extract_row_cap == 0 {
            return Err(bad("extract_row_cap".into(), "mode `extract` needs a positive extract_row_cap".into()));
        }
        let mut policy = Policy::default_for(&f.project, def);
        policy.modes = f.modes;
        policy.k = k;
        policy.rounding = rounding;
        policy.extract_row_cap = extract_row_cap;
        policy.source = path.display().to_string();
        if let Some(tables) = f.tables {
            let mut views = BTreeMap::new();
            for (name, tp) in tables {
                let key = format!("tables.{name}");
                if !def.has_table(&name) {
                    return Err(bad(key, format!("dataset `{}` has no table `{name}`", def.name)));
                }
                let cdm = niji_cdm::table(&name).map_err(|e| bad(key.clone(), e.to_string()))?;
                let wanted: BTreeSet<String> = match &tp.columns {
                    ColumnSet::All(s) if s == "*" => cdm.columns.iter().map(|c| c.name.to_owned()).collect(),
                    ColumnSet::All(s) => {
                        return Err(bad(format!("{key}.columns"), format!("expected \"*\" or a list, found \"{s}\"")));
                    }
                    ColumnSet::List(list) => {
                        for c in list {
                            if cdm.column(c).is_none() {
                                return Err(bad(
                                    format!("{key}.columns"),
                                    format!("table `{name}` has no column `{c}`"),
                                ));
                            }
                        }
                        list.iter().cloned().collect()
                    }
                };
                let columns = cdm
                    .columns
                    .iter()
                    .map(|c| c.name)
                    .filter(|c| *c == PERSON_ID || wanted.contains(*c))
                    .map(str::to_owned)
                    .collect();
                if tp.row_filter.as_deref().is_some_and(|f| f.trim().is_empty()) {
                    return Err(bad(format!("{key}.row_filter"), "an empty row filter".into()));
                }
                views.insert(name.clone(), TableView { table: name, columns, row_filter: tp.row_filter });
            }
            policy.tables = views;
        }
        Ok(policy)
    }

    /// The policy of `dataset` for `project`: its file, or the dataset default.
    pub fn resolve(&self, project: &str, def: &DatasetDef) -> Policy {
        self.by_key
            .get(&(project.to_owned(), def.name.clone()))
            .cloned()
            .unwrap_or_else(|| Policy::default_for(project, def))
    }

    /// Number of policy files loaded.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no file was loaded.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}
