//! The XML-RPC API over real HTTP against a real engine process, on both
//! backends: result codes, faults, encodings, concurrency, races.

use crate::engine_test;
use crate::support::engine::{
    descendants, fixture, int, python, raw_call, string, Backend, Engine, EngineOptions,
};
use crate::support::long_mp3;
use jobengine::protocol::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn encoder_details(audio: &str, image: Option<&str>) -> String {
    match image {
        Some(image) => format!(
            "<EncoderJob><AudioFile>{audio}</AudioFile><ImageFile>{image}</ImageFile></EncoderJob>"
        ),
        None => format!("<EncoderJob><AudioFile>{audio}</AudioFile></EncoderJob>"),
    }
}

fn create(engine: &Engine, id: &str, details: &str) {
    let (code, message, _) = engine.op("CreateJob", &[id, "EncoderJob", details, ""]);
    assert_eq!((code, message.as_str()), (0, ""), "CreateJob {id}");
}

fn lifecycle_with(backend: Backend, encoder: &str) {
    let dir = tempfile::tempdir().unwrap();
    // Long enough that progress is seen between 0 and 100 while polling.
    let mp3 = long_mp3(if encoder == "ffmpeg" { 120 } else { 300 });
    let engine = Engine::with(EngineOptions::new(backend).set("encoder", encoder));
    let out = python(
        "lifecycle.py",
        &[
            &engine.url,
            mp3.to_str().unwrap(),
            fixture("cover.png").to_str().unwrap(),
            dir.path().to_str().unwrap(),
        ],
    );
    assert!(out.contains("\"progress_seen\""), "{out}");
}

engine_test!(lifecycle_with_python_client_mencoder, |backend| {
    lifecycle_with(backend, "mencoder")
});
engine_test!(lifecycle_with_python_client_ffmpeg, |backend| {
    lifecycle_with(backend, "ffmpeg")
});

engine_test!(stock_client_sees_codes_and_faults, |backend| {
    let engine = Engine::start(backend);
    python("stock_client.py", &[&engine.url]);
});

engine_test!(every_operation_result_code, |backend| {
    let engine = Engine::start(backend);
    let audio = engine.upload(&fixture("tone-20s.mp3"));
    let details = encoder_details(&audio, None);

    // CreateJob
    let (code, _, v) = engine.op("CreateJob", &["", "EncoderJob", &details, ""]);
    assert_eq!(code, 0);
    let generated = string(&v, "JobID");
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    create(&engine, "job-1", &details);
    let (code, msg, _) = engine.op("CreateJob", &["job-1", "EncoderJob", &details, ""]);
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("'job-1'"), "{msg}");
    let (code, msg, _) = engine.op("CreateJob", &["job-2", "PdfJob", &details, ""]);
    assert_eq!(code, 3, "{msg}");
    assert!(msg.contains("'PdfJob'"), "{msg}");
    for (bad, field) in [
        ("not xml at all", ""),
        (
            "<EncoderJob><AudioFile>x</AudioFile><Bitrate>9</Bitrate></EncoderJob>",
            "Bitrate",
        ),
        ("<EncoderJob></EncoderJob>", "AudioFile"),
        (
            "{\"AudioFile\":\"00000000-0000-0000-0000-000000000000\"}",
            "AudioFile",
        ),
        (
            &encoder_details(&audio, Some("11111111-1111-1111-1111-111111111111")),
            "ImageFile",
        ),
        (
            &format!("<EncoderJob><AudioFile>{audio}</AudioFile><Format>mkv</Format></EncoderJob>"),
            "Format",
        ),
    ] {
        let (code, msg, _) = engine.op("CreateJob", &["job-2", "EncoderJob", bad, ""]);
        assert_eq!(code, 4, "{bad}: {msg}");
        assert!(
            msg.contains(field),
            "{bad}: message should name {field}: {msg}"
        );
    }
    for bad_id in ["has space", "../etc", &"x".repeat(65), "é"] {
        let (code, msg, _) = engine.op("CreateJob", &[bad_id, "EncoderJob", &details, ""]);
        assert_eq!(code, 6, "{bad_id}: {msg}");
    }
    for bad_callback in ["ftp://site/x", "/relative", "http://"] {
        let (code, msg, _) = engine.op(
            "CreateJob",
            &["job-3", "EncoderJob", &details, bad_callback],
        );
        assert_eq!(code, 6, "{bad_callback}: {msg}");
        assert!(msg.contains("Callback"), "{msg}");
    }
    let (code, _, _) = engine.op(
        "CreateJob",
        &[
            "job-3",
            "EncoderJob",
            &details,
            "http://website.example/cb/é",
        ],
    );
    assert_eq!(
        code, 0,
        "a non-ASCII callback is percent-encoded, not refused"
    );
    let json = format!("{{\"AudioFile\":\"{audio}\",\"Format\":\"avi\"}}");
    let (code, msg, _) = engine.op("CreateJob", &["json-1", "EncoderJob", &json, ""]);
    assert_eq!(code, 0, "JSON details: {msg}");

    // GetJob / GetProgress
    let job = engine.job("job-1");
    assert_eq!(string(&job, "State"), "Created");
    assert_eq!(string(&job, "JobType"), "EncoderJob");
    assert_eq!(int(&job, "ProgressAmount"), 0);
    assert_eq!(int(&job, "ResultCode"), 0);
    assert!(matches!(
        job.member("LastStateChange"),
        Some(Value::DateTime(_))
    ));
    assert_eq!(job.member("Outputs"), Some(&Value::Array(vec![])));
    assert_eq!(engine.op("GetJob", &["missing"]).0, 1);
    assert_eq!(engine.op("GetJob", &["bad id"]).0, 6);
    let (code, _, v) = engine.op("GetProgress", &["job-1"]);
    assert_eq!((code, int(&v, "Progress")), (0, 0));
    assert_eq!(engine.op("GetProgress", &["missing"]).0, 1);

    // CancelJob on a Created job; StartJob; StartJob twice
    let (code, msg, _) = engine.op("CancelJob", &["job-1"]);
    assert_eq!(code, 5, "{msg}");
    assert!(msg.contains("Created"), "{msg}");
    assert_eq!(engine.op("CancelJob", &["missing"]).0, 1);
    assert_eq!(engine.op("StartJob", &["job-1"]).0, 0);
    let (code, msg, _) = engine.op("StartJob", &["job-1"]);
    assert_eq!(code, 5, "{msg}");
    assert!(msg.contains("only a Created job can be started"), "{msg}");
    assert_eq!(engine.op("StartJob", &["missing"]).0, 1);
    let done = engine.wait_end("job-1", Duration::from_secs(120));
    assert_eq!(string(&done, "State"), "Success", "{done:?}");
    let (code, _, v) = engine.op("GetProgress", &["job-1"]);
    assert_eq!((code, int(&v, "Progress")), (0, 100));
    let (code, msg, _) = engine.op("CancelJob", &["job-1"]);
    assert_eq!(code, 5, "{msg}");

    // DeleteJob: any state, then the ID is free
    let output = match done.member("Outputs") {
        Some(Value::Array(o)) if o.len() == 1 => o[0].as_str().unwrap().to_owned(),
        other => panic!("Outputs: {other:?}"),
    };
    assert_eq!(engine.op("DeleteJob", &["job-1"]).0, 0);
    assert_eq!(engine.op("GetJob", &["job-1"]).0, 1);
    assert_eq!(engine.op("DeleteJob", &["job-1"]).0, 1);
    assert!(
        !engine.data_dir.join("files").join(&output).exists(),
        "the output file went with the job"
    );
    create(&engine, "job-1", &details);
    assert_eq!(engine.op("DeleteJob", &["job-3"]).0, 0);
});

engine_test!(faults_for_protocol_errors, |backend| {
    let engine = Engine::start(backend);
    let fault_code = |r: Result<Value, jobengine::protocol::Fault>| r.expect_err("a fault").code;
    assert_eq!(fault_code(engine.call("NoSuchMethod", &[])), -32601);
    assert_eq!(fault_code(engine.call("GetJob", &[])), -32602);
    assert_eq!(fault_code(engine.call("GetJob", &["a", "b"])), -32602);
    assert_eq!(
        fault_code(engine.call("CreateJob", &["a", "b", "c"])),
        -32602
    );
    assert_eq!(
        fault_code(engine.call_values("GetJob", &[Value::Int(7)])),
        -32602
    );
    assert_eq!(
        fault_code(engine.call_values("StartJob", &[Value::Array(vec![])])),
        -32602
    );
});

engine_test!(
    malformed_bodies_get_faults_and_the_server_keeps_answering,
    |backend| {
        let engine = Engine::start(backend);
        let deep = format!("<?xml version=\"1.0\"?><methodCall><methodName>GetJob</methodName><params><param>{}{}</param></params></methodCall>",
        "<value><array><data>".repeat(5000), "</data></array></value>".repeat(5000));
        let cases: Vec<(Vec<u8>, i32)> = vec![
        (b"".to_vec(), -32700),
        (b"not xml".to_vec(), -32700),
        (b"<methodCall><methodName>GetJob</methodName>".to_vec(), -32700),
        (b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><methodCall><methodName>&b;</methodName></methodCall>".to_vec(), -32700),
        (b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><methodCall><methodName>GetJob</methodName><params><param><value>&xxe;</value></param></params></methodCall>".to_vec(), -32700),
        (b"<methodResponse><params><param><value>x</value></param></params></methodResponse>".to_vec(), -32600),
        (b"<methodCall><methodName>GetJob</methodName><params><param><value><int>x</int></value></param></params></methodCall>".to_vec(), -32602),
        (b"<?xml version=\"1.0\" encoding=\"klingon\"?><methodCall><methodName>GetJob</methodName></methodCall>".to_vec(), -32701),
        (b"<methodCall><methodName>GetJob</methodName><params><param><value>\xff\xfe</value></param></params></methodCall>".to_vec(), -32702),
        (deep.into_bytes(), -32600),
    ];
        for (body, expected) in &cases {
            let (status, reply) = engine.post_raw("/RPC2", "text/xml", body);
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(body));
            let parsed = jobengine::protocol::xmlrpc::parse_response(&reply, &Default::default())
                .expect("a response");
            let fault = parsed.expect_err("a fault");
            assert!(
                fault.code == *expected,
                "body {:?}: got {fault:?}, wanted {expected}",
                String::from_utf8_lossy(&body[..body.len().min(120)])
            );
            assert!(!fault.message.is_empty());
            // And the server still answers.
            assert_eq!(engine.op("GetJob", &["nope"]).0, 1);
        }
        let huge = vec![b' '; 5 * 1024 * 1024];
        let (status, _) = engine.post_raw("/RPC2", "text/xml", &huge);
        assert_eq!(status, 413);
        assert_eq!(engine.op("GetJob", &["nope"]).0, 1);
    }
);

engine_test!(a_request_in_iso_8859_1_is_decoded, |backend| {
    let engine = Engine::start(backend);
    // "Vidéo" with é as the single Latin-1 byte 0xE9.
    let mut body = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><methodCall><methodName>CreateJob</methodName><params><param><value><string>latin</string></value></param><param><value><string>Vid".to_vec();
    body.push(0xE9);
    body.extend_from_slice(b"o</string></value></param><param><value><string></string></value></param><param><value></value></param></params></methodCall>");
    let (status, reply) = engine.post_raw("/RPC2", "text/xml", &body);
    assert_eq!(status, 200);
    let value = jobengine::protocol::xmlrpc::parse_response(&reply, &Default::default())
        .unwrap()
        .unwrap();
    assert_eq!(int(&value, "ResultCode"), 3);
    assert!(
        string(&value, "ErrorMessage").contains("'Vidéo'"),
        "{value:?}"
    );
});

engine_test!(four_jobs_on_two_workers_run_two_at_a_time, |backend| {
    let mp3 = long_mp3(300);
    let engine = Engine::with(EngineOptions::new(backend).set("workers", 2));
    let audio = engine.upload(&mp3);
    let ids: Vec<String> = (0..4).map(|i| format!("par-{i}")).collect();
    for id in &ids {
        create(&engine, id, &encoder_details(&audio, None));
    }
    for id in &ids {
        assert_eq!(engine.op("StartJob", &[id]).0, 0);
    }
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        // States only move forward, so a job InProgress in two passes was
        // InProgress the whole time between them: the jobs InProgress in
        // both passes were all running at the instant the first pass ended.
        let first: Vec<String> = ids.iter().map(|id| engine.state(id)).collect();
        let states: Vec<String> = ids.iter().map(|id| engine.state(id)).collect();
        let running = first
            .iter()
            .zip(&states)
            .filter(|(a, b)| *a == "InProgress" && *b == "InProgress")
            .count();
        most = most.max(running);
        assert!(
            running <= 2,
            "more than 2 jobs InProgress at once on 2 workers: {first:?} then {states:?}"
        );
        if states.iter().all(|s| s == "Success") {
            break;
        }
        assert!(
            !states.iter().any(|s| s == "Failed"),
            "{states:?}\n{}",
            engine.log()
        );
        assert!(Instant::now() < deadline, "not done: {states:?}");
    }
    assert_eq!(most, 2, "two jobs ran side by side at some point");
});

engine_test!(racing_start_cancel_delete_leaves_legal_states, |backend| {
    let engine = Arc::new(Engine::with(EngineOptions::new(backend).set("workers", 2)));
    let audio = engine.upload(&fixture("tone-20s.mp3"));
    let ids: Vec<String> = (0..5).map(|i| format!("race-{i}")).collect();
    for id in &ids {
        create(&engine, id, &encoder_details(&audio, None));
    }
    let barrier = Arc::new(Barrier::new(50));
    let threads: Vec<_> = (0..50)
        .map(|n| {
            let (engine, barrier, ids) = (engine.clone(), barrier.clone(), ids.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let id = &ids[n % ids.len()];
                let op = ["StartJob", "CancelJob", "DeleteJob", "StartJob", "GetJob"][n % 5];
                let (code, msg, _) = engine.op(op, &[id]);
                assert!([0, 1, 5].contains(&code), "{op} {id}: {code} {msg}");
                (op, id.clone(), code)
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("no panic"))
        .collect();
    for id in &ids {
        let starts_won = results
            .iter()
            .filter(|(op, i, code)| *op == "StartJob" && i == id && *code == 0)
            .count();
        assert!(starts_won <= 1, "{id} was started {starts_won} times");
        let (code, _, v) = engine.op("GetJob", &[id]);
        if code == 1 {
            continue; // deleted: legal
        }
        let job = v.member("Job").unwrap().clone();
        let state = string(&job, "State");
        let settled = match state.as_str() {
            "Created" => job,
            "Started" | "InProgress" => engine.wait_end(id, Duration::from_secs(120)),
            _ => job,
        };
        let state = string(&settled, "State");
        assert!(
            ["Created", "Success", "Failed"].contains(&state.as_str()),
            "{id}: {settled:?}"
        );
        if state == "Failed" {
            assert_eq!(
                int(&settled, "ResultCode"),
                1,
                "only a cancel fails these jobs: {settled:?}"
            );
        }
    }
    // Nothing runs any more.
    assert!(
        descendants(engine.pid()).is_empty(),
        "an encoder is still running"
    );
});

engine_test!(cancel_stops_the_encoder_within_a_second, |backend| {
    let mp3 = long_mp3(600);
    let engine = Engine::with(EngineOptions::new(backend).set("encoder", "ffmpeg"));
    let audio = engine.upload(&mp3);
    create(
        &engine,
        "long",
        &encoder_details(&audio, Some(&engine.upload(&fixture("cover.png")))),
    );
    assert_eq!(engine.op("StartJob", &["long"]).0, 0);
    engine.wait_state("long", "InProgress", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while descendants(engine.pid()).is_empty() {
        assert!(Instant::now() < deadline, "no encoder process appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    let asked = Instant::now();
    assert_eq!(engine.op("CancelJob", &["long"]).0, 0);
    while !descendants(engine.pid()).is_empty() {
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "encoder still running {:?} after CancelJob",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let job = engine.job("long");
    assert_eq!(string(&job, "State"), "Failed");
    assert_eq!(int(&job, "ResultCode"), 1);
    let work = engine.data_dir.join("work");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0) > 0 {
        assert!(Instant::now() < deadline, "the work dir was not removed");
        std::thread::sleep(Duration::from_millis(10));
    }
});

/// Sends one GetProgress on a raw keep-alive connection and reads the answer.
fn keepalive_call(stream: &mut TcpStream, id: usize) -> Result<(), String> {
    let body = raw_call(stream, "GetProgress", &format!("k-{id}"))?;
    if !body.contains("ResultCode") {
        return Err("not a result struct".into());
    }
    Ok(())
}

#[test]
fn keepalive_burst_of_64_clients_all_answered() {
    let engine = Arc::new(Engine::start(Backend::Sqlite));
    let addr = engine.url.trim_start_matches("http://").to_owned();
    let barrier = Arc::new(Barrier::new(64));
    // Clients keep their connections open until all are done (or gave up),
    // as a website's workers do: a starved client is then never rescued
    // by another one disconnecting.
    let finished = Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
    let clients: Vec<_> = (0..64)
        .map(|n| {
            let (addr, barrier, finished) = (addr.clone(), barrier.clone(), finished.clone());
            std::thread::spawn(move || -> Result<(), String> {
                barrier.wait();
                let result = (|| {
                    let mut stream = TcpStream::connect(&addr).map_err(|e| e.to_string())?;
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    for _ in 0..5 {
                        keepalive_call(&mut stream, n)?;
                    }
                    Ok(stream)
                })();
                let (count, all_done) = &*finished;
                let mut done = count.lock().unwrap();
                *done += 1;
                all_done.notify_all();
                let _held = all_done
                    .wait_timeout_while(done, Duration::from_secs(10), |d| *d < 64)
                    .unwrap();
                result.map(drop)
            })
        })
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .enumerate()
        .filter_map(|(n, c)| c.join().unwrap().err().map(|e| format!("client {n}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 64 keep-alive clients not answered: {failures:?}",
        failures.len()
    );
}

engine_test!(healthz_says_ready, |backend| {
    let engine = Engine::start(backend);
    assert_eq!(engine.get("/healthz"), (200, b"ok\n".to_vec()));
    let (status, _) = engine.get("/RPC2");
    assert_eq!(status, 405);
    let (status, _) = engine.get("/nowhere");
    assert_eq!(status, 404);
});

#[test]
fn an_http_1_0_client_gets_content_length_and_a_closed_connection() {
    // phpxmlrpc's default transport: HTTP/1.0, reads until the server closes.
    let engine = Engine::start(Backend::Sqlite);
    let mut stream = TcpStream::connect(engine.url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<methodCall>\n<methodName>GetJob</methodName>\n<params>\n <param>\n  <value>\n   <string>nope</string>\n  </value>\n </param>\n</params>\n</methodCall>\n";
    write!(
        stream,
        "POST /RPC2 HTTP/1.0\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .expect("the server closes after answering");
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert!(reply.contains("Content-Length: "), "{reply}");
    assert!(
        reply.contains("\r\n\r\n<?xml"),
        "the answer starts with <?xml: {reply}"
    );
    assert!(reply.contains("no job with JobID 'nope'"), "{reply}");
}
