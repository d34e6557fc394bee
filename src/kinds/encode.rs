//! EncoderJob: turns an MP3 and an optional still image into one video, as
//! long as the audio, with both streams, that YouTube accepts (contract §4).
//!
//! The recipes and failure facts come from MEDIA-NOTES part A, and each step
//! guards against one of its findings:
//! 1. the audio's length comes from ffprobe up front (mencoder has no probe,
//!    and both encoders need it: mencoder for its frame list, ffmpeg for
//!    `-t`, without which the video runs long);
//! 2. the image's real type comes from its first bytes (mencoder's
//!    `-mf type=` must match the content, or it "succeeds" with an empty
//!    video), and ffmpeg decodes one frame of it first (given an image it
//!    cannot decode, ffmpeg `-loop 1` loops forever);
//! 3. the encoder runs under a deadline (`job_timeout`), a stall watchdog
//!    fed by its progress output, and the job's stop signal;
//! 4. exit code 0 is not success: the output must have exactly one video and
//!    one audio stream, be as long as the audio, and decode without error.
//!    Only then is it registered; a partial output is always deleted.
//!
//! May use: `job`, `config`, `process`, `files` (through [`RunCtx`]).

use super::{Kind, RunCtx, StopReason};
use crate::config::Encoder;
use crate::job::details::{Details, EncoderDetails, VideoFormat};
use crate::job::{JobResult, Outcome};
use crate::process::{self, ChildError, Ended, Spec};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Frames per second of the still-image video. One is enough for a still
/// and keeps encoding fast (MEDIA-NOTES A8).
const FPS: f64 = 1.0;
/// How much shorter than the audio an output may be (MEDIA-NOTES A5).
const DURATION_TOLERANCE: f64 = 0.1;
/// The default stall limit: an encoder that reports no progress for this
/// long is stopped (ffmpeg given an image it cannot decode prints no
/// progress at all, forever).
const STALL: Duration = Duration::from_secs(60);
/// Longest a probe (ffprobe, the image check, the black frame) may take.
const PROBE_LIMIT: Duration = Duration::from_secs(60);
/// What the encoder run is called in messages (and how it is told apart).
const ENCODING: &str = "encoding";
/// Size of the plain frame used when the job has no image.
const PLAIN_FRAME: &str = "1280x720";

pub struct EncoderJob;

/// The programs an encode runs. [`Tools::for_encoder`] gives the usual
/// names, looked up in PATH; a test can point one somewhere else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tools {
    /// Which encoder the recipes are for.
    pub encoder: Encoder,
    /// The program run as that encoder.
    pub encoder_program: OsString,
    pub ffmpeg: OsString,
    pub ffprobe: OsString,
    /// An encoder that reports no progress for this long is stopped.
    pub stall: Duration,
}

impl Tools {
    pub fn for_encoder(encoder: Encoder) -> Tools {
        Tools {
            encoder,
            encoder_program: encoder.program().into(),
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            stall: STALL,
        }
    }
}

impl Kind for EncoderJob {
    fn run(&self, ctx: &RunCtx) -> Outcome {
        self.run_with(ctx, &Tools::for_encoder(ctx.config.encoder))
    }
}

impl EncoderJob {
    /// [`Kind::run`] with the programs given.
    pub fn run_with(&self, ctx: &RunCtx, tools: &Tools) -> Outcome {
        let details = match ctx.details {
            Details::Encoder(d) => d,
            other => {
                return Outcome::failed(
                    JobResult::Internal,
                    format!("an EncoderJob was given the details of a {}", other.kind()),
                )
            }
        };
        // Absolute paths: the encoder runs in the work dir, and the data
        // dir may be configured relative to ours.
        let work_dir =
            std::path::absolute(ctx.work_dir).unwrap_or_else(|_| ctx.work_dir.to_owned());
        let mut run = Run {
            ctx,
            tools,
            work_dir: work_dir.clone(),
            deadline: Instant::now() + ctx.config.job_timeout,
            labels: vec![(work_dir.display().to_string(), "<work dir>".into())],
            scratch: Vec::new(),
            reported: None,
        };
        let outcome = run.encode(details).unwrap_or_else(|o| o);
        // Partial outputs could pass validation (a stopped encoder finalizes
        // a valid, truncated file: MEDIA-NOTES A7), so none may stay. On
        // success the output has already been moved out.
        for path in &run.scratch {
            let _ = fs::remove_file(path);
        }
        outcome
    }
}

/// What the image file holds, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ImageType {
    Png,
    Jpeg,
    Bmp,
}

impl ImageType {
    fn sniff(head: &[u8]) -> Option<ImageType> {
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageType::Png)
        } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(ImageType::Jpeg)
        } else if head.starts_with(b"BM") {
            Some(ImageType::Bmp)
        } else {
            None
        }
    }

    /// mencoder's `-mf type=` name.
    fn mf_type(self) -> &'static str {
        match self {
            ImageType::Png => "png",
            ImageType::Jpeg => "jpg",
            ImageType::Bmp => "bmp",
        }
    }
}

/// The still the video shows.
enum Still {
    File(PathBuf, ImageType),
    /// No image: a plain black frame (ffmpeg makes it itself).
    Plain,
}

/// One run of one job: the context, the clock and the files to clean up.
struct Run<'a, 'c> {
    ctx: &'a RunCtx<'c>,
    tools: &'a Tools,
    /// `ctx.work_dir`, absolute.
    work_dir: PathBuf,
    deadline: Instant,
    /// Paths shown in messages by name instead (`<work dir>`, `AudioFile`).
    labels: Vec<(String, String)>,
    /// Files this run made; removed when it ends.
    scratch: Vec<PathBuf>,
    reported: Option<i32>,
}

type Step<T> = Result<T, Outcome>;

impl Run<'_, '_> {
    fn encode(&mut self, details: &EncoderDetails) -> Step<Outcome> {
        self.check_stop()?;
        let audio = self.input("AudioFile", &details.audio_file)?;
        let image = match &details.image_file {
            Some(id) => Some((id.as_str(), self.input("ImageFile", id)?)),
            None => None,
        };
        // The two checks are independent, and each is mostly a tool's start-up:
        // run them side by side. The audio's verdict is reported first.
        let this = &*self;
        let (duration, still) = std::thread::scope(|scope| {
            let image_check =
                image.map(|(id, path)| scope.spawn(move || this.check_image(path, id)));
            let duration = this.audio_duration(&audio, &details.audio_file);
            let still = match image_check {
                Some(check) => check
                    .join()
                    .unwrap_or_else(|_| Err(panicked("checking the image"))),
                None => Ok(Still::Plain),
            };
            (duration, still)
        });
        let (duration, still) = (duration?, still?);
        let format = details.format;
        let out = self.work_dir.join(format!("encoded.{}", format.as_str()));
        self.scratch.push(out.clone());
        self.run_encoder(&audio, &still, format, duration, &out)?;
        self.validate(&out, duration)?;
        let name = format!("{}.{}", self.ctx.job.id, format.as_str());
        match (self.ctx.register_output)(&out, &name) {
            Ok(id) => Ok(Outcome::Success {
                result: String::new(),
                outputs: vec![id],
            }),
            Err(e) => Err(Outcome::failed(
                JobResult::Internal,
                format!("the encoded video could not be stored: {e}"),
            )),
        }
    }

    /// The path of the input `id`, which must exist.
    fn input(&mut self, field: &str, id: &str) -> Step<PathBuf> {
        let missing = |why: &str| {
            Outcome::failed(
                JobResult::InputMissing,
                format!("{field} '{}' {why}", crate::shorten(id, 64)),
            )
        };
        let path = self
            .ctx
            .files
            .path_of(id)
            .ok_or_else(|| missing("is not a FileID this engine issued"))?;
        if !path.is_file() {
            return Err(missing("does not exist: it was deleted or never uploaded"));
        }
        let path = std::path::absolute(&path).unwrap_or(path);
        self.labels
            .push((path.display().to_string(), format!("{field} '{id}'")));
        Ok(path)
    }

    /// The audio's length in seconds, from ffprobe; the file must have an
    /// audio stream.
    fn audio_duration(&self, audio: &Path, id: &str) -> Step<f64> {
        let spec = Spec::new(
            &self.tools.ffprobe,
            [
                "-v".into(),
                "error".into(),
                "-select_streams".into(),
                "a:0".into(),
                "-show_entries".into(),
                "stream=codec_type:format=duration".into(),
                "-of".into(),
                "default=nw=1".into(),
                OsString::from(audio),
            ],
        );
        let why = |why: String| {
            format!(
                "AudioFile '{}' is not usable audio: {why}",
                crate::shorten(id, 64)
            )
        };
        let bad = |reason: String| Outcome::failed(JobResult::ToolFailed, why(reason));
        let out = self.child(spec, PROBE_LIMIT, "probing the audio", &why, &mut |_| false)?;
        let mut has_audio = false;
        let mut duration = None;
        for line in out.stdout.lines() {
            match line.trim().split_once('=') {
                Some(("codec_type", "audio")) => has_audio = true,
                Some(("duration", d)) => duration = d.parse::<f64>().ok(),
                _ => {}
            }
        }
        if !has_audio {
            return Err(bad("it has no audio stream".into()));
        }
        match duration {
            Some(d) if d.is_finite() && d > 0.0 => Ok(d),
            _ => Err(bad(format!(
                "ffprobe gives no duration: {}",
                self.label(&out.stdout)
            ))),
        }
    }

    /// Checks the image's type from its content, then that ffmpeg decodes it.
    fn check_image(&self, path: PathBuf, id: &str) -> Step<Still> {
        let quoted = crate::shorten(id, 64);
        let mut head = Vec::with_capacity(16);
        let read = fs::File::open(&path).and_then(|f| f.take(16).read_to_end(&mut head));
        if let Err(e) = read {
            return Err(Outcome::failed(
                JobResult::InputMissing,
                format!("ImageFile '{quoted}' could not be read: {e}"),
            ));
        }
        let Some(kind) = ImageType::sniff(&head) else {
            return Err(Outcome::failed(
                JobResult::ToolFailed,
                format!("ImageFile '{quoted}' is not a PNG, JPEG or BMP image"),
            ));
        };
        let spec = Spec::new(
            &self.tools.ffmpeg,
            [
                "-v".into(),
                "error".into(),
                "-nostdin".into(),
                "-i".into(),
                OsString::from(&path),
                "-frames:v".into(),
                "1".into(),
                "-f".into(),
                "null".into(),
                "-".into(),
            ],
        );
        let why = |why: String| format!("ImageFile '{quoted}' is not a readable image: {why}");
        self.child(spec, PROBE_LIMIT, "checking the image", &why, &mut |_| {
            false
        })?;
        Ok(Still::File(path, kind))
    }

    fn run_encoder(
        &mut self,
        audio: &Path,
        still: &Still,
        format: VideoFormat,
        duration: f64,
        out: &Path,
    ) -> Step<()> {
        let args = match self.tools.encoder {
            Encoder::Mencoder => {
                let (image, kind) = match still {
                    Still::File(path, kind) => (path.clone(), *kind),
                    Still::Plain => (self.black_frame()?, ImageType::Png),
                };
                let list = self.frame_list(&image, duration)?;
                mencoder_args(&list, kind, audio, format, out)
            }
            Encoder::Ffmpeg => {
                let image = match still {
                    Still::File(path, _) => Some(path.as_path()),
                    Still::Plain => None,
                };
                ffmpeg_args(image, audio, format, duration, out)
            }
        };
        let spec = Spec::new(&self.tools.encoder_program, args)
            .cwd(&self.work_dir)
            .stall(self.tools.stall);
        let mut mencoder_pos = 0.0f64;
        let mut ffmpeg = FfmpegProgress::default();
        let encoder = self.tools.encoder;
        let ctx = self.ctx;
        let mut reported = self.reported;
        let mut on_line = |line: &str| -> bool {
            let (pos, advanced) = match encoder {
                Encoder::Mencoder => match parse_mencoder_pos(line) {
                    Some(p) => {
                        let advanced = p > mencoder_pos;
                        mencoder_pos = mencoder_pos.max(p);
                        (Some(p), advanced)
                    }
                    None => (None, false),
                },
                Encoder::Ffmpeg => match ffmpeg.line(line) {
                    Some(p) => (Some(p), ffmpeg.advanced),
                    None => (None, false),
                },
            };
            if let Some(pos) = pos {
                let pct = percent(pos, duration);
                if reported != Some(pct) {
                    reported = Some(pct);
                    (ctx.progress)(pct);
                }
            }
            advanced
        };
        let why = |why: String| format!("encoding failed: {why}");
        let result = self.child(spec, Duration::MAX, ENCODING, &why, &mut on_line);
        self.reported = reported;
        result.map(|_| ())
    }

    /// A black PNG for mencoder, which cannot make a plain frame itself.
    fn black_frame(&mut self) -> Step<PathBuf> {
        let path = self.work_dir.join("black.png");
        self.scratch.push(path.clone());
        let spec = Spec::new(
            &self.tools.ffmpeg,
            [
                "-v".into(),
                "error".into(),
                "-nostdin".into(),
                "-y".into(),
                "-f".into(),
                "lavfi".into(),
                "-i".into(),
                format!("color=c=black:s={PLAIN_FRAME}").into(),
                "-frames:v".into(),
                "1".into(),
                OsString::from(&path),
            ],
        );
        let why = |why: String| format!("making the plain frame failed: {why}");
        self.child(
            spec,
            PROBE_LIMIT,
            "making the plain frame",
            &why,
            &mut |_| false,
        )?;
        Ok(path)
    }

    /// mencoder's frame list: the image once per frame, so the video lasts
    /// as long as the audio and its progress counts frames (MEDIA-NOTES A3).
    fn frame_list(&mut self, image: &Path, duration: f64) -> Step<PathBuf> {
        let path = self.work_dir.join("frames.txt");
        self.scratch.push(path.clone());
        let frames = frame_count(duration);
        let write = || -> io::Result<()> {
            let mut f = io::BufWriter::new(fs::File::create(&path)?);
            let line = format!("{}\n", image.display());
            for _ in 0..frames {
                f.write_all(line.as_bytes())?;
            }
            f.flush()
        };
        write().map_err(|e| {
            Outcome::failed(
                JobResult::Internal,
                format!("could not write the frame list in the work dir: {e}"),
            )
        })?;
        Ok(path)
    }

    /// An exit code of 0 is not success (MEDIA-NOTES A5): the output must
    /// probe right and decode cleanly. The two checks run side by side; the
    /// probe's verdict is reported first.
    fn validate(&self, out: &Path, duration: f64) -> Step<()> {
        match fs::metadata(out) {
            Ok(m) if m.len() > 0 => {}
            _ => return Err(self.bad_video("it wrote no output".into())),
        }
        let (probed, decoded) = std::thread::scope(|scope| {
            let decode = scope.spawn(|| self.decode_output(out));
            let probed = self.probe_output(out, duration);
            let decoded = decode
                .join()
                .unwrap_or_else(|_| Err(panicked("decoding the output")));
            (probed, decoded)
        });
        probed.and(decoded)
    }

    /// ffprobe's view of the output: one video and one audio stream, as
    /// long as the audio.
    fn probe_output(&self, out: &Path, duration: f64) -> Step<()> {
        let spec = Spec::new(
            &self.tools.ffprobe,
            [
                "-v".into(),
                "error".into(),
                "-show_entries".into(),
                "stream=codec_type:format=duration".into(),
                "-of".into(),
                "compact".into(),
                OsString::from(out),
            ],
        );
        let probe = self.child(
            spec,
            PROBE_LIMIT,
            "checking the output",
            &|w| self.bad_video_text(w),
            &mut |_| false,
        )?;
        let (video, audio, length) = parse_output_probe(&probe.stdout);
        if (video, audio) != (1, 1) {
            return Err(self.bad_video(format!(
                "it has {video} video and {audio} audio streams; 1 of each is needed"
            )));
        }
        match length {
            Some(l) if l >= duration - DURATION_TOLERANCE => {}
            Some(l) => {
                return Err(self.bad_video(format!(
                    "it lasts {l:.2} s but the audio lasts {duration:.2} s"
                )))
            }
            None => return Err(self.bad_video("ffprobe gives no duration for it".into())),
        }
        Ok(())
    }

    /// A full decode of the output, which must be silent.
    fn decode_output(&self, out: &Path) -> Step<()> {
        let spec = Spec::new(
            &self.tools.ffmpeg,
            [
                "-v".into(),
                "error".into(),
                "-nostdin".into(),
                "-xerror".into(),
                "-i".into(),
                OsString::from(out),
                "-f".into(),
                "null".into(),
                "-progress".into(),
                "pipe:1".into(),
                "-nostats".into(),
                "-".into(),
            ],
        )
        .stall(STALL);
        let mut progress = FfmpegProgress::default();
        let decoded = self.child(
            spec,
            Duration::MAX,
            "decoding the output",
            &|w| self.bad_video_text(w),
            &mut |l| progress.line(l).is_some() && progress.advanced,
        )?;
        if !decoded.stderr.trim().is_empty() {
            return Err(self.bad_video(format!(
                "it does not decode cleanly: {}",
                self.label(&process::last_lines(&decoded.stderr, 5, 600))
            )));
        }
        Ok(())
    }

    /// "mencoder produced a bad video: …", the message of a bad output.
    fn bad_video_text(&self, why: String) -> String {
        format!(
            "{} produced a bad video: {why}",
            self.tools.encoder.program()
        )
    }

    fn bad_video(&self, why: String) -> Outcome {
        Outcome::failed(JobResult::ToolFailed, self.bad_video_text(why))
    }

    fn check_stop(&self) -> Step<()> {
        match self.ctx.stop.reason() {
            Some(reason) => Err(stopped(reason)),
            None => Ok(()),
        }
    }

    /// Runs `spec` for at most `limit` and what is left of the job's time,
    /// turning every way it can fail into the job's outcome. `doing` says
    /// what the run was for, in messages.
    fn child(
        &self,
        mut spec: Spec,
        limit: Duration,
        doing: &str,
        failed: &dyn Fn(String) -> String,
        on_line: &mut dyn FnMut(&str) -> bool,
    ) -> Step<process::Output> {
        self.check_stop()?;
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out(doing));
        }
        let job_bound = left <= limit;
        spec.timeout = left.min(limit);
        let stop = |tick: Duration| self.ctx.stop.wait(tick).is_some();
        match process::run(&spec, &stop, on_line) {
            Ok(out) => Ok(out),
            Err(e) => Err(self.child_failed(e, job_bound, doing, failed)),
        }
    }

    fn child_failed(
        &self,
        e: ChildError,
        job_bound: bool,
        doing: &str,
        failed: &dyn Fn(String) -> String,
    ) -> Outcome {
        let is_encoder = doing == ENCODING;
        let tool_failed = |msg: String| Outcome::failed(JobResult::ToolFailed, msg);
        match e.ended {
            Ended::Stopped => stopped(self.ctx.stop.reason().unwrap_or(StopReason::Cancelled)),
            Ended::TimedOut if job_bound => self.timed_out(doing),
            Ended::NotFound if is_encoder => {
                let name = self.tools.encoder.program();
                let other = match self.tools.encoder {
                    Encoder::Mencoder => Encoder::Ffmpeg,
                    Encoder::Ffmpeg => Encoder::Mencoder,
                };
                tool_failed(format!(
                    "{name} not found: install the {name} package or set encoder = \"{}\"",
                    other.program()
                ))
            }
            Ended::NotFound => tool_failed(format!(
                "{} not found: install the ffmpeg package (it is needed for {doing})",
                e.program
            )),
            Ended::Stalled if is_encoder => tool_failed(format!(
                "encoder stopped making progress: {}",
                self.label(&e.to_string())
            )),
            _ => tool_failed(failed(self.label(&e.to_string()))),
        }
    }

    fn timed_out(&self, doing: &str) -> Outcome {
        Outcome::failed(
            JobResult::TimedOut,
            format!(
                "the job ran longer than job_timeout ({} s) while {doing}",
                self.ctx.config.job_timeout.as_secs()
            ),
        )
    }

    /// `text` with this run's paths replaced by what they are to the client.
    fn label(&self, text: &str) -> String {
        let mut text = text.to_owned();
        // Longest first, so a file inside the work dir keeps its own name.
        let mut labels: Vec<&(String, String)> = self.labels.iter().collect();
        labels.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        for (path, name) in labels {
            text = text.replace(path.as_str(), name);
        }
        text
    }
}

/// A check's thread panicked: a bug, reported as such.
fn panicked(doing: &str) -> Outcome {
    Outcome::failed(JobResult::Internal, format!("internal error while {doing}"))
}

fn stopped(reason: StopReason) -> Outcome {
    match reason {
        StopReason::Cancelled => Outcome::failed(JobResult::Cancelled, "the job was cancelled"),
        StopReason::Shutdown => Outcome::Interrupted,
    }
}

fn frame_count(duration: f64) -> u64 {
    ((duration * FPS).ceil() as u64).max(1)
}

/// Progress in percent, 0..=99: 100 is the engine's to say, once the output
/// has been checked and stored.
fn percent(pos: f64, duration: f64) -> i32 {
    let fraction = if duration > 0.0 {
        (pos / duration).clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((fraction * 100.0).floor() as i32).min(99)
}

fn os(s: &str) -> OsString {
    s.into()
}

/// mencoder's argv (MEDIA-NOTES A3): the frame list at [`FPS`], the MP3 as
/// the audio track re-encoded to 128 kb/s MP3 (mencoder on Debian 12 cannot
/// make AAC).
fn mencoder_args(
    list: &Path,
    image: ImageType,
    audio: &Path,
    format: VideoFormat,
    out: &Path,
) -> Vec<OsString> {
    let mut mf = OsString::from("mf://@");
    mf.push(list);
    let mut args = vec![
        mf,
        os("-mf"),
        os(&format!("fps={FPS}:type={}", image.mf_type())),
        os("-audiofile"),
        audio.into(),
    ];
    let video: &[&str] = match format {
        // B-frames break lavf's MP4 muxing (non monotonically increasing dts).
        VideoFormat::Mp4 => &[
            "-ovc",
            "x264",
            "-x264encopts",
            "preset=veryfast:tune=stillimage:crf=23:bframes=0",
        ],
        VideoFormat::Avi => &["-ovc", "lavc", "-lavcopts", "vcodec=mpeg4:vbitrate=800"],
        VideoFormat::Flv => &["-ovc", "lavc", "-lavcopts", "vcodec=flv"],
    };
    args.extend(video.iter().map(|a| os(a)));
    args.extend(["-oac", "mp3lame", "-lameopts", "cbr:br=128"].map(os));
    let container: &[&str] = match format {
        VideoFormat::Mp4 => &["-of", "lavf", "-lavfopts", "format=mp4"],
        VideoFormat::Avi => &[],
        // FLV takes MP3 only at 44.1, 22.05 or 11.025 kHz.
        VideoFormat::Flv => &["-srate", "44100", "-of", "lavf", "-lavfopts", "format=flv"],
    };
    args.extend(container.iter().map(|a| os(a)));
    args.push(os("-o"));
    args.push(out.into());
    args
}

/// ffmpeg's argv (MEDIA-NOTES A4): the still looped at [`FPS`] (or a plain
/// black frame), cut to the audio's length with `-t` (without it the video
/// runs long), progress blocks on stdout.
fn ffmpeg_args(
    image: Option<&Path>,
    audio: &Path,
    format: VideoFormat,
    duration: f64,
    out: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-hide_banner", "-nostdin", "-y"].map(os).to_vec();
    match image {
        Some(path) => {
            args.extend(["-loop", "1", "-framerate", &FPS.to_string(), "-i"].map(os));
            args.push(path.into());
        }
        None => {
            args.extend(["-f", "lavfi", "-i"].map(os));
            args.push(os(&format!("color=c=black:s={PLAIN_FRAME}:r={FPS}")));
        }
    }
    args.push(os("-i"));
    args.push(audio.into());
    args.extend(["-map", "0:v:0", "-map", "1:a:0"].map(os));
    let codecs: &[&str] = match format {
        VideoFormat::Mp4 | VideoFormat::Flv => &[
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "stillimage",
            "-crf",
            "23",
            "-c:a",
            "aac",
            "-b:a",
            "192k",
        ],
        VideoFormat::Avi => &[
            "-c:v",
            "mpeg4",
            "-b:v",
            "800k",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
        ],
    };
    args.extend(codecs.iter().map(|a| os(a)));
    args.extend(
        [
            "-vf",
            "scale=trunc(iw/2)*2:trunc(ih/2)*2",
            "-pix_fmt",
            "yuv420p",
        ]
        .map(os),
    );
    args.extend(["-t", &format!("{duration:.6}"), "-shortest"].map(os));
    if format == VideoFormat::Mp4 {
        args.extend(["-movflags", "+faststart"].map(os));
    }
    args.extend(["-f", format.as_str(), "-progress", "pipe:1", "-nostats"].map(os));
    args.push(out.into());
    args
}

/// The position in seconds from a mencoder status line,
/// `Pos:  29.0s    727f ( 4%) 384.86fps Trem: …` (MEDIA-NOTES A6: the rule
/// is `^Pos:\s*([0-9.]+)s\s+(\d+)f\s+\(\s*(\d+)%\)`).
pub fn parse_mencoder_pos(line: &str) -> Option<f64> {
    fn digits(s: &str, ok: impl Fn(char) -> bool) -> (&str, &str) {
        let end = s.find(|c: char| !ok(c)).unwrap_or(s.len());
        s.split_at(end)
    }
    let rest = line.trim_start().strip_prefix("Pos:")?.trim_start();
    let (pos, rest) = digits(rest, |c| c.is_ascii_digit() || c == '.');
    let rest = rest.strip_prefix('s')?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (frames, rest) = digits(rest.trim_start(), |c| c.is_ascii_digit());
    let rest = rest.strip_prefix('f')?;
    let rest = rest.trim_start().strip_prefix('(')?.trim_start();
    let (pct, rest) = digits(rest, |c| c.is_ascii_digit());
    rest.strip_prefix("%)")?;
    if frames.is_empty() || pct.is_empty() {
        return None;
    }
    pos.parse::<f64>().ok().filter(|p| p.is_finite())
}

/// Reads ffmpeg's `-progress` key=value blocks (MEDIA-NOTES A6): keys
/// collect until a `progress=` line closes the block.
#[derive(Debug, Default)]
pub struct FfmpegProgress {
    /// `out_time_us` of the block being read; None until seen or `N/A`.
    out_time_us: Option<i64>,
    /// The furthest position a finished block reported, in seconds.
    furthest: Option<f64>,
    /// Whether the last finished block went past every earlier one.
    advanced: bool,
}

impl FfmpegProgress {
    /// Feeds one line; at the end of a block, returns its position in
    /// seconds (None for a block without a usable `out_time_us`).
    pub fn line(&mut self, line: &str) -> Option<f64> {
        let (key, value) = line.trim().split_once('=')?;
        match key {
            "out_time_us" => {
                self.out_time_us = value.trim().parse::<i64>().ok();
                None
            }
            "progress" => {
                let pos = self.out_time_us.take()?.max(0) as f64 / 1e6;
                self.advanced = self.furthest.map_or(true, |f| pos > f);
                self.furthest = Some(self.furthest.map_or(pos, |f| f.max(pos)));
                Some(pos)
            }
            _ => None,
        }
    }
}

/// Counts of video and audio streams and the format duration, from
/// `ffprobe -show_entries stream=codec_type:format=duration -of compact`.
fn parse_output_probe(text: &str) -> (usize, usize, Option<f64>) {
    let mut video = 0;
    let mut audio = 0;
    let mut duration = None;
    for line in text.lines() {
        let mut fields = line.trim().split('|');
        let section = fields.next().unwrap_or("");
        for field in fields {
            match (section, field.split_once('=')) {
                ("stream", Some(("codec_type", "video"))) => video += 1,
                ("stream", Some(("codec_type", "audio"))) => audio += 1,
                ("format", Some(("duration", d))) => duration = d.parse::<f64>().ok(),
                _ => {}
            }
        }
    }
    (video, audio, duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mencoder_pos_from_the_exact_bytes() {
        let stream = "Pos:   1.0s      1f ( 5%)  0.00fps Trem:   0min   0mb  A-V:0.000 [0:0]\rPos:   2.0s      2f (10%)  0.00fps Trem:   0min   0mb  A-V:0.100 [0:127]\r";
        let got: Vec<Option<f64>> = stream
            .split(['\r', '\n'])
            .filter(|l| !l.is_empty())
            .map(parse_mencoder_pos)
            .collect();
        assert_eq!(got, vec![Some(1.0), Some(2.0)]);
        assert_eq!(
            parse_mencoder_pos(
                "Pos:  29.0s    727f ( 4%) 384.86fps Trem:   0min  14mb  A-V:0.051 [36:128]"
            ),
            Some(29.0)
        );
        assert_eq!(
            parse_mencoder_pos(
                "Pos: 300.0s    301f (100%) 207.16fps Trem:   0min   4mb  A-V:1.118 [0:127]"
            ),
            Some(300.0)
        );
    }

    #[test]
    fn mencoder_other_lines_are_not_progress() {
        for line in [
            "Video stream:    0.886 kbit/s  (110 B/s)  size: 33227 bytes  300.000 secs  301 frames",
            "Audio stream:  128.000 kbit/s  (15999 B/s)  size: 4800679 bytes  300.042 secs",
            "Skipping frame!",
            "Pos:",
            "Pos: abc",
            "Pos:   1.0s",
            "Pos:   1.0s      1f",
            "Pos:   1.0s      f ( 5%)",
            "Pos:   1.0s      1f ( %)",
            "Pos: 1.0.0s 1f ( 5%)",
            "",
        ] {
            assert_eq!(parse_mencoder_pos(line), None, "{line:?}");
        }
    }

    #[test]
    fn ffmpeg_blocks_from_the_exact_bytes() {
        let first = "frame=1\nfps=0.00\nstream_0_0_q=0.0\nbitrate=N/A\ntotal_size=48\nout_time_us=0\nout_time_ms=0\nout_time=00:00:00.000000\ndup_frames=0\ndrop_frames=0\nspeed=   0x\nprogress=continue\n";
        let last = "frame=501\nfps=278.74\nstream_0_0_q=-1.0\nbitrate= 141.2kbits/s\ntotal_size=353382\nout_time_us=20015601\nout_time_ms=20015601\nout_time=00:00:20.015601\ndup_frames=0\ndrop_frames=0\nspeed=11.1x\nprogress=end\n";
        let mut p = FfmpegProgress::default();
        let got: Vec<f64> = format!("{first}{last}")
            .lines()
            .filter_map(|l| p.line(l))
            .collect();
        assert_eq!(got, vec![0.0, 20.015601]);
        assert!(p.advanced);
        assert_eq!(percent(20.015601, 20.035918), 99);
        assert_eq!(percent(10.0, 20.0), 50);
    }

    #[test]
    fn ffmpeg_na_and_repeats() {
        let mut p = FfmpegProgress::default();
        assert_eq!(p.line("out_time_us=N/A"), None);
        assert_eq!(p.line("progress=continue"), None, "N/A gives no position");
        assert_eq!(p.line("out_time_us=5000000"), None);
        assert_eq!(p.line("progress=continue"), Some(5.0));
        assert!(p.advanced);
        assert_eq!(p.line("out_time_us=5000000"), None);
        assert_eq!(p.line("progress=continue"), Some(5.0));
        assert!(!p.advanced, "the same position is not progress");
        assert_eq!(p.line("out_time_us=-23000"), None);
        assert_eq!(
            p.line("progress=continue"),
            Some(0.0),
            "negative clamps to 0"
        );
        assert_eq!(
            p.line("progress=continue"),
            None,
            "a block without out_time_us"
        );
        assert_eq!(p.line("garbage"), None);
    }

    #[test]
    fn percent_is_clamped_and_never_100() {
        assert_eq!(percent(-1.0, 20.0), 0);
        assert_eq!(percent(25.0, 20.0), 99);
        assert_eq!(percent(1.0, 0.0), 0);
        assert_eq!(percent(1.0, 20.0), 5);
    }

    #[test]
    fn frames_cover_the_audio() {
        assert_eq!(frame_count(20.035918), 21);
        assert_eq!(frame_count(20.0), 20);
        assert_eq!(frame_count(0.01), 1);
        assert_eq!(frame_count(0.0), 1);
    }

    #[test]
    fn sniffs_image_content() {
        assert_eq!(
            ImageType::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageType::Png)
        );
        assert_eq!(
            ImageType::sniff(&[0xff, 0xd8, 0xff, 0xe0, 0, 0x10]),
            Some(ImageType::Jpeg)
        );
        assert_eq!(ImageType::sniff(b"BM6\0\0\0"), Some(ImageType::Bmp));
        assert_eq!(ImageType::sniff(b"GIF89a"), None);
        assert_eq!(ImageType::sniff(b"hello\n"), None);
        assert_eq!(ImageType::sniff(b""), None);
        assert_eq!(ImageType::sniff(b"\x89PN"), None);
    }

    #[test]
    fn output_probe_counts_streams() {
        let text = "stream|codec_type=video\nstream|codec_type=audio\nformat|duration=20.036000\n";
        assert_eq!(parse_output_probe(text), (1, 1, Some(20.036)));
        let text = "stream|codec_type=video\nformat|duration=N/A\n";
        assert_eq!(parse_output_probe(text), (1, 0, None));
        assert_eq!(parse_output_probe(""), (0, 0, None));
    }

    #[test]
    fn argv_follows_the_recipes() {
        let list = Path::new("/w/frames.txt");
        let audio = Path::new("/f/a");
        let out = Path::new("/w/encoded.mp4");
        let joined = |v: Vec<OsString>| {
            v.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let m = joined(mencoder_args(
            list,
            ImageType::Jpeg,
            audio,
            VideoFormat::Mp4,
            out,
        ));
        assert_eq!(
            m,
            "mf://@/w/frames.txt -mf fps=1:type=jpg -audiofile /f/a -ovc x264 -x264encopts preset=veryfast:tune=stillimage:crf=23:bframes=0 -oac mp3lame -lameopts cbr:br=128 -of lavf -lavfopts format=mp4 -o /w/encoded.mp4"
        );
        let m = joined(mencoder_args(
            list,
            ImageType::Png,
            audio,
            VideoFormat::Flv,
            out,
        ));
        assert!(
            m.contains("-lavcopts vcodec=flv")
                && m.contains("-srate 44100 -of lavf -lavfopts format=flv"),
            "{m}"
        );
        let m = joined(mencoder_args(
            list,
            ImageType::Bmp,
            audio,
            VideoFormat::Avi,
            out,
        ));
        assert!(
            m.contains("type=bmp") && m.contains("vcodec=mpeg4") && !m.contains("-of"),
            "{m}"
        );

        let f = joined(ffmpeg_args(
            Some(Path::new("/f/i")),
            audio,
            VideoFormat::Mp4,
            20.035918,
            out,
        ));
        assert_eq!(
            f,
            "-hide_banner -nostdin -y -loop 1 -framerate 1 -i /f/i -i /f/a -map 0:v:0 -map 1:a:0 -c:v libx264 -preset veryfast -tune stillimage -crf 23 -c:a aac -b:a 192k -vf scale=trunc(iw/2)*2:trunc(ih/2)*2 -pix_fmt yuv420p -t 20.035918 -shortest -movflags +faststart -f mp4 -progress pipe:1 -nostats /w/encoded.mp4"
        );
        let f = joined(ffmpeg_args(None, audio, VideoFormat::Avi, 3.5, out));
        assert!(
            f.contains("-f lavfi -i color=c=black:s=1280x720:r=1 -i /f/a"),
            "{f}"
        );
        assert!(
            f.contains("-c:v mpeg4") && !f.contains("faststart") && f.contains("-f avi"),
            "{f}"
        );
    }
}
