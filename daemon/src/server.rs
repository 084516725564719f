//! The daemon itself: one per user (a lock file), a Unix socket only its
//! user can open, one task per connection. A connection's bad bytes end that
//! connection at worst, never the daemon or anyone else's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use oxiida_abi::frame::HEADER_LEN;

use crate::limits::{format_size, Admitted, Limits, Queue};
use crate::log;
use crate::reap::Reaper;
use crate::store::{self, Store, StoreError};
use crate::watch::{WatchError, Watcher};
use crate::workflow::{self, Event, Pool, Running};
use oxiida::Interrupt;
use oxiida_host::LoadedPlugin;
use oxiida_protocol::{self as protocol, ErrorKind, PathsError, PluginSpec, Reply, Request, Status, Submit, Summary};
use oxiida_protocol::{now_ms, state, Paths};

/// Once a frame has begun, the rest must come within this (give or take
/// one more period): a client that stalls mid-frame is cut off rather than
/// holding its task forever.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection must say `hello` this soon, or it is closed: connections
/// that never speak would otherwise hold a task and a descriptor forever.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait after a failed `accept` (out of descriptors, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long running workflows get to stop when the daemon stops.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long clients waiting on a workflow get to hear how it ended, when
/// the daemon stops.
const GOODBYE_GRACE: Duration = Duration::from_secs(1);

/// Why a daemon could not serve, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("a daemon is already running (pid {pid}, socket {})", socket.display())]
    AlreadyRunning { pid: String, socket: PathBuf },
    #[error("cannot remove {}: {source}", path.display())]
    RemoveSocket { path: PathBuf, source: io::Error },
    #[error("cannot listen on {}: {source}", path.display())]
    Listen { path: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}", path.display())]
    PidFile { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("cannot watch for SIGTERM and SIGINT: {0}")]
    Signals(#[source] io::Error),
    #[error("cannot start the daemon's runtime: {0}")]
    Runtime(#[source] io::Error),
}

/// What every connection and workflow thread shares.
pub struct Shared {
    pub paths: Paths,
    pub store: Store,
    /// Plugins every workflow gets a session of (`daemon start --plugin`),
    /// loaded again by each workflow's runner.
    pub defaults: Vec<(Arc<LoadedPlugin>, String)>,
    /// Runners: started ahead, one per workflow.
    pub pool: Pool,
    /// The daemon's limits (`daemon start --memory-limit ...`).
    pub limits: Limits,
    /// Workflows waiting for one of the `--max-running` slots.
    pub queue: Queue,
    /// Finds and kills what workflows leave running (cgroups or markers).
    pub reaper: Reaper,
    default_specs: Vec<String>,
    /// [`Options::environment`], for `status`.
    environment_name: Option<String>,
    /// [`Options::executor`], for the runners' jobs and `status`.
    pub executor: Option<String>,
    started_ms: i64,
    /// Workflows not finished yet; watched, so a stopping daemon learns
    /// when the last one has ended.
    running: watch::Sender<BTreeMap<u64, Arc<Running>>>,
    loaded: Mutex<BTreeMap<PathBuf, String>>,
    /// Triggered when the daemon is to stop (a `shutdown`, SIGTERM, SIGINT).
    shutdown: Interrupt,
    /// Connections streaming a workflow to a waiting client.
    streaming: watch::Sender<usize>,
    /// Watches the daemon's environment (a Python daemon's site-packages).
    environment: Option<Watcher>,
}

impl Shared {
    /// A workflow's thread is done with it.
    pub fn forget(&self, id: u64) {
        self.running.send_modify(|running| {
            running.remove(&id);
        });
    }

    /// Remembers a plugin library a runner loaded, for `status`.
    pub fn loaded(&self, path: PathBuf, name: String) {
        self.loaded.lock().entry(path).or_insert(name);
    }

    /// The default plugins as each runner loads them.
    pub fn default_plugins(&self) -> Vec<PluginSpec> {
        self.defaults
            .iter()
            .map(|(p, config)| PluginSpec { path: p.path.display().to_string(), config: config.as_bytes().to_vec().into() })
            .collect()
    }

    fn running(&self) -> Vec<Arc<Running>> {
        self.running.borrow().values().cloned().collect()
    }

    fn begin_stop(&self, why: &str) {
        if !self.shutdown.is_triggered() {
            log(&format!("stopping: {why}"));
        }
        self.shutdown.trigger();
    }
}

/// Counts a connection streaming to a waiting client while it lives.
struct Streaming<'a>(&'a watch::Sender<usize>);

impl<'a> Streaming<'a> {
    fn new(count: &'a watch::Sender<usize>) -> Self {
        count.send_modify(|n| *n += 1);
        Streaming(count)
    }
}

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Holds the per-user lock for the daemon's life; the kernel drops it when
/// the process dies however it dies, so a SIGKILLed daemon leaves no lock.
struct Lock(#[allow(dead_code)] std::fs::File);

fn lock(paths: &Paths) -> Result<Lock, ServeError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&paths.lock)
        .map_err(|source| ServeError::Open { path: paths.lock.clone(), source })?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = paths.recorded_pid().map_or("unknown".to_owned(), |p| p.to_string());
        return Err(ServeError::AlreadyRunning { pid, socket: paths.socket.clone() });
    }
    Ok(Lock(file))
}

/// Opens the log (0600, see `Paths::open_log`); echoes to stderr too
/// unless stderr already is the log (a background daemon's stderr is).
fn open_log(paths: &Paths) -> Result<(), ServeError> {
    let file = paths.open_log()?;
    let log_meta = file.metadata().ok();
    // SAFETY: `stat` is plain data, for which all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on fd 2 into a struct this function owns.
    let stderr_is_log = unsafe { libc::fstat(2, &mut st) } == 0 && log_meta.is_some_and(|m| m.dev() == st.st_dev && m.ino() == st.st_ino);
    crate::log_to(file, !stderr_is_log);
    Ok(())
}

/// Binds the socket owner-only from its first moment: the umask covers the
/// window between bind and chmod.
fn bind(paths: &Paths) -> Result<std::os::unix::net::UnixListener, ServeError> {
    match std::fs::remove_file(&paths.socket) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => {
            return Err(ServeError::RemoveSocket { path: paths.socket.clone(), source })
        }
        _ => {}
    }
    // SAFETY: umask cannot fail; it is process-wide, and no other thread creates files yet.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(&paths.socket);
    // SAFETY: as above, restoring the mask.
    unsafe { libc::umask(old) };
    let listen = |source| ServeError::Listen { path: paths.socket.clone(), source };
    let listener = bound.map_err(listen)?;
    std::fs::set_permissions(&paths.socket, std::fs::Permissions::from_mode(0o600)).map_err(listen)?;
    listener.set_nonblocking(true).map_err(listen)?;
    Ok(listener)
}

/// The daemon's umask, 077, until dropped (however `serve_with` returns):
/// an embedder's process gets its own back.
struct PrivateUmask(libc::mode_t);

impl PrivateUmask {
    fn set() -> PrivateUmask {
        // SAFETY: umask cannot fail.
        let user = unsafe { libc::umask(0o077) };
        workflow::set_user_umask(user);
        PrivateUmask(user)
    }
}

impl Drop for PrivateUmask {
    fn drop(&mut self) {
        // SAFETY: as above, restoring the user's mask.
        unsafe { libc::umask(self.0) };
    }
}

/// What an embedder adds to a daemon it serves.
#[derive(Default)]
pub struct Options {
    /// Folders whose changes make every reply start with a warning until
    /// the daemon restarts (a Python daemon's site-packages).
    pub watch: Vec<PathBuf>,
    /// How the user restarts this daemon, for that warning.
    pub restart_hint: String,
    /// Written to, then closed, once the daemon serves: how `daemon start`
    /// learns that its daemon is ready without polling the socket. When
    /// the daemon fails first, it is closed unwritten.
    pub ready: Option<std::fs::File>,
    /// How a workflow's runner process is started (program, then
    /// arguments): it must call [`crate::runner::run_from_fd`]. The CLI's
    /// daemon runs its own executable (`oxiida daemon runner`), the
    /// Python package's its own interpreter.
    pub runner: Vec<OsString>,
    /// What `status` lists as the daemon's plugin when the runners make
    /// their own host (e.g. `python (<interpreter>)`).
    pub host_name: Option<String>,
    /// Memory and output per workflow, workflows at once, idle connections.
    pub limits: Limits,
    /// What `status` reports as the daemon's environment: the Python
    /// package's `sys.prefix`, so a client of another one can refuse it.
    pub environment: Option<String>,
    /// `daemon start --executor`: handed to every runner as its
    /// `OXIIDA_EXECUTOR` (over the submitted one), and reported by `status`
    /// so that `daemon restart` keeps it. The Python package's runners get
    /// it on their command line too.
    pub executor: Option<String>,
}

/// The environment variable naming the descriptor a daemon started in the
/// background says "ready" on: the write end of a pipe whose read end the
/// starter (`oxiida daemon start`, `python -m oxiida daemon start`) waits on.
pub const READY_FD: &str = "OXIIDA_DAEMON_READY_FD";

/// The ready pipe this process was handed, if any (for [`Options::ready`]);
/// taken out of the environment so that workflows do not inherit it.
pub fn ready_pipe() -> Option<std::fs::File> {
    use std::os::fd::{FromRawFd, RawFd};
    let fd: RawFd = std::env::var(READY_FD).ok()?.parse().ok()?;
    std::env::remove_var(READY_FD);
    // SAFETY: F_SETFD on a descriptor number only sets its flags; it fails
    // (and nothing is taken) when no such descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this
    // process by its starter for this one use; nothing else owns it.
    Some(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Runs a daemon in this process until it is told to stop (a `shutdown`
/// request, SIGTERM or SIGINT). Every workflow gets a session of each of
/// `defaults`: loaded plugins, so an embedder can pass one linked into its
/// own process (`plugin::in_process`), such as a Python-bound daemon.
pub fn serve(paths: Paths, defaults: Vec<(Arc<LoadedPlugin>, String)>) -> Result<(), ServeError> {
    serve_with(paths, defaults, Options::default())
}

/// Raises the soft limit on open descriptors to the hard limit: each
/// running workflow holds several (its runner's socket, pipes, shells), and
/// the soft limit (often 1,024) would refuse submits long before the
/// machine runs out. Logged either way.
fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        log(&format!("cannot read the open-file limit: {}", std::io::Error::last_os_error()));
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
    // SAFETY: setrlimit reads one rlimit from a struct we own; raising the
    // soft limit up to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        log(&format!("open-file limit raised from {} to {}", limit.rlim_cur, limit.rlim_max));
    } else {
        log(&format!("cannot raise the open-file limit from {}: {}", limit.rlim_cur, std::io::Error::last_os_error()));
    }
}

/// `serve`, with an embedder's options.
pub fn serve_with(paths: Paths, defaults: Vec<(Arc<LoadedPlugin>, String)>, options: Options) -> Result<(), ServeError> {
    // Everything the daemon creates is its user's alone, for its whole life
    // (the umask is process-wide); its runners get the user's umask back.
    let _umask = PrivateUmask::set();
    paths.create()?;
    open_log(&paths)?;
    raise_fd_limit();
    let _lock = lock(&paths)?;
    let loaded = defaults.iter().map(|(p, _)| (p.path.clone(), p.name.clone())).collect();
    // Records an earlier version (or umask) left readable are made private.
    for suffix in ["", "-wal", "-shm"] {
        let mut file = paths.database.clone().into_os_string();
        file.push(suffix);
        oxiida_protocol::paths::make_file_private(std::path::Path::new(&file))?;
    }
    let store = store::open_with(&paths.database, Some(&paths.last_id))?;
    // Before any runner starts: what earlier daemons' workflows left.
    let reaper = Reaper::new(&paths);
    reaper.clean_leftovers(&store);
    let listener = bind(&paths)?;
    std::fs::write(&paths.pid, format!("{}\n", std::process::id()))
        .map_err(|source| ServeError::PidFile { path: paths.pid.clone(), source })?;
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
    default_specs.extend(options.host_name);
    let limits = options.limits;
    let (max_running, by_fds) = limits.effective_max_running();
    log(&format!(
        "limits: memory {} per workflow, output {} per workflow, {max_running} workflow(s) running at once{}, idle connections closed after {}s",
        limits.memory.map_or("unlimited".into(), format_size),
        format_size(limits.output),
        match by_fds {
            Some(cap) if cap < limits.max_running => format!(" (asked {}; the open-file limit allows {cap})", limits.max_running),
            _ => String::new(),
        },
        limits.idle_timeout.as_secs()
    ));
    let shared = Arc::new(Shared {
        pool: Pool::new(options.runner, limits.memory),
        queue: Queue::new(max_running),
        limits,
        reaper,
        default_specs,
        environment_name: options.environment,
        executor: options.executor,
        paths: paths.clone(),
        store,
        defaults,
        started_ms: now_ms(),
        running: watch::Sender::new(BTreeMap::new()),
        loaded: Mutex::new(loaded),
        shutdown: Interrupt::new(),
        streaming: watch::Sender::new(0),
        environment,
    });
    let signals = watch_signals(shared.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("oxiida-daemon")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    log(&format!("daemon started: socket {}, database {}", paths.socket.display(), paths.database.display()));
    let served = runtime.block_on(async {
        // On this thread, which lives as long as the daemon: runners die
        // with the thread that started them (PR_SET_PDEATHSIG).
        shared.pool.fill();
        let served = accept(listener, &shared, options.ready).await;
        stop_workflows(&shared).await;
        shared.reaper.end_all();
        // Let waiting clients hear how their workflows ended.
        let _ = tokio::time::timeout(GOODBYE_GRACE, shared.streaming.subscribe().wait_for(|n| *n == 0)).await;
        served
    });
    signals.close();
    shared.store.close();
    let _ = std::fs::remove_file(&paths.socket);
    let _ = std::fs::remove_file(&paths.pid);
    runtime.shutdown_background();
    log("daemon stopped");
    served
}

/// The one way the daemon handles signals, as the CLI does (ARCHITECTURE.md):
/// a `signal-hook` iterator on a thread of its own. SIGTERM and SIGINT stop
/// the daemon; the thread ends when the returned handle is closed.
fn watch_signals(shared: Arc<Shared>) -> Result<signal_hook::iterator::Handle, ServeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(ServeError::Signals)?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("oxiida-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                shared.begin_stop(if signal == SIGTERM { "SIGTERM" } else { "SIGINT" });
            }
        })
        .map_err(ServeError::Signals)?;
    Ok(handle)
}

async fn accept(listener: std::os::unix::net::UnixListener, shared: &Arc<Shared>, ready: Option<std::fs::File>) -> Result<(), ServeError> {
    let listen = |source| ServeError::Listen { path: shared.paths.socket.clone(), source };
    let listener = UnixListener::from_std(listener).map_err(listen)?;
    if let Some(mut ready) = ready {
        // Whoever waits has gone if this fails; serving goes on.
        let _ = std::io::Write::write_all(&mut ready, b"ready\n");
    }
    // Out of descriptors (EMFILE, ENFILE) or memory: the connection waits in
    // the backlog while the daemon backs off, logging once per episode.
    let mut backoff: Option<Duration> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if backoff.take().is_some() {
                        log("accepting connections again");
                    }
                    match stream.peer_cred() {
                        Ok(cred) if cred.uid() == oxiida_protocol::paths::uid() => {
                            tokio::spawn(connection(stream, shared.clone()));
                        }
                        // Another user (the socket's mode should have stopped
                        // them): closed unanswered.
                        Ok(cred) => log(&format!(
                            "refusing a connection from uid {} (pid {}): this daemon serves uid {} only",
                            cred.uid(),
                            cred.pid().map_or("unknown".into(), |p| p.to_string()),
                            oxiida_protocol::paths::uid()
                        )),
                        Err(e) => log(&format!("refusing a connection whose credentials cannot be read: {e}")),
                    }
                }
                // Never fatal: back off (50 ms, doubling up to 1 s), keep serving.
                Err(e) => {
                    let wait = match backoff {
                        None => {
                            let hint = match e.raw_os_error() {
                                Some(libc::EMFILE) | Some(libc::ENFILE) => {
                                    "; out of open files: fewer --max-running, or a higher `ulimit -n` before `oxiida daemon start`"
                                }
                                _ => "",
                            };
                            log(&format!("cannot accept a connection: {e}{hint}; retrying, clients wait meanwhile"));
                            ACCEPT_BACKOFF
                        }
                        Some(wait) => (wait * 2).min(Duration::from_secs(1)),
                    };
                    backoff = Some(wait);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shared.shutdown.triggered() => return Ok(()),
                    }
                }
            },
            () = shared.shutdown.triggered() => return Ok(()),
        }
    }
}

/// Cancels every running workflow, waits (up to [`STOP_GRACE`]) until they
/// have recorded their end, and records the rest as interrupted (a foreign
/// call may never return).
async fn stop_workflows(shared: &Shared) {
    shared.shutdown.trigger();
    // Queued ones never start: they end interrupted, their clients told.
    for w in shared.queue.close() {
        let error = Some("the daemon stopped while it was queued; submit it again".into());
        workflow::end_unstarted(shared, &w, store::Finish { state: state::INTERRUPTED, exit_code: Some(130), error }).await;
    }
    shared.pool.drain().await;
    for w in shared.running() {
        w.stop(state::INTERRUPTED);
    }
    let mut running = shared.running.subscribe();
    let _ = tokio::time::timeout(STOP_GRACE, async { running.wait_for(BTreeMap::is_empty).await.map(drop) }).await;
    for w in shared.running() {
        log(&format!("workflow {} did not stop within {STOP_GRACE:?}; recorded as interrupted", w.id));
        let error = Some("the daemon stopped while it was running; a call did not return in time".into());
        shared.store.finished(w.id, store::Finish { state: state::INTERRUPTED, exit_code: Some(130), error });
    }
    shared.pool.drain().await;
}

fn spec_text(path: &str, config: &[u8]) -> String {
    if config.is_empty() {
        path.to_owned()
    } else {
        format!("{path}={}", String::from_utf8_lossy(config))
    }
}

enum Frame {
    /// A whole frame, header included (see [`codec`]).
    Whole(bytes::BytesMut),
    /// The client closed the connection between frames.
    End,
    /// Not a frame; the reply says why, then the connection is closed.
    Bad(String),
}

/// The reading end of a connection: `oxiida_abi::frame`'s framing (a
/// 4-byte big-endian length, then the body), read by tokio-util's codec.
type Frames = FramedRead<OwnedReadHalf, LengthDelimitedCodec>;

/// The codec that reads what `oxiida_abi::frame` writes, refusing bodies
/// over the protocol's `MAX_FRAME` as `oxiida_abi::frame::read` does. A
/// frame keeps its header until it is whole (the adjustment counts the
/// header, nothing is skipped), so a frame that has begun always shows in
/// the read buffer, and an end of stream inside one is always an error.
pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(HEADER_LEN)
        .big_endian()
        .max_frame_length(protocol::MAX_FRAME)
        .length_adjustment(HEADER_LEN as isize)
        .num_skip(0)
        .new_codec()
}

/// The next frame. A client may stay silent between frames as long as it
/// likes; once a frame has begun, it must be complete by the end of the
/// next full [`FRAME_TIMEOUT`] period.
async fn read_frame(rd: &mut Frames) -> Frame {
    let mut begun = false;
    loop {
        match tokio::time::timeout(FRAME_TIMEOUT, rd.next()).await {
            Ok(Some(Ok(frame))) => return Frame::Whole(frame),
            Ok(None) => return Frame::End,
            Ok(Some(Err(e))) if e.kind() == io::ErrorKind::InvalidData => {
                // Too long: the codec leaves the header in its buffer.
                let header = rd.read_buffer().get(..HEADER_LEN).and_then(|h| h.try_into().ok());
                let why = header.and_then(|h| protocol::frame_len(h).err()).map_or_else(|| e.to_string(), |e| e.to_string());
                return Frame::Bad(why);
            }
            Ok(Some(Err(_))) if rd.read_buffer().is_empty() => return Frame::End,
            // The codec's error for an end of stream inside a frame.
            Ok(Some(Err(e))) if e.kind() == io::ErrorKind::Other => {
                return Frame::Bad("the frame was cut short: the connection closed inside it".into())
            }
            Ok(Some(Err(e))) => return Frame::Bad(format!("cannot read the frame: {e}")),
            Err(_) if rd.read_buffer().is_empty() => begun = false,
            Err(_) if begun => return Frame::Bad(format!("the frame was cut short: its rest did not arrive within {FRAME_TIMEOUT:?}")),
            Err(_) => begun = true,
        }
    }
}

/// Sends a reply, in as many frames as it takes to keep each one under
/// the limit (see `protocol::split`).
async fn send(wr: &mut OwnedWriteHalf, reply: &Reply) -> bool {
    let long = |n: usize| n > protocol::CHUNK;
    let big = match reply {
        Reply::Output { text, .. } => long(text.len()),
        Reply::Finished { error, variables, exception, .. } => {
            error.as_ref().is_some_and(|e| long(e.len()))
                || variables.as_ref().is_some_and(|v| long(v.len()))
                || exception.as_ref().is_some_and(|v| long(v.len()))
        }
        Reply::Workflow(r) => {
            long(r.source.len())
                || long(r.output.len())
                || r.error.as_ref().is_some_and(|e| long(e.len()))
                || r.variables.as_ref().is_some_and(|v| long(v.len()))
                || r.exception.as_ref().is_some_and(|v| long(v.len()))
        }
        _ => false,
    };
    if !big {
        return wr.write_all(&protocol::encode(reply)).await.is_ok();
    }
    for frame in protocol::split(reply.clone()) {
        if wr.write_all(&protocol::encode(&frame)).await.is_err() {
            return false;
        }
    }
    true
}

/// The summaries' share of a `workflows` frame: a page whose names are
/// long is cut short (and says there is more) rather than over a frame.
const LIST_BYTES: usize = protocol::MAX_FRAME / 2;

/// One page of the records (`workflow list`).
async fn list(query: protocol::List, shared: &Shared) -> Reply {
    if let Some(s) = query.state.as_deref().filter(|s| !state::ALL.contains(s)) {
        return error(ErrorKind::BadRequest, format!("no state `{s}`: use one of {}", state::ALL.join(", ")));
    }
    let limit = query.limit.unwrap_or(protocol::LIST_DEFAULT).clamp(1, protocol::LIST_MAX);
    let page = store::Page { limit, since_ms: query.since_ms, state: query.state, before: query.before };
    match shared.store.list(page).await {
        Ok((mut workflows, mut more)) => {
            let mut bytes = 0;
            if let Some(cut) = workflows.iter().position(|w| {
                bytes += w.name.len() + 96;
                bytes > LIST_BYTES
            }) {
                workflows.truncate(cut.max(1));
                more = true;
            }
            Reply::Workflows { workflows, more }
        }
        Err(e) => error(ErrorKind::Internal, e.to_string()),
    }
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
    Reply::Error { kind, message: message.into() }
}

async fn connection(stream: UnixStream, shared: Arc<Shared>) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = FramedRead::new(rd, codec());
    let mut greeted = false;
    loop {
        let frame = if greeted {
            match tokio::time::timeout(shared.limits.idle_timeout, read_frame(&mut rd)).await {
                Ok(frame) => frame,
                Err(_) => {
                    let secs = shared.limits.idle_timeout.as_secs();
                    let why = format!(
                        "closing this connection: no request came for {secs}s (the daemon's --idle-timeout); connect again to go on"
                    );
                    send(&mut wr, &Reply::Notice { message: why }).await;
                    return;
                }
            }
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
        let frame = match frame {
            Frame::Whole(frame) => frame,
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
        let request = match protocol::decode_request(&frame[HEADER_LEN..]) {
            Ok(r) => r,
            Err(refused) => {
                // The framing is intact, so the connection can go on.
                if !send(&mut wr, &error(refused.kind, refused.message)).await {
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
                let why = format!(
                    "this daemon (oxiida {}) speaks protocol version {}, the client {v}: use a client of the daemon's version, or restart the daemon from the client's (`oxiida daemon restart`)",
                    env!("CARGO_PKG_VERSION"),
                    protocol::PROTOCOL_VERSION
                );
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
async fn handle(request: Request, shared: &Arc<Shared>, rd: &mut Frames, wr: &mut OwnedWriteHalf) -> bool {
    let reply = match request {
        Request::Hello { .. } => error(ErrorKind::Handshake, "this connection has already shaken hands"),
        Request::Status => {
            let mut status = status(shared);
            match shared.store.interrupted().await {
                Ok(ids) => status.resumable = ids,
                Err(e) => log(&format!("cannot list the resumable workflows: {e}")),
            }
            Reply::Status(status)
        }
        Request::Submit(mut submit) => {
            // Only `resume` replays another workflow's records.
            submit.resume_from = None;
            return self::submit(submit, shared, rd, wr).await;
        }
        Request::Resume { id, source, wait } => match resumed(id, source, shared).await {
            Ok(mut submit) => {
                submit.wait = wait;
                return self::submit(submit, shared, rd, wr).await;
            }
            Err(reply) => reply,
        },
        Request::Tasks { id } => match shared.store.tasks(id).await {
            Ok(tasks) => Reply::Tasks { id, tasks },
            Err(e) => error(ErrorKind::Internal, e.to_string()),
        },
        Request::List(query) => list(query, shared).await,
        Request::Show { id } => match shared.store.show(id).await {
            Ok(Some(record)) => Reply::Workflow(record),
            Ok(None) => error(ErrorKind::NotFound, format!("no workflow {id}")),
            Err(e) => error(ErrorKind::Internal, e.to_string()),
        },
        Request::Kill { id, wait } => return kill(id, wait, shared, rd, wr).await,
        Request::Shutdown => {
            let ok = send(wr, &Reply::ShuttingDown).await;
            shared.begin_stop("asked by a client");
            return ok;
        }
    };
    send(wr, &reply).await
}

/// The submission that resumes workflow `id`, or why it cannot be resumed.
async fn resumed(id: u64, source: Option<String>, shared: &Shared) -> Result<Submit, Reply> {
    let found = shared.store.resumable(id).await.map_err(|e| error(ErrorKind::Internal, e.to_string()))?;
    let Some(found) = found else { return Err(error(ErrorKind::NotFound, format!("no workflow {id}"))) };
    if found.state != state::INTERRUPTED && found.state != state::FAILED {
        return Err(error(
            ErrorKind::Refused,
            format!("workflow {id} {}: only an interrupted or failed workflow can be resumed", found.state),
        ));
    }
    if let Some(by) = found.resumed_by {
        return Err(error(
            ErrorKind::Refused,
            format!(
                "workflow {id} was already resumed, as workflow {by}: resume that one (`oxiida workflow resume {by}`) if it did not finish"
            ),
        ));
    }
    let Some(bytes) = found.submit else {
        return Err(error(
            ErrorKind::Refused,
            format!(
                "workflow {id} has no recorded submission to run again: it was recorded by `oxiida run --record` or `oxiida.run(record=True)` (whose plugins or functions lived in that process), or by a daemon older than resume (0.3); run it again as a new workflow (`oxiida submit`, `oxiida.submit`)"
            ),
        ));
    };
    let mut submit: Submit = rmp_serde::from_slice(&bytes)
        .map_err(|e| error(ErrorKind::Internal, format!("the recorded submission of workflow {id} cannot be read: {e}")))?;
    if let Some(source) = source {
        if source != found.source {
            return Err(error(
                ErrorKind::Refused,
                format!(
                    "the source of workflow {id} changed since it ran (SHA-256 {} now, {} recorded): a resumed workflow replays recorded task results by their place in the source, which a changed source would move; run the new source as a new workflow (`oxiida submit`), or put the old source back",
                    short_hash(&source),
                    short_hash(&found.source)
                ),
            ));
        }
    }
    submit.resume_from = Some(id);
    log(&format!("workflow {id}: resuming it"));
    Ok(submit)
}

fn short_hash(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn status(shared: &Shared) -> Status {
    let loaded = shared.loaded.lock();
    Status {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_ms: shared.started_ms,
        socket: shared.paths.socket.display().to_string(),
        log: shared.paths.log.display().to_string(),
        database: shared.paths.database.display().to_string(),
        default_plugins: shared.default_specs.clone(),
        loaded_plugins: loaded.iter().map(|(path, name)| format!("{name} ({})", path.display())).collect(),
        environment: shared.environment_name.clone(),
        resumable: Vec::new(),
        executor: shared.executor.clone(),
        limits: Some(protocol::StatusLimits {
            memory_limit: shared.limits.memory,
            output_limit: shared.limits.output,
            max_running: shared.limits.max_running as u64,
            max_running_effective: shared.queue.max() as u64,
            idle_timeout_secs: shared.limits.idle_timeout.as_secs(),
        }),
        running: shared
            .running()
            .iter()
            .map(|w| Summary {
                id: w.id,
                // Cut as `list` cuts it: many long names must not outgrow a frame.
                name: w.name.chars().take(1024).collect(),
                state: if shared.queue.is_queued(w.id) { state::QUEUED } else { state::RUNNING }.into(),
                exit_code: None,
                submitted_ms: w.submitted_ms,
                finished_ms: None,
            })
            .collect(),
    }
}

/// Cancels a running workflow; with `wait`, then streams until it has ended.
async fn kill(id: u64, wait: bool, shared: &Shared, rd: &mut Frames, wr: &mut OwnedWriteHalf) -> bool {
    let found = shared.running.borrow().get(&id).cloned();
    if let Some(w) = found {
        log(&format!("workflow {id}: killing"));
        // A queued one ends at once, never started.
        if let Some(w) = shared.queue.remove(id) {
            let events = wait.then(|| w.watch());
            let error = Some("killed by `oxiida workflow kill` while it was queued; it never started".into());
            workflow::end_unstarted(shared, &w, store::Finish { state: state::KILLED, exit_code: Some(130), error }).await;
            if !send(wr, &Reply::Killing { id }).await {
                return false;
            }
            let Some(events) = events else { return true };
            return stream(id, events, rd, wr).await;
        }
        // Watching before stopping: its end cannot be missed.
        let events = wait.then(|| w.watch());
        w.stop(state::KILLED);
        if !send(wr, &Reply::Killing { id }).await {
            return false;
        }
        let Some(events) = events else { return true };
        let _counted = Streaming::new(&shared.streaming);
        return stream(id, events, rd, wr).await;
    }
    let reply = match shared.store.show(id).await {
        Ok(Some(r)) => error(ErrorKind::Refused, format!("workflow {id} is not running: it {}", r.state)),
        Ok(None) => error(ErrorKind::NotFound, format!("no workflow {id}")),
        Err(e) => error(ErrorKind::Internal, e.to_string()),
    };
    send(wr, &reply).await
}

async fn submit(submit: Submit, shared: &Arc<Shared>, rd: &mut Frames, wr: &mut OwnedWriteHalf) -> bool {
    if shared.shutdown.is_triggered() {
        return send(wr, &error(ErrorKind::Refused, "the daemon is stopping")).await;
    }
    let mut plugins: Vec<String> = shared.default_specs.iter().map(|s| format!("{s} (daemon default)")).collect();
    plugins.extend(submit.plugins.iter().map(|p| spec_text(&p.path, &p.config)));
    // Kept whole for `workflow resume`, without what belongs to this connection.
    let kept = Submit { wait: false, resume_from: None, ..submit.clone() };
    let new = store::New {
        name: submit.name.clone(),
        source: submit.source.clone(),
        plugins,
        cwd: submit.cwd.clone(),
        submit: Some(rmp_serde::to_vec_named(&kept).expect("a submission always serializes")),
        resumed_from: submit.resume_from,
    };
    let id = match shared.store.insert(new).await {
        Ok(id) => id,
        Err(e) => return send(wr, &error(ErrorKind::Internal, format!("cannot record the workflow: {e}"))).await,
    };
    let running = Arc::new(Running::new(id, submit.name.clone(), now_ms()));
    // Watching before the runner starts: no line printed can be missed.
    let events = submit.wait.then(|| running.watch());
    shared.running.send_modify(|all| {
        all.insert(id, running.clone());
    });
    match shared.queue.admit(running, submit) {
        Admitted::Start(running, submit) => {
            if let Err(e) = workflow::spawn(shared.clone(), running, submit) {
                shared.forget(id);
                let why = format!("cannot start a runner for the workflow: {e}; see the daemon's log, and submit it again");
                shared.store.finished(id, store::Finish { state: state::FAILED, exit_code: Some(1), error: Some(why.clone()) });
                workflow::release(shared).await;
                return send(wr, &error(ErrorKind::Internal, why)).await;
            }
        }
        Admitted::Queued { ahead } => {
            log(&format!("workflow {id}: queued, {ahead} ahead of it (--max-running {})", shared.queue.max()));
        }
        Admitted::Closed(running) => {
            let error = Some("the daemon stopped before it started; submit it again".into());
            workflow::end_unstarted(shared, &running, store::Finish { state: state::INTERRUPTED, exit_code: Some(130), error }).await;
            return send(wr, &self::error(ErrorKind::Refused, "the daemon is stopping; submit again once it has restarted")).await;
        }
    }
    if !send(wr, &Reply::Submitted { id }).await {
        return false;
    }
    let Some(events) = events else { return true };
    let _counted = Streaming::new(&shared.streaming);
    stream(id, events, rd, wr).await
}

/// Streams a workflow's output until it ends or the client leaves (Ctrl-C
/// detaches: the workflow goes on).
async fn stream(id: u64, mut events: tokio::sync::mpsc::UnboundedReceiver<Event>, rd: &mut Frames, wr: &mut OwnedWriteHalf) -> bool {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Output { text, more }) => {
                    if !send(wr, &Reply::Output { id, text, more }).await {
                        return false;
                    }
                }
                Some(Event::Finished { state, exit_code, error, variables, exception }) => {
                    let variables = variables.map(serde_bytes::ByteBuf::from);
                    let exception = exception.map(serde_bytes::ByteBuf::from);
                    return send(wr, &Reply::Finished { id, state: state.into(), exit_code, error, variables, exception }).await;
                }
                None => return send(wr, &self::error(ErrorKind::Internal, "the workflow ended without a result")).await,
            },
            // A waiting client sends nothing; a read that returns means it left.
            _ = rd.next() => {
                log(&format!("workflow {id}: its client detached"));
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use oxiida_abi::frame::{self, HEADER_LEN};
    use oxiida_protocol::MAX_FRAME;
    use tokio_util::codec::Decoder;

    #[test]
    fn the_codec_reads_what_abi_frame_writes_and_refuses_what_it_refuses() {
        let mut codec = super::codec();
        let mut buf = BytesMut::from(&[frame::encode(b"hello"), frame::encode(b""), frame::encode(b"cut")[..5].to_vec()].concat()[..]);
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[HEADER_LEN..], b"hello");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[HEADER_LEN..], b"");
        assert!(codec.decode(&mut buf).unwrap().is_none(), "a partial frame waits");
        assert_eq!(buf.len(), 5, "and keeps its header");
        // A codec keeps its state between calls: one per stream.
        let mut largest = BytesMut::from(&frame::header(MAX_FRAME)[..]);
        assert!(super::codec().decode(&mut largest).unwrap().is_none(), "MAX_FRAME itself is allowed");
        let mut over = BytesMut::from(&frame::header(MAX_FRAME + 1)[..]);
        assert!(super::codec().decode(&mut over).is_err());
        assert!(frame::read(&mut &frame::header(MAX_FRAME + 1)[..], MAX_FRAME).is_err(), "as the blocking reader refuses it");
    }
}
