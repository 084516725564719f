//! `oxiida run --executor`: where the Python plugin's `=f=` calls run. The
//! Dask cluster itself is started by the pytest suite
//! (plugins/python/tests/test_executor.py, which drives this binary too);
//! here, what needs no cluster: the flag reaches the plugin, `pool` is the
//! plugin's own workers, and an executor that cannot be used is a usage
//! error before anything runs, from the flag and from OXIIDA_EXECUTOR.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn run(dir: &std::path::Path, executor: Option<&str>, env: Option<&str>) -> Output {
    let plugin = common::workspace_plugin("oxiida-python", "liboxiida_python.so");
    std::fs::write(dir.join("steps.py"), "import os\n\ndef pid():\n    return os.getpid()\n").unwrap();
    std::fs::write(dir.join("wf.ox"), "r = shell {\"touch\", [\"ran\"]};\nrequire pid;\np = =pid=();\nprint p > 0;\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_oxiida"));
    command.current_dir(dir).arg("run").arg(format!("--plugin={}={}", plugin.display(), dir.join("steps.py").display()));
    if let Some(executor) = executor {
        command.args(["--executor", executor]);
    }
    command.env_remove("OXIIDA_EXECUTOR");
    if let Some(env) = env {
        command.env("OXIIDA_EXECUTOR", env);
    }
    command.arg("wf.ox").stdin(std::process::Stdio::null()).output().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-executor-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn pool_runs_f_calls_in_the_plugin_s_own_workers() {
    let dir = scratch("pool");
    let out = run(&dir, Some("pool"), Some("bogus://elsewhere"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "true\n");
}

#[test]
fn an_unusable_executor_is_a_usage_error_before_anything_runs() {
    for (flag, env) in [(Some("bogus://x:1"), None), (None, Some("bogus://x:1"))] {
        let dir = scratch(if flag.is_some() { "flag" } else { "env" });
        let out = run(&dir, flag, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("unknown executor `bogus://x:1`") && stderr.contains("dask://HOST:PORT"), "{stderr}");
        assert!(!dir.join("ran").exists(), "nothing runs");
    }
}
