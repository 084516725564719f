//! Tests of `parser.rs`.

use super::super::parse;
use super::*;

/// Parse a file that must be free of errors.
fn ok(src: &str) -> Vec<Stmt> {
    let (program, diags) = parse(src);
    assert!(diags.is_empty(), "errors for {src:?}: {diags:#?}");
    program.stmts
}

fn errors(src: &str) -> Vec<Diagnostic> {
    parse(src).1
}

fn line_of(src: &str, span: Span) -> usize {
    src[..span.start].matches('\n').count() + 1
}

/// The single expression statement of `src`, as an s-expression.
fn expr(src: &str) -> String {
    match &ok(src)[..] {
        [Stmt { kind: StmtKind::Expr(e), .. }] => sexpr(e),
        other => panic!("not one expression statement: {other:?}"),
    }
}

fn sexpr(e: &Expr) -> String {
    let list = |items: &[Expr]| items.iter().map(sexpr).collect::<Vec<_>>().join(" ");
    match &e.kind {
        ExprKind::Nil => "nil".into(),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Int(n) => n.to_string(),
        ExprKind::Float(x) => format!("{x:?}"),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Var(v) => v.name.clone(),
        ExprKind::Assign { target, value } => format!("(= {} {})", target.name, sexpr(value)),
        ExprKind::Unary { op, expr, .. } => format!("({} {})", op.symbol(), sexpr(expr)),
        ExprKind::Binary { op, lhs, rhs, .. } => {
            format!("({} {} {})", op.symbol(), sexpr(lhs), sexpr(rhs))
        }
        ExprKind::Call { callee, args, keywords, process } => {
            let kind = if *process { "process" } else { "call" };
            let mut all: Vec<String> = args.iter().map(sexpr).collect();
            all.extend(keywords.iter().map(|k| format!("{}={}", k.name.name, sexpr(&k.value))));
            format!("({kind} {} [{}])", sexpr(callee), all.join(" "))
        }
        ExprKind::Field { expr, name } => format!("(. {} {})", sexpr(expr), name.name),
        ExprKind::Index { expr, index } => format!("([] {} {})", sexpr(expr), sexpr(index)),
        ExprKind::Array(items) => format!("[{}]", list(items)),
        ExprKind::Map(entries) => {
            let entries: Vec<String> = entries.iter().map(|(k, v)| format!("{}: {}", sexpr(k), sexpr(v))).collect();
            format!("{{{}}}", entries.join(", "))
        }
        ExprKind::Shell { cmd, args, stdin } => {
            let stdin = stdin.as_ref().map_or("-".into(), |s| sexpr(s));
            format!("(shell {} [{}] {stdin})", sexpr(cmd), list(args))
        }
        ExprKind::ShellPipe(units) => {
            let units: Vec<_> = units.iter().map(|u| u.words.join(" ")).collect();
            format!("(pipe {})", units.join(" | "))
        }
        ExprKind::Error => "ERR".into(),
    }
}

#[test]
fn precedence() {
    assert_eq!(expr("-2^2;"), "(- (^ 2 2))");
    assert_eq!(expr("2^3^2;"), "(^ 2 (^ 3 2))");
    assert_eq!(expr("2^-1;"), "(^ 2 (- 1))");
    assert_eq!(expr("a or b and c;"), "(or a (and b c))");
    assert_eq!(expr("1 + 2 * 3;"), "(+ 1 (* 2 3))");
    assert_eq!(expr("10-2-3;"), "(- (- 10 2) 3)");
    assert_eq!(expr("8 / 4 / 2;"), "(/ (/ 8 4) 2)");
    assert_eq!(expr("a < b == c >= d;"), "(== (< a b) (>= c d))");
    assert_eq!(expr("!a != -b;"), "(!= (! a) (- b))");
    assert_eq!(expr("(1 + 2) * 3;"), "(* (+ 1 2) 3)");
    assert_eq!(expr("+x;"), "(+ x)");
}

#[test]
fn the_smallest_int_literal() {
    assert_eq!(expr("-9223372036854775808;"), "-9223372036854775808");
    assert_eq!(expr("div(-9223372036854775808, -1);"), "(call div [-9223372036854775808 (- 1)])");
    for src in ["9223372036854775808;", "- 9223372036854775808 ^ 0;", "x = 9223372036854775808 + 1;"] {
        let errs = errors(src);
        assert_eq!(errs.len(), 1, "{src}: {errs:?}");
        assert_eq!(errs[0].message, "integer literal does not fit in 64 bits");
    }
}

#[test]
fn modulo_and_in() {
    assert_eq!(expr("a + b % c * d;"), "(+ a (* (% b c) d))");
    assert_eq!(expr("-7 % 2;"), "(% (- 7) 2)");
    assert_eq!(expr("x in xs == y < z;"), "(== (in x xs) (< y z))");
    assert_eq!(expr("a + 1 in b and c;"), "(and (in (+ a 1) b) c)");
}

#[test]
fn map_literals_where_expressions_go() {
    assert_eq!(expr("m = {\"a\": 1, k: [2], \"c\": {},};"), "(= m {\"a\": 1, k: [2], \"c\": {}})");
    assert_eq!(expr("f({});"), "(call f [{}])");
    assert_eq!(expr("print_it = {\"x\": {\"y\": 1}}.x.y;"), "(= print_it (. (. {\"x\": {\"y\": 1}} x) y))");
    // A statement that starts with `{` is a block.
    let stmts = ok("{ x = 1; }");
    assert!(matches!(&stmts[0].kind, StmtKind::Block { kind: BlockKind::Plain, .. }));
    assert!(!errors("{\"a\": 1};").is_empty());
    assert!(!errors("x = {\"a\" 1};").is_empty());
}

#[test]
fn binary_spans() {
    let stmts = ok("10 - 2 - 3;");
    let StmtKind::Expr(e) = &stmts[0].kind else { panic!() };
    assert_eq!(e.span, Span::new(0, 10));
    let ExprKind::Binary { op_span, lhs, .. } = &e.kind else { panic!() };
    assert_eq!(*op_span, Span::new(7, 8));
    assert_eq!(lhs.span, Span::new(0, 6));
    assert_eq!(stmts[0].span, Span::new(0, 11));
}

#[test]
fn literals() {
    assert_eq!(expr("[1, 2.5, \"s\\n\", true, false, nil];"), "[1 2.5 \"s\\n\" true false nil]");
    assert_eq!(expr("[];"), "[]");
    assert_eq!(expr("[1, 2,];"), "[1 2]");
}

#[test]
fn assignment_is_right_associative() {
    assert_eq!(expr("a = b = 1 + 2;"), "(= a (= b (+ 1 2)))");
    assert_eq!(expr("x = =f=(s);"), "(= x (process f [s]))");
}

#[test]
fn calls_fields_and_indexes_chain() {
    assert_eq!(expr("f(a, b)(c).d[0];"), "([] (. (call (call f [a b]) [c]) d) 0)");
    assert_eq!(expr("f();"), "(call f [])");
    assert_eq!(expr("f(1, 2,);"), "(call f [1 2])");
    assert_eq!(expr("=f=(x);"), "(process f [x])");
    assert_eq!(expr("=m.run=();"), "(process (. m run) [])");
    assert_eq!(expr("=f=(a, b,) + 1;"), "(+ (process f [a b]) 1)");
}

#[test]
fn keyword_arguments_are_never_assignments() {
    assert_eq!(expr("f(x, steps = 100);"), "(call f [x steps=100])");
    assert_eq!(expr("f(b = 1);"), "(call f [b=1])");
    assert_eq!(expr("=f=(a, k = b == c,);"), "(process f [a k=(== b c)])");
    assert_eq!(expr("f(k = v = 1);"), "(call f [k=(= v 1)])", "the value may itself be an assignment");
    assert_eq!(expr("f((b = 1));"), "(call f [(= b 1)])", "parentheses make it an assignment again");
    assert_eq!(expr("[b = 1];"), "[(= b 1)]", "only argument lists take keywords");
}

#[test]
fn positional_after_keyword_is_a_syntax_error() {
    let errs = errors("f(a = 1, 2);\ng(k = 1, x, y);");
    let messages: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages, ["a positional argument cannot follow a keyword argument"; 3], "{errs:#?}");
    assert_eq!(errs[0].span, Span::new(9, 10));
    assert!(errs[0].hint.as_deref().unwrap().contains("first"));
}

#[test]
fn call_spans() {
    let stmts = ok("x = =f=(s);");
    let StmtKind::Expr(e) = &stmts[0].kind else { panic!() };
    let ExprKind::Assign { value, .. } = &e.kind else { panic!() };
    assert_eq!(value.span, Span::new(4, 10));
}

#[test]
fn require_statements() {
    let stmts = ok("require os.path.join as join, time from py;\nrequire x;");
    let StmtKind::Require(req) = &stmts[0].kind else { panic!() };
    let path: Vec<_> = req.items[0].path.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(path, ["os", "path", "join"]);
    assert_eq!(req.items[0].alias.as_ref().unwrap().name, "join");
    assert_eq!(req.items[0].span, Span::new(8, 28));
    assert_eq!(req.items[1].path[0].name, "time");
    assert!(req.items[1].alias.is_none());
    assert_eq!(req.from.as_ref().unwrap().name, "py");
    let StmtKind::Require(req) = &stmts[1].kind else { panic!() };
    assert!(req.from.is_none());
}

#[test]
fn simple_statements() {
    let stmts = ok("print 1; break; continue; x;");
    assert!(matches!(stmts[0].kind, StmtKind::Print(_)));
    assert_eq!(stmts[1].kind, StmtKind::Break);
    assert_eq!(stmts[2].kind, StmtKind::Continue);
    assert!(matches!(stmts[3].kind, StmtKind::Expr(_)));
}

#[test]
fn blocks() {
    let stmts = ok("{ a; } seq { b; c; } para { d; } {}");
    let kinds: Vec<_> = stmts
        .iter()
        .map(|s| match &s.kind {
            StmtKind::Block { kind, body } => (*kind, body.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, [(BlockKind::Plain, 1), (BlockKind::Seq, 2), (BlockKind::Para, 1), (BlockKind::Plain, 0)]);
    assert_eq!(stmts[1].span, Span::new(7, 20));
}

#[test]
fn if_else_chains() {
    let stmts = ok("if (a) x; else if (b) { y; } else z;");
    let StmtKind::If { cond, els: Some(els), .. } = &stmts[0].kind else { panic!() };
    assert_eq!(sexpr(cond), "a");
    let StmtKind::If { then, els: Some(last), .. } = &els.kind else { panic!() };
    assert!(matches!(then.kind, StmtKind::Block { .. }));
    assert!(matches!(last.kind, StmtKind::Expr(_)));
    let stmts = ok("if (a) { }");
    assert!(matches!(stmts[0].kind, StmtKind::If { els: None, .. }));
}

#[test]
fn while_loops() {
    let stmts = ok("while (i < 3) { i = i + 1; }");
    let StmtKind::While { cond, body } = &stmts[0].kind else { panic!() };
    assert_eq!(sexpr(cond), "(< i 3)");
    assert!(matches!(body.kind, StmtKind::Block { .. }));
}

#[test]
fn for_loops() {
    let stmts = ok("for x in xs print x; para for y in [1, 2] { f(y); }");
    let StmtKind::For { para, var, iter, .. } = &stmts[0].kind else { panic!() };
    assert!(!para);
    assert_eq!(var.name, "x");
    assert_eq!(sexpr(iter), "xs");
    let StmtKind::For { para, iter, body, .. } = &stmts[1].kind else { panic!() };
    assert!(*para);
    assert_eq!(sexpr(iter), "[1 2]");
    assert!(matches!(body.kind, StmtKind::Block { kind: BlockKind::Plain, .. }));
}

#[test]
fn shell_forms() {
    assert_eq!(expr("shell {\"ls\"};"), "(shell \"ls\" [] -)");
    assert_eq!(expr("shell {\"ls\", [\"-l\", d,]};"), "(shell \"ls\" [\"-l\" d] -)");
    assert_eq!(expr("shell {cmd, [], input};"), "(shell cmd [] input)");
}

#[test]
fn shellpipe_units() {
    assert_eq!(expr("shellpipe {\"sort\" \"-n\" | \"head\"};"), "(pipe sort -n | head)");
    let stmts = ok("shellpipe {\"a\\tb\" \"c\" | \"d\"};");
    let StmtKind::Expr(Expr { kind: ExprKind::ShellPipe(units), .. }) = &stmts[0].kind else { panic!() };
    assert_eq!(units[0].words, ["a\tb", "c"]);
    assert_eq!(units[0].span, Span::new(11, 21));
    assert_eq!(units[1].span, Span::new(24, 27));
}

#[test]
fn comments_are_ignored() {
    assert_eq!(ok("// only a comment\nx; // trailing\n// end").len(), 1);
}

#[test]
fn three_errors_on_three_lines() {
    let src = "print 4 ** 6;\nx = ;\nprint \"unterminated;\n";
    let errs = errors(src);
    let lines: Vec<_> = errs.iter().map(|e| line_of(src, e.span)).collect();
    assert_eq!(lines, [1, 2, 3], "{errs:#?}");
    assert_eq!(errs[0].span, Span::new(9, 10));
    assert_eq!(errs[0].hint.as_deref(), Some("use `^` for powers"));
    assert_eq!(errs[1].message, "expected expression, found `;`");
    assert_eq!(errs[2].message, "unterminated string");
    assert!(errs.iter().all(|e| e.stage == Stage::Syntax));
}

#[test]
fn missing_semicolon() {
    let errs = errors("x = 1\nprint x;");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].message, "expected `;` after statement, found `print`");
    assert_eq!(errs[0].span, Span::new(5, 5));
    assert_eq!(errs[0].hint.as_deref(), Some("add `;` at the end of the previous statement"));
}

#[test]
fn recovery_keeps_later_statements() {
    let (program, errs) = parse("x = 1\nprint x;\ny = 2;");
    assert_eq!(errs.len(), 1);
    let kinds: Vec<_> = program.stmts.iter().map(|s| std::mem::discriminant(&s.kind)).collect();
    assert_eq!(kinds.len(), 3);
    assert_eq!(program.stmts[0].kind, StmtKind::Error);
    assert!(matches!(program.stmts[1].kind, StmtKind::Print(_)));
}

#[test]
fn one_error_per_broken_statement() {
    let src = "f(1 2);\nprint (1 + ;\nif (x { y; }\nz = [1,,2];\nok;";
    let errs = errors(src);
    let lines: Vec<_> = errs.iter().map(|e| line_of(src, e.span)).collect();
    assert_eq!(lines, [1, 2, 3, 4], "{errs:#?}");
    assert_eq!(errs[0].message, "expected `)` or `,`, found `2`");
}

#[test]
fn errors_inside_blocks_recover_locally() {
    let (program, errs) = parse("while (a) { x = ; y; }\nz;");
    assert_eq!(errs.len(), 1);
    assert_eq!(program.stmts.len(), 2);
    let StmtKind::While { body, .. } = &program.stmts[0].kind else { panic!() };
    let StmtKind::Block { body, .. } = &body.kind else { panic!() };
    assert_eq!(body[0].kind, StmtKind::Error);
    assert!(matches!(body[1].kind, StmtKind::Expr(_)));
}

#[test]
fn assign_only_to_names() {
    for src in ["a.b = 1;", "a[0] = 1;", "(a) = 1;", "f() = 1;"] {
        let errs = errors(src);
        assert_eq!(errs.len(), 1, "{src}: {errs:#?}");
        assert_eq!(errs[0].message, "can only assign to a name");
    }
    assert_eq!(errors("a.b = 1;")[0].span, Span::new(0, 3));
}

#[test]
fn unclosed_brace_points_at_it() {
    let errs = errors("x;\nseq {\n  a;\n  b = 1;\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].message, "unclosed `{`");
    assert_eq!(errs[0].span, Span::new(7, 8));
    let errs = errors("if (a) { if (b) { c; }");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].span, Span::new(7, 8));
}

#[test]
fn unclosed_paren_at_end_of_file() {
    let errs = errors("print f(a, b");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].message, "unclosed `(`");
    assert_eq!(errs[0].span, Span::new(7, 8));
}

#[test]
fn stray_closing_brace() {
    let errs = errors("a; } b;");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].message, "unexpected `}`");
}

#[test]
fn unknown_escape_span() {
    let errs = errors("print \"a\\qb\";");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].span, Span::new(8, 10));
    assert!(errs[0].hint.as_deref().unwrap().contains("\\t"));
}

#[test]
fn lexer_errors_do_not_cascade() {
    assert_eq!(errors("a && b;").len(), 1);
    assert_eq!(errors("x = @;").len(), 1);
    assert_eq!(errors("x = 99999999999999999999 + 1;").len(), 1);
    assert_eq!(errors("print \"abc").len(), 1);
}

#[test]
fn readable_messages() {
    let msg = |src| errors(src)[0].message.clone();
    assert_eq!(msg("print;"), "expected expression, found `;`");
    assert_eq!(msg("if x {}"), "expected `(`, found `x`");
    assert_eq!(msg("1 +"), "expected expression, found end of file");
    assert_eq!(msg(";"), "expected statement, found `;`");
    assert_eq!(msg("para x;"), "expected `for` or `{`, found `x`");
    let errs = errors("for in xs {}");
    assert_eq!(errs[0].hint.as_deref(), Some("`in` is a keyword and cannot be used as a name"));
}

#[test]
fn deep_nesting_does_not_overflow() {
    let depth = 900;
    let src = format!("x = {}1{};", "(".repeat(depth), ")".repeat(depth));
    assert!(errors(&src).is_empty());
    let src = "{ x;".repeat(depth);
    assert!(!errors(&src).is_empty());
}

#[test]
fn far_deeper_nesting_is_refused_before_parsing() {
    let depth = 2_000_000;
    let src = format!("x = {}1{};", "(".repeat(depth), ")".repeat(depth));
    let found = errors(&src);
    assert_eq!(found.len(), 1);
    assert!(found[0].message.contains("nests more than 1000 levels"), "{}", found[0].message);
}

#[test]
fn unclosed_groups_are_not_exponential() {
    // Each of these took exponential time before recovery was fixed.
    for open in ["(", "[", "f(", "{(", "if ("] {
        let src = format!("x = {};", open.repeat(300));
        assert!(!errors(&src).is_empty());
    }
}

mod fuzz {
    use super::parse;
    use proptest::prelude::*;

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "if",
                "else",
                "while",
                "for",
                "in",
                "seq",
                "para",
                "print",
                "require",
                "from",
                "as",
                "and",
                "or",
                "true",
                "false",
                "nil",
                "shell",
                "shellpipe",
                "break",
                "continue",
                "fn",
                "return",
                "%",
                ":",
                "(",
                ")",
                "[",
                "]",
                "{",
                "}",
                ",",
                ";",
                ".",
                "=",
                "==",
                "!=",
                "<",
                "<=",
                ">",
                ">=",
                "+",
                "-",
                "*",
                "/",
                "^",
                "!",
                "|",
                "x",
                "f",
                "1",
                "2.5",
                "1e3",
                "\"s\"",
                "\"",
                "\\",
                "//",
                "\n",
                " ",
                "&&",
                "@",
                "é",
            ])
            .prop_map(String::from),
            any::<char>().prop_map(String::from),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parse_never_panics(pieces in prop::collection::vec(piece(), 0..100)) {
            let src: String = pieces.concat().chars().take(200).collect();
            let (_, diags) = parse(&src);
            for d in diags {
                prop_assert!(d.span.start <= d.span.end && d.span.end <= src.len());
                prop_assert!(src.is_char_boundary(d.span.start) && src.is_char_boundary(d.span.end));
            }
        }

        #[test]
        fn parse_never_panics_on_any_string(src in ".{0,200}") {
            let _ = parse(&src);
        }
    }
}
