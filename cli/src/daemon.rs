//! The daemon's commands as the `oxiida` CLI runs them: `daemon start|stop|
//! restart|status`, `submit`, `workflow list|show|kill`. Each returns the
//! process's exit status.

use std::io::{Read, Seek};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oxiida_host as plugin;
use oxiida_protocol::client::{self, Client, ConnectError};
use oxiida_protocol::{duration, exit, utc, Paths};
use oxiida_protocol::{PluginSpec, Reply, Request, Submit};

/// How long `start` waits for a new daemon to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

fn fail(message: impl std::fmt::Display, code: u8) -> u8 {
    eprintln!("oxiida: {message}");
    code
}

fn paths() -> Result<Paths, u8> {
    Paths::from_env().map_err(|e| fail(e, exit::USAGE))
}

fn connect(paths: &Paths) -> Result<Client, u8> {
    Client::connect(paths).map_err(|e| fail(e.message(paths), if matches!(e, ConnectError::NotRunning) { exit::NOT_RUNNING } else { 1 }))
}

/// `PATH|NAME[=CONFIG]` as the client sees it: found with the client's
/// search path and made absolute, since the daemon runs elsewhere.
pub fn resolve_plugins(specs: &[String]) -> Result<Vec<PluginSpec>, String> {
    specs
        .iter()
        .map(|spec| {
            let (what, config) = spec.split_once('=').unwrap_or((spec, ""));
            let path = plugin::locate(what)?;
            let path = path.canonicalize().map_err(|e| format!("cannot load plugin {}: {e}", path.display()))?;
            Ok(PluginSpec { path: path.display().to_string(), config: config.as_bytes().to_vec().into() })
        })
        .collect()
}

/// `daemon start`: in the foreground, serve here; otherwise start a
/// detached `daemon start --foreground` and wait until it answers.
pub fn start(foreground: bool, specs: &[String]) -> u8 {
    let paths = match paths() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let plugins = match resolve_plugins(specs) {
        Ok(p) => p,
        Err(e) => return fail(e, exit::USAGE),
    };
    if let Ok(client) = Client::connect(&paths) {
        return fail(format!("a daemon is already running (pid {}, socket {})", client.pid, paths.socket.display()), 1);
    }
    if foreground {
        let loaded: Result<Vec<_>, String> =
            plugins.into_iter().map(|p| Ok((plugin::load(Path::new(&p.path))?, String::from_utf8_lossy(&p.config).into_owned()))).collect();
        return match loaded.and_then(|defaults| oxiida_daemon::server::serve(paths, defaults)) {
            Ok(()) => 0,
            Err(e) => fail(e, 1),
        };
    }
    match spawn_detached(&paths, specs_text(&plugins)) {
        Ok(pid) => {
            println!("daemon started (pid {pid}); socket {}, log {}", paths.socket.display(), paths.log.display());
            0
        }
        Err(e) => fail(e, 1),
    }
}

fn specs_text(plugins: &[PluginSpec]) -> Vec<String> {
    plugins
        .iter()
        .map(|p| if p.config.is_empty() { p.path.clone() } else { format!("{}={}", p.path, String::from_utf8_lossy(&p.config)) })
        .collect()
}

fn spawn_detached(paths: &Paths, specs: Vec<String>) -> Result<u32, String> {
    use std::os::unix::process::CommandExt;
    paths.create()?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .map_err(|e| format!("cannot open the log {}: {e}", paths.log.display()))?;
    let from = log.seek(std::io::SeekFrom::End(0)).unwrap_or(0);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the oxiida executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["daemon", "start", "--foreground"]);
    for spec in specs {
        cmd.arg(format!("--plugin={spec}"));
    }
    let err = log.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err).current_dir("/");
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from this
    // terminal's session, so closing the terminal does not stop it.
    unsafe {
        cmd.pre_exec(|| if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start the daemon: {e}"))?;
    let until = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(client) = Client::connect(paths) {
            return Ok(client.pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(&paths.log) {
                let _ = f.seek(std::io::SeekFrom::Start(from)).and_then(|_| f.read_to_string(&mut text));
            }
            return Err(format!("the daemon did not start ({status}):\n{}", text.trim_end()));
        }
        if Instant::now() > until {
            return Err(format!("the daemon did not answer within {START_TIMEOUT:?}; see {}", paths.log.display()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
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

/// `daemon restart`: keeps the running daemon's plugins unless given new ones.
pub fn restart(specs: &[String]) -> u8 {
    let paths = match paths() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut specs = specs.to_vec();
    if specs.is_empty() {
        if let Ok(Reply::Status(s)) = Client::connect(&paths).map_err(|_| String::new()).and_then(|mut c| c.call(&Request::Status)) {
            specs = s.default_plugins;
        }
    }
    match stop() {
        0 => start(false, &specs),
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
    pub plugins: &'a [String],
    pub max_tasks: Option<u32>,
    pub max_fanout: Option<u32>,
    pub wait: bool,
}

/// `submit`: prints the workflow's id, or with `wait` streams it and exits
/// as `oxiida run` would have.
pub fn submit(args: SubmitArgs) -> u8 {
    let source = match std::fs::read_to_string(args.file) {
        Ok(text) => text,
        Err(e) => return fail(format!("cannot read {}: {e}", args.file.display()), exit::USAGE),
    };
    let plugins = match resolve_plugins(args.plugins) {
        Ok(p) => p,
        Err(e) => return fail(e, exit::USAGE),
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
    });
    let id = match client.call(&request) {
        Ok(Reply::Submitted { id }) => id,
        Ok(other) => return fail(format!("unexpected reply {other:?}"), 1),
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
            Ok(Reply::Output { text, .. }) => {
                // A closed stdout (`| head`) must not stop the workflow.
                let _ = out.write_all(text.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
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

static DETACH_MESSAGE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static DETACH_LEN: AtomicUsize = AtomicUsize::new(0);

/// Ctrl-C leaves the workflow running: the handler only says so and exits.
fn detach_on_ctrl_c(id: u64) {
    extern "C" fn on_signal(_: libc::c_int) {
        let (ptr, len) = (DETACH_MESSAGE.load(Ordering::SeqCst), DETACH_LEN.load(Ordering::SeqCst));
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the message
        // was leaked before the handler was installed.
        unsafe {
            if !ptr.is_null() {
                libc::write(2, ptr.cast(), len);
            }
            libc::_exit(exit::INTERRUPTED.into());
        }
    }
    let text = format!("\noxiida: detached; workflow {id} keeps running in the daemon (`oxiida workflow show {id}`)\n");
    let text: &'static mut [u8] = Box::leak(text.into_bytes().into_boxed_slice());
    DETACH_LEN.store(text.len(), Ordering::SeqCst);
    DETACH_MESSAGE.store(text.as_mut_ptr(), Ordering::SeqCst);
    // SAFETY: installing a handler that only does async-signal-safe things.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn with_client(then: impl FnOnce(&mut Client) -> Result<u8, String>) -> u8 {
    let paths = match paths() {
        Ok(p) => p,
        Err(code) => return code,
    };
    match connect(&paths) {
        Ok(mut client) => then(&mut client).unwrap_or_else(|e| fail(e, 1)),
        Err(code) => code,
    }
}

pub fn list() -> u8 {
    with_client(|client| {
        let Reply::Workflows { workflows } = client.call(&Request::List)? else { return Err("unexpected reply".into()) };
        println!("{:>6}  {:<11}  {:>4}  {:<20}  {:>9}  NAME", "ID", "STATE", "EXIT", "SUBMITTED", "TOOK");
        for w in workflows {
            let code = w.exit_code.map_or("-".into(), |c| c.to_string());
            let took = w.finished_ms.map_or("-".into(), |f| duration(f - w.submitted_ms));
            println!("{:>6}  {:<11}  {code:>4}  {:<20}  {took:>9}  {}", w.id, w.state, utc(w.submitted_ms), w.name);
        }
        Ok(0)
    })
}

pub fn show(id: u64, with_source: bool) -> u8 {
    with_client(|client| {
        let Reply::Workflow(r) = client.call(&Request::Show { id })? else { return Err("unexpected reply".into()) };
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
        Ok(0)
    })
}

/// `workflow kill`: cancels it and waits (briefly) to report how it ended.
pub fn kill(id: u64) -> u8 {
    with_client(|client| {
        client.call(&Request::Kill { id })?;
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let Reply::Workflow(r) = client.call(&Request::Show { id })? else { return Err("unexpected reply".into()) };
            if r.state != oxiida_protocol::state::RUNNING && r.state != oxiida_protocol::state::QUEUED {
                println!("workflow {id}: {}", r.state);
                return Ok(0);
            }
            if Instant::now() > until {
                println!("workflow {id}: cancelled, still stopping (a foreign call has not returned)");
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}
