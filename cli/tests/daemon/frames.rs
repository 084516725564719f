//! Nothing over a frame (big prints, big variables, big records), paging
//! `workflow list`, and the client's environment in its workflows.

use crate::common::text;
use crate::support::*;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use oxiida_protocol::{self as protocol, Reply, Request, Submit, CHUNK, MAX_FRAME};

/// Twelve bytes of one-, two-, three- and four-byte characters, so that a
/// cut every [`CHUNK`] bytes falls inside characters.
const BASE: &str = "ab€é💡x";
/// `BASE` doubled this often: 48 MiB, under the default output limit.
const DOUBLINGS: u32 = 22;

fn big() -> String {
    BASE.repeat(1 << DOUBLINGS)
}

/// A workflow that builds the big string in `s`, then `then`.
fn building(then: &str) -> String {
    format!("s = \"{BASE}\";\ni = 0;\nwhile (i < {DOUBLINGS}) {{ s = s + s; i = i + 1; }}\n{then}\n")
}

/// Every frame of a raw conversation until `until` says it is the last,
/// each checked against the limit as it is read (the reader refuses a
/// longer one).
fn frames_until(s: &mut UnixStream, until: impl Fn(&Reply) -> bool) -> Vec<Reply> {
    let mut all = Vec::new();
    loop {
        let body = protocol::read_frame(s).expect("every frame is within MAX_FRAME").expect("a frame before the end");
        assert!(body.len() <= MAX_FRAME);
        assert!(body.len() <= CHUNK + 1024, "a frame of {} bytes: long fields go in pieces", body.len());
        let reply = protocol::decode_reply(&body).unwrap();
        let last = until(&reply);
        all.push(reply);
        if last {
            return all;
        }
    }
}

fn raw_submit(d: &Daemon, source: String) -> Vec<Reply> {
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let submit = Submit { name: "big.ox".into(), source, wait: true, ..Submit::default() };
    s.write_all(&[hello(), protocol::encode(&Request::Submit(submit))].concat()).unwrap();
    frames_until(&mut s, |r| matches!(r, Reply::Finished { .. } | Reply::Error { .. }))
}

/// The printed text of streamed `output` frames, as a client shows it.
fn printed(replies: &[Reply]) -> String {
    let mut out = String::new();
    for r in replies {
        if let Reply::Output { text, more, .. } = r {
            out.push_str(text);
            if !more {
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn frames_a_48_mib_print_streams_and_shows_in_pieces() {
    let d = Daemon::foreground("frames-print", &[]);
    let want = big();
    d.write("print.ox", &building("print s;\nprint \"after\";"));
    let out = d.run(&["submit", "--wait", "print.ox"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout == format!("{want}\nafter\n").as_bytes(), "submit --wait prints all of it ({} bytes)", out.stdout.len());

    let shown = d.run(&["workflow", "show", "1"]);
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown.stderr));
    assert!(text(&shown.stdout).contains(&format!("--- output ---\n{want}\nafter\n")), "workflow show shows all of it");

    // The same, frame by frame.
    let replies = raw_submit(&d, building("print s;"));
    assert!(replies.iter().filter(|r| matches!(r, Reply::Output { .. })).count() > 48, "{} frames", replies.len());
    assert!(printed(&replies) == format!("{want}\n"), "the pieces join into the value");
    assert!(matches!(replies.last(), Some(Reply::Finished { exit_code: Some(0), .. })));

    let show = [hello(), protocol::encode(&Request::Show { id: 2 })].concat();
    let frames = exchange(&d.socket(), &show, true);
    let all = replies_checked(&frames);
    let mut parts = protocol::Parts::default();
    let mut record = None;
    for r in all.into_iter().skip(1) {
        match r {
            Reply::Part { field, data } => parts.add(field, &data),
            mut other => {
                parts.fill(&mut other).unwrap();
                record = Some(other);
            }
        }
    }
    let Some(Reply::Workflow(record)) = record else { panic!("no record") };
    assert!(record.output == format!("{want}\n"), "the record's output, put back together");
}

/// Frames as `replies` reads them, each checked against the limit.
fn replies_checked(mut bytes: &[u8]) -> Vec<Reply> {
    let mut all = Vec::new();
    while let Some(body) = protocol::read_frame(&mut bytes).expect("every frame is within MAX_FRAME") {
        assert!(body.len() <= CHUNK + 1024, "a frame of {} bytes", body.len());
        all.push(protocol::decode_reply(&body).unwrap());
    }
    all
}

#[test]
fn frames_a_48_mib_variable_comes_back_in_parts() {
    let d = Daemon::foreground("frames-variable", &[]);
    d.write("keep.ox", &building("print \"built\";"));
    let out = d.run(&["submit", "--wait", "keep.ox"]);
    assert_eq!(out.status.code(), Some(0), "a succeeded workflow with a big variable exits 0: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "built\n");

    let replies = raw_submit(&d, building(""));
    let mut parts = protocol::Parts::default();
    let mut end = None;
    for r in replies {
        match r {
            Reply::Part { field, data } => parts.add(field, &data),
            mut r @ Reply::Finished { .. } => {
                parts.fill(&mut r).unwrap();
                end = Some(r);
            }
            _ => {}
        }
    }
    let Some(Reply::Finished { state, variables: Some(bytes), .. }) = end else { panic!("no variables") };
    assert_eq!(state, "succeeded");
    let Ok(oxiida_abi::Value::Map(vars)) = oxiida_abi::Value::decode(&bytes) else { panic!("not a map") };
    let s = vars.iter().find(|(k, _)| k == "s").map(|(_, v)| v).expect("s");
    assert!(matches!(s, oxiida_abi::Value::Str(s) if *s == big()), "s is whole");
}

#[test]
fn frames_a_submission_over_the_limit_is_refused_before_it_is_sent() {
    let d = Daemon::foreground("frames-huge-source", &[]);
    let comment = format!("s = \"{}\";\nprint 1;\n", "x".repeat(MAX_FRAME + 10));
    d.write("huge.ox", &comment);
    let out = d.run(&["submit", "huge.ox"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("16 MiB") && err.contains("nothing was sent") && err.contains("read it from a file"), "{err}");
    let list = text(&d.run(&["workflow", "list"]).stdout);
    assert_eq!(list.lines().count(), 1, "nothing was recorded:\n{list}");
}

/// A daemon on a database of 300 finished workflows, the first submitted
/// ten days ago, one every 48 minutes since.
fn three_hundred(name: &str) -> Daemon {
    let mut d = Daemon::new(name);
    let data = d.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    oxiida_daemon::store::fill(&data.join("workflows.sqlite3"), 300, 10 * 86_400_000).unwrap();
    d.start_foreground(&[]);
    d
}

/// The ids a `workflow list` printed, in order, and its stderr.
fn listed(d: &Daemon, args: &[&str]) -> (Vec<u64>, String) {
    let out = d.run(&[&["workflow", "list"], args].concat());
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
    let ids = text(&out.stdout).lines().skip(1).map(|l| l.split_whitespace().next().unwrap().parse().unwrap()).collect();
    (ids, text(&out.stderr))
}

#[test]
fn frames_list_pages_filters_and_says_how_to_see_more() {
    let d = three_hundred("frames-paging");
    let (ids, err) = listed(&d, &[]);
    assert_eq!(ids, (201..=300).collect::<Vec<_>>(), "the newest 100 by default, newest last");
    assert!(err.contains("100 shown") && err.contains("`oxiida workflow list --before 201`"), "{err}");

    let (ids, err) = listed(&d, &["--limit", "10"]);
    assert_eq!(ids, (291..=300).collect::<Vec<_>>());
    assert!(err.contains("--before 291 --limit 10"), "{err}");
    let (ids, _) = listed(&d, &["--limit", "10", "--before", "291"]);
    assert_eq!(ids, (281..=290).collect::<Vec<_>>(), "the next page");
    let (ids, err) = listed(&d, &["--limit", "10", "--before", "6"]);
    assert_eq!((ids, err.as_str()), ((1..=5).collect::<Vec<_>>(), ""), "the last page says nothing more");

    // States go round succeeded, failed, killed, interrupted, succeeded.
    let (ids, err) = listed(&d, &["--status", "failed", "--limit", "1000"]);
    assert_eq!(ids, (0..60).map(|k| 2 + 5 * k).collect::<Vec<_>>());
    assert_eq!(err, "");
    let (ids, err) = listed(&d, &["--status", "killed", "--limit", "5"]);
    assert_eq!(ids, [278, 283, 288, 293, 298]);
    assert!(err.contains("--before 278 --limit 5 --status killed"), "{err}");
    let (ids, _) = listed(&d, &["--status", "running"]);
    assert!(ids.is_empty());

    // One workflow every 48 minutes: the last day holds the newest 29
    // (the 30th is exactly a day older than the fill, a moment before this).
    let (ids, _) = listed(&d, &["--since", "1d"]);
    assert_eq!(ids, (272..=300).collect::<Vec<_>>());
    let (ids, _) = listed(&d, &["--since", "24h", "--status", "succeeded"]);
    assert_eq!(ids, [275, 276, 280, 281, 285, 286, 290, 291, 295, 296, 300]);
    // The next page keeps the same instant, written out.
    let (ids, err) = listed(&d, &["--since", "1d", "--limit", "20"]);
    assert_eq!(ids, (281..=300).collect::<Vec<_>>());
    let next = err.split('`').nth(1).unwrap_or_else(|| panic!("no next page in {err:?}"));
    assert!(next.starts_with("oxiida workflow list --before 281 --limit 20 --since 20") && next.ends_with('Z'), "{next}");
    let args: Vec<&str> = next.split(' ').skip(3).collect();
    assert_eq!(listed(&d, &args).0, (272..=280).collect::<Vec<_>>());
    // A time as the list prints it can be pasted back.
    let listing = text(&d.run(&["workflow", "list", "--limit", "300"]).stdout);
    let row = listing.lines().find(|l| l.trim_start().starts_with("250 ")).unwrap();
    let submitted = row.split_whitespace().skip(3).take(2).collect::<Vec<_>>().join(" ");
    let (ids, _) = listed(&d, &["--since", &submitted, "--limit", "1000"]);
    assert_eq!(ids, (250..=300).collect::<Vec<_>>(), "since {submitted}");
    let rfc3339 = submitted.replace(' ', "T");
    assert_eq!(listed(&d, &["--since", &rfc3339, "--limit", "1000"]).0.len(), 51);

    for (args, want) in [
        (&["--status", "bogus"][..], "possible values: queued, running, succeeded, failed, killed, interrupted"),
        (&["--since", "yesterday"], "give an age such as `30s`, `10m`, `2h`, `3d` or `1w`"),
        (&["--since", "2026-13-01"], "or a time such as `2026-11-26T00:30:13Z`"),
        (&["--limit", "0"], "0 is not in 1..=10000"),
        (&["--limit", "20000"], "20000 is not in 1..=10000"),
        (&["--before", "abc"], "invalid value 'abc'"),
    ] {
        let out = d.run(&[&["workflow", "list"], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(want), "{args:?}: {}", text(&out.stderr));
    }
    // Over the socket, a state the daemon does not know is a bad request.
    let list = Request::List(protocol::List { state: Some("bogus".into()), ..Default::default() });
    let r = replies(&exchange(&d.socket(), &[hello(), protocol::encode(&list)].concat(), true));
    assert_eq!(error_kind(&r[1]), protocol::ErrorKind::BadRequest);
    let Reply::Error { message, .. } = &r[1] else { unreachable!() };
    assert!(message.contains("use one of queued, running"), "{message}");
}

#[test]
fn frames_a_shell_task_sees_the_submitting_clients_environment() {
    let d = Daemon::foreground("frames-env", &[]);
    d.write("env.ox", "print shell {\"sh\", [\"-c\", \"echo -n \\\"[$OXIIDA_TEST_FROM_CLIENT]\\\"\"]}.stdout;\n");
    let out = d.cmd(&["submit", "--wait", "env.ox"]).env("OXIIDA_TEST_FROM_CLIENT", "set in the client").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[set in the client]\n");

    // With --no-env, the daemon's, which never had it.
    let out = d.cmd(&["submit", "--wait", "--no-env", "env.ox"]).env("OXIIDA_TEST_FROM_CLIENT", "set in the client").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[]\n");

    // A variable the client unset is unset in the workflow too.
    d.write("path.ox", "print shell {\"sh\", [\"-c\", \"echo -n \\\"[${OXIIDA_DATA_DIR-unset}]\\\"\"]}.stdout;\n");
    let out = d.cmd(&["submit", "--wait", "path.ox"]).env_remove("OXIIDA_DATA_DIR").env("OXIIDA_RUNTIME_DIR", d.dir.join("run")).output();
    let out = out.unwrap();
    // The client needs OXIIDA_DATA_DIR only for the log and database
    // paths, which a submit does not open.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[unset]\n");
}
