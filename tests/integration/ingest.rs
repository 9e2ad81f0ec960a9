//! `ingest` and `export`: round trips through .npy, .npz and Parquet, and
//! every bad input refused with the file and row named, leaving the catalog
//! as it was.

use ndarray::{Array1, Array2};

use crate::common::{Workspace, write_npy};

/// Seeded random rows (not normalised).
fn rows(n: usize, d: usize, seed: u64) -> Array2<f32> {
    modeaudit::blackbox::draw_latents(n, d, seed).mapv(|x| x * 3.0)
}

fn unit(m: &Array2<f32>) -> Array2<f32> {
    let mut m = m.clone();
    modeaudit::vector::normalize_rows(m.view_mut(), "t").unwrap();
    m
}

fn close(a: &Array2<f32>, b: &Array2<f32>, tol: f32) -> bool {
    a.dim() == b.dim() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

fn count(ws: &Workspace) -> u64 {
    ws.json(&["sql", "SELECT count(*) FROM samples"])["rows"][0][0]
        .as_u64()
        .unwrap()
}

/// Writes a Parquet file from a SQL query, with DuckDB.
fn parquet(path: &std::path::Path, query: &str) {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    conn.execute_batch(&format!(
        "COPY ({query}) TO '{}' (FORMAT parquet)",
        path.display()
    ))
    .unwrap();
}

#[test]
fn test_ingest_npy_npz_and_parquet_then_export_round_trip() {
    let ws = Workspace::new();
    let e = rows(300, 16, 1);
    let z = rows(300, 8, 2);
    write_npy(&ws.path("e.npy"), &e);
    write_npy(&ws.path("z.npy"), &z);
    let r = ws.json(&[
        "ingest",
        "--model",
        "m",
        "--embeddings",
        ws.path("e.npy").to_str().unwrap(),
        "--latents",
        ws.path("z.npy").to_str().unwrap(),
    ]);
    assert_eq!(
        (
            r["n"].as_u64(),
            r["embed_dim"].as_u64(),
            r["latent_dim"].as_u64()
        ),
        (Some(300), Some(16), Some(8))
    );

    // An .npz holding both, found by their conventional names.
    let npz = ws.path("both.npz");
    {
        let mut w = ndarray_npy::NpzWriter::new_compressed(std::fs::File::create(&npz).unwrap());
        w.add_array("embeddings", &rows(100, 16, 3)).unwrap();
        w.add_array("latents", &rows(100, 8, 4).mapv(f64::from))
            .unwrap();
        w.finish().unwrap();
    }
    let npz_arg = npz.to_str().unwrap();
    ws.ok(&[
        "ingest",
        "--model",
        "m",
        "--embeddings",
        npz_arg,
        "--latents",
        npz_arg,
    ]);

    // Parquet with list columns of doubles, read by DuckDB's own reader.
    let pq = ws.path("more.parquet");
    parquet(
        &pq,
        "SELECT i, [cos(i + j) FOR j IN range(16)] AS embedding, [sin(i * j) + 2 FOR j IN range(8)] AS latent FROM range(50) t(i)",
    );
    let pq_arg = pq.to_str().unwrap();
    ws.ok(&[
        "ingest",
        "--model",
        "m",
        "--embeddings",
        pq_arg,
        "--latents",
        pq_arg,
    ]);
    assert_eq!(count(&ws), 450);

    // The stored rows are the normalised inputs, in order.
    let (_, stored) = modeaudit::catalog::Catalog::open_read_only(&ws.catalog)
        .unwrap()
        .embeddings("m", 0)
        .unwrap();
    let first = stored.slice(ndarray::s![..300, ..]).to_owned();
    assert!(close(&first, &unit(&e), 1e-6));
    let (_, latents) = modeaudit::catalog::Catalog::open_read_only(&ws.catalog)
        .unwrap()
        .latents("m", 0)
        .unwrap();
    assert_eq!(latents.slice(ndarray::s![..300, ..]), z);

    // Export as .npy: the same arrays come back, with the latest audit.
    ws.ok(&[
        "audit",
        "--model",
        "m",
        "--anchors",
        "40",
        "--search",
        "exact",
    ]);
    let out = ws.path("out");
    let report = ws.json(&["export", "--model", "m", "--out", out.to_str().unwrap()]);
    assert_eq!(report["n_samples"], 450);
    assert_eq!(report["n_anchors"], 40);
    let ids: Array1<i64> = ndarray_npy::read_npy(out.join("sample_ids.npy")).unwrap();
    assert_eq!(ids.len(), 450);
    let back: Array2<f32> = ndarray_npy::read_npy(out.join("embeddings.npy")).unwrap();
    assert_eq!(back, stored);
    let zback: Array2<f32> = ndarray_npy::read_npy(out.join("latents.npy")).unwrap();
    assert_eq!(zback, latents);
    let scores: Array2<f64> = ndarray_npy::read_npy(out.join("anchor_scores.npy")).unwrap();
    assert_eq!(scores.dim(), (40, 4));
    assert!(
        scores
            .column(0)
            .windows(2)
            .into_iter()
            .all(|w| w[0] >= w[1]),
        "worst first"
    );

    // Export as Parquet, read back by DuckDB, and ingest again into a new
    // model: the same vectors.
    let pout = ws.path("pout");
    ws.ok(&[
        "export",
        "--model",
        "m",
        "--out",
        pout.to_str().unwrap(),
        "--format",
        "parquet",
    ]);
    let samples = pout.join("samples.parquet");
    ws.ok(&[
        "ingest",
        "--model",
        "copy",
        "--embeddings",
        samples.to_str().unwrap(),
        "--latents",
        samples.to_str().unwrap(),
    ]);
    let (_, copied) = modeaudit::catalog::Catalog::open_read_only(&ws.catalog)
        .unwrap()
        .embeddings("copy", 0)
        .unwrap();
    assert!(close(&copied, &stored, 1e-6));
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let n: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM '{}'",
                pout.join("anchor_scores.parquet").display()
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 40);
}

#[test]
fn test_ingest_refuses_bad_input_naming_file_and_row() {
    let ws = Workspace::new();
    let good = rows(20, 6, 1);
    write_npy(&ws.path("good.npy"), &good);
    ws.ok(&[
        "ingest",
        "--model",
        "m",
        "--embeddings",
        ws.path("good.npy").to_str().unwrap(),
    ]);
    let before = count(&ws);
    let fails = |args: &[&str]| ws.fails(args);
    let arg = |name: &str| ws.path(name).to_str().unwrap().to_string();

    let mut nan = rows(10, 6, 2);
    nan[[7, 2]] = f32::NAN;
    write_npy(&ws.path("nan.npy"), &nan);
    let err = fails(&["ingest", "--model", "m", "--embeddings", &arg("nan.npy")]);
    assert!(
        err.contains("nan.npy") && err.contains("row 7 holds NaN"),
        "{err}"
    );

    let mut inf = rows(10, 6, 3);
    inf[[4, 0]] = f32::INFINITY;
    write_npy(&ws.path("inf.npy"), &inf);
    let err = fails(&["ingest", "--model", "m", "--embeddings", &arg("inf.npy")]);
    assert!(err.contains("row 4 holds an infinite value"), "{err}");

    let mut zero = rows(10, 6, 4);
    zero.row_mut(9).fill(0.0);
    write_npy(&ws.path("zero.npy"), &zero);
    let err = fails(&["ingest", "--model", "m", "--embeddings", &arg("zero.npy")]);
    assert!(err.contains("row 9 has zero norm"), "{err}");

    write_npy(&ws.path("wide.npy"), &rows(10, 7, 5));
    let err = fails(&["ingest", "--model", "m", "--embeddings", &arg("wide.npy")]);
    assert!(err.contains("expected dimension 6, got 7"), "{err}");

    let mut bytes = std::fs::read(ws.path("good.npy")).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(ws.path("short.npy"), &bytes).unwrap();
    let err = fails(&["ingest", "--model", "m", "--embeddings", &arg("short.npy")]);
    assert!(
        err.contains("short.npy") && err.contains("truncated"),
        "{err}"
    );

    std::fs::write(ws.path("junk.npy"), b"hello world").unwrap();
    let err = fails(&["ingest", "--model", "m", "--embeddings", &arg("junk.npy")]);
    assert!(
        err.contains("junk.npy") && err.contains("corrupt or truncated"),
        "{err}"
    );

    let ints: Array2<i32> = Array2::ones((3, 6));
    ndarray_npy::write_npy(ws.path("ints.npy"), &ints).unwrap();
    let err = fails(&["ingest", "--model", "m", "--embeddings", &arg("ints.npy")]);
    assert!(err.contains("dtype <i4"), "{err}");

    write_npy(&ws.path("z3.npy"), &rows(3, 4, 6));
    let err = fails(&[
        "ingest",
        "--model",
        "n",
        "--embeddings",
        &arg("good.npy"),
        "--latents",
        &arg("z3.npy"),
    ]);
    assert!(
        err.contains("3 latent codes for the 20 embeddings"),
        "{err}"
    );

    parquet(&ws.path("text.parquet"), "SELECT 'abc' AS embedding");
    let err = fails(&[
        "ingest",
        "--model",
        "m",
        "--embeddings",
        &arg("text.parquet"),
    ]);
    assert!(
        err.contains("has type VARCHAR; expected a list of floats"),
        "{err}"
    );
    parquet(
        &ws.path("ragged.parquet"),
        "SELECT [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] AS embedding UNION ALL SELECT [1.0, 2.0]",
    );
    let err = fails(&[
        "ingest",
        "--model",
        "m",
        "--embeddings",
        &arg("ragged.parquet"),
    ]);
    assert!(err.contains("row 1 has 2 values"), "{err}");
    parquet(&ws.path("other.parquet"), "SELECT [1.0, 2.0] AS vec");
    let err = fails(&[
        "ingest",
        "--model",
        "m",
        "--embeddings",
        &arg("other.parquet"),
    ]);
    assert!(err.contains("no column \"embedding\""), "{err}");

    // The same vectors again would look exactly like collapse.
    let err = fails(&["ingest", "--model", "m", "--embeddings", &arg("good.npy")]);
    assert!(err.contains("already imported"), "{err}");

    assert_eq!(count(&ws), before, "nothing of any refused file was stored");
    assert_eq!(
        ws.json(&["sql", "SELECT count(*) FROM models"])["rows"][0][0],
        1
    );
}
