//! The C embedding API: `tests/c/embed.c`, compiled against
//! `include/oxiida.h` and linked with liboxiida, registers callbacks, runs
//! workflows calling them (in `para` too, and with keyword arguments through
//! `oxiida_runtime_register_kw`), checks every error path, and runs
//! 10,000 calls under valgrind without a definite leak.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where cargo put liboxiida.so: beside the executable after `cargo build`
/// (a bare `cargo test` does not build the `liboxiida` crate's cdylib).
fn lib_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_BIN_EXE_oxiida")).parent().expect("a target folder");
    [target.to_path_buf(), target.join("deps")]
        .into_iter()
        .find(|d| d.join("liboxiida.so").is_file())
        .expect("liboxiida.so is not built: run `cargo build -p liboxiida` first (scripts/test.sh does)")
}

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-embed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fn embed_program() -> &'static PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let exe = scratch().join("embed");
        let libs = lib_dir();
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
    assert_eq!(String::from_utf8_lossy(&out.stdout), "49\ntrue\n6\n30\n10\nHi, you\n");
}

#[test]
fn a_c_program_loads_a_process_plugin_with_exec() {
    let kit = common::root().join("plugins/node");
    assert!(kit.join("node_modules/@msgpack/msgpack").is_dir(), "run `npm ci` in plugins/node (scripts/test.sh does)");
    let spec = format!("exec:node={}", kit.join("test/fixtures/testing.js").display());
    let out = Command::new(embed_program()).arg("exec").arg(&spec).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "embed.c exec checks failed:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n[1, \"two\", {\"k\": 3.5}]\n3\n");
}

#[test]
fn an_installed_cli_finds_its_plugins_with_an_empty_environment() {
    // A staging folder as a build leaves it: the CLI, liboxiida and the Lua plugin.
    let from = scratch().join("staged");
    std::fs::create_dir_all(&from).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_oxiida"));
    std::fs::copy(exe, from.join("oxiida")).unwrap();
    std::fs::copy(lib_dir().join("liboxiida.so"), from.join("liboxiida.so")).unwrap();
    std::fs::copy(common::workspace_plugin("oxiida-lua", "liboxiida_lua.so"), from.join("liboxiida_lua.so")).unwrap();
    let prefix = scratch().join("installed");
    let out = Command::new("bash").arg(common::root().join("scripts/install.sh")).arg(&prefix).env("FROM", &from).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(prefix.join("lib/oxiida/plugins/liboxiida_lua.so").is_file());
    let work = scratch().join("installed-work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("tools.lua"), "function twice(x) return 2 * x end\n").unwrap();
    std::fs::write(work.join("wf.ox"), "require twice from lua;\nprint twice(21);\n").unwrap();
    let out = Command::new("env")
        .args(["-i", &prefix.join("bin/oxiida").display().to_string(), "run", "--plugin", "lua=tools.lua", "wf.ox"])
        .current_dir(&work)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n", "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("env").args(["-i", &prefix.join("bin/oxiida").display().to_string(), "plugins"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("lib/oxiida/plugins/liboxiida_lua.so"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
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

#[test]
fn the_install_rule_puts_header_library_and_pkg_config_in_place() {
    let prefix = scratch().join("prefix");
    let exe_dir = Path::new(env!("CARGO_BIN_EXE_oxiida")).parent().unwrap();
    let out = Command::new("bash").arg(common::root().join("scripts/install.sh")).arg(&prefix).env("FROM", exe_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for file in ["bin/oxiida", "lib/liboxiida.so", "include/oxiida.h", "lib/pkgconfig/oxiida.pc"] {
        assert!(prefix.join(file).is_file(), "{file} was not installed");
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/oxiida.pc")).unwrap();
    assert!(pc.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))), "{pc}");
    // A program built with pkg-config's flags against the installed copy runs.
    let Ok(flags) =
        Command::new("pkg-config").args(["--cflags", "--libs", "oxiida"]).env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")).output()
    else {
        eprintln!("note: pkg-config is not installed; the installed library is not linked against");
        return;
    };
    assert!(flags.status.success(), "{}", String::from_utf8_lossy(&flags.stderr));
    let flags = String::from_utf8(flags.stdout).unwrap();
    let exe = scratch().join("embed-installed");
    let src = common::root().join("tests/c/embed.c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built =
        Command::new(&cc).arg("-std=c99").arg(&src).arg("-o").arg(&exe).args(flags.split_whitespace()).arg("-lpthread").output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let ran = Command::new(&exe).arg("check").output().unwrap();
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "49\ntrue\n6\n30\n");
}
