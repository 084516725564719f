//! The Python plugin, loaded by `oxiida run --plugin python[=script.py]`. It
//! embeds the interpreter it was built against. Each call takes the GIL on
//! its own thread, so calls that wait (I/O, `time.sleep`) overlap in `para`.
//! Process calls (`=f=`) run in a pool of worker processes the session owns.
//!
//! Built by maturin with the `package` feature, the same library is the
//! `oxiida._oxiida` module of the `oxiida` package, which implements the
//! runtime's `Host` directly ([`package`]) rather than going through the C
//! table. Both wrap the same [`functions::Functions`]: lookup, calling and
//! the worker pool are written once.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_void};

use std::sync::Arc;

use oxiida_abi::{self as abi, guard, serve, write_error, Failure};
use pyo3::prelude::*;

mod convert;
#[cfg(feature = "package")]
mod daemon;
mod executor;
mod functions;
#[cfg(feature = "package")]
mod package;
mod pipe;
mod pool;

use functions::{CallError, Front, Functions};

/// Who ran the `=f=` call that just ended on this thread, for task records
/// (`Task::ran_by` in the runtime): the pool sets its worker's pid at each
/// call (one store), and an executor, asked, the Dask worker's address or
/// the executor process's pid. A plain call says nothing: it ran here.
pub(crate) mod ran_by {
    use std::cell::{Cell, RefCell};

    thread_local! {
        static PID: Cell<u32> = const { Cell::new(0) };
        static WANTED: Cell<bool> = const { Cell::new(false) };
        static REMOTE: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    /// The pool ran the call on this thread in worker process `pid`.
    pub fn worker(pid: u32) {
        PID.set(pid);
    }

    /// Whether the call running on this thread should say who ran it
    /// (an executor then asks its worker, which costs a little).
    pub fn wanted() -> bool {
        WANTED.get()
    }

    /// An executor ran the call on this thread at `who`.
    pub fn remote(who: String) {
        REMOTE.set(Some(who));
    }

    /// Runs `f` (which makes `=f=` calls on this thread) and says who ran
    /// its last one: `None` when nothing said (it ran in this process).
    pub fn asking<R>(f: impl FnOnce() -> R) -> (R, Option<String>) {
        PID.set(0);
        REMOTE.set(None);
        WANTED.set(true);
        let r = f();
        WANTED.set(false);
        let who = REMOTE.take().or_else(|| Some(PID.get()).filter(|&p| p != 0).map(|p| format!("pid {p}")));
        (r, who)
    }
}

/// A session of the C-ABI plugin: one workflow's functions. It owns its
/// `=f=` pool, whose workers end when the session is freed.
struct Session(Functions, Arc<convert::Handles>);

impl Session {
    fn open(py: Python<'_>, script: &str) -> Result<Session, String> {
        let (scope, name) = if script.is_empty() {
            (None, "")
        } else {
            (Some(functions::load_script(py, script).map_err(|e| e.to_string())?), "the script's globals")
        };
        // `=f=` workers start in the CLI's working directory, as shell tasks do.
        let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "/".into());
        let mut functions = Functions::new(scope, name, Front::Cli, pool::Context::new(cwd, None));
        // `oxiida run --executor` (or OXIIDA_EXECUTOR): `=f=` calls go there.
        functions.executor = executor::connect(py, None).map_err(|e| executor::error_text(py, &e))?;
        Ok(Session(functions, Arc::default()))
    }
}

fn failure(e: CallError) -> Failure {
    Failure { status: e.kind, message: e.message, traceback: e.traceback }
}

unsafe extern "C" fn session_new(config: *const c_char, len: usize, out: *mut *mut c_void, error: *mut c_char, cap: usize) -> i32 {
    let open = |script: &str| Python::attach(|py| Session::open(py, script));
    // SAFETY: the arguments are the host's, as `oxiida.h` describes them.
    unsafe { serve::session_new("Python", config, len, out, error, cap, open) }
}

unsafe extern "C" fn session_free(session: *mut c_void) {
    // Dropping Python objects needs the GIL; dropping the pool stops and
    // reaps its idle workers (no call is running any more). The session's
    // event loop, if an `async def` function made one, stops too.
    let close = |session: Box<Session>| {
        Python::attach(|py| {
            session.0.end(py);
            drop(session.1.take_all());
            drop(session)
        })
    };
    // SAFETY: the session came from `session_new` and no call runs on it.
    unsafe { serve::session_free(session, close) }
}

unsafe extern "C" fn resolve(session: *mut c_void, name: *const c_char, len: usize, error: *mut c_char, cap: usize) -> u32 {
    // SAFETY: the arguments are the host's; the session came from `session_new`.
    unsafe { serve::resolve("Python", session, name, len, error, cap, |s: &Session, name| s.0.resolve(name)) }
}

unsafe extern "C" fn call(session: *mut c_void, message: *const abi::Message, reply: *mut abi::Reply) {
    let run = |s: &Session, name: &str, args: &[abi::Value], keywords: &[(String, abi::Value)], process: bool| {
        if !process {
            return s.1.during(|| s.0.call(name, args, keywords, process)).map_err(failure);
        }
        // The reply names the worker that ran it, for the host's task records.
        let (result, who) = ran_by::asking(|| s.1.during(|| s.0.call(name, args, keywords, process)));
        if let Some(who) = who {
            serve::ran_by(who);
        }
        result.map_err(failure)
    };
    // SAFETY: the arguments are the host's; the session came from `session_new`.
    unsafe { serve::call_with_keywords("Python", session, message, reply, run) }
}

unsafe extern "C" fn handle_release(session: *mut c_void, id: u64) {
    if session.is_null() {
        return;
    }
    // SAFETY: a live session made by `session_new` (the host never releases
    // after `session_free`); only its handle table is touched, under its lock.
    let session = unsafe { &*session.cast::<Session>() };
    guard(|| session.1.release(id), |_| ());
}

unsafe extern "C" fn fingerprint(session: *mut c_void, name: *const c_char, len: usize, out: *mut u8, cap: usize) -> usize {
    // SAFETY: the host's arguments, and `session` made by `session_new` with `Session`.
    unsafe { serve::fingerprint(session, name, len, out, cap, |s: &Session, name| s.0.fingerprint(name)) }
}

/// Python's stdout and stderr, when not a terminal, write through at once
/// (as `python -u`): the host's own output (`print` in the workflow) is
/// written as it comes, so a function's prints stay in order with it
/// (under the daemon, where the runner's stdout is a pipe into the
/// workflow's output, they would otherwise come at the end, or never).
const UNBUFFERED: &std::ffi::CStr = c"
import io, os, sys
for name in ('stdout', 'stderr'):
    s = getattr(sys, name)
    try:
        fd = s.fileno()
    except Exception:
        continue
    if not os.isatty(fd):
        s.flush()
        setattr(sys, name, io.TextIOWrapper(io.FileIO(fd, 'w', closefd=False), encoding=s.encoding, errors=s.errors, write_through=True))
";

/// CAP_KEYWORDS: `f(x, steps = 100)` calls `f(x, steps=100)`.
static PLUGIN: abi::Plugin = abi::Plugin::rust(
    c"python",
    abi::CAP_CONCURRENT_CALLS | abi::CAP_PROCESS_MODE | abi::CAP_KEYWORDS,
    session_new,
    session_free,
    resolve,
    call,
)
.with_release(handle_release)
.with_fingerprint(fingerprint);

/// # Safety
/// Called by the oxiida host as `oxiida.h` describes.
#[no_mangle]
pub unsafe extern "C" fn oxiida_plugin_init(_host: *const abi::Host, error: *mut c_char, cap: usize) -> *const abi::Plugin {
    let started = guard(
        || {
            Python::initialize();
            Python::attach(|py| py.run(UNBUFFERED, Some(&pyo3::types::PyDict::new(py)), None))
                .map_err(|e| format!("cannot set up Python's stdout: {e}"))?;
            Ok(())
        },
        |panic| Err(format!("cannot start Python: {panic}")),
    );
    match started {
        Ok(()) => &PLUGIN,
        Err(why) => {
            // SAFETY: `error` and `cap` are the host's buffer, as the header describes.
            unsafe { write_error(error, cap, &why) };
            std::ptr::null()
        }
    }
}
