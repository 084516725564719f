//! Process plugins through `oxiida run` (docs/plugins.md, "Process
//! plugins"): the Node.js kit (`plugins/node`, its npm dependencies
//! installed by `scripts/test.sh`) and the Python one
//! (`tests/plugins/python_process.py`, standard library plus `msgpack`), both
//! started by the tests themselves as real processes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{root, text};

fn node_kit() -> PathBuf {
    let kit = root().join("plugins/node");
    assert!(
        kit.join("node_modules/@msgpack/msgpack").is_dir(),
        "the Node kit's dependencies are missing: run `npm ci` in plugins/node (scripts/test.sh does)"
    );
    kit
}

fn node_example() -> String {
    format!("exec:node={}", node_kit().join("examples/tools.js").display())
}

fn node_testing() -> String {
    format!("exec:node={}", node_kit().join("test/fixtures/testing.js").display())
}

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-process-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn oxiida(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_oxiida"));
    command.current_dir(dir).stdin(Stdio::null()).env("NO_COLOR", "1");
    command
}

/// `oxiida run --plugin SPEC wf.ox` in a folder of its own.
fn run(name: &str, plugin: &str, workflow: &str) -> Output {
    let dir = workdir(name);
    std::fs::write(dir.join("wf.ox"), workflow).unwrap();
    oxiida(&dir).args(["run", "--plugin", plugin, "wf.ox"]).output().expect("oxiida runs")
}

fn alive(pid: i32) -> bool {
    // A zombie's /proc entry stays until reaped, but it is "Z": count it alive.
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn the_node_example_runs_through_oxiida_run() {
    let out = run(
        "example",
        &node_example(),
        r#"
require fib, stats, fetch from tools;
print fib(30);
print stats([1, 2, 3.5]);
print fetch("data:text/plain,fetched");
"#,
    );
    assert_eq!(text(&out.stdout), "832040\n{\"n\": 3, \"sum\": 6.5, \"mean\": 2.1666666666666665}\nfetched\n", "{}", text(&out.stderr));
    assert!(out.status.success());
}

#[test]
fn values_cross_both_ways_and_keywords_come_last() {
    let out = run(
        "values",
        &node_testing(),
        r#"
require echo, keywords, add;
v = [nil, true, false, -7, 9007199254740991, 2.5, "héllo", [], {}, {"k": [1, {"z": "deep"}]}];
print echo(v) == v;
print echo(v);
print keywords("x", steps = 3, name = "s");
print add("a", "b") + str(add(2, 0.5));
"#,
    );
    assert_eq!(
        text(&out.stdout),
        "true\n[nil, true, false, -7, 9007199254740991, 2.5, \"héllo\", [], {}, {\"k\": [1, {\"z\": \"deep\"}]}]\n\
         {\"a\": \"x\", \"options\": {\"steps\": 3, \"name\": \"s\"}}\nab2.5\n",
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn handles_to_objects_kept_in_the_plugin_round_trip_and_are_released() {
    let out = run(
        "real-handles",
        &node_testing(),
        r#"
require make_box, open_box, kept_count, echo;
b = make_box(41);
print b;
print open_box(b);
c = echo([b, b]);
print open_box(c[1]);
print kept_count();
b = nil;
c = nil;
print kept_count();
"#,
    );
    assert_eq!(text(&out.stdout), "<testing Box>\n41\n41\n1\n0\n", "{}", text(&out.stderr));
}

#[test]
fn object_ids_kept_by_the_plugin_round_trip() {
    let out = run("handles", &node_testing(), "require make_counter, bump;\nc = make_counter(10);\nbump(c);\nprint bump(c);\n");
    assert_eq!(text(&out.stdout), "12\n", "{}", text(&out.stderr));
}

#[test]
fn thrown_errors_carry_their_stack_and_the_plugins_stderr_is_prefixed() {
    let out = run("errors", &node_testing(), "require log, fail;\nlog(\"hi\");\nfail(\"bad thing\");\n");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("[testing] hi\n") && err.contains("[testing] to stderr: hi\n"), "{err}");
    assert!(err.contains("TypeError: bad thing"), "{err}");
    assert!(err.contains("at Object.fail (") && err.contains("testing.js:"), "the stack names the function and file: {err}");
    assert!(text(&out.stdout).is_empty(), "console.log goes to stderr, not into the protocol");
    let out = run("strings", &node_testing(), "require throw_string;\nthrow_string();\n");
    assert!(text(&out.stderr).contains("thrown value: just a string"), "{}", text(&out.stderr));
}

#[test]
fn calls_in_para_overlap_in_one_process() {
    // Each call returns only when all three are waiting in the plugin at
    // once: calls taken one at a time would time out.
    let out = run(
        "overlap",
        &node_testing(),
        r#"
require rendezvous, pid;
para {
    a = rendezvous("r", 3, 5000);
    b = rendezvous("r", 3, 5000);
    c = rendezvous("r", 3, 5000);
}
print a + b + c;
para for i in range(0, 4) { p = pid(); print p == pid(); }
"#,
    );
    assert_eq!(text(&out.stdout), "9\ntrue\ntrue\ntrue\ntrue\n", "{}", text(&out.stderr));
}

#[test]
fn a_crash_mid_call_fails_the_call_with_the_exit_status_naming_the_plugin() {
    let out = run("crash", &node_testing(), "require exit_now;\nprint \"before\";\nexit_now(3);\n");
    let err = text(&out.stderr);
    assert_eq!(text(&out.stdout), "before\n");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("process plugin `testing` exited with status 3 during the call"), "{err}");
    assert!(err.contains("worker crashed"), "{err}");
    let out = run("killed", &node_testing(), "require crash_later;\ncrash_later(50);\n");
    let err = text(&out.stderr);
    assert!(err.contains("process plugin `testing` was killed by signal 9 (SIGKILL) during the call"), "{err}");
}

#[test]
fn a_plugin_of_a_newer_protocol_major_version_is_refused_with_both_versions() {
    let dir = workdir("version");
    std::fs::write(dir.join("wf.ox"), "print 1;\n").unwrap();
    let out = oxiida(&dir).args(["run", "--plugin", &node_testing(), "wf.ox"]).env("TESTING_PROTOCOL", "[2, 1]").output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("speaks protocol version 2.1, newer than this oxiida's 1.0"), "{err}");
    assert!(text(&out.stdout).is_empty(), "nothing ran");
}

/// Runs `body` (after `print pid();`) under `oxiida run`, sends SIGINT once
/// `wait` has passed, and returns the plugin's pid once oxiida has exited,
/// asserting bounded cancellation (3 s) and exit status 130.
fn interrupt(name: &str, body: &str) -> i32 {
    let dir = workdir(name);
    std::fs::write(dir.join("wf.ox"), format!("require wait_for_cancel, spin, pid;\nprint pid();\n{body}\n")).unwrap();
    let mut child =
        oxiida(&dir).args(["run", "--plugin", &node_testing(), "wf.ox"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
    let plugin: i32 = line.trim().parse().unwrap_or_else(|_| panic!("a pid, not {line:?}"));
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling a child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "oxiida did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(started.elapsed() < Duration::from_secs(3), "bounded cancellation: {:?}", started.elapsed());
    assert_eq!(status.code(), Some(130));
    plugin
}

#[test]
fn ctrl_c_sends_cancel_for_each_running_call_then_bye() {
    let marker = workdir("cancel-marker").join("heard");
    let plugin = interrupt("cancel", &format!("wait_for_cancel({:?});", marker.display().to_string()));
    assert_eq!(std::fs::read_to_string(&marker).ok().as_deref(), Some("cancelled"), "the plugin got `cancel` for the call");
    assert!(!alive(plugin), "the plugin exited on bye");
}

#[test]
fn a_plugin_deaf_to_cancel_and_bye_is_terminated() {
    // `spin` blocks Node's event loop: no message is read any more.
    let plugin = interrupt("spin", "spin();");
    assert!(!alive(plugin), "the plugin was sent SIGTERM after the grace period");
}

#[test]
fn a_failing_sibling_cancels_a_running_call() {
    let dir = workdir("sibling");
    let marker = dir.join("heard");
    std::fs::write(
        dir.join("wf.ox"),
        format!("require wait_for_cancel, fail;\npara {{ a = wait_for_cancel({:?}); b = fail(\"no\"); }}\n", marker.display().to_string()),
    )
    .unwrap();
    let out = oxiida(&dir).args(["run", "--plugin", &node_testing(), "wf.ox"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("TypeError: no"));
    assert_eq!(std::fs::read_to_string(&marker).ok().as_deref(), Some("cancelled"));
}

#[test]
fn bad_specs_and_names_are_clear_errors() {
    let out = run("nosuch", "exec:no-such-program-here", "print 1;\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no such program on PATH"), "{}", text(&out.stderr));
    let out = run("notaplugin", "exec:true", "print 1;\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("exited with status 0 before saying hello"), "{}", text(&out.stderr));
    let out = run("missing", &node_example(), "require nothing from tools;\n");
    assert_eq!(out.status.code(), Some(65));
    assert!(text(&out.stderr).contains("does not provide it (it provides: fib, fetch, stats)"), "{}", text(&out.stderr));
    // The Python test plugin says `isolated: false` in its hello.
    let out = run("isolated", &python_plugin(), "require pid;\nprint =pid=();\n");
    assert!(text(&out.stderr).contains("cannot run calls in a worker process"), "{}", text(&out.stderr));
}

#[test]
fn isolated_calls_run_in_a_worker_thread_of_the_node_plugin() {
    let out =
        run("node-isolated", &node_testing(), "require where, echo;\nprint where();\nprint =where=();\nprint =echo=([1, {\"k\": 2.5}]);\n");
    assert_eq!(text(&out.stdout), "main\nworker\n[1, {\"k\": 2.5}]\n", "{}", text(&out.stderr));
    assert!(out.status.success());
}

#[test]
fn a_crash_in_an_isolated_node_call_fails_that_call_not_the_plugin() {
    // The crash fails the workflow, whose error names the worker, not the
    // plugin's process: that lives on and says bye (exit status 0 is not
    // shown; a dead plugin would be "exited with status 3").
    let out = run("node-isolated-crash", &node_testing(), "require exit_now;\nx = =exit_now=(3);\n");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the isolated call's worker exited with code 3"), "{err}");
    assert!(!err.contains("process plugin `testing` exited"), "{err}");
    // A runaway isolated call is ended by the failing sibling's cancel
    // (plugins/node/test/kit.test.js shows the worker is terminated).
    let out = run("node-isolated-spin", &node_testing(), "require spin, fail;\npara { a = =spin=(); b = fail(\"no\"); }\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("TypeError: no"), "{}", text(&out.stderr));
}

/// A Python with `msgpack`: `OXIIDA_TEST_PYTHON`, else the test venv
/// `.venv` that scripts/test.sh makes (and installs msgpack into).
fn python() -> PathBuf {
    let python = std::env::var_os("OXIIDA_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"));
    let has = Command::new(&python).args(["-c", "import msgpack"]).output().is_ok_and(|o| o.status.success());
    assert!(has, "{} has no msgpack: run scripts/test.sh, or set OXIIDA_TEST_PYTHON to a Python with msgpack", python.display());
    python
}

fn python_plugin() -> String {
    format!("exec:{}={}", python().display(), root().join("tests/plugins/python_process.py").display())
}

#[test]
fn a_python_process_plugin_speaks_the_same_protocol() {
    let out = run(
        "python",
        &python_plugin(),
        r#"
require rendezvous, describe, shout from pytools;
para { a = rendezvous(1); b = rendezvous(2); c = rendezvous(3); }
print a + b + c;
print describe(2.5, unit = "s");
print shout("hey");
"#,
    );
    assert_eq!(text(&out.stdout), "12\n{\"type\": \"float\", \"value\": 2.5, \"unit\": \"s\"}\nHEY\n", "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("[pytools] shouting hey"), "{}", text(&out.stderr));
}

#[test]
fn a_python_process_plugins_errors_and_crashes_are_reported() {
    let out = run("python-error", &python_plugin(), "require divide;\nprint divide(1, 0);\n");
    let err = text(&out.stderr);
    assert!(err.contains("ZeroDivisionError: division by zero") && err.contains("in divide"), "{err}");
    let out = run("python-crash", &python_plugin(), "require exit_now;\nexit_now(7);\n");
    assert!(text(&out.stderr).contains("process plugin `pytools` exited with status 7 during the call"), "{}", text(&out.stderr));
}

#[test]
fn replies_reach_their_calls_whoever_reads_them() {
    // By default a call alone reads its own reply and overlapping calls
    // leave it to the reader thread; OXIIDA_PROCESS_LEAD_US=0 leaves every
    // reply to the reader thread. Both ways: sequential calls, calls that
    // overlap, replies of 2 MiB (read in many pieces, two at once), and a
    // crash mid-call, seen by the reader thread (lead 0 and
    // 1 ms) and by the leading call itself (5 s).
    let workflow = r#"
require echo, rendezvous, reject_later, pid;
i = 0;
total = 0;
while (i < 200) { total = total + echo(i); i = i + 1; }
print total;
para { a = rendezvous("r", 3, 5000); b = rendezvous("r", 3, 5000); c = rendezvous("r", 3, 5000); }
print a + b + c;
print echo("after");
s = "x";
i = 0;
while (i < 21) { s = s + s; i = i + 1; }
para { e = echo([s, 1]); f = echo(s + "y"); }
print len(e[0]) + len(f);
"#;
    for lead in ["0", "1000", "5000000"] {
        let dir = workdir(&format!("lead-{lead}"));
        std::fs::write(dir.join("wf.ox"), workflow).unwrap();
        // A lead of 5 s would hold the other `para` branches back for 5 s.
        if lead != "5000000" {
            let out =
                oxiida(&dir).args(["run", "--plugin", &node_testing(), "wf.ox"]).env("OXIIDA_PROCESS_LEAD_US", lead).output().unwrap();
            assert_eq!(text(&out.stdout), "19900\n9\nafter\n4194305\n", "lead {lead}: {}", text(&out.stderr));
        }
        std::fs::write(dir.join("crash.ox"), "require crash_later;\ncrash_later(20);\n").unwrap();
        let out = oxiida(&dir).args(["run", "--plugin", &node_testing(), "crash.ox"]).env("OXIIDA_PROCESS_LEAD_US", lead).output().unwrap();
        assert!(
            text(&out.stderr).contains("process plugin `testing` was killed by signal 9 (SIGKILL) during the call"),
            "lead {lead}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_session_ends_when_its_plugin_exits_even_if_a_child_holds_its_output() {
    let dir = workdir("leaky");
    std::fs::write(dir.join("wf.ox"), "require child from leaky;\nprint child();\n").unwrap();
    let plugin = format!("exec:{}={}", python().display(), root().join("tests/plugins/leaky_process.py").display());
    let started = Instant::now();
    let out = oxiida(&dir).args(["run", "--plugin", &plugin, "wf.ox"]).output().unwrap();
    let took = started.elapsed();
    let child: i32 = text(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("a pid: {}", text(&out.stderr)));
    // SAFETY: signalling the sleep the plugin left behind (its pid, just printed).
    unsafe { libc::kill(child, libc::SIGKILL) };
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The plugin exits on bye at once; the session sees that within 100 ms
    // although its output stays open in the sleep (30 s).
    assert!(took < Duration::from_secs(10), "oxiida took {took:?}: it waited for the plugin's output to close");
}

/// Makes this test process the reaper of its orphaned descendants, so a
/// plugin whose host died becomes our child: `waitpid` then says how it
/// ended, whatever init does in this container.
fn adopt_orphans() {
    // SAFETY: prctl with plain integer arguments, changing only a flag of
    // this process.
    let set = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(set, 0, "PR_SET_CHILD_SUBREAPER: {}", std::io::Error::last_os_error());
}

#[test]
fn a_plugin_deaf_to_eof_and_sigterm_dies_with_a_sigkilled_host() {
    adopt_orphans();
    let dir = workdir("deaf");
    std::fs::write(dir.join("wf.ox"), "require pid, sleep from deaf;\nprint pid();\nsleep(60);\n").unwrap();
    let plugin = format!("exec:{}={}", python().display(), root().join("tests/plugins/deaf_process.py").display());
    let mut host =
        oxiida(&dir).args(["run", "--plugin", &plugin, "wf.ox"]).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(host.stdout.as_mut().unwrap()), &mut line).unwrap();
    let pid: i32 = line.trim().parse().unwrap_or_else(|_| panic!("a pid, not {line:?}"));
    assert!(alive(pid));
    host.kill().unwrap(); // SIGKILL: no Drop, no bye, no SIGTERM
    host.wait().unwrap();
    // The plugin, orphaned, is now this process's child: reap it.
    let started = Instant::now();
    let status = loop {
        let mut status = 0;
        // SAFETY: waitpid on a pid that is (now) our child, into a local int.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if got == pid {
            break status;
        }
        assert!(got == 0, "waitpid({pid}): {} (not our child: the plugin was not orphaned to us)", std::io::Error::last_os_error());
        assert!(started.elapsed() < Duration::from_secs(2), "the plugin {pid} outlived its SIGKILLed host by 2 s");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL, "killed by SIGKILL, not {status:#x}");
    assert!(!alive(pid));
}

#[test]
fn plugin_add_list_remove_keep_a_registry_that_plugin_names_find() {
    let dir = workdir("registry");
    let config = dir.join("config");
    let cmd = |args: &[&str]| {
        let out = oxiida(&dir).args(args).env("XDG_CONFIG_HOME", &config).env_remove("OXIIDA_PLUGIN_PATH").output().unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, _, err) = cmd(&["plugin", "list"]);
    assert_eq!(code, Some(0));
    assert!(err.contains("no plugins are registered"), "{err}");
    let (code, out, err) = cmd(&["plugin", "add", &node_example()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("registered plugin `tools` (process, "), "{out}");
    let (code, _, err) = cmd(&["plugin", "add", &node_testing(), "--name", "t2"]);
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = cmd(&["plugin", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "NAME\tKIND\tVERSION\tFUNCTIONS\tPATH");
    assert!(lines[1].starts_with("t2\tprocess\t1.2.3\techo, make_box, ") && lines[1].contains(", add, "), "{out}");
    assert!(lines[2].starts_with("tools\tprocess\t0.1.0\tfib, fetch, stats\t"), "{out}");
    assert!(config.join("oxiida/plugins.toml").is_file());

    std::fs::write(dir.join("wf.ox"), "require fib from tools;\nrequire add from t2;\nprint add(fib(10), 1);\n").unwrap();
    let out = oxiida(&dir).args(["run", "--plugin", "tools", "--plugin", "t2", "wf.ox"]).env("XDG_CONFIG_HOME", &config).output().unwrap();
    assert_eq!(text(&out.stdout), "56\n", "{}", text(&out.stderr));
    let (_, out, _) = cmd(&["plugins"]);
    assert!(out.contains("tools\tregistered process\t"), "{out}");

    let (code, out, _) = cmd(&["plugin", "remove", "tools"]);
    assert_eq!((code, out.as_str()), (Some(0), "removed plugin `tools`\n"));
    let (code, _, err) = cmd(&["plugin", "remove", "tools"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no plugin named `tools` is registered"), "{err}");
    assert!(!config.join("oxiida/plugins/tools.oxiida-plugin.toml").exists(), "its manifest went too");
    let out = oxiida(&dir).args(["run", "--plugin", "tools", "wf.ox"]).env("XDG_CONFIG_HOME", &config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no plugin named `tools` was found"), "{}", text(&out.stderr));
    let (code, _, err) = cmd(&["plugin", "add", "exec:no-such-program-here"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no such program on PATH"), "{err}");
}

#[test]
fn a_manifest_on_the_search_path_makes_a_plugin_name() {
    let dir = workdir("manifest");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(node_kit().join("examples/tools.js"), plugins.join("tools.js")).unwrap();
    std::fs::write(plugins.join("package.json"), "{}").unwrap();
    // The copy requires `..`: point it at the kit instead.
    let script = std::fs::read_to_string(plugins.join("tools.js"))
        .unwrap()
        .replace("require('..')", &format!("require({:?})", node_kit().display().to_string()));
    std::fs::write(plugins.join("tools.js"), script).unwrap();
    std::fs::write(
        plugins.join("calc.oxiida-plugin.toml"),
        "command = \"node\"\nargs = [\"./tools.js\"]\nlanguage = \"javascript\"\ndescription = \"fib\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("wf.ox"), "require fib from calc;\nprint fib(12);\n").unwrap();
    let out = oxiida(&dir).args(["run", "--plugin", "calc", "wf.ox"]).env("OXIIDA_PLUGIN_PATH", &plugins).output().unwrap();
    assert_eq!(text(&out.stdout), "144\n", "the manifest's name, not the hello's: {}", text(&out.stderr));
    std::fs::write(plugins.join("bad.oxiida-plugin.toml"), "args = []\nflavour = 1\n").unwrap();
    let out = oxiida(&dir).args(["run", "--plugin", "bad", "wf.ox"]).env("OXIIDA_PLUGIN_PATH", &plugins).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown key `flavour`"), "{}", text(&out.stderr));
}
