//! liboxiida: the C embedding API of `include/oxiida.h` (Section 5). A C or
//! Julia program registers callbacks as foreign functions, loads plugins and
//! runs workflows. Every exported function is guarded: a panic becomes an
//! error return, never an unwind into C.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Arc;

use oxiida_abi::{self as abi, guard, ErrorBuf, OpaqueValue};

use lang::foreign::{CallFuture, CallMode, ForeignError, ForeignErrorKind, ForeignName, Host};
use lang::value::Value;
use lang::{Diagnostic, Limits, Source, Stage};
use oxiida_host::{codec, routines, LoadedPlugin, PluginHost};

pub type Callback = unsafe extern "C" fn(*mut c_void, *const OpaqueValue, *mut *mut OpaqueValue, *mut c_char, usize) -> i32;
/// `oxiida_callback_kw` (version 3): as [`Callback`], with the keyword arguments' Map after the arguments.
pub type CallbackKw =
    unsafe extern "C" fn(*mut c_void, *const OpaqueValue, *const OpaqueValue, *mut *mut OpaqueValue, *mut c_char, usize) -> i32;

/// Which registration a callback came from: only `Keywords` ones take keyword arguments.
#[derive(Clone, Copy)]
enum Function {
    Plain(Callback),
    Keywords(CallbackKw),
}

/// A registered callback and its user data.
struct Registered {
    callback: Function,
    user_data: *mut c_void,
    destroy: Option<unsafe extern "C" fn(*mut c_void)>,
}

// SAFETY: the header requires callbacks (and so their user data) to be
// thread-safe.
unsafe impl Send for Registered {}
// SAFETY: as for Send: the callback may run on several threads at once.
unsafe impl Sync for Registered {}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(destroy) = self.destroy {
            // SAFETY: called once, when the runtime and every call are done.
            unsafe { destroy(self.user_data) };
        }
    }
}

impl Registered {
    fn invoke(&self, name: &str, args: &[Value], keywords: &[(Arc<str>, Value)]) -> Result<Value, ForeignError> {
        let wire = oxiida_host::outbound::to_wire(args)?;
        let mut result: *mut OpaqueValue = std::ptr::null_mut();
        let mut error = ErrorBuf::new();
        let args = (&wire as *const abi::Value).cast();
        let status = match self.callback {
            Function::Plain(callback) => {
                if let Some((first, _)) = keywords.first() {
                    // `keywords` refused this before the run; a host that skipped it lands here.
                    return Err(ForeignError::new(ForeignErrorKind::BadArguments, plain_refuses(name, first)));
                }
                // SAFETY: as the header's `oxiida_callback` describes; `wire` outlives the call.
                unsafe { callback(self.user_data, args, &mut result, error.as_mut_ptr(), error.cap()) }
            }
            Function::Keywords(callback) => {
                let kwargs = oxiida_host::outbound::keywords_to_wire(keywords)?;
                let kwargs = (&kwargs as *const abi::Value).cast();
                // SAFETY: as the header's `oxiida_callback_kw` describes; `wire`
                // and `kwargs` outlive the call.
                unsafe { callback(self.user_data, args, kwargs, &mut result, error.as_mut_ptr(), error.cap()) }
            }
        };
        // SAFETY: values handed to the host are Box<abi::Value> from its routines.
        let value = (!result.is_null()).then(|| *unsafe { Box::from_raw(result.cast::<abi::Value>()) });
        if status == 0 {
            return Ok(value.map_or(Value::Nil, codec::from_wire));
        }
        let message = error.message_or(|| format!("the callback for `{name}` failed"));
        Err(ForeignError::new(ForeignErrorKind::Raised, message))
    }
}

/// Why a callback registered without keywords refuses a call that passes some.
fn plain_refuses(name: &str, first: &str) -> String {
    format!(
        "`{name}` was registered with oxiida_runtime_register, so it takes no keyword arguments (this call passes `{first}`); \
         register it with oxiida_runtime_register_kw to receive them, or pass the values as positional arguments"
    )
}

/// One workflow's host: registered callbacks first, then plugins.
struct EmbedHost {
    callbacks: HashMap<String, Arc<Registered>>,
    plugins: PluginHost,
}

impl EmbedHost {
    fn callback(&self, name: &ForeignName) -> Option<Arc<Registered>> {
        name.from.is_none().then(|| self.callbacks.get(&name.dotted()).cloned()).flatten()
    }
}

impl Host for EmbedHost {
    fn resolve(&self, name: &ForeignName) -> Result<(), String> {
        if self.callback(name).is_some() {
            return Ok(());
        }
        self.plugins.resolve(name).map_err(|why| {
            if name.from.is_none() {
                format!("no callback is registered under this name, and {why}")
            } else {
                why
            }
        })
    }

    /// A callback takes keyword arguments when it was registered with
    /// `oxiida_runtime_register_kw`; a plugin, when the plugin host says so.
    fn keywords(&self, name: &ForeignName) -> Result<(), String> {
        match self.callback(name) {
            Some(cb) => match cb.callback {
                Function::Keywords(_) => Ok(()),
                Function::Plain(_) => Err(format!(
                    "`{}` was registered with oxiida_runtime_register, which passes no keyword arguments; \
                     register it with oxiida_runtime_register_kw to receive them",
                    name.dotted()
                )),
            },
            None => self.plugins.keywords(name),
        }
    }

    fn call(&self, name: &ForeignName, args: Vec<Value>, keywords: lang::foreign::Keywords, mode: CallMode) -> CallFuture {
        let Some(cb) = self.callback(name) else { return self.plugins.call(name, args, keywords, mode) };
        let dotted = name.dotted();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || cb.invoke(&dotted, &args, &keywords))
                .await
                .unwrap_or_else(|e| Err(ForeignError::new(ForeignErrorKind::Internal, format!("the callback's thread failed: {e}"))))
        })
    }

    fn call_here(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(Arc<str>, Value)],
        mode: CallMode,
    ) -> Option<Result<Value, ForeignError>> {
        match self.callback(name) {
            Some(cb) => Some(cb.invoke(&name.dotted(), args, keywords)),
            None => self.plugins.call_here(name, args, keywords, mode),
        }
    }
}

pub struct Runtime {
    tokio: tokio::runtime::Runtime,
    callbacks: HashMap<String, Arc<Registered>>,
    plugins: Vec<(Arc<LoadedPlugin>, String)>,
}

pub struct EmbedError {
    message: CString,
    report: CString,
    stage: u32,
    line: u32,
    column: u32,
}

fn c_string(s: String) -> CString {
    CString::new(s.replace('\0', "\u{fffd}")).expect("no NUL left")
}

impl EmbedError {
    fn usage(message: impl Into<String>) -> Self {
        let message = message.into();
        EmbedError {
            report: c_string(format!("oxiida: {message}\n")),
            message: c_string(message),
            stage: abi::ERROR_USAGE,
            line: 0,
            column: 0,
        }
    }

    fn from_diagnostics(source: &Source, diagnostics: &[Diagnostic]) -> Self {
        let first = &diagnostics[0];
        let before = &source.text[..first.span.start.min(source.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let stage = match first.stage {
            Stage::Syntax => abi::ERROR_SYNTAX,
            Stage::Resolve => abi::ERROR_RESOLVE,
            Stage::Runtime => abi::ERROR_RUNTIME,
        };
        let message = if diagnostics.len() > 1 {
            format!("{} (and {} more errors)", first.message, diagnostics.len() - 1)
        } else {
            first.message.clone()
        };
        EmbedError {
            message: c_string(message),
            report: c_string(source.render(diagnostics, false)),
            stage,
            line: line as u32,
            column: column as u32,
        }
    }
}

/// Stores `e` for the caller and returns -1.
///
/// # Safety
/// `error` is NULL or valid for a write.
unsafe fn fail(error: *mut *mut EmbedError, e: EmbedError) -> i32 {
    if !error.is_null() {
        // SAFETY: not NULL, so valid for a write (the contract).
        unsafe { *error = Box::into_raw(Box::new(e)) };
    }
    -1
}

/// Runs the body of an exported function: 0 on success; -1 with `*error`
/// set on failure, including a panic, which never crosses into C. `error` is
/// the caller's out-pointer, NULL or valid, as the header requires.
fn entry(what: &str, error: *mut *mut EmbedError, body: impl FnOnce() -> Result<(), EmbedError>) -> i32 {
    match guard(body, |panic| Err(EmbedError::usage(format!("internal error in {what}: {panic}")))) {
        Ok(()) => 0,
        // SAFETY: `error` is NULL or valid (the exported functions' contract).
        Err(e) => unsafe { fail(error, e) },
    }
}

/// # Safety
/// `s` is NULL or a NUL-terminated string valid for `'a`.
unsafe fn c_text<'a>(s: *const c_char, what: &str) -> Result<&'a str, EmbedError> {
    if s.is_null() {
        return Err(EmbedError::usage(format!("{what} is NULL")));
    }
    // SAFETY: not NULL, so NUL-terminated and valid (the contract).
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|_| EmbedError::usage(format!("{what} is not UTF-8")))
}

#[no_mangle]
pub extern "C" fn oxiida_host_routines() -> *const abi::Host {
    &routines::HOST
}

#[no_mangle]
pub extern "C" fn oxiida_runtime_new() -> *mut Runtime {
    guard(
        || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(tokio) => Box::into_raw(Box::new(Runtime { tokio, callbacks: HashMap::new(), plugins: Vec::new() })),
            Err(_) => std::ptr::null_mut(),
        },
        |_| std::ptr::null_mut(),
    )
}

/// # Safety
/// `runtime` is NULL or from `oxiida_runtime_new`, freed once.
#[no_mangle]
pub unsafe extern "C" fn oxiida_runtime_free(runtime: *mut Runtime) {
    if !runtime.is_null() {
        // SAFETY: made by `oxiida_runtime_new` (Box::into_raw), freed once.
        guard(|| drop(unsafe { Box::from_raw(runtime) }), |_| ());
    }
}

/// Registers `callback` under `name` for both registration functions.
///
/// # Safety
/// As `oxiida.h` describes for `oxiida_runtime_register`.
unsafe fn register(
    what: &str,
    runtime: *mut Runtime,
    name: *const c_char,
    callback: Option<Function>,
    user_data: *mut c_void,
    destroy: Option<unsafe extern "C" fn(*mut c_void)>,
    error: *mut *mut EmbedError,
) -> i32 {
    entry(what, error, || {
        // SAFETY: NULL or a live runtime, used by one thread at a time (the header).
        let rt = unsafe { runtime.as_mut() }.ok_or_else(|| EmbedError::usage("the runtime is NULL"))?;
        // SAFETY: NULL or NUL-terminated (the header).
        let name = unsafe { c_text(name, "the function name") }?;
        let callback = callback.ok_or_else(|| EmbedError::usage(format!("the callback for `{name}` is NULL")))?;
        if rt.callbacks.contains_key(name) {
            return Err(EmbedError::usage(format!("`{name}` is already registered")));
        }
        rt.callbacks.insert(name.to_owned(), Arc::new(Registered { callback, user_data, destroy }));
        Ok(())
    })
}

/// # Safety
/// As `oxiida.h` describes.
#[no_mangle]
pub unsafe extern "C" fn oxiida_runtime_register(
    runtime: *mut Runtime,
    name: *const c_char,
    callback: Option<Callback>,
    user_data: *mut c_void,
    destroy: Option<unsafe extern "C" fn(*mut c_void)>,
    error: *mut *mut EmbedError,
) -> i32 {
    // SAFETY: the same contract.
    unsafe { register("oxiida_runtime_register", runtime, name, callback.map(Function::Plain), user_data, destroy, error) }
}

/// # Safety
/// As `oxiida.h` describes.
#[no_mangle]
pub unsafe extern "C" fn oxiida_runtime_register_kw(
    runtime: *mut Runtime,
    name: *const c_char,
    callback: Option<CallbackKw>,
    user_data: *mut c_void,
    destroy: Option<unsafe extern "C" fn(*mut c_void)>,
    error: *mut *mut EmbedError,
) -> i32 {
    // SAFETY: the same contract.
    unsafe { register("oxiida_runtime_register_kw", runtime, name, callback.map(Function::Keywords), user_data, destroy, error) }
}

/// # Safety
/// As `oxiida.h` describes.
#[no_mangle]
pub unsafe extern "C" fn oxiida_runtime_load_plugin(runtime: *mut Runtime, spec: *const c_char, error: *mut *mut EmbedError) -> i32 {
    entry("oxiida_runtime_load_plugin", error, || {
        // SAFETY: NULL or a live runtime, used by one thread at a time (the header).
        let rt = unsafe { runtime.as_mut() }.ok_or_else(|| EmbedError::usage("the runtime is NULL"))?;
        // SAFETY: NULL or NUL-terminated (the header).
        let spec = unsafe { c_text(spec, "the plugin") }?;
        let (what, config) = spec.split_once('=').unwrap_or((spec, ""));
        let plugin = oxiida_host::locate(what).and_then(|p| oxiida_host::load(&p)).map_err(|e| EmbedError::usage(e.to_string()))?;
        // A process plugin given as `exec:` says its name when its session starts.
        let named = |p: &LoadedPlugin| p.name == plugin.name && !p.kind_is_exec();
        if let Some((first, _)) = rt.plugins.iter().find(|(p, _)| named(p)) {
            return Err(EmbedError::usage(format!(
                "plugin `{}` is already loaded (from {}); load each plugin once",
                plugin.name,
                first.path.display()
            )));
        }
        rt.plugins.push((plugin, config.to_owned()));
        Ok(())
    })
}

/// # Safety
/// As `oxiida.h` describes.
#[no_mangle]
pub unsafe extern "C" fn oxiida_runtime_run(
    runtime: *mut Runtime,
    source: *const c_char,
    len: usize,
    file_name: *const c_char,
    error: *mut *mut EmbedError,
) -> i32 {
    entry("oxiida_runtime_run", error, || {
        // SAFETY: NULL or a live runtime, used by one thread at a time (the header).
        let rt = unsafe { runtime.as_ref() }.ok_or_else(|| EmbedError::usage("the runtime is NULL"))?;
        if source.is_null() && len > 0 {
            return Err(EmbedError::usage("the source is NULL"));
        }
        let bytes = if len == 0 {
            &[][..]
        } else {
            // SAFETY: not NULL, and valid for `len` bytes (the header).
            unsafe { std::slice::from_raw_parts(source.cast::<u8>(), len) }
        };
        let text = std::str::from_utf8(bytes).map_err(|e| EmbedError::usage(format!("the source is not UTF-8: {e}")))?;
        // SAFETY: NULL or NUL-terminated (the header).
        let name = if file_name.is_null() { "<workflow>" } else { unsafe { c_text(file_name, "the file name") }? };
        let source = Source::new(name, text);
        let plugins = PluginHost::open(&rt.plugins).map_err(|e| EmbedError::usage(e.to_string()))?;
        let host = EmbedHost { callbacks: rt.callbacks.clone(), plugins };
        let program = lang::compile(&source, &host).map_err(|d| EmbedError::from_diagnostics(&source, &d))?;
        let limits = Limits { inline_calls: true, ..Limits::default() };
        rt.tokio
            .block_on(lang::execute(&program, &host, &lang::interp::Stdout, limits))
            .map_err(|d| EmbedError::from_diagnostics(&source, &[d]))?;
        Ok(())
    })
}

/// # Safety
/// `e` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn oxiida_error_message(e: *const EmbedError) -> *const c_char {
    // SAFETY: NULL or live (the contract).
    unsafe { e.as_ref() }.map_or(c"(no error)".as_ptr(), |e| e.message.as_ptr())
}

/// # Safety
/// `e` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn oxiida_error_report(e: *const EmbedError) -> *const c_char {
    // SAFETY: NULL or live (the contract).
    unsafe { e.as_ref() }.map_or(c"(no error)".as_ptr(), |e| e.report.as_ptr())
}

/// # Safety
/// `e` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn oxiida_error_stage(e: *const EmbedError) -> u32 {
    // SAFETY: NULL or live (the contract).
    unsafe { e.as_ref() }.map_or(abi::ERROR_USAGE, |e| e.stage)
}

/// # Safety
/// `e` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn oxiida_error_line(e: *const EmbedError) -> u32 {
    // SAFETY: NULL or live (the contract).
    unsafe { e.as_ref() }.map_or(0, |e| e.line)
}

/// # Safety
/// `e` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn oxiida_error_column(e: *const EmbedError) -> u32 {
    // SAFETY: NULL or live (the contract).
    unsafe { e.as_ref() }.map_or(0, |e| e.column)
}

/// # Safety
/// `e` is NULL or a live error, freed once.
#[no_mangle]
pub unsafe extern "C" fn oxiida_error_free(e: *mut EmbedError) {
    if !e.is_null() {
        // SAFETY: made by `fail` (Box::into_raw), freed once (the contract).
        guard(|| drop(unsafe { Box::from_raw(e) }), |_| ());
    }
}

/// `oxiida_error_free` under its version-1 name, kept as a deprecated alias
/// (the ABI only grows).
///
/// # Safety
/// As [`oxiida_error_free`].
#[no_mangle]
pub unsafe extern "C" fn oxiida_error_delete(e: *mut EmbedError) {
    // SAFETY: the same contract.
    unsafe { oxiida_error_free(e) }
}
