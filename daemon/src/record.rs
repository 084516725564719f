//! Task records: what the runner (or `oxiida run --record`) tells the store
//! about each task, and the [`Recorder`], the language's
//! [`TaskObserver`] that makes them, replays a resumed workflow's recorded
//! results, and reuses cached ones (docs/durable.md).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use oxiida::codec;
use oxiida::foreign::{CallMode, ForeignName};
use oxiida::observe::{Outcome, Supplied, Task, TaskWhat};
use oxiida::value::Value;
use oxiida::TaskObserver;
use oxiida_abi::Value as Wire;
use oxiida_protocol::ByteBuf;

/// One task as recorded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TaskRecord {
    /// [`Task::key`]: stable within its workflow.
    pub key: String,
    /// `shell`, `shellpipe`, `call` or `call=f=` (process mode).
    pub kind: String,
    /// The function's dotted name, or the argv (shell-quoted words).
    pub what: String,
    /// The arguments: one MessagePack array (a call's keywords as a map
    /// at its end; a shell task's argv, then its stdin).
    pub args: ByteBuf,
    /// The result, MessagePack, when it succeeded or was supplied. Handles
    /// are recorded as `{"$handle": type, "owner": ..., "identity": n}`
    /// (`n` tells handles apart within one run).
    pub result: Option<ByteBuf>,
    /// False when the result holds a handle: a recorded handle is not the
    /// object, so such a task is never replayed nor taken from the cache.
    pub replayable: bool,
    /// `succeeded`, `failed`, `replayed` or `cached`.
    pub status: String,
    /// The error with its traceback (the rendered diagnostic's notes).
    pub error: Option<String>,
    /// The cache identity (hex SHA-256), for the tasks that have one.
    pub identity: Option<String>,
    pub started_ms: i64,
    pub ended_ms: i64,
    /// Who ran it: `pid N` of a shell task's own process, else of the
    /// process that ran the workflow (the runner, or `oxiida run`).
    pub worker: String,
    /// For a call: the plugin that served it (`name version, sha256 <first
    /// 12 hex digits of its file>`) when the host can say, else the
    /// workflow's plugins, `name (file hash)`.
    pub plugin: Option<String>,
    /// The keys of the tasks whose outputs flowed into the arguments
    /// ([`Task::inputs`]): the provenance graph's edges.
    #[serde(default)]
    pub inputs: Vec<String>,
}

/// The most bytes of arguments, or of a result, a record keeps: a record
/// travels as one frame from the runner. Larger ones are left out (the
/// record says `{"$cut": bytes}`), and such a result is not replayable.
pub const KEPT: usize = 4 << 20;
/// The most bytes of an error a record keeps.
const KEPT_ERROR: usize = 64 << 10;

/// `bytes`, or a note of their size when over [`KEPT`].
fn kept(bytes: Vec<u8>) -> (Vec<u8>, bool) {
    if bytes.len() <= KEPT {
        return (bytes, true);
    }
    (encode(&Wire::Map(vec![("$cut".into(), Wire::Int(bytes.len() as i64))])), false)
}

/// Where the recorder sends records, and asks for cached results.
pub trait RecordSink: Send + Sync {
    fn record(&self, record: TaskRecord);
    /// The newest successful, replayable result of a task with this
    /// identity in any workflow, MessagePack.
    fn lookup(&self, identity: String) -> BoxFuture<'static, Option<Vec<u8>>>;
}

/// The [`TaskObserver`] of a recorded workflow.
pub struct Recorder {
    sink: Arc<dyn RecordSink>,
    /// Results by key, of the run being resumed.
    replay: HashMap<String, Vec<u8>>,
    /// Reuse cached results (`--cache`).
    cache: bool,
    plugins: Option<String>,
    worker: String,
    /// The digest of the cwd and environment shell tasks see, made at the
    /// first shell task: they are the workflow's, fixed for its run.
    surroundings: std::sync::OnceLock<[u8; 32]>,
    /// The identity hash of every call, fed the code fingerprint already.
    calls: Sha256,
    /// Where per-function fingerprints come from, when the host has them.
    fingerprints: Option<Fingerprints>,
    /// The SHA-256 of each plugin library file, read once.
    libraries: parking_lot::Mutex<HashMap<std::path::PathBuf, String>>,
    /// Which plugin serves a call, when the host can say.
    providers: Option<Providers>,
}

/// Which plugin serves a function: its name, version and file
/// ([`oxiida_host::PluginHost::provider`]).
pub type Providers = Arc<dyn Fn(&ForeignName) -> Option<(String, String, std::path::PathBuf)> + Send + Sync>;

/// What a plugin says identifies one function's code: its plugin's name
/// and library file, and the plugin's fingerprint of the function; `None`
/// when it has none (a C plugin), and the workflow's [`fingerprint`]
/// identifies the call instead. [`oxiida_host::PluginHost::fingerprint`].
pub type Fingerprints = Arc<dyn Fn(&ForeignName) -> Option<(String, std::path::PathBuf, Arc<[u8]>)> + Send + Sync>;

impl Recorder {
    /// `code` is the workflow's [`fingerprint`]; `plugins` how records name them.
    pub fn new(sink: Arc<dyn RecordSink>, replay: HashMap<String, Vec<u8>>, cache: bool, code: String, plugins: Option<String>) -> Self {
        let mut calls = Sha256::new();
        for part in [&b"call"[..], code.as_bytes()] {
            calls.update((part.len() as u64).to_le_bytes());
            calls.update(part);
        }
        Recorder {
            sink,
            replay,
            cache,
            plugins,
            worker: format!("pid {}", std::process::id()),
            surroundings: Default::default(),
            calls,
            fingerprints: None,
            libraries: Default::default(),
            providers: None,
        }
    }

    /// The same recorder, naming in each call's record the plugin that
    /// served it, with its version and its file's SHA-256.
    pub fn with_providers(mut self, providers: Providers) -> Self {
        self.providers = Some(providers);
        self
    }

    fn library_hash(&self, library: &std::path::Path) -> String {
        self.libraries
            .lock()
            .entry(library.to_owned())
            .or_insert_with(|| std::fs::read(library).map(|b| hex(&Sha256::digest(&b))).unwrap_or_default())
            .clone()
    }

    /// The plugin a call's record names: the one that served it when the
    /// host says (`name version, sha256 <first 12 hex digits of its file>`,
    /// without the hash for a process plugin), else the workflow's plugins.
    fn plugin_of(&self, what: &TaskWhat<'_>) -> Option<String> {
        let TaskWhat::Call { function, .. } = what else { return None };
        if let Some((name, version, file)) = self.providers.as_ref().and_then(|p| p(function)) {
            let hash = self.library_hash(&file);
            // A process plugin has no library file to hash.
            if hash.is_empty() {
                return Some(format!("{name} {version}"));
            }
            return Some(format!("{name} {version}, sha256 {}", &hash[..hash.len().min(12)]));
        }
        self.plugins.clone()
    }

    /// The same recorder, identifying each call by its function's own
    /// fingerprint where `fingerprints` gives one (docs/durable.md).
    pub fn with_fingerprints(mut self, fingerprints: Fingerprints) -> Self {
        self.fingerprints = Some(fingerprints);
        self
    }

    /// The identity hash of a call to `function`, up to its arguments: from
    /// the function's fingerprint when its plugin gives one, else from the
    /// workflow's code fingerprint (hashed in `new`).
    fn call_identity(&self, function: &ForeignName) -> Sha256 {
        let Some((plugin, library, print)) = self.fingerprints.as_ref().and_then(|f| f(function)) else {
            return self.calls.clone();
        };
        let library = self.library_hash(&library);
        let mut h = Sha256::new();
        for part in [&b"function"[..], plugin.as_bytes(), library.as_bytes(), &print] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h
    }

    /// How many results a resume can take from the records.
    pub fn replayable(&self) -> usize {
        self.replay.len()
    }

    fn identity(&self, task: &Task<'_>, args: &[u8]) -> String {
        fn part(h: &mut Sha256, bytes: &[u8]) {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        let mut h = match &task.what {
            TaskWhat::Call { function, mode, .. } => {
                let mut h = self.call_identity(function);
                part(&mut h, function.dotted().as_bytes());
                part(&mut h, if *mode == CallMode::Process { b"=f=" } else { b"plain" });
                h
            }
            TaskWhat::Shell { .. } | TaskWhat::Pipe { .. } => {
                let mut h = Sha256::new();
                part(&mut h, b"shell");
                part(&mut h, self.surroundings.get_or_init(|| surroundings(task.context)));
                h
            }
        };
        part(&mut h, args);
        hex(&h.finalize())
    }
}

/// The digest of the cwd and environment a shell task sees: the
/// workflow's own when it has them, else the process's.
fn surroundings(context: &oxiida::Context) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let cwd = context.cwd.clone().or_else(|| std::env::current_dir().ok()).unwrap_or_default();
    part(cwd.as_os_str().as_encoded_bytes());
    let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> = context.env.clone().unwrap_or_else(|| std::env::vars_os().collect());
    env.sort();
    for (name, value) in env {
        // The daemon's marker differs per workflow and says nothing of the task.
        if name == crate::reap::MARKER {
            continue;
        }
        part(name.as_encoded_bytes());
        part(value.as_encoded_bytes());
    }
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(DIGITS[usize::from(b >> 4)] as char);
        text.push(DIGITS[usize::from(b & 15)] as char);
    }
    text
}

/// A value as recorded: handles by type and identity, not content.
pub fn to_record(v: &Value) -> Wire {
    match v {
        Value::Handle(h) => Wire::Map(vec![
            ("$handle".into(), Wire::Str(h.type_name().to_owned())),
            ("owner".into(), Wire::Str(h.owner().to_owned())),
            // The handle's own address: the same object within the run.
            ("identity".into(), Wire::Int(Arc::as_ptr(h) as usize as i64)),
        ]),
        Value::Array(items) => Wire::Array(items.iter().map(to_record).collect()),
        Value::Map(m) => Wire::Map(m.iter().map(|(k, v)| (k.to_string(), to_record(v))).collect()),
        other => codec::to_wire(other),
    }
}

fn encode(w: &Wire) -> Vec<u8> {
    let mut bytes = Vec::new();
    w.encode(&mut bytes);
    bytes
}

/// A recorded result back as a value.
pub fn decode(bytes: &[u8]) -> Option<Value> {
    Wire::decode(bytes).ok().map(codec::from_wire)
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The words of a shell task as one line, each quoted when it needs it.
fn words(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `(kind, what, args)` of a task.
fn describe(task: &Task<'_>) -> (&'static str, String, Vec<u8>) {
    match &task.what {
        TaskWhat::Shell { argv, stdin } => {
            let mut args: Vec<Wire> = argv.iter().map(|w| Wire::Str(w.clone())).collect();
            args.push(stdin.as_ref().map_or(Wire::Nil, |s| Wire::Str(s.clone())));
            ("shell", words(argv), encode(&Wire::Array(args)))
        }
        TaskWhat::Pipe { units } => {
            let args = units.iter().map(|u| Wire::Array(u.iter().map(|w| Wire::Str(w.clone())).collect())).collect();
            let what = units.iter().map(|u| words(u)).collect::<Vec<_>>().join(" | ");
            ("shellpipe", what, encode(&Wire::Array(args)))
        }
        TaskWhat::Call { function, args, keywords, mode } => {
            let mut all: Vec<Wire> = args.iter().map(to_record).collect();
            if !keywords.is_empty() {
                all.push(Wire::Map(keywords.iter().map(|(k, v)| (k.to_string(), to_record(v))).collect()));
            }
            let kind = if *mode == CallMode::Process { "call=f=" } else { "call" };
            (kind, function.dotted(), encode(&Wire::Array(all)))
        }
    }
}

impl TaskObserver for Recorder {
    fn before<'a>(&'a self, task: &'a Task<'a>) -> BoxFuture<'a, Option<Supplied>> {
        if let Some(bytes) = self.replay.get(&task.key) {
            let replayed = decode(bytes).map(Supplied::Replayed);
            return Box::pin(std::future::ready(replayed));
        }
        if !self.cache {
            return Box::pin(std::future::ready(None));
        }
        let (_, _, args) = describe(task);
        let lookup = self.sink.lookup(self.identity(task, &args));
        Box::pin(async move { lookup.await.and_then(|bytes| decode(&bytes)).map(Supplied::Cached) })
    }

    fn after(&self, task: &Task<'_>, started: SystemTime, ended: SystemTime, outcome: Outcome<'_>) {
        let (kind, what, args) = describe(task);
        let identity = Some(self.identity(task, &args));
        let (args, _) = kept(args);
        let (status, result, error, replayable) = match outcome {
            Outcome::Succeeded(v) => ("succeeded", Some(v), None, codec::find_handle(v).is_none()),
            Outcome::Supplied(Supplied::Replayed(v)) => ("replayed", Some(v), None, true),
            Outcome::Supplied(Supplied::Cached(v)) => ("cached", Some(v), None, true),
            Outcome::Failed(d) => {
                let mut text = d.message.clone();
                for note in &d.notes {
                    text.push('\n');
                    text.push_str(note);
                }
                if text.len() > KEPT_ERROR {
                    let mut end = KEPT_ERROR;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.truncate(end);
                    text.push_str(" [cut]");
                }
                ("failed", None, Some(text), false)
            }
        };
        let (result, whole) = match result.map(|v| kept(encode(&to_record(v)))) {
            Some((bytes, whole)) => (Some(ByteBuf::from(bytes)), whole),
            None => (None, true),
        };
        let replayable = replayable && whole;
        self.sink.record(TaskRecord {
            key: task.key.clone(),
            kind: kind.into(),
            what,
            args: ByteBuf::from(args),
            result,
            replayable,
            status: status.into(),
            error,
            identity,
            started_ms: ms(started),
            ended_ms: ms(ended),
            worker: task.ran_by.get().cloned().unwrap_or_else(|| self.worker.clone()),
            plugin: self.plugin_of(&task.what),
            inputs: task.inputs.iter().map(|k| k.to_string()).collect(),
        });
    }
}

/// What identifies the code behind a workflow's foreign calls to functions
/// whose plugin gives no fingerprint of its own (docs/durable.md): each plugin's
/// name, the SHA-256 of its library file, its config, and the SHA-256 of
/// the file the config names when it names one (a Python or Lua script),
/// plus per-workflow data sent to it (a Python client's pickled
/// functions). Any change to any of them changes every call's identity.
/// Returns the fingerprint and the plugins as records name them.
pub fn fingerprint(plugins: &[(String, std::path::PathBuf, String)], extra: &[(String, Vec<u8>)]) -> (String, String) {
    let mut h = Sha256::new();
    let mut named = Vec::new();
    let file_hash = |path: &std::path::Path| std::fs::read(path).ok().map(|b| hex(&Sha256::digest(&b)));
    for (name, path, config) in plugins {
        let lib = file_hash(path).unwrap_or_default();
        h.update(name.as_bytes());
        h.update([0]);
        h.update(lib.as_bytes());
        h.update([0]);
        h.update(config.as_bytes());
        h.update([0]);
        let script = config.split(['=', ',', ';']).find_map(|part| {
            let p = std::path::Path::new(part.trim());
            p.is_file().then(|| file_hash(p)).flatten()
        });
        h.update(script.unwrap_or_default().as_bytes());
        h.update([0]);
        named.push(format!("{name} ({})", &lib[..lib.len().min(12)]));
    }
    for (name, data) in extra {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(Sha256::digest(data));
    }
    (hex(&h.finalize()), named.join(", "))
}
