//! The stable C ABI between the oxiida runtime and its language plugins:
//! the `#[repr(C)]` mirror of `include/oxiida.h`, plus small safe helpers for
//! plugin authors writing in Rust (a MessagePack [`Value`] codec and a
//! [`guard`] that keeps panics from crossing `extern "C"`).
//!
//! This crate depends on nothing in the runtime and has no async code. The
//! header is the specification; `tests/header.rs` compiles C against it and
//! checks that every size, offset and constant here agrees.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::ffi::{c_char, c_void};

mod error_buf;
pub mod frame;
mod guard;
pub mod pool;
mod reply;
pub mod serve;
mod status;
mod value;

pub use error_buf::ErrorBuf;
pub use guard::{guard, write_error};
pub use reply::{free_reply, reply_error, reply_value};
pub use serve::Failure;
pub use status::{Status, UnknownStatus};
pub use value::{DecodeError, Reader, Value, HANDLE_EXT, HANDLE_TYPE_MAX};

/// `OXIIDA_ABI_VERSION`. 2 added `oxiida_error_free`, `OXIIDA_MAX_DEPTH` and
/// `OXIIDA_ERROR_CAP`; the tables are those of version 1. 3 appended the
/// keyword arguments to [`Message`] (`kwargs`, `kwargs_len`), added
/// [`CAP_KEYWORDS`] and liboxiida's `oxiida_runtime_register_kw`; plugins of
/// versions 1 and 2 load unchanged and get no keyword arguments. 4 added
/// handles: [`Value::Handle`] (MessagePack extension type [`HANDLE_EXT`]),
/// [`KIND_HANDLE`], [`Status::BadResult`], the host's `new_handle`,
/// `handle_id` and `handle_type`, the plugin's `handle_release`,
/// `session_cancel` and `fingerprint`, and [`FINGERPRINT_CAP`];
/// older plugins load unchanged and are never sent a handle. 5 appended
/// [`Reply::ran_by`] (and [`RAN_BY_CAP`]): a plugin may say who ran a call
/// (a worker process's pid, a remote worker's address); older plugins leave
/// it empty and older hosts' replies end before it.
pub const OXIIDA_ABI_VERSION: u32 = 5;
/// The first ABI version whose replies carry [`Reply::ran_by`].
pub const RAN_BY_SINCE: u32 = 5;
/// The first ABI version whose plugins may declare [`CAP_KEYWORDS`].
pub const KEYWORDS_SINCE: u32 = 3;
/// The first ABI version whose plugins may make handles.
pub const HANDLES_SINCE: u32 = 4;
pub const OXIIDA_ABI_MIN_COMPATIBLE: u32 = 1;
pub const PLUGIN_INIT_SYMBOL: &str = "oxiida_plugin_init";

pub const KIND_NIL: u32 = 0;
pub const KIND_BOOL: u32 = 1;
pub const KIND_INT: u32 = 2;
pub const KIND_FLOAT: u32 = 3;
pub const KIND_STRING: u32 = 4;
pub const KIND_ARRAY: u32 = 5;
pub const KIND_MAP: u32 = 6;
/// `OXIIDA_HANDLE` (version 4): a plugin-owned handle.
pub const KIND_HANDLE: u32 = 7;

pub const MODE_THREAD: u32 = 0;
pub const MODE_PROCESS: u32 = 1;

// The header's OXIIDA_STATUS_* as [`Status`] values (`u32::from` gives the
// number): kept so that `Failure { status: STATUS_RAISED, .. }` reads as before.
pub const STATUS_OK: Status = Status::Ok;
pub const STATUS_NOT_FOUND: Status = Status::NotFound;
pub const STATUS_BAD_ARGUMENTS: Status = Status::BadArguments;
pub const STATUS_RAISED: Status = Status::Raised;
pub const STATUS_WORKER_CRASHED: Status = Status::WorkerCrashed;
pub const STATUS_INTERNAL: Status = Status::Internal;
pub const STATUS_BAD_RESULT: Status = Status::BadResult;

/// `OXIIDA_MAX_DEPTH`: how deeply values that cross the ABI may nest. Every
/// Array or Map is one level (`[[1]]` is 2, `1` is 0). The host sends nothing
/// deeper, `decode` accepts everything up to it, and a deeper result is
/// refused where it is built (`reply_value`), never as a malformed reply.
pub const MAX_DEPTH: usize = 128;

/// `OXIIDA_ERROR_CAP`: the size of every error buffer the host hands a
/// plugin or a callback, the terminating NUL included.
pub const ERROR_CAP: usize = 1024;

/// `OXIIDA_FINGERPRINT_CAP` (version 4): the size of the buffer the host
/// hands `Plugin::fingerprint`.
pub const FINGERPRINT_CAP: usize = 64;

/// `OXIIDA_RAN_BY_CAP` (version 5): the size of [`Reply::ran_by`], the
/// terminating NUL included.
pub const RAN_BY_CAP: usize = 64;

/// `OXIIDA_ERROR_*`: the stage of an embedding error (`oxiida_error_stage`).
pub const ERROR_USAGE: u32 = 0;
pub const ERROR_SYNTAX: u32 = 1;
pub const ERROR_RESOLVE: u32 = 2;
pub const ERROR_RUNTIME: u32 = 3;

pub const CAP_CONCURRENT_CALLS: u32 = 1 << 0;
pub const CAP_PROCESS_MODE: u32 = 1 << 1;
/// `OXIIDA_CAP_KEYWORDS` (version 3): the plugin reads `Message::kwargs`, so
/// calls to it may pass keyword arguments; without it they are refused
/// before the workflow runs.
pub const CAP_KEYWORDS: u32 = 1 << 2;

pub const OWNED_VALUE: u32 = 1 << 0;
pub const OWNED_MESSAGE: u32 = 1 << 1;
pub const OWNED_TRACEBACK: u32 = 1 << 2;

/// `oxiida_message`: one foreign call, owned by the host.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Message {
    pub struct_size: u32,
    pub mode: u32,
    pub name: *const c_char,
    pub name_len: usize,
    pub args: *const u8,
    pub args_len: usize,
    /// Version 3: the keyword arguments, one MessagePack map in the order
    /// written; NULL and 0 when the call passes none.
    pub kwargs: *const u8,
    pub kwargs_len: usize,
}

impl Message {
    /// Whether this message is long enough to carry `kwargs` (a host of
    /// version 3 or newer built it): what a plugin checks before reading it.
    pub fn has_kwargs_field(&self) -> bool {
        self.struct_size as usize >= std::mem::offset_of!(Message, kwargs_len) + std::mem::size_of::<usize>()
    }
}

/// `oxiida_reply`: the answer to one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub struct_size: u32,
    pub status: u32,
    pub value: *const u8,
    pub value_len: usize,
    pub message: *const c_char,
    pub message_len: usize,
    pub traceback: *const c_char,
    pub traceback_len: usize,
    pub host_owned: u32,
    pub plugin_data: *mut c_void,
    /// Version 5: who ran the call, as NUL-terminated UTF-8 text (`pid 4242`
    /// for a worker process, `tcp://10.0.0.5:40123` for a Dask worker);
    /// empty (zeroed by the host) when the plugin ran it in the host's own
    /// process or does not say. Written only when `struct_size` covers it.
    pub ran_by: [c_char; RAN_BY_CAP],
}

impl Reply {
    /// What the host hands a plugin: zeroed, with its size set.
    pub fn empty() -> Self {
        Reply {
            struct_size: std::mem::size_of::<Reply>() as u32,
            status: Status::Ok as u32,
            value: std::ptr::null(),
            value_len: 0,
            message: std::ptr::null(),
            message_len: 0,
            traceback: std::ptr::null(),
            traceback_len: 0,
            host_owned: 0,
            plugin_data: std::ptr::null_mut(),
            ran_by: [0; RAN_BY_CAP],
        }
    }

    /// Whether this reply is long enough to carry `ran_by` (a host of
    /// version 5 or newer made it): what a plugin checks before writing it.
    pub fn has_ran_by_field(&self) -> bool {
        self.struct_size as usize >= std::mem::offset_of!(Reply, ran_by) + RAN_BY_CAP
    }

    /// Writes `who` into `ran_by` (cut at a character boundary to fit, NUL
    /// added) when the reply has the field; otherwise does nothing.
    pub fn set_ran_by(&mut self, who: &str) {
        if !self.has_ran_by_field() {
            return;
        }
        let mut end = who.len().min(RAN_BY_CAP - 1);
        while !who.is_char_boundary(end) {
            end -= 1;
        }
        for (slot, &b) in self.ran_by.iter_mut().zip(&who.as_bytes()[..end]) {
            *slot = b as c_char;
        }
        self.ran_by[end] = 0;
    }

    /// `ran_by` as text: `None` when empty, or when the reply has no such field.
    pub fn ran_by(&self) -> Option<String> {
        if !self.has_ran_by_field() || self.ran_by[0] == 0 {
            return None;
        }
        let bytes: Vec<u8> = self.ran_by.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// `oxiida_value`: opaque to plugins.
#[repr(C)]
pub struct OpaqueValue {
    _private: [u8; 0],
}

/// `oxiida_host`: the routines the host offers every plugin.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Host {
    pub abi_version: u32,
    pub struct_size: u32,
    pub decode: unsafe extern "C" fn(bytes: *const u8, len: usize) -> *mut OpaqueValue,
    pub value_free: unsafe extern "C" fn(value: *mut OpaqueValue),
    pub kind: unsafe extern "C" fn(value: *const OpaqueValue) -> u32,
    pub as_bool: unsafe extern "C" fn(value: *const OpaqueValue) -> i32,
    pub as_int: unsafe extern "C" fn(value: *const OpaqueValue) -> i64,
    pub as_float: unsafe extern "C" fn(value: *const OpaqueValue) -> f64,
    pub as_string: unsafe extern "C" fn(value: *const OpaqueValue, len: *mut usize) -> *const c_char,
    pub len: unsafe extern "C" fn(value: *const OpaqueValue) -> usize,
    pub item: unsafe extern "C" fn(value: *const OpaqueValue, i: usize) -> *const OpaqueValue,
    pub key: unsafe extern "C" fn(value: *const OpaqueValue, i: usize, len: *mut usize) -> *const c_char,
    pub new_nil: unsafe extern "C" fn() -> *mut OpaqueValue,
    pub new_bool: unsafe extern "C" fn(b: i32) -> *mut OpaqueValue,
    pub new_int: unsafe extern "C" fn(i: i64) -> *mut OpaqueValue,
    pub new_float: unsafe extern "C" fn(x: f64) -> *mut OpaqueValue,
    pub new_string: unsafe extern "C" fn(s: *const c_char, len: usize) -> *mut OpaqueValue,
    pub new_array: unsafe extern "C" fn() -> *mut OpaqueValue,
    pub new_map: unsafe extern "C" fn() -> *mut OpaqueValue,
    pub push: unsafe extern "C" fn(array: *mut OpaqueValue, item: *mut OpaqueValue) -> i32,
    pub insert: unsafe extern "C" fn(map: *mut OpaqueValue, key: *const c_char, key_len: usize, item: *mut OpaqueValue) -> i32,
    pub reply_value: unsafe extern "C" fn(reply: *mut Reply, value: *mut OpaqueValue) -> i32,
    pub reply_error: unsafe extern "C" fn(
        reply: *mut Reply,
        status: u32,
        message: *const c_char,
        message_len: usize,
        traceback: *const c_char,
        traceback_len: usize,
    ) -> i32,
    /// Version 4: a new handle value (`type_name` is copied, cut to
    /// [`HANDLE_TYPE_MAX`] bytes).
    pub new_handle: unsafe extern "C" fn(id: u64, type_name: *const c_char, len: usize) -> *mut OpaqueValue,
    /// Version 4: a handle's id, or 0 for any other kind.
    pub handle_id: unsafe extern "C" fn(value: *const OpaqueValue) -> u64,
    /// Version 4: a handle's type name, borrowed; NULL for any other kind.
    pub handle_type: unsafe extern "C" fn(value: *const OpaqueValue, len: *mut usize) -> *const c_char,
}

/// `oxiida_plugin`: what a plugin offers.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Plugin {
    pub abi_version: u32,
    pub struct_size: u32,
    pub name: *const c_char,
    pub capabilities: u32,
    pub session_new: unsafe extern "C" fn(
        config: *const c_char,
        config_len: usize,
        session: *mut *mut c_void,
        error: *mut c_char,
        error_cap: usize,
    ) -> i32,
    pub session_free: unsafe extern "C" fn(session: *mut c_void),
    pub resolve:
        unsafe extern "C" fn(session: *mut c_void, name: *const c_char, name_len: usize, error: *mut c_char, error_cap: usize) -> u32,
    pub call: unsafe extern "C" fn(session: *mut c_void, message: *const Message, reply: *mut Reply),
    pub reply_free: Option<unsafe extern "C" fn(session: *mut c_void, reply: *mut Reply)>,
    /// Version 4: gives up one reference to the handle `id` of `session`
    /// (see `oxiida.h`). NULL: the plugin makes no handles.
    pub handle_release: Option<HandleRelease>,
    /// Version 4: the session's workflow is over or cancelled: calls
    /// running on it should return soon (see `oxiida.h`). NULL: they run on.
    pub session_cancel: Option<SessionCancel>,
    /// Version 4: what identifies the code behind one function, for
    /// `--cache` (see `oxiida.h`). NULL: the plugin's files identify it.
    pub fingerprint: Option<Fingerprint>,
}

/// The size of a version-1 to -3 plugin table: everything up to `reply_free`.
pub const PLUGIN_V1_SIZE: usize = std::mem::offset_of!(Plugin, handle_release);

/// `oxiida_session_new`, as a Rust plugin writes it.
pub type SessionNew = unsafe extern "C" fn(*const c_char, usize, *mut *mut c_void, *mut c_char, usize) -> i32;
/// `oxiida_session_free`.
pub type SessionFree = unsafe extern "C" fn(*mut c_void);
/// `oxiida_resolve`.
pub type Resolve = unsafe extern "C" fn(*mut c_void, *const c_char, usize, *mut c_char, usize) -> u32;
/// `oxiida_call`.
pub type Call = unsafe extern "C" fn(*mut c_void, *const Message, *mut Reply);
/// `oxiida_plugin.handle_release` (version 4).
pub type HandleRelease = unsafe extern "C" fn(session: *mut c_void, id: u64);
/// `oxiida_plugin.session_cancel` (version 4).
pub type SessionCancel = unsafe extern "C" fn(session: *mut c_void);
/// `oxiida_plugin.fingerprint` (version 4).
pub type Fingerprint =
    unsafe extern "C" fn(session: *mut c_void, name: *const c_char, name_len: usize, out: *mut u8, out_cap: usize) -> usize;

impl Plugin {
    /// The table of a Rust plugin that answers with buffers it allocates
    /// itself ([`serve::reply_free`] frees them): this ABI version, this
    /// struct's size, and the plugin's name and routines.
    pub const fn rust(
        name: &'static std::ffi::CStr,
        capabilities: u32,
        session_new: SessionNew,
        session_free: SessionFree,
        resolve: Resolve,
        call: Call,
    ) -> Plugin {
        Plugin {
            abi_version: OXIIDA_ABI_VERSION,
            struct_size: std::mem::size_of::<Plugin>() as u32,
            name: name.as_ptr(),
            capabilities,
            session_new,
            session_free,
            resolve,
            call,
            reply_free: Some(serve::reply_free),
            handle_release: None,
            session_cancel: None,
            fingerprint: None,
        }
    }

    /// The same table, for a plugin that fingerprints its functions.
    pub const fn with_fingerprint(mut self, fingerprint: Fingerprint) -> Plugin {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// The same table, for a plugin that can stop running calls with `cancel`.
    pub const fn with_cancel(mut self, cancel: SessionCancel) -> Plugin {
        self.session_cancel = Some(cancel);
        self
    }

    /// The same table, for a plugin that makes handles and releases them
    /// with `release`.
    pub const fn with_release(mut self, release: HandleRelease) -> Plugin {
        self.handle_release = Some(release);
        self
    }
}

// SAFETY: the tables are immutable after init and every routine they point
// to is documented as callable from any thread.
unsafe impl Send for Plugin {}
// SAFETY: as for Send: immutable, and its routines are thread-safe.
unsafe impl Sync for Plugin {}
// SAFETY: as for Plugin: immutable, and its routines are thread-safe.
unsafe impl Send for Host {}
// SAFETY: as for Send.
unsafe impl Sync for Host {}

/// `oxiida_plugin_init_fn`.
pub type PluginInit = unsafe extern "C" fn(host: *const Host, error: *mut c_char, error_cap: usize) -> *const Plugin;
