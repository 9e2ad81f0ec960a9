//! Radius queries and density ranking on the HNSW graph.
//!
//! hnsw_rs answers top-k queries only, and a top-k beam search undercounts
//! any ball holding more than `ef` samples, which is exactly the dense ball
//! that matters. A radius query here therefore runs in two steps:
//!
//! 1. a top-k search (k = `ef_search`) finds seeds near the query; a query
//!    that is a point of the index is its own seed instead;
//! 2. a breadth-first expansion over the bottom layer's links, from those
//!    seeds, visits every point reachable through points within an expansion
//!    shell slightly wider than the radius, however many there are.
//!
//! Every visited point within the screening distance is then judged by its
//! exact dot product ([`crate::vector::dot_exact`]) through the audit's
//! [`Kernel`], the same test the exact scan uses, so a point is never
//! counted that the exact scan would not count. What the expansion can miss
//! is a point of the ball that no path through the shell reaches: the tests
//! measure this count recall against the exact scan.
//!
//! Density ranking uses the links themselves: in the bottom layer a point is
//! linked to close neighbours, so the distance to its nearest links is a free
//! estimate of local density, computed for every point without any search.

use std::collections::VecDeque;

use rayon::prelude::*;

use super::ModelIndex;
use crate::score::{AnchorSums, Kernel};
use crate::vector::{dot_exact, dot_fast};

/// How far beyond the screening distance the expansion may walk, as a
/// distance in `[0, 1]`. Walking through a shell of points just outside the
/// ball reaches parts of the ball that are linked only through such points.
/// Measured: 0.04 gives count recall above 0.99 on the simulator at M = 16;
/// 0.06 and 0.08 gained nothing on the compare benchmark's 10,000 samples,
/// where the misses were whole clumps that no walk from the entry point
/// reached (now started from the member itself, see [`ModelIndex::ball`]).
pub const EXPANSION_SHELL: f64 = 0.04;

/// Slack on the single-precision screening before the exact test, covering
/// the rounding of `dot_fast` on unit vectors of any supported dimension.
const SCREEN_SLACK: f32 = 1e-4;

/// Per-thread scratch space for expansions: a visited mark per point,
/// cleared through the list of what was marked.
pub struct Scratch {
    visited: Vec<bool>,
    touched: Vec<u32>,
    queue: VecDeque<u32>,
}

impl Scratch {
    /// Scratch space for an index of `n` points.
    pub fn new(n: usize) -> Scratch {
        Scratch {
            visited: vec![false; n],
            touched: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    fn reset(&mut self) {
        for &id in &self.touched {
            self.visited[id as usize] = false;
        }
        self.touched.clear();
        self.queue.clear();
    }

    fn mark(&mut self, id: u32) -> bool {
        let seen = &mut self.visited[id as usize];
        if *seen {
            return false;
        }
        *seen = true;
        self.touched.push(id);
        true
    }
}

/// A point ordered by its dot product with a query (ties by data id).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ByDot(f32, u32);

impl Eq for ByDot {}

impl PartialOrd for ByDot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByDot {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

/// Points found by a radius expansion, with their exact dot products.
#[derive(Debug, Clone, Default)]
pub struct Ball {
    /// (data id, exact dot product) of every point at or above the screening
    /// dot product, in no particular order.
    pub members: Vec<(u32, f64)>,
    /// Number of points whose distance was computed (the query's cost).
    pub visited: usize,
}

impl ModelIndex {
    /// Where a graph walk for `query` starts: the query's own data id when
    /// it is a point of the index (see [`ModelIndex::ball`] for why), else
    /// hnsw_rs's top-`ef` answer.
    fn starts(&self, query: &[f32], member: Option<usize>, ef: usize) -> Vec<usize> {
        match member {
            Some(id) => vec![id],
            None => self
                .search(query, ef.min(self.len()), ef)
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        }
    }

    /// All points whose exact dot product with `query` is at least
    /// `min_dot`, as far as the graph expansion reaches. `member` is the
    /// query's own data id when the query is a point of the index: the
    /// expansion then starts from it instead of from hnsw_rs's top-k
    /// search. Two reasons, both measured on the compare benchmark's data:
    /// collapsed identities' near-duplicates link mostly among themselves,
    /// and the search from the entry point could miss the whole clump (it
    /// found 0 to 3 of the 215 members for 4 of the clump's anchors at
    /// 10,000 samples); and at a million samples that search cost more
    /// than the expansion (an hnsw audit took 95.5 s with it, 83.6 s
    /// without, at the same count recall of 0.9977).
    pub fn ball(
        &self,
        query: &[f32],
        member: Option<usize>,
        min_dot: f64,
        scratch: &mut Scratch,
    ) -> Ball {
        scratch.reset();
        let mut ball = Ball::default();
        if self.is_empty() {
            return ball;
        }
        let screen = min_dot as f32 - SCREEN_SLACK;
        let min_angle = Kernel::distance(min_dot) + EXPANSION_SHELL;
        let walk = if min_angle >= 1.0 {
            -1.0
        } else {
            (std::f64::consts::PI * min_angle).cos() as f32 - SCREEN_SLACK
        };
        for id in self.starts(query, member, self.params().ef_search) {
            let id = id as u32;
            if scratch.mark(id) {
                let dot = dot_fast(query, self.vector(id as usize));
                ball.visited += 1;
                if dot >= walk {
                    scratch.queue.push_back(id);
                }
                if dot >= screen {
                    ball.members
                        .push((id, dot_exact(query, self.vector(id as usize))));
                }
            }
        }
        while let Some(id) = scratch.queue.pop_front() {
            for &next in self.links(id as usize) {
                if !scratch.mark(next) {
                    continue;
                }
                let dot = dot_fast(query, self.vector(next as usize));
                ball.visited += 1;
                if dot >= walk {
                    scratch.queue.push_back(next);
                }
                if dot >= screen {
                    ball.members
                        .push((next, dot_exact(query, self.vector(next as usize))));
                }
            }
        }
        ball
    }

    /// The `k` points nearest to `query` (largest dot product first), as
    /// (data id, single-precision dot). A best-first search over the bottom
    /// layer with a beam of `ef`, started from hnsw_rs's own top-`ef` answer
    /// or, for a query that is a point of the index, from that point (see
    /// [`ModelIndex::ball`] for why: one lookup at a million samples took
    /// 310 ms through hnsw_rs's search and 46 ms from the member).
    pub fn nearest(
        &self,
        query: &[f32],
        member: Option<usize>,
        k: usize,
        ef: usize,
        scratch: &mut Scratch,
    ) -> Vec<(usize, f32)> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        scratch.reset();
        if self.is_empty() || k == 0 {
            return Vec::new();
        }
        let ef = ef.max(k);
        // Candidates to expand, best first; the beam, worst first.
        let mut frontier: BinaryHeap<ByDot> = BinaryHeap::new();
        let mut beam: BinaryHeap<Reverse<ByDot>> = BinaryHeap::new();
        for id in self.starts(query, member, ef) {
            if scratch.mark(id as u32) {
                let entry = ByDot(dot_fast(query, self.vector(id)), id as u32);
                frontier.push(entry);
                beam.push(Reverse(entry));
                if beam.len() > ef {
                    beam.pop();
                }
            }
        }
        while let Some(best) = frontier.pop() {
            let worst = beam.peek().map_or(f32::NEG_INFINITY, |w| w.0.0);
            if beam.len() >= ef && best.0 < worst {
                break;
            }
            for &next in self.links(best.1 as usize) {
                if !scratch.mark(next) {
                    continue;
                }
                let entry = ByDot(dot_fast(query, self.vector(next as usize)), next);
                let worst = beam.peek().map_or(f32::NEG_INFINITY, |w| w.0.0);
                if beam.len() < ef || entry.0 > worst {
                    frontier.push(entry);
                    beam.push(Reverse(entry));
                    if beam.len() > ef {
                        beam.pop();
                    }
                }
            }
        }
        let mut out: Vec<(usize, f32)> = beam
            .into_iter()
            .map(|Reverse(e)| (e.1 as usize, e.0))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(k);
        out
    }

    /// Neighbour count and similarity sum of one query; `exclude` is the
    /// query's own data id when the query is a member.
    pub fn radius_sums(
        &self,
        query: &[f32],
        exclude: Option<usize>,
        kernel: &Kernel,
        scratch: &mut Scratch,
    ) -> AnchorSums {
        let ball = self.ball(query, exclude, kernel.screen_dot(), scratch);
        let mut sums = AnchorSums::default();
        for (id, dot) in ball.members {
            if Some(id as usize) != exclude {
                kernel.accumulate(&mut sums, dot);
            }
        }
        sums
    }

    /// Radius sums for many member queries in parallel.
    pub fn radius_sums_many(
        &self,
        queries: &[usize],
        kernel: &Kernel,
        progress: &indicatif::ProgressBar,
    ) -> Vec<AnchorSums> {
        queries
            .par_iter()
            .map_init(
                || Scratch::new(self.len()),
                |scratch, &id| {
                    let sums = self.radius_sums(self.vector(id), Some(id), kernel, scratch);
                    progress.inc(1);
                    sums
                },
            )
            .collect()
    }

    /// Mean number of points a radius query visits, over the member
    /// `queries`: the pilot of the search cost model
    /// ([`crate::search::IndexCost::Loaded`]). Deterministic, as the graph
    /// and the expansion are.
    pub fn mean_visits(&self, queries: &[usize], kernel: &Kernel) -> f64 {
        if queries.is_empty() {
            return 0.0;
        }
        let total: usize = queries
            .par_iter()
            .map_init(
                || Scratch::new(self.len()),
                |scratch, &id| {
                    self.ball(self.vector(id), Some(id), kernel.screen_dot(), scratch)
                        .visited
                },
            )
            .sum();
        total as f64 / queries.len() as f64
    }

    /// A density score for every point: the mean index distance (`1 - dot`)
    /// to its `nearest` closest bottom-layer links. Smaller means denser.
    pub fn link_density(&self, nearest: usize) -> Vec<f32> {
        let all: Vec<usize> = (0..self.len()).collect();
        self.link_density_of(&all, nearest)
    }

    /// [`ModelIndex::link_density`] for the given data ids only, in their
    /// order.
    pub fn link_density_of(&self, rows: &[usize], nearest: usize) -> Vec<f32> {
        rows.par_iter()
            .map(|&id| {
                let v = self.vector(id);
                let mut dists: Vec<f32> = self
                    .links(id)
                    .iter()
                    .map(|&nb| (1.0 - dot_fast(v, self.vector(nb as usize))).max(0.0))
                    .collect();
                if dists.is_empty() {
                    return f32::INFINITY;
                }
                let take = nearest.clamp(1, dists.len());
                dists.select_nth_unstable_by(take - 1, f32::total_cmp);
                dists[..take].iter().sum::<f32>() / take as f32
            })
            .collect()
    }

    /// Exact neighbour count and similarity sum of the member `id` against
    /// every point, by the same double-precision test as the exact scan.
    /// The points are summed in fixed blocks merged in order, so the result
    /// does not depend on the thread schedule.
    pub fn exact_sums_of(&self, id: usize, kernel: &Kernel) -> AnchorSums {
        const BLOCK: usize = 4096;
        let query = self.vector(id);
        let blocks: Vec<AnchorSums> = (0..self.len().div_ceil(BLOCK))
            .into_par_iter()
            .map(|block| {
                let mut sums = AnchorSums::default();
                for other in block * BLOCK..((block + 1) * BLOCK).min(self.len()) {
                    if other != id {
                        kernel.accumulate(&mut sums, dot_exact(query, self.vector(other)));
                    }
                }
                sums
            })
            .collect();
        let mut total = AnchorSums::default();
        for block in blocks {
            total.merge(block);
        }
        total
    }
}
