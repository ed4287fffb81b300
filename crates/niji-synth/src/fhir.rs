//! FHIR R4 resources in the JP-CLINS / JP Core shapes of the fixtures.

use chrono::{Days, NaiveDate};
use serde_json::{Value, json};

use crate::noise::Rendered;
use crate::person::{Facility, Person};
use crate::tables::{ACUTE, CHRONIC, DRUGS, FOOD_ALLERGENS, LABS, LabValue, MED_ALLERGENS, VACCINES};
use crate::visits::{Shot, Visit, VisitKind};

pub const INSURANCE_SYSTEM: &str = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID";
const INSTANCE_ID: &str = "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier";
const INSTITUTION_EXT: &str = "http://jpfhir.jp/fhir/clins/Extension/StructureDefinition/JP_eCS_InstitutionNumber";
const INSTITUTION_SYSTEM: &str = "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no";
const MEDIS: &str = "http://medis.or.jp/CodeSystem/master-disease-keyNumber";
const ICD10: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full";
const JLAC10: &str = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits";
const JLAC10_CORE: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS";
const LAB_LOCAL: &str = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS";
const HOT9: &str = "http://medis.or.jp/CodeSystem/master-HOT9";
const YJ: &str = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code";
const UNIT_MERIT9: &str = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUnitMERIT9Code";
const USAGE: &str = "http://jami.jp/CodeSystem/MedicationUsage";
const UCUM: &str = "http://unitsofmeasure.org";
const KANA_REP: &str = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn datetime(d: NaiveDate, hour: u32, minute: u32) -> String {
    format!("{}T{hour:02}:{minute:02}:00+09:00", date(d))
}

fn institution(f: &Facility) -> Value {
    json!([{ "url": INSTITUTION_EXT, "valueIdentifier": { "system": INSTITUTION_SYSTEM, "value": f.institution } }])
}

fn profile(name: &str) -> Value {
    json!({ "profile": [format!("http://jpfhir.jp/fhir/eCS/StructureDefinition/{name}")] })
}

/// The JP-CLINS insurance identifier value `保険者番号:記号:番号[:枝番]`.
pub fn member_id(ids: &Rendered) -> Option<String> {
    let ins = ids.insurer.as_deref()?;
    let kigo = ids.kigo.as_deref().unwrap_or("");
    let bango = ids.bango.as_deref()?;
    Some(match ids.branch.as_deref() {
        Some(b) => format!("{ins}:{kigo}:{bango}:{b}"),
        None => format!("{ins}:{kigo}:{bango}"),
    })
}

/// A Patient of one facility.
pub fn patient(id: &str, mrn: &str, f: &Facility, p: &Person, ids: &Rendered) -> Value {
    let mut identifier =
        vec![json!({ "system": format!("urn:oid:1.2.392.100495.20.3.51.1{}", f.institution), "value": mrn })];
    if let Some(v) = member_id(ids) {
        identifier.push(json!({ "system": INSURANCE_SYSTEM, "value": v }));
    }
    let (kana_family, kana_given) = ids.kana.split_once(' ').unwrap_or((ids.kana.as_str(), ""));
    json!({
        "resourceType": "Patient",
        "id": id,
        "meta": profile("JP_Patient_eCS"),
        "identifier": identifier,
        "name": [
            {
                "extension": [{ "url": KANA_REP, "valueCode": "IDE" }],
                "text": format!("{} {}", p.family.0, p.given.0),
                "family": p.family.0,
                "given": [p.given.0]
            },
            {
                "extension": [{ "url": KANA_REP, "valueCode": "SYL" }],
                "text": ids.kana,
                "family": kana_family,
                "given": [kana_given]
            }
        ],
        "gender": if ids.sex == 1 { "male" } else { "female" },
        "birthDate": date(ids.birth),
        "address": [{ "text": p.address, "postalCode": p.zip, "city": p.city, "state": crate::tables::PREFECTURES.iter().find(|x| p.address.starts_with(x.name)).map_or("", |x| x.name) }]
    })
}

/// An Encounter.
pub fn encounter(id: &str, patient: &str, v: &Visit) -> Value {
    let (code, display) = if v.kind == VisitKind::Inpatient { ("IMP", "入院") } else { ("AMB", "外来") };
    let end = v.date.checked_add_days(Days::new(u64::from(v.stay))).unwrap_or(v.date);
    json!({
        "resourceType": "Encounter",
        "id": id,
        "meta": profile("JP_Encounter_eCS"),
        "identifier": [{ "system": INSTANCE_ID, "value": id }],
        "status": "finished",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display },
        "subject": { "reference": format!("Patient/{patient}") },
        "period": { "start": datetime(v.date, v.hour, 0), "end": datetime(end, v.hour, 30) }
    })
}

/// A Condition: chronic (index into CHRONIC) or acute (index into ACUTE).
#[allow(clippy::too_many_arguments)] // Mirrors the resource's elements one to one.
pub fn condition(
    id: &str,
    patient: &str,
    encounter: &str,
    f: &Facility,
    chronic: Option<usize>,
    acute: Option<usize>,
    onset: NaiveDate,
    recorded: NaiveDate,
) -> Value {
    let (name, medis, icd, status) = match (chronic, acute) {
        (Some(c), _) => (CHRONIC[c].name, CHRONIC[c].medis, CHRONIC[c].icd10, "active"),
        (None, Some(a)) => (ACUTE[a].name, ACUTE[a].medis, ACUTE[a].icd10, "resolved"),
        (None, None) => ("", "", "", "active"),
    };
    json!({
        "resourceType": "Condition",
        "id": id,
        "meta": profile("JP_Condition_eCS"),
        "identifier": [{ "system": INSTANCE_ID, "value": id }],
        "extension": institution(f),
        "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status }] },
        "verificationStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed" }] },
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis" }] }],
        "code": {
            "coding": [
                { "system": MEDIS, "code": medis, "display": name },
                { "system": ICD10, "code": icd }
            ],
            "text": name
        },
        "subject": { "reference": format!("Patient/{patient}") },
        "encounter": { "reference": format!("Encounter/{encounter}") },
        "onsetDateTime": date(onset),
        "recordedDate": date(recorded)
    })
}

fn round(x: f64, decimals: u32) -> f64 {
    let m = f64::from(10u32.pow(decimals));
    (x * m).round() / m
}

/// A laboratory Observation. `sick` shifts the value towards the condition's mean; `draw` is a
/// standard normal and `positive` a uniform in [0, 1).
#[allow(clippy::too_many_arguments)] // Mirrors the resource's elements one to one.
pub fn observation(
    id: &str,
    patient: &str,
    encounter: &str,
    f: &Facility,
    v: &Visit,
    lab: usize,
    sick: bool,
    draw: f64,
    positive: f64,
) -> Value {
    let l = &LABS[lab];
    let mut o = json!({
        "resourceType": "Observation",
        "id": id,
        "meta": profile("JP_Observation_LabResult_eCS"),
        "identifier": [{ "system": INSTANCE_ID, "value": id }],
        "extension": institution(f),
        "status": "final",
        "category": [{ "coding": [{ "system": "http://jpfhir.jp/fhir/core/CodeSystem/JP_SimpleObservationCategory_CS", "code": "laboratory" }] }],
        "code": {
            "coding": [
                { "system": LAB_LOCAL, "code": l.local, "display": l.name },
                { "system": JLAC10_CORE, "code": l.jlac10, "display": l.abbrev },
                { "system": JLAC10, "code": l.jlac10, "display": l.abbrev }
            ],
            "text": l.name
        },
        "subject": { "reference": format!("Patient/{patient}") },
        "encounter": { "reference": format!("Encounter/{encounter}") },
        "effectiveDateTime": datetime(v.date, v.hour, 10),
        "issued": datetime(v.date, (v.hour + 3).min(23), 0),
        "specimen": { "display": if l.infection && !l.abbrev.starts_with('H') && l.abbrev != "TPAb" { "鼻咽頭ぬぐい液" } else { "血清" } }
    });
    match l.value {
        LabValue::Quantity { mean, sd, decimals, sick_mean } => {
            let m = if sick { sick_mean } else { mean };
            let spread = if sick { sd * 1.4 } else { sd };
            let value = round((m + draw * spread).max(mean * 0.1), decimals);
            o["valueQuantity"] = json!({ "value": value, "unit": l.unit, "system": UCUM, "code": l.unit });
            let (lo, hi) = (round(mean - 2.0 * sd, decimals), round(mean + 2.0 * sd, decimals));
            o["referenceRange"] =
                json!([{ "low": { "value": lo, "unit": l.unit }, "high": { "value": hi, "unit": l.unit } }]);
            let flag = if value > hi {
                Some(("H", "High"))
            } else if value < lo {
                Some(("L", "Low"))
            } else {
                None
            };
            if let Some((c, d)) = flag {
                o["interpretation"] = json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": c, "display": d }] }]);
            }
        }
        LabValue::Qualitative { positive_rate } => {
            let pos = positive < if sick { positive_rate } else { positive_rate / 10.0 };
            let (c, d, text) = if pos { ("POS", "Positive", "陽性") } else { ("NEG", "Negative", "陰性") };
            o["valueCodeableConcept"] = json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": c, "display": d }], "text": text });
            o["interpretation"] = json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": c, "display": d }] }]);
        }
    }
    o
}

/// A MedicationRequest (prescription with YJ and HOT9 codes).
pub fn medication_request(id: &str, patient: &str, encounter: &str, v: &Visit, drug: usize, rp: usize) -> Value {
    let d = &DRUGS[drug];
    let total = d.per_day * v.supply_days;
    json!({
        "resourceType": "MedicationRequest",
        "id": id,
        "meta": profile("JP_MedicationRequest_eCS"),
        "identifier": [
            { "system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber", "value": (rp + 1).to_string() },
            { "system": INSTANCE_ID, "value": id }
        ],
        "status": "completed",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                { "system": HOT9, "code": d.hot9, "display": d.name },
                { "system": YJ, "code": d.yj, "display": d.name }
            ],
            "text": d.name
        },
        "subject": { "reference": format!("Patient/{patient}") },
        "encounter": { "reference": format!("Encounter/{encounter}") },
        "authoredOn": datetime(v.date, v.hour, 20),
        "dosageInstruction": [{
            "text": d.usage,
            "timing": {
                "code": { "coding": [{ "system": USAGE, "code": d.usage_code, "display": d.usage }], "text": d.usage },
                "repeat": { "boundsDuration": { "value": v.supply_days, "unit": "日", "system": UCUM, "code": "d" } }
            },
            "route": { "coding": [{ "system": "http://jpfhir.jp/fhir/core/CodeSystem/route-codes", "code": "PO", "display": "口" }] },
            "doseAndRate": [{
                "type": { "coding": [{ "system": "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationIngredientStrengthStrengthType", "code": "1", "display": "製剤量" }] },
                "doseQuantity": { "value": 1, "unit": d.unit, "system": UNIT_MERIT9, "code": d.unit_code },
                "rateRatio": {
                    "numerator": { "value": d.per_day, "unit": d.unit, "system": UNIT_MERIT9, "code": d.unit_code },
                    "denominator": { "value": 1, "unit": "日", "system": UCUM, "code": "d" }
                }
            }]
        }],
        "dispenseRequest": {
            "quantity": { "value": total, "unit": d.unit, "system": UNIT_MERIT9, "code": d.unit_code },
            "expectedSupplyDuration": { "value": v.supply_days, "unit": "日", "system": UCUM, "code": "d" }
        }
    })
}

/// An AllergyIntolerance: medication (index into MED_ALLERGENS) or food (FOOD_ALLERGENS).
pub fn allergy(
    id: &str,
    patient: &str,
    f: &Facility,
    medication: Option<usize>,
    food: Option<usize>,
    recorded: NaiveDate,
) -> Value {
    let (category, system, (code, display)) = match (medication, food) {
        (Some(m), _) => {
            ("medication", "http://jpfhir.jp/fhir/core/CodeSystem/GCM/JP_JfagyMedicationAllergen_CS", MED_ALLERGENS[m])
        }
        (None, Some(x)) => ("food", "http://jpfhir.jp/fhir/core/CodeSystem/JP_JfagyFoodAllergen_CS", FOOD_ALLERGENS[x]),
        (None, None) => ("food", "", ("", "")),
    };
    json!({
        "resourceType": "AllergyIntolerance",
        "id": id,
        "meta": profile("JP_AllergyIntolerance_eCS"),
        "identifier": [{ "system": INSTANCE_ID, "value": id }],
        "extension": institution(f),
        "clinicalStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active" }] },
        "verificationStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed" }] },
        "category": [category],
        "code": { "coding": [{ "system": system, "code": code, "display": display }], "text": display },
        "patient": { "reference": format!("Patient/{patient}") },
        "recordedDate": date(recorded)
    })
}

/// An Immunization.
pub fn immunization(id: &str, patient: &str, s: &Shot) -> Value {
    let (yj, name, target) = VACCINES[s.vaccine];
    json!({
        "resourceType": "Immunization",
        "id": id,
        "meta": { "profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Immunization"] },
        "status": "completed",
        "vaccineCode": { "coding": [{ "system": YJ, "code": yj, "display": name }], "text": name },
        "patient": { "reference": format!("Patient/{patient}") },
        "occurrenceDateTime": date(s.date),
        "primarySource": true,
        "protocolApplied": [{
            "targetDisease": [{ "coding": [{ "system": "http://snomed.info/sct", "code": target }] }],
            "doseNumberPositiveInt": 1
        }]
    })
}

/// A deterministic UUID-shaped string from 128 random bits.
pub fn uuid(hi: u64, lo: u64) -> String {
    let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
    let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

/// Document types of JP-CLINS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocType {
    Referral,
    Discharge,
    Checkup,
}

impl DocType {
    pub fn code(self) -> (&'static str, &'static str, &'static str) {
        match self {
            DocType::Referral => ("57133-1", "診療情報提供書", "eReferral"),
            DocType::Discharge => ("18842-5", "退院時サマリー", "eDischargeSummary"),
            DocType::Checkup => ("53576-5", "健康診断結果報告書", "eCheckupReport"),
        }
    }
}

/// A JP-CLINS-style document Bundle: Composition first, then the patient, the author
/// organization, the encounter and the section resources, all with `urn:uuid:` full URLs
/// and references rewritten to them.
#[allow(clippy::too_many_arguments)] // The document's parts, one argument each.
pub fn document_bundle(
    bundle_id: &str,
    kind: DocType,
    f: &Facility,
    when: NaiveDate,
    patient: &Value,
    encounter: &Value,
    section: &[Value],
    ids: &mut impl FnMut() -> String,
) -> Value {
    let (code, display, short) = kind.code();
    let patient_url = format!("urn:uuid:{}", ids());
    let org_url = format!("urn:uuid:{}", ids());
    let enc_url = format!("urn:uuid:{}", ids());
    let comp_url = format!("urn:uuid:{}", ids());
    let mut entries = Vec::new();
    let mut refs = Vec::new();
    let mut section_entries = Vec::new();
    for r in section {
        let url = format!("urn:uuid:{}", ids());
        let mut r = r.clone();
        for key in ["subject", "patient"] {
            if r.get(key).is_some() {
                r[key] = json!({ "reference": patient_url });
            }
        }
        if r.get("encounter").is_some() {
            r["encounter"] = json!({ "reference": enc_url });
        }
        refs.push(json!({ "reference": url }));
        section_entries.push(json!({ "fullUrl": url, "resource": r }));
    }
    let mut enc = encounter.clone();
    enc["subject"] = json!({ "reference": patient_url });
    let org = json!({
        "resourceType": "Organization",
        "id": format!("org-{}", f.institution),
        "identifier": [{ "system": INSTITUTION_SYSTEM, "value": f.institution }],
        "name": f.name
    });
    let composition = json!({
        "resourceType": "Composition",
        "id": format!("composition-{bundle_id}"),
        "meta": { "profile": [format!("http://jpfhir.jp/fhir/{short}/StructureDefinition/JP_Composition_{short}")] },
        "identifier": { "system": INSTANCE_ID, "value": format!("{}-{bundle_id}", f.institution) },
        "status": "final",
        "type": { "coding": [{ "system": "http://jpfhir.jp/fhir/Common/CodeSystem/doc-typecodes", "code": code, "display": display }] },
        "subject": { "reference": patient_url, "type": "Patient" },
        "encounter": { "reference": enc_url, "type": "Encounter" },
        "date": format!("{}T12:00:00+09:00", date(when)),
        "author": [{ "reference": org_url, "type": "Organization" }],
        "title": display,
        "section": [{ "title": display, "entry": refs }]
    });
    entries.push(json!({ "fullUrl": comp_url, "resource": composition }));
    entries.push(json!({ "fullUrl": patient_url, "resource": patient }));
    entries.push(json!({ "fullUrl": org_url, "resource": org }));
    entries.push(json!({ "fullUrl": enc_url, "resource": enc }));
    entries.extend(section_entries);
    json!({
        "resourceType": "Bundle",
        "id": bundle_id,
        "meta": { "profile": [format!("http://jpfhir.jp/fhir/clins/StructureDefinition/JP_Bundle_{short}")] },
        "type": "document",
        "identifier": { "system": "http://jpfhir.jp/fhir/clins/bundle-identifier", "value": format!("{}^{}^{bundle_id}", f.institution, when.format("%Y")) },
        "language": "ja",
        "timestamp": format!("{}T12:00:00+09:00", date(when)),
        "entry": entries
    })
}
