//! Any bytes given to the .npy parser give a matrix or a reason, never a
//! panic or an allocation out of proportion to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = modeaudit_vecfile::parse_npy(data) {
        // What is accepted is consistent with the bytes it came from.
        assert!(m.len() * 4 <= data.len());
    }
    let _ = modeaudit_vecfile::kind_of_bytes(data);
});
