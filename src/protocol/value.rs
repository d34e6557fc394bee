//! The XML-RPC value model, shared by every codec.
//!
//! May use: nothing else in the crate.

use std::borrow::Cow;
use time::OffsetDateTime;

/// A string value or a member name: borrowed when it is one of our own
/// constants (member names, job states), so building an answer does not copy
/// them; owned when it came off the wire or out of the store.
pub type Text = Cow<'static, str>;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `<int>` / `<i4>`.
    Int(i32),
    /// `<i8>` (extension). Never sent: PHP's extension reads it as NULL.
    I8(i64),
    Bool(bool),
    /// `<string>`, or a `<value>` with text and no type element.
    String(Text),
    Double(f64),
    /// `<dateTime.iso8601>`, always UTC when we send it.
    DateTime(OffsetDateTime),
    Base64(Vec<u8>),
    /// Members in document order; names are unique (a duplicate is -32602).
    Struct(Vec<(Text, Value)>),
    Array(Vec<Value>),
    /// `<nil/>` (extension): accepted, never sent; the XML-RPC writer sends
    /// it as an empty string (Ruby refuses `<nil/>`).
    Nil,
}

impl Value {
    pub fn str(s: impl Into<Text>) -> Value {
        Value::String(s.into())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A struct from `(name, value)` pairs, in order.
    pub fn structure<N: Into<Text>>(members: impl IntoIterator<Item = (N, Value)>) -> Value {
        Value::Struct(members.into_iter().map(|(n, v)| (n.into(), v)).collect())
    }

    /// An `<int>` or `<i8>` as i64.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(i64::from(*i)),
            Value::I8(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_struct(&self) -> Option<&[(Text, Value)]> {
        match self {
            Value::Struct(members) => Some(members),
            _ => None,
        }
    }

    /// The member `name` of a struct.
    pub fn member(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(members) => members.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The XML-RPC type name, for messages and `system.methodSignature`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::I8(_) => "i8",
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Double(_) => "double",
            Value::DateTime(_) => "dateTime.iso8601",
            Value::Base64(_) => "base64",
            Value::Struct(_) => "struct",
            Value::Array(_) => "array",
            Value::Nil => "nil",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_pick_their_variant_only() {
        let v = Value::structure([("a", Value::Int(1)), ("b", Value::I8(1 << 40))]);
        assert_eq!(v.member("a").and_then(Value::as_i64), Some(1));
        assert_eq!(v.member("b").and_then(Value::as_i64), Some(1 << 40));
        assert_eq!(v.member("c"), None);
        assert_eq!(v.as_struct().map(<[_]>::len), Some(2));
        assert_eq!(v.as_array(), None);
        assert_eq!(
            Value::Array(vec![Value::Bool(true)]).as_array(),
            Some(&[Value::Bool(true)][..])
        );
        assert_eq!(Value::Bool(false).as_bool(), Some(false));
        assert_eq!(Value::str("1").as_i64(), None);
        assert_eq!(Value::str("x").as_str(), Some("x"));
    }
}
