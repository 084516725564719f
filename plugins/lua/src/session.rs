//! A session: one workflow's Lua. Lua has no global lock, so a session keeps
//! a small pool of states, each loaded from the same script, and calls that
//! overlap (in `para`) run on different states, on different cores. A state
//! is made when a call finds none idle, up to the pool's size: a workflow
//! that never overlaps calls loads the script once. Globals are per state.

use oxiida_abi::pool::Pool;
use oxiida_abi::Value;

use crate::state::{Failure, Script, State};

pub struct Session {
    script: Option<Script>,
    states: Pool<State>,
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
        Ok(Session { script, states: Pool::with(pool_size(), first) })
    }

    /// A state of the pool: an idle one, else a new one (loading the script)
    /// while fewer than the pool's size exist, else the next to come back.
    /// A state that panicked mid-call is dropped by the pool, not reused.
    fn state(&self) -> Result<oxiida_abi::pool::Checkout<'_, State>, Failure> {
        self.states.get(|| State::new(self.script.as_ref())).map_err(internal)
    }

    /// Called before the workflow starts, when no call is running.
    pub fn resolve(&self, dotted: &str) -> Result<(), String> {
        let mut state = self.state().map_err(|f| f.message)?;
        state.lookup(dotted).map(drop).map_err(|why| match &self.script {
            Some(s) => format!("{why} (names are looked up in the globals of the script {})", s.path),
            None => format!("{why} (with no script, names are looked up in Lua's standard library: pass one with --plugin lua=script.lua)"),
        })
    }

    /// `isolated` (`=f=`): on a fresh state of its own, dropped afterwards.
    /// Keyword arguments, when the call passes any, are one extra final table.
    pub fn call(&self, dotted: &str, args: &[Value], keywords: &[(String, Value)], isolated: bool) -> Result<Value, Failure> {
        if isolated {
            let mut state = State::new(self.script.as_ref()).map_err(internal)?;
            return state.call(dotted, args, keywords);
        }
        self.state()?.call(dotted, args, keywords)
    }
}

fn internal(message: String) -> Failure {
    Failure { status: oxiida_abi::STATUS_INTERNAL, message, traceback: None }
}
