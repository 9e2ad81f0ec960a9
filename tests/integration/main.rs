//! End-to-end and cross-checking tests, in one binary (every test binary
//! links DuckDB, so we keep to one).
//!
//! - `cli`: the `modeaudit` binary as a user runs it, output and errors;
//! - `catalog`: the DuckDB catalog read back through the `duckdb` crate,
//!   atomic batches under SIGKILL, locking, schema versions;
//! - `accuracy`: index answers against exact scans on seeded data.

mod accuracy;
mod catalog;
mod cli;
mod common;
