//! ONNX black boxes with the real runtime and the committed digit models
//! (`data/`, made by `data/make_models.py`): outputs against the reference
//! values recorded when the models were made, preprocessing against the
//! reference resize, an audit of the digit GAN end to end, and the errors for
//! models whose shapes do not fit and for a missing runtime.
//!
//! ONNX Runtime comes from the project's `.venv` (`make venv`, which
//! `make test` runs first).

use std::path::PathBuf;
use std::process::Command;

use modeaudit::blackbox::BlackBox;
use modeaudit::blackbox::onnx::{Device, OnnxBlackBox};
use modeaudit::blackbox::preprocess::Preprocess;
use ndarray::{Array2, Array3, Array4};

use crate::common::{Workspace, bin};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

fn generator_spec() -> String {
    format!("onnx:{}", data("digits-generator.onnx").display())
}

fn full_spec() -> String {
    format!(
        "{},descriptor={}",
        generator_spec(),
        data("digits-descriptor.onnx").display()
    )
}

/// The reference values of `data/digits-reference.json`.
struct Reference {
    z: Array2<f32>,
    image: Array4<f32>,
    input_grey: Array3<f32>,
    embedding: Array2<f32>,
    tolerance: f32,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(data("digits-reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    fn flat(v: &serde_json::Value, out: &mut Vec<f32>) {
        match v {
            serde_json::Value::Array(items) => items.iter().for_each(|x| flat(x, out)),
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    let get = |path: &[&str]| {
        let mut v = &json;
        for key in path {
            v = &v[key];
        }
        let mut out = Vec::new();
        flat(v, &mut out);
        out
    };
    Reference {
        z: Array2::from_shape_vec((4, 32), get(&["generator", "z"])).unwrap(),
        image: Array4::from_shape_vec((4, 1, 16, 16), get(&["generator", "image"])).unwrap(),
        input_grey: Array3::from_shape_vec((4, 24, 24), get(&["descriptor", "input_grey"]))
            .unwrap(),
        embedding: Array2::from_shape_vec((4, 64), get(&["descriptor", "embedding"])).unwrap(),
        tolerance: json["tolerance"].as_f64().unwrap() as f32,
    }
}

fn max_abs_diff<D: ndarray::Dimension>(
    a: &ndarray::Array<f32, D>,
    b: &ndarray::Array<f32, D>,
) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn test_generator_and_descriptor_match_their_reference_values() {
    let r = reference();
    // Generator alone: its images, through `images` (mapped from [-1, 1] to
    // [0, 1] for drawing), against the recorded output.
    let generator = OnnxBlackBox::open(
        &full_spec(),
        full_spec().strip_prefix("onnx:").unwrap(),
        Device::Cpu,
    )
    .expect("the digit models open with the runtime from .venv");
    assert_eq!((generator.latent_dim(), generator.embed_dim()), (32, 64));
    let images = generator
        .images(r.z.view())
        .unwrap()
        .expect("the generator makes images");
    let want = r.image.mapv(|g| (g + 1.0) / 2.0);
    let diff = max_abs_diff(&images, &want);
    assert!(diff <= r.tolerance, "generator images differ by {diff}");

    // Preprocessing: the reference images resized 16 -> 24 by hand in the
    // script (half-pixel bilinear, edges clamped), scaled as ArcFace inputs
    // (which gives the grey value back), copied to three channels.
    let pre = Preprocess::default();
    let input = pre.apply(r.image.view(), 3, 24, 24, false);
    for c in 0..3 {
        let channel = input.index_axis(ndarray::Axis(1), c).to_owned();
        let diff = max_abs_diff(&channel, &r.input_grey);
        assert!(
            diff <= 1e-5,
            "preprocessed channel {c} differs from the reference by {diff}"
        );
    }

    // The whole chain: codes -> images -> descriptor input -> embeddings.
    let embedding = generator.embed(r.z.view()).unwrap();
    let diff = max_abs_diff(&embedding, &r.embedding);
    let scale = r.embedding.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "embeddings differ by {diff} (largest value {scale})"
    );
}

#[test]
fn test_flip_trick_combines_the_image_and_its_mirror() {
    let r = reference();
    let spec = format!("{},flip=true", full_spec());
    let flipped =
        OnnxBlackBox::open(&spec, spec.strip_prefix("onnx:").unwrap(), Device::Cpu).unwrap();
    let plain = OnnxBlackBox::open(
        &full_spec(),
        full_spec().strip_prefix("onnx:").unwrap(),
        Device::Cpu,
    )
    .unwrap();
    let e = plain.embed(r.z.view()).unwrap();
    // The mirror images embedded on their own, through the descriptor input.
    let pre = Preprocess::default();
    let unit = |m: Array2<f32>| {
        let mut m = m;
        modeaudit::vector::normalize_rows(m.view_mut(), "t").unwrap();
        m
    };
    let got = unit(flipped.embed(r.z.view()).unwrap());
    assert!(
        max_abs_diff(&got, &unit(e.clone())) > 1e-3,
        "the mirror changes the embedding"
    );
    let mirrored_input = pre.apply(r.image.view(), 3, 24, 24, true);
    assert_eq!(
        mirrored_input[[0, 0, 3, 0]],
        pre.apply(r.image.view(), 3, 24, 24, false)[[0, 0, 3, 23]]
    );
    // Combined = normalise(normalise(e) + normalise(e_mirror)): its dot with
    // normalise(e) is positive and it is a unit vector once normalised.
    for i in 0..4 {
        let dot: f32 = got.row(i).dot(&unit(e.clone()).row(i));
        assert!(dot > 0.5 && dot < 1.0, "row {i}: {dot}");
    }
}

#[test]
fn test_digit_gan_audit_end_to_end() {
    let ws = Workspace::new();
    let generator = generator_spec();
    let desc = format!("onnx:{}", data("digits-descriptor.onnx").display());
    let s = ws.json(&[
        "sample",
        "--model",
        "digits",
        "--generator",
        &generator,
        "--descriptor",
        &desc,
        "--n",
        "4000",
        "--seed",
        "1",
    ]);
    assert_eq!(s["n"], 4000);
    eprintln!("digit models: {} samples/s", s["samples_per_s"]);
    let model = ws.json(&[
        "sql",
        "SELECT latent_dim, embed_dim, generator, params->>'fingerprint' FROM models",
    ]);
    assert_eq!(model["rows"][0][0], 32);
    assert_eq!(model["rows"][0][1], 64);
    assert!(
        model["rows"][0][2]
            .as_str()
            .unwrap()
            .contains("descriptor=")
    );
    assert!(model["rows"][0][3].as_str().unwrap().starts_with("xxh3:"));
    // More samples append through the stored specification.
    ws.ok(&[
        "sample",
        "--model",
        "digits",
        "--generator",
        &generator,
        "--descriptor",
        &desc,
        "--n",
        "1000",
        "--seed",
        "2",
    ]);
    let a = ws.json(&[
        "audit",
        "--model",
        "digits",
        "--anchors",
        "500",
        "--search",
        "exact",
    ]);
    assert_eq!(a["n_samples"], 5000);
    let mean = a["population"]["mean"].as_f64().unwrap();
    assert!(mean > 0.1 && mean < 1.5, "digit GAN MCCS mean {mean}");
    let modes = ws.json(&["modes", "--model", "digits", "--top", "3"]);
    let top = modes["anchors"][0]["neighbors"].as_u64().unwrap();
    assert!(
        top >= a["worst"]["neighbors"].as_u64().unwrap(),
        "the modes search finds a mode at least as dense"
    );
    // The grid of the worst mode, regenerated through the generator.
    let grid = ws.path("grid.png");
    let id = modes["anchors"][0]["sample_id"]
        .as_i64()
        .unwrap()
        .to_string();
    ws.ok(&[
        "neighbors",
        "--model",
        "digits",
        "--id",
        &id,
        "--k",
        "8",
        "--grid",
        grid.to_str().unwrap(),
    ]);
    let png = image::open(&grid).unwrap();
    assert!(png.width() >= 3 * 96 && png.height() >= 3 * 96);
}

#[test]
fn test_models_whose_shapes_do_not_fit_are_refused() {
    let ws = Workspace::new();
    let generator = data("digits-generator.onnx").display().to_string();
    let desc = data("digits-descriptor.onnx").display().to_string();
    // The descriptor as generator: its input is NCHW, not [N, k].
    let err = ws.fails(&[
        "sample",
        "--model",
        "x",
        "--generator",
        &format!("onnx:{desc}"),
        "--n",
        "10",
    ]);
    assert!(err.contains("expected [N, k]"), "{err}");
    // The generator as descriptor: its input is [N, 32], not NCHW.
    let spec = format!("onnx:{generator},descriptor={generator}");
    let err = ws.fails(&["sample", "--model", "x", "--generator", &spec, "--n", "10"]);
    assert!(err.contains("expected NCHW"), "{err}");
    // Images without a descriptor.
    let err = ws.fails(&[
        "sample",
        "--model",
        "x",
        "--generator",
        &format!("onnx:{generator}"),
        "--n",
        "10",
    ]);
    assert!(err.contains("need --descriptor"), "{err}");
    // Not a model at all.
    let bogus = ws.path("bogus.onnx");
    std::fs::write(&bogus, b"not a model").unwrap();
    let err = ws.fails(&[
        "sample",
        "--model",
        "x",
        "--generator",
        &format!("onnx:{}", bogus.display()),
        "--n",
        "10",
    ]);
    assert!(
        err.contains("bogus.onnx") && err.contains("not a model"),
        "{err}"
    );
    // Descriptor flags without an ONNX generator.
    let err = ws.fails(&[
        "sample",
        "--model",
        "x",
        "--generator",
        "synthetic",
        "--descriptor",
        "onnx:d.onnx",
        "--n",
        "10",
    ]);
    assert!(err.contains("apply to an onnx: generator"), "{err}");
    // Nothing reached a catalog: refused black boxes are refused before the
    // catalog is even created.
    assert!(!ws.catalog.exists(), "a refused model created the catalog");
}

#[test]
fn test_missing_runtime_says_how_to_get_one() {
    let ws = Workspace::new();
    let spec = full_spec();
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.args([
            "sample",
            "--model",
            "x",
            "--generator",
            &spec,
            "--n",
            "10",
            "--quiet",
            "--catalog",
        ])
        .arg(&ws.catalog)
        .current_dir(ws.dir.path())
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("VIRTUAL_ENV")
        .env("PATH", "/nonexistent");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run(&[("MODEAUDIT_PYTHON", "/nonexistent/python")]);
    assert!(
        err.contains("ONNX Runtime not found") && err.contains("onnxruntime==1.31.1"),
        "{err}"
    );
    let err = run(&[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")]);
    assert!(
        err.contains("ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so is not a file"),
        "{err}"
    );
}
