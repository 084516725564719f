//! The values that cross the ABI, and their MessagePack form: nil, bool,
//! 64-bit signed ints, 64-bit floats, UTF-8 strings, arrays, maps with
//! string keys in order, and (version 4) plugin-owned handles, as extension
//! type [`HANDLE_EXT`]. Anything else MessagePack can say is refused.

use rmp::Marker;

use crate::MAX_DEPTH;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    /// Keys in insertion order.
    Map(Vec<(String, Value)>),
    /// (Version 4.) An object that stays in the plugin that made it: the
    /// plugin's own `id` for it, and its type's name for messages
    /// (`DataFrame`, `function`; at most [`HANDLE_TYPE_MAX`] bytes).
    Handle {
        id: u64,
        type_name: String,
    },
}

/// `OXIIDA_HANDLE_EXT`: the MessagePack extension type of a handle. Its data
/// is the id (8 bytes, big-endian) followed by the type's name in UTF-8.
pub const HANDLE_EXT: i8 = 1;
/// `OXIIDA_HANDLE_TYPE_MAX`: the longest type name a handle carries, in
/// bytes; [`Value::handle`] cuts longer ones at a character boundary.
pub const HANDLE_TYPE_MAX: usize = 64;

/// Why bytes are not one value that can cross: the reason, in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed MessagePack: {0}")]
pub struct DecodeError(pub String);

impl Value {
    /// A handle, its type name cut to [`HANDLE_TYPE_MAX`] bytes.
    pub fn handle(id: u64, type_name: &str) -> Value {
        let mut end = type_name.len().min(HANDLE_TYPE_MAX);
        while !type_name.is_char_boundary(end) {
            end -= 1;
        }
        Value::Handle { id, type_name: type_name[..end].to_owned() }
    }

    /// Every handle in `self`, itself or nested in its Arrays and Maps.
    pub fn handles(&self, out: &mut Vec<u64>) {
        match self {
            Value::Handle { id, .. } => out.push(*id),
            Value::Array(items) => items.iter().for_each(|v| v.handles(out)),
            Value::Map(entries) => entries.iter().for_each(|(_, v)| v.handles(out)),
            _ => {}
        }
    }

    /// Appends the MessagePack encoding of `self` to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use rmp::encode::*;
        // Writing into a Vec cannot fail.
        match self {
            Value::Nil => write_nil(out).expect("Vec write"),
            Value::Bool(b) => write_bool(out, *b).expect("Vec write"),
            Value::Int(i) => drop(write_sint(out, *i).expect("Vec write")),
            Value::Float(x) => write_f64(out, *x).expect("Vec write"),
            Value::Str(s) => write_str(out, s).expect("Vec write"),
            Value::Array(items) => {
                write_array_len(out, items.len() as u32).expect("Vec write");
                items.iter().for_each(|v| v.encode(out));
            }
            Value::Map(entries) => {
                write_map_len(out, entries.len() as u32).expect("Vec write");
                for (k, v) in entries {
                    write_str(out, k).expect("Vec write");
                    v.encode(out);
                }
            }
            Value::Handle { id, type_name } => {
                let mut end = type_name.len().min(HANDLE_TYPE_MAX);
                while !type_name.is_char_boundary(end) {
                    end -= 1;
                }
                let name = &type_name.as_bytes()[..end];
                write_ext_meta(out, 8 + name.len() as u32, HANDLE_EXT).expect("Vec write");
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(name);
            }
        }
    }

    /// Whether the value nests at most [`MAX_DEPTH`] Arrays and Maps deep,
    /// as everything that crosses the ABI must. Looks no deeper than that.
    pub fn fits_depth(&self) -> bool {
        fn fits(v: &Value, room: usize) -> bool {
            match v {
                Value::Array(items) => room > 0 && items.iter().all(|v| fits(v, room - 1)),
                Value::Map(entries) => room > 0 && entries.iter().all(|(_, v)| fits(v, room - 1)),
                _ => true,
            }
        }
        fits(self, MAX_DEPTH)
    }

    /// The message for a value that does not fit: `what` is "the result",
    /// "argument 2", ...
    pub fn too_deep(what: &str) -> String {
        format!("{what} nests Arrays and Maps more than {MAX_DEPTH} levels deep, the most a value crossing to or from a plugin may")
    }

    pub fn to_msgpack(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes exactly one value that fills `bytes`. Accepts every value
    /// that [`Value::fits_depth`], and nothing deeper.
    pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let v = r.value(0)?;
        if r.at != bytes.len() {
            return Err(DecodeError(format!("{} bytes left after the value", bytes.len() - r.at)));
        }
        Ok(v)
    }
}

/// Low-level reading for hosts that decode into their own value type.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| DecodeError("truncated".into()))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn string(&mut self, n: usize) -> Result<String, DecodeError> {
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError("a string is not UTF-8".into()))
    }

    /// One value inside `depth` Arrays and Maps.
    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let marker = Marker::from_u8(self.be::<1>()?[0]);
        Ok(match marker {
            Marker::Null => Value::Nil,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixPos(n) => Value::Int(n.into()),
            Marker::FixNeg(n) => Value::Int(n.into()),
            Marker::U8 => Value::Int(self.be::<1>()?[0].into()),
            Marker::U16 => Value::Int(u16::from_be_bytes(self.be()?).into()),
            Marker::U32 => Value::Int(u32::from_be_bytes(self.be()?).into()),
            Marker::U64 => {
                let u = u64::from_be_bytes(self.be()?);
                Value::Int(i64::try_from(u).map_err(|_| DecodeError(format!("the integer {u} does not fit in 64 signed bits")))?)
            }
            Marker::I8 => Value::Int(i8::from_be_bytes(self.be()?).into()),
            Marker::I16 => Value::Int(i16::from_be_bytes(self.be()?).into()),
            Marker::I32 => Value::Int(i32::from_be_bytes(self.be()?).into()),
            Marker::I64 => Value::Int(i64::from_be_bytes(self.be()?)),
            Marker::F32 => Value::Float(f32::from_be_bytes(self.be()?).into()),
            Marker::F64 => Value::Float(f64::from_be_bytes(self.be()?)),
            Marker::FixStr(n) => Value::Str(self.string(n.into())?),
            Marker::Str8 => {
                let n = self.be::<1>()?[0];
                Value::Str(self.string(n.into())?)
            }
            Marker::Str16 => {
                let n = u16::from_be_bytes(self.be()?);
                Value::Str(self.string(n.into())?)
            }
            Marker::Str32 => {
                let n = u32::from_be_bytes(self.be()?);
                Value::Str(self.string(n as usize)?)
            }
            Marker::FixArray(n) => self.array(n.into(), depth)?,
            Marker::Array16 => {
                let n = u16::from_be_bytes(self.be()?);
                self.array(n.into(), depth)?
            }
            Marker::Array32 => {
                let n = u32::from_be_bytes(self.be()?);
                self.array(n as usize, depth)?
            }
            Marker::FixMap(n) => self.map(n.into(), depth)?,
            Marker::Map16 => {
                let n = u16::from_be_bytes(self.be()?);
                self.map(n.into(), depth)?
            }
            Marker::Map32 => {
                let n = u32::from_be_bytes(self.be()?);
                self.map(n as usize, depth)?
            }
            Marker::FixExt8 => self.handle(8)?,
            Marker::FixExt16 => self.handle(16)?,
            Marker::Ext8 => {
                let n = self.be::<1>()?[0];
                self.handle(n.into())?
            }
            other => return Err(DecodeError(format!("{other:?} values (binary or extension data) cannot cross"))),
        })
    }

    /// A handle's extension data of `n` bytes, after its type byte.
    fn handle(&mut self, n: usize) -> Result<Value, DecodeError> {
        let ty = self.be::<1>()?[0] as i8;
        if ty != HANDLE_EXT {
            return Err(DecodeError(format!("extension type {ty} cannot cross (handles are type {HANDLE_EXT})")));
        }
        if !(8..=8 + HANDLE_TYPE_MAX).contains(&n) {
            return Err(DecodeError(format!("a handle has {n} bytes of data (8 to {} expected)", 8 + HANDLE_TYPE_MAX)));
        }
        let id = u64::from_be_bytes(self.be()?);
        let type_name = self.string(n - 8)?;
        Ok(Value::Handle { id, type_name })
    }

    /// An Array or a Map inside `depth` others is at level `depth + 1`.
    fn enter(depth: usize) -> Result<usize, DecodeError> {
        if depth >= MAX_DEPTH {
            return Err(DecodeError(format!("nested more than {MAX_DEPTH} levels")));
        }
        Ok(depth + 1)
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let depth = Self::enter(depth)?;
        // Every item takes at least one byte: never trust a length beyond that.
        let mut items = Vec::with_capacity(n.min(self.bytes.len() - self.at));
        for _ in 0..n {
            items.push(self.value(depth)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let depth = Self::enter(depth)?;
        let mut entries = Vec::with_capacity(n.min(self.bytes.len() - self.at));
        for _ in 0..n {
            let Value::Str(key) = self.value(depth)? else {
                return Err(DecodeError("a map key is not a string".into()));
            };
            entries.push((key, self.value(depth)?));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let v = Value::Array(vec![
            Value::Nil,
            Value::Bool(true),
            Value::Int(-1),
            Value::Int(200),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Float(2.5),
            Value::Float(f64::INFINITY),
            Value::Str("héllo".into()),
            Value::Str("x".repeat(70_000)),
            Value::Map(vec![("b".into(), Value::Int(1)), ("a".into(), Value::Array(vec![]))]),
        ]);
        assert_eq!(Value::decode(&v.to_msgpack()), Ok(v));
    }

    #[test]
    fn what_cannot_cross_is_refused() {
        assert!(Value::decode(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap_err().0.contains("64 signed bits"));
        assert!(Value::decode(&[0xc4, 0x01, 0x00]).is_err(), "binary data");
        assert!(Value::decode(&[0x81, 0x01, 0x02]).unwrap_err().0.contains("key"));
        assert!(Value::decode(&[0xa3, b'a']).unwrap_err().0.contains("truncated"));
        assert!(Value::decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err(), "a huge length is not trusted");
        assert!(Value::decode(&[0xc0, 0xc0]).is_err(), "trailing bytes");
        assert!(Value::decode(&vec![0x91; 10_000]).unwrap_err().0.contains("nested"));
        assert!(Value::decode(&[0xd7, 0x05, 0, 0, 0, 0, 0, 0, 0, 1]).unwrap_err().0.contains("extension type 5"));
        assert!(Value::decode(&[0xd6, 0x01, 0, 0, 0, 1]).is_err(), "a handle's id is 8 bytes");
    }

    #[test]
    fn handles_round_trip_in_every_ext_size_and_long_names_are_cut() {
        for name in ["", "DataFrame", "function", "12345678", "a-much-longer-type-name-than-sixteen"] {
            let v = Value::Array(vec![Value::handle(u64::MAX - 3, name), Value::Map(vec![("h".into(), Value::handle(7, name))])]);
            assert_eq!(Value::decode(&v.to_msgpack()), Ok(v.clone()));
            let mut ids = Vec::new();
            v.handles(&mut ids);
            assert_eq!(ids, [u64::MAX - 3, 7]);
        }
        let long = "é".repeat(HANDLE_TYPE_MAX);
        let Value::Handle { type_name, .. } = Value::handle(1, &long) else { unreachable!() };
        assert_eq!(type_name, "é".repeat(HANDLE_TYPE_MAX / 2));
        assert_eq!(Value::decode(&Value::handle(1, &long).to_msgpack()), Ok(Value::handle(1, &long)));
    }

    /// `[[...[]...]]` with `levels` Arrays, or Maps `{"k": {...}}`.
    fn nested(levels: usize, map: bool) -> Value {
        (1..levels).fold(if map { Value::Map(vec![]) } else { Value::Array(vec![]) }, |inner, _| {
            if map {
                Value::Map(vec![("k".into(), inner)])
            } else {
                Value::Array(vec![inner])
            }
        })
    }

    #[test]
    fn what_fits_the_depth_limit_decodes_and_nothing_deeper() {
        for map in [false, true] {
            let deepest = nested(MAX_DEPTH, map);
            assert!(deepest.fits_depth());
            assert_eq!(Value::decode(&deepest.to_msgpack()), Ok(deepest.clone()), "{MAX_DEPTH} levels decode");
            let with_scalar = nested(MAX_DEPTH - 1, map);
            assert!(with_scalar.fits_depth());
            let too_deep = if map { Value::Map(vec![("k".into(), deepest)]) } else { Value::Array(vec![deepest]) };
            assert!(!too_deep.fits_depth());
            assert!(Value::decode(&too_deep.to_msgpack()).unwrap_err().0.contains("nested"));
        }
        assert!(Value::Int(1).fits_depth());
    }
}
