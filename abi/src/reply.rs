//! Filling a reply with buffers the plugin owns, for plugins in Rust. Pair
//! every reply filled here with [`free_reply`] in the plugin's `reply_free`.

use std::ffi::c_char;

use crate::{Reply, Status, Value};

fn leak(bytes: Vec<u8>) -> (*const u8, usize) {
    let b = bytes.into_boxed_slice();
    let len = b.len();
    (Box::into_raw(b).cast::<u8>().cast_const(), len)
}

/// Answers OK with `value`; a value nested deeper than [`MAX_DEPTH`](crate::MAX_DEPTH) is
/// answered as a `BadResult` error instead (`BadArguments` before ABI version
/// 4), as the host's `reply_value` does.
pub fn reply_value(reply: &mut Reply, value: &Value) {
    if !value.fits_depth() {
        return reply_error(reply, Status::BadResult, &Value::too_deep("the result"), None);
    }
    reply.status = Status::Ok.into();
    (reply.value, reply.value_len) = leak(value.to_msgpack());
}

/// Answers with an error of kind `status` (`Ok` becomes `Internal`: an
/// error reply is never OK).
pub fn reply_error(reply: &mut Reply, status: Status, message: &str, traceback: Option<&str>) {
    reply.status = if status == Status::Ok { Status::Internal } else { status }.into();
    let (m, n) = leak(message.as_bytes().to_vec());
    (reply.message, reply.message_len) = (m.cast::<c_char>(), n);
    if let Some(tb) = traceback {
        let (t, n) = leak(tb.as_bytes().to_vec());
        (reply.traceback, reply.traceback_len) = (t.cast::<c_char>(), n);
    }
}

/// Frees what [`reply_value`] and [`reply_error`] allocated.
///
/// # Safety
/// `reply` was filled only by those two functions and is freed once.
pub unsafe fn free_reply(reply: &mut Reply) {
    let parts = [
        (reply.value, reply.value_len),
        (reply.message.cast::<u8>(), reply.message_len),
        (reply.traceback.cast::<u8>(), reply.traceback_len),
    ];
    for (ptr, len) in parts {
        if !ptr.is_null() {
            // SAFETY: allocated by `leak` with this length.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr.cast_mut(), len)) });
        }
    }
    reply.value = std::ptr::null();
    reply.message = std::ptr::null();
    reply.traceback = std::ptr::null();
}
