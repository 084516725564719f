//! The Python plugin through the CLI: `--plugin python=script.py` makes the
//! script's globals the scope; without a script, dotted names import modules.

mod common;

use common::text;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

fn plugin() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| common::workspace_plugin("oxiida-python", "liboxiida_python.so"))
}

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-python-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("script.py"), SCRIPT).unwrap();
        dir
    })
}

const SCRIPT: &str = r#"import threading
barrier = threading.Barrier(2, timeout=10)

def add(a, b):
    return a + b

def describe(x):
    return {"type": type(x).__name__, "tuple": (1, 2.5, None, True, "s"), "nested": [[1], {"k": []}]}

def meet():
    barrier.wait()
    return True

def boom(x):
    raise ValueError(f"bad {x}")

def big():
    return 2 ** 70

def thing():
    return object()

def lock():
    return threading.Lock()

def records(n):
    return [{"i": i, "s": str(i), "t": (i, -i)} for i in range(n)]

def scale(x, factor=2, *, offset=0):
    return x * factor + offset

def keywords(*args, **kwargs):
    return [list(args), list(kwargs.items())]

async def later(x):
    import asyncio
    await asyncio.sleep(0.3)
    return [x, id(asyncio.get_running_loop())]

class Foo:
    def __init__(self):
        self.seen = []

import weakref
tracked = []

def make_foo():
    foo = Foo()
    tracked.append(weakref.ref(foo))
    return foo

def touch(foo, tag):
    foo.seen.append(tag)
    return foo

def same(a, b):
    return a is b

def seen(foo):
    return list(foo.seen)

def alive():
    import gc
    gc.collect()
    return sum(1 for r in tracked if r() is not None)

five = 5

def make_set():
    return {1, 2}

def grow(s):
    s.add(len(s) + 1)
    return s

if __name__ == "__main__":
    print("the script's main part must not run")
"#;

fn run(config: &str, workflow: &str) -> Output {
    common::run_with_plugin(plugin(), config, scratch(), workflow)
}

/// Workers use the interpreter the plugin was built against; it may lack cloudpickle.
fn workers_have_cloudpickle() -> bool {
    Command::new("python3").args(["-c", "import cloudpickle"]).status().is_ok_and(|s| s.success())
}

fn script() -> String {
    format!("={}", scratch().join("script.py").display())
}

#[test]
fn async_functions_are_awaited_on_one_loop_per_session_and_in_workers() {
    let out = run(
        &script(),
        "require later;\npara { a = later(1); b = later(2); }\nprint a[0] + b[0];\nprint a[1] == b[1];\nc = =later=(3);\nprint c[0];\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The same loop for both calls; the worker awaited the third.
    assert_eq!(text(&out.stdout), "3\ntrue\n3\n");
}

#[test]
fn script_functions_are_called_with_values_both_ways() {
    let out = run(
        &script(),
        "require add, describe;\nprint add(1, 2);\nprint add(0.5, 1);\nprint add(\"a\", \"b\");\nprint add([1], [nil]);\nprint describe([1]);\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "3\n1.5\nab\n[1, nil]\n{\"type\": \"list\", \"tuple\": [1, 2.5, nil, true, \"s\"], \"nested\": [[1], {\"k\": []}]}\n"
    );
}

#[test]
fn values_that_cannot_cross_are_clear_errors() {
    let out = run(&script(), "require big;\nx = big();\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot return int from `big`: the int 1180591620717411303424 does not fit in 64 bits"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("bad arguments"), "{}", text(&out.stderr));
    // One that cannot even be pickled is refused as not crossing, not as a pickling failure.
    let out = run(&script(), "require lock;\nx = =lock=();\n");
    assert!(text(&out.stderr).contains("cannot return lock from `lock`: a value of type `lock` cannot cross"), "{}", text(&out.stderr));
}

#[test]
fn objects_with_no_language_form_cross_as_handles_and_come_back_the_same() {
    let out = run(
        &script(),
        "require make_foo, touch, same, seen, make_set, grow, thing;\n\
         f = make_foo();\ng = touch(f, \"a\");\nh = touch(g, \"b\");\nprint same(f, h);\nprint seen(h);\nprint f;\nprint f == h;\n\
         s = grow(grow(grow(make_set())));\nprint s;\nprint [s, {\"t\": thing()}];\nprint same(touch(f, \"c\"), f);\n\
         w = =thing=();\nprint w;\nt = =grow=(s);\nprint t;\nprint same(t, s);\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "true\n[\"a\", \"b\"]\n<python Foo>\ntrue\n<python set>\n[<python set>, {\"t\": <python object>}]\ntrue\n<python object>\n<python set>\nfalse\n"
    );
    // Arithmetic on a handle is a runtime error naming its type.
    let out = run(&script(), "require make_foo;\nf = make_foo();\nx = f + 1;\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("python Foo"), "{}", text(&out.stderr));
}

#[test]
fn a_value_that_is_not_a_function_is_named_with_its_article() {
    let out = run(&script(), "require five;\n");
    assert!(text(&out.stderr).contains("`five` is an int, not a function"), "{}", text(&out.stderr));
}

#[test]
fn handles_are_released_when_the_workflow_drops_them() {
    // The first Foo is dropped when `f` is rebound; the second lives on in `g`.
    let out = run(&script(), "require make_foo, alive;\nf = make_foo();\nprint alive();\nf = 1;\ng = make_foo();\nprint alive();\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n1\n");
}

#[test]
fn a_python_handle_given_to_a_lua_function_is_a_clear_error() {
    let lua = common::workspace_plugin("oxiida-lua", "liboxiida_lua.so");
    let file = scratch().join("to-lua.ox");
    std::fs::write(&file, "require make_foo from python;\nrequire type from lua;\nf = make_foo();\nx = type(f);\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .arg("run")
        .arg("--plugin")
        .arg(format!("{}{}", plugin().display(), script()))
        .arg("--plugin")
        .arg(lua)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot pass <python Foo> to lua function `type`: a handle can only go back to the plugin that made it (python)"),
        "{err}"
    );
}

#[test]
fn exceptions_carry_type_message_and_traceback_at_the_call() {
    let out = run(&script(), "require boom;\nprint \"before\";\nx = 1 + boom(3);\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "before\n");
    let err = text(&out.stderr);
    for want in [":3:9", "ValueError: bad 3", "script.py\", line 15, in boom"] {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }
}

#[test]
fn calls_in_para_overlap() {
    // A two-party barrier: passes only if both calls run at once.
    let out = run(&script(), "require meet;\npara { a = meet(); b = meet(); }\nprint a and b;\n");
    assert_eq!(text(&out.stdout), "true\n", "{}", text(&out.stderr));
}

#[test]
fn without_a_script_dotted_names_import_modules() {
    let out = run("", "require math.sqrt, os.path.join as pjoin, abs;\nprint sqrt(16.0);\nprint pjoin(\"a\", \"b\");\nprint abs(-3);\n");
    assert_eq!(text(&out.stdout), "4.0\na/b\n3\n", "{}", text(&out.stderr));
    let out = run("", "require nosuchmodule.f, math.nope;\n");
    assert_eq!(out.status.code(), Some(65));
    let err = text(&out.stderr);
    assert!(err.contains("`nosuchmodule.f` is not found") && err.contains("`math.nope` is not found"), "{err}");
}

#[test]
fn a_broken_script_is_a_clear_error() {
    std::fs::write(scratch().join("broken.py"), "x = 1\nraise RuntimeError('script failed')\n").unwrap();
    let out = run(&format!("={}", scratch().join("broken.py").display()), "print 1;\n");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("RuntimeError: script failed") && err.contains("broken.py"), "{err}");
}

#[test]
fn process_calls_run_in_worker_processes() {
    let out = run(&script(), "require add;\nprint =add=(1, 2);\npara for i in range(3) { print =add=(i, 0) >= 0; }\n");
    if workers_have_cloudpickle() {
        assert_eq!(text(&out.stdout), "3\ntrue\ntrue\ntrue\n", "{}", text(&out.stderr));
    } else {
        assert_eq!(out.status.code(), Some(1));
        assert!(text(&out.stderr).contains("No module named 'cloudpickle'"), "{}", text(&out.stderr));
    }
}

#[test]
fn keyword_arguments_are_python_keyword_arguments() {
    let out = run(
        &script(),
        "require scale, keywords;\nprint scale(5);\nprint scale(5, factor = 3);\nprint scale(5, offset = 1, factor = 10);\n\
         print keywords(1, b = 2, a = [3]);\npara { x = scale(1, offset = 1); y = scale(2, offset = 2); }\nprint [x, y];\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "10\n15\n51\n[[1], [[\"b\", 2], [\"a\", [3]]]]\n[3, 6]\n");
    // An unexpected keyword is Python's own TypeError, at the call.
    let out = run(&script(), "require scale;\nprint \"before\";\nx = scale(1, factr = 3);\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "before\n");
    let err = text(&out.stderr);
    assert!(err.contains(":3:5") && err.contains("TypeError: scale() got an unexpected keyword argument 'factr'"), "{err}");
}

#[test]
fn process_calls_take_keyword_arguments_too() {
    if !workers_have_cloudpickle() {
        eprintln!("note: the workers' Python lacks cloudpickle; `=f=` with keywords is not tested here");
        return;
    }
    let out = run(
        &script(),
        "require scale, keywords;\nprint =scale=(5, offset = 1);\nprint =scale=(5);\npara for i in range(3) { print =scale=(i, factor = 0, offset = 7); }\n\
         print =keywords=(z = 1, a = 2);\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "11\n10\n7\n7\n7\n[[], [[\"z\", 1], [\"a\", 2]]]\n");
    let out = run(&script(), "require scale;\nx = =scale=(1, factr = 3);\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("TypeError: scale() got an unexpected keyword argument 'factr'"), "{}", text(&out.stderr));
}

#[test]
fn large_process_results_arrive_whole_while_the_worker_still_pickles_them() {
    if !workers_have_cloudpickle() {
        eprintln!("note: the workers' Python lacks cloudpickle; large `=f=` results are not tested here");
        return;
    }
    // Pickles of several MiB: sent in parts as the worker pickles them (a
    // tuple in each record, so they are read as any result is).
    let out = run(
        &script(),
        "require records;\nr = =records=(200000);\nprint len(r);\nprint r[199999];\nprint r[7][\"t\"][1];\n\
         para for n in [150000, 160000] { x = =records=(n); print len(x) >= 150000; }\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "200000\n{\"i\": 199999, \"s\": \"199999\", \"t\": [199999, -199999]}\n-7\ntrue\ntrue\n");
}
