//! Code systems (vocabularies) used by Japanese sources, with their FHIR system URIs.

use std::fmt;
use std::str::FromStr;

use crate::{CdmError, Result};

/// A code system. `short()` is what `*_source_vocabulary` columns store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vocabulary {
    /// ICD-10 (2013), as the MHLW publishes it.
    Icd10,
    /// MEDIS 標準病名マスター, disease key number (病名管理番号).
    MedisDisease,
    /// MEDIS 標準病名マスター, exchange code (病名交換用コード).
    MedisDiseaseExchange,
    /// レセ電 傷病名コード (7 digits, master B).
    ReceiptDisease,
    /// レセ電 修飾語コード (4 digits, master Z).
    ReceiptModifier,
    /// レセ電 診療行為コード (9 digits, master S).
    ReceiptProcedure,
    /// レセ電 医薬品コード (9 digits, master Y).
    ReceiptDrug,
    /// レセ電 特定器材コード (9 digits, master T).
    ReceiptDevice,
    /// YJ code (個別医薬品コード, 12 characters).
    Yj,
    /// HOT9 (MEDIS 医薬品 HOT コード, 9 digits).
    Hot9,
    /// HOT13 (13 digits), used for vaccines.
    Hot13,
    /// JLAC10 (17 characters).
    Jlac10,
    /// JLAC11.
    Jlac11,
    /// LOINC.
    Loinc,
    /// SNOMED CT (Synthea data).
    Snomed,
    /// RxNorm (Synthea data).
    RxNorm,
    /// CVX vaccine codes (Synthea data).
    Cvx,
    /// 介護給付 サービスコード (service type 2 + item 4).
    CareService,
    /// A system the loader does not know; the URI is kept out of the store.
    Other,
}

const ALL: &[(Vocabulary, &str, &str)] = &[
    (Vocabulary::Icd10, "ICD10", "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full"),
    (Vocabulary::MedisDisease, "MEDIS", "http://medis.or.jp/CodeSystem/master-disease-keyNumber"),
    (Vocabulary::MedisDiseaseExchange, "MEDIS_EXCHANGE", "http://medis.or.jp/CodeSystem/master-disease-exchangeCode"),
    (Vocabulary::ReceiptDisease, "RECEIPT_DISEASE", "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterB-disease"),
    (Vocabulary::ReceiptModifier, "RECEIPT_MODIFIER", "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterZ-modifier"),
    (Vocabulary::ReceiptProcedure, "RECEIPT_PROCEDURE", "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterS-procedure"),
    (Vocabulary::ReceiptDrug, "RECEIPT_DRUG", "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterY-drug"),
    (Vocabulary::ReceiptDevice, "RECEIPT_DEVICE", "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/masterT-device"),
    (Vocabulary::Yj, "YJ", "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code"),
    (Vocabulary::Hot9, "HOT9", "http://medis.or.jp/CodeSystem/master-HOT9"),
    (Vocabulary::Hot13, "HOT13", "http://medis.or.jp/CodeSystem/master-HOT13"),
    (Vocabulary::Jlac10, "JLAC10", "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"),
    (Vocabulary::Jlac11, "JLAC11", "http://medis.or.jp/CodeSystem/master-JLAC11"),
    (Vocabulary::Loinc, "LOINC", "http://loinc.org"),
    (Vocabulary::Snomed, "SNOMED", "http://snomed.info/sct"),
    (Vocabulary::RxNorm, "RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"),
    (Vocabulary::Cvx, "CVX", "http://hl7.org/fhir/sid/cvx"),
    (Vocabulary::CareService, "CARE_SERVICE", "urn:niji:care-service-code"),
    (Vocabulary::Other, "OTHER", ""),
];

impl Vocabulary {
    /// The short name stored in `*_source_vocabulary` columns.
    pub fn short(self) -> &'static str {
        ALL.iter().find(|(v, _, _)| *v == self).map_or("OTHER", |(_, s, _)| s)
    }

    /// The FHIR system URI (empty for [`Vocabulary::Other`]).
    pub fn uri(self) -> &'static str {
        ALL.iter().find(|(v, _, _)| *v == self).map_or("", |(_, _, u)| u)
    }

    /// The vocabulary of a FHIR `Coding.system`. Unknown systems map to [`Vocabulary::Other`].
    /// Trailing slashes and `|version` suffixes are ignored; JLAC10/JLAC11 variants
    /// (`master-JLAC10-15digits` etc.) are recognised by prefix.
    pub fn from_system(system: &str) -> Vocabulary {
        let s = system.split('|').next().unwrap_or(system).trim_end_matches('/');
        if let Some((v, _, _)) = ALL.iter().find(|(_, _, u)| !u.is_empty() && *u == s) {
            return *v;
        }
        if s.starts_with("http://medis.or.jp/CodeSystem/master-JLAC10") {
            Vocabulary::Jlac10
        } else if s.starts_with("http://medis.or.jp/CodeSystem/master-JLAC11") {
            Vocabulary::Jlac11
        } else if s.starts_with("http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10") {
            Vocabulary::Icd10
        } else if s == "urn:oid:1.2.392.200119.4.101.6" {
            Vocabulary::MedisDiseaseExchange
        } else {
            Vocabulary::Other
        }
    }
}

impl fmt::Display for Vocabulary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

impl FromStr for Vocabulary {
    type Err = CdmError;
    fn from_str(s: &str) -> Result<Self> {
        ALL.iter()
            .find(|(_, short, _)| *short == s)
            .map(|(v, _, _)| *v)
            .ok_or_else(|| CdmError::UnknownVocabulary(s.to_owned()))
    }
}
