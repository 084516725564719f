//! The Lua plugin, loaded by `oxiida run --plugin lua[=script.lua]`. It
//! embeds Lua 5.4 (vendored: no system Lua needed). Each session keeps a
//! pool of Lua states loaded from the script, so calls in `para` run on
//! several cores; `=f=` runs a call on a fresh state of its own.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_void};

use oxiida_abi::{self as abi, serve};

mod dump;
mod handles;
mod session;
mod state;

use session::Session;

unsafe extern "C" fn session_new(config: *const c_char, len: usize, out: *mut *mut c_void, error: *mut c_char, cap: usize) -> i32 {
    // SAFETY: the host's arguments, passed on unchanged to the helper that
    // has the same contract.
    unsafe { serve::session_new("Lua", config, len, out, error, cap, Session::new) }
}

unsafe extern "C" fn session_free(session: *mut c_void) {
    // SAFETY: a session made by `session_new` above, as a Session; freed once.
    unsafe { serve::session_free::<Session>(session, drop) }
}

unsafe extern "C" fn resolve(session: *mut c_void, name: *const c_char, len: usize, error: *mut c_char, cap: usize) -> u32 {
    // SAFETY: the host's arguments, on a session made by `session_new` above.
    unsafe { serve::resolve("Lua", session, name, len, error, cap, Session::resolve) }
}

unsafe extern "C" fn call(session: *mut c_void, message: *const abi::Message, reply: *mut abi::Reply) {
    // SAFETY: the host's arguments, on a session made by `session_new` above.
    unsafe { serve::call_with_keywords("Lua", session, message, reply, Session::call) }
}

unsafe extern "C" fn handle_release(session: *mut c_void, id: u64) {
    if session.is_null() {
        return;
    }
    // SAFETY: a live session made by `session_new` above (the host never
    // releases after `session_free`); only its handle table is touched,
    // which takes its own lock.
    let session = unsafe { &*session.cast::<Session>() };
    abi::guard(|| session.handles.release(id), |_| ());
}

unsafe extern "C" fn session_cancel(session: *mut c_void) {
    if session.is_null() {
        return;
    }
    // SAFETY: a live session made by `session_new` above (never called
    // during or after `session_free`); it only raises an atomic counter.
    let session = unsafe { &*session.cast::<Session>() };
    abi::guard(|| session.cancel(), |_| ());
}

unsafe extern "C" fn fingerprint(session: *mut c_void, name: *const c_char, len: usize, out: *mut u8, cap: usize) -> usize {
    // SAFETY: the host's arguments, and `session` made by `session_new` with `Session`.
    unsafe { abi::serve::fingerprint(session, name, len, out, cap, |s: &Session, name| s.fingerprint(name)) }
}

/// CAP_PROCESS_MODE: `=f=` calls are isolated on a fresh Lua state rather
/// than in another process. Lua states share nothing, and with no global
/// lock a process would add a round trip and no parallelism. CAP_KEYWORDS:
/// keyword arguments arrive as one extra final table argument.
static PLUGIN: abi::Plugin = abi::Plugin::rust(
    c"lua",
    abi::CAP_CONCURRENT_CALLS | abi::CAP_PROCESS_MODE | abi::CAP_KEYWORDS,
    session_new,
    session_free,
    resolve,
    call,
)
.with_release(handle_release)
.with_cancel(session_cancel)
.with_fingerprint(fingerprint);

/// # Safety
/// Called by the oxiida host as `oxiida.h` describes.
#[no_mangle]
pub unsafe extern "C" fn oxiida_plugin_init(_host: *const abi::Host, _error: *mut c_char, _cap: usize) -> *const abi::Plugin {
    &PLUGIN
}
