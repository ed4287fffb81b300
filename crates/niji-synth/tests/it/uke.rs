use std::collections::BTreeMap;

use crate::common::{decode_cp932, fixtures, read_tree, tree};

/// Field count per record type in the real sample.
fn sample_counts() -> BTreeMap<String, usize> {
    let bytes = std::fs::read(fixtures().join("receipts/RECEIPTC_GAIRAI_SAMPLE.UKE")).unwrap();
    let text = decode_cp932(&bytes);
    let mut out = BTreeMap::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let prev = out.insert(fields[0].to_owned(), fields.len());
        assert!(prev.is_none_or(|n| n == fields.len()), "sample has varying counts for {}", fields[0]);
    }
    out
}

#[test]
fn receipts_follow_the_sample_layout_encoding_and_line_ends() {
    let sample = sample_counts();
    for (t, n) in niji_synth::UKE_FIELD_COUNTS {
        assert_eq!(sample.get(*t), Some(n), "field count of {t} differs from the sample");
    }
    let files: Vec<(String, Vec<u8>)> =
        read_tree(tree()).into_iter().filter(|(k, _)| k.starts_with("receipts/")).collect();
    assert!(!files.is_empty());
    let mut seen = BTreeMap::<String, usize>::new();
    let mut full_width_bango = 0;
    for (name, bytes) in &files {
        let text = decode_cp932(bytes);
        assert!(text.ends_with("\r\n"), "{name}: no final CRLF");
        assert!(!text.replace("\r\n", "").contains(['\n', '\r']), "{name}: bare CR or LF");
        let lines: Vec<&str> = text.trim_end_matches("\r\n").split("\r\n").collect();
        let stem = name.trim_start_matches("receipts/").trim_end_matches(".UKE");
        let (code, billing) = stem.split_once('_').unwrap();
        let ir: Vec<&str> = lines[0].split(',').collect();
        assert_eq!(ir[0], "IR", "{name}: first line");
        assert_eq!((ir[4], ir[7]), (code, billing), "{name}: IR facility code / billing month");
        let go: Vec<&str> = lines[lines.len() - 1].split(',').collect();
        assert_eq!(go[0], "GO", "{name}: last line");
        let receipts = lines.iter().filter(|l| l.starts_with("RE,")).count();
        assert_eq!(go[1], receipts.to_string(), "{name}: GO receipt count");
        assert_eq!(go[3], "99");
        for (i, line) in lines.iter().enumerate() {
            let fields: Vec<&str> = line.split(',').collect();
            let expected =
                sample.get(fields[0]).unwrap_or_else(|| panic!("{name}:{}: record {} not in sample", i + 1, fields[0]));
            assert_eq!(fields.len(), *expected, "{name}:{}: field count of {}", i + 1, fields[0]);
            *seen.entry(fields[0].to_owned()).or_default() += 1;
            match fields[0] {
                "RE" => {
                    assert_eq!(fields[2].len(), 4, "receipt type");
                    assert!(fields[3].len() == 6 && fields[3] < billing, "service month before billing month");
                    assert!(fields[6].len() == 8 && fields[6].bytes().all(|b| b.is_ascii_digit()), "birth date");
                    assert!(matches!(fields[5], "1" | "2"));
                    assert!(!fields[36].is_empty(), "kana name");
                }
                "HO" => {
                    assert!(matches!(fields[1].len(), 6 | 8) && fields[1].bytes().all(|b| b.is_ascii_digit()));
                    if fields[3].chars().any(|c| ('０'..='９').contains(&c)) {
                        full_width_bango += 1;
                    }
                }
                "SY" => assert_eq!(fields[1].len(), 7, "disease code"),
                "SI" | "IY" => {
                    assert_eq!(fields[3].len(), 9, "procedure/drug code");
                    let marked: u32 =
                        fields[13..].iter().filter(|d| !d.is_empty()).map(|d| d.parse::<u32>().unwrap()).sum();
                    assert_eq!(marked.to_string(), fields[6], "{name}:{}: day marks add up to the count", i + 1);
                }
                _ => {}
            }
        }
    }
    for t in ["IR", "RE", "HO", "KO", "SN", "SY", "SI", "IY", "CO", "GO"] {
        assert!(seen.get(t).copied().unwrap_or(0) > 0, "no {t} record generated");
    }
    assert!(full_width_bango > seen["HO"] / 2, "番号 should mostly be full-width as in the sample");
}
