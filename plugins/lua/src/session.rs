//! A session: one workflow's Lua. Lua has no global lock, so a session keeps
//! a small pool of states, each loaded from the same script, and calls that
//! overlap (in `para`) run on different states, on different cores. A state
//! is made when a call finds none idle, up to the pool's size: a workflow
//! that never overlaps calls loads the script once. Globals are per state.

use std::sync::{Condvar, Mutex};

use oxiida_abi::Value;

use crate::state::{Failure, Script, State};

pub struct Session {
    script: Option<Script>,
    pool: Mutex<Pool>,
    idle_again: Condvar,
    size: usize,
}

struct Pool {
    idle: Vec<State>,
    made: usize,
}

/// How many states a session may hold: `OXIIDA_LUA_STATES`, else one per
/// core and at least two (so two calls in `para` always overlap).
fn pool_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::env::var("OXIIDA_LUA_STATES").ok().and_then(|s| s.parse().ok()).filter(|&n| n > 0).unwrap_or(cores.max(2))
}

impl Session {
    /// Loads `script` (a path, or empty for the standard library alone) into
    /// a first state, so a script that fails is an error before anything runs.
    pub fn new(script: &str) -> Result<Session, String> {
        let script = if script.is_empty() {
            None
        } else {
            let source = std::fs::read_to_string(script).map_err(|e| format!("cannot read the script {script}: {e}"))?;
            Some(Script { path: script.to_owned(), source })
        };
        let first = State::new(script.as_ref())?;
        Ok(Session { script, pool: Mutex::new(Pool { idle: vec![first], made: 1 }), idle_again: Condvar::new(), size: pool_size() })
    }

    /// Called before the workflow starts, when no call is running.
    pub fn resolve(&self, dotted: &str) -> Result<(), String> {
        let mut state = self.take().map_err(|f| f.message)?;
        let found = state.lookup(dotted).map(drop).map_err(|why| match &self.script {
            Some(s) => format!("{why} (names are looked up in the globals of the script {})", s.path),
            None => format!("{why} (with no script, names are looked up in Lua's standard library: pass one with --plugin lua=script.lua)"),
        });
        self.give(state);
        found
    }

    /// `isolated` (`=f=`): on a fresh state of its own, dropped afterwards.
    pub fn call(&self, dotted: &str, args: &[Value], isolated: bool) -> Result<Value, Failure> {
        if isolated {
            let mut state = State::new(self.script.as_ref()).map_err(internal)?;
            return state.call(dotted, args);
        }
        let mut lent = Lent { session: self, state: Some(self.take()?) };
        lent.state.as_mut().expect("lent until dropped").call(dotted, args)
    }

    fn take(&self) -> Result<State, Failure> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(state) = pool.idle.pop() {
                return Ok(state);
            }
            if pool.made < self.size {
                pool.made += 1;
                drop(pool);
                // Loading the script may take a while: not under the lock.
                return State::new(self.script.as_ref()).map_err(|why| {
                    self.pool.lock().unwrap_or_else(|p| p.into_inner()).made -= 1;
                    self.idle_again.notify_one();
                    internal(why)
                });
            }
            pool = self.idle_again.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give(&self, state: State) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).idle.push(state);
        self.idle_again.notify_one();
    }
}

/// A state out of the pool, back in it when dropped; after a panic it may be
/// half-way through a call, so it is dropped and may be made again.
struct Lent<'a> {
    session: &'a Session,
    state: Option<State>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let state = self.state.take().expect("dropped once");
        if std::thread::panicking() {
            self.session.pool.lock().unwrap_or_else(|p| p.into_inner()).made -= 1;
            self.session.idle_again.notify_one();
        } else {
            self.session.give(state);
        }
    }
}

fn internal(message: String) -> Failure {
    Failure { status: oxiida_abi::STATUS_INTERNAL, message, traceback: None }
}
