//! Receipt reader: レセプト電算処理 files (`.UKE`, 医科 and 調剤) → CDM rows.
//!
//! A file is decoded as CP932 in one pass (a UTF-8 file or an invalid byte sequence fails the
//! file, named in the report), then read record by record (one line = one record). Records
//! between one `RE` and the next form a receipt; a receipt is mapped when it is complete:
//!
//! | record | goes to |
//! |---|---|
//! | IR / YK | facility pseudonym, prefecture, billing month, claim type (medical / pharmacy); the header picks the layout |
//! | RE | `claim`, `person`, `visit_occurrence`; name, kana name, birth date feed linkage only |
//! | HO | insurer kind, total points, service days; insurer number, 記号, 番号 feed linkage only |
//! | KO | public-expense programme (法別番号, first 2 digits); recipient number feeds linkage only (≤ 4 per receipt) |
//! | SY | `condition_occurrence` (the name of an uncoded `0000999` diagnosis is never read) |
//! | SI | `procedure_occurrence`, one row per day marked in the days-of-month columns |
//! | IY | `drug_exposure`, one row per line (first and last marked day) |
//! | TO | `procedure_occurrence` with vocabulary `RECEIPT_DEVICE` (product name never read) |
//! | SH, CZ + IY, TO (調剤) | `drug_exposure` / device rows per dispensing (`receipt/pharmacy.rs`) |
//! | CO, SJ, SN, JD, MF, TK, KI, ST | counted, not stored (free text or eligibility data) |
//! | GO | trailer: its receipt count is checked (warning `trailer_receipt_count_mismatch`) |
//!
//! **Record counting.** `records` in the report counts non-empty lines. A line is *loaded*
//! when its receipt was mapped and the line itself was valid (including the counted-only
//! types above), *quarantined* when it is malformed, out of order or belongs to a quarantined
//! receipt, and *consent-excluded* when its receipt's person is excluded by consent. So
//! records = loaded + quarantined + consent-excluded, per file.
//!
//! Field positions follow the 医科 record layout of the 記録条件仕様 as documented by
//! yokenzan/receiptisan (`record.rb`) and checked against the real sample in
//! `tests/data/receipts/`; the 調剤 positions ([`layout`]) against two public descriptions of
//! the 記録条件仕様(調剤用) (see docs/CLAIMS.md).

pub mod fields;
pub mod layout;
mod pharmacy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use niji_cdm::tables::{
    CLAIM, CONDITION_OCCURRENCE, DRUG_EXPOSURE, PERSON_TABLE, PROCEDURE_OCCURRENCE, VISIT_OCCURRENCE,
};
use niji_cdm::{Sex, Vocabulary};
use niji_pseudo::linkage::{Identifiers, PersonLink, link};
use niji_pseudo::{Domain, PseudoError, PseudonymKey};
use serde::Serialize;

use crate::consent::{ConsentDecision, ConsentGate};
use crate::report::{IngestReport, InputReport, QuarantineWriter, Quarantined};
use crate::sink::{CdmSink, Value};
use crate::{IngestError, Result};
use fields::FieldError;
use layout::{Kind, Layout};

/// Source-system value of every row this reader writes.
pub const SOURCE: &str = "receipt";

/// Loaded counts of a run, by record type, for checking against a file's known contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReceiptStats {
    /// Receipts (RE) mapped into a claim.
    pub receipts: u64,
    /// Loaded lines per record type.
    pub loaded_by_type: BTreeMap<String, u64>,
}

impl ReceiptStats {
    /// Loaded lines of one record type.
    pub fn loaded(&self, record_type: &str) -> u64 {
        self.loaded_by_type.get(record_type).copied().unwrap_or(0)
    }
}

/// Where a run writes: the sink, the quarantine file and the report being built.
#[derive(Debug)]
pub struct Outputs<'a> {
    /// CDM Parquet sink.
    pub sink: &'a mut CdmSink,
    /// Quarantine NDJSON.
    pub quarantine: &'a mut QuarantineWriter,
    /// Run report (reasons and warnings are counted here).
    pub report: &'a mut IngestReport,
}

/// Ingest receipt files into `out` (one folder per CDM table, `_quarantine.ndjson`,
/// `_report.json`). A file that cannot be read or decoded is listed in the report with its
/// error; the run goes on with the next file.
pub fn run(
    inputs: &[PathBuf],
    out: &Path,
    key: &PseudonymKey,
    consent: Option<&ConsentGate>,
) -> Result<(IngestReport, ReceiptStats)> {
    let mut stats = ReceiptStats::default();
    let report =
        run_files(SOURCE, inputs, out, key.key_id(), |path, o| ingest_file(path, key, consent, o, &mut stats))?;
    Ok((report, stats))
}

/// The file-at-a-time driver shared by the line-based readers (receipts, care): one sink,
/// quarantine file and report for all inputs. A file that cannot be read, decoded or
/// recognised is listed in the report with its error and the run goes on; any other error
/// stops the run. The report must add up before it is written.
pub(crate) fn run_files(
    source: &str,
    inputs: &[PathBuf],
    out: &Path,
    key_id: &str,
    mut ingest_file: impl FnMut(&Path, &mut Outputs<'_>) -> Result<InputReport>,
) -> Result<IngestReport> {
    let mut sink = CdmSink::create(out)?;
    let mut quarantine = QuarantineWriter::create(&out.join("_quarantine.ndjson"))?;
    let mut report = IngestReport::new(source, key_id);
    for path in inputs {
        let mut o = Outputs { sink: &mut sink, quarantine: &mut quarantine, report: &mut report };
        match ingest_file(path, &mut o) {
            Ok(input) => report.add_input(input),
            Err(
                e @ (IngestError::Read { .. }
                | IngestError::NotCp932 { .. }
                | IngestError::Utf8NotCp932 { .. }
                | IngestError::Header { .. }),
            ) => {
                tracing::warn!(source, file = %path.display(), error = %e, "file skipped");
                report.add_input(InputReport {
                    file: path.display().to_string(),
                    error: Some(e.to_string()),
                    ..Default::default()
                });
            }
            Err(e) => return Err(e),
        }
    }
    quarantine.finish()?;
    report.rows_per_table = sink.finish()?;
    report.check_balanced()?;
    report.write_json(&out.join("_report.json"))?;
    Ok(report)
}

/// Read, decode and map one `.UKE` file. File-level failures (unreadable, not CP932) are
/// errors; bad records are quarantined and counted in the returned [`InputReport`].
#[tracing::instrument(skip_all, fields(file = %path.display()))]
pub fn ingest_file(
    path: &Path,
    key: &PseudonymKey,
    consent: Option<&ConsentGate>,
    out: &mut Outputs<'_>,
    stats: &mut ReceiptStats,
) -> Result<InputReport> {
    let bytes = std::fs::read(path).map_err(|source| IngestError::Read { path: path.to_owned(), source })?;
    let text = fields::decode_cp932(path, &bytes)?;
    drop(bytes);
    let record_file = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let mut r = Reader {
        key,
        consent,
        file: path.display().to_string(),
        record_file,
        input: InputReport { file: path.display().to_string(), ..Default::default() },
        facility: None,
        kind: None,
        current: None,
        receipts_in_file: 0,
        out,
        stats,
    };
    for (line, rec) in fields::records(&text) {
        r.input.records += 1;
        r.record(line, rec)?;
    }
    r.close_receipt()?;
    tracing::info!(
        records = r.input.records,
        loaded = r.input.loaded,
        quarantined = r.input.quarantined,
        "receipt file read"
    );
    Ok(r.input)
}

struct Facility {
    facility_id: Option<String>,
    prefecture: Option<String>,
    billing_month: Option<NaiveDate>,
}

struct Pending<'t> {
    re_line: u64,
    lines: Vec<(u64, &'t str)>,
}

struct Reader<'a, 'o> {
    key: &'a PseudonymKey,
    consent: Option<&'a ConsentGate>,
    file: String,
    record_file: String,
    input: InputReport,
    facility: Option<Facility>,
    /// Layout of the last header (IR/YK) seen; `None` before any.
    kind: Option<Kind>,
    current: Option<Pending<'a>>,
    receipts_in_file: u64,
    out: &'a mut Outputs<'o>,
    stats: &'a mut ReceiptStats,
}

fn record_type(rec: &str) -> &str {
    rec.split(',').next().unwrap_or("")
}

/// Field `i` of a split record, empty when missing (trailing empty fields may be absent).
fn at<'t>(f: &[&'t str], i: usize) -> &'t str {
    f.get(i).copied().unwrap_or("")
}

#[derive(Debug)]
struct Bad {
    field: &'static str,
    reason: &'static str,
    detail: &'static str,
}

fn bad(field: &'static str, e: FieldError) -> Bad {
    Bad { field, reason: e.code(), detail: e.detail() }
}

fn not_in_layout() -> Bad {
    Bad {
        field: "record_type",
        reason: "not_in_layout",
        detail: "this record type is not part of the receipt's layout (医科 IR vs 調剤 YK)",
    }
}

impl<'a, 'o> Reader<'a, 'o>
where
    'o: 'a,
{
    fn quarantine(&mut self, line: u64, rtype: &str, b: &Bad) -> Result<()> {
        let record_type = (rtype.len() == 2 && rtype.bytes().all(|c| c.is_ascii_uppercase())).then(|| rtype.to_owned());
        self.out.quarantine.push(&Quarantined {
            file: self.file.clone(),
            line: Some(line),
            entry: None,
            record_type,
            field: Some(b.field.to_owned()).filter(|f| !f.is_empty()),
            reason: b.reason.to_owned(),
            detail: b.detail.to_owned(),
        })?;
        self.out.report.count_reason(b.reason);
        self.input.quarantined += 1;
        Ok(())
    }

    fn loaded(&mut self, rtype: &str) {
        self.input.loaded += 1;
        *self.stats.loaded_by_type.entry(rtype.to_owned()).or_default() += 1;
    }

    fn record(&mut self, line: u64, rec: &'a str) -> Result<()> {
        let rtype = record_type(rec);
        match rtype {
            "IR" | "YK" => {
                self.close_receipt()?;
                let f: Vec<&str> = rec.split(',').collect();
                // The header's type picks the layout even when its fields are malformed.
                let kind = if rtype == "YK" { Kind::Pharmacy } else { Kind::Medical };
                self.kind = Some(kind);
                match self.header(&f, Layout::of(kind)) {
                    Ok(fac) => {
                        self.facility = Some(fac);
                        self.loaded(rtype);
                    }
                    Err(b) => {
                        self.facility = None;
                        self.quarantine(line, rtype, &b)?;
                    }
                }
            }
            "RE" => {
                self.close_receipt()?;
                self.current = Some(Pending { re_line: line, lines: vec![(line, rec)] });
            }
            "GO" => {
                self.close_receipt()?;
                let f: Vec<&str> = rec.split(',').collect();
                match fields::int(at(&f, 1)) {
                    Ok(n) => {
                        if n.is_some_and(|n| u64::try_from(n).ok() != Some(self.receipts_in_file)) {
                            self.out.report.warn("trailer_receipt_count_mismatch");
                        }
                        self.loaded(rtype);
                    }
                    Err(e) => self.quarantine(line, rtype, &bad("total_receipts", e))?,
                }
            }
            t if layout::ANY_IN_RECEIPT.contains(&t) => match self.current.as_mut() {
                Some(p) => p.lines.push((line, rec)),
                None => self.quarantine(
                    line,
                    rtype,
                    &Bad {
                        field: "",
                        reason: "out_of_order",
                        detail: "record outside a receipt: no RE record before it (or after the GO trailer)",
                    },
                )?,
            },
            _ => self.quarantine(
                line,
                rtype,
                &Bad { field: "record_type", reason: "unknown_record_type", detail: "not a known receipt record type" },
            )?,
        }
        Ok(())
    }

    fn header(&self, f: &[&str], layout: &Layout) -> std::result::Result<Facility, Bad> {
        let prefecture = fields::digits(at(f, 2), &[2]).map_err(|e| bad("prefecture", e))?.map(|s| s.into_owned());
        let table = fields::digits(at(f, 3), &[1]).map_err(|e| bad("fee_table", e))?.map(|s| s.into_owned());
        let code = fields::digits(at(f, 4), &[7]).map_err(|e| bad("facility_code", e))?;
        let billing_month = fields::month(at(f, layout.header_billing_month)).map_err(|e| bad("billing_month", e))?;
        let facility_id = code.map(|c| {
            self.key
                .pseudonym(Domain::Facility, &[prefecture.as_deref().unwrap_or(""), table.as_deref().unwrap_or(""), &c])
        });
        Ok(Facility { facility_id, prefecture, billing_month })
    }

    fn record_id(&self, line: u64, day: Option<u32>) -> String {
        match day {
            None => self.record_id_parts(line, &[]),
            Some(d) => self.record_id_parts(line, &[&d.to_string()]),
        }
    }

    /// Keyed pseudonym of (file name, line, `extra`…).
    fn record_id_parts(&self, line: u64, extra: &[&str]) -> String {
        let l = line.to_string();
        let mut parts: Vec<&str> = vec![self.record_file.as_str(), l.as_str()];
        parts.extend_from_slice(extra);
        self.key.pseudonym(Domain::Record, &parts)
    }

    /// Quarantine every line of a receipt, the RE line with the cause, the others as
    /// `receipt_quarantined`.
    fn quarantine_receipt(&mut self, p: &Pending<'_>, cause: &Bad) -> Result<()> {
        for &(line, rec) in &p.lines {
            if line == p.re_line {
                self.quarantine(line, "RE", cause)?;
            } else {
                let detail = "the receipt this record belongs to was quarantined (see its RE line)";
                self.quarantine(line, record_type(rec), &Bad { field: "", reason: "receipt_quarantined", detail })?;
            }
        }
        Ok(())
    }

    fn close_receipt(&mut self) -> Result<()> {
        let Some(p) = self.current.take() else { return Ok(()) };
        // The GO trailer counts every receipt in the file, whatever becomes of it here.
        self.receipts_in_file += 1;
        self.map_receipt(&p)
    }

    fn map_receipt(&mut self, p: &Pending<'a>) -> Result<()> {
        let re: Vec<&str> = p.lines[0].1.split(',').collect();
        let head = match parse_re(&re) {
            Ok(h) => h,
            Err(b) => return self.quarantine_receipt(p, &b),
        };
        // The header's layout; without a header, a receipt type starting with 4 (調剤) is
        // read as a pharmacy receipt.
        let kind = self.kind.unwrap_or(if head.receipt_type.as_deref().is_some_and(|t| t.starts_with('4')) {
            Kind::Pharmacy
        } else {
            Kind::Medical
        });
        let layout = Layout::of(kind);
        let pharmacy = kind == Kind::Pharmacy;
        // Insurance (HO, at most one), public expense (KO, at most four).
        let mut ho: Option<(u64, Vec<&str>)> = None;
        let mut kos: Vec<(u64, Vec<&str>)> = Vec::new();
        let mut extra: Vec<(u64, &str, Bad)> = Vec::new();
        for &(line, rec) in &p.lines[1..] {
            match record_type(rec) {
                "HO" if ho.is_none() => ho = Some((line, rec.split(',').collect())),
                "HO" => extra.push((
                    line,
                    "HO",
                    Bad { field: "", reason: "duplicate_record", detail: "a receipt has at most one HO record" },
                )),
                "KO" if kos.len() < 4 => kos.push((line, rec.split(',').collect())),
                "KO" => extra.push((
                    line,
                    "KO",
                    Bad {
                        field: "",
                        reason: "too_many_public_expense",
                        detail: "a receipt has at most four KO records",
                    },
                )),
                _ => {}
            }
        }
        let ins = match &ho {
            Some((_, f)) => match parse_ho(f) {
                Ok(h) => Some(h),
                Err(b) => return self.quarantine_receipt(p, &b),
            },
            None => None,
        };
        let mut programmes: Vec<String> = Vec::new();
        let mut ko_ok: Vec<bool> = Vec::new();
        let mut ko_bad: Vec<(u64, Bad)> = Vec::new();
        for (line, f) in &kos {
            match fields::digits(at(f, 1), &[8]) {
                Ok(Some(n)) => {
                    programmes.push(n[..2].to_owned());
                    ko_ok.push(true);
                }
                Ok(None) => {
                    ko_ok.push(false);
                    ko_bad.push((*line, bad("payer_number", FieldError::Missing)));
                }
                Err(e) => {
                    ko_ok.push(false);
                    ko_bad.push((*line, bad("payer_number", e)));
                }
            }
        }
        // Linkage: insurance card (ID1), kana name (ID2), else the first public-expense recipient.
        let kana = Some(at(&re, layout.re_kana_name).trim()).filter(|s| !s.is_empty());
        let first_ko = kos.iter().zip(&ko_ok).find(|(_, ok)| **ok).map(|((_, f), _)| f);
        let ko_system = first_ko.map(|f| format!("receipt-ko:{}", fields::fold(at(f, 1))));
        let ids = Identifiers {
            insurer_number: ho.as_ref().map(|(_, f)| at(f, 1)).filter(|s| !s.trim().is_empty()),
            kigo: ho.as_ref().map(|(_, f)| at(f, 2)).filter(|s| !fields::fold(s).is_empty()),
            bango: ho.as_ref().map(|(_, f)| at(f, 3)).filter(|s| !fields::fold(s).is_empty()),
            branch: None,
            kana_name: kana,
            birth_date: Some(head.birth),
            sex: Some(head.sex),
            source_id: match (&ko_system, first_ko) {
                (Some(sys), Some(f)) => Some((sys.as_str(), at(f, 2))),
                _ => None,
            },
        };
        let linked = match link(self.key, &ids) {
            Ok(l) => l,
            Err(PseudoError::MalformedIdentifier { field, reason: _ }) => {
                let b = Bad {
                    field,
                    reason: "malformed_identifier",
                    detail: "an identifier field is malformed; no person can be formed",
                };
                return self.quarantine_receipt(p, &b);
            }
            Err(_) => {
                let b = Bad {
                    field: "",
                    reason: "no_linkage_key",
                    detail: "the receipt has neither insurance identifiers, kana name nor public-expense recipient",
                };
                return self.quarantine_receipt(p, &b);
            }
        };
        if let Some(gate) = self.consent
            && let ConsentDecision::Exclude(reason) = gate.decide(&linked)
        {
            self.input.consent_excluded += p.lines.len() as u64;
            self.out.report.warn(&format!("consent_excluded_receipts_{}", reason.code()));
            return Ok(());
        }
        // From here the receipt maps; lines fail one by one.
        self.stats.receipts += 1;
        let claim_id = self.record_id(p.re_line, None);
        let mut span: Option<(NaiveDate, NaiveDate)> = None;
        let mut last_category: Option<String> = None;
        let extra_lines: Vec<u64> = extra.iter().map(|(l, _, _)| *l).collect();
        for (line, rtype, b) in &extra {
            self.quarantine(*line, rtype, b)?;
        }
        for (line, b) in &ko_bad {
            self.quarantine(*line, "KO", b)?;
        }
        let mut skip: Vec<u64> = ko_bad.iter().map(|(l, _)| *l).collect();
        skip.extend(extra_lines);
        let medical_lines: &[(u64, &str)] = if pharmacy {
            let t = pharmacy::Target { month: head.month, linked: &linked, claim_id: &claim_id };
            self.map_pharmacy_lines(&p.lines[1..], &skip, &t, &mut span)?;
            &[]
        } else {
            &p.lines[1..]
        };
        for &(line, rec) in medical_lines {
            if skip.contains(&line) {
                continue;
            }
            let rtype = record_type(rec);
            let outcome = match rtype {
                t if !layout.allows(t) => Err(not_in_layout()),
                "SY" => self.condition(line, rec, &linked, &claim_id),
                "SI" | "IY" | "TO" | "CO" => {
                    let f: Vec<&str> = rec.split(',').collect();
                    let cat = match fields::digits(at(&f, 1), &[2]) {
                        Ok(Some(c)) => {
                            last_category = Some(c.into_owned());
                            Ok(())
                        }
                        Ok(None) => Ok(()),
                        Err(e) => Err(bad("care_category", e)),
                    };
                    match (cat, rtype) {
                        (Err(b), _) => Err(b),
                        (Ok(()), "CO") => Ok(()),
                        (Ok(()), "IY") => {
                            self.drug(line, &f, head.month, last_category.as_deref(), &linked, &claim_id, &mut span)
                        }
                        (Ok(()), _) => self.procedure(
                            line,
                            rtype,
                            &f,
                            head.month,
                            last_category.as_deref(),
                            &linked,
                            &claim_id,
                            &mut span,
                        ),
                    }
                }
                _ => Ok(()),
            };
            match outcome {
                Ok(()) => self.loaded(rtype),
                Err(b) => self.quarantine(line, rtype, &b)?,
            }
        }
        // RE itself: person, claim, visit.
        self.loaded("RE");
        let sink = &mut *self.out.sink;
        sink.push(
            &PERSON_TABLE,
            &[
                linked.person_id.as_str().into(),
                head.sex.code().into(),
                Value::I32(head.birth.year()),
                Value::I32(head.birth.month() as i32),
                Value::Null,
                Value::Null,
                linked.basis.as_str().into(),
                SOURCE.into(),
            ],
        )?;
        let fac = self.facility.as_ref();
        let insurer_kind = match &ins {
            Some(h) => {
                let k = insurer_kind(&h.insurer_number);
                if k.is_none() {
                    self.out.report.warn("unknown_insurer_kind");
                }
                k
            }
            None if !kos.is_empty() => Some("public_only"),
            None => None,
        };
        if fac.is_none() {
            self.out.report.warn("receipt_without_facility_header");
        }
        let first_ko_days_points =
            kos.first().map(|(_, f)| (fields::int(at(f, 4)).ok().flatten(), fields::int(at(f, 5)).ok().flatten()));
        let (days, points) = match &ins {
            Some(h) => (h.days, h.points),
            None => first_ko_days_points.unwrap_or((None, None)),
        };
        let sink = &mut *self.out.sink;
        sink.push(
            &CLAIM,
            &[
                claim_id.as_str().into(),
                linked.person_id.as_str().into(),
                fac.and_then(|f| f.facility_id.clone()).into(),
                (if pharmacy { "pharmacy" } else { "medical" }).into(),
                Value::Date(head.month),
                fac.and_then(|f| f.billing_month).into(),
                head.receipt_type.clone().into(),
                head.benefit_rate.map(|v| Value::I32(v as i32)).unwrap_or(Value::Null),
                days.map(|v| Value::I32(v as i32)).unwrap_or(Value::Null),
                points.map(Value::I64).unwrap_or(Value::Null),
                insurer_kind.into(),
                Some(programmes.join(" ")).filter(|s| !s.is_empty()).into(),
                fac.and_then(|f| f.prefecture.clone()).into(),
                SOURCE.into(),
            ],
        )?;
        let visit_kind = head.receipt_type.as_deref().and_then(|t| t.as_bytes().get(3)).map(|d| {
            if pharmacy {
                "pharmacy"
            } else if (d - b'0') % 2 == 1 {
                "inpatient"
            } else {
                "outpatient"
            }
        });
        sink.push(
            &VISIT_OCCURRENCE,
            &[
                claim_id.into(),
                linked.person_id.as_str().into(),
                Value::I32(0),
                visit_kind.into(),
                span.map(|s| s.0).into(),
                span.map(|s| s.1).into(),
                fac.and_then(|f| f.facility_id.clone()).into(),
                SOURCE.into(),
            ],
        )?;
        Ok(())
    }

    fn condition(&mut self, line: u64, rec: &str, linked: &PersonLink, claim_id: &str) -> std::result::Result<(), Bad> {
        let f: Vec<&str> = rec.split(',').collect();
        let code = fields::digits(at(&f, 1), &[7])
            .map_err(|e| bad("disease_code", e))?
            .ok_or_else(|| bad("disease_code", FieldError::Missing))?;
        let start = fields::date(at(&f, 2)).map_err(|e| bad("start_date", e))?;
        let status = match fields::fold(at(&f, 3)).as_ref() {
            "" => None,
            "1" => Some("active"),
            "2" => Some("cured"),
            "3" => Some("died"),
            "4" => Some("stopped"),
            _ => {
                return Err(Bad {
                    field: "outcome",
                    reason: "bad_code",
                    detail: "outcome (転帰) must be 1, 2, 3 or 4",
                });
            }
        };
        let modifiers = fields::digits(at(&f, 4), &[]).map_err(|e| bad("modifier_codes", e))?;
        let modifiers = match modifiers {
            Some(m) if m.len() % 4 != 0 => return Err(bad("modifier_codes", FieldError::BadLength)),
            Some(m) => Some(
                m.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" "),
            ),
            None => None,
        };
        let primary = fields::fold(at(&f, 6)) == "01";
        let id = self.record_id(line, None);
        self.out
            .sink
            .push(
                &CONDITION_OCCURRENCE,
                &[
                    id.into(),
                    linked.person_id.as_str().into(),
                    Value::I32(0),
                    code.into_owned().into(),
                    Vocabulary::ReceiptDisease.short().into(),
                    Value::Null,
                    start.into(),
                    Value::Null,
                    status.into(),
                    Value::Bool(primary),
                    modifiers.into(),
                    claim_id.into(),
                    SOURCE.into(),
                ],
            )
            .map_err(sink_bad)
    }

    /// Days of month marked in `f[first..first + 31]`: `(day, count)`.
    fn days(f: &[&str], first: usize, month: NaiveDate) -> std::result::Result<Vec<(NaiveDate, i64)>, Bad> {
        let last_day = fields::days_in_month(month);
        let mut out = Vec::new();
        for d in 0..31u32 {
            let n = fields::int(at(f, first + d as usize)).map_err(|e| bad("day_of_month", e))?;
            if let Some(n) = n {
                if n < 0 {
                    return Err(bad("day_of_month", FieldError::BadNumber));
                }
                if n == 0 {
                    continue;
                }
                if d + 1 > last_day {
                    return Err(Bad {
                        field: "day_of_month",
                        reason: "bad_day",
                        detail: "a day is marked that the service month does not have",
                    });
                }
                out.push((month.with_day(d + 1).unwrap_or(month), n));
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename these
    fn procedure(
        &mut self,
        line: u64,
        rtype: &str,
        f: &[&str],
        month: NaiveDate,
        category: Option<&str>,
        linked: &PersonLink,
        claim_id: &str,
        span: &mut Option<(NaiveDate, NaiveDate)>,
    ) -> std::result::Result<(), Bad> {
        let device = rtype == "TO";
        let code = fields::digits(at(f, 3), &[9])
            .map_err(|e| bad("code", e))?
            .ok_or_else(|| bad("code", FieldError::Missing))?;
        let quantity = fields::float(at(f, 4)).map_err(|e| bad("quantity", e))?;
        let points = fields::int(at(f, 5)).map_err(|e| bad("points", e))?;
        let count = fields::int(at(f, 6)).map_err(|e| bad("count", e))?;
        let days = Self::days(f, if device { 17 } else { 13 }, month)?;
        let vocab = if device { Vocabulary::ReceiptDevice } else { Vocabulary::ReceiptProcedure };
        let rows: Vec<(Option<NaiveDate>, Option<i64>)> = if days.is_empty() {
            vec![(None, count)]
        } else {
            days.iter().map(|(d, n)| (Some(*d), Some(*n))).collect()
        };
        for (date, n) in rows {
            if let Some(d) = date {
                widen(span, d);
            }
            let id = self.record_id(line, date.map(|d| d.day()));
            self.out
                .sink
                .push(
                    &PROCEDURE_OCCURRENCE,
                    &[
                        id.into(),
                        linked.person_id.as_str().into(),
                        Value::I32(0),
                        Value::Str(code.clone()),
                        vocab.short().into(),
                        date.into(),
                        category.into(),
                        quantity.into(),
                        points.into(),
                        n.and_then(|n| i32::try_from(n).ok()).into(),
                        claim_id.into(),
                        SOURCE.into(),
                    ],
                )
                .map_err(sink_bad)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // one call site; a struct would only rename these
    fn drug(
        &mut self,
        line: u64,
        f: &[&str],
        month: NaiveDate,
        category: Option<&str>,
        linked: &PersonLink,
        claim_id: &str,
        span: &mut Option<(NaiveDate, NaiveDate)>,
    ) -> std::result::Result<(), Bad> {
        let code = fields::digits(at(f, 3), &[9])
            .map_err(|e| bad("code", e))?
            .ok_or_else(|| bad("code", FieldError::Missing))?;
        let quantity = fields::float(at(f, 4)).map_err(|e| bad("quantity", e))?;
        fields::int(at(f, 5)).map_err(|e| bad("points", e))?;
        let count = fields::int(at(f, 6)).map_err(|e| bad("count", e))?;
        let days = Self::days(f, 13, month)?;
        let start = days.first().map(|d| d.0);
        let end = days.last().map(|d| d.0);
        if let (Some(s), Some(e)) = (start, end) {
            widen(span, s);
            widen(span, e);
        }
        // 内服 (care category 21): 回数 is the number of days supplied.
        let days_supply = if category == Some("21") { count.and_then(|c| i32::try_from(c).ok()) } else { None };
        self.push_drug(line, code.as_ref(), start, end, quantity, days_supply, linked, claim_id)
    }

    #[allow(clippy::too_many_arguments)] // mirrors the drug_exposure columns
    fn push_drug(
        &mut self,
        line: u64,
        code: &str,
        start: Option<NaiveDate>,
        end: Option<NaiveDate>,
        quantity: Option<f64>,
        days_supply: Option<i32>,
        linked: &PersonLink,
        claim_id: &str,
    ) -> std::result::Result<(), Bad> {
        let id = self.record_id(line, None);
        self.out
            .sink
            .push(
                &DRUG_EXPOSURE,
                &[
                    id.into(),
                    linked.person_id.as_str().into(),
                    Value::I32(0),
                    code.into(),
                    Vocabulary::ReceiptDrug.short().into(),
                    start.into(),
                    end.into(),
                    quantity.into(),
                    days_supply.into(),
                    claim_id.into(),
                    SOURCE.into(),
                ],
            )
            .map_err(sink_bad)
    }
}

fn widen(span: &mut Option<(NaiveDate, NaiveDate)>, d: NaiveDate) {
    *span = Some(match *span {
        None => (d, d),
        Some((a, b)) => (a.min(d), b.max(d)),
    });
}

/// A sink failure inside a line is a bug, not bad input; it is reported as such.
fn sink_bad(e: IngestError) -> Bad {
    tracing::error!(error = %e, "CDM row rejected by the sink");
    Bad { field: "", reason: "mapping_error", detail: "the mapped row did not fit the CDM table (a reader bug)" }
}

struct ReHead {
    month: NaiveDate,
    receipt_type: Option<String>,
    sex: Sex,
    birth: NaiveDate,
    benefit_rate: Option<i64>,
}

fn parse_re(f: &[&str]) -> std::result::Result<ReHead, Bad> {
    let receipt_type = fields::digits(at(f, 2), &[4]).map_err(|e| bad("receipt_type", e))?.map(|s| s.into_owned());
    let month = fields::month(at(f, 3))
        .map_err(|e| bad("service_month", e))?
        .ok_or_else(|| bad("service_month", FieldError::Missing))?;
    let sex = Sex::parse(&fields::fold(at(f, 5))).map_err(|_| Bad {
        field: "sex",
        reason: "bad_code",
        detail: "sex (男女区分) must be 1 or 2",
    })?;
    let birth = fields::date(at(f, 6))
        .map_err(|e| bad("birth_date", e))?
        .ok_or_else(|| bad("birth_date", FieldError::Missing))?;
    let benefit_rate = fields::int(at(f, 7)).map_err(|e| bad("benefit_rate", e))?;
    Ok(ReHead { month, receipt_type, sex, birth, benefit_rate })
}

struct HoHead {
    insurer_number: String,
    days: Option<i64>,
    points: Option<i64>,
}

fn parse_ho(f: &[&str]) -> std::result::Result<HoHead, Bad> {
    let insurer_number = fields::digits(at(f, 1), &[6, 8])
        .map_err(|e| bad("insurer_number", e))?
        .ok_or_else(|| bad("insurer_number", FieldError::Missing))?
        .into_owned();
    let days = fields::int(at(f, 4)).map_err(|e| bad("service_days", e))?;
    let points = fields::int(at(f, 5)).map_err(|e| bad("total_points", e))?;
    Ok(HoHead { insurer_number, days, points })
}

/// Insurer kind from the insurer number (保険者番号): 6 digits = 国民健康保険; 8 digits by the
/// 法別番号 (first two digits). Returns `None` for a prefix not in the table.
pub fn insurer_kind(insurer_number: &str) -> Option<&'static str> {
    let d = fields::fold(insurer_number);
    match d.len() {
        6 => Some("nhi"),
        8 => match &d[..2] {
            // 協会けんぽ, 船員, 日雇 (03/04), 組合健保, 防衛省, 共済組合 (31-34), 特定健保 (63), 共済 (72-75)
            "01" | "02" | "03" | "04" | "06" | "07" | "31" | "32" | "33" | "34" | "63" | "72" | "73" | "74" | "75" => {
                Some("employee")
            }
            "39" => Some("late_elderly"),
            "67" => Some("nhi"), // 国保 退職者医療
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insurer_kinds() {
        assert_eq!(insurer_kind("138014"), Some("nhi"));
        assert_eq!(insurer_kind("01010016"), Some("employee"));
        assert_eq!(insurer_kind("３４１３００２１"), Some("employee"));
        assert_eq!(insurer_kind("39131015"), Some("late_elderly"));
        assert_eq!(insurer_kind("12345678"), None);
        assert_eq!(insurer_kind("1234567"), None);
    }
}
