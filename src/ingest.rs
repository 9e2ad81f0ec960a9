//! Importing embeddings computed elsewhere (`modeaudit ingest`) and writing
//! a model back out (`modeaudit export`).
//!
//! Users who cannot run their generator through modeaudit, or who already
//! have embeddings, bring them as `.npy`, `.npz` or Parquet files. Every
//! vector is checked before anything is written: the right dimension,
//! finite values, and for embeddings a non-zero norm (they are normalised to
//! unit length; latent codes are stored as they are). An import is one batch,
//! committed in one transaction, so a bad row anywhere leaves the catalog as
//! it was.
//!
//! Importing the same file twice would duplicate every sample, which an
//! audit cannot tell from collapse, so each batch records a digest of what it
//! imported and a second import of identical content is refused.

use std::path::{Path, PathBuf};
use std::time::Instant;

use duckdb::Connection;
use duckdb::arrow::array::{Array, AsArray, RecordBatch};
use duckdb::arrow::datatypes::Float32Type;
use ndarray::Array2;
use serde::Serialize;

use crate::catalog::{Catalog, ModelRecord, NewBatch};
use crate::error::{Error, Result};
use crate::vecfile::{self, FileKind};
use crate::vector::{check_finite_rows, normalize_rows};

/// Array names tried, in order, for embeddings in an `.npz` archive.
const EMBEDDING_NAMES: &[&str] = &["embeddings", "embedding", "emb", "features"];
/// Array names tried, in order, for latent codes in an `.npz` archive.
const LATENT_NAMES: &[&str] = &["latents", "latent", "z", "codes"];

/// What to import.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub model: String,
    pub embeddings: PathBuf,
    /// Latent codes, one row per embedding, in the same order.
    pub latents: Option<PathBuf>,
    /// The `.npz` array or Parquet column of the embeddings (default: the
    /// only array, `embeddings`, ...; the Parquet column `embedding`).
    pub embedding_key: Option<String>,
    /// The `.npz` array or Parquet column of the latent codes (default: the
    /// only array, `latents`, ...; the Parquet column `latent`).
    pub latent_key: Option<String>,
}

/// What `ingest` did.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub model: String,
    pub batch_id: i64,
    pub n: usize,
    pub embed_dim: usize,
    pub latent_dim: Option<usize>,
    pub first_sample_id: i64,
    pub last_sample_id: i64,
    pub source: String,
    pub model_samples: usize,
    pub elapsed_s: f64,
}

/// Reads a matrix from any supported file; `key` names the `.npz` array or
/// Parquet column.
pub fn read_any(
    path: &Path,
    key: Option<&str>,
    npz_names: &[&str],
    column: &str,
) -> Result<Array2<f32>> {
    match vecfile::kind_of(path)? {
        FileKind::Npy | FileKind::Npz => vecfile::read_matrix(path, key, npz_names),
        FileKind::Parquet => read_parquet_column(path, key.unwrap_or(column)),
    }
}

/// Reads a list-of-floats column of a Parquet file through DuckDB's own
/// Parquet reader, refusing other column types, NULL rows and rows of
/// another length with the row's number (counted from 0, in file order).
pub fn read_parquet_column(path: &Path, column: &str) -> Result<Array2<f32>> {
    let fail = |reason: String| Error::VectorFile {
        path: path.to_path_buf(),
        reason,
    };
    let conn =
        Connection::open_in_memory().map_err(|e| Error::catalog("open DuckDB in memory", e))?;
    let literal = format!("'{}'", path.display().to_string().replace('\'', "''"));
    let columns: Vec<(String, String)> = {
        let mut stmt = conn
            .prepare(&format!("DESCRIBE SELECT * FROM read_parquet({literal})"))
            .map_err(|e| fail(format!("not a readable Parquet file: {e}")))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(|e| fail(format!("not a readable Parquet file: {e}")))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| fail(format!("not a readable Parquet file: {e}")))?
    };
    let Some((_, column_type)) = columns.iter().find(|(name, _)| name == column) else {
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        return Err(fail(format!(
            "has no column {column:?}; its columns are {names:?}"
        )));
    };
    let element = column_type
        .strip_suffix("[]")
        .or_else(|| column_type.rsplit_once('[').map(|(t, _)| t))
        .filter(|_| column_type.ends_with(']'));
    // Decimals (what SQL literals such as 1.5 are typed as) cast exactly
    // enough to float; integers and strings are refused.
    let numeric = element
        .is_some_and(|e| matches!(e, "FLOAT" | "DOUBLE" | "HALF") || e.starts_with("DECIMAL"));
    if !numeric {
        return Err(fail(format!(
            "column {column:?} has type {column_type}; expected a list of floats (FLOAT[] or DOUBLE[])"
        )));
    }
    let quoted = format!("\"{}\"", column.replace('"', "\"\""));
    let sql = format!("SELECT CAST({quoted} AS FLOAT[]) FROM read_parquet({literal})");
    let mut stmt = conn
        .prepare(&sql)
        .map_err(|e| fail(format!("cannot read column {column:?}: {e}")))?;
    let batches: Vec<RecordBatch> = stmt
        .query_arrow([])
        .map_err(|e| fail(format!("cannot read column {column:?}: {e}")))?
        .collect();
    let mut dim: Option<usize> = None;
    let mut data: Vec<f32> = Vec::new();
    let mut row = 0usize;
    for batch in &batches {
        let lists = batch.column(0).as_list::<i32>();
        for i in 0..batch.num_rows() {
            if lists.is_null(i) {
                return Err(fail(format!("column {column:?}: row {row} is NULL")));
            }
            let values = lists.value(i);
            let values = values.as_primitive::<Float32Type>();
            if values.null_count() > 0 {
                return Err(fail(format!(
                    "column {column:?}: row {row} holds a NULL value"
                )));
            }
            match dim {
                None => dim = Some(values.len()),
                Some(d) if d != values.len() => {
                    return Err(fail(format!(
                        "column {column:?}: row {row} has {} values where the rows before have {d}",
                        values.len()
                    )));
                }
                Some(_) => {}
            }
            data.extend_from_slice(values.values());
            row += 1;
        }
    }
    let dim = dim.unwrap_or(0);
    Array2::from_shape_vec((row, dim), data).map_err(|e| fail(e.to_string()))
}

/// Digest of what a batch imports, stable across runs and machines.
fn content_digest(embeddings: &Array2<f32>, latents: Option<&Array2<f32>>) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&(embeddings.nrows() as u64).to_le_bytes());
    hasher.update(&(embeddings.ncols() as u64).to_le_bytes());
    for x in embeddings.iter() {
        hasher.update(&x.to_le_bytes());
    }
    if let Some(z) = latents {
        for x in z.iter() {
            hasher.update(&x.to_le_bytes());
        }
    }
    format!("xxh3:{:016x}", hasher.digest())
}

/// Imports one file of embeddings (and optionally their latent codes) as
/// one batch.
pub fn ingest(catalog_path: &Path, options: &IngestOptions) -> Result<IngestReport> {
    let started = Instant::now();
    let path = &options.embeddings;
    let mut embeddings = read_any(
        path,
        options.embedding_key.as_deref(),
        EMBEDDING_NAMES,
        "embedding",
    )?;
    let latents = match &options.latents {
        Some(p) => Some(read_any(
            p,
            options.latent_key.as_deref(),
            LATENT_NAMES,
            "latent",
        )?),
        None => None,
    };
    let what = path.display().to_string();
    if embeddings.nrows() == 0 || embeddings.ncols() == 0 {
        return Err(Error::VectorFile {
            path: path.clone(),
            reason: format!("holds no vectors (shape {:?})", embeddings.dim()),
        });
    }
    if let (Some(z), Some(zpath)) = (&latents, &options.latents) {
        if z.nrows() != embeddings.nrows() {
            return Err(Error::VectorFile {
                path: zpath.clone(),
                reason: format!(
                    "holds {} latent codes for the {} embeddings of {what}; give one per embedding",
                    z.nrows(),
                    embeddings.nrows()
                ),
            });
        }
        check_finite_rows(z, &zpath.display().to_string())?;
    }
    let digest = content_digest(&embeddings, latents.as_ref());
    normalize_rows(embeddings.view_mut(), &what)?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
    let source = format!("ingest:{} {digest}", absolute.display());

    let mut catalog = Catalog::open(catalog_path)?;
    let record = match catalog.model(&options.model)? {
        Some(existing) => {
            if existing.embed_dim != embeddings.ncols() {
                return Err(Error::Dimension {
                    what: format!("embeddings of {what} for model {:?}", options.model),
                    expected: existing.embed_dim,
                    got: embeddings.ncols(),
                });
            }
            if let Some(z) = &latents
                && existing.latent_dim != z.ncols()
            {
                return Err(Error::Dimension {
                    what: format!(
                        "latent codes of {} for model {:?}",
                        options.latents.as_ref().expect("latents given").display(),
                        options.model
                    ),
                    expected: existing.latent_dim,
                    got: z.ncols(),
                });
            }
            existing
        }
        None => ModelRecord {
            model: options.model.clone(),
            generator: "imported".into(),
            latent_dim: latents.as_ref().map_or(0, |z| z.ncols()),
            embed_dim: embeddings.ncols(),
            params: serde_json::json!({ "kind": "imported", "first_source": source }),
        },
    };
    if let Some(batch_id) = catalog.batch_with_source_digest(&options.model, &digest)? {
        return Err(Error::InvalidArgument(format!(
            "{what}: the same vectors were already imported into model {:?} as batch {batch_id}; \
             importing them again would duplicate every sample, which looks exactly like collapse",
            options.model
        )));
    }
    let batch = catalog.insert_batch(&NewBatch {
        model: &record,
        source: &source,
        seed: None,
        calibration_id: None,
        chunk: 0,
        run_n: embeddings.nrows() as u64,
        latents: latents.as_ref(),
        embeddings: &embeddings,
    })?;
    let model_samples = catalog.sample_count(&options.model)?;
    Ok(IngestReport {
        model: options.model.clone(),
        batch_id: batch.batch_id,
        n: batch.n,
        embed_dim: embeddings.ncols(),
        latent_dim: latents.as_ref().map(|z| z.ncols()),
        first_sample_id: batch.first_sample_id,
        last_sample_id: batch.first_sample_id + batch.n as i64 - 1,
        source,
        model_samples,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The file formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// `sample_ids.npy`, `embeddings.npy`, `latents.npy`, `anchors.npy`,
    /// `anchor_scores.npy`.
    Npy,
    /// `samples.parquet` and `anchor_scores.parquet`, written by DuckDB.
    Parquet,
}

/// What `export` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub model: String,
    pub out: PathBuf,
    pub format: ExportFormat,
    pub n_samples: usize,
    pub audit_id: Option<i64>,
    pub n_anchors: usize,
    pub files: Vec<PathBuf>,
    /// What the files hold, column by column (also in `export.json`).
    pub manifest: serde_json::Value,
}

/// Writes a model's samples and its latest audit's scores to `out`.
pub fn export(
    catalog_path: &Path,
    model: &str,
    out: &Path,
    format: ExportFormat,
) -> Result<ExportReport> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let catalog = Catalog::open_read_only(catalog_path)?;
    let record = catalog.require_model(model)?;
    let audit_id = catalog.latest_audit_id(model)?;
    let mut files = Vec::new();
    let (n_samples, n_anchors) = match format {
        ExportFormat::Npy => {
            let (ids, embeddings) = catalog.embeddings(model, 0)?;
            let write = |name: &str,
                         f: &dyn Fn(
                &Path,
            )
                -> std::result::Result<(), ndarray_npy::WriteNpyError>| {
                let path = out.join(name);
                f(&path).map_err(|e| Error::VectorFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Ok::<PathBuf, Error>(path)
            };
            files.push(write("sample_ids.npy", &|p| {
                ndarray_npy::write_npy(p, &ndarray::Array1::from(ids.clone()))
            })?);
            files.push(write("embeddings.npy", &|p| {
                ndarray_npy::write_npy(p, &embeddings)
            })?);
            if catalog.all_have_latents(model)? && record.latent_dim > 0 {
                let (_, latents) = catalog.latents(model, 0)?;
                files.push(write("latents.npy", &|p| {
                    ndarray_npy::write_npy(p, &latents)
                })?);
            }
            let rows = match audit_id {
                Some(id) => catalog.anchor_rows(id)?,
                None => Vec::new(),
            };
            if audit_id.is_some() {
                let anchors =
                    ndarray::Array1::from(rows.iter().map(|r| r.sample_id).collect::<Vec<_>>());
                let scores = Array2::from_shape_fn((rows.len(), 4), |(i, j)| match j {
                    0 => rows[i].neighbors as f64,
                    1 => rows[i].similarity_sum,
                    2 => rows[i].expected_similarity,
                    _ => rows[i].mccs,
                });
                files.push(write("anchors.npy", &|p| {
                    ndarray_npy::write_npy(p, &anchors)
                })?);
                files.push(write("anchor_scores.npy", &|p| {
                    ndarray_npy::write_npy(p, &scores)
                })?);
            }
            (ids.len(), rows.len())
        }
        ExportFormat::Parquet => {
            let samples = out.join("samples.parquet");
            let n = catalog.copy_to_parquet(
                &format!(
                    "SELECT sample_id, batch_id, latent, embedding FROM samples \
                     WHERE model = {} ORDER BY sample_id",
                    sql_string(model)
                ),
                &samples,
            )?;
            files.push(samples);
            let mut anchors = 0;
            if let Some(id) = audit_id {
                let scores = out.join("anchor_scores.parquet");
                anchors = catalog.copy_to_parquet(
                    &format!(
                        "SELECT sample_id, neighbors, similarity_sum, expected_similarity, mccs \
                         FROM anchor_scores WHERE audit_id = {id} ORDER BY neighbors DESC, sample_id"
                    ),
                    &scores,
                )?;
                files.push(scores);
            }
            (n, anchors)
        }
    };
    let manifest = serde_json::json!({
        "model": model,
        "generator": record.generator,
        "latent_dim": record.latent_dim,
        "embed_dim": record.embed_dim,
        "n_samples": n_samples,
        "audit_id": audit_id,
        "n_anchors": n_anchors,
        "format": format,
        "files": {
            "sample_ids.npy": "int64 [n]: catalog sample ids, ascending; row i of the other arrays",
            "embeddings.npy": "float32 [n, embed_dim]: unit embeddings",
            "latents.npy": "float32 [n, latent_dim]: latent codes (absent if any sample has none)",
            "anchors.npy": "int64 [anchors]: the audit's anchors, worst first",
            "anchor_scores.npy": "float64 [anchors, 4]: neighbors, similarity_sum, expected_similarity, mccs",
            "samples.parquet": "sample_id, batch_id, latent FLOAT[], embedding FLOAT[]",
            "anchor_scores.parquet": "sample_id, neighbors, similarity_sum, expected_similarity, mccs",
        },
        "tool_version": crate::VERSION,
    });
    let manifest_path = out.join("export.json");
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    std::fs::write(&manifest_path, text).map_err(|e| Error::io(&manifest_path, e))?;
    files.push(manifest_path);
    Ok(ExportReport {
        model: model.to_string(),
        out: out.to_path_buf(),
        format,
        n_samples,
        audit_id,
        n_anchors,
        files,
        manifest,
    })
}

/// A SQL string literal.
pub(crate) fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
