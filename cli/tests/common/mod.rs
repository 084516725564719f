//! Helpers shared by the CLI's integration tests: building C and plugins,
//! running the `oxiida` binary; watching processes comes from the language
//! crate's test helpers.
// Each test binary uses its own subset.
#![allow(dead_code)]

#[path = "../../../core/tests/common/mod.rs"]
mod procs;
#[allow(unused_imports)]
pub use procs::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the C compiler (`$CC`, else `cc`) with the repository's `include/`
/// and strict warnings, then `args`; panics with its output on failure.
pub fn cc(args: &[&std::ffi::OsStr]) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .args(["-std=c99", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-pedantic", "-Werror", "-I"])
        .arg(root().join("include"))
        .args(args)
        .output()
        .expect("a C compiler runs");
    assert!(built.status.success(), "{cc} {args:?} failed:\n{}", String::from_utf8_lossy(&built.stderr));
}

/// Builds a plugin crate of the workspace (`cargo build -p PACKAGE`) in a
/// target folder of its own, so this nested cargo never waits on the lock of
/// the build running the tests, and returns the library's path.
pub fn workspace_plugin(package: &str, library: &str) -> PathBuf {
    let target = root().join("target/nested");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", package, "--target-dir"])
        .arg(&target)
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(built.success(), "building {package} failed");
    target.join("debug").join(library)
}

/// `oxiida run --plugin PLUGIN{config} FILE`, the workflow written to a file
/// of its own in `dir` (tests run in parallel: names never collide).
pub fn run_with_plugin(plugin: &Path, config: &str, dir: &Path, workflow: &str) -> std::process::Output {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let file = dir.join(format!("wf{}.ox", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    std::fs::write(&file, workflow).unwrap();
    Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .arg("run")
        .arg("--plugin")
        .arg(format!("{}{config}", plugin.display()))
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}
