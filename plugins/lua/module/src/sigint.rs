//! Ctrl-C while `oxiida.run` runs under the stock `lua5.4` interpreter.
//!
//! lua.c handles SIGINT with a hook that raises "interrupted!" at the next
//! Lua instruction, and resets SIGINT to its default, so a second Ctrl-C
//! kills the process. A workflow waiting on a shell task runs no Lua, so the
//! first Ctrl-C did nothing, and the second left the task (in a process group
//! of its own) running, re-parented to init.
//!
//! While `run` runs, this module's handler takes SIGINT. The handler only
//! writes a byte to a pipe and, the first time, also calls lua.c's handler
//! (so Lua code is still interrupted) and puts itself back. A watcher thread
//! reads the pipe: the first Ctrl-C interrupts the workflow (its shell tasks
//! are killed as it stops), a second kills this process's child process
//! groups and then ends the process by SIGINT, as lua.c's default would.

use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

use oxiida::Interrupt;

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static SEEN: AtomicUsize = AtomicUsize::new(0);
/// The handler before ours (lua.c's `laction`, usually), as a raw sigaction.
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_sigint(signal: libc::c_int) {
    let n = SEEN.fetch_add(1, Ordering::SeqCst) + 1;
    let byte = [n.min(255) as u8];
    // SAFETY: write(2) is async-signal-safe; the pipe stays open while the
    // handler is installed, and a failed write only loses this signal.
    unsafe { libc::write(PIPE_WRITE.load(Ordering::SeqCst), byte.as_ptr().cast(), 1) };
    if n == 1 {
        let previous = PREVIOUS.load(Ordering::SeqCst);
        // SAFETY: `previous` is the sigaction saved by `Watch::start`, alive
        // until `Watch` is dropped (which first restores it). Calling a
        // plain handler is what the kernel would have done; it may reset
        // SIGINT (lua.c does), so ours is put back with sigaction, which is
        // async-signal-safe.
        unsafe {
            if let Some(prev) = previous.as_ref() {
                let handler = prev.sa_sigaction;
                if handler != libc::SIG_DFL && handler != libc::SIG_IGN && prev.sa_flags & libc::SA_SIGINFO == 0 {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
                    f(signal);
                }
            }
            install(on_sigint as extern "C" fn(libc::c_int) as usize, std::ptr::null_mut());
        }
    }
}

/// Installs `handler` for SIGINT, storing the old action in `old` if not NULL.
///
/// # Safety
/// `handler` is SIG_DFL, SIG_IGN or an `extern "C" fn(c_int)`; `old` is NULL
/// or valid for a write.
unsafe fn install(handler: libc::sighandler_t, old: *mut libc::sigaction) -> bool {
    // SAFETY: a zeroed sigaction is a valid value; the pointers are valid.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        // As signal(2) does on glibc (and so lua.c's handler): a read in a
        // callback is not cut short by Ctrl-C.
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, old) == 0
    }
}

/// Ends every process group this process started (shell tasks run each in
/// a group of its own, led by the task), listed in /proc/self/task/*/children.
fn kill_children() {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return };
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else { continue };
        for pid in children.split_whitespace().filter_map(|p| p.parse::<libc::pid_t>().ok()) {
            // SAFETY: plain kill(2) calls on our own children.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Our SIGINT handling for the duration of one `run`; dropping it puts
/// back the handler that was there before.
pub struct Watch {
    read: libc::c_int,
    write: libc::c_int,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// `None` when the handler cannot be installed (then Ctrl-C works as
    /// lua.c makes it work, as before).
    pub fn start(interrupt: Interrupt) -> Option<Watch> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is valid for two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return None;
        }
        let (read, write) = (fds[0], fds[1]);
        let thread = std::thread::Builder::new().name("oxiida-sigint".into()).spawn(move || loop {
            let mut byte = [0u8; 1];
            // SAFETY: a read into a one-byte buffer from our pipe.
            let n = unsafe { libc::read(read, byte.as_mut_ptr().cast(), 1) };
            match (n, byte[0]) {
                (1, 0) | (0, _) => return,
                (1, 1) => interrupt.trigger(),
                (1, _) => {
                    kill_children();
                    // SAFETY: back to the default action, then the signal
                    // that ends the process as a second Ctrl-C would have.
                    unsafe {
                        install(libc::SIG_DFL, std::ptr::null_mut());
                        libc::raise(libc::SIGINT);
                    }
                    return;
                }
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => continue,
                _ => return,
            }
        });
        let Ok(thread) = thread else {
            // SAFETY: our own pipe's descriptors, closed once.
            unsafe {
                libc::close(read);
                libc::close(write);
            }
            return None;
        };
        SEEN.store(0, Ordering::SeqCst);
        PIPE_WRITE.store(write, Ordering::SeqCst);
        // SAFETY: a zeroed sigaction is valid; it is filled by `install` and
        // lives (leaked, one small box per run) for as long as the handler may read it.
        let previous = Box::into_raw(Box::new(unsafe { std::mem::zeroed::<libc::sigaction>() }));
        // SAFETY: our handler has the right signature; `previous` is valid.
        if !unsafe { install(on_sigint as extern "C" fn(libc::c_int) as usize, previous) } {
            // SAFETY: made just above, never shared.
            drop(unsafe { Box::from_raw(previous) });
            let watch = Watch { read, write, thread: Some(thread) };
            drop(watch);
            return None;
        }
        let old = PREVIOUS.swap(previous, Ordering::SeqCst);
        if !old.is_null() {
            // SAFETY: a previous run's box; its handler is no longer installed.
            drop(unsafe { Box::from_raw(old) });
        }
        Some(Watch { read, write, thread: Some(thread) })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let previous = PREVIOUS.load(Ordering::SeqCst);
        // SAFETY: `previous` is NULL or the action saved by `start`. After a
        // first Ctrl-C, lua.c's own handler had reset SIGINT to the default:
        // leave that as lua.c expects it.
        unsafe {
            if let Some(prev) = previous.as_ref() {
                if SEEN.load(Ordering::SeqCst) == 0 {
                    libc::sigaction(libc::SIGINT, prev, std::ptr::null_mut());
                } else {
                    install(libc::SIG_DFL, std::ptr::null_mut());
                }
            }
            libc::write(self.write, [0u8].as_ptr().cast(), 1);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        PIPE_WRITE.store(-1, Ordering::SeqCst);
        // SAFETY: our own pipe's descriptors, closed once, after the
        // handler that writes to one is gone and the reader has ended.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}
