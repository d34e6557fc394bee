//! XML-RPC 1.0 on quick-xml: parses calls and responses, writes calls,
//! responses and faults (see shared/protocol/XMLRPC-NOTES.md).
//!
//! May use: `super::value`, `super::charset`, `super::base64`, `crate::shorten`.
//!
//! Reading. [`parse_call`] and [`parse_response`] share one parser: the
//! body is turned into UTF-8 text first (`charset`: BOM, DOCTYPE refusal,
//! the declared encoding), then one iterative walk over quick-xml events
//! builds the value on an explicit stack, so client nesting never grows the
//! Rust stack; [`Limits`] bounds depth, text size and element count.
//! Fault codes: -32700 not well-formed XML (DOCTYPE, truncated, undeclared
//! entity, bad character reference); -32701 unknown encoding; -32702 a byte
//! the encoding cannot hold; -32600 well-formed but not XML-RPC (wrong root,
//! a second root element, unknown or misplaced element, bad methodName,
//! a limit exceeded); -32602 a value whose text does not fit its type
//! (bad int, boolean other than 0/1, inf/nan, bad date, bad base64,
//! duplicate struct member).
//!
//! Tolerated on input, deliberately: a `prefix:` on any tag name (Apache's
//! `<ex:i8>`), unknown attributes, whitespace before the XML declaration,
//! missing `<params>`, `<array/>` without `<data>`, members with `<value>`
//! before `<name>`, and characters XML 1.0 forbids (C0 controls, raw or as
//! `&#1;`, which phpxmlrpc sends): they reach the application as they are.
//! A dateTime without a zone is taken as UTC.
//!
//! Writing. UTF-8 with `<?xml version="1.0" encoding="UTF-8"?>` at byte 0,
//! no whitespace between elements. Ints as `<int>` (`<i8>` only for
//! [`Value::I8`]), doubles as plain decimals, dateTime as
//! `YYYYMMDDTHH:MM:SS` in UTC, base64 on one line. [`Value::Nil`] is
//! written as an empty `<string></string>`, never `<nil/>` (Ruby refuses
//! it). Text escapes `&`, `<`, `>` and CR (as `&#13;`, so it survives the
//! reader's line-end normalisation); characters XML 1.0 forbids become
//! U+FFFD. A non-finite double, which XML-RPC cannot express, is written as
//! Python writes it (`inf`, `-inf`, `nan`); our own reader refuses that.

use std::fmt::Write as _;

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::value::Text;
use super::{base64, charset, Value};

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
        Fault {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fault {}: {}", self.code, self.message)
    }
}

impl std::error::Error for Fault {}

#[derive(Clone, Debug, PartialEq)]
pub struct MethodCall {
    pub method: String,
    pub params: Vec<Value>,
}

/// Bounds on what one document may make the parser build. Exceeding one
/// is a -32600 fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open `<value>`, `<array>` and `<struct>` elements, each counting one
    /// level (so 64 allows 32 arrays inside each other).
    pub max_depth: usize,
    /// Bytes of text in one string, name or scalar, after decoding.
    pub max_string: usize,
    /// Elements in the whole document.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 64,
            max_string: 16 * 1024 * 1024,
            max_elements: 100_000,
        }
    }
}

/// Parses a request body into a call. Root must be one `<methodCall>`.
pub fn parse_call(body: &[u8], limits: &Limits) -> Result<MethodCall, Fault> {
    match parse(body, limits, RootKind::Call)? {
        Parsed::Call(call) => Ok(call),
        Parsed::Response(_) => Err(internal("parser returned a response for a call")),
    }
}

/// Parses a response body. The outer `Err` means the body is not a valid
/// `<methodResponse>`; the inner `Err` is the fault the server sent.
pub fn parse_response(body: &[u8], limits: &Limits) -> Result<Result<Value, Fault>, Fault> {
    match parse(body, limits, RootKind::Response)? {
        Parsed::Response(r) => Ok(r),
        Parsed::Call(_) => Err(internal("parser returned a call for a response")),
    }
}

/// A `<methodResponse>` carrying `value`.
pub fn write_response(value: &Value) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw("<methodResponse><params><param>");
    w.value(value);
    w.raw("</param></params></methodResponse>");
    w.out
}

/// A `<methodResponse>` carrying `fault` as exactly
/// `{faultCode: int, faultString: string}`.
pub fn write_fault(fault: &Fault) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw("<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>");
    w.display(fault.code);
    w.raw("</int></value></member><member><name>faultString</name><value><string>");
    w.text(&fault.message);
    w.raw("</string></value></member></struct></value></fault></methodResponse>");
    w.out
}

/// A `<methodCall>` of `method` with `params`, for calls to the website.
pub fn write_call(method: &str, params: &[Value]) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw("<methodCall><methodName>");
    w.text(method);
    w.raw("</methodName><params>");
    for p in params {
        w.raw("<param>");
        w.value(p);
        w.raw("</param>");
    }
    w.raw("</params></methodCall>");
    w.out
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum RootKind {
    Call,
    Response,
}

impl RootKind {
    fn tag(self) -> &'static str {
        match self {
            RootKind::Call => "methodCall",
            RootKind::Response => "methodResponse",
        }
    }
}

enum Parsed {
    Call(MethodCall),
    Response(Result<Value, Fault>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scalar {
    Int,
    I8,
    Bool,
    Str,
    Double,
    DateTime,
    Base64,
    Nil,
}

impl Scalar {
    fn tag(self) -> &'static str {
        match self {
            Scalar::Int => "int",
            Scalar::I8 => "i8",
            Scalar::Bool => "boolean",
            Scalar::Str => "string",
            Scalar::Double => "double",
            Scalar::DateTime => "dateTime.iso8601",
            Scalar::Base64 => "base64",
            Scalar::Nil => "nil",
        }
    }
}

/// One open element. Text goes to the parser's single buffer; only the
/// leaves (`Scalar`, `Name`, `MethodName`) and a `<value>` without a type
/// element keep it.
enum Frame {
    Root {
        kind: RootKind,
        method: Option<String>,
        params: Option<Vec<Value>>,
        fault: Option<Value>,
    },
    MethodName,
    Params(Vec<Value>),
    Param(Option<Value>),
    Fault(Option<Value>),
    /// The typed child, once seen.
    Value(Option<Value>),
    Scalar(Scalar),
    Struct(Vec<(Text, Value)>),
    Member {
        name: Option<String>,
        value: Option<Value>,
    },
    Name,
    /// `None` until `<data>` closes.
    Array(Option<Vec<Value>>),
    Data(Vec<Value>),
}

impl Frame {
    fn tag(&self) -> &'static str {
        match self {
            Frame::Root { kind, .. } => kind.tag(),
            Frame::MethodName => "methodName",
            Frame::Params(_) => "params",
            Frame::Param(_) => "param",
            Frame::Fault(_) => "fault",
            Frame::Value(_) => "value",
            Frame::Scalar(s) => s.tag(),
            Frame::Struct(_) => "struct",
            Frame::Member { .. } => "member",
            Frame::Name => "name",
            Frame::Array(_) => "array",
            Frame::Data(_) => "data",
        }
    }

    /// Whether text inside this element is content (else it must be
    /// whitespace).
    fn keeps_text(&self) -> bool {
        matches!(
            self,
            Frame::MethodName | Frame::Scalar(_) | Frame::Name | Frame::Value(None)
        )
    }

    fn counts_for_depth(&self) -> bool {
        matches!(self, Frame::Value(_) | Frame::Struct(_) | Frame::Array(_))
    }
}

struct Parser<'l> {
    limits: &'l Limits,
    root: RootKind,
    stack: Vec<Frame>,
    /// Text of the innermost text-keeping element, entity-decoded.
    text: String,
    depth: usize,
    elements: usize,
    /// Any event other than whitespace seen yet (for the declaration check).
    started: bool,
    result: Option<Parsed>,
}

fn internal(what: &str) -> Fault {
    Fault::new(Fault::INTERNAL_ERROR, format!("XML-RPC parser bug: {what}"))
}

fn is_xml_space(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn trim_xml(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

fn parse(body: &[u8], limits: &Limits, root: RootKind) -> Result<Parsed, Fault> {
    let text = charset::decode_body(body)?;
    let mut reader = Reader::from_str(&text);
    let mut p = Parser {
        limits,
        root,
        stack: Vec::with_capacity(16),
        text: String::new(),
        depth: 0,
        elements: 0,
        started: false,
        result: None,
    };
    loop {
        let event = reader.read_event().map_err(|e| {
            Fault::new(
                Fault::PARSE_ERROR,
                format!(
                    "not well-formed XML at byte {}: {e}",
                    reader.error_position()
                ),
            )
        })?;
        match event {
            Event::Start(e) => p.start(&e)?,
            Event::Empty(e) => {
                p.start(&e)?;
                p.end()?;
            }
            Event::End(_) => p.end()?,
            Event::Text(t) => {
                let content = t.xml10_content();
                p.started |= !is_xml_space(&content);
                p.append(&content)?;
            }
            Event::CData(t) => {
                p.started = true;
                p.append(&t.xml10_content())?;
            }
            Event::GeneralRef(r) => {
                p.started = true;
                let c = resolve_reference(&r).map_err(|m| p.fail(Fault::PARSE_ERROR, m))?;
                p.append(c.encode_utf8(&mut [0; 4]))?;
            }
            Event::Decl(_) => {
                if p.started {
                    return Err(Fault::new(
                        Fault::PARSE_ERROR,
                        "the XML declaration <?xml …?> must come first in the body",
                    ));
                }
                p.started = true;
            }
            Event::DocType(_) => {
                return Err(Fault::new(
                    Fault::PARSE_ERROR,
                    "a <!DOCTYPE> is not allowed in XML-RPC; remove the document type declaration",
                ))
            }
            Event::Comment(_) | Event::PI(_) => p.started = true,
            Event::Eof => break,
        }
    }
    if let Some(open) = p.stack.last() {
        return Err(p.fail(
            Fault::PARSE_ERROR,
            format!(
                "the body ends inside <{}>: truncated or unclosed element",
                open.tag()
            ),
        ));
    }
    p.result.ok_or_else(|| {
        Fault::new(
            Fault::PARSE_ERROR,
            format!("the body holds no XML element; expected <{}>", root.tag()),
        )
    })
}

/// The character a `&…;` reference stands for: the five predefined
/// entities and character references; anything else is a DTD entity we
/// never declare.
fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<char, String> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            _ => Err(format!(
                "'&{};' is not a valid character reference",
                crate::shorten(r, 20)
            )),
        };
    }
    match &**r {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "quot" => Ok('"'),
        "apos" => Ok('\''),
        other => Err(format!(
            "undeclared entity '&{};' (only &lt; &gt; &amp; &quot; &apos; and &#…; exist here); \
             write '&' as &amp;",
            crate::shorten(other, 20)
        )),
    }
}

impl Parser<'_> {
    /// A fault with the position in the value tree appended, e.g.
    /// "(at param 1, member 'Job', item 2)". Built only on error.
    fn fail(&self, code: i32, what: impl Into<String>) -> Fault {
        let mut what = what.into();
        let mut path = String::new();
        for frame in &self.stack {
            let step = match frame {
                Frame::Params(done) => format!("param {}", done.len() + 1),
                Frame::Member { name: Some(n), .. } => {
                    format!("member '{}'", crate::shorten(n, 40))
                }
                Frame::Member { name: None, .. } => "a member".to_owned(),
                Frame::Data(done) => format!("item {}", done.len() + 1),
                Frame::Fault(_) => "fault".to_owned(),
                _ => continue,
            };
            if !path.is_empty() {
                path.push_str(", ");
            }
            path.push_str(&step);
        }
        if !path.is_empty() {
            let _ = write!(what, " (at {path})");
        }
        Fault::new(code, what)
    }

    fn append(&mut self, s: &str) -> Result<(), Fault> {
        match self.stack.last() {
            Some(f) if f.keeps_text() => {
                if self.text.len() + s.len() > self.limits.max_string {
                    return Err(self.fail(
                        Fault::INVALID_REQUEST,
                        format!(
                            "text in <{}> is longer than the limit of {} bytes",
                            f.tag(),
                            self.limits.max_string
                        ),
                    ));
                }
                self.text.push_str(s);
                Ok(())
            }
            _ if is_xml_space(s) => Ok(()),
            Some(f) => Err(self.fail(
                Fault::INVALID_REQUEST,
                format!(
                    "unexpected text '{}' inside <{}>",
                    crate::shorten(trim_xml(s), 40),
                    f.tag()
                ),
            )),
            None => Err(Fault::new(
                Fault::PARSE_ERROR,
                format!(
                    "text '{}' outside the document element",
                    crate::shorten(trim_xml(s), 40)
                ),
            )),
        }
    }

    fn start(&mut self, e: &BytesStart<'_>) -> Result<(), Fault> {
        self.started = true;
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(self.fail(
                Fault::INVALID_REQUEST,
                format!(
                    "more than {} elements in the body",
                    self.limits.max_elements
                ),
            ));
        }
        let qname = e.name();
        if qname.as_ref().is_empty() {
            return Err(self.fail(
                Fault::PARSE_ERROR,
                "'<' without an element name: write a literal '<' in text as &lt;",
            ));
        }
        if !e.attributes_raw().trim().is_empty() {
            for attr in e.attributes() {
                if let Err(err) = attr {
                    return Err(self.fail(
                        Fault::PARSE_ERROR,
                        format!("malformed attribute in <{}>: {err}", qname.as_ref()),
                    ));
                }
            }
        }
        let local = e.local_name();
        let name = local.as_ref();
        let frame = self.child_frame(name)?;
        if frame.counts_for_depth() {
            self.depth += 1;
            if self.depth > self.limits.max_depth {
                return Err(self.fail(
                    Fault::INVALID_REQUEST,
                    format!(
                        "values nest deeper than the limit of {} value/array/struct levels",
                        self.limits.max_depth
                    ),
                ));
            }
        }
        self.text.clear();
        self.stack.push(frame);
        Ok(())
    }

    /// The frame for child element `name` of the current element, or the
    /// fault saying why it cannot be there.
    fn child_frame(&self, name: &str) -> Result<Frame, Fault> {
        let unexpected = |parent: &str| {
            self.fail(
                Fault::INVALID_REQUEST,
                format!(
                    "unexpected element <{}> inside <{parent}>",
                    crate::shorten(name, 40)
                ),
            )
        };
        let twice = |what: &str, parent: &str| {
            self.fail(
                Fault::INVALID_REQUEST,
                format!("more than one <{what}> inside <{parent}>"),
            )
        };
        let Some(top) = self.stack.last() else {
            let want = self.root.tag();
            if self.result.is_some() {
                return Err(Fault::new(
                    Fault::INVALID_REQUEST,
                    format!(
                        "a second root element <{}> after </{want}>",
                        crate::shorten(name, 40)
                    ),
                ));
            }
            if name != want {
                return Err(Fault::new(
                    Fault::INVALID_REQUEST,
                    format!(
                        "the root element is <{}>; expected <{want}>",
                        crate::shorten(name, 40)
                    ),
                ));
            }
            return Ok(Frame::Root {
                kind: self.root,
                method: None,
                params: None,
                fault: None,
            });
        };
        let frame = match top {
            Frame::Root {
                kind,
                method,
                params,
                fault,
            } => match (kind, name) {
                (RootKind::Call, "methodName") if method.is_some() => {
                    return Err(twice("methodName", kind.tag()))
                }
                (RootKind::Call, "methodName") => Frame::MethodName,
                (_, "params") if params.is_some() || fault.is_some() => {
                    return Err(twice("params> or <fault", kind.tag()))
                }
                (_, "params") => Frame::Params(Vec::new()),
                (RootKind::Response, "fault") if params.is_some() || fault.is_some() => {
                    return Err(twice("params> or <fault", kind.tag()))
                }
                (RootKind::Response, "fault") => Frame::Fault(None),
                _ => return Err(unexpected(kind.tag())),
            },
            Frame::Params(_) => match name {
                "param" => Frame::Param(None),
                _ => return Err(unexpected("params")),
            },
            Frame::Param(v) | Frame::Fault(v) => match name {
                "value" if v.is_some() => return Err(twice("value", top.tag())),
                "value" => Frame::Value(None),
                _ => return Err(unexpected(top.tag())),
            },
            Frame::Value(typed) => {
                if typed.is_some() {
                    return Err(self.fail(
                        Fault::INVALID_REQUEST,
                        "a <value> holds more than one type element",
                    ));
                }
                if !is_xml_space(&self.text) {
                    return Err(self.fail(
                        Fault::INVALID_REQUEST,
                        format!(
                            "a <value> mixes text '{}' with a type element",
                            crate::shorten(trim_xml(&self.text), 40)
                        ),
                    ));
                }
                match name {
                    "int" | "i4" => Frame::Scalar(Scalar::Int),
                    "i8" => Frame::Scalar(Scalar::I8),
                    "boolean" => Frame::Scalar(Scalar::Bool),
                    "string" => Frame::Scalar(Scalar::Str),
                    "double" => Frame::Scalar(Scalar::Double),
                    "dateTime.iso8601" => Frame::Scalar(Scalar::DateTime),
                    "base64" => Frame::Scalar(Scalar::Base64),
                    "nil" => Frame::Scalar(Scalar::Nil),
                    "struct" => Frame::Struct(Vec::new()),
                    "array" => Frame::Array(None),
                    _ => {
                        return Err(self.fail(
                            Fault::INVALID_REQUEST,
                            format!("unknown value type <{}>", crate::shorten(name, 40)),
                        ))
                    }
                }
            }
            Frame::Struct(_) => match name {
                "member" => Frame::Member {
                    name: None,
                    value: None,
                },
                _ => return Err(unexpected("struct")),
            },
            Frame::Member { name: n, value } => match name {
                "name" if n.is_some() => return Err(twice("name", "member")),
                "name" => Frame::Name,
                "value" if value.is_some() => return Err(twice("value", "member")),
                "value" => Frame::Value(None),
                _ => return Err(unexpected("member")),
            },
            Frame::Array(items) => match name {
                "data" if items.is_some() => return Err(twice("data", "array")),
                "data" => Frame::Data(Vec::new()),
                _ => return Err(unexpected("array")),
            },
            Frame::Data(_) => match name {
                "value" => Frame::Value(None),
                _ => return Err(unexpected("data")),
            },
            Frame::MethodName | Frame::Scalar(_) | Frame::Name => {
                return Err(unexpected(top.tag()));
            }
        };
        Ok(frame)
    }

    fn end(&mut self) -> Result<(), Fault> {
        let Some(frame) = self.stack.pop() else {
            return Err(internal("end tag with no open element"));
        };
        if frame.counts_for_depth() {
            self.depth -= 1;
        }
        match frame {
            Frame::Scalar(kind) => {
                let v = match parse_scalar(kind, &mut self.text) {
                    Ok(v) => v,
                    Err(m) => return Err(self.fail(Fault::INVALID_PARAMS, m)),
                };
                self.text.clear();
                self.set_typed(v)
            }
            Frame::Struct(members) => {
                if let Some(dup) = duplicate_name(&members) {
                    let m = format!(
                        "struct member '{}' appears more than once",
                        crate::shorten(dup, 40)
                    );
                    return Err(self.fail(Fault::INVALID_PARAMS, m));
                }
                self.set_typed(Value::Struct(members))
            }
            Frame::Array(items) => self.set_typed(Value::Array(items.unwrap_or_default())),
            Frame::Value(typed) => {
                let v = match typed {
                    Some(v) => v,
                    None => Value::String(std::mem::take(&mut self.text).into()),
                };
                match self.stack.last_mut() {
                    Some(Frame::Param(slot) | Frame::Fault(slot)) => *slot = Some(v),
                    Some(Frame::Member { value, .. }) => *value = Some(v),
                    Some(Frame::Data(items)) => items.push(v),
                    _ => return Err(internal("<value> closed in the wrong place")),
                }
                Ok(())
            }
            Frame::Name => {
                let n = std::mem::take(&mut self.text);
                match self.stack.last_mut() {
                    Some(Frame::Member { name, .. }) => *name = Some(n),
                    _ => return Err(internal("<name> closed outside <member>")),
                }
                Ok(())
            }
            Frame::Member { name, value } => {
                let (name, value) = match (name, value) {
                    (Some(n), Some(v)) => (n, v),
                    (None, _) => {
                        return Err(
                            self.fail(Fault::INVALID_REQUEST, "a struct <member> has no <name>")
                        )
                    }
                    (Some(n), None) => {
                        let m =
                            format!("struct member '{}' has no <value>", crate::shorten(&n, 40));
                        return Err(self.fail(Fault::INVALID_REQUEST, m));
                    }
                };
                match self.stack.last_mut() {
                    Some(Frame::Struct(members)) => members.push((name.into(), value)),
                    _ => return Err(internal("<member> closed outside <struct>")),
                }
                Ok(())
            }
            Frame::Data(items) => {
                match self.stack.last_mut() {
                    Some(Frame::Array(slot)) => *slot = Some(items),
                    _ => return Err(internal("<data> closed outside <array>")),
                }
                Ok(())
            }
            Frame::Param(v) => {
                let Some(v) = v else {
                    return Err(self.fail(Fault::INVALID_REQUEST, "a <param> has no <value>"));
                };
                match self.stack.last_mut() {
                    Some(Frame::Params(values)) => values.push(v),
                    _ => return Err(internal("<param> closed outside <params>")),
                }
                Ok(())
            }
            Frame::Params(values) => {
                match self.stack.last_mut() {
                    Some(Frame::Root { params, .. }) => *params = Some(values),
                    _ => return Err(internal("<params> closed outside the root")),
                }
                Ok(())
            }
            Frame::Fault(v) => {
                let Some(v) = v else {
                    return Err(self.fail(Fault::INVALID_REQUEST, "a <fault> has no <value>"));
                };
                match self.stack.last_mut() {
                    Some(Frame::Root { fault, .. }) => *fault = Some(v),
                    _ => return Err(internal("<fault> closed outside the root")),
                }
                Ok(())
            }
            Frame::MethodName => {
                let name = trim_xml(&self.text);
                if name.is_empty()
                    || !name.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/')
                    })
                {
                    return Err(Fault::new(
                        Fault::INVALID_REQUEST,
                        format!(
                            "method name '{}' is not 1 or more of A-Z a-z 0-9 _ . : /",
                            crate::shorten(name, 60)
                        ),
                    ));
                }
                let name = name.to_owned();
                self.text.clear();
                match self.stack.last_mut() {
                    Some(Frame::Root { method, .. }) => *method = Some(name),
                    _ => return Err(internal("<methodName> closed outside the root")),
                }
                Ok(())
            }
            Frame::Root {
                kind,
                method,
                params,
                fault,
            } => {
                self.result = Some(finish_root(kind, method, params, fault)?);
                Ok(())
            }
        }
    }

    /// Hands a typed value to the enclosing `<value>`.
    fn set_typed(&mut self, v: Value) -> Result<(), Fault> {
        match self.stack.last_mut() {
            Some(Frame::Value(slot)) => {
                *slot = Some(v);
                Ok(())
            }
            _ => Err(internal("a type element closed outside <value>")),
        }
    }
}

fn finish_root(
    kind: RootKind,
    method: Option<String>,
    params: Option<Vec<Value>>,
    fault: Option<Value>,
) -> Result<Parsed, Fault> {
    match kind {
        RootKind::Call => {
            let Some(method) = method else {
                return Err(Fault::new(
                    Fault::INVALID_REQUEST,
                    "<methodCall> has no <methodName>",
                ));
            };
            Ok(Parsed::Call(MethodCall {
                method,
                params: params.unwrap_or_default(),
            }))
        }
        RootKind::Response => {
            if let Some(fault) = fault {
                return Ok(Parsed::Response(Err(fault_from_value(&fault)?)));
            }
            let Some(mut params) = params else {
                return Err(Fault::new(
                    Fault::INVALID_REQUEST,
                    "<methodResponse> holds neither <params> nor <fault>",
                ));
            };
            if params.len() != 1 {
                return Err(Fault::new(
                    Fault::INVALID_REQUEST,
                    format!(
                        "<methodResponse> must hold exactly one <param>, not {}",
                        params.len()
                    ),
                ));
            }
            match params.pop() {
                Some(v) => Ok(Parsed::Response(Ok(v))),
                None => Err(internal("empty response params")),
            }
        }
    }
}

/// The `{faultCode, faultString}` struct of a `<fault>`. Extra members are
/// tolerated (we are the client here); missing or mistyped ones are not.
fn fault_from_value(v: &Value) -> Result<Fault, Fault> {
    let bad = |what: &str| {
        Fault::new(
            Fault::INVALID_REQUEST,
            format!("the <fault> value must be a struct with faultCode (int) and faultString (string): {what}"),
        )
    };
    let Value::Struct(_) = v else {
        return Err(bad(&format!("got {}", v.type_name())));
    };
    let code = match v.member("faultCode") {
        Some(Value::Int(c)) => *c,
        Some(Value::I8(c)) => i32::try_from(*c).map_err(|_| bad("faultCode out of range"))?,
        Some(other) => return Err(bad(&format!("faultCode is {}", other.type_name()))),
        None => return Err(bad("faultCode missing")),
    };
    let message = match v.member("faultString") {
        Some(Value::String(s)) => s.to_string(),
        Some(other) => return Err(bad(&format!("faultString is {}", other.type_name()))),
        None => return Err(bad("faultString missing")),
    };
    Ok(Fault { code, message })
}

/// The first name that occurs twice, if any.
fn duplicate_name(members: &[(Text, Value)]) -> Option<&str> {
    if members.len() <= 16 {
        for (i, (a, _)) in members.iter().enumerate() {
            if members[i + 1..].iter().any(|(b, _)| a == b) {
                return Some(a);
            }
        }
        return None;
    }
    let mut names: Vec<&str> = members.iter().map(|(n, _)| n.as_ref()).collect();
    names.sort_unstable();
    names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// The value of a scalar element from its decoded text. `text` is the
/// parser's buffer; a string takes it over.
fn parse_scalar(kind: Scalar, text: &mut String) -> Result<Value, String> {
    let quoted = |t: &str| crate::shorten(t, 40);
    let t = trim_xml(text);
    match kind {
        Scalar::Str => Ok(Value::String(std::mem::take(text).into())),
        Scalar::Int => parse_int::<i32>(t)
            .map(Value::Int)
            .ok_or_else(|| format!("<int> '{}' is not a 32-bit integer", quoted(t))),
        Scalar::I8 => parse_int::<i64>(t)
            .map(Value::I8)
            .ok_or_else(|| format!("<i8> '{}' is not a 64-bit integer", quoted(t))),
        Scalar::Bool => match t {
            "0" => Ok(Value::Bool(false)),
            "1" => Ok(Value::Bool(true)),
            _ => Err(format!("<boolean> '{}' must be 0 or 1", quoted(t))),
        },
        Scalar::Double => {
            // f64's parser also takes "inf", "NaN", "infinity": refuse
            // anything that is not a finite number.
            let ok_chars = t
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
            match t.parse::<f64>() {
                Ok(d) if ok_chars && d.is_finite() => Ok(Value::Double(d)),
                _ => Err(format!(
                    "<double> '{}' is not a finite decimal number (inf and nan are not allowed)",
                    quoted(t)
                )),
            }
        }
        Scalar::DateTime => parse_datetime(t).map(Value::DateTime).ok_or_else(|| {
            format!(
                "<dateTime.iso8601> '{}' is not YYYYMMDDTHH:MM:SS (or YYYY-MM-DD, optional Z or ±hh:mm)",
                quoted(t)
            )
        }),
        Scalar::Base64 => base64::decode(t)
            .map(Value::Base64)
            .map_err(|e| format!("<base64> is not valid base64: {e}")),
        Scalar::Nil => {
            if t.is_empty() {
                Ok(Value::Nil)
            } else {
                Err(format!("<nil/> must be empty, not '{}'", quoted(t)))
            }
        }
    }
}

/// An optional `+`/`-` and ASCII digits, nothing else: std's parser is
/// exactly that (no spaces, no `_`, no radix prefix).
fn parse_int<T: std::str::FromStr>(t: &str) -> Option<T> {
    t.parse().ok()
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// `YYYYMMDD` or `YYYY-MM-DD`, `T`, `HH:MM:SS`, optional `.fraction`,
/// optional `Z`, `±hh:mm` or `±hhmm`. No zone means UTC.
fn parse_datetime(t: &str) -> Option<OffsetDateTime> {
    let b = t.as_bytes();
    let (date, rest) = if b.get(4) == Some(&b'-') {
        if b.len() < 10 || b[7] != b'-' {
            return None;
        }
        ((&b[0..4], &b[5..7], &b[8..10]), &b[10..])
    } else {
        if b.len() < 8 {
            return None;
        }
        ((&b[0..4], &b[4..6], &b[6..8]), &b[8..])
    };
    let rest = rest.strip_prefix(b"T")?;
    if rest.len() < 8 || rest[2] != b':' || rest[5] != b':' {
        return None;
    }
    let (h, mi, s) = (
        digits(&rest[0..2])?,
        digits(&rest[3..5])?,
        digits(&rest[6..8])?,
    );
    let mut rest = &rest[8..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|d| d.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        nanos = digits(&frac[..n])? * 10u32.pow(9 - n as u32);
        rest = &frac[n..];
    }
    let offset = match rest {
        b"" | b"Z" => UtcOffset::UTC,
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let (oh, om) = match tz {
                [a, b, b':', c, d] | [a, b, c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
                _ => return None,
            };
            let (oh, om) = (i8::try_from(oh).ok()?, i8::try_from(om).ok()?);
            let (oh, om) = if *sign == b'-' { (-oh, -om) } else { (oh, om) };
            UtcOffset::from_hms(oh, om, 0).ok()?
        }
        _ => return None,
    };
    let month = Month::try_from(u8::try_from(digits(date.1)?).ok()?).ok()?;
    let date = Date::from_calendar_date(
        i32::try_from(digits(date.0)?).ok()?,
        month,
        u8::try_from(digits(date.2)?).ok()?,
    )
    .ok()?;
    let time = Time::from_hms_nano(
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(s).ok()?,
        nanos,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

struct Writer {
    out: Vec<u8>,
}

/// The bytes [`Writer::text`] may have to replace: `&`, `<`, `>`, the
/// C0 controls, and 0xEF (first byte of U+FFFE and U+FFFF).
static NEEDS_CARE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'&' as usize] = true;
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[0xEF] = true;
    table
};

/// One step of the iterative value writer.
enum Step<'a> {
    Value(&'a Value),
    Member(&'a str, &'a Value),
    Raw(&'static str),
}

impl Writer {
    fn new() -> Writer {
        // Room for GetJob's answer (about 1 KiB) without growing the buffer.
        let mut out = Vec::with_capacity(2048);
        out.extend_from_slice(DECLARATION.as_bytes());
        Writer { out }
    }

    fn raw(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    /// An integer in decimal, without the formatting machinery (a GetJob
    /// answer has three, and `write!` cost more than the rest of the value).
    fn integer(&mut self, i: impl itoa::Integer) {
        self.raw(itoa::Buffer::new().format(i));
    }

    fn display(&mut self, v: impl std::fmt::Display) {
        use std::io::Write as _;
        // Writing to a Vec cannot fail.
        let _ = write!(self.out, "{v}");
    }

    /// `s` as character data: `&`, `<`, `>` escaped, CR as `&#13;`,
    /// characters XML 1.0 forbids replaced by U+FFFD.
    fn text(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut done = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            // Most text needs nothing: one table look-up per such byte.
            if !NEEDS_CARE[b as usize] {
                i += 1;
                continue;
            }
            let (replacement, len): (&str, usize) = match b {
                b'&' => ("&amp;", 1),
                b'<' => ("&lt;", 1),
                b'>' => ("&gt;", 1),
                b'\r' => ("&#13;", 1),
                b'\t' | b'\n' => {
                    i += 1;
                    continue;
                }
                0..=0x1F => ("\u{FFFD}", 1),
                // U+FFFE and U+FFFF are EF BF BE / EF BF BF.
                0xEF if bytes.get(i + 1) == Some(&0xBF)
                    && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) =>
                {
                    ("\u{FFFD}", 3)
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            self.out.extend_from_slice(&bytes[done..i]);
            self.raw(replacement);
            i += len;
            done = i;
        }
        self.out.extend_from_slice(&bytes[done..]);
    }

    /// `<value>…</value>` for `root`, without recursion.
    fn value(&mut self, root: &Value) {
        // Deep enough for a GetJob answer without growing.
        let mut steps = Vec::with_capacity(32);
        steps.push(Step::Value(root));
        while let Some(step) = steps.pop() {
            let v = match step {
                Step::Raw(s) => {
                    self.raw(s);
                    continue;
                }
                Step::Member(name, v) => {
                    self.raw("<member><name>");
                    self.text(name);
                    self.raw("</name>");
                    steps.push(Step::Raw("</member>"));
                    steps.push(Step::Value(v));
                    continue;
                }
                Step::Value(v) => v,
            };
            match v {
                Value::Int(i) => {
                    self.raw("<value><int>");
                    self.integer(*i);
                    self.raw("</int></value>");
                }
                Value::I8(i) => {
                    self.raw("<value><i8>");
                    self.integer(*i);
                    self.raw("</i8></value>");
                }
                Value::Bool(b) => {
                    self.raw(if *b {
                        "<value><boolean>1</boolean></value>"
                    } else {
                        "<value><boolean>0</boolean></value>"
                    });
                }
                Value::String(s) => {
                    self.raw("<value><string>");
                    self.text(s);
                    self.raw("</string></value>");
                }
                Value::Nil => self.raw("<value><string></string></value>"),
                Value::Double(d) => {
                    self.raw("<value><double>");
                    self.double(*d);
                    self.raw("</double></value>");
                }
                Value::DateTime(dt) => {
                    self.raw("<value><dateTime.iso8601>");
                    self.datetime(dt);
                    self.raw("</dateTime.iso8601></value>");
                }
                Value::Base64(bytes) => {
                    self.raw("<value><base64>");
                    base64::encode_into(bytes, &mut self.out);
                    self.raw("</base64></value>");
                }
                Value::Struct(members) => {
                    self.raw("<value><struct>");
                    steps.push(Step::Raw("</struct></value>"));
                    steps.extend(members.iter().rev().map(|(n, v)| Step::Member(n, v)));
                }
                Value::Array(items) => {
                    self.raw("<value><array><data>");
                    steps.push(Step::Raw("</data></array></value>"));
                    steps.extend(items.iter().rev().map(Step::Value));
                }
            }
        }
    }

    /// A plain decimal (Rust's `Display` for f64 never uses an exponent),
    /// with a decimal point as the spec's examples have.
    fn double(&mut self, d: f64) {
        if d.is_nan() {
            self.raw("nan");
        } else if d.is_infinite() {
            self.raw(if d > 0.0 { "inf" } else { "-inf" });
        } else {
            let start = self.out.len();
            self.display(d);
            if !self.out[start..].contains(&b'.') {
                self.raw(".0");
            }
        }
    }

    /// `YYYYMMDDTHH:MM:SS` in UTC.
    /// `YYYYMMDDTHH:MM:SS` in UTC. Written digit by digit: `write!` with six
    /// arguments cost more than the rest of a GetJob answer's value.
    fn datetime(&mut self, dt: &OffsetDateTime) {
        let dt = dt.checked_to_offset(UtcOffset::UTC).unwrap_or(*dt);
        let Ok(year) = u32::try_from(dt.year()) else {
            // Before year 0: never from our clock; keep the sign.
            self.display(format_args!(
                "{:04}{:02}{:02}T{:02}:{:02}:{:02}",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second()
            ));
            return;
        };
        let out = &mut self.out;
        push_digits(out, year, 4);
        push_digits(out, u8::from(dt.month()).into(), 2);
        push_digits(out, dt.day().into(), 2);
        out.push(b'T');
        push_digits(out, dt.hour().into(), 2);
        out.push(b':');
        push_digits(out, dt.minute().into(), 2);
        out.push(b':');
        push_digits(out, dt.second().into(), 2);
    }
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let text = buffer.format(n);
    out.resize(out.len() + width.saturating_sub(text.len()), b'0');
    out.extend_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests;
