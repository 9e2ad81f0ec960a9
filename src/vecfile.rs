//! Reading vectors from `.npy` and `.npz` files.
//!
//! Users bring embeddings and latent codes from elsewhere (`ingest`), and
//! query vectors (`neighbors --vector`). These readers accept what NumPy
//! writes for a matrix of floats (float32 or float64, either byte order, C
//! or Fortran order, rank 2, or rank 1 for a single vector) and refuse
//! anything else with a reason that says what the file holds instead.
//!
//! The parsers themselves live in the small crate `modeaudit-vecfile`
//! (`crates/vecfile`), which does not depend on DuckDB so that it can be
//! fuzzed on its own (`fuzz/`); this module adds files, paths and this
//! crate's errors. Finiteness and norms are checked afterwards by
//! [`crate::vector`], which names the bad row.
//!
//! Parquet files are read through DuckDB instead (see [`crate::ingest`]).

use std::path::Path;

use ndarray::Array2;

pub use modeaudit_vecfile::{FileKind, kind_of_bytes, parse_npy, parse_npz};

use crate::error::{Error, Result};

/// Recognises a vector file by its magic bytes, falling back to the name.
pub fn kind_of(path: &Path) -> Result<FileKind> {
    let mut head = [0u8; 6];
    let n = {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut n = 0;
        while n < head.len() {
            match file.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        n
    };
    let head = &head[..n];
    if let Some(kind) = kind_of_bytes(head) {
        return Ok(kind);
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_lowercase();
    Err(Error::VectorFile {
        path: path.to_path_buf(),
        reason: format!(
            "not a .npy, .npz or Parquet file (its first bytes are {head:?}{})",
            if ["npy", "npz", "parquet"].contains(&extension.as_str()) {
                format!(", though its name ends in .{extension}: corrupt or truncated?")
            } else {
                String::new()
            }
        ),
    })
}

/// Reads a `.npy` file of floats as a matrix (a 1-D array is one row).
pub fn read_npy(path: &Path) -> Result<Array2<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_npy(&bytes).map_err(|reason| Error::VectorFile {
        path: path.to_path_buf(),
        reason,
    })
}

/// Reads one array of a `.npz` file: the one named `name`, else the only
/// array, else the first of `preferred` names present. Returns its name.
pub fn read_npz(
    path: &Path,
    name: Option<&str>,
    preferred: &[&str],
) -> Result<(String, Array2<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_npz(&bytes, name, preferred).map_err(|reason| Error::VectorFile {
        path: path.to_path_buf(),
        reason,
    })
}

/// Reads a `.npy` or `.npz` file (for an `.npz`, as [`read_npz`]).
pub fn read_matrix(path: &Path, name: Option<&str>, preferred: &[&str]) -> Result<Array2<f32>> {
    match kind_of(path)? {
        FileKind::Npy => {
            if let Some(name) = name {
                return Err(Error::VectorFile {
                    path: path.to_path_buf(),
                    reason: format!("is a single .npy array; it has no array named {name:?}"),
                });
            }
            read_npy(path)
        }
        FileKind::Npz => read_npz(path, name, preferred).map(|(_, m)| m),
        FileKind::Parquet => Err(Error::VectorFile {
            path: path.to_path_buf(),
            reason: "is a Parquet file; only .npy and .npz are read here".into(),
        }),
    }
}

/// Reads exactly one vector of dimension `dim`, normalised to unit length.
pub fn read_query_vector(path: &Path, dim: usize) -> Result<Vec<f32>> {
    let mut m = read_matrix(path, None, &[])?;
    if m.nrows() != 1 {
        return Err(Error::VectorFile {
            path: path.to_path_buf(),
            reason: format!("holds {} vectors; give exactly one", m.nrows()),
        });
    }
    if m.ncols() != dim {
        return Err(Error::Dimension {
            what: format!("query vector {}", path.display()),
            expected: dim,
            got: m.ncols(),
        });
    }
    crate::vector::normalize_rows(m.view_mut(), &path.display().to_string())?;
    Ok(m.row(0).to_vec())
}
