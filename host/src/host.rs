//! One workflow's foreign environment over plugins: the [`Host`] the runtime
//! calls. It owns one session per loaded plugin (freed when the workflow's
//! host and its last running call are gone); each call runs on a blocking
//! thread of its own and its reply comes back through that task's handle.

use std::collections::HashMap;
use std::sync::Arc;

use oxiida_abi as abi;
use parking_lot::Mutex;

use crate::loader::{Kind, LoadedPlugin};
use crate::plugin::{CallFailure, PluginSession};
use crate::process;
use crate::{codec, outbound};
use oxiida::foreign::{CallFuture, CallMode, ForeignError, ForeignErrorKind, ForeignName, Host, Keywords};
use oxiida::value::Value;

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
}

/// A session in a library (calls through the C ABI) or in a process (calls
/// over its pipes, `process.rs`).
enum Backend {
    Library(PluginSession),
    Process(process::Session),
}

impl Session {
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

    fn call_library(&self, name: &str, args: &[u8], kwargs: Option<&[u8]>, mode: CallMode) -> Result<Value, ForeignError> {
        let Backend::Library(raw) = &self.raw else { unreachable!("a library call on a library session") };
        let mode = if mode == CallMode::Process { abi::MODE_PROCESS } else { abi::MODE_THREAD };
        raw.call(name, args, kwargs, mode).map(codec::from_wire).map_err(|failure| match failure {
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
            if plugin.is_process() && plugin.kind_is_exec() {
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
            sessions.push(Arc::new(Session { plugin: plugin.clone(), name, raw }));
        }
        Ok(PluginHost { sessions, providers: Mutex::new(HashMap::new()) })
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
        let ready = self
            .session_for(name, mode, &keywords)
            .and_then(|session| Ok((session, outbound::encode(&args)?, outbound::encode_keywords(&keywords)?)));
        let dotted = name.dotted();
        let ready = match ready {
            Ok((session, bytes, kwargs)) => match &session.raw {
                Backend::Process(raw) => {
                    let reply = raw.call(&dotted, bytes, kwargs, mode);
                    return Box::pin(async move { reply.await.map(codec::from_wire) });
                }
                Backend::Library(_) => Ok((session, bytes, kwargs)),
            },
            Err(e) => Err(e),
        };
        Box::pin(async move {
            let (session, bytes, kwargs) = ready?;
            tokio::task::spawn_blocking(move || session.call_library(&dotted, &bytes, kwargs.as_deref(), mode))
                .await
                .unwrap_or_else(|e| Err(ForeignError::new(ForeignErrorKind::Internal, format!("the call's thread failed: {e}"))))
        })
    }

    fn call_here(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(Arc<str>, Value)],
        mode: CallMode,
    ) -> Option<Result<Value, ForeignError>> {
        let session = match self.session_for(name, mode, keywords) {
            Ok(session) => session,
            Err(e) => return Some(Err(e)),
        };
        // A process plugin's call waits on its pipe: the async path.
        if matches!(session.raw, Backend::Process(_)) {
            return None;
        }
        Some((|| {
            let kwargs = outbound::encode_keywords(keywords)?;
            session.call_library(&name.dotted(), &outbound::encode(args)?, kwargs.as_deref(), mode)
        })())
    }
}

impl PluginHost {
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
