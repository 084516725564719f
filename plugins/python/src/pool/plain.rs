//! A worker's result read straight from its pickle into workflow values,
//! when the pickle holds only what crosses as plain values (None, bool,
//! int of 64 bits, float, str, list, tuple, dict with str keys): no Python
//! object is made for it, then converted. Anything else (another opcode, a
//! key that is not a str, an int too large, a str that is not UTF-8, nesting
//! deeper than the conversion allows, an object met twice while still being
//! built) gives `None`, and the caller unpickles in Python and converts as
//! it does any result: the same values and the same errors either way.
//!
//! The opcodes read are those `pickle.dumps(..., protocol=5)` writes for
//! those types (see CPython's `Lib/pickletools.py`).

use std::sync::Arc;

#[cfg(feature = "package")]
use pyo3::{Py, PyAny, Python};

use crate::pool::stream::Unpickled;

/// The values a plain pickle is read into: the runtime's (the package) or
/// the ABI's (the CLI plugin), made as [`Crossing`] makes them, except that
/// strings arrive shared: a dict key met again is the same `Arc`, and maps
/// are filled in place (`Entries`), with no list of pairs made first.
pub trait Plain: crate::convert::Crossing + Clone + Send + 'static {
    /// A map being filled.
    type Entries: Default;
    fn shared_str(s: Arc<str>) -> Self;
    fn entry(entries: &mut Self::Entries, key: Arc<str>, value: Self);
    fn shared_map(entries: Self::Entries) -> Self;
    /// A tuple: an Array, as any crossing makes it; `None` gives the
    /// pickle up (to [`Exact`], where Python's tuple would differ).
    fn tuple(items: Vec<Self>) -> Option<Self> {
        Some(Self::array(items))
    }
    /// A str's UTF-8 bytes as text; `None` when they are not UTF-8.
    fn text(bytes: &[u8]) -> Option<Arc<str>> {
        str_of(bytes)
    }
    /// A large exact pickle kept as it is until the workflow reads it
    /// ([`oxiida::value::Handle::lazy`]), with the object unpickled from it
    /// already, if any; `Err` gives them back to be read now.
    #[allow(clippy::type_complexity)]
    fn lazy(pickle: Vec<u8>, object: Option<Unpickled>) -> Result<Self, (Vec<u8>, Option<Unpickled>)> {
        Err((pickle, object))
    }
    /// Whether a large result should also be unpickled as it arrives
    /// ([`crate::pool::Request::unpickle`]): only where it may be handed
    /// back to Python as it is ([`Plain::lazy`]).
    const UNPICKLE: bool = false;
}

/// Whether the workflow keeps the result of the call being made unread:
/// [`oxiida::foreign::result_kept`] in the package (on the workflow's thread,
/// where the call is made inline); nothing asks elsewhere.
pub fn result_kept() -> bool {
    #[cfg(feature = "package")]
    return oxiida::foreign::result_kept();
    #[cfg(not(feature = "package"))]
    true
}

/// A pickle of at least this many bytes may stay unread until the
/// workflow reads its value (below that, reading it costs little).
#[cfg(feature = "package")]
const LAZY_BYTES: usize = 1 << 20;

/// The payload of a lazy result: its exact pickle ([`Exact`]), and the
/// object unpickled from it as it came, if it was ([`crate::pool::Answer::Streamed`]).
/// The package returns such a variable to Python as that object, the first
/// time, else by `pickle.loads`: never made into workflow values if the
/// workflow did not read it.
#[cfg(feature = "package")]
pub struct Pickled {
    pub pickle: Vec<u8>,
    object: parking_lot::Mutex<Option<Unpickled>>,
}

#[cfg(feature = "package")]
impl Pickled {
    /// The object unpickled already, once: a variable returned twice gets
    /// two objects, as two `pickle.loads` would give.
    pub fn take_object(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let unpickled = self.object.lock().take()?;
        unpickled.wait(py)
    }
}

/// Nothing: what a pickle is read into to learn whether it is *exact*,
/// read as plain values that `pickle.loads` would make the same Python
/// objects of: no tuple (the workflow's Array comes back a list), and
/// everything else [`decode`] reads.
#[cfg(feature = "package")]
#[derive(Clone)]
pub struct Exact;

#[cfg(feature = "package")]
impl crate::convert::Crossing for Exact {
    fn nil() -> Self {
        Exact
    }
    fn bool(_: bool) -> Self {
        Exact
    }
    fn int(_: i64) -> Self {
        Exact
    }
    fn float(_: f64) -> Self {
        Exact
    }
    fn str(_: &str) -> Self {
        Exact
    }
    fn array(_: Vec<Self>) -> Self {
        Exact
    }
    fn map(_: Vec<(String, Self)>) -> Self {
        Exact
    }
    fn to_python<'py>(&self, py: pyo3::Python<'py>) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
        Ok(py.None().into_bound(py))
    }
}

#[cfg(feature = "package")]
impl Plain for Exact {
    type Entries = ();
    fn shared_str(_: Arc<str>) -> Self {
        Exact
    }
    fn entry(_: &mut (), _: Arc<str>, _: Self) {}
    fn shared_map(_: ()) -> Self {
        Exact
    }
    fn tuple(_: Vec<Self>) -> Option<Self> {
        None
    }
    /// Checked, not kept: no allocation per str.
    fn text(bytes: &[u8]) -> Option<Arc<str>> {
        static NONE: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
        std::str::from_utf8(bytes).ok().map(|_| NONE.clone())
    }
}

/// Whether `data` is an exact plain pickle ([`Exact`]).
#[cfg(feature = "package")]
pub fn exact(data: &[u8]) -> bool {
    decode_with::<Exact>(data, &mut Vec::new()).is_some()
}

impl Plain for oxiida_abi::Value {
    type Entries = Vec<(String, Self)>;
    fn shared_str(s: Arc<str>) -> Self {
        Self::Str(s.to_string())
    }
    fn entry(entries: &mut Self::Entries, key: Arc<str>, value: Self) {
        entries.push((key.to_string(), value));
    }
    fn shared_map(entries: Self::Entries) -> Self {
        Self::Map(entries)
    }
}

#[cfg(feature = "package")]
impl Plain for oxiida::value::Value {
    type Entries = oxiida::value::Map;
    const UNPICKLE: bool = true;
    fn shared_str(s: Arc<str>) -> Self {
        Self::Str(s)
    }
    fn entry(entries: &mut Self::Entries, key: Arc<str>, value: Self) {
        // A pickled dict has each key once; as Python would, a key again keeps its place.
        entries.insert(key, value);
    }
    fn shared_map(entries: Self::Entries) -> Self {
        Self::map(entries)
    }
    fn lazy(pickle: Vec<u8>, object: Option<Unpickled>) -> Result<Self, (Vec<u8>, Option<Unpickled>)> {
        if pickle.len() < LAZY_BYTES || !exact(&pickle) {
            return Err((pickle, object));
        }
        let payload = Pickled { pickle, object: parking_lot::Mutex::new(object) };
        let handle = oxiida::value::Handle::lazy("python", "result", Box::new(payload), |payload| {
            let Some(Pickled { pickle, .. }) = payload.downcast_ref::<Pickled>() else { return Self::Nil };
            // Exact, so it reads (the same reader, the same bytes).
            decode(pickle).unwrap_or_default()
        });
        Ok(Self::Handle(Arc::new(handle)))
    }
}

/// As `convert.rs`: a value nested deeper than this does not cross.
const MAX_DEPTH: u32 = 100;

enum Item<V: Plain> {
    /// A finished value and its height (0 for a scalar or an empty container).
    Value(V, u32),
    /// A str, kept as text until it is known whether it is a dict key.
    Str(Arc<str>),
    /// A list being filled by APPEND(S), and its height so far.
    List(Vec<V>, u32),
    /// A dict being filled by SETITEM(S), and its height so far.
    Dict(V::Entries, u32),
    Mark,
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(bytes)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn peek(&self) -> Option<u8> {
        self.data.get(self.at).copied()
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

/// Finishes an item into a value, or `None` for a mark. A container met
/// again (the same list twice in a result) is left to Python: its memo slot
/// stays empty, since keeping every finished container there for that rare
/// case cost a clone per record.
#[inline]
fn finish<V: Plain>(item: Item<V>) -> Option<(V, u32)> {
    match item {
        Item::Value(v, h) => Some((v, h)),
        Item::Str(s) => Some((V::shared_str(s), 0)),
        Item::List(items, h) => Some((V::array(items), h)),
        Item::Dict(entries, h) => Some((V::shared_map(entries), h)),
        Item::Mark => None,
    }
}

/// What a memo slot holds.
#[derive(Clone)]
enum Memo<V> {
    Value(V, u32),
    Str(Arc<str>),
}

/// A MARK's place on the stack, and how many items (or pairs) after it were
/// read straight into the list or dict below it ([`fill_list`],
/// [`fill_dict`]). They belong there only if an APPENDS or SETITEMS closes
/// the mark.
#[derive(Clone, Copy)]
struct Mark {
    at: usize,
    filled: usize,
}

/// Pickle's batch: a list's or dict's items go in APPENDS or SETITEMS of
/// this many, the last one shorter. A MARK right after a container's
/// last batch is another value's (a tuple's), and is not read into it.
const BATCH: usize = 1000;

/// The items above the last mark, the mark removed: for a TUPLE, so a mark
/// whose items went into the container below it was misread (an empty
/// dict or a one-item list followed by a tuple): then Python decides.
fn since_mark<V: Plain>(stack: &mut Vec<Item<V>>, marks: &mut Vec<Mark>) -> Option<Vec<Item<V>>> {
    let Mark { at: mark, filled } = marks.pop()?;
    if filled > 0 || mark >= stack.len() {
        return None;
    }
    let items = stack.split_off(mark + 1);
    matches!(stack.pop()?, Item::Mark).then_some(items)
}

/// The items above the last mark, finished.
fn values_since_mark<V: Plain>(stack: &mut Vec<Item<V>>, marks: &mut Vec<Mark>) -> Option<Vec<(V, u32)>> {
    since_mark(stack, marks)?.into_iter().map(finish).collect()
}

fn str_of(bytes: &[u8]) -> Option<Arc<str>> {
    std::str::from_utf8(bytes).ok().map(Arc::from)
}

/// One scalar or str at the reader (with its MEMOIZE, if any), or `None`
/// with nothing read: anything else is the general loop's to read.
enum Next<V> {
    Value(V, u32),
    Str(Arc<str>),
}

/// Reads a scalar, a str or a memo reference, if that is what comes next:
/// the opcodes of a record's fields and of a list's numbers, read here
/// without going through the stack. `None` leaves the reader where it was
/// (anything else, or a truncated one, is the general loop's to read or
/// refuse).
#[inline(always)]
fn next<V: Plain>(r: &mut Reader<'_>, memo: &mut Vec<Option<Memo<V>>>) -> Option<Next<V>> {
    let rest = r.data.get(r.at..)?;
    let (&op, args) = rest.split_first()?;
    let int = |n: usize| args.get(..n);
    let (next, used) = match op {
        b'K' => (Next::Value(V::int((*args.first()?).into()), 0), 1),
        b'J' => (Next::Value(V::int(i32::from_le_bytes(int(4)?.try_into().ok()?).into()), 0), 4),
        b'M' => (Next::Value(V::int(u16::from_le_bytes(int(2)?.try_into().ok()?).into()), 0), 2),
        b'G' => (Next::Value(V::float(f64::from_be_bytes(int(8)?.try_into().ok()?)), 0), 8),
        b'N' => (Next::Value(V::nil(), 0), 0),
        0x88 => (Next::Value(V::bool(true), 0), 0),
        0x89 => (Next::Value(V::bool(false), 0), 0),
        0x8c | b'X' => {
            let (n, head): (usize, usize) =
                if op == 0x8c { (*args.first()? as usize, 1) } else { (u32::from_le_bytes(int(4)?.try_into().ok()?) as usize, 4) };
            let s = V::text(args.get(head..head.checked_add(n)?)?)?;
            let mut used = head + n;
            if args.get(used) == Some(&0x94) {
                used += 1;
                memo.push(Some(Memo::Str(s.clone())));
            }
            (Next::Str(s), used)
        }
        b'h' | b'j' => {
            let (slot, used): (usize, usize) =
                if op == b'h' { (*args.first()? as usize, 1) } else { (u32::from_le_bytes(int(4)?.try_into().ok()?) as usize, 4) };
            match memo.get(slot)? {
                Some(Memo::Str(s)) => (Next::Str(s.clone()), used),
                Some(Memo::Value(v, h)) => (Next::Value(v.clone(), *h), used),
                None => return None,
            }
        }
        _ => return None,
    };
    r.at += 1 + used;
    Some(next)
}

/// After a MARK above a list: reads what follows straight into the list
/// while it is scalars, strs or memo references (a list of numbers, of
/// names), up to anything else, which the general loop reads from there
/// (a nested container, the closing APPENDS). How many items were read.
fn fill_list<V: Plain>(r: &mut Reader<'_>, items: &mut Vec<V>, height: &mut u32, memo: &mut Vec<Option<Memo<V>>>) -> usize {
    let before = items.len();
    loop {
        skip_frames(r);
        match next(r, memo) {
            Some(Next::Value(v, h)) => {
                items.push(v);
                *height = (*height).max(h + 1);
            }
            Some(Next::Str(s)) => {
                items.push(V::shared_str(s));
                *height = (*height).max(1);
            }
            None => return items.len() - before,
        }
    }
}

/// After a MARK above a dict: reads what follows straight into the dict
/// while keys are strs and values scalars, strs or memo references (a
/// record of numbers and names). A key whose value is anything else is
/// pushed, and the general loop pairs it with the value it builds; a key
/// that is not a str is pushed too, for the general loop to refuse. How
/// many pairs were read.
fn fill_dict<V: Plain>(
    r: &mut Reader<'_>,
    entries: &mut V::Entries,
    height: &mut u32,
    stack: &mut Vec<Item<V>>,
    memo: &mut Vec<Option<Memo<V>>>,
) -> usize {
    let mut filled = 0;
    loop {
        skip_frames(r);
        let key = match next(r, memo) {
            Some(Next::Str(key)) => key,
            Some(Next::Value(v, h)) => {
                stack.push(Item::Value(v, h));
                return filled;
            }
            None => return filled,
        };
        skip_frames(r);
        let (v, h) = match next(r, memo) {
            Some(Next::Value(v, h)) => (v, h),
            Some(Next::Str(s)) => (V::shared_str(s), 0),
            None => {
                stack.push(Item::Str(key));
                return filled;
            }
        };
        V::entry(entries, key, v);
        *height = (*height).max(h + 1);
        filled += 1;
    }
}

/// FRAME opcodes (protocol 4 and up), which come between any two others.
#[inline]
fn skip_frames(r: &mut Reader<'_>) {
    while r.peek() == Some(0x95) && r.data.len().saturating_sub(r.at) >= 9 {
        r.at += 9;
    }
}

/// The value a plain pickle holds, or `None` (then unpickle it in Python).
pub fn decode<V: Plain>(data: &[u8]) -> Option<V> {
    let mut memo = Vec::new();
    let value = decode_with(data, &mut memo);
    if memo.len() >= 10_000 {
        // A reference to each str and finished value of the result: freed
        // off the workflow's thread (they are only counts dropped, but
        // a hundred thousand of them, on memory no longer in cache).
        crate::convert::discard_later(Box::new(memo));
    }
    value
}

fn decode_with<V: Plain>(data: &[u8], memo: &mut Vec<Option<Memo<V>>>) -> Option<V> {
    let mut r = Reader { data, at: 0 };
    let mut stack: Vec<Item<V>> = Vec::new();
    let mut marks: Vec<Mark> = Vec::new();
    // The stack index of the list or dict a MARK may now open a batch of:
    // one just made, or one whose last batch was whole.
    let mut open: Option<usize> = None;
    loop {
        let scalar = |v: V| Item::Value(v, 0);
        match r.u8()? {
            0x80 => drop(r.u8()?),    // PROTO
            0x95 => drop(r.take(8)?), // FRAME
            b'N' => stack.push(scalar(V::nil())),
            0x88 => stack.push(scalar(V::bool(true))),
            0x89 => stack.push(scalar(V::bool(false))),
            b'J' => stack.push(scalar(V::int(i32::from_le_bytes(r.array()?).into()))),
            b'K' => stack.push(scalar(V::int(r.u8()?.into()))),
            b'M' => stack.push(scalar(V::int(u16::from_le_bytes(r.array()?).into()))),
            0x8a => {
                // LONG1: n bytes of little-endian two's complement.
                let n = r.u8()? as usize;
                let bytes = r.take(n)?;
                if n > 8 {
                    return None;
                }
                let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
                let mut full = [fill; 8];
                full[..n].copy_from_slice(bytes);
                stack.push(scalar(V::int(i64::from_le_bytes(full))));
            }
            b'G' => stack.push(scalar(V::float(f64::from_be_bytes(r.array()?)))),
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(Item::Str(V::text(r.take(n)?)?));
            }
            b'X' => {
                let n = u32::from_le_bytes(r.array()?) as usize;
                stack.push(Item::Str(V::text(r.take(n)?)?));
            }
            0x8d => {
                let n = usize::try_from(u64::from_le_bytes(r.array()?)).ok()?;
                stack.push(Item::Str(V::text(r.take(n)?)?));
            }
            b']' => {
                open = Some(stack.len());
                stack.push(Item::List(Vec::new(), 0));
            }
            b'}' => {
                open = Some(stack.len());
                stack.push(Item::Dict(V::Entries::default(), 0));
            }
            b')' => stack.push(scalar(V::tuple(Vec::new())?)),
            b'(' => {
                // The items of a list or a dict: read straight into it, in order.
                let at = stack.len();
                let batch = open.take() == at.checked_sub(1);
                let filled = match stack.last_mut().filter(|_| batch) {
                    Some(Item::List(items, height)) => fill_list(&mut r, items, height, memo),
                    Some(Item::Dict(..)) => {
                        let Some(Item::Dict(mut entries, mut height)) = stack.pop() else { return None };
                        let mut pushed = Vec::new();
                        let filled = fill_dict(&mut r, &mut entries, &mut height, &mut pushed, memo);
                        stack.push(Item::Dict(entries, height));
                        stack.push(Item::Mark);
                        stack.append(&mut pushed);
                        marks.push(Mark { at, filled });
                        continue;
                    }
                    _ => 0,
                };
                marks.push(Mark { at, filled });
                stack.push(Item::Mark);
            }
            b'a' => {
                open = None; // a list of one item: whole
                let (v, h) = finish(stack.pop()?)?;
                let Some(Item::List(items, height)) = stack.last_mut() else { return None };
                items.push(v);
                *height = (*height).max(h + 1);
            }
            b'e' => {
                // APPENDS: the items above the mark go into the list below it, in place.
                let Mark { at: mark, filled } = marks.pop()?;
                let (below, above) = stack.split_at_mut(mark);
                let (Some(Item::List(items, height)), Some((Item::Mark, above))) = (below.last_mut(), above.split_first_mut()) else {
                    return None;
                };
                open = (filled + above.len() == BATCH).then_some(mark - 1);
                items.reserve(above.len());
                for item in above {
                    let (v, h) = match std::mem::replace(item, Item::Mark) {
                        Item::Value(v, h) => (v, h),
                        other => finish(other)?,
                    };
                    items.push(v);
                    *height = (*height).max(h + 1);
                }
                stack.truncate(mark);
            }
            b's' => {
                open = None; // a dict of one item: whole
                let (v, h) = finish(stack.pop()?)?;
                let Item::Str(key) = stack.pop()? else { return None };
                let Some(Item::Dict(entries, height)) = stack.last_mut() else { return None };
                V::entry(entries, key, v);
                *height = (*height).max(h + 1);
            }
            b'u' => {
                // SETITEMS: the pairs above the mark go into the dict below it, in place.
                let Mark { at: mark, filled } = marks.pop()?;
                let (below, above) = stack.split_at_mut(mark);
                let (Some(Item::Dict(entries, height)), Some((Item::Mark, above))) = (below.last_mut(), above.split_first_mut()) else {
                    return None;
                };
                if above.len() % 2 != 0 {
                    return None;
                }
                open = (filled + above.len() / 2 == BATCH).then_some(mark - 1);
                for pair in above.chunks_exact_mut(2) {
                    let Item::Str(key) = std::mem::replace(&mut pair[0], Item::Mark) else { return None };
                    let (v, h) = finish(std::mem::replace(&mut pair[1], Item::Mark))?;
                    V::entry(entries, key, v);
                    *height = (*height).max(h + 1);
                }
                stack.truncate(mark);
            }
            op @ (0x85..=0x87 | b't') => {
                let values = if op == b't' {
                    values_since_mark(&mut stack, &mut marks)?
                } else {
                    let n = (op - 0x84) as usize;
                    let at = stack.len().checked_sub(n)?;
                    let items: Vec<Item<V>> = stack.drain(at..).collect();
                    items.into_iter().map(|i| finish(i)).collect::<Option<_>>()?
                };
                let height = values.iter().map(|(_, h)| h + 1).max().unwrap_or(0);
                stack.push(Item::Value(V::tuple(values.into_iter().map(|(v, _)| v).collect())?, height));
            }
            0x94 => {
                // MEMOIZE the top: a finished value now, a container once finished.
                match stack.last()? {
                    Item::Value(v, h) => memo.push(Some(Memo::Value(v.clone(), *h))),
                    Item::Str(s) => memo.push(Some(Memo::Str(s.clone()))),
                    Item::List(..) | Item::Dict(..) => memo.push(None),
                    Item::Mark => return None,
                }
            }
            op @ (b'h' | b'j') => {
                let slot = if op == b'h' { r.u8()? as usize } else { u32::from_le_bytes(r.array()?) as usize };
                // A container still being built (met twice, or containing itself): Python decides.
                stack.push(match memo.get(slot)?.clone()? {
                    Memo::Value(v, h) => Item::Value(v, h),
                    Memo::Str(s) => Item::Str(s),
                });
            }
            b'.' => {
                let top = stack.pop()?;
                if !stack.is_empty() {
                    return None;
                }
                let (value, height) = finish(top)?;
                return (height <= MAX_DEPTH).then_some(value);
            }
            _ => return None,
        }
        if stack.last().is_some_and(|top| match top {
            Item::Value(_, h) | Item::List(_, h) | Item::Dict(_, h) => *h > MAX_DEPTH,
            Item::Str(_) | Item::Mark => false,
        }) {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decode;
    use oxiida_abi::Value;

    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    }

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    /// `pickle.dumps([1, 300, 70000, -5, 2**40, 1.5, True, None, 'é', {'a': 1, 'b': 'x'},
    /// [{'k': 1, 'j': [2]}, {'k': 2, 'j': []}], ('t', 1, 2, 3), 'é'], 5)`: every
    /// opcode the direct read takes, memo references of keys and of a str value.
    const MIXED: &str = "80059570000000000000005d94284b014d2c014a701101004afbffffff8a06000000000001473ff8000000000000884e8c02c3a9947d94288c0161944b018c0162948c017894755d94287d94288c016b944b018c016a945d944b0261757d942868084b0268095d947565288c0174944b014b024b0374946801652e";

    #[test]
    fn a_plain_pickle_reads_as_its_values() {
        let s = |t: &str| Value::Str(t.into());
        let expected = Value::Array(vec![
            Value::Int(1),
            Value::Int(300),
            Value::Int(70000),
            Value::Int(-5),
            Value::Int(1 << 40),
            Value::Float(1.5),
            Value::Bool(true),
            Value::Nil,
            s("é"),
            map(&[("a", Value::Int(1)), ("b", s("x"))]),
            Value::Array(vec![
                map(&[("k", Value::Int(1)), ("j", Value::Array(vec![Value::Int(2)]))]),
                map(&[("k", Value::Int(2)), ("j", Value::Array(vec![]))]),
            ]),
            Value::Array(vec![s("t"), Value::Int(1), Value::Int(2), Value::Int(3)]),
            s("é"),
        ]);
        assert_eq!(decode::<Value>(&bytes(MIXED)), Some(expected));
    }

    #[test]
    fn a_tuple_after_a_mark_above_a_container_is_left_to_python() {
        // [(1, 2, 3, 4)] and [{}, ('a', 1, 'b', 2)]: the MARK after the list
        // or the empty dict is the tuple's, not an APPENDS or SETITEMS.
        assert_eq!(decode::<Value>(&bytes("8005950f000000000000005d94284b014b024b034b047494612e")), None);
        assert_eq!(decode::<Value>(&bytes("80059516000000000000005d94287d94288c0161944b018c0162944b027494652e")), None);
    }

    #[test]
    fn batches_of_a_thousand_are_read_into_the_same_list() {
        // Built by hand: a list of 2500 numbers in three APPENDS (1000,
        // 1000, 500), as pickle batches them, then a tuple in an APPEND.
        let mut p = vec![0x80, 5, b']', 0x94];
        for batch in [0..1000, 1000..2000, 2000..2500] {
            p.push(b'(');
            for i in batch {
                p.push(b'M');
                p.extend_from_slice(&(i as u16).to_le_bytes());
            }
            p.push(b'e');
        }
        p.extend_from_slice(&[b'(', b'K', 1, b'K', 2, b'K', 3, b'K', 4, b't', b'a', b'.']);
        let mut items: Vec<Value> = (0..2500).map(Value::Int).collect();
        items.push(Value::Array((1..5).map(Value::Int).collect()));
        assert_eq!(decode::<Value>(&p), Some(Value::Array(items)));
        // A list of exactly 1000 then a tuple: the MARK after a whole batch
        // is read into the list, then given back to Python by the tuple.
        let mut p = vec![0x80, 5, b']', 0x94, b'('];
        p.extend((0..1000).flat_map(|_| [b'K', 7]));
        p.extend_from_slice(&[b'e', b'(', b'K', 1, b'K', 2, b'K', 3, b'K', 4, b't', b'a', b'.']);
        assert_eq!(decode::<Value>(&p), None);
    }

    #[test]
    fn a_truncated_or_damaged_pickle_gives_none_or_a_value_never_a_panic() {
        let whole = bytes(MIXED);
        for end in 0..whole.len() {
            assert_eq!(decode::<Value>(&whole[..end]), None, "the first {end} bytes");
        }
        for at in 0..whole.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = whole.clone();
                damaged[at] ^= flip;
                let _ = decode::<Value>(&damaged);
            }
        }
    }
}
