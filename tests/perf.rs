//! Performance properties that a benchmark found and a test can hold
//! without timing anything fine-grained (bench/run measures; see
//! BENCHMARKS.md). Each bound is far above the fixed engine and far below
//! the fault it guards against.

use crate::support::engine::{fixture, Backend, Engine};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One GetJob over an open keep-alive connection; returns the body length.
fn get_job(stream: &mut TcpStream, id: &str) -> usize {
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>GetJob</methodName><params><param><value>{id}</value></param></params></methodCall>"
    );
    let request = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("sending GetJob");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("reading the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Content-Length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("reading the body");
    assert!(
        String::from_utf8_lossy(&body).contains("<name>Job</name>"),
        "not a GetJob answer"
    );
    length
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
