//! Where a benchmark writes the inputs it generates: a directory under the system temporary
//! directory, removed when the benchmark ends unless MSNTAP_BENCH_KEEP=1, which keeps it and
//! says where (to reuse a capture with MSNTAP_BENCH_CAPTURE=FILE, or to look at it).
//! Benchmark support only; it measures nothing and touches nothing but its directory.

use std::ops::Deref;
use std::path::{Path, PathBuf};

/// Whether MSNTAP_BENCH_KEEP asks to keep the generated inputs.
pub fn keep() -> bool {
    std::env::var_os("MSNTAP_BENCH_KEEP").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `msntap-NAME-PID` under the temporary directory, created empty.
pub struct Inputs(PathBuf);

impl Inputs {
    pub fn dir(name: &str) -> Inputs {
        let d = std::env::temp_dir().join(format!("msntap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Inputs(d)
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
            let _ = std::fs::remove_dir_all(&self.0);
            return;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        if files.is_empty() {
            let _ = std::fs::remove_dir(&self.0);
        }
        for f in files {
            println!("kept {} (MSNTAP_BENCH_KEEP=1)", f.display());
        }
    }
}
