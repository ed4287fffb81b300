//! Identifier normalization for linkage: the same person written differently by different
//! sources must give the same linkage key. Every function here is idempotent.

use unicode_normalization::UnicodeNormalization;

use crate::{PseudoError, Result};

/// NFKC, trimmed, inner white space removed: full-width digits and letters become ASCII,
/// half-width katakana become full-width.
pub fn nfkc_compact(s: &str) -> String {
    s.nfkc().filter(|c| !c.is_whitespace()).collect()
}

/// Insurer number (保険者番号): digits only, zero-padded to 8.
/// National health insurance numbers have 6 digits and are padded with two leading zeros.
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

/// 記号 or 番号 of an insurance card: NFKC (one width for digits and letters), spaces and
/// the separators `・`, `-`, `－` removed. Kana in 記号 are folded like names.
pub fn card_symbol(field: &'static str, s: &str) -> Result<String> {
    let out: String = kana(&nfkc_compact(s)).chars().filter(|c| !matches!(c, '-' | '・' | '･' | '.')).collect();
    if out.is_empty() {
        return Err(PseudoError::MalformedIdentifier { field, reason: "empty" });
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
/// small kana → large, long-vowel marks, spaces and middle dots removed.
pub fn kana(s: &str) -> String {
    s.nfkc()
        .filter(|c| !c.is_whitespace() && !matches!(c, 'ー' | '－' | '-' | '・' | '･' | '〜' | '～'))
        .map(hiragana_to_katakana)
        .map(small_to_large)
        .collect()
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
        'ィ' => 'イ',
        'ゥ' => 'ウ',
        'ェ' => 'エ',
        'ォ' => 'オ',
        'ッ' => 'ツ',
        'ャ' => 'ヤ',
        'ュ' => 'ユ',
        'ョ' => 'ヨ',
        'ヮ' => 'ワ',
        'ヵ' => 'カ',
        'ヶ' => 'ケ',
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insurer_numbers_pad_and_fold_width() {
        assert_eq!(insurer_number("１３８０１４").as_deref(), Ok("00138014"));
        assert_eq!(insurer_number(" 06139999 ").as_deref(), Ok("06139999"));
        assert!(insurer_number("12a45678").is_err());
        assert!(insurer_number("123456789").is_err());
    }

    #[test]
    fn kana_variants_fold_together() {
        assert_eq!(kana("やまだ たろう"), kana("ﾔﾏﾀﾞ ﾀﾛｳ"));
        assert_eq!(kana("ヤマダ・タロー"), kana("ヤマダタロ"));
        assert_eq!(kana("キョウコ"), kana("きようこ"));
    }

    #[test]
    fn card_symbols_fold_width() {
        assert_eq!(card_symbol("kigo", "１８７").as_deref(), Ok("187"));
        assert_eq!(card_symbol("kigo", "あいう"), card_symbol("kigo", "ｱｲｳ"));
        assert_eq!(branch(Some("5")), Ok(Some("05".to_owned())));
        assert_eq!(branch(Some("")), Ok(None));
    }
}
