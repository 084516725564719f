//! One Lua state with the script loaded, and the functions looked up in it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use mlua::ffi;

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

/// What `session_cancel` reaches of a session's states from another thread.
///
/// No hook runs while nothing is cancelled: in Lua 5.4 any hook makes the VM
/// look at it before every instruction, which doubled the time of `fib(30)`.
/// A cancel instead sets a count hook of 1 on each state running a call, as
/// lua.c does from its SIGINT handler (`lua_sethook` may be called
/// asynchronously); the hook raises "the workflow was cancelled" at the
/// next instruction. The state clears it when the call ends, under the same
/// lock, so it never reaches a later call.
#[derive(Default)]
pub struct Stoppers(Mutex<Vec<Weak<Stopper>>>);

impl Stoppers {
    fn add(&self, stopper: &Arc<Stopper>) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.retain(|s| s.strong_count() > 0);
        all.push(Arc::downgrade(stopper));
    }

    /// Stops every call running on the session's states.
    pub fn cancel(&self) {
        let all: Vec<Arc<Stopper>> = self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().filter_map(Weak::upgrade).collect();
        for stopper in all {
            stopper.stop();
        }
    }
}

/// One state's main Lua thread, and whether a call runs on it now.
pub struct Stopper {
    main: MainThread,
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    now: bool,
    /// The cancel hook is set.
    armed: bool,
}

struct MainThread(*mut ffi::lua_State);

// SAFETY: the pointer is only handed to `lua_sethook`, which Lua allows from
// any thread (it is how lua.c stops a script from a signal handler), and
// only while a call runs, so the state is alive (see `Stopper::stop`).
unsafe impl Send for MainThread {}
// SAFETY: as for Send.
unsafe impl Sync for MainThread {}

unsafe extern "C-unwind" fn stop_hook(state: *mut ffi::lua_State, _ar: *mut ffi::lua_Debug) {
    // SAFETY: Lua calls the hook with its own live state; raising an error
    // from a count hook is allowed (lua.c's `lstop` does the same).
    unsafe {
        ffi::lua_sethook(state, None, 0, 0);
        ffi::lua_pushstring(state, c"the workflow was cancelled".as_ptr());
        ffi::lua_error(state);
    }
}

impl Stopper {
    fn stop(&self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.now {
            // SAFETY: a call is running, so the state is alive (it cannot be
            // closed before the call's `Busy` guard takes this lock).
            unsafe { ffi::lua_sethook(self.main.0, Some(stop_hook), ffi::LUA_MASKCOUNT, 1) };
            running.armed = true;
        }
    }

    fn begin(&self) -> Busy<'_> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).now = true;
        Busy(self)
    }
}

/// A call in progress on a state; when it ends (or unwinds), a cancel hook
/// set during it is cleared.
struct Busy<'a>(&'a Stopper);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|p| p.into_inner());
        running.now = false;
        if std::mem::take(&mut running.armed) {
            // SAFETY: on the state's own thread, after its call.
            unsafe { ffi::lua_sethook(self.0.main.0, None, 0, 0) };
        }
    }
}

pub struct State {
    /// Unique in the process: which state a handle's value lives in.
    pub id: u64,
    stopper: Arc<Stopper>,
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
    /// Registers itself with `stoppers`, which a cancel goes through.
    pub fn new(script: Option<&Script>, handles: &Arc<Handles>, stoppers: &Stoppers) -> Result<State, String> {
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
        let mut main = std::ptr::null_mut();
        // SAFETY: reads the main thread from the registry, leaving the stack
        // as it found it.
        unsafe {
            lua.exec_raw::<()>((), |state| {
                ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, ffi::LUA_RIDX_MAINTHREAD);
                main = ffi::lua_tothread(state, -1);
                ffi::lua_pop(state, 1);
            })
        }
        .map_err(|e| format!("cannot start Lua: {e}"))?;
        let stopper = Arc::new(Stopper { main: MainThread(main), running: Mutex::default() });
        stoppers.add(&stopper);
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        handles.state_born(id);
        Ok(State { id, stopper, lua, functions: HashMap::new(), handles: handles.clone() })
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

    /// What identifies the code of `dotted` for `--cache`: the SHA-256 of
    /// what `fingerprint.lua` gathers (its stripped bytecode, upvalues and
    /// the globals it reads); `None` when it cannot be found or hashed.
    pub fn fingerprint(&mut self, dotted: &str) -> Option<Vec<u8>> {
        use sha2::Digest;
        let f = self.lookup(dotted).ok()?;
        let gather = self.lua.load(include_str!("fingerprint.lua")).set_name("=oxiida fingerprint").into_function().ok()?;
        let normalize = self
            .lua
            .create_function(|lua, code: mlua::String| {
                let (code, strings) = crate::dump::normalize(&code.as_bytes()).ok_or_else(|| mlua::Error::runtime("not a Lua 5.4 dump"))?;
                let names = lua.create_table()?;
                for s in strings {
                    names.set(lua.create_string(&s)?, true)?;
                }
                Ok((lua.create_string(&code)?, names))
            })
            .ok()?;
        let bytes = gather.call::<mlua::String>((f, normalize)).ok()?;
        Some(sha2::Sha256::digest(&*bytes.as_bytes()).to_vec())
    }

    pub fn call(&mut self, dotted: &str, args: &[Value], keywords: &[(String, Value)]) -> Result<Value, Failure> {
        let f = self.lookup(dotted).map_err(|message| Failure { status: Status::NotFound, message, traceback: None })?;
        let _busy = self.stopper.begin();
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
