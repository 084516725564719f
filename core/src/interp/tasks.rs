//! The async half of the interpreter: statements and expressions that hold a
//! task (shell, foreign call) or a `para` block. Each such node is one boxed
//! future; everything task-free inside it runs on the synchronous path.
//!
//! `para` branches are futures polled together on the workflow's task, each
//! with its own copy of the frame (branches cannot rebind outer variables, so
//! copies never disagree). Dropping the set of branches cancels them: their
//! shell processes are killed and foreign results dropped.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::{error, Fallible, Flow, Frame, Interpreter};
use crate::diagnostic::{Diagnostic, Span, Stage};
use crate::foreign::{CallMode, ForeignErrorKind};
use crate::ir::{Branch, Expr, ExprKind, Slot, Stmt, StmtKind};
use crate::syntax::ast::BinaryOp;
use crate::value::Value;
use crate::{ops, shell};

impl Interpreter<'_> {
    pub(super) async fn block(&self, body: &[Stmt], f: &mut Frame) -> Fallible<Flow> {
        for s in body {
            let flow = self.exec_any(s, f).await?;
            if flow != Flow::Next {
                return Ok(flow);
            }
        }
        Ok(Flow::Next)
    }

    async fn exec_any(&self, s: &Stmt, f: &mut Frame) -> Fallible<Flow> {
        if s.sync {
            self.exec(s, f)
        } else {
            self.exec_async(s, f).await
        }
    }

    async fn eval_any(&self, e: &Expr, f: &mut Frame) -> Fallible<Value> {
        if e.task {
            self.eval_async(e, f).await
        } else {
            self.eval(e, f)
        }
    }

    async fn eval_all(&self, es: &[Expr], f: &mut Frame) -> Fallible<Vec<Value>> {
        let mut out = Vec::with_capacity(es.len());
        for e in es {
            out.push(self.eval_any(e, f).await?);
        }
        Ok(out)
    }

    async fn truth_any(&self, e: &Expr, f: &mut Frame, what: &str) -> Fallible<bool> {
        let v = self.eval_any(e, f).await?;
        Self::truth(v, e.span, what)
    }

    fn exec_async<'s>(&'s self, s: &'s Stmt, f: &'s mut Frame) -> BoxFuture<'s, Fallible<Flow>> {
        Box::pin(async move {
            match &s.kind {
                StmtKind::Expr(e) => {
                    self.eval_any(e, f).await?;
                }
                StmtKind::Print(e) => {
                    let v = self.eval_any(e, f).await?;
                    self.print(&v);
                }
                StmtKind::Block(body) => return self.block(body, f).await,
                StmtKind::If { cond, then, els } => {
                    if self.truth_any(cond, f, "the condition of `if`").await? {
                        return self.exec_any(then, f).await;
                    } else if let Some(els) = els {
                        return self.exec_any(els, f).await;
                    }
                }
                StmtKind::While { cond, body } => {
                    while self.truth_any(cond, f, "the condition of `while`").await? {
                        self.check_interrupt(s.span)?;
                        if self.exec_any(body, f).await? == Flow::Break {
                            break;
                        }
                    }
                }
                StmtKind::For { var, iter, body } => {
                    let items = ops::iterate(&self.eval_any(iter, f).await?).map_err(|m| error(iter.span, m))?;
                    for item in items {
                        self.check_interrupt(s.span)?;
                        f[*var as usize] = Some(item);
                        if self.exec_any(body, f).await? == Flow::Break {
                            break;
                        }
                    }
                }
                StmtKind::Para(branches) => self.para(branches, f).await?,
                StmtKind::ParaFor { var, iter, body } => {
                    let items = ops::iterate(&self.eval_any(iter, f).await?).map_err(|m| error(iter.span, m))?;
                    self.para_for(*var, items, body, f).await?;
                }
                StmtKind::Break | StmtKind::Continue | StmtKind::Nop => return self.exec(s, f),
            }
            Ok(Flow::Next)
        })
    }

    /// Runs every branch at once; the first failure cancels the rest.
    async fn para(&self, branches: &[Branch], f: &mut Frame) -> Fallible<()> {
        let _concurrent = Concurrent::enter(&self.concurrent);
        let mut running: FuturesUnordered<_> = branches
            .iter()
            .enumerate()
            .map(|(i, branch)| {
                let mut frame = f.clone();
                async move {
                    self.exec_any(&branch.stmt, &mut frame).await?;
                    Ok::<_, Box<Diagnostic>>((i, frame))
                }
            })
            .collect();
        while let Some(done) = running.next().await {
            let (i, mut frame) = done?;
            for &slot in &branches[i].exports {
                f[slot as usize] = frame[slot as usize].take();
            }
        }
        Ok(())
    }

    /// Runs iterations concurrently, at most `max_fanout` at a time, each
    /// with its own frame; nothing flows back out of an iteration.
    async fn para_for(&self, var: Slot, items: Vec<Value>, body: &Stmt, f: &Frame) -> Fallible<()> {
        let _concurrent = Concurrent::enter(&self.concurrent);
        let mut items = items.into_iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < self.limits.max_fanout.max(1) {
                let Some(item) = items.next() else { break };
                let mut frame = f.clone();
                frame[var as usize] = Some(item);
                running.push(async move { self.exec_any(body, &mut frame).await.map(drop) });
            }
            match running.next().await {
                Some(done) => done?,
                None => return Ok(()),
            }
        }
    }

    fn eval_async<'s>(&'s self, e: &'s Expr, f: &'s mut Frame) -> BoxFuture<'s, Fallible<Value>> {
        Box::pin(async move {
            match &e.kind {
                ExprKind::Assign(slot, value) => {
                    let v = self.eval_any(value, f).await?;
                    f[*slot as usize] = Some(v.clone());
                    Ok(v)
                }
                ExprKind::Unary { op, expr } => {
                    let v = self.eval_any(expr, f).await?;
                    ops::unary(*op, &v).map_err(|m| error(e.span, m))
                }
                ExprKind::Binary { op: op @ (BinaryOp::And | BinaryOp::Or), lhs, rhs, .. } => {
                    let a = self.truth_any(lhs, f, &format!("the left operand of `{}`", op.symbol())).await?;
                    if a == (*op == BinaryOp::Or) {
                        return Ok(Value::Bool(a));
                    }
                    Ok(Value::Bool(self.truth_any(rhs, f, &format!("the right operand of `{}`", op.symbol())).await?))
                }
                ExprKind::Binary { op, op_span, lhs, rhs } => {
                    let a = self.eval_any(lhs, f).await?;
                    let b = self.eval_any(rhs, f).await?;
                    ops::binary(*op, &a, &b).map_err(|m| error(*op_span, m))
                }
                ExprKind::Builtin { function, args } => {
                    let args = self.eval_all(args, f).await?;
                    function.call(&args).map_err(|m| error(e.span, m))
                }
                ExprKind::Field { expr, name } => {
                    let v = self.eval_any(expr, f).await?;
                    ops::field(&v, name).map_err(|m| error(e.span, m))
                }
                ExprKind::Index { expr, index } => {
                    let v = self.eval_any(expr, f).await?;
                    let i = self.eval_any(index, f).await?;
                    ops::index(&v, &i).map_err(|m| error(index.span, m))
                }
                ExprKind::Array(items) => Ok(Value::array(self.eval_all(items, f).await?)),
                ExprKind::Foreign { function, args, mode } => {
                    let args = self.eval_all(args, f).await?;
                    self.call_foreign(*function, args, *mode, e.span).await
                }
                ExprKind::Shell { cmd, args, stdin } => {
                    let mut words = vec![self.string(cmd, f, "the program of `shell`").await?];
                    for (i, arg) in args.iter().enumerate() {
                        words.push(self.string(arg, f, &format!("argument {} of `shell`", i + 1)).await?);
                    }
                    let input = match stdin {
                        Some(s) => Some(self.string(s, f, "the stdin of `shell`").await?),
                        None => None,
                    };
                    let _permit = self.tasks.acquire().await.expect("the task semaphore is never closed");
                    shell::run(&words, input.as_deref()).await.map_err(|m| error(e.span, m))
                }
                ExprKind::ShellPipe(units) => {
                    let _permit = self.tasks.acquire().await.expect("the task semaphore is never closed");
                    shell::pipe(units).await.map_err(|m| error(e.span, m))
                }
                ExprKind::Const(_) | ExprKind::Var(_) => self.eval(e, f),
            }
        })
    }

    async fn string(&self, e: &Expr, f: &mut Frame, what: &str) -> Fallible<String> {
        match self.eval_any(e, f).await? {
            Value::Str(s) => Ok(s.to_string()),
            other => Err(Box::new(
                Diagnostic::new(Stage::Runtime, e.span, format!("{what} must be a String, found {}", other.type_name()))
                    .with_hint("convert it with `str(...)`"),
            )),
        }
    }

    async fn call_foreign(&self, function: usize, args: Vec<Value>, mode: CallMode, span: Span) -> Fallible<Value> {
        let foreign = &self.program.foreign[function];
        let here = if self.limits.inline_calls && self.concurrent.load(Ordering::Relaxed) == 0 {
            self.host.call_here(&foreign.name, &args, mode)
        } else {
            None
        };
        let result = match here {
            Some(result) => result,
            None => {
                let _permit = self.tasks.acquire().await.expect("the task semaphore is never closed");
                self.host.call(&foreign.name, args, mode).await
            }
        };
        let err = match result {
            Ok(v) => return Ok(v),
            Err(err) => err,
        };
        let name = &foreign.binding;
        let message = match err.kind {
            ForeignErrorKind::Raised => format!("`{name}` raised an error: {}", err.message),
            ForeignErrorKind::WorkerCrashed => format!("the worker running `{name}` crashed: {}", err.message),
            ForeignErrorKind::NotFound => format!("`{name}` is not provided: {}", err.message),
            ForeignErrorKind::BadArguments => format!("bad arguments for `{name}`: {}", err.message),
            ForeignErrorKind::Internal => format!("internal error calling `{name}`: {}", err.message),
        };
        let mut d = Diagnostic::new(Stage::Runtime, span, message).with_label(format!(
            "this call to `{}` failed ({})",
            foreign.name.dotted(),
            err.kind.describe()
        ));
        if let Some(tb) = err.traceback {
            d = d.with_note(format!("foreign traceback:\n{}", tb.trim_end()));
        }
        d.cause = err.cause;
        Err(Box::new(d))
    }
}

/// Counts a running `para` or `para for` for as long as it lives, including
/// when it is cancelled by being dropped.
struct Concurrent<'a>(&'a AtomicUsize);

impl<'a> Concurrent<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Concurrent(counter)
    }
}

impl Drop for Concurrent<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
