//! The bodies of a plugin's `extern "C"` functions, for plugins written in
//! Rust: each reads the C arguments, runs the plugin's own Rust code under
//! [`guard`], and writes the answer the way `oxiida.h` asks. A plugin's
//! exported functions then say only what is particular to it.

use std::ffi::{c_char, c_void};

use crate::{guard, reply_error, reply_value, write_error, Message, Reply, Status, Value, MODE_PROCESS};

/// A failed call, as the reply will carry it.
#[derive(Debug)]
pub struct Failure {
    /// The kind of error (`Status::Ok` is answered as `Internal`).
    pub status: Status,
    pub message: String,
    pub traceback: Option<String>,
}

impl Failure {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
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
    // SAFETY: not NULL, and the caller promised `len` readable bytes for 'a.
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
    // SAFETY: the host passes config/len as a pair valid during the call.
    let config = unsafe { text(config, len) };
    match guard(|| open(config), |panic| Err(format!("the {plugin} plugin panicked: {panic}"))) {
        Ok(session) => {
            // SAFETY: the host passes a valid `void **` to store the session in.
            unsafe { *out = Box::into_raw(Box::new(session)).cast() };
            0
        }
        Err(why) => {
            // SAFETY: the host passes `error` valid for `cap` bytes.
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
        // SAFETY: made by `Box::into_raw` in `session_new` with the same S,
        // and the host frees each session once.
        guard(|| drop(unsafe { Box::from_raw(session.cast::<S>()) }), |_| ());
    }
}

/// `resolve`: `find` checks a dotted name; `NotFound` with its reason.
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
    // SAFETY: the session is a live S from `session_new`; name/len a valid pair.
    let (session, name) = unsafe { (&*session.cast::<S>(), text(name, len)) };
    match guard(|| find(session, name), |panic| Err(format!("the {plugin} plugin panicked: {panic}"))) {
        Ok(()) => Status::Ok.into(),
        Err(why) => {
            // SAFETY: the host passes `error` valid for `cap` bytes.
            unsafe { write_error(error, cap, &why) };
            Status::NotFound.into()
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
    // SAFETY: the session is a live S from `session_new`; the host's message
    // and reply are valid and unaliased for the duration of the call.
    let (session, m, reply) = unsafe { (&*session.cast::<S>(), &*message, &mut *reply) };
    // SAFETY: the message's (pointer, length) pairs are valid during the call.
    let name = unsafe { text(m.name, m.name_len) };
    let args: &[u8] = if m.args.is_null() {
        &[]
    } else {
        // SAFETY: as above; not NULL.
        unsafe { std::slice::from_raw_parts(m.args, m.args_len) }
    };
    let outcome = guard(
        || match Value::decode(args) {
            Ok(Value::Array(args)) => run(session, name, &args, m.mode == MODE_PROCESS),
            _ => Err(Failure::new(Status::Internal, "malformed arguments")),
        },
        |panic| Err(Failure::new(Status::Internal, format!("the {plugin} plugin panicked: {panic}"))),
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
    // SAFETY: the host passes the reply this plugin filled, once.
    unsafe { crate::free_reply(&mut *reply) };
}
