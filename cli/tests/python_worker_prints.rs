//! What `=f=` functions print through the CLI's Python plugin: written to
//! the plugin's `sys.stdout` (the process's standard output, as a plain
//! call's prints), in order with the workflow's own prints, not to stderr.

mod common;

use common::text;

const SCRIPT: &str = r#"import sys

def talk(x):
    print(f"call {x} starts")
    print(f"call {x} ends", end="")
    return x * 10

def complain(x):
    print(f"complaint {x}", file=sys.stderr)
    return x
"#;

#[test]
fn process_calls_print_to_stdout_in_order_with_the_workflow() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-worker-prints-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("script.py"), SCRIPT).unwrap();
    let plugin = common::workspace_plugin("oxiida-python", "liboxiida_python.so");
    let config = format!("={}", dir.join("script.py").display());
    let workflow = "require talk, complain;\nprint \"first\";\na = =talk=(1);\nprint \"second\";\nb = =complain=(2);\nprint a + b;\n";
    let out = common::run_with_plugin(&plugin, &config, &dir, workflow);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "first\ncall 1 starts\ncall 1 endssecond\n12\n", "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("complaint 2\n") && !err.contains("call 1"), "{err}");
}
