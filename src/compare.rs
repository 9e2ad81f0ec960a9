//! Before and after: `modeaudit compare --audit A --audit B`.
//!
//! Two audits of two models (typically a collapsed model and the same black
//! box sampled through a calibration) differ in size, so the targeted mode
//! is compared by rates (neighbour counts over sample counts), its embedding
//! queried against each model's samples exactly. The output distributions
//! are compared by the Frechet distance between their embeddings, the
//! quantity FID computes on Inception features:
//!
//! ```text
//! FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)
//! ```
//!
//! computed in double precision through symmetric eigendecompositions (the
//! matrix inside the trace is symmetric and positive semi-definite, so its
//! square root has the eigenvalues' square roots; tiny negative eigenvalues
//! from rounding are taken as 0).

use std::path::Path;

use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{ArrayView2, s};
use rayon::prelude::*;
use serde::Serialize;

use crate::catalog::{AuditRecord, Catalog};
use crate::error::{Error, Result};
use crate::score::{AnchorScore, Kernel};
use crate::search::exact_sums;

/// Rows per chunk of the moment sums (fixed, so results do not depend on
/// the thread count).
const CHUNK: usize = 2048;

/// One side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub audit_id: i64,
    pub model: String,
    pub kind: String,
    pub n_samples: u64,
    pub n_anchors: u64,
    pub mccs_mean: Option<f64>,
    pub mccs_std: Option<f64>,
    pub mccs_max: Option<f64>,
    pub worst_sample_id: Option<i64>,
    pub worst_neighbors: Option<u64>,
    /// The worst-case mode's neighbours over the other samples.
    pub worst_rate: Option<f64>,
    /// The targeted mode's embedding against this side's samples.
    pub mode_neighbors: u64,
    pub mode_rate: f64,
    pub mode_mccs: f64,
    /// Calibrations this side's samples were drawn through.
    pub calibrations: Vec<CalibrationUse>,
}

/// A calibration behind some of a side's samples.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationUse {
    pub calibration_id: i64,
    pub method: String,
    pub samples: i64,
    /// Expected share of prior codes kept.
    pub acceptance_rate: f64,
    /// Prior codes (black-box calls, for a generator that embeds every code
    /// it is given) per kept sample: `1 / acceptance_rate`.
    pub sampling_cost: f64,
}

/// The comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// The mode both sides are measured around: the calibration's target
    /// when B was drawn through a calibration of A's model, else A's
    /// worst-case mode.
    pub mode_sample_id: i64,
    pub mode_model: String,
    pub theta: f64,
    pub radius: f64,
    pub before: Side,
    pub after: Side,
    /// Frechet distance between the two models' embeddings.
    pub frechet_distance: f64,
    /// `after.mode_rate / before.mode_rate`.
    pub mode_rate_ratio: f64,
}

/// Compares audit `a` (before) with audit `b` (after).
pub fn compare(catalog_path: &Path, a: i64, b: i64) -> Result<CompareReport> {
    let catalog = Catalog::open_read_only(catalog_path)?;
    let before = catalog.audit(a)?;
    let after = catalog.audit(b)?;
    let (ids_a, emb_a) = audited_embeddings(&catalog, &before)?;
    let (_, emb_b) = audited_embeddings(&catalog, &after)?;
    if emb_a.ncols() != emb_b.ncols() {
        return Err(Error::Dimension {
            what: format!(
                "embeddings of model {:?} against model {:?}",
                after.model, before.model
            ),
            expected: emb_a.ncols(),
            got: emb_b.ncols(),
        });
    }
    // The targeted mode.
    let calibrations_b = calibration_uses(&catalog, &after.model)?;
    let targeted = calibrations_b.iter().find_map(|c| {
        let record = catalog.calibration(c.calibration_id).ok()?;
        (record.calibration.model == before.model).then_some(record.calibration.mode_sample_id)
    });
    let mode = targeted.or(before.worst_sample_id).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "audit {a} has no worst-case mode to compare around"
        ))
    })?;
    let mode_row = ids_a
        .binary_search(&mode)
        .map_err(|_| Error::UnknownSample {
            model: before.model.clone(),
            sample_id: mode,
        })?;
    let mode_vector = emb_a.slice(s![mode_row..mode_row + 1, ..]).to_owned();
    let kernel = Kernel::new(before.theta, before.radius)?;
    let bar = indicatif::ProgressBar::hidden();
    let sums_a = exact_sums(
        emb_a.view(),
        0,
        mode_vector.view(),
        &[Some(mode_row)],
        &kernel,
        &bar,
    )[0];
    let same_model = after.model == before.model;
    let exclude_b = if same_model { Some(mode_row) } else { None };
    let sums_b = exact_sums(
        emb_b.view(),
        0,
        mode_vector.view(),
        &[exclude_b],
        &kernel,
        &bar,
    )[0];
    let n_a = emb_a.nrows() as u64;
    let n_b = emb_b.nrows() as u64;
    // Against a model it is not part of, the mode has n_b others, not n_b - 1.
    let others_b = if same_model { n_b } else { n_b + 1 };
    let score_a = AnchorScore::from_sums(sums_a, n_a);
    let score_b = AnchorScore::from_sums(sums_b, others_b);
    let side = |audit: &AuditRecord,
                score: AnchorScore,
                others: u64,
                calibrations: Vec<CalibrationUse>| Side {
        audit_id: audit.audit_id,
        model: audit.model.clone(),
        kind: audit.kind.clone(),
        n_samples: audit.n_samples,
        n_anchors: audit.n_anchors,
        mccs_mean: audit.mccs_mean,
        mccs_std: audit.mccs_std,
        mccs_max: audit.mccs_max,
        worst_sample_id: audit.worst_sample_id,
        worst_neighbors: audit.worst_neighbors,
        worst_rate: audit
            .worst_neighbors
            .map(|w| w as f64 / (audit.n_samples.max(2) - 1) as f64),
        mode_neighbors: score.neighbors,
        mode_rate: score.neighbors as f64 / (others.max(2) - 1) as f64,
        mode_mccs: score.mccs,
        calibrations,
    };
    let before_side = side(
        &before,
        score_a,
        n_a,
        calibration_uses(&catalog, &before.model)?,
    );
    let after_side = side(&after, score_b, others_b, calibrations_b);
    let frechet_distance = frechet_distance(emb_a.view(), emb_b.view());
    let mode_rate_ratio = if before_side.mode_rate > 0.0 {
        after_side.mode_rate / before_side.mode_rate
    } else {
        f64::NAN
    };
    Ok(CompareReport {
        mode_sample_id: mode,
        mode_model: before.model.clone(),
        theta: before.theta,
        radius: before.radius,
        before: before_side,
        after: after_side,
        frechet_distance,
        mode_rate_ratio,
    })
}

/// The embeddings an audit saw: its model's first `n_samples` samples.
fn audited_embeddings(
    catalog: &Catalog,
    audit: &AuditRecord,
) -> Result<(Vec<i64>, ndarray::Array2<f32>)> {
    let (mut ids, embeddings) = catalog.embeddings(&audit.model, 0)?;
    let n = (audit.n_samples as usize).min(ids.len());
    ids.truncate(n);
    Ok((ids, embeddings.slice(s![..n, ..]).to_owned()))
}

fn calibration_uses(catalog: &Catalog, model: &str) -> Result<Vec<CalibrationUse>> {
    catalog
        .batch_calibrations(model)?
        .into_iter()
        .map(|(calibration_id, samples)| {
            let record = catalog.calibration(calibration_id)?;
            let rate = record.calibration.acceptance_rate;
            Ok(CalibrationUse {
                calibration_id,
                method: record.calibration.method.clone(),
                samples,
                acceptance_rate: rate,
                sampling_cost: 1.0 / rate.max(1e-300),
            })
        })
        .collect()
}

/// Mean and covariance (dividing by `n - 1`) of the rows, in f64.
pub fn moments(x: ArrayView2<'_, f32>) -> (Vec<f64>, DMatrix<f64>) {
    let (n, d) = x.dim();
    let chunks: Vec<(Vec<f64>, DMatrix<f64>)> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let rows = x.slice(s![c * CHUNK..((c + 1) * CHUNK).min(n), ..]);
            let m = DMatrix::from_fn(rows.nrows(), d, |i, j| f64::from(rows[[i, j]]));
            let sum: Vec<f64> = (0..d).map(|j| m.column(j).sum()).collect();
            (sum, m.transpose() * &m)
        })
        .collect();
    let mut sum = vec![0f64; d];
    let mut cross = DMatrix::<f64>::zeros(d, d);
    for (s, c) in chunks {
        for (a, b) in sum.iter_mut().zip(s) {
            *a += b;
        }
        cross += c;
    }
    let nf = n as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / nf).collect();
    let mut cov = cross;
    for i in 0..d {
        for j in 0..d {
            cov[(i, j)] = (cov[(i, j)] - nf * mean[i] * mean[j]) / (nf - 1.0).max(1.0);
        }
    }
    (mean, cov)
}

/// The Frechet distance between the Gaussians fitted to two sets of rows.
pub fn frechet_distance(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> f64 {
    let (mu_a, s_a) = moments(a);
    let (mu_b, s_b) = moments(b);
    frechet_from_moments(&mu_a, &s_a, &mu_b, &s_b)
}

/// The Frechet distance between `N(mu_a, s_a)` and `N(mu_b, s_b)`.
pub fn frechet_from_moments(
    mu_a: &[f64],
    s_a: &DMatrix<f64>,
    mu_b: &[f64],
    s_b: &DMatrix<f64>,
) -> f64 {
    let mean_term: f64 = mu_a.iter().zip(mu_b).map(|(x, y)| (x - y).powi(2)).sum();
    let root_a = psd_sqrt(s_a);
    let inner = &root_a * s_b * &root_a;
    let inner = (&inner + inner.transpose()) * 0.5;
    let trace_root: f64 = SymmetricEigen::new(inner)
        .eigenvalues
        .iter()
        .map(|&e| e.max(0.0).sqrt())
        .sum();
    (mean_term + s_a.trace() + s_b.trace() - 2.0 * trace_root).max(0.0)
}

/// Square root of a symmetric positive semi-definite matrix.
fn psd_sqrt(m: &DMatrix<f64>) -> DMatrix<f64> {
    let symmetric = (m + m.transpose()) * 0.5;
    let eigen = SymmetricEigen::new(symmetric);
    let roots = eigen.eigenvalues.map(|e| e.max(0.0).sqrt());
    &eigen.eigenvectors * DMatrix::from_diagonal(&roots) * eigen.eigenvectors.transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;

    #[test]
    fn test_frechet_distance_of_known_gaussians() {
        // Identical sets: 0. Shifted by a constant vector c: |c|^2.
        let x = crate::blackbox::draw_latents(5000, 4, 1);
        assert!(frechet_distance(x.view(), x.view()) < 1e-9);
        let shifted = &x + &ndarray::array![1.0f32, 0.0, 2.0, 0.0];
        let fd = frechet_distance(x.view(), shifted.view());
        assert!((fd - 5.0).abs() < 1e-6, "{fd}");
        // Closed form for diagonal covariances: sum (sqrt(a) - sqrt(b))^2.
        let a = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![1.0, 4.0]));
        let b = DMatrix::from_diagonal(&nalgebra::DVector::from_vec(vec![9.0, 1.0]));
        let fd = frechet_from_moments(&[0.0, 0.0], &a, &[0.0, 0.0], &b);
        assert!(
            (fd - ((1.0f64 - 3.0).powi(2) + (2.0f64 - 1.0).powi(2))).abs() < 1e-9,
            "{fd}"
        );
        // Moments match a direct computation.
        let (mean, cov) = moments(x.view());
        let direct_mean = x.mean_axis(Axis(0)).unwrap();
        assert!((mean[2] - f64::from(direct_mean[2])).abs() < 1e-6);
        assert!((cov[(1, 1)] - 1.0).abs() < 0.05);
    }
}
