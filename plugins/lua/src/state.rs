//! One Lua state with the script loaded, and the functions looked up in it.

use std::collections::HashMap;

use mlua::{Function, Lua, LuaOptions, StdLib, Value as LuaValue};
use oxiida_abi::{Status, Value};
use oxiida_lua_shared::convert::{from_lua, to_lua_args};
use oxiida_lua_shared::lua_error::describe;

/// The script a session loads into each of its states.
pub struct Script {
    pub path: String,
    pub source: String,
}

pub use oxiida_abi::Failure;

pub struct State {
    lua: Lua,
    functions: HashMap<String, Function>,
}

impl State {
    pub fn new(script: Option<&Script>) -> Result<State, String> {
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
        Ok(State { lua, functions: HashMap::new() })
    }

    /// Finds `dotted` (`f`, `string.upper`) from the globals down.
    pub fn lookup(&mut self, dotted: &str) -> Result<Function, String> {
        if let Some(f) = self.functions.get(dotted) {
            return Ok(f.clone());
        }
        let f = find(self.lua.globals(), dotted)?;
        self.functions.insert(dotted.to_owned(), f.clone());
        Ok(f)
    }

    pub fn call(&mut self, dotted: &str, args: &[Value], keywords: &[(String, Value)]) -> Result<Value, Failure> {
        let f = self.lookup(dotted).map_err(|message| Failure { status: Status::NotFound, message, traceback: None })?;
        call(&self.lua, dotted, &f, args, keywords)
    }
}

/// Indexes `root` with each part of `dotted`; the last must be a function.
pub fn find(root: mlua::Table, dotted: &str) -> Result<Function, String> {
    let mut at = LuaValue::Table(root);
    let mut walked = String::new();
    for part in dotted.split('.') {
        let next = match &at {
            LuaValue::Table(t) => t.get::<LuaValue>(part).map_err(|e| format!("looking up `{dotted}` failed: {e}"))?,
            LuaValue::Nil => return Err(format!("`{walked}` is nil, so `{dotted}` cannot be found")),
            other => return Err(format!("`{walked}` is a {}, not a table, so `{dotted}` cannot be found", other.type_name())),
        };
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
        at = next;
    }
    match at {
        LuaValue::Function(f) => Ok(f),
        LuaValue::Nil => Err(format!("`{dotted}` is not defined (it is nil)")),
        other => Err(format!("`{dotted}` is a {}, not a function", other.type_name())),
    }
}

/// Calls `f` with `args`, then the keyword arguments as one table when there
/// are any; its first result is the call's value.
pub fn call(lua: &Lua, dotted: &str, f: &Function, args: &[Value], keywords: &[(String, Value)]) -> Result<Value, Failure> {
    let internal = |e: mlua::Error| Failure { status: Status::Internal, message: e.to_string(), traceback: None };
    let args = to_lua_args(lua, args, keywords).map_err(internal)?;
    let results = f.call::<mlua::MultiValue>(args).map_err(|e| {
        let (message, traceback) = describe(&e);
        Failure { status: Status::Raised, message, traceback }
    })?;
    from_lua(results.front().unwrap_or(&LuaValue::Nil)).map_err(|why| Failure {
        status: Status::BadArguments,
        message: format!("the result of `{dotted}` cannot cross: {why}"),
        traceback: None,
    })
}
