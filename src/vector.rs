//! Vector arithmetic shared by every search path.
//!
//! Two dot products live here, and the split between them is deliberate:
//!
//! - [`dot_exact`] accumulates in double precision in a fixed order. It is the
//!   one and only judge of whether a sample lies within a radius and of the
//!   similarity it contributes, in the exact scan, the HNSW search and the
//!   incremental update alike, so that all of them agree at the boundary
//!   `d(a, x) = r` to the last bit.
//! - [`dot_fast`] accumulates in single precision with as many lanes as the
//!   processor has. It steers the HNSW graph (where a rounding error only
//!   changes which candidate is looked at first) and nothing else.
//!
//! Both are compiled for several instruction sets and dispatched at run time,
//! so a binary built on one machine runs at full speed on another. The fixed
//! accumulation order of `dot_exact` makes its result the same whichever
//! instruction set runs it.

use multiversion::multiversion;
use ndarray::{Array2, ArrayViewMut2, Axis};

use crate::error::{Error, Result, VectorProblem};

/// Lanes of the fixed-order accumulator of [`dot_exact`].
const EXACT_LANES: usize = 8;
/// Lanes of the accumulator of [`dot_fast`]: one AVX-512 register of f32.
const FAST_LANES: usize = 16;

/// Dot product accumulated in f64 in a fixed order: the reference for every
/// radius test and similarity.
#[multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn dot_exact(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f64; EXACT_LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % EXACT_LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (x, y) in a_body
        .chunks_exact(EXACT_LANES)
        .zip(b_body.chunks_exact(EXACT_LANES))
    {
        for lane in 0..EXACT_LANES {
            acc[lane] += f64::from(x[lane]) * f64::from(y[lane]);
        }
    }
    for (lane, (x, y)) in a_tail.iter().zip(b_tail).enumerate() {
        acc[lane] += f64::from(*x) * f64::from(*y);
    }
    // Pairwise reduction in a fixed order.
    let quad = [
        acc[0] + acc[4],
        acc[1] + acc[5],
        acc[2] + acc[6],
        acc[3] + acc[7],
    ];
    (quad[0] + quad[2]) + (quad[1] + quad[3])
}

/// Dot product accumulated in f32: fast, for steering graph searches only.
#[multiversion(targets("x86_64+avx512f", "x86_64+avx2+fma", "aarch64+neon"))]
pub fn dot_fast(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; FAST_LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % FAST_LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (x, y) in a_body
        .chunks_exact(FAST_LANES)
        .zip(b_body.chunks_exact(FAST_LANES))
    {
        for lane in 0..FAST_LANES {
            acc[lane] = x[lane].mul_add(y[lane], acc[lane]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in a_tail.iter().zip(b_tail) {
        sum += x * y;
    }
    sum
}

/// Checks that a vector has a direction: finite values and a non-zero norm.
pub fn check_vector(v: &[f32]) -> std::result::Result<f64, VectorProblem> {
    let mut norm2 = 0f64;
    for &x in v {
        if x.is_nan() {
            return Err(VectorProblem::NaN);
        }
        if x.is_infinite() {
            return Err(VectorProblem::Infinite);
        }
        norm2 += f64::from(x) * f64::from(x);
    }
    if norm2 == 0.0 || !norm2.is_finite() {
        return Err(VectorProblem::ZeroNorm);
    }
    Ok(norm2.sqrt())
}

/// Scales every row to unit length in place, refusing rows that hold NaN or
/// infinity or have zero norm. `what` names the source in the error (a file,
/// a generator), and the error names the row.
pub fn normalize_rows(mut rows: ArrayViewMut2<'_, f32>, what: &str) -> Result<()> {
    for (row_index, mut row) in rows.axis_iter_mut(Axis(0)).enumerate() {
        let slice = row
            .as_slice()
            .expect("rows of a standard-layout matrix are contiguous");
        let norm = check_vector(slice).map_err(|problem| Error::BadVector {
            what: what.to_string(),
            row: row_index,
            problem,
        })?;
        let scale = (1.0 / norm) as f32;
        row.mapv_inplace(|x| x * scale);
    }
    Ok(())
}

/// Checks that every value of a matrix is finite (for latent codes, which are
/// stored as they are and need no norm).
pub fn check_finite_rows(rows: &Array2<f32>, what: &str) -> Result<()> {
    for (row_index, row) in rows.axis_iter(Axis(0)).enumerate() {
        if let Some(x) = row.iter().find(|x| !x.is_finite()) {
            let problem = if x.is_nan() {
                VectorProblem::NaN
            } else {
                VectorProblem::Infinite
            };
            return Err(Error::BadVector {
                what: what.to_string(),
                row: row_index,
                problem,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn test_dot_exact_matches_naive_f64_sum() {
        for len in [0, 1, 7, 8, 9, 31, 512, 513] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 104729) % 89) as f32 / 89.0 - 0.5)
                .collect();
            let naive: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((dot_exact(&a, &b) - naive).abs() < 1e-12, "len {len}");
            assert!(
                (f64::from(dot_fast(&a, &b)) - naive).abs() < 1e-4,
                "len {len}"
            );
        }
    }

    #[test]
    fn test_normalize_rows_names_the_bad_row() {
        let mut m = array![[3.0f32, 4.0], [0.0, 0.0]];
        let err = normalize_rows(m.view_mut(), "x.npy").unwrap_err();
        assert!(err.to_string().contains("row 1"), "{err}");
        assert!(err.to_string().contains("zero norm"), "{err}");
        let mut m = array![[3.0f32, 4.0], [f32::NAN, 1.0]];
        let err = normalize_rows(m.view_mut(), "x.npy").unwrap_err();
        assert!(err.to_string().contains("row 1 holds NaN"), "{err}");
        let mut m = array![[3.0f32, 4.0]];
        normalize_rows(m.view_mut(), "x").unwrap();
        assert!((m[[0, 0]] - 0.6).abs() < 1e-7 && (m[[0, 1]] - 0.8).abs() < 1e-7);
    }
}
