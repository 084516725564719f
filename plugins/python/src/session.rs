//! A session: one workflow's Python scope. With a script, the script's
//! globals; without one, dotted names import modules (`math.sqrt`) and plain
//! names are builtins. Resolved functions are kept, so a call looks nothing up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use oxiida_abi::Value;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::convert::{from_python, to_python, type_name};
use crate::pool::{pool, started, Answer, Pool};

/// Scopes lent by `oxiida.run` to the session it is about to open: the
/// session's config text names one by number (config is text in the ABI).
static LENT: Mutex<Vec<Loan>> = Mutex::new(Vec::new());

/// A scope waiting for its session, and what the session reports back in.
struct Loan {
    id: u64,
    scope: Py<PyDict>,
    raised: Raised,
    running: Running,
}

/// Exceptions raised by a session's calls, with the message the workflow
/// error carries: `oxiida.run` re-raises the original exception.
pub type Raised = Arc<Mutex<Vec<(String, Py<PyAny>)>>>;
const LENT_PREFIX: &str = "\u{1}scope:";
/// A scope sent with a workflow (`oxiida.submit` to a daemon): a pickled
/// dict of names, base64 (a session's config is text).
pub const PICKLED_PREFIX: &str = "\u{1}pickled:";

/// A number unique in the process: names a session to the worker pool.
fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The threads running a session's plain calls, by Python thread ident.
pub type Running = Arc<Mutex<Vec<std::ffi::c_ulong>>>;

/// A scope lent to a session by `oxiida.run`.
#[cfg(feature = "package")]
pub struct Lent {
    /// The session's config: names the scope.
    pub config: String,
    /// The exceptions its calls raise.
    pub raised: Raised,
    /// The owner of its `=f=` calls in the pool (see `pool::cancel`).
    pub owner: u64,
    pub running: Running,
}

#[cfg(feature = "package")]
impl Lent {
    /// Raises KeyboardInterrupt in the threads still running this session's
    /// plain calls (Python threads cannot be killed; this is how they stop).
    /// It lands at the function's next bytecode: a call blocked in C (a
    /// sleep, a read) ends when that returns.
    pub fn interrupt_running(&self, _gil: Python<'_>) {
        for &ident in self.running.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            // SAFETY: the GIL is held (the token proves it); the ident is a
            // thread inside a call, which removes itself under the GIL.
            unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(ident as std::ffi::c_long, pyo3::ffi::PyExc_KeyboardInterrupt) };
        }
    }
}

/// Lends `scope` to the next session opened with the returned config.
#[cfg(feature = "package")]
pub fn lend_scope(scope: Py<PyDict>) -> Lent {
    let id = next_id();
    let (raised, running) = (Raised::default(), Running::default());
    LENT.lock().unwrap_or_else(|p| p.into_inner()).push(Loan { id, scope, raised: raised.clone(), running: running.clone() });
    Lent { config: format!("{LENT_PREFIX}{id}"), raised, owner: id, running }
}

fn take_scope(config: &str) -> Option<Loan> {
    let id: u64 = config.strip_prefix(LENT_PREFIX)?.parse().ok()?;
    let mut lent = LENT.lock().unwrap_or_else(|p| p.into_inner());
    let at = lent.iter().position(|loan| loan.id == id)?;
    Some(lent.swap_remove(at))
}

pub struct Session {
    /// The script's globals, when a script was given.
    scope: Option<Py<PyDict>>,
    /// What `scope` is, for errors.
    scope_name: &'static str,
    functions: Mutex<HashMap<String, Arc<Resolved>>>,
    raised: Option<Raised>,
    running: Option<Running>,
    /// Names this session's `=f=` calls in the pool.
    pub owner: u64,
}

/// A function a workflow required.
struct Resolved {
    function: Py<PyAny>,
    /// Names it in the worker pool's caches (unique in the process).
    key: u64,
    /// The function, cloudpickled on its first `=f=` call.
    pickled: OnceLock<Vec<u8>>,
}

pub use oxiida_abi::Failure;

/// `Type: message` and the formatted traceback of a Python exception.
pub fn describe(py: Python<'_>, err: &PyErr) -> (String, Option<String>) {
    let message = format!("{}: {}", err.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "Exception".into()), err.value(py));
    let traceback = py
        .import("traceback")
        .and_then(|tb| tb.getattr("format_exception")?.call1((err.get_type(py), err.value(py), err.traceback(py))))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .ok();
    (message, traceback)
}

impl Session {
    /// Opened by `oxiida.run` on a lent scope (not by the CLI).
    pub fn lent(&self) -> bool {
        self.raised.is_some()
    }

    /// Runs `script` (a path, or empty for none) in a fresh namespace.
    pub fn new(py: Python<'_>, script: &str) -> Result<Session, String> {
        if script.is_empty() {
            return Ok(Session {
                scope: None,
                scope_name: "",
                functions: Mutex::new(HashMap::new()),
                raised: None,
                running: None,
                owner: next_id(),
            });
        }
        if let Some(Loan { id, scope, raised, running }) = take_scope(script) {
            let functions = Mutex::new(HashMap::new());
            return Ok(Session {
                scope: Some(scope),
                scope_name: "the scope of `oxiida.run`",
                functions,
                raised: Some(raised),
                running: Some(running),
                owner: id,
            });
        }
        if let Some(encoded) = script.strip_prefix(PICKLED_PREFIX) {
            let scope = unpickle_scope(py, encoded).map_err(|e| {
                let (message, traceback) = describe(py, &e);
                format!("the functions sent with the workflow cannot be unpickled here: {message}\n{}", traceback.unwrap_or_default())
            })?;
            let scope_name = "the functions sent with the workflow";
            return Ok(Session {
                scope: Some(scope),
                scope_name,
                functions: Mutex::new(HashMap::new()),
                raised: None,
                running: None,
                owner: next_id(),
            });
        }
        let source = std::fs::read_to_string(script).map_err(|e| format!("cannot read the script {script}: {e}"))?;
        let load = || -> PyResult<Py<PyDict>> {
            let globals = PyDict::new(py);
            // Not "__main__": a script's `if __name__ == "__main__":` part must not run.
            globals.set_item("__name__", "__oxiida_script__")?;
            globals.set_item("__file__", script)?;
            let dir = std::path::Path::new(script).parent().map(|d| d.display().to_string()).unwrap_or_default();
            py.import("sys")?.getattr("path")?.call_method1("insert", (0, if dir.is_empty() { ".".to_owned() } else { dir }))?;
            let builtins = py.import("builtins")?;
            let code = builtins.getattr("compile")?.call1((source, script, "exec"))?;
            builtins.getattr("exec")?.call1((code, &globals))?;
            Ok(globals.unbind())
        };
        let scope = load().map_err(|e| {
            let (message, traceback) = describe(py, &e);
            format!("the script {script} failed: {message}\n{}", traceback.unwrap_or_default())
        })?;
        let scope_name = "the script's globals";
        Ok(Session { scope: Some(scope), scope_name, functions: Mutex::new(HashMap::new()), raised: None, running: None, owner: next_id() })
    }

    fn lookup<'py>(&self, py: Python<'py>, dotted: &str) -> PyResult<Bound<'py, PyAny>> {
        let parts: Vec<&str> = dotted.split('.').collect();
        let first = parts[0];
        let in_scope = match &self.scope {
            Some(globals) => globals.bind(py).get_item(first)?,
            None => None,
        };
        let (mut obj, rest) = match in_scope {
            Some(obj) => (obj, &parts[1..]),
            None if parts.len() == 1 => (py.import("builtins")?.getattr(first)?, &parts[1..]),
            None => {
                // The longest importable module prefix, then attributes.
                let mut found = None;
                for cut in (1..parts.len()).rev() {
                    if let Ok(module) = py.import(parts[..cut].join(".")) {
                        found = Some((module.into_any(), &parts[cut..]));
                        break;
                    }
                }
                match found {
                    Some(f) => f,
                    None => {
                        return Err(pyo3::exceptions::PyImportError::new_err(format!("no module named `{}` can be imported", parts[0])))
                    }
                }
            }
        };
        for attr in rest {
            obj = obj.getattr(*attr)?;
        }
        Ok(obj)
    }

    pub fn resolve(&self, dotted: &str) -> Result<(), String> {
        Python::attach(|py| {
            let obj = self.lookup(py, dotted).map_err(|e| {
                let (message, _) = describe(py, &e);
                match &self.scope {
                    Some(_) => format!("`{dotted}` is not found in {}, nor as a builtin or module ({message})", self.scope_name),
                    None => format!("`{dotted}` is not found as a builtin or module ({message})"),
                }
            })?;
            if !obj.is_callable() {
                return Err(format!("`{dotted}` is a {}, not a function", type_name(&obj)));
            }
            static KEYS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let key = KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let resolved = Arc::new(Resolved { function: obj.unbind(), key, pickled: OnceLock::new() });
            self.functions.lock().unwrap_or_else(|p| p.into_inner()).insert(dotted.to_owned(), resolved);
            Ok(())
        })
    }

    pub fn call(&self, dotted: &str, args: &[Value], process: bool) -> Result<Value, Failure> {
        let resolved = self.functions.lock().unwrap_or_else(|p| p.into_inner()).get(dotted).cloned();
        let Some(resolved) = resolved else {
            return Err(Failure {
                status: oxiida_abi::STATUS_NOT_FOUND,
                message: format!("`{dotted}` was never resolved"),
                traceback: None,
            });
        };
        let _attached = Attached::enter();
        Python::attach(|py| {
            let result = if process { self.call_in_worker(py, dotted, &resolved, args) } else { self.call_here(py, &resolved, args) }?;
            from_python(&result).map_err(|why| Failure {
                status: oxiida_abi::STATUS_BAD_ARGUMENTS,
                message: format!("the result of `{dotted}` cannot cross: {why}"),
                traceback: None,
            })
        })
    }

    fn call_here<'py>(&self, py: Python<'py>, resolved: &Resolved, args: &[Value]) -> Result<Bound<'py, PyAny>, Failure> {
        let args = python_args(py, args)?;
        // SAFETY: a plain C call; the GIL is held.
        let ident = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
        if let Some(running) = &self.running {
            running.lock().unwrap_or_else(|p| p.into_inner()).push(ident);
        }
        let result = resolved.function.bind(py).call1(args);
        if let Some(running) = &self.running {
            running.lock().unwrap_or_else(|p| p.into_inner()).retain(|&i| i != ident);
        }
        let result = result.map_err(|e| {
            let (message, traceback) = describe(py, &e);
            let value = e.value(py);
            // Keep the frames: re-raised later, the exception must still show them.
            if let Some(tb) = e.traceback(py) {
                let _ = value.setattr("__traceback__", tb);
            }
            self.keep_raised(&message, value.as_any());
            Failure { status: oxiida_abi::STATUS_RAISED, message, traceback }
        })?;
        Ok(result)
    }

    /// Remembers what a call raised, for `oxiida.run` to raise it again.
    fn keep_raised(&self, message: &str, exception: &Bound<'_, PyAny>) {
        if let Some(raised) = &self.raised {
            raised.lock().unwrap_or_else(|p| p.into_inner()).push((message.to_owned(), exception.clone().unbind()));
        }
    }

    /// `=f=`: pickle here, run in a worker process, unpickle here. The GIL is
    /// released while the worker runs.
    fn call_in_worker<'py>(
        &self,
        py: Python<'py>,
        dotted: &str,
        resolved: &Resolved,
        args: &[Value],
    ) -> Result<Bound<'py, PyAny>, Failure> {
        let cannot_send = |e: PyErr| {
            let (message, traceback) = describe(py, &e);
            Failure {
                status: oxiida_abi::STATUS_BAD_ARGUMENTS,
                message: format!("`{dotted}` cannot be sent to a worker process: {message}"),
                traceback,
            }
        };
        let function = match resolved.pickled.get() {
            Some(bytes) => bytes,
            None => {
                let dumps = py.import("cloudpickle").and_then(|m| m.call_method1("dumps", (resolved.function.bind(py),)));
                let bytes: Vec<u8> = dumps.and_then(|b| b.extract()).map_err(cannot_send)?;
                resolved.pickled.get_or_init(|| bytes)
            }
        };
        let args = python_args(py, args)?;
        let args: Vec<u8> =
            py.import("pickle").and_then(|m| m.call_method1("dumps", (args, 5))).and_then(|b| b.extract()).map_err(cannot_send)?;
        let pool = worker_pool(py).map_err(cannot_send)?;
        let answer = py.detach(|| pool.call(self.owner, resolved.key, function, &args)).map_err(|why| Failure {
            status: oxiida_abi::STATUS_WORKER_CRASHED,
            message: why,
            traceback: None,
        })?;
        let loads = |bytes: Vec<u8>| py.import("pickle")?.call_method1("loads", (pyo3::types::PyBytes::new(py, &bytes),));
        match answer {
            Answer::Returned(bytes) => loads(bytes).map_err(|e| {
                let (message, traceback) = describe(py, &e);
                Failure {
                    status: oxiida_abi::STATUS_INTERNAL,
                    message: format!("the result of `{dotted}` could not be unpickled: {message}"),
                    traceback,
                }
            }),
            Answer::Raised(bytes) => {
                let (kind, text, traceback, exception): (String, String, String, Option<Vec<u8>>) = loads(bytes)
                    .and_then(|t| t.extract())
                    .unwrap_or_else(|_| ("Exception".into(), "(unreadable)".into(), String::new(), None));
                let message = format!("{kind}: {text}");
                if let Some(exception) = exception.filter(|_| self.raised.is_some()) {
                    // The original exception, its remote traceback as its cause (as
                    // concurrent.futures does); one that cannot unpickle stays an OxiidaError.
                    let remote = py.import("oxiida").and_then(|m| m.getattr("RemoteTraceback")?.call1((traceback.clone(),)));
                    if let (Ok(exc), Ok(remote)) = (loads(exception), remote) {
                        if exc.setattr("__cause__", remote).is_ok() {
                            self.keep_raised(&message, &exc);
                        }
                    }
                }
                Err(Failure { status: oxiida_abi::STATUS_RAISED, message, traceback: Some(format!("in a worker process:\n{traceback}")) })
            }
        }
    }
}

/// Calls holding (or about to take) the GIL on a runtime thread. A thread
/// that releases the GIL while the interpreter finalizes aborts the whole
/// process, so the package's exit handler waits for these to end.
static ATTACHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct Attached;

impl Attached {
    fn enter() -> Attached {
        ATTACHED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Attached
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        ATTACHED.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Waits (up to `limit`) until no call is inside Python: one interrupted at
/// exit is usually ending. A call blocked in C for longer is left.
#[cfg(feature = "package")]
pub fn wait_for_calls(limit: std::time::Duration) {
    let until = std::time::Instant::now() + limit;
    while ATTACHED.load(std::sync::atomic::Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A fresh namespace holding the names a client pickled: each workflow's own.
fn unpickle_scope(py: Python<'_>, encoded: &str) -> PyResult<Py<PyDict>> {
    let bytes = py.import("base64")?.call_method1("b64decode", (encoded,))?;
    let names = py.import("pickle")?.call_method1("loads", (bytes,))?;
    let scope = PyDict::new(py);
    scope.set_item("__name__", "__oxiida_submitted__")?;
    scope.update(names.cast::<pyo3::types::PyMapping>()?)?;
    Ok(scope.unbind())
}

fn python_args<'py>(py: Python<'py>, args: &[Value]) -> Result<Bound<'py, PyTuple>, Failure> {
    let internal = |e: PyErr| {
        let (message, traceback) = describe(py, &e);
        Failure { status: oxiida_abi::STATUS_INTERNAL, message, traceback }
    };
    let args: Vec<_> = args.iter().map(|a| to_python(py, a)).collect::<PyResult<_>>().map_err(internal)?;
    PyTuple::new(py, args).map_err(internal)
}

/// The process's worker pool; the first call starts it with this
/// interpreter and module path.
fn worker_pool(py: Python<'_>) -> PyResult<&'static Pool> {
    if let Some(pool) = started() {
        return Ok(pool);
    }
    let module_path: Vec<String> = py.import("sys")?.getattr("path")?.extract()?;
    Ok(pool(&worker_python(py), &module_path.join(":")))
}

/// The interpreter workers run: this process's, unless it is an embedding
/// binary (the oxiida CLI), then the one the plugin was built against.
fn worker_python(py: Python<'_>) -> String {
    let exe: String = py.import("sys").and_then(|s| s.getattr("executable")?.extract()).unwrap_or_default();
    let is_python = std::path::Path::new(&exe).file_name().is_some_and(|n| n.to_string_lossy().starts_with("python"));
    if is_python {
        exe
    } else {
        env!("OXIIDA_BUILD_PYTHON").to_owned()
    }
}
