//! YoutubeUploaderJob through the whole engine: XML-RPC, the store, the
//! worker pool, a kill -9 in the middle of an upload, against the YouTube
//! stand-in.

use crate::engine_test;
use crate::support::engine::{string, Backend, Engine, EngineOptions};
use crate::youtube_standin::{self as yt, PutFault, StandIn};
use jobengine::job::JobId;
use jobengine::store::Store;
use std::sync::Arc;
use std::time::Duration;

const KIB: u64 = 1024;

/// 1.1 MB of bytes that are not all the same, as the video.
fn video_file(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let bytes: Vec<u8> = (0..1_100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = dir.join("video.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let sha = jobengine::files::hash_file(&path).unwrap().1;
    (path, sha)
}

fn engine_for(backend: Backend, standin: &StandIn) -> Engine {
    Engine::with(
        EngineOptions::new(backend)
            .set("youtube_upload_url", standin.upload_url())
            .set("oauth_token_url", standin.token_url())
            .set("oauth_client_id", yt::CLIENT_ID)
            .set("oauth_client_secret", yt::CLIENT_SECRET)
            .set("youtube_chunk_size", 256 * KIB),
    )
}

fn create_upload(engine: &Engine, id: &str, file: &str) {
    let details = serde_json::json!({
        "VideoFile": file,
        "Title": "A tone",
        "Tags": ["a", "b"],
        "PrivacyStatus": "unlisted",
        "RefreshToken": yt::REFRESH_TOKEN,
    })
    .to_string();
    let body = jobengine::protocol::xmlrpc::write_call(
        "CreateJob",
        &[id, "YoutubeUploaderJob", &details, ""]
            .map(|p| jobengine::protocol::Value::str(p.to_owned())),
    );
    let (status, reply) = engine.post_raw("/RPC2", "text/xml", &body);
    assert_eq!(status, 200);
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.contains("<int>0</int>"), "{reply}");
    assert!(
        !reply.contains(yt::REFRESH_TOKEN),
        "CreateJob echoed the token"
    );
    assert_eq!(engine.op("StartJob", &[id]).0, 0);
}

/// The engine's store, opened beside the running engine.
fn open_store(engine: &Engine) -> Arc<dyn Store> {
    match engine.database.strip_prefix("sqlite:") {
        Some(path) => Arc::new(jobengine::store::sqlite::SqliteStore::open(path.as_ref()).unwrap()),
        None => Arc::new(jobengine::store::postgres::PgStore::open(&engine.database, 2).unwrap()),
    }
}

fn assert_token_gone(engine: &Engine, id: &str) {
    let job_id = JobId::parse(id).unwrap();
    assert_eq!(
        open_store(engine).get_secrets(&job_id).unwrap(),
        None,
        "the token left the store"
    );
    let body = jobengine::protocol::xmlrpc::write_call(
        "GetJob",
        &[jobengine::protocol::Value::str(id.to_owned())],
    );
    let (_, reply) = engine.post_raw("/RPC2", "text/xml", &body);
    assert!(!String::from_utf8_lossy(&reply).contains(yt::REFRESH_TOKEN));
    let log = engine.log();
    assert!(
        !log.contains(yt::REFRESH_TOKEN) && !log.contains(yt::CLIENT_SECRET),
        "a secret was logged:\n{log}"
    );
}

engine_test!(an_upload_through_the_engine_keeps_its_secrets, |backend| {
    let dir = tempfile::tempdir().unwrap();
    let (path, sha) = video_file(dir.path());
    let standin = StandIn::start();
    let engine = engine_for(backend, &standin);
    let file = engine.upload(&path);
    create_upload(&engine, "yt-1", &file);
    let job = engine.wait_end("yt-1", Duration::from_secs(60));
    assert_eq!(
        string(&job, "State"),
        "Success",
        "{job:?}\n{}",
        engine.log()
    );
    let videos = standin.videos();
    assert_eq!(videos.len(), 1);
    assert_eq!(string(&job, "Result"), videos[0].id);
    assert_eq!(videos[0].sha256, sha, "the stand-in got the file's bytes");
    assert!(
        standin.violations().is_empty(),
        "{:?}",
        standin.violations()
    );
    assert_token_gone(&engine, "yt-1");
});

engine_test!(kill_9_mid_upload_resumes_the_same_session, |backend| {
    let dir = tempfile::tempdir().unwrap();
    let (path, sha) = video_file(dir.path());
    let standin = StandIn::start();
    // The second data PUT stalls half-way: the engine is mid-chunk when killed.
    standin.fault_on_put(2, PutFault::Hang(100 * KIB));
    let mut engine = engine_for(backend, &standin);
    let file = engine.upload(&path);
    create_upload(&engine, "yt-kill", &file);
    assert!(
        standin.wait_until(Duration::from_secs(30), |s| s.hanging),
        "the upload never reached the stall"
    );
    engine.kill9();
    standin.release();
    engine.restart();
    let job = engine.wait_end("yt-kill", Duration::from_secs(60));
    assert_eq!(
        string(&job, "State"),
        "Success",
        "{job:?}\n{}",
        engine.log()
    );
    assert_eq!(
        standin.sessions_created(),
        1,
        "the restarted engine resumed the same session"
    );
    let videos = standin.videos();
    assert_eq!(videos.len(), 1, "one video");
    assert_eq!(
        (videos[0].size, videos[0].sha256.as_str()),
        (1_100_000, sha.as_str()),
        "complete, correct bytes"
    );
    assert_eq!(string(&job, "Result"), videos[0].id);
    assert!(
        standin.log().iter().any(|l| l.is_status_query()),
        "it asked the session where it stood"
    );
    assert!(
        standin.violations().is_empty(),
        "{:?}",
        standin.violations()
    );
    assert_token_gone(&engine, "yt-kill");
});
