//! A person's care pathway over the period: visits, labs, prescriptions, immunizations.

use chrono::{Datelike, Days, NaiveDate, Weekday};

use crate::SynthConfig;
use crate::person::{CLINICS, HOSPITALS, Person, add_months, period_start, tag};
use crate::rng::Rng;
use crate::tables::{self, ACUTE, CHRONIC};

/// Why a visit happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitKind {
    /// Follow-up of chronic conditions.
    Chronic,
    /// An acute episode.
    Acute,
    /// Health checkup (not billed to insurance: no receipt).
    Checkup,
    /// Haemodialysis session (heavy-tail persons).
    Dialysis,
    /// A short hospital stay (EHR only: inpatient receipts are out of scope).
    Inpatient,
}

/// One visit.
#[derive(Debug, Clone)]
pub struct Visit {
    pub facility: usize,
    pub date: NaiveDate,
    /// Length of stay in days for inpatient visits, else 0.
    pub stay: u32,
    pub hour: u32,
    pub kind: VisitKind,
    /// Index into [`ACUTE`] for acute visits.
    pub acute: Option<usize>,
    /// Indices into [`tables::LABS`].
    pub labs: Vec<usize>,
    /// Indices into [`tables::DRUGS`] prescribed, with days supplied.
    pub drugs: Vec<usize>,
    pub supply_days: u32,
}

/// An immunization.
#[derive(Debug, Clone)]
pub struct Shot {
    pub vaccine: usize,
    pub date: NaiveDate,
}

/// A person's whole pathway.
#[derive(Debug, Clone)]
pub struct Pathway {
    pub visits: Vec<Visit>,
    pub shots: Vec<Shot>,
    /// Onset date per chronic condition (same order as `Person::chronic`).
    pub onsets: Vec<NaiveDate>,
}

fn day_in(month_start: NaiveDate, r: &mut Rng) -> NaiveDate {
    let mut d = month_start.checked_add_days(Days::new(r.below(28))).unwrap_or(month_start);
    if d.weekday() == Weekday::Sun {
        d = d.succ_opt().unwrap_or(d);
    }
    d
}

/// The pathway of `p`.
pub fn pathway(cfg: &SynthConfig, p: &Person) -> Pathway {
    let mut r = Rng::new(cfg.seed, tag::VISITS, p.index);
    let start = period_start(cfg);
    let months = cfg.months;
    let mut visits = Vec::new();
    let onsets =
        p.chronic.iter().map(|_| start.checked_sub_days(Days::new(30 + r.below(3650))).unwrap_or(start)).collect();
    let chronic_drugs = {
        let mut d: Vec<usize> = p.chronic.iter().flat_map(|c| CHRONIC[*c].drugs.iter().copied()).collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    let chronic_labs = {
        let mut l: Vec<usize> = p.chronic.iter().flat_map(|c| CHRONIC[*c].labs.iter().copied()).collect();
        l.sort_unstable();
        l.dedup();
        l
    };

    if p.heavy {
        // Haemodialysis three times a week: thousands of lab rows and receipt day marks.
        let end = add_months(start, months);
        let mut d = start;
        let mut first_in_month = true;
        let mut month = d.month();
        while d < end {
            if d.month() != month {
                month = d.month();
                first_in_month = true;
            }
            if matches!(d.weekday(), Weekday::Mon | Weekday::Wed | Weekday::Fri) {
                visits.push(Visit {
                    facility: p.chronic_site,
                    date: d,
                    stay: 0,
                    hour: 8,
                    kind: VisitKind::Dialysis,
                    acute: None,
                    labs: tables::DIALYSIS_LABS.to_vec(),
                    drugs: if first_in_month { chronic_drugs.clone() } else { Vec::new() },
                    supply_days: 30,
                });
                first_in_month = false;
            }
            d = d.succ_opt().unwrap_or(end);
        }
    } else if !p.chronic.is_empty() {
        let interval = if r.chance(0.6) { 1 } else { 2 };
        let offset = r.below(interval);
        let mut n = 0;
        for m in 0..u64::from(months) {
            if m % interval != offset {
                continue;
            }
            let date = day_in(add_months(start, m as u32), &mut r);
            visits.push(Visit {
                facility: p.chronic_site,
                date,
                stay: 0,
                hour: 9 + r.below(8) as u32,
                kind: VisitKind::Chronic,
                acute: None,
                labs: if n % 3 == 0 { chronic_labs.clone() } else { Vec::new() },
                drugs: chronic_drugs.clone(),
                supply_days: 28 * interval as u32,
            });
            n += 1;
        }
    }

    // Acute episodes, seasonal.
    let rate = match p.age {
        0..=9 => 3.0,
        10..=19 => 1.2,
        20..=64 => 0.9,
        _ => 1.3,
    } * f64::from(months)
        / 12.0;
    let base = [50u64, 15, 15, 10, 10];
    for _ in 0..r.count(rate) {
        let m = r.weighted((0..months).map(|m| ACUTE.iter().map(|a| a.season[(m % 12) as usize]).sum::<u64>()));
        let moy = m % 12;
        let a = r.weighted(ACUTE.iter().zip(base).map(|(a, b)| a.season[moy] * b));
        let facility = if r.chance(0.8) { p.home_clinic } else { r.below((CLINICS + HOSPITALS) as u64) as usize };
        visits.push(Visit {
            facility,
            date: day_in(add_months(start, m as u32), &mut r),
            stay: 0,
            hour: 9 + r.below(9) as u32,
            kind: VisitKind::Acute,
            acute: Some(a),
            labs: ACUTE[a].labs.to_vec(),
            drugs: ACUTE[a].drugs.to_vec(),
            supply_days: 5,
        });
    }

    // Checkup at a hospital.
    if p.age >= 40 && r.chance(0.35) {
        let m = r.below(u64::from(months)) as u32;
        visits.push(Visit {
            facility: CLINICS + r.below(HOSPITALS as u64) as usize,
            date: day_in(add_months(start, m), &mut r),
            stay: 0,
            hour: 9,
            kind: VisitKind::Checkup,
            acute: None,
            labs: tables::CHECKUP_LABS.to_vec(),
            drugs: Vec::new(),
            supply_days: 0,
        });
    }

    // A short stay for some elderly chronic patients followed at a hospital.
    if p.age >= 65 && p.chronic_site >= CLINICS && !p.heavy && r.chance(0.08) {
        let m = r.below(u64::from(months)) as u32;
        let mut labs = tables::INFECTION_PANEL.to_vec();
        labs.extend_from_slice(&[11, 12, 7, 8, 9, 10]);
        visits.push(Visit {
            facility: p.chronic_site,
            date: day_in(add_months(start, m), &mut r),
            stay: 4 + r.below(12) as u32,
            hour: 10,
            kind: VisitKind::Inpatient,
            acute: Some(3),
            labs,
            drugs: vec![15],
            supply_days: 7,
        });
    }

    visits.sort_by_key(|v| (v.date, v.facility, v.hour));

    // Infection screening at the first hospital visit for some.
    if r.chance(0.3)
        && let Some(v) = visits.iter_mut().find(|v| v.facility >= CLINICS && v.kind != VisitKind::Inpatient)
    {
        v.labs.extend_from_slice(tables::INFECTION_PANEL);
    }

    let mut shots = Vec::new();
    if months >= 12 {
        let flu = if p.age >= 65 { 0.5 } else { 0.15 };
        if r.chance(flu) {
            let date = day_in(add_months(start, 9 + r.below(3) as u32), &mut r);
            shots.push(Shot { vaccine: 0, date });
        }
        if p.age >= 65 && r.chance(0.05) {
            let date = day_in(add_months(start, r.below(12) as u32), &mut r);
            shots.push(Shot { vaccine: 1, date });
        }
    }
    shots.sort_by_key(|s| s.date);
    Pathway { visits, shots, onsets }
}
