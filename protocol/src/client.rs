//! The client's end of the socket: blocking, since a CLI command has nothing
//! else to do while it waits.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::messages::{self as protocol, Reply, Request, PROTOCOL_VERSION};
use crate::Paths;

pub struct Client {
    stream: UnixStream,
    /// The daemon's pid, from its `hello`.
    pub pid: u32,
}

pub enum ConnectError {
    /// Nothing listens on the socket.
    NotRunning,
    Failed(String),
}

impl ConnectError {
    pub fn message(&self, paths: &Paths) -> String {
        match self {
            ConnectError::NotRunning => {
                format!("no daemon is running (socket {}); start one with `oxiida daemon start`", paths.socket.display())
            }
            ConnectError::Failed(why) => why.clone(),
        }
    }
}

impl Client {
    /// Connects and shakes hands.
    pub fn connect(paths: &Paths) -> Result<Client, ConnectError> {
        use std::io::ErrorKind::{ConnectionRefused, NotFound};
        let stream = UnixStream::connect(&paths.socket).map_err(|e| match e.kind() {
            NotFound | ConnectionRefused => ConnectError::NotRunning,
            _ => ConnectError::Failed(format!("cannot connect to the daemon at {}: {e}", paths.socket.display())),
        })?;
        let mut client = Client { stream, pid: 0 };
        // A daemon that accepts but never answers must not hang the client.
        let _ = client.stream.set_read_timeout(Some(Duration::from_secs(10)));
        let hello = Request::Hello { protocol: PROTOCOL_VERSION, client: format!("oxiida {}", env!("CARGO_PKG_VERSION")) };
        match client.call(&hello).map_err(ConnectError::Failed)? {
            Reply::Hello { pid, .. } => client.pid = pid,
            other => return Err(ConnectError::Failed(format!("the daemon answered `hello` with {other:?}"))),
        }
        Ok(client)
    }

    /// No timeout: for replies that come when a workflow ends.
    pub fn wait_forever(&mut self) {
        let _ = self.stream.set_read_timeout(None);
    }

    /// Whether a frame has begun to arrive within `timeout`: a client that
    /// must notice Ctrl-C while it waits (Python's) polls with this.
    pub fn readable(&self, timeout: Duration) -> bool {
        use std::os::fd::AsRawFd;
        let mut fd = libc::pollfd { fd: self.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, for the length given.
        unsafe { libc::poll(&mut fd, 1, ms) > 0 }
    }

    pub fn send(&mut self, request: &Request) -> Result<(), String> {
        protocol::write_frame(&mut self.stream, request).map_err(|e| format!("cannot send to the daemon: {e}"))
    }

    /// The next reply, after printing any notices; an error reply is an Err.
    pub fn recv(&mut self) -> Result<Reply, String> {
        loop {
            let body = match protocol::read_frame(&mut self.stream) {
                Ok(Some(body)) => body,
                Ok(None) => return Err("the daemon closed the connection".into()),
                Err(e) => return Err(format!("cannot read from the daemon: {e}")),
            };
            match protocol::decode_reply(&body)? {
                Reply::Notice { message } => eprintln!("oxiida: daemon notice: {message}"),
                Reply::Error { message, .. } => return Err(message),
                reply => return Ok(reply),
            }
        }
    }

    pub fn call(&mut self, request: &Request) -> Result<Reply, String> {
        self.send(request)?;
        self.recv()
    }
}

/// How long [`stop`] waits for the daemon to go.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `pid` is alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").is_some_and(|(_, s)| !s.starts_with('Z'))
}

/// Asks the daemon to stop and waits until its process has gone: the pid it
/// had, or `None` when no daemon was running.
pub fn stop(paths: &Paths) -> Result<Option<u32>, String> {
    let mut client = match Client::connect(paths) {
        Ok(c) => c,
        Err(ConnectError::NotRunning) => return Ok(None),
        Err(e) => return Err(e.message(paths)),
    };
    let pid = client.pid;
    client.call(&Request::Shutdown)?;
    let until = std::time::Instant::now() + STOP_TIMEOUT;
    while alive(pid as i32) {
        if std::time::Instant::now() > until {
            return Err(format!("the daemon (pid {pid}) did not stop within {STOP_TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Some(pid))
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
        s.running.len()
    );
    for w in &s.running {
        out.push_str(&format!("  {:>6}  since {}  {}\n", w.id, utc(w.submitted_ms), w.name));
    }
    out
}
