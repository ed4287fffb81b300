//! Identifier rendering per source convention, plus per-record noise.
//!
//! Normalizable variants (linkage must survive them): full-/half-width digit switch,
//! hiragana or half-width katakana instead of katakana, small kana written large, dropped
//! long-vowel mark, missing branch number. True typos (linkage may fail): one digit of 番号
//! changed, one kana replaced, birth date off by one day.

use chrono::{Days, NaiveDate};

use crate::SynthConfig;
use crate::person::Person;
use crate::rng::Rng;

/// How a source writes identifiers before noise.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// 記号/番号 digits full-width.
    pub full_width: bool,
    /// 国保 6-digit insurer numbers zero-padded to 8.
    pub pad_insurer: bool,
    /// Separator between family and given kana.
    pub kana_sep: &'static str,
}

/// Identifiers of one record, as written.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub insurer: Option<String>,
    pub kigo: Option<String>,
    pub bango: Option<String>,
    pub branch: Option<String>,
    pub kana: String,
    pub birth: NaiveDate,
    pub sex: u8,
}

/// Which noise a record received (for tests and the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    None,
    Variant,
    Typo,
}

/// Full-width form of ASCII digits and letters.
pub fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' | 'A'..='Z' | 'a'..='z' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Half-width form of full-width digits and letters.
pub fn half_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '０'..='９' | 'Ａ'..='Ｚ' | 'ａ'..='ｚ' => char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c),
            _ => c,
        })
        .collect()
}

fn has_full_digits(s: &str) -> bool {
    s.chars().any(|c| matches!(c, '０'..='９'))
}

/// Katakana → hiragana.
pub fn hiragana(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ァ'..='ヶ' => char::from_u32(c as u32 - 0x60).unwrap_or(c),
            _ => c,
        })
        .collect()
}

const FULL: &str = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲンァィゥェォャュョッー　";
const HALF: &str = "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜｦﾝｧｨｩｪｫｬｭｮｯｰ ";

fn half_one(c: char, out: &mut String) {
    if let Some(i) = FULL.chars().position(|f| f == c) {
        out.extend(HALF.chars().nth(i));
        return;
    }
    // Voiced (+1) and semi-voiced (+2) forms of the unvoiced base.
    for (delta, mark) in [(1u32, 'ﾞ'), (2, 'ﾟ')] {
        if let Some(base) = char::from_u32(c as u32 - delta)
            && matches!(base, 'カ'..='ト' | 'ハ'..='ホ')
            && let Some(i) = FULL.chars().position(|f| f == base)
        {
            out.extend(HALF.chars().nth(i));
            out.push(mark);
            return;
        }
    }
    if c == 'ヴ' {
        out.push_str("ｳﾞ");
        return;
    }
    out.push(c);
}

/// Katakana → half-width katakana (dakuten as separate marks).
pub fn half_kana(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        half_one(c, &mut out);
    }
    out
}

fn small_to_large(s: &str) -> Option<String> {
    let mut changed = false;
    let out = s
        .chars()
        .map(|c| {
            let l = match c {
                'ャ' => 'ヤ',
                'ュ' => 'ユ',
                'ョ' => 'ヨ',
                'ッ' => 'ツ',
                'ァ' => 'ア',
                'ィ' => 'イ',
                'ェ' => 'エ',
                'ォ' => 'オ',
                _ => c,
            };
            changed |= l != c;
            l
        })
        .collect();
    changed.then_some(out)
}

const TYPO_KANA: &[char] =
    &['ア', 'カ', 'サ', 'タ', 'ナ', 'ハ', 'マ', 'ヤ', 'ラ', 'イ', 'キ', 'シ', 'ミ', 'リ', 'ノ', 'ト'];

/// Render the identifiers of `p` for one record, with noise drawn from (seed, record tag).
pub fn render(cfg: &SynthConfig, p: &Person, style: Style, record: u64) -> (Rendered, NoiseKind) {
    let mut r = Rng::new(cfg.seed, crate::person::tag::NOISE, crate::rng::mix(&[p.index, record]));
    let card = p.card.as_ref();
    let width = |s: &str| if style.full_width { full_width(s) } else { s.to_owned() };
    let mut out = Rendered {
        insurer: card.map(|c| if style.pad_insurer { format!("{:0>8}", c.insurer) } else { c.insurer.clone() }),
        kigo: card.and_then(|c| c.kigo.as_deref().map(width)),
        bango: card.map(|c| width(&c.bango)),
        branch: card.and_then(|c| c.branch.clone()),
        kana: p.kana(style.kana_sep),
        birth: p.birth,
        sex: p.sex,
    };
    let mut kind = NoiseKind::None;
    if r.chance(cfg.variant_rate) {
        kind = NoiseKind::Variant;
        match r.below(5) {
            0 if out.bango.is_some() => {
                let flip = |s: &String| if has_full_digits(s) { half_width(s) } else { full_width(s) };
                out.kigo = out.kigo.as_ref().map(flip);
                out.bango = out.bango.as_ref().map(flip);
            }
            1 => out.kana = hiragana(&out.kana),
            2 => out.kana = half_kana(&out.kana),
            3 if out.kana.contains('ー') => out.kana = out.kana.replace('ー', ""),
            3 if small_to_large(&out.kana).is_some() => out.kana = small_to_large(&out.kana).unwrap_or_default(),
            4 if out.branch.is_some() => out.branch = None,
            _ => out.kana = hiragana(&out.kana),
        }
    }
    if r.chance(cfg.typo_rate) {
        kind = NoiseKind::Typo;
        match r.below(3) {
            0 if out.bango.is_some() => {
                let b = out.bango.take().unwrap_or_default();
                let chars: Vec<char> = b.chars().collect();
                let i = r.below(chars.len() as u64) as usize;
                let full = matches!(chars[i], '０'..='９');
                let d = if full { chars[i] as u32 - '０' as u32 } else { chars[i] as u32 - '0' as u32 };
                let nd = (d + 1 + r.below(9) as u32) % 10;
                let nc = char::from_u32(nd + if full { '０' as u32 } else { '0' as u32 }).unwrap_or('0');
                out.bango = Some(chars.iter().enumerate().map(|(j, c)| if j == i { nc } else { *c }).collect());
            }
            2 => {
                let d = if r.chance(0.5) {
                    out.birth.checked_add_days(Days::new(1))
                } else {
                    out.birth.checked_sub_days(Days::new(1))
                };
                out.birth = d.unwrap_or(out.birth);
            }
            _ => {
                let chars: Vec<char> = out.kana.chars().collect();
                let positions: Vec<usize> =
                    chars.iter().enumerate().filter(|(_, c)| !matches!(c, ' ' | '　')).map(|(i, _)| i).collect();
                let i = positions[r.below(positions.len() as u64) as usize];
                let mut nc = *r.pick(TYPO_KANA);
                if nc == chars[i] {
                    nc = 'ヌ';
                }
                out.kana = chars.iter().enumerate().map(|(j, c)| if j == i { nc } else { *c }).collect();
            }
        }
    }
    (out, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_and_kana_conversions() {
        assert_eq!(full_width("19D0001"), "１９Ｄ０００１");
        assert_eq!(half_width("１９Ｄ０００１"), "19D0001");
        assert_eq!(hiragana("ヤマダ タロウ"), "やまだ たろう");
        assert_eq!(half_kana("ヤマダ タロウ"), "ﾔﾏﾀﾞ ﾀﾛｳ");
        assert_eq!(half_kana("パピプ・ジョージ"), "ﾊﾟﾋﾟﾌﾟ・ｼﾞｮｰｼﾞ");
        assert_eq!(small_to_large("キョウコ").as_deref(), Some("キヨウコ"));
        assert_eq!(small_to_large("タロウ"), None);
    }
}
