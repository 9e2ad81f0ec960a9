//! The vector-file parsers (`crates/vecfile`, re-exported as
//! `modeaudit::vecfile`) on good and bad bytes, and on every input the fuzzer
//! kept (`fuzz/corpus`): none may panic.

use std::io::Cursor;

use modeaudit::vecfile::{parse_npy, parse_npz};

use ndarray::array;
use ndarray_npy::WriteNpyExt;

fn npy<A: WriteNpyExt>(a: &A) -> Vec<u8> {
    let mut out = Vec::new();
    a.write_npy(&mut out).unwrap();
    out
}

#[test]
fn test_parse_npy_accepts_float_matrices_and_vectors() {
    let m = array![[1.0f32, 2.0], [3.0, 4.0]];
    assert_eq!(parse_npy(&npy(&m)).unwrap(), m);
    let d = array![[1.0f64, 2.0], [3.0, 4.0]];
    assert_eq!(parse_npy(&npy(&d)).unwrap(), m);
    let v = array![1.0f32, 2.0, 3.0];
    assert_eq!(parse_npy(&npy(&v)).unwrap(), array![[1.0f32, 2.0, 3.0]]);
    // Fortran order comes back as rows.
    let f = m.t().as_standard_layout().into_owned();
    let fortran = f.reversed_axes();
    assert!(fortran.t().is_standard_layout());
    assert_eq!(parse_npy(&npy(&fortran)).unwrap(), fortran);
}

#[test]
fn test_parse_npy_says_what_is_wrong() {
    let ints = array![[1i64, 2], [3, 4]];
    assert!(parse_npy(&npy(&ints)).unwrap_err().contains("dtype <i8"));
    let cube = ndarray::Array3::<f32>::zeros((2, 2, 2));
    assert!(parse_npy(&npy(&cube)).unwrap_err().contains("rank 3"));
    let mut truncated = npy(&array![[1.0f32, 2.0], [3.0, 4.0]]);
    truncated.truncate(truncated.len() - 3);
    assert!(parse_npy(&truncated).unwrap_err().contains("truncated"));
    let mut extra = npy(&array![[1.0f32]]);
    extra.extend_from_slice(b"xx");
    assert!(parse_npy(&extra).unwrap_err().contains("2 bytes after"));
    assert!(
        parse_npy(b"\x93NUMPY garbage")
            .unwrap_err()
            .contains("header")
    );
    assert!(parse_npy(b"").is_err());
}

#[test]
fn test_parse_npz_picks_the_named_only_or_preferred_array() {
    let mut buffer = Cursor::new(Vec::new());
    {
        let mut w = ndarray_npy::NpzWriter::new_compressed(&mut buffer);
        w.add_array("embeddings", &array![[1.0f32, 0.0]]).unwrap();
        w.add_array("latents", &array![[0.5f64, 0.5, 0.5]]).unwrap();
        w.finish().unwrap();
    }
    let bytes = buffer.into_inner();
    let (name, e) = parse_npz(&bytes, None, &["embeddings"]).unwrap();
    assert_eq!((name.as_str(), e.dim()), ("embeddings", (1, 2)));
    let (_, z) = parse_npz(&bytes, Some("latents"), &[]).unwrap();
    assert_eq!(z.dim(), (1, 3));
    assert!(
        parse_npz(&bytes, None, &["x"])
            .unwrap_err()
            .contains("name the one")
    );
    assert!(
        parse_npz(&bytes, Some("nope"), &[])
            .unwrap_err()
            .contains("no array named")
    );
    assert!(parse_npz(b"PK\x03\x04rubbish", None, &[]).is_err());
}

/// Every input the fuzzer kept (`fuzz/corpus/<target>/`) and every input
/// that once crashed a parser (`fuzz/regressions/<target>/`, kept by hand
/// from `fuzz/artifacts/`) goes through the parsers again: each must give a
/// matrix or an error, never a panic.
#[test]
fn test_fuzz_corpus_and_regressions_parse_without_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut seen = 0;
    for folder in ["corpus", "regressions"] {
        for target in ["npy", "npz"] {
            let dir = root.join(folder).join(target);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let bytes = std::fs::read(entry.path()).unwrap();
                let outcome = std::panic::catch_unwind(|| match target {
                    "npy" => parse_npy(&bytes).map(|_| ()),
                    _ => parse_npz(&bytes, None, &["embeddings"]).map(|_| ()),
                });
                assert!(outcome.is_ok(), "{} panicked", entry.path().display());
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 100,
        "the committed fuzz corpus holds only {seen} inputs"
    );
}
