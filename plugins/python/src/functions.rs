//! One workflow's Python functions: where required names are looked up,
//! the functions resolved for it, and how it calls them, in this process or
//! (`=f=`) in a worker. The C-ABI plugin's session and the package's
//! [`Host`](oxiida::foreign::Host) both wrap one of these; only the value
//! type they convert to differs.
//!
//! Lookup: with a scope (a script's globals, `oxiida.run`'s caller, the
//! functions sent to a daemon), names are found there first; dotted names
//! not in scope import modules (`math.sqrt`); plain names fall back to
//! builtins. Resolved functions are kept, so a call looks nothing up.

use std::collections::HashMap;
use std::ffi::c_ulong;
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::convert::{from_python, type_name, Crossing};
use crate::pool::{next_key, Answer, Context, Pool, PoolError};

/// How a call failed; the front ends map `kind` to their own statuses.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub kind: Kind,
    pub message: String,
    pub traceback: Option<String>,
    /// What the function raised, as the Python object (kept only when the
    /// workflow's caller can raise it again: the package).
    pub exception: Option<Py<PyAny>>,
}

/// What went wrong, in the ABI's one vocabulary (never `Ok`).
pub use oxiida_abi::Status as Kind;

impl CallError {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        CallError { kind, message: message.into(), traceback: None, exception: None }
    }

    /// A Python exception met while preparing or finishing a call.
    fn python(py: Python<'_>, kind: Kind, context: &str, err: &PyErr) -> Self {
        let (message, traceback) = describe(py, err);
        CallError { kind, message: format!("{context}{message}"), traceback, exception: None }
    }
}

/// Why a scope could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("cannot read the script {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the script {path} failed: {message}\n{traceback}")]
    Script { path: String, message: String, traceback: String },
    #[cfg(feature = "package")]
    #[error("the functions sent with the workflow cannot be unpickled here: {message}\n{traceback}")]
    Unpickle { message: String, traceback: String },
}

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

/// Who made these functions, which decides two things.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    /// `oxiida run --plugin python`: the session owns its `=f=` pool, and
    /// exceptions end as text.
    Cli,
    /// The `oxiida` package (`oxiida.run`, its daemon): pools are shared per
    /// environment, and exceptions are kept to be raised again.
    Package,
}

/// A function a workflow required.
struct Resolved {
    function: Py<PyAny>,
    /// Names it in the worker pool's caches (unique in the process).
    key: u64,
    /// The function, cloudpickled on its first `=f=` call.
    pickled: OnceLock<Vec<u8>>,
}

/// The calls of one workflow that are inside Python right now.
#[derive(Default)]
pub struct Running {
    state: Mutex<RunningState>,
    ended: Condvar,
}

#[derive(Default)]
struct RunningState {
    /// The threads running plain calls, by Python thread ident.
    threads: Vec<c_ulong>,
    /// Every call inside this module's code (plain or `=f=`).
    calls: usize,
}

impl Running {
    #[cfg(feature = "package")]
    /// Raises KeyboardInterrupt in the threads still running plain calls
    /// (Python threads cannot be killed; this is how they stop). It lands
    /// at the function's next bytecode: a call blocked in C (a sleep, a
    /// read) ends when that returns.
    pub fn interrupt(&self, _gil: Python<'_>) {
        for &ident in self.state.lock().threads.iter() {
            // SAFETY: the GIL is held (the token proves it); the ident is a
            // thread inside a call, which removes itself under the GIL.
            unsafe { pyo3::ffi::PyThreadState_SetAsyncExc(ident as std::ffi::c_long, pyo3::ffi::PyExc_KeyboardInterrupt) };
        }
    }

    #[cfg(feature = "package")]
    pub fn is_idle(&self) -> bool {
        self.state.lock().calls == 0
    }

    #[cfg(feature = "package")]
    /// Waits until no call is inside Python, or until `deadline`.
    pub fn wait_idle(&self, deadline: std::time::Instant) {
        let mut state = self.state.lock();
        while state.calls > 0 {
            if self.ended.wait_until(&mut state, deadline).timed_out() {
                return;
            }
        }
    }

    fn enter(&self) -> Entered<'_> {
        self.state.lock().calls += 1;
        Entered(self)
    }
}

/// A call counted in [`Running`] until dropped.
struct Entered<'a>(&'a Running);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.calls -= 1;
        if state.calls == 0 {
            self.0.ended.notify_all();
        }
    }
}

/// A thread inside plain calls: counted as a call in [`Running`] and
/// known to [`Running::interrupt`] until dropped.
pub struct Here<'a> {
    running: &'a Running,
    ident: c_ulong,
    // Read by `Functions::call_in`, which only the package has.
    #[cfg_attr(not(feature = "package"), allow(dead_code))]
    py: Python<'a>,
    /// The function called last, looked up once for a run of its calls.
    #[cfg_attr(not(feature = "package"), allow(dead_code))]
    last: Option<(Arc<str>, Arc<Resolved>)>,
}

impl<'a> Here<'a> {
    fn enter(py: Python<'a>, running: &'a Running) -> Here<'a> {
        // SAFETY: a plain C call with no arguments; the GIL is held (`py`).
        let ident = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
        let mut state = running.state.lock();
        state.calls += 1;
        state.threads.push(ident);
        drop(state);
        Here { running, ident, py, last: None }
    }
}

impl Drop for Here<'_> {
    fn drop(&mut self) {
        let mut state = self.running.state.lock();
        state.threads.retain(|&i| i != self.ident);
        state.calls -= 1;
        if state.calls == 0 {
            self.running.ended.notify_all();
        }
    }
}

pub struct Functions {
    /// Where names are looked up first, when there is a scope.
    scope: Option<Py<PyDict>>,
    /// What `scope` is, for errors.
    scope_name: &'static str,
    /// What to do when a name is not found (`oxiida.run` found the scope
    /// itself: it says where it looked, and to pass `scope=`).
    hint: Option<String>,
    /// Where the coroutines of `async def` functions are awaited.
    event_loop: Mutex<Option<EventLoop>>,
    /// The coroutines being awaited now, as concurrent futures: cancelled
    /// with the workflow.
    awaiting: Mutex<Vec<Py<PyAny>>>,
    /// Set when the workflow is over: no coroutine is awaited after it.
    ended: std::sync::atomic::AtomicBool,
    resolved: Mutex<HashMap<String, Arc<Resolved>>>,
    front: Front,
    /// Where this workflow's `=f=` calls run, once one has.
    pool: Mutex<Option<Arc<Pool>>>,
    /// Names this workflow's `=f=` calls in the pool.
    owner: u64,
    context: Arc<Context>,
    pub running: Arc<Running>,
    /// Where `=f=` calls go instead of the pool, when the workflow has an executor.
    pub executor: Option<crate::executor::Executor>,
}

impl Functions {
    pub fn new(scope: Option<Py<PyDict>>, scope_name: &'static str, front: Front, context: Arc<Context>) -> Functions {
        Functions {
            scope,
            scope_name,
            hint: None,
            event_loop: Mutex::new(None),
            awaiting: Mutex::new(Vec::new()),
            ended: std::sync::atomic::AtomicBool::new(false),
            resolved: Mutex::new(HashMap::new()),
            front,
            pool: Mutex::new(None),
            owner: next_key(),
            context,
            running: Arc::default(),
            executor: None,
        }
    }

    /// Adds `hint` to the error of a name that is not found.
    #[cfg(feature = "package")]
    pub fn with_hint(mut self, hint: Option<String>) -> Functions {
        self.hint = hint;
        self
    }

    /// Awaits the coroutines of `async def` functions on `event_loop` (the
    /// caller's, under `oxiida.run_async`) rather than on a private one.
    #[cfg(feature = "package")]
    pub fn with_loop(self, event_loop: Py<PyAny>) -> Functions {
        *self.event_loop.lock() = Some(EventLoop::Caller(event_loop));
        self
    }

    /// The workflow is over, or abandoned: its `=f=` calls are killed, the
    /// coroutines it awaits are cancelled, and its private loop (if it made
    /// one) stops. Its plain calls still running end on their own.
    pub fn end(&self, py: Python<'_>) {
        self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(executor) = &self.executor {
            executor.cancel(py);
        }
        #[cfg(feature = "package")]
        self.cancel_workers();
        let awaiting = std::mem::take(&mut *self.awaiting.lock());
        for future in awaiting {
            let _ = future.bind(py).call_method0("cancel");
        }
        let private = match &*self.event_loop.lock() {
            Some(EventLoop::Private(helper)) => Some(helper.clone_ref(py)),
            _ => None,
        };
        if let Some(helper) = private {
            let _ = helper.bind(py).call_method0("close");
        }
    }

    /// The loop that coroutines are awaited on: the caller's, or this
    /// workflow's private one (made here, the first time). No lock is held
    /// while Python runs: starting a thread releases the GIL.
    fn event_loop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let known = match &*self.event_loop.lock() {
            Some(EventLoop::Caller(l)) => Some((l.clone_ref(py), false)),
            Some(EventLoop::Private(helper)) => Some((helper.clone_ref(py), true)),
            None => None,
        };
        match known {
            Some((l, false)) => return Ok(l.into_bound(py)),
            Some((helper, true)) => return helper.bind(py).getattr("loop"),
            None => {}
        }
        let made = loop_helpers(py)?.getattr("PrivateLoop")?.call0()?;
        let mut slot = self.event_loop.lock();
        let kept = match &*slot {
            Some(EventLoop::Private(helper)) => Some(helper.clone_ref(py)),
            Some(EventLoop::Caller(l)) => Some(l.clone_ref(py)),
            None => None,
        };
        let Some(kept) = kept else {
            *slot = Some(EventLoop::Private(made.clone().unbind()));
            drop(slot);
            return made.getattr("loop");
        };
        // Another call made one first: keep it and close this one.
        let is_private = matches!(&*slot, Some(EventLoop::Private(_)));
        drop(slot);
        made.call_method0("close")?;
        if is_private {
            kept.bind(py).getattr("loop")
        } else {
            Ok(kept.into_bound(py))
        }
    }

    /// Awaits a coroutine on the workflow's loop from this (the call's)
    /// thread, which waits with the GIL released; its result, or what it raised.
    fn await_coroutine<'py>(&self, py: Python<'py>, coroutine: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        // A call of a workflow that is over (cancelled): no loop is made for it.
        if self.ended.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = coroutine.call_method0("close");
            return Err(pyo3::exceptions::asyncio::CancelledError::new_err("the workflow was cancelled"));
        }
        let event_loop = match self.event_loop(py) {
            Ok(l) => l,
            Err(e) => {
                let _ = coroutine.call_method0("close");
                return Err(e);
            }
        };
        let future = loop_helpers(py)?.getattr("submit")?.call1((coroutine, event_loop))?;
        let id = future.as_ptr() as usize;
        self.awaiting.lock().push(future.clone().unbind());
        // Ended meanwhile: `end` may have missed this one.
        if self.ended.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = future.call_method0("cancel");
        }
        let result = future.call_method0("result");
        self.awaiting.lock().retain(|f| f.as_ptr() as usize != id);
        result
    }

    #[cfg(feature = "package")]
    /// Kills the workers running this workflow's `=f=` calls.
    pub fn cancel_workers(&self) {
        if let Some(pool) = &*self.pool.lock() {
            pool.cancel(self.owner);
        }
        if let Some(executor) = &self.executor {
            Python::attach(|py| executor.cancel(py));
        }
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
                let found =
                    (1..parts.len()).rev().find_map(|cut| py.import(parts[..cut].join(".")).ok().map(|m| (m.into_any(), &parts[cut..])));
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

    /// Finds `dotted` and keeps it for calls; the error says why not.
    pub fn resolve(&self, dotted: &str) -> Result<(), String> {
        Python::attach(|py| {
            let obj = self.lookup(py, dotted).map_err(|e| {
                let (message, _) = describe(py, &e);
                let found = match &self.scope {
                    Some(_) => format!("`{dotted}` is not found in {}, nor as a builtin or module ({message})", self.scope_name),
                    None => format!("`{dotted}` is not found as a builtin or module ({message})"),
                };
                match &self.hint {
                    Some(hint) => format!("{found}; {hint}"),
                    None => found,
                }
            })?;
            if !obj.is_callable() {
                let ty = type_name(&obj);
                let article = if ty.starts_with(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U']) { "an" } else { "a" };
                let mut why = format!("`{dotted}` is {article} {ty}, not a function");
                // A plain value of the caller's scope: the workflow gets it as an input.
                if self.front == Front::Package && !dotted.contains('.') {
                    why.push_str(&format!(
                        "; to give the workflow its value, drop the `require` and pass it as an input: `inputs={{\"{dotted}\": {dotted}}}`"
                    ));
                }
                return Err(why);
            }
            let resolved = Arc::new(Resolved { function: obj.unbind(), key: next_key(), pickled: OnceLock::new() });
            self.resolved.lock().insert(dotted.to_owned(), resolved);
            Ok(())
        })
    }

    /// What identifies the code of `dotted` (resolved already) for
    /// `--cache`: a SHA-256 over its bytecode, constants, defaults, closure
    /// cells and the globals it reads (`fingerprint.py`); `None` when it
    /// was not resolved or cannot be hashed.
    pub fn fingerprint(&self, dotted: &str) -> Option<Vec<u8>> {
        let resolved = self.resolved.lock().get(dotted).cloned()?;
        Python::attach(|py| {
            let helpers = fingerprint_helpers(py).ok()?;
            helpers.getattr("fingerprint").and_then(|f| f.call1((resolved.function.bind(py),))).and_then(|b| b.extract::<Vec<u8>>()).ok()
        })
    }

    /// Calls `dotted` with `args` and the keyword arguments `keywords` (as
    /// `f(*args, **keywords)`), here or (`process`) in a worker process. An
    /// unexpected keyword is the function's own `TypeError`, raised as any
    /// exception is.
    pub fn call<K: AsRef<str>, V: crate::pool::plain::Plain>(
        &self,
        dotted: &str,
        args: &[V],
        keywords: &[(K, V)],
        process: bool,
    ) -> Result<V, CallError> {
        let resolved = self.resolved(dotted)?;
        let _entered = self.running.enter();
        Python::attach(|py| {
            let (args, kwargs) = python_arguments(py, args, keywords)?;
            let result = if let (true, Some(executor)) = (process, &self.executor) {
                executor.call(py, self.front, dotted, resolved.key, &resolved.function, args, kwargs)?
            } else if process {
                return self.call_in_worker(py, dotted, &resolved, args, kwargs);
            } else {
                let _here = Here::enter(py, &self.running);
                self.call_entered(py, &resolved, args, kwargs)?
            };
            plain_result(dotted, &result)
        })
    }

    /// Plain calls run one after another on this thread, under one GIL
    /// hold ([`Functions::call_in`]): counted in `running` once, not per call.
    #[cfg(feature = "package")]
    pub fn here<'a>(&'a self, py: Python<'a>) -> Here<'a> {
        Here::enter(py, &self.running)
    }

    /// [`Functions::call`] of a plain call, for a thread inside [`Functions::here`].
    #[cfg(feature = "package")]
    pub fn call_in<K: AsRef<str>, V: crate::pool::plain::Plain>(
        &self,
        here: &mut Here<'_>,
        dotted: &str,
        args: &[V],
        keywords: &[(K, V)],
    ) -> Result<V, CallError> {
        let resolved = match &here.last {
            Some((name, resolved)) if &**name == dotted => resolved.clone(),
            _ => {
                let resolved = self.resolved(dotted)?;
                here.last = Some((Arc::from(dotted), resolved.clone()));
                resolved
            }
        };
        let (args, kwargs) = python_arguments(here.py, args, keywords)?;
        let result = self.call_entered(here.py, &resolved, args, kwargs)?;
        plain_result(dotted, &result)
    }

    /// What `resolve` found for `dotted`.
    fn resolved(&self, dotted: &str) -> Result<Arc<Resolved>, CallError> {
        let resolved = self.resolved.lock().get(dotted).cloned();
        resolved.ok_or_else(|| CallError::new(Kind::NotFound, format!("`{dotted}` was never resolved")))
    }

    /// A plain call by a thread counted in `running` ([`Here`]).
    fn call_entered<'py>(
        &self,
        py: Python<'py>,
        resolved: &Resolved,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> Result<Bound<'py, PyAny>, CallError> {
        let result = resolved.function.bind(py).call(args, kwargs.as_ref());
        // An `async def` function: its coroutine is awaited on the workflow's loop.
        let result = match result {
            Ok(r) if is_coroutine(py, &r) => self.await_coroutine(py, r),
            other => other,
        };
        result.map_err(|e| {
            let (message, traceback) = describe(py, &e);
            let exception = (self.front == Front::Package).then(|| {
                let value = e.value(py);
                // Keep the frames: raised again later, it must still show them.
                if let Some(tb) = e.traceback(py) {
                    let _ = value.setattr("__traceback__", tb);
                }
                value.clone().into_any().unbind()
            });
            CallError { kind: Kind::Raised, message, traceback, exception }
        })
    }

    /// The pool this workflow's `=f=` calls use, started on first use with
    /// this interpreter and module path.
    fn pool(&self, py: Python<'_>) -> PyResult<Arc<Pool>> {
        let mut pool = self.pool.lock();
        if let Some(pool) = &*pool {
            return Ok(pool.clone());
        }
        let module_path: Vec<String> = py.import("sys")?.getattr("path")?.extract()?;
        let (python, module_path) = (worker_python(py), module_path.join(":"));
        // The package shares one pool per environment; a CLI session owns its own.
        let made = match self.front {
            #[cfg(feature = "package")]
            Front::Package => crate::pool::shared(&python, &module_path),
            _ => Pool::new(&python, &module_path).map(Arc::new),
        };
        let made = made.map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
        Ok(pool.insert(made).clone())
    }

    /// `=f=`: pickle here, run in a worker process, unpickle here. The GIL
    /// is released while the worker runs.
    fn call_in_worker<'py, V: crate::pool::plain::Plain>(
        &self,
        py: Python<'py>,
        dotted: &str,
        resolved: &Resolved,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> Result<V, CallError> {
        let (pool, request) = self.prepare_for_worker(py, dotted, resolved, args, kwargs)?;
        let context = &*self.context;
        let sent = crate::pool::Request {
            key: request.key,
            function: &request.function,
            args: &request.args,
            with_keywords: request.with_keywords,
            // Called inline on the workflow's thread: the interpreter's hint holds.
            unpickle: V::UNPICKLE && crate::pool::plain::result_kept(),
        };
        let answer = py.detach(|| pool.call(self.owner, context, &sent));
        self.answer_from_worker(py, dotted, answer)
    }

    /// `=f=` calls that may all run at once (a `para`'s), sent to one worker
    /// in one batch: pickled here (one GIL hold), sent as frames written at
    /// once, answered in order, unpickled here (one GIL hold). A call that
    /// cannot be prepared fails alone; a worker that dies fails the calls of
    /// the batch it had not answered. `calls` are (name, arguments, keyword
    /// arguments).
    #[cfg(feature = "package")]
    pub fn call_batch<K: AsRef<str>, V: crate::pool::plain::Plain>(&self, calls: &[BatchCall<'_, K, V>]) -> Vec<Result<V, CallError>> {
        let _entered = self.running.enter();
        Python::attach(|py| {
            let mut results: Vec<Option<Result<V, CallError>>> = Vec::with_capacity(calls.len());
            let mut requests = Vec::new();
            let mut pool = None;
            for (at, (dotted, args, keywords, _)) in calls.iter().enumerate() {
                let prepared = self
                    .prepare_call(py, dotted, args, keywords)
                    .and_then(|(resolved, args, kwargs)| self.prepare_for_worker(py, dotted, &resolved, args, kwargs));
                match prepared {
                    Ok((p, request)) => {
                        pool.get_or_insert(p);
                        requests.push((at, request));
                        results.push(None);
                    }
                    Err(e) => results.push(Some(Err(e))),
                }
            }
            if let Some(pool) = pool {
                let context = &*self.context;
                let kept: Vec<bool> = requests.iter().map(|(at, _)| calls[*at].3).collect();
                let answers = py.detach(|| {
                    let sent: Vec<crate::pool::Request<'_>> = requests
                        .iter()
                        .zip(kept)
                        .map(|((_, r), kept)| crate::pool::Request {
                            key: r.key,
                            function: &r.function,
                            args: &r.args,
                            with_keywords: r.with_keywords,
                            unpickle: V::UNPICKLE && kept,
                        })
                        .collect();
                    pool.call_batch(self.owner, context, &sent)
                });
                for ((at, _), answer) in requests.iter().zip(answers) {
                    let dotted = calls[*at].0;
                    results[*at] = Some(self.answer_from_worker(py, dotted, answer));
                }
            }
            results.into_iter().map(|r| r.expect("every call is answered")).collect()
        })
    }

    /// A call's function and its arguments as Python objects.
    #[cfg(feature = "package")]
    #[allow(clippy::type_complexity)]
    fn prepare_call<'py, K: AsRef<str>, V: Crossing>(
        &self,
        py: Python<'py>,
        dotted: &str,
        args: &[V],
        keywords: &[(K, V)],
    ) -> Result<(Arc<Resolved>, Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>), CallError> {
        let resolved = self.resolved(dotted)?;
        let (args, kwargs) = python_arguments(py, args, keywords)?;
        Ok((resolved, args, kwargs))
    }

    /// The pool and what to send it for one `=f=` call: the function and the
    /// context pickled once, the arguments now.
    fn prepare_for_worker<'py>(
        &self,
        py: Python<'py>,
        dotted: &str,
        resolved: &Resolved,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> Result<(Arc<Pool>, Prepared), CallError> {
        // Transport failures say so: the function never ran.
        let cannot_send = |what: &str, e: PyErr| {
            let (message, traceback) = describe(py, &e);
            let message = format!(
                "could not send {what} to the worker (pickling failed: {message}); make it picklable with cloudpickle, or call `{dotted}` without `=f=`"
            );
            CallError { kind: Kind::BadArguments, message, traceback, exception: None }
        };
        let function = match resolved.pickled.get() {
            Some(bytes) => bytes.clone(),
            None => {
                let dumps = py.import("cloudpickle").and_then(|m| m.call_method1("dumps", (resolved.function.bind(py),)));
                let bytes: Vec<u8> = dumps.and_then(|b| b.extract()).map_err(|e| cannot_send(&format!("`{dotted}`"), e))?;
                resolved.pickled.get_or_init(|| bytes).clone()
            }
        };
        if self.context.pickled.get().is_none() {
            let bytes = pickle_context(py, &self.context).map_err(|e| cannot_send("the working directory and environment", e))?;
            let _ = self.context.pickled.set(bytes);
        }
        // With keyword arguments, the worker gets `(args, kwargs)` (and a flag saying so).
        let with_keywords = kwargs.is_some();
        let dumps = |payload: Bound<'py, PyAny>| py.import("pickle").and_then(|m| m.call_method1("dumps", (payload, 5)));
        let payload = match kwargs {
            Some(kwargs) => PyTuple::new(py, [args.into_any(), kwargs.into_any()]).map(Bound::into_any),
            None => Ok(args.into_any()),
        };
        let args: Vec<u8> =
            payload.and_then(dumps).and_then(|b| b.extract()).map_err(|e| cannot_send(&format!("the arguments of `{dotted}`"), e))?;
        let pool = self.pool(py).map_err(|e| CallError::python(py, Kind::WorkerCrashed, "", &e))?;
        Ok((pool, Prepared { key: resolved.key, function, args, with_keywords }))
    }

    /// A result a worker pickled (and the thread unpickling it as it came,
    /// if one did): kept unread ([`Plain::lazy`](crate::pool::plain::Plain::lazy)),
    /// else read from the pickle, else converted from the object as a plain
    /// call's result is.
    fn returned<V: crate::pool::plain::Plain>(
        py: Python<'_>,
        dotted: &str,
        bytes: Vec<u8>,
        object: Option<crate::pool::stream::Unpickled>,
    ) -> Result<V, CallError> {
        let (bytes, object) = match V::lazy(bytes, object) {
            Ok(value) => return Ok(value),
            Err(given_back) => given_back,
        };
        if let Some(value) = crate::pool::plain::decode(&bytes) {
            return Ok(value);
        }
        let result = match object.and_then(|o| o.wait(py)) {
            Some(object) => object.into_bound(py),
            None => py.import("pickle").and_then(|m| m.call_method1("loads", (PyBytes::new(py, &bytes),))).map_err(|e| {
                let (message, traceback) = describe(py, &e);
                let message = format!("could not receive the result of `{dotted}` from the worker (unpickling failed: {message}); return None, bool, int, float, str, list, tuple or dict");
                CallError { kind: Kind::BadResult, message, traceback, exception: None }
            })?,
        };
        plain_result(dotted, &result)
    }

    /// What a worker answered, as the result or the error of the call. A
    /// result of plain values is read from its pickle directly; any other
    /// is unpickled and converted as a plain call's result is.
    fn answer_from_worker<V: crate::pool::plain::Plain>(
        &self,
        py: Python<'_>,
        dotted: &str,
        answer: Result<Answer, PoolError>,
    ) -> Result<V, CallError> {
        let answer = answer.map_err(|e: PoolError| {
            let kind =
                if matches!(e, PoolError::Died { .. } | PoolError::DiedBefore { .. }) { Kind::WorkerCrashed } else { Kind::Internal };
            CallError::new(kind, e.to_string())
        })?;
        let loads = |bytes: Vec<u8>| py.import("pickle")?.call_method1("loads", (PyBytes::new(py, &bytes),));
        match answer {
            Answer::Returned(bytes) => Self::returned(py, dotted, bytes, None),
            Answer::Streamed(bytes, object) => Self::returned(py, dotted, bytes, object),
            Answer::ReturnedWithBuffers(bytes, buffers) => {
                let result = py
                    .import("pickle")
                    .and_then(|m| {
                        let kwargs = PyDict::new(py);
                        kwargs.set_item("buffers", buffers)?;
                        m.getattr("loads")?.call((PyBytes::new(py, &bytes),), Some(&kwargs))
                    })
                    .map_err(|e| {
                        let (message, traceback) = describe(py, &e);
                        let message = format!("could not receive the result of `{dotted}` from the worker (unpickling failed: {message})");
                        CallError { kind: Kind::BadResult, message, traceback, exception: None }
                    })?;
                plain_result(dotted, &result)
            }
            // The worker checks what it returns as this process would: the same words.
            Answer::CannotCross(bytes) => {
                let (type_name, why): (String, String) =
                    loads(bytes).and_then(|t| t.extract()).unwrap_or_else(|_| ("value".into(), "(unreadable)".into()));
                Err(CallError::new(Kind::BadResult, format!("cannot return {type_name} from `{dotted}`: {why}")))
            }
            Answer::CannotLoad(bytes) => {
                let why: String = loads(bytes).and_then(|t| t.extract()).unwrap_or_else(|_| "(unreadable)".into());
                Err(CallError::new(
                    Kind::BadArguments,
                    format!("could not load `{dotted}` in the worker (unpickling failed: {why}); make the module that defines it importable there (workers get this interpreter's sys.path and need cloudpickle), or call `{dotted}` without `=f=`"),
                ))
            }
            Answer::CannotPickle(bytes) => {
                let why: String = loads(bytes).and_then(|t| t.extract()).unwrap_or_else(|_| "(unreadable)".into());
                Err(CallError::new(
                    Kind::BadResult,
                    format!("could not send the result of `{dotted}` back from the worker (pickling failed: {why}); return None, bool, int, float, str, list, tuple or dict"),
                ))
            }
            Answer::Raised(bytes) => {
                let (kind, text, traceback, exception): (String, String, String, Option<Vec<u8>>) = loads(bytes)
                    .and_then(|t| t.extract())
                    .unwrap_or_else(|_| ("Exception".into(), "(unreadable)".into(), String::new(), None));
                let message = format!("{kind}: {text}");
                // The original exception, its remote traceback as its cause (as
                // concurrent.futures does); one that cannot unpickle stays text.
                let exception = exception.filter(|_| self.front == Front::Package).and_then(|bytes| {
                    let remote = py.import("oxiida").and_then(|m| m.getattr("RemoteTraceback")?.call1((traceback.clone(),))).ok()?;
                    let exc = loads(bytes).ok()?;
                    exc.setattr("__cause__", remote).ok()?;
                    Some(exc.unbind())
                });
                Err(CallError { kind: Kind::Raised, message, traceback: Some(format!("in a worker process:\n{traceback}")), exception })
            }
        }
    }
}

/// One call of [`Functions::call_batch`]: its name, arguments and keyword
/// arguments, and whether the workflow keeps its result unread
/// ([`oxiida::foreign::result_kept`], asked when the call was queued).
#[cfg(feature = "package")]
pub type BatchCall<'a, K, V> = (&'a str, &'a [V], &'a [(K, V)], bool);

/// One `=f=` call, pickled for a worker.
struct Prepared {
    key: u64,
    function: Vec<u8>,
    args: Vec<u8>,
    with_keywords: bool,
}

/// Where coroutines are awaited: the caller's loop, or a private one (a
/// `PrivateLoop` of `_loop.py`, owned by this workflow).
enum EventLoop {
    /// Only the package's `run_async` has a caller's loop.
    #[cfg_attr(not(feature = "package"), allow(dead_code))]
    Caller(Py<PyAny>),
    Private(Py<PyAny>),
}

/// A module of the package's own Python text (`_loop.py`, `fingerprint.py`,
/// `_executor.py`), built into the library and made once per process in `cell`.
pub(crate) fn built_in<'py>(
    py: Python<'py>,
    cell: &'static pyo3::sync::PyOnceLock<Py<PyModule>>,
    code: &str,
    file: &std::ffi::CStr,
    name: &std::ffi::CStr,
) -> PyResult<&'py Bound<'py, PyModule>> {
    cell.get_or_try_init(py, || {
        let code = std::ffi::CString::new(code).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        PyModule::from_code(py, &code, file, name).map(Bound::unbind)
    })
    .map(|m| m.bind(py))
}

/// `_loop.py`.
fn loop_helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static HELPERS: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    built_in(py, &HELPERS, include_str!("../python/oxiida/_loop.py"), c"oxiida/_loop.py", c"oxiida_loop")
}

/// The module that fingerprints functions (`fingerprint.py`).
fn fingerprint_helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static HELPERS: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    built_in(py, &HELPERS, include_str!("fingerprint.py"), c"oxiida/_fingerprint.py", c"oxiida_fingerprint")
}

/// Whether `obj` is a coroutine (what calling an `async def` function returns).
fn is_coroutine(py: Python<'_>, obj: &Bound<'_, PyAny>) -> bool {
    static COROUTINE: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    COROUTINE.import(py, "types", "CoroutineType").is_ok_and(|t| obj.is_instance(t).unwrap_or(false))
}

/// A call's arguments as Python objects: the positional ones, and the keyword ones.
#[allow(clippy::type_complexity)]
fn python_arguments<'py, K: AsRef<str>, V: Crossing>(
    py: Python<'py>,
    args: &[V],
    keywords: &[(K, V)],
) -> Result<(Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>), CallError> {
    let args = args.iter().map(|a| a.to_python(py)).collect::<PyResult<Vec<_>>>().and_then(|a| PyTuple::new(py, a));
    let args = args.map_err(|e| CallError::python(py, Kind::Internal, "", &e))?;
    let kwargs = python_keywords(py, keywords).map_err(|e| CallError::python(py, Kind::Internal, "", &e))?;
    Ok((args, kwargs))
}

/// A plain call's result as a workflow value, or why it cannot cross.
fn plain_result<V: Crossing>(dotted: &str, result: &Bound<'_, PyAny>) -> Result<V, CallError> {
    from_python(result)
        .map_err(|why| CallError::new(Kind::BadResult, format!("cannot return {} from `{dotted}`: {why}", type_name(result))))
}

/// The keyword arguments as a dict in the order written, or `None` when the
/// call passes none (then the function is called with positional ones only).
fn python_keywords<'py, K: AsRef<str>, V: Crossing>(py: Python<'py>, keywords: &[(K, V)]) -> PyResult<Option<Bound<'py, PyDict>>> {
    if keywords.is_empty() {
        return Ok(None);
    }
    let kwargs = PyDict::new(py);
    for (k, v) in keywords {
        kwargs.set_item(k.as_ref(), v.to_python(py)?)?;
    }
    Ok(Some(kwargs))
}

/// `(cwd, env or None)`, as the worker reads it.
fn pickle_context(py: Python<'_>, context: &Context) -> PyResult<Vec<u8>> {
    let env = match &context.env {
        Some(vars) => {
            let d = PyDict::new(py);
            for (k, v) in vars {
                d.set_item(k, v)?;
            }
            d.into_any()
        }
        None => py.None().into_bound(py),
    };
    py.import("pickle")?.call_method1("dumps", ((&context.cwd, env), 5))?.extract()
}

/// A script's globals: runs `path` in a fresh namespace (the CLI plugin's
/// `--plugin python=script.py`).
pub fn load_script(py: Python<'_>, path: &str) -> Result<Py<PyDict>, ScopeError> {
    let source = std::fs::read_to_string(path).map_err(|source| ScopeError::Read { path: path.to_owned(), source })?;
    let load = || -> PyResult<Py<PyDict>> {
        let globals = PyDict::new(py);
        // Not "__main__": a script's `if __name__ == "__main__":` part must not run.
        globals.set_item("__name__", "__oxiida_script__")?;
        globals.set_item("__file__", path)?;
        let dir = std::path::Path::new(path).parent().map(|d| d.display().to_string()).unwrap_or_default();
        py.import("sys")?.getattr("path")?.call_method1("insert", (0, if dir.is_empty() { ".".to_owned() } else { dir }))?;
        let builtins = py.import("builtins")?;
        let code = builtins.getattr("compile")?.call1((source, path, "exec"))?;
        builtins.getattr("exec")?.call1((code, &globals))?;
        Ok(globals.unbind())
    };
    load().map_err(|e| {
        let (message, traceback) = describe(py, &e);
        ScopeError::Script { path: path.to_owned(), message, traceback: traceback.unwrap_or_default() }
    })
}

/// A fresh namespace holding the names a client pickled: each workflow's own.
#[cfg(feature = "package")]
pub fn unpickle_scope(py: Python<'_>, pickled: &[u8]) -> Result<Py<PyDict>, ScopeError> {
    let unpickle = || -> PyResult<Py<PyDict>> {
        let names = py.import("pickle")?.call_method1("loads", (PyBytes::new(py, pickled),))?;
        let scope = PyDict::new(py);
        scope.set_item("__name__", "__oxiida_submitted__")?;
        scope.update(names.cast::<pyo3::types::PyMapping>()?)?;
        Ok(scope.unbind())
    };
    unpickle().map_err(|e| {
        let (message, traceback) = describe(py, &e);
        ScopeError::Unpickle { message, traceback: traceback.unwrap_or_default() }
    })
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
