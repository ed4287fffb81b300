//! Property tests: normalization is idempotent; equivalent spellings give the same
//! pseudonym; different keys give unlinkable pseudonyms; pair counting matches brute force.

use std::collections::HashSet;

use chrono::NaiveDate;
use niji_cdm::Sex;
use niji_pseudo::PseudonymKey;
use niji_pseudo::linkage::{Identifiers, evaluate, link};
use niji_pseudo::normalize;
use proptest::prelude::*;

/// Characters that exercise the folding: kana of every width and script, voiced marks in
/// spacing and combining forms, separators, digits and letters of both widths.
const ALPHABET: &[char] = &[
    'あ', 'が', 'ぱ', 'ょ', 'っ', 'ゐ', 'ア', 'ガ', 'パ', 'ョ', 'ッ', 'ヰ', 'ヴ', 'ヶ', 'ｱ', 'ｶ', 'ﾞ', 'ﾟ', 'ｮ', 'ｯ',
    'ｰ', 'ー', '゛', '゜', '\u{3099}', '\u{309A}', '・', '･', ' ', '　', '-', '1', '１', 'a', 'Ａ', '㌀', '山',
];

fn messy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET), 0..12).prop_map(|v| v.into_iter().collect())
}

/// Basic katakana with their hiragana and half-width spellings.
const KANA: &[(&str, &str, &str)] = &[
    ("ア", "あ", "ｱ"),
    ("イ", "い", "ｲ"),
    ("ウ", "う", "ｳ"),
    ("カ", "か", "ｶ"),
    ("キ", "き", "ｷ"),
    ("コ", "こ", "ｺ"),
    ("ガ", "が", "ｶﾞ"),
    ("サ", "さ", "ｻ"),
    ("ジ", "じ", "ｼﾞ"),
    ("タ", "た", "ﾀ"),
    ("ダ", "だ", "ﾀﾞ"),
    ("ナ", "な", "ﾅ"),
    ("ハ", "は", "ﾊ"),
    ("パ", "ぱ", "ﾊﾟ"),
    ("マ", "ま", "ﾏ"),
    ("ヤ", "や", "ﾔ"),
    ("ヨ", "ょ", "ｮ"),
    ("ツ", "っ", "ｯ"),
    ("ラ", "ら", "ﾗ"),
    ("ロ", "ろ", "ﾛ"),
    ("ワ", "わ", "ﾜ"),
    ("ン", "ん", "ﾝ"),
];

fn full_width_digits(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_digit() { char::from_u32(c as u32 - 0x30 + 0xFF10).unwrap() } else { c }).collect()
}

#[derive(Debug, Clone)]
struct Person {
    insurer: String,
    kigo: String,
    bango: String,
    kana: Vec<usize>,
    birth: NaiveDate,
    sex: Sex,
}

fn person() -> impl Strategy<Value = Person> {
    (
        prop_oneof!["[0-9]{6}", "[0-9]{8}"],
        "[0-9]{1,8}",
        "[0-9]{1,10}",
        prop::collection::vec(0..KANA.len(), 2..10),
        0i64..40_000,
        prop::bool::ANY,
    )
        .prop_map(|(insurer, kigo, bango, kana, days, male)| Person {
            insurer,
            kigo,
            bango,
            kana,
            birth: NaiveDate::from_ymd_opt(1910, 1, 1).unwrap() + chrono::Duration::days(days),
            sex: if male { Sex::Male } else { Sex::Female },
        })
}

/// Per-character spelling choices: 0 katakana, 1 hiragana, 2 half-width; plus separators.
fn spelling(p: &Person, styles: &[u8], seps: &[u8], wide_digits: bool, pad: bool) -> (String, String, String, String) {
    let mut name = String::new();
    for (i, &k) in p.kana.iter().enumerate() {
        let (kata, hira, half) = KANA[k];
        name.push_str(match styles[i % styles.len()] % 3 {
            0 => kata,
            1 => hira,
            _ => half,
        });
        match seps[i % seps.len()] % 5 {
            0 => name.push(' '),
            1 => name.push('・'),
            2 => name.push('ー'),
            3 => name.push('　'),
            _ => {}
        }
    }
    let insurer = if pad && p.insurer.len() == 6 { format!("00{}", p.insurer) } else { p.insurer.clone() };
    let (insurer, kigo, bango) = if wide_digits {
        (full_width_digits(&insurer), full_width_digits(&p.kigo), format!(" {} ", full_width_digits(&p.bango)))
    } else {
        (insurer, p.kigo.clone(), p.bango.clone())
    };
    (insurer, kigo, bango, name)
}

fn canonical_name(p: &Person) -> String {
    p.kana.iter().map(|&k| KANA[k].0).collect()
}

fn ids<'a>(p: &Person, insurer: &'a str, kigo: &'a str, bango: &'a str, name: &'a str) -> Identifiers<'a> {
    Identifiers {
        insurer_number: Some(insurer),
        kigo: Some(kigo),
        bango: Some(bango),
        branch: None,
        kana_name: Some(name),
        birth_date: Some(p.birth),
        sex: Some(p.sex),
        source_id: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn normalization_is_idempotent(s in messy()) {
        let k = normalize::kana(&s);
        prop_assert_eq!(normalize::kana(&k), k.clone());
        let n = normalize::nfkc_compact(&s);
        prop_assert_eq!(normalize::nfkc_compact(&n), n);
        if let Ok(c) = normalize::card_symbol("kigo", &s) {
            prop_assert_eq!(normalize::card_symbol("kigo", &c), Ok(c));
        }
        if let Ok(c) = normalize::kana_name(&s) {
            prop_assert_eq!(normalize::kana_name(&c), Ok(c));
        }
    }

    #[test]
    fn insurer_numbers_normalize_idempotently(d in "[0-9０-９]{6,8}") {
        let once = normalize::insurer_number(&d).unwrap();
        prop_assert_eq!(once.len(), 8);
        prop_assert_eq!(normalize::insurer_number(&once), Ok(once.clone()));
    }

    #[test]
    fn equivalent_spellings_give_the_same_pseudonym(
        p in person(),
        styles in prop::collection::vec(any::<u8>(), 1..6),
        seps in prop::collection::vec(any::<u8>(), 1..6),
        wide in any::<bool>(),
        pad in any::<bool>(),
    ) {
        let key = PseudonymKey::from_bytes(&[42; 32]).unwrap();
        let name = canonical_name(&p);
        let reference = link(&key, &ids(&p, &p.insurer, &p.kigo, &p.bango, &name)).unwrap();
        let (i, k, b, n) = spelling(&p, &styles, &seps, wide, pad);
        let variant = link(&key, &ids(&p, &i, &k, &b, &n)).unwrap();
        prop_assert_eq!(&variant, &reference);
        // ID2 alone agrees too (a record without insurance identifiers).
        let only_kana = Identifiers { insurer_number: None, kigo: None, bango: None, ..ids(&p, &i, &k, &b, &n) };
        prop_assert_eq!(link(&key, &only_kana).unwrap().id2, reference.id2);
    }

    #[test]
    fn different_keys_give_unlinkable_pseudonyms(
        persons in prop::collection::vec(person(), 1..40),
        ka in any::<[u8; 32]>(),
        kb in any::<[u8; 32]>(),
    ) {
        prop_assume!(ka != kb);
        let (a, b) = (PseudonymKey::from_bytes(&ka).unwrap(), PseudonymKey::from_bytes(&kb).unwrap());
        let mut under_a = HashSet::new();
        let mut under_b = HashSet::new();
        for p in &persons {
            let name = canonical_name(p);
            let i = ids(p, &p.insurer, &p.kigo, &p.bango, &name);
            let (la, lb) = (link(&a, &i).unwrap(), link(&b, &i).unwrap());
            under_a.extend([la.id1.unwrap(), la.id2.unwrap()]);
            under_b.extend([lb.id1.unwrap(), lb.id2.unwrap()]);
        }
        prop_assert!(under_a.is_disjoint(&under_b));
    }

    #[test]
    fn pair_counts_match_brute_force(labels in prop::collection::vec((0u8..6, 0u8..6), 0..60)) {
        let q = evaluate(labels.iter().copied());
        let (mut tp, mut pp, mut tt) = (0u64, 0u64, 0u64);
        for i in 0..labels.len() {
            for j in i + 1..labels.len() {
                let (same_p, same_t) = (labels[i].0 == labels[j].0, labels[i].1 == labels[j].1);
                pp += u64::from(same_p);
                tt += u64::from(same_t);
                tp += u64::from(same_p && same_t);
            }
        }
        prop_assert_eq!((q.predicted_pairs, q.true_pairs, q.true_positive_pairs), (pp, tt, tp));
    }
}
