//! One workflow's foreign environment over plugins: the [`Host`] the runtime
//! calls. It owns one session per loaded plugin (freed when the workflow's
//! host and its last running call are gone); each call runs on a blocking
//! thread of its own and its reply comes back through that task's handle.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use oxiida_abi as abi;
use parking_lot::Mutex;

use crate::loader::{Kind, LoadedPlugin};
use crate::plugin::{CallFailure, PluginSession};
use crate::process;
use crate::{codec, outbound};
use oxiida::foreign::{CallFuture, CallMode, ForeignError, ForeignErrorKind, ForeignName, Host, Keywords, RanBy};
use oxiida::value::{Handle, Map, Value};

/// Why a workflow's sessions could not be opened; each names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The same plugin (by name) was given twice: a workflow has one session
    /// per plugin, so which one `require f from NAME;` meant is unclear.
    #[error("plugin `{name}` is given twice ({first} and {second}); give each plugin once")]
    Duplicate { name: String, first: String, second: String },
    #[error("plugin `{name}` could not start a session: {reason}")]
    Start { name: String, reason: String },
}

/// For callers whose errors are text.
impl From<SessionError> for String {
    fn from(e: SessionError) -> String {
        e.to_string()
    }
}

/// A plugin session: one workflow's state inside one plugin.
struct Session {
    plugin: Arc<LoadedPlugin>,
    /// The library's name, or the one a process plugin says in its hello.
    name: String,
    raw: Backend,
    /// The references to the plugin's handles the workflow still holds, by
    /// id: each is given back (`handle_release`) when its last copy is
    /// dropped, and the rest when the session ends, before `session_free`.
    live: Mutex<HashMap<u64, usize>>,
    /// The plugin's fingerprints, by dotted name, asked once each.
    fingerprints: Mutex<HashMap<String, Option<Arc<[u8]>>>>,
}

/// A session in a library (calls through the C ABI) or in a process (calls
/// over its pipes, `process.rs`).
enum Backend {
    Library(PluginSession),
    Process(process::Session),
}

impl Backend {
    fn release(&self, id: u64) {
        match self {
            Backend::Library(raw) => raw.release(id),
            Backend::Process(raw) => raw.release(id),
        }
    }

    /// Asks a library to stop its running calls; a process plugin's calls
    /// are sent `cancel` one by one when dropped.
    fn cancel(&self) {
        if let Backend::Library(raw) = self {
            raw.cancel();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // No handle value can reach this session any more (they hold it
        // weakly): give back what the workflow still held. `raw` is dropped
        // next, which frees the session.
        for (id, count) in std::mem::take(&mut *self.live.lock()) {
            for _ in 0..count {
                self.raw.release(id);
            }
        }
    }
}

/// What a [`Handle`] of a plugin holds: one reference to the plugin's
/// object `id`, given back when the workflow drops the handle's last copy.
struct PluginHandle {
    session: Weak<Session>,
    id: u64,
}

impl Drop for PluginHandle {
    fn drop(&mut self) {
        if let Some(session) = self.session.upgrade() {
            session.release(self.id);
        }
    }
}

impl Session {
    /// Gives back one reference to `id`, if the workflow held one.
    fn release(&self, id: u64) {
        let held = {
            let mut live = self.live.lock();
            match live.get_mut(&id) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    true
                }
                Some(_) => {
                    live.remove(&id);
                    true
                }
                None => false,
            }
        };
        if held {
            self.raw.release(id);
        }
    }

    /// A reply's value as the workflow's, its handles this plugin's.
    fn from_wire(self: &Arc<Self>, w: abi::Value) -> Value {
        match w {
            abi::Value::Array(items) => Value::array(items.into_iter().map(|v| self.from_wire(v)).collect()),
            abi::Value::Map(entries) => Value::map(entries.into_iter().map(|(k, v)| (Arc::from(k), self.from_wire(v))).collect::<Map>()),
            abi::Value::Handle { id, type_name } => {
                *self.live.lock().entry(id).or_insert(0) += 1;
                let payload = PluginHandle { session: Arc::downgrade(self), id };
                Value::Handle(Arc::new(Handle::new(&self.name, &type_name, id, Box::new(payload))))
            }
            scalar => codec::from_wire(scalar),
        }
    }

    /// How a handle in the arguments of a call to `dotted` goes: back to
    /// this session if it made it, else refused naming both sides.
    fn send_handle(self: &Arc<Self>, dotted: &str, h: &Handle) -> Result<abi::Value, String> {
        match h.payload::<PluginHandle>() {
            Some(p) if std::ptr::eq(p.session.as_ptr(), Arc::as_ptr(self)) => Ok(abi::Value::handle(p.id, h.type_name())),
            _ => Err(format!(
                "cannot pass <{} {}> to {} function `{dotted}`: a handle can only go back to the plugin that made it ({}); \
                 convert it there to Nil, Bool, Int, Float, String, Array or Map first",
                h.owner(),
                h.type_name(),
                self.name,
                h.owner()
            )),
        }
    }

    /// The call's arguments and keyword arguments, encoded for this session.
    fn encode(self: &Arc<Self>, dotted: &str, args: &[Value], keywords: &[(Arc<str>, Value)]) -> Result<Encoded, ForeignError> {
        let handles = |h: &Handle| self.send_handle(dotted, h);
        Ok((outbound::encode_with(args, &handles)?, outbound::encode_keywords_with(keywords, &handles)?))
    }

    fn resolve(&self, dotted: &str) -> Result<(), String> {
        match &self.raw {
            Backend::Library(raw) => raw.resolve(dotted),
            Backend::Process(raw) => raw.resolve(dotted),
        }
    }

    /// Whether it can run `=f=(x)`: the library's OXIIDA_CAP_PROCESS_MODE,
    /// or the process plugin's `isolated` capability.
    fn isolates(&self) -> bool {
        match &self.raw {
            Backend::Library(_) => self.plugin.has(abi::CAP_PROCESS_MODE),
            Backend::Process(raw) => raw.hello().isolated,
        }
    }

    /// Why it cannot take keyword arguments, or `None` when it can.
    fn keywords_refused(&self) -> Option<String> {
        match &self.raw {
            Backend::Library(_) => keywords_refused(&self.plugin),
            Backend::Process(raw) => (!raw.hello().keywords).then(|| {
                format!(
                    "process plugin `{}` does not take keyword arguments (its hello does not declare the `keywords` capability); \
                     pass the values as positional arguments instead",
                    self.name
                )
            }),
        }
    }

    /// `ran_by`: see [`Host::call_reporting`].
    fn call(
        self: &Arc<Self>,
        name: &str,
        args: &[u8],
        kwargs: Option<&[u8]>,
        mode: CallMode,
        ran_by: Option<&RanBy>,
    ) -> Result<Value, ForeignError> {
        let Backend::Library(raw) = &self.raw else { unreachable!("a library call on a library session") };
        let Kind::Library(table) = &self.plugin.kind else { unreachable!("a library session of a library") };
        let mode = if mode == CallMode::Process { abi::MODE_PROCESS } else { abi::MODE_THREAD };
        let reply = raw.call(name, args, kwargs, mode, ran_by.map(|r| &**r));
        if let (Ok(value), false) = (&reply, table.releases_handles()) {
            let mut ids = Vec::new();
            value.handles(&mut ids);
            if !ids.is_empty() {
                return Err(ForeignError::new(
                    ForeignErrorKind::Internal,
                    format!(
                        "plugin `{}` returned a handle from `{name}` but has no `handle_release` (it was built for oxiida ABI version {}; handles need version {})",
                        self.plugin.name,
                        self.plugin.abi_version,
                        abi::HANDLES_SINCE
                    ),
                ));
            }
        }
        reply.map(|v| self.from_wire(v)).map_err(|failure| match failure {
            CallFailure::BadValue(e) => {
                ForeignError::new(ForeignErrorKind::Internal, format!("plugin `{}` returned a bad value: {e}", self.name))
            }
            CallFailure::Error { status, message, traceback } => {
                let kind = ForeignErrorKind::from_status(status).unwrap_or(ForeignErrorKind::Internal);
                let err = ForeignError::new(kind, message);
                match traceback {
                    Some(tb) => err.with_traceback(tb),
                    None => err,
                }
            }
        })
    }
}

/// Asks a session to stop its running calls when dropped, unless defused.
struct CancelOnDrop(Option<Weak<Session>>);

impl CancelOnDrop {
    fn defuse(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(session) = self.0.take().and_then(|s| s.upgrade()) {
            session.raw.cancel();
        }
    }
}

/// Stops the calls running in a workflow's plugin sessions, from any
/// thread (the CLI's signal thread): see [`PluginHost::canceller`].
#[derive(Clone)]
pub struct Canceller(Vec<Weak<Session>>);

impl Canceller {
    /// Asks every plugin that can (`session_cancel`) to make its running
    /// calls return soon: what Ctrl-C does to a call that is busy in a
    /// plugin, which the workflow cannot drop (an inline call).
    pub fn cancel(&self) {
        for session in self.0.iter().filter_map(Weak::upgrade) {
            session.raw.cancel();
        }
    }
}

/// A call's arguments and keyword arguments, as MessagePack.
type Encoded = (Vec<u8>, Option<Vec<u8>>);

/// The plugins one workflow may call, with a session in each.
pub struct PluginHost {
    sessions: Vec<Arc<Session>>,
    /// Which session serves each required name (filled by `resolve`).
    providers: Mutex<HashMap<ForeignName, usize>>,
}

fn origin(plugin: &LoadedPlugin, config: &str) -> String {
    if config.is_empty() {
        plugin.path.display().to_string()
    } else {
        format!("{}={config}", plugin.path.display())
    }
}

impl PluginHost {
    /// Opens a session in each plugin, passing it its config text. A plugin
    /// given twice (by name) is an error.
    pub fn open(plugins: &[(Arc<LoadedPlugin>, String)]) -> Result<Self, SessionError> {
        for (i, (plugin, config)) in plugins.iter().enumerate() {
            // A process plugin given by its program says its name only once started.
            if plugin.kind_is_exec() {
                continue;
            }
            if let Some((_, first)) = plugins[..i].iter().find(|(p, _)| p.name == plugin.name && !p.kind_is_exec()) {
                return Err(SessionError::Duplicate {
                    name: plugin.name.clone(),
                    first: origin(plugin, first),
                    second: origin(plugin, config),
                });
            }
        }
        let mut sessions: Vec<Arc<Session>> = Vec::new();
        for (plugin, config) in plugins {
            let start = |reason| SessionError::Start { name: plugin.name.clone(), reason };
            let (name, raw) = match &plugin.kind {
                Kind::Library(table) => (plugin.name.clone(), Backend::Library(table.open(config).map_err(start)?)),
                Kind::Process(program) => {
                    let raw = process::Session::start(program, config).map_err(start)?;
                    (raw.name().to_owned(), Backend::Process(raw))
                }
            };
            if let Some(first) = sessions.iter().find(|s| s.name == name) {
                return Err(SessionError::Duplicate {
                    name,
                    first: first.plugin.path.display().to_string(),
                    second: plugin.path.display().to_string(),
                });
            }
            sessions.push(Arc::new(Session {
                plugin: plugin.clone(),
                name,
                raw,
                live: Mutex::new(HashMap::new()),
                fingerprints: Default::default(),
            }));
        }
        Ok(PluginHost { sessions, providers: Mutex::new(HashMap::new()) })
    }

    /// What stops this workflow's running plugin calls from elsewhere; it
    /// keeps no session alive.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.sessions.iter().map(Arc::downgrade).collect())
    }

    /// [`PluginHost::open`], with the error as text.
    pub fn new(plugins: &[(Arc<LoadedPlugin>, String)]) -> Result<Self, String> {
        Ok(Self::open(plugins)?)
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.sessions.iter().map(|s| s.name.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// What identifies the code behind `name` (resolved already), for
    /// `--cache`: its plugin's name and library file, and the plugin's
    /// fingerprint of it, asked once per session and name. `None` when the name was not
    /// resolved or its plugin gives no fingerprint for it (a C plugin):
    /// the caller then falls back to the plugin's files.
    pub fn fingerprint(&self, name: &ForeignName) -> Option<(String, std::path::PathBuf, Arc<[u8]>)> {
        let index = self.providers.lock().get(name).copied()?;
        let session = &self.sessions[index];
        let dotted = name.dotted();
        let known = session.fingerprints.lock().get(&dotted).cloned();
        let found = match known {
            Some(found) => found,
            None => {
                let found: Option<Arc<[u8]>> = match &session.raw {
                    Backend::Library(raw) => raw.fingerprint(&dotted).map(Arc::from),
                    // The process protocol has no fingerprints yet: the plugin's files identify its calls.
                    Backend::Process(_) => None,
                };
                session.fingerprints.lock().insert(dotted, found.clone());
                found
            }
        };
        Some((session.name.clone(), session.plugin.path.clone(), found?))
    }

    /// Which plugin serves `name` (resolved already), as task records name
    /// it: its name, its version and its file. A library plugin's version is
    /// the ABI version it was built for (the record adds its file's hash); a
    /// process plugin's is the version it says in its hello. `None` when
    /// the name was not resolved.
    pub fn provider(&self, name: &ForeignName) -> Option<(String, String, std::path::PathBuf)> {
        let index = self.providers.lock().get(name).copied()?;
        let session = &self.sessions[index];
        let version = match &session.raw {
            Backend::Library(_) => format!("abi {}", session.plugin.abi_version),
            Backend::Process(p) if p.hello().version.is_empty() => "process".to_owned(),
            Backend::Process(p) => format!("{} (process)", p.hello().version),
        };
        Some((session.name.clone(), version, session.plugin.path.clone()))
    }

    fn ask(&self, index: usize, dotted: &str) -> Result<(), String> {
        let s = &self.sessions[index];
        s.resolve(dotted).map_err(|reason| if reason.is_empty() { format!("plugin `{}` does not provide it", s.name) } else { reason })
    }
}

impl Host for PluginHost {
    fn resolve(&self, name: &ForeignName) -> Result<(), String> {
        let dotted = name.dotted();
        let index = if let Some(from) = &name.from {
            let index = self
                .sessions
                .iter()
                .position(|s| &s.name == from)
                .ok_or_else(|| format!("no plugin named `{from}` is loaded (loaded: {})", self.names()))?;
            self.ask(index, &dotted)?;
            index
        } else {
            if self.sessions.is_empty() {
                return Err("no language plugin is loaded (use `--plugin`)".into());
            }
            let mut providers = Vec::new();
            let mut reasons = Vec::new();
            for i in 0..self.sessions.len() {
                match self.ask(i, &dotted) {
                    Ok(()) => providers.push(i),
                    Err(why) => reasons.push(why),
                }
            }
            match providers[..] {
                [only] => only,
                [] => return Err(reasons.join("; ")),
                _ => {
                    let names: Vec<String> = providers.iter().map(|&i| format!("`{}`", self.sessions[i].name)).collect();
                    return Err(format!("several plugins provide it ({}); pick one with `require {dotted} from NAME;`", names.join(", ")));
                }
            }
        };
        self.providers.lock().insert(name.clone(), index);
        Ok(())
    }

    /// A plugin of ABI version 3 or newer that declares `CAP_KEYWORDS`
    /// takes keyword arguments; any other is refused, by name. A name that
    /// `resolve` refused has its error already, and never runs: no second one.
    fn keywords(&self, name: &ForeignName) -> Result<(), String> {
        let index = self.providers.lock().get(name).copied();
        match index {
            Some(index) => self.sessions[index].keywords_refused().map_or(Ok(()), Err),
            None => Ok(()),
        }
    }

    fn call(&self, name: &ForeignName, args: Vec<Value>, keywords: Keywords, mode: CallMode) -> CallFuture {
        self.call_with(name, args, keywords, mode, None)
    }

    /// A plugin of ABI version 5 says who ran each call in its reply.
    fn call_reporting(&self, name: &ForeignName, args: Vec<Value>, keywords: Keywords, mode: CallMode, ran_by: RanBy) -> CallFuture {
        self.call_with(name, args, keywords, mode, Some(ran_by))
    }

    fn call_here(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(Arc<str>, Value)],
        mode: CallMode,
    ) -> Option<Result<Value, ForeignError>> {
        self.call_here_with(name, args, keywords, mode, None)
    }

    fn call_here_reporting(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(Arc<str>, Value)],
        mode: CallMode,
        ran_by: &RanBy,
    ) -> Option<Result<Value, ForeignError>> {
        self.call_here_with(name, args, keywords, mode, Some(ran_by))
    }
}

impl PluginHost {
    fn call_with(&self, name: &ForeignName, args: Vec<Value>, keywords: Keywords, mode: CallMode, ran_by: Option<RanBy>) -> CallFuture {
        let dotted = name.dotted();
        let ready = self.session_for(name, mode, &keywords).and_then(|session| {
            let encoded = session.encode(&dotted, &args, &keywords)?;
            Ok((session, encoded))
        });
        if let Ok((session, (bytes, kwargs))) = &ready {
            if let Backend::Process(raw) = &session.raw {
                // Every call of a process plugin runs in its one process
                // (an isolated call in a thread or worker of that process).
                if let Some(ran_by) = &ran_by {
                    let _ = ran_by.set(format!("pid {}", raw.pid()));
                }
                let reply = raw.call(&dotted, bytes.clone(), kwargs.clone(), mode);
                let session = session.clone();
                return Box::pin(async move { reply.await.map(|v| session.from_wire(v)) });
            }
        }
        Box::pin(async move {
            let (session, (bytes, kwargs)) = ready?;
            // Dropped before the call returns: the workflow stops (a failed
            // sibling in `para`, Ctrl-C), so the plugin is asked to stop it.
            let unfinished = CancelOnDrop(Some(Arc::downgrade(&session)));
            let result = tokio::task::spawn_blocking(move || session.call(&dotted, &bytes, kwargs.as_deref(), mode, ran_by.as_ref()))
                .await
                .unwrap_or_else(|e| Err(ForeignError::new(ForeignErrorKind::Internal, format!("the call's thread failed: {e}"))));
            unfinished.defuse();
            result
        })
    }

    fn call_here_with(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(Arc<str>, Value)],
        mode: CallMode,
        ran_by: Option<&RanBy>,
    ) -> Option<Result<Value, ForeignError>> {
        let session = match self.session_for(name, mode, keywords) {
            Ok(session) => session,
            Err(e) => return Some(Err(e)),
        };
        // A process plugin's call waits on its pipe: the async path.
        if matches!(session.raw, Backend::Process(_)) {
            return None;
        }
        Some(Ok(session).and_then(|session| {
            let dotted = name.dotted();
            let (bytes, kwargs) = session.encode(&dotted, args, keywords)?;
            session.call(&dotted, &bytes, kwargs.as_deref(), mode, ran_by)
        }))
    }

    fn session_for(&self, name: &ForeignName, mode: CallMode, keywords: &[(Arc<str>, Value)]) -> Result<Arc<Session>, ForeignError> {
        let index = self.providers.lock().get(name).copied();
        let session = index
            .map(|i| self.sessions[i].clone())
            .ok_or_else(|| ForeignError::new(ForeignErrorKind::NotFound, format!("`{name}` was never resolved")))?;
        if mode == CallMode::Process && !session.isolates() {
            return Err(ForeignError::new(
                ForeignErrorKind::BadArguments,
                format!("plugin `{}` cannot run calls in a worker process; call it as `f(...)`, not `=f=(...)`", session.name),
            ));
        }
        // The resolver asked `keywords` first; this only keeps a host that
        // skipped it from sending keyword arguments where none are read.
        if !keywords.is_empty() {
            if let Some(why) = session.keywords_refused() {
                return Err(ForeignError::new(ForeignErrorKind::BadArguments, why));
            }
        }
        Ok(session)
    }
}

/// Why `plugin` cannot take keyword arguments, or `None` when it can: it
/// must be built for ABI version 3 or newer and declare `CAP_KEYWORDS`.
fn keywords_refused(plugin: &LoadedPlugin) -> Option<String> {
    let name = &plugin.name;
    if plugin.abi_version < abi::KEYWORDS_SINCE {
        return Some(format!(
            "plugin `{name}` was built for oxiida ABI version {}, which has no keyword arguments (they came in version {}); \
             pass the values as positional arguments, or rebuild the plugin against a newer oxiida.h and declare OXIIDA_CAP_KEYWORDS",
            plugin.abi_version,
            abi::KEYWORDS_SINCE
        ));
    }
    if !plugin.has(abi::CAP_KEYWORDS) {
        return Some(format!(
            "plugin `{name}` does not take keyword arguments (it does not declare OXIIDA_CAP_KEYWORDS); \
             pass the values as positional arguments instead"
        ));
    }
    None
}
