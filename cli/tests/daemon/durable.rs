//! Task records and resume (docs/durable.md): a workflow of 100 tasks, each
//! appending a line to a file and returning a value, is SIGKILLed with its
//! daemon about halfway, resumed by a new daemon, and must end with every
//! line written once (plus at most the tasks running at the kill) and the
//! same result as an uninterrupted run. For shell tasks, Python plain calls
//! and Python `=f=` calls; and a changed source is refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{self, text};
use crate::support::Daemon;

/// `--max-tasks` of the workflows killed: the most tasks that can be
/// running at the kill (the loop is sequential, so it is 1 in fact, plus a
/// record still on its way to the database).
const MAX_TASKS: usize = 4;

fn python_plugin() -> &'static std::path::PathBuf {
    static LIB: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    LIB.get_or_init(|| common::workspace_plugin("oxiida-python", "liboxiida_python.so"))
}

const TOOLS: &str = r#"import time

def step(i, path):
    with open(path, "a") as f:
        f.write(f"{i}\n")
    time.sleep(0.03)
    return i * i
"#;

/// The workflow: `task` is the expression of task `i`, returning an Int.
fn workflow(task: &str, require: &str) -> String {
    format!(
        "{require}total = 0;\nsquares = [];\nfor i in range(100) {{\n    r = {task};\n    total = total + r;\n    squares = squares + [r];\n}}\nprint total;\nprint squares;\n"
    )
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// The expected output: what an uninterrupted run prints.
fn reference(dir: &Path, source: &str, plugin: &[String]) -> String {
    let reference = dir.join("reference");
    std::fs::create_dir_all(&reference).unwrap();
    std::fs::write(reference.join("wf.ox"), source.replace(&dir.display().to_string(), &reference.display().to_string())).unwrap();
    std::fs::write(reference.join("tools.py"), TOOLS).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oxiida")).arg("run").args(plugin).arg("wf.ox").current_dir(&reference).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines(&reference.join("lines.txt")).len(), 100);
    text(&out.stdout)
}

/// Submits, SIGKILLs the daemon after about 50 lines, restarts it, checks
/// the refusal of a changed source, resumes and checks the file and result.
fn crash_and_resume(name: &str, task: &str, require: &str, python: bool) {
    let mut d = Daemon::foreground(name, &[]);
    let file = d.dir.join("lines.txt");
    let source = workflow(&task.replace("LINES", &file.display().to_string()), require);
    d.write("wf.ox", &source);
    d.write("tools.py", TOOLS);
    let plugin: Vec<String> = if python { vec!["--plugin".into(), format!("{}=tools.py", python_plugin().display())] } else { vec![] };
    let expected = reference(&d.dir, &source, &plugin);

    let mut submit = vec!["submit".to_owned(), "--max-tasks".into(), MAX_TASKS.to_string()];
    submit.extend(plugin.iter().cloned());
    submit.push("wf.ox".into());
    let submitted = d.run(&submit.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    let id = text(&submitted.stdout).trim().to_owned();
    let until = Instant::now() + Duration::from_secs(60);
    while lines(&file).len() < 50 {
        assert!(Instant::now() < until, "the workflow never reached 50 tasks: {}", d.wait_done(&id));
        std::thread::sleep(Duration::from_millis(5));
    }
    d.kill_hard();
    // Whatever was running at the kill finishes or dies now.
    std::thread::sleep(Duration::from_millis(300));
    let at_kill = lines(&file).len();
    assert!((50..100).contains(&at_kill), "killed after {at_kill} tasks");

    d.start_foreground(&[]);
    let status = text(&d.run(&["daemon", "status"]).stdout);
    assert!(status.contains("resumable (interrupted) workflows: ") && status.contains(&id), "{status}");
    let shown = text(&d.run(&["workflow", "show", &id]).stdout);
    assert!(shown.contains("state: interrupted"), "{shown}");
    let recorded = shown.lines().filter(|l| l.contains(" succeeded ")).count();
    assert!(recorded + MAX_TASKS >= at_kill && recorded <= at_kill, "{recorded} records for {at_kill} lines:\n{shown}");

    // A changed source is refused, and says why.
    d.write("wf.ox", &source.replace("total = 0;", "total = 1;"));
    let refused = d.run(&["workflow", "resume", &id]);
    assert!(!refused.status.success());
    let why = text(&refused.stderr);
    assert!(why.contains("the source of workflow") && why.contains("changed since it ran"), "{why}");
    assert_eq!(lines(&file).len(), at_kill, "nothing ran");

    d.write("wf.ox", &source);
    let resumed = d.run(&["workflow", "resume", &id, "--wait"]);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(text(&resumed.stdout), expected, "the same result as an uninterrupted run");
    let all = lines(&file);
    assert!(all.len() >= 100 && all.len() <= 100 + MAX_TASKS, "{} lines after the resume ({at_kill} at the kill)", all.len());
    for i in 0..100 {
        assert!(all.contains(&i.to_string()), "task {i} never ran");
    }
    // The resumed workflow replayed what had succeeded, and ran the rest.
    let new = text(&resumed.stderr).split("resumed as workflow ").nth(1).unwrap().trim().to_owned();
    let shown = text(&d.run(&["workflow", "show", &new]).stdout);
    assert!(shown.contains("state: succeeded") && shown.contains("--- tasks: 100 ("), "{shown}");
    let replayed = shown.lines().filter(|l| l.contains(" replayed ")).count();
    assert_eq!(replayed, recorded, "{shown}");
    // Once resumed, no longer resumable.
    let again = d.run(&["workflow", "resume", &id]);
    assert!(text(&again.stderr).contains("already resumed"), "{}", text(&again.stderr));
}

#[test]
fn a_killed_daemons_shell_workflow_resumes_where_it_stopped() {
    crash_and_resume(
        "resume-shell",
        r#"int(shell {"sh", ["-c", "echo " + str(i) + " >> LINES; sleep 0.03; printf " + str(i * i)]}.stdout)"#,
        "",
        false,
    );
}

#[test]
fn a_killed_daemons_python_workflow_resumes_where_it_stopped() {
    crash_and_resume("resume-python", r#"step(i, "LINES")"#, "require step;\n", true);
}

#[test]
fn a_killed_daemons_process_mode_workflow_resumes_where_it_stopped() {
    crash_and_resume("resume-f", r#"=step=(i, "LINES")"#, "require step;\n", true);
}

const SIDE: &str = r#"
def side(x, path):
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return x * 2
"#;

/// `oxiida run --cache` twice: the second run has no side effects; a
/// changed function body runs again, and the shell tasks stay cached.
#[test]
fn a_cached_run_repeats_nothing_whose_identity_is_unchanged() {
    let d = Daemon::new("cache-run");
    let calls = d.dir.join("calls.txt");
    let shells = d.dir.join("shells.txt");
    d.write("tools.py", SIDE);
    d.write(
        "wf.ox",
        &format!(
            "require side;\nys = [];\nfor x in [1, 2, 3] {{\n    shell {{\"sh\", [\"-c\", \"echo \" + str(x) + \" >> {}\"]}};\n    ys = ys + [side(x, \"{}\")];\n}}\nprint ys;\n",
            shells.display(),
            calls.display()
        ),
    );
    let plugin = format!("{}=tools.py", python_plugin().display());
    let run = || {
        let out = d.run(&["run", "--cache", "--plugin", &plugin, "wf.ox"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(run(), "[2, 4, 6]\n");
    assert_eq!((lines(&calls).len(), lines(&shells).len()), (3, 3));
    assert_eq!(run(), "[2, 4, 6]\n", "the cached results");
    assert_eq!((lines(&calls).len(), lines(&shells).len()), (3, 3), "no side effect ran twice");
    // Without --cache, everything runs.
    let out = d.run(&["run", "--record", "--plugin", &plugin, "wf.ox"]);
    assert!(out.status.success() && text(&out.stderr).contains("recorded as workflow 3"), "{}", text(&out.stderr));
    assert_eq!((lines(&calls).len(), lines(&shells).len()), (6, 6));
    // A changed body: the calls run again, the shell tasks do not.
    d.write("tools.py", &SIDE.replace("x * 2", "x * 3"));
    assert_eq!(run(), "[3, 6, 9]\n");
    assert_eq!((lines(&calls).len(), lines(&shells).len()), (9, 6));

    // The records, through a daemon: the second run's tasks are all cached.
    let mut d = d;
    d.start_foreground(&[]);
    let shown = text(&d.run(&["workflow", "show", "2"]).stdout);
    assert!(shown.contains("--- tasks: 6 (0 succeeded, 0 failed, 0 replayed, 6 cached) ---"), "{shown}");
    assert!(shown.lines().filter(|l| l.contains("  yes  ")).count() == 6, "{shown}");
    // While the daemon holds the database, a run cannot be recorded, and says what to do.
    d.write("plain.ox", "print 1;\n");
    let refused = d.run(&["run", "--record", "plain.ox"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("oxiida submit --wait"), "{}", text(&refused.stderr));
}

/// `submit --cache` in the daemon: the second submission runs no task.
#[test]
fn a_cached_submission_runs_no_unchanged_shell_task() {
    let d = Daemon::foreground("cache-submit", &[]);
    let file = d.dir.join("side.txt");
    d.write("wf.ox", &format!("for i in range(4) {{ shell {{\"sh\", [\"-c\", \"echo \" + str(i) + \" >> {}\"]}}; }}\n", file.display()));
    for (round, expected) in [(1, "4 succeeded, 0 failed, 0 replayed, 0 cached"), (2, "0 succeeded, 0 failed, 0 replayed, 4 cached")] {
        let out = d.run(&["submit", "--cache", "--wait", "wf.ox"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(lines(&file).len(), 4, "round {round}");
        let shown = text(&d.run(&["workflow", "show", &round.to_string()]).stdout);
        assert!(shown.contains(expected), "{shown}");
    }
    // Without --cache, it runs again.
    assert!(d.run(&["submit", "--wait", "wf.ox"]).status.success());
    assert_eq!(lines(&file).len(), 8);
}

/// The progress line: under a pseudo-terminal (`script`), on stderr;
/// absent when stderr is a pipe, and with `--quiet`.
#[test]
fn the_progress_line_shows_on_a_terminal_only() {
    let d = Daemon::new("progress");
    d.write("wf.ox", "para for i in range(3) { shell {\"sleep\", [\"0.4\"]}; }\nprint \"done\";\n");
    let oxiida = env!("CARGO_BIN_EXE_oxiida");
    let under_pty = |args: &str| {
        let out = Command::new("script")
            .args(["-qec", &format!("{oxiida} run {args} wf.ox"), "/dev/null"])
            .current_dir(&d.dir)
            .env("OXIIDA_DATA_DIR", d.dir.join("data"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let shown = under_pty("");
    assert!(shown.contains("[oxiida] tasks: 0 done, 3 running, 0 failed"), "{shown:?}");
    assert!(shown.contains("done"), "{shown:?}");
    assert!(!under_pty("--quiet").contains("[oxiida]"));
    let piped = d.run(&["run", "wf.ox"]);
    assert!(piped.status.success());
    assert_eq!(text(&piped.stderr), "", "nothing when stderr is not a terminal");
}

/// `workflow watch` follows a running workflow's tasks until it ends.
#[test]
fn watch_follows_the_tasks_of_a_running_workflow() {
    let d = Daemon::foreground("watch", &[]);
    d.write("wf.ox", "for i in range(3) { shell {\"sleep\", [\"0.3\"]}; }\nshell {\"echo\", [\"last\"]};\n");
    let submitted = d.run(&["submit", "wf.ox"]);
    let id = text(&submitted.stdout).trim().to_owned();
    let watched = d.run(&["workflow", "watch", &id]);
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    let out = text(&watched.stdout);
    let rows: Vec<&str> = out.lines().filter(|l| l.contains(" succeeded ") && l.contains(" shell ")).collect();
    assert_eq!(rows.len(), 4, "{out}");
    assert!(rows[0].contains("/i0") && rows[0].contains("shell sleep 0.3") && rows[3].contains("shell echo last"), "{out}");
    assert!(out.ends_with(&format!("workflow {id}: succeeded (4 tasks)\n")), "{out}");
}

/// A task whose arguments are over what a record keeps is recorded without
/// them, and the workflow goes on (a record is one frame from the runner).
#[test]
fn a_task_with_huge_arguments_is_recorded_without_them() {
    let d = Daemon::foreground("huge-args", &[]);
    d.write("wf.ox", "s = \"x\";\ni = 0;\nwhile (i < 25) { s = s + s; i = i + 1; }\nn = shell {\"wc\", [\"-c\"], s};\nprint n.stdout;\n");
    let out = d.run(&["submit", "--wait", "wf.ox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "33554432");
    let shown = d.run(&["workflow", "show", "1"]);
    assert!(text(&shown.stdout).contains("--- tasks: 1 (1 succeeded"), "{}{}", text(&shown.stdout), text(&shown.stderr));
}

/// `daemon start --resume` resumes every interrupted workflow.
#[test]
fn daemon_start_resume_resumes_the_interrupted_workflows() {
    crate::support::reap_orphans();
    let mut d = Daemon::foreground("start-resume", &[]);
    let file = d.dir.join("ran.txt");
    d.write(
        "wf.ox",
        &format!(
            "for i in range(3) {{ shell {{\"sh\", [\"-c\", \"echo \" + str(i) + \" >> {}; sleep 0.4\"]}}; }}\nprint \"done\";\n",
            file.display()
        ),
    );
    let id = text(&d.run(&["submit", "wf.ox"]).stdout).trim().to_owned();
    let until = Instant::now() + Duration::from_secs(20);
    while !text(&d.run(&["workflow", "show", &id]).stdout).contains("--- tasks: 1 ") {
        assert!(Instant::now() < until, "no task ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    d.kill_hard();
    let started = d.run(&["daemon", "start", "--resume"]);
    assert!(started.status.success(), "{}", text(&started.stderr));
    assert!(text(&started.stdout).contains(&format!("workflow {id} resumed as workflow ")), "{}", text(&started.stdout));
    let new = (id.parse::<u64>().unwrap() + 1).to_string();
    let shown = d.wait_done(&new);
    assert!(shown.contains("state: succeeded") && shown.contains("done") && shown.contains(" replayed "), "{shown}");
    // The first task ran once; only what was running at the kill ran twice.
    let ran = lines(&file);
    assert_eq!(ran.iter().filter(|l| *l == "0").count(), 1, "{ran:?}");
    assert!(ran.len() <= 4, "{ran:?}");
    assert!(d.run(&["daemon", "stop"]).status.success());
}

/// The provenance graph of the diamond `a = f(1); para { b = g(a); c = h(a); }
/// d = k(b, c);` (Python functions, a recorded `oxiida run`) has exactly the
/// edges f→g, f→h, g→k, h→k between tasks, each through f's, g's or h's output.
#[test]
fn the_diamonds_graph_has_exactly_the_expected_edges() {
    let mut d = Daemon::new("graph");
    d.write(
        "tools.py",
        "def f(x):\n    return x + 1\n\ndef g(a):\n    return a * 2\n\ndef h(a):\n    return a * 3\n\ndef k(b, c):\n    return b + c\n",
    );
    d.write("diamond.ox", "require f, g, h, k;\na = f(1);\npara { b = g(a); c = h(a); }\nd = k(b, c);\nprint d;\n");
    let plugin = format!("{}=tools.py", python_plugin().display());
    let ran = d.run(&["run", "--record", "--plugin", &plugin, "diamond.ox"]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    assert_eq!(text(&ran.stdout), "10\n");
    d.start_foreground(&[]);
    let out = d.run(&["workflow", "graph", "1", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let graph: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = graph["nodes"].as_array().unwrap();
    let what = |id: &str| {
        let node = nodes.iter().find(|n| n["id"] == id).unwrap();
        match node["type"].as_str().unwrap() {
            "task" => node["what"].as_str().unwrap().to_owned(),
            _ => format!("out:{}", nodes.iter().find(|n| n["id"] == node["of"]).unwrap()["what"].as_str().unwrap()),
        }
    };
    let mut edges: Vec<(String, String)> =
        graph["edges"].as_array().unwrap().iter().map(|e| (what(e["from"].as_str().unwrap()), what(e["to"].as_str().unwrap()))).collect();
    edges.sort();
    let expected: Vec<(String, String)> =
        [("f", "out:f"), ("g", "out:g"), ("h", "out:h"), ("k", "out:k"), ("out:f", "g"), ("out:f", "h"), ("out:g", "k"), ("out:h", "k")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(edges, expected);
    let dot = text(&d.run(&["workflow", "graph", "1"]).stdout);
    assert!(dot.starts_with("digraph \"workflow 1\" {") && dot.matches(" -> ").count() == 8, "{dot}");
    // SVG through Graphviz when it is installed, else a message that says what to do.
    let svg = d.run(&["workflow", "graph", "1", "--format", "svg"]);
    if Command::new("dot").arg("-V").output().is_ok() {
        assert!(svg.status.success() && text(&svg.stdout).contains("<svg"), "{}", text(&svg.stderr));
    } else {
        assert!(!svg.status.success() && text(&svg.stderr).contains("install Graphviz"), "{}", text(&svg.stderr));
    }
}

/// A record says who ran each task: a shell task's own process, and for a
/// call the plugin that served it, with its version and its file's hash.
#[test]
fn records_name_the_shell_tasks_pid_and_the_plugin_that_served_a_call() {
    let d = Daemon::foreground("ran-by", &[]);
    let plugin = crate::support::example_plugin().display().to_string();
    d.write("wf.ox", "require add;\nr = shell {\"sh\", [\"-c\", \"echo $$\"]};\nprint r.stdout;\nprint add(40, 2);\n");
    let out = d.run(&["submit", "--wait", "--plugin", &plugin, "wf.ox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let shell_pid = stdout.lines().next().unwrap().trim().to_owned();
    let shown = text(&d.run(&["workflow", "show", "1"]).stdout);
    let row = |kind: &str| shown.lines().find(|l| l.contains(kind)).unwrap_or_else(|| panic!("no {kind} row: {shown}")).to_owned();
    assert!(row("shell sh").contains(&format!("pid {shell_pid} ")), "{shown}");
    let call = row("call add");
    assert!(!call.contains(&format!("pid {shell_pid} ")), "{shown}");
    let hash = {
        use sha2::Digest;
        let bytes = std::fs::read(crate::support::example_plugin()).unwrap();
        sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert!(call.contains(&format!("[example abi {}, sha256 {}]", oxiida_abi::OXIIDA_ABI_VERSION, &hash[..12])), "{shown}");
}

/// A `=f=` call's record names the Python plugin's worker process that ran
/// it (the plugin says so in its reply, ABI version 5); a plain call's
/// names the process that ran the workflow: `oxiida run --record` here,
/// the daemon's runner for a submission.
#[test]
fn a_f_call_s_record_names_the_worker_process_that_ran_it() {
    let mut d = Daemon::new("ran-by-f");
    let plugin = format!("{}=tools.py", python_plugin().display());
    d.write("tools.py", "import os\n\ndef pid():\n    return os.getpid()\n");
    d.write("wf.ox", "require pid;\nw = =pid=();\nh = pid();\npara { a = =pid=(); b = =pid=(); }\nprint [w, h, a, b];\n");
    let pids = |out: &std::process::Output| -> Vec<String> {
        assert!(out.status.success(), "{}", text(&out.stderr));
        let printed = text(&out.stdout);
        printed.trim().trim_matches(['[', ']']).split(", ").map(str::to_owned).collect()
    };
    let ran = pids(&d.run(&["run", "--record", "--plugin", &plugin, "wf.ox"]));
    d.start_foreground(&[]);
    let submitted = pids(&d.run(&["submit", "--wait", "--plugin", &plugin, "wf.ox"]));
    for (id, printed) in [("1", &ran), ("2", &submitted)] {
        let shown = text(&d.run(&["workflow", "show", id]).stdout);
        let by = |kind: &str| -> Vec<String> {
            let mut by: Vec<String> = shown
                .lines()
                .filter(|l| l.contains(&format!("  {kind} pid")))
                .map(|l| l.split("  pid ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned())
                .collect();
            by.sort();
            by
        };
        let mut f_pids = vec![printed[0].clone(), printed[2].clone(), printed[3].clone()];
        f_pids.sort();
        assert_eq!(by("call=f="), f_pids, "{shown}");
        assert_eq!(by("call"), [printed[1].clone()], "{shown}");
        assert!(!f_pids.contains(&printed[1]), "the workers are not the workflow's process: {shown}");
        // The graph's task nodes say the same.
        let graph: serde_json::Value = serde_json::from_slice(&d.run(&["workflow", "graph", id, "--format", "json"]).stdout).unwrap();
        let mut in_graph: Vec<String> = graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "call=f=")
            .map(|n| n["worker"].as_str().unwrap().trim_start_matches("pid ").to_owned())
            .collect();
        in_graph.sort();
        assert_eq!(in_graph, f_pids);
    }
}

/// Under the CLI's daemon, what a workflow's Python functions print (plain
/// or `=f=`, `print` or a raw write to descriptor 1) is the workflow's
/// output, in order with the workflow's own prints, not only the daemon's
/// log; what they write to stderr is in the output too (the daemon copies
/// the runner's stderr, so only roughly in order).
#[test]
fn what_a_workflow_s_functions_print_is_its_output_in_order() {
    let d = Daemon::foreground("prints", &[]);
    let plugin = format!("{}=tools.py", python_plugin().display());
    d.write(
        "tools.py",
        "import os, sys\nprint('loaded')\n\ndef say(x):\n    print('say', x)\n    print('err', x, file=sys.stderr)\n    \
         os.write(1, b'raw ' + str(x).encode() + b'\\n')\n    print('part', end='')\n    return x\n",
    );
    d.write("wf.ox", "require say;\nprint \"before\";\na = say(1);\nprint \"middle\";\nb = =say=(2);\nprint \"after\";\n");
    let out = d.run(&["submit", "--wait", "--plugin", &plugin, "wf.ox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    // Stdout in order with the workflow's prints; stderr (an `=f=` worker's
    // raw write to descriptor 1 is its stderr) only roughly.
    let (stdout, mut stderr): (Vec<&str>, Vec<&str>) = printed.lines().partition(|l| !l.starts_with("err ") && *l != "raw 2");
    assert_eq!(stdout, ["loaded", "before", "say 1", "raw 1", "partmiddle", "say 2", "partafter"], "{printed}");
    stderr.sort();
    assert_eq!(stderr, ["err 1", "err 2", "raw 2"], "{printed}");
    let shown = text(&d.run(&["workflow", "show", "1"]).stdout);
    assert!(shown.contains("say 1\n") && shown.contains("err 2\n"), "{shown}");
}
