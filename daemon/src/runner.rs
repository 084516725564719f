//! A workflow's own process: the runner. The daemon starts it (or keeps it
//! warm in a small pool) with one end of a socketpair as descriptor
//! [`FD`]; the runner waits for one [`Job`], enters the submitted working
//! directory, loads that workflow's plugins fresh, compiles and runs it,
//! and streams [`Report`]s back: output as it is printed, then how it ended.
//! It then exits. A runner that crashes takes only its own workflow along.
//!
//! The daemon cancels a workflow by closing its end of the socket: the
//! runner sees the end of the stream and interrupts the workflow, which
//! kills the process groups of its shell tasks. A runner that does not
//! finish soon after is killed with its process group by the daemon.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use oxiida::foreign::Host;
use oxiida::{Context, Diagnostic, Interrupt, Limits, Output, Source, Stage};
use oxiida_host::{self as plugin, PluginHost};
use oxiida_protocol::{exit, state, ByteBuf, PluginSpec, Submit, CHUNK, MAX_FRAME};

/// Where the Python plugin's `=f=` calls run (docs/distributed.md).
const EXECUTOR: &str = "OXIIDA_EXECUTOR";

/// The descriptor a runner finds its socket on.
pub const FD: RawFd = 3;

/// The parser recurses on nesting; like the CLI, reserve a roomy stack so
/// that pathological input is an error, not a crash.
const STACK_BYTES: usize = 256 << 20;

/// Makes each workflow's [`Host`] from its submission, in the runner: the
/// Python package's daemon builds its own host, with the functions the
/// client pickled (`Submit::extra`) as the workflow's scope.
#[derive(Clone)]
pub struct HostFactory {
    /// The error is the reason the workflow cannot start (exit 2).
    #[allow(clippy::type_complexity)]
    pub make: Arc<dyn Fn(&Submit, Printer) -> Result<Arc<dyn Host>, String> + Send + Sync>,
    /// Called once the runner has made the submitted environment its
    /// process's own (see [`adopt_env`]), while it is still the process's
    /// only thread: an embedder updates its own view of the environment
    /// (Python's `os.environ`, read once at start).
    pub env_adopted: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Called when the workflow has run, before its end is reported: an
    /// embedder sends what it still buffers for the [`Printer`].
    pub finishing: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Makes what a client needs to raise a failed workflow's error as its
    /// own (the Python package: the exception a function raised, pickled);
    /// carried, opaque, to waiting clients and into the record.
    #[allow(clippy::type_complexity)]
    pub exception: Option<Arc<dyn Fn(&Source, &Diagnostic) -> Option<Vec<u8>> + Send + Sync>>,
}

/// Prints into the workflow's output, as its own `print` does, in order
/// with it: `(text, more)`, `more` saying that the printed value goes on in
/// the next piece (no newline after this one). A host's functions print
/// through it (the Python package routes their `sys.stdout` here).
pub type Printer = Arc<dyn Fn(&str, bool) + Send + Sync>;

/// What the daemon sends a runner: the submission, and the daemon's
/// default plugins (`daemon start --plugin`), loaded before the
/// submission's own.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    pub submit: Submit,
    #[serde(default)]
    pub defaults: Vec<PluginSpec>,
    /// The value of [`crate::reap::MARKER`] for the workflow's processes.
    #[serde(default)]
    pub marker: Option<String>,
    /// How many [`Answer::Replay`] frames follow the job: the recorded
    /// results a resumed workflow replays.
    #[serde(default)]
    pub replay_chunks: u32,
    /// The daemon's `--executor`: the runner's `OXIIDA_EXECUTOR`, over
    /// the submitted environment's.
    #[serde(default)]
    pub executor: Option<String>,
}

/// What the daemon sends a runner after its job.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Answer {
    /// Recorded results by task key (a resume), right after the job.
    Replay { entries: Vec<(String, ByteBuf)> },
    /// The answer to [`Report::Lookup`] `seq`: a cached result, if any.
    Cached { seq: u64, result: Option<ByteBuf> },
}

/// Recorded results per `replay` frame: well under a frame however large
/// each result (a result over `CHUNK` goes alone).
pub const REPLAY_CHUNK: usize = 1 << 20;

/// What a runner tells the daemon, in order: plugins as it loads them,
/// output as it is printed, then its end (its last frame).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    Loaded {
        name: String,
        path: String,
    },
    /// A printed value, or a piece of one (`more`: it goes on in the next
    /// `output`), so that no report is over a frame.
    Output {
        text: String,
        #[serde(default)]
        more: bool,
    },
    /// A piece of a field of the `finished` report that follows (`error`,
    /// `variables`), which leaves that field empty: as the protocol's `part`.
    Part {
        field: String,
        data: ByteBuf,
    },
    /// A task ended (or was replayed or taken from the cache): its record.
    Task(Box<crate::record::TaskRecord>),
    /// Asks for the cached result of a task identity (`Submit::cache`);
    /// answered by [`Answer::Cached`] with the same `seq`.
    Lookup {
        seq: u64,
        identity: String,
    },
    Finished {
        state: String,
        exit_code: Option<i32>,
        error: Option<String>,
        /// The top-level variables of a workflow that succeeded: one
        /// MessagePack map, encoded as foreign-call values are.
        variables: Option<ByteBuf>,
        /// [`HostFactory::exception`]'s account of a failure.
        #[serde(default)]
        exception: Option<ByteBuf>,
    },
}

/// The runner's end of the socket; reports are whole frames, one writer at
/// a time.
struct Reporter(Mutex<UnixStream>);

/// The runner's stdout, captured into its workflow's output.
static CAPTURE: std::sync::OnceLock<crate::capture::Capture> = std::sync::OnceLock::new();

impl Reporter {
    /// Before the workflow's end: what its process printed goes first.
    fn end_capture(&self) {
        if let Some(capture) = CAPTURE.get() {
            capture.stop(&|text, more| Sink(self).piece(text, more));
        }
    }

    fn send(&self, report: &Report) {
        if matches!(report, Report::Finished { .. }) {
            self.end_capture();
        }
        // The daemon has gone if this fails; the workflow is cancelled by
        // the reading side, which sees the same end.
        let _ = std::io::Write::write_all(&mut *self.0.lock(), &oxiida_protocol::encode(report));
    }

    /// A workflow's end, its long fields sent ahead in `part` reports.
    fn finish(&self, report: Report) {
        let Report::Finished { state, exit_code, mut error, mut variables, mut exception } = report else { return self.send(&report) };
        self.end_capture();
        let mut out = self.0.lock();
        let mut part = |field: &str, data: &[u8]| {
            for piece in oxiida_protocol::data_pieces(data) {
                let part = Report::Part { field: field.into(), data: ByteBuf::from(piece) };
                let _ = std::io::Write::write_all(&mut *out, &oxiida_protocol::encode(&part));
            }
        };
        if error.as_ref().is_some_and(|e| e.len() > CHUNK) {
            part("error", error.take().unwrap_or_default().as_bytes());
        }
        if variables.as_ref().is_some_and(|v| v.len() > CHUNK) {
            part("variables", &variables.take().unwrap_or_default());
        }
        if exception.as_ref().is_some_and(|v| v.len() > CHUNK) {
            part("exception", &exception.take().unwrap_or_default());
        }
        let end = Report::Finished { state, exit_code, error, variables, exception };
        let _ = std::io::Write::write_all(&mut *out, &oxiida_protocol::encode(&end));
    }
}

/// Runs one workflow from the socket at [`FD`]: what `oxiida daemon
/// runner` and the Python package's runner call. `host`, when given, makes
/// every workflow's host instead of plugin sessions. The caller then exits
/// the process at once with the status returned (after flushing what it
/// buffers): calls that ignored cancellation may still be running on
/// other threads, and must not hold the runner.
pub fn run_from_fd(host: Option<&HostFactory>) -> i32 {
    // SAFETY: the daemon hands descriptor FD to the runner, which owns it
    // from here on; nothing else in this process uses it.
    let stream = unsafe { UnixStream::from_raw_fd(FD) };
    run(stream, host)
}

/// Waits for the job, runs it, reports; the process's exit status.
pub fn run(mut stream: UnixStream, host: Option<&HostFactory>) -> i32 {
    // An idle runner whose daemon closed the socket has nothing to do.
    // A submission that fit in a frame, and the daemon's default plugins.
    let job = match oxiida_abi::frame::read(&mut stream, 2 * MAX_FRAME) {
        Ok(Some(body)) => body,
        Ok(None) => return 0,
        Err(e) => {
            eprintln!("oxiida runner: cannot read its job: {e}");
            return 1;
        }
    };
    let Ok(writer) = stream.try_clone() else { return 1 };
    let reporter = Arc::new(Reporter(Mutex::new(writer)));
    let job: Job = match rmp_serde::from_slice(&job) {
        Ok(job) => job,
        Err(e) => {
            reporter.send(&failed(exit::RUNTIME, format!("internal error: the runner cannot read its job: {e}")));
            return 1;
        }
    };
    // Before any thread is started: the submitted environment becomes the
    // process's own, or, if that cannot be done soundly, the workflow's.
    let mut env = job.submit.env.clone().and_then(adopt_env);
    if job.submit.env.is_some() && env.is_none() {
        if let Some(adopted) = host.and_then(|h| h.env_adopted.as_ref()) {
            adopted();
        }
    }
    // After the environment is settled: the marker must survive it.
    mark(&job, env.as_mut());
    // The daemon's `--executor` comes before the submitted OXIIDA_EXECUTOR
    // (docs/distributed.md); the Python plugin reads it at session start.
    if let Some(executor) = &job.executor {
        if let Some(env) = env.as_mut() {
            env.retain(|(name, _)| name != EXECUTOR);
            env.push((EXECUTOR.into(), executor.into()));
        }
        if only_thread() {
            std::env::set_var(EXECUTOR, executor);
        }
    }
    // A runner's stdout is the daemon's log: what its plugins' functions
    // print there goes to the workflow's output instead. (The Python
    // package's runner sends its functions' `sys.stdout` itself; this
    // catches what is written to the descriptor, a C `printf`. Stderr stays
    // the daemon's, which reads a dying runner's last words there; the
    // daemon copies it into the output.)
    {
        match crate::capture::Capture::start() {
            Ok(capture) => {
                let capture = CAPTURE.get_or_init(|| capture);
                let to = reporter.clone();
                if let Err(e) = capture.watch(move |text, more| Sink(&to).piece(text, more)) {
                    reporter.send(&failed(exit::RUNTIME, format!("the runner cannot start its threads: {e}")));
                    return 1;
                }
            }
            Err(e) => eprintln!("oxiida runner: prints of the workflow's functions go to this log: cannot capture them: {e}"),
        }
    }
    // The recorded results a resumed workflow replays.
    let mut replay = std::collections::HashMap::new();
    for _ in 0..job.replay_chunks {
        match oxiida_abi::frame::read(&mut stream, 2 * MAX_FRAME).map(|f| f.map(|b| rmp_serde::from_slice::<Answer>(&b))) {
            Ok(Some(Ok(Answer::Replay { entries }))) => replay.extend(entries.into_iter().map(|(k, v)| (k, v.into_vec()))),
            _ => {
                reporter.send(&failed(exit::RUNTIME, "internal error: the runner cannot read the records it resumes from".into()));
                return 1;
            }
        }
    }
    // The daemon closes its end to cancel (or dies): either way, stop.
    // Until then it answers cache lookups on it.
    let interrupt = Interrupt::new();
    let cancel = interrupt.clone();
    let pending: Pending = Arc::default();
    let answers = pending.clone();
    let watching = std::thread::Builder::new().name("oxiida-runner-watch".into()).spawn(move || {
        while let Ok(Some(body)) = oxiida_abi::frame::read(&mut stream, 2 * MAX_FRAME) {
            if let Ok(Answer::Cached { seq, result }) = rmp_serde::from_slice::<Answer>(&body) {
                if let Some(to) = answers.lock().remove(&seq) {
                    let _ = to.send(result.map(ByteBuf::into_vec));
                }
            }
        }
        // Lookups still waiting get no result: their tasks run.
        answers.lock().clear();
        cancel.trigger();
    });
    if watching.is_err() {
        reporter.send(&failed(exit::RUNTIME, "the runner cannot start its threads".into()));
        return 1;
    }
    let shared_reporter = &reporter;
    let reporter = &*reporter;
    let interrupt = &interrupt;
    let ended = std::thread::scope(|scope| {
        let worker = std::thread::Builder::new().name("oxiida-workflow".into()).stack_size(STACK_BYTES).spawn_scoped(scope, move || {
            std::panic::catch_unwind(AssertUnwindSafe(|| workflow(job, env, host, shared_reporter, interrupt, replay, pending)))
        });
        match worker.map(|w| w.join()) {
            Ok(Ok(Ok(()))) => true,
            Ok(_) => {
                reporter.send(&failed(exit::RUNTIME, "internal error: the workflow's runner panicked (see the daemon's log)".into()));
                false
            }
            Err(e) => {
                reporter.send(&failed(exit::RUNTIME, format!("the runner cannot start the workflow's thread: {e}")));
                false
            }
        }
    });
    if ended {
        0
    } else {
        1
    }
}

/// Marks every process the workflow starts, `setsid` ones too, as this
/// workflow's (`OXIIDA_WORKFLOW=<identity>:<id>`), so that the daemon can
/// find what it leaves (crate::reap). Called while the runner has one
/// thread, before it starts anything. An environment made for shell tasks
/// (`Context::env`) must keep this variable.
fn mark(job: &Job, env: Option<&mut Env>) {
    let Some(marker) = &job.marker else { return };
    if let Some(env) = env {
        // The workflow's own environment, which shell tasks get whole.
        env.retain(|(name, _)| name != crate::reap::MARKER);
        env.push((crate::reap::MARKER.into(), marker.into()));
    }
    // Sound only while nothing else can read the environment (see
    // `adopt_env`); otherwise the runner's own marker, set by the daemon
    // at its start, stays, and the daemon finds its processes by it too.
    if only_thread() {
        std::env::set_var(crate::reap::MARKER, marker);
    }
}

/// Whether this is the process's only thread. Counting threads starts
/// none; with one, no other can appear until this thread starts it.
fn only_thread() -> bool {
    std::fs::read_dir("/proc/self/task").map(Iterator::count).ok() == Some(1)
}

type Env = Vec<(std::ffi::OsString, std::ffi::OsString)>;

/// Makes `env` the whole environment of this process, so that shell tasks
/// and plugins (a C `getenv`, Python's `os.environ`) all see it: `None`.
/// Changing the environment is sound only while no other thread can read
/// it, so this is done only when this is the process's only thread (the
/// runner calls it before it starts any); otherwise the environment is
/// returned, for the workflow's [`Context`], and only its shell tasks see
/// it. Entries no environment can hold (a name with `=` or NUL) are left out.
pub fn adopt_env(env: std::collections::BTreeMap<ByteBuf, ByteBuf>) -> Option<Env> {
    use std::os::unix::ffi::OsStringExt;
    let env: Env = env
        .into_iter()
        .filter(|(k, v)| !k.is_empty() && !k.contains(&b'=') && !k.contains(&0) && !v.contains(&0))
        .map(|(k, v)| (std::ffi::OsString::from_vec(k.into_vec()), std::ffi::OsString::from_vec(v.into_vec())))
        .collect();
    if !only_thread() {
        return Some(env);
    }
    // Sound: this is the only thread (checked just above), so nothing reads
    // the environment while it changes.
    for (name, _) in std::env::vars_os() {
        std::env::remove_var(name);
    }
    for (name, value) in env {
        std::env::set_var(name, value);
    }
    None
}

/// The inputs of a submitted workflow: one MessagePack map (`Submit::inputs`).
fn decode_inputs(bytes: &[u8]) -> Result<Vec<(Arc<str>, oxiida::value::Value)>, String> {
    match oxiida_abi::Value::decode(bytes) {
        Ok(oxiida_abi::Value::Map(entries)) => {
            Ok(entries.into_iter().map(|(name, value)| (Arc::from(name), plugin::codec::from_wire(value))).collect())
        }
        Ok(_) => Err("the submitted inputs are not a map of names to values; send one MessagePack map".into()),
        Err(e) => Err(format!("the submitted inputs are not valid MessagePack ({}); send one MessagePack map of names to values", e.0)),
    }
}

fn failed(code: u8, error: String) -> Report {
    Report::Finished { state: state::FAILED.into(), exit_code: Some(code.into()), error: Some(error), variables: None, exception: None }
}

/// `print` in a runner's workflow: a frame to the daemon, which records it.
struct Sink<'a>(&'a Reporter);

impl Sink<'_> {
    /// A printed value, or a piece of one (`more`), in frames of at most `CHUNK`.
    fn piece(&self, text: &str, more: bool) {
        let pieces = oxiida_protocol::text_pieces(text);
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            self.0.send(&Report::Output { text: piece.to_owned(), more: more || i < last });
        }
    }
}

impl Output for Sink<'_> {
    fn print(&self, text: &str) {
        // What the calls before this print printed comes first.
        if let Some(capture) = CAPTURE.get() {
            capture.drain(&|text, more| self.piece(text, more));
        }
        self.piece(text, false);
    }
}

/// Cache lookups waiting for the daemon's answer, by `seq`.
type Pending = Arc<Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<Option<Vec<u8>>>>>>;

/// Where a runner's task records go: frames to the daemon, whose store
/// writes them; cache lookups are asked the same way.
struct Records {
    reporter: Arc<Reporter>,
    pending: Pending,
    seq: std::sync::atomic::AtomicU64,
}

impl crate::record::RecordSink for Records {
    fn record(&self, record: crate::record::TaskRecord) {
        self.reporter.send(&Report::Task(Box::new(record)));
    }

    fn lookup(&self, identity: String) -> futures_util::future::BoxFuture<'static, Option<Vec<u8>>> {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pending.lock().insert(seq, tx);
        self.reporter.send(&Report::Lookup { seq, identity });
        Box::pin(async move { rx.await.ok().flatten() })
    }
}

/// Runs the job and reports its end. Calls still running (a foreign call
/// that ignores cancellation) do not hold the runner: it exits after this.
#[allow(clippy::too_many_arguments)]
fn workflow(
    job: Job,
    env: Option<Env>,
    factory: Option<&HostFactory>,
    shared_reporter: &Arc<Reporter>,
    interrupt: &Interrupt,
    replay: std::collections::HashMap<String, Vec<u8>>,
    pending: Pending,
) {
    let reporter = &**shared_reporter;
    let Job { submit, defaults, .. } = job;
    // The workflow's working directory is the runner's own, entered only
    // now: a warm runner waited in the daemon's.
    let context = match &submit.cwd {
        None => Context { cwd: None, env },
        Some(cwd) => match std::env::set_current_dir(cwd) {
            Ok(()) => Context { cwd: Some(cwd.into()), env },
            Err(e) => return reporter.send(&failed(exit::USAGE, format!("cannot enter the working directory {cwd}: {e}"))),
        },
    };
    // Per-function fingerprints, when the workflow's host is the plugins'.
    let mut fingerprints = None;
    let made = match factory {
        Some(factory) => {
            let to = shared_reporter.clone();
            let printer: Printer = Arc::new(move |text: &str, more: bool| Sink(&to).piece(text, more));
            (factory.make)(&submit, printer)
        }
        None => sessions(&defaults, &submit, reporter).map(|h| {
            let h = Arc::new(h);
            fingerprints = Some((fingerprints_of(&h), providers_of(&h)));
            h as Arc<dyn Host>
        }),
    };
    let host = match made {
        Ok(host) => host,
        Err(e) => return reporter.send(&failed(exit::USAGE, e)),
    };
    let inputs = match submit.inputs.as_ref().map(|bytes| decode_inputs(bytes)).transpose() {
        Ok(inputs) => inputs.unwrap_or_default(),
        Err(e) => return reporter.send(&failed(exit::USAGE, e)),
    };
    let names: Vec<&str> = inputs.iter().map(|(name, _)| &**name).collect();
    let source = Source::new(submit.name, submit.source);
    let program = match oxiida::compile_with_inputs(&source, &*host, &names) {
        Ok(p) => p,
        Err(diagnostics) => return reporter.finish(not_run(&source, &diagnostics)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return reporter.send(&failed(exit::RUNTIME, format!("cannot start the workflow's runtime: {e}"))),
    };
    let mut limits = Limits::default();
    limits.max_tasks = submit.max_tasks.map_or(limits.max_tasks, |n| n.max(1) as usize);
    limits.max_fanout = submit.max_fanout.map_or(limits.max_fanout, |n| n.max(1) as usize);
    // Every task is recorded; a resume replays, `cache` reuses.
    let specs: Vec<(String, std::path::PathBuf, String)> = defaults
        .iter()
        .chain(&submit.plugins)
        .map(|p| (p.path.clone(), p.path.clone().into(), String::from_utf8_lossy(&p.config).into_owned()))
        .collect();
    let extra: Vec<(String, Vec<u8>)> = submit.extra.iter().map(|(k, v)| (k.clone(), v.to_vec())).collect();
    let (code, plugins) = crate::record::fingerprint(&specs, &extra);
    let sink = Arc::new(Records { reporter: shared_reporter.clone(), pending, seq: Default::default() });
    let mut recorder = crate::record::Recorder::new(sink, replay, submit.cache, code, (!plugins.is_empty()).then_some(plugins));
    if let Some((fingerprints, providers)) = fingerprints {
        recorder = recorder.with_fingerprints(fingerprints).with_providers(providers);
    }
    let result =
        runtime.block_on(oxiida::execute_observed(&program, inputs, &*host, &Sink(reporter), limits, &context, interrupt, Some(&recorder)));
    let end = match result {
        Ok(vars) => {
            let map = vars.iter().map(|(name, value)| (name.to_string(), plugin::codec::to_wire(value))).collect();
            let mut bytes = Vec::new();
            oxiida_abi::Value::Map(map).encode(&mut bytes);
            Report::Finished {
                state: state::SUCCEEDED.into(),
                exit_code: Some(0),
                error: None,
                variables: Some(bytes.into()),
                exception: None,
            }
        }
        // The daemon knows why it cancelled, and records that.
        Err(_) if interrupt.is_triggered() => Report::Finished {
            state: state::INTERRUPTED.into(),
            exit_code: Some(exit::INTERRUPTED.into()),
            error: Some("interrupted".into()),
            variables: None,
            exception: None,
        },
        Err(d) => {
            let mut end = failed(exit::RUNTIME, source.render(std::slice::from_ref(&d), false));
            if let (Some(describe), Report::Finished { exception, .. }) = (factory.and_then(|f| f.exception.as_ref()), &mut end) {
                *exception = describe(&source, &d).map(ByteBuf::from);
            }
            end
        }
    };
    if let Some(finishing) = factory.and_then(|f| f.finishing.as_ref()) {
        finishing();
    }
    reporter.finish(end);
    // Left running: calls that ignore cancellation end with the process.
    runtime.shutdown_background();
    drop(host);
}

/// The daemon's default plugins, then the workflow's own, each loaded fresh
/// with a session of its own. `extra` data for a plugin replaces its
/// session config for this workflow.
fn sessions(defaults: &[PluginSpec], submit: &Submit, reporter: &Reporter) -> Result<PluginHost, String> {
    let mut plugins = Vec::new();
    for spec in defaults.iter().chain(&submit.plugins) {
        let loaded = plugin::load(std::path::Path::new(&spec.path))?;
        reporter.send(&Report::Loaded { name: loaded.name.clone(), path: loaded.path.display().to_string() });
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

/// The recorder's view of a plugin host's per-function fingerprints; it
/// holds the host weakly, so the sessions still end with the workflow.
pub fn fingerprints_of(host: &Arc<PluginHost>) -> crate::record::Fingerprints {
    let host = Arc::downgrade(host);
    Arc::new(move |name| host.upgrade()?.fingerprint(name))
}

/// Which plugin serves each call, for its record (held weakly, as
/// [`fingerprints_of`]).
pub fn providers_of(host: &Arc<PluginHost>) -> crate::record::Providers {
    let host = Arc::downgrade(host);
    Arc::new(move |name| host.upgrade()?.provider(name))
}

fn not_run(source: &Source, diagnostics: &[Diagnostic]) -> Report {
    let mut text = source.render(diagnostics, false);
    if diagnostics.iter().all(|d| d.stage == Stage::Runtime) {
        return failed(exit::RUNTIME, text);
    }
    let n = diagnostics.len();
    text.push_str(&format!("{n} error{} found in {}; nothing was run\n", if n == 1 { "" } else { "s" }, source.name));
    failed(exit::NOT_RUN, text)
}
