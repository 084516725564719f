//! Threads kept between workflows. A workflow's runners, watcher and
//! dispatchers ([`super::calls`]) end with it; each such thread then waits
//! here, up to [`KEEP`], for the next one's work instead of exiting. A
//! `para` whose function's first call is tried on a runner (a thread and a
//! watcher to start) then takes a parked thread instead of two `clone`s:
//! about 15 µs each on the 2-core machine the benches run on.
//!
//! A kept thread holds nothing of the workflow it served (its work closure
//! is dropped before it parks) and no Python thread state (each work
//! attaches and detaches on its own).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::Duration;

use parking_lot::Mutex;

/// How long a thread with nothing to do waits for more, then exits.
const KEEP: Duration = Duration::from_secs(5);

type Work = Box<dyn FnOnce() + Send>;

/// A parked thread, and where to hand it work.
struct Parked {
    id: u64,
    /// The process it parked in: a child made by `fork` has none of its
    /// parent's threads, only this list.
    pid: u32,
    give: SyncSender<(&'static str, Work)>,
}

static PARKED: Mutex<Vec<Parked>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Runs `work` on a parked thread, or on a new one named `name` (the OS
/// name a parked thread takes too). Fails only when no thread can start.
pub(crate) fn spawn(name: &'static str, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let mut work: Work = Box::new(work);
    loop {
        let Some(parked) = PARKED.lock().pop() else { break };
        if parked.pid != std::process::id() {
            continue;
        }
        match parked.give.send((name, work)) {
            Ok(()) => return Ok(()),
            // It exited meanwhile: the work comes back.
            Err(mpsc::SendError((_, back))) => work = back,
        }
    }
    std::thread::Builder::new().name(name.into()).spawn(move || serve(work)).map(drop)
}

/// A kept thread: its first work, then whatever is handed to it while parked.
fn serve(first: Work) {
    first();
    loop {
        let (give, take) = mpsc::sync_channel(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        PARKED.lock().push(Parked { id, pid: std::process::id(), give });
        let next = match take.recv_timeout(KEEP) {
            Ok(next) => next,
            Err(RecvTimeoutError::Timeout) => {
                let mut parked = PARKED.lock();
                match parked.iter().position(|p| p.id == id) {
                    Some(at) => {
                        parked.swap_remove(at);
                        return;
                    }
                    // Taken just now: its work is on the way.
                    None => {
                        drop(parked);
                        match take.recv() {
                            Ok(next) => next,
                            Err(_) => return,
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let (name, work) = next;
        set_name(name);
        work();
    }
}

/// The calling thread's OS name (what `top -H` and `/proc` show).
#[cfg(target_os = "linux")]
fn set_name(name: &'static str) {
    let Ok(name) = std::ffi::CString::new(name) else { return };
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes (longer ones are cut) from the pointer, valid for the call.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

#[cfg(not(target_os = "linux"))]
fn set_name(_name: &'static str) {}
