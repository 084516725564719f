//! Issue 11: no orphans, and a store that survives its own faults. Every
//! test that depends on cgroups runs twice: as this machine allows, and
//! with OXIIDA_NO_CGROUPS=1 (the markers alone).

use crate::common::text;
use crate::support::*;

use std::process::Command;
use std::time::{Duration, Instant};

/// The daemon's environment for each way of finding processes.
fn env(no_cgroups: bool) -> Vec<(&'static str, &'static str)> {
    if no_cgroups {
        vec![("OXIIDA_NO_CGROUPS", "1")]
    } else {
        vec![]
    }
}

/// Says which way the daemon finds processes (its log says), so a run on a
/// machine without usable cgroups is not mistaken for a test of them.
fn check_mode(d: &Daemon, no_cgroups: bool) {
    let log = std::fs::read_to_string(d.dir.join("data/daemon.log")).unwrap();
    if no_cgroups {
        assert!(log.contains("OXIIDA_NO_CGROUPS is set"), "{log}");
        assert!(!log.contains("workflows run in cgroups"), "{log}");
    } else if !log.contains("workflows run in cgroups under") {
        eprintln!("note: this machine gives the daemon no cgroups, so only the marker path was tested:\n{log}");
    }
}

/// A number of seconds no other test (or run) uses, as `sleep`'s argument:
/// how the test finds the processes a workflow started.
fn unique(tag: u32) -> String {
    format!("86{}{tag:02}.5", std::process::id())
}

/// Live processes (not zombies) running `sleep ARG`.
fn sleeping(arg: &str) -> Vec<i32> {
    let pids = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok());
    pids.filter(|&pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        argv.len() >= 2 && argv[0].ends_with(b"sleep") && argv[1] == arg.as_bytes() && alive(pid)
    })
    .collect()
}

/// Polls until `ok` holds, or fails with `what` after `secs` seconds.
fn until(secs: u64, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills (and reaps, if ours) whatever a failed test left sleeping.
struct Sleepers(Vec<String>);

impl Drop for Sleepers {
    fn drop(&mut self) {
        for arg in &self.0 {
            for pid in sleeping(arg) {
                // SAFETY: kill with plain integers, on a process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The shell each workflow runs, and how many `sleep`s it leaves: a plain
/// child, a grandchild, one that calls `setsid`, and a double fork whose
/// `setsid` child is reparented away from the shell.
fn shell(i: u32, arg: &str) -> (String, usize) {
    match i % 4 {
        0 => (format!("r = shell {{\"sleep\", [\"{arg}\"]}};\n"), 1),
        1 => (format!("r = shell {{\"sh\", [\"-c\", \"sleep {arg} & wait\"]}};\n"), 1),
        2 => (format!("r = shell {{\"sh\", [\"-c\", \"setsid sleep {arg} & wait\"]}};\n"), 1),
        _ => (format!("r = shell {{\"sh\", [\"-c\", \"(setsid sleep {arg} &); sleep {arg}\"]}};\n"), 2),
    }
}

fn sigkill_leaves_no_orphans(name: &str, no_cgroups: bool) {
    reap_orphans();
    let mut d = Daemon::new(name);
    d.start_foreground_env(&[], &env(no_cgroups));
    check_mode(&d, no_cgroups);
    let args: Vec<String> = (0..20).map(|i| unique(i + if no_cgroups { 40 } else { 0 })).collect();
    let _sleepers = Sleepers(args.clone());
    let mut ids = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let (source, _) = shell(i as u32, arg);
        d.write(&format!("wf{i}.ox"), &format!("print \"started\";\n{source}"));
        let out = d.run(&["submit", &format!("wf{i}.ox")]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        ids.push(text(&out.stdout).trim().to_owned());
    }
    for (i, arg) in args.iter().enumerate() {
        let want = shell(i as u32, arg).1;
        until(30, &format!("workflow {} never started its {want} sleep(s)", ids[i]), || sleeping(arg).len() == want);
    }
    d.kill_hard();
    // The runners die with the daemon. A runner may first see its socket
    // close and kill its shells' process groups itself (it races its
    // PR_SET_PDEATHSIG), but what left its group (`setsid`) runs on.
    std::thread::sleep(Duration::from_millis(300));
    let survived: Vec<bool> = args.iter().map(|a| !sleeping(a).is_empty()).collect();
    for (i, alive) in survived.iter().enumerate() {
        assert!(*alive || i % 4 < 2, "workflow {}'s setsid sleep died with the daemon: the test shows nothing", ids[i]);
    }
    d.start_foreground_env(&[], &env(no_cgroups));
    // The cleanup is done before the daemon serves.
    for arg in &args {
        assert!(sleeping(arg).is_empty(), "`sleep {arg}` outlived the restart: {:?}", sleeping(arg));
    }
    let log = std::fs::read_to_string(d.dir.join("data/daemon.log")).unwrap();
    for (id, survived) in ids.iter().zip(&survived) {
        let shown = text(&d.run(&["workflow", "show", id]).stdout);
        assert!(shown.contains("state: interrupted"), "{shown}");
        if *survived {
            assert!(shown.contains("leftover process") && shown.contains("killed when the daemon restarted"), "{shown}\n{log}");
        }
    }
    assert!(log.contains(&format!("workflow {}: ", ids[2])) && log.contains("leftover process"), "{log}");
}

#[test]
fn faults_sigkilled_daemon_leaves_no_orphans_with_cgroups() {
    sigkill_leaves_no_orphans("orphans-cg", false);
}

#[test]
fn faults_sigkilled_daemon_leaves_no_orphans_without_cgroups() {
    sigkill_leaves_no_orphans("orphans-env", true);
}

fn kill_reaches_setsid(name: &str, no_cgroups: bool) {
    let mut d = Daemon::new(name);
    d.start_foreground_env(&[], &env(no_cgroups));
    check_mode(&d, no_cgroups);
    let arg = unique(if no_cgroups { 91 } else { 90 });
    let _sleepers = Sleepers(vec![arg.clone()]);
    d.write("escape.ox", &format!("r = shell {{\"sh\", [\"-c\", \"setsid sleep {arg} & wait\"]}};\n"));
    let id = text(&d.run(&["submit", "escape.ox"]).stdout).trim().to_owned();
    until(20, "the setsid sleep never started", || sleeping(&arg).len() == 1);
    let killed = d.run(&["workflow", "kill", &id]);
    assert_eq!(killed.status.code(), Some(0), "{}", text(&killed.stderr));
    // The end is told once the cleanup is done; the poll only absorbs the
    // kernel's asynchronous exit.
    until(5, "the setsid sleep outlived `workflow kill`", || sleeping(&arg).is_empty());
    assert!(d.wait_done(&id).contains("state: killed"));
    // And a workflow that ends by itself takes what it left with it.
    d.write("leaves.ox", &format!("r = shell {{\"sh\", [\"-c\", \"setsid sleep {arg} > /dev/null 2>&1 < /dev/null &\"]}};\n"));
    let out = d.run(&["submit", "--wait", "leaves.ox"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    until(5, "the sleep a finished workflow left outlived it", || sleeping(&arg).is_empty());
}

#[test]
fn faults_kill_reaches_a_setsid_process_with_cgroups() {
    kill_reaches_setsid("setsid-cg", false);
}

#[test]
fn faults_kill_reaches_a_setsid_process_without_cgroups() {
    kill_reaches_setsid("setsid-env", true);
}

#[test]
fn faults_a_deleted_data_folder_fails_submits_and_ids_are_never_reused() {
    reap_orphans();
    let mut d = Daemon::foreground("deleted", &[]);
    d.write("one.ox", "print 1;\n");
    let mut given = Vec::new();
    for _ in 0..3 {
        let out = d.run(&["submit", "--wait", "one.ox"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        given.push(text(&d.run(&["submit", "one.ox"]).stdout).trim().parse::<u64>().unwrap());
    }
    std::fs::remove_dir_all(d.dir.join("data")).unwrap();
    let refused = d.run(&["submit", "one.ox"]);
    assert_eq!(refused.status.code(), Some(1));
    let why = text(&refused.stderr);
    assert!(why.contains("was deleted or replaced") && why.contains("oxiida daemon restart"), "{why}");
    let log = std::fs::read_to_string(d.dir.join("data/daemon.log")).unwrap();
    assert!(log.contains("was deleted or replaced"), "the log says so where the user looks: {log}");

    let restarted = d.run(&["daemon", "restart"]);
    assert_eq!(restarted.status.code(), Some(0), "{}", text(&restarted.stderr));
    assert!(d.child.take().unwrap().wait().unwrap().success());
    let saved: Vec<_> = std::fs::read_dir(d.dir.join("data"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("workflows-saved-"))
        .collect();
    assert_eq!(saved.len(), 1, "the old records are saved beside the new database");
    let next: u64 = text(&d.run(&["submit", "one.ox"]).stdout).trim().parse().unwrap();
    let highest = given.iter().max().unwrap();
    assert!(next > *highest, "new id {next}, after {given:?} and the waited ones");
}

/// Makes files immutable (`chattr +i`) until dropped; `None` where the
/// file system or the user cannot.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(files: &[std::path::PathBuf]) -> Option<Immutable> {
        let done = Immutable(files.to_vec());
        let out = Command::new("chattr").arg("+i").args(files).output();
        match out {
            Ok(o) if o.status.success() => Some(done),
            Ok(o) => {
                eprintln!("note: chattr +i failed ({}), so the immutable-store test is skipped", text(&o.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("note: chattr cannot run ({e}), so the immutable-store test is skipped");
                None
            }
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

#[test]
fn faults_an_immutable_store_gives_clear_errors_and_no_sigbus() {
    let mut d = Daemon::foreground("immutable", &[]);
    d.write("one.ox", "print 1;\n");
    assert_eq!(d.run(&["submit", "--wait", "one.ox"]).status.code(), Some(0));
    let db = d.dir.join("data/workflows.sqlite3");
    let wal = d.dir.join("data/workflows.sqlite3-wal");
    assert!(!d.dir.join("data/workflows.sqlite3-shm").exists(), "the WAL index is in memory, not an mmap'd file");
    // While it runs: submits fail clearly, and the daemon lives on.
    {
        let Some(_frozen) = Immutable::set(&[db.clone(), wal.clone()]) else { return };
        let refused = d.run(&["submit", "one.ox"]);
        assert_eq!(refused.status.code(), Some(1));
        let why = text(&refused.stderr);
        assert!(why.contains("cannot be written") && why.contains("chattr -i"), "{why}");
        assert!(d.child.as_mut().unwrap().try_wait().unwrap().is_none(), "the daemon is alive");
        assert_eq!(d.run(&["daemon", "status"]).status.code(), Some(0));
    }
    let out = d.run(&["submit", "--wait", "one.ox"]);
    assert_eq!(out.status.code(), Some(0), "writable again, it records again: {}", text(&out.stderr));
    assert_eq!(d.run(&["daemon", "stop"]).status.code(), Some(0));
    assert!(d.child.take().unwrap().wait().unwrap().success());

    // At start: refused, saying what to do.
    let Some(_frozen) = Immutable::set(std::slice::from_ref(&db)) else { return };
    let out = d.run(&["daemon", "start", "--foreground"]);
    assert_eq!(out.status.code(), Some(1));
    let why = text(&out.stderr);
    assert!(why.contains("read-only or immutable") && why.contains("chattr -i") && why.contains("OXIIDA_DATA_DIR"), "{why}");
}

/// Kills a daemon another user started in `run`, if one is running.
struct TheirDaemon(std::path::PathBuf);

impl Drop for TheirDaemon {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.0.join("daemon.pid")).ok().and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|&p| p > 0) {
            // SAFETY: signalling and reaping the daemon this test started as the other user.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

#[test]
fn faults_a_read_only_store_is_refused_clearly_for_a_user_bound_by_modes() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // As root, mode bits do not bind: the second user's do.
    let Some((uid, gid)) = squatter() else { return };
    reap_orphans();
    let d = Daemon::new("readonly-user");
    let mode = std::fs::Permissions::from_mode;
    std::fs::set_permissions(&d.dir, mode(0o711)).unwrap();
    let home = d.dir.join("user");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&home, mode(0o700)).unwrap();
    let _theirs = TheirDaemon(home.join("run"));
    let as_user = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_oxiida"));
        c.args(args)
            .env("OXIIDA_RUNTIME_DIR", home.join("run"))
            .env("OXIIDA_DATA_DIR", home.join("data"))
            .current_dir(&home)
            .stdin(std::process::Stdio::null())
            .uid(uid)
            .gid(gid);
        c.output().unwrap()
    };
    // A daemon of theirs makes the database, and stops.
    let started = as_user(&["daemon", "start"]);
    assert_eq!(started.status.code(), Some(0), "{}", text(&started.stderr));
    let pid: i32 = std::fs::read_to_string(home.join("run/daemon.pid")).unwrap().trim().parse().unwrap();
    assert_eq!(as_user(&["daemon", "stop"]).status.code(), Some(0));
    assert!(!home.join("data/workflows.sqlite3-wal").exists(), "a stopped daemon leaves its WAL checkpointed and removed");
    // SAFETY: reaping the stopped daemon, an orphan this process adopted.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };

    // A database they cannot write.
    let db = home.join("data/workflows.sqlite3");
    std::fs::set_permissions(&db, mode(0o400)).unwrap();
    let refused = as_user(&["daemon", "start"]);
    let why = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{why}");
    assert!(why.contains("read-only or immutable") && why.contains("chmod u+w") && why.contains("OXIIDA_DATA_DIR"), "{why}");

    // A data folder they cannot write (SQLite must create its WAL there).
    std::fs::set_permissions(&db, mode(0o600)).unwrap();
    std::fs::set_permissions(home.join("data"), mode(0o500)).unwrap();
    let refused = as_user(&["daemon", "start"]);
    let why = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{why}");
    assert!(why.contains("cannot be written") && why.contains("OXIIDA_DATA_DIR"), "{why}");
    std::fs::set_permissions(home.join("data"), mode(0o700)).unwrap();
}
