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
