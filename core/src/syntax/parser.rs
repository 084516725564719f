//! Parser: tokens -> the syntax tree of `ast.rs`.
//!
//! Built with chumsky so that one run reports every syntax error in a file:
//! a broken statement is skipped up to its `;` (or past a balanced `{...}`,
//! or up to the next statement keyword) and becomes `StmtKind::Error`;
//! a broken bracketed group is skipped to its matching closer and becomes
//! `ExprKind::Error`. Chumsky's raw errors are turned into messages for people
//! in `to_diagnostic`.

use chumsky::{
    error::{Rich, RichPattern, RichReason},
    input::{InputRef, ValueInput},
    prelude::*,
};

use super::ast::*;
use super::lexer::{to_span, Spanned, Token};
use crate::diagnostic::{Diagnostic, Span, Stage};

/// Custom errors carry a finished diagnostic.
type Error<'t> = Rich<'t, Token, SimpleSpan, Diagnostic>;
type Extra<'t> = extra::Err<Error<'t>>;

trait TokenInput<'t>: ValueInput<'t, Token = Token, Span = SimpleSpan> {}
impl<'t, I: ValueInput<'t, Token = Token, Span = SimpleSpan>> TokenInput<'t> for I {}

type ExprParser<'t, I> = Boxed<'t, 't, I, Expr, Extra<'t>>;

/// Parse a token stream (from `lexer::lex`) of `src`.
pub(super) fn parse_tokens(tokens: &[Spanned], src: &str) -> (Program, Vec<Diagnostic>) {
    let eoi = SimpleSpan::from(src.len()..src.len());
    let input = tokens.map(eoi, |(tok, span)| (tok, span));
    let (program, errors) = program().parse(input).into_output_errors();
    let diags = errors.into_iter().filter_map(|e| to_diagnostic(e, tokens, src)).collect();
    (program.unwrap_or(Program { stmts: Vec::new() }), diags)
}

fn custom_error<'t>(span: Span, diag: Diagnostic) -> Error<'t> {
    Rich::custom(SimpleSpan::from(span.start..span.end), diag)
}

fn syntax_error(span: Span, message: impl Into<String>) -> Diagnostic {
    Diagnostic::new(Stage::Syntax, span, message)
}

// ---------------------------------------------------------------- statements

fn program<'t, I: TokenInput<'t>>() -> impl Parser<'t, I, Program, Extra<'t>> {
    // Only a `}` can stop `stmt` at top level: everything else is consumed,
    // if need be by its error recovery.
    let stray_close = just(Token::RBrace).validate(|_, e, emitter| {
        let span = to_span(e.span());
        emitter.emit(custom_error(span, syntax_error(span, "unexpected `}`").with_hint("this `}` has no matching `{`")));
        Stmt { kind: StmtKind::Error, span }
    });
    choice((stmt(), stray_close)).repeated().collect().map(|stmts| Program { stmts })
}

fn stmt<'t, I: TokenInput<'t>>() -> impl Parser<'t, I, Stmt, Extra<'t>> + Clone {
    let expr = expr().boxed();
    recursive(|stmt| {
        let stmt = stmt.boxed();
        choice((
            block(stmt.clone()),
            if_stmt(expr.clone(), stmt.clone()),
            while_stmt(expr.clone(), stmt.clone()),
            for_stmt(expr.clone(), stmt.clone()),
            fn_def(expr.clone(), stmt),
            simple_stmt(expr),
        ))
        .labelled("statement")
        .map_with(|kind, e| Stmt { kind, span: to_span(e.span()) })
        .recover_with(via_parser(skip_stmt()))
    })
}

/// `simple ";"`
fn simple_stmt<'t, I: TokenInput<'t>>(expr: ExprParser<'t, I>) -> impl Parser<'t, I, StmtKind, Extra<'t>> + Clone {
    choice((
        just(Token::Print).ignore_then(expr.clone()).map(StmtKind::Print),
        require().map(StmtKind::Require),
        just(Token::Break).to(StmtKind::Break),
        just(Token::Continue).to(StmtKind::Continue),
        just(Token::Return).ignore_then(expr.clone().or_not()).map(StmtKind::Return),
        expr.map(StmtKind::Expr),
    ))
    .then_ignore(just(Token::Semi))
}

fn require<'t, I: TokenInput<'t>>() -> impl Parser<'t, I, Require, Extra<'t>> + Clone {
    let item = ident()
        .separated_by(just(Token::Dot))
        .at_least(1)
        .collect::<Vec<_>>()
        .then(just(Token::As).ignore_then(ident()).or_not())
        .map_with(|(path, alias), e| RequireItem { path, alias, span: to_span(e.span()) });
    just(Token::Require)
        .ignore_then(item.separated_by(just(Token::Comma)).at_least(1).collect())
        .then(just(Token::From).ignore_then(ident()).or_not())
        .map(|(items, from)| Require { items, from })
}

/// `("seq" | "para")? "{" stmt* "}"`; a missing `}` is reported at the `{`.
fn block<'t, I: TokenInput<'t>>(stmt: Boxed<'t, 't, I, Stmt, Extra<'t>>) -> impl Parser<'t, I, StmtKind, Extra<'t>> + Clone {
    let kind = choice((just(Token::Seq).to(BlockKind::Seq), just(Token::Para).to(BlockKind::Para)))
        .or_not()
        .map(|kind| kind.unwrap_or(BlockKind::Plain));
    let open = just(Token::LBrace).map_with(|_, e| to_span(e.span()));
    kind.then(open)
        .then(stmt.repeated().collect())
        // Statements consume everything but `}`, so a missing `}` means end of file.
        .then(just(Token::RBrace).or_not())
        .validate(|(((kind, open), body), close), _, emitter| {
            if close.is_none() {
                emitter.emit(custom_error(open, unclosed(Token::LBrace, open)));
            }
            StmtKind::Block { kind, body }
        })
}

/// `"fn" IDENT "(" params? ")" "{" stmt* "}"`; a missing `}` is reported at the `{`.
fn fn_def<'t, I: TokenInput<'t>>(
    expr: ExprParser<'t, I>,
    stmt: Boxed<'t, 't, I, Stmt, Extra<'t>>,
) -> impl Parser<'t, I, StmtKind, Extra<'t>> + Clone {
    let param = ident().then(just(Token::Assign).ignore_then(expr).or_not()).map(|(name, default)| Param { name, default });
    let params = param.separated_by(just(Token::Comma)).allow_trailing().collect().delimited_by(just(Token::LParen), just(Token::RParen));
    let open = just(Token::LBrace).map_with(|_, e| to_span(e.span()));
    just(Token::Fn)
        .ignore_then(ident())
        .then(params)
        .then(open)
        .then(stmt.repeated().collect())
        .then(just(Token::RBrace).or_not())
        .validate(|((((name, params), open), body), close), _, emitter| {
            if close.is_none() {
                emitter.emit(custom_error(open, unclosed(Token::LBrace, open)));
            }
            StmtKind::Fn(Box::new(FnDef { name, params, body }))
        })
}

fn if_stmt<'t, I: TokenInput<'t>>(
    expr: ExprParser<'t, I>,
    stmt: Boxed<'t, 't, I, Stmt, Extra<'t>>,
) -> impl Parser<'t, I, StmtKind, Extra<'t>> + Clone {
    just(Token::If)
        .ignore_then(condition(expr))
        .then(stmt.clone())
        .then(just(Token::Else).ignore_then(stmt).or_not())
        .map(|((cond, then), els)| StmtKind::If { cond, then: Box::new(then), els: els.map(Box::new) })
}

fn while_stmt<'t, I: TokenInput<'t>>(
    expr: ExprParser<'t, I>,
    stmt: Boxed<'t, 't, I, Stmt, Extra<'t>>,
) -> impl Parser<'t, I, StmtKind, Extra<'t>> + Clone {
    just(Token::While).ignore_then(condition(expr)).then(stmt).map(|(cond, body)| StmtKind::While { cond, body: Box::new(body) })
}

fn for_stmt<'t, I: TokenInput<'t>>(
    expr: ExprParser<'t, I>,
    stmt: Boxed<'t, 't, I, Stmt, Extra<'t>>,
) -> impl Parser<'t, I, StmtKind, Extra<'t>> + Clone {
    just(Token::Para)
        .or_not()
        .then_ignore(just(Token::For))
        .then(ident())
        .then_ignore(just(Token::In))
        .then(expr)
        .then(stmt)
        .map(|(((para, var), iter), body)| StmtKind::For { para: para.is_some(), var, iter, body: Box::new(body) })
}

/// `"(" expr ")"` of `if` and `while`; recovers to the matching `)`.
fn condition<'t, I: TokenInput<'t>>(expr: ExprParser<'t, I>) -> impl Parser<'t, I, Expr, Extra<'t>> + Clone {
    expr.delimited_by(just(Token::LParen), just(Token::RParen)).recover_with(via_parser(nested(Token::LParen, Token::RParen)))
}

/// Recovery for a broken statement: skip to its `;`, or past a balanced
/// `{...}`, or up to the next statement keyword or unmatched `}`. Always
/// consumes something, so the statement loop makes progress.
///
/// Written by hand rather than with combinators: a failed look-ahead inside a
/// combinator leaves chumsky's "furthest error" pointing far ahead, and a
/// later statement's error would then be reported at that stale place.
fn skip_stmt<'t, I: TokenInput<'t>>() -> impl Parser<'t, I, Stmt, Extra<'t>> + Clone {
    custom(|inp: &mut InputRef<'t, '_, I, Extra<'t>>| {
        let start = inp.cursor();
        let mut consumed = false;
        while let Some(end_here) = skip_piece(inp, consumed) {
            consumed = true;
            if end_here {
                break;
            }
        }
        let span = inp.span_since(&start);
        if consumed {
            Ok(Stmt { kind: StmtKind::Error, span: to_span(span) })
        } else {
            Err(custom_error(to_span(span), syntax_error(to_span(span), "nothing to skip")))
        }
    })
}

/// Skip one token or balanced group. `None`: stopped without consuming;
/// `Some(true)`: consumed the end of the statement.
fn skip_piece<'t, I: TokenInput<'t>>(inp: &mut InputRef<'t, '_, I, Extra<'t>>, started: bool) -> Option<bool> {
    let before = inp.save();
    let tok = inp.next()?;
    match tok {
        Token::Semi => Some(true),
        Token::RBrace => None,
        _ if started && is_stmt_keyword(&tok) => None,
        Token::LParen | Token::LBracket | Token::LBrace => {
            let after_open = inp.save();
            if skip_group(inp, closer_of(&tok)) {
                Some(tok == Token::LBrace)
            } else {
                // Unmatched: skip just the opener.
                inp.rewind(after_open);
                Some(false)
            }
        }
        _ => Some(false),
    }
    .or_else(|| {
        inp.rewind(before);
        None
    })
}

/// Skip to the `close` matching an opener just consumed; false if unbalanced.
/// Only braces hold statements, so a `;` directly inside `( )` or `[ ]` means
/// the group was never closed; stopping there keeps recovery local (and
/// linear) instead of scanning the rest of the file for each broken group.
fn skip_group<'t, I: TokenInput<'t>>(inp: &mut InputRef<'t, '_, I, Extra<'t>>, close: Token) -> bool {
    let mut expected = vec![close];
    while let Some(tok) = inp.next() {
        match tok {
            Token::Semi if expected.last() != Some(&Token::RBrace) => return false,
            Token::LParen | Token::LBracket | Token::LBrace => expected.push(closer_of(&tok)),
            Token::RParen | Token::RBracket | Token::RBrace => {
                if expected.pop().as_ref() != Some(&tok) {
                    return false;
                }
                if expected.is_empty() {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Tokens that can only start a statement.
fn is_stmt_keyword(tok: &Token) -> bool {
    matches!(
        tok,
        Token::Print
            | Token::Require
            | Token::If
            | Token::While
            | Token::For
            | Token::Seq
            | Token::Para
            | Token::Break
            | Token::Continue
            | Token::Fn
            | Token::Return
    )
}

/// Recovery for a bracketed expression: skip to the matching closer.
fn nested<'t, I: TokenInput<'t>>(open: Token, close: Token) -> impl Parser<'t, I, Expr, Extra<'t>> + Clone {
    custom(move |inp: &mut InputRef<'t, '_, I, Extra<'t>>| {
        let start = inp.cursor();
        let balanced = inp.next().as_ref() == Some(&open) && skip_group(inp, close.clone());
        let span = to_span(inp.span_since(&start));
        if balanced {
            Ok(Expr { kind: ExprKind::Error, span })
        } else {
            // The caller reports its own error; this one is discarded.
            Err(custom_error(span, syntax_error(span, "unbalanced brackets")))
        }
    })
}

// --------------------------------------------------------------- expressions

fn ident<'t, I: TokenInput<'t>>() -> impl Parser<'t, I, Ident, Extra<'t>> + Clone {
    select! { Token::Ident(name) = e => Ident { name, span: to_span(e.span()) } }.labelled("identifier")
}

/// `expr := IDENT "=" expr | or`
fn expr<'t, I: TokenInput<'t>>() -> impl Parser<'t, I, Expr, Extra<'t>> + Clone {
    recursive(|expr| {
        let expr = expr.boxed();
        let unary = unary(expr.clone());
        let factor =
            binary(unary, select! { Token::Star => BinaryOp::Mul, Token::Slash => BinaryOp::Div, Token::Percent => BinaryOp::Mod });
        let term = binary(factor, select! { Token::Plus => BinaryOp::Add, Token::Minus => BinaryOp::Sub });
        let compare = binary(
            term,
            select! {
                Token::Lt => BinaryOp::Lt,
                Token::Le => BinaryOp::Le,
                Token::Gt => BinaryOp::Gt,
                Token::Ge => BinaryOp::Ge,
                Token::In => BinaryOp::In,
            },
        );
        let equality = binary(compare, select! { Token::EqEq => BinaryOp::Eq, Token::NotEq => BinaryOp::Ne });
        let and = binary(equality, just(Token::And).to(BinaryOp::And));
        let or = binary(and, just(Token::Or).to(BinaryOp::Or));
        or.then(just(Token::Assign).ignore_then(expr).or_not())
            .validate(|(target, value), _, emitter| match value {
                None => target,
                Some(value) => assignment(target, value, emitter),
            })
            .labelled("expression")
    })
}

fn assignment<'t>(target: Expr, value: Expr, emitter: &mut chumsky::input::Emitter<Error<'t>>) -> Expr {
    let span = target.span.to(value.span);
    match target.kind {
        ExprKind::Var(name) if name.span == target.span => Expr { kind: ExprKind::Assign { target: name, value: Box::new(value) }, span },
        ExprKind::Error => Expr { kind: ExprKind::Error, span },
        _ => {
            let diag = syntax_error(target.span, "can only assign to a name")
                .with_label("this is not a plain name")
                .with_hint("fields and elements cannot be assigned; assign to a variable instead");
            emitter.emit(custom_error(target.span, diag));
            Expr { kind: ExprKind::Error, span }
        }
    }
}

/// One left-associative precedence level.
fn binary<'t, I, P, O>(operand: P, op: O) -> ExprParser<'t, I>
where
    I: TokenInput<'t>,
    P: Parser<'t, I, Expr, Extra<'t>> + Clone + 't,
    O: Parser<'t, I, BinaryOp, Extra<'t>> + Clone + 't,
{
    let op = op.map_with(|op, e| (op, to_span(e.span())));
    operand
        .clone()
        .foldl(op.then(operand).repeated(), |lhs, ((op, op_span), rhs)| Expr {
            span: lhs.span.to(rhs.span),
            kind: ExprKind::Binary { op, op_span, lhs: Box::new(lhs), rhs: Box::new(rhs) },
        })
        .boxed()
}

/// `unary := ("-" | "+" | "!") unary | power` and `power := postfix ("^" unary)?`
fn unary<'t, I: TokenInput<'t>>(expr: ExprParser<'t, I>) -> ExprParser<'t, I> {
    recursive(|unary| {
        let op = select! {
            Token::Minus => UnaryOp::Neg,
            Token::Plus => UnaryOp::Plus,
            Token::Bang => UnaryOp::Not,
        }
        .map_with(|op, e| (op, to_span(e.span())));
        // `-9223372036854775808` is i64::MIN, whose magnitude alone is no Int
        // (nor is it under `^`, which binds tighter than `-`).
        let int_min = just(Token::Minus)
            .then(just(Token::IntMinMagnitude))
            .then_ignore(just(Token::Caret).not().rewind())
            .map_with(|_, e| Expr { kind: ExprKind::Int(i64::MIN), span: to_span(e.span()) });
        let prefixed = op.then(unary.clone()).map(|((op, op_span), expr): (_, Expr)| Expr {
            span: op_span.to(expr.span),
            kind: ExprKind::Unary { op, op_span, expr: Box::new(expr) },
        });
        let caret = just(Token::Caret).map_with(|_, e| to_span(e.span()));
        let power = postfix(expr).then(caret.then(unary).or_not()).map(|(lhs, rhs): (Expr, Option<(Span, Expr)>)| match rhs {
            None => lhs,
            Some((op_span, rhs)) => Expr {
                span: lhs.span.to(rhs.span),
                kind: ExprKind::Binary { op: BinaryOp::Pow, op_span, lhs: Box::new(lhs), rhs: Box::new(rhs) },
            },
        });
        choice((int_min, prefixed, power)).labelled("expression")
    })
    .boxed()
}

/// What can follow an expression in a postfix chain, with the span it ends at.
enum Suffix {
    Call(CallArgs, Span),
    Field(Ident),
    Index(Expr, Span),
}

/// `postfix := primary (call | field | index)* | "=" postfix "=" "(" args? ")"`
fn postfix<'t, I: TokenInput<'t>>(expr: ExprParser<'t, I>) -> ExprParser<'t, I> {
    recursive(|postfix| {
        let call_args = call_args(expr.clone());
        let index = expr
            .clone()
            .delimited_by(just(Token::LBracket), just(Token::RBracket))
            .recover_with(via_parser(nested(Token::LBracket, Token::RBracket)))
            .map_with(|index, e| Suffix::Index(index, to_span(e.span())));
        let suffix = choice((
            call_args.clone().map(|(args, span)| Suffix::Call(args, span)),
            just(Token::Dot).ignore_then(ident()).map(Suffix::Field),
            index,
        ));
        let chain = primary(expr).foldl(suffix.repeated(), apply_suffix);
        let eq = just(Token::Assign).map_with(|_, e| to_span(e.span()));
        let process = eq.then(postfix).then_ignore(just(Token::Assign)).then(call_args).map(
            |((eq, callee), ((args, keywords), end)): ((Span, Expr), (CallArgs, Span))| Expr {
                span: eq.to(end),
                kind: ExprKind::Call { callee: Box::new(callee), args, keywords, process: true },
            },
        );
        process.or(chain)
    })
    .boxed()
}

fn apply_suffix(expr: Expr, suffix: Suffix) -> Expr {
    let start = expr.span;
    match suffix {
        Suffix::Call((args, keywords), end) => {
            Expr { span: start.to(end), kind: ExprKind::Call { callee: Box::new(expr), args, keywords, process: false } }
        }
        Suffix::Field(name) => Expr { span: start.to(name.span), kind: ExprKind::Field { expr: Box::new(expr), name } },
        Suffix::Index(index, end) => Expr { span: start.to(end), kind: ExprKind::Index { expr: Box::new(expr), index: Box::new(index) } },
    }
}

/// `expr ("," expr)* ","?`, possibly empty.
fn args<'t, I: TokenInput<'t>>(expr: ExprParser<'t, I>) -> impl Parser<'t, I, Vec<Expr>, Extra<'t>> + Clone {
    expr.separated_by(just(Token::Comma)).allow_trailing().collect()
}

/// The positional and keyword arguments of a call.
type CallArgs = (Vec<Expr>, Vec<Keyword>);

/// One argument as written: `arg := IDENT "=" expr | expr`.
enum Arg {
    Positional(Expr),
    Keyword(Keyword),
}

/// `"(" args? ")"` with the span of the parentheses. Inside the parentheses
/// `name = value` is a keyword argument, never an assignment; keyword
/// arguments must follow every positional one.
fn call_args<'t, I: TokenInput<'t>>(expr: ExprParser<'t, I>) -> impl Parser<'t, I, (CallArgs, Span), Extra<'t>> + Clone {
    let keyword = ident().then_ignore(just(Token::Assign)).then(expr.clone()).map(|(name, value)| Arg::Keyword(Keyword { name, value }));
    let arg = keyword.or(expr.map(Arg::Positional));
    arg.separated_by(just(Token::Comma))
        .allow_trailing()
        .collect::<Vec<_>>()
        .delimited_by(just(Token::LParen), just(Token::RParen))
        .validate(|written, _, emitter| {
            let mut args = Vec::new();
            let mut keywords: Vec<Keyword> = Vec::new();
            for arg in written {
                match arg {
                    Arg::Keyword(k) => keywords.push(k),
                    Arg::Positional(e) => {
                        if let Some(first) = keywords.first() {
                            let diag = syntax_error(e.span, "a positional argument cannot follow a keyword argument")
                                .with_label(format!("after `{} = ...`", first.name.name))
                                .with_hint("put the positional arguments first: `f(x, y, name = value)`");
                            emitter.emit(custom_error(e.span, diag));
                        }
                        args.push(e);
                    }
                }
            }
            (args, keywords)
        })
        .recover_with(via_parser(nested(Token::LParen, Token::RParen).map(|err: Expr| (vec![err], Vec::new()))))
        .map_with(|args, e| (args, to_span(e.span())))
}

fn primary<'t, I: TokenInput<'t>>(expr: ExprParser<'t, I>) -> ExprParser<'t, I> {
    let literal = select! {
        Token::Int(n) => ExprKind::Int(n),
        Token::Float(x) => ExprKind::Float(x),
        Token::Str(s) => ExprKind::Str(s),
        Token::True => ExprKind::Bool(true),
        Token::False => ExprKind::Bool(false),
        Token::Nil => ExprKind::Nil,
        Token::Ident(name) = e => ExprKind::Var(Ident { name, span: to_span(e.span()) }),
        // Already reported by the lexer.
        Token::Error(_) => ExprKind::Error,
    }
    .map_with(|kind, e| Expr { kind, span: to_span(e.span()) });
    let too_large = just(Token::IntMinMagnitude).validate(|_, e, emitter| {
        let span = to_span(e.span());
        emitter.emit(custom_error(span, super::lexer::int_overflow(span)));
        Expr { kind: ExprKind::Error, span }
    });
    let literal = literal.or(too_large);
    // The span of a parenthesised expression includes the parentheses.
    let paren = expr
        .clone()
        .delimited_by(just(Token::LParen), just(Token::RParen))
        .map_with(|inner: Expr, e| Expr { span: to_span(e.span()), ..inner })
        .recover_with(via_parser(nested(Token::LParen, Token::RParen)));
    let array = args(expr.clone())
        .delimited_by(just(Token::LBracket), just(Token::RBracket))
        .map_with(|items, e| Expr { kind: ExprKind::Array(items), span: to_span(e.span()) })
        .recover_with(via_parser(nested(Token::LBracket, Token::RBracket)));
    // Where an expression is expected, `{` starts a map literal (a statement
    // that starts with `{` is a block: `block` comes first in `stmt`).
    let entry = expr.clone().then_ignore(just(Token::Colon)).then(expr.clone());
    let map = entry
        .separated_by(just(Token::Comma))
        .allow_trailing()
        .collect()
        .delimited_by(just(Token::LBrace), just(Token::RBrace))
        .map_with(|entries, e| Expr { kind: ExprKind::Map(entries), span: to_span(e.span()) })
        .recover_with(via_parser(nested(Token::LBrace, Token::RBrace)));
    choice((literal, paren, array, map, shell(expr), shellpipe())).labelled("expression").boxed()
}

/// `"shell" "{" expr ("," "[" args? "]" ("," expr)?)? "}"`
fn shell<'t, I: TokenInput<'t>>(expr: ExprParser<'t, I>) -> impl Parser<'t, I, Expr, Extra<'t>> + Clone {
    let list = args(expr.clone()).delimited_by(just(Token::LBracket), just(Token::RBracket));
    let stdin = just(Token::Comma).ignore_then(expr.clone());
    let rest = just(Token::Comma).ignore_then(list).then(stdin.or_not());
    let body = expr.then(rest.or_not()).delimited_by(just(Token::LBrace), just(Token::RBrace));
    just(Token::Shell)
        .ignore_then(body)
        .map_with(|(cmd, rest), e| {
            let (args, stdin) = rest.unwrap_or_default();
            Expr { kind: ExprKind::Shell { cmd: Box::new(cmd), args, stdin: stdin.map(Box::new) }, span: to_span(e.span()) }
        })
        .recover_with(via_parser(
            just(Token::Shell)
                .ignore_then(nested(Token::LBrace, Token::RBrace))
                .map_with(|_, e| Expr { kind: ExprKind::Error, span: to_span(e.span()) }),
        ))
}

/// `"shellpipe" "{" unit ("|" unit)* "}"` where `unit := STRING STRING*`
fn shellpipe<'t, I: TokenInput<'t>>() -> impl Parser<'t, I, Expr, Extra<'t>> + Clone {
    let word = select! { Token::Str(s) => s }.labelled("string");
    let unit = word.repeated().at_least(1).collect().map_with(|words, e| ShellUnit { words, span: to_span(e.span()) });
    let units = unit.separated_by(just(Token::Pipe)).at_least(1).collect().delimited_by(just(Token::LBrace), just(Token::RBrace));
    just(Token::ShellPipe)
        .ignore_then(units)
        .map_with(|units, e| Expr { kind: ExprKind::ShellPipe(units), span: to_span(e.span()) })
        .recover_with(via_parser(
            just(Token::ShellPipe)
                .ignore_then(nested(Token::LBrace, Token::RBrace))
                .map_with(|_, e| Expr { kind: ExprKind::Error, span: to_span(e.span()) }),
        ))
}

// -------------------------------------------------------------- diagnostics

/// `None` when the error is a consequence of a token the lexer already reported.
fn to_diagnostic(err: Error<'_>, tokens: &[Spanned], src: &str) -> Option<Diagnostic> {
    let span = to_span(*err.span());
    match err.reason() {
        RichReason::Custom(diag) => Some(diag.clone()),
        RichReason::ExpectedFound { found, .. } if matches!(found.as_deref(), Some(Token::Error(_))) => None,
        RichReason::ExpectedFound { expected, found } => Some(expected_found(expected, found.as_deref(), span, tokens, src)),
    }
}

fn expected_found(expected: &[RichPattern<'_, Token>], found: Option<&Token>, span: Span, tokens: &[Spanned], src: &str) -> Diagnostic {
    if found.is_none() {
        if let Some((open, open_span)) = innermost_unclosed(tokens) {
            return unclosed(open, open_span);
        }
    }
    let found_text = match found {
        None => "end of file".to_string(),
        Some(_) => quote_source(src, span),
    };
    let expected = expected_list(expected);
    if expected.iter().any(|e| e == "`;`") {
        return missing_semicolon(found_text, span, tokens);
    }
    let message = if expected.is_empty() {
        format!("unexpected {found_text}")
    } else {
        format!("expected {}, found {found_text}", join_or(&expected))
    };
    let diag = syntax_error(span, message);
    let prev = previous_token(tokens, span).map(|(tok, _)| tok);
    match found.and_then(|tok| found_hint(tok, prev, &expected)) {
        Some(hint) => diag.with_hint(hint),
        None => diag,
    }
}

fn found_hint(found: &Token, prev: Option<&Token>, expected: &[String]) -> Option<String> {
    let wants = |what: &str| expected.iter().any(|e| e == what);
    let wants_name = wants("expression") || wants("identifier") || wants("statement");
    if *found == Token::Star && prev == Some(&Token::Star) && wants("expression") {
        Some("use `^` for powers".into())
    } else if *found == Token::LParen && prev == Some(&Token::For) {
        Some("write `for x in xs ...` without parentheses".into())
    } else if *found == Token::Semi && expected == ["statement"] {
        Some("remove this `;`: empty statements are not allowed".into())
    } else if *found == Token::Else {
        Some("`else` must directly follow the body of an `if`".into())
    } else if found.is_keyword() && wants_name {
        let word = found.fixed_text().unwrap_or_default();
        Some(format!("`{word}` is a keyword and cannot be used as a name"))
    } else {
        None
    }
}

fn missing_semicolon(found_text: String, span: Span, tokens: &[Spanned]) -> Diagnostic {
    // Point just after the previous token, where the `;` belongs.
    let at = previous_token(tokens, span).map_or(span, |(_, prev)| Span::new(prev.end, prev.end));
    syntax_error(at, format!("expected `;` after statement, found {found_text}"))
        .with_label("expected `;` here")
        .with_hint("add `;` at the end of the previous statement")
}

/// The last token that ends before `span`.
fn previous_token(tokens: &[Spanned], span: Span) -> Option<(&Token, Span)> {
    tokens.iter().rev().map(|(tok, s)| (tok, to_span(*s))).find(|(_, s)| s.end <= span.start)
}

fn unclosed(open: Token, span: Span) -> Diagnostic {
    let text = open.fixed_text().unwrap_or("(");
    syntax_error(span, format!("unclosed `{text}`"))
        .with_label(format!("this `{text}` is never closed"))
        .with_hint("the file ended before the matching closing bracket")
}

/// The innermost opening bracket that is still open at the end of the file.
fn innermost_unclosed(tokens: &[Spanned]) -> Option<(Token, Span)> {
    let mut open: Vec<(Token, Span)> = Vec::new();
    for (tok, span) in tokens {
        match tok {
            Token::LParen | Token::LBracket | Token::LBrace => open.push((tok.clone(), to_span(*span))),
            Token::RParen | Token::RBracket | Token::RBrace => {
                // Close the nearest matching opener; ignore a stray closer.
                if let Some(i) = open.iter().rposition(|(o, _)| closer_of(o) == *tok) {
                    open.truncate(i);
                }
            }
            _ => {}
        }
    }
    open.pop()
}

fn closer_of(open: &Token) -> Token {
    match open {
        Token::LParen => Token::RParen,
        Token::LBracket => Token::RBracket,
        _ => Token::RBrace,
    }
}

/// The found token as written, in backticks (shortened if long).
fn quote_source(src: &str, span: Span) -> String {
    let text = src.get(span.start..span.end).unwrap_or("?");
    match text.char_indices().nth(24) {
        Some((cut, _)) => format!("`{}…`", &text[..cut]),
        None => format!("`{text}`"),
    }
}

/// Expected items worth showing, in a stable order: labels first, then
/// tokens; operators that could merely continue an expression are left out
/// when there is anything else to say.
fn expected_list(expected: &[RichPattern<'_, Token>]) -> Vec<String> {
    let mut items: Vec<(u8, String)> = expected
        .iter()
        .filter_map(|pattern| match pattern {
            RichPattern::Label(label) => Some((0, label.to_string())),
            RichPattern::Token(tok) if continues_expression(tok) => Some((3, tok.describe())),
            RichPattern::Token(tok) => Some((1, tok.describe())),
            RichPattern::EndOfInput => Some((2, "end of file".to_string())),
            _ => None,
        })
        .collect();
    items.sort();
    items.dedup();
    if items.iter().any(|(rank, _)| *rank < 3) {
        items.retain(|(rank, _)| *rank < 3);
    }
    items.into_iter().map(|(_, text)| text).take(4).collect()
}

fn continues_expression(tok: &Token) -> bool {
    matches!(tok, Token::Dot | Token::LParen | Token::LBracket | Token::Assign | Token::Caret | Token::And | Token::Or)
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
