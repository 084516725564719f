//! The host's routine table (`oxiida_host`): how plugins read arguments and
//! build results without a MessagePack library. An `oxiida_value*` is a
//! `Box<oxiida_abi::Value>`. Every routine is guarded: a bug here becomes a
//! NULL or 0, never an unwind into C.
//!
//! Every routine is `unsafe extern "C"`: its safety contract is the one
//! `oxiida.h` states for it. In particular a value pointer is NULL or a live
//! value from this table (the readers and `get`/`take` below rely on that),
//! and a (pointer, length) pair is NULL or valid for its length.

use std::ffi::c_char;

use oxiida_abi::{self as abi, guard, OpaqueValue, Reply, Status, Value};

fn boxed(v: Value) -> *mut OpaqueValue {
    Box::into_raw(Box::new(v)).cast()
}

/// # Safety
/// `v` is NULL or a live value from this table.
unsafe fn get<'a>(v: *const OpaqueValue) -> Option<&'a Value> {
    // SAFETY: every non-NULL value pointer is a `Box<Value>` made by `boxed`
    // (or a borrow into one), live by the caller's promise.
    unsafe { v.cast::<Value>().as_ref() }
}

/// # Safety
/// `v` is NULL or a live value from this table.
unsafe fn get_mut<'a>(v: *mut OpaqueValue) -> Option<&'a mut Value> {
    // SAFETY: as in `get`; the caller owns the value, so nothing else reads it.
    unsafe { v.cast::<Value>().as_mut() }
}

/// # Safety
/// `v` is NULL or a value from this table that the caller owns.
unsafe fn take(v: *mut OpaqueValue) -> Option<Value> {
    // SAFETY: not NULL, a `Box<Value>` from `boxed`, owned by the caller, who
    // hands it over here.
    (!v.is_null()).then(|| *unsafe { Box::from_raw(v.cast::<Value>()) })
}

/// # Safety
/// `s` is NULL (then `len` must be 0) or valid for `len` bytes.
unsafe fn text(s: *const c_char, len: usize) -> String {
    if s.is_null() || len == 0 {
        return String::new();
    }
    // SAFETY: not NULL, and valid for `len` bytes by the caller's promise.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(s.cast::<u8>(), len) }).into_owned()
}

fn leak_text(s: String) -> (*const c_char, usize) {
    let b = s.into_bytes().into_boxed_slice();
    let len = b.len();
    (Box::into_raw(b).cast::<c_char>().cast_const(), len)
}

/// Frees a buffer made by `leak_text` or `reply_value`.
///
/// # Safety
/// `ptr`/`len` came from one of those and are freed once.
pub unsafe fn free_buffer(ptr: *const u8, len: usize) {
    if !ptr.is_null() {
        // SAFETY: a boxed slice of exactly `len` bytes, leaked by `leak_text`
        // or `reply_value`, freed once (the caller's promise).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr.cast_mut(), len)) });
    }
}

unsafe extern "C" fn decode(bytes: *const u8, len: usize) -> *mut OpaqueValue {
    guard(
        || {
            if bytes.is_null() {
                return std::ptr::null_mut();
            }
            // SAFETY: not NULL; the plugin passes `len` readable bytes.
            let slice = unsafe { std::slice::from_raw_parts(bytes, len) };
            Value::decode(slice).map_or(std::ptr::null_mut(), boxed)
        },
        |_| std::ptr::null_mut(),
    )
}

unsafe extern "C" fn value_free(v: *mut OpaqueValue) {
    // SAFETY: `v` is NULL or a value the caller owns and gives up.
    guard(|| drop(unsafe { take(v) }), |_| ())
}

unsafe extern "C" fn kind(v: *const OpaqueValue) -> u32 {
    // SAFETY: `v` is NULL or live (the routines' contract).
    match unsafe { get(v) } {
        None | Some(Value::Nil) => abi::KIND_NIL,
        Some(Value::Bool(_)) => abi::KIND_BOOL,
        Some(Value::Int(_)) => abi::KIND_INT,
        Some(Value::Float(_)) => abi::KIND_FLOAT,
        Some(Value::Str(_)) => abi::KIND_STRING,
        Some(Value::Array(_)) => abi::KIND_ARRAY,
        Some(Value::Map(_)) => abi::KIND_MAP,
        Some(Value::Handle { .. }) => abi::KIND_HANDLE,
    }
}

unsafe extern "C" fn as_bool(v: *const OpaqueValue) -> i32 {
    // SAFETY: `v` is NULL or live (the routines' contract).
    matches!(unsafe { get(v) }, Some(Value::Bool(true))) as i32
}

unsafe extern "C" fn as_int(v: *const OpaqueValue) -> i64 {
    // SAFETY: `v` is NULL or live (the routines' contract).
    match unsafe { get(v) } {
        Some(Value::Int(i)) => *i,
        _ => 0,
    }
}

unsafe extern "C" fn as_float(v: *const OpaqueValue) -> f64 {
    // SAFETY: `v` is NULL or live (the routines' contract).
    match unsafe { get(v) } {
        Some(Value::Float(x)) => *x,
        Some(Value::Int(i)) => *i as f64,
        _ => 0.0,
    }
}

unsafe extern "C" fn as_string(v: *const OpaqueValue, len: *mut usize) -> *const c_char {
    // SAFETY: `v` is NULL or live (the routines' contract).
    let (ptr, n) = match unsafe { get(v) } {
        Some(Value::Str(s)) => (s.as_ptr().cast::<c_char>(), s.len()),
        _ => (std::ptr::null(), 0),
    };
    if !len.is_null() {
        // SAFETY: a non-NULL `len` is writable (the header's contract).
        unsafe { *len = n };
    }
    ptr
}

unsafe extern "C" fn len(v: *const OpaqueValue) -> usize {
    // SAFETY: `v` is NULL or live (the routines' contract).
    match unsafe { get(v) } {
        Some(Value::Str(s)) => s.len(),
        Some(Value::Array(items)) => items.len(),
        Some(Value::Map(entries)) => entries.len(),
        _ => 0,
    }
}

unsafe extern "C" fn item(v: *const OpaqueValue, i: usize) -> *const OpaqueValue {
    // SAFETY: `v` is NULL or live (the routines' contract).
    let found = match unsafe { get(v) } {
        Some(Value::Array(items)) => items.get(i),
        Some(Value::Map(entries)) => entries.get(i).map(|(_, v)| v),
        _ => None,
    };
    found.map_or(std::ptr::null(), |v| (v as *const Value).cast())
}

unsafe extern "C" fn key(v: *const OpaqueValue, i: usize, len: *mut usize) -> *const c_char {
    // SAFETY: `v` is NULL or live (the routines' contract).
    let (ptr, n) = match unsafe { get(v) } {
        Some(Value::Map(entries)) if i < entries.len() => (entries[i].0.as_ptr().cast::<c_char>(), entries[i].0.len()),
        _ => (std::ptr::null(), 0),
    };
    if !len.is_null() {
        // SAFETY: a non-NULL `len` is writable (the header's contract).
        unsafe { *len = n };
    }
    ptr
}

unsafe extern "C" fn new_nil() -> *mut OpaqueValue {
    boxed(Value::Nil)
}

unsafe extern "C" fn new_bool(b: i32) -> *mut OpaqueValue {
    boxed(Value::Bool(b != 0))
}

unsafe extern "C" fn new_int(i: i64) -> *mut OpaqueValue {
    boxed(Value::Int(i))
}

unsafe extern "C" fn new_float(x: f64) -> *mut OpaqueValue {
    boxed(Value::Float(x))
}

unsafe extern "C" fn new_string(s: *const c_char, len: usize) -> *mut OpaqueValue {
    // SAFETY: `s` is NULL or valid for `len` bytes (the header's contract).
    guard(|| boxed(Value::Str(unsafe { text(s, len) })), |_| std::ptr::null_mut())
}

unsafe extern "C" fn new_array() -> *mut OpaqueValue {
    boxed(Value::Array(Vec::new()))
}

unsafe extern "C" fn new_map() -> *mut OpaqueValue {
    boxed(Value::Map(Vec::new()))
}

unsafe extern "C" fn push(array: *mut OpaqueValue, item: *mut OpaqueValue) -> i32 {
    guard(
        || {
            // SAFETY: `item` is NULL or owned by the caller, who hands it over.
            let item = unsafe { take(item) }.unwrap_or(Value::Nil);
            // SAFETY: `array` is NULL or a live value the caller owns.
            match unsafe { get_mut(array) } {
                Some(Value::Array(items)) => {
                    items.push(item);
                    0
                }
                _ => -1,
            }
        },
        |_| -1,
    )
}

unsafe extern "C" fn insert(map: *mut OpaqueValue, k: *const c_char, key_len: usize, item: *mut OpaqueValue) -> i32 {
    guard(
        || {
            // SAFETY: `item` is NULL or owned by the caller, who hands it over.
            let item = unsafe { take(item) }.unwrap_or(Value::Nil);
            // SAFETY: `map` is NULL or a live value the caller owns.
            let Some(Value::Map(entries)) = (unsafe { get_mut(map) }) else { return -1 };
            // SAFETY: `k` is NULL or valid for `key_len` bytes.
            let k = unsafe { text(k, key_len) };
            match entries.iter_mut().find(|(have, _)| *have == k) {
                Some((_, slot)) => *slot = item,
                None => entries.push((k, item)),
            }
            0
        },
        |_| -1,
    )
}

unsafe extern "C" fn reply_value(reply: *mut Reply, value: *mut OpaqueValue) -> i32 {
    guard(
        || {
            // SAFETY: `value` is NULL or owned by the caller, who hands it over.
            let value = unsafe { take(value) }.unwrap_or(Value::Nil);
            // SAFETY: `reply` is NULL or the reply of the running call.
            let Some(reply) = (unsafe { reply.as_mut() }) else { return -1 };
            if !value.fits_depth() {
                fill_error(reply, Status::BadResult, Value::too_deep("the result"), None);
                return -1;
            }
            let bytes = value.to_msgpack().into_boxed_slice();
            reply.value_len = bytes.len();
            reply.value = Box::into_raw(bytes).cast::<u8>();
            reply.status = Status::Ok.into();
            reply.host_owned |= abi::OWNED_VALUE;
            0
        },
        |_| -1,
    )
}

unsafe extern "C" fn reply_error(
    reply: *mut Reply,
    status: u32,
    message: *const c_char,
    message_len: usize,
    tb: *const c_char,
    tb_len: usize,
) -> i32 {
    guard(
        || {
            // SAFETY: `reply` is NULL or the reply of the running call.
            let Some(reply) = (unsafe { reply.as_mut() }) else { return -1 };
            // SAFETY: `message` is NULL or valid for `message_len` bytes.
            let message = unsafe { text(message, message_len) };
            // SAFETY: `tb` is NULL or valid for `tb_len` bytes.
            let traceback = (!tb.is_null()).then(|| unsafe { text(tb, tb_len) });
            fill_error(reply, status, message, traceback);
            0
        },
        |_| -1,
    )
}

unsafe extern "C" fn new_handle(id: u64, type_name: *const c_char, len: usize) -> *mut OpaqueValue {
    // SAFETY: `type_name` is NULL or valid for `len` bytes (the header's contract).
    guard(|| boxed(Value::handle(id, &unsafe { text(type_name, len) })), |_| std::ptr::null_mut())
}

unsafe extern "C" fn handle_id(v: *const OpaqueValue) -> u64 {
    // SAFETY: `v` is NULL or live (the routines' contract).
    match unsafe { get(v) } {
        Some(Value::Handle { id, .. }) => *id,
        _ => 0,
    }
}

unsafe extern "C" fn handle_type(v: *const OpaqueValue, len: *mut usize) -> *const c_char {
    // SAFETY: `v` is NULL or live (the routines' contract).
    let (ptr, n) = match unsafe { get(v) } {
        Some(Value::Handle { type_name, .. }) => (type_name.as_ptr().cast::<c_char>(), type_name.len()),
        _ => (std::ptr::null(), 0),
    };
    if !len.is_null() {
        // SAFETY: a non-NULL `len` is writable (the header's contract).
        unsafe { *len = n };
    }
    ptr
}

/// Answers `reply` with an error in buffers the host owns (an OK status
/// becomes Internal: an error is never OK).
fn fill_error(reply: &mut Reply, status: impl Into<u32>, message: String, traceback: Option<String>) {
    let status = status.into();
    reply.status = if status == u32::from(Status::Ok) { Status::Internal.into() } else { status };
    (reply.message, reply.message_len) = leak_text(message);
    reply.host_owned |= abi::OWNED_MESSAGE;
    if let Some(tb) = traceback {
        (reply.traceback, reply.traceback_len) = leak_text(tb);
        reply.host_owned |= abi::OWNED_TRACEBACK;
    }
}

/// The one routine table, shared by every plugin for the life of the process.
pub static HOST: abi::Host = abi::Host {
    abi_version: abi::OXIIDA_ABI_VERSION,
    struct_size: std::mem::size_of::<abi::Host>() as u32,
    decode,
    value_free,
    kind,
    as_bool,
    as_int,
    as_float,
    as_string,
    len,
    item,
    key,
    new_nil,
    new_bool,
    new_int,
    new_float,
    new_string,
    new_array,
    new_map,
    push,
    insert,
    reply_value,
    reply_error,
    new_handle,
    handle_id,
    handle_type,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_made_and_read_by_the_routines() {
        let name = "DataFrame";
        // SAFETY: a name valid for its length; the value is freed once below.
        let h = unsafe { new_handle(42, name.as_ptr().cast(), name.len()) };
        let mut n = 0;
        // SAFETY: a live value from this table, and a writable length.
        unsafe {
            assert_eq!(kind(h), abi::KIND_HANDLE);
            assert_eq!(handle_id(h), 42);
            let ty = handle_type(h, &mut n);
            assert_eq!(text(ty, n), "DataFrame");
            let one = new_int(1);
            assert_eq!(handle_id(one), 0);
            assert!(handle_type(one, &mut n).is_null());
            assert_eq!(n, 0);
            value_free(one);
            value_free(h);
        }
    }

    #[test]
    fn a_result_too_deep_to_decode_is_refused_where_it_is_built() {
        let build = |levels: usize| {
            (0..levels).fold(
                // SAFETY: the routines' own values, each handed on once.
                unsafe { new_nil() },
                |inner, _| unsafe {
                    // SAFETY: as above.
                    let a = new_array();
                    assert_eq!(push(a, inner), 0);
                    a
                },
            )
        };
        for (levels, answer) in [(abi::MAX_DEPTH, 0), (abi::MAX_DEPTH + 1, -1)] {
            let mut reply = Reply::empty();
            // SAFETY: a live reply and a value this test owns.
            assert_eq!(unsafe { reply_value(&mut reply, build(levels)) }, answer);
            let parts = [(reply.value, reply.value_len), (reply.message.cast(), reply.message_len)];
            if answer == 0 {
                assert_eq!(reply.status, u32::from(Status::Ok));
                // SAFETY: the buffer reply_value filled.
                let bytes = unsafe { std::slice::from_raw_parts(reply.value, reply.value_len) };
                assert!(Value::decode(bytes).is_ok(), "what reply_value encodes decodes");
            } else {
                assert_eq!(reply.status, u32::from(Status::BadResult));
                // SAFETY: the buffer reply_value filled.
                let message = unsafe { text(reply.message, reply.message_len) };
                assert!(message.contains("more than 128 levels"), "{message}");
            }
            for (ptr, len) in parts {
                // SAFETY: buffers this reply owns, freed once.
                unsafe { free_buffer(ptr, len) };
            }
        }
    }
}
