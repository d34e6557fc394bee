//! YoutubeUploaderJob: sends a stored video to the channel of the user who
//! gave us their OAuth 2.0 refresh token, with the YouTube Data API v3
//! resumable upload protocol (`videos.insert`, `uploadType=resumable`).
//!
//! May use: `job`, `config`, `files`, `net`.
//!
//! The flow (shared/protocol/MEDIA-NOTES.md part B): trade the refresh token
//! for an access token; open a session (`POST`, snippet + status); save the
//! session URI as the job's checkpoint *before any byte is sent*; `PUT` the
//! file in chunks of `youtube_chunk_size` (a multiple of 256 KiB) read from
//! disk at the offset the server confirmed; the `201` carries the video ID.
//! After a 5xx or a transport error, wait (exponential backoff) and ask the
//! session where it stands (`Content-Range: bytes */N`) before sending more.
//! A rerun with a checkpoint does the same, so a restarted engine resumes the
//! same session and never creates the video twice; only a session YouTube
//! says is gone (404/410) makes a new one, and that is logged.
//!
//! Threads: the protocol runs on a thread of its own (the *uploader*), while
//! the job's thread relays its progress and checkpoints to the engine and
//! watches the stop signal. A stop is therefore answered within about 50 ms
//! whatever a socket is doing; the uploader is told too, stops reading the
//! file at once, and makes no further request (a socket it is blocked on
//! ends within the agent's timeouts, `net::IO_TIMEOUT` for a server gone
//! silent). It can no longer save anything: checkpoints go through the job's
//! thread. Running the whole loop there (rather than one thread per request)
//! keeps the hand-overs between chunks to the one reply of the server.
//!
//! Secrets (refresh token, access token, client secret) are never logged and
//! are masked in every message this module produces.

use super::{Kind, RunCtx, StopReason, StopSignal};
use crate::job::details::{Details, Privacy, UploaderDetails};
use crate::job::{JobResult, Outcome};
use crate::net;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// YouTube's chunk granularity: every chunk but the last is a multiple of it.
pub const CHUNK_UNIT: u64 = 256 * 1024;

/// How long before its stated expiry an access token is refreshed, at most.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// Cap on reply bodies read for error messages and video resources.
const REPLY_LIMIT: u64 = 1024 * 1024;

/// How often the job's thread looks at the stop signal while it waits.
const STOP_POLL: Duration = Duration::from_millis(50);

/// The message of a job whose refresh token YouTube no longer accepts.
pub const RECONNECT_MESSAGE: &str = "YouTube no longer accepts this channel's authorization (the refresh \
     token was revoked or has expired); the user must reconnect their YouTube channel on the website \
     and the job be created again";

pub struct YoutubeUploaderJob;

impl Kind for YoutubeUploaderJob {
    fn run(&self, ctx: &RunCtx) -> Outcome {
        upload(ctx, &RetryPolicy::default())
    }
}

/// When to give up on YouTube, and how long to wait between tries.
///
/// Before retry `n` (1-based) the upload sleeps `random(0,1) * base * 2^n`,
/// capped at `max_delay` (the YouTube sample's backoff with `base` = 1 s).
/// `n` counts failures in a row *without progress*: a retry after which the
/// server confirmed more bytes starts the count again, so a long upload over
/// a flaky link is not failed for trouble it already got past.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 10,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(64),
        }
    }
}

impl RetryPolicy {
    /// The sleep before retry `n` (1-based), for `random` in [0, 1).
    pub fn delay(&self, n: u32, random: f64) -> Duration {
        let factor = 2f64.powi(n.min(30) as i32) * random.clamp(0.0, 1.0);
        self.base.mul_f64(factor).min(self.max_delay)
    }
}

/// Runs one upload with the given retry policy. [`YoutubeUploaderJob`] is
/// this with the default policy; tests pass a faster one.
pub fn upload(ctx: &RunCtx, policy: &RetryPolicy) -> Outcome {
    let outcome = match Upload::prepare(ctx, policy.clone()) {
        Ok(up) => supervise(ctx, up),
        Err(outcome) => outcome,
    };
    if let Outcome::Failed { code, message } = &outcome {
        log::warn!(
            "job {}: upload failed ({}): {}",
            ctx.job.id,
            code.code(),
            message
        );
    }
    outcome
}

/// What the uploader tells the job's thread.
enum Event {
    /// The server confirmed this many bytes.
    Held(u64),
    /// Save this checkpoint and answer whether it was saved.
    Checkpoint(String, Sender<Result<(), String>>),
    Finished(Outcome),
}

/// The uploader's side of the link to the job's thread.
struct Link {
    events: Sender<Event>,
    stop: Arc<StopSignal>,
}

impl Link {
    fn held(&self, bytes: u64) {
        let _ = self.events.send(Event::Held(bytes));
    }

    fn checkpoint(&self, value: String) -> Result<(), String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.events
            .send(Event::Checkpoint(value, tx))
            .map_err(|_| "the job stopped".to_owned())?;
        rx.recv().map_err(|_| "the job stopped".to_owned())?
    }
}

/// Starts the uploader and serves it from the job's thread until it
/// finishes or the job is asked to stop.
fn supervise(ctx: &RunCtx, up: Upload) -> Outcome {
    let size = up.size;
    let stop = Arc::new(StopSignal::new());
    let (tx, rx): (Sender<Event>, Receiver<Event>) = crossbeam_channel::unbounded();
    let link = Link {
        events: tx,
        stop: stop.clone(),
    };
    let spawned = thread::Builder::new()
        .name("youtube-upload".into())
        .spawn(move || {
            let mut up = up;
            let outcome = up.run(&link);
            let _ = link.events.send(Event::Finished(outcome));
        });
    if let Err(e) = spawned {
        return Outcome::failed(
            JobResult::Internal,
            format!("could not start the upload thread: {e}"),
        );
    }
    let mut held = 0;
    loop {
        match rx.recv_timeout(STOP_POLL) {
            Ok(Event::Held(bytes)) => {
                held = bytes;
                (ctx.progress)((bytes.saturating_mul(100) / size).min(100) as i32);
            }
            Ok(Event::Checkpoint(value, answer)) => {
                let _ = answer.send((ctx.checkpoint)(&value));
            }
            Ok(Event::Finished(outcome)) => {
                if matches!(outcome, Outcome::Success { .. }) {
                    (ctx.progress)(100);
                }
                return outcome;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Outcome::failed(
                    JobResult::Internal,
                    "the upload thread ended without an outcome",
                );
            }
        }
        if let Some(reason) = ctx.stop.reason() {
            stop.stop(reason);
            return match reason {
                StopReason::Cancelled => Outcome::failed(
                    JobResult::Cancelled,
                    format!("cancelled after YouTube confirmed {held} of {size} bytes"),
                ),
                StopReason::Shutdown => Outcome::Interrupted,
            };
        }
    }
}

/// What a step of the protocol came to.
#[derive(Debug)]
enum Reply {
    /// POST answered with the session URI.
    Session(String),
    /// 308: the server holds this many bytes.
    Incomplete(u64),
    /// 200/201: the video exists; its ID.
    Done(String),
    /// 401 that a fresh access token may cure.
    Unauthorized(String),
    /// 404/410 on the session URI: YouTube forgot the session.
    Gone(String),
    /// Worth retrying after a pause.
    Transient(String),
    /// YouTube said no for good: Failed 5.
    Rejected(String),
    /// Reading the video file failed: Failed 2.
    InputFailed(String),
    /// Not YouTube's fault and not worth retrying (bad URL, …): Failed 8.
    Internal(String),
    /// The job was asked to stop.
    Stopped,
}

/// The resume point saved in the job's checkpoint.
#[derive(Debug, PartialEq)]
struct Checkpoint {
    session: String,
    size: u64,
}

impl Checkpoint {
    fn to_json(&self) -> String {
        serde_json::json!({ "SessionUri": self.session, "Size": self.size }).to_string()
    }

    fn parse(raw: &str) -> Option<Checkpoint> {
        let v: serde_json::Value = serde_json::from_str(raw).ok()?;
        Some(Checkpoint {
            session: v.get("SessionUri")?.as_str()?.to_owned(),
            size: v.get("Size")?.as_u64()?,
        })
    }
}

/// One upload, owned by the uploader thread.
struct Upload {
    job: String,
    /// The checkpoint of the previous run ("" for none).
    resume: String,
    policy: RetryPolicy,
    details: UploaderDetails,
    agent: ureq::Agent,
    upload_url: String,
    tokens: Tokens,
    file: Arc<File>,
    size: u64,
    chunk: u64,
    content_type: &'static str,
}

impl Upload {
    fn prepare(ctx: &RunCtx, policy: RetryPolicy) -> Result<Upload, Outcome> {
        let Details::Uploader(details) = ctx.details else {
            return Err(Outcome::failed(
                JobResult::Internal,
                "a YoutubeUploaderJob was given another job type's details",
            ));
        };
        let refresh_token = ctx
            .secrets
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .and_then(|v| v.get("RefreshToken")?.as_str().map(str::to_owned))
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Outcome::failed(
                    JobResult::Internal,
                    "the job's RefreshToken is not in the store (it is removed when a job ends); create the job again",
                )
            })?;
        let (Some(client_id), Some(client_secret)) =
            (&ctx.config.oauth_client_id, &ctx.config.oauth_client_secret)
        else {
            return Err(Outcome::failed(
                JobResult::Internal,
                "oauth_client_id and oauth_client_secret must both be set in the engine's configuration to upload to YouTube",
            ));
        };
        let missing = |why: String| Outcome::failed(JobResult::InputMissing, why);
        let id = crate::shorten(&details.video_file, 64);
        let path = ctx
            .files
            .path_of(&details.video_file)
            .ok_or_else(|| missing(format!("VideoFile '{id}' is not a FileID of this engine")))?;
        let mut file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                missing(format!("VideoFile '{id}' is not in the file store"))
            }
            _ => missing(format!("VideoFile '{id}' cannot be read: {e}")),
        })?;
        let size = file
            .metadata()
            .map_err(|e| missing(format!("VideoFile '{id}' cannot be read: {e}")))?
            .len();
        if size == 0 {
            return Err(missing(format!("VideoFile '{id}' is empty")));
        }
        let content_type = sniff_content_type(&mut file);
        Ok(Upload {
            job: ctx.job.id.to_string(),
            resume: ctx.job.checkpoint.clone(),
            policy,
            details: details.clone(),
            agent: ctx.agent.clone(),
            upload_url: ctx.config.youtube_upload_url.clone(),
            tokens: Tokens {
                agent: ctx.agent.clone(),
                url: ctx.config.oauth_token_url.clone(),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                refresh_token,
                cached: None,
            },
            file: Arc::new(file),
            size,
            chunk: (ctx.config.youtube_chunk_size / CHUNK_UNIT).max(1) * CHUNK_UNIT,
            content_type,
        })
    }

    /// The protocol, from the first token to the video ID. When the job is
    /// stopped the outcome returned is not used (the job's thread has
    /// answered already).
    fn run(&mut self, link: &Link) -> Outcome {
        let job = self.job.clone();
        let mut session = None;
        let mut need_query = false;
        if !self.resume.is_empty() {
            match Checkpoint::parse(&self.resume) {
                Some(cp) if cp.size == self.size => {
                    log::info!("job {job}: resuming its upload session");
                    session = Some(cp.session);
                    need_query = true;
                }
                _ => log::warn!(
                    "job {job}: its saved upload session does not fit the video ({} bytes); \
                     starting a new session, so YouTube may keep a duplicate unfinished upload",
                    self.size
                ),
            }
        }
        let mut offset = 0;
        let mut confirmed = 0;
        let mut failures = 0u32;
        let mut refreshed_for_401 = false;
        let mut sessions_lost = 0u32;
        link.held(0);
        loop {
            if link.stop.reason().is_some() {
                return Outcome::Interrupted;
            }
            let reply = match &session {
                None => self.open_session(),
                Some(uri) if need_query => self.query(uri),
                Some(uri) => self.send_chunk(uri, offset, &link.stop),
            };
            match reply {
                Reply::Session(uri) => {
                    let cp = Checkpoint {
                        session: uri,
                        size: self.size,
                    };
                    if let Err(e) = link.checkpoint(cp.to_json()) {
                        return Outcome::failed(
                            JobResult::Internal,
                            format!(
                                "could not save the upload session before sending the video: {e}"
                            ),
                        );
                    }
                    log::info!(
                        "job {job}: opened an upload session for {} bytes",
                        self.size
                    );
                    session = Some(cp.session);
                    (offset, confirmed, need_query, failures, refreshed_for_401) =
                        (0, 0, false, 0, false);
                    link.held(0);
                }
                Reply::Incomplete(held) => {
                    if held > self.size {
                        return self.fail(
                            JobResult::RemoteRejected,
                            format!(
                                "YouTube says it holds {held} bytes of a {}-byte video",
                                self.size
                            ),
                        );
                    }
                    if held > confirmed {
                        failures = 0;
                    }
                    (offset, confirmed, need_query, refreshed_for_401) = (held, held, false, false);
                    link.held(held);
                }
                Reply::Done(video_id) => {
                    log::info!("job {job}: uploaded as YouTube video {video_id}");
                    return Outcome::Success {
                        result: video_id,
                        outputs: vec![],
                    };
                }
                Reply::Unauthorized(why) => {
                    if refreshed_for_401 {
                        return self.fail(
                            JobResult::RemoteRejected,
                            format!("YouTube refused a freshly refreshed access token: {why}"),
                        );
                    }
                    log::info!(
                        "job {job}: access token refused ({}); refreshing it",
                        self.redact(&why)
                    );
                    self.tokens.cached = None;
                    refreshed_for_401 = true;
                    need_query = session.is_some();
                }
                Reply::Gone(why) => {
                    sessions_lost += 1;
                    if sessions_lost > 3 {
                        return self.fail(
                            JobResult::RemoteUnavailable,
                            format!("YouTube lost the upload session {sessions_lost} times: {why}"),
                        );
                    }
                    log::warn!(
                        "job {job}: YouTube no longer knows the upload session ({}); starting a new one, \
                         so a duplicate unfinished upload may remain on YouTube",
                        self.redact(&why)
                    );
                    session = None;
                }
                Reply::Transient(why) => {
                    failures += 1;
                    if failures > self.policy.max_retries {
                        return self.fail(
                            JobResult::RemoteUnavailable,
                            format!(
                                "YouTube is unavailable: {why} (gave up after {} retries)",
                                self.policy.max_retries
                            ),
                        );
                    }
                    let pause = self.policy.delay(failures, random_unit());
                    log::warn!(
                        "job {job}: {}; retry {failures} of {} in {:.1} s",
                        self.redact(&why),
                        self.policy.max_retries,
                        pause.as_secs_f64()
                    );
                    if link.stop.wait(pause).is_some() {
                        return Outcome::Interrupted;
                    }
                    need_query = session.is_some();
                }
                Reply::Rejected(why) => return self.fail(JobResult::RemoteRejected, why),
                Reply::InputFailed(why) => return self.fail(JobResult::InputMissing, why),
                Reply::Internal(why) => return self.fail(JobResult::Internal, why),
                Reply::Stopped => return Outcome::Interrupted,
            }
        }
    }

    fn fail(&self, code: JobResult, message: String) -> Outcome {
        Outcome::failed(code, self.redact(&message))
    }

    fn redact(&self, text: &str) -> String {
        let access = self.tokens.cached.as_ref().map_or("", |c| c.token.as_str());
        net::redact(
            text,
            &[
                &self.tokens.refresh_token,
                &self.tokens.client_secret,
                access,
            ],
        )
    }

    /// `POST` the metadata: opens a resumable session.
    fn open_session(&mut self) -> Reply {
        let token = match self.tokens.access_token() {
            Ok(t) => t,
            Err(reply) => return reply,
        };
        let url = &self.upload_url;
        let sep = if url.contains('?') { '&' } else { '?' };
        let target = format!("{url}{sep}uploadType=resumable&part=snippet,status");
        let body = metadata_json(&self.details).to_string();
        let sent = self
            .agent
            .post(&target)
            .config()
            .max_redirects(0)
            .build()
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json; charset=UTF-8")
            .header("X-Upload-Content-Length", self.size.to_string())
            .header("X-Upload-Content-Type", self.content_type)
            .send(body.as_bytes());
        let mut resp = match sent {
            Ok(resp) => resp,
            Err(e) => return transport_reply(&e, &format!("opening an upload session at {url}")),
        };
        let status = resp.status().as_u16();
        let location = header(&resp, "location");
        let text = net::read_text(resp.body_mut(), REPLY_LIMIT);
        match status {
            200 | 201 => match location {
                Some(loc) if !loc.is_empty() => Reply::Session(absolute_location(url, &loc)),
                _ => Reply::Transient(format!(
                    "YouTube opened no upload session (HTTP {status} without Location)"
                )),
            },
            404 | 410 => Reply::Internal(format!(
                "the upload endpoint {url} answered HTTP {status}; check youtube_upload_url"
            )),
            _ => classify_error(status, &resp, &text),
        }
    }

    /// `PUT` with `Content-Range: bytes */N`: where does the session stand?
    fn query(&mut self, uri: &str) -> Reply {
        let token = match self.tokens.access_token() {
            Ok(t) => t,
            Err(reply) => return reply,
        };
        let sent = self
            .agent
            .put(uri)
            .config()
            .max_redirects(0)
            .build()
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Range", format!("bytes */{}", self.size))
            .send(&[] as &[u8]);
        match sent {
            Ok(resp) => session_reply(resp),
            Err(e) => transport_reply(&e, "asking YouTube how much of the video it holds"),
        }
    }

    /// `PUT` one chunk, from `offset`, read from disk as it goes out.
    fn send_chunk(&mut self, uri: &str, offset: u64, stop: &Arc<StopSignal>) -> Reply {
        let token = match self.tokens.access_token() {
            Ok(t) => t,
            Err(reply) => return reply,
        };
        let end = (offset + self.chunk).min(self.size);
        let mut body = ChunkBody {
            file: self.file.clone(),
            pos: offset,
            end,
            stop: stop.clone(),
            failed: None,
        };
        let sent = self
            .agent
            .put(uri)
            .config()
            .max_redirects(0)
            .build()
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", self.content_type)
            .header("Content-Length", (end - offset).to_string())
            .header(
                "Content-Range",
                format!("bytes {offset}-{}/{}", end - 1, self.size),
            )
            .send(ureq::SendBody::from_reader(&mut body));
        match sent {
            Ok(resp) => session_reply(resp),
            Err(_) if stop.reason().is_some() => Reply::Stopped,
            Err(_) if body.failed.is_some() => Reply::InputFailed(format!(
                "VideoFile cannot be read: {}",
                body.failed.unwrap_or_default()
            )),
            Err(e) => transport_reply(
                &e,
                &format!("sending bytes {offset}-{} of {}", end - 1, self.size),
            ),
        }
    }
}

/// Classifies a reply to a `PUT` on the session URI.
fn session_reply(mut resp: ureq::http::Response<ureq::Body>) -> Reply {
    let status = resp.status().as_u16();
    match status {
        308 => {
            let range = header(&resp, "range");
            let _ = net::read_text(resp.body_mut(), REPLY_LIMIT);
            match range {
                None => Reply::Incomplete(0),
                Some(r) => match parse_range(&r) {
                    Some(held) => Reply::Incomplete(held),
                    None => Reply::Transient(format!(
                        "YouTube sent a Range header that makes no sense: '{}'",
                        crate::shorten(&r, 80)
                    )),
                },
            }
        }
        200 | 201 => {
            let text = net::read_text(resp.body_mut(), REPLY_LIMIT);
            let id = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
                .filter(|id| !id.is_empty());
            match id {
                Some(id) => Reply::Done(id),
                None => Reply::Transient(format!(
                    "YouTube finished the upload but its reply names no video id: '{}'",
                    crate::shorten(&text, 200)
                )),
            }
        }
        404 | 410 => {
            let text = net::read_text(resp.body_mut(), REPLY_LIMIT);
            let (reason, message) = youtube_error(status, &text);
            Reply::Gone(format!("HTTP {status} {reason}: {message}"))
        }
        _ => {
            let text = net::read_text(resp.body_mut(), REPLY_LIMIT);
            classify_error(status, &resp, &text)
        }
    }
}

/// Classifies an error status (anything but success and 308) from YouTube.
fn classify_error(status: u16, resp: &ureq::http::Response<ureq::Body>, text: &str) -> Reply {
    let (reason, message) = youtube_error(status, text);
    let what = format!("{reason} (HTTP {status}): {message}");
    match status {
        401 if reason != "youtubeSignupRequired" => Reply::Unauthorized(what),
        408 | 429 | 500..=599 => Reply::Transient(format!("YouTube answered {what}")),
        403 if reason == "rateLimitExceeded" || reason == "userRateLimitExceeded" => {
            Reply::Transient(format!("YouTube answered {what}"))
        }
        _ if (300..400).contains(&status) => {
            let to = header(resp, "location").unwrap_or_default();
            Reply::Internal(format!(
                "YouTube answered HTTP {status} (to '{}'), which the upload protocol does not use",
                crate::shorten(&to, 100)
            ))
        }
        _ => Reply::Rejected(format!("YouTube refused the upload: {what}")),
    }
}

/// `error.errors[0].reason` (falling back to the code) and `error.message`
/// of a Google API error body, HTML tags removed.
fn youtube_error(status: u16, text: &str) -> (String, String) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
    let err = &v["error"];
    let reason = err["errors"][0]["reason"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| err["status"].as_str().map(str::to_owned))
        .unwrap_or_else(|| err["code"].as_i64().unwrap_or(status as i64).to_string());
    let message = err["message"]
        .as_str()
        .or_else(|| err["errors"][0]["message"].as_str())
        .map(strip_tags)
        .unwrap_or_else(|| crate::shorten(text.trim(), 200));
    (reason, crate::shorten(&message, 300))
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn transport_reply(e: &ureq::Error, doing: &str) -> Reply {
    let why = format!("{doing} failed: {}", net::describe(e));
    if net::is_transient(e) {
        Reply::Transient(why)
    } else {
        Reply::Internal(why)
    }
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// Bytes held according to a 308's `Range: bytes=0-LAST`: LAST + 1.
fn parse_range(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes=")?;
    let (first, last) = rest.split_once('-')?;
    if first.trim() != "0" {
        return None;
    }
    last.trim().parse::<u64>().ok()?.checked_add(1)
}

/// The session URI from a `Location` header, made absolute against the
/// upload endpoint when the server sent a path.
fn absolute_location(endpoint: &str, location: &str) -> String {
    if !location.starts_with('/') {
        return location.to_owned();
    }
    let after_scheme = endpoint.find("://").map_or(0, |i| i + 3);
    let authority_end = endpoint[after_scheme..]
        .find('/')
        .map_or(endpoint.len(), |i| after_scheme + i);
    format!("{}{location}", &endpoint[..authority_end])
}

/// The `videos.insert` body: snippet and status.
fn metadata_json(d: &UploaderDetails) -> serde_json::Value {
    let mut snippet = serde_json::json!({ "title": d.title, "description": d.description });
    if !d.tags.is_empty() {
        snippet["tags"] = serde_json::json!(d.tags);
    }
    if let Some(category) = &d.category_id {
        snippet["categoryId"] = serde_json::json!(category);
    }
    let privacy = match d.privacy_status {
        Privacy::Private => "private",
        Privacy::Unlisted => "unlisted",
        Privacy::Public => "public",
    };
    serde_json::json!({ "snippet": snippet, "status": { "privacyStatus": privacy } })
}

/// The video's MIME type from its first bytes; YouTube also accepts
/// `application/octet-stream` for anything else.
fn sniff_content_type(file: &mut File) -> &'static str {
    let mut head = [0u8; 12];
    let n = file.read(&mut head).unwrap_or(0);
    let head = &head[..n];
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        "video/mp4"
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"AVI " {
        "video/x-msvideo"
    } else if head.starts_with(b"FLV") {
        "video/x-flv"
    } else if head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        "video/webm"
    } else {
        "application/octet-stream"
    }
}

/// A uniform random number in [0, 1), from the OS's random source.
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() & ((1u128 << 53) - 1);
    bits as f64 / (1u64 << 53) as f64
}

/// Bytes `pos..end` of the file as a request body, read with positional
/// reads. Fails at the next read once the job is asked to stop, and
/// remembers a read failure of the file itself.
struct ChunkBody {
    file: Arc<File>,
    pos: u64,
    end: u64,
    stop: Arc<StopSignal>,
    failed: Option<String>,
}

impl Read for ChunkBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end {
            return Ok(0);
        }
        if self.stop.reason().is_some() {
            return Err(io::Error::other("the job was asked to stop"));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        match self.file.read_at(&mut buf[..want], self.pos) {
            Ok(0) => {
                let why = "the file ended early: it changed during the upload";
                self.failed = Some(why.to_owned());
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, why))
            }
            Ok(n) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// The access token, fetched with the refresh token and kept until shortly
/// before it expires (per run: a job's upload is the only user).
struct Tokens {
    agent: ureq::Agent,
    url: String,
    client_id: String,
    client_secret: String,
    refresh_token: String,
    cached: Option<CachedToken>,
}

struct CachedToken {
    token: String,
    refresh_at: Instant,
}

/// When to refresh a token that lives `lifetime` from `now`: a minute early,
/// or halfway for a token that lives less than two minutes.
fn refresh_at(now: Instant, lifetime: Duration) -> Instant {
    now + lifetime - TOKEN_MARGIN.min(lifetime / 2)
}

impl Tokens {
    fn access_token(&mut self) -> Result<String, Reply> {
        match &self.cached {
            Some(c) if Instant::now() < c.refresh_at => Ok(c.token.clone()),
            _ => self.refresh(),
        }
    }

    fn refresh(&mut self) -> Result<String, Reply> {
        self.cached = None;
        let sent = self.agent.post(&self.url).send_form([
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
            ("refresh_token", self.refresh_token.as_str()),
            ("grant_type", "refresh_token"),
        ]);
        let mut resp = match sent {
            Ok(resp) => resp,
            Err(e) => {
                return Err(transport_reply(
                    &e,
                    &format!("refreshing the access token at {}", self.url),
                ))
            }
        };
        let status = resp.status().as_u16();
        let text = net::read_text(resp.body_mut(), REPLY_LIMIT);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if status == 200 {
            let Some(token) = v["access_token"].as_str().filter(|t| !t.is_empty()) else {
                return Err(Reply::Transient(
                    "the OAuth token endpoint answered without an access_token".into(),
                ));
            };
            let lifetime = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(3600));
            let token = token.to_owned();
            self.cached = Some(CachedToken {
                token: token.clone(),
                refresh_at: refresh_at(Instant::now(), lifetime),
            });
            return Ok(token);
        }
        let error = v["error"].as_str().unwrap_or("");
        let description = v["error_description"].as_str().unwrap_or("");
        let what = format!(
            "{} (HTTP {status}){}{}",
            if error.is_empty() {
                "no error code"
            } else {
                error
            },
            if description.is_empty() { "" } else { ": " },
            crate::shorten(description, 200)
        );
        Err(match status {
            400 if error == "invalid_grant" => {
                Reply::Rejected(format!("{RECONNECT_MESSAGE} ({what})"))
            }
            408 | 429 | 500..=599 => {
                Reply::Transient(format!("the OAuth token endpoint answered {what}"))
            }
            _ => Reply::Rejected(format!(
                "the OAuth token endpoint refused to refresh the access token: {what}; \
                 check oauth_client_id and oauth_client_secret"
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(1));
        assert_eq!(p.delay(3, 0.5), Duration::from_secs(4));
        assert_eq!(p.delay(10, 0.99), Duration::from_secs(64));
        assert_eq!(p.delay(2, 0.0), Duration::ZERO);
        let r = random_unit();
        assert!((0.0..1.0).contains(&r));
    }

    #[test]
    fn range_header_gives_the_next_offset() {
        assert_eq!(parse_range("bytes=0-262143"), Some(262144));
        assert_eq!(parse_range(" bytes=0-0 "), Some(1));
        assert_eq!(parse_range("bytes=5-9"), None);
        assert_eq!(parse_range("0-9"), None);
        assert_eq!(parse_range("bytes=0-x"), None);
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_junk() {
        let cp = Checkpoint {
            session: "https://h/upload?upload_id=a\"b".into(),
            size: 1_100_000,
        };
        assert_eq!(Checkpoint::parse(&cp.to_json()), Some(cp));
        assert_eq!(Checkpoint::parse("https://h/upload?upload_id=x"), None);
        assert_eq!(Checkpoint::parse(r#"{"SessionUri":"u"}"#), None);
    }

    #[test]
    fn youtube_errors_give_reason_and_plain_message() {
        let body = r#"{"error":{"code":403,"message":"You have exceeded your <a href=\"/q\">quota</a>.",
            "errors":[{"message":"m","domain":"youtube.quota","reason":"quotaExceeded"}]}}"#;
        assert_eq!(
            youtube_error(403, body),
            (
                "quotaExceeded".to_owned(),
                "You have exceeded your quota.".to_owned()
            )
        );
        assert_eq!(youtube_error(502, "<html>Bad Gateway</html>").0, "502");
    }

    #[test]
    fn tokens_are_refreshed_shortly_before_expiry() {
        let now = Instant::now();
        assert_eq!(
            refresh_at(now, Duration::from_secs(3599)),
            now + Duration::from_secs(3539)
        );
        assert_eq!(
            refresh_at(now, Duration::from_secs(10)),
            now + Duration::from_secs(5)
        );
        assert_eq!(refresh_at(now, Duration::ZERO), now);
    }

    #[test]
    fn a_chunk_body_reads_its_range_and_fails_once_stopped() {
        let mut tmp = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut tmp, b"0123456789").unwrap();
        let stop = Arc::new(StopSignal::new());
        let mut body = ChunkBody {
            file: Arc::new(tmp),
            pos: 2,
            end: 7,
            stop: stop.clone(),
            failed: None,
        };
        let mut buf = [0u8; 3];
        assert_eq!(body.read(&mut buf).unwrap(), 3);
        assert_eq!(&buf, b"234");
        let mut rest = [0u8; 8];
        assert_eq!(body.read(&mut rest).unwrap(), 2);
        assert_eq!(&rest[..2], b"56");
        assert_eq!(body.read(&mut rest).unwrap(), 0, "the range ends at 7");
        let mut short = ChunkBody {
            end: 20,
            pos: 10,
            failed: None,
            file: body.file.clone(),
            stop: stop.clone(),
        };
        assert!(short.read(&mut buf).is_err());
        assert!(
            short.failed.is_some(),
            "a file shorter than its range is a file failure"
        );
    }

    #[test]
    fn relative_locations_are_made_absolute() {
        let ep = "http://127.0.0.1:9/upload/youtube/v3/videos";
        assert_eq!(
            absolute_location(ep, "/s?upload_id=1"),
            "http://127.0.0.1:9/s?upload_id=1"
        );
        assert_eq!(absolute_location(ep, "https://x/y"), "https://x/y");
    }

    #[test]
    fn metadata_has_snippet_and_status() {
        let d = UploaderDetails {
            video_file: String::new(),
            title: "T".into(),
            description: "D".into(),
            tags: vec!["a".into(), "b".into()],
            category_id: Some("10".into()),
            privacy_status: Privacy::Unlisted,
        };
        let v = metadata_json(&d);
        assert_eq!(v["snippet"]["tags"], serde_json::json!(["a", "b"]));
        assert_eq!(v["snippet"]["categoryId"], "10");
        assert_eq!(v["status"]["privacyStatus"], "unlisted");
        let bare = metadata_json(&UploaderDetails {
            tags: vec![],
            category_id: None,
            ..d
        });
        assert!(
            bare["snippet"].get("tags").is_none() && bare["snippet"].get("categoryId").is_none()
        );
    }
}
