//! Declarative record layouts (`pipelines/layouts/*.toml`): field positions and types as
//! data, so a layout can be corrected without a code change. The built-in copies are compiled
//! in from the same files; `--layout-dir` style overrides load them from disk.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use niji_cdm::Sex;
use serde::Deserialize;

use crate::receipt::fields::{self, FieldError};
use crate::{IngestError, Result};

/// The built-in benefit-statement layout (`pipelines/layouts/care_benefit.toml`).
pub const CARE_BENEFIT_TOML: &str = include_str!("../../../../pipelines/layouts/care_benefit.toml");
/// The built-in certification layout (`pipelines/layouts/care_certification.toml`).
pub const CARE_CERTIFICATION_TOML: &str = include_str!("../../../../pipelines/layouts/care_certification.toml");

/// Type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Free text (kept only where the mapping says so).
    Text,
    /// An identifier: feeds linkage only.
    Identifier,
    /// Digits, with allowed lengths.
    Code,
    /// Integer.
    Int,
    /// `YYYYMM`.
    Yyyymm,
    /// `YYYYMMDD`.
    Yyyymmdd,
    /// 1 / 2 (/ 3, 9).
    Sex,
    /// 01, 12, 13, 21–25.
    CareLevel,
}

/// One field of a record layout.
#[derive(Debug, Clone, Deserialize)]
pub struct FieldSpec {
    /// Name the reader looks the field up by.
    pub name: String,
    /// 0-based column.
    pub index: usize,
    /// Type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Allowed digit counts for `code` fields (empty = any).
    #[serde(default)]
    pub len: Vec<usize>,
    /// Required (empty → the record is quarantined).
    #[serde(default)]
    pub required: bool,
}

/// One record kind.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordSpec {
    /// Record kind (value of the kind field, e.g. `01`).
    pub kind: String,
    /// What the record is.
    #[serde(default)]
    pub doc: String,
    /// Its fields.
    pub fields: Vec<FieldSpec>,
}

/// A file layout.
#[derive(Debug, Clone, Deserialize)]
pub struct Layout {
    /// Layout name.
    pub name: String,
    /// Encoding (`cp932`).
    pub encoding: String,
    /// Whether the file starts with a header line.
    #[serde(default)]
    pub header: bool,
    /// Column holding the record kind (files with several record kinds).
    #[serde(default)]
    pub kind_field: Option<usize>,
    /// Record kinds.
    pub records: Vec<RecordSpec>,
}

/// A parsed cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Empty.
    Null,
    /// Text, identifier or code.
    Text(String),
    /// Integer.
    Int(i64),
    /// Date (a month is its first day).
    Date(NaiveDate),
    /// Sex.
    Sex(Sex),
}

/// Why a record was rejected: field name and reason code (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    /// Field at fault.
    pub field: String,
    /// Reason code.
    pub reason: &'static str,
    /// Human explanation.
    pub detail: &'static str,
}

/// A parsed record: cells by field name.
#[derive(Debug, Clone, Default)]
pub struct Row {
    cells: HashMap<String, Cell>,
}

impl Row {
    /// Text of a field (`None` when empty or absent).
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.cells.get(name) {
            Some(Cell::Text(s)) => Some(s),
            _ => None,
        }
    }
    /// Integer of a field.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.cells.get(name) {
            Some(Cell::Int(v)) => Some(*v),
            _ => None,
        }
    }
    /// Date of a field.
    pub fn date(&self, name: &str) -> Option<NaiveDate> {
        match self.cells.get(name) {
            Some(Cell::Date(v)) => Some(*v),
            _ => None,
        }
    }
    /// Sex of a field.
    pub fn sex(&self, name: &str) -> Option<Sex> {
        match self.cells.get(name) {
            Some(Cell::Sex(v)) => Some(*v),
            _ => None,
        }
    }
}

const CARE_LEVELS: [&str; 8] = ["01", "12", "13", "21", "22", "23", "24", "25"];

impl Layout {
    /// Parse a layout from TOML text and check the fields a reader requires are present.
    pub fn parse(name: &str, text: &str, required: &[(&str, &[&str])]) -> Result<Self> {
        let layout: Layout =
            toml::from_str(text).map_err(|e| IngestError::Layout { name: name.to_owned(), reason: e.to_string() })?;
        if layout.encoding != "cp932" {
            return Err(IngestError::Layout { name: name.to_owned(), reason: "only cp932 is supported".into() });
        }
        for (kind, names) in required {
            let rec = layout.record(kind).ok_or_else(|| IngestError::Layout {
                name: name.to_owned(),
                reason: format!("record kind `{kind}` missing"),
            })?;
            for n in *names {
                if !rec.fields.iter().any(|f| f.name == *n) {
                    return Err(IngestError::Layout {
                        name: name.to_owned(),
                        reason: format!("record `{kind}` lacks field `{n}`"),
                    });
                }
            }
        }
        Ok(layout)
    }

    /// Load a layout file.
    pub fn load(path: &Path, required: &[(&str, &[&str])]) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|source| IngestError::Read { path: path.to_owned(), source })?;
        Self::parse(&path.display().to_string(), &text, required)
    }

    /// The spec of a record kind.
    pub fn record(&self, kind: &str) -> Option<&RecordSpec> {
        self.records.iter().find(|r| r.kind == kind)
    }

    /// Re-point field indexes by a header line (files with `header = true`): each field is
    /// found by its name. A missing name fails the file.
    pub fn with_header(mut self, path: &Path, header: &str) -> Result<Self> {
        let names: Vec<&str> = header.split(',').map(|s| s.trim().trim_matches('"')).collect();
        for rec in &mut self.records {
            for f in &mut rec.fields {
                f.index = names.iter().position(|n| *n == f.name).ok_or_else(|| IngestError::Header {
                    path: path.to_owned(),
                    reason: format!("missing column `{}`", f.name),
                })?;
            }
        }
        Ok(self)
    }
}

impl RecordSpec {
    /// Parse and validate the cells of one record.
    pub fn parse(&self, cols: &[&str]) -> std::result::Result<Row, CellError> {
        let mut row = Row::default();
        for f in &self.fields {
            let raw = cols.get(f.index).copied().unwrap_or("");
            let err = |e: FieldError| CellError { field: f.name.clone(), reason: e.code(), detail: e.detail() };
            let cell = match f.ty {
                FieldType::Text | FieldType::Identifier => {
                    let t = raw.trim_matches(|c: char| c == ' ' || c == '\u{3000}');
                    if t.is_empty() { Cell::Null } else { Cell::Text(t.to_owned()) }
                }
                FieldType::Code => {
                    fields::digits(raw, &f.len).map_err(err)?.map_or(Cell::Null, |d| Cell::Text(d.into_owned()))
                }
                FieldType::Int => fields::int(raw).map_err(err)?.map_or(Cell::Null, Cell::Int),
                FieldType::Yyyymm => fields::month(raw).map_err(err)?.map_or(Cell::Null, Cell::Date),
                FieldType::Yyyymmdd => fields::date(raw).map_err(err)?.map_or(Cell::Null, Cell::Date),
                FieldType::Sex => {
                    let t = fields::fold(raw);
                    if t.is_empty() {
                        Cell::Null
                    } else {
                        Cell::Sex(Sex::parse(&t).map_err(|_| CellError {
                            field: f.name.clone(),
                            reason: "bad_code",
                            detail: "sex must be 1 or 2",
                        })?)
                    }
                }
                FieldType::CareLevel => {
                    let t = fields::fold(raw);
                    if t.is_empty() {
                        Cell::Null
                    } else if CARE_LEVELS.contains(&&*t) {
                        Cell::Text(t.into_owned())
                    } else {
                        return Err(CellError {
                            field: f.name.clone(),
                            reason: "bad_code",
                            detail: "care level must be 01, 12, 13 or 21-25",
                        });
                    }
                }
            };
            if f.required && cell == Cell::Null {
                return Err(err(FieldError::Missing));
            }
            row.cells.insert(f.name.clone(), cell);
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_layouts_parse_and_validate_cells() {
        let l = Layout::parse("care_benefit", CARE_BENEFIT_TOML, &[("01", &["insured_number"]), ("02", &["units"])])
            .expect("layout");
        let rec = l.record("01").expect("01");
        let ok = "01,7131,202404,1310000001,131001,0000012345,ヤマダ,19400101,2,22,20240101,20241231,20,12000,";
        let row = rec.parse(&ok.split(',').collect::<Vec<_>>()).expect("row");
        assert_eq!(row.text("care_level"), Some("22"));
        assert_eq!(row.int("total_units"), Some(12000));
        assert_eq!(row.sex("sex"), Some(Sex::Female));
        let bad = ok.replace(",22,", ",99,");
        let e = rec.parse(&bad.split(',').collect::<Vec<_>>()).expect_err("care level");
        assert_eq!((e.field.as_str(), e.reason), ("care_level", "bad_code"));
        assert!(Layout::parse("x", CARE_BENEFIT_TOML, &[("01", &["nope"])]).is_err());
        let c = Layout::parse("care_certification", CARE_CERTIFICATION_TOML, &[]).expect("cert");
        assert!(c.header);
    }
}
