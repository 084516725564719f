//! `cargo bench --bench loop`: the counting loop through the `oxiida` CLI
//! against the same loop in CPython, measured in the same run, the cost of
//! a call of a workflow function (language 0.3) against a call of a Python
//! function, building an Array by `xs = xs + [x]`, and the CLI's start-up
//! time. Prints times and ratios; asserts nothing, because this machine is
//! shared and noisy (targets and figures: benches/README.md).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const N: u64 = 10_000_000;
const RUNS: usize = 5;
const STARTUP_RUNS: usize = 40;
/// Calls of `inc` in the call benchmark.
const CALLS: u64 = 1_000_000;
/// Elements appended one `xs = xs + [x]` at a time.
const APPENDS: u64 = 100_000;

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd.status().expect("benchmark command starts");
    let took = start.elapsed();
    assert!(status.success(), "benchmark command failed: {cmd:?}");
    took
}

fn best(runs: usize, mut make: impl FnMut() -> Command) -> Duration {
    (0..runs).map(|_| time(&mut make())).min().expect("at least one run")
}

fn median(runs: usize, mut make: impl FnMut() -> Command) -> Duration {
    let mut all: Vec<Duration> = (0..runs).map(|_| time(&mut make())).collect();
    all.sort();
    all[runs / 2]
}

fn main() {
    let oxiida = env!("CARGO_BIN_EXE_oxiida");
    let dir = std::env::temp_dir().join(format!("oxiida-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let looped = dir.join("loop.ox");
    let hello = dir.join("hello.ox");
    std::fs::write(&looped, format!("i = 0; while (i < {N}) {{ i = i + 1; }}\n")).expect("write loop.ox");
    std::fs::write(&hello, "print \"hello\";\n").expect("write hello.ox");
    let python_loop = format!("i = 0\nwhile i < {N}:\n    i = i + 1\n");

    let run = |file: &Path| {
        let mut c = Command::new(oxiida);
        c.arg("run").arg(file).stdout(std::process::Stdio::null());
        c
    };
    // `python3` may be a version manager's shell shim; time the interpreter itself.
    let found = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().expect("python3 runs");
    let interpreter = String::from_utf8(found.stdout).expect("a UTF-8 path").trim().to_owned();
    let python = |code: &str| {
        let mut c = Command::new(&interpreter);
        c.arg("-c").arg(code);
        c
    };

    let ox_start = median(STARTUP_RUNS, || run(&hello));
    let py_start = median(STARTUP_RUNS / 4, || python("pass"));
    let ox_loop = best(RUNS, || run(&looped));
    let py_loop = best(RUNS, || python(&python_loop));

    let per_iter = |total: Duration, start: Duration| total.saturating_sub(start).as_nanos() as f64 / N as f64;
    let (ox_ns, py_ns) = (per_iter(ox_loop, ox_start), per_iter(py_loop, py_start));
    println!("counting loop, {N} iterations (best of {RUNS}):");
    println!("  oxiida  {:>9.3} s total  {ox_ns:>6.1} ns/iteration", ox_loop.as_secs_f64());
    println!("  CPython {:>9.3} s total  {py_ns:>6.1} ns/iteration", py_loop.as_secs_f64());
    println!(
        "  ratio oxiida/CPython: {:.2}x per iteration, {:.2}x total (target <= 1.0x)",
        ox_ns / py_ns,
        ox_loop.as_secs_f64() / py_loop.as_secs_f64()
    );
    println!(
        "start-up, median of {STARTUP_RUNS}: `oxiida run hello.ox` {:.2} ms (target <= 5 ms); `python3 -c pass` {:.2} ms",
        ox_start.as_secs_f64() * 1e3,
        py_start.as_secs_f64() * 1e3
    );

    // A call's cost: the same loop with and without the call, so the loop
    // itself and start-up cancel out.
    let called = dir.join("call.ox");
    let inline = dir.join("inline.ox");
    let counting = |body: &str| format!("i = 0; s = 0; while (i < {CALLS}) {{ {body} i = i + 1; }}\n");
    std::fs::write(&called, format!("fn inc(x) {{ return x + 1; }}\n{}", counting("s = inc(s);"))).expect("write call.ox");
    std::fs::write(&inline, counting("s = s + 1;")).expect("write inline.ox");
    let py_counting = |body: &str| format!("def inc(x):\n    return x + 1\ni = 0\ns = 0\nwhile i < {CALLS}:\n    {body}\n    i = i + 1\n");
    let ox_call = best(RUNS, || run(&called));
    let ox_inline = best(RUNS, || run(&inline));
    let py_call = best(RUNS, || python(&py_counting("s = inc(s)")));
    let py_inline = best(RUNS, || python(&py_counting("s = s + 1")));
    let per_call = |with: Duration, without: Duration| with.saturating_sub(without).as_nanos() as f64 / CALLS as f64;
    let (ox_call_ns, py_call_ns) = (per_call(ox_call, ox_inline), per_call(py_call, py_inline));
    println!("function call, {CALLS} calls of `inc(x) {{ return x + 1; }}` minus the same loop without the call (best of {RUNS}):");
    println!("  oxiida  {ox_call_ns:>6.1} ns/call  ({:.3} s with, {:.3} s without)", ox_call.as_secs_f64(), ox_inline.as_secs_f64());
    println!("  CPython {py_call_ns:>6.1} ns/call  ({:.3} s with, {:.3} s without)", py_call.as_secs_f64(), py_inline.as_secs_f64());
    println!("  ratio oxiida/CPython: {:.2}x per call (target <= 2.0x)", ox_call_ns / py_call_ns);

    // `xs = xs + [x]`: in place in oxiida when `xs` is not shared; CPython
    // copies the list each time (quadratic), so it runs once.
    let appended = dir.join("append.ox");
    std::fs::write(&appended, format!("xs = []; i = 0; while (i < {APPENDS}) {{ xs = xs + [i]; i = i + 1; }}\nprint len(xs);\n"))
        .expect("write append.ox");
    let ox_append = best(RUNS, || run(&appended));
    let py_append = best(1, || python(&format!("xs = []\ni = 0\nwhile i < {APPENDS}:\n    xs = xs + [i]\n    i = i + 1\n")));
    println!("building a {APPENDS}-element array with `xs = xs + [x]`:");
    println!("  oxiida  {:>9.3} s (best of {RUNS})", ox_append.as_secs_f64());
    println!("  CPython {:>9.3} s (one run: quadratic)", py_append.as_secs_f64());
    println!("  ratio oxiida/CPython: {:.4}x", ox_append.as_secs_f64() / py_append.as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}
