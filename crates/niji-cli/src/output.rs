//! The CLI's user output: the one place allowed to print.
#![allow(dead_code)] // Used as command modules land; removed once all are wired.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

/// Print a line to stdout.
pub fn line(s: impl std::fmt::Display) {
    println!("{s}");
}

/// Write raw text to stdout (for NDJSON and tables), ignoring a closed pipe.
pub fn raw(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
}

/// Print an error chain to stderr.
pub fn error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// Write binary output (Arrow IPC) to stdout.
pub fn bytes(b: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b)?;
    out.flush()
}
