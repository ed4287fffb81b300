//! DataFusion scalar UDFs so pipelines can express pseudonymization, normalization and
//! generalization in SQL. [`register_udfs`] registers them on a session:
//!
//! | function | returns |
//! |---|---|
//! | `niji_pseudonym(domain, part, ...)` | keyed pseudonym (32 hex) of the parts; domain one of `facility`, `insurer`, `record`, `person_source`; NULL when a part is NULL |
//! | `niji_person_id(insurer, kigo, bango, branch, kana, birth_date, sex)` | `person_id` by the stateless linkage rule; NULL when the identifiers are malformed or insufficient |
//! | `niji_linkage_error(insurer, kigo, bango, branch, kana, birth_date, sex)` | NULL when linkable, else `field: reason` (never a value): the quarantine reason |
//! | `niji_normalize_kana(s)` | folded kana |
//! | `niji_normalize_insurer(s)` | 8-digit insurer number, NULL when malformed |
//! | `niji_age_band(birth, event_date)` | 5-year band (`40-44`, `90+`); birth is a date (exact age) or a year (age reached in the event year) |
//! | `niji_month(date)` | first day of the month |
//! | `niji_icd10_parent(code)` | 3-character ICD-10 category |
//! | `niji_prefecture_code(name)` | JIS prefecture code of a prefecture name |
//! | `niji_postcode_prefecture(postcode)` | JIS prefecture code of a postcode |
//! | `niji_secondary_medical_area(postcode)` | 二次医療圏 code, NULL where unmapped |
//! | `niji_date_shift(person_id, date)` | the date moved by the person's consistent shift (±1..180 days) |
//!
//! [`register_project_rekey`] adds `niji_rekey(person_id)` for one project's extract.
//! The keys live inside the UDFs; their `Debug` shows only the key id.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use datafusion::common::{DataFusionError, Result as DfResult, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::prelude::SessionContext;

use crate::generalize::{self, AgeBands, DateShifter};
use crate::key::{Domain, PSEUDONYM_BYTES, ProjectKey, PseudonymKey};
use crate::linkage::{RawIdentifiers, link_raw};
use crate::normalize;

/// Largest shift of `niji_date_shift`, in days.
pub const DATE_SHIFT_MAX_DAYS: u32 = 180;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Pseudonym,
    PersonId,
    LinkageError,
    NormalizeKana,
    NormalizeInsurer,
    AgeBand,
    Month,
    Icd10Parent,
    PrefectureCode,
    PostcodePrefecture,
    SecondaryMedicalArea,
    DateShift,
    Rekey,
}

enum Secret {
    None,
    Key(PseudonymKey),
    Shift(DateShifter),
    Project(ProjectKey),
}

impl Secret {
    fn key_id(&self) -> &str {
        match self {
            Secret::None => "",
            Secret::Key(k) => k.key_id(),
            Secret::Shift(_) => "date-shift",
            Secret::Project(p) => p.key_id(),
        }
    }
}

struct NijiUdf {
    name: &'static str,
    kind: Kind,
    signature: Signature,
    secret: Secret,
    key_id: String,
}

impl fmt::Debug for NijiUdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NijiUdf").field("name", &self.name).field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl PartialEq for NijiUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.kind == other.kind && self.key_id == other.key_id
    }
}

impl Eq for NijiUdf {}

impl Hash for NijiUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.kind.hash(state);
        self.key_id.hash(state);
    }
}

fn udf(name: &'static str, kind: Kind, args: usize, secret: Secret, base_key_id: &str) -> ScalarUDF {
    let signature = if kind == Kind::Pseudonym {
        Signature::variadic_any(Volatility::Immutable)
    } else {
        Signature::any(args, Volatility::Immutable)
    };
    let key_id = match &secret {
        Secret::None => String::new(),
        s => format!("{base_key_id}/{}", s.key_id()),
    };
    ScalarUDF::new_from_impl(NijiUdf { name, kind, signature, secret, key_id })
}

/// Register the Niji UDFs, keyed with the pipeline key.
pub fn register_udfs(ctx: &SessionContext, key: &PseudonymKey) {
    let id = key.key_id();
    let k = || Secret::Key(key.clone());
    let shifter = DateShifter::new(key.derive("date-shift"), DATE_SHIFT_MAX_DAYS);
    for u in [
        udf("niji_pseudonym", Kind::Pseudonym, 0, k(), id),
        udf("niji_person_id", Kind::PersonId, 7, k(), id),
        udf("niji_linkage_error", Kind::LinkageError, 7, Secret::None, id),
        udf("niji_normalize_kana", Kind::NormalizeKana, 1, Secret::None, id),
        udf("niji_normalize_insurer", Kind::NormalizeInsurer, 1, Secret::None, id),
        udf("niji_age_band", Kind::AgeBand, 2, Secret::None, id),
        udf("niji_month", Kind::Month, 1, Secret::None, id),
        udf("niji_icd10_parent", Kind::Icd10Parent, 1, Secret::None, id),
        udf("niji_prefecture_code", Kind::PrefectureCode, 1, Secret::None, id),
        udf("niji_postcode_prefecture", Kind::PostcodePrefecture, 1, Secret::None, id),
        udf("niji_secondary_medical_area", Kind::SecondaryMedicalArea, 1, Secret::None, id),
        udf("niji_date_shift", Kind::DateShift, 2, Secret::Shift(shifter), id),
    ] {
        ctx.register_udf(u);
    }
}

/// Register `niji_rekey(person_id)`: the project-scoped pseudonym for a row-level extract.
pub fn register_project_rekey(ctx: &SessionContext, project: &ProjectKey) {
    ctx.register_udf(udf("niji_rekey", Kind::Rekey, 1, Secret::Project(project.clone()), project.key_id()));
}

fn strings(a: &ArrayRef) -> DfResult<StringArray> {
    let c = cast(a, &DataType::Utf8)?;
    Ok(c.as_string::<i32>().clone())
}

/// Dates from a date/timestamp column, or from text as the sources write it (`YYYYMMDD`,
/// `YYYY-MM-DD`, `GYYMMDD`, any width); unparsable text gives NULL.
fn dates(a: &ArrayRef) -> DfResult<Vec<Option<NaiveDate>>> {
    if matches!(a.data_type(), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) {
        return Ok(strings(a)?.iter().map(|v| v.and_then(|s| normalize::birth_date(s, None).ok())).collect());
    }
    let c = cast(a, &DataType::Date32)?;
    Ok(c.as_primitive::<arrow::datatypes::Date32Type>().iter().map(|v| v.and_then(to_date)).collect())
}

const EPOCH_CE_DAYS: i32 = 719_163;

fn to_date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(EPOCH_CE_DAYS)?)
}

fn from_date(d: NaiveDate) -> i32 {
    d.signed_duration_since(NaiveDate::default()).num_days().try_into().unwrap_or(i32::MAX)
}

fn map_str(a: &ArrayRef, f: impl Fn(&str) -> Option<String>) -> DfResult<ArrayRef> {
    let s = strings(a)?;
    let out: StringArray = s.iter().map(|v| v.and_then(&f)).collect();
    Ok(Arc::new(out))
}

fn domain_of(name: &str) -> DfResult<Domain> {
    Ok(match name {
        "facility" => Domain::Facility,
        "insurer" => Domain::Insurer,
        "record" => Domain::Record,
        "person_source" => Domain::PersonSource,
        _ => {
            return exec_err!(
                "niji_pseudonym: the domain (argument 1) must be one of facility, insurer, record, person_source; person keys go through niji_person_id"
            );
        }
    })
}

impl NijiUdf {
    fn key(&self) -> DfResult<&PseudonymKey> {
        match &self.secret {
            Secret::Key(k) => Ok(k),
            Secret::Project(p) => Ok(p.key()),
            _ => Err(DataFusionError::Internal(format!("{} has no key", self.name))),
        }
    }

    fn pseudonyms(&self, arrays: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
        if arrays.len() < 2 {
            return exec_err!("niji_pseudonym needs a domain and at least one part");
        }
        let key = self.key()?;
        let domains = strings(&arrays[0])?;
        let parts: Vec<StringArray> = arrays[1..].iter().map(strings).collect::<DfResult<_>>()?;
        let mut b = StringBuilder::with_capacity(rows, rows * 2 * PSEUDONYM_BYTES);
        let mut buf = [0u8; 2 * PSEUDONYM_BYTES];
        let mut row: Vec<&str> = Vec::with_capacity(parts.len());
        for i in 0..rows {
            row.clear();
            if domains.is_null(i) || parts.iter().any(|p| p.is_null(i)) {
                b.append_null();
                continue;
            }
            let domain = domain_of(domains.value(i))?;
            row.extend(parts.iter().map(|p| p.value(i)));
            key.pseudonym_hex(domain, &row, &mut buf);
            b.append_value(std::str::from_utf8(&buf).map_err(|e| DataFusionError::Internal(e.to_string()))?);
        }
        Ok(Arc::new(b.finish()))
    }

    fn linkage(&self, arrays: &[ArrayRef], rows: usize) -> DfResult<ArrayRef> {
        let cols: Vec<StringArray> = arrays.iter().map(strings).collect::<DfResult<_>>()?;
        let get = |c: usize, i: usize| (!cols[c].is_null(i)).then(|| cols[c].value(i));
        let mut b = StringBuilder::with_capacity(rows, rows * 32);
        for i in 0..rows {
            let raw = RawIdentifiers {
                insurer_number: get(0, i),
                kigo: get(1, i),
                bango: get(2, i),
                branch: get(3, i),
                kana_name: get(4, i),
                birth_date: get(5, i),
                sex: get(6, i),
                source_id: None,
            };
            match (self.kind, &self.secret) {
                (Kind::PersonId, Secret::Key(k)) => match link_raw(k, &raw, None) {
                    Ok(l) => b.append_value(l.person_id),
                    Err(_) => b.append_null(),
                },
                _ => {
                    // Validation only: a throwaway key, the pseudonyms are discarded.
                    match raw.parse(None).and_then(|ids| crate::linkage::validate(&ids)) {
                        Ok(()) => b.append_null(),
                        Err(crate::PseudoError::MalformedIdentifier { field, reason }) => {
                            b.append_value(format!("{field}: {reason}"))
                        }
                        Err(e) => b.append_value(e.to_string()),
                    }
                }
            }
        }
        Ok(Arc::new(b.finish()))
    }

    fn age_bands(&self, arrays: &[ArrayRef]) -> DfResult<ArrayRef> {
        let bands = AgeBands::default();
        let events = dates(&arrays[1])?;
        let ages: Vec<Option<u32>> = match arrays[0].data_type() {
            DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(..)
            | DataType::Utf8
            | DataType::Utf8View
            | DataType::LargeUtf8 => {
                let births = dates(&arrays[0])?;
                births.iter().zip(events.iter()).map(|(b, e)| generalize::age_at((*b)?, (*e)?)).collect()
            }
            _ => {
                let years = cast(&arrays[0], &DataType::Int32)?;
                let years = years.as_primitive::<arrow::datatypes::Int32Type>();
                years.iter().zip(events.iter()).map(|(y, e)| generalize::age_in_event_year(y?, (*e)?)).collect()
            }
        };
        let out: StringArray = ages.into_iter().map(|a| a.map(|a| bands.label(a))).collect();
        Ok(Arc::new(out))
    }
}

impl ScalarUDFImpl for NijiUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.kind {
            Kind::Month | Kind::DateShift => DataType::Date32,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args.args.iter().map(|a| a.to_array_of_size(rows)).collect::<DfResult<_>>()?;
        let out: ArrayRef = match self.kind {
            Kind::Pseudonym => self.pseudonyms(&arrays, rows)?,
            Kind::PersonId | Kind::LinkageError => self.linkage(&arrays, rows)?,
            Kind::NormalizeKana => map_str(&arrays[0], |s| Some(normalize::kana(s)))?,
            Kind::NormalizeInsurer => map_str(&arrays[0], |s| normalize::insurer_number(s).ok())?,
            Kind::AgeBand => self.age_bands(&arrays)?,
            Kind::Month => {
                let d = dates(&arrays[0])?;
                let out: Date32Array = d.iter().map(|v| v.map(|x| from_date(generalize::month_start(x)))).collect();
                Arc::new(out)
            }
            Kind::Icd10Parent => map_str(&arrays[0], generalize::icd10_parent)?,
            Kind::PrefectureCode => map_str(&arrays[0], |s| generalize::prefecture_code(s).map(str::to_owned))?,
            Kind::PostcodePrefecture => {
                map_str(&arrays[0], |s| generalize::prefecture_from_postcode(s).map(str::to_owned))?
            }
            Kind::SecondaryMedicalArea => {
                map_str(&arrays[0], |s| generalize::secondary_medical_area(s).map(str::to_owned))?
            }
            Kind::DateShift => {
                let Secret::Shift(shifter) = &self.secret else {
                    return Err(DataFusionError::Internal("niji_date_shift has no key".into()));
                };
                let persons = strings(&arrays[0])?;
                let d = dates(&arrays[1])?;
                let out: Date32Array =
                    persons.iter().zip(d.iter()).map(|(p, v)| Some(from_date(shifter.shift(p?, (*v)?)))).collect();
                Arc::new(out)
            }
            Kind::Rekey => {
                let Secret::Project(p) = &self.secret else {
                    return Err(DataFusionError::Internal("niji_rekey has no key".into()));
                };
                map_str(&arrays[0], |s| Some(p.rekey(s)))?
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}
