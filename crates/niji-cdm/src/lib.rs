//! The Niji common data model (CDM).
//!
//! Tables are shaped after OMOP CDM 5.4 (person, observation_period, visit_occurrence,
//! condition_occurrence, drug_exposure, measurement, procedure_occurrence, observation, death)
//! plus what OMOP lacks for Japanese secondary use: claim, immunization, care_certification,
//! care_service and document.
//!
//! Every column carries a [`ColumnClass`]. Policy, differential privacy and the steward's
//! review read it: the class is stored in the Arrow field metadata under [`CLASS_KEY`], the
//! column's documentation under [`DOC_KEY`], so a Parquet or Delta file written with these
//! schemas describes itself.
//!
//! Every table carries `person_id`, the keyed pseudonym of the person: the privacy unit.
//! Source codes stay as `*_source_value` with their vocabulary in `*_source_vocabulary`
//! (see [`Vocabulary`]); `*_concept_id` is filled where a vocabulary is loaded and 0 otherwise.
//! No table has a column for a direct identifier or free text: that is a property of this
//! crate that [`tests`] check.

pub mod tables;
mod vocab;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

pub use tables::TABLES;
pub use vocab::Vocabulary;

/// Field-metadata key holding a column's [`ColumnClass`].
pub const CLASS_KEY: &str = "niji.class";
/// Field-metadata key holding a column's one-line documentation.
pub const DOC_KEY: &str = "niji.doc";
/// Schema-metadata key holding the CDM table name.
pub const TABLE_KEY: &str = "niji.table";
/// The name of the privacy-unit column present in every table.
pub const PERSON_ID: &str = "person_id";

/// Errors of the CDM crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CdmError {
    /// A table name that is not part of the CDM.
    #[error("unknown CDM table `{0}`")]
    UnknownTable(String),
    /// A column class name that is not known.
    #[error("unknown column class `{0}`")]
    UnknownClass(String),
    /// A vocabulary name or system URI that is not known.
    #[error("unknown vocabulary `{0}`")]
    UnknownVocabulary(String),
    /// A sex code outside the accepted set.
    #[error("unknown sex code `{0}`")]
    UnknownSex(String),
}

/// Result alias of this crate.
pub type Result<T, E = CdmError> = std::result::Result<T, E>;

/// What a column is, for privacy purposes. Policy and DP decide from it what a researcher
/// may see and how a value may be released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ColumnClass {
    /// `person_id`: the keyed pseudonym of the person, the privacy unit.
    PersonId,
    /// Another keyed pseudonym (facility, provider, record): joinable, never released as a value.
    Pseudonym,
    /// A quasi-identifier (sex, birth year, region): part of re-identification risk.
    QuasiIdentifier,
    /// A sensitive attribute whose disclosure harms (care level, infection result).
    Sensitive,
    /// A code from a vocabulary (diagnosis, drug, lab, procedure).
    Code,
    /// A numeric measure that can be summed or averaged (points, lab values, quantities).
    Measure,
    /// A calendar date or month.
    Date,
    /// A small categorical attribute (visit type, claim type, flags).
    Category,
    /// Lineage: which source system or file kind a row came from.
    Provenance,
}

impl ColumnClass {
    /// Every class, in declaration order.
    pub const ALL: [ColumnClass; 9] = [
        ColumnClass::PersonId,
        ColumnClass::Pseudonym,
        ColumnClass::QuasiIdentifier,
        ColumnClass::Sensitive,
        ColumnClass::Code,
        ColumnClass::Measure,
        ColumnClass::Date,
        ColumnClass::Category,
        ColumnClass::Provenance,
    ];

    /// The stable name used in metadata, catalog files and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnClass::PersonId => "person_id",
            ColumnClass::Pseudonym => "pseudonym",
            ColumnClass::QuasiIdentifier => "quasi_identifier",
            ColumnClass::Sensitive => "sensitive",
            ColumnClass::Code => "code",
            ColumnClass::Measure => "measure",
            ColumnClass::Date => "date",
            ColumnClass::Category => "category",
            ColumnClass::Provenance => "provenance",
        }
    }
}

impl fmt::Display for ColumnClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ColumnClass {
    type Err = CdmError;
    fn from_str(s: &str) -> Result<Self> {
        ColumnClass::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| CdmError::UnknownClass(s.to_owned()))
    }
}

/// The Arrow type of a CDM column. A closed set keeps writers and readers simple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// UTF-8 text (codes, pseudonyms in hex, categories).
    Utf8,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// Boolean flag.
    Boolean,
    /// Calendar date (days since the epoch).
    Date32,
}

impl ColumnType {
    /// The Arrow data type.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date32 => DataType::Date32,
        }
    }
}

/// One column of a CDM table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name (snake_case, OMOP spelling where OMOP has one).
    pub name: &'static str,
    /// Arrow type.
    pub ty: ColumnType,
    /// Whether the column may be null.
    pub nullable: bool,
    /// Privacy class.
    pub class: ColumnClass,
    /// One-line documentation.
    pub doc: &'static str,
}

impl ColumnDef {
    /// The Arrow field, with class and documentation in its metadata.
    pub fn field(&self) -> Field {
        Field::new(self.name, self.ty.data_type(), self.nullable).with_metadata(HashMap::from([
            (CLASS_KEY.to_owned(), self.class.as_str().to_owned()),
            (DOC_KEY.to_owned(), self.doc.to_owned()),
        ]))
    }
}

/// One CDM table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    /// Table name.
    pub name: &'static str,
    /// What one row is.
    pub doc: &'static str,
    /// Columns in storage order; `person_id` is always among them.
    pub columns: &'static [ColumnDef],
}

impl TableDef {
    /// The Arrow schema with column classes and docs in field metadata.
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self.columns.iter().map(ColumnDef::field).collect();
        Arc::new(Schema::new(fields).with_metadata(HashMap::from([
            (TABLE_KEY.to_owned(), self.name.to_owned()),
            (DOC_KEY.to_owned(), self.doc.to_owned()),
        ])))
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&'static ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Index of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Columns of the given class.
    pub fn columns_of(&self, class: ColumnClass) -> impl Iterator<Item = &'static ColumnDef> + '_ {
        self.columns.iter().filter(move |c| c.class == class)
    }
}

/// A CDM table by name.
pub fn table(name: &str) -> Result<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name).ok_or_else(|| CdmError::UnknownTable(name.to_owned()))
}

/// Read the class of an Arrow field written with a CDM schema.
pub fn field_class(field: &Field) -> Option<ColumnClass> {
    field.metadata().get(CLASS_KEY).and_then(|c| c.parse().ok())
}

/// Administrative sex as recorded in Japanese sources.
///
/// Receipts and care records use `1` male, `2` female; FHIR uses `male`/`female`/`other`/`unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sex {
    /// 男
    Male,
    /// 女
    Female,
    /// Other or unknown.
    Unknown,
}

impl Sex {
    /// The CDM code stored in `sex` columns: `M`, `F` or `U`.
    pub fn code(self) -> &'static str {
        match self {
            Sex::Male => "M",
            Sex::Female => "F",
            Sex::Unknown => "U",
        }
    }

    /// Parse a receipt/care code (`1`, `2`), a FHIR code (`male`, …) or a CDM code (`M`, …).
    pub fn parse(code: &str) -> Result<Sex> {
        match code.trim() {
            "1" | "１" | "male" | "M" => Ok(Sex::Male),
            "2" | "２" | "female" | "F" => Ok(Sex::Female),
            "3" | "9" | "other" | "unknown" | "U" => Ok(Sex::Unknown),
            other => Err(CdmError::UnknownSex(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests;
