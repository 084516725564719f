//! A session: one workflow's Lua. Lua has no global lock, so a session keeps
//! a small pool of states, each loaded from the same script, and calls that
//! overlap (in `para`) run on different states, on different cores. A state
//! is made when a call finds none idle, up to the pool's size: a workflow
//! that never overlaps calls loads the script once. Globals are per state.

use std::sync::Arc;

use oxiida_abi::pool::Pool;
use oxiida_abi::{Status, Value};

use crate::handles::Handles;
use crate::state::{Failure, Script, State, Stoppers};

pub struct Session {
    script: Option<Script>,
    /// Declared before `states`: dropped after them.
    states: Pool<State>,
    pub handles: Arc<Handles>,
    /// What `cancel` stops running calls through.
    stoppers: Stoppers,
}

/// How many states a session may hold: `OXIIDA_LUA_STATES`, else one per
/// core and at least two (so two calls in `para` always overlap).
/// A value that is not a positive whole number is refused.
fn pool_size() -> Result<usize, String> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    match std::env::var("OXIIDA_LUA_STATES") {
        Err(_) => Ok(cores.max(2)),
        Ok(s) => s.trim().parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
            format!("OXIIDA_LUA_STATES is `{s}`, not a number of Lua states: set it to a whole number of at least 1, or unset it (the default is one per core, at least 2)")
        }),
    }
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
        let handles = Arc::new(Handles::default());
        let stoppers = Stoppers::default();
        let first = State::new(script.as_ref(), &handles, &stoppers)?;
        Ok(Session { script, states: Pool::with(pool_size()?, first), handles, stoppers })
    }

    /// The workflow is over: calls running now stop at their next instruction.
    pub fn cancel(&self) {
        self.stoppers.cancel();
    }

    /// A state of the pool: an idle one, else a new one (loading the script)
    /// while fewer than the pool's size exist, else the next to come back.
    /// A state that panicked mid-call is dropped by the pool, not reused.
    fn state(&self) -> Result<oxiida_abi::pool::Checkout<'_, State>, Failure> {
        self.states.get(|| State::new(self.script.as_ref(), &self.handles, &self.stoppers)).map_err(internal)
    }

    /// Called before the workflow starts, when no call is running.
    pub fn resolve(&self, dotted: &str) -> Result<(), String> {
        let mut state = self.state().map_err(|f| f.message)?;
        state.lookup(dotted).map(drop).map_err(|why| match &self.script {
            Some(s) => format!("{why} (names are looked up in the globals of the script {})", s.path),
            None => format!("{why} (with no script, names are looked up in Lua's standard library: pass one with --plugin lua=script.lua)"),
        })
    }

    /// What identifies the code of `dotted` (see `State::fingerprint`).
    pub fn fingerprint(&self, dotted: &str) -> Option<Vec<u8>> {
        self.state().ok()?.fingerprint(dotted)
    }

    /// `isolated` (`=f=`): on a fresh state of its own, dropped afterwards.
    /// Keyword arguments, when the call passes any, are one extra final table.
    /// A call whose arguments hold handles runs on the state that made them.
    pub fn call(&self, dotted: &str, args: &[Value], keywords: &[(String, Value)], isolated: bool) -> Result<Value, Failure> {
        let mut ids = Vec::new();
        args.iter().chain(keywords.iter().map(|(_, v)| v)).for_each(|v| v.handles(&mut ids));
        let bad = |message: String| Failure { status: Status::BadArguments, message, traceback: None };
        if isolated {
            if !ids.is_empty() {
                return Err(bad(format!(
                    "`=f=` runs `{dotted}` on a fresh Lua state, which a Lua handle cannot reach; call it as `{dotted}(...)`"
                )));
            }
            let mut state = State::new(self.script.as_ref(), &self.handles, &self.stoppers).map_err(internal)?;
            return state.call(dotted, args, keywords);
        }
        let mut owners = ids.iter().map(|&id| self.handles.owner(id));
        let Some(first) = owners.next() else { return self.state()?.call(dotted, args, keywords) };
        let Some(owner) = first else { return Err(bad(format!("a Lua handle given to `{dotted}` was already released"))) };
        if owners.any(|o| o != Some(owner)) {
            return Err(bad(format!(
                "the Lua handles given to `{dotted}` were made by different Lua states of the session (calls that ran in `para`); \
                 pass them to separate calls, or set OXIIDA_LUA_STATES=1"
            )));
        }
        let mut state = self
            .states
            .checkout_where(|s| s.id == owner, || !self.handles.state_alive(owner))
            .ok_or_else(|| bad(format!("the Lua state that made a handle given to `{dotted}` is gone (a call on it failed)")))?;
        state.call(dotted, args, keywords)
    }
}

fn internal(message: String) -> Failure {
    Failure { status: oxiida_abi::STATUS_INTERNAL, message, traceback: None }
}
