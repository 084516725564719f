//! `cargo bench --bench loop`: the counting loop through the `oxiida` CLI
//! against the same loop in CPython, measured in the same run, and the
//! CLI's start-up time. Prints times and ratios; asserts nothing, because
//! this machine is shared and noisy (targets and figures: benches/README.md).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const N: u64 = 10_000_000;
const RUNS: usize = 5;
const STARTUP_RUNS: usize = 40;

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
    let _ = std::fs::remove_dir_all(&dir);
}
