//! A real engine process for tests: the built binary, on a port of its own,
//! with a fresh data dir and a fresh database on the backend asked for.

use jobengine::protocol::xmlrpc::{self, Limits};
use jobengine::protocol::{Fault, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs the test body once per backend:
/// `engine_test!(name, |backend| { ... });`
#[macro_export]
macro_rules! engine_test {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn sqlite() {
                let body: fn($crate::support::engine::Backend) = $body;
                body($crate::support::engine::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                let body: fn($crate::support::engine::Backend) = $body;
                body($crate::support::engine::Backend::Postgres)
            }
        }
    };
}

/// A throwaway PostgreSQL database, dropped with this value.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let admin_url = super::pg_url();
        let name = format!("je_{}", uuid::Uuid::new_v4().simple());
        let mut admin =
            postgres::Client::connect(&admin_url, postgres::NoTls).unwrap_or_else(|e| {
                panic!(
                "PostgreSQL is needed at {admin_url} ({e}); start it (pg_ctlcluster 15 main start) \
                 or set JOBENGINE_TEST_DATABASE to a server where this user may CREATE DATABASE"
            )
            });
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("CREATE DATABASE");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b)
            .to_owned();
        PgDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&super::pg_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

pub struct EngineOptions {
    pub backend: Backend,
    pub env: Vec<(String, String)>,
    /// A database URL of the test's own instead of a fresh one.
    pub database: Option<String>,
    /// A config file to pass with --config.
    pub config_file: Option<PathBuf>,
}

impl EngineOptions {
    pub fn new(backend: Backend) -> EngineOptions {
        EngineOptions {
            backend,
            env: vec![],
            database: None,
            config_file: None,
        }
    }

    pub fn set(mut self, key: &str, value: impl ToString) -> EngineOptions {
        self.env.push((
            format!("JOBENGINE_{}", key.to_ascii_uppercase()),
            value.to_string(),
        ));
        self
    }

    pub fn config_file(mut self, path: &Path) -> EngineOptions {
        self.config_file = Some(path.to_owned());
        self
    }

    pub fn database(mut self, url: &str) -> EngineOptions {
        self.database = Some(url.to_owned());
        self
    }
}

pub struct Engine {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub data_dir: PathBuf,
    pub database: String,
    log: Arc<Mutex<String>>,
    env: Vec<(String, String)>,
    config_file: Option<PathBuf>,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
    agent: ureq::Agent,
}

impl Engine {
    pub fn start(backend: Backend) -> Engine {
        Engine::with(EngineOptions::new(backend))
    }

    pub fn with(options: EngineOptions) -> Engine {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let (database, pg) = match (options.database, options.backend) {
            (Some(url), _) => (url, None),
            (None, Backend::Sqlite) => (
                format!("sqlite:{}", dir.path().join("data/jobengine.db").display()),
                None,
            ),
            (None, Backend::Postgres) => {
                let db = PgDatabase::create();
                (db.url.clone(), Some(db))
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut engine = Engine {
            child: None,
            url: String::new(),
            data_dir,
            database,
            log: Arc::default(),
            env: options.env,
            config_file: options.config_file,
            _dir: dir,
            _pg: pg,
            agent,
        };
        engine.spawn("127.0.0.1:0");
        engine
    }

    /// Starts the process (again), on `listen`, and waits until it serves.
    fn spawn(&mut self, listen: &str) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jobengine"));
        cmd.args([
            "serve",
            "--listen",
            listen,
            "--database",
            &self.database,
            "--data-dir",
        ])
        .arg(&self.data_dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(self.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Some(file) = &self.config_file {
            cmd.arg("--config").arg(file);
        }
        let mut child = cmd.spawn().expect("starting the jobengine binary");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => self.url = format!("http://{addr}"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the engine did not start within 30 s; its log:\n{}",
                    self.log()
                );
            }
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Everything the engine logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal to the engine.
    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Waits until the engine's log contains `text`.
    pub fn wait_log(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "'{text}' not logged within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn sigterm(&mut self, within: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.sigterm_wait(within)
    }

    /// Waits (bounded) for the exit after a SIGTERM already sent.
    pub fn sigterm_wait(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the engine did not exit within {within:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the engine again on the same data and database. It gets a
    /// new port: the old one may have been handed to some other socket
    /// meanwhile.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the engine first");
        self.spawn("127.0.0.1:0");
    }

    /// One XML-RPC call over HTTP.
    pub fn call(&self, method: &str, params: &[&str]) -> Result<Value, Fault> {
        let params: Vec<Value> = params.iter().map(|p| Value::str(p.to_string())).collect();
        self.call_values(method, &params)
    }

    pub fn call_values(&self, method: &str, params: &[Value]) -> Result<Value, Fault> {
        let body = xmlrpc::write_call(method, params);
        let reply = self.post_raw("/RPC2", "text/xml", &body);
        assert_eq!(
            reply.0,
            200,
            "HTTP status for {method}: body {}",
            String::from_utf8_lossy(&reply.1)
        );
        xmlrpc::parse_response(&reply.1, &Limits::default()).unwrap_or_else(|f| {
            panic!(
                "unreadable response: {f:?}: {}",
                String::from_utf8_lossy(&reply.1)
            )
        })
    }

    /// A call that must answer a struct: (ResultCode, ErrorMessage, struct).
    pub fn op(&self, method: &str, params: &[&str]) -> (i32, String, Value) {
        let value = self
            .call(method, params)
            .unwrap_or_else(|f| panic!("{method} faulted: {f:?}"));
        let code = match value.member("ResultCode") {
            Some(Value::Int(c)) => *c,
            other => panic!("{method}: ResultCode is {other:?} in {value:?}"),
        };
        let message = value
            .member("ErrorMessage")
            .and_then(Value::as_str)
            .expect("ErrorMessage")
            .to_owned();
        (code, message, value)
    }

    pub fn post_raw(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let response = self
            .agent
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", content_type)
            .send(body)
            .expect("HTTP POST");
        status_and_body(response)
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let response = self
            .agent
            .get(&format!("{}{path}", self.url))
            .call()
            .expect("HTTP GET");
        status_and_body(response)
    }

    /// Uploads a file, returning its FileID.
    pub fn upload(&self, path: &Path) -> String {
        let bytes = std::fs::read(path).expect("read fixture");
        let (status, body) = self.post_raw("/files?name=input", "application/octet-stream", &bytes);
        assert_eq!(status, 201, "upload: {}", String::from_utf8_lossy(&body));
        String::from_utf8(body).expect("FileID").trim().to_owned()
    }

    /// GetJob's Job struct.
    pub fn job(&self, id: &str) -> Value {
        let (code, message, value) = self.op("GetJob", &[id]);
        assert_eq!(code, 0, "GetJob {id}: {message}");
        value.member("Job").expect("Job member").clone()
    }

    pub fn state(&self, id: &str) -> String {
        self.job(id)
            .member("State")
            .and_then(Value::as_str)
            .expect("State")
            .to_owned()
    }

    /// Waits until the job is in `state`, failing after `within`.
    pub fn wait_state(&self, id: &str, state: &str, within: Duration) -> Value {
        self.wait_job(id, state, within, |s| s == state)
    }

    /// Waits until the job has ended (Success or Failed).
    pub fn wait_end(&self, id: &str, within: Duration) -> Value {
        self.wait_job(id, "ended", within, |s| s == "Success" || s == "Failed")
    }

    /// Polls GetJob until the job's State passes `done`.
    fn wait_job(
        &self,
        id: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let job = self.job(id);
            if job
                .member("State")
                .and_then(Value::as_str)
                .is_some_and(&done)
            {
                return job;
            }
            if Instant::now() > deadline {
                panic!(
                    "job {id} not {what} within {within:?}: {job:?}\nengine log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn status_and_body(response: ureq::http::Response<ureq::Body>) -> (u16, Vec<u8>) {
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .read_to_end(&mut bytes)
        .expect("body");
    (status, bytes)
}

/// One single-string-parameter XML-RPC call on a raw HTTP/1.1 keep-alive
/// connection (as a website's workers hold them); returns the answer's body.
pub fn raw_call(
    stream: &mut std::net::TcpStream,
    method: &str,
    arg: &str,
) -> Result<String, String> {
    use std::io::Write;
    let body = format!(
        "<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName><params><param><value>{arg}</value></param></params></methodCall>"
    );
    let request = format!(
        "POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("sending {method}: {e}"))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream
            .read_exact(&mut byte)
            .map_err(|e| format!("reading the head: {e}"))?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(format!("status: {head}"));
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no Content-Length")?;
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("reading the body: {e}"))?;
    String::from_utf8(body).map_err(|e| e.to_string())
}

/// The shared fixtures (MP3, cover image).
pub fn fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name);
    assert!(
        path.is_file(),
        "fixture {} missing: the repository must sit beside shared/",
        path.display()
    );
    path
}

/// Pids of the direct and indirect children of `pid`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = vec![];
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            break;
        };
        for entry in entries.flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // Field 4 (after the parenthesised name) is the parent pid.
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// Runs a Python script from tests/python with arguments; panics with its
/// output unless it exits 0. Returns stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed for the stock-client tests ({e}): apt-get install python3")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Reads an int member.
pub fn int(value: &Value, name: &str) -> i32 {
    match value.member(name) {
        Some(Value::Int(i)) => *i,
        other => panic!("{name} is {other:?} in {value:?}"),
    }
}

pub fn string(value: &Value, name: &str) -> String {
    value
        .member(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{name} missing in {value:?}"))
        .to_owned()
}

/// Reads a whole response body from a reader, bounded.
pub fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).expect("read");
    v
}
