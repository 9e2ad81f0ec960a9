//! The library's error type.
//!
//! Every variant carries the facts a user needs to fix the problem (the file,
//! the row, the expected and received sizes), so that the command line can
//! print it as is. The binary wraps these in `anyhow` only to add context.

use std::path::PathBuf;

/// Errors raised by the modeaudit library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The catalog database failed; `context` says what we were doing.
    #[error("catalog: {context}: {source}")]
    Catalog {
        context: String,
        #[source]
        source: duckdb::Error,
    },

    /// Another process holds the catalog file (DuckDB allows one writer and,
    /// while it writes, no reader from another process).
    #[error(
        "catalog {path} is in use by another process, and stayed so for the whole \
         wait (MODEAUDIT_LOCK_WAIT, 10 s by default); modeaudit holds it only \
         briefly, so another program may be keeping it open"
    )]
    CatalogLocked { path: PathBuf },

    /// The catalog was written by a newer modeaudit.
    #[error(
        "catalog {path} has schema version {found}, but this modeaudit knows \
         versions up to {known}; upgrade modeaudit to open it"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    /// A model name that the catalog does not hold.
    #[error("no model named {0:?} in the catalog (see `modeaudit models`)")]
    UnknownModel(String),

    /// A sample id that the model does not hold.
    #[error("no sample {sample_id} in model {model:?}")]
    UnknownSample { model: String, sample_id: i64 },

    /// An audit id that the catalog does not hold.
    #[error("no audit {0} in the catalog")]
    UnknownAudit(i64),

    /// A vector whose length does not fit the model.
    #[error("{what}: expected dimension {expected}, got {got}")]
    Dimension {
        what: String,
        expected: usize,
        got: usize,
    },

    /// A vector that is not finite or has zero norm, so it has no direction.
    #[error("{what}: row {row} {problem}")]
    BadVector {
        what: String,
        row: usize,
        problem: VectorProblem,
    },

    /// A seed that the model already used: the batch would duplicate samples,
    /// which an audit cannot tell from real collapse.
    #[error(
        "seed {seed} was already used for model {model:?} (batch {batch_id}); \
         a repeated seed duplicates samples, which looks exactly like collapse. \
         Choose another seed or omit --seed"
    )]
    SeedReused {
        model: String,
        seed: u64,
        batch_id: i64,
    },

    /// A generator specification that cannot be parsed or does not fit.
    #[error("generator {spec:?}: {reason}")]
    Generator { spec: String, reason: String },

    /// ONNX Runtime is missing, cannot be loaded, or failed.
    #[error("ONNX Runtime: {0}")]
    OnnxRuntime(String),

    /// A model exists with another generator or other dimensions.
    #[error("model {model:?} exists with {existing}; cannot add samples from {requested}")]
    ModelMismatch {
        model: String,
        existing: String,
        requested: String,
    },

    /// Parameters that make no sense (an anchor count larger than the
    /// sample count, a radius outside [0, 1], ...).
    #[error("{0}")]
    InvalidArgument(String),

    /// A vector file that cannot be read.
    #[error("{path}: {reason}")]
    VectorFile { path: PathBuf, reason: String },

    /// The HNSW index files are missing, corrupt or from another format.
    #[error("index {path}: {reason}")]
    Index { path: PathBuf, reason: String },

    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong with a vector that cannot be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorProblem {
    /// Holds NaN.
    NaN,
    /// Holds +/- infinity.
    Infinite,
    /// Has zero length, so no direction.
    ZeroNorm,
}

impl std::fmt::Display for VectorProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VectorProblem::NaN => "holds NaN",
            VectorProblem::Infinite => "holds an infinite value",
            VectorProblem::ZeroNorm => "has zero norm (no direction)",
        })
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a DuckDB error with what we were doing, recognising the lock
    /// conflict that DuckDB reports when another process holds the file.
    pub(crate) fn catalog(context: impl Into<String>, source: duckdb::Error) -> Error {
        Error::Catalog {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
