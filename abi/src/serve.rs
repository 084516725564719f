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

/// `fingerprint`: `print` gives the function's fingerprint, copied into the
/// host's `out` when it fits in `cap` bytes; the answer is its length, or 0
/// (none: no session, no such function, a panic, or one too long).
///
/// # Safety
/// The arguments are those the host passes to `fingerprint`; `session` came from [`session_new`] with `S`.
pub unsafe fn fingerprint<S>(
    session: *mut c_void,
    name: *const c_char,
    len: usize,
    out: *mut u8,
    cap: usize,
    print: impl FnOnce(&S, &str) -> Option<Vec<u8>>,
) -> usize {
    if session.is_null() || out.is_null() {
        return 0;
    }
    // SAFETY: the session is a live S from `session_new` (never asked during
    // or after `session_free`); name/len a valid pair.
    let (session, name) = unsafe { (&*session.cast::<S>(), text(name, len)) };
    if name.is_empty() {
        return 0;
    }
    match guard(|| print(session, name), |_| None) {
        Some(bytes) if bytes.len() <= cap => {
            // SAFETY: `out` is the host's buffer of `cap` bytes, and `bytes.len() <= cap`.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len()) };
            bytes.len()
        }
        _ => 0,
    }
}

/// `call` for a plugin that takes no keyword arguments (it does not declare
/// `CAP_KEYWORDS`): decodes the arguments, runs `run(session, name, args,
/// in_process_mode)` and writes its value or failure into `reply`. Keyword
/// arguments, which the host never sends such a plugin, fail the call.
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
    let run = |s: &S, name: &str, args: &[Value], keywords: &[(String, Value)], process| {
        if !keywords.is_empty() {
            let message = format!("the {plugin} plugin takes no keyword arguments; pass them as positional arguments");
            return Err(Failure::new(Status::BadArguments, message));
        }
        run(s, name, args, process)
    };
    // SAFETY: the caller's contract, passed on unchanged.
    unsafe { call_with_keywords(plugin, session, message, reply, run) }
}

/// `call` for a plugin that declares `CAP_KEYWORDS`: decodes the arguments
/// and the keyword arguments (in the order written; empty when the call
/// passes none, or the message predates them), runs `run(session, name,
/// args, keywords, in_process_mode)` and writes its value or failure into
/// `reply`.
///
/// # Safety
/// The arguments are those the host passes to `call`; `session` came from [`session_new`] with `S`.
pub unsafe fn call_with_keywords<S>(
    plugin: &str,
    session: *mut c_void,
    message: *const Message,
    reply: *mut Reply,
    run: impl FnOnce(&S, &str, &[Value], &[(String, Value)], bool) -> Result<Value, Failure>,
) {
    // SAFETY: the session is a live S from `session_new`; the host's message
    // and reply are valid and unaliased for the duration of the call.
    let (session, m, reply) = unsafe { (&*session.cast::<S>(), &*message, &mut *reply) };
    // SAFETY: the message's (pointer, length) pairs are valid during the call.
    let name = unsafe { text(m.name, m.name_len) };
    // SAFETY: as above.
    let args = unsafe { bytes(m.args, m.args_len) };
    // SAFETY: as above, and `kwargs` is read only when the message has it.
    let kwargs = if m.has_kwargs_field() { unsafe { bytes(m.kwargs, m.kwargs_len) } } else { &[] };
    RAN_BY.take();
    let outcome = guard(
        || {
            let keywords = match kwargs {
                [] => Vec::new(),
                bytes => match Value::decode(bytes) {
                    Ok(Value::Map(entries)) => entries,
                    _ => return Err(Failure::new(Status::Internal, "malformed keyword arguments")),
                },
            };
            match Value::decode(args) {
                Ok(Value::Array(args)) => run(session, name, &args, &keywords, m.mode == MODE_PROCESS),
                _ => Err(Failure::new(Status::Internal, "malformed arguments")),
            }
        },
        |panic| Err(Failure::new(Status::Internal, format!("the {plugin} plugin panicked: {panic}"))),
    );
    match outcome {
        Ok(v) => reply_value(reply, &v),
        Err(f) => reply_error(reply, f.status, &f.message, f.traceback.as_deref()),
    }
    if let Some(who) = RAN_BY.take() {
        reply.set_ran_by(&who);
    }
}

thread_local! {
    /// What [`ran_by`] said during the call running on this thread.
    static RAN_BY: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Says, from inside the `run` of [`call`] or [`call_with_keywords`] (on
/// its thread), who ran the call: `pid N` of a worker process, a remote
/// worker's address. The reply carries it in `ran_by` (ABI version 5) and
/// the host's task record names it; unsaid, the record names the host's
/// own process.
pub fn ran_by(who: String) {
    RAN_BY.set(Some(who));
}

/// Borrowed bytes from a C (pointer, length) pair: empty when NULL.
///
/// # Safety
/// `ptr` must be NULL or valid for `len` bytes for the lifetime `'a`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() {
        &[]
    } else {
        // SAFETY: not NULL, and the caller promised `len` readable bytes for 'a.
        unsafe { std::slice::from_raw_parts(ptr, len) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{free_reply, MODE_THREAD};

    /// Runs `call_with_keywords` on `message` with a function that answers
    /// `[args, keywords as a Map]`, and returns the reply's value.
    fn answer(message: &Message) -> Value {
        let mut session = ();
        let mut reply = Reply::empty();
        let echo = |_: &(), _: &str, args: &[Value], keywords: &[(String, Value)], _| {
            Ok(Value::Array(vec![Value::Array(args.to_vec()), Value::Map(keywords.to_vec())]))
        };
        // SAFETY: a live session, message and reply for the duration of the call.
        unsafe { call_with_keywords("test", (&mut session as *mut ()).cast(), message, &mut reply, echo) };
        // SAFETY: the reply `call_with_keywords` filled, read then freed once.
        let value = Value::decode(unsafe { std::slice::from_raw_parts(reply.value, reply.value_len) }).unwrap();
        // SAFETY: as above.
        unsafe { free_reply(&mut reply) };
        value
    }

    #[test]
    fn keywords_are_read_in_order_and_only_from_messages_that_have_them() {
        let args = Value::Array(vec![Value::Int(1)]).to_msgpack();
        let kwargs = Value::Map(vec![("steps".into(), Value::Int(100)), ("tag".into(), Value::Str("a".into()))]).to_msgpack();
        let name = "f";
        let mut m = Message {
            struct_size: std::mem::size_of::<Message>() as u32,
            mode: MODE_THREAD,
            name: name.as_ptr().cast(),
            name_len: name.len(),
            args: args.as_ptr(),
            args_len: args.len(),
            kwargs: kwargs.as_ptr(),
            kwargs_len: kwargs.len(),
        };
        let Value::Array(got) = answer(&m) else { panic!("not an array") };
        assert_eq!(got[1], Value::Map(vec![("steps".into(), Value::Int(100)), ("tag".into(), Value::Str("a".into()))]));
        // A message of a version-2 host ends before `kwargs`: never read.
        m.struct_size = std::mem::offset_of!(Message, kwargs) as u32;
        let Value::Array(got) = answer(&m) else { panic!("not an array") };
        assert_eq!(got, [Value::Array(vec![Value::Int(1)]), Value::Map(Vec::new())]);
        // NULL: no keyword arguments.
        m.struct_size = std::mem::size_of::<Message>() as u32;
        (m.kwargs, m.kwargs_len) = (std::ptr::null(), 0);
        let Value::Array(got) = answer(&m) else { panic!("not an array") };
        assert_eq!(got[1], Value::Map(Vec::new()));
    }

    /// Runs `call` with a function that says `who` ran it (when `Some`),
    /// on a reply of `size` bytes; gives `ran_by` as the host reads it.
    fn ran_by_of(who: Option<&str>, size: usize) -> Option<String> {
        let args = Value::Array(Vec::new()).to_msgpack();
        let message = Message {
            struct_size: std::mem::size_of::<Message>() as u32,
            mode: MODE_THREAD,
            name: c"f".as_ptr(),
            name_len: 1,
            args: args.as_ptr(),
            args_len: args.len(),
            kwargs: std::ptr::null(),
            kwargs_len: 0,
        };
        let mut reply = Reply::empty();
        reply.struct_size = size as u32;
        let mut session = ();
        let run = |_: &(), _: &str, _: &[Value], _| {
            if let Some(who) = who {
                super::ran_by(who.to_owned());
            }
            Ok(Value::Nil)
        };
        // SAFETY: a live session, message and reply for the duration of the call.
        unsafe { call("test", (&mut session as *mut ()).cast(), &message, &mut reply, run) };
        let said = reply.ran_by.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect::<Vec<u8>>();
        // SAFETY: the reply `call` filled, freed once.
        unsafe { free_reply(&mut reply) };
        (!said.is_empty()).then(|| String::from_utf8(said).unwrap())
    }

    #[test]
    fn a_call_says_who_ran_it_only_in_replies_that_have_room() {
        let full = std::mem::size_of::<Reply>();
        assert_eq!(ran_by_of(Some("pid 4242"), full).as_deref(), Some("pid 4242"));
        // Nothing said, nothing carried over from the call before on this thread.
        assert_eq!(ran_by_of(None, full), None);
        // A reply of a version-4 host ends before `ran_by`: never written.
        assert_eq!(ran_by_of(Some("pid 4242"), std::mem::offset_of!(Reply, ran_by)), None);
        // Too long: cut to fit, on a character boundary, NUL-terminated.
        let long = format!("tcp://{}", "é".repeat(40));
        let got = ran_by_of(Some(&long), full).unwrap();
        assert!(got.len() < crate::RAN_BY_CAP && long.starts_with(&got), "{got}");
    }
}
