//! The host's routine table (`oxiida_host`): how plugins read arguments and
//! build results without a MessagePack library. An `oxiida_value*` is a
//! `Box<oxiida_abi::Value>`. Every routine is guarded: a bug here becomes a
//! NULL or 0, never an unwind into C.

use std::ffi::c_char;

use oxiida_abi::{self as abi, guard, OpaqueValue, Reply, Value};

fn boxed(v: Value) -> *mut OpaqueValue {
    Box::into_raw(Box::new(v)).cast()
}

/// # Safety
/// `v` is NULL or a live value from this table.
unsafe fn get<'a>(v: *const OpaqueValue) -> Option<&'a Value> {
    unsafe { v.cast::<Value>().as_ref() }
}

/// # Safety
/// `v` is NULL or a live value from this table.
unsafe fn get_mut<'a>(v: *mut OpaqueValue) -> Option<&'a mut Value> {
    unsafe { v.cast::<Value>().as_mut() }
}

/// # Safety
/// `v` is NULL or a value from this table that the caller owns.
unsafe fn take(v: *mut OpaqueValue) -> Option<Value> {
    (!v.is_null()).then(|| *unsafe { Box::from_raw(v.cast::<Value>()) })
}

/// # Safety
/// `s` is NULL (then `len` must be 0) or valid for `len` bytes.
unsafe fn text(s: *const c_char, len: usize) -> String {
    if s.is_null() || len == 0 {
        return String::new();
    }
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
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr.cast_mut(), len)) });
    }
}

unsafe extern "C" fn decode(bytes: *const u8, len: usize) -> *mut OpaqueValue {
    guard(
        || {
            if bytes.is_null() {
                return std::ptr::null_mut();
            }
            let slice = unsafe { std::slice::from_raw_parts(bytes, len) };
            Value::decode(slice).map_or(std::ptr::null_mut(), boxed)
        },
        |_| std::ptr::null_mut(),
    )
}

unsafe extern "C" fn value_free(v: *mut OpaqueValue) {
    guard(|| drop(unsafe { take(v) }), |_| ())
}

unsafe extern "C" fn kind(v: *const OpaqueValue) -> u32 {
    match unsafe { get(v) } {
        None | Some(Value::Nil) => abi::KIND_NIL,
        Some(Value::Bool(_)) => abi::KIND_BOOL,
        Some(Value::Int(_)) => abi::KIND_INT,
        Some(Value::Float(_)) => abi::KIND_FLOAT,
        Some(Value::Str(_)) => abi::KIND_STRING,
        Some(Value::Array(_)) => abi::KIND_ARRAY,
        Some(Value::Map(_)) => abi::KIND_MAP,
    }
}

unsafe extern "C" fn as_bool(v: *const OpaqueValue) -> i32 {
    matches!(unsafe { get(v) }, Some(Value::Bool(true))) as i32
}

unsafe extern "C" fn as_int(v: *const OpaqueValue) -> i64 {
    match unsafe { get(v) } {
        Some(Value::Int(i)) => *i,
        _ => 0,
    }
}

unsafe extern "C" fn as_float(v: *const OpaqueValue) -> f64 {
    match unsafe { get(v) } {
        Some(Value::Float(x)) => *x,
        Some(Value::Int(i)) => *i as f64,
        _ => 0.0,
    }
}

unsafe extern "C" fn as_string(v: *const OpaqueValue, len: *mut usize) -> *const c_char {
    let (ptr, n) = match unsafe { get(v) } {
        Some(Value::Str(s)) => (s.as_ptr().cast::<c_char>(), s.len()),
        _ => (std::ptr::null(), 0),
    };
    if !len.is_null() {
        unsafe { *len = n };
    }
    ptr
}

unsafe extern "C" fn len(v: *const OpaqueValue) -> usize {
    match unsafe { get(v) } {
        Some(Value::Str(s)) => s.len(),
        Some(Value::Array(items)) => items.len(),
        Some(Value::Map(entries)) => entries.len(),
        _ => 0,
    }
}

unsafe extern "C" fn item(v: *const OpaqueValue, i: usize) -> *const OpaqueValue {
    let found = match unsafe { get(v) } {
        Some(Value::Array(items)) => items.get(i),
        Some(Value::Map(entries)) => entries.get(i).map(|(_, v)| v),
        _ => None,
    };
    found.map_or(std::ptr::null(), |v| (v as *const Value).cast())
}

unsafe extern "C" fn key(v: *const OpaqueValue, i: usize, len: *mut usize) -> *const c_char {
    let (ptr, n) = match unsafe { get(v) } {
        Some(Value::Map(entries)) if i < entries.len() => (entries[i].0.as_ptr().cast::<c_char>(), entries[i].0.len()),
        _ => (std::ptr::null(), 0),
    };
    if !len.is_null() {
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
            let item = unsafe { take(item) }.unwrap_or(Value::Nil);
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
            let item = unsafe { take(item) }.unwrap_or(Value::Nil);
            let Some(Value::Map(entries)) = (unsafe { get_mut(map) }) else { return -1 };
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
            let value = unsafe { take(value) }.unwrap_or(Value::Nil);
            let Some(reply) = (unsafe { reply.as_mut() }) else { return -1 };
            let bytes = value.to_msgpack().into_boxed_slice();
            reply.value_len = bytes.len();
            reply.value = Box::into_raw(bytes).cast::<u8>();
            reply.status = abi::STATUS_OK;
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
            let Some(reply) = (unsafe { reply.as_mut() }) else { return -1 };
            reply.status = if status == abi::STATUS_OK { abi::STATUS_INTERNAL } else { status };
            (reply.message, reply.message_len) = leak_text(unsafe { text(message, message_len) });
            reply.host_owned |= abi::OWNED_MESSAGE;
            if !tb.is_null() {
                (reply.traceback, reply.traceback_len) = leak_text(unsafe { text(tb, tb_len) });
                reply.host_owned |= abi::OWNED_TRACEBACK;
            }
            0
        },
        |_| -1,
    )
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
};
