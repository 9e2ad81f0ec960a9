//! Algorithm 1: a Gaussian mixture over the latent space, reweighted away
//! from the worst-case mode.
//!
//! k-means splits the latent codes into `K` clusters; cluster `k` becomes a
//! component `N(mu_k, Sigma_k)` with weight `pi_k = |C_k| / N`. Its rate
//! `p_k` is the share of its members whose embedding lies within the radius
//! of the mode, so `P(mode) = sum_k pi_k p_k`. Components with `p_k` above
//! the target rate `rho` are scaled by `rho / p_k`, then the weights are
//! renormalised: `pi'_k ~ pi_k * min(1, rho / p_k)`.
//!
//! The method works when clusters localise the dense region, so that its
//! codes fall in a few components. In a high-dimensional isotropic latent
//! space k-means cells are wide cones and every cluster holds about the same
//! share of the dense region; the rates are then flat and reweighting barely
//! changes anything. [`Mixture::rate_spread`] reports how uneven the rates
//! are, and `calibrate` warns when they are flat.
//!
//! Covariances: a full covariance (with a small ridge, through its Cholesky
//! factor) needs about twice as many members as dimensions and costs `k^2`
//! numbers per component in the stored JSON, so it is used only when the
//! cluster is large enough and the latent size at most
//! [`FULL_COVARIANCE_MAX_DIM`]; otherwise a diagonal one, and for clusters
//! of fewer than [`MIN_OWN_VARIANCE`] members the variance pooled over all
//! clusters ("shared").

use nalgebra::{DMatrix, DVector};
use ndarray::{Array2, ArrayView2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::kmeans::{self, KMeans};

/// Largest latent size for full covariances (each costs `k^2` stored numbers).
pub const FULL_COVARIANCE_MAX_DIM: usize = 128;
/// Members below which a cluster takes the pooled variance.
pub const MIN_OWN_VARIANCE: usize = 10;
/// Ridge added to full covariances, relative to their mean variance.
const RIDGE: f64 = 1e-6;

/// Which covariances the mixture may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CovariancePolicy {
    /// Full where the cluster and the latent size allow it, else diagonal.
    Auto,
    /// Full wherever the cluster is large enough (whatever the latent size).
    Full,
    /// Diagonal everywhere.
    Diagonal,
}

/// A component's covariance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Covariance {
    /// Lower Cholesky factor `L` (`Sigma = L L^T`), row-major `k x k`.
    Full { cholesky: Vec<f64> },
    /// Per-coordinate standard deviations of the cluster.
    Diagonal { std: Vec<f64> },
    /// The pooled per-coordinate standard deviations (cluster too small).
    Shared { std: Vec<f64> },
}

/// One component of the mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// Members of the cluster.
    pub count: usize,
    /// Members within the radius of the mode.
    pub in_mode: usize,
    /// `pi_k`: the cluster's share of the codes.
    pub weight: f64,
    /// `p_k`: the share of its members within the radius of the mode.
    pub rate: f64,
    /// `pi'_k`: the weight after calibration.
    pub calibrated_weight: f64,
    pub mean: Vec<f32>,
    pub covariance: Covariance,
}

/// The fitted and reweighted mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mixture {
    pub latent_dim: usize,
    /// `rho`: rates above it are scaled down to it.
    pub target_rate: f64,
    /// `sum_k pi_k p_k`: the mode's rate under the fitted mixture.
    pub mode_rate_before: f64,
    /// `sum_k pi'_k p_k`: what it becomes, if components generate like
    /// their clusters.
    pub mode_rate_after: f64,
    pub kmeans_seed: u64,
    pub kmeans_iterations: usize,
    pub kmeans_converged: bool,
    pub kmeans_inertia: f64,
    pub components: Vec<Component>,
}

/// Fits the mixture to `latents`, where `in_mode[i]` says whether sample
/// `i`'s embedding lies within the radius of the mode.
///
/// Preconditions: `1 <= k <= latents.nrows()`, `in_mode.len() == latents.nrows()`,
/// `target_rate > 0`.
pub fn fit(
    latents: ArrayView2<'_, f32>,
    in_mode: &[bool],
    k: usize,
    target_rate: f64,
    policy: CovariancePolicy,
    seed: u64,
) -> Mixture {
    assert_eq!(in_mode.len(), latents.nrows());
    let n = latents.nrows();
    let dim = latents.ncols();
    let KMeans {
        labels,
        iterations,
        converged,
        inertia,
        ..
    } = kmeans::kmeans(latents, k, seed, 100);
    let members = kmeans::members(&labels, k);
    let pooled = pooled_std(latents, &members);
    let mut components: Vec<Component> = members
        .iter()
        .filter(|m| !m.is_empty())
        .map(|rows| {
            let x = kmeans::rows_of(latents, rows);
            let (mean, centred) = centre(&x);
            let full_allowed = match policy {
                CovariancePolicy::Auto => dim <= FULL_COVARIANCE_MAX_DIM,
                CovariancePolicy::Full => true,
                CovariancePolicy::Diagonal => false,
            };
            let covariance = if full_allowed && rows.len() >= 2 * dim + 2 {
                full_covariance(&centred).unwrap_or_else(|| diagonal(&centred))
            } else if rows.len() >= MIN_OWN_VARIANCE {
                diagonal(&centred)
            } else {
                Covariance::Shared {
                    std: pooled.clone(),
                }
            };
            let in_ball = rows.iter().filter(|&&r| in_mode[r]).count();
            Component {
                count: rows.len(),
                in_mode: in_ball,
                weight: rows.len() as f64 / n as f64,
                rate: in_ball as f64 / rows.len() as f64,
                calibrated_weight: 0.0,
                mean: mean.iter().map(|&v| v as f32).collect(),
                covariance,
            }
        })
        .collect();
    let scaled: Vec<f64> = components
        .iter()
        .map(|c| {
            if c.rate > target_rate {
                c.weight * target_rate / c.rate
            } else {
                c.weight
            }
        })
        .collect();
    let total: f64 = scaled.iter().sum();
    for (c, s) in components.iter_mut().zip(&scaled) {
        c.calibrated_weight = s / total;
    }
    let mode_rate_before = components.iter().map(|c| c.weight * c.rate).sum();
    let mode_rate_after = components
        .iter()
        .map(|c| c.calibrated_weight * c.rate)
        .sum();
    Mixture {
        latent_dim: dim,
        target_rate,
        mode_rate_before,
        mode_rate_after,
        kmeans_seed: seed,
        kmeans_iterations: iterations,
        kmeans_converged: converged,
        kmeans_inertia: inertia,
        components,
    }
}

/// Column means (f64) and the centred rows.
fn centre(x: &Array2<f32>) -> (Vec<f64>, DMatrix<f64>) {
    let (n, d) = x.dim();
    let mut mean = vec![0f64; d];
    for row in x.outer_iter() {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let centred = DMatrix::from_fn(n, d, |i, j| f64::from(x[[i, j]]) - mean[j]);
    (mean, centred)
}

fn diagonal(centred: &DMatrix<f64>) -> Covariance {
    let n = centred.nrows().max(2) as f64;
    let std = (0..centred.ncols())
        .map(|j| {
            (centred.column(j).norm_squared() / (n - 1.0))
                .sqrt()
                .max(1e-6)
        })
        .collect();
    Covariance::Diagonal { std }
}

fn full_covariance(centred: &DMatrix<f64>) -> Option<Covariance> {
    let n = centred.nrows() as f64;
    let mut sigma = centred.transpose() * centred / (n - 1.0);
    let ridge = RIDGE * sigma.trace() / sigma.nrows() as f64;
    for i in 0..sigma.nrows() {
        sigma[(i, i)] += ridge.max(1e-12);
    }
    let l = sigma.cholesky()?.l();
    let d = l.nrows();
    Some(Covariance::Full {
        cholesky: (0..d * d).map(|i| l[(i / d, i % d)]).collect(),
    })
}

/// Per-coordinate standard deviation of the rows around their own
/// cluster's mean, over all clusters.
fn pooled_std(latents: ArrayView2<'_, f32>, members: &[Vec<usize>]) -> Vec<f64> {
    let d = latents.ncols();
    let mut sum = vec![0f64; d];
    let mut dof = 0usize;
    for rows in members.iter().filter(|m| m.len() >= 2) {
        let (_, centred) = centre(&kmeans::rows_of(latents, rows));
        for (j, s) in sum.iter_mut().enumerate() {
            *s += centred.column(j).norm_squared();
        }
        dof += rows.len() - 1;
    }
    sum.iter()
        .map(|s| {
            if dof > 0 {
                (s / dof as f64).sqrt().max(1e-6)
            } else {
                1.0
            }
        })
        .collect()
}

impl Mixture {
    /// Draws `n` codes from the calibrated mixture: a component by the
    /// calibrated weights, then a Gaussian draw from it.
    pub fn sample(&self, n: usize, seed: u64) -> Array2<f32> {
        self.sample_with(n, seed, true)
    }

    /// Draws from the fitted mixture with its original weights (to tell the
    /// effect of reweighting from that of the Gaussian fit).
    pub fn sample_uncalibrated(&self, n: usize, seed: u64) -> Array2<f32> {
        self.sample_with(n, seed, false)
    }

    fn sample_with(&self, n: usize, seed: u64, calibrated: bool) -> Array2<f32> {
        let d = self.latent_dim;
        let weights: Vec<f64> = self
            .components
            .iter()
            .map(|c| {
                if calibrated {
                    c.calibrated_weight
                } else {
                    c.weight
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Array2::<f32>::zeros((n, d));
        let mut eps = DVector::<f64>::zeros(d);
        for mut row in out.outer_iter_mut() {
            let mut u = rng.random::<f64>() * total;
            let mut chosen = self.components.len() - 1;
            for (i, w) in weights.iter().enumerate() {
                u -= w;
                if u < 0.0 {
                    chosen = i;
                    break;
                }
            }
            let c = &self.components[chosen];
            for e in eps.iter_mut() {
                *e = StandardNormal.sample(&mut rng);
            }
            match &c.covariance {
                Covariance::Full { cholesky } => {
                    for i in 0..d {
                        let l = &cholesky[i * d..i * d + i + 1];
                        let v: f64 = l.iter().zip(eps.iter()).map(|(a, b)| a * b).sum();
                        row[i] = (f64::from(c.mean[i]) + v) as f32;
                    }
                }
                Covariance::Diagonal { std } | Covariance::Shared { std } => {
                    for i in 0..d {
                        row[i] = (f64::from(c.mean[i]) + std[i] * eps[i]) as f32;
                    }
                }
            }
        }
        out
    }

    /// Largest over median component rate: 1 when the mode's codes are
    /// spread evenly over the clusters (reweighting cannot help), large when
    /// a few clusters hold them.
    pub fn rate_spread(&self) -> f64 {
        let mut rates: Vec<f64> = self.components.iter().map(|c| c.rate).collect();
        rates.sort_by(f64::total_cmp);
        let max = rates.last().copied().unwrap_or(0.0);
        let median = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
        if median > 0.0 {
            max / median
        } else if max > 0.0 {
            f64::INFINITY
        } else {
            1.0
        }
    }

    /// Components whose weight calibration lowered.
    pub fn lowered(&self) -> usize {
        self.components
            .iter()
            .filter(|c| c.rate > self.target_rate)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_weights_sum_to_one_and_dense_clusters_are_lowered() {
        // Two blobs in 3-D; the second holds the mode.
        let z = crate::blackbox::draw_latents(2000, 3, 4);
        let x = Array2::from_shape_fn((2000, 3), |(i, j)| {
            z[[i, j]] * 0.2 + if i % 2 == 1 && j == 0 { 5.0 } else { 0.0 }
        });
        let in_mode: Vec<bool> = (0..2000).map(|i| i % 2 == 1).collect();
        let m = fit(x.view(), &in_mode, 2, 0.01, CovariancePolicy::Auto, 3);
        let total: f64 = m.components.iter().map(|c| c.weight).sum();
        let calibrated: f64 = m.components.iter().map(|c| c.calibrated_weight).sum();
        assert!((total - 1.0).abs() < 1e-12 && (calibrated - 1.0).abs() < 1e-12);
        assert!((m.mode_rate_before - 0.5).abs() < 1e-12);
        // pi' = (0.5 * 0.01 / 1, 0.5) / (0.505): the mode's rate falls to 0.0099.
        assert!(
            (m.mode_rate_after - 0.005 / 0.505).abs() < 1e-9,
            "{}",
            m.mode_rate_after
        );
        assert!(
            m.components
                .iter()
                .all(|c| matches!(c.covariance, Covariance::Full { .. }))
        );
        // Draws follow the calibrated weights: about 1% come from the blob at 5.
        let draws = m.sample(20_000, 9);
        let share = draws.column(0).iter().filter(|&&v| v > 2.5).count() as f64 / 20_000.0;
        assert!((share - 0.0099).abs() < 0.003, "share {share}");
        let raw = m.sample_uncalibrated(20_000, 9);
        let raw_share = raw.column(0).iter().filter(|&&v| v > 2.5).count() as f64 / 20_000.0;
        assert!(
            (raw_share - 0.5).abs() < 0.02,
            "uncalibrated share {raw_share}"
        );
    }

    #[test]
    fn test_mixture_reproduces_under_a_seed_and_uses_the_covariance_policy() {
        let x = crate::blackbox::draw_latents(3000, 8, 1);
        let in_mode: Vec<bool> = (0..3000).map(|i| x[[i, 0]] > 1.5).collect();
        let a = fit(x.view(), &in_mode, 10, 0.01, CovariancePolicy::Auto, 5);
        let b = fit(x.view(), &in_mode, 10, 0.01, CovariancePolicy::Auto, 5);
        assert_eq!(a, b);
        assert_eq!(a.sample(100, 2), b.sample(100, 2));
        assert_ne!(a.sample(100, 2), a.sample(100, 3));
        let d = fit(x.view(), &in_mode, 10, 0.01, CovariancePolicy::Diagonal, 5);
        assert!(
            d.components
                .iter()
                .all(|c| matches!(c.covariance, Covariance::Diagonal { .. }))
        );
        // Clusters of fewer than MIN_OWN_VARIANCE members share the pooled variance.
        let small = fit(
            x.slice(ndarray::s![..60, ..]),
            &in_mode[..60],
            12,
            0.01,
            CovariancePolicy::Auto,
            5,
        );
        assert!(
            small
                .components
                .iter()
                .any(|c| matches!(c.covariance, Covariance::Shared { .. }))
        );
        // The rates are uneven: the mode's codes sit on one side of axis 0.
        assert!(a.rate_spread() > 3.0, "spread {}", a.rate_spread());
        // A full covariance reproduces the cluster's spread.
        let one = fit(
            x.view(),
            &vec![false; 3000],
            1,
            0.01,
            CovariancePolicy::Full,
            5,
        );
        let draws = one.sample(20_000, 1);
        let var = draws
            .column(3)
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            / 20_000.0;
        assert!((var - 1.0).abs() < 0.08, "variance {var}");
    }
}
