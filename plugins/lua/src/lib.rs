//! The Lua plugin, loaded by `oxiida run --plugin lua[=script.lua]`. It
//! embeds Lua 5.4 (vendored: no system Lua needed). Each session keeps a
//! pool of Lua states loaded from the script, so calls in `para` run on
//! several cores; `=f=` runs a call on a fresh state of its own.

use std::ffi::{c_char, c_void};

use oxiida_abi::{self as abi, guard, write_error, Value};

mod convert;
mod lua_error;
mod session;
mod state;

use session::Session;
use state::Failure;

unsafe fn text<'a>(ptr: *const c_char, len: usize) -> &'a str {
    if ptr.is_null() || len == 0 {
        return "";
    }
    std::str::from_utf8(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }).unwrap_or("")
}

unsafe extern "C" fn session_new(config: *const c_char, len: usize, out: *mut *mut c_void, error: *mut c_char, cap: usize) -> i32 {
    let script = unsafe { text(config, len) };
    match guard(|| Session::new(script), |panic| Err(format!("the Lua plugin panicked: {panic}"))) {
        Ok(session) => {
            unsafe { *out = Box::into_raw(Box::new(session)).cast() };
            0
        }
        Err(why) => {
            unsafe { write_error(error, cap, &why) };
            -1
        }
    }
}

unsafe extern "C" fn session_free(session: *mut c_void) {
    if !session.is_null() {
        guard(|| drop(unsafe { Box::from_raw(session.cast::<Session>()) }), |_| ());
    }
}

unsafe extern "C" fn resolve(session: *mut c_void, name: *const c_char, len: usize, error: *mut c_char, cap: usize) -> u32 {
    let session = unsafe { &*session.cast::<Session>() };
    let name = unsafe { text(name, len) };
    match guard(|| session.resolve(name), |panic| Err(format!("the Lua plugin panicked: {panic}"))) {
        Ok(()) => abi::STATUS_OK,
        Err(why) => {
            unsafe { write_error(error, cap, &why) };
            abi::STATUS_NOT_FOUND
        }
    }
}

unsafe extern "C" fn call(session: *mut c_void, message: *const abi::Message, reply: *mut abi::Reply) {
    let (session, m, reply) = unsafe { (&*session.cast::<Session>(), &*message, &mut *reply) };
    let name = unsafe { text(m.name, m.name_len) };
    let args = unsafe { std::slice::from_raw_parts(m.args, m.args_len) };
    let outcome = guard(
        || {
            let Ok(Value::Array(args)) = Value::decode(args) else {
                return Err(Failure { status: abi::STATUS_INTERNAL, message: "malformed arguments".into(), traceback: None });
            };
            session.call(name, &args, m.mode == abi::MODE_PROCESS)
        },
        |panic| Err(Failure { status: abi::STATUS_INTERNAL, message: format!("the Lua plugin panicked: {panic}"), traceback: None }),
    );
    match outcome {
        Ok(v) => abi::reply_value(reply, &v),
        Err(f) => abi::reply_error(reply, f.status, &f.message, f.traceback.as_deref()),
    }
}

unsafe extern "C" fn reply_free(_session: *mut c_void, reply: *mut abi::Reply) {
    unsafe { abi::free_reply(&mut *reply) };
}

/// CAP_PROCESS_MODE: `=f=` calls are isolated on a fresh Lua state rather
/// than in another process. Lua states share nothing, and with no global
/// lock a process would add a round trip and no parallelism.
static PLUGIN: abi::Plugin = abi::Plugin {
    abi_version: abi::OXIIDA_ABI_VERSION,
    struct_size: std::mem::size_of::<abi::Plugin>() as u32,
    name: c"lua".as_ptr(),
    capabilities: abi::CAP_CONCURRENT_CALLS | abi::CAP_PROCESS_MODE,
    session_new,
    session_free,
    resolve,
    call,
    reply_free: Some(reply_free),
};

/// # Safety
/// Called by the oxiida host as `oxiida.h` describes.
#[no_mangle]
pub unsafe extern "C" fn oxiida_plugin_init(_host: *const abi::Host, _error: *mut c_char, _cap: usize) -> *const abi::Plugin {
    &PLUGIN
}
