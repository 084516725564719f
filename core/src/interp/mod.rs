//! The interpreter. Statements and expressions without tasks run on a plain
//! synchronous tree walk (`exec`/`eval`), so loops of pure computation never
//! touch a future. Only nodes that contain a task or a `para` block take the
//! async path (`exec_async`/`eval_async`), which hands task-free children
//! back to the plain walk. Both walks are one body, in `walk.rs`; the tasks
//! and `para` themselves are in `tasks.rs`.

mod interrupt;
pub mod observe;
mod tasks;
mod walk;

pub use interrupt::Interrupt;
use observe::Obs;
pub use observe::TaskObserver;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::diagnostic::{Diagnostic, Span, Stage};
use crate::foreign::Host;
use crate::ir::{Expr, ExprKind, Program, Slot};
use crate::syntax::ast::BinaryOp;
use crate::value::Value;

/// Where `print` goes. The CLI writes to stdout; embedders route it
/// elsewhere (the Python package to `sys.stdout`).
pub trait Output: Send + Sync {
    /// One printed value, without the trailing newline.
    fn print(&self, text: &str);
}

/// Writes each printed line to the process's standard output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stdout;

impl Output for Stdout {
    fn print(&self, text: &str) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // A closed stdout (`oxiida run wf.ox | head`) must not abort the workflow.
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.write_all(b"\n"));
    }
}

/// How much a workflow may run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Tasks (shell processes, foreign calls) running at the same time,
    /// across the whole workflow.
    pub max_tasks: usize,
    /// Iterations of one `para for` in flight at the same time.
    pub max_fanout: usize,
    /// Run a foreign call on the workflow's own thread when nothing else in
    /// the workflow is running (see `Host::call_here`). Only for an embedder
    /// whose runtime thread serves this one workflow, like the CLI.
    pub inline_calls: bool,
    /// A `para for` starts `FANOUT_START` iterations and doubles that while
    /// a whole millisecond passes with none of them finished, up to
    /// `max_fanout`. For a host that runs calls when the workflow's thread
    /// parks (the Python package): quick calls then go in small batches
    /// whose memory stays in cache (2,000 trivial calls: 2.9 ms with 1,024
    /// in flight, 1.8 ms with 64), and calls that wait still all overlap a
    /// few milliseconds later. Needs the runtime's timer (`enable_time`).
    pub ramp_fanout: bool,
}

impl Default for Limits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        Limits { max_tasks: (cores * 8).max(32), max_fanout: 256, inline_calls: false, ramp_fanout: false }
    }
}

/// Where a workflow's processes run: what a workflow sees of its
/// surroundings travels with its run, not with the process or thread that
/// runs it, so two workflows in one process (the daemon) each get their own.
/// `Default` is the process's own working directory and environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// The working directory of shell tasks; `None`: the process's.
    pub cwd: Option<PathBuf>,
    /// The whole environment of shell tasks, replacing the process's;
    /// `None`: the process's.
    pub env: Option<Vec<(OsString, OsString)>>,
}

/// The workflow's variables when it ended, in order of first assignment.
pub type Variables = Vec<(Arc<str>, Value)>;

/// The variables of the top level or of one call, by slot.
#[derive(Debug)]
pub(crate) struct Frame {
    slots: Vec<Option<Value>>,
    /// Calls between this frame and the top level (0 there).
    depth: u32,
    /// Whose frame: an index into `Program::functions`, or `TOP`.
    function: u32,
    /// What `return` left for the call.
    ret: Option<Value>,
    /// Empty slot vectors for the calls this frame makes (see `callee`).
    spare: Vec<Vec<Option<Value>>>,
    /// Task keys and provenance (`observe::Obs`): only in an observed
    /// run, kept by the async walk only (code without tasks needs no key).
    obs: Option<Box<Obs>>,
}

/// `Frame::function` of the top level.
const TOP: u32 = u32::MAX;

/// More nested calls than this is an error, not a crash: see
/// ARCHITECTURE.md (call frames and the depth limit).
pub const MAX_CALL_DEPTH: u32 = 1000;

impl Frame {
    fn new(size: usize, depth: u32, function: u32) -> Self {
        Frame { slots: vec![None; size], depth, function, ret: None, spare: Vec::new(), obs: None }
    }

    /// The frame of a call made from this one, built from a spare slot
    /// vector when there is one: the spares travel down the call chain and
    /// come back with `recycle`, so a call allocates nothing once its
    /// depth has been reached before (malloc and free were a sixth of a
    /// trivial call's instructions).
    #[inline]
    fn callee(&mut self, size: usize, function: u32) -> Frame {
        let mut spare = std::mem::take(&mut self.spare);
        let mut slots = spare.pop().unwrap_or_default();
        // A spare keeps its length, all `None`: the same function's next
        // call finds it the right size.
        if slots.len() != size {
            slots.resize(size, None);
        }
        Frame { slots, depth: self.depth + 1, function, ret: None, spare, obs: None }
    }

    /// Takes back the spares of a finished callee, and its slots as one more.
    #[inline]
    fn recycle(&mut self, callee: Frame) {
        let Frame { mut slots, spare, .. } = callee;
        for slot in &mut slots {
            *slot = None;
        }
        self.spare = spare;
        self.spare.push(slots);
    }
}

/// A `para` branch's copy: the variables, not the spares (it makes its own).
impl Clone for Frame {
    fn clone(&self) -> Self {
        Frame {
            slots: self.slots.clone(),
            depth: self.depth,
            function: self.function,
            ret: self.ret.clone(),
            spare: Vec::new(),
            obs: self.obs.clone(),
        }
    }
}

impl std::ops::Index<usize> for Frame {
    type Output = Option<Value>;
    #[inline(always)]
    fn index(&self, slot: usize) -> &Option<Value> {
        &self.slots[slot]
    }
}

impl std::ops::IndexMut<usize> for Frame {
    #[inline(always)]
    fn index_mut(&mut self, slot: usize) -> &mut Option<Value> {
        &mut self.slots[slot]
    }
}
pub(crate) type Fallible<T> = Result<T, Box<Diagnostic>>;

/// What a statement tells the loop around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Next,
    Break,
    Continue,
    /// A `return` ran; its value is in the frame.
    Return,
}

/// Runs a resolved program to its end.
pub async fn execute(program: &Program, host: &dyn Host, out: &dyn Output, limits: Limits) -> Result<Variables, Diagnostic> {
    execute_with_interrupt(program, host, out, limits, &Interrupt::new()).await
}

/// Like [`execute`], but stops with an error soon after `interrupt` is
/// triggered, whether the workflow is awaiting tasks or computing.
pub async fn execute_with_interrupt(
    program: &Program,
    host: &dyn Host,
    out: &dyn Output,
    limits: Limits,
    interrupt: &Interrupt,
) -> Result<Variables, Diagnostic> {
    execute_in(program, host, out, limits, &Context::default(), interrupt).await
}

/// Like [`execute_with_interrupt`], with the working directory and
/// environment of the workflow's shell tasks given by `context`.
pub async fn execute_in(
    program: &Program,
    host: &dyn Host,
    out: &dyn Output,
    limits: Limits,
    context: &Context,
    interrupt: &Interrupt,
) -> Result<Variables, Diagnostic> {
    execute_with_inputs(program, Vec::new(), host, out, limits, context, interrupt).await
}

/// Like [`execute_in`], for a program compiled with
/// [`crate::compile_with_inputs`]: `inputs` gives each of its inputs a value
/// (by name, in any order), bound before the first statement. A missing or
/// unknown name is an error, and nothing runs.
pub async fn execute_with_inputs(
    program: &Program,
    inputs: Vec<(Arc<str>, Value)>,
    host: &dyn Host,
    out: &dyn Output,
    limits: Limits,
    context: &Context,
    interrupt: &Interrupt,
) -> Result<Variables, Diagnostic> {
    execute_observed(program, inputs, host, out, limits, context, interrupt, None).await
}

/// Like [`execute_with_inputs`], telling `observer` about every task (see
/// [`observe`]): what records tasks, replays them on resume, or reuses
/// cached results. `None` is exactly `execute_with_inputs`.
#[allow(clippy::too_many_arguments)]
pub async fn execute_observed(
    program: &Program,
    inputs: Vec<(Arc<str>, Value)>,
    host: &dyn Host,
    out: &dyn Output,
    limits: Limits,
    context: &Context,
    interrupt: &Interrupt,
    observer: Option<&dyn TaskObserver>,
) -> Result<Variables, Diagnostic> {
    let mut frame = Frame::new(program.slot_names.len(), 0, TOP);
    if observer.is_some() {
        frame.obs = Some(Box::default());
    }
    bind_inputs(program, inputs, &mut frame).map_err(|e| *e)?;
    let interp = Interpreter {
        program,
        host,
        out,
        limits,
        context,
        tasks: Semaphore::new(limits.max_tasks.max(1)),
        interrupt,
        concurrent: AtomicUsize::new(0),
        observer,
    };
    let whole = program.body.first().map_or(Span::default(), |s| s.span);
    tokio::select! {
        done = interp.block(&program.body, &mut frame) => done.map_err(|e| *e)?,
        // Dropping the other branch cancels every running task.
        () = interrupt.triggered() => return Err(interrupted(whole)),
    };
    Ok(program
        .outputs
        .iter()
        .filter_map(|&slot| Some((program.slot_names[slot as usize].clone(), frame[slot as usize].clone()?)))
        .collect())
}

/// Puts each input's value in its slot (input `i` is slot `i`).
fn bind_inputs(program: &Program, inputs: Vec<(Arc<str>, Value)>, frame: &mut Frame) -> Fallible<()> {
    let refuse = |message: String, hint: &str| Err(Box::new(Diagnostic::new(Stage::Runtime, Span::default(), message).with_hint(hint)));
    for (name, value) in inputs {
        let Some(slot) = program.inputs.iter().position(|n| *n == name) else {
            let declared: Vec<&str> = program.inputs.iter().map(|n| &**n).collect();
            let hint = format!(
                "compile the workflow with `{name}` among its inputs (it has {})",
                if declared.is_empty() { "none".to_owned() } else { declared.join(", ") }
            );
            return refuse(format!("`{name}` is not an input of this workflow"), &hint);
        };
        frame[slot] = Some(value);
    }
    if let Some(missing) = program.inputs.iter().enumerate().find(|&(slot, _)| frame[slot].is_none()) {
        return refuse(format!("input `{}` has no value", missing.1), "give every input the workflow was compiled with a value");
    }
    Ok(())
}

fn interrupted(span: Span) -> Diagnostic {
    Diagnostic::new(Stage::Runtime, span, "the workflow was interrupted").with_label("running here or later when it was stopped")
}

pub(crate) struct Interpreter<'a> {
    program: &'a Program,
    host: &'a dyn Host,
    out: &'a dyn Output,
    limits: Limits,
    context: &'a Context,
    /// Bounds running tasks (`Limits::max_tasks`).
    tasks: Semaphore,
    interrupt: &'a Interrupt,
    /// `para` blocks and `para for` loops running now.
    concurrent: AtomicUsize,
    observer: Option<&'a dyn TaskObserver>,
}

pub(crate) fn error(span: Span, message: impl Into<String>) -> Box<Diagnostic> {
    Box::new(Diagnostic::new(Stage::Runtime, span, message))
}

impl Interpreter<'_> {
    /// Loops call this every iteration: pure computation never awaits, so
    /// it could not be cancelled otherwise.
    #[inline(always)]
    fn check_interrupt(&self, span: Span) -> Fallible<()> {
        if self.interrupt.is_triggered() {
            return Err(Box::new(interrupted(span)));
        }
        Ok(())
    }

    fn load(&self, slot: Slot, span: Span, frame: &Frame) -> Fallible<Value> {
        match &frame[slot as usize] {
            Some(v) => Ok(v.made().clone()),
            None => {
                let names = match frame.function {
                    TOP => &self.program.slot_names,
                    f => &self.program.functions[f as usize].slot_names,
                };
                let name = &names[slot as usize];
                Err(Box::new(Diagnostic::new(Stage::Runtime, span, format!("`{name}` has no value here")).with_label(format!(
                    "the statement that assigns `{name}` has not run (a branch not taken, or a loop that ran zero times)"
                ))))
            }
        }
    }

    fn print(&self, v: &Value) {
        match v {
            Value::Str(s) => self.out.print(s),
            other => self.out.print(&other.to_string()),
        }
    }

    /// The frame of a call of `function` from `caller`, or the error of
    /// one call too deep. Checks the interrupt too: a recursion without
    /// loops would not see it otherwise.
    #[inline(always)]
    fn enter(&self, function: u32, caller: &mut Frame, span: Span) -> Fallible<Frame> {
        let callee = &self.program.functions[function as usize];
        let depth = caller.depth + 1;
        if depth > MAX_CALL_DEPTH {
            return Err(self.too_deep(&callee.name, depth, span));
        }
        self.check_interrupt(span)?;
        Ok(caller.callee(callee.slot_names.len(), function))
    }

    #[cold]
    fn too_deep(&self, name: &str, depth: u32, span: Span) -> Box<Diagnostic> {
        Box::new(
            Diagnostic::new(Stage::Runtime, span, format!("too many nested calls: calling `{name}` here nests more than {MAX_CALL_DEPTH}"))
                .with_label(format!("the call {depth} levels deep"))
                .with_hint(format!("does the recursion of `{name}` reach its base case? A loop (`while`, `for`) needs no nesting")),
        )
    }

    /// Conditions and `and`/`or`/`!` operands must be Bool: no truthiness.
    fn truth(v: Value, span: Span, what: &str) -> Fallible<bool> {
        match v {
            Value::Bool(b) => Ok(b),
            other => Err(Box::new(
                Diagnostic::new(Stage::Runtime, span, format!("{what} must be a Bool, found {}", other.type_name()))
                    .with_hint("oxiida has no truthiness: compare explicitly, e.g. `x != 0` or `len(xs) > 0`"),
            )),
        }
    }

    /// A condition. Comparing two Ints held in variables or constants, the
    /// usual loop test, is answered without building a value.
    fn test(&self, e: &Expr, f: &mut Frame, what: &str) -> Fallible<bool> {
        if let ExprKind::Binary { op, lhs, rhs, .. } = &e.kind {
            if let (Some(Value::Int(a)), Some(Value::Int(b))) = (peek(lhs, f), peek(rhs, f)) {
                match op {
                    BinaryOp::Lt => return Ok(a < b),
                    BinaryOp::Le => return Ok(a <= b),
                    BinaryOp::Gt => return Ok(a > b),
                    BinaryOp::Ge => return Ok(a >= b),
                    BinaryOp::Eq => return Ok(a == b),
                    BinaryOp::Ne => return Ok(a != b),
                    _ => {}
                }
            }
        }
        Self::truth(self.eval(e, f)?, e.span, what)
    }
}

/// A constant or a set variable, by reference: operands of the hot
/// arithmetic path need no clone.
#[inline(always)]
fn peek<'v>(e: &'v Expr, f: &'v Frame) -> Option<&'v Value> {
    match &e.kind {
        ExprKind::Const(v) => Some(v),
        ExprKind::Var(slot) => f[*slot as usize].as_ref().map(Value::made),
        _ => None,
    }
}
