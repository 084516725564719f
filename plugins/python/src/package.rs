//! The `oxiida._oxiida` extension module behind the `oxiida` package. It
//! embeds the runtime and hands it this crate's own plugin table, linked in:
//! calls go through the same C ABI as under the CLI.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxiida::{Interrupt, Limits, Output, Source};
use oxiida_host::{codec, in_process, LoadedPlugin, PluginHost};
use pyo3::create_exception;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::to_python;
use crate::session::{lend_scope, Lent, Raised};

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

fn plugin() -> PyResult<Arc<LoadedPlugin>> {
    in_process(&crate::PLUGIN).map_err(OxiidaError::new_err)
}

/// Opens a session on `scope` and compiles `source` against it.
fn prepare(source: &Source, scope: Bound<'_, PyDict>) -> PyResult<(PluginHost, oxiida::ir::Program, Lent)> {
    let lent = lend_scope(scope.unbind());
    let host = PluginHost::new(&[(plugin()?, lent.config.clone())]).map_err(OxiidaError::new_err)?;
    let program = oxiida::compile(source, &host).map_err(|errors| OxiidaError::new_err(source.render(&errors, false)))?;
    Ok((host, program, lent))
}

#[pyfunction]
fn _check(source: &str, scope: Bound<'_, PyDict>, file_name: &str) -> PyResult<()> {
    prepare(&Source::new(file_name, source), scope).map(drop)
}

/// The workflow error as a Python exception: the original one when a
/// Python call raised it (with the workflow's report added as a note, so
/// the .ox file, line and column show), else an OxiidaError.
fn workflow_error(py: Python<'_>, source: &Source, error: &oxiida::Diagnostic, raised: &Raised) -> PyErr {
    let original = raised
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(m, _)| error.message.ends_with(m.as_str()))
        .map(|(_, e)| e.clone_ref(py));
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
    let (host, program, lent) = prepare(&source, scope)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(max_tasks.max(1))
        .build()
        .map_err(|e| OxiidaError::new_err(e.to_string()))?;
    // The GIL is released while the workflow runs; each call takes it back.
    let limits = Limits { inline_calls: true, max_tasks: max_tasks.max(1), max_fanout: max_fanout.max(1) };
    let interrupt = Interrupt::new();
    let signal: Mutex<Option<PyErr>> = Mutex::new(None);
    let done = py.detach(|| {
        runtime.block_on(async {
            tokio::select! {
                done = oxiida::execute_with_interrupt(&program, &host, &PyStdout, limits, &interrupt) => done,
                () = watch_signals(&interrupt, &signal) => unreachable!("the watch ends only by the workflow ending"),
            }
        })
    });
    // Plain calls still running on threads cannot be stopped; do not wait for
    // them. `=f=` calls still running (cancelled, or a `para` sibling failed) can.
    runtime.shutdown_background();
    crate::pool::cancel(lent.owner);
    if let Some(err) = signal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        lent.interrupt_running(py);
        return Err(err);
    }
    let vars = done.map_err(|d| workflow_error(py, &source, &d, &lent.raised))?;
    let out = PyDict::new(py);
    for (name, value) in vars {
        out.set_item(&*name, to_python(py, &codec::to_wire(&value))?)?;
    }
    Ok(out)
}

/// Python runs signal handlers only between bytecodes on the main thread,
/// and the workflow holds that thread: poll for them, so Ctrl-C raises
/// KeyboardInterrupt within a tenth of a second.
async fn watch_signals(interrupt: &Interrupt, signal: &Mutex<Option<PyErr>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Err(err) = Python::attach(|py| py.check_signals()) {
            *signal.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
            interrupt.trigger();
            std::future::pending::<()>().await;
        }
    }
}

/// At exit (registered with atexit): lets calls still ending on runtime
/// threads leave Python before it finalizes, and stops the `=f=` workers.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    py.detach(|| {
        crate::session::wait_for_calls(std::time::Duration::from_secs(1));
        crate::pool::shutdown();
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
