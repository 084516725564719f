//! `cargo bench --bench list`: a database of 1,000,000 finished workflows
//! (written directly, in one transaction, through the daemon's own schema),
//! a private daemon on it, then the time of whole `oxiida workflow list`
//! calls (a process each: start, connect, one page, print) against the
//! start-up of `oxiida --version` in the same run. Prints figures; asserts
//! nothing (targets live in benches/README.md).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::Daemon;

const RECORDS: u64 = 1_000_000;
const RUNS: usize = 30;

fn oxiida(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxiida"));
    c.args(args).env("OXIIDA_RUNTIME_DIR", dir.join("run")).env("OXIIDA_DATA_DIR", dir.join("data")).current_dir(dir);
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Median and worst of `RUNS` runs, in ms.
fn time(dir: &Path, args: &[&str]) -> (f64, f64) {
    let mut all: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let status = oxiida(dir, args).status().expect("oxiida starts");
            let took = start.elapsed();
            assert!(status.success(), "oxiida {args:?} failed");
            took
        })
        .collect();
    all.sort();
    (all[RUNS / 2].as_secs_f64() * 1e3, all[RUNS - 1].as_secs_f64() * 1e3)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("oxiida-bench-list-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).expect("temp dir");
    let start = Instant::now();
    // A year of workflows, one every 31.5 s.
    oxiida_daemon::store::fill(&dir.join("data/workflows.sqlite3"), RECORDS, 365 * 86_400_000).expect("fill the database");
    println!("{RECORDS} records written in {:.1} s", start.elapsed().as_secs_f64());

    let start = Instant::now();
    let daemon = Daemon(oxiida(&dir, &["daemon", "start", "--foreground"]).spawn().expect("daemon starts"));
    let until = Instant::now() + Duration::from_secs(60);
    while !oxiida(&dir, &["daemon", "status"]).status().is_ok_and(|s| s.success()) {
        assert!(Instant::now() < until, "the daemon did not answer");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("daemon answering on them after {:.2} s", start.elapsed().as_secs_f64());

    let reference = time(&dir, &["--version"]);
    println!("median (worst) of {RUNS} whole CLI calls over {RECORDS} records:");
    println!("  reference: `oxiida --version`                       {:>7.2} ms ({:.2})", reference.0, reference.1);
    for args in [
        &["workflow", "list"][..],
        &["workflow", "list", "--status", "killed"],
        &["workflow", "list", "--since", "3d"],
        &["workflow", "list", "--since", "300d", "--status", "failed"],
        &["workflow", "list", "--before", "500000"],
        &["workflow", "list", "--limit", "10000"],
    ] {
        let (median, worst) = time(&dir, args);
        println!("  `oxiida {:<44} {median:>7.2} ms ({worst:.2})", format!("{}`", args.join(" ")));
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
