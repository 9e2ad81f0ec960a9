//! Calibration: reshaping the latent space so that the worst-case mode is
//! generated less often, as a wrapper around the black box.
//!
//! Both methods act on latent codes only and assume a smooth manifold
//! (nearby codes give similar identities):
//!
//! - [`gmm`] (Algorithm 1): a Gaussian mixture fitted by k-means to the
//!   model's codes, with the components that crowd around the mode
//!   reweighted down;
//! - [`hull`] (Algorithm 2): the convex hull of the dense region's codes in a
//!   low-dimensional projection, and rejection sampling from `N(0, I)` that
//!   keeps codes inside it with probability `rho_sparse / rho_dense`.
//!
//! [`fit`] reads a model's samples and an audit from the catalog, fits the
//! chosen method around a mode, and stores the result in the `calibrations`
//! table; [`Calibration::draw`] generates calibrated codes from it, which
//! `sample --calibration` sends through the source model's black box.

pub mod gmm;
pub mod hull;
pub mod kmeans;

use std::path::Path;
use std::time::Instant;

use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, NewCalibration};
use crate::error::{Error, Result};
use crate::score::Kernel;
use crate::search::exact_sums;
use crate::vector::dot_exact;

/// Which algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Algorithm 1: reweighted Gaussian mixture.
    Gmm,
    /// Algorithm 2: convex hull and rejection sampling.
    Hull,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Gmm => "gmm",
            Method::Hull => "hull",
        }
    }
}

/// What `calibrate` needs besides the method's own settings.
#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    pub model: String,
    pub method: Method,
    /// Audit whose worst-case mode is targeted (default: the model's latest).
    pub audit_id: Option<i64>,
    /// A mode the user names instead of the audit's worst-case one.
    pub mode: Option<i64>,
    /// Neighbour radius (default: the audit's).
    pub radius: Option<f64>,
    pub seed: u64,
    /// gmm: number of components (the authors used 50).
    pub components: usize,
    /// gmm: covariance policy.
    pub covariance: gmm::CovariancePolicy,
    /// gmm: whether the mixture covers the whole code or the mode's
    /// subspace (of `dims` directions).
    pub space: gmm::Space,
    /// gmm: target rate `rho` (default: the median neighbour rate of random
    /// anchors).
    pub target_rate: Option<f64>,
    /// hull: codes of the `points` samples nearest the mode (default: all
    /// within the radius).
    pub points: Option<usize>,
    /// hull, and gmm in the mode's subspace: projected dimensions.
    pub dims: usize,
    /// hull: slack of the facet test, relative to the points' spread.
    pub tolerance: f64,
}

/// A fitted calibration, as stored in `calibrations.params`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Calibration {
    Gmm {
        mixture: gmm::Mixture,
    },
    Hull {
        hull: hull::Hull,
        /// Mean neighbour count of samples whose code is inside the hull.
        rho_dense: f64,
        /// Median neighbour count of random anchors.
        rho_sparse: f64,
        /// `rho_sparse / rho_dense`: the chance a code inside is kept.
        acceptance: f64,
        /// Share of prior codes inside the hull (estimated by sampling).
        prior_share: f64,
        /// Samples of the model whose code is inside the hull.
        samples_inside: usize,
    },
}

impl Calibration {
    pub fn method(&self) -> Method {
        match self {
            Calibration::Gmm { .. } => Method::Gmm,
            Calibration::Hull { .. } => Method::Hull,
        }
    }

    pub fn latent_dim(&self) -> usize {
        match self {
            Calibration::Gmm { mixture } => mixture.latent_dim,
            Calibration::Hull { hull, .. } => hull.latent_dim,
        }
    }

    /// Draws `n` calibrated latent codes; returns them with the number of
    /// prior codes drawn for them (equal to `n` for the mixture).
    pub fn draw(&self, n: usize, seed: u64) -> (Array2<f32>, u64) {
        match self {
            Calibration::Gmm { mixture } => (mixture.sample(n, seed), n as u64),
            Calibration::Hull {
                hull, acceptance, ..
            } => {
                let (codes, stats) = hull.rejection_sample(n, *acceptance, seed);
                (codes, stats.drawn)
            }
        }
    }

    /// Expected share of drawn codes that are kept.
    pub fn acceptance_rate(&self) -> f64 {
        match self {
            Calibration::Gmm { .. } => 1.0,
            Calibration::Hull {
                acceptance,
                prior_share,
                ..
            } => 1.0 - prior_share * (1.0 - acceptance),
        }
    }
}

/// What `calibrate` did.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrateReport {
    pub calibration_id: i64,
    pub model: String,
    pub method: Method,
    pub audit_id: Option<i64>,
    pub mode_sample_id: i64,
    pub radius: f64,
    pub n_samples: usize,
    /// Samples within the radius of the mode (the mode left out).
    pub mode_neighbors: usize,
    pub acceptance_rate: f64,
    /// The mode's neighbour rate expected before and after (from the fit).
    pub mode_rate_before: f64,
    pub mode_rate_after: f64,
    pub summary: Vec<String>,
    pub warnings: Vec<String>,
    pub elapsed_s: f64,
}

/// Fits a calibration around a mode of a model and stores it.
pub fn fit(catalog_path: &Path, options: &CalibrateOptions) -> Result<CalibrateReport> {
    let started = Instant::now();
    let (record, audit, ids, embeddings, latents, anchor_rates) = {
        let catalog = Catalog::open_read_only(catalog_path)?;
        let record = catalog.require_model(&options.model)?;
        let audit_id = match options.audit_id {
            Some(id) => Some(id),
            None => catalog.latest_audit_id(&options.model)?,
        };
        let audit = match audit_id {
            Some(id) => Some(catalog.audit(id)?),
            None => None,
        };
        if let Some(a) = &audit
            && a.model != options.model
        {
            return Err(Error::InvalidArgument(format!(
                "audit {} is of model {:?}, not {:?}",
                a.audit_id, a.model, options.model
            )));
        }
        if !catalog.all_have_latents(&options.model)? || record.latent_dim == 0 {
            return Err(Error::InvalidArgument(format!(
                "model {:?} has samples without latent codes (imported?); calibration reshapes the \
                 latent space and needs every sample's code",
                options.model
            )));
        }
        let (ids, embeddings) = catalog.embeddings(&options.model, 0)?;
        let (_, latents) = catalog.latents(&options.model, 0)?;
        let anchor_rates = match &audit {
            Some(a) if a.kind != "modes" => catalog
                .anchor_rows(a.audit_id)?
                .iter()
                .map(|r| r.neighbors as f64)
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        (record, audit, ids, embeddings, latents, anchor_rates)
    };
    let n = ids.len();
    let mode = match (options.mode, &audit) {
        (Some(id), _) => id,
        (None, Some(a)) => a.worst_sample_id.ok_or_else(|| {
            Error::InvalidArgument(format!("audit {} has no worst-case mode", a.audit_id))
        })?,
        (None, None) => {
            return Err(Error::InvalidArgument(format!(
                "model {:?} has no audit yet: run `modeaudit audit` or `modeaudit modes` first, \
                 or name a mode with --mode",
                options.model
            )));
        }
    };
    let mode_row = ids.binary_search(&mode).map_err(|_| Error::UnknownSample {
        model: options.model.clone(),
        sample_id: mode,
    })?;
    let radius = options
        .radius
        .or(audit.as_ref().map(|a| a.radius))
        .unwrap_or(0.3);
    let theta = audit
        .as_ref()
        .map_or(radius.max(f64::MIN_POSITIVE), |a| a.theta);
    let kernel = Kernel::new(theta, radius)?;

    // Which samples lie within the radius of the mode (exact test).
    let mode_vector = embeddings.row(mode_row).to_vec();
    let dots: Vec<f64> = embeddings
        .axis_iter(Axis(0))
        .into_par_iter()
        .map(|row| dot_exact(&mode_vector, row.as_slice().expect("standard layout")))
        .collect();
    let mut in_mode: Vec<bool> = dots.iter().map(|&d| kernel.is_neighbor(d)).collect();
    in_mode[mode_row] = false;
    let mode_neighbors = in_mode.iter().filter(|&&b| b).count();
    if mode_neighbors == 0 {
        return Err(Error::InvalidArgument(format!(
            "sample {mode} has no neighbour within radius {radius}: there is no dense region to calibrate"
        )));
    }

    // Typical neighbourhood: random anchors' counts, from the audit or, for
    // a modes audit or none, from a seeded draw counted exactly now.
    let anchor_counts = if anchor_rates.is_empty() {
        let rows = crate::audit::draw_anchor_rows(n, n.min(500), options.seed ^ 0x5eed);
        let queries = embeddings.select(Axis(0), &rows);
        let exclude: Vec<Option<usize>> = rows.iter().map(|&r| Some(r)).collect();
        exact_sums(
            embeddings.view(),
            0,
            queries.view(),
            &exclude,
            &kernel,
            &indicatif::ProgressBar::hidden(),
        )
        .iter()
        .map(|s| s.neighbors as f64)
        .collect()
    } else {
        anchor_rates
    };
    let median_count = median(&anchor_counts);
    let mut warnings = Vec::new();
    let mut summary = Vec::new();

    let (calibration, before, after) = match options.method {
        Method::Gmm => {
            if options.components == 0 || options.components > n {
                return Err(Error::InvalidArgument(format!(
                    "--components must be between 1 and the number of samples ({n})"
                )));
            }
            let rho = options
                .target_rate
                .unwrap_or((median_count / (n - 1) as f64).max(1.0 / n as f64));
            if !(rho > 0.0 && rho < 1.0) {
                return Err(Error::InvalidArgument(format!(
                    "--target-rate must be in (0, 1), got {rho}"
                )));
            }
            if options.space == gmm::Space::Mode {
                let needed = gmm::subspace_points_needed(options.dims);
                if options.dims == 0 || options.dims > record.latent_dim {
                    return Err(Error::InvalidArgument(format!(
                        "--dims must be between 1 and the latent size ({})",
                        record.latent_dim
                    )));
                }
                if mode_neighbors < needed {
                    return Err(Error::InvalidArgument(format!(
                        "only {mode_neighbors} samples lie within radius {radius} of sample {mode}; \
                         the mode's subspace of {} directions needs at least {needed} (lower --dims, \
                         widen --radius, or use --space latent)",
                        options.dims
                    )));
                }
            }
            let mixture = gmm::fit(
                latents.view(),
                &in_mode,
                &gmm::FitOptions {
                    k: options.components,
                    target_rate: rho,
                    covariance: options.covariance,
                    space: options.space,
                    dims: options.dims,
                    seed: options.seed,
                },
            );
            let spread = mixture.rate_spread();
            if spread < 2.0 {
                warnings.push(format!(
                    "the mode's codes are spread evenly over the clusters (largest rate {spread:.2} x the \
                     median): reweighting can do little here; k-means cannot localise the dense region \
                     in this latent space (try --space mode, more --components, or --method hull)"
                ));
            }
            summary.push(format!(
                "k-means{}: {} components ({} iterations{}), covariances: {}",
                match options.space {
                    gmm::Space::Latent => " over the whole code".to_string(),
                    gmm::Space::Mode => format!(" in the mode's {} directions", options.dims),
                },
                mixture.components.len(),
                mixture.kmeans_iterations,
                if mixture.kmeans_converged {
                    ", converged"
                } else {
                    ", not converged"
                },
                covariance_counts(&mixture)
            ));
            summary.push(format!(
                "target rate rho = {rho:.5}; {} components lowered; mode rate {:.5} -> {:.5}",
                mixture.lowered(),
                mixture.mode_rate_before,
                mixture.mode_rate_after
            ));
            let (b, a) = (mixture.mode_rate_before, mixture.mode_rate_after);
            (Calibration::Gmm { mixture }, b, a)
        }
        Method::Hull => {
            // The codes of the samples nearest the mode.
            let mut order: Vec<usize> = (0..n).filter(|&i| i != mode_row).collect();
            order.sort_by(|&a, &b| dots[b].total_cmp(&dots[a]).then(a.cmp(&b)));
            let take = options.points.unwrap_or(mode_neighbors).min(n - 1);
            let mut rows: Vec<usize> = order[..take].to_vec();
            rows.push(mode_row);
            let codes = latents.select(Axis(0), &rows);
            let hull =
                hull::Hull::build(codes.view(), options.dims, options.tolerance).map_err(|p| {
                    Error::InvalidArgument(format!("hull calibration of sample {mode}: {p}"))
                })?;
            // rho_dense: mean count of samples whose code is inside the hull
            // (up to 1000 of them, seeded), counted exactly.
            let inside: Vec<usize> = (0..n).filter(|&i| hull.contains(latents.row(i))).collect();
            let probe: Vec<usize> = if inside.len() > 1000 {
                crate::audit::draw_anchor_rows(inside.len(), 1000, options.seed)
                    .into_iter()
                    .map(|i| inside[i])
                    .collect()
            } else {
                inside.clone()
            };
            let queries = embeddings.select(Axis(0), &probe);
            let exclude: Vec<Option<usize>> = probe.iter().map(|&r| Some(r)).collect();
            let sums = exact_sums(
                embeddings.view(),
                0,
                queries.view(),
                &exclude,
                &kernel,
                &indicatif::ProgressBar::hidden(),
            );
            let rho_dense =
                sums.iter().map(|s| s.neighbors as f64).sum::<f64>() / sums.len().max(1) as f64;
            let rho_sparse = median_count;
            let acceptance = rho_sparse / rho_dense;
            if !(acceptance.is_finite() && acceptance < 1.0) {
                return Err(Error::InvalidArgument(format!(
                    "hull calibration of sample {mode}: samples inside the hull have {rho_dense:.1} \
                     neighbours on average, no more than a typical anchor ({rho_sparse:.1}); the \
                     acceptance probability rho_sparse / rho_dense = {acceptance:.3} is not below 1, \
                     so there is nothing to thin out (is the mode really dense?)"
                )));
            }
            let acceptance = acceptance.max(1e-6);
            let prior_share = hull.prior_share(200_000, options.seed ^ 0x9e37);
            let dense_share = inside
                .iter()
                .filter(|&&i| in_mode[i] || i == mode_row)
                .count() as f64
                / inside.len().max(1) as f64;
            summary.push(format!(
                "hull of {} codes in {} projected dimensions: {} vertices, {} facets",
                rows.len(),
                hull.dims(),
                hull.vertices.len(),
                hull.facets.len()
            ));
            summary.push(format!(
                "{} samples inside ({:.1}% of the model, {:.0}% of them within the radius of the mode); \
                 prior share inside {:.2}%",
                inside.len(),
                100.0 * inside.len() as f64 / n as f64,
                100.0 * dense_share,
                100.0 * prior_share
            ));
            summary.push(format!(
                "rho_dense {rho_dense:.1}, rho_sparse {rho_sparse:.1}: codes inside kept with \
                 probability {acceptance:.4}"
            ));
            // Expected mode rate: the in-ball share inside the hull is thinned.
            let inside_in_mode = inside.iter().filter(|&&i| in_mode[i]).count() as f64 / n as f64;
            let outside_in_mode = mode_neighbors as f64 / n as f64 - inside_in_mode;
            let share_inside = inside.len() as f64 / n as f64;
            let before = mode_neighbors as f64 / (n - 1) as f64;
            let after = (outside_in_mode + acceptance * inside_in_mode)
                / (1.0 - share_inside * (1.0 - acceptance));
            (
                Calibration::Hull {
                    hull,
                    rho_dense,
                    rho_sparse,
                    acceptance,
                    prior_share,
                    samples_inside: inside.len(),
                },
                before,
                after,
            )
        }
    };
    let acceptance_rate = calibration.acceptance_rate();
    let params = serde_json::to_value(&calibration).expect("calibration serialises");
    let calibration_id = {
        let mut catalog = Catalog::open(catalog_path)?;
        catalog.insert_calibration(&NewCalibration {
            model: options.model.clone(),
            method: options.method.as_str().into(),
            audit_id: audit.as_ref().map(|a| a.audit_id),
            mode_sample_id: mode,
            theta: kernel.theta(),
            radius,
            acceptance_rate,
            mode_rate_before: before,
            mode_rate_after: after,
            seed: options.seed,
            params,
        })?
    };
    Ok(CalibrateReport {
        calibration_id,
        model: options.model.clone(),
        method: options.method,
        audit_id: audit.map(|a| a.audit_id),
        mode_sample_id: mode,
        radius,
        n_samples: n,
        mode_neighbors,
        acceptance_rate,
        mode_rate_before: before,
        mode_rate_after: after,
        summary,
        warnings,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

fn covariance_counts(m: &gmm::Mixture) -> String {
    let (mut full, mut diag, mut shared) = (0, 0, 0);
    for c in &m.components {
        match c.covariance {
            gmm::Covariance::Full { .. } => full += 1,
            gmm::Covariance::Diagonal { .. } => diag += 1,
            gmm::Covariance::Shared { .. } => shared += 1,
        }
    }
    format!("{full} full, {diag} diagonal, {shared} shared")
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Loads a stored calibration.
pub fn load(
    catalog_path: &Path,
    calibration_id: i64,
) -> Result<(crate::catalog::CalibrationRecord, Calibration)> {
    let catalog = Catalog::open_read_only(catalog_path)?;
    let record = catalog.calibration(calibration_id)?;
    let calibration: Calibration = serde_json::from_value(record.calibration.params.clone())
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "calibration {calibration_id} has unreadable parameters: {e}"
            ))
        })?;
    Ok((record, calibration))
}
