//! The diagnosis formulas of the method, in one place.
//!
//! For unit embeddings `e_a`, `e_x` with dot product `c = e_a . e_x`:
//!
//! ```text
//! d(a, x)  = arccos(clamp(c, -1, 1)) / pi                       in [0, 1]
//! s(a, x)  = (exp(max(0, theta - d)) - 1) / (exp(theta) - 1)     1 at d = 0, 0 at d >= theta
//! E(a)     = (1 / (n - 1)) * sum over x != a of s(a, x)          the anchor is never counted
//! MCCS(a)  = -1 / log10(E(a)),  0 when E(a) = 0,  +inf when E(a) >= 1
//! N_r(a)   = |{x != a : d(a, x) <= r}|,  decided as c >= cos(pi * r) in f64
//! ```
//!
//! These follow the authors' published code exactly (the exponential kernel,
//! `-1 / log10`, the anchor left out). Search code only gathers, per anchor,
//! the neighbour count and the similarity sum ([`AnchorSums`]); everything
//! else is derived here from those two numbers, which is what lets an
//! incremental update add sums and recompute the scores.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The two thresholds of an audit and the constants derived from them.
///
/// `theta` bounds the similarity kernel; `radius` bounds the neighbour count.
/// Both are distances in `[0, 1]` (a fraction of pi radians).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kernel {
    theta: f64,
    radius: f64,
    /// `cos(pi * theta)`: dot products below it have zero similarity.
    cos_theta: f64,
    /// `cos(pi * radius)`: dot products at or above it are neighbours.
    cos_radius: f64,
    /// `exp(theta) - 1`, the kernel's normaliser.
    denominator: f64,
}

impl Kernel {
    /// Checks and prepares the thresholds. `theta` must be in `(0, 1]` and
    /// `radius` in `[0, 1]`.
    pub fn new(theta: f64, radius: f64) -> Result<Kernel> {
        if !(theta > 0.0 && theta <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "theta must be a distance in (0, 1], got {theta}"
            )));
        }
        if !(0.0..=1.0).contains(&radius) {
            return Err(Error::InvalidArgument(format!(
                "radius must be a distance in [0, 1], got {radius}"
            )));
        }
        Ok(Kernel {
            theta,
            radius,
            cos_theta: (std::f64::consts::PI * theta).cos(),
            cos_radius: (std::f64::consts::PI * radius).cos(),
            denominator: theta.exp_m1(),
        })
    }

    /// The similarity threshold `theta`.
    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// The neighbour radius `r`.
    pub fn radius(&self) -> f64 {
        self.radius
    }

    /// The smallest dot product that can matter to either the count or the
    /// similarity sum: every search path may discard anything below it.
    pub fn screen_dot(&self) -> f64 {
        self.cos_theta.min(self.cos_radius)
    }

    /// `cos(pi * r)`, the dot-product form of the radius.
    pub fn radius_dot(&self) -> f64 {
        self.cos_radius
    }

    /// The normalised angular distance of two unit vectors from their dot
    /// product.
    pub fn distance(dot: f64) -> f64 {
        dot.clamp(-1.0, 1.0).acos() / std::f64::consts::PI
    }

    /// Whether a sample whose dot product with the anchor is `dot` lies
    /// within the radius: the one test every search path uses.
    #[inline]
    pub fn is_neighbor(&self, dot: f64) -> bool {
        dot >= self.cos_radius
    }

    /// The similarity `s` for a dot product.
    #[inline]
    pub fn similarity(&self, dot: f64) -> f64 {
        if dot <= self.cos_theta {
            return 0.0;
        }
        let gap = self.theta - Kernel::distance(dot);
        if gap <= 0.0 {
            0.0
        } else {
            gap.exp_m1() / self.denominator
        }
    }

    /// Adds one sample's contribution (by its exact dot product with the
    /// anchor) to an anchor's sums.
    #[inline]
    pub fn accumulate(&self, sums: &mut AnchorSums, dot: f64) {
        if self.is_neighbor(dot) {
            sums.neighbors += 1;
        }
        sums.similarity_sum += self.similarity(dot);
    }
}

/// What a search gathers for one anchor: everything else is derived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AnchorSums {
    /// `N_r(a)`: samples other than the anchor within the radius.
    pub neighbors: u64,
    /// Sum of `s(a, x)` over samples other than the anchor.
    pub similarity_sum: f64,
}

impl AnchorSums {
    /// Adds another partial result (for instance from another block of
    /// samples, or from new samples in an incremental update).
    pub fn merge(&mut self, other: AnchorSums) {
        self.neighbors += other.neighbors;
        self.similarity_sum += other.similarity_sum;
    }
}

/// `E(a)`: the mean similarity to the `n - 1` other samples.
pub fn expected_similarity(similarity_sum: f64, n_samples: u64) -> f64 {
    if n_samples <= 1 {
        0.0
    } else {
        similarity_sum / (n_samples - 1) as f64
    }
}

/// `MCCS(a) = -1 / log10(E(a))`, with 0 for `E = 0` and +infinity for
/// `E >= 1` (where the formula would give minus infinity or a negative).
pub fn mccs(expected_similarity: f64) -> f64 {
    if expected_similarity <= 0.0 {
        0.0
    } else if expected_similarity >= 1.0 {
        f64::INFINITY
    } else {
        -1.0 / expected_similarity.log10()
    }
}

/// Scores of one anchor, derived from its sums.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnchorScore {
    pub neighbors: u64,
    pub similarity_sum: f64,
    pub expected_similarity: f64,
    pub mccs: f64,
}

impl AnchorScore {
    /// Derives `E` and MCCS from the sums against `n_samples` samples
    /// (the anchor included in `n_samples`).
    pub fn from_sums(sums: AnchorSums, n_samples: u64) -> AnchorScore {
        let expected = expected_similarity(sums.similarity_sum, n_samples);
        AnchorScore {
            neighbors: sums.neighbors,
            similarity_sum: sums.similarity_sum,
            expected_similarity: expected,
            mccs: mccs(expected),
        }
    }
}

/// Population statistics of MCCS over the anchors.
///
/// Infinite scores (an anchor every other sample duplicates) are counted in
/// `n_infinite` and left out of the mean, standard deviation and maximum, as
/// averaging infinity would say nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Population {
    pub n_anchors: usize,
    pub n_infinite: usize,
    /// Mean MCCS over finite scores.
    pub mean: f64,
    /// Population standard deviation (divides by the count, as NumPy does).
    pub std: f64,
    /// Standard error of the mean, `std / sqrt(count)`.
    pub std_error: f64,
    /// Largest finite MCCS.
    pub max: f64,
}

impl Population {
    /// Summarises a set of MCCS values. Returns zeros for an empty set.
    pub fn from_mccs(values: impl IntoIterator<Item = f64>) -> Population {
        let mut n_anchors = 0;
        let mut finite = Vec::new();
        for value in values {
            n_anchors += 1;
            if value.is_finite() {
                finite.push(value);
            }
        }
        let n_infinite = n_anchors - finite.len();
        if finite.is_empty() {
            return Population {
                n_anchors,
                n_infinite,
                mean: 0.0,
                std: 0.0,
                std_error: 0.0,
                max: 0.0,
            };
        }
        let count = finite.len() as f64;
        let mean = finite.iter().sum::<f64>() / count;
        let variance = finite.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / count;
        let std = variance.sqrt();
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Population {
            n_anchors,
            n_infinite,
            mean,
            std,
            std_error: std / count.sqrt(),
            max,
        }
    }
}

/// The paper's sampling-efficiency levels (section 4.2): a single anchor's
/// MCCS settles at about 1e5 samples, population statistics at about 1e3
/// anchors. Returns remarks for the levels an audit falls short of.
pub fn sampling_remarks(n_samples: u64, n_anchors: usize) -> Vec<String> {
    let mut remarks = Vec::new();
    if n_samples < 100_000 {
        remarks.push(format!(
            "{n_samples} samples: below the ~1e5 at which a single anchor's MCCS settles \
             (paper, section 4.2); scores may still move as samples are added"
        ));
    }
    if n_anchors < 1_000 {
        remarks.push(format!(
            "{n_anchors} anchors: below the ~1e3 at which population statistics settle \
             (paper, section 4.2)"
        ));
    }
    remarks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn test_identical_vectors_have_similarity_one_and_distance_zero() {
        let k = Kernel::new(0.3, 0.3).unwrap();
        assert_eq!(Kernel::distance(1.0), 0.0);
        assert!(close(k.similarity(1.0), 1.0, 1e-15));
        // Rounding can push a dot product of unit vectors slightly above 1.
        assert!(close(k.similarity(1.0 + 1e-7), 1.0, 1e-15));
    }

    #[test]
    fn test_similarity_hand_computed() {
        let k = Kernel::new(0.3, 0.3).unwrap();
        // d = 0.1: s = (e^0.2 - 1) / (e^0.3 - 1) = 0.2214027582 / 0.3498588076
        let dot = (std::f64::consts::PI * 0.1).cos();
        assert!(close(
            k.similarity(dot),
            0.2214027581601699 / 0.3498588075760032,
            1e-12
        ));
        // Orthogonal vectors: d = 0.5 >= theta.
        assert_eq!(k.similarity(0.0), 0.0);
        assert_eq!(k.similarity(-1.0), 0.0);
    }

    #[test]
    fn test_distance_exactly_theta_is_a_neighbour_with_zero_similarity() {
        let k = Kernel::new(0.3, 0.3).unwrap();
        let dot = k.radius_dot();
        assert!(k.is_neighbor(dot), "d = r counts (d <= r)");
        assert_eq!(k.similarity(dot), 0.0, "s vanishes at d = theta");
        let below = f64::from_bits(dot.to_bits() - 1);
        assert!(!k.is_neighbor(below.min(dot - 1e-15)));
    }

    #[test]
    fn test_mccs_edge_cases() {
        assert_eq!(mccs(0.0), 0.0, "empty neighbourhood gives MCCS 0");
        assert_eq!(mccs(1.0), f64::INFINITY, "all duplicates: +inf, not -inf");
        assert!(close(mccs(1e-3), 1.0 / 3.0, 1e-12));
        assert!(close(mccs(1e-2), 0.5, 1e-12));
    }

    #[test]
    fn test_expected_similarity_excludes_the_anchor() {
        // Three samples, the anchor and two others at similarity 1 and 0.5.
        let score = AnchorScore::from_sums(
            AnchorSums {
                neighbors: 2,
                similarity_sum: 1.5,
            },
            3,
        );
        assert!(close(score.expected_similarity, 0.75, 1e-15));
        assert!(close(score.mccs, -1.0 / 0.75f64.log10(), 1e-15));
        // A lone sample has nobody to compare with.
        assert_eq!(expected_similarity(0.0, 1), 0.0);
    }

    #[test]
    fn test_population_matches_numpy_and_sets_infinity_apart() {
        let p = Population::from_mccs([0.3, 0.4, 0.5, f64::INFINITY]);
        assert_eq!(p.n_anchors, 4);
        assert_eq!(p.n_infinite, 1);
        assert!(close(p.mean, 0.4, 1e-15));
        // numpy.std([0.3, 0.4, 0.5]) = 0.08164965809277258
        assert!(close(p.std, 0.08164965809277258, 1e-12));
        assert!(close(p.max, 0.5, 1e-15));
        assert!(close(p.std_error, 0.08164965809277258 / 3f64.sqrt(), 1e-12));
    }

    #[test]
    fn test_kernel_rejects_out_of_range_thresholds() {
        assert!(Kernel::new(0.0, 0.3).is_err());
        assert!(Kernel::new(0.3, 1.5).is_err());
        assert!(Kernel::new(f64::NAN, 0.3).is_err());
    }
}
