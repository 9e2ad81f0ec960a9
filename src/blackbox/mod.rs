//! Black boxes: whatever turns latent codes into embeddings.
//!
//! A black box is all the method may touch of a generative model: it samples
//! latent codes `z ~ N(0, I_k)`, and gets back one identity embedding per
//! code. Weights, gradients and training data stay out of reach.
//!
//! - [`synthetic`]: the built-in simulator with planted collapse, for demos,
//!   tests and benchmarks with known ground truth;
//! - [`onnx`]: a generator and an identity descriptor exported to ONNX, run
//!   through ONNX Runtime (with [`preprocess`] between them);
//! - [`command`]: an external program speaking a small stdin/stdout protocol.
//!
//! Latent codes are drawn here, not by the black boxes, so that a batch's
//! codes depend only on its seed: the same seed gives the same codes for
//! every generator.

pub mod command;
pub mod onnx;
pub mod preprocess;
pub mod synthetic;

use std::time::Duration;

use ndarray::{Array2, Array4, ArrayView2};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// A generator plus identity descriptor, seen from outside.
pub trait BlackBox: Send + Sync {
    /// The canonical specification, stored with the model: parsing it again
    /// gives the same black box.
    fn spec(&self) -> String;
    /// Latent code size `k`.
    fn latent_dim(&self) -> usize;
    /// Embedding size.
    fn embed_dim(&self) -> usize;
    /// Parameters and ground truth to record with the model, as JSON.
    fn params(&self) -> serde_json::Value;
    /// Embeds a batch of latent codes (one per row). The result need not be
    /// normalised; the caller normalises and refuses bad rows.
    fn embed(&self, latents: ArrayView2<'_, f32>) -> Result<Array2<f32>>;
    /// Codes per call to [`BlackBox::embed`] unless the user says otherwise:
    /// large for cheap black boxes, smaller for slow ones so that progress
    /// shows and a failure loses little work.
    fn preferred_batch(&self) -> usize {
        16_384
    }
    /// A digest of the model files behind the black box, when it has any: a
    /// model whose files changed under the same specification must not
    /// receive samples into the old model's catalog entry.
    fn fingerprint(&self) -> Option<String> {
        None
    }
    /// The images behind the embeddings, as values in `[0, 1]` in NCHW
    /// order, for black boxes that make them (`None` for the others).
    fn images(&self, latents: ArrayView2<'_, f32>) -> Result<Option<Array4<f32>>> {
        let _ = latents;
        Ok(None)
    }
}

/// How to run a black box, beyond its specification.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Longest wait for an external program's greeting or answer.
    pub timeout: Duration,
    /// Codes per call to the black box; `None` for its own preference.
    pub batch: Option<usize>,
    /// Where ONNX models run.
    pub device: onnx::Device,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            timeout: Duration::from_secs(600),
            batch: None,
            device: onnx::Device::Cpu,
        }
    }
}

/// Parses a `--generator` specification with default run options.
pub fn from_spec(spec: &str) -> Result<Box<dyn BlackBox>> {
    open(spec, &RunOptions::default())
}

/// Parses a `--generator` specification and starts the black box.
pub fn open(spec: &str, options: &RunOptions) -> Result<Box<dyn BlackBox>> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "synthetic" => Ok(Box::new(synthetic::Simulator::from_options(spec, rest)?)),
        "cmd" => Ok(Box::new(command::ExternalProgram::start(
            spec,
            rest,
            options.timeout,
        )?)),
        "onnx" => Ok(Box::new(onnx::OnnxBlackBox::open(
            spec,
            rest,
            options.device,
        )?)),
        _ => Err(Error::Generator {
            spec: spec.to_string(),
            reason: "unknown kind; expected synthetic[:key=value,...], onnx:PATH[,...] or \
                     cmd:\"PROGRAM ARGS\""
                .into(),
        }),
    }
}

/// Rows of latent codes per random stream (see [`draw_latent_rows`]).
pub const LATENT_BLOCK: usize = 1024;

/// Draws `n` latent codes of size `k` from `N(0, I)`, reproducibly: the
/// first `n` rows of the seed's stream of codes (see [`draw_latent_rows`]).
pub fn draw_latents(n: usize, k: usize, seed: u64) -> Array2<f32> {
    draw_latent_rows(k, seed, 0, n)
}

/// Rows `start..end` of the stream of latent codes of a seed.
///
/// Row `i` belongs to block `i / LATENT_BLOCK`, and each block is drawn from
/// its own ChaCha8 stream (the seed's generator with the block number as
/// stream number), read row by row. A code therefore depends only on the
/// seed and its row number: a batch drawn in chunks (`sample` commits long
/// runs in chunks, and resumes them) holds exactly the codes one large
/// batch would, and blocks are drawn in parallel.
pub fn draw_latent_rows(k: usize, seed: u64, start: usize, end: usize) -> Array2<f32> {
    assert!(start <= end);
    let mut out = Array2::<f32>::zeros((end - start, k));
    if start == end {
        return out;
    }
    let first_block = start / LATENT_BLOCK;
    let last_block = (end - 1) / LATENT_BLOCK;
    let blocks: Vec<(usize, Array2<f32>)> = (first_block..=last_block)
        .into_par_iter()
        .map(|block| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(block as u64);
            let block_start = block * LATENT_BLOCK;
            // Rows before `start` in the first block are drawn and dropped,
            // so that every row always comes from the same place in its stream.
            let rows = (end.min(block_start + LATENT_BLOCK)) - block_start;
            let codes = Array2::from_shape_simple_fn((rows, k), || StandardNormal.sample(&mut rng));
            (block_start, codes)
        })
        .collect();
    for (block_start, codes) in blocks {
        let from = start.max(block_start);
        let rows = codes.slice(ndarray::s![from - block_start.., ..]);
        out.slice_mut(ndarray::s![from - start..from - start + rows.nrows(), ..])
            .assign(&rows);
    }
    out
}

/// Splits `key=value,key=value` options, refusing unknown keys.
pub(crate) fn parse_options<'a>(
    spec: &str,
    text: &'a str,
    known: &[&str],
) -> Result<Vec<(&'a str, &'a str)>> {
    let mut pairs = Vec::new();
    for item in text.split(',').filter(|s| !s.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| Error::Generator {
            spec: spec.to_string(),
            reason: format!("{item:?} is not key=value"),
        })?;
        if !known.contains(&key) {
            return Err(Error::Generator {
                spec: spec.to_string(),
                reason: format!("unknown option {key:?}; known: {}", known.join(", ")),
            });
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Parses one option value, naming it in the error.
pub(crate) fn parse_value<T: std::str::FromStr>(spec: &str, key: &str, value: &str) -> Result<T> {
    value.parse().map_err(|_| Error::Generator {
        spec: spec.to_string(),
        reason: format!("{key}={value:?} is not a valid value"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_latent_rows_do_not_depend_on_chunking() {
        let whole = draw_latents(3000, 5, 9);
        for (start, end) in [(0, 1), (1000, 1030), (1023, 1025), (2047, 3000), (0, 3000)] {
            assert_eq!(
                draw_latent_rows(5, 9, start, end),
                whole.slice(ndarray::s![start..end, ..])
            );
        }
        assert_ne!(draw_latents(10, 5, 9), draw_latents(10, 5, 10));
        // Standard normal: mean near 0 and variance near 1.
        let mean = whole.mean().unwrap();
        let var = whole.mapv(|x| x * x).mean().unwrap();
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
