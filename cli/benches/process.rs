//! `cargo bench --bench process`: the round trip of a trivial call to a Node.js
//! process plugin (`benches/node_inc.js`, the kit's `serve({ inc })`) through
//! `oxiida run`, against, in the same run, (1) a bare Node MessagePack echo
//! (`benches/node_echo.js`) driven over the same kind of pipes with the same
//! messages, and (2) the physical floor: `cat` echoing the same bytes (a pipe
//! round trip and two context switches, no decoding); and the kit's plugin
//! driven directly as the echo is, which splits the kit's cost from the
//! host's; and oxiida with the call's thread reading its own reply (the
//! default) against the reader thread handing it over
//! (`OXIIDA_PROCESS_LEAD_US=0`), runs alternated. The workflow loop's own
//! cost, measured without the call, is subtracted. Prints figures, asserts
//! nothing (targets: <= 1.5x the echo, < 30 us per call). Each figure is the
//! best and the median of the runs: on a loaded machine the best is a lucky run.

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CALLS: u64 = 50_000;
const RUNS: usize = 5;

/// The best and the median of `runs`.
fn spread(mut runs: Vec<Duration>) -> (Duration, Duration) {
    runs.sort();
    (runs[0], runs[runs.len() / 2])
}

fn measure(runs: usize, mut once: impl FnMut() -> Duration) -> (Duration, Duration) {
    spread((0..runs).map(|_| once()).collect())
}

/// A `call` message as the host sends it, for request `id`.
fn call(id: u64) -> Vec<u8> {
    let mut body = Vec::new();
    rmp::encode::write_map_len(&mut body, 5).unwrap();
    for (k, v) in [("type", "call"), ("name", "inc")] {
        rmp::encode::write_str(&mut body, k).unwrap();
        rmp::encode::write_str(&mut body, v).unwrap();
    }
    rmp::encode::write_str(&mut body, "id").unwrap();
    rmp::encode::write_uint(&mut body, id).unwrap();
    rmp::encode::write_str(&mut body, "args").unwrap();
    rmp::encode::write_array_len(&mut body, 1).unwrap();
    rmp::encode::write_sint(&mut body, id as i64).unwrap();
    rmp::encode::write_str(&mut body, "mode").unwrap();
    rmp::encode::write_str(&mut body, "thread").unwrap();
    oxiida_abi::frame::encode(&body)
}

/// Sends `CALLS` frames one at a time to `program`, reading one frame back
/// after each; the time per round trip.
fn round_trips(program: &str, args: &[&Path]) -> Duration {
    let mut child = Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("it starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut run = |n: u64| {
        let start = Instant::now();
        for id in 0..n {
            stdin.write_all(&call(id)).unwrap();
            let body = oxiida_abi::frame::read(&mut stdout, 1 << 20).unwrap().expect("a reply");
            assert!(!body.is_empty());
        }
        start.elapsed()
    };
    run(2_000); // warm up (Node's JIT)
    let took = run(CALLS);
    drop(stdin);
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);
    let _ = child.wait();
    took / CALLS as u32
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(root.join("plugins/node/node_modules/@msgpack/msgpack").is_dir(), "run `npm ci` in plugins/node first (scripts/test.sh does)");
    let dir = std::env::temp_dir().join(format!("oxiida-bench-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let with = dir.join("calls.ox");
    let without = dir.join("loop.ox");
    std::fs::write(&with, format!("require inc;\ni = 0;\nwhile (i < {CALLS}) {{ x = inc(i); i = i + 1; }}\n")).unwrap();
    std::fs::write(&without, format!("require inc;\ni = 0;\nwhile (i < {CALLS}) {{ x = i + 1; i = i + 1; }}\n")).unwrap();
    let plugin = format!("exec:node={}", root.join("benches/node_inc.js").display());
    // `lead`: whether a call alone in its session reads its own reply
    // (the default) or leaves it to the reader thread (OXIIDA_PROCESS_LEAD_US=0).
    let oxiida = |file: &Path, lead: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_oxiida"));
        command.args(["run", "--plugin", &plugin]).arg(file);
        if lead {
            command.env_remove("OXIIDA_PROCESS_LEAD_US");
        } else {
            command.env("OXIIDA_PROCESS_LEAD_US", "0");
        }
        let start = Instant::now();
        let out = command.output().expect("oxiida runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        start.elapsed()
    };
    let load =
        || std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default();
    let load_before = load();
    // Alternated, so both ways meet the same load on a shared machine.
    let (mut led, mut handed, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        led.push(oxiida(&with, true));
        handed.push(oxiida(&with, false));
        bare.push(oxiida(&without, true));
    }
    let bare = spread(bare);
    let per_call = |runs: Vec<Duration>| {
        let (best, median) = spread(runs);
        (best.saturating_sub(bare.0) / CALLS as u32, median.saturating_sub(bare.1) / CALLS as u32)
    };
    let (led, handed) = (per_call(led), per_call(handed));
    let echo = measure(RUNS, || round_trips("node", &[&root.join("benches/node_echo.js")]));
    let floor = measure(RUNS, || round_trips("cat", &[]));
    // The kit's own cost: the plugin driven by this bench as the echo is.
    let kit = measure(RUNS, || round_trips("node", &[&root.join("benches/node_inc.js")]));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("{CALLS} sequential calls, {RUNS} runs (best / median); load average {load_before} before, {} after:", load());
    let row = |what: &str, (best, median): (Duration, Duration)| println!("  {what:<40} {:8.2} / {:8.2} us", us(best), us(median));
    row("oxiida -> Node plugin (kit), per call:", led);
    row("  the reader thread hands it over:", handed);
    row("the kit's plugin driven directly:", kit);
    row("bare Node MessagePack echo, per trip:", echo);
    row("cat (pipe round trip, the floor):", floor);
    println!(
        "  ratio to the echo (best / median): {:.2}x / {:.2}x; handed over {:.2}x / {:.2}x (target <= 1.5x; < 30 us per call)",
        us(led.0) / us(echo.0),
        us(led.1) / us(echo.1),
        us(handed.0) / us(echo.0),
        us(handed.1) / us(echo.1)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
