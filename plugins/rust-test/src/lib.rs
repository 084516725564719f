//! A plugin in Rust, used by the test suite. It answers with buffers it
//! allocates itself (freed by `oxiida_abi::serve::reply_free`), unlike the C example which uses
//! the host's buffers, and its `boom` function panics: `guard` turns the panic
//! into an error reply instead of unwinding into the host. `hang(path)`
//! creates the file `path`, then never returns: the tests of bounded
//! cancellation need a call that ignores every way of stopping it. `abort()`
//! aborts the whole process (SIGABRT), as a crashing plugin would, and
//! `segfault()` kills it with SIGSEGV, as a bad pointer would. It declares
//! `CAP_KEYWORDS`: `echo_kw(...)` answers `[arguments, keyword arguments]`,
//! the second a Map in the order the host sent it. `handle(id)` answers a
//! handle (ABI version 4) of type `Thing`, one reference more for the host;
//! `handle_id(h)` the id of a handle it is given; `refs()` the references
//! the host holds, by id, as the releases it received left them.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_void};

use oxiida_abi::{self as abi, guard, serve, write_error, Status, Value};

const NAMES: &[&str] = &["double", "boom", "echo", "echo_kw", "hang", "abort", "segfault", "handle", "handle_id", "refs"];

/// References to handles the host holds, by id (process-wide).
static REFS: std::sync::Mutex<Vec<(u64, i64)>> = std::sync::Mutex::new(Vec::new());

fn count(id: u64, by: i64) {
    let mut refs = REFS.lock().unwrap_or_else(|p| p.into_inner());
    match refs.iter_mut().find(|(i, _)| *i == id) {
        Some((_, n)) => *n += by,
        None => refs.push((id, by)),
    }
    refs.retain(|(_, n)| *n != 0);
}

unsafe extern "C" fn handle_release(_session: *mut c_void, id: u64) {
    guard(|| count(id, -1), |_| ());
}

unsafe extern "C" fn session_new(_config: *const c_char, _len: usize, session: *mut *mut c_void, _e: *mut c_char, _cap: usize) -> i32 {
    // SAFETY: the host passes a valid `void **` (oxiida.h).
    unsafe { *session = std::ptr::null_mut() };
    0
}

unsafe extern "C" fn session_free(_session: *mut c_void) {}

unsafe extern "C" fn resolve(_session: *mut c_void, name: *const c_char, len: usize, error: *mut c_char, cap: usize) -> u32 {
    // SAFETY: the host passes the name as a valid (pointer, length) pair.
    let name = unsafe { serve::text(name, len) };
    if NAMES.contains(&name) {
        return Status::Ok.into();
    }
    // SAFETY: the host passes `error` valid for `cap` bytes.
    unsafe { write_error(error, cap, "the Rust test plugin has no such function") };
    Status::NotFound.into()
}

fn run(name: &str, args: &[u8], kwargs: &[u8]) -> Result<Value, String> {
    let Value::Array(args) = Value::decode(args).map_err(|e| e.to_string())? else { return Err("arguments are not an array".into()) };
    let kwargs = match kwargs {
        [] => Value::Map(Vec::new()),
        bytes => match Value::decode(bytes).map_err(|e| e.to_string())? {
            map @ Value::Map(_) => map,
            _ => return Err("keyword arguments are not a map".into()),
        },
    };
    match name {
        "echo_kw" => Ok(Value::Array(vec![Value::Array(args), kwargs])),
        "handle" => match args.first() {
            Some(Value::Int(id)) => {
                count(*id as u64, 1);
                Ok(Value::handle(*id as u64, "Thing"))
            }
            _ => Err("handle takes an Int".into()),
        },
        "handle_id" => match args.first() {
            Some(Value::Handle { id, .. }) => Ok(Value::Int(*id as i64)),
            _ => Err("handle_id takes a handle".into()),
        },
        "refs" => {
            let refs = REFS.lock().unwrap_or_else(|p| p.into_inner());
            Ok(Value::Map(refs.iter().map(|(id, n)| (id.to_string(), Value::Int(*n))).collect()))
        }
        "double" => match args.first() {
            Some(Value::Int(i)) => Ok(Value::Int(i * 2)),
            _ => Err("double takes an Int".into()),
        },
        // Its argument back, or (with a second Int argument n) wrapped in n Arrays more.
        "echo" => {
            let wraps = match args.get(1) {
                Some(Value::Int(n)) => *n,
                _ => 0,
            };
            Ok((0..wraps).fold(args.first().cloned().unwrap_or(Value::Nil), |v, _| Value::Array(vec![v])))
        }
        "hang" => match args.first() {
            Some(Value::Str(path)) => {
                std::fs::write(path, b"hanging\n").map_err(|e| format!("cannot create {path}: {e}"))?;
                // Parked threads may wake spuriously; none ever returns.
                loop {
                    std::thread::park();
                }
            }
            _ => Err("hang takes the path of a file to create".into()),
        },
        "boom" => panic!("boom was called with {} arguments", args.len()),
        // Takes its whole process down, as a crashing plugin would.
        "abort" => std::process::abort(),
        "segfault" => {
            // SAFETY: signal and raise take plain integers. Rust's own
            // SIGSEGV handler (stack overflow detection) returns for a
            // signal that is not a fault, so the default action is put
            // back first: it ends the process, which is what this is for.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
            Err("SIGSEGV did not end the process".into())
        }
        _ => Err("no such function".into()),
    }
}

unsafe extern "C" fn call(_session: *mut c_void, message: *const abi::Message, reply: *mut abi::Reply) {
    // SAFETY: the host's message and reply are valid during the call.
    let (m, reply) = unsafe { (&*message, &mut *reply) };
    // SAFETY: the message's (pointer, length) pairs are valid during the call.
    let (name, args) = unsafe { (serve::text(m.name, m.name_len), std::slice::from_raw_parts(m.args, m.args_len)) };
    let kwargs = if m.has_kwargs_field() && !m.kwargs.is_null() {
        // SAFETY: as above: the message is long enough to have the pair, and
        // a non-NULL `kwargs` is valid for `kwargs_len` bytes.
        unsafe { std::slice::from_raw_parts(m.kwargs, m.kwargs_len) }
    } else {
        &[]
    };
    let answer = guard(
        || run(name, args, kwargs).map_err(|e| (Status::BadArguments, e)),
        |panic| Err((Status::Internal, format!("the plugin panicked: {panic}"))),
    );
    match answer {
        Ok(v) => abi::reply_value(reply, &v),
        Err((status, message)) => abi::reply_error(reply, status, &message, None),
    }
}

static PLUGIN: abi::Plugin =
    abi::Plugin::rust(c"rust-test", abi::CAP_CONCURRENT_CALLS | abi::CAP_KEYWORDS, session_new, session_free, resolve, call)
        .with_release(handle_release);

/// # Safety
/// Called by the oxiida host as `oxiida.h` describes.
#[no_mangle]
pub unsafe extern "C" fn oxiida_plugin_init(_host: *const abi::Host, _error: *mut c_char, _cap: usize) -> *const abi::Plugin {
    &PLUGIN
}
