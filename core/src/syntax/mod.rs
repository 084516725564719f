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
    diags.sort_by_key(|d| (d.span.start, d.span.end));
    diags.dedup_by(|a, b| a.span == b.span && a.message == b.message);
    (program, diags)
}

fn inside_any(span: Span, regions: &[Span]) -> bool {
    regions.iter().any(|r| r.start <= span.start && span.start <= r.end)
}
