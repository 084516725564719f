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
/// strings arrive shared: a dict key met again is the same `Arc`.
pub trait Plain: crate::convert::Crossing + Clone {
    fn shared_str(s: Arc<str>) -> Self;
    fn shared_map(entries: Vec<(Arc<str>, Self)>) -> Self;
}

impl Plain for oxiida_abi::Value {
    fn shared_str(s: Arc<str>) -> Self {
        Self::Str(s.to_string())
    }
    fn shared_map(entries: Vec<(Arc<str>, Self)>) -> Self {
        Self::Map(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
}

#[cfg(feature = "package")]
impl Plain for oxiida::value::Value {
    fn shared_str(s: Arc<str>) -> Self {
        Self::Str(s)
    }
    fn shared_map(entries: Vec<(Arc<str>, Self)>) -> Self {
        Self::map(entries.into_iter().collect())
    }
}

/// As `convert.rs`: a value nested deeper than this does not cross.
const MAX_DEPTH: u32 = 100;

enum Item<V> {
    /// A finished value and its height (0 for a scalar or an empty container).
    Value(V, u32),
    /// A str, kept as text until it is known whether it is a dict key.
    Str(Arc<str>),
    /// A list being filled by APPEND(S), and its height so far.
    List(Vec<V>, u32),
    /// A dict being filled by SETITEM(S), and its height so far.
    Dict(Vec<(Arc<str>, V)>, u32),
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

/// The items above the last mark, the mark removed.
fn since_mark<V>(stack: &mut Vec<Item<V>>, marks: &mut Vec<usize>) -> Option<Vec<Item<V>>> {
    let mark = marks.pop()?;
    if mark >= stack.len() {
        return None;
    }
    let items = stack.split_off(mark + 1);
    matches!(stack.pop()?, Item::Mark).then_some(items)
}

/// The items above the last mark, finished.
fn values_since_mark<V: Plain>(stack: &mut Vec<Item<V>>, marks: &mut Vec<usize>) -> Option<Vec<(V, u32)>> {
    since_mark(stack, marks)?.into_iter().map(finish).collect()
}

fn str_of(bytes: &[u8]) -> Option<Arc<str>> {
    std::str::from_utf8(bytes).ok().map(Arc::from)
}

/// The value a plain pickle holds, or `None` (then unpickle it in Python).
pub fn decode<V: Plain>(data: &[u8]) -> Option<V> {
    let mut r = Reader { data, at: 0 };
    let mut stack: Vec<Item<V>> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: Vec<Option<Memo<V>>> = Vec::new();
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
            b'}' => stack.push(Item::Dict(Vec::new(), 0)),
            b')' => stack.push(scalar(V::array(Vec::new()))),
            b'(' => {
                marks.push(stack.len());
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
                let mark = marks.pop()?;
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
                entries.push((key, v));
                *height = (*height).max(h + 1);
            }
            b'u' => {
                // SETITEMS: the pairs above the mark go into the dict below it, in place.
                let mark = marks.pop()?;
                let (below, above) = stack.split_at_mut(mark);
                let (Some(Item::Dict(entries, height)), Some((Item::Mark, above))) = (below.last_mut(), above.split_first_mut()) else {
                    return None;
                };
                if above.len() % 2 != 0 {
                    return None;
                }
                entries.reserve(above.len() / 2);
                for pair in above.chunks_exact_mut(2) {
                    let Item::Str(key) = std::mem::replace(&mut pair[0], Item::Mark) else { return None };
                    let (v, h) = finish(std::mem::replace(&mut pair[1], Item::Mark))?;
                    entries.push((key, v));
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
