//! Workflow values to and from the ABI's MessagePack values.

use std::sync::Arc;

use oxiida_abi::Value as Wire;

use oxiida::foreign::{ForeignError, ForeignErrorKind};
use oxiida::value::{Map, Value};

pub fn to_wire(v: &Value) -> Wire {
    match v {
        Value::Nil => Wire::Nil,
        Value::Bool(b) => Wire::Bool(*b),
        Value::Int(i) => Wire::Int(*i),
        Value::Float(x) => Wire::Float(*x),
        Value::Str(s) => Wire::Str(s.to_string()),
        Value::Array(items) => Wire::Array(items.iter().map(to_wire).collect()),
        Value::Map(m) => Wire::Map(m.iter().map(|(k, v)| (k.to_string(), to_wire(v))).collect()),
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
    }
}

/// Whether `v` nests at most `room` Arrays and Maps deep; looks no deeper.
fn fits(v: &Value, room: usize) -> bool {
    match v {
        Value::Array(items) => room > 0 && items.iter().all(|v| fits(v, room - 1)),
        Value::Map(m) => room > 0 && m.iter().all(|(_, v)| fits(v, room - 1)),
        _ => true,
    }
}

/// The arguments of a call as the ABI carries them: one Array, which counts
/// as a level, so an argument may nest `oxiida_abi::MAX_DEPTH - 1` levels.
/// A deeper one is refused here, before any plugin sees it, so that what the
/// host sends always decodes.
pub fn args_to_wire(args: &[Value]) -> Result<Wire, ForeignError> {
    let most = oxiida_abi::MAX_DEPTH - 1;
    if let Some(i) = args.iter().position(|a| !fits(a, most)) {
        let message =
            format!("argument {} nests Arrays and Maps more than {most} levels deep, the most an argument to a plugin may", i + 1);
        return Err(ForeignError::new(ForeignErrorKind::BadArguments, message));
    }
    Ok(Wire::Array(args.iter().map(to_wire).collect()))
}

/// The arguments of a call: one MessagePack array ([`args_to_wire`]).
pub fn encode_args(args: &[Value]) -> Result<Vec<u8>, ForeignError> {
    Ok(args_to_wire(args)?.to_msgpack())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> Value {
        (0..levels).fold(Value::Int(1), |inner, _| Value::array(vec![inner]))
    }

    #[test]
    fn what_the_host_sends_always_decodes() {
        let most = oxiida_abi::MAX_DEPTH - 1;
        let bytes = encode_args(&[Value::Nil, nested(most)]).unwrap();
        assert!(Wire::decode(&bytes).is_ok());
        let err = encode_args(&[Value::Nil, nested(most + 1)]).unwrap_err();
        assert_eq!(err.kind, ForeignErrorKind::BadArguments);
        assert!(err.message.starts_with("argument 2 nests"), "{}", err.message);
    }
}
