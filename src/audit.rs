//! Audits: random-anchor audits, the search for modes over every sample,
//! and neighbour look-ups.
//!
//! Each entry point reads what it needs from the catalog, closes it, does
//! the counting ([`crate::search`] or the [`crate::index`]), and opens the
//! catalog again only to store its result.

use std::path::Path;
use std::time::Instant;

use ndarray::{Array2, Axis};
use rand::SeedableRng;
use serde::Serialize;

use crate::catalog::{AnchorRole, AnchorRow, AnchorVectors, Catalog, NewAudit};
use crate::error::{Error, Result};
use crate::index::{self, IndexParams, ModelIndex, SyncAction, radius::Scratch};
use crate::progress::Progress;
use crate::score::{AnchorScore, AnchorSums, Kernel, Population, sampling_remarks};
use crate::search::{self, IndexState, SearchMode, Workload, exact_sums};
use crate::vector::dot_exact;

/// Anchors of an hnsw audit whose counts are completed by an exact scan
/// over every indexed point (the densest by the graph's count), so that the
/// worst-case mode and its count are exact. Cost: this many times
/// `samples * dim` multiply-adds.
pub const EXACT_DENSEST: usize = 8;
/// Anchors on which `--search auto` measures the walk fraction that prices
/// the hnsw search (see [`search::choose`]).
const PILOT_ANCHORS: usize = 16;

/// Options of a random-anchor audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    pub model: String,
    pub anchors: usize,
    pub theta: f64,
    /// Neighbour radius; `theta` when `None`.
    pub radius: Option<f64>,
    pub search: SearchMode,
    pub seed: u64,
    /// Reuse the random anchors of this audit instead of drawing new ones
    /// (`anchors` and `seed` are then ignored): a full recomputation that an
    /// incremental update can be checked against.
    pub anchors_from: Option<i64>,
    pub index_params: IndexParams,
}

/// One anchor's result.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AnchorResult {
    pub sample_id: i64,
    pub role: AnchorRole,
    #[serde(flatten)]
    pub score: AnchorScore,
}

/// The result of an audit, as stored and printed.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub audit_id: i64,
    pub model: String,
    pub kind: String,
    pub theta: f64,
    pub radius: f64,
    pub n_samples: u64,
    pub n_anchors: usize,
    pub search: SearchMode,
    pub search_reason: String,
    pub population: Population,
    /// The anchor with the most neighbours (ties: smallest sample id).
    pub worst: Option<AnchorResult>,
    pub remarks: Vec<String>,
    /// Seconds spent counting (without loading or storing).
    pub search_s: f64,
    /// Seconds spent building or loading the index, if used.
    pub index_s: Option<f64>,
    pub index_action: Option<SyncAction>,
    pub elapsed_s: f64,
    /// The anchors, worst first.
    pub anchors: Vec<AnchorResult>,
}

/// Samples of a model, read once.
struct Loaded {
    ids: Vec<i64>,
    embeddings: Array2<f32>,
}

fn load_samples(catalog_path: &Path, model: &str) -> Result<Loaded> {
    let catalog = Catalog::open(catalog_path)?;
    let (ids, embeddings) = catalog.embeddings(model, 0)?;
    if ids.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "model {model:?} has no samples yet"
        )));
    }
    Ok(Loaded { ids, embeddings })
}

/// Draws `count` distinct anchor rows out of `n`, reproducibly from `seed`,
/// in ascending order.
pub fn draw_anchor_rows(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut rows = rand::seq::index::sample(&mut rng, n, count).into_vec();
    rows.sort_unstable();
    rows
}

/// The rows (positions in `ids`) of the random anchors of a stored audit.
fn anchor_rows_of(
    catalog_path: &Path,
    model: &str,
    audit_id: i64,
    ids: &[i64],
) -> Result<Vec<usize>> {
    let catalog = Catalog::open(catalog_path)?;
    let audit = catalog.audit(audit_id)?;
    if audit.model != model {
        return Err(Error::InvalidArgument(format!(
            "audit {audit_id} is of model {:?}, not {model:?}",
            audit.model
        )));
    }
    let mut rows = Vec::new();
    for row in catalog.anchor_rows(audit_id)? {
        if row.role != AnchorRole::Random {
            continue;
        }
        let position = ids
            .binary_search(&row.sample_id)
            .map_err(|_| Error::UnknownSample {
                model: model.to_string(),
                sample_id: row.sample_id,
            })?;
        rows.push(position);
    }
    if rows.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "audit {audit_id} has no random anchors"
        )));
    }
    rows.sort_unstable();
    Ok(rows)
}

/// Sorts anchors worst first: most neighbours, ties to the smallest id.
fn sort_worst_first(anchors: &mut [AnchorResult]) {
    anchors.sort_by(|a, b| {
        b.score
            .neighbors
            .cmp(&a.score.neighbors)
            .then(a.sample_id.cmp(&b.sample_id))
    });
}

/// Runs a random-anchor audit and stores it.
pub fn run_audit(
    catalog_path: &Path,
    options: &AuditOptions,
    progress: Progress,
) -> Result<AuditReport> {
    let started = Instant::now();
    let kernel = Kernel::new(options.theta, options.radius.unwrap_or(options.theta))?;
    let (ids, dim) = {
        let catalog = Catalog::open(catalog_path)?;
        let record = catalog.require_model(&options.model)?;
        (catalog.sample_ids(&options.model)?, record.embed_dim)
    };
    let n = ids.len();
    if n < 2 {
        return Err(Error::InvalidArgument(format!(
            "model {:?} has {n} samples; an audit needs at least 2",
            options.model
        )));
    }
    let rows = match options.anchors_from {
        Some(audit_id) => anchor_rows_of(catalog_path, &options.model, audit_id, &ids)?,
        None => {
            if options.anchors == 0 || options.anchors > n {
                return Err(Error::InvalidArgument(format!(
                    "--anchors must be between 1 and the number of samples ({n}), got {}",
                    options.anchors
                )));
            }
            draw_anchor_rows(n, options.anchors, options.seed)
        }
    };
    // `auto` reads the embeddings first, as the exact scan would: a pilot
    // on a few anchors then tells how far a graph query would have to walk
    // on these data, the one cost the model cannot know in advance. If the
    // index wins, the embeddings were read for nothing; that read costs
    // less than loading the index.
    let mut loaded = None;
    let (mode, reason) = match options.search {
        SearchMode::Auto => {
            let samples = load_samples(catalog_path, &options.model)?;
            let pilot = &rows[..rows.len().min(PILOT_ANCHORS)];
            let walk_fraction = search::walk_fraction(samples.embeddings.view(), pilot, &kernel);
            let dir = index::model_index_dir(catalog_path, &options.model);
            let index = match index::published_coverage(&dir) {
                Some((coverage, _)) if coverage == index::Coverage::of(&ids) => IndexState::Ready,
                Some((coverage, _)) if (coverage.n_points as usize) < n => IndexState::Behind {
                    missing: n - coverage.n_points as usize,
                },
                _ => IndexState::Behind { missing: n },
            };
            loaded = Some(samples);
            search::choose(
                Workload {
                    n_anchors: rows.len(),
                    n_samples: n,
                    dim,
                    walk_fraction,
                    index,
                },
                EXACT_DENSEST,
            )
        }
        other => (other, "chosen by the user".to_string()),
    };
    let mut index_s = None;
    let mut index_action = None;
    let search_started;
    let (sums, vectors): (Vec<AnchorSums>, AnchorVectors) = match mode {
        SearchMode::Hnsw => {
            drop(loaded);
            let synced = index::sync(catalog_path, &options.model, options.index_params, progress)?;
            index_s = Some(synced.elapsed_s);
            index_action = Some(synced.action);
            search_started = Instant::now();
            let bar = progress.bar(rows.len() as u64, "anchors");
            let mut sums = synced.index.radius_sums_many(&rows, &kernel, &bar);
            bar.finish_and_clear();
            // The densest anchors decide the worst-case mode, and a graph
            // expansion can miss part of a large ball: their counts are
            // completed exactly against every point.
            let mut densest: Vec<usize> = (0..rows.len()).collect();
            densest.sort_by(|&a, &b| sums[b].neighbors.cmp(&sums[a].neighbors).then(a.cmp(&b)));
            for &q in densest.iter().take(EXACT_DENSEST) {
                sums[q] = synced.index.exact_sums_of(rows[q], &kernel);
            }
            let mut by_id = rows.clone();
            by_id.sort_unstable();
            let mut matrix = ndarray::Array2::zeros((by_id.len(), synced.index.dim()));
            for (mut out, &row) in matrix.outer_iter_mut().zip(&by_id) {
                out.assign(&ndarray::ArrayView1::from(synced.index.vector(row)));
            }
            let vectors = AnchorVectors {
                ids: by_id.iter().map(|&r| ids[r]).collect(),
                vectors: matrix,
            };
            (sums, vectors)
        }
        _ => {
            let loaded = match loaded {
                Some(loaded) => loaded,
                None => load_samples(catalog_path, &options.model)?,
            };
            debug_assert_eq!(loaded.ids, ids);
            search_started = Instant::now();
            let queries = loaded.embeddings.select(Axis(0), &rows);
            let exclude: Vec<Option<usize>> = rows.iter().map(|&r| Some(r)).collect();
            let bar = progress.bar(n as u64, "scanning");
            let sums = exact_sums(
                loaded.embeddings.view(),
                0,
                queries.view(),
                &exclude,
                &kernel,
                &bar,
            );
            bar.finish_and_clear();
            let vectors = AnchorVectors::gather(&ids, loaded.embeddings.view(), &rows);
            (sums, vectors)
        }
    };
    let search_s = search_started.elapsed().as_secs_f64();
    let mode = if mode == SearchMode::Auto {
        SearchMode::Exact
    } else {
        mode
    };
    let mut anchors: Vec<AnchorResult> = rows
        .iter()
        .zip(&sums)
        .map(|(&row, &s)| AnchorResult {
            sample_id: ids[row],
            role: AnchorRole::Random,
            score: AnchorScore::from_sums(s, n as u64),
        })
        .collect();
    sort_worst_first(&mut anchors);
    let population = Population::from_mccs(anchors.iter().map(|a| a.score.mccs));
    let worst = anchors.first().copied();
    let params = serde_json::json!({
        "seed": options.seed,
        "anchors_from": options.anchors_from,
        "requested_search": options.search,
        "search_reason": reason,
        "index": if mode == SearchMode::Hnsw { serde_json::to_value(options.index_params).ok() } else { None },
        "exact_densest": if mode == SearchMode::Hnsw { Some(EXACT_DENSEST) } else { None },
        "expansion_shell": if mode == SearchMode::Hnsw { Some(index::radius::EXPANSION_SHELL) } else { None },
        "n_infinite": population.n_infinite,
        "mccs_std_error": population.std_error,
        "search_s": search_s,
    });
    let elapsed_s = started.elapsed().as_secs_f64();
    let audit = NewAudit {
        model: options.model.clone(),
        kind: "anchors".into(),
        parent_audit_id: None,
        theta: kernel.theta(),
        radius: kernel.radius(),
        n_samples: n as u64,
        max_sample_id: ids[n - 1],
        n_anchors: anchors.len() as u64,
        search: mode.as_str().into(),
        mccs_mean: Some(population.mean),
        mccs_std: Some(population.std),
        mccs_max: Some(population.max),
        worst_sample_id: worst.map(|w| w.sample_id),
        worst_neighbors: worst.map(|w| w.score.neighbors),
        elapsed_s,
        params,
    };
    let audit_id = store(catalog_path, &audit, &anchors, Some(&vectors))?;
    Ok(AuditReport {
        audit_id,
        model: options.model.clone(),
        kind: audit.kind,
        theta: kernel.theta(),
        radius: kernel.radius(),
        n_samples: n as u64,
        n_anchors: anchors.len(),
        search: mode,
        search_reason: reason,
        population,
        worst,
        remarks: sampling_remarks(n as u64, anchors.len()),
        search_s,
        index_s,
        index_action,
        elapsed_s,
        anchors,
    })
}

/// Stores an audit with its anchors' scores and, for audits that may be
/// updated later, their embeddings.
pub(crate) fn store(
    catalog_path: &Path,
    audit: &NewAudit,
    anchors: &[AnchorResult],
    vectors: Option<&AnchorVectors>,
) -> Result<i64> {
    let rows: Vec<AnchorRow> = anchors
        .iter()
        .map(|a| AnchorRow {
            sample_id: a.sample_id,
            role: a.role,
            neighbors: a.score.neighbors,
            similarity_sum: a.score.similarity_sum,
            expected_similarity: a.score.expected_similarity,
            mccs: a.score.mccs,
        })
        .collect();
    let started = Instant::now();
    let mut catalog = Catalog::open(catalog_path)?;
    tracing::debug!(
        elapsed_s = started.elapsed().as_secs_f64(),
        "store: catalog open"
    );
    let audit_id = catalog.insert_audit(audit, &rows, vectors)?;
    tracing::debug!(
        elapsed_s = started.elapsed().as_secs_f64(),
        "store: audit stored"
    );
    Ok(audit_id)
}

/// Options of the search for modes over every sample.
#[derive(Debug, Clone)]
pub struct ModesOptions {
    pub model: String,
    pub top: usize,
    pub theta: f64,
    pub radius: Option<f64>,
    /// Distinct dense regions to examine (seeds), at least `top`.
    pub seeds: usize,
    /// Candidates examined around each seed.
    pub per_seed: usize,
    pub index_params: IndexParams,
}

/// Finds the top distinct modes over every sample and stores them as an
/// audit of kind `modes`.
///
/// 1. Rank every sample by link density (free with the graph).
/// 2. Walk that ranking and keep a seed whenever it is not within the
///    radius of a seed already kept: one seed per dense region, densest
///    first, up to `seeds`.
/// 3. Around each seed, take the densest members of its half-radius ball
///    as candidates (the seed's own count need not be its region's peak).
/// 4. Count every candidate exactly against all samples.
/// 5. Pick modes greedily by exact count (ties: smallest sample id among
///    the candidates; samples of one collapsed identity often share the
///    maximum, and one outside the candidates can have a smaller id),
///    skipping candidates within the radius of a mode already picked, so a
///    mode's own neighbours do not come back as the next modes.
///
/// What this can miss: a region whose every member ranks below `seeds`
/// denser regions by link density. The tests check the result against an
/// exhaustive count on seeded data.
pub fn find_modes(
    catalog_path: &Path,
    options: &ModesOptions,
    progress: Progress,
) -> Result<AuditReport> {
    let started = Instant::now();
    let kernel = Kernel::new(options.theta, options.radius.unwrap_or(options.theta))?;
    if options.top == 0 {
        return Err(Error::InvalidArgument("--top must be at least 1".into()));
    }
    let synced = index::sync(catalog_path, &options.model, options.index_params, progress)?;
    let index_s = synced.elapsed_s;
    let idx = &synced.index;
    let n = idx.len();
    let search_started = Instant::now();
    let density = idx.link_density(4);
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by(|&a, &b| {
        density[a as usize]
            .total_cmp(&density[b as usize])
            .then(a.cmp(&b))
    });
    let seeds = pick_distinct(
        idx,
        &order,
        kernel.radius_dot(),
        options.seeds.max(options.top),
    );
    let mut candidates = candidates_around(idx, &seeds, &density, &kernel, options.per_seed);
    candidates.extend(audited_anchors(catalog_path, &options.model, idx));
    candidates.sort_unstable();
    candidates.dedup();
    let all = index_matrix(idx);
    let sums = count_exactly(&all, &candidates, &kernel, progress);
    let mut ranked: Vec<(u32, AnchorSums)> = candidates.iter().copied().zip(sums).collect();
    refine_by_mean_shift(idx, &all, &kernel, &mut ranked, progress);
    refine_in_balls(
        idx,
        &all,
        &kernel,
        &density,
        options.top,
        &mut ranked,
        progress,
    );
    let candidates: Vec<u32> = ranked.iter().map(|r| r.0).collect();
    ranked.sort_by(|a, b| {
        b.1.neighbors
            .cmp(&a.1.neighbors)
            .then(idx.sample_ids()[a.0 as usize].cmp(&idx.sample_ids()[b.0 as usize]))
    });
    let ranked_ids: Vec<u32> = ranked.iter().map(|r| r.0).collect();
    let modes = pick_distinct(idx, &ranked_ids, kernel.radius_dot(), options.top);
    let by_id: std::collections::HashMap<u32, AnchorSums> = ranked.into_iter().collect();
    let anchors: Vec<AnchorResult> = modes
        .iter()
        .map(|id| AnchorResult {
            sample_id: idx.sample_ids()[*id as usize],
            role: AnchorRole::Mode,
            score: AnchorScore::from_sums(by_id[id], n as u64),
        })
        .collect();
    let search_s = search_started.elapsed().as_secs_f64();
    let population = Population::from_mccs(anchors.iter().map(|a| a.score.mccs));
    let worst = anchors.first().copied();
    let params = serde_json::json!({
        "top": options.top,
        "seeds": seeds.len(),
        "candidates": candidates.len(),
        "per_seed": options.per_seed,
        "index": options.index_params,
        "search_s": search_s,
    });
    let elapsed_s = started.elapsed().as_secs_f64();
    let audit = NewAudit {
        model: options.model.clone(),
        kind: "modes".into(),
        parent_audit_id: None,
        theta: kernel.theta(),
        radius: kernel.radius(),
        n_samples: n as u64,
        max_sample_id: idx.sample_ids()[n - 1],
        n_anchors: anchors.len() as u64,
        search: "hnsw".into(),
        mccs_mean: Some(population.mean),
        mccs_std: Some(population.std),
        mccs_max: Some(population.max),
        worst_sample_id: worst.map(|w| w.sample_id),
        worst_neighbors: worst.map(|w| w.score.neighbors),
        elapsed_s,
        params,
    };
    let audit_id = store(catalog_path, &audit, &anchors, None)?;
    Ok(AuditReport {
        audit_id,
        model: options.model.clone(),
        kind: audit.kind,
        theta: kernel.theta(),
        radius: kernel.radius(),
        n_samples: n as u64,
        n_anchors: anchors.len(),
        search: SearchMode::Hnsw,
        search_reason: format!(
            "{} seeds, {} candidates counted exactly over all samples",
            seeds.len(),
            candidates.len()
        ),
        population,
        worst,
        remarks: Vec::new(),
        search_s,
        index_s: Some(index_s),
        index_action: Some(synced.action),
        elapsed_s,
        anchors,
    })
}

/// Walks `order` and keeps up to `limit` points none of which lies within
/// the radius (dot product at least `min_dot`) of another kept point.
fn pick_distinct(idx: &ModelIndex, order: &[u32], min_dot: f64, limit: usize) -> Vec<u32> {
    let mut kept: Vec<u32> = Vec::new();
    for &id in order {
        if kept.len() >= limit {
            break;
        }
        let v = idx.vector(id as usize);
        if kept
            .iter()
            .all(|&k| dot_exact(v, idx.vector(k as usize)) < min_dot)
        {
            kept.push(id);
        }
    }
    kept
}

/// Each seed plus the `per_seed` densest members of its half-radius ball.
fn candidates_around(
    idx: &ModelIndex,
    seeds: &[u32],
    density: &[f32],
    kernel: &Kernel,
    per_seed: usize,
) -> Vec<u32> {
    let half = (std::f64::consts::PI * kernel.radius() / 2.0).cos();
    let mut scratch = Scratch::new(idx.len());
    let mut candidates: Vec<u32> = Vec::new();
    for &seed in seeds {
        candidates.push(seed);
        let mut ball: Vec<u32> = idx
            .ball(
                idx.vector(seed as usize),
                Some(seed as usize),
                half,
                &mut scratch,
            )
            .members
            .into_iter()
            .filter(|&(id, dot)| dot >= half && id != seed)
            .map(|(id, _)| id)
            .collect();
        ball.sort_by(|&a, &b| {
            density[a as usize]
                .total_cmp(&density[b as usize])
                .then(a.cmp(&b))
        });
        candidates.extend(ball.into_iter().take(per_seed));
    }
    candidates.sort_unstable();
    candidates.dedup();
    candidates
}

/// Exact sums of index members against every point of the index.
/// Every vector of the index as one matrix (data id = row), for exact
/// counts by blocked product.
fn index_matrix(idx: &ModelIndex) -> Array2<f32> {
    let mut all = Array2::<f32>::zeros((idx.len(), idx.dim()));
    for (i, mut row) in all.axis_iter_mut(Axis(0)).enumerate() {
        row.as_slice_mut()
            .expect("contiguous")
            .copy_from_slice(idx.vector(i));
    }
    all
}

/// The densest anchors (up to 16) of the model's latest random-anchor
/// audit or update, as data ids of the index: evidence of density at the
/// radius's own scale, which link distances (a local, few-neighbour
/// signal) can miss when neighbourhoods are large.
fn audited_anchors(catalog_path: &Path, model: &str, idx: &ModelIndex) -> Vec<u32> {
    let rows = (|| -> Result<Vec<AnchorRow>> {
        let catalog = Catalog::open(catalog_path)?;
        let latest = catalog
            .audits(model)?
            .into_iter()
            .rev()
            .find(|a| a.kind == "anchors" || a.kind == "update");
        match latest {
            Some(a) => catalog.anchor_rows(a.audit_id),
            None => Ok(Vec::new()),
        }
    })()
    .unwrap_or_default();
    rows.iter()
        .take(16)
        .filter_map(|r| idx.sample_ids().binary_search(&r.sample_id).ok())
        .map(|row| row as u32)
        .collect()
}

/// Mean shift at the radius's scale: from each of the best candidates, the
/// normalised mean of its radius ball points towards the centre of its
/// dense region; the samples nearest that mean are counted too. A few
/// rounds climb from a candidate near a region's edge to its peak.
fn refine_by_mean_shift(
    idx: &ModelIndex,
    all: &Array2<f32>,
    kernel: &Kernel,
    ranked: &mut Vec<(u32, AnchorSums)>,
    progress: Progress,
) {
    const ROUNDS: usize = 12;
    const CLIMBERS: usize = 16;
    const NEAREST: usize = 4;
    let mut scratch = Scratch::new(idx.len());
    for _ in 0..ROUNDS {
        ranked.sort_by(|a, b| b.1.neighbors.cmp(&a.1.neighbors).then(a.0.cmp(&b.0)));
        let counted: std::collections::HashSet<u32> = ranked.iter().map(|r| r.0).collect();
        let mut fresh: Vec<u32> = Vec::new();
        for &(id, _) in ranked.iter().take(CLIMBERS) {
            let ball = idx.ball(
                idx.vector(id as usize),
                Some(id as usize),
                kernel.radius_dot(),
                &mut scratch,
            );
            let mut mean = vec![0f64; idx.dim()];
            for &(member, dot) in &ball.members {
                if dot >= kernel.radius_dot() {
                    for (m, x) in mean.iter_mut().zip(idx.vector(member as usize)) {
                        *m += f64::from(*x);
                    }
                }
            }
            let norm = mean.iter().map(|m| m * m).sum::<f64>().sqrt();
            if norm == 0.0 {
                continue;
            }
            let query: Vec<f32> = mean.iter().map(|m| (m / norm) as f32).collect();
            for (nearest, _) in idx.search(&query, NEAREST, idx.params().ef_search) {
                let nearest = nearest as u32;
                if !counted.contains(&nearest) && !fresh.contains(&nearest) {
                    fresh.push(nearest);
                }
            }
        }
        if fresh.is_empty() {
            break;
        }
        let sums = count_exactly(all, &fresh, kernel, progress);
        ranked.extend(fresh.into_iter().zip(sums));
    }
}

/// Local search inside the best regions: a planted or real collapsed
/// identity is a blob of many samples whose densest point need not be its
/// centre (mean shift's goal) nor the sample with the shortest links. For
/// the best `regions` distinct candidates, members of their radius balls
/// not counted yet are counted exactly, densest by link distance first, a
/// fixed budget per round; when a member beats its region's best, the next
/// round searches around it. Costs at most `ROUNDS x BUDGET` exact counts.
fn refine_in_balls(
    idx: &ModelIndex,
    all: &Array2<f32>,
    kernel: &Kernel,
    density: &[f32],
    regions: usize,
    ranked: &mut Vec<(u32, AnchorSums)>,
    progress: Progress,
) {
    const ROUNDS: usize = 4;
    const BUDGET: usize = 1024;
    let mut scratch = Scratch::new(idx.len());
    let mut counted: std::collections::HashSet<u32> = ranked.iter().map(|r| r.0).collect();
    for _ in 0..ROUNDS {
        ranked.sort_by(|a, b| b.1.neighbors.cmp(&a.1.neighbors).then(a.0.cmp(&b.0)));
        let order: Vec<u32> = ranked.iter().map(|r| r.0).collect();
        let heads = pick_distinct(idx, &order, kernel.radius_dot(), regions.max(1));
        let per_head = BUDGET / heads.len().max(1);
        let mut fresh: Vec<u32> = Vec::new();
        for &head in &heads {
            let mut members: Vec<u32> = idx
                .ball(
                    idx.vector(head as usize),
                    Some(head as usize),
                    kernel.radius_dot(),
                    &mut scratch,
                )
                .members
                .into_iter()
                .filter(|&(id, dot)| dot >= kernel.radius_dot() && !counted.contains(&id))
                .map(|(id, _)| id)
                .collect();
            members.sort_by(|&a, &b| {
                density[a as usize]
                    .total_cmp(&density[b as usize])
                    .then(a.cmp(&b))
            });
            for id in members.into_iter().take(per_head) {
                if counted.insert(id) {
                    fresh.push(id);
                }
            }
        }
        if fresh.is_empty() {
            break;
        }
        let sums = count_exactly(all, &fresh, kernel, progress);
        ranked.extend(fresh.into_iter().zip(sums));
    }
}

fn count_exactly(
    all: &Array2<f32>,
    members: &[u32],
    kernel: &Kernel,
    progress: Progress,
) -> Vec<AnchorSums> {
    let n = all.nrows();
    let rows: Vec<usize> = members.iter().map(|&m| m as usize).collect();
    let queries = all.select(Axis(0), &rows);
    let exclude: Vec<Option<usize>> = rows.iter().map(|&r| Some(r)).collect();
    let bar = progress.bar(n as u64, "counting");
    let sums = exact_sums(all.view(), 0, queries.view(), &exclude, kernel, &bar);
    bar.finish_and_clear();
    sums
}

/// Where a neighbour query starts.
#[derive(Debug, Clone)]
pub enum NeighborQuery {
    /// A sample of the model (left out of its own answer).
    Sample(i64),
    /// An external vector (normalised by the caller).
    Vector(Vec<f32>),
}

/// How many neighbours to return.
#[derive(Debug, Clone, Copy)]
pub enum NeighborLimit {
    Nearest(usize),
    Radius(f64),
}

/// One neighbour.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Neighbor {
    pub rank: usize,
    pub sample_id: i64,
    /// Normalised angular distance in `[0, 1]`.
    pub distance: f64,
    pub dot: f64,
}

/// The answer to a neighbour query, with its timings.
#[derive(Debug, Clone, Serialize)]
pub struct NeighborReport {
    pub model: String,
    pub query_sample_id: Option<i64>,
    pub neighbors: Vec<Neighbor>,
    /// Milliseconds to bring the index up to date and open it.
    pub open_ms: f64,
    /// Milliseconds of the query itself.
    pub query_ms: f64,
    pub index_action: SyncAction,
    pub index_points: usize,
}

/// Looks up neighbours in the model's index.
pub fn neighbors(
    catalog_path: &Path,
    model: &str,
    query: &NeighborQuery,
    limit: NeighborLimit,
    params: IndexParams,
    progress: Progress,
) -> Result<NeighborReport> {
    let opened = Instant::now();
    let synced = index::sync(catalog_path, model, params, progress)?;
    let idx = &synced.index;
    let (vector, own) = match query {
        NeighborQuery::Sample(id) => {
            let row = idx
                .sample_ids()
                .binary_search(id)
                .map_err(|_| Error::UnknownSample {
                    model: model.to_string(),
                    sample_id: *id,
                })?;
            (idx.vector(row).to_vec(), Some(row))
        }
        NeighborQuery::Vector(v) => {
            if v.len() != idx.dim() {
                return Err(Error::Dimension {
                    what: "query vector".into(),
                    expected: idx.dim(),
                    got: v.len(),
                });
            }
            (v.clone(), None)
        }
    };
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let mut found: Vec<(usize, f64)> = match limit {
        NeighborLimit::Nearest(k) => {
            let ef = idx.params().ef_search.max(k + 1);
            let mut scratch = Scratch::new(idx.len());
            idx.nearest(&vector, own, k + 1, ef, &mut scratch)
                .into_iter()
                .filter(|(id, _)| Some(*id) != own)
                .map(|(id, _)| (id, dot_exact(&vector, idx.vector(id))))
                .collect()
        }
        NeighborLimit::Radius(r) => {
            let min_dot = Kernel::new(r.max(f64::MIN_POSITIVE), r)?.radius_dot();
            let mut scratch = Scratch::new(idx.len());
            idx.ball(&vector, own, min_dot, &mut scratch)
                .members
                .into_iter()
                .filter(|&(id, dot)| Some(id as usize) != own && dot >= min_dot)
                .map(|(id, dot)| (id as usize, dot))
                .collect()
        }
    };
    found.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(idx.sample_ids()[a.0].cmp(&idx.sample_ids()[b.0]))
    });
    if let NeighborLimit::Nearest(k) = limit {
        found.truncate(k);
    }
    let query_ms = started.elapsed().as_secs_f64() * 1e3;
    let neighbors = found
        .into_iter()
        .enumerate()
        .map(|(rank, (id, dot))| Neighbor {
            rank: rank + 1,
            sample_id: idx.sample_ids()[id],
            distance: Kernel::distance(dot),
            dot,
        })
        .collect();
    Ok(NeighborReport {
        model: model.to_string(),
        query_sample_id: match query {
            NeighborQuery::Sample(id) => Some(*id),
            NeighborQuery::Vector(_) => None,
        },
        neighbors,
        open_ms,
        query_ms,
        index_action: synced.action,
        index_points: idx.len(),
    })
}

/// Draws the query of a neighbour look-up and its first `max` neighbours as
/// an image grid, regenerating the images from their latent codes through
/// the model's black box.
pub fn draw_neighbors(
    catalog_path: &Path,
    report: &NeighborReport,
    max: usize,
    path: &Path,
) -> Result<()> {
    let mut ids: Vec<i64> = report.query_sample_id.into_iter().collect();
    ids.extend(report.neighbors.iter().take(max).map(|nb| nb.sample_id));
    if ids.is_empty() {
        return Err(Error::InvalidArgument("no neighbours to draw".into()));
    }
    let (spec, latents) = {
        let catalog = Catalog::open_read_only(catalog_path)?;
        let record = catalog.require_model(&report.model)?;
        (record.generator, catalog.latents_of(&report.model, &ids)?)
    };
    let black_box = crate::blackbox::from_spec(&spec)?;
    let images = black_box.images(latents.view())?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the black box of model {:?} ({spec}) makes no images; --grid needs an ONNX generator",
            report.model
        ))
    })?;
    let columns = (ids.len() as f64).sqrt().ceil() as usize;
    crate::grid::write_grid(
        images.view(),
        columns,
        report.query_sample_id.is_some(),
        path,
    )
}
