//! Job details (contract §4): an XML document whose root is the job type, or
//! a JSON object with the same fields. Unknown fields are an error naming
//! the field. Secret fields (the uploader's RefreshToken) are split off so
//! they are stored apart and never shown.

/// The video container an EncoderJob produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoFormat {
    Mp4,
    Avi,
    Flv,
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
