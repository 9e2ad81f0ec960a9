//! Drawing samples from a black box into the catalog.
//!
//! A run of `sample` commits in chunks, each chunk its own batch in its own
//! transaction, so a kill loses at most the chunk in flight; rerunning the
//! same command finds the run's committed chunks (they share its seed) and
//! continues after them. The catalog is opened briefly: once to plan the run
//! and once per commit. Generating the embeddings, the long part, happens
//! with the catalog closed, so readers can get in meanwhile.

use std::path::Path;

use serde::Serialize;

use crate::blackbox::{self, BlackBox, RunOptions};
use crate::catalog::{Catalog, ModelRecord, NewBatch};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::vector::normalize_rows;

/// Samples committed per batch by default: a kill loses at most one chunk,
/// and each commit holds the catalog for a fraction of a second.
pub const DEFAULT_CHUNK: usize = 50_000;

/// What `sample` did.
#[derive(Debug, Clone, Serialize)]
pub struct SampleReport {
    pub model: String,
    pub generator: String,
    /// The batches this command committed, one per chunk, in order.
    pub batch_ids: Vec<i64>,
    /// The run's seed, shared by its batches.
    pub seed: u64,
    /// Samples the run asked for.
    pub n: usize,
    /// Samples an interrupted earlier attempt of the same run had already
    /// committed, which this command kept and did not draw again.
    pub resumed: usize,
    /// Samples this command added (`n - resumed`).
    pub added: usize,
    /// First and last sample id this command added (0 when it added none).
    pub first_sample_id: i64,
    pub last_sample_id: i64,
    pub model_samples: usize,
    pub elapsed_s: f64,
    pub samples_per_s: f64,
    /// The calibration the codes were drawn through, if any.
    pub calibration_id: Option<i64>,
    /// Codes drawn from the prior to get the ones kept (more than kept for
    /// a rejection sampler).
    pub prior_draws: u64,
}

/// The seed of a run drawn without `--seed`: a hash of the model name and
/// the run's number within the model, so reruns are reproducible and runs
/// of one model never share a seed.
pub fn derived_seed(model: &str, run_number: i64) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(model.as_bytes());
    hasher.update(&run_number.to_le_bytes());
    hasher.digest()
}

/// The seed of chunk `chunk` of a run whose codes are not a fixed stream
/// (a calibrated sampler rejects a varying number of prior draws): chunk 0
/// uses the run's seed itself.
pub fn chunk_seed(seed: u64, chunk: u32) -> u64 {
    if chunk == 0 {
        return seed;
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(&chunk.to_le_bytes());
    hasher.digest()
}

/// How to run `sample`, beyond what to sample.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// The black box's own options (timeout, batch size, device).
    pub run: RunOptions,
    /// Samples committed per batch.
    pub chunk: usize,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            run: RunOptions::default(),
            chunk: DEFAULT_CHUNK,
        }
    }
}

/// Appends `n` samples of `spec` to `model`, with default options.
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
        &SampleOptions::default(),
        progress,
    )
}

/// Appends `n` samples of `spec` to `model`, or finishes an interrupted run
/// of the same command.
///
/// The codes of a run are the rows of its seed's stream
/// ([`blackbox::draw_latent_rows`]), so a run committed in chunks, or
/// interrupted and resumed, holds exactly the codes of one uninterrupted
/// batch.
pub fn sample_with(
    catalog_path: &Path,
    model: &str,
    spec: &str,
    n: usize,
    seed: Option<u64>,
    options: &SampleOptions,
    progress: Progress,
) -> Result<SampleReport> {
    let draw = |start: usize, n: usize, k: usize, seed: u64, _chunk: u32| {
        (
            blackbox::draw_latent_rows(k, seed, start, start + n),
            n as u64,
        )
    };
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
/// latent codes, and the batches record the calibration. Each chunk draws
/// from its own seed ([`chunk_seed`]), so a resumed run equals an
/// uninterrupted one when both use the same `--chunk`.
pub fn sample_calibrated(
    catalog_path: &Path,
    model: &str,
    calibration_id: i64,
    n: usize,
    seed: Option<u64>,
    options: &SampleOptions,
    progress: Progress,
) -> Result<SampleReport> {
    let (record, calibration) = crate::calibrate::load(catalog_path, calibration_id)?;
    let spec = Catalog::open_read_only(catalog_path)?
        .require_model(&record.calibration.model)?
        .generator;
    let draw = |_start: usize, n: usize, k: usize, seed: u64, chunk: u32| {
        assert_eq!(
            k,
            calibration.latent_dim(),
            "latent size checked against the black box"
        );
        calibration.draw(n, chunk_seed(seed, chunk))
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

/// Draws latent codes: `(first row, n, latent size, run seed, chunk) ->
/// (codes, prior draws)`.
type Draw<'a> = dyn Fn(usize, usize, usize, u64, u32) -> (ndarray::Array2<f32>, u64) + 'a;

/// Where a run starts: its seed, and what an earlier attempt committed.
struct RunStart {
    seed: u64,
    /// Samples already committed by an interrupted attempt.
    done: usize,
    /// The next chunk number.
    next_chunk: u32,
}

/// Decides the run's seed and whether it resumes an interrupted run:
/// - with `--seed S`: a new run if S is unused; the same run resumed if S
///   belongs to an unfinished run of the same size, source and calibration;
///   refused otherwise (a repeated seed duplicates samples);
/// - without: the model's latest run resumed if it is unfinished and
///   matches; otherwise a new run with a seed derived from the model.
fn plan_run(
    catalog: &Catalog,
    record: &ModelRecord,
    calibration_id: Option<i64>,
    n: usize,
    seed: Option<u64>,
) -> Result<RunStart> {
    let model = &record.model;
    let resumable = |batches: &[crate::catalog::RunBatch]| -> Option<RunStart> {
        let first = batches.first()?;
        let done: u64 = batches.iter().map(|b| b.n).sum();
        let same = first.run_n == n as u64
            && first.source == record.generator
            && first.calibration_id == calibration_id;
        (same && done < first.run_n).then(|| RunStart {
            seed: 0,
            done: done as usize,
            next_chunk: batches.iter().map(|b| b.chunk + 1).max().unwrap_or(0),
        })
    };
    match seed {
        Some(seed) => {
            let batches = catalog.run_batches(model, seed)?;
            if batches.is_empty() {
                return Ok(RunStart {
                    seed,
                    done: 0,
                    next_chunk: 0,
                });
            }
            match resumable(&batches) {
                Some(start) => Ok(RunStart { seed, ..start }),
                None => Err(Error::SeedReused {
                    model: model.clone(),
                    seed,
                    batch_id: batches[0].batch_id,
                }),
            }
        }
        None => {
            if let Some(latest) = catalog.latest_run_seed(model)?
                && let Some(start) = resumable(&catalog.run_batches(model, latest)?)
            {
                return Ok(RunStart {
                    seed: latest,
                    ..start
                });
            }
            let mut number = catalog.run_count(model)? + 1;
            loop {
                let seed = derived_seed(model, number);
                if catalog.run_batches(model, seed)?.is_empty() {
                    return Ok(RunStart {
                        seed,
                        done: 0,
                        next_chunk: 0,
                    });
                }
                number += 1;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn sample_from(
    catalog_path: &Path,
    model: &str,
    spec: &str,
    calibration: Option<&crate::catalog::CalibrationRecord>,
    n: usize,
    seed: Option<u64>,
    options: &SampleOptions,
    progress: Progress,
    draw: &Draw<'_>,
) -> Result<SampleReport> {
    let started = std::time::Instant::now();
    if n == 0 {
        return Err(Error::InvalidArgument("--n must be at least 1".into()));
    }
    if options.run.batch == Some(0) {
        return Err(Error::InvalidArgument("--batch must be at least 1".into()));
    }
    if options.chunk == 0 {
        return Err(Error::InvalidArgument("--chunk must be at least 1".into()));
    }
    let black_box = blackbox::open(spec, &options.run)?;
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
    let calibration_id = calibration.map(|c| c.calibration_id);
    let start = {
        let catalog = Catalog::open(catalog_path)?;
        catalog.check_model(&record)?;
        plan_run(&catalog, &record, calibration_id, n, seed)?
    };
    if start.done > 0 {
        tracing::warn!(
            seed = start.seed,
            "resuming an interrupted run: {} of {n} samples are already committed",
            start.done
        );
    }
    let seed = start.seed;
    let per_call = options
        .run
        .batch
        .unwrap_or_else(|| black_box.preferred_batch());
    let bar = progress.bar((n - start.done) as u64, "sampling");
    let mut batch_ids = Vec::new();
    let mut first_sample_id = 0;
    let mut last_sample_id = 0;
    let mut prior_draws = 0;
    let mut model_samples = 0;
    let mut done = start.done;
    let mut chunk = start.next_chunk;
    while done < n {
        let size = options.chunk.min(n - done);
        let (latents, drawn) = draw(done, size, black_box.latent_dim(), seed, chunk);
        let embeddings = embed_all(black_box.as_ref(), &latents, spec, per_call, &bar)?;
        // The catalog is held only for the commit. Another process may have
        // committed this run's chunk meanwhile (the same command run twice):
        // check again under the hold.
        let mut catalog = Catalog::open(catalog_path)?;
        let committed: u64 = catalog.run_batches(model, seed)?.iter().map(|b| b.n).sum();
        if committed != done as u64 {
            return Err(Error::InvalidArgument(format!(
                "another process added to the run of seed {seed} of model {model:?} while this \
                 one sampled ({committed} samples committed, {done} expected); nothing more \
                 was written by this command"
            )));
        }
        let batch = catalog.insert_batch(&NewBatch {
            model: &record,
            source: &record.generator,
            seed: Some(seed),
            calibration_id,
            chunk,
            run_n: n as u64,
            latents: Some(&latents),
            embeddings: &embeddings,
        })?;
        model_samples = catalog.sample_count(model)?;
        drop(catalog);
        if batch_ids.is_empty() {
            first_sample_id = batch.first_sample_id;
        }
        last_sample_id = batch.first_sample_id + size as i64 - 1;
        batch_ids.push(batch.batch_id);
        prior_draws += drawn;
        done += size;
        chunk += 1;
    }
    bar.finish_and_clear();
    if batch_ids.is_empty() {
        model_samples = Catalog::open_read_only(catalog_path)?.sample_count(model)?;
    }
    let added = n - start.done;
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(SampleReport {
        model: model.to_string(),
        generator: record.generator,
        batch_ids,
        seed,
        n,
        resumed: start.done,
        added,
        first_sample_id,
        last_sample_id,
        model_samples,
        elapsed_s,
        samples_per_s: added as f64 / elapsed_s.max(1e-9),
        calibration_id,
        prior_draws,
    })
}

/// Embeds all codes in chunks and normalises them, refusing bad rows with
/// their global row number.
fn embed_all(
    black_box: &dyn BlackBox,
    latents: &ndarray::Array2<f32>,
    spec: &str,
    chunk_rows: usize,
    bar: &indicatif::ProgressBar,
) -> Result<ndarray::Array2<f32>> {
    let n = latents.nrows();
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
    Ok(out)
}
