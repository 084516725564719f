//! The evaluator, written once: what every statement and expression does.
//!
//! `walker!` expands the one body twice. `walker!(sync ...)` makes `exec`
//! and `eval`, a plain recursive walk for nodes without tasks: there, a
//! child is a plain call, and a task or `para` is unreachable (the resolver
//! never marks one as sync). `walker!(async ...)` makes `exec_async` and
//! `eval_async`, one boxed future per node that holds a task: there, a child
//! goes through `exec_any`/`eval_any`/`test_any` (in `tasks.rs`), which hand
//! it back to the plain walk when it holds no task, and awaits it otherwise.
//!
//! So the counting loop compiles to exactly the plain recursion it always
//! was, and an operator, an error message or a loop's bookkeeping cannot
//! differ between code with tasks and code without.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::observe::{self, Step};
use super::{error, peek, Fallible, Flow, Frame, Interpreter};
use crate::diagnostic::{Diagnostic, Span};
use crate::ir::{Expr, ExprKind, Stmt, StmtKind};
use crate::ops;
use crate::syntax::ast::BinaryOp;
use crate::value::{Map, Value};

/// `a + b` for `AddTo`, which owns `a`: an Array that nothing else holds
/// grows in place. On an error, `a` comes back to be put back.
fn add_owned(a: Value, b: Value, op_span: Span) -> Result<Value, (Value, Box<Diagnostic>)> {
    match (a, b) {
        (Value::Array(mut xs), Value::Array(ys)) => {
            // A copy only when `xs` is shared: the semantics of `xs + ys` either way.
            let items = Arc::make_mut(&mut xs);
            match Arc::try_unwrap(ys) {
                Ok(ys) => items.extend(ys),
                Err(ys) => items.extend(ys.iter().cloned()),
            }
            Ok(Value::Array(xs))
        }
        (a, b) => match ops::binary(BinaryOp::Add, &a, &b) {
            Ok(sum) => Ok(sum),
            Err(m) => Err((a, error(op_span, m))),
        },
    }
}

/// Notes on an error that left a call: where each call was, innermost
/// first, as a traceback. The same call repeated (a recursion) is one
/// note with a count, and past `SHOWN` calls the rest is summed up.
#[cold]
fn called_from(mut err: Box<Diagnostic>, name: &str, line: u32) -> Box<Diagnostic> {
    const SHOWN: usize = 8;
    let note = format!("in `{name}`, called at line {line}");
    if let Some(last) = err.notes.last_mut() {
        let repeats = if *last == note {
            Some(0)
        } else {
            last.strip_prefix(&note)
                .and_then(|rest| rest.strip_prefix(" (and "))
                .and_then(|rest| rest.split(' ').next()?.parse::<u32>().ok())
        };
        if let Some(n) = repeats {
            *last = format!("{note} (and {} more times)", n + 1);
            return err;
        }
    }
    let calls = err.notes.iter().filter(|n| n.starts_with("in `") || n.starts_with("... ")).count();
    if calls < SHOWN {
        err.notes.push(note);
    } else if calls == SHOWN {
        err.notes.push("... and the calls that led there".to_owned());
    }
    err
}

fn map_key(span: Span, found: &Value) -> Box<Diagnostic> {
    Box::new(
        Diagnostic::new(crate::diagnostic::Stage::Runtime, span, format!("a Map key must be a String, found {}", found.a_type()))
            .with_hint("convert the key with `str(...)`"),
    )
}

/// A child evaluated in the walk's mode: `rec!(sync self.eval(x, f))` is the
/// call itself; `rec!(async self.eval(x, f))` is `self.eval_any(x, f).await`.
macro_rules! rec {
    (sync $($call:tt)*) => { $($call)* };
    (async $this:ident . exec ($($a:tt)*)) => { $this.exec_any($($a)*).await };
    (async $this:ident . eval ($($a:tt)*)) => { $this.eval_any($($a)*).await };
    (async $this:ident . test ($($a:tt)*)) => { $this.test_any($($a)*).await };
}

/// The first form in the sync walk, the second in the async walk.
macro_rules! pick {
    (sync, $sync:expr, $async:expr) => {
        $sync
    };
    (async, $sync:expr, $async:expr) => {
        $async
    };
}

/// Code that only the async walk can reach: tasks and `para` blocks.
macro_rules! tasks_only {
    (sync $($code:tt)*) => { unreachable!("the resolver marks tasks and `para` as async") };
    (async $($code:tt)*) => { $($code)* };
}

/// Code for task keys (the path of `Frame`), in the async walk only, and
/// there only when an observer is installed: the plain walk never runs a
/// task, so it never needs a key.
macro_rules! track {
    (sync $o:ident in $f:ident $($code:tt)*) => {};
    (async $o:ident in $f:ident $($code:tt)*) => {
        if let Some($o) = $f.obs.as_deref_mut() {
            $($code)*
        }
    };
}

/// Where the current statement's tasks begin in `Obs::acc` (0 unobserved).
macro_rules! mark {
    (sync $f:ident) => {
        0usize
    };
    (async $f:ident) => {
        $f.obs.as_ref().map_or(0, |o| o.acc.len())
    };
}

/// Every expression of `items`, in order, into a `Vec` (an early error returns).
macro_rules! all {
    ($mode:ident $this:ident, $items:expr, $f:ident) => {{
        let items = $items;
        let mut values = Vec::with_capacity(items.len());
        for item in items {
            values.push(rec!($mode $this.eval(item, $f))?);
        }
        values
    }};
}

/// The one body of `exec` and `eval`, expanded in `mode` (`sync` or
/// `async`) into methods named `exec` and `eval`.
macro_rules! walker {
    ($mode:ident, $exec:ident, $eval:ident) => {
        walker!(@fn $mode $exec(self, s: &Stmt, f) -> Flow {
            match &s.kind {
                // An assignment statement stores its value without the copy an
                // assignment expression returns.
                StmtKind::Expr(Expr { kind: ExprKind::Assign(slot, value), .. }) => {
                    let _mark = mark!($mode f);
                    let v = rec!($mode self.eval(value, f))?;
                    f[*slot as usize] = Some(v);
                    track!($mode o in f let sources = o.derive(_mark, &[value]); o.set(*slot, sources););
                }
                StmtKind::Expr(e) => {
                    let _mark = mark!($mode f);
                    rec!($mode self.eval(e, f))?;
                    track!($mode o in f o.acc.truncate(_mark););
                }
                StmtKind::Print(e) => {
                    let _mark = mark!($mode f);
                    let v = rec!($mode self.eval(e, f))?;
                    self.print(&v);
                    track!($mode o in f o.acc.truncate(_mark););
                    // An output that failed stops the workflow (it triggers
                    // the interrupt): here, so the error is at this `print`.
                    self.check_interrupt(s.span)?;
                }
                StmtKind::Break => return Ok(Flow::Break),
                StmtKind::Continue => return Ok(Flow::Continue),
                StmtKind::Block(body) => {
                    for s in body {
                        let flow = rec!($mode self.exec(s, f))?;
                        if flow != Flow::Next {
                            return Ok(flow);
                        }
                    }
                }
                StmtKind::If { cond, then, els } => {
                    if rec!($mode self.test(cond, f, "the condition of `if`"))? {
                        return rec!($mode self.exec(then, f));
                    } else if let Some(els) = els {
                        return rec!($mode self.exec(els, f));
                    }
                }
                StmtKind::While { cond, body } => {
                    // The first iteration makes it 0.
                    track!($mode o in f o.path.push(Step::Iteration(u32::MAX)););
                    while rec!($mode self.test(cond, f, "the condition of `while`"))? {
                        self.check_interrupt(s.span)?;
                        track!($mode o in f if let Some(Step::Iteration(n)) = o.path.last_mut() { *n = n.wrapping_add(1); });
                        match rec!($mode self.exec(body, f))? {
                            Flow::Break => break,
                            Flow::Return => {
                                track!($mode o in f o.path.pop(););
                                return Ok(Flow::Return);
                            }
                            Flow::Next | Flow::Continue => {}
                        }
                    }
                    track!($mode o in f o.path.pop(););
                }
                StmtKind::For { var, iter, body } => {
                    let _mark = mark!($mode f);
                    let items = ops::iterate(&rec!($mode self.eval(iter, f))?).map_err(|m| error(iter.span, m))?;
                    track!($mode o in f let sources = o.derive(_mark, &[iter]); o.set(*var, sources););
                    // The first iteration makes it 0.
                    track!($mode o in f o.path.push(Step::Iteration(u32::MAX)););
                    for item in items {
                        self.check_interrupt(s.span)?;
                        track!($mode o in f if let Some(Step::Iteration(n)) = o.path.last_mut() { *n = n.wrapping_add(1); });
                        f[*var as usize] = Some(item);
                        match rec!($mode self.exec(body, f))? {
                            Flow::Break => break,
                            Flow::Return => {
                                track!($mode o in f o.path.pop(););
                                return Ok(Flow::Return);
                            }
                            Flow::Next | Flow::Continue => {}
                        }
                    }
                    track!($mode o in f o.path.pop(););
                }
                StmtKind::Return(value) => {
                    let _mark = mark!($mode f);
                    let v = match value {
                        Some(e) => rec!($mode self.eval(e, f))?,
                        None => Value::Nil,
                    };
                    track!($mode o in f
                        let sources = o.derive(_mark, &value.iter().collect::<Vec<_>>());
                        if let Some(ret) = &o.ret {
                            observe::extend(&mut ret.lock().unwrap_or_else(|e| e.into_inner()), &sources);
                        }
                    );
                    f.ret = Some(v);
                    return Ok(Flow::Return);
                }
                StmtKind::AddTo { slot, value, op_span, target_span } => {
                    let _mark = mark!($mode f);
                    let at = *slot as usize;
                    if f[at].is_none() {
                        return Err(self.load(*slot, *target_span, f).expect_err("the slot is empty"));
                    }
                    // Adding a constant or a variable that is not an Array (`i = i + 1`): no copies.
                    if let Some(b) = peek(value, f).filter(|b| !matches!(b, Value::Array(_))) {
                        let a = f[at].as_ref().expect("checked above").made();
                        let sum = match (a, b) {
                            (Value::Int(x), Value::Int(y)) if x.checked_add(*y).is_some() => Value::Int(x + y),
                            _ => ops::binary(BinaryOp::Add, a, b).map_err(|m| error(*op_span, m))?,
                        };
                        f[at] = Some(sum);
                        return Ok(Flow::Next);
                    }
                    let b = rec!($mode self.eval(value, f))?;
                    // `value` cannot rebind the slot (the resolver checked), so it is still set.
                    let a = f[at].take().expect("checked above").forced();
                    f[at] = Some(add_owned(a, b, *op_span).map_err(|(a, err)| {
                        f[at] = Some(a);
                        err
                    })?);
                    track!($mode o in f
                        let mut sources = o.derive(_mark, &[value]);
                        observe::extend(&mut sources, &o.of(&[*slot]));
                        o.set(*slot, sources);
                    );
                }
                StmtKind::Nop => {}
                StmtKind::Para(branches) => tasks_only!($mode self.para(branches, f).await?),
                StmtKind::ParaFor { var, iter, body } => tasks_only!($mode {
                    let _mark = mark!($mode f);
                    let items = ops::iterate(&rec!($mode self.eval(iter, f))?).map_err(|m| error(iter.span, m))?;
                    track!($mode o in f let sources = o.derive(_mark, &[iter]); o.set(*var, sources););
                    self.para_for(*var, items, body, f).await?;
                }),
            }
            Ok(Flow::Next)
        });

        walker!(@fn $mode $eval(self, e: &Expr, f) -> Value {
            match &e.kind {
                ExprKind::Const(v) => Ok(v.clone()),
                ExprKind::Var(slot) => self.load(*slot, e.span, f),
                ExprKind::Assign(slot, value) => {
                    let v = rec!($mode self.eval(value, f))?;
                    f[*slot as usize] = Some(v.clone());
                    Ok(v)
                }
                ExprKind::Unary { op, expr } => {
                    let v = rec!($mode self.eval(expr, f))?;
                    ops::unary(*op, &v).map_err(|m| error(e.span, m))
                }
                ExprKind::Binary { op: op @ (BinaryOp::And | BinaryOp::Or), lhs, rhs, .. } => {
                    let a = rec!($mode self.eval(lhs, f))?;
                    let a = Self::truth(a, lhs.span, &format!("the left operand of `{}`", op.symbol()))?;
                    if a == (*op == BinaryOp::Or) {
                        return Ok(Value::Bool(a));
                    }
                    let b = rec!($mode self.eval(rhs, f))?;
                    Ok(Value::Bool(Self::truth(b, rhs.span, &format!("the right operand of `{}`", op.symbol()))?))
                }
                ExprKind::Binary { op, op_span, lhs, rhs } => {
                    // Both operands constants or variables: no clone.
                    if let (Some(a), Some(b)) = (peek(lhs, f), peek(rhs, f)) {
                        // Int + Int without the call (an overflow goes on to `ops`, for its error).
                        if let (BinaryOp::Add, Value::Int(x), Value::Int(y)) = (op, a, b) {
                            if let Some(sum) = x.checked_add(*y) {
                                return Ok(Value::Int(sum));
                            }
                        }
                        return ops::binary(*op, a, b).map_err(|m| error(*op_span, m));
                    }
                    let a = rec!($mode self.eval(lhs, f))?;
                    let b = rec!($mode self.eval(rhs, f))?;
                    ops::binary(*op, &a, &b).map_err(|m| error(*op_span, m))
                }
                ExprKind::Builtin { function, args } => {
                    let args = all!($mode self, args, f);
                    function.call(&args).map_err(|m| error(e.span, m))
                }
                ExprKind::Field { expr, name } => {
                    let v = rec!($mode self.eval(expr, f))?;
                    ops::field(&v, name).map_err(|m| error(e.span, m))
                }
                ExprKind::Index { expr, index } => {
                    let v = rec!($mode self.eval(expr, f))?;
                    let i = rec!($mode self.eval(index, f))?;
                    ops::index(&v, &i).map_err(|m| error(index.span, m))
                }
                ExprKind::Call { function, args, line } => {
                    let mut callee = self.enter(*function, f, e.span)?;
                    track!($mode o in f
                        let mut path = o.path.clone();
                        path.push(Step::Call(e.span.start as u32));
                        let ret = Some(std::sync::Arc::new(std::sync::Mutex::new(Vec::new())));
                        callee.obs = Some(Box::new(observe::Obs { path, ret, ..Default::default() }));
                    );
                    for (slot, arg) in args {
                        let _mark = mark!($mode f);
                        let v = match peek(arg, f) {
                            Some(v) => v.clone(),
                            None => rec!($mode self.eval(arg, f))?,
                        };
                        callee[*slot as usize] = Some(v);
                        track!($mode o in f
                            let sources = o.derive(_mark, &[arg]);
                            if let Some(c) = callee.obs.as_deref_mut() {
                                c.set(*slot, sources);
                            }
                        );
                    }
                    let _ret = pick!($mode, None::<()>, callee.obs.as_ref().and_then(|c| c.ret.clone()));
                    let func = &self.program.functions[*function as usize];
                    let result = pick!(
                        $mode,
                        {
                            let result = self.run_call(func, &mut callee);
                            f.recycle(callee);
                            result
                        },
                        self.run_call_async(func, callee).await
                    );
                    track!($mode o in f
                        if let Some(ret) = &_ret {
                            let sources = ret.lock().unwrap_or_else(|e| e.into_inner()).clone();
                            observe::extend(&mut o.acc, &sources);
                        }
                    );
                    result.map_err(|err| called_from(err, &func.name, *line))
                }
                ExprKind::Array(items) => Ok(Value::array(all!($mode self, items, f))),
                ExprKind::Map(entries) => {
                    let mut map = Map::with_capacity(entries.len());
                    for (key, value) in entries {
                        let k = match rec!($mode self.eval(key, f))? {
                            Value::Str(k) => k,
                            other => return Err(map_key(key.span, &other)),
                        };
                        let v = rec!($mode self.eval(value, f))?;
                        // A repeated key keeps its first place and takes the later value.
                        map.insert(k, v);
                    }
                    Ok(Value::map(map))
                }
                ExprKind::Foreign { function, args, keywords, mode } => tasks_only!($mode {
                    let _mark = mark!($mode f);
                    let exprs = args;
                    let args = all!($mode self, args, f);
                    let mut named = Vec::with_capacity(keywords.len());
                    for (name, value) in keywords {
                        named.push((name.clone(), rec!($mode self.eval(value, f))?));
                    }
                    track!($mode o in f
                        let all: Vec<&Expr> = exprs.iter().chain(keywords.iter().map(|(_, e)| e)).collect();
                        o.inputs = o.derive(_mark, &all);
                    );
                    self.call_foreign(*function, args, named, *mode, e.span, f).await
                }),
                ExprKind::Shell { cmd, args, stdin } => tasks_only!($mode self.shell(cmd, args, stdin.as_deref(), e.span, f).await),
                ExprKind::ShellPipe(units) => tasks_only!($mode self.shell_pipe(units, e.span, f).await),
            }
        });
    };
    // The signatures: a plain method, or one boxed future (the async walk
    // recurses, so its futures cannot be sized without a box).
    // The names `self`, the node and `f` come from the body's arm, so that
    // the body may use them (hygiene).
    (@fn sync $name:ident($this:ident, $node:ident: &$ty:ty, $f:ident) -> $out:ty $body:block) => {
        // What the arms of tasks and `para` bind is used in the async
        // expansion only; anything else unused would warn there.
        #[allow(unused_variables)]
        pub(super) fn $name(&$this, $node: &$ty, $f: &mut Frame) -> Fallible<$out> $body
    };
    (@fn async $name:ident($this:ident, $node:ident: &$ty:ty, $f:ident) -> $out:ty $body:block) => {
        pub(super) fn $name<'s>(&'s $this, $node: &'s $ty, $f: &'s mut Frame) -> BoxFuture<'s, Fallible<$out>> {
            Box::pin(async move $body)
        }
    };
}

impl Interpreter<'_> {
    walker!(sync, exec, eval);
    walker!(async, exec_async, eval_async);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(n: i64) -> Value {
        Value::array((0..n).map(Value::Int).collect())
    }

    #[test]
    fn an_array_held_once_grows_in_place() {
        let xs = ints(3);
        let Value::Array(arc) = &xs else { unreachable!() };
        let before = Arc::as_ptr(arc);
        let Ok(Value::Array(grown)) = add_owned(xs, ints(1), Span::default()) else { panic!("not an Array") };
        assert_eq!(Arc::as_ptr(&grown), before, "the same allocation, appended to");
        assert_eq!(Value::Array(grown).to_string(), "[0, 1, 2, 0]");
    }

    #[test]
    fn a_shared_array_is_copied_and_left_as_it_was() {
        let xs = ints(2);
        let kept = xs.clone();
        let Ok(sum) = add_owned(xs, ints(1), Span::default()) else { panic!("adds") };
        assert_eq!(sum.to_string(), "[0, 1, 0]");
        assert_eq!(kept.to_string(), "[0, 1]");
    }

    #[test]
    fn a_failed_add_gives_the_value_back() {
        let Err((back, err)) = add_owned(ints(1), Value::Int(2), Span::new(3, 4)) else { panic!("Array + Int fails") };
        assert_eq!(back.to_string(), "[0]");
        assert!(err.message.contains("Array and Int"));
        assert_eq!(err.span, Span::new(3, 4));
    }
}
