//! Black boxes: whatever turns latent codes into embeddings.
//!
//! A black box is all the method may touch of a generative model: it samples
//! latent codes `z ~ N(0, I_k)`, and gets back one identity embedding per
//! code. Weights, gradients and training data stay out of reach.
//!
//! - [`synthetic`]: the built-in simulator with planted collapse, for demos,
//!   tests and benchmarks with known ground truth.
//!
//! Latent codes are drawn here, not by the black boxes, so that a batch's
//! codes depend only on its seed: the same seed gives the same codes for
//! every generator.

pub mod synthetic;

use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

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
}

/// Parses a `--generator` specification.
pub fn from_spec(spec: &str) -> Result<Box<dyn BlackBox>> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "synthetic" => Ok(Box::new(synthetic::Simulator::from_options(spec, rest)?)),
        _ => Err(Error::Generator {
            spec: spec.to_string(),
            reason: "unknown kind; expected synthetic[:key=value,...]".into(),
        }),
    }
}

/// Draws `n` latent codes of size `k` from `N(0, I)`, reproducibly: the
/// stream is ChaCha8 seeded with `seed`, read row by row, so the same seed
/// always gives the same codes.
pub fn draw_latents(n: usize, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((n, k), || StandardNormal.sample(&mut rng))
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
