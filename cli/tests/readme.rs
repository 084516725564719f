//! The docs' examples are tests. Every ```oxiida block of README.md and of
//! every docs/*.md runs through the CLI and must print exactly the ```text
//! block that follows it; every ```oxiida-error block must fail, and each
//! line of its ```text block must appear in what it wrote to stderr. After
//! `oxiida`, the info string may hold more `oxiida run` arguments, split on
//! spaces (```oxiida --input n=5 runs with that input). Every
//! relative link in those files (and in ARCHITECTURE.md and benches/README.md)
//! must point to a file that exists, and to a heading of it when it names one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Example {
    /// Where the block starts, as `docs/language.md:12`.
    at: String,
    code: String,
    expect_error: bool,
    expected: String,
    /// More `oxiida run` arguments, from the info string.
    args: Vec<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README.md, then every docs/*.md in name order, as paths relative to the
/// repository root.
fn doc_files() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ is readable").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    docs.insert(0, "README.md".to_owned());
    docs
}

fn read(file: &str) -> String {
    std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Fenced blocks as (info string, body, first line number).
fn fences(text: &str) -> Vec<(String, String, usize)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new(), i + 1)),
            (Some(_), Some("")) => blocks.push(open.take().expect("a block is open")),
            (Some((_, body, _)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

fn examples(file: &str, text: &str) -> Vec<Example> {
    let blocks = fences(text);
    let mut out = Vec::new();
    for (i, (info, code, line)) in blocks.iter().enumerate() {
        let mut words = info.split_whitespace();
        let expect_error = match words.next().unwrap_or_default() {
            "oxiida" => false,
            "oxiida-error" => true,
            _ => continue,
        };
        let expected = match blocks.get(i + 1) {
            Some((next, body, _)) if next == "text" => body.clone(),
            _ => panic!("{file}:{line}: an oxiida example must be followed by a ```text block with its output"),
        };
        let args = words.map(str::to_owned).collect();
        out.push(Example { at: format!("{file}:{line}"), code: code.clone(), expect_error, expected, args });
    }
    out
}

#[test]
fn doc_examples_print_what_the_docs_say() {
    let examples: Vec<Example> = doc_files().iter().flat_map(|file| examples(file, &read(file))).collect();
    assert!(examples.len() >= 10, "the tour should have examples, found {}", examples.len());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for ex in &examples {
        let file = dir.join(format!("{}.ox", ex.at.replace(['/', '.', ':'], "_")));
        std::fs::write(&file, &ex.code).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_oxiida"))
            .arg("run")
            .arg(&file)
            .args(&ex.args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("oxiida runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if ex.expect_error {
            if out.status.success() {
                failures.push(format!("{}: expected an error, but it succeeded", ex.at));
            }
            for want in ex.expected.lines().filter(|l| !l.trim().is_empty()) {
                if !stderr.contains(want.trim()) {
                    failures.push(format!("{}: stderr lacks {want:?}:\n{stderr}", ex.at));
                }
            }
        } else if !out.status.success() || stdout != ex.expected {
            failures.push(format!("{}: status {}, stdout:\n{stdout}\nwanted:\n{}\nstderr:\n{stderr}", ex.at, out.status, ex.expected));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{} doc example(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn docs_c_plugin_compiles_and_runs() {
    let root = root();
    let blocks: Vec<String> = fences(&read("docs/plugins.md"))
        .into_iter()
        .filter(|(info, body, _)| info == "c" && body.contains("oxiida_plugin_init"))
        .map(|(_, body, _)| body)
        .collect();
    assert_eq!(blocks.len(), 1, "docs/plugins.md shows one complete C plugin");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-readme-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("square.c"), &blocks[0]).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .args(["-shared", "-fPIC", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("include"))
        .args(["square.c", "-o", "libsquare.so"])
        .current_dir(&dir)
        .output()
        .expect("a C compiler runs");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    std::fs::write(dir.join("sq.ox"), "require square; print square(12);\nx = square(\"no\");\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .args(["run", "--plugin", "./libsquare.so", "sq.ox"])
        .current_dir(&dir)
        .output()
        .expect("oxiida runs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "144\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("square takes an Int"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The lines of `text` outside fenced blocks, with their line numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            out.push((i + 1, line));
        }
    }
    out
}

/// `line` without its `code spans`, where brackets are not links.
fn without_code(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The anchors GitHub gives a file's headings: lower case, punctuation
/// dropped, spaces as `-`, and `-1`, `-2`... on repeats.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut bases: Vec<String> = Vec::new();
    for (_, line) in prose(text) {
        let Some(title) = line.strip_prefix('#').map(|t| t.trim_start_matches('#')) else { continue };
        if !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let repeats = bases.iter().filter(|b| **b == slug).count();
        seen.push(if repeats == 0 { slug.clone() } else { format!("{slug}-{repeats}") });
        bases.push(slug);
    }
    seen
}

/// The targets of inline links `[text](target)` on `line`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut out = Vec::new();
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].trim().to_owned());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn relative_links_in_the_docs_point_to_what_exists() {
    let root = root();
    let mut files = doc_files();
    files.extend(["ARCHITECTURE.md", "benches/README.md"].map(String::from));
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        let here = root.join(file).parent().expect("a file has a folder").to_path_buf();
        for (line, content) in prose(&text) {
            for target in link_targets(content) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = match target.split_once('#') {
                    Some((path, anchor)) => (path, Some(anchor)),
                    None => (target.as_str(), None),
                };
                let resolved = if path.is_empty() { root.join(file) } else { here.join(path) };
                if !resolved.exists() {
                    broken.push(format!("{file}:{line}: {target}: no such file"));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if resolved.extension().is_some_and(|e| e == "md") {
                    let headings = anchors(&std::fs::read_to_string(&resolved).expect("a linked file is readable"));
                    if !headings.iter().any(|h| h == anchor) {
                        broken.push(format!("{file}:{line}: {target}: no heading has the anchor #{anchor}"));
                    }
                }
            }
        }
    }
    assert!(checked >= 10, "the docs should link to each other, found {checked} relative links");
    assert!(broken.is_empty(), "{} broken link(s):\n{}", broken.len(), broken.join("\n"));
}
