//! No orphans: every process a workflow starts can be found and killed,
//! even after the daemon itself was killed (docs/daemon.md, "Crashes and
//! cleanup").
//!
//! Two ways, one always on:
//!
//! - **A marker in the environment.** Every runner starts with
//!   [`MARKER`]`=<identity>:runner-<n>` and, once it has its job, sets
//!   `<identity>:<id>` before it starts anything; every process it starts
//!   inherits it, `setsid` ones too. (What a runner forks without an exec
//!   shows the runner's first environment in `/proc`, so a workflow's end
//!   looks for both.) The identity names the daemon's data
//!   folder. Such processes are found in `/proc` (same uid,
//!   `/proc/PID/environ`), as Jenkins' ProcessTreeKiller finds a build's. A
//!   process that clears its environment escapes this.
//! - **A cgroup v2 per workflow**, where the daemon can create children of
//!   its own cgroup (and [`NO_CGROUPS`] is not set): the runner is moved in
//!   before it is handed its job, and the workflow ends with `cgroup.kill`.
//!   Nothing escapes a cgroup but by writing to another cgroup's
//!   `cgroup.procs`, which needs that cgroup's permission.
//!
//! A workflow's processes are killed when it ends; what a dead daemon's
//! workflows left is killed when the next daemon of the same data folder
//! starts, and their records say so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::log;
use crate::store::Store;
use oxiida_protocol::Paths;

/// The environment variable that marks a workflow's processes:
/// `<identity>:<id>` (`<identity>:runner-<n>` in a runner still waiting
/// for its job).
pub const MARKER: &str = "OXIIDA_WORKFLOW";
/// Set (to anything but `0` or nothing), the daemon uses no cgroups and
/// finds a workflow's processes by their marker alone.
pub const NO_CGROUPS: &str = "OXIIDA_NO_CGROUPS";

/// How long killed processes get to be gone before a cleanup reports.
const GONE_WITHIN: Duration = Duration::from_secs(5);
/// At most this many scans of `/proc` per cleanup: a process forking as fast
/// as it is killed could otherwise keep one going forever.
const MAX_SCANS: usize = 50;

/// The identity of the data folder of the daemon serving in this process
/// (an embedder may serve more than once, one after the other).
static IDENTITY: Mutex<String> = Mutex::new(String::new());

/// What a runner's environment starts with, before it knows its workflow:
/// one of its own.
pub fn runner_marker() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("{}:runner-{}", IDENTITY.lock(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The marker of workflow `id`'s processes.
pub fn marker(id: u64) -> String {
    format!("{}:{id}", IDENTITY.lock())
}

/// The identity of a data folder: a hash of its canonical path, so that the
/// next daemon of the same folder finds what this one left.
fn identity(data: &Path) -> String {
    let path = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_owned());
    // FNV-1a, 64 bits: stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.as_os_str().as_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Finds and kills the processes of this daemon's workflows.
pub struct Reaper {
    identity: String,
    /// The cgroup holding one child cgroup per running workflow, when the
    /// daemon can make them.
    cgroups: Option<PathBuf>,
    /// Cleared when moving a runner into its cgroup failed once: the
    /// markers alone are used from then on.
    usable: AtomicBool,
    /// What finds each running workflow's processes.
    placed: Mutex<HashMap<u64, Placed>>,
}

/// A running workflow's cgroup, if it has one, and its runners' first
/// markers.
#[derive(Default)]
struct Placed {
    cgroup: Option<PathBuf>,
    runners: Vec<String>,
}

impl Reaper {
    /// Works out the identity and whether cgroups can be used; logs which.
    pub fn new(paths: &Paths) -> Reaper {
        let identity = identity(&paths.data);
        IDENTITY.lock().clone_from(&identity);
        let cgroups = if std::env::var_os(NO_CGROUPS).is_some_and(|v| !v.is_empty() && v != "0") {
            log(&format!("{NO_CGROUPS} is set: workflows' processes are found by their marker ({MARKER}) alone"));
            None
        } else {
            match own_cgroup().and_then(|own| {
                let parent = own.join(format!("oxiida-{}-{identity}", oxiida_protocol::paths::uid()));
                match std::fs::create_dir(&parent) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                    _ => Ok(parent),
                }
            }) {
                Ok(parent) => {
                    log(&format!("workflows run in cgroups under {}", parent.display()));
                    Some(parent)
                }
                Err(e) => {
                    log(&format!("no cgroups for workflows ({e}): their processes are found by their marker ({MARKER}) alone"));
                    None
                }
            }
        };
        Reaper { identity, usable: AtomicBool::new(cgroups.is_some()), cgroups, placed: Mutex::new(HashMap::new()) }
    }

    /// Moves workflow `id`'s runner (`pid`, which has started nothing yet,
    /// first marked `runner`) into a cgroup of its own. Without cgroups, or
    /// if this fails (logged; no cgroups are used from then on), the
    /// markers are what find its processes.
    pub fn contain(&self, id: u64, pid: Option<u32>, runner: &str) {
        self.placed.lock().entry(id).or_default().runners.push(runner.to_owned());
        let (Some(parent), Some(pid)) = (&self.cgroups, pid) else { return };
        if !self.usable.load(Ordering::Relaxed) {
            return;
        }
        let dir = parent.join(id.to_string());
        let moved = match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => write(&dir.join("cgroup.procs"), &pid.to_string()),
        };
        match moved {
            Ok(()) => {
                self.placed.lock().entry(id).or_default().cgroup = Some(dir);
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                // A warm runner that died meanwhile: its workflow starts
                // another, and cgroups still work.
                if e.raw_os_error() == Some(libc::ESRCH) {
                    return;
                }
                if self.usable.swap(false, Ordering::Relaxed) {
                    log(&format!(
                        "cannot move a runner into the cgroup {} ({e}): from now on, workflows' processes are found by their marker alone",
                        dir.display()
                    ));
                }
            }
        }
    }

    /// Kills whatever workflow `id` left running (its runner has ended):
    /// its cgroup, removed after, or the processes carrying its marker or
    /// its runners' first ones. How many were killed.
    pub async fn end(&self, id: u64) -> usize {
        let placed = self.placed.lock().remove(&id).unwrap_or_default();
        let marker = marker(id);
        let killed = tokio::task::spawn_blocking(move || match placed.cgroup {
            Some(dir) => kill_cgroup(&dir),
            None => sweep(|m| m == marker.as_bytes() || placed.runners.iter().any(|r| m == r.as_bytes())).into_values().sum(),
        })
        .await
        .unwrap_or(0);
        if killed > 0 {
            log(&format!("workflow {id}: killed {killed} process(es) it left running when it ended"));
        }
        killed
    }

    /// At start (before any runner): kills what earlier daemons of this
    /// data folder left (their workflows' cgroups, then any process with
    /// their marker), and notes it in those workflows' records.
    pub fn clean_leftovers(&self, store: &Store) {
        let mut killed: BTreeMap<Option<u64>, usize> = BTreeMap::new();
        if let Some(parent) = &self.cgroups {
            for (id, dir) in children(parent) {
                *killed.entry(Some(id)).or_default() += kill_cgroup(&dir);
            }
        }
        let prefix = format!("{}:", self.identity);
        for (id, n) in sweep(|m| m.starts_with(prefix.as_bytes())) {
            *killed.entry(id).or_default() += n;
        }
        for (id, n) in killed {
            if n == 0 {
                continue;
            }
            let what = if n == 1 { "1 leftover process was".to_owned() } else { format!("{n} leftover processes were") };
            match id {
                Some(id) => {
                    log(&format!("workflow {id}: {what} killed (an earlier daemon died while it ran)"));
                    store.note(id, format!("{what} killed when the daemon restarted"));
                }
                None => log(&format!("{what} killed: runners an earlier daemon left, or what they forked")),
            }
        }
    }

    /// When the daemon stops: kills what its workflows still run (those that
    /// did not end within the grace), and removes its cgroups.
    pub fn end_all(&self) {
        let placed: Vec<(u64, PathBuf)> = self.placed.lock().drain().filter_map(|(id, p)| Some((id, p.cgroup?))).collect();
        for (id, dir) in placed {
            let n = kill_cgroup(&dir);
            if n > 0 {
                log(&format!("workflow {id}: killed {n} process(es) as the daemon stopped"));
            }
        }
        let prefix = format!("{}:", self.identity);
        let n: usize = sweep(|m| m.starts_with(prefix.as_bytes())).into_values().sum();
        if n > 0 {
            log(&format!("killed {n} process(es) of workflows as the daemon stopped"));
        }
        if let Some(parent) = &self.cgroups {
            for (_, dir) in children(parent) {
                kill_cgroup(&dir);
            }
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Writes `text` to an existing file (a cgroup's interface files).
fn write(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new().write(true).open(path)?.write_all(text.as_bytes())
}

/// The daemon's own cgroup v2 folder: `/proc/self/cgroup`'s `0::` line,
/// under the cgroup2 mount that `/proc/self/mountinfo` shows holding it.
fn own_cgroup() -> io::Result<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup")?;
    let own =
        cgroups.lines().find_map(|l| l.strip_prefix("0::")).ok_or_else(|| io::Error::other("this process is in no cgroup v2 hierarchy"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    for line in mounts.lines() {
        let Some((before, after)) = line.split_once(" - ") else { continue };
        if after.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = before.split(' ').collect();
        let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else { continue };
        let (root, point) = (unescape(root), unescape(point));
        let rest = if root == "/" { Some(own) } else { own.strip_prefix(root.as_str()).filter(|r| r.is_empty() || r.starts_with('/')) };
        if let Some(rest) = rest {
            return Ok(Path::new(&point).join(rest.trim_start_matches('/')));
        }
    }
    Err(io::Error::other("no cgroup2 file system holding this process is mounted"))
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| std::str::from_utf8(d).ok()).and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The workflows' cgroups under `parent`, by id.
fn children(parent: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    entries.flatten().filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path()))).collect()
}

/// Kills every process in cgroup `dir`, waits (on `cgroup.events`) until
/// it is empty, and removes it; how many processes it held.
fn kill_cgroup(dir: &Path) -> usize {
    let procs = |dir: &Path| -> Vec<i32> {
        std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
    };
    let held = procs(dir).len();
    if held > 0 {
        if let Err(e) = write(&dir.join("cgroup.kill"), "1") {
            // Before Linux 5.14: one by one, until none is left.
            if e.kind() != io::ErrorKind::NotFound {
                log(&format!("cannot write {}: {e}; killing its processes one by one", dir.join("cgroup.kill").display()));
            }
            let until = Instant::now() + GONE_WITHIN;
            while Instant::now() < until {
                let left = procs(dir);
                if left.is_empty() {
                    break;
                }
                for pid in left {
                    // SAFETY: kill with plain integers; a process in the
                    // workflow's own cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if !wait_empty(dir) {
            log(&format!("the cgroup {} still holds processes {GONE_WITHIN:?} after they were killed", dir.display()));
        }
    }
    // A process that just exited may still count for a moment.
    let until = Instant::now() + GONE_WITHIN;
    while let Err(e) = std::fs::remove_dir(dir) {
        if e.kind() == io::ErrorKind::NotFound {
            break;
        }
        if Instant::now() >= until {
            log(&format!("cannot remove the cgroup {}: {e}", dir.display()));
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    held
}

/// Waits until `cgroup.events` says `populated 0`: the kernel wakes a poll
/// on it (`POLLPRI`) whenever it changes.
fn wait_empty(dir: &Path) -> bool {
    let Ok(mut events) = std::fs::File::open(dir.join("cgroup.events")) else { return true };
    let until = Instant::now() + GONE_WITHIN;
    loop {
        let mut text = String::new();
        use std::io::Seek;
        if events.seek(io::SeekFrom::Start(0)).and_then(|_| events.read_to_string(&mut text)).is_err() {
            return true;
        }
        if text.lines().any(|l| l == "populated 0") {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd { fd: events.as_raw_fd(), events: libc::POLLPRI, revents: 0 };
        // SAFETY: one valid pollfd, for the length given.
        unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
    }
}

/// A pidfd of `pid` (Linux 5.3+): signalling through it cannot hit another
/// process that reused the pid.
fn pidfd(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// SIGKILLs the process behind `fd`.
fn kill_pidfd(fd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal on a descriptor we own, no siginfo, no flags.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0) == 0 }
}

/// The value of [`MARKER`] in process `pid`'s environment, if it has one.
fn marker_of(pid: i32) -> Option<Vec<u8>> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = format!("{MARKER}=");
    environ.split(|b| *b == 0).find_map(|var| var.strip_prefix(key.as_bytes())).map(<[u8]>::to_vec)
}

/// Kills every process of this user (but this one) whose marker `wants`,
/// scanning `/proc` again until a scan finds no new one (what they forked
/// meanwhile), then waits until the killed are gone. How many were killed,
/// by the workflow id in their marker (`None`: a runner without a job).
fn sweep(wants: impl Fn(&[u8]) -> bool) -> BTreeMap<Option<u64>, usize> {
    let me = std::process::id() as i32;
    let uid = oxiida_protocol::paths::uid();
    let mut killed: BTreeMap<i32, OwnedFd> = BTreeMap::new();
    let mut by_id: BTreeMap<Option<u64>, usize> = BTreeMap::new();
    for _ in 0..MAX_SCANS {
        let mut found = 0;
        let Ok(entries) = std::fs::read_dir("/proc") else { break };
        let pids: BTreeSet<i32> = entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
        for pid in pids {
            if pid == me || killed.contains_key(&pid) {
                continue;
            }
            if std::fs::metadata(format!("/proc/{pid}")).map_or(true, |m| m.uid() != uid) {
                continue;
            }
            if !marker_of(pid).is_some_and(|m| wants(&m)) {
                continue;
            }
            // The pidfd pins the process; reading the marker again through
            // the same pid then proves it is the one we found.
            let Ok(fd) = pidfd(pid) else { continue };
            let Some(marker) = marker_of(pid).filter(|m| wants(m)) else { continue };
            if kill_pidfd(&fd) {
                let id = marker.rsplit(|b| *b == b':').next().and_then(|s| std::str::from_utf8(s).ok()?.parse().ok());
                *by_id.entry(id).or_default() += 1;
                killed.insert(pid, fd);
                found += 1;
            }
        }
        if found == 0 {
            break;
        }
    }
    // A pidfd becomes readable when its process has exited.
    let until = Instant::now() + GONE_WITHIN;
    for fd in killed.values() {
        let _ = oxiida_protocol::client::wait_readable(fd.as_fd(), until.saturating_duration_since(Instant::now()));
    }
    by_id
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(super::unescape(r"/sys/fs/cgroup/with\040space"), "/sys/fs/cgroup/with space");
        assert_eq!(super::unescape("/plain"), "/plain");
    }

    #[test]
    fn the_identity_is_stable_and_differs_by_folder() {
        let a = super::identity(std::path::Path::new("/no/such/a"));
        assert_eq!(a, super::identity(std::path::Path::new("/no/such/a")));
        assert_ne!(a, super::identity(std::path::Path::new("/no/such/b")));
        assert_eq!(a.len(), 16);
    }
}
