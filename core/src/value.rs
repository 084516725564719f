//! Workflow values and how they print.

use std::any::Any;
use std::borrow::Cow;
use std::fmt::{self, Write};
use std::sync::Arc;

pub mod map;

/// String keys in insertion order ([`map`]).
pub use map::Map;

/// A workflow value. Immutable: compound values are shared behind `Arc`, so
/// copying a value into a `para` branch or a foreign call is cheap.
#[derive(Clone, Debug, Default)]
pub enum Value {
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    Array(Arc<Vec<Value>>),
    Map(Arc<Map>),
    /// A host's own object with no language form (a Python DataFrame, say):
    /// the workflow can keep it and pass it back to its host, nothing more.
    Handle(Arc<Handle>),
}

/// An object that stays in the host that made it. The workflow holds it,
/// copies the `Arc`, and gives it back to a function of the same host; the
/// payload is the host's and is released when the last copy is dropped.
pub struct Handle {
    owner: Arc<str>,
    type_name: Arc<str>,
    identity: u64,
    payload: Box<dyn Any + Send + Sync>,
    /// A value not made yet ([`Handle::lazy`]).
    lazy: Option<Lazy>,
}

/// Makes a lazy handle's value from its payload.
type Make = dyn Fn(&(dyn Any + Send + Sync)) -> Value + Send + Sync;

/// How a lazy handle's value is made from its payload, and the value once made.
struct Lazy {
    make: Box<Make>,
    made: std::sync::OnceLock<Value>,
}

impl Handle {
    /// `owner` is the host's language ("python"), `type_name` the object's
    /// type for messages, `identity` equal for two handles exactly when they
    /// hold the same object (Python's `id` while both are alive).
    pub fn new(owner: &str, type_name: &str, identity: u64, payload: Box<dyn Any + Send + Sync>) -> Handle {
        Handle { owner: Arc::from(owner), type_name: Arc::from(type_name), identity, payload, lazy: None }
    }

    /// A plain value a host has not made yet (a large result still in the
    /// form it arrived in): `make` makes it from `payload`, once, when the
    /// workflow first reads it, and must not fail (the host checks what it
    /// holds before it hands it over). The interpreter keeps one unmade only
    /// in a variable of an unobserved run, assigned a call's result: every
    /// read of the variable, an operator, a call's argument and an
    /// observer see the value. A variable never read is returned to the
    /// embedder as the handle, which its host turns into its own object
    /// directly; the codec reads its value.
    pub fn lazy(
        owner: &str,
        type_name: &str,
        payload: Box<dyn Any + Send + Sync>,
        make: impl Fn(&(dyn Any + Send + Sync)) -> Value + Send + Sync + 'static,
    ) -> Handle {
        // The payload's address: two lazy results are never the same object.
        let identity = (&*payload as *const (dyn Any + Send + Sync)).cast::<u8>() as usize as u64;
        let mut h = Handle::new(owner, type_name, identity, payload);
        h.lazy = Some(Lazy { make: Box::new(make), made: std::sync::OnceLock::new() });
        h
    }

    /// A lazy handle's value, made now if it was not yet; `None` for an
    /// opaque one.
    pub fn value(&self) -> Option<&Value> {
        let lazy = self.lazy.as_ref()?;
        Some(lazy.made.get_or_init(|| (lazy.make)(&*self.payload)))
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The host's object, when it is a `T`.
    pub fn payload<T: Any>(&self) -> Option<&T> {
        self.payload.downcast_ref()
    }

    /// Same owner and same object.
    pub fn same(&self, other: &Handle) -> bool {
        self.owner == other.owner && self.identity == other.identity
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} {}>", self.owner, self.type_name)
    }
}

impl Value {
    /// The value itself, a lazy handle's made ([`Handle::lazy`]).
    pub fn forced(self) -> Value {
        match &self {
            Value::Handle(h) => h.value().cloned().unwrap_or(self),
            _ => self,
        }
    }

    /// [`forced`](Value::forced), by reference.
    pub fn made(&self) -> &Value {
        match self {
            Value::Handle(h) => h.value().unwrap_or(self),
            _ => self,
        }
    }

    /// The kind's name as users see it in error messages. A handle's says
    /// what it is and what can be done with it, so every message naming it
    /// does.
    pub fn type_name(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Value::Nil => "nil",
            Value::Bool(_) => "Bool",
            Value::Int(_) => "Int",
            Value::Float(_) => "Float",
            Value::Str(_) => "String",
            Value::Array(_) => "Array",
            Value::Map(_) => "Map",
            Value::Handle(h) if h.lazy.is_some() => return self.made().type_name(),
            Value::Handle(h) => {
                return Cow::Owned(format!(
                    "{owner} {ty} (an opaque {owner} object: pass it to a {owner} function to work on it)",
                    owner = h.owner,
                    ty = h.type_name
                ))
            }
        })
    }

    /// The kind's name with its article, for messages: "an Int", "a Map".
    pub fn a_type(&self) -> String {
        let name = self.type_name();
        let article = if name.starts_with(['A', 'I']) { "an" } else { "a" };
        if matches!(self, Value::Nil) {
            "nil".into()
        } else {
            format!("{article} {name}")
        }
    }

    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }

    pub fn array(items: Vec<Value>) -> Value {
        Value::Array(Arc::new(items))
    }

    pub fn map(entries: Map) -> Value {
        Value::Map(Arc::new(entries))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(Arc::from(s))
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// Structural equality; Int and Float compare by value (`1 == 1.0`).
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self.made(), other.made()) {
            (Value::Nil, Value::Nil) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => int_eq_float(*a, *b),
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Map(a), Value::Map(b)) => a == b,
            (Value::Handle(a), Value::Handle(b)) => a.same(b),
            _ => false,
        }
    }
}

/// Exact comparison: `i as f64` alone would call 2^53 + 1 equal to 2^53.
pub fn int_eq_float(i: i64, f: f64) -> bool {
    f.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) && f as i64 == i
}

/// `print` form: strings raw, everything else as `repr`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            other => write_repr(f, other),
        }
    }
}

/// The form values take inside arrays and maps: strings quoted.
pub fn write_repr(out: &mut impl Write, v: &Value) -> fmt::Result {
    match v {
        Value::Nil => out.write_str("nil"),
        Value::Bool(b) => out.write_str(if *b { "true" } else { "false" }),
        Value::Int(i) => write!(out, "{i}"),
        Value::Float(x) => out.write_str(&format_float(*x)),
        Value::Str(s) => write_quoted(out, s),
        Value::Array(items) => {
            out.write_char('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_repr(out, item)?;
            }
            out.write_char(']')
        }
        Value::Map(m) => {
            out.write_char('{')?;
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_quoted(out, k)?;
                out.write_str(": ")?;
                write_repr(out, item)?;
            }
            out.write_char('}')
        }
        Value::Handle(h) => match h.value() {
            Some(v) => write_repr(out, v),
            None => write!(out, "<{} {}>", h.owner, h.type_name),
        },
    }
}

fn write_quoted(out: &mut impl Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\t' => out.write_str("\\t")?,
            '\r' => out.write_str("\\r")?,
            '\0' => out.write_str("\\0")?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// Python's `repr(float)`: the shortest digits that read back the same, in
/// positional form for exponents -4..16 and scientific form otherwise.
pub fn format_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "-1.2345e-7".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (sign, mantissa) = mantissa.strip_prefix('-').map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Python switches to scientific when the decimal point would sit at or
    // before the 4th leading zero, or beyond 16 digits.
    let point = exp + 1;
    let body = if !(-4 < point && point <= 16) {
        let (head, tail) = digits.split_at(1);
        let frac = if tail.is_empty() { String::new() } else { format!(".{tail}") };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{head}{frac}e{esign}{:02}", exp.abs())
    } else if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (12.0, "12.0"),
            (-12.5, "-12.5"),
            (0.1, "0.1"),
            (1e20, "1e+20"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123456.789, "123456.789"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (2.5e300, "2.5e+300"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ];
        for (x, want) in cases {
            assert_eq!(format_float(x), want, "formatting {x:?}");
        }
    }

    #[test]
    fn compound_values_quote_strings_inside() {
        let v = Value::array(vec![Value::Int(1), Value::str("a\"b"), Value::Float(2.5), Value::Bool(true), Value::Nil]);
        assert_eq!(v.to_string(), r#"[1, "a\"b", 2.5, true, nil]"#);
        let mut m = Map::new();
        m.insert("status".into(), Value::Int(0));
        m.insert("stdout".into(), Value::str("hi\n"));
        assert_eq!(Value::map(m).to_string(), r#"{"status": 0, "stdout": "hi\n"}"#);
        assert_eq!(Value::str("raw \"s\"").to_string(), "raw \"s\"");
    }

    #[test]
    fn equality_is_structural_and_numeric() {
        assert_eq!(Value::Int(1), Value::Float(1.0));
        assert_ne!(Value::Int(1), Value::str("1"));
        assert_ne!(Value::Int(9_007_199_254_740_993), Value::Float(9_007_199_254_740_992.0));
        assert_eq!(Value::array(vec![Value::Int(1)]), Value::array(vec![Value::Float(1.0)]));
        assert_ne!(Value::Nil, Value::Bool(false));
    }

    #[test]
    fn handles_print_their_type_and_compare_by_identity() {
        let h = |id| Value::Handle(Arc::new(Handle::new("python", "DataFrame", id, Box::new(id))));
        let (a, b) = (h(1), h(2));
        assert_eq!(a.to_string(), "<python DataFrame>");
        assert_eq!(Value::array(vec![a.clone(), Value::Int(1)]).to_string(), "[<python DataFrame>, 1]");
        assert_eq!(a, h(1));
        assert_ne!(a, b);
        assert_ne!(a, Value::str("<python DataFrame>"));
        assert!(a.a_type().starts_with("a python DataFrame (an opaque python object: pass it to a python function"));
        let Value::Handle(inner) = &a else { unreachable!() };
        assert_eq!(inner.payload::<u64>(), Some(&1));
        assert_eq!(inner.payload::<String>(), None);
    }
}
