//! Keeping a catalog and its indexes sound: `check`, `check --repair` and
//! `drop`.
//!
//! The catalog is the truth and is written only in whole transactions, so a
//! crash cannot leave half a batch in it; `check` still verifies that (every
//! batch whole, every sample in a batch of its own model, every embedding of
//! the model's size and of unit length), because a catalog can also be
//! written by other DuckDB clients. What a crash can leave is an index that
//! lags behind or disagrees with the catalog, and files of a generation that
//! was never published. Indexes are derived data: `--repair` brings them up
//! to date (inserting what is missing, or rebuilding) and removes leftovers,
//! and every command that uses an index does the same on its own when it
//! sees a mismatch. Problems in the catalog itself are reported, never
//! "repaired": deleting rows of the truth is for a person to decide (with
//! `drop`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalog::{Catalog, DropCounts};
use crate::error::{Error, Result};
use crate::index::{self, IndexParams, IndexState};
use crate::progress::Progress;

/// One model's index as `check` found it, and what `--repair` did.
#[derive(Debug, Clone, Serialize)]
pub struct IndexCheck {
    pub model: String,
    pub samples: usize,
    pub dir: PathBuf,
    pub found: IndexState,
    /// Unpublished files in the folder.
    pub leftovers: Vec<PathBuf>,
    /// What the repair did, if it did anything.
    pub repaired: Option<String>,
}

/// The result of `check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub catalog: PathBuf,
    pub schema_version: i64,
    pub models: usize,
    pub batches: i64,
    pub samples: i64,
    /// Problems in the catalog itself (reported only).
    pub catalog_problems: Vec<String>,
    pub indexes: Vec<IndexCheck>,
    /// Index folders of models the catalog does not hold.
    pub orphan_indexes: Vec<PathBuf>,
    pub repaired: bool,
}

impl CheckReport {
    /// Whether nothing needs attention (a missing index is fine: it is
    /// built on first use; so is one that is behind: the next use inserts
    /// the new samples).
    pub fn is_healthy(&self) -> bool {
        self.catalog_problems.is_empty()
            && self.orphan_indexes.is_empty()
            && self.indexes.iter().all(|i| {
                i.leftovers.is_empty()
                    && matches!(
                        i.found,
                        IndexState::Current | IndexState::Missing | IndexState::Behind { .. }
                    )
            })
    }
}

/// Catalog-level invariants, each a query counting its violations.
const CATALOG_CHECKS: &[(&str, &str)] = &[
    (
        "batches whose sample count differs from batches.n",
        "SELECT count(*) FROM batches b \
         WHERE b.n <> (SELECT count(*) FROM samples s WHERE s.batch_id = b.batch_id)",
    ),
    (
        "samples without their batch, or in a batch of another model",
        "SELECT count(*) FROM samples s LEFT JOIN batches b USING (batch_id) \
         WHERE b.batch_id IS NULL OR b.model <> s.model",
    ),
    (
        "samples of a model the catalog does not hold",
        "SELECT count(*) FROM samples s WHERE s.model NOT IN (SELECT model FROM models)",
    ),
    (
        "embeddings or latent codes of the wrong length",
        "SELECT count(*) FROM samples s JOIN models m USING (model) \
         WHERE len(s.embedding) <> m.embed_dim \
            OR (s.latent IS NOT NULL AND len(s.latent) <> m.latent_dim)",
    ),
    (
        "embeddings that are not finite unit vectors (|norm^2 - 1| > 1e-3)",
        "SELECT count(*) FROM samples \
         WHERE NOT (abs(list_inner_product(embedding, embedding) - 1) <= 1e-3)",
    ),
];

/// Checks the catalog and the indexes of `only` (or of every model); with
/// `repair`, brings stale indexes up to date and removes leftovers.
pub fn check(
    catalog_path: &Path,
    only: Option<&str>,
    repair: bool,
    params: IndexParams,
    progress: Progress,
) -> Result<CheckReport> {
    let (views_ok, schema_version, models, batches, samples, catalog_problems, model_ids) = {
        let catalog = Catalog::open_read_only(catalog_path)?;
        let conn = catalog.connection();
        let count = |sql: &str| -> Result<i64> {
            conn.query_row(sql, [], |row| row.get(0))
                .map_err(|e| Error::catalog(format!("check: {sql}"), e))
        };
        let schema_version = count("SELECT max(version) FROM schema_info")?;
        let mut problems = Vec::new();
        for (what, sql) in CATALOG_CHECKS {
            let found = count(sql)?;
            if found > 0 {
                problems.push(format!("{found} {what}"));
            }
        }
        let missing_views = catalog.missing_views();
        if !missing_views.is_empty() {
            problems.push(format!(
                "{} views missing or broken ({}){}",
                missing_views.len(),
                missing_views.join(", "),
                if repair {
                    "; recreated"
                } else {
                    "; --repair recreates them"
                }
            ));
        }
        let summaries = catalog.model_summaries()?;
        let mut model_ids = Vec::new();
        for summary in &summaries {
            if only.is_none_or(|m| m == summary.model) {
                model_ids.push((summary.model.clone(), catalog.sample_ids(&summary.model)?));
            }
        }
        if let Some(model) = only {
            catalog.require_model(model)?;
        }
        (
            missing_views.is_empty(),
            schema_version,
            summaries.len(),
            count("SELECT count(*) FROM batches")?,
            count("SELECT count(*) FROM samples")?,
            problems,
            model_ids,
        )
    };
    if repair && !views_ok {
        Catalog::open(catalog_path)?.create_views()?;
    }
    let mut indexes = Vec::new();
    for (model, ids) in model_ids {
        let dir = index::model_index_dir(catalog_path, &model);
        let found = index::inspect(&dir, &ids, true);
        let leftovers = index::leftovers(&dir);
        let mut repaired = None;
        if repair {
            let mut done = Vec::new();
            for path in &leftovers {
                remove(path)?;
                done.push(format!("removed {}", path.display()));
            }
            if matches!(found, IndexState::Stale | IndexState::Damaged { .. }) {
                if matches!(found, IndexState::Damaged { .. }) {
                    // Loading a damaged generation may fail in new ways each
                    // time: start from nothing.
                    remove(&dir)?;
                }
                let synced = index::sync(catalog_path, &model, params, progress)?;
                done.push(format!(
                    "index {} in {:.1} s",
                    synced.action, synced.elapsed_s
                ));
            }
            repaired = (!done.is_empty()).then(|| done.join("; "));
        }
        indexes.push(IndexCheck {
            model,
            samples: ids.len(),
            dir,
            found,
            leftovers,
            repaired,
        });
    }
    let mut orphan_indexes = Vec::new();
    if only.is_none() {
        let known: Vec<PathBuf> = indexes.iter().map(|i| i.dir.clone()).collect();
        let root = index::index_root(catalog_path);
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                if entry.path().is_dir() && !known.contains(&entry.path()) {
                    orphan_indexes.push(entry.path());
                }
            }
        }
        orphan_indexes.sort();
        if repair {
            for path in &orphan_indexes {
                remove(path)?;
            }
        }
    }
    Ok(CheckReport {
        catalog: catalog_path.to_path_buf(),
        schema_version,
        models,
        batches,
        samples,
        catalog_problems,
        indexes,
        orphan_indexes,
        repaired: repair,
    })
}

fn remove(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Removes a model with its batches, samples, audits, calibrations and
/// index. The catalog commits first: if the process dies before the index
/// folder is gone, the folder no longer matches any model and `check
/// --repair` removes it.
pub fn drop_model(catalog_path: &Path, model: &str) -> Result<DropCounts> {
    let counts = Catalog::open(catalog_path)?.drop_model(model)?;
    remove(&index::model_index_dir(catalog_path, model))?;
    Ok(counts)
}

/// Removes one batch with its samples and the audits of its model that saw
/// them, and the model's index (hnsw_rs cannot delete points; the next use
/// rebuilds it, and an index left behind by a crash no longer matches the
/// catalog's ids, so it would be rebuilt anyway).
pub fn drop_batch(catalog_path: &Path, batch_id: i64) -> Result<DropCounts> {
    let (model, counts) = Catalog::open(catalog_path)?.drop_batch(batch_id)?;
    remove(&index::model_index_dir(catalog_path, &model))?;
    Ok(counts)
}
