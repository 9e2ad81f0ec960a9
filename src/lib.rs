//! modeaudit: black-box audit and calibration of intra-mode collapse in
//! generative models.
//!
//! A generator and an identity descriptor, seen only from outside, turn
//! latent codes into unit embeddings ([`blackbox`]). Every sample is stored
//! in a DuckDB [`catalog`], the source of truth, and in an HNSW [`index`]
//! derived from it. An audit ([`audit`]) draws anchors and measures, for
//! each, how many samples crowd around it ([`score`]: neighbour counts,
//! expected similarity, MCCS), finding the worst-case mode; [`search`] does
//! the counting, exactly or through the index. An audit can be brought up
//! to date with new samples without recomputing it ([`update`]); the
//! catalog and its indexes are checked, repaired and pruned by
//! [`maintenance`]. Calibrations ([`calibrate`]) reshape the latent space
//! around a mode, and [`compare`] judges them by auditing again.
//!
//! The formulas are those of the method's authors, kept exactly; see
//! [`score`] for them.

pub mod audit;
pub mod blackbox;
pub mod calibrate;
pub mod catalog;
pub mod compare;
pub mod error;
pub mod grid;
pub mod index;
pub mod ingest;
pub mod maintenance;
pub mod progress;
pub mod sampling;
pub mod score;
pub mod search;
pub mod update;
pub mod vecfile;
pub mod vector;

pub use error::{Error, Result};

/// This program's version, recorded with every audit and schema migration.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
