//! The `oxiida._oxiida` extension module behind the `oxiida` package. It
//! embeds the runtime and hands it this crate's own plugin table, linked in:
//! calls go through the same C ABI as under the CLI.

use std::sync::Arc;

use oxiida::plugin::{codec, in_process, LoadedPlugin, PluginHost};
use oxiida::{Limits, Output, Source};
use pyo3::create_exception;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::to_python;
use crate::session::lend_scope;

create_exception!(oxiida, OxiidaError, pyo3::exceptions::PyException, "An oxiida workflow failed, or has errors.");

/// `print` goes to `sys.stdout`, so pytest's capsys and Jupyter see it.
struct PyStdout;

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
fn prepare(source: &Source, scope: Bound<'_, PyDict>) -> PyResult<(PluginHost, oxiida::ir::Program)> {
    let host = PluginHost::new(&[(plugin()?, lend_scope(scope.unbind()))]).map_err(OxiidaError::new_err)?;
    let program = oxiida::compile(source, &host).map_err(|errors| OxiidaError::new_err(source.render(&errors, false)))?;
    Ok((host, program))
}

#[pyfunction]
fn _check(source: &str, scope: Bound<'_, PyDict>, file_name: &str) -> PyResult<()> {
    prepare(&Source::new(file_name, source), scope).map(drop)
}

#[pyfunction]
fn _run<'py>(py: Python<'py>, source: &str, scope: Bound<'py, PyDict>, file_name: &str) -> PyResult<Bound<'py, PyDict>> {
    let source = Source::new(file_name, source);
    let (host, program) = prepare(&source, scope)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| OxiidaError::new_err(e.to_string()))?;
    // The GIL is released while the workflow runs; each call takes it back.
    let limits = Limits { inline_calls: true, ..Limits::default() };
    let done = py.detach(|| runtime.block_on(oxiida::execute(&program, &host, &PyStdout, limits)));
    let vars = done.map_err(|d| OxiidaError::new_err(source.render(&[d], false)))?;
    let out = PyDict::new(py);
    for (name, value) in vars {
        out.set_item(&*name, to_python(py, &codec::to_wire(&value))?)?;
    }
    Ok(out)
}

#[pymodule]
fn _oxiida(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("OxiidaError", m.py().get_type::<OxiidaError>())?;
    m.add_function(wrap_pyfunction!(_run, m)?)?;
    m.add_function(wrap_pyfunction!(_check, m)?)?;
    Ok(())
}
