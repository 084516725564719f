//! The workflow records, in SQLite, owned by one thread. Everyone else sends
//! it operations through a channel: writers never wait on each other, a
//! burst of writes is committed as one transaction, and a read queued after
//! a write always sees it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use std::collections::HashMap;

use crate::log;
use crate::record::TaskRecord;
use oxiida_protocol::now_ms;
use oxiida_protocol::{Record, Summary, TaskRow};

/// Most operations committed in one transaction.
const BATCH: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    plugins TEXT NOT NULL,
    cwd TEXT,
    state TEXT NOT NULL,
    exit_code INTEGER,
    error TEXT,
    submitted_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER
);
CREATE TABLE IF NOT EXISTS output (
    workflow INTEGER NOT NULL REFERENCES workflows(id),
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (workflow, seq)
);
-- For `list`'s pages (added in 0.2; `IF NOT EXISTS` builds them once in an
-- older database, the first time a daemon opens it).
CREATE INDEX IF NOT EXISTS workflows_by_state ON workflows(state, id);
CREATE INDEX IF NOT EXISTS workflows_by_submitted ON workflows(submitted_ms);
-- Task records (added in 0.3, docs/durable.md): one row per task of a
-- workflow, by its stable key; `args` and `result` MessagePack.
CREATE TABLE IF NOT EXISTS tasks (
    workflow INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    what TEXT NOT NULL,
    plugin TEXT,
    args BLOB,
    result BLOB,
    replayable INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    identity TEXT,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER NOT NULL,
    worker TEXT,
    inputs TEXT,
    PRIMARY KEY (workflow, key)
);
CREATE INDEX IF NOT EXISTS tasks_by_identity ON tasks(identity) WHERE identity IS NOT NULL AND replayable = 1;
";

/// Columns added after 0.2, each added to an older database the first time
/// a daemon opens it: a succeeded workflow's variables (for
/// `oxiida.result(id)`), MessagePack as in the `finished` reply, and a
/// failed one's exception as its host made it (Python: pickled).
const ADDED: [(&str, &str); 5] = [
    (KEPT_VARIABLES, "ALTER TABLE workflows ADD COLUMN variables BLOB"),
    (KEPT_EXCEPTION, "ALTER TABLE workflows ADD COLUMN exception BLOB"),
    // The submission itself (MessagePack), so that `workflow resume` can
    // run it again with its plugins, environment and inputs.
    ("submit", "ALTER TABLE workflows ADD COLUMN submit BLOB"),
    ("resumed_from", "ALTER TABLE workflows ADD COLUMN resumed_from INTEGER"),
    ("resumed_by", "ALTER TABLE workflows ADD COLUMN resumed_by INTEGER"),
];

/// The columns [`Store::keep`] writes.
pub const KEPT_VARIABLES: &str = "variables";
pub const KEPT_EXCEPTION: &str = "exception";

fn add_columns(db: &Connection) -> rusqlite::Result<()> {
    for (column, sql) in ADDED {
        let have: i64 =
            db.query_row("SELECT count(*) FROM pragma_table_info('workflows') WHERE name = ?1", params![column], |r| r.get(0))?;
        if have == 0 {
            db.execute_batch(sql)?;
        }
    }
    Ok(())
}

/// Why the store cannot be opened or did not answer. Each message says what
/// to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {}: {source}{}", path.display(), hint(source))]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("cannot prepare the database {}: {source}{}", path.display(), hint(source))]
    Prepare { path: PathBuf, source: rusqlite::Error },
    #[error("the database {} cannot be written: it, or its folder, is read-only or immutable ({reason}); the daemon must write its records there: make them writable again (`chmod u+w`; `lsattr` shows an immutable file or folder, `chattr -i` clears it), or set OXIIDA_DATA_DIR to a writable folder of your own", path.display())]
    ReadOnly { path: PathBuf, reason: String },
    #[error("cannot start the database's thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("database error: {0}{hint}", hint = hint(.0))]
    Query(#[source] rusqlite::Error),
    /// The batch the operation was in failed to commit; shared by its replies.
    #[error("cannot commit to the database: {0}{hint}", hint = hint(.0))]
    Commit(#[source] Arc<rusqlite::Error>),
    #[error("the daemon's data folder {} was deleted or replaced while the daemon ran ({why}), so it can record nothing more: run `oxiida daemon restart`, which starts a new database there (new ids go on after the last one given) and saves this daemon's records beside it", folder.display())]
    Gone { folder: PathBuf, why: String },
    #[error("the database is closed")]
    Closed,
}

/// What to do about a database error, when its code says.
fn hint(e: &rusqlite::Error) -> &'static str {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(ReadOnly | CannotOpen | PermissionDenied | SystemIoFailure | DiskFull) => {
            "; the database or its folder cannot be written (read-only, immutable, full or failing disk): fix that (`chmod u+w`, `chattr -i`, free some space) and run `oxiida daemon restart`, or set OXIIDA_DATA_DIR to a writable folder"
        }
        Some(DatabaseBusy | DatabaseLocked) => "; another program holds the database: close it, then try again",
        Some(DatabaseCorrupt | NotADatabase) => {
            "; the database is damaged: move it aside and run `oxiida daemon restart` (new ids go on after the last one given)"
        }
        _ => "",
    }
}

/// Whether `e` says the database cannot be written.
fn read_only(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(e.sqlite_error_code(), Some(ReadOnly | CannotOpen | PermissionDenied))
}

/// A workflow as submitted, before it has an id.
pub struct New {
    pub name: String,
    pub source: String,
    pub plugins: Vec<String>,
    pub cwd: Option<String>,
    /// The submission as sent (MessagePack), for `workflow resume`.
    pub submit: Option<Vec<u8>>,
    /// The workflow this one resumes: marked as resumed by it.
    pub resumed_from: Option<u64>,
}

/// What `workflow resume` needs of a recorded workflow.
pub struct Resumable {
    pub state: String,
    pub source: String,
    pub submit: Option<Vec<u8>>,
    pub resumed_by: Option<u64>,
}

/// Which records one `list` answers with: the newest first.
pub struct Page {
    pub limit: u32,
    pub since_ms: Option<i64>,
    pub state: Option<String>,
    pub before: Option<u64>,
}

pub struct Finish {
    pub state: &'static str,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

enum Op {
    Insert(New, oneshot::Sender<Result<u64, StoreError>>),
    Started(u64, i64),
    Output(u64, u64, String),
    /// A column of [`ADDED`] (variables, exception), sent before the end.
    Keep(u64, &'static str, Vec<u8>),
    /// Appends a sentence to a workflow's error.
    Note(u64, String),
    /// With a sender, told once the end is committed.
    Finished(u64, Finish, i64, Option<oneshot::Sender<Result<(), StoreError>>>),
    /// The page, and whether more records match.
    #[allow(clippy::type_complexity)]
    List(Page, oneshot::Sender<Result<(Vec<Summary>, bool), StoreError>>),
    Show(u64, oneshot::Sender<Result<Option<Record>, StoreError>>),
    Task(u64, Box<TaskRecord>),
    Tasks(u64, oneshot::Sender<Result<Vec<TaskRow>, StoreError>>),
    /// The replayable results of a workflow's successful tasks, by key.
    Replay(u64, oneshot::Sender<Result<HashMap<String, Vec<u8>>, StoreError>>),
    /// The newest replayable result of a task with this identity.
    Lookup(String, oneshot::Sender<Result<Option<Vec<u8>>, StoreError>>),
    Resumable(u64, oneshot::Sender<Result<Option<Resumable>, StoreError>>),
    /// Interrupted workflows not resumed yet, newest first.
    Interrupted(oneshot::Sender<Result<Vec<u64>, StoreError>>),
    /// Commits, then ends the thread; the sender learns when it is done.
    Close(std::sync::mpsc::Sender<()>),
}

/// A handle on the store's thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    ops: mpsc::Sender<Op>,
}

/// Opens (creating) the database and marks the workflows a dead daemon left
/// running as interrupted, then serves operations on a thread of its own.
pub fn open(path: &Path) -> Result<Store, StoreError> {
    open_with(path, None)
}

/// `open`, with the file that keeps the highest id ever handed out
/// (`Paths::last_id`): ids start after it, even in a new database.
pub fn open_with(path: &Path, last_id: Option<&Path>) -> Result<Store, StoreError> {
    let prepare = |source: rusqlite::Error| {
        if read_only(&source) {
            StoreError::ReadOnly { path: path.to_owned(), reason: source.to_string() }
        } else {
            StoreError::Prepare { path: path.to_owned(), source }
        }
    };
    let mut db = Connection::open(path).map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
    // SQLite opens a file it cannot write read-only, silently.
    if db.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(StoreError::ReadOnly { path: path.to_owned(), reason: "it opens read-only".into() });
    }
    // EXCLUSIVE before WAL: SQLite then keeps the WAL index in the heap
    // instead of an mmap'd `-shm` file, whose pages SIGBUS the whole daemon
    // when the file cannot be grown or read (immutable, full disk). The
    // daemon is the database's only user anyway (it holds `daemon.lock`).
    // WAL with NORMAL sync: a commit survives the daemon being killed (only
    // a machine crash may lose the last ones) without an fsync per print.
    db.execute_batch(
        "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
    )
    .and_then(|()| db.execute_batch(SCHEMA))
    .and_then(|()| add_columns(&db))
    .map_err(prepare)?;
    let lost = db
        .execute(
            "UPDATE workflows SET state = 'interrupted', exit_code = 130, finished_ms = ?1,
             error = coalesce(error, 'the daemon stopped while this workflow was running')
             WHERE state IN ('queued', 'running')",
            params![now_ms()],
        )
        .map_err(prepare)?;
    if lost > 0 {
        log(&format!("marked {lost} workflow(s) left running by an earlier daemon as interrupted"));
    }
    if let Some(file) = last_id {
        start_after(&db, file).map_err(prepare)?;
    }
    let meta = std::fs::metadata(path).map_err(|e| StoreError::Open { path: path.to_owned(), source: io_error(e) })?;
    let mut guard = Guard { path: path.to_owned(), file: (meta.dev(), meta.ino()), gone: None, last_id: last_id.map(Path::to_owned) };
    let (ops, rx) = mpsc::channel();
    let serving = move || {
        let closing = serve(&mut db, &rx, &mut guard);
        // Closed before it says so: SQLite then checkpoints and removes the
        // WAL, which a daemon exiting right after would leave behind.
        if let Err((_, e)) = db.close() {
            log(&format!("cannot close the database: {e}"));
        }
        if let Some(done) = closing {
            let _ = done.send(());
        }
    };
    std::thread::Builder::new().name("oxiida-store".into()).spawn(serving).map_err(StoreError::Thread)?;
    Ok(Store { ops })
}

fn io_error(e: std::io::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// Makes the next id follow the highest one ever handed out, as `file`
/// keeps it, when the database knows of none as high (it is new, or an
/// older copy).
fn start_after(db: &Connection, file: &Path) -> rusqlite::Result<()> {
    let floor = std::fs::read_to_string(file).ok().and_then(|t| t.trim().parse::<i64>().ok()).unwrap_or(0);
    let known: i64 = db.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'workflows'), 0), coalesce((SELECT max(id) FROM workflows), 0))",
        [],
        |r| r.get(0),
    )?;
    if floor > known {
        db.execute("DELETE FROM sqlite_sequence WHERE name = 'workflows'", [])?;
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('workflows', ?1)", params![floor])?;
        log(&format!(
            "the database knows ids up to {known} only; new ids start after {floor}, the highest ever given ({})",
            file.display()
        ));
    } else if known > floor {
        // A database older than the file (or no file yet): from now on,
        // deleting the database cannot bring its ids back.
        remember_last_id(file, known as u64);
    }
    Ok(())
}

/// Writes the highest id handed out, replacing the file at once (a
/// rename), so that a crash leaves the old value or the new one.
fn remember_last_id(file: &Path, id: u64) {
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".new");
    let written = std::fs::write(&tmp, format!("{id}\n")).and_then(|()| std::fs::rename(&tmp, file));
    if let Err(e) = written {
        log(&format!("cannot record the highest id given ({id}) in {}: {e}; a new database could reuse ids", file.display()));
    }
}

/// Watches that the database the store has open is still the one at its
/// path: a data folder deleted or replaced under a running daemon leaves
/// SQLite writing to a file nobody can open again.
struct Guard {
    path: PathBuf,
    /// The device and inode of the file opened.
    file: (u64, u64),
    /// Why the database is no longer at its path, once seen.
    gone: Option<String>,
    last_id: Option<PathBuf>,
}

impl Guard {
    fn folder(&self) -> PathBuf {
        self.path.parent().map_or_else(PathBuf::new, Path::to_owned)
    }

    /// Checked before every batch; once gone, gone for this daemon's life.
    fn check(&mut self) -> Option<String> {
        if self.gone.is_none() {
            let why = match std::fs::metadata(&self.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Some(if self.folder().exists() { "the database file was deleted" } else { "the folder was deleted" }.to_owned())
                }
                Err(e) => Some(format!("the database cannot be looked at: {e}")),
                Ok(m) if (m.dev(), m.ino()) != self.file => Some("the database there is another file now".to_owned()),
                Ok(_) => None,
            };
            if let Some(why) = &why {
                let message = StoreError::Gone { folder: self.folder(), why: why.clone() }.to_string();
                log(&message);
                // The log was in that folder too: start one there again.
                if crate::reopen_log(&self.folder().join("daemon.log")) {
                    log(&message);
                }
                log("submits are refused from now on; workflows running go on, their records kept in the database this daemon has open (saved when it stops)");
            }
            self.gone = why;
        }
        self.gone.clone()
    }

    fn gone_error(&self, why: &str) -> StoreError {
        StoreError::Gone { folder: self.folder(), why: why.to_owned() }
    }
}

/// Copies the database this daemon has open, which is no longer at its
/// path, beside where it was, so that nothing recorded is lost.
fn save_gone(db: &Connection, guard: &Guard) {
    let folder = guard.folder();
    let to = folder.join(format!("workflows-saved-{}.sqlite3", now_ms()));
    let saved = std::fs::create_dir_all(&folder)
        .map_err(|e| e.to_string())
        .and_then(|()| db.execute("VACUUM INTO ?1", params![to.to_string_lossy()]).map_err(|e| e.to_string()));
    match saved {
        Ok(_) => log(&format!("the records this daemon had (its database was deleted or replaced) are saved in {}", to.display())),
        Err(e) => log(&format!("cannot save this daemon's records (its database was deleted or replaced) in {}: {e}", to.display())),
    }
}

impl Store {
    fn send(&self, op: Op) {
        // Fails only after `close`: late events of a workflow that outlived
        // the daemon's shutdown, which the next start marks interrupted.
        let _ = self.ops.send(op);
    }

    pub async fn insert(&self, new: New) -> Result<u64, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Insert(new, tx));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub fn started(&self, id: u64) {
        self.send(Op::Started(id, now_ms()));
    }

    pub fn output(&self, id: u64, seq: u64, text: String) {
        self.send(Op::Output(id, seq, text));
    }

    /// Keeps a workflow's variables or exception (`KEPT_*`); sent before
    /// its end, so committed with it or before.
    pub fn keep(&self, id: u64, column: &'static str, bytes: Vec<u8>) {
        debug_assert!(ADDED.iter().any(|(c, _)| *c == column));
        self.send(Op::Keep(id, column, bytes));
    }

    /// Appends `text` to workflow `id`'s error (what was cleaned up after it).
    pub fn note(&self, id: u64, text: String) {
        self.send(Op::Note(id, text));
    }

    pub fn finished(&self, id: u64, finish: Finish) {
        self.send(Op::Finished(id, finish, now_ms(), None));
    }

    /// Records a workflow's end and returns once it is committed: a reply
    /// that reports an end waits for this.
    pub async fn finished_committed(&self, id: u64, finish: Finish) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Finished(id, finish, now_ms(), Some(tx)));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// One page of summaries, newest first, and whether more match.
    pub async fn list(&self, page: Page) -> Result<(Vec<Summary>, bool), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::List(page, tx));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn show(&self, id: u64) -> Result<Option<Record>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Show(id, tx));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Records a task (batched with whatever else is queued).
    pub fn task(&self, workflow: u64, record: TaskRecord) {
        self.send(Op::Task(workflow, Box::new(record)));
    }

    pub async fn tasks(&self, workflow: u64) -> Result<Vec<TaskRow>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Tasks(workflow, tx));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// What a resume of `workflow` replays: its successful tasks' results by key.
    pub async fn replay(&self, workflow: u64) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Replay(workflow, tx));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The cached result for a task identity, if any workflow recorded one.
    pub async fn lookup(&self, identity: String) -> Result<Option<Vec<u8>>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Lookup(identity, tx));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn resumable(&self, workflow: u64) -> Result<Option<Resumable>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Resumable(workflow, tx));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Interrupted workflows that were never resumed, newest first.
    pub async fn interrupted(&self) -> Result<Vec<u64>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Interrupted(tx));
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Commits what is queued and stops the store's thread.
    pub fn close(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(Op::Close(tx));
        let _ = rx.recv_timeout(std::time::Duration::from_secs(5));
    }
}

/// Serves operations until `Close` (whose sender it returns) or until
/// every handle is gone.
fn serve(db: &mut Connection, rx: &mpsc::Receiver<Op>, guard: &mut Guard) -> Option<std::sync::mpsc::Sender<()>> {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // Task records come one per task, each too small to be worth a
        // commit of its own: a batch of them (and nothing anyone waits
        // for) waits up to `LINGER` for more, so that a loop of quick
        // tasks commits hundreds at a time. A task whose record is in
        // that window when the daemon dies runs again on resume, as one
        // running at the crash would (docs/durable.md).
        if batch.iter().any(|op| matches!(op, Op::Task(..))) && batch.iter().all(quiet) {
            let until = std::time::Instant::now() + LINGER;
            while batch.len() < BATCH {
                match rx.recv_timeout(until.saturating_duration_since(std::time::Instant::now())) {
                    Ok(op) => {
                        let wait = quiet(&op);
                        batch.push(op);
                        if !wait {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        // Replies wait for the commit: an id handed out is an id on disk.
        let mut replies: Vec<Deferred> = Vec::new();
        let mut closing = None;
        let gone = guard.check();
        let tx = match db.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                log(&format!("database error: {e}{}", hint(&e)));
                let e = Arc::new(e);
                for op in batch {
                    refuse(op, || StoreError::Commit(e.clone()), &mut closing);
                }
                if closing.is_some() {
                    return closing;
                }
                continue;
            }
        };
        let mut highest = 0;
        let touched: std::collections::BTreeSet<u64> = batch
            .iter()
            .filter_map(|op| match op {
                Op::Started(id, _) | Op::Output(id, ..) | Op::Note(id, _) | Op::Finished(id, ..) | Op::Task(id, _) => Some(*id),
                _ => None,
            })
            .collect();
        for op in batch {
            // No new workflow once the database is not at its path: its
            // record would vanish with the daemon.
            let op = match (op, &gone) {
                (op @ Op::Insert(..), Some(why)) => {
                    refuse(op, || guard.gone_error(why), &mut closing);
                    continue;
                }
                (op, _) => op,
            };
            match apply(&tx, op, &mut highest) {
                Ok(Some(Applied::Reply(reply))) => replies.push(reply),
                Ok(Some(Applied::Close(done))) => closing = Some(done),
                Ok(None) => {}
                Err(e) => log(&format!("database error: {e}{}", hint(&e))),
            }
        }
        let failed = tx.commit().err().map(Arc::new);
        if let Some(e) = &failed {
            log(&format!("cannot commit to the database: {e}{}", hint(e)));
            if !touched.is_empty() {
                let ids: Vec<String> = touched.iter().map(u64::to_string).collect();
                log(&format!("changes to the records of workflow(s) {} were lost with that commit", ids.join(", ")));
            }
        } else if let (Some(file), true) = (&guard.last_id, highest > 0) {
            // Before the ids are told: a told id is never given again.
            remember_last_id(file, highest);
        }
        for reply in replies {
            reply(failed.clone());
        }
        if closing.is_some() {
            if gone.is_some() {
                save_gone(db, guard);
            }
            return closing;
        }
    }
    None
}

/// How long a batch of task records waits for more before it is committed.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// An operation no one waits for: it may wait for company.
fn quiet(op: &Op) -> bool {
    matches!(op, Op::Task(..) | Op::Output(..) | Op::Started(..) | Op::Keep(..) | Op::Note(..) | Op::Finished(_, _, _, None))
}

/// Answers an operation that cannot be applied with `error`; one without a
/// reply is logged, so that nothing is lost unsaid.
fn refuse(op: Op, error: impl Fn() -> StoreError, closing: &mut Option<std::sync::mpsc::Sender<()>>) {
    match op {
        Op::Insert(_, to) => drop(to.send(Err(error()))),
        Op::Finished(id, f, _, to) => {
            log(&format!("workflow {id}: its end ({} {:?}) was not recorded: {}", f.state, f.exit_code, error()));
            if let Some(to) = to {
                let _ = to.send(Err(error()));
            }
        }
        Op::List(_, to) => drop(to.send(Err(error()))),
        Op::Show(_, to) => drop(to.send(Err(error()))),
        Op::Tasks(_, to) => drop(to.send(Err(error()))),
        Op::Replay(_, to) => drop(to.send(Err(error()))),
        Op::Lookup(_, to) => drop(to.send(Err(error()))),
        Op::Resumable(_, to) => drop(to.send(Err(error()))),
        Op::Interrupted(to) => drop(to.send(Err(error()))),
        Op::Task(id, record) => log(&format!("workflow {id}: the record of task {} was lost: {}", record.key, error())),
        Op::Started(id, _) | Op::Output(id, ..) | Op::Keep(id, ..) | Op::Note(id, _) => {
            log(&format!("workflow {id}: a change to its record was lost: {}", error()))
        }
        Op::Close(done) => *closing = Some(done),
    }
}

/// A reply to send once the commit is known to have worked (`None`) or failed.
type Deferred = Box<dyn FnOnce(Option<Arc<rusqlite::Error>>)>;

enum Applied {
    Reply(Deferred),
    Close(std::sync::mpsc::Sender<()>),
}

/// Sends `value` once the batch is committed, or the commit's error.
fn reply<T: 'static>(to: oneshot::Sender<Result<T, StoreError>>, value: rusqlite::Result<T>) -> Applied {
    Applied::Reply(Box::new(move |failed: Option<Arc<rusqlite::Error>>| {
        let result = match (failed, value) {
            (Some(e), _) => Err(StoreError::Commit(e)),
            (None, v) => v.map_err(StoreError::Query),
        };
        let _ = to.send(result);
    }))
}

fn apply(db: &Connection, op: Op, highest: &mut u64) -> rusqlite::Result<Option<Applied>> {
    Ok(Some(match op {
        Op::Insert(new, to) => {
            let inserted = db
                .execute(
                    "INSERT INTO workflows (name, source, plugins, cwd, state, submitted_ms, submit, resumed_from)
                     VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7)",
                    params![
                        new.name,
                        new.source,
                        new.plugins.join("\n"),
                        new.cwd,
                        now_ms(),
                        new.submit,
                        new.resumed_from.map(|i| i as i64)
                    ],
                )
                .map(|_| db.last_insert_rowid() as u64);
            if let Ok(id) = inserted {
                *highest = (*highest).max(id);
                if let Some(from) = new.resumed_from {
                    db.execute("UPDATE workflows SET resumed_by = ?2 WHERE id = ?1", params![from as i64, id as i64])?;
                }
            }
            reply(to, inserted)
        }
        Op::Started(id, at) => {
            db.execute(
                "UPDATE workflows SET state = 'running', started_ms = ?2 WHERE id = ?1 AND state = 'queued'",
                params![id as i64, at],
            )?;
            return Ok(None);
        }
        Op::Output(id, seq, text) => {
            db.execute("INSERT INTO output (workflow, seq, text) VALUES (?1, ?2, ?3)", params![id as i64, seq as i64, text])?;
            return Ok(None);
        }
        Op::Keep(id, column, bytes) => {
            // `column` is one of ADDED's names, never input.
            db.execute(&format!("UPDATE workflows SET {column} = ?2 WHERE id = ?1"), params![id as i64, bytes])?;
            return Ok(None);
        }
        Op::Note(id, text) => {
            db.execute("UPDATE workflows SET error = coalesce(error || '; ', '') || ?2 WHERE id = ?1", params![id as i64, text])?;
            return Ok(None);
        }
        Op::Finished(id, f, at, to) => {
            let updated = db
                .execute(
                    "UPDATE workflows SET state = ?2, exit_code = ?3, error = ?4, finished_ms = ?5 WHERE id = ?1",
                    params![id as i64, f.state, f.exit_code, f.error, at],
                )
                .map(drop);
            match to {
                Some(to) => reply(to, updated),
                None => return updated.map(|()| None),
            }
        }
        Op::List(page, to) => reply(to, list(db, &page)),
        Op::Show(id, to) => reply(to, show(db, id)),
        Op::Task(id, r) => {
            db.prepare_cached(
                "INSERT OR REPLACE INTO tasks (workflow, key, kind, what, plugin, args, result, replayable, status, error, identity, started_ms, ended_ms, worker, inputs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?
            .execute(params![
                id as i64,
                r.key,
                r.kind,
                r.what,
                r.plugin,
                r.args.as_slice(),
                r.result.as_deref().map(|b| b.as_slice()),
                r.replayable,
                r.status,
                r.error,
                r.identity,
                r.started_ms,
                r.ended_ms,
                r.worker,
                r.inputs.join("\n")
            ])?;
            return Ok(None);
        }
        Op::Tasks(id, to) => reply(to, tasks(db, id)),
        Op::Replay(id, to) => reply(to, replay(db, id)),
        Op::Lookup(identity, to) => reply(
            to,
            db.prepare_cached(
                "SELECT result FROM tasks WHERE identity = ?1 AND replayable = 1 AND status IN ('succeeded', 'replayed', 'cached')
                 ORDER BY ended_ms DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![identity], |r| r.get::<_, Option<Vec<u8>>>(0)).optional())
            .map(Option::flatten),
        ),
        Op::Resumable(id, to) => reply(
            to,
            db.query_row("SELECT state, source, submit, resumed_by FROM workflows WHERE id = ?1", params![id as i64], |r| {
                Ok(Resumable {
                    state: r.get(0)?,
                    source: r.get(1)?,
                    submit: r.get(2)?,
                    resumed_by: r.get::<_, Option<i64>>(3)?.map(|i| i as u64),
                })
            })
            .optional(),
        ),
        Op::Interrupted(to) => reply(to, interrupted(db)),
        Op::Close(done) => Applied::Close(done),
    }))
}

/// A page through indexes alone, whatever the table's size: ids grow with
/// submission times, so `since` becomes a lower bound on the id (the id of
/// the first workflow submitted since then, one lookup in
/// `workflows_by_submitted`), and the page is a walk down the ids (the
/// table itself, or `workflows_by_state` for one state) from `before`,
/// stopping after `limit + 1` rows. The time is still checked on every row
/// (`+` keeps the planner off that index). Only if the clock was set back
/// between two submissions can the bound skip a workflow that matches.
fn list(db: &Connection, page: &Page) -> rusqlite::Result<(Vec<Summary>, bool)> {
    let from: i64 = match page.since_ms {
        None => 0,
        Some(since) => db
            .prepare_cached("SELECT id FROM workflows WHERE submitted_ms >= ?1 ORDER BY submitted_ms, id LIMIT 1")?
            .query_row(params![since], |r| r.get::<_, i64>(0))
            .optional()?
            .unwrap_or(i64::MAX),
    };
    let before = page.before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
    let sql = format!(
        "SELECT id, substr(name, 1, 1024), state, exit_code, submitted_ms, finished_ms FROM workflows
         WHERE id >= ?1 AND id < ?2 AND +submitted_ms >= ?3 {} ORDER BY id DESC LIMIT ?5",
        if page.state.is_some() { "AND state = ?4" } else { "AND ?4 IS NULL" }
    );
    let mut stmt = db.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![from, before, page.since_ms.unwrap_or(i64::MIN), page.state, i64::from(page.limit) + 1], |r| {
        Ok(Summary {
            id: r.get::<_, i64>(0)? as u64,
            name: r.get(1)?,
            state: r.get(2)?,
            exit_code: r.get(3)?,
            submitted_ms: r.get(4)?,
            finished_ms: r.get(5)?,
        })
    })?;
    let mut all = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    let more = all.len() > page.limit as usize;
    all.truncate(page.limit as usize);
    Ok((all, more))
}

/// For benchmarks and tests: adds `count` finished workflows to the
/// database at `path` (created if missing), in one transaction, through
/// this module's schema. The first was submitted `span_ms` ago, the last
/// now; their states go round succeeded, failed, killed, interrupted,
/// succeeded. Not for use on a database a daemon has open.
#[doc(hidden)]
pub fn fill(path: &Path, count: u64, span_ms: i64) -> Result<(), StoreError> {
    let prepare = |source| StoreError::Prepare { path: path.to_owned(), source };
    let mut db = Connection::open(path).map_err(|source| StoreError::Open { path: path.to_owned(), source })?;
    db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;").and_then(|()| db.execute_batch(SCHEMA)).map_err(prepare)?;
    let tx = db.transaction().map_err(StoreError::Query)?;
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO workflows (name, source, plugins, state, exit_code, submitted_ms, started_ms, finished_ms)
                 VALUES (?1, 'print 1;', '', ?2, ?3, ?4, ?4, ?4 + 5)",
            )
            .map_err(StoreError::Query)?;
        let (now, states) = (now_ms(), [("succeeded", 0), ("failed", 1), ("killed", 130), ("interrupted", 130), ("succeeded", 0)]);
        for i in 0..count {
            let (state, code) = states[(i % 5) as usize];
            let at = now - span_ms + (span_ms as i128 * i128::from(i) / i128::from(count.max(1))) as i64;
            insert.execute(params![format!("wf{}.ox", i + 1), state, code, at]).map_err(StoreError::Query)?;
        }
    }
    tx.commit().map_err(StoreError::Query)
}

fn tasks(db: &Connection, id: u64) -> rusqlite::Result<Vec<TaskRow>> {
    let mut stmt = db.prepare_cached(
        "SELECT key, kind, what, status, started_ms, ended_ms, error, inputs, worker, plugin FROM tasks WHERE workflow = ?1 ORDER BY ended_ms, rowid",
    )?;
    let rows = stmt.query_map(params![id as i64], |r| {
        Ok(TaskRow {
            key: r.get(0)?,
            kind: r.get(1)?,
            what: r.get(2)?,
            status: r.get(3)?,
            started_ms: r.get(4)?,
            ended_ms: r.get(5)?,
            error: r.get(6)?,
            inputs: r.get::<_, Option<String>>(7)?.map(|t| t.lines().map(str::to_owned).collect()).unwrap_or_default(),
            worker: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
            plugin: r.get(9)?,
        })
    })?;
    rows.collect()
}

fn replay(db: &Connection, id: u64) -> rusqlite::Result<HashMap<String, Vec<u8>>> {
    let mut stmt = db.prepare_cached(
        "SELECT key, result FROM tasks WHERE workflow = ?1 AND replayable = 1 AND result IS NOT NULL
         AND status IN ('succeeded', 'replayed', 'cached')",
    )?;
    let rows = stmt.query_map(params![id as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    rows.collect()
}

fn interrupted(db: &Connection) -> rusqlite::Result<Vec<u64>> {
    let mut stmt = db.prepare_cached(
        "SELECT id FROM workflows WHERE state = 'interrupted' AND resumed_by IS NULL AND submit IS NOT NULL ORDER BY id DESC LIMIT 1000",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0).map(|i| i as u64))?;
    rows.collect()
}

fn show(db: &Connection, id: u64) -> rusqlite::Result<Option<Record>> {
    let record = db
        .query_row(
            "SELECT id, name, source, plugins, cwd, state, exit_code, error, submitted_ms, started_ms, finished_ms, variables, exception
             FROM workflows WHERE id = ?1",
            params![id as i64],
            |r| {
                let plugins: String = r.get(3)?;
                Ok(Record {
                    id: r.get::<_, i64>(0)? as u64,
                    name: r.get(1)?,
                    source: r.get(2)?,
                    plugins: plugins.lines().map(str::to_owned).collect(),
                    cwd: r.get(4)?,
                    state: r.get(5)?,
                    exit_code: r.get(6)?,
                    error: r.get(7)?,
                    submitted_ms: r.get(8)?,
                    started_ms: r.get(9)?,
                    finished_ms: r.get(10)?,
                    output: String::new(),
                    variables: r.get::<_, Option<Vec<u8>>>(11)?.map(serde_bytes::ByteBuf::from),
                    exception: r.get::<_, Option<Vec<u8>>>(12)?.map(serde_bytes::ByteBuf::from),
                })
            },
        )
        .optional()?;
    let Some(mut record) = record else { return Ok(None) };
    let mut stmt = db.prepare_cached("SELECT text FROM output WHERE workflow = ?1 ORDER BY seq")?;
    for line in stmt.query_map(params![id as i64], |r| r.get::<_, String>(0))? {
        record.output.push_str(&line?);
        record.output.push('\n');
    }
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_running_ones_become_interrupted() {
        let dir = std::env::temp_dir().join(format!("oxiida-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let new = |name: &str| New {
            name: name.into(),
            source: "print 1;".into(),
            plugins: vec!["/p.so=x".into()],
            cwd: None,
            submit: None,
            resumed_from: None,
        };
        let store = open(&path).unwrap();
        let done = rt.block_on(store.insert(new("done.ox"))).unwrap();
        let left = rt.block_on(store.insert(new("left.ox"))).unwrap();
        store.started(done);
        store.output(done, 0, "1".into());
        store.finished(done, Finish { state: "succeeded", exit_code: Some(0), error: None });
        store.started(left);
        store.close();

        let store = open(&path).unwrap();
        let page = Page { limit: 10, since_ms: None, state: None, before: None };
        let (mut all, more) = rt.block_on(store.list(page)).unwrap();
        all.reverse();
        assert!(!more);
        let states: Vec<(&str, &str)> = all.iter().map(|s| (s.name.as_str(), s.state.as_str())).collect();
        assert_eq!(states, [("done.ox", "succeeded"), ("left.ox", "interrupted")]);
        let record = rt.block_on(store.show(done)).unwrap().unwrap();
        assert_eq!((record.output.as_str(), record.plugins.len()), ("1\n", 1));
        assert!(rt.block_on(store.show(999)).unwrap().is_none());
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_older_database_gets_the_kept_columns_and_keeps_its_records() {
        let dir = std::env::temp_dir().join(format!("oxiida-store-old-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        // The 0.2 schema: no `variables`, no `exception`.
        let old = Connection::open(&path).unwrap();
        old.execute_batch(SCHEMA).unwrap();
        old.execute(
            "INSERT INTO workflows (name, source, plugins, state, exit_code, submitted_ms) VALUES ('old.ox', 'x = 1;', '', 'succeeded', 0, 1)",
            [],
        )
        .unwrap();
        drop(old);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let store = open(&path).unwrap();
        let record = rt.block_on(store.show(1)).unwrap().unwrap();
        assert_eq!((record.name.as_str(), record.variables, record.exception), ("old.ox", None, None));
        let new = New { name: "new.ox".into(), source: "x = 1;".into(), plugins: vec![], cwd: None, submit: None, resumed_from: None };
        let id = rt.block_on(store.insert(new)).unwrap();
        store.keep(id, KEPT_VARIABLES, vec![1, 2]);
        store.keep(id, KEPT_EXCEPTION, vec![3]);
        rt.block_on(store.finished_committed(id, Finish { state: "failed", exit_code: Some(1), error: None })).unwrap();
        store.close();
        // Opened again, nothing is added twice, and what was kept is there.
        let store = open(&path).unwrap();
        let record = rt.block_on(store.show(id)).unwrap().unwrap();
        assert_eq!((record.variables.unwrap().into_vec(), record.exception.unwrap().into_vec()), (vec![1, 2], vec![3]));
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ids_go_on_after_the_highest_given_even_in_a_new_database() {
        let dir = std::env::temp_dir().join(format!("oxiida-store-ids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (path, mark) = (dir.join("db.sqlite3"), dir.join("last-id"));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let new = || New { name: "a.ox".into(), source: "print 1;".into(), plugins: vec![], cwd: None, submit: None, resumed_from: None };
        let store = open_with(&path, Some(&mark)).unwrap();
        let ids: Vec<u64> = (0..3).map(|_| rt.block_on(store.insert(new())).unwrap()).collect();
        assert_eq!(std::fs::read_to_string(&mark).unwrap().trim(), "3", "written before the ids were told");
        store.close();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let store = open_with(&path, Some(&mark)).unwrap();
        assert_eq!(rt.block_on(store.insert(new())).unwrap(), ids[2] + 1);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_database_deleted_under_the_store_refuses_new_workflows_and_is_saved() {
        let dir = std::env::temp_dir().join(format!("oxiida-store-gone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let new = || New { name: "a.ox".into(), source: "print 1;".into(), plugins: vec![], cwd: None, submit: None, resumed_from: None };
        let store = open(&path).unwrap();
        let id = rt.block_on(store.insert(new())).unwrap();
        std::fs::remove_file(&path).unwrap();
        let e = rt.block_on(store.insert(new())).unwrap_err();
        assert!(matches!(e, StoreError::Gone { .. }), "{e}");
        assert!(e.to_string().contains("oxiida daemon restart"), "{e}");
        // What was recorded is still readable, and saved when the store closes.
        assert!(rt.block_on(store.show(id)).unwrap().is_some());
        store.close();
        let saved = std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("workflows-saved-"));
        assert_eq!(saved.count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_older_database_gets_its_indexes_when_opened() {
        let dir = std::env::temp_dir().join(format!("oxiida-store-upgrade-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        let before_indexes = SCHEMA.split("-- For `list`").next().unwrap();
        Connection::open(&path).unwrap().execute_batch(before_indexes).unwrap();
        let indexes = |db: &Connection| -> Vec<String> {
            let mut stmt =
                db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'workflows_by_%' ORDER BY name").unwrap();
            stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        };
        assert!(indexes(&Connection::open(&path).unwrap()).is_empty());
        open(&path).unwrap().close();
        assert_eq!(indexes(&Connection::open(&path).unwrap()), ["workflows_by_state", "workflows_by_submitted"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_page_is_read_through_indexes_however_it_is_filtered() {
        let dir = std::env::temp_dir().join(format!("oxiida-store-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        fill(&path, 1000, 1_000_000).unwrap();
        let db = Connection::open(&path).unwrap();
        let pages = [
            Page { limit: 10, since_ms: None, state: None, before: None },
            Page { limit: 10, since_ms: Some(now_ms() - 500_000), state: None, before: Some(900) },
            Page { limit: 10, since_ms: None, state: Some("failed".into()), before: Some(500) },
            Page { limit: 10, since_ms: Some(0), state: Some("killed".into()), before: None },
        ];
        for page in &pages {
            let (rows, more) = list(&db, page).unwrap();
            assert!(rows.len() == 10 && more, "a full page, and more");
            assert!(rows.windows(2).all(|w| w[0].id > w[1].id), "newest first");
            assert!(rows.iter().all(|r| page.state.as_deref().is_none_or(|s| r.state == s) && r.id < page.before.unwrap_or(u64::MAX)));
        }
        // No step of any plan walks the whole table or sorts it.
        let sql = |state: bool| {
            format!(
                "EXPLAIN QUERY PLAN SELECT id FROM workflows WHERE id >= 1 AND id < 900 AND +submitted_ms >= 0 {} ORDER BY id DESC LIMIT 11",
                if state { "AND state = 'failed'" } else { "" }
            )
        };
        for query in [
            sql(false),
            sql(true),
            "EXPLAIN QUERY PLAN SELECT id FROM workflows WHERE submitted_ms >= 5 ORDER BY submitted_ms, id LIMIT 1".into(),
        ] {
            let plan: Vec<String> =
                db.prepare(&query).unwrap().query_map([], |r| r.get::<_, String>(3)).unwrap().map(Result::unwrap).collect();
            let plan = plan.join("; ");
            assert!(plan.contains("SEARCH") && !plan.contains("TEMP B-TREE"), "{query}: {plan}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
