//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_modeaudit"))
}

/// A fresh folder and a catalog path inside it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub catalog: PathBuf,
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog = dir.path().join("test.duckdb");
        Workspace { dir, catalog }
    }

    /// Runs `modeaudit ARGS --catalog <catalog> --quiet`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--catalog")
            .arg(&self.catalog)
            .arg("--quiet")
            .output()
            .expect("run modeaudit")
    }

    /// Runs and expects success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "modeaudit {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs with `--json` and parses the object.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let text = self.ok(&with_json);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON ({e}): {text}"))
    }

    /// Runs and expects failure, returning stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "modeaudit {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).expect("utf-8 errors")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Writes a float32 matrix as `.npy`.
pub fn write_npy(path: &Path, rows: &ndarray::Array2<f32>) {
    ndarray_npy::write_npy(path, rows).expect("write npy");
}

/// Asserts what a crash or kill must never break: every batch present is
/// whole (its row count matches `batches.n`), no sample lacks its batch, and
/// every audit holds all its anchors. Opening the catalog at all is part of
/// the check. Returns the number of batches and the samples they hold.
pub fn assert_catalog_whole(ws: &Workspace) -> (i64, i64) {
    let conn = duckdb::Connection::open(&ws.catalog).expect("the catalog opens after a kill");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let broken = count(
        "SELECT count(*) FROM batches b \
         WHERE b.n <> (SELECT count(*) FROM samples s WHERE s.batch_id = b.batch_id)",
    );
    assert_eq!(broken, 0, "a batch is partly present");
    let orphans =
        count("SELECT count(*) FROM samples WHERE batch_id NOT IN (SELECT batch_id FROM batches)");
    assert_eq!(orphans, 0, "samples without their batch");
    let partial_audits = count(
        "SELECT count(*) FROM audits a \
         WHERE a.n_anchors <> (SELECT count(*) FROM anchor_scores s WHERE s.audit_id = a.audit_id)",
    );
    assert_eq!(partial_audits, 0, "an audit without all its anchors");
    (
        count("SELECT count(*) FROM batches"),
        count("SELECT coalesce(sum(n), 0) FROM batches"),
    )
}
