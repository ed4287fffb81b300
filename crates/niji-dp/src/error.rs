//! The one error type of the crate.
//!
//! Messages never contain data values: only parameters (budgets, sensitivities, limits) and the
//! OpenDP error text, which in the calls made here only describes parameters.

/// Everything that can go wrong while allocating a budget, building a mechanism or releasing.
#[derive(Debug, thiserror::Error)]
pub enum DpError {
    /// ε not positive and finite, or δ outside [0, 1).
    #[error("invalid privacy budget: {0}")]
    InvalidBudget(String),
    /// Private GROUP BY keys need threshold partition selection, which only exists with δ > 0.
    #[error("GROUP BY on private keys needs a delta > 0 (threshold partition selection)")]
    DeltaRequired,
    /// A caller-supplied parameter is out of range (sensitivity, bounds, candidate count, share kind…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// OpenDP refused to build a measurement, evaluate a privacy map or run a mechanism.
    #[error("OpenDP {stage} failed: {detail}")]
    Mechanism {
        /// What was being done: "build", "privacy map", "invoke", "conversion".
        stage: &'static str,
        /// OpenDP's error variant and message.
        detail: String,
    },
    /// The calibrated mechanism's own privacy map does not fit inside its share.
    #[error("privacy loss of {mechanism} ({loss}) exceeds its share ({share})")]
    ShareExceeded {
        /// Mechanism name, as in [`crate::NoiseParams::mechanism`].
        mechanism: &'static str,
        /// Loss reported by OpenDP's privacy map (ε or ρ).
        loss: f64,
        /// The share it had to fit in.
        share: f64,
    },
    /// More input values than the public size limit the caller declared.
    #[error("input exceeds the declared size limit ({limit})")]
    SizeLimit {
        /// The declared limit.
        limit: usize,
    },
    /// The aggregation's input does not reach the privacy unit (`person_id`) by lineage.
    #[error("no privacy unit: {0}")]
    NoPrivacyUnit(String),
    /// A SUM, AVG or median argument whose lineage has no catalog bounds.
    #[error("`{0}` needs a column with clamping bounds in the dataset catalog (DP never takes bounds from the data)")]
    UnboundedColumn(String),
    /// A query shape or aggregate the `dp` mode does not release.
    #[error("not supported in mode dp: {0}")]
    Unsupported(String),
    /// Building the bounding or release plan failed (the message names plan parts, not data).
    #[error("planning the dp query failed: {0}")]
    Plan(String),
    /// Running the query failed; the engine's message is not passed on (it may quote values).
    #[error("the dp query failed while running ({stage})")]
    Execution {
        /// "bounding" or "release".
        stage: &'static str,
    },
}

impl DpError {
    /// Stable machine-readable code, part of the HTTP API.
    pub fn code(&self) -> &'static str {
        match self {
            DpError::InvalidBudget(_) => "dp_invalid_budget",
            DpError::DeltaRequired => "dp_private_keys_need_delta",
            DpError::InvalidArgument(_) => "dp_invalid_argument",
            DpError::Mechanism { .. } => "dp_mechanism",
            DpError::ShareExceeded { .. } => "dp_share_exceeded",
            DpError::SizeLimit { .. } => "dp_size_limit",
            DpError::NoPrivacyUnit(_) => "dp_no_privacy_unit",
            DpError::UnboundedColumn(_) => "dp_unbounded_column",
            DpError::Unsupported(_) => "dp_unsupported",
            DpError::Plan(_) => "dp_plan",
            DpError::Execution { .. } => "dp_execution",
        }
    }

    pub(crate) fn opendp(stage: &'static str) -> impl FnOnce(opendp::error::Error) -> DpError {
        move |e| DpError::Mechanism { stage, detail: format!("{:?}: {}", e.variant, e.message.unwrap_or_default()) }
    }

    /// A DataFusion error while building a plan: plan-building messages name columns and
    /// expressions of the researcher's SQL, never cell values (those only appear at execution).
    pub(crate) fn plan(context: &'static str) -> impl FnOnce(datafusion::error::DataFusionError) -> DpError {
        move |e| DpError::Plan(format!("{context}: {e}"))
    }

    /// A DataFusion error while running: the fixed message only (casts and parses quote values).
    pub(crate) fn execution(stage: &'static str) -> impl FnOnce(datafusion::error::DataFusionError) -> DpError {
        move |_| DpError::Execution { stage }
    }

    /// Maps the policy crate's refusal of a plan shape to this crate's codes.
    pub(crate) fn from_policy(e: niji_policy::PolicyError) -> DpError {
        match e {
            niji_policy::PolicyError::PersonUnreachable(why) => DpError::NoPrivacyUnit(why.to_string()),
            niji_policy::PolicyError::UnsupportedShape(why) => DpError::Unsupported(why.to_string()),
            other => DpError::Plan(other.to_string()),
        }
    }
}

/// Crate result type.
pub type Result<T> = std::result::Result<T, DpError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_distinct() {
        let all = [
            DpError::InvalidBudget(String::new()),
            DpError::DeltaRequired,
            DpError::InvalidArgument(String::new()),
            DpError::Mechanism { stage: "build", detail: String::new() },
            DpError::ShareExceeded { mechanism: "x", loss: 1.0, share: 0.5 },
            DpError::SizeLimit { limit: 1 },
            DpError::NoPrivacyUnit(String::new()),
            DpError::UnboundedColumn(String::new()),
            DpError::Unsupported(String::new()),
            DpError::Plan(String::new()),
            DpError::Execution { stage: "bounding" },
        ];
        let codes: Vec<&str> = all.iter().map(DpError::code).collect();
        assert_eq!(
            codes,
            [
                "dp_invalid_budget",
                "dp_private_keys_need_delta",
                "dp_invalid_argument",
                "dp_mechanism",
                "dp_share_exceeded",
                "dp_size_limit",
                "dp_no_privacy_unit",
                "dp_unbounded_column",
                "dp_unsupported",
                "dp_plan",
                "dp_execution"
            ]
        );
    }
}
