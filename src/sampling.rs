//! Drawing samples from a black box into the catalog.
//!
//! The catalog is opened twice, briefly: once to check the model and the
//! seed, and once to commit the batch. Generating the embeddings, the long
//! part, happens with the catalog closed, so readers can get in meanwhile.

use std::path::Path;

use serde::Serialize;

use crate::blackbox::{self, BlackBox, RunOptions};
use crate::catalog::{Catalog, ModelRecord, NewBatch};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::vector::normalize_rows;

/// What `sample` did.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    pub model: String,
    pub generator: String,
    pub batch_id: i64,
    pub seed: u64,
    pub n: usize,
    pub first_sample_id: i64,
    pub last_sample_id: i64,
    pub model_samples: usize,
    pub elapsed_s: f64,
    pub samples_per_s: f64,
    /// The calibration the codes were drawn through, if any.
    pub calibration_id: Option<i64>,
    /// Codes drawn from the prior to get the `n` kept (more than `n` for a
    /// rejection sampler).
    pub prior_draws: u64,
}

/// The seed of a batch drawn without `--seed`: a hash of the model name and
/// the batch's number within the model, so reruns are reproducible and
/// batches of one model never share a seed.
pub fn derived_seed(model: &str, batch_number: i64) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(model.as_bytes());
    hasher.update(&batch_number.to_le_bytes());
    hasher.digest()
}

/// Appends `n` samples of `spec` to `model`, with default run options.
pub fn sample(
    catalog_path: &Path,
    model: &str,
    spec: &str,
    n: usize,
    seed: Option<u64>,
    progress: Progress,
) -> Result<SampleReport> {
    sample_with(
        catalog_path,
        model,
        spec,
        n,
        seed,
        &RunOptions::default(),
        progress,
    )
}

/// Appends `n` samples of `spec` to `model`.
pub fn sample_with(
    catalog_path: &Path,
    model: &str,
    spec: &str,
    n: usize,
    seed: Option<u64>,
    options: &RunOptions,
    progress: Progress,
) -> Result<SampleReport> {
    let draw = |n: usize, k: usize, seed: u64| (blackbox::draw_latents(n, k, seed), n as u64);
    sample_from(
        catalog_path,
        model,
        spec,
        None,
        n,
        seed,
        options,
        progress,
        &draw,
    )
}

/// Appends `n` samples drawn through a stored calibration to `model`: the
/// calibration's source model gives the black box, the calibration the
/// latent codes, and the batch records the calibration.
pub fn sample_calibrated(
    catalog_path: &Path,
    model: &str,
    calibration_id: i64,
    n: usize,
    seed: Option<u64>,
    options: &RunOptions,
    progress: Progress,
) -> Result<SampleReport> {
    let (record, calibration) = crate::calibrate::load(catalog_path, calibration_id)?;
    let spec = Catalog::open_read_only(catalog_path)?
        .require_model(&record.calibration.model)?
        .generator;
    let draw = |n: usize, k: usize, seed: u64| {
        assert_eq!(
            k,
            calibration.latent_dim(),
            "latent size checked against the black box"
        );
        calibration.draw(n, seed)
    };
    sample_from(
        catalog_path,
        model,
        &spec,
        Some(&record),
        n,
        seed,
        options,
        progress,
        &draw,
    )
}

/// Draws latent codes: `(n, latent size, seed) -> (codes, prior draws)`.
type Draw<'a> = dyn Fn(usize, usize, u64) -> (ndarray::Array2<f32>, u64) + 'a;

#[allow(clippy::too_many_arguments)]
fn sample_from(
    catalog_path: &Path,
    model: &str,
    spec: &str,
    calibration: Option<&crate::catalog::CalibrationRecord>,
    n: usize,
    seed: Option<u64>,
    options: &RunOptions,
    progress: Progress,
    draw: &Draw<'_>,
) -> Result<SampleReport> {
    let started = std::time::Instant::now();
    if n == 0 {
        return Err(Error::InvalidArgument("--n must be at least 1".into()));
    }
    if options.batch == Some(0) {
        return Err(Error::InvalidArgument("--batch must be at least 1".into()));
    }
    let black_box = blackbox::open(spec, options)?;
    let mut params = black_box.params();
    if let (Some(c), Some(object)) = (calibration, params.as_object_mut()) {
        object.insert(
            "calibration".into(),
            serde_json::json!({
                "calibration_id": c.calibration_id,
                "source_model": c.calibration.model,
                "method": c.calibration.method,
            }),
        );
        if black_box.latent_dim() != c.calibration.params_latent_dim() {
            return Err(Error::Dimension {
                what: format!("calibration {} for the black box {spec}", c.calibration_id),
                expected: black_box.latent_dim(),
                got: c.calibration.params_latent_dim(),
            });
        }
    }
    let record = ModelRecord {
        model: model.to_string(),
        generator: black_box.spec(),
        latent_dim: black_box.latent_dim(),
        embed_dim: black_box.embed_dim(),
        params,
    };
    let seed = {
        let catalog = Catalog::open(catalog_path)?;
        catalog.check_model(&record)?;
        let seed = match seed {
            Some(seed) => seed,
            None => derived_seed(model, catalog.batch_count(model)? + 1),
        };
        if let Some(batch_id) = catalog.batch_with_seed(model, seed)? {
            return Err(Error::SeedReused {
                model: model.to_string(),
                seed,
                batch_id,
            });
        }
        seed
    };
    let (latents, drawn) = draw(n, black_box.latent_dim(), seed);
    let chunk = options.batch.unwrap_or_else(|| black_box.preferred_batch());
    let embeddings = embed_all(black_box.as_ref(), &latents, spec, chunk, progress)?;
    // Stop an external program before taking the catalog.
    drop(black_box);
    let mut catalog = Catalog::open(catalog_path)?;
    // Another process may have used the seed while we computed.
    if let Some(batch_id) = catalog.batch_with_seed(model, seed)? {
        return Err(Error::SeedReused {
            model: model.to_string(),
            seed,
            batch_id,
        });
    }
    let batch = catalog.insert_batch(&NewBatch {
        model: &record,
        source: &record.generator,
        seed: Some(seed),
        calibration_id: calibration.map(|c| c.calibration_id),
        latents: Some(&latents),
        embeddings: &embeddings,
    })?;
    let model_samples = catalog.sample_count(model)?;
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(SampleReport {
        model: model.to_string(),
        generator: record.generator,
        batch_id: batch.batch_id,
        seed,
        n,
        first_sample_id: batch.first_sample_id,
        last_sample_id: batch.first_sample_id + n as i64 - 1,
        model_samples,
        elapsed_s,
        samples_per_s: n as f64 / elapsed_s.max(1e-9),
        calibration_id: calibration.map(|c| c.calibration_id),
        prior_draws: drawn,
    })
}

/// Embeds all codes in chunks and normalises them, refusing bad rows with
/// their global row number.
fn embed_all(
    black_box: &dyn BlackBox,
    latents: &ndarray::Array2<f32>,
    spec: &str,
    chunk_rows: usize,
    progress: Progress,
) -> Result<ndarray::Array2<f32>> {
    let n = latents.nrows();
    let bar = progress.bar(n as u64, "embedding");
    let mut out = ndarray::Array2::<f32>::zeros((n, black_box.embed_dim()));
    for start in (0..n).step_by(chunk_rows) {
        let end = (start + chunk_rows).min(n);
        let mut chunk = black_box.embed(latents.slice(ndarray::s![start..end, ..]))?;
        if chunk.dim() != (end - start, black_box.embed_dim()) {
            return Err(Error::Generator {
                spec: spec.to_string(),
                reason: format!(
                    "returned {:?} embeddings for {} codes; expected {} x {}",
                    chunk.dim(),
                    end - start,
                    end - start,
                    black_box.embed_dim()
                ),
            });
        }
        normalize_rows(
            chunk.view_mut(),
            &format!("embeddings from {spec} (rows from {start})"),
        )?;
        out.slice_mut(ndarray::s![start..end, ..]).assign(&chunk);
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}
