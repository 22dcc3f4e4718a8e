//! Where a benchmark writes the inputs it generates: a scratch directory (the tests' guard)
//! removed when the benchmark ends unless MSNTAP_BENCH_KEEP=1, which keeps it and says where
//! (to reuse a capture with MSNTAP_BENCH_CAPTURE=FILE, or to look at it). Benchmark support
//! only; it measures nothing and touches nothing but its directory.

#[path = "../../tests/scratch_support/mod.rs"]
mod scratch_support;

use std::ops::Deref;
use std::path::{Path, PathBuf};

use scratch_support::Scratch;

/// Whether MSNTAP_BENCH_KEEP asks to keep the generated inputs.
pub fn keep() -> bool {
    std::env::var_os("MSNTAP_BENCH_KEEP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `msntap-NAME-PID` under the temporary directory, created empty.
pub struct Inputs(Scratch);

impl Inputs {
    pub fn dir(name: &str) -> Inputs {
        Inputs(Scratch::dir(name))
    }
}

impl Deref for Inputs {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Inputs {
    fn drop(&mut self) {
        if !keep() {
            return;
        }
        let dir = self.0.keep();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        if files.is_empty() {
            let _ = std::fs::remove_dir(&dir);
        }
        for f in files {
            println!("kept {} (MSNTAP_BENCH_KEEP=1)", f.display());
        }
    }
}
