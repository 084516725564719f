//! The daemon's life cycle, its protocol, privacy and runner isolation.

use crate::common::{self, text};
use crate::support::*;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use oxiida_protocol::{self as protocol, Reply, Request};

#[test]
fn lifecycle_start_status_second_start_stop_restart() {
    reap_orphans();
    let d = Daemon::new("lifecycle");
    let out = d.run(&["daemon", "start"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pid = d.pid().expect("a pid file");
    assert!(text(&out.stdout).contains(&format!("pid {pid}")), "{}", text(&out.stdout));
    assert!(alive(pid));

    let again = d.run(&["daemon", "start"]);
    assert_eq!(again.status.code(), Some(1));
    let err = text(&again.stderr);
    assert!(err.contains("already running") && err.contains(&format!("pid {pid}")) && err.contains("daemon.sock"), "{err}");

    let status = text(&d.run(&["daemon", "status"]).stdout);
    for want in [format!("pid {pid}"), "up ".into(), "daemon.sock".into(), "daemon.log".into(), "loaded plugins: none".into()] {
        assert!(status.contains(&want), "status lacks {want:?}:\n{status}");
    }
    assert!(status.contains("running workflows: 0"), "{status}");
    let log = std::fs::read_to_string(d.dir.join("data/daemon.log")).unwrap();
    assert!(log.contains("daemon started"), "{log}");

    let restarted = d.run(&["daemon", "restart"]);
    assert_eq!(restarted.status.code(), Some(0), "{}", text(&restarted.stderr));
    let new_pid = d.pid().unwrap();
    assert_ne!(new_pid, pid);
    common::assert_stops(pid, "the daemon before the restart");
    // SAFETY: reaping the first daemon, an orphan this process adopted.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };

    let stopped = d.run(&["daemon", "stop"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stderr));
    assert!(!alive(new_pid));
    assert!(!d.socket().exists(), "the socket is removed");
    let status = d.run(&["daemon", "status"]);
    assert_eq!(status.status.code(), Some(3));
    assert!(text(&status.stderr).contains("no daemon is running"), "{}", text(&status.stderr));
    assert_eq!(d.run(&["daemon", "stop"]).status.code(), Some(0), "stopping a stopped daemon is fine");
    let submit = d.run(&["submit", "nothing.ox"]);
    assert_eq!(submit.status.code(), Some(2), "a missing file is a usage error, daemon or not");
}

#[test]
fn everything_the_daemon_keeps_is_private_even_in_an_open_data_folder() {
    reap_orphans();
    let mut d = Daemon::new("modes");
    // What `mkdir -p ~/.local/share/oxiida/plugins` leaves, and a log an
    // older daemon left readable.
    std::fs::create_dir_all(d.dir.join("data/plugins")).unwrap();
    std::fs::set_permissions(d.dir.join("data"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(d.dir.join("data/daemon.log"), "").unwrap();
    std::fs::set_permissions(d.dir.join("data/daemon.log"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut start = d.cmd(&["daemon", "start"]);
    // SAFETY: umask is async-signal-safe. The user's usual umask, which
    // workflows get back although the daemon runs under 077.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut start, || {
            libc::umask(0o022);
            Ok(())
        })
    };
    let out = start.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    d.write("touch.ox", "r = shell {\"touch\", [\"made\"]};\n");
    let touched = d.run(&["submit", "--wait", "touch.ox"]);
    assert_eq!(touched.status.code(), Some(0), "{}", text(&touched.stderr));
    assert_eq!(mode(&d.dir.join("made")), 0o644, "a workflow creates files under the user's umask");

    assert_eq!(mode(&d.dir.join("run")), 0o700);
    assert_eq!(mode(&d.socket()), 0o600);
    assert_eq!(mode(&d.dir.join("data")), 0o700, "an existing data folder is made private");
    for file in ["data/daemon.log", "data/workflows.sqlite3", "run/daemon.pid", "run/daemon.lock"] {
        assert_eq!(mode(&d.dir.join(file)), 0o600, "{file}");
    }
    for file in ["data/workflows.sqlite3-wal", "data/workflows.sqlite3-shm"] {
        if d.dir.join(file).exists() {
            assert_eq!(mode(&d.dir.join(file)), 0o600, "{file}");
        }
    }
    let pid = d.pid().unwrap();
    assert_eq!(d.run(&["daemon", "stop"]).status.code(), Some(0));
    // SAFETY: reaping the stopped daemon, an orphan this process adopted.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };

    // A database an older daemon left readable is closed too.
    std::fs::set_permissions(d.dir.join("data/workflows.sqlite3"), std::fs::Permissions::from_mode(0o644)).unwrap();
    d.start_foreground(&[]);
    assert_eq!(mode(&d.dir.join("data/workflows.sqlite3")), 0o600);
}

#[test]
fn an_unsafe_runtime_folder_is_refused_by_start_and_by_clients() {
    let d = Daemon::new("unsafe");
    d.write("hi.ox", "print 1;\n");
    let refused = |d: &Daemon, want: &[&str]| {
        for args in [&["daemon", "start"][..], &["daemon", "start", "--foreground"], &["submit", "--wait", "hi.ox"], &["daemon", "status"]]
        {
            let out = d.run(args);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            for w in want {
                assert!(err.contains(w), "{args:?} lacks {w:?}: {err}");
            }
        }
    };
    std::fs::create_dir(d.dir.join("run")).unwrap();
    std::fs::set_permissions(d.dir.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    refused(&d, &["the runtime folder", "has mode 0755", "chmod 700", "OXIIDA_RUNTIME_DIR"]);
    assert_eq!(mode(&d.dir.join("run")), 0o755, "refused, not changed");
    assert!(!d.socket().exists());

    std::fs::remove_dir(d.dir.join("run")).unwrap();
    std::fs::create_dir(d.dir.join("elsewhere")).unwrap();
    std::fs::set_permissions(d.dir.join("elsewhere"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(d.dir.join("elsewhere"), d.dir.join("run")).unwrap();
    refused(&d, &["the runtime folder", "is a symbolic link", "XDG_RUNTIME_DIR"]);
    assert_eq!(mode(&d.dir.join("elsewhere")), 0o755, "nothing is changed through the link");
    assert!(!d.dir.join("elsewhere/daemon.sock").exists());

    // With XDG_RUNTIME_DIR unset, the fallback $TMPDIR/oxiida-UID is checked the same way.
    // SAFETY: getuid cannot fail.
    let fallback = d.dir.join(format!("oxiida-{}", unsafe { libc::getuid() }));
    std::fs::create_dir(&fallback).unwrap();
    std::fs::set_permissions(&fallback, std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [&["daemon", "start"][..], &["submit", "--wait", "hi.ox"]] {
        let mut c = d.cmd(args);
        let out = c.env_remove("OXIIDA_RUNTIME_DIR").env_remove("XDG_RUNTIME_DIR").env("TMPDIR", &d.dir).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&format!("the runtime folder {} has mode 0755", fallback.display())), "{args:?}: {err}");
    }
    assert!(!fallback.join("daemon.sock").exists());
}

/// A fake daemon: listens on SOCKET, says "listening", then for each
/// connection prints what it received (for up to 2 s) and answers nothing.
const FAKE_DAEMON: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept(); c.settimeout(2); got = b""
    try:
        while True:
            b = c.recv(65536)
            if not b: break
            got += b
    except OSError: pass
    print("connection, received", len(got), repr(got), flush=True); c.close()
"#;

#[test]
fn another_user_can_neither_squat_the_socket_nor_use_the_daemon() {
    let Some((uid, gid)) = squatter() else { return };
    let d = Daemon::new("squat");
    // The squatter may pass through the test's folder, as through /tmp.
    std::fs::set_permissions(&d.dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    d.write("secret.ox", "print \"the secret is 42\";\n");
    std::fs::set_permissions(d.dir.join("secret.ox"), std::fs::Permissions::from_mode(0o600)).unwrap();

    // 1. XDG_RUNTIME_DIR is unset, so the socket would be in the fallback
    //    $TMPDIR/oxiida-0; the squatter made that folder first (private, but
    //    theirs) and listens there.
    let fallback = d.dir.join("oxiida-0");
    std::fs::create_dir(&fallback).unwrap();
    std::os::unix::fs::chown(&fallback, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&fallback, std::fs::Permissions::from_mode(0o700)).unwrap();
    let squatted = fallback.join("daemon.sock");
    let mut fake = python_as(uid, gid, FAKE_DAEMON).arg(&squatted).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = [0u8; 10];
    fake.stdout.as_mut().unwrap().read_exact(&mut line).unwrap();
    assert_eq!(&line, b"listening\n");
    let mut submit = d.cmd(&["submit", "--wait", "secret.ox"]);
    submit.env_remove("OXIIDA_RUNTIME_DIR").env_remove("XDG_RUNTIME_DIR").env("TMPDIR", &d.dir);
    let out = submit.output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("the runtime folder {} is owned by uid {uid}, not you (uid 0)", fallback.display())), "{err}");
    assert!(err.contains("intercept") && err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert!(!text(&out.stdout).contains("42"));

    // 2. The folder passes (ours, 0700), but the socket in it is the
    //    squatter's: SO_PEERCRED stops the client before it sends a byte.
    let ours = d.dir.join("ours");
    std::fs::create_dir(&ours).unwrap();
    std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::rename(&squatted, ours.join("daemon.sock")).unwrap();
    let out = d.cmd(&["submit", "--wait", "secret.ox"]).env("OXIIDA_RUNTIME_DIR", &ours).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("runs as uid {uid}, not as you (uid 0)")) && err.contains("nothing was sent"), "{err}");
    std::thread::sleep(Duration::from_millis(200));
    fake.kill().unwrap();
    let fake_out = fake.wait_with_output().unwrap();
    let heard = text(&fake_out.stdout);
    assert_eq!(heard, "connection, received 0 b''\n", "the fake daemon got one empty connection, no source");

    // 3. The squatter cannot use the real daemon: the folder stops them,
    //    and were it open, the daemon would close on them unanswered.
    let run = d.dir.join("run");
    let mut d = d;
    d.start_foreground(&[]);
    let hello_hex: String = hello().iter().map(|b| format!("{b:02x}")).collect();
    let client = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("cannot connect:", e.strerror); sys.exit(0)
s.settimeout(10); got = b""
try:
    s.sendall(bytes.fromhex(sys.argv[2]))
    while True:
        b = s.recv(65536)
        if not b: break
        got += b
except OSError as e: print("error:", e)
print("received", len(got))
"#;
    let tried = text(&python_as(uid, gid, client).arg(d.socket()).arg(&hello_hex).output().unwrap().stdout);
    assert!(tried.starts_with("cannot connect: Permission denied"), "{tried}");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(d.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let tried = text(&python_as(uid, gid, client).arg(d.socket()).arg(&hello_hex).output().unwrap().stdout);
    // Closed unanswered (perhaps a reset or a broken pipe: the hello is never read).
    assert!(tried.ends_with("received 0\n"), "the daemon answers another user nothing: {tried}");
    let log = std::fs::read_to_string(d.dir.join("data/daemon.log")).unwrap();
    assert!(log.contains(&format!("refusing a connection from uid {uid}")), "{log}");
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = d.run(&["submit", "--wait", "secret.ox"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "the secret is 42\n".into()), "{}", text(&out.stderr));
}

#[test]
fn submit_wait_streams_output_and_exits_like_run() {
    let d = Daemon::foreground("wait", &[]);
    std::fs::create_dir_all(d.dir.join("sub")).unwrap();
    d.write("sub/ok.ox", "print \"one\";\nr = shell {\"pwd\"};\nprint r.stdout;\nprint [1, 2];\n");
    d.write("fails.ox", "print \"before\";\nprint 1 / 0;\n");
    d.write("bad.ox", "x = ;\n");

    let mut c = d.cmd(&["submit", "--wait", "ok.ox"]);
    let ok = c.current_dir(d.dir.join("sub")).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let sub = d.dir.join("sub").canonicalize().unwrap();
    assert_eq!(text(&ok.stdout), format!("one\n{}\n\n[1, 2]\n", sub.display()), "runs in the client's directory");

    let fails = d.run(&["submit", "--wait", "fails.ox"]);
    assert_eq!(fails.status.code(), Some(1));
    assert_eq!(text(&fails.stdout), "before\n");
    assert!(text(&fails.stderr).contains("division by zero") && text(&fails.stderr).contains("fails.ox:2:9"), "{}", text(&fails.stderr));

    let bad = d.run(&["submit", "--wait", "bad.ox"]);
    assert_eq!(bad.status.code(), Some(65));
    assert!(text(&bad.stderr).contains("nothing was run"), "{}", text(&bad.stderr));
    assert_eq!(d.run(&["submit", "--wait", "--plugin", "./no-such.so", "fails.ox"]).status.code(), Some(2));

    let quick = d.run(&["submit", "fails.ox"]);
    assert_eq!(quick.status.code(), Some(0), "without --wait the id is the answer");
    let id = text(&quick.stdout).trim().to_owned();
    assert!(id.parse::<u64>().is_ok(), "{id}");
    let shown = d.wait_done(&id);
    for want in ["state: failed (exit 1)", "before", "division by zero", "submitted: 20"] {
        assert!(shown.contains(want), "show lacks {want:?}:\n{shown}");
    }
    let list = text(&d.run(&["workflow", "list"]).stdout);
    assert_eq!(list.lines().filter(|l| l.contains(" failed ")).count(), 3, "{list}");
    assert!(list.lines().any(|l| l.contains(" succeeded ") && l.contains("ok.ox")), "{list}");
    let missing = d.run(&["workflow", "show", "999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no workflow 999"));
}

#[test]
fn two_workflows_at_once_each_run_in_their_client_folder() {
    let d = Daemon::foreground("folders", &[]);
    // Each marks its own folder, then waits for the other's mark (relative
    // paths: they resolve in the workflow's folder), so both run at once.
    for (me, other) in [("a", "b"), ("b", "a")] {
        std::fs::create_dir_all(d.dir.join(me)).unwrap();
        let wait = format!("touch here; i=0; while [ ! -f ../{other}/here ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done");
        d.write(
            &format!("{me}/where.ox"),
            &format!("m = shell {{\"sh\", [\"-c\", \"{wait}\"]}};\nr = shell {{\"pwd\"}};\nprint r.stdout;\n"),
        );
    }
    let spawn = |me: &str| {
        let mut c = d.cmd(&["submit", "--wait", "where.ox"]);
        c.current_dir(d.dir.join(me)).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    for (me, out) in [("a", a.wait_with_output().unwrap()), ("b", b.wait_with_output().unwrap())] {
        let folder = d.dir.join(me).canonicalize().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{}\n\n", folder.display()), "workflow from {me}/");
        assert!(folder.join("here").exists(), "its shell task ran in {me}/");
    }

    // A folder that is gone by the time the workflow starts: a usage error.
    let gone = protocol::Submit {
        name: "gone.ox".into(),
        source: "print 1;".into(),
        cwd: Some("/no/such/oxiida/folder".into()),
        ..Default::default()
    };
    let r = replies(&exchange(&d.socket(), &[hello(), protocol::encode(&Request::Submit(gone))].concat(), true));
    let Some(Reply::Submitted { id }) = r.get(1) else { panic!("not submitted: {r:?}") };
    let error = d.wait_done(&id.to_string());
    assert!(error.contains("state: failed (exit 2)"), "{error}");
    assert!(error.contains("cannot enter the working directory /no/such/oxiida/folder"), "{error}");
}

#[test]
fn kill_cancels_a_workflow_and_its_processes_and_ctrl_c_only_detaches() {
    let d = Daemon::foreground("kill", &[]);
    d.write(
        "long.ox",
        "print \"started\";\nr = shell {\"sh\", [\"-c\", \"sleep 60 & echo $! > sleeper; wait\"]};\nprint \"not reached\";\n",
    );
    let mut waiting = d.cmd(&["submit", "--wait", "long.ox"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let sleeper: i32 = common::wait_for_file(&d.dir.join("sleeper")).parse().unwrap();
    let status = text(&d.run(&["daemon", "status"]).stdout);
    assert!(status.contains("running workflows: 1") && status.contains("long.ox"), "{status}");
    let killed = d.run(&["workflow", "kill", "1"]);
    assert_eq!(killed.status.code(), Some(0), "{}", text(&killed.stderr));
    assert_eq!(text(&killed.stdout).trim(), "workflow 1: killed");
    assert_eq!(waiting.wait().unwrap().code(), Some(130));
    let mut out = String::new();
    waiting.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "started\n");
    common::assert_stops(sleeper, "the killed workflow's `sleep`");
    assert!(text(&d.run(&["workflow", "kill", "1"]).stderr).contains("not running"));

    // Ctrl-C on a waiting client leaves the workflow running.
    d.write("gated.ox", "print \"waiting\";\nr = shell {\"sh\", [\"-c\", \"while [ ! -f go ]; do sleep 0.02; done\"]};\nprint \"went\";\n");
    let mut client = d.cmd(&["submit", "--wait", "gated.ox"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 8];
    client.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"waiting\n");
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(client.id() as i32, libc::SIGINT) };
    assert_eq!(client.wait().unwrap().code(), Some(130));
    let mut err = String::new();
    client.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("detached") && err.contains("workflow 2"), "{err}");
    assert!(text(&d.run(&["workflow", "show", "2"]).stdout).contains("state: running"));
    d.write("go", "");
    let shown = d.wait_done("2");
    assert!(shown.contains("state: succeeded") && shown.contains("waiting\nwent"), "{shown}");
}

#[test]
fn stopping_the_daemon_interrupts_workflows_and_tells_waiting_clients() {
    let mut d = Daemon::foreground("stop", &[]);
    d.write("long.ox", "print \"started\";\nr = shell {\"sleep\", [\"60\"]};\nprint \"not reached\";\n");
    let mut waiting = d.cmd(&["submit", "--wait", "long.ox"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 8];
    waiting.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    let stopped = d.run(&["daemon", "stop"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stderr));
    assert!(d.child.take().unwrap().wait().unwrap().success(), "the daemon exits cleanly");
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(text(&out.stderr).contains("the daemon stopped"), "{}", text(&out.stderr));
    d.start_foreground(&[]);
    assert!(text(&d.run(&["workflow", "show", "1"]).stdout).contains("state: interrupted (exit 130)"));
}

#[test]
fn each_workflow_has_its_own_plugin_sessions() {
    let d = Daemon::foreground("isolation", &[]);
    let plugin = example_plugin().display().to_string();
    // Both set the same-named global at once, then read it back: a shared
    // session would show one the other's value. (Each workflow is a runner
    // process of its own, so they cannot even meet in `rendezvous`.)
    for (name, value) in [("a.ox", 1), ("b.ox", 2)] {
        d.write(name, &format!("require remember, recall, slow;\nx = remember({value});\nz = slow(100);\nprint recall();\n"));
    }
    let spawn = |file: &str| d.cmd(&["submit", "--wait", "--plugin", &plugin, file]).stdout(Stdio::piped()).spawn().unwrap();
    let (a, b) = (spawn("a.ox"), spawn("b.ox"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!((a.status.code(), text(&a.stdout)), (Some(0), "1\n".into()));
    assert_eq!((b.status.code(), text(&b.stdout)), (Some(0), "2\n".into()));
    let status = text(&d.run(&["daemon", "status"]).stdout);
    assert!(status.contains("example (") && status.contains("liboxiida_example.so"), "{status}");

    // Default plugins from `daemon start --plugin` are fresh per workflow too.
    let d = Daemon::foreground("defaults", &["--plugin", &format!("{plugin}=Howdy")]);
    d.write("greet.ox", "require greet, remember, recall;\nprint recall();\nx = remember(7);\nprint greet(\"you\");\n");
    for _ in 0..2 {
        let out = d.run(&["submit", "--wait", "greet.ox"]);
        assert_eq!(text(&out.stdout), "0\nHowdy, you\n", "{}", text(&out.stderr));
    }
}

#[test]
fn submitted_workflows_pass_keyword_arguments_to_plugins() {
    let d = Daemon::foreground("keywords", &[]);
    let plugin = example_plugin().display().to_string();
    d.write("kw.ox", "require greet;\nprint greet(\"you\", greeting = \"Hi\");\nprint greet(\"you\");\n");
    let out = d.run(&["submit", "--wait", "--plugin", &format!("{plugin}=Howdy"), "kw.ox"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "Hi, you\nHowdy, you\n".into()), "{}", text(&out.stderr));
    d.write("bad.ox", "require greet;\nx = greet(\"you\", greting = \"Hi\");\n");
    let out = d.run(&["submit", "--wait", "--plugin", &plugin, "bad.ox"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("greet takes one keyword argument, `greeting`"), "{}", text(&out.stderr));
}

#[test]
fn records_survive_sigkill_and_running_workflows_become_interrupted() {
    let mut d = Daemon::foreground("sigkill", &[]);
    d.write("done.ox", "print \"finished\";\n");
    d.write("spin.ox", "print \"spinning\";\ni = 0;\nwhile (true) { i = i + 1; }\n");
    assert_eq!(d.run(&["submit", "--wait", "done.ox"]).status.code(), Some(0));
    let spin = text(&d.run(&["submit", "spin.ox"]).stdout).trim().to_owned();
    let until = Instant::now() + Duration::from_secs(10);
    while !text(&d.run(&["workflow", "show", &spin]).stdout).contains("spinning") {
        assert!(Instant::now() < until, "the spinning workflow never printed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The spinning workflow's runner and the warm ones die with the daemon.
    let runners = children(d.child.as_ref().unwrap().id());
    assert!(runners.len() >= 2, "{runners:?}");
    d.kill_hard();
    for runner in runners {
        common::assert_stops(runner, "a runner of the killed daemon");
    }
    d.start_foreground(&[]);
    let list = text(&d.run(&["workflow", "list"]).stdout);
    assert!(list.lines().any(|l| l.contains("succeeded") && l.contains("done.ox")), "{list}");
    assert!(list.lines().any(|l| l.contains("interrupted") && l.contains("spin.ox")), "{list}");
    let shown = text(&d.run(&["workflow", "show", &spin]).stdout);
    assert!(shown.contains("spinning") && shown.contains("the daemon stopped"), "{shown}");
    let with_source = text(&d.run(&["workflow", "show", "--source", &spin]).stdout);
    assert!(with_source.contains("while (true)"), "the source is recorded:\n{with_source}");
}

#[test]
fn bad_bytes_get_error_replies_and_the_daemon_serves_on() {
    use protocol::ErrorKind::*;
    let d = Daemon::foreground("garbage", &[]);
    let sock = d.socket();
    let oversized = [&0xffff_fff0u32.to_be_bytes()[..], b"junk"].concat();
    assert_eq!(error_kind(&replies(&exchange(&sock, &oversized, false))[0]), BadFrame);
    let truncated = [&100u32.to_be_bytes()[..], b"only a bit"].concat();
    let r = replies(&exchange(&sock, &truncated, true));
    assert!(matches!(&r[0], Reply::Error { kind: BadFrame, message } if message.contains("cut short")), "{r:?}");
    // Not MessagePack, then a good hello on the same connection: it goes on.
    let junk = [&4u32.to_be_bytes()[..], b"\xc1\xc1\xc1\xc1", &hello()].concat();
    let r = replies(&exchange(&sock, &junk, true));
    assert_eq!(error_kind(&r[0]), BadFrame);
    assert!(matches!(r[1], Reply::Hello { .. }), "{r:?}");
    // Requests before the handshake, and a wrong version, are refused.
    let early = protocol::encode(&Request::Status);
    assert_eq!(error_kind(&replies(&exchange(&sock, &early, true))[0]), Handshake);
    let old = protocol::encode(&Request::Hello { protocol: 999, client: "future".into() });
    assert_eq!(error_kind(&replies(&exchange(&sock, &old, true))[0]), Handshake);
    // After it: an unknown request, a bad one, then a good one.
    #[derive(serde::Serialize)]
    struct Odd {
        #[serde(rename = "type")]
        kind: &'static str,
    }
    let odd = |kind| protocol::encode(&Odd { kind });
    let after = [hello(), odd("frobnicate"), odd("show"), hello(), protocol::encode(&Request::List(Default::default()))].concat();
    let r = replies(&exchange(&sock, &after, true));
    assert_eq!((error_kind(&r[1]), error_kind(&r[2]), error_kind(&r[3])), (UnknownRequest, BadRequest, Handshake), "{r:?}");
    assert!(matches!(r[4], Reply::Workflows { .. }), "{r:?}");
    // Pure noise, and a client that connects and leaves at once.
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    exchange(&sock, &noise, true);
    drop(UnixStream::connect(&sock).unwrap());

    // Parsed, this would take the parser gigabytes (the daemon with it).
    let deep = 1_000_000;
    d.write("deep.ox", &format!("x = {}1{};\n", "(".repeat(deep), ")".repeat(deep)));
    let refused = d.run(&["submit", "--wait", "deep.ox"]);
    assert_eq!(refused.status.code(), Some(65));
    assert!(text(&refused.stderr).contains("levels deep"), "{}", text(&refused.stderr));

    d.write("after.ox", "print \"still serving\";\n");
    let out = d.run(&["submit", "--wait", "after.ox"]);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "still serving\n".into()));
}

#[test]
fn a_connection_that_never_says_hello_is_closed() {
    let d = Daemon::foreground("silent", &[]);
    let start = Instant::now();
    let r = replies(&exchange(&d.socket(), b"", false));
    assert_eq!(error_kind(&r[0]), protocol::ErrorKind::Handshake, "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(14), "closed only after {:?}", start.elapsed());
    d.write("after.ox", "print \"still serving\";\n");
    assert_eq!(d.run(&["submit", "--wait", "after.ox"]).status.code(), Some(0));
}

#[test]
fn two_hundred_concurrent_submits_all_complete_and_are_recorded() {
    const CLIENTS: usize = 4;
    const EACH: usize = 50;
    let d = Daemon::foreground("many", &[]);
    d.write("one.ox", "r = shell {\"true\"};\nprint \"done\";\n");
    std::thread::scope(|s| {
        for client in 0..CLIENTS {
            let d = &d;
            s.spawn(move || {
                for i in 0..EACH {
                    // Half wait for their workflow, half only submit.
                    let wait = (client + i) % 2 == 0;
                    let out = d.run(if wait { &["submit", "--wait", "one.ox"] } else { &["submit", "one.ox"] });
                    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
                    assert_eq!(text(&out.stdout).trim() == "done", wait, "{}", text(&out.stdout));
                }
            });
        }
    });
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let list = text(&d.run(&["workflow", "list", "--limit", "1000"]).stdout);
        let rows: Vec<&str> = list.lines().skip(1).collect();
        assert_eq!(rows.len(), CLIENTS * EACH, "every submit is recorded");
        if rows.iter().all(|r| r.contains(" succeeded ")) {
            let mut ids: Vec<u64> = rows.iter().map(|r| r.split_whitespace().next().unwrap().parse().unwrap()).collect();
            ids.dedup();
            assert_eq!(ids.len(), CLIENTS * EACH, "ids are distinct");
            break;
        }
        assert!(Instant::now() < until, "not all finished:\n{list}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_background_start_that_fails_says_why_at_once() {
    reap_orphans();
    let d = Daemon::new("failstart");
    // Found by the client; refused only when the daemon loads it.
    let junk = d.dir.join("libjunk.so");
    std::fs::write(&junk, "this is not an ELF file").unwrap();
    let started = Instant::now();
    let out = d.run(&["daemon", "start", "--plugin", junk.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the daemon did not start") && err.contains("cannot load plugin"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "told only after {:?}: the pipe closing is the cue", started.elapsed());
}

#[test]
fn a_workflow_whose_call_never_returns_is_killed_and_the_daemon_still_stops() {
    let plugin = common::workspace_plugin("oxiida-test-plugin", "liboxiida_test_plugin.so");
    let d = Daemon::foreground("hang", &[]);
    let started = d.dir.join("started");
    d.write("hang.ox", &format!("require hang;\nh = hang({:?});\n", started.display().to_string()));
    let submitted = d.run(&["submit", "--plugin", plugin.to_str().unwrap(), "hang.ox"]);
    assert_eq!(text(&submitted.stdout).trim(), "1", "{}", text(&submitted.stderr));
    common::wait_for_file(&started);
    let asked = Instant::now();
    let killed = d.run(&["workflow", "kill", "1"]);
    assert_eq!(text(&killed.stdout).trim(), "workflow 1: killed", "{}", text(&killed.stderr));
    assert!(asked.elapsed() < Duration::from_secs(3), "killed after {:?}", asked.elapsed());
    let asked = Instant::now();
    let stopped = d.run(&["daemon", "stop"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stderr));
    assert!(asked.elapsed() < Duration::from_secs(3), "stopped after {:?}", asked.elapsed());
}

#[test]
fn runners_die_with_their_workflow_and_leave_no_zombie() {
    let mut d = Daemon::foreground("reap", &[]);
    d.write("one.ox", "print \"one\";\n");
    for _ in 0..3 {
        assert_eq!(text(&d.run(&["submit", "--wait", "one.ox"]).stdout), "one\n");
    }
    let pid = d.child.as_ref().unwrap().id();
    // The daemon's children: its warm runners only, none a zombie.
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let all = children(pid);
        let zombies = all.iter().filter(|&&c| !alive(c)).count();
        if zombies == 0 && all.len() <= 2 {
            break;
        }
        assert!(Instant::now() < until, "the daemon's children: {all:?}, {zombies} zombie(s)");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = d.run(&["daemon", "stop"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stderr));
    assert!(d.child.take().unwrap().wait().unwrap().success());
}

#[test]
fn the_daemon_raises_its_open_file_limit_to_the_hard_limit() {
    use std::os::unix::process::CommandExt;
    let mut d = Daemon::new("fdlimit");
    let mut cmd = d.cmd(&["daemon", "start", "--foreground"]);
    // SAFETY: getrlimit and setrlimit are async-signal-safe; only the soft limit is lowered.
    unsafe {
        cmd.pre_exec(|| {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = 256.min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    d.child = Some(child);
    let until = Instant::now() + Duration::from_secs(10);
    while !d.cmd(&["daemon", "status"]).output().unwrap().status.success() {
        assert!(Instant::now() < until, "the daemon never answered");
        std::thread::sleep(Duration::from_millis(10));
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a line for open files");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[3], words[4], "soft limit not raised to the hard one: {line}");
}
