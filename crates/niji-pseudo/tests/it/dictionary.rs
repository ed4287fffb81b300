//! Threat T13: a dictionary attack on pseudonyms. An attacker who knows the identifier format,
//! the domain tag and the identifier space (10^6 tuples) but not the key builds a plain
//! SHA-256 dictionary; keyed pseudonyms are not in it, plain hashes are.

use std::collections::HashSet;

use chrono::NaiveDate;
use niji_cdm::Sex;
use niji_pseudo::PseudonymKey;
use niji_pseudo::linkage::{Identifiers, link};
use sha2::{Digest, Sha256};

const BANGO: u32 = 1000;
const DAYS: u32 = 1000;

/// The ID1 message exactly as the keyed MAC sees it: domain tag, then 0x1F-separated parts.
fn message(bango: u32, birth: &str) -> Vec<u8> {
    let mut m = b"niji/person/id1".to_vec();
    for p in ["06130000", "10", &bango.to_string(), birth, "M"] {
        m.push(0x1f);
        m.extend_from_slice(p.as_bytes());
    }
    m
}

fn plain(bango: u32, birth: &str) -> [u8; 16] {
    let d = Sha256::digest(message(bango, birth));
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

#[test]
fn keyed_pseudonyms_are_not_in_a_plain_sha256_dictionary_of_1e6_identifiers() {
    let base = NaiveDate::from_ymd_opt(1950, 1, 1).unwrap();
    let births: Vec<String> =
        (0..DAYS).map(|d| (base + chrono::Duration::days(i64::from(d))).format("%Y%m%d").to_string()).collect();
    let mut dictionary: HashSet<[u8; 16]> = HashSet::with_capacity((BANGO * DAYS) as usize);
    for b in 0..BANGO {
        for birth in &births {
            dictionary.insert(plain(b, birth));
        }
    }
    assert_eq!(dictionary.len(), (BANGO * DAYS) as usize, "the space has 10^6 distinct tuples");

    let key = PseudonymKey::from_bytes(b"a secret pipeline key of 32+ bytes!!").unwrap();
    let (mut keyed_found, mut plain_found, mut tried) = (0, 0, 0);
    // Every 97th tuple of the space: ~10^4 persons the attacker wants to find.
    for i in (0..BANGO * DAYS).step_by(97) {
        let (b, d) = (i / DAYS, i % DAYS);
        let ids = Identifiers {
            insurer_number: Some("06130000"),
            kigo: Some("10"),
            bango: Some(&b.to_string()),
            birth_date: Some(base + chrono::Duration::days(i64::from(d))),
            sex: Some(Sex::Male),
            ..Default::default()
        };
        let l = link(&key, &ids).unwrap();
        let keyed: [u8; 16] = hex::decode(l.id1.as_deref().unwrap()).unwrap().try_into().unwrap();
        keyed_found += usize::from(dictionary.contains(&keyed));
        plain_found += usize::from(dictionary.contains(&plain(b, &births[d as usize])));
        tried += 1;
    }
    assert!(tried > 10_000);
    assert_eq!(plain_found, tried, "the dictionary works: every plain hash is found");
    assert_eq!(keyed_found, 0, "no keyed pseudonym is found without the key");
}
