//! The client's end of the socket: blocking, since a CLI command has nothing
//! else to do while it waits.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::messages::{self as protocol, ErrorKind, Parts, Reply, ReplyError, Request, MAX_FRAME, PROTOCOL_VERSION};
use crate::Paths;

pub struct Client {
    stream: UnixStream,
    /// The daemon's pid, from its `hello`.
    pub pid: u32,
    /// `notice` frames kept for the caller ([`Client::connect_keeping_notices`]);
    /// `None`: printed to stderr as they come.
    notices: Option<Vec<String>>,
}

/// Why no connection to a daemon could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens on the socket.
    #[error("no daemon is running (socket {}); start one with `oxiida daemon start`", socket.display())]
    NotRunning { socket: PathBuf },
    #[error("cannot connect to the daemon at {}: {source}", socket.display())]
    Connect { socket: PathBuf, source: io::Error },
    /// The handshake failed: no answer, or an error reply (another protocol version).
    #[error(transparent)]
    Handshake(#[from] CallError),
    #[error("the daemon answered `hello` with {0:?}")]
    UnexpectedHello(Box<Reply>),
    /// The runtime folder cannot be trusted (another user's, a link, open to others).
    #[error(transparent)]
    Unsafe(#[from] crate::PathsError),
    /// `SO_PEERCRED` says another user listens on the socket.
    #[error("the process listening on {} (pid {pid}) runs as uid {owner}, not as you (uid {uid}): another user may be trying to intercept your workflows; nothing was sent. Remove the runtime folder {}, or set XDG_RUNTIME_DIR or OXIIDA_RUNTIME_DIR to a folder of your own", socket.display(), runtime.display())]
    OtherUser { socket: PathBuf, runtime: PathBuf, pid: i32, owner: u32, uid: u32 },
    #[error("cannot check who listens on {}: {source}", socket.display())]
    PeerCredentials { socket: PathBuf, source: io::Error },
}

/// Why a request got no reply a client can use.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request would be a frame over [`MAX_FRAME`]; nothing was sent.
    #[error("the request is {size} bytes, over the daemon's limit of {} MiB per message; nothing was sent. Keep large data out of the workflow's source (have the workflow read it from a file) and out of the environment", MAX_FRAME >> 20)]
    TooLarge { size: usize },
    #[error("cannot send to the daemon: {0}")]
    Send(#[source] io::Error),
    #[error("cannot read from the daemon: {0}")]
    Read(#[source] io::Error),
    #[error("the daemon closed the connection")]
    Closed,
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// The daemon's own `error` reply.
    #[error("{message}")]
    Daemon { kind: ErrorKind, message: String },
}

impl CallError {
    /// Whether the reply did not come in time (a read timeout).
    pub fn timed_out(&self) -> bool {
        matches!(self, CallError::Read(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// Why `stop` could not confirm that the daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("cannot watch the daemon's process (pid {pid}): {source}")]
    Watch { pid: u32, source: io::Error },
    #[error("the daemon (pid {pid}) did not stop within {timeout:?}")]
    Timeout { pid: u32, timeout: Duration },
}

/// The process at the other end of a Unix socket (`SO_PEERCRED`): its pid
/// and uid, as they were when the connection was made.
pub fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<(i32, u32)> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which this
    // function owns, on a descriptor the caller keeps open.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid, cred.uid))
}

impl Client {
    /// Connects and shakes hands, after checking the runtime folder (see
    /// [`Paths::check_runtime`]) and that the daemon runs as this user
    /// (`SO_PEERCRED`): nothing is sent to anyone else.
    pub fn connect(paths: &Paths) -> Result<Client, ConnectError> {
        Client::connect_with(paths, false)
    }

    /// `connect`, keeping the daemon's notices for [`Client::take_notices`]
    /// instead of printing them (a Python client turns them into warnings).
    pub fn connect_keeping_notices(paths: &Paths) -> Result<Client, ConnectError> {
        Client::connect_with(paths, true)
    }

    /// The notices kept since the last call, in the order they came.
    pub fn take_notices(&mut self) -> Vec<String> {
        self.notices.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn connect_with(paths: &Paths, keep_notices: bool) -> Result<Client, ConnectError> {
        use std::io::ErrorKind::{ConnectionRefused, NotFound};
        let socket = || paths.socket.clone();
        if !paths.check_runtime()? {
            return Err(ConnectError::NotRunning { socket: socket() });
        }
        let stream = UnixStream::connect(&paths.socket).map_err(|source| match source.kind() {
            NotFound | ConnectionRefused => ConnectError::NotRunning { socket: socket() },
            _ => ConnectError::Connect { socket: socket(), source },
        })?;
        let (pid, owner) = peer_credentials(stream.as_fd()).map_err(|source| ConnectError::PeerCredentials { socket: socket(), source })?;
        let uid = crate::paths::uid();
        if owner != uid {
            return Err(ConnectError::OtherUser { socket: socket(), runtime: paths.runtime.clone(), pid, owner, uid });
        }
        let mut client = Client { stream, pid: 0, notices: keep_notices.then(Vec::new) };
        // A daemon that accepts but never answers must not hang the client.
        let _ = client.stream.set_read_timeout(Some(Duration::from_secs(10)));
        let hello = Request::Hello { protocol: PROTOCOL_VERSION, client: format!("oxiida {}", env!("CARGO_PKG_VERSION")) };
        match client.call(&hello)? {
            Reply::Hello { pid, .. } => client.pid = pid,
            other => return Err(ConnectError::UnexpectedHello(Box::new(other))),
        }
        Ok(client)
    }

    /// No timeout: for replies that come when a workflow ends.
    pub fn wait_forever(&mut self) {
        let _ = self.stream.set_read_timeout(None);
    }

    /// Replies must come within `timeout` (`None`: no limit).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        let _ = self.stream.set_read_timeout(timeout);
    }

    /// Whether a frame has begun to arrive within `timeout`: a client that
    /// must notice Ctrl-C while it waits (Python's) polls with this.
    pub fn readable(&self, timeout: Duration) -> bool {
        let mut fd = libc::pollfd { fd: self.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, for the length given.
        unsafe { libc::poll(&mut fd, 1, ms) > 0 }
    }

    /// Sends one request; one over [`MAX_FRAME`] is refused here, unsent.
    pub fn send(&mut self, request: &Request) -> Result<(), CallError> {
        use std::io::Write;
        let frame = protocol::encode(request);
        if frame.len() - oxiida_abi::frame::HEADER_LEN > MAX_FRAME {
            return Err(CallError::TooLarge { size: frame.len() - oxiida_abi::frame::HEADER_LEN });
        }
        self.stream.write_all(&frame).map_err(CallError::Send)
    }

    /// The next reply, after printing any notices; an error reply is an Err.
    /// Fields sent ahead in `part` frames are put back: a reply comes
    /// whole, however many frames it took. A long printed value still
    /// comes as several `output` replies (`more`), as it was streamed.
    pub fn recv(&mut self) -> Result<Reply, CallError> {
        let mut parts = Parts::default();
        loop {
            let body = protocol::read_frame(&mut self.stream).map_err(CallError::Read)?.ok_or(CallError::Closed)?;
            match protocol::decode_reply(&body)? {
                Reply::Notice { message } => match self.notices.as_mut() {
                    Some(kept) => kept.push(message),
                    None => eprintln!("oxiida: daemon notice: {message}"),
                },
                Reply::Error { kind, message } => return Err(CallError::Daemon { kind, message }),
                Reply::Part { field, data } => parts.add(field, &data),
                mut reply => {
                    parts.fill(&mut reply)?;
                    return Ok(reply);
                }
            }
        }
    }

    pub fn call(&mut self, request: &Request) -> Result<Reply, CallError> {
        self.send(request)?;
        self.recv()
    }
}

/// How long [`stop`] waits for the daemon to go.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A descriptor that becomes readable when process `pid` exits (Linux 5.3+):
/// waiting on it is a notification, and unlike the pid it cannot be reused.
fn pidfd(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until `fd` is readable (data, an end of file, an exited pidfd) or
/// `timeout` has passed; whether it is.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let until = Instant::now() + timeout;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, for the length given.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            n if n > 0 => return Ok(true),
            0 => return Ok(false),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Asks the daemon to stop and waits until its process has gone: the pid it
/// had, or `None` when no daemon was running. The wait is on a pidfd, opened
/// while the daemon is still connected (so its pid cannot have been reused):
/// the kernel says when the process exits, which is after it has let go of
/// its lock, so a new daemon can start at once.
pub fn stop(paths: &Paths) -> Result<Option<u32>, StopError> {
    let mut client = match Client::connect(paths) {
        Ok(c) => c,
        Err(ConnectError::NotRunning { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let pid = client.pid;
    let exited = pidfd(pid).map_err(|source| StopError::Watch { pid, source })?;
    client.call(&Request::Shutdown)?;
    match wait_readable(exited.as_fd(), STOP_TIMEOUT) {
        Ok(true) => Ok(Some(pid)),
        Ok(false) => Err(StopError::Timeout { pid, timeout: STOP_TIMEOUT }),
        Err(source) => Err(StopError::Watch { pid, source }),
    }
}

/// The daemon's status report, as `oxiida daemon status` prints it.
pub fn describe(s: &crate::Status) -> String {
    use crate::{duration, now_ms, utc};
    let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
    let mut out = format!(
        "daemon: running, pid {}, version {}, up {}\nsocket: {}\nlog: {}\ndatabase: {}\ndefault plugins: {}\nloaded plugins: {}\nrunning workflows: {}\n",
        s.pid,
        s.version,
        duration(now_ms() - s.started_ms),
        s.socket,
        s.log,
        s.database,
        list(&s.default_plugins),
        list(&s.loaded_plugins),
        s.running.iter().filter(|w| w.state != crate::state::QUEUED).count()
    );
    for w in s.running.iter().filter(|w| w.state != crate::state::QUEUED) {
        out.push_str(&format!("  {:>6}  since {}  {}\n", w.id, utc(w.submitted_ms), w.name));
    }
    let queued: Vec<_> = s.running.iter().filter(|w| w.state == crate::state::QUEUED).collect();
    out.push_str(&format!("queued workflows: {}\n", queued.len()));
    for w in queued {
        out.push_str(&format!("  {:>6}  since {}  {}\n", w.id, utc(w.submitted_ms), w.name));
    }
    if !s.resumable.is_empty() {
        let ids: Vec<String> = s.resumable.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            "resumable (interrupted) workflows: {} (`oxiida workflow resume ID`, or all with `oxiida daemon start --resume`)\n",
            ids.join(", ")
        ));
    }
    if let Some(l) = &s.limits {
        let size = |b: u64| {
            for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
                if b >= 1 << shift && b % (1 << shift) == 0 {
                    return format!("{} {unit}", b >> shift);
                }
            }
            format!("{b} bytes")
        };
        let capped = if l.max_running_effective < l.max_running {
            format!(" (asked {}; capped by the open-file limit)", l.max_running)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "limits: memory {} per workflow, output {} per workflow, {} running at once{capped}, idle connections closed after {}s\n",
            l.memory_limit.map_or("unlimited".into(), size),
            size(l.output_limit),
            l.max_running_effective,
            l.idle_timeout_secs
        ));
    }
    if let Some(executor) = &s.executor {
        out.push_str(&format!("executor: {executor} (the workflows' =f= calls; `daemon restart` keeps it)\n"));
    }
    if let Some(prefix) = &s.environment {
        out.push_str(&format!("python environment: {prefix} (submits from other environments are refused)\n"));
    }
    out
}
