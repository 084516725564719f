//! Workflow functions at run time (language 0.3): results, scopes, the
//! depth limit on a thread with the default 2 MiB stack (on both the
//! synchronous and the async path), calls in `para`, and cancellation.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use oxiida::foreign::NoHost;
use oxiida::{Diagnostic, Interrupt, Limits, Output, Source};

#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl Output for Collect {
    fn print(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_owned());
    }
}

/// Runs `src` on a new thread with the default stack size (2 MiB), as a
/// spawned thread gets, so that deep calls cannot lean on the main thread's 8 MiB.
fn run(src: &str) -> (Vec<String>, Result<(), Diagnostic>) {
    let src = src.to_owned();
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let program = oxiida::compile(&Source::new("fn.ox", src), &NoHost).unwrap_or_else(|e| panic!("compile errors: {e:?}"));
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let out = Collect::default();
            let result = rt.block_on(oxiida::execute(&program, &NoHost, &out, Limits::default())).map(drop);
            (out.0.into_inner().unwrap(), result)
        })
        .unwrap()
        .join()
        .expect("the workflow's thread did not crash")
}

const SYNC_DEPTH: &str = "fn down(n) { if (n == 0) { return 0; } return 1 + down(n - 1); }\n";
/// The same function, on the async path: its body holds a task (never run).
const ASYNC_DEPTH: &str = "fn down(n) { if (n < 0) { shell {\"true\"}; } if (n == 0) { return 0; } return 1 + down(n - 1); }\n";

#[test]
fn a_thousand_nested_calls_run_on_both_paths() {
    for body in [SYNC_DEPTH, ASYNC_DEPTH] {
        // The top level's call is the first level: down(999) nests 1,000 calls.
        let (lines, result) = run(&format!("{body}print down(999);"));
        result.unwrap();
        assert_eq!(lines, ["999"]);
    }
}

#[test]
fn recursion_to_100_000_stops_at_the_limit_with_an_error_naming_the_function() {
    for body in [SYNC_DEPTH, ASYNC_DEPTH] {
        let (lines, result) = run(&format!("{body}print \"start\";\nprint down(100000);"));
        assert_eq!(lines, ["start"]);
        let err = result.expect_err("too deep");
        assert!(err.message.contains("`down`") && err.message.contains("1000"), "{}", err.message);
        assert_eq!(err.label.as_deref(), Some("the call 1001 levels deep"));
        assert!(err.hint.is_some());
    }
}

/// Each level nests a `para` too: its poll goes through the block's
/// futures, the deepest stack per call of all.
const PARA_DEPTH: &str = "fn down(n) { if (n == 0) { return 0; } para { a = down(n - 1); b = 1; } return a + b; }\n";

#[test]
fn recursion_through_para_blocks_stays_within_the_stack() {
    let (lines, result) = run(&format!("{PARA_DEPTH}print down(999);"));
    result.unwrap();
    assert_eq!(lines, ["999"]);
    let (_, result) = run(&format!("{PARA_DEPTH}print down(5000);"));
    assert!(result.unwrap_err().message.contains("too many nested calls"));
}

#[test]
fn calls_return_values_and_leave_the_caller_untouched() {
    let src = "fn f(a, b = a + 1) { a = a * 10; for i in range(5) { if (i == 3) { return [a, b, i]; } } return nil; }
fn none() { x = 1; }
fn early(n) { while (true) { if (n > 2) { return n; } n = n + 1; } }
a = 1;
print f(a);
print f(2, b = 7);
print a;
print none();
print early(0);";
    let (lines, result) = run(src);
    result.unwrap();
    assert_eq!(lines, ["[10, 2, 3]", "[20, 7, 3]", "1", "nil", "3"]);
}

#[test]
fn defaults_are_evaluated_at_each_call() {
    let src = "fn f(xs = []) { xs = xs + [1]; return xs; }\nprint f();\nprint f();\nfn g(n, m = {\"n\": n}) { return m; }\nprint g(1);\nprint g(2);";
    let (lines, result) = run(src);
    result.unwrap();
    assert_eq!(lines, ["[1]", "[1]", "{\"n\": 1}", "{\"n\": 2}"]);
}

#[test]
fn an_error_inside_a_call_points_into_the_function() {
    let src = "fn f(x) {\n  return x + \"a\";\n}\nprint f(1);";
    let (_, result) = run(src);
    let err = result.unwrap_err();
    assert!(err.message.contains("Int and String"), "{}", err.message);
    assert_eq!(&src[err.span.start..err.span.end], "+");
    assert_eq!(err.notes, ["in `f`, called at line 4"]);
}

#[test]
fn an_error_lists_the_calls_it_left_with_recursion_counted_once() {
    let src = "fn a(n) { return b(n); }\nfn b(n) { if (n == 0) { return 1 / n; } return a(n - 1); }\nfn deep(n) { return deep(n + 1); }\n";
    let (_, result) = run(&format!("{src}print a(1);"));
    assert_eq!(
        result.unwrap_err().notes,
        ["in `b`, called at line 1", "in `a`, called at line 2", "in `b`, called at line 1", "in `a`, called at line 4"]
    );
    let (_, result) = run(&format!("{src}print a(20);"));
    let notes = result.unwrap_err().notes;
    assert_eq!(notes.len(), 9, "eight calls, then a summary: {notes:?}");
    assert_eq!(notes[8], "... and the calls that led there");
    let (_, result) = run(&format!("{src}print deep(0);"));
    assert_eq!(result.unwrap_err().notes, ["in `deep`, called at line 3 (and 998 more times)", "in `deep`, called at line 4"]);
}

#[test]
fn calls_in_para_overlap_each_with_its_own_frame() {
    let src = "fn nap(n) { r = shell {\"sh\", [\"-c\", \"sleep 0.4; echo $0\", str(n)]}; return int(r.stdout); }
para { a = nap(1); b = nap(2); c = nap(3); }
para for i in range(3) { print nap(i) * 0; }
print [a, b, c];";
    let started = Instant::now();
    let (lines, result) = run(src);
    result.unwrap();
    assert_eq!(lines, ["0", "0", "0", "[1, 2, 3]"]);
    // Sequential calls would take 2.4 s.
    assert!(started.elapsed() < Duration::from_millis(2000), "took {:?}", started.elapsed());
}

#[test]
fn a_failing_branch_cancels_the_calls_running_beside_it() {
    let src = "fn long() { shell {\"sleep\", [\"30\"]}; return 1; }
fn bad() { shell {\"true\"}; return 1 + nil; }
para { a = long(); b = bad(); }";
    let started = Instant::now();
    let (_, result) = run(src);
    assert!(result.unwrap_err().message.contains("nil"));
    assert!(started.elapsed() < Duration::from_secs(10), "the sleeping call was not cancelled");
}

#[test]
fn an_interrupt_stops_a_recursion_that_never_loops() {
    let src = "fn fib(n) { if (n < 2) { return n; } return fib(n - 1) + fib(n - 2); }\nprint fib(60);";
    let program = oxiida::compile(&Source::new("fib.ox", src), &NoHost).unwrap();
    let interrupt = Interrupt::new();
    let trigger = interrupt.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        trigger.trigger();
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    let result = rt.block_on(oxiida::execute_with_interrupt(&program, &NoHost, &Collect::default(), Limits::default(), &interrupt));
    stopper.join().unwrap();
    assert!(result.unwrap_err().message.contains("interrupted"));
    assert!(started.elapsed() < Duration::from_secs(10));
}
