//! The CDM table definitions. One constant per table; [`TABLES`] lists them all.

use crate::ColumnClass::{Category, Code, Date, Measure, PersonId, Provenance, Pseudonym, QuasiIdentifier, Sensitive};
use crate::ColumnType::{Boolean, Date32, Float64, Int32, Int64, Utf8};
use crate::{ColumnClass, ColumnDef, ColumnType, TableDef};

const fn c(name: &'static str, ty: ColumnType, nullable: bool, class: ColumnClass, doc: &'static str) -> ColumnDef {
    ColumnDef { name, ty, nullable, class, doc }
}

const PERSON: ColumnDef = c(
    "person_id",
    Utf8,
    false,
    PersonId,
    "Keyed pseudonym of the person (HMAC-SHA-256, 128 bits, hex): the privacy unit.",
);
const SOURCE: ColumnDef = c(
    "source_system",
    Utf8,
    false,
    Provenance,
    "Source kind the row came from: fhir, receipt, care, consent or synth.",
);
const VISIT: ColumnDef =
    c("visit_occurrence_id", Utf8, true, Pseudonym, "Keyed pseudonym of the visit or receipt this row belongs to.");

/// person: one row per person and source record that describes them.
pub const PERSON_TABLE: TableDef = TableDef {
    name: "person",
    doc: "One row per person: generalized demographics only.",
    columns: &[
        PERSON,
        c("sex", Utf8, false, QuasiIdentifier, "Administrative sex: M, F or U."),
        c("year_of_birth", Int32, true, QuasiIdentifier, "Birth year (the exact birth date is never stored)."),
        c(
            "month_of_birth",
            Int32,
            true,
            QuasiIdentifier,
            "Birth month 1-12 where the generalization profile keeps it.",
        ),
        c("prefecture_code", Utf8, true, QuasiIdentifier, "JIS X 0401 prefecture code (two digits) of residence."),
        c(
            "secondary_medical_area_code",
            Utf8,
            true,
            QuasiIdentifier,
            "二次医療圏 code of residence where the postcode maps to one.",
        ),
        c(
            "linkage_basis",
            Utf8,
            false,
            Provenance,
            "Which linkage key produced person_id: id1, id2, id1+id2 or source_id.",
        ),
        SOURCE,
    ],
};

/// observation_period: spans in which a person's records are expected to be complete.
pub const OBSERVATION_PERIOD: TableDef = TableDef {
    name: "observation_period",
    doc: "One row per span during which the person is observed by a source.",
    columns: &[
        PERSON,
        c("observation_period_start_date", Date32, false, Date, "First day observed."),
        c("observation_period_end_date", Date32, false, Date, "Last day observed."),
        c("period_type", Utf8, false, Category, "What defines the span: ehr, claims or care."),
        SOURCE,
    ],
};

/// visit_occurrence: encounters and receipts.
pub const VISIT_OCCURRENCE: TableDef = TableDef {
    name: "visit_occurrence",
    doc: "One row per encounter (FHIR Encounter) or per receipt month at a facility.",
    columns: &[
        c("visit_occurrence_id", Utf8, false, Pseudonym, "Keyed pseudonym of the visit."),
        PERSON,
        c("visit_concept_id", Int32, false, Code, "Standard concept, 0 when no vocabulary is loaded."),
        c(
            "visit_source_value",
            Utf8,
            true,
            Category,
            "Visit class as in the source: AMB, IMP, EMER, HH, outpatient, inpatient.",
        ),
        c("visit_start_date", Date32, true, Date, "First day of the visit."),
        c("visit_end_date", Date32, true, Date, "Last day of the visit."),
        c("care_site_id", Utf8, true, Pseudonym, "Keyed pseudonym of the facility."),
        SOURCE,
    ],
};

/// condition_occurrence: diagnoses.
pub const CONDITION_OCCURRENCE: TableDef = TableDef {
    name: "condition_occurrence",
    doc: "One row per recorded diagnosis (FHIR Condition, receipt SY line).",
    columns: &[
        c("condition_occurrence_id", Utf8, false, Pseudonym, "Keyed pseudonym of the diagnosis record."),
        PERSON,
        c("condition_concept_id", Int32, false, Code, "Standard concept, 0 when no vocabulary is loaded."),
        c(
            "condition_source_value",
            Utf8,
            true,
            Code,
            "Source code (ICD-10, MEDIS 病名交換用コード, レセ電 傷病名コード).",
        ),
        c(
            "condition_source_vocabulary",
            Utf8,
            true,
            Code,
            "Vocabulary of condition_source_value (see niji_cdm::Vocabulary).",
        ),
        c("icd10_code", Utf8, true, Code, "ICD-10 code where the source carries one."),
        c("condition_start_date", Date32, true, Date, "Onset or start date."),
        c("condition_end_date", Date32, true, Date, "Abatement or outcome date."),
        c(
            "condition_status",
            Utf8,
            true,
            Category,
            "Clinical status or receipt outcome (転帰): active, resolved, cured, died, stopped.",
        ),
        c("is_primary", Boolean, true, Category, "Primary diagnosis flag (receipt SY 主傷病)."),
        c("modifier_codes", Utf8, true, Code, "Receipt modifier codes (修飾語), space separated."),
        VISIT,
        SOURCE,
    ],
};

/// drug_exposure: prescriptions and dispensed or administered drugs.
pub const DRUG_EXPOSURE: TableDef = TableDef {
    name: "drug_exposure",
    doc: "One row per prescribed, dispensed or billed drug (MedicationRequest, receipt IY line).",
    columns: &[
        c("drug_exposure_id", Utf8, false, Pseudonym, "Keyed pseudonym of the drug record."),
        PERSON,
        c("drug_concept_id", Int32, false, Code, "Standard concept, 0 when no vocabulary is loaded."),
        c("drug_source_value", Utf8, true, Code, "Source code (YJ, HOT9, レセ電 医薬品コード)."),
        c("drug_source_vocabulary", Utf8, true, Code, "Vocabulary of drug_source_value."),
        c("drug_exposure_start_date", Date32, true, Date, "First day of exposure."),
        c("drug_exposure_end_date", Date32, true, Date, "Last day of exposure where known."),
        c("quantity", Float64, true, Measure, "Quantity per the source (units or doses)."),
        c("days_supply", Int32, true, Measure, "Days of supply."),
        VISIT,
        SOURCE,
    ],
};

/// measurement: laboratory results and vital signs.
pub const MEASUREMENT: TableDef = TableDef {
    name: "measurement",
    doc: "One row per laboratory or infection test result.",
    columns: &[
        c("measurement_id", Utf8, false, Pseudonym, "Keyed pseudonym of the result."),
        PERSON,
        c("measurement_concept_id", Int32, false, Code, "Standard concept, 0 when no vocabulary is loaded."),
        c("measurement_source_value", Utf8, true, Code, "Source code (JLAC10, JLAC11, LOINC)."),
        c("measurement_source_vocabulary", Utf8, true, Code, "Vocabulary of measurement_source_value."),
        c("measurement_date", Date32, true, Date, "Date the specimen was taken or the result issued."),
        c("value_as_number", Float64, true, Measure, "Numeric result."),
        c("value_source_value", Utf8, true, Sensitive, "Coded result (e.g. positive, negative); never free text."),
        c("unit_source_value", Utf8, true, Category, "UCUM unit."),
        c("range_low", Float64, true, Measure, "Reference range low."),
        c("range_high", Float64, true, Measure, "Reference range high."),
        c("is_infection_test", Boolean, false, Category, "Infection test (感染症) rather than general lab (検査)."),
        VISIT,
        SOURCE,
    ],
};

/// procedure_occurrence: procedures and billed medical acts.
pub const PROCEDURE_OCCURRENCE: TableDef = TableDef {
    name: "procedure_occurrence",
    doc: "One row per procedure on one day (receipt SI line expanded by days of month).",
    columns: &[
        c("procedure_occurrence_id", Utf8, false, Pseudonym, "Keyed pseudonym of the procedure record."),
        PERSON,
        c("procedure_concept_id", Int32, false, Code, "Standard concept, 0 when no vocabulary is loaded."),
        c("procedure_source_value", Utf8, true, Code, "Source code (レセ電 診療行為コード, 9 digits)."),
        c("procedure_source_vocabulary", Utf8, true, Code, "Vocabulary of procedure_source_value."),
        c("procedure_date", Date32, true, Date, "Day performed."),
        c("care_category", Utf8, true, Category, "Receipt 診療識別 (care category, two digits)."),
        c("quantity", Float64, true, Measure, "Quantity per the source."),
        c("points", Int64, true, Measure, "Fee points (点数) per performance."),
        c("count", Int32, true, Measure, "Times performed on this day."),
        VISIT,
        SOURCE,
    ],
};

/// observation: facts that fit no other table (allergies, contraindications).
pub const OBSERVATION: TableDef = TableDef {
    name: "observation",
    doc: "One row per clinical fact without a better table: allergies and drug contraindications.",
    columns: &[
        c("observation_id", Utf8, false, Pseudonym, "Keyed pseudonym of the fact."),
        PERSON,
        c("observation_concept_id", Int32, false, Code, "Standard concept, 0 when no vocabulary is loaded."),
        c("observation_source_value", Utf8, true, Code, "Source code of the substance or fact."),
        c("observation_source_vocabulary", Utf8, true, Code, "Vocabulary of observation_source_value."),
        c("observation_date", Date32, true, Date, "Recorded or onset date."),
        c(
            "observation_type",
            Utf8,
            false,
            Category,
            "allergy_medication (drug contraindication), allergy_food, allergy_environment, allergy_other.",
        ),
        c("value_source_value", Utf8, true, Sensitive, "Coded criticality or severity; never free text."),
        SOURCE,
    ],
};

/// death.
pub const DEATH: TableDef = TableDef {
    name: "death",
    doc: "One row per recorded death.",
    columns: &[
        PERSON,
        c("death_date", Date32, true, Date, "Date of death."),
        c("cause_source_value", Utf8, true, Code, "Coded cause of death where given."),
        SOURCE,
    ],
};

/// claim: receipt headers (medical, pharmacy) and long-term-care benefit statements.
pub const CLAIM: TableDef = TableDef {
    name: "claim",
    doc: "One row per receipt (レセプト) or care benefit statement.",
    columns: &[
        c("claim_id", Utf8, false, Pseudonym, "Keyed pseudonym of the receipt."),
        PERSON,
        c("facility_id", Utf8, true, Pseudonym, "Keyed pseudonym of the facility or care provider."),
        c("claim_type", Utf8, false, Category, "medical, pharmacy, dpc or care."),
        c("service_month", Date32, false, Date, "First day of the service month (診療年月)."),
        c("billing_month", Date32, true, Date, "First day of the billing month (請求年月)."),
        c("receipt_type", Utf8, true, Code, "Receipt type code (レセプト種別, 4 digits) or care form id."),
        c("benefit_rate", Int32, true, Category, "Benefit rate in percent (給付割合)."),
        c("service_days", Int32, true, Measure, "Days of service (実日数)."),
        c("total_points", Int64, true, Measure, "Total points (合計点数) or care units (単位数)."),
        c(
            "insurer_kind",
            Utf8,
            true,
            Category,
            "Kind of insurer derived from the insurer number: nhi, employee, late_elderly, public_only, care.",
        ),
        c(
            "public_expense_codes",
            Utf8,
            true,
            Code,
            "Public-expense programme numbers (法別番号, 2 digits) from KO records, space separated, in order.",
        ),
        c("prefecture_code", Utf8, true, QuasiIdentifier, "Prefecture of the facility (two digits)."),
        SOURCE,
    ],
};

/// immunization.
pub const IMMUNIZATION: TableDef = TableDef {
    name: "immunization",
    doc: "One row per vaccination.",
    columns: &[
        c("immunization_id", Utf8, false, Pseudonym, "Keyed pseudonym of the vaccination record."),
        PERSON,
        c("vaccine_source_value", Utf8, true, Code, "Vaccine code (HOT13, YJ, CVX)."),
        c("vaccine_source_vocabulary", Utf8, true, Code, "Vocabulary of vaccine_source_value."),
        c("immunization_date", Date32, true, Date, "Date administered."),
        c("dose_number", Int32, true, Measure, "Dose number in the series."),
        c("target_disease_source_value", Utf8, true, Code, "Target disease code where given."),
        c("status", Utf8, true, Category, "completed, not-done or entered-in-error."),
        SOURCE,
    ],
};

/// care_certification: 要介護認定.
pub const CARE_CERTIFICATION: TableDef = TableDef {
    name: "care_certification",
    doc: "One row per long-term-care level certification (要介護認定).",
    columns: &[
        c("care_certification_id", Utf8, false, Pseudonym, "Keyed pseudonym of the certification."),
        PERSON,
        c("care_level", Utf8, false, Sensitive, "Care level: 01 not applicable, 12/13 要支援1/2, 21-25 要介護1-5."),
        c("application_date", Date32, true, Date, "Application date."),
        c("decision_date", Date32, true, Date, "Decision date."),
        c("valid_from", Date32, true, Date, "First day of validity."),
        c("valid_to", Date32, true, Date, "Last day of validity."),
        c("insurer_id", Utf8, true, Pseudonym, "Keyed pseudonym of the care insurer (保険者)."),
        SOURCE,
    ],
};

/// care_service: 介護給付 service lines.
pub const CARE_SERVICE: TableDef = TableDef {
    name: "care_service",
    doc: "One row per service line of a care benefit statement (明細 record 02).",
    columns: &[
        c("care_service_id", Utf8, false, Pseudonym, "Keyed pseudonym of the service line."),
        PERSON,
        c("claim_id", Utf8, true, Pseudonym, "The statement this line belongs to (claim.claim_id)."),
        c("provider_id", Utf8, true, Pseudonym, "Keyed pseudonym of the care provider (事業所)."),
        c("service_month", Date32, false, Date, "First day of the service month."),
        c("service_type_code", Utf8, true, Code, "サービス種類コード (2 digits)."),
        c("service_item_code", Utf8, true, Code, "サービス項目コード (4 digits)."),
        c("units", Int64, true, Measure, "Units (単位数) of the line."),
        c("days", Int32, true, Measure, "Days or times."),
        c("care_level", Utf8, true, Sensitive, "Care level in force for the statement."),
        SOURCE,
    ],
};

/// document: clinical documents (type and dates only).
pub const DOCUMENT: TableDef = TableDef {
    name: "document",
    doc: "One row per clinical document (referral, discharge summary, checkup report): type and dates, never text.",
    columns: &[
        c("document_id", Utf8, false, Pseudonym, "Keyed pseudonym of the document."),
        PERSON,
        c("document_type_code", Utf8, false, Code, "Document type code: 57133-1, 18842-5 or 53576-5."),
        c("document_type", Utf8, false, Category, "referral, discharge_summary or checkup_report."),
        c("document_date", Date32, true, Date, "Date the document was written."),
        c("period_start_date", Date32, true, Date, "Start of the period the document covers (e.g. admission)."),
        c("period_end_date", Date32, true, Date, "End of the period the document covers (e.g. discharge)."),
        c("author_facility_id", Utf8, true, Pseudonym, "Keyed pseudonym of the authoring facility."),
        SOURCE,
    ],
};

/// Every CDM table, in a stable order.
pub const TABLES: &[TableDef] = &[
    PERSON_TABLE,
    OBSERVATION_PERIOD,
    VISIT_OCCURRENCE,
    CONDITION_OCCURRENCE,
    DRUG_EXPOSURE,
    MEASUREMENT,
    PROCEDURE_OCCURRENCE,
    OBSERVATION,
    DEATH,
    CLAIM,
    IMMUNIZATION,
    CARE_CERTIFICATION,
    CARE_SERVICE,
    DOCUMENT,
];
