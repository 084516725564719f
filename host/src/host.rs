//! One workflow's foreign environment over plugins: the [`Host`] the runtime
//! calls. It owns one session per loaded plugin (freed when the workflow's
//! host and its last running call are gone); each call runs on a blocking
//! thread of its own and its reply comes back through that task's handle.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Arc, Mutex};

use oxiida_abi as abi;

use crate::codec;
use crate::loader::LoadedPlugin;
use crate::routines::free_buffer;
use oxiida::foreign::{CallFuture, CallMode, ForeignError, ForeignErrorKind, ForeignName, Host};
use oxiida::value::Value;

/// A plugin session: one workflow's state inside one plugin.
struct Session {
    plugin: Arc<LoadedPlugin>,
    ptr: *mut c_void,
    /// Held during calls when the plugin cannot take concurrent ones.
    one_at_a_time: Option<Mutex<()>>,
}

// SAFETY: the header allows a session to be used from any thread; calls on
// one session overlap only when the plugin says they may (`one_at_a_time`).
unsafe impl Send for Session {}
unsafe impl Sync for Session {}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: the last reference is gone, so no call is running.
        unsafe { (self.plugin.table.session_free)(self.ptr) };
    }
}

fn text(ptr: *const c_char, len: usize) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: the plugin filled ptr/len as a pair, per the header.
    String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }).into_owned()
}

fn error_kind(status: u32) -> ForeignErrorKind {
    match status {
        abi::STATUS_NOT_FOUND => ForeignErrorKind::NotFound,
        abi::STATUS_BAD_ARGUMENTS => ForeignErrorKind::BadArguments,
        abi::STATUS_RAISED => ForeignErrorKind::Raised,
        abi::STATUS_WORKER_CRASHED => ForeignErrorKind::WorkerCrashed,
        _ => ForeignErrorKind::Internal,
    }
}

impl Session {
    fn call(&self, name: &str, args: &[u8], mode: CallMode) -> Result<Value, ForeignError> {
        let _turn = self.one_at_a_time.as_ref().map(|m| m.lock().unwrap_or_else(|p| p.into_inner()));
        let message = abi::Message {
            struct_size: std::mem::size_of::<abi::Message>() as u32,
            mode: if mode == CallMode::Process { abi::MODE_PROCESS } else { abi::MODE_THREAD },
            name: name.as_ptr().cast(),
            name_len: name.len(),
            args: args.as_ptr(),
            args_len: args.len(),
        };
        let mut reply = abi::Reply::empty();
        let table = self.plugin.table;
        // SAFETY: message and reply live across the call, as the header says.
        unsafe { (table.call)(self.ptr, &message, &mut reply) };
        let result = if reply.status == abi::STATUS_OK {
            let bytes =
                if reply.value.is_null() { &[0xc0][..] } else { unsafe { std::slice::from_raw_parts(reply.value, reply.value_len) } };
            abi::Value::decode(bytes).map(codec::from_wire).map_err(|e| {
                ForeignError::new(ForeignErrorKind::Internal, format!("plugin `{}` returned a bad value: {e}", self.plugin.name))
            })
        } else {
            let mut err = ForeignError::new(error_kind(reply.status), text(reply.message, reply.message_len));
            if !reply.traceback.is_null() {
                err = err.with_traceback(text(reply.traceback, reply.traceback_len));
            }
            Err(err)
        };
        let owned = reply.host_owned;
        let parts = [
            (abi::OWNED_VALUE, reply.value, reply.value_len),
            (abi::OWNED_MESSAGE, reply.message.cast(), reply.message_len),
            (abi::OWNED_TRACEBACK, reply.traceback.cast(), reply.traceback_len),
        ];
        if let Some(free) = table.reply_free {
            // SAFETY: the plugin frees only what it allocated.
            unsafe { free(self.ptr, &mut reply) };
        }
        for (bit, ptr, len) in parts {
            if owned & bit != 0 {
                // SAFETY: the host's reply routines allocated these.
                unsafe { free_buffer(ptr, len) };
            }
        }
        result
    }
}

/// The plugins one workflow may call, with a session in each.
pub struct PluginHost {
    sessions: Vec<Arc<Session>>,
    /// Which session serves each required name (filled by `resolve`).
    providers: Mutex<HashMap<ForeignName, usize>>,
}

impl PluginHost {
    /// Opens a session in each plugin, passing it its config text.
    pub fn new(plugins: &[(Arc<LoadedPlugin>, String)]) -> Result<Self, String> {
        let mut sessions = Vec::new();
        for (plugin, config) in plugins {
            let mut ptr = std::ptr::null_mut();
            let mut error = [0 as c_char; 1024];
            // SAFETY: arguments as oxiida.h describes them.
            let status =
                unsafe { (plugin.table.session_new)(config.as_ptr().cast(), config.len(), &mut ptr, error.as_mut_ptr(), error.len()) };
            if status != 0 {
                *error.last_mut().expect("non-empty") = 0;
                let reason = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
                return Err(format!("plugin `{}` could not start a session: {reason}", plugin.name));
            }
            let one_at_a_time = (!plugin.has(abi::CAP_CONCURRENT_CALLS)).then(|| Mutex::new(()));
            sessions.push(Arc::new(Session { plugin: plugin.clone(), ptr, one_at_a_time }));
        }
        Ok(PluginHost { sessions, providers: Mutex::new(HashMap::new()) })
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.sessions.iter().map(|s| s.plugin.name.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    fn ask(&self, index: usize, dotted: &str) -> Result<(), String> {
        let s = &self.sessions[index];
        let mut error = [0 as c_char; 1024];
        // SAFETY: as oxiida.h describes; resolve never runs during a call.
        let status = unsafe { (s.plugin.table.resolve)(s.ptr, dotted.as_ptr().cast(), dotted.len(), error.as_mut_ptr(), error.len()) };
        if status == abi::STATUS_OK {
            return Ok(());
        }
        *error.last_mut().expect("non-empty") = 0;
        let reason = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy().into_owned();
        Err(if reason.is_empty() { format!("plugin `{}` does not provide it", s.plugin.name) } else { reason })
    }
}

impl Host for PluginHost {
    fn resolve(&self, name: &ForeignName) -> Result<(), String> {
        let dotted = name.dotted();
        let index = if let Some(from) = &name.from {
            let index = self
                .sessions
                .iter()
                .position(|s| &s.plugin.name == from)
                .ok_or_else(|| format!("no plugin named `{from}` is loaded (loaded: {})", self.names()))?;
            self.ask(index, &dotted)?;
            index
        } else {
            if self.sessions.is_empty() {
                return Err("no language plugin is loaded (use `--plugin`)".into());
            }
            let mut providers = Vec::new();
            let mut reasons = Vec::new();
            for i in 0..self.sessions.len() {
                match self.ask(i, &dotted) {
                    Ok(()) => providers.push(i),
                    Err(why) => reasons.push(why),
                }
            }
            match providers[..] {
                [only] => only,
                [] => return Err(reasons.join("; ")),
                _ => {
                    let names: Vec<String> = providers.iter().map(|&i| format!("`{}`", self.sessions[i].plugin.name)).collect();
                    return Err(format!("several plugins provide it ({}); pick one with `require {dotted} from NAME;`", names.join(", ")));
                }
            }
        };
        self.providers.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), index);
        Ok(())
    }

    fn call(&self, name: &ForeignName, args: Vec<Value>, mode: CallMode) -> CallFuture {
        let session = self.session_for(name, mode);
        let dotted = name.dotted();
        Box::pin(async move {
            let session = session?;
            let bytes = codec::encode_args(&args);
            tokio::task::spawn_blocking(move || session.call(&dotted, &bytes, mode))
                .await
                .unwrap_or_else(|e| Err(ForeignError::new(ForeignErrorKind::Internal, format!("the call's thread failed: {e}"))))
        })
    }

    fn call_here(&self, name: &ForeignName, args: &[Value], mode: CallMode) -> Option<Result<Value, ForeignError>> {
        Some(self.session_for(name, mode).and_then(|session| session.call(&name.dotted(), &codec::encode_args(args), mode)))
    }
}

impl PluginHost {
    fn session_for(&self, name: &ForeignName, mode: CallMode) -> Result<Arc<Session>, ForeignError> {
        let index = self.providers.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied();
        let session = index
            .map(|i| self.sessions[i].clone())
            .ok_or_else(|| ForeignError::new(ForeignErrorKind::NotFound, format!("`{name}` was never resolved")))?;
        if mode == CallMode::Process && !session.plugin.has(abi::CAP_PROCESS_MODE) {
            return Err(ForeignError::new(
                ForeignErrorKind::BadArguments,
                format!("plugin `{}` cannot run calls in a worker process; call it as `f(...)`, not `=f=(...)`", session.plugin.name),
            ));
        }
        Ok(session)
    }
}
