//! What several benches share.
// Each bench compiles this module and uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the C example plugin (`plugins/c/example.c`) with `-O2` into
/// `dir`, and returns the library's path.
pub fn example_plugin(dir: &Path) -> PathBuf {
    let root = root();
    let lib = dir.join("liboxiida_example.so");
    let built = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-O2", "-D_POSIX_C_SOURCE=200809L", "-I"])
        .arg(root.join("include"))
        .arg(root.join("plugins/c/example.c"))
        .arg("-o")
        .arg(&lib)
        .arg("-lpthread")
        .status()
        .expect("cc runs");
    assert!(built.success(), "building plugins/c/example.c failed");
    lib
}

/// A daemon a bench started: stopped (SIGTERM) and reaped when dropped.
pub struct Daemon(pub std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling the daemon this bench started (its pid, not yet
        // reaped, so not reused); then reaping it.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// The fastest of `runs` runs of the command `make` gives; each must succeed.
pub fn best(runs: usize, mut make: impl FnMut() -> Command) -> Duration {
    (0..runs)
        .map(|_| {
            let mut cmd = make();
            let start = Instant::now();
            let out = cmd.output().expect("oxiida runs");
            let took = start.elapsed();
            assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            took
        })
        .min()
        .expect("at least one run")
}
