//! The daemon itself: one per user (a lock file), a Unix socket only its
//! user can open, one task per connection. A connection's bad bytes end that
//! connection at worst, never the daemon or anyone else's.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use crate::log;
use crate::store::{self, Store};
use crate::watch::Watcher;
use crate::workflow::{self, Event, Running};
use oxiida_host::LoadedPlugin;
use oxiida_protocol::{self as protocol, ErrorKind, Reply, Request, Status, Submit, Summary};
use oxiida_protocol::{now_ms, state, Paths};

/// Once a frame has begun, the rest must come within this: a client that
/// stalls mid-frame is cut off rather than holding its task forever.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection must say `hello` this soon, or it is closed: connections
/// that never speak would otherwise hold a task and a descriptor forever.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long running workflows get to stop when the daemon stops.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What every connection and workflow thread shares.
pub struct Shared {
    pub paths: Paths,
    pub store: Store,
    /// Plugins every workflow gets a session of (`daemon start --plugin`).
    pub defaults: Vec<(Arc<LoadedPlugin>, String)>,
    /// An embedder's host for every workflow, instead of plugin sessions.
    pub host: Option<HostFactory>,
    default_specs: Vec<String>,
    started_ms: i64,
    running: Mutex<BTreeMap<u64, Arc<Running>>>,
    loaded: Mutex<BTreeMap<PathBuf, String>>,
    stopping: AtomicBool,
    stop: Notify,
    /// Connections streaming a workflow to a waiting client.
    streaming: AtomicUsize,
    /// Watches the daemon's environment (a Python daemon's site-packages).
    environment: Option<Watcher>,
}

impl Shared {
    /// A workflow's thread is done with it.
    pub fn forget(&self, id: u64) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Remembers a plugin library for `status`.
    pub fn loaded(&self, plugin: &LoadedPlugin) {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).entry(plugin.path.clone()).or_insert_with(|| plugin.name.clone());
    }

    fn running(&self) -> Vec<Arc<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.notify_one();
    }
}

/// Holds the per-user lock for the daemon's life; the kernel drops it when
/// the process dies however it dies, so a SIGKILLed daemon leaves no lock.
struct Lock(#[allow(dead_code)] std::fs::File);

fn lock(paths: &Paths) -> Result<Lock, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&paths.lock)
        .map_err(|e| format!("cannot open {}: {e}", paths.lock.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = paths.recorded_pid().map_or("unknown".to_owned(), |p| p.to_string());
        return Err(format!("a daemon is already running (pid {pid}, socket {})", paths.socket.display()));
    }
    Ok(Lock(file))
}

/// Opens the log; echoes to stderr too unless stderr already is the log
/// (a background daemon's stderr is).
fn open_log(paths: &Paths) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&paths.log)
        .map_err(|e| format!("cannot open the log {}: {e}", paths.log.display()))?;
    let log_meta = file.metadata().ok();
    // SAFETY: fstat on fd 2 into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let stderr_is_log = unsafe { libc::fstat(2, &mut st) } == 0 && log_meta.is_some_and(|m| m.dev() == st.st_dev && m.ino() == st.st_ino);
    crate::log_to(file, !stderr_is_log);
    Ok(())
}

/// Binds the socket owner-only from its first moment: the umask covers the
/// window between bind and chmod.
fn bind(paths: &Paths) -> Result<std::os::unix::net::UnixListener, String> {
    match std::fs::remove_file(&paths.socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(format!("cannot remove {}: {e}", paths.socket.display())),
        _ => {}
    }
    // SAFETY: umask is process-wide; no other thread creates files yet.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(&paths.socket);
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| format!("cannot listen on {}: {e}", paths.socket.display()))?;
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(listener)
}

/// What an embedder adds to a daemon it serves.
#[derive(Default)]
pub struct Options {
    /// Folders whose changes make every reply start with a warning until
    /// the daemon restarts (a Python daemon's site-packages).
    pub watch: Vec<PathBuf>,
    /// How the user restarts this daemon, for that warning.
    pub restart_hint: String,
    /// When set, every workflow runs on the host this makes from its
    /// submission, instead of on sessions of plugins (`defaults` and the
    /// submission's own plugins are then not used).
    pub host: Option<HostFactory>,
}

/// Makes each workflow's [`Host`](oxiida::foreign::Host) from its
/// submission: the Python package's daemon builds its own host, with the
/// functions the client pickled (`Submit::extra`) as the workflow's scope.
#[derive(Clone)]
pub struct HostFactory {
    /// What `status` lists as the daemon's plugin (e.g. `python (in-process)`).
    pub name: String,
    /// The error is the reason the workflow cannot start (exit 2).
    #[allow(clippy::type_complexity)]
    pub make: Arc<dyn Fn(&Submit) -> Result<Arc<dyn oxiida::foreign::Host>, String> + Send + Sync>,
}

/// Runs a daemon in this process until it is told to stop (a `shutdown`
/// request, SIGTERM or SIGINT). Every workflow gets a session of each of
/// `defaults`: loaded plugins, so an embedder can pass one linked into its
/// own process (`plugin::in_process`), such as a Python-bound daemon.
pub fn serve(paths: Paths, defaults: Vec<(Arc<LoadedPlugin>, String)>) -> Result<(), String> {
    serve_with(paths, defaults, Options::default())
}

/// `serve`, with an embedder's options.
pub fn serve_with(paths: Paths, defaults: Vec<(Arc<LoadedPlugin>, String)>, options: Options) -> Result<(), String> {
    paths.create()?;
    open_log(&paths)?;
    let _lock = lock(&paths)?;
    let loaded = defaults.iter().map(|(p, _)| (p.path.clone(), p.name.clone())).collect();
    let store = store::open(&paths.database)?;
    let listener = bind(&paths)?;
    std::fs::write(&paths.pid, format!("{}\n", std::process::id())).map_err(|e| format!("cannot write {}: {e}", paths.pid.display()))?;
    let environment = if options.watch.is_empty() {
        None
    } else {
        let watcher = Watcher::start(&options.watch, options.restart_hint)?;
        log(&format!("watching {} folder(s) of the environment: {}", options.watch.len(), watcher.folders()));
        Some(watcher)
    };
    // Workflows get the client's directory; the daemon pins none.
    let _ = std::env::set_current_dir("/");
    let mut default_specs: Vec<String> = defaults.iter().map(|(p, c)| spec_text(&p.path.display().to_string(), c.as_bytes())).collect();
    default_specs.extend(options.host.iter().map(|h| h.name.clone()));
    let shared = Arc::new(Shared {
        host: options.host,
        default_specs,
        paths: paths.clone(),
        store,
        defaults,
        started_ms: now_ms(),
        running: Mutex::new(BTreeMap::new()),
        loaded: Mutex::new(loaded),
        stopping: AtomicBool::new(false),
        stop: Notify::new(),
        streaming: AtomicUsize::new(0),
        environment,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("oxiida-daemon")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the daemon's runtime: {e}"))?;
    log(&format!("daemon started: socket {}, database {}", paths.socket.display(), paths.database.display()));
    let served = runtime.block_on(accept(listener, shared.clone()));
    stop_workflows(&shared);
    // Let waiting clients hear how their workflows ended.
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while shared.streaming.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    shared.store.close();
    let _ = std::fs::remove_file(&paths.socket);
    let _ = std::fs::remove_file(&paths.pid);
    runtime.shutdown_background();
    log("daemon stopped");
    served
}

async fn accept(listener: std::os::unix::net::UnixListener, shared: Arc<Shared>) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let listener = UnixListener::from_std(listener).map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, shared.clone()));
                }
                // Out of descriptors, say: wait a little, keep serving.
                Err(e) => {
                    log(&format!("cannot accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = shared.stop.notified() => {
                log("stopping: asked by a client");
                return Ok(());
            }
            _ = term.recv() => { log("stopping: SIGTERM"); return Ok(()); }
            _ = int.recv() => { log("stopping: SIGINT"); return Ok(()); }
        }
    }
}

/// Cancels every running workflow, waits a little for them to record their
/// end, and records the rest as interrupted (a foreign call may never return).
fn stop_workflows(shared: &Shared) {
    shared.stopping.store(true, Ordering::SeqCst);
    for w in shared.running() {
        w.stop(state::INTERRUPTED);
    }
    let until = std::time::Instant::now() + STOP_GRACE;
    while !shared.running().is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    for w in shared.running() {
        log(&format!("workflow {} did not stop within {STOP_GRACE:?}; recorded as interrupted", w.id));
        let error = Some("the daemon stopped while it was running; a call did not return in time".into());
        shared.store.finished(w.id, store::Finish { state: state::INTERRUPTED, exit_code: Some(130), error });
    }
}

fn spec_text(path: &str, config: &[u8]) -> String {
    if config.is_empty() {
        path.to_owned()
    } else {
        format!("{path}={}", String::from_utf8_lossy(config))
    }
}

enum Frame {
    Body(Vec<u8>),
    /// The client closed the connection between frames.
    End,
    /// Not a frame; the reply says why, then the connection is closed.
    Bad(String),
}

async fn read_frame(rd: &mut OwnedReadHalf) -> Frame {
    let mut header = [0u8; 4];
    match rd.read(&mut header[..1]).await {
        Ok(0) | Err(_) => return Frame::End,
        Ok(_) => {}
    }
    let rest = async {
        rd.read_exact(&mut header[1..]).await?;
        let len = match protocol::frame_len(header) {
            Ok(len) => len,
            Err(e) => return Ok(Err(e)),
        };
        let mut body = vec![0u8; len];
        rd.read_exact(&mut body).await.map(|_| Ok(body))
    };
    match tokio::time::timeout(FRAME_TIMEOUT, rest).await {
        Ok(Ok(Ok(body))) => Frame::Body(body),
        Ok(Ok(Err(too_big))) => Frame::Bad(too_big),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Frame::Bad("the frame was cut short: the connection closed inside it".into())
        }
        Ok(Err(e)) => Frame::Bad(format!("cannot read the frame: {e}")),
        Err(_) => Frame::Bad(format!("the frame was cut short: its rest did not arrive within {FRAME_TIMEOUT:?}")),
    }
}

async fn send(wr: &mut OwnedWriteHalf, reply: &Reply) -> bool {
    wr.write_all(&protocol::encode(reply)).await.is_ok()
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
    Reply::Error { kind, message: message.into() }
}

async fn connection(stream: UnixStream, shared: Arc<Shared>) {
    let (mut rd, mut wr) = stream.into_split();
    let mut greeted = false;
    loop {
        let frame = if greeted {
            read_frame(&mut rd).await
        } else {
            match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut rd)).await {
                Ok(frame) => frame,
                Err(_) => {
                    log("closing a connection: no `hello` came");
                    send(&mut wr, &error(ErrorKind::Handshake, format!("no `hello` came within {HELLO_TIMEOUT:?}"))).await;
                    return;
                }
            }
        };
        let body = match frame {
            Frame::Body(body) => body,
            Frame::End => return,
            Frame::Bad(why) => {
                log(&format!("closing a connection: {why}"));
                send(&mut wr, &error(ErrorKind::BadFrame, why)).await;
                return;
            }
        };
        // Until it restarts, a daemon whose environment changed says so first.
        if let Some(warning) = shared.environment.as_ref().and_then(Watcher::warning) {
            if !send(&mut wr, &Reply::Notice { message: warning }).await {
                return;
            }
        }
        let request = match protocol::decode_request(&body) {
            Ok(r) => r,
            Err((kind, why)) => {
                // The framing is intact, so the connection can go on.
                if !send(&mut wr, &error(kind, why)).await {
                    return;
                }
                continue;
            }
        };
        let keep = match (greeted, request) {
            (false, Request::Hello { protocol: v, .. }) if v == protocol::PROTOCOL_VERSION => {
                greeted = true;
                send(&mut wr, &Reply::Hello { protocol: v, server: env!("CARGO_PKG_VERSION").into(), pid: std::process::id() }).await
            }
            (false, Request::Hello { protocol: v, .. }) => {
                let why = format!("this daemon speaks protocol version {}, the client {v}", protocol::PROTOCOL_VERSION);
                send(&mut wr, &error(ErrorKind::Handshake, why)).await;
                false
            }
            (false, _) => {
                send(&mut wr, &error(ErrorKind::Handshake, "the first request must be `hello`")).await;
                false
            }
            (true, request) => handle(request, &shared, &mut rd, &mut wr).await,
        };
        if !keep {
            return;
        }
    }
}

/// Answers one request; false when the connection should close.
async fn handle(request: Request, shared: &Arc<Shared>, rd: &mut OwnedReadHalf, wr: &mut OwnedWriteHalf) -> bool {
    let reply = match request {
        Request::Hello { .. } => error(ErrorKind::Handshake, "this connection has already shaken hands"),
        Request::Status => Reply::Status(status(shared)),
        Request::Submit(submit) => return self::submit(submit, shared, rd, wr).await,
        Request::List => match shared.store.list().await {
            Ok(workflows) => Reply::Workflows { workflows },
            Err(e) => error(ErrorKind::Internal, e),
        },
        Request::Show { id } => match shared.store.show(id).await {
            Ok(Some(record)) => Reply::Workflow(record),
            Ok(None) => error(ErrorKind::NotFound, format!("no workflow {id}")),
            Err(e) => error(ErrorKind::Internal, e),
        },
        Request::Kill { id } => kill(id, shared).await,
        Request::Shutdown => {
            let ok = send(wr, &Reply::ShuttingDown).await;
            shared.begin_stop();
            return ok;
        }
    };
    send(wr, &reply).await
}

fn status(shared: &Shared) -> Status {
    let loaded = shared.loaded.lock().unwrap_or_else(|p| p.into_inner());
    Status {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_ms: shared.started_ms,
        socket: shared.paths.socket.display().to_string(),
        log: shared.paths.log.display().to_string(),
        database: shared.paths.database.display().to_string(),
        default_plugins: shared.default_specs.clone(),
        loaded_plugins: loaded.iter().map(|(path, name)| format!("{name} ({})", path.display())).collect(),
        running: shared
            .running()
            .iter()
            .map(|w| Summary {
                id: w.id,
                name: w.name.clone(),
                state: state::RUNNING.into(),
                exit_code: None,
                submitted_ms: w.submitted_ms,
                finished_ms: None,
            })
            .collect(),
    }
}

async fn kill(id: u64, shared: &Shared) -> Reply {
    let found = shared.running.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
    if let Some(w) = found {
        log(&format!("workflow {id}: killing"));
        w.stop(state::KILLED);
        return Reply::Killing { id };
    }
    match shared.store.show(id).await {
        Ok(Some(r)) => error(ErrorKind::Refused, format!("workflow {id} is not running: it {}", r.state)),
        Ok(None) => error(ErrorKind::NotFound, format!("no workflow {id}")),
        Err(e) => error(ErrorKind::Internal, e),
    }
}

async fn submit(submit: Submit, shared: &Arc<Shared>, rd: &mut OwnedReadHalf, wr: &mut OwnedWriteHalf) -> bool {
    if shared.stopping.load(Ordering::SeqCst) {
        return send(wr, &error(ErrorKind::Refused, "the daemon is stopping")).await;
    }
    let mut plugins: Vec<String> = shared.default_specs.iter().map(|s| format!("{s} (daemon default)")).collect();
    plugins.extend(submit.plugins.iter().map(|p| spec_text(&p.path, &p.config)));
    let new = store::New { name: submit.name.clone(), source: submit.source.clone(), plugins, cwd: submit.cwd.clone() };
    let id = match shared.store.insert(new).await {
        Ok(id) => id,
        Err(e) => return send(wr, &error(ErrorKind::Internal, format!("cannot record the workflow: {e}"))).await,
    };
    let running = Arc::new(Running::new(id, submit.name.clone(), now_ms()));
    // Watching before the thread starts: no line printed can be missed.
    let events = submit.wait.then(|| running.watch());
    shared.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id, running.clone());
    if let Err(e) = workflow::spawn(shared.clone(), running, submit) {
        shared.forget(id);
        let why = format!("cannot start a thread for the workflow: {e}");
        shared.store.finished(id, store::Finish { state: state::FAILED, exit_code: Some(1), error: Some(why.clone()) });
        return send(wr, &error(ErrorKind::Internal, why)).await;
    }
    if !send(wr, &Reply::Submitted { id }).await {
        return false;
    }
    let Some(events) = events else { return true };
    shared.streaming.fetch_add(1, Ordering::SeqCst);
    let kept = stream(id, events, rd, wr).await;
    shared.streaming.fetch_sub(1, Ordering::SeqCst);
    kept
}

/// Streams a workflow's output until it ends or the client leaves (Ctrl-C
/// detaches: the workflow goes on).
async fn stream(id: u64, mut events: tokio::sync::mpsc::UnboundedReceiver<Event>, rd: &mut OwnedReadHalf, wr: &mut OwnedWriteHalf) -> bool {
    let mut byte = [0u8; 1];
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Output(text)) => {
                    if !send(wr, &Reply::Output { id, text }).await {
                        return false;
                    }
                }
                Some(Event::Finished { state, exit_code, error, variables }) => {
                    let variables = variables.map(serde_bytes::ByteBuf::from);
                    return send(wr, &Reply::Finished { id, state: state.into(), exit_code, error, variables }).await;
                }
                None => return send(wr, &self::error(ErrorKind::Internal, "the workflow ended without a result")).await,
            },
            // A waiting client sends nothing; a read that returns means it left.
            _ = rd.read(&mut byte) => {
                log(&format!("workflow {id}: its client detached"));
                return false;
            }
        }
    }
}
