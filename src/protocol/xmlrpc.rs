//! XML-RPC 1.0 on quick-xml: parse calls and responses, write calls,
//! responses and faults. See shared/protocol/XMLRPC-NOTES.md.

use super::Value;

/// A protocol-level error, sent as `<fault>`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub code: i32,
    pub message: String,
}

impl Fault {
    pub const PARSE_ERROR: i32 = -32700;
    pub const UNSUPPORTED_ENCODING: i32 = -32701;
    pub const INVALID_CHARACTER: i32 = -32702;
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    pub const INTERNAL_ERROR: i32 = -32603;

    pub fn new(code: i32, message: impl Into<String>) -> Fault {
        Fault { code, message: message.into() }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MethodCall {
    pub method: String,
    pub params: Vec<Value>,
}
