//! Long-term-care reader (介護保険): benefit statements (介護給付費明細書, records `01` basic and
//! `02` detail) → `claim` + `person` + `care_service`; care-level certifications (要介護認定)
//! → `care_certification` + `person`.
//!
//! Layouts are data ([`layout`], `pipelines/layouts/care_*.toml`). A file whose first line is
//! the certification header is a certification file; any other file is a benefit-statement
//! file. Both are CP932.
//!
//! **Record counting.** One non-empty line = one record; the certification header line is not
//! a record. A `02` line whose statement (`01`) was quarantined is quarantined
//! (`statement_quarantined`); one whose statement was excluded by consent is consent-excluded;
//! a `02` without a preceding `01` of the same insured person is quarantined (`orphan_detail`).
//!
//! Linkage: care insurance has no 記号/番号, so persons link by kana name + birth date + sex
//! (ID2, which joins them to receipts and FHIR), else by the care insured-person number within
//! its insurer (source id). Insured number and kana name are never stored.

pub mod layout;

use std::path::{Path, PathBuf};

use chrono::Datelike;
use niji_cdm::tables::{CARE_CERTIFICATION, CARE_SERVICE, CLAIM, PERSON_TABLE};
use niji_pseudo::linkage::{Identifiers, PersonLink, link};
use niji_pseudo::{Domain, PseudoError, PseudonymKey};

use crate::consent::{ConsentDecision, ConsentGate};
use crate::receipt::{Outputs, fields, run_files};
use crate::report::{IngestReport, InputReport, Quarantined};
use crate::sink::Value;
use crate::{IngestError, Result};
use layout::{CellError, Layout, Row};

/// Source-system value of every row this reader writes.
pub const SOURCE: &str = "care";

/// Fields the benefit reader uses.
const BENEFIT_FIELDS: &[(&str, &[&str])] = &[
    (
        "01",
        &[
            "form_id",
            "service_month",
            "provider_number",
            "insurer_number",
            "insured_number",
            "kana_name",
            "birth_date",
            "sex",
            "care_level",
            "service_days",
            "total_units",
            "public_payer_number",
        ],
    ),
    (
        "02",
        &[
            "service_month",
            "provider_number",
            "insured_number",
            "service_type_code",
            "service_item_code",
            "units",
            "days",
        ],
    ),
];
/// Fields the certification reader uses.
const CERT_FIELDS: &[(&str, &[&str])] = &[(
    "certification",
    &[
        "insurer_number",
        "insured_number",
        "kana_name",
        "birth_date",
        "sex",
        "application_date",
        "decision_date",
        "care_level",
        "valid_from",
        "valid_to",
    ],
)];

/// The two care layouts.
#[derive(Debug, Clone)]
pub struct CareLayouts {
    /// Benefit statements.
    pub benefit: Layout,
    /// Certifications.
    pub certification: Layout,
}

impl CareLayouts {
    /// The layouts compiled in from `pipelines/layouts/`.
    pub fn builtin() -> Result<Self> {
        Ok(Self {
            benefit: Layout::parse("care_benefit", layout::CARE_BENEFIT_TOML, BENEFIT_FIELDS)?,
            certification: Layout::parse("care_certification", layout::CARE_CERTIFICATION_TOML, CERT_FIELDS)?,
        })
    }

    /// Load `care_benefit.toml` and `care_certification.toml` from a folder (corrected layouts).
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Self {
            benefit: Layout::load(&dir.join("care_benefit.toml"), BENEFIT_FIELDS)?,
            certification: Layout::load(&dir.join("care_certification.toml"), CERT_FIELDS)?,
        })
    }
}

/// Ingest care files into `out` (one folder per CDM table, `_quarantine.ndjson`,
/// `_report.json`). Unreadable or undecodable files are listed in the report with their error.
pub fn run(
    inputs: &[PathBuf],
    out: &Path,
    key: &PseudonymKey,
    consent: Option<&ConsentGate>,
    layouts: &CareLayouts,
) -> Result<IngestReport> {
    run_files(SOURCE, inputs, out, key.key_id(), |path, o| ingest_file(path, key, consent, layouts, o))
}

/// Read one care file (benefit statements or certifications, told apart by the header).
#[tracing::instrument(skip_all, fields(file = %path.display()))]
pub fn ingest_file(
    path: &Path,
    key: &PseudonymKey,
    consent: Option<&ConsentGate>,
    layouts: &CareLayouts,
    out: &mut Outputs<'_>,
) -> Result<InputReport> {
    let bytes = std::fs::read(path).map_err(|source| IngestError::Read { path: path.to_owned(), source })?;
    let text = fields::decode_cp932(path, &bytes)?;
    drop(bytes);
    let mut recs = fields::records(&text).peekable();
    let cert_first = layouts.certification.records.first().and_then(|r| r.fields.first()).map(|f| f.name.as_str());
    let is_cert = recs.peek().is_some_and(|(_, l)| l.split(',').next().map(str::trim) == cert_first);
    let record_file = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let mut r = CareReader {
        key,
        consent,
        file: path.display().to_string(),
        record_file,
        input: InputReport { file: path.display().to_string(), ..Default::default() },
        out,
    };
    if is_cert {
        let Some((_, header)) = recs.next() else { return Ok(r.input) };
        let lay = layouts.certification.clone().with_header(path, header)?;
        let spec = &lay.records[0];
        for (line, rec) in recs {
            r.input.records += 1;
            r.certification(line, rec, spec)?;
        }
    } else {
        let mut current: Option<Statement> = None;
        for (line, rec) in recs {
            r.input.records += 1;
            r.benefit(line, rec, &layouts.benefit, &mut current)?;
        }
    }
    Ok(r.input)
}

enum StatementState {
    Mapped { person_id: String, claim_id: String, provider_id: String, care_level: Option<String> },
    Quarantined,
    Excluded,
}

struct Statement {
    insured_number: String,
    state: StatementState,
}

struct CareReader<'a, 'o> {
    key: &'a PseudonymKey,
    consent: Option<&'a ConsentGate>,
    file: String,
    record_file: String,
    input: InputReport,
    out: &'a mut Outputs<'o>,
}

fn cell_err(e: CellError) -> (String, &'static str, &'static str) {
    (e.field, e.reason, e.detail)
}

impl CareReader<'_, '_> {
    fn quarantine(&mut self, line: u64, kind: &str, field: &str, reason: &str, detail: &str) -> Result<()> {
        self.out.quarantine.push(&Quarantined {
            file: self.file.clone(),
            line: Some(line),
            entry: None,
            record_type: Some(kind.to_owned()),
            field: Some(field.to_owned()).filter(|f| !f.is_empty()),
            reason: reason.to_owned(),
            detail: detail.to_owned(),
        })?;
        self.out.report.count_reason(reason);
        self.input.quarantined += 1;
        Ok(())
    }

    fn record_id(&self, line: u64) -> String {
        self.key.pseudonym(Domain::Record, &[&self.record_file, &line.to_string()])
    }

    /// Link a person; `Err` = (field, reason, detail) for the quarantine.
    fn person(
        &self,
        row: &Row,
        insurer: Option<&str>,
    ) -> std::result::Result<PersonLink, (String, &'static str, &'static str)> {
        let insured = row.text("insured_number");
        let system = insurer.map(|i| format!("care-insured:{i:0>8}"));
        let ids = Identifiers {
            kana_name: row.text("kana_name"),
            birth_date: row.date("birth_date"),
            sex: row.sex("sex"),
            source_id: match (&system, insured) {
                (Some(s), Some(n)) => Some((s.as_str(), n)),
                _ => None,
            },
            ..Default::default()
        };
        link(self.key, &ids).map_err(|e| match e {
            PseudoError::MalformedIdentifier { field, .. } => {
                (field.to_owned(), "malformed_identifier", "an identifier field is malformed")
            }
            _ => (String::new(), "no_linkage_key", "neither kana name nor insured number is usable"),
        })
    }

    fn push_person(&mut self, row: &Row, linked: &PersonLink) -> Result<()> {
        let birth = row.date("birth_date");
        self.out.sink.push(
            &PERSON_TABLE,
            &[
                linked.person_id.as_str().into(),
                row.sex("sex").map_or("U", niji_cdm::Sex::code).into(),
                birth.map(|b| Value::I32(b.year())).unwrap_or(Value::Null),
                birth.map(|b| Value::I32(b.month() as i32)).unwrap_or(Value::Null),
                Value::Null,
                Value::Null,
                linked.basis.as_str().into(),
                SOURCE.into(),
            ],
        )
    }

    fn excluded(&mut self, linked: &PersonLink) -> bool {
        match self.consent.map(|g| g.decide(linked)) {
            Some(ConsentDecision::Exclude(reason)) => {
                self.out.report.warn(&format!("consent_excluded_care_{}", reason.code()));
                true
            }
            _ => false,
        }
    }

    fn benefit(&mut self, line: u64, rec: &str, lay: &Layout, current: &mut Option<Statement>) -> Result<()> {
        let cols: Vec<&str> = rec.split(',').collect();
        let kind = fields::fold(cols.get(lay.kind_field.unwrap_or(0)).copied().unwrap_or("")).into_owned();
        let Some(spec) = lay.record(&kind) else {
            let k = if kind.len() == 2 && kind.bytes().all(|b| b.is_ascii_digit()) { kind.as_str() } else { "" };
            return self.quarantine(line, k, "record_kind", "unknown_record_type", "not a known record kind");
        };
        let raw_insured = spec
            .fields
            .iter()
            .find(|f| f.name == "insured_number")
            .and_then(|f| cols.get(f.index))
            .map(|s| s.trim())
            .unwrap_or("");
        if kind == "01" {
            *current = None;
            let row = match spec.parse(&cols) {
                Ok(r) => r,
                Err(e) => {
                    // Its details follow it into quarantine rather than being reported as orphans.
                    *current =
                        Some(Statement { insured_number: raw_insured.to_owned(), state: StatementState::Quarantined });
                    let (f, r, d) = cell_err(e);
                    return self.quarantine(line, "01", &f, r, d);
                }
            };
            let insured = raw_insured.to_owned();
            let insurer = row.text("insurer_number").map(str::to_owned);
            let linked = match self.person(&row, insurer.as_deref()) {
                Ok(l) => l,
                Err((f, r, d)) => {
                    *current = Some(Statement { insured_number: insured, state: StatementState::Quarantined });
                    return self.quarantine(line, "01", &f, r, d);
                }
            };
            if self.excluded(&linked) {
                self.input.consent_excluded += 1;
                *current = Some(Statement { insured_number: insured, state: StatementState::Excluded });
                return Ok(());
            }
            let provider = row.text("provider_number").unwrap_or("");
            let provider_id = self.key.pseudonym(Domain::Facility, &["care", provider]);
            let claim_id = self.record_id(line);
            self.push_person(&row, &linked)?;
            self.out.sink.push(
                &CLAIM,
                &[
                    claim_id.as_str().into(),
                    linked.person_id.as_str().into(),
                    provider_id.as_str().into(),
                    "care".into(),
                    row.date("service_month").into(),
                    Value::Null,
                    row.text("form_id").into(),
                    Value::Null,
                    row.int("service_days").and_then(|v| i32::try_from(v).ok()).into(),
                    row.int("total_units").into(),
                    "care".into(),
                    row.text("public_payer_number").map(|p| p[..2].to_owned()).into(),
                    provider.get(..2).map(str::to_owned).into(),
                    SOURCE.into(),
                ],
            )?;
            self.input.loaded += 1;
            *current = Some(Statement {
                insured_number: insured,
                state: StatementState::Mapped {
                    person_id: linked.person_id,
                    claim_id,
                    provider_id,
                    care_level: row.text("care_level").map(str::to_owned),
                },
            });
            return Ok(());
        }
        // 02 detail.
        let Some(st) = current.as_ref().filter(|s| s.insured_number == raw_insured) else {
            return self.quarantine(
                line,
                &kind,
                "insured_number",
                "orphan_detail",
                "detail record without a preceding basic (01) record of the same insured person",
            );
        };
        let (person_id, claim_id, provider_id, care_level) = match &st.state {
            StatementState::Quarantined => {
                return self.quarantine(
                    line,
                    &kind,
                    "",
                    "statement_quarantined",
                    "the statement (01) this detail belongs to was quarantined",
                );
            }
            StatementState::Excluded => {
                self.input.consent_excluded += 1;
                return Ok(());
            }
            StatementState::Mapped { person_id, claim_id, provider_id, care_level } => {
                (person_id.clone(), claim_id.clone(), provider_id.clone(), care_level.clone())
            }
        };
        let row = match spec.parse(&cols) {
            Ok(r) => r,
            Err(e) => {
                let (f, r, d) = cell_err(e);
                return self.quarantine(line, &kind, &f, r, d);
            }
        };
        self.out.sink.push(
            &CARE_SERVICE,
            &[
                self.record_id(line).into(),
                person_id.into(),
                claim_id.into(),
                provider_id.into(),
                row.date("service_month").into(),
                row.text("service_type_code").into(),
                row.text("service_item_code").into(),
                row.int("units").into(),
                row.int("days").and_then(|v| i32::try_from(v).ok()).into(),
                care_level.into(),
                SOURCE.into(),
            ],
        )?;
        self.input.loaded += 1;
        Ok(())
    }

    fn certification(&mut self, line: u64, rec: &str, spec: &layout::RecordSpec) -> Result<()> {
        let cols: Vec<&str> = rec.split(',').collect();
        let row = match spec.parse(&cols) {
            Ok(r) => r,
            Err(e) => {
                let (f, r, d) = cell_err(e);
                return self.quarantine(line, "certification", &f, r, d);
            }
        };
        let insurer = row.text("insurer_number").map(str::to_owned);
        let linked = match self.person(&row, insurer.as_deref()) {
            Ok(l) => l,
            Err((f, r, d)) => return self.quarantine(line, "certification", &f, r, d),
        };
        if self.excluded(&linked) {
            self.input.consent_excluded += 1;
            return Ok(());
        }
        self.push_person(&row, &linked)?;
        let insurer_id = insurer.map(|i| self.key.pseudonym(Domain::Insurer, &[&format!("{i:0>8}")]));
        self.out.sink.push(
            &CARE_CERTIFICATION,
            &[
                self.record_id(line).into(),
                linked.person_id.into(),
                row.text("care_level").into(),
                row.date("application_date").into(),
                row.date("decision_date").into(),
                row.date("valid_from").into(),
                row.date("valid_to").into(),
                insurer_id.into(),
                SOURCE.into(),
            ],
        )?;
        self.input.loaded += 1;
        Ok(())
    }
}
