use std::collections::HashSet;

use super::*;

#[test]
fn every_table_has_person_id_as_privacy_unit() {
    for t in TABLES {
        let c = t.column(PERSON_ID).unwrap_or_else(|| panic!("{} lacks person_id", t.name));
        assert_eq!(c.class, ColumnClass::PersonId, "{}", t.name);
        assert!(!c.nullable, "{}", t.name);
        assert_eq!(t.columns_of(ColumnClass::PersonId).count(), 1, "{}", t.name);
    }
}

#[test]
fn names_are_unique_and_snake_case() {
    let mut tables = HashSet::new();
    for t in TABLES {
        assert!(tables.insert(t.name), "duplicate table {}", t.name);
        let mut cols = HashSet::new();
        for c in t.columns {
            assert!(cols.insert(c.name), "duplicate column {}.{}", t.name, c.name);
            assert!(
                c.name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{}.{}",
                t.name,
                c.name
            );
            assert!(!c.doc.is_empty(), "{}.{} undocumented", t.name, c.name);
        }
    }
    assert_eq!(TABLES.len(), 14);
}

#[test]
fn no_column_can_hold_a_direct_identifier_or_free_text() {
    // Names that would betray a direct identifier or free text in the analytic store.
    let forbidden = [
        "name",
        "kana",
        "address",
        "phone",
        "birth_date",
        "birthdate",
        "insurer_number",
        "kigo",
        "bango",
        "chart",
        "note",
        "text",
        "comment",
        "postcode",
        "postal",
    ];
    for t in TABLES {
        for c in t.columns {
            for f in forbidden {
                assert!(!c.name.contains(f), "{}.{} looks like a direct identifier or free text ({f})", t.name, c.name);
            }
        }
    }
}

#[test]
fn schema_carries_class_and_doc_metadata() {
    let t = table("measurement").expect("measurement exists");
    let schema = t.schema();
    assert_eq!(schema.metadata().get(TABLE_KEY).map(String::as_str), Some("measurement"));
    let f = schema.field_with_name("value_as_number").expect("column");
    assert_eq!(field_class(f), Some(ColumnClass::Measure));
    assert_eq!(f.data_type(), &DataType::Float64);
    assert!(f.metadata().get(DOC_KEY).is_some_and(|d| !d.is_empty()));
    assert_eq!(schema.fields().len(), t.columns.len());
}

#[test]
fn unknown_table_is_an_error() {
    assert_eq!(table("patients"), Err(CdmError::UnknownTable("patients".into())));
}

#[test]
fn class_names_round_trip() {
    for c in ColumnClass::ALL {
        assert_eq!(c.as_str().parse::<ColumnClass>(), Ok(c));
    }
    assert!("secret".parse::<ColumnClass>().is_err());
}

#[test]
fn vocabularies_round_trip_and_recognise_fhir_systems() {
    assert_eq!(Vocabulary::from_system("http://medis.or.jp/CodeSystem/master-JLAC10-17digits"), Vocabulary::Jlac10);
    assert_eq!(Vocabulary::from_system("http://medis.or.jp/CodeSystem/master-JLAC10-15digits"), Vocabulary::Jlac10);
    assert_eq!(
        Vocabulary::from_system("http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full"),
        Vocabulary::Icd10
    );
    assert_eq!(Vocabulary::from_system("http://example.org/x"), Vocabulary::Other);
    assert_eq!("YJ".parse::<Vocabulary>(), Ok(Vocabulary::Yj));
    assert!("XX".parse::<Vocabulary>().is_err());
}

#[test]
fn sex_codes_from_every_source() {
    assert_eq!(Sex::parse("1"), Ok(Sex::Male));
    assert_eq!(Sex::parse("２"), Ok(Sex::Female));
    assert_eq!(Sex::parse("female"), Ok(Sex::Female));
    assert_eq!(Sex::parse("unknown"), Ok(Sex::Unknown));
    assert!(Sex::parse("X").is_err());
    assert_eq!(Sex::Female.code(), "F");
}
