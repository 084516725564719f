//! Front end: source text -> syntax tree plus every syntax error in the file.
//!
//! Lexing and parsing are separate passes so that a malformed token (an
//! unterminated string, say) is reported once by the lexer and the parser can
//! still carry on over the rest of the file.

pub mod ast;
mod lexer;
mod nesting;
mod parser;

use crate::diagnostic::{Diagnostic, Span};

/// Parse a whole workflow. The program is always returned (with `Error` nodes
/// where the parser recovered); the diagnostics are sorted by position and all
/// have `Stage::Syntax`.
pub fn parse(src: &str) -> (ast::Program, Vec<Diagnostic>) {
    if let Err(too_deep) = nesting::check(src) {
        return (ast::Program::default(), vec![*too_deep]);
    }
    let (tokens, mut diags) = lexer::lex(src);
    let bad_regions = lexer::error_spans(&tokens);
    let (program, parse_diags) = parser::parse_tokens(&tokens, src);
    // A parser error right inside (or just after) a bad token is a consequence
    // of the lexer error, which was already reported.
    diags.extend(parse_diags.into_iter().filter(|d| !inside_any(d.span, &bad_regions)));
    for s in &program.stmts {
        if let ast::StmtKind::Fn(def) = &s.kind {
            nested_fns(&def.body, &mut diags);
        } else {
            nested_fns(std::slice::from_ref(s), &mut diags);
        }
    }
    diags.sort_by_key(|d| (d.span.start, d.span.end));
    diags.dedup_by(|a, b| a.span == b.span && a.message == b.message);
    (program, diags)
}

/// `fn` is allowed only directly in the program: report every other one.
fn nested_fns(stmts: &[ast::Stmt], diags: &mut Vec<Diagnostic>) {
    use ast::StmtKind;
    for s in stmts {
        match &s.kind {
            StmtKind::Fn(def) => {
                diags.push(
                    Diagnostic::new(
                        crate::diagnostic::Stage::Syntax,
                        def.name.span,
                        format!("`fn {}` must be defined at the top level", def.name.name),
                    )
                    .with_label("a function cannot be defined inside a block or another function")
                    .with_hint(
                        "move the definition out to the top level of the file: a function is visible everywhere, before and after it",
                    ),
                );
                nested_fns(&def.body, diags);
            }
            StmtKind::Block { body, .. } => nested_fns(body, diags),
            StmtKind::If { then, els, .. } => {
                nested_fns(std::slice::from_ref(then), diags);
                if let Some(els) = els {
                    nested_fns(std::slice::from_ref(els), diags);
                }
            }
            StmtKind::While { body, .. } | StmtKind::For { body, .. } => nested_fns(std::slice::from_ref(body), diags),
            _ => {}
        }
    }
}

fn inside_any(span: Span, regions: &[Span]) -> bool {
    regions.iter().any(|r| r.start <= span.start && span.start <= r.end)
}

/// Whether `name` is a name a workflow can use for a variable: one
/// identifier token, not a keyword (`n`, `_x1`; not `if`, `1x` or `a b`).
pub fn is_identifier(name: &str) -> bool {
    let (tokens, errors) = lexer::lex(name);
    errors.is_empty() && matches!(&tokens[..], [(lexer::Token::Ident(word), _)] if word == name)
}

/// Reads a constant written in the language's own literal syntax: an Int, a
/// Float, a String, `true`, `false`, `nil`, or an Array or Map literal of
/// those (`[1, 2.5]`, `{"el": "Si"}`), with an optional `-` or `+` before a
/// number. No variable, call, operator or task. How front ends read the
/// value of an input given on a command line (`--input n=5`).
///
/// The error says what is wrong and what to write instead.
pub fn parse_constant(text: &str) -> Result<crate::value::Value, String> {
    if text.trim().is_empty() {
        return Err("the value is empty; write a literal such as 5, 2.5, \"Si\", true, nil, [1, 2] or {\"k\": 1}".into());
    }
    // One expression statement and nothing else: text that closes the
    // parenthesis or ends the statement itself (`1); shell {"rm"}; (1`)
    // makes more than one statement, and is refused. The parentheses keep
    // a Map literal from reading as a block.
    let wrapped = format!("({text}\n);");
    let (program, diags) = parse(&wrapped);
    if let Some(d) = diags.first() {
        return Err(format!("it is not a literal of the language ({}); quote a String as \"...\" (in a shell: '\"Si\"')", d.message));
    }
    match &program.stmts[..] {
        [ast::Stmt { kind: ast::StmtKind::Expr(e), .. }] => constant(e),
        _ => Err("it is not a single literal; write one value such as 5, \"Si\" or [1, 2]".into()),
    }
}

fn constant(e: &ast::Expr) -> Result<crate::value::Value, String> {
    use crate::value::{Map, Value};
    use ast::ExprKind as K;
    Ok(match &e.kind {
        K::Nil => Value::Nil,
        K::Bool(b) => Value::Bool(*b),
        K::Int(i) => Value::Int(*i),
        K::Float(x) => Value::Float(*x),
        K::Str(s) => Value::from(s.as_str()),
        K::Unary { op: ast::UnaryOp::Neg, expr, .. } => match &expr.kind {
            K::Int(i) => Value::Int(i.checked_neg().ok_or("the Int is too small")?),
            K::Float(x) => Value::Float(-x),
            _ => return Err("`-` goes only before a number in a literal".into()),
        },
        K::Unary { op: ast::UnaryOp::Plus, expr, .. } if matches!(expr.kind, K::Int(_) | K::Float(_)) => constant(expr)?,
        K::Array(items) => Value::array(items.iter().map(constant).collect::<Result<_, _>>()?),
        K::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                let K::Str(key) = &k.kind else {
                    return Err("a Map key must be a String literal, as in {\"k\": 1}".into());
                };
                map.insert(std::sync::Arc::from(key.as_str()), constant(v)?);
            }
            Value::map(map)
        }
        K::Var(id) => {
            return Err(format!(
                "`{}` is a name, not a literal; a String is written in double quotes: \"{}\" (in a shell: '\"{}\"')",
                id.name, id.name, id.name
            ))
        }
        _ => return Err("only literals are allowed: Int, Float, String, true, false, nil, and Arrays and Maps of those".into()),
    })
}
