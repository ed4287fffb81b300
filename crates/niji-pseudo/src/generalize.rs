//! Generalization of quasi-identifiers before they reach the analytic store: birth date →
//! year, year-month or age band at the event date; event dates → month or a per-person
//! consistent shift; postcode / prefecture name → prefecture code and 二次医療圏 code; rare
//! codes → parent code. Free text is never generalized: it is dropped by the mappers.
//!
//! The region tables are data shipped in `data/` (see its README for sources and coverage).
//! Where a table has no answer the functions return `None`, never a guess.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{Datelike, Duration, NaiveDate};

use crate::key::{Domain, PseudonymKey};
use crate::normalize::nfkc_compact;

/// Birth year.
pub fn birth_year(birth: NaiveDate) -> i32 {
    birth.year()
}

/// Birth year and month.
pub fn birth_year_month(birth: NaiveDate) -> (i32, u32) {
    (birth.year(), birth.month())
}

/// Age in completed years at `event`; `None` when the event precedes the birth.
pub fn age_at(birth: NaiveDate, event: NaiveDate) -> Option<u32> {
    if event < birth {
        return None;
    }
    let mut age = event.year() - birth.year();
    if (event.month(), event.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    u32::try_from(age).ok()
}

/// Age from a birth year only: the age reached during the event's year (`event year − birth
/// year`), the convention when the exact birth date is no longer stored. It is at most one
/// year above the exact age. `None` when the event year precedes the birth year.
pub fn age_in_event_year(birth_year: i32, event: NaiveDate) -> Option<u32> {
    u32::try_from(event.year() - birth_year).ok()
}

/// Age bands of `width` years with a top band `top+` (the catalog's public domain is 5-year
/// bands `0-4` … `85-89`, `90+`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgeBands {
    /// Band width in years (≥ 1).
    pub width: u32,
    /// First age of the open top band.
    pub top: u32,
}

impl Default for AgeBands {
    fn default() -> Self {
        Self { width: 5, top: 90 }
    }
}

impl AgeBands {
    /// The band label of `age`: `"40-44"`, or `"90+"` at and above `top`.
    pub fn label(&self, age: u32) -> String {
        let w = self.width.max(1);
        if age >= self.top {
            return format!("{}+", self.top);
        }
        let lo = age / w * w;
        let hi = (lo + w - 1).min(self.top.saturating_sub(1));
        if w == 1 { format!("{lo}") } else { format!("{lo}-{hi}") }
    }

    /// Every band label in order (the public key domain).
    pub fn labels(&self) -> Vec<String> {
        let w = self.width.max(1);
        let mut out: Vec<String> = (0..self.top).step_by(w as usize).map(|a| self.label(a)).collect();
        out.push(format!("{}+", self.top));
        out
    }
}

/// The first day of the date's month (CDM `*_month` columns).
pub fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

/// A per-person consistent date shift: every date of one person moves by the same number of
/// days (intervals between that person's events are kept), and different persons move by
/// independent amounts in `[-max_days, -1] ∪ [1, max_days]`. The amount is derived from the
/// person pseudonym with a keyed HMAC, so it cannot be recomputed without the key.
#[derive(Debug, Clone)]
pub struct DateShifter {
    key: PseudonymKey,
    max_days: u32,
}

impl DateShifter {
    /// A shifter with its own key and the largest shift in days (≥ 1).
    pub fn new(key: PseudonymKey, max_days: u32) -> Self {
        Self { key, max_days: max_days.max(1) }
    }

    /// The shift in days of the person.
    pub fn shift_days(&self, person_id: &str) -> i64 {
        let b = self.key.pseudonym_bytes(Domain::DateShift, &[person_id]);
        let x = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let m = u64::from(self.max_days);
        // 128 bits → 64 used; modulo bias is below 2^-40 for any realistic max_days.
        let mag = i64::try_from(x % m).unwrap_or(0) + 1;
        if b[8] & 1 == 0 { mag } else { -mag }
    }

    /// The shifted date.
    pub fn shift(&self, person_id: &str, date: NaiveDate) -> NaiveDate {
        date.checked_add_signed(Duration::days(self.shift_days(person_id))).unwrap_or(date)
    }
}

/// The 3-character ICD-10 category of a code (`E11.9` → `E11`, `I109` → `I10`), upper-cased
/// and width-folded; `None` when the code does not start with a letter and two digits.
pub fn icd10_parent(code: &str) -> Option<String> {
    let c: String = nfkc_compact(code).to_ascii_uppercase();
    let b = c.as_bytes();
    if b.len() >= 3 && b[0].is_ascii_uppercase() && b[1].is_ascii_digit() && b[2].is_ascii_digit() {
        Some(c[..3].to_owned())
    } else {
        None
    }
}

/// Truncate a code to its first `len` characters when it is longer (generic parent code for
/// hierarchical code systems such as JLAC10 or YJ, whose prefixes are groups).
pub fn code_prefix(code: &str, len: usize) -> Option<String> {
    let c = nfkc_compact(code);
    if c.chars().count() < len || len == 0 {
        return None;
    }
    Some(c.chars().take(len).collect())
}

/// The ICD-10 chapter (`"I"` … `"XXII"`) of a code, from its 3-character category.
pub fn icd10_chapter(code: &str) -> Option<&'static str> {
    let p = icd10_parent(code)?;
    let letter = p.as_bytes()[0];
    let n: u32 = p[1..3].parse().ok()?;
    let ch = match (letter, n) {
        (b'A' | b'B', _) => "I",
        (b'C', _) | (b'D', 0..=48) => "II",
        (b'D', _) => "III",
        (b'E', _) => "IV",
        (b'F', _) => "V",
        (b'G', _) => "VI",
        (b'H', 0..=59) => "VII",
        (b'H', _) => "VIII",
        (b'I', _) => "IX",
        (b'J', _) => "X",
        (b'K', _) => "XI",
        (b'L', _) => "XII",
        (b'M', _) => "XIII",
        (b'N', _) => "XIV",
        (b'O', _) => "XV",
        (b'P', _) => "XVI",
        (b'Q', _) => "XVII",
        (b'R', _) => "XVIII",
        (b'S' | b'T', _) => "XIX",
        (b'V' | b'W' | b'X' | b'Y', _) => "XX",
        (b'Z', _) => "XXI",
        (b'U', _) => "XXII",
        _ => return None,
    };
    Some(ch)
}

struct Prefecture {
    code: &'static str,
    name: &'static str,
    romaji: &'static str,
}

fn data_lines(text: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).map(|l| l.split('\t').collect())
}

static PREFECTURES: LazyLock<Vec<Prefecture>> = LazyLock::new(|| {
    data_lines(include_str!("../data/prefectures.tsv"))
        .filter(|f| f.len() >= 3)
        .map(|f| Prefecture { code: f[0], name: f[1], romaji: f[2] })
        .collect()
});

/// Prefix → answer (`None` = known ambiguous), longest match wins.
struct PrefixTable {
    entries: HashMap<String, Option<&'static str>>,
    max_len: usize,
}

impl PrefixTable {
    fn lookup(&self, digits: &str) -> Option<&'static str> {
        for len in (1..=self.max_len.min(digits.len())).rev() {
            if let Some(ans) = self.entries.get(&digits[..len]) {
                return *ans;
            }
        }
        None
    }
}

fn answer(code: &'static str) -> Option<&'static str> {
    if code == "-" { None } else { Some(code) }
}

static POSTCODE_PREFECTURE: LazyLock<PrefixTable> = LazyLock::new(|| {
    let mut entries = HashMap::new();
    let mut max_len = 0;
    for f in data_lines(include_str!("../data/postcode_prefecture.tsv")).filter(|f| f.len() >= 3) {
        let (first, last) = (f[0], f[1]);
        let width = first.len();
        max_len = max_len.max(width);
        let (Ok(a), Ok(b)) = (first.parse::<u32>(), last.parse::<u32>()) else { continue };
        for p in a..=b {
            entries.insert(format!("{p:0width$}"), answer(f[2]));
        }
    }
    PrefixTable { entries, max_len }
});

static POSTCODE_AREA: LazyLock<PrefixTable> = LazyLock::new(|| {
    let mut entries = HashMap::new();
    let mut max_len = 0;
    for f in data_lines(include_str!("../data/postcode_secondary_medical_area.tsv")).filter(|f| f.len() >= 2) {
        max_len = max_len.max(f[0].len());
        entries.insert(f[0].to_owned(), answer(f[1]));
    }
    PrefixTable { entries, max_len }
});

static AREAS: LazyLock<Vec<(&'static str, &'static str, &'static str)>> = LazyLock::new(|| {
    data_lines(include_str!("../data/secondary_medical_areas.tsv"))
        .filter(|f| f.len() >= 3)
        .map(|f| (f[0], f[1], f[2]))
        .collect()
});

/// The 7 digits of a Japanese postcode (`〒100-0001`, `１００－０００１`, `1000001`), or
/// `None` when it is not one.
pub fn postcode_digits(postcode: &str) -> Option<String> {
    let d: String = nfkc_compact(postcode).chars().filter(|c| !matches!(c, '-' | '〒' | 'ー' | '−' | '‐')).collect();
    (d.len() == 7 && d.bytes().all(|b| b.is_ascii_digit())).then_some(d)
}

/// JIS X 0401 prefecture code of a postcode (`None` when malformed, unallocated, or the
/// prefix spans two prefectures).
pub fn prefecture_from_postcode(postcode: &str) -> Option<&'static str> {
    POSTCODE_PREFECTURE.lookup(&postcode_digits(postcode)?)
}

/// JIS X 0401 prefecture code of a prefecture name: `東京都`, `東京`, `Tokyo`, `tokyo-to`, or
/// the code itself (`13`, `１３`).
pub fn prefecture_code(name: &str) -> Option<&'static str> {
    // A name as the table writes it (`東京都`, the usual form) is its own normal form and
    // matches no other prefecture's name, short name or romaji: no normalization needed.
    if let Some(p) = PREFECTURES.iter().find(|p| p.name == name) {
        return Some(p.code);
    }
    prefecture_code_normalized(name)
}

/// [`prefecture_code`] of any written form, normalized first.
fn prefecture_code_normalized(name: &str) -> Option<&'static str> {
    let n = nfkc_compact(name);
    if n.is_empty() {
        return None;
    }
    if n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit()) {
        let v: u32 = n.parse().ok()?;
        return PREFECTURES.iter().find(|p| p.code.parse::<u32>().ok() == Some(v)).map(|p| p.code);
    }
    let lower = n.to_ascii_lowercase();
    let latin = lower.trim_end_matches("-to").trim_end_matches("-fu").trim_end_matches("-ken").trim_end_matches("-do");
    PREFECTURES
        .iter()
        .find(|p| {
            p.name == n
                || p.name.strip_suffix(['都', '府', '県']).is_some_and(|short| short == n)
                || (p.name == "北海道" && n == "北海")
                || p.romaji.eq_ignore_ascii_case(latin)
        })
        .map(|p| p.code)
}

/// The kanji name of a prefecture code.
pub fn prefecture_name(code: &str) -> Option<&'static str> {
    PREFECTURES.iter().find(|p| p.code == code).map(|p| p.name)
}

/// 二次医療圏 code of a postcode, where `data/postcode_secondary_medical_area.tsv` maps it
/// (Tokyo); `None` elsewhere or where a prefix spans two areas.
pub fn secondary_medical_area(postcode: &str) -> Option<&'static str> {
    POSTCODE_AREA.lookup(&postcode_digits(postcode)?)
}

/// The name of a 二次医療圏 code.
pub fn secondary_medical_area_name(code: &str) -> Option<&'static str> {
    AREAS.iter().find(|a| a.0 == code).map(|a| a.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("date")
    }

    #[test]
    fn a_prefecture_name_as_written_finds_what_its_normal_form_finds() {
        assert_eq!(PREFECTURES.len(), 47);
        for p in PREFECTURES.iter() {
            assert_eq!(prefecture_code(p.name), prefecture_code_normalized(p.name), "{}", p.name);
            assert_eq!(prefecture_code(p.name), Some(p.code));
        }
    }

    #[test]
    fn ages_and_bands() {
        assert_eq!(age_at(d(1950, 3, 1), d(2024, 2, 29)), Some(73));
        assert_eq!(age_at(d(1950, 3, 1), d(2024, 3, 1)), Some(74));
        assert_eq!(age_at(d(1950, 3, 1), d(1949, 3, 1)), None);
        assert_eq!(age_in_event_year(1950, d(2024, 1, 1)), Some(74));
        let b = AgeBands::default();
        assert_eq!(b.label(0), "0-4");
        assert_eq!(b.label(44), "40-44");
        assert_eq!(b.label(89), "85-89");
        assert_eq!(b.label(90), "90+");
        assert_eq!(b.label(120), "90+");
        assert_eq!(b.labels().len(), 19);
        assert_eq!(AgeBands { width: 10, top: 75 }.label(72), "70-74");
        assert_eq!(month_start(d(2024, 2, 29)), d(2024, 2, 1));
        assert_eq!(birth_year_month(d(1950, 3, 9)), (1950, 3));
    }

    #[test]
    fn date_shift_is_consistent_per_person_and_varies_between_persons() {
        let s = DateShifter::new(PseudonymKey::from_bytes(&[5; 32]).expect("key"), 180);
        let (a, b) = (d(2024, 1, 10), d(2024, 3, 5));
        let (sa, sb) = (s.shift("p1", a), s.shift("p1", b));
        assert_eq!((sb - sa).num_days(), (b - a).num_days());
        let shifts: std::collections::HashSet<i64> = (0..200).map(|i| s.shift_days(&format!("p{i}"))).collect();
        assert!(shifts.len() > 100, "shifts vary between persons");
        assert!(shifts.iter().all(|x| (1..=180).contains(&x.abs())));
        assert!(shifts.iter().any(|x| *x < 0) && shifts.iter().any(|x| *x > 0));
    }

    #[test]
    fn icd10_parents_and_chapters() {
        assert_eq!(icd10_parent("E11.9").as_deref(), Some("E11"));
        assert_eq!(icd10_parent("ｉ１０９").as_deref(), Some("I10"));
        assert_eq!(icd10_parent("E1"), None);
        assert_eq!(icd10_parent("0000999"), None);
        assert_eq!(icd10_chapter("E119"), Some("IV"));
        assert_eq!(icd10_chapter("D50"), Some("III"));
        assert_eq!(icd10_chapter("H60"), Some("VIII"));
        assert_eq!(code_prefix("3B035000002327201", 5).as_deref(), Some("3B035"));
    }

    #[test]
    fn prefectures_from_names_and_postcodes() {
        assert_eq!(PREFECTURES.len(), 47);
        assert_eq!(prefecture_code("東京都"), Some("13"));
        assert_eq!(prefecture_code("東京"), Some("13"));
        assert_eq!(prefecture_code("北海道"), Some("01"));
        assert_eq!(prefecture_code("Osaka"), Some("27"));
        assert_eq!(prefecture_code("１"), Some("01"));
        assert_eq!(prefecture_code("Atlantis"), None);
        assert_eq!(prefecture_name("47"), Some("沖縄県"));
        assert_eq!(prefecture_from_postcode("〒100-0001"), Some("13"));
        assert_eq!(prefecture_from_postcode("０６０－０００１"), Some("01"));
        assert_eq!(prefecture_from_postcode("530-0001"), Some("27"));
        assert_eq!(prefecture_from_postcode("900-0001"), Some("47"));
        assert_eq!(prefecture_from_postcode("980-0811"), Some("04"));
        // Known cross-border prefix: no answer rather than a guess.
        assert_eq!(prefecture_from_postcode("498-0801"), None);
        assert_eq!(prefecture_from_postcode("12-3"), None);
        // Every prefecture is reachable from some postcode range.
        let reached: std::collections::HashSet<&str> =
            (0..1000).filter_map(|p| prefecture_from_postcode(&format!("{p:03}0000"))).collect();
        assert_eq!(reached.len(), 47);
    }

    #[test]
    fn secondary_medical_areas_or_none() {
        assert_eq!(secondary_medical_area("100-0001"), Some("1301"));
        assert_eq!(secondary_medical_area("100-1101"), Some("1313"));
        assert_eq!(secondary_medical_area("154-0001"), Some("1303"));
        assert_eq!(secondary_medical_area("192-0001"), Some("1309"));
        assert_eq!(secondary_medical_area("190-0001"), None, "shared prefix");
        assert_eq!(secondary_medical_area("530-0001"), None, "Osaka is not mapped");
        assert_eq!(secondary_medical_area_name("1313"), Some("島しょ"));
        // Every area code used by the postcode table is a known area of Tokyo.
        for f in data_lines(include_str!("../data/postcode_secondary_medical_area.tsv")) {
            if f[1] != "-" {
                assert!(secondary_medical_area_name(f[1]).is_some(), "{}", f[1]);
                assert_eq!(prefecture_from_postcode(&format!("{:0<7}", f[0])), Some("13"), "{}", f[0]);
            }
        }
    }
}
