//! `--input NAME=VALUE` and `--inputs FILE`: the workflow's inputs on the
//! command line, for `run`, `check` and `submit`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use oxiida::value::{Map, Value};

#[derive(Args, Default)]
pub struct InputArgs {
    /// Give the workflow an input: a variable bound before its first
    /// statement. VALUE is a literal of the language: 5, 2.5, '"Si"', true,
    /// nil, [1, 2], '{"k": 1}'. Repeatable; `check` needs only NAME.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub input: Vec<String>,
    /// Read inputs from a JSON object: each key an input (a number without
    /// a fraction or exponent is an Int, null is nil)
    #[arg(long = "inputs", value_name = "FILE.json")]
    pub inputs: Option<PathBuf>,
}

/// The inputs by name, in the order given (`--inputs` first); an error
/// message that says what to do.
pub type Inputs = Vec<(Arc<str>, Value)>;

impl InputArgs {
    /// Every input with its value. With `names_only` (`check`), `--input
    /// NAME` without a value is allowed too; its value is nil.
    pub fn read(&self, names_only: bool) -> Result<Inputs, String> {
        let mut out: Inputs = Vec::new();
        if let Some(path) = &self.inputs {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not valid JSON ({e}); write one object such as {{\"n\": 5}}", path.display()))?;
            let serde_json::Value::Object(entries) = json else {
                return Err(format!("{} must hold one JSON object of names to values, such as {{\"n\": 5}}", path.display()));
            };
            for (name, value) in entries {
                let value = from_json(value).map_err(|e| format!("input `{name}` in {}: {e}", path.display()))?;
                add(&mut out, &name, value)?;
            }
        }
        for given in &self.input {
            let (name, value) = match given.split_once('=') {
                Some((name, text)) => {
                    let value = oxiida::syntax::parse_constant(text).map_err(|e| format!("--input {given}: {e}"))?;
                    (name, value)
                }
                None if names_only => (given.as_str(), Value::Nil),
                None => return Err(format!("--input {given}: give a value as NAME=VALUE, e.g. --input {given}=5")),
            };
            add(&mut out, name.trim(), value)?;
        }
        Ok(out)
    }
}

fn add(out: &mut Inputs, name: &str, value: Value) -> Result<(), String> {
    if out.iter().any(|(n, _)| &**n == name) {
        return Err(format!("input `{name}` is given twice; give each input once"));
    }
    out.push((Arc::from(name), value));
    Ok(())
}

fn from_json(v: serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Int(i),
            (None, _) if n.is_u64() => {
                return Err(format!("{n} is too large for an Int; write it with a fraction (e.g. {n}.0) for a Float"))
            }
            (None, Some(x)) => Value::Float(x),
            (None, None) => return Err(format!("{n} is not a number oxiida can hold")),
        },
        J::String(s) => Value::from(s),
        J::Array(items) => Value::array(items.into_iter().map(from_json).collect::<Result<_, _>>()?),
        J::Object(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                map.insert(Arc::from(k), from_json(v)?);
            }
            Value::map(map)
        }
    })
}
