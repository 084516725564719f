//! The Python plugin, loaded by `oxiida run --plugin python[=script.py]`. It
//! embeds the interpreter it was built against. Each call takes the GIL on
//! its own thread, so calls that wait (I/O, `time.sleep`) overlap in `para`.
//! Process calls (`=f=`) run in a pool of worker processes. Built by maturin, the same
//! library is the `oxiida._oxiida` module of the `oxiida` package.

use std::ffi::{c_char, c_void};

use oxiida_abi::{self as abi, guard, serve, write_error};
use pyo3::prelude::*;

mod convert;
#[cfg(feature = "package")]
mod daemon;
#[cfg(feature = "package")]
mod package;
mod pipe;
mod pool;
mod session;

use session::Session;

unsafe extern "C" fn session_new(config: *const c_char, len: usize, out: *mut *mut c_void, error: *mut c_char, cap: usize) -> i32 {
    let open = |script: &str| {
        let session = Python::attach(|py| Session::new(py, script))?;
        if !session.lent() {
            CLI_SESSIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(session)
    };
    unsafe { serve::session_new("Python", config, len, out, error, cap, open) }
}

/// Sessions opened by the CLI (not by the `oxiida` package) and still open:
/// when the last one ends, the CLI is about to exit, and so do the workers.
static CLI_SESSIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe extern "C" fn session_free(session: *mut c_void) {
    let close = |session: Box<Session>| {
        let from_cli = !session.lent();
        pool::cancel(session.owner);
        // Dropping Python objects needs the GIL.
        Python::attach(|_| drop(session));
        if from_cli && CLI_SESSIONS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            pool::shutdown();
        }
    };
    unsafe { serve::session_free(session, close) }
}

unsafe extern "C" fn resolve(session: *mut c_void, name: *const c_char, len: usize, error: *mut c_char, cap: usize) -> u32 {
    unsafe { serve::resolve("Python", session, name, len, error, cap, Session::resolve) }
}

unsafe extern "C" fn call(session: *mut c_void, message: *const abi::Message, reply: *mut abi::Reply) {
    unsafe { serve::call("Python", session, message, reply, Session::call) }
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
    reply_free: Some(abi::serve::reply_free),
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
