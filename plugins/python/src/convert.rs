//! Values between oxiida and Python: None, bool, int (64-bit), float, str,
//! list and tuple (to Array), dict with str keys (to Map), nested.

use oxiida_abi::Value;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// Deeper than this is refused: it is also how a list that contains itself ends.
const MAX_DEPTH: usize = 100;

pub fn to_python<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Nil => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(x) => PyFloat::new(py, *x).into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => PyList::new(py, items.iter().map(|i| to_python(py, i)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
        Value::Map(entries) => {
            let d = PyDict::new(py);
            for (k, v) in entries {
                d.set_item(k, to_python(py, v)?)?;
            }
            d.into_any()
        }
    })
}

/// Why a Python value cannot cross, in words for the user.
pub fn from_python(obj: &Bound<'_, PyAny>) -> Result<Value, String> {
    from_python_at(obj, 0)
}

fn from_python_at(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("it is nested more than {MAX_DEPTH} levels deep (or contains itself)"));
    }
    if obj.is_none() {
        return Ok(Value::Nil);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<i64>().map(Value::Int).map_err(|_| format!("the int {obj} does not fit in 64 bits"));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s.to_str().map(|s| Value::Str(s.to_owned())).map_err(|e| format!("a str that is not valid UTF-8 ({e})"));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list.iter().map(|i| from_python_at(&i, depth + 1)).collect::<Result<_, _>>().map(Value::Array);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple.iter().map(|i| from_python_at(&i, depth + 1)).collect::<Result<_, _>>().map(Value::Array);
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut entries = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                return Err(format!("a dict key must be a str, found `{}`", type_name(&k)));
            };
            entries.push((key.to_string(), from_python_at(&v, depth + 1)?));
        }
        return Ok(Value::Map(entries));
    }
    Err(format!("a value of type `{}` cannot cross into oxiida (use None, bool, int, float, str, list, tuple or dict)", type_name(obj)))
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "value".into())
}
