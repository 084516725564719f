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

/// A MARK's place on the stack, and whether items after it were read
/// straight into the list or dict below it ([`fill_list`], [`fill_dict`]).
/// Those items belong there only if an APPENDS or SETITEMS closes the mark.
#[derive(Clone, Copy)]
struct Mark {
    at: usize,
    filled: bool,
}

/// The items above the last mark, the mark removed: for a TUPLE, so a mark
/// whose items went into the container below it was misread (an empty
/// dict or a one-item list followed by a tuple): then Python decides.
fn since_mark<V: Plain>(stack: &mut Vec<Item<V>>, marks: &mut Vec<Mark>) -> Option<Vec<Item<V>>> {
    let Mark { at: mark, filled } = marks.pop()?;
    if filled || mark >= stack.len() {
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
            let s = str_of(args.get(head..head.checked_add(n)?)?)?;
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
/// (a nested container, the closing APPENDS). Whether any item was read.
fn fill_list<V: Plain>(r: &mut Reader<'_>, items: &mut Vec<V>, height: &mut u32, memo: &mut Vec<Option<Memo<V>>>) -> bool {
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
            None => return items.len() > before,
        }
    }
}

/// After a MARK above a dict: reads what follows straight into the dict
/// while keys are strs and values scalars, strs or memo references (a
/// record of numbers and names). A key whose value is anything else is
/// pushed, and the general loop pairs it with the value it builds; a key
/// that is not a str is pushed too, for the general loop to refuse. Whether
/// any pair was read.
fn fill_dict<V: Plain>(
    r: &mut Reader<'_>,
    entries: &mut V::Entries,
    height: &mut u32,
    stack: &mut Vec<Item<V>>,
    memo: &mut Vec<Option<Memo<V>>>,
) -> bool {
    let mut filled = false;
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
        filled = true;
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
                stack.push(Item::Str(str_of(r.take(n)?)?));
            }
            b'X' => {
                let n = u32::from_le_bytes(r.array()?) as usize;
                stack.push(Item::Str(str_of(r.take(n)?)?));
            }
            0x8d => {
                let n = usize::try_from(u64::from_le_bytes(r.array()?)).ok()?;
                stack.push(Item::Str(str_of(r.take(n)?)?));
            }
            b']' => stack.push(Item::List(Vec::new(), 0)),
            b'}' => stack.push(Item::Dict(V::Entries::default(), 0)),
            b')' => stack.push(scalar(V::array(Vec::new()))),
            b'(' => {
                // The items of a list or a dict: read straight into it, in order.
                let at = stack.len();
                let filled = match stack.last_mut() {
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
                    _ => false,
                };
                marks.push(Mark { at, filled });
                stack.push(Item::Mark);
            }
            b'a' => {
                let (v, h) = finish(stack.pop()?)?;
                let Some(Item::List(items, height)) = stack.last_mut() else { return None };
                items.push(v);
                *height = (*height).max(h + 1);
            }
            b'e' => {
                // APPENDS: the items above the mark go into the list below it, in place.
                let mark = marks.pop()?.at;
                let (below, above) = stack.split_at_mut(mark);
                let (Some(Item::List(items, height)), Some((Item::Mark, above))) = (below.last_mut(), above.split_first_mut()) else {
                    return None;
                };
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
                let (v, h) = finish(stack.pop()?)?;
                let Item::Str(key) = stack.pop()? else { return None };
                let Some(Item::Dict(entries, height)) = stack.last_mut() else { return None };
                V::entry(entries, key, v);
                *height = (*height).max(h + 1);
            }
            b'u' => {
                // SETITEMS: the pairs above the mark go into the dict below it, in place.
                let mark = marks.pop()?.at;
                let (below, above) = stack.split_at_mut(mark);
                let (Some(Item::Dict(entries, height)), Some((Item::Mark, above))) = (below.last_mut(), above.split_first_mut()) else {
                    return None;
                };
                if above.len() % 2 != 0 {
                    return None;
                }
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
                stack.push(Item::Value(V::array(values.into_iter().map(|(v, _)| v).collect()), height));
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
