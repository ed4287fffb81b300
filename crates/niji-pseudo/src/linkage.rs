//! Linkage keys in the NDB style and the rule that turns them into `person_id`.
//!
//! - **ID1** = HMAC(insurer number, 記号, 番号, birth date, sex), after normalization. The
//!   branch number (枝番) is left out: sources often omit it, and within one card family it
//!   only separates dependants who already differ by birth date or sex.
//! - **ID2** = HMAC(kana name, birth date, sex).
//!
//! Rule for `person_id`: ID1 when the record can form it, else ID2, else a source-system
//! identifier (e.g. a FHIR Patient id without Japanese insurance data). [`PersonLink`] keeps
//! both ID1 and ID2 so that a resolver over many records can unify persons seen with ID2 only.

use chrono::NaiveDate;
use niji_cdm::Sex;

use crate::key::{Domain, PseudonymKey};
use crate::normalize;
use crate::{PseudoError, Result};

/// The direct identifiers of one source record, as found (not yet normalized).
#[derive(Debug, Clone, Default)]
pub struct Identifiers<'a> {
    /// 保険者番号.
    pub insurer_number: Option<&'a str>,
    /// 記号.
    pub kigo: Option<&'a str>,
    /// 番号.
    pub bango: Option<&'a str>,
    /// 枝番.
    pub branch: Option<&'a str>,
    /// Name in kana.
    pub kana_name: Option<&'a str>,
    /// Exact birth date.
    pub birth_date: Option<NaiveDate>,
    /// Sex.
    pub sex: Option<Sex>,
    /// (system, value) of a source-system identifier, the fallback key.
    pub source_id: Option<(&'a str, &'a str)>,
}

/// Which key decided `person_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkageBasis {
    /// ID1 only could be formed.
    Id1,
    /// ID2 only could be formed.
    Id2,
    /// Both were formed; person_id is ID1.
    Id1AndId2,
    /// Neither: a source-system identifier.
    SourceId,
}

impl LinkageBasis {
    /// The value stored in `person.linkage_basis`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkageBasis::Id1 => "id1",
            LinkageBasis::Id2 => "id2",
            LinkageBasis::Id1AndId2 => "id1+id2",
            LinkageBasis::SourceId => "source_id",
        }
    }
}

/// The result of linking one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonLink {
    /// The pseudonym that becomes `person_id`.
    pub person_id: String,
    /// Which key decided it.
    pub basis: LinkageBasis,
    /// ID1 pseudonym when formed.
    pub id1: Option<String>,
    /// ID2 pseudonym when formed.
    pub id2: Option<String>,
}

fn id1(key: &PseudonymKey, ids: &Identifiers<'_>, birth: &str, sex: &str) -> Result<Option<String>> {
    let (Some(ins), Some(kigo), Some(bango)) = (ids.insurer_number, ids.kigo, ids.bango) else {
        return Ok(None);
    };
    let ins = normalize::insurer_number(ins)?;
    let kigo = normalize::card_symbol("kigo", kigo)?;
    let bango = normalize::card_symbol("bango", bango)?;
    Ok(Some(key.pseudonym(Domain::PersonId1, &[&ins, &kigo, &bango, birth, sex])))
}

/// Link one record: validate and normalize its identifiers, form ID1 and ID2, apply the rule.
///
/// A malformed field is an error naming the field; it is never hashed into a fake person.
pub fn link(key: &PseudonymKey, ids: &Identifiers<'_>) -> Result<PersonLink> {
    let demo = match (ids.birth_date, ids.sex) {
        (Some(b), Some(s)) => Some((b.format("%Y%m%d").to_string(), s.code())),
        _ => None,
    };
    let (id1, id2) = match &demo {
        Some((birth, sex)) => {
            let id1 = id1(key, ids, birth, sex)?;
            let id2 = match ids.kana_name.map(normalize::kana) {
                Some(k) if !k.is_empty() => Some(key.pseudonym(Domain::PersonId2, &[&k, birth, sex])),
                _ => None,
            };
            (id1, id2)
        }
        None => (None, None),
    };
    let (person_id, basis) = match (&id1, &id2) {
        (Some(a), Some(_)) => (a.clone(), LinkageBasis::Id1AndId2),
        (Some(a), None) => (a.clone(), LinkageBasis::Id1),
        (None, Some(b)) => (b.clone(), LinkageBasis::Id2),
        (None, None) => match ids.source_id {
            Some((system, value)) if !value.trim().is_empty() => {
                (key.pseudonym(Domain::PersonSource, &[system, value.trim()]), LinkageBasis::SourceId)
            }
            _ => return Err(PseudoError::NoLinkageKey),
        },
    };
    Ok(PersonLink { person_id, basis, id1, id2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PseudonymKey {
        PseudonymKey::from_bytes(&[7; 32]).expect("key")
    }

    fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(y, m, d)
    }

    #[test]
    fn equivalent_spellings_link() {
        let a = Identifiers {
            insurer_number: Some("138014"),
            kigo: Some("あいう"),
            bango: Some("１８７"),
            branch: Some("05"),
            kana_name: Some("ヤマダ タロウ"),
            birth_date: date(1950, 3, 1),
            sex: Some(Sex::Male),
            source_id: None,
        };
        let b = Identifiers {
            insurer_number: Some("００１３８０１４"),
            kigo: Some("ｱｲｳ"),
            bango: Some("187"),
            branch: None,
            kana_name: Some("やまだたろう"),
            ..a.clone()
        };
        let (la, lb) = (link(&key(), &a).expect("a"), link(&key(), &b).expect("b"));
        assert_eq!(la, lb);
        assert_eq!(la.basis, LinkageBasis::Id1AndId2);
    }

    #[test]
    fn fallbacks_and_errors() {
        let only_kana = Identifiers {
            kana_name: Some("ヤマダ"),
            birth_date: date(1950, 3, 1),
            sex: Some(Sex::Female),
            ..Default::default()
        };
        assert_eq!(link(&key(), &only_kana).expect("id2").basis, LinkageBasis::Id2);
        let src = Identifiers { source_id: Some(("urn:x", "p1")), ..Default::default() };
        assert_eq!(link(&key(), &src).expect("source").basis, LinkageBasis::SourceId);
        assert_eq!(link(&key(), &Identifiers::default()), Err(PseudoError::NoLinkageKey));
        let bad = Identifiers { insurer_number: Some("12x"), kigo: Some("1"), bango: Some("2"), ..only_kana };
        assert!(matches!(link(&key(), &bad), Err(PseudoError::MalformedIdentifier { field: "insurer_number", .. })));
    }
}
