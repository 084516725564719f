//! The `oxiida` command-line tool.
#![deny(clippy::undocumented_unsafe_blocks)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
mod daemon;
mod durable;
mod inputs;
mod plugins;
use inputs::InputArgs;
use oxiida::interp::Stdout;
use oxiida::{Diagnostic, Interrupt, Limits, Source, Stage};
use oxiida_host::{self as plugin, PluginHost};

/// Exit statuses, as the language reference fixes them.
const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NOT_RUN: u8 = 65;
/// Like a shell's 128 + SIGINT, whichever signal stopped the workflow.
const EXIT_INTERRUPTED: u8 = 130;

/// Deeply nested workflows recurse in the parser and resolver; a roomy stack
/// (reserved, not committed) keeps pathological input an error, not a crash.
const STACK_BYTES: usize = 256 << 20;

#[derive(Parser)]
#[command(
    name = "oxiida",
    version,
    about = "Run oxiida workflows: shell tasks and foreign functions, in sequence or in parallel",
    after_help = "Examples:\n  oxiida run examples/hello.ox\n  oxiida check workflow.ox\n  oxiida run --max-tasks 4 workflow.ox\n  oxiida run --input n=5 --input 'el=\"Si\"' workflow.ox\n\nExit status: 0 success, 1 runtime error, 2 usage error, 65 errors found before running."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a workflow, then run it
    Run {
        /// The workflow file (.ox)
        file: PathBuf,
        #[command(flatten)]
        plugins: PluginArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        inputs: InputArgs,
        /// Run the Python plugin's `=f=` calls on this Dask scheduler
        /// (dask://HOST:PORT, tls://HOST:PORT), or `pool` for its own worker
        /// processes; sets OXIIDA_EXECUTOR for this run [default: OXIIDA_EXECUTOR, else the pool]
        #[arg(long, value_name = "ADDRESS")]
        executor: Option<String>,
        #[command(flatten)]
        durable: DurableArgs,
    },
    /// Check a workflow for syntax and name errors without running anything
    Check {
        /// The workflow file (.ox)
        file: PathBuf,
        #[command(flatten)]
        plugins: PluginArgs,
        // `check` needs the names only: `--input NAME` is enough.
        #[command(flatten)]
        inputs: InputArgs,
    },
    /// List the plugins found on the search path, with their ABI versions, and the registered ones
    Plugins,
    /// Register, list or forget plugins (kept in $XDG_CONFIG_HOME/oxiida/plugins.toml)
    Plugin {
        #[command(subcommand)]
        action: plugins::PluginAction,
    },
    /// Start, stop or inspect this user's daemon, which runs submitted workflows
    Daemon {
        #[command(subcommand)]
        action: DaemonAction,
    },
    /// Send a workflow to the daemon; prints its id, or with --wait streams it
    Submit {
        /// The workflow file (.ox)
        file: PathBuf,
        #[command(flatten)]
        plugins: PluginArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        inputs: InputArgs,
        /// Stream its output and exit with its status (Ctrl-C detaches; it keeps running)
        #[arg(long)]
        wait: bool,
        /// Run it with the daemon's environment variables instead of this
        /// shell's (which are sent by default)
        #[arg(long)]
        no_env: bool,
        /// Reuse the recorded result of any earlier task with the same identity (docs/durable.md)
        #[arg(long)]
        cache: bool,
    },
    /// List, inspect or kill the daemon's workflows
    Workflow {
        #[command(subcommand)]
        action: WorkflowAction,
    },
}

#[derive(Subcommand)]
enum DaemonAction {
    /// Start the daemon in the background (one per user)
    Start {
        /// Serve in this process instead of a detached one
        #[arg(long)]
        foreground: bool,
        /// Plugins every workflow gets a session of
        #[command(flatten)]
        plugins: PluginArgs,
        #[command(flatten)]
        limits: daemon::DaemonLimits,
        /// Then resume every interrupted workflow (docs/durable.md)
        #[arg(long)]
        resume: bool,
    },
    /// Stop the daemon; running workflows are recorded as interrupted
    Stop,
    /// Stop and start again, with the same default plugins and limits unless given
    Restart {
        #[command(flatten)]
        plugins: PluginArgs,
        #[command(flatten)]
        limits: daemon::DaemonLimits,
    },
    /// Show the daemon's pid, uptime, socket, log, plugins, limits, and running and queued workflows
    Status,
    /// Run one workflow for the daemon: its runner process (started by the
    /// daemon, with its socket at descriptor 3)
    #[command(hide = true)]
    Runner,
}

#[derive(Subcommand)]
enum WorkflowAction {
    /// The recorded workflows, newest last: one page (100 by default)
    List {
        /// At most this many (1 to 10000)
        #[arg(long, value_name = "N", default_value_t = oxiida_protocol::LIST_DEFAULT,
              value_parser = clap::value_parser!(u32).range(1..=i64::from(oxiida_protocol::LIST_MAX)))]
        limit: u32,
        /// Only those submitted since TIME: an age (30s, 10m, 2h, 3d, 1w) or
        /// an RFC 3339 time (2026-11-26T00:30:13Z, 2026-11-26)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only those in STATE
        #[arg(long, value_name = "STATE",
              value_parser = clap::builder::PossibleValuesParser::new(oxiida_protocol::state::ALL))]
        status: Option<String>,
        /// Only those with a smaller id: the next (older) page
        #[arg(long, value_name = "ID")]
        before: Option<u64>,
    },
    /// One workflow's state, times, output and error
    Show {
        id: u64,
        /// Print its source too
        #[arg(long)]
        source: bool,
    },
    /// Cancel a running workflow and kill its processes
    Kill { id: u64 },
    /// Follow a workflow live: each task as it ends, then how the workflow ended
    Watch { id: u64 },
    /// The provenance graph of a workflow's tasks: which task's output flowed into which task's arguments (docs/provenance.md)
    Graph {
        id: u64,
        /// dot (Graphviz source), svg (drawn by Graphviz's `dot`), or json
        #[arg(long, default_value = "dot", value_parser = ["dot", "svg", "json"])]
        format: String,
    },
    /// Run an interrupted or failed workflow again: tasks that succeeded take their recorded results (docs/durable.md)
    Resume {
        id: u64,
        /// Stream its output and exit with its status, as `submit --wait`
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Args)]
struct PluginArgs {
    /// Load a language plugin: a path to its library, or a name searched in
    /// OXIIDA_PLUGIN_PATH; `=CONFIG` is handed to the plugin (e.g. a script). Repeatable.
    #[arg(long = "plugin", value_name = "PATH|NAME[=CONFIG]")]
    specs: Vec<String>,
}

impl PluginArgs {
    /// Loads every plugin and opens this workflow's sessions.
    fn host(&self) -> anyhow::Result<PluginHost> {
        let mut plugins = Vec::new();
        for spec in &self.specs {
            let (what, config) = spec.split_once('=').unwrap_or((spec, ""));
            let path = plugin::locate(what).map_err(|e| anyhow::anyhow!("{e}"))?;
            plugins.push((plugin::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?, config.to_owned()));
        }
        PluginHost::new(&plugins).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// `run`'s task records and progress (docs/durable.md).
#[derive(Args, Default)]
struct DurableArgs {
    /// Record every task in the daemon's store (its folder's SQLite file; not while a daemon runs)
    #[arg(long)]
    record: bool,
    /// Reuse the recorded result of any earlier task with the same identity (implies --record)
    #[arg(long)]
    cache: bool,
    /// No progress line on stderr (it is shown only when stderr is a terminal)
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct LimitArgs {
    /// Most tasks (shell commands, foreign calls) running at once [default: 8 per core, at least 32]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_tasks: Option<u32>,
    /// Most iterations of one `para for` in flight at once [default: 256]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_fanout: Option<u32>,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        // The CLI's runtime thread serves one workflow, so a call with
        // nothing running beside it may block that thread.
        let mut limits = Limits { inline_calls: true, ..Limits::default() };
        if let Some(n) = self.max_tasks {
            limits.max_tasks = n as usize;
        }
        if let Some(n) = self.max_fanout {
            limits.max_fanout = n as usize;
        }
        limits
    }
}

fn main() -> ExitCode {
    ExitCode::from(main_with(std::env::args_os()))
}

/// The whole command: runs the command line `args` (the program name
/// first) and returns the exit status. Usage errors, `--help` and
/// `--version` print and exit the process, as a command does. The library
/// (src/lib.rs, this file as a module) exports it for the Python package's
/// `oxiida` console command.
pub fn main_with<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    // A runner stays on this thread, the process's only one, until it has
    // its job: it may then make the submitted environment its own.
    if matches!(cli.command, Command::Daemon { action: DaemonAction::Runner }) {
        std::process::exit(oxiida_daemon::runner::run_from_fd(None));
    }
    let worker = std::thread::Builder::new().name("oxiida".into()).stack_size(STACK_BYTES).spawn(move || dispatch(cli));
    match worker.map(|w| w.join()) {
        Ok(Ok(code)) => code,
        // The panic message has already been printed.
        _ => 70,
    }
}

fn dispatch(cli: Cli) -> u8 {
    match cli.command {
        Command::Run { file, plugins, limits, inputs, executor, durable } => {
            // Read by plugins when they open their sessions (the Python
            // plugin: where `=f=` calls run); set before any of them loads.
            if let Some(executor) = executor {
                std::env::set_var("OXIIDA_EXECUTOR", executor);
            }
            run(&file, &plugins, limits.limits(), &inputs, &durable)
        }
        Command::Check { file, plugins, inputs } => check(&file, &plugins, &inputs),
        Command::Plugins => list_plugins(),
        Command::Plugin { action } => plugins::plugin(action),
        Command::Daemon { action } => match action {
            DaemonAction::Start { foreground, plugins, limits, resume } => match daemon::start(foreground, &plugins.specs, &limits) {
                0 if resume && !foreground => daemon::resume_all(),
                code => code,
            },
            DaemonAction::Stop => daemon::stop(),
            DaemonAction::Restart { plugins, limits } => daemon::restart(&plugins.specs, &limits),
            DaemonAction::Status => daemon::status(),
            DaemonAction::Runner => std::process::exit(oxiida_daemon::runner::run_from_fd(None)),
        },
        Command::Submit { file, plugins, limits, inputs, wait, no_env, cache } => daemon::submit(daemon::SubmitArgs {
            cache,
            inputs: &inputs,
            file: &file,
            plugins: &plugins.specs,
            max_tasks: limits.max_tasks,
            max_fanout: limits.max_fanout,
            wait,
            env: !no_env,
        }),
        Command::Workflow { action } => match action {
            WorkflowAction::List { limit, since, status, before } => daemon::list(limit, since.as_deref(), status, before),
            WorkflowAction::Show { id, source } => daemon::show(id, source),
            WorkflowAction::Kill { id } => daemon::kill(id),
            WorkflowAction::Resume { id, wait } => daemon::resume(id, wait),
            WorkflowAction::Watch { id } => daemon::watch(id),
            WorkflowAction::Graph { id, format } => daemon::graph(id, &format),
        },
    }
}

fn load(path: &Path) -> Result<Source, u8> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Source::new(path.display().to_string(), text)),
        Err(e) => {
            eprintln!("oxiida: cannot read {}: {e}", path.display());
            Err(EXIT_USAGE)
        }
    }
}

fn report(source: &Source, diagnostics: &[Diagnostic]) -> u8 {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    eprint!("{}", source.render(diagnostics, color));
    if diagnostics.iter().all(|d| d.stage == Stage::Runtime) {
        return EXIT_RUNTIME;
    }
    let n = diagnostics.len();
    eprintln!("oxiida: {n} error{} found in {}; nothing was run", if n == 1 { "" } else { "s" }, source.name);
    EXIT_NOT_RUN
}

fn plugin_host(plugins: &PluginArgs) -> Result<PluginHost, u8> {
    plugins.host().map_err(|e| {
        eprintln!("oxiida: {e:#}");
        EXIT_USAGE
    })
}

fn list_plugins() -> u8 {
    let mut found = 0;
    for dir in plugin::search_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut paths: Vec<PathBuf> =
            entries.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.extension().is_some_and(|x| x == "so")).collect();
        paths.sort();
        for path in paths {
            found += 1;
            match plugin::load(&path) {
                Ok(p) => println!("{}\tABI {}\t{}", p.name, p.abi_version, path.display()),
                Err(e) => println!("(unusable)\t-\t{}: {e}", path.display()),
            }
        }
    }
    found += plugins::list_more(&plugin::search_dirs());
    if found == 0 {
        let dirs: Vec<String> = plugin::search_dirs().iter().map(|d| d.display().to_string()).collect();
        eprintln!("oxiida: no plugins found in {}", dirs.join(", "));
    }
    0
}

/// The workflow's text and its plugins' sessions, or the exit status.
fn prepare(path: &Path, plugins: &PluginArgs) -> Result<(Source, PluginHost), u8> {
    Ok((load(path)?, plugin_host(plugins)?))
}

/// The inputs given on the command line, or the exit status (usage).
fn read_inputs(args: &InputArgs, names_only: bool) -> Result<inputs::Inputs, u8> {
    args.read(names_only).map_err(|e| {
        eprintln!("oxiida: {e}");
        EXIT_USAGE
    })
}

fn check(path: &Path, plugins: &PluginArgs, inputs: &InputArgs) -> u8 {
    let inputs = match read_inputs(inputs, true) {
        Ok(inputs) => inputs,
        Err(code) => return code,
    };
    let (source, host) = match prepare(path, plugins) {
        Ok(ready) => ready,
        Err(code) => return code,
    };
    let names: Vec<&str> = inputs.iter().map(|(n, _)| &**n).collect();
    match oxiida::compile_with_inputs(&source, &host, &names) {
        Ok(_) => {
            println!("{}: ok", source.name);
            0
        }
        Err(diagnostics) => report(&source, &diagnostics),
    }
}

fn run(path: &Path, plugins: &PluginArgs, limits: Limits, inputs: &InputArgs, durable: &DurableArgs) -> u8 {
    let inputs = match read_inputs(inputs, false) {
        Ok(inputs) => inputs,
        Err(code) => return code,
    };
    let (source, host) = match prepare(path, plugins) {
        Ok((source, host)) => (source, std::sync::Arc::new(host)),
        Err(code) => return code,
    };
    let names: Vec<&str> = inputs.iter().map(|(n, _)| &**n).collect();
    let program = match oxiida::compile_with_inputs(&source, &*host, &names) {
        Ok(p) => p,
        Err(diagnostics) => return report(&source, &diagnostics),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxiida: cannot start the runtime: {e}");
            return EXIT_RUNTIME;
        }
    };
    let interrupt = Interrupt::new();
    // Dropped when the workflow has ended: the signal thread's cue.
    let (ended, workflow_ended) = std::sync::mpsc::channel::<std::convert::Infallible>();
    // A plugin call busy on the workflow's own thread cannot be dropped:
    // the signal also asks the plugins to stop their running calls.
    let canceller = host.canceller();
    let signals = signals::watch(interrupt.clone(), workflow_ended, move || canceller.cancel());
    if let Err(e) = &signals {
        eprintln!("oxiida: warning: cannot watch for Ctrl-C ({e}); it will stop oxiida without cancelling tasks");
    }
    let context = oxiida::Context::default();
    // Records (`--record`, `--cache`) and the progress line both watch the
    // tasks; with neither, no observer: the run is exactly as fast as before.
    let recording = if durable.record || durable.cache {
        match durable::start_recording(&source.name, &source.text, &plugins.specs) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("oxiida: {e}");
                return EXIT_USAGE;
            }
        }
    } else {
        None
    };
    let progress = !durable.quiet && std::io::stderr().is_terminal();
    let specs: Vec<(String, PathBuf, String)> = plugins
        .specs
        .iter()
        .map(|spec| {
            let (what, config) = spec.split_once('=').unwrap_or((spec, ""));
            (what.to_owned(), plugin::locate(what).unwrap_or_else(|_| what.into()), config.to_owned())
        })
        .collect();
    let observer =
        (recording.is_some() || progress).then(|| durable::observer(recording.as_ref().map(|r| r.recorder(durable.cache, &specs, &host))));
    let mut line = observer.as_ref().filter(|_| progress).map(|o| durable::Progress::start(o.counts.clone()));
    let watching = observer.as_ref().map(|o| o as &dyn oxiida::TaskObserver);
    let run = oxiida::execute_observed(&program, inputs, &*host, &Stdout, limits, &context, &interrupt, watching);
    let (code, failure) = match runtime.block_on(run) {
        Ok(_) => (0, None),
        Err(_) if interrupt.is_triggered() => (EXIT_INTERRUPTED, Some("interrupted".to_owned())),
        Err(d) => {
            // Erased before the error is printed.
            if let Some(line) = line.take() {
                line.finish();
            }
            let text = source.render(std::slice::from_ref(&d), false);
            (report(&source, &[d]), Some(text))
        }
    };
    if let Some(recording) = recording {
        recording.finish(code, failure);
    }
    drop(ended);
    if let Some(line) = line.take() {
        line.finish();
    }
    if let Ok(handle) = signals {
        handle.close();
    }
    // A foreign call still running on a blocking thread (one that ignores
    // cancellation, or never returns) must not hold up the exit: dropping
    // the runtime would wait for it. Its session is freed when it returns,
    // or never; the process ends either way.
    runtime.shutdown_background();
    code
}

/// The one way `oxiida` handles signals (ARCHITECTURE.md): a `signal-hook`
/// iterator on a thread of its own, registered before the work starts.
mod signals {
    use std::sync::mpsc::{Receiver, RecvTimeoutError};
    use std::time::Duration;

    use oxiida::Interrupt;
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::{Handle, Signals};

    /// How long a cancelled workflow gets to end by itself. A foreign call
    /// running on the workflow's own thread (an inline call) cannot be
    /// dropped; after this, `oxiida` exits without it.
    pub const GRACE: Duration = Duration::from_secs(1);

    /// Turns the first SIGINT, SIGTERM or SIGHUP into `interrupt`, then
    /// waits (up to [`GRACE`]) for `ended` to hang up, the workflow's end,
    /// and exits 130 without it if it does not. The thread ends when the
    /// returned handle is closed.
    pub fn watch(
        interrupt: Interrupt,
        ended: Receiver<std::convert::Infallible>,
        cancel_calls: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Handle> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let handle = signals.handle();
        std::thread::Builder::new().name("oxiida-signals".into()).spawn(move || {
            let Some(signal) = signals.forever().next() else { return };
            let what = match signal {
                SIGINT => "interrupted",
                SIGTERM => "terminated",
                _ => "hung up",
            };
            eprintln!("oxiida: {what}; cancelling the workflow");
            interrupt.trigger();
            cancel_calls();
            if let Err(RecvTimeoutError::Timeout) = ended.recv_timeout(GRACE) {
                eprintln!("oxiida: a foreign call did not stop within {GRACE:?}; exiting without it");
                std::process::exit(super::EXIT_INTERRUPTED.into());
            }
        })?;
        Ok(handle)
    }
}
