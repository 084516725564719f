//! Lexer: source text -> tokens with byte spans.
//!
//! Lexing never fails. Anything malformed becomes a `Token::Error` covering the
//! bad text, so it is reported exactly once (see `lex`) and the parser can
//! treat it as an already-reported expression and carry on; later mistakes in
//! the file are still found.

use chumsky::prelude::*;

use crate::diagnostic::{Diagnostic, Span, Stage};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Token {
    Int(i64),
    /// `9223372036854775808` (2^63): an Int only right after a `-`, which
    /// the parser folds into i64::MIN; anywhere else it is too large.
    IntMinMagnitude,
    Float(f64),
    Str(String),
    Ident(String),
    // Keywords.
    If,
    Else,
    While,
    For,
    In,
    Seq,
    Para,
    Print,
    Require,
    From,
    As,
    And,
    Or,
    True,
    False,
    Nil,
    Shell,
    ShellPipe,
    Break,
    Continue,
    Fn,
    Return,
    // Punctuation.
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Comma,
    Semi,
    Dot,
    Assign,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Colon,
    Caret,
    Bang,
    Pipe,
    /// Malformed input, reported by `lex`.
    Error(LexError),
}

/// Why a piece of the source is not a valid token.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum LexError {
    UnexpectedChar(char),
    /// `&&` or `||`: the operator as written.
    CStyleOperator(&'static str),
    Unterminated,
    /// A string with unknown escapes; the spans are the escapes.
    BadEscapes(Vec<Span>),
    IntOverflow,
}

pub(super) type Spanned = (Token, SimpleSpan);

impl Token {
    fn keyword(word: &str) -> Option<Token> {
        Some(match word {
            "if" => Token::If,
            "else" => Token::Else,
            "while" => Token::While,
            "for" => Token::For,
            "in" => Token::In,
            "seq" => Token::Seq,
            "para" => Token::Para,
            "print" => Token::Print,
            "require" => Token::Require,
            "from" => Token::From,
            "as" => Token::As,
            "and" => Token::And,
            "or" => Token::Or,
            "true" => Token::True,
            "false" => Token::False,
            "nil" => Token::Nil,
            "shell" => Token::Shell,
            "shellpipe" => Token::ShellPipe,
            "break" => Token::Break,
            "continue" => Token::Continue,
            "fn" => Token::Fn,
            "return" => Token::Return,
            _ => return None,
        })
    }

    pub(super) fn is_keyword(&self) -> bool {
        self.fixed_text().is_some_and(|text| text.starts_with(|c: char| c.is_ascii_alphabetic()))
    }

    /// The source text of tokens that are always spelled the same way.
    pub(super) fn fixed_text(&self) -> Option<&'static str> {
        Some(match self {
            Token::If => "if",
            Token::Else => "else",
            Token::While => "while",
            Token::For => "for",
            Token::In => "in",
            Token::Seq => "seq",
            Token::Para => "para",
            Token::Print => "print",
            Token::Require => "require",
            Token::From => "from",
            Token::As => "as",
            Token::And => "and",
            Token::Or => "or",
            Token::True => "true",
            Token::False => "false",
            Token::Nil => "nil",
            Token::Shell => "shell",
            Token::ShellPipe => "shellpipe",
            Token::Break => "break",
            Token::Continue => "continue",
            Token::Fn => "fn",
            Token::Return => "return",
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::LBrace => "{",
            Token::RBrace => "}",
            Token::Comma => ",",
            Token::Semi => ";",
            Token::Dot => ".",
            Token::Assign => "=",
            Token::EqEq => "==",
            Token::NotEq => "!=",
            Token::Lt => "<",
            Token::Le => "<=",
            Token::Gt => ">",
            Token::Ge => ">=",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Percent => "%",
            Token::Colon => ":",
            Token::Caret => "^",
            Token::Bang => "!",
            Token::Pipe => "|",
            _ => return None,
        })
    }

    /// How the token is named in "expected ..." messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Token::Int(_) | Token::IntMinMagnitude | Token::Float(_) => "number".into(),
            Token::Str(_) => "string".into(),
            Token::Ident(_) => "identifier".into(),
            Token::Error(_) => "invalid token".into(),
            fixed => format!("`{}`", fixed.fixed_text().unwrap_or("?")),
        }
    }
}

/// Lex `src`; lexer errors are returned as diagnostics and left in the token
/// stream as `Token::Error`.
pub(super) fn lex(src: &str) -> (Vec<Spanned>, Vec<Diagnostic>) {
    let (tokens, errs) = lexer().parse(src).into_output_errors();
    let tokens = tokens.unwrap_or_default();
    let mut diags: Vec<Diagnostic> = tokens
        .iter()
        .flat_map(|(tok, span)| match tok {
            Token::Error(err) => error_diagnostics(err, to_span(*span), src),
            _ => Vec::new(),
        })
        .collect();
    // The lexer accepts any input, but never lose an error if that changes.
    diags.extend(errs.into_iter().map(|e| Diagnostic::new(Stage::Syntax, to_span(*e.span()), format!("cannot read this: {e}"))));
    (tokens, diags)
}

/// Spans of the tokens the lexer already reported.
pub(super) fn error_spans(tokens: &[Spanned]) -> Vec<Span> {
    tokens.iter().filter(|(tok, _)| matches!(tok, Token::Error(_))).map(|(_, span)| to_span(*span)).collect()
}

pub(super) fn to_span(span: SimpleSpan) -> Span {
    Span::new(span.start, span.end)
}

type LexExtra<'s> = extra::Err<Rich<'s, char>>;

fn lexer<'s>() -> impl Parser<'s, &'s str, Vec<Spanned>, LexExtra<'s>> {
    let token = choice((number(), string(), word(), punct(), stray_char()));
    trivia().ignore_then(token.map_with(|tok, e| (tok, e.span())).then_ignore(trivia()).repeated().collect())
}

/// Whitespace and `//` comments.
fn trivia<'s>() -> impl Parser<'s, &'s str, (), LexExtra<'s>> + Clone {
    let comment = just("//").then(none_of('\n').repeated()).ignored();
    let space = any().filter(|c: &char| c.is_whitespace()).ignored();
    choice((comment, space)).repeated()
}

/// `42` is an Int; a fraction (`0.5`) or exponent (`1e3`) makes a Float.
fn number<'s>() -> impl Parser<'s, &'s str, Token, LexExtra<'s>> + Clone {
    let digits = text::digits(10);
    let frac = just('.').then(digits);
    let exp = one_of("eE").then(one_of("+-").or_not()).then(digits);
    digits.then(frac.or_not()).then(exp.or_not()).to_slice().map(number_token)
}

fn number_token(text: &str) -> Token {
    if text.contains(['.', 'e', 'E']) {
        // Digits with an optional fraction and exponent always parse.
        Token::Float(text.parse().unwrap_or(f64::NAN))
    } else {
        // Only digits, so the one possible failure is overflow.
        match text.parse() {
            Ok(n) => Token::Int(n),
            Err(_) if text.trim_start_matches('0') == "9223372036854775808" => Token::IntMinMagnitude,
            Err(_) => Token::Error(LexError::IntOverflow),
        }
    }
}

fn string<'s>() -> impl Parser<'s, &'s str, Token, LexExtra<'s>> + Clone {
    let escape = just('\\').ignore_then(none_of('\n')).map_with(|c, e| unescape(c).ok_or_else(|| to_span(e.span())));
    let plain = none_of("\"\\\n").map(Ok);
    let closed = choice((escape, plain)).repeated().collect::<Vec<_>>().delimited_by(just('"'), just('"')).map(string_token);
    let unterminated = just('"').then(none_of("\r\n").repeated()).to(Token::Error(LexError::Unterminated));
    closed.or(unterminated)
}

fn unescape(c: char) -> Option<char> {
    Some(match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        '\\' => '\\',
        '"' => '"',
        '0' => '\0',
        _ => return None,
    })
}

fn string_token(pieces: Vec<Result<char, Span>>) -> Token {
    let bad: Vec<Span> = pieces.iter().filter_map(|p| p.err()).collect();
    if bad.is_empty() {
        Token::Str(pieces.into_iter().flatten().collect())
    } else {
        Token::Error(LexError::BadEscapes(bad))
    }
}

fn word<'s>() -> impl Parser<'s, &'s str, Token, LexExtra<'s>> + Clone {
    text::ascii::ident().map(|w: &str| Token::keyword(w).unwrap_or_else(|| Token::Ident(w.to_string())))
}

fn punct<'s>() -> impl Parser<'s, &'s str, Token, LexExtra<'s>> + Clone {
    let two = choice((
        just("==").to(Token::EqEq),
        just("!=").to(Token::NotEq),
        just("<=").to(Token::Le),
        just(">=").to(Token::Ge),
        just("&&").to(Token::Error(LexError::CStyleOperator("&&"))),
        just("||").to(Token::Error(LexError::CStyleOperator("||"))),
    ));
    two.or(one_of("()[]{},;.=<>+-*/%:^!|").map(single_punct))
}

fn single_punct(c: char) -> Token {
    match c {
        '(' => Token::LParen,
        ')' => Token::RParen,
        '[' => Token::LBracket,
        ']' => Token::RBracket,
        '{' => Token::LBrace,
        '}' => Token::RBrace,
        ',' => Token::Comma,
        ';' => Token::Semi,
        '.' => Token::Dot,
        '=' => Token::Assign,
        '<' => Token::Lt,
        '>' => Token::Gt,
        '+' => Token::Plus,
        '-' => Token::Minus,
        '*' => Token::Star,
        '/' => Token::Slash,
        '%' => Token::Percent,
        ':' => Token::Colon,
        '^' => Token::Caret,
        '!' => Token::Bang,
        '|' => Token::Pipe,
        other => Token::Error(LexError::UnexpectedChar(other)),
    }
}

fn stray_char<'s>() -> impl Parser<'s, &'s str, Token, LexExtra<'s>> + Clone {
    any().map(|c| Token::Error(LexError::UnexpectedChar(c)))
}

fn error_diagnostics(err: &LexError, span: Span, src: &str) -> Vec<Diagnostic> {
    let diag = |span, msg: String| Diagnostic::new(Stage::Syntax, span, msg);
    match err {
        LexError::UnexpectedChar(c) => {
            let d = diag(span, format!("unexpected character `{}`", show_char(*c)));
            vec![match char_hint(*c) {
                Some(hint) => d.with_hint(hint),
                None => d,
            }]
        }
        LexError::CStyleOperator(op) => {
            let word = if *op == "&&" { "and" } else { "or" };
            vec![diag(span, format!("unexpected `{op}`")).with_hint(format!("use `{word}`"))]
        }
        LexError::Unterminated => vec![diag(span, "unterminated string".into())
            .with_label("this string is not closed before the end of the line")
            .with_hint("add the closing `\"`; write a newline inside a string as `\\n`")],
        LexError::BadEscapes(spans) => spans
            .iter()
            .map(|s| {
                let text = src.get(s.start..s.end).unwrap_or("\\");
                diag(*s, format!("unknown escape `{text}` in string")).with_hint("valid escapes are \\n \\t \\r \\\\ \\\" \\0")
            })
            .collect(),
        LexError::IntOverflow => vec![int_overflow(span)],
    }
}

pub(super) fn int_overflow(span: Span) -> Diagnostic {
    Diagnostic::new(Stage::Syntax, span, "integer literal does not fit in 64 bits").with_hint("write it as a float, e.g. 1e19")
}

fn show_char(c: char) -> String {
    if c.is_control() {
        c.escape_debug().to_string()
    } else {
        c.to_string()
    }
}

fn char_hint(c: char) -> Option<&'static str> {
    Some(match c {
        '&' => "use `and`",
        '\'' => "strings use double quotes: \"...\"",
        '#' => "comments start with `//`",
        _ => return None,
    })
}

#[cfg(test)]
#[path = "lexer_tests.rs"]
mod tests;
