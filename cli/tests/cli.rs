//! The `oxiida` command-line tool: exit statuses, what goes to which stream,
//! and Ctrl-C.

mod common;

use common::text;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn workdir(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn oxiida(dir: &PathBuf, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oxiida")).args(args).current_dir(dir).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn a_missing_file_is_a_one_line_usage_error() {
    let dir = workdir("missing");
    let out = oxiida(&dir, &["run", "nope.ox"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nope.ox"), "{err}");
}

#[test]
fn bad_options_are_usage_errors() {
    let dir = workdir("usage");
    assert_eq!(oxiida(&dir, &[]).status.code(), Some(2));
    assert_eq!(oxiida(&dir, &["run", "--max-tasks", "0", "x.ox"]).status.code(), Some(2));
    let version = oxiida(&dir, &["--version"]);
    assert!(text(&version.stdout).starts_with("oxiida "));
}

#[test]
fn syntax_and_resolve_errors_are_reported_together_and_nothing_runs() {
    let dir = workdir("together");
    std::fs::write(dir.join("wf.ox"), "print \"ran\";\nx = 1;\npara { x = 2; }\ny = ;\nwhile (true) { para { break; } }\n").unwrap();
    for cmd in ["run", "check"] {
        let out = oxiida(&dir, &[cmd, "wf.ox"]);
        assert_eq!(out.status.code(), Some(65), "{cmd}");
        assert!(out.stdout.is_empty(), "{cmd}: nothing runs, nothing on stdout");
        let err = text(&out.stderr);
        for want in ["wf.ox:3:8", "rebind `x`", "wf.ox:4:5", "expected expression", "wf.ox:5:23", "`break` outside of a loop", "3 errors"] {
            assert!(err.contains(want), "{cmd}: stderr lacks {want:?}:\n{err}");
        }
    }
}

#[test]
fn print_goes_to_stdout_and_errors_to_stderr() {
    let dir = workdir("streams");
    std::fs::write(dir.join("wf.ox"), "print \"one\";\nr = shell {\"sh\", [\"-c\", \"echo noise >&2\"]};\nprint [1, 2];\nprint 1 / 0;\n")
        .unwrap();
    let out = oxiida(&dir, &["run", "wf.ox"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "one\n[1, 2]\n");
    let err = text(&out.stderr);
    assert!(err.contains("division by zero") && err.contains("wf.ox:4:9"), "{err}");
    assert!(!err.contains("noise"), "a task's stderr is captured in its value");
    let ok = oxiida(&dir, &["check", "wf.ox"]);
    assert_eq!(ok.status.code(), Some(0));
}

#[test]
fn ctrl_c_cancels_the_workflow_and_kills_its_processes() {
    let dir = workdir("sigint");
    let pidfile = dir.join("pid");
    let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
    std::fs::write(dir.join("wf.ox"), format!("r = shell {{\"sh\", [\"-c\", {script:?}]}};\nprint \"not reached\";\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .args(["run", "wf.ox"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sleeper: i32 = common::wait_for_file(&pidfile).parse().unwrap();
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(stdout.is_empty());
    common::assert_stops(sleeper, "the workflow's `sleep` after Ctrl-C");
}

#[test]
fn ctrl_c_stops_a_loop_that_never_awaits() {
    let dir = workdir("busy");
    std::fs::write(dir.join("wf.ox"), "r = shell {\"sh\", [\"-c\", \"echo yes > started\"]};\ni = 0;\nwhile (true) { i = i + 1; }\n")
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .args(["run", "wf.ox"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for_file(&dir.join("started"));
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
}
