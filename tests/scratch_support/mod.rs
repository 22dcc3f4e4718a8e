//! A test's own path under the system temporary directory: removed when the test is done
//! with it, kept (and named on stderr) when the test fails, so a failure leaves its evidence.
//! Shared by the test support modules, the tests that use none of them and the benchmarks'
//! inputs (benches/inputs); it touches nothing but its one path.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// `msntap-NAME-PID` under the temporary directory, removed on drop unless the thread is
/// panicking. Whatever runs in it (a child msntap, a thread) must be done before the guard
/// drops: declare the guard first, so it outlives them.
#[must_use = "the path is removed as soon as its guard is dropped"]
pub struct Scratch(PathBuf);

impl Scratch {
    /// The path, nothing there yet: for what the code under test creates itself. A leftover
    /// of an earlier process with the same id is removed first.
    pub fn path(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("msntap-{name}-{}", std::process::id()));
        remove(&p);
        Scratch(p)
    }

    /// An empty directory.
    pub fn dir(name: &str) -> Scratch {
        let s = Scratch::path(name);
        std::fs::create_dir_all(&s.0)
            .unwrap_or_else(|e| panic!("scratch directory {}: {e}", s.0.display()));
        s
    }

    /// Gives the path up: it is no longer removed, and the guard is empty from now on.
    pub fn keep(&mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<OsStr> for Scratch {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        if std::thread::panicking() {
            // The failure's evidence: the panic message may not say where it is.
            if self.0.exists() {
                eprintln!("kept {} (the run failed)", self.0.display());
            }
        } else {
            remove(&self.0);
        }
    }
}

fn remove(p: &Path) {
    let r = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(_) => return,
    };
    if let Err(e) = r {
        eprintln!("could not remove {}: {e}", p.display());
    }
}
