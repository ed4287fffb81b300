//! 調剤 (pharmacy) receipt bodies → CDM rows.
//!
//! A 調剤 receipt lists its prescriptions one after the other: an SH (処方基本) record opens a
//! prescription and gives its 剤形 (dosage form); its CZ (調剤情報) records give each
//! dispensing (調剤月日, 調剤数量); its IY (医薬品) and TO (特定器材) records give the drugs and
//! materials dispensed. A prescription is mapped when the next SH or the end of the receipt
//! closes it, so IY/TO lines meet every CZ of their prescription whatever their order:
//!
//! - each IY line × each CZ of its prescription → one `drug_exposure` row: start = 調剤月日,
//!   quantity = 使用量, and for 内服 (剤形 1) days_supply = 調剤数量 and end = start +
//!   days_supply − 1 (otherwise end and days_supply are NULL: not known from the receipt);
//! - each TO line × each CZ → one `procedure_occurrence` row (vocabulary `RECEIPT_DEVICE`)
//!   dated 調剤月日 with quantity = 使用量;
//! - the visit span is the first to last 調剤月日.
//!
//! Quarantined: CZ, IY or TO before any SH of the receipt (`out_of_order`); IY/TO whose
//! prescription has no valid CZ (`no_dispensing_record`); 医科-only records SY, SI, SJ
//! (`not_in_layout`); malformed fields. Counted, not stored: SH itself, CO and TK (comment
//! code and free text), KI (調剤基本料・薬学管理料), ST (分割技術料), SN, JD, MF; the CZ fee
//! codes (調剤料, 加算料) are not read because the CDM has no vocabulary for the 調剤行為
//! master (see docs/CLAIMS.md).

use chrono::{Datelike, NaiveDate};
use niji_cdm::Vocabulary;
use niji_cdm::tables::{DRUG_EXPOSURE, PROCEDURE_OCCURRENCE};
use niji_pseudo::linkage::PersonLink;

use super::fields::{self, FieldError};
use super::layout::{Layout, cz, iy, sh, to};
use super::{Bad, Reader, at, bad, not_in_layout, record_type, sink_bad, widen};
use crate::Result;
use crate::sink::Value;

/// One dispensing (CZ) of a prescription.
#[derive(Debug, Clone, Copy)]
struct Dispensing {
    line: u64,
    date: NaiveDate,
    quantity: Option<i64>,
}

/// An open prescription (SH) and what belongs to it so far.
#[derive(Debug, Default)]
struct Prescription<'t> {
    /// 剤形コード; `None` when the SH was malformed (its lines still map, without days supply).
    dosage_form: Option<String>,
    dispensings: Vec<Dispensing>,
    /// IY/TO lines waiting for the prescription to close.
    items: Vec<(u64, &'t str)>,
}

/// What a pharmacy receipt body is mapped with.
pub(super) struct Target<'c> {
    pub month: NaiveDate,
    pub linked: &'c PersonLink,
    pub claim_id: &'c str,
}

fn parse_sh(f: &[&str]) -> std::result::Result<String, Bad> {
    fields::digits(at(f, sh::NUMBER), &[1, 2])
        .map_err(|e| bad("prescription_number", e))?
        .ok_or_else(|| bad("prescription_number", FieldError::Missing))?;
    let form = fields::fold(at(f, sh::DOSAGE_FORM));
    if form.is_empty() {
        return Err(bad("dosage_form", FieldError::Missing));
    }
    if !sh::DOSAGE_FORMS.contains(&form.as_ref()) {
        return Err(Bad {
            field: "dosage_form",
            reason: "bad_code",
            detail: "剤形コード must be 1-7 or 9 (別表 剤形コード)",
        });
    }
    Ok(form.into_owned())
}

fn parse_cz(f: &[&str], line: u64, month: NaiveDate) -> std::result::Result<Dispensing, Bad> {
    fields::date(at(f, cz::PRESCRIBED)).map_err(|e| bad("prescription_date", e))?;
    let date = fields::date(at(f, cz::DISPENSED))
        .map_err(|e| bad("dispensing_date", e))?
        .ok_or_else(|| bad("dispensing_date", FieldError::Missing))?;
    if (date.year(), date.month()) != (month.year(), month.month()) {
        return Err(Bad {
            field: "dispensing_date",
            reason: "date_outside_month",
            detail: "the 調剤月日 is not in the receipt's 調剤年月 (RE field 3)",
        });
    }
    let quantity = fields::int(at(f, cz::QUANTITY)).map_err(|e| bad("dispensing_quantity", e))?;
    if quantity.is_some_and(|q| q < 0) {
        return Err(bad("dispensing_quantity", FieldError::BadNumber));
    }
    Ok(Dispensing { line, date, quantity })
}

impl<'a, 'o> Reader<'a, 'o>
where
    'o: 'a,
{
    /// Map the lines of a pharmacy receipt after its RE (HO/KO already parsed; `skip` are
    /// lines already quarantined). Each line ends loaded or quarantined.
    pub(super) fn map_pharmacy_lines(
        &mut self,
        lines: &[(u64, &'a str)],
        skip: &[u64],
        t: &Target<'_>,
        span: &mut Option<(NaiveDate, NaiveDate)>,
    ) -> Result<()> {
        let layout = Layout::of(super::layout::Kind::Pharmacy);
        let mut open: Option<Prescription<'a>> = None;
        for &(line, rec) in lines {
            if skip.contains(&line) {
                continue;
            }
            let rtype = record_type(rec);
            if !layout.allows(rtype) {
                self.quarantine(line, rtype, &not_in_layout())?;
                continue;
            }
            match rtype {
                "SH" => {
                    if let Some(p) = open.take() {
                        self.close_prescription(p, t)?;
                    }
                    let f: Vec<&str> = rec.split(',').collect();
                    match parse_sh(&f) {
                        Ok(form) => {
                            open = Some(Prescription { dosage_form: Some(form), ..Default::default() });
                            self.loaded(rtype);
                        }
                        Err(b) => {
                            open = Some(Prescription::default());
                            self.quarantine(line, rtype, &b)?;
                        }
                    }
                }
                "CZ" | "IY" | "TO" => {
                    let Some(p) = open.as_mut() else {
                        self.quarantine(line, rtype, &before_sh())?;
                        continue;
                    };
                    if rtype != "CZ" {
                        p.items.push((line, rec));
                        continue;
                    }
                    let f: Vec<&str> = rec.split(',').collect();
                    match parse_cz(&f, line, t.month) {
                        Ok(d) => {
                            widen(span, d.date);
                            p.dispensings.push(d);
                            self.loaded(rtype);
                        }
                        Err(b) => self.quarantine(line, rtype, &b)?,
                    }
                }
                // HO, KO, SN, JD, MF, CO, TK, KI, ST: read elsewhere or counted only.
                _ => self.loaded(rtype),
            }
        }
        if let Some(p) = open.take() {
            self.close_prescription(p, t)?;
        }
        Ok(())
    }

    fn close_prescription(&mut self, p: Prescription<'a>, t: &Target<'_>) -> Result<()> {
        for &(line, rec) in &p.items {
            let rtype = record_type(rec);
            let outcome = if p.dispensings.is_empty() {
                Err(Bad {
                    field: "",
                    reason: "no_dispensing_record",
                    detail: "an IY/TO line whose prescription (SH) has no valid CZ dispensing record",
                })
            } else {
                self.pharmacy_item(line, rtype, rec, &p, t)
            };
            match outcome {
                Ok(()) => self.loaded(rtype),
                Err(b) => self.quarantine(line, rtype, &b)?,
            }
        }
        Ok(())
    }

    fn pharmacy_item(
        &mut self,
        line: u64,
        rtype: &str,
        rec: &str,
        p: &Prescription<'_>,
        t: &Target<'_>,
    ) -> std::result::Result<(), Bad> {
        let f: Vec<&str> = rec.split(',').collect();
        let device = rtype == "TO";
        let (code_at, quantity_at) = if device { (to::CODE, to::QUANTITY) } else { (iy::CODE, iy::QUANTITY) };
        let code = fields::digits(at(&f, code_at), &[9])
            .map_err(|e| bad("code", e))?
            .ok_or_else(|| bad("code", FieldError::Missing))?;
        let quantity = fields::float(at(&f, quantity_at)).map_err(|e| bad("quantity", e))?;
        let oral = p.dosage_form.as_deref() == Some(sh::ORAL);
        for d in &p.dispensings {
            let id = self.record_id_parts(line, &["cz", &d.line.to_string()]);
            let row = if device {
                (
                    &PROCEDURE_OCCURRENCE,
                    vec![
                        id.into(),
                        t.linked.person_id.as_str().into(),
                        Value::I32(0),
                        Value::Str(code.clone()),
                        Vocabulary::ReceiptDevice.short().into(),
                        Value::Date(d.date),
                        Value::Null,
                        quantity.into(),
                        Value::Null,
                        Value::Null,
                        t.claim_id.into(),
                        super::SOURCE.into(),
                    ],
                )
            } else {
                let days_supply = if oral { d.quantity.filter(|q| *q > 0) } else { None };
                let end = days_supply
                    .and_then(|n| u64::try_from(n - 1).ok())
                    .and_then(|n| d.date.checked_add_days(chrono::Days::new(n)));
                (
                    &DRUG_EXPOSURE,
                    vec![
                        id.into(),
                        t.linked.person_id.as_str().into(),
                        Value::I32(0),
                        Value::Str(code.clone()),
                        Vocabulary::ReceiptDrug.short().into(),
                        Value::Date(d.date),
                        end.into(),
                        quantity.into(),
                        days_supply.and_then(|n| i32::try_from(n).ok()).into(),
                        t.claim_id.into(),
                        super::SOURCE.into(),
                    ],
                )
            };
            self.out.sink.push(row.0, &row.1).map_err(sink_bad)?;
        }
        Ok(())
    }
}

fn before_sh() -> Bad {
    Bad { field: "", reason: "out_of_order", detail: "CZ/IY/TO before any SH (処方基本) record of its receipt" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_and_cz_fields() {
        let sh: Vec<&str> = "SH,01,1,001,,3".split(',').collect();
        assert_eq!(parse_sh(&sh).ok().as_deref(), Some("1"));
        let sh: Vec<&str> = "SH,01,8,001,,3".split(',').collect();
        assert_eq!(parse_sh(&sh).err().map(|b| b.reason), Some("bad_code"));
        let month = NaiveDate::from_ymd_opt(2024, 6, 1).expect("d");
        let cz: Vec<&str> = "CZ,1,20240614,20240616,1,14,1,1,01,420001810,24".split(',').collect();
        let d = parse_cz(&cz, 7, month).expect("cz");
        assert_eq!((d.line, d.date, d.quantity), (7, NaiveDate::from_ymd_opt(2024, 6, 16).expect("d"), Some(14)));
        let cz: Vec<&str> = "CZ,1,20240530,20240701,1,14".split(',').collect();
        assert_eq!(parse_cz(&cz, 7, month).err().map(|b| b.reason), Some("date_outside_month"));
        let cz: Vec<&str> = "CZ,1,20240530,,1,14".split(',').collect();
        assert_eq!(
            parse_cz(&cz, 7, month).err().map(|b| (b.field, b.reason)),
            Some(("dispensing_date", "missing_field"))
        );
    }
}
