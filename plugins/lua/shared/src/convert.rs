//! Values between oxiida and Lua: nil, booleans, integers, floats, strings;
//! a table whose keys are exactly 1..n is an Array (so `{}` is `[]`), a table
//! whose keys are all strings a Map (keys sorted, since Lua keeps no order).
//! Shared by the plugin and the Lua module (`module/`), hence no `oxiida` types.
//!
//! With a [`Keep`], a value that cannot cross as data (a function, a
//! userdata, a coroutine, or a table that is neither an Array nor a Map)
//! crosses as a handle instead, which [`to_lua_with`] turns back into the
//! very same Lua value.

use mlua::{Lua, Value as LuaValue};
use oxiida_abi::Value;

/// Deeper than this is refused: it is also how a table that contains itself ends.
const MAX_DEPTH: usize = 100;

/// How a handle comes back into Lua: the value it stands for.
pub type Give<'a> = &'a dyn Fn(u64, &str) -> mlua::Result<LuaValue>;

/// How a Lua value that cannot cross becomes a handle: `None` refuses it.
pub type Keep<'a> = &'a mut dyn FnMut(&LuaValue) -> Option<Value>;

fn no_handles(_: u64, type_name: &str) -> mlua::Result<LuaValue> {
    Err(mlua::Error::runtime(format!("a handle to a Lua {type_name} cannot be given to Lua here")))
}

pub fn to_lua(lua: &Lua, v: &Value) -> mlua::Result<LuaValue> {
    to_lua_with(lua, v, &no_handles)
}

/// `v` as a function to call: itself, or for a table or userdata with a
/// `__call` metamethod, a function that calls it (so it is called as Lua
/// would call it). `None` for anything else.
pub fn callable(lua: &Lua, v: &LuaValue) -> Option<mlua::Function> {
    match v {
        LuaValue::Function(f) => Some(f.clone()),
        LuaValue::Table(t) => t.metatable()?.raw_get::<LuaValue>("__call").ok().filter(|c| !c.is_nil()).and_then(|_| wrap(lua, v)),
        LuaValue::UserData(u) => u.metatable().ok()?.get::<LuaValue>("__call").ok().filter(|c| !c.is_nil()).and_then(|_| wrap(lua, v)),
        _ => None,
    }
}

fn wrap(lua: &Lua, v: &LuaValue) -> Option<mlua::Function> {
    lua.load("local callee = ...\nreturn function(...) return callee(...) end").set_name("=oxiida").call(v.clone()).ok()
}

/// The name a Lua value's handle shows: its type, or a userdata's `__name`.
pub fn lua_type_name(v: &LuaValue) -> String {
    if let LuaValue::UserData(u) = v {
        if let Ok(Some(name)) = u.metatable().and_then(|m| m.get::<Option<String>>("__name")) {
            return name;
        }
    }
    v.type_name().to_owned()
}

/// [`to_lua`], with handles given back by `give`.
pub fn to_lua_with(lua: &Lua, v: &Value, give: Give<'_>) -> mlua::Result<LuaValue> {
    Ok(match v {
        Value::Nil => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Int(i) => LuaValue::Integer(*i),
        Value::Float(x) => LuaValue::Number(*x),
        Value::Str(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua_with(lua, item, give)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Map(entries) => {
            let t = lua.create_table_with_capacity(0, entries.len())?;
            for (k, v) in entries {
                t.raw_set(k.as_str(), to_lua_with(lua, v, give)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Handle { id, type_name } => give(*id, type_name)?,
    })
}

/// A call's Lua arguments: `args`, then, when the call passes keyword
/// arguments, one table of them (`f(x, steps = 100)` calls `f(x, {steps = 100})`).
pub fn to_lua_args(lua: &Lua, args: &[Value], keywords: &[(String, Value)]) -> mlua::Result<mlua::MultiValue> {
    to_lua_args_with(lua, args, keywords, &no_handles)
}

/// [`to_lua_args`], with handles given back by `give`.
pub fn to_lua_args_with(lua: &Lua, args: &[Value], keywords: &[(String, Value)], give: Give<'_>) -> mlua::Result<mlua::MultiValue> {
    let mut all = args.iter().map(|a| to_lua_with(lua, a, give)).collect::<mlua::Result<mlua::MultiValue>>()?;
    if !keywords.is_empty() {
        let t = lua.create_table_with_capacity(0, keywords.len())?;
        for (k, v) in keywords {
            t.raw_set(k.as_str(), to_lua_with(lua, v, give)?)?;
        }
        all.push_back(LuaValue::Table(t));
    }
    Ok(all)
}

/// Why a Lua value cannot cross, in words for the user.
pub fn from_lua(v: &LuaValue) -> Result<Value, String> {
    from_lua_at(v, 0, &mut |_| None)
}

/// [`from_lua`], keeping what cannot cross as data as handles with `keep`:
/// functions, userdata and coroutines wherever they are, and a table that
/// cannot cross whole (mixed keys, holes, a cycle) as one handle. `keep` may
/// have been asked for handles that the result does not hold in the end.
pub fn from_lua_with(v: &LuaValue, keep: Keep<'_>) -> Result<Value, String> {
    match from_lua_at(v, 0, keep) {
        Err(why) if matches!(v, LuaValue::Table(_)) => keep(v).ok_or(why),
        done => done,
    }
}

fn from_lua_at(v: &LuaValue, depth: usize, keep: Keep<'_>) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("a table is nested more than {MAX_DEPTH} levels deep (or contains itself)"));
    }
    Ok(match v {
        LuaValue::Nil => Value::Nil,
        LuaValue::Boolean(b) => Value::Bool(*b),
        LuaValue::Integer(i) => Value::Int(*i),
        LuaValue::Number(x) => Value::Float(*x),
        LuaValue::String(s) => Value::Str(text(s)?),
        LuaValue::Table(t) => table(t, depth, keep)?,
        other => {
            if let Some(handle) = keep(other) {
                return Ok(handle);
            }
            return Err(format!(
                "a Lua {} cannot cross into oxiida (use nil, booleans, numbers, strings and tables of them)",
                other.type_name()
            ));
        }
    })
}

fn table(t: &mlua::Table, depth: usize, keep: Keep<'_>) -> Result<Value, String> {
    Ok({
        {
            let mut ints = Vec::new();
            let mut strings = Vec::new();
            for pair in t.clone().pairs::<LuaValue, LuaValue>() {
                let (k, v) = pair.map_err(|e| e.to_string())?;
                match k {
                    LuaValue::Integer(i) => ints.push((i, v)),
                    LuaValue::String(s) => strings.push((text(&s)?, v)),
                    other => return Err(format!("a table key of type {} cannot cross (keys are 1..n or strings)", other.type_name())),
                }
            }
            if !ints.is_empty() && !strings.is_empty() {
                return Err("a table mixes integer and string keys (use a sequence 1..n or string keys only)".into());
            }
            if strings.is_empty() {
                ints.sort_unstable_by_key(|(i, _)| *i);
                if let Some(at) = ints.iter().enumerate().position(|(at, (i, _))| *i != at as i64 + 1) {
                    let (key, _) = ints[at];
                    return Err(if key < 1 {
                        format!("a table with the integer key {key} is not a sequence 1..n and cannot cross")
                    } else {
                        format!("a table with the key {key} but no key {} is not a sequence and cannot cross (a nil inside an Array leaves such a hole)", at + 1)
                    });
                }
                Value::Array(ints.iter().map(|(_, v)| from_lua_at(v, depth + 1, keep)).collect::<Result<_, _>>()?)
            } else {
                strings.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                let entries =
                    strings.into_iter().map(|(k, v)| Ok((k, from_lua_at(&v, depth + 1, keep)?))).collect::<Result<_, String>>()?;
                Value::Map(entries)
            }
        }
    })
}

fn text(s: &mlua::String) -> Result<String, String> {
    s.to_str().map(|s| s.to_string()).map_err(|_| "a string that is not valid UTF-8 cannot cross".into())
}
