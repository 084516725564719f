//! The syntax tree the parser produces: what the user wrote, with spans.
//! The resolver lowers it to `crate::ir`, which is what runs.

use crate::diagnostic::Span;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Program {
    pub stmts: Vec<Stmt>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// `{ ... }`
    Plain,
    /// `seq { ... }`
    Seq,
    /// `para { ... }`
    Para,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// `expr;`
    Expr(Expr),
    /// `print expr;`
    Print(Expr),
    /// `require a.b as c, d from lua;`
    Require(Require),
    Break,
    Continue,
    Block {
        kind: BlockKind,
        body: Vec<Stmt>,
    },
    If {
        cond: Expr,
        then: Box<Stmt>,
        els: Option<Box<Stmt>>,
    },
    While {
        cond: Expr,
        body: Box<Stmt>,
    },
    /// `for x in xs stmt` and `para for x in xs stmt`
    For {
        para: bool,
        var: Ident,
        iter: Expr,
        body: Box<Stmt>,
    },
    /// `fn name(params) { body }` (0.3); only at the top level, which
    /// `syntax::parse` checks.
    Fn(Box<FnDef>),
    /// `return expr;` or `return;` (0.3)
    Return(Option<Expr>),
    /// Stands where the parser recovered from a syntax error (already reported).
    Error,
}

/// A workflow function (language 0.3).
#[derive(Clone, Debug, PartialEq)]
pub struct FnDef {
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Vec<Stmt>,
}

/// `name` or `name = default`.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub default: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Require {
    pub items: Vec<RequireItem>,
    /// The plugin named by `from NAME`.
    pub from: Option<Ident>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RequireItem {
    /// `os.path.join` is three parts; never empty.
    pub path: Vec<Ident>,
    pub alias: Option<Ident>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Plus,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `%`: the remainder of floor division (0.3).
    Mod,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `a in b`: element, key or substring (0.3).
    In,
    And,
    Or,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
        }
    }
}

impl UnaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Neg => "-",
            UnaryOp::Plus => "+",
            UnaryOp::Not => "!",
        }
    }
}

/// A keyword argument, `name = value`, of a call (language 0.3).
#[derive(Clone, Debug, PartialEq)]
pub struct Keyword {
    pub name: Ident,
    pub value: Expr,
}

/// One stage of a `shellpipe`: `"sort" "-n"`.
#[derive(Clone, Debug, PartialEq)]
pub struct ShellUnit {
    /// Program then arguments, as written (escapes already processed).
    pub words: Vec<String>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Var(Ident),
    /// `name = value` (right-associative; the value of the expression is `value`).
    Assign {
        target: Ident,
        value: Box<Expr>,
    },
    Unary {
        op: UnaryOp,
        op_span: Span,
        expr: Box<Expr>,
    },
    /// Includes `and` / `or`; `op_span` covers just the operator.
    Binary {
        op: BinaryOp,
        op_span: Span,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `f(a, b, k = c)` (process = false) or `=f=(a, b, k = c)` (process = true).
    /// The parser has checked that every keyword argument follows the
    /// positional ones, so `args` then `keywords` is the written order.
    Call {
        callee: Box<Expr>,
        args: Vec<Expr>,
        keywords: Vec<Keyword>,
        process: bool,
    },
    /// `expr.name`
    Field {
        expr: Box<Expr>,
        name: Ident,
    },
    /// `expr[index]`
    Index {
        expr: Box<Expr>,
        index: Box<Expr>,
    },
    /// `[a, b, c]`
    Array(Vec<Expr>),
    /// `{"k": v, ...}` (0.3): keys are expressions, in written order.
    Map(Vec<(Expr, Expr)>),
    /// `shell {cmd}`, `shell {cmd, [args]}`, `shell {cmd, [args], stdin}`
    Shell {
        cmd: Box<Expr>,
        args: Vec<Expr>,
        stdin: Option<Box<Expr>>,
    },
    /// `shellpipe { "a" "b" | "c" }`
    ShellPipe(Vec<ShellUnit>),
    /// Stands where the parser recovered from a syntax error (already reported).
    Error,
}
