//! The task observer (`oxiida::observe`): every task is told with a key
//! that is stable run after run and distinct within a run, across loops,
//! `para` branches, `para for` iterations and workflow function calls; and
//! a result the observer supplies is used instead of running the task.

use std::sync::Mutex;
use std::time::SystemTime;

use futures_util::future::BoxFuture;
use oxiida::foreign::NoHost;
use oxiida::observe::{Outcome, Supplied, Task, TaskWhat};
use oxiida::{Context, Interrupt, Limits, Output, Source, TaskObserver};

struct Quiet;
impl Output for Quiet {
    fn print(&self, _: &str) {}
}

/// Records `(key, argv, how it ended)`; supplies `"supplied"` for the keys in `supply`.
#[derive(Default)]
struct Log {
    seen: Mutex<Vec<(String, String, String)>>,
    supply: Vec<String>,
}

impl TaskObserver for Log {
    fn before<'a>(&'a self, task: &'a Task<'a>) -> BoxFuture<'a, Option<Supplied>> {
        let hit = self.supply.contains(&task.key);
        Box::pin(async move {
            hit.then(|| {
                let mut m = oxiida::value::Map::new();
                m.insert("stdout".into(), oxiida::value::Value::Str("supplied".into()));
                Supplied::Replayed(oxiida::value::Value::map(m))
            })
        })
    }

    fn after(&self, task: &Task<'_>, started: SystemTime, ended: SystemTime, outcome: Outcome<'_>) {
        assert!(ended >= started);
        let what = match &task.what {
            TaskWhat::Shell { argv, .. } => argv.join(" "),
            other => format!("{other:?}"),
        };
        let how = match outcome {
            Outcome::Succeeded(v) => format!("ok {v}"),
            Outcome::Failed(d) => format!("failed {}", d.message),
            Outcome::Supplied(s) => format!("supplied {}", s.value()),
        };
        self.seen.lock().unwrap().push((task.key.clone(), what, how));
    }
}

const SRC: &str = r#"
fn twice(x) { a = shell {"echo", ["-n", x]}; b = shell {"echo", ["-n", x + "!"]}; return a.stdout + b.stdout; }
out = [];
for i in [1, 2] { out = out + [shell {"echo", ["-n", str(i)]}.stdout]; }
para { p = twice("p"); q = twice("q"); }
para for j in [7, 8, 9] { shell {"echo", ["-n", str(j)]}; }
n = 0;
while (n < 2) { out = out + [twice(str(n))]; n = n + 1; }
"#;

/// Runs `src` (named `file`) with `observer` watching its tasks.
fn observed(file: &str, src: &str, observer: &dyn TaskObserver) -> oxiida::Variables {
    let program = oxiida::compile(&Source::new(file, src), &NoHost).expect("compiles");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(oxiida::execute_observed(
        &program,
        Vec::new(),
        &NoHost,
        &Quiet,
        Limits::default(),
        &Context::default(),
        &Interrupt::new(),
        Some(observer),
    ))
    .expect("runs")
}

fn run(log: &Log) -> oxiida::Variables {
    observed("keys.ox", SRC, log)
}

#[test]
fn every_task_has_a_distinct_key_that_is_the_same_run_after_run() {
    let first = Log::default();
    let vars = run(&first);
    let second = Log::default();
    assert_eq!(format!("{:?}", run(&second)), format!("{vars:?}"));
    let mut a = first.seen.into_inner().unwrap();
    let mut b = second.seen.into_inner().unwrap();
    // `para` branches may finish in any order: compare as sets.
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // 2 (for) + 4 (para of twice) + 3 (para for) + 4 (while of twice).
    assert_eq!(a.len(), 13, "{a:#?}");
    let mut keys: Vec<&str> = a.iter().map(|(k, _, _)| k.as_str()).collect();
    keys.dedup();
    assert_eq!(keys.len(), 13, "keys are distinct: {a:#?}");
    // The shapes: an iteration, a branch through a call, a `para for` iteration.
    assert!(a.iter().any(|(k, w, _)| k.ends_with("/i1") && w == "echo -n 2" && !k.contains("/c")), "{a:#?}");
    assert!(a.iter().any(|(k, w, _)| k.contains("/b1/c") && w == "echo -n q!"), "{a:#?}");
    assert!(a.iter().any(|(k, w, _)| k.ends_with("/i2") && w == "echo -n 9"), "{a:#?}");
    assert!(a.iter().all(|(_, _, how)| how.starts_with("ok ")));
}

#[test]
fn a_supplied_result_replaces_the_task() {
    let first = Log::default();
    run(&first);
    let seen = first.seen.into_inner().unwrap();
    let key = seen.iter().find(|(_, w, _)| w == "echo -n 2").unwrap().0.clone();
    let log = Log { supply: vec![key.clone()], ..Log::default() };
    let vars = run(&log);
    let out = vars.iter().find(|(n, _)| &**n == "out").unwrap().1.to_string();
    assert!(out.starts_with(r#"["1", "supplied", "#), "{out}");
    let seen = log.seen.into_inner().unwrap();
    assert!(seen.iter().any(|(k, _, how)| *k == key && how.starts_with("supplied ")), "{seen:#?}");
}

/// Records each task's argv and the argv of the tasks its arguments came from.
#[derive(Default)]
struct Flow(Mutex<Vec<(String, String, Vec<String>)>>);

impl TaskObserver for Flow {
    fn before<'a>(&'a self, _task: &'a Task<'a>) -> BoxFuture<'a, Option<Supplied>> {
        Box::pin(async { None })
    }

    fn after(&self, task: &Task<'_>, _: SystemTime, _: SystemTime, _: Outcome<'_>) {
        let TaskWhat::Shell { argv, .. } = &task.what else { panic!("shell tasks only") };
        let inputs = task.inputs.iter().map(|k| k.to_string()).collect();
        self.0.lock().unwrap().push((task.key.clone(), argv[2].clone(), inputs));
    }
}

fn flows(src: &str) -> Vec<(String, Vec<String>)> {
    let flow = Flow::default();
    observed("flow.ox", src, &flow);
    let seen = flow.0.into_inner().unwrap();
    let name = |key: &str| seen.iter().find(|(k, _, _)| k == key).unwrap().1.clone();
    let mut out: Vec<(String, Vec<String>)> = seen
        .iter()
        .map(|(_, what, inputs)| {
            let mut from: Vec<String> = inputs.iter().map(|k| name(k)).collect();
            from.sort();
            (what.clone(), from)
        })
        .collect();
    out.sort();
    out
}

fn edges(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    list.iter().map(|(t, from)| (t.to_string(), from.iter().map(|s| s.to_string()).collect())).collect()
}

#[test]
fn the_diamond_has_exactly_its_four_edges() {
    let got = flows(
        r#"a = shell {"echo", ["-n", "a"]};
para { b = shell {"echo", ["-n", "b" + a.stdout]}; c = shell {"echo", ["-n", "c" + a.stdout]}; }
d = shell {"echo", ["-n", "d" + b.stdout + c.stdout]};
"#,
    );
    assert_eq!(got, edges(&[("a", &[]), ("ba", &["a"]), ("ca", &["a"]), ("dbaca", &["ba", "ca"])]));
}

#[test]
fn flow_goes_through_variables_arrays_maps_arithmetic_and_functions() {
    let got = flows(
        r#"fn twice(x) { y = x + x; return y; }
fn run(v) { return shell {"echo", ["-n", "r" + v]}.stdout; }
p = shell {"echo", ["-n", "1"]};
q = shell {"echo", ["-n", "2"]};
unused = shell {"echo", ["-n", "u"]};
n = int(p.stdout) * 10;
xs = [n, 5];
m = {"k": q.stdout};
shell {"echo", ["-n", "s" + str(xs[0]) + m["k"]]};
z = twice(p.stdout);
w = run(z);
shell {"echo", ["-n", "t" + w]};
"#,
    );
    assert_eq!(got, edges(&[("1", &[]), ("2", &[]), ("r11", &["1"]), ("s102", &["1", "2"]), ("tr11", &["r11"]), ("u", &[])]));
}
