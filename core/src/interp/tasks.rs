//! The tasks (shell, foreign call) and `para` blocks, and the dispatch of the
//! async walk (`walk.rs`): a node that holds a task is awaited as one boxed
//! future; everything task-free inside it runs on the synchronous path.
//!
//! `para` branches are futures polled together on the workflow's task, each
//! with its own copy of the frame (branches cannot rebind outer variables, so
//! copies never disagree). Dropping the set of branches cancels them: their
//! shell processes are killed and foreign results dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::sync::SemaphorePermit;

use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, FuturesUnordered, SelectAll, StreamExt};

use super::observe::{self, Outcome, Step, Supplied, Task, TaskWhat};
use super::{error, Fallible, Flow, Frame, Interpreter};
use crate::diagnostic::{Diagnostic, Span, Stage};
use crate::foreign::{CallMode, ForeignErrorKind, Keywords};
use crate::ir::{Branch, Expr, ExprKind, Function, Slot, Stmt, StmtKind};
use crate::shell;
use crate::value::Value;

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

    pub(super) async fn exec_any(&self, s: &Stmt, f: &mut Frame) -> Fallible<Flow> {
        if s.sync {
            let flow = self.exec(s, f)?;
            if f.obs.is_some() {
                flow_through(s, f, flow);
            }
            Ok(flow)
        } else if let (StmtKind::Block(body), None) = (&s.kind, &f.obs) {
            // A loop's body, here rather than in a box of the async walk
            // (as its `Block` arm does: each statement through `exec_any`).
            for s in body {
                let flow = if s.sync { self.exec(s, f)? } else { self.exec_one(s, f).await? };
                if flow != Flow::Next {
                    return Ok(flow);
                }
            }
            Ok(Flow::Next)
        } else {
            self.exec_one(s, f).await
        }
    }

    /// A statement that holds a task. `x = f(...)` and `f(...);`, the
    /// statements a `para for` body is mostly made of, await the call's own
    /// future; the others go through the async walk.
    async fn exec_one(&self, s: &Stmt, f: &mut Frame) -> Fallible<Flow> {
        match &s.kind {
            StmtKind::Expr(Expr { kind: ExprKind::Assign(slot, value), .. }) if direct(value, f) => {
                // The one place a lazy result stays unmade: a variable
                // holds it, and reading the variable makes it.
                let v = self.direct_call(value, f, Use::Assigned).await?;
                f[*slot as usize] = Some(v);
                Ok(Flow::Next)
            }
            StmtKind::Expr(e) if direct(e, f) => {
                self.direct_call(e, f, Use::Dropped).await?;
                Ok(Flow::Next)
            }
            _ => self.exec_async(s, f).await,
        }
    }

    /// A foreign call that [`direct`] accepted: its arguments on the plain
    /// walk, then the call, in one box of its own. The async walk's box is
    /// sized for its largest node (2,032 bytes, measured), the call's is
    /// 336 (928 through `call_foreign`, sized for its observed path, which
    /// an unobserved frame never takes), and a `para for` holds one per
    /// iteration in flight.
    /// `used`: what becomes of the result ([`Use`]).
    fn direct_call<'s>(&'s self, e: &'s Expr, f: &'s mut Frame, used: Use) -> BoxFuture<'s, Fallible<Value>> {
        let ExprKind::Foreign { function, args, keywords, mode } = &e.kind else { unreachable!("`direct` checked") };
        Box::pin(async move {
            let (values, named) = self.call_args(args, keywords, f)?;
            let call = self.call_unobserved(*function, values, named, *mode, e.span, None);
            let v = crate::foreign::unkept_call(used != Use::Assigned, call).await?;
            Ok(if used == Use::Read { v.forced() } else { v })
        })
    }

    /// The arguments of a foreign call that holds no task, evaluated in order.
    fn call_args(&self, args: &[Expr], keywords: &[(Arc<str>, Expr)], f: &mut Frame) -> Fallible<(Vec<Value>, Keywords)> {
        let mut values = Vec::with_capacity(args.len());
        for arg in args {
            values.push(self.eval(arg, f)?);
        }
        let mut named = Vec::with_capacity(keywords.len());
        for (name, value) in keywords {
            named.push((name.clone(), self.eval(value, f)?));
        }
        Ok((values, named))
    }

    pub(super) async fn eval_any(&self, e: &Expr, f: &mut Frame) -> Fallible<Value> {
        if e.task {
            if direct(e, f) {
                self.direct_call(e, f, Use::Read).await
            } else {
                self.eval_async(e, f).await
            }
        } else {
            self.eval(e, f)
        }
    }

    pub(super) async fn test_any(&self, e: &Expr, f: &mut Frame, what: &str) -> Fallible<bool> {
        if e.task {
            Self::truth(self.eval_async(e, f).await?, e.span, what)
        } else {
            self.test(e, f, what)
        }
    }

    /// The body of a call whose arguments are bound, on the synchronous
    /// path: defaults for the parameters not given, then the statements.
    /// Every `GROW_EVERY` levels, `maybe_grow` moves to a fresh stack
    /// segment (on the heap) when less than `RED_ZONE` is left, so nesting
    /// is bounded by `MAX_CALL_DEPTH` alone, never by the thread's stack.
    #[inline(always)]
    pub(super) fn run_call(&self, func: &Function, frame: &mut Frame) -> Fallible<Value> {
        if frame.depth % GROW_EVERY == 0 {
            stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || self.call_body(func, frame))
        } else {
            self.call_body(func, frame)
        }
    }

    #[inline(always)]
    fn call_body(&self, func: &Function, frame: &mut Frame) -> Fallible<Value> {
        for (i, p) in func.params.iter().enumerate() {
            if let (None, Some(default)) = (&frame[i], &p.default) {
                let v = self.eval(default, frame)?;
                frame[i] = Some(v);
            }
        }
        for s in &func.body {
            // A `return` directly in the body (most functions end with one)
            // gives its value without a trip through `exec` and the frame.
            if let StmtKind::Return(Some(e)) = &s.kind {
                return self.eval(e, frame);
            }
            // Only `return` leaves a body early: loops keep `break` and `continue`.
            if self.exec(s, frame)? != Flow::Next {
                break;
            }
        }
        Ok(frame.ret.take().unwrap_or_default())
    }

    /// `run_call` on the async path. The future is polled through `Grow`,
    /// which gives the nested polls (one per call level) the same room.
    pub(super) fn run_call_async<'s>(&'s self, func: &'s Function, mut frame: Frame) -> Grow<BoxFuture<'s, Fallible<Value>>> {
        Grow(
            frame.depth % GROW_EVERY == 0,
            Box::pin(async move {
                for (i, p) in func.params.iter().enumerate() {
                    if let (None, Some(default)) = (&frame[i], &p.default) {
                        let v = self.eval_any(default, &mut frame).await?;
                        frame[i] = Some(v);
                    }
                }
                for s in &func.body {
                    if let StmtKind::Return(Some(e)) = &s.kind {
                        let mark = frame.obs.as_ref().map_or(0, |o| o.acc.len());
                        let value = self.eval_any(e, &mut frame).await;
                        if let Some(o) = frame.obs.as_deref_mut() {
                            let sources = o.derive(mark, &[e]);
                            if let Some(ret) = &o.ret {
                                observe::extend(&mut ret.lock().unwrap_or_else(|e| e.into_inner()), &sources);
                            }
                        }
                        return value;
                    }
                    if self.exec_any(s, &mut frame).await? != Flow::Next {
                        break;
                    }
                }
                Ok(frame.ret.take().unwrap_or_default())
            }),
        )
    }

    /// Runs every branch at once; the first failure cancels the rest.
    pub(super) async fn para(&self, branches: &[Branch], f: &mut Frame) -> Fallible<()> {
        let _concurrent = Concurrent::enter(&self.concurrent);
        let mut running: FuturesUnordered<_> = branches
            .iter()
            .enumerate()
            .map(|(i, branch)| {
                let mut frame = f.clone();
                if let Some(o) = frame.obs.as_deref_mut() {
                    o.path.push(Step::Branch(i as u32));
                }
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
                if let (Some(to), Some(from)) = (f.obs.as_deref_mut(), frame.obs.as_deref()) {
                    to.set(slot, from.of(&[slot]));
                }
            }
        }
        Ok(())
    }

    /// Runs iterations concurrently, at most `max_fanout` at a time, each
    /// with its own frame; nothing flows back out of an iteration. With
    /// `Limits::ramp_fanout`, fewer at first (see there).
    pub(super) async fn para_for(&self, var: Slot, items: Vec<Value>, body: &Stmt, f: &Frame) -> Fallible<()> {
        if let Some(call) = single_call(body, f) {
            return self.para_map(var, items, call, f).await;
        }
        let _concurrent = Concurrent::enter(&self.concurrent);
        let mut ramp = Ramp::new(&self.limits, FANOUT_START);
        let mut items = items.into_iter().enumerate();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < ramp.window {
                let Some((n, item)) = items.next() else { break };
                let mut frame = f.clone();
                if let Some(o) = frame.obs.as_deref_mut() {
                    o.path.push(Step::Iteration(n as u32));
                }
                frame[var as usize] = Some(item);
                running.push(async move { self.exec_any(body, &mut frame).await.map(drop) });
            }
            match ramp.next(&mut running, items.len() > 0).await {
                Some(Some(done)) => done?,
                Some(None) => return Ok(()),
                None => {}
            }
        }
    }

    /// A `para for` whose body is one foreign call and nothing else
    /// ([`single_call`]): nothing of an iteration outlives its call, so the
    /// iterations need no frames or futures of their own. Each call's
    /// arguments are evaluated on one copy of the frame, and the calls go
    /// to the host in batches ([`Host::call_each`](crate::foreign::Host::call_each)),
    /// as many at a time as the window (as in `para_for`) and the task
    /// limit allow; each holds a task permit until it finishes. A host that
    /// does not take batches gets each call on its own.
    async fn para_map(&self, var: Slot, items: Vec<Value>, call: &Expr, f: &Frame) -> Fallible<()> {
        let ExprKind::Foreign { function, args, keywords, mode } = &call.kind else { unreachable!("`single_call` checked") };
        let (function, mode, span) = (*function, *mode, call.span);
        let name = &self.program.foreign[function].name;
        let _concurrent = Concurrent::enter(&self.concurrent);
        let mut ramp = Ramp::new(&self.limits, MAP_START);
        let mut frame = f.clone();
        let mut items = items.into_iter();
        let mut running: SelectAll<BoxStream<'_, Fallible<usize>>> = SelectAll::new();
        // The permits of the calls started and not finished, one each:
        // split off as calls finish, all given back when the loop ends.
        let mut held: Option<SemaphorePermit<'_>> = None;
        loop {
            let in_flight = held.as_ref().map_or(0, SemaphorePermit::num_permits);
            let room = ramp.window.saturating_sub(in_flight).min(items.len());
            if room > 0 {
                let free = self.tasks.available_permits();
                let taken = if free == 0 && in_flight == 0 {
                    // Other tasks of the workflow hold every permit: wait for one.
                    Some(self.tasks.acquire().await.expect("the task semaphore is never closed"))
                } else {
                    self.tasks.try_acquire_many(room.min(free) as u32).ok()
                };
                let k = taken.as_ref().map_or(0, SemaphorePermit::num_permits);
                match (held.as_mut(), taken) {
                    (Some(held), Some(taken)) => held.merge(taken),
                    (None, taken) => held = taken,
                    (Some(_), None) => {}
                }
                if k > 0 {
                    let mut calls = Vec::with_capacity(k);
                    for item in items.by_ref().take(k) {
                        frame[var as usize] = Some(item);
                        calls.push(self.call_args(args, keywords, &mut frame)?);
                    }
                    // Each iteration's result is dropped: not kept.
                    match crate::foreign::unkept(true, || self.host.call_each(name, calls, mode)) {
                        Ok(each) => running.push(Box::pin(each.map(move |r| r.map_err(|e| self.failure(function, span, e))))),
                        Err(calls) => {
                            for (values, named) in calls {
                                let call = crate::foreign::unkept(true, || self.host.call(name, values, named, mode));
                                running.push(Box::pin(futures_util::stream::once(async move {
                                    call.await.map(|_| 1).map_err(|e| self.failure(function, span, e))
                                })));
                            }
                        }
                    }
                    continue;
                }
            }
            let Some(done) = ramp.next(&mut running, items.len() > 0).await else { continue };
            match done {
                Some(Ok(n)) => drop(held.as_mut().and_then(|p| p.split(n.min(p.num_permits())))),
                Some(Err(d)) => return Err(d),
                // Every batch has ended: whatever it did not count is over too.
                None if items.len() == 0 => return Ok(()),
                None => held = None,
            }
        }
    }

    /// `shell {cmd, [args], stdin}`: the words and input, then the process.
    pub(super) async fn shell(&self, cmd: &Expr, args: &[Expr], stdin: Option<&Expr>, span: Span, f: &mut Frame) -> Fallible<Value> {
        let mark = f.obs.as_ref().map_or(0, |o| o.acc.len());
        let mut words = vec![self.string(cmd, f, "the program of `shell`").await?];
        for (i, arg) in args.iter().enumerate() {
            words.push(self.string(arg, f, &format!("argument {} of `shell`", i + 1)).await?);
        }
        let input = match stdin {
            Some(s) => Some(self.string(s, f, "the stdin of `shell`").await?),
            None => None,
        };
        if let (Some(observer), Some(o)) = (self.observer, f.obs.as_deref_mut()) {
            let exprs: Vec<&Expr> = std::iter::once(cmd).chain(args).chain(stdin).collect();
            let inputs = o.derive(mark, &exprs);
            let what = TaskWhat::Shell { argv: words, stdin: input };
            let task = Task { key: observe::key(span, &o.path), span, what, context: self.context, inputs, ran_by: Default::default() };
            let result = self
                .observed(observer, &task, || async {
                    let TaskWhat::Shell { argv, stdin } = &task.what else { unreachable!("made just above") };
                    let _permit = self.tasks.acquire().await.expect("the task semaphore is never closed");
                    (
                        SystemTime::now(),
                        shell::run(argv, stdin.as_deref(), self.context, Some(&task.ran_by)).await.map_err(|m| error(span, m)),
                    )
                })
                .await;
            o.acc.push(task.key.into());
            return result;
        }
        let _permit = self.tasks.acquire().await.expect("the task semaphore is never closed");
        shell::run(&words, input.as_deref(), self.context, None).await.map_err(|m| error(span, m))
    }

    pub(super) async fn shell_pipe(&self, units: &[Vec<String>], span: Span, f: &mut Frame) -> Fallible<Value> {
        if let (Some(observer), Some(o)) = (self.observer, f.obs.as_deref_mut()) {
            let key = observe::key(span, &o.path);
            let task =
                Task { key, span, what: TaskWhat::Pipe { units }, context: self.context, inputs: Vec::new(), ran_by: Default::default() };
            let result = self
                .observed(observer, &task, || async {
                    let _permit = self.tasks.acquire().await.expect("the task semaphore is never closed");
                    (SystemTime::now(), shell::pipe(units, self.context, Some(&task.ran_by)).await.map_err(|m| error(span, m)))
                })
                .await;
            o.acc.push(task.key.into());
            return result;
        }
        let _permit = self.tasks.acquire().await.expect("the task semaphore is never closed");
        shell::pipe(units, self.context, None).await.map_err(|m| error(span, m))
    }

    /// A task with an observer: asked first, then run (`run` gives when it
    /// started, after waiting for its slot, and its result), then told.
    async fn observed<R, F>(&self, observer: &dyn observe::TaskObserver, task: &Task<'_>, run: R) -> Fallible<Value>
    where
        R: FnOnce() -> F,
        F: Future<Output = (SystemTime, Fallible<Value>)>,
    {
        if let Some(supplied) = observer.before(task).await {
            let now = SystemTime::now();
            observer.after(task, now, now, Outcome::Supplied(&supplied));
            return Ok(match supplied {
                Supplied::Replayed(v) | Supplied::Cached(v) => v,
            });
        }
        let (started, result) = run().await;
        let ended = SystemTime::now();
        match &result {
            Ok(v) => observer.after(task, started, ended, Outcome::Succeeded(v)),
            Err(d) => observer.after(task, started, ended, Outcome::Failed(d)),
        }
        result
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

    pub(super) async fn call_foreign(
        &self,
        function: usize,
        args: Vec<Value>,
        keywords: Keywords,
        mode: CallMode,
        span: Span,
        f: &mut Frame,
    ) -> Fallible<Value> {
        if let (Some(observer), Some(o)) = (self.observer, f.obs.as_deref_mut()) {
            let foreign = &self.program.foreign[function];
            let what = TaskWhat::Call { function: &foreign.name, args: args.clone(), keywords: keywords.clone(), mode };
            let inputs = std::mem::take(&mut o.inputs);
            let task = Task { key: observe::key(span, &o.path), span, what, context: self.context, inputs, ran_by: Default::default() };
            let result = self
                .observed(observer, &task, || async {
                    let mut started = SystemTime::now();
                    // Made before the observer sees it: a record holds values.
                    let call = self.call_unobserved(function, args, keywords, mode, span, Some((&mut started, &task.ran_by)));
                    let result = crate::foreign::unkept_call(true, call).await;
                    (started, result.map(Value::forced))
                })
                .await;
            o.acc.push(task.key.into());
            return result.map(Value::forced);
        }
        crate::foreign::unkept_call(true, self.call_unobserved(function, args, keywords, mode, span, None)).await.map(Value::forced)
    }

    /// The foreign call itself; `recorded`, when given, is the time set
    /// when it has its slot and where the host says who ran it.
    async fn call_unobserved(
        &self,
        function: usize,
        args: Vec<Value>,
        keywords: Keywords,
        mode: CallMode,
        span: Span,
        recorded: Option<(&mut SystemTime, &crate::foreign::RanBy)>,
    ) -> Fallible<Value> {
        let foreign = &self.program.foreign[function];
        let here = if self.limits.inline_calls && self.concurrent.load(Ordering::Relaxed) == 0 {
            match &recorded {
                Some((_, ran_by)) => self.host.call_here_reporting(&foreign.name, &args, &keywords, mode, ran_by),
                None => self.host.call_here(&foreign.name, &args, &keywords, mode),
            }
        } else {
            None
        };
        let result = match here {
            Some(result) => result,
            None => {
                let _permit = self.tasks.acquire().await.expect("the task semaphore is never closed");
                match recorded {
                    Some((started, ran_by)) => {
                        *started = SystemTime::now();
                        self.host.call_reporting(&foreign.name, args, keywords, mode, ran_by.clone()).await
                    }
                    None => self.host.call(&foreign.name, args, keywords, mode).await,
                }
            }
        };
        result.map_err(|err| self.failure(function, span, err))
    }

    /// A foreign call's failure as the workflow reports it.
    fn failure(&self, function: usize, span: Span, err: crate::foreign::ForeignError) -> Box<Diagnostic> {
        let foreign = &self.program.foreign[function];
        let name = &foreign.binding;
        let message = match err.kind {
            ForeignErrorKind::Raised => format!("`{name}` raised an error: {}", err.message),
            ForeignErrorKind::WorkerCrashed => format!("the worker running `{name}` crashed: {}", err.message),
            ForeignErrorKind::NotFound => format!("`{name}` is not provided: {}", err.message),
            // A result that cannot cross: the host's message names the call
            // and what failed ("cannot return set from `f`: ...") and stands alone.
            ForeignErrorKind::BadResult => err.message.clone(),
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
        Box::new(d)
    }
}

/// A foreign call whose arguments hold no task, in a frame that is not
/// observed (no provenance to track): `Interpreter::direct_call` runs it.
fn direct(e: &Expr, f: &Frame) -> bool {
    match &e.kind {
        ExprKind::Foreign { args, keywords, .. } => f.obs.is_none() && !args.iter().chain(keywords.iter().map(|(_, v)| v)).any(|a| a.task),
        _ => false,
    }
}

/// What a statement does with the result of a call [`direct`] accepted. A
/// lazy result ([`Handle::lazy`](crate::value::Handle::lazy)) stays unmade
/// unless it is `Read`; only an `Assigned` one is kept unread
/// ([`result_kept`](crate::foreign::result_kept)).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// `x = f(...);`
    Assigned,
    /// `f(...);`
    Dropped,
    /// The call is part of an expression.
    Read,
}

/// The body of a `para for` when it is one foreign call whose arguments
/// run no task and assign nothing, alone or assigned to a variable (which
/// the iteration then drops): `para_map` runs such a loop.
fn single_call<'b>(body: &'b Stmt, f: &Frame) -> Option<&'b Expr> {
    let s = match &body.kind {
        StmtKind::Block(b) if b.len() == 1 => &b[0],
        _ => body,
    };
    let e = match &s.kind {
        StmtKind::Expr(Expr { kind: ExprKind::Assign(_, value), .. }) => value,
        StmtKind::Expr(e) => e,
        _ => return None,
    };
    if !direct(e, f) {
        return None;
    }
    let ExprKind::Foreign { args, keywords, .. } = &e.kind else { return None };
    let (mut reads, mut writes) = (Vec::new(), Vec::new());
    for a in args.iter().chain(keywords.iter().map(|(_, v)| v)) {
        observe::reads(a, &mut reads, &mut writes, true);
    }
    writes.is_empty().then_some(e)
}

/// How many iterations (or calls) of a `para for` may be in flight: all of
/// `max_fanout`, or with `Limits::ramp_fanout`, `start` at first, doubled
/// each [`RAMP_TICK`] in which none finished while more wait to start.
struct Ramp {
    window: usize,
    max: usize,
    /// The ramp's clock (made only when it ramps: a runtime may have no timer).
    tick: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether one finished since the clock last struck.
    finished: bool,
}

impl Ramp {
    fn new(limits: &super::Limits, start: usize) -> Ramp {
        let max = limits.max_fanout.max(1);
        Ramp { window: if limits.ramp_fanout { start.min(max) } else { max }, max, tick: None, finished: false }
    }

    /// The next of `running`'s items (`Some(None)`: it has ended), or `None`
    /// when the clock struck instead (the window may have grown). `more`:
    /// whether iterations wait to start.
    async fn next<S: futures_util::Stream + Unpin>(&mut self, running: &mut S, more: bool) -> Option<Option<S::Item>> {
        if self.window == self.max || !more {
            return Some(running.next().await);
        }
        let tick = self.tick.get_or_insert_with(|| Box::pin(tokio::time::sleep(RAMP_TICK)));
        tokio::select! {
            biased;
            done = running.next() => {
                self.finished = true;
                Some(done)
            }
            () = tick.as_mut() => {
                if !self.finished {
                    self.window = (self.window * 2).min(self.max);
                }
                self.finished = false;
                tick.as_mut().reset(tokio::time::Instant::now() + RAMP_TICK);
                None
            }
        }
    }
}

/// Iterations a ramping `para for` starts with (`Limits::ramp_fanout`):
/// 2,000 trivial Python calls took 1.9, 1.8, 1.9 and 2.9 ms with 16, 64,
/// 256 and 1,024 in flight.
const FANOUT_START: usize = 64;
/// ...and a `para for` of one call (`para_map`), whose calls in flight are
/// queue entries, not frames and futures.
const MAP_START: usize = 256;
/// How long a ramping `para for` waits for one of its iterations to finish
/// before it starts as many again.
const RAMP_TICK: std::time::Duration = std::time::Duration::from_millis(1);

/// Below this much native stack, a call continues on a new segment.
const RED_ZONE: usize = 1024 * 1024;
/// Calls between two looks at the stack: 8 levels take at most about
/// 250 KiB (31 KiB per level on the async path of a debug build, the most
/// measured), well inside the red zone.
const GROW_EVERY: u32 = 8;
/// The size of such a segment.
const STACK_SEGMENT: usize = 8 * 1024 * 1024;

/// A call's future, polled with room on the stack (see `run_call`).
pub(super) struct Grow<F>(bool, F);

impl<F: Future + Unpin> Future for Grow<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Grow(check, inner) = &mut *self;
        if *check {
            stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || Pin::new(inner).poll(cx))
        } else {
            Pin::new(inner).poll(cx)
        }
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

/// After a statement without tasks ran in an observed frame: every slot it
/// assigns now derives from every slot it read (see `observe::stmt_flow`),
/// and a `return` hands those sources to the caller.
fn flow_through(s: &Stmt, f: &mut Frame, flow: Flow) {
    let Some(o) = f.obs.as_deref_mut() else { return };
    let (mut reads, mut writes) = (Vec::new(), Vec::new());
    observe::stmt_flow(s, &mut reads, &mut writes);
    if writes.is_empty() && flow != Flow::Return {
        return;
    }
    let sources = o.of(&reads);
    for slot in writes {
        o.set(slot, sources.clone());
    }
    if flow == Flow::Return {
        if let Some(ret) = &o.ret {
            observe::extend(&mut ret.lock().unwrap_or_else(|e| e.into_inner()), &sources);
        }
    }
}
