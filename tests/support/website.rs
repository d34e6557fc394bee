//! A stand-in for the website: an XML-RPC server on a port of its own that
//! records every call it gets, and can be told to fail (HTTP 500, an
//! XML-RPC fault) or to be down (connections dropped unanswered).

use jobengine::protocol::xmlrpc::{self, Limits};
use jobengine::protocol::{Fault, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Up,
    /// Answers HTTP 500.
    Error500,
    /// Answers an XML-RPC fault.
    Fault,
    /// Drops each connection without an answer.
    Down,
    /// Reads the call, then answers nothing until the mode changes.
    Hang,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub params: Vec<Value>,
    pub at: Instant,
}

impl Received {
    pub fn str(&self, i: usize) -> &str {
        self.params.get(i).and_then(Value::as_str).unwrap_or("")
    }
    pub fn int(&self, i: usize) -> i32 {
        match self.params.get(i) {
            Some(Value::Int(n)) => *n,
            other => panic!("param {i} of {} is {other:?}", self.method),
        }
    }
}

#[derive(Default)]
struct State {
    mode: Option<Mode>,
    calls: Vec<Received>,
    refused: usize,
}

pub struct Website {
    pub url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl Website {
    pub fn start() -> Website {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/RPC2", listener.local_addr().unwrap());
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        state.0.lock().unwrap().mode = Some(Mode::Up);
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Website { url, state }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.0.lock().unwrap().mode = Some(mode);
    }

    /// Calls answered with success so far.
    pub fn calls(&self) -> Vec<Received> {
        self.state.0.lock().unwrap().calls.clone()
    }

    /// Attempts refused while failing or down.
    pub fn refused(&self) -> usize {
        self.state.0.lock().unwrap().refused
    }

    /// Waits until `done(calls)` holds, failing after `within`.
    pub fn wait_for(
        &self,
        within: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        let (lock, changed) = &*self.state;
        let mut state = lock.lock().unwrap();
        while !done(&state.calls) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "website: {what} not seen within {within:?}; got {:?}",
                summary(&state.calls)
            );
            state = changed.wait_timeout(state, left).unwrap().0;
        }
        state.calls.clone()
    }
}

/// "Method(params)" per call, for messages.
pub fn summary(calls: &[Received]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            let params: Vec<String> = c
                .params
                .iter()
                .map(|p| match p {
                    Value::String(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    other => format!("{other:?}"),
                })
                .collect();
            format!("{}({})", c.method, params.join(","))
        })
        .collect()
}

fn serve(stream: TcpStream, shared: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mode = shared.0.lock().unwrap().mode.unwrap_or(Mode::Up);
        let (status, reply) = match mode {
            Mode::Down => {
                shared.0.lock().unwrap().refused += 1;
                return; // dropped unanswered
            }
            Mode::Hang => {
                shared.0.lock().unwrap().refused += 1;
                while shared.0.lock().unwrap().mode == Some(Mode::Hang) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            Mode::Error500 => {
                shared.0.lock().unwrap().refused += 1;
                (
                    "500 Internal Server Error",
                    b"down for maintenance".to_vec(),
                )
            }
            Mode::Fault => {
                shared.0.lock().unwrap().refused += 1;
                (
                    "200 OK",
                    xmlrpc::write_fault(&Fault::new(-32500, "website busy")),
                )
            }
            Mode::Up => match xmlrpc::parse_call(&body, &Limits::default()) {
                Ok(call) => {
                    let mut state = shared.0.lock().unwrap();
                    state.calls.push(Received {
                        method: call.method,
                        params: call.params,
                        at: Instant::now(),
                    });
                    shared.1.notify_all();
                    ("200 OK", xmlrpc::write_response(&Value::Bool(true)))
                }
                Err(f) => ("200 OK", xmlrpc::write_fault(&f)),
            },
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
            reply.len()
        );
        if writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(&reply))
            .is_err()
        {
            return;
        }
    }
}
