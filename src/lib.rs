//! jobengine: a job processing engine that a website hands long media jobs to
//! over XML-RPC.
//!
//! Data flows one way:
//!
//! ```text
//! HTTP bytes → protocol (Value) → api (dispatch) → store (guarded write) + worker::Handle (wake)
//!   → worker pool → kinds (process, files, net) → Outcome → store.finish_job (+ outbox row)
//!   → notify (calls to the website)
//! ```
//!
//! Lower layers never call upward: news travels up as return values or
//! channel messages. Layers, lowest first: `job`, `config`, `protocol` [0];
//! `store`, `process`, `files`, `net` [1]; `notify` [2]; `kinds` [3];
//! `worker`, `api` [4]; `lifecycle` [5]; `main.rs` [6].

pub mod api;
pub mod config;
pub mod error;
pub mod files;
pub mod job;
pub mod kinds;
pub mod lifecycle;
pub mod net;
pub mod notify;
pub mod process;
pub mod protocol;
pub mod store;
pub mod worker;

/// `s` cut to at most `max` characters, with "…" when cut: for quoting
/// client input in messages without echoing megabytes back.
pub fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}
