//! Tests for the XML-RPC codec: client samples written out by hand from
//! XMLRPC-NOTES.md, every value type and empty form, each malformed case
//! with its fault code, round trips, and Python's `xmlrpc.client` reading
//! our output.

use super::*;
use time::macros::datetime;

fn call(body: impl AsRef<[u8]>) -> Result<MethodCall, Fault> {
    parse_call(body.as_ref(), &Limits::default())
}

fn ok(body: impl AsRef<[u8]>) -> MethodCall {
    let body = body.as_ref();
    call(body).unwrap_or_else(|f| panic!("{f} for {}", String::from_utf8_lossy(body)))
}

/// The single param of a call whose body is `<value>` text `v`.
fn one(v: &str) -> Result<Value, Fault> {
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>m</methodName>\
         <params><param>{v}</param></params></methodCall>"
    );
    let mut c = call(body)?;
    assert_eq!(c.params.len(), 1);
    Ok(c.params.remove(0))
}

fn s(x: &str) -> Value {
    Value::str(x.to_owned())
}

// --- value model -----------------------------------------------------------

#[test]
fn every_type_and_empty_form() {
    let cases: Vec<(&str, Value)> = vec![
        ("<value><int>42</int></value>", Value::Int(42)),
        ("<value><i4>-7</i4></value>", Value::Int(-7)),
        ("<value><int> +12\n</int></value>", Value::Int(12)),
        ("<value><int>2147483647</int></value>", Value::Int(i32::MAX)),
        ("<value><int>-2147483648</int></value>", Value::Int(i32::MIN)),
        ("<value><i8>9007199254740993</i8></value>", Value::I8(9_007_199_254_740_993)),
        ("<value><ex:i8>-5</ex:i8></value>", Value::I8(-5)),
        ("<value><boolean>1</boolean></value>", Value::Bool(true)),
        ("<value><boolean> 0 </boolean></value>", Value::Bool(false)),
        ("<value><string>hi there</string></value>", s("hi there")),
        ("<value><string>  padded\n </string></value>", s("  padded\n ")),
        ("<value>untyped text</value>", s("untyped text")),
        ("<value> untyped, spaces kept </value>", s(" untyped, spaces kept ")),
        ("<value><double>-12.214</double></value>", Value::Double(-12.214)),
        ("<value><double>1e+25</double></value>", Value::Double(1e25)),
        ("<value><double>1E+25</double></value>", Value::Double(1e25)),
        ("<value><double>2.5e-3</double></value>", Value::Double(0.0025)),
        ("<value><double>7</double></value>", Value::Double(7.0)),
        (
            "<value><dateTime.iso8601>19980717T14:08:55</dateTime.iso8601></value>",
            Value::DateTime(datetime!(1998-07-17 14:08:55 UTC)),
        ),
        (
            "<value><dateTime.iso8601>1998-07-17T14:08:55Z</dateTime.iso8601></value>",
            Value::DateTime(datetime!(1998-07-17 14:08:55 UTC)),
        ),
        (
            "<value><dateTime.iso8601> 19980717T14:08:55+02:00 </dateTime.iso8601></value>",
            Value::DateTime(datetime!(1998-07-17 14:08:55 +2)),
        ),
        (
            "<value><dateTime.iso8601>19980717T14:08:55-0130</dateTime.iso8601></value>",
            Value::DateTime(datetime!(1998-07-17 14:08:55 -1:30)),
        ),
        (
            "<value><dateTime.iso8601>20240229T00:00:00.250Z</dateTime.iso8601></value>",
            Value::DateTime(datetime!(2024-02-29 00:00:00.25 UTC)),
        ),
        ("<value><base64>AAEC/w==</base64></value>", Value::Base64(vec![0, 1, 2, 255])),
        ("<value><base64>\nAAEC\n/w==\n</base64></value>", Value::Base64(vec![0, 1, 2, 255])),
        ("<value><base64>AAEC&#10;/w==&#13;&#10;</base64></value>", Value::Base64(vec![0, 1, 2, 255])),
        ("<value><nil/></value>", Value::Nil),
        ("<value><nil></nil></value>", Value::Nil),
        ("<value><ex:nil/></value>", Value::Nil),
        (
            "<value><struct><member><name>a</name><value><int>1</int></value></member>\
             <member><name>b</name><value>x</value></member></struct></value>",
            Value::Struct(vec![("a".into(), Value::Int(1)), ("b".into(), s("x"))]),
        ),
        (
            "<value><struct php_class=\"Foo\"><member><value><int>1</int></value><name>late name</name></member></struct></value>",
            Value::Struct(vec![("late name".into(), Value::Int(1))]),
        ),
        (
            "<value><array><data><value><int>1</int></value><value>two</value>\
             <value><array><data/></array></value></data></array></value>",
            Value::Array(vec![Value::Int(1), s("two"), Value::Array(vec![])]),
        ),
        // Empty forms.
        ("<value/>", s("")),
        ("<value></value>", s("")),
        ("<value><string/></value>", s("")),
        ("<value><string></string></value>", s("")),
        ("<value><base64/></value>", Value::Base64(vec![])),
        ("<value><struct/></value>", Value::Struct(vec![])),
        ("<value><struct></struct></value>", Value::Struct(vec![])),
        ("<value><array><data/></array></value>", Value::Array(vec![])),
        ("<value><array><data></data></array></value>", Value::Array(vec![])),
        ("<value><array/></value>", Value::Array(vec![])),
        (
            "<value><struct><member><name/><value/></member></struct></value>",
            Value::Struct(vec![("".into(), s(""))]),
        ),
    ];
    for (xml, want) in cases {
        assert_eq!(one(xml), Ok(want), "{xml}");
    }
}

#[test]
fn text_entities_char_refs_cdata_and_line_ends() {
    let cases: &[(&str, &str)] = &[
        (
            "<value><string>&lt;&gt;&amp;&quot;&apos;</string></value>",
            "<>&\"'",
        ),
        (
            "<value><string>&#233;&#xE9;&#x1F600;&#128512;&#x1f600;</string></value>",
            "éé😀😀😀",
        ),
        (
            "<value><string>a<![CDATA[<b>&amp;</b>]]>c</string></value>",
            "a<b>&amp;</b>c",
        ),
        (
            "<value><string>1&#10;2<![CDATA[3]]>&amp;4</string></value>",
            "1\n23&4",
        ),
        ("<value><string>a\r\nb\rc\nd</string></value>", "a\nb\nc\nd"),
        ("<value><string><![CDATA[x\r\ny]]></string></value>", "x\ny"),
        ("<value><string>keep&#13;cr</string></value>", "keep\rcr"),
        ("<value><string>a<!-- comment -->b</string></value>", "ab"),
        ("<value><string>tab\there</string></value>", "tab\there"),
        // phpxmlrpc sends control characters as references: tolerated.
        ("<value><string>&#1;x</string></value>", "\u{1}x"),
    ];
    for (xml, want) in cases {
        assert_eq!(one(xml), Ok(s(want)), "{xml}");
    }
}

#[test]
fn whitespace_between_structural_elements_is_ignored() {
    let body = "<?xml version=\"1.0\"?>\n<methodCall>\n  <methodName>  m  </methodName>\n  <params>\n    \
                <param>\n      <value>\n        <struct>\n          <member>\n            <name>k</name>\n            \
                <value>\n              <int>1</int>\n            </value>\n          </member>\n        </struct>\n      \
                </value>\n    </param>\n  </params>\n</methodCall>\n";
    let c = ok(body);
    assert_eq!(c.method, "m");
    assert_eq!(
        c.params,
        vec![Value::Struct(vec![("k".into(), Value::Int(1))])]
    );
}

#[test]
fn params_may_be_missing_or_empty() {
    for body in [
        "<methodCall><methodName>system.listMethods</methodName></methodCall>",
        "<methodCall><methodName>system.listMethods</methodName><params/></methodCall>",
        "<methodCall><methodName>system.listMethods</methodName><params>\n</params></methodCall>",
    ] {
        assert_eq!(
            call(body),
            Ok(MethodCall {
                method: "system.listMethods".into(),
                params: vec![]
            }),
            "{body}"
        );
    }
}

#[test]
fn method_name_charset() {
    for name in ["CreateJob", "system.multicall", "a_b:c/d.e9"] {
        let body = format!("<methodCall><methodName>{name}</methodName></methodCall>");
        assert_eq!(ok(body).method, name);
    }
    // phpxmlrpc allows surrounding blanks; they are not part of the name.
    let body = "<methodCall><methodName>\t GetJob \n</methodName></methodCall>";
    assert_eq!(ok(body).method, "GetJob");
    for bad in ["", "a b", "x;y", "caf&#233;", "a-b", "&lt;x&gt;"] {
        let body = format!("<methodCall><methodName>{bad}</methodName></methodCall>");
        assert_eq!(
            call(body).map_err(|f| f.code),
            Err(Fault::INVALID_REQUEST),
            "{bad:?}"
        );
    }
}

// --- real client bodies ----------------------------------------------------

#[test]
fn python_xmlrpc_client_request() {
    let body = "<?xml version='1.0'?>\n<methodCall>\n<methodName>CreateJob</methodName>\n<params>\n\
                <param>\n<value><string>job-1</string></value>\n</param>\n\
                <param>\n<value><string>EncoderJob</string></value>\n</param>\n\
                <param>\n<value><string>&lt;EncoderJob&gt;&lt;AudioFile&gt;a&amp;b&lt;/AudioFile&gt;&lt;/EncoderJob&gt;</string></value>\n</param>\n\
                <param>\n<value><struct>\n<member>\n<name>n</name>\n<value><nil/></value></member>\n\
                <member>\n<name>b</name>\n<value><base64>\nAAE=\n</base64></value>\n</member>\n\
                <member>\n<name>d</name>\n<value><double>1e+25</double></value>\n</member>\n\
                <member>\n<name>t</name>\n<value><dateTime.iso8601>20240102T03:04:05</dateTime.iso8601></value>\n</member>\n\
                </struct></value>\n</param>\n</params>\n</methodCall>\n";
    let c = ok(body);
    assert_eq!(c.method, "CreateJob");
    assert_eq!(
        c.params,
        vec![
            s("job-1"),
            s("EncoderJob"),
            s("<EncoderJob><AudioFile>a&b</AudioFile></EncoderJob>"),
            Value::Struct(vec![
                ("n".into(), Value::Nil),
                ("b".into(), Value::Base64(vec![0, 1])),
                ("d".into(), Value::Double(1e25)),
                (
                    "t".into(),
                    Value::DateTime(datetime!(2024-01-02 03:04:05 UTC))
                ),
            ]),
        ]
    );
}

#[test]
fn php_xmlrpc_extension_request() {
    // xmlrpc_encode_request defaults: iso-8859-1 declared, pretty-printed,
    // '<' as &#60;, UTF-8 input escaped byte by byte, empty string as
    // <string/>, no params as <params/>.
    let body = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<methodCall>\n<methodName>CreateJob</methodName>\n<params>\n \
                <param>\n  <value>\n   <string>a&#60;b</string>\n  </value>\n </param>\n \
                <param>\n  <value>\n   <string>caf&#195;&#169;</string>\n  </value>\n </param>\n \
                <param>\n  <value>\n   <string/>\n  </value>\n </param>\n \
                <param>\n  <value>\n   <int>5</int>\n  </value>\n </param>\n \
                <param>\n  <value>\n   <base64>AAEC&#10;/w==&#10;</base64>\n  </value>\n </param>\n\
                </params>\n</methodCall>\n";
    let c = ok(body);
    assert_eq!(
        c.params,
        vec![
            s("a<b"),
            s("cafÃ©"),
            s(""),
            Value::Int(5),
            Value::Base64(vec![0, 1, 2, 255])
        ]
    );
    let none = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<methodCall>\n<methodName>system.listMethods</methodName>\n<params/>\n</methodCall>\n";
    assert_eq!(ok(none).params, vec![]);
}

#[test]
fn phpxmlrpc_request() {
    let body = "<?xml version=\"1.0\"?>\n<methodCall>\n<methodName>CreateJob</methodName>\n<params>\n\
                <param>\n<value><string>&#128512; caf&#233; &quot;q&quot; &apos;a&apos;</string></value>\n</param>\n\
                <param>\n<value></value>\n</param>\n\
                <param>\n<value><ex:i8>8589934592</ex:i8></value>\n</param>\n\
                <param>\n<value><ex:nil/></value>\n</param>\n\
                <param>\n<value><struct php_class=\"Job\">\n<member><name>x</name>\n<value><int>1</int></value>\n</member>\n</struct></value>\n</param>\n\
                </params>\n</methodCall>";
    let c = ok(body);
    assert_eq!(
        c.params,
        vec![
            s("😀 café \"q\" 'a'"),
            s(""),
            Value::I8(8_589_934_592),
            Value::Nil,
            Value::Struct(vec![("x".into(), Value::Int(1))]),
        ]
    );
}

#[test]
fn ruby_request() {
    let body = "<?xml version=\"1.0\" ?><methodCall><methodName>GetJob</methodName><params><param><value><string>jöb-1</string></value></param><param><value><i4>42</i4></value></param><param><value><array><data/></array></value></param></params></methodCall>\n";
    let c = ok(body);
    assert_eq!(c.method, "GetJob");
    assert_eq!(
        c.params,
        vec![s("jöb-1"), Value::Int(42), Value::Array(vec![])]
    );
}

#[test]
fn iso_8859_1_with_raw_bytes_is_latin1_not_cp1252() {
    let mut body = b"<?xml version='1.0' encoding='ISO-8859-1'?><methodCall><methodName>m</methodName><params><param><value><string>caf".to_vec();
    body.extend_from_slice(b"\xE9 \x80\xFF");
    body.extend_from_slice(b"</string></value></param></params></methodCall>");
    assert_eq!(ok(&body).params, vec![s("café \u{80}ÿ")]);
}

#[test]
fn windows_1252_and_ascii() {
    let mut body = b"<?xml version=\"1.0\" encoding=\"Windows-1252\"?><methodCall><methodName>m</methodName><params><param><value>".to_vec();
    body.extend_from_slice(b"\x80 \x93q\x94 \xE9");
    body.extend_from_slice(b"</value></param></params></methodCall>");
    assert_eq!(ok(&body).params, vec![s("€ \u{201C}q\u{201D} é")]);

    let ascii = b"<?xml version='1.0' encoding='us-ascii'?><methodCall><methodName>m</methodName><params><param><value>caf&#233;</value></param></params></methodCall>";
    assert_eq!(ok(ascii).params, vec![s("café")]);
}

#[test]
fn utf8_bom_and_default_encoding() {
    let mut body = b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>".to_vec();
    body.extend_from_slice("<methodCall><methodName>m</methodName><params><param><value>é</value></param></params></methodCall>".as_bytes());
    assert_eq!(ok(&body).params, vec![s("é")]);
    let no_decl = "\u{FEFF}<methodCall><methodName>m</methodName><params><param><value>é</value></param></params></methodCall>";
    assert_eq!(ok(no_decl).params, vec![s("é")]);
}

// --- malformed input -------------------------------------------------------

fn nested_arrays(n: usize) -> String {
    let mut b = String::from("<methodCall><methodName>m</methodName><params><param><value>");
    for _ in 0..n {
        b.push_str("<array><data><value>");
    }
    for _ in 0..n {
        b.push_str("</value></data></array>");
    }
    b.push_str("</value></param></params></methodCall>");
    b
}

#[test]
fn malformed_bodies_get_their_fault_codes() {
    const CALL: &str = "<methodCall><methodName>m</methodName>";
    let wrap = |v: &str| format!("{CALL}<params><param>{v}</param></params></methodCall>");
    let cases: Vec<(String, Vec<u8>, i32)> = vec![
        (
            "billion laughs".into(),
            b"<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><methodCall><methodName>&lol2;</methodName></methodCall>".to_vec(),
            Fault::PARSE_ERROR,
        ),
        (
            "XXE".into(),
            b"<?xml version=\"1.0\"?>\n<!DOCTYPE m [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><methodCall><methodName>m</methodName><params><param><value>&xxe;</value></param></params></methodCall>".to_vec(),
            Fault::PARSE_ERROR,
        ),
        (
            "DOCTYPE with unknown encoding: DOCTYPE wins".into(),
            b"<?xml version=\"1.0\" encoding=\"koi8-r\"?><!DOCTYPE m><methodCall/>".to_vec(),
            Fault::PARSE_ERROR,
        ),
        ("DOCTYPE after the root".into(), format!("{CALL}</methodCall><!DOCTYPE x>").into_bytes(), Fault::PARSE_ERROR),
        ("undeclared entity".into(), wrap("<value>&foo;</value>").into_bytes(), Fault::PARSE_ERROR),
        ("upper-case X char ref".into(), wrap("<value>&#X41;</value>").into_bytes(), Fault::PARSE_ERROR),
        ("surrogate char ref".into(), wrap("<value>&#xD800;</value>").into_bytes(), Fault::PARSE_ERROR),
        ("NUL char ref".into(), wrap("<value>&#0;</value>").into_bytes(), Fault::PARSE_ERROR),
        ("dangling ampersand".into(), wrap("<value>a & b</value>").into_bytes(), Fault::PARSE_ERROR),
        ("raw < in text".into(), wrap("<value>a < b</value>").into_bytes(), Fault::PARSE_ERROR),
        ("10000 nested arrays".into(), nested_arrays(10_000).into_bytes(), Fault::INVALID_REQUEST),
        ("truncated".into(), format!("{CALL}<params><param><value><string>abc").into_bytes(), Fault::PARSE_ERROR),
        ("truncated tag".into(), format!("{CALL}<params><par").into_bytes(), Fault::PARSE_ERROR),
        ("mismatched end".into(), format!("{CALL}</methodName>").into_bytes(), Fault::PARSE_ERROR),
        ("two roots".into(), format!("{CALL}</methodCall>{CALL}</methodCall>").into_bytes(), Fault::INVALID_REQUEST),
        ("text after root".into(), format!("{CALL}</methodCall>junk").into_bytes(), Fault::PARSE_ERROR),
        ("empty body".into(), Vec::new(), Fault::PARSE_ERROR),
        ("whitespace body".into(), b" \n ".to_vec(), Fault::PARSE_ERROR),
        ("declaration only".into(), b"<?xml version=\"1.0\"?>".to_vec(), Fault::PARSE_ERROR),
        ("declaration not first".into(), format!("<!-- c --><?xml version=\"1.0\"?>{CALL}</methodCall>").into_bytes(), Fault::PARSE_ERROR),
        ("not XML".into(), b"JobID=1&JobType=x".to_vec(), Fault::PARSE_ERROR),
        ("methodResponse root".into(), b"<methodResponse><params><param><value>x</value></param></params></methodResponse>".to_vec(), Fault::INVALID_REQUEST),
        ("methodName inside methodResponse".into(), b"<methodResponse><methodName>x</methodName></methodResponse>".to_vec(), Fault::INVALID_REQUEST),
        ("no methodName".into(), b"<methodCall><params/></methodCall>".to_vec(), Fault::INVALID_REQUEST),
        ("two methodNames".into(), format!("{CALL}<methodName>n</methodName></methodCall>").into_bytes(), Fault::INVALID_REQUEST),
        ("unknown element in params".into(), format!("{CALL}<params><foo/></params></methodCall>").into_bytes(), Fault::INVALID_REQUEST),
        ("unknown type".into(), wrap("<value><float>1</float></value>").into_bytes(), Fault::INVALID_REQUEST),
        ("two types in a value".into(), wrap("<value><int>1</int><int>2</int></value>").into_bytes(), Fault::INVALID_REQUEST),
        ("text mixed with a type".into(), wrap("<value>x<int>1</int></value>").into_bytes(), Fault::INVALID_REQUEST),
        ("text in struct".into(), wrap("<value><struct>x</struct></value>").into_bytes(), Fault::INVALID_REQUEST),
        ("element inside string".into(), wrap("<value><string><b>x</b></string></value>").into_bytes(), Fault::INVALID_REQUEST),
        ("param without value".into(), format!("{CALL}<params><param/></params></methodCall>").into_bytes(), Fault::INVALID_REQUEST),
        ("member without name".into(), wrap("<value><struct><member><value>1</value></member></struct></value>").into_bytes(), Fault::INVALID_REQUEST),
        ("member without value".into(), wrap("<value><struct><member><name>a</name></member></struct></value>").into_bytes(), Fault::INVALID_REQUEST),
        ("bad int".into(), wrap("<value><int>12a</int></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("empty int".into(), wrap("<value><int/></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("int overflow".into(), wrap("<value><int>2147483648</int></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("i8 overflow".into(), wrap("<value><i8>9223372036854775808</i8></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("int with inner space".into(), wrap("<value><int>1 2</int></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("boolean 2".into(), wrap("<value><boolean>2</boolean></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("boolean true".into(), wrap("<value><boolean>true</boolean></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("double inf".into(), wrap("<value><double>inf</double></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("double -Infinity".into(), wrap("<value><double>-Infinity</double></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("double nan".into(), wrap("<value><double>nan</double></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("double overflow".into(), wrap("<value><double>1e999</double></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("double empty".into(), wrap("<value><double></double></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("bad date".into(), wrap("<value><dateTime.iso8601>19981317T14:08:55</dateTime.iso8601></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("date with space".into(), wrap("<value><dateTime.iso8601>19980717 14:08:55</dateTime.iso8601></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("date trailing junk".into(), wrap("<value><dateTime.iso8601>19980717T14:08:55Zx</dateTime.iso8601></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("bad base64".into(), wrap("<value><base64>AA!=</base64></value>").into_bytes(), Fault::INVALID_PARAMS),
        ("nil with text".into(), wrap("<value><nil>x</nil></value>").into_bytes(), Fault::INVALID_PARAMS),
        (
            "duplicate member".into(),
            wrap("<value><struct><member><name>a</name><value>1</value></member><member><name>a</name><value>2</value></member></struct></value>").into_bytes(),
            Fault::INVALID_PARAMS,
        ),
        ("unknown encoding".into(), format!("<?xml version=\"1.0\" encoding=\"klingon\"?>{CALL}</methodCall>").into_bytes(), Fault::UNSUPPORTED_ENCODING),
        ("UTF-16 BOM".into(), b"\xFF\xFE<\x00m\x00".to_vec(), Fault::UNSUPPORTED_ENCODING),
        ("BOM contradicts declaration".into(), format!("\u{FEFF}<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>{CALL}</methodCall>").into_bytes(), Fault::UNSUPPORTED_ENCODING),
        ("invalid UTF-8".into(), [wrap("<value>").as_bytes(), b"caf\xE9", b"</value></param></params></methodCall>"].concat(), Fault::INVALID_CHARACTER),
        (
            "non-ASCII under us-ascii".into(),
            [b"<?xml version='1.0' encoding='US-ASCII'?>".as_slice(), CALL.as_bytes(), "<params><param><value>é</value></param></params></methodCall>".as_bytes()].concat(),
            Fault::INVALID_CHARACTER,
        ),
        (
            "unassigned windows-1252 byte".into(),
            [b"<?xml version='1.0' encoding='cp1252'?>".as_slice(), CALL.as_bytes(), b"<params><param><value>\x81</value></param></params></methodCall>"].concat(),
            Fault::INVALID_CHARACTER,
        ),
    ];
    for (what, body, code) in cases {
        match call(&body) {
            Ok(c) => panic!("{what}: parsed as {c:?}"),
            Err(f) => {
                assert_eq!(f.code, code, "{what}: {}", f.message);
                assert!(!f.message.is_empty(), "{what}");
            }
        }
    }
}

#[test]
fn fault_messages_say_where_and_what() {
    let body = "<methodCall><methodName>m</methodName><params><param><value>x</value></param><param><value><struct>\
                <member><name>Outputs</name><value><array><data><value><int>1</int></value><value><int>zz</int></value>\
                </data></array></value></member></struct></value></param></params></methodCall>";
    let f = call(body).unwrap_err();
    assert_eq!(f.code, Fault::INVALID_PARAMS);
    assert_eq!(
        f.message,
        "<int> 'zz' is not a 32-bit integer (at param 2, member 'Outputs', item 2)"
    );
    let f = call("<?xml version='1.0' encoding='ebcdic'?><methodCall/>").unwrap_err();
    assert!(f.message.contains("'ebcdic'"), "{}", f.message);
}

#[test]
fn depth_limit_is_exact() {
    // Each array level is a <value> and an <array>: 32 empty arrays inside
    // each other reach depth 64, the default limit.
    let nest = |n: usize| {
        let mut b = String::from("<methodCall><methodName>m</methodName><params><param>");
        for _ in 0..n {
            b.push_str("<value><array><data>");
        }
        for _ in 0..n {
            b.push_str("</data></array></value>");
        }
        b.push_str("</param></params></methodCall>");
        b
    };
    let c = ok(nest(32));
    let mut v = &c.params[0];
    let mut levels = 0;
    while let Value::Array(items) = v {
        levels += 1;
        match items.first() {
            Some(inner) => v = inner,
            None => break,
        }
    }
    assert_eq!(levels, 32);
    assert_eq!(
        call(nest(33)).map_err(|f| f.code),
        Err(Fault::INVALID_REQUEST)
    );
    // A million unclosed levels: a fault, not a stack overflow.
    let deep = "<value><array><data>".repeat(1_000_000);
    let body = format!("<methodCall><methodName>m</methodName><params><param>{deep}");
    assert_eq!(call(body).map_err(|f| f.code), Err(Fault::INVALID_REQUEST));
}

#[test]
fn size_and_element_limits() {
    let limits = Limits {
        max_depth: 64,
        max_string: 10,
        max_elements: 8,
    };
    let body = |v: &str| {
        format!("<methodCall><methodName>m</methodName><params><param>{v}</param></params></methodCall>")
    };
    // methodCall, methodName, params, param, value, string = 6 elements.
    assert!(parse_call(
        body("<value><string>0123456789</string></value>").as_bytes(),
        &limits
    )
    .is_ok());
    let long = parse_call(
        body("<value><string>0123456789a</string></value>").as_bytes(),
        &limits,
    );
    assert_eq!(long.map_err(|f| f.code), Err(Fault::INVALID_REQUEST));
    let refs = parse_call(
        body("<value>&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;&amp;</value>").as_bytes(),
        &limits,
    );
    assert_eq!(refs.map_err(|f| f.code), Err(Fault::INVALID_REQUEST));
    let many = parse_call(
        body("<value><array><data><value/><value/></data></array></value>").as_bytes(),
        &limits,
    );
    assert_eq!(many.map_err(|f| f.code), Err(Fault::INVALID_REQUEST));
}

#[test]
fn large_structs_detect_duplicates() {
    let members: String = (0..100)
        .chain([57])
        .map(|i| format!("<member><name>m{i}</name><value><int>{i}</int></value></member>"))
        .collect();
    let r = one(&format!("<value><struct>{members}</struct></value>"));
    let f = r.unwrap_err();
    assert_eq!(f.code, Fault::INVALID_PARAMS);
    assert!(f.message.contains("'m57'"), "{}", f.message);
    let unique: String = (0..100)
        .map(|i| format!("<member><name>m{i}</name><value><int>{i}</int></value></member>"))
        .collect();
    let v = one(&format!("<value><struct>{unique}</struct></value>")).unwrap();
    assert_eq!(v.member("m99"), Some(&Value::Int(99)));
}

// --- responses -------------------------------------------------------------

fn every_type() -> Vec<Value> {
    vec![
        Value::Int(0),
        Value::Int(i32::MIN),
        Value::Int(i32::MAX),
        Value::I8(i64::MIN),
        Value::I8(i64::MAX),
        Value::Bool(true),
        Value::Bool(false),
        s(""),
        s("plain"),
        s(" a&b<c>d]]>e \"q\" 'a' \t\n\r\nx é 😀 \u{7F}\u{85}"),
        Value::Double(0.0),
        Value::Double(-12.214),
        Value::Double(1e25),
        Value::Double(-1.5e-300),
        Value::Double(f64::MAX),
        Value::Double(0.1 + 0.2),
        Value::DateTime(datetime!(1998-07-17 14:08:55 UTC)),
        Value::DateTime(datetime!(0001-01-01 00:00:00 UTC)),
        Value::Base64(vec![]),
        Value::Base64((0..=255).collect()),
        Value::Struct(vec![]),
        Value::Array(vec![]),
        Value::Struct(vec![
            (
                "a".into(),
                Value::Array(vec![Value::Int(1), s("two"), Value::Struct(vec![])]),
            ),
            (
                "<&>".into(),
                Value::Struct(vec![("x".into(), Value::Array(vec![Value::Array(vec![])]))]),
            ),
        ]),
    ]
}

#[test]
fn write_response_round_trips_every_type() {
    for v in every_type() {
        let body = write_response(&v);
        assert!(body.starts_with(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
        let back = parse_response(&body, &Limits::default());
        assert_eq!(
            back,
            Ok(Ok(v.clone())),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn write_call_round_trips_through_parse_call() {
    let params = every_type();
    let body = write_call("JobCompleted", &params);
    assert_eq!(
        ok(&body),
        MethodCall {
            method: "JobCompleted".into(),
            params
        }
    );
    assert_eq!(
        ok(write_call("x", &[])),
        MethodCall {
            method: "x".into(),
            params: vec![]
        }
    );
}

#[test]
fn written_forms_are_exact() {
    let cases: Vec<(Value, &str)> = vec![
        (Value::Int(-3), "<value><int>-3</int></value>"),
        (Value::I8(1 << 40), "<value><i8>1099511627776</i8></value>"),
        (Value::Bool(true), "<value><boolean>1</boolean></value>"),
        (Value::Nil, "<value><string></string></value>"),
        (Value::Double(7.0), "<value><double>7.0</double></value>"),
        (Value::Double(1e25), "<value><double>10000000000000000000000000.0</double></value>"),
        (Value::Double(2.5e-7), "<value><double>0.00000025</double></value>"),
        (Value::Double(f64::NAN), "<value><double>nan</double></value>"),
        (Value::Double(f64::NEG_INFINITY), "<value><double>-inf</double></value>"),
        (
            Value::DateTime(datetime!(2024-03-01 01:30:00 +02:00)),
            "<value><dateTime.iso8601>20240229T23:30:00</dateTime.iso8601></value>",
        ),
        (
            Value::DateTime(datetime!(2024-01-02 03:04:05.999 UTC)),
            "<value><dateTime.iso8601>20240102T03:04:05</dateTime.iso8601></value>",
        ),
        (Value::Base64(vec![0; 100]), ""),
        (s("a&b<c>d\re\u{0}f\u{1B}g\u{FFFE}h\u{FFFF}i\u{FFFD}"), "<value><string>a&amp;b&lt;c&gt;d&#13;e\u{FFFD}f\u{FFFD}g\u{FFFD}h\u{FFFD}i\u{FFFD}</string></value>"),
        (
            Value::Struct(vec![("k".into(), Value::Array(vec![Value::Int(1)]))]),
            "<value><struct><member><name>k</name><value><array><data><value><int>1</int></value></data></array></value></member></struct></value>",
        ),
    ];
    for (v, want) in cases {
        let body = String::from_utf8(write_response(&v)).unwrap();
        let inner = body
            .strip_prefix(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><methodResponse><params><param>",
            )
            .and_then(|b| b.strip_suffix("</param></params></methodResponse>"))
            .unwrap_or_else(|| panic!("frame of {body}"));
        if let Value::Base64(bytes) = &v {
            // One line, no breaks, whatever the length.
            assert!(!inner.contains('\n') && !inner.contains('\r'));
            assert_eq!(
                inner.len(),
                "<value><base64></base64></value>".len() + bytes.len().div_ceil(3) * 4
            );
        } else {
            assert_eq!(inner, want);
        }
    }
}

#[test]
fn write_fault_is_the_exact_fault_struct_and_parses_as_a_fault() {
    let f = Fault::new(Fault::METHOD_NOT_FOUND, "method 'Nope' <not> found & sorry");
    let body = write_fault(&f);
    assert_eq!(
        String::from_utf8(body.clone()).unwrap(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><methodResponse><fault><value><struct>\
         <member><name>faultCode</name><value><int>-32601</int></value></member>\
         <member><name>faultString</name><value><string>method 'Nope' &lt;not&gt; found &amp; sorry</string></value></member>\
         </struct></value></fault></methodResponse>"
    );
    assert_eq!(parse_response(&body, &Limits::default()), Ok(Err(f)));
}

#[test]
fn parse_response_shapes() {
    let l = Limits::default();
    let r = |b: &str| parse_response(b.as_bytes(), &l);
    // Pretty-printed PHP-style fault with an extra member is still a fault.
    assert_eq!(
        r("<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<methodResponse>\n<fault>\n <value>\n  <struct>\n   \
           <member>\n    <name>faultString</name>\n    <value>\n     <string>no</string>\n    </value>\n   </member>\n   \
           <member>\n    <name>faultCode</name>\n    <value>\n     <i4>4</i4>\n    </value>\n   </member>\n   \
           <member><name>extra</name><value/></member>\n  </struct>\n </value>\n</fault>\n</methodResponse>"),
        Ok(Err(Fault::new(4, "no")))
    );
    assert_eq!(
        r("<methodResponse><params><param><value>ok</value></param></params></methodResponse>"),
        Ok(Ok(s("ok")))
    );
    let bad: &[(&str, i32)] = &[
        ("<methodCall><methodName>m</methodName></methodCall>", Fault::INVALID_REQUEST),
        ("<methodResponse/>", Fault::INVALID_REQUEST),
        ("<methodResponse><params/></methodResponse>", Fault::INVALID_REQUEST),
        (
            "<methodResponse><params><param><value>a</value></param><param><value>b</value></param></params></methodResponse>",
            Fault::INVALID_REQUEST,
        ),
        (
            "<methodResponse><params><param><value>a</value></param></params><fault><value><struct/></value></fault></methodResponse>",
            Fault::INVALID_REQUEST,
        ),
        ("<methodResponse><fault><value><struct/></value></fault></methodResponse>", Fault::INVALID_REQUEST),
        (
            "<methodResponse><fault><value><struct><member><name>faultCode</name><value>1</value></member>\
             <member><name>faultString</name><value>x</value></member></struct></value></fault></methodResponse>",
            Fault::INVALID_REQUEST,
        ),
        ("<methodResponse><params><param><value>a", Fault::PARSE_ERROR),
        ("", Fault::PARSE_ERROR),
    ];
    for (body, code) in bad {
        assert_eq!(r(body).map_err(|f| f.code), Err(*code), "{body}");
    }
}

// --- Python's xmlrpc.client as the judge -------------------------------------

/// Runs `script` under python3 with `input` on stdin; its stdout.
fn python(script: &str, input: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .args(["-c", script])
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("python3 is needed for this test (apt-get install python3): {e}")
        });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input).expect("write to python3");
    drop(stdin);
    let out = child.wait_with_output().expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python3 prints UTF-8")
}

const PY_LOADS: &str = "
import sys, xmlrpc.client
try:
    params, method = xmlrpc.client.loads(sys.stdin.buffer.read(), use_builtin_types=True)
    print(repr(method), repr(params))
except xmlrpc.client.Fault as f:
    print('FAULT', f.faultCode, repr(f.faultString))
";

#[test]
fn python_xmlrpc_client_reads_our_response_and_fault() {
    let v = Value::Struct(vec![
        ("int".into(), Value::Int(-42)),
        ("i8".into(), Value::I8(9_007_199_254_740_993)),
        ("bool".into(), Value::Bool(true)),
        ("str".into(), s("a&b<c>]]> \"q\"\r\n\ttab é😀")),
        ("ctl".into(), s("x\u{1}y\u{FFFF}")),
        ("empty".into(), s("")),
        ("nil".into(), Value::Nil),
        ("double".into(), Value::Double(1.5)),
        ("big".into(), Value::Double(1e25)),
        ("tiny".into(), Value::Double(-2.5e-7)),
        (
            "dt".into(),
            Value::DateTime(datetime!(2024-03-01 01:30:05 +02:00)),
        ),
        ("b64".into(), Value::Base64(vec![0, 1, 0xFE, 0xFF])),
        (
            "arr".into(),
            Value::Array(vec![Value::Int(1), s("two"), Value::Array(vec![])]),
        ),
        ("st".into(), Value::Struct(vec![])),
    ]);
    let got = python(PY_LOADS, &write_response(&v));
    assert_eq!(
        got.trim_end(),
        "None ({'int': -42, 'i8': 9007199254740993, 'bool': True, \
         'str': 'a&b<c>]]> \"q\"\\r\\n\\ttab é😀', 'ctl': 'x\u{FFFD}y\u{FFFD}', 'empty': '', 'nil': '', \
         'double': 1.5, 'big': 1e+25, 'tiny': -2.5e-07, 'dt': datetime.datetime(2024, 2, 29, 23, 30, 5), \
         'b64': b'\\x00\\x01\\xfe\\xff', 'arr': [1, 'two', []], 'st': {}},)"
    );
    let f = Fault::new(Fault::INVALID_PARAMS, "JobID 'x<y' & more");
    assert_eq!(
        python(PY_LOADS, &write_fault(&f)).trim_end(),
        "FAULT -32602 \"JobID 'x<y' & more\""
    );
    let c = write_call("JobProgress", &[s("job-1"), Value::Int(50)]);
    assert_eq!(
        python(PY_LOADS, &c).trim_end(),
        "'JobProgress' ('job-1', 50)"
    );
}

#[test]
fn python_xmlrpc_client_requests_parse() {
    // What ServerProxy sends: dumps() encoded in the declared encoding with
    // xmlcharrefreplace.
    let script = "
import sys, datetime, xmlrpc.client as x
args = ({'s': 'café <&> 😀', 'i': 7, 'b': False, 'd': 0.5, 'n': None,
         't': datetime.datetime(2024, 1, 2, 3, 4, 5), 'raw': b'\\x00\\xff' * 40, 'a': [1, [2]]},)
for enc in ('utf-8', 'iso-8859-1', 'us-ascii'):
    body = x.dumps(args, 'CreateJob', encoding=enc, allow_none=True).encode(enc, 'xmlcharrefreplace')
    sys.stdout.buffer.write(body.hex().encode() + b'\\n')
";
    let out = python(script, b"");
    let want = MethodCall {
        method: "CreateJob".into(),
        params: vec![Value::Struct(vec![
            ("s".into(), s("café <&> 😀")),
            ("i".into(), Value::Int(7)),
            ("b".into(), Value::Bool(false)),
            ("d".into(), Value::Double(0.5)),
            ("n".into(), Value::Nil),
            (
                "t".into(),
                Value::DateTime(datetime!(2024-01-02 03:04:05 UTC)),
            ),
            ("raw".into(), Value::Base64([0u8, 0xFF].repeat(40))),
            (
                "a".into(),
                Value::Array(vec![Value::Int(1), Value::Array(vec![Value::Int(2)])]),
            ),
        ])],
    };
    let bodies: Vec<Vec<u8>> = out
        .lines()
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex from python"))
                .collect()
        })
        .collect();
    assert_eq!(bodies.len(), 3);
    // The Latin-1 body carries é as the raw byte 0xE9.
    assert!(bodies[1].contains(&0xE9));
    for body in bodies {
        assert_eq!(ok(&body), want, "{}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn mutated_bodies_never_panic() {
    // Deterministic xorshift mutations (flip, delete, duplicate, insert
    // markup bytes) of real bodies: every result must be Ok or a fault.
    let seeds: Vec<Vec<u8>> = vec![
        write_call("CreateJob", &every_type()),
        write_response(&Value::Struct(vec![("a".into(), Value::Array(every_type()))])),
        write_fault(&Fault::new(1, "x")),
        b"<?xml version=\"1.0\" encoding=\"iso-8859-1\"?><methodCall><methodName>m</methodName><params><param><value><dateTime.iso8601>2024-01-02T03:04:05+01:00</dateTime.iso8601></value></param></params></methodCall>".to_vec(),
    ];
    let alphabet = b"<>/&;#x=\"' \r\n]![CDATA-?:0aZ\x80\xE9\xFF";
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let limits = Limits::default();
    let (mut refused, mut accepted) = (0, 0);
    for round in 0..20_000 {
        let mut body = seeds[round % seeds.len()].clone();
        for _ in 0..=(next() % 4) {
            if body.is_empty() {
                break;
            }
            let at = (next() as usize) % body.len();
            match next() % 4 {
                0 => body[at] = alphabet[(next() as usize) % alphabet.len()],
                1 => {
                    body.remove(at);
                }
                2 => {
                    let end = (at + (next() as usize) % 16).min(body.len());
                    let piece = body[at..end].to_vec();
                    body.splice(at..at, piece);
                }
                _ => body.insert(at, alphabet[(next() as usize) % alphabet.len()]),
            }
        }
        let as_call = parse_call(&body, &limits);
        let as_response = parse_response(&body, &limits);
        if round % seeds.len() == 0 {
            match as_call {
                Ok(_) => accepted += 1,
                Err(_) => refused += 1,
            }
        }
        assert!(
            as_call.is_err() || as_response.is_err(),
            "both a call and a response"
        );
    }
    eprintln!("mutated CreateJob calls: {accepted} accepted, {refused} refused");
    // Most mutations break something, some (in text) do not; all-or-nothing
    // would mean the parser checks nothing or refuses everything.
    assert!(
        refused > accepted && accepted > 100,
        "{accepted} accepted, {refused} refused"
    );
}
