//! One submitted workflow's supervisor. The workflow itself runs in a
//! runner process of its own ([`crate::runner`]): its working directory,
//! its plugins and anything that crashes are that process's alone. The
//! supervisor, a task on the daemon's runtime, hands the runner its job,
//! records what it reports, forwards it to waiting clients, and reaps it.
//! A runner that dies without reporting its end fails its own workflow,
//! and the record says how it died.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::process::Child;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_util::codec::FramedRead;

use crate::limits::{format_size, Capture, Piece};
use crate::log;
use crate::runner::{self, Job, Report};
use crate::server::Shared;
use crate::store::Finish;
use oxiida::Interrupt;
use oxiida_abi::frame::HEADER_LEN;
use oxiida_protocol::{exit, state, Submit};

/// The umask the daemon started with, which runners (and so workflows) get
/// back: the daemon itself runs under 077.
static USER_UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0o022);

/// Records the user's umask for runners (see [`USER_UMASK`]).
pub fn set_user_umask(umask: libc::mode_t) {
    USER_UMASK.store(umask, std::sync::atomic::Ordering::Relaxed);
}

/// How long a cancelled runner gets to report its end (it kills its shell
/// tasks' process groups first) before its process group is killed.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// How long a runner that reported its end gets to exit on its own.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Runners kept started and waiting for a job, so a submission does not
/// wait for a process to start.
const WARM: usize = 2;

/// What a waiting client hears about its workflow.
#[derive(Debug)]
pub enum Event {
    /// A printed value, or a piece of one that goes on in the next (`more`).
    Output {
        text: String,
        more: bool,
    },
    Finished {
        state: &'static str,
        exit_code: Option<i32>,
        error: Option<String>,
        variables: Option<Vec<u8>>,
        exception: Option<Vec<u8>>,
    },
}

/// A workflow that has not finished yet, as the server sees it.
pub struct Running {
    pub id: u64,
    pub name: String,
    pub submitted_ms: i64,
    interrupt: Interrupt,
    /// Why it was stopped: `KILLED` or `INTERRUPTED`.
    stopped: Mutex<Option<&'static str>>,
    watchers: Mutex<Vec<UnboundedSender<Event>>>,
    printed: AtomicU64,
}

impl Running {
    pub fn new(id: u64, name: String, submitted_ms: i64) -> Self {
        Running {
            id,
            name,
            submitted_ms,
            interrupt: Interrupt::new(),
            stopped: Mutex::new(None),
            watchers: Mutex::new(Vec::new()),
            printed: AtomicU64::new(0),
        }
    }

    /// Cancels the workflow: its runner is told (and killed if it does not
    /// end within [`KILL_GRACE`]); `why` is the state it ends in.
    pub fn stop(&self, why: &'static str) {
        self.stopped.lock().get_or_insert(why);
        self.interrupt.trigger();
    }

    /// Every event from now on.
    pub fn watch(&self) -> UnboundedReceiver<Event> {
        let (tx, rx) = unbounded_channel();
        self.watchers.lock().push(tx);
        rx
    }

    pub(crate) fn tell(&self, make: impl Fn() -> Event) {
        // A watcher that hung up is dropped; the workflow goes on.
        self.watchers.lock().retain(|w| w.send(make()).is_ok());
    }

    /// The end of a workflow that was cancelled.
    fn cancelled(&self) -> Finish {
        let why = self.stopped.lock().unwrap_or(state::INTERRUPTED);
        let error = if why == state::KILLED { "killed by `oxiida workflow kill`" } else { "the daemon stopped while it was running" };
        Finish { state: why, exit_code: Some(exit::INTERRUPTED.into()), error: Some(error.into()) }
    }
}

/// A started runner process, waiting for its job or running it.
pub struct Runner {
    child: Child,
    stream: std::os::unix::net::UnixStream,
    /// Its marker until it has its job (crate::reap), which what it forks
    /// without an exec keeps.
    marker: String,
}

impl Runner {
    /// Starts `argv` as a runner: its own process group (a workflow's
    /// `kill` reaches all of it, a terminal's Ctrl-C none), killed if the
    /// daemon dies, with its socket at [`runner::FD`].
    ///
    /// Must be called on a thread that lives as long as the daemon (a
    /// runtime worker): PR_SET_PDEATHSIG fires when the *thread* that
    /// started the child ends.
    fn start(argv: &[OsString], memory: Option<u64>) -> io::Result<Runner> {
        let Some((program, args)) = argv.split_first() else {
            return Err(io::Error::other("no runner command is configured"));
        };
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let fd = theirs.as_raw_fd();
        // SAFETY: getpid has no preconditions.
        let daemon = unsafe { libc::getpid() };
        let umask: libc::mode_t = USER_UMASK.load(std::sync::atomic::Ordering::Relaxed);
        let address_space = memory.map(memory_rlimit);
        let mut command = tokio::process::Command::new(program);
        // Its stderr is a pipe the supervisor reads: what a runner says as
        // it dies ("memory allocation of N bytes failed") explains it.
        command.args(args).stdin(Stdio::null()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
        let marker = crate::reap::runner_marker();
        command.env(crate::reap::MARKER, &marker);
        // SAFETY: between fork and exec, only async-signal-safe calls
        // (dup2, fcntl, umask, setrlimit, prctl, getppid, _exit) on
        // descriptors this process owns and a struct copied into the closure.
        unsafe {
            command.pre_exec(move || {
                if fd == runner::FD {
                    // dup2 onto itself would keep close-on-exec set.
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, runner::FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // The workflow creates files as its user would, not 077.
                libc::umask(umask);
                // The memory limit: soft and hard, so the workflow cannot lift it.
                if let Some(limit) = &address_space {
                    if libc::setrlimit(libc::RLIMIT_AS, limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The daemon died before the request took effect.
                if libc::getppid() != daemon {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(theirs);
        Ok(Runner { child, stream: ours, marker })
    }

    /// SIGKILLs the runner's process group, then reaps the runner.
    async fn kill(mut self) {
        kill_group(&self.child);
        let _ = self.child.wait().await;
    }
}

/// `RLIMIT_AS` for a runner: `bytes`, or the daemon's own hard limit if
/// that is lower (lowering needs no privilege, raising would).
fn memory_rlimit(bytes: u64) -> libc::rlimit {
    let mut own = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut own) };
    let limit = bytes.min(own.rlim_max);
    libc::rlimit { rlim_cur: limit, rlim_max: limit }
}

/// Runners started ahead of their jobs.
pub struct Pool {
    /// How a runner is started: the daemon's executable with its hidden
    /// runner subcommand, or the Python daemon's own interpreter.
    argv: Vec<OsString>,
    /// Each runner's `RLIMIT_AS` (`--memory-limit`).
    memory: Option<u64>,
    idle: Mutex<VecDeque<Runner>>,
    /// Set when the daemon stops: no more runners are started ahead.
    closed: std::sync::atomic::AtomicBool,
}

impl Pool {
    pub fn new(argv: Vec<OsString>, memory: Option<u64>) -> Pool {
        Pool { argv, memory, idle: Mutex::new(VecDeque::new()), closed: Default::default() }
    }

    /// Tops the pool up to [`WARM`] runners. Runs on a runtime worker
    /// (see [`Runner::start`]).
    pub fn fill(&self) {
        while !self.closed.load(Ordering::Relaxed) && self.idle.lock().len() < WARM {
            match Runner::start(&self.argv, self.memory) {
                Ok(runner) => self.idle.lock().push_back(runner),
                Err(e) => {
                    log(&format!("cannot start a runner ahead of time: {e}"));
                    return;
                }
            }
        }
    }

    /// A warm runner, or one started now.
    fn take(&self) -> io::Result<Runner> {
        match self.idle.lock().pop_front() {
            Some(runner) => Ok(runner),
            None => Runner::start(&self.argv, self.memory),
        }
    }

    /// Kills and reaps the idle runners; none is started after this.
    pub async fn drain(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let idle: Vec<Runner> = self.idle.lock().drain(..).collect();
        for runner in idle {
            runner.kill().await;
        }
    }
}

/// Starts the workflow in a runner of its own, supervised by a task that
/// records and announces its end. Called on the daemon's runtime.
pub fn spawn(shared: Arc<Shared>, running: Arc<Running>, submit: Submit) -> io::Result<()> {
    let runner = shared.pool.take()?;
    let filler = shared.clone();
    tokio::spawn(async move { filler.pool.fill() });
    tokio::spawn(supervise(shared, running, submit, runner));
    Ok(())
}

/// Frees the slot of a workflow that ended (or never started) and starts
/// the first one waiting for it (`--max-running`).
pub async fn release(shared: &Arc<Shared>) {
    let mut next = shared.queue.release();
    while let Some((running, submit)) = next.take() {
        log(&format!("workflow {}: starting (it was queued)", running.id));
        if let Err(e) = spawn(shared.clone(), running.clone(), submit) {
            let why = format!("cannot start a runner for the workflow: {e}; see the daemon's log, and submit it again");
            log(&format!("workflow {}: {why}", running.id));
            end_unstarted(shared, &running, failed(exit::RUNTIME, why)).await;
            next = shared.queue.release();
        }
    }
}

/// Ends a workflow that never got a runner (killed or interrupted while
/// queued, or no runner could start): committed, forgotten, then told.
pub async fn end_unstarted(shared: &Shared, running: &Running, finish: Finish) {
    let (state, exit_code, error) = (finish.state, finish.exit_code, finish.error.clone());
    if let Err(e) = shared.store.finished_committed(running.id, finish).await {
        log(&format!("workflow {}: its end was not recorded: {e}", running.id));
    }
    shared.forget(running.id);
    running.tell(|| Event::Finished { state, exit_code, error: error.clone(), variables: None, exception: None });
}

async fn supervise(shared: Arc<Shared>, running: Arc<Running>, submit: Submit, runner: Runner) {
    shared.store.started(running.id);
    // In its cgroup before it has its job, so before it starts anything.
    shared.reaper.contain(running.id, runner.child.id(), &runner.marker);
    // A resume: the results its predecessor recorded, after the job.
    let replay = match submit.resume_from {
        Some(from) => match shared.store.replay(from).await {
            Ok(found) => found,
            Err(e) => {
                log(&format!("workflow {}: cannot read the records of workflow {from} it resumes ({e}); every task runs", running.id));
                Default::default()
            }
        },
        None => Default::default(),
    };
    if let Some(from) = submit.resume_from {
        log(&format!("workflow {}: resumes workflow {from}, with {} recorded task result(s)", running.id, replay.len()));
    }
    let mut chunks: Vec<Vec<(String, oxiida_protocol::ByteBuf)>> = Vec::new();
    let mut size = 0;
    for (key, result) in replay {
        if chunks.is_empty() || size + result.len() + key.len() > runner::REPLAY_CHUNK {
            chunks.push(Vec::new());
            size = 0;
        }
        size += result.len() + key.len();
        chunks.last_mut().expect("pushed above").push((key, result.into()));
    }
    let job = Job {
        submit,
        defaults: shared.default_plugins(),
        marker: Some(crate::reap::marker(running.id)),
        replay_chunks: chunks.len() as u32,
        executor: shared.executor.clone(),
    };
    let mut job = oxiida_protocol::encode(&job);
    for entries in chunks {
        job.extend(oxiida_protocol::encode(&runner::Answer::Replay { entries }));
    }
    let (finish, Kept { variables, exception }) = drive(&shared, &running, &job, runner).await;
    // Whatever it left running (`setsid` ones too) ends with it, before
    // its end is recorded and told.
    shared.reaper.end(running.id).await;
    log(&format!("workflow {} {} ({})", running.id, finish.state, finish.exit_code.unwrap_or(-1)));
    // Committed and forgotten before it is told: a client that hears the
    // end (`submit --wait`, `workflow kill`) then finds it ended.
    let (state, exit_code, error) = (finish.state, finish.exit_code, finish.error.clone());
    if let Some(bytes) = &variables {
        shared.store.keep(running.id, crate::store::KEPT_VARIABLES, bytes.clone());
    }
    if let Some(bytes) = &exception {
        shared.store.keep(running.id, crate::store::KEPT_EXCEPTION, bytes.clone());
    }
    if let Err(e) = shared.store.finished_committed(running.id, finish).await {
        log(&format!("workflow {}: its end was not recorded: {e}", running.id));
    }
    shared.forget(running.id);
    running.tell(|| Event::Finished { state, exit_code, error: error.clone(), variables: variables.clone(), exception: exception.clone() });
    release(&shared).await;
}

fn failed(code: u8, error: String) -> Finish {
    Finish { state: state::FAILED, exit_code: Some(code.into()), error: Some(error) }
}

/// Gives the runner its job (a warm runner that died meanwhile is replaced
/// once), then records and forwards its reports until its end, and reaps it.
/// What a workflow's end carries besides its record's fields.
#[derive(Default)]
struct Kept {
    /// Its variables, when it succeeded.
    variables: Option<Vec<u8>>,
    /// What its host made of the error (the Python package: the exception
    /// a function raised, pickled).
    exception: Option<Vec<u8>>,
}

async fn drive(shared: &Shared, running: &Running, job: &[u8], runner: Runner) -> (Finish, Kept) {
    let Runner { mut child, stream, .. } = runner;
    let stream = match hand_over(stream, job).await {
        Ok(stream) => stream,
        Err(e) => {
            log(&format!("workflow {}: a warm runner did not take its job ({e}); starting another", running.id));
            kill_group(&child);
            let _ = child.wait().await;
            let fresh = match Runner::start(&shared.pool.argv, shared.pool.memory) {
                Ok(fresh) => fresh,
                Err(e) => return (failed(exit::RUNTIME, format!("cannot start the workflow's runner: {e}")), Kept::default()),
            };
            child = fresh.child;
            shared.reaper.contain(running.id, child.id(), &fresh.marker);
            match hand_over(fresh.stream, job).await {
                Ok(stream) => stream,
                Err(e) => {
                    kill_group(&child);
                    let _ = child.wait().await;
                    return (failed(exit::RUNTIME, format!("the workflow's runner did not take its job: {e}")), Kept::default());
                }
            }
        }
    };
    // The runner's stderr (its functions' prints there, a C library's
    // messages) is the workflow's output too, besides the log.
    let (stderr_lines, mut stderr_rx) = tokio::sync::mpsc::unbounded_channel();
    let (last_words, mut stderr_done) = read_stderr(running.id, child.stderr.take(), stderr_lines);
    let mut capture = Capture::new(shared.limits.output);
    // A print that came in pieces is recorded once whole (the capture
    // bounds it); its pieces go to waiting clients as they come.
    let mut line = String::new();
    // Whether the last piece left its line open (a stderr line waits).
    let open = std::sync::atomic::AtomicBool::new(false);
    let mut held: Vec<String> = Vec::new();
    let mut emit = |piece: Piece| {
        open.store(piece.more, Ordering::Relaxed);
        running.tell(|| Event::Output { text: piece.text.clone(), more: piece.more });
        line.push_str(&piece.text);
        if !piece.more {
            let seq = running.printed.fetch_add(1, Ordering::Relaxed);
            shared.store.output(running.id, seq, std::mem::take(&mut line));
        }
    };
    let (rd, wr) = stream.into_split();
    let mut wr = Some(wr);
    let mut frames = FramedRead::new(rd, crate::server::codec());
    let mut end = None;
    // The pieces of the end's long fields.
    let mut parts = oxiida_protocol::Parts::default();
    let mut kill_at: Option<tokio::time::Instant> = None;
    loop {
        let grace = async {
            match kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = frames.next() => match frame {
                Some(Ok(frame)) => match rmp_serde::from_slice::<Report>(&frame[HEADER_LEN..]) {
                    Ok(Report::Loaded { name, path }) => shared.loaded(path.into(), name),
                    Ok(Report::Output { text, more }) => {
                        let had_cut = capture.cut() > 0;
                        if let Some(text) = capture.push(Piece { text, more }) {
                            emit(text);
                        } else if !had_cut && capture.cut() > 0 {
                            log(&format!(
                                "workflow {}: its output is over --output-limit {}; the middle is cut",
                                running.id,
                                format_size(shared.limits.output)
                            ));
                        }
                        if !more {
                            for text in held.drain(..) {
                                if let Some(text) = capture.push(Piece { text, more: false }) {
                                    emit(text);
                                }
                            }
                        }
                    }
                    Ok(Report::Part { field, data }) => parts.add(field, &data),
                    Ok(Report::Task(record)) => shared.store.task(running.id, *record),
                    Ok(Report::Lookup { seq, identity }) => {
                        let result = match shared.store.lookup(identity).await {
                            Ok(found) => found,
                            Err(e) => {
                                log(&format!("workflow {}: cannot look up a cached result ({e}); the task runs", running.id));
                                None
                            }
                        };
                        if let Some(wr) = wr.as_mut() {
                            let answer = runner::Answer::Cached { seq, result: result.map(oxiida_protocol::ByteBuf::from) };
                            let _ = wr.write_all(&oxiida_protocol::encode(&answer)).await;
                        }
                    }
                    Ok(report @ Report::Finished { .. }) => {
                        end = Some(report);
                        break;
                    }
                    Err(e) => {
                        log(&format!("workflow {}: its runner sent a bad report ({e}); killing it", running.id));
                        break;
                    }
                },
                // The runner closed its socket: it ended or died.
                _ => break,
            },
            Some(text) = stderr_rx.recv() => {
                if open.load(Ordering::Relaxed) {
                    held.push(text); // after the line printed so far
                } else if let Some(text) = capture.push(Piece { text, more: false }) {
                    emit(text);
                }
            }
            // Closing our end tells the runner to stop: it cancels the
            // workflow, which kills its shell tasks' process groups.
            () = running.interrupt.triggered(), if wr.is_some() => {
                if let Some(mut wr) = wr.take() {
                    let _ = wr.shutdown().await;
                }
                kill_at = Some(tokio::time::Instant::now() + KILL_GRACE);
            }
            () = grace => {
                log(&format!("workflow {}: its runner did not stop within {KILL_GRACE:?}; killing its process group", running.id));
                kill_group(&child);
                kill_at = None;
            }
        }
    }
    drop(frames);
    drop(wr);
    // A runner that reported its end exits on its own; one that did not is
    // about to, or is stuck: either way, it is reaped here.
    let status = match tokio::time::timeout(if end.is_some() { EXIT_GRACE } else { KILL_GRACE }, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            kill_group(&child);
            child.wait().await.ok()
        }
    };
    // What it wrote to stderr before it exited (read to the pipe's end,
    // briefly: a process it started may still hold the pipe).
    let stderr_read = tokio::time::timeout(STDERR_TAIL, &mut stderr_done).await.is_ok();
    held.extend(std::iter::from_fn(|| stderr_rx.try_recv().ok()));
    for text in held {
        if let Some(text) = capture.push(Piece { text, more: false }) {
            emit(text);
        }
    }
    // What was held back (the tail of output over the limit), before the end.
    for piece in capture.finish() {
        emit(piece);
    }
    // A value cut short by the runner's end is recorded as far as it came.
    if !line.is_empty() {
        let seq = running.printed.fetch_add(1, Ordering::Relaxed);
        shared.store.output(running.id, seq, line);
    }
    let cancelled = running.interrupt.is_triggered();
    match end {
        Some(Report::Finished { state: s, .. }) if s == state::INTERRUPTED => (running.cancelled(), Kept::default()),
        Some(Report::Finished { state: s, exit_code, error, variables, exception }) => {
            // The long fields sent ahead in parts, put back.
            let mut whole = oxiida_protocol::Reply::Finished { id: running.id, state: s.clone(), exit_code, error, variables, exception };
            if let Err(e) = parts.fill(&mut whole) {
                log(&format!("workflow {}: its runner sent bad parts ({e})", running.id));
            }
            let oxiida_protocol::Reply::Finished { error, variables, exception, .. } = whole else { unreachable!("filled in place") };
            let state = [state::SUCCEEDED, state::FAILED, state::KILLED].into_iter().find(|k| *k == s).unwrap_or(state::FAILED);
            let kept = Kept { variables: variables.map(|v| v.into_vec()), exception: exception.map(|v| v.into_vec()) };
            (Finish { state, exit_code, error }, kept)
        }
        _ if cancelled => (running.cancelled(), Kept::default()),
        _ => {
            // Its last words explain a death: wait (briefly: a shell task it
            // started may hold the pipe) until its stderr is read.
            if !stderr_read {
                let _ = tokio::time::timeout(STDERR_GRACE, stderr_done).await;
            }
            let why = explain(status, &last_words.lock(), shared.limits.memory);
            log(&format!("workflow {}: {why}", running.id));
            (failed(exit::RUNTIME, why), Kept::default())
        }
    }
}

/// How long a dead runner's stderr gets to be read to its end.
const STDERR_GRACE: Duration = Duration::from_millis(500);
/// How long an ended runner's stderr gets to be read into its output.
const STDERR_TAIL: Duration = Duration::from_millis(100);
/// Lines of a runner's stderr kept to explain its death.
const LAST_WORDS: usize = 8;
/// Longer stderr lines are cut, in the log and in the record.
const STDERR_LINE: usize = 1000;

/// Reads a runner's stderr to its end: every line goes to the daemon's log
/// prefixed by the workflow's id and to `lines` (the workflow's output),
/// and the last few are kept to explain a death. The task ends when the
/// pipe closes (the runner and whatever it started that kept its stderr
/// have exited).
fn read_stderr(
    id: u64,
    stderr: Option<tokio::process::ChildStderr>,
    lines: tokio::sync::mpsc::UnboundedSender<String>,
) -> (Arc<Mutex<LastWords>>, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncReadExt;
    let last = Arc::new(Mutex::new(LastWords::default()));
    let kept = last.clone();
    let task = tokio::spawn(async move {
        let Some(mut stderr) = stderr else { return };
        let mut buf = vec![0u8; 8192];
        let mut line: Vec<u8> = Vec::new();
        let mut long = false;
        let said = |line: &mut Vec<u8>, long: &mut bool| {
            let mut text = String::from_utf8_lossy(line).into_owned();
            if std::mem::take(long) {
                text.push_str(" [cut]");
            }
            line.clear();
            log(&format!("workflow {id}: stderr: {text}"));
            let _ = lines.send(text.clone());
            let mut kept = kept.lock();
            if OUT_OF_MEMORY.iter().any(|p| text.to_ascii_lowercase().contains(p)) {
                kept.alloc_failed = Some(text.clone());
            }
            if kept.lines.len() == LAST_WORDS {
                kept.lines.pop_front();
            }
            kept.lines.push_back(text);
        };
        loop {
            let n = match stderr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for part in buf[..n].split_inclusive(|&b| b == b'\n') {
                let (body, ends) = match part.strip_suffix(b"\n") {
                    Some(body) => (body, true),
                    None => (part, false),
                };
                let room = STDERR_LINE.saturating_sub(line.len());
                long |= body.len() > room;
                line.extend_from_slice(&body[..body.len().min(room)]);
                if ends {
                    said(&mut line, &mut long);
                }
            }
        }
        if !line.is_empty() {
            said(&mut line, &mut long);
        }
    });
    (last, task)
}

/// What a runner says on stderr when an allocation fails (Rust, C, C++, Python).
const OUT_OF_MEMORY: [&str; 5] = ["memory allocation of", "out of memory", "cannot allocate memory", "memoryerror", "bad_alloc"];

/// What a runner said last on stderr, and the last allocation failure it
/// reported (a backtrace may follow it).
#[derive(Default)]
struct LastWords {
    lines: VecDeque<String>,
    alloc_failed: Option<String>,
}

/// Why a runner died: its status, and what it said last. A death after an
/// allocation failed, with a memory limit set, is that limit's.
fn explain(status: Option<ExitStatus>, last: &LastWords, memory: Option<u64>) -> String {
    let why = died(status);
    match (memory, &last.alloc_failed) {
        (Some(limit), Some(said)) => format!(
            "memory limit {} exceeded: {why}, after `{said}`; start the daemon with a larger --memory-limit (or `none`) if the workflow needs more",
            format_size(limit)
        ),
        _ if last.lines.is_empty() => why,
        _ => format!("{why}; its last words on stderr: {}", Vec::from(last.lines.clone()).join(" / ")),
    }
}

async fn hand_over(stream: std::os::unix::net::UnixStream, job: &[u8]) -> io::Result<UnixStream> {
    stream.set_nonblocking(true)?;
    let mut stream = UnixStream::from_std(stream)?;
    stream.write_all(job).await?;
    Ok(stream)
}

/// SIGKILLs a runner's process group. Only before the runner is reaped:
/// until then its pid, which is its group's id, cannot be reused.
fn kill_group(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill with plain integers.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    }
}

/// Why a runner ended without reporting its workflow's end.
fn died(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => match (s.signal(), s.code()) {
            (Some(n), _) => {
                format!("runner killed by signal {n} ({}){}", signal_name(n), if s.core_dumped() { ", core dumped" } else { "" })
            }
            (None, Some(code)) => format!("runner exited with status {code} before the workflow ended"),
            (None, None) => "runner ended before the workflow did".into(),
        },
        None => "runner ended before the workflow did; its status is unknown".into(),
    }
}

fn signal_name(n: i32) -> &'static str {
    match n {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "another signal",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_crash_is_named_by_its_signal() {
        use std::os::unix::process::ExitStatusExt;
        let segv = std::process::ExitStatus::from_raw(libc::SIGSEGV);
        assert_eq!(super::died(Some(segv)), "runner killed by signal 11 (SIGSEGV)");
        let exited = std::process::ExitStatus::from_raw(3 << 8);
        assert_eq!(super::died(Some(exited)), "runner exited with status 3 before the workflow ended");
    }
}
