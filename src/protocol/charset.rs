//! Turns a request body into UTF-8 text for the XML reader: strips a BOM,
//! refuses a DOCTYPE, and honours the encoding the XML declaration names.
//!
//! May use: `super::xmlrpc::Fault`.
//!
//! The declaration is read here, from the raw bytes, because quick-xml's
//! own decoding maps `iso-8859-1` to windows-1252 (the WHATWG rule), which
//! is wrong for XML. Supported: UTF-8 (the default), ISO-8859-1 (byte n is
//! U+00nn), windows-1252 (its five undefined bytes are invalid, as in
//! Python's `cp1252`) and US-ASCII. Anything else is -32701; a byte the
//! named encoding cannot hold is -32702.

use std::borrow::Cow;

use super::xmlrpc::Fault;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The encodings a body may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Charset {
    Utf8,
    Latin1,
    Windows1252,
    Ascii,
}

/// `body` as UTF-8 text without a byte-order mark, ready for the XML reader.
pub(crate) fn decode_body(body: &[u8]) -> Result<Cow<'_, str>, Fault> {
    let (has_bom, rest) = match body.strip_prefix(UTF8_BOM) {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    if rest.starts_with(b"\xFE\xFF")
        || rest.starts_with(b"\xFF\xFE")
        || rest.starts_with(b"\x00<")
        || rest.starts_with(b"<\x00")
    {
        return Err(Fault::new(
            Fault::UNSUPPORTED_ENCODING,
            "the body is UTF-16; send UTF-8, ISO-8859-1, windows-1252 or US-ASCII",
        ));
    }
    reject_doctype(rest)?;
    let charset = match declared_encoding(rest)? {
        None => Charset::Utf8,
        Some(label) => {
            let charset = charset_for(label).ok_or_else(|| {
                Fault::new(
                    Fault::UNSUPPORTED_ENCODING,
                    format!(
                        "unsupported encoding '{}' in the XML declaration; \
                         use UTF-8, ISO-8859-1, windows-1252 or US-ASCII",
                        crate::shorten(label, 40)
                    ),
                )
            })?;
            if has_bom && charset != Charset::Utf8 {
                return Err(Fault::new(
                    Fault::UNSUPPORTED_ENCODING,
                    format!(
                        "the XML declaration names encoding '{}' but the body starts \
                         with a UTF-8 byte-order mark",
                        crate::shorten(label, 40)
                    ),
                ));
            }
            charset
        }
    };
    decode(rest, charset)
}

fn decode(bytes: &[u8], charset: Charset) -> Result<Cow<'_, str>, Fault> {
    // Pure ASCII is the same text in every supported charset.
    let first_high = bytes.iter().position(|&b| b >= 0x80);
    let Some(first_high) = first_high else {
        return match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(_) => Err(invalid_byte(bytes, 0, "ASCII")),
        };
    };
    match charset {
        Charset::Utf8 => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(e) => Err(invalid_byte(bytes, e.valid_up_to(), "UTF-8")),
        },
        Charset::Ascii => Err(invalid_byte(bytes, first_high, "US-ASCII")),
        Charset::Latin1 => Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())),
        Charset::Windows1252 => {
            // encoding_rs maps these to C1 controls (WHATWG); in windows-1252
            // proper, and in Python's codec, they are unassigned.
            if let Some(at) = bytes
                .iter()
                .position(|b| matches!(b, 0x81 | 0x8D | 0x8F | 0x90 | 0x9D))
            {
                return Err(invalid_byte(bytes, at, "windows-1252"));
            }
            match encoding_rs::WINDOWS_1252
                .decode_without_bom_handling_and_without_replacement(bytes)
            {
                Some(text) => Ok(Cow::Owned(text.into_owned())),
                None => Err(invalid_byte(bytes, first_high, "windows-1252")),
            }
        }
    }
}

fn invalid_byte(bytes: &[u8], at: usize, charset: &str) -> Fault {
    let byte = bytes.get(at).copied().unwrap_or(0);
    Fault::new(
        Fault::INVALID_CHARACTER,
        format!("byte 0x{byte:02X} at offset {at} is not valid {charset}; declare the body's real encoding in the XML declaration"),
    )
}

fn charset_for(label: &str) -> Option<Charset> {
    const UTF8: &[&str] = &["utf-8", "utf8"];
    const LATIN1: &[&str] = &[
        "iso-8859-1",
        "iso8859-1",
        "iso_8859-1",
        "iso_8859-1:1987",
        "latin1",
        "latin-1",
        "l1",
        "iso-ir-100",
        "cp819",
        "ibm819",
        "csisolatin1",
    ];
    const CP1252: &[&str] = &["windows-1252", "cp1252", "x-cp1252"];
    const ASCII: &[&str] = &[
        "us-ascii",
        "ascii",
        "ansi_x3.4-1968",
        "iso646-us",
        "csascii",
    ];
    let is = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(label));
    if is(UTF8) {
        Some(Charset::Utf8)
    } else if is(LATIN1) {
        Some(Charset::Latin1)
    } else if is(CP1252) {
        Some(Charset::Windows1252)
    } else if is(ASCII) {
        Some(Charset::Ascii)
    } else {
        None
    }
}

fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().take_while(|&&b| is_xml_space(b)).count();
    &bytes[n..]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// -32700 for a `<!DOCTYPE` in the prolog, before anything else is looked
/// at: XML-RPC never needs a DTD, and refusing it shuts out entity bombs
/// and external entities. (A DOCTYPE later in the body is caught by the
/// parser.)
fn reject_doctype(mut rest: &[u8]) -> Result<(), Fault> {
    loop {
        rest = skip_space(rest);
        if rest.starts_with(b"<?") {
            match find(rest, b"?>") {
                Some(end) => rest = &rest[end + 2..],
                None => return Ok(()),
            }
        } else if rest.starts_with(b"<!--") {
            match find(&rest[4..], b"-->") {
                Some(end) => rest = &rest[4 + end + 3..],
                None => return Ok(()),
            }
        } else if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"<!DOCTYPE") {
            return Err(Fault::new(
                Fault::PARSE_ERROR,
                "a <!DOCTYPE> is not allowed in XML-RPC; remove the document type declaration",
            ));
        } else {
            return Ok(());
        }
    }
}

/// The `encoding` pseudo-attribute of the XML declaration, if there is a
/// declaration and it names one.
fn declared_encoding(body: &[u8]) -> Result<Option<&str>, Fault> {
    // Leading whitespace before the declaration is tolerated.
    let rest = skip_space(body);
    let Some(after) = rest.strip_prefix(b"<?xml") else {
        return Ok(None);
    };
    if !after.first().is_some_and(|&b| is_xml_space(b)) {
        return Ok(None);
    }
    let Some(end) = find(after, b"?>") else {
        return Ok(None); // unterminated: the XML reader reports it
    };
    let decl = &after[..end];
    let Some(at) = find(decl, b"encoding") else {
        return Ok(None);
    };
    let malformed = || {
        Fault::new(
            Fault::PARSE_ERROR,
            format!(
                "malformed XML declaration '<?xml{}?>'",
                crate::shorten(&String::from_utf8_lossy(decl), 80)
            ),
        )
    };
    let value = skip_space(&decl[at + b"encoding".len()..]);
    let value = skip_space(value.strip_prefix(b"=").ok_or_else(malformed)?);
    let quote = *value.first().ok_or_else(malformed)?;
    if quote != b'"' && quote != b'\'' {
        return Err(malformed());
    }
    let value = &value[1..];
    let close = value
        .iter()
        .position(|&b| b == quote)
        .ok_or_else(malformed)?;
    let label = std::str::from_utf8(&value[..close]).map_err(|_| malformed())?;
    Ok(Some(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp1252_agrees_with_encoding_rs_for_assigned_bytes() {
        for b in 0x80u8..=0xFF {
            let body = [b'<', b'a', b'>', b, b'<', b'/', b'a', b'>'];
            let mut with_decl = b"<?xml version='1.0' encoding='windows-1252'?>".to_vec();
            with_decl.extend_from_slice(&body);
            let got = decode_body(&with_decl);
            if matches!(b, 0x81 | 0x8D | 0x8F | 0x90 | 0x9D) {
                assert_eq!(got.map_err(|f| f.code), Err(Fault::INVALID_CHARACTER));
            } else {
                let byte = [b];
                let (want, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&byte);
                let text = got.expect("assigned byte decodes");
                assert!(
                    text.ends_with(&format!("<a>{want}</a>")),
                    "byte {b:#x}: {text}"
                );
            }
        }
    }

    #[test]
    fn declaration_forms() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"<?xml version='1.0'?><a/>", None),
            (
                b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>",
                Some("ISO-8859-1"),
            ),
            (
                b"<?xml version='1.0' encoding = 'utf-8' ?><a/>",
                Some("utf-8"),
            ),
            (b"\n <?xml version='1.0' encoding='x'?><a/>", Some("x")),
            (b"<?xml-stylesheet encoding='x'?><a/>", None),
            (b"<a/>", None),
        ];
        for (body, want) in cases {
            assert_eq!(
                declared_encoding(body).unwrap(),
                *want,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            declared_encoding(b"<?xml version='1.0' encoding=latin1?>").map_err(|f| f.code),
            Err(Fault::PARSE_ERROR)
        );
    }

    #[test]
    fn doctype_after_comments_and_pis_is_found() {
        let body = b"<?xml version='1.0'?>\n<!-- hi -->\n<?pi x?>\n<!doctype methodCall>";
        assert_eq!(
            reject_doctype(body).map_err(|f| f.code),
            Err(Fault::PARSE_ERROR)
        );
        assert!(reject_doctype(b"<?xml version='1.0'?><methodCall/>").is_ok());
    }
}
