//! The XML-RPC value model.

use time::OffsetDateTime;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `<int>` / `<i4>`.
    Int(i32),
    /// `<i8>` (extension). Never sent: PHP's extension reads it as NULL.
    I8(i64),
    Bool(bool),
    /// `<string>`, or a `<value>` with text and no type element.
    String(String),
    Double(f64),
    /// `<dateTime.iso8601>`, always UTC when we send it.
    DateTime(OffsetDateTime),
    Base64(Vec<u8>),
    /// Members in document order; names are unique (a duplicate is -32602).
    Struct(Vec<(String, Value)>),
    Array(Vec<Value>),
    /// `<nil/>` (extension): accepted, never sent.
    Nil,
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
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
