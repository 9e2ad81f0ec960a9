//! Algorithm 2: importance sampling with a convex hull around the dense
//! region's latent codes.
//!
//! A few hundred codes in a latent space of hundreds of dimensions span no
//! volume, so the hull is built in a projection: `p = B (z - c)`, with `c`
//! the mean of the dense codes and the rows of `B` the leading principal
//! directions of those codes taken about the prior's mean (the origin, as
//! `z ~ N(0, I)`), not about their own mean. The difference matters: what
//! sets a dense region apart from the bulk is mostly its offset from the
//! origin, which principal directions about the codes' own mean would throw
//! away (along it the dense codes vary least).
//!
//! qhull builds the hull `H` of the projected codes; a code is inside when
//! its projection lies on the inner side of every facet's hyperplane,
//! `n . p + offset <= tolerance`. A calibrated draw keeps a code inside `H`
//! with probability `rho_sparse / rho_dense` and any other code always.
//!
//! Degenerate input is refused with a message rather than left to qhull:
//! fewer points than a simplex needs, or points spanning fewer dimensions
//! than the projection has.

use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array2, ArrayView1, ArrayView2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Smallest over largest variance of the projected points below which they
/// are taken to lie in a lower-dimensional subspace.
const FLAT: f64 = 1e-10;

/// A facet of the hull: points `p` inside satisfy `normal . p + offset <= 0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facet {
    pub normal: Vec<f64>,
    pub offset: f64,
}

/// A convex hull in a projection of the latent space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hull {
    /// Latent size `k`.
    pub latent_dim: usize,
    /// `c`: the projection's origin in latent space.
    pub centre: Vec<f64>,
    /// `B`: `dims` orthonormal rows of length `k`.
    pub basis: Vec<Vec<f64>>,
    /// The projected points the hull was built from.
    pub points: Vec<Vec<f64>>,
    /// Indices (into `points`) of the hull's vertices.
    pub vertices: Vec<usize>,
    pub facets: Vec<Facet>,
    /// Slack on the facet test, in projected units.
    pub tolerance: f64,
}

/// Why a hull could not be built.
#[derive(Debug, Clone, PartialEq)]
pub enum HullProblem {
    /// Fewer points than a full-dimensional simplex needs.
    TooFewPoints { points: usize, needed: usize },
    /// The points lie in a subspace of lower dimension.
    Flat { dims: usize, rank: usize },
    /// qhull failed on the points.
    Qhull(String),
}

impl std::fmt::Display for HullProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HullProblem::TooFewPoints { points, needed } => write!(
                f,
                "{points} points cannot make a hull in this projection: it needs at least {needed} \
                 (widen --points or the radius, or lower --dims)"
            ),
            HullProblem::Flat { dims, rank } => write!(
                f,
                "the points span only {rank} of the projection's {dims} dimensions, so their hull has \
                 no volume; use --dims {rank} or fewer"
            ),
            HullProblem::Qhull(message) => write!(f, "qhull could not build the hull: {message}"),
        }
    }
}

impl Hull {
    /// Builds the hull of `codes` (rows are latent codes) projected onto
    /// `dims` directions. `tolerance` is relative to the points' spread.
    pub fn build(
        codes: ArrayView2<'_, f32>,
        dims: usize,
        tolerance: f64,
    ) -> Result<Hull, HullProblem> {
        let (n, k) = codes.dim();
        let dims = dims.min(k);
        if n < dims + 1 || dims == 0 {
            return Err(HullProblem::TooFewPoints {
                points: n,
                needed: dims.max(1) + 1,
            });
        }
        let x = DMatrix::from_fn(n, k, |i, j| f64::from(codes[[i, j]]));
        let centre: Vec<f64> = (0..k).map(|j| x.column(j).mean()).collect();
        let basis = leading_directions(&x, dims);
        let points: Vec<Vec<f64>> = (0..n)
            .map(|i| project(&basis, &centre, (0..k).map(|j| x[(i, j)])))
            .collect();
        // Refuse flat point sets before qhull does, with the rank.
        let spread = DMatrix::from_fn(n, dims, |i, j| points[i][j]);
        let rank = rank_of(&spread);
        if rank < dims {
            return Err(HullProblem::Flat { dims, rank });
        }
        Hull::from_projected(k, centre, basis, points, tolerance)
    }

    /// Builds the hull of points already in the projected space (used by
    /// [`Hull::build`] and by tests on simple shapes).
    pub fn from_projected(
        latent_dim: usize,
        centre: Vec<f64>,
        basis: Vec<Vec<f64>>,
        points: Vec<Vec<f64>>,
        tolerance: f64,
    ) -> Result<Hull, HullProblem> {
        let dims = points.first().map_or(0, Vec::len);
        if points.len() < dims + 1 || dims == 0 {
            return Err(HullProblem::TooFewPoints {
                points: points.len(),
                needed: dims.max(1) + 1,
            });
        }
        let qh = qhull::Qh::builder()
            .compute(true)
            .build_from_iter(points.iter().map(|p| p.iter().copied()))
            .map_err(|e| HullProblem::Qhull(e.to_string()))?;
        let mut facets = Vec::new();
        for facet in qh.facets() {
            let Some(normal) = facet.normal() else {
                continue;
            };
            facets.push(Facet {
                normal: normal.to_vec(),
                offset: facet.offset(),
            });
        }
        let mut vertices: Vec<usize> = qh.vertices().filter_map(|v| v.index(&qh)).collect();
        vertices.sort_unstable();
        if facets.is_empty() {
            return Err(HullProblem::Qhull("no facets".into()));
        }
        let scale = points
            .iter()
            .flatten()
            .fold(0f64, |m, v| m.max(v.abs()))
            .max(1e-300);
        Ok(Hull {
            latent_dim,
            centre,
            basis,
            points,
            vertices,
            facets,
            tolerance: tolerance * scale,
        })
    }

    /// Number of projected dimensions.
    pub fn dims(&self) -> usize {
        self.basis.len()
    }

    /// Projects a latent code.
    pub fn project(&self, z: ArrayView1<'_, f32>) -> Vec<f64> {
        project(&self.basis, &self.centre, z.iter().map(|&v| f64::from(v)))
    }

    /// Whether a projected point lies inside the hull, within the tolerance.
    pub fn contains_projected(&self, p: &[f64]) -> bool {
        self.facets.iter().all(|f| {
            let distance: f64 = f.normal.iter().zip(p).map(|(a, b)| a * b).sum::<f64>() + f.offset;
            distance <= self.tolerance
        })
    }

    /// Whether a latent code lies inside the hull.
    pub fn contains(&self, z: ArrayView1<'_, f32>) -> bool {
        self.contains_projected(&self.project(z))
    }

    /// Share of `N(0, I)` codes inside the hull, estimated from `n` seeded
    /// draws.
    pub fn prior_share(&self, n: usize, seed: u64) -> f64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut z = ndarray::Array1::<f32>::zeros(self.latent_dim);
        let mut inside = 0usize;
        for _ in 0..n {
            z.iter_mut()
                .for_each(|v| *v = StandardNormal.sample(&mut rng));
            inside += usize::from(self.contains(z.view()));
        }
        inside as f64 / n.max(1) as f64
    }

    /// Draws `n` codes from `N(0, I)`, keeping a code inside the hull with
    /// probability `accept` and any other code always. Returns the codes and
    /// how many were drawn to get them.
    ///
    /// Precondition: `0 < accept <= 1`.
    pub fn rejection_sample(
        &self,
        n: usize,
        accept: f64,
        seed: u64,
    ) -> (Array2<f32>, RejectionStats) {
        assert!(accept > 0.0 && accept <= 1.0, "acceptance in (0, 1]");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Array2::<f32>::zeros((n, self.latent_dim));
        let mut stats = RejectionStats::default();
        let mut z = ndarray::Array1::<f32>::zeros(self.latent_dim);
        let mut kept = 0;
        while kept < n {
            z.iter_mut()
                .for_each(|v| *v = StandardNormal.sample(&mut rng));
            stats.drawn += 1;
            let inside = self.contains(z.view());
            let u: f64 = rng.random();
            if inside {
                stats.drawn_inside += 1;
                if u >= accept {
                    continue;
                }
                stats.kept_inside += 1;
            }
            out.row_mut(kept).assign(&z);
            kept += 1;
        }
        (out, stats)
    }
}

/// Counts of a rejection-sampling run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionStats {
    /// Codes drawn from the prior.
    pub drawn: u64,
    /// Of those, inside the hull.
    pub drawn_inside: u64,
    /// Of those, kept.
    pub kept_inside: u64,
}

impl RejectionStats {
    /// Share of drawn codes kept.
    pub fn acceptance_rate(&self, kept: usize) -> f64 {
        kept as f64 / self.drawn.max(1) as f64
    }
}

fn project(basis: &[Vec<f64>], centre: &[f64], z: impl Iterator<Item = f64> + Clone) -> Vec<f64> {
    basis
        .iter()
        .map(|b| {
            b.iter()
                .zip(centre)
                .zip(z.clone())
                .map(|((b, c), v)| b * (v - c))
                .sum()
        })
        .collect()
}

/// The `dims` leading eigenvectors of the second moment `X^T X / n` about
/// the origin (the prior's mean), computed through the smaller of the Gram
/// and the covariance matrix, largest first, each with a fixed sign (its
/// largest entry positive) so the basis is reproducible.
pub(crate) fn leading_directions(x: &DMatrix<f64>, dims: usize) -> Vec<Vec<f64>> {
    let (n, k) = x.shape();
    let mut directions: Vec<(f64, Vec<f64>)> = if n >= k {
        let m = x.transpose() * x / n as f64;
        let eigen = SymmetricEigen::new(m);
        (0..k)
            .map(|i| {
                (
                    eigen.eigenvalues[i],
                    eigen.eigenvectors.column(i).iter().copied().collect(),
                )
            })
            .collect()
    } else {
        // X^T X = V S^2 V^T with X X^T = U S^2 U^T and V = X^T U S^-1.
        let gram = x * x.transpose() / n as f64;
        let eigen = SymmetricEigen::new(gram);
        (0..n)
            .map(|i| {
                let u = eigen.eigenvectors.column(i);
                let v = x.transpose() * u;
                let norm = v.norm();
                let v: Vec<f64> = if norm > 0.0 {
                    v.iter().map(|a| a / norm).collect()
                } else {
                    vec![0.0; k]
                };
                (eigen.eigenvalues[i], v)
            })
            .collect()
    };
    directions.sort_by(|a, b| b.0.total_cmp(&a.0));
    directions
        .into_iter()
        .take(dims)
        .map(|(_, mut v)| {
            let largest = v
                .iter()
                .copied()
                .fold(0f64, |m, a| if a.abs() > m.abs() { a } else { m });
            if largest < 0.0 {
                v.iter_mut().for_each(|a| *a = -*a);
            }
            v
        })
        .collect()
}

/// Numerical rank of the centred columns of `points`.
fn rank_of(points: &DMatrix<f64>) -> usize {
    let n = points.nrows() as f64;
    let mean = points.row_mean();
    let centred = DMatrix::from_fn(points.nrows(), points.ncols(), |i, j| {
        points[(i, j)] - mean[j]
    });
    let cov = centred.transpose() * &centred / n;
    let eigen = SymmetricEigen::new(cov);
    let largest = eigen.eigenvalues.iter().copied().fold(0f64, f64::max);
    eigen
        .eigenvalues
        .iter()
        .filter(|&&e| e > FLAT * largest.max(1e-300))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_2d(points: Vec<Vec<f64>>) -> Result<Hull, HullProblem> {
        Hull::from_projected(
            2,
            vec![0.0; 2],
            vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            points,
            1e-9,
        )
    }

    #[test]
    fn test_unit_square_membership_by_hand() {
        let hull = in_2d(vec![
            vec![0.0, 0.0],
            vec![1.0, 0.0],
            vec![1.0, 1.0],
            vec![0.0, 1.0],
            vec![0.5, 0.5],
        ])
        .unwrap();
        assert_eq!(hull.facets.len(), 4);
        assert_eq!(
            hull.vertices,
            vec![0, 1, 2, 3],
            "the centre is not a vertex"
        );
        assert!(hull.contains_projected(&[0.5, 0.5]));
        assert!(
            hull.contains_projected(&[0.0, 0.3]),
            "on a facet, within the tolerance"
        );
        assert!(hull.contains_projected(&[1.0, 1.0]), "a vertex");
        assert!(!hull.contains_projected(&[1.0 + 1e-6, 0.5]));
        assert!(!hull.contains_projected(&[-0.1, -0.1]));
    }

    #[test]
    fn test_degenerate_inputs_are_refused_with_a_reason() {
        let err = in_2d(vec![vec![0.0, 0.0], vec![1.0, 0.0]]).unwrap_err();
        assert!(
            matches!(
                err,
                HullProblem::TooFewPoints {
                    points: 2,
                    needed: 3
                }
            ),
            "{err}"
        );
        // Points on a line in 3-D latent space, projected to 2-D.
        let line = Array2::from_shape_fn((20, 3), |(i, j)| i as f32 * [1.0, 2.0, 3.0][j]);
        let err = Hull::build(line.view(), 2, 1e-9).unwrap_err();
        assert!(
            matches!(err, HullProblem::Flat { dims: 2, rank: 1 }),
            "{err}"
        );
        assert!(err.to_string().contains("--dims 1"));
    }
}
