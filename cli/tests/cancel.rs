//! Bounded cancellation (ARCHITECTURE.md): once a workflow has failed or
//! been cancelled, `oxiida run` exits within 3 s, even while a plugin call
//! never returns, with the error printed at once and the usual exit status.
//! The call that never returns is the Rust test plugin's `hang`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

/// What "exits within 3 s" means, measured from the failure or the signal.
const BOUND: Duration = Duration::from_secs(3);

fn plugin() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| common::workspace_plugin("oxiida-test-plugin", "liboxiida_test_plugin.so"))
}

fn workdir(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-cancel-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `oxiida run --plugin <rust-test> wf.ox` in `dir`, its output piped.
fn spawn(dir: &Path, workflow: &str) -> Child {
    std::fs::write(dir.join("wf.ox"), workflow).unwrap();
    Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .arg("run")
        .arg("--plugin")
        .arg(plugin())
        .arg("wf.ox")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` (killing it after 20 s, so a hang fails the test
/// instead of stalling the suite); its exit code, stderr and when it ended.
fn finish(mut child: Child) -> (Option<i32>, String, Instant) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let ended = Instant::now();
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status.code(), stderr, ended);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("oxiida run did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_failing_sibling_ends_the_run_while_a_call_hangs() {
    let dir = workdir("sibling");
    let started = dir.join("started");
    // The sibling fails once `hang` is surely running on its thread.
    let workflow = format!(
        "require hang, double;\npara {{\n    h = hang({:?});\n    seq {{\n        r = shell {{\"sh\", [\"-c\", \"while [ ! -e started ]; do sleep 0.01; done\"]}};\n        d = double(\"not an Int\");\n    }}\n}}\nprint \"not reached\";\n",
        started.display().to_string()
    );
    let child = spawn(&dir, &workflow);
    common::wait_for_file(&started);
    let seen = Instant::now();
    let (code, stderr, ended) = finish(child);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("double takes an Int"), "the error is printed: {stderr}");
    assert!(ended - seen < BOUND, "exited {:?} after the sibling could fail", ended - seen);
}

#[test]
fn ctrl_c_ends_the_run_while_an_inline_call_hangs() {
    let dir = workdir("sigint-inline");
    let started = dir.join("started");
    // Alone, the call runs on the workflow's own thread: nothing can drop it.
    let child = spawn(&dir, &format!("require hang;\nh = hang({:?});\nprint \"not reached\";\n", started.display().to_string()));
    common::wait_for_file(&started);
    let signalled = Instant::now();
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let (code, stderr, ended) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(ended - signalled < BOUND, "exited {:?} after SIGINT", ended - signalled);
}

#[test]
fn sigterm_ends_the_run_while_calls_in_para_hang() {
    let dir = workdir("sigterm-para");
    let (one, two) = (dir.join("one"), dir.join("two"));
    let workflow = format!(
        "require hang;\npara {{\n    a = hang({:?});\n    b = hang({:?});\n}}\n",
        one.display().to_string(),
        two.display().to_string()
    );
    let child = spawn(&dir, &workflow);
    common::wait_for_file(&one);
    common::wait_for_file(&two);
    let signalled = Instant::now();
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (code, stderr, ended) = finish(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("terminated"), "{stderr}");
    assert!(ended - signalled < BOUND, "exited {:?} after SIGTERM", ended - signalled);
    assert!(!stderr.contains("did not stop"), "calls on blocking threads are dropped at once, without the grace: {stderr}");
}
