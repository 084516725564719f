//! A program's inputs: variables bound before the first statement
//! (`compile_with_inputs`, `execute_with_inputs`), the errors found before
//! running, and constants in the language's literal syntax
//! (`syntax::parse_constant`).

use std::sync::{Arc, Mutex};

use oxiida::foreign::{ForeignName, Host, NoHost};
use oxiida::value::Value;
use oxiida::{Context, Diagnostic, Interrupt, Limits, Output, Source, Stage};

#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl Output for Collect {
    fn print(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_owned());
    }
}

fn compile(src: &str, inputs: &[&str]) -> Result<oxiida::ir::Program, Vec<Diagnostic>> {
    oxiida::compile_with_inputs(&Source::new("in.ox", src), &NoHost, inputs)
}

fn errors(src: &str, inputs: &[&str]) -> Vec<String> {
    compile(src, inputs).expect_err("should not compile").into_iter().map(|d| d.message).collect()
}

fn run(src: &str, inputs: Vec<(&str, Value)>) -> (Vec<String>, Result<oxiida::Variables, Diagnostic>) {
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let program = compile(src, &names).unwrap_or_else(|e| panic!("compile errors: {e:?}"));
    run_program(&program, inputs)
}

fn run_program(program: &oxiida::ir::Program, inputs: Vec<(&str, Value)>) -> (Vec<String>, Result<oxiida::Variables, Diagnostic>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let out = Collect::default();
    let inputs = inputs.into_iter().map(|(n, v)| (Arc::from(n), v)).collect();
    let result =
        rt.block_on(oxiida::execute_with_inputs(program, inputs, &NoHost, &out, Limits::default(), &Context::default(), &Interrupt::new()));
    (out.0.into_inner().unwrap(), result)
}

#[test]
fn inputs_are_bound_before_the_first_statement() {
    let (printed, vars) = run("print n * 2; print name + \"!\";", vec![("n", Value::Int(21)), ("name", Value::from("Si"))]);
    assert_eq!(printed, ["42", "Si!"]);
    let vars = vars.unwrap();
    // Inputs are variables of the workflow: they come back with the others.
    assert_eq!(vars[0], (Arc::from("n"), Value::Int(21)));
    assert_eq!(vars[1], (Arc::from("name"), Value::from("Si")));
}

#[test]
fn an_input_can_be_rebound_and_read_in_para() {
    let (printed, vars) = run("n = n + 1; para { a = n; b = n * 2; } print [a, b];", vec![("n", Value::Int(1))]);
    assert_eq!(printed, ["[2, 4]"]);
    assert!(vars.unwrap().contains(&(Arc::from("n"), Value::Int(2))));
}

#[test]
fn an_unknown_name_is_still_an_error_before_running() {
    let m = errors("print n + m;", &["n"]);
    assert_eq!(m, ["`m` is not defined"]);
    // Without the input, `n` is unknown too.
    assert_eq!(errors("print n;", &[]), ["`n` is not defined"]);
}

#[test]
fn a_function_cannot_read_an_input() {
    let m = errors("fn f() { return n; }\nprint f();", &["n"]);
    assert_eq!(m, ["`n` is an input of the workflow, which a function cannot read"]);
    // Passing it works.
    let (printed, _) = run("fn f(n) { return n + 1; }\nprint f(n);", vec![("n", Value::Int(1))]);
    assert_eq!(printed, ["2"]);
}

#[test]
fn an_input_cannot_take_the_name_of_a_builtin_function_or_required_name() {
    assert_eq!(errors("print 1;", &["len"]), ["input `len` has the name of a builtin"]);
    assert_eq!(errors("fn f() { }\nprint 1;", &["f"]), ["input `f` has the name of a function of this workflow"]);
    struct Any;
    impl Host for Any {
        fn resolve(&self, _: &ForeignName) -> Result<(), String> {
            Ok(())
        }
        fn call(
            &self,
            _: &ForeignName,
            _: Vec<Value>,
            _: oxiida::foreign::Keywords,
            _: oxiida::foreign::CallMode,
        ) -> oxiida::foreign::CallFuture {
            unreachable!("never called")
        }
    }
    let m: Vec<String> = oxiida::compile_with_inputs(&Source::new("in.ox", "require g;\nprint 1;"), &Any, &["g"])
        .unwrap_err()
        .into_iter()
        .map(|d| d.message)
        .collect();
    assert_eq!(m, ["`g` is an input of the workflow, so a required name cannot use it"]);
}

#[test]
fn an_input_must_be_named_like_a_variable_and_given_once() {
    for bad in ["if", "1x", "a b", "", "x-y"] {
        assert_eq!(errors("print 1;", &[bad]), [format!("input `{bad}` is not a valid variable name")], "{bad:?}");
    }
    assert_eq!(errors("print n;", &["n", "n"]), ["input `n` is given twice"]);
    let every = compile("print 1;", &["len", "if"]).unwrap_err();
    assert!(every.iter().all(|d| d.stage == Stage::Resolve && d.hint.is_some()), "{every:?}");
}

#[test]
fn values_must_match_the_compiled_inputs() {
    let program = compile("print n;", &["n"]).unwrap();
    let (printed, result) = run_program(&program, vec![]);
    assert!(printed.is_empty());
    assert_eq!(result.unwrap_err().message, "input `n` has no value");
    let (printed, result) = run_program(&program, vec![("n", Value::Int(1)), ("m", Value::Int(2))]);
    assert!(printed.is_empty());
    assert_eq!(result.unwrap_err().message, "`m` is not an input of this workflow");
}

#[test]
fn the_old_api_still_runs_without_inputs() {
    let program = oxiida::compile(&Source::new("in.ox", "x = 1;"), &NoHost).unwrap();
    assert!(program.inputs.is_empty());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let vars = rt.block_on(oxiida::execute(&program, &NoHost, &Collect::default(), Limits::default())).unwrap();
    assert_eq!(vars, [(Arc::from("x"), Value::Int(1))]);
}

#[test]
fn constants_are_read_in_the_literal_syntax() {
    use oxiida::syntax::parse_constant as c;
    assert_eq!(c("5"), Ok(Value::Int(5)));
    assert_eq!(c("-5"), Ok(Value::Int(-5)));
    assert_eq!(c("-9223372036854775808"), Ok(Value::Int(i64::MIN)));
    assert_eq!(c(" 2.5 "), Ok(Value::Float(2.5)));
    assert_eq!(c("\"Si\""), Ok(Value::from("Si")));
    assert_eq!(c("true"), Ok(Value::Bool(true)));
    assert_eq!(c("nil"), Ok(Value::Nil));
    let m = c("{\"el\": \"Si\", \"n\": [1, -2.0]}").unwrap();
    assert_eq!(m.to_string(), "{\"el\": \"Si\", \"n\": [1, -2.0]}");
}

#[test]
fn a_bad_constant_says_what_to_write() {
    use oxiida::syntax::parse_constant as c;
    let bare = c("Si").unwrap_err();
    assert!(bare.contains("`Si` is a name, not a literal") && bare.contains("'\"Si\"'"), "{bare}");
    for (text, says) in [
        ("", "the value is empty"),
        ("1 + 2", "only literals are allowed"),
        ("-\"a\"", "`-` goes only before a number"),
        ("{1: 2}", "a Map key must be a String literal"),
        ("1; shell {\"rm\"}", "not a literal of the language"),
        ("1); print 2; (1", "not a single literal"),
        ("[1,", "not a literal of the language"),
        ("\"unterminated", "not a literal of the language"),
        ("shell {\"true\"}", "only literals are allowed"),
    ] {
        let e = c(text).unwrap_err();
        assert!(e.contains(says), "{text:?}: {e}");
    }
}
