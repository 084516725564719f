//! What a runner's process writes to its stdout (a plugin's functions
//! printing, a C `printf`), captured into its workflow's output instead of
//! the daemon's log, which that descriptor is otherwise. (Its stderr is a
//! pipe the daemon reads, for the log and a dying runner's last words; the
//! daemon copies it into the output, in order with it only roughly.)
//!
//! The runner points descriptor 1 at a pipe before it loads any plugin. A thread forwards what arrives as `output` reports, line by
//! line; the workflow's own `print` first forwards what is already in the
//! pipe, so that what a call printed comes before what the workflow prints
//! after that call. At the workflow's end the descriptors go back to the
//! log and the pipe is emptied before the `finished` report.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// The runner's capture, when it has one.
pub(crate) struct Capture {
    read: OwnedFd,
    /// The log, as descriptor 1 was before: restored by `stop`.
    saved: OwnedFd,
    /// Bytes read and not sent yet (the start of a character cut by a
    /// read); its lock also keeps two forwarders from interleaving.
    pending: Mutex<Vec<u8>>,
    stopped: AtomicBool,
}

/// Where forwarded text goes: `(text, more)` as the runner's `Sink::piece`.
pub(crate) type Send<'a> = &'a dyn Fn(&str, bool);

fn check(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A duplicate of `fd` (close-on-exec), owned.
fn dup(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) only makes a new descriptor, which we own.
    let new = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `new` was just made and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Points descriptor `to` at `from`'s file (dup2 clears close-on-exec, so
/// child processes inherit it, as they did the log).
fn point(from: &OwnedFd, to: RawFd) -> std::io::Result<()> {
    // SAFETY: dup2 on a descriptor we own onto 1, which this process never
    // closes; Rust's and C's stdio write there by number.
    check(unsafe { libc::dup2(from.as_raw_fd(), to) }).map(|_| ())
}

impl Capture {
    /// Points stdout at a new pipe. Call it before anything
    /// writes there that the workflow should show.
    pub(crate) fn start() -> std::io::Result<Capture> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two new descriptors into the array.
        check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
        // SAFETY: both were just made and nothing else owns them.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl(F_SETFL) on our own descriptor: reads never block.
        check(unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) })?;
        let saved = dup(1)?;
        let _ = std::io::stdout().flush();
        point(&write, 1)?;
        Ok(Capture { read, saved, pending: Mutex::new(Vec::new()), stopped: AtomicBool::new(false) })
    }

    /// Forwards what is in the pipe now: each whole line, then what is
    /// left of a line as a piece that goes on.
    pub(crate) fn drain(&self, send: Send<'_>) {
        let mut pending = self.pending.lock();
        let mut buf = [0u8; 64 * 1024];
        loop {
            // SAFETY: reading into our own buffer of its length, from our own descriptor.
            let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                pending.extend_from_slice(&buf[..n as usize]);
                continue;
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break; // empty for now (EAGAIN), or the end
        }
        forward(&mut pending, send);
    }

    /// Forwards as output arrives, on a thread of its own, until `stop`.
    pub(crate) fn watch(&'static self, send: impl Fn(&str, bool) + std::marker::Send + 'static) -> std::io::Result<()> {
        std::thread::Builder::new().name("oxiida-capture".into()).spawn(move || {
            while !self.stopped.load(Ordering::Relaxed) {
                let mut poll = libc::pollfd { fd: self.read.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one pollfd of ours, for at most 100 ms.
                let ready = unsafe { libc::poll(&mut poll, 1, 100) };
                if ready > 0 && !self.stopped.load(Ordering::Relaxed) {
                    self.drain(&send);
                }
            }
        })?;
        Ok(())
    }

    /// The workflow has ended: stdout goes back to the log, and
    /// what the pipe still holds is forwarded. Later calls do nothing.
    pub(crate) fn stop(&self, send: Send<'_>) {
        if self.stopped.swap(true, Ordering::Relaxed) {
            return;
        }
        let _ = std::io::stdout().flush();
        let _ = point(&self.saved, 1);
        self.drain(send);
        // A last piece of a line ends here.
        let mut pending = self.pending.lock();
        if !pending.is_empty() {
            send(&String::from_utf8_lossy(&pending), false);
            pending.clear();
        }
    }
}

/// Sends the whole lines of `pending`, then its valid rest as a piece
/// that goes on, and keeps only an incomplete character at its end.
fn forward(pending: &mut Vec<u8>, send: Send<'_>) {
    let mut start = 0;
    while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
        send(&String::from_utf8_lossy(&pending[start..start + nl]), false);
        start += nl + 1;
    }
    let rest = &pending[start..];
    let whole = match std::str::from_utf8(rest) {
        Ok(_) => rest.len(),
        // The start of a character the next read completes.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => rest.len(),
    };
    if whole > 0 {
        send(&String::from_utf8_lossy(&rest[..whole]), true);
    }
    pending.drain(..start + whole);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_whole_and_a_cut_character_waits_for_its_end() {
        let sent = std::cell::RefCell::new(Vec::new());
        let send = |t: &str, more: bool| sent.borrow_mut().push((t.to_owned(), more));
        let mut pending = b"one\ntwo\nthr".to_vec();
        forward(&mut pending, &send);
        assert!(pending.is_empty());
        let mut pending = "ee é".as_bytes()[..4].to_vec(); // "ee " and the first byte of é
        forward(&mut pending, &send);
        assert_eq!(pending, "é".as_bytes()[..1]);
        assert_eq!(sent.into_inner(), [("one".into(), false), ("two".into(), false), ("thr".into(), true), ("ee ".into(), true)]);
    }
}
