//! Job details (contract §4): an XML document whose root is the job type, or
//! a JSON object with the same fields. Unknown fields are an error naming
//! the field. Secret fields (the uploader's RefreshToken) are split off so
//! they are stored apart and never shown.
//!
//! Parsing is serde (serde_json, quick-xml's `de`) into "raw" structs of
//! optional strings with `deny_unknown_fields`; every rule beyond the shape
//! (required fields, allowed values, lengths) is checked afterwards, by
//! hand, so each message names its field and quotes the value. The stored
//! form is [`Details::to_json`]: canonical JSON with the contract's field
//! names and no secrets, read back by [`Details::from_json`].
//!
//! May use: `job` (this module's parent) and `crate::shorten`; nothing else.

use super::JobKind;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

/// The video container an EncoderJob produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoFormat {
    Mp4,
    Avi,
    Flv,
}

impl VideoFormat {
    pub const ALL: [VideoFormat; 3] = [VideoFormat::Mp4, VideoFormat::Avi, VideoFormat::Flv];

    /// The contract's name, which is also the file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            VideoFormat::Mp4 => "mp4",
            VideoFormat::Avi => "avi",
            VideoFormat::Flv => "flv",
        }
    }

    pub fn parse(raw: &str) -> Option<VideoFormat> {
        Self::ALL.into_iter().find(|f| f.as_str() == raw)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EncoderDetails {
    /// FileID of the MP3.
    pub audio_file: String,
    /// FileID of the still image; None = a plain black frame.
    pub image_file: Option<String>,
    pub format: VideoFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privacy {
    Private,
    Unlisted,
    Public,
}

impl Privacy {
    pub const ALL: [Privacy; 3] = [Privacy::Private, Privacy::Unlisted, Privacy::Public];

    /// The contract's (and YouTube's) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Privacy::Private => "private",
            Privacy::Unlisted => "unlisted",
            Privacy::Public => "public",
        }
    }

    pub fn parse(raw: &str) -> Option<Privacy> {
        Self::ALL.into_iter().find(|p| p.as_str() == raw)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct UploaderDetails {
    /// FileID of the video.
    pub video_file: String,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub category_id: Option<String>,
    pub privacy_status: Privacy,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Details {
    Encoder(EncoderDetails),
    Uploader(UploaderDetails),
}

/// Details as given by a client: the public part and the secrets.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub details: Details,
    /// JSON object of the secret fields (`{"RefreshToken":"…"}`), if the kind has any.
    pub secrets: Option<String>,
}

/// Why details were refused: ResultCode 4 with this message, which names the
/// field and quotes the rejected value (shortened).
#[derive(Clone, Debug, PartialEq)]
pub struct DetailsError(pub String);

impl std::fmt::Display for DetailsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DetailsError {}

/// Longest quote of a client value in a message.
const QUOTE: usize = 64;
/// Longest message passed on from a parser (it may quote a field name).
const PARSER_MESSAGE: usize = 300;
/// YouTube's limit on a title, in characters (contract §4).
pub const TITLE_MAX: usize = 100;

fn err(msg: impl Into<String>) -> DetailsError {
    DetailsError(msg.into())
}

fn quote(s: &str) -> String {
    crate::shorten(s, QUOTE)
}

/// Parses details as a client sent them to CreateJob for a job of `kind`.
pub fn parse(kind: JobKind, raw: &str) -> Result<Parsed, DetailsError> {
    let text = raw.trim_start_matches('\u{feff}').trim();
    match text.chars().next() {
        Some('<') => parse_xml(kind, text),
        Some('{') => parse_json(kind, text, Secrets::Required),
        _ => Err(err(format!(
            "JobDetails '{}' is neither an XML document (<{kind}>…</{kind}>) nor a JSON object ({{…}})",
            quote(raw)
        ))),
    }
}

impl Details {
    pub fn kind(&self) -> JobKind {
        match self {
            Details::Encoder(_) => JobKind::Encoder,
            Details::Uploader(_) => JobKind::YoutubeUploader,
        }
    }

    /// The FileIDs the job reads.
    pub fn inputs(&self) -> Vec<String> {
        self.input_fields()
            .into_iter()
            .map(|(_, id)| id.to_owned())
            .collect()
    }

    /// The FileIDs the job reads, each with the field that names it.
    pub fn input_fields(&self) -> Vec<(&'static str, &str)> {
        match self {
            Details::Encoder(e) => std::iter::once(("AudioFile", e.audio_file.as_str()))
                .chain(e.image_file.as_deref().map(|i| ("ImageFile", i)))
                .collect(),
            Details::Uploader(u) => vec![("VideoFile", u.video_file.as_str())],
        }
    }

    /// The stored form: canonical JSON with the contract's field names, no
    /// secrets. [`Details::from_json`] reads it back.
    pub fn to_json(&self) -> String {
        let value = match self {
            Details::Encoder(e) => serde_json::to_value(EncoderOut {
                audio_file: &e.audio_file,
                image_file: e.image_file.as_deref(),
                format: e.format.as_str(),
            }),
            Details::Uploader(u) => serde_json::to_value(UploaderOut {
                video_file: &u.video_file,
                title: &u.title,
                description: &u.description,
                tags: &u.tags,
                category_id: u.category_id.as_deref(),
                privacy_status: u.privacy_status.as_str(),
            }),
        };
        // Serializing structs of strings cannot fail.
        value.map(|v| v.to_string()).unwrap_or_default()
    }

    /// Reads the stored form back (the same checks as [`parse`]; a secret
    /// field is refused, since the stored form never has one).
    pub fn from_json(kind: JobKind, raw: &str) -> Result<Details, DetailsError> {
        parse_json(kind, raw.trim(), Secrets::Forbidden).map(|p| p.details)
    }
}

#[derive(Serialize)]
struct EncoderOut<'a> {
    #[serde(rename = "AudioFile")]
    audio_file: &'a str,
    #[serde(rename = "ImageFile", skip_serializing_if = "Option::is_none")]
    image_file: Option<&'a str>,
    #[serde(rename = "Format")]
    format: &'a str,
}

#[derive(Serialize)]
struct UploaderOut<'a> {
    #[serde(rename = "VideoFile")]
    video_file: &'a str,
    #[serde(rename = "Title")]
    title: &'a str,
    #[serde(rename = "Description")]
    description: &'a str,
    #[serde(rename = "Tags")]
    tags: &'a [String],
    #[serde(rename = "CategoryId", skip_serializing_if = "Option::is_none")]
    category_id: Option<&'a str>,
    #[serde(rename = "PrivacyStatus")]
    privacy_status: &'a str,
}

/// Whether the secret fields must be there (a client's details) or must not
/// (the stored form).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Required,
    Forbidden,
}

// Each field is read through a function that puts the field's name in front
// of the parser's complaint, so a wrong type ("a number where a string
// belongs", an element inside a text field) still names the field.
macro_rules! named_string {
    ($fn:ident, $name:literal) => {
        fn $fn<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
            Option::<String>::deserialize(d)
                .map_err(|e| D::Error::custom(format!("field {}: {e}", $name)))
        }
    };
}

named_string!(de_audio_file, "AudioFile");
named_string!(de_image_file, "ImageFile");
named_string!(de_format, "Format");
named_string!(de_video_file, "VideoFile");
named_string!(de_title, "Title");
named_string!(de_description, "Description");
named_string!(de_category_id, "CategoryId");
named_string!(de_privacy_status, "PrivacyStatus");

/// The refresh token's parser error is not passed on: it could quote the token.
fn de_refresh_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
        .map_err(|_| D::Error::custom("field RefreshToken must be a string"))
}

fn de_tags<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map_err(|e| D::Error::custom(format!("field Tags: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncoder {
    #[serde(rename = "AudioFile", default, deserialize_with = "de_audio_file")]
    audio_file: Option<String>,
    #[serde(rename = "ImageFile", default, deserialize_with = "de_image_file")]
    image_file: Option<String>,
    #[serde(rename = "Format", default, deserialize_with = "de_format")]
    format: Option<String>,
}

/// `T` is how Tags are written: a JSON array, or `<Tag>` elements in XML.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct RawUploader<T> {
    #[serde(rename = "VideoFile", default, deserialize_with = "de_video_file")]
    video_file: Option<String>,
    #[serde(rename = "Title", default, deserialize_with = "de_title")]
    title: Option<String>,
    #[serde(rename = "Description", default, deserialize_with = "de_description")]
    description: Option<String>,
    #[serde(rename = "Tags", default, deserialize_with = "de_tags")]
    tags: Option<T>,
    #[serde(rename = "CategoryId", default, deserialize_with = "de_category_id")]
    category_id: Option<String>,
    #[serde(
        rename = "PrivacyStatus",
        default,
        deserialize_with = "de_privacy_status"
    )]
    privacy_status: Option<String>,
    #[serde(
        rename = "RefreshToken",
        default,
        deserialize_with = "de_refresh_token"
    )]
    refresh_token: Option<String>,
}

/// `<Tags><Tag>a</Tag><Tag>b</Tag></Tags>`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct XmlTags {
    #[serde(rename = "Tag", default)]
    tag: Vec<String>,
}

fn parse_json(kind: JobKind, text: &str, secrets: Secrets) -> Result<Parsed, DetailsError> {
    let bad = |e: serde_json::Error| {
        err(format!(
            "JobDetails for {kind} are not valid: {}",
            crate::shorten(&e.to_string(), PARSER_MESSAGE)
        ))
    };
    match kind {
        JobKind::Encoder => {
            let raw: RawEncoder = serde_json::from_str(text).map_err(bad)?;
            Ok(Parsed {
                details: Details::Encoder(build_encoder(raw)?),
                secrets: None,
            })
        }
        JobKind::YoutubeUploader => {
            let raw: RawUploader<Vec<String>> = serde_json::from_str(text).map_err(bad)?;
            build_uploader(raw, secrets)
        }
    }
}

fn parse_xml(kind: JobKind, text: &str) -> Result<Parsed, DetailsError> {
    let root = root_element(text)?;
    if root != kind.as_str() {
        return Err(err(format!(
            "JobDetails root element is <{}>; details of a {kind} are <{kind}>…</{kind}>",
            quote(&root)
        )));
    }
    let bad = |e: quick_xml::DeError| {
        err(format!(
            "JobDetails for {kind} are not valid: {}",
            crate::shorten(&e.to_string(), PARSER_MESSAGE)
        ))
    };
    match kind {
        JobKind::Encoder => {
            let raw: RawEncoder = quick_xml::de::from_str(text).map_err(bad)?;
            Ok(Parsed {
                details: Details::Encoder(build_encoder(raw)?),
                secrets: None,
            })
        }
        JobKind::YoutubeUploader => {
            let raw: RawUploader<XmlTags> = quick_xml::de::from_str(text).map_err(bad)?;
            let raw = RawUploader {
                video_file: raw.video_file,
                title: raw.title,
                description: raw.description,
                tags: raw.tags.map(|t| t.tag),
                category_id: raw.category_id,
                privacy_status: raw.privacy_status,
                refresh_token: raw.refresh_token,
            };
            build_uploader(raw, Secrets::Required)
        }
    }
}

/// The name of the document's single root element (quick-xml's
/// deserializer neither looks at it nor minds a second one after it).
fn root_element(text: &str) -> Result<String, DetailsError> {
    use quick_xml::events::Event;
    let malformed = |e: &dyn std::fmt::Display| {
        err(format!(
            "JobDetails is not well-formed XML: {}",
            crate::shorten(&e.to_string(), PARSER_MESSAGE)
        ))
    };
    let mut reader = quick_xml::Reader::from_str(text);
    let mut root: Option<String> = None;
    let mut depth = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| malformed(&e))?;
        let name = match &event {
            Event::Start(e) | Event::Empty(e) => Some(e.name().into_inner().to_owned()),
            _ => None,
        };
        if let (Some(name), 0) = (&name, depth) {
            if let Some(first) = &root {
                return Err(err(format!(
                    "JobDetails has a second element <{}> after </{}>; give one <{}> element",
                    quote(name),
                    quote(first),
                    quote(first)
                )));
            }
            root = Some(name.clone());
        }
        match event {
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) if depth == 0 && !t.trim().is_empty() => {
                return Err(malformed(&"text outside the root element"));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    root.ok_or_else(|| err("JobDetails is an XML document with no element"))
}

/// A FileID field: surrounding white space dropped, empty refused.
fn file_id(field: &str, value: Option<String>) -> Result<Option<String>, DetailsError> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Err(err(format!(
            "{field} '{}' is empty; give the FileID that POST /files returned",
            quote(&v)
        ))),
        Some(v) => Ok(Some(v.trim().to_owned())),
    }
}

fn required<T>(field: &str, kind: JobKind, value: Option<T>) -> Result<T, DetailsError> {
    value.ok_or_else(|| err(format!("{field} is required in the details of a {kind}")))
}

fn one_of(allowed: &[&str]) -> String {
    allowed
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn build_encoder(raw: RawEncoder) -> Result<EncoderDetails, DetailsError> {
    let kind = JobKind::Encoder;
    let audio_file = required("AudioFile", kind, file_id("AudioFile", raw.audio_file)?)?;
    let image_file = file_id("ImageFile", raw.image_file)?;
    let format = match raw.format {
        None => VideoFormat::Mp4,
        Some(f) => VideoFormat::parse(f.trim()).ok_or_else(|| {
            let names: Vec<&str> = VideoFormat::ALL.iter().map(|f| f.as_str()).collect();
            err(format!(
                "Format '{}' is not supported; use one of {}",
                quote(&f),
                one_of(&names)
            ))
        })?,
    };
    Ok(EncoderDetails {
        audio_file,
        image_file,
        format,
    })
}

fn build_uploader(raw: RawUploader<Vec<String>>, secrets: Secrets) -> Result<Parsed, DetailsError> {
    let kind = JobKind::YoutubeUploader;
    let video_file = required("VideoFile", kind, file_id("VideoFile", raw.video_file)?)?;
    let title = required("Title", kind, raw.title)?;
    check_title(&title)?;
    let privacy_status = match raw.privacy_status {
        None => Privacy::Private,
        Some(p) => Privacy::parse(p.trim()).ok_or_else(|| {
            let names: Vec<&str> = Privacy::ALL.iter().map(|p| p.as_str()).collect();
            err(format!(
                "PrivacyStatus '{}' is not allowed; use one of {}",
                quote(&p),
                one_of(&names)
            ))
        })?,
    };
    let category_id = raw
        .category_id
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let secret = match (secrets, raw.refresh_token) {
        (Secrets::Required, None) => {
            return Err(err(format!(
                "RefreshToken is required in the details of a {kind}: the channel owner's OAuth 2.0 refresh token"
            )))
        }
        (Secrets::Required, Some(t)) if t.trim().is_empty() => {
            return Err(err("RefreshToken is empty; give the channel owner's OAuth 2.0 refresh token"))
        }
        (Secrets::Required, Some(t)) => {
            Some(serde_json::json!({ "RefreshToken": t.trim() }).to_string())
        }
        (Secrets::Forbidden, Some(_)) => {
            return Err(err("RefreshToken must not be part of the stored details"))
        }
        (Secrets::Forbidden, None) => None,
    };
    Ok(Parsed {
        details: Details::Uploader(UploaderDetails {
            video_file,
            title,
            description: raw.description.unwrap_or_default(),
            tags: raw.tags.unwrap_or_default(),
            category_id,
            privacy_status,
        }),
        secrets: secret,
    })
}

fn check_title(title: &str) -> Result<(), DetailsError> {
    let chars = title.chars().count();
    if title.trim().is_empty() {
        return Err(err(format!(
            "Title '{}' is empty; YouTube needs 1 to {TITLE_MAX} characters",
            quote(title)
        )));
    }
    if chars > TITLE_MAX {
        return Err(err(format!(
            "Title '{}' is {chars} characters; YouTube allows at most {TITLE_MAX}",
            quote(title)
        )));
    }
    if let Some(c) = title.chars().find(|c| matches!(c, '<' | '>')) {
        return Err(err(format!(
            "Title '{}' contains '{c}'; YouTube does not allow < or > in a title",
            quote(title)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIO: &str = "9b1d5f6e-0000-4000-8000-000000000001";
    const IMAGE: &str = "77e0aa00-0000-4000-8000-000000000002";
    const VIDEO: &str = "0c0ffee0-0000-4000-8000-000000000003";

    fn enc(raw: &str) -> Result<EncoderDetails, DetailsError> {
        let parsed = parse(JobKind::Encoder, raw)?;
        assert_eq!(parsed.secrets, None);
        match parsed.details {
            Details::Encoder(e) => Ok(e),
            other => panic!("expected encoder details, got {other:?}"),
        }
    }

    fn up(raw: &str) -> Result<(UploaderDetails, Option<String>), DetailsError> {
        let parsed = parse(JobKind::YoutubeUploader, raw)?;
        match parsed.details {
            Details::Uploader(u) => Ok((u, parsed.secrets)),
            other => panic!("expected uploader details, got {other:?}"),
        }
    }

    /// The error's message, which must contain every one of `needles`.
    fn fails_naming(result: Result<impl std::fmt::Debug, DetailsError>, needles: &[&str]) {
        match result {
            Ok(v) => panic!("expected an error naming {needles:?}, got {v:?}"),
            Err(DetailsError(msg)) => {
                for n in needles {
                    assert!(msg.contains(n), "message {msg:?} should contain {n:?}");
                }
            }
        }
    }

    #[test]
    fn encoder_xml_full() {
        let e = enc(&format!(
            "<EncoderJob><AudioFile>{AUDIO}</AudioFile><ImageFile>{IMAGE}</ImageFile><Format>avi</Format></EncoderJob>"
        ))
        .unwrap();
        assert_eq!(
            e,
            EncoderDetails {
                audio_file: AUDIO.into(),
                image_file: Some(IMAGE.into()),
                format: VideoFormat::Avi
            }
        );
    }

    #[test]
    fn encoder_xml_defaults_prolog_and_whitespace() {
        let e = enc(&format!(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<!-- from the site -->\n<EncoderJob>\n  <AudioFile>\n    {AUDIO}\n  </AudioFile>\n</EncoderJob>\n"
        ))
        .unwrap();
        assert_eq!(e.audio_file, AUDIO);
        assert_eq!(e.image_file, None);
        assert_eq!(e.format, VideoFormat::Mp4);
    }

    #[test]
    fn encoder_json_each_format() {
        for f in VideoFormat::ALL {
            let e = enc(&format!(
                r#"{{"AudioFile":"{AUDIO}","Format":"{}"}}"#,
                f.as_str()
            ))
            .unwrap();
            assert_eq!(e.format, f);
        }
        let e = enc(&format!(r#"{{"AudioFile":"{AUDIO}","ImageFile":null}}"#)).unwrap();
        assert_eq!((e.image_file, e.format), (None, VideoFormat::Mp4));
    }

    #[test]
    fn encoder_errors_name_their_field() {
        fails_naming(enc("<EncoderJob></EncoderJob>"), &["AudioFile", "required"]);
        fails_naming(enc("<EncoderJob/>"), &["AudioFile", "required"]);
        fails_naming(enc("{}"), &["AudioFile", "required"]);
        fails_naming(
            enc(r#"{"AudioFile":"  "}"#),
            &["AudioFile", "'  '", "empty"],
        );
        fails_naming(
            enc("<EncoderJob><AudioFile> </AudioFile></EncoderJob>"),
            &["AudioFile", "empty"],
        );
        fails_naming(
            enc(&format!(
                "<EncoderJob><AudioFile>{AUDIO}</AudioFile><ImageFile></ImageFile></EncoderJob>"
            )),
            &["ImageFile", "empty"],
        );
        fails_naming(
            enc(&format!(r#"{{"AudioFile":"{AUDIO}","Format":"mkv"}}"#)),
            &["Format", "'mkv'", "'mp4'"],
        );
        fails_naming(
            enc(&format!(
                "<EncoderJob><AudioFile>{AUDIO}</AudioFile><Format>MP3</Format></EncoderJob>"
            )),
            &["Format", "'MP3'"],
        );
        fails_naming(
            enc(&format!(r#"{{"AudioFile":"{AUDIO}","Bitrate":"128"}}"#)),
            &["Bitrate"],
        );
        fails_naming(
            enc(&format!(
                "<EncoderJob><AudioFile>{AUDIO}</AudioFile><Bitrate>1</Bitrate></EncoderJob>"
            )),
            &["Bitrate"],
        );
        fails_naming(
            enc(&format!(
                "<EncoderJob speed=\"1\"><AudioFile>{AUDIO}</AudioFile></EncoderJob>"
            )),
            &["speed"],
        );
        fails_naming(enc(r#"{"AudioFile":42}"#), &["AudioFile"]);
        fails_naming(enc(r#"{"AudioFile":["a"]}"#), &["AudioFile"]);
        fails_naming(
            enc("<EncoderJob><AudioFile><Id>x</Id></AudioFile></EncoderJob>"),
            &["AudioFile"],
        );
    }

    #[test]
    fn wrong_root_and_not_a_document() {
        fails_naming(
            enc(&format!(
                "<YoutubeUploaderJob><AudioFile>{AUDIO}</AudioFile></YoutubeUploaderJob>"
            )),
            &["<YoutubeUploaderJob>", "<EncoderJob>"],
        );
        fails_naming(
            up(&format!(
                "<EncoderJob><VideoFile>{VIDEO}</VideoFile></EncoderJob>"
            )),
            &["<EncoderJob>", "<YoutubeUploaderJob>"],
        );
        fails_naming(enc(""), &["JobDetails", "''"]);
        fails_naming(enc("AudioFile=x"), &["JobDetails", "'AudioFile=x'"]);
        fails_naming(enc("[1,2]"), &["JobDetails"]);
        fails_naming(
            enc("<EncoderJob><AudioFile>x</EncoderJob>"),
            &["JobDetails"],
        );
        fails_naming(enc("{\"AudioFile\":"), &["JobDetails"]);
        fails_naming(
            enc(&format!(
                "<EncoderJob><AudioFile>{AUDIO}</AudioFile></EncoderJob><EncoderJob/>"
            )),
            &["JobDetails", "second element"],
        );
        fails_naming(
            enc(&format!(
                "<EncoderJob><AudioFile>{AUDIO}</AudioFile></EncoderJob>junk"
            )),
            &["JobDetails", "outside"],
        );
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "x".repeat(10_000);
        let Err(DetailsError(msg)) =
            enc(&format!(r#"{{"AudioFile":"{AUDIO}","Format":"{long}"}}"#))
        else {
            panic!("a 10 000 character Format must be refused");
        };
        assert!(
            msg.len() < 400,
            "message not shortened: {} bytes",
            msg.len()
        );
        let Err(DetailsError(msg)) = enc(&format!(r#"{{"{long}":"1"}}"#)) else {
            panic!("a 10 000 character field name must be refused");
        };
        assert!(
            msg.len() < 400,
            "message not shortened: {} bytes",
            msg.len()
        );
    }

    #[test]
    fn uploader_xml_full_secret_split_off() {
        let (u, secrets) = up(&format!(
            "<YoutubeUploaderJob><VideoFile>{VIDEO}</VideoFile><Title>Song &amp; dance</Title>\
             <Description>Line 1\nLine 2</Description><Tags><Tag>a</Tag><Tag>b c</Tag></Tags>\
             <CategoryId>10</CategoryId><PrivacyStatus>unlisted</PrivacyStatus>\
             <RefreshToken>1//rt-secret</RefreshToken></YoutubeUploaderJob>"
        ))
        .unwrap();
        assert_eq!(
            u,
            UploaderDetails {
                video_file: VIDEO.into(),
                title: "Song & dance".into(),
                description: "Line 1\nLine 2".into(),
                tags: vec!["a".into(), "b c".into()],
                category_id: Some("10".into()),
                privacy_status: Privacy::Unlisted,
            }
        );
        let secrets: serde_json::Value = serde_json::from_str(&secrets.unwrap()).unwrap();
        assert_eq!(secrets, serde_json::json!({"RefreshToken": "1//rt-secret"}));
        assert!(!Details::Uploader(u).to_json().contains("rt-secret"));
    }

    #[test]
    fn uploader_json_minimal_defaults() {
        let (u, secrets) = up(&format!(
            r#"{{"VideoFile":"{VIDEO}","Title":"T","RefreshToken":"rt"}}"#
        ))
        .unwrap();
        assert_eq!(u.privacy_status, Privacy::Private);
        assert_eq!(u.description, "");
        assert!(u.tags.is_empty());
        assert_eq!(u.category_id, None);
        assert_eq!(secrets.as_deref(), Some(r#"{"RefreshToken":"rt"}"#));
        let (u, _) = up(&format!(
            r#"{{"VideoFile":"{VIDEO}","Title":"T","RefreshToken":"rt","Tags":["x","y"],"PrivacyStatus":"public"}}"#
        ))
        .unwrap();
        assert_eq!(u.tags, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(u.privacy_status, Privacy::Public);
    }

    #[test]
    fn uploader_xml_empty_tags() {
        for tags in ["<Tags/>", "<Tags></Tags>"] {
            let (u, _) = up(&format!(
                "<YoutubeUploaderJob><VideoFile>{VIDEO}</VideoFile><Title>T</Title>{tags}<RefreshToken>r</RefreshToken></YoutubeUploaderJob>"
            ))
            .unwrap();
            assert!(u.tags.is_empty(), "{tags}");
        }
    }

    #[test]
    fn uploader_errors_name_their_field() {
        let ok_rest = r#""RefreshToken":"rt""#;
        fails_naming(
            up(&format!(r#"{{"Title":"T",{ok_rest}}}"#)),
            &["VideoFile", "required"],
        );
        fails_naming(
            up(&format!(r#"{{"VideoFile":"{VIDEO}",{ok_rest}}}"#)),
            &["Title", "required"],
        );
        fails_naming(
            up(&format!(r#"{{"VideoFile":"{VIDEO}","Title":"T"}}"#)),
            &["RefreshToken", "required"],
        );
        fails_naming(
            up(&format!(
                r#"{{"VideoFile":"{VIDEO}","Title":"T","RefreshToken":" "}}"#
            )),
            &["RefreshToken", "empty"],
        );
        fails_naming(
            up(&format!(
                r#"{{"VideoFile":"{VIDEO}","Title":"",{ok_rest}}}"#
            )),
            &["Title", "''"],
        );
        fails_naming(
            up(&format!(
                r#"{{"VideoFile":"{VIDEO}","Title":"  ",{ok_rest}}}"#
            )),
            &["Title", "empty"],
        );
        fails_naming(
            up(&format!(
                r#"{{"VideoFile":"{VIDEO}","Title":"a <b> c",{ok_rest}}}"#
            )),
            &["Title", "'a <b> c'", "'<'"],
        );
        fails_naming(
            up(&format!(
                "<YoutubeUploaderJob><VideoFile>{VIDEO}</VideoFile><Title>x &gt; y</Title><RefreshToken>r</RefreshToken></YoutubeUploaderJob>"
            )),
            &["Title", "'x > y'", "'>'"],
        );
        let long = "é".repeat(TITLE_MAX + 1);
        fails_naming(
            up(&format!(
                r#"{{"VideoFile":"{VIDEO}","Title":"{long}",{ok_rest}}}"#
            )),
            &["Title", "101 characters"],
        );
        fails_naming(
            up(&format!(
                r#"{{"VideoFile":"{VIDEO}","Title":"T","PrivacyStatus":"friends",{ok_rest}}}"#
            )),
            &["PrivacyStatus", "'friends'", "'unlisted'"],
        );
        fails_naming(
            up(&format!(
                r#"{{"VideoFile":"{VIDEO}","Title":"T","Tags":"a,b",{ok_rest}}}"#
            )),
            &["Tags"],
        );
        fails_naming(
            up(&format!(
                r#"{{"VideoFile":"{VIDEO}","Title":"T","Tags":[1],{ok_rest}}}"#
            )),
            &["Tags"],
        );
        fails_naming(
            up(&format!(
                "<YoutubeUploaderJob><VideoFile>{VIDEO}</VideoFile><Title>T</Title><Tags><Label>a</Label></Tags><RefreshToken>r</RefreshToken></YoutubeUploaderJob>"
            )),
            &["Label"],
        );
        fails_naming(
            up(&format!(
                r#"{{"VideoFile":"{VIDEO}","Title":"T","Channel":"x",{ok_rest}}}"#
            )),
            &["Channel"],
        );
        fails_naming(
            up(&format!(r#"{{"VideoFile":"",{ok_rest},"Title":"T"}}"#)),
            &["VideoFile", "empty"],
        );
    }

    #[test]
    fn title_of_exactly_100_characters_is_accepted() {
        let title = "é".repeat(TITLE_MAX);
        let (u, _) = up(&format!(
            r#"{{"VideoFile":"{VIDEO}","Title":"{title}","RefreshToken":"r"}}"#
        ))
        .unwrap();
        assert_eq!(u.title, title);
    }

    #[test]
    fn refresh_token_never_quoted_in_errors() {
        let Err(DetailsError(msg)) = up(&format!(
            r#"{{"VideoFile":"{VIDEO}","Title":"T","RefreshToken":123456789}}"#
        )) else {
            panic!("a numeric RefreshToken must be refused");
        };
        assert!(msg.contains("RefreshToken"), "{msg}");
        assert!(!msg.contains("123456789"), "{msg}");
    }

    #[test]
    fn inputs_lists_file_ids_read() {
        let e = parse(
            JobKind::Encoder,
            &format!(r#"{{"AudioFile":"{AUDIO}","ImageFile":"{IMAGE}"}}"#),
        )
        .unwrap()
        .details;
        assert_eq!(e.inputs(), vec![AUDIO.to_string(), IMAGE.to_string()]);
        let e = parse(JobKind::Encoder, &format!(r#"{{"AudioFile":"{AUDIO}"}}"#))
            .unwrap()
            .details;
        assert_eq!(e.inputs(), vec![AUDIO.to_string()]);
        let u = parse(
            JobKind::YoutubeUploader,
            &format!(r#"{{"VideoFile":"{VIDEO}","Title":"T","RefreshToken":"r"}}"#),
        )
        .unwrap()
        .details;
        assert_eq!(u.inputs(), vec![VIDEO.to_string()]);
        assert_eq!(u.kind(), JobKind::YoutubeUploader);
    }

    #[test]
    fn stored_form_round_trips() {
        let cases = [
            (JobKind::Encoder, format!("<EncoderJob><AudioFile>{AUDIO}</AudioFile></EncoderJob>")),
            (
                JobKind::Encoder,
                format!(r#"{{"AudioFile":"{AUDIO}","ImageFile":"{IMAGE}","Format":"flv"}}"#),
            ),
            (
                JobKind::YoutubeUploader,
                format!(
                    "<YoutubeUploaderJob><VideoFile>{VIDEO}</VideoFile><Title>Ünïcode \"q\"</Title><Tags><Tag>t</Tag></Tags><CategoryId>22</CategoryId><PrivacyStatus>public</PrivacyStatus><RefreshToken>secret-rt</RefreshToken></YoutubeUploaderJob>"
                ),
            ),
        ];
        for (kind, raw) in cases {
            let parsed = parse(kind, &raw).unwrap();
            let stored = parsed.details.to_json();
            assert!(!stored.contains("secret-rt"), "{stored}");
            assert!(!stored.contains("RefreshToken"), "{stored}");
            assert_eq!(
                Details::from_json(kind, &stored).unwrap(),
                parsed.details,
                "{stored}"
            );
            // The stored form is also acceptable client input, minus the secret.
            if kind == JobKind::Encoder {
                assert_eq!(parse(kind, &stored).unwrap().details, parsed.details);
            }
        }
    }

    #[test]
    fn stored_form_uses_contract_names() {
        let d = Details::Encoder(EncoderDetails {
            audio_file: AUDIO.into(),
            image_file: None,
            format: VideoFormat::Mp4,
        });
        let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(v, serde_json::json!({"AudioFile": AUDIO, "Format": "mp4"}));
        let d = Details::Uploader(UploaderDetails {
            video_file: VIDEO.into(),
            title: "T".into(),
            description: "D".into(),
            tags: vec!["a".into()],
            category_id: None,
            privacy_status: Privacy::Unlisted,
        });
        let v: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"VideoFile": VIDEO, "Title": "T", "Description": "D", "Tags": ["a"], "PrivacyStatus": "unlisted"})
        );
    }

    #[test]
    fn stored_form_refuses_secrets_and_garbage() {
        fails_naming(
            Details::from_json(
                JobKind::YoutubeUploader,
                &format!(r#"{{"VideoFile":"{VIDEO}","Title":"T","RefreshToken":"r"}}"#),
            ),
            &["RefreshToken"],
        );
        fails_naming(
            Details::from_json(JobKind::Encoder, "<EncoderJob/>"),
            &["JobDetails"],
        );
        fails_naming(
            Details::from_json(JobKind::Encoder, r#"{"Format":"mp4"}"#),
            &["AudioFile"],
        );
    }
}
