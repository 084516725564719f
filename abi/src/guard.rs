//! Keeping panics on the Rust side of an `extern "C"` boundary.

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; if it panics, returns `on_panic(message)` instead of unwinding
/// into C, which would be undefined behaviour.
pub fn guard<T>(f: impl FnOnce() -> T, on_panic: impl FnOnce(String) -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with a non-string payload".into());
            on_panic(message)
        }
    }
}

/// Writes `text` into a C buffer of `cap` bytes, truncated on a character
/// boundary and NUL-terminated. Does nothing when `buf` is NULL or `cap` is 0.
///
/// # Safety
/// `buf` must be NULL or valid for `cap` bytes of writes.
pub unsafe fn write_error(buf: *mut c_char, cap: usize, text: &str) {
    if buf.is_null() || cap == 0 {
        return;
    }
    let mut n = text.len().min(cap - 1);
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: n < cap and the caller promised cap writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_values() {
        let r = guard(|| -> i32 { panic!("boom {}", 1) }, |m| if m == "boom 1" { 7 } else { 0 });
        assert_eq!(r, 7);
        assert_eq!(guard(|| 3, |_| 0), 3);
    }

    #[test]
    fn errors_are_truncated_on_char_boundaries() {
        let mut buf = [1 as c_char; 5];
        // SAFETY: the buffer holds the 5 bytes promised.
        unsafe { write_error(buf.as_mut_ptr(), buf.len(), "héllo") };
        let bytes: Vec<u8> = buf.iter().map(|&c| c as u8).collect();
        assert_eq!(&bytes[..4], "hél".as_bytes());
        assert_eq!(bytes[4], 0);
    }
}
