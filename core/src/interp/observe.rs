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
use crate::ir::{Expr, ExprKind, Slot, Stmt, StmtKind};
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
    /// The keys of the tasks whose outputs flowed into this task's
    /// arguments: through variables, Arrays, Maps, arithmetic and string
    /// joins (and conservatively through any task-free statement, which
    /// counts every variable it reads for every one it assigns).
    pub inputs: Vec<std::sync::Arc<str>>,
    /// Who ran it, when known: `pid N` of a shell task's process (a
    /// `shellpipe`'s first process), set as it starts; for a call, what the
    /// host says ([`crate::foreign::Host::call_reporting`]).
    pub ran_by: crate::foreign::RanBy,
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

/// The tasks a value derives from, by key (deduplicated, in no order).
pub(crate) type Sources = Vec<std::sync::Arc<str>>;

/// What an observed frame keeps for task keys and provenance. Only frames
/// of an observed run have one (`Frame::obs`); the plain walk never looks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Obs {
    /// The loop iterations, `para` branches and calls that led here.
    pub path: Vec<Step>,
    /// Per slot: the tasks whose outputs its value was computed from.
    pub prov: Vec<Sources>,
    /// Tasks that ended while the current statement was evaluated.
    pub acc: Sources,
    /// Where this call's `return` leaves its value's sources, for the caller.
    pub ret: Option<std::sync::Arc<std::sync::Mutex<Sources>>>,
    /// The sources of the arguments of the task about to run.
    pub inputs: Sources,
}

impl Obs {
    /// The sources of the values in `slots`.
    pub fn of(&self, slots: &[Slot]) -> Sources {
        let mut all = Sources::new();
        for &slot in slots {
            if let Some(sources) = self.prov.get(slot as usize) {
                extend(&mut all, sources);
            }
        }
        all
    }

    pub fn set(&mut self, slot: Slot, sources: Sources) {
        let at = slot as usize;
        if self.prov.len() <= at {
            self.prov.resize(at + 1, Sources::new());
        }
        self.prov[at] = sources;
    }

    /// The tasks accumulated since `mark`, taken out, with the sources of
    /// the variables `e` reads outside its tasks' arguments.
    pub fn derive(&mut self, mark: usize, exprs: &[&Expr]) -> Sources {
        let mut slots = Vec::new();
        for e in exprs {
            reads(e, &mut slots, &mut Vec::new(), false);
        }
        let mut all = self.of(&slots);
        let taken: Sources = self.acc.drain(mark.min(self.acc.len())..).collect();
        extend(&mut all, &taken);
        all
    }
}

/// Adds `more` to `all`, without repeats.
pub(crate) fn extend(all: &mut Sources, more: &[std::sync::Arc<str>]) {
    for s in more {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
}

/// The slots `e` reads and assigns; with `into_tasks` false, not inside the
/// arguments of its tasks (their flow is the tasks' own).
pub(crate) fn reads(e: &Expr, out: &mut Vec<Slot>, writes: &mut Vec<Slot>, into_tasks: bool) {
    match &e.kind {
        ExprKind::Const(_) | ExprKind::ShellPipe(_) => {}
        ExprKind::Var(slot) => out.push(*slot),
        ExprKind::Assign(slot, v) => {
            writes.push(*slot);
            reads(v, out, writes, into_tasks);
        }
        ExprKind::Unary { expr, .. } | ExprKind::Field { expr, .. } => reads(expr, out, writes, into_tasks),
        ExprKind::Binary { lhs, rhs, .. } => {
            reads(lhs, out, writes, into_tasks);
            reads(rhs, out, writes, into_tasks);
        }
        ExprKind::Index { expr, index } => {
            reads(expr, out, writes, into_tasks);
            reads(index, out, writes, into_tasks);
        }
        ExprKind::Builtin { args, .. } | ExprKind::Array(args) => args.iter().for_each(|a| reads(a, out, writes, into_tasks)),
        // A call that runs tasks hands back its result's own sources (its
        // `return`, through `Obs::ret`); a call without tasks counts every
        // argument.
        ExprKind::Call { .. } if e.task && !into_tasks => {}
        ExprKind::Call { args, .. } => args.iter().for_each(|(_, a)| reads(a, out, writes, into_tasks)),
        ExprKind::Map(entries) => entries.iter().for_each(|(k, v)| {
            reads(k, out, writes, into_tasks);
            reads(v, out, writes, into_tasks);
        }),
        ExprKind::Foreign { args, keywords, .. } if into_tasks => {
            args.iter().for_each(|a| reads(a, out, writes, true));
            keywords.iter().for_each(|(_, a)| reads(a, out, writes, true));
        }
        ExprKind::Shell { cmd, args, stdin } if into_tasks => {
            reads(cmd, out, writes, true);
            args.iter().for_each(|a| reads(a, out, writes, true));
            if let Some(s) = stdin {
                reads(s, out, writes, true);
            }
        }
        ExprKind::Foreign { .. } | ExprKind::Shell { .. } => {}
    }
}

/// The slots a statement without tasks reads and assigns (all of them, on
/// every path: a conservative account of where its values came from).
pub(crate) fn stmt_flow(s: &Stmt, r: &mut Vec<Slot>, w: &mut Vec<Slot>) {
    match &s.kind {
        StmtKind::Expr(e) | StmtKind::Print(e) | StmtKind::Return(Some(e)) => reads(e, r, w, true),
        StmtKind::Block(body) => body.iter().for_each(|s| stmt_flow(s, r, w)),
        StmtKind::If { cond, then, els } => {
            reads(cond, r, w, true);
            stmt_flow(then, r, w);
            if let Some(els) = els {
                stmt_flow(els, r, w);
            }
        }
        StmtKind::While { cond, body } => {
            reads(cond, r, w, true);
            stmt_flow(body, r, w);
        }
        StmtKind::For { var, iter, body } | StmtKind::ParaFor { var, iter, body } => {
            reads(iter, r, w, true);
            w.push(*var);
            stmt_flow(body, r, w);
        }
        StmtKind::AddTo { slot, value, .. } => {
            r.push(*slot);
            w.push(*slot);
            reads(value, r, w, true);
        }
        StmtKind::Para(branches) => branches.iter().for_each(|b| stmt_flow(&b.stmt, r, w)),
        StmtKind::Return(None) | StmtKind::Break | StmtKind::Continue | StmtKind::Nop => {}
    }
}
