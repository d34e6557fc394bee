//! EncoderJob against the real mencoder, ffmpeg and ffprobe: each case runs
//! once per encoder, with a real file store in a temp dir and a real
//! RunCtx. Missing tools fail the tests with the command that installs them.

use jobengine::config::{Config, Database, Encoder};
use jobengine::files::Files;
use jobengine::job::details::{Details, EncoderDetails, VideoFormat};
use jobengine::job::{Job, JobId, JobKind, JobResult, JobState, Outcome};
use jobengine::kinds::encode::{EncoderJob, Tools};
use jobengine::kinds::{Kind, RunCtx, StopReason, StopSignal};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

const ENCODERS: [Encoder; 2] = [Encoder::Mencoder, Encoder::Ffmpeg];
const FIXTURE_SECONDS: f64 = 20.04;
/// Length of the generated long input, for stopping runs part-way.
const LONG_SECONDS: u32 = 600;

fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name);
    assert!(
        path.is_file(),
        "fixture {} missing: clone the shared/ directory beside the repository",
        path.display()
    );
    path
}

/// Fails unless the media tools are installed.
fn require_tools() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        for tool in ["mencoder", "ffmpeg", "ffprobe"] {
            let found = std::env::split_paths(&path).any(|dir| dir.join(tool).is_file());
            assert!(
                found,
                "{tool} is not installed: run `apt-get update && apt-get install -y mencoder ffmpeg`"
            );
        }
    });
}

/// A 600 s MP3 (made once, shared with the other tests).
fn long_audio() -> PathBuf {
    require_tools();
    crate::support::long_mp3(LONG_SECONDS)
}

/// One engine's worth of state: a data dir, its file store and a config.
struct Bench {
    _dir: tempfile::TempDir,
    files: Files,
    config: Config,
}

impl Bench {
    fn new(encoder: Encoder) -> Bench {
        require_tools();
        let dir = tempfile::tempdir().expect("temp dir");
        let files = Files::open(dir.path()).expect("file store");
        let config = Config {
            data_dir: dir.path().to_owned(),
            database: Database::Sqlite(dir.path().join("jobengine.db")),
            encoder,
            job_timeout: Duration::from_secs(300),
            ..Config::defaults()
        };
        Bench {
            _dir: dir,
            files,
            config,
        }
    }

    /// Stores the file at `path`; returns its FileID.
    fn put(&self, path: &Path) -> String {
        let mut f = std::fs::File::open(path).expect("open input");
        self.files
            .receive(&mut f, u64::MAX)
            .expect("store input")
            .id
    }

    fn put_bytes(&self, bytes: &[u8]) -> String {
        self.files
            .receive(&mut &bytes[..], u64::MAX)
            .expect("store input")
            .id
    }

    /// Stores the 20 s fixture tone; returns its FileID.
    fn tone(&self) -> String {
        self.put(&fixture("tone-20s.mp3"))
    }

    /// Stores the 640x360 fixture cover; returns its FileID.
    fn cover(&self) -> String {
        self.put(&fixture("cover.png"))
    }
}

/// How a test wants its run steered.
#[derive(Default)]
struct Steer {
    tools: Option<Tools>,
    /// Ask the job to stop at its first progress report.
    stop_at_progress: Option<StopReason>,
}

struct Ran {
    outcome: Outcome,
    progress: Vec<i32>,
    /// (FileID, name) of each registered output.
    outputs: Vec<(String, String)>,
    work_dir: PathBuf,
    /// Pids seen running with the work dir in their command line when the
    /// stop was asked.
    seen_children: Vec<u32>,
    /// From the stop request to the return of `run`.
    stop_to_return: Option<Duration>,
}

/// Runs the encoder job on `details` the engine's way.
fn run(bench: &Bench, details: EncoderDetails) -> Ran {
    run_steered(bench, details, Steer::default())
}

/// Runs the encoder job with `tools` in place of the installed ones.
fn run_with(bench: &Bench, details: EncoderDetails, tools: Tools) -> Ran {
    let steer = Steer {
        tools: Some(tools),
        ..Steer::default()
    };
    run_steered(bench, details, steer)
}

fn run_steered(bench: &Bench, details: EncoderDetails, steer: Steer) -> Ran {
    let details = Details::Encoder(details);
    let now = SystemTime::now();
    let job = Job {
        id: JobId::parse("encoder-test").expect("job id"),
        kind: JobKind::Encoder,
        state: JobState::InProgress,
        details: details.to_json(),
        callback: String::new(),
        progress: 0,
        result_code: 0,
        error_message: String::new(),
        result: String::new(),
        outputs: Vec::new(),
        inputs: details.inputs(),
        attempts: 0,
        checkpoint: String::new(),
        created_at: now,
        last_state_change: now,
        start_seq: 1,
    };
    let work_dir = bench.files.fresh_work_dir(&job.id).expect("work dir");
    let stop = StopSignal::new();
    let agent = ureq::Agent::new_with_defaults();
    let progress = Mutex::new(Vec::new());
    let outputs = Mutex::new(Vec::new());
    let seen = Mutex::new(Vec::new());
    let stop_asked = Mutex::new(None::<Instant>);
    let report = |pct: i32| {
        progress.lock().unwrap().push(pct);
        if let Some(reason) = steer.stop_at_progress {
            let mut asked = stop_asked.lock().unwrap();
            if asked.is_none() {
                *seen.lock().unwrap() = processes_mentioning(&work_dir);
                *asked = Some(Instant::now());
                stop.stop(reason);
            }
        }
    };
    let checkpoint = |_: &str| -> Result<(), String> { Ok(()) };
    let register = |path: &Path, name: &str| -> Result<String, String> {
        let stored = bench.files.adopt(path).map_err(|e| e.to_string())?;
        outputs
            .lock()
            .unwrap()
            .push((stored.id.clone(), name.to_owned()));
        Ok(stored.id)
    };
    let ctx = RunCtx {
        job: &job,
        details: &details,
        secrets: None,
        config: &bench.config,
        files: &bench.files,
        work_dir: &work_dir,
        stop: &stop,
        agent: &agent,
        progress: &report,
        checkpoint: &checkpoint,
        register_output: &register,
    };
    let outcome = match &steer.tools {
        Some(tools) => EncoderJob.run_with(&ctx, tools),
        None => EncoderJob.run(&ctx),
    };
    let stop_to_return = stop_asked.lock().unwrap().map(|t| t.elapsed());
    let seen_children = seen.lock().unwrap().clone();
    Ran {
        outcome,
        progress: progress.into_inner().unwrap(),
        outputs: outputs.into_inner().unwrap(),
        work_dir,
        seen_children,
        stop_to_return,
    }
}

/// Live (not zombie) processes whose command line mentions `dir`.
fn processes_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && !is_zombie(pid) {
            found.push(pid);
        }
    }
    found
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

/// What ffprobe says about a produced file.
#[derive(Debug)]
struct Probe {
    video: usize,
    audio: usize,
    duration: f64,
    format_name: String,
    width: u64,
    height: u64,
}

fn probe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,width,height:format=duration,format_name",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let of = |t: &str| streams.iter().filter(|s| s["codec_type"] == t).count();
    let video = streams.iter().find(|s| s["codec_type"] == "video");
    Probe {
        video: of("video"),
        audio: of("audio"),
        duration: v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(-1.0),
        format_name: v["format"]["format_name"].as_str().unwrap_or("").to_owned(),
        width: video.and_then(|s| s["width"].as_u64()).unwrap_or(0),
        height: video.and_then(|s| s["height"].as_u64()).unwrap_or(0),
    }
}

fn details(audio: &str, image: Option<&str>, format: VideoFormat) -> EncoderDetails {
    EncoderDetails {
        audio_file: audio.to_owned(),
        image_file: image.map(str::to_owned),
        format,
    }
}

fn mp4(audio: &str, image: Option<&str>) -> EncoderDetails {
    details(audio, image, VideoFormat::Mp4)
}

/// The installed tools of `encoder`, but `program` run as the encoder.
fn tools_running(encoder: Encoder, program: &Path) -> Tools {
    Tools {
        encoder_program: program.into(),
        ..Tools::for_encoder(encoder)
    }
}

/// The one output of a successful run, probed.
fn success_output(bench: &Bench, ran: &Ran, encoder: Encoder) -> (String, Probe) {
    let Outcome::Success { result, outputs } = &ran.outcome else {
        panic!("{encoder:?}: expected Success, got {:?}", ran.outcome);
    };
    assert_eq!(result, "", "{encoder:?}: an encode has no result string");
    assert_eq!(outputs.len(), 1, "{encoder:?}: one output");
    assert_eq!(ran.outputs.len(), 1, "{encoder:?}: registered once");
    assert_eq!(
        &ran.outputs[0].0, &outputs[0],
        "{encoder:?}: the registered FileID is returned"
    );
    let path = bench.files.path_of(&outputs[0]).expect("output FileID");
    (ran.outputs[0].1.clone(), probe(&path))
}

/// The message of a run that must have failed with `code`; `what` names
/// the case in assertion messages.
fn failed_with(ran: &Ran, code: JobResult, what: &str) -> String {
    let (got, msg) = match &ran.outcome {
        Outcome::Failed { code, message } => (*code, message.clone()),
        other => panic!("{what}: expected Failed, got {other:?}"),
    };
    assert_eq!(got, code, "{what}: {msg}");
    msg
}

/// Nothing the run made is left in its work dir.
fn assert_work_dir_clean(ran: &Ran, encoder: Encoder) {
    let left: Vec<_> = std::fs::read_dir(&ran.work_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "{encoder:?}: work dir not cleaned: {left:?}"
    );
}

#[test]
fn fixture_encodes_to_a_full_length_video_with_rising_progress() {
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let ran = run(&bench, mp4(&bench.tone(), Some(&bench.cover())));
        let (name, p) = success_output(&bench, &ran, encoder);
        assert!(name.ends_with(".mp4"), "{encoder:?}: output name {name:?}");
        assert_eq!((p.video, p.audio), (1, 1), "{encoder:?}: {p:?}");
        assert!(p.format_name.contains("mp4"), "{encoder:?}: {p:?}");
        assert_eq!((p.width, p.height), (640, 360), "{encoder:?}: {p:?}");
        assert!(
            (p.duration - FIXTURE_SECONDS).abs() <= 0.5,
            "{encoder:?}: duration {} not within 0.5 s of {FIXTURE_SECONDS}",
            p.duration
        );
        assert!(
            !ran.progress.is_empty(),
            "{encoder:?}: no progress reported"
        );
        assert!(
            ran.progress.windows(2).all(|w| w[0] <= w[1]),
            "{encoder:?}: progress went back: {:?}",
            ran.progress
        );
        let last = *ran.progress.last().unwrap_or(&0);
        assert!(
            (90..=100).contains(&last),
            "{encoder:?}: progress ended at {last}: {:?}",
            ran.progress
        );
        assert_work_dir_clean(&ran, encoder);
    }
}

#[test]
fn every_format_encodes() {
    let cases = [
        (VideoFormat::Mp4, "mp4"),
        (VideoFormat::Avi, "avi"),
        (VideoFormat::Flv, "flv"),
    ];
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let (audio, image) = (bench.tone(), bench.cover());
        for (format, container) in cases {
            let ran = run(&bench, details(&audio, Some(&image), format));
            let (name, p) = success_output(&bench, &ran, encoder);
            assert!(
                name.ends_with(&format!(".{}", format.as_str())),
                "{encoder:?} {format:?}: {name}"
            );
            assert_eq!((p.video, p.audio), (1, 1), "{encoder:?} {format:?}: {p:?}");
            assert!(
                p.format_name.contains(container),
                "{encoder:?} {format:?}: {p:?}"
            );
            assert!(
                p.duration >= FIXTURE_SECONDS - 0.1 && p.duration <= FIXTURE_SECONDS + 2.5,
                "{encoder:?} {format:?}: duration {}",
                p.duration
            );
        }
    }
}

#[test]
fn no_image_gives_a_plain_frame() {
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let ran = run(&bench, mp4(&bench.tone(), None));
        let (_, p) = success_output(&bench, &ran, encoder);
        assert_eq!((p.video, p.audio), (1, 1), "{encoder:?}: {p:?}");
        assert_eq!((p.width, p.height), (1280, 720), "{encoder:?}: {p:?}");
        assert!(
            (p.duration - FIXTURE_SECONDS).abs() <= 0.5,
            "{encoder:?}: {p:?}"
        );
        assert_work_dir_clean(&ran, encoder);
    }
}

#[test]
fn jpeg_image_is_used_by_its_content() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jpeg = dir.path().join("cover.jpg");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(fixture("cover.png"))
        .args(["-frames:v", "1"])
        .arg(&jpeg)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make a JPEG");
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let ran = run(&bench, mp4(&bench.tone(), Some(&bench.put(&jpeg))));
        let (_, p) = success_output(&bench, &ran, encoder);
        assert_eq!((p.video, p.audio), (1, 1), "{encoder:?}: {p:?}");
        assert_eq!((p.width, p.height), (640, 360), "{encoder:?}: {p:?}");
    }
}

#[test]
fn missing_inputs_are_input_missing() {
    let never_uploaded = "00000000-0000-4000-8000-00000000dead";
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let audio = bench.tone();
        let what = format!("{encoder:?}");

        let ran = run(&bench, mp4(never_uploaded, None));
        let msg = failed_with(&ran, JobResult::InputMissing, &what);
        assert!(
            msg.contains("AudioFile") && msg.contains(never_uploaded),
            "{encoder:?}: {msg}"
        );

        let ran = run(&bench, mp4(&audio, Some(never_uploaded)));
        let msg = failed_with(&ran, JobResult::InputMissing, &what);
        assert!(
            msg.contains("ImageFile") && msg.contains(never_uploaded),
            "{encoder:?}: {msg}"
        );

        let ran = run(&bench, mp4("../../etc/passwd", None));
        failed_with(&ran, JobResult::InputMissing, &what);
        assert!(ran.outputs.is_empty());
    }
}

#[test]
fn text_as_audio_fails_as_bad_media() {
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let text = bench.put_bytes(b"this is not an mp3, it is a note\n");
        let ran = run(&bench, mp4(&text, Some(&bench.cover())));
        let msg = failed_with(&ran, JobResult::ToolFailed, &format!("{encoder:?}"));
        assert!(
            msg.contains("AudioFile") && msg.contains(&text),
            "{encoder:?}: {msg}"
        );
        assert!(
            !msg.contains(&*bench.config.data_dir.to_string_lossy()),
            "{encoder:?}: path leaked: {msg}"
        );
        assert!(ran.outputs.is_empty());
        assert_work_dir_clean(&ran, encoder);
    }
}

#[test]
fn bad_images_fail_as_bad_media_without_hanging() {
    let png = std::fs::read(fixture("cover.png")).expect("read cover.png");
    let cases: [(&str, Vec<u8>); 3] = [
        ("text", b"this is not a png\n".to_vec()),
        ("truncated png", png[..5000].to_vec()),
        ("gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec()),
    ];
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let audio = bench.tone();
        for (what, bytes) in &cases {
            let image = bench.put_bytes(bytes);
            let started = Instant::now();
            let ran = run(&bench, mp4(&audio, Some(&image)));
            eprintln!("{encoder:?} {what}: failed after {:?}", started.elapsed());
            let msg = failed_with(&ran, JobResult::ToolFailed, &format!("{encoder:?} {what}"));
            assert!(
                msg.contains("ImageFile") && msg.contains(&image),
                "{encoder:?} {what}: {msg}"
            );
            assert!(ran.outputs.is_empty());
            assert_work_dir_clean(&ran, encoder);
        }
    }
}

/// Stops a long run at its first progress report; the child must be gone
/// when `run` returns.
fn stopped_run(encoder: Encoder, reason: StopReason) -> Ran {
    let long = long_audio();
    let bench = Bench::new(encoder);
    let steer = Steer {
        stop_at_progress: Some(reason),
        ..Steer::default()
    };
    let ran = run_steered(&bench, mp4(&bench.put(&long), Some(&bench.cover())), steer);
    eprintln!(
        "{encoder:?} {reason:?}: stop to return {:?}",
        ran.stop_to_return
    );
    assert!(
        ran.stop_to_return.is_some(),
        "{encoder:?}: the run never reported progress"
    );
    assert!(
        !ran.seen_children.is_empty(),
        "{encoder:?}: no encoder process was seen running at the stop"
    );
    for pid in &ran.seen_children {
        assert!(!alive(*pid), "{encoder:?}: process {pid} outlived the stop");
    }
    let left = processes_mentioning(&ran.work_dir);
    assert!(left.is_empty(), "{encoder:?}: processes left: {left:?}");
    assert!(
        ran.outputs.is_empty(),
        "{encoder:?}: a stopped run registered an output"
    );
    assert_work_dir_clean(&ran, encoder);
    ran
}

#[test]
fn cancel_stops_the_encoder() {
    for encoder in ENCODERS {
        let ran = stopped_run(encoder, StopReason::Cancelled);
        failed_with(&ran, JobResult::Cancelled, &format!("{encoder:?}"));
    }
}

#[test]
fn shutdown_interrupts_the_encoder() {
    for encoder in ENCODERS {
        let ran = stopped_run(encoder, StopReason::Shutdown);
        assert_eq!(ran.outcome, Outcome::Interrupted, "{encoder:?}");
    }
}

#[test]
fn job_timeout_ends_a_long_encode() {
    let long = long_audio();
    for encoder in ENCODERS {
        let mut bench = Bench::new(encoder);
        bench.config.job_timeout = Duration::from_secs(1);
        let ran = run(&bench, mp4(&bench.put(&long), Some(&bench.cover())));
        let msg = failed_with(&ran, JobResult::TimedOut, &format!("{encoder:?}"));
        assert!(msg.contains("job_timeout"), "{encoder:?}: {msg}");
        assert!(
            processes_mentioning(&ran.work_dir).is_empty(),
            "{encoder:?}: processes left"
        );
        assert!(ran.outputs.is_empty());
        assert_work_dir_clean(&ran, encoder);
    }
}

#[test]
fn missing_encoder_says_how_to_install_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let (audio, image) = (bench.tone(), bench.cover());
        let what = format!("{encoder:?}");
        let tools = tools_running(encoder, &dir.path().join(encoder.program()));
        let ran = run_with(&bench, mp4(&audio, Some(&image)), tools);
        let msg = failed_with(&ran, JobResult::ToolFailed, &what);
        let install = format!(
            "{} not found: install the {} package",
            encoder.program(),
            encoder.program()
        );
        assert!(msg.contains(&install), "{encoder:?}: {msg}");
        assert!(msg.contains("set encoder ="), "{encoder:?}: {msg}");
        assert_work_dir_clean(&ran, encoder);

        let tools = Tools {
            ffprobe: dir.path().join("ffprobe").into(),
            ..Tools::for_encoder(encoder)
        };
        let ran = run_with(&bench, mp4(&audio, Some(&image)), tools);
        let msg = failed_with(&ran, JobResult::ToolFailed, &what);
        assert!(
            msg.contains("install the ffmpeg package"),
            "{encoder:?}: {msg}"
        );
    }
}

/// A shell script standing in for the encoder, for the ways a real one
/// fails that real inputs cannot provoke reliably. Waits until the new file
/// can be executed: a thread of this test binary forking while the file was
/// open for writing makes exec fail with ETXTBSY for a moment.
fn stand_in(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let script = format!("#!/bin/sh\n[ -n \"$STAND_IN_PROBE\" ] && exit 0\n{body}\n");
    std::fs::write(&path, script).expect("write stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Command::new(&path).env("STAND_IN_PROBE", "1").status() {
            Ok(status) if status.success() => return path,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && Instant::now() < deadline => {
                std::thread::yield_now()
            }
            other => panic!("stand-in {name} does not run: {other:?}"),
        }
    }
}

#[test]
fn exit_code_zero_is_not_success() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mp3 = fixture("tone-20s.mp3");
    // Both encoders take the output path as their last argument.
    let last_arg = "for a in \"$@\"; do out=$a; done";
    let cases = [
        (
            "audio-only",
            format!("{last_arg}; cp '{}' \"$out\"; exit 0", mp3.display()),
            "0 video and 1 audio streams",
        ),
        ("no-output", "exit 0".to_owned(), "wrote no output"),
        (
            "short",
            format!(
                "{last_arg}; ffmpeg -v error -nostdin -y -f lavfi -i color=c=black:s=64x64:r=1 -i '{}' -t 5 -c:v mpeg4 -c:a libmp3lame -f avi \"$out\"",
                mp3.display()
            ),
            "but the audio lasts 20.04 s",
        ),
        ("garbage", format!("{last_arg}; head -c 100000 /dev/urandom > \"$out\""), "produced a bad video"),
    ];
    let scripts: Vec<_> = cases
        .iter()
        .map(|(name, body, says)| (*name, stand_in(dir.path(), name, body), *says))
        .collect();
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let (audio, image) = (bench.put(&mp3), bench.cover());
        for (name, script, says) in &scripts {
            let tools = tools_running(encoder, script);
            let ran = run_with(
                &bench,
                details(&audio, Some(&image), VideoFormat::Avi),
                tools,
            );
            let msg = failed_with(&ran, JobResult::ToolFailed, &format!("{encoder:?} {name}"));
            assert!(msg.contains(says), "{encoder:?} {name}: {msg}");
            assert!(
                ran.outputs.is_empty(),
                "{encoder:?} {name}: a bad video was registered"
            );
            assert_work_dir_clean(&ran, encoder);
        }
    }
}

#[test]
fn encoder_failure_carries_its_stderr() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = stand_in(
        dir.path(),
        "fails",
        "echo 'noise' >&2; echo 'x264 [error]: malloc of size 123 failed' >&2; exit 1",
    );
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let tools = tools_running(encoder, &script);
        let ran = run_with(&bench, mp4(&bench.tone(), None), tools);
        let msg = failed_with(&ran, JobResult::ToolFailed, &format!("{encoder:?}"));
        assert!(msg.contains("exited with code 1"), "{encoder:?}: {msg}");
        assert!(
            msg.contains("malloc of size 123 failed"),
            "{encoder:?}: {msg}"
        );
        assert_work_dir_clean(&ran, encoder);
    }
}

#[test]
fn silent_encoder_is_stopped_by_the_watchdog() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Prints nothing on stdout, like ffmpeg looping on a bad image.
    let script = stand_in(
        dir.path(),
        "hangs",
        "for a in \"$@\"; do out=$a; done; : > \"$out\"; exec sleep 60",
    );
    for encoder in ENCODERS {
        let bench = Bench::new(encoder);
        let tools = Tools {
            stall: Duration::from_millis(500),
            ..tools_running(encoder, &script)
        };
        let ran = run_with(&bench, mp4(&bench.tone(), None), tools);
        let msg = failed_with(&ran, JobResult::ToolFailed, &format!("{encoder:?}"));
        assert!(
            msg.contains("encoder stopped making progress"),
            "{encoder:?}: {msg}"
        );
        assert!(
            processes_mentioning(&ran.work_dir).is_empty(),
            "{encoder:?}: processes left"
        );
        assert_work_dir_clean(&ran, encoder);
    }
}
