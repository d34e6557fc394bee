//! Benchmark (not a test): one large upload to the YouTube stand-in by the
//! engine's YoutubeUploaderJob, then the same file by curl (one PUT to a
//! session of the same stand-in), in the same run. Prints both throughputs,
//! their ratio, and how much the process's peak RSS grew during the
//! engine's upload. Run by `bench/upload-1g`.
//!
//! Usage: upload_bench FILE [DATA_DIR]

#[allow(dead_code)]
#[path = "../tests/youtube_standin.rs"]
mod youtube_standin;

use jobengine::config::Config;
use jobengine::files::{self, Files};
use jobengine::job::details::{Details, Privacy, UploaderDetails};
use jobengine::job::{JobKind, Outcome};
use jobengine::kinds::{RunCtx, StopSignal};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use youtube_standin as yt;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upload_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1);
    let source = PathBuf::from(args.next().ok_or("usage: upload_bench FILE [DATA_DIR]")?);
    let data_dir = match args.next() {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("upload-bench-{}", std::process::id())),
    };
    let chunk: u64 = match std::env::var("UPLOAD_BENCH_CHUNK") {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("UPLOAD_BENCH_CHUNK '{v}' is not a number of bytes"))?,
        Err(_) => 8 * 1024 * 1024,
    };

    let files =
        Files::open(&data_dir).map_err(|e| format!("data dir {}: {e}", data_dir.display()))?;
    let file_id = uuid::Uuid::new_v4().to_string();
    let stored = files.path_of(&file_id).ok_or("FileID")?;
    if std::fs::hard_link(&source, &stored).is_err() {
        std::fs::copy(&source, &stored).map_err(|e| format!("copy {}: {e}", source.display()))?;
    }
    let size = std::fs::metadata(&stored).map_err(|e| e.to_string())?.len();
    println!(
        "file: {} ({size} bytes), chunk size {chunk} bytes",
        source.display()
    );
    print!("sha256 of the file: ");
    let (_, sha256) = files::hash_file(&stored).map_err(|e| e.to_string())?;
    println!("{sha256}");

    let rounds: usize = match std::env::var("UPLOAD_BENCH_ROUNDS") {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("UPLOAD_BENCH_ROUNDS '{v}' is not a number"))?,
        Err(_) => 3,
    };

    let standin = yt::StandIn::start();
    let config = standin.engine_config(&data_dir, chunk);
    let agent = jobengine::net::agent(&config);
    let mib = size as f64 / (1024.0 * 1024.0);
    let rate = |t: Duration| mib / t.as_secs_f64();

    // Rounds alternate engine and curl, so that load from elsewhere on the
    // machine falls on both alike; the median ratio is the figure.
    let mut ratios = Vec::new();
    let mut growth_max = 0;
    for round in 1..=rounds {
        // The engine's upload, with the peak-RSS counter reset just before it.
        let rss_before = reset_peak_rss()?;
        let started = Instant::now();
        let outcome = upload(&config, &files, &agent, &file_id)?;
        let engine_time = started.elapsed();
        let peak = status_kib("VmHWM")?;
        let Outcome::Success { result, .. } = &outcome else {
            return Err(format!("the engine's upload did not succeed: {outcome:?}"));
        };
        check_video(&standin, result, size, &sha256)?;
        let growth = peak.saturating_sub(rss_before);
        growth_max = growth_max.max(growth);

        let curl_time = curl_upload(&standin, &stored, size, &sha256)?;
        let ratio = 100.0 * rate(engine_time) / rate(curl_time);
        ratios.push(ratio);
        println!(
            "round {round}: engine {:.2} s = {:.1} MiB/s; curl {:.2} s = {:.1} MiB/s; engine/curl {ratio:.1} %; \
             peak RSS growth {:.1} MiB (from {:.1} MiB)",
            engine_time.as_secs_f64(),
            rate(engine_time),
            curl_time.as_secs_f64(),
            rate(curl_time),
            growth as f64 / 1024.0,
            rss_before as f64 / 1024.0,
        );
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    println!(
        "median engine/curl throughput: {:.1} % (target >= 90 %); largest peak RSS growth: {:.1} MiB (target < 32 MiB)",
        ratios[ratios.len() / 2],
        growth_max as f64 / 1024.0
    );
    println!(
        "stand-in: {} sessions, {} videos, protocol violations: {:?}",
        standin.sessions_created(),
        standin.videos().len(),
        standin.violations()
    );
    let _ = std::fs::remove_file(&stored);
    Ok(())
}

/// curl sends the file in one PUT to a fresh session of the stand-in.
fn curl_upload(
    standin: &yt::StandIn,
    file: &Path,
    size: u64,
    sha256: &str,
) -> Result<Duration, String> {
    let (token, session) = standin.open_session_directly(size);
    let started = Instant::now();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-T",
        ])
        .arg(file)
        .args([
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: video/mp4",
        ])
        .args([
            "-H",
            &format!("Content-Range: bytes 0-{}/{size}", size - 1),
            "-H",
            "Expect:",
        ])
        .arg(&session)
        .output()
        .map_err(|e| format!("curl could not be run ({e}); install it: apt-get install -y curl"))?;
    let elapsed = started.elapsed();
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || code != "201" {
        return Err(format!(
            "curl failed: HTTP {code}, {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let video = standin
        .videos()
        .last()
        .map(|v| v.id.clone())
        .unwrap_or_default();
    check_video(standin, &video, size, sha256)?;
    Ok(elapsed)
}

fn upload(
    config: &Config,
    files: &Files,
    agent: &ureq::Agent,
    file_id: &str,
) -> Result<Outcome, String> {
    let job = yt::upload_job("bench", file_id, "");
    let details = Details::Uploader(UploaderDetails {
        video_file: file_id.to_owned(),
        title: "upload benchmark".into(),
        description: String::new(),
        tags: vec![],
        category_id: None,
        privacy_status: Privacy::Private,
    });
    let secrets = serde_json::json!({ "RefreshToken": yt::REFRESH_TOKEN }).to_string();
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stop = StopSignal::new();
    let ctx = RunCtx {
        job: &job,
        details: &details,
        secrets: Some(&secrets),
        config,
        files,
        work_dir: work.path(),
        stop: &stop,
        agent,
        progress: &|_| {},
        checkpoint: &|_| Ok(()),
        register_output: &|_, _| Err("no outputs".into()),
    };
    Ok(jobengine::kinds::for_job(JobKind::YoutubeUploader).run(&ctx))
}

fn check_video(standin: &yt::StandIn, id: &str, size: u64, sha256: &str) -> Result<(), String> {
    let videos = standin.videos();
    let v = videos
        .iter()
        .find(|v| v.id == id)
        .ok_or(format!("the stand-in has no video '{id}'"))?;
    if v.size != size || v.sha256 != sha256 {
        return Err(format!(
            "video '{id}' holds {} bytes with sha256 {}, not the file",
            v.size, v.sha256
        ));
    }
    Ok(())
}

/// Resets the kernel's peak-RSS counter (VmHWM) to the current RSS and
/// returns that RSS in KiB.
fn reset_peak_rss() -> Result<u64, String> {
    std::fs::write("/proc/self/clear_refs", "5").map_err(|e| format!("cannot reset VmHWM: {e}"))?;
    status_kib("VmRSS")
}

fn status_kib(key: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or(format!("no {key} in /proc/self/status"))
}
