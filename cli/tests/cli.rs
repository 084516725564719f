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

#[test]
fn inputs_from_the_command_line_and_a_json_file_are_bound_before_the_first_statement() {
    let dir = workdir("inputs");
    std::fs::write(dir.join("wf.ox"), "print n * 2;\nprint el;\nprint cfg;\n").unwrap();
    let out = oxiida(&dir, &["run", "wf.ox", "--input", "n=21", "--input", "el=\"Si\"", "--input", "cfg={\"k\": [1, -2.5, nil, true]}"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "42\nSi\n{\"k\": [1, -2.5, nil, true]}\n");

    // JSON: a number without a fraction is an Int, with one a Float; keys keep their order.
    std::fs::write(dir.join("in.json"), "{\"n\": 2, \"el\": 1.0, \"cfg\": {\"b\": null, \"a\": [false]}}").unwrap();
    let out = oxiida(&dir, &["run", "wf.ox", "--inputs", "in.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "4\n1.0\n{\"b\": nil, \"a\": [false]}\n");

    // Both together, each name once.
    std::fs::write(dir.join("some.json"), "{\"n\": 5}").unwrap();
    let out = oxiida(&dir, &["run", "wf.ox", "--inputs", "some.json", "--input", "el=1", "--input", "cfg=nil"]);
    assert_eq!(text(&out.stdout), "10\n1\nnil\n");
    let out = oxiida(&dir, &["run", "wf.ox", "--inputs", "some.json", "--input", "n=1", "--input", "el=1", "--input", "cfg=nil"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("input `n` is given twice"), "{}", text(&out.stderr));
}

#[test]
fn a_bad_input_is_a_usage_error_that_says_what_to_write() {
    let dir = workdir("bad-inputs");
    std::fs::write(dir.join("wf.ox"), "print \"ran\";\nprint n;\n").unwrap();
    std::fs::write(dir.join("list.json"), "[1]").unwrap();
    std::fs::write(dir.join("broken.json"), "{\"n\": ").unwrap();
    std::fs::write(dir.join("huge.json"), "{\"n\": 18446744073709551615}").unwrap();
    for (args, says) in [
        (&["--input", "n=Si"][..], "`Si` is a name, not a literal; a String is written in double quotes"),
        (&["--input", "n=1 + 1"], "only literals are allowed"),
        (&["--input", "n="], "the value is empty"),
        (&["--input", "n"], "give a value as NAME=VALUE, e.g. --input n=5"),
        (&["--input", "n=[1,"], "not a literal of the language"),
        (&["--inputs", "list.json"], "must hold one JSON object of names to values"),
        (&["--inputs", "broken.json"], "is not valid JSON"),
        (&["--inputs", "huge.json"], "too large for an Int"),
        (&["--inputs", "missing.json"], "cannot read missing.json"),
    ] {
        let mut all = vec!["run", "wf.ox"];
        all.extend_from_slice(args);
        let out = oxiida(&dir, &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing ran");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // A name the language refuses is found before running, like any resolve error.
    let out = oxiida(&dir, &["run", "wf.ox", "--input", "len=1", "--input", "if=2"]);
    assert_eq!(out.status.code(), Some(65));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("input `len` has the name of a builtin") && err.contains("input `if` is not a valid variable name"), "{err}");
}

#[test]
fn check_needs_only_the_names_of_the_inputs() {
    let dir = workdir("check-inputs");
    std::fs::write(dir.join("wf.ox"), "print n + m;\n").unwrap();
    let out = oxiida(&dir, &["check", "wf.ox", "--input", "n", "--input", "m=2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "wf.ox: ok\n");
    let out = oxiida(&dir, &["check", "wf.ox", "--input", "n"]);
    assert_eq!(out.status.code(), Some(65));
    assert!(text(&out.stderr).contains("`m` is not defined"), "{}", text(&out.stderr));
    // A value given to check must still be a literal.
    assert_eq!(oxiida(&dir, &["check", "wf.ox", "--input", "n", "--input", "m=two"]).status.code(), Some(2));
}

#[test]
fn the_version_is_the_workspace_version() {
    let dir = workdir("version");
    let out = oxiida(&dir, &["--version"]);
    assert_eq!(text(&out.stdout), format!("oxiida {}\n", env!("CARGO_PKG_VERSION")));
}
