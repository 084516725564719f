//! The language's Map: String keys in insertion order, made light for the
//! common case of a small record (`{"i": 1, "s": "1"}`), of which a result
//! may hold 1e5 or more.
//!
//! The entries sit in one `Vec` in insertion order and a key is found by
//! comparing keys one by one while there are at most [`LINEAR`] of them. A
//! larger map also keeps a hash index (entry positions in a
//! `hashbrown::HashTable`), built the first time it grows past [`LINEAR`]
//! and dropped when it shrinks back. A small map is thus 48 bytes with its
//! `Arc` plus its entries (40 bytes each): 128 bytes in two allocations for
//! a two-entry record, where an `IndexMap` took about 290 in three (its
//! `Arc`, its entries with their hashes, its index table) when filled one
//! entry at a time. Facts and figures:
//! ARCHITECTURE.md, "A Map is a list of entries, indexed only when large".
//!
//! The semantics are `IndexMap`'s, which the language had before: iteration
//! in insertion order, `insert` of a present key replaces its value where it
//! stands, `shift_remove` keeps the others' order, equality ignores order.

use std::fmt;
use std::hash::BuildHasher;
use std::iter::FusedIterator;
use std::sync::Arc;

use hashbrown::HashTable;

use super::Value;

/// Up to this many entries a key is looked for by comparing keys in turn;
/// past it, through a hash index. Comparing a short key costs a length
/// check and a `memcmp`, hashing it with SipHash and probing a table more
/// (`cargo bench -p oxiida --bench map`, 1e5 records, every key and one
/// absent key looked up: with 17 to 32 keys, comparison took 0.67-1.10x
/// the time `IndexMap` took, this map's index 1.3-1.9x; building records
/// of up to 32 keys took about half the time and memory without an index).
pub const LINEAR: usize = 32;

type Entry = (Arc<str>, Value);

/// String keys in insertion order; see the module's documentation.
#[derive(Default, Clone)]
pub struct Map {
    entries: Vec<Entry>,
    /// Present exactly when `entries.len() > LINEAR`.
    index: Option<Box<Index>>,
}

/// Each entry's position, found by its key's hash. Its own random hasher:
/// keys come from outside (files, results), so they must not be able to
/// choose their collisions.
#[derive(Clone)]
struct Index {
    table: HashTable<usize>,
    hasher: std::hash::RandomState,
}

impl Index {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn of(entries: &[Entry]) -> Box<Index> {
        let hasher = std::hash::RandomState::new();
        let mut table = HashTable::with_capacity(entries.len());
        for (i, (k, _)) in entries.iter().enumerate() {
            table.insert_unique(hasher.hash_one(&**k), i, |&j| hasher.hash_one(&*entries[j].0));
        }
        Box::new(Index { table, hasher })
    }
}

/// Keys shared between records (a result's reader hands out one `Arc` per
/// distinct key) are equal at their first byte's address.
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.as_ptr() == b.as_ptr() || a == b)
}

impl Map {
    pub const fn new() -> Map {
        Map { entries: Vec::new(), index: None }
    }

    /// Room for `n` entries without growing (the index, if `n` needs one, is
    /// still built when the map grows past [`LINEAR`]).
    pub fn with_capacity(n: usize) -> Map {
        Map { entries: Vec::with_capacity(n), index: None }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Room for `additional` more entries.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
        if let Some(index) = &mut self.index {
            let Index { table, hasher } = &mut **index;
            let entries = &self.entries;
            table.reserve(additional, |&j| hasher.hash_one(&*entries[j].0));
        }
    }

    /// The position of `key`, if present.
    pub fn get_index_of(&self, key: &str) -> Option<usize> {
        match &self.index {
            None => self.entries.iter().position(|(k, _)| same_key(k, key)),
            Some(index) => index.table.find(index.hash(key), |&i| same_key(&self.entries[i].0, key)).copied(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.get_index_of(key).map(|i| &self.entries[i].1)
    }

    pub fn get_key_value(&self, key: &str) -> Option<(&Arc<str>, &Value)> {
        self.get_index_of(key).map(|i| {
            let (k, v) = &self.entries[i];
            (k, v)
        })
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.get_index_of(key).map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get_index_of(key).is_some()
    }

    /// The entry at position `i` in insertion order.
    pub fn get_index(&self, i: usize) -> Option<(&Arc<str>, &Value)> {
        self.entries.get(i).map(|(k, v)| (k, v))
    }

    /// Sets `key` to `value`. A key already present keeps its place and
    /// its first `Arc`, and its old value is returned; a new one goes last.
    pub fn insert(&mut self, key: Arc<str>, value: Value) -> Option<Value> {
        let hash = match &self.index {
            None => {
                if let Some((_, v)) = self.entries.iter_mut().find(|(k, _)| same_key(k, &key)) {
                    return Some(std::mem::replace(v, value));
                }
                self.push(key, value);
                if self.entries.len() > LINEAR {
                    self.index = Some(Index::of(&self.entries));
                }
                return None;
            }
            Some(index) => index.hash(&key),
        };
        let Some(index) = &mut self.index else { unreachable!("matched above") };
        let Index { table, hasher } = &mut **index;
        let entries = &mut self.entries;
        if let Some(&i) = table.find(hash, |&i| same_key(&entries[i].0, &key)) {
            return Some(std::mem::replace(&mut entries[i].1, value));
        }
        table.insert_unique(hash, entries.len(), |&j| hasher.hash_one(&*entries[j].0));
        self.push(key, value);
        None
    }

    /// Appends a new entry. The first allocation holds two entries, not
    /// `Vec`'s four: most maps filled one entry at a time (a record read
    /// from a result) are small, and the two spare entries would be 80 bytes
    /// of each. From there the room doubles, as `Vec`'s does.
    #[inline]
    fn push(&mut self, key: Arc<str>, value: Value) {
        let len = self.entries.len();
        if len == self.entries.capacity() {
            self.entries.reserve_exact(len.max(2));
        }
        self.entries.push((key, value));
    }

    /// Removes `key` and returns its value; the entries after it move up one
    /// place, keeping the order (O(n), as `IndexMap::shift_remove`).
    pub fn shift_remove(&mut self, key: &str) -> Option<Value> {
        let at = self.get_index_of(key)?;
        let (_, value) = self.entries.remove(at);
        if self.entries.len() <= LINEAR {
            self.index = None;
        } else if let Some(index) = &mut self.index {
            let hash = index.hash(key);
            if let Ok(found) = index.table.find_entry(hash, |&i| i == at) {
                found.remove();
            }
            for i in index.table.iter_mut() {
                if *i > at {
                    *i -= 1;
                }
            }
        }
        Some(value)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.index = None;
    }

    /// Whether a hash index is kept (for tests and measurements).
    pub fn is_indexed(&self) -> bool {
        self.index.is_some()
    }

    /// The entries in insertion order.
    pub fn as_slice(&self) -> &[(Arc<str>, Value)] {
        &self.entries
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries.iter())
    }

    pub fn keys(&self) -> Keys<'_> {
        Keys(self.entries.iter())
    }

    pub fn values(&self) -> Values<'_> {
        Values(self.entries.iter())
    }

    /// The values in insertion order, to change in place (keys stay).
    pub fn values_mut(&mut self) -> impl ExactSizeIterator<Item = &mut Value> + DoubleEndedIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// As `IndexMap`'s: the same keys with equal values, in any order.
impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl FromIterator<(Arc<str>, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (Arc<str>, Value)>>(iter: I) -> Map {
        let iter = iter.into_iter();
        let mut map = Map::with_capacity(iter.size_hint().0);
        map.extend(iter);
        map
    }
}

impl Extend<(Arc<str>, Value)> for Map {
    fn extend<I: IntoIterator<Item = (Arc<str>, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<const N: usize> From<[(Arc<str>, Value); N]> for Map {
    fn from(entries: [(Arc<str>, Value); N]) -> Map {
        entries.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a Arc<str>, &'a Value);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Map {
    type Item = (Arc<str>, Value);
    type IntoIter = std::vec::IntoIter<(Arc<str>, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// The entries in insertion order, as `(&key, &value)`.
#[derive(Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, Entry>);

/// The keys in insertion order.
#[derive(Clone)]
pub struct Keys<'a>(std::slice::Iter<'a, Entry>);

/// The values in insertion order.
#[derive(Clone)]
pub struct Values<'a>(std::slice::Iter<'a, Entry>);

macro_rules! entry_iterator {
    ($name:ident, $item:ty, |$e:ident| $out:expr) => {
        impl<'a> Iterator for $name<'a> {
            type Item = $item;
            #[inline]
            fn next(&mut self) -> Option<$item> {
                self.0.next().map(|$e| $out)
            }
            fn size_hint(&self) -> (usize, Option<usize>) {
                self.0.size_hint()
            }
            fn nth(&mut self, n: usize) -> Option<$item> {
                self.0.nth(n).map(|$e| $out)
            }
        }
        impl DoubleEndedIterator for $name<'_> {
            fn next_back(&mut self) -> Option<Self::Item> {
                self.0.next_back().map(|$e| $out)
            }
        }
        impl ExactSizeIterator for $name<'_> {}
        impl FusedIterator for $name<'_> {}
    };
}

entry_iterator!(Iter, (&'a Arc<str>, &'a Value), |e| (&e.0, &e.1));
entry_iterator!(Keys, &'a Arc<str>, |e| &e.0);
entry_iterator!(Values, &'a Value, |e| &e.1);

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use proptest::prelude::*;

    fn key(i: usize) -> Arc<str> {
        Arc::from(format!("k{i}"))
    }

    fn keys(m: &Map) -> Vec<String> {
        m.keys().map(|k| k.to_string()).collect()
    }

    #[test]
    fn iterates_in_insertion_order_and_replaces_in_place() {
        let mut m = Map::new();
        assert!(m.is_empty());
        assert_eq!(m.insert("b".into(), Value::Int(1)), None);
        assert_eq!(m.insert("a".into(), Value::Int(2)), None);
        assert_eq!(m.insert("c".into(), Value::Int(3)), None);
        assert_eq!(m.insert("a".into(), Value::str("x")), Some(Value::Int(2)));
        assert_eq!(keys(&m), ["b", "a", "c"]);
        assert_eq!(m.get("a"), Some(&Value::str("x")));
        assert_eq!(m.get("z"), None);
        assert!(m.contains_key("c") && !m.contains_key(""));
        assert_eq!(m.get_index(2).map(|(k, v)| (&**k, v)), Some(("c", &Value::Int(3))));
        assert_eq!(m.len(), 3);
        assert_eq!(format!("{m:?}"), r#"{"b": Int(1), "a": Str("x"), "c": Int(3)}"#);
    }

    #[test]
    fn a_small_map_takes_two_entries_first() {
        let mut m = Map::new();
        m.insert("i".into(), Value::Int(1));
        m.insert("s".into(), Value::str("1"));
        assert_eq!(m.capacity(), 2);
        m.insert("t".into(), Value::Nil);
        assert_eq!(m.capacity(), 4);
        assert_eq!(std::mem::size_of::<Map>(), 32);
    }

    #[test]
    fn the_index_is_built_past_the_threshold_and_dropped_below_it() {
        let mut m = Map::new();
        for i in 0..LINEAR {
            m.insert(key(i), Value::Int(i as i64));
        }
        assert!(!m.is_indexed());
        m.insert(key(LINEAR), Value::Int(LINEAR as i64));
        assert!(m.is_indexed());
        for i in 0..=LINEAR {
            assert_eq!(m.get(&key(i)), Some(&Value::Int(i as i64)), "key {i} after the switch");
        }
        // Replacing through the index keeps the place.
        assert_eq!(m.insert(key(0), Value::Nil), Some(Value::Int(0)));
        assert_eq!(keys(&m)[0], "k0");
        assert_eq!(m.len(), LINEAR + 1);
        // Removing keeps the order and the index right, then drops it.
        assert_eq!(m.shift_remove("k3"), Some(Value::Int(3)));
        assert!(!m.is_indexed());
        assert_eq!(m.get("k8"), Some(&Value::Int(8)));
        assert_eq!(m.get("k3"), None);
        for i in 100..100 + 2 * LINEAR {
            m.insert(key(i), Value::Int(i as i64));
        }
        assert!(m.is_indexed());
        assert_eq!(m.shift_remove("k1"), Some(Value::Int(1)));
        assert!(m.is_indexed());
        assert_eq!(m.get("k131"), Some(&Value::Int(131)));
        assert_eq!(m.get_index_of("k2"), Some(1));
        assert_eq!(m.shift_remove("nope"), None);
        let copy = m.clone();
        assert!(copy.is_indexed());
        assert_eq!(copy.get("k110"), Some(&Value::Int(110)));
        m.clear();
        assert!(m.is_empty() && !m.is_indexed());
    }

    #[test]
    fn equality_ignores_order_and_compares_values_as_the_language_does() {
        let a: Map = [("x".into(), Value::Int(1)), ("y".into(), Value::str("s"))].into();
        let b: Map = [("y".into(), Value::str("s")), ("x".into(), Value::Float(1.0))].into();
        assert_eq!(a, b);
        assert_eq!(Value::map(a.clone()), Value::map(b.clone()));
        let c: Map = [("x".into(), Value::Int(1))].into();
        assert_ne!(a, c);
        let d: Map = [("x".into(), Value::Int(1)), ("z".into(), Value::str("s"))].into();
        assert_ne!(a, d);
        // Large maps too, through the index.
        let big: Map = (0..40).map(|i| (key(i), Value::Int(i as i64))).collect();
        let rev: Map = (0..40).rev().map(|i| (key(i), Value::Int(i as i64))).collect();
        assert_eq!(big, rev);
    }

    #[test]
    fn collecting_repeated_keys_keeps_the_first_place_and_the_last_value() {
        let m: Map = [("a", 1), ("b", 2), ("a", 3)].into_iter().map(|(k, v)| (Arc::from(k), Value::Int(v))).collect();
        assert_eq!(keys(&m), ["a", "b"]);
        assert_eq!(m.get("a"), Some(&Value::Int(3)));
        let owned: Vec<(Arc<str>, Value)> = m.into_iter().collect();
        assert_eq!(owned.len(), 2);
    }

    const KEYS: usize = 2 * LINEAR;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, i64),
        Remove(usize),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        // 64 keys, inserted twice as often as removed: maps settle about
        // 43 entries, so they cross the threshold (32) both ways.
        prop_oneof![
            40 => (0..KEYS, any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            20 => (0..KEYS).prop_map(Op::Remove),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every step agrees with `IndexMap` (the map the language had):
        /// the same entries in the same order, the same answers.
        #[test]
        fn behaves_as_indexmap(ops in prop::collection::vec(op(), 0..300)) {
            let mut ours = Map::new();
            let mut reference: IndexMap<Arc<str>, i64> = IndexMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let was = ours.insert(key(k), Value::Int(v));
                        prop_assert_eq!(was, reference.insert(key(k), v).map(Value::Int));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(ours.shift_remove(&key(k)), reference.shift_remove(&key(k)).map(Value::Int));
                    }
                    Op::Clear => {
                        ours.clear();
                        reference.clear();
                    }
                }
                prop_assert_eq!(ours.len(), reference.len());
                prop_assert_eq!(ours.is_indexed(), ours.len() > LINEAR);
                let theirs: Vec<(Arc<str>, Value)> = reference.iter().map(|(k, v)| (k.clone(), Value::Int(*v))).collect();
                prop_assert_eq!(ours.as_slice(), &theirs[..]);
                for k in 0..KEYS {
                    let theirs = reference.get(&*key(k)).map(|v| Value::Int(*v));
                    prop_assert_eq!(ours.get(&key(k)), theirs.as_ref());
                    prop_assert_eq!(ours.get_index_of(&key(k)), reference.get_index_of(&*key(k)));
                }
            }
            let copy = ours.clone();
            prop_assert_eq!(&copy, &ours);
        }
    }
}
