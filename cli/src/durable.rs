//! `oxiida run --record/--cache` and the progress line (docs/durable.md):
//! the observer of a CLI run, which counts tasks for the progress line and
//! sends task records to a store opened in this process, the daemon's
//! database (an embedded SQLite file, not a server).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use oxiida::observe::{Outcome, Supplied, Task};
use oxiida::TaskObserver;
use oxiida_daemon::record::{RecordSink, Recorder, TaskRecord};
use oxiida_daemon::store::{self, Store};
use oxiida_protocol::Paths;

/// Task counts, for the progress line.
#[derive(Default)]
pub struct Counts {
    started: AtomicUsize,
    done: AtomicUsize,
    failed: AtomicUsize,
    reused: AtomicUsize,
}

/// The observer of a CLI run: counts, and records when asked.
pub struct RunObserver {
    pub counts: Arc<Counts>,
    recorder: Option<Recorder>,
}

impl TaskObserver for RunObserver {
    fn before<'a>(&'a self, task: &'a Task<'a>) -> BoxFuture<'a, Option<Supplied>> {
        self.counts.started.fetch_add(1, Ordering::Relaxed);
        match &self.recorder {
            Some(r) => r.before(task),
            None => Box::pin(std::future::ready(None)),
        }
    }

    fn after(&self, task: &Task<'_>, started: SystemTime, ended: SystemTime, outcome: Outcome<'_>) {
        let counter = match outcome {
            Outcome::Succeeded(_) => &self.counts.done,
            Outcome::Failed(_) => &self.counts.failed,
            Outcome::Supplied(_) => &self.counts.reused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = &self.recorder {
            r.after(task, started, ended, outcome);
        }
    }
}

/// Records of a CLI run go straight to the store's thread.
struct Direct {
    store: Store,
    id: u64,
}

impl RecordSink for Direct {
    fn record(&self, record: TaskRecord) {
        self.store.task(self.id, record);
    }

    fn lookup(&self, identity: String) -> BoxFuture<'static, Option<Vec<u8>>> {
        let store = self.store.clone();
        Box::pin(async move { store.lookup(identity).await.ok().flatten() })
    }
}

/// A recorded CLI run: its id in the store, and the store.
pub struct Recording {
    pub store: Store,
    pub id: u64,
}

/// Opens the daemon's store and records the run's start. The daemon's
/// store is opened by one process at a time: while a daemon runs, a run
/// is recorded by submitting it instead.
pub fn start_recording(name: &str, source: &str, plugins: &[String]) -> Result<Recording, String> {
    let paths = Paths::from_env().map_err(|e| e.to_string())?;
    paths.create().map_err(|e| e.to_string())?;
    let store = store::open_with(&paths.database, Some(&paths.last_id)).map_err(|e| {
        let text = e.to_string();
        if text.contains("locked") || text.contains("another program holds") {
            format!(
                "cannot record this run: the daemon holds its database {} (one process writes it at a time); submit the workflow instead (`oxiida submit --wait`, which records every task), or stop the daemon",
                paths.database.display()
            )
        } else {
            format!("cannot record this run: {text}")
        }
    })?;
    let rt = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
    let new = store::New {
        name: name.to_owned(),
        source: source.to_owned(),
        plugins: plugins.to_vec(),
        cwd: std::env::current_dir().ok().map(|d| d.display().to_string()),
        submit: None,
        resumed_from: None,
    };
    let id = rt.block_on(store.insert(new)).map_err(|e| format!("cannot record this run: {e}"))?;
    store.started(id);
    Ok(Recording { store, id })
}

impl Recording {
    /// The observer that records this run's tasks (and with `cache`, reuses results).
    /// Calls are identified by their function's fingerprint where `host`'s
    /// plugin gives one, else by the plugins' files.
    pub fn recorder(&self, cache: bool, plugins: &[(String, std::path::PathBuf, String)], host: &Arc<oxiida_host::PluginHost>) -> Recorder {
        let (code, names) = oxiida_daemon::record::fingerprint(plugins, &[]);
        let sink = Arc::new(Direct { store: self.store.clone(), id: self.id });
        Recorder::new(sink, Default::default(), cache, code, (!names.is_empty()).then_some(names))
            .with_fingerprints(oxiida_daemon::runner::fingerprints_of(host))
            .with_providers(oxiida_daemon::runner::providers_of(host))
    }

    /// Records the run's end, commits and closes the store.
    pub fn finish(self, code: u8, error: Option<String>) {
        let state = match code {
            0 => oxiida_protocol::state::SUCCEEDED,
            130 => oxiida_protocol::state::INTERRUPTED,
            _ => oxiida_protocol::state::FAILED,
        };
        self.store.finished(self.id, store::Finish { state, exit_code: Some(code.into()), error });
        self.store.close();
        eprintln!("oxiida: recorded as workflow {} (`oxiida workflow show {}` once a daemon runs)", self.id, self.id);
    }
}

pub fn observer(recorder: Option<Recorder>) -> RunObserver {
    RunObserver { counts: Arc::default(), recorder }
}

/// The live progress line on stderr (a terminal): redrawn every tenth of a
/// second until `stop`, then erased.
pub struct Progress {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(counts: Arc<Counts>) -> Progress {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let began = Instant::now();
        let thread = std::thread::Builder::new()
            .name("oxiida-progress".into())
            .spawn(move || {
                let mut err = std::io::stderr();
                loop {
                    let ended =
                        !matches!(stopped.recv_timeout(Duration::from_millis(100)), Err(std::sync::mpsc::RecvTimeoutError::Timeout));
                    let (done, failed, reused) =
                        (counts.done.load(Ordering::Relaxed), counts.failed.load(Ordering::Relaxed), counts.reused.load(Ordering::Relaxed));
                    let running = counts.started.load(Ordering::Relaxed).saturating_sub(done + failed + reused);
                    if ended {
                        let _ = err.write_all(b"\r\x1b[2K");
                        return;
                    }
                    let mut line = format!("\r\x1b[2K[oxiida] tasks: {done} done, {running} running, {failed} failed");
                    if reused > 0 {
                        line.push_str(&format!(", {reused} cached or replayed"));
                    }
                    line.push_str(&format!(" | {:.1}s", began.elapsed().as_secs_f64()));
                    let _ = err.write_all(line.as_bytes()).and_then(|()| err.flush());
                }
            })
            .ok();
        Progress { stop, thread }
    }

    pub fn finish(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
