//! Task records, resume and caching hook into the interpreter here.
//!
//! A [`TaskObserver`] is told about every task (a `shell`, a `shellpipe`, a
//! foreign call, plain or `=f=`) before it runs and after it ends, and may
//! *supply* the task's result instead of running it: that is how a resumed
//! workflow replays the results its interrupted run recorded, and how a
//! cached result is reused. The language knows nothing of where records go
//! (the daemon's SQLite store, say); it only computes each task's stable
//! [`key`](Task::key) and calls the observer.
//!
//! With no observer installed nothing here runs: a task pays one branch,
//! and the loop and calls without tasks pay nothing.

use std::time::SystemTime;

use futures_util::future::BoxFuture;

use super::Context;
use crate::diagnostic::{Diagnostic, Span};
use crate::foreign::{CallMode, ForeignName, Keywords};
use crate::value::Value;

/// What a task is, as the interpreter starts it.
#[derive(Debug)]
pub enum TaskWhat<'a> {
    /// `shell {cmd, [args], stdin}`: the program and its arguments.
    Shell { argv: Vec<String>, stdin: Option<String> },
    /// `shellpipe`: each unit's argv, in order.
    Pipe { units: &'a [Vec<String>] },
    /// A foreign call, with its arguments evaluated.
    Call { function: &'a ForeignName, args: Vec<Value>, keywords: Keywords, mode: CallMode },
}

/// One task about to run.
#[derive(Debug)]
pub struct Task<'a> {
    /// Stable within its workflow: the same source and the same task
    /// results give every task the same key, run after run. It is the
    /// call's source span (`start-end`, in bytes) followed by the path to
    /// it: `/i<n>` for the n-th iteration (from 0) of an enclosing `for`,
    /// `while` or `para for`, `/b<n>` for the n-th branch of a `para`, and
    /// `/c<offset>` for the call of a workflow function made at that
    /// source offset. For example `120-134/c88/i3`.
    pub key: String,
    pub span: Span,
    pub what: TaskWhat<'a>,
    /// Where shell tasks run (the working directory and environment).
    pub context: &'a Context,
}

/// A result given instead of running a task.
#[derive(Clone, Debug)]
pub enum Supplied {
    /// Recorded by an earlier run of the same workflow (resume).
    Replayed(Value),
    /// Recorded by any earlier task of the same identity (cache).
    Cached(Value),
}

impl Supplied {
    pub fn value(&self) -> &Value {
        match self {
            Supplied::Replayed(v) | Supplied::Cached(v) => v,
        }
    }
}

/// How a task ended, as the observer is told.
pub enum Outcome<'a> {
    Succeeded(&'a Value),
    Failed(&'a Diagnostic),
    /// Not run: the observer supplied its result.
    Supplied(&'a Supplied),
}

/// Told about every task; installed with [`super::execute_observed`].
pub trait TaskObserver: Send + Sync {
    /// Before the task runs (before it waits for a task slot): a result to
    /// use instead of running it, or `None` to run it.
    fn before<'a>(&'a self, task: &'a Task<'a>) -> BoxFuture<'a, Option<Supplied>>;

    /// After the task ended (or was supplied). `started` is when it began
    /// to run (it had its task slot), `ended` when it ended. Must not block:
    /// send the record elsewhere to be written.
    fn after(&self, task: &Task<'_>, started: SystemTime, ended: SystemTime, outcome: Outcome<'_>);
}

/// One step of the path to a task (see [`Task::key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Iteration(u32),
    Branch(u32),
    Call(u32),
}

/// The key of the task at `span` reached through `path`.
pub(crate) fn key(span: Span, path: &[Step]) -> String {
    use std::fmt::Write;
    let mut key = format!("{}-{}", span.start, span.end);
    for step in path {
        let _ = match step {
            Step::Iteration(n) => write!(key, "/i{n}"),
            Step::Branch(n) => write!(key, "/b{n}"),
            Step::Call(at) => write!(key, "/c{at}"),
        };
    }
    key
}
