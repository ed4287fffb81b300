//! One synthetic person: demography, insurance card, conditions, care and consent, all drawn
//! from the person's own random stream (seed, person index).

use chrono::{Datelike, Days, NaiveDate};

use crate::SynthConfig;
use crate::rng::Rng;
use crate::tables::{self, CHRONIC, Prefecture};

/// Stream tags: each purpose draws from its own stream so that adding draws to one purpose
/// does not shift the others.
pub mod tag {
    pub const PERSON: u64 = 1;
    pub const REGION: u64 = 2;
    pub const VISITS: u64 = 3;
    pub const NOISE: u64 = 4;
    pub const CARE: u64 = 5;
    pub const CONSENT: u64 = 6;
    pub const IDS: u64 = 7;
}

/// Persons per region. A region has its own facilities and care providers, so that receipt and
/// care files are complete (and written) once the region's persons are generated.
pub const REGION_SIZE: u64 = 2000;
/// Clinics (receipts only) per region; hospitals come after them.
pub const CLINICS: usize = 4;
/// Hospitals per region: they also export FHIR (EHR facilities).
pub const HOSPITALS: usize = 2;
/// Care providers per region.
pub const PROVIDERS: usize = 2;

/// Kind of health insurance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsuranceKind {
    /// 協会けんぽ.
    Kyokai,
    /// 健康保険組合.
    Kumiai,
    /// 国民健康保険 (6-digit insurer number).
    Kokuho,
    /// 後期高齢者医療 (no 記号, no 枝番).
    Kouki,
    /// 生活保護: no insurance card, 公費 only.
    Welfare,
}

/// The insurance card, canonical (half-width) form.
#[derive(Debug, Clone)]
pub struct Card {
    pub kind: InsuranceKind,
    pub insurer: String,
    pub kigo: Option<String>,
    pub bango: String,
    pub branch: Option<String>,
}

/// A 公費 programme: payer number (8) and recipient number (7).
#[derive(Debug, Clone)]
pub struct PublicExpense {
    pub payer: String,
    pub recipient: String,
}

/// A care-level certification.
#[derive(Debug, Clone)]
pub struct CareCert {
    pub level: &'static str,
    pub insurer: String,
    pub insured: String,
    pub provider: usize,
    pub application: NaiveDate,
    pub decision: NaiveDate,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
}

/// One consent registry row before identifiers are rendered.
#[derive(Debug, Clone)]
pub struct ConsentEvent {
    pub purpose: &'static str,
    pub status: &'static str,
    pub date: NaiveDate,
    pub with_card: bool,
    pub with_kana: bool,
}

/// A synthetic person.
#[derive(Debug, Clone)]
pub struct Person {
    pub index: u64,
    pub sex: u8,
    pub birth: NaiveDate,
    pub age: u32,
    pub family: (&'static str, &'static str),
    pub given: (&'static str, &'static str),
    pub card: Option<Card>,
    pub public: Vec<PublicExpense>,
    pub zip: String,
    pub address: String,
    pub city: &'static str,
    pub chronic: Vec<usize>,
    pub heavy: bool,
    pub home_clinic: usize,
    pub chronic_site: usize,
    pub care: Option<CareCert>,
    pub consent: Vec<ConsentEvent>,
    pub med_allergy: Option<usize>,
    pub food_allergy: Option<usize>,
}

/// The region of a person and its fixed attributes.
#[derive(Debug, Clone)]
pub struct Region {
    pub index: u64,
    pub pref: &'static Prefecture,
    pub facilities: Vec<Facility>,
    pub providers: Vec<String>,
    pub care_insurer: String,
}

/// A medical facility.
#[derive(Debug, Clone)]
pub struct Facility {
    /// 7-digit medical institution code (receipt IR field 4).
    pub code: String,
    /// 10-digit institution number (prefecture 2 + fee table 1 + code 7), as in JP-CLINS.
    pub institution: String,
    pub name: String,
    pub phone: String,
    /// Dispenses in house (IY lines) rather than writing prescription slips.
    pub in_house: bool,
    /// Writes 記号/番号 with full-width digits in FHIR.
    pub full_width: bool,
}

fn check_digit(digits: &str) -> u32 {
    let s: u32 = digits.bytes().enumerate().map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 2 } else { 1 }).sum();
    (10 - s % 10) % 10
}

fn with_check(digits: String) -> String {
    let c = check_digit(&digits);
    format!("{digits}{c}")
}

/// A bijection of `0..modulus` (modulus a power of ten; `mult` coprime with 10).
fn permute(x: u64, mult: u64, seed: u64, modulus: u64) -> u64 {
    let add = crate::rng::mix(&[seed, modulus]) % modulus;
    ((u128::from(x % modulus) * u128::from(mult) + u128::from(add)) % u128::from(modulus)) as u64
}

impl Region {
    /// The region with this index.
    pub fn new(seed: u64, index: u64) -> Region {
        let mut r = Rng::new(seed, tag::REGION, index);
        let p = r.weighted(tables::PREFECTURES.iter().map(|p| p.pop));
        let pref = &tables::PREFECTURES[p];
        let kinds = ["内科クリニック", "医院", "診療所", "ファミリークリニック"];
        let facilities = (0..CLINICS + HOSPITALS)
            .map(|f| {
                let n = 100_000 + index * (CLINICS + HOSPITALS) as u64 + f as u64;
                let code = with_check(format!("{n:06}"));
                let hospital = f >= CLINICS;
                let town = r.pick(tables::TOWNS);
                let name = if hospital {
                    format!("{}{}病院", pref.city.trim_end_matches(['市', '区']), town)
                } else {
                    format!("{}{}", town, r.pick(&kinds))
                };
                Facility {
                    institution: format!("{:02}1{code}", pref.code),
                    code,
                    name,
                    phone: format!("0{}{:08}", r.range(1, 9), r.below(100_000_000)),
                    in_house: !hospital && r.chance(0.3),
                    full_width: r.chance(0.5),
                }
            })
            .collect();
        let providers = (0..PROVIDERS)
            .map(|i| format!("{:02}7{:07}", pref.code, 1_000_000 + index * PROVIDERS as u64 + i as u64))
            .collect();
        let care_insurer = with_check(format!("{:02}{:03}", pref.code, 100 + index % 900));
        Region { index, pref, facilities, providers, care_insurer }
    }
}

fn age_band(age: u32) -> usize {
    match age {
        0..=19 => 0,
        20..=39 => 1,
        40..=49 => 2,
        50..=59 => 3,
        60..=69 => 4,
        70..=79 => 5,
        _ => 6,
    }
}

/// The first day of the generated period.
pub fn period_start(cfg: &SynthConfig) -> NaiveDate {
    NaiveDate::from_ymd_opt(cfg.start_year, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// The day after the generated period.
pub fn period_end(cfg: &SynthConfig) -> NaiveDate {
    add_months(period_start(cfg), cfg.months)
}

/// `d` plus `m` months (day clamped to 28 for simplicity of callers using the 1st).
pub fn add_months(d: NaiveDate, m: u32) -> NaiveDate {
    d.checked_add_months(chrono::Months::new(m)).unwrap_or(d)
}

impl Person {
    /// Person `index` of `region`.
    pub fn new(cfg: &SynthConfig, region: &Region, index: u64) -> Person {
        let mut r = Rng::new(cfg.seed, tag::PERSON, index);
        let start = period_start(cfg);
        let male_total: u64 = tables::AGE_PYRAMID.iter().map(|b| b.1).sum();
        let female_total: u64 = tables::AGE_PYRAMID.iter().map(|b| b.2).sum();
        let sex = if r.below(male_total + female_total) < male_total { 1 } else { 2 };
        let band = if sex == 1 {
            r.weighted(tables::AGE_PYRAMID.iter().map(|b| b.1))
        } else {
            r.weighted(tables::AGE_PYRAMID.iter().map(|b| b.2))
        };
        let age = tables::AGE_PYRAMID[band].0 + r.below(5) as u32;
        let birth = NaiveDate::from_ymd_opt(start.year() - age as i32, 1, 1)
            .and_then(|d| d.checked_sub_days(Days::new(1 + r.below(365))))
            .unwrap_or(start);
        let family = *r.pick(tables::FAMILY_NAMES);
        let old = birth.year() < 1975;
        let names = if sex == 1 {
            tables::MALE_NAMES.iter().filter(|n| n.2 == old).map(|n| (n.0, n.1)).collect::<Vec<_>>()
        } else {
            tables::FEMALE_NAMES.iter().filter(|n| n.2 == old).map(|n| (n.0, n.1)).collect::<Vec<_>>()
        };
        let given = *r.pick(&names);
        let pref = region.pref;
        let p2 = pref.code;

        // Insurance.
        let heavy = index % 10_000 == 7;
        let welfare = r.chance(0.016);
        let kind = if welfare {
            InsuranceKind::Welfare
        } else if age >= 75 {
            InsuranceKind::Kouki
        } else {
            let kokuho = if age >= 65 { 0.7 } else { 0.22 };
            let x = r.unit();
            if x < kokuho {
                InsuranceKind::Kokuho
            } else if x < kokuho + (1.0 - kokuho) * 0.55 {
                InsuranceKind::Kyokai
            } else {
                InsuranceKind::Kumiai
            }
        };
        let branch = match kind {
            InsuranceKind::Kouki | InsuranceKind::Welfare => None,
            _ if age < 20 => Some(format!("{:02}", 1 + r.below(3))),
            _ if r.chance(0.15) => Some("01".to_owned()),
            _ => Some("00".to_owned()),
        };
        let s = cfg.seed;
        let card = match kind {
            InsuranceKind::Welfare => None,
            InsuranceKind::Kyokai => Some(Card {
                kind,
                insurer: with_check(format!("01{p2:02}001")),
                kigo: Some(format!("{:08}", permute(index, 73_912_467_351, s, 100_000_000))),
                bango: {
                    let max = if r.chance(0.5) { 9 } else { 999 };
                    (1 + r.below(max)).to_string()
                },
                branch,
            }),
            InsuranceKind::Kumiai => {
                let mut kigo = (1 + r.below(9999)).to_string();
                if r.chance(0.1) {
                    kigo = format!("{}D{:04}", r.below(100), r.below(10_000));
                }
                Some(Card {
                    kind,
                    insurer: with_check(format!("06{p2:02}{:03}", r.below(1000))),
                    kigo: Some(kigo),
                    bango: (1 + permute(index, 7_919_243, s, 10_000)).to_string(),
                    branch,
                })
            }
            InsuranceKind::Kokuho => {
                let mut kigo = String::new();
                for _ in 0..1 + r.below(2) {
                    let k: &&str = r.pick(tables::KIGO_KANA);
                    kigo.push_str(k);
                }
                kigo.push_str(&(1 + r.below(99)).to_string());
                Some(Card {
                    kind,
                    insurer: with_check(format!("{p2:02}{:03}", 100 + region.index % 900)),
                    kigo: Some(kigo),
                    bango: format!("{:06}", permute(index, 6_119_534_671, s, 1_000_000)),
                    branch,
                })
            }
            InsuranceKind::Kouki => Some(Card {
                kind,
                insurer: with_check(format!("39{p2:02}{:03}", 100 + region.index % 900)),
                kigo: None,
                bango: format!("{:08}", permute(index, 84_526_190_373, s, 100_000_000)),
                branch: None,
            }),
        };

        // Conditions.
        let ab = age_band(age);
        let mut chronic: Vec<usize> = CHRONIC
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let f = if sex == 1 { c.male_factor } else { 1.0 };
                r.chance(c.prevalence[ab] * f / 100.0)
            })
            .map(|(i, _)| i)
            .collect();
        if heavy {
            for c in [0, 8] {
                if !chronic.contains(&c) {
                    chronic.push(c);
                }
            }
            chronic.sort_unstable();
        }

        let mut public = Vec::new();
        let recipient = |r: &mut Rng| format!("{:07}", r.below(10_000_000));
        if welfare {
            public.push(PublicExpense {
                payer: with_check(format!("12{p2:02}{:03}", r.below(1000))),
                recipient: recipient(&mut r),
            });
        }
        if chronic.contains(&5) && r.chance(0.4) {
            public.push(PublicExpense {
                payer: with_check(format!("21{p2:02}{:03}", r.below(1000))),
                recipient: recipient(&mut r),
            });
        }
        if r.chance(0.005) {
            public.push(PublicExpense {
                payer: with_check(format!("54{p2:02}{:03}", r.below(1000))),
                recipient: recipient(&mut r),
            });
        }

        let zip = format!("{}-{:04}", pref.zip3, r.below(10_000));
        let address = format!(
            "{}{}{}{}丁目{}-{}",
            pref.name,
            pref.city,
            r.pick(tables::TOWNS),
            r.range(1, 5),
            r.range(1, 30),
            r.range(1, 20)
        );
        let home_clinic = r.below(CLINICS as u64) as usize;
        let chronic_site =
            if heavy || r.chance(0.3) { CLINICS + r.below(HOSPITALS as u64) as usize } else { home_clinic };
        let med_allergy = r.chance(0.03).then(|| r.below(tables::MED_ALLERGENS.len() as u64) as usize);
        let food_allergy = r.chance(0.04).then(|| r.below(tables::FOOD_ALLERGENS.len() as u64) as usize);

        let care = care_cert(cfg, region, index, age, &chronic);
        let consent = consent_events(cfg, index, card.is_some());
        Person {
            index,
            sex,
            birth,
            age,
            family,
            given,
            card,
            public,
            zip,
            address,
            city: pref.city,
            chronic,
            heavy,
            home_clinic,
            chronic_site,
            care,
            consent,
            med_allergy,
            food_allergy,
        }
    }

    /// Canonical kana name: family, separator, given.
    pub fn kana(&self, sep: &str) -> String {
        format!("{}{sep}{}", self.family.1, self.given.1)
    }

    /// Kanji name with a full-width space.
    pub fn kanji(&self) -> String {
        format!("{}　{}", self.family.0, self.given.0)
    }
}

fn care_cert(cfg: &SynthConfig, region: &Region, index: u64, age: u32, chronic: &[usize]) -> Option<CareCert> {
    if age < 65 {
        return None;
    }
    let mut r = Rng::new(cfg.seed, tag::CARE, index);
    let band = ((age - 65) / 5).min(5) as usize;
    let mut rate = tables::CARE_RATE[band];
    if chronic.contains(&9) {
        rate = (rate * 2.5).min(95.0);
    }
    if !r.chance(rate / 100.0) {
        return None;
    }
    let level = tables::CARE_LEVELS[r.weighted(tables::CARE_LEVELS.iter().map(|l| l.1))].0;
    let start = period_start(cfg);
    let span = (period_end(cfg) - start).num_days().max(1) as u64;
    let (application, valid_from, months) = if r.chance(0.8) {
        // A renewal whose validity covers the start of the period.
        let from = start.checked_sub_days(Days::new(r.below(360))).unwrap_or(start);
        (from.checked_sub_days(Days::new(40 + r.below(20))).unwrap_or(from), from, [12u32, 24, 36][r.below(3) as usize])
    } else {
        let app = start.checked_add_days(Days::new(r.below(span))).unwrap_or(start);
        (app, app, [6u32, 12][r.below(2) as usize])
    };
    // Decided about a month after application (before the validity starts for renewals).
    let decision = application.checked_add_days(Days::new(20 + r.below(15))).unwrap_or(application);
    let valid_to = add_months(valid_from, months).pred_opt().unwrap_or(valid_from);
    Some(CareCert {
        level,
        insurer: region.care_insurer.clone(),
        insured: format!("{:010}", permute(index, 9_478_352_614_103, cfg.seed, 10_000_000_000)),
        provider: r.below(PROVIDERS as u64) as usize,
        application,
        decision,
        valid_from,
        valid_to,
    })
}

fn consent_events(cfg: &SynthConfig, index: u64, has_card: bool) -> Vec<ConsentEvent> {
    let mut r = Rng::new(cfg.seed, tag::CONSENT, index);
    let start = period_start(cfg);
    let span = (period_end(cfg) - start).num_days().max(1) as u64;
    let day = |r: &mut Rng| start.checked_add_days(Days::new(r.below(span))).unwrap_or(start);
    let mut out = Vec::new();
    let ids = |r: &mut Rng| {
        let with_card = has_card && r.chance(0.8);
        let with_kana = !with_card || r.chance(0.7);
        (with_card, with_kana)
    };
    let x = r.unit();
    if x < 0.08 {
        let (with_card, with_kana) = ids(&mut r);
        out.push(ConsentEvent { purpose: "research", status: "opt-out", date: day(&mut r), with_card, with_kana });
    } else if x < 0.23 {
        let (with_card, with_kana) = ids(&mut r);
        let d = day(&mut r);
        out.push(ConsentEvent { purpose: "research", status: "opt-in", date: d, with_card, with_kana });
        if r.chance(0.1) {
            let later = d.checked_add_days(Days::new(1 + r.below(120))).unwrap_or(d);
            let (with_card, with_kana) = ids(&mut r);
            out.push(ConsentEvent { purpose: "research", status: "withdrawn", date: later, with_card, with_kana });
        }
    }
    if r.chance(0.02) {
        let (with_card, with_kana) = ids(&mut r);
        out.push(ConsentEvent {
            purpose: "commercial-research",
            status: "opt-out",
            date: day(&mut r),
            with_card,
            with_kana,
        });
    }
    if r.chance(0.01) {
        let (with_card, with_kana) = ids(&mut r);
        out.push(ConsentEvent { purpose: "public-health", status: "opt-in", date: day(&mut r), with_card, with_kana });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::visits;

    fn persons(n: u64) -> Vec<Person> {
        let cfg = SynthConfig::default();
        (0..n).map(|i| Person::new(&cfg, &Region::new(cfg.seed, i / REGION_SIZE), i)).collect()
    }

    #[test]
    fn population_shape_is_japanese() {
        let ps = persons(20_000);
        let n = ps.len() as f64;
        let share = |f: &dyn Fn(&Person) -> bool| ps.iter().filter(|p| f(p)).count() as f64 / n;
        let old = share(&|p| p.age >= 65);
        assert!((0.26..0.32).contains(&old), "65+ share {old}");
        let kids = share(&|p| p.age < 15);
        assert!((0.09..0.14).contains(&kids), "under-15 share {kids}");
        let women_90 = ps.iter().filter(|p| p.age >= 90 && p.sex == 2).count();
        let men_90 = ps.iter().filter(|p| p.age >= 90 && p.sex == 1).count();
        assert!(women_90 > 2 * men_90, "women outlive men: {women_90} vs {men_90}");
        let ht = share(&|p| p.chronic.contains(&0));
        assert!((0.09..0.16).contains(&ht), "hypertension {ht}");
        let dm = share(&|p| p.chronic.contains(&1));
        assert!((0.03..0.08).contains(&dm), "diabetes {dm}");
        let kouki = share(&|p| p.card.as_ref().is_some_and(|c| c.kind == InsuranceKind::Kouki));
        assert!((0.13..0.19).contains(&kouki), "後期高齢者 {kouki}");
        let care = share(&|p| p.care.is_some());
        assert!((0.04..0.08).contains(&care), "care certified {care}");
        assert!(ps.iter().filter(|p| p.age >= 75).all(|p| p.card.as_ref().is_none_or(|c| c.kigo.is_none())));
    }

    #[test]
    fn heavy_tail_persons_have_thousands_of_rows() {
        let cfg = SynthConfig::default();
        let p = Person::new(&cfg, &Region::new(cfg.seed, 0), 7);
        assert!(p.heavy);
        let path = visits::pathway(&cfg, &p);
        let labs: usize = path.visits.iter().map(|v| v.labs.len()).sum();
        assert!(labs >= 1500, "{labs} lab rows");
        assert!(path.visits.len() >= 140);
        let ordinary = Person::new(&cfg, &Region::new(cfg.seed, 0), 8);
        assert!(!ordinary.heavy);
    }

    #[test]
    fn acute_visits_peak_in_winter() {
        let cfg = SynthConfig::default();
        let region = Region::new(cfg.seed, 0);
        let mut by_month = [0u32; 12];
        for i in 0..5000 {
            let p = Person::new(&cfg, &region, i);
            for v in visits::pathway(&cfg, &p).visits.iter().filter(|v| v.kind == visits::VisitKind::Acute) {
                by_month[v.date.month0() as usize] += 1;
            }
        }
        let winter = by_month[0] + by_month[1] + by_month[11];
        let summer = by_month[5] + by_month[6] + by_month[7];
        assert!(winter > summer * 2, "{by_month:?}");
    }
}
