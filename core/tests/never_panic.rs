//! The resolver and interpreter never panic: generated programs, mostly
//! well-formed and full of the constructs with the most rules (`para`,
//! `para for`, loops, `break`, `require`, functions with defaults and
//! keyword arguments, `return`, map literals, `%`, `div`, `in`), are
//! compiled and, when they compile, run. Errors are fine; panics and hangs are not. The parser has
//! its own arbitrary-text proptests in `core/src/syntax/parser_tests.rs`.

use std::time::Duration;

use oxiida::foreign::NoHost;
use oxiida::{Output, Source};
use proptest::prelude::*;

struct Discard;

impl Output for Discard {
    fn print(&self, _text: &str) {}
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "i"]).prop_map(str::to_owned)
}

/// Expressions that may call the workflow functions in `fns` (each takes
/// `a` and an optional `k`), so that generated functions call only those
/// defined before them and no recursion runs away.
fn expr_calling(fns: &[&'static str]) -> BoxedStrategy<String> {
    let fns = fns.to_vec();
    let leaf = prop_oneof![
        name(),
        (-3i64..4).prop_map(|i| i.to_string()),
        Just("2.5".to_owned()),
        Just("\"s\"".to_owned()),
        Just("nil".to_owned()),
        Just("true".to_owned()),
        Just("shell {\"true\"}.status".to_owned()),
    ];
    leaf.prop_recursive(3, 12, 2, move |inner| {
        let call = if fns.is_empty() {
            Just("len([])".to_owned()).boxed()
        } else {
            (prop::sample::select(fns.clone()), inner.clone(), inner.clone(), 0..4usize)
                .prop_map(|(f, a, k, form)| match form {
                    0 => format!("{f}({a})"),
                    1 => format!("{f}({a}, k = {k})"),
                    2 => format!("{f}(k = {k}, a = {a})"),
                    _ => format!("{f}({a}, {k}, {k})"),
                })
                .boxed()
        };
        prop_oneof![
            (inner.clone(), prop::sample::select(vec!["+", "-", "*", "/", "%", "^", "==", "<", "and", "or", "in"]), inner.clone())
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("[{a}, 1]")),
            inner.clone().prop_map(|a| format!("len([{a}])")),
            (inner.clone(), inner.clone()).prop_map(|(a, i)| format!("[{a}][{i}]")),
            inner.clone().prop_map(|a| format!("str({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("div({a}, {b})")),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(k, v, w)| format!("{{{k}: {v}, \"k\": {w}}}")),
            (name(), inner.clone()).prop_map(|(n, v)| format!("({n} = {v})")),
            call,
        ]
    })
    .boxed()
}

fn stmt() -> impl Strategy<Value = String> {
    stmt_with(expr_calling(&["f", "g"]), false)
}

/// Statements; `return` only `in_fn` (elsewhere it is an error that would
/// stop the program from running at all).
fn stmt_with(expr: BoxedStrategy<String>, in_fn: bool) -> BoxedStrategy<String> {
    let ret = if in_fn { "return" } else { "print" };
    let simple = prop_oneof![
        (name(), expr.clone()).prop_map(|(n, e)| format!("{n} = {e};")),
        (name(), expr.clone()).prop_map(|(n, e)| format!("{n} = {n} + {e};")),
        expr.clone().prop_map(|e| format!("print {e};")),
        expr.clone().prop_map(move |e| format!("{ret} {e};")),
        Just(format!("{ret} 1;")),
        Just("break;".to_owned()),
        Just("continue;".to_owned()),
        Just("require h;".to_owned()),
    ];
    simple
        .prop_recursive(4, 24, 4, move |inner| {
            let body = prop::collection::vec(inner.clone(), 0..4).prop_map(|v| v.join(" "));
            prop_oneof![
                body.clone().prop_map(|b| format!("para {{ {b} }}")),
                body.clone().prop_map(|b| format!("seq {{ {b} }}")),
                (name(), body.clone()).prop_map(|(n, b)| format!("para for {n} in range(3) {{ {b} }}")),
                (name(), body.clone()).prop_map(|(n, b)| format!("for {n} in [1, 2] {{ {b} }}")),
                (expr.clone(), inner.clone(), inner).prop_map(|(c, t, e)| format!("if ({c}) {t} else {e}")),
                body.prop_map(|b| format!("while (false) {{ {b} }}")),
            ]
        })
        .boxed()
}

/// `fn f(...)` calls nothing; `fn g(...)` may call `f`; both take `a` and
/// an optional `k` (sometimes with a default that reads `a`).
fn functions() -> impl Strategy<Value = String> {
    let params = prop::sample::select(vec!["a, k = 1", "a, k = a", "a, k = nil"]);
    let body = |calls: &'static [&'static str]| prop::collection::vec(stmt_with(expr_calling(calls), true), 0..4).prop_map(|v| v.join(" "));
    (params.clone(), body(&[]), params, body(&["f"]), any::<bool>()).prop_map(|(pf, bf, pg, bg, both)| {
        let f = format!("fn f({pf}) {{ {bf} }}");
        if both {
            format!("{f}\nfn g({pg}) {{ {bg} }}")
        } else {
            f
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn resolving_and_running_never_panics(fns in functions(), stmts in prop::collection::vec(stmt(), 0..6)) {
        let src = Source::new("gen.ox", format!("{fns}\n{}", stmts.join("\n")));
        let program = match oxiida::compile(&src, &NoHost) {
            Ok(p) => p,
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                let shown = src.render(&errors, false);
                prop_assert!(shown.contains("gen.ox:"));
                return Ok(());
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let run = oxiida::execute(&program, &NoHost, &Discard, Default::default());
        let done = rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), run).await });
        prop_assert!(done.is_ok(), "the program hung:\n{}", src.text);
    }

    #[test]
    fn resolving_token_soup_never_panics(
        pieces in prop::collection::vec(
            prop::sample::select(vec![
                "a", "b", "=", ";", "para", "for", "in", "{", "}", "(", ")", "[", "]", "print", "require", "f", "break",
                "continue", "if", "else", "while", "true", "1", "+", ",", "=f=", "from", "as", ".", "shell", "seq", "fn",
                "return", "%", ":", "in", "k =", "div",
            ]),
            0..60,
        )
    ) {
        let _ = oxiida::compile(&Source::new("soup.ox", pieces.join(" ")), &NoHost);
    }
}
