//! The `modeaudit` command line: parses arguments, calls the library, prints
//! results on stdout (a table, or JSON with `--json`) and logs and progress
//! on stderr. Nothing here computes anything the library does not.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
