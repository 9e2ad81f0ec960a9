//! Any bytes given to the .npz parser give a matrix or a reason, never a
//! panic; a member cannot expand past its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = modeaudit_vecfile::parse_npz(data, None, &["embeddings", "latents"]);
    let _ = modeaudit_vecfile::parse_npz(data, Some("embeddings"), &[]);
});
