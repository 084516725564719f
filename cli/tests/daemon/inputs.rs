//! Inputs through the daemon: `submit --input/--inputs` sends them in
//! `Submit::inputs`, and the runner binds them before the first statement.

use oxiida_protocol::{self as protocol, Reply, Request};

use crate::common::text;
use crate::support::{exchange, hello, replies, Daemon};

#[test]
fn submitted_inputs_are_bound_by_the_runner() {
    let mut d = Daemon::new("inputs");
    d.start_foreground(&[]);
    d.write("wf.ox", "print n * 2;\nprint el;\nprint [xs, m];\n");
    d.write("in.json", "{\"xs\": [1, 2.5, null], \"m\": {\"k\": true}}");
    let out = d.run(&["submit", "--wait", "--input", "n=21", "--input", "el=\"Si\"", "--inputs", "in.json", "wf.ox"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "42\nSi\n[[1, 2.5, nil], {\"k\": true}]\n");

    // Without the inputs the daemon finds the unknown names before running.
    let out = d.run(&["submit", "--wait", "wf.ox"]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("`n` is not defined"), "{}", text(&out.stderr));

    // A bad value never reaches the daemon: a usage error, and no workflow is recorded.
    let before = text(&d.run(&["workflow", "list"]).stdout);
    let out = d.run(&["submit", "--input", "n=five", "wf.ox"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`five` is a name, not a literal"), "{}", text(&out.stderr));
    assert_eq!(text(&d.run(&["workflow", "list"]).stdout), before);
}

#[test]
fn inputs_that_are_not_one_map_fail_the_workflow_before_it_runs() {
    let d = Daemon::foreground("bad-inputs", &[]);
    for (bytes, says) in [
        (oxiida_abi::Value::Int(5).to_msgpack(), "the submitted inputs are not a map of names to values"),
        (b"\xc1".to_vec(), "the submitted inputs are not valid MessagePack"),
    ] {
        let submit =
            protocol::Submit { name: "bad.ox".into(), source: "print \"ran\";".into(), inputs: Some(bytes.into()), ..Default::default() };
        let r = replies(&exchange(&d.socket(), &[hello(), protocol::encode(&Request::Submit(submit))].concat(), true));
        let Some(Reply::Submitted { id }) = r.get(1) else { panic!("not submitted: {r:?}") };
        let shown = d.wait_done(&id.to_string());
        assert!(shown.contains("state: failed (exit 2)") && shown.contains(says), "{shown}");
        assert!(!shown.contains("ran"), "{shown}");
    }
}

#[test]
fn the_daemon_reports_the_version_of_the_cli() {
    let mut d = Daemon::new("version");
    d.start_foreground(&[]);
    let status = text(&d.run(&["daemon", "status"]).stdout);
    let cli = text(&d.run(&["--version"]).stdout);
    let version = cli.trim().strip_prefix("oxiida ").expect("`oxiida --version` prints `oxiida X.Y.Z`");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert!(status.contains(&format!("version {version},")), "{status}");
}
