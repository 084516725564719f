//! Plugins through the command-line tool: the C example plugin (built here
//! with `cc` from `plugins/c/example.c` and `include/oxiida.h` alone), and
//! the refusals for libraries that are not usable plugins.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

mod common;

use common::root;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-plugins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// Compiles C source into `lib{name}.so` in the scratch folder.
fn build(name: &str, source: &Path, defines: &[&str]) -> PathBuf {
    let out = scratch().join(format!("lib{name}.so"));
    let mut args: Vec<&std::ffi::OsStr> = vec!["-shared".as_ref(), "-fPIC".as_ref()];
    args.extend(defines.iter().map(OsStr::new));
    args.extend([source.as_os_str(), "-o".as_ref(), out.as_os_str(), "-lpthread".as_ref()]);
    common::cc(&args);
    out
}

fn build_text(name: &str, text: &str) -> PathBuf {
    let src = scratch().join(format!("{name}.c"));
    std::fs::write(&src, text).unwrap();
    build(name, &src, &[])
}

fn example() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| build("oxiida_example", &root().join("plugins/c/example.c"), &[]))
}

fn run(args: &[&str], workflow: &str) -> Output {
    let file = scratch().join(format!("wf-{}.ox", workflow.len() ^ args.len() << 16 ^ workflow.bytes().map(usize::from).sum::<usize>()));
    std::fs::write(&file, workflow).unwrap();
    Command::new(env!("CARGO_BIN_EXE_oxiida")).args(args).arg(&file).stdin(Stdio::null()).output().expect("oxiida runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn plugin_arg(config: &str) -> String {
    format!("{}{config}", example().display())
}

#[test]
fn values_cross_both_ways() {
    let wf = "require add, greet, sum, stats;\nprint add(1, 2);\nprint add(1, 2.5);\nprint greet(\"world\");\nprint sum([1, 2, 3.5]);\ns = stats([1, 2]);\nprint s;\nprint s.notes[-1];\n";
    let out = run(&["run", "--plugin", &plugin_arg("=Hi")], wf);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "3\n3.5\nHi, world\n6.5\n{\"count\": 2, \"total\": 3.0, \"notes\": [\"min/max not computed\", nil, true]}\ntrue\n"
    );
}

#[test]
fn a_plugin_error_points_at_the_call() {
    let out =
        run(&["run", "--plugin", &plugin_arg("")], "require fail;\nprint \"before\";\nx = 1 + fail(\"bad input\");\nprint \"after\";\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "before\n");
    let err = stderr(&out);
    for want in [":3:9", "ExampleError: bad input", "example.c, function call"] {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }
}

#[test]
fn calls_in_para_overlap() {
    // `rendezvous` returns only while another call is inside it too.
    let out =
        run(&["run", "--plugin", &plugin_arg("")], "require rendezvous;\npara { a = rendezvous(); b = rendezvous(); }\nprint a and b;\n");
    assert_eq!(stdout(&out), "true\n", "{}", stderr(&out));
}

#[test]
fn calls_queue_when_a_plugin_cannot_take_them_at_once() {
    let serial = build("oxiida_serial", &root().join("plugins/c/example.c"), &["-DEXAMPLE_CAPS=0"]);
    let out = run(&["run", "--plugin", serial.to_str().unwrap()], "require inside;\npara for i in range(4) { print inside(); }\n");
    assert_eq!(stdout(&out), "1\n1\n1\n1\n", "{}", stderr(&out));
}

#[test]
fn requires_are_resolved_across_plugins() {
    let other = build("oxiida_other", &root().join("plugins/c/example.c"), &["-DEXAMPLE_NAME=\"other\""]);
    let both = ["run", "--plugin", &plugin_arg(""), "--plugin", other.to_str().unwrap()];
    let ambiguous = run(&both, "require add;\nprint add(1, 1);\n");
    assert_eq!(ambiguous.status.code(), Some(65));
    assert!(stderr(&ambiguous).contains("several plugins provide it (`example`, `other`)"), "{}", stderr(&ambiguous));
    let picked = run(&both, "require add from other;\nprint add(1, 1);\n");
    assert_eq!(stdout(&picked), "2\n", "{}", stderr(&picked));
    let missing = run(&both, "require nope;\nrequire add from lua;\n");
    assert_eq!(missing.status.code(), Some(65));
    let err = stderr(&missing);
    assert!(err.contains("the example plugin has no function `nope`"), "{err}");
    assert!(err.contains("no plugin named `lua` is loaded (loaded: example, other)"), "{err}");
}

#[test]
fn plugins_are_found_by_name_and_listed() {
    example();
    let path = scratch().display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_oxiida")).arg("plugins").env("OXIIDA_PLUGIN_PATH", &path).output().unwrap();
    assert!(stdout(&out).contains(&format!("example\tABI {}\t", oxiida_abi::OXIIDA_ABI_VERSION)), "{}", stdout(&out));
    let file = scratch().join("by-name.ox");
    std::fs::write(&file, "require greet;\nprint greet(\"you\");\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .args(["run", "--plugin", "example=Hey"])
        .arg(&file)
        .env("OXIIDA_PLUGIN_PATH", &path)
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "Hey, you\n", "{}", stderr(&out));
}

#[test]
fn process_calls_need_a_plugin_that_supports_them() {
    let out = run(&["run", "--plugin", &plugin_arg("")], "require add;\nprint =add=(1, 2);\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot run calls in a worker process"), "{}", stderr(&out));
}

#[test]
fn unusable_libraries_are_refused_with_the_reason() {
    let table = |version: &str| {
        format!(
            "#include \"oxiida.h\"\n#include <stdio.h>\nstatic int32_t sn(const char *c, size_t l, void **s, char *e, size_t n) {{ (void)c; (void)l; (void)e; (void)n; *s = 0; return 0; }}\n\
             static void sf(void *s) {{ (void)s; }}\nstatic uint32_t rs(void *s, const char *n, size_t l, char *e, size_t c) {{ (void)s; (void)n; (void)l; (void)e; (void)c; return 0; }}\n\
             static void ca(void *s, const oxiida_message *m, oxiida_reply *r) {{ (void)s; (void)m; (void)r; }}\n\
             static const oxiida_plugin P = {{ {version}, sizeof(oxiida_plugin), \"odd\", 0, sn, sf, rs, ca, NULL, NULL, NULL, NULL }};\n"
        )
    };
    let future = build_text(
        "future",
        &(table("99") + "const oxiida_plugin *oxiida_plugin_init(const oxiida_host *h, char *e, size_t n) { (void)h; (void)e; (void)n; return &P; }\n"),
    );
    let refusing = build_text(
        "refusing",
        &(table("1") + "const oxiida_plugin *oxiida_plugin_init(const oxiida_host *h, char *e, size_t n) { (void)h; snprintf(e, n, \"no licence file\"); return n == 0 ? &P : NULL; }\n"),
    );
    let plain = build_text("plain", "int not_a_plugin(void) { return 1; }\n");
    let garbage = scratch().join("libgarbage.so");
    std::fs::write(&garbage, "this is not an ELF file").unwrap();
    let cases = [
        (future, "built for oxiida ABI version 99, but this oxiida accepts versions 1 to 5"),
        (refusing, "failed to initialise: no licence file"),
        (plain, "is not an oxiida plugin: it does not export `oxiida_plugin_init`"),
        (garbage, "cannot load plugin"),
    ];
    for (lib, want) in cases {
        let out = run(&["run", "--plugin", lib.to_str().unwrap()], "print 1;\n");
        assert_eq!(out.status.code(), Some(2), "{}", lib.display());
        assert!(stdout(&out).is_empty());
        let err = stderr(&out);
        assert!(err.contains(want) && err.lines().count() == 1, "{}: {err}", lib.display());
    }
    let out = run(&["run", "--plugin", "no_such_plugin_anywhere"], "print 1;\n");
    assert!(stderr(&out).contains("no plugin named `no_such_plugin_anywhere` was found"), "{}", stderr(&out));
}

#[test]
fn a_failing_session_start_is_reported() {
    let long = "x".repeat(100);
    let out = run(&["run", "--plugin", &plugin_arg(&format!("={long}"))], "print 1;\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("could not start a session: the greeting is longer than 63 bytes"), "{}", stderr(&out));
}

fn rust_test_plugin() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| common::workspace_plugin("oxiida-test-plugin", "liboxiida_test_plugin.so"))
}

#[test]
fn a_panicking_rust_plugin_gives_an_error_and_the_host_lives_on() {
    use oxiida::Source;
    use oxiida_host as plugin;
    let lib = plugin::load(rust_test_plugin()).expect("the Rust test plugin loads");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let run_here = |src: &str| {
        let host = plugin::PluginHost::new(&[(lib.clone(), String::new())]).unwrap();
        let program = oxiida::compile(&Source::new("t.ox", src), &host).unwrap();
        rt.block_on(oxiida::execute(&program, &host, &oxiida::interp::Stdout, oxiida::Limits::default())).map_err(Box::new)
    };
    let err = run_here("require boom;\nx = boom(1);\n").unwrap_err();
    assert!(err.message.contains("the plugin panicked: boom was called with 1 arguments"), "{}", err.message);
    // Same process, same plugin: later workflows work.
    let vars = run_here("require double;\npara { a = double(21); b = double(1); }\n").unwrap();
    assert_eq!(vars.iter().map(|(_, v)| v.to_string()).collect::<Vec<_>>(), ["42", "2"]);
    let out = run(&["run", "--plugin", rust_test_plugin().to_str().unwrap()], "require double, boom;\nprint double(21);\ny = boom();\n");
    assert_eq!(out.status.code(), Some(1), "a clean workflow error, not an abort");
    assert_eq!(stdout(&out), "42\n");
}

#[test]
fn plugin_handles_go_back_to_their_plugin_and_every_reference_is_released() {
    use oxiida::Source;
    use oxiida_host as plugin;
    let lib = plugin::load(rust_test_plugin()).expect("the Rust test plugin loads");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let run_here = |src: &str| {
        let host = plugin::PluginHost::new(&[(lib.clone(), String::new())]).unwrap();
        let program = oxiida::compile(&Source::new("t.ox", src), &host).unwrap();
        let vars = rt.block_on(oxiida::execute(&program, &host, &oxiida::interp::Stdout, oxiida::Limits::default())).unwrap();
        vars.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    };
    // Two references to one id (the same object twice), one to another; the
    // one rebound away is released at once, the rest when the session ends.
    let during = run_here(
        "require handle, handle_id, refs;\na = handle(701);\nb = handle(701);\nc = [handle(702)];\n\
         d = handle(703);\nd = 0;\nsame = a == b;\nid = handle_id(c[0]);\nr = refs();\n",
    );
    assert!(during.contains("same=true") && during.contains("id=702"), "{during}");
    assert!(during.contains(r#"r={"701": 2, "702": 1}"#), "{during}");
    assert_eq!(run_here("require refs;\nr = refs();\n"), "r={}", "every reference came back when the session ended");
    // Printed as the plugin named its type.
    let out = run(&["run", "--plugin", rust_test_plugin().to_str().unwrap()], "require handle;\nprint [handle(704)];\n");
    assert_eq!(stdout(&out), "[<rust-test Thing>]\n", "{}", stderr(&out));
}

#[test]
fn the_same_plugin_twice_is_an_error_that_names_it() {
    let lua_like = [
        vec!["run".to_owned(), "--plugin".into(), plugin_arg("=Hello"), "--plugin".into(), plugin_arg("=Howdy")],
        vec!["run".to_owned(), "--plugin".into(), plugin_arg(""), "--plugin".into(), plugin_arg("")],
    ];
    for args in lua_like {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, "print 1;\n");
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stdout(&out).is_empty());
        let err = stderr(&out);
        assert!(err.contains("plugin `example` is given twice") && err.lines().count() == 1, "{err}");
    }
}

#[test]
fn what_the_host_sends_a_plugin_decodes_and_what_it_returns_comes_back() {
    let plugin = rust_test_plugin().to_str().unwrap();
    let deep = |levels: usize| format!("require echo;\nx = 1;\ni = 0;\nwhile (i < {levels}) {{ x = [x]; i = i + 1; }}\n");
    // The deepest argument the host sends (the arguments' Array makes 128
    // levels) comes back unchanged, one level deeper it is refused before
    // the plugin sees it, and a result deeper than 128 levels is refused
    // where it is built, never as "a bad value".
    let ok = run(&["run", "--plugin", plugin], &(deep(127) + "print echo(x) == x;\n"));
    assert_eq!(stdout(&ok), "true\n", "{}", stderr(&ok));
    let sent = run(&["run", "--plugin", plugin], &(deep(128) + "y = echo(x);\n"));
    assert_eq!(sent.status.code(), Some(1));
    assert!(stderr(&sent).contains("argument 1 nests Arrays and Maps more than 127 levels"), "{}", stderr(&sent));
    let back = run(&["run", "--plugin", plugin], &(deep(127) + "y = echo(x, 2);\n"));
    assert_eq!(back.status.code(), Some(1));
    let err = stderr(&back);
    assert!(
        err.contains("the result nests Arrays and Maps more than 128 levels")
            && !err.contains("bad value")
            && !err.contains("bad arguments"),
        "{err}"
    );
}

#[test]
fn a_c_plugin_reads_a_keyword_argument() {
    let wf = "require greet;\nprint greet(\"you\", greeting = \"Hi\");\nprint greet(\"you\");\npara { a = greet(\"a\", greeting = \"Yo\"); b = greet(\"b\"); }\nprint a + \" \" + b;\n";
    let out = run(&["run", "--plugin", &plugin_arg("=Hello")], wf);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Hi, you\nHello, you\nYo, a Hello, b\n");
    // What the plugin refuses is an ordinary foreign error at the call.
    let out = run(&["run", "--plugin", &plugin_arg("")], "require greet;\nprint \"before\";\nx = greet(\"you\", greting = \"Hi\");\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "before\n");
    let err = stderr(&out);
    assert!(err.contains(":3:5") && err.contains("greet takes one keyword argument, `greeting`"), "{err}");
}

#[test]
fn keywords_to_a_plugin_that_cannot_read_them_are_refused_before_running() {
    // The same example built without OXIIDA_CAP_KEYWORDS, and built as a
    // plugin of ABI version 2 (before keyword arguments existed).
    let serial = build("oxiida_nokw", &root().join("plugins/c/example.c"), &["-DEXAMPLE_CAPS=0", "-DEXAMPLE_NAME=\"nokw\""]);
    let old = build("oxiida_abi2", &root().join("plugins/c/example.c"), &["-DEXAMPLE_ABI=2", "-DEXAMPLE_NAME=\"old\""]);
    for (lib, want) in [
        (&serial, "plugin `nokw` does not take keyword arguments (it does not declare OXIIDA_CAP_KEYWORDS); pass the values as positional arguments"),
        (&old, "plugin `old` was built for oxiida ABI version 2, which has no keyword arguments (they came in version 3); pass the values as positional arguments, or rebuild the plugin"),
    ] {
        let lib = lib.to_str().unwrap();
        let out = run(&["run", "--plugin", lib], "require greet;\nprint \"before\";\nx = greet(\"you\", greeting = \"Hi\");\n");
        assert_eq!(out.status.code(), Some(65), "{lib}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "nothing runs");
        let err = stderr(&out);
        assert!(err.contains(":3:5") && err.contains(want), "{lib}: {err}");
        // Without keywords, the plugin works as before.
        let out = run(&["run", "--plugin", &format!("{lib}=Hey")], "require greet, add;\nprint greet(\"you\");\nprint add(1, 2);\n");
        assert_eq!(stdout(&out), "Hey, you\n3\n", "{lib}: {}", stderr(&out));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .args(["check", "--plugin", serial.to_str().unwrap()])
        .arg(scratch().join({
            std::fs::write(scratch().join("kw-check.ox"), "require greet;\nx = greet(\"you\", greeting = \"Hi\");\n").unwrap();
            "kw-check.ox"
        }))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "`oxiida check` finds it too: {}", stderr(&out));
    // A name no plugin provides has its one error, not a second about keywords.
    let out = run(&["run", "--plugin", &plugin_arg("")], "require nope;\nx = nope(a = 1);\n");
    assert_eq!(out.status.code(), Some(65));
    assert!(stderr(&out).contains("1 error found") && !stderr(&out).contains("keyword"), "{}", stderr(&out));
}

#[test]
fn keyword_arguments_reach_a_plugin_as_one_map_in_the_order_written() {
    let plugin = rust_test_plugin().to_str().unwrap();
    let out = run(
        &["run", "--plugin", plugin],
        "require echo_kw;\nprint echo_kw(1, [2], zeta = 3, alpha = [4, \"x\"], mid = nil);\nprint echo_kw();\nprint echo_kw(only = true);\n\
         para { a = echo_kw(k = 1); b = echo_kw(k = 2); }\nprint [a, b];\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "[[1, [2]], {\"zeta\": 3, \"alpha\": [4, \"x\"], \"mid\": nil}]\n[[], {}]\n[[], {\"only\": true}]\n\
         [[[], {\"k\": 1}], [[], {\"k\": 2}]]\n"
    );
    // The keywords' Map is a level, as the arguments' Array is: a keyword
    // value may nest 127 levels (the outbound unit test checks the edge;
    // here 126 come back inside echo_kw's two levels), and 128 are refused
    // by name before the plugin sees them.
    let deep = |levels: usize| format!("require echo_kw;\nx = 1;\ni = 0;\nwhile (i < {levels}) {{ x = [x]; i = i + 1; }}\n");
    let ok = run(&["run", "--plugin", plugin], &(deep(126) + "print echo_kw(deep = x)[1][\"deep\"] == x;\n"));
    assert_eq!(stdout(&ok), "true\n", "{}", stderr(&ok));
    let sent = run(&["run", "--plugin", plugin], &(deep(128) + "y = echo_kw(1, deep = x);\n"));
    assert_eq!(sent.status.code(), Some(1));
    assert!(stderr(&sent).contains("keyword argument `deep` nests Arrays and Maps more than 127 levels"), "{}", stderr(&sent));
}
