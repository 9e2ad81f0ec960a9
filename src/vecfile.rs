//! Reading vectors from `.npy` files given on the command line.
//!
//! A query vector (`neighbors --vector`) may be stored as float32 or float64,
//! as a 1-D array or a single-row 2-D array; all are accepted and checked.

use std::path::Path;

use ndarray::{Array1, Array2};
use ndarray_npy::ReadNpyExt;

use crate::error::{Error, Result};

/// Reads a matrix of float32 or float64 values (converted to float32).
pub fn read_matrix(path: &Path) -> Result<Array2<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if let Ok(m) = Array2::<f32>::read_npy(bytes.as_slice()) {
        return Ok(m);
    }
    if let Ok(m) = Array2::<f64>::read_npy(bytes.as_slice()) {
        return Ok(m.mapv(|x| x as f32));
    }
    if let Ok(v) = Array1::<f32>::read_npy(bytes.as_slice()) {
        return Ok(v.insert_axis(ndarray::Axis(0)));
    }
    match Array1::<f64>::read_npy(bytes.as_slice()) {
        Ok(v) => Ok(v.mapv(|x| x as f32).insert_axis(ndarray::Axis(0))),
        Err(e) => Err(Error::VectorFile {
            path: path.to_path_buf(),
            reason: format!(
                "not a 1-D or 2-D float32/float64 .npy array in C order ({e})"
            ),
        }),
    }
}

/// Reads exactly one vector of dimension `dim`, normalised to unit length.
pub fn read_query_vector(path: &Path, dim: usize) -> Result<Vec<f32>> {
    let mut m = read_matrix(path)?;
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
