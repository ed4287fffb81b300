//! Integration tests of the HTTP API, through the router with `tower::ServiceExt::oneshot`
//! (and one over a real socket), over a real catalog (a SQLite file in a temp dir).
#![allow(clippy::unwrap_used)]

mod auth;
mod e2e;
mod fuzz;
mod matrix;
mod openapi;
mod pipelines;
mod queries;
mod steward;
mod support;
