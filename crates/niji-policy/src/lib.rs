//! Access policy: what a project may see of a dataset, and what a researcher's SQL may be.
//!
//! * [`model`]: `policies/*.toml`, one per dataset × project — release modes, visible tables
//!   and columns, row filters, the minimum cell size k, the rounding base and the extract row
//!   cap — validated against the catalog's dataset definitions.
//! * [`guard`]: the SQL text guard that runs before any planning (size, one statement, queries
//!   only, expression depth, table-function allow-list).
//! * [`plan`]: checks on the planned query, tracing the privacy unit through a plan by lineage,
//!   and the statistical-disclosure-control rewrite (distinct persons per output cell).
//!
//! The query service (niji-query) builds each researcher's catalog from a [`Policy`]: denied
//! tables and columns simply do not exist there, and row filters sit beneath every plan.

mod error;
pub mod guard;
pub mod model;
pub mod plan;

pub use error::{PolicyError, Result};
pub use guard::Limits;
pub use model::{DEFAULT_K, Policy, PolicySet, TableView};
pub use plan::{SdcPlan, WithPerson, carry_person, check_plan, sdc_rewrite};
