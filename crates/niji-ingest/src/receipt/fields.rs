//! Field helpers shared by the receipt and care readers: CP932 decoding, full-width digit
//! folding, date parsing. None of these ever puts a value into an error.

use std::borrow::Cow;
use std::path::Path;

use chrono::NaiveDate;
use encoding_rs::SHIFT_JIS;

use crate::{IngestError, Result};

/// Decode a whole CP932 file. A file that is valid UTF-8 with non-ASCII text is reported as
/// UTF-8 (checked first: UTF-8 Japanese often happens to be valid Shift_JIS byte pairs); any
/// other invalid sequence is reported with the line it occurs on.
pub fn decode_cp932(path: &Path, bytes: &[u8]) -> Result<String> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) || (!bytes.is_ascii() && std::str::from_utf8(bytes).is_ok()) {
        return Err(IngestError::Utf8NotCp932 { path: path.to_owned() });
    }
    if let Some(text) = SHIFT_JIS.decode_without_bom_handling_and_without_replacement(bytes) {
        return Ok(text.into_owned());
    }
    let mut line = 1u64;
    for chunk in bytes.split(|b| *b == b'\n') {
        if SHIFT_JIS.decode_without_bom_handling_and_without_replacement(chunk).is_none() {
            return Err(IngestError::NotCp932 { path: path.to_owned(), line });
        }
        line += 1;
    }
    // Unreachable in practice (a sequence cannot straddle a 0x0A byte in Shift_JIS); report the end.
    Err(IngestError::NotCp932 { path: path.to_owned(), line })
}

/// Iterate over the records of a decoded file: `(1-based line number, line without CR/LF)`.
/// Empty lines and a trailing DOS end-of-file mark (0x1A) are not records.
pub fn records(text: &str) -> impl Iterator<Item = (u64, &str)> {
    text.split('\n').enumerate().filter_map(|(i, l)| {
        let l = l.strip_suffix('\r').unwrap_or(l);
        if l.is_empty() || l == "\u{1a}" { None } else { Some((i as u64 + 1, l)) }
    })
}

/// Trim ASCII and ideographic spaces and fold full-width digits to ASCII.
pub fn fold(s: &str) -> Cow<'_, str> {
    let t = s.trim_matches(|c: char| c == ' ' || c == '\u{3000}' || c == '\t');
    if t.chars().any(|c| ('０'..='９').contains(&c)) {
        Cow::Owned(
            t.chars()
                .map(|c| if ('０'..='９').contains(&c) { char::from(b'0' + (c as u32 - '０' as u32) as u8) } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(t)
    }
}

/// Why a field was rejected (stable reason codes, never the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// Not all digits where digits are required.
    NotDigits,
    /// Wrong number of digits.
    BadLength,
    /// Not a valid date or month.
    BadDate,
    /// Not a number.
    BadNumber,
    /// Required and empty.
    Missing,
}

impl FieldError {
    /// Reason code for the quarantine file.
    pub fn code(self) -> &'static str {
        match self {
            FieldError::NotDigits => "not_digits",
            FieldError::BadLength => "bad_length",
            FieldError::BadDate => "bad_date",
            FieldError::BadNumber => "bad_number",
            FieldError::Missing => "missing_field",
        }
    }

    /// Human explanation.
    pub fn detail(self) -> &'static str {
        match self {
            FieldError::NotDigits => "the field must contain digits only",
            FieldError::BadLength => "the field has the wrong number of digits",
            FieldError::BadDate => "the field is not a valid date (YYYYMMDD) or month (YYYYMM)",
            FieldError::BadNumber => "the field is not a valid number",
            FieldError::Missing => "a required field is empty or missing",
        }
    }
}

/// A digit string of one of the allowed lengths (after folding). Empty → `Ok(None)`.
pub fn digits<'a>(s: &'a str, lens: &[usize]) -> Result<Option<Cow<'a, str>>, FieldError> {
    let d = fold(s);
    if d.is_empty() {
        return Ok(None);
    }
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::NotDigits);
    }
    if !lens.is_empty() && !lens.contains(&d.len()) {
        return Err(FieldError::BadLength);
    }
    Ok(Some(d))
}

/// `YYYYMMDD` (or `YYYY-MM-DD`); empty → `Ok(None)`.
pub fn date(s: &str) -> Result<Option<NaiveDate>, FieldError> {
    let d = fold(s);
    if d.is_empty() {
        return Ok(None);
    }
    let d: Cow<'_, str> = if d.len() == 10 && d.as_bytes()[4] == b'-' && d.as_bytes()[7] == b'-' {
        Cow::Owned(d.replace('-', ""))
    } else {
        d
    };
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::BadDate);
    }
    NaiveDate::parse_from_str(&d, "%Y%m%d").map(Some).map_err(|_| FieldError::BadDate)
}

/// `YYYYMM` → the first day of the month; empty → `Ok(None)`.
pub fn month(s: &str) -> Result<Option<NaiveDate>, FieldError> {
    let d = fold(s);
    if d.is_empty() {
        return Ok(None);
    }
    if d.len() != 6 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::BadDate);
    }
    let y: i32 = d[..4].parse().map_err(|_| FieldError::BadDate)?;
    let m: u32 = d[4..].parse().map_err(|_| FieldError::BadDate)?;
    NaiveDate::from_ymd_opt(y, m, 1).map(Some).ok_or(FieldError::BadDate)
}

/// An integer; empty → `Ok(None)`.
pub fn int(s: &str) -> Result<Option<i64>, FieldError> {
    let d = fold(s);
    if d.is_empty() {
        return Ok(None);
    }
    d.parse::<i64>().map(Some).map_err(|_| FieldError::BadNumber)
}

/// A decimal number; empty → `Ok(None)`.
pub fn float(s: &str) -> Result<Option<f64>, FieldError> {
    let d = fold(s);
    if d.is_empty() {
        return Ok(None);
    }
    match d.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(FieldError::BadNumber),
    }
}

/// Days in the month starting at `first`.
pub fn days_in_month(first: NaiveDate) -> u32 {
    let next = first.checked_add_months(chrono::Months::new(1)).unwrap_or(first);
    u32::try_from((next - first).num_days()).unwrap_or(31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_digits_fold() {
        assert_eq!(fold("　１２３ "), "123");
        assert_eq!(digits("６４４４０７１８", &[8]).expect("ok").as_deref(), Some("64440718"));
        assert_eq!(digits("12a", &[]), Err(FieldError::NotDigits));
        assert_eq!(digits("123", &[7]), Err(FieldError::BadLength));
        assert_eq!(digits("", &[7]), Ok(None));
    }

    #[test]
    fn dates_and_months() {
        assert_eq!(date("20210229"), Err(FieldError::BadDate));
        assert_eq!(date("2024-02-29").expect("ok"), NaiveDate::from_ymd_opt(2024, 2, 29));
        assert_eq!(month("202110").expect("ok"), NaiveDate::from_ymd_opt(2021, 10, 1));
        assert_eq!(month("202113"), Err(FieldError::BadDate));
        assert_eq!(days_in_month(NaiveDate::from_ymd_opt(2024, 2, 1).expect("d")), 29);
        assert_eq!(days_in_month(NaiveDate::from_ymd_opt(2021, 12, 1).expect("d")), 31);
    }

    #[test]
    fn encodings_are_told_apart() {
        let p = Path::new("x.UKE");
        let (sjis, _, _) = SHIFT_JIS.encode("RE,1,テスト\r\n");
        assert_eq!(decode_cp932(p, &sjis).expect("cp932"), "RE,1,テスト\r\n");
        assert!(matches!(decode_cp932(p, "RE,1,テスト\r\n".as_bytes()), Err(IngestError::Utf8NotCp932 { .. })));
        assert!(matches!(decode_cp932(p, b"IR,1\r\nRE,\x82\r\n"), Err(IngestError::NotCp932 { line: 2, .. })));
        let recs: Vec<_> = records("IR,1\r\n\r\nRE,2\r\n\u{1a}").collect();
        assert_eq!(recs, vec![(1, "IR,1"), (3, "RE,2")]);
    }
}
