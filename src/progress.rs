//! Progress bars on stderr for long work.
//!
//! Library functions take a [`Progress`] and ask it for bars, so that the
//! command line can show them and tests and `--quiet` runs can hide them,
//! without any function knowing which.

use indicatif::{ProgressBar, ProgressStyle};

/// Makes progress bars, or hidden ones.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    /// Bars drawn on stderr (indicatif hides them when stderr is not a
    /// terminal).
    pub fn stderr() -> Progress {
        Progress { visible: true }
    }

    /// No bars at all.
    pub fn hidden() -> Progress {
        Progress { visible: false }
    }

    /// A bar of `len` steps labelled `message`.
    pub fn bar(&self, len: u64, message: &str) -> ProgressBar {
        if !self.visible {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, {eta})",
            )
            .expect("valid template"),
        );
        bar.set_message(message.to_string());
        bar
    }
}
