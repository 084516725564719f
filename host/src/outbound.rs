//! What the host sends: a call's arguments as the ABI carries them: one Array, which counts as a
//! level of nesting, so an argument may nest `oxiida_abi::MAX_DEPTH - 1`
//! levels. A deeper one is refused here, before any plugin or callback sees
//! it, so that what the host sends always decodes (`oxiida.h`,
//! OXIIDA_MAX_DEPTH).

use oxiida_abi::{Value as Wire, MAX_DEPTH};

use oxiida::foreign::{ForeignError, ForeignErrorKind};
use oxiida::value::Value;

use crate::codec;

/// The arguments as one Array, or `BadArguments` naming the argument that
/// nests too deep (checked while converting, not in a pass of its own).
pub fn to_wire(args: &[Value]) -> Result<Wire, ForeignError> {
    let most = MAX_DEPTH - 1;
    let mut wires = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        let Some(wire) = codec::to_wire_within(arg, most) else {
            let message =
                format!("argument {} nests Arrays and Maps more than {most} levels deep, the most an argument to a plugin may", i + 1);
            return Err(ForeignError::new(ForeignErrorKind::BadArguments, message));
        };
        wires.push(wire);
    }
    Ok(Wire::Array(wires))
}

/// The arguments as one MessagePack array ([`to_wire`]).
pub fn encode(args: &[Value]) -> Result<Vec<u8>, ForeignError> {
    Ok(to_wire(args)?.to_msgpack())
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
}
