//! Turning a researcher's (ε, δ) request into per-measurement shares.
//!
//! # Split rule
//!
//! * **δ = 0** (pure ε-DP): every value measurement gets `Share::Epsilon(ε / n)` and uses a
//!   Laplace-family mechanism; sequential composition of pure DP adds the ε's. Private GROUP BY
//!   keys are refused ([`DpError::DeltaRequired`]): threshold partition selection has no pure-DP
//!   form.
//! * **δ > 0** (zCDP inside, (ε, δ) outside): let `m = n + 1` if a threshold is needed, else
//!   `m = n`. The threshold (if any) keeps `δ_thr = δ / 2` for its own failure probability (the
//!   chance that a key held by only `l0`-bounded persons crosses the threshold), and the zCDP part
//!   is converted to approximate DP at the remaining `δ − δ_thr`. `ρ_total` is the largest ρ for
//!   which OpenDP's `make_zCDP_to_approxDP` followed by `make_fix_delta(δ)`, applied to a
//!   measurement whose loss is `(ρ, δ_thr)` under `Approximate<ZeroConcentratedDivergence>`,
//!   reports an ε ≤ the requested ε. Every measurement (values and threshold alike) then gets
//!   `Share::Rho(ρ_total / m)`, shaved by one part in 10¹² so that the float sum of the shares can
//!   never round above `ρ_total`.
//!
//! zCDP composes by adding ρ and the threshold's δ adds to the conversion's δ, so the whole
//! query is (ε, δ)-DP; the test `built_measurements_compose_within_request` checks this with the
//! privacy maps of the actually built mechanisms.

use opendp::combinators::{make_fix_delta, make_zCDP_to_approxDP};
use opendp::core::{Function, Measurement, PrivacyMap};
use opendp::domains::AtomDomain;
use opendp::measures::{Approximate, ZeroConcentratedDivergence};
use opendp::metrics::DiscreteDistance;
use serde::Serialize;

use crate::error::{DpError, Result};

/// What the researcher asked to spend on one query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Request {
    /// ε > 0, finite.
    pub epsilon: f64,
    /// 0 ≤ δ < 1.
    pub delta: f64,
}

impl Request {
    /// A validated request.
    pub fn new(epsilon: f64, delta: f64) -> Result<Request> {
        let r = Request { epsilon, delta };
        r.validate()?;
        Ok(r)
    }

    /// Checks ε > 0 finite and 0 ≤ δ < 1.
    pub fn validate(&self) -> Result<()> {
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(DpError::InvalidBudget(format!("epsilon must be positive and finite, got {}", self.epsilon)));
        }
        // `!(0 <= δ < 1)` also rejects NaN; -0.0 is refused as OpenDP refuses it.
        if !(self.delta >= 0.0 && self.delta < 1.0) || self.delta.is_sign_negative() {
            return Err(DpError::InvalidBudget(format!("delta must be in [0, 1), got {}", self.delta)));
        }
        Ok(())
    }
}

/// The privacy loss one measurement may incur.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Share {
    /// zCDP: ρ (Gaussian-family mechanisms).
    Rho(f64),
    /// Pure DP: ε (Laplace-family mechanisms).
    Epsilon(f64),
}

impl Share {
    /// The number inside, ρ or ε.
    pub fn value(&self) -> f64 {
        match *self {
            Share::Rho(v) | Share::Epsilon(v) => v,
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        let v = self.value();
        if v.is_finite() && v > 0.0 {
            Ok(())
        } else {
            Err(DpError::InvalidArgument(format!("share must be positive and finite, got {v}")))
        }
    }
}

/// The share of the threshold partition-selection mechanism: a ρ for its noisy counts and the δ
/// its threshold must achieve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdShare {
    /// ρ for the noisy counts of the released keys.
    pub rho: f64,
    /// δ budget for the threshold (probability bound of releasing a key that depends on few persons).
    pub delta: f64,
}

impl ThresholdShare {
    /// The ρ part as a [`Share`].
    pub fn share(&self) -> Share {
        Share::Rho(self.rho)
    }
}

/// Result of [`allocate`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allocation {
    request: Request,
    values: Vec<Share>,
    threshold: Option<ThresholdShare>,
    rho_total: Option<f64>,
}

impl Allocation {
    /// One share per value measurement, in the order the caller will build them (all equal).
    pub fn values(&self) -> &[Share] {
        &self.values
    }

    /// The share of value measurement `i`.
    pub fn value(&self, i: usize) -> Option<Share> {
        self.values.get(i).copied()
    }

    /// The threshold's share, when one was requested.
    pub fn threshold(&self) -> Option<ThresholdShare> {
        self.threshold
    }

    /// The total ρ converted to the request (δ > 0 only).
    pub fn rho_total(&self) -> Option<f64> {
        self.rho_total
    }

    /// The (ε, δ) charged to the ledger: exactly the request.
    pub fn charged(&self) -> (f64, f64) {
        (self.request.epsilon, self.request.delta)
    }
}

/// Below this factor the shares are shaved so that float sums never exceed the total.
const SHAVE: f64 = 1.0 - 1e-12;

/// Splits a request among `n_value_measurements` value releases and, when `needs_threshold`, one
/// threshold partition selection. See the module docs for the rule.
pub fn allocate(req: &Request, n_value_measurements: usize, needs_threshold: bool) -> Result<Allocation> {
    req.validate()?;
    let parts = n_value_measurements + usize::from(needs_threshold);
    if parts == 0 {
        return Err(DpError::InvalidArgument("nothing to allocate: no measurement".into()));
    }
    if req.delta == 0.0 {
        if needs_threshold {
            return Err(DpError::DeltaRequired);
        }
        let each = split(req.epsilon, n_value_measurements);
        tracing::debug!(epsilon = req.epsilon, n = n_value_measurements, each, "pure-DP allocation");
        return Ok(Allocation {
            request: *req,
            values: vec![Share::Epsilon(each); n_value_measurements],
            threshold: None,
            rho_total: None,
        });
    }
    let threshold_delta = if needs_threshold { req.delta / 2.0 } else { 0.0 };
    let rho_total = max_rho(req.epsilon, req.delta, threshold_delta)?;
    let each = split(rho_total, parts);
    tracing::debug!(
        epsilon = req.epsilon,
        delta = req.delta,
        rho_total,
        parts,
        each,
        threshold_delta,
        "zCDP allocation"
    );
    Ok(Allocation {
        request: *req,
        values: vec![Share::Rho(each); n_value_measurements],
        threshold: needs_threshold.then_some(ThresholdShare { rho: each, delta: threshold_delta }),
        rho_total: Some(rho_total),
    })
}

/// `total / parts`, lowered until `parts` copies summed left to right stay ≤ `total`.
fn split(total: f64, parts: usize) -> f64 {
    let mut each = total / parts as f64 * SHAVE;
    while (0..parts).fold(0.0, |acc: f64, _| acc + each) > total {
        each = each.next_down();
    }
    each
}

/// The ε that OpenDP's zCDP → approximate-DP conversion gives for a composed loss of
/// `(rho, threshold_delta)` at total δ `delta`.
pub fn rho_to_epsilon(rho: f64, delta: f64, threshold_delta: f64) -> Result<f64> {
    // A measurement that is never invoked: it only carries the composed privacy loss through
    // OpenDP's conversion combinators, which are the source of truth for the conversion.
    let carrier = Measurement::new(
        AtomDomain::<bool>::default(),
        DiscreteDistance,
        Approximate(ZeroConcentratedDivergence),
        Function::new(|_: &bool| ()),
        PrivacyMap::new(move |_: &u32| (rho, threshold_delta)),
    )
    .map_err(DpError::opendp("build"))?;
    let approx = make_zCDP_to_approxDP(carrier).map_err(DpError::opendp("conversion"))?;
    let fixed = make_fix_delta(&approx, delta).map_err(DpError::opendp("conversion"))?;
    let (epsilon, _) = fixed.map(&1).map_err(DpError::opendp("conversion"))?;
    Ok(epsilon)
}

/// (ε, δ, threshold δ) as bits → largest ρ.
type RhoMemo = std::sync::Mutex<std::collections::HashMap<(u64, u64, u64), f64>>;

/// Entries kept by [`max_rho`]'s memo before it is emptied (a researcher may try many budgets).
const MAX_RHO_MEMO: usize = 4096;

/// Largest ρ with `rho_to_epsilon(ρ) ≤ epsilon`, memoized: the search calls OpenDP's
/// conversion up to a few dozen times (~25 ms in all), and every query of a given (ε, δ) asks
/// the same. The result is a pure function of the three numbers, so the memo changes no answer.
fn max_rho(epsilon: f64, delta: f64, threshold_delta: f64) -> Result<f64> {
    static MEMO: std::sync::LazyLock<RhoMemo> = std::sync::LazyLock::new(Default::default);
    let key = (epsilon.to_bits(), delta.to_bits(), threshold_delta.to_bits());
    if let Some(rho) = MEMO.lock().ok().and_then(|m| m.get(&key).copied()) {
        return Ok(rho);
    }
    let rho = max_rho_search(epsilon, delta, threshold_delta)?;
    if let Ok(mut m) = MEMO.lock() {
        if m.len() >= MAX_RHO_MEMO {
            m.clear();
        }
        m.insert(key, rho);
    }
    Ok(rho)
}

/// The search behind [`max_rho`] (ε is increasing in ρ).
fn max_rho_search(epsilon: f64, delta: f64, threshold_delta: f64) -> Result<f64> {
    let rho = largest_fitting(epsilon, |rho| rho_to_epsilon(rho, delta, threshold_delta))?;
    if rho <= 0.0 {
        return Err(DpError::InvalidBudget(format!(
            "epsilon {epsilon} is too small for delta {delta}: no positive rho fits"
        )));
    }
    Ok(rho)
}

/// Relative width of the final bracket: ρ is at most this fraction below the exact maximum.
const RHO_PRECISION: f64 = 1e-12;

/// Largest ρ with `eps_of(ρ) ≤ epsilon` (0 when none above 0 fits), for an increasing
/// `eps_of`: regula falsi with the
/// Illinois modification over a bracket `[lo, hi]` in which `lo` always fits and `hi` never
/// does, so the answer is a ρ that was evaluated and fits, whatever the function's rounding.
/// The conversion is smooth, so this needs at most 25 evaluations in the tested budgets where
/// bisection to the last bit took about sixty (each an OpenDP conversion of ~2 ms).
fn largest_fitting(epsilon: f64, eps_of: impl Fn(f64) -> Result<f64>) -> Result<f64> {
    let g = |rho: f64| -> Result<f64> { Ok(eps_of(rho)? - epsilon) };
    let (mut lo, mut glo) = (0.0_f64, -epsilon);
    let mut hi = epsilon;
    let mut ghi = g(hi)?;
    while ghi <= 0.0 {
        (lo, glo) = (hi, ghi);
        hi *= 2.0;
        if !hi.is_finite() {
            return Err(DpError::InvalidBudget("conversion did not bound rho".into()));
        }
        ghi = g(hi)?;
    }
    // Which end the last step moved: -1 lo, 1 hi.
    let mut side = 0;
    for _ in 0..200 {
        if lo > 0.0 && hi - lo <= lo * RHO_PRECISION {
            break;
        }
        let mut x = (lo * ghi - hi * glo) / (ghi - glo);
        if !(x > lo && x < hi) {
            x = lo + (hi - lo) / 2.0;
            if x <= lo || x >= hi {
                break;
            }
        }
        let gx = g(x)?;
        if gx <= 0.0 {
            (lo, glo) = (x, gx);
            if side == -1 {
                ghi /= 2.0;
            }
            side = -1;
        } else {
            (hi, ghi) = (x, gx);
            if side == 1 {
                glo /= 2.0;
            }
            side = 1;
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mechanism::{FloatNoise, IntNoise, Threshold};

    #[test]
    fn request_validation() {
        assert!(Request::new(1.0, 0.0).is_ok());
        assert!(Request::new(1.0, 1e-6).is_ok());
        for (e, d) in [
            (0.0, 0.0),
            (-1.0, 0.0),
            (f64::INFINITY, 0.0),
            (f64::NAN, 0.0),
            (1.0, 1.0),
            (1.0, -1e-9),
            (1.0, -0.0),
            (1.0, f64::NAN),
        ] {
            let err = Request::new(e, d).unwrap_err();
            assert_eq!(err.code(), "dp_invalid_budget", "({e}, {d})");
        }
    }

    #[test]
    fn pure_split_is_even_and_sums_within_epsilon() {
        let a = allocate(&Request::new(1.0, 0.0).unwrap(), 3, false).unwrap();
        assert_eq!(a.values().len(), 3);
        for s in a.values() {
            let Share::Epsilon(e) = *s else { panic!("pure DP must give epsilon shares") };
            assert!((e - 1.0 / 3.0).abs() < 1e-11);
        }
        let sum: f64 = a.values().iter().map(Share::value).sum();
        assert!(sum <= 1.0);
        assert_eq!(a.threshold(), None);
        assert_eq!(a.rho_total(), None);
        assert_eq!(a.charged(), (1.0, 0.0));
    }

    #[test]
    fn threshold_without_delta_is_refused() {
        let err = allocate(&Request::new(1.0, 0.0).unwrap(), 2, true).unwrap_err();
        assert_eq!(err.code(), "dp_private_keys_need_delta");
        let err = allocate(&Request::new(1.0, 0.0).unwrap(), 0, false).unwrap_err();
        assert_eq!(err.code(), "dp_invalid_argument");
    }

    #[test]
    fn rho_total_is_the_largest_that_converts_within_epsilon() {
        let req = Request::new(1.0, 1e-6).unwrap();
        let a = allocate(&req, 2, false).unwrap();
        let rho = a.rho_total().unwrap();
        assert!(rho_to_epsilon(rho, 1e-6, 0.0).unwrap() <= 1.0);
        // maximal: 1e-9 relatively larger no longer fits
        assert!(rho_to_epsilon(rho * (1.0 + 1e-9), 1e-6, 0.0).unwrap() > 1.0);
        // The classic bound ε = ρ + 2√(ρ ln(1/δ)) is looser than OpenDP's conversion, so ρ lies
        // above the ρ that solves it (≈ 0.0126 for ε = 1, δ = 1e-6) and below ε.
        let classic = {
            let l = (1.0f64 / 1e-6).ln();
            let s = -l.sqrt() + (l + 1.0).sqrt();
            s * s
        };
        assert!(rho > classic, "rho {rho} classic {classic}");
        assert!(rho < 1.0);
        for s in a.values() {
            assert_eq!(*s, Share::Rho(rho / 2.0 * SHAVE));
        }
    }

    #[test]
    fn rho_search_is_exact_and_needs_few_conversions() {
        for (eps, delta, thr) in [(1.0, 1e-6, 0.0), (0.1, 1e-9, 0.0), (2.0, 1e-6, 5e-7), (8.0, 1e-5, 0.0)] {
            let calls = std::cell::Cell::new(0u32);
            let rho = largest_fitting(eps, |r| {
                calls.set(calls.get() + 1);
                rho_to_epsilon(r, delta, thr)
            })
            .unwrap();
            assert!(rho_to_epsilon(rho, delta, thr).unwrap() <= eps);
            assert!(rho_to_epsilon(rho * (1.0 + 1e-9), delta, thr).unwrap() > eps, "({eps}, {delta}): not maximal");
            // Bisection to the last bit took ~60 conversions.
            assert!(calls.get() <= 25, "({eps}, {delta}): {} conversions", calls.get());
        }
        // A function that never fits below its jump: the answer still fits.
        let rho = largest_fitting(1.0, |r| Ok(if r < 0.3 { 0.5 } else { 2.0 })).unwrap();
        assert!(rho < 0.3 && rho > 0.3 * (1.0 - 1e-9));
    }

    #[test]
    fn threshold_gets_one_share_of_rho_and_half_of_delta() {
        let req = Request::new(2.0, 1e-6).unwrap();
        let a = allocate(&req, 3, true).unwrap();
        let rho = a.rho_total().unwrap();
        let t = a.threshold().unwrap();
        assert_eq!(t.delta, 5e-7);
        assert_eq!(t.rho, rho / 4.0 * SHAVE);
        assert_eq!(a.values().len(), 3);
        assert!(a.values().iter().all(|s| *s == Share::Rho(t.rho)));
        // The conversion uses only the other half of δ, so ρ is smaller than without threshold.
        let without = allocate(&req, 3, false).unwrap().rho_total().unwrap();
        assert!(rho < without);
        assert!(rho_to_epsilon(rho, 1e-6, 5e-7).unwrap() <= 2.0);
        assert_eq!(a.charged(), (2.0, 1e-6));
    }

    #[test]
    fn split_never_sums_above_total() {
        for parts in 1..50 {
            for total in [0.1, 1.0 / 3.0, 0.7, 1e-5, 3.0] {
                let each = split(total, parts);
                let sum = (0..parts).fold(0.0, |acc: f64, _| acc + each);
                assert!(sum <= total && each > 0.0);
            }
        }
    }

    /// Builds the real mechanisms with the allocated shares, reads each privacy map at its
    /// sensitivity, composes (Σρ, δ_thr) and converts with OpenDP: the result must be within the
    /// request. Also for the pure case: Σε ≤ ε.
    #[test]
    fn built_measurements_compose_within_request() {
        let req = Request::new(1.0, 1e-7).unwrap();
        let a = allocate(&req, 2, true).unwrap();
        let counts = IntNoise::new(3.0, 3f64.sqrt(), &a.value(0).unwrap()).unwrap();
        let sums = FloatNoise::new(10.0, 10.0, &a.value(1).unwrap()).unwrap();
        let t = a.threshold().unwrap();
        let thr = Threshold::new(3, 1, &t.share(), t.delta).unwrap();
        let (rho_thr, delta_thr) = thr.privacy_loss().unwrap();
        let rho_sum = counts.privacy_loss().unwrap() + sums.privacy_loss().unwrap() + rho_thr;
        assert!(delta_thr <= t.delta);
        assert!(rho_sum <= a.rho_total().unwrap());
        let eps = rho_to_epsilon(rho_sum, req.delta, delta_thr).unwrap();
        assert!(eps <= req.epsilon, "composed epsilon {eps}");
        // The shares are used almost entirely (no accidental waste of budget).
        assert!(eps > 0.99 * req.epsilon, "composed epsilon {eps}");

        let req = Request::new(0.5, 0.0).unwrap();
        let a = allocate(&req, 2, false).unwrap();
        let counts = IntNoise::new(1.0, 1.0, &a.value(0).unwrap()).unwrap();
        let sums = FloatNoise::new(4.0, 4.0, &a.value(1).unwrap()).unwrap();
        let eps = counts.privacy_loss().unwrap() + sums.privacy_loss().unwrap();
        assert!(eps <= 0.5 && eps > 0.499, "composed epsilon {eps}");
    }
}
