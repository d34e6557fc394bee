//! Performance properties that a benchmark found and a test can hold
//! without timing anything fine-grained (bench/run measures; see
//! BENCHMARKS.md). Each bound is far above the fixed engine and far below
//! the fault it guards against.

use crate::support::engine::{fixture, raw_call, Backend, Engine};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One GetJob over an open keep-alive connection; returns the body length.
fn get_job(stream: &mut TcpStream, id: &str) -> usize {
    let body = raw_call(stream, "GetJob", id).expect("GetJob answered");
    assert!(body.contains("<name>Job</name>"), "not a GetJob answer");
    body.len()
}

/// An answer over 1 KiB used to leave in two writes, and Nagle's algorithm
/// held the second one until the client's delayed ACK: 40 ms per GetJob
/// (vendor/tiny_http PATCHED.md, patch 3).
#[test]
fn answers_over_1_kib_are_not_held_back_on_keep_alive() {
    let engine = Engine::start(Backend::Sqlite);
    let audio = engine.upload(&fixture("tone-20s.mp3"));
    let details = format!("<EncoderJob><AudioFile>{audio}</AudioFile></EncoderJob>");
    let (code, message, _) = engine.op(
        "CreateJob",
        &["nagle-1", "EncoderJob", &details, "http://127.0.0.1:9/cb"],
    );
    assert_eq!(code, 0, "CreateJob: {message}");
    let mut stream = TcpStream::connect(engine.url.trim_start_matches("http://")).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(
        get_job(&mut stream, "nagle-1") > 1024,
        "the answer must be over 1 KiB to test this"
    );
    let calls = 40;
    let started = Instant::now();
    for _ in 0..calls {
        get_job(&mut stream, "nagle-1");
    }
    let took = started.elapsed();
    // Held back, 40 calls take at least 40 x 40 ms = 1.6 s; answered at
    // once, a few ms each even on a busy machine.
    assert!(
        took < Duration::from_millis(800),
        "{calls} GetJob calls on one connection took {took:?}"
    );
}
