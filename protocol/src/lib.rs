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
    /// Every state, in the order a workflow goes through them.
    pub const ALL: [&str; 6] = [QUEUED, RUNNING, SUCCEEDED, FAILED, KILLED, INTERRUPTED];
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

/// Days since the epoch of a civil date (Howard Hinnant's days-from-civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time as `workflow list --since` takes it, in milliseconds since the
/// epoch: an age before `now_ms` (`90s`, `10m`, `2h`, `3d`, `1w`), or an
/// RFC 3339 time (`2026-11-26T00:30:13Z`, `2026-11-26 00:30:13+01:00`,
/// fractions of a second allowed; a space for the `T` and a missing
/// offset, read as UTC, let `workflow list`'s own column be pasted), or a
/// date (`2026-11-26`, midnight UTC).
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "cannot read `{text}` as a time: give an age such as `30s`, `10m`, `2h`, `3d` or `1w`, or a time such as `2026-11-26T00:30:13Z` or `2026-11-26`"
        )
    };
    if let Some(unit) = text.chars().last().filter(|c| c.is_ascii_alphabetic()) {
        if let Ok(n) = text[..text.len() - 1].parse::<u32>() {
            let ms: i64 = match unit {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 604_800_000,
                _ => return Err(bad()),
            };
            return Ok(now_ms - i64::from(n) * ms);
        }
    }
    let num = |s: &str| if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) { s.parse::<i64>().ok() } else { None };
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let mut ymd = date.splitn(3, '-');
    let (Some(y), Some(mo), Some(d)) = (ymd.next().and_then(num), ymd.next().and_then(num), ymd.next().and_then(num)) else {
        return Err(bad());
    };
    if date.len() != 10 || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    if let Some(time) = time {
        let (clock, offset_ms) = match time.find(['Z', 'z', '+', '-']) {
            None => (time, 0),
            Some(i) if time[i..].eq_ignore_ascii_case("z") => (&time[..i], 0),
            Some(i) => {
                let sign = if time.as_bytes()[i] == b'-' { -1 } else { 1 };
                let (oh, om) = time[i + 1..].split_once(':').ok_or_else(bad)?;
                let (oh, om) = (num(oh).ok_or_else(bad)?, num(om).ok_or_else(bad)?);
                (&time[..i], sign * (oh * 60 + om) * 60_000)
            }
        };
        let (whole, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let hms: Vec<i64> = whole.split(':').map(num).collect::<Option<_>>().ok_or_else(bad)?;
        let [h, mi, sec] = hms[..] else { return Err(bad()) };
        if h > 23 || mi > 59 || sec > 60 || !(frac.is_empty() || frac.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad());
        }
        let frac_ms = format!("{frac:0<3}")[..3].parse::<i64>().map_err(|_| bad())?;
        ms += ((h * 60 + mi) * 60 + sec) * 1000 + frac_ms - offset_ms;
    }
    Ok(ms)
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

    #[test]
    fn times_are_read_back() {
        use super::parse_time;
        let now = 1_795_653_013_000;
        assert_eq!(parse_time("2026-11-26 00:30:13Z", 0), Ok(now));
        assert_eq!(parse_time("2026-11-26T01:30:13+01:00", 0), Ok(now));
        assert_eq!(parse_time("2026-11-26T00:30:13.5Z", 0), Ok(now + 500));
        assert_eq!(parse_time("2000-02-29", 0), Ok(951_782_400_000));
        assert_eq!(parse_time("10m", now), Ok(now - 600_000));
        assert_eq!(parse_time("3d", now), Ok(now - 3 * 86_400_000));
        for bad in ["", "yesterday", "10x", "2026-13-01", "2026-11-26T25:00:00Z", "-5m"] {
            assert!(parse_time(bad, now).unwrap_err().contains("give an age"), "{bad}");
        }
    }
}
