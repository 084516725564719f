//! Plugins beside a front end's own functions: the Python package's
//! `plugins=` and the Lua module's `plugins` option. A [`PluginHost`] serves
//! them; the front end asks [`Beside::resolve`] first which names are
//! theirs, then sends those names' calls to [`Beside::host`]:
//!
//! - `require f from NAME;` with `NAME` other than the front end's own
//!   (`python`, `lua`): the plugin called `NAME` (the name it says in its
//!   hello, as with `oxiida run`);
//! - `require f;` (no `from`): the front end's own functions when they have
//!   `f`, else the one plugin that provides it;
//! - `from python` (`from lua`): the front end's own functions only.

use std::collections::HashSet;

use oxiida::foreign::{ForeignName, Host};
use parking_lot::Mutex;

use crate::PluginHost;

/// The extra plugins of one workflow, one session in each, and the names
/// they serve.
pub struct Beside {
    host: PluginHost,
    /// The specs as given, for error messages.
    specs: Vec<String>,
    /// The required names a plugin serves (filled by `resolve`).
    routed: Mutex<HashSet<ForeignName>>,
}

impl Beside {
    /// Loads each spec as `oxiida run --plugin` takes it
    /// (`exec:PROGRAM[=ARGS]`, a name, a path, each with `=CONFIG`) and
    /// starts a session in each; `None` without specs. The error names the
    /// plugin and says what to do.
    pub fn open(specs: &[String]) -> Result<Option<Beside>, String> {
        if specs.is_empty() {
            return Ok(None);
        }
        let mut loaded = Vec::new();
        for spec in specs {
            let (what, config) = spec.split_once('=').unwrap_or((spec, ""));
            let path = crate::locate(what).map_err(|e| format!("plugin `{spec}`: {e}"))?;
            let plugin = crate::load(&path).map_err(|e| format!("plugin `{spec}`: {e}"))?;
            loaded.push((plugin, config.to_owned()));
        }
        let host = PluginHost::new(&loaded).map_err(|e| format!("{e} (plugins given: {})", specs.join(", ")))?;
        Ok(Some(Beside { host, specs: specs.to_vec(), routed: Mutex::new(HashSet::new()) }))
    }

    /// Resolves `name` among the plugins or, without `from`, first among the
    /// front end's own functions by `local`. `None` for `from OWN`, which
    /// is the front end's alone.
    pub fn resolve(&self, name: &ForeignName, own: &str, local: impl FnOnce() -> Result<(), String>) -> Option<Result<(), String>> {
        let found = match name.from.as_deref() {
            Some(from) if from == own => return None,
            Some(_) => self.host.resolve(name).map_err(|why| format!("{why}; plugins given: {}", self.specs.join(", "))),
            None => match local() {
                Ok(()) => return Some(Ok(())),
                Err(in_own) => {
                    self.host.resolve(name).map_err(|in_plugins| format!("{in_own}; nor does any plugin given provide it ({in_plugins})"))
                }
            },
        };
        if found.is_ok() {
            self.routed.lock().insert(name.clone());
        }
        Some(found)
    }

    /// Whether `name` was resolved to a plugin.
    pub fn serves(&self, name: &ForeignName) -> bool {
        self.routed.lock().contains(name)
    }

    /// The plugins' host, for the names they serve.
    pub fn host(&self) -> &PluginHost {
        &self.host
    }
}
