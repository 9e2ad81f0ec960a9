//! Parsers of the vector files modeaudit reads: `.npy` and `.npz` images of
//! float matrices, as NumPy writes them.
//!
//! They work on bytes in memory and depend on nothing but `ndarray`,
//! `ndarray-npy` and `zip`, so that they can be fuzzed on their own (see
//! `fuzz/` at the top of the repository): whatever the bytes, they return a
//! matrix or a reason, never panic, and never allocate much more than the
//! input's own size suggests. Finiteness and norms are checked afterwards by
//! modeaudit, which names the bad row.

use std::io::Cursor;

use ndarray::{Array1, Array2};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{NpzReader, ReadNpyError, ReadNpyExt};

/// What a vector file is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Npy,
    /// A zip archive of `.npy` files (NumPy's `savez`).
    Npz,
    Parquet,
}

/// Recognises a vector file by its magic bytes.
pub fn kind_of_bytes(head: &[u8]) -> Option<FileKind> {
    if head.starts_with(b"\x93NUMPY") {
        Some(FileKind::Npy)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(FileKind::Npz)
    } else if head.starts_with(b"PAR1") {
        Some(FileKind::Parquet)
    } else {
        None
    }
}

/// Element types a vector file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Float {
    F32,
    F64,
}

/// Checks the header length a `.npy` prefix declares against the bytes
/// that are there, before `ndarray-npy` reads the header: it allocates the
/// declared length up front, and format versions 2 and 3 declare it in four
/// bytes, so a corrupt or hostile file could ask for 4 GiB (the fuzzer found
/// exactly that: `fuzz/regressions/npy/`).
fn check_header_length(bytes: &[u8]) -> std::result::Result<(), String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a valid .npy header (no \\x93NUMPY magic string)".into());
    }
    let (declared, prefix) = match bytes[MAGIC.len()] {
        1 if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        1..=3 => return Err("not a valid .npy header (truncated prefix)".into()),
        version => {
            return Err(format!(
                "not a valid .npy header (unknown format version {version})"
            ));
        }
    };
    if declared > bytes.len() - prefix {
        return Err(format!(
            "not a valid .npy header (it declares {declared} header bytes but only {} follow)",
            bytes.len() - prefix
        ));
    }
    Ok(())
}

/// Parses a `.npy` image of floats into a matrix of f32.
///
/// The header is read first so that a wrong type, rank or length is
/// reported as such (ndarray-npy's own errors do not say what the file
/// holds), and so that no buffer larger than the file is ever allocated.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<Array2<f32>, String> {
    check_header_length(bytes)?;
    let mut cursor = Cursor::new(bytes);
    let header =
        Header::from_reader(&mut cursor).map_err(|e| format!("not a valid .npy header ({e})"))?;
    let descriptor = header.type_descriptor.to_string();
    let descriptor = descriptor.trim_matches(|c| c == '\'' || c == '"');
    let float = match descriptor {
        "<f4" | ">f4" | "=f4" | "f4" => Float::F32,
        "<f8" | ">f8" | "=f8" | "f8" => Float::F64,
        other => {
            return Err(format!(
                "holds dtype {other}; expected float32 or float64 (convert with .astype('float32'))"
            ));
        }
    };
    let shape = header.shape.clone();
    let width = match float {
        Float::F32 => 4,
        Float::F64 => 8,
    };
    let values = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let data_len = bytes.len() - cursor.position() as usize;
    match values.and_then(|v| v.checked_mul(width)) {
        Some(needed) if needed == data_len => {}
        Some(needed) if needed > data_len => {
            return Err(format!(
                "truncated: its header promises shape {shape:?} ({needed} bytes of data) but only \
                 {data_len} bytes follow"
            ));
        }
        Some(needed) => {
            return Err(format!(
                "has {} bytes after the {needed} bytes of data its header (shape {shape:?}) \
                 describes",
                data_len - needed
            ));
        }
        None => return Err(format!("its shape {shape:?} is too large")),
    }
    let result = match (shape.len(), float) {
        (1, Float::F32) => Array1::<f32>::read_npy(bytes).map(|v| v.insert_axis(ndarray::Axis(0))),
        (1, Float::F64) => Array1::<f64>::read_npy(bytes)
            .map(|v| v.mapv(|x| x as f32).insert_axis(ndarray::Axis(0))),
        (2, Float::F32) => Array2::<f32>::read_npy(bytes),
        (2, Float::F64) => Array2::<f64>::read_npy(bytes).map(|m| m.mapv(|x| x as f32)),
        (rank, _) => {
            return Err(format!(
                "has shape {shape:?} (rank {rank}); expected [rows, dimension] or one vector"
            ));
        }
    };
    let matrix = result.map_err(describe_npy_error)?;
    // A Fortran-order file reads into a column-major array: make it rows.
    Ok(matrix.as_standard_layout().into_owned())
}

fn describe_npy_error(e: ReadNpyError) -> String {
    match e {
        ReadNpyError::MissingData => "truncated: the data ends before its header's shape".into(),
        ReadNpyError::ExtraBytes(n) => format!("has {n} bytes after its data"),
        other => format!("unreadable .npy data ({other})"),
    }
}

/// Parses a `.npz` image: the array named `name`, else the only array, else
/// the first present of `preferred`.
pub fn parse_npz(
    bytes: &[u8],
    name: Option<&str>,
    preferred: &[&str],
) -> std::result::Result<(String, Array2<f32>), String> {
    let mut archive = NpzReader::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable .npz archive ({e})"))?;
    let names = archive
        .names()
        .map_err(|e| format!("not a readable .npz archive ({e})"))?;
    // NumPy stores array `x` as member `x.npy`; ndarray-npy lists the names
    // without the suffix, and accepts them either way.
    let plain: Vec<String> = names
        .iter()
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    let chosen = match name {
        Some(name) => {
            if !plain.iter().any(|n| n == name) {
                return Err(format!("has no array named {name:?}; it holds {plain:?}"));
            }
            name.to_string()
        }
        None if plain.len() == 1 => plain[0].clone(),
        None => preferred
            .iter()
            .find(|p| plain.iter().any(|n| n == *p))
            .map(|p| p.to_string())
            .ok_or_else(|| {
                format!(
                    "holds arrays {plain:?}; name the one to read (expected one of {preferred:?})"
                )
            })?,
    };
    let index = plain
        .iter()
        .position(|n| *n == chosen)
        .expect("chosen from the list");
    // Read the member's raw bytes so that the .npy parser above checks it.
    let member = names[index].clone();
    let raw = read_npz_member(bytes, &member).map_err(|e| format!("array {chosen:?}: {e}"))?;
    let matrix = parse_npy(&raw).map_err(|e| format!("array {chosen:?} {e}"))?;
    Ok((chosen, matrix))
}

/// The uncompressed bytes of one member of a zip archive, refusing members
/// that claim to expand to more than 64 times their compressed size plus a
/// megabyte (a zip bomb would otherwise exhaust memory before any check).
fn read_npz_member(bytes: &[u8], member: &str) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let file_name = if zip.index_for_name(member).is_some() {
        member.to_string()
    } else {
        format!("{member}.npy")
    };
    let mut entry = zip.by_name(&file_name).map_err(|e| e.to_string())?;
    let limit = entry
        .compressed_size()
        .saturating_mul(64)
        .saturating_add(1 << 20);
    if entry.size() > limit {
        return Err(format!(
            "claims to expand to {} bytes, too many for its size",
            entry.size()
        ));
    }
    let mut out = Vec::with_capacity(entry.size() as usize);
    (&mut entry)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}
