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

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use oxiida::foreign::{CallFuture, CallMode, Cause, ForeignError, ForeignErrorKind, ForeignName, Host};
use oxiida::value::Value;
use oxiida::{Interrupt, Limits, Output, Source};
use parking_lot::Mutex;
use pyo3::create_exception;
use pyo3::prelude::*;
use pyo3::types::PyDict;

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
}

impl PyHost {
    pub fn new(functions: Functions) -> PyHost {
        PyHost { functions: Arc::new(functions) }
    }
}

impl Drop for PyHost {
    /// The workflow is over: its `=f=` calls still running are not wanted.
    fn drop(&mut self) {
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
        if let Some(from) = name.from.as_deref().filter(|&f| f != "python") {
            return Err(format!("the oxiida package provides Python functions only (`from python`), not `from {from}`"));
        }
        self.functions.resolve(&name.dotted())
    }

    /// Python functions take keyword arguments (`f(*args, **kwargs)`); one
    /// that does not expect a keyword raises its own `TypeError` when called.
    fn keywords(&self, _name: &ForeignName) -> Result<(), String> {
        Ok(())
    }

    fn call(&self, name: &ForeignName, args: Vec<Value>, keywords: oxiida::foreign::Keywords, mode: CallMode) -> CallFuture {
        let functions = self.functions.clone();
        let dotted = name.dotted();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || functions.call(&dotted, &args, &keywords, mode == CallMode::Process).map_err(foreign_error))
                .await
                .unwrap_or_else(|e| Err(ForeignError::new(ForeignErrorKind::Internal, format!("the call's thread failed: {e}"))))
        })
    }

    /// Inline: the workflow runs on a thread of its own, never the caller's.
    fn call_here(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(std::sync::Arc<str>, Value)],
        mode: CallMode,
    ) -> Option<Result<Value, ForeignError>> {
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

/// Makes the host for a scope and compiles `source` against it.
fn prepare(py: Python<'_>, source: &Source, scope: Bound<'_, PyDict>) -> PyResult<(Arc<PyHost>, oxiida::ir::Program)> {
    let functions = Functions::new(Some(scope.unbind()), "the scope of `oxiida.run`", Front::Package, caller_context(py)?);
    let host = Arc::new(PyHost::new(functions));
    let program = oxiida::compile(source, &*host).map_err(|errors| OxiidaError::new_err(source.render(&errors, false)))?;
    Ok((host, program))
}

#[pyfunction]
fn _check(py: Python<'_>, source: &str, scope: Bound<'_, PyDict>, file_name: &str) -> PyResult<()> {
    prepare(py, &Source::new(file_name, source), scope).map(drop)
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

#[pyfunction]
#[pyo3(signature = (source, scope, file_name, max_tasks=PYTHON_MAX_TASKS, max_fanout=PYTHON_MAX_TASKS))]
fn _run<'py>(
    py: Python<'py>,
    source: &str,
    scope: Bound<'py, PyDict>,
    file_name: &str,
    max_tasks: usize,
    max_fanout: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let source = Source::new(file_name, source);
    let (host, program) = prepare(py, &source, scope)?;
    let limits = Limits { inline_calls: true, max_tasks: max_tasks.max(1), max_fanout: max_fanout.max(1) };
    let interrupt = Interrupt::new();
    // The thread drops its end when the workflow is over: the caller wakes.
    let (done, ended) = UnixStream::pair().map_err(|e| OxiidaError::new_err(format!("cannot make a socket pair: {e}")))?;
    let outcome: Arc<Mutex<Option<Outcome>>> = Arc::default();
    let (thread_host, thread_interrupt, thread_outcome) = (host.clone(), interrupt.clone(), outcome.clone());
    std::thread::Builder::new()
        .name("oxiida-run".into())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().max_blocking_threads(limits.max_tasks).build();
            let ran = match runtime {
                // Attached once, then detached: the thread keeps its Python
                // thread state, so each inline call only takes the GIL back
                // instead of making and freeing a thread state.
                Ok(runtime) => Python::attach(|py| {
                    py.detach(|| {
                        let done = runtime
                            .block_on(oxiida::execute_with_interrupt(&program, &*thread_host, &PyStdout, limits, &thread_interrupt))
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
            *thread_outcome.lock() = Some(ran);
            drop(done);
        })
        .map_err(|e| OxiidaError::new_err(format!("cannot start the workflow's thread: {e}")))?;
    // Ctrl-C: stop the workflow, its `=f=` workers and its plain calls, and
    // raise at once; what still runs ends on its own.
    let abandon = |err: PyErr| {
        interrupt.trigger();
        host.functions.cancel_workers();
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
    // `=f=` calls still running (a `para` sibling failed) are not wanted.
    host.functions.cancel_workers();
    outlive(&host.functions.running);
    let vars = outcome.map_err(|d| workflow_error(py, &source, &d))?;
    let out = PyDict::new(py);
    for (name, value) in vars {
        out.set_item(&*name, value.to_python(py)?)?;
    }
    Ok(out)
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
    m.add_function(wrap_pyfunction!(_run, m)?)?;
    m.add_function(wrap_pyfunction!(_check, m)?)?;
    crate::daemon::register(m)?;
    Ok(())
}
