//! Noise mechanisms, all of them OpenDP measurements.
//!
//! Every random value released by this module comes out of `Measurement::invoke` of an OpenDP
//! measurement built here: discrete Gaussian / discrete Laplace on integers, the same on a `2^k`
//! lattice for floats, Gaussian threshold partition selection, and the private-quantile
//! (exponential mechanism / permute-and-flip) for medians. Each constructor calibrates the scale
//! from the share and the sensitivity, then reads the measurement's own privacy map at that
//! sensitivity and refuses to return a mechanism whose map exceeds the share.

use std::collections::HashMap;

use opendp::accuracy::{
    discrete_gaussian_scale_to_accuracy, discrete_laplacian_scale_to_accuracy, gaussian_scale_to_accuracy,
    laplacian_scale_to_accuracy,
};
use opendp::core::Measurement;
use opendp::domains::{AtomDomain, MapDomain, VectorDomain};
use opendp::error::Fallible;
use opendp::measurements::{make_gaussian, make_gaussian_threshold, make_laplace, make_private_quantile};
use opendp::measures::{Approximate, MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{AbsoluteDistance, L0PInfDistance, L1Distance, L2Distance, L02InfDistance, SymmetricDistance};
use opendp::traits::CheckAtom;
use serde::Serialize;

use crate::accounting::Share;
use crate::error::{DpError, Result};

/// Two-sided 95 % intervals.
const ALPHA: f64 = 0.05;

/// Above this scale the 95 % half-width of the discrete Gaussian is taken from the continuous
/// Gaussian quantile (OpenDP's exact computation sums the pmf term by term, O(scale)); the two
/// differ by less than one unit there.
const DISCRETE_GAUSSIAN_EXACT_CI_MAX_SCALE: f64 = 10_000.0;

/// What a release discloses about its noise, for the `privacy.noise` part of the API answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoiseParams {
    /// `discrete_gaussian`, `discrete_laplace`, `gaussian`, `laplace`, `gaussian_threshold`,
    /// `exponential_quantile`.
    pub mechanism: &'static str,
    /// OpenDP's scale parameter (σ for Gaussians, b for Laplace; rank units for the quantile).
    pub scale: f64,
    /// Half-width of the central 95 % interval of the noise (see each mechanism's `params`).
    pub ci95: f64,
    /// The release threshold, for `gaussian_threshold` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i64>,
}

type GaussMeas<T> = Measurement<VectorDomain<AtomDomain<T>>, L2Distance<f64>, ZeroConcentratedDivergence, Vec<T>>;
type LapMeas<T> = Measurement<VectorDomain<AtomDomain<T>>, L1Distance<f64>, MaxDivergence, Vec<T>>;

enum Meas<T: CheckAtom> {
    Gauss(GaussMeas<T>),
    Lap(LapMeas<T>),
}

/// The atoms a vector mechanism can run on; `k` is the float lattice exponent (None: OpenDP default).
trait NoiseAtom: CheckAtom + Sized + 'static {
    fn gaussian(size: Option<usize>, scale: f64, k: Option<i32>) -> Fallible<GaussMeas<Self>>;
    fn laplace(size: Option<usize>, scale: f64, k: Option<i32>) -> Fallible<LapMeas<Self>>;
}

macro_rules! impl_noise_atom {
    ($t:ty, $element:expr) => {
        impl NoiseAtom for $t {
            fn gaussian(size: Option<usize>, scale: f64, k: Option<i32>) -> Fallible<GaussMeas<$t>> {
                make_gaussian(vector_domain($element, size), L2Distance::<f64>::default(), scale, k)
            }
            fn laplace(size: Option<usize>, scale: f64, k: Option<i32>) -> Fallible<LapMeas<$t>> {
                make_laplace(vector_domain($element, size), L1Distance::<f64>::default(), scale, k)
            }
        }
    };
}

impl_noise_atom!(i64, AtomDomain::<i64>::default());
impl_noise_atom!(f64, AtomDomain::<f64>::new_non_nan());

fn vector_domain<T: CheckAtom>(element: AtomDomain<T>, size: Option<usize>) -> VectorDomain<AtomDomain<T>> {
    let d = VectorDomain::new(element);
    match size {
        Some(n) => d.with_size(n),
        None => d,
    }
}

/// Finds the smallest scale (up to rounding) whose privacy loss fits `target`.
///
/// Every map used here is homogeneous in the scale (ε ∝ 1/scale for pure DP, ρ ∝ 1/scale² for
/// zCDP), so the loss at scale 1 gives the scale in closed form; the result is then checked
/// against the map and raised by tiny steps until float rounding in OpenDP's (conservatively
/// rounded) map is absorbed.
fn fit_scale(target: f64, quadratic: bool, loss: &dyn Fn(f64) -> Result<f64>) -> Result<f64> {
    let unit = loss(1.0)?;
    if !(unit.is_finite() && unit > 0.0) {
        return Err(DpError::InvalidArgument(format!("privacy loss at scale 1 is {unit}")));
    }
    let mut scale = if quadratic { (unit / target).sqrt() } else { unit / target };
    let mut step = f64::EPSILON;
    for _ in 0..64 {
        if loss(scale)? <= target {
            return Ok(scale);
        }
        scale *= 1.0 + step;
        step *= 2.0;
    }
    Err(DpError::ShareExceeded { mechanism: "calibration", loss: loss(scale)?, share: target })
}

fn check_sensitivity(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(DpError::InvalidArgument(format!("{name} sensitivity must be positive and finite, got {v}")))
    }
}

/// Smallest integer h with P(|Z| ≤ h) ≥ 95 % for OpenDP's accuracy `a` (defined by P(|Z| ≥ a) ≤ α).
fn integer_half_width(accuracy: f64) -> f64 {
    (accuracy.ceil() - 1.0).max(0.0)
}

/// Shared implementation of [`IntNoise`] and [`FloatNoise`].
struct VectorNoise<T: CheckAtom> {
    meas: Meas<T>,
    scale: f64,
    sensitivity: f64,
    k: Option<i32>,
    size: Option<usize>,
}

impl<T: NoiseAtom> VectorNoise<T> {
    fn build(l1: f64, l2: f64, share: &Share, k: Option<i32>, size: Option<usize>) -> Result<Self> {
        share.check()?;
        check_sensitivity("L1", l1)?;
        check_sensitivity("L2", l2)?;
        let (scale, sensitivity) = match *share {
            Share::Rho(rho) => {
                let loss = |s: f64| -> Result<f64> {
                    let m = T::gaussian(size, s, k).map_err(DpError::opendp("build"))?;
                    m.map(&l2).map_err(DpError::opendp("privacy map"))
                };
                (fit_scale(rho, true, &loss)?, l2)
            }
            Share::Epsilon(eps) => {
                let loss = |s: f64| -> Result<f64> {
                    let m = T::laplace(size, s, k).map_err(DpError::opendp("build"))?;
                    m.map(&l1).map_err(DpError::opendp("privacy map"))
                };
                (fit_scale(eps, false, &loss)?, l1)
            }
        };
        let noise = Self::with_scale(share, scale, sensitivity, k, size)?;
        let loss = noise.privacy_loss()?;
        if loss > share.value() {
            return Err(DpError::ShareExceeded { mechanism: noise.kind_name::<T>(), loss, share: share.value() });
        }
        Ok(noise)
    }

    /// The mechanism of `share`'s kind with a given scale, no calibration (tests use it to build
    /// deliberately mis-scaled mechanisms).
    fn with_scale(share: &Share, scale: f64, sensitivity: f64, k: Option<i32>, size: Option<usize>) -> Result<Self> {
        let meas = match share {
            Share::Rho(_) => Meas::Gauss(T::gaussian(size, scale, k).map_err(DpError::opendp("build"))?),
            Share::Epsilon(_) => Meas::Lap(T::laplace(size, scale, k).map_err(DpError::opendp("build"))?),
        };
        Ok(VectorNoise { meas, scale, sensitivity, k, size })
    }

    fn privacy_loss(&self) -> Result<f64> {
        match &self.meas {
            Meas::Gauss(m) => m.map(&self.sensitivity),
            Meas::Lap(m) => m.map(&self.sensitivity),
        }
        .map_err(DpError::opendp("privacy map"))
    }

    fn release(&self, exact: &[T]) -> Result<Vec<T>>
    where
        T: Clone,
    {
        if let Some(n) = self.size
            && n != exact.len()
        {
            return Err(DpError::InvalidArgument(format!("mechanism built for {n} values, got {}", exact.len())));
        }
        let arg = exact.to_vec();
        match &self.meas {
            Meas::Gauss(m) => m.invoke(&arg),
            Meas::Lap(m) => m.invoke(&arg),
        }
        .map_err(DpError::opendp("invoke"))
    }

    fn is_gaussian(&self) -> bool {
        matches!(self.meas, Meas::Gauss(_))
    }

    fn kind_name<U: 'static>(&self) -> &'static str {
        let int = std::any::TypeId::of::<U>() == std::any::TypeId::of::<i64>();
        match (self.is_gaussian(), int) {
            (true, true) => "discrete_gaussian",
            (false, true) => "discrete_laplace",
            (true, false) => "gaussian",
            (false, false) => "laplace",
        }
    }
}

/// Noise for integer vectors (counts, sums of clamped integers).
///
/// `Share::Rho` → discrete Gaussian with σ = L2 / √(2ρ) (OpenDP `make_gaussian` on
/// `VectorDomain<AtomDomain<i64>>`, `L2Distance`, zCDP); `Share::Epsilon` → discrete Laplace with
/// b = L1 / ε (`make_laplace`, `L1Distance`, pure DP). Results saturate at the i64 range.
pub struct IntNoise(VectorNoise<i64>);

impl IntNoise {
    /// Builds and verifies the mechanism: its privacy map at the sensitivity must be ≤ the share.
    pub fn new(l1: f64, l2: f64, share: &Share) -> Result<IntNoise> {
        let n = VectorNoise::build(l1, l2, share, None, None)?;
        tracing::debug!(mechanism = n.kind_name::<i64>(), scale = n.scale, "integer noise built");
        Ok(IntNoise(n))
    }

    #[cfg(test)]
    pub(crate) fn with_scale(share: &Share, scale: f64, sensitivity: f64) -> Result<IntNoise> {
        VectorNoise::with_scale(share, scale, sensitivity, None, None).map(IntNoise)
    }

    /// Adds independent noise to each element.
    pub fn release(&self, exact: &[i64]) -> Result<Vec<i64>> {
        self.0.release(exact)
    }

    /// Noise scale (σ or b).
    pub fn scale(&self) -> f64 {
        self.0.scale
    }

    /// The loss OpenDP's privacy map reports at the sensitivity (ρ or ε).
    pub fn privacy_loss(&self) -> Result<f64> {
        self.0.privacy_loss()
    }

    /// Mechanism, scale and the exact 95 % half-width: the smallest integer h with
    /// P(|noise| ≤ h) ≥ 0.95, from OpenDP's `discrete_laplacian_scale_to_accuracy` /
    /// `discrete_gaussian_scale_to_accuracy` (for σ > 10⁴ from the continuous quantile
    /// ⌈1.96 σ⌉, which differs by less than one unit).
    pub fn params(&self) -> NoiseParams {
        let scale = self.0.scale;
        let ci95 = if self.0.is_gaussian() {
            if scale <= DISCRETE_GAUSSIAN_EXACT_CI_MAX_SCALE {
                discrete_gaussian_scale_to_accuracy(scale, ALPHA).map(integer_half_width)
            } else {
                gaussian_scale_to_accuracy(scale, ALPHA).map(f64::ceil)
            }
        } else {
            discrete_laplacian_scale_to_accuracy(scale, ALPHA).map(integer_half_width)
        };
        NoiseParams {
            mechanism: self.0.kind_name::<i64>(),
            scale,
            ci95: ci95.unwrap_or(f64::INFINITY),
            threshold: None,
        }
    }
}

/// Noise for f64 vectors (sums of clamped values) with OpenDP's exact float mechanisms: each
/// input is rounded to the nearest multiple of 2^k, integer noise is sampled exactly on that
/// lattice, and the result is cast back (Mironov-safe, threat T7).
///
/// [`FloatNoise::new`] keeps OpenDP's default `k`, which for f64 is the smallest subnormal
/// exponent −1074: every finite f64 is on that lattice, rounding adds no sensitivity, and
/// the domain size need not be known. [`FloatNoise::with_lattice`] uses a coarser lattice.
pub struct FloatNoise(VectorNoise<f64>);

impl FloatNoise {
    /// Gaussian (σ = L2/√(2ρ)) for `Share::Rho`, Laplace (b = L1/ε) for `Share::Epsilon`, with
    /// OpenDP's default lattice `k`.
    pub fn new(l1: f64, l2: f64, share: &Share) -> Result<FloatNoise> {
        let n = VectorNoise::build(l1, l2, share, None, None)?;
        tracing::debug!(mechanism = n.kind_name::<f64>(), scale = n.scale, "float noise built");
        Ok(FloatNoise(n))
    }

    /// The same on the lattice 2^k for vectors of exactly `len` values. OpenDP then adds the
    /// rounding distance (2^k per element, L1; 2^k·√len, L2) to the sensitivity, which the
    /// calibrated scale absorbs; outputs are exact multiples of 2^k.
    pub fn with_lattice(l1: f64, l2: f64, share: &Share, k: i32, len: usize) -> Result<FloatNoise> {
        let n = VectorNoise::build(l1, l2, share, Some(k), Some(len))?;
        tracing::debug!(mechanism = n.kind_name::<f64>(), scale = n.scale, k, len, "float noise built");
        Ok(FloatNoise(n))
    }

    #[cfg(test)]
    pub(crate) fn with_scale(share: &Share, scale: f64, sensitivity: f64) -> Result<FloatNoise> {
        VectorNoise::with_scale(share, scale, sensitivity, None, None).map(FloatNoise)
    }

    /// Adds independent noise to each element. NaN inputs are refused.
    pub fn release(&self, exact: &[f64]) -> Result<Vec<f64>> {
        if exact.iter().any(|v| v.is_nan()) {
            return Err(DpError::InvalidArgument("NaN input to float noise".into()));
        }
        self.0.release(exact)
    }

    /// Noise scale (σ or b).
    pub fn scale(&self) -> f64 {
        self.0.scale
    }

    /// The lattice exponent in effect: outputs are integer multiples of 2^k.
    pub fn k(&self) -> i32 {
        // OpenDP's default for f64 (`get_min_k::<f64>()`): −(exponent bias) − (mantissa bits) + 1.
        self.0.k.unwrap_or(-1023 - 52 + 1)
    }

    /// The loss OpenDP's privacy map reports at the sensitivity (ρ or ε).
    pub fn privacy_loss(&self) -> Result<f64> {
        self.0.privacy_loss()
    }

    /// Mechanism, scale and 95 % half-width of the continuous distribution the lattice noise
    /// follows: b·ln 20 for Laplace, 1.96 σ for Gaussian (OpenDP `laplacian_scale_to_accuracy`,
    /// `gaussian_scale_to_accuracy`). Exact up to the lattice spacing 2^k.
    pub fn params(&self) -> NoiseParams {
        let scale = self.0.scale;
        let ci95 = if self.0.is_gaussian() {
            gaussian_scale_to_accuracy(scale, ALPHA)
        } else {
            laplacian_scale_to_accuracy(scale, ALPHA)
        };
        NoiseParams {
            mechanism: self.0.kind_name::<f64>(),
            scale,
            ci95: ci95.unwrap_or(f64::INFINITY),
            threshold: None,
        }
    }
}

type ThresholdMeas = Measurement<
    MapDomain<AtomDomain<String>, AtomDomain<i64>>,
    L02InfDistance<AbsoluteDistance<i64>>,
    Approximate<ZeroConcentratedDivergence>,
    HashMap<String, i64>,
>;

/// Private partition selection for GROUP BY on private keys (threat T12): OpenDP's
/// `make_gaussian_threshold` adds discrete Gaussian noise to each key's person count and
/// releases only the keys whose noisy count reaches the threshold.
///
/// Neighbouring datasets differ by one person, who touches at most `l0` keys and adds at most
/// `linf` to each count (1 for distinct-person counts). The scale σ = linf·√l0 / √(2ρ) makes the
/// counts ρ-zCDP; the threshold is the smallest integer for which OpenDP's privacy map reports a
/// δ ≤ `threshold_delta` (the probability that some key held only by the differing person is
/// released).
pub struct Threshold {
    meas: ThresholdMeas,
    scale: f64,
    threshold: i64,
    d_in: (u32, i64, i64),
}

impl Threshold {
    /// Calibrates the scale from `share` (must be `Share::Rho`) and the threshold from
    /// `threshold_delta` (must be in (0, 1)).
    pub fn new(l0: u32, linf: i64, share: &Share, threshold_delta: f64) -> Result<Threshold> {
        let rho = match *share {
            Share::Rho(rho) => rho,
            Share::Epsilon(_) => return Err(DpError::DeltaRequired),
        };
        share.check()?;
        if threshold_delta == 0.0 {
            return Err(DpError::DeltaRequired);
        }
        if !(threshold_delta > 0.0 && threshold_delta < 1.0) {
            return Err(DpError::InvalidArgument(format!("threshold delta must be in (0, 1), got {threshold_delta}")));
        }
        if l0 == 0 || linf <= 0 {
            return Err(DpError::InvalidArgument(format!("l0 ({l0}) and linf ({linf}) must be positive")));
        }
        // The L2 bound passed is linf·l0 (≥ the true linf·√l0); OpenDP tightens it to linf·√l0.
        let d_in = (l0, linf.saturating_mul(i64::from(l0)), linf);
        let build = |scale: f64, threshold: i64| -> Result<ThresholdMeas> {
            make_gaussian_threshold(
                MapDomain::new(AtomDomain::<String>::default(), AtomDomain::<i64>::default()),
                L0PInfDistance(AbsoluteDistance::<i64>::default()),
                scale,
                threshold,
                None,
            )
            .map_err(DpError::opendp("build"))
        };
        let loss = |scale: f64, threshold: i64| -> Result<(f64, f64)> {
            build(scale, threshold)?.map(&d_in).map_err(DpError::opendp("privacy map"))
        };
        // The ρ part does not depend on the threshold (any threshold ≥ linf is valid for it).
        let scale = fit_scale(rho, true, &|s| Ok(loss(s, linf)?.0))?;
        let fits = |t: i64| -> Result<bool> { Ok(loss(scale, t)?.1 <= threshold_delta) };
        let (mut lo, mut hi) = (linf, linf);
        while !fits(hi)? {
            lo = hi;
            hi = hi.checked_mul(2).ok_or_else(|| DpError::InvalidArgument("no threshold reaches the delta".into()))?;
        }
        // invariant: fits(hi), and lo == hi or !fits(lo)
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let threshold = hi;
        let meas = build(scale, threshold)?;
        let t = Threshold { meas, scale, threshold, d_in };
        let (r, d) = t.privacy_loss()?;
        if r > rho || d > threshold_delta {
            return Err(DpError::ShareExceeded { mechanism: "gaussian_threshold", loss: r.max(d), share: rho });
        }
        tracing::debug!(scale, threshold, l0, linf, "gaussian threshold built");
        Ok(t)
    }

    /// Noisy counts of the keys that pass the threshold, sorted by key. Keys must be distinct.
    pub fn release(&self, counts: Vec<(String, i64)>) -> Result<Vec<(String, i64)>> {
        let n = counts.len();
        let map: HashMap<String, i64> = counts.into_iter().collect();
        if map.len() != n {
            return Err(DpError::InvalidArgument("duplicate group keys".into()));
        }
        let released = self.meas.invoke(&map).map_err(DpError::opendp("invoke"))?;
        let mut out: Vec<(String, i64)> = released.into_iter().collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The release threshold on noisy counts (a key is released when its noisy count ≥ this).
    pub fn threshold(&self) -> i64 {
        self.threshold
    }

    /// σ of the discrete Gaussian noise on the counts.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// (ρ, δ) reported by OpenDP's privacy map at (l0, l2, linf).
    pub fn privacy_loss(&self) -> Result<(f64, f64)> {
        self.meas.map(&self.d_in).map_err(DpError::opendp("privacy map"))
    }

    /// Mechanism, σ, exact 95 % half-width of the count noise (as for [`IntNoise::params`]) and
    /// the threshold.
    pub fn params(&self) -> NoiseParams {
        let ci95 = if self.scale <= DISCRETE_GAUSSIAN_EXACT_CI_MAX_SCALE {
            discrete_gaussian_scale_to_accuracy(self.scale, ALPHA).map(integer_half_width)
        } else {
            gaussian_scale_to_accuracy(self.scale, ALPHA).map(f64::ceil)
        };
        NoiseParams {
            mechanism: "gaussian_threshold",
            scale: self.scale,
            ci95: ci95.unwrap_or(f64::INFINITY),
            threshold: Some(self.threshold),
        }
    }
}

/// Evenly spaced, strictly increasing candidates over `[lo, hi]` (duplicates from float
/// rounding removed).
fn candidate_grid(bounds: (f64, f64), n: usize) -> Result<Vec<f64>> {
    let (lo, hi) = bounds;
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(DpError::InvalidArgument(format!("bounds must be finite with lo < hi, got ({lo}, {hi})")));
    }
    if n < 2 {
        return Err(DpError::InvalidArgument(format!("need at least 2 candidates, got {n}")));
    }
    let step = (hi - lo) / (n - 1) as f64;
    let mut c: Vec<f64> = (0..n).map(|i| if i == n - 1 { hi } else { (lo + step * i as f64).min(hi) }).collect();
    c.dedup();
    Ok(c)
}

/// Differentially private median of `values` (one value per person — the caller guarantees it)
/// with OpenDP's `make_private_quantile` (α = 0.5) over `candidates` evenly spaced points of the
/// public `bounds`: permute-and-flip under `Share::Epsilon`, the exponential mechanism under
/// `Share::Rho` (OpenDP 0.16 supports both measures directly: ε = Δ/scale and ρ = (Δ/scale)²/8).
/// Neighbours differ by one person, i.e. symmetric distance 1.
///
/// `size_limit` is the public upper bound on the number of values (from the catalog): OpenDP 0.16
/// has no size-limit argument for this mechanism (on an unknown-size domain it caps ranks at
/// u64::MAX / 2 internally), so the bound is enforced here and a larger input is refused with
/// [`DpError::SizeLimit`]; refusing reveals only that the public bound was wrong.
///
/// The result is always one of the candidates, hence within the bounds. The returned
/// `NoiseParams` are in **rank units** (persons): `scale` is the exponential mechanism's scale on
/// the rank score and `ci95 = scale · ln(candidates / 0.05)`, the standard utility bound: with
/// probability ≥ 95 % the released candidate's rank score is within `ci95` persons of the best
/// candidate's (the true median up to the grid spacing).
pub fn private_median(
    values: Vec<f64>,
    bounds: (f64, f64),
    candidates: usize,
    size_limit: usize,
    share: &Share,
) -> Result<(f64, NoiseParams)> {
    share.check()?;
    if values.len() > size_limit {
        return Err(DpError::SizeLimit { limit: size_limit });
    }
    if values.iter().any(|v| v.is_nan()) {
        return Err(DpError::InvalidArgument("NaN input to the median".into()));
    }
    let grid = candidate_grid(bounds, candidates)?;
    let n_candidates = grid.len();
    let scale = median_scale(&grid, share)?;
    let domain = || VectorDomain::new(AtomDomain::<f64>::new_non_nan());
    let value = match *share {
        Share::Epsilon(_) => make_private_quantile(domain(), SymmetricDistance, MaxDivergence, grid, 0.5, scale)
            .map_err(DpError::opendp("build"))?
            .invoke(&values),
        Share::Rho(_) => {
            make_private_quantile(domain(), SymmetricDistance, ZeroConcentratedDivergence, grid, 0.5, scale)
                .map_err(DpError::opendp("build"))?
                .invoke(&values)
        }
    }
    .map_err(DpError::opendp("invoke"))?;
    tracing::debug!(scale, n_candidates, "private median released");
    Ok((value, median_noise_params(scale, n_candidates)))
}

/// The parameters [`private_median`] would report for these bounds, candidates and share,
/// without touching any data (for dry runs).
pub fn median_params(bounds: (f64, f64), candidates: usize, share: &Share) -> Result<NoiseParams> {
    share.check()?;
    let grid = candidate_grid(bounds, candidates)?;
    let scale = median_scale(&grid, share)?;
    Ok(median_noise_params(scale, grid.len()))
}

fn median_noise_params(scale: f64, n_candidates: usize) -> NoiseParams {
    NoiseParams {
        mechanism: "exponential_quantile",
        scale,
        ci95: scale * (n_candidates as f64 / ALPHA).ln(),
        threshold: None,
    }
}

/// The calibrated scale of the private quantile over `grid` for `share` (neighbours: one value
/// added or removed).
fn median_scale(grid: &[f64], share: &Share) -> Result<f64> {
    let domain = || VectorDomain::new(AtomDomain::<f64>::new_non_nan());
    match *share {
        Share::Epsilon(eps) => {
            let build = |s: f64| {
                make_private_quantile(domain(), SymmetricDistance, MaxDivergence, grid.to_vec(), 0.5, s)
                    .map_err(DpError::opendp("build"))
            };
            fit_scale(eps, false, &|s| build(s)?.map(&1).map_err(DpError::opendp("privacy map")))
        }
        Share::Rho(rho) => {
            let build = |s: f64| {
                make_private_quantile(domain(), SymmetricDistance, ZeroConcentratedDivergence, grid.to_vec(), 0.5, s)
                    .map_err(DpError::opendp("build"))
            };
            fit_scale(rho, true, &|s| build(s)?.map(&1).map_err(DpError::opendp("privacy map")))
        }
    }
}

#[cfg(test)]
mod tests;
