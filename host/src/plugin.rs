//! A loaded plugin's table, and every call the host makes through it: the
//! one place where the host calls into a plugin's code (`unsafe`, with the
//! contract `oxiida.h` gives), behind safe methods.

use std::ffi::{c_char, c_void};

use oxiida_abi::{self as abi, DecodeError, ErrorBuf, Status};
use parking_lot::Mutex;

use crate::routines::free_buffer;

/// A plugin's table that passed the loader's checks.
#[derive(Clone, Copy, Debug)]
pub struct PluginRef(&'static abi::Plugin);

impl PluginRef {
    /// # Safety
    /// `table` is a plugin's table as `oxiida.h` describes it, valid for the
    /// life of the process: its functions keep the header's contracts. Its
    /// version, size and name were checked (`loader::check`).
    pub(crate) unsafe fn new(table: &'static abi::Plugin) -> Self {
        PluginRef(table)
    }

    /// Whether the plugin has a `handle_release` routine (version 4 or
    /// newer): only such a plugin may answer with handles.
    pub fn releases_handles(self) -> bool {
        self.0.handle_release.is_some()
    }

    /// The plugin's OXIIDA_CAP_* bits.
    pub fn capabilities(self) -> u32 {
        self.0.capabilities
    }

    /// Opens a session with `config`; on failure, the plugin's reason.
    pub fn open(self, config: &str) -> Result<PluginSession, String> {
        let mut ptr = std::ptr::null_mut();
        let mut error = ErrorBuf::new();
        // SAFETY: the arguments are as oxiida.h describes them: `config` is
        // valid for its length, `ptr` for a write, `error` for `error.cap()`.
        let status = unsafe { (self.0.session_new)(config.as_ptr().cast(), config.len(), &mut ptr, error.as_mut_ptr(), error.cap()) };
        if status != 0 {
            return Err(error.message_or(|| "it gave no reason".into()));
        }
        let one_at_a_time = (self.capabilities() & abi::CAP_CONCURRENT_CALLS == 0).then(|| Mutex::new(()));
        Ok(PluginSession { plugin: self, ptr, one_at_a_time })
    }
}

/// What a plugin answered, when it is not a value.
#[derive(Debug)]
pub enum CallFailure {
    /// An error reply. A status the header does not define is `Internal`,
    /// and the message says which number it was.
    Error { status: Status, message: String, traceback: Option<String> },
    /// An OK reply whose value does not decode.
    BadValue(DecodeError),
}

/// One session of a plugin, ended (`session_free`) when dropped.
pub struct PluginSession {
    plugin: PluginRef,
    ptr: *mut c_void,
    /// Held during calls (and `resolve`) when the plugin cannot take
    /// concurrent ones.
    one_at_a_time: Option<Mutex<()>>,
}

// SAFETY: the header allows a session to be used from any thread; calls on
// one session overlap only when the plugin says they may (`one_at_a_time`).
unsafe impl Send for PluginSession {}
// SAFETY: as for Send: `&self` methods take `one_at_a_time` when needed.
unsafe impl Sync for PluginSession {}

impl Drop for PluginSession {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from this plugin's `session_new`; dropping means
        // no call on it runs and none will start, and it is freed once.
        unsafe { (self.plugin.0.session_free)(self.ptr) };
    }
}

/// Text from a reply's (pointer, length) pair; "" for NULL.
///
/// # Safety
/// `ptr` is NULL or valid for `len` bytes.
unsafe fn text(ptr: *const c_char, len: usize) -> String {
    if ptr.is_null() || len == 0 {
        return String::new();
    }
    // SAFETY: not NULL, and the caller promised `len` bytes.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }).into_owned()
}

impl PluginSession {
    /// Whether the session provides `dotted`; if not, the plugin's reason
    /// ("" when it gave none).
    pub fn resolve(&self, dotted: &str) -> Result<(), String> {
        let _turn = self.one_at_a_time.as_ref().map(Mutex::lock);
        let mut error = ErrorBuf::new();
        // SAFETY: as oxiida.h describes: a live session, a name valid for its
        // length, a buffer of `error.cap()` bytes.
        let status = unsafe { (self.plugin.0.resolve)(self.ptr, dotted.as_ptr().cast(), dotted.len(), error.as_mut_ptr(), error.cap()) };
        if status == u32::from(Status::Ok) {
            Ok(())
        } else {
            Err(error.message())
        }
    }

    /// Gives the plugin back one reference to its handle `id` (a no-op for
    /// a plugin without `handle_release`). Never waits for a running call.
    pub fn release(&self, id: u64) {
        if let Some(release) = self.plugin.0.handle_release {
            // SAFETY: a live session (this value is not dropped yet, so
            // `session_free` has not run); the header allows it on any thread
            // and concurrently with calls.
            unsafe { release(self.ptr, id) };
        }
    }

    /// Asks the plugin to make the calls running on this session return
    /// soon (a no-op for a plugin without `session_cancel`).
    pub fn cancel(&self) {
        if let Some(cancel) = self.plugin.0.session_cancel {
            // SAFETY: a live session (not dropped, so not freed); the header
            // allows it on any thread, concurrently with calls.
            unsafe { cancel(self.ptr) };
        }
    }

    /// What identifies the code behind `dotted` in this session (the
    /// plugin's `fingerprint`), or `None`: the plugin has no such routine,
    /// or gives none for this name.
    pub fn fingerprint(&self, dotted: &str) -> Option<Vec<u8>> {
        let fingerprint = self.plugin.0.fingerprint?;
        let _turn = self.one_at_a_time.as_ref().map(Mutex::lock);
        let mut out = [0u8; abi::FINGERPRINT_CAP];
        // SAFETY: as oxiida.h describes: a live session, a name valid for its
        // length, a buffer of `out.len()` bytes the host owns; serialised
        // with calls unless the plugin declares CAP_CONCURRENT_CALLS.
        let n = unsafe { fingerprint(self.ptr, dotted.as_ptr().cast(), dotted.len(), out.as_mut_ptr(), out.len()) };
        (n > 0).then(|| out[..n.min(out.len())].to_vec())
    }

    /// Runs one call: `args` is one MessagePack array, `kwargs` one
    /// MessagePack map (`None`: the call passes no keyword arguments, sent
    /// as NULL), `mode` a MODE_*. `ran_by`, when given, is set to who the
    /// plugin says ran the call (the reply's `ran_by`, ABI version 5).
    pub fn call(
        &self,
        name: &str,
        args: &[u8],
        kwargs: Option<&[u8]>,
        mode: u32,
        ran_by: Option<&std::sync::OnceLock<String>>,
    ) -> Result<abi::Value, CallFailure> {
        let _turn = self.one_at_a_time.as_ref().map(Mutex::lock);
        let (kwargs, kwargs_len) = kwargs.map_or((std::ptr::null(), 0), |k| (k.as_ptr(), k.len()));
        let message = abi::Message {
            struct_size: std::mem::size_of::<abi::Message>() as u32,
            mode,
            name: name.as_ptr().cast(),
            name_len: name.len(),
            args: args.as_ptr(),
            args_len: args.len(),
            kwargs,
            kwargs_len,
        };
        let mut reply = abi::Reply::empty();
        let table = self.plugin.0;
        // SAFETY: a live session; message and reply outlive the call, as the
        // header requires; calls overlap only with CAP_CONCURRENT_CALLS.
        unsafe { (table.call)(self.ptr, &message, &mut reply) };
        // SAFETY: the plugin filled the reply's (pointer, length) pairs as the
        // header says; they stay valid until `reply_free` below.
        let result = unsafe { Self::read(&reply) };
        if let Some(who) = ran_by.and_then(|_| reply.ran_by()) {
            let _ = ran_by.map(|slot| slot.set(who));
        }
        let owned = reply.host_owned;
        let parts = [
            (abi::OWNED_VALUE, reply.value, reply.value_len),
            (abi::OWNED_MESSAGE, reply.message.cast(), reply.message_len),
            (abi::OWNED_TRACEBACK, reply.traceback.cast(), reply.traceback_len),
        ];
        if let Some(free) = table.reply_free {
            // SAFETY: the reply this plugin filled, handed back once; it frees
            // only what it allocated.
            unsafe { free(self.ptr, &mut reply) };
        }
        for (bit, ptr, len) in parts {
            if owned & bit != 0 {
                // SAFETY: the host's reply routines allocated these parts
                // (they set the bit), and each is freed here once.
                unsafe { free_buffer(ptr, len) };
            }
        }
        result
    }

    /// # Safety
    /// The reply's pointers are NULL or valid for their lengths.
    unsafe fn read(reply: &abi::Reply) -> Result<abi::Value, CallFailure> {
        match Status::try_from(reply.status) {
            Ok(Status::Ok) => {
                if reply.value.is_null() {
                    // An untouched reply answers nil.
                    return Ok(abi::Value::Nil);
                }
                // SAFETY: not NULL, and valid for `value_len` (the contract).
                let bytes = unsafe { std::slice::from_raw_parts(reply.value, reply.value_len) };
                abi::Value::decode(bytes).map_err(CallFailure::BadValue)
            }
            status => {
                // SAFETY: the contract of this function.
                let mut message = unsafe { text(reply.message, reply.message_len) };
                let status = status.unwrap_or_else(|unknown| {
                    message = format!("{unknown}: {message}");
                    Status::Internal
                });
                // SAFETY: the contract of this function.
                let traceback = (!reply.traceback.is_null()).then(|| unsafe { text(reply.traceback, reply.traceback_len) });
                Err(CallFailure::Error { status, message, traceback })
            }
        }
    }
}
