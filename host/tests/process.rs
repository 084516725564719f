//! A process plugin in a long-lived host, through the `Host` trait: the
//! Node kit's test fixture (its npm dependencies installed by scripts/test.sh).
//! A crash fails the call and the host lives on; ending a session reaps the
//! process, so no zombie stays behind in the host.

use std::path::{Path, PathBuf};

use oxiida::foreign::{CallMode, ForeignErrorKind, ForeignName, Host};
use oxiida::value::Value;
use oxiida_host::{load, locate, PluginHost};

fn fixture() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/node");
    assert!(kit.join("node_modules/@msgpack/msgpack").is_dir(), "run `npm ci` in plugins/node (scripts/test.sh does)");
    kit.join("test/fixtures/testing.js")
}

fn host() -> PluginHost {
    let plugin = load(&locate("exec:node").expect("node is on PATH")).unwrap();
    let host = PluginHost::new(&[(plugin, fixture().display().to_string())]).unwrap();
    for name in ["pid", "exit_now", "add"] {
        host.resolve(&ForeignName::new(name)).unwrap();
    }
    host
}

fn call(host: &PluginHost, name: &str, args: Vec<Value>) -> Result<Value, oxiida::foreign::ForeignError> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(host.call(&ForeignName::new(name), args, Vec::new(), CallMode::Thread))
}

/// Whether `pid` still has a process entry: a zombie keeps one until reaped.
fn exists(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_crash_fails_the_call_the_host_lives_on_and_no_zombie_is_left() {
    let first = host();
    let Ok(Value::Int(pid)) = call(&first, "pid", vec![]) else { panic!("a pid") };
    let err = call(&first, "exit_now", vec![Value::Int(4)]).unwrap_err();
    assert_eq!(err.kind, ForeignErrorKind::WorkerCrashed);
    assert_eq!(err.message, "process plugin `testing` exited with status 4 during the call");
    let again = call(&first, "add", vec![Value::Int(1), Value::Int(2)]).unwrap_err();
    assert!(again.message.contains("exited with status 4 before the call"), "{}", again.message);
    assert!(!exists(pid), "the crashed plugin was reaped");

    let second = host();
    assert_eq!(call(&second, "add", vec![Value::Int(1), Value::Int(2)]).unwrap(), Value::Int(3), "a new session works");
    let Ok(Value::Int(pid)) = call(&second, "pid", vec![]) else { panic!("a pid") };
    assert!(exists(pid));
    drop(second);
    assert!(!exists(pid), "ending the session reaped the plugin");
    drop(first);
}
