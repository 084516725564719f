//! A guard run before parsing. The parser needs several KiB per level of
//! nesting, so a source of nested brackets costs thousands of times its
//! size: a few MiB of `(` took 24 GB before the kernel killed `oxiida run`
//! (and would take a daemon, with every workflow in it, down with it). The
//! resolver refuses more than 200 levels anyway, so refusing far deeper
//! sources early costs no real workflow.

use crate::diagnostic::{Diagnostic, Span, Stage};

/// Deepest nesting the parser is given (brackets, prefix operators, `else if`).
pub const MAX_NESTING: usize = 1000;

/// The first place `source` nests deeper than [`MAX_NESTING`], as a syntax error.
pub fn check(source: &str) -> Result<(), Box<Diagnostic>> {
    let bytes = source.as_bytes();
    let mut brackets = 0usize;
    // Consecutive prefix operators (`- - !x`, `-(-(`), and `else if` links.
    let mut prefixes = 0usize;
    let mut chain = 0usize;
    // Whether the last significant character closed a block: only `else`
    // right after one continues a chain.
    let mut after_close = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let deepest = brackets.max(prefixes).max(chain);
        if deepest > MAX_NESTING {
            let what = if deepest == brackets {
                "brackets"
            } else if deepest == prefixes {
                "prefix operators"
            } else {
                "`else if`s"
            };
            let message = format!("the workflow nests more than {MAX_NESTING} levels deep ({what}); it is not parsed");
            return Err(Box::new(Diagnostic::new(Stage::Syntax, Span::new(i.saturating_sub(1), i), message)));
        }
        if !c.is_ascii_whitespace() && c != b'/' && !(c.is_ascii_alphabetic() || c == b'_') {
            if after_close {
                chain = 0;
            }
            after_close = c == b'}';
        }
        match c {
            b'"' => {
                // Strings end at an unescaped quote or at the line's end.
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                prefixes = 0;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                brackets += 1;
                prefixes += 1;
            }
            b')' | b']' | b'}' => {
                brackets = brackets.saturating_sub(1);
                prefixes = 0;
            }
            b'-' | b'!' => prefixes += 1,
            c if c.is_ascii_whitespace() => {}
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &source[start..i];
                match (after_close, word) {
                    (true, "else") => chain += 1,
                    (true, _) => chain = 0,
                    _ => {}
                }
                after_close = false;
                prefixes = if word == "not" { prefixes + 1 } else { 0 };
                continue;
            }
            _ => prefixes = 0,
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_workflows_pass_and_deep_ones_do_not() {
        let ok = "x = [-1, -2, -3];\nif (x[0] < 0) { print \"((((\"; } else if (true) { print -(-(1)); } // ((((\n";
        assert!(check(ok).is_ok());
        let long_list = format!("x = [{}];", vec!["-1"; 50_000].join(", "));
        assert!(check(&long_list).is_ok(), "width is not depth");
        let chains = "if (a) {} else if (b) {} else {}\n".repeat(5000);
        assert!(check(&chains).is_ok(), "separate chains do not add up");
        let deep = MAX_NESTING + 1;
        for src in [
            format!("x = {}1{};", "(".repeat(deep), ")".repeat(deep)),
            format!("x = {}1;", "- ".repeat(deep)),
            format!("x = {}1;", "-(".repeat(deep / 2 + 1)),
            format!("if (a) {{}} {}", "else if (a) {} ".repeat(deep)),
            "{ x;".repeat(deep),
        ] {
            let err = check(&src).expect_err(&src[..40.min(src.len())]);
            assert!(err.message.contains("levels deep"), "{}", err.message);
        }
    }

    #[test]
    fn every_workflow_in_the_repository_passes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut seen = 0;
        for dir in ["tests/conformance", "examples"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "ox") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    assert!(check(&text).is_ok(), "{}", path.display());
                    seen += 1;
                }
            }
        }
        assert!(seen > 10, "found only {seen} workflows");
    }
}
