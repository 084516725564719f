//! One submitted workflow's actor: a thread with its own tokio runtime, its
//! own working directory (passed to its run, not set on the thread) and its
//! own plugin sessions. A thread, not a task
//! on a shared runtime, because a loop of pure computation never yields and
//! would starve every other workflow on its worker.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::log;
use crate::server::Shared;
use crate::store::Finish;
use oxiida::foreign::Host;
use oxiida::{Context, Diagnostic, Interrupt, Limits, Output, Source, Stage};
use oxiida_host::{self as plugin, LoadedPlugin, PluginHost};
use oxiida_protocol::Submit;
use oxiida_protocol::{exit, state};

/// The parser recurses on nesting; like the CLI, reserve a roomy stack so
/// that pathological input is an error, not a crash of the whole daemon.
const STACK_BYTES: usize = 256 << 20;

/// What a waiting client hears about its workflow.
#[derive(Debug)]
pub enum Event {
    Output(String),
    Finished { state: &'static str, exit_code: Option<i32>, error: Option<String>, variables: Option<Vec<u8>> },
}

/// A workflow that has not finished yet, as the server sees it.
pub struct Running {
    pub id: u64,
    pub name: String,
    pub submitted_ms: i64,
    interrupt: Interrupt,
    /// Why it was stopped: `KILLED` or `INTERRUPTED`.
    stopped: Mutex<Option<&'static str>>,
    watchers: Mutex<Vec<UnboundedSender<Event>>>,
    printed: AtomicU64,
}

impl Running {
    pub fn new(id: u64, name: String, submitted_ms: i64) -> Self {
        Running {
            id,
            name,
            submitted_ms,
            interrupt: Interrupt::new(),
            stopped: Mutex::new(None),
            watchers: Mutex::new(Vec::new()),
            printed: AtomicU64::new(0),
        }
    }

    /// Cancels the workflow: its tasks are dropped and their process
    /// groups killed; `why` is the state it ends in.
    pub fn stop(&self, why: &'static str) {
        self.stopped.lock().get_or_insert(why);
        self.interrupt.trigger();
    }

    /// Every event from now on.
    pub fn watch(&self) -> UnboundedReceiver<Event> {
        let (tx, rx) = unbounded_channel();
        self.watchers.lock().push(tx);
        rx
    }

    fn tell(&self, make: impl Fn() -> Event) {
        // A watcher that hung up is dropped; the workflow goes on.
        self.watchers.lock().retain(|w| w.send(make()).is_ok());
    }
}

/// `print` in a daemon's workflow: recorded, and streamed to its watchers.
struct Sink<'a> {
    shared: &'a Shared,
    running: &'a Running,
}

impl Output for Sink<'_> {
    fn print(&self, text: &str) {
        let seq = self.running.printed.fetch_add(1, Ordering::Relaxed);
        self.shared.store.output(self.running.id, seq, text.to_owned());
        self.running.tell(|| Event::Output(text.to_owned()));
    }
}

/// Starts the workflow's thread; it records and announces its own end.
pub fn spawn(shared: Arc<Shared>, running: Arc<Running>, submit: Submit) -> std::io::Result<()> {
    std::thread::Builder::new().name(format!("oxiida-wf-{}", running.id)).stack_size(STACK_BYTES).spawn(move || {
        shared.store.started(running.id);
        let mut leftovers = None;
        let mut variables = None;
        let finish = std::panic::catch_unwind(AssertUnwindSafe(|| run(&shared, &running, submit, &mut leftovers, &mut variables)))
            .unwrap_or_else(|_| {
                log(&format!("workflow {}: its thread panicked", running.id));
                failed(exit::RUNTIME, "internal error: the daemon's workflow thread panicked (see the daemon's log)".into())
            });
        log(&format!("workflow {} {} ({})", running.id, finish.state, finish.exit_code.unwrap_or(-1)));
        // Recorded and forgotten before it is told: a client that hears
        // the end (`submit --wait`, `workflow kill`) then finds it ended.
        let (state, exit_code, error) = (finish.state, finish.exit_code, finish.error.clone());
        shared.store.finished(running.id, finish);
        shared.forget(running.id);
        running.tell(|| Event::Finished { state, exit_code, error: error.clone(), variables: variables.clone() });
        // Calls still running on blocking threads (a foreign call that
        // ignores cancellation) must not hold this thread: leave them.
        if let Some((runtime, host)) = leftovers {
            runtime.shutdown_background();
            drop(host);
        }
    })?;
    Ok(())
}

fn failed(code: u8, error: String) -> Finish {
    Finish { state: state::FAILED, exit_code: Some(code.into()), error: Some(error) }
}

type Leftovers = Option<(tokio::runtime::Runtime, Arc<dyn Host>)>;

/// Runs the workflow to its end. The runtime and plugin sessions are handed
/// back, not dropped, so the end is recorded before they are torn down; so
/// are the variables of a workflow that succeeded, for waiting clients.
fn run(shared: &Shared, running: &Running, submit: Submit, leftovers: &mut Leftovers, variables: &mut Option<Vec<u8>>) -> Finish {
    let context = match context(submit.cwd.as_deref()) {
        Ok(context) => context,
        Err(e) => return failed(exit::USAGE, e),
    };
    if let Err(e) = enter_for_plugins(submit.cwd.as_deref()) {
        return failed(exit::USAGE, e);
    }
    // An embedder's host (the Python package's), or sessions of plugins.
    let made = match &shared.host {
        Some(factory) => (factory.make)(&submit),
        None => sessions(shared, &submit).map(|h| Arc::new(h) as Arc<dyn Host>),
    };
    let host = match made {
        Ok(host) => host,
        Err(e) => return failed(exit::USAGE, e),
    };
    let source = Source::new(submit.name, submit.source);
    let program = match oxiida::compile(&source, &*host) {
        Ok(p) => p,
        Err(diagnostics) => return not_run(&source, &diagnostics),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return failed(exit::RUNTIME, format!("cannot start the workflow's runtime: {e}")),
    };
    let mut limits = Limits::default();
    limits.max_tasks = submit.max_tasks.map_or(limits.max_tasks, |n| n.max(1) as usize);
    limits.max_fanout = submit.max_fanout.map_or(limits.max_fanout, |n| n.max(1) as usize);
    let sink = Sink { shared, running };
    let result = runtime.block_on(oxiida::execute_in(&program, &*host, &sink, limits, &context, &running.interrupt));
    *leftovers = Some((runtime, host));
    match result {
        Ok(vars) => {
            let map = vars.iter().map(|(name, value)| (name.to_string(), plugin::codec::to_wire(value))).collect();
            let mut bytes = Vec::new();
            oxiida_abi::Value::Map(map).encode(&mut bytes);
            *variables = Some(bytes);
            Finish { state: state::SUCCEEDED, exit_code: Some(0), error: None }
        }
        Err(_) if running.interrupt.is_triggered() => {
            let why = running.stopped.lock().unwrap_or(state::INTERRUPTED);
            let error = if why == state::KILLED { "killed by `oxiida workflow kill`" } else { "the daemon stopped while it was running" };
            Finish { state: why, exit_code: Some(exit::INTERRUPTED.into()), error: Some(error.into()) }
        }
        Err(d) => failed(exit::RUNTIME, source.render(&[d], false)),
    }
}

/// The client's working directory travels with the run: shell tasks start
/// there (`Command::current_dir`); the daemon's own stays `/`, shared by
/// every workflow. Plugin calls run in the daemon's (see docs/daemon.md).
fn context(cwd: Option<&str>) -> Result<Context, String> {
    let Some(cwd) = cwd else { return Ok(Context::default()) };
    match std::fs::metadata(cwd) {
        Ok(m) if m.is_dir() => Ok(Context { cwd: Some(cwd.into()), env: None }),
        Ok(_) => Err(format!("cannot enter the working directory {cwd}: not a directory")),
        Err(e) => Err(format!("cannot enter the working directory {cwd}: {e}")),
    }
}

/// Until each workflow runs in a process of its own, plugin calls (which
/// run on this workflow's threads) find the client's folder only through
/// this thread's own filesystem context: `unshare(CLONE_FS)` detaches the
/// thread's working directory from the daemon's. Shell tasks do not need it
/// (the folder travels with the run). Blocking threads that the runtime
/// spawns later inherit it from this one.
fn enter_for_plugins(cwd: Option<&str>) -> Result<(), String> {
    let Some(cwd) = cwd else { return Ok(()) };
    // SAFETY: unshare(CLONE_FS) only detaches this thread's cwd, umask and root; it touches no memory.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(format!("cannot give the workflow its own working directory: {}", std::io::Error::last_os_error()));
    }
    std::env::set_current_dir(cwd).map_err(|e| format!("cannot enter the working directory {cwd}: {e}"))
}

/// The daemon's default plugins, then the workflow's own, each with a fresh session.
/// `extra` data for a plugin replaces its session config for this workflow
/// (a Python client's pickled functions become that session's scope).
fn sessions(shared: &Shared, submit: &Submit) -> Result<PluginHost, String> {
    let mut plugins: Vec<(Arc<LoadedPlugin>, String)> = shared.defaults.clone();
    for spec in &submit.plugins {
        let loaded = plugin::load(std::path::Path::new(&spec.path))?;
        shared.loaded(&loaded);
        let config = String::from_utf8(spec.config.to_vec())
            .map_err(|_| format!("the config of plugin `{}` is not UTF-8 text, which its session needs", loaded.name))?;
        plugins.push((loaded, config));
    }
    for (name, data) in &submit.extra {
        let Some((_, config)) = plugins.iter_mut().find(|(p, _)| &p.name == name) else {
            return Err(format!("data was sent for plugin `{name}`, which this workflow does not have"));
        };
        *config = String::from_utf8(data.to_vec()).map_err(|_| format!("the data sent for plugin `{name}` is not UTF-8 text"))?;
    }
    PluginHost::new(&plugins)
}

fn not_run(source: &Source, diagnostics: &[Diagnostic]) -> Finish {
    let mut text = source.render(diagnostics, false);
    if diagnostics.iter().all(|d| d.stage == Stage::Runtime) {
        return failed(exit::RUNTIME, text);
    }
    let n = diagnostics.len();
    text.push_str(&format!("{n} error{} found in {}; nothing was run\n", if n == 1 { "" } else { "s" }, source.name));
    failed(exit::NOT_RUN, text)
}
