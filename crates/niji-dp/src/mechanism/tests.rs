#![allow(clippy::unwrap_used)]
//! Tests of the mechanisms.
//!
//! OpenDP draws its randomness from the operating system's CSPRNG and offers no seed, so the
//! statistical tests cannot be made deterministic. Instead each one compares a statistic with
//! its expectation at a tolerance whose false-failure probability is far below 1e-6 (the bound is
//! stated beside each), and checks that the same statistic rejects the mechanism mis-scaled by
//! ±30 %.

use opendp::measurements::make_gaussian_threshold;
use opendp::metrics::L0PInfDistance;

use super::*;

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs()
}

// ---------------------------------------------------------------- exact parameters

#[test]
fn int_noise_scale_and_map_follow_the_share() {
    let g = IntNoise::new(3.0, 2.0, &Share::Rho(0.5)).unwrap();
    assert_eq!(g.params().mechanism, "discrete_gaussian");
    assert!(rel_close(g.scale(), 2.0 / (2.0f64 * 0.5).sqrt(), 1e-12), "{}", g.scale());
    let rho = g.privacy_loss().unwrap();
    assert!(rho <= 0.5 && rho > 0.5 * (1.0 - 1e-12), "{rho}");

    let l = IntNoise::new(1.0, 1.0, &Share::Epsilon(0.3)).unwrap();
    assert_eq!(l.params().mechanism, "discrete_laplace");
    assert!(rel_close(l.scale(), 1.0 / 0.3, 1e-12), "{}", l.scale());
    let eps = l.privacy_loss().unwrap();
    assert!(eps <= 0.3 && eps > 0.3 * (1.0 - 1e-12), "{eps}");
}

#[test]
fn float_noise_scale_and_map_follow_the_share() {
    let g = FloatNoise::new(10.0, 5.0, &Share::Rho(0.02)).unwrap();
    assert_eq!(g.params().mechanism, "gaussian");
    assert!(rel_close(g.scale(), 5.0 / (0.04f64).sqrt(), 1e-12));
    assert!(g.privacy_loss().unwrap() <= 0.02);
    assert_eq!(g.k(), -1074);

    let l = FloatNoise::new(10.0, 5.0, &Share::Epsilon(0.7)).unwrap();
    assert_eq!(l.params().mechanism, "laplace");
    assert!(rel_close(l.scale(), 10.0 / 0.7, 1e-12));
    assert!(l.privacy_loss().unwrap() <= 0.7);

    // On a coarse lattice OpenDP adds the rounding distance 2^k per element to the L1 sensitivity.
    let k = -4;
    let len = 100;
    let c = FloatNoise::with_lattice(1.0, 1.0, &Share::Epsilon(0.5), k, len).unwrap();
    let expected = (1.0 + (2f64.powi(k) - 2f64.powi(-1074)) * len as f64) / 0.5;
    assert!(rel_close(c.scale(), expected, 1e-9), "{} vs {expected}", c.scale());
    assert!(c.privacy_loss().unwrap() <= 0.5);
    assert_eq!(c.k(), k);
    let err = c.release(&[1.0; 3]).unwrap_err();
    assert_eq!(err.code(), "dp_invalid_argument");
}

#[test]
fn invalid_parameters_are_refused() {
    for share in [Share::Rho(0.0), Share::Epsilon(-1.0), Share::Rho(f64::NAN), Share::Epsilon(f64::INFINITY)] {
        assert_eq!(IntNoise::new(1.0, 1.0, &share).err().unwrap().code(), "dp_invalid_argument");
    }
    for l in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(IntNoise::new(l, 1.0, &Share::Rho(1.0)).err().unwrap().code(), "dp_invalid_argument");
        assert_eq!(FloatNoise::new(1.0, l, &Share::Rho(1.0)).err().unwrap().code(), "dp_invalid_argument");
    }
    let f = FloatNoise::new(1.0, 1.0, &Share::Epsilon(1.0)).unwrap();
    assert_eq!(f.release(&[f64::NAN]).unwrap_err().code(), "dp_invalid_argument");
}

/// P(|Z| ≤ h) for the discrete Laplace with scale b: 1 − 2p^(h+1)/(1+p), p = e^(−1/b).
fn dlap_cdf_abs(b: f64, h: f64) -> f64 {
    let p = (-1.0 / b).exp();
    1.0 - 2.0 * p.powf(h + 1.0) / (1.0 + p)
}

/// P(|Z| ≤ h) for the discrete Gaussian with scale σ, by direct summation of the pmf.
fn dgauss_cdf_abs(sigma: f64, h: i64) -> f64 {
    let w = |x: i64| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp();
    let reach = (40.0 * sigma) as i64 + 10;
    let total: f64 = (-reach..=reach).map(w).sum();
    (-h..=h).map(w).sum::<f64>() / total
}

#[test]
fn ci95_is_the_exact_95_percent_half_width() {
    for eps in [0.1, 0.5, 1.0, 3.0] {
        let p = IntNoise::new(1.0, 1.0, &Share::Epsilon(eps)).unwrap().params();
        assert!(dlap_cdf_abs(p.scale, p.ci95) >= 0.95, "{p:?}");
        assert!(p.ci95 == 0.0 || dlap_cdf_abs(p.scale, p.ci95 - 1.0) < 0.95, "{p:?}");
    }
    for rho in [0.01, 0.1, 0.5, 2.0] {
        let p = IntNoise::new(1.0, 1.0, &Share::Rho(rho)).unwrap().params();
        let h = p.ci95 as i64;
        assert!(dgauss_cdf_abs(p.scale, h) >= 0.95, "{p:?}");
        assert!(h == 0 || dgauss_cdf_abs(p.scale, h - 1) < 0.95, "{p:?}");
    }
    let p = FloatNoise::new(2.0, 2.0, &Share::Epsilon(1.0)).unwrap().params();
    assert!(rel_close(p.ci95, 2.0 * 20f64.ln(), 1e-12));
    let p = FloatNoise::new(2.0, 2.0, &Share::Rho(0.5)).unwrap().params();
    assert!(rel_close(p.ci95, 1.959_963_984_540_054 * p.scale, 1e-9), "{p:?}");
}

// ---------------------------------------------------------------- noise distribution

/// Draws and tolerance of the statistical tests.
const N: usize = 20_000;
/// The statistic is mean|noise| / E|noise| for the *intended* scale; it must lie in 1 ± TOL.
///
/// False-failure bound at N = 20 000:
/// * Laplace: |Z| is exponential (geometric when discrete); the Chernoff bound for a mean of N
///   exponentials gives P(mean ≥ 1.1·E) ≤ exp(−N(0.1 − ln 1.1)) = e^−93.8 and
///   P(mean ≤ 0.9·E) ≤ exp(−N(−0.1 − ln 0.9)) = e^−107.
/// * Gaussian: |Z| is a 1-Lipschitz function of a σ-sub-Gaussian variable (true for the discrete
///   Gaussian too), so P(|mean − E| ≥ u) ≤ 2·exp(−N u² / (2σ²)); with u = 0.1·E|Z| ≈ 0.08σ
///   this is ≤ 2e^−63.
///
/// Both are < 1e-27, far below 1e-6. A scale ×1.3 (×0.7) moves the statistic to ≈1.3 (≈0.7),
/// 0.2 beyond the band, where the same bounds make a false pass even less likely.
const TOL: f64 = 0.1;

fn mean_abs_dev_i64(out: &[i64], center: i64) -> f64 {
    out.iter().map(|&y| (y - center).unsigned_abs() as f64).sum::<f64>() / out.len() as f64
}

fn mean_abs_dev_f64(out: &[f64], center: f64) -> f64 {
    out.iter().map(|&y| (y - center).abs()).sum::<f64>() / out.len() as f64
}

/// E|Z| for the discrete Laplace with scale b: 2p / (1 − p²), p = e^(−1/b).
fn dlap_mean_abs(b: f64) -> f64 {
    let p = (-1.0 / b).exp();
    2.0 * p / (1.0 - p * p)
}

/// E|Z| for the discrete Gaussian with scale σ, by summation of the pmf.
fn dgauss_mean_abs(sigma: f64) -> f64 {
    let reach = (40.0 * sigma) as i64 + 10;
    let w = |x: i64| (-((x * x) as f64) / (2.0 * sigma * sigma)).exp();
    let total: f64 = (-reach..=reach).map(w).sum();
    (-reach..=reach).map(|x| x.unsigned_abs() as f64 * w(x)).sum::<f64>() / total
}

fn in_band(stat: f64) -> bool {
    (1.0 - TOL..=1.0 + TOL).contains(&stat)
}

fn int_statistic(noise: &IntNoise, expected_mean_abs: f64) -> f64 {
    let exact = vec![1_000_i64; N];
    let out = noise.release(&exact).unwrap();
    mean_abs_dev_i64(&out, 1_000) / expected_mean_abs
}

fn float_statistic(noise: &FloatNoise, expected_mean_abs: f64) -> f64 {
    let exact = vec![123.456_f64; N];
    let out = noise.release(&exact).unwrap();
    mean_abs_dev_f64(&out, 123.456) / expected_mean_abs
}

#[test]
fn discrete_laplace_noise_has_the_calibrated_scale() {
    let share = Share::Epsilon(0.4);
    let noise = IntNoise::new(1.0, 1.0, &share).unwrap();
    let expected = dlap_mean_abs(noise.scale());
    let stat = int_statistic(&noise, expected);
    assert!(in_band(stat), "calibrated mechanism rejected: {stat}");
    for factor in [1.3, 0.7] {
        let wrong = IntNoise::with_scale(&share, noise.scale() * factor, 1.0).unwrap();
        let stat = int_statistic(&wrong, expected);
        assert!(!in_band(stat), "scale x{factor} not detected: {stat}");
    }
}

#[test]
fn discrete_gaussian_noise_has_the_calibrated_scale() {
    let share = Share::Rho(0.05);
    let noise = IntNoise::new(1.0, 1.0, &share).unwrap();
    let expected = dgauss_mean_abs(noise.scale());
    let stat = int_statistic(&noise, expected);
    assert!(in_band(stat), "calibrated mechanism rejected: {stat}");
    for factor in [1.3, 0.7] {
        let wrong = IntNoise::with_scale(&share, noise.scale() * factor, 1.0).unwrap();
        let stat = int_statistic(&wrong, expected);
        assert!(!in_band(stat), "scale x{factor} not detected: {stat}");
    }
}

#[test]
fn float_laplace_noise_has_the_calibrated_scale() {
    let share = Share::Epsilon(0.5);
    let noise = FloatNoise::new(2.5, 2.5, &share).unwrap();
    let expected = noise.scale(); // E|Z| = b
    let stat = float_statistic(&noise, expected);
    assert!(in_band(stat), "calibrated mechanism rejected: {stat}");
    for factor in [1.3, 0.7] {
        let wrong = FloatNoise::with_scale(&share, noise.scale() * factor, 2.5).unwrap();
        let stat = float_statistic(&wrong, expected);
        assert!(!in_band(stat), "scale x{factor} not detected: {stat}");
    }
}

#[test]
fn float_gaussian_noise_has_the_calibrated_scale() {
    let share = Share::Rho(0.1);
    let noise = FloatNoise::new(2.5, 2.5, &share).unwrap();
    let expected = noise.scale() * (2.0 / std::f64::consts::PI).sqrt(); // E|Z| = σ√(2/π)
    let stat = float_statistic(&noise, expected);
    assert!(in_band(stat), "calibrated mechanism rejected: {stat}");
    for factor in [1.3, 0.7] {
        let wrong = FloatNoise::with_scale(&share, noise.scale() * factor, 2.5).unwrap();
        let stat = float_statistic(&wrong, expected);
        assert!(!in_band(stat), "scale x{factor} not detected: {stat}");
    }
}

// ---------------------------------------------------------------- lattice (T7)

/// Outputs for two neighbouring inputs lie on the same lattice 2^k, although neither input is on
/// it (0.3 and 1.3 are not multiples of 2^-10): the noise is not added in floating point to the
/// raw input, which is what the Mironov attack exploits.
#[test]
fn float_outputs_of_neighbours_share_the_lattice() {
    let k = -10;
    let len = 2_000;
    for share in [Share::Epsilon(1.0), Share::Rho(0.5)] {
        let noise = FloatNoise::with_lattice(1.0, 1.0, &share, k, len).unwrap();
        let unit = 2f64.powi(k);
        for x in [0.3, 1.3] {
            assert_ne!((x / unit).fract(), 0.0, "the test input must be off the lattice");
            let out = noise.release(&vec![x; len]).unwrap();
            for y in &out {
                assert_eq!((y / unit).fract(), 0.0, "{y} is not a multiple of 2^{k}");
            }
            // and they are noisy
            assert!(out.iter().any(|y| (y - x).abs() > 1.0));
        }
    }
    // The default lattice is OpenDP's k = −1074: every finite f64 is on it.
    assert_eq!(FloatNoise::new(1.0, 1.0, &Share::Rho(0.5)).unwrap().k(), -1074);
}

// ---------------------------------------------------------------- threshold (T12)

#[test]
fn threshold_needs_delta_and_rho() {
    assert_eq!(Threshold::new(1, 1, &Share::Rho(0.5), 0.0).err().unwrap().code(), "dp_private_keys_need_delta");
    assert_eq!(Threshold::new(1, 1, &Share::Epsilon(0.5), 1e-6).err().unwrap().code(), "dp_private_keys_need_delta");
    assert_eq!(Threshold::new(0, 1, &Share::Rho(0.5), 1e-6).err().unwrap().code(), "dp_invalid_argument");
    assert_eq!(Threshold::new(1, 0, &Share::Rho(0.5), 1e-6).err().unwrap().code(), "dp_invalid_argument");
    assert_eq!(Threshold::new(1, 1, &Share::Rho(0.5), 1.0).err().unwrap().code(), "dp_invalid_argument");
}

#[test]
fn threshold_parameters_are_calibrated_and_minimal() {
    let (l0, linf, rho, delta) = (4_u32, 1_i64, 0.25, 1e-8);
    let t = Threshold::new(l0, linf, &Share::Rho(rho), delta).unwrap();
    let sigma = linf as f64 * f64::from(l0).sqrt() / (2.0 * rho).sqrt();
    assert!(rel_close(t.scale(), sigma, 1e-12), "{} vs {sigma}", t.scale());
    let (r, d) = t.privacy_loss().unwrap();
    assert!(r <= rho && r > rho * (1.0 - 1e-12), "{r}");
    assert!(d <= delta, "{d}");
    // One less and the δ no longer fits: the threshold is the smallest possible.
    let smaller = make_gaussian_threshold(
        MapDomain::new(AtomDomain::<String>::default(), AtomDomain::<i64>::default()),
        L0PInfDistance(AbsoluteDistance::<i64>::default()),
        t.scale(),
        t.threshold() - 1,
        None,
    )
    .unwrap();
    let (_, d_smaller) = smaller.map(&(l0, 4, 1)).unwrap();
    assert!(d_smaller > delta, "{d_smaller}");
    let p = t.params();
    assert_eq!(p.mechanism, "gaussian_threshold");
    assert_eq!(p.threshold, Some(t.threshold()));
    assert!(dgauss_cdf_abs(p.scale, p.ci95 as i64) >= 0.95);
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"threshold\""), "{json}");
}

/// Keys held by one person are never released; large keys always are.
///
/// With δ_thr = 1e-10 and l0 = 1, OpenDP's bound on releasing a count-1 key is ≤ 1e-10 per key,
/// so one of 2 000 such keys is released with probability ≤ 2e-7. A key with count
/// threshold + 10σ is dropped with probability ≤ P(Z < −10σ) ≈ 1e-23.
#[test]
fn threshold_releases_large_keys_and_drops_singletons() {
    let t = Threshold::new(1, 1, &Share::Rho(0.5), 1e-10).unwrap();
    let big = t.threshold() + (10.0 * t.scale()).ceil() as i64;
    let mut input: Vec<(String, i64)> = (0..2_000).map(|i| (format!("rare-{i:04}"), 1)).collect();
    input.extend((0..50).map(|i| (format!("common-{i:02}"), big)));
    let out = t.release(input).unwrap();
    assert_eq!(out.len(), 50, "released: {:?}", out.iter().filter(|(k, _)| k.starts_with("rare")).count());
    assert!(out.iter().all(|(k, _)| k.starts_with("common-")));
    assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "sorted by key");
    assert!(out.iter().all(|(_, c)| *c >= t.threshold()));
    // the counts are noisy: all 50 exactly unchanged has probability ≈ 0.4^50
    assert!(out.iter().any(|(_, c)| *c != big));

    let dup = vec![("a".to_string(), 5), ("a".to_string(), 6)];
    assert_eq!(t.release(dup).unwrap_err().code(), "dp_invalid_argument");
}

// ---------------------------------------------------------------- median

fn uniform_values(n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect()
}

/// 20 001 values evenly over [0, 100] (200 persons per unit): with ε = 1 (or ρ = 0.5) the
/// released candidate is, with probability ≥ 1 − 1e-6, within scale·ln(101 / 1e-6) ≈ 18 ranks of
/// the best candidate, i.e. within 0.1 of 50 plus one grid step.
#[test]
fn median_is_accurate_on_a_large_sample() {
    let values = uniform_values(20_001, 0.0, 100.0);
    for share in [Share::Epsilon(1.0), Share::Rho(0.5)] {
        let (m, p) = private_median(values.clone(), (0.0, 100.0), 101, 100_000, &share).unwrap();
        assert!((m - 50.0).abs() <= 1.0, "{m} for {share:?}");
        assert_eq!(p.mechanism, "exponential_quantile");
        assert!(rel_close(p.ci95, p.scale * (101.0f64 / 0.05).ln(), 1e-12));
    }
}

#[test]
fn median_scale_follows_the_share() {
    let values = uniform_values(101, 0.0, 10.0);
    // Adding or removing one person moves the rank score by at most 1 (in OpenDP's units the
    // noisy-max input changes by 2·α_den·½): ε = 1/scale, ρ = 1/(8·scale²).
    let (_, p) = private_median(values.clone(), (0.0, 10.0), 11, 1_000, &Share::Epsilon(0.5)).unwrap();
    assert!(rel_close(p.scale, 2.0, 1e-12), "{p:?}");
    let (_, p) = private_median(values, (0.0, 10.0), 11, 1_000, &Share::Rho(0.125)).unwrap();
    assert!(rel_close(p.scale, 1.0, 1e-12), "{p:?}");
}

#[test]
fn median_stays_within_bounds_and_limits() {
    let outside = vec![1_000.0; 500];
    for _ in 0..20 {
        let (m, _) = private_median(outside.clone(), (0.0, 100.0), 50, 1_000, &Share::Epsilon(0.1)).unwrap();
        assert!((0.0..=100.0).contains(&m), "{m}");
    }
    let (m, _) = private_median(Vec::new(), (-5.0, 5.0), 3, 10, &Share::Rho(1.0)).unwrap();
    assert!([-5.0, 0.0, 5.0].contains(&m), "{m}");

    let too_many = vec![1.0; 11];
    let err = private_median(too_many, (0.0, 2.0), 3, 10, &Share::Epsilon(1.0)).unwrap_err();
    assert_eq!(err.code(), "dp_size_limit");
    for (bounds, c) in [((1.0, 1.0), 10), ((0.0, f64::INFINITY), 10), ((0.0, 1.0), 1)] {
        let err = private_median(vec![0.5], bounds, c, 10, &Share::Epsilon(1.0)).unwrap_err();
        assert_eq!(err.code(), "dp_invalid_argument");
    }
    let err = private_median(vec![f64::NAN], (0.0, 1.0), 3, 10, &Share::Epsilon(1.0)).unwrap_err();
    assert_eq!(err.code(), "dp_invalid_argument");
}
