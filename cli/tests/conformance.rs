//! Runs the project's conformance corpus (`tests/conformance/` at the workspace root)
//! through `oxiida run`, with the rules of the shared `run.sh` (and `.args`,
//! which that script does not know, so cases with inputs live here only):
//!   NAME.out   exact standard output
//!   NAME.exit  expected exit status (default 0)
//!   NAME.err   lines that must each appear somewhere in standard error
//!   NAME.args  more arguments for `oxiida run`, one per line (the program's
//!              inputs: `--input` then `n=5` on the next line)
//! Every failing case is collected, then reported together.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance")
}

/// Waits for `child`, killing it after `TIMEOUT`. Output goes to files, so pipes never fill.
fn wait_with_timeout(child: &mut Child) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for oxiida") {
            return Some(status);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs one case; `Err` explains why it failed.
fn check(dir: &Path, name: &str, scratch: &Path) -> Result<(), String> {
    let read = |ext: &str| fs::read_to_string(dir.join(format!("{name}.{ext}"))).ok();
    let want_exit: i32 = match read("exit") {
        Some(s) => s.trim().parse().map_err(|_| format!("bad {name}.exit: {s:?}"))?,
        None => 0,
    };
    let (out_path, err_path) = (scratch.join(format!("{name}.stdout")), scratch.join(format!("{name}.stderr")));
    let extra: Vec<String> = read("args").unwrap_or_default().lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .args(["run", &format!("{name}.ox")])
        .args(&extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .map_err(|e| format!("cannot start oxiida: {e}"))?;
    let status = wait_with_timeout(&mut child).ok_or("timed out after 60 s, killed")?;
    let stdout = fs::read(&out_path).unwrap();
    let stderr = String::from_utf8_lossy(&fs::read(&err_path).unwrap()).into_owned();

    let got_exit = status.code().map_or(format!("{status}"), |c| c.to_string());
    if got_exit != want_exit.to_string() {
        return Err(format!("exit {got_exit}, wanted {want_exit}\n  stderr: {}", stderr.trim_end()));
    }
    if let Some(want) = read("out") {
        if stdout != want.as_bytes() {
            return Err(format!("stdout differs\n  wanted: {want:?}\n  got:    {:?}", String::from_utf8_lossy(&stdout)));
        }
    }
    for line in read("err").unwrap_or_default().lines().filter(|l| !l.is_empty()) {
        if !stderr.contains(line) {
            return Err(format!("stderr lacks {line:?}\n  stderr: {}", stderr.trim_end()));
        }
    }
    Ok(())
}

#[test]
fn conformance_corpus() {
    let dir = corpus_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.extension()? != "ox" {
                return None;
            }
            Some(path.file_stem()?.to_str()?.to_owned())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 40, "only {} cases in {}", names.len(), dir.display());

    let scratch = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-conformance-{}", std::process::id()));
    fs::create_dir_all(&scratch).unwrap();
    let failures: Vec<String> =
        names.iter().filter_map(|name| check(&dir, name, &scratch).err().map(|why| format!("FAIL {name}: {why}"))).collect();
    let _ = fs::remove_dir_all(&scratch);
    assert!(failures.is_empty(), "{} of {} conformance cases failed:\n{}", failures.len(), names.len(), failures.join("\n"));
}

#[test]
fn missing_file_is_a_usage_error() {
    let status = Command::new(env!("CARGO_BIN_EXE_oxiida"))
        .args(["run", "no/such/file.ox"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("oxiida starts");
    assert_eq!(status.code(), Some(2), "`oxiida run` on a missing file");
}
