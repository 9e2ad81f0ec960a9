//! Durability and safety: real SIGKILLs at several moments of `sample`,
//! `ingest`, `audit` and an index build; resumable runs; readers getting in
//! while a writer works; `check --repair`; `drop`; and on-disk formats
//! pinned by committed fixtures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Workspace, assert_catalog_whole, bin, write_npy};
use modeaudit::catalog::Catalog;

const BIG: &str = "synthetic:latent=256,dim=256";
const SMALL: &str = "synthetic:latent=32,dim=32,modes=1,mass=0.05,world=3";

fn spawn(ws: &Workspace, args: &[&str]) -> Child {
    Command::new(bin())
        .args(args)
        .arg("--catalog")
        .arg(&ws.catalog)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn modeaudit")
}

/// Lets a child run for `delay`, then kills it with SIGKILL; returns
/// whether it had already finished.
fn kill_after(mut child: Child, delay: Duration) -> bool {
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap().is_some();
    child.kill().ok(); // SIGKILL on Unix
    child.wait().unwrap();
    finished
}

fn open(ws: &Workspace) -> duckdb::Connection {
    duckdb::Connection::open(&ws.catalog).expect("the catalog opens after a kill")
}

fn scalar(conn: &duckdb::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A fingerprint of every sample: ids, codes and embeddings, bit for bit.
fn fingerprint(ws: &Workspace) -> (i64, String) {
    open(ws)
        .query_row(
            "SELECT count(*), coalesce(bit_xor(hash(sample_id, latent, embedding)), 0)::VARCHAR \
             FROM samples",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[test]
fn test_interrupted_sampling_resumes_to_the_uninterrupted_catalog() {
    let args = [
        "sample",
        "--model",
        "m",
        "--generator",
        BIG,
        "--n",
        "60000",
        "--chunk",
        "4000",
        "--seed",
        "5",
    ];
    let reference = Workspace::new();
    reference.ok(&args);
    let ws = Workspace::new();
    let mut resumed_any = false;
    for delay_ms in [700u64, 1500, 2500] {
        let finished = kill_after(spawn(&ws, &args), Duration::from_millis(delay_ms));
        assert_catalog_whole(&ws);
        let conn = open(&ws);
        let chunks = scalar(&conn, "SELECT count(*) FROM batches");
        let samples = scalar(&conn, "SELECT count(*) FROM samples");
        assert_eq!(
            scalar(
                &conn,
                "SELECT count(*) FROM batches WHERE n <> 4000 OR seed <> 5"
            ),
            0,
            "every committed batch is one whole chunk of the run"
        );
        drop(conn);
        eprintln!(
            "killed at {delay_ms} ms (finished: {finished}): {chunks} chunks, {samples} samples"
        );
        if finished {
            break;
        }
        resumed_any |= samples > 0;
    }
    // Rerunning the same command finishes the run instead of starting over.
    let report = ws.json(&args);
    let (count, _) = fingerprint(&ws);
    assert_eq!(count, 60000);
    assert_eq!(report["n"], 60000);
    assert_eq!(
        report["resumed"].as_u64().unwrap() + report["added"].as_u64().unwrap(),
        60000
    );
    assert!(
        resumed_any,
        "no kill landed after a commit; lengthen the run"
    );
    assert_eq!(
        fingerprint(&ws),
        fingerprint(&reference),
        "the same codes and embeddings"
    );
    // Once complete, the seed is spent.
    let err = ws.fails(&args);
    assert!(err.contains("already used"), "{err}");
    // A different size for an unfinished run's seed is refused, not mixed.
    let other = Workspace::new();
    kill_after(spawn(&other, &args), Duration::from_millis(1200));
    let (partial, _) = fingerprint(&other);
    if partial > 0 && partial < 60000 {
        let err = other.fails(&[
            "sample",
            "--model",
            "m",
            "--generator",
            BIG,
            "--n",
            "1000",
            "--seed",
            "5",
        ]);
        assert!(err.contains("already used"), "{err}");
    }
}

#[test]
fn test_sigkill_during_ingest_leaves_it_whole_or_absent() {
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
    let before = fingerprint(&ws);
    let rows = ndarray::Array2::from_shape_fn((400_000, 32), |(i, j)| {
        ((i * 31 + j * 17) % 101) as f32 / 101.0 + 0.01
    });
    let path = ws.path("big.npy");
    write_npy(&path, &rows);
    let path = path.to_str().unwrap();
    for delay_ms in [150u64, 600, 1500] {
        kill_after(
            spawn(
                &ws,
                &["ingest", "--model", "imported", "--embeddings", path],
            ),
            Duration::from_millis(delay_ms),
        );
        assert_catalog_whole(&ws);
        let conn = open(&ws);
        let imported = scalar(
            &conn,
            "SELECT count(*) FROM samples WHERE model = 'imported'",
        );
        assert!(
            imported == 0 || imported == 400_000,
            "half an import: {imported}"
        );
        drop(conn);
        let (count, hash) = fingerprint(&ws);
        if imported == 0 {
            assert_eq!((count, hash), before, "nothing else changed");
        }
    }
}

#[test]
fn test_sigkill_during_audit_and_index_build_loses_nothing() {
    let ws = Workspace::new();
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        BIG,
        "--n",
        "30000",
        "--seed",
        "1",
    ]);
    let samples = fingerprint(&ws);
    for delay_ms in [200u64, 800] {
        kill_after(
            spawn(
                &ws,
                &[
                    "audit",
                    "--model",
                    "m",
                    "--anchors",
                    "3000",
                    "--search",
                    "exact",
                ],
            ),
            Duration::from_millis(delay_ms),
        );
        assert_catalog_whole(&ws);
        assert_eq!(fingerprint(&ws), samples);
    }
    // An index build killed midway: the catalog is untouched and the index
    // either published whole or not at all; check tells, repair mends.
    for delay_ms in [500u64, 3000] {
        kill_after(
            spawn(&ws, &["index", "--model", "m"]),
            Duration::from_millis(delay_ms),
        );
        assert_eq!(fingerprint(&ws), samples);
        ws.ok(&["check", "--repair"]);
        let report = ws.json(&["check"]);
        let state = report["indexes"][0]["found"]["state"]
            .as_str()
            .unwrap()
            .to_string();
        // Killed before it published: no index (built on next use); after:
        // the whole new generation. Never half of one.
        assert!(state == "missing" || state == "current", "{report}");
    }
    ws.ok(&[
        "audit",
        "--model",
        "m",
        "--anchors",
        "50",
        "--search",
        "hnsw",
    ]);
    assert_catalog_whole(&ws);
}

#[test]
fn test_readers_get_in_while_a_long_sample_runs() {
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
    let mut child = spawn(
        &ws,
        &[
            "sample",
            "--model",
            "big",
            "--generator",
            BIG,
            "--n",
            "150000",
            "--chunk",
            "5000",
        ],
    );
    let started = Instant::now();
    let (mut reads, mut busy) = (0, 0);
    // 150,000 samples take well over 6 s here; the readers try meanwhile.
    while started.elapsed() < Duration::from_secs(6) && child.try_wait().unwrap().is_none() {
        let out = ws.run(&["sql", "SELECT count(*) FROM samples"]);
        if out.status.success() {
            reads += 1;
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("in use by another process"), "{err}");
            busy += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let still_running = child.try_wait().unwrap().is_none();
    child.kill().ok();
    child.wait().unwrap();
    assert!(
        still_running,
        "the writer stopped before the readers were done"
    );
    eprintln!("while sampling: {reads} reads got in, {busy} found the catalog busy");
    assert!(reads >= 1, "no reader got in while the writer worked");
    assert_catalog_whole(&ws);
}

fn index_dirs(ws: &Workspace) -> Vec<PathBuf> {
    let root = PathBuf::from(format!("{}.index", ws.catalog.display()));
    std::fs::read_dir(root)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn find_file(dir: &Path, name: &str) -> PathBuf {
    for entry in walk(dir) {
        if entry.file_name().is_some_and(|n| n == name) {
            return entry;
        }
    }
    panic!("no {name} under {}", dir.display())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

/// Views are created with the schema, not at every open; one a user
/// dropped is reported by `check` and recreated by `--repair`.
#[test]
fn test_check_reports_and_repairs_a_dropped_view() {
    let ws = Workspace::new();
    ws.ok(&["sample", "--model", "m", "--generator", SMALL, "--n", "50"]);
    {
        let conn = duckdb::Connection::open(&ws.catalog).unwrap();
        conn.execute_batch("DROP VIEW latest_audit").unwrap();
    }
    // The program's own queries do not depend on the views.
    ws.ok(&["models"]);
    let out = ws.run(&["check", "--json"]);
    assert!(!out.status.success(), "a missing view is a problem");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = report["catalog_problems"].to_string();
    assert!(problems.contains("latest_audit"), "{report}");
    let report = ws.json(&["check", "--repair"]);
    assert!(
        report["catalog_problems"].to_string().contains("recreated"),
        "{report}"
    );
    let report = ws.json(&["check"]);
    assert_eq!(
        report["catalog_problems"],
        serde_json::json!([]),
        "{report}"
    );
    ws.ok(&["sql", "SELECT * FROM latest_audit"]);
}

#[test]
fn test_check_finds_and_repairs_damaged_stale_and_leftover_indexes() {
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
    ws.ok(&["index", "--model", "m"]);
    let report = ws.json(&["check"]);
    assert_eq!(
        report["indexes"][0]["found"]["state"], "current",
        "{report}"
    );
    let dir = index_dirs(&ws).pop().unwrap();

    // Damaged graph file: reported (exit non-zero), then rebuilt.
    let data = find_file(&dir, "graph.hnsw.data");
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 3]).unwrap();
    let err = ws.fails(&["check"]);
    assert!(err.contains("problems found"), "{err}");
    let out = ws.ok(&["check", "--repair"]);
    assert!(out.contains("damaged"), "{out}");
    assert_eq!(
        ws.json(&["check"])["indexes"][0]["found"]["state"],
        "current"
    );

    // A leftover generation from a crash, and an index of no model.
    std::fs::create_dir_all(dir.join("gen-999")).unwrap();
    std::fs::create_dir_all(dir.parent().unwrap().join("gone-0000000000000000")).unwrap();
    let report = ws.json(&["check", "--repair"]);
    assert_eq!(
        report["indexes"][0]["leftovers"].as_array().unwrap().len(),
        1
    );
    assert_eq!(report["orphan_indexes"].as_array().unwrap().len(), 1);
    assert!(!dir.join("gen-999").exists());
    assert_eq!(index_dirs(&ws).len(), 1);

    // Another client deletes a batch behind modeaudit's back: stale.
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "200",
        "--seed",
        "2",
    ]);
    ws.ok(&["index", "--model", "m"]);
    {
        let conn = open(&ws);
        conn.execute_batch(
            "DELETE FROM samples WHERE batch_id = 1; DELETE FROM batches WHERE batch_id = 1;",
        )
        .unwrap();
    }
    let report = ws.json(&["check", "--model", "m", "--repair"]);
    assert_eq!(report["indexes"][0]["found"]["state"], "stale", "{report}");
    assert_eq!(
        ws.json(&["check"])["indexes"][0]["found"]["state"],
        "current"
    );
    // Behind: new samples since the index was built are not a problem
    // (inserted on next use), and are reported as such.
    ws.ok(&[
        "sample",
        "--model",
        "m",
        "--generator",
        SMALL,
        "--n",
        "100",
        "--seed",
        "3",
    ]);
    let report = ws.json(&["check"]);
    assert_eq!(report["indexes"][0]["found"]["state"], "behind");
    assert_eq!(report["indexes"][0]["found"]["missing"], 100);
    // A catalog problem written by another client is reported, not mended.
    {
        let conn = open(&ws);
        conn.execute_batch("UPDATE batches SET n = n + 1 WHERE batch_id = 2")
            .unwrap();
    }
    let err = ws.fails(&["check"]);
    assert!(err.contains("problems found"), "{err}");
    let out = ws.ok(&["check", "--repair"]);
    assert!(out.contains("batches whose sample count differs"), "{out}");
}

#[test]
fn test_drop_batch_and_model_remove_everything_that_hangs_on_them() {
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
    let early = ws.json(&[
        "audit",
        "--model",
        "m",
        "--anchors",
        "20",
        "--search",
        "exact",
    ]);
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
    ws.ok(&[
        "audit",
        "--model",
        "m",
        "--anchors",
        "20",
        "--search",
        "hnsw",
    ]);
    ws.ok(&[
        "sample",
        "--model",
        "other",
        "--generator",
        SMALL,
        "--n",
        "100",
        "--seed",
        "1",
    ]);
    assert_eq!(index_dirs(&ws).len(), 1);
    // Without --yes and without a terminal to ask on, nothing happens.
    let err = ws.fails(&["drop", "--batch", "2"]);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(fingerprint(&ws).0, 1600);
    let dropped = ws.json(&["drop", "--batch", "2", "--yes"]);
    assert_eq!(
        dropped["removed"],
        serde_json::json!({"batches": 1, "samples": 500, "audits": 1})
    );
    let audits = ws.json(&["sql", "SELECT audit_id FROM audits ORDER BY audit_id"]);
    assert_eq!(
        audits["rows"],
        serde_json::json!([[early["audit_id"]]]),
        "the early audit stays"
    );
    assert!(
        index_dirs(&ws).is_empty(),
        "the model's index went with the batch"
    );
    ws.ok(&["audit", "--model", "m", "--update"]);
    let dropped = ws.json(&["drop", "--model", "m", "--yes"]);
    assert_eq!(dropped["removed"]["samples"], 1000);
    let left = ws.json(&["sql", "SELECT DISTINCT model FROM samples"]);
    assert_eq!(left["rows"], serde_json::json!([["other"]]));
    let err = ws.fails(&["drop", "--model", "m", "--yes"]);
    assert!(err.contains("no model named"), "{err}");
    ws.json(&["check"]);
}

/// Copies a committed fixture folder into a workspace.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The fixture `tests/fixtures/v3` was written by this version (see its
/// README): a catalog at schema version 3 with an audit, an update and a
/// published index. A change that can no longer read it fails here.
#[test]
fn test_committed_v3_catalog_and_index_still_read() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3");
    let ws = Workspace::new();
    copy_tree(&fixture, ws.dir.path());
    let ws = Workspace {
        catalog: ws.dir.path().join("catalog.duckdb"),
        ..ws
    };
    let models = ws.json(&["models"]);
    assert_eq!(models["models"][0]["model"], "fixture");
    assert_eq!(models["models"][0]["n_samples"], 600);
    let history = ws.json(&["history", "--model", "fixture"]);
    let audits = history["audits"].as_array().unwrap();
    assert_eq!(audits.len(), 2);
    assert_eq!(audits[1]["kind"], "update");
    assert_eq!(audits[1]["max_sample_id"], 600);
    // The index's files are read as they are: no rebuild.
    // Opening it migrated it to the current schema.
    let check = ws.json(&["check"]);
    assert_eq!(check["schema_version"], 5);
    assert_eq!(check["indexes"][0]["found"]["state"], "current", "{check}");
    let nb = ws.json(&["neighbors", "--model", "fixture", "--id", "1", "--k", "3"]);
    assert_eq!(nb["index_action"], "loaded");
    assert_eq!(nb["neighbors"].as_array().unwrap().len(), 3);
    // Stored scores are what a fresh computation gives.
    let stored = ws.json(&["sql", "SELECT mccs_mean FROM audits WHERE audit_id = 2"]);
    let again = ws.json(&[
        "audit",
        "--model",
        "fixture",
        "--anchors-from",
        "1",
        "--search",
        "exact",
    ]);
    let (a, b) = (
        stored["rows"][0][0].as_f64().unwrap(),
        again["population"]["mean"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    // The fixture was sampled with the simulator's first map, so version 2
    // refuses to add to it rather than mix two maps in one model.
    let err = ws.fails(&[
        "sample",
        "--model",
        "fixture",
        "--generator",
        "synthetic:latent=32,dim=16,modes=1,mass=0.05,world=1",
        "--n",
        "50",
    ]);
    assert!(err.contains("map=2"), "{err}");
    // Its update, stored before anchors kept their embeddings, is updated
    // again (its anchors read from the samples table) and equals a full
    // audit. New samples come in as another client would add them.
    {
        let conn = duckdb::Connection::open(&ws.catalog).unwrap();
        conn.execute_batch(
            "INSERT INTO batches (batch_id, model, source, seed, n, calibration_id, created_at, \
             chunk, run_n) VALUES (3, 'fixture', 'copies', NULL, 50, NULL, now(), 0, 50);
             INSERT INTO samples SELECT sample_id + 600, model, 3, latent, embedding \
             FROM samples WHERE sample_id <= 50;",
        )
        .unwrap();
    }
    let updated = ws.json(&[
        "audit",
        "--model",
        "fixture",
        "--update",
        "2",
        "--mode-check",
        "never",
    ]);
    let full = ws.json(&[
        "audit",
        "--model",
        "fixture",
        "--anchors-from",
        "1",
        "--search",
        "exact",
    ]);
    let (u, f) = (
        updated["audit"]["population"]["mean"].as_f64().unwrap(),
        full["population"]["mean"].as_f64().unwrap(),
    );
    assert!((u - f).abs() < 1e-9 * f.abs().max(1.0), "{u} vs {f}");
    // The new audits keep their anchors' embeddings.
    let kept = ws.json(&[
        "sql",
        "SELECT count(*) FROM anchor_vectors WHERE audit_id = 4",
    ]);
    assert_eq!(kept["rows"][0][0], 20);
}

/// The fixture `tests/fixtures/v4` was written by the version 4 program
/// (see its README): an audit and an update with an added anchor, each with
/// its anchors' embeddings, the update's mostly copies of its parent's.
/// Migrating to version 5 keeps each embedding once, and updates still read
/// them all without touching the samples.
#[test]
fn test_committed_v4_catalog_migrates_its_anchor_vectors() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v4");
    let ws = Workspace::new();
    copy_tree(&fixture, ws.dir.path());
    let ws = Workspace {
        catalog: ws.dir.path().join("catalog.duckdb"),
        ..ws
    };
    let check = ws.json(&["check"]);
    assert_eq!(check["schema_version"], 5);
    assert_eq!(check["indexes"][0]["found"]["state"], "current", "{check}");
    let kept = ws.json(&[
        "sql",
        "SELECT audit_id, count(*) FROM anchor_vectors GROUP BY ALL ORDER BY 1",
    ]);
    assert_eq!(kept["rows"], serde_json::json!([[1, 20], [2, 1]]), "{kept}");
    {
        let catalog = Catalog::open_read_only(&ws.catalog).unwrap();
        let mut ids: Vec<i64> = catalog
            .anchor_rows(2)
            .unwrap()
            .iter()
            .map(|r| r.sample_id)
            .collect();
        ids.sort_unstable();
        let vectors = catalog.anchor_vectors(2, &ids, 16).unwrap().unwrap();
        for &id in &ids {
            let (embedding, _) = catalog.sample("fixture", id).unwrap();
            assert_eq!(vectors.get(id).unwrap().to_vec(), embedding, "anchor {id}");
        }
    }
    ws.json(&[
        "sample",
        "--model",
        "fixture",
        "--generator",
        "synthetic:latent=32,dim=16,modes=1,mass=0.05,world=1",
        "--n",
        "50",
        "--seed",
        "3",
    ]);
    let updated = ws.json(&[
        "audit",
        "--model",
        "fixture",
        "--update",
        "--mode-check",
        "never",
    ]);
    let full = ws.json(&[
        "audit",
        "--model",
        "fixture",
        "--anchors-from",
        "1",
        "--search",
        "exact",
    ]);
    let (u, f) = (
        updated["audit"]["population"]["mean"].as_f64().unwrap(),
        full["population"]["mean"].as_f64().unwrap(),
    );
    assert!((u - f).abs() < 1e-9 * f.abs().max(1.0), "{u} vs {f}");
    let stored = ws.json(&[
        "sql",
        "SELECT count(*) FROM anchor_vectors WHERE audit_id = 3",
    ]);
    assert_eq!(
        stored["rows"][0][0], 0,
        "an update without added anchors stores none"
    );
}

/// A catalog at schema version 2, made from the committed migration files
/// exactly as an earlier modeaudit made it, is migrated on first open and
/// keeps every row.
#[test]
fn test_a_version_2_catalog_is_migrated_in_place() {
    let ws = Workspace::new();
    {
        let conn = duckdb::Connection::open(&ws.catalog).unwrap();
        conn.execute_batch(include_str!("../../sql/schema_v1.sql"))
            .unwrap();
        conn.execute_batch(include_str!("../../sql/schema_v2.sql"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO schema_info VALUES (1, now(), 'old'), (2, now(), 'old');
             INSERT INTO models VALUES ('old', 'imported', 2, 2, '{}', now());
             INSERT INTO batches VALUES (1, 'old', 'x.npy', NULL, 3, NULL, now());
             INSERT INTO samples VALUES
               (1, 'old', 1, NULL, [1.0, 0.0]), (2, 'old', 1, NULL, [0.0, 1.0]),
               (3, 'old', 1, NULL, [0.6, 0.8]);
             INSERT INTO audits VALUES (1, 'old', 'anchors', NULL, 0.3, 0.3, 3, 1, 'exact',
               0.0, 0.0, 0.0, 1, 0, 0.1, 'old', '{}', now());
             INSERT INTO anchor_scores VALUES (1, 1, 0, 0.0, 0.0, 0.0);",
        )
        .unwrap();
    }
    // A read-only command migrates it first.
    let models = ws.json(&["models"]);
    assert_eq!(models["models"][0]["n_samples"], 3);
    let version = ws.json(&["sql", "SELECT max(version) FROM schema_info"]);
    assert_eq!(version["rows"][0][0], modeaudit::catalog::SCHEMA_VERSION);
    let rows = ws.json(&["sql", "SELECT role FROM anchor_scores"]);
    assert_eq!(rows["rows"], serde_json::json!([["random"]]));
    let runs = ws.json(&["sql", "SELECT chunk, run_n FROM batches"]);
    assert_eq!(runs["rows"], serde_json::json!([[0, 3]]));
    // An old audit cannot be updated (it does not say what it saw).
    let err = ws.fails(&["audit", "--model", "old", "--update"]);
    assert!(err.contains("predates incremental updates"), "{err}");
    ws.ok(&[
        "audit",
        "--model",
        "old",
        "--anchors",
        "2",
        "--search",
        "exact",
    ]);
}
