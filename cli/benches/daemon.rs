//! `cargo bench --bench daemon`: a private daemon (its own runtime and data
//! folders), then the latency of `oxiida submit --wait` on a one-line
//! workflow, against `oxiida run` of the same file, and the submits per
//! second one daemon sustains from several clients at once, and the memory
//! (PSS) of the daemon and its runners with 100 workflows waiting on a
//! shell. Prints figures;
//! asserts nothing, because this machine is shared and noisy (targets live
//! in benches/README.md).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxiida_protocol::client::Client;
use oxiida_protocol::Paths;
use oxiida_protocol::{Reply, Request, Submit};

mod support;
use support::Daemon;

const LATENCY_RUNS: usize = 100;
const CLIENTS: usize = 8;
const SUBMITS_PER_CLIENT: usize = 100;
const SOCKET_SUBMITS_PER_CLIENT: usize = 1000;
/// Workflows waiting on a `sleep` while memory is measured.
const IDLE_WORKFLOWS: usize = 100;
/// Above IDLE_WORKFLOWS, so that all of them run rather than queue.
const MAX_RUNNING: &str = "128";

/// A process's proportional set size in KiB (`/proc/PID/smaps_rollup`):
/// shared pages split among the processes that map them.
fn pss_kib(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap_or(0)
}

/// The children of every thread of process `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .flat_map(|t| {
            let listed = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            listed.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>()
        })
        .collect()
}

fn oxiida(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxiida"));
    c.env("OXIIDA_RUNTIME_DIR", dir.join("run")).env("OXIIDA_DATA_DIR", dir.join("data")).current_dir(dir);
    c.stdin(Stdio::null()).stdout(Stdio::null());
    c
}

fn time(mut cmd: Command) -> Duration {
    let start = Instant::now();
    let status = cmd.status().expect("benchmark command starts");
    let took = start.elapsed();
    assert!(status.success(), "benchmark command failed: {cmd:?}");
    took
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median, 90th and 99th percentile.
fn spread(mut all: Vec<Duration>) -> (f64, f64, f64) {
    all.sort();
    (ms(all[all.len() / 2]), ms(all[all.len() * 9 / 10]), ms(all[all.len() * 99 / 100]))
}

fn main() {
    let dir = std::env::temp_dir().join(format!("oxiida-bench-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("hello.ox"), "print \"hello\";\n").expect("write hello.ox");
    let daemon = Daemon(
        oxiida(&dir)
            .args(["daemon", "start", "--foreground", "--max-running", MAX_RUNNING])
            .stderr(Stdio::null())
            .spawn()
            .expect("daemon starts"),
    );
    let until = Instant::now() + Duration::from_secs(10);
    while oxiida(&dir).args(["daemon", "status"]).stderr(Stdio::null()).status().map_or(true, |s| !s.success()) {
        assert!(Instant::now() < until, "the daemon did not answer");
        std::thread::sleep(Duration::from_millis(10));
    }

    let run = || {
        let mut c = oxiida(&dir);
        c.args(["run", "hello.ox"]);
        c
    };
    let submit = |wait: bool| {
        let mut c = oxiida(&dir);
        c.arg("submit").args(wait.then_some("--wait")).arg("hello.ox");
        c
    };
    for _ in 0..10 {
        time(submit(true));
    }
    let (wait_med, wait_p90, wait_p99) = spread((0..LATENCY_RUNS).map(|_| time(submit(true))).collect());
    let (run_med, _, _) = spread((0..LATENCY_RUNS).map(|_| time(run())).collect());
    println!("one-line workflow, median of {LATENCY_RUNS} (90th, 99th percentile):");
    println!(
        "  `oxiida submit --wait`  {wait_med:.2} ms ({wait_p90:.2}, {wait_p99:.2} ms)  (target <= 10 ms; a runner process per workflow)"
    );
    println!("  `oxiida run`            {run_med:.2} ms");

    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                for _ in 0..SUBMITS_PER_CLIENT {
                    time(submit(false));
                }
            });
        }
    });
    let total = CLIENTS * SUBMITS_PER_CLIENT;
    let took = start.elapsed();
    println!(
        "{total} submits from {CLIENTS} concurrent clients (one `oxiida submit` process each): {:.0} submits/s ({:.2} s)",
        total as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );

    // The daemon alone, without a process per submit: clients on the
    // socket, each submitting in turn, until every workflow has finished.
    let paths = Paths::at(dir.join("run"), dir.join("data"));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                let mut client = Client::connect(&paths).unwrap_or_else(|_| panic!("connects"));
                for _ in 0..SOCKET_SUBMITS_PER_CLIENT {
                    let submit = Submit { name: "hello.ox".into(), source: "print \"hello\";\n".into(), ..Submit::default() };
                    match client.call(&Request::Submit(submit)) {
                        Ok(Reply::Submitted { .. }) => {}
                        other => panic!("submit failed: {other:?}"),
                    }
                }
            });
        }
    });
    let submitted = start.elapsed();
    let mut client = Client::connect(&paths).unwrap_or_else(|_| panic!("connects"));
    loop {
        match client.call(&Request::Status) {
            Ok(Reply::Status(s)) if s.running.is_empty() => break,
            Ok(Reply::Status(_)) => std::thread::sleep(Duration::from_millis(1)),
            other => panic!("status failed: {other:?}"),
        }
    }
    let finished = start.elapsed();
    let total = CLIENTS * SOCKET_SUBMITS_PER_CLIENT;
    println!(
        "{total} submits over the socket from {CLIENTS} client threads: {:.0} submits/s accepted ({:.2} s), {:.0} workflows/s run to their end ({:.2} s)",
        total as f64 / submitted.as_secs_f64(),
        submitted.as_secs_f64(),
        total as f64 / finished.as_secs_f64(),
        finished.as_secs_f64()
    );

    // Memory: workflows waiting on a shell, each in its runner.
    let daemon_pid = daemon.0.id();
    // Before them: the daemon and its warm runners.
    let idle_kib: u64 = pss_kib(daemon_pid) + children(daemon_pid).iter().map(|&r| pss_kib(r)).sum::<u64>();
    for _ in 0..IDLE_WORKFLOWS {
        let submit = Submit { name: "idle.ox".into(), source: "r = shell {\"sleep\", [\"60\"]};\n".into(), ..Submit::default() };
        match client.call(&Request::Submit(submit)) {
            Ok(Reply::Submitted { .. }) => {}
            other => panic!("submit failed: {other:?}"),
        }
    }
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match client.call(&Request::Status) {
            Ok(Reply::Status(s)) if s.running.iter().filter(|w| w.state == "running").count() == IDLE_WORKFLOWS => break,
            Ok(Reply::Status(_)) => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("status failed: {other:?}"),
        }
        assert!(Instant::now() < until, "the idle workflows never all ran");
    }
    // Their shells have started once each runner has a child.
    let until = Instant::now() + Duration::from_secs(30);
    while children(daemon_pid).iter().filter(|&&r| !children(r).is_empty()).count() < IDLE_WORKFLOWS && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let runners = children(daemon_pid);
    let daemon_kib = pss_kib(daemon_pid);
    let runners_kib: u64 = runners.iter().map(|&r| pss_kib(r)).sum();
    println!(
        "{IDLE_WORKFLOWS} workflows waiting on a shell: daemon PSS {:.1} MiB, daemon plus {} runners {:.1} MiB PSS ({:.1} MiB before them: {:.0} KiB more per workflow)",
        daemon_kib as f64 / 1024.0,
        runners.len(),
        (daemon_kib + runners_kib) as f64 / 1024.0,
        idle_kib as f64 / 1024.0,
        (daemon_kib + runners_kib).saturating_sub(idle_kib) as f64 / IDLE_WORKFLOWS as f64
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
