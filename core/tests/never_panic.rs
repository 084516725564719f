//! The resolver and interpreter never panic: generated programs, mostly
//! well-formed and full of the constructs with the most rules (`para`,
//! `para for`, loops, `break`, `require`), are compiled and, when they
//! compile, run. Errors are fine; panics and hangs are not. The parser has
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

fn expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        name(),
        (-3i64..4).prop_map(|i| i.to_string()),
        Just("2.5".to_owned()),
        Just("\"s\"".to_owned()),
        Just("nil".to_owned()),
        Just("true".to_owned()),
        Just("shell {\"true\"}.status".to_owned()),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), prop::sample::select(vec!["+", "-", "*", "/", "^", "==", "<", "and", "or"]), inner.clone())
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("[{a}, 1]")),
            inner.clone().prop_map(|a| format!("len([{a}])")),
            (inner.clone(), inner.clone()).prop_map(|(a, i)| format!("[{a}][{i}]")),
            inner.clone().prop_map(|a| format!("str({a})")),
            (name(), inner).prop_map(|(n, v)| format!("({n} = {v})")),
        ]
    })
}

fn stmt() -> impl Strategy<Value = String> {
    let simple = prop_oneof![
        (name(), expr()).prop_map(|(n, e)| format!("{n} = {e};")),
        expr().prop_map(|e| format!("print {e};")),
        Just("break;".to_owned()),
        Just("continue;".to_owned()),
        Just("require f;".to_owned()),
    ];
    simple.prop_recursive(4, 24, 4, |inner| {
        let body = prop::collection::vec(inner.clone(), 0..4).prop_map(|v| v.join(" "));
        prop_oneof![
            body.clone().prop_map(|b| format!("para {{ {b} }}")),
            body.clone().prop_map(|b| format!("seq {{ {b} }}")),
            (name(), body.clone()).prop_map(|(n, b)| format!("para for {n} in range(3) {{ {b} }}")),
            (name(), body.clone()).prop_map(|(n, b)| format!("for {n} in [1, 2] {{ {b} }}")),
            (expr(), inner.clone(), inner).prop_map(|(c, t, e)| format!("if ({c}) {t} else {e}")),
            body.prop_map(|b| format!("while (false) {{ {b} }}")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn resolving_and_running_never_panics(stmts in prop::collection::vec(stmt(), 0..6)) {
        let src = Source::new("gen.ox", stmts.join("\n"));
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
                "continue", "if", "else", "while", "true", "1", "+", ",", "=f=", "from", "as", ".", "shell", "seq",
            ]),
            0..60,
        )
    ) {
        let _ = oxiida::compile(&Source::new("soup.ox", pieces.join(" ")), &NoHost);
    }
}
