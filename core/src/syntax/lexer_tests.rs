//! Tests of `lexer.rs`.

use super::*;

fn toks(src: &str) -> Vec<Token> {
    let (tokens, diags) = lex(src);
    assert!(diags.is_empty(), "unexpected errors for {src:?}: {diags:?}");
    tokens.into_iter().map(|(t, _)| t).collect()
}

fn errors(src: &str) -> Vec<Diagnostic> {
    lex(src).1
}

#[test]
fn integers_and_floats() {
    assert_eq!(toks("42"), vec![Token::Int(42)]);
    assert_eq!(toks("4.0 0.5"), vec![Token::Float(4.0), Token::Float(0.5)]);
    assert_eq!(toks("1e3 2.5e-3 1E+3"), vec![Token::Float(1e3), Token::Float(2.5e-3), Token::Float(1e3)]);
    assert_eq!(toks("9223372036854775807"), vec![Token::Int(i64::MAX)]);
    assert_eq!(toks("9223372036854775808"), vec![Token::IntMinMagnitude], "only `-` before it makes it an Int");
}

#[test]
fn dot_needs_digits_on_both_sides() {
    assert_eq!(toks("1."), vec![Token::Int(1), Token::Dot]);
    assert_eq!(toks(".5"), vec![Token::Dot, Token::Int(5)]);
    assert_eq!(toks("1e"), vec![Token::Int(1), Token::Ident("e".into())]);
}

#[test]
fn no_negative_literals() {
    assert_eq!(toks("-3"), vec![Token::Minus, Token::Int(3)]);
}

#[test]
fn integer_overflow() {
    let errs = errors("x = 99999999999999999999;");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].message, "integer literal does not fit in 64 bits");
    assert_eq!(errs[0].span, Span::new(4, 24));
    assert_eq!(errs[0].hint.as_deref(), Some("write it as a float, e.g. 1e19"));
}

#[test]
fn strings_and_escapes() {
    assert_eq!(toks(r#""hi there""#), vec![Token::Str("hi there".into())]);
    assert_eq!(toks(r#""a\nb\tc\rd\\e\"f\0""#), vec![Token::Str("a\nb\tc\rd\\e\"f\0".into())]);
    assert_eq!(toks(r#""""#), vec![Token::Str(String::new())]);
    assert_eq!(toks("\"é//ü\""), vec![Token::Str("é//ü".into())]);
}

#[test]
fn unknown_escape_points_at_escape() {
    let errs = errors(r#"print "ab\qc\z";"#);
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].span, Span::new(9, 11));
    assert_eq!(errs[0].message, "unknown escape `\\q` in string");
    assert!(errs[0].hint.as_deref().unwrap().contains("\\n"));
    assert_eq!(errs[1].span, Span::new(12, 14));
}

#[test]
fn unterminated_string_then_next_line() {
    let src = "print \"abc;\nprint \"x\\q\";";
    let errs = errors(src);
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].message, "unterminated string");
    assert_eq!(errs[0].span, Span::new(6, 11));
    assert!(errs[1].message.contains("unknown escape"));
    let (tokens, _) = lex(src);
    assert_eq!(tokens[2].0, Token::Print, "lexing resumes on the next line");
}

#[test]
fn unterminated_at_eof_and_backslash_newline() {
    assert_eq!(errors("\"abc").len(), 1);
    assert_eq!(errors("\"abc\\").len(), 1);
    assert_eq!(errors("\"abc\\\n\"").len(), 2);
}

#[test]
fn keywords_and_identifiers() {
    assert_eq!(
        toks("if iff _x x1 para shellpipe shell nil"),
        vec![
            Token::If,
            Token::Ident("iff".into()),
            Token::Ident("_x".into()),
            Token::Ident("x1".into()),
            Token::Para,
            Token::ShellPipe,
            Token::Shell,
            Token::Nil,
        ]
    );
}

#[test]
fn comments_and_whitespace() {
    assert_eq!(toks("  // nothing\n"), vec![]);
    assert_eq!(toks("a // b c\n/ d"), vec![Token::Ident("a".into()), Token::Slash, Token::Ident("d".into())]);
    assert_eq!(toks(""), vec![]);
}

#[test]
fn punctuation() {
    assert_eq!(
        toks("== != <= >= < > = ! | ^ **"),
        vec![
            Token::EqEq,
            Token::NotEq,
            Token::Le,
            Token::Ge,
            Token::Lt,
            Token::Gt,
            Token::Assign,
            Token::Bang,
            Token::Pipe,
            Token::Caret,
            Token::Star,
            Token::Star,
        ]
    );
}

#[test]
fn spans_are_byte_offsets() {
    let (tokens, _) = lex("é = \"ü\";");
    let spans: Vec<_> = tokens.iter().map(|(_, s)| (s.start, s.end)).collect();
    assert_eq!(spans, vec![(0, 2), (3, 4), (5, 9), (9, 10)]);
}

#[test]
fn unexpected_characters_with_hints() {
    let errs = errors("a @ b && c || d; 'x' #");
    let msgs: Vec<_> = errs.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        msgs,
        vec![
            "unexpected character `@`",
            "unexpected `&&`",
            "unexpected `||`",
            "unexpected character `'`",
            "unexpected character `'`",
            "unexpected character `#`",
        ]
    );
    assert_eq!(errs[1].hint.as_deref(), Some("use `and`"));
    assert_eq!(errs[2].hint.as_deref(), Some("use `or`"));
    assert_eq!(errs[0].span, Span::new(2, 3));
}
