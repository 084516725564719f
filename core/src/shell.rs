//! `shell` and `shellpipe` tasks. Each task runs in its own process group so
//! that cancelling it (a failing `para` sibling, Ctrl-C) kills everything it
//! started, not just the first process.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::interp::Context;
use crate::value::{Map, Value};

/// Kills a task's process group when dropped before the task finished.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) has no memory effects; a stale group id at worst
            // gets ESRCH, since the group leader is reaped only after this.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

fn spawn(words: &[String], group: Option<i32>, stdin: Stdio, stderr_note: &str, context: &Context) -> Result<Child, String> {
    let (program, args) = words.split_first().ok_or("a shell task needs a program to run")?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).process_group(group.unwrap_or(0));
    // The run's folder and environment, never the process's changed: two
    // workflows in one process each have their own.
    if let Some(dir) = &context.cwd {
        cmd.current_dir(dir);
    }
    if let Some(env) = &context.env {
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    cmd.spawn().map_err(|e| match &context.cwd {
        Some(dir) => format!("cannot start `{program}`{stderr_note} in {}: {e}", dir.display()),
        None => format!("cannot start `{program}`{stderr_note}: {e}"),
    })
}

fn result_map(stdout: &[u8], stderr: String, status: std::process::ExitStatus) -> Value {
    use std::os::unix::process::ExitStatusExt;
    // Like Python's subprocess: a signal shows as a negative status.
    let code = status.code().or_else(|| status.signal().map(|s| -s)).unwrap_or(-1);
    let mut m = Map::with_capacity(3);
    m.insert("stdout".into(), Value::from(String::from_utf8_lossy(stdout).into_owned()));
    m.insert("stderr".into(), Value::from(stderr));
    m.insert("status".into(), Value::Int(code.into()));
    Value::map(m)
}

/// Where a task's record learns who ran it: `pid N`, set when the
/// process starts (an observed run's; `None` otherwise).
pub(crate) type RanBy<'a> = Option<&'a std::sync::OnceLock<String>>;

fn started(ran_by: RanBy<'_>, child: &Child) {
    if let (Some(ran_by), Some(pid)) = (ran_by, child.id()) {
        let _ = ran_by.set(format!("pid {pid}"));
    }
}

/// `shell {cmd, [args], stdin}`: runs one program, no shell interpretation.
pub async fn run(words: &[String], stdin: Option<&str>, context: &Context, ran_by: RanBy<'_>) -> Result<Value, String> {
    let input = if stdin.is_some() { Stdio::piped() } else { Stdio::null() };
    let mut child = spawn(words, None, input, "", context)?;
    started(ran_by, &child);
    let mut guard = GroupGuard { pgid: child.id().map(|p| p as i32) };
    let pipe = child.stdin.take();
    let feed = async {
        if let (Some(mut pipe), Some(text)) = (pipe, stdin) {
            // A program that exits without reading its input is not an error.
            let _ = pipe.write_all(text.as_bytes()).await;
        }
    };
    let (_, output) = tokio::join!(feed, child.wait_with_output());
    let output = output.map_err(|e| format!("waiting for `{}` failed: {e}", words[0]))?;
    guard.disarm();
    Ok(result_map(&output.stdout, String::from_utf8_lossy(&output.stderr).into_owned(), output.status))
}

/// `shellpipe { "a" | "b" }`: each unit's stdout feeds the next. The value is
/// the last unit's stdout and status; stderr gathers every unit's, in order.
pub async fn pipe(units: &[Vec<String>], context: &Context, ran_by: RanBy<'_>) -> Result<Value, String> {
    let mut children = Vec::with_capacity(units.len());
    let mut guard = GroupGuard { pgid: None };
    let mut input = Stdio::null();
    for (i, words) in units.iter().enumerate() {
        let note = format!(" (unit {} of the shellpipe)", i + 1);
        let mut child = spawn(words, guard.pgid, std::mem::replace(&mut input, Stdio::null()), &note, context)?;
        if guard.pgid.is_none() {
            guard.pgid = child.id().map(|p| p as i32);
            started(ran_by, &child);
        }
        if i + 1 < units.len() {
            let out = child.stdout.take().expect("stdout is piped");
            input = out.try_into().map_err(|e| format!("cannot connect the shellpipe{note}: {e}"))?;
        }
        children.push(child);
    }
    let outputs = futures_util::future::join_all(children.into_iter().map(Child::wait_with_output)).await;
    guard.disarm();
    let mut stderr = String::new();
    let mut last = None;
    for (output, words) in outputs.into_iter().zip(units) {
        let output = output.map_err(|e| format!("waiting for `{}` failed: {e}", words[0]))?;
        stderr.push_str(&String::from_utf8_lossy(&output.stderr));
        last = Some(output);
    }
    let last = last.ok_or("a shellpipe needs at least one unit")?;
    Ok(result_map(&last.stdout, stderr, last.status))
}
