//! Children that die with the host: [`spawn_tied`].
//!
//! A process plugin normally ends when its input closes, which happens when
//! the host dies, however it dies. A plugin that ignores that (a call that
//! never reads, a program that traps SIGTERM) would outlive a SIGKILLed host
//! as an orphan. On Linux the kernel can send a signal to a child when its
//! parent dies (`PR_SET_PDEATHSIG`); but "parent" means the *thread* that
//! forked it, so the signal would also fire when that thread ends, e.g. an
//! async runtime's blocking thread retired after being idle. Every tied child
//! is therefore started by one thread that lives as long as the process.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;

use parking_lot::Mutex;

type Request = (Command, mpsc::Sender<io::Result<Child>>);

/// The spawning thread's queue, with the pid of the process that started it
/// (a process forked since has no such thread: it starts its own).
static SPAWNER: Mutex<Option<(u32, mpsc::Sender<Request>)>> = Mutex::new(None);

/// Starts `command` so that the child gets SIGKILL when this process dies,
/// even if the child ignores its input closing and SIGTERM (Linux; elsewhere
/// an ordinary spawn).
pub fn spawn_tied(mut command: Command) -> io::Result<Child> {
    tie(&mut command);
    let queue = {
        let mut spawner = SPAWNER.lock();
        let me = std::process::id();
        match &*spawner {
            Some((pid, queue)) if *pid == me => queue.clone(),
            _ => {
                let (tx, rx) = mpsc::channel::<Request>();
                // The thread is never joined: it waits for requests for as
                // long as the process lives (the sender stays in SPAWNER).
                std::thread::Builder::new().name("oxiida spawner".into()).spawn(move || {
                    for (mut command, reply) in rx {
                        let _ = reply.send(command.spawn());
                    }
                })?;
                *spawner = Some((me, tx.clone()));
                tx
            }
        }
    };
    let (tx, rx) = mpsc::channel();
    queue.send((command, tx)).map_err(|_| io::Error::other("the spawning thread has ended"))?;
    rx.recv().map_err(|_| io::Error::other("the spawning thread has ended"))?
}

#[cfg(target_os = "linux")]
fn tie(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec only async-signal-safe calls run (prctl,
    // getppid, _exit), on plain integers copied into the closure; nothing
    // allocates or takes a lock.
    unsafe {
        command.pre_exec(move || {
            // SIGKILL when the spawning thread ends: it ends with the process.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The host died between fork and prctl: nobody will signal us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn tie(_: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tied_children_start_from_any_thread_and_outlive_it() {
        let child = std::thread::spawn(|| {
            let mut sleep = Command::new("sleep");
            sleep.arg("5");
            spawn_tied(sleep).unwrap()
        })
        .join()
        .unwrap();
        // The calling thread has ended; the spawner has not, so the child runs.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut child = child;
        assert!(child.try_wait().unwrap().is_none(), "the child died with the thread that asked for it");
        child.kill().unwrap();
        child.wait().unwrap();
        let err = spawn_tied(Command::new("/no/such/program")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
