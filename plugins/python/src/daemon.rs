//! The Python-bound daemon and its client: `python -m oxiida daemon start`
//! serves from this interpreter, and runs each workflow in a runner process
//! of its own: this same interpreter (`sys.executable`) with the daemon's
//! `sys.path`, so every workflow's Python calls see the environment
//! (sys.path, installed packages) the daemon was started from.
//! `oxiida.submit` sends a workflow with the caller's functions pickled.

use std::sync::Arc;

use oxiida_daemon::runner::Printer;
use oxiida_protocol::client::{Client, ConnectError};
use oxiida_protocol::ByteBuf;
use oxiida_protocol::Paths;
use oxiida_protocol::{Reply, Request, Submit};
use pyo3::create_exception;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::convert::Crossing;
use crate::functions::{unpickle_scope, Front, Functions};
use crate::package::{OxiidaError, PyHost, PyStdout};
use crate::pool::Context;

create_exception!(oxiida, DaemonNotRunningError, OxiidaError, "No daemon answers: start one with `python -m oxiida daemon start`.");
create_exception!(oxiida, UnknownWorkflowError, OxiidaError, "The daemon has no workflow with this id.");
create_exception!(oxiida, WrongEnvironmentError, OxiidaError, "The running daemon runs another Python environment than this one.");
create_exception!(
    oxiida,
    EnvironmentChangedWarning,
    pyo3::exceptions::PyUserWarning,
    "The daemon's environment (its site-packages) changed since it started: restart it."
);

fn paths() -> PyResult<Paths> {
    Paths::from_env().map_err(|e| OxiidaError::new_err(e.to_string()))
}

/// The start of the daemon's notice that its environment changed
/// (oxiida_daemon::watch), which becomes an EnvironmentChangedWarning.
const CHANGED: &str = "warning: the daemon's environment changed";

/// A connection to the daemon, its notices kept to be warned once each
/// ([`warn_notices`]); none running raises DaemonNotRunningError.
fn connect(py: Python<'_>, paths: &Paths) -> PyResult<Client> {
    py.detach(|| Client::connect_keeping_notices(paths)).map_err(|e| match e {
        ConnectError::NotRunning { .. } => DaemonNotRunningError::new_err(format!(
            "no daemon is running (socket {}); start one for this Python with `{} -m oxiida daemon start`",
            paths.socket.display(),
            sys_executable(py)
        )),
        other => OxiidaError::new_err(other.to_string()),
    })
}

/// The notices a call heard, each once: the environment warning through
/// `warnings.warn` (EnvironmentChangedWarning), any other to stderr.
fn warn_notices(py: Python<'_>, client: &mut Client) -> PyResult<()> {
    let mut seen = std::collections::BTreeSet::new();
    for notice in client.take_notices() {
        if !seen.insert(notice.clone()) {
            continue;
        }
        if notice.starts_with(CHANGED) {
            let text = notice.strip_prefix("warning: ").unwrap_or(&notice).replace('\0', " ");
            let text = std::ffi::CString::new(text).unwrap_or_default();
            PyErr::warn(py, &py.get_type::<EnvironmentChangedWarning>(), &text, 2)?;
        } else {
            eprintln_py(py, &format!("oxiida: daemon notice: {notice}"));
        }
    }
    Ok(())
}

/// One request and its reply; a daemon's `not_found` raises
/// UnknownWorkflowError, other errors OxiidaError. Without `notices`, the
/// daemon's notices are dropped (a call that repeats a request, as
/// `result`'s wait does, warns on its first alone).
fn call(py: Python<'_>, request: Request, notices: bool) -> PyResult<Reply> {
    let paths = paths()?;
    let mut client = connect(py, &paths)?;
    let reply = py.detach(|| client.call(&request));
    if notices {
        warn_notices(py, &mut client)?;
    }
    reply.map_err(call_error)
}

fn call_error(e: oxiida_protocol::client::CallError) -> PyErr {
    use oxiida_protocol::client::CallError;
    match e {
        CallError::Daemon { kind: oxiida_protocol::ErrorKind::NotFound, message } => {
            UnknownWorkflowError::new_err(format!("{message}: the daemon has no such workflow (`oxiida.workflows()` lists those it knows)"))
        }
        other => OxiidaError::new_err(other.to_string()),
    }
}

/// Decodes a `variables` field (a MessagePack map) into a dict.
fn variables_dict<'py>(py: Python<'py>, bytes: Option<&[u8]>) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    if let Some(bytes) = bytes {
        match oxiida_abi::Value::decode(bytes) {
            Ok(oxiida_abi::Value::Map(entries)) => {
                for (name, value) in entries {
                    out.set_item(name, value.to_python(py)?)?;
                }
            }
            _ => {
                return Err(OxiidaError::new_err(
                    "the daemon sent variables this client cannot read; upgrade the daemon and the package together",
                ))
            }
        }
    }
    Ok(out)
}

/// The key of `Submit::extra` under which `oxiida.submit` sends the
/// workflow's functions: a pickled dict of names, as bytes.
const FUNCTIONS: &str = "python";

/// The key of `Submit::extra` under which `oxiida.submit(executor=)` sends
/// the address of the executor its `=f=` calls run on, as UTF-8.
const EXECUTOR: &str = "executor";

/// The key of `Submit::extra` under which `oxiida.submit(plugins=)` sends
/// the plugins to start beside the workflow's Python functions: a
/// MessagePack array of specs as `oxiida.run(plugins=)` takes them.
const PLUGINS: &str = "plugins";

/// The key of `Submit::extra` under which the client sends the SHA-256 of
/// those plugins' files and scripts (`record::fingerprint`): only to make
/// it part of the workflow's cache identity.
const PLUGIN_CODE: &str = "plugins-code";

/// The specs sent under [`PLUGINS`], if any.
fn plugin_specs(submit: &Submit) -> Result<Vec<String>, String> {
    let Some(bytes) = submit.extra.get(PLUGINS) else { return Ok(Vec::new()) };
    let bad = || "the plugins sent with the workflow cannot be read; upgrade the daemon and the package together".to_string();
    match oxiida_abi::Value::decode(bytes).map_err(|_| bad())? {
        oxiida_abi::Value::Array(items) => {
            items.into_iter().map(|v| if let oxiida_abi::Value::Str(s) = v { Ok(s) } else { Err(bad()) }).collect()
        }
        _ => Err(bad()),
    }
}

/// Each submitted workflow's host, made in its runner: the functions its
/// client pickled, in a fresh namespace of their own, with the client's
/// working directory for its `=f=` calls (its plain calls run in the
/// runner, whose working directory that already is), and the plugins sent
/// with it (`oxiida.submit(plugins=)`) beside them, started here in the
/// runner, in the workflow's environment and working directory.
fn workflow_host(submit: &Submit, printer: Printer, executor: Option<&str>) -> Result<Arc<dyn oxiida::foreign::Host>, String> {
    if let Some(spec) = submit.plugins.first() {
        return Err(format!(
            "this daemon runs the Python functions sent with a workflow and loads no `--plugin` (`{}`); \
             send plugins with `oxiida.submit(source, plugins=[...])`, or submit to an `oxiida daemon`",
            spec.path
        ));
    }
    // Before the GIL is taken: a process plugin's hello is awaited.
    let plugins = oxiida_host::Beside::open(&plugin_specs(submit)?)?;
    Python::attach(|py| {
        // What the functions print is the workflow's output, in order with
        // its own prints (not the daemon's log).
        let stdout =
            Bound::new(py, WorkflowStdout { printer, pending: parking_lot::Mutex::new(String::new()) }).map_err(|e| e.to_string())?;
        py.import("sys").and_then(|sys| sys.setattr("stdout", stdout)).map_err(|e| e.to_string())?;
        let scope = match submit.extra.get(FUNCTIONS) {
            Some(pickled) => unpickle_scope(py, pickled).map_err(|e| e.to_string())?,
            None => PyDict::new(py).unbind(),
        };
        let cwd = submit.cwd.clone().unwrap_or_else(|| "/".into());
        // `=f=` calls get the client's environment as `oxiida.run`'s get
        // their caller's; plain calls have it already (see `env_adopted`).
        let env = submit.env.as_ref().map(|env| {
            env.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned())).collect()
        });
        let mut functions = Functions::new(Some(scope), "the functions sent with the workflow", Front::Package, Context::new(cwd, env));
        // The workflow's own executor (`oxiida.submit(executor=)`), else the
        // daemon's (`--executor`), else OXIIDA_EXECUTOR in its environment.
        let spec = submit.extra.get(EXECUTOR).map(|b| String::from_utf8_lossy(b).into_owned()).or(executor.map(str::to_owned));
        let spec = spec.map(|s| s.into_pyobject(py).map(Bound::into_any)).transpose().map_err(|e| e.to_string())?;
        functions.executor = crate::executor::connect(py, spec.as_ref()).map_err(|e| crate::executor::error_text(py, &e))?;
        Ok(Arc::new(PyHost::new(functions).with_plugins(plugins)) as Arc<dyn oxiida::foreign::Host>)
    })
}

/// A runner's `sys.stdout`: each whole line written is one printed value of
/// the workflow; a partial line waits for its end, or goes as a piece
/// (`more`) on `flush`. Writes from several threads share one buffer, as
/// they share a terminal.
#[pyclass(module = "oxiida", frozen)]
struct WorkflowStdout {
    printer: Printer,
    pending: parking_lot::Mutex<String>,
}

#[pymethods]
impl WorkflowStdout {
    fn write(&self, text: &str) -> usize {
        let mut pending = self.pending.lock();
        pending.push_str(text);
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            (self.printer)(&line[..end], false);
        }
        text.chars().count()
    }

    fn flush(&self) {
        let rest = std::mem::take(&mut *self.pending.lock());
        if !rest.is_empty() {
            (self.printer)(&rest, true);
        }
    }

    fn isatty(&self) -> bool {
        false
    }

    fn writable(&self) -> bool {
        true
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        "utf-8"
    }
}

/// Before the workflow's end is reported: what `sys.stdout` still holds.
fn flush_stdout() {
    Python::attach(|py| {
        if let Ok(out) = py.import("sys").and_then(|sys| sys.getattr("stdout")) {
            if let Ok(ours) = out.cast::<WorkflowStdout>() {
                let rest = std::mem::take(&mut *ours.get().pending.lock());
                if !rest.is_empty() {
                    (ours.get().printer)(&rest, false);
                }
            }
        }
    });
}

/// A failed workflow's exception for its client (`Finished::exception`):
/// the exception a called function raised, as `oxiida._daemon._pack`
/// pickles it with its traceback's text; None for other errors.
fn pack_exception(source: &oxiida::Source, error: &oxiida::Diagnostic) -> Option<Vec<u8>> {
    let raised = error.cause.as_ref()?.downcast_ref::<crate::package::Raised>()?;
    // Where in the workflow, without the traceback the exception carries.
    let mut brief = error.clone();
    brief.notes.clear();
    let place = source.render(&[brief], false);
    Python::attach(|py| {
        let packed = py.import("oxiida._daemon").and_then(|m| m.getattr("_pack")?.call1((raised.0.bind(py), &place))?.extract::<Vec<u8>>());
        match packed {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                eprintln!("oxiida runner: the exception cannot be sent to the client: {e}");
                None
            }
        }
    })
}

/// Serves a daemon in this process until it is stopped; every workflow runs
/// in a runner (this interpreter, see [`_runner`]) on this package's host.
/// `watch` lists the folders whose changes make every reply carry a
/// warning (site-packages); the limits are `daemon start`'s flags, as text
/// (`None`: the default), checked as the `oxiida` CLI checks them.
#[pyfunction]
#[pyo3(signature = (watch, memory_limit=None, output_limit=None, max_running=None, idle_timeout=None, executor=None))]
fn _daemon_serve(
    py: Python<'_>,
    watch: Vec<String>,
    memory_limit: Option<String>,
    output_limit: Option<String>,
    max_running: Option<String>,
    idle_timeout: Option<String>,
    executor: Option<String>,
) -> PyResult<()> {
    use oxiida_daemon::limits;
    let bad = |why: String| OxiidaError::new_err(why);
    let mut chosen = limits::Limits::default();
    if let Some(m) = memory_limit {
        chosen.memory = limits::parse_size(&m, true).map_err(|e| bad(format!("--memory-limit: {e}")))?;
    }
    if let Some(o) = output_limit {
        chosen.output = limits::parse_size(&o, false).map_err(|e| bad(format!("--output-limit: {e}")))?.unwrap_or(chosen.output);
    }
    if let Some(n) = max_running {
        chosen.max_running = limits::parse_count(&n).map_err(|e| bad(format!("--max-running: {e}")))?;
    }
    if let Some(t) = idle_timeout {
        chosen.idle_timeout = limits::parse_secs(&t).map_err(|e| bad(format!("--idle-timeout: {e}")))?;
    }
    let paths = paths()?;
    let restart = "python -m oxiida daemon restart";
    let sys = py.import("sys")?;
    let sys_path: String = sys.getattr("path")?.repr()?.extract()?;
    // The runner is this interpreter with this sys.path: the environment
    // the daemon was started from, whatever folder a workflow runs in.
    // `--executor`: checked here (its form; a scheduler is reached by each
    // workflow's runner), handed to every runner.
    if let Some(spec) = &executor {
        let spec = spec.clone().into_pyobject(py)?.into_any();
        crate::executor::address_of(py, &spec).map_err(|e| bad(format!("--executor: {}", crate::executor::error_text(py, &e))))?;
    }
    let given = executor.clone();
    let executor = match executor {
        Some(e) => e.into_pyobject(py)?.repr()?.extract::<String>()?,
        None => "None".into(),
    };
    let code = format!("import sys; sys.path[:] = {sys_path}; from oxiida import _oxiida; _oxiida._runner({executor})");
    let options = oxiida_daemon::server::Options {
        watch: watch.into_iter().map(Into::into).collect(),
        restart_hint: format!("{restart} (with {})", sys_executable(py)),
        runner: vec![sys_executable(py).into(), "-c".into(), code.into()],
        host_name: Some(format!("python (a runner per workflow, {})", sys_executable(py))),
        ready: oxiida_daemon::server::ready_pipe(),
        limits: chosen,
        environment: Some(sys_prefix(py)),
        executor: given,
    };
    py.detach(|| oxiida_daemon::server::serve_with(paths, Vec::new(), options)).map_err(|e| OxiidaError::new_err(e.to_string()))
}

/// A workflow's runner process (started by the daemon with its socket at
/// descriptor 3): runs that one workflow on this package's host, flushes
/// what the functions printed (it goes to the daemon's log), then exits
/// the process at once.
#[pyfunction]
#[pyo3(signature = (executor=None))]
fn _runner(py: Python<'_>, executor: Option<String>) {
    let factory = oxiida_daemon::runner::HostFactory {
        make: Arc::new(move |submit: &Submit, printer: Printer| workflow_host(submit, printer, executor.as_deref())),
        env_adopted: Some(Arc::new(refresh_environ)),
        finishing: Some(Arc::new(flush_stdout)),
        exception: Some(Arc::new(pack_exception)),
    };
    let code = py.detach(|| oxiida_daemon::runner::run_from_fd(Some(&factory)));
    for stream in ["stdout", "stderr"] {
        if let Ok(out) = py.import("sys").and_then(|sys| sys.getattr(stream)) {
            let _ = out.call_method0("flush");
        }
    }
    std::process::exit(code)
}

/// Python read the environment into `os.environ` when it started; once the
/// runner has made the client's environment its own, `os.environ` is made
/// the same (clearing and refilling it sets the process's environment
/// again, to the same values). Called while the runner is still its
/// process's only thread.
fn refresh_environ() {
    use std::os::unix::ffi::OsStrExt;
    let refreshed = Python::attach(|py| -> PyResult<()> {
        let environ = py.import("os")?.getattr("environb")?;
        let now = PyDict::new(py);
        for (name, value) in std::env::vars_os() {
            now.set_item(PyBytes::new(py, name.as_bytes()), PyBytes::new(py, value.as_bytes()))?;
        }
        environ.call_method0("clear")?;
        environ.call_method1("update", (now,))?;
        Ok(())
    });
    if let Err(e) = refreshed {
        eprintln!("oxiida runner: os.environ was not updated to the client's environment: {e}");
    }
}

fn sys_prefix(py: Python<'_>) -> String {
    py.import("sys").and_then(|s| s.getattr("prefix")?.extract()).unwrap_or_default()
}

fn sys_executable(py: Python<'_>) -> String {
    py.import("sys").and_then(|s| s.getattr("executable")?.extract()).unwrap_or_else(|_| "python".into())
}

/// The environment (`sys.prefix`) the running daemon serves: None when
/// none answers, "" for a daemon that serves none (the CLI's).
#[pyfunction]
fn _daemon_environment(py: Python<'_>) -> PyResult<Option<String>> {
    let paths = paths()?;
    let status = py.detach(|| Client::connect_keeping_notices(&paths).ok().map(|mut c| c.call(&Request::Status)));
    Ok(match status {
        Some(Ok(Reply::Status(s))) => Some(s.environment.unwrap_or_default()),
        _ => None,
    })
}

/// The running daemon's pid, or None.
#[pyfunction]
fn _daemon_pid(py: Python<'_>) -> PyResult<Option<u32>> {
    let paths = paths()?;
    Ok(py.detach(|| Client::connect(&paths).ok().map(|c| c.pid)))
}

/// Sends a workflow with `pickled` (a pickled dict of the functions it
/// requires) to the daemon. Without `wait`, returns its id; with it, streams
/// its prints to sys.stdout and returns its variables, or raises. The
/// daemon's notices (an environment warning) go to stderr, as the CLI's do.
/// Refuses a daemon that would run the workflow's Python elsewhere: one
/// started from another environment (another venv or interpreter), or the
/// `oxiida` CLI's daemon, which runs no Python functions sent to it.
fn check_environment(py: Python<'_>, client: &mut Client) -> PyResult<()> {
    let status = match py.detach(|| client.call(&Request::Status)).map_err(call_error)? {
        Reply::Status(s) => s,
        other => return Err(OxiidaError::new_err(format!("the daemon answered `status` with {other:?}"))),
    };
    let here = sys_prefix(py);
    let start = format!("`{} -m oxiida daemon start`", sys_executable(py));
    match status.environment {
        Some(there) if there == here => Ok(()),
        Some(there) => Err(WrongEnvironmentError::new_err(format!(
            "the running daemon (pid {}) runs Python from the environment {there}, not this one ({here}): its workflows could not \
             import what this one has. Stop it and start one for this environment: `python -m oxiida daemon stop`, then {start} \
             (or set OXIIDA_RUNTIME_DIR and OXIIDA_DATA_DIR to folders of this environment's own to run a daemon per environment)",
            status.pid
        ))),
        None => Err(WrongEnvironmentError::new_err(format!(
            "the running daemon (pid {}) was started by the `oxiida` command, which runs no Python functions: stop it \
             (`oxiida daemon stop`) and start one for this environment with {start}",
            status.pid
        ))),
    }
}

/// Sends a workflow with `pickled` (a pickled dict of the functions it
/// requires) to the daemon. Without `wait`, returns its id; with it, streams
/// its prints to sys.stdout and returns its variables, or raises. The
/// daemon's environment warning goes through `warnings.warn`.
#[pyfunction]
#[pyo3(signature = (source, file_name, pickled, cwd, wait, env, inputs=None, executor=None, cache=false, plugins=Vec::new()))]
// A #[pyfunction]'s parameters are its Python signature, called from __init__.py.
#[allow(clippy::too_many_arguments)]
fn _submit<'py>(
    py: Python<'py>,
    source: String,
    file_name: String,
    pickled: Vec<u8>,
    cwd: String,
    wait: bool,
    env: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    inputs: Option<Bound<'py, PyAny>>,
    executor: Option<Bound<'py, PyAny>>,
    cache: bool,
    plugins: Vec<String>,
) -> PyResult<Bound<'py, PyAny>> {
    // A plugin that cannot be found raises here, before anything is sent;
    // the runner starts it (in this folder and environment).
    let mut located = Vec::new();
    for spec in &plugins {
        let (what, config) = spec.split_once('=').unwrap_or((spec.as_str(), ""));
        let path = oxiida_host::locate(what).map_err(|e| OxiidaError::new_err(format!("plugin `{spec}`: {e}")))?;
        located.push((what.to_owned(), path, config.to_owned()));
    }
    // An address the runner connects to itself; an object that cannot travel raises here.
    let executor = match &executor {
        Some(spec) => crate::package::connect_address(py, spec)?,
        None => None,
    };
    // Converted before connecting: a value that cannot cross raises here.
    let inputs: Vec<(String, oxiida_abi::Value)> = crate::package::inputs_from_python(inputs.as_ref())?;
    let inputs = (!inputs.is_empty()).then(|| ByteBuf::from(oxiida_abi::Value::Map(inputs).to_msgpack()));
    let paths = paths()?;
    let mut client = connect(py, &paths)?;
    check_environment(py, &mut client)?;
    let mut extra = std::collections::BTreeMap::new();
    extra.insert(FUNCTIONS.to_owned(), ByteBuf::from(pickled));
    if let Some(address) = executor {
        extra.insert(EXECUTOR.to_owned(), ByteBuf::from(address.into_bytes()));
    }
    if !plugins.is_empty() {
        let specs = oxiida_abi::Value::Array(plugins.into_iter().map(oxiida_abi::Value::Str).collect());
        extra.insert(PLUGINS.to_owned(), ByteBuf::from(specs.to_msgpack()));
        // The plugins' files and scripts as they are now: every `extra`
        // entry is part of the workflow's code identity, so a changed
        // script (`exec:node=tools.js`) is not served from the cache.
        let (code, _) = oxiida_daemon::record::fingerprint(&located, &[]);
        extra.insert(PLUGIN_CODE.to_owned(), ByteBuf::from(code.into_bytes()));
    }
    let env = env.map(|env| env.into_iter().map(|(k, v)| (ByteBuf::from(k), ByteBuf::from(v))).collect());
    let submit = Submit { name: file_name, source, cwd: Some(cwd), wait, extra, env, inputs, cache, ..Submit::default() };
    py.detach(|| client.send(&Request::Submit(submit))).map_err(|e| OxiidaError::new_err(e.to_string()))?;
    if wait {
        client.wait_forever();
    }
    let mut id = None;
    let result = receive(py, &mut client, wait, &mut id);
    warn_notices(py, &mut client)?;
    match (result, id) {
        // Ctrl-C while waiting: the client detaches (the connection
        // closes), the workflow goes on; say how to come back to it.
        (Err(e), Some(id)) if e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) => {
            eprintln_py(
                py,
                &format!(
                    "oxiida: stopped waiting; workflow {id} goes on in the daemon: `oxiida.result({id})` waits for it again, \
                     `oxiida.kill({id})` stops it"
                ),
            );
            Err(e)
        }
        (result, _) => result,
    }
}

fn receive<'py>(py: Python<'py>, client: &mut Client, wait: bool, id: &mut Option<u64>) -> PyResult<Bound<'py, PyAny>> {
    loop {
        // Ctrl-C while waiting raises KeyboardInterrupt. The wait ends
        // when a frame arrives or a signal interrupts it (EINTR).
        while !py.detach(|| client.readable(std::time::Duration::MAX)) {
            py.check_signals()?;
        }
        let reply = py.detach(|| client.recv()).map_err(call_error)?;
        warn_notices(py, client)?;
        match reply {
            Reply::Submitted { id } if !wait => return Ok(id.into_pyobject(py)?.into_any()),
            Reply::Submitted { id: given } => *id = Some(given),
            // Streamed prints go where `oxiida.run`'s do.
            // A long value comes in pieces: no newline until its last.
            Reply::Output { text, more: false, .. } => oxiida::Output::print(&PyStdout, &text),
            Reply::Output { text, .. } => print_py(py, &text),
            Reply::Finished { id, state, error, variables, exception, .. } => {
                if state != oxiida_protocol::state::SUCCEEDED {
                    let exception = exception.map(|e| PyBytes::new(py, &e));
                    return Err(failed(py, id, &state, error.as_deref(), exception)?);
                }
                return Ok(variables_dict(py, variables.as_ref().map(|v| v.as_slice()))?.into_any());
            }
            Reply::Error { kind: oxiida_protocol::ErrorKind::NotFound, message } => {
                return Err(UnknownWorkflowError::new_err(format!(
                    "{message}: the daemon has no such workflow (`oxiida.workflows()` lists those it knows)"
                )))
            }
            Reply::Error { message, .. } => return Err(OxiidaError::new_err(message)),
            other => return Err(OxiidaError::new_err(format!("the daemon answered a submit with {other:?}"))),
        }
    }
}

/// The error a workflow that did not succeed raises: built by
/// `oxiida._daemon._failed` (the function's own exception, else
/// WorkflowFailedError).
fn failed<'py>(py: Python<'py>, id: u64, state: &str, error: Option<&str>, exception: Option<Bound<'py, PyBytes>>) -> PyResult<PyErr> {
    let make = py.import("oxiida._daemon")?.getattr("_failed")?;
    Ok(PyErr::from_value(make.call1((id, state, error, exception))?))
}

/// One page of the daemon's workflows, newest first: (id, name, state,
/// exit code, submitted ms, finished ms) each, and whether more match.
#[pyfunction]
#[pyo3(signature = (state=None, limit=None, before=None, since_ms=None, notices=true))]
#[allow(clippy::type_complexity)]
fn _workflows(
    py: Python<'_>,
    state: Option<String>,
    limit: Option<u32>,
    before: Option<u64>,
    since_ms: Option<i64>,
    notices: bool,
) -> PyResult<(Vec<(u64, String, String, Option<i32>, i64, Option<i64>)>, bool)> {
    match call(py, Request::List(oxiida_protocol::List { limit, since_ms, state, before }), notices)? {
        Reply::Workflows { workflows, more } => {
            Ok((workflows.into_iter().map(|w| (w.id, w.name, w.state, w.exit_code, w.submitted_ms, w.finished_ms)).collect(), more))
        }
        other => Err(OxiidaError::new_err(format!("the daemon answered `list` with {other:?}"))),
    }
}

/// Everything recorded about workflow `id`, as a dict (`variables`
/// decoded; None unless it succeeded).
#[pyfunction]
#[pyo3(signature = (id, notices=true))]
fn _show(py: Python<'_>, id: u64, notices: bool) -> PyResult<Bound<'_, PyDict>> {
    let record = match call(py, Request::Show { id }, notices)? {
        Reply::Workflow(r) => r,
        other => return Err(OxiidaError::new_err(format!("the daemon answered `show` with {other:?}"))),
    };
    let out = PyDict::new(py);
    out.set_item("id", record.id)?;
    out.set_item("name", record.name)?;
    out.set_item("source", record.source)?;
    out.set_item("cwd", record.cwd)?;
    out.set_item("state", record.state)?;
    out.set_item("exit_code", record.exit_code)?;
    out.set_item("error", record.error)?;
    out.set_item("submitted_ms", record.submitted_ms)?;
    out.set_item("started_ms", record.started_ms)?;
    out.set_item("finished_ms", record.finished_ms)?;
    out.set_item("output", record.output)?;
    let variables = match record.variables {
        Some(bytes) => Some(variables_dict(py, Some(&bytes))?),
        None => None,
    };
    out.set_item("variables", variables)?;
    out.set_item("exception", record.exception.map(|e| PyBytes::new(py, &e)))?;
    Ok(out)
}

/// Kills workflow `id`; with `wait`, returns once it has ended.
#[pyfunction]
fn _kill(py: Python<'_>, id: u64, wait: bool) -> PyResult<()> {
    let paths = paths()?;
    let mut client = connect(py, &paths)?;
    let sent = py.detach(|| client.call(&Request::Kill { id, wait }));
    warn_notices(py, &mut client)?;
    match sent.map_err(call_error)? {
        Reply::Killing { .. } if !wait => return Ok(()),
        Reply::Killing { .. } => client.wait_forever(),
        other => return Err(OxiidaError::new_err(format!("the daemon answered `kill` with {other:?}"))),
    }
    loop {
        while !py.detach(|| client.readable(std::time::Duration::MAX)) {
            py.check_signals()?;
        }
        let reply = py.detach(|| client.recv());
        warn_notices(py, &mut client)?;
        match reply.map_err(call_error)? {
            Reply::Finished { .. } => return Ok(()),
            _ => continue,
        }
    }
}

/// Records what a workflow requires instead of providing it.
#[derive(Default)]
struct Requires(parking_lot::Mutex<Vec<String>>);

impl oxiida::foreign::Host for Requires {
    fn resolve(&self, name: &oxiida::foreign::ForeignName) -> Result<(), String> {
        self.0.lock().push(name.dotted());
        Ok(())
    }

    /// The runner's host decides; this one only lists names.
    fn keywords(&self, _: &oxiida::foreign::ForeignName) -> Result<(), String> {
        Ok(())
    }

    fn call(
        &self,
        name: &oxiida::foreign::ForeignName,
        _: Vec<oxiida::value::Value>,
        _: oxiida::foreign::Keywords,
        _: oxiida::foreign::CallMode,
    ) -> oxiida::foreign::CallFuture {
        let err = oxiida::foreign::ForeignError::new(oxiida::foreign::ForeignErrorKind::NotFound, format!("`{name}` is not provided"));
        Box::pin(async move { Err(err) })
    }
}

/// The dotted names `source` requires; its errors (all of them) raise
/// OxiidaError here, before anything is sent.
#[pyfunction]
#[pyo3(signature = (source, file_name, inputs=None))]
fn _required(source: &str, file_name: &str, inputs: Option<Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let source = oxiida::Source::new(file_name, source);
    let requires = Requires::default();
    let inputs = crate::package::input_names(inputs.as_ref())?;
    let names: Vec<&str> = inputs.iter().map(String::as_str).collect();
    oxiida::compile_with_inputs(&source, &requires, &names).map_err(|errors| OxiidaError::new_err(source.render(&errors, false)))?;
    Ok(requires.0.into_inner())
}

/// The daemon's socket and log, as `oxiida daemon` finds them.
#[pyfunction]
fn _daemon_paths() -> PyResult<(String, String)> {
    let paths = paths()?;
    paths.create().map_err(|e| OxiidaError::new_err(e.to_string()))?;
    Ok((paths.socket.display().to_string(), paths.log.display().to_string()))
}

/// The running daemon's limits as `daemon start` flags (for `restart`),
/// or an empty list when none answers.
#[pyfunction]
fn _daemon_limit_args(py: Python<'_>) -> PyResult<Vec<String>> {
    let paths = paths()?;
    let status = py.detach(|| Client::connect(&paths).ok().map(|mut c| c.call(&Request::Status)));
    let Some(Ok(Reply::Status(s))) = status else { return Ok(Vec::new()) };
    let Some(l) = s.limits else { return Ok(Vec::new()) };
    let limits = oxiida_daemon::limits::Limits {
        memory: l.memory_limit,
        output: l.output_limit,
        max_running: l.max_running as usize,
        idle_timeout: std::time::Duration::from_secs(l.idle_timeout_secs),
    };
    let mut args = limits.to_args();
    // `restart` keeps the daemon's `--executor` too.
    args.extend(s.executor.map(|e| format!("--executor={e}")));
    Ok(args)
}

/// `stop` and `status` as the `oxiida` CLI runs them; returns the exit status.
#[pyfunction]
fn _daemon_command(py: Python<'_>, name: &str) -> PyResult<u8> {
    match name {
        "stop" => {
            let paths = paths()?;
            match py.detach(|| oxiida_protocol::client::stop(&paths)) {
                Ok(None) => println_py(py, "no daemon is running"),
                Ok(Some(pid)) => println_py(py, &format!("daemon stopped (pid {pid})")),
                Err(e) => return Err(OxiidaError::new_err(e.to_string())),
            }
            Ok(0)
        }
        "status" => {
            let paths = paths()?;
            let reply = py.detach(|| Client::connect(&paths).map_err(|e| (e.to_string(), matches!(e, ConnectError::NotRunning { .. }))));
            let mut client = match reply {
                Ok(c) => c,
                Err((why, not_running)) => {
                    eprintln_py(py, &format!("oxiida: {why}"));
                    return Ok(if not_running { oxiida_protocol::exit::NOT_RUNNING } else { 1 });
                }
            };
            match py.detach(|| client.call(&Request::Status)) {
                Ok(Reply::Status(s)) => print_py(py, &oxiida_protocol::client::describe(&s)),
                Ok(other) => return Err(OxiidaError::new_err(format!("unexpected reply {other:?}"))),
                Err(e) => return Err(OxiidaError::new_err(e.to_string())),
            }
            Ok(0)
        }
        other => Err(OxiidaError::new_err(format!("no daemon command `{other}`"))),
    }
}

/// The `oxiida` command line `argv` (the program name first), run by the
/// CLI's own code in this process; returns its exit status. A panic in
/// it is an OxiidaError here, never an unwind into Python.
#[pyfunction]
fn _cli(py: Python<'_>, argv: Vec<String>) -> PyResult<u8> {
    py.detach(|| std::panic::catch_unwind(|| oxiida_cli::main_with(argv)))
        .map_err(|_| OxiidaError::new_err("the oxiida command failed on an internal error (its message is above); please report it"))
}

/// Writes to `sys.stdout` (or `sys.stderr`), where Python code and Jupyter look.
fn write_py(py: Python<'_>, stream: &str, text: &str) {
    if let Ok(out) = py.import("sys").and_then(|sys| sys.getattr(stream)) {
        let _ = out.call_method1("write", (text,));
    }
}

fn print_py(py: Python<'_>, text: &str) {
    write_py(py, "stdout", text);
}

fn println_py(py: Python<'_>, text: &str) {
    write_py(py, "stdout", &format!("{text}\n"));
}

fn eprintln_py(py: Python<'_>, text: &str) {
    write_py(py, "stderr", &format!("{text}\n"));
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_required, m)?)?;
    m.add_function(wrap_pyfunction!(_daemon_paths, m)?)?;
    m.add_function(wrap_pyfunction!(_daemon_command, m)?)?;
    m.add_function(wrap_pyfunction!(_daemon_serve, m)?)?;
    m.add_function(wrap_pyfunction!(_runner, m)?)?;
    m.add_function(wrap_pyfunction!(_daemon_pid, m)?)?;
    m.add_function(wrap_pyfunction!(_daemon_limit_args, m)?)?;
    m.add_function(wrap_pyfunction!(_submit, m)?)?;
    m.add_function(wrap_pyfunction!(_workflows, m)?)?;
    m.add_function(wrap_pyfunction!(_show, m)?)?;
    m.add_function(wrap_pyfunction!(_kill, m)?)?;
    m.add_function(wrap_pyfunction!(_cli, m)?)?;
    m.add_function(wrap_pyfunction!(_daemon_environment, m)?)?;
    register_durable(m)?;
    let py = m.py();
    m.add("DaemonNotRunningError", py.get_type::<DaemonNotRunningError>())?;
    m.add("UnknownWorkflowError", py.get_type::<UnknownWorkflowError>())?;
    m.add("WrongEnvironmentError", py.get_type::<WrongEnvironmentError>())?;
    m.add("EnvironmentChangedWarning", py.get_type::<EnvironmentChangedWarning>())?;
    Ok(())
}

/// `oxiida.run(record=True)` (or `cache=True`): the run recorded as a
/// workflow of its own in the daemon's database, as `oxiida run --record`
/// records one (docs/durable.md): opened in this process, one writer at a
/// time, so not while a daemon runs.
pub struct Recording {
    store: oxiida_daemon::store::Store,
    id: u64,
}

/// Records of a run go straight to the store's thread.
struct Direct {
    store: oxiida_daemon::store::Store,
    id: u64,
}

impl oxiida_daemon::record::RecordSink for Direct {
    fn record(&self, record: oxiida_daemon::record::TaskRecord) {
        self.store.task(self.id, record);
    }

    fn lookup(&self, identity: String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send + 'static>> {
        let store = self.store.clone();
        Box::pin(async move { store.lookup(identity).await.ok().flatten() })
    }
}

impl Recording {
    /// Opens the daemon's database and records the run's start.
    pub fn start(py: Python<'_>, name: &str, source: &str) -> PyResult<Recording> {
        use oxiida_daemon::store;
        let paths = paths()?;
        paths.create().map_err(|e| OxiidaError::new_err(e.to_string()))?;
        let cwd = std::env::current_dir().ok().map(|d| d.display().to_string());
        let (name, source) = (name.to_owned(), source.to_owned());
        py.detach(move || {
            let store = store::open_with(&paths.database, Some(&paths.last_id)).map_err(|e| {
                let text = e.to_string();
                if text.contains("locked") || text.contains("another program holds") {
                    format!(
                        "cannot record this run: the daemon holds its database {} (one process writes it at a time); \
                         submit the workflow instead (`oxiida.submit(source, wait=True)` records every task), or stop the daemon",
                        paths.database.display()
                    )
                } else {
                    format!("cannot record this run: {text}")
                }
            })?;
            let rt = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
            let new = store::New { name, source, plugins: Vec::new(), cwd, submit: None, resumed_from: None };
            let id = rt.block_on(store.insert(new)).map_err(|e| format!("cannot record this run: {e}"))?;
            store.started(id);
            Ok(Recording { store, id })
        })
        .map_err(|e: String| OxiidaError::new_err(e))
    }

    /// The observer that records the run's tasks and, with `cache`, reuses
    /// results. `code` fingerprints the functions the workflow requires
    /// (`oxiida._daemon._fingerprint`): a changed body changes every call's identity.
    pub fn recorder(&self, cache: bool, code: &[u8]) -> oxiida_daemon::record::Recorder {
        let (code, _) = oxiida_daemon::record::fingerprint(&[], &[(FUNCTIONS.to_owned(), code.to_vec())]);
        let sink = Arc::new(Direct { store: self.store.clone(), id: self.id });
        oxiida_daemon::record::Recorder::new(sink, Default::default(), cache, code, Some("python (oxiida.run)".into()))
    }

    /// Records the run's end, commits and closes the database.
    pub fn finish(self, py: Python<'_>, error: Option<String>) {
        use oxiida_protocol::state;
        let (state, code) = match &error {
            None => (state::SUCCEEDED, 0),
            Some(_) => (state::FAILED, i32::from(oxiida_protocol::exit::RUNTIME)),
        };
        let finish = oxiida_daemon::store::Finish { state, exit_code: Some(code), error };
        py.detach(|| {
            self.store.finished(self.id, finish);
            self.store.close();
        });
        eprintln_py(py, &format!("oxiida: recorded as workflow {} (`oxiida.status({})` once a daemon runs)", self.id, self.id));
    }

    /// Ctrl-C stopped the run: recorded as interrupted (resumable by a daemon).
    pub fn interrupted(&self, py: Python<'_>) {
        let finish = oxiida_daemon::store::Finish {
            state: oxiida_protocol::state::INTERRUPTED,
            exit_code: Some(130),
            error: Some("interrupted (Ctrl-C)".into()),
        };
        py.detach(|| {
            self.store.finished(self.id, finish);
            self.store.close();
        });
        eprintln_py(py, &format!("oxiida: recorded as workflow {}, interrupted", self.id));
    }
}

/// Resumes workflow `id` (interrupted or failed) as a new workflow; with
/// `source`, the daemon refuses unless it is the recorded one byte for
/// byte. Without `wait`, returns the new id; with it, streams its prints
/// and returns its variables, as `_submit` does.
#[pyfunction]
#[pyo3(signature = (id, wait, source=None))]
fn _resume(py: Python<'_>, id: u64, wait: bool, source: Option<String>) -> PyResult<Bound<'_, PyAny>> {
    let paths = paths()?;
    let mut client = connect(py, &paths)?;
    check_environment(py, &mut client)?;
    py.detach(|| client.send(&Request::Resume { id, source, wait })).map_err(|e| OxiidaError::new_err(e.to_string()))?;
    if wait {
        client.wait_forever();
    }
    let mut new = None;
    let result = receive(py, &mut client, wait, &mut new);
    warn_notices(py, &mut client)?;
    result
}

/// Workflow `id`'s task records, in the order they ended: (key, kind,
/// what, status, started ms, ended ms, error) each.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn _tasks(py: Python<'_>, id: u64) -> PyResult<Vec<(String, String, String, String, i64, i64, Option<String>, String)>> {
    match call(py, Request::Tasks { id }, false)? {
        Reply::Tasks { tasks, .. } => {
            Ok(tasks.into_iter().map(|t| (t.key, t.kind, t.what, t.status, t.started_ms, t.ended_ms, t.error, t.worker)).collect())
        }
        other => Err(OxiidaError::new_err(format!("the daemon answered `tasks` with {other:?}"))),
    }
}

pub fn register_durable(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_resume, m)?)?;
    m.add_function(wrap_pyfunction!(_tasks, m)?)?;
    Ok(())
}
