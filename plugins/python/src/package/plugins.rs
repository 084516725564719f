//! `plugins=` of `oxiida.run` (and `check`, `run_async`): other plugins —
//! process plugins (`exec:node=tools.js`), manifests, registered names,
//! plugin libraries — beside the caller's Python scope. The host crate's
//! [`PluginHost`] serves them; [`PyHost`](super::PyHost) asks [`Plugins`]
//! first which names are theirs:
//!
//! - `require f from NAME;` with `NAME` other than `python`: the plugin
//!   called `NAME` (the name it says in its hello, as with `oxiida run`);
//! - `require f;` (no `from`): the Python scope when it has `f`, else the
//!   one plugin that provides it;
//! - `from python`: the Python scope only.

use std::collections::HashSet;
use std::sync::Arc;

use oxiida::foreign::{CallFuture, CallMode, ForeignError, ForeignName, Host, Keywords};
use oxiida::value::Value;
use oxiida_host::PluginHost;
use parking_lot::Mutex;

/// The extra plugins of one workflow, with one session in each, and the
/// names they serve.
pub(crate) struct Plugins {
    host: PluginHost,
    /// The specs as given, for error messages.
    specs: Vec<String>,
    /// The required names a plugin serves (filled by `resolve`).
    routed: Mutex<HashSet<ForeignName>>,
}

impl Plugins {
    /// Loads each spec (`exec:PROGRAM[=ARGS]`, a name, a path, each with
    /// `=CONFIG` as `--plugin` takes it) and starts a session in each. The
    /// error names the plugin and says what to do.
    pub(crate) fn open(specs: &[String]) -> Result<Option<Plugins>, String> {
        if specs.is_empty() {
            return Ok(None);
        }
        let mut loaded = Vec::new();
        for spec in specs {
            let (what, config) = split(spec);
            let path = oxiida_host::locate(what).map_err(|e| format!("plugin `{spec}`: {e}"))?;
            let plugin = oxiida_host::load(&path).map_err(|e| format!("plugin `{spec}`: {e}"))?;
            loaded.push((plugin, config.to_owned()));
        }
        let host = PluginHost::new(&loaded).map_err(|e| format!("{e} (plugins given: {})", specs.join(", ")))?;
        Ok(Some(Plugins { host, specs: specs.to_vec(), routed: Mutex::new(HashSet::new()) }))
    }

    /// Resolves `name` among the plugins, or (without `from`) first in the
    /// Python scope by `python`; None for `from python`, which is the
    /// Python scope's alone.
    pub(crate) fn resolve(&self, name: &ForeignName, python: impl FnOnce() -> Result<(), String>) -> Option<Result<(), String>> {
        match name.from.as_deref() {
            Some("python") => None,
            Some(_) => {
                let found = self.host.resolve(name).map_err(|why| format!("{why}; plugins given: {}", self.specs.join(", ")));
                if found.is_ok() {
                    self.routed.lock().insert(name.clone());
                }
                Some(found)
            }
            None => Some(match python() {
                Ok(()) => Ok(()),
                Err(in_python) => match self.host.resolve(name) {
                    Ok(()) => {
                        self.routed.lock().insert(name.clone());
                        Ok(())
                    }
                    Err(in_plugins) => Err(format!("{in_python}; nor does any plugin given provide it ({in_plugins})")),
                },
            }),
        }
    }

    /// Whether `name` was resolved to a plugin.
    pub(crate) fn serves(&self, name: &ForeignName) -> bool {
        self.routed.lock().contains(name)
    }

    pub(crate) fn keywords(&self, name: &ForeignName) -> Result<(), String> {
        self.host.keywords(name)
    }

    pub(crate) fn call(&self, name: &ForeignName, args: Vec<Value>, keywords: Keywords, mode: CallMode) -> CallFuture {
        self.host.call(name, args, keywords, mode)
    }

    pub(crate) fn call_here(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(Arc<str>, Value)],
        mode: CallMode,
    ) -> Option<Result<Value, ForeignError>> {
        self.host.call_here(name, args, keywords, mode)
    }

    /// Stops the plugins' running calls (Ctrl-C, a cancelled task).
    pub(crate) fn cancel(&self) {
        self.host.canceller().cancel();
    }
}

/// `exec:node=tools.js` is `exec:node` with config `tools.js`; `lua=a.lua`
/// is `lua` with `a.lua`, as `--plugin` splits them.
fn split(spec: &str) -> (&str, &str) {
    spec.split_once('=').unwrap_or((spec, ""))
}

/// Without `plugins=`, a `from NAME` other than `python` says how to load it.
pub(crate) fn not_loaded(from: &str) -> String {
    format!(
        "no plugin named `{from}` is loaded: the oxiida package calls the caller's Python functions (`from python`); \
         pass the plugin to load it, e.g. `oxiida.run(source, plugins=[\"exec:node=tools.js\"])` or a registered name"
    )
}
