//! The foreign-call seam, proven with a host written in Rust: `require`,
//! calls in `seq` and `para`, `=f=`, dotted names, aliases, `from`, failing
//! calls, cancellation, bounded fan-out and two workflows in one process.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxiida::foreign::{CallFuture, CallMode, ForeignError, ForeignErrorKind, ForeignName, Host};
use oxiida::value::Value;
use oxiida::{Diagnostic, Limits, Output, Source, Stage};

#[derive(Default)]
struct State {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// `gate` calls return only once two of them wait at the same time.
    gate: tokio::sync::Notify,
    gate_waiting: AtomicUsize,
    dropped_unfinished: AtomicUsize,
    inline_calls: AtomicUsize,
    calls: Mutex<Vec<(String, CallMode)>>,
    /// Every name `Host::keywords` was asked about, in order.
    keyword_asks: Mutex<Vec<String>>,
    /// How many of `lazy`'s results were made.
    lazy_made: AtomicUsize,
}

/// Counts a call as in flight until dropped, noting drops before the end.
struct InFlight {
    state: Arc<State>,
    finished: bool,
}

impl InFlight {
    fn new(state: &Arc<State>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight { state: state.clone(), finished: false }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.state.dropped_unfinished.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[derive(Default, Clone)]
struct TestHost {
    state: Arc<State>,
}

const FUNCTIONS: &[&str] = &["add", "math.sqrt", "mode", "fail", "gate", "slow", "hang", "echo", "kw", "lazy"];

impl Host for TestHost {
    fn resolve(&self, name: &ForeignName) -> Result<(), String> {
        if let Some(from) = &name.from {
            if from != "test" {
                return Err(format!("no plugin named `{from}` is loaded"));
            }
        }
        if FUNCTIONS.contains(&name.dotted().as_str()) {
            Ok(())
        } else {
            Err("the test host has no such function".into())
        }
    }

    /// Only `kw` takes keyword arguments.
    fn keywords(&self, name: &ForeignName) -> Result<(), String> {
        self.state.keyword_asks.lock().unwrap().push(name.dotted());
        if name.dotted() == "kw" {
            Ok(())
        } else {
            Err(format!("the test host's `{}` takes no keywords", name.dotted()))
        }
    }

    fn call_here(
        &self,
        name: &ForeignName,
        args: &[Value],
        _keywords: &[(std::sync::Arc<str>, Value)],
        _mode: CallMode,
    ) -> Option<Result<Value, ForeignError>> {
        let (Value::Int(a), Value::Int(b)) = (args.first()?, args.get(1)?) else { return None };
        (name.dotted() == "add").then(|| {
            self.state.inline_calls.fetch_add(1, Ordering::SeqCst);
            Ok(Value::Int(a + b))
        })
    }

    fn call(&self, name: &ForeignName, args: Vec<Value>, keywords: oxiida::foreign::Keywords, mode: CallMode) -> CallFuture {
        let state = self.state.clone();
        let name = name.dotted();
        state.calls.lock().unwrap().push((name.clone(), mode));
        Box::pin(async move {
            let mut flight = InFlight::new(&state);
            let result = match name.as_str() {
                "add" => match (&args[0], &args[1]) {
                    (Value::Int(a), Value::Int(b)) => Ok(Value::Int(a + b)),
                    _ => Err(ForeignError::new(ForeignErrorKind::BadArguments, "add takes two Ints")),
                },
                "math.sqrt" => match args[0] {
                    Value::Float(x) => Ok(Value::Float(x.sqrt())),
                    _ => Err(ForeignError::new(ForeignErrorKind::BadArguments, "sqrt takes a Float")),
                },
                "mode" => Ok(Value::str(if mode == CallMode::Process { "process" } else { "thread" })),
                "echo" => Ok(args.into_iter().next().unwrap_or_default()),
                // What arrived: the positional arguments, then `name=value` in order.
                "kw" => {
                    let mut seen: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                    seen.extend(keywords.iter().map(|(k, v)| format!("{k}={v}")));
                    Ok(Value::from(format!("{mode:?}: {}", seen.join(" "))))
                }
                "fail" => Err(ForeignError::new(ForeignErrorKind::Raised, "ValueError: bad input")
                    .with_traceback("Traceback (most recent call last):\n  File \"script.py\", line 3, in fail")),
                "gate" => {
                    // Proof of overlap that does not depend on timing.
                    if state.gate_waiting.fetch_add(1, Ordering::SeqCst) + 1 >= 2 {
                        state.gate.notify_waiters();
                    } else if tokio::time::timeout(Duration::from_secs(20), state.gate.notified()).await.is_err() {
                        return Err(ForeignError::new(ForeignErrorKind::Internal, "gate: the other call never came"));
                    }
                    Ok(args.into_iter().next().unwrap_or_default())
                }
                "slow" => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok(Value::Nil)
                }
                "hang" => std::future::pending().await,
                // [1, 2, 3], made only when the workflow reads it.
                "lazy" => Ok(Value::Handle(Arc::new(oxiida::value::Handle::lazy("test", "list", Box::new(state.clone()), |payload| {
                    let state = payload.downcast_ref::<Arc<State>>().expect("the payload given above");
                    state.lazy_made.fetch_add(1, Ordering::SeqCst);
                    Value::array(vec![Value::Int(1), Value::Int(2), Value::Int(3)])
                })))),
                _ => Err(ForeignError::new(ForeignErrorKind::NotFound, "unknown")),
            };
            flight.finished = true;
            result
        })
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl Output for Collect {
    fn print(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_owned());
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

type Outcome = (Vec<String>, Result<oxiida::Variables, Diagnostic>);

async fn run_with<H: Host>(host: &H, src: &str, limits: Limits) -> Outcome {
    let program = oxiida::compile(&Source::new("test.ox", src), host).unwrap_or_else(|e| panic!("compile errors: {e:?}"));
    let out = Collect::default();
    let result =
        tokio::time::timeout(Duration::from_secs(30), oxiida::execute(&program, host, &out, limits)).await.expect("the workflow finished");
    let lines = out.0.lock().unwrap().clone();
    (lines, result)
}

fn run(host: &TestHost, src: &str) -> Outcome {
    runtime().block_on(run_with(host, src, Limits::default()))
}

fn compile_errors(src: &str) -> Vec<Diagnostic> {
    oxiida::compile(&Source::new("test.ox", src), &TestHost::default()).expect_err("should not compile")
}

#[test]
fn required_functions_are_called_in_sequence() {
    let host = TestHost::default();
    let (out, result) = run(&host, "require add;\nx = add(1, 2);\nprint add(x, 10);");
    assert_eq!(out, ["13"]);
    assert_eq!(result.unwrap(), [(Arc::from("x"), Value::Int(3))]);
    assert_eq!(host.state.calls.lock().unwrap().len(), 2);
}

#[test]
fn calls_in_para_overlap() {
    let host = TestHost::default();
    let (out, result) = run(&host, "require gate;\npara {\n  a = gate(1);\n  b = gate(2);\n}\nprint a + b;");
    result.unwrap();
    assert_eq!(out, ["3"]);
    assert_eq!(host.state.max_in_flight.load(Ordering::SeqCst), 2);
}

#[test]
fn process_calls_use_process_mode() {
    let host = TestHost::default();
    let (out, result) = run(&host, "require mode;\nprint =mode=();\nprint mode();\nx = =mode=();\nprint x;");
    result.unwrap();
    assert_eq!(out, ["process", "thread", "process"]);
}

#[test]
fn dotted_names_aliases_and_from() {
    let host = TestHost::default();
    let src = "require math.sqrt;\nrequire math.sqrt as root, add from test;\nprint sqrt(16.0);\nprint root(9.0);\nprint add(1, 1);";
    let (out, result) = run(&host, src);
    result.unwrap();
    assert_eq!(out, ["4.0", "3.0", "2"]);
    assert_eq!(host.state.calls.lock().unwrap()[0], ("math.sqrt".to_string(), CallMode::Thread));
}

#[test]
fn requires_that_no_host_provides_are_reported_together() {
    let errors = compile_errors("require nothere;\nrequire add from lua;\nprint 1;");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.stage == Stage::Resolve));
    assert!(errors[0].message.contains("nothere"));
    assert!(errors[1].message.contains("lua") && errors[1].label.as_deref().unwrap().contains("lua"));
}

#[test]
fn keyword_arguments_reach_the_host_in_written_order() {
    let host = TestHost::default();
    let src = "require kw;\nx = 5;\nprint kw(1, x, steps = x * 2, name = \"Si\", a = [1]);\nprint =kw=(tol = 0.5);\nprint kw();";
    let (lines, result) = run(&host, src);
    result.unwrap();
    assert_eq!(lines, ["Thread: 1 5 steps=10 name=Si a=[1]", "Process: tol=0.5", "Thread: "]);
    assert_eq!(*host.state.keyword_asks.lock().unwrap(), ["kw"], "asked once per name, before running");
}

#[test]
fn keywords_a_host_refuses_are_errors_at_each_call_before_running() {
    let host = TestHost::default();
    let src = "require echo, kw;\nprint \"never\";\necho(1, k = 2);\n=echo=(1, k = 2);\nkw(a = 1, a = 2);\nlen([1], x = 2);";
    let errors = oxiida::compile(&Source::new("test.ox", src), &host).expect_err("should not compile");
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "`echo` cannot take keyword arguments here",
            "`echo` cannot take keyword arguments here",
            "keyword argument `a` is given twice",
            "builtins take no keyword arguments, and `x` is given to len()",
        ]
    );
    assert_eq!(errors[0].label.as_deref(), Some("the test host's `echo` takes no keywords"));
    assert_eq!(errors[0].span.start, src.find("echo(1").unwrap());
    assert!(errors.iter().all(|e| e.hint.is_some()));
    assert_eq!(*host.state.keyword_asks.lock().unwrap(), ["echo", "kw"], "asked once per name");
}

#[test]
fn the_default_host_refuses_keywords() {
    struct Plain;
    impl Host for Plain {
        fn resolve(&self, _: &ForeignName) -> Result<(), String> {
            Ok(())
        }
        fn call(&self, _: &ForeignName, _: Vec<Value>, _: oxiida::foreign::Keywords, _: CallMode) -> CallFuture {
            Box::pin(async { Ok(Value::Nil) })
        }
    }
    let errors = oxiida::compile(&Source::new("t.ox", "require f;\nf(1);\nf(k = 1);"), &Plain).expect_err("refused");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].label.as_deref().unwrap().contains("does not pass keyword arguments"), "{errors:?}");
}

#[test]
fn misuse_of_required_names_is_found_before_running() {
    let errors = compile_errors("require add;\nadd = 1;\nprint add;\nprint nope(1);\nrequire echo;\nrequire echo;\nrequire len;");
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(errors.len(), 5, "{messages:?}");
    assert!(messages[0].contains("cannot assign to `add`"));
    assert!(messages[1].contains("`add` is a required function"));
    assert!(messages[2].contains("`nope`"));
    assert!(messages[3].contains("already required"));
    assert!(messages[4].contains("builtin"));
}

#[test]
fn a_failing_call_is_reported_at_its_span_with_the_traceback() {
    let host = TestHost::default();
    let src = "require fail;\nx = 1;\ny = fail(x);\nprint \"not reached\";";
    let (out, result) = run(&host, src);
    let err = result.unwrap_err();
    assert!(out.is_empty());
    assert_eq!(err.stage, Stage::Runtime);
    assert_eq!(&src[err.span.start..err.span.end], "fail(x)");
    assert!(err.message.contains("ValueError: bad input"), "{}", err.message);
    assert!(err.notes.iter().any(|n| n.contains("script.py")), "{:?}", err.notes);
    let shown = Source::new("test.ox", src).render(&[err], false);
    assert!(shown.contains("test.ox:3:5"), "{shown}");
}

#[test]
fn a_failing_branch_cancels_its_siblings() {
    let host = TestHost::default();
    let (out, result) = run(&host, "require fail, hang;\npara {\n  a = hang();\n  b = fail(1);\n}\nprint \"not reached\";");
    assert!(result.unwrap_err().message.contains("ValueError"));
    assert!(out.is_empty());
    assert_eq!(host.state.in_flight.load(Ordering::SeqCst), 0, "nothing keeps running");
    assert_eq!(host.state.dropped_unfinished.load(Ordering::SeqCst), 1, "the hanging call was cancelled");
}

#[test]
fn cancelled_shell_tasks_are_killed_with_their_children() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let pidfile = pidfile.display();
    let sleeper = format!("sleep 60 & echo $! > {pidfile}; wait");
    let waiter = format!("while [ ! -s {pidfile} ]; do sleep 0.01; done");
    let src = format!(
        "require fail;\npara {{\n  r = shell {{\"sh\", [\"-c\", {sleeper:?}]}};\n  seq {{ w = shell {{\"sh\", [\"-c\", {waiter:?}]}}; y = fail(1); }}\n}}"
    );
    let (_, result) = run(&TestHost::default(), &src);
    assert!(result.unwrap_err().message.contains("ValueError"));
    let pid: i32 = common::wait_for_file(&dir.join("pid")).parse().unwrap();
    // The grandchild `sleep` dies with its task's process group.
    common::assert_stops(pid, "the cancelled task's `sleep`");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn para_for_fan_out_is_bounded() {
    let host = TestHost::default();
    let limits = Limits { max_tasks: 100, max_fanout: 3, ..Limits::default() };
    let (_, result) = runtime().block_on(run_with(&host, "require slow;\npara for i in range(12) { slow(); }", limits));
    result.unwrap();
    assert_eq!(host.state.calls.lock().unwrap().len(), 12);
    let max = host.state.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "at most 3 in flight, and some overlap: {max}");
}

#[test]
fn the_task_limit_bounds_calls_across_branches() {
    let host = TestHost::default();
    let limits = Limits { max_tasks: 2, max_fanout: 100, ..Limits::default() };
    let (_, result) = runtime().block_on(run_with(&host, "require slow;\npara for i in range(10) { para { slow(); slow(); } }", limits));
    result.unwrap();
    assert_eq!(host.state.calls.lock().unwrap().len(), 20);
    assert_eq!(host.state.max_in_flight.load(Ordering::SeqCst), 2);
}

#[test]
fn two_workflows_run_at_once_with_their_own_hosts() {
    let (h1, h2) = (TestHost::default(), TestHost::default());
    let (r1, r2) = runtime().block_on(async {
        tokio::join!(
            run_with(&h1, "require add;\nx = add(1, 2);\nprint x;", Limits::default()),
            run_with(&h2, "require add;\nx = add(10, 20);\nprint x;", Limits::default())
        )
    });
    assert_eq!((r1.0, r2.0), (vec!["3".to_string()], vec!["30".to_string()]));
    assert_eq!(h1.state.calls.lock().unwrap().len(), 1);
    assert_eq!(h2.state.calls.lock().unwrap().len(), 1);
    // They interleave: each workflow's single `gate` call passes only while
    // the other workflow's call waits too.
    let shared = TestHost::default();
    let src = "require gate;\nx = gate(7);\nprint x;";
    let (a, b) =
        runtime().block_on(async { tokio::join!(run_with(&shared, src, Limits::default()), run_with(&shared, src, Limits::default())) });
    assert_eq!((a.0, b.0), (vec!["7".to_string()], vec!["7".to_string()]));
}

#[test]
fn an_interrupt_stops_computing_loops_and_waiting_calls() {
    for src in ["i = 0;\nwhile (true) { i = i + 1; }", "require hang;\npara { x = hang(); y = 1; }"] {
        let host = TestHost::default();
        let program = oxiida::compile(&Source::new("test.ox", src), &host).unwrap();
        let interrupt = oxiida::Interrupt::new();
        let trigger = interrupt.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            trigger.trigger();
        });
        let result =
            runtime().block_on(oxiida::execute_with_interrupt(&program, &host, &Collect::default(), Limits::default(), &interrupt));
        stopper.join().unwrap();
        assert!(result.unwrap_err().message.contains("interrupted"), "{src}");
        assert_eq!(host.state.in_flight.load(Ordering::SeqCst), 0, "{src}: nothing keeps running");
    }
}

#[test]
fn calls_run_inline_only_when_allowed_and_nothing_else_runs() {
    let src =
        "require add;\nx = add(1, 2);\npara { y = add(x, 1); z = add(x, 2); }\npara for i in [1] { w = add(i, 1); }\nprint x + y + z;";
    let host = TestHost::default();
    let limits = Limits { inline_calls: true, ..Limits::default() };
    let (out, result) = runtime().block_on(run_with(&host, src, limits));
    result.unwrap();
    assert_eq!(out, ["12"]);
    assert_eq!(host.state.inline_calls.load(Ordering::SeqCst), 1, "only the call outside `para`");
    assert_eq!(host.state.calls.lock().unwrap().len(), 3);
    let host = TestHost::default();
    runtime().block_on(run_with(&host, src, Limits::default())).1.unwrap();
    assert_eq!(host.state.inline_calls.load(Ordering::SeqCst), 0, "not allowed by default");
}

/// The test host, taking the calls of a `para for` of one call together
/// (`Host::call_each`): it notes each batch, then makes its calls.
#[derive(Default)]
struct Batching {
    inner: TestHost,
    /// Each batch: its mode and its calls' arguments, as written.
    batches: Mutex<Vec<(CallMode, Vec<String>)>>,
}

impl Host for Batching {
    fn resolve(&self, name: &ForeignName) -> Result<(), String> {
        self.inner.resolve(name)
    }

    fn keywords(&self, name: &ForeignName) -> Result<(), String> {
        self.inner.keywords(name)
    }

    fn call(&self, name: &ForeignName, args: Vec<Value>, keywords: oxiida::foreign::Keywords, mode: CallMode) -> CallFuture {
        self.inner.call(name, args, keywords, mode)
    }

    fn call_each(
        &self,
        name: &ForeignName,
        calls: Vec<oxiida::foreign::EachCall>,
        mode: CallMode,
    ) -> Result<oxiida::foreign::EachStream, Vec<oxiida::foreign::EachCall>> {
        use futures_util::StreamExt;
        let written = calls
            .iter()
            .map(|(args, keywords)| {
                let mut seen: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                seen.extend(keywords.iter().map(|(k, v)| format!("{k}={v}")));
                seen.join(" ")
            })
            .collect();
        self.batches.lock().unwrap().push((mode, written));
        let running: futures_util::stream::FuturesUnordered<_> =
            calls.into_iter().map(|(args, keywords)| self.inner.call(name, args, keywords, mode)).collect();
        Ok(Box::pin(running.map(|r| r.map(|_| 1))))
    }
}

#[test]
fn a_para_for_of_one_call_hands_its_calls_over_in_batches_within_the_task_limit() {
    let host = Batching::default();
    let limits = Limits { max_tasks: 4, max_fanout: 100, ..Limits::default() };
    let src = "require slow, kw;\nn = 10;\npara for i in range(12) { slow(); }\npara for i in range(30) { x = kw(i, n + i, tag = i * 2); }";
    let (_, result) = runtime().block_on(run_with(&host, src, limits));
    result.unwrap();
    let batches = host.batches.lock().unwrap();
    let slow: usize = batches.iter().filter(|(_, calls)| calls[0].is_empty()).map(|(_, calls)| calls.len()).sum();
    assert_eq!(slow, 12);
    let kw: Vec<&String> = batches.iter().filter(|(_, calls)| !calls[0].is_empty()).flat_map(|(_, calls)| calls).collect();
    let expected: Vec<String> = (0..30).map(|i| format!("{i} {} tag={}", 10 + i, i * 2)).collect();
    assert_eq!(kw, expected.iter().collect::<Vec<_>>(), "every iteration's arguments, in order");
    assert!(batches.iter().all(|(mode, calls)| *mode == CallMode::Thread && calls.len() <= 4), "a batch is within the task limit");
    assert!(batches.len() < 42, "calls went together: {} batches", batches.len());
    let max = host.inner.state.max_in_flight.load(Ordering::SeqCst);
    assert!((2..=4).contains(&max), "at most 4 in flight, and some overlap: {max}");
}

#[test]
fn a_batched_para_for_fails_at_its_call_and_leaves_nothing_running() {
    let host = Batching::default();
    let src = "require fail, hang;\npara {\n  para for i in range(5) { hang(); }\n  para for i in range(20) { x = fail(i); }\n}";
    let (_, result) = runtime().block_on(run_with(&host, src, Limits::default()));
    let err = result.unwrap_err();
    assert!(err.message.contains("`fail` raised an error: ValueError"), "{}", err.message);
    assert_eq!(&src[err.span.start..err.span.end], "fail(i)", "reported at the call");
    assert!(err.notes.iter().any(|n| n.contains("script.py")), "with its traceback: {:?}", err.notes);
    assert_eq!(host.inner.state.in_flight.load(Ordering::SeqCst), 0, "nothing keeps running");
    assert_eq!(host.inner.state.dropped_unfinished.load(Ordering::SeqCst), 5, "the hanging calls were cancelled");
}

#[test]
fn only_a_para_for_of_one_call_is_batched_and_process_calls_say_so() {
    let host = Batching::default();
    let src = "require echo, mode;\npara for i in range(3) { x = echo(i); y = echo(x); }\npara for i in range(3) { =mode=(); }";
    let (_, result) = runtime().block_on(run_with(&host, src, Limits::default()));
    result.unwrap();
    let batches = host.batches.lock().unwrap();
    assert_eq!(batches.len(), 1, "only the second loop");
    assert_eq!((batches[0].0, batches[0].1.len()), (CallMode::Process, 3));
    assert_eq!(host.inner.state.calls.lock().unwrap().len(), 9);
}

#[test]
fn a_lazy_result_is_made_when_first_read_and_returned_unmade_when_never_read() {
    let host = TestHost::default();
    let (_, result) = run(&host, "require lazy;\nr = lazy();\n");
    let vars = result.unwrap();
    assert!(matches!(vars.iter().find(|(k, _)| &**k == "r"), Some((_, Value::Handle(_)))), "returned as the host's handle: {vars:?}");
    assert_eq!(host.state.lazy_made.load(Ordering::SeqCst), 0, "never made");

    let host = TestHost::default();
    let src = "require lazy;\nr = lazy();\nn = len(r);\ns = r + [4];\nprint r;\ne = r == [1, 2, 3];\nx = r[2];\nr = r + [5];\nt = len(lazy());\npara {\n  a = lazy();\n  b = 1;\n}\nc = a[0];\nfor i in lazy() { print i; }\n";
    let (out, result) = run(&host, src);
    let vars = result.unwrap();
    let get = |name: &str| vars.iter().find(|(k, _)| &**k == name).unwrap_or_else(|| panic!("no `{name}`")).1.to_string();
    assert_eq!(out, ["[1, 2, 3]", "1", "2", "3"]);
    assert_eq!((get("n"), get("s"), get("e"), get("x")), ("3".into(), "[1, 2, 3, 4]".into(), "true".into(), "3".into()));
    assert_eq!((get("r"), get("t"), get("c")), ("[1, 2, 3, 5]".into(), "3".into(), "1".into()));
    assert_eq!(host.state.lazy_made.load(Ordering::SeqCst), 4, "each result made once, however often read");
}

/// Notes, for each task that succeeded, whether its observer was handed a handle.
#[derive(Default)]
struct Handed(Mutex<Vec<bool>>);

impl oxiida::TaskObserver for Handed {
    fn before<'a>(&'a self, _: &'a oxiida::observe::Task<'a>) -> futures_util::future::BoxFuture<'a, Option<oxiida::observe::Supplied>> {
        Box::pin(async { None })
    }

    fn after(
        &self,
        _: &oxiida::observe::Task<'_>,
        _: std::time::SystemTime,
        _: std::time::SystemTime,
        outcome: oxiida::observe::Outcome<'_>,
    ) {
        if let oxiida::observe::Outcome::Succeeded(v) = outcome {
            self.0.lock().unwrap().push(matches!(v, Value::Handle(_)));
        }
    }
}

#[test]
fn an_observed_run_records_and_keeps_a_lazy_result_made() {
    let host = TestHost::default();
    let program = oxiida::compile(&Source::new("test.ox", "require lazy;\nr = lazy();\n"), &host).unwrap();
    let handed = Handed::default();
    let vars = runtime()
        .block_on(oxiida::execute_observed(
            &program,
            Vec::new(),
            &host,
            &Collect::default(),
            Limits::default(),
            &oxiida::Context::default(),
            &oxiida::Interrupt::new(),
            Some(&handed),
        ))
        .unwrap();
    assert_eq!(*handed.0.lock().unwrap(), [false], "the observer saw the value");
    assert!(matches!(vars.iter().find(|(k, _)| &**k == "r"), Some((_, Value::Array(_)))), "{vars:?}");
    assert_eq!(host.state.lazy_made.load(Ordering::SeqCst), 1);
}

/// The test host, noting for each call its first argument and what
/// `result_kept` said while the host was being called.
#[derive(Default)]
struct Kept {
    inner: TestHost,
    seen: Mutex<Vec<(String, bool)>>,
}

impl Kept {
    fn note(&self, args: &[Value]) {
        self.seen.lock().unwrap().push((args[0].to_string(), oxiida::foreign::result_kept()));
    }
}

impl Host for Kept {
    fn resolve(&self, name: &ForeignName) -> Result<(), String> {
        self.inner.resolve(name)
    }

    fn call(&self, name: &ForeignName, args: Vec<Value>, keywords: oxiida::foreign::Keywords, mode: CallMode) -> CallFuture {
        self.note(&args);
        self.inner.call(name, args, keywords, mode)
    }

    fn call_here(
        &self,
        name: &ForeignName,
        args: &[Value],
        keywords: &[(Arc<str>, Value)],
        mode: CallMode,
    ) -> Option<Result<Value, ForeignError>> {
        let result = self.inner.call_here(name, args, keywords, mode)?;
        self.note(args);
        Some(result)
    }
}

#[test]
fn a_host_learns_whether_the_workflow_keeps_a_result_unread() {
    let src =
        "require add;\na = add(1, 0);\nadd(2, 0);\nb = [add(3, 0)];\nc = len([=add=(4, 0)]);\npara { d = =add=(5, 0); e = add(6, 0); }\n\
               para for i in [7] { x = add(i, 0); }\npara for i in [8] { y = add(i, 0); z = add(y, 0); }\n";
    for inline_calls in [false, true] {
        let host = Kept::default();
        let (_, result) = runtime().block_on(run_with(&host, src, Limits { inline_calls, ..Limits::default() }));
        result.unwrap();
        let seen = host.seen.lock().unwrap().clone();
        let expected: Vec<(String, bool)> =
            [("1", true), ("2", false), ("3", false), ("4", false), ("5", true), ("6", true), ("7", false), ("8", true), ("8", true)]
                .iter()
                .map(|(a, k)| (a.to_string(), *k))
                .collect();
        if inline_calls {
            assert!(host.inner.state.inline_calls.load(Ordering::SeqCst) > 0, "some calls were made inline");
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "inline calls {inline_calls}: {seen:?}");
    }
    assert!(oxiida::foreign::result_kept(), "outside a call: not known");
}
