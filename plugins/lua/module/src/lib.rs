#![deny(clippy::undocumented_unsafe_blocks)]
//! The `oxiida` Lua module: `oxiida.run(src [, env [, name]])` runs a
//! workflow whose required names are Lua functions found in `env` (default:
//! the globals); `oxiida.run(src, env, { name = ..., plugins = {...} })`
//! also loads other plugins (process plugins) beside them (`plugins.rs`).
//! The workflow runs on the calling thread, on a current-thread
//! tokio runtime, so every call back into Lua happens on the thread that owns
//! the Lua state, with no hand-off; calls in `para` take turns.

use parking_lot::Mutex;
use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::thread::ThreadId;

use mlua::{Function, Lua, Table};
use oxiida::codec;
use oxiida::foreign::{CallFuture, CallMode, ForeignError, ForeignErrorKind, ForeignName, Host};
use oxiida::value::{Handle, Map, Value};
use oxiida::{Interrupt, Limits, Output, Source};
use oxiida_lua_shared::{convert, lua_error};

mod plugins;
mod sigint;

/// The caller's functions. Lua values belong to the thread of their state
/// (mlua's module mode has no `send`), so the host holds them in [`OnThread`].
struct EnvHost<'a> {
    env: OnThread<Env>,
    /// Set when `print` failed: no more calls into Lua then.
    stopped: &'a Mutex<Option<String>>,
    /// The `plugins` option: other plugins beside the environment.
    plugins: Option<oxiida_host::Beside>,
}

struct Env {
    lua: Lua,
    env: Table,
    functions: RefCell<HashMap<ForeignName, Function>>,
}

/// Makes a value `Send + Sync` by handing it out only on the thread that made
/// it, as the `Host` trait requires: the workflow runs on that thread.
struct OnThread<T> {
    value: ManuallyDrop<T>,
    thread: ThreadId,
}

// SAFETY: `get` and `drop` touch the value only on the thread that made it,
// so it is never used, shared or dropped across threads.
unsafe impl<T> Send for OnThread<T> {}
// SAFETY: as for Send: a shared reference reaches the value only through
// `get`, which hands it out on the value's own thread alone.
unsafe impl<T> Sync for OnThread<T> {}

impl<T> OnThread<T> {
    fn new(value: T) -> Self {
        OnThread { value: ManuallyDrop::new(value), thread: std::thread::current().id() }
    }

    fn get(&self) -> Option<&T> {
        (std::thread::current().id() == self.thread).then(|| &*self.value)
    }
}

impl<T> Drop for OnThread<T> {
    fn drop(&mut self) {
        if std::thread::current().id() == self.thread {
            // SAFETY: dropped once, here, on its own thread.
            unsafe { ManuallyDrop::drop(&mut self.value) }
        }
        // Elsewhere it is leaked: touching it there would be unsound.
    }
}

fn wrong_thread() -> ForeignError {
    ForeignError::new(ForeignErrorKind::Internal, "a Lua function was called from another thread than the one running oxiida.run")
}

impl EnvHost<'_> {
    /// The plugin that serves `name`, if one does (not the environment).
    fn plugin_for(&self, name: &ForeignName) -> Option<&oxiida_host::Beside> {
        self.plugins.as_ref().filter(|p| p.serves(name))
    }

    fn call_now(&self, name: &ForeignName, args: &[Value], keywords: &[(Arc<str>, Value)], mode: CallMode) -> Result<Value, ForeignError> {
        let env = self.env.get().ok_or_else(wrong_thread)?;
        if self.stopped.lock().is_some() {
            return Err(ForeignError::new(ForeignErrorKind::Internal, "the workflow is stopping: `print` failed"));
        }
        if mode == CallMode::Process {
            return Err(ForeignError::new(
                ForeignErrorKind::BadArguments,
                "`=f=` needs a fresh Lua state, which the caller's functions cannot move to: call it as `f(...)` in oxiida.run",
            ));
        }
        let function = env.functions.borrow().get(name).cloned();
        let function = function.ok_or_else(|| ForeignError::new(ForeignErrorKind::NotFound, format!("`{name}` was never resolved")))?;
        let lua = &env.lua;
        let to_lua = || -> Result<mlua::MultiValue, ForeignError> {
            let mut all = mlua::MultiValue::new();
            for arg in args {
                all.push_back(to_lua_value(lua, arg, name)?);
            }
            if !keywords.is_empty() {
                let t = lua.create_table().map_err(internal)?;
                for (k, v) in keywords {
                    t.raw_set(&**k, to_lua_value(lua, v, name)?).map_err(internal)?;
                }
                all.push_back(mlua::Value::Table(t));
            }
            Ok(all)
        };
        let args = to_lua()?;
        let results = function.call::<mlua::MultiValue>(args).map_err(|e| {
            let (message, traceback) = lua_error::describe(&e);
            let error = ForeignError::new(ForeignErrorKind::Raised, message);
            match traceback {
                Some(tb) => error.with_traceback(tb),
                None => error,
            }
        })?;
        let first = results.front().unwrap_or(&mlua::Value::Nil);
        // What cannot cross as data crosses as a handle to the value itself.
        let mut kept: HashMap<u64, mlua::Value> = HashMap::new();
        let mut keep = |v: &mlua::Value| {
            let id = v.to_pointer() as usize as u64;
            kept.insert(id, v.clone());
            Some(oxiida_abi::Value::handle(id, &convert::lua_type_name(v)))
        };
        let wire = convert::from_lua_with(first, &mut keep).map_err(|why| {
            ForeignError::new(ForeignErrorKind::BadResult, format!("cannot return {} from `{}`: {why}", a_type(first), name.dotted()))
        })?;
        Ok(from_wire(wire, &kept))
    }
}

impl EnvHost<'_> {
    fn resolve_lua(&self, name: &ForeignName) -> Result<(), String> {
        let env = self.env.get().ok_or_else(|| wrong_thread().message)?;
        let found = find(&env.lua, &env.env, &name.dotted())?;
        env.functions.borrow_mut().insert(name.clone(), found);
        Ok(())
    }
}

fn internal(e: mlua::Error) -> ForeignError {
    ForeignError::new(ForeignErrorKind::Internal, e.to_string())
}

/// "a string", "an integer": a Lua value's type with its article.
fn a_type(v: &mlua::Value) -> String {
    let name = match v {
        mlua::Value::Integer(_) => "integer",
        mlua::Value::Number(_) => "number",
        other => other.type_name(),
    };
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {name}")
}

/// A result as the workflow's value, its handles holding the Lua values.
fn from_wire(w: oxiida_abi::Value, kept: &HashMap<u64, mlua::Value>) -> Value {
    match w {
        oxiida_abi::Value::Array(items) => Value::array(items.into_iter().map(|v| from_wire(v, kept)).collect()),
        oxiida_abi::Value::Map(entries) => {
            Value::map(entries.into_iter().map(|(k, v)| (Arc::from(k), from_wire(v, kept))).collect::<Map>())
        }
        oxiida_abi::Value::Handle { id, type_name } => {
            let value = kept.get(&id).cloned().unwrap_or(mlua::Value::Nil);
            Value::Handle(Arc::new(Handle::new("lua", &type_name, id, Box::new(OnThread::new(value)))))
        }
        scalar => codec::from_wire(scalar),
    }
}

/// A workflow value as Lua's: a handle becomes the very Lua value it holds.
fn to_lua_value(lua: &Lua, v: &Value, name: &ForeignName) -> Result<mlua::Value, ForeignError> {
    Ok(match v {
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0).map_err(internal)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua_value(lua, item, name)?).map_err(internal)?;
            }
            mlua::Value::Table(t)
        }
        Value::Map(m) => {
            let t = lua.create_table_with_capacity(0, m.len()).map_err(internal)?;
            for (k, item) in m.iter() {
                t.raw_set(&**k, to_lua_value(lua, item, name)?).map_err(internal)?;
            }
            mlua::Value::Table(t)
        }
        Value::Handle(h) => match h.payload::<OnThread<mlua::Value>>().and_then(OnThread::get) {
            Some(value) => value.clone(),
            None => {
                return Err(ForeignError::new(
                    ForeignErrorKind::BadArguments,
                    format!(
                        "cannot pass <{} {}> to lua function `{}`: a handle can only go back to the plugin that made it ({})",
                        h.owner(),
                        h.type_name(),
                        name.dotted(),
                        h.owner()
                    ),
                ))
            }
        },
        scalar => convert::to_lua(lua, &codec::to_wire(scalar)).map_err(internal)?,
    })
}

impl Host for EnvHost<'_> {
    fn resolve(&self, name: &ForeignName) -> Result<(), String> {
        if let Some(plugins) = &self.plugins {
            if let Some(found) = plugins.resolve(name, "lua", || self.resolve_lua(name)) {
                return found;
            }
        } else if let Some(from) = name.from.as_deref().filter(|&f| f != "lua") {
            return Err(plugins::not_loaded(from));
        }
        self.resolve_lua(name)
    }

    /// Lua functions take keyword arguments as one extra final table.
    fn keywords(&self, name: &ForeignName) -> Result<(), String> {
        if let Some(plugins) = self.plugin_for(name) {
            return plugins.host().keywords(name);
        }
        Ok(())
    }

    /// Runs at once: the interpreter awaits the future as soon as it has
    /// it, on this same thread, so there is nothing to gain by deferring.
    fn call(&self, name: &ForeignName, args: Vec<Value>, keywords: oxiida::foreign::Keywords, mode: CallMode) -> CallFuture {
        if let Some(plugins) = self.plugin_for(name) {
            return plugins.host().call(name, args, keywords, mode);
        }
        let result = self.call_now(name, &args, &keywords, mode);
        Box::pin(async move { result })
    }

    fn call_here(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(Arc<str>, Value)],
        mode: CallMode,
    ) -> Option<Result<Value, ForeignError>> {
        if let Some(plugins) = self.plugin_for(name) {
            return plugins.host().call_here(name, args, keywords, mode);
        }
        Some(self.call_now(name, args, keywords, mode))
    }
}

/// Indexes `env` with each part of `dotted`; the last must be a function,
/// or a table or userdata with a `__call` metamethod (called through it).
fn find(lua: &Lua, env: &Table, dotted: &str) -> Result<Function, String> {
    let mut at = mlua::Value::Table(env.clone());
    let mut walked = String::new();
    for part in dotted.split('.') {
        at = match &at {
            mlua::Value::Table(t) => t.get::<mlua::Value>(part).map_err(|e| format!("looking up `{dotted}` failed: {e}"))?,
            mlua::Value::Nil => return Err(format!("`{walked}` is nil in the environment, so `{dotted}` cannot be found")),
            other => return Err(format!("`{walked}` is {}, not a table, so `{dotted}` cannot be found", a_type(other))),
        };
        walked = if walked.is_empty() { part.to_owned() } else { format!("{walked}.{part}") };
    }
    match at {
        mlua::Value::Nil => Err(format!("`{dotted}` is not defined in the environment (it is nil)")),
        other => convert::callable(lua, &other).ok_or_else(|| format!("`{dotted}` is {}, not a function", a_type(&other))),
    }
}

/// `print` in a workflow goes through Lua's `io.write`, so it interleaves
/// with the script's own output and can be redirected like it. An error
/// there (a failing `io.write`, or the interpreter's Ctrl-C hook firing in
/// it) stops the workflow and is what `run` raises.
struct LuaOut<'a> {
    write: OnThread<Option<Function>>,
    failed: &'a Mutex<Option<String>>,
    interrupt: &'a Interrupt,
}

impl Output for LuaOut<'_> {
    fn print(&self, text: &str) {
        if self.failed.lock().is_some() {
            return;
        }
        match self.write.get() {
            Some(Some(write)) => {
                if let Err(e) = write.call::<()>((text, "\n")) {
                    self.failed.lock().get_or_insert(lua_error::describe(&e).0);
                    self.interrupt.trigger();
                }
            }
            _ => println!("{text}"),
        }
    }
}

/// `run`'s arguments, checked here so that a wrong one is a plain string
/// error that names `oxiida.run` (mlua's own would be a userdata).
fn arguments(args: mlua::MultiValue) -> Result<Arguments, String> {
    let mut args = args.into_iter();
    let source = match args.next() {
        Some(mlua::Value::String(s)) => {
            s.to_str().map_err(|_| "oxiida.run: the source (argument 1) is not valid UTF-8".to_owned())?.to_string()
        }
        other => {
            let got = other.as_ref().map_or("no value".to_owned(), a_type);
            return Err(format!("oxiida.run: expected source string as argument 1, got {got}"));
        }
    };
    let env = match args.next() {
        None | Some(mlua::Value::Nil) => None,
        Some(mlua::Value::Table(t)) => Some(t),
        Some(other) => return Err(format!("oxiida.run: expected an environment table (or nil) as argument 2, got {}", a_type(&other))),
    };
    let (name, plugins) = match args.next() {
        None | Some(mlua::Value::Nil) => (None, Vec::new()),
        Some(mlua::Value::String(s)) => (Some(s.to_string_lossy().to_string()), Vec::new()),
        Some(mlua::Value::Table(options)) => options_table(&options)?,
        Some(other) => {
            return Err(format!(
                "oxiida.run: expected a workflow name string or an options table (or nil) as argument 3, got {}",
                a_type(&other)
            ))
        }
    };
    Ok((source, env, name, plugins))
}

/// `run`'s arguments: the source, the environment, the workflow's name and
/// the plugins to load beside the environment.
type Arguments = (String, Option<Table>, Option<String>, Vec<String>);

/// `{ name = "wf.ox", plugins = {"exec:node=tools.js"} }`; any other key
/// is an error, so that a typo is not ignored.
fn options_table(options: &Table) -> Result<(Option<String>, Vec<String>), String> {
    let mut name = None;
    let mut plugins = Vec::new();
    for pair in options.pairs::<mlua::Value, mlua::Value>() {
        let (key, value) = pair.map_err(|e| format!("oxiida.run: reading the options table failed: {e}"))?;
        let key = match &key {
            mlua::Value::String(s) => s.to_string_lossy().to_string(),
            other => return Err(format!("oxiida.run: the options table's keys are `name` and `plugins`, not {}", a_type(other))),
        };
        match (key.as_str(), value) {
            ("name", mlua::Value::String(s)) => name = Some(s.to_string_lossy().to_string()),
            ("plugins", mlua::Value::String(s)) => plugins.push(s.to_string_lossy().to_string()),
            ("plugins", mlua::Value::Table(list)) => {
                for item in list.sequence_values::<mlua::Value>() {
                    match item.map_err(|e| format!("oxiida.run: reading `plugins` failed: {e}"))? {
                        mlua::Value::String(s) => plugins.push(s.to_string_lossy().to_string()),
                        other => {
                            return Err(format!(
                                "oxiida.run: `plugins` holds strings such as \"exec:node=tools.js\", not {}",
                                a_type(&other)
                            ))
                        }
                    }
                }
            }
            ("name", other) => return Err(format!("oxiida.run: option `name` is a string, not {}", a_type(&other))),
            ("plugins", other) => {
                return Err(format!("oxiida.run: option `plugins` is a list of strings (or one string), not {}", a_type(&other)))
            }
            (other, _) => return Err(format!("oxiida.run: unknown option `{other}` (the options are `name` and `plugins`)")),
        }
    }
    Ok((name, plugins))
}

fn run(lua: &Lua, (source, env, file_name, plugin_specs): Arguments) -> mlua::Result<Table> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(mlua::Error::runtime("oxiida.run cannot be called from a function that a workflow is calling"));
    }
    // Not "oxiida.run": that is the chunk name of `run` itself in tracebacks.
    let source = Source::new(file_name.unwrap_or_else(|| "<workflow>".into()), source);
    let failed = Mutex::new(None);
    let plugins = oxiida_host::Beside::open(&plugin_specs).map_err(|e| mlua::Error::runtime(format!("oxiida.run: {e}")))?;
    let host = EnvHost {
        plugins,
        env: OnThread::new(Env { lua: lua.clone(), env: env.unwrap_or_else(|| lua.globals()), functions: RefCell::new(HashMap::new()) }),
        stopped: &failed,
    };
    let program = oxiida::compile(&source, &host).map_err(|errors| mlua::Error::runtime(source.render(&errors, false)))?;
    let write = lua.globals().get::<Option<Table>>("io")?.map(|io| io.get::<Option<Function>>("write")).transpose()?.flatten();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(mlua::Error::external)?;
    let limits = Limits { inline_calls: true, ..Limits::default() };
    let interrupt = Interrupt::new();
    let watch = sigint::Watch::start(interrupt.clone());
    let out = LuaOut { write: OnThread::new(write), failed: &failed, interrupt: &interrupt };
    let done = runtime.block_on(oxiida::execute_with_interrupt(&program, &host, &out, limits, &interrupt));
    drop(watch);
    if let Some(why) = failed.lock().take() {
        // The interpreter stopped at the `print` that failed: report it there.
        let message = format!("`print` in the workflow failed: {why}");
        return Err(mlua::Error::runtime(match done {
            Err(mut error) => {
                error.message = message;
                error.label = None;
                source.render(&[error], false)
            }
            Ok(_) => message,
        }));
    }
    let vars = done.map_err(|error| mlua::Error::runtime(source.render(&[error], false)))?;
    let out = lua.create_table()?;
    let name = ForeignName::new("oxiida.run");
    for (var, value) in vars {
        out.set(&*var, to_lua_value(lua, &value, &name).map_err(|e| mlua::Error::runtime(e.message))?)?;
    }
    Ok(out)
}

/// Panics must not unwind into the interpreter: they become errors too.
/// Errors come back as `(false, message)` for the Lua wrapper to raise, so a
/// Lua caller catches a plain string rather than an mlua userdata.
fn run_or_message(lua: &Lua, args: mlua::MultiValue) -> mlua::Result<(bool, mlua::Value)> {
    let args = match arguments(args) {
        Ok(args) => args,
        Err(message) => return Ok((false, mlua::Value::String(lua.create_string(message)?))),
    };
    let done = oxiida_abi::guard(|| run(lua, args), |panic| Err(mlua::Error::runtime(format!("oxiida panicked: {panic}"))));
    Ok(match done {
        Ok(vars) => (true, mlua::Value::Table(vars)),
        Err(mlua::Error::RuntimeError(message)) => (false, mlua::Value::String(lua.create_string(message)?)),
        Err(other) => (false, mlua::Value::String(lua.create_string(other.to_string())?)),
    })
}

/// Level 2: the error names the line of the script that called `run`.
const RUN: &str = r#"
local run_or_message = ...
return function(...)
  local ok, result = run_or_message(...)
  if ok then return result end
  error(result, 2)
end
"#;

#[mlua::lua_module(name = "oxiida")]
fn oxiida_module(lua: &Lua) -> mlua::Result<Table> {
    let exports = lua.create_table()?;
    let raw = lua.create_function(run_or_message)?;
    let run: Function = lua.load(RUN).set_name("=oxiida.run").call(raw)?;
    exports.set("run", run)?;
    exports.set("version", env!("CARGO_PKG_VERSION"))?;
    Ok(exports)
}
