//! Index answers against exact scans, on seeded simulator data.
//!
//! Stated tolerances: per-anchor neighbour counts from the index have count
//! recall (sum of min(hnsw, exact) over sum of exact) of at least 0.99, never
//! count a sample the exact scan does not (both use the same exact test),
//! and the worst-case anchor is the same sample.

use modeaudit::audit::{self, AuditOptions, ModesOptions};
use modeaudit::catalog::Catalog;
use modeaudit::index::{IndexParams, ModelIndex};
use modeaudit::progress::Progress;
use modeaudit::sampling;
use modeaudit::score::Kernel;
use modeaudit::search::{self, SearchMode, exact_sums};

use crate::common::Workspace;

const WORLD: &str = "synthetic:latent=128,dim=128,modes=2,mass=0.03,world=11";

fn audit(ws: &Workspace, search: SearchMode) -> audit::AuditReport {
    let options = AuditOptions {
        model: "m".into(),
        anchors: 600,
        theta: 0.3,
        radius: None,
        search,
        seed: 3,
        anchors_from: None,
        index_params: IndexParams::default(),
    };
    audit::run_audit(&ws.catalog, &options, Progress::hidden()).unwrap()
}

#[test]
fn test_hnsw_counts_match_exact_within_tolerance() {
    let ws = Workspace::new();
    sampling::sample(&ws.catalog, "m", WORLD, 30_000, Some(1), Progress::hidden()).unwrap();
    let exact = audit(&ws, SearchMode::Exact);
    let hnsw = audit(&ws, SearchMode::Hnsw);
    assert_eq!(hnsw.search, SearchMode::Hnsw);
    let mut exact_rows = exact.anchors.clone();
    let mut hnsw_rows = hnsw.anchors.clone();
    exact_rows.sort_by_key(|a| a.sample_id);
    hnsw_rows.sort_by_key(|a| a.sample_id);
    let (mut found, mut total) = (0u64, 0u64);
    for (e, h) in exact_rows.iter().zip(&hnsw_rows) {
        assert_eq!(e.sample_id, h.sample_id, "same anchors for the same seed");
        assert!(
            h.score.neighbors <= e.score.neighbors,
            "hnsw counted a sample exact did not"
        );
        assert!(h.score.similarity_sum <= e.score.similarity_sum + 1e-9);
        found += h.score.neighbors;
        total += e.score.neighbors;
    }
    let recall = found as f64 / total as f64;
    eprintln!("hnsw count recall {recall:.5} over {total} neighbours");
    assert!(recall >= 0.99, "count recall {recall}");
    assert_eq!(
        hnsw.worst.unwrap().sample_id,
        exact.worst.unwrap().sample_id
    );
    assert!((hnsw.population.mean - exact.population.mean).abs() < 0.01);

    // The cost model's premise: a graph query visits a number of points that
    // follows the share of samples within walking distance. Its estimate must
    // hold to a factor of 3 here, far from the 512-dimensional data it was
    // fitted on (128 dimensions, two planted modes).
    let catalog = Catalog::open(&ws.catalog).unwrap();
    let (ids, embeddings) = catalog.embeddings("m", 0).unwrap();
    drop(catalog);
    let index =
        modeaudit::index::sync(&ws.catalog, "m", IndexParams::default(), Progress::hidden())
            .unwrap()
            .index;
    let kernel = Kernel::new(0.3, 0.3).unwrap();
    let pilot: Vec<usize> = (0..64).map(|i| i * 467).collect();
    let measured = index.mean_visits(&pilot, &kernel);
    let fraction = search::walk_fraction(embeddings.view(), &pilot, &kernel);
    let estimated = search::estimated_visits(fraction, embeddings.nrows());
    eprintln!("visits per query: measured {measured:.0}, estimated {estimated:.0}");
    assert!(
        measured / 3.0 <= estimated && estimated <= measured * 3.0,
        "measured {measured:.0} visits per query, estimated {estimated:.0}"
    );
    // Nearest neighbours of members (what `neighbors --id --k` answers)
    // against a brute-force ranking: recall at 20 of at least 0.99 over 100
    // anchors and the worst-case mode, whose clump of near-duplicates the
    // entry point's descent alone can miss.
    let mut queries: Vec<usize> = exact_rows
        .iter()
        .take(100)
        .map(|a| index.sample_ids().binary_search(&a.sample_id).unwrap())
        .collect();
    queries.push(
        index
            .sample_ids()
            .binary_search(&exact.worst.unwrap().sample_id)
            .unwrap(),
    );
    let mut scratch = modeaudit::index::radius::Scratch::new(index.len());
    let (mut hits, mut wanted) = (0usize, 0usize);
    for &q in &queries {
        let query = index.vector(q);
        let mut brute: Vec<(usize, f64)> = (0..index.len())
            .filter(|&i| i != q)
            .map(|i| (i, modeaudit::vector::dot_exact(query, index.vector(i))))
            .collect();
        brute.sort_by(|a, b| b.1.total_cmp(&a.1));
        let truth: std::collections::HashSet<usize> = brute[..20].iter().map(|p| p.0).collect();
        let found = index.nearest(query, Some(q), 21, 64, &mut scratch);
        hits += found.iter().filter(|(id, _)| truth.contains(id)).count();
        wanted += 20;
    }
    let knn_recall = hits as f64 / wanted as f64;
    eprintln!("nearest 20: recall {knn_recall:.4}");
    assert!(knn_recall >= 0.99, "nearest-neighbour recall {knn_recall}");

    // A threaded build races and gives another graph on each run; its
    // counts must hold the same stated recall.
    let threaded = ModelIndex::build(
        embeddings.view(),
        ids.clone(),
        IndexParams {
            build_threads: 2,
            ..IndexParams::default()
        },
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    let rows: Vec<usize> = exact_rows
        .iter()
        .map(|a| ids.binary_search(&a.sample_id).unwrap())
        .collect();
    let sums = threaded.radius_sums_many(&rows, &kernel, &indicatif::ProgressBar::hidden());
    let found: u64 = sums.iter().map(|s| s.neighbors).sum();
    let threaded_recall = found as f64 / total as f64;
    eprintln!("threaded build: hnsw count recall {threaded_recall:.5}");
    assert!(
        sums.iter()
            .zip(&exact_rows)
            .all(|(h, e)| h.neighbors <= e.score.neighbors),
        "a threaded graph counted a sample exact did not"
    );
    assert!(
        threaded_recall >= 0.99,
        "threaded build count recall {threaded_recall}"
    );

    // And `auto` takes the exact scan here, saying why.
    let auto = audit(&ws, SearchMode::Auto);
    assert_eq!(auto.search, SearchMode::Exact);
    assert!(
        auto.search_reason.contains("walking distance"),
        "{}",
        auto.search_reason
    );
}

#[test]
fn test_modes_find_the_exhaustive_maximum_and_distinct_planted_identities() {
    let ws = Workspace::new();
    sampling::sample(&ws.catalog, "m", WORLD, 20_000, Some(2), Progress::hidden()).unwrap();
    let options = ModesOptions {
        model: "m".into(),
        top: 3,
        theta: 0.3,
        radius: None,
        seeds: 64,
        per_seed: 16,
        index_params: IndexParams::default(),
    };
    let modes = audit::find_modes(&ws.catalog, &options, Progress::hidden()).unwrap();
    // Exhaustive: every sample counted against every other.
    let (ids, e) = Catalog::open(&ws.catalog)
        .unwrap()
        .embeddings("m", 0)
        .unwrap();
    let kernel = Kernel::new(0.3, 0.3).unwrap();
    let exclude: Vec<Option<usize>> = (0..ids.len()).map(Some).collect();
    let all = exact_sums(
        e.view(),
        0,
        e.view(),
        &exclude,
        &kernel,
        &indicatif::ProgressBar::hidden(),
    );
    let best = all.iter().map(|s| s.neighbors).max().unwrap();
    let best_id = ids[all.iter().position(|s| s.neighbors == best).unwrap()];
    let worst = modes.worst.unwrap();
    eprintln!(
        "modes: {:?}",
        modes
            .anchors
            .iter()
            .map(|a| (a.sample_id, a.score.neighbors))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        worst.score.neighbors, best,
        "the top mode has the exhaustive maximum count"
    );
    // Several samples of a collapsed identity can share the maximum count;
    // the search breaks ties among the candidates it counted (smallest id),
    // which need not include the smallest id of all. It must be the same
    // region: within the radius of the exhaustive winner.
    let row = |id: i64| ids.binary_search(&id).unwrap();
    let dot = modeaudit::vector::dot_exact(
        e.row(row(worst.sample_id)).as_slice().unwrap(),
        e.row(row(best_id)).as_slice().unwrap(),
    );
    assert!(
        kernel.is_neighbor(dot),
        "the top mode is the exhaustive winner's region"
    );
    // Both planted identities are among the top modes, and no mode lies
    // within the radius of a better one (a mode's own neighbours do not
    // come back). Where the two planted regions overlap, codes blend both
    // identities and are the densest of all, so one identity can hold two
    // modes farther apart than the radius.
    let spec = Catalog::open(&ws.catalog)
        .unwrap()
        .require_model("m")
        .unwrap()
        .generator;
    let sim = modeaudit::blackbox::synthetic::Simulator::from_options(
        &spec,
        spec.strip_prefix("synthetic:").unwrap(),
    )
    .unwrap();
    let (_, z) = Catalog::open(&ws.catalog).unwrap().latents("m", 0).unwrap();
    let planted: Vec<Option<usize>> = modes
        .anchors
        .iter()
        .map(|a| sim.planted_mode(z.row(row(a.sample_id))))
        .collect();
    assert!(
        planted.contains(&Some(0)) && planted.contains(&Some(1)),
        "{planted:?}"
    );
    for (i, a) in modes.anchors.iter().enumerate() {
        for b in &modes.anchors[..i] {
            let dot = modeaudit::vector::dot_exact(
                e.row(row(a.sample_id)).as_slice().unwrap(),
                e.row(row(b.sample_id)).as_slice().unwrap(),
            );
            assert!(
                !kernel.is_neighbor(dot),
                "modes {} and {} are within the radius of each other",
                a.sample_id,
                b.sample_id
            );
        }
    }
}
