//! What one workflow may take, and how many run at once (issue 11: one
//! workflow cannot hurt another). The daemon's flags (`--memory-limit`,
//! `--output-limit`, `--max-running`, `--idle-timeout`) parse here, so the
//! CLI and the Python package accept exactly the same values.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::workflow::Running;
use oxiida_protocol::Submit;

/// A runner's address space (`RLIMIT_AS`) unless `--memory-limit` says otherwise.
pub const DEFAULT_MEMORY: u64 = 4 << 30;
/// A workflow's captured output unless `--output-limit` says otherwise.
pub const DEFAULT_OUTPUT: u64 = 64 << 20;
/// Workflows running at once unless `--max-running` says otherwise (and
/// the open-file limit allows it).
pub const DEFAULT_MAX_RUNNING: usize = 64;
/// How long a connection may stay silent between requests.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(300);
/// Descriptors the daemon keeps for itself (database, log, socket, epoll,
/// signals, the watcher) before counting workflows.
const FD_RESERVE: u64 = 64;
/// Descriptors one running workflow holds in the daemon: its runner's
/// socket, the runner's stderr pipe, the child's reaping, the waiting
/// client's connection.
const FDS_PER_WORKFLOW: u64 = 4;

/// The daemon's limits, as given to `daemon start`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_AS` of each runner, in bytes; `None`: no limit.
    pub memory: Option<u64>,
    /// Bytes of a workflow's output kept: the first half and the last half.
    pub output: u64,
    /// Workflows running at once, as asked; see [`Limits::effective_max_running`].
    pub max_running: usize,
    /// A connection silent this long after `hello` is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory: Some(DEFAULT_MEMORY), output: DEFAULT_OUTPUT, max_running: DEFAULT_MAX_RUNNING, idle_timeout: DEFAULT_IDLE }
    }
}

impl Limits {
    /// `--max-running` capped by the open-file budget: at most half of what
    /// the soft `RLIMIT_NOFILE` leaves after the daemon's own goes to
    /// running workflows, the rest to connections (queued workflows'
    /// waiting clients among them). Returns the value and the cap.
    pub fn effective_max_running(&self) -> (usize, Option<usize>) {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one rlimit into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
            return (self.max_running.max(1), None);
        }
        let by_fds = (limit.rlim_cur.saturating_sub(FD_RESERVE) / (2 * FDS_PER_WORKFLOW)).max(1) as usize;
        (self.max_running.clamp(1, by_fds), Some(by_fds))
    }

    /// The flags that give these limits back (for `daemon restart`).
    pub fn to_args(&self) -> Vec<String> {
        vec![
            format!("--memory-limit={}", self.memory.map_or("none".into(), size_arg)),
            format!("--output-limit={}", size_arg(self.output)),
            format!("--max-running={}", self.max_running),
            format!("--idle-timeout={}", self.idle_timeout.as_secs()),
        ]
    }
}

/// `512M`, `4G`, `64MiB`, `1048576` (bytes); K, M, G and T are powers of
/// 1,024. `none` is `None` when `allow_none`.
pub fn parse_size(text: &str, allow_none: bool) -> Result<Option<u64>, String> {
    let t = text.trim();
    if allow_none && t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(size_error(text, allow_none)),
    };
    let n: u64 = number.parse().map_err(|_| size_error(text, allow_none))?;
    match n.checked_mul(1 << shift) {
        Some(0) | None => Err(size_error(text, allow_none)),
        Some(bytes) => Ok(Some(bytes)),
    }
}

fn size_error(text: &str, allow_none: bool) -> String {
    let none = if allow_none { ", or `none` for no limit" } else { "" };
    format!("`{text}` is not a size: give a number of bytes above 0, optionally followed by K, M, G or T (e.g. 512M, 4G){none}")
}

/// `--idle-timeout SECS`: whole seconds, at least 1.
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
        _ => Err(format!("`{text}` is not a number of seconds: give a whole number above 0 (e.g. 300)")),
    }
}

/// `--max-running N`: at least 1.
pub fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a count: give a whole number above 0 (e.g. 64)")),
    }
}

/// A size as people read it: `4 GiB`, `512 MiB`, `1000 bytes`.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64);
    }
    format!("{bytes} bytes")
}

/// A size as [`parse_size`] reads it back.
fn size_arg(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Workflows waiting for a slot, first in first out, and the count of
/// slots taken. One lock: admitting, freeing and killing never race.
pub struct Queue {
    max: usize,
    inner: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    running: usize,
    waiting: VecDeque<(Arc<Running>, Submit)>,
    closed: bool,
}

/// What [`Queue::admit`] decided.
// One per submission, moved once: boxing the submission would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Admitted {
    /// A slot is the workflow's: start it now.
    Start(Arc<Running>, Submit),
    /// It waits for a slot.
    Queued { ahead: usize },
    /// The daemon is stopping.
    Closed(Arc<Running>),
}

impl Queue {
    pub fn new(max: usize) -> Queue {
        Queue { max: max.max(1), inner: Mutex::new(Slots::default()) }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn admit(&self, running: Arc<Running>, submit: Submit) -> Admitted {
        let mut slots = self.inner.lock();
        if slots.closed {
            return Admitted::Closed(running);
        }
        if slots.running < self.max && slots.waiting.is_empty() {
            slots.running += 1;
            return Admitted::Start(running, submit);
        }
        slots.waiting.push_back((running, submit));
        Admitted::Queued { ahead: slots.waiting.len() - 1 }
    }

    /// A running workflow has ended (or failed to start): its slot goes to
    /// the first one waiting, which the caller starts.
    pub fn release(&self) -> Option<(Arc<Running>, Submit)> {
        let mut slots = self.inner.lock();
        slots.running = slots.running.saturating_sub(1);
        if slots.closed || slots.running >= self.max {
            return None;
        }
        let next = slots.waiting.pop_front()?;
        slots.running += 1;
        Some(next)
    }

    /// Takes a waiting workflow out of the queue (it is killed unstarted).
    pub fn remove(&self, id: u64) -> Option<Arc<Running>> {
        let mut slots = self.inner.lock();
        let at = slots.waiting.iter().position(|(w, _)| w.id == id)?;
        slots.waiting.remove(at).map(|(w, _)| w)
    }

    /// Whether workflow `id` waits for a slot.
    pub fn is_queued(&self, id: u64) -> bool {
        self.inner.lock().waiting.iter().any(|(w, _)| w.id == id)
    }

    /// No more starts: the waiting ones, for the daemon to end unstarted.
    pub fn close(&self) -> Vec<Arc<Running>> {
        let mut slots = self.inner.lock();
        slots.closed = true;
        slots.waiting.drain(..).map(|(w, _)| w).collect()
    }
}

/// A printed value, or a piece of one that goes on in the next (`more`):
/// runners send a long print in pieces of at most 1 MiB, so that no frame
/// outgrows the protocol's limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub more: bool,
}

impl Piece {
    pub fn line(text: impl Into<String>) -> Piece {
        Piece { text: text.into(), more: false }
    }

    /// Its bytes in the output: the text, and a newline if it ends a line.
    fn cost(&self) -> usize {
        self.text.len() + usize::from(!self.more)
    }
}

/// A workflow's captured output, bounded: the first half of the limit goes
/// to the record and to waiting clients as it is printed; after that the
/// last half is kept (in memory, at most half the limit plus one piece)
/// and released when the workflow ends, behind one marker line that says
/// how much was cut. Cuts fall on UTF-8 boundaries, across pieces.
pub struct Capture {
    limit: u64,
    /// Bytes the head can still take (a piece that ends a line counts its newline).
    head_left: usize,
    half: usize,
    /// Bytes of `tail.front()` that belong to the head: the piece that
    /// crossed the head's end, kept whole unless something must be cut.
    crossing: usize,
    /// The head's share of the crossing piece, once split off.
    head_piece: Option<String>,
    tail: VecDeque<Piece>,
    tail_bytes: usize,
    cut: u64,
    /// Whether the last piece let through ended mid-line.
    open: bool,
}

impl Capture {
    pub fn new(limit: u64) -> Capture {
        let half = usize::try_from(limit / 2).unwrap_or(usize::MAX);
        Capture { limit, head_left: half, half, crossing: 0, head_piece: None, tail: VecDeque::new(), tail_bytes: 0, cut: 0, open: false }
    }

    /// One printed piece: `Some` to record and forward now, `None` when it
    /// is held (or cut) until the end.
    pub fn push(&mut self, piece: Piece) -> Option<Piece> {
        let cost = piece.cost();
        if self.tail.is_empty() && self.head_piece.is_none() && cost <= self.head_left {
            self.head_left -= cost;
            self.open = piece.more;
            return Some(piece);
        }
        if self.tail.is_empty() && self.head_piece.is_none() && self.head_left > 0 {
            // The piece crossing the head's end: its head share is decided later.
            self.crossing = floor_boundary(&piece.text, self.head_left.saturating_sub(1));
            self.head_left = 0;
        }
        self.tail_bytes += cost;
        self.tail.push_back(piece);
        self.trim();
        None
    }

    fn trim(&mut self) {
        if self.tail_bytes <= self.half + self.crossing {
            return;
        }
        if self.crossing > 0 {
            if let Some(front) = self.tail.front_mut() {
                let rest = front.text.split_off(self.crossing);
                self.head_piece = Some(std::mem::replace(&mut front.text, rest));
                self.tail_bytes -= self.crossing;
            }
            self.crossing = 0;
        }
        while self.tail_bytes > self.half {
            let excess = self.tail_bytes - self.half;
            let Some(front) = self.tail.front_mut() else { break };
            if front.cost() <= excess {
                // The whole piece goes, its newline with it.
                self.cut += front.cost() as u64;
                self.tail_bytes -= front.cost();
                self.tail.pop_front();
            } else {
                let at = ceil_boundary(&front.text, excess);
                front.text.drain(..at);
                self.cut += at as u64;
                self.tail_bytes -= at;
            }
        }
    }

    /// How many bytes were cut so far.
    pub fn cut(&self) -> u64 {
        self.cut
    }

    /// What was held, in order, when the workflow ends: the head's share of
    /// the crossing piece, the marker on a line of its own (if anything was
    /// cut), the tail.
    pub fn finish(self) -> Vec<Piece> {
        let mut out = Vec::with_capacity(self.tail.len() + 3);
        let open = self.open || self.head_piece.is_some();
        out.extend(self.head_piece.map(|text| Piece { text, more: true }));
        if self.cut > 0 {
            if open {
                out.push(Piece::line(""));
            }
            out.push(Piece::line(format!(
                "[oxiida: {} bytes of output cut here: the daemon keeps a workflow's first and last {} (--output-limit {})]",
                self.cut,
                format_size(self.limit / 2),
                format_size(self.limit)
            )));
        }
        out.extend(self.tail);
        out
    }
}

/// The last char boundary at or before `at`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The first char boundary at or after `at` (or the end).
fn ceil_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_back() {
        assert_eq!(parse_size("512M", true), Ok(Some(512 << 20)));
        assert_eq!(parse_size("4G", false), Ok(Some(4 << 30)));
        assert_eq!(parse_size("64MiB", false), Ok(Some(64 << 20)));
        assert_eq!(parse_size("1000", false), Ok(Some(1000)));
        assert_eq!(parse_size("none", true), Ok(None));
        assert!(parse_size("none", false).is_err());
        assert!(parse_size("0", true).is_err());
        assert!(parse_size("12X", true).unwrap_err().contains("e.g. 512M"));
        assert_eq!(format_size(4 << 30), "4 GiB");
        assert_eq!(format_size(1000), "1000 bytes");
        let limits = Limits { memory: Some(512 << 20), output: 1000, max_running: 3, idle_timeout: Duration::from_secs(9) };
        assert_eq!(limits.to_args(), ["--memory-limit=512M", "--output-limit=1000", "--max-running=3", "--idle-timeout=9"]);
    }

    #[test]
    fn the_queue_is_first_in_first_out_and_closes() {
        let w = |id| Arc::new(Running::new(id, format!("w{id}"), 0));
        let q = Queue::new(1);
        assert!(matches!(q.admit(w(1), Submit::default()), Admitted::Start(..)));
        assert!(matches!(q.admit(w(2), Submit::default()), Admitted::Queued { ahead: 0 }));
        assert!(matches!(q.admit(w(3), Submit::default()), Admitted::Queued { ahead: 1 }));
        assert!(matches!(q.admit(w(4), Submit::default()), Admitted::Queued { ahead: 2 }));
        assert!(q.is_queued(3) && q.remove(3).is_some() && !q.is_queued(3));
        // Workflow 1 ends: its slot goes to 2, the first waiting.
        assert_eq!(q.release().map(|(w, _)| w.id), Some(2));
        let left: Vec<u64> = q.close().iter().map(|w| w.id).collect();
        assert_eq!(left, [4]);
        assert!(q.release().is_none());
        assert!(matches!(q.admit(w(5), Submit::default()), Admitted::Closed(..)));
    }

    #[test]
    fn output_under_the_limit_passes_whole() {
        let mut c = Capture::new(100);
        let lines: Vec<Piece> = (0..10).map(|i| Piece { text: format!("line {i}"), more: i % 3 == 0 }).collect();
        let passed: Vec<Piece> = lines.iter().filter_map(|l| c.push(l.clone())).collect();
        let all: Vec<Piece> = passed.into_iter().chain(c.finish()).collect();
        assert_eq!(all, lines);
    }

    #[test]
    fn output_over_the_limit_keeps_head_marker_and_tail_on_char_boundaries() {
        let mut c = Capture::new(20);
        let mut passed = Vec::new();
        for chunk in ["héllo", "wörld-wörld", "ééééééééééééééééééé", "end"] {
            passed.extend(c.push(Piece::line(chunk)).map(|p| p.text));
        }
        let cut = c.cut();
        let rest: Vec<String> = c.finish().into_iter().map(|p| p.text).collect();
        assert_eq!(passed, ["héllo"]);
        assert!(cut > 0);
        assert!(rest.iter().any(|l| l.contains(&format!("{cut} bytes of output cut here"))), "{rest:?}");
        assert_eq!(rest.last().unwrap(), "end");
        let kept: usize =
            passed.iter().chain(rest.iter().filter(|l| !l.is_empty() && !l.starts_with("[oxiida"))).map(|l| l.len() + 1).sum();
        // The line split at the head's end gains one newline.
        assert!(kept <= 21, "{rest:?}");
        let total: usize = ["héllo", "wörld-wörld", "ééééééééééééééééééé", "end"].iter().map(|l| l.len() + 1).sum();
        assert!((total..=total + 1).contains(&(kept + cut as usize)), "{kept} + {cut} vs {total}");
    }

    #[test]
    fn a_print_in_pieces_is_cut_like_a_line_and_the_marker_gets_a_line_of_its_own() {
        // One 100-byte print in pieces of 10, under a limit of 40.
        let mut c = Capture::new(40);
        let pieces: Vec<Piece> = (0..10).map(|i| Piece { text: format!("{i}{}", "x".repeat(9)), more: i < 9 }).collect();
        let passed: Vec<Piece> = pieces.iter().filter_map(|p| c.push(p.clone())).collect();
        assert_eq!(passed, pieces[..2], "the head: 20 bytes, no newline yet");
        let cut = c.cut();
        let rest = c.finish();
        let text: String = passed.iter().chain(&rest).map(|p| format!("{}{}", p.text, if p.more { "" } else { "\n" })).collect();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "head, marker, tail: {text:?}");
        assert!(lines[0].starts_with("0xxxxxxxxx1xxxxxxxxx") && lines[1].contains(&format!("{cut} bytes of output cut")), "{text:?}");
        assert!(lines[2].ends_with("9xxxxxxxxx") && lines[2].len() <= 20, "{text:?}");
        assert_eq!(lines[0].len() + lines[2].len() + cut as usize, 100);
    }
}
