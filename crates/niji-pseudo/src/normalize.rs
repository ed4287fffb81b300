//! Identifier normalization for linkage: the same person written differently by different
//! sources must give the same linkage key. Every folding function here is idempotent
//! (`f(f(x)) == f(x)`, checked by property tests), and every validating function rejects a
//! malformed value with the field and the reason, never the value.

use chrono::{Datelike, NaiveDate};
use niji_cdm::Sex;
use unicode_normalization::UnicodeNormalization;

use crate::{PseudoError, Result};

/// NFKC, trimmed, inner white space removed: full-width digits and letters become ASCII,
/// half-width katakana become full-width.
pub fn nfkc_compact(s: &str) -> String {
    // ASCII is NFKC-stable (no decompositions, every character a starter that composes with
    // nothing): for it the result is the text without its white space, what one pass gives
    // and the fixpoint keeps. Most identifiers (dates, numbers, postcodes) are ASCII.
    if s.is_ascii() {
        return s.chars().filter(|c| !c.is_whitespace()).collect();
    }
    // NFKC can turn a spacing mark into "space + combining mark" (゛ → U+0020 U+3099); once the
    // space is gone the mark composes with the character before it on the next pass, so the
    // function runs to its fixpoint (two passes at most in practice).
    fixpoint(s, compact_once)
}

/// A character a folding pass leaves as it is once it has produced it (see [`fixpoint`]).
fn stable_once_folded(c: char) -> bool {
    c.is_ascii() || ('\u{30A1}'..='\u{30FA}').contains(&c)
}

/// One pass of [`nfkc_compact`].
fn compact_once(t: &str) -> String {
    t.nfkc().filter(|c| !c.is_whitespace()).collect()
}

/// `f` applied until the text stops changing. `f` (NFKC, white space removed, maybe more
/// folding) must leave text of ASCII and full-size katakana (U+30A1–U+30FA) unchanged once it
/// has produced it: such text is NFKC-stable, composes with nothing and holds no white space,
/// so the check pass (a second NFKC) is skipped for it, which is most identifiers.
fn fixpoint(s: &str, f: impl Fn(&str) -> String) -> String {
    let mut cur = f(s);
    if cur.chars().all(stable_once_folded) {
        return cur;
    }
    for _ in 0..4 {
        let next = f(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// Insurer number (保険者番号): digits only, zero-padded to 8.
/// National health insurance numbers have 6 digits and are padded with two leading zeros; a
/// 7-digit number is an 8-digit one whose leading zero a spreadsheet dropped.
pub fn insurer_number(s: &str) -> Result<String> {
    let d = nfkc_compact(s);
    if d.is_empty() {
        return Err(PseudoError::MalformedIdentifier { field: "insurer_number", reason: "empty" });
    }
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PseudoError::MalformedIdentifier { field: "insurer_number", reason: "not all digits" });
    }
    if d.len() > 8 || d.len() < 6 {
        return Err(PseudoError::MalformedIdentifier { field: "insurer_number", reason: "not 6 to 8 digits" });
    }
    Ok(format!("{d:0>8}"))
}

/// 記号 or 番号 of an insurance card: NFKC (one width for digits and letters), Latin letters
/// upper-cased, spaces and the separators `・`, `-`, `－`, `.` removed. Kana in 記号 are folded
/// like names.
pub fn card_symbol(field: &'static str, s: &str) -> Result<String> {
    card_symbol_folded(field, &kana(s))
}

/// [`card_symbol`] of text already folded with [`kana`].
pub(crate) fn card_symbol_folded(field: &'static str, folded: &str) -> Result<String> {
    let out: String =
        folded.chars().filter(|c| !matches!(c, '-' | '.' | '_' | '/')).map(|c| c.to_ascii_uppercase()).collect();
    if out.is_empty() {
        return Err(PseudoError::MalformedIdentifier { field, reason: "empty" });
    }
    if out.chars().count() > 40 {
        return Err(PseudoError::MalformedIdentifier { field, reason: "longer than 40 characters" });
    }
    if out.chars().any(char::is_control) {
        return Err(PseudoError::MalformedIdentifier { field, reason: "contains control characters" });
    }
    Ok(out)
}

/// Branch number (枝番): two digits, or `None` when absent.
pub fn branch(s: Option<&str>) -> Result<Option<String>> {
    let Some(s) = s else { return Ok(None) };
    let d = nfkc_compact(s);
    if d.is_empty() {
        return Ok(None);
    }
    if !d.bytes().all(|b| b.is_ascii_digit()) || d.len() > 2 {
        return Err(PseudoError::MalformedIdentifier { field: "branch", reason: "not 1 to 2 digits" });
    }
    Ok(Some(format!("{d:0>2}")))
}

/// Kana name folding: NFKC (half-width → full-width katakana), hiragana → katakana,
/// small kana → large, ゐゑ/ヰヱ → イエ, long-vowel marks, spaces and middle dots removed,
/// Latin letters upper-cased.
pub fn kana(s: &str) -> String {
    fixpoint(s, kana_once)
}

/// One pass of [`kana`].
fn kana_once(t: &str) -> String {
    t.nfkc()
        .filter(|c| !c.is_whitespace() && !is_separator(*c))
        .map(hiragana_to_katakana)
        .map(small_to_large)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn is_separator(c: char) -> bool {
    matches!(c, 'ー' | '－' | '-' | '‐' | '−' | '―' | '・' | '･' | '〜' | '～' | '~' | ',' | '、' | '.' | '。')
}

/// A kana name for ID2: folded with [`kana`] and then checked to be katakana (and the voiced
/// sound marks) only. A name written in kanji or Latin letters in the kana field would never
/// link and is reported instead of hashed.
pub fn kana_name(s: &str) -> Result<String> {
    kana_name_folded(kana(s))
}

/// [`kana_name`] of text already folded with [`kana`].
pub(crate) fn kana_name_folded(k: String) -> Result<String> {
    if k.is_empty() {
        return Err(PseudoError::MalformedIdentifier { field: "kana_name", reason: "empty" });
    }
    if !k.chars().all(|c| matches!(c, '\u{30A1}'..='\u{30FA}' | '\u{30FD}' | '\u{30FE}' | '\u{3099}' | '\u{309A}')) {
        return Err(PseudoError::MalformedIdentifier {
            field: "kana_name",
            reason: "contains characters other than kana",
        });
    }
    if k.chars().count() > 60 {
        return Err(PseudoError::MalformedIdentifier { field: "kana_name", reason: "longer than 60 characters" });
    }
    Ok(k)
}

fn hiragana_to_katakana(c: char) -> char {
    match c {
        'ぁ'..='ゖ' | 'ゝ' | 'ゞ' => char::from_u32(c as u32 + 0x60).unwrap_or(c),
        _ => c,
    }
}

fn small_to_large(c: char) -> char {
    match c {
        'ァ' => 'ア',
        'ィ' | 'ヰ' => 'イ',
        'ゥ' => 'ウ',
        'ェ' | 'ヱ' => 'エ',
        'ォ' => 'オ',
        'ッ' => 'ツ',
        'ャ' => 'ヤ',
        'ュ' => 'ユ',
        'ョ' => 'ヨ',
        'ヮ' => 'ワ',
        'ヵ' => 'カ',
        'ヶ' => 'ケ',
        'ㇰ' => 'ク',
        'ㇱ' => 'シ',
        'ㇲ' => 'ス',
        'ㇳ' => 'ト',
        'ㇴ' => 'ヌ',
        'ㇵ' => 'ハ',
        'ㇶ' => 'ヒ',
        'ㇷ' => 'フ',
        'ㇸ' => 'ヘ',
        'ㇹ' => 'ホ',
        'ㇺ' => 'ム',
        'ㇻ' => 'ラ',
        'ㇼ' => 'リ',
        'ㇽ' => 'ル',
        'ㇾ' => 'レ',
        'ㇿ' => 'ロ',
        _ => c,
    }
}

/// Earliest birth date accepted (the oldest living person was born after this).
const MIN_BIRTH_YEAR: i32 = 1890;

/// A birth date as written by the sources: `YYYYMMDD`, `YYYY-MM-DD`, `YYYY/MM/DD` (any digit
/// width), or the receipt era form `GYYMMDD` (G: 1 明治, 2 大正, 3 昭和, 4 平成, 5 令和).
///
/// Rejected with a reason: wrong length or shape, an impossible calendar date (Feb 30), a
/// date before 1890, or a date after `today` when given.
pub fn birth_date(s: &str, today: Option<NaiveDate>) -> Result<NaiveDate> {
    const F: &str = "birth_date";
    let d: String = nfkc_compact(s).chars().filter(|c| !matches!(c, '-' | '/' | '.')).collect();
    if d.is_empty() {
        return Err(PseudoError::MalformedIdentifier { field: F, reason: "empty" });
    }
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PseudoError::MalformedIdentifier { field: F, reason: "not a date of digits" });
    }
    let num = |r: std::ops::Range<usize>| d[r].parse::<u32>().unwrap_or(0);
    let (y, m, day) = match d.len() {
        8 => (i32::try_from(num(0..4)).unwrap_or(0), num(4..6), num(6..8)),
        7 => {
            let base = match num(0..1) {
                1 => 1867,
                2 => 1911,
                3 => 1925,
                4 => 1988,
                5 => 2018,
                _ => return Err(PseudoError::MalformedIdentifier { field: F, reason: "unknown era digit" }),
            };
            let yy = i32::try_from(num(1..3)).unwrap_or(0);
            if yy == 0 {
                return Err(PseudoError::MalformedIdentifier { field: F, reason: "era year 0" });
            }
            (base + yy, num(3..5), num(5..7))
        }
        _ => {
            return Err(PseudoError::MalformedIdentifier {
                field: F,
                reason: "not 8 digits (YYYYMMDD) or 7 (GYYMMDD)",
            });
        }
    };
    let date = NaiveDate::from_ymd_opt(y, m, day)
        .ok_or(PseudoError::MalformedIdentifier { field: F, reason: "impossible calendar date" })?;
    if date.year() < MIN_BIRTH_YEAR {
        return Err(PseudoError::MalformedIdentifier { field: F, reason: "before 1890" });
    }
    if today.is_some_and(|t| date > t) {
        return Err(PseudoError::MalformedIdentifier { field: F, reason: "in the future" });
    }
    Ok(date)
}

/// A sex code as written by the sources (`1`/`2` in receipts and care files, FHIR
/// `male`/`female`/`other`/`unknown`, CDM `M`/`F`/`U`, any width). An unknown code is an
/// error naming the field; the code itself is not repeated.
pub fn sex(s: &str) -> Result<Sex> {
    let t = nfkc_compact(s).to_ascii_lowercase();
    match t.as_str() {
        "1" | "male" | "m" | "男" => Ok(Sex::Male),
        "2" | "female" | "f" | "女" => Ok(Sex::Female),
        "3" | "9" | "0" | "other" | "unknown" | "u" => Ok(Sex::Unknown),
        "" => Err(PseudoError::MalformedIdentifier { field: "sex", reason: "empty" }),
        _ => Err(PseudoError::MalformedIdentifier { field: "sex", reason: "unknown sex code" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insurer_numbers_pad_and_fold_width() {
        assert_eq!(insurer_number("１３８０１４").as_deref(), Ok("00138014"));
        assert_eq!(insurer_number(" 06139999 ").as_deref(), Ok("06139999"));
        assert_eq!(insurer_number("1130012").as_deref(), Ok("01130012"));
        assert!(insurer_number("12a45678").is_err());
        assert!(insurer_number("123456789").is_err());
        assert!(insurer_number("12345").is_err());
        assert!(insurer_number("  ").is_err());
    }

    #[test]
    fn kana_variants_fold_together() {
        assert_eq!(kana("やまだ たろう"), kana("ﾔﾏﾀﾞ ﾀﾛｳ"));
        assert_eq!(kana("ヤマダ・タロー"), kana("ヤマダタロ"));
        assert_eq!(kana("キョウコ"), kana("きようこ"));
        assert_eq!(kana("ヰヱ"), kana("いえ"));
        assert_eq!(kana("ﾔﾏﾀﾞ　ﾀﾛｰ"), "ヤマダタロ");
    }

    #[test]
    fn kana_is_idempotent_on_spacing_voiced_marks() {
        // "タ ゛" → NFKC gives "タ  ゙"; without a fixpoint the mark would compose only on a second pass.
        for s in ["タ ゛", "ﾀ ﾞ", "は ゜", "゛", " ﾞｱ"] {
            let once = kana(s);
            assert_eq!(kana(&once), once, "{s:?}");
        }
    }

    #[test]
    fn ascii_is_only_stripped_of_white_space() {
        // The ASCII shortcut of `nfkc_compact` against the NFKC fixpoint, on every ASCII text of
        // up to two characters.
        let mut texts = vec![String::new()];
        for a in 0u8..128 {
            texts.push(char::from(a).to_string());
            for b in 0u8..128 {
                texts.push([char::from(a), char::from(b)].iter().collect());
            }
        }
        texts.push(" 0613 9999\t".into());
        for t in &texts {
            assert_eq!(nfkc_compact(t), fixpoint(t, compact_once), "{t:?}");
        }
    }

    #[test]
    fn the_fixpoint_shortcut_changes_no_result() {
        // Text the shortcut returns after one pass is text a second pass leaves unchanged.
        for s in [
            "やまだ たろう",
            "ﾔﾏﾀﾞ ﾀﾛｳ",
            "ヴァイオリン",
            "ゔぁ",
            "ヷヸヹヺ",
            "ｶﾞｯｺｳ",
            "ab-1.２３",
            "１８７あいう",
            "ABC ｄｅｆ",
            "ㇰㇱ",
            "ゝゞヽヾ",
            "タ ゛",
            "",
        ] {
            for f in [kana_once, compact_once] {
                let once = f(s);
                if once.chars().all(stable_once_folded) {
                    assert_eq!(f(&once), once, "{s:?}");
                }
            }
        }
        // Every pair of characters the shortcut accepts (composition only joins neighbours).
        let accepted: Vec<char> = (' '..='~').chain('\u{30A1}'..='\u{30FA}').collect();
        assert!(accepted.iter().all(|c| stable_once_folded(*c)));
        for a in &accepted {
            for b in &accepted {
                let t: String = [*a, *b].into_iter().collect();
                for f in [kana_once, compact_once] {
                    let once = f(&t);
                    assert_eq!(f(&once), once, "{t:?}");
                }
            }
        }
        assert_eq!(kana("ｶﾞｯｺｳ"), "ガツコウ");
        assert_eq!(nfkc_compact("ＡＢ　１２"), "AB12");
    }

    #[test]
    fn kana_names_must_be_kana() {
        assert_eq!(kana_name("やまだ たろう").as_deref(), Ok("ヤマダタロウ"));
        assert!(matches!(
            kana_name("山田太郎"),
            Err(PseudoError::MalformedIdentifier { field: "kana_name", reason: "contains characters other than kana" })
        ));
        assert!(kana_name(" ・ ").is_err());
    }

    #[test]
    fn card_symbols_fold_width() {
        assert_eq!(card_symbol("kigo", "１８７").as_deref(), Ok("187"));
        assert_eq!(card_symbol("kigo", "あいう"), card_symbol("kigo", "ｱｲｳ"));
        assert_eq!(card_symbol("kigo", "ａｂ－１"), card_symbol("kigo", "AB1"));
        assert!(card_symbol("bango", " ").is_err());
        assert_eq!(branch(Some("5")), Ok(Some("05".to_owned())));
        assert_eq!(branch(Some("")), Ok(None));
        assert!(branch(Some("123")).is_err());
    }

    #[test]
    fn birth_dates_parse_or_say_why() {
        let d = NaiveDate::from_ymd_opt(1950, 3, 1);
        assert_eq!(birth_date("19500301", None).ok(), d);
        assert_eq!(birth_date("１９５０－０３－０１", None).ok(), d);
        assert_eq!(birth_date("3250301", None).ok(), d, "昭和25年 = 1950");
        let reason = |s: &str| match birth_date(s, NaiveDate::from_ymd_opt(2026, 1, 1)) {
            Err(PseudoError::MalformedIdentifier { field: "birth_date", reason }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason("19500230"), "impossible calendar date");
        assert_eq!(reason("9500301"), "unknown era digit");
        assert_eq!(reason("195003"), "not 8 digits (YYYYMMDD) or 7 (GYYMMDD)");
        assert_eq!(reason("1950O301"), "not a date of digits");
        assert_eq!(reason("18000101"), "before 1890");
        assert_eq!(reason("20300101"), "in the future");
    }

    #[test]
    fn sex_codes() {
        assert_eq!(sex("１"), Ok(Sex::Male));
        assert_eq!(sex("female"), Ok(Sex::Female));
        assert_eq!(sex("F"), Ok(Sex::Female));
        assert_eq!(sex("x"), Err(PseudoError::MalformedIdentifier { field: "sex", reason: "unknown sex code" }));
    }
}
