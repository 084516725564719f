//! The resolved program: what the interpreter runs. Names are slots,
//! functions are builtins or indices into the required table, and every node
//! knows whether it can await (so pure computation never does).

use std::sync::Arc;

use crate::builtins::Builtin;
use crate::diagnostic::Span;
use crate::foreign::{CallMode, ForeignName};
use crate::syntax::ast::{BinaryOp, UnaryOp};
use crate::value::Value;

pub type Slot = u32;

#[derive(Debug)]
pub struct Program {
    pub body: Vec<Stmt>,
    /// Variable names by slot.
    pub slot_names: Vec<Arc<str>>,
    /// Required functions, indexed by `ExprKind::Foreign::function`.
    pub foreign: Vec<Foreign>,
    /// Variables readable at the end of the program, in order of first
    /// assignment: what an embedder gets back.
    pub outputs: Vec<Slot>,
    /// Workflow functions (0.3), indexed by `ExprKind::Call::function`.
    pub functions: Vec<Function>,
    /// The program's inputs, in the order they were given to
    /// [`crate::compile_with_inputs`]: input `i` is slot `i`, bound before
    /// the first statement.
    pub inputs: Vec<Arc<str>>,
}

/// A workflow function. A call runs `body` in a frame of its own with
/// `slot_names.len()` slots, the parameters first (parameter `i` is slot `i`).
#[derive(Debug)]
pub struct Function {
    pub name: Arc<str>,
    pub params: Vec<Param>,
    pub body: Vec<Stmt>,
    /// Variable names by slot, parameters first.
    pub slot_names: Vec<Arc<str>>,
    /// Neither the body nor a default holds a task or a `para`, nor calls a
    /// function that does: its calls run on the synchronous path.
    pub sync: bool,
}

#[derive(Debug)]
pub struct Param {
    pub name: Arc<str>,
    /// Evaluated in the callee's frame, after the arguments are bound, when
    /// the call does not give this parameter.
    pub default: Option<Expr>,
}

#[derive(Debug)]
pub struct Foreign {
    /// The name the workflow calls it by (alias or last path part).
    pub binding: String,
    pub name: ForeignName,
}

#[derive(Debug)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
    /// No task and no `para` inside: runs on the synchronous path.
    pub sync: bool,
}

#[derive(Debug)]
pub struct Branch {
    pub stmt: Stmt,
    /// Slots this branch alone creates; copied out when the block joins.
    pub exports: Vec<Slot>,
}

#[derive(Debug)]
pub enum StmtKind {
    Expr(Expr),
    Print(Expr),
    Break,
    Continue,
    Block(Vec<Stmt>),
    Para(Vec<Branch>),
    If {
        cond: Expr,
        then: Box<Stmt>,
        els: Option<Box<Stmt>>,
    },
    While {
        cond: Expr,
        body: Box<Stmt>,
    },
    For {
        var: Slot,
        iter: Expr,
        body: Box<Stmt>,
    },
    ParaFor {
        var: Slot,
        iter: Expr,
        body: Box<Stmt>,
    },
    /// `return e;` (`None`: `return;`): the value goes to the frame, and
    /// `Flow::Return` unwinds to the call.
    Return(Option<Expr>),
    /// `name = name + value;` where `value` cannot rebind `name`: the
    /// value is taken out of its slot while adding, so an Array no one else
    /// holds grows in place (a loop of appends is linear, not quadratic).
    AddTo {
        slot: Slot,
        value: Expr,
        op_span: Span,
        target_span: Span,
    },
    /// `require` and `fn` do their work at resolve time.
    Nop,
}

#[derive(Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Contains a shell task, a foreign call or a call of a function that is
    /// not `sync`, so must be awaited.
    pub task: bool,
}

#[derive(Debug)]
pub enum ExprKind {
    Const(Value),
    Var(Slot),
    Assign(Slot, Box<Expr>),
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        op_span: Span,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Builtin {
        function: Builtin,
        args: Vec<Expr>,
    },
    /// A workflow function; each argument in written order with the
    /// parameter (callee slot) it binds.
    Call {
        function: u32,
        args: Vec<(Slot, Expr)>,
        /// The line of the call, for the "called from" notes of an error.
        line: u32,
    },
    /// `keywords` in written order, after every positional argument; the
    /// names are interned once here and only cloned (a count) per call.
    Foreign {
        function: usize,
        args: Vec<Expr>,
        keywords: Vec<(Arc<str>, Expr)>,
        mode: CallMode,
    },
    Field {
        expr: Box<Expr>,
        name: Arc<str>,
    },
    Index {
        expr: Box<Expr>,
        index: Box<Expr>,
    },
    Array(Vec<Expr>),
    /// Keys must evaluate to Strings.
    Map(Vec<(Expr, Expr)>),
    Shell {
        cmd: Box<Expr>,
        args: Vec<Expr>,
        stdin: Option<Box<Expr>>,
    },
    ShellPipe(Vec<Vec<String>>),
}
