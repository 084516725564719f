//! The Python plugin, loaded by `oxiida run --plugin python[=script.py]`. It
//! embeds the interpreter it was built against. Each call takes the GIL on
//! its own thread, so calls that wait (I/O, `time.sleep`) overlap in `para`.
//! Process calls (`=f=`) run in a pool of worker processes. Built by maturin, the same
//! library is the `oxiida._oxiida` module of the `oxiida` package.

use std::ffi::{c_char, c_void};

use oxiida_abi::{self as abi, guard, write_error, Value};
use pyo3::prelude::*;

mod convert;
mod daemon;
mod package;
mod pipe;
mod pool;
mod session;

use session::{Failure, Session};

unsafe fn text<'a>(ptr: *const c_char, len: usize) -> &'a str {
    if ptr.is_null() || len == 0 {
        return "";
    }
    std::str::from_utf8(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }).unwrap_or("")
}

unsafe extern "C" fn session_new(config: *const c_char, len: usize, out: *mut *mut c_void, error: *mut c_char, cap: usize) -> i32 {
    let script = unsafe { text(config, len) };
    let made = guard(|| Python::attach(|py| Session::new(py, script)), |panic| Err(format!("the Python plugin panicked: {panic}")));
    match made {
        Ok(session) => {
            if !session.lent() {
                CLI_SESSIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            unsafe { *out = Box::into_raw(Box::new(session)).cast() };
            0
        }
        Err(why) => {
            unsafe { write_error(error, cap, &why) };
            -1
        }
    }
}

/// Sessions opened by the CLI (not by the `oxiida` package) and still open:
/// when the last one ends, the CLI is about to exit, and so do the workers.
static CLI_SESSIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe extern "C" fn session_free(session: *mut c_void) {
    if session.is_null() {
        return;
    }
    guard(
        || {
            let session = unsafe { Box::from_raw(session.cast::<Session>()) };
            let from_cli = !session.lent();
            pool::cancel(session.owner);
            // Dropping Python objects needs the GIL.
            Python::attach(|_| drop(session));
            if from_cli && CLI_SESSIONS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                pool::shutdown();
            }
        },
        |_| (),
    );
}

unsafe extern "C" fn resolve(session: *mut c_void, name: *const c_char, len: usize, error: *mut c_char, cap: usize) -> u32 {
    let session = unsafe { &*session.cast::<Session>() };
    let name = unsafe { text(name, len) };
    match guard(|| session.resolve(name), |panic| Err(format!("the Python plugin panicked: {panic}"))) {
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
        |panic| Err(Failure { status: abi::STATUS_INTERNAL, message: format!("the Python plugin panicked: {panic}"), traceback: None }),
    );
    match outcome {
        Ok(v) => abi::reply_value(reply, &v),
        Err(f) => abi::reply_error(reply, f.status, &f.message, f.traceback.as_deref()),
    }
}

unsafe extern "C" fn reply_free(_session: *mut c_void, reply: *mut abi::Reply) {
    unsafe { abi::free_reply(&mut *reply) };
}

pub(crate) static PLUGIN: abi::Plugin = abi::Plugin {
    abi_version: abi::OXIIDA_ABI_VERSION,
    struct_size: std::mem::size_of::<abi::Plugin>() as u32,
    name: c"python".as_ptr(),
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
pub unsafe extern "C" fn oxiida_plugin_init(_host: *const abi::Host, error: *mut c_char, cap: usize) -> *const abi::Plugin {
    let started = guard(
        || {
            Python::initialize();
            Ok(())
        },
        |panic| Err(format!("cannot start Python: {panic}")),
    );
    match started {
        Ok(()) => &PLUGIN,
        Err(why) => {
            unsafe { write_error(error, cap, &why) };
            std::ptr::null()
        }
    }
}
