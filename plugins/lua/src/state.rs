//! One Lua state with the script loaded, and the functions looked up in it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mlua::{Function, Lua, LuaOptions, StdLib, Value as LuaValue};
use oxiida_abi::{Status, Value};
use oxiida_lua_shared::convert::{from_lua_with, to_lua_args_with};

use crate::handles::Handles;
use oxiida_lua_shared::lua_error::describe;

/// The script a session loads into each of its states.
pub struct Script {
    pub path: String,
    pub source: String,
}

pub use oxiida_abi::Failure;

/// How often a running call looks whether its session was cancelled, in
/// Lua VM instructions: a few microseconds of work between looks.
const CHECK_EVERY: u32 = 1000;

pub struct State {
    /// Unique in the process: which state a handle's value lives in.
    pub id: u64,
    /// The session's cancel count when this state's call started; the hook
    /// stops the call once the session's count moves past it.
    started_at: Arc<AtomicU64>,
    cancels: Arc<AtomicU64>,
    lua: Lua,
    functions: HashMap<String, Function>,
    handles: Arc<Handles>,
}

impl Drop for State {
    fn drop(&mut self) {
        self.handles.state_died(self.id);
    }
}

impl State {
    /// `cancels` is the session's cancel count (`session_cancel` raises it).
    pub fn new(script: Option<&Script>, handles: &Arc<Handles>, cancels: &Arc<AtomicU64>) -> Result<State, String> {
        // SAFETY: ALL adds `debug` and C modules (`require` of a .so) to the
        // safe set; the script is trusted code, as any plugin is.
        let lua = unsafe { Lua::unsafe_new_with(StdLib::ALL, LuaOptions::default()) };
        if let Some(script) = script {
            let load = || -> mlua::Result<()> {
                // `require` finds modules beside the script, as `lua script.lua` would from its folder.
                let dir = std::path::Path::new(&script.path).parent().map(|d| d.display().to_string()).unwrap_or_default();
                let dir = if dir.is_empty() { ".".to_owned() } else { dir };
                let package: mlua::Table = lua.globals().get("package")?;
                let path: String = package.get("path")?;
                package.set("path", format!("{dir}/?.lua;{dir}/?/init.lua;{path}"))?;
                lua.load(&script.source).set_name(format!("@{}", script.path)).exec()
            };
            load().map_err(|e| {
                let (message, traceback) = describe(&e);
                format!("the script {} failed: {message}{}", script.path, traceback.map(|t| format!("\n{t}")).unwrap_or_default())
            })?;
        }
        let started_at = Arc::new(AtomicU64::new(cancels.load(Ordering::SeqCst)));
        let (hook_start, hook_cancels) = (started_at.clone(), cancels.clone());
        // Also in coroutines (a global hook): a busy call stops within
        // microseconds of a cancel, rather than running on unseen.
        lua.set_global_hook(mlua::HookTriggers::new().every_nth_instruction(CHECK_EVERY), move |_, _| {
            if hook_cancels.load(Ordering::Relaxed) != hook_start.load(Ordering::Relaxed) {
                return Err(mlua::Error::runtime("the workflow was cancelled"));
            }
            Ok(mlua::VmState::Continue)
        })
        .map_err(|e| format!("cannot set the Lua hook: {e}"))?;
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        handles.state_born(id);
        Ok(State { id, started_at, cancels: cancels.clone(), lua, functions: HashMap::new(), handles: handles.clone() })
    }

    /// Finds `dotted` (`f`, `string.upper`) from the globals down.
    pub fn lookup(&mut self, dotted: &str) -> Result<Function, String> {
        if let Some(f) = self.functions.get(dotted) {
            return Ok(f.clone());
        }
        let f = find(&self.lua, self.lua.globals(), dotted)?;
        self.functions.insert(dotted.to_owned(), f.clone());
        Ok(f)
    }

    pub fn call(&mut self, dotted: &str, args: &[Value], keywords: &[(String, Value)]) -> Result<Value, Failure> {
        let f = self.lookup(dotted).map_err(|message| Failure { status: Status::NotFound, message, traceback: None })?;
        self.started_at.store(self.cancels.load(Ordering::SeqCst), Ordering::SeqCst);
        // Values whose handles were released are freed here, on this state's thread.
        self.lua.expire_registry_values();
        let (lua, handles, id) = (&self.lua, &*self.handles, self.id);
        let result = call(lua, dotted, &f, args, keywords, &|h, ty| handles.give(lua, id, h, ty), &mut |v| handles.keep(lua, id, v));
        handles.settle(id, result.as_ref().ok());
        result
    }
}

/// Indexes `root` with each part of `dotted`; the last must be a function,
/// or a table or userdata with a `__call` metamethod (called through it).
pub fn find(lua: &Lua, root: mlua::Table, dotted: &str) -> Result<Function, String> {
    let mut at = LuaValue::Table(root);
    let mut walked = String::new();
    for part in dotted.split('.') {
        let next = match &at {
            LuaValue::Table(t) => t.get::<LuaValue>(part).map_err(|e| format!("looking up `{dotted}` failed: {e}"))?,
            LuaValue::Nil => return Err(format!("`{walked}` is nil, so `{dotted}` cannot be found")),
            other => return Err(format!("`{walked}` is {}, not a table, so `{dotted}` cannot be found", a_type(other))),
        };
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
        at = next;
    }
    match at {
        LuaValue::Nil => Err(format!("`{dotted}` is not defined (it is nil)")),
        other => {
            oxiida_lua_shared::convert::callable(lua, &other).ok_or_else(|| format!("`{dotted}` is {}, not a function", a_type(&other)))
        }
    }
}

/// Calls `f` with `args`, then the keyword arguments as one table when there
/// are any; its first result is the call's value.
pub fn call(
    lua: &Lua,
    dotted: &str,
    f: &Function,
    args: &[Value],
    keywords: &[(String, Value)],
    give: oxiida_lua_shared::convert::Give<'_>,
    keep: oxiida_lua_shared::convert::Keep<'_>,
) -> Result<Value, Failure> {
    let internal = |e: mlua::Error| Failure { status: Status::Internal, message: e.to_string(), traceback: None };
    let args = to_lua_args_with(lua, args, keywords, give).map_err(internal)?;
    let results = f.call::<mlua::MultiValue>(args).map_err(|e| {
        let (message, traceback) = describe(&e);
        Failure { status: Status::Raised, message, traceback }
    })?;
    let first = results.front().unwrap_or(&LuaValue::Nil);
    from_lua_with(first, keep).map_err(|why| Failure {
        status: Status::BadResult,
        message: format!("cannot return {} from `{dotted}`: {why}", a_type(first)),
        traceback: None,
    })
}

/// "a string", "an userdata"... with the right article: "a table", "an integer".
pub fn a_type(v: &LuaValue) -> String {
    let name = match v {
        LuaValue::Integer(_) => "integer",
        LuaValue::Number(_) => "number",
        other => other.type_name(),
    };
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {name}")
}
