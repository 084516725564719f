//! The C embedding API: `tests/c/embed.c`, compiled against
//! `include/oxiida.h` and linked with liboxiida, registers callbacks, runs
//! workflows calling them (in `para` too), checks every error path, and runs
//! 10,000 calls under valgrind without a definite leak.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn lib_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_oxiida")).parent().expect("a target folder").to_path_buf()
}

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("oxiida-embed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fn embed_program() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let exe = scratch().join("embed");
        let libs = lib_dir();
        assert!(libs.join("liboxiida.so").is_file(), "liboxiida.so is built with the crate");
        let rpath = format!("-Wl,-rpath,{}", libs.display());
        let src = common::root().join("tests/c/embed.c");
        let lflag = format!("-L{}", libs.display());
        let args: Vec<&OsStr> = vec![
            src.as_os_str(),
            "-o".as_ref(),
            exe.as_os_str(),
            lflag.as_ref(),
            "-loxiida".as_ref(),
            rpath.as_ref(),
            "-lpthread".as_ref(),
        ];
        common::cc(&args);
        exe
    })
}

fn example_plugin() -> PathBuf {
    let out = scratch().join("libexample.so");
    let src = common::root().join("plugins/c/example.c");
    common::cc(&["-shared".as_ref(), "-fPIC".as_ref(), src.as_os_str(), "-o".as_ref(), out.as_os_str(), "-lpthread".as_ref()]);
    out
}

#[test]
fn a_c_program_embeds_oxiida() {
    let plugin = example_plugin();
    let out = Command::new(embed_program()).arg("check").arg(&plugin).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "embed.c checks failed:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "49\ntrue\n10\n");
}

#[test]
fn ten_thousand_calls_leak_nothing_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("note: valgrind is not installed; the leak check is skipped");
        return;
    }
    for args in [&["loop", "10000"][..], &["check"][..]] {
        let out = Command::new("valgrind")
            .args(["-q", "--leak-check=full", "--errors-for-leak-kinds=definite", "--error-exitcode=99"])
            .arg(embed_program())
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "valgrind on embed {args:?}:\n{stderr}");
    }
}
