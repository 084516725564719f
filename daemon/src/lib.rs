//! The oxiida daemon (docs/daemon.md): a long-running process per user that
//! runs submitted workflows, each in a runner process of its own with its
//! own working directory and plugin sessions, and records them in SQLite.
//!
//! Stages: [`server`] (accepting, dispatching) → [`workflow`] (one
//! workflow's supervisor) → [`runner`] (the workflow's own process, which
//! compiles and runs it) and [`store`] (the records); [`limits`] bounds
//! each workflow and queues those past `--max-running`; [`watch`] is the
//! environment monitor, and [`reap`] finds and kills what workflows leave
//! running. The wire protocol, paths and client are in `oxiida-protocol`,
//! which clients link alone. Each stage's errors are typed ([`ServeError`],
//! [`StoreError`], [`WatchError`]) and keep their causes.
#![deny(clippy::undocumented_unsafe_blocks)]

mod capture;
pub mod limits;
pub mod reap;
pub mod record;
pub mod runner;
pub mod server;
pub mod store;
pub mod watch;
pub mod workflow;

pub use server::ServeError;
pub use store::StoreError;
pub use watch::WatchError;

use std::io::Write;
use std::sync::OnceLock;

use parking_lot::Mutex;

use oxiida_protocol::{now_ms, utc};

struct Logger {
    file: Option<std::fs::File>,
    echo: bool,
}

fn logger() -> &'static Mutex<Logger> {
    static LOG: OnceLock<Mutex<Logger>> = OnceLock::new();
    LOG.get_or_init(|| Mutex::new(Logger { file: None, echo: false }))
}

/// Sends the daemon's log to `file`, and to stderr too when `echo`.
pub fn log_to(file: std::fs::File, echo: bool) {
    *logger().lock() = Logger { file: Some(file), echo };
}

/// Sends the log to a new file at `path` (created 0600, its folder 0700,
/// never through a symbolic link) when the old one was deleted with its
/// folder; whether it could.
pub fn reopen_log(path: &std::path::Path) -> bool {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let folder = path.parent().unwrap_or(path);
    let opened = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(folder).and_then(|()| {
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
    });
    match opened {
        Ok(file) => {
            logger().lock().file = Some(file);
            true
        }
        Err(_) => false,
    }
}

/// One timestamped line in the daemon's log.
pub fn log(message: &str) {
    let line = format!("{} [{}] {message}\n", utc(now_ms()), std::process::id());
    let mut logger = logger().lock();
    if let Some(file) = logger.file.as_mut() {
        let _ = file.write_all(line.as_bytes());
    }
    if logger.echo {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}
