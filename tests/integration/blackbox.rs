//! External programs as black boxes (`cmd:`), with the test program
//! `tests/programs/embedder.py`: answers checked against the codes, and
//! every failure mode leaves the catalog as it was.

use modeaudit::catalog::Catalog;
use ndarray::Array2;

use crate::common::Workspace;

/// The `--generator` value running the test program with its sizes and mode.
fn program(latent: usize, embed: usize, mode: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/embedder.py");
    format!("cmd:python3 {script} {latent} {embed} {mode}")
}

/// Sample count of a model, 0 when the model does not exist.
fn stored(ws: &Workspace, model: &str) -> usize {
    let out = ws.json(&[
        "sql",
        &format!("SELECT count(*) FROM samples WHERE model = '{model}'"),
    ]);
    out["rows"][0][0].as_u64().unwrap() as usize
}

#[test]
fn test_external_program_embeds_in_batches() {
    let ws = Workspace::new();
    let spec = program(8, 6, "ok");
    let report = ws.json(&[
        "sample",
        "--model",
        "ext",
        "--generator",
        &spec,
        "--n",
        "250",
        "--batch",
        "100",
        "--seed",
        "4",
    ]);
    assert_eq!(report["n"], 250);
    let catalog = Catalog::open_read_only(&ws.catalog).unwrap();
    let model = catalog.require_model("ext").unwrap();
    assert_eq!((model.latent_dim, model.embed_dim), (8, 6));
    let (_, z) = catalog.latents("ext", 0).unwrap();
    let (_, e) = catalog.embeddings("ext", 0).unwrap();
    // The program's map: e_j = sum_i z_i cos(i + j), then normalised here.
    let w = Array2::from_shape_fn((8, 6), |(i, j)| ((i + j) as f64).cos() as f32);
    let mut want = z.dot(&w);
    modeaudit::vector::normalize_rows(want.view_mut(), "expected").unwrap();
    let worst = (&want - &e).iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(worst < 1e-5, "largest deviation {worst}");
}

#[test]
fn test_external_program_failures_leave_the_catalog_as_it_was() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "ext",
        "--generator",
        &program(8, 6, "ok"),
        "--n",
        "50",
        "--seed",
        "1",
    ]);
    let cases: &[(&str, &str, &str)] = &[
        ("die", "5", "exited with"),
        ("hang", "2", "no answer"),
        ("short", "5", "expected 100 x 6"),
        ("garbage", "5", "not a .npy array"),
        ("nogreet", "1", "no greeting within"),
        ("badgreet", "5", "greeting"),
    ];
    for (mode, timeout, message) in cases {
        let spec = program(8, 6, mode);
        // A model of its own per case (the generator text differs), so that
        // nothing of it may exist afterwards.
        let model = format!("bad-{mode}");
        let err = ws.fails(&[
            "sample",
            "--model",
            &model,
            "--generator",
            &spec,
            "--n",
            "300",
            "--batch",
            "100",
            "--timeout",
            timeout,
        ]);
        assert!(err.contains(message), "{mode}: {err}");
        assert_eq!(
            stored(&ws, &model),
            0,
            "{mode}: nothing of the failed batch is stored"
        );
        let models = ws.json(&[
            "sql",
            &format!("SELECT count(*) FROM models WHERE model = '{model}'"),
        ]);
        assert_eq!(
            models["rows"][0][0], 0,
            "{mode}: no empty model left behind"
        );
    }
    assert_eq!(stored(&ws, "ext"), 50, "the earlier batch is intact");
}
