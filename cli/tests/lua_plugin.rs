//! The Lua plugin through the CLI: `--plugin lua=script.lua` makes the
//! script's globals the scope (dotted names index tables); calls in `para`
//! run on different Lua states at once; `=f=` runs on a fresh state.

mod common;

use common::text;

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

fn plugin() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| common::workspace_plugin("oxiida-lua", "liboxiida_lua.so"))
}

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-lua-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("script.lua"), SCRIPT).unwrap();
        std::fs::write(dir.join("helpers.lua"), "return { twice = function(s) return s .. s end }\n").unwrap();
        dir
    })
}

const SCRIPT: &str = r#"local helpers = require("helpers")
counter = 0

function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
function describe(x) return { type = math.type(x) or type(x), list = { 1, 2.5, "s", true }, nested = { { 1 }, { k = {} } } } end
function echo(...) return ... end
function bump() counter = counter + 1; return counter end
function boom(x)
  error("bad " .. tostring(x))
end
function greet(name, opts)
  opts = opts or {}
  return (opts.greeting or "hello") .. ", " .. name .. (opts.mark or "")
end
function count_args(...) return select('#', ...) end
function give_function() return print end
function give_mixed() return { 1, x = 2 } end
function give_hole() return { 1, nil, 3 } end
function give_cycle() local t = {}; t[1] = t; return t end
function give_bytes() return "\xff" end
function make_counter() local n = 0; return function() n = n + 1; return n end end
function tick(c) return c() end
function same(a, b) return rawequal(a, b) end
function first(t) return t[1] end
doubler = setmetatable({}, { __call = function(self, x) return x * 2 end })
five = 5
-- Spins until stopped; unwinding (the hook's error) writes `path`.
function spin(path)
  local mark <close> = setmetatable({}, { __close = function() local f = io.open(path, "w"); f:write("stopped"); f:close() end })
  local f = io.open(path .. ".started", "w"); f:close()
  while true do end
end
tools = { twice = helpers.twice }

-- Each call marks its own file, then waits (up to 10 s) for the other's:
-- both return true only if they ran at the same time.
function meet(mine, other)
  io.open(mine, "w"):close()
  local deadline = os.time() + 10
  while os.time() < deadline do
    local f = io.open(other)
    if f then f:close(); return true end
  end
  return false
end
"#;

fn run(config: &str, workflow: &str) -> Output {
    common::run_with_plugin(plugin(), config, scratch(), workflow)
}

fn script() -> String {
    format!("={}", scratch().join("script.lua").display())
}

#[test]
fn script_functions_are_called_with_values_both_ways() {
    let out = run(
        &script(),
        "require fib, describe, echo, string.upper, tools.twice from lua;\nprint fib(20);\nprint upper(\"abc\") + twice(\"x\");\n\
         print describe(2);\nprint describe(2.0)[\"type\"];\nprint echo(describe(nil));\nprint echo([]);\nprint echo(nil, 1);\n\
         print echo(-9223372036854775807 - 1);\nprint echo(1e308 * 10);\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "6765\nABCxx\n{\"list\": [1, 2.5, \"s\", true], \"nested\": [[1], {\"k\": []}], \"type\": \"integer\"}\nfloat\n\
         {\"list\": [1, 2.5, \"s\", true], \"nested\": [[1], {\"k\": []}], \"type\": \"nil\"}\n[]\nnil\n-9223372036854775808\ninf\n"
    );
}

#[test]
fn values_that_cannot_cross_are_clear_errors_naming_the_function() {
    let out = run(&script(), "require give_bytes;\nx = give_bytes();\n");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("cannot return a string from `give_bytes`: a string that is not valid UTF-8 cannot cross"), "{err}");
    assert!(!err.contains("bad arguments"), "{err}");
}

#[test]
fn functions_and_tables_that_are_not_data_cross_as_handles_and_come_back_the_same() {
    let out = run(
        &script(),
        "require make_counter, tick, same, first, give_function, give_mixed, give_hole, give_cycle, echo;\n\
         c = make_counter();\nprint c;\nprint tick(c);\nprint tick(c);\nprint same(c, echo(c));\nprint same(c, make_counter());\n\
         m = give_mixed();\nprint [m, give_hole(), give_function()];\nprint first(m);\ncy = give_cycle();\nprint same(cy, first(cy));\n\
         para { a = tick(c); b = tick(c); }\nprint a + b;\nprint {\"in\": [c]};\nprint same(echo({\"k\": c})[\"k\"], c);\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "<lua function>\n1\n2\ntrue\nfalse\n[<lua table>, <lua table>, <lua function>]\n1\ntrue\n7\n{\"in\": [<lua function>]}\ntrue\n"
    );
    // What the workflow cannot do with a handle names its type.
    let out = run(&script(), "require make_counter;\nc = make_counter();\nx = c + 1;\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("lua function"), "{}", text(&out.stderr));
    // `=f=` runs on a fresh state, which a handle cannot reach.
    let out = run(&script(), "require make_counter, tick;\nc = make_counter();\nx = =tick=(c);\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`=f=` runs `tick` on a fresh Lua state, which a Lua handle cannot reach"), "{}", text(&out.stderr));
}

#[test]
fn tables_with_call_are_functions_and_other_values_are_named_with_their_article() {
    let out = run(&script(), "require doubler;\nprint doubler(21);\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "42\n");
    let out = run(&script(), "require five;\n");
    assert!(text(&out.stderr).contains("`five` is an integer, not a function"), "{}", text(&out.stderr));
    let out = run(&script(), "require five.x;\n");
    assert!(text(&out.stderr).contains("`five` is an integer, not a table"), "{}", text(&out.stderr));
}

#[test]
fn ctrl_c_stops_a_busy_lua_call_through_the_hook() {
    let mark = scratch().join("spin-mark");
    let started = scratch().join("spin-mark.started");
    let file = scratch().join("spin.ox");
    std::fs::write(&file, format!("require spin;\nx = spin({:?});\n", mark.display().to_string())).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .arg("run")
        .arg("--plugin")
        .arg(format!("{}{}", plugin().display(), script()))
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let begun = std::time::Instant::now();
    while !started.exists() {
        assert!(begun.elapsed() < std::time::Duration::from_secs(30), "the call never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let err = text(&out.stderr);
    // The call (inline, on the workflow's thread) returned: the hook stopped
    // it, its `<close>` ran, and no grace period ran out.
    assert_eq!(std::fs::read_to_string(&mark).unwrap(), "stopped");
    assert!(!err.contains("did not stop within"), "{err}");
}

#[test]
fn invalid_lua_state_counts_are_refused() {
    for bad in ["0", "-1", "abc"] {
        let file = scratch().join(format!("states-{bad}.ox"));
        std::fs::write(&file, "require fib;\nprint fib(3);\n").unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxiida"))
            .arg("run")
            .arg("--plugin")
            .arg(format!("{}{}", plugin().display(), script()))
            .arg(&file)
            .env("OXIIDA_LUA_STATES", bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: a plugin that cannot start is a usage error");
        let err = text(&out.stderr);
        assert!(err.contains(&format!("OXIIDA_LUA_STATES is `{bad}`, not a number of Lua states")), "{bad}: {err}");
    }
}

#[test]
fn lua_errors_carry_message_and_traceback_at_the_call() {
    let out = run(&script(), "require boom;\nprint \"before\";\nx = 1 + boom(3);\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "before\n");
    let err = text(&out.stderr);
    for want in [":3:9", "`boom` raised an error", "script.lua:9: bad 3", "stack traceback:", "script.lua:9: in function 'boom'"] {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }
}

#[test]
fn calls_in_para_run_at_the_same_time_on_different_states() {
    let (a, b) = (scratch().join("meet-a"), scratch().join("meet-b"));
    let out = run(&script(), &format!("require meet;\npara {{ x = meet({a:?}, {b:?}); y = meet({b:?}, {a:?}); }}\nprint x and y;\n"));
    assert_eq!(text(&out.stdout), "true\n", "{}", text(&out.stderr));
}

#[test]
fn globals_are_per_state_and_process_calls_get_a_fresh_one() {
    let out = run(&script(), "require bump;\nprint bump();\nprint bump();\nprint =bump=();\nprint =bump=();\nprint bump();\n");
    assert_eq!(text(&out.stdout), "1\n2\n1\n1\n3\n", "{}", text(&out.stderr));
}

#[test]
fn names_that_are_not_functions_are_resolve_errors() {
    let out = run(&script(), "require nope, math.pi, missing.f from lua;\n");
    assert_eq!(out.status.code(), Some(65));
    let err = text(&out.stderr);
    for want in
        ["`nope` is not defined (it is nil)", "`math.pi` is a number, not a function", "`missing` is nil, so `missing.f` cannot be found"]
    {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }
}

#[test]
fn without_a_script_the_standard_library_is_there() {
    let out = run("", "require string.rep, math.max from lua;\nprint rep(\"ab\", 3);\nprint max(1, 7, 3);\n");
    assert_eq!(text(&out.stdout), "ababab\n7\n", "{}", text(&out.stderr));
}

#[test]
fn a_script_that_fails_to_load_is_a_clear_error_at_session_start() {
    std::fs::write(scratch().join("broken.lua"), "x = 1\nerror('script failed')\n").unwrap();
    let out = run(&format!("={}", scratch().join("broken.lua").display()), "print 1;\n");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("plugin `lua` could not start a session: the script") && err.contains("broken.lua:2: script failed"), "{err}");
    std::fs::write(scratch().join("syntax.lua"), "function f(\n").unwrap();
    let out = run(&format!("={}", scratch().join("syntax.lua").display()), "print 1;\n");
    assert!(text(&out.stderr).contains("syntax.lua:2:"), "{}", text(&out.stderr));
    let out = run(&format!("={}", scratch().join("absent.lua").display()), "print 1;\n");
    assert!(text(&out.stderr).contains("cannot read the script"), "{}", text(&out.stderr));
}

#[test]
fn keyword_arguments_arrive_as_one_extra_final_table() {
    let out = run(
        &script(),
        "require greet, count_args;\nprint greet(\"you\");\nprint greet(\"you\", greeting = \"Hi\", mark = \"!\");\n\
         print count_args(1, 2);\nprint count_args(1, 2, k = 3);\nprint =greet=(\"fresh\", greeting = \"Hey\");\n\
         para { a = greet(\"a\", mark = \"?\"); b = greet(\"b\", greeting = \"Yo\"); }\nprint a + \" \" + b;\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello, you\nHi, you!\n2\n3\nHey, fresh\nhello, a? Yo, b\n");
}
