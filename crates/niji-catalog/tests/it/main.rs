//! Integration tests of niji-catalog: every test runs on SQLite (a file in a temp dir) and on
//! PostgreSQL (a fresh database `niji_test_<random>` on `NIJI_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, dropped afterwards). When PostgreSQL is
//! unreachable the PostgreSQL tests FAIL, unless `NIJI_TEST_SKIP_PG=1`, in which case they
//! print a loud SKIPPED line.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod audit;
mod budget;
mod pipeline;
mod principals;
mod projects;
mod support;
mod versions;
