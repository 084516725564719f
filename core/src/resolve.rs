//! The resolver: checks a parsed program before anything runs and lowers it
//! to `ir`. It enforces the scoping and `para` rules of the spec, binds every
//! variable to a slot (the interpreter never hashes a name) and asks the host
//! for every required name. All problems are collected, not just the first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::builtins::Builtin;
use crate::diagnostic::{Diagnostic, Span, Stage};
use crate::foreign::{CallMode, ForeignName, Host};
use crate::ir::{self, Slot};
use crate::syntax::ast::{self, BlockKind, ExprKind, StmtKind};
use crate::value::Value;

/// Deeper nesting than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 200;

/// `after_syntax_errors`: the tree has holes where the parser recovered, so
/// names those holes might have defined or required are not reported.
///
/// `inputs` are the program's inputs: variables assigned before the first
/// statement, slots `0..inputs.len()` in that order.
pub fn resolve(
    program: &ast::Program,
    source: &str,
    host: &dyn Host,
    inputs: &[&str],
    after_syntax_errors: bool,
) -> Result<ir::Program, Vec<Diagnostic>> {
    let mut r = Resolver {
        fns: HashMap::new(),
        sigs: Vec::new(),
        top_vars: HashSet::new(),
        ret_ctx: RetCtx::Top,
        lenient: after_syntax_errors,
        host,
        source,
        errors: Vec::new(),
        slot_names: Vec::new(),
        slots: HashMap::new(),
        foreign: Vec::new(),
        required: HashMap::new(),
        keywords_ok: HashMap::new(),
        keyword_names: HashSet::new(),
        scope: Scope::default(),
        loop_ctx: LoopCtx::None,
        depth: 0,
        too_deep: false,
        inputs: HashSet::new(),
    };
    let defs: Vec<&ast::FnDef> = program
        .stmts
        .iter()
        .filter_map(|s| match &s.kind {
            StmtKind::Fn(def) => Some(&**def),
            _ => None,
        })
        .collect();
    let registered: Vec<&ast::FnDef> = defs.into_iter().filter(|def| r.declare(def)).collect();
    let input_names = r.inputs(inputs);
    let mut body = r.stmts(&program.stmts);
    let mut outputs: Vec<Slot> = r.scope.defined.iter().map(|n| r.slots[n]).collect();
    outputs.sort_unstable();
    let slot_names = std::mem::take(&mut r.slot_names);
    r.top_vars = std::mem::take(&mut r.slots).into_keys().collect();
    let mut functions: Vec<ir::Function> = registered.iter().map(|def| r.function(def)).collect();
    if !r.errors.is_empty() {
        return Err(r.errors);
    }
    set_flags(&mut body, &mut functions);
    Ok(ir::Program { body, slot_names, foreign: r.foreign, outputs, functions, inputs: input_names })
}

/// Where a `return` is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RetCtx {
    Top,
    Fn,
    /// In a `para` branch or `para for` body (of a function).
    Para,
}

/// A function's name and parameters, known before any body is resolved.
struct Sig {
    name: String,
    span: Span,
    /// Name and whether it has a default.
    params: Vec<(String, bool)>,
}

/// Which functions run synchronously and which nodes must be awaited,
/// computed once after everything is resolved: a call is a task when its
/// callee is, and a callee is when anything it runs or calls is. Starting
/// from "every function is sync", a pass marks what calls an async one,
/// until nothing changes (recursion converges: it adds no task).
fn set_flags(body: &mut [ir::Stmt], functions: &mut [ir::Function]) {
    let mut sync = vec![true; functions.len()];
    loop {
        let mut changed = false;
        for (i, f) in functions.iter_mut().enumerate() {
            let mut now = true;
            for p in &mut f.params {
                if let Some(d) = &mut p.default {
                    now &= !flag_expr(d, &sync);
                }
            }
            for st in &mut f.body {
                now &= flag_stmt(st, &sync);
            }
            if now != sync[i] {
                sync[i] = now;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (f, s) in functions.iter_mut().zip(sync.iter()) {
        f.sync = *s;
    }
    for st in body {
        flag_stmt(st, &sync);
    }
}

/// Sets `sync` on `s` and everything in it; returns it.
fn flag_stmt(s: &mut ir::Stmt, fn_sync: &[bool]) -> bool {
    use ir::StmtKind as K;
    let sync = match &mut s.kind {
        K::Expr(e) | K::Print(e) | K::AddTo { value: e, .. } => !flag_expr(e, fn_sync),
        K::Return(e) => !e.as_mut().is_some_and(|e| flag_expr(e, fn_sync)),
        K::Block(b) => {
            // Every statement gets its flag, so no short-circuit.
            let mut all = true;
            for s in b {
                all &= flag_stmt(s, fn_sync);
            }
            all
        }
        K::Para(branches) => {
            for b in branches {
                flag_stmt(&mut b.stmt, fn_sync);
            }
            false
        }
        K::ParaFor { iter, body, .. } => {
            flag_expr(iter, fn_sync);
            flag_stmt(body, fn_sync);
            false
        }
        K::If { cond, then, els } => {
            let c = !flag_expr(cond, fn_sync);
            let t = flag_stmt(then, fn_sync);
            let e = els.as_mut().is_none_or(|e| flag_stmt(e, fn_sync));
            c && t && e
        }
        K::While { cond, body } => !flag_expr(cond, fn_sync) & flag_stmt(body, fn_sync),
        K::For { iter, body, .. } => !flag_expr(iter, fn_sync) & flag_stmt(body, fn_sync),
        K::Break | K::Continue | K::Nop => true,
    };
    s.sync = sync;
    sync
}

/// Sets `task` on `e` and everything in it; returns it.
fn flag_expr(e: &mut ir::Expr, fn_sync: &[bool]) -> bool {
    use ir::ExprKind as K;
    let any = |items: &mut Vec<ir::Expr>| items.iter_mut().fold(false, |any, a| flag_expr(a, fn_sync) | any);
    let task = match &mut e.kind {
        K::Shell { cmd, args, stdin } => {
            flag_expr(cmd, fn_sync);
            any(args);
            if let Some(s) = stdin {
                flag_expr(s, fn_sync);
            }
            true
        }
        K::ShellPipe(_) => true,
        K::Foreign { args, keywords, .. } => {
            any(args);
            for (_, k) in keywords {
                flag_expr(k, fn_sync);
            }
            true
        }
        K::Const(_) | K::Var(_) => false,
        K::Assign(_, e) | K::Unary { expr: e, .. } | K::Field { expr: e, .. } => flag_expr(e, fn_sync),
        K::Binary { lhs, rhs, .. } => flag_expr(lhs, fn_sync) | flag_expr(rhs, fn_sync),
        K::Index { expr, index } => flag_expr(expr, fn_sync) | flag_expr(index, fn_sync),
        K::Builtin { args, .. } | K::Array(args) => any(args),
        K::Map(entries) => entries.iter_mut().fold(false, |any, (k, v)| flag_expr(k, fn_sync) | flag_expr(v, fn_sync) | any),
        K::Call { function, args, .. } => {
            let args = args.iter_mut().fold(false, |any, (_, a)| flag_expr(a, fn_sync) | any);
            args | !fn_sync[*function as usize]
        }
    };
    e.task = task;
    task
}

/// Whether evaluating `e` can assign `slot` (of the same frame).
fn writes(e: &ir::Expr, slot: Slot) -> bool {
    use ir::ExprKind as K;
    match &e.kind {
        K::Assign(s, v) => *s == slot || writes(v, slot),
        K::Const(_) | K::Var(_) | K::ShellPipe(_) => false,
        K::Unary { expr, .. } | K::Field { expr, .. } => writes(expr, slot),
        K::Binary { lhs, rhs, .. } => writes(lhs, slot) || writes(rhs, slot),
        K::Index { expr, index } => writes(expr, slot) || writes(index, slot),
        K::Builtin { args, .. } | K::Array(args) => args.iter().any(|a| writes(a, slot)),
        K::Foreign { args, keywords, .. } => args.iter().any(|a| writes(a, slot)) || keywords.iter().any(|(_, k)| writes(k, slot)),
        K::Call { args, .. } => args.iter().any(|(_, a)| writes(a, slot)),
        K::Map(entries) => entries.iter().any(|(k, v)| writes(k, slot) || writes(v, slot)),
        K::Shell { cmd, args, stdin } => {
            writes(cmd, slot) || args.iter().any(|a| writes(a, slot)) || stdin.as_ref().is_some_and(|s| writes(s, slot))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LoopCtx {
    None,
    Loop,
    ParaFor,
}

/// What the statements at one point of the program may read and write.
#[derive(Clone, Default)]
struct Scope {
    /// Assigned by an earlier statement (in program order).
    defined: HashSet<String>,
    /// Variables of an enclosing scope that this `para` branch may not rebind.
    frozen: HashSet<String>,
    /// Names that exist but cannot be read here, with the reason.
    gone: HashMap<String, String>,
}

struct Resolver<'a> {
    /// Workflow functions by name: index into `sigs` and `Program::functions`.
    fns: HashMap<String, usize>,
    sigs: Vec<Sig>,
    /// The top level's variables, which a function cannot read (for the hint).
    top_vars: HashSet<String>,
    ret_ctx: RetCtx,
    /// Stay quiet about unknown names (see `resolve`).
    lenient: bool,
    host: &'a dyn Host,
    source: &'a str,
    errors: Vec<Diagnostic>,
    slot_names: Vec<Arc<str>>,
    slots: HashMap<String, Slot>,
    foreign: Vec<ir::Foreign>,
    /// Binding name -> (index into `foreign`, where it was required).
    required: HashMap<String, (usize, Span)>,
    /// The host's answer to `keywords` for each required function (by
    /// index) that some call passes keyword arguments to: asked once.
    keywords_ok: HashMap<usize, Result<(), String>>,
    /// Every name passed as a keyword argument so far (for a hint: before
    /// 0.3, `f(b = 1)` assigned `b`).
    keyword_names: HashSet<String>,
    scope: Scope,
    loop_ctx: LoopCtx,
    depth: usize,
    too_deep: bool,
    /// The program's inputs (for the error when a `require` takes one's name).
    inputs: HashSet<String>,
}

impl Resolver<'_> {
    fn error(&mut self, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.errors.push(Diagnostic::new(Stage::Resolve, span, message));
        self.errors.last_mut().expect("just pushed")
    }

    fn line_of(&self, span: Span) -> usize {
        self.source.get(..span.start).map_or(0, |s| s.matches('\n').count()) + 1
    }

    fn slot(&mut self, name: &str) -> Slot {
        if let Some(&slot) = self.slots.get(name) {
            return slot;
        }
        let slot = self.slot_names.len() as Slot;
        self.slot_names.push(Arc::from(name));
        self.slots.insert(name.to_owned(), slot);
        slot
    }

    /// Enters one level of nesting; false (and one error) when too deep.
    fn descend(&mut self, span: Span) -> bool {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            if !self.too_deep {
                self.too_deep = true;
                self.error(span, format!("the program is nested more than {MAX_DEPTH} levels deep"))
                    .set_hint("split the expression or block into several statements");
            }
            return false;
        }
        true
    }

    /// Binds the inputs before the first statement: each one a variable with
    /// a slot of its own, first. Functions were declared already, so a
    /// clash with one is found here; a clash with a required name is found
    /// at the `require`. The errors point at the start of the source, since
    /// an input is written nowhere in it.
    fn inputs(&mut self, inputs: &[&str]) -> Vec<Arc<str>> {
        let at = Span::new(0, 0);
        let mut names = Vec::with_capacity(inputs.len());
        for &name in inputs {
            if !crate::syntax::is_identifier(name) {
                self.error(at, format!("input `{name}` is not a valid variable name"))
                    .set_label("inputs are variables bound before the first statement")
                    .set_hint("name an input like a variable: letters, digits and `_`, not starting with a digit, and not a keyword");
            } else if Builtin::lookup(name).is_some() {
                self.error(at, format!("input `{name}` has the name of a builtin"))
                    .set_label("inputs are variables bound before the first statement")
                    .set_hint(format!("give the input another name, e.g. `my_{name}`, and read it under that name"));
            } else if let Some(&i) = self.fns.get(name) {
                let span = self.sigs[i].span;
                self.error(span, format!("input `{name}` has the name of a function of this workflow"))
                    .set_label("functions and variables cannot share a name")
                    .set_hint(format!("rename the function, or give the input another name, e.g. `{name}_in`"));
            } else if !self.inputs.insert(name.to_owned()) {
                self.error(at, format!("input `{name}` is given twice")).set_hint("give each input once");
                continue;
            }
            // A slot even for a refused name, so that input i is slot i.
            let slot = self.slot(name);
            debug_assert_eq!(slot as usize, names.len());
            self.scope.defined.insert(name.to_owned());
            names.push(Arc::from(name));
        }
        names
    }

    fn stmts(&mut self, stmts: &[ast::Stmt]) -> Vec<ir::Stmt> {
        stmts.iter().map(|s| self.stmt(s)).collect()
    }

    fn stmt(&mut self, s: &ast::Stmt) -> ir::Stmt {
        let span = s.span;
        if !self.descend(span) {
            self.depth -= 1;
            return ir::Stmt { kind: ir::StmtKind::Nop, span, sync: true };
        }
        let kind = match &s.kind {
            StmtKind::Expr(e) => ir::StmtKind::Expr(self.expr(e)),
            StmtKind::Print(e) => ir::StmtKind::Print(self.expr(e)),
            StmtKind::Require(req) if self.ret_ctx != RetCtx::Top => {
                self.error(s.span, "`require` inside a function")
                    .set_label("foreign names are declared for the whole workflow")
                    .set_hint("move the `require` to the top level: every function sees the names it declares");
                // Still declared, so that calls in the body are not reported too.
                self.require(req);
                ir::StmtKind::Nop
            }
            StmtKind::Require(req) => {
                self.require(req);
                ir::StmtKind::Nop
            }
            StmtKind::Break | StmtKind::Continue => self.jump(s),
            StmtKind::Block { kind: BlockKind::Para, body } => self.para(body),
            StmtKind::Block { body, .. } => ir::StmtKind::Block(self.stmts(body)),
            StmtKind::If { cond, then, els } => ir::StmtKind::If {
                cond: self.expr(cond),
                then: Box::new(self.stmt(then)),
                els: els.as_ref().map(|e| Box::new(self.stmt(e))),
            },
            StmtKind::While { cond, body } => {
                let cond = self.expr(cond);
                let body = self.loop_body(body, LoopCtx::Loop);
                ir::StmtKind::While { cond, body }
            }
            StmtKind::For { para: false, var, iter, body } => {
                let iter = self.expr(iter);
                let var = self.write(var);
                let body = self.loop_body(body, LoopCtx::Loop);
                ir::StmtKind::For { var, iter, body }
            }
            StmtKind::For { para: true, var, iter, body } => self.para_for(var, iter, body),
            // Declared beforehand and resolved after the top level (a nested
            // one is a syntax error already).
            StmtKind::Fn(_) | StmtKind::Error => ir::StmtKind::Nop,
            StmtKind::Return(value) => self.ret(s.span, value.as_ref()),
        };
        self.depth -= 1;
        // `sync` is set once everything is resolved (`set_flags`).
        ir::Stmt { kind: add_in_place(kind), span, sync: true }
    }

    fn ret(&mut self, span: Span, value: Option<&ast::Expr>) -> ir::StmtKind {
        match self.ret_ctx {
            RetCtx::Fn => {}
            RetCtx::Top => {
                self.error(span, "`return` outside of a function")
                    .set_hint("`return` ends a call of a `fn`; a workflow ends after its last statement");
            }
            RetCtx::Para => {
                self.error(span, "`return` cannot leave a `para` branch or a `para for` body")
                    .set_label("a branch runs beside others and cannot end its caller")
                    .set_hint("assign a variable in the branch, and `return` it after the block");
            }
        }
        ir::StmtKind::Return(value.map(|v| self.expr(v)))
    }

    /// Registers a top-level function before anything is resolved; false
    /// (with an error) when its name is taken.
    fn declare(&mut self, def: &ast::FnDef) -> bool {
        let name = &def.name.name;
        if Builtin::lookup(name).is_some() {
            self.error(def.name.span, format!("`{name}` is a builtin, so a function cannot use that name"))
                .set_hint(format!("give the function another name, e.g. `my_{name}`"));
            return false;
        }
        if let Some(&i) = self.fns.get(name) {
            let line = self.line_of(self.sigs[i].span);
            self.error(def.name.span, format!("function `{name}` is already defined (line {line})"))
                .set_hint("rename one of them: functions, builtins and required names share one namespace");
            return false;
        }
        let mut params: Vec<(String, bool)> = Vec::new();
        let mut first_default: Option<&str> = None;
        for p in &def.params {
            let pname = &p.name.name;
            if params.iter().any(|(n, _)| n == pname) {
                self.error(p.name.span, format!("parameter `{pname}` is listed twice in `{name}`")).set_hint("rename one of them");
                continue;
            }
            match (&p.default, first_default) {
                (Some(_), None) => first_default = Some(pname),
                (None, Some(before)) => {
                    self.error(p.name.span, format!("parameter `{pname}` needs a default: it follows `{before}`, which has one"))
                        .set_hint(format!("give `{pname}` a default, or move it before the parameters that have one"));
                }
                _ => {}
            }
            params.push((pname.clone(), p.default.is_some()));
        }
        self.fns.insert(name.clone(), self.sigs.len());
        self.sigs.push(Sig { name: name.clone(), span: def.name.span, params });
        true
    }

    /// Resolves a function's defaults and body in a scope of their own.
    fn function(&mut self, def: &ast::FnDef) -> ir::Function {
        let saved_scope = std::mem::take(&mut self.scope);
        let saved_loop = std::mem::replace(&mut self.loop_ctx, LoopCtx::None);
        let saved_ret = std::mem::replace(&mut self.ret_ctx, RetCtx::Fn);
        let mut seen = HashSet::new();
        let unique: Vec<&ast::Param> = def.params.iter().filter(|p| seen.insert(p.name.name.as_str())).collect();
        // Parameter i is slot i, whatever a default may assign.
        for p in &unique {
            self.slot(&p.name.name);
        }
        let mut params = Vec::new();
        for p in unique {
            let default = p.default.as_ref().map(|d| self.expr(d));
            self.write(&p.name);
            params.push(ir::Param { name: Arc::from(p.name.name.as_str()), default });
        }
        let body = self.stmts(&def.body);
        self.scope = saved_scope;
        self.loop_ctx = saved_loop;
        self.ret_ctx = saved_ret;
        self.slots.clear();
        let slot_names = std::mem::take(&mut self.slot_names);
        ir::Function { name: Arc::from(def.name.name.as_str()), params, body, slot_names, sync: true }
    }

    fn loop_body(&mut self, body: &ast::Stmt, ctx: LoopCtx) -> Box<ir::Stmt> {
        let saved = std::mem::replace(&mut self.loop_ctx, ctx);
        let body = self.stmt(body);
        self.loop_ctx = saved;
        Box::new(body)
    }

    fn jump(&mut self, s: &ast::Stmt) -> ir::StmtKind {
        let (word, kind) = match s.kind {
            StmtKind::Break => ("break", ir::StmtKind::Break),
            _ => ("continue", ir::StmtKind::Continue),
        };
        match self.loop_ctx {
            LoopCtx::Loop => {}
            LoopCtx::ParaFor if word == "continue" => {}
            LoopCtx::ParaFor => {
                self.error(s.span, "`break` cannot stop a `para for`")
                    .set_hint("its iterations run concurrently; use `continue` to end one iteration early");
            }
            LoopCtx::None => {
                self.error(s.span, format!("`{word}` outside of a loop"))
                    .set_hint("`break` and `continue` work inside `while` and `for` (a `para` branch cannot leave a loop around it)");
            }
        }
        kind
    }

    /// Each statement of the block is a branch that starts from the same
    /// scope and may not rebind it. A name exactly one branch creates lives
    /// on after the block; one several branches create does not.
    fn para(&mut self, body: &[ast::Stmt]) -> ir::StmtKind {
        let outer = self.scope.clone();
        let saved_loop = std::mem::replace(&mut self.loop_ctx, LoopCtx::None);
        let saved_ret = self.ret_ctx;
        if saved_ret == RetCtx::Fn {
            self.ret_ctx = RetCtx::Para;
        }
        let mut branches = Vec::new();
        let mut creators: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in body.iter().enumerate() {
            self.scope = outer.clone();
            self.scope.frozen.extend(outer.defined.iter().cloned());
            let stmt = self.stmt(s);
            for name in self.scope.defined.difference(&outer.defined) {
                creators.entry(name.clone()).or_default().push(i);
            }
            branches.push(ir::Branch { stmt, exports: Vec::new() });
        }
        self.loop_ctx = saved_loop;
        self.ret_ctx = saved_ret;
        self.scope = outer;
        let mut names: Vec<_> = creators.into_iter().collect();
        names.sort();
        for (name, who) in names {
            if let [only] = who[..] {
                let slot = self.slot(&name);
                branches[only].exports.push(slot);
                self.scope.gone.remove(&name);
                self.scope.defined.insert(name);
            } else {
                let lines: Vec<String> = who.iter().map(|&i| self.line_of(body[i].span).to_string()).collect();
                let why = format!(
                    "{} branches of a `para` block create it (lines {}), so it stays local to each branch",
                    who.len(),
                    lines.join(", ")
                );
                self.scope.gone.insert(name, why);
            }
        }
        ir::StmtKind::Para(branches)
    }

    fn para_for(&mut self, var: &ast::Ident, iter: &ast::Expr, body: &ast::Stmt) -> ir::StmtKind {
        let iter = self.expr(iter);
        let outer = self.scope.clone();
        let var_slot = if outer.defined.contains(&var.name) {
            self.error(var.span, format!("`para for` cannot rebind `{}`, a variable of the enclosing scope", var.name))
                .set_hint("each iteration has its own loop variable; choose a name not used before the loop");
            self.slot(&var.name)
        } else {
            self.write(var)
        };
        self.scope.frozen.extend(outer.defined.iter().cloned());
        let saved_ret = self.ret_ctx;
        if saved_ret == RetCtx::Fn {
            self.ret_ctx = RetCtx::Para;
        }
        let body = self.loop_body(body, LoopCtx::ParaFor);
        self.ret_ctx = saved_ret;
        let created: Vec<String> = self.scope.defined.difference(&outer.defined).cloned().collect();
        self.scope = outer;
        let why = format!("it exists only inside each iteration of the `para for` at line {}", self.line_of(var.span));
        for name in created {
            self.scope.gone.insert(name, why.clone());
        }
        ir::StmtKind::ParaFor { var: var_slot, iter, body }
    }

    fn require(&mut self, req: &ast::Require) {
        let from = req.from.as_ref().map(|f| f.name.clone());
        for item in &req.items {
            let binding = item.alias.as_ref().unwrap_or_else(|| item.path.last().expect("a require path is never empty"));
            let name = ForeignName { path: item.path.iter().map(|p| p.name.clone()).collect(), from: from.clone() };
            if Builtin::lookup(&binding.name).is_some() {
                self.error(binding.span, format!("`{}` is a builtin, so a required function cannot use that name", binding.name))
                    .set_hint(format!("bind it under another name: `require {} as my_{};`", name.dotted(), binding.name));
                continue;
            }
            if let Some(&i) = self.fns.get(&binding.name) {
                let line = self.line_of(self.sigs[i].span);
                self.error(
                    binding.span,
                    format!("`{}` is a function of this workflow (line {line}), so a required name cannot use it", binding.name),
                )
                .set_hint(format!("bind it under another name: `require {} as my_{};`", name.dotted(), binding.name));
                continue;
            }
            if let Some(&(_, first)) = self.required.get(&binding.name) {
                let line = self.line_of(first);
                self.error(binding.span, format!("`{}` is already required (line {line})", binding.name))
                    .set_hint("use `as` to give one of them another name");
                continue;
            }
            if self.inputs.contains(&binding.name) {
                self.error(binding.span, format!("`{}` is an input of the workflow, so a required name cannot use it", binding.name))
                    .set_hint(format!(
                        "bind the function under another name (`require {} as my_{};`), or give the input another name",
                        name.dotted(),
                        binding.name
                    ));
            } else if self.scope.defined.contains(&binding.name) || self.slots.contains_key(&binding.name) {
                self.error(binding.span, format!("`{}` is already a variable of the workflow", binding.name))
                    .set_hint("use `as` to bind the function under another name");
            }
            if let Err(why) = self.host.resolve(&name) {
                self.error(item.span, format!("no host provides `{name}`")).set_label(why);
            }
            self.required.insert(binding.name.clone(), (self.foreign.len(), item.span));
            self.foreign.push(ir::Foreign { binding: binding.name.clone(), name });
        }
    }

    /// Reading a variable.
    fn read(&mut self, id: &ast::Ident) -> ir::ExprKind {
        let name = &id.name;
        if self.scope.defined.contains(name) {
            return ir::ExprKind::Var(self.slots[name]);
        }
        if self.required.contains_key(name) {
            self.error(id.span, format!("`{name}` is a required function, not a value")).set_hint(format!("call it: `{name}(...)`"));
        } else if self.fns.contains_key(name) {
            self.error(id.span, format!("`{name}` is a function, not a value"))
                .set_hint(format!("call it: `{name}(...)`; functions cannot be stored, passed or printed"));
        } else if self.ret_ctx != RetCtx::Top && self.top_vars.contains(name) && !self.scope.gone.contains_key(name) {
            let what = if self.inputs.contains(name) { "an input" } else { "a variable" };
            self.error(id.span, format!("`{name}` is {what} of the workflow, which a function cannot read"))
                .set_label("a function sees only its parameters and its own variables")
                .set_hint(format!("pass it as an argument: add a parameter `{name}` and call the function with `{name} = {name}`"));
        } else if let Some(why) = self.scope.gone.get(name).cloned() {
            self.error(id.span, format!("`{name}` cannot be read here")).set_label(why);
        } else if !self.lenient {
            let hint = if self.keyword_names.contains(name) {
                Some(format!(
                    "`{name} = ...` inside a call's parentheses is a keyword argument, not an assignment: assign `{name}` in a statement of its own"
                ))
            } else {
                self.similar(name).map(|s| format!("did you mean `{s}`?"))
            };
            let d = self.error(id.span, format!("`{name}` is not defined"));
            d.set_label(format!("no earlier statement assigns `{name}`"));
            d.hint = hint;
        }
        ir::ExprKind::Const(Value::Nil)
    }

    /// Binding a variable (assignment or loop variable).
    fn write(&mut self, id: &ast::Ident) -> Slot {
        let name = &id.name;
        if self.required.contains_key(name) {
            self.error(id.span, format!("cannot assign to `{name}`: it names a required function"))
                .set_hint("choose another variable name, or require the function `as` another name");
            return self.slot(name);
        }
        if self.fns.contains_key(name) {
            self.error(id.span, format!("cannot assign to `{name}`: it names a function"))
                .set_hint("choose another variable name: functions and variables cannot share a name");
            return self.slot(name);
        }
        if self.scope.frozen.contains(name) {
            self.error(id.span, format!("a `para` branch cannot rebind `{name}`, a variable of the enclosing scope")).set_hint(
                "branches run concurrently; assign a new name instead (it stays visible after the block when only one branch creates it)",
            );
        }
        self.scope.gone.remove(name);
        self.scope.defined.insert(name.clone());
        self.slot(name)
    }

    fn similar(&self, name: &str) -> Option<String> {
        let mut best: Option<(usize, &String)> = None;
        for cand in &self.scope.defined {
            let d = edit_distance(name, cand);
            if d <= 2 && d < name.len() && best.is_none_or(|(bd, b)| (d, cand) < (bd, b)) {
                best = Some((d, cand));
            }
        }
        best.map(|(_, s)| s.clone())
    }

    fn exprs(&mut self, es: &[ast::Expr]) -> Vec<ir::Expr> {
        es.iter().map(|e| self.expr(e)).collect()
    }

    fn boxed(&mut self, e: &ast::Expr) -> Box<ir::Expr> {
        Box::new(self.expr(e))
    }

    fn expr(&mut self, e: &ast::Expr) -> ir::Expr {
        let span = e.span;
        if !self.descend(span) {
            self.depth -= 1;
            return ir::Expr { kind: ir::ExprKind::Const(Value::Nil), span, task: false };
        }
        let kind = match &e.kind {
            ExprKind::Nil | ExprKind::Error => ir::ExprKind::Const(Value::Nil),
            ExprKind::Bool(b) => ir::ExprKind::Const(Value::Bool(*b)),
            ExprKind::Int(i) => ir::ExprKind::Const(Value::Int(*i)),
            ExprKind::Float(f) => ir::ExprKind::Const(Value::Float(*f)),
            ExprKind::Str(s) => ir::ExprKind::Const(Value::from(s.as_str())),
            ExprKind::Var(id) => self.read(id),
            ExprKind::Assign { target, value } => {
                let value = self.boxed(value);
                ir::ExprKind::Assign(self.write(target), value)
            }
            ExprKind::Unary { op, expr, .. } => ir::ExprKind::Unary { op: *op, expr: self.boxed(expr) },
            ExprKind::Binary { op, op_span, lhs, rhs } => {
                ir::ExprKind::Binary { op: *op, op_span: *op_span, lhs: self.boxed(lhs), rhs: self.boxed(rhs) }
            }
            ExprKind::Call { callee, args, keywords, process } => self.call(callee, args, keywords, *process),
            ExprKind::Field { expr, name } => ir::ExprKind::Field { expr: self.boxed(expr), name: Arc::from(name.name.as_str()) },
            ExprKind::Index { expr, index } => ir::ExprKind::Index { expr: self.boxed(expr), index: self.boxed(index) },
            ExprKind::Array(items) => ir::ExprKind::Array(self.exprs(items)),
            ExprKind::Map(entries) => ir::ExprKind::Map(entries.iter().map(|(k, v)| (self.expr(k), self.expr(v))).collect()),
            ExprKind::Shell { cmd, args, stdin } => {
                ir::ExprKind::Shell { cmd: self.boxed(cmd), args: self.exprs(args), stdin: stdin.as_ref().map(|s| self.boxed(s)) }
            }
            ExprKind::ShellPipe(units) => ir::ExprKind::ShellPipe(units.iter().map(|u| u.words.clone()).collect()),
        };
        self.depth -= 1;
        // `task` is set once everything is resolved (`set_flags`).
        ir::Expr { kind, span, task: false }
    }

    /// Keyword arguments in written order; a name given twice is an error.
    fn keywords(&mut self, keywords: &[ast::Keyword]) -> Vec<(Arc<str>, Span, ir::Expr)> {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut out = Vec::with_capacity(keywords.len());
        for k in keywords {
            let name = k.name.name.as_str();
            if let Some(&first) = seen.get(name) {
                let line = self.line_of(first);
                self.error(k.name.span, format!("keyword argument `{name}` is given twice"))
                    .set_hint(format!("`{name}` is already given on line {line}; pass each keyword once"));
            }
            seen.insert(name, k.name.span);
            self.keyword_names.insert(name.to_owned());
            let value = self.expr(&k.value);
            out.push((Arc::from(name), k.name.span, value));
        }
        out
    }

    fn call(&mut self, callee: &ast::Expr, args: &[ast::Expr], keywords: &[ast::Keyword], process: bool) -> ir::ExprKind {
        let args = self.exprs(args);
        let keywords = self.keywords(keywords);
        let ExprKind::Var(id) = &callee.kind else {
            self.error(callee.span, "only a named function can be called")
                .set_hint("call a builtin or a required function by its name: `f(x)`");
            return ir::ExprKind::Const(Value::Nil);
        };
        let name = &id.name;
        if let Some(&function) = self.fns.get(name) {
            if process {
                self.error(callee.span, format!("`{name}` is a workflow function: `=f=(...)` is for foreign functions"))
                    .set_hint(format!("call it as `{name}(...)`; a foreign function it calls can use `=g=(...)` itself"));
            }
            return self.bind(function, id, args, keywords);
        }
        if let Some(function) = Builtin::lookup(name) {
            if process {
                self.error(callee.span, format!("`{name}` is a builtin: it runs inside oxiida, not in a worker process"))
                    .set_hint(format!("write `{name}(...)`"));
            } else if let Some((name_of_first, _, _)) = keywords.first() {
                self.error(callee.span, format!("builtins take no keyword arguments, and `{name_of_first}` is given to {name}()"))
                    .set_hint(format!("pass the value by position: `{name}(...)`"));
            } else if !function.arity().contains(&args.len()) {
                let (lo, hi) = (function.arity().start().to_owned(), function.arity().end().to_owned());
                let want = if lo == hi { format!("{lo}") } else { format!("{lo} or {hi}") };
                self.error(callee.span, format!("{name}() takes {want} argument{}, not {}", if hi == 1 { "" } else { "s" }, args.len()));
            }
            return ir::ExprKind::Builtin { function, args };
        }
        if let Some(&(function, _)) = self.required.get(name) {
            let mode = if process { CallMode::Process } else { CallMode::Thread };
            if !keywords.is_empty() {
                let host = self.host;
                let foreign_name = &self.foreign[function].name;
                let answer = self.keywords_ok.entry(function).or_insert_with(|| host.keywords(foreign_name)).clone();
                if let Err(why) = answer {
                    let dotted = self.foreign[function].name.dotted();
                    self.error(callee.span, format!("`{name}` cannot take keyword arguments here"))
                        .set_label(why)
                        .set_hint(format!("pass them by position, or load a plugin for `{dotted}` that declares keyword arguments"));
                }
            }
            let keywords = keywords.into_iter().map(|(k, _, v)| (k, v)).collect();
            return ir::ExprKind::Foreign { function, args, keywords, mode };
        }
        if self.scope.defined.contains(name) {
            self.error(id.span, format!("`{name}` is a variable, not a function"))
                .set_hint("only builtins and required foreign functions can be called");
        } else if !self.lenient {
            self.error(id.span, format!("`{name}` is not a function, a builtin or a required name"))
                .set_hint(format!("define it with `fn {name}(...) {{ ... }}`, or declare a foreign function first: `require {name};`"));
        }
        ir::ExprKind::Const(Value::Nil)
    }

    /// Binds a call's arguments to the function's parameters: positional
    /// ones in order, then keywords by name. Every mismatch is an error now.
    fn bind(&mut self, function: usize, id: &ast::Ident, args: Vec<ir::Expr>, keywords: Vec<(Arc<str>, Span, ir::Expr)>) -> ir::ExprKind {
        let sig = &self.sigs[function];
        let name = sig.name.clone();
        let params = sig.params.clone();
        let listing = || {
            let list: Vec<String> = params.iter().map(|(p, d)| if *d { format!("{p} = ...") } else { p.clone() }).collect();
            format!("{name}({})", list.join(", "))
        };
        let mut given = vec![false; params.len()];
        let mut bound = Vec::with_capacity(args.len() + keywords.len());
        if args.len() > params.len() {
            let n = params.len();
            self.error(id.span, format!("`{name}` takes {n} argument{}, but {} are given", if n == 1 { "" } else { "s" }, args.len()))
                .set_hint(format!("it is defined as `{}`", listing()));
        }
        for (i, arg) in args.into_iter().enumerate().take(params.len()) {
            given[i] = true;
            bound.push((i as Slot, arg));
        }
        for (k, at, value) in keywords {
            match params.iter().position(|(p, _)| **p == *k) {
                None => {
                    self.error(at, format!("`{name}` has no parameter `{k}`")).set_hint(format!("it is defined as `{}`", listing()));
                }
                Some(i) if given[i] => {
                    self.error(at, format!("parameter `{k}` of `{name}` is given twice"))
                        .set_hint("pass it either by position or by keyword, once");
                }
                Some(i) => {
                    given[i] = true;
                    bound.push((i as Slot, value));
                }
            }
        }
        let missing: Vec<String> = params
            .iter()
            .zip(&given)
            .filter(|((_, has_default), given)| !**given && !*has_default)
            .map(|((p, _), _)| format!("`{p}`"))
            .collect();
        if !missing.is_empty() {
            let s = if missing.len() == 1 { "" } else { "s" };
            self.error(id.span, format!("this call to `{name}` is missing the argument{s} {}", missing.join(", ")))
                .set_hint(format!("it is defined as `{}`; pass every parameter that has no default", listing()));
        }
        let line = self.line_of(id.span) as u32;
        ir::ExprKind::Call { function: function as u32, args: bound, line }
    }
}

/// `name = name + value;` becomes `AddTo` when `value` cannot rebind
/// `name` (then the old value may be taken out of its slot while adding).
fn add_in_place(kind: ir::StmtKind) -> ir::StmtKind {
    use crate::syntax::ast::BinaryOp;
    let ir::StmtKind::Expr(ir::Expr { kind: ir::ExprKind::Assign(slot, value), span, task }) = kind else { return kind };
    match value.kind {
        ir::ExprKind::Binary { op: BinaryOp::Add, op_span, lhs, rhs }
            if matches!(lhs.kind, ir::ExprKind::Var(s) if s == slot) && !writes(&rhs, slot) =>
        {
            ir::StmtKind::AddTo { slot, value: *rhs, op_span, target_span: lhs.span }
        }
        other => {
            let value = Box::new(ir::Expr { kind: other, ..*value });
            ir::StmtKind::Expr(ir::Expr { kind: ir::ExprKind::Assign(slot, value), span, task })
        }
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foreign::NoHost;

    fn resolve_src(src: &str) -> Result<ir::Program, Vec<Diagnostic>> {
        let (ast, errors) = crate::syntax::parse(src);
        assert!(errors.is_empty(), "syntax errors: {errors:?}");
        resolve(&ast, src, &NoHost, &[], false)
    }

    fn messages(src: &str) -> Vec<String> {
        resolve_src(src).expect_err("should not resolve").into_iter().map(|d| d.message).collect()
    }

    #[test]
    fn a_name_has_one_slot_and_outputs_follow_first_assignment() {
        let p = resolve_src("b = 1; a = 2; b = b + a;").unwrap();
        assert_eq!(p.slot_names.len(), 2);
        let names: Vec<&str> = p.outputs.iter().map(|&s| &*p.slot_names[s as usize]).collect();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn reads_must_follow_an_assignment_in_program_order() {
        assert_eq!(messages("print x; x = 1;"), ["`x` is not defined"]);
        assert!(resolve_src("if (true) { x = 1; } print x;").is_ok());
        assert!(resolve_src("x = 0; while (x < 3) { x = x + 1; }").is_ok());
        let errors = resolve_src("count = 1; print cuont;").unwrap_err();
        assert_eq!(errors[0].hint.as_deref(), Some("did you mean `count`?"));
    }

    #[test]
    fn every_error_is_reported_together() {
        let m = messages("print a; break; b = c; continue;");
        assert_eq!(m.len(), 4, "{m:?}");
    }

    #[test]
    fn para_branches_cannot_rebind_outer_variables() {
        let m = messages("x = 1; para { x = 2; print x; }");
        assert_eq!(m, ["a `para` branch cannot rebind `x`, a variable of the enclosing scope"]);
        let m = messages("x = 1; para { seq { for x in [1] { print x; } } }");
        assert_eq!(m.len(), 1, "a loop variable is a rebinding too: {m:?}");
    }

    #[test]
    fn a_variable_one_branch_creates_is_exported() {
        let p = resolve_src("para { a = 1; seq { b = 2; c = b; } } print a + b + c;").unwrap();
        let ir::StmtKind::Para(branches) = &p.body[0].kind else { panic!("not a para block") };
        let exported: Vec<Vec<&str>> = branches.iter().map(|b| b.exports.iter().map(|&s| &*p.slot_names[s as usize]).collect()).collect();
        assert_eq!(exported, [vec!["a"], vec!["b", "c"]]);
    }

    #[test]
    fn a_variable_several_branches_create_stays_local() {
        let errors = resolve_src("para {\n seq { out = 1; }\n seq { out = 2; }\n}\nprint out;").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].label.as_deref().unwrap().contains("lines 2, 3"), "{errors:?}");
        assert!(resolve_src("para { seq { out = 1; } seq { out = 2; } } out = 3; print out;").is_ok());
    }

    #[test]
    fn para_for_locals_stay_in_the_iteration() {
        let m = messages("para for i in [1, 2] { y = i; }\nprint y;\nprint i;");
        assert_eq!(m, ["`y` cannot be read here", "`i` cannot be read here"]);
        assert_eq!(messages("i = 0; para for i in [1] { }"), ["`para for` cannot rebind `i`, a variable of the enclosing scope"]);
        assert_eq!(messages("para for i in [1] { break; }"), ["`break` cannot stop a `para for`"]);
        assert!(resolve_src("para for i in [1] { if (i == 1) { continue; } }").is_ok());
    }

    #[test]
    fn loops_do_not_reach_through_para_branches() {
        assert_eq!(messages("while (true) { para { break; } }"), ["`break` outside of a loop"]);
        assert!(resolve_src("para { while (true) { break; } }").is_ok());
    }

    #[test]
    fn calls_are_to_builtins_or_required_names_only() {
        assert_eq!(messages("x = 1; x(2);"), ["`x` is a variable, not a function"]);
        assert_eq!(messages("foo(1);"), ["`foo` is not a function, a builtin or a required name"]);
        assert_eq!(messages("len(1, 2);"), ["len() takes 1 argument, not 2"]);
        assert_eq!(messages("range();"), ["range() takes 1 or 2 arguments, not 0"]);
        assert!(messages("=len=([1]);")[0].contains("builtin"));
        assert_eq!(messages("require f;").len(), 1, "NoHost provides nothing");
    }

    #[test]
    fn only_tasks_and_para_are_async() {
        let p = resolve_src("i = 0; while (i < 10) { i = i + 1; } r = shell {\"true\"}; para { a = 1; }").unwrap();
        let sync: Vec<bool> = p.body.iter().map(|s| s.sync).collect();
        assert_eq!(sync, [true, true, false, false]);
        let ir::StmtKind::Expr(e) = &p.body[2].kind else { panic!() };
        assert!(e.task);
    }

    #[test]
    fn functions_are_checked_before_running() {
        let m = messages("fn f(a, b = 1, c) { return a; }\nfn f() { }\nfn g(x, x) { }\nfn len() { }\nrequire f;\nf = 2;\ny = f;\n=g=(1);");
        assert_eq!(
            m,
            [
                "parameter `c` needs a default: it follows `b`, which has one",
                "function `f` is already defined (line 1)",
                "parameter `x` is listed twice in `g`",
                "`len` is a builtin, so a function cannot use that name",
                "`f` is a function of this workflow (line 1), so a required name cannot use it",
                "cannot assign to `f`: it names a function",
                "`f` is a function, not a value",
                "`g` is a workflow function: `=f=(...)` is for foreign functions",
            ]
        );
    }

    #[test]
    fn calls_bind_positionally_then_by_keyword() {
        let src = "fn f(a, b = 2, c = 3) { return [a, b, c]; }\nf(1, c = 5);\nf(1, 2, 3, 4);\nf(c = 1);\nf(1, a = 2);\nf(1, d = 1);";
        let m = messages(src);
        assert_eq!(
            m,
            [
                "`f` takes 3 arguments, but 4 are given",
                "this call to `f` is missing the argument `a`",
                "parameter `a` of `f` is given twice",
                "`f` has no parameter `d`",
            ]
        );
        let p = resolve_src("fn f(a, b = 2, c = 3) { return [a, b, c]; }\nx = f(1, c = 5);").unwrap();
        let ir::StmtKind::Expr(ir::Expr { kind: ir::ExprKind::Assign(_, call), .. }) = &p.body[1].kind else { panic!() };
        let ir::ExprKind::Call { args, .. } = &call.kind else { panic!("{call:?}") };
        assert_eq!(args.iter().map(|(slot, _)| *slot).collect::<Vec<_>>(), [0, 2], "slots of the parameters, in written order");
    }

    #[test]
    fn a_function_sees_only_its_parameters_and_locals() {
        let errors = resolve_src("total = 1;\nfn f(a) { return a + total; }").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.contains("`total` is a variable of the workflow"));
        assert!(errors[0].hint.as_deref().unwrap().contains("pass it as an argument"));
        assert!(resolve_src("fn f(a, b = a * 2) { c = a + b; return c; }\nc = 1; print f(c);").is_ok());
        assert_eq!(messages("fn f(a = b, b = 1) { }"), ["`b` is not defined"], "a default sees only the parameters before it");
        assert_eq!(messages("fn f() { break; }\nwhile (true) { f(); }"), ["`break` outside of a loop"]);
    }

    #[test]
    fn a_keyword_argument_is_not_an_assignment() {
        let errors = resolve_src("fn f(a, b = 0) { return a; }\nx = f(1, b = 2);\nprint b;").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].message, "`b` is not defined");
        assert!(errors[0].hint.as_deref().unwrap().contains("keyword argument, not an assignment"), "{errors:?}");
    }

    #[test]
    fn require_only_at_the_top_level() {
        let m = messages("fn f() { require g; g(); }");
        assert_eq!(m[0], "`require` inside a function");
        assert!(m[1..].iter().all(|m| m.contains("no host provides")), "only NoHost's refusal besides: {m:?}");
        let m = messages("fn f() { return g(1); }\nrequire g;");
        assert_eq!(m.len(), 1, "the call in f sees the later top-level require: {m:?}");
        assert!(m[0].contains("no host provides"));
    }

    #[test]
    fn return_only_ends_a_function_from_its_own_flow() {
        let m = messages("return;\nfn f() { para { return 1; } para for i in [1] { return; } while (true) { return 2; } }");
        assert_eq!(
            m,
            [
                "`return` outside of a function",
                "`return` cannot leave a `para` branch or a `para for` body",
                "`return` cannot leave a `para` branch or a `para for` body",
            ]
        );
    }

    #[test]
    fn sync_flags_follow_calls_transitively() {
        let src = "fn pure(n) { if (n > 0) { return pure(n - 1); } return 0; }\nfn sh() { return shell {\"true\"}; }\nfn via(n) { if (n > 0) { return via(n - 1); } return sh(); }\nfn par() { para { a = 1; } }\nfn dflt(x = sh()) { }\nx = pure(3);\ny = via(1);";
        let p = resolve_src(src).unwrap();
        let sync: Vec<(&str, bool)> = p.functions.iter().map(|f| (&*f.name, f.sync)).collect();
        assert_eq!(sync, [("pure", true), ("sh", false), ("via", false), ("par", false), ("dflt", false)]);
        assert_eq!(p.body.iter().map(|s| s.sync).collect::<Vec<_>>(), [true, true, true, true, true, true, false]);
    }

    #[test]
    fn appending_to_itself_is_lowered_to_add_in_place() {
        let p = resolve_src("xs = []; xs = xs + [1]; ys = xs + [2]; xs = xs + [xs = 3]; xs = [0] + xs;").unwrap();
        let kinds: Vec<bool> = p.body.iter().map(|s| matches!(s.kind, ir::StmtKind::AddTo { .. })).collect();
        assert_eq!(kinds, [false, true, false, false, false], "not when the value may rebind it, nor for another name");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!("x = {}1{};", "[".repeat(500), "]".repeat(500));
        let m = messages(&src);
        assert_eq!(m.len(), 1);
        assert!(m[0].contains("nested more than"));
    }
}
