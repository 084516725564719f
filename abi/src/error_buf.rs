//! The error buffer the host hands `oxiida_plugin_init`, `session_new`,
//! `resolve` and embedding callbacks, and reading the message back: the one
//! place that pattern lives.

use std::ffi::c_char;

use crate::ERROR_CAP;

/// [`ERROR_CAP`] bytes for a NUL-terminated message written by C code.
/// Reading it back needs no `unsafe`: the message ends at the first NUL, or
/// at the end of the buffer if the writer left none.
pub struct ErrorBuf {
    bytes: [c_char; ERROR_CAP],
}

impl Default for ErrorBuf {
    fn default() -> Self {
        ErrorBuf::new()
    }
}

impl ErrorBuf {
    /// An empty (all-NUL) buffer.
    pub fn new() -> Self {
        ErrorBuf { bytes: [0; ERROR_CAP] }
    }

    /// What to pass as `error`; valid while `self` is neither moved nor dropped.
    pub fn as_mut_ptr(&mut self) -> *mut c_char {
        self.bytes.as_mut_ptr()
    }

    /// What to pass as `error_cap`: [`ERROR_CAP`].
    pub fn cap(&self) -> usize {
        self.bytes.len()
    }

    /// The message written, as UTF-8 (invalid bytes replaced); "" if none.
    pub fn message(&self) -> String {
        let end = self.bytes.iter().position(|&c| c == 0).unwrap_or(self.bytes.len());
        let bytes: Vec<u8> = self.bytes[..end].iter().map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The message written, or `fallback` when the writer wrote none.
    pub fn message_or(&self, fallback: impl FnOnce() -> String) -> String {
        let message = self.message();
        if message.is_empty() {
            fallback()
        } else {
            message
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_ends_at_its_nul_or_at_the_buffer_end() {
        let mut buf = ErrorBuf::new();
        assert_eq!(buf.message_or(|| "none".into()), "none");
        // SAFETY: the pointer and capacity are the buffer's own.
        unsafe { crate::write_error(buf.as_mut_ptr(), buf.cap(), "héllo") };
        assert_eq!(buf.message(), "héllo");
        let full = "x".repeat(ERROR_CAP);
        // SAFETY: a writer that ignores the NUL fills every byte, no more.
        unsafe { std::ptr::copy_nonoverlapping(full.as_ptr(), buf.as_mut_ptr().cast::<u8>(), ERROR_CAP) };
        assert_eq!(buf.message().len(), ERROR_CAP);
    }
}
