//! Differential privacy for Niji's `dp` release mode: the mechanism and accounting layer.
//!
//! # Privacy model
//!
//! * **Privacy unit: the person** (`person_id`, the pseudonym). Two datasets are neighbours when
//!   one person's rows are added or removed. The query rewrite ([`rewrite`], [`DpPlan`])
//!   bounds what one person can change: the number of groups touched (`l0`), the change per group
//!   (`linf`), and from these the L1/L2 sensitivities handed to this crate.
//! * **Budgets are (ε, δ)** as the researcher sees them. With δ = 0 every mechanism is pure ε-DP
//!   (discrete Laplace, Laplace on a 2^k lattice, permute-and-flip) and the ε's add up. With
//!   δ > 0 the query is accounted in zero-concentrated DP: the request is converted to the
//!   largest total ρ that OpenDP's zCDP → (ε, δ) conversion maps within the request, the ρ is
//!   split among the mechanisms (Gaussian family), and a threshold for private GROUP BY keys
//!   keeps half of δ for itself ([`accounting`]).
//! * **No hand-made noise.** Every random value comes from `invoke` of an OpenDP measurement
//!   (OpenDP samples from the OS CSPRNG, exactly, on integers or on a 2^k lattice for floats, so
//!   the floating-point attack of Mironov 2012 does not apply). OpenDP's `floating-point`,
//!   `honest-but-curious` and `polars` features stay off; only `contrib` is on.
//! * **Every mechanism is checked against its share**: after calibration, the measurement's own
//!   privacy map at the declared sensitivity must be ≤ the share, otherwise the constructor fails.
//!
//! The ledger charge itself (atomic, in the catalog) and the caching of identical queries are not
//! here: [`Allocation::charged`] tells the caller what to charge.

pub mod accounting;
pub mod error;
pub mod lineage;
pub mod mechanism;
mod release;
pub mod rewrite;
mod streaming;

#[cfg(test)]
mod dp_tests;

pub use accounting::{Allocation, Request, Share, ThresholdShare, allocate, rho_to_epsilon};
pub use error::{DpError, Result};
pub use mechanism::{FloatNoise, IntNoise, NoiseParams, Threshold, median_params, private_median};
pub use release::DpAnswer;
pub use rewrite::{
    DEFAULT_MAX_GROUPS_PER_PERSON, DEFAULT_MAX_ROWS_PER_PERSON, DpColumn, DpParams, DpPlan, MAX_PUBLIC_CELLS,
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// Threat T7: OpenDP's `floating-point` (non-exact float noise) and `honest-but-curious`
    /// (user-defined measurements) features must never be enabled, nor `polars`. Cargo unifies
    /// features across the workspace, so every manifest is checked, not only this crate's.
    #[test]
    fn unsafe_opendp_features_stay_off() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut manifests = vec![root.join("Cargo.toml")];
        for entry in std::fs::read_dir(root.join("crates")).unwrap() {
            let path = entry.unwrap().path().join("Cargo.toml");
            if path.exists() {
                manifests.push(path);
            }
        }
        let mut opendp_lines = 0;
        for m in &manifests {
            let text = std::fs::read_to_string(m).unwrap();
            for line in text.lines().filter(|l| l.trim_start().starts_with("opendp")) {
                opendp_lines += 1;
                for bad in ["floating-point", "honest-but-curious", "polars", "untrusted"] {
                    assert!(!line.contains(bad), "{} enables opendp feature {bad}: {line}", m.display());
                }
            }
        }
        assert!(opendp_lines >= 2, "opendp dependency lines not found");
    }
}
