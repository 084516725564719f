//! Issue 11: one workflow cannot hurt another, and nothing queues forever.
//! Crashes and memory hogs fail alone, output is bounded, workflows beyond
//! `--max-running` wait their turn, idle connections are closed.

use crate::common::{self, text};
use crate::support::*;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use oxiida_protocol::Reply;

fn spawn_wait(d: &Daemon, args: &[&str]) -> Child {
    d.cmd(&[&["submit", "--wait"], args].concat()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// A foreground daemon whose open-file limit, soft and hard, is `n`.
fn foreground_with_nofile(name: &str, n: u64, args: &[&str]) -> Daemon {
    use std::os::unix::process::CommandExt;
    let mut d = Daemon::new(name);
    let log = std::fs::File::create(d.dir.join("foreground.err")).unwrap();
    let mut cmd = d.cmd(&["daemon", "start", "--foreground"]);
    cmd.args(args).stdout(Stdio::null()).stderr(log);
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's limits.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    d.child = Some(cmd.spawn().unwrap());
    let until = Instant::now() + Duration::from_secs(10);
    while !d.run(&["daemon", "status"]).status.success() {
        assert!(d.child.as_mut().unwrap().try_wait().unwrap().is_none(), "the daemon exited: {}", d.log());
        assert!(Instant::now() < until, "the daemon never answered");
        std::thread::sleep(Duration::from_millis(10));
    }
    d
}

trait Log {
    fn log(&self) -> String;
}

impl Log for Daemon {
    /// The daemon's log and what it wrote to stderr.
    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("data/daemon.log")).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.join("foreground.err")).unwrap_or_default();
        format!("{log}{err}")
    }
}

#[test]
fn crashes_and_a_memory_hog_fail_alone_beside_healthy_workflows() {
    let plugin = common::workspace_plugin("oxiida-test-plugin", "liboxiida_test_plugin.so");
    let plugin = plugin.to_str().unwrap();
    // A runner reserves about half a GiB of address space before its
    // workflow allocates (docs/daemon.md, Limits): 1G leaves room to run.
    let mut d = Daemon::foreground("limits-crash", &["--memory-limit", "1G"]);
    // The healthy ones are running (their shells have started) when the
    // others crash, and finish after.
    let mut healthy = Vec::new();
    for i in 0..3 {
        let started = d.dir.join(format!("started{i}"));
        d.write(
            &format!("healthy{i}.ox"),
            &format!(
                "print \"before\";\nr = shell {{\"sh\", [\"-c\", \"echo up > {} && sleep 2\"]}};\nprint \"after\";\n",
                started.display()
            ),
        );
        healthy.push((spawn_wait(&d, &[&format!("healthy{i}.ox")]), started));
    }
    for (_, started) in &healthy {
        common::wait_for_file(started);
    }
    d.write("segfault.ox", "require segfault;\nx = segfault();\n");
    d.write("abort.ox", "require abort;\nx = abort();\n");
    d.write("hog.ox", "s = \"x\";\nwhile (true) { s = s + s; }\n");
    let culprits = [
        ("segfault.ox", "runner killed by signal 11 (SIGSEGV)"),
        ("abort.ox", "runner killed by signal 6 (SIGABRT)"),
        ("hog.ox", "memory limit 1 GiB exceeded"),
    ];
    let running: Vec<Child> = culprits.iter().map(|(file, _)| spawn_wait(&d, &["--plugin", plugin, file])).collect();
    for ((file, cause), child) in culprits.iter().zip(running) {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{file}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(cause), "{file}: {}", text(&out.stderr));
    }
    for (child, _) in healthy {
        let out = child.wait_with_output().unwrap();
        assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "before\nafter\n".into()), "{}", text(&out.stderr));
    }
    // The records say the same: three succeeded, each culprit its cause.
    for id in 1..=3 {
        let shown = d.wait_done(&id.to_string());
        assert!(shown.contains("state: succeeded (exit 0)"), "{shown}");
    }
    let list = text(&d.run(&["workflow", "list"]).stdout);
    for (file, cause) in culprits {
        let id = list.lines().find(|l| l.ends_with(file)).and_then(|l| l.split_whitespace().next()).unwrap();
        let shown = d.wait_done(id);
        assert!(shown.contains("state: failed (exit 1)") && shown.contains(cause), "{shown}");
    }
    // The allocation's failure reached the log, prefixed by its workflow.
    assert!(d.log().contains("stderr: memory allocation of"), "{}", d.log());
    // The daemon lives on, and runs the next workflow.
    d.write("next.ox", "print \"still here\";\n");
    assert_eq!(text(&d.run(&["submit", "--wait", "next.ox"]).stdout), "still here\n");
    assert!(d.child.as_mut().unwrap().try_wait().unwrap().is_none(), "the daemon is alive");
}

#[test]
fn five_hundred_waiting_clients_under_a_low_open_file_limit_all_succeed() {
    const CLIENTS: usize = 500;
    let d = foreground_with_nofile("limits-many", 1024, &["--max-running", "4"]);
    d.write("one.ox", "print \"ok\";\n");
    let started = Instant::now();
    let clients: Vec<Child> = (0..CLIENTS)
        .map(|_| d.cmd(&["submit", "--wait", "one.ox"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    // While they run, some are seen waiting for a slot.
    let mut seen_queued = false;
    while !seen_queued && started.elapsed() < Duration::from_secs(60) {
        let status = text(&d.run(&["daemon", "status"]).stdout);
        let queued = status.lines().find_map(|l| l.strip_prefix("queued workflows: ")).and_then(|n| n.parse::<usize>().ok());
        seen_queued = queued.is_some_and(|n| n > 0);
        if text(&d.run(&["workflow", "list", "--limit", "1000"]).stdout).lines().filter(|l| l.contains("succeeded")).count() == CLIENTS {
            break;
        }
    }
    for client in clients {
        let out = client.wait_with_output().unwrap();
        assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "ok\n".into()), "{}", text(&out.stderr));
    }
    let list = text(&d.run(&["workflow", "list", "--limit", "1000"]).stdout);
    assert_eq!(list.lines().filter(|l| l.contains(" succeeded ")).count(), CLIENTS, "{list}");
    let log = d.log();
    assert!(seen_queued || log.contains(": queued, "), "no workflow was ever queued:\n{log}");
    assert!(log.contains("4 workflow(s) running at once"), "{log}");
    eprintln!("{CLIENTS} waiting clients served in {:?}", started.elapsed());
}

#[test]
fn output_over_the_limit_keeps_head_marker_and_tail_and_the_daemon_stays_small() {
    let d = Daemon::foreground("limits-output", &["--output-limit", "1M"]);
    // 256 prints of 1 MiB each: 256 MiB printed in all.
    d.write(
        "loud.ox",
        "s = \"0123456789abcdef\";\ni = 0;\nwhile (i < 16) { s = s + s; i = i + 1; }\n\
         j = 0;\nwhile (j < 256) { print str(j) + \" \" + s; j = j + 1; }\nprint \"the end\";\n",
    );
    let out = d.run(&["submit", "--wait", "loud.ox"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let client = text(&out.stdout);
    let check = |what: &str, all: &str| {
        assert!(all.starts_with("0 0123456789abcdef"), "{what}: the head is missing");
        let marker = all.lines().find(|l| l.starts_with("[oxiida: ")).unwrap_or_else(|| panic!("{what}: no marker"));
        assert!(marker.contains("bytes of output cut here") && marker.contains("--output-limit 1 MiB"), "{what}: {marker}");
        assert!(all.trim_end().ends_with("cdef\nthe end"), "{what}: the tail is missing");
        assert!(all.len() < (1 << 20) + 4096, "{what}: {} bytes kept", all.len());
    };
    check("the waiting client", &client);
    let shown = text(&d.run(&["workflow", "show", "1"]).stdout);
    let recorded = shown.split_once("--- output ---\n").unwrap().1;
    check("the record", recorded);
    let pid = d.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").parse().unwrap();
    assert!(peak_kib < 96 << 10, "the daemon's peak RSS was {peak_kib} KiB for 256 MiB printed");
    eprintln!("daemon peak RSS {peak_kib} KiB for 256 MiB printed");
}

#[test]
fn one_print_longer_than_the_limit_keeps_its_start_and_end_around_a_marker_line() {
    let d = Daemon::foreground("limits-one-print", &["--output-limit", "1M"]);
    // One print of 8 MiB (runners send it in pieces of 1 MiB), then a short one.
    d.write("long.ox", "s = \"a\";\ni = 0;\nwhile (i < 23) { s = s + s; i = i + 1; }\nprint \"<\" + s + \">\";\nprint \"after\";\n");
    let out = d.run(&["submit", "--wait", "long.ox"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&d.run(&["workflow", "show", "1"]).stdout);
    for (what, all) in
        [("the waiting client", text(&out.stdout)), ("the record", shown.split_once("--- output ---\n").unwrap().1.to_owned())]
    {
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 4, "{what}: head, marker, tail, after");
        assert!(lines[0].starts_with("<aaa") && !lines[0].contains('>'), "{what}: the head");
        assert!(lines[1].starts_with("[oxiida: ") && lines[1].contains("--output-limit 1 MiB"), "{what}: {}", lines[1]);
        assert!(lines[2].ends_with("aaa>") && !lines[2].contains('<'), "{what}: the tail");
        assert_eq!(lines[3], "after", "{what}");
        assert!(all.len() < (1 << 20) + 4096, "{what}: {} bytes kept", all.len());
    }
}

#[test]
fn an_idle_connection_is_closed_with_a_notice_but_a_waiting_one_is_not() {
    let d = Daemon::foreground("limits-idle", &["--idle-timeout", "1"]);
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    std::io::Write::write_all(&mut s, &hello()).unwrap();
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let all = replies(&bytes);
    assert!(matches!(all.first(), Some(Reply::Hello { .. })), "{all:?}");
    let Some(Reply::Notice { message }) = all.get(1) else { panic!("no notice: {all:?}") };
    assert!(message.contains("no request came for 1s") && message.contains("--idle-timeout"), "{message}");
    // Streaming a workflow is not idle, however long it prints nothing.
    d.write("slow.ox", "r = shell {\"sleep\", [\"3\"]};\nprint \"woke\";\n");
    let out = d.run(&["submit", "--wait", "slow.ox"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "woke\n".into()), "{}", text(&out.stderr));
}

#[test]
fn a_queued_workflow_is_listed_killed_unstarted_or_interrupted_by_stop() {
    let mut d = Daemon::foreground("limits-queue", &["--max-running", "1"]);
    let started = d.dir.join("started");
    d.write("long.ox", &format!("r = shell {{\"sh\", [\"-c\", \"echo up > {} && sleep 30\"]}};\n", started.display()));
    d.write("short.ox", "print \"never\";\n");
    let submit = |file: &str| text(&d.run(&["submit", file]).stdout).trim().to_owned();
    let long = submit("long.ox");
    common::wait_for_file(&started);
    let (second, third) = (submit("short.ox"), submit("short.ox"));
    let shown = text(&d.run(&["workflow", "show", &second]).stdout);
    assert!(shown.contains("state: queued") && shown.contains("started: -"), "{shown}");
    let list = text(&d.run(&["workflow", "list"]).stdout);
    assert_eq!(list.lines().filter(|l| l.contains(" queued ")).count(), 2, "{list}");
    let status = text(&d.run(&["daemon", "status"]).stdout);
    assert!(status.contains("running workflows: 1") && status.contains("queued workflows: 2"), "{status}");
    assert!(status.contains("1 running at once"), "{status}");

    let killed = d.run(&["workflow", "kill", &second]);
    assert_eq!(text(&killed.stdout), format!("workflow {second}: killed\n"), "{}", text(&killed.stderr));
    let shown = d.wait_done(&second);
    assert!(shown.contains("state: killed (exit 130)") && shown.contains("started: -") && shown.contains("never started"), "{shown}");

    // Stopping ends the running one and the queued one, interrupted.
    let stopped = d.run(&["daemon", "stop"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stderr));
    assert!(d.child.take().unwrap().wait().unwrap().success());
    d.start_foreground(&[]);
    for id in [&long, &third] {
        let shown = d.wait_done(id);
        assert!(shown.contains("state: interrupted (exit 130)"), "{shown}");
    }
    // Ended by the stop itself, not by the next start's sweep.
    let shown = d.wait_done(&third);
    assert!(shown.contains("started: -") && shown.contains("while it was queued"), "{shown}");
}

#[test]
fn restart_keeps_the_limits_and_status_shows_them() {
    reap_orphans();
    let d = Daemon::new("limits-restart");
    let out = d.run(&["daemon", "start", "--memory-limit", "2G", "--output-limit", "8M", "--max-running", "3", "--idle-timeout", "77"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let want = "limits: memory 2 GiB per workflow, output 8 MiB per workflow, 3 running at once, idle connections closed after 77s";
    assert!(text(&d.run(&["daemon", "status"]).stdout).contains(want));
    let out = d.run(&["daemon", "restart", "--max-running", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let want = "limits: memory 2 GiB per workflow, output 8 MiB per workflow, 5 running at once, idle connections closed after 77s";
    let status = text(&d.run(&["daemon", "status"]).stdout);
    assert!(status.contains(want), "{status}");
    let bad = d.run(&["daemon", "start", "--memory-limit", "lots"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("e.g. 512M, 4G"), "{}", text(&bad.stderr));
    assert_eq!(d.run(&["daemon", "stop"]).status.code(), Some(0));
}

#[test]
fn the_accept_loop_survives_running_out_of_descriptors() {
    let d = foreground_with_nofile("limits-emfile", 64, &[]);
    // Connections held open until the daemon has no descriptor left; the
    // rest wait in the socket's backlog.
    let mut held = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while !d.log().contains("cannot accept a connection") {
        assert!(Instant::now() < until, "the daemon never ran out of descriptors:\n{}", d.log());
        if held.len() < 100 {
            held.push(UnixStream::connect(d.socket()).unwrap());
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let log = d.log();
    assert!(log.contains("out of open files: fewer --max-running, or a higher `ulimit -n`"), "{log}");
    // Logged once, however long it lasts. (Connections that never say
    // hello are closed after 5 s, so on a slow machine one episode may end
    // and another begin: each is logged once.)
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(d.dir.join("data/daemon.log")).unwrap();
    let episode = log.split("accepting connections again").next().unwrap();
    assert_eq!(episode.matches("cannot accept a connection").count(), 1, "{log}");
    drop(held);
    // It serves again.
    d.write("one.ox", "print \"back\";\n");
    let out = d.run(&["submit", "--wait", "one.ox"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "back\n".into()), "{}\n{}", text(&out.stderr), d.log());
    assert!(d.log().contains("accepting connections again"), "{}", d.log());
}

/// `daemon start --executor`: checked before the daemon starts, shown by
/// `status`, kept by `restart`, and given to each workflow's runner as its
/// OXIIDA_EXECUTOR over the submitted one (where the Python plugin reads
/// it; the Dask cluster itself is in plugins/python/tests/test_executor.py).
#[test]
fn restart_keeps_the_executor_and_runners_get_it_over_the_submitted_one() {
    reap_orphans();
    let d = Daemon::new("executor-restart");
    let bad = d.run(&["daemon", "start", "--executor", "loky://4"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("unknown executor `loky://4`"), "{}", text(&bad.stderr));
    let out = d.run(&["daemon", "start", "--executor", "pool"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    d.write("env.ox", "r = shell {\"sh\", [\"-c\", \"printf %s \\\"$OXIIDA_EXECUTOR\\\"\"]};\nprint r.stdout;\n");
    let submit = || {
        let out = d.cmd(&["submit", "--wait", "env.ox"]).env("OXIIDA_EXECUTOR", "dask://elsewhere:1").output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(submit(), "pool\n");
    let out = d.run(&["daemon", "restart", "--max-running", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status = text(&d.run(&["daemon", "status"]).stdout);
    assert!(status.contains("executor: pool"), "{status}");
    assert_eq!(submit(), "pool\n", "kept by the restart");
    let out = d.run(&["daemon", "restart", "--executor", "tcp://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(submit(), "tcp://127.0.0.1:9\n", "a new one given to restart");
    assert_eq!(d.run(&["daemon", "stop"]).status.code(), Some(0));
}
