//! Calibration: qhull membership against an independent test, the
//! degenerate cases, rejection sampling's statistics, and both methods on
//! the simulator's planted collapse, judged by auditing again.

use modeaudit::audit::{self, AuditOptions, AuditReport, ModesOptions};
use modeaudit::calibrate::hull::{Hull, HullProblem};
use modeaudit::calibrate::{self, CalibrateOptions, Method};
use modeaudit::catalog::Catalog;
use modeaudit::compare;
use modeaudit::index::IndexParams;
use modeaudit::progress::Progress;
use modeaudit::sampling;
use modeaudit::search::SearchMode;
use ndarray::Array2;

use crate::common::Workspace;

/// Identity projection of `d` dimensions (the hull's points are given
/// already projected).
fn identity_hull(points: Vec<Vec<f64>>) -> Result<Hull, HullProblem> {
    let d = points[0].len();
    let basis = (0..d)
        .map(|i| (0..d).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    Hull::from_projected(d, vec![0.0; d], basis, points, 1e-9)
}

/// Whether `p` is a convex combination of `points`, by Caratheodory: it is
/// in the convex hull if and only if it is in the simplex of some `d + 1`
/// of the points. Solves each simplex's barycentric coordinates exactly.
/// Returns the signed margin: the smallest barycentric coordinate of the
/// best simplex (>= 0 inside).
fn brute_force_margin(points: &[Vec<f64>], p: &[f64]) -> f64 {
    let d = p.len();
    let n = points.len();
    let mut best = f64::NEG_INFINITY;
    let mut pick: Vec<usize> = (0..=d).collect();
    loop {
        // Solve sum_i l_i x_i = p, sum_i l_i = 1 for the simplex `pick`.
        let m =
            nalgebra::DMatrix::from_fn(
                d + 1,
                d + 1,
                |r, c| if r < d { points[pick[c]][r] } else { 1.0 },
            );
        let rhs = nalgebra::DVector::from_fn(d + 1, |r, _| if r < d { p[r] } else { 1.0 });
        if let Some(l) = m.lu().solve(&rhs)
            && l.iter().all(|v| v.is_finite())
        {
            best = best.max(l.iter().copied().fold(f64::INFINITY, f64::min));
        }
        // Next combination.
        let mut i = d as isize;
        while i >= 0 && pick[i as usize] == n - (d + 1) + i as usize {
            i -= 1;
        }
        if i < 0 {
            return best;
        }
        pick[i as usize] += 1;
        for j in (i as usize + 1)..=d {
            pick[j] = pick[j - 1] + 1;
        }
    }
}

#[test]
fn test_hull_membership_matches_brute_force_on_simple_shapes_and_clouds() {
    // The unit cube: membership is 0 <= x_i <= 1.
    let cube: Vec<Vec<f64>> = (0..8)
        .map(|i| (0..3).map(|b| f64::from((i >> b) & 1)).collect())
        .collect();
    let hull = identity_hull(cube).unwrap();
    let queries = modeaudit::blackbox::draw_latents(2000, 3, 1).mapv(|v| f64::from(v) * 0.6 + 0.5);
    for q in queries.outer_iter() {
        let inside = q.iter().all(|&v| (0.0..=1.0).contains(&v));
        assert_eq!(
            hull.contains_projected(q.as_slice().unwrap()),
            inside,
            "{q:?}"
        );
    }
    // The standard simplex in 4-D: x_i >= 0 and sum <= 1.
    let mut simplex = vec![vec![0.0; 4]];
    simplex.extend((0..4).map(|i| (0..4).map(|j| f64::from(u8::from(i == j))).collect()));
    let hull = identity_hull(simplex).unwrap();
    let queries = modeaudit::blackbox::draw_latents(2000, 4, 2).mapv(|v| f64::from(v).abs() * 0.4);
    for q in queries.outer_iter() {
        let inside = q.sum() <= 1.0;
        assert_eq!(
            hull.contains_projected(q.as_slice().unwrap()),
            inside,
            "{q:?}"
        );
    }
    // Random clouds in 2-D and 3-D against Caratheodory's brute force. A
    // query within 1e-7 of the boundary may go either way (the stated
    // tolerance); every other one must agree.
    for (d, n, seed) in [(2usize, 15usize, 3u64), (3, 12, 4), (3, 20, 5)] {
        let cloud = modeaudit::blackbox::draw_latents(n, d, seed);
        let points: Vec<Vec<f64>> = cloud
            .outer_iter()
            .map(|r| r.iter().map(|&v| f64::from(v)).collect())
            .collect();
        let hull = identity_hull(points.clone()).unwrap();
        let queries =
            modeaudit::blackbox::draw_latents(400, d, seed + 100).mapv(|v| f64::from(v) * 0.8);
        let mut checked = 0;
        for q in queries.outer_iter() {
            let q = q.to_vec();
            let margin = brute_force_margin(&points, &q);
            if margin.abs() < 1e-7 {
                continue;
            }
            assert_eq!(
                hull.contains_projected(&q),
                margin > 0.0,
                "cloud d={d} n={n}: {q:?} margin {margin}"
            );
            checked += 1;
        }
        assert!(checked > 350);
        // Every input point, and so every vertex, lies inside within the
        // tolerance, as do points on the segment between two vertices.
        for p in &points {
            assert!(hull.contains_projected(p));
        }
        let (a, b) = (&points[hull.vertices[0]], &points[hull.vertices[1]]);
        let mid: Vec<f64> = a.iter().zip(b).map(|(x, y)| (x + y) / 2.0).collect();
        assert!(hull.contains_projected(&mid));
    }
}

#[test]
fn test_hull_refuses_degenerate_input() {
    let err = identity_hull(vec![
        vec![0.0, 0.0, 0.0],
        vec![1.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.0],
    ])
    .unwrap_err();
    assert!(
        matches!(
            err,
            HullProblem::TooFewPoints {
                points: 3,
                needed: 4
            }
        ),
        "{err}"
    );
    // Codes in a plane of a 6-D latent space, projected to 3-D.
    let flat = Array2::from_shape_fn((50, 6), |(i, j)| match j {
        0 => (i as f32).sin(),
        1 => (i as f32 * 0.7).cos(),
        _ => 0.0,
    });
    let err = Hull::build(flat.view(), 3, 1e-9).unwrap_err();
    assert!(
        matches!(err, HullProblem::Flat { dims: 3, rank: 2 }),
        "{err}"
    );
}

#[test]
fn test_rejection_sampling_keeps_codes_inside_at_the_stated_rate() {
    // A hull around the codes with z_0 > 1 (about 16% of the prior) in 8-D.
    let z = modeaudit::blackbox::draw_latents(20_000, 8, 7);
    let rows: Vec<usize> = (0..z.nrows())
        .filter(|&i| z[[i, 0]] > 1.0)
        .take(400)
        .collect();
    let codes = z.select(ndarray::Axis(0), &rows);
    let hull = Hull::build(codes.view(), 3, 1e-9).unwrap();
    let share = hull.prior_share(100_000, 1);
    let accept = 0.25;
    let n = 40_000;
    let (kept, stats) = hull.rejection_sample(n, accept, 9);
    // Among drawn codes, those inside were kept with probability `accept`:
    // binomial with sd sqrt(p (1 - p) / m); 5 sd bound.
    let m = stats.drawn_inside as f64;
    let kept_share = stats.kept_inside as f64 / m;
    assert!(
        (kept_share - accept).abs() < 5.0 * (accept * (1.0 - accept) / m).sqrt(),
        "{kept_share}"
    );
    // Among kept codes, the share inside is share * a / (1 - share (1 - a)).
    let inside = kept
        .outer_iter()
        .filter(|r| hull.contains(r.view()))
        .count() as f64
        / n as f64;
    let expected = share * accept / (1.0 - share * (1.0 - accept));
    assert!(
        (inside - expected).abs() < 5.0 * (expected * (1.0 - expected) / n as f64).sqrt() + 0.003,
        "inside {inside}, expected {expected}"
    );
    // The acceptance rate is 1 - share (1 - a).
    let rate = n as f64 / stats.drawn as f64;
    assert!(
        (rate - (1.0 - share * (1.0 - accept))).abs() < 0.01,
        "rate {rate}"
    );
    // Reproducible under the seed.
    assert_eq!(
        hull.rejection_sample(100, accept, 9).0,
        hull.rejection_sample(100, accept, 9).0
    );
}

/// The collapsed model of the calibration tests and its collapse-free
/// reference: one planted identity owning 5% of a 32-dimensional latent
/// space. See the module documentation of `calibrate::gmm` for why a small
/// latent space: k-means localises the dense region only there.
const COLLAPSED: &str = "synthetic:latent=32,dim=128,modes=1,mass=0.05,world=21";
const HEALTHY: &str = "synthetic:latent=32,dim=128,modes=0,world=21";
const N: usize = 20_000;

fn anchors_audit(ws: &Workspace, model: &str) -> AuditReport {
    let options = AuditOptions {
        model: model.into(),
        anchors: 1000,
        theta: 0.3,
        radius: None,
        search: SearchMode::Exact,
        seed: 1,
        anchors_from: None,
        index_params: IndexParams::default(),
    };
    audit::run_audit(&ws.catalog, &options, Progress::hidden()).unwrap()
}

fn fd(ws: &Workspace, a: &str, b: &str) -> f64 {
    let c = Catalog::open_read_only(&ws.catalog).unwrap();
    let (_, x) = c.embeddings(a, 0).unwrap();
    let (_, y) = c.embeddings(b, 0).unwrap();
    compare::frechet_distance(x.view(), y.view())
}

#[test]
fn test_both_methods_reduce_the_planted_collapse() {
    let ws = Workspace::new();
    sampling::sample(
        &ws.catalog,
        "collapsed",
        COLLAPSED,
        N,
        Some(1),
        Progress::hidden(),
    )
    .unwrap();
    sampling::sample(
        &ws.catalog,
        "healthy",
        HEALTHY,
        N,
        Some(2),
        Progress::hidden(),
    )
    .unwrap();
    let before = anchors_audit(&ws, "collapsed");
    let modes = audit::find_modes(
        &ws.catalog,
        &ModesOptions {
            model: "collapsed".into(),
            top: 1,
            theta: 0.3,
            radius: None,
            seeds: 64,
            per_seed: 16,
            index_params: IndexParams::default(),
        },
        Progress::hidden(),
    )
    .unwrap();
    let fd_before = fd(&ws, "collapsed", "healthy");
    for method in [Method::Gmm, Method::Hull] {
        let options = CalibrateOptions {
            model: "collapsed".into(),
            method,
            audit_id: Some(modes.audit_id),
            mode: None,
            radius: None,
            seed: 0,
            components: 50,
            covariance: calibrate::gmm::CovariancePolicy::Auto,
            space: calibrate::gmm::Space::Mode,
            target_rate: None,
            points: None,
            dims: 4,
            tolerance: 1e-9,
        };
        let report = calibrate::fit(&ws.catalog, &options).unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let target = format!("calibrated-{}", method.as_str());
        let s = sampling::sample_calibrated(
            &ws.catalog,
            &target,
            report.calibration_id,
            N,
            Some(3),
            &modeaudit::sampling::SampleOptions::default(),
            Progress::hidden(),
        )
        .unwrap();
        assert_eq!(s.calibration_id, Some(report.calibration_id));
        let after = anchors_audit(&ws, &target);
        let cmp = compare::compare(&ws.catalog, before.audit_id, after.audit_id).unwrap();
        let fd_after = fd(&ws, &target, "healthy");
        eprintln!(
            "{}: mode rate {:.5} -> {:.5} ({:.3}x), worst anchor {} -> {}, MCCS mean {:.4} -> {:.4}, \
             FD to healthy {fd_before:.5} -> {fd_after:.5}, acceptance {:.4}",
            method.as_str(),
            cmp.before.mode_rate,
            cmp.after.mode_rate,
            cmp.mode_rate_ratio,
            before.worst.unwrap().score.neighbors,
            after.worst.unwrap().score.neighbors,
            before.population.mean,
            after.population.mean,
            report.acceptance_rate
        );
        // Stated factor: the targeted mode's neighbour rate at least halves,
        // and so does the worst-case count of random anchors (equal sizes).
        assert!(
            cmp.mode_rate_ratio <= 0.5,
            "{}: mode rate ratio {}",
            method.as_str(),
            cmp.mode_rate_ratio
        );
        let (w0, w1) = (
            before.worst.unwrap().score.neighbors,
            after.worst.unwrap().score.neighbors,
        );
        assert!(
            2 * w1 <= w0,
            "{}: worst anchor {w0} -> {w1}",
            method.as_str()
        );
        // The mean MCCS does not rise (beyond two standard errors of noise).
        let slack = 2.0 * (before.population.std_error + after.population.std_error);
        assert!(
            after.population.mean <= before.population.mean + slack,
            "{}: mean MCCS rose",
            method.as_str()
        );
        // The output distribution ends closer to the collapse-free model of
        // the same world (the collapsed one with its planted region healed)
        // than the collapsed model was: by at least half (measured: gmm
        // 0.041 -> 0.002, hull 0.041 -> 0.012; two independent collapse-free
        // sets of this size are 0.0004 apart).
        assert!(
            fd_after < 0.5 * fd_before,
            "{}: FD to the collapse-free model {fd_before} -> {fd_after}",
            method.as_str()
        );
        // The calibration is stored with its parameters and drawn again alike.
        let (record, fitted) = calibrate::load(&ws.catalog, report.calibration_id).unwrap();
        assert_eq!(record.calibration.method, method.as_str());
        assert_eq!(fitted.draw(50, 4).0, fitted.draw(50, 4).0);
    }
}

#[test]
fn test_calibrate_errors_are_clear() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "h",
        "--generator",
        HEALTHY,
        "--n",
        "3000",
        "--seed",
        "1",
    ]);
    let err = ws.fails(&["calibrate", "--model", "h", "--method", "gmm"]);
    assert!(err.contains("no audit yet"), "{err}");
    ws.ok(&[
        "audit",
        "--model",
        "h",
        "--anchors",
        "200",
        "--search",
        "exact",
    ]);
    // A hull around the sparsest anchor: nothing denser to thin out.
    let sparsest = ws.json(&[
        "sql",
        "SELECT sample_id FROM anchor_scores ORDER BY neighbors, sample_id LIMIT 1",
    ])["rows"][0][0]
        .to_string();
    let err = ws.fails(&[
        "calibrate",
        "--model",
        "h",
        "--method",
        "hull",
        "--mode",
        &sparsest,
        "--points",
        "40",
        "--dims",
        "3",
    ]);
    assert!(
        err.contains("not below 1") || err.contains("no neighbour"),
        "{err}"
    );
    let err = ws.fails(&[
        "calibrate",
        "--model",
        "h",
        "--method",
        "hull",
        "--points",
        "3",
        "--dims",
        "4",
    ]);
    assert!(err.contains("cannot make a hull"), "{err}");
    let err = ws.fails(&[
        "calibrate",
        "--model",
        "h",
        "--method",
        "gmm",
        "--components",
        "0",
    ]);
    assert!(err.contains("--components"), "{err}");
    let err = ws.fails(&["sample", "--model", "x", "--calibration", "42", "--n", "10"]);
    assert!(err.contains("no calibration 42"), "{err}");
    // Imported samples have no latent codes to reshape.
    let e = ws.path("e.npy");
    crate::common::write_npy(&e, &modeaudit::blackbox::draw_latents(100, 8, 1));
    ws.ok(&[
        "ingest",
        "--model",
        "imp",
        "--embeddings",
        e.to_str().unwrap(),
    ]);
    ws.ok(&[
        "audit",
        "--model",
        "imp",
        "--anchors",
        "10",
        "--search",
        "exact",
    ]);
    let err = ws.fails(&["calibrate", "--model", "imp", "--method", "gmm"]);
    assert!(err.contains("without latent codes"), "{err}");
}
