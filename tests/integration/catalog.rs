//! The catalog seen from outside: its tables through the `duckdb` crate,
//! whole batches under SIGKILL, the lock, schema versions.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modeaudit::blackbox;

use crate::common::{Workspace, assert_catalog_whole, bin};

const SMALL: &str = "synthetic:latent=64,dim=32,modes=1,mass=0.05,world=3";

#[test]
fn test_catalog_round_trip_through_duckdb() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "300",
        "--seed",
        "42",
    ]);
    let conn = duckdb::Connection::open(&ws.catalog).unwrap();
    let (generator, latent_dim, embed_dim): (String, i64, i64) = conn
        .query_row(
            "SELECT generator, latent_dim, embed_dim FROM models WHERE model = 'm'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((latent_dim, embed_dim), (64, 32));
    let (seed, n): (u64, i64) = conn
        .query_row("SELECT seed, n FROM batches WHERE model = 'm'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((seed, n), (42, 300));
    // The stored latents are the seeded draw, and the stored embeddings are
    // the normalised simulator output for them.
    let sim = blackbox::from_spec(&generator).unwrap();
    let z = blackbox::draw_latents(300, 64, 42);
    let mut e = sim.embed(z.view()).unwrap();
    modeaudit::vector::normalize_rows(e.view_mut(), "sim").unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT sample_id, latent::VARCHAR, embedding::VARCHAR FROM samples ORDER BY sample_id",
        )
        .unwrap();
    let rows: Vec<(i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 300);
    for (i, (id, latent, embedding)) in rows.iter().enumerate() {
        assert_eq!(*id, i as i64 + 1);
        let latent: Vec<f32> = serde_json::from_str(latent).unwrap();
        let embedding: Vec<f32> = serde_json::from_str(embedding).unwrap();
        assert_eq!(latent, z.row(i).to_vec(), "row {i}");
        for (a, b) in embedding.iter().zip(e.row(i)) {
            assert!((a - b).abs() < 1e-6, "row {i}");
        }
    }
    drop(stmt);
    drop(conn);
    // Reproducible: a second catalog with the same seed holds the same samples.
    let other = Workspace::new();
    other.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "300",
        "--seed",
        "42",
    ]);
    let a = ws.json(&["sql", "SELECT embedding FROM samples ORDER BY sample_id"]);
    let b = other.json(&["sql", "SELECT embedding FROM samples ORDER BY sample_id"]);
    assert_eq!(a, b);
}

#[test]
fn test_sigkill_during_sample_leaves_whole_batches() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        "synthetic:latent=256,dim=256",
        "--n",
        "1000",
        "--seed",
        "1",
    ]);
    // Kill at several moments of a large batch: while embedding, while
    // appending, while committing. Whatever the moment, the catalog opens,
    // the first batch is intact, and no part of the killed batch is left.
    for (round, delay_ms) in [300u64, 1200, 2500, 4000].into_iter().enumerate() {
        let mut child = Command::new(bin())
            .args([
                "sample",
                "--model",
                "m",
                "--generator",
                "synthetic:latent=256,dim=256",
            ])
            .args([
                "--n",
                "400000",
                "--seed",
                &(100 + round).to_string(),
                "--quiet",
            ])
            .arg("--catalog")
            .arg(&ws.catalog)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let (batches, samples) = assert_catalog_whole(&ws);
        assert!(
            batches >= 1 && samples >= 1000,
            "round {round}: first batch lost"
        );
        if !finished {
            eprintln!("killed at {delay_ms} ms: {batches} batches, {samples} samples");
        }
    }
    // The catalog is still writable and auditable.
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        "synthetic:latent=256,dim=256",
        "--n",
        "100",
        "--seed",
        "7",
    ]);
    ws.ok(&[
        "audit",
        "--model",
        "m",
        "--anchors",
        "20",
        "--search",
        "exact",
    ]);
}

#[test]
fn test_second_writer_gets_a_clear_message() {
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
    // Hold the catalog open for writing in this process.
    let holder = duckdb::Connection::open(&ws.catalog).unwrap();
    let started = Instant::now();
    let err = ws.fails(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "100",
        "--seed",
        "2",
    ]);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let err = ws.fails(&["models"]);
    assert!(err.contains("in use by another process"), "{err}");
    drop(holder);
    // Nothing was lost or half-written; the catalog works again.
    let n = ws.json(&["sql", "SELECT count(*) FROM samples"]);
    assert_eq!(n["rows"][0][0], 100);
}

#[test]
fn test_newer_schema_is_refused() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "10",
        "--seed",
        "1",
    ]);
    {
        let conn = duckdb::Connection::open(&ws.catalog).unwrap();
        conn.execute_batch("INSERT INTO schema_info (version, tool_version) VALUES (99, 'future')")
            .unwrap();
    }
    let err = ws.fails(&["models"]);
    assert!(err.contains("schema version 99"), "{err}");
    let err = ws.fails(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "10",
        "--seed",
        "2",
    ]);
    assert!(err.contains("schema version 99"), "{err}");
}
