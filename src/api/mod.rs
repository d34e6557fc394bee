//! The engine's public face: the IJobProcessor operations (`dispatch`) and
//! the HTTP glue that serves them and the files (`http`).
//!
//! May use: `job`, `config`, `protocol`, `store`, `files`, `worker::Handle`.

pub mod dispatch;
pub mod http;
mod range;

pub use dispatch::Api;
