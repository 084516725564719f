//! The `plugins` option of `oxiida.run`: process plugins
//! (`exec:node=tools.js`), manifests, registered names or plugin libraries
//! beside the caller's Lua functions. The host crate's [`PluginHost`] serves
//! them; the Lua host asks [`Plugins`] first which names are theirs:
//!
//! - `require f from NAME;` with `NAME` other than `lua`: plugin `NAME`
//!   (the name it says in its hello, as with `oxiida run`);
//! - `require f;` (no `from`): the Lua environment when it has `f`, else
//!   the one plugin that provides it;
//! - `from lua`: the environment only.

use std::collections::HashSet;
use std::sync::Arc;

use oxiida::foreign::{CallFuture, CallMode, ForeignError, ForeignName, Host, Keywords};
use oxiida::value::Value;
use oxiida_host::PluginHost;
use parking_lot::Mutex;

pub(crate) struct Plugins {
    host: PluginHost,
    specs: Vec<String>,
    /// The required names a plugin serves (filled by `resolve`).
    routed: Mutex<HashSet<ForeignName>>,
}

impl Plugins {
    /// Loads each spec as `oxiida run --plugin` takes it and starts a
    /// session in each; the error names the plugin and says what to do.
    pub(crate) fn open(specs: &[String]) -> Result<Option<Plugins>, String> {
        if specs.is_empty() {
            return Ok(None);
        }
        let mut loaded = Vec::new();
        for spec in specs {
            let (what, config) = spec.split_once('=').unwrap_or((spec, ""));
            let path = oxiida_host::locate(what).map_err(|e| format!("oxiida.run: plugin `{spec}`: {e}"))?;
            let plugin = oxiida_host::load(&path).map_err(|e| format!("oxiida.run: plugin `{spec}`: {e}"))?;
            loaded.push((plugin, config.to_owned()));
        }
        let host = PluginHost::new(&loaded).map_err(|e| format!("oxiida.run: {e} (plugins given: {})", specs.join(", ")))?;
        Ok(Some(Plugins { host, specs: specs.to_vec(), routed: Mutex::new(HashSet::new()) }))
    }

    /// Resolves `name` among the plugins, or (without `from`) first in the
    /// Lua environment by `lua`; None for `from lua`.
    pub(crate) fn resolve(&self, name: &ForeignName, lua: impl FnOnce() -> Result<(), String>) -> Option<Result<(), String>> {
        let found = match name.from.as_deref() {
            Some("lua") => return None,
            Some(_) => self.host.resolve(name).map_err(|why| format!("{why}; plugins given: {}", self.specs.join(", "))),
            None => match lua() {
                Ok(()) => return Some(Ok(())),
                Err(in_lua) => {
                    self.host.resolve(name).map_err(|in_plugins| format!("{in_lua}; nor does any plugin given provide it ({in_plugins})"))
                }
            },
        };
        if found.is_ok() {
            self.routed.lock().insert(name.clone());
        }
        Some(found)
    }

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
}

/// Without `plugins`, a `from NAME` other than `lua` says how to load it.
pub(crate) fn not_loaded(from: &str) -> String {
    format!(
        "no plugin named `{from}` is loaded: oxiida.run calls the environment's Lua functions (`from lua`); \
         pass the plugin to load it, e.g. `oxiida.run(source, env, {{ plugins = {{\"exec:node=tools.js\"}} }})`"
    )
}
