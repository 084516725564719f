//! The daemon's commands as the `oxiida` CLI runs them: `daemon start|stop|
//! restart|status`, `submit`, `workflow list|show|kill`. Each returns the
//! process's exit status.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use oxiida_daemon::limits::{self, Limits};
use oxiida_host as plugin;
use oxiida_protocol::client::{self, Client, ConnectError};
use oxiida_protocol::{duration, exit, utc, Paths};
use oxiida_protocol::{PluginSpec, Reply, Request, StatusLimits, Submit};

/// How long `start` waits for a new daemon to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `workflow kill` waits to report how the workflow ended.
const KILL_WAIT: Duration = Duration::from_secs(5);
use oxiida_daemon::server::{ready_pipe, READY_FD};

fn fail(message: impl std::fmt::Display, code: u8) -> u8 {
    eprintln!("oxiida: {message}");
    code
}

fn paths() -> Result<Paths, u8> {
    Paths::from_env().map_err(|e| fail(e, exit::USAGE))
}

fn connect(paths: &Paths) -> Result<Client, u8> {
    Client::connect(paths).map_err(|e| {
        let code = if matches!(e, ConnectError::NotRunning { .. }) { exit::NOT_RUNNING } else { 1 };
        fail(e, code)
    })
}

/// `PATH|NAME[=CONFIG]` as the client sees it: found with the client's
/// search path and made absolute, since the daemon runs elsewhere.
pub fn resolve_plugins(specs: &[String]) -> anyhow::Result<Vec<PluginSpec>> {
    specs
        .iter()
        .map(|spec| {
            let (what, config) = spec.split_once('=').unwrap_or((spec, ""));
            let path = plugin::locate(what).map_err(|e| anyhow!("{e}"))?;
            // `exec:/abs/program` is absolute already, and no file.
            let path = if what.starts_with(plugin::EXEC) {
                path
            } else {
                path.canonicalize().with_context(|| format!("cannot load plugin {}", path.display()))?
            };
            Ok(PluginSpec { path: path.display().to_string(), config: config.as_bytes().to_vec().into() })
        })
        .collect()
}

/// `daemon start`'s limits; each is checked as it is parsed, and what was
/// not given is the daemon's default (or, for `restart`, the old daemon's).
#[derive(clap::Args, Clone, Default)]
pub struct DaemonLimits {
    /// Most memory (address space) each workflow's runner may take, about 0.5 GiB of it reserved by the runner itself: SIZE such as 2G or 8G, or `none` [default: 4G]
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| limits::parse_size(s, true).map(|_| s.to_owned()))]
    pub memory_limit: Option<String>,
    /// Most output kept per workflow, its first and last halves, the middle cut [default: 64M]
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| limits::parse_size(s, false).map(|_| s.to_owned()))]
    pub output_limit: Option<String>,
    /// Most workflows running at once; more wait, queued, in submission order [default: 64, capped by the open-file limit]
    #[arg(long, value_name = "N", value_parser = |s: &str| limits::parse_count(s).map(|_| s.to_owned()))]
    pub max_running: Option<String>,
    /// Close a connection that sends no request for SECS seconds [default: 300]
    #[arg(long, value_name = "SECS", value_parser = |s: &str| limits::parse_secs(s).map(|_| s.to_owned()))]
    pub idle_timeout: Option<String>,
    /// Run the workflows' `=f=` calls (Python plugin) on this Dask scheduler (dask://HOST:PORT, tcp://, tls://), or `pool` for the plugin's own workers; over each workflow's OXIIDA_EXECUTOR [default: OXIIDA_EXECUTOR, else the pool]
    #[arg(long, value_name = "ADDRESS", value_parser = executor_address)]
    pub executor: Option<String>,
}

/// `--executor`'s form, checked before the daemon starts (its scheduler is
/// reached by each workflow's runner); the same words as the Python plugin's.
fn executor_address(spec: &str) -> Result<String, String> {
    let spec = spec.trim();
    const SCHEMES: [&str; 7] = ["dask://", "tcp://", "tls://", "ucx://", "ws://", "wss://", "inproc://"];
    if spec == "pool" || SCHEMES.iter().any(|s| spec.starts_with(s) && spec.len() > s.len()) {
        return Ok(spec.to_owned());
    }
    Err(format!(
        "unknown executor `{spec}`: give a Dask scheduler's address (dask://HOST:PORT, or tcp://, tls://), or `pool` for the Python plugin's own worker processes"
    ))
}

impl DaemonLimits {
    /// The limits to serve with: these flags over the defaults.
    fn limits(&self) -> Limits {
        let mut l = Limits::default();
        if let Some(Ok(m)) = self.memory_limit.as_deref().map(|s| limits::parse_size(s, true)) {
            l.memory = m;
        }
        if let Some(Ok(Some(o))) = self.output_limit.as_deref().map(|s| limits::parse_size(s, false)) {
            l.output = o;
        }
        if let Some(Ok(n)) = self.max_running.as_deref().map(limits::parse_count) {
            l.max_running = n;
        }
        if let Some(Ok(t)) = self.idle_timeout.as_deref().map(limits::parse_secs) {
            l.idle_timeout = t;
        }
        l
    }

    /// The flags given, as `daemon start --foreground` takes them.
    fn args(&self) -> Vec<String> {
        let flags = [
            ("memory-limit", &self.memory_limit),
            ("output-limit", &self.output_limit),
            ("max-running", &self.max_running),
            ("idle-timeout", &self.idle_timeout),
            ("executor", &self.executor),
        ];
        flags.iter().filter_map(|(name, value)| value.as_ref().map(|v| format!("--{name}={v}"))).collect()
    }

    /// These flags, and for each one not given, the running daemon's.
    fn or_running(&self, running: &StatusLimits) -> DaemonLimits {
        let old = Limits {
            memory: running.memory_limit,
            output: running.output_limit,
            max_running: running.max_running as usize,
            idle_timeout: Duration::from_secs(running.idle_timeout_secs),
        }
        .to_args();
        let value = |i: usize| old[i].split_once('=').map(|(_, v)| v.to_owned());
        DaemonLimits {
            memory_limit: self.memory_limit.clone().or_else(|| value(0)),
            output_limit: self.output_limit.clone().or_else(|| value(1)),
            max_running: self.max_running.clone().or_else(|| value(2)),
            idle_timeout: self.idle_timeout.clone().or_else(|| value(3)),
            executor: self.executor.clone(),
        }
    }
}

/// `daemon start`: in the foreground, serve here; otherwise start a
/// detached `daemon start --foreground` and wait until it says it is ready.
pub fn start(foreground: bool, specs: &[String], limits: &DaemonLimits) -> u8 {
    let paths = match paths() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let plugins = match resolve_plugins(specs) {
        Ok(p) => p,
        Err(e) => return fail(format!("{e:#}"), exit::USAGE),
    };
    if let Ok(client) = Client::connect(&paths) {
        return fail(format!("a daemon is already running (pid {}, socket {})", client.pid, paths.socket.display()), 1);
    }
    if foreground {
        let ready = ready_pipe();
        let loaded: anyhow::Result<Vec<_>> = plugins
            .into_iter()
            .map(|p| {
                let loaded = plugin::load(Path::new(&p.path)).map_err(|e| anyhow!("{e}"))?;
                Ok((loaded, String::from_utf8_lossy(&p.config).into_owned()))
            })
            .collect();
        // Each workflow runs in a process of its own: this executable, as its runner.
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => return fail(format!("cannot find this executable to start workflows with: {e}"), 1),
        };
        let runner = vec![exe.into_os_string(), "daemon".into(), "runner".into()];
        let options = oxiida_daemon::server::Options {
            ready,
            runner,
            limits: limits.limits(),
            executor: limits.executor.clone(),
            ..Default::default()
        };
        let served = loaded.and_then(|defaults| Ok(oxiida_daemon::server::serve_with(paths, defaults, options)?));
        return match served {
            Ok(()) => 0,
            Err(e) => fail(format!("{e:#}"), 1),
        };
    }
    match spawn_detached(&paths, specs_text(&plugins), limits.args()) {
        Ok(pid) => {
            println!("daemon started (pid {pid}); socket {}, log {}", paths.socket.display(), paths.log.display());
            0
        }
        Err(e) => fail(format!("{e:#}"), 1),
    }
}

fn specs_text(plugins: &[PluginSpec]) -> Vec<String> {
    plugins
        .iter()
        .map(|p| if p.config.is_empty() { p.path.clone() } else { format!("{}={}", p.path, String::from_utf8_lossy(&p.config)) })
        .collect()
}

/// A pipe whose two ends close on exec.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created, and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts `daemon start --foreground` detached, and waits on a pipe until
/// it says it serves (or closes the pipe unwritten: it failed).
fn spawn_detached(paths: &Paths, specs: Vec<String>, limits: Vec<String>) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    paths.create()?;
    let mut log = paths.open_log()?;
    let from = log.seek(std::io::SeekFrom::End(0)).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the oxiida executable")?;
    let (ready, ready_end) = pipe().context("cannot make a pipe for the daemon")?;
    let handed = ready_end.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.args(["daemon", "start", "--foreground"]).env(READY_FD, handed.to_string());
    for spec in specs {
        cmd.arg(format!("--plugin={spec}"));
    }
    cmd.args(limits);
    let err = log.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err).current_dir("/");
    // SAFETY: setsid and fcntl are async-signal-safe. setsid detaches the
    // daemon from this terminal's session, so closing the terminal does not
    // stop it; clearing close-on-exec hands it the ready pipe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::fcntl(handed, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the daemon")?;
    // Only the daemon holds the write end now: an end of file means it has gone.
    drop(ready_end);
    if !client::wait_readable(ready.as_fd(), START_TIMEOUT)? {
        bail!("the daemon did not answer within {START_TIMEOUT:?}; see {}", paths.log.display());
    }
    let mut said = [0u8; 16];
    if File::from(ready).read(&mut said)? > 0 {
        return Ok(child.id());
    }
    let status = child.wait()?;
    let mut text = String::new();
    if let Ok(mut f) = File::open(&paths.log) {
        let _ = f.seek(std::io::SeekFrom::Start(from)).and_then(|_| f.read_to_string(&mut text));
    }
    bail!("the daemon did not start ({status}):\n{}", text.trim_end())
}

/// `daemon stop`: asks the daemon to stop and waits until it has.
pub fn stop() -> u8 {
    let paths = match paths() {
        Ok(p) => p,
        Err(code) => return code,
    };
    match client::stop(&paths) {
        Ok(None) => println!("no daemon is running"),
        Ok(Some(pid)) => println!("daemon stopped (pid {pid})"),
        Err(e) => return fail(e, 1),
    }
    0
}

/// `daemon restart`: keeps the running daemon's plugins unless given new
/// ones, and each of its limits unless given a new one.
pub fn restart(specs: &[String], limits: &DaemonLimits) -> u8 {
    let paths = match paths() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut specs = specs.to_vec();
    let mut limits = limits.clone();
    if let Some(Ok(Reply::Status(s))) = Client::connect(&paths).ok().map(|mut c| c.call(&Request::Status)) {
        if specs.is_empty() {
            specs = s.default_plugins;
        }
        if let Some(running) = &s.limits {
            limits = limits.or_running(running);
        }
        if limits.executor.is_none() {
            limits.executor = s.executor;
        }
    }
    match stop() {
        0 => start(false, &specs, &limits),
        code => code,
    }
}

pub fn status() -> u8 {
    let paths = match paths() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let reply = connect(&paths).and_then(|mut c| c.call(&Request::Status).map_err(|e| fail(e, 1)));
    let s = match reply {
        Ok(Reply::Status(s)) => s,
        Ok(other) => return fail(format!("unexpected reply {other:?}"), 1),
        Err(code) => return code,
    };
    print!("{}", client::describe(&s));
    0
}

pub struct SubmitArgs<'a> {
    pub file: &'a Path,
    pub inputs: &'a super::InputArgs,
    pub plugins: &'a [String],
    pub max_tasks: Option<u32>,
    pub max_fanout: Option<u32>,
    pub wait: bool,
    /// Send this process's environment (`submit` without `--no-env`).
    pub env: bool,
    /// Reuse cached task results (`--cache`).
    pub cache: bool,
}

/// `submit`: prints the workflow's id, or with `wait` streams it and exits
/// as `oxiida run` would have.
pub fn submit(args: SubmitArgs) -> u8 {
    // Read before anything else: a bad value is a usage error, and the
    // daemon never sees it.
    let inputs = match args.inputs.read(false) {
        Ok(inputs) if inputs.is_empty() => None,
        Ok(inputs) => {
            let map = inputs.iter().map(|(name, value)| (name.to_string(), oxiida::codec::to_wire(value))).collect();
            Some(oxiida_abi::Value::Map(map).to_msgpack().into())
        }
        Err(e) => return fail(e, exit::USAGE),
    };
    let source = match std::fs::read_to_string(args.file) {
        Ok(text) => text,
        Err(e) => return fail(format!("cannot read {}: {e}", args.file.display()), exit::USAGE),
    };
    let plugins = match resolve_plugins(args.plugins) {
        Ok(p) => p,
        Err(e) => return fail(format!("{e:#}"), exit::USAGE),
    };
    let paths = match paths() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut client = match connect(&paths) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let request = Request::Submit(Submit {
        name: args.file.display().to_string(),
        source,
        plugins,
        cwd: std::env::current_dir().ok().map(|d| d.display().to_string()),
        wait: args.wait,
        max_tasks: args.max_tasks,
        max_fanout: args.max_fanout,
        extra: Default::default(),
        env: args.env.then(|| {
            use std::os::unix::ffi::OsStringExt;
            std::env::vars_os().map(|(k, v)| (k.into_vec().into(), v.into_vec().into())).collect()
        }),
        inputs,
        cache: args.cache,
        resume_from: None,
    });
    let id = match client.call(&request) {
        Ok(Reply::Submitted { id }) => id,
        Ok(other) => return fail(format!("unexpected reply {other:?}"), 1),
        Err(e @ client::CallError::TooLarge { .. }) => return fail(format!("cannot submit {}: {e}", args.file.display()), exit::USAGE),
        Err(e) => return fail(e, 1),
    };
    if !args.wait {
        println!("{id}");
        return 0;
    }
    detach_on_ctrl_c(id);
    client.wait_forever();
    follow(&mut client, id)
}

fn follow(client: &mut Client, id: u64) -> u8 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    loop {
        match client.recv() {
            Ok(Reply::Output { text, more, .. }) => {
                // A closed stdout (`| head`) must not stop the workflow.
                let _ = out
                    .write_all(text.as_bytes())
                    .and_then(|()| if more { Ok(()) } else { out.write_all(b"\n") })
                    .and_then(|()| out.flush());
            }
            Ok(Reply::Finished { error, exit_code, .. }) => {
                if let Some(error) = error {
                    eprint!("{}", if error.ends_with('\n') { error } else { error + "\n" });
                }
                return exit_code.map_or(1, |c| u8::try_from(c).unwrap_or(1));
            }
            Ok(other) => return fail(format!("unexpected reply {other:?}"), 1),
            Err(e) => return fail(format!("{e}; workflow {id} may still be running (`oxiida workflow show {id}`)"), 1),
        }
    }
}

/// Ctrl-C (or SIGTERM) leaves the workflow running: it only says so and
/// exits. Signals are handled the one way `oxiida run` handles them: a
/// `signal-hook` iterator on a thread of its own.
fn detach_on_ctrl_c(id: u64) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let watched = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).and_then(|mut signals| {
        std::thread::Builder::new().name("oxiida-signals".into()).spawn(move || {
            if signals.forever().next().is_some() {
                eprintln!("\noxiida: detached; workflow {id} keeps running in the daemon (`oxiida workflow show {id}`)");
                std::process::exit(exit::INTERRUPTED.into());
            }
        })
    });
    if let Err(e) = watched {
        eprintln!("oxiida: warning: cannot watch for Ctrl-C ({e}); it will end this client without a word");
    }
}

fn with_client(then: impl FnOnce(&mut Client) -> anyhow::Result<u8>) -> u8 {
    let paths = match paths() {
        Ok(p) => p,
        Err(code) => return code,
    };
    match connect(&paths) {
        Ok(mut client) => then(&mut client).unwrap_or_else(|e| fail(format!("{e:#}"), 1)),
        Err(code) => code,
    }
}

/// `2026-11-26T00:30:13.250Z`: a time `--since` reads back to the millisecond.
fn rfc3339(ms: i64) -> String {
    let text = utc(ms);
    format!("{}.{:03}Z", text.trim_end_matches('Z').replacen(' ', "T", 1), ms.rem_euclid(1000))
}

/// `workflow list`: one page, printed oldest first (the newest nearest
/// the prompt), and on stderr how to see the next one when there is more.
pub fn list(limit: u32, since: Option<&str>, status: Option<String>, before: Option<u64>) -> u8 {
    let since_ms = match since.map(|t| oxiida_protocol::parse_time(t, oxiida_protocol::now_ms())).transpose() {
        Ok(ms) => ms,
        Err(e) => return fail(format!("--since: {e}"), exit::USAGE),
    };
    let query = oxiida_protocol::List { limit: Some(limit), since_ms, state: status.clone(), before };
    with_client(|client| {
        let Reply::Workflows { mut workflows, more } = client.call(&Request::List(query))? else { bail!("unexpected reply") };
        workflows.reverse();
        println!("{:>6}  {:<11}  {:>4}  {:<20}  {:>9}  NAME", "ID", "STATE", "EXIT", "SUBMITTED", "TOOK");
        for w in &workflows {
            let code = w.exit_code.map_or("-".into(), |c| c.to_string());
            let took = w.finished_ms.map_or("-".into(), |f| duration(f - w.submitted_ms));
            println!("{:>6}  {:<11}  {code:>4}  {:<20}  {took:>9}  {}", w.id, w.state, utc(w.submitted_ms), w.name);
        }
        if let (true, Some(oldest)) = (more, workflows.first()) {
            let mut next = format!("oxiida workflow list --before {}", oldest.id);
            if limit != oxiida_protocol::LIST_DEFAULT {
                next.push_str(&format!(" --limit {limit}"));
            }
            // The same instant on every page, even when given as an age.
            if let Some(ms) = since_ms {
                next.push_str(&format!(" --since {}", rfc3339(ms)));
            }
            if let Some(status) = &status {
                next.push_str(&format!(" --status {status}"));
            }
            eprintln!("oxiida: {} shown; older ones match too: `{next}`", workflows.len());
        }
        Ok(0)
    })
}

pub fn show(id: u64, with_source: bool) -> u8 {
    with_client(|client| {
        let Reply::Workflow(r) = client.call(&Request::Show { id })? else { bail!("unexpected reply") };
        println!("workflow {}: {}", r.id, r.name);
        println!("state: {}{}", r.state, r.exit_code.map_or(String::new(), |c| format!(" (exit {c})")));
        println!("submitted: {}", utc(r.submitted_ms));
        println!("started: {}", r.started_ms.map_or("-".into(), utc));
        println!("finished: {}", r.finished_ms.map_or("-".into(), utc));
        println!("directory: {}", r.cwd.as_deref().unwrap_or("-"));
        println!("plugins: {}", if r.plugins.is_empty() { "none".into() } else { r.plugins.join(", ") });
        if with_source {
            println!("--- source ---\n{}", r.source.trim_end_matches('\n'));
        }
        println!("--- output ---\n{}", r.output.trim_end_matches('\n'));
        if let Some(error) = r.error {
            println!("--- error ---\n{}", error.trim_end());
        }
        // Older daemons know no task records: nothing more to show.
        if let Ok(Reply::Tasks { tasks, .. }) = client.call(&Request::Tasks { id }) {
            print_tasks(&tasks);
        }
        Ok(0)
    })
}

/// The task table of `workflow show`: key, what, status, duration, cached.
fn print_tasks(tasks: &[oxiida_protocol::TaskRow]) {
    // A workflow without tasks (or from before task records): nothing to add.
    if tasks.is_empty() {
        return;
    }
    let count = |s: &str| tasks.iter().filter(|t| t.status == s).count();
    println!(
        "--- tasks: {} ({} succeeded, {} failed, {} replayed, {} cached) ---",
        tasks.len(),
        count("succeeded"),
        count("failed"),
        count("replayed"),
        count("cached")
    );
    let width = tasks.iter().map(|t| t.key.len()).max().unwrap_or(3).max(3);
    // A Dask worker's address is longer than a pid.
    let by = tasks.iter().map(|t| t.worker.chars().count()).max().unwrap_or(0).max(11);
    println!("{:<width$}  {:<9}  {:>8}  {:<6}  {:<by$}  WHAT", "KEY", "STATUS", "TOOK", "CACHED", "BY");
    for t in tasks {
        let took = if t.status == "replayed" || t.status == "cached" { "-".into() } else { duration(t.ended_ms - t.started_ms) };
        let cached = if t.status == "cached" { "yes" } else { "no" };
        let mut what = format!("{} {}", t.kind, t.what);
        if what.chars().count() > 100 {
            what = what.chars().take(99).collect::<String>() + "…";
        }
        if let Some(plugin) = &t.plugin {
            what.push_str(&format!(" [{plugin}]"));
        }
        println!("{:<width$}  {:<9}  {took:>8}  {cached:<6}  {:<by$}  {what}", t.key, t.status, t.worker);
        if let Some(error) = &t.error {
            println!("{:<width$}  error: {}", "", error.lines().next().unwrap_or(""));
        }
    }
}

/// `workflow watch`: follows a workflow live, printing each task as it
/// ends, until the workflow has ended; exits with its exit status.
pub fn watch(id: u64) -> u8 {
    with_client(|client| {
        let mut seen = std::collections::HashSet::new();
        loop {
            let Reply::Workflow(r) = client.call(&Request::Show { id })? else { bail!("unexpected reply") };
            let tasks = match client.call(&Request::Tasks { id }) {
                Ok(Reply::Tasks { tasks, .. }) => tasks,
                _ => Vec::new(),
            };
            for t in tasks.iter().filter(|t| seen.insert(t.key.clone())) {
                let took = if t.status == "replayed" || t.status == "cached" { "-".into() } else { duration(t.ended_ms - t.started_ms) };
                println!("{}  {:<9}  {took:>8}  {} {}", t.key, t.status, t.kind, t.what);
            }
            if r.state != oxiida_protocol::state::RUNNING && r.state != oxiida_protocol::state::QUEUED {
                println!("workflow {id}: {} ({} tasks)", r.state, tasks.len());
                return Ok(r.exit_code.map_or(1, |c| u8::try_from(c).unwrap_or(1)));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

/// The provenance graph of a workflow's recorded tasks: a task node and an
/// output (data) node per task, an edge from a task to its output, and one
/// from an output to each task whose arguments it flowed into.
pub fn graph(id: u64, format: &str) -> u8 {
    with_client(|client| {
        let tasks = match client.call(&Request::Tasks { id }) {
            Ok(Reply::Tasks { tasks, .. }) => tasks,
            Ok(other) => bail!("unexpected reply {other:?}"),
            Err(e) => return Ok(fail(format!("cannot read the tasks of workflow {id}: {e}"), 1)),
        };
        let index: std::collections::HashMap<&str, usize> = tasks.iter().enumerate().map(|(i, t)| (t.key.as_str(), i)).collect();
        let mut edges: Vec<(String, String)> = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            if t.status != "failed" {
                edges.push((format!("t{i}"), format!("d{i}")));
            }
            for input in &t.inputs {
                if let Some(j) = index.get(input.as_str()) {
                    edges.push((format!("d{j}"), format!("t{i}")));
                }
            }
        }
        // One line per label: a newline in a command shows as `\n`.
        let short = |text: &str| {
            let text = text.replace('\n', "\\n");
            if text.chars().count() > 60 {
                text.chars().take(59).collect::<String>() + "…"
            } else {
                text
            }
        };
        let text = match format {
            "json" => {
                let mut nodes = Vec::new();
                for (i, t) in tasks.iter().enumerate() {
                    nodes.push(serde_json::json!({"id": format!("t{i}"), "type": "task", "key": t.key, "kind": t.kind, "what": t.what, "status": t.status, "worker": t.worker}));
                    if t.status != "failed" {
                        nodes.push(serde_json::json!({"id": format!("d{i}"), "type": "data", "of": format!("t{i}")}));
                    }
                }
                let edges: Vec<_> = edges.iter().map(|(a, b)| serde_json::json!({"from": a, "to": b})).collect();
                serde_json::to_string_pretty(&serde_json::json!({"workflow": id, "nodes": nodes, "edges": edges}))? + "\n"
            }
            _ => {
                let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
                let mut dot = format!("digraph \"workflow {id}\" {{\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n");
                for (i, t) in tasks.iter().enumerate() {
                    let color = match t.status.as_str() {
                        "failed" => "#f4b6b6",
                        "cached" | "replayed" => "#d8e4f8",
                        _ => "#d9f2d9",
                    };
                    let label = format!("{} {}\\n{} ({})", t.kind, quote(&short(&t.what)), quote(&t.key), t.status);
                    dot.push_str(&format!("  t{i} [shape=box, style=filled, fillcolor=\"{color}\", label=\"{label}\"];\n"));
                    if t.status != "failed" {
                        dot.push_str(&format!("  d{i} [shape=ellipse, label=\"output\"];\n"));
                    }
                }
                for (a, b) in &edges {
                    dot.push_str(&format!("  {a} -> {b};\n"));
                }
                dot.push_str("}\n");
                dot
            }
        };
        if format != "svg" {
            print!("{text}");
            return Ok(0);
        }
        let spawned = Command::new("dot").arg("-Tsvg").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(fail(
                    "--format svg needs Graphviz's `dot` program, which is not installed: install Graphviz (e.g. `apt-get install graphviz`), or use `--format dot` and render it elsewhere",
                    1,
                ))
            }
            Err(e) => return Ok(fail(format!("cannot run Graphviz's `dot`: {e}"), 1)),
        };
        use std::io::Write;
        child.stdin.take().context("dot's stdin")?.write_all(text.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Ok(fail(format!("Graphviz's `dot` failed ({})", out.status), 1));
        }
        std::io::stdout().write_all(&out.stdout)?;
        Ok(0)
    })
}

/// `workflow resume`: runs an interrupted or failed workflow again, each
/// task with a successful record replayed. Its source file, read again
/// where it was submitted from, must not have changed (the daemon checks).
pub fn resume(id: u64, wait: bool) -> u8 {
    with_client(|client| {
        let Reply::Workflow(r) = client.call(&Request::Show { id })? else { bail!("unexpected reply") };
        let file = match &r.cwd {
            Some(cwd) => Path::new(cwd).join(&r.name),
            None => Path::new(&r.name).to_owned(),
        };
        // The file as it is now; gone, the recorded source runs.
        let source = std::fs::read_to_string(&file).ok();
        let new = match client.call(&Request::Resume { id, source, wait }) {
            Ok(Reply::Submitted { id }) => id,
            Ok(other) => bail!("unexpected reply {other:?}"),
            Err(client::CallError::Daemon { message, .. }) => return Ok(fail(format!("cannot resume workflow {id}: {message}"), 1)),
            Err(e) => return Err(e.into()),
        };
        if !wait {
            println!("{new}");
            return Ok(0);
        }
        eprintln!("oxiida: workflow {id} resumed as workflow {new}");
        detach_on_ctrl_c(new);
        client.wait_forever();
        Ok(follow(client, new))
    })
}

/// `daemon start --resume`: resumes every interrupted workflow the daemon lists.
pub fn resume_all() -> u8 {
    with_client(|client| {
        let Reply::Status(status) = client.call(&Request::Status)? else { bail!("unexpected reply") };
        let mut code = 0;
        for id in status.resumable.iter().rev() {
            match client.call(&Request::Resume { id: *id, source: None, wait: false }) {
                Ok(Reply::Submitted { id: new }) => println!("workflow {id} resumed as workflow {new}"),
                Ok(other) => bail!("unexpected reply {other:?}"),
                Err(e) => code = fail(format!("cannot resume workflow {id}: {e}"), 1),
            }
        }
        if status.resumable.is_empty() {
            println!("no interrupted workflow to resume");
        }
        Ok(code)
    })
}

/// `workflow kill`: cancels it and waits (briefly) to hear how it ended.
pub fn kill(id: u64) -> u8 {
    with_client(|client| {
        client.call(&Request::Kill { id, wait: true })?;
        client.set_timeout(Some(KILL_WAIT));
        loop {
            match client.recv() {
                Ok(Reply::Finished { state, .. }) => {
                    println!("workflow {id}: {state}");
                    return Ok(0);
                }
                // What it prints while it stops.
                Ok(Reply::Output { .. }) => {}
                Ok(other) => bail!("unexpected reply {other:?}"),
                Err(e) if e.timed_out() => break,
                Err(e) => return Err(e.into()),
            }
        }
        println!("workflow {id}: cancelled, still stopping (a foreign call has not returned)");
        Ok(0)
    })
}
