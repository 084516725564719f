//! The session's handles: Lua values that cannot cross as data (functions,
//! userdata, coroutines, tables that are not Arrays or Maps), kept in the
//! registry of the state that made them until the host releases them. The
//! same Lua object returned twice has one id, so identity holds (a handle
//! passed back is `rawequal` to the original).

use std::collections::{HashMap, HashSet};

use mlua::{Lua, RegistryKey, Value as LuaValue};
use oxiida_abi::Value;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub struct Handles {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next: u64,
    by_id: HashMap<u64, Entry>,
    /// (state, the object's address) to its id, while the handle lives.
    by_object: HashMap<(u64, usize), u64>,
    /// The states alive in the session, by id.
    states: HashSet<u64>,
    /// The handles kept for the result of the call running on each state,
    /// once per occurrence (each already counted, so that a release
    /// meanwhile cannot drop the value).
    pending: HashMap<u64, Vec<u64>>,
}

struct Entry {
    state: u64,
    object: usize,
    /// Dropping it needs no lock on the state: the state frees the value
    /// at its next `expire_registry_values`.
    key: RegistryKey,
    /// The references the host holds, counting those kept for a result being built.
    count: usize,
}

impl Handles {
    /// The table, still usable after a panic elsewhere (every change keeps
    /// it consistent).
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state_born(&self, state: u64) {
        self.lock().states.insert(state);
    }

    /// A state was dropped: its handles are dead with it.
    pub fn state_died(&self, state: u64) {
        let mut t = self.lock();
        t.states.remove(&state);
        t.by_id.retain(|_, e| e.state != state);
        t.by_object.retain(|(s, _), _| *s != state);
        t.pending.remove(&state);
    }

    pub fn state_alive(&self, state: u64) -> bool {
        self.lock().states.contains(&state)
    }

    /// The state holding handle `id`, if it is known.
    pub fn owner(&self, id: u64) -> Option<u64> {
        self.lock().by_id.get(&id).map(|e| e.state)
    }

    /// The Lua value of handle `id`, in `state`.
    pub fn give(&self, lua: &Lua, state: u64, id: u64, type_name: &str) -> mlua::Result<LuaValue> {
        let t = self.lock();
        match t.by_id.get(&id) {
            Some(e) if e.state == state => lua.registry_value(&e.key),
            Some(_) => Err(mlua::Error::runtime(format!("the Lua {type_name} of this handle lives in another Lua state of the session"))),
            None => Err(mlua::Error::runtime(format!("the Lua {type_name} of this handle was already released"))),
        }
    }

    /// A handle for `v` of `state`: its id if it has one, else a new one;
    /// one reference more, until [`Handles::settle`] sees whether it was sent.
    pub fn keep(&self, lua: &Lua, state: u64, v: &LuaValue) -> Option<Value> {
        let object = v.to_pointer() as usize;
        let mut t = self.lock();
        let id = match t.by_object.get(&(state, object)) {
            Some(&id) => id,
            None => {
                let key = lua.create_registry_value(v.clone()).ok()?;
                t.next += 1;
                let id = t.next;
                t.by_id.insert(id, Entry { state, object, key, count: 0 });
                t.by_object.insert((state, object), id);
                id
            }
        };
        t.by_id.get_mut(&id).expect("just found or made").count += 1;
        t.pending.entry(state).or_default().push(id);
        Some(Value::handle(id, &oxiida_lua_shared::convert::lua_type_name(v)))
    }

    /// A result of a call on `state` is final: each handle in it stays a
    /// reference the host holds; one kept for it but not sent in the end is
    /// given back (a state runs one call at a time, so they are this call's).
    pub fn settle(&self, state: u64, result: Option<&Value>) {
        let mut sent = Vec::new();
        if let Some(v) = result {
            v.handles(&mut sent);
        }
        let mut unsent = self.lock().pending.remove(&state).unwrap_or_default();
        for id in sent {
            if let Some(at) = unsent.iter().position(|&k| k == id) {
                unsent.swap_remove(at);
            }
        }
        for id in unsent {
            self.release(id);
        }
    }

    /// The host gives back one reference to `id`.
    pub fn release(&self, id: u64) {
        let mut t = self.lock();
        let Some(e) = t.by_id.get_mut(&id) else { return };
        e.count = e.count.saturating_sub(1);
        if e.count == 0 {
            let e = t.by_id.remove(&id).expect("just found");
            t.by_object.remove(&(e.state, e.object));
        }
    }
}
