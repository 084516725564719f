//! Process plugins: a plugin that is a program, not a library. It speaks the
//! process plugin protocol (docs/plugins.md, "Process plugins") over its
//! standard input and output: length-prefixed frames (`oxiida_abi::frame`),
//! each one MessagePack map with a `type`, and values in the ABI's
//! MessagePack form (`oxiida_abi::Value`). Its standard error passes through
//! to ours, each line prefixed with its name.
//!
//! One [`Session`] is one process, started for one workflow. A call alone
//! in flight reads its own reply (for up to the lead time); otherwise a
//! reader thread takes the plugin's frames and hands each reply to the call
//! waiting for it (by request id). When the plugin's output ends, every call
//! still waiting fails with the plugin's exit status. Dropping the session says `bye`,
//! then escalates to SIGTERM and SIGKILL (to the plugin's process group)
//! after a grace period each, and reaps the process: no zombie is left.
//! A host that dies without dropping its sessions (SIGKILL) takes its
//! plugins with it (`crate::spawn`).

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oxiida::foreign::{CallMode, ForeignError, ForeignErrorKind};
use oxiida_abi::{self as abi, frame};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Semaphore};

/// The protocol this host speaks: a plugin of another major version is
/// refused; a newer minor version only adds what may be ignored.
pub const PROTOCOL_MAJOR: u64 = 1;
pub const PROTOCOL_MINOR: u64 = 0;

/// The largest frame a plugin may send (a reply's value included).
const MAX_FRAME: usize = 1 << 30;
/// How long a plugin has to say hello after it starts.
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);
/// With leading off: how long a call alone in its session spins for its
/// answer before parking its thread (see `Session::call`).
const SPIN: Duration = Duration::from_micros(50);
/// How long a leading call looks for its reply without sleeping (yielding
/// its core between looks) before it sleeps in poll(2): a reply that comes
/// within it costs no wake-up of the host at all.
const LEAD_SPIN: Duration = Duration::from_micros(30);
/// How often the reader thread looks whether the plugin has exited when
/// its output stays open (a child of the plugin may hold it).
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// How long a call alone in its session reads its own reply before handing
/// the reading back to the reader thread: `OXIIDA_PROCESS_LEAD_US`
/// (microseconds; 0: never, the reader thread reads every reply), default
/// 1 ms. See `Session::call`.
fn lead_time() -> Duration {
    static LEAD: OnceLock<Duration> = OnceLock::new();
    *LEAD.get_or_init(|| {
        let us = std::env::var("OXIIDA_PROCESS_LEAD_US").ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(1000);
        Duration::from_micros(us)
    })
}
/// How long a plugin has to exit after `bye`, then after SIGTERM.
pub const GRACE: Duration = Duration::from_secs(1);

/// How to start a process plugin: a program and its arguments.
#[derive(Clone, Debug)]
pub struct Program {
    /// The program: a path, or a name looked up on PATH when started.
    pub command: PathBuf,
    pub args: Vec<String>,
    /// The plugin's name when a manifest fixes it (the manifest's file
    /// name); `None`: the name the plugin gives in its hello.
    pub name: Option<String>,
    pub language: Option<String>,
    pub description: Option<String>,
}

/// The file name a plugin manifest ends with.
pub const MANIFEST_SUFFIX: &str = ".oxiida-plugin.toml";

impl Program {
    /// `exec:PROGRAM`'s program, found on PATH when it has no `/`.
    pub fn exec(program: &str) -> Result<Program, String> {
        if program.is_empty() {
            return Err("`exec:` needs a program: `exec:PROGRAM[=ARGUMENTS]`, e.g. `exec:node=tools.js`".into());
        }
        let command = if program.contains('/') {
            let path = PathBuf::from(program);
            if !path.is_file() {
                return Err(format!("cannot start process plugin {program}: no such file"));
            }
            std::path::absolute(&path).unwrap_or(path)
        } else {
            on_path(program).ok_or_else(|| format!("cannot start process plugin `{program}`: no such program on PATH"))?
        };
        Ok(Program { command, args: Vec::new(), name: None, language: None, description: None })
    }

    /// Reads a manifest `NAME.oxiida-plugin.toml`: `command` (required; a
    /// name on PATH, or a path relative to the manifest's folder), `args`,
    /// `language`, `description`. Arguments that start with `./` or `../`
    /// are relative to the manifest's folder too.
    pub fn manifest(path: &Path) -> Result<Program, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read plugin manifest {shown}: {e}"))?;
        let doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("plugin manifest {shown} is not valid TOML: {e}"))?;
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default();
        let name = file
            .strip_suffix(MANIFEST_SUFFIX)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("plugin manifest {shown} must be named NAME{MANIFEST_SUFFIX}, the NAME being the plugin's name"))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let text_of = |key: &str| -> Result<Option<String>, String> {
            match doc.get(key) {
                None => Ok(None),
                Some(item) => {
                    item.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| format!("in plugin manifest {shown}: `{key}` must be a string"))
                }
            }
        };
        for (key, _) in doc.iter() {
            if !["command", "args", "language", "description"].contains(&key) {
                return Err(format!(
                    "in plugin manifest {shown}: unknown key `{key}` (a manifest has command, args, language and description)"
                ));
            }
        }
        let command = text_of("command")?.ok_or_else(|| format!("plugin manifest {shown} has no `command` (the program to start)"))?;
        let relative = |s: &str| if s.starts_with("./") || s.starts_with("../") { dir.join(s).display().to_string() } else { s.to_owned() };
        let command = if command.contains('/') {
            PathBuf::from(relative(&command))
        } else {
            on_path(&command).ok_or_else(|| format!("plugin manifest {shown}: no program `{command}` on PATH"))?
        };
        let args = match doc.get("args") {
            None => Vec::new(),
            Some(item) => {
                let bad = || format!("in plugin manifest {shown}: `args` must be an array of strings");
                let array = item.as_array().ok_or_else(bad)?;
                array.iter().map(|v| v.as_str().map(relative).ok_or_else(bad)).collect::<Result<_, _>>()?
            }
        };
        Ok(Program { command, args, name: Some(name.to_owned()), language: text_of("language")?, description: text_of("description")? })
    }

    /// What this program is called before it says its name.
    fn label(&self) -> String {
        self.name.clone().or_else(|| self.command.file_name().map(|f| f.to_string_lossy().into_owned())).unwrap_or_else(|| "process".into())
    }
}

/// `name` on PATH, as an absolute path.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).map(|p| std::path::absolute(&p).unwrap_or(p))
}

/// What a plugin says about itself in its hello.
#[derive(Clone, Debug)]
pub struct Hello {
    pub protocol: (u64, u64),
    pub name: String,
    pub version: String,
    /// The functions it provides; `None`: ask it with `resolve` requests.
    pub functions: Option<Vec<String>>,
    /// It takes calls that overlap (each answered by request id).
    pub concurrent: bool,
    /// It can run a call in an isolated worker (`=f=(x)`, mode `process`).
    pub isolated: bool,
    /// It takes keyword arguments.
    pub keywords: bool,
}

type Answer = Result<abi::Value, ForeignError>;

enum Waiter {
    Async(oneshot::Sender<Answer>),
    Blocking(mpsc::Sender<Answer>),
}

impl Waiter {
    fn send(self, answer: Answer) {
        // A waiter that gave up (its call was cancelled) no longer listens.
        match self {
            Waiter::Async(tx) => drop(tx.send(answer)),
            Waiter::Blocking(tx) => drop(tx.send(answer)),
        }
    }
}

#[derive(Default)]
struct State {
    waiters: HashMap<u64, Waiter>,
    next: u64,
    /// How the process ended ("exited with status 3"), once its output did.
    ended: Option<String>,
    /// A calling thread reads the plugin's output (it leads; `Session::call`).
    leading: bool,
    /// The reader thread reads it. Never both: whoever reads holds `inbox`.
    reading: bool,
}

struct Shared {
    /// The plugin's name, for messages and its standard error's prefix.
    name: Mutex<String>,
    stdin: Mutex<Option<ChildStdin>>,
    state: Mutex<State>,
    child: Mutex<Child>,
    /// The plugin's process group (its own pid: it leads a group of its own).
    pgid: i32,
    /// The plugin's output, read by the reader thread or a leading call.
    inbox: Mutex<Inbox>,
    /// Until the plugin's hello arrives: where it goes.
    hello: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    /// A byte written here wakes the reader thread (read end: `wake_rx`).
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    /// `lead_time()`, fixed for the session.
    lead: Duration,
}

impl Shared {
    fn name(&self) -> String {
        self.name.lock().clone()
    }

    /// Sends one frame. A plugin that has exited cannot take it: that is an
    /// error here, never a SIGPIPE for the host.
    fn send(&self, body: &[u8]) -> io::Result<()> {
        let mut stdin = self.stdin.lock();
        let writer = stdin.as_mut().ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "its input is closed"))?;
        let bytes = frame::encode(body);
        without_sigpipe(|| writer.write_all(&bytes).and_then(|()| writer.flush()))
    }

    /// A new request id with its waiter, or why no call can start.
    fn register(&self, waiter: Waiter) -> Result<u64, ForeignError> {
        let mut state = self.state.lock();
        if let Some(ended) = &state.ended {
            return Err(crashed(&self.name(), ended, "before the call"));
        }
        state.next += 1;
        let id = state.next;
        state.waiters.insert(id, waiter);
        Ok(id)
    }

    /// Wakes the reader thread to look at the state again.
    fn wake_reader(&self) {
        // Non-blocking: when the socket's buffer is full, a wake is pending anyway.
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// Whether the reader thread should read now: the hello is still to
    /// come, or calls wait that no call leads (or leading is off).
    fn reader_reads(&self, state: &State) -> bool {
        !state.leading && (self.hello.lock().is_some() || !state.waiters.is_empty() || self.lead.is_zero())
    }

    /// Takes the reading for a call alone in its session, if no one reads
    /// and no other process plugin call is in flight in this process (one
    /// to another plugin, in the same `para`, must not wait for this one).
    fn try_lead(&self) -> Option<parking_lot::MutexGuard<'_, Inbox>> {
        {
            let mut state = self.state.lock();
            if self.lead.is_zero()
                || state.leading
                || state.reading
                || state.ended.is_some()
                || state.waiters.len() != 1
                || IN_FLIGHT.load(Ordering::Relaxed) != 1
            {
                return None;
            }
            state.leading = true;
        }
        let inbox = self.inbox.try_lock();
        if inbox.is_none() {
            self.stop_leading();
        }
        inbox
    }

    /// Gives the reading back: the reader thread takes it if calls wait.
    fn stop_leading(&self) {
        let wake = {
            let mut state = self.state.lock();
            state.leading = false;
            state.ended.is_none() && !state.waiters.is_empty()
        };
        if wake {
            self.wake_reader();
        }
    }

    fn ended_error(&self, when: &str) -> ForeignError {
        let ended = self.state.lock().ended.clone().unwrap_or_else(|| "stopped answering".into());
        crashed(&self.name(), &ended, when)
    }

    /// Whether the process has exited, reaping it if so.
    fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().try_wait().ok().flatten()
    }

    /// Waits up to `limit` for the process to exit.
    fn exits_within(&self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` to the plugin's process group, while its leader has
    /// not been reaped (so the group id is still its own).
    fn signal_group(&self, signal: i32) {
        let mut child = self.child.lock();
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) with a negative pid signals that process group;
            // it touches no memory. The group is the plugin's own
            // (process_group(0) at spawn), and its leader is running and
            // cannot be reaped while `child` is locked, so the id is its own.
            unsafe { libc::kill(-self.pgid, signal) };
        }
    }

    /// Ends the process: `bye`, then SIGTERM, then SIGKILL, a grace period
    /// apart, and reaps it.
    fn shut_down(&self) {
        let _ = self.send(&message("bye", |_| {}));
        drop(self.stdin.lock().take());
        if self.exits_within(GRACE).is_some() {
            return;
        }
        self.signal_group(libc::SIGTERM);
        if self.exits_within(GRACE).is_some() {
            return;
        }
        self.signal_group(libc::SIGKILL);
        let _ = self.child.lock().wait();
    }
}

/// A failed call's error when the plugin's process ended.
fn crashed(name: &str, ended: &str, when: &str) -> ForeignError {
    ForeignError::new(ForeignErrorKind::WorkerCrashed, format!("process plugin `{name}` {ended} {when}"))
}

/// How a process ended, in words.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(signal) => {
            let name = match signal {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGINT => " (SIGINT)",
                libc::SIGBUS => " (SIGBUS)",
                libc::SIGPIPE => " (SIGPIPE)",
                _ => "",
            };
            format!("was killed by signal {signal}{name}")
        }
        None => format!("ended ({status})"),
    }
}

/// Runs `write` with SIGPIPE held off this thread, so that writing to a
/// plugin that exited returns EPIPE instead of killing the host. A program
/// that ignores SIGPIPE already (every Rust binary) skips the masking.
fn without_sigpipe<T>(write: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    static IGNORED: OnceLock<bool> = OnceLock::new();
    let ignored = *IGNORED.get_or_init(|| {
        // SAFETY: sigaction with a NULL new action only reads the current
        // disposition into `old`, a valid, zeroed struct.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
        }
    });
    if ignored {
        return write();
    }
    // SAFETY: signal sets are plain structs filled by sigemptyset and
    // sigaddset; pthread_sigmask changes this thread's mask only, and the
    // old mask is restored below. sigtimedwait with a zero timeout takes a
    // pending SIGPIPE (raised by our own write) without waiting.
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut pending);
        let was_pending = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
        let result = write();
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::BrokenPipe) && !was_pending {
            let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

/// One message: a map with `type` first, then what `fields` writes (`n`
/// more entries, counted by the closure's return).
fn message(kind: &str, fields: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Vec<u8> {
    let mut entries = Vec::new();
    fields(&mut entries);
    let mut out = Vec::new();
    rmp::encode::write_map_len(&mut out, entries.len() as u32 + 1).expect("Vec write");
    rmp::encode::write_str(&mut out, "type").expect("Vec write");
    rmp::encode::write_str(&mut out, kind).expect("Vec write");
    for (key, value) in entries {
        rmp::encode::write_str(&mut out, &key).expect("Vec write");
        out.extend_from_slice(&value);
    }
    out
}

fn packed(v: &abi::Value) -> Vec<u8> {
    v.to_msgpack()
}

/// The host's hello: its protocol version and the session's config.
fn host_hello(config: &str) -> Vec<u8> {
    message("hello", |f| {
        let version = abi::Value::Array(vec![abi::Value::Int(PROTOCOL_MAJOR as i64), abi::Value::Int(PROTOCOL_MINOR as i64)]);
        f.push(("protocol".into(), packed(&version)));
        f.push(("host".into(), packed(&abi::Value::Str(format!("oxiida {}", env!("CARGO_PKG_VERSION"))))));
        f.push(("config".into(), packed(&abi::Value::Str(config.to_owned()))));
    })
}

/// The end of the MessagePack object that starts at `at`.
fn skip(bytes: &[u8], at: usize) -> Result<usize, String> {
    let truncated = || "a truncated message".to_string();
    let byte = |i: usize| bytes.get(i).copied().ok_or_else(truncated);
    let be = |i: usize, n: usize| -> Result<usize, String> {
        let s = bytes.get(i..i + n).ok_or_else(truncated)?;
        Ok(s.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize))
    };
    let m = byte(at)?;
    let mut items = 0usize;
    let mut end = match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => at + 1,
        0x80..=0x8f => {
            items = 2 * (m & 0x0f) as usize;
            at + 1
        }
        0x90..=0x9f => {
            items = (m & 0x0f) as usize;
            at + 1
        }
        0xa0..=0xbf => at + 1 + (m & 0x1f) as usize,
        0xcc | 0xd0 => at + 2,
        0xcd | 0xd1 => at + 3,
        0xca | 0xce | 0xd2 => at + 5,
        0xcb | 0xcf | 0xd3 => at + 9,
        0xd4 => at + 3,
        0xd5 => at + 4,
        0xd6 => at + 6,
        0xd7 => at + 10,
        0xd8 => at + 18,
        0xc4 | 0xd9 => at + 2 + be(at + 1, 1)?,
        0xc5 | 0xda => at + 3 + be(at + 1, 2)?,
        0xc6 | 0xdb => at + 5 + be(at + 1, 4)?,
        0xc7 => at + 3 + be(at + 1, 1)?,
        0xc8 => at + 4 + be(at + 1, 2)?,
        0xc9 => at + 6 + be(at + 1, 4)?,
        0xdc => {
            items = be(at + 1, 2)?;
            at + 3
        }
        0xdd => {
            items = be(at + 1, 4)?;
            at + 5
        }
        0xde => {
            items = 2 * be(at + 1, 2)?;
            at + 3
        }
        0xdf => {
            items = 2 * be(at + 1, 4)?;
            at + 5
        }
        0xc1 => return Err("the reserved MessagePack byte 0xc1".into()),
    };
    for _ in 0..items {
        end = skip(bytes, end)?;
    }
    if end > bytes.len() {
        return Err(truncated());
    }
    Ok(end)
}

/// A message's entries: each key with its value's bytes, undecoded.
fn entries(body: &[u8]) -> Result<Vec<(String, &[u8])>, String> {
    let not_map = || "a message that is not a MessagePack map".to_string();
    let (n, mut at) = match *body.first().ok_or_else(not_map)? {
        m @ 0x80..=0x8f => ((m & 0x0f) as usize, 1),
        0xde => (u16::from_be_bytes(body.get(1..3).ok_or_else(not_map)?.try_into().expect("2 bytes")) as usize, 3),
        0xdf => (u32::from_be_bytes(body.get(1..5).ok_or_else(not_map)?.try_into().expect("4 bytes")) as usize, 5),
        _ => return Err(not_map()),
    };
    let mut out = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        let key_end = skip(body, at)?;
        let abi::Value::Str(key) = abi::Value::decode(&body[at..key_end]).map_err(|e| e.to_string())? else {
            return Err("a message key that is not a string".into());
        };
        let end = skip(body, key_end)?;
        out.push((key, &body[key_end..end]));
        at = end;
    }
    if at != body.len() {
        return Err(format!("{} bytes after the message", body.len() - at));
    }
    Ok(out)
}

fn field<'a>(entries: &'a [(String, &'a [u8])], key: &str) -> Option<&'a [u8]> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn decoded(entries: &[(String, &[u8])], key: &str) -> Result<Option<abi::Value>, String> {
    match field(entries, key) {
        None => Ok(None),
        Some(bytes) => abi::Value::decode(bytes).map(Some).map_err(|e| format!("`{key}`: {e}")),
    }
}

fn text_field(entries: &[(String, &[u8])], key: &str) -> Result<Option<String>, String> {
    match decoded(entries, key)? {
        None | Some(abi::Value::Nil) => Ok(None),
        Some(abi::Value::Str(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{key}` is not a string")),
    }
}

fn id_field(entries: &[(String, &[u8])]) -> Result<u64, String> {
    match decoded(entries, "id")? {
        Some(abi::Value::Int(id)) if id >= 0 => Ok(id as u64),
        _ => Err("a reply without a request `id`".into()),
    }
}

fn parse_hello(body: &[u8]) -> Result<Hello, String> {
    let entries = entries(body)?;
    match text_field(&entries, "type")?.as_deref() {
        Some("hello") => {}
        Some(other) => return Err(format!("its first message is a `{other}`, not a `hello`")),
        None => return Err("its first message has no `type`".into()),
    }
    let protocol = match decoded(&entries, "protocol")? {
        Some(abi::Value::Array(v)) => match v[..] {
            [abi::Value::Int(major), abi::Value::Int(minor)] if major >= 0 && minor >= 0 => (major as u64, minor as u64),
            _ => return Err("its hello's `protocol` is not [MAJOR, MINOR]".into()),
        },
        _ => return Err("its hello has no `protocol` version ([MAJOR, MINOR])".into()),
    };
    let name = text_field(&entries, "name")?.filter(|n| !n.is_empty()).ok_or("its hello has no `name`")?;
    let version = text_field(&entries, "version")?.unwrap_or_default();
    let functions = match decoded(&entries, "functions")? {
        None | Some(abi::Value::Nil) => None,
        Some(abi::Value::Array(items)) => Some(
            items
                .into_iter()
                .map(|v| if let abi::Value::Str(s) = v { Ok(s) } else { Err("its hello's `functions` holds a non-string".to_string()) })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err("its hello's `functions` is not an array of names".into()),
    };
    let mut hello = Hello { protocol, name, version, functions, concurrent: false, isolated: false, keywords: false };
    match decoded(&entries, "capabilities")? {
        None | Some(abi::Value::Nil) => {}
        Some(abi::Value::Map(caps)) => {
            for (cap, on) in caps {
                let on = matches!(on, abi::Value::Bool(true));
                match cap.as_str() {
                    "concurrent" => hello.concurrent = on,
                    "isolated" => hello.isolated = on,
                    "keywords" => hello.keywords = on,
                    _ => {} // a later minor version's: ignored
                }
            }
        }
        Some(_) => return Err("its hello's `capabilities` is not a map".into()),
    }
    Ok(hello)
}

fn error_kind(kind: Option<&str>) -> ForeignErrorKind {
    match kind {
        Some("not_found") => ForeignErrorKind::NotFound,
        Some("bad_arguments") => ForeignErrorKind::BadArguments,
        Some("internal") => ForeignErrorKind::Internal,
        Some("worker_crashed") => ForeignErrorKind::WorkerCrashed,
        _ => ForeignErrorKind::Raised,
    }
}

/// One reply from the plugin: its request id and the answer.
fn parse_reply(name: &str, body: &[u8]) -> Result<Option<(u64, Answer)>, String> {
    let entries = entries(body)?;
    match text_field(&entries, "type")?.as_deref() {
        Some("result") => {
            let id = id_field(&entries)?;
            let answer = match field(&entries, "value") {
                None => Ok(abi::Value::Nil),
                Some(bytes) => abi::Value::decode(bytes).map_err(|e| {
                    ForeignError::new(ForeignErrorKind::Internal, format!("process plugin `{name}` returned a bad value: {e}"))
                }),
            };
            Ok(Some((id, answer)))
        }
        Some("error") => {
            let id = id_field(&entries)?;
            let kind = error_kind(text_field(&entries, "kind")?.as_deref());
            let message = text_field(&entries, "message")?.unwrap_or_else(|| "it gave no message".into());
            let mut error = ForeignError::new(kind, message);
            if let Some(tb) = text_field(&entries, "traceback")?.filter(|t| !t.is_empty()) {
                error = error.with_traceback(tb);
            }
            Ok(Some((id, Err(error))))
        }
        // A later minor version's message: ignored.
        Some(_) => Ok(None),
        None => Err("a message with no `type`".into()),
    }
}

/// One running process plugin: one workflow's session.
pub struct Session {
    shared: Arc<Shared>,
    hello: Hello,
    /// Held by each call when the plugin takes one at a time.
    gate: Option<Arc<Semaphore>>,
    reader: Option<JoinHandle<()>>,
    /// Disconnected when the plugin's standard error has been copied out.
    stderr_ended: Mutex<mpsc::Receiver<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("process::Session").field("hello", &self.hello).finish_non_exhaustive()
    }
}

impl Session {
    /// Starts `program` with `config`'s words as extra arguments, says
    /// hello and reads the plugin's; refuses a plugin of another protocol
    /// major version, with both versions in the message.
    pub fn start(program: &Program, config: &str) -> Result<Session, String> {
        let label = program.label();
        let mut command = Command::new(&program.command);
        command
            .args(&program.args)
            .args(config.split_whitespace())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("OXIIDA_PLUGIN_PROTOCOL", format!("{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}"))
            // A group of its own: Ctrl-C reaches the host, which cancels
            // calls in order, and SIGTERM/SIGKILL reach what the plugin started.
            .process_group(0);
        // Tied to the host: SIGKILLed when it dies, even if the plugin
        // ignores its input closing and SIGTERM.
        let mut child =
            crate::spawn::spawn_tied(command).map_err(|e| format!("cannot start process plugin `{}`: {e}", program.command.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let pgid = child.id() as i32;
        let cannot = |e: io::Error| format!("cannot start process plugin `{label}`: {e}");
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(cannot)?;
        wake_tx.set_nonblocking(true).map_err(cannot)?;
        wake_rx.set_nonblocking(true).map_err(cannot)?;
        let (hello_tx, hello_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            name: Mutex::new(label.clone()),
            stdin: Mutex::new(Some(stdin)),
            state: Mutex::new(State::default()),
            child: Mutex::new(child),
            pgid,
            inbox: Mutex::new(Inbox { out: stdout, buf: Vec::new(), start: 0, end: 0 }),
            hello: Mutex::new(Some(hello_tx)),
            wake_tx,
            wake_rx,
            lead: lead_time(),
        });
        let (stderr_done, stderr_ended) = mpsc::channel::<()>();
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("{label} stderr"))
                .spawn(move || {
                    pass_through(stderr, &shared);
                    drop(stderr_done);
                })
                .map_err(|e| format!("cannot start process plugin `{label}`: {e}"))?;
        }
        let reader = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("{label} replies"))
                .spawn(move || read_replies(&shared))
                .map_err(|e| format!("cannot start process plugin `{label}`: {e}"))?
        };
        let mut session = Session {
            shared,
            hello: Hello {
                protocol: (0, 0),
                name: label.clone(),
                version: String::new(),
                functions: Some(Vec::new()),
                concurrent: false,
                isolated: false,
                keywords: false,
            },
            gate: None,
            reader: Some(reader),
            stderr_ended: Mutex::new(stderr_ended),
        };
        let _ = session.shared.send(&host_hello(config));
        let body = match hello_rx.recv_timeout(HELLO_TIMEOUT) {
            Ok(body) => body,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "process plugin `{label}` ({}) said no hello within {} s; is it an oxiida process plugin?",
                    program.command.display(),
                    HELLO_TIMEOUT.as_secs()
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let ended = session.shared.state.lock().ended.clone().unwrap_or_else(|| "stopped".into());
                return Err(format!("process plugin `{label}` ({}) {ended} before saying hello", program.command.display()));
            }
        };
        let hello = parse_hello(&body).map_err(|e| {
            format!("process plugin `{label}` ({}) does not speak the oxiida process plugin protocol: {e}", program.command.display())
        })?;
        if hello.protocol.0 != PROTOCOL_MAJOR {
            let (newer, what) = if hello.protocol.0 > PROTOCOL_MAJOR {
                ("newer", "upgrade oxiida, or use a version of the plugin")
            } else {
                ("older", "upgrade the plugin, or use a version of it")
            };
            return Err(format!(
                "process plugin `{}` speaks protocol version {}.{}, {newer} than this oxiida's {PROTOCOL_MAJOR}.{PROTOCOL_MINOR} \
                 (the major versions must match): {what} that speaks protocol {PROTOCOL_MAJOR}",
                hello.name, hello.protocol.0, hello.protocol.1
            ));
        }
        let name = program.name.clone().unwrap_or_else(|| hello.name.clone());
        *session.shared.name.lock() = name.clone();
        session.gate = (!hello.concurrent).then(|| Arc::new(Semaphore::new(1)));
        session.hello = Hello { name, ..hello };
        Ok(session)
    }

    /// The plugin's hello (its `name` replaced by the manifest's, if any).
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    pub fn name(&self) -> &str {
        &self.hello.name
    }

    /// The plugin's process id, which a task record names as who ran a call.
    pub fn pid(&self) -> u32 {
        self.shared.pgid as u32
    }

    /// Whether the plugin provides `dotted`: from its hello's list, or by
    /// asking it.
    pub fn resolve(&self, dotted: &str) -> Result<(), String> {
        let name = &self.hello.name;
        if let Some(functions) = &self.hello.functions {
            if functions.iter().any(|f| f == dotted) {
                return Ok(());
            }
            let listed = if functions.is_empty() { "none".into() } else { functions.join(", ") };
            return Err(format!("process plugin `{name}` does not provide it (it provides: {listed})"));
        }
        let (tx, rx) = mpsc::channel();
        let id = self.shared.register(Waiter::Blocking(tx)).map_err(|e| e.message)?;
        let body = message("resolve", |f| {
            f.push(("id".into(), packed(&abi::Value::Int(id as i64))));
            f.push(("name".into(), packed(&abi::Value::Str(dotted.to_owned()))));
        });
        if let Err(e) = self.shared.send(&body) {
            self.shared.state.lock().waiters.remove(&id);
            return Err(format!("cannot ask process plugin `{name}` for `{dotted}`: {e}"));
        }
        self.shared.wake_reader();
        match rx.recv() {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.message),
            Err(_) => Err(self.shared.ended_error("while asking for it").message),
        }
    }

    /// Sends one call and waits for its reply. `args` is one MessagePack
    /// array, `kwargs` one map. Dropping the future before the reply sends
    /// `cancel` for the request.
    pub fn call(
        &self,
        name: &str,
        args: Vec<u8>,
        kwargs: Option<Vec<u8>>,
        mode: CallMode,
    ) -> impl Future<Output = Result<abi::Value, ForeignError>> + Send + 'static {
        let shared = self.shared.clone();
        let gate = self.gate.clone();
        let function = name.to_owned();
        async move {
            let _turn = match gate {
                Some(gate) => Some(gate.acquire_owned().await.expect("the gate is never closed")),
                None => None,
            };
            let (tx, rx) = oneshot::channel();
            let id = shared.register(Waiter::Async(tx))?;
            let _counted = InFlight::new();
            let mut pending = Pending { shared: &shared, id: Some(id) };
            let body = message("call", |f| {
                f.push(("id".into(), packed(&abi::Value::Int(id as i64))));
                f.push(("name".into(), packed(&abi::Value::Str(function.clone()))));
                f.push(("args".into(), args));
                if let Some(kwargs) = kwargs {
                    f.push(("kwargs".into(), kwargs));
                }
                let mode = if mode == CallMode::Process { "process" } else { "thread" };
                f.push(("mode".into(), packed(&abi::Value::Str(mode.into()))));
            });
            if let Err(e) = shared.send(&body) {
                pending.id = None;
                shared.state.lock().waiters.remove(&id);
                if shared.exits_within(Duration::from_millis(200)).is_some() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Err(match shared.state.lock().ended.clone() {
                    Some(ended) => crashed(&shared.name(), &ended, "before the call"),
                    None => ForeignError::new(
                        ForeignErrorKind::WorkerCrashed,
                        format!("cannot send the call to process plugin `{}`: {e}", shared.name()),
                    ),
                });
            }
            // A call alone in its session is usually answered within tens of
            // microseconds. Its thread reads the reply itself (it leads),
            // blocked in poll(2) on the pipe, for up to the lead time: the
            // kernel wakes it when the reply lands, one wake-up instead of
            // two (the reader thread's, then its hand-off to this one). A
            // longer call gives the reading back and awaits its reply as
            // overlapping calls do, so it can be cancelled by dropping it.
            let mut rx = rx;
            if let Some(mut inbox) = shared.try_lead() {
                let started = Instant::now();
                let (until, spin_until) = (started + shared.lead, started + LEAD_SPIN.min(shared.lead));
                let answer = loop {
                    if let Ok(answer) = rx.try_recv() {
                        break Some(answer);
                    }
                    let now = Instant::now();
                    let left = until.saturating_duration_since(now);
                    if left.is_zero() {
                        break None;
                    }
                    // First a look without sleeping, giving the core away
                    // between looks; then asleep in poll(2).
                    let wait = if now < spin_until {
                        std::thread::yield_now();
                        Duration::ZERO
                    } else {
                        left
                    };
                    if let Pumped::Ended = inbox.pump(&shared, None, wait) {
                        break rx.try_recv().ok();
                    }
                };
                drop(inbox);
                shared.stop_leading();
                if let Some(answer) = answer {
                    pending.id = None;
                    return answer;
                }
            } else if shared.lead.is_zero() && shared.state.lock().waiters.len() == 1 {
                // Leading off: spin briefly instead of parking at once.
                let until = Instant::now() + SPIN;
                loop {
                    match rx.try_recv() {
                        Ok(answer) => {
                            pending.id = None;
                            return answer;
                        }
                        Err(oneshot::error::TryRecvError::Empty) if Instant::now() < until => std::thread::yield_now(),
                        Err(_) => break,
                    }
                }
            } else {
                // The reader thread may be idle: it reads now.
                shared.wake_reader();
            }
            let answer = rx.await;
            pending.id = None;
            answer.unwrap_or_else(|_| Err(shared.ended_error("during the call")))
        }
    }
}

impl Session {
    /// Gives back one reference to the plugin's handle `id` (a `release`
    /// message); a plugin that has exited has nothing to give back.
    pub fn release(&self, id: u64) {
        let _ = self.shared.send(&message("release", |f| f.push(("id".into(), packed(&abi::Value::Int(id as i64))))));
    }
}

/// Process plugin calls in flight in this process, all sessions together.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One call counted in [`IN_FLIGHT`] while it lives.
struct InFlight;

impl InFlight {
    fn new() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A call sent and not answered: dropped early, it sends `cancel`.
struct Pending<'a> {
    shared: &'a Shared,
    id: Option<u64>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if self.shared.state.lock().waiters.remove(&id).is_some() {
                let _ = self.shared.send(&message("cancel", |f| f.push(("id".into(), packed(&abi::Value::Int(id as i64))))));
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.shut_down();
        // An idle reader thread looks at once whether the plugin has exited.
        self.shared.wake_reader();
        // The last reference may go on the reader thread itself (a reply's
        // waker held the future that held the session): it cannot join itself.
        if let Some(reader) = self.reader.take().filter(|r| r.thread().id() != std::thread::current().id()) {
            let _ = reader.join();
        }
        // What the plugin wrote to stderr last is shown before the session
        // ends (and `oxiida run` exits), unless a child of the plugin keeps
        // its stderr open.
        let _ = self.stderr_ended.lock().recv_timeout(GRACE);
    }
}

/// Copies the plugin's standard error to ours, a line at a time, each
/// prefixed with its name.
fn pass_through(stderr: impl Read, shared: &Shared) {
    let mut lines = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.strip_suffix('\n').unwrap_or(&text);
                eprintln!("[{}] {text}", shared.name());
            }
        }
    }
}

/// The plugin's output as read so far: whole frames are taken from the
/// front, a partial one waits for the rest. Whoever reads (the reader
/// thread or a leading call) holds it.
struct Inbox {
    out: ChildStdout,
    /// Storage, zeroed once when it grows, never again: `start..end` is
    /// what has been read and not yet taken.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// What one look at the plugin's output found.
enum Pumped {
    /// Frames (or part of one) were read and handed out.
    Read,
    /// Nothing within the time (or the reader thread was woken).
    Quiet,
    /// The output ended: every waiting call has failed (`end`).
    Ended,
}

impl Inbox {
    /// The next whole frame read, if any.
    fn frame(&mut self) -> Result<Option<Vec<u8>>, String> {
        let unread = &self.buf[self.start..self.end];
        let Some(header) = unread.get(..frame::HEADER_LEN) else { return Ok(None) };
        let len = frame::body_len(header.try_into().expect("4 bytes"), MAX_FRAME).map_err(|e| e.to_string())?;
        let Some(body) = unread.get(frame::HEADER_LEN..frame::HEADER_LEN + len) else { return Ok(None) };
        let body = body.to_vec();
        self.start += frame::HEADER_LEN + len;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        Ok(Some(body))
    }

    /// Whether part of a frame has been read.
    fn partial(&self) -> bool {
        self.start < self.end
    }

    /// Reads what the pipe holds (it is readable): the number of bytes, 0 at
    /// its end.
    fn read_some(&mut self) -> io::Result<usize> {
        const ROOM: usize = 16 << 10;
        if self.buf.len() - self.end < ROOM && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.buf.len() - self.end < ROOM {
            let grown = (self.buf.len() * 2).max(64 << 10);
            self.buf.resize(grown, 0);
        }
        loop {
            match self.out.read(&mut self.buf[self.end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
            }
        }
    }

    /// Waits up to `timeout` for output (or, with `wake`, a wake-up), reads
    /// it and hands out every whole frame.
    fn pump(&mut self, shared: &Shared, wake: Option<&UnixStream>, timeout: Duration) -> Pumped {
        let fd = self.out.as_raw_fd();
        let ready = match wake {
            Some(wake) => readable(&[fd, wake.as_raw_fd()], timeout),
            None => readable(&[fd], timeout),
        };
        let ready = match ready {
            Ok(ready) => ready,
            Err(e) => return end(shared, Some(format!("could not be read ({e})"))),
        };
        if let Some(wake) = wake.filter(|_| ready[1]) {
            drain(wake);
        }
        if !ready[0] {
            return Pumped::Quiet;
        }
        match self.read_some() {
            Ok(0) if self.partial() => return end(shared, Some("broke the protocol (its output ends in the middle of a frame)".into())),
            Ok(0) => return end(shared, None),
            Ok(_) => {}
            Err(e) => return end(shared, Some(format!("could not be read ({e})"))),
        }
        loop {
            match self.frame() {
                Ok(Some(body)) => {
                    if let Err(e) = dispatch(shared, body) {
                        return end(shared, Some(format!("broke the protocol ({e})")));
                    }
                }
                Ok(None) => return Pumped::Read,
                Err(e) => return end(shared, Some(format!("broke the protocol ({e})"))),
            }
        }
    }
}

/// Which of `fds` (at most two) are readable (or at their end) within
/// `timeout`; none when it passes.
fn readable(fds: &[RawFd], timeout: Duration) -> io::Result<[bool; 2]> {
    assert!(fds.len() <= 2, "readable() takes one or two descriptors");
    let mut polled = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 2];
    for (p, fd) in polled.iter_mut().zip(fds) {
        *p = libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 };
    }
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: poll(2) reads and writes `fds.len()` pollfd structs, all inside
    // the local array; the descriptors are open (their owners outlive the call).
    let n = unsafe { libc::poll(polled.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok([false; 2]) } else { Err(e) };
    }
    Ok(polled.map(|p| p.fd >= 0 && p.revents != 0))
}

/// Takes the pending wake-up bytes.
fn drain(wake: &UnixStream) {
    let mut bytes = [0u8; 64];
    while matches!((&*wake).read(&mut bytes), Ok(n) if n == bytes.len()) {}
}

/// Hands out one frame from the plugin: the hello, else a reply to the
/// call waiting for it. An error: the plugin broke the protocol.
fn dispatch(shared: &Shared, body: Vec<u8>) -> Result<(), String> {
    if let Some(hello) = shared.hello.lock().take() {
        let _ = hello.send(body);
        return Ok(());
    }
    if let Some((id, answer)) = parse_reply(&shared.name(), &body)? {
        let waiter = shared.state.lock().waiters.remove(&id);
        // None: a call cancelled, or a reply to no request.
        if let Some(waiter) = waiter {
            waiter.send(answer);
        }
    }
    Ok(())
}

/// The plugin's output ended (or it broke the protocol: `trouble`): its
/// exit status fails every call still waiting, and every later one.
fn end(shared: &Shared, trouble: Option<String>) -> Pumped {
    if shared.state.lock().ended.is_some() {
        return Pumped::Ended;
    }
    if trouble.is_some() {
        shared.signal_group(libc::SIGKILL);
    }
    let ended = match shared.exits_within(Duration::from_millis(500)) {
        Some(status) => match trouble {
            Some(trouble) => format!("{trouble} and {}", describe(status)),
            None => describe(status),
        },
        None => trouble.unwrap_or_else(|| "closed its output".into()),
    };
    let waiters = {
        let mut state = shared.state.lock();
        state.ended = Some(ended.clone());
        std::mem::take(&mut state.waiters)
    };
    // Before saying hello: `Session::start` reads the ending.
    drop(shared.hello.lock().take());
    let name = shared.name();
    for (_, waiter) in waiters {
        waiter.send(Err(crashed(&name, &ended, "during the call")));
    }
    Pumped::Ended
}

/// The reader thread: reads the plugin's output whenever calls wait that
/// no call leads (and the hello), else waits to be woken, looking every
/// `IDLE_CHECK` whether the plugin has exited. Returns once it has ended.
fn read_replies(shared: &Shared) {
    let wake = &shared.wake_rx;
    loop {
        let read = {
            let mut state = shared.state.lock();
            if state.ended.is_some() {
                return;
            }
            state.reading = shared.reader_reads(&state);
            state.reading
        };
        let pumped = if read {
            let mut inbox = shared.inbox.lock();
            loop {
                match inbox.pump(shared, Some(wake), IDLE_CHECK) {
                    Pumped::Ended => return,
                    Pumped::Read if shared.reader_reads(&shared.state.lock()) => {}
                    Pumped::Read => break Pumped::Read,
                    Pumped::Quiet => break Pumped::Quiet,
                }
            }
        } else {
            // Woken, or a while passed: either way, look again.
            if let Ok([true, _]) = readable(&[wake.as_raw_fd()], IDLE_CHECK) {
                drain(wake);
            }
            Pumped::Quiet
        };
        shared.state.lock().reading = false;
        // Quiet for a while: an exited plugin whose output stays open (a
        // child of it holds it) must still end the session's calls.
        if matches!(pumped, Pumped::Quiet) && shared.exited().is_some() {
            let mut inbox = shared.inbox.lock();
            while let Pumped::Read = inbox.pump(shared, None, Duration::ZERO) {}
            end(shared, None);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_into_entries_and_values_keep_their_full_depth() {
        let deep = (0..abi::MAX_DEPTH - 1).fold(abi::Value::Int(1), |v, _| abi::Value::Array(vec![v]));
        let body = message("result", |f| {
            f.push(("id".into(), packed(&abi::Value::Int(7))));
            f.push(("value".into(), packed(&deep)));
        });
        let (id, answer) = parse_reply("t", &body).unwrap().unwrap();
        assert_eq!(id, 7);
        assert_eq!(answer.unwrap(), deep);
        assert!(entries(&[0x91, 0x01]).unwrap_err().contains("not a MessagePack map"));
        assert!(entries(&[0x81, 0xa1, b'a']).unwrap_err().contains("truncated"));
        let ext = [0x82, 0xa1, b'a', 0xd6, 0x01, 0, 0, 0, 0, 0xa1, b'b', 0xc4, 0x02, 1, 2];
        assert_eq!(entries(&ext).unwrap().len(), 2, "ext and bin values are skipped whole");
    }

    #[test]
    fn a_hello_says_its_version_name_and_functions() {
        let body = message("hello", |f| {
            f.push(("protocol".into(), packed(&abi::Value::Array(vec![abi::Value::Int(1), abi::Value::Int(3)]))));
            f.push(("name".into(), packed(&abi::Value::Str("tools".into()))));
            f.push(("functions".into(), packed(&abi::Value::Array(vec![abi::Value::Str("fib".into())]))));
            f.push(("capabilities".into(), packed(&abi::Value::Map(vec![("concurrent".into(), abi::Value::Bool(true))]))));
        });
        let hello = parse_hello(&body).unwrap();
        assert_eq!((hello.protocol, hello.name.as_str(), hello.concurrent, hello.isolated), ((1, 3), "tools", true, false));
        assert_eq!(hello.functions, Some(vec!["fib".to_string()]));
        let call = message("call", |_| {});
        assert!(parse_hello(&call).unwrap_err().contains("not a `hello`"));
    }
}
