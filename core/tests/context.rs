//! A run's working directory and environment travel with the run
//! (`oxiida::Context`), not with the process: two workflows running at the
//! same time in one process each see their own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use oxiida::foreign::NoHost;
use oxiida::value::Value;
use oxiida::{Context, Interrupt, Limits, Source};

fn folder(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("oxiida-context-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// Runs `src` in `context` and returns its variable `out`.
async fn run(src: &str, context: &Context) -> Value {
    let program = oxiida::compile(&Source::new("context.ox", src), &NoHost).unwrap();
    let vars = oxiida::execute_in(&program, &NoHost, &oxiida::interp::Stdout, Limits::default(), context, &Interrupt::new())
        .await
        .unwrap_or_else(|d| panic!("{}", d.message));
    vars.into_iter().find(|(name, _)| &**name == "out").expect("the workflow sets `out`").1
}

fn text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => panic!("not a String: {other}"),
    }
}

fn in_folder(dir: &Path, var: &str) -> Context {
    Context {
        cwd: Some(dir.into()),
        env: Some(vec![(OsString::from("WHO"), OsString::from(var)), ("PATH".into(), std::env::var_os("PATH").unwrap())]),
    }
}

#[test]
fn two_runs_at_once_each_see_their_own_folder_and_environment() {
    let (a, b) = (folder("a"), folder("b"));
    // The sleep makes both runs be inside their shell tasks at the same time.
    let src = r#"
        s = shell {"sleep", ["0.2"]};
        p = shell {"pwd"};
        e = shell {"sh", ["-c", "printf %s \"$WHO\""]};
        q = shellpipe { "pwd" | "cat" };
        out = p.stdout + e.stdout + q.stdout;
    "#;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (ca, cb) = (in_folder(&a, "A"), in_folder(&b, "B"));
    let (in_a, in_b) = rt.block_on(async { tokio::join!(run(src, &ca), run(src, &cb)) });
    assert_eq!(text(&in_a), format!("{0}\nA{0}\n", a.display()));
    assert_eq!(text(&in_b), format!("{0}\nB{0}\n", b.display()));
    let _ = (std::fs::remove_dir_all(&a), std::fs::remove_dir_all(&b));
}

#[test]
fn the_default_context_is_the_process_own() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let out = rt.block_on(run(r#"r = shell {"pwd"}; out = r.stdout;"#, &Context::default()));
    let here = std::env::current_dir().unwrap().canonicalize().unwrap();
    assert_eq!(text(&out), format!("{}\n", here.display()));
}

#[test]
fn a_missing_folder_is_an_error_that_names_it() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let program = oxiida::compile(&Source::new("context.ox", r#"r = shell {"pwd"};"#), &NoHost).unwrap();
    let context = Context { cwd: Some("/no/such/oxiida/folder".into()), env: None };
    let err = rt
        .block_on(oxiida::execute_in(&program, &NoHost, &oxiida::interp::Stdout, Limits::default(), &context, &Interrupt::new()))
        .unwrap_err();
    assert!(err.message.contains("cannot start `pwd` in /no/such/oxiida/folder"), "{}", err.message);
}
