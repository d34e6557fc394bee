//! Codec hot paths: decoding the calls the website makes most (CreateJob,
//! GetProgress), encoding a GetJob reply, and decoding a response as the
//! engine's website client does; then the other pure code on a request or
//! job path: CreateJob's job details parsing, the stored details read back
//! by a worker, and the encoders' progress lines.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jobengine::job::details::{self, Details};
use jobengine::job::JobKind;
use jobengine::kinds::encode::{parse_mencoder_pos, FfmpegProgress};
use jobengine::protocol::xmlrpc::{parse_call, parse_response, write_response, Limits};
use jobengine::protocol::Value;

const CREATE_JOB: &str = "<?xml version='1.0'?>\n<methodCall>\n<methodName>CreateJob</methodName>\n<params>\n\
<param>\n<value><string>7f3c2a9e-5b1d-4c8e-9a6f-0d2e4b8c1f3a</string></value>\n</param>\n\
<param>\n<value><string>EncoderJob</string></value>\n</param>\n\
<param>\n<value><string>&lt;EncoderJob&gt;&lt;AudioFile&gt;9b1d4e6a-2c3f-4a5b-8d7e-1f0a2b3c4d5e&lt;/AudioFile&gt;\
&lt;ImageFile&gt;77e0a1b2-c3d4-4e5f-a6b7-c8d9e0f1a2b3&lt;/ImageFile&gt;&lt;Format&gt;mp4&lt;/Format&gt;&lt;/EncoderJob&gt;</string></value>\n</param>\n\
<param>\n<value><string>https://www.example.org/jobs/callback?site=42</string></value>\n</param>\n\
</params>\n</methodCall>\n";

const GET_PROGRESS: &str = "<?xml version='1.0'?>\n<methodCall>\n<methodName>GetProgress</methodName>\n<params>\n\
<param>\n<value><string>7f3c2a9e-5b1d-4c8e-9a6f-0d2e4b8c1f3a</string></value>\n</param>\n</params>\n</methodCall>\n";

fn get_job_reply() -> Value {
    let job = Value::structure([
        ("JobID", Value::str("7f3c2a9e-5b1d-4c8e-9a6f-0d2e4b8c1f3a")),
        ("JobType", Value::str("EncoderJob")),
        ("State", Value::str("InProgress")),
        (
            "LastStateChange",
            Value::DateTime(time::macros::datetime!(2024-05-06 07:08:09 UTC)),
        ),
        ("ProgressAmount", Value::Int(42)),
        ("ErrorMessage", Value::str("")),
        ("ResultCode", Value::Int(0)),
        (
            "Outputs",
            Value::Array(vec![Value::str("c0ffee00-1234-4abc-8def-0123456789ab")]),
        ),
        ("Result", Value::str("")),
    ]);
    Value::structure([
        ("ResultCode", Value::Int(0)),
        ("ErrorMessage", Value::str("")),
        ("Job", job),
    ])
}

fn progress_reply() -> Value {
    Value::structure([
        ("ResultCode", Value::Int(0)),
        ("ErrorMessage", Value::str("")),
        ("Progress", Value::Int(42)),
    ])
}

fn codec(c: &mut Criterion) {
    let limits = Limits::default();
    c.bench_function("parse_call CreateJob", |b| {
        b.iter(|| parse_call(black_box(CREATE_JOB.as_bytes()), &limits))
    });
    c.bench_function("parse_call GetProgress", |b| {
        b.iter(|| parse_call(black_box(GET_PROGRESS.as_bytes()), &limits))
    });
    let progress = progress_reply();
    c.bench_function("GetProgress decode + encode", |b| {
        b.iter(|| {
            let call = parse_call(black_box(GET_PROGRESS.as_bytes()), &limits);
            black_box(call.is_ok());
            write_response(black_box(&progress))
        })
    });
    let job = get_job_reply();
    c.bench_function("write_response GetJob", |b| {
        b.iter(|| write_response(black_box(&job)))
    });
    let body = write_response(&job);
    c.bench_function("parse_response GetJob", |b| {
        b.iter(|| parse_response(black_box(&body), &limits))
    });
}

const ENCODER_XML: &str = "<EncoderJob><AudioFile>9b1d4e6a-2c3f-4a5b-8d7e-1f0a2b3c4d5e</AudioFile>\
<ImageFile>77e0a1b2-c3d4-4e5f-a6b7-c8d9e0f1a2b3</ImageFile><Format>mp4</Format></EncoderJob>";

const ENCODER_JSON: &str = "{\"AudioFile\": \"9b1d4e6a-2c3f-4a5b-8d7e-1f0a2b3c4d5e\", \
\"ImageFile\": \"77e0a1b2-c3d4-4e5f-a6b7-c8d9e0f1a2b3\", \"Format\": \"mp4\"}";

const UPLOADER_XML: &str = "<YoutubeUploaderJob><VideoFile>c0ffee00-1234-4abc-8def-0123456789ab</VideoFile>\
<Title>Sunday service, 5 May 2024</Title><Description>Recorded live. Readings: Acts 10, Psalm 98.</Description>\
<Tags><Tag>sermon</Tag><Tag>church</Tag><Tag>2024</Tag></Tags><CategoryId>29</CategoryId>\
<PrivacyStatus>unlisted</PrivacyStatus><RefreshToken>1//0gAbCdEfGhIjKlMnOpQrStUvWxYz-0123456789</RefreshToken>\
</YoutubeUploaderJob>";

/// A mencoder status line, as it arrives (carriage returns split them).
const MENCODER_LINE: &str =
    "Pos:  12.0s     12f (60%)  5.73fps Trem:   0min   0mb  A-V:0.000 [1043:128]";

/// One ffmpeg `-progress` block (MEDIA-NOTES A6).
const FFMPEG_BLOCK: &str =
    "frame=12\nfps=0.00\nstream_0_0_q=28.0\nbitrate= 141.2kbits/s\ntotal_size=212992\n\
out_time_us=12015601\nout_time_ms=12015601\nout_time=00:00:12.015601\ndup_frames=0\ndrop_frames=0\n\
speed=11.1x\nprogress=continue\n";

fn job_details(c: &mut Criterion) {
    c.bench_function("details::parse EncoderJob XML", |b| {
        b.iter(|| details::parse(JobKind::Encoder, black_box(ENCODER_XML)))
    });
    c.bench_function("details::parse EncoderJob JSON", |b| {
        b.iter(|| details::parse(JobKind::Encoder, black_box(ENCODER_JSON)))
    });
    c.bench_function("details::parse YoutubeUploaderJob XML", |b| {
        b.iter(|| details::parse(JobKind::YoutubeUploader, black_box(UPLOADER_XML)))
    });
    let stored = match details::parse(JobKind::Encoder, ENCODER_XML) {
        Ok(parsed) => parsed.details.to_json(),
        Err(e) => panic!("the bench's own details do not parse: {e}"),
    };
    c.bench_function("Details::from_json EncoderJob (stored)", |b| {
        b.iter(|| Details::from_json(JobKind::Encoder, black_box(&stored)))
    });
}

fn progress_lines(c: &mut Criterion) {
    c.bench_function("progress: mencoder status line", |b| {
        b.iter(|| parse_mencoder_pos(black_box(MENCODER_LINE)))
    });
    c.bench_function("progress: ffmpeg -progress block (12 lines)", |b| {
        b.iter(|| {
            let mut p = FfmpegProgress::default();
            let mut last = None;
            for line in black_box(FFMPEG_BLOCK).lines() {
                if let Some(pos) = p.line(line) {
                    last = Some(pos);
                }
            }
            last
        })
    });
}

criterion_group!(benches, codec, job_details, progress_lines);
criterion_main!(benches);
