//! The `oxiida._oxiida` extension module behind the `oxiida` package. It
//! embeds the runtime and is its [`Host`] directly: values convert between
//! the runtime's and Python's with nothing in between, and an exception a
//! function raises travels as the Python object itself (in the error's
//! [`Cause`]) until `oxiida.run` raises it again.
//!
//! Each `oxiida.run` runs its workflow on a thread of its own, so every
//! call (inline or not) runs off the caller's thread: a called function may
//! itself call `oxiida.run` or `asyncio.run`. The caller waits with the GIL
//! released, woken by the workflow's end or by a signal: Ctrl-C raises one
//! KeyboardInterrupt in the caller at once.
//!
//! `oxiida.run_async` starts the same thread with `_start` and returns at
//! once: the workflow's end is handed to the caller's event loop by a
//! callback, and cancelling the awaiting task cancels the workflow.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use oxiida::foreign::{CallFuture, CallMode, Cause, EachCall, EachStream, ForeignError, ForeignErrorKind, ForeignName, Host, RanBy};
use oxiida::value::Value;
use oxiida::{Interrupt, Limits, Output, Source};
use parking_lot::Mutex;
use pyo3::create_exception;
use pyo3::prelude::*;
use pyo3::types::PyDict;

mod calls;
mod plugins;
mod threads;

use crate::convert::Crossing;
use crate::functions::{CallError, Front, Functions, Running};
use crate::pool::Context;

create_exception!(oxiida, OxiidaError, pyo3::exceptions::PyException, "An oxiida workflow failed, or has errors.");

/// `print` goes to `sys.stdout`, so pytest's capsys and Jupyter see it.
pub(crate) struct PyStdout;

impl Output for PyStdout {
    fn print(&self, text: &str) {
        Python::attach(|py| {
            if let Ok(out) = py.import("sys").and_then(|sys| sys.getattr("stdout")) {
                let _ = out.call_method1("write", (format!("{text}\n"),));
            }
        });
    }
}

/// What a Python function raised, carried in a [`ForeignError`]'s cause.
pub(crate) struct Raised(pub(crate) Py<PyAny>);

/// One workflow's Python functions, as the runtime's host.
pub struct PyHost {
    functions: Arc<Functions>,
    /// Where the calls that may overlap (in `para`) run: queues drained by
    /// this workflow's own threads, plain calls under one GIL hold and
    /// `=f=` calls in batches per worker (see `package/calls.rs`).
    calls: calls::Calls,
    /// `plugins=`: process plugins and others beside the Python scope
    /// (see `package/plugins.rs`).
    plugins: Option<oxiida_host::Beside>,
}

impl PyHost {
    pub fn new(functions: Functions) -> PyHost {
        let functions = Arc::new(functions);
        PyHost { calls: calls::Calls::new(functions.clone(), PYTHON_MAX_TASKS), functions, plugins: None }
    }

    pub(crate) fn with_plugins(mut self, plugins: Option<oxiida_host::Beside>) -> PyHost {
        self.plugins = plugins;
        self
    }

    /// The plugin that serves `name`, if one does (not the Python scope).
    fn plugin_for(&self, name: &ForeignName) -> Option<&oxiida_host::Beside> {
        self.plugins.as_ref().filter(|p| p.serves(name))
    }

    /// The workflow is over or abandoned: calls still queued never run.
    fn close(&self) {
        self.calls.close();
        if let Some(plugins) = &self.plugins {
            plugins.host().canceller().cancel();
        }
    }
}

impl Drop for PyHost {
    /// The workflow is over: its `=f=` calls still running are not wanted.
    fn drop(&mut self) {
        self.calls.close();
        self.functions.cancel_workers();
    }
}

fn foreign_error(e: CallError) -> ForeignError {
    let kind = ForeignErrorKind::from_status(e.kind).unwrap_or(ForeignErrorKind::Internal);
    let mut error = ForeignError::new(kind, e.message);
    error.traceback = e.traceback;
    error.cause = e.exception.map(|exception| Cause::new(Raised(exception)));
    error
}

impl Host for PyHost {
    fn resolve(&self, name: &ForeignName) -> Result<(), String> {
        if let Some(plugins) = &self.plugins {
            if let Some(found) = plugins.resolve(name, "python", || self.functions.resolve(&name.dotted())) {
                return found;
            }
        } else if let Some(from) = name.from.as_deref().filter(|&f| f != "python") {
            return Err(plugins::not_loaded(from));
        }
        self.functions.resolve(&name.dotted())
    }

    /// Python functions take keyword arguments (`f(*args, **kwargs)`); one
    /// that does not expect a keyword raises its own `TypeError` when called.
    fn keywords(&self, name: &ForeignName) -> Result<(), String> {
        if let Some(plugins) = self.plugin_for(name) {
            return plugins.host().keywords(name);
        }
        Ok(())
    }

    /// A call that may overlap others (in `para`): queued for this
    /// workflow's threads, no thread of its own.
    fn call(&self, name: &ForeignName, args: Vec<Value>, keywords: oxiida::foreign::Keywords, mode: CallMode) -> CallFuture {
        if let Some(plugins) = self.plugin_for(name) {
            return plugins.host().call(name, args, keywords, mode);
        }
        let queued = match mode {
            CallMode::Thread => self.calls.plain(name.dotted(), args, keywords),
            // On an executor (Dask, a ProcessPoolExecutor) each `=f=` call is
            // one future there, waited for on a thread of its own: only
            // `max_tasks` bounds them, since a cluster has its own workers.
            CallMode::Process if self.functions.executor.is_some() => {
                let functions = self.functions.clone();
                let dotted = name.dotted();
                return Box::pin(async move {
                    tokio::task::spawn_blocking(move || functions.call(&dotted, &args, &keywords, true).map_err(foreign_error))
                        .await
                        .unwrap_or_else(|e| Err(ForeignError::new(ForeignErrorKind::Internal, format!("the call's thread failed: {e}"))))
                });
            }
            CallMode::Process => self.calls.process(name.dotted(), args, keywords),
        };
        match queued {
            Ok(pending) => Box::pin(pending),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    /// The calls of a `para for` whose body is one call, queued together.
    /// On an executor, each `=f=` call is its own future there: not taken.
    fn call_each(&self, name: &ForeignName, calls: Vec<EachCall>, mode: CallMode) -> Result<EachStream, Vec<EachCall>> {
        if let Some(plugins) = self.plugin_for(name) {
            return plugins.host().call_each(name, calls, mode);
        }
        if mode == CallMode::Process && self.functions.executor.is_some() {
            return Err(calls);
        }
        Ok(match self.calls.each(&name.dotted(), calls, mode == CallMode::Process) {
            Ok(each) => Box::pin(each),
            Err(e) => Box::pin(calls::EachPending::failed(e)),
        })
    }

    /// A recorded call: an `=f=` call names the pool worker's pid, or the
    /// executor's worker (`crate::ran_by`); a plain call ran here.
    fn call_reporting(
        &self,
        name: &ForeignName,
        args: Vec<Value>,
        keywords: oxiida::foreign::Keywords,
        mode: CallMode,
        ran_by: RanBy,
    ) -> CallFuture {
        if let Some(plugins) = self.plugin_for(name) {
            return plugins.host().call_reporting(name, args, keywords, mode, ran_by);
        }
        if mode == CallMode::Thread {
            return self.call(name, args, keywords, mode);
        }
        if self.functions.executor.is_some() {
            let functions = self.functions.clone();
            let dotted = name.dotted();
            return Box::pin(async move {
                tokio::task::spawn_blocking(move || {
                    let (result, who) = crate::ran_by::asking(|| functions.call(&dotted, &args, &keywords, true).map_err(foreign_error));
                    if let Some(who) = who {
                        let _ = ran_by.set(who);
                    }
                    result
                })
                .await
                .unwrap_or_else(|e| Err(ForeignError::new(ForeignErrorKind::Internal, format!("the call's thread failed: {e}"))))
            });
        }
        match self.calls.process_reporting(name.dotted(), args, keywords, Some(ran_by)) {
            Ok(pending) => Box::pin(pending),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn call_here_reporting(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(std::sync::Arc<str>, Value)],
        mode: CallMode,
        ran_by: &RanBy,
    ) -> Option<Result<Value, ForeignError>> {
        if let Some(plugins) = self.plugin_for(name) {
            return plugins.host().call_here_reporting(name, args, keywords, mode, ran_by);
        }
        if mode == CallMode::Thread {
            return self.call_here(name, args, keywords, mode);
        }
        let (result, who) = crate::ran_by::asking(|| self.functions.call(&name.dotted(), args, keywords, true).map_err(foreign_error));
        if let Some(who) = who {
            let _ = ran_by.set(who);
        }
        Some(result)
    }

    /// Inline: the workflow runs on a thread of its own, never the caller's.
    fn call_here(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(std::sync::Arc<str>, Value)],
        mode: CallMode,
    ) -> Option<Result<Value, ForeignError>> {
        if let Some(plugins) = self.plugin_for(name) {
            return plugins.host().call_here(name, args, keywords, mode);
        }
        Some(self.functions.call(&name.dotted(), args, keywords, mode == CallMode::Process).map_err(foreign_error))
    }
}

/// Where `oxiida.run`'s `=f=` calls run: the caller's working directory
/// and environment at the time of the call.
fn caller_context(py: Python<'_>) -> PyResult<Arc<Context>> {
    let os = py.import("os")?;
    let cwd: String = os.getattr("getcwd")?.call0()?.extract()?;
    let env: Vec<(String, String)> =
        os.getattr("environ")?.call_method0("items")?.try_iter()?.map(|i| i?.extract()).collect::<PyResult<_>>()?;
    Ok(Context::new(cwd, Some(env)))
}

/// Makes the host for a scope and compiles `source` against it, with
/// `inputs` (names) as the workflow's inputs. `hint` is added to the error
/// of a name not found; `event_loop`, when given, is where `async def`
/// functions are awaited.
#[allow(clippy::too_many_arguments)]
fn prepare(
    py: Python<'_>,
    source: &Source,
    scope: Bound<'_, PyDict>,
    inputs: &[&str],
    hint: Option<String>,
    event_loop: Option<Py<PyAny>>,
    executor: Option<crate::executor::Executor>,
    plugin_specs: &[String],
) -> PyResult<(Arc<PyHost>, oxiida::ir::Program)> {
    let scope_name = if event_loop.is_some() { "the scope of `oxiida.run_async`" } else { "the scope of `oxiida.run`" };
    let mut functions = Functions::new(Some(scope.unbind()), scope_name, Front::Package, caller_context(py)?).with_hint(hint);
    functions.executor = executor;
    if let Some(event_loop) = event_loop {
        functions = functions.with_loop(event_loop);
    }
    // Started with the GIL released: a process plugin's hello is awaited.
    let plugins = py.detach(|| oxiida_host::Beside::open(plugin_specs)).map_err(OxiidaError::new_err)?;
    let host = Arc::new(PyHost::new(functions).with_plugins(plugins));
    let program =
        oxiida::compile_with_inputs(source, &*host, inputs).map_err(|errors| OxiidaError::new_err(source.render(&errors, false)))?;
    Ok((host, program))
}

/// `executor=` of `oxiida.run` (None: `OXIIDA_EXECUTOR`, else the pool):
/// one that cannot be used raises OxiidaError here, before anything runs.
pub(crate) fn connect_executor(py: Python<'_>, spec: Option<&Bound<'_, PyAny>>) -> PyResult<Option<crate::executor::Executor>> {
    crate::executor::connect(py, spec).map_err(|e| {
        if crate::executor::is_unusable(py, &e) {
            OxiidaError::new_err(crate::executor::error_text(py, &e))
        } else {
            e
        }
    })
}

/// `executor=` of `oxiida.submit`: an address the daemon's runner connects
/// to itself (a Client gives its scheduler's); other objects raise.
pub(crate) fn connect_address(py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    crate::executor::address_of(py, spec).map_err(|e| {
        if crate::executor::is_unusable(py, &e) {
            OxiidaError::new_err(crate::executor::error_text(py, &e))
        } else {
            e
        }
    })
}

/// `inputs=` of `oxiida.run` (and `submit`): a mapping of names to values,
/// each value converted as a function's result is. `None` is no inputs.
/// The error names the input and says what crosses.
pub(crate) fn inputs_from_python<V: Crossing>(inputs: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<(String, V)>> {
    let Some(inputs) = inputs.filter(|i| !i.is_none()) else { return Ok(Vec::new()) };
    let items = inputs.call_method0("items").map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "inputs must be a mapping of names to values, such as {{\"n\": 5}}, not a {}",
            crate::convert::type_name(inputs)
        ))
    })?;
    let mut out = Vec::new();
    for item in items.try_iter()? {
        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        let Ok(name) = name.extract::<String>() else {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "input names must be str, not {}: the name is the variable the workflow reads",
                crate::convert::type_name(&name)
            )));
        };
        let value = crate::convert::from_python::<V>(&value)
            .map_err(|why| OxiidaError::new_err(format!("input `{name}` cannot cross into the workflow: {why}")))?;
        out.push((name, value));
    }
    Ok(out)
}

/// The names of `inputs=` for `check`: a mapping's keys (its values may be
/// anything) or any iterable of str.
pub(crate) fn input_names(inputs: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(inputs) = inputs.filter(|i| !i.is_none()) else { return Ok(Vec::new()) };
    inputs
        .try_iter()?
        .map(|name| name?.extract::<String>())
        .collect::<PyResult<_>>()
        .map_err(|_| pyo3::exceptions::PyTypeError::new_err("inputs must be a mapping whose keys are str (the names the workflow reads)"))
}

#[pyfunction]
#[pyo3(signature = (source, scope, file_name, inputs=None, hint=None, plugins=Vec::new()))]
fn _check(
    py: Python<'_>,
    source: &str,
    scope: Bound<'_, PyDict>,
    file_name: &str,
    inputs: Option<Bound<'_, PyAny>>,
    hint: Option<String>,
    plugins: Vec<String>,
) -> PyResult<()> {
    let names = input_names(inputs.as_ref())?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    prepare(py, &Source::new(file_name, source), scope, &names, hint, None, None, &plugins).map(drop)
}

/// The workflow error as a Python exception: the original one when a
/// Python call raised it (with the workflow's report added as a note, so
/// the .ox file, line and column show), else an OxiidaError.
fn workflow_error(py: Python<'_>, source: &Source, error: &oxiida::Diagnostic) -> PyErr {
    let original = error.cause.as_ref().and_then(|c| c.downcast_ref::<Raised>()).map(|r| r.0.clone_ref(py));
    match original {
        Some(exc) => {
            // Python prints the exception's own traceback; the note adds where in the workflow.
            let mut brief = error.clone();
            brief.notes.clear();
            let report = source.render(&[brief], false);
            let exc = exc.into_bound(py);
            if exc.hasattr("add_note").unwrap_or(false) {
                let _ = exc.call_method1("add_note", (format!("in the oxiida workflow:\n{report}"),));
            }
            PyErr::from_value(exc)
        }
        None => OxiidaError::new_err(source.render(std::slice::from_ref(error), false)),
    }
}

/// Python's I/O-bound calls wait on threads, so the package allows many at
/// once (the CLI's default suits processes): 1,000 `time.sleep` calls in a
/// `para for` take one sleep.
const PYTHON_MAX_TASKS: usize = 1024;

/// The workflow thread's stack: reserved, not committed, as the CLI's.
const STACK_BYTES: usize = 64 << 20;

type Outcome = Result<oxiida::Variables, Box<oxiida::Diagnostic>>;

/// Starts the workflow on a thread of its own; `finished` gets its outcome
/// on that thread, without the GIL.
fn launch(
    host: Arc<PyHost>,
    program: oxiida::ir::Program,
    inputs: Vec<(Arc<str>, Value)>,
    limits: Limits,
    interrupt: Interrupt,
    observer: Option<Arc<dyn oxiida::TaskObserver>>,
    finished: impl FnOnce(Outcome) + Send + 'static,
) -> PyResult<()> {
    std::thread::Builder::new()
        .name("oxiida-run".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let thread_host = host;
            let thread_interrupt = interrupt;
            let parking = thread_host.clone();
            parking.calls.wake_when_parking();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(limits.max_tasks)
                // The calls its branches queued start when the thread has nothing else to do.
                .on_thread_park(move || parking.calls.parking())
                .build();
            let ran = match runtime {
                // Attached once, then detached: the thread keeps its Python
                // thread state, so each inline call only takes the GIL back
                // instead of making and freeing a thread state.
                Ok(runtime) => Python::attach(|py| {
                    py.detach(|| {
                        let done = runtime
                            .block_on(oxiida::execute_observed(
                                &program,
                                inputs,
                                &*thread_host,
                                &PyStdout,
                                limits,
                                &oxiida::Context::default(),
                                &thread_interrupt,
                                observer.as_deref(),
                            ))
                            .map_err(Box::new);
                        // Plain calls still running on threads cannot be stopped; do not wait for them.
                        runtime.shutdown_background();
                        done
                    })
                }),
                Err(e) => Err(Box::new(oxiida::Diagnostic::new(
                    oxiida::Stage::Runtime,
                    Default::default(),
                    format!("cannot start a runtime: {e}"),
                ))),
            };
            finished(ran);
        })
        .map(drop)
        .map_err(|e| OxiidaError::new_err(format!("cannot start the workflow's thread: {e}")))
}

/// `inputs=` as the runtime's values, and their names.
type Inputs = Vec<(Arc<str>, Value)>;

fn workflow_inputs(inputs: Option<&Bound<'_, PyAny>>) -> PyResult<(Inputs, Vec<String>)> {
    let inputs: Vec<(String, Value)> = inputs_from_python(inputs)?;
    let names = inputs.iter().map(|(n, _)| n.clone()).collect();
    Ok((inputs.into_iter().map(|(n, v)| (Arc::from(n), v)).collect(), names))
}

fn limits(max_tasks: usize, max_fanout: usize) -> Limits {
    Limits { inline_calls: true, max_tasks: max_tasks.max(1), max_fanout: max_fanout.max(1), ramp_fanout: true }
}

/// The workflow's variables as a dict.
fn variables<'py>(py: Python<'py>, vars: oxiida::Variables) -> PyResult<Bound<'py, PyDict>> {
    crate::convert::variables(py, vars)
}

#[pyfunction]
#[pyo3(signature = (source, scope, file_name, max_tasks=PYTHON_MAX_TASKS, max_fanout=PYTHON_MAX_TASKS, inputs=None, hint=None, executor=None, record=false, cache=false, fingerprint=None, plugins=Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn _run<'py>(
    py: Python<'py>,
    source: &str,
    scope: Bound<'py, PyDict>,
    file_name: &str,
    max_tasks: usize,
    max_fanout: usize,
    inputs: Option<Bound<'py, PyAny>>,
    hint: Option<String>,
    executor: Option<Bound<'py, PyAny>>,
    record: bool,
    cache: bool,
    fingerprint: Option<Vec<u8>>,
    plugins: Vec<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let source = Source::new(file_name, source);
    let (inputs, names) = workflow_inputs(inputs.as_ref())?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let executor = connect_executor(py, executor.as_ref())?;
    let (host, program) = prepare(py, &source, scope, &names, hint, None, executor, &plugins)?;
    // `record=True` / `cache=True` (docs/durable.md): recorded into the
    // daemon's database; without them, no observer, as fast as before.
    let recording = if record || cache { Some(crate::daemon::Recording::start(py, file_name, &source.text)?) } else { None };
    let observer = recording
        .as_ref()
        .map(|r| Arc::new(r.recorder(cache, fingerprint.as_deref().unwrap_or_default())) as Arc<dyn oxiida::TaskObserver>);
    let interrupt = Interrupt::new();
    // The thread drops its end when the workflow is over: the caller wakes.
    let (done, ended) = UnixStream::pair().map_err(|e| OxiidaError::new_err(format!("cannot make a socket pair: {e}")))?;
    let outcome: Arc<Mutex<Option<Outcome>>> = Arc::default();
    let thread_outcome = outcome.clone();
    launch(host.clone(), program, inputs, limits(max_tasks, max_fanout), interrupt.clone(), observer, move |ran| {
        *thread_outcome.lock() = Some(ran);
        drop(done);
    })?;
    // Ctrl-C: stop the workflow, its `=f=` workers and its plain calls, and
    // raise at once; what still runs ends on its own.
    let abandon = |err: PyErr| {
        if let Some(recording) = &recording {
            recording.interrupted(py);
        }
        interrupt.trigger();
        host.close();
        host.functions.end(py);
        host.functions.running.interrupt(py);
        outlive(&host.functions.running);
        Err(err)
    };
    let wakeup = match Wakeup::install(py) {
        Ok(wakeup) => wakeup,
        Err(err) => return abandon(err),
    };
    loop {
        // Checked before each wait: a signal that came before it is not missed.
        if let Err(err) = py.check_signals() {
            drop(wakeup);
            return abandon(err);
        }
        let wake = wakeup.as_ref().map(|w| &w.read);
        if py.detach(|| ended_or_signalled(&ended, wake)) {
            break;
        }
    }
    drop(wakeup);
    let outcome = outcome.lock().take().expect("the workflow's thread sets its outcome before it ends");
    // `=f=` calls and coroutines still running (a `para` sibling failed) are not wanted.
    host.functions.end(py);
    outlive(&host.functions.running);
    if let Some(recording) = recording {
        recording.finish(py, outcome.as_ref().err().map(|d| source.render(std::slice::from_ref(&**d), false)));
    }
    let vars = outcome.map_err(|d| workflow_error(py, &source, &d))?;
    variables(py, vars)
}

/// A workflow started by `_start` (`oxiida.run_async`), to cancel it.
#[pyclass(module = "oxiida._oxiida", frozen)]
struct Started {
    host: Arc<PyHost>,
    interrupt: Interrupt,
}

#[pymethods]
impl Started {
    /// Stops the workflow as Ctrl-C stops `oxiida.run`'s: its `=f=` workers
    /// are killed, its coroutines cancelled, and its plain calls still
    /// running get a KeyboardInterrupt. Its `done` is then never called.
    fn cancel(&self, py: Python<'_>) {
        self.interrupt.trigger();
        self.host.close();
        self.host.functions.end(py);
        self.host.functions.running.interrupt(py);
        outlive(&self.host.functions.running);
    }
}

/// `oxiida.run_async`'s half in Rust: compiles (errors raise here), starts
/// the workflow on a thread of its own and returns at once. When the
/// workflow ends (and was not cancelled), `done(True, variables)` or
/// `done(False, exception)` is called on the workflow's thread; coroutines
/// of `async def` functions are awaited on `event_loop`.
#[pyfunction]
#[pyo3(signature = (source, scope, file_name, max_tasks, max_fanout, event_loop, done, inputs=None, hint=None, executor=None, record=false, cache=false, fingerprint=None, plugins=Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn _start(
    py: Python<'_>,
    source: &str,
    scope: Bound<'_, PyDict>,
    file_name: &str,
    max_tasks: usize,
    max_fanout: usize,
    event_loop: Py<PyAny>,
    done: Py<PyAny>,
    inputs: Option<Bound<'_, PyAny>>,
    hint: Option<String>,
    executor: Option<Bound<'_, PyAny>>,
    record: bool,
    cache: bool,
    fingerprint: Option<Vec<u8>>,
    plugins: Vec<String>,
) -> PyResult<Started> {
    let source = Source::new(file_name, source);
    let (inputs, names) = workflow_inputs(inputs.as_ref())?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let executor = connect_executor(py, executor.as_ref())?;
    let (host, program) = prepare(py, &source, scope, &names, hint, Some(event_loop), executor, &plugins)?;
    // As in `_run`: recorded, and ended on the workflow's thread before the loop hears of it.
    let recording = if record || cache { Some(crate::daemon::Recording::start(py, file_name, &source.text)?) } else { None };
    let observer = recording
        .as_ref()
        .map(|r| Arc::new(r.recorder(cache, fingerprint.as_deref().unwrap_or_default())) as Arc<dyn oxiida::TaskObserver>);
    let interrupt = Interrupt::new();
    let (thread_host, thread_interrupt) = (host.clone(), interrupt.clone());
    launch(host.clone(), program, inputs, limits(max_tasks, max_fanout), interrupt.clone(), observer, move |ran| {
        Python::attach(|py| {
            thread_host.functions.end(py);
            outlive(&thread_host.functions.running);
            if let Some(recording) = recording {
                if thread_interrupt.is_triggered() {
                    recording.interrupted(py);
                } else {
                    recording.finish(py, ran.as_ref().err().map(|d| source.render(std::slice::from_ref(&**d), false)));
                }
            }
            if thread_interrupt.is_triggered() {
                return; // cancelled: nobody waits for the outcome
            }
            let settled = match ran {
                Ok(vars) => variables(py, vars).map(|d| (true, d.into_any())),
                Err(d) => Err(workflow_error(py, &source, &d)),
            };
            let settled = settled.unwrap_or_else(|e| (false, e.into_value(py).into_bound(py).into_any()));
            if let Err(e) = done.bind(py).call1(settled) {
                e.write_unraisable(py, Some(done.bind(py)));
            }
        })
    })?;
    Ok(Started { host, interrupt })
}

/// Python's signal wakeup fd, pointed at a socket of ours while the main
/// thread waits for a workflow: Python's C handler writes to it whichever
/// thread the signal lands on, so the wait cannot miss a signal. Only the
/// main thread may set it, and only when nobody else has (a running asyncio
/// loop has its own): otherwise the wait relies on the signal interrupting
/// it (EINTR), which it does when the signal lands on the waiting thread.
struct Wakeup<'py> {
    py: Python<'py>,
    read: UnixStream,
    _write: UnixStream,
}

impl<'py> Wakeup<'py> {
    /// Our wakeup fd, or None where it cannot be set (off the main thread,
    /// or another is set). An error from Python (a signal's exception
    /// raised meanwhile) is the caller's to raise.
    fn install(py: Python<'py>) -> PyResult<Option<Wakeup<'py>>> {
        let Ok((read, write)) = UnixStream::pair() else { return Ok(None) };
        if read.set_nonblocking(true).and_then(|()| write.set_nonblocking(true)).is_err() {
            return Ok(None);
        }
        let set_wakeup_fd = py.import("signal")?.getattr("set_wakeup_fd")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("warn_on_full_buffer", false)?;
        let old: i64 = match set_wakeup_fd.call((write.as_raw_fd(),), Some(&kwargs)) {
            Ok(old) => old.extract()?,
            // Off the main thread: no signal is ours to handle there.
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyValueError>(py) => return Ok(None),
            Err(e) => return Err(e),
        };
        if old != -1 {
            set_wakeup_fd.call1((old,))?;
            return Ok(None);
        }
        Ok(Some(Wakeup { py, read, _write: write }))
    }
}

impl Drop for Wakeup<'_> {
    fn drop(&mut self) {
        if let Ok(set_wakeup_fd) = self.py.import("signal").and_then(|s| s.getattr("set_wakeup_fd")) {
            let _ = set_wakeup_fd.call1((-1,));
        }
    }
}

/// Sleeps until the other end of `ended` is closed (true), or a signal
/// arrives (false): written to `wakeup`, or interrupting the wait. Without
/// a wakeup fd, a signal handled between the caller's check and this wait
/// would not interrupt it: then the wait also ends every 100 ms.
fn ended_or_signalled(ended: &UnixStream, wakeup: Option<&UnixStream>) -> bool {
    let mut fds = [libc::pollfd { fd: ended.as_raw_fd(), events: libc::POLLIN, revents: 0 }; 2];
    let (n, timeout) = match wakeup {
        Some(w) => {
            fds[1].fd = w.as_raw_fd();
            (2, -1)
        }
        None => (1, 100),
    };
    loop {
        // SAFETY: `n` valid pollfds, for the length given.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout) };
        if ready == 0 {
            return false;
        }
        if ready > 0 {
            if fds[0].revents != 0 {
                return true;
            }
            // A signal's byte: drain it; the caller runs the handlers.
            let mut bytes = [0u8; 64];
            while wakeup.is_some_and(|mut w| std::io::Read::read(&mut w, &mut bytes).is_ok_and(|k| k > 0)) {}
            return false;
        }
        if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// Workflows whose `oxiida.run` returned while some of their calls were
/// still inside Python (cancelled, or a `para` sibling failed): at exit,
/// Python must not finalize under them (a thread that takes the GIL back
/// while the interpreter finalizes aborts the process).
static OUTLIVED: Mutex<Vec<Arc<Running>>> = Mutex::new(Vec::new());

fn outlive(running: &Arc<Running>) {
    let mut outlived = OUTLIVED.lock();
    outlived.retain(|r| !r.is_idle());
    if !running.is_idle() {
        outlived.push(running.clone());
    }
}

/// At exit (registered with atexit): lets calls still ending leave Python
/// before it finalizes (up to 1 s in all), and stops the `=f=` workers.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    py.detach(|| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let outlived = std::mem::take(&mut *OUTLIVED.lock());
        for running in outlived {
            running.wait_idle(deadline);
        }
        crate::pool::shutdown_shared();
    });
}

#[pymodule]
fn _oxiida(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    m.add("OxiidaError", m.py().get_type::<OxiidaError>())?;
    // The workspace's version: the package's (maturin reads it from
    // Cargo.toml), the CLI's and the daemon's are the same one.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(_run, m)?)?;
    m.add_function(wrap_pyfunction!(_check, m)?)?;
    m.add_function(wrap_pyfunction!(_start, m)?)?;
    m.add_class::<Started>()?;
    crate::daemon::register(m)?;
    Ok(())
}
