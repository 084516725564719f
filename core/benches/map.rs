//! The runtime's `Map` against the `IndexMap` it replaced, in one run:
//! 1e5 records of k String keys filled one entry at a time with the keys'
//! `Arc`s shared (as a result's reader fills them), then every key of
//! every record and one absent key looked up by a fresh `&str` (as `r.key`
//! and `"k" in r` do), then freed.
//! Prints bytes and allocations a record (a counting allocator, value
//! strings included) and each phase's best of 5, taken in turn, with the
//! ratio new/old. Asserts nothing.
//!
//! usage: cargo bench -p oxiida --bench map

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use oxiida::value::{Map, Value};

struct Counting;

static BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        BYTES.fetch_add(l.size(), Relaxed);
        LIVE.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        BYTES.fetch_sub(l.size(), Relaxed);
        LIVE.fetch_sub(1, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        BYTES.fetch_add(n, Relaxed);
        BYTES.fetch_sub(l.size(), Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const RECORDS: usize = 100_000;

/// What one representation's run measured.
#[derive(Clone, Copy)]
struct Figures {
    bytes: f64,
    allocations: f64,
    build: Duration,
    lookup: Duration,
    free: Duration,
}

fn field(n: usize, j: usize) -> Value {
    if j == 1 {
        Value::Str(Arc::from(n.to_string()))
    } else {
        Value::Int(n as i64)
    }
}

/// A lookup by `&str`, for either map.
type Get<M> = for<'a, 'b> fn(&'a M, &'b str) -> Option<&'a Value>;

/// Builds, reads and frees the records with `make`, `insert` and `get`.
fn run<M>(keys: &[Arc<str>], make: fn() -> M, insert: fn(&mut M, Arc<str>, Value), get: Get<M>) -> Figures {
    // Every key, and one absent key of the same shape (a miss).
    let probes: Vec<String> = keys.iter().map(|k| k.to_string()).chain(["keyZ".to_string()]).collect();
    let (bytes, live) = (BYTES.load(Relaxed), LIVE.load(Relaxed));
    let start = Instant::now();
    let mut records = Vec::with_capacity(RECORDS);
    for n in 0..RECORDS {
        let mut m = make();
        for (j, k) in keys.iter().enumerate() {
            insert(&mut m, k.clone(), field(n, j));
        }
        records.push(Arc::new(m));
    }
    let build = start.elapsed();
    let per = |now: usize, before: usize| (now - before) as f64 / RECORDS as f64;
    let (bytes, allocations) = (per(BYTES.load(Relaxed), bytes), per(LIVE.load(Relaxed), live));
    let start = Instant::now();
    let mut found = 0usize;
    for m in &records {
        for k in &probes {
            found += get(m, k).is_some() as usize;
        }
    }
    black_box(found);
    let lookup = start.elapsed();
    let start = Instant::now();
    drop(records);
    let free = start.elapsed();
    Figures { bytes, allocations, build, lookup, free }
}

fn best(a: Figures, b: Figures) -> Figures {
    Figures { build: a.build.min(b.build), lookup: a.lookup.min(b.lookup), free: a.free.min(b.free), ..a }
}

fn main() {
    println!("1e5 records of k keys, the old IndexMap against the new Map (best of 5 in turn):");
    for k in [2, 5, 8, 12, 16, 17, 24, 32, 33, 64] {
        let keys: Vec<Arc<str>> = (0..k).map(|j| Arc::from(format!("key{j}"))).collect();
        let old_run = || run::<IndexMap<Arc<str>, Value>>(&keys, IndexMap::new, |m, k, v| drop(m.insert(k, v)), |m, k| m.get(k));
        let new_run = || run::<Map>(&keys, Map::new, |m, k, v| drop(m.insert(k, v)), |m, k| m.get(k));
        let (mut new, mut old) = (new_run(), old_run());
        for _ in 1..5 {
            new = best(new, new_run());
            old = best(old, old_run());
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "  k={k:>2}: {:.0} -> {:.0} bytes, {:.0} -> {:.0} allocations a record; build {:.1} -> {:.1} ms ({:.2}x), \
             look every key and a missing one up {:.1} -> {:.1} ms ({:.2}x), free {:.1} -> {:.1} ms ({:.2}x)",
            old.bytes,
            new.bytes,
            old.allocations,
            new.allocations,
            ms(old.build),
            ms(new.build),
            ratio(new.build, old.build),
            ms(old.lookup),
            ms(new.lookup),
            ratio(new.lookup, old.lookup),
            ms(old.free),
            ms(new.free),
            ratio(new.free, old.free),
        );
    }
}
