//! What every daemon test uses: a guard for a test's folders and daemon,
//! and small helpers for processes.

use crate::common::{self, text};

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oxiida_protocol::{self as protocol, Reply, Request};

/// A test's folders and its daemon, stopped and reaped on drop.
pub struct Daemon {
    pub dir: PathBuf,
    /// A `--foreground` daemon this test spawned itself.
    pub child: Option<Child>,
}

impl Daemon {
    pub fn new(name: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("oxiida-daemon-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Private, as the daemon's own folders must be, whatever the umask.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        Daemon { dir, child: None }
    }

    /// A daemon serving in a child process of this test.
    pub fn foreground(name: &str, args: &[&str]) -> Daemon {
        let mut d = Daemon::new(name);
        d.start_foreground(args);
        d
    }

    pub fn start_foreground(&mut self, args: &[&str]) {
        self.start_foreground_env(args, &[]);
    }

    /// `start_foreground`, with these environment variables set for the daemon.
    pub fn start_foreground_env(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.dir.join("foreground.err")).unwrap();
        let mut cmd = self.cmd(&["daemon", "start", "--foreground"]);
        cmd.args(args).envs(env.iter().copied()).stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while !self.cmd(&["daemon", "status"]).output().unwrap().status.success() {
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "the daemon exited: {}", std::fs::read_to_string(self.dir.join("foreground.err")).unwrap());
            assert!(Instant::now() < until, "the daemon never answered");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_oxiida"));
        c.args(args)
            .env("OXIIDA_RUNTIME_DIR", self.dir.join("run"))
            .env("OXIIDA_DATA_DIR", self.dir.join("data"))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.dir.join(file), text).unwrap();
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/daemon.sock")
    }

    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("run/daemon.pid")).ok()?.trim().parse().ok()
    }

    /// Kills the daemon with SIGKILL, as a crash would, and reaps it.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Polls `workflow show ID` until its state is not `running`.
    pub fn wait_done(&self, id: &str) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let shown = text(&self.run(&["workflow", "show", id]).stdout);
            if !shown.contains("state: running") && !shown.contains("state: queued") {
                return shown;
            }
            assert!(Instant::now() < until, "workflow {id} never finished:\n{shown}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_hard();
        // One started in the background is not our child: kill it by pid.
        if let Some(pid) = self.pid().filter(|&p| p > 0) {
            // SAFETY: signalling and reaping a daemon of this test's folders.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        remove_cgroups(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills what a test's daemon left in its workflows' cgroups (the test
/// killed it with SIGKILL) and removes them: the log names their parent.
fn remove_cgroups(dir: &Path) {
    let log = std::fs::read_to_string(dir.join("data/daemon.log")).unwrap_or_default();
    let parents: std::collections::BTreeSet<&str> =
        log.lines().filter_map(|l| l.split_once("workflows run in cgroups under ")).map(|(_, p)| p).collect();
    for parent in parents {
        let children = std::fs::read_dir(parent).into_iter().flatten().flatten().filter(|e| e.path().is_dir());
        for child in children {
            let _ = std::fs::write(child.path().join("cgroup.kill"), "1");
            let until = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(child.path()).is_err() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir(parent);
    }
}

/// Orphaned daemons (started in the background) become this process's
/// children, so the guards can reap them: no zombies left behind.
pub fn reap_orphans() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: prctl with plain integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    });
}

/// The children of every thread of process `pid`.
pub fn children(pid: u32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .flat_map(|t| {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            children.split_whitespace().map(|p| p.parse().unwrap()).collect::<Vec<i32>>()
        })
        .collect()
}

pub fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, s)| !s.starts_with('Z'))
}

pub fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// A second Unix user for the squatting test: its uid and gid, created
/// if missing. `None` (and a note) where this test cannot be root.
pub fn squatter() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("note: not root, so the test with a second user is skipped");
        return None;
    }
    let id = |flag: &str| Command::new("id").args([flag, "oxiida-squatter"]).output().ok().filter(|o| o.status.success());
    if id("-u").is_none() {
        let made =
            Command::new("useradd").args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "oxiida-squatter"]).status();
        if !made.is_ok_and(|s| s.success()) && id("-u").is_none() {
            eprintln!("note: useradd is missing or failed, so the test with a second user is skipped");
            return None;
        }
    }
    let num = |flag: &str| text(&id(flag).unwrap().stdout).trim().parse().unwrap();
    Some((num("-u"), num("-g")))
}

/// Python, as the squatter: a program outside root's home.
pub fn python_as(uid: u32, gid: u32, code: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let mut c = Command::new(python);
    c.args(["-c", code]).uid(uid).gid(gid).current_dir("/").stdin(Stdio::null());
    c
}

pub fn example_plugin() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-daemon-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("liboxiida_example.so");
        let src = common::root().join("plugins/c/example.c");
        common::cc(&["-shared".as_ref(), "-fPIC".as_ref(), src.as_os_str(), "-o".as_ref(), out.as_os_str(), "-lpthread".as_ref()]);
        out
    })
}

/// One raw frame to the socket, and the reply's bytes (empty if none).
pub fn exchange(socket: &Path, bytes: &[u8], close_write: bool) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(bytes).unwrap();
    if close_write {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

pub fn hello() -> Vec<u8> {
    protocol::encode(&Request::Hello { protocol: protocol::PROTOCOL_VERSION, client: "test".into() })
}

pub fn replies(mut bytes: &[u8]) -> Vec<Reply> {
    let mut all = Vec::new();
    while let Some(body) = protocol::read_frame(&mut bytes).unwrap() {
        all.push(protocol::decode_reply(&body).unwrap());
    }
    all
}

pub fn error_kind(reply: &Reply) -> protocol::ErrorKind {
    match reply {
        Reply::Error { kind, .. } => *kind,
        other => panic!("not an error: {other:?}"),
    }
}
