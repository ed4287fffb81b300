//! One region at a time: its persons, and every file fragment they produce. Receipt and care
//! files belong to the region's own facilities and providers, so they are complete when the
//! region is; the global streams (FHIR NDJSON, certifications, consent, ground truth) receive
//! the region's fragment in person order. Memory is bounded by one region.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use serde_json::Value;

use crate::fhir::{self, DocType};
use crate::noise::{self, NoiseKind, Rendered, Style};
use crate::person::{CLINICS, Person, REGION_SIZE, Region, add_months, period_start, tag};
use crate::rng::{Rng, mix};
use crate::tables::{self, ACUTE, CHRONIC, LABS, LabValue};
use crate::uke::{self, Diagnosis, ReceiptInput, UkeFile};
use crate::visits::{self, Pathway, VisitKind};
use crate::{SourceIdentity, SynthConfig};

/// FHIR resource types written as NDJSON, in file order.
pub const FHIR_TYPES: [&str; 7] =
    ["Patient", "Encounter", "Condition", "Observation", "MedicationRequest", "AllergyIntolerance", "Immunization"];

/// Header of `care/care_certification.csv`.
pub const CERT_HEADER: &str = "insurer_number,insured_number,kana_name,birth_date,sex,application_date,decision_date,care_level,valid_from,valid_to";
/// Header of `consent/consent.csv`.
pub const CONSENT_HEADER: &str =
    "insurer_number,kigo,bango,branch,kana_name,birth_date,sex,purpose,status,effective_date";

/// A complete file of the region.
#[derive(Debug)]
pub struct TextFile {
    pub name: String,
    pub text: String,
    pub records: u64,
}

/// Everything one region produces.
#[derive(Debug, Default)]
pub struct RegionOut {
    pub ndjson: [String; 7],
    pub ndjson_counts: [u64; 7],
    pub bundles: Vec<TextFile>,
    pub receipts: Vec<TextFile>,
    pub care: Vec<TextFile>,
    pub cert: String,
    pub cert_rows: u64,
    pub consent: String,
    pub consent_rows: u64,
    pub identities: Vec<SourceIdentity>,
}

/// Line counters of the global CSV files (lines already written, header included).
#[derive(Debug, Clone)]
pub struct Cursor {
    pub cert_lines: u64,
    pub consent_lines: u64,
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor { cert_lines: 1, consent_lines: 1 }
    }
}

fn ymd(d: NaiveDate) -> String {
    d.format("%Y%m%d").to_string()
}

fn month_index(cfg: &SynthConfig, d: NaiveDate) -> u32 {
    ((d.year() - cfg.start_year) * 12 + d.month0() as i32).max(0) as u32
}

fn identity(key: String, p: &Person, ids: &Rendered, noise: NoiseKind) -> SourceIdentity {
    SourceIdentity {
        record_key: key,
        person_index: p.index,
        insurer_number: ids.insurer.clone(),
        kigo: ids.kigo.clone(),
        bango: ids.bango.clone(),
        branch: ids.branch.clone(),
        kana_name: Some(ids.kana.clone()),
        birth_date: Some(ymd(ids.birth)),
        sex: Some(ids.sex.to_string()),
        care_insurer_number: None,
        care_insured_number: None,
        noise,
    }
}

struct CareFile {
    name: String,
    text: String,
    lines: u64,
    records: u64,
}

struct State<'a> {
    cfg: &'a SynthConfig,
    region: Region,
    out: RegionOut,
    uke: BTreeMap<(usize, u32), UkeFile>,
    care: BTreeMap<(usize, u32), CareFile>,
    bundles_done: [bool; 3],
    cursor: &'a mut Cursor,
}

/// Build region `index` and number its certification and consent lines after `cursor`.
pub fn build(cfg: &SynthConfig, index: u64, cursor: &mut Cursor) -> RegionOut {
    let mut out = build_local(cfg, index);
    finalize(&mut out, cursor);
    out
}

/// Shift the region's certification and consent record keys (numbered as if the region's rows
/// came first) behind the rows already written, and advance `cursor`.
pub fn finalize(out: &mut RegionOut, cursor: &mut Cursor) {
    let cert_offset = cursor.cert_lines - 1;
    let consent_offset = cursor.consent_lines - 1;
    for id in &mut out.identities {
        let (prefix, offset) = if id.record_key.starts_with("cert:") {
            ("cert:care_certification.csv:", cert_offset)
        } else if id.record_key.starts_with("consent:") {
            ("consent:consent.csv:", consent_offset)
        } else {
            continue;
        };
        if offset > 0
            && let Some(local) = id.record_key.strip_prefix(prefix).and_then(|n| n.parse::<u64>().ok())
        {
            id.record_key = format!("{prefix}{}", local + offset);
        }
    }
    cursor.cert_lines += out.cert_rows;
    cursor.consent_lines += out.consent_rows;
}

/// Build region `index` on its own (certification and consent lines numbered from 2); regions
/// can be built in parallel and finalized in order.
pub fn build_local(cfg: &SynthConfig, index: u64) -> RegionOut {
    let mut local = Cursor::default();
    let cursor = &mut local;
    let region = Region::new(cfg.seed, index);
    let lo = index * REGION_SIZE;
    let hi = (lo + REGION_SIZE).min(cfg.persons);
    let mut st = State {
        cfg,
        region,
        out: RegionOut::default(),
        uke: BTreeMap::new(),
        care: BTreeMap::new(),
        bundles_done: [false; 3],
        cursor,
    };
    for i in lo..hi {
        let p = Person::new(cfg, &st.region, i);
        let path = visits::pathway(cfg, &p);
        st.fhir(&p, &path);
        st.receipts(&p, &path);
        st.care(&p);
        st.consent(&p);
    }
    let uke = std::mem::take(&mut st.uke);
    for f in uke.into_values() {
        let f = f.finish();
        st.out.receipts.push(TextFile { name: f.name, text: f.text, records: f.receipts });
    }
    let care = std::mem::take(&mut st.care);
    for f in care.into_values() {
        st.out.care.push(TextFile { name: f.name, text: f.text, records: f.records });
    }
    st.out
}

impl State<'_> {
    fn push_fhir(&mut self, kind: usize, v: &Value) {
        self.out.ndjson[kind].push_str(&v.to_string());
        self.out.ndjson[kind].push('\n');
        self.out.ndjson_counts[kind] += 1;
    }

    fn fhir(&mut self, p: &Person, path: &Pathway) {
        let cfg = self.cfg;
        let hospitals: BTreeSet<usize> = path.visits.iter().map(|v| v.facility).filter(|f| *f >= CLINICS).collect();
        let shot_site = hospitals.iter().next().copied();
        for &f in &hospitals {
            let fac = self.region.facilities[f].clone();
            let pid = format!("{:016x}", mix(&[cfg.seed, tag::IDS, p.index, f as u64]));
            let mrn = format!("{:09}", mix(&[cfg.seed, tag::IDS, p.index, f as u64, 1]) % 1_000_000_000);
            let style = Style { full_width: fac.full_width, pad_insurer: true, kana_sep: " " };
            let (ids, nk) = noise::render(cfg, p, style, mix(&[2, f as u64]));
            let patient = fhir::patient(&pid, &mrn, &fac, p, &ids);
            self.push_fhir(0, &patient);
            self.out.identities.push(identity(format!("fhir:Patient/{pid}"), p, &ids, nk));

            let mut r = Rng::new(cfg.seed, tag::VISITS + 100, mix(&[p.index, f as u64]));
            let mut recorded = vec![false; p.chronic.len()];
            let mut first_date = None;
            for (n, v) in path.visits.iter().filter(|v| v.facility == f).enumerate() {
                first_date.get_or_insert(v.date);
                let eid = format!("{pid}-e{n}");
                let enc = fhir::encounter(&eid, &pid, v);
                self.push_fhir(1, &enc);
                let mut section = Vec::new();
                if matches!(v.kind, VisitKind::Chronic | VisitKind::Dialysis) && p.chronic_site == f {
                    for (i, c) in p.chronic.iter().enumerate() {
                        if !recorded[i] {
                            recorded[i] = true;
                            let cid = format!("{pid}-c{n}-{i}");
                            let cond = fhir::condition(&cid, &pid, &eid, &fac, Some(*c), None, path.onsets[i], v.date);
                            self.push_fhir(2, &cond);
                            section.push(cond);
                        }
                    }
                }
                if let Some(a) = v.acute {
                    let cid = format!("{pid}-c{n}-a");
                    let cond = fhir::condition(&cid, &pid, &eid, &fac, None, Some(a), v.date, v.date);
                    self.push_fhir(2, &cond);
                    section.push(cond);
                }
                for (j, l) in v.labs.iter().enumerate() {
                    let sick = match LABS[*l].value {
                        LabValue::Quantity { .. } => {
                            p.chronic.iter().any(|c| CHRONIC[*c].labs.contains(l))
                                || (v.acute.is_some() && matches!(l, 11 | 12))
                        }
                        LabValue::Qualitative { .. } => v.acute.is_some_and(|a| ACUTE[a].labs.contains(l)),
                    };
                    let oid = format!("{pid}-o{n}-{j}");
                    let obs = fhir::observation(&oid, &pid, &eid, &fac, v, *l, sick, r.normal(), r.unit());
                    self.push_fhir(3, &obs);
                    section.push(obs);
                }
                for (j, d) in v.drugs.iter().enumerate() {
                    let mid = format!("{pid}-m{n}-{j}");
                    let med = fhir::medication_request(&mid, &pid, &eid, v, *d, j);
                    self.push_fhir(4, &med);
                    section.push(med);
                }
                let doc = match v.kind {
                    VisitKind::Chronic if !section.is_empty() => Some(DocType::Referral),
                    VisitKind::Inpatient => Some(DocType::Discharge),
                    VisitKind::Checkup => Some(DocType::Checkup),
                    _ => None,
                };
                if let Some(doc) = doc
                    && !self.bundles_done[doc as usize]
                {
                    self.bundles_done[doc as usize] = true;
                    let bid = format!("Bundle-CLINS-{}-{pid}-{n}", doc.code().2);
                    let mut k = 0u64;
                    let mut uuids = || {
                        k += 1;
                        fhir::uuid(mix(&[cfg.seed, tag::IDS, p.index, f as u64, n as u64, k]), mix(&[k, p.index]))
                    };
                    let b = fhir::document_bundle(&bid, doc, &fac, v.date, &patient, &enc, &section, &mut uuids);
                    let mut text = serde_json::to_string_pretty(&b).unwrap_or_default();
                    text.push('\n');
                    self.out.bundles.push(TextFile { name: format!("{bid}.json"), text, records: 1 });
                }
            }
            let recorded_on = first_date.unwrap_or_else(|| period_start(cfg));
            if p.med_allergy.is_some() {
                let a = fhir::allergy(&format!("{pid}-a0"), &pid, &fac, p.med_allergy, None, recorded_on);
                self.push_fhir(5, &a);
            }
            if p.food_allergy.is_some() {
                let a = fhir::allergy(&format!("{pid}-a1"), &pid, &fac, None, p.food_allergy, recorded_on);
                self.push_fhir(5, &a);
            }
            if shot_site == Some(f) {
                for (j, s) in path.shots.iter().enumerate() {
                    let imm = fhir::immunization(&format!("{pid}-i{j}"), &pid, s);
                    self.push_fhir(6, &imm);
                }
            }
        }
    }

    fn receipts(&mut self, p: &Person, path: &Pathway) {
        let cfg = self.cfg;
        let start = period_start(cfg);
        let mut groups: BTreeMap<(usize, u32), Vec<&visits::Visit>> = BTreeMap::new();
        let mut first_at: BTreeMap<usize, NaiveDate> = BTreeMap::new();
        for v in &path.visits {
            if matches!(v.kind, VisitKind::Checkup | VisitKind::Inpatient) {
                continue;
            }
            first_at.entry(v.facility).or_insert(v.date);
            groups.entry((v.facility, month_index(cfg, v.date))).or_default().push(v);
        }
        for ((f, m), vs) in groups {
            let fac = &self.region.facilities[f];
            let mut r = Rng::new(cfg.seed, tag::IDS, mix(&[p.index, f as u64, u64::from(m)]));
            let with_sn = r.chance(0.7);
            let style = Style { full_width: true, pad_insurer: false, kana_sep: "" };
            let (ids, nk) = noise::render(cfg, p, style, mix(&[1, f as u64, u64::from(m)]));
            let mut diagnoses = Vec::new();
            if p.chronic_site == f && vs.iter().any(|v| matches!(v.kind, VisitKind::Chronic | VisitKind::Dialysis)) {
                for (i, c) in p.chronic.iter().enumerate() {
                    diagnoses.push(Diagnosis {
                        code: CHRONIC[*c].receipt,
                        start: path.onsets[i],
                        outcome: "1",
                        primary: i == 0,
                        uncoded_name: None,
                    });
                }
            }
            for v in &vs {
                if let Some(a) = v.acute {
                    let uncoded = r.chance(0.03).then(|| format!("{}の疑い", ACUTE[a].name));
                    diagnoses.push(Diagnosis {
                        code: ACUTE[a].receipt,
                        start: v.date,
                        outcome: "2",
                        primary: diagnoses.is_empty(),
                        uncoded_name: uncoded,
                    });
                }
            }
            let first_visit = first_at.get(&f).copied().filter(|_| p.chronic_site != f || p.chronic.is_empty());
            let input = ReceiptInput {
                person: p,
                ids: &ids,
                with_sn,
                service_month: add_months(start, m),
                chart: format!("{:05}", mix(&[cfg.seed, p.index, f as u64]) % 100_000),
                visits: vs,
                first_visit,
                diagnoses,
                in_house: fac.in_house,
            };
            let billing = add_months(start, m + 1).format("%Y%m").to_string();
            let pref = self.region.pref.code;
            let file = self.uke.entry((f, m)).or_insert_with(|| UkeFile::new(fac, pref, &billing));
            let line = uke::write_receipt(file, &input);
            let mut id = identity(format!("receipt:{}:{line}", file.name), p, &ids, nk);
            if !with_sn {
                id.branch = None;
            }
            if p.card.is_none() {
                id.insurer_number = None;
                id.kigo = None;
                id.bango = None;
            }
            self.out.identities.push(id);
        }
    }

    fn care(&mut self, p: &Person) {
        let cfg = self.cfg;
        let Some(cert) = p.care.clone() else { return };
        let start = period_start(cfg);
        let style = Style { full_width: false, pad_insurer: false, kana_sep: "　" };
        let mut r = Rng::new(cfg.seed, tag::CARE + 100, p.index);
        let support = cert.level.starts_with('1');
        let services: Vec<&(&str, &str, u64, f64)> = if support {
            tables::CARE_SERVICES_SUPPORT.iter().collect()
        } else {
            let plan = &tables::CARE_SERVICES_CARE[4];
            let mut s: Vec<_> = tables::CARE_SERVICES_CARE[..4].iter().filter(|_| r.chance(0.45)).collect();
            if s.is_empty() {
                s.push(&tables::CARE_SERVICES_CARE[0]);
            }
            s.push(plan);
            s
        };
        let form = if support { "7132" } else { "7131" };
        let public = p.public.iter().find(|x| x.payer.starts_with("12")).map_or("", |x| x.payer.as_str());
        let provider = self.region.providers[cert.provider].clone();
        for m in 0..cfg.months {
            let ms = add_months(start, m);
            let me = add_months(start, m + 1);
            if cert.valid_from >= me || cert.valid_to < ms || cert.decision >= me {
                continue;
            }
            let ym = ms.format("%Y%m").to_string();
            let (ids, nk) = noise::render(cfg, p, style, mix(&[3, u64::from(m)]));
            let lines: Vec<(&str, &str, u64, u64)> = services
                .iter()
                .map(|(t, i, u, mean)| {
                    let n = ((mean * (0.6 + 0.8 * r.unit())).round() as u64).max(1);
                    (*t, *i, *u, n)
                })
                .collect();
            let days: u64 = lines
                .iter()
                .filter(|l| matches!(l.0, "15" | "11" | "13" | "65"))
                .map(|l| l.3)
                .sum::<u64>()
                .clamp(1, 31);
            let units: u64 = lines.iter().map(|l| l.2 * l.3).sum();
            let file = self.care.entry((cert.provider, m)).or_insert_with(|| CareFile {
                name: format!("benefit_{provider}_{ym}.csv"),
                text: String::new(),
                lines: 0,
                records: 0,
            });
            let row = [
                "01",
                form,
                &ym,
                &provider,
                &cert.insurer,
                &cert.insured,
                &ids.kana,
                &ymd(ids.birth),
                &ids.sex.to_string(),
                cert.level,
                &ymd(cert.valid_from),
                &ymd(cert.valid_to),
                &days.to_string(),
                &units.to_string(),
                public,
            ]
            .join(",");
            file.text.push_str(&row);
            file.text.push_str("\r\n");
            file.lines += 1;
            file.records += 1;
            let key = format!("care:{}:{}", file.name, file.lines);
            for (t, i, u, n) in &lines {
                let row =
                    ["02", form, &ym, &provider, &cert.insured, t, i, &(u * n).to_string(), &n.to_string()].join(",");
                file.text.push_str(&row);
                file.text.push_str("\r\n");
                file.lines += 1;
            }
            let mut id = identity(key, p, &ids, nk);
            id.insurer_number = None;
            id.kigo = None;
            id.bango = None;
            id.branch = None;
            id.care_insurer_number = Some(cert.insurer.clone());
            id.care_insured_number = Some(cert.insured.clone());
            self.out.identities.push(id);
        }

        // The certification itself (one row; renewals before the period are not listed).
        let (ids, nk) = noise::render(cfg, p, style, mix(&[4]));
        let row = [
            cert.insurer.as_str(),
            &cert.insured,
            &ids.kana,
            &ymd(ids.birth),
            &ids.sex.to_string(),
            &ymd(cert.application),
            &ymd(cert.decision),
            cert.level,
            &ymd(cert.valid_from),
            &ymd(cert.valid_to),
        ]
        .join(",");
        self.out.cert.push_str(&row);
        self.out.cert.push_str("\r\n");
        self.out.cert_rows += 1;
        self.cursor.cert_lines += 1;
        let mut id = identity(format!("cert:care_certification.csv:{}", self.cursor.cert_lines), p, &ids, nk);
        id.insurer_number = None;
        id.kigo = None;
        id.bango = None;
        id.branch = None;
        id.care_insurer_number = Some(cert.insurer.clone());
        id.care_insured_number = Some(cert.insured);
        self.out.identities.push(id);
    }

    fn consent(&mut self, p: &Person) {
        let cfg = self.cfg;
        let style = Style { full_width: false, pad_insurer: true, kana_sep: " " };
        for (i, e) in p.consent.iter().enumerate() {
            let (ids, nk) = noise::render(cfg, p, style, mix(&[5, i as u64]));
            let card = |s: &Option<String>| if e.with_card { s.clone() } else { None };
            let mut id = identity(String::new(), p, &ids, nk);
            id.insurer_number = card(&ids.insurer);
            id.kigo = card(&ids.kigo);
            id.bango = card(&ids.bango);
            id.branch = card(&ids.branch);
            // A row must be linkable: 記号 is missing on 後期高齢者 cards, so those rows keep the kana.
            let card_complete = e.with_card && ids.kigo.is_some();
            id.kana_name = (e.with_kana || !card_complete).then(|| ids.kana.clone());
            let row = [
                id.insurer_number.as_deref().unwrap_or(""),
                id.kigo.as_deref().unwrap_or(""),
                id.bango.as_deref().unwrap_or(""),
                id.branch.as_deref().unwrap_or(""),
                id.kana_name.as_deref().unwrap_or(""),
                &ymd(ids.birth),
                &ids.sex.to_string(),
                e.purpose,
                e.status,
                &e.date.format("%Y-%m-%d").to_string(),
            ]
            .join(",");
            self.out.consent.push_str(&row);
            self.out.consent.push('\n');
            self.out.consent_rows += 1;
            self.cursor.consent_lines += 1;
            id.record_key = format!("consent:consent.csv:{}", self.cursor.consent_lines);
            self.out.identities.push(id);
        }
    }
}
