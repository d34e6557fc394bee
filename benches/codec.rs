//! Codec hot paths: decoding the calls the website makes most (CreateJob,
//! GetProgress), encoding a GetJob reply, and decoding a response as the
//! engine's website client does.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
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

criterion_group!(benches, codec);
criterion_main!(benches);
