//! Workflow values to and from the ABI's MessagePack values: what every
//! front end that speaks the ABI (the plugin host, liboxiida, the Lua
//! module, the daemon's records) converts through.

use std::sync::Arc;

use oxiida_abi::Value as Wire;

use crate::value::{Handle, Map, Value};

/// A handle becomes its print form, `<python DataFrame>`: only the plugin
/// host knows which session a handle belongs to, and sends it as its id
/// (`oxiida_host::outbound::to_wire_with`). Other callers that send values
/// to another host refuse handles first with [`find_handle`].
pub fn to_wire(v: &Value) -> Wire {
    match v {
        Value::Nil => Wire::Nil,
        Value::Bool(b) => Wire::Bool(*b),
        Value::Int(i) => Wire::Int(*i),
        Value::Float(x) => Wire::Float(*x),
        Value::Str(s) => Wire::Str(s.to_string()),
        Value::Array(items) => Wire::Array(items.iter().map(to_wire).collect()),
        Value::Map(m) => Wire::Map(m.iter().map(|(k, v)| (k.to_string(), to_wire(v))).collect()),
        Value::Handle(h) => match h.value() {
            Some(made) => to_wire(made),
            None => Wire::Str(v.to_string()),
        },
    }
}

/// The first handle in `v`, itself or nested in its Arrays and Maps.
pub fn find_handle(v: &Value) -> Option<&Handle> {
    match v {
        Value::Handle(h) => match h.value() {
            Some(made) => find_handle(made),
            None => Some(h),
        },
        Value::Array(items) => items.iter().find_map(find_handle),
        Value::Map(m) => m.values().find_map(find_handle),
        _ => None,
    }
}

pub fn from_wire(w: Wire) -> Value {
    match w {
        Wire::Nil => Value::Nil,
        Wire::Bool(b) => Value::Bool(b),
        Wire::Int(i) => Value::Int(i),
        Wire::Float(x) => Value::Float(x),
        Wire::Str(s) => Value::from(s),
        Wire::Array(items) => Value::array(items.into_iter().map(from_wire).collect()),
        Wire::Map(entries) => Value::map(entries.into_iter().map(|(k, v)| (Arc::from(k), from_wire(v))).collect::<Map>()),
        // A handle from no known plugin session (the plugin host maps its
        // own with their session): opaque, and no function can take it.
        Wire::Handle { id, type_name } => Value::Handle(Arc::new(Handle::new("foreign", &type_name, id, Box::new(())))),
    }
}

/// [`to_wire`], or `None` when `v` nests Arrays and Maps more than `room`
/// levels deep: the depth is checked while converting, in the same pass.
pub fn to_wire_within(v: &Value, room: usize) -> Option<Wire> {
    Some(match v {
        Value::Array(items) => {
            let inner = room.checked_sub(1)?;
            Wire::Array(items.iter().map(|v| to_wire_within(v, inner)).collect::<Option<_>>()?)
        }
        Value::Map(m) => {
            let inner = room.checked_sub(1)?;
            Wire::Map(m.iter().map(|(k, v)| Some((k.to_string(), to_wire_within(v, inner)?))).collect::<Option<_>>()?)
        }
        scalar => to_wire(scalar),
    })
}
