//! The oxiida daemon's wire protocol (docs/daemon.md), its paths and a
//! blocking client: everything a client links, and no server or SQLite.
//!
//! [`messages`] are the frames on the socket, [`paths`] where the socket,
//! log and database live, [`client`] the client's end. Errors are typed
//! ([`PathsError`], [`client::ConnectError`], [`client::CallError`],
//! [`client::StopError`]); only the binary turns them into text.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod client;
mod messages;
pub mod paths;

use std::time::{SystemTime, UNIX_EPOCH};

pub use messages::*;
pub use paths::{Paths, PathsError};
/// The bytes type of the messages' binary fields.
pub use serde_bytes::ByteBuf;

/// Workflow states as records and replies spell them.
pub mod state {
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    /// Stopped by `workflow kill`.
    pub const KILLED: &str = "killed";
    /// Stopped because the daemon stopped or died.
    pub const INTERRUPTED: &str = "interrupted";
}

/// Exit statuses, the same as `oxiida run`'s.
pub mod exit {
    pub const RUNTIME: u8 = 1;
    pub const USAGE: u8 = 2;
    /// `daemon status` when no daemon answers.
    pub const NOT_RUNNING: u8 = 3;
    pub const NOT_RUN: u8 = 65;
    pub const INTERRUPTED: u8 = 130;
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `2026-11-26 00:30:13Z` for a time in milliseconds since the epoch.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

/// `1h 02m`, `3m 07s`, `850 ms`.
pub fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms} ms"),
        0..60 => format!("{:.1} s", ms as f64 / 1000.0),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_read_as_utc() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::utc(1_795_653_013_000), "2026-11-26 00:30:13Z");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(super::duration(61_000), "1m 01s");
    }
}
