//! YoutubeUploaderJob against the local YouTube stand-in: the clean path,
//! every fault of MEDIA-NOTES B6, stopping, and resuming from a checkpoint.

use crate::youtube_standin::{self as yt, PutFault, StandIn};
use jobengine::config::Config;
use jobengine::files::Files;
use jobengine::job::details::{Details, Privacy, UploaderDetails};
use jobengine::job::{JobKind, JobResult, Outcome};
use jobengine::kinds::upload::{self, RetryPolicy};
use jobengine::kinds::{RunCtx, StopReason, StopSignal};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

const KIB: u64 = 1024;

/// One stand-in, one file store holding one video file, one engine config.
struct Rig {
    _dir: tempfile::TempDir,
    files: Files,
    config: Config,
    agent: ureq::Agent,
    yt: StandIn,
    file_id: String,
    sha256: String,
    size: u64,
}

/// What a run reported through its context.
#[derive(Default)]
struct Record {
    progress: Mutex<Vec<i32>>,
    /// Each checkpoint saved, with the number of data PUTs the stand-in had
    /// seen at that moment.
    checkpoints: Mutex<Vec<(String, usize)>>,
}

impl Record {
    fn progress(&self) -> Vec<i32> {
        self.progress.lock().unwrap().clone()
    }
    fn last_checkpoint(&self) -> String {
        self.checkpoints
            .lock()
            .unwrap()
            .last()
            .map(|c| c.0.clone())
            .unwrap_or_default()
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        base: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
    }
}

/// Deterministic bytes that start like an MP4 (so the engine sends video/mp4).
fn video_bytes(size: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ size;
    let mut v: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let head = b"\0\0\0\x20ftypisom";
    let n = head.len().min(v.len());
    v[..n].copy_from_slice(&head[..n]);
    v
}

impl Rig {
    fn new(size: u64, chunk: u64) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = Files::open(dir.path()).expect("file store");
        let bytes = video_bytes(size);
        let stored = files
            .receive(&mut &bytes[..], u64::MAX)
            .expect("store the video");
        let yt = StandIn::start();
        let config = yt.engine_config(dir.path(), chunk);
        let agent = jobengine::net::agent(&config);
        Rig {
            _dir: dir,
            files,
            agent,
            yt,
            file_id: stored.id,
            sha256: stored.sha256,
            size: stored.size,
            config,
        }
    }

    fn details(&self) -> UploaderDetails {
        UploaderDetails {
            video_file: self.file_id.clone(),
            title: "Tone, twenty seconds".into(),
            description: "A 440 Hz tone.\nSecond line: ünïcödé".into(),
            tags: vec!["a".into(), "b c".into()],
            category_id: Some("10".into()),
            privacy_status: Privacy::Unlisted,
        }
    }

    /// Runs the upload with `policy` (None: through the `Kind` trait, the
    /// engine's way, with the default policy).
    fn run_with(
        &self,
        checkpoint: &str,
        details: UploaderDetails,
        stop: &StopSignal,
        policy: Option<&RetryPolicy>,
    ) -> (Outcome, Record) {
        let job = yt::upload_job("upload-1", &self.file_id, checkpoint);
        let details = Details::Uploader(details);
        let secrets = serde_json::json!({ "RefreshToken": yt::REFRESH_TOKEN }).to_string();
        let record = Record::default();
        let work = tempfile::tempdir().expect("work dir");
        let progress = |p: i32| record.progress.lock().unwrap().push(p);
        let checkpoint = |c: &str| {
            let puts = self.yt.with(|s| s.data_puts);
            record
                .checkpoints
                .lock()
                .unwrap()
                .push((c.to_owned(), puts));
            Ok(())
        };
        let register =
            |_: &std::path::Path, _: &str| Err::<String, String>("an upload has no outputs".into());
        let ctx = RunCtx {
            job: &job,
            details: &details,
            secrets: Some(&secrets),
            config: &self.config,
            files: &self.files,
            work_dir: work.path(),
            stop,
            agent: &self.agent,
            progress: &progress,
            checkpoint: &checkpoint,
            register_output: &register,
        };
        let outcome = match policy {
            Some(p) => upload::upload(&ctx, p),
            None => jobengine::kinds::for_job(JobKind::YoutubeUploader).run(&ctx),
        };
        (outcome, record)
    }

    fn run(&self, checkpoint: &str) -> (Outcome, Record) {
        self.run_with(
            checkpoint,
            self.details(),
            &StopSignal::new(),
            Some(&fast()),
        )
    }

    /// The one video the stand-in holds, checked byte for byte against the file.
    fn the_video(&self, outcome: &Outcome) -> yt::Video {
        let videos = self.yt.videos();
        assert_eq!(
            videos.len(),
            1,
            "exactly one video on the stand-in, got {videos:?}"
        );
        let v = videos[0].clone();
        assert_eq!(
            outcome,
            &Outcome::Success {
                result: v.id.clone(),
                outputs: vec![]
            },
            "the result is the video's id"
        );
        assert_eq!(
            (v.size, v.sha256.as_str()),
            (self.size, self.sha256.as_str()),
            "stored bytes equal the file"
        );
        assert_eq!(
            self.yt.violations(),
            Vec::<String>::new(),
            "no protocol violations"
        );
        v
    }

    fn data_ranges(&self) -> Vec<String> {
        self.yt
            .log()
            .iter()
            .filter(|l| l.is_data_put())
            .map(|l| l.header("content-range").unwrap_or("").to_owned())
            .collect()
    }
}

fn failed(outcome: &Outcome) -> (JobResult, String) {
    match outcome {
        Outcome::Failed { code, message } => {
            assert!(
                !message.contains(yt::REFRESH_TOKEN) && !message.contains(yt::CLIENT_SECRET),
                "{message}"
            );
            assert!(!message.contains("ya29."), "no access token in {message}");
            (*code, message.clone())
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn clean_upload_sends_metadata_then_aligned_chunks_and_returns_the_video_id() {
    let rig = Rig::new(1_100_000, 256 * KIB);
    let (outcome, record) = rig.run_with("", rig.details(), &StopSignal::new(), None);
    let video = rig.the_video(&outcome);
    assert_eq!(rig.yt.sessions_created(), 1);

    let tokens = rig.yt.token_requests();
    assert_eq!(tokens.len(), 1, "one token refresh");
    let form = &tokens[0];
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], yt::REFRESH_TOKEN);
    assert_eq!(
        (form["client_id"].as_str(), form["client_secret"].as_str()),
        (yt::CLIENT_ID, yt::CLIENT_SECRET)
    );

    let log = rig.yt.log();
    let post = log
        .iter()
        .find(|l| l.method == "POST" && l.target.starts_with("/upload/"))
        .expect("session POST");
    assert!(
        post.target.contains("uploadType=resumable") && post.target.contains("part=snippet,status")
    );
    assert_eq!(post.header("authorization"), Some("Bearer ya29.standin-1"));
    assert_eq!(post.header("x-upload-content-length"), Some("1100000"));
    assert_eq!(post.header("x-upload-content-type"), Some("video/mp4"));
    assert!(post
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/json"));
    assert!(post
        .header("user-agent")
        .unwrap_or("")
        .starts_with("jobengine/"));
    let m = &video.metadata;
    assert_eq!(m["snippet"]["title"], "Tone, twenty seconds");
    assert_eq!(
        m["snippet"]["description"],
        "A 440 Hz tone.\nSecond line: ünïcödé"
    );
    assert_eq!(m["snippet"]["tags"], serde_json::json!(["a", "b c"]));
    assert_eq!(m["snippet"]["categoryId"], "10");
    assert_eq!(m["status"]["privacyStatus"], "unlisted");

    assert_eq!(
        rig.data_ranges(),
        [
            "bytes 0-262143/1100000",
            "bytes 262144-524287/1100000",
            "bytes 524288-786431/1100000",
            "bytes 786432-1048575/1100000",
            "bytes 1048576-1099999/1100000"
        ]
    );
    for put in log.iter().filter(|l| l.is_data_put()) {
        assert_eq!(put.header("content-type"), Some("video/mp4"));
        assert_eq!(put.header("authorization"), Some("Bearer ya29.standin-1"));
    }
    assert!(
        !log.iter().any(|l| l.is_status_query()),
        "no status query on a clean run"
    );

    let progress = record.progress();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {progress:?}"
    );
    assert_eq!(progress.last(), Some(&100));
    assert!(
        progress.iter().any(|&p| p > 0 && p < 100),
        "progress in between: {progress:?}"
    );

    let checkpoints = record.checkpoints.lock().unwrap().clone();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(
        checkpoints[0].1, 0,
        "the session is saved before any byte is sent"
    );
    assert!(
        checkpoints[0].0.contains(&video.upload_id),
        "checkpoint names the session: {}",
        checkpoints[0].0
    );
}

#[test]
fn a_burst_of_503_is_retried_and_resumes_from_the_server_offset() {
    let rig = Rig::new(1_100_000, 256 * KIB);
    rig.yt.fault_on_put(2, PutFault::Burst(3));
    let (outcome, _) = rig.run("");
    rig.the_video(&outcome);
    let log = rig.yt.log();
    assert_eq!(log.iter().filter(|l| l.status == 503).count(), 3);
    let after = log
        .iter()
        .skip_while(|l| l.status != 503)
        .find(|l| l.status != 503)
        .expect("a request after the burst");
    assert!(
        after.is_status_query(),
        "after a failure the engine asks where the session stands: {after:?}"
    );
    assert_eq!(after.header("content-range"), Some("bytes */1100000"));
    assert_eq!(after.body_len, 0);
    let ranges = rig.data_ranges();
    assert_eq!(ranges[0], "bytes 0-262143/1100000");
    assert_eq!(ranges[1], "bytes 262144-524287/1100000", "the 503'd chunk");
    assert_eq!(
        ranges[2], "bytes 262144-524287/1100000",
        "resumed where the server stood"
    );
    assert_eq!(rig.yt.sessions_created(), 1);
}

#[test]
fn a_connection_cut_mid_chunk_resumes_from_what_the_server_kept() {
    let rig = Rig::new(2_600_000, 512 * KIB);
    rig.yt.fault_on_put(3, PutFault::Cut(300_000));
    let (outcome, record) = rig.run("");
    rig.the_video(&outcome);
    let ranges = rig.data_ranges();
    assert_eq!(
        ranges[2], "bytes 1048576-1572863/2600000",
        "the chunk that was cut"
    );
    // The server kept floor(300000 / 262144) units of it.
    assert_eq!(
        ranges[3], "bytes 1310720-1835007/2600000",
        "resumed from the server's offset"
    );
    assert!(rig.yt.log().iter().any(|l| l.is_status_query()));
    assert_eq!(rig.yt.sessions_created(), 1);
    assert_eq!(record.progress().last(), Some(&100));
}

#[test]
fn an_expired_access_token_is_refreshed_once_and_the_upload_goes_on() {
    let rig = Rig::new(1_100_000, 256 * KIB);
    rig.yt.fault_on_put(2, PutFault::ExpireTokens);
    let (outcome, _) = rig.run("");
    rig.the_video(&outcome);
    assert_eq!(
        rig.yt.token_requests().len(),
        2,
        "one refresh after the 401"
    );
    let log = rig.yt.log();
    let refused = log.iter().position(|l| l.status == 401).expect("a 401");
    let next = log[refused + 1..]
        .iter()
        .find(|l| l.target.starts_with("/upload/"))
        .expect("a request after");
    assert_eq!(
        next.header("authorization"),
        Some("Bearer ya29.standin-2"),
        "the new token is used"
    );
    assert!(
        next.is_status_query(),
        "asks where the session stands before resending"
    );
    assert_eq!(log.iter().filter(|l| l.status == 401).count(), 1);
    assert_eq!(rig.yt.sessions_created(), 1);
}

#[test]
fn an_access_token_is_refreshed_shortly_before_it_expires() {
    let rig = Rig::new(1_100_000, 256 * KIB);
    rig.yt.set_expires_in(1);
    // About 1.4 s of upload: past the 1 s lifetime of the first token.
    rig.yt.set_read_delay(Some(Duration::from_millis(80)));
    let (outcome, _) = rig.run("");
    rig.the_video(&outcome);
    assert!(
        rig.yt.token_requests().len() >= 2,
        "the token was refreshed during the upload"
    );
    assert!(
        !rig.yt.log().iter().any(|l| l.status == 401),
        "before YouTube refused it"
    );
}

#[test]
fn quota_exceeded_fails_5_with_youtubes_reason() {
    let rig = Rig::new(300_000, 256 * KIB);
    rig.yt.quota_exceeded_next();
    let (outcome, _) = rig.run("");
    let (code, message) = failed(&outcome);
    assert_eq!(code, JobResult::RemoteRejected);
    assert!(message.contains("quotaExceeded"), "{message}");
    assert!(!message.contains("<a"), "HTML removed: {message}");
    assert_eq!(rig.yt.sessions_created(), 0);
    assert_eq!(rig.yt.with(|s| s.data_puts), 0);
}

#[test]
fn an_invalid_title_fails_5_with_youtubes_reason() {
    let rig = Rig::new(300_000, 256 * KIB);
    let details = UploaderDetails {
        title: "x".repeat(101),
        ..rig.details()
    };
    let (outcome, _) = rig.run_with("", details, &StopSignal::new(), Some(&fast()));
    let (code, message) = failed(&outcome);
    assert_eq!(code, JobResult::RemoteRejected);
    assert!(message.contains("invalidTitle"), "{message}");
    assert!(rig.yt.videos().is_empty());
}

#[test]
fn a_revoked_grant_fails_5_asking_the_user_to_reconnect() {
    let rig = Rig::new(300_000, 256 * KIB);
    rig.yt.revoke(yt::REFRESH_TOKEN);
    let (outcome, _) = rig.run("");
    let (code, message) = failed(&outcome);
    assert_eq!(code, JobResult::RemoteRejected);
    assert!(
        message.contains("reconnect their YouTube channel"),
        "{message}"
    );
    assert!(message.contains("invalid_grant"), "{message}");
    assert_eq!(
        rig.yt.token_requests().len(),
        1,
        "invalid_grant is not retried"
    );
    assert!(
        !rig.yt
            .log()
            .iter()
            .any(|l| l.target.starts_with("/upload/")),
        "nothing sent to the API"
    );
}

#[test]
fn retries_exhausted_fail_6() {
    let rig = Rig::new(300_000, 256 * KIB);
    rig.yt.fail_next(1000, 503);
    let policy = RetryPolicy {
        max_retries: 3,
        ..fast()
    };
    let (outcome, _) = rig.run_with("", rig.details(), &StopSignal::new(), Some(&policy));
    let (code, message) = failed(&outcome);
    assert_eq!(code, JobResult::RemoteUnavailable);
    assert!(
        message.contains("503") && message.contains("3 retries"),
        "{message}"
    );
    let tries = rig
        .yt
        .log()
        .iter()
        .filter(|l| l.target.starts_with("/upload/"))
        .count();
    assert_eq!(tries, 4, "the first try and 3 retries");
}

/// Starts an upload on a slow link and returns once the stand-in is in the
/// middle of its second chunk.
fn slow_upload_in_flight(rig: &Rig) {
    assert!(
        rig.yt
            .wait_until(Duration::from_secs(20), |s| s.data_puts >= 2
                && s.receiving.is_some_and(|n| n > 0)),
        "the upload never reached its second chunk"
    );
}

#[test]
fn cancel_mid_upload_returns_within_a_second() {
    let rig = Rig::new(4 * 1024 * KIB, 1024 * KIB);
    rig.yt.set_read_delay(Some(Duration::from_millis(20)));
    let stop = StopSignal::new();
    let (outcome, elapsed) = thread::scope(|s| {
        let run = s.spawn(|| {
            let (outcome, _) = rig.run_with("", rig.details(), &stop, Some(&fast()));
            (outcome, Instant::now())
        });
        slow_upload_in_flight(&rig);
        let asked = Instant::now();
        stop.stop(StopReason::Cancelled);
        let (outcome, ended) = run.join().expect("upload thread");
        (outcome, ended - asked)
    });
    let (code, message) = failed(&outcome);
    assert_eq!(code, JobResult::Cancelled, "{message}");
    assert!(
        elapsed < Duration::from_secs(1),
        "stopped after {elapsed:?}"
    );
    // The abandoned chunk ends (broken off, or answered if the socket
    // buffers already held all of it), and nothing follows it.
    assert!(
        rig.yt
            .wait_until(Duration::from_secs(10), |s| s.receiving.is_none()),
        "the chunk never ended"
    );
    let log = rig.yt.log();
    assert!(
        log.last().is_some_and(|l| l.is_data_put()),
        "the last request is the abandoned chunk"
    );
    let n = log.len();
    assert!(
        !rig.yt
            .wait_until(Duration::from_millis(300), |s| s.log.len() > n),
        "no request after stopping"
    );
    assert!(rig.yt.videos().is_empty());
}

#[test]
fn shutdown_mid_upload_is_interrupted_and_a_rerun_finishes_the_same_session() {
    let rig = Rig::new(4 * 1024 * KIB, 1024 * KIB);
    rig.yt.set_read_delay(Some(Duration::from_millis(10)));
    let stop = StopSignal::new();
    let (outcome, record, elapsed) = thread::scope(|s| {
        let run = s.spawn(|| {
            let (outcome, record) = rig.run_with("", rig.details(), &stop, Some(&fast()));
            (outcome, record, Instant::now())
        });
        slow_upload_in_flight(&rig);
        let asked = Instant::now();
        stop.stop(StopReason::Shutdown);
        let (outcome, record, ended) = run.join().expect("upload thread");
        (outcome, record, ended - asked)
    });
    assert_eq!(outcome, Outcome::Interrupted);
    assert!(
        elapsed < Duration::from_secs(1),
        "stopped after {elapsed:?}"
    );
    let checkpoint = record.last_checkpoint();
    assert!(!checkpoint.is_empty(), "the session was saved");
    let first_progress = *record.progress().last().unwrap();
    assert!(
        first_progress >= 25,
        "the first chunk was confirmed: {first_progress}"
    );

    rig.yt.set_read_delay(None);
    let before = rig.yt.log().len();
    let (outcome, rerun) = rig.run(&checkpoint);
    rig.the_video(&outcome);
    assert_eq!(
        rig.yt.sessions_created(),
        1,
        "the rerun used the same session"
    );
    assert_eq!(
        rerun.checkpoints.lock().unwrap().len(),
        0,
        "no new session saved"
    );
    let log = rig.yt.log();
    let first_upload_request = log[before..]
        .iter()
        .find(|l| l.target.starts_with("/upload/"))
        .unwrap();
    assert!(
        first_upload_request.is_status_query(),
        "a rerun first asks where the session stands"
    );
    let rerun_progress = rerun.progress();
    assert!(
        rerun_progress.iter().any(|p| (25..100).contains(p)),
        "progress starts from what YouTube holds"
    );
    assert_eq!(rerun_progress.last(), Some(&100));
}

/// Stands in for "engine killed with kill -9 mid-upload, then restarted":
/// the first run's server stops reading mid-chunk (the connection hangs, as
/// it does when a process dies with the socket open); the run is stopped and
/// never heard from again; the connection is then cut; a second run gets only
/// what the store would hold, the checkpoint. The full-engine kill -9 test
/// (a real process, a real store) comes with the engine.
#[test]
fn an_engine_killed_mid_upload_resumes_the_same_session_on_restart() {
    let rig = Rig::new(2_600_000, 512 * KIB);
    rig.yt.fault_on_put(3, PutFault::Hang(300_000));
    let stop = StopSignal::new();
    let record = thread::scope(|s| {
        let run = s.spawn(|| rig.run_with("", rig.details(), &stop, Some(&fast())).1);
        assert!(
            rig.yt.wait_until(Duration::from_secs(20), |s| s.hanging),
            "the third chunk never hung"
        );
        stop.stop(StopReason::Shutdown);
        run.join().expect("first run")
    });
    let requests_at_death = rig.yt.log().len();
    rig.yt.release();
    assert!(
        rig.yt
            .wait_until(Duration::from_secs(5), |s| s.log.len() > requests_at_death),
        "the cut is logged"
    );
    assert_eq!(
        rig.yt.log().last().unwrap().status,
        0,
        "the hung PUT was cut, unanswered"
    );

    let checkpoint = record.last_checkpoint();
    let (outcome, _) = rig.run(&checkpoint);
    let video = rig.the_video(&outcome);
    assert_eq!(rig.yt.sessions_created(), 1);
    assert!(checkpoint.contains(&video.upload_id));
    let ranges = rig.data_ranges();
    assert_eq!(
        ranges[2], "bytes 1048576-1572863/2600000",
        "the chunk the engine died in"
    );
    assert_eq!(
        ranges[3], "bytes 1310720-1835007/2600000",
        "the restart resumed from the server's offset"
    );
    assert_eq!(
        ranges.len(),
        6,
        "3 chunks before the death, 3 after it, nothing else: {ranges:?}"
    );
    let queries = rig.yt.log().iter().filter(|l| l.is_status_query()).count();
    assert_eq!(
        queries, 1,
        "only the restarted run asked where the session stands"
    );
}

#[test]
fn a_checkpoint_of_a_finished_session_gives_the_video_without_uploading_again() {
    let rig = Rig::new(600_000, 256 * KIB);
    let (outcome, record) = rig.run("");
    let video = rig.the_video(&outcome);
    // As if the engine died after the last chunk, before recording success.
    let before = rig.yt.log().len();
    let (again, rerun) = rig.run(&record.last_checkpoint());
    assert_eq!(
        again,
        Outcome::Success {
            result: video.id.clone(),
            outputs: vec![]
        }
    );
    let log = rig.yt.log();
    let rerun_requests: Vec<_> = log[before..]
        .iter()
        .filter(|l| l.target.starts_with("/upload/"))
        .collect();
    assert_eq!(
        rerun_requests.len(),
        1,
        "one status query, nothing else: {rerun_requests:?}"
    );
    assert!(rerun_requests[0].is_status_query());
    assert_eq!(rig.yt.videos().len(), 1);
    assert_eq!(rig.yt.sessions_created(), 1);
    assert_eq!(rerun.progress().last(), Some(&100));
}

#[test]
fn a_lost_session_is_replaced_by_a_new_one() {
    let rig = Rig::new(1_100_000, 256 * KIB);
    rig.yt.fault_on_put(2, PutFault::Gone);
    let (outcome, record) = rig.run("");
    let video = rig.the_video(&outcome);
    assert_eq!(rig.yt.sessions_created(), 2);
    let checkpoints = record.checkpoints.lock().unwrap().clone();
    assert_eq!(checkpoints.len(), 2, "the new session is saved too");
    assert_ne!(checkpoints[0].0, checkpoints[1].0);
    assert!(checkpoints[1].0.contains(&video.upload_id));
}

#[test]
fn a_missing_video_file_fails_2_without_calling_youtube() {
    let rig = Rig::new(1000, 256 * KIB);
    let details = UploaderDetails {
        video_file: "00000000-0000-0000-0000-000000000000".into(),
        ..rig.details()
    };
    let (outcome, _) = rig.run_with("", details, &StopSignal::new(), Some(&fast()));
    let (code, message) = failed(&outcome);
    assert_eq!(code, JobResult::InputMissing);
    assert!(
        message.contains("VideoFile '00000000-0000-0000-0000-000000000000'"),
        "{message}"
    );
    assert!(rig.yt.log().is_empty());
}
