//! Neighbour counts and similarity sums, by exact scan or by the index.
//!
//! The three `--search` modes:
//!
//! - `exact` ([`exact_sums`]): a blocked matrix product of the anchors
//!   against all samples in single precision, through `gemm`'s tuned kernel,
//!   with blocks of samples spread over all cores. While each block's product
//!   is still in cache we screen it against the kernel's threshold (with a
//!   slack for single-precision rounding) and judge the survivors by their
//!   exact double-precision dot product. Cost: `anchors * samples * dim`
//!   multiply-adds, whatever the data.
//! - `hnsw` ([`crate::index::ModelIndex::radius_sums_many`]): graph
//!   expansion per anchor. Cost grows with each anchor's neighbourhood, not
//!   with the sample count, but building the index comes first.
//! - `auto` ([`choose`]): whichever the cost model expects to be cheaper.
//!
//! Every mode gathers [`AnchorSums`]; scores are derived in [`crate::score`].

use indicatif::ProgressBar;
use ndarray::{ArrayView2, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::score::{AnchorSums, Kernel};
use crate::vector::dot_exact;

/// Samples per block of the exact scan. With [`QUERY_TILE`], chosen with
/// the `exact_scan` benchmark (1,000 anchors x 50,000 x 512 on 2 cores):
/// 1024 x 1024 took 0.32 s, 2048 x 256 took 0.46 s (gemm re-packs a block
/// for every tile, so fewer, taller tiles pay off), 512 or 4096 samples
/// made no difference. The product alone takes 0.27 s; the rest is the
/// screen and the exact dot products of the survivors.
const SAMPLE_BLOCK: usize = 1024;
/// Anchors per tile of the exact scan; a tile's product with a block is
/// 4 MiB per thread.
const QUERY_TILE: usize = 1024;
/// Slack on the single-precision screen before the exact test. A dot product
/// of unit vectors of dimension 4096 computed in f32 is off by far less.
const SCREEN_SLACK: f64 = 1e-4;

/// How an audit finds neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Pick per job from the cost model.
    Auto,
    /// Blocked matrix product over every sample.
    Exact,
    /// HNSW graph expansion.
    Hnsw,
}

impl SearchMode {
    /// The name stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Auto => "auto",
            SearchMode::Exact => "exact",
            SearchMode::Hnsw => "hnsw",
        }
    }
}

/// Neighbour counts and similarity sums of `queries` against `samples` by
/// exhaustive scan.
///
/// `samples` holds unit rows whose global row numbers start at `row_offset`
/// (so that a scan over only the newest samples can still recognise an
/// anchor); `exclude[q]` is the global row of query `q` when the query is a
/// sample itself, and that row is skipped.
pub fn exact_sums(
    samples: ArrayView2<'_, f32>,
    row_offset: usize,
    queries: ArrayView2<'_, f32>,
    exclude: &[Option<usize>],
    kernel: &Kernel,
    progress: &ProgressBar,
) -> Vec<AnchorSums> {
    let n_queries = queries.nrows();
    assert_eq!(exclude.len(), n_queries);
    assert_eq!(
        samples.ncols(),
        queries.ncols(),
        "dimensions checked by the caller"
    );
    let n = samples.nrows();
    if n_queries == 0 || n == 0 {
        return vec![AnchorSums::default(); n_queries];
    }
    let samples = samples.as_standard_layout();
    let queries = queries.as_standard_layout();
    let screen = (kernel.screen_dot() - SCREEN_SLACK) as f32;
    let n_blocks = n.div_ceil(SAMPLE_BLOCK);
    // Each block yields its own sums, merged afterwards in block order: the
    // floating-point additions then happen in the same order on every run,
    // whatever the thread schedule, so the same catalog gives the same scores
    // to the last bit. The price is one `AnchorSums` per block and query.
    let per_block: Vec<Vec<AnchorSums>> = (0..n_blocks)
        .into_par_iter()
        .map_init(Vec::<f32>::new, |product, block| {
            let mut sums = vec![AnchorSums::default(); n_queries];
            let start = block * SAMPLE_BLOCK;
            let block_rows = samples.slice(s![start..(start + SAMPLE_BLOCK).min(n), ..]);
            for tile_start in (0..n_queries).step_by(QUERY_TILE) {
                let tile_end = (tile_start + QUERY_TILE).min(n_queries);
                let tile = queries.slice(s![tile_start..tile_end, ..]);
                multiply_transposed(tile, block_rows, product);
                let width = block_rows.nrows();
                for (i, row) in product.chunks_exact(width).enumerate() {
                    let q = tile_start + i;
                    let query = queries.row(q);
                    let query = query.as_slice().expect("standard layout");
                    for (j, &approx) in row.iter().enumerate() {
                        if approx < screen {
                            continue;
                        }
                        let global = row_offset + start + j;
                        if exclude[q] == Some(global) {
                            continue;
                        }
                        let sample = block_rows.row(j);
                        let dot = dot_exact(query, sample.as_slice().expect("standard layout"));
                        kernel.accumulate(&mut sums[q], dot);
                    }
                }
            }
            progress.inc(block_rows.nrows() as u64);
            sums
        })
        .collect();
    let mut total = vec![AnchorSums::default(); n_queries];
    for block in per_block {
        for (x, y) in total.iter_mut().zip(block) {
            x.merge(y);
        }
    }
    total
}

/// `out = a * b^T` for row-major `a` (m x k) and `b` (n x k), written
/// row-major (m x n) into `out`, single-threaded (the caller parallelises
/// over blocks).
fn multiply_transposed(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, out: &mut Vec<f32>) {
    let (m, k) = a.dim();
    let n = b.nrows();
    assert_eq!(b.ncols(), k);
    out.clear();
    out.resize(m * n, 0.0);
    let a_stride = a.strides()[0];
    let b_stride = b.strides()[0];
    assert!(
        a.strides()[1] == 1 && b.strides()[1] == 1,
        "rows must be contiguous"
    );
    // SAFETY: the pointers and strides describe the live views `a`, `b` and
    // the buffer `out` of exactly m * n elements; gemm reads `a` as m x k
    // with row stride a_stride, `b^T` as k x n (element (p, j) at
    // j * b_stride + p) and writes m x n into `out` with row stride n.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            a_stride,
            b.as_ptr(),
            b_stride,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// What the cost model needs to know about a job.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub n_anchors: usize,
    pub n_samples: usize,
    pub dim: usize,
    /// Whether an up-to-date index is on disk (no build needed).
    pub index_ready: bool,
    /// Points the index lacks and would have to insert first.
    pub index_missing: usize,
}

/// Picks exact or hnsw for a job, with the reason, from rough per-operation
/// costs measured on the development machine (see `benches/`):
///
/// - exact: `anchors * samples * dim` multiply-adds at ~1e11 per second;
/// - hnsw: inserting a point costs ~0.3 ms per core, a query ~5 ms per core
///   plus the index load.
///
/// The model only has to get the order of magnitude right: the two differ by
/// far more than its error wherever the choice matters.
pub fn choose(work: Workload) -> (SearchMode, String) {
    let threads = rayon::current_num_threads().max(1) as f64;
    let exact_s =
        work.n_anchors as f64 * work.n_samples as f64 * work.dim as f64 / (1e11 * threads / 2.0);
    let build_s = work.index_missing as f64 * 3e-4 / threads;
    let load_s = if work.index_ready {
        work.n_samples as f64 * 2e-6
    } else {
        0.0
    };
    let query_s = work.n_anchors as f64 * 5e-3 / threads;
    let hnsw_s = build_s + load_s + query_s;
    let reason = format!(
        "estimated exact {exact_s:.1} s, hnsw {hnsw_s:.1} s (build {build_s:.1} s, queries {query_s:.1} s)"
    );
    if hnsw_s < exact_s {
        (SearchMode::Hnsw, reason)
    } else {
        (SearchMode::Exact, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn unit_rows(n: usize, d: usize, seed: u64) -> Array2<f32> {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut m = Array2::from_shape_fn((n, d), |_| StandardNormal.sample(&mut rng));
        crate::vector::normalize_rows(m.view_mut(), "test").unwrap();
        m
    }

    #[test]
    fn test_exact_scan_matches_pairwise_loop() {
        // Low dimension so that many pairs fall within theta.
        let x = unit_rows(5000, 3, 7);
        let kernel = Kernel::new(0.3, 0.25).unwrap();
        let anchors: Vec<usize> = (0..300).map(|i| i * 13).collect();
        let queries = x.select(ndarray::Axis(0), &anchors);
        let exclude: Vec<Option<usize>> = anchors.iter().map(|&a| Some(a)).collect();
        let got = exact_sums(
            x.view(),
            0,
            queries.view(),
            &exclude,
            &kernel,
            &ProgressBar::hidden(),
        );
        for (q, &a) in anchors.iter().enumerate() {
            let mut want = AnchorSums::default();
            for j in 0..x.nrows() {
                if j != a {
                    let dot = dot_exact(x.row(a).as_slice().unwrap(), x.row(j).as_slice().unwrap());
                    kernel.accumulate(&mut want, dot);
                }
            }
            assert_eq!(got[q].neighbors, want.neighbors, "anchor {a}");
            assert!(
                (got[q].similarity_sum - want.similarity_sum).abs()
                    < 1e-9 * want.similarity_sum.max(1.0)
            );
        }
    }

    #[test]
    fn test_exact_scan_with_offset_splits_like_the_whole() {
        let x = unit_rows(3000, 4, 9);
        let kernel = Kernel::new(0.3, 0.3).unwrap();
        let anchors = [5usize, 1500, 2999];
        let queries = x.select(ndarray::Axis(0), &anchors);
        let exclude: Vec<Option<usize>> = anchors.iter().map(|&a| Some(a)).collect();
        let bar = ProgressBar::hidden();
        let whole = exact_sums(x.view(), 0, queries.view(), &exclude, &kernel, &bar);
        let head = exact_sums(
            x.slice(s![..1700, ..]),
            0,
            queries.view(),
            &exclude,
            &kernel,
            &bar,
        );
        let tail = exact_sums(
            x.slice(s![1700.., ..]),
            1700,
            queries.view(),
            &exclude,
            &kernel,
            &bar,
        );
        for q in 0..anchors.len() {
            let mut merged = head[q];
            merged.merge(tail[q]);
            assert_eq!(merged.neighbors, whole[q].neighbors);
            assert!((merged.similarity_sum - whole[q].similarity_sum).abs() < 1e-9);
        }
    }
}
