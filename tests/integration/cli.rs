//! The command line as a user runs it.

use crate::common::{Workspace, write_npy};

/// A small simulator world: fast to sample and audit.
const SMALL: &str = "synthetic:latent=64,dim=32,modes=1,mass=0.05,world=3";

#[test]
fn test_sample_audit_models_sql_round_trip() {
    let ws = Workspace::new();
    let s = ws.json(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "3000",
        "--seed",
        "1",
    ]);
    assert_eq!(s["n"], 3000);
    assert_eq!(s["first_sample_id"], 1);
    // A second batch appends, with a derived seed.
    let s2 = ws.json(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "1000",
    ]);
    assert_eq!(s2["first_sample_id"], 3001);
    assert_eq!(s2["model_samples"], 4000);

    let a = ws.json(&[
        "audit",
        "--model",
        "m",
        "--anchors",
        "200",
        "--search",
        "exact",
        "--seed",
        "5",
    ]);
    assert_eq!(a["n_samples"], 4000);
    assert_eq!(a["n_anchors"], 200);
    assert_eq!(a["search"], "exact");
    let anchors = a["anchors"].as_array().unwrap();
    assert_eq!(anchors.len(), 200);
    // Worst first, and the summary's worst is the first anchor.
    assert_eq!(a["worst"]["sample_id"], anchors[0]["sample_id"]);
    let counts: Vec<u64> = anchors
        .iter()
        .map(|x| x["neighbors"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]));
    // Below the paper's levels: both remarks are printed.
    assert_eq!(a["remarks"].as_array().unwrap().len(), 2);

    // The same seed gives the same anchors and scores.
    let again = ws.json(&[
        "audit",
        "--model",
        "m",
        "--anchors",
        "200",
        "--search",
        "exact",
        "--seed",
        "5",
    ]);
    assert_eq!(again["anchors"], a["anchors"]);
    assert_eq!(again["population"], a["population"]);

    let models = ws.json(&["models"]);
    assert_eq!(models["models"][0]["model"], "m");
    assert_eq!(models["models"][0]["n_samples"], 4000);
    assert_eq!(models["models"][0]["n_batches"], 2);
    assert_eq!(models["models"][0]["latest_audit_id"], again["audit_id"]);

    let q = ws.json(&[
        "sql",
        "SELECT count(*) AS n, max(mccs) AS worst FROM anchor_scores WHERE audit_id = 1",
    ]);
    assert_eq!(q["columns"], serde_json::json!(["n", "worst"]));
    assert_eq!(q["rows"][0][0], 200);

    // The human table names the worst-case mode.
    let table = ws.ok(&[
        "audit",
        "--model",
        "m",
        "--anchors",
        "50",
        "--search",
        "exact",
        "--seed",
        "6",
    ]);
    assert!(table.contains("worst-case mode"), "{table}");
}

#[test]
fn test_sql_is_read_only() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "100",
        "--seed",
        "1",
    ]);
    let err = ws.fails(&["sql", "DELETE FROM samples"]);
    assert!(
        err.to_lowercase().contains("read-only") || err.contains("read only"),
        "{err}"
    );
    let left = ws.json(&["sql", "SELECT count(*) FROM samples"]);
    assert_eq!(left["rows"][0][0], 100);
}

#[test]
fn test_sql_examples_all_run() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "a",
        "--generator",
        SMALL,
        "--n",
        "2000",
        "--seed",
        "1",
    ]);
    ws.ok(&[
        "sample",
        "--model",
        "b",
        "--generator",
        "synthetic:latent=64,dim=32,modes=0,world=3",
        "--n",
        "2000",
        "--seed",
        "2",
    ]);
    ws.ok(&[
        "audit",
        "--model",
        "a",
        "--anchors",
        "100",
        "--search",
        "exact",
    ]);
    ws.ok(&[
        "audit",
        "--model",
        "b",
        "--anchors",
        "100",
        "--search",
        "exact",
    ]);
    ws.ok(&["modes", "--model", "a", "--top", "3"]);
    let examples = include_str!("../../sql/examples.sql");
    let statements: Vec<&str> = examples
        .split(";\n")
        .map(|s| s.trim())
        .filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
        })
        .collect();
    assert!(statements.len() >= 5);
    for statement in statements {
        let result = ws.json(&["sql", statement]);
        assert!(
            !result["rows"].as_array().unwrap().is_empty(),
            "no rows from:\n{statement}"
        );
    }
    // R_obs holds denser anchors than R_ref on the collapsed model.
    let regions = ws.json(&[
        "sql",
        "SELECT region, mccs_mean FROM study_regions WHERE audit_id = 1 ORDER BY region",
    ]);
    let obs = regions["rows"][0][1].as_f64().unwrap();
    let reference = regions["rows"][1][1].as_f64().unwrap();
    assert!(
        obs > reference,
        "R_obs {obs} should exceed R_ref {reference}"
    );
}

#[test]
fn test_reused_seed_is_refused_and_nothing_is_added() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "100",
        "--seed",
        "9",
    ]);
    let err = ws.fails(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "100",
        "--seed",
        "9",
    ]);
    assert!(err.contains("seed 9 was already used"), "{err}");
    let n = ws.json(&["sql", "SELECT count(*) FROM samples"]);
    assert_eq!(n["rows"][0][0], 100);
}

#[test]
fn test_clear_errors_for_bad_input() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "500",
        "--seed",
        "1",
    ]);

    let err = ws.fails(&["audit", "--model", "nope", "--anchors", "10"]);
    assert!(err.contains("no model named \"nope\""), "{err}");

    let err = ws.fails(&["audit", "--model", "m", "--anchors", "501"]);
    assert!(
        err.contains("between 1 and the number of samples (500)"),
        "{err}"
    );

    let err = ws.fails(&[
        "sample",
        "--model",
        "m",
        "--generator",
        "synthetic:latent=64,dim=16",
        "--n",
        "10",
    ]);
    assert!(err.contains("exists with generator"), "{err}");

    let err = ws.fails(&[
        "sample",
        "--model",
        "x",
        "--generator",
        "gan:foo",
        "--n",
        "10",
    ]);
    assert!(err.contains("unknown kind"), "{err}");

    let err = ws.fails(&["audit", "--model", "m", "--anchors", "10", "--theta", "1.5"]);
    assert!(err.contains("theta must be a distance in (0, 1]"), "{err}");

    // A query vector of the wrong dimension, one with NaN, and a corrupt file.
    let wrong = ws.path("wrong.npy");
    write_npy(&wrong, &ndarray::Array2::<f32>::ones((1, 7)));
    let err = ws.fails(&[
        "neighbors",
        "--model",
        "m",
        "--vector",
        wrong.to_str().unwrap(),
    ]);
    assert!(err.contains("expected dimension 32, got 7"), "{err}");

    let nan = ws.path("nan.npy");
    let mut v = ndarray::Array2::<f32>::ones((1, 32));
    v[[0, 3]] = f32::NAN;
    write_npy(&nan, &v);
    let err = ws.fails(&[
        "neighbors",
        "--model",
        "m",
        "--vector",
        nan.to_str().unwrap(),
    ]);
    assert!(
        err.contains("row 0 holds NaN") && err.contains("nan.npy"),
        "{err}"
    );

    let corrupt = ws.path("corrupt.npy");
    std::fs::write(&corrupt, b"\x93NUMPY garbage").unwrap();
    let err = ws.fails(&[
        "neighbors",
        "--model",
        "m",
        "--vector",
        corrupt.to_str().unwrap(),
    ]);
    assert!(err.contains("corrupt.npy"), "{err}");

    let err = ws.fails(&["neighbors", "--model", "m", "--id", "99999"]);
    assert!(err.contains("no sample 99999"), "{err}");

    // None of this changed the catalog.
    let n = ws.json(&["sql", "SELECT count(*) FROM samples"]);
    assert_eq!(n["rows"][0][0], 500);
}

#[test]
fn test_neighbors_by_id_radius_and_vector_agree() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "3000",
        "--seed",
        "1",
    ]);
    let knn = ws.json(&["neighbors", "--model", "m", "--id", "17", "--k", "5"]);
    let list = knn["neighbors"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    assert!(
        list.iter().all(|n| n["sample_id"] != 17),
        "the query is not its own neighbour"
    );
    let d: Vec<f64> = list
        .iter()
        .map(|n| n["distance"].as_f64().unwrap())
        .collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(knn["index_action"], "built");

    // Every neighbour within the radius, checked against SQL's own scan.
    let ball = ws.json(&["neighbors", "--model", "m", "--id", "17", "--radius", "0.2"]);
    let sql = ws.json(&[
        "sql",
        "SELECT count(*) FROM samples x, samples a WHERE a.sample_id = 17 AND x.sample_id <> 17 \
         AND list_inner_product(x.embedding, a.embedding) >= cos(pi() * 0.2)",
    ]);
    let want = sql["rows"][0][0].as_u64().unwrap() as usize;
    let got = ball["neighbors"].as_array().unwrap().len();
    assert!(
        got <= want && got as f64 >= 0.99 * want as f64,
        "index {got}, scan {want}"
    );
    assert_eq!(ball["index_action"], "loaded");

    // A vector query for sample 17's embedding finds sample 17 first.
    let emb = ws.json(&["sql", "SELECT embedding FROM samples WHERE sample_id = 17"]);
    let values: Vec<f32> = emb["rows"][0][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let path = ws.path("q.npy");
    write_npy(
        &path,
        &ndarray::Array2::from_shape_vec((1, values.len()), values).unwrap(),
    );
    let by_vector = ws.json(&[
        "neighbors",
        "--model",
        "m",
        "--vector",
        path.to_str().unwrap(),
        "--k",
        "3",
    ]);
    assert_eq!(by_vector["neighbors"][0]["sample_id"], 17);
    assert!(by_vector["neighbors"][0]["distance"].as_f64().unwrap() < 1e-3);
}

#[test]
fn test_index_catches_up_and_rebuilds_when_stale() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "1000",
        "--seed",
        "1",
    ]);
    let built = ws.json(&["index", "--model", "m"]);
    assert_eq!(built["action"], "built");
    assert_eq!(built["points"], 1000);
    assert_eq!(ws.json(&["index", "--model", "m"])["action"], "loaded");
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "500",
        "--seed",
        "2",
    ]);
    let caught = ws.json(&["index", "--model", "m"]);
    assert_eq!(caught["action"]["caught_up"]["inserted"], 500);
    assert_eq!(caught["points"], 1500);
    // Corrupt the graph: the index is rebuilt from the catalog.
    let dir = modeaudit::index::model_index_dir(&ws.catalog, "m");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("current.json")).unwrap()).unwrap();
    let graph = dir
        .join(format!("gen-{}", manifest["generation"]))
        .join("graph.hnsw.graph");
    std::fs::write(&graph, b"not a graph").unwrap();
    let rebuilt = ws.json(&["index", "--model", "m"]);
    assert_eq!(rebuilt["action"], "built");
    assert_eq!(rebuilt["points"], 1500);
}

#[test]
fn test_demo_finds_the_planted_identity() {
    let ws = Workspace::new();
    let dir = ws.path("demo");
    let out = ws.json(&[
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--n",
        "20000",
        "--anchors",
        "500",
    ]);
    assert_eq!(out["worst_mode_is_planted"], true);
    let collapsed = &out["audits"][0];
    let healthy = &out["audits"][1];
    assert!(collapsed["worst"]["neighbors"].as_u64() > healthy["worst"]["neighbors"].as_u64());
}
