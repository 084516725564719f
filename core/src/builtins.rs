//! Builtin functions: always in scope, searched before foreign functions.

use std::collections::TryReserveError;

use crate::value::{format_float, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    Len,
    Range,
    Str,
    Int,
    Float,
    Keys,
    /// `div(a, b)`: floor division (0.3).
    Div,
}

impl Builtin {
    pub fn lookup(name: &str) -> Option<Builtin> {
        Some(match name {
            "len" => Builtin::Len,
            "range" => Builtin::Range,
            "str" => Builtin::Str,
            "int" => Builtin::Int,
            "float" => Builtin::Float,
            "keys" => Builtin::Keys,
            "div" => Builtin::Div,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Len => "len",
            Builtin::Range => "range",
            Builtin::Str => "str",
            Builtin::Int => "int",
            Builtin::Float => "float",
            Builtin::Keys => "keys",
            Builtin::Div => "div",
        }
    }

    /// Checked by the resolver, so calls never run with a wrong count.
    pub fn arity(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Builtin::Range => 1..=2,
            Builtin::Div => 2..=2,
            _ => 1..=1,
        }
    }

    pub fn call(self, args: &[Value]) -> Result<Value, String> {
        let arg = &args[0];
        let wrong = || format!("{}() does not take {}", self.name(), arg.a_type());
        match self {
            Builtin::Len => match arg {
                Value::Str(s) => Ok(Value::Int(s.chars().count() as i64)),
                Value::Array(a) => Ok(Value::Int(a.len() as i64)),
                Value::Map(m) => Ok(Value::Int(m.len() as i64)),
                _ => Err(wrong()),
            },
            Builtin::Range => {
                let int = |v: &Value| match v {
                    Value::Int(i) => Ok(*i),
                    other => Err(format!("range() takes Ints, found {}", other.type_name())),
                };
                let (start, end) = match args {
                    [n] => (0, int(n)?),
                    [a, b] => (int(a)?, int(b)?),
                    _ => unreachable!("arity checked by the resolver"),
                };
                range(start, end).map_err(|_| format!("range({start}, {end}) is too large to hold in memory"))
            }
            Builtin::Str => Ok(match arg {
                Value::Str(_) => arg.clone(),
                other => Value::from(other.to_string()),
            }),
            Builtin::Int => match arg {
                Value::Int(_) => Ok(arg.clone()),
                Value::Bool(b) => Ok(Value::Int(*b as i64)),
                Value::Float(x) => {
                    let t = x.trunc();
                    if t.is_finite() && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&t) {
                        Ok(Value::Int(t as i64))
                    } else {
                        Err(format!("int() cannot convert {} to a 64-bit Int", format_float(*x)))
                    }
                }
                Value::Str(s) => {
                    s.trim().parse::<i64>().map(Value::Int).map_err(|_| format!("int() cannot parse {:?} as an Int", s.as_ref()))
                }
                _ => Err(wrong()),
            },
            Builtin::Float => match arg {
                Value::Float(_) => Ok(arg.clone()),
                Value::Int(i) => Ok(Value::Float(*i as f64)),
                Value::Str(s) => {
                    parse_float(s.trim()).map(Value::Float).ok_or_else(|| format!("float() cannot parse {:?} as a Float", s.as_ref()))
                }
                _ => Err(wrong()),
            },
            Builtin::Div => crate::ops::floor_div(&args[0], &args[1]),
            Builtin::Keys => match arg {
                Value::Map(m) => Ok(Value::array(m.keys().map(|k| Value::Str(k.clone())).collect())),
                _ => Err(wrong()),
            },
        }
    }
}

fn range(start: i64, end: i64) -> Result<Value, TryReserveError> {
    let n = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
    let mut items = Vec::new();
    items.try_reserve_exact(n)?;
    items.extend((start..end).map(Value::Int));
    Ok(Value::array(items))
}

/// Python's float() spellings: digits, `inf`, `nan`, with an optional sign.
fn parse_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | "infinity" | "nan") || unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        lower.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(b: Builtin, args: &[Value]) -> Result<Value, String> {
        b.call(args)
    }

    #[test]
    fn conversions() {
        assert_eq!(call(Builtin::Int, &[Value::str(" 12 ")]), Ok(Value::Int(12)));
        assert_eq!(call(Builtin::Int, &[Value::Float(3.9)]), Ok(Value::Int(3)));
        assert_eq!(call(Builtin::Int, &[Value::Float(-3.9)]), Ok(Value::Int(-3)));
        assert!(call(Builtin::Int, &[Value::Float(f64::NAN)]).is_err());
        assert!(call(Builtin::Int, &[Value::str("x")]).is_err());
        assert!(matches!(call(Builtin::Float, &[Value::Int(3)]), Ok(Value::Float(x)) if x == 3.0));
        assert!(matches!(call(Builtin::Float, &[Value::str("-inf")]), Ok(Value::Float(x)) if x == f64::NEG_INFINITY));
        assert!(call(Builtin::Float, &[Value::str("infinite")]).is_err());
        assert_eq!(call(Builtin::Str, &[Value::Float(0.5)]), Ok(Value::str("0.5")));
        assert_eq!(call(Builtin::Str, &[Value::array(vec![Value::str("a")])]), Ok(Value::str("[\"a\"]")));
    }

    #[test]
    fn ranges_and_lengths() {
        assert_eq!(call(Builtin::Range, &[Value::Int(3)]).unwrap().to_string(), "[0, 1, 2]");
        assert_eq!(call(Builtin::Range, &[Value::Int(2), Value::Int(5)]).unwrap().to_string(), "[2, 3, 4]");
        assert_eq!(call(Builtin::Range, &[Value::Int(5), Value::Int(2)]).unwrap().to_string(), "[]");
        assert!(call(Builtin::Range, &[Value::Int(i64::MAX)]).is_err());
        assert_eq!(call(Builtin::Len, &[Value::str("héllo")]), Ok(Value::Int(5)));
        assert!(call(Builtin::Len, &[Value::Int(5)]).is_err());
    }
}
