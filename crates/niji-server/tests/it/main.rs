//! Integration tests of the HTTP API, through the router with `tower::ServiceExt::oneshot`,
//! over a real catalog (a SQLite file in a temp dir).
#![allow(clippy::unwrap_used)]

mod auth;
mod steward;
mod support;
