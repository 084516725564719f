//! The `=f=` worker pool: persistent Python worker processes, owned here.
//! Each worker is the real interpreter (`python -c <_worker.py>`), never a
//! fork of this multi-threaded process. Functions travel once per worker
//! with cloudpickle, arguments and results with pickle protocol 5, in
//! frames of [`oxiida_abi::frame`] on the worker's stdin and stdout. A
//! worker that dies fails only the call it was running, is reaped, and is
//! replaced on demand.
//!
//! A pool belongs to whoever made it: a CLI session owns its own, and the
//! package shares one per environment (interpreter + `sys.path`, see
//! [`shared`]). Nothing about a workflow is fixed in a pool: each call
//! carries its workflow's [`Context`] (working directory, environment),
//! which the worker enters for that call and leaves after it.
//!
//! Workers run in a process group of their own, so a terminal's Ctrl-C
//! (sent to the foreground group) never reaches them: only the host decides
//! when they die. They still die with the host: each asks the kernel to
//! SIGKILL it when the thread that started it ends (`PR_SET_PDEATHSIG`),
//! and every worker is started from the pool's one long-lived thread.
//!
//! The idle workers and the wait for one when all are busy are the generic
//! checkout pool's ([`oxiida_abi::pool`], which the Lua plugin's states use
//! too); this file adds what is particular to processes: starting, reaping,
//! the idle timeout and killing the calls of a cancelled workflow.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use oxiida_abi::pool as checkout;
use parking_lot::Mutex;

use crate::pipe::Replies;

pub mod plain;
pub mod stream;

const WORKER_SOURCE: &str = include_str!("../python/oxiida/_worker.py");

/// Frames from a worker larger than this are refused (a result of 1 GiB).
const MAX_REPLY: usize = 1 << 30;

/// Why a call could not run in a worker.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot start a worker process ({python}): {source}")]
    Start { python: String, source: std::io::Error },
    #[error("the thread that starts worker processes is gone")]
    NoSpawner,
    #[error("the worker process (pid {pid}) {how} while running the call")]
    Died { pid: u32, how: String },
    /// The call was sent in a batch behind the one the worker died running.
    #[cfg_attr(not(feature = "package"), allow(dead_code))]
    #[error("the worker process (pid {pid}) {how} while running an earlier call sent to it in the same batch; this call never ran")]
    DiedBefore { pid: u32, how: String },
    #[error("the call is too large to send to a worker (its function or context is over 4 GiB)")]
    #[cfg_attr(not(feature = "package"), allow(dead_code))]
    TooLarge,
}

#[cfg_attr(not(feature = "package"), allow(dead_code))]
impl PoolError {
    /// The same error again, for each call of a batch that it failed.
    fn again(&self) -> PoolError {
        match self {
            PoolError::Start { python, source } => {
                PoolError::Start { python: python.clone(), source: std::io::Error::new(source.kind(), source.to_string()) }
            }
            PoolError::NoSpawner => PoolError::NoSpawner,
            PoolError::Died { pid, how } => PoolError::Died { pid: *pid, how: how.clone() },
            PoolError::DiedBefore { pid, how } => PoolError::DiedBefore { pid: *pid, how: how.clone() },
            PoolError::TooLarge => PoolError::TooLarge,
        }
    }
}

/// One call ([`Pool::call`], [`Pool::call_batch`]).
pub struct Request<'a> {
    pub key: u64,
    pub function: &'a [u8],
    pub args: &'a [u8],
    pub with_keywords: bool,
    /// A large result sent as it is pickled is also unpickled here as it
    /// comes ([`Answer::Streamed`]): for a caller that may hand it to Python.
    pub unpickle: bool,
}

/// The most bytes of call frames written to a worker before its replies are
/// read: less than its stdin pipe holds, so the write never waits for the
/// worker, which may itself wait for its replies to be read.
#[cfg_attr(not(feature = "package"), allow(dead_code))]
const BATCH_BYTES: usize = 48 * 1024;

/// A worker's frame of what the call being run wrote to `sys.stdout` (u8
/// 1) or `sys.stderr` (u8 2), as UTF-8; not a reply (see `_worker.py`).
const PRINTED: u8 = 6;
/// A reply status: a part of a result sent as it is pickled ...
const PART: u8 = 7;
/// ... and its last part.
const LAST: u8 = 8;

/// Writes what a worker's function printed to this interpreter's
/// `sys.stdout` (or `sys.stderr`), flushed: where a plain call's prints go,
/// so the workflow's output (a daemon runner's `sys.stdout` is the
/// workflow's output, `oxiida.run`'s is the caller's: Jupyter, capsys), in
/// order with the workflow's own prints, which go there too. Errors are
/// ignored, as a plain call's print to a closed stream would be.
fn print_here(stderr: bool, text: &str) {
    use pyo3::prelude::*;
    Python::attach(|py| {
        if let Ok(stream) = py.import("sys").and_then(|sys| sys.getattr(if stderr { "stderr" } else { "stdout" })) {
            let _ = stream.call_method1("write", (text,));
            let _ = stream.call_method0("flush");
        }
    });
}

/// What a worker answered: the pickled result, or the pickled
/// (type, message, traceback, pickled exception) of what the function raised.
pub enum Answer {
    Returned(Vec<u8>),
    /// A large result sent as it was pickled: its pickle, and the thread
    /// unpickling its parts as they came, when asked ([`Request::unpickle`]).
    Streamed(Vec<u8>, Option<stream::Unpickled>),
    /// The pickle and its out-of-band buffers (pickle protocol 5), each
    /// read straight into a `bytearray` that the unpickled object keeps.
    ReturnedWithBuffers(Vec<u8>, Vec<pyo3::Py<pyo3::types::PyByteArray>>),
    Raised(Vec<u8>),
    /// The result is no value oxiida takes: the pickled (type name, why).
    CannotCross(Vec<u8>),
    /// The result could not be pickled: the pickled text of the error.
    CannotPickle(Vec<u8>),
    /// The function could not be unpickled in the worker: the pickled text
    /// of the error. The worker does not have it.
    CannotLoad(Vec<u8>),
}

/// Where one workflow's `=f=` calls run: its working directory and, when
/// given, its environment variables. Sent to a worker once (pickled), then
/// named by `key`.
pub struct Context {
    key: u64,
    pub cwd: String,
    pub env: Option<Vec<(String, String)>>,
    /// `(cwd, env or None)`, pickled on the first call that needs it.
    pub pickled: OnceLock<Vec<u8>>,
}

impl Context {
    pub fn new(cwd: String, env: Option<Vec<(String, String)>>) -> Arc<Context> {
        Arc::new(Context { key: next_key(), cwd, env, pickled: OnceLock::new() })
    }
}

/// A number unique in the process: names a function, a context or an owner.
pub fn next_key() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

struct Worker {
    /// When it last finished a call (for the idle timeout).
    idle_since: Instant,
    child: Child,
    stdin: ChildStdin,
    stdout: Replies,
    /// Function keys this worker has already received.
    functions: HashSet<u64>,
    /// Context keys this worker has already received.
    contexts: HashSet<u64>,
}

/// What the pool's thread is asked to do.
type SpawnRequest = mpsc::Sender<std::io::Result<Child>>;

pub struct Pool {
    python: String,
    /// The live workers, idle or out on a call; shared with the pool's
    /// thread, which retires those idle for too long.
    workers: Arc<checkout::Pool<Worker>>,
    /// Workers running a call: (owner, pid). The calling thread holds the
    /// `Child` until it has waited for it, so a pid here is never reused.
    /// Also whether `cancel` killed it: then it does not go back to the
    /// pool, even if it had answered every call before the signal landed.
    busy: Mutex<Vec<(u64, u32, bool)>>,
    /// Workers are started from one long-lived thread: a worker asks to be
    /// killed when the thread that started it ends (PR_SET_PDEATHSIG).
    /// Dropping the sender ends that thread.
    spawner: Mutex<Option<mpsc::Sender<SpawnRequest>>>,
}

/// How long a worker may sit idle before it exits: `OXIIDA_WORKER_IDLE_SECS`,
/// default five minutes.
fn idle_timeout() -> Duration {
    let secs = std::env::var("OXIIDA_WORKER_IDLE_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(300.0);
    Duration::from_secs_f64(secs.max(0.1))
}

/// At most this many workers: `OXIIDA_WORKERS`, default one per core.
pub fn max_workers() -> usize {
    std::env::var("OXIIDA_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1)
}

/// The package's pools, one per environment (interpreter, module path):
/// workflows run from the same environment share warm workers, and a
/// workflow from another `sys.path` gets workers that import from it.
#[cfg(feature = "package")]
static SHARED: Mutex<Vec<(Environment, Arc<Pool>)>> = Mutex::new(Vec::new());

/// An interpreter and the module path its workers get.
#[cfg(feature = "package")]
type Environment = (String, String);

/// The package's pool for this environment, started on first use.
#[cfg(feature = "package")]
pub fn shared(python: &str, module_path: &str) -> Result<Arc<Pool>, PoolError> {
    let mut pools = SHARED.lock();
    if let Some((_, pool)) = pools.iter().find(|((p, m), _)| p == python && m == module_path) {
        return Ok(pool.clone());
    }
    let pool = Arc::new(Pool::new(python, module_path)?);
    pools.push(((python.to_owned(), module_path.to_owned()), pool.clone()));
    Ok(pool)
}

/// Stops every shared pool's idle workers and reaps them (at exit), even
/// where a workflow's threads, still ending, hold the pool: its `Drop`
/// might then come after Python's exit, leaving the workers to be adopted.
#[cfg(feature = "package")]
pub fn shutdown_shared() {
    let pools = std::mem::take(&mut *SHARED.lock());
    for (_, pool) in pools {
        pool.stop();
    }
}

impl Pool {
    /// A pool of workers running `python` with `module_path` as their
    /// PYTHONPATH (the caller's `sys.path`, so functions pickled by
    /// reference import in the workers too).
    pub fn new(python: &str, module_path: &str) -> Result<Pool, PoolError> {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let workers = Arc::new(checkout::Pool::new(max_workers()));
        let (exe, path, watched) = (python.to_owned(), module_path.to_owned(), workers.clone());
        std::thread::Builder::new()
            .name("oxiida-workers".into())
            .spawn(move || serve_pool(&exe, &path, &watched, &rx))
            .map_err(|source| PoolError::Start { python: python.to_owned(), source })?;
        Ok(Pool { python: python.to_owned(), workers, busy: Mutex::new(Vec::new()), spawner: Mutex::new(Some(tx)) })
    }

    fn start(&self) -> Result<Worker, PoolError> {
        let (tx, rx) = mpsc::channel();
        let sent = self.spawner.lock().as_ref().map(|s| s.send(tx));
        let child = match sent {
            Some(Ok(())) => rx.recv().map_err(|_| PoolError::NoSpawner)?,
            _ => return Err(PoolError::NoSpawner),
        };
        let mut child = child.map_err(|source| PoolError::Start { python: self.python.clone(), source })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = match Replies::new(child.stdout.take().expect("piped stdout")) {
            Ok(replies) => replies,
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PoolError::Start { python: self.python.clone(), source });
            }
        };
        Ok(Worker { idle_since: Instant::now(), child, stdin, stdout, functions: HashSet::new(), contexts: HashSet::new() })
    }

    #[cfg(feature = "package")]
    /// Kills the workers running calls for `owner` (a workflow that ended or
    /// was cancelled): nobody wants their results, and they must not run on.
    /// The threads waiting for them see the pipe close, reap them and free
    /// the slots; idle workers are not touched.
    pub fn cancel(&self, owner: u64) {
        for (_, pid, killed) in self.busy.lock().iter_mut().filter(|(o, _, _)| *o == owner) {
            *killed = true;
            // SAFETY: kill(2) has no memory effects; the pid is still our
            // unreaped child (its waiter removes it from `busy` first).
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    /// Runs one call for `owner` on a worker, blocking this thread until it
    /// answers: an idle worker, else a new one while fewer than the most are
    /// alive, else the next to come back.
    /// `args` is the pickled argument tuple or, `with_keywords`, the pickled
    /// `(arguments, keyword arguments)` pair.
    pub fn call(&self, owner: u64, context: &Context, request: &Request<'_>) -> Result<Answer, PoolError> {
        let mut w = self.workers.get(|| self.start())?;
        let pid = w.child.id();
        crate::ran_by::worker(pid);
        self.busy.lock().push((owner, pid, false));
        let answer = exchange(&mut w, context, request);
        match answer {
            Ok(answer) if !self.unbusy(pid) => {
                w.idle_since = Instant::now();
                drop(w); // back in the pool
                Ok(answer)
            }
            Ok(answer) => {
                // Killed as it answered: it must not serve another call.
                died(w);
                Ok(answer)
            }
            Err(_) => {
                self.unbusy(pid);
                let how = died(w);
                Err(PoolError::Died { pid, how })
            }
        }
    }

    /// The worker `pid` no longer runs calls; whether `cancel` killed it.
    fn unbusy(&self, pid: u32) -> bool {
        let mut busy = self.busy.lock();
        let killed = busy.iter().any(|&(_, p, killed)| p == pid && killed);
        busy.retain(|&(_, p, _)| p != pid);
        killed
    }

    /// Runs `calls` for `owner` on one worker: their frames written at once
    /// (in chunks its stdin pipe holds), their replies read in order. A
    /// worker that dies fails the call it was running and those after it
    /// (which never ran); the calls it answered keep their answers.
    #[cfg(feature = "package")]
    pub fn call_batch(&self, owner: u64, context: &Context, calls: &[Request<'_>]) -> Vec<Result<Answer, PoolError>> {
        let mut w = match self.workers.get(|| self.start()) {
            Ok(w) => w,
            Err(e) => return calls.iter().map(|_| Err(e.again())).collect(),
        };
        let pid = w.child.id();
        crate::ran_by::worker(pid);
        self.busy.lock().push((owner, pid, false));
        let mut answers = Vec::with_capacity(calls.len());
        let mut broken = false;
        let mut at = 0;
        while at < calls.len() && !broken {
            // A chunk: calls until their frames would pass BATCH_BYTES (at least one).
            let mut frames = Vec::new();
            let mut end = at;
            while end < calls.len() {
                let before = frames.len();
                let c = &calls[end];
                let (had_function, had_context) = (w.functions.contains(&c.key), w.contexts.contains(&context.key));
                let encoded = encode(&mut w, &mut frames, c.key, c.function, context, c.args, c.with_keywords);
                if encoded.is_err() || (end > at && frames.len() > BATCH_BYTES) {
                    // Not sent (now): the worker still lacks what this frame carried.
                    frames.truncate(before);
                    if !had_function {
                        w.functions.remove(&c.key);
                    }
                    if !had_context {
                        w.contexts.remove(&context.key);
                    }
                    break;
                }
                end += 1;
            }
            if end == at {
                // A call that cannot be encoded (a function over 4 GiB).
                answers.push(Err(PoolError::TooLarge));
                at += 1;
                continue;
            }
            let written = w.stdin.write_all(&frames).and_then(|()| w.stdin.flush());
            for c in &calls[at..end] {
                match written.as_ref().map_err(|_| ()).and_then(|()| read_answer(&mut w, c.unpickle).map_err(|_| ())) {
                    Ok(answer) => {
                        if matches!(answer, Answer::CannotLoad(_)) {
                            w.functions.remove(&c.key);
                        }
                        answers.push(Ok(answer));
                    }
                    Err(()) => {
                        broken = true;
                        break;
                    }
                }
            }
            at = end;
        }
        let killed = self.unbusy(pid);
        if !broken && !killed {
            w.contexts.insert(context.key);
            w.idle_since = Instant::now();
            drop(w); // back in the pool
            return answers;
        }
        let how = died(w);
        if !broken {
            return answers; // all answered before `cancel` killed it
        }
        answers.push(Err(PoolError::Died { pid, how: how.clone() }));
        while answers.len() < calls.len() {
            answers.push(Err(PoolError::DiedBefore { pid, how: how.clone() }));
        }
        answers
    }
}

/// The pipe broke: the worker died. Takes it out of the pool, reaps it and
/// says how it ended.
fn died(w: checkout::Checkout<'_, Worker>) -> String {
    match reap(w.discard()) {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.signal(), status.code()) {
                (Some(sig), _) => format!("was killed by signal {sig}"),
                (None, Some(code)) => format!("exited with status {code}"),
                _ => "ended".into(),
            }
        }
        Err(e) => format!("could not be waited for ({e})"),
    }
}

impl Pool {
    /// Stops every idle worker and reaps it, and starts no other: nothing
    /// is left behind, not even a zombie (the process that adopts orphans
    /// may not reap them).
    fn stop(&self) {
        self.spawner.lock().take();
        for w in self.workers.retire(|_| true) {
            let _ = reap(w);
        }
    }
}

impl Drop for Pool {
    /// No call is running: each holds the pool.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for a worker to end: closing its stdin ends the loop of one still
/// alive (EOF), and one that died is reaped, leaving no zombie.
fn reap(w: Worker) -> std::io::Result<ExitStatus> {
    let Worker { mut child, stdin, .. } = w;
    drop(stdin);
    child.wait()
}

/// How long until the first idle worker expires (or `timeout`, with none idle).
fn next_expiry(workers: &checkout::Pool<Worker>, timeout: Duration) -> Duration {
    let first = workers.peek_idle(|idle| idle.iter().map(|w| w.idle_since).min());
    first.map_or(timeout, |since| (since + timeout).saturating_duration_since(Instant::now()))
}

/// The pool's thread: starts workers when asked, and retires (ends and
/// reaps) those idle for longer than the timeout, until the pool is dropped.
fn serve_pool(python: &str, module_path: &str, workers: &checkout::Pool<Worker>, requests: &mpsc::Receiver<SpawnRequest>) {
    let timeout = idle_timeout();
    loop {
        match requests.recv_timeout(next_expiry(workers, timeout)) {
            Ok(reply) => {
                let _ = reply.send(spawn(python, module_path));
            }
            Err(RecvTimeoutError::Timeout) => {
                for w in workers.retire(|w| w.idle_since.elapsed() >= timeout) {
                    let _ = reap(w);
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn spawn(python: &str, module_path: &str) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(python);
    command
        .args(["-c", WORKER_SOURCE])
        .env("OXIIDA_PARENT_PID", std::process::id().to_string())
        .env("PYTHONPATH", module_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // A group of its own: the terminal's Ctrl-C is the host's to handle.
        .process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec only async-signal-safe calls run:
        // prctl, getppid and _exit; nothing allocates or takes a lock.
        unsafe {
            command.pre_exec(move || {
                // Killed when the pool's thread (so the host) ends...
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                // ...and gone already if the host died before that was set.
                if libc::getppid() != parent {
                    libc::_exit(0);
                }
                Ok(())
            })
        };
    }
    command.spawn()
}

/// One call: the frame out, the reply frame back.
///
/// A call frame's body: u64 function key, u64 context key, u8 flags (1: the
/// function follows, 2: the context follows, 4: the pickle is an
/// `(arguments, keyword arguments)` pair), then each that follows as a u32
/// length and its bytes, then the pickled argument tuple (or pair). A reply's
/// body: u8 status (0 returned, 1 raised, 2 the result cannot cross, 3 the
/// result cannot be pickled, 4 the function cannot be unpickled), then the pickle. Integers are
/// big-endian, as the frame header is. A large result may come in parts
/// first (status 7 frames, then its last part as status 8, see
/// [`stream`]); status 6 frames (prints) may come between any of them.
fn exchange(w: &mut Worker, context: &Context, r: &Request<'_>) -> std::io::Result<Answer> {
    let mut frame = Vec::new();
    encode(w, &mut frame, r.key, r.function, context, r.args, r.with_keywords)?;
    w.stdin.write_all(&frame)?;
    w.stdin.flush()?;
    let answer = read_answer(w, r.unpickle)?;
    if matches!(answer, Answer::CannotLoad(_)) {
        w.functions.remove(&r.key);
    }
    Ok(answer)
}

/// Appends one call's frame to `out`, with the function and the context
/// when the worker has not had them (then counted as sent).
fn encode(
    w: &mut Worker,
    out: &mut Vec<u8>,
    key: u64,
    function: &[u8],
    context: &Context,
    args: &[u8],
    with_keywords: bool,
) -> std::io::Result<()> {
    let send_function = !w.functions.contains(&key);
    let pickled_context = context.pickled.get().map(Vec::as_slice).unwrap_or_default();
    let send_context = !w.contexts.contains(&context.key);
    let mut body = Vec::with_capacity(32 + function.len() + pickled_context.len() + args.len());
    body.extend_from_slice(&key.to_be_bytes());
    body.extend_from_slice(&context.key.to_be_bytes());
    body.push(u8::from(send_function) | (u8::from(send_context) << 1) | (u8::from(with_keywords) << 2));
    for (send, bytes) in [(send_function, function), (send_context, pickled_context)] {
        if send {
            body.extend_from_slice(&u32::try_from(bytes.len()).map_err(std::io::Error::other)?.to_be_bytes());
            body.extend_from_slice(bytes);
        }
    }
    body.extend_from_slice(args);
    out.extend_from_slice(&oxiida_abi::frame::encode(&body));
    w.functions.insert(key);
    w.contexts.insert(context.key);
    Ok(())
}

/// The rest of a status 5 reply, `len` bytes: u32 count, u64 sizes, u64
/// pickle size, the pickle, then the buffers.
fn read_with_buffers(w: &mut Worker, len: usize) -> std::io::Result<Answer> {
    let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    let count = u32::from_be_bytes(w.stdout.read(4)?.try_into().expect("4 bytes")) as usize;
    if 4 + 8 * (count + 1) > len {
        return Err(invalid());
    }
    let sizes = w.stdout.read(8 * (count + 1))?;
    let sizes: Vec<usize> = sizes.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")) as usize).collect::<Vec<_>>();
    let (pickle_len, buffer_sizes) = sizes.split_last().ok_or_else(invalid)?;
    let total = buffer_sizes.iter().try_fold(4 + 8 * (count + 1) + pickle_len, |sum, n| sum.checked_add(*n));
    if total != Some(len) {
        return Err(invalid());
    }
    let pickle = w.stdout.read(*pickle_len)?;
    let mut buffers = Vec::with_capacity(count);
    for &size in buffer_sizes {
        let (buffer, memory) = new_bytearray(size)?;
        // SAFETY: `memory` is the bytearray's own storage of `size` bytes;
        // nothing else refers to the new object (it is only ours), and it
        // is neither resized nor freed while `buffer` is held, here.
        let out = unsafe { std::slice::from_raw_parts_mut(memory, size) };
        w.stdout.read_into(out)?;
        buffers.push(buffer);
    }
    Ok(Answer::ReturnedWithBuffers(pickle, buffers))
}

/// A new `bytearray` of `size` bytes, not initialised, and its storage.
fn new_bytearray(size: usize) -> std::io::Result<(pyo3::Py<pyo3::types::PyByteArray>, *mut u8)> {
    use pyo3::prelude::*;
    let size = pyo3::ffi::Py_ssize_t::try_from(size).map_err(std::io::Error::other)?;
    Python::attach(|py| {
        // SAFETY: with the GIL held; a null source asks for uninitialised
        // storage, which the caller fills before anything reads it.
        let raw = unsafe { pyo3::ffi::PyByteArray_FromStringAndSize(std::ptr::null(), size) };
        // SAFETY: `raw` is a new reference (or null, with an exception set).
        let array = unsafe { Bound::from_owned_ptr_or_err(py, raw) }.map_err(|e| std::io::Error::other(e.to_string()))?;
        // SAFETY: a bytearray's storage, valid while it lives unresized.
        let memory = unsafe { pyo3::ffi::PyByteArray_AsString(array.as_ptr()) }.cast::<u8>();
        let array = array.cast_into::<pyo3::types::PyByteArray>().map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok((array.unbind(), memory))
    })
}

/// The next reply frame. What the call printed comes before it (status 6
/// frames): each is written out here as it arrives ([`print_here`]).
fn read_answer(w: &mut Worker, unpickle: bool) -> std::io::Result<Answer> {
    // Dropped unfinished (another status came, an error), it is given up.
    let mut streamed: Option<stream::Streamed> = None;
    let (len, status) = loop {
        let header = w.stdout.read(oxiida_abi::frame::HEADER_LEN)?;
        let len = oxiida_abi::frame::body_len(header.try_into().expect("a whole header"), MAX_REPLY)?;
        if len == 0 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let status = w.stdout.read(1)?[0];
        if status == PART {
            let part = w.stdout.read(len - 1)?;
            if streamed.as_ref().is_some_and(|s| s.len() + part.len() > MAX_REPLY) {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
            streamed.get_or_insert_with(|| stream::Streamed::new(unpickle)).push(part);
            continue;
        }
        if status != PRINTED {
            break (len, status);
        }
        let body = w.stdout.read(len - 1)?;
        let (&which, text) = body.split_first().ok_or(std::io::ErrorKind::InvalidData)?;
        print_here(which == 2, &String::from_utf8_lossy(text));
    };
    if status == 5 {
        return read_with_buffers(w, len - 1);
    }
    let pickle = w.stdout.read(len - 1)?;
    Ok(match status {
        LAST => match streamed.take() {
            Some(streamed) => streamed.finish(pickle),
            None => return Err(std::io::ErrorKind::InvalidData.into()),
        },
        0 => Answer::Returned(pickle),
        2 => Answer::CannotCross(pickle),
        3 => Answer::CannotPickle(pickle),
        4 => Answer::CannotLoad(pickle),
        _ => Answer::Raised(pickle),
    })
}
