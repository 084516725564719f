//! The `=f=` worker pool: persistent Python worker processes, owned here.
//! Each worker is the real interpreter (`python -c <_worker.py>`), never a
//! fork of this multi-threaded process. Functions travel once per worker
//! with cloudpickle, arguments and results with pickle protocol 5, over
//! length-prefixed frames on the worker's stdin and stdout. A worker that
//! dies fails only the call it was running, is reaped, and is replaced on
//! demand.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::pipe::Replies;

const WORKER_SOURCE: &str = include_str!("../python/oxiida/_worker.py");

struct Worker {
    /// When it last finished a call (for the idle timeout).
    idle_since: Instant,
    child: Child,
    stdin: ChildStdin,
    stdout: Replies,
    /// Function keys this worker has already received.
    known: HashSet<u64>,
}

/// What a worker answered: the pickled result, or the pickled
/// (type, message, traceback) of what the function raised.
pub enum Answer {
    Returned(Vec<u8>),
    Raised(Vec<u8>),
}

type SpawnRequest = mpsc::Sender<std::io::Result<Child>>;

pub struct Pool {
    python: String,
    max: usize,
    state: Mutex<State>,
    freed: Condvar,
    /// Workers are started from one long-lived thread: a worker asks to be
    /// killed when the thread that started it ends (PR_SET_PDEATHSIG).
    spawner: Mutex<mpsc::Sender<SpawnRequest>>,
}

#[derive(Default)]
struct State {
    idle: Vec<Worker>,
    /// Live workers, idle or busy.
    live: usize,
    /// Workers running a call: (owner, pid). The calling thread holds the
    /// `Child` until it has waited for it, so a pid here is never reused.
    busy: Vec<(u64, u32)>,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Stops every idle worker and reaps it: at exit nothing is left behind, not
/// even a zombie (the process that adopts orphans may not reap them).
pub fn shutdown() {
    if let Some(pool) = POOL.get() {
        pool.retire(|_| true);
    }
}

/// Kills the workers running calls for `owner` (a workflow that ended or was
/// cancelled): nobody wants their results, and they must not run on. The
/// threads waiting for them see the pipe close, reap them and free the slots.
pub fn cancel(owner: u64) {
    if let Some(pool) = POOL.get() {
        let state = pool.state.lock().unwrap_or_else(|p| p.into_inner());
        for &(_, pid) in state.busy.iter().filter(|(o, _)| *o == owner) {
            // SAFETY: kill(2) has no memory effects; the pid is still our unreaped child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// How long a worker may sit idle before it exits: `OXIIDA_WORKER_IDLE_SECS`,
/// default five minutes.
fn idle_timeout() -> Duration {
    let secs = std::env::var("OXIIDA_WORKER_IDLE_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(300.0);
    Duration::from_secs_f64(secs.max(0.1))
}

/// The pool, if a call has started it.
pub fn started() -> Option<&'static Pool> {
    POOL.get()
}

/// The process's pool, started on first use with the given interpreter and
/// module path (the caller's `sys.path`, so functions pickled by reference
/// import in the workers too).
pub fn pool(python: &str, module_path: &str) -> &'static Pool {
    POOL.get_or_init(|| {
        let max = std::env::var("OXIIDA_WORKERS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1);
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let python_exe = python.to_owned();
        let module_path = module_path.to_owned();
        std::thread::Builder::new()
            .name("oxiida-workers".into())
            .spawn(move || {
                for reply in rx {
                    let child = Command::new(&python_exe)
                        .args(["-c", WORKER_SOURCE])
                        .env("OXIIDA_PARENT_PID", std::process::id().to_string())
                        .env("PYTHONPATH", &module_path)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::inherit())
                        .spawn();
                    let _ = reply.send(child);
                }
            })
            .expect("a thread for starting workers");
        // Idle workers exit after a while; the pool starts new ones on demand.
        let timeout = idle_timeout();
        std::thread::Builder::new()
            .name("oxiida-idle-workers".into())
            .spawn(move || loop {
                std::thread::sleep((timeout / 4).min(Duration::from_secs(5)));
                if let Some(pool) = POOL.get() {
                    pool.retire(|w| w.idle_since.elapsed() >= timeout);
                }
            })
            .expect("a thread for retiring idle workers");
        Pool { python: python.to_owned(), max, state: Mutex::new(State::default()), freed: Condvar::new(), spawner: Mutex::new(tx) }
    })
}

impl Pool {
    fn start(&self) -> Result<Worker, String> {
        let (tx, rx) = mpsc::channel();
        let sent = self.spawner.lock().unwrap_or_else(|p| p.into_inner()).send(tx);
        let child = sent.ok().and_then(|()| rx.recv().ok()).ok_or("the worker-starting thread is gone")?;
        let mut child = child.map_err(|e| format!("cannot start a worker process ({}): {e}", self.python))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = match Replies::new(child.stdout.take().expect("piped stdout")) {
            Ok(replies) => replies,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot read from a worker process: {e}"));
            }
        };
        Ok(Worker { idle_since: Instant::now(), child, stdin, stdout, known: HashSet::new() })
    }

    fn checkout(&self) -> Result<Worker, String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(w) = state.idle.pop() {
                return Ok(w);
            }
            if state.live < self.max {
                state.live += 1;
                drop(state);
                return self.start().inspect_err(|_| self.lost());
            }
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Ends and reaps the idle workers `expired` picks.
    fn retire(&self, expired: impl Fn(&Worker) -> bool) {
        let gone: Vec<Worker> = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let (gone, keep) = std::mem::take(&mut state.idle).into_iter().partition(|w| expired(w));
            state.idle = keep;
            gone
        };
        for mut w in gone {
            drop(w.stdin); // EOF: the worker's loop ends
            let _ = w.child.wait();
            self.lost();
        }
    }

    fn lost(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).live -= 1;
        self.freed.notify_one();
    }

    /// Runs one call for `owner` on a worker, blocking this thread until it answers.
    pub fn call(&self, owner: u64, key: u64, function: &[u8], args: &[u8]) -> Result<Answer, String> {
        let mut w = self.checkout()?;
        let pid = w.child.id();
        self.state.lock().unwrap_or_else(|p| p.into_inner()).busy.push((owner, pid));
        let answer = exchange(&mut w, key, function, args);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.busy.retain(|&(_, p)| p != pid);
        match answer {
            Ok(answer) => {
                w.known.insert(key);
                w.idle_since = Instant::now();
                state.idle.push(w);
                drop(state);
                self.freed.notify_one();
                Ok(answer)
            }
            Err(_) => {
                drop(state);
                // The pipe broke: the worker died. Reap it and say how.
                drop(w.stdin);
                let how = match w.child.wait() {
                    Ok(status) => {
                        use std::os::unix::process::ExitStatusExt;
                        match (status.signal(), status.code()) {
                            (Some(sig), _) => format!("was killed by signal {sig}"),
                            (None, Some(code)) => format!("exited with status {code}"),
                            _ => "ended".into(),
                        }
                    }
                    Err(e) => format!("could not be waited for ({e})"),
                };
                self.lost();
                Err(format!("the worker process (pid {pid}) {how} while running the call"))
            }
        }
    }
}

fn exchange(w: &mut Worker, key: u64, function: &[u8], args: &[u8]) -> std::io::Result<Answer> {
    let send_function = !w.known.contains(&key);
    let mut frame = Vec::with_capacity(17 + function.len() + args.len());
    frame.extend_from_slice(&key.to_le_bytes());
    frame.push(send_function as u8);
    if send_function {
        frame.extend_from_slice(&(function.len() as u32).to_le_bytes());
        frame.extend_from_slice(function);
    }
    frame.extend_from_slice(&(args.len() as u32).to_le_bytes());
    frame.extend_from_slice(args);
    w.stdin.write_all(&frame)?;
    w.stdin.flush()?;
    let head = w.stdout.read(5)?;
    let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
    let payload = w.stdout.read(len)?;
    Ok(if head[0] == 0 { Answer::Returned(payload) } else { Answer::Raised(payload) })
}
