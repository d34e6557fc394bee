//! A local stand-in for YouTube's resumable upload API and Google's OAuth
//! token endpoint, as shared/protocol/MEDIA-NOTES.md part B describes them,
//! with fault injection. Test support (also used by examples/upload_bench).
//!
//! It is strict where YouTube is: every request is checked (bearer token,
//! `X-Upload-Content-Length`, title, Content-Range forms, 256 KiB alignment
//! of every chunk but the last, Content-Length matching the range) and a
//! protocol mistake is answered 400 *and* recorded in `violations`, so a
//! test can assert the client made none. It keeps no video bytes, only a
//! running sha256 per session, so a 1 GiB upload costs it no memory.
//!
//! Raw `std::net` HTTP/1.1 (keep-alive, `Expect: 100-continue`,
//! Content-Length bodies only), so a fault can cut a connection mid-body.

use jobengine::config::{Config, Database};
use jobengine::job::{Job, JobId, JobKind, JobState};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// The OAuth client the stand-in accepts.
pub const CLIENT_ID: &str = "1234-engine.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-standin-client-secret";
/// A refresh token the stand-in knows from the start.
pub const REFRESH_TOKEN: &str = "1//0standin-refresh-token";
/// YouTube's chunk granularity.
pub const UNIT: u64 = 262_144;

const UPLOAD_PATH: &str = "/upload/youtube/v3/videos";

/// A fault for one data-carrying `PUT` (see [`StandIn::fault_on_put`]).
#[derive(Clone, Debug)]
pub enum PutFault {
    /// Read this many body bytes, then drop the connection. The session
    /// keeps `floor(K/262144)*262144` of them.
    Cut(u64),
    /// Read this many body bytes, then stop reading until [`StandIn::release`];
    /// then as `Cut`.
    Hang(u64),
    /// The session is forgotten: 404 now and for every later request to it.
    Gone,
    /// Every access token issued so far expires just before this request.
    ExpireTokens,
    /// This request and the `n - 1` upload requests after it get 503.
    Burst(u32),
}

/// One request as the stand-in saw it, and its answer (0: cut, no answer).
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub status: u16,
}

impl Logged {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A `PUT` that carries bytes (not a status query).
    pub fn is_data_put(&self) -> bool {
        self.method == "PUT"
            && !self
                .header("content-range")
                .is_some_and(|r| r.starts_with("bytes */"))
    }

    pub fn is_status_query(&self) -> bool {
        self.method == "PUT"
            && self
                .header("content-range")
                .is_some_and(|r| r.starts_with("bytes */"))
    }
}

/// A finished upload.
#[derive(Clone, Debug)]
pub struct Video {
    pub id: String,
    pub upload_id: String,
    pub size: u64,
    pub sha256: String,
    /// The `videos.insert` body the session was opened with.
    pub metadata: serde_json::Value,
}

struct Session {
    total: u64,
    stored: u64,
    hasher: Sha256,
    metadata: serde_json::Value,
    video: Option<String>,
    /// A data PUT is being read into this session.
    busy: bool,
}

/// Everything the stand-in knows; tests read it through [`StandIn::wait_until`].
pub struct State {
    pub refresh_tokens: HashMap<String, bool>,
    pub access_tokens: HashMap<String, Instant>,
    pub expires_in: u64,
    /// Form fields of every token request.
    pub token_requests: Vec<HashMap<String, String>>,
    sessions: HashMap<String, Session>,
    pub sessions_created: usize,
    pub videos: Vec<Video>,
    pub log: Vec<Logged>,
    /// Protocol mistakes of the client (each also answered 400).
    pub violations: Vec<String>,
    /// Data PUTs received so far.
    pub data_puts: usize,
    /// Bytes received by the data PUT being read now, if any.
    pub receiving: Option<u64>,
    pub hanging: bool,
    fail_next: (u32, u16),
    quota_next: bool,
    put_faults: HashMap<usize, PutFault>,
    read_delay: Option<Duration>,
    released: bool,
    counter: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    closed: AtomicBool,
    addr: SocketAddr,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The engine's row of a running YoutubeUploader job `id` that uploads
/// `file_id`, resuming from `checkpoint` (empty: from the start).
pub fn upload_job(id: &str, file_id: &str, checkpoint: &str) -> Job {
    let now = SystemTime::now();
    Job {
        id: JobId::parse(id).expect("a valid job id"),
        kind: JobKind::YoutubeUploader,
        state: JobState::InProgress,
        details: "{}".into(),
        callback: String::new(),
        progress: 0,
        result_code: 0,
        error_message: String::new(),
        result: String::new(),
        outputs: vec![],
        inputs: vec![file_id.to_owned()],
        attempts: 0,
        checkpoint: checkpoint.into(),
        created_at: now,
        last_state_change: now,
        start_seq: 1,
    }
}

pub struct StandIn {
    shared: Arc<Shared>,
}

impl StandIn {
    /// Starts the stand-in on 127.0.0.1, port chosen by the OS.
    pub fn start() -> StandIn {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind the YouTube stand-in on 127.0.0.1:0");
        let addr = listener.local_addr().expect("stand-in address");
        let state = State {
            refresh_tokens: HashMap::from([(REFRESH_TOKEN.to_owned(), false)]),
            access_tokens: HashMap::new(),
            expires_in: 3599,
            token_requests: Vec::new(),
            sessions: HashMap::new(),
            sessions_created: 0,
            videos: Vec::new(),
            log: Vec::new(),
            violations: Vec::new(),
            data_puts: 0,
            receiving: None,
            hanging: false,
            fail_next: (0, 503),
            quota_next: false,
            put_faults: HashMap::new(),
            read_delay: None,
            released: false,
            counter: 0,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            closed: AtomicBool::new(false),
            addr,
        });
        let s = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.closed.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    let s = s.clone();
                    thread::spawn(move || serve_connection(&s, stream));
                }
            }
        });
        StandIn { shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The full `videos.insert` upload endpoint (config `youtube_upload_url`).
    pub fn upload_url(&self) -> String {
        format!("{}{UPLOAD_PATH}", self.base_url())
    }

    /// The token endpoint (config `oauth_token_url`).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// An engine config (the defaults otherwise) whose uploads go to this
    /// stand-in as its OAuth client, `chunk` bytes a PUT, with its files
    /// and store in `data_dir`.
    pub fn engine_config(&self, data_dir: &Path, chunk: u64) -> Config {
        Config {
            data_dir: data_dir.to_owned(),
            database: Database::Sqlite(data_dir.join("jobengine.db")),
            youtube_upload_url: self.upload_url(),
            youtube_api_url: format!("{}/youtube/v3", self.base_url()),
            oauth_token_url: self.token_url(),
            youtube_chunk_size: chunk,
            oauth_client_id: Some(CLIENT_ID.into()),
            oauth_client_secret: Some(CLIENT_SECRET.into()),
            ..Config::defaults()
        }
    }

    /// The refresh token is revoked: the token endpoint answers `invalid_grant`.
    pub fn revoke(&self, refresh_token: &str) {
        self.update(|s| {
            s.refresh_tokens.insert(refresh_token.to_owned(), true);
        });
    }

    /// `expires_in` of the access tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.update(|s| s.expires_in = secs);
    }

    /// The next `n` requests to the upload endpoint (POST or PUT, status
    /// queries included) are answered `status`, their bodies discarded.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.update(|s| s.fail_next = (n, status));
    }

    /// The next session POST gets 403 `quotaExceeded`.
    pub fn quota_exceeded_next(&self) {
        self.update(|s| s.quota_next = true);
    }

    /// `fault` hits the `n`-th data PUT (1-based, counted since start).
    pub fn fault_on_put(&self, n: usize, fault: PutFault) {
        self.update(|s| {
            s.put_faults.insert(n, fault);
        });
    }

    /// Sleep this long after reading each 64 KiB of a PUT body (a slow link).
    pub fn set_read_delay(&self, delay: Option<Duration>) {
        self.update(|s| s.read_delay = delay);
    }

    /// Ends a [`PutFault::Hang`]: the hung connection is cut.
    pub fn release(&self) {
        self.update(|s| s.released = true);
    }

    /// Waits until `pred` holds (true) or `timeout` passes (false).
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if pred(&state) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Reads the state.
    pub fn with<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.shared.lock())
    }

    pub fn log(&self) -> Vec<Logged> {
        self.with(|s| s.log.clone())
    }

    pub fn videos(&self) -> Vec<Video> {
        self.with(|s| s.videos.clone())
    }

    pub fn sessions_created(&self) -> usize {
        self.with(|s| s.sessions_created)
    }

    pub fn violations(&self) -> Vec<String> {
        self.with(|s| s.violations.clone())
    }

    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.with(|s| s.token_requests.clone())
    }

    /// Opens a session the way a client would, for a client that is not the
    /// engine (the benchmark's curl): returns (access token, session URI).
    #[allow(dead_code)] // used by examples/upload_bench.rs only
    pub fn open_session_directly(&self, size: u64) -> (String, String) {
        let token = "ya29.direct".to_owned();
        let far = Instant::now() + Duration::from_secs(86_400);
        let uri = self.update(|s| {
            s.access_tokens.insert(token.clone(), far);
            new_session(
                s,
                self.shared.addr,
                size,
                serde_json::json!({"snippet": {"title": "direct"}}),
            )
        });
        (token, uri)
    }

    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.shared.lock());
        self.shared.changed.notify_all();
        out
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.update(|s| s.released = true);
        let _ = TcpStream::connect(self.shared.addr);
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn query(&self, key: &str) -> Option<String> {
        let (_, q) = self.target.split_once('?')?;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| url_decode(v))
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn json(status: u16, v: serde_json::Value) -> Reply {
        let mut r = Reply::new(status);
        r.headers
            .push(("Content-Type", "application/json; charset=UTF-8".into()));
        r.body = v.to_string().into_bytes();
        r
    }

    fn google_error(status: u16, reason: &str, message: &str) -> Reply {
        Reply::json(
            status,
            serde_json::json!({"error": {"code": status, "message": message,
                "errors": [{"message": message, "domain": "youtube.standin", "reason": reason}]}}),
        )
    }

    fn header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// What to do after handling a request.
enum Action {
    Reply(Reply),
    /// Drop the connection without answering.
    Cut,
}

fn serve_connection(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let Some(head) = read_head(&mut reader) else {
            return;
        };
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        if head.header("transfer-encoding").is_some() {
            let _ = write_reply(&mut writer, &Reply::new(411), true);
            return;
        }
        let Some(len) = head
            .header("content-length")
            .map_or(Some(0), |v| v.trim().parse::<u64>().ok())
        else {
            let _ = write_reply(&mut writer, &Reply::new(400), true);
            return;
        };
        if len > 0
            && head
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            let _ = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let mut body = (&mut reader).take(len);
        let action = handle(shared, &head, len, &mut body);
        let status = match &action {
            Action::Reply(r) => r.status,
            Action::Cut => 0,
        };
        {
            let mut s = shared.lock();
            s.log.push(Logged {
                method: head.method.clone(),
                target: head.target.clone(),
                headers: head.headers.clone(),
                body_len: len,
                status,
            });
        }
        shared.changed.notify_all();
        match action {
            Action::Cut => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Action::Reply(reply) => {
                // Whatever the handler left unread is discarded.
                if io::copy(&mut body, &mut io::sink()).is_err() {
                    return;
                }
                let close = head
                    .header("connection")
                    .is_some_and(|c| c.eq_ignore_ascii_case("close"));
                if write_reply(&mut writer, &reply, close).is_err() || close {
                    return;
                }
            }
        }
    }
}

fn read_head(reader: &mut impl BufRead) -> Option<Head> {
    let mut line = String::new();
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).ok()?;
        if n == 0 {
            return None;
        }
        total += n;
        if total > 64 * 1024 {
            return None;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            if lines.is_empty() {
                continue;
            }
            break;
        }
        lines.push(l.to_owned());
    }
    let mut first = lines[0].split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers = lines[1..]
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Head {
        method,
        target,
        headers,
    })
}

fn write_reply(w: &mut impl Write, r: &Reply, close: bool) -> io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        201 => "Created",
        308 => "Resume Incomplete",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        411 => "Length Required",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\n",
        r.status,
        r.body.len()
    );
    for (n, v) in &r.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(&r.body)?;
    w.flush()
}

fn handle(shared: &Shared, head: &Head, len: u64, body: &mut impl Read) -> Action {
    match (head.method.as_str(), head.path()) {
        ("POST", "/token") => Action::Reply(token(shared, head, body)),
        ("POST", UPLOAD_PATH) => open_session(shared, head, body),
        ("PUT", UPLOAD_PATH) => put(shared, head, len, body),
        _ => Action::Reply(Reply::google_error(
            404,
            "notFound",
            "no such endpoint on the stand-in",
        )),
    }
}

fn read_small(body: &mut impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = body.take(1024 * 1024).read_to_end(&mut bytes);
    bytes
}

fn violation(shared: &Shared, what: String) -> Reply {
    shared.lock().violations.push(what.clone());
    Reply::google_error(400, "badRequest", &what)
}

fn token(shared: &Shared, head: &Head, body: &mut impl Read) -> Reply {
    let raw = read_small(body);
    if !head
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        return violation(
            shared,
            format!(
                "token request Content-Type {:?}",
                head.header("content-type")
            ),
        );
    }
    let form: HashMap<String, String> = String::from_utf8_lossy(&raw)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (url_decode(k), url_decode(v)))
        .collect();
    let mut s = shared.lock();
    s.token_requests.push(form.clone());
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if field("grant_type") != "refresh_token" {
        return Reply::json(400, serde_json::json!({"error": "unsupported_grant_type"}));
    }
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return Reply::json(
            401,
            serde_json::json!({"error": "invalid_client", "error_description": "The OAuth client was not found."}),
        );
    }
    if s.refresh_tokens.get(field("refresh_token")) != Some(&false) {
        return Reply::json(
            400,
            serde_json::json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
        );
    }
    let token = format!("ya29.standin-{}", s.access_tokens.len() + 1);
    let expires_in = s.expires_in;
    s.access_tokens.insert(
        token.clone(),
        Instant::now() + Duration::from_secs(expires_in),
    );
    Reply::json(
        200,
        serde_json::json!({"access_token": token, "expires_in": expires_in,
            "scope": "https://www.googleapis.com/auth/youtube.upload", "token_type": "Bearer"}),
    )
}

fn unauthorized() -> Reply {
    let mut r = Reply::json(
        401,
        serde_json::json!({"error": {"code": 401,
            "message": "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError",
                "location": "Authorization", "locationType": "header"}],
            "status": "UNAUTHENTICATED"}}),
    );
    r.headers.push((
        "WWW-Authenticate",
        "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"".into(),
    ));
    r
}

fn authorized(s: &State, head: &Head) -> bool {
    head.bearer()
        .and_then(|t| s.access_tokens.get(t))
        .is_some_and(|exp| Instant::now() < *exp)
}

fn take_failure(s: &mut State) -> Option<Reply> {
    if s.fail_next.0 == 0 {
        return None;
    }
    s.fail_next.0 -= 1;
    let code = s.fail_next.1;
    Some(Reply::google_error(code, "backendError", "Backend Error"))
}

fn new_session(s: &mut State, addr: SocketAddr, total: u64, metadata: serde_json::Value) -> String {
    s.counter += 1;
    let id = format!(
        "AUPL{}x{:08x}",
        s.counter,
        (s.counter * 2_654_435_761) as u32
    );
    s.sessions.insert(
        id.clone(),
        Session {
            total,
            stored: 0,
            hasher: Sha256::new(),
            metadata,
            video: None,
            busy: false,
        },
    );
    s.sessions_created += 1;
    format!("http://{addr}{UPLOAD_PATH}?uploadType=resumable&upload_id={id}")
}

fn open_session(shared: &Shared, head: &Head, body: &mut impl Read) -> Action {
    let raw = read_small(body);
    let mut s = shared.lock();
    if let Some(r) = take_failure(&mut s) {
        return Action::Reply(r);
    }
    drop(s);
    if head.query("uploadType").as_deref() != Some("resumable") {
        return Action::Reply(violation(
            shared,
            format!("POST without uploadType=resumable: {}", head.target),
        ));
    }
    let part = head.query("part").unwrap_or_default();
    if !(part.split(',').any(|p| p == "snippet") && part.split(',').any(|p| p == "status")) {
        return Action::Reply(violation(
            shared,
            format!("POST part={part:?}, want snippet,status"),
        ));
    }
    let mut s = shared.lock();
    if !authorized(&s, head) {
        return Action::Reply(unauthorized());
    }
    if std::mem::take(&mut s.quota_next) {
        return Action::Reply(Reply::google_error(
            403,
            "quotaExceeded",
            "The request cannot be completed because you have exceeded your <a href=\"/youtube/v3/getting-started#quota\">quota</a>.",
        ));
    }
    drop(s);
    if !head
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Action::Reply(violation(
            shared,
            format!("POST Content-Type {:?}", head.header("content-type")),
        ));
    }
    let Some(total) = head
        .header("x-upload-content-length")
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return Action::Reply(violation(
            shared,
            "POST without a numeric X-Upload-Content-Length".into(),
        ));
    };
    let ct = head.header("x-upload-content-type").unwrap_or("");
    if !(ct.starts_with("video/") || ct == "application/octet-stream") {
        return Action::Reply(violation(shared, format!("X-Upload-Content-Type {ct:?}")));
    }
    let Ok(metadata) = serde_json::from_slice::<serde_json::Value>(&raw) else {
        return Action::Reply(Reply::google_error(400, "parseError", "Parse Error"));
    };
    let title = metadata["snippet"]["title"].as_str().unwrap_or("");
    if title.trim().is_empty() || title.chars().count() > 100 || title.contains(['<', '>']) {
        return Action::Reply(Reply::google_error(
            400,
            "invalidTitle",
            "The request metadata specifies an invalid or empty video title.",
        ));
    }
    if !matches!(
        metadata["status"]["privacyStatus"].as_str(),
        Some("private" | "unlisted" | "public")
    ) {
        return Action::Reply(Reply::google_error(
            400,
            "invalidVideoMetadata",
            "privacyStatus is not valid.",
        ));
    }
    let mut s = shared.lock();
    let uri = new_session(&mut s, shared.addr, total, metadata);
    Action::Reply(Reply::new(200).header("Location", uri))
}

/// The forms of `Content-Range` a session PUT may carry.
enum Range {
    Query {
        total: u64,
    },
    Data {
        first: u64,
        last: u64,
        total: Option<u64>,
    },
}

fn parse_content_range(v: &str) -> Option<Range> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse::<u64>().ok()?)
    };
    if span == "*" {
        return Some(Range::Query { total: total? });
    }
    let (a, b) = span.split_once('-')?;
    let (first, last) = (a.parse().ok()?, b.parse().ok()?);
    (first <= last).then_some(Range::Data { first, last, total })
}

fn video_json(id: &str, metadata: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"kind": "youtube#video", "etag": format!("etag-{id}"), "id": id,
        "snippet": metadata["snippet"],
        "status": {"uploadStatus": "uploaded", "privacyStatus": metadata["status"]["privacyStatus"]}})
}

fn position(session: &Session) -> Reply {
    match &session.video {
        Some(id) => Reply::json(201, video_json(id, &session.metadata)),
        None if session.stored == 0 => Reply::new(308),
        None => Reply::new(308).header("Range", format!("bytes=0-{}", session.stored - 1)),
    }
}

fn put(shared: &Shared, head: &Head, len: u64, body: &mut impl Read) -> Action {
    let range = match head.header("content-range") {
        None => Some(Range::Data {
            first: 0,
            last: len.saturating_sub(1),
            total: Some(len),
        }),
        Some(v) => parse_content_range(v),
    };
    let Some(range) = range else {
        return Action::Reply(violation(
            shared,
            format!("bad Content-Range {:?}", head.header("content-range")),
        ));
    };
    let mut s = shared.lock();
    let mut fault = None;
    if let Range::Data { .. } = range {
        s.data_puts += 1;
        let n = s.data_puts;
        fault = s.put_faults.remove(&n);
    }
    let upload_id = head.query("upload_id").unwrap_or_default();
    match fault {
        Some(PutFault::ExpireTokens) => {
            let now = Instant::now();
            s.access_tokens.values_mut().for_each(|exp| *exp = now);
            fault = None;
        }
        Some(PutFault::Gone) => {
            s.sessions.remove(&upload_id);
            fault = None;
        }
        Some(PutFault::Burst(n)) => {
            s.fail_next = (n, 503);
            fault = None;
        }
        _ => {}
    }
    if let Some(r) = take_failure(&mut s) {
        return Action::Reply(r);
    }
    if !authorized(&s, head) {
        return Action::Reply(unauthorized());
    }
    let Some(session) = s.sessions.get_mut(&upload_id) else {
        return Action::Reply(Reply::google_error(
            404,
            "notFound",
            "The upload session was not found.",
        ));
    };
    let (first, last) = match range {
        Range::Query { total } => {
            if total != session.total || len != 0 {
                let what = format!(
                    "status query total {total} (session {}) with a {len}-byte body",
                    session.total
                );
                drop(s);
                return Action::Reply(violation(shared, what));
            }
            return Action::Reply(position(session));
        }
        Range::Data { first, last, total } => {
            let total_ok = total.map_or(true, |t| t == session.total);
            if !total_ok || last >= session.total || last - first + 1 != len {
                let what = format!(
                    "Content-Range {:?} with Content-Length {len} for a {}-byte session",
                    head.header("content-range"),
                    session.total
                );
                drop(s);
                return Action::Reply(violation(shared, what));
            }
            let is_last = last + 1 == session.total;
            if !is_last && len % UNIT != 0 {
                drop(s);
                return Action::Reply(violation(
                    shared,
                    format!("chunk of {len} bytes is not a multiple of {UNIT}"),
                ));
            }
            (first, last)
        }
    };
    if session.video.is_some() || first != session.stored || session.busy {
        return Action::Reply(position(session));
    }
    if !head.header("content-type").is_some_and(|c| !c.is_empty()) {
        drop(s);
        return Action::Reply(violation(shared, "data PUT without Content-Type".into()));
    }
    session.busy = true;
    let mut hasher = session.hasher.clone();
    let delay = s.read_delay;
    drop(s);

    // Read the body outside the lock, keeping the hash state at the last
    // 256 KiB boundary for a cut.
    let stop_after = match &fault {
        Some(PutFault::Cut(k) | PutFault::Hang(k)) => Some(*k),
        _ => None,
    };
    let mut kept = (0u64, hasher.clone());
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut failed = false;
    while got < len && stop_after.map_or(true, |k| got < k) {
        let mut want = (buf.len() as u64).min(len - got).min(UNIT - got % UNIT);
        if let Some(k) = stop_after {
            want = want.min(k - got);
        }
        match body.read(&mut buf[..want as usize]) {
            Ok(0) | Err(_) => {
                failed = true;
                break;
            }
            Ok(n) => {
                hasher.update(&buf[..n]);
                got += n as u64;
                if got % UNIT == 0 {
                    kept = (got, hasher.clone());
                }
                shared.lock().receiving = Some(got);
                shared.changed.notify_all();
                if let Some(d) = delay {
                    thread::sleep(d);
                }
            }
        }
    }
    if matches!(fault, Some(PutFault::Hang(_))) && !failed {
        let mut s = shared.lock();
        s.hanging = true;
        shared.changed.notify_all();
        while !s.released {
            s = shared.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.hanging = false;
        s.released = false;
    }
    let mut s = shared.lock();
    s.receiving = None;
    let Some(session) = s.sessions.get_mut(&upload_id) else {
        return Action::Cut;
    };
    session.busy = false;
    if failed || stop_after.is_some() {
        // A connection that broke (or that we cut): keep whole units only.
        if kept.0 > 0 {
            session.stored = first + kept.0;
            session.hasher = kept.1;
        }
        return Action::Cut;
    }
    session.stored = last + 1;
    session.hasher = hasher;
    if session.stored == session.total {
        let id = format!("vid{:08}", s.videos.len() + 1);
        let session = s.sessions.get_mut(&upload_id).expect("session just used");
        session.video = Some(id.clone());
        let sha256 = session
            .hasher
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let video = Video {
            id,
            upload_id,
            size: session.total,
            sha256,
            metadata: session.metadata.clone(),
        };
        let reply = Reply::json(201, video_json(&video.id, &video.metadata));
        s.videos.push(video);
        return Action::Reply(reply);
    }
    Action::Reply(position(session))
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 2;
            }
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
