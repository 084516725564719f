//! Per-function cache identities (docs/durable.md, "Cache"): with
//! `--cache`, a call's identity holds its own function's fingerprint when
//! its plugin gives one (Python, Lua), so changing one function of a
//! script re-runs only the calls of that function and of the functions
//! that read it; a C plugin falls back to its files' hashes. Both through
//! `oxiida run --cache` and through the daemon's `submit --cache`.

use std::path::Path;

use crate::common::{self, text};
use crate::support::{example_plugin, Daemon};

fn plugin(package: &str, library: &str) -> String {
    common::workspace_plugin(package, library).display().to_string()
}

/// Each function appends its name to the log (passed as `path`), so the
/// log says which calls ran. `f` reads the helper `h`, `g` the constant `K`.
const PYTHON: &str = r#"K = 2

def h(x):
    return x + 100

def f(x, path):
    with open(path, "a") as log:
        log.write("f\n")
    return h(x)

def g(x, path):
    with open(path, "a") as log:
        log.write("g\n")
    return x * K
"#;

/// The same in Lua: `f` reads the global function `h`, `g` the local `K`
/// (an upvalue).
const LUA: &str = r#"local K = 2

function h(x)
  return x + 100
end

local function log(path, name)
  local file = assert(io.open(path, "a"))
  file:write(name .. "\n")
  file:close()
end

function f(x, path)
  log(path, "f")
  return h(x)
end

function g(x, path)
  log(path, "g")
  return x * K
end
"#;

fn log(path: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect();
    names.sort();
    let joined = names.join(" ");
    let _ = std::fs::remove_file(path);
    joined
}

/// Runs the workflow with `--cache` after each edit of the script and
/// checks which functions ran and what the workflow printed.
fn edits_rerun_only_what_changed(name: &str, plugin: &str, script: &str, source: &str, edits: &[(&str, &str, &str, &str)], submit: bool) {
    let d = if submit { Daemon::foreground(name, &[]) } else { Daemon::new(name) };
    let file = if source == PYTHON { "tools.py" } else { "tools.lua" };
    let calls = d.dir.join("calls.txt");
    d.write("wf.ox", &format!("require f;\nrequire g;\nprint [f(1, \"{0}\"), g(1, \"{0}\")];\n", calls.display()));
    let spec = format!("{plugin}={file}");
    let run = || {
        let args: &[&str] = if submit {
            &["submit", "--cache", "--wait", "--plugin", &spec, "wf.ox"]
        } else {
            &["run", "--cache", "--plugin", &spec, "wf.ox"]
        };
        let out = d.run(args);
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let mut text_now = source.to_owned();
    d.write(file, &text_now);
    assert!(run().contains("[101, 2]"), "{script}: the first run");
    assert_eq!(log(&calls), "f g", "{script}: the first run runs both");
    assert!(run().contains("[101, 2]"), "{script}: the cached run");
    assert_eq!(log(&calls), "", "{script}: an unchanged script runs nothing again");
    for (what, from, to, expected) in edits {
        assert!(text_now.contains(from), "{script}: {what}");
        text_now = text_now.replace(from, to);
        d.write(file, &text_now);
        let printed = run();
        assert_eq!(log(&calls), *expected, "{script}: after {what}, printed {printed}");
    }
}

const PYTHON_EDITS: &[(&str, &str, &str, &str)] = &[
    ("changing g's body", "return x * K", "return x * K + 1", "g"),
    ("moving the functions down two lines", "K = 2\n", "K = 2\n\n\n", ""),
    ("changing the helper f calls", "x + 100", "x + 200", "f"),
    ("changing the constant g reads", "K = 2", "K = 3", "g"),
    ("adding a default to f", "def f(x, path)", "def f(x, path, unused=1)", "f"),
];

const LUA_EDITS: &[(&str, &str, &str, &str)] = &[
    ("changing g's body", "return x * K", "return x * K + 1", "g"),
    ("moving the functions down two lines", "local K = 2\n", "local K = 2\n\n\n", ""),
    ("changing the global helper f calls", "x + 100", "x + 200", "f"),
    ("changing the upvalue g reads", "local K = 2", "local K = 3", "g"),
];

#[test]
fn a_cached_run_reruns_only_the_changed_python_function() {
    let python = plugin("oxiida-python", "liboxiida_python.so");
    edits_rerun_only_what_changed("fp-python-run", &python, "python, run", PYTHON, PYTHON_EDITS, false);
}

#[test]
fn a_cached_submission_reruns_only_the_changed_python_function() {
    let python = plugin("oxiida-python", "liboxiida_python.so");
    edits_rerun_only_what_changed("fp-python-submit", &python, "python, submit", PYTHON, PYTHON_EDITS, true);
}

#[test]
fn a_cached_run_reruns_only_the_changed_lua_function() {
    let lua = plugin("oxiida-lua", "liboxiida_lua.so");
    edits_rerun_only_what_changed("fp-lua-run", &lua, "lua, run", LUA, LUA_EDITS, false);
}

#[test]
fn a_cached_submission_reruns_only_the_changed_lua_function() {
    let lua = plugin("oxiida-lua", "liboxiida_lua.so");
    edits_rerun_only_what_changed("fp-lua-submit", &lua, "lua, submit", LUA, LUA_EDITS, true);
}

/// A C plugin gives no fingerprints: its calls are identified by its
/// library file and config, so a changed config or library runs them again.
#[test]
fn a_c_plugins_calls_are_identified_by_its_files() {
    let d = Daemon::foreground("fp-c", &[]);
    let lib = d.dir.join("libexample.so");
    std::fs::copy(example_plugin(), &lib).unwrap();
    d.write("wf.ox", "require greet;\nprint greet(\"Ada\");\n");
    let mut id = 0;
    let mut submit = |config: &str| {
        let out = d.run(&["submit", "--cache", "--wait", "--plugin", &format!("{}={config}", lib.display()), "wf.ox"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        id += 1;
        text(&d.run(&["workflow", "show", &id.to_string()]).stdout)
    };
    let ran = "1 succeeded, 0 failed, 0 replayed, 0 cached";
    let cached = "0 succeeded, 0 failed, 0 replayed, 1 cached";
    assert!(submit("Hello").contains(ran));
    assert!(submit("Hello").contains(cached), "the same files: cached");
    assert!(submit("Howdy").contains(ran), "another config: runs again");
    // The same code with one more byte at the end of the file: another hash.
    let mut bytes = std::fs::read(&lib).unwrap();
    bytes.push(0);
    std::fs::write(&lib, bytes).unwrap();
    assert!(submit("Howdy").contains(ran), "another library file: runs again");
    assert!(submit("Howdy").contains(cached));
}
