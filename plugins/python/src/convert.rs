//! Values between oxiida and Python: None, bool, int (64-bit), float, str,
//! list and tuple (to Array), dict with str keys (to Map), nested; numpy
//! scalars as the Python values their `.item()` gives. In the package,
//! anything else crosses as a handle to the object itself.
//!
//! One set of rules for two value types: the C-ABI plugin's wire values
//! ([`oxiida_abi::Value`]) and, in the package, the runtime's own
//! ([`oxiida::value::Value`]), which convert directly, with no MessagePack
//! in between.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

/// The CLI plugin's handles (ABI version 4): the objects of one session
/// that crossed as handles, by id (the object's address, unique while it is
/// kept here), with the references the host holds. Released objects are
/// dropped; whatever is left goes with the session.
#[derive(Default)]
pub struct Handles {
    table: parking_lot::Mutex<HashMap<u64, (Py<PyAny>, usize)>>,
}

thread_local! {
    /// The session whose call runs on this thread, and the handles this
    /// call has kept so far, once per occurrence (each already counted, so
    /// that a release meanwhile cannot drop the object).
    static CALL: RefCell<Option<(Arc<Handles>, Vec<u64>)>> = const { RefCell::new(None) };
}

impl Handles {
    /// Runs one call of the session with handles: results that cannot cross
    /// as data become handles, handles in arguments become their objects.
    /// Each handle in the result is one reference more for the host.
    pub fn during<T>(self: &Arc<Self>, call: impl FnOnce() -> Result<oxiida_abi::Value, T>) -> Result<oxiida_abi::Value, T> {
        let outer = CALL.with(|c| c.borrow_mut().replace((self.clone(), Vec::new())));
        let result = call();
        let made = CALL.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer)).map(|(_, made)| made).unwrap_or_default();
        let mut sent = Vec::new();
        if let Ok(v) = &result {
            v.handles(&mut sent);
        }
        // Each occurrence in the result is a reference the host now holds;
        // one kept for a result that was not sent in the end is given back.
        let mut unsent = made;
        for id in sent {
            if let Some(at) = unsent.iter().position(|&k| k == id) {
                unsent.swap_remove(at);
            }
        }
        for id in unsent {
            self.release(id);
        }
        result
    }

    /// The host gives back one reference to `id`. Without the GIL, the
    /// object's reference is dropped when Python next runs.
    pub fn release(&self, id: u64) {
        let mut table = self.table.lock();
        let gone = match table.get_mut(&id) {
            Some((_, n)) if *n > 1 => {
                *n -= 1;
                None
            }
            Some(_) => table.remove(&id),
            None => None,
        };
        drop(table);
        drop(gone);
    }

    /// Every object still kept (the session ends: drop them with the GIL).
    pub fn take_all(&self) -> Vec<Py<PyAny>> {
        self.table.lock().drain().map(|(_, (o, _))| o).collect()
    }
}

/// `obj` kept as a handle of the session whose call runs here, if any.
fn keep(obj: &Bound<'_, PyAny>) -> Option<oxiida_abi::Value> {
    CALL.with(|c| {
        let mut c = c.borrow_mut();
        let (handles, made) = c.as_mut()?;
        let id = obj.as_ptr() as usize as u64;
        handles.table.lock().entry(id).or_insert_with(|| (obj.clone().unbind(), 0)).1 += 1;
        made.push(id);
        Some(oxiida_abi::Value::handle(id, &type_name(obj)))
    })
}

/// The object of handle `id` of the session whose call runs here.
fn object<'py>(py: Python<'py>, id: u64, type_name: &str) -> PyResult<Bound<'py, PyAny>> {
    let found = CALL.with(|c| c.borrow().as_ref().and_then(|(handles, _)| handles.table.lock().get(&id).map(|(o, _)| o.clone_ref(py))));
    found
        .map(|o| o.into_bound(py))
        .ok_or_else(|| pyo3::exceptions::PyValueError::new_err(format!("the Python {type_name} of this handle was already released")))
}

/// Deeper than this is refused: it is also how a list that contains itself ends.
const MAX_DEPTH: usize = 100;

/// Why a Python value cannot cross, in words for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CannotCross(String);

/// A value type that Python values convert to and from.
pub trait Crossing: Sized {
    fn nil() -> Self;
    fn bool(b: bool) -> Self;
    fn int(i: i64) -> Self;
    fn float(x: f64) -> Self;
    fn str(s: &str) -> Self;
    fn array(items: Vec<Self>) -> Self;
    fn map(entries: Vec<(String, Self)>) -> Self;
    /// `obj` itself, kept by the workflow as an opaque handle; `None` where
    /// values cannot hold Python objects (the ABI's).
    fn handle(_obj: &Bound<'_, PyAny>) -> Option<Self> {
        None
    }
    fn to_python<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
}

impl Crossing for oxiida_abi::Value {
    fn nil() -> Self {
        Self::Nil
    }
    fn bool(b: bool) -> Self {
        Self::Bool(b)
    }
    fn int(i: i64) -> Self {
        Self::Int(i)
    }
    fn float(x: f64) -> Self {
        Self::Float(x)
    }
    fn str(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
    fn array(items: Vec<Self>) -> Self {
        Self::Array(items)
    }
    fn map(entries: Vec<(String, Self)>) -> Self {
        Self::Map(entries)
    }
    fn handle(obj: &Bound<'_, PyAny>) -> Option<Self> {
        keep(obj)
    }
    fn to_python<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        use oxiida_abi::Value;
        Ok(match self {
            Value::Nil => py.None().into_bound(py),
            Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
            Value::Int(i) => i.into_pyobject(py)?.into_any(),
            Value::Float(x) => PyFloat::new(py, *x).into_any(),
            Value::Str(s) => PyString::new(py, s).into_any(),
            Value::Array(items) => PyList::new(py, items.iter().map(|i| i.to_python(py)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
            Value::Map(entries) => {
                let d = PyDict::new(py);
                for (k, v) in entries {
                    d.set_item(k, v.to_python(py)?)?;
                }
                d.into_any()
            }
            Value::Handle { id, type_name } => object(py, *id, type_name)?,
        })
    }
}

#[cfg(feature = "package")]
impl Crossing for oxiida::value::Value {
    fn nil() -> Self {
        Self::Nil
    }
    fn bool(b: bool) -> Self {
        Self::Bool(b)
    }
    fn int(i: i64) -> Self {
        Self::Int(i)
    }
    fn float(x: f64) -> Self {
        Self::Float(x)
    }
    fn str(s: &str) -> Self {
        Self::from(s)
    }
    fn array(items: Vec<Self>) -> Self {
        Self::array(items)
    }
    fn map(entries: Vec<(String, Self)>) -> Self {
        Self::map(entries.into_iter().map(|(k, v)| (std::sync::Arc::from(k), v)).collect())
    }
    fn handle(obj: &Bound<'_, PyAny>) -> Option<Self> {
        // The address is the object's identity while the handle keeps it alive.
        let identity = obj.as_ptr() as usize as u64;
        let handle = oxiida::value::Handle::new("python", &type_name(obj), identity, Box::new(obj.clone().unbind()));
        Some(Self::Handle(std::sync::Arc::new(handle)))
    }
    fn to_python<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        use oxiida::value::Value;
        Ok(match self {
            Value::Nil => py.None().into_bound(py),
            Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
            Value::Int(i) => i.into_pyobject(py)?.into_any(),
            Value::Float(x) => PyFloat::new(py, *x).into_any(),
            Value::Str(s) => PyString::new(py, s).into_any(),
            Value::Array(items) => PyList::new(py, items.iter().map(|i| i.to_python(py)).collect::<PyResult<Vec<_>>>()?)?.into_any(),
            Value::Map(entries) => {
                let d = PyDict::new(py);
                for (k, v) in entries.iter() {
                    d.set_item(&**k, v.to_python(py)?)?;
                }
                d.into_any()
            }
            Value::Handle(h) => match h.payload::<Py<PyAny>>() {
                Some(obj) => obj.bind(py).clone(),
                None => {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "a {} {} cannot be given to a Python function; convert it in a {} function first",
                        h.owner(),
                        h.type_name(),
                        h.owner()
                    )))
                }
            },
        })
    }
}

/// A Python value as a `V`, or why it cannot cross.
pub fn from_python<V: Crossing>(obj: &Bound<'_, PyAny>) -> Result<V, CannotCross> {
    from_python_at(obj, 0)
}

fn from_python_at<V: Crossing>(obj: &Bound<'_, PyAny>, depth: usize) -> Result<V, CannotCross> {
    if depth > MAX_DEPTH {
        return Err(CannotCross(format!("it is nested more than {MAX_DEPTH} levels deep (or contains itself); return a flatter value")));
    }
    if obj.is_none() {
        return Ok(V::nil());
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(V::bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj
            .extract::<i64>()
            .map(V::int)
            .map_err(|_| CannotCross(format!("the int {obj} does not fit in 64 bits; pass it as a str or a float")));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(V::float(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s.to_str().map(V::str).map_err(|e| {
            CannotCross(format!("a str that is not valid UTF-8 ({e}); clean it first, e.g. with s.encode(\"utf-8\", \"replace\").decode()"))
        });
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list.iter().map(|i| from_python_at(&i, depth + 1)).collect::<Result<_, _>>().map(V::array);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple.iter().map(|i| from_python_at(&i, depth + 1)).collect::<Result<_, _>>().map(V::array);
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut entries = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                if let Some(handle) = V::handle(obj) {
                    return Ok(handle);
                }
                return Err(CannotCross(format!("a dict key must be a str, found `{}`; convert the keys with str()", type_name(&k))));
            };
            entries.push((key.to_string(), from_python_at(&v, depth + 1)?));
        }
        return Ok(V::map(entries));
    }
    if let Some(item) = numpy_item(obj) {
        return from_python_at(&item, depth + 1);
    }
    if let Some(handle) = V::handle(obj) {
        return Ok(handle);
    }
    Err(CannotCross(format!(
        "a value of type `{}` cannot cross into oxiida; convert it to None, bool, int, float, str, list, tuple or dict",
        type_name(obj)
    )))
}

/// A numpy scalar (`np.int64`, `np.float32`, `np.bool_`, ...) as the
/// Python value its `.item()` gives; `None` for anything else, and without
/// importing numpy when nothing has.
fn numpy_item<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let py = obj.py();
    let numpy = py.import("sys").ok()?.getattr("modules").ok()?.get_item("numpy").ok()?;
    let generic = numpy.getattr("generic").ok()?;
    if !obj.is_instance(&generic).unwrap_or(false) {
        return None;
    }
    obj.call_method0("item").ok().filter(|item| !item.is(obj))
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "value".into())
}
