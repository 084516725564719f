//! Process plugins in the daemon: `submit --plugin exec:...` starts the
//! plugin in the workflow's runner, one process per workflow.

use crate::common::{self, text};
use crate::support::*;

#[test]
fn a_submitted_workflow_calls_a_process_plugin() {
    let kit = common::root().join("plugins/node");
    assert!(kit.join("node_modules/@msgpack/msgpack").is_dir(), "run `npm ci` in plugins/node (scripts/test.sh does)");
    let spec = format!("exec:node={}", kit.join("test/fixtures/testing.js").display());
    let d = Daemon::foreground("process", &[]);
    d.write("wf.ox", "require add, pid from testing;\nprint add(40, 2);\np = pid();\n");
    let out = d.run(&["submit", "--wait", "--plugin", &spec, "wf.ox"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "42\n".into()), "{}", text(&out.stderr));
    d.write("crash.ox", "require exit_now;\nexit_now(9);\n");
    let out = d.run(&["submit", "--wait", "--plugin", &spec, "crash.ox"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("process plugin `testing` exited with status 9 during the call"), "{}", text(&out.stderr));
}

/// A recorded call of a process plugin names the plugin's process, not the
/// workflow's, in `workflow show`.
#[test]
fn a_recorded_call_of_a_process_plugin_names_the_plugin_s_process() {
    let kit = common::root().join("plugins/node");
    assert!(kit.join("node_modules/@msgpack/msgpack").is_dir(), "run `npm ci` in plugins/node (scripts/test.sh does)");
    let spec = format!("exec:node={}", kit.join("test/fixtures/testing.js").display());
    let mut d = Daemon::new("process-ran-by");
    d.write("wf.ox", "require pid from testing;\nprint pid();\n");
    let out = d.run(&["run", "--record", "--plugin", &spec, "wf.ox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = text(&out.stdout).trim().to_owned();
    assert!(pid.parse::<u32>().is_ok(), "the plugin printed its pid: {pid}");
    d.start_foreground(&[]);
    let show = d.run(&["workflow", "show", "1"]);
    let shown = text(&show.stdout);
    let line = shown.lines().find(|l| l.contains("call pid")).unwrap_or_else(|| panic!("no call in {shown}{}", text(&show.stderr)));
    assert!(line.contains(&format!("pid {pid}")), "the call's record names the plugin's process {pid}: {shown}");
    assert!(line.contains("[testing 1.2.3 (process)]"), "a process plugin has no file hash to show: {shown}");
}
