//! Reading a worker's replies. Waking a thread that sleeps on a pipe costs
//! tens of microseconds on a VM (a pipe ping-pong between two processes
//! measured 41 µs here, 3.6 µs when both sides poll): longer than a whole
//! trivial call. So the reader polls the pipe for a short while before it
//! sleeps in poll(2); a call that takes longer pays the wake-up once.

use std::io;
use std::os::fd::AsRawFd;
use std::process::ChildStdout;
use std::time::{Duration, Instant};

const SPIN: Duration = Duration::from_micros(200);
/// The least room a read is given.
const CHUNK: usize = 64 * 1024;
/// The pipe's capacity asked for (Linux): a large reply then crosses in
/// fewer wake-ups of the reader.
#[cfg(target_os = "linux")]
const PIPE_SIZE: libc::c_int = 1 << 20;

pub struct Replies {
    pipe: ChildStdout,
    /// Bytes read ahead of the frame being parsed.
    buffer: Vec<u8>,
}

impl Replies {
    pub fn new(pipe: ChildStdout) -> io::Result<Self> {
        let fd = pipe.as_raw_fd();
        // SAFETY: fcntl on a descriptor this value owns; no memory is passed.
        let set = unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fcntl on a descriptor this value owns; no memory is passed.
        // A refusal (above the system's limit) leaves the default size: ignored.
        #[cfg(target_os = "linux")]
        unsafe {
            libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE);
        }
        Ok(Replies { pipe, buffer: Vec::new() })
    }

    /// The next `n` bytes; an error when the worker closed the pipe (it died).
    pub fn read(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buffer.len() < n {
            self.fill(n)?;
        }
        let rest = self.buffer.split_off(n);
        Ok(std::mem::replace(&mut self.buffer, rest))
    }

    /// Fills `out` exactly: from the bytes read ahead, then straight from
    /// the pipe into `out` (a large buffer is copied once, by the kernel).
    pub fn read_into(&mut self, out: &mut [u8]) -> io::Result<()> {
        let ahead = self.buffer.len().min(out.len());
        out[..ahead].copy_from_slice(&self.buffer[..ahead]);
        self.buffer.drain(..ahead);
        let mut at = ahead;
        while at < out.len() {
            // SAFETY: read(2) into the unfilled part of `out`, at most its length.
            let n = unsafe { libc::read(self.pipe.as_raw_fd(), out[at..].as_mut_ptr().cast(), out.len() - at) };
            if n > 0 {
                at += n as usize;
                continue;
            }
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => self.sleep()?,
                io::ErrorKind::Interrupted => {}
                _ => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what the pipe has into the buffer, which grows to hold `want`
    /// bytes: a large reply is read straight into the `Vec` returned, in
    /// reads as large as the pipe gives, never through a chunk copied on.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        let deadline = Instant::now() + SPIN;
        self.buffer.reserve(want.saturating_sub(self.buffer.len()).max(CHUNK));
        loop {
            match read_into_spare(&self.pipe, &mut self.buffer) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() < deadline {
                        // Yield, not spin: on a busy machine the worker may need this core.
                        std::thread::yield_now();
                    } else {
                        self.sleep()?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sleeps until the pipe has data or is closed.
    fn sleep(&self) -> io::Result<()> {
        let mut fd = libc::pollfd { fd: self.pipe.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for the length given.
        if unsafe { libc::poll(&mut fd, 1, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// One read(2) into `buffer`'s spare capacity, which it then counts as filled.
fn read_into_spare(pipe: &ChildStdout, buffer: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buffer.spare_capacity_mut();
    // SAFETY: the pointer and length are those of `spare`, memory this Vec
    // owns and nothing else refers to; read(2) writes at most that many bytes.
    let n = unsafe { libc::read(pipe.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: read(2) initialised the first `n` bytes of the spare capacity.
    unsafe { buffer.set_len(buffer.len() + n) };
    Ok(n)
}
