//! The DuckDB catalog: the single source of truth.
//!
//! Every sample, batch, model and audit lives here, in the tables of
//! `sql/schema_v1.sql` (a public interface: users query them with any DuckDB
//! client), plus the views of `sql/views.sql`.
//!
//! Two rules shape this module:
//!
//! - A batch is one transaction: its `batches` row and all its `samples` rows
//!   commit together or not at all, so a crash or kill leaves every batch
//!   whole or absent.
//! - Writers hold the file briefly. DuckDB lets one process hold a file for
//!   writing, and then no other process may open it, not even to read. So
//!   commands open the catalog to read what they need, close it while they
//!   compute (generate embeddings, search), and open it again to commit.
//!   A [`Catalog`] value is therefore meant to live for one step, not for a
//!   whole command.

mod arrow_io;

use std::path::{Path, PathBuf};

use duckdb::arrow::array::AsArray;
use duckdb::arrow::datatypes::Int64Type;
use duckdb::{Config, Connection, OptionalExt, params};
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use arrow_io::{SampleRows, query_to_json};

/// Schema version this program writes and fully understands.
pub const SCHEMA_VERSION: i64 = 5;

/// Migrations by target version: applying entry `i` takes a catalog from
/// version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../sql/schema_v1.sql"),
    include_str!("../../sql/schema_v2.sql"),
    include_str!("../../sql/schema_v3.sql"),
    include_str!("../../sql/schema_v4.sql"),
    include_str!("../../sql/schema_v5.sql"),
];

/// The views of `sql/views.sql`, dropped before a migration so that no view
/// stands in the way of an `ALTER TABLE`; they are created again after it.
const VIEW_NAMES: &[&str] = &[
    "latest_audit",
    "densest_anchors",
    "study_regions",
    "audit_history",
    "audit_batches",
];

const VIEWS: &str = include_str!("../../sql/views.sql");

#[cfg(test)]
mod view_tests {
    #[test]
    fn test_view_names_list_every_view_of_views_sql() {
        let created: Vec<&str> = super::VIEWS
            .lines()
            .filter_map(|l| l.strip_prefix("CREATE OR REPLACE VIEW "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(created, super::VIEW_NAMES);
    }
}

/// An open catalog.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

/// A model's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRecord {
    pub model: String,
    pub generator: String,
    pub latent_dim: usize,
    pub embed_dim: usize,
    pub params: serde_json::Value,
}

/// A committed batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRecord {
    pub batch_id: i64,
    pub model: String,
    pub first_sample_id: i64,
    pub n: usize,
    pub seed: Option<u64>,
}

/// One batch of a sampling run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunBatch {
    pub batch_id: i64,
    pub chunk: u32,
    pub n: u64,
    /// Samples the whole run asked for.
    pub run_n: u64,
    pub source: String,
    pub calibration_id: Option<i64>,
}

/// What a drop removed (or would remove).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DropCounts {
    pub batches: usize,
    pub samples: usize,
    pub audits: usize,
}

/// A new batch to commit.
pub struct NewBatch<'a> {
    /// The model; created in the batch's transaction if it does not exist,
    /// so a failed first batch leaves no empty model behind.
    pub model: &'a ModelRecord,
    pub source: &'a str,
    pub seed: Option<u64>,
    pub calibration_id: Option<i64>,
    /// Number of this batch within its sampling run (0 for a run of one
    /// batch); the run's batches share `seed`.
    pub chunk: u32,
    /// Samples the whole run asked for (this batch's size for a run of one
    /// batch).
    pub run_n: u64,
    /// Latent codes, one row per sample, when known.
    pub latents: Option<&'a Array2<f32>>,
    /// Unit embeddings, one row per sample.
    pub embeddings: &'a Array2<f32>,
}

/// Summary of a model for `modeaudit models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub model: String,
    pub generator: String,
    pub latent_dim: usize,
    pub embed_dim: usize,
    pub n_samples: i64,
    pub n_batches: i64,
    pub latest_audit_id: Option<i64>,
    pub latest_audit_kind: Option<String>,
    pub latest_mccs_mean: Option<f64>,
    pub latest_worst_sample_id: Option<i64>,
}

/// An audit to store.
#[derive(Debug, Clone, Serialize)]
pub struct NewAudit {
    pub model: String,
    pub kind: String,
    pub parent_audit_id: Option<i64>,
    pub theta: f64,
    pub radius: f64,
    pub n_samples: u64,
    /// Largest sample id the audit saw: it saw every sample of the model up
    /// to this id, and an update adds the samples after it.
    pub max_sample_id: i64,
    pub n_anchors: u64,
    pub search: String,
    pub mccs_mean: Option<f64>,
    pub mccs_std: Option<f64>,
    pub mccs_max: Option<f64>,
    pub worst_sample_id: Option<i64>,
    pub worst_neighbors: Option<u64>,
    pub elapsed_s: f64,
    pub params: serde_json::Value,
}

/// Why a sample is an anchor of an audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorRole {
    /// Drawn at random: these make the population statistics.
    Random,
    /// Added by an update because it lies in a new dense region; reported
    /// apart so that audits of one lineage stay comparable.
    Added,
    /// One of the distinct modes of a `modes` audit.
    Mode,
}

impl AnchorRole {
    /// The name stored in `anchor_scores.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            AnchorRole::Random => "random",
            AnchorRole::Added => "added",
            AnchorRole::Mode => "mode",
        }
    }

    fn parse(text: &str) -> AnchorRole {
        match text {
            "added" => AnchorRole::Added,
            "mode" => AnchorRole::Mode,
            _ => AnchorRole::Random,
        }
    }
}

/// One anchor's stored scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AnchorRow {
    pub sample_id: i64,
    pub role: AnchorRole,
    pub neighbors: u64,
    pub similarity_sum: f64,
    pub expected_similarity: f64,
    pub mccs: f64,
}

/// A stored audit's summary row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub audit_id: i64,
    pub model: String,
    pub kind: String,
    pub parent_audit_id: Option<i64>,
    pub theta: f64,
    pub radius: f64,
    pub n_samples: u64,
    /// Largest sample id the audit saw (unknown for audits stored before
    /// schema version 3).
    pub max_sample_id: Option<i64>,
    pub n_anchors: u64,
    pub search: String,
    pub mccs_mean: Option<f64>,
    pub mccs_std: Option<f64>,
    pub mccs_max: Option<f64>,
    pub worst_sample_id: Option<i64>,
    pub worst_neighbors: Option<u64>,
    pub elapsed_s: f64,
    pub created_at: String,
    pub params: serde_json::Value,
}

/// A calibration to store.
#[derive(Debug, Clone, Serialize)]
pub struct NewCalibration {
    pub model: String,
    pub method: String,
    pub audit_id: Option<i64>,
    pub mode_sample_id: i64,
    pub theta: f64,
    pub radius: f64,
    pub acceptance_rate: f64,
    pub mode_rate_before: f64,
    pub mode_rate_after: f64,
    pub seed: u64,
    pub params: serde_json::Value,
}

impl NewCalibration {
    /// The latent size the calibration's parameters were fitted in.
    pub fn params_latent_dim(&self) -> usize {
        let get = |path: &[&str]| {
            let mut v = &self.params;
            for key in path {
                v = &v[key];
            }
            v.as_u64()
        };
        get(&["mixture", "latent_dim"])
            .or_else(|| get(&["hull", "latent_dim"]))
            .unwrap_or(0) as usize
    }
}

/// Anchors' embeddings, by sample id (ascending), as stored with an audit.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorVectors {
    pub ids: Vec<i64>,
    pub vectors: Array2<f32>,
}

impl AnchorVectors {
    /// Gathers the given rows of `embeddings`, whose row `r` is sample `ids[r]`.
    pub fn gather(ids: &[i64], embeddings: ndarray::ArrayView2<'_, f32>, rows: &[usize]) -> Self {
        let mut rows = rows.to_vec();
        rows.sort_unstable_by_key(|&r| ids[r]);
        rows.dedup();
        AnchorVectors {
            ids: rows.iter().map(|&r| ids[r]).collect(),
            vectors: embeddings.select(ndarray::Axis(0), &rows),
        }
    }

    /// The embedding of sample `id`, if present.
    pub fn get(&self, id: i64) -> Option<ndarray::ArrayView1<'_, f32>> {
        self.ids
            .binary_search(&id)
            .ok()
            .map(|i| self.vectors.row(i))
    }

    /// The vectors of `ids` (ascending), or `None` if one is missing.
    /// Duplicate ids among these vectors (copies of one sample's embedding)
    /// are harmless.
    pub fn subset(&self, ids: &[i64]) -> Option<AnchorVectors> {
        let mut vectors = Array2::zeros((ids.len(), self.vectors.ncols()));
        for (mut row, &id) in vectors.outer_iter_mut().zip(ids) {
            row.assign(&self.get(id)?);
        }
        Some(AnchorVectors {
            ids: ids.to_vec(),
            vectors,
        })
    }

    /// These vectors and `other`'s, by id.
    pub fn merged(&self, other: &AnchorVectors) -> AnchorVectors {
        let mut all: Vec<(i64, ndarray::ArrayView1<'_, f32>)> = self
            .ids
            .iter()
            .copied()
            .zip(self.vectors.outer_iter())
            .chain(other.ids.iter().copied().zip(other.vectors.outer_iter()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all.dedup_by_key(|(id, _)| *id);
        let dim = self.vectors.ncols().max(other.vectors.ncols());
        let mut vectors = Array2::zeros((all.len(), dim));
        for (mut row, (_, v)) in vectors.outer_iter_mut().zip(&all) {
            row.assign(v);
        }
        AnchorVectors {
            ids: all.iter().map(|(id, _)| *id).collect(),
            vectors,
        }
    }
}

/// A stored calibration.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationRecord {
    pub calibration_id: i64,
    #[serde(flatten)]
    pub calibration: NewCalibration,
}

impl Catalog {
    /// Opens (creating if needed) a catalog for writing, migrating its
    /// schema to the current version.
    pub fn open(path: &Path) -> Result<Catalog> {
        let conn = wait_for_lock(path, || Connection::open(path))?;
        tracing::trace!("catalog opened for writing");
        let catalog = Catalog {
            conn,
            path: path.to_path_buf(),
        };
        // Known shortcoming of the bundled DuckDB 2.0: checkpointing this
        // catalog after a hull calibration was stored (the demo's steps)
        // failed with "Information loss on integer cast: value 73955
        // outside of target range [0, 65535]" and left the connection
        // unusable; the commit itself was durable, and DuckDB's Python
        // client at the same version checkpointed the same log without
        // error. Turning off the string compressions (fsst, dictionary,
        // zstd) one by one did not help; writing segments uncompressed did.
        // Embeddings and latent codes are near-random floats that compress
        // little, so the cost is small; lift this when a DuckDB release
        // checkpoints the demo's catalog compressed (`make demo` shows it).
        catalog
            .conn
            .execute_batch("SET force_compression = 'uncompressed'")
            .map_err(|e| Error::catalog("configure storage", e))?;
        catalog.migrate()?;
        tracing::trace!("catalog schema checked");
        Ok(catalog)
    }

    /// Opens an existing catalog read-only (other readers may share it).
    pub fn open_read_only(path: &Path) -> Result<Catalog> {
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no catalog at this path"),
            ));
        }
        let conn = wait_for_lock(path, || {
            let config = Config::default().access_mode(duckdb::AccessMode::ReadOnly)?;
            Connection::open_with_flags(path, config)
        })?;
        tracing::trace!("catalog opened read-only");
        let catalog = Catalog {
            conn,
            path: path.to_path_buf(),
        };
        let version = catalog.schema_version()?;
        tracing::trace!("schema version read");
        if version > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                path: path.into(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            // An older catalog: migrate it once (briefly as a writer), so
            // that readers see the tables and views this program expects.
            drop(catalog);
            drop(Catalog::open(path)?);
            return Catalog::open_read_only(path);
        }
        Ok(catalog)
    }

    /// Folds the write-ahead log into the database file after each
    /// committed write.
    ///
    /// Why by hand: a checkpoint that fails (see [`Catalog::open`] for the
    /// one we met) then fails in the command that made the write, with the
    /// write named, instead of in whichever later command crosses DuckDB's
    /// automatic 16 MB threshold; and the next open has no log to replay.
    fn checkpoint(&self) -> Result<()> {
        self.conn
            .execute_batch("CHECKPOINT")
            .map_err(|e| Error::catalog("checkpoint", e))
    }

    /// The file this catalog lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection, for ad-hoc queries and tests.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn schema_version(&self) -> Result<i64> {
        // Read first and asked about only if that fails: listing tables
        // (`duckdb_tables()` 7 ms, `information_schema.tables` 20 ms) was a
        // good part of every command's start, and only a new file lacks it.
        if let Ok(version) = self.conn.query_row(
            "SELECT coalesce(max(version), 0) FROM schema_info",
            [],
            |row| row.get(0),
        ) {
            return Ok(version);
        }
        let exists: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM duckdb_tables() \
                 WHERE table_name = 'schema_info' AND schema_name = 'main' \
                 AND database_name = current_database()",
                [],
                |row| row.get(0),
            )
            .map_err(|e| Error::catalog("read schema version", e))?;
        if !exists {
            return Ok(0);
        }
        self.conn
            .query_row(
                "SELECT coalesce(max(version), 0) FROM schema_info",
                [],
                |row| row.get(0),
            )
            .map_err(|e| Error::catalog("read schema version", e))
    }

    fn migrate(&self) -> Result<()> {
        let version = self.schema_version()?;
        tracing::trace!(version, "schema version read");
        if version > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION && version > 0 {
            let drop: String = VIEW_NAMES
                .iter()
                .map(|v| format!("DROP VIEW IF EXISTS {v};\n"))
                .collect();
            self.conn
                .execute_batch(&drop)
                .map_err(|e| Error::catalog("drop views before a migration", e))?;
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let target = index as i64 + 1;
            let sql = format!(
                "BEGIN TRANSACTION;\n{migration}\n\
                 INSERT INTO schema_info (version, tool_version) VALUES ({target}, '{}');\n\
                 COMMIT;",
                crate::VERSION
            );
            if let Err(e) = self.conn.execute_batch(&sql) {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(Error::catalog(
                    format!("migrate schema to version {target}"),
                    e,
                ));
            }
            tracing::info!(version = target, "catalog schema migrated");
        }
        // The views belong to the schema version (a change to
        // `sql/views.sql` comes with a migration), so they are created with
        // the schema and not at every open: recreating them was a write at
        // every open, and even checking that they bind took 38 ms. A view a
        // user dropped is reported by `check` and recreated by `--repair`.
        if version < SCHEMA_VERSION {
            self.create_views()?;
        }
        Ok(())
    }

    /// Creates (or replaces) the views of `sql/views.sql`.
    pub fn create_views(&self) -> Result<()> {
        self.conn
            .execute_batch(VIEWS)
            .map_err(|e| Error::catalog("create views", e))
    }

    /// The views of `sql/views.sql` that are missing or no longer bind.
    pub fn missing_views(&self) -> Vec<&'static str> {
        VIEW_NAMES
            .iter()
            .copied()
            .filter(|view| {
                self.conn
                    .prepare(&format!("SELECT 1 FROM {view} LIMIT 0"))
                    .is_err()
            })
            .collect()
    }

    /// The model's record, if it exists.
    pub fn model(&self, name: &str) -> Result<Option<ModelRecord>> {
        self.conn
            .query_row(
                "SELECT model, generator, latent_dim, embed_dim, params::VARCHAR \
                 FROM models WHERE model = ?",
                params![name],
                |row| {
                    let params: Option<String> = row.get(4)?;
                    Ok(ModelRecord {
                        model: row.get(0)?,
                        generator: row.get(1)?,
                        latent_dim: row.get::<_, i64>(2)? as usize,
                        embed_dim: row.get::<_, i64>(3)? as usize,
                        params: params
                            .and_then(|p| serde_json::from_str(&p).ok())
                            .unwrap_or(serde_json::Value::Null),
                    })
                },
            )
            .optional()
            .map_err(|e| Error::catalog(format!("read model {name:?}"), e))
    }

    /// The model's record, or [`Error::UnknownModel`].
    pub fn require_model(&self, name: &str) -> Result<ModelRecord> {
        self.model(name)?
            .ok_or_else(|| Error::UnknownModel(name.to_string()))
    }

    /// Checks that a model, if it exists, has the same generator and sizes
    /// as `record`; returns whether it exists.
    pub fn check_model(&self, record: &ModelRecord) -> Result<bool> {
        let Some(existing) = self.model(&record.model)? else {
            return Ok(false);
        };
        // Model files behind the same specification may have been replaced
        // (a retrained generator saved under the old name).
        let fingerprint = |r: &ModelRecord| r.params.get("fingerprint").cloned();
        let changed_files = matches!(
            (fingerprint(&existing), fingerprint(record)),
            (Some(a), Some(b)) if a != b
        );
        if changed_files {
            return Err(Error::ModelMismatch {
                model: record.model.clone(),
                existing: format!("model files {}", fingerprint(&existing).unwrap_or_default()),
                requested: format!(
                    "files that now read {} (changed since; use a new --model name)",
                    fingerprint(record).unwrap_or_default()
                ),
            });
        }
        if existing.generator != record.generator
            || existing.latent_dim != record.latent_dim
            || existing.embed_dim != record.embed_dim
        {
            return Err(Error::ModelMismatch {
                model: record.model.clone(),
                existing: format!(
                    "generator {} (latent {}, embedding {})",
                    existing.generator, existing.latent_dim, existing.embed_dim
                ),
                requested: format!(
                    "generator {} (latent {}, embedding {})",
                    record.generator, record.latent_dim, record.embed_dim
                ),
            });
        }
        Ok(true)
    }

    /// Commits a batch and its samples (and its model, if new) in one
    /// transaction.
    pub fn insert_batch(&mut self, batch: &NewBatch<'_>) -> Result<BatchRecord> {
        let model = batch.model;
        let exists = self.check_model(model)?;
        let n = batch.embeddings.nrows();
        if batch.embeddings.ncols() != model.embed_dim {
            return Err(Error::Dimension {
                what: format!("embeddings for model {:?}", model.model),
                expected: model.embed_dim,
                got: batch.embeddings.ncols(),
            });
        }
        if let Some(latents) = batch.latents {
            if latents.ncols() != model.latent_dim {
                return Err(Error::Dimension {
                    what: format!("latent codes for model {:?}", model.model),
                    expected: model.latent_dim,
                    got: latents.ncols(),
                });
            }
            assert_eq!(latents.nrows(), n, "one latent code per embedding");
        }
        let tx = self
            .conn
            .transaction()
            .map_err(|e| Error::catalog("begin batch", e))?;
        if !exists {
            tx.execute(
                "INSERT INTO models (model, generator, latent_dim, embed_dim, params) \
                 VALUES (?, ?, ?, ?, ?::JSON)",
                params![
                    model.model,
                    model.generator,
                    model.latent_dim as i64,
                    model.embed_dim as i64,
                    model.params.to_string()
                ],
            )
            .map_err(|e| Error::catalog(format!("create model {:?}", model.model), e))?;
        }
        let (batch_id, first_sample_id): (i64, i64) = tx
            .query_row(
                "SELECT (SELECT coalesce(max(batch_id), 0) + 1 FROM batches), \
                        (SELECT coalesce(max(sample_id), 0) + 1 FROM samples)",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|e| Error::catalog("allocate batch ids", e))?;
        tx.execute(
            "INSERT INTO batches (batch_id, model, source, seed, n, calibration_id, chunk, run_n) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                batch_id,
                model.model,
                batch.source,
                batch.seed,
                n as i64,
                batch.calibration_id,
                batch.chunk,
                batch.run_n as i64
            ],
        )
        .map_err(|e| Error::catalog("insert batch", e))?;
        let rows = SampleRows {
            first_sample_id,
            model: &model.model,
            batch_id,
            latents: batch.latents,
            embeddings: batch.embeddings,
        };
        {
            let mut appender = tx
                .appender("samples")
                .map_err(|e| Error::catalog("open the samples appender", e))?;
            for record_batch in rows.record_batches() {
                appender
                    .append_record_batch(record_batch)
                    .map_err(|e| Error::catalog("append samples", e))?;
            }
            appender
                .flush()
                .map_err(|e| Error::catalog("flush samples", e))?;
        }
        tx.commit().map_err(|e| Error::catalog("commit batch", e))?;
        self.checkpoint()?;
        Ok(BatchRecord {
            batch_id,
            model: model.model.clone(),
            first_sample_id,
            n,
            seed: batch.seed,
        })
    }

    /// The batch of `model` whose source records `digest`, if any.
    pub fn batch_with_source_digest(&self, model: &str, digest: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT min(batch_id) FROM batches WHERE model = ? AND ends_with(source, ?)",
                params![model, format!(" {digest}")],
                |row| row.get(0),
            )
            .map_err(|e| Error::catalog("look up imported batches", e))
    }

    /// Number of samples a model holds.
    pub fn sample_count(&self, model: &str) -> Result<usize> {
        self.conn
            .query_row(
                "SELECT count(*) FROM samples WHERE model = ?",
                params![model],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|e| Error::catalog("count samples", e))
    }

    /// Whether every sample of the model has a latent code.
    pub fn all_have_latents(&self, model: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT count(*) = count(latent) FROM samples WHERE model = ?",
                params![model],
                |row| row.get(0),
            )
            .map_err(|e| Error::catalog("check latent codes", e))
    }

    /// The latest audit of a model, if any.
    pub fn latest_audit_id(&self, model: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT max(audit_id) FROM audits WHERE model = ?",
                params![model],
                |row| row.get(0),
            )
            .map_err(|e| Error::catalog("find the latest audit", e))
    }

    /// The stored per-anchor rows of an audit, worst first (most
    /// neighbours, ties to the smallest sample id).
    pub fn anchor_rows(&self, audit_id: i64) -> Result<Vec<AnchorRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT sample_id, neighbors, similarity_sum, expected_similarity, mccs, \
                        coalesce(role, 'random') \
                 FROM anchor_scores WHERE audit_id = ? ORDER BY neighbors DESC, sample_id",
            )
            .map_err(|e| Error::catalog("read anchor scores", e))?;
        let rows = stmt
            .query_map(params![audit_id], |row| {
                Ok(AnchorRow {
                    sample_id: row.get(0)?,
                    neighbors: row.get::<_, i64>(1)? as u64,
                    similarity_sum: row.get(2)?,
                    expected_similarity: row.get(3)?,
                    mccs: row.get(4)?,
                    role: AnchorRole::parse(&row.get::<_, String>(5)?),
                })
            })
            .map_err(|e| Error::catalog("read anchor scores", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::catalog("read anchor scores", e))?;
        Ok(rows)
    }

    /// Writes the result of `query` to a Parquet file with DuckDB's own
    /// writer; returns the number of rows written.
    pub fn copy_to_parquet(&self, query: &str, path: &Path) -> Result<usize> {
        let target = crate::ingest::sql_string(&path.display().to_string());
        self.conn
            .execute(&format!("COPY ({query}) TO {target} (FORMAT parquet)"), [])
            .map_err(|e| Error::catalog(format!("write {}", path.display()), e))
    }

    /// Latent codes of the given samples of a model, in the order given;
    /// refuses samples that do not exist or have no code.
    pub fn latents_of(&self, model: &str, ids: &[i64]) -> Result<Array2<f32>> {
        let dim = self.require_model(model)?.latent_dim;
        self.vectors_of(model, ids, "latent", dim)
    }

    /// The stored embeddings of an audit's anchors `anchor_ids` (ascending),
    /// or `None` when some are missing (audits stored before schema version
    /// 4, and searches for modes, which keep none).
    ///
    /// Each anchor's embedding is stored once, with the audit that
    /// introduced it (`sql/schema_v5.sql`), so the audit's chain of parents
    /// is read.
    pub fn anchor_vectors(
        &self,
        audit_id: i64,
        anchor_ids: &[i64],
        dim: usize,
    ) -> Result<Option<AnchorVectors>> {
        // Walked one parent at a time: a chain is a handful of updates, and
        // a recursive query took 13 ms where these take about 1 each.
        let mut stmt = self
            .conn
            .prepare("SELECT parent_audit_id FROM audits WHERE audit_id = ?")
            .map_err(|e| Error::catalog("read an audit's parents", e))?;
        let mut chain = Vec::new();
        let mut next = Some(audit_id);
        while let Some(id) = next {
            if chain.contains(&id) {
                return Err(Error::InvalidArgument(format!(
                    "audit {audit_id}'s chain of parents loops at audit {id}"
                )));
            }
            next = stmt
                .query_row(params![id], |row| row.get::<_, Option<i64>>(0))
                .optional()
                .map_err(|e| Error::catalog("read an audit's parents", e))?
                .ok_or(Error::UnknownAudit(id))?;
            chain.push(id);
        }
        tracing::trace!(?chain, "anchor vectors: chain read");
        // The ids are integers, written into the query so that DuckDB
        // pushes the filter into its scan (audits' rows are stored in the
        // order of their ids, so it reads only theirs); `read_vectors` binds
        // a text and an id, unused here.
        let list: Vec<String> = chain.iter().map(|id| id.to_string()).collect();
        let (ids, vectors) = arrow_io::read_vectors(
            &self.conn,
            &format!(
                "SELECT sample_id, embedding FROM anchor_vectors \
                 WHERE audit_id IN ({}) AND ? IS NOT NULL AND ? IS NOT NULL \
                 ORDER BY sample_id",
                list.join(", ")
            ),
            "anchor vectors",
            audit_id,
            dim,
        )?;
        let stored = AnchorVectors { ids, vectors };
        Ok(stored.subset(anchor_ids))
    }

    /// Embeddings of the given samples of a model, in the order given;
    /// refuses samples that do not exist.
    pub fn embeddings_of(&self, model: &str, ids: &[i64]) -> Result<Array2<f32>> {
        let dim = self.require_model(model)?.embed_dim;
        self.vectors_of(model, ids, "embedding", dim)
    }

    fn vectors_of(
        &self,
        model: &str,
        ids: &[i64],
        column: &str,
        dim: usize,
    ) -> Result<Array2<f32>> {
        // Sample ids are unique across models, so the query selects by id
        // alone and membership in the model is checked here: a `model = ?`
        // predicate made DuckDB scan the whole table (2.5x slower at 100k
        // samples), and so did `embedding IS NOT NULL`, which the schema
        // already guarantees (a NULL latent code is refused by
        // `read_vectors`, naming the sample).
        let of_model = self.sample_ids(model)?;
        if let Some(&id) = ids.iter().find(|id| of_model.binary_search(id).is_err()) {
            return Err(Error::UnknownSample {
                model: model.to_string(),
                sample_id: id,
            });
        }
        let list = ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let list = if list.is_empty() {
            "NULL".to_string()
        } else {
            list
        };
        // `read_vectors` binds the model and a lower id bound; the model is
        // checked above, so its parameter is only bound here.
        let sql = format!(
            "SELECT sample_id, {column} FROM samples WHERE ? IS NOT NULL AND sample_id > ? \
             AND sample_id IN ({list}) ORDER BY sample_id"
        );
        let (found, rows) = arrow_io::read_vectors(&self.conn, &sql, model, i64::MIN, dim)?;
        let mut out = Array2::<f32>::zeros((ids.len(), dim));
        for (i, id) in ids.iter().enumerate() {
            let row = found.binary_search(id).map_err(|_| Error::UnknownSample {
                model: model.to_string(),
                sample_id: *id,
            })?;
            out.row_mut(i).assign(&rows.row(row));
        }
        Ok(out)
    }

    /// The batches of the sampling run of `model` that used `seed`, by
    /// chunk number.
    pub fn run_batches(&self, model: &str, seed: u64) -> Result<Vec<RunBatch>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT batch_id, coalesce(chunk, 0), n, coalesce(run_n, n), source, calibration_id \
                 FROM batches WHERE model = ? AND seed = ? ORDER BY chunk, batch_id",
            )
            .map_err(|e| Error::catalog("read the batches of a run", e))?;
        let rows = stmt
            .query_map(params![model, seed], |row| {
                Ok(RunBatch {
                    batch_id: row.get(0)?,
                    chunk: row.get::<_, i64>(1)? as u32,
                    n: row.get::<_, i64>(2)? as u64,
                    run_n: row.get::<_, i64>(3)? as u64,
                    source: row.get(4)?,
                    calibration_id: row.get(5)?,
                })
            })
            .map_err(|e| Error::catalog("read the batches of a run", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::catalog("read the batches of a run", e))?;
        Ok(rows)
    }

    /// The seed of the model's most recent sampling run, if any.
    pub fn latest_run_seed(&self, model: &str) -> Result<Option<u64>> {
        self.conn
            .query_row(
                "SELECT seed FROM batches WHERE model = ? AND seed IS NOT NULL \
                 ORDER BY batch_id DESC LIMIT 1",
                params![model],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| Error::catalog("find the latest run", e))
    }

    /// Number of distinct sampling runs (seeds) of a model.
    pub fn run_count(&self, model: &str) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT count(DISTINCT seed) FROM batches WHERE model = ?",
                params![model],
                |row| row.get(0),
            )
            .map_err(|e| Error::catalog("count runs", e))
    }

    /// The batches holding the model's samples with ids above `after`
    /// (reads only those samples' rows).
    pub fn batches_after(&self, model: &str, after: i64) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT DISTINCT batch_id FROM samples WHERE model = ? AND sample_id > ? \
                 ORDER BY batch_id",
            )
            .map_err(|e| Error::catalog("list new batches", e))?;
        let rows = stmt
            .query_map(params![model, after], |row| row.get(0))
            .map_err(|e| Error::catalog("list new batches", e))?
            .collect::<std::result::Result<Vec<i64>, _>>()
            .map_err(|e| Error::catalog("list new batches", e))?;
        Ok(rows)
    }

    /// Removes a model and everything that hangs on it (batches, samples,
    /// audits and their scores, calibrations fitted on it) in one
    /// transaction. The caller removes the model's index folder.
    pub fn drop_model(&mut self, model: &str) -> Result<DropCounts> {
        self.require_model(model)?;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| Error::catalog("begin drop", e))?;
        let counts = drop_where(&tx, model, None)?;
        tx.execute("DELETE FROM calibrations WHERE model = ?", params![model])
            .map_err(|e| Error::catalog("drop calibrations", e))?;
        tx.execute("DELETE FROM models WHERE model = ?", params![model])
            .map_err(|e| Error::catalog("drop model", e))?;
        tx.commit().map_err(|e| Error::catalog("commit drop", e))?;
        self.checkpoint()?;
        Ok(counts)
    }

    /// The model a batch belongs to.
    pub fn batch_model(&self, batch_id: i64) -> Result<String> {
        self.conn
            .query_row(
                "SELECT model FROM batches WHERE batch_id = ?",
                params![batch_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| Error::catalog("find batch", e))?
            .ok_or_else(|| Error::InvalidArgument(format!("no batch {batch_id} in the catalog")))
    }

    /// Removes one batch, its samples and every audit of its model that saw
    /// any of them (their scores counted those samples), in one
    /// transaction. The caller removes the model's index folder.
    pub fn drop_batch(&mut self, batch_id: i64) -> Result<(String, DropCounts)> {
        let model = self.batch_model(batch_id)?;
        let tx = self
            .conn
            .transaction()
            .map_err(|e| Error::catalog("begin drop", e))?;
        let counts = drop_where(&tx, &model, Some(batch_id))?;
        tx.commit().map_err(|e| Error::catalog("commit drop", e))?;
        self.checkpoint()?;
        Ok((model, counts))
    }

    /// What dropping a model, or one of its batches, would remove (works
    /// on a read-only catalog).
    pub fn drop_preview(&self, model: &str, batch_id: Option<i64>) -> Result<DropCounts> {
        let (first_id, batch_filter) = drop_scope(&self.conn, batch_id)?;
        let count = |sql: String, p: &[&dyn duckdb::ToSql]| -> Result<usize> {
            self.conn
                .query_row(&sql, p, |row| row.get::<_, i64>(0))
                .map(|n| n as usize)
                .map_err(|e| Error::catalog("preview the drop", e))
        };
        Ok(DropCounts {
            batches: count(
                format!("SELECT count(*) FROM batches WHERE model = ? {batch_filter}"),
                &[&model],
            )?,
            samples: count(
                format!("SELECT count(*) FROM samples WHERE model = ? {batch_filter}"),
                &[&model],
            )?,
            audits: count(
                format!("SELECT count(*) FROM audits WHERE {DROP_AUDITS}"),
                &[&model, &first_id],
            )?,
        })
    }

    /// A stored audit's summary.
    pub fn audit(&self, audit_id: i64) -> Result<AuditRecord> {
        self.conn
            .query_row(
                &format!("{AUDIT_COLUMNS} WHERE audit_id = ?"),
                params![audit_id],
                audit_record,
            )
            .optional()
            .map_err(|e| Error::catalog(format!("read audit {audit_id}"), e))?
            .ok_or(Error::UnknownAudit(audit_id))
    }

    /// The id of the model's latest audit of one of `kinds`.
    pub fn latest_audit_of_kinds(&self, model: &str, kinds: &[&str]) -> Result<Option<i64>> {
        let kinds: Vec<String> = kinds
            .iter()
            .map(|k| format!("'{}'", k.replace('\'', "''")))
            .collect();
        self.conn
            .query_row(
                &format!(
                    "SELECT max(audit_id) FROM audits WHERE model = ? AND kind IN ({})",
                    kinds.join(", ")
                ),
                params![model],
                |row| row.get(0),
            )
            .map_err(|e| Error::catalog("find the latest audit", e))
    }

    /// Every audit of a model, oldest first.
    pub fn audits(&self, model: &str) -> Result<Vec<AuditRecord>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "{AUDIT_COLUMNS} WHERE model = ? ORDER BY audit_id"
            ))
            .map_err(|e| Error::catalog("list audits", e))?;
        let rows = stmt
            .query_map(params![model], audit_record)
            .map_err(|e| Error::catalog("list audits", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::catalog("list audits", e))?;
        Ok(rows)
    }

    /// Stores a calibration; returns its id.
    pub fn insert_calibration(&mut self, c: &NewCalibration) -> Result<i64> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| Error::catalog("begin calibration", e))?;
        let id: i64 = tx
            .query_row(
                "SELECT coalesce(max(calibration_id), 0) + 1 FROM calibrations",
                [],
                |row| row.get(0),
            )
            .map_err(|e| Error::catalog("allocate calibration id", e))?;
        tx.execute(
            "INSERT INTO calibrations (calibration_id, model, method, audit_id, mode_sample_id, \
             theta, radius, acceptance_rate, mode_rate_before, mode_rate_after, seed, params, \
             tool_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::JSON, ?)",
            params![
                id,
                c.model,
                c.method,
                c.audit_id,
                c.mode_sample_id,
                c.theta,
                c.radius,
                c.acceptance_rate,
                c.mode_rate_before,
                c.mode_rate_after,
                c.seed,
                c.params.to_string(),
                crate::VERSION
            ],
        )
        .map_err(|e| Error::catalog("insert calibration", e))?;
        tx.commit()
            .map_err(|e| Error::catalog("commit calibration", e))?;
        self.checkpoint()?;
        Ok(id)
    }

    /// A stored calibration.
    pub fn calibration(&self, calibration_id: i64) -> Result<CalibrationRecord> {
        self.conn
            .query_row(
                "SELECT calibration_id, model, method, audit_id, mode_sample_id, theta, radius, \
                        acceptance_rate, mode_rate_before, mode_rate_after, seed, params::VARCHAR \
                 FROM calibrations WHERE calibration_id = ?",
                params![calibration_id],
                |row| {
                    let params: String = row.get(11)?;
                    Ok(CalibrationRecord {
                        calibration_id: row.get(0)?,
                        calibration: NewCalibration {
                            model: row.get(1)?,
                            method: row.get(2)?,
                            audit_id: row.get(3)?,
                            mode_sample_id: row.get(4)?,
                            theta: row.get(5)?,
                            radius: row.get(6)?,
                            acceptance_rate: row.get(7)?,
                            mode_rate_before: row.get(8)?,
                            mode_rate_after: row.get(9)?,
                            seed: row.get(10)?,
                            params: serde_json::from_str(&params)
                                .unwrap_or(serde_json::Value::Null),
                        },
                    })
                },
            )
            .optional()
            .map_err(|e| Error::catalog(format!("read calibration {calibration_id}"), e))?
            .ok_or_else(|| {
                Error::InvalidArgument(format!("no calibration {calibration_id} in the catalog"))
            })
    }

    /// The calibrations the batches of a model were drawn through.
    pub fn batch_calibrations(&self, model: &str) -> Result<Vec<(i64, i64)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT calibration_id, sum(n)::BIGINT FROM batches \
                 WHERE model = ? AND calibration_id IS NOT NULL GROUP BY ALL ORDER BY 1",
            )
            .map_err(|e| Error::catalog("read batch calibrations", e))?;
        let rows = stmt
            .query_map(params![model], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(|e| Error::catalog("read batch calibrations", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::catalog("read batch calibrations", e))?;
        Ok(rows)
    }

    /// Sample ids of a model, ascending. Read through Arrow: row by row, a
    /// million ids took longer than the update that asked for them.
    pub fn sample_ids(&self, model: &str) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT sample_id FROM samples WHERE model = ? ORDER BY sample_id")
            .map_err(|e| Error::catalog("list samples", e))?;
        let mut ids = Vec::new();
        for batch in stmt
            .query_arrow(params![model])
            .map_err(|e| Error::catalog("list samples", e))?
        {
            ids.extend_from_slice(batch.column(0).as_primitive::<Int64Type>().values());
        }
        Ok(ids)
    }

    /// How many samples of a model have an id of at most `through`, and the
    /// largest of those ids. As ids only grow and a drop removes every audit
    /// that saw a dropped sample, an audit's samples are all still there
    /// exactly when this returns its sample count and last id.
    pub fn samples_through(&self, model: &str, through: i64) -> Result<(u64, Option<i64>)> {
        self.conn
            .query_row(
                "SELECT count(*), max(sample_id) FROM samples WHERE model = ? AND sample_id <= ?",
                params![model, through],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)),
            )
            .map_err(|e| Error::catalog("count samples", e))
    }

    /// Embeddings of a model's samples with `after < sample_id`, ascending
    /// by id, with their ids.
    pub fn embeddings(&self, model: &str, after: i64) -> Result<(Vec<i64>, Array2<f32>)> {
        let record = self.require_model(model)?;
        arrow_io::read_vectors(
            &self.conn,
            "SELECT sample_id, embedding FROM samples \
             WHERE model = ? AND sample_id > ? ORDER BY sample_id",
            model,
            after,
            record.embed_dim,
        )
    }

    /// Latent codes of a model's samples with `after < sample_id`; samples
    /// imported without codes are refused.
    pub fn latents(&self, model: &str, after: i64) -> Result<(Vec<i64>, Array2<f32>)> {
        let record = self.require_model(model)?;
        arrow_io::read_vectors(
            &self.conn,
            "SELECT sample_id, latent FROM samples \
             WHERE model = ? AND sample_id > ? ORDER BY sample_id",
            model,
            after,
            record.latent_dim,
        )
    }

    /// One sample's embedding and latent code (if stored).
    pub fn sample(&self, model: &str, sample_id: i64) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let (ids, embeddings) = arrow_io::read_vectors(
            &self.conn,
            "SELECT sample_id, embedding FROM samples WHERE model = ? AND sample_id = ?",
            model,
            sample_id,
            self.require_model(model)?.embed_dim,
        )?;
        if ids.is_empty() {
            return Err(Error::UnknownSample {
                model: model.to_string(),
                sample_id,
            });
        }
        let (with_latent, latents) = arrow_io::read_vectors(
            &self.conn,
            "SELECT sample_id, latent FROM samples \
             WHERE model = ? AND sample_id = ? AND latent IS NOT NULL",
            model,
            sample_id,
            self.require_model(model)?.latent_dim,
        )?;
        let latent = (!with_latent.is_empty()).then(|| latents.row(0).to_vec());
        Ok((embeddings.row(0).to_vec(), latent))
    }

    /// Stores an audit, its anchors' scores and the embeddings of the
    /// anchors it `introduced` (all of them for a random-anchor audit, the
    /// added ones for an update; see `sql/schema_v5.sql`) in one
    /// transaction; returns its id.
    pub fn insert_audit(
        &mut self,
        audit: &NewAudit,
        rows: &[AnchorRow],
        introduced: Option<&AnchorVectors>,
    ) -> Result<i64> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| Error::catalog("begin audit", e))?;
        let audit_id: i64 = tx
            .query_row(
                "SELECT coalesce(max(audit_id), 0) + 1 FROM audits",
                [],
                |row| row.get(0),
            )
            .map_err(|e| Error::catalog("allocate audit id", e))?;
        tx.execute(
            "INSERT INTO audits (audit_id, model, kind, parent_audit_id, theta, radius, \
             n_samples, max_sample_id, n_anchors, search, mccs_mean, mccs_std, mccs_max, \
             worst_sample_id, worst_neighbors, elapsed_s, tool_version, params) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::JSON)",
            params![
                audit_id,
                audit.model,
                audit.kind,
                audit.parent_audit_id,
                audit.theta,
                audit.radius,
                audit.n_samples as i64,
                audit.max_sample_id,
                audit.n_anchors as i64,
                audit.search,
                audit.mccs_mean,
                audit.mccs_std,
                audit.mccs_max,
                audit.worst_sample_id,
                audit.worst_neighbors.map(|n| n as i64),
                audit.elapsed_s,
                crate::VERSION,
                audit.params.to_string()
            ],
        )
        .map_err(|e| Error::catalog("insert audit", e))?;
        {
            let mut appender = tx
                .appender("anchor_scores")
                .map_err(|e| Error::catalog("open appender", e))?;
            for row in rows {
                appender
                    .append_row(params![
                        audit_id,
                        row.sample_id,
                        row.neighbors as i64,
                        row.similarity_sum,
                        row.expected_similarity,
                        row.mccs,
                        row.role.as_str()
                    ])
                    .map_err(|e| Error::catalog("append anchor scores", e))?;
            }
            appender
                .flush()
                .map_err(|e| Error::catalog("flush anchor scores", e))?;
        }
        if let Some(vectors) = introduced.filter(|v| !v.ids.is_empty()) {
            let mut anchors: Vec<i64> = rows.iter().map(|r| r.sample_id).collect();
            anchors.sort_unstable();
            if let Some(id) = vectors
                .ids
                .iter()
                .find(|id| anchors.binary_search(id).is_err())
            {
                return Err(Error::InvalidArgument(format!(
                    "an embedding was given for sample {id}, which is not an anchor of the audit"
                )));
            }
            let batch = arrow_io::anchor_vector_rows(audit_id, vectors);
            let mut appender = tx
                .appender("anchor_vectors")
                .map_err(|e| Error::catalog("open appender", e))?;
            appender
                .append_record_batch(batch)
                .map_err(|e| Error::catalog("append anchor vectors", e))?;
            appender
                .flush()
                .map_err(|e| Error::catalog("flush anchor vectors", e))?;
        }
        tx.commit().map_err(|e| Error::catalog("commit audit", e))?;
        tracing::debug!("audit {audit_id} committed");
        self.checkpoint()?;
        tracing::debug!("audit {audit_id} checkpointed");
        Ok(audit_id)
    }

    /// Every model with its counts and latest audit. (The query spells out
    /// what the `latest_audit` view says: the program's own queries do not
    /// depend on views a user may have dropped.)
    pub fn model_summaries(&self) -> Result<Vec<ModelSummary>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT m.model, m.generator, m.latent_dim, m.embed_dim, \
                        (SELECT count(*) FROM samples s WHERE s.model = m.model), \
                        (SELECT count(*) FROM batches b WHERE b.model = m.model), \
                        l.audit_id, l.kind, l.mccs_mean, l.worst_sample_id \
                 FROM models m LEFT JOIN ( \
                     SELECT * FROM audits \
                     QUALIFY row_number() OVER (PARTITION BY model ORDER BY audit_id DESC) = 1 \
                 ) l USING (model) ORDER BY m.model",
            )
            .map_err(|e| Error::catalog("list models", e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(ModelSummary {
                    model: row.get(0)?,
                    generator: row.get(1)?,
                    latent_dim: row.get::<_, i64>(2)? as usize,
                    embed_dim: row.get::<_, i64>(3)? as usize,
                    n_samples: row.get(4)?,
                    n_batches: row.get(5)?,
                    latest_audit_id: row.get(6)?,
                    latest_audit_kind: row.get(7)?,
                    latest_mccs_mean: row.get(8)?,
                    latest_worst_sample_id: row.get(9)?,
                })
            })
            .map_err(|e| Error::catalog("list models", e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::catalog("list models", e))?;
        Ok(rows)
    }

    /// Runs a query and returns its columns and rows as JSON values.
    pub fn query_json(&self, sql: &str) -> Result<(Vec<String>, Vec<Vec<serde_json::Value>>)> {
        query_to_json(&self.conn, sql)
    }
}

/// The audits a drop removes: those of the model that saw a sample at or
/// after the first dropped one. Audits from before schema 3 (which do not
/// record what they saw) go too.
const DROP_AUDITS: &str = "model = ? AND (max_sample_id IS NULL OR max_sample_id >= ?)";

/// The first sample id a drop removes, and the filter that restricts a drop
/// to one batch (none for a whole model).
fn drop_scope(conn: &Connection, batch_id: Option<i64>) -> Result<(i64, String)> {
    let Some(id) = batch_id else {
        return Ok((i64::MIN, String::new()));
    };
    let first: i64 = conn
        .query_row(
            "SELECT coalesce(min(sample_id), 9223372036854775807) FROM samples WHERE batch_id = ?",
            params![id],
            |row| row.get(0),
        )
        .map_err(|e| Error::catalog("find the batch's samples", e))?;
    Ok((first, format!("AND batch_id = {id}")))
}

/// Deletes the samples of a model (or of one of its batches), their
/// batches, and the audits that saw any of them with their scores.
fn drop_where(conn: &Connection, model: &str, batch_id: Option<i64>) -> Result<DropCounts> {
    let fail = |e| Error::catalog("drop samples", e);
    let (first_id, batch_filter) = drop_scope(conn, batch_id)?;
    conn.execute(
        &format!(
            "DELETE FROM anchor_scores WHERE audit_id IN \
             (SELECT audit_id FROM audits WHERE {DROP_AUDITS})"
        ),
        params![model, first_id],
    )
    .map_err(fail)?;
    conn.execute(
        &format!(
            "DELETE FROM anchor_vectors WHERE audit_id IN \
             (SELECT audit_id FROM audits WHERE {DROP_AUDITS})"
        ),
        params![model, first_id],
    )
    .map_err(fail)?;
    let audits = conn
        .execute(
            &format!("DELETE FROM audits WHERE {DROP_AUDITS}"),
            params![model, first_id],
        )
        .map_err(fail)?;
    let samples = conn
        .execute(
            &format!("DELETE FROM samples WHERE model = ? {batch_filter}"),
            params![model],
        )
        .map_err(fail)?;
    let batches = conn
        .execute(
            &format!("DELETE FROM batches WHERE model = ? {batch_filter}"),
            params![model],
        )
        .map_err(fail)?;
    Ok(DropCounts {
        batches,
        samples,
        audits,
    })
}

/// The columns [`audit_record`] reads, in its order.
const AUDIT_COLUMNS: &str = "SELECT audit_id, model, kind, parent_audit_id, theta, radius, \
     n_samples, max_sample_id, n_anchors, search, mccs_mean, mccs_std, mccs_max, \
     worst_sample_id, worst_neighbors, elapsed_s, created_at::VARCHAR, params::VARCHAR \
     FROM audits";

fn audit_record(row: &duckdb::Row<'_>) -> duckdb::Result<AuditRecord> {
    let params: Option<String> = row.get(17)?;
    Ok(AuditRecord {
        audit_id: row.get(0)?,
        model: row.get(1)?,
        kind: row.get(2)?,
        parent_audit_id: row.get(3)?,
        theta: row.get(4)?,
        radius: row.get(5)?,
        n_samples: row.get::<_, i64>(6)? as u64,
        max_sample_id: row.get(7)?,
        n_anchors: row.get::<_, i64>(8)? as u64,
        search: row.get(9)?,
        mccs_mean: row.get(10)?,
        mccs_std: row.get(11)?,
        mccs_max: row.get(12)?,
        worst_sample_id: row.get(13)?,
        worst_neighbors: row.get::<_, Option<i64>>(14)?.map(|n| n as u64),
        elapsed_s: row.get(15)?,
        created_at: row.get(16)?,
        params: params
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or(serde_json::Value::Null),
    })
}

/// Opens the catalog, waiting while another process holds it.
///
/// Every modeaudit process holds the file only briefly (to read its inputs,
/// or to commit), so a conflict usually clears within a second; without the
/// wait, a long `sample` run would die at a chunk's commit whenever a
/// reader such as `modeaudit sql` happened to be in. The wait is 10 s by
/// default (`MODEAUDIT_LOCK_WAIT`, in seconds; 0 fails at once); past it the
/// error says the catalog is in use.
fn wait_for_lock(path: &Path, open: impl Fn() -> duckdb::Result<Connection>) -> Result<Connection> {
    let wait = std::env::var("MODEAUDIT_LOCK_WAIT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(10.0);
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        match open().map_err(|e| open_error(path, e)) {
            Err(Error::CatalogLocked { .. }) if started.elapsed().as_secs_f64() < wait => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// Turns DuckDB's lock conflict into [`Error::CatalogLocked`].
fn open_error(path: &Path, e: duckdb::Error) -> Error {
    let text = e.to_string();
    if text.contains("Could not set lock") || text.contains("Conflicting lock") {
        Error::CatalogLocked {
            path: path.to_path_buf(),
        }
    } else {
        Error::catalog(format!("open {}", path.display()), e)
    }
}
