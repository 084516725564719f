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
