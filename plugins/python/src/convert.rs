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
        Maker::new(py).make(self)
    }
}

/// Workflow values made into Python objects, one or many in a row (a
/// workflow's variables). The work is what `pickle.loads` does for the same
/// data: each list made at its final size and filled in place, each dict
/// filled with no Python call per item, and one Python str for each text
/// the values share (a map key that a million records share is one `Arc`
/// in the workflow, and becomes one str, whose hash Python computes once,
/// as pickle's memo gives). Lists are never shared: a Python list is
/// mutable, and two workflow values are two lists.
#[cfg(feature = "package")]
pub struct Maker<'py> {
    py: Python<'py>,
    /// The strs made so far, by the address and length of their text: a
    /// direct-mapped cache, made at the first map key or once a thousand
    /// objects are made (a plain call's few arguments never need it). An
    /// address is the text's identity while the values being converted are
    /// borrowed, which they are for the `Maker`'s life.
    strs: Vec<(usize, usize, Option<Bound<'py, PyString>>)>,
    /// Objects made so far, and whether a handle was met.
    made: usize,
    handles: bool,
}

/// The workflow's variables as a dict of Python objects. The workflow's
/// own values are then freed: on the `oxiida-discard` thread when they
/// are many ([`discard_later`]) and hold no Python object (whose release
/// the end of the run must see at once), here otherwise.
#[cfg(feature = "package")]
pub fn variables<'py>(py: Python<'py>, vars: oxiida::Variables) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    {
        // Python's cyclic collector would walk the objects as they are
        // made, finding no cycle: made values hold only new objects and
        // handles, and nothing else runs Python meanwhile (the GIL is held).
        let _paused = GcPaused::new();
        // Borrowed, all alive until the end: the maker knows texts by address.
        let mut maker = Maker::new(py);
        for (name, value) in &vars {
            out.set_item(&**name, maker.make(value)?)?;
        }
        if maker.made >= DISCARD_LATER && !maker.handles {
            discard_later(Box::new(vars));
        }
    }
    Ok(out)
}

/// Python's cyclic garbage collector paused while this lives (if it ran).
#[cfg(feature = "package")]
struct GcPaused(bool);

#[cfg(feature = "package")]
impl GcPaused {
    fn new() -> Self {
        // SAFETY: called with the GIL held (by `variables`); returns the previous state.
        GcPaused(unsafe { pyo3::ffi::PyGC_Disable() } == 1)
    }
}

#[cfg(feature = "package")]
impl Drop for GcPaused {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: the GIL is still held: dropped in `variables`' scope.
            unsafe { pyo3::ffi::PyGC_Enable() };
        }
    }
}

/// Variables of at least this many values are freed on a thread of their
/// own (a million workflow values take milliseconds to free).
#[cfg(feature = "package")]
const DISCARD_LATER: usize = 10_000;

/// Frees `garbage` (many workflow values, a pickle reader's memo) on the
/// `oxiida-discard` thread, so that the caller does not wait for a million
/// frees. At most four wait for that thread; more are freed here, so
/// memory never piles up behind it. It must hold no Python object.
pub fn discard_later(garbage: Box<dyn Send>) {
    use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
    use std::sync::OnceLock;
    /// The process that started the thread, and the way to it.
    type Thread = Option<(u32, SyncSender<Box<dyn Send>>)>;
    static LATER: OnceLock<Thread> = OnceLock::new();
    let later = LATER.get_or_init(|| {
        let (send, receive) = sync_channel::<Box<dyn Send>>(4);
        let thread = std::thread::Builder::new().name("oxiida-discard".into()).spawn(move || receive.into_iter().for_each(drop));
        thread.ok().map(|_| (std::process::id(), send))
    });
    match later {
        // Not in a child forked since: the thread is not there.
        Some((pid, send)) if *pid == std::process::id() => match send.try_send(garbage) {
            Ok(()) => {}
            Err(TrySendError::Full(garbage) | TrySendError::Disconnected(garbage)) => drop(garbage),
        },
        _ => drop(garbage),
    }
}

/// Slots of [`Maker`]'s str cache: the keys of a record type and repeated
/// values fit; a miss costs one probe more than no cache.
#[cfg(feature = "package")]
const STR_SLOTS: usize = 512;

#[cfg(feature = "package")]
impl<'py> Maker<'py> {
    pub fn new(py: Python<'py>) -> Self {
        Maker { py, strs: Vec::new(), made: 0, handles: false }
    }

    pub fn make(&mut self, value: &oxiida::value::Value) -> PyResult<Bound<'py, PyAny>> {
        use oxiida::value::Value;
        let py = self.py;
        self.made += 1;
        Ok(match value {
            Value::Nil => py.None().into_bound(py),
            Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
            Value::Int(_) | Value::Float(_) => number(py, value).expect("a number")?,
            Value::Str(s) => self.str(s, false).into_any(),
            Value::Array(items) => {
                let mut list = NewList::new(py, items.len())?;
                for (at, item) in items.iter().enumerate() {
                    // Ints and floats, most of a large list, without a call
                    // of `make` each (1e6 ints returned: 1.04-1.14x the
                    // executor before, 0.98-1.11x after, alternated runs).
                    let made = match number(py, item) {
                        Some(made) => made?,
                        None => self.make(item)?,
                    };
                    list.set(at, made);
                }
                list.finish()
            }
            Value::Map(entries) => {
                let dict = PyDict::new(py);
                for (k, v) in entries.iter() {
                    let key = self.str(k, true);
                    let value = self.make(v)?;
                    set_item(&dict, &key, &value)?;
                }
                dict.into_any()
            }
            // A large `=f=` result the workflow never read: what the worker
            // pickled, unpickled as it is (what a ProcessPoolExecutor does).
            // Unpickled already as it came ([`crate::pool::Answer::Streamed`]), the first time.
            Value::Handle(h) if h.payload::<crate::pool::plain::Pickled>().is_some() => {
                let Some(pickled) = h.payload::<crate::pool::plain::Pickled>() else { unreachable!("checked by the guard") };
                match pickled.take_object(py) {
                    Some(object) => object.into_bound(py),
                    None => py.import("pickle")?.call_method1("loads", (pyo3::types::PyBytes::new(py, &pickled.pickle),))?,
                }
            }
            Value::Handle(h) => match h.payload::<Py<PyAny>>() {
                Some(obj) => {
                    self.handles = true;
                    obj.bind(py).clone()
                }
                None => {
                    self.handles = true;
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "a {} {} cannot be given to a Python function; convert it in a {} function first",
                        h.owner(),
                        h.type_name(),
                        h.owner()
                    )));
                }
            },
        })
    }

    /// The Python str of `text`: the one made already for the same `Arc`,
    /// if any. A map key takes its slot; another str only an empty one, so
    /// a million distinct values do not push a record's keys out.
    fn str(&mut self, text: &std::sync::Arc<str>, key: bool) -> Bound<'py, PyString> {
        if self.strs.is_empty() {
            if !key && self.made < 1000 {
                return PyString::new(self.py, text);
            }
            self.strs.resize(STR_SLOTS, (0, 0, None));
        }
        let (address, len) = (text.as_ptr() as usize, text.len());
        // Allocations are 8-aligned at least: the bits above pick the slot.
        let slot = &mut self.strs[(address >> 3 ^ address >> 12) % STR_SLOTS];
        match slot {
            (a, l, Some(made)) if *a == address && *l == len => return made.clone(),
            (_, _, Some(_)) if !key => return PyString::new(self.py, text),
            _ => {}
        }
        let made = PyString::new(self.py, text);
        *slot = (address, len, Some(made.clone()));
        made
    }
}

/// An Int or a Float as a Python int or float; `None` for other values.
#[cfg(feature = "package")]
#[inline(always)]
fn number<'py>(py: Python<'py>, value: &oxiida::value::Value) -> Option<PyResult<Bound<'py, PyAny>>> {
    match value {
        // SAFETY: a new reference, or null with an exception set.
        oxiida::value::Value::Int(i) => Some(owned(py, unsafe { pyo3::ffi::PyLong_FromLongLong(*i) })),
        // SAFETY: as above.
        oxiida::value::Value::Float(x) => Some(owned(py, unsafe { pyo3::ffi::PyFloat_FromDouble(*x) })),
        _ => None,
    }
}

/// A new Python object from a C call that returns a new reference (or null
/// with an exception set).
#[cfg(feature = "package")]
fn owned(py: Python<'_>, raw: *mut pyo3::ffi::PyObject) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: callers pass the result of a C-API call returning a new
    // reference, made with the GIL held (`py`); null means an exception is set.
    unsafe { Bound::from_owned_ptr_or_err(py, raw) }
}

/// A Python list made at its final length and filled in place.
#[cfg(feature = "package")]
struct NewList<'py> {
    list: Bound<'py, PyAny>,
    len: usize,
}

#[cfg(feature = "package")]
impl<'py> NewList<'py> {
    fn new(py: Python<'py>, len: usize) -> PyResult<Self> {
        let n = pyo3::ffi::Py_ssize_t::try_from(len).map_err(|e| pyo3::exceptions::PyOverflowError::new_err(e.to_string()))?;
        // SAFETY: with the GIL held; a new list of `n` empty (null) slots,
        // which Python frees safely even if never filled.
        let list = owned(py, unsafe { pyo3::ffi::PyList_New(n) })?;
        Ok(NewList { list, len })
    }

    /// Puts `item` in slot `at` (empty: each slot is set once).
    fn set(&mut self, at: usize, item: Bound<'py, PyAny>) {
        assert!(at < self.len, "slot {at} of a list of {}", self.len);
        // SAFETY: `list` is a list of `len` slots (checked above), made
        // here and not yet seen by Python code; PyList_SetItem takes the
        // reference `into_ptr` gives, and cannot fail for an index in range.
        unsafe { pyo3::ffi::PyList_SetItem(self.list.as_ptr(), at as pyo3::ffi::Py_ssize_t, item.into_ptr()) };
    }

    fn finish(self) -> Bound<'py, PyAny> {
        self.list
    }
}

/// `dict[key] = value`, with no conversion of either.
#[cfg(feature = "package")]
fn set_item(dict: &Bound<'_, PyDict>, key: &Bound<'_, PyString>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: three live objects, the GIL held; PyDict_SetItem adds its
    // own references and returns -1 with an exception set on failure.
    if unsafe { pyo3::ffi::PyDict_SetItem(dict.as_ptr(), key.as_ptr(), value.as_ptr()) } != 0 {
        return Err(PyErr::fetch(dict.py()));
    }
    Ok(())
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
