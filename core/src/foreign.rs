//! The seam between the runtime and foreign functions. The runtime knows
//! nothing of Python, Lua or C: it resolves required names and sends calls
//! through a [`Host`], which the embedder (CLI plugins, the Python package, a
//! C program) provides.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

pub use crate::diagnostic::Cause;
use crate::value::Value;

/// How a foreign function is called: `f(x)` or `=f=(x)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallMode {
    /// In a worker thread of the host process.
    Thread,
    /// In a separate worker process, so CPU-bound calls use every core.
    Process,
}

/// A required name as written: `require os.path.join from python;` gives
/// path `["os", "path", "join"]` and `from` = `Some("python")`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ForeignName {
    pub path: Vec<String>,
    pub from: Option<String>,
}

impl ForeignName {
    pub fn new(dotted: &str) -> Self {
        ForeignName { path: dotted.split('.').map(str::to_owned).collect(), from: None }
    }

    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
}

impl fmt::Display for ForeignName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dotted())?;
        if let Some(from) = &self.from {
            write!(f, " from {from}")?;
        }
        Ok(())
    }
}

pub use oxiida_abi::Status;

/// The kind of a failed call: the error statuses of the ABI's [`Status`]
/// (every one but `Ok`), with the same numbers. This file is the one
/// mapping between the two.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignErrorKind {
    /// The host has no such function (any more).
    NotFound = Status::NotFound as u32,
    /// An argument could not be converted for the foreign side.
    BadArguments = Status::BadArguments as u32,
    /// The foreign code raised an exception or error.
    Raised = Status::Raised as u32,
    /// The worker running the call died.
    WorkerCrashed = Status::WorkerCrashed as u32,
    /// A bug or resource failure in the host or plugin.
    Internal = Status::Internal as u32,
    /// The function ran, but its result cannot cross back (version 4).
    BadResult = Status::BadResult as u32,
}

impl ForeignErrorKind {
    pub fn describe(self) -> &'static str {
        self.status().describe()
    }

    /// The status a reply carries for this kind.
    pub fn status(self) -> Status {
        match self {
            ForeignErrorKind::NotFound => Status::NotFound,
            ForeignErrorKind::BadArguments => Status::BadArguments,
            ForeignErrorKind::Raised => Status::Raised,
            ForeignErrorKind::WorkerCrashed => Status::WorkerCrashed,
            ForeignErrorKind::Internal => Status::Internal,
            ForeignErrorKind::BadResult => Status::BadResult,
        }
    }

    /// The kind of an error status; `None` for `Status::Ok`.
    pub fn from_status(status: Status) -> Option<Self> {
        match status {
            Status::Ok => None,
            Status::NotFound => Some(ForeignErrorKind::NotFound),
            Status::BadArguments => Some(ForeignErrorKind::BadArguments),
            Status::Raised => Some(ForeignErrorKind::Raised),
            Status::WorkerCrashed => Some(ForeignErrorKind::WorkerCrashed),
            Status::Internal => Some(ForeignErrorKind::Internal),
            Status::BadResult => Some(ForeignErrorKind::BadResult),
        }
    }
}

impl From<ForeignErrorKind> for Status {
    fn from(kind: ForeignErrorKind) -> Status {
        kind.status()
    }
}

/// A failed foreign call, as the host reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ForeignError {
    pub kind: ForeignErrorKind,
    /// For `Raised`, conventionally `Type: message` (e.g. `ValueError: bad input`).
    pub message: String,
    pub traceback: Option<String>,
    /// The host's own record of the failure (the Python package keeps the
    /// exception object here), carried into the workflow's [`crate::Diagnostic`].
    pub cause: Option<Cause>,
}

impl ForeignError {
    pub fn new(kind: ForeignErrorKind, message: impl Into<String>) -> Self {
        ForeignError { kind, message: message.into(), traceback: None, cause: None }
    }

    pub fn with_cause(mut self, cause: Cause) -> Self {
        self.cause = Some(cause);
        self
    }

    pub fn with_traceback(mut self, traceback: impl Into<String>) -> Self {
        self.traceback = Some(traceback.into());
        self
    }
}

/// A call's keyword arguments, in the order written: `f(x, steps = 100)`
/// passes `[("steps", 100)]`. Language 0.3.
pub type Keywords = Vec<(Arc<str>, Value)>;

pub type CallFuture = Pin<Box<dyn Future<Output = Result<Value, ForeignError>> + Send + 'static>>;

/// The arguments of one call among those [`Host::call_each`] takes together.
pub type EachCall = (Vec<Value>, Keywords);

/// The calls [`Host::call_each`] took, as they finish: each item is how
/// many more have finished (`Ok(n)`, `n >= 1`), or the first failure
/// (`Err`, after which the others are not wanted). It ends once every call
/// has finished. Dropping it means the calls not started yet never run.
pub type EachStream = Pin<Box<dyn futures_util::Stream<Item = Result<usize, ForeignError>> + Send + 'static>>;

/// Where a host says who ran a recorded call ([`Host::call_reporting`]):
/// `pid N` of the process that ran it (a `=f=` worker), or a remote
/// worker's address (`tcp://10.0.0.5:40123` for a Dask worker). Left
/// empty, the record names the workflow's own process.
pub type RanBy = Arc<OnceLock<String>>;

thread_local! {
    /// Set while the interpreter makes a call whose result it reads at once
    /// or drops ([`result_kept`]).
    static UNKEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the workflow keeps the result of the call being made unread, as
/// `x = f(...);` does (a lazy result, [`Handle::lazy`](crate::value::Handle::lazy),
/// then stays unmade until `x` is read): `false` when the result is read at
/// once (`len(f(...))`, an observed call) or dropped (`f(...);`, a `para
/// for` body's call). A hint for a host that prepares a result to be handed
/// back to its embedder as it is (the Python package unpickles a large
/// result while it arrives), which it may skip when `false`. Valid on the
/// thread the interpreter calls the host on, while in `Host::call`,
/// `call_reporting`, `call_here`, `call_here_reporting` or `call_each`
/// (capture it there for work done elsewhere); anywhere else it is `true`,
/// "not known".
pub fn result_kept() -> bool {
    !UNKEPT.with(std::cell::Cell::get)
}

/// Runs `f` with [`result_kept`] saying `false` when `unkept`.
pub(crate) fn unkept<T>(unkept: bool, f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            UNKEPT.with(|c| c.set(self.0));
        }
    }
    if !unkept {
        return f();
    }
    let _reset = Reset(UNKEPT.with(|c| c.replace(true)));
    f()
}

/// `call` polled with [`result_kept`] saying `false` when `unkept` (the
/// host is called in its first poll).
pub(crate) async fn unkept_call<F: Future>(unkept: bool, call: F) -> F::Output {
    if !unkept {
        return call.await;
    }
    let mut call = std::pin::pin!(call);
    std::future::poll_fn(|cx| self::unkept(true, || call.as_mut().poll(cx))).await
}

/// What a workflow needs from its environment of foreign functions.
///
/// One `Host` serves one workflow (it may hold that workflow's private
/// foreign state); `call` may be invoked again before earlier calls finish,
/// which is how calls in `para` overlap. Dropping a returned future means the
/// result is no longer wanted (the workflow was cancelled).
pub trait Host: Send + Sync {
    /// Called by the resolver before anything runs. `Err` explains why the
    /// name cannot be provided; it becomes a resolve error at the `require`.
    fn resolve(&self, name: &ForeignName) -> Result<(), String>;

    /// Called by the resolver, before anything runs, for each required name
    /// that some call passes keyword arguments to. `Err` explains why the
    /// name cannot take them (e.g. which plugin does not declare
    /// `OXIIDA_CAP_KEYWORDS`); it becomes an error at that call. The default
    /// refuses: a host that ignored keywords would drop them silently.
    fn keywords(&self, _name: &ForeignName) -> Result<(), String> {
        Err("this host does not pass keyword arguments to foreign functions".into())
    }

    /// Calls a name that `resolve` accepted. `keywords` is empty unless
    /// `keywords` accepted the name.
    fn call(&self, name: &ForeignName, args: Vec<Value>, keywords: Keywords, mode: CallMode) -> CallFuture;

    /// The calls a `para for` whose body is one call of `name` makes, one per
    /// iteration, in iteration order, whose results the workflow drops. A
    /// host that runs many calls cheaper together than one by one (one
    /// queue entry, one wake-up) takes them here; the default gives them
    /// back (`Err`), and the interpreter makes each with [`call`](Host::call).
    /// The calls may overlap as `call`'s do.
    fn call_each(&self, _name: &ForeignName, calls: Vec<EachCall>, _mode: CallMode) -> Result<EachStream, Vec<EachCall>> {
        Err(calls)
    }

    /// Runs a call on the calling thread, blocking it, when the host can;
    /// `None` means "use `call`". The interpreter asks only when the
    /// embedder allows it (`Limits::inline_calls`) and nothing else in the
    /// workflow is running, which saves two thread hand-offs per call.
    fn call_here(
        &self,
        _name: &ForeignName,
        _args: &[Value],
        _keywords: &[(Arc<str>, Value)],
        _mode: CallMode,
    ) -> Option<Result<Value, ForeignError>> {
        None
    }

    /// [`call`](Host::call) for a call whose task is recorded: the host may
    /// set `ran_by` to who ran it, at any time before the future ends. Only
    /// observed runs use this, so hosts keep their unrecorded path as it
    /// is. The default calls `call` and says nothing: the record then
    /// names the workflow's own process, right for a call run in it.
    fn call_reporting(&self, name: &ForeignName, args: Vec<Value>, keywords: Keywords, mode: CallMode, ran_by: RanBy) -> CallFuture {
        let _ = ran_by;
        self.call(name, args, keywords, mode)
    }

    /// [`call_here`](Host::call_here) for a recorded call, with `ran_by`
    /// as in [`call_reporting`](Host::call_reporting).
    fn call_here_reporting(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(Arc<str>, Value)],
        mode: CallMode,
        ran_by: &RanBy,
    ) -> Option<Result<Value, ForeignError>> {
        let _ = ran_by;
        self.call_here(name, args, keywords, mode)
    }
}

/// A host that provides nothing: workflows without `require` need no other.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHost;

impl Host for NoHost {
    fn resolve(&self, _name: &ForeignName) -> Result<(), String> {
        Err("no language plugin is loaded".into())
    }

    fn call(&self, name: &ForeignName, _args: Vec<Value>, _keywords: Keywords, _mode: CallMode) -> CallFuture {
        let err = ForeignError::new(ForeignErrorKind::NotFound, format!("`{name}` is not provided"));
        Box::pin(async move { Err(err) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_status_is_a_kind_with_the_same_number() {
        for status in Status::ALL {
            match ForeignErrorKind::from_status(status) {
                None => assert_eq!(status, Status::Ok),
                Some(kind) => {
                    assert_eq!(kind as u32, u32::from(status));
                    assert_eq!(Status::from(kind), status);
                    assert_eq!(kind.describe(), status.describe());
                }
            }
        }
    }
}
