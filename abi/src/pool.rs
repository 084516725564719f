//! A checkout pool: at most `max` items (Lua states, worker processes), made
//! lazily by the caller when none is idle, handed out one caller at a time
//! and back in the pool when the [`Checkout`] is dropped. A caller that finds
//! the pool full waits on a condition variable until an item comes back or a
//! slot frees up; nothing polls.
//!
//! Making an item happens outside the lock, so a slow start (loading a
//! script, spawning a process) never blocks callers that only return items.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

/// A pool of `T`, shared by reference (put it in an `Arc` or a struct).
pub struct Pool<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    max: usize,
}

struct State<T> {
    idle: Vec<T>,
    /// Items alive: idle, checked out, or being made.
    live: usize,
}

/// What [`Pool::checkout`] hands out: an idle item, or a slot to make one in.
pub enum Slot<'a, T> {
    /// An idle item, back in the pool when dropped.
    Idle(Checkout<'a, T>),
    /// Room for one more: make the item and [`Vacancy::fill`] it, or drop the
    /// vacancy (the slot frees up) when making it failed.
    Vacant(Vacancy<'a, T>),
}

/// An item out of the pool, given back when dropped. [`Checkout::discard`]
/// drops it instead (a worker that died, a state that panicked mid-call).
pub struct Checkout<'a, T> {
    pool: &'a Pool<T>,
    item: Option<T>,
}

/// A reserved slot: counts as live until filled or dropped.
pub struct Vacancy<'a, T> {
    pool: &'a Pool<T>,
    filled: bool,
}

impl<T> Pool<T> {
    /// An empty pool of at most `max` items (at least one).
    pub fn new(max: usize) -> Self {
        Pool { state: Mutex::new(State { idle: Vec::new(), live: 0 }), changed: Condvar::new(), max: max.max(1) }
    }

    /// A pool holding `first` already (counted against `max`).
    pub fn with(max: usize, first: T) -> Self {
        Pool { state: Mutex::new(State { idle: vec![first], live: 1 }), changed: Condvar::new(), max: max.max(1) }
    }

    /// The most items this pool holds at once.
    pub fn max(&self) -> usize {
        self.max
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while the lock is held leaves the counts consistent (every
        // change is one statement), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle item, else a vacancy when fewer than `max` are alive; else
    /// waits until one of those is true.
    pub fn checkout(&self) -> Slot<'_, T> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.idle.pop() {
                return Slot::Idle(Checkout { pool: self, item: Some(item) });
            }
            if state.live < self.max {
                state.live += 1;
                return Slot::Vacant(Vacancy { pool: self, filled: false });
            }
            state = self.changed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// An idle item, or one made by `make` in a free slot: the common case of
    /// [`Pool::checkout`].
    pub fn get<E>(&self, make: impl FnOnce() -> Result<T, E>) -> Result<Checkout<'_, T>, E> {
        match self.checkout() {
            Slot::Idle(item) => Ok(item),
            Slot::Vacant(vacancy) => Ok(vacancy.fill(make()?)),
        }
    }

    /// The item for which `wanted` is true, once it is idle (waiting while
    /// it is checked out); `None` as soon as `gone` says it will never be
    /// (it was dropped). Items that other callers give back meanwhile stay.
    pub fn checkout_where(&self, wanted: impl Fn(&T) -> bool, gone: impl Fn() -> bool) -> Option<Checkout<'_, T>> {
        let mut state = self.lock();
        loop {
            if let Some(at) = state.idle.iter().position(&wanted) {
                let item = state.idle.swap_remove(at);
                return Some(Checkout { pool: self, item: Some(item) });
            }
            if gone() {
                return None;
            }
            // A dropped item frees its slot without a word to waiters here:
            // look again now and then.
            state = match self.changed.wait_timeout(state, std::time::Duration::from_millis(50)) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Removes and returns the idle items for which `retire` is true (idle
    /// timeouts, shutdown); their slots free up.
    pub fn retire(&self, mut retire: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut state = self.lock();
        let (gone, kept): (Vec<T>, Vec<T>) = std::mem::take(&mut state.idle).into_iter().partition(|item| retire(item));
        state.idle = kept;
        state.live -= gone.len();
        drop(state);
        if !gone.is_empty() {
            self.changed.notify_all();
        }
        gone
    }

    /// Looks at the idle items, under the pool's lock (so keep `look` short:
    /// callers giving items back wait for it), e.g. to plan idle timeouts.
    pub fn peek_idle<R>(&self, look: impl FnOnce(&[T]) -> R) -> R {
        look(&self.lock().idle)
    }

    /// How many items are alive (idle, out, or being made).
    pub fn live(&self) -> usize {
        self.lock().live
    }

    fn give_back(&self, item: T) {
        self.lock().idle.push(item);
        // All: a caller of `checkout_where` may want this very item.
        self.changed.notify_all();
    }

    fn free_slot(&self) {
        self.lock().live -= 1;
        self.changed.notify_one();
    }
}

impl<'a, T> Vacancy<'a, T> {
    /// Puts a newly made item in the slot, checked out to the caller.
    pub fn fill(mut self, item: T) -> Checkout<'a, T> {
        self.filled = true;
        Checkout { pool: self.pool, item: Some(item) }
    }
}

impl<T> Drop for Vacancy<'_, T> {
    fn drop(&mut self) {
        if !self.filled {
            self.pool.free_slot();
        }
    }
}

impl<T> Checkout<'_, T> {
    /// Drops the item instead of giving it back; its slot frees up.
    pub fn discard(mut self) -> T {
        let item = self.item.take().expect("an item until dropped");
        self.pool.free_slot();
        item
    }
}

impl<T> Deref for Checkout<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.item.as_ref().expect("an item until dropped")
    }
}

impl<T> DerefMut for Checkout<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item.as_mut().expect("an item until dropped")
    }
}

impl<T> Drop for Checkout<'_, T> {
    fn drop(&mut self) {
        let Some(item) = self.item.take() else { return };
        if std::thread::panicking() {
            // It may be half-way through a call: drop it, it can be made again.
            drop(item);
            self.pool.free_slot();
        } else {
            self.pool.give_back(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn items_are_made_lazily_reused_and_bounded() {
        let pool = Arc::new(Pool::new(2));
        let made = std::sync::atomic::AtomicUsize::new(0);
        let make = || -> Result<usize, ()> { Ok(made.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) };
        let a = pool.get(make).unwrap();
        assert_eq!(*a, 0);
        drop(a);
        assert_eq!(*pool.get(make).unwrap(), 0, "an idle item is reused, not made again");
        let (a, b) = (pool.get(make).unwrap(), pool.get(make).unwrap());
        assert_eq!((*a, *b), (0, 1));
        assert_eq!(pool.live(), 2);
        // A third caller waits until one comes back.
        let waiter = {
            let pool = pool.clone();
            std::thread::spawn(move || *pool.get(|| Err::<usize, ()>(())).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished());
        drop(b);
        assert_eq!(waiter.join().unwrap(), 1);
        drop(a);
    }

    #[test]
    fn a_failed_make_or_a_discard_frees_the_slot() {
        let pool = Pool::new(1);
        assert_eq!(pool.get(|| Err::<u8, &str>("no")).err(), Some("no"));
        assert_eq!(pool.live(), 0);
        let item = pool.get(|| Ok::<u8, ()>(7)).unwrap();
        assert_eq!(item.discard(), 7);
        assert_eq!(pool.live(), 0);
        assert_eq!(*pool.get(|| Ok::<u8, ()>(8)).unwrap(), 8);
        assert_eq!(pool.retire(|_| true), vec![8]);
        assert_eq!(pool.live(), 0);
    }

    #[test]
    fn idle_items_can_be_looked_at_and_some_retired() {
        let pool = Pool::new(3);
        let (a, b, c) =
            (pool.get(|| Ok::<u8, ()>(1)).unwrap(), pool.get(|| Ok::<u8, ()>(2)).unwrap(), pool.get(|| Ok::<u8, ()>(3)).unwrap());
        drop((a, c));
        let mut idle = pool.peek_idle(<[u8]>::to_vec);
        idle.sort();
        assert_eq!(idle, vec![1, 3], "only the items given back are idle");
        assert_eq!(pool.retire(|&item| item == 3), vec![3]);
        assert_eq!((pool.peek_idle(<[u8]>::len), pool.live()), (1, 2));
        drop(b);
        assert_eq!(pool.peek_idle(<[u8]>::len), 2);
    }
}
