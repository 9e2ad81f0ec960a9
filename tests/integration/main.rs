//! End-to-end and cross-checking tests, in one binary (every test binary
//! links DuckDB, so we keep to one).
//!
//! - `cli`: the `modeaudit` binary as a user runs it, output and errors;
//! - `blackbox`: external programs as black boxes, and their failures;
//! - `catalog`: the DuckDB catalog read back through the `duckdb` crate,
//!   atomic batches under SIGKILL, locking, schema versions;
//! - `accuracy`: index answers against exact scans on seeded data;
//! - `calibrate`: hulls, rejection sampling, both calibrations end to end;
//! - `onnx`: the committed digit models through the real ONNX Runtime;
//! - `ingest`: imports and exports through .npy, .npz and Parquet;
//! - `vecfile`: the vector-file parsers on good, bad and fuzzed bytes;
//! - `update`: incremental re-audits against full recomputations;
//! - `durability`: kills at several moments, resumable runs, readers beside
//!   a writer, check and repair, drop, and committed on-disk fixtures.

mod accuracy;
mod blackbox;
mod calibrate;
mod catalog;
mod cli;
mod common;
mod durability;
mod ingest;
mod onnx;
mod update;
mod vecfile;
