//! The bodies of a plugin's `extern "C"` functions, for plugins written in
//! Rust: each reads the C arguments, runs the plugin's own Rust code under
//! [`guard`], and writes the answer the way `oxiida.h` asks. A plugin's
//! exported functions then say only what is particular to it.

use std::ffi::{c_char, c_void};

use crate::{
    guard, reply_error, reply_value, write_error, Message, Reply, Value, MODE_PROCESS, STATUS_INTERNAL, STATUS_NOT_FOUND, STATUS_OK,
};

/// A failed call, as the reply will carry it.
#[derive(Debug)]
pub struct Failure {
    pub status: u32,
    pub message: String,
    pub traceback: Option<String>,
}

impl Failure {
    pub fn new(status: u32, message: impl Into<String>) -> Self {
        Failure { status, message: message.into(), traceback: None }
    }
}

/// Borrowed UTF-8 text from a C (pointer, length) pair: "" when the pointer
/// is NULL, the length 0 or the bytes not UTF-8.
///
/// # Safety
/// `ptr` must be NULL or valid for `len` bytes for the lifetime `'a`.
pub unsafe fn text<'a>(ptr: *const c_char, len: usize) -> &'a str {
    if ptr.is_null() || len == 0 {
        return "";
    }
    std::str::from_utf8(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }).unwrap_or("")
}

/// `session_new`: `open` makes the session from its config text; a panic or
/// an error is written to `error` and the answer is -1.
///
/// # Safety
/// The arguments are those the host passes to `session_new`.
pub unsafe fn session_new<S>(
    plugin: &str,
    config: *const c_char,
    len: usize,
    out: *mut *mut c_void,
    error: *mut c_char,
    cap: usize,
    open: impl FnOnce(&str) -> Result<S, String>,
) -> i32 {
    let config = unsafe { text(config, len) };
    match guard(|| open(config), |panic| Err(format!("the {plugin} plugin panicked: {panic}"))) {
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

/// `session_free`: drops the session made by [`session_new`] with `drop`.
///
/// # Safety
/// `session` is NULL or came from [`session_new`] with the same `S`, and no call runs on it.
pub unsafe fn session_free<S>(session: *mut c_void, drop: impl FnOnce(Box<S>)) {
    if !session.is_null() {
        guard(|| drop(unsafe { Box::from_raw(session.cast::<S>()) }), |_| ());
    }
}

/// `resolve`: `find` checks a dotted name; STATUS_NOT_FOUND with its reason.
///
/// # Safety
/// The arguments are those the host passes to `resolve`; `session` came from [`session_new`] with `S`.
pub unsafe fn resolve<S>(
    plugin: &str,
    session: *mut c_void,
    name: *const c_char,
    len: usize,
    error: *mut c_char,
    cap: usize,
    find: impl FnOnce(&S, &str) -> Result<(), String>,
) -> u32 {
    let (session, name) = unsafe { (&*session.cast::<S>(), text(name, len)) };
    match guard(|| find(session, name), |panic| Err(format!("the {plugin} plugin panicked: {panic}"))) {
        Ok(()) => STATUS_OK,
        Err(why) => {
            unsafe { write_error(error, cap, &why) };
            STATUS_NOT_FOUND
        }
    }
}

/// `call`: decodes the arguments, runs `run(session, name, args, in_process_mode)`
/// and writes its value or failure into `reply`.
///
/// # Safety
/// The arguments are those the host passes to `call`; `session` came from [`session_new`] with `S`.
pub unsafe fn call<S>(
    plugin: &str,
    session: *mut c_void,
    message: *const Message,
    reply: *mut Reply,
    run: impl FnOnce(&S, &str, &[Value], bool) -> Result<Value, Failure>,
) {
    let (session, m, reply) = unsafe { (&*session.cast::<S>(), &*message, &mut *reply) };
    let name = unsafe { text(m.name, m.name_len) };
    let args = unsafe { std::slice::from_raw_parts(m.args, m.args_len) };
    let outcome = guard(
        || match Value::decode(args) {
            Ok(Value::Array(args)) => run(session, name, &args, m.mode == MODE_PROCESS),
            _ => Err(Failure::new(STATUS_INTERNAL, "malformed arguments")),
        },
        |panic| Err(Failure::new(STATUS_INTERNAL, format!("the {plugin} plugin panicked: {panic}"))),
    );
    match outcome {
        Ok(v) => reply_value(reply, &v),
        Err(f) => reply_error(reply, f.status, &f.message, f.traceback.as_deref()),
    }
}

/// `reply_free` for a plugin whose replies are all made by [`reply_value`]
/// and [`reply_error`] (as [`call`] makes them): put it in the plugin table.
///
/// # Safety
/// `reply` is a reply this plugin filled and has not freed.
pub unsafe extern "C" fn reply_free(_session: *mut c_void, reply: *mut Reply) {
    unsafe { crate::free_reply(&mut *reply) };
}
