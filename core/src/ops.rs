//! Operators, indexing and iteration on values: the spec's arithmetic and
//! comparison rules. Errors are plain messages; the interpreter adds the span.

use std::cmp::Ordering;

use crate::syntax::ast::{BinaryOp, UnaryOp};
use crate::value::Value;

pub type OpResult = Result<Value, String>;

fn mismatch(op: &str, a: &Value, b: &Value) -> String {
    format!("cannot apply `{op}` to {} and {}", a.type_name(), b.type_name())
}

fn overflow(op: &str, a: i64, b: i64) -> String {
    format!("integer overflow: {a} {op} {b} does not fit in 64 bits")
}

/// Arithmetic and comparison; `and` / `or` short-circuit in the interpreter
/// and never reach here.
#[inline]
pub fn binary(op: BinaryOp, a: &Value, b: &Value) -> OpResult {
    use BinaryOp::*;
    use Value::{Float, Int};
    // Int arithmetic first: it is what loops do.
    if let (Int(x), Int(y)) = (a, b) {
        match op {
            Add => return x.checked_add(*y).map(Int).ok_or_else(|| overflow("+", *x, *y)),
            Sub => return x.checked_sub(*y).map(Int).ok_or_else(|| overflow("-", *x, *y)),
            Lt => return Ok(Value::Bool(x < y)),
            _ => {}
        }
    }
    match op {
        Add => match (a, b) {
            (Int(x), Int(y)) => x.checked_add(*y).map(Int).ok_or_else(|| overflow("+", *x, *y)),
            (Value::Str(x), Value::Str(y)) => Ok(Value::from(format!("{x}{y}"))),
            (Value::Array(x), Value::Array(y)) => Ok(Value::array(x.iter().chain(y.iter()).cloned().collect())),
            _ => float_op(op, a, b, |x, y| x + y),
        },
        Sub => match (a, b) {
            (Int(x), Int(y)) => x.checked_sub(*y).map(Int).ok_or_else(|| overflow("-", *x, *y)),
            _ => float_op(op, a, b, |x, y| x - y),
        },
        Mul => match (a, b) {
            (Int(x), Int(y)) => x.checked_mul(*y).map(Int).ok_or_else(|| overflow("*", *x, *y)),
            _ => float_op(op, a, b, |x, y| x * y),
        },
        Div => {
            let (x, y) = floats(a, b).ok_or_else(|| mismatch("/", a, b))?;
            if y == 0.0 {
                return Err(format!("division by zero ({a} / {b}): check the divisor before `/`"));
            }
            Ok(Float(x / y))
        }
        Mod => modulo(a, b),
        In => contains(a, b),
        Pow => match (a, b) {
            (Int(x), Int(y)) if *y >= 0 => {
                u32::try_from(*y).ok().and_then(|y| x.checked_pow(y)).map(Int).ok_or_else(|| overflow("^", *x, *y))
            }
            _ => float_op(op, a, b, f64::powf),
        },
        Eq => Ok(Value::Bool(a == b)),
        Ne => Ok(Value::Bool(a != b)),
        Lt | Le | Gt | Ge => {
            let ord =
                compare(a, b).ok_or_else(|| format!("cannot order {} and {} with `{}`", a.type_name(), b.type_name(), op.symbol()))?;
            let yes = match op {
                Lt => ord == Ordering::Less,
                Le => ord != Ordering::Greater,
                Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            };
            Ok(Value::Bool(yes))
        }
        And | Or => unreachable!("the interpreter evaluates `and`/`or` itself"),
    }
}

/// `a % b`: the remainder of floor division, as in Python (its sign is the
/// divisor's).
fn modulo(a: &Value, b: &Value) -> OpResult {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            if *y == 0 {
                return Err(format!("division by zero ({x} % {y}): check the divisor before `%`"));
            }
            // `wrapping_rem`: i64::MIN % -1 is 0 (only the quotient overflows).
            let r = x.wrapping_rem(*y);
            Ok(Value::Int(if r != 0 && (r < 0) != (*y < 0) { r + y } else { r }))
        }
        _ => {
            let (x, y) = floats(a, b).ok_or_else(|| mismatch("%", a, b))?;
            if y == 0.0 {
                return Err(format!("division by zero ({a} % {b}): check the divisor before `%`"));
            }
            Ok(Value::Float(float_divmod(x, y).1))
        }
    }
}

/// `div(a, b)`: floor division, as Python's `a // b`.
pub fn floor_div(a: &Value, b: &Value) -> OpResult {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            if *y == 0 {
                return Err(format!("division by zero (div({x}, {y})): check the divisor before calling div()"));
            }
            let q = x
                .checked_div(*y)
                .ok_or_else(|| format!("integer overflow: div({x}, {y}) does not fit in 64 bits; use floats: div(float(a), b)"))?;
            Ok(Value::Int(if x % y != 0 && (*x < 0) != (*y < 0) { q - 1 } else { q }))
        }
        _ => {
            let (x, y) = floats(a, b).ok_or_else(|| {
                format!(
                    "div() cannot divide {} by {}: it takes Ints and Floats (convert with `int(...)` or `float(...)`)",
                    a.a_type(),
                    b.a_type()
                )
            })?;
            if y == 0.0 {
                return Err(format!("division by zero (div({a}, {b})): check the divisor before calling div()"));
            }
            Ok(Value::Float(float_divmod(x, y).0))
        }
    }
}

/// CPython's `float_divmod`: the floored quotient and the remainder with the
/// divisor's sign, exact where `(x / y).floor()` would round.
fn float_divmod(x: f64, y: f64) -> (f64, f64) {
    let mut rem = x % y;
    let mut div = (x - rem) / y;
    if rem != 0.0 {
        if (y < 0.0) != (rem < 0.0) {
            rem += y;
            div -= 1.0;
        }
    } else {
        rem = 0.0_f64.copysign(y);
    }
    let floordiv = if div != 0.0 {
        let f = div.floor();
        if div - f > 0.5 {
            f + 1.0
        } else {
            f
        }
    } else {
        0.0_f64.copysign(x / y)
    };
    (floordiv, rem)
}

/// `a in b`: an element of an Array (by `==`), a key of a Map, a substring
/// of a String.
fn contains(a: &Value, b: &Value) -> OpResult {
    match (a, b) {
        (_, Value::Array(items)) => Ok(Value::Bool(items.iter().any(|x| x == a))),
        (Value::Str(key), Value::Map(m)) => Ok(Value::Bool(m.contains_key(key))),
        (Value::Str(part), Value::Str(whole)) => Ok(Value::Bool(whole.contains(part.as_ref()))),
        (_, Value::Map(_)) => Err(format!("`in` a Map looks for a String key, found {}: convert it with `str(...)`", a.a_type())),
        (_, Value::Str(_)) => Err(format!("`in` a String looks for a String, found {}: convert it with `str(...)`", a.a_type())),
        _ => Err(format!(
            "cannot apply `in` to {} and {}: the right operand must be an Array, a Map or a String",
            a.type_name(),
            b.type_name()
        )),
    }
}

fn floats(a: &Value, b: &Value) -> Option<(f64, f64)> {
    let f = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(x) => Some(*x),
        _ => None,
    };
    Some((f(a)?, f(b)?))
}

fn float_op(op: BinaryOp, a: &Value, b: &Value, f: impl Fn(f64, f64) -> f64) -> OpResult {
    let (x, y) = floats(a, b).ok_or_else(|| mismatch(op.symbol(), a, b))?;
    Ok(Value::Float(f(x, y)))
}

/// Ordering for `<` and friends: numbers by value, strings lexicographically.
/// `None` when the kinds cannot be ordered (or a NaN is involved).
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => cmp_int_float(*x, *y),
        (Value::Float(x), Value::Int(y)) => cmp_int_float(*y, *x).map(Ordering::reverse),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        _ => None,
    }
}

/// Exact: converting the Int to f64 would round above 2^53.
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= 9.223_372_036_854_776e18 {
        return Some(Ordering::Less);
    }
    if f < -9.223_372_036_854_776e18 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    Some(i.cmp(&(whole as i64)).then_with(|| 0.0.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal)))
}

pub fn unary(op: UnaryOp, v: &Value) -> OpResult {
    match (op, v) {
        (UnaryOp::Neg, Value::Int(i)) => {
            i.checked_neg().map(Value::Int).ok_or_else(|| format!("integer overflow: -({i}) does not fit in 64 bits"))
        }
        (UnaryOp::Neg, Value::Float(x)) => Ok(Value::Float(-x)),
        (UnaryOp::Plus, Value::Int(_) | Value::Float(_)) => Ok(v.clone()),
        (UnaryOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
        (UnaryOp::Not, _) => Err(format!("`!` needs a Bool, found {}", v.type_name())),
        _ => Err(format!("cannot apply unary `{}` to {}", op.symbol(), v.type_name())),
    }
}

/// `v[index]`: arrays and strings by Int (negative counts from the end),
/// maps by String.
pub fn index(v: &Value, index: &Value) -> OpResult {
    match (v, index) {
        (Value::Array(items), Value::Int(i)) => {
            let at =
                position(*i, items.len()).ok_or_else(|| format!("index {i} is out of range for an Array of length {}", items.len()))?;
            Ok(items[at].clone())
        }
        (Value::Str(s), Value::Int(i)) => {
            let n = s.chars().count();
            let at = position(*i, n).ok_or_else(|| format!("index {i} is out of range for a String of length {n}"))?;
            Ok(Value::from(s.chars().nth(at).expect("position checked").to_string()))
        }
        (Value::Map(_), Value::Str(key)) => field(v, key),
        (Value::Array(_) | Value::Str(_), other) => Err(format!("an index must be an Int, found {}", other.type_name())),
        (Value::Map(_), other) => Err(format!("a Map key must be a String, found {}", other.type_name())),
        _ => Err(format!("cannot index {}", v.a_type())),
    }
}

fn position(i: i64, len: usize) -> Option<usize> {
    let at = if i < 0 { i.checked_add(len as i64)? } else { i };
    (0..len as i64).contains(&at).then_some(at as usize)
}

/// `v.name` and `v["name"]`.
pub fn field(v: &Value, name: &str) -> OpResult {
    match v {
        Value::Map(m) => m.get(name).cloned().ok_or_else(|| {
            let known: Vec<String> = m.keys().take(8).map(|k| format!("`{k}`")).collect();
            format!("the Map has no key `{name}` (keys: {})", if known.is_empty() { "none".into() } else { known.join(", ") })
        }),
        other => Err(format!("cannot read `.{name}` of {}: only Maps have keys", other.a_type())),
    }
}

/// What `for x in v` walks: array items, map keys or string characters.
pub fn iterate(v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(items) => Ok(items.as_ref().clone()),
        Value::Map(m) => Ok(m.keys().map(|k| Value::Str(k.clone())).collect()),
        Value::Str(s) => Ok(s.chars().map(|c| Value::from(c.to_string())).collect()),
        other => Err(format!("cannot iterate over {}", other.a_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BinaryOp::*;

    fn b(op: BinaryOp, x: impl Into<Value>, y: impl Into<Value>) -> OpResult {
        binary(op, &x.into(), &y.into())
    }

    #[test]
    fn int_arithmetic_stays_int_and_checks_overflow() {
        assert_eq!(b(Add, 7, 3), Ok(Value::Int(10)));
        assert!(matches!(b(Add, i64::MAX, 1), Err(m) if m.contains("overflow")));
        assert!(matches!(b(Mul, i64::MAX, 2), Err(m) if m.contains("overflow")));
        assert_eq!(b(Pow, 2, 10), Ok(Value::Int(1024)));
        assert!(matches!(b(Pow, 2, 64), Err(m) if m.contains("overflow")));
        assert!(matches!(unary(UnaryOp::Neg, &Value::Int(i64::MIN)), Err(m) if m.contains("overflow")));
    }

    #[test]
    fn division_and_mixed_give_floats() {
        assert!(matches!(b(Div, 8, 2), Ok(Value::Float(x)) if x == 4.0));
        assert!(matches!(b(Pow, 2, -1), Ok(Value::Float(x)) if x == 0.5));
        assert!(matches!(b(Mul, 7, 1.5), Ok(Value::Float(x)) if x == 10.5));
        assert!(matches!(b(Div, 1, 0), Err(m) if m.contains("zero")));
        assert!(matches!(b(Div, 1.0, 0.0), Err(m) if m.contains("zero")));
    }

    #[test]
    fn mismatches_name_both_types() {
        let err = b(Add, "a", 1).unwrap_err();
        assert!(err.contains("String") && err.contains("Int"), "{err}");
        let err = b(Lt, "a", 1).unwrap_err();
        assert!(err.contains("String") && err.contains("Int"), "{err}");
    }

    #[test]
    fn modulo_and_div_floor_as_in_python() {
        assert_eq!(b(Mod, -7, 2), Ok(Value::Int(1)));
        assert_eq!(b(Mod, 7, -2), Ok(Value::Int(-1)));
        assert_eq!(b(Mod, -7, -2), Ok(Value::Int(-1)));
        assert_eq!(b(Mod, i64::MIN, -1), Ok(Value::Int(0)));
        assert!(matches!(b(Mod, 7.5, 2), Ok(Value::Float(x)) if x == 1.5));
        assert!(matches!(b(Mod, -7.5, 2), Ok(Value::Float(x)) if x == 0.5));
        assert!(matches!(b(Mod, 1, -0.0), Err(m) if m.contains("zero")));
        assert!(matches!(b(Mod, 5, 0), Err(m) if m.contains("zero")));
        let err = b(Mod, "a", 2).unwrap_err();
        assert!(err.contains("`%`") && err.contains("String") && err.contains("Int"), "{err}");
        let d = |x: Value, y: Value| floor_div(&x, &y);
        assert_eq!(d(Value::Int(-7), Value::Int(2)), Ok(Value::Int(-4)));
        assert_eq!(d(Value::Int(7), Value::Int(-2)), Ok(Value::Int(-4)));
        assert_eq!(d(Value::Int(6), Value::Int(3)), Ok(Value::Int(2)));
        assert!(matches!(d(Value::Float(7.5), Value::Int(2)), Ok(Value::Float(x)) if x == 3.0));
        assert!(matches!(d(Value::Float(-7.5), Value::Int(2)), Ok(Value::Float(x)) if x == -4.0));
        assert!(matches!(d(Value::Int(i64::MIN), Value::Int(-1)), Err(m) if m.contains("overflow")));
        assert!(matches!(d(Value::Int(1), Value::Int(0)), Err(m) if m.contains("zero")));
        assert!(matches!(d(Value::str("a"), Value::Int(1)), Err(m) if m.contains("a String by an Int")));
    }

    #[test]
    fn membership() {
        let xs = Value::array(vec![Value::Int(1), Value::array(vec![Value::Int(2)])]);
        assert_eq!(b(In, 1.0, xs.clone()), Ok(Value::Bool(true)));
        assert_eq!(binary(In, &Value::array(vec![Value::Int(2)]), &xs), Ok(Value::Bool(true)));
        assert_eq!(b(In, 3, xs), Ok(Value::Bool(false)));
        assert_eq!(b(In, "ell", "hello"), Ok(Value::Bool(true)));
        assert_eq!(b(In, "", "x"), Ok(Value::Bool(true)));
        let m = Value::map([(std::sync::Arc::from("k"), Value::Nil)].into_iter().collect());
        assert_eq!(binary(In, &Value::str("k"), &m), Ok(Value::Bool(true)));
        assert!(matches!(binary(In, &Value::Int(1), &m), Err(e) if e.contains("an Int")));
        assert!(matches!(b(In, 1, "1"), Err(e) if e.contains("an Int")));
        assert!(matches!(b(In, 1, 2), Err(e) if e.contains("Int and Int")));
    }

    #[test]
    fn comparisons() {
        assert_eq!(b(Lt, "abc", "abd"), Ok(Value::Bool(true)));
        assert_eq!(b(Gt, 3, 2.5), Ok(Value::Bool(true)));
        assert_eq!(b(Le, 9_007_199_254_740_993_i64, 9_007_199_254_740_992.0), Ok(Value::Bool(false)));
        assert_eq!(b(Eq, 1, 1.0), Ok(Value::Bool(true)));
        assert_eq!(b(Ne, "a", 1), Ok(Value::Bool(true)));
    }

    #[test]
    fn indexing() {
        let xs = Value::array(vec![Value::Int(10), Value::Int(20)]);
        assert_eq!(index(&xs, &Value::Int(-1)), Ok(Value::Int(20)));
        assert!(matches!(index(&xs, &Value::Int(5)), Err(m) if m.contains('5')));
        assert_eq!(index(&Value::str("héllo"), &Value::Int(1)), Ok(Value::str("é")));
        assert!(field(&Value::Int(1), "x").is_err());
    }
}
