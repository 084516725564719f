//! Reading a worker's replies. Waking a thread that sleeps on a pipe costs
//! tens of microseconds on a VM (a pipe ping-pong between two processes
//! measured 41 µs here, 3.6 µs when both sides poll): longer than a whole
//! trivial call. So the reader polls the pipe for a short while before it
//! sleeps in poll(2); a call that takes longer pays the wake-up once.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::process::ChildStdout;
use std::time::{Duration, Instant};

const SPIN: Duration = Duration::from_micros(200);

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
        Ok(Replies { pipe, buffer: Vec::new() })
    }

    /// The next `n` bytes; an error when the worker closed the pipe (it died).
    pub fn read(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buffer.len() < n {
            self.fill()?;
        }
        let rest = self.buffer.split_off(n);
        Ok(std::mem::replace(&mut self.buffer, rest))
    }

    fn fill(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + SPIN;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.pipe.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.buffer.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
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
