//! `=f=` calls on an executor instead of the built-in pool: a Dask cluster
//! (`distributed.Client`, used natively) or any
//! `concurrent.futures.Executor`. What is done in Python lives in
//! `python/oxiida/_executor.py`, loaded from this crate's own text (as
//! `_loop.py` is), so the CLI plugin needs no installed package.
//!
//! Which executor a workflow uses is decided once, before it runs:
//! `oxiida.run(..., executor=)`, the daemon's `--executor`, a submitted
//! workflow's own, else `OXIIDA_EXECUTOR`, else the built-in pool. An
//! executor that cannot be used (a scheduler that does not answer) is an
//! error then, before anything runs.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::functions::{describe, CallError, Front, Kind};

/// One workflow's executor: the Python `Dispatch` that submits its calls
/// and remembers its futures.
pub struct Executor(Py<PyAny>);

/// `_executor.py`.
fn helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static HELPERS: pyo3::sync::PyOnceLock<Py<PyModule>> = pyo3::sync::PyOnceLock::new();
    crate::functions::built_in(py, &HELPERS, include_str!("../python/oxiida/_executor.py"), c"oxiida/_executor.py", c"oxiida_executor")
}

/// Why an executor cannot be used, as the text the front ends show.
pub fn error_text(py: Python<'_>, err: &PyErr) -> String {
    if is_unusable(py, err) {
        err.value(py).to_string()
    } else {
        describe(py, err).0
    }
}

/// Whether `err` says the executor cannot be used (then its message says
/// why and what to do), rather than being a bug or a wrong argument.
pub fn is_unusable(py: Python<'_>, err: &PyErr) -> bool {
    helpers(py).and_then(|h| h.getattr("ExecutorError")).is_ok_and(|t| err.get_type(py).is(&t))
}

/// The executor `spec` names (an address such as `dask://HOST:PORT`, a
/// `distributed.Client`, a `concurrent.futures.Executor`), or `None` for
/// the built-in pool. A `None` spec reads `OXIIDA_EXECUTOR`. A Dask
/// scheduler is connected to here: one that does not answer is an error.
pub fn connect(py: Python<'_>, spec: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Executor>> {
    // The common case costs nothing: no executor anywhere, no module loaded.
    let spec = spec.filter(|s| !s.is_none());
    if spec.is_none() && std::env::var_os("OXIIDA_EXECUTOR").is_none_or(|v| v.is_empty()) {
        return Ok(None);
    }
    let none = py.None().into_bound(py);
    let dispatch = helpers(py)?.getattr("connect")?.call1((spec.unwrap_or(&none),))?;
    Ok((!dispatch.is_none()).then(|| Executor(dispatch.unbind())))
}

/// `spec` as an address for a daemon's runner to connect to (`oxiida.submit`).
#[cfg(feature = "package")]
pub fn address_of(py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    helpers(py)?.getattr("address_of")?.call1((spec,))?.extract()
}

impl Executor {
    /// Runs `function(*args, **kwargs)` on the executor, this thread waiting
    /// (Python releases the GIL while it waits for the future).
    #[allow(clippy::too_many_arguments)]
    pub fn call<'py>(
        &self,
        py: Python<'py>,
        front: Front,
        dotted: &str,
        key: u64,
        function: &Py<PyAny>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> Result<Bound<'py, PyAny>, CallError> {
        let dispatch = self.0.bind(py);
        let none = py.None().into_bound(py);
        let kwargs = kwargs.map(Bound::into_any).unwrap_or(none);
        // A recorded call asks who ran it (`crate::ran_by`): the function
        // then runs inside `_say_who` there, which also answers that.
        let reporting = crate::ran_by::wanted();
        let method = if reporting { "call_reporting" } else { "call" };
        let answer = dispatch.call_method1(method, (key, dotted, function.bind(py), args, kwargs));
        let answer = match answer {
            Ok(pair) if reporting => pair.extract::<(Bound<'py, PyAny>, String)>().map(|(result, who)| {
                crate::ran_by::remote(who);
                result
            }),
            other => other,
        };
        answer.map_err(|e| {
            let (message, traceback) = describe(py, &e);
            let cannot_send = helpers(py).and_then(|h| h.getattr("CannotSend")).is_ok_and(|t| e.get_type(py).is(&t));
            if cannot_send {
                let why = e.value(py).to_string();
                let message = format!(
                    "could not send `{dotted}` to the executor (pickling failed: {why}); make it picklable with cloudpickle, or call `{dotted}` without `=f=`"
                );
                return CallError { kind: Kind::BadArguments, message, traceback: None, exception: None };
            }
            let exception = (front == Front::Package).then(|| {
                let value = e.value(py);
                if let Some(tb) = e.traceback(py) {
                    let _ = value.setattr("__traceback__", tb);
                }
                value.clone().into_any().unbind()
            });
            let traceback = traceback.map(|t| format!("on the executor:\n{t}"));
            CallError { kind: Kind::Raised, message, traceback, exception }
        })
    }

    /// Cancels the workflow's futures still pending or running; no call is
    /// submitted after this.
    pub fn cancel(&self, py: Python<'_>) {
        if let Err(e) = self.0.bind(py).call_method0("cancel") {
            eprintln!("oxiida: cancelling the workflow's executor calls failed: {}", describe(py, &e).0);
        }
    }
}
