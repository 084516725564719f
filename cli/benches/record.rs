//! `cargo bench --bench record`: what recording tasks costs (docs/durable.md).
//! 10,000 sequential calls to the C example plugin's trivial `add` through
//! `oxiida run`, unrecorded and with `--record` (every task a row in the
//! SQLite store, written by the store's thread in batched transactions), in
//! the same run; and the same with 10,000 trivial shell tasks (`true`).
//! Prints µs per task of recording and the ratio recorded/unrecorded;
//! asserts nothing (target: <= 10 µs per trivial task, or <= 1.2x the
//! unrecorded time for 10,000 trivial calls).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod support;

const TASKS: u64 = 10_000;
const SHELLS: u64 = 2_000;
const RUNS: usize = 5;

/// `fixed`: what recording costs a run with no task at all (opening the
/// database, recording the workflow, closing it), subtracted for the
/// per-task figure.
fn report(what: &str, n: u64, plain: Duration, recorded: Duration, fixed: Duration) {
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("{what} (best of {RUNS}):");
    println!("  unrecorded  {:.3} s  {:.2} µs/task", plain.as_secs_f64(), per(plain));
    println!("  --record    {:.3} s  {:.2} µs/task", recorded.as_secs_f64(), per(recorded));
    println!(
        "  recording adds {:.2} µs/task, {:.2} µs/task without the run's fixed {:.1} ms; ratio recorded/unrecorded {:.2}x (target <= 10 µs/task or <= 1.2x)",
        per(recorded) - per(plain),
        per(recorded.saturating_sub(fixed)) - per(plain),
        fixed.as_secs_f64() * 1e3,
        recorded.as_secs_f64() / plain.as_secs_f64()
    );
}

fn main() {
    let dir = std::env::temp_dir().join(format!("oxiida-bench-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let lib = support::example_plugin(&dir);
    let calls = dir.join("calls.ox");
    std::fs::write(&calls, format!("require add;\ni = 0;\nwhile (i < {TASKS}) {{ i = add(i, 1); }}\nprint i;\n")).unwrap();
    let shells = dir.join("shells.ox");
    std::fs::write(&shells, format!("for i in range({SHELLS}) {{ shell {{\"true\"}}; }}\n")).unwrap();
    let run = |file: &Path, record: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_oxiida"));
        c.arg("run").arg("--plugin").arg(&lib);
        if record {
            c.arg("--record");
        }
        c.arg(file).env("OXIIDA_DATA_DIR", dir.join("data")).env("OXIIDA_RUNTIME_DIR", dir.join("run"));
        c
    };
    let none = dir.join("none.ox");
    std::fs::write(&none, "require add;\nprint 1;\n").unwrap();
    let (mut bare, mut bare_recorded) = (Duration::MAX, Duration::MAX);
    for _ in 0..RUNS {
        bare = bare.min(support::best(1, || run(&none, false)));
        bare_recorded = bare_recorded.min(support::best(1, || run(&none, true)));
    }
    let fixed = bare_recorded.saturating_sub(bare);
    // Interleaved, so that the machine's drift hits both alike.
    let (mut plain, mut recorded) = (Duration::MAX, Duration::MAX);
    for _ in 0..RUNS {
        plain = plain.min(support::best(1, || run(&calls, false)));
        recorded = recorded.min(support::best(1, || run(&calls, true)));
    }
    report(&format!("{TASKS} sequential calls to C `add`"), TASKS, plain, recorded, fixed);
    let (mut plain, mut recorded) = (Duration::MAX, Duration::MAX);
    for _ in 0..RUNS {
        plain = plain.min(support::best(1, || run(&shells, false)));
        recorded = recorded.min(support::best(1, || run(&shells, true)));
    }
    report(&format!("{SHELLS} sequential shell tasks (`true`)"), SHELLS, plain, recorded, fixed);
    let _ = std::fs::remove_dir_all(&dir);
}
