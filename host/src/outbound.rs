//! What the host sends: a call's arguments as the ABI carries them: one Array, which counts as a
//! level of nesting, so an argument may nest `oxiida_abi::MAX_DEPTH - 1`
//! levels. A deeper one is refused here, before any plugin or callback sees
//! it, so that what the host sends always decodes (`oxiida.h`,
//! OXIIDA_MAX_DEPTH).

use std::sync::Arc;

use oxiida_abi::{Value as Wire, MAX_DEPTH};

use oxiida::foreign::{ForeignError, ForeignErrorKind};
use oxiida::value::{Handle, Value};

use crate::codec;

/// How a destination takes handles: the wire form of one it can take, or
/// why not (the whole message).
pub type Handles<'a> = &'a dyn Fn(&Handle) -> Result<Wire, String>;

/// The arguments as one Array, or `BadArguments` naming the argument that
/// nests too deep (checked while converting, not in a pass of its own).
/// No handle is sent: see [`to_wire_with`].
pub fn to_wire(args: &[Value]) -> Result<Wire, ForeignError> {
    for (i, arg) in args.iter().enumerate() {
        if let Some(h) = codec::find_handle(arg) {
            return Err(handle_error(&format!("argument {}", i + 1), h));
        }
    }
    to_wire_with(args, &|_| unreachable!("no handle is left"))
}

/// [`to_wire`], sending each handle as `handles` says.
pub fn to_wire_with(args: &[Value], handles: Handles<'_>) -> Result<Wire, ForeignError> {
    let most = MAX_DEPTH - 1;
    let mut wires = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        let Some(wire) = within(arg, most, handles)? else {
            let message =
                format!("argument {} nests Arrays and Maps more than {most} levels deep, the most an argument to a plugin may", i + 1);
            return Err(ForeignError::new(ForeignErrorKind::BadArguments, message));
        };
        wires.push(wire);
    }
    Ok(Wire::Array(wires))
}

/// `codec::to_wire_within`, with handles: `None` when `v` nests more than
/// `room` levels, an error when a handle cannot go.
fn within(v: &Value, room: usize, handles: Handles<'_>) -> Result<Option<Wire>, ForeignError> {
    Ok(Some(match v {
        Value::Array(items) => {
            let Some(inner) = room.checked_sub(1) else { return Ok(None) };
            let mut out = Vec::with_capacity(items.len());
            for item in items.iter() {
                let Some(w) = within(item, inner, handles)? else { return Ok(None) };
                out.push(w);
            }
            Wire::Array(out)
        }
        Value::Map(m) => {
            let Some(inner) = room.checked_sub(1) else { return Ok(None) };
            let mut out = Vec::with_capacity(m.len());
            for (k, item) in m.iter() {
                let Some(w) = within(item, inner, handles)? else { return Ok(None) };
                out.push((k.to_string(), w));
            }
            Wire::Map(out)
        }
        Value::Handle(h) => handles(h).map_err(|message| ForeignError::new(ForeignErrorKind::BadArguments, message))?,
        scalar => codec::to_wire(scalar),
    }))
}

/// A handle stays with the host that made it: a plugin cannot take one.
fn handle_error(what: &str, h: &Handle) -> ForeignError {
    let (owner, ty) = (h.owner(), h.type_name());
    let message = format!(
        "{what} is a {owner} {ty}, an object only {owner} functions can take; convert it in a {owner} function to Nil, Bool, Int, Float, String, Array or Map first"
    );
    ForeignError::new(ForeignErrorKind::BadArguments, message)
}

/// The arguments as one MessagePack array ([`to_wire_with`]).
pub fn encode_with(args: &[Value], handles: Handles<'_>) -> Result<Vec<u8>, ForeignError> {
    Ok(to_wire_with(args, handles)?.to_msgpack())
}

/// The arguments as one MessagePack array ([`to_wire`]).
pub fn encode(args: &[Value]) -> Result<Vec<u8>, ForeignError> {
    Ok(to_wire(args)?.to_msgpack())
}

/// The keyword arguments as one Map in the order written, which counts as a
/// level as the arguments' Array does, or `BadArguments` naming the keyword
/// argument that nests too deep.
pub fn keywords_to_wire(keywords: &[(Arc<str>, Value)]) -> Result<Wire, ForeignError> {
    for (name, value) in keywords {
        if let Some(h) = codec::find_handle(value) {
            return Err(handle_error(&format!("keyword argument `{name}`"), h));
        }
    }
    keywords_to_wire_with(keywords, &|_| unreachable!("no handle is left"))
}

/// [`keywords_to_wire`], sending each handle as `handles` says.
pub fn keywords_to_wire_with(keywords: &[(Arc<str>, Value)], handles: Handles<'_>) -> Result<Wire, ForeignError> {
    let most = MAX_DEPTH - 1;
    let mut entries = Vec::with_capacity(keywords.len());
    for (name, value) in keywords {
        let Some(wire) = within(value, most, handles)? else {
            let message = format!(
                "keyword argument `{name}` nests Arrays and Maps more than {most} levels deep, the most an argument to a plugin may"
            );
            return Err(ForeignError::new(ForeignErrorKind::BadArguments, message));
        };
        entries.push((name.to_string(), wire));
    }
    Ok(Wire::Map(entries))
}

/// The keyword arguments as one MessagePack map ([`keywords_to_wire`]), or
/// `None` when there are none: the message then carries NULL.
pub fn encode_keywords(keywords: &[(Arc<str>, Value)]) -> Result<Option<Vec<u8>>, ForeignError> {
    if keywords.is_empty() {
        return Ok(None);
    }
    Ok(Some(keywords_to_wire(keywords)?.to_msgpack()))
}

/// [`encode_keywords`], sending each handle as `handles` says.
pub fn encode_keywords_with(keywords: &[(Arc<str>, Value)], handles: Handles<'_>) -> Result<Option<Vec<u8>>, ForeignError> {
    if keywords.is_empty() {
        return Ok(None);
    }
    Ok(Some(keywords_to_wire_with(keywords, handles)?.to_msgpack()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> Value {
        (0..levels).fold(Value::Int(1), |inner, _| Value::array(vec![inner]))
    }

    #[test]
    fn what_the_host_sends_always_decodes() {
        let most = MAX_DEPTH - 1;
        let bytes = encode(&[Value::Nil, nested(most)]).unwrap();
        assert!(Wire::decode(&bytes).is_ok());
        let err = encode(&[Value::Nil, nested(most + 1)]).unwrap_err();
        assert_eq!(err.kind, ForeignErrorKind::BadArguments);
        assert!(err.message.starts_with("argument 2 nests"), "{}", err.message);
    }

    #[test]
    fn keyword_arguments_are_one_map_in_the_order_written_with_the_same_depth_limit() {
        let most = MAX_DEPTH - 1;
        assert_eq!(encode_keywords(&[]).unwrap(), None);
        let kw = |v: Value| vec![(Arc::from("steps"), Value::Int(100)), (Arc::from("deep"), v)];
        let bytes = encode_keywords(&kw(nested(most))).unwrap().unwrap();
        let Ok(Wire::Map(entries)) = Wire::decode(&bytes) else { panic!("not a map") };
        assert_eq!(entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["steps", "deep"]);
        let err = encode_keywords(&kw(nested(most + 1))).unwrap_err();
        assert_eq!(err.kind, ForeignErrorKind::BadArguments);
        assert!(err.message.starts_with("keyword argument `deep` nests"), "{}", err.message);
    }
}

#[cfg(test)]
mod handle_tests {
    use super::*;
    use oxiida::value::Handle;

    #[test]
    fn a_handle_is_refused_naming_its_owner_and_type() {
        let frame = Value::Handle(Arc::new(Handle::new("python", "DataFrame", 1, Box::new(()))));
        let err = to_wire(&[Value::Int(1), Value::array(vec![frame.clone()])]).unwrap_err();
        assert_eq!(err.kind, ForeignErrorKind::BadArguments);
        assert!(err.message.starts_with("argument 2 is a python DataFrame, an object only python functions can take;"), "{}", err.message);
        let err = keywords_to_wire(&[(Arc::from("df"), frame)]).unwrap_err();
        assert!(err.message.starts_with("keyword argument `df` is a python DataFrame"), "{}", err.message);
    }
}
