//! The built-in simulator: a stand-in for a generator plus descriptor, with
//! collapse planted where we choose, so the audit can be checked against
//! known ground truth.
//!
//! Specification: `synthetic[:key=value,...]` with
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `latent` | 512 | latent size `k` |
//! | `dim` | 512 | embedding size `D` |
//! | `modes` | 1 | planted collapsed identities (0: collapse-free) |
//! | `mass` | 0.02 | latent probability mass each planted identity owns |
//! | `tightness` | 0.3 | spread of a planted identity's embeddings (smaller is tighter) |
//! | `world` | 0 | seed of the simulated world (all fixed random structure) |
//! | `families` | 64 | healthy identity families |
//! | `intrinsic` | 16 | intrinsic dimension of the healthy embeddings |
//! | `map` | 2 | version of the map (only the current one is available) |
//!
//! # How it maps a code to an embedding
//!
//! A fixed orthonormal basis of the latent space, drawn from the world seed,
//! splits `z` into independent standard normal parts: `g` (`intrinsic`
//! coordinates), `v` (8 coordinates that choose a family) and one coordinate
//! `w_i . z` per planted identity.
//!
//! - Healthy part: `v` picks a family by a soft-max over the families'
//!   prototypes; the family gives a centre `c` and a scale `sigma`, and the
//!   embedding is `Q (sigma g + 2.5 c)` for a fixed orthonormal `Q` from the
//!   intrinsic space into `R^D`. Families differ in size and spread, so local
//!   density varies from anchor to anchor, as it does for real identities.
//! - Planted identity `i` owns the half-space `w_i . z > t` with
//!   `t = Phi^-1(1 - mass)`, whose probability is exactly `mass`. There the
//!   embedding moves to a fixed identity vector `m_i` plus a deviation of
//!   relative size `tightness`: all its codes give near-duplicates.
//! - The two are blended by a logistic step of width 0.05 across the
//!   half-space's boundary, so the map stays smooth: nearby codes give nearby
//!   embeddings.
//!
//! Everything is a pure function of the specification: the same options give
//! the same map on every machine.
//!
//! # One world, with or without collapse
//!
//! The healthy structure (the first `intrinsic + 8` latent directions, the
//! families, the embedding basis) depends only on `world`, `latent`, `dim`,
//! `families` and `intrinsic`, never on `modes` or `mass`: the latent basis
//! has its own random stream, drawn column by column, and its QR factor's
//! leading columns depend only on the leading columns drawn. So
//! `modes=0` with the same world is the collapsed model with its planted
//! regions healed: codes outside them give the same embeddings, and it is
//! the right collapse-free reference for a calibration. Map version 1 (the
//! first release) drew everything from one stream, so changing `modes`
//! changed the whole world; a model sampled with it is refused more samples
//! with version 2, as its stored specification lacks `map=2`.

use nalgebra::DMatrix;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use statrs::distribution::{ContinuousCDF, Normal};

use super::{BlackBox, parse_options, parse_value};
use crate::error::{Error, Result};

/// Coordinates of `z` that choose a family.
const SELECTOR_DIM: usize = 8;
/// Sharpness of the soft-max that chooses a family.
const FAMILY_SHARPNESS: f32 = 3.0;
/// Length of a family's centre offset relative to the unit noise.
const FAMILY_OFFSET: f32 = 2.5;
/// Log-normal spread of the families' scales.
const FAMILY_SCALE_SPREAD: f64 = 0.5;
/// Width of the logistic step at a planted region's boundary.
const MODE_EDGE: f32 = 0.05;
/// Version of the map from codes to embeddings (see the module's notes).
pub const MAP_VERSION: u32 = 2;

/// The simulator's options (its specification).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimulatorOptions {
    pub latent: usize,
    pub dim: usize,
    pub modes: usize,
    pub mass: f64,
    pub tightness: f64,
    pub world: u64,
    pub families: usize,
    pub intrinsic: usize,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            latent: 512,
            dim: 512,
            modes: 1,
            mass: 0.02,
            tightness: 0.3,
            world: 0,
            families: 64,
            intrinsic: 16,
        }
    }
}

/// The simulator, with its world drawn.
#[derive(Debug, Clone)]
pub struct Simulator {
    options: SimulatorOptions,
    /// `k x (intrinsic + SELECTOR_DIM + modes)`, orthonormal columns.
    latent_basis: Array2<f32>,
    /// `intrinsic x D`: rows are an orthonormal basis of the healthy space.
    embed_basis: Array2<f32>,
    /// Family centres (`families x intrinsic`, unit rows).
    centres: Array2<f32>,
    /// Family prototypes in selector space (`families x 8`, unit rows).
    prototypes: Array2<f32>,
    /// Family scales.
    scales: Array1<f32>,
    /// Planted identity vectors (`modes x D`, unit rows).
    identities: Array2<f32>,
    /// Threshold `t` of every planted region.
    threshold: f32,
}

impl Simulator {
    /// Parses `key=value,...` options (the part after `synthetic:`).
    pub fn from_options(spec: &str, text: &str) -> Result<Simulator> {
        let known = [
            "latent",
            "dim",
            "modes",
            "mass",
            "tightness",
            "world",
            "families",
            "intrinsic",
            "map",
        ];
        let mut o = SimulatorOptions::default();
        for (key, value) in parse_options(spec, text, &known)? {
            match key {
                "latent" => o.latent = parse_value(spec, key, value)?,
                "dim" => o.dim = parse_value(spec, key, value)?,
                "modes" => o.modes = parse_value(spec, key, value)?,
                "mass" => o.mass = parse_value(spec, key, value)?,
                "tightness" => o.tightness = parse_value(spec, key, value)?,
                "world" => o.world = parse_value(spec, key, value)?,
                "families" => o.families = parse_value(spec, key, value)?,
                "intrinsic" => o.intrinsic = parse_value(spec, key, value)?,
                "map" => {
                    let version: u32 = parse_value(spec, key, value)?;
                    if version != MAP_VERSION {
                        return Err(Error::Generator {
                            spec: spec.to_string(),
                            reason: format!(
                                "map={version} is not available: this modeaudit has only \
                                 map={MAP_VERSION}"
                            ),
                        });
                    }
                }
                _ => unreachable!("parse_options checks the keys"),
            }
        }
        Simulator::new(o).map_err(|reason| Error::Generator {
            spec: spec.to_string(),
            reason,
        })
    }

    /// Draws the world for a set of options.
    pub fn new(o: SimulatorOptions) -> std::result::Result<Simulator, String> {
        let columns = o.intrinsic + SELECTOR_DIM + o.modes;
        if o.intrinsic == 0 || o.families == 0 || o.dim < 2 {
            return Err("intrinsic, families must be positive and dim at least 2".into());
        }
        if o.latent < columns {
            return Err(format!(
                "latent={} is too small: needs at least intrinsic + 8 + modes = {columns}",
                o.latent
            ));
        }
        if o.dim < o.intrinsic {
            return Err(format!(
                "dim={} is smaller than intrinsic={}",
                o.dim, o.intrinsic
            ));
        }
        if o.modes > 0 && !(o.mass > 0.0 && o.mass < 0.5) {
            return Err(format!("mass={} must be in (0, 0.5)", o.mass));
        }
        if !(o.tightness >= 0.0 && o.tightness.is_finite()) {
            return Err(format!(
                "tightness={} must be a non-negative number",
                o.tightness
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(o.world ^ 0x6d6f_6465_6175_6469);
        // Its own stream, so that the number of planted directions changes
        // nothing else in the world.
        let mut basis_rng = ChaCha8Rng::seed_from_u64(o.world ^ 0x6c61_7465_6e74_0002);
        let latent_basis = orthonormal_columns(o.latent, columns, &mut basis_rng);
        let embed_basis = orthonormal_columns(o.dim, o.intrinsic, &mut rng).reversed_axes();
        let centres = unit_rows(o.families, o.intrinsic, &mut rng);
        let prototypes = unit_rows(o.families, SELECTOR_DIM, &mut rng);
        let scales = Array1::from_shape_simple_fn(o.families, || {
            let x: f64 = StandardNormal.sample(&mut rng);
            (FAMILY_SCALE_SPREAD * x).exp() as f32
        });
        let identities = unit_rows(o.modes, o.dim, &mut rng);
        let threshold = if o.modes > 0 {
            Normal::standard().inverse_cdf(1.0 - o.mass) as f32
        } else {
            f32::INFINITY
        };
        Ok(Simulator {
            options: o,
            latent_basis,
            embed_basis,
            centres,
            prototypes,
            scales,
            identities,
            threshold,
        })
    }

    /// The options this simulator was built from.
    pub fn options(&self) -> &SimulatorOptions {
        &self.options
    }

    /// Ground truth: the planted identity whose region holds `z` (past the
    /// middle of its boundary step), if any.
    pub fn planted_mode(&self, z: ArrayView1<'_, f32>) -> Option<usize> {
        let first = self.options.intrinsic + SELECTOR_DIM;
        (0..self.options.modes)
            .map(|i| (i, self.latent_basis.column(first + i).dot(&z)))
            .filter(|(_, proj)| *proj > self.threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    /// Embeds one code, given its projection on the latent basis.
    fn embed_projected(&self, p: ArrayView1<'_, f32>, out: &mut [f32]) {
        let o = &self.options;
        let g = p.slice(s![..o.intrinsic]);
        let v = p.slice(s![o.intrinsic..o.intrinsic + SELECTOR_DIM]);
        // Soft family choice.
        let logits = self.prototypes.dot(&v) * FAMILY_SHARPNESS;
        let top = logits.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let weights = logits.mapv(|l| (l - top).exp());
        let total = weights.sum();
        let centre = weights.dot(&self.centres) / total;
        let scale = weights.dot(&self.scales) / total;
        let u = &g * scale + &(centre * FAMILY_OFFSET);
        let healthy = u.dot(&self.embed_basis);
        let healthy_norm = healthy.dot(&healthy).sqrt().max(f32::MIN_POSITIVE);
        // Planted identities, blended in by a logistic step.
        let mut blend = vec![0f32; o.modes];
        for (i, b) in blend.iter_mut().enumerate() {
            let proj = p[o.intrinsic + SELECTOR_DIM + i];
            *b = 1.0 / (1.0 + (-(proj - self.threshold) / MODE_EDGE).exp());
        }
        let planted: f32 = blend.iter().sum();
        if planted > 1.0 {
            blend.iter_mut().for_each(|b| *b /= planted);
        }
        let planted = planted.min(1.0);
        for (j, slot) in out.iter_mut().enumerate() {
            *slot = (1.0 - planted) * healthy[j] / healthy_norm;
        }
        if planted > 0.0 {
            // The deviation reuses the healthy direction, so codes near each
            // other stay near each other inside a planted region too.
            let deviation = o.tightness as f32 / healthy_norm;
            for (i, &b) in blend.iter().enumerate() {
                if b <= 0.0 {
                    continue;
                }
                let identity = self.identities.row(i);
                let mut mode: Vec<f32> = identity
                    .iter()
                    .zip(&healthy)
                    .map(|(m, h)| m + deviation * h)
                    .collect();
                let norm = mode.iter().map(|x| x * x).sum::<f32>().sqrt();
                mode.iter_mut().for_each(|x| *x /= norm);
                for (slot, m) in out.iter_mut().zip(&mode) {
                    *slot += b * m;
                }
            }
        }
    }
}

impl BlackBox for Simulator {
    fn spec(&self) -> String {
        let o = &self.options;
        format!(
            "synthetic:latent={},dim={},modes={},mass={},tightness={},world={},families={},\
             intrinsic={},map={MAP_VERSION}",
            o.latent, o.dim, o.modes, o.mass, o.tightness, o.world, o.families, o.intrinsic
        )
    }

    fn latent_dim(&self) -> usize {
        self.options.latent
    }

    fn embed_dim(&self) -> usize {
        self.options.dim
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "simulator": self.options,
            "ground_truth": {
                "planted_modes": self.options.modes,
                "region": "half-space w_i . z > t of latent mass `mass`, one per planted identity",
                "threshold_t": self.threshold,
                "mass_each": self.options.mass,
            }
        })
    }

    fn embed(&self, latents: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        if latents.ncols() != self.options.latent {
            return Err(Error::Dimension {
                what: "latent codes for the simulator".into(),
                expected: self.options.latent,
                got: latents.ncols(),
            });
        }
        let projected = latents.dot(&self.latent_basis);
        let mut out = Array2::<f32>::zeros((latents.nrows(), self.options.dim));
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(projected.axis_iter(Axis(0)).into_par_iter())
            .for_each(|(mut row, p)| {
                self.embed_projected(p, row.as_slice_mut().expect("fresh array is contiguous"))
            });
        Ok(out)
    }
}

/// `rows x cols` matrix with orthonormal columns, from the QR factors of a
/// Gaussian matrix.
///
/// The Gaussian matrix is drawn column by column (nalgebra's `from_fn` fills
/// in column-major order), and column `j` of a Householder QR factor depends
/// only on the first `j + 1` columns: drawing more columns leaves the earlier
/// ones as they were.
fn orthonormal_columns(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<f32> {
    let gaussian = DMatrix::<f64>::from_fn(rows, cols, |_, _| StandardNormal.sample(rng));
    let q = gaussian.qr().q();
    Array2::from_shape_fn((rows, cols), |(i, j)| q[(i, j)] as f32)
}

/// `rows x cols` matrix of independent random unit rows.
fn unit_rows(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<f32> {
    let mut m = Array2::<f64>::from_shape_simple_fn((rows, cols), || StandardNormal.sample(rng));
    for mut row in m.axis_iter_mut(Axis(0)) {
        let norm = row.dot(&row).sqrt();
        row.mapv_inplace(|x| x / norm);
    }
    m.mapv(|x| x as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blackbox::{draw_latents, from_spec};

    #[test]
    fn test_same_spec_same_embeddings() {
        let a = from_spec("synthetic:latent=64,dim=32,modes=2,world=3").unwrap();
        let b = from_spec(&a.spec()).unwrap();
        let z = draw_latents(50, 64, 11);
        assert_eq!(a.embed(z.view()).unwrap(), b.embed(z.view()).unwrap());
        let c = from_spec("synthetic:latent=64,dim=32,modes=2,world=4").unwrap();
        assert_ne!(a.embed(z.view()).unwrap(), c.embed(z.view()).unwrap());
    }

    #[test]
    fn test_planted_region_has_the_stated_mass_and_collapses() {
        let sim = Simulator::from_options("t", "latent=64,dim=32,modes=1,mass=0.05").unwrap();
        let z = draw_latents(20_000, 64, 5);
        let inside: Vec<usize> = (0..z.nrows())
            .filter(|&i| sim.planted_mode(z.row(i)).is_some())
            .collect();
        let share = inside.len() as f64 / z.nrows() as f64;
        // Binomial standard error at n = 20000, p = 0.05 is 0.0015.
        assert!((share - 0.05).abs() < 0.006, "share {share}");
        let mut e = sim.embed(z.view()).unwrap();
        crate::vector::normalize_rows(e.view_mut(), "sim").unwrap();
        // Codes deep inside the region give near-duplicates of one identity.
        let deep: Vec<usize> = inside
            .iter()
            .copied()
            .filter(|&i| sim.latent_basis.column(16 + 8).dot(&z.row(i)) > sim.threshold + 0.3)
            .take(50)
            .collect();
        assert!(deep.len() > 10);
        for pair in deep.windows(2) {
            let dot = e.row(pair[0]).dot(&e.row(pair[1]));
            assert!(
                dot > 0.8,
                "planted samples should be near-duplicates, dot {dot}"
            );
        }
    }

    #[test]
    fn test_map_is_smooth() {
        let sim = from_spec("synthetic:latent=64,dim=32,modes=1,mass=0.2").unwrap();
        let z = draw_latents(200, 64, 1);
        let nudged = &z + 1e-3;
        let mut a = sim.embed(z.view()).unwrap();
        let mut b = sim.embed(nudged.view()).unwrap();
        crate::vector::normalize_rows(a.view_mut(), "a").unwrap();
        crate::vector::normalize_rows(b.view_mut(), "b").unwrap();
        for i in 0..z.nrows() {
            assert!(a.row(i).dot(&b.row(i)) > 0.99, "row {i}");
        }
    }

    #[test]
    fn test_bad_specs_are_refused_with_the_reason() {
        let err = from_spec("synthetic:latent=10").err().unwrap().to_string();
        assert!(err.contains("too small"), "{err}");
        let err = from_spec("synthetic:colour=red").err().unwrap().to_string();
        assert!(err.contains("unknown option"), "{err}");
        let err = from_spec("synthetic:mass=x").err().unwrap().to_string();
        assert!(err.contains("not a valid value"), "{err}");
        assert!(from_spec("gan").is_err());
        let err = from_spec("synthetic:map=1").err().unwrap().to_string();
        assert!(err.contains("map=1 is not available"), "{err}");
        assert!(from_spec("synthetic:map=2").is_ok());
    }

    #[test]
    fn test_collapse_free_world_is_the_collapsed_one_healed() {
        // Outside the planted regions the two give the same embeddings, so
        // `modes=0` is the collapsed model's true collapse-free reference.
        let collapsed =
            Simulator::from_options("", "latent=48,dim=40,modes=2,mass=0.05,world=9").unwrap();
        let healthy = Simulator::from_options("", "latent=48,dim=40,modes=0,world=9").unwrap();
        let z = draw_latents(2000, 48, 3);
        let a = collapsed.embed(z.view()).unwrap();
        let b = healthy.embed(z.view()).unwrap();
        let (mut outside, mut inside) = (0, 0);
        for (i, row) in z.outer_iter().enumerate() {
            let far_from_regions = (0..2).all(|m| {
                let w = collapsed
                    .latent_basis
                    .column(collapsed.options.intrinsic + SELECTOR_DIM + m);
                w.dot(&row) < collapsed.threshold - 1.0
            });
            let gap = a
                .row(i)
                .iter()
                .zip(b.row(i))
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            if far_from_regions {
                outside += 1;
                assert!(gap < 1e-5, "row {i}: {gap}");
            } else if collapsed.planted_mode(row).is_some() {
                inside += 1;
                assert!(gap > 0.1, "row {i} is in a planted region: {gap}");
            }
        }
        assert!(
            outside > 900 && inside > 100,
            "{outside} outside, {inside} inside"
        );
    }
}
