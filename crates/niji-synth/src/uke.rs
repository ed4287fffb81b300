//! レセプト電算 (.UKE) writer: one file per facility and billing month, laid out like the real
//! sample (record types, field counts and positions), CRLF, encoded to CP932 by the output.

use chrono::{Datelike, NaiveDate};

use crate::noise::Rendered;
use crate::person::{Facility, InsuranceKind, Person};
use crate::tables::{self, DRUGS, LABS};
use crate::visits::{Visit, VisitKind};

/// Field counts per record type, as in the sample file.
pub const FIELD_COUNTS: &[(&str, usize)] = &[
    ("IR", 10),
    ("RE", 38),
    ("HO", 15),
    ("KO", 12),
    ("SN", 9),
    ("SY", 8),
    ("SI", 44),
    ("IY", 44),
    ("CO", 5),
    ("GO", 4),
];

/// One receipt file being built.
#[derive(Debug)]
pub struct UkeFile {
    pub name: String,
    pub text: String,
    pub lines: u64,
    pub receipts: u64,
    pub points: u64,
}

impl UkeFile {
    /// A file for `facility` and billing month `billing` (YYYYMM), with its IR line.
    pub fn new(facility: &Facility, pref: u32, billing: &str) -> UkeFile {
        let mut f = UkeFile {
            name: format!("{}_{billing}.UKE", facility.code),
            text: String::new(),
            lines: 0,
            receipts: 0,
            points: 0,
        };
        let pref = format!("{pref:02}");
        f.push(&["IR", "1", &pref, "1", &facility.code, "", &facility.name, billing, "00", &facility.phone]);
        f
    }

    fn push(&mut self, fields: &[&str]) {
        self.text.push_str(&fields.join(","));
        self.text.push_str("\r\n");
        self.lines += 1;
    }

    /// Close the file with its GO line.
    pub fn finish(mut self) -> UkeFile {
        let n = self.receipts.to_string();
        let p = self.points.to_string();
        self.push(&["GO", &n, &p, "99"]);
        self
    }
}

/// A diagnosis line.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub code: &'static str,
    pub start: NaiveDate,
    /// 転帰: 1 continuing, 2 cured.
    pub outcome: &'static str,
    pub primary: bool,
    /// Written as uncoded (0000999) with this name.
    pub uncoded_name: Option<String>,
}

/// Everything one receipt needs.
#[derive(Debug)]
pub struct ReceiptInput<'a> {
    pub person: &'a Person,
    pub ids: &'a Rendered,
    pub with_sn: bool,
    pub service_month: NaiveDate,
    pub chart: String,
    pub visits: Vec<&'a Visit>,
    pub first_visit: Option<NaiveDate>,
    pub diagnoses: Vec<Diagnosis>,
    pub in_house: bool,
}

struct Line {
    record: &'static str,
    category: &'static str,
    code: &'static str,
    qty: String,
    points: u64,
    days: [u32; 31],
    comment: Option<&'static str>,
}

fn ymd(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

fn add(lines: &mut Vec<Line>, record: &'static str, category: &'static str, code: &'static str, points: u64, day: u32) {
    add_n(lines, record, category, code, String::new(), points, day, 1, None);
}

#[allow(clippy::too_many_arguments)] // A line is positional by nature; a struct would only rename the fields.
fn add_n(
    lines: &mut Vec<Line>,
    record: &'static str,
    category: &'static str,
    code: &'static str,
    qty: String,
    points: u64,
    day: u32,
    n: u32,
    comment: Option<&'static str>,
) {
    let i = day.clamp(1, 31) as usize - 1;
    if let Some(l) = lines.iter_mut().find(|l| l.code == code && l.category == category && l.qty == qty) {
        l.days[i] += n;
        return;
    }
    let mut days = [0; 31];
    days[i] = n;
    lines.push(Line { record, category, code, qty, points, days, comment });
}

/// Append one receipt; returns the 1-based line number of its RE line.
pub fn write_receipt(file: &mut UkeFile, input: &ReceiptInput<'_>) -> u64 {
    let p = input.person;
    let ids = input.ids;
    let card = p.card.as_ref();
    let publics = &p.public;
    // Burden class: 1 insurance only, 2 insurance + first 公費, 5 公費 only.
    let burden = match (card.is_some(), publics.is_empty()) {
        (true, true) => "1",
        (true, false) => "2",
        (false, _) => "5",
    };

    let mut lines: Vec<Line> = Vec::new();
    for v in &input.visits {
        let day = v.date.day();
        if input.first_visit == Some(v.date) && v.kind == VisitKind::Acute {
            add(&mut lines, "SI", "11", tables::PROC_FIRST_VISIT.0, tables::PROC_FIRST_VISIT.1, day);
        } else if v.kind != VisitKind::Dialysis {
            add(&mut lines, "SI", "12", tables::PROC_REVISIT.0, tables::PROC_REVISIT.1, day);
            if v.kind == VisitKind::Chronic {
                add(&mut lines, "SI", "12", tables::PROC_OUTPATIENT_MGMT.0, tables::PROC_OUTPATIENT_MGMT.1, day);
            }
        }
        if v.kind == VisitKind::Dialysis {
            add(&mut lines, "SI", "40", tables::PROC_DIALYSIS.0, tables::PROC_DIALYSIS.1, day);
        }
        if !v.labs.is_empty() {
            if v.labs.iter().any(|l| !matches!(LABS[*l].abbrev, "FluAg" | "CoV2Ag")) {
                add(&mut lines, "SI", "60", tables::PROC_BLOOD_DRAW.0, tables::PROC_BLOOD_DRAW.1, day);
            }
            for l in &v.labs {
                let lab = &LABS[*l];
                if lab.points > 0 {
                    add(&mut lines, "SI", "60", lab.receipt, lab.points, day);
                }
            }
        }
        if !v.drugs.is_empty() {
            if input.in_house {
                add(&mut lines, "SI", "25", tables::PROC_PRESCRIPTION_FEE.0, tables::PROC_PRESCRIPTION_FEE.1, day);
                for d in &v.drugs {
                    let drug = &DRUGS[*d];
                    let pts = (drug.points_x10 * u64::from(drug.per_day)).div_ceil(10).max(1);
                    add_n(
                        &mut lines,
                        "IY",
                        "21",
                        drug.receipt,
                        drug.per_day.to_string(),
                        pts,
                        day,
                        v.supply_days,
                        Some(drug.usage),
                    );
                }
            } else {
                add(&mut lines, "SI", "80", tables::PROC_PRESCRIPTION_SLIP.0, tables::PROC_PRESCRIPTION_SLIP.1, day);
            }
        }
    }
    // Monthly management fee for managed chronic conditions at a clinic.
    if let Some(v) = input.visits.iter().find(|v| v.kind == VisitKind::Chronic)
        && p.chronic.iter().any(|c| tables::CHRONIC[*c].managed)
        && input.in_house_or_clinic()
    {
        add(&mut lines, "SI", "13", tables::PROC_DISEASE_MGMT.0, tables::PROC_DISEASE_MGMT.1, v.date.day());
    }
    let mut days: Vec<u32> = input.visits.iter().map(|v| v.date.day()).collect();
    days.sort_unstable();
    days.dedup();
    let service_days = days.len().max(1).to_string();
    let total: u64 = lines.iter().map(|l| l.points * u64::from(l.days.iter().sum::<u32>())).sum();

    // RE.
    file.receipts += 1;
    file.points += total;
    let re_line = file.lines + 1;
    let kind_digit = match card.map(|c| c.kind) {
        None | Some(InsuranceKind::Welfare) => "2",
        Some(InsuranceKind::Kouki) => "3",
        Some(_) => "1",
    };
    let payers = if card.is_some() { 1 + publics.len() } else { publics.len().max(1) };
    let category = if card.is_none() {
        "2"
    } else if p.age < 6 {
        "4"
    } else if card.is_some_and(|c| c.kind == InsuranceKind::Kouki) || (70..75).contains(&p.age) {
        "8"
    } else if card.and_then(|c| c.branch.as_deref()).is_some_and(|b| b != "00") {
        "6"
    } else {
        "2"
    };
    let receipt_type = format!("1{kind_digit}{payers}{category}");
    let no = file.receipts.to_string();
    let month = input.service_month.format("%Y%m").to_string();
    let sex = ids.sex.to_string();
    let birth = ymd(ids.birth);
    let kanji = p.kanji();
    let mut re: Vec<&str> = vec!["RE", &no, &receipt_type, &month, &kanji, &sex, &birth];
    re.resize(13, "");
    re.push(&input.chart);
    re.resize(36, "");
    re.push(&ids.kana);
    re.push("");
    file.push(&re);

    // HO.
    let total_s = total.to_string();
    if card.is_some() {
        let ins = ids.insurer.as_deref().unwrap_or("");
        let kigo = ids.kigo.as_deref().unwrap_or("");
        let bango = ids.bango.as_deref().unwrap_or("");
        let mut ho: Vec<&str> = vec!["HO", ins, kigo, bango, &service_days, &total_s];
        ho.resize(15, "");
        file.push(&ho);
    }
    // KO.
    for k in publics {
        let mut ko: Vec<&str> = vec!["KO", &k.payer, &k.recipient, "", &service_days, &total_s, "0"];
        ko.resize(12, "");
        file.push(&ko);
    }
    // SN.
    if input.with_sn
        && let Some(b) = ids.branch.as_deref()
    {
        file.push(&["SN", "1", "01", "", "", "", b, "", ""]);
    }
    // SY.
    for d in &input.diagnoses {
        let start = ymd(d.start);
        let (code, name) = match &d.uncoded_name {
            Some(n) => ("0000999", n.as_str()),
            None => (d.code, ""),
        };
        file.push(&["SY", code, &start, d.outcome, "", name, if d.primary { "01" } else { "" }, ""]);
    }
    // SI / IY / CO.
    let mut previous = "";
    for l in &lines {
        let count: u32 = l.days.iter().sum();
        let cat = if l.category == previous { "" } else { l.category };
        previous = l.category;
        let pts = l.points.to_string();
        let cnt = count.to_string();
        let day_s: Vec<String> = l.days.iter().map(|d| if *d == 0 { String::new() } else { d.to_string() }).collect();
        let mut f: Vec<&str> = vec![l.record, cat, burden, l.code, &l.qty, &pts, &cnt];
        f.resize(13, "");
        f.extend(day_s.iter().map(String::as_str));
        file.push(&f);
        if let Some(c) = l.comment {
            file.push(&["CO", l.category, burden, "810000001", c]);
        }
    }
    re_line
}

impl ReceiptInput<'_> {
    fn in_house_or_clinic(&self) -> bool {
        self.visits.iter().all(|v| v.facility < crate::person::CLINICS)
    }
}
