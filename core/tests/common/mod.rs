//! Helpers shared by the integration tests of every crate: watching
//! processes. The CLI's tests include this file too (`#[path]`).
// Each test binary uses its own subset.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

/// Polls (up to 10 s) until `file` holds some text, and returns it.
pub fn wait_for_file(file: &Path) -> String {
    for _ in 0..400 {
        if let Ok(text) = std::fs::read_to_string(file) {
            if !text.trim().is_empty() {
                return text.trim().to_owned();
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} never appeared", file.display());
}

/// Whether `pid` is alive and not a zombie.
fn running(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.split(") ").nth(1).is_some_and(|s| !s.starts_with('Z'))
}

/// Asserts that `pid` stops running within 5 s (killing is asynchronous).
pub fn assert_stops(pid: i32, what: &str) {
    for _ in 0..200 {
        if !running(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} (pid {pid}) is still running");
}

/// Output bytes as text, for assertions.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
