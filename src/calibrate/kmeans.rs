//! k-means with a k-means++ start, seeded and parallel, reproducible to the
//! bit.
//!
//! Reproducibility shapes the implementation: rows are cut into fixed chunks,
//! each chunk's partial sums are computed in parallel, and the partial sums
//! are added in chunk order, so the result does not depend on how many
//! threads ran or in which order they finished. Distances come from a
//! blocked matrix product (`|x|^2 - 2 x.c + |c|^2`), accumulated in f64 for
//! the sums that decide the centres.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Rows per chunk of the parallel passes; fixed so results do not depend on
/// the thread count.
const CHUNK: usize = 4096;

/// The result of [`kmeans`].
#[derive(Debug, Clone)]
pub struct KMeans {
    /// `k x dim` cluster centres.
    pub centers: Array2<f32>,
    /// Cluster of every row.
    pub labels: Vec<u32>,
    /// Sum of squared distances of rows to their centres.
    pub inertia: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Whether the assignment stopped changing before the iteration limit.
    pub converged: bool,
}

/// Clusters the rows of `x` into `k` clusters.
///
/// Precondition: `1 <= k <= x.nrows()`. Empty clusters are re-seeded with the
/// row farthest from its centre (ties to the lowest row), so every cluster
/// ends with at least one member.
pub fn kmeans(x: ArrayView2<'_, f32>, k: usize, seed: u64, max_iter: usize) -> KMeans {
    let n = x.nrows();
    assert!(k >= 1 && k <= n, "1 <= k <= rows");
    let x = x.as_standard_layout();
    let norms: Vec<f32> = x.outer_iter().map(|r| r.dot(&r)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut centers = plus_plus(x.view(), &norms, k, &mut rng);
    let mut labels = vec![u32::MAX; n];
    let mut iterations = 0;
    let mut converged = false;
    let mut inertia = 0.0;
    while iterations < max_iter {
        iterations += 1;
        let (new_labels, distances) = assign(x.view(), &norms, centers.view());
        let changed = new_labels
            .iter()
            .zip(&labels)
            .filter(|(a, b)| a != b)
            .count();
        labels = new_labels;
        inertia = distances.iter().map(|&d| f64::from(d)).sum();
        centers = update(x.view(), &labels, &distances, k, &centers);
        if changed == 0 {
            converged = true;
            break;
        }
    }
    // Labels and inertia for the final centres.
    let (final_labels, distances) = assign(x.view(), &norms, centers.view());
    if final_labels != labels {
        converged = false;
    }
    labels = final_labels;
    inertia = if labels.is_empty() {
        inertia
    } else {
        distances.iter().map(|&d| f64::from(d)).sum()
    };
    KMeans {
        centers,
        labels,
        inertia,
        iterations,
        converged,
    }
}

/// k-means++: the first centre uniformly at random, each next one with
/// probability proportional to the squared distance to the nearest centre
/// chosen so far.
fn plus_plus(x: ArrayView2<'_, f32>, norms: &[f32], k: usize, rng: &mut ChaCha8Rng) -> Array2<f32> {
    let n = x.nrows();
    let mut centers = Array2::<f32>::zeros((k, x.ncols()));
    let first = rng.random_range(0..n);
    centers.row_mut(0).assign(&x.row(first));
    let mut nearest: Vec<f32> = squared_distances(x, norms, x.row(first).as_slice().expect("row"));
    for c in 1..k {
        let total: f64 = chunked_sum(&nearest);
        let pick = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut chosen = n - 1;
            for (i, &d) in nearest.iter().enumerate() {
                target -= f64::from(d);
                if target < 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            // Every row coincides with a centre already: any row will do.
            rng.random_range(0..n)
        };
        centers.row_mut(c).assign(&x.row(pick));
        let fresh = squared_distances(x, norms, x.row(pick).as_slice().expect("row"));
        nearest
            .par_iter_mut()
            .zip(fresh)
            .for_each(|(a, b)| *a = a.min(b));
    }
    centers
}

/// Sum in a fixed order (chunk sums added in chunk order).
fn chunked_sum(values: &[f32]) -> f64 {
    let partial: Vec<f64> = values
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&v| f64::from(v)).sum())
        .collect();
    partial.iter().sum()
}

/// Squared distance of every row to one point.
fn squared_distances(x: ArrayView2<'_, f32>, norms: &[f32], point: &[f32]) -> Vec<f32> {
    let p = ndarray::ArrayView1::from(point);
    let pn = p.dot(&p);
    let mut out = vec![0f32; x.nrows()];
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, out)| {
            let start = chunk * CHUNK;
            let rows = x.slice(s![start..start + out.len(), ..]);
            let dots = rows.dot(&p);
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = (norms[start + i] - 2.0 * dots[i] + pn).max(0.0);
            }
        });
    out
}

/// Nearest centre of every row (ties to the lowest centre) and the squared
/// distance to it.
fn assign(
    x: ArrayView2<'_, f32>,
    norms: &[f32],
    centers: ArrayView2<'_, f32>,
) -> (Vec<u32>, Vec<f32>) {
    let center_norms: Array1<f32> = centers.outer_iter().map(|c| c.dot(&c)).collect();
    let n = x.nrows();
    let mut labels = vec![0u32; n];
    let mut distances = vec![0f32; n];
    labels
        .par_chunks_mut(CHUNK)
        .zip(distances.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(chunk, (labels, distances))| {
            let start = chunk * CHUNK;
            let rows = x.slice(s![start..start + labels.len(), ..]);
            let dots = rows.dot(&centers.t());
            for (i, row) in dots.outer_iter().enumerate() {
                let mut best = (f32::INFINITY, 0u32);
                for (c, &dot) in row.iter().enumerate() {
                    let d = norms[start + i] - 2.0 * dot + center_norms[c];
                    if d < best.0 {
                        best = (d, c as u32);
                    }
                }
                labels[i] = best.1;
                distances[i] = best.0.max(0.0);
            }
        });
    (labels, distances)
}

/// New centres: the mean of each cluster's rows (in f64, chunk sums added
/// in chunk order). An empty cluster takes the row farthest from its centre
/// among rows not already used to re-seed.
fn update(
    x: ArrayView2<'_, f32>,
    labels: &[u32],
    distances: &[f32],
    k: usize,
    old: &Array2<f32>,
) -> Array2<f32> {
    let dim = x.ncols();
    let partial: Vec<(Array2<f64>, Vec<usize>)> = (0..x.nrows().div_ceil(CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let start = chunk * CHUNK;
            let end = (start + CHUNK).min(x.nrows());
            let mut sums = Array2::<f64>::zeros((k, dim));
            let mut counts = vec![0usize; k];
            for (i, &label) in labels.iter().enumerate().take(end).skip(start) {
                let c = label as usize;
                counts[c] += 1;
                let mut target = sums.row_mut(c);
                for (t, &v) in target.iter_mut().zip(x.row(i)) {
                    *t += f64::from(v);
                }
            }
            (sums, counts)
        })
        .collect();
    let mut sums = Array2::<f64>::zeros((k, dim));
    let mut counts = vec![0usize; k];
    for (s, c) in partial {
        sums += &s;
        for (a, b) in counts.iter_mut().zip(c) {
            *a += b;
        }
    }
    let mut centers = old.clone();
    let mut farthest: Vec<usize> = (0..x.nrows()).collect();
    farthest.sort_by(|&a, &b| distances[b].total_cmp(&distances[a]).then(a.cmp(&b)));
    let mut reseed = farthest.into_iter();
    for (c, &count) in counts.iter().enumerate() {
        if count == 0 {
            if let Some(row) = reseed.next() {
                centers.row_mut(c).assign(&x.row(row));
            }
        } else {
            let mean = sums.row(c).mapv(|v| (v / count as f64) as f32);
            centers.row_mut(c).assign(&mean);
        }
    }
    centers
}

/// Members of each cluster, by row.
pub fn members(labels: &[u32], k: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); k];
    for (row, &c) in labels.iter().enumerate() {
        out[c as usize].push(row);
    }
    out
}

/// The rows of `x` for a set of row numbers.
pub fn rows_of(x: ArrayView2<'_, f32>, rows: &[usize]) -> Array2<f32> {
    x.select(Axis(0), rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(seed: u64) -> (Array2<f32>, Vec<usize>) {
        // Three well separated blobs in 5-D, 300 rows each: row i belongs to
        // blob i % 3, centred at 10 along axis i % 3.
        let z = crate::blackbox::draw_latents(900, 5, seed);
        let x = Array2::from_shape_fn((900, 5), |(i, j)| {
            z[[i, j]] * 0.3 + if j == i % 3 { 10.0 } else { 0.0 }
        });
        (x, (0..900).map(|i| i % 3).collect())
    }

    #[test]
    fn test_kmeans_finds_separated_blobs() {
        let (x, truth) = blobs(1);
        let km = kmeans(x.view(), 3, 7, 100);
        assert!(km.converged);
        // Each cluster is exactly one blob.
        for c in 0..3 {
            let blobs: std::collections::BTreeSet<usize> = km
                .labels
                .iter()
                .zip(&truth)
                .filter(|(l, _)| **l == c)
                .map(|(_, t)| *t)
                .collect();
            assert_eq!(blobs.len(), 1, "cluster {c} mixes blobs {blobs:?}");
        }
        assert!(
            km.inertia < 900.0 * 5.0 * 0.09 * 1.5,
            "inertia {}",
            km.inertia
        );
    }

    #[test]
    fn test_kmeans_is_reproducible_under_a_seed() {
        let x = crate::blackbox::draw_latents(10_000, 16, 3);
        let a = kmeans(x.view(), 20, 11, 30);
        let b = kmeans(x.view(), 20, 11, 30);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.centers, b.centers);
        assert_eq!(a.inertia.to_bits(), b.inertia.to_bits());
        let c = kmeans(x.view(), 20, 12, 30);
        assert_ne!(a.centers, c.centers, "another seed starts elsewhere");
        // Every cluster has members.
        assert!(members(&a.labels, 20).iter().all(|m| !m.is_empty()));
    }

    #[test]
    fn test_kmeans_handles_duplicates_and_k_equal_rows() {
        let x = Array2::<f32>::ones((5, 3));
        let km = kmeans(x.view(), 3, 1, 10);
        assert_eq!(km.labels.len(), 5);
        assert_eq!(km.inertia, 0.0);
        let y = crate::blackbox::draw_latents(4, 3, 1);
        let km = kmeans(y.view(), 4, 1, 10);
        // One row per cluster: zero up to the rounding of |x|^2 - 2 x.c + |c|^2.
        assert!(km.inertia < 1e-5, "one row per cluster: {}", km.inertia);
        let mut labels = km.labels.clone();
        labels.sort_unstable();
        assert_eq!(labels, vec![0, 1, 2, 3]);
    }
}
