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
    /// Share of the samples within a graph expansion's walking distance of
    /// an anchor, measured on a few of the job's anchors by
    /// [`walk_fraction`]. A graph query's cost follows it; only the data can
    /// tell it.
    pub walk_fraction: f64,
    /// Whether the index covers every sample, or how many it lacks.
    pub index: IndexState,
}

/// The index as far as the cost of a job goes.
#[derive(Debug, Clone, Copy)]
pub enum IndexState {
    /// Published and covering every sample: it only has to be loaded.
    Ready,
    /// `missing` samples must be inserted first (all of them when there is
    /// no usable index).
    Behind { missing: usize },
}

/// Multiply-adds per second and thread of the exact scan, screen included
/// (`exact_scan` benchmark: 1,000 x 50,000 x 512 in 0.32 s on 2 threads).
const EXACT_RATE: f64 = 4e10;
/// Points a graph query visits per sample within its walking distance: each
/// walked point's bottom-layer links reach points just beyond the shell.
/// Measured with [`crate::index::ModelIndex::mean_visits`] on the compare
/// benchmark's data: 9.5 at 10,000 samples, 8.4 at 100,000.
const VISITS_PER_WALKED: f64 = 9.0;
/// Points the initial beam search visits before the expansion.
const BASE_VISITS: f64 = 500.0;
/// Seconds per visited point and thread: a link, a random read of the
/// point's vector and a single-precision dot product. Measured 3.9e-7 at
/// 10,000 samples and 6.3e-7 at 100,000 (more cache misses); the larger is
/// kept.
const VISIT_S: f64 = 6e-7;
/// Seconds per point to load a published index (hnsw_rs reads its graph
/// point by point: 1.1 to 1.6 s at 100,000 points).
const LOAD_S: f64 = 1.5e-5;
/// Seconds to insert one point into the index. The default build is serial
/// (see [`crate::index::IndexParams::build_threads`]): 1,000 points per
/// second measured at 100,000 samples, 520 at a million. A threaded build
/// is priced the same, which overstates its cost.
const INSERT_S: f64 = 1e-3;
/// Double-precision multiply-adds per second and thread when an hnsw audit
/// completes its densest anchors exactly.
const EXACT_F64_RATE: f64 = 2e9;

/// Share of `samples` within the walking distance of a graph expansion
/// (the screening distance plus [`crate::index::radius::EXPANSION_SHELL`])
/// of the `pilot` rows, each excluded from its own count. Costs
/// `pilot.len() / anchors` of the exact scan.
pub fn walk_fraction(samples: ArrayView2<'_, f32>, pilot: &[usize], kernel: &Kernel) -> f64 {
    let n = samples.nrows();
    if pilot.is_empty() || n < 2 {
        return 0.0;
    }
    let walk =
        (Kernel::distance(kernel.screen_dot()) + crate::index::radius::EXPANSION_SHELL).min(1.0);
    let wide = Kernel::new(kernel.theta(), walk).expect("a distance in [0, 1]");
    let queries = samples.select(ndarray::Axis(0), pilot);
    let exclude: Vec<Option<usize>> = pilot.iter().map(|&r| Some(r)).collect();
    let sums = exact_sums(
        samples,
        0,
        queries.view(),
        &exclude,
        &wide,
        &ProgressBar::hidden(),
    );
    let walked: u64 = sums.iter().map(|s| s.neighbors).sum();
    walked as f64 / (pilot.len() as f64 * (n - 1) as f64)
}

/// Points a graph query is expected to visit among `n_samples` when
/// `walk_fraction` of them lie within its walking distance.
pub fn estimated_visits(walk_fraction: f64, n_samples: usize) -> f64 {
    let n = n_samples as f64;
    (VISITS_PER_WALKED * walk_fraction * n + BASE_VISITS).min(n)
}

/// Picks exact or hnsw for a job, with the reason, from per-operation costs
/// measured on the development machine (2 cores with AVX-512; see the
/// constants above). The embeddings are already in memory when it is asked,
/// so reading them costs neither side.
///
/// - exact: `anchors * samples * dim` multiply-adds;
/// - hnsw: loading the index or inserting what it lacks, then per query the
///   points the expansion visits (estimated from the walk fraction), plus
///   the exact completion of the `dense_exact` densest anchors against
///   every sample.
///
/// The model only has to get the order of magnitude right. Its first form
/// took a fixed 5 ms per query, and at a million samples it chose hnsw for
/// an audit that then took 96 s against 14 s for the exact scan: a query's
/// cost grows with its ball, and the ball with the sample count.
pub fn choose(work: Workload, dense_exact: usize) -> (SearchMode, String) {
    let threads = rayon::current_num_threads().max(1) as f64;
    let (a, n, d) = (
        work.n_anchors as f64,
        work.n_samples as f64,
        work.dim as f64,
    );
    let exact_s = a * n * d / (EXACT_RATE * threads);
    let visits = estimated_visits(work.walk_fraction, work.n_samples);
    let query_s = a * visits * VISIT_S / threads;
    let dense_s = dense_exact.min(work.n_anchors) as f64 * n * d / (EXACT_F64_RATE * threads);
    let (prepare_s, prepare) = match work.index {
        IndexState::Ready => (n * LOAD_S, "loading the index"),
        IndexState::Behind { missing } => {
            (missing as f64 * INSERT_S, "indexing the missing samples")
        }
    };
    let hnsw_s = prepare_s + query_s + dense_s;
    let reason = format!(
        "estimated exact {exact_s:.1} s, hnsw {hnsw_s:.1} s ({prepare} {prepare_s:.1} s, \
         about {visits:.0} points visited per query: {:.2}% of the samples within walking distance)",
        100.0 * work.walk_fraction
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
    fn test_walk_fraction_counts_like_a_pairwise_loop() {
        let x = unit_rows(2000, 3, 5);
        let kernel = Kernel::new(0.2, 0.25).unwrap();
        let pilot = [0usize, 10, 999];
        let walk = 0.25 + crate::index::radius::EXPANSION_SHELL;
        let mut within = 0usize;
        for &p in &pilot {
            for j in (0..x.nrows()).filter(|&j| j != p) {
                let dot = dot_exact(x.row(p).as_slice().unwrap(), x.row(j).as_slice().unwrap());
                within += usize::from(Kernel::distance(dot) <= walk);
            }
        }
        let want = within as f64 / (3.0 * 1999.0);
        let got = walk_fraction(x.view(), &pilot, &kernel);
        assert!((got - want).abs() < 2.0 / (3.0 * 1999.0), "{got} vs {want}");
    }

    #[test]
    fn test_cost_model_keeps_large_balls_on_the_exact_scan() {
        // The case it once got wrong: a million samples whose balls hold
        // about 1% of them, 2.5% within walking distance, index loaded.
        let work = Workload {
            n_anchors: 1000,
            n_samples: 1_000_000,
            dim: 512,
            walk_fraction: 0.025,
            index: IndexState::Ready,
        };
        assert_eq!(choose(work, 8).0, SearchMode::Exact);
        // Tight balls and many anchors: the graph wins once it is built...
        let tight = Workload {
            n_anchors: 10_000,
            walk_fraction: 1e-5,
            ..work
        };
        let (mode, reason) = choose(tight, 8);
        assert_eq!(mode, SearchMode::Hnsw, "{reason}");
        // ...but not when a million points must be inserted first.
        let unbuilt = Workload {
            index: IndexState::Behind { missing: 1_000_000 },
            ..tight
        };
        assert_eq!(choose(unbuilt, 8).0, SearchMode::Exact);
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
