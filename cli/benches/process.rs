//! `cargo bench --bench process`: the round trip of a trivial call to a Node.js
//! process plugin (`benches/node_inc.js`, the kit's `serve({ inc })`) through
//! `oxiida run`, against, in the same run, (1) a bare Node MessagePack echo
//! (`benches/node_echo.js`) driven over the same kind of pipes with the same
//! messages, and (2) the physical floor: `cat` echoing the same bytes (a pipe
//! round trip and two context switches, no decoding); and the kit's plugin
//! driven directly as the echo is, which splits the kit's cost from the
//! host's. The workflow loop's own
//! cost, measured without the call, is subtracted. Prints figures, asserts
//! nothing (targets: <= 1.5x the echo, < 30 us per call).

use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CALLS: u64 = 50_000;
const RUNS: usize = 3;

fn best(runs: usize, mut once: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| once()).min().expect("at least one run")
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
    let oxiida = |file: &Path| {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_oxiida")).args(["run", "--plugin", &plugin]).arg(file).output().expect("oxiida runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        start.elapsed()
    };
    let calls = best(RUNS, || oxiida(&with));
    let bare = best(RUNS, || oxiida(&without));
    let per_call = calls.saturating_sub(bare) / CALLS as u32;
    let echo = best(RUNS, || round_trips("node", &[&root.join("benches/node_echo.js")]));
    let floor = best(RUNS, || round_trips("cat", &[]));
    // The kit's own cost: the plugin driven by this bench as the echo is.
    let kit = best(RUNS, || round_trips("node", &[&root.join("benches/node_inc.js")]));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("{CALLS} sequential calls, best of {RUNS}:");
    println!("  oxiida -> Node plugin (kit), per call: {:8.2} us", us(per_call));
    println!("  the kit's plugin driven directly:      {:8.2} us", us(kit));
    println!("  bare Node MessagePack echo, per trip:  {:8.2} us", us(echo));
    println!("  cat (pipe round trip, the floor):      {:8.2} us", us(floor));
    println!("  ratio to the echo: {:.2}x (target <= 1.5x); target < 30 us per call", us(per_call) / us(echo));
    let _ = std::fs::remove_dir_all(&dir);
}
