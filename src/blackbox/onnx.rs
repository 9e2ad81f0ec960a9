//! ONNX black boxes: a generator exported to ONNX, followed by an identity
//! descriptor in ONNX, both run through ONNX Runtime.
//!
//! Specification (what `--generator onnx:PATH --descriptor onnx:PATH` and the
//! preprocessing flags turn into, and what the catalog stores):
//!
//! ```text
//! onnx:GENERATOR.onnx[,descriptor=DESCRIPTOR.onnx][,range=LO:HI][,crop=F]
//!                    [,order=rgb|bgr][,scale=arcface|unit|imagenet|pixels][,flip=true|false]
//! ```
//!
//! Paths are stored absolute, so the model can be sampled again from any
//! folder; a path may not hold a comma. Without a descriptor the generator's
//! own output is taken as the embedding and must be `[N, D]`.
//!
//! Names and shapes come from the models themselves: the generator must take
//! one float32 input `[N, k]` (k fixed: the latent size) and give float32
//! NCHW images (or `[N, D]` embeddings); the descriptor must take one float32
//! NCHW input with 1 or 3 channels and give float32 `[N, D]` first. Before
//! accepting a model we run it once on a single code, so that a model whose
//! shapes do not fit fails at once, naming what it got, rather than in the
//! middle of a run. [`super::preprocess`] turns images into descriptor inputs.
//!
//! ONNX Runtime is loaded at run time, never linked or downloaded at build
//! time: from `ORT_DYLIB_PATH`, or else from the Python `onnxruntime` package
//! of the active or project virtual environment ([`locate_runtime`]).
//!
//! A model file is fingerprinted (xxh3 of its bytes) into the model's
//! parameters, so that samples of a retrained model saved under the same
//! path are not silently mixed with the old ones.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ndarray::{Array2, Array4, ArrayD, ArrayView2, ArrayView4, Axis, Ix4};
use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use serde::Serialize;

use super::preprocess::{ChannelOrder, InputScale, Preprocess};
use super::{BlackBox, parse_value};
use crate::error::{Error, Result};

/// The ONNX Runtime release whose C API (`api-31` in the `ort` crate) this
/// build speaks; what `pip install` should fetch.
pub const RUNTIME_VERSION: &str = "1.31.1";

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// ONNX Runtime's CPU provider, on all cores.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA provider (needs a GPU build of the runtime, such
    /// as PyPI's `onnxruntime-gpu`).
    Cuda,
}

/// A parsed `onnx:` specification.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxSpec {
    pub generator: PathBuf,
    pub descriptor: Option<PathBuf>,
    pub preprocess: Preprocess,
}

impl OnnxSpec {
    /// Parses the text after `onnx:`; `spec` is the whole text, for errors.
    pub fn parse(spec: &str, text: &str) -> Result<OnnxSpec> {
        let fail = |reason: String| Error::Generator {
            spec: spec.to_string(),
            reason,
        };
        let mut parts = text.split(',');
        let generator = parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| fail("no generator file; use onnx:PATH.onnx".into()))?;
        let mut out = OnnxSpec {
            generator: absolute(Path::new(generator)),
            descriptor: None,
            preprocess: Preprocess::default(),
        };
        for item in parts.filter(|p| !p.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| fail(format!("{item:?} is not key=value")))?;
            let p = &mut out.preprocess;
            match key {
                "descriptor" => {
                    let path = value.strip_prefix("onnx:").unwrap_or(value);
                    out.descriptor = Some(absolute(Path::new(path)));
                }
                "range" => {
                    let (lo, hi) = value
                        .split_once(':')
                        .ok_or_else(|| fail(format!("range={value:?} is not LO:HI")))?;
                    p.generator_range = (parse_value(spec, key, lo)?, parse_value(spec, key, hi)?);
                }
                "crop" => p.crop = parse_value(spec, key, value)?,
                "order" => p.channel_order = parse_enum::<ChannelOrder>(spec, key, value)?,
                "scale" => p.input_scale = parse_enum::<InputScale>(spec, key, value)?,
                "flip" => p.flip = parse_value(spec, key, value)?,
                _ => {
                    return Err(fail(format!(
                        "unknown option {key:?}; known: descriptor, range, crop, order, scale, flip"
                    )));
                }
            }
        }
        out.preprocess.validate().map_err(fail)?;
        for path in std::iter::once(&out.generator).chain(&out.descriptor) {
            if path.to_string_lossy().contains(',') {
                return Err(fail(format!(
                    "{} holds a comma; rename or link it",
                    path.display()
                )));
            }
        }
        Ok(out)
    }

    /// The canonical text: absolute paths and every option spelled out.
    pub fn canonical(&self) -> String {
        let p = &self.preprocess;
        let mut text = format!("onnx:{}", self.generator.display());
        if let Some(descriptor) = &self.descriptor {
            text.push_str(&format!(
                ",descriptor={},range={}:{},crop={},order={},scale={},flip={}",
                descriptor.display(),
                p.generator_range.0,
                p.generator_range.1,
                p.crop,
                enum_name(p.channel_order),
                enum_name(p.input_scale),
                p.flip
            ));
        }
        text
    }
}

fn parse_enum<T: clap::ValueEnum>(spec: &str, key: &str, value: &str) -> Result<T> {
    T::from_str(value, true).map_err(|_| {
        let known: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        Error::Generator {
            spec: spec.to_string(),
            reason: format!("{key}={value:?} is not one of {}", known.join(", ")),
        }
    })
}

fn enum_name<T: clap::ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Finds the ONNX Runtime shared library: `ORT_DYLIB_PATH` if set, else the
/// `onnxruntime` package of the first Python that has it among
/// `$MODEAUDIT_PYTHON`, `$VIRTUAL_ENV/bin/python`, `./.venv/bin/python` and
/// `python3` on the path. The package is located without importing it.
pub fn locate_runtime() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        return Err(Error::OnnxRuntime(format!(
            "ORT_DYLIB_PATH={} is not a file; point it at libonnxruntime.so",
            path.display()
        )));
    }
    let mut pythons: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("MODEAUDIT_PYTHON") {
        pythons.push(p.into());
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        pythons.push(Path::new(&venv).join("bin/python"));
    }
    pythons.push(PathBuf::from(".venv/bin/python"));
    pythons.push(PathBuf::from("python3"));
    const FIND: &str = "import importlib.util as u; s = u.find_spec('onnxruntime'); \
                        print(s.submodule_search_locations[0] if s else '')";
    for python in &pythons {
        let Ok(out) = std::process::Command::new(python)
            .args(["-c", FIND])
            .output()
        else {
            continue;
        };
        let package = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || package.is_empty() {
            continue;
        }
        let capi = Path::new(&package).join("capi");
        let Ok(entries) = std::fs::read_dir(&capi) else {
            continue;
        };
        let mut libraries: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        libraries.sort();
        if let Some(library) = libraries.pop() {
            tracing::debug!(python = %python.display(), library = %library.display(), "ONNX Runtime found");
            return Ok(library);
        }
    }
    Err(Error::OnnxRuntime(format!(
        "ONNX Runtime not found: set ORT_DYLIB_PATH to a libonnxruntime.so of version \
         {RUNTIME_VERSION} or later, or install the Python package into the environment \
         modeaudit looks in (`make venv` does: .venv/bin/pip install onnxruntime=={RUNTIME_VERSION}; \
         for --device cuda, onnxruntime-gpu=={RUNTIME_VERSION})"
    )))
}

/// The process's ONNX Runtime environment, loaded once.
fn runtime() -> Result<&'static Environment> {
    static RUNTIME: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let path = locate_runtime().map_err(|e| e.to_string())?;
            let builder = ort::init_from(&path)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
            builder
                .with_name("modeaudit")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
        })
        .as_ref()
        .map_err(|reason| Error::OnnxRuntime(reason.clone()))
}

/// One ONNX model with the names and shapes modeaudit uses.
struct Model {
    path: PathBuf,
    session: Mutex<Session>,
    input: String,
    output: String,
    /// Declared input shape, `-1` for a dynamic dimension.
    input_shape: Vec<i64>,
    fingerprint: String,
}

impl Model {
    fn open(path: &Path, device: Device, spec: &str) -> Result<Model> {
        let fail = |reason: String| Error::Generator {
            spec: spec.to_string(),
            reason: format!("{}: {reason}", path.display()),
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let fingerprint = format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        let env = runtime()?;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let builder =
            Session::builder(env).map_err(|e| fail(format!("cannot make a session: {e}")))?;
        let mut builder = builder
            .with_intra_threads(threads)
            .map_err(|e| fail(format!("cannot configure a session: {e}")))?;
        if device == Device::Cuda {
            if !ort::ep::CUDA::is_available().unwrap_or(false) {
                return Err(Error::OnnxRuntime(format!(
                    "--device cuda: the loaded ONNX Runtime has no CUDA execution provider; \
                     install onnxruntime-gpu=={RUNTIME_VERSION} (and CUDA) or use --device cpu"
                )));
            }
            builder = builder
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(|e| Error::OnnxRuntime(format!("cannot enable CUDA: {e}")))?;
        }
        let session = builder
            .commit_from_memory(&bytes)
            .map_err(|e| fail(format!("not a model ONNX Runtime can load: {e}")))?;
        let inputs: Vec<String> = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        if session.inputs().len() != 1 {
            return Err(fail(format!(
                "has inputs {inputs:?}; modeaudit feeds exactly one float32 tensor"
            )));
        }
        let input = &session.inputs()[0];
        let input_shape = float_shape(input.dtype()).ok_or_else(|| {
            fail(format!(
                "input {:?} is {:?}, not a float32 tensor",
                input.name(),
                input.dtype()
            ))
        })?;
        let output = session
            .outputs()
            .first()
            .ok_or_else(|| fail("has no output".into()))?;
        if float_shape(output.dtype()).is_none() {
            return Err(fail(format!(
                "output {:?} is {:?}, not a float32 tensor",
                output.name(),
                output.dtype()
            )));
        }
        Ok(Model {
            path: path.to_path_buf(),
            input: input.name().to_string(),
            output: output.name().to_string(),
            input_shape,
            session: Mutex::new(session),
            fingerprint,
        })
    }

    /// Runs the model on one batch and returns its first output.
    fn run<D: ndarray::Dimension + 'static>(
        &self,
        input: ndarray::ArrayView<'_, f32, D>,
    ) -> Result<ArrayD<f32>> {
        let fail =
            |reason: String| Error::OnnxRuntime(format!("{}: {reason}", self.path.display()));
        let input = input.as_standard_layout();
        let tensor = TensorRef::from_array_view(input.view())
            .map_err(|e| fail(format!("cannot pass the input: {e}")))?;
        let mut session = self.session.lock().expect("session lock");
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| fail(format!("inference failed: {e}")))?;
        let array = outputs[self.output.as_str()]
            .try_extract_array::<f32>()
            .map_err(|e| fail(format!("output {:?}: {e}", self.output)))?;
        Ok(array.to_owned())
    }
}

fn float_shape(dtype: &ValueType) -> Option<Vec<i64>> {
    match dtype {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } => Some(shape.to_vec()),
        _ => None,
    }
}

/// A generator and, usually, a descriptor in ONNX.
pub struct OnnxBlackBox {
    spec: OnnxSpec,
    generator: Model,
    descriptor: Option<Model>,
    latent_dim: usize,
    embed_dim: usize,
    /// The generator's image shape `(channels, height, width)`, when it
    /// makes images.
    image: Option<(usize, usize, usize)>,
    /// The descriptor's input shape `(channels, height, width)`.
    descriptor_input: Option<(usize, usize, usize)>,
}

impl OnnxBlackBox {
    /// Opens the models of a specification and checks that they fit
    /// together by running one code through them.
    pub fn open(spec_text: &str, options: &str, device: Device) -> Result<OnnxBlackBox> {
        let spec = OnnxSpec::parse(spec_text, options)?;
        let canonical = spec.canonical();
        let fail = |reason: String| Error::Generator {
            spec: canonical.clone(),
            reason,
        };
        let generator = Model::open(&spec.generator, device, &canonical)?;
        let latent_dim = match generator.input_shape.as_slice() {
            [_, k] if *k > 0 => *k as usize,
            other => {
                return Err(fail(format!(
                    "generator input {:?} has shape {other:?}; expected [N, k] with a fixed \
                     latent size k",
                    generator.input
                )));
            }
        };
        let probe = Array2::<f32>::zeros((1, latent_dim));
        let out = generator.run(probe.view())?;
        let descriptor = match &spec.descriptor {
            Some(path) => Some(Model::open(path, device, &canonical)?),
            None => None,
        };
        let mut black_box = OnnxBlackBox {
            spec,
            generator,
            descriptor,
            latent_dim,
            embed_dim: 0,
            image: None,
            descriptor_input: None,
        };
        match (out.shape(), &black_box.descriptor) {
            ([1, d], None) => black_box.embed_dim = *d,
            ([1, c, h, w], Some(descriptor)) => {
                if !matches!(c, 1 | 3) {
                    return Err(fail(format!(
                        "generator images have {c} channels; modeaudit handles 1 (grey) or 3 (RGB)"
                    )));
                }
                black_box.image = Some((*c, *h, *w));
                // Dynamic dimensions: three channels, the generator's size.
                let fixed = |d: i64, otherwise: usize| if d > 0 { d as usize } else { otherwise };
                let (dc, dh, dw) = match descriptor.input_shape.as_slice() {
                    [_, dc, dh, dw] => (fixed(*dc, 3), fixed(*dh, *h), fixed(*dw, *w)),
                    other => {
                        return Err(fail(format!(
                            "descriptor input {:?} has shape {other:?}; expected NCHW [N, C, H, W]",
                            descriptor.input
                        )));
                    }
                };
                if !matches!(dc, 1 | 3) {
                    return Err(fail(format!(
                        "descriptor input has {dc} channels; modeaudit feeds 1 (grey) or 3 (RGB)"
                    )));
                }
                black_box.descriptor_input = Some((dc, dh, dw));
                let images = out.into_dimensionality::<Ix4>().expect("rank checked");
                let embedded = black_box.describe(images.view(), false)?;
                match embedded.shape() {
                    [1, d] if *d > 0 => black_box.embed_dim = *d,
                    other => {
                        return Err(fail(format!(
                            "descriptor output {:?} has shape {other:?} for one image; expected [N, D]",
                            descriptor.output
                        )));
                    }
                }
            }
            (shape, None) => {
                return Err(fail(format!(
                    "generator output {:?} has shape {shape:?} for one code; without --descriptor \
                     it must be embeddings [N, D] (images [N, C, H, W] need --descriptor)",
                    black_box.generator.output
                )));
            }
            (shape, Some(_)) => {
                return Err(fail(format!(
                    "generator output {:?} has shape {shape:?} for one code; expected images \
                     [N, C, H, W]",
                    black_box.generator.output
                )));
            }
        }
        tracing::debug!(
            latent = black_box.latent_dim,
            embedding = black_box.embed_dim,
            image = ?black_box.image,
            descriptor_input = ?black_box.descriptor_input,
            "ONNX black box opened"
        );
        Ok(black_box)
    }

    /// Runs the descriptor on generator images (mirrored if asked); rows as
    /// the descriptor gives them.
    fn describe(&self, images: ArrayView4<'_, f32>, mirror: bool) -> Result<ArrayD<f32>> {
        let descriptor = self.descriptor.as_ref().expect("called with a descriptor");
        let (c, h, w) = self.descriptor_input.expect("set with the descriptor");
        let input = self.spec.preprocess.apply(images, c, h, w, mirror);
        descriptor.run(input.view())
    }

    /// The generator's images for latent codes, as values in `[0, 1]` (the
    /// generator's range mapped), for drawing. `None` when the generator
    /// gives embeddings rather than images.
    pub fn images(&self, latents: ArrayView2<'_, f32>) -> Result<Option<Array4<f32>>> {
        if self.image.is_none() {
            return Ok(None);
        }
        let out = self.generator.run(latents)?;
        let images = self.check_images(out, latents.nrows())?;
        let (lo, hi) = self.spec.preprocess.generator_range;
        Ok(Some(
            images.mapv(|v| ((v - lo) / (hi - lo)).clamp(0.0, 1.0)),
        ))
    }

    fn check_images(&self, out: ArrayD<f32>, n: usize) -> Result<Array4<f32>> {
        let (c, h, w) = self.image.expect("images checked");
        if out.shape() != [n, c, h, w] {
            return Err(Error::Generator {
                spec: self.spec.canonical(),
                reason: format!(
                    "generator gave shape {:?} for {n} codes; expected [{n}, {c}, {h}, {w}]",
                    out.shape()
                ),
            });
        }
        Ok(out.into_dimensionality::<Ix4>().expect("shape checked"))
    }

    fn check_embeddings(&self, out: ArrayD<f32>, n: usize) -> Result<Array2<f32>> {
        if out.shape() != [n, self.embed_dim] {
            return Err(Error::Generator {
                spec: self.spec.canonical(),
                reason: format!(
                    "{} gave shape {:?} for {n} codes; expected [{n}, {}]",
                    if self.descriptor.is_some() {
                        "descriptor"
                    } else {
                        "generator"
                    },
                    out.shape(),
                    self.embed_dim
                ),
            });
        }
        Ok(out.into_dimensionality().expect("shape checked"))
    }
}

/// Scales rows to unit length, leaving zero rows as they are (the caller
/// refuses them with their row number).
fn unit_rows(mut rows: Array2<f32>) -> Array2<f32> {
    for mut row in rows.axis_iter_mut(Axis(0)) {
        let norm = row
            .iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 && norm.is_finite() {
            row.mapv_inplace(|x| (f64::from(x) / norm) as f32);
        }
    }
    rows
}

impl BlackBox for OnnxBlackBox {
    fn spec(&self) -> String {
        self.spec.canonical()
    }

    fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    fn params(&self) -> serde_json::Value {
        let model = |m: &Model| {
            serde_json::json!({
                "path": m.path,
                "input": m.input,
                "output": m.output,
                "input_shape": m.input_shape,
                "fingerprint": m.fingerprint,
            })
        };
        serde_json::json!({
            "kind": "onnx",
            "generator": model(&self.generator),
            "descriptor": self.descriptor.as_ref().map(model),
            "image_shape": self.image,
            "descriptor_input_shape": self.descriptor_input,
            "preprocess": self.spec.preprocess,
            "fingerprint": self.fingerprint(),
        })
    }

    fn fingerprint(&self) -> Option<String> {
        let mut text = self.generator.fingerprint.clone();
        if let Some(d) = &self.descriptor {
            text.push('+');
            text.push_str(&d.fingerprint);
        }
        Some(text)
    }

    fn preferred_batch(&self) -> usize {
        256
    }

    fn embed(&self, latents: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        if latents.ncols() != self.latent_dim {
            return Err(Error::Dimension {
                what: format!("latent codes for {}", self.generator.path.display()),
                expected: self.latent_dim,
                got: latents.ncols(),
            });
        }
        let n = latents.nrows();
        let out = self.generator.run(latents)?;
        if self.descriptor.is_none() {
            return self.check_embeddings(out, n);
        }
        let images = self.check_images(out, n)?;
        let embedded = self.check_embeddings(self.describe(images.view(), false)?, n)?;
        if !self.spec.preprocess.flip {
            return Ok(embedded);
        }
        // The authors' flip trick: the normalised embeddings of the image and
        // of its mirror image, summed (the caller normalises the sum).
        let mirrored = self.check_embeddings(self.describe(images.view(), true)?, n)?;
        Ok(unit_rows(embedded) + unit_rows(mirrored))
    }

    fn images(&self, latents: ArrayView2<'_, f32>) -> Result<Option<Array4<f32>>> {
        OnnxBlackBox::images(self, latents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_spec_round_trips_through_its_canonical_form() {
        let spec = OnnxSpec::parse(
            "x",
            "/m/g.onnx,descriptor=onnx:/m/d.onnx,range=0:1,crop=0.875,order=bgr,scale=imagenet,flip=true",
        )
        .unwrap();
        assert_eq!(spec.generator, PathBuf::from("/m/g.onnx"));
        assert_eq!(spec.descriptor, Some(PathBuf::from("/m/d.onnx")));
        assert_eq!(spec.preprocess.generator_range, (0.0, 1.0));
        assert_eq!(spec.preprocess.channel_order, ChannelOrder::Bgr);
        assert_eq!(spec.preprocess.input_scale, InputScale::Imagenet);
        assert!(spec.preprocess.flip);
        let canonical = spec.canonical();
        let again = OnnxSpec::parse(&canonical, canonical.strip_prefix("onnx:").unwrap()).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn test_spec_errors_name_the_option() {
        let err = OnnxSpec::parse("s", "g.onnx,scale=weird")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("scale=\"weird\" is not one of arcface, unit, imagenet, pixels"),
            "{err}"
        );
        let err = OnnxSpec::parse("s", "g.onnx,crop=2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("crop"), "{err}");
        let err = OnnxSpec::parse("s", "g.onnx,colour=1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown option \"colour\""), "{err}");
        assert!(OnnxSpec::parse("s", "").is_err());
    }
}
