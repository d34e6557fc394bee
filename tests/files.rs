//! POST/GET/HEAD/DELETE /files over real HTTP (contract §5).

use crate::engine_test;
use crate::support::engine::{fixture, Engine, EngineOptions};
use std::io::{Read, Write};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

engine_test!(upload_download_range_delete, |backend| {
    let engine = Engine::start(backend);
    let bytes = std::fs::read(fixture("tone-20s.mp3")).unwrap();
    let agent = agent();
    let response = agent
        .post(&format!("{}/files?name=../../etc/passwd", engine.url))
        .send(&bytes[..])
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let location = response
        .headers()
        .get("Location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let id = response
        .into_body()
        .read_to_string()
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(location, format!("/files/{id}"));
    assert!(
        !engine.data_dir.join("etc").exists() && !engine.data_dir.join("../etc/passwd").exists()
    );

    let whole = agent
        .get(&format!("{}/files/{id}", engine.url))
        .call()
        .unwrap();
    assert_eq!(whole.status().as_u16(), 200);
    assert_eq!(
        whole
            .headers()
            .get("X-Content-SHA256")
            .unwrap()
            .to_str()
            .unwrap(),
        sha256_hex(&bytes)
    );
    assert_eq!(
        whole
            .headers()
            .get("Content-Disposition")
            .unwrap()
            .to_str()
            .unwrap(),
        "attachment; filename=\"passwd\""
    );
    let mut got = Vec::new();
    whole
        .into_body()
        .into_reader()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, bytes);

    let part = agent
        .get(&format!("{}/files/{id}", engine.url))
        .header("Range", "bytes=100-199")
        .call()
        .unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(
        part.headers()
            .get("Content-Range")
            .unwrap()
            .to_str()
            .unwrap(),
        format!("bytes 100-199/{}", bytes.len())
    );
    let mut got = Vec::new();
    part.into_body()
        .into_reader()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, &bytes[100..200]);

    let beyond = agent
        .get(&format!("{}/files/{id}", engine.url))
        .header("Range", "bytes=99999999-")
        .call()
        .unwrap();
    assert_eq!(beyond.status().as_u16(), 416);

    // HEAD on a raw connection: the client library hides Content-Length of a HEAD.
    let mut stream =
        std::net::TcpStream::connect(engine.url.trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "HEAD /files/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = String::new();
    stream.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", bytes.len())),
        "{head}"
    );
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {head}"
    );

    for missing in [
        "00000000-0000-0000-0000-000000000000",
        "..%2F..%2Fetc%2Fpasswd",
        "x",
    ] {
        let r = agent
            .get(&format!("{}/files/{missing}", engine.url))
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{missing}");
    }
    let deleted = agent
        .delete(&format!("{}/files/{id}", engine.url))
        .call()
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert_eq!(
        agent
            .get(&format!("{}/files/{id}", engine.url))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        agent
            .delete(&format!("{}/files/{id}", engine.url))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
});

engine_test!(multipart_upload_keeps_the_file_part, |backend| {
    let engine = Engine::start(backend);
    let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cover.png\"\r\nContent-Type: image/png\r\n\r\nPNGDATA\r\n--XyZ--\r\n";
    let (status, id) = engine.post_raw("/files", "multipart/form-data; boundary=XyZ", body);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&id));
    let id = String::from_utf8(id).unwrap().trim().to_owned();
    let stored = std::fs::read(engine.data_dir.join("files").join(&id)).unwrap();
    assert_eq!(stored, b"PNGDATA");
});

engine_test!(over_the_limit_is_413_and_leaves_nothing, |backend| {
    let engine = Engine::with(EngineOptions::new(backend).set("upload_limit", 1000));
    let (status, _) = engine.post_raw("/files", "application/octet-stream", &vec![7u8; 1001]);
    assert_eq!(status, 413);
    let (status, _) = engine.post_raw("/files", "application/octet-stream", &vec![7u8; 1000]);
    assert_eq!(status, 201);
    let files = std::fs::read_dir(engine.data_dir.join("files"))
        .unwrap()
        .count();
    let tmp = std::fs::read_dir(engine.data_dir.join("tmp"))
        .unwrap()
        .count();
    assert_eq!((files, tmp), (1, 0), "only the accepted file is kept");
});

engine_test!(a_file_an_unfinished_job_needs_is_409, |backend| {
    let engine = Engine::start(backend);
    let audio = engine.upload(&fixture("tone-20s.mp3"));
    let details = format!("<EncoderJob><AudioFile>{audio}</AudioFile></EncoderJob>");
    assert_eq!(
        engine
            .op("CreateJob", &["needs", "EncoderJob", &details, ""])
            .0,
        0
    );
    let agent = agent();
    let r = agent
        .delete(&format!("{}/files/{audio}", engine.url))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert!(r.into_body().read_to_string().unwrap().contains("needs"));
    assert_eq!(engine.op("DeleteJob", &["needs"]).0, 0);
    let r = agent
        .delete(&format!("{}/files/{audio}", engine.url))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
});
